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
SERVE_PID=""
trap '[ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
BYTES=$((SIZE_MIB << 20))
head -c "$BYTES" /dev/urandom > "$W/src.bin"
"$NANOFS" init "$W/vol" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NANOFS" serve "$W/vol" --listen "127.0.0.1:$port" > "$W/serve.out" 2>"$W/serve.log" &
SERVE_PID=$!
for _ in $(seq 100); do grep -q listening "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
export NANOFS_TOKEN; NANOFS_TOKEN=$("$NANOFS" token create "$W/vol" --allow read,write,delete 2>/dev/null)
"$NANOFS" push "$W/src.bin" "http://127.0.0.1:$port/files/f.bin" -q
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
      curl -sS --fail -H "Authorization: Bearer $NANOFS_TOKEN" -r "$a-$b" "http://127.0.0.1:$port/files/f.bin" -o /dev/null & pids+=($!)
    done
    wait "${pids[@]}"
    t1=$(date +%s.%N); c1=$(ticks)
    python3 -c "w = $t1 - $t0; print(f'| $cache | $n | {$BYTES / 1e6 / w:.0f} | {($c1 - $c0) / $(getconf CLK_TCK) / w:.2f} |')"
  done
done
