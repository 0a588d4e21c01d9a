#!/usr/bin/env bash
# The FUSE floor for large reads: one file of random bytes written into an in-memory FUSE
# file system that does no work (examples/fuse_floor.rs, served by nanofs's transports
# with nanofs's options), into nanofs and into gocryptfs, then `cat` after `drop_caches`.
# nanofs and gocryptfs are remounted before the read; the floor keeps its bytes in its
# own memory, so its read costs only the kernel's requests, the round trips and one copy
# per reply: no FUSE file system can read faster here. ext4's own read of the same file
# is measured in each round as well. Rounds alternate the order. Prints Markdown.
# Turns the kernel's FUSE over io_uring on (the fuse module's enable_uring).
#
#   benches/scripts/read_floor.sh                  # 2 GiB, 3 rounds
#   MIB=4096 RUNS=2 benches/scripts/read_floor.sh
#
# Env: MIB (2048), RUNS (3), NANOFS_BIN, FLOOR_BIN
#      (~/.cache/nanofs-target/release/{nanofs,examples/fuse_floor}), BENCH_DIR (/var/tmp).
set -Eeuo pipefail

MIB=${MIB:-2048} RUNS=${RUNS:-3}
. "$(dirname "$0")/floor_common.sh"

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-read-floor.XXXXXX")
cleanup() {
  mountpoint -q "$W/mnt" && fusermount3 -uz "$W/mnt"
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/mnt"
head -c "${MIB}M" /dev/urandom > "$W/src.bin"
echo "bench-$RANDOM" > "$W/pass"

# Mounts file system $1 (floor-dev, floor-uring, nanofs, gocryptfs) on $W/mnt over $W/vol.
mount_fs() {
  local fs=${1%-*} transport=${1#*-}
  case $fs in
    floor) "$FLOOR_BIN" "$W/mnt" "$transport" & ;;
    gocryptfs) gocryptfs -q -nosyslog -passfile "$W/pass" "$W/vol" "$W/mnt" ;;
    nanofs) "$NANOFS_BIN" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass" ;;
  esac
  until mountpoint -q "$W/mnt"; do sleep 0.05; done
}
umount_fs() {
  if [[ $1 == nanofs ]]; then "$NANOFS_BIN" umount "$W/mnt"; else fusermount3 -u "$W/mnt"; fi
  wait
}
# One run of file system $1: writes the file, remounts (not the floor), reads it back
# after drop_caches; prints MB/s of the read.
run() {
  local fs=$1 t0 t1
  rm -rf "$W/vol"
  case $fs in
    gocryptfs) mkdir "$W/vol"; gocryptfs -q -init -passfile "$W/pass" "$W/vol" >/dev/null 2>&1 ;;
    nanofs) "$NANOFS_BIN" init "$W/vol" --passphrase-file "$W/pass" >/dev/null ;;
  esac
  mount_fs "$fs"
  cp "$W/src.bin" "$W/mnt/f.bin"; sync
  if [[ $fs != floor-* ]]; then umount_fs "$fs"; mount_fs "$fs"; fi
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$EPOCHREALTIME; cat "$W/mnt/f.bin" > /dev/null; t1=$EPOCHREALTIME
  cmp -s "$W/src.bin" "$W/mnt/f.bin" || { echo "$fs read back different bytes" >&2; exit 1; }
  umount_fs "$fs"
  rm -rf "$W/vol"
  awk -v a="$t0" -v b="$t1" -v m="$MIB" 'BEGIN { printf "%.1f", m * 1.048576 / (b - a) }'
}
ext4() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  local t0=$EPOCHREALTIME; cat "$W/src.bin" > /dev/null; local t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" -v m="$MIB" 'BEGIN { printf "%.1f", m * 1.048576 / (b - a) }'
}

echo "# FUSE floor: cat of one $MIB MiB file after drop_caches, MB/s"
echo
echo "- $(uname -r), $(nproc) CPUs; $(date --rfc-3339=seconds); $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
FSES=(floor-dev floor-uring nanofs gocryptfs ext4)
echo "| round | ${FSES[*]/%/ |} "
echo "|---|$(printf -- '---:|%.0s' "${FSES[@]}")"
declare -A all
for ((r = 1; r <= RUNS; r++)); do
  order=("${FSES[@]}")
  if ((r % 2 == 0)); then order=(gocryptfs nanofs floor-uring floor-dev ext4); fi
  declare -A got=()
  for fs in "${order[@]}"; do
    if [[ $fs == ext4 ]]; then got[$fs]=$(ext4); else got[$fs]=$(run "$fs"); fi
    all[$fs]+="${got[$fs]} "
  done
  row="| $r"
  for fs in "${FSES[@]}"; do row+=" | ${got[$fs]}"; done
  echo "$row |"
done
med() { tr ' ' '\n' <<< "${all[$1]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo -n "- medians:"; for fs in "${FSES[@]}"; do echo -n " $fs $(med "$fs"),"; done; echo
echo "- floor / gocryptfs: $(ratio floor-dev gocryptfs)x over /dev/fuse, $(ratio floor-uring gocryptfs)x over io_uring (the most any FUSE file system can read faster than gocryptfs here)"
echo "- nanofs / gocryptfs $(ratio nanofs gocryptfs)x; nanofs / floor $(ratio nanofs floor-dev)x (/dev/fuse), $(ratio nanofs floor-uring)x (io_uring)"
