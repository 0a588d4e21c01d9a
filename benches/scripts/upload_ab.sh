#!/usr/bin/env bash
# Two builds of nanofs, A and B, receiving the same upload over loopback, alternated
# round by round (A B, then B A: this machine is noisy). Each run: a fresh volume, page
# cache dropped, one upload of SIZE_MIB with `nanofs push` (CONNECTIONS connections, 16 MiB
# PATCHes with a CRC-32C each) or tuspy (CLIENT=tuspy: 8 MiB PATCHes, no checksum), while
# `perf stat` counts the sidecar's CPU time, page faults and context switches. Prints
# each run, then the medians and B/A.
# Env: A, B (binaries), CLIENT (push or tuspy), CONNECTIONS (1, push only), SIZE_MIB (1024),
#      ROUNDS (6), WORK (/var/tmp).
set -euo pipefail
A=${A:?path of build A}; B=${B:?path of build B}
CLIENT=${CLIENT:-push}; CONNECTIONS=${CONNECTIONS:-1}; SIZE_MIB=${SIZE_MIB:-1024}; ROUNDS=${ROUNDS:-6}
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-upload-ab.XXXXXX")
source "$(dirname "$0")/sidecar_common.sh"
trap 'serve_stop; rm -rf "$W"' EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/src.bin"
PY="$HOME/.cache/nanofs-venv/bin/python"
declare -A figures
upload() { # build
  if [ "$CLIENT" = tuspy ]; then
    "$PY" - "$BASE" "$NANOFS_TOKEN" "$W/src.bin" <<'PY'
import sys
from tusclient import client
base, token, src = sys.argv[1:4]
c = client.TusClient(base + "/uploads", headers={"Authorization": "Bearer " + token})
c.uploader(src, chunk_size=8 << 20, metadata={"path": "/tus.bin"}).upload()
PY
  else
    "$1" push "$W/src.bin" "$BASE/files/f.bin" --connections "$CONNECTIONS" -q
  fi
}
one() { # build label
  serve_fresh "$1"
  sync; echo 3 > /proc/sys/vm/drop_caches
  perf stat -e task-clock,page-faults,context-switches -p "$SERVE_PID" -o "$W/stat" 2>/dev/null &
  local perf_pid=$! t0 t1 line
  sleep 0.3
  t0=$(date +%s.%N); upload "$1"; t1=$(date +%s.%N)
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  serve_stop
  line=$(python3 - "$W/stat" "$SIZE_MIB" "$t0" "$t1" <<'PY'
import sys
stat, mib, t0, t1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
n = {}
for l in open(stat):
    parts = l.split()
    if len(parts) >= 2 and parts[1] in ("msec", "page-faults", "context-switches"):
        n[parts[1]] = float(parts[0].replace(",", ""))
print(f"{mib * 1048576 / 1e6 / (t1 - t0):.1f} {n['msec'] / 1000:.2f} {n['page-faults']:.0f} {n['context-switches']:.0f}")
PY
)
  read -r rate cpu faults switches <<<"$line"
  echo "$2 $CLIENT: $rate MB/s, sidecar CPU $cpu s, $faults page faults, $switches context switches"
  figures["$2 rate"]+="$rate "; figures["$2 cpu"]+="$cpu "
  figures["$2 faults"]+="$faults "; figures["$2 switches"]+="$switches "
}
ab_rounds
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" $1; }
echo "| $CLIENT ($CONNECTIONS connection(s) for push), $SIZE_MIB MiB, $ROUNDS rounds | A (median) | B (median) | B/A |"
echo "|---|---:|---:|---:|"
for key in "rate:MB/s" "cpu:sidecar CPU, s" "faults:page faults" "switches:context switches"; do
  a=$(median "${figures[A ${key%%:*}]}"); b=$(median "${figures[B ${key%%:*}]}")
  echo "| ${key#*:} | $a | $b | $(python3 -c "print(f'{$b/$a:.2f}')") |"
done
