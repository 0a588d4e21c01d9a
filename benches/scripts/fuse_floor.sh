#!/usr/bin/env bash
# The FUSE floor for small files: `rsync -a` of a tree into an in-memory FUSE file system
# that does no work (examples/fuse_floor.rs, mounted with nanofs's options), into
# gocryptfs and into nanofs, in alternating rounds, each into a fresh mount with the
# source in the page cache. Prints per round the wall time of each, then the means and
# ratios. Prints Markdown.
#
#   sudo benches/scripts/fuse_floor.sh                       # /usr/share/doc, 3 rounds
#   RUNS=2 TREE=/usr/share benches/scripts/fuse_floor.sh
#
# Env: RUNS (3), TREE (/usr/share/doc), NANOFS_BIN, FLOOR_BIN
#      (~/.cache/nanofs-target/release/{nanofs,examples/fuse_floor}), BENCH_DIR (/var/tmp).
set -Eeuo pipefail

RUNS=${RUNS:-3} TREE=${TREE:-/usr/share/doc}
T=${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release
NANOFS_BIN=${NANOFS_BIN:-$T/nanofs} FLOOR_BIN=${FLOOR_BIN:-$T/examples/fuse_floor}
[[ $EUID -eq 0 ]] || { echo "run as root (FUSE mounts, drop_caches)" >&2; exit 1; }
for b in "$NANOFS_BIN" "$FLOOR_BIN"; do
  [[ -x $b ]] || { echo "$b missing: cargo build --release --bin nanofs --example fuse_floor" >&2; exit 1; }
done
command -v gocryptfs >/dev/null || { echo "needs gocryptfs" >&2; exit 1; }

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-floor.XXXXXX")
cleanup() {
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
cp -a "$TREE" "$W/src"
echo "bench-$RANDOM" > "$W/pass"
files=$(find "$W/src" -type f | wc -l)

# One run of file system $1: prints the rsync wall time in seconds.
run() {
  local fs=$1 t0 t1
  rm -rf "$W/vol" "$W/mnt"; mkdir -p "$W/mnt"
  case $fs in
    floor) "$FLOOR_BIN" "$W/mnt" & ;;
    gocryptfs) mkdir "$W/vol"; gocryptfs -q -init -passfile "$W/pass" "$W/vol" >/dev/null 2>&1
               gocryptfs -q -nosyslog -passfile "$W/pass" "$W/vol" "$W/mnt" ;;
    nanofs) "$NANOFS_BIN" init "$W/vol" --passphrase-file "$W/pass" >/dev/null
            "$NANOFS_BIN" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass" ;;
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
  rm -rf "$W/vol"; sleep 31
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

echo "# FUSE floor: rsync -a of $TREE ($files files)"
echo
echo "- $(uname -r), $(nproc) CPUs; $(date --rfc-3339=seconds)"
echo
echo "| round | floor s | nanofs s | gocryptfs s |"
echo "|---|---:|---:|---:|"
declare -A sum=([floor]=0 [nanofs]=0 [gocryptfs]=0)
for ((r = 1; r <= RUNS; r++)); do
  row="| $r"
  for fs in floor nanofs gocryptfs; do
    s=$(run "$fs")
    sum[$fs]=$(awk -v a="${sum[$fs]}" -v b="$s" 'BEGIN { print a + b }')
    row+=" | $s"
  done
  echo "$row |"
done
m() { awk -v s="${sum[$1]}" -v n="$RUNS" 'BEGIN { printf "%.2f", s / n }'; }
echo
echo "- means: floor $(m floor) s, nanofs $(m nanofs) s, gocryptfs $(m gocryptfs) s"
echo "- gocryptfs / floor: $(awk -v a="$(m gocryptfs)" -v b="$(m floor)" 'BEGIN { printf "%.2f", a / b }')x (the most any FUSE file system can be faster than gocryptfs here)"
echo "- gocryptfs / nanofs: $(awk -v a="$(m gocryptfs)" -v b="$(m nanofs)" 'BEGIN { printf "%.2f", a / b }')x"
echo "- nanofs / floor: $(awk -v a="$(m nanofs)" -v b="$(m floor)" 'BEGIN { printf "%.2f", a / b }')x (nanofs's own work on top of the round trips)"
