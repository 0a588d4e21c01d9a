#!/usr/bin/env bash
# Reads through the mount with two builds of nanofs, A and B, alternated on one volume:
# files of random bytes are written once (with B), then each round mounts the volume with
# A and with B (order alternating), drops the page cache and `cat`s every file. Prints MB/s
# per run with the daemon's CPU seconds, the medians and B/A.
# Env: A, B (binaries, may be the same one), A_OPTS, B_OPTS (mount options of each, e.g.
#      A_OPTS=transport=dev B_OPTS=transport=uring), MIB (2048), FILE_MIB (128: MIB is
#      split in files of this size; MIB for one file),
#      ROUNDS (3), WORK (/var/tmp).
set -euo pipefail
A_OPTS=${A_OPTS:-} B_OPTS=${B_OPTS:-}
A=${A:?path of build A}; B=${B:?path of build B}
MIB=${MIB:-2048}; FILE_MIB=${FILE_MIB:-128}; ROUNDS=${ROUNDS:-3}
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-read-ab.XXXXXX")
cleanup() { mountpoint -q "$W/mnt" && fusermount3 -uz "$W/mnt"; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/mnt" "$W/src"
echo bench > "$W/pass"
for i in $(seq 0 $((MIB / FILE_MIB - 1))); do head -c "${FILE_MIB}M" /dev/urandom > "$W/src/f$i.bin"; done
"$B" init "$W/vol" --passphrase-file "$W/pass" >/dev/null
"$B" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass"
cp -r "$W/src" "$W/mnt/"; sync; "$B" stats "$W/vol" >/dev/null; "$B" umount "$W/mnt"
rm -rf "$W/src"
declare -A runs cpus
one() {
  local bin=$1 label=$2 t0 t1
  local opts=${label}_OPTS
  "$bin" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass" ${!opts:+-o "${!opts}"}
  local pid c0 c1; pid=$(pgrep -n -f -- " $W/vol $W/mnt")
  sync; echo 3 > /proc/sys/vm/drop_caches
  c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  t0=$(date +%s.%N); cat "$W"/mnt/src/* > /dev/null; t1=$(date +%s.%N)
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  "$bin" umount "$W/mnt"
  local r; r=$(python3 -c "print(f'{$MIB*1.048576/($t1-$t0):.1f}')")
  local cpu; cpu=$(python3 -c "print(f'{($c1-$c0)/$(getconf CLK_TCK):.2f}')")
  runs[$label]+="$r "; cpus[$label]+="$cpu "; echo "$label $r MB/s, daemon CPU $cpu s" >&2
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one "$A" A; one "$B" B; else one "$B" B; one "$A" A; fi
done
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.1f}')" $1; }
a=$(median "${runs[A]}"); b=$(median "${runs[B]}")
ca=$(median "${cpus[A]}"); cb=$(median "${cpus[B]}")
echo "read of $MIB MiB through the mount: A $a MB/s (${runs[A]% }), B $b MB/s (${runs[B]% }), B/A $(python3 -c "print(f'{$b/$a:.2f}')")"
echo "daemon CPU s: A $ca (${cpus[A]% }), B $cb (${cpus[B]% }), B/A $(python3 -c "print(f'{$cb/$ca:.2f}')")"
