#!/usr/bin/env bash
# Two builds of nanofs, A and B, serving the same file to curl over loopback, alternated
# round by round (this machine is noisy). Each round and build: a fresh volume, one
# `nanofs push`, then curl GETs to /dev/null with 1 and with 4 connections (ranges), the
# page cache dropped before each. Prints MB/s per run and the medians with B/A.
# Env: A, B (binaries), SIZE_MIB (1024), ROUNDS (4), WORK (/var/tmp).
set -euo pipefail
A=${A:?path of build A}; B=${B:?path of build B}
SIZE_MIB=${SIZE_MIB:-1024}; ROUNDS=${ROUNDS:-4}
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-get-ab.XXXXXX")
SERVE_PID=""
cleanup() { [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
now() { date +%s.%N; }
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/src.bin"
BYTES=$((SIZE_MIB << 20))
get() { # url conns: prints MB/s
  local url=$1 n=$2 per=$((BYTES / $2)) t0 t1 pids=() a b
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(now)
  for i in $(seq 0 $((n - 1))); do
    a=$((i * per)); b=$(( i == n - 1 ? BYTES - 1 : a + per - 1 ))
    curl -sS --fail -H "Authorization: Bearer $NANOFS_TOKEN" -r "$a-$b" "$url" -o /dev/null & pids+=($!)
  done
  wait "${pids[@]}"; t1=$(now)
  python3 -c "print(f'{$BYTES/1e6/($t1-$t0):.1f}')"
}
declare -A runs
one() { # build label
  local bin=$1 label=$2 port
  rm -rf "$W/vol"; "$bin" init "$W/vol" >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve "$W/vol" --listen "127.0.0.1:$port" > "$W/serve.out" 2>"$W/serve.log" &
  SERVE_PID=$!
  for _ in $(seq 100); do grep -q listening "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
  export NANOFS_TOKEN; NANOFS_TOKEN=$("$bin" token create "$W/vol" --allow read,write,delete 2>/dev/null)
  "$bin" push "$W/src.bin" "http://127.0.0.1:$port/files/f.bin" -q
  for conns in 1 4; do
    local r; r=$(get "http://127.0.0.1:$port/files/f.bin" "$conns")
    runs["$label $conns"]+="$r "; echo "$label conns=$conns GET $r MB/s" >&2
  done
  kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=""
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one "$A" A; one "$B" B; else one "$B" B; one "$A" A; fi
done
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.1f}')" $1; }
echo "| curl GET | A MB/s (runs) | B MB/s (runs) | B/A |"
echo "|---|---|---|---:|"
for conns in 1 4; do
  a=$(median "${runs[A $conns]}"); b=$(median "${runs[B $conns]}")
  echo "| $conns connection(s) | $a (${runs[A $conns]% }) | $b (${runs[B $conns]% }) | $(python3 -c "print(f'{$b/$a:.2f}')") |"
done
