#!/usr/bin/env bash
# Where the sidecar's time goes during one upload and one download (docs/benchmarks.md):
# `nanofs serve` on a fresh volume, `perf record -g` on it while `nanofs push` and then
# `nanofs pull` move SIZE_MIB of random bytes over loopback with CONNS connections; prints
# the rate, the CPU time by thread (comm) and the hottest symbols of each direction.
# Env: SIZE_MIB (1024), CONNS (1), WORK (/var/tmp), NANOFS_BIN (release build),
#      CALLERS_OF (a symbol whose callers to print too, e.g. chacha20_poly1305_open_avx2),
#      PERCENT_LIMIT (1.5: the smallest share of a symbol listed).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${SIZE_MIB:-1024}
CONNS=${CONNS:-1}
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-profile.XXXXXX")
source benches/scripts/sidecar_common.sh
trap 'serve_stop; rm -rf "$W"' EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
now() { date +%s.%N; }
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/src.bin"
serve_fresh "$NANOFS"

# profile NAME COMMAND...: runs COMMAND with perf recording the sidecar meanwhile.
profile() {
  local name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches
  perf record -q -F 499 --call-graph dwarf,16384 -p "$SERVE_PID" -o "$W/$name.data" 2>/dev/null &
  local perf_pid=$!
  sleep 0.5
  local t0 t1; t0=$(now); "$@"; t1=$(now)
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  python3 -c "import sys; print(f'== $name: {$SIZE_MIB * 1048576 / 1e6 / ($t1 - $t0):.1f} MB/s, $CONNS connection(s)')"
  echo "-- CPU samples by thread"
  perf report -q -i "$W/$name.data" --no-children --sort pid --stdio -g none 2>/dev/null | grep -v "^$" | head -12
  echo "-- hottest symbols (self)"
  perf report -q -i "$W/$name.data" --no-children --sort dso,symbol --percent-limit ${PERCENT_LIMIT:-1.5} --stdio -g none 2>/dev/null \
    | grep -v '^$' | head -25 | cut -c1-110
  if [ -n "${CALLERS_OF:-}" ]; then
    echo "-- who calls $CALLERS_OF"
    perf report -q -i "$W/$name.data" --no-children -S "$CALLERS_OF" -G --stdio 2>/dev/null \
      | grep -v "^$" | head -${CALLERS_LINES:-60} | cut -c1-140
  fi
}
profile upload "$NANOFS" push "$W/src.bin" "$BASE/files/f.bin" --connections "$CONNS" -q
profile download "$NANOFS" pull "$BASE/files/f.bin" "$W/back.bin" --connections "$CONNS" -q
cmp -s "$W/src.bin" "$W/back.bin" || { echo "the pulled copy differs" >&2; exit 1; }
