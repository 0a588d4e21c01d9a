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
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-simulcast.XXXXXX")
MNT="$W/mnt"; mkdir -p "$MNT"
DAEMON=""
cleanup() {
  tc qdisc del dev lo root 2>/dev/null || true
  if [ -n "$DAEMON" ]; then "$NANOFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench
PORT=8080
UDP=8189
BASE="http://127.0.0.1:$PORT"
"$NANOFS" init "$W/vol" >/dev/null
printf '[media.streaming]\nwebrtc_port = %s\n' "$UDP" > "$W/vol/nanofs.toml"
RUST_LOG=${RUST_LOG:-info} "$NANOFS" mount "$W/vol" "$MNT" --foreground --serve "127.0.0.1:$PORT" 2>"$W/daemon.log" &
DAEMON=$!
for _ in $(seq 300); do
  mountpoint -q "$MNT" && curl -sf "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
mkdir "$MNT/live"
KEY=$("$NANOFS" stream create "$W/vol" layers --path /live 2>/dev/null | tail -1)
TOKEN=$("$NANOFS" token create "$W/vol" --path /live 2>/dev/null)
NANOFS_URL=$BASE STREAM=layers KEY=$KEY TOKEN=$TOKEN PORT=$UDP node benches/scripts/live_simulcast.mjs \
  || { grep -i "layer\|error" "$W/daemon.log" | tail -20; exit 1; }
grep -E "simulcast layer" "$W/daemon.log" | cut -c1-260 || true
[ -n "${LOG_COPY:-}" ] && cp "$W/daemon.log" "$LOG_COPY"; true
