#!/usr/bin/env bash
# How much page cache one read of a file through the mount takes, for each build given:
# a file of MIB random bytes is written into a fresh volume, the volume is mounted again,
# the page cache dropped, and the file read with `cat`. Prints the growth of the page
# cache (`Cached` in /proc/meminfo) and how much of the packs stayed resident (`fincore`).
#   benches/scripts/read_page_cache.sh BIN...        Env: MIB (2048), WORK (/var/tmp)
set -euo pipefail
MIB=${MIB:-2048}
[ $# -gt 0 ] || { echo "usage: $0 BIN..." >&2; exit 1; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-read-cache.XXXXXX")
cleanup() { mountpoint -q "$W/mnt" && fusermount3 -uz "$W/mnt"; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/mnt"; echo bench > "$W/pass"
head -c "${MIB}M" /dev/urandom > "$W/src.bin"
for bin in "$@"; do
  rm -rf "$W/vol"
  "$bin" init "$W/vol" --passphrase-file "$W/pass" >/dev/null
  "$bin" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass"
  cp "$W/src.bin" "$W/mnt/"; sync; "$bin" stats "$W/vol" >/dev/null; "$bin" umount "$W/mnt"
  "$bin" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass"
  sync; echo 3 > /proc/sys/vm/drop_caches
  c0=$(awk '/^Cached:/ {print $2}' /proc/meminfo)
  cat "$W/mnt/src.bin" > /dev/null
  c1=$(awk '/^Cached:/ {print $2}' /proc/meminfo)
  packs=$(fincore --bytes --noheadings --output RES "$W"/vol/packs/* | awk '{s += $1} END {printf "%.0f", s / 1048576}')
  echo "$bin: reading $MIB MiB through the mount grew the page cache by $(((c1 - c0) / 1024)) MiB; packs resident: $packs MiB"
  "$bin" umount "$W/mnt"
done
