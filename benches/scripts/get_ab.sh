#!/usr/bin/env bash
# Two builds of nanofs, A and B, serving the same file to curl over loopback, alternated
# round by round (this machine is noisy). Each round and build: a fresh volume, one
# `nanofs push`, then curl GETs to /dev/null with 1 and with 4 connections (ranges), the
# page cache dropped before each. Prints MB/s and the sidecar's CPU seconds (utime +
# stime) per run, and the medians with B/A.
# Env: A, B (binaries), SIZE_MIB (1024), ROUNDS (4), WORK (/var/tmp), PUSH_ARGS (flags
# for the push that stores the file, e.g. `--connections 1`).
set -euo pipefail
A=${A:?path of build A}; B=${B:?path of build B}
SIZE_MIB=${SIZE_MIB:-1024}; ROUNDS=${ROUNDS:-4}
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-get-ab.XXXXXX")
source "$(dirname "$0")/sidecar_common.sh"
trap 'serve_stop; rm -rf "$W"' EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
now() { date +%s.%N; }
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/src.bin"
BYTES=$((SIZE_MIB << 20))
ticks() { awk '{print $14 + $15}' "/proc/$SERVE_PID/stat"; }
get() { # url conns: prints MB/s and the sidecar's CPU seconds
  local url=$1 n=$2 per=$((BYTES / $2)) t0 t1 c0 c1 pids=() a b
  sync; echo 3 > /proc/sys/vm/drop_caches
  c0=$(ticks); t0=$(now)
  for i in $(seq 0 $((n - 1))); do
    a=$((i * per)); b=$(( i == n - 1 ? BYTES - 1 : a + per - 1 ))
    curl -sS --fail -H "Authorization: Bearer $NANOFS_TOKEN" -r "$a-$b" "$url" -o /dev/null & pids+=($!)
  done
  wait "${pids[@]}"; t1=$(now); c1=$(ticks)
  python3 -c "print(f'{$BYTES/1e6/($t1-$t0):.1f} {($c1-$c0)/$(getconf CLK_TCK):.2f}')"
}
one() { # build label
  local bin=$1 label=$2
  serve_fresh "$bin"
  "$bin" push "$W/src.bin" "$BASE/files/f.bin" -q ${PUSH_ARGS:-}
  for conns in 1 4; do
    local r cpu; read -r r cpu < <(get "$BASE/files/f.bin" "$conns")
    runs["$label $conns"]+="$r "; runs["$label cpu $conns"]+="$cpu "
    echo "$label conns=$conns GET $r MB/s, sidecar CPU $cpu s" >&2
  done
  serve_stop
}
ab_rounds
ab_table "curl GET" 1 4
UNIT="CPU s" ab_table "sidecar CPU" "cpu 1" "cpu 4"
