#!/usr/bin/env bash
# Simulcast under a bandwidth drop (benches/scripts/live_simulcast.mjs), in a network
# namespace of its own, so the limit put on loopback touches nothing else on the machine.
# Env: RATE_KBIT (60 % of the best layer), ROUNDS (5), WORK (/var/tmp), NANOFS_BIN (release build). Root.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${NANOFS_NETNS:-}" ]; then
  exec env NANOFS_NETNS=1 unshare -n bash "$0" "$@"
fi
ip link set lo up
source benches/scripts/live_common.sh
trap 'tc qdisc del dev lo root 2>/dev/null || true; live_cleanup' EXIT
UDP=8189
live_mount simulcast "$(printf '[media.streaming]\nwebrtc_port = %s' "$UDP")" 8080
KEY=$("$NANOFS" stream create "$W/vol" layers --path /live 2>/dev/null | tail -1)
TOKEN=$("$NANOFS" token create "$W/vol" --path /live 2>/dev/null)
NANOFS_URL=$BASE STREAM=layers KEY=$KEY TOKEN=$TOKEN PORT=$UDP node benches/scripts/live_simulcast.mjs \
  || { grep -i "layer\|error" "$W/daemon.log" | tail -20; exit 1; }
grep -E "simulcast layer" "$W/daemon.log" | cut -c1-260 || true
[ -n "${LOG_COPY:-}" ] && cp "$W/daemon.log" "$LOG_COPY"; true
