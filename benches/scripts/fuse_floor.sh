#!/usr/bin/env bash
# The FUSE floor for small files: `rsync -a` of a tree into an in-memory FUSE file system
# that does no work (examples/fuse_floor.rs, served by nanofs's transports with nanofs's
# options), into nanofs, each on both transports (/dev/fuse and io_uring), and into
# gocryptfs, in alternating rounds, each into a fresh mount with the source in the page
# cache. Prints per round the wall time of each, then the means and ratios. Prints Markdown.
# Turns the kernel's FUSE over io_uring on (the fuse module's enable_uring).
#
#   sudo benches/scripts/fuse_floor.sh                       # /usr/share/doc, 3 rounds
#   RUNS=2 TREE=/usr/share benches/scripts/fuse_floor.sh
#
# Env: RUNS (3), TREE (/usr/share/doc), NANOFS_BIN, FLOOR_BIN
#      (~/.cache/nanofs-target/release/{nanofs,examples/fuse_floor}), BENCH_DIR (/var/tmp).
set -Eeuo pipefail

RUNS=${RUNS:-3} TREE=${TREE:-/usr/share/doc}
. "$(dirname "$0")/floor_common.sh"

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-floor.XXXXXX")
cleanup() {
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
cp -a "$TREE" "$W/src"
echo "bench-$RANDOM" > "$W/pass"
files=$(find "$W/src" -type f | wc -l)

# One run of file system $1 (floor-dev, floor-uring, nanofs-dev, nanofs-uring, gocryptfs):
# prints the rsync wall time in seconds.
run() {
  local fs=${1%-*} transport=${1#*-} t0 t1
  rm -rf "$W/vol" "$W/mnt"; mkdir -p "$W/mnt"
  case $fs in
    floor) "$FLOOR_BIN" "$W/mnt" "$transport" & ;;
    gocryptfs) mkdir "$W/vol"; gocryptfs -q -init -passfile "$W/pass" "$W/vol" >/dev/null 2>&1
               gocryptfs -q -nosyslog -passfile "$W/pass" "$W/vol" "$W/mnt" ;;
    nanofs) "$NANOFS_BIN" init "$W/vol" --passphrase-file "$W/pass" >/dev/null
            "$NANOFS_BIN" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass" -o "transport=$transport" ;;
  esac
  until mountpoint -q "$W/mnt"; do sleep 0.05; done
  sync; echo 3 > /proc/sys/vm/drop_caches; find "$W/src" -type f -exec cat {} + > /dev/null
  t0=$EPOCHREALTIME
  rsync -a "$W/src/" "$W/mnt/"
  t1=$EPOCHREALTIME
  if [[ $fs == nanofs ]]; then "$NANOFS_BIN" umount "$W/mnt"; else fusermount3 -u "$W/mnt"; fi
  wait
  # ext4 without a journal scans inodes deleted in the last 30 s when it allocates new
  # ones: gocryptfs's cipher files are deleted and the next round waits that out.
  rm -rf "$W/vol"; [[ $fs == floor ]] || sleep 31
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

echo "# FUSE floor: rsync -a of $TREE ($files files)"
echo
echo "- $(uname -r), $(nproc) CPUs; $(date --rfc-3339=seconds)"
echo
FSES=(floor-dev floor-uring nanofs-dev nanofs-uring gocryptfs)
echo "| round | ${FSES[*]/%/ s |} "
echo "|---|$(printf -- '---:|%.0s' "${FSES[@]}")"
declare -A sum
for fs in "${FSES[@]}"; do sum[$fs]=0; done
for ((r = 1; r <= RUNS; r++)); do
  row="| $r"
  for fs in "${FSES[@]}"; do
    s=$(run "$fs")
    sum[$fs]=$(awk -v a="${sum[$fs]}" -v b="$s" 'BEGIN { print a + b }')
    row+=" | $s"
  done
  echo "$row |"
done
m() { awk -v s="${sum[$1]}" -v n="$RUNS" 'BEGIN { printf "%.2f", s / n }'; }
ratio() { awk -v a="$(m "$1")" -v b="$(m "$2")" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo -n "- means:"; for fs in "${FSES[@]}"; do echo -n " $fs $(m "$fs") s,"; done; echo
for t in dev uring; do
  echo "- on $t: gocryptfs / floor $(ratio gocryptfs floor-$t)x (the most any FUSE file system can be faster than gocryptfs here), gocryptfs / nanofs $(ratio gocryptfs nanofs-$t)x, nanofs / floor $(ratio nanofs-$t floor-$t)x (nanofs's own work on top of the round trips)"
done
echo "- io_uring against /dev/fuse: floor $(ratio floor-dev floor-uring)x, nanofs $(ratio nanofs-dev nanofs-uring)x faster"
