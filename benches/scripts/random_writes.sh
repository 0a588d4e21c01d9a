#!/usr/bin/env bash
# Random writes into a large file, and copying a large file, on nanofs and gocryptfs in
# the same run (alternating rounds); optionally a second nanofs binary (before/after).
# Prints Markdown.
#
#   sudo benches/scripts/random_writes.sh                       # nanofs at HEAD vs gocryptfs
#   sudo benches/scripts/random_writes.sh /tmp/nanofs-before    # also an older binary
#
# Per round and file system:
#   - fio: random writes of 4-128 KiB (bsrange) into a 1 GiB file of random bytes, for
#     IO_MIB of writes, then fsync; MB/s as fio reports it. Every write carries new random
#     bytes (--refill_buffers): fio otherwise repeats one buffer, which dedup would absorb.
#   - write amplification: bytes the daemon caused to be written to disk during fio
#     (/proc/PID/io write_bytes, after a sync) divided by the bytes fio wrote.
#   - disk use of the volume directory after fio (du), against the file's size.
#   - cp of a COPY_GIB file inside the mount, then sync: seconds.
#
# Env: RUNS (2), FILE_MIB (1024), IO_MIB (256), COPY_GIB (5), BENCH_DIR (/var/tmp),
#      NANOFS_BIN (~/.cache/nanofs-target/release/nanofs).
set -Eeuo pipefail

OLD=${1:-}
RUNS=${RUNS:-2} FILE_MIB=${FILE_MIB:-1024} IO_MIB=${IO_MIB:-256} COPY_GIB=${COPY_GIB:-5}
NANOFS_BIN=${NANOFS_BIN:-$HOME/.cache/nanofs-target/release/nanofs}
[[ $EUID -eq 0 ]] || { echo "run as root (FUSE mounts, drop_caches)" >&2; exit 1; }
for c in fio gocryptfs; do
  command -v $c > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $c > /dev/null
done

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-rw.XXXXXX")
trap 'fusermount3 -u "$W/mnt" 2>/dev/null || true; rm -rf "$W"' EXIT
echo "bench-$RANDOM" > "$W/pass"
# Private copies: a concurrent build must not swap a binary between rounds.
cp "$NANOFS_BIN" "$W/nanofs-new"
FSES=(new gocryptfs)
if [[ -n $OLD ]]; then cp "$OLD" "$W/nanofs-old"; FSES=(old new gocryptfs); fi
head -c "${FILE_MIB}M" /dev/urandom > "$W/file"
head -c "$((COPY_GIB << 10))M" /dev/urandom > "$W/big"

mount_fs() {  # $1: old | new | gocryptfs; sets PID
  local vol=$W/vol mnt=$W/mnt
  rm -rf "$vol" "$mnt"; mkdir "$vol" "$mnt"
  if [[ $1 == gocryptfs ]]; then
    gocryptfs -q -init -passfile "$W/pass" "$vol" > /dev/null
    gocryptfs -q -nosyslog -passfile "$W/pass" "$vol" "$mnt"
  else
    "$W/nanofs-$1" init "$vol" --passphrase-file "$W/pass" > /dev/null
    "$W/nanofs-$1" mount "$vol" "$mnt" --passphrase-file "$W/pass" > /dev/null
  fi
  PID=$(pgrep -n -f -- " $vol $mnt( |\$)")
}
umount_fs() {
  if [[ $1 == gocryptfs ]]; then fusermount3 -u "$W/mnt"; else "$W/nanofs-$1" umount "$W/mnt"; fi
  while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
}
written() { awk '/^write_bytes/ { print $2 }' "/proc/$PID/io"; }

# One round of $1: prints "MB/s amplification disk_MiB copy_seconds".
round() {
  local fs=$1 bw w0 w1 disk s e
  mount_fs "$fs"
  cp "$W/file" "$W/mnt/file"; sync
  sync; echo 3 > /proc/sys/vm/drop_caches
  w0=$(written)
  bw=$(fio --name=rw --filename="$W/mnt/file" --rw=randwrite --bsrange=4k-128k --size="${FILE_MIB}M" \
    --io_size="${IO_MIB}M" --ioengine=psync --end_fsync=1 --randseed=42 --refill_buffers --output-format=terse \
    | awk -F';' '{ printf "%.1f", $48 / 1024 }')
  sync; w1=$(written)
  disk=$(du -sm "$W/vol" | cut -f1)
  rm "$W/mnt/file"
  cp "$W/big" "$W/mnt/big.src"; sync
  s=$EPOCHREALTIME
  cp "$W/mnt/big.src" "$W/mnt/big.copy"; sync
  e=$EPOCHREALTIME
  umount_fs "$fs"
  awk -v bw="$bw" -v w="$((w1 - w0))" -v io="$((IO_MIB << 20))" -v d="$disk" -v s="$s" -v e="$e" \
    'BEGIN { printf "%s %.2f %s %.2f\n", bw, w / io, d, e - s }'
}

echo "# random writes and copies: nanofs vs gocryptfs"
echo
echo "\`$0 $OLD\` (RUNS=$RUNS FILE_MIB=$FILE_MIB IO_MIB=$IO_MIB COPY_GIB=$COPY_GIB), $(date --rfc-3339=seconds)"
echo
echo "| round | fs | fio randwrite 4-128 KiB, MB/s | write ampl. | volume on disk, MiB (file: $FILE_MIB) | cp of $COPY_GIB GiB in the mount, s |"
echo "|---|---|---|---|---|---|"
declare -A sum
for ((r = 1; r <= RUNS; r++)); do
  for fs in "${FSES[@]}"; do
    read -r bw amp disk cps < <(round "$fs")
    echo "| $r | $fs | $bw | $amp | $disk | $cps |"
    sum[$fs]=$(awk -v a="${sum[$fs]:-0 0}" -v b="$bw" -v c="$cps" 'BEGIN { split(a, x, " "); print x[1] + b, x[2] + c }')
  done
done
echo
for fs in "${FSES[@]}"; do
  read -r b c <<< "${sum[$fs]}"
  read -r gb gc <<< "${sum[gocryptfs]}"
  awk -v fs="$fs" -v b="$b" -v c="$c" -v gb="$gb" -v gc="$gc" -v n="$RUNS" \
    'BEGIN { printf "- %s: mean %.1f MB/s (%.2fx gocryptfs), cp %.2f s (gocryptfs / this: %.1fx)\n", fs, b / n, b / gb, c / n, gc / c }'
done
