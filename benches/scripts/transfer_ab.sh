#!/usr/bin/env bash
# Two builds of nanofs, A and B, pushing and pulling the same file through their sidecars
# over loopback, alternated round by round so both see the same machine (noisy here).
# Each round and build: a fresh volume, `nanofs push` then `nanofs pull` with 1 and with 4
# connections, page cache dropped before each transfer. Prints MB/s per run and the
# medians with B/A.
# Env: A, B (binaries), SIZE_MIB (1024), ROUNDS (3), WORK (/var/tmp), ARGS (more flags for
#      both push and pull, e.g. "--part-size-mb 16" to compare builds with other defaults).
set -euo pipefail
A=${A:?path of build A}; B=${B:?path of build B}
SIZE_MIB=${SIZE_MIB:-1024}; ROUNDS=${ROUNDS:-3}
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-transfer-ab.XXXXXX")
source "$(dirname "$0")/sidecar_common.sh"
trap 'serve_stop; rm -rf "$W"' EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
now() { date +%s.%N; }
# One file per push into a volume: the same bytes twice would only be deduplicated.
for conns in 1 4; do head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/src$conns.bin"; done
BYTES=$((SIZE_MIB << 20))
one() { # build label
  local bin=$1 label=$2
  serve_fresh "$bin"
  for conns in 1 4; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    local t0 t1 t2 t3
    t0=$(now); "$bin" push "$W/src$conns.bin" "$BASE/files/f$conns.bin" --connections $conns ${ARGS:-} -q; t1=$(now)
    rm -f "$W/back.bin"; sync; echo 3 > /proc/sys/vm/drop_caches
    t2=$(now); "$bin" pull "$BASE/files/f$conns.bin" "$W/back.bin" --connections $conns ${ARGS:-} -q; t3=$(now)
    cmp -s "$W/src$conns.bin" "$W/back.bin" || { echo "$label: pull differs" >&2; exit 1; }
    local up down
    up=$(python3 -c "print(f'{$BYTES/1e6/($t1-$t0):.1f}')"); down=$(python3 -c "print(f'{$BYTES/1e6/($t3-$t2):.1f}')")
    runs["$label push $conns"]+="$up "; runs["$label pull $conns"]+="$down "
    echo "$label conns=$conns push $up MB/s pull $down MB/s" >&2
  done
  serve_stop
}
ab_rounds
ab_table "transfer" "push 1" "pull 1" "push 4" "pull 4"
