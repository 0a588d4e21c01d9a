#!/usr/bin/env bash
# A/B of two nanofs binaries on one large file, with gocryptfs in every round as the
# yardstick: alternating runs of `cp` of one file of random bytes into a fresh mount, then
# `sync` (and, for nanofs, `nanofs stats`, which waits until the file is committed), so
# all three see the same machine state. Prints, per run, the wall time, the daemon's CPU
# time and its peak RSS, then the means. Prints Markdown.
#
#   sudo benches/scripts/big_file_ab.sh /tmp/nanofs-before ~/.cache/nanofs-target/release/nanofs
#
#   A_OPTS=transport=dev B_OPTS=transport=uring benches/scripts/big_file_ab.sh BIN BIN
#
# Env: RUNS (3), GIB (5), BENCH_DIR (/var/tmp), A_OPTS, B_OPTS (mount options of each).
set -Eeuo pipefail

A=${1:?binary A} B=${2:?binary B}
RUNS=${RUNS:-3} GIB=${GIB:-5} A_OPTS=${A_OPTS:-} B_OPTS=${B_OPTS:-}
[[ $EUID -eq 0 ]] || { echo "run as root (FUSE mounts, drop_caches)" >&2; exit 1; }
command -v gocryptfs > /dev/null || { echo "needs gocryptfs (apt-get install gocryptfs)" >&2; exit 1; }
HZ=$(getconf CLK_TCK)

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-ab.XXXXXX")
trap 'fusermount3 -u "$W/mnt" 2>/dev/null || true; rm -rf "$W"' EXIT
head -c "$((GIB << 10))M" /dev/urandom > "$W/src"
echo "bench-$RANDOM" > "$W/pass"

# One run of binary $1 (or "gocryptfs") with mount options $2: prints "wall daemon_cpu
# peak_rss_mib".
run() {
  local bin=$1 opts=$2 vol=$W/vol mnt=$W/mnt pid s e cpu hwm
  rm -rf "$vol" "$mnt"; mkdir "$vol" "$mnt"
  sync; echo 3 > /proc/sys/vm/drop_caches; cat "$W/src" > /dev/null
  if [[ $bin == gocryptfs ]]; then
    gocryptfs -q -init -passfile "$W/pass" "$vol" > /dev/null
    gocryptfs -q -nosyslog -passfile "$W/pass" "$vol" "$mnt"
  else
    "$bin" init "$vol" --passphrase-file "$W/pass" > /dev/null
    "$bin" mount "$vol" "$mnt" --passphrase-file "$W/pass" ${opts:+-o "$opts"} > /dev/null
  fi
  pid=$(pgrep -n -f -- " $vol $mnt( |\$)")
  s=$EPOCHREALTIME
  cp "$W/src" "$mnt/big"
  sync
  if [[ $bin != gocryptfs ]]; then "$bin" stats "$vol" > /dev/null; fi
  e=$EPOCHREALTIME
  cpu=$(awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat")
  hwm=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
  fusermount3 -u "$mnt"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  echo "$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }') $cpu $hwm"
}

echo "# one large file A/B: \`cp\` of $GIB GiB of random bytes + sync"
echo
echo "- A: $A ${A_OPTS:+-o $A_OPTS}"
echo "- B: $B ${B_OPTS:+-o $B_OPTS}"
echo
echo "| run | binary | wall s | daemon CPU s | peak RSS MiB |"
echo "|---|---|---:|---:|---:|"
declare -A sum
for r in $(seq "$RUNS"); do
  for side in A B gocryptfs; do
    if [[ $side == gocryptfs ]]; then bin=gocryptfs opts=; else bin=${!side} opts=${side}_OPTS opts=${!opts}; fi
    read -r wall cpu hwm < <(run "$bin" "$opts")
    echo "| $r | $side | $wall | $cpu | $hwm |"
    sum[$side]=$(awk -v a="${sum[$side]:-0}" -v b="$wall" 'BEGIN { print a + b }')
  done
done
echo
for side in A B gocryptfs; do
  echo "- $side: mean wall $(awk -v s="${sum[$side]}" -v n="$RUNS" 'BEGIN { printf "%.2f", s / n }') s"
done
echo "- throughput B / A: $(awk -v a="${sum[A]}" -v b="${sum[B]}" 'BEGIN { printf "%.2f", a / b }')," \
  "A / gocryptfs: $(awk -v a="${sum[A]}" -v g="${sum[gocryptfs]}" 'BEGIN { printf "%.2f", g / a }')," \
  "B / gocryptfs: $(awk -v b="${sum[B]}" -v g="${sum[gocryptfs]}" 'BEGIN { printf "%.2f", g / b }')"
