#!/usr/bin/env bash
# What bounds a download: one `nanofs serve` on a fresh volume holding SIZE_MIB of random
# bytes; curl GETs it to /dev/null over 1 and 4 connections (ranges), first with the page
# cache dropped (packs read from disk), then with the packs cached. Prints MB/s and the
# sidecar's CPU (utime + stime) in cores over the transfer's wall time.
# Env: SIZE_MIB (1024), NANOFS_BIN (release build), WORK (/var/tmp).
set -euo pipefail
SIZE_MIB=${SIZE_MIB:-1024}
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-download-cpu.XXXXXX")
source "$(dirname "$0")/sidecar_common.sh"
trap 'serve_stop; rm -rf "$W"' EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
BYTES=$((SIZE_MIB << 20))
head -c "$BYTES" /dev/urandom > "$W/src.bin"
serve_fresh "$NANOFS"
"$NANOFS" push "$W/src.bin" "$BASE/files/f.bin" -q
ticks() { awk '{print $14 + $15}' "/proc/$SERVE_PID/stat"; }
echo "| packs | connections | MB/s | sidecar CPU, cores |"
echo "|---|---:|---:|---:|"
for cache in cold cached; do
  for n in 1 4; do
    if [ "$cache" = cold ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
    c0=$(ticks); t0=$(date +%s.%N)
    per=$((BYTES / n)); pids=()
    for i in $(seq 0 $((n - 1))); do
      a=$((i * per)); b=$(( i == n - 1 ? BYTES - 1 : a + per - 1 ))
      curl -sS --fail -H "Authorization: Bearer $NANOFS_TOKEN" -r "$a-$b" "$BASE/files/f.bin" -o /dev/null & pids+=($!)
    done
    wait "${pids[@]}"
    t1=$(date +%s.%N); c1=$(ticks)
    python3 -c "w = $t1 - $t0; print(f'| $cache | $n | {$BYTES / 1e6 / w:.0f} | {($c1 - $c0) / $(getconf CLK_TCK) / w:.2f} |')"
  done
done
