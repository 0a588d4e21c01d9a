#!/usr/bin/env bash
# nanofs on a three-node Garage cluster (replication 3, loopback) against rclone copying the
# same media into the same cluster, and against nanofs on its local backend, in one run;
# then the time to rebuild a volume of FILES files on another "host" from the bucket alone.
# Prints Markdown.
#
#   sudo benches/scripts/object_store.sh
#   MEDIA_GIB=1 FILES=10000 benches/scripts/object_store.sh     # smoke
#
# Env: MEDIA_GIB (4; in 100 MiB files), FILES (100000), BENCH_DIR (/var/tmp),
#      NANOFS_BIN (~/.cache/nanofs-target/release/nanofs), KEEP=1 keeps the scratch dir.
set -Eeuo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MEDIA_GIB=${MEDIA_GIB:-4} FILES=${FILES:-100000}
NANOFS_BIN=${NANOFS_BIN:-$HOME/.cache/nanofs-target/release/nanofs}
cmdline="MEDIA_GIB=$MEDIA_GIB FILES=$FILES $0"
log() { printf '[%(%T)T] %s\n' -1 "$*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
trap 'log "error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
[[ $EUID -eq 0 ]] || { log "run as root"; exit 1; }
command -v rclone >/dev/null || { apt-get install -y rclone || { apt-get update && apt-get install -y rclone; }; } >&2

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-os-bench.XXXXXX")
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  "$REPO/scripts/garage-cluster.sh" stop "$work/garage" || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench

log "media: $MEDIA_GIB GiB of random data in 100 MiB files"
mkdir -p "$work/media"
n=$(calc "$MEDIA_GIB * 1024 / 100" 0)
for i in $(seq -w 1 "$n"); do head -c 100M /dev/urandom > "$work/media/clip$i.mp4"; done
bytes=$(du -sb "$work/media" | cut -f1)
# A fresh cluster for each client, so that each starts on empty disks (and the disk holds
# one set of replicas at a time).
fresh_cluster() {
  "$REPO/scripts/garage-cluster.sh" stop "$work/garage" >&2 || true
  rm -rf "$work/garage"
  "$REPO/scripts/garage-cluster.sh" start "$work/garage" 3 >&2
  endpoint=$(cat "$work/garage/endpoint")
  key_id=$(awk -F' = ' '/aws_access_key_id/ {print $2}' "$work/garage/credentials")
  secret=$(awk -F' = ' '/aws_secret_access_key/ {print $2}' "$work/garage/credentials")
  s3=(--s3-endpoint "$endpoint" --s3-bucket nanofs --s3-region garage --s3-credentials "$work/garage/credentials")
}

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Seconds of wall time of a command.
timed() { local t0; t0=$(date +%s.%N); "$@" >&2; calc "$(date +%s.%N) - $t0" 2; }

declare -A write read
for backend in s3 local; do
  vol=$work/vol-$backend mnt=$work/mnt-$backend
  mkdir -p "$mnt"
  if [[ $backend == s3 ]]; then
    fresh_cluster
    "$NANOFS_BIN" init "$vol" "${s3[@]}" --s3-prefix "bench/" >&2
    # Room on this disk for the media, three replicas and a 1 GiB cache.
    sed -i 's/^cache_gib = .*/cache_gib = 1/' "$vol/nanofs.toml"
  else
    "$NANOFS_BIN" init "$vol" >&2
  fi
  "$NANOFS_BIN" mount "$vol" "$mnt"; mounts+=("$mnt")
  drop
  log "nanofs ($backend): write"
  # cp, then an fsync of every file: acknowledged by the store (s3) or on disk (local).
  write[$backend]=$(timed bash -c "cp -r '$work/media' '$mnt/' && find '$mnt/media' -type f -exec sync {} +")
  "$NANOFS_BIN" umount "$mnt"
  # A cold read: the page cache dropped and, on s3, the local pack cache emptied.
  [[ $backend == s3 ]] && rm -rf "$vol/packs"
  "$NANOFS_BIN" mount "$vol" "$mnt"; drop
  log "nanofs ($backend): read"
  read[$backend]=$(timed bash -c "cat '$mnt'/media/* > /dev/null")
  "$NANOFS_BIN" umount "$mnt"
  rm -rf "$vol"
  [[ $backend == s3 ]] && { "$REPO/scripts/garage-cluster.sh" stop "$work/garage" >&2; rm -rf "$work/garage"; }
done

fresh_cluster
# rclone 1.60 refuses a CA bundle from the environment on a plain-HTTP endpoint.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG_G_TYPE=s3 RCLONE_CONFIG_G_PROVIDER=Other RCLONE_CONFIG_G_ENDPOINT=$endpoint \
  RCLONE_CONFIG_G_REGION=garage RCLONE_CONFIG_G_ACCESS_KEY_ID=$key_id RCLONE_CONFIG_G_SECRET_ACCESS_KEY=$secret
drop
log "rclone: write"
write[rclone]=$(timed rclone copy --transfers 4 "$work/media" g:nanofs/rclone/)
drop
log "rclone: read"
read[rclone]=$(timed bash -c "for f in \$(rclone lsf g:nanofs/rclone/); do rclone cat g:nanofs/rclone/\$f; done > /dev/null")

rate() { calc "$bytes / $1 / 1e6"; }
echo "### nanofs on a three-node Garage cluster against rclone and the local backend"
echo
echo "\`$cmdline\`, $(date --rfc-3339=seconds), $(nproc) cores; $(calc "$bytes / 1073741824" 2) GiB in 100 MiB files."
echo "Writes end when every file is fsync'd (nanofs) or uploaded (rclone, which streams and"
echo "encrypts nothing); reads start with empty caches (page cache and nanofs's local packs)."
echo
echo "| | write MB/s | read MB/s | write vs rclone | read vs rclone |"
echo "|---|---:|---:|---:|---:|"
for w in s3 rclone local; do
  name=$w; [[ $w == s3 ]] && name="nanofs on Garage"; [[ $w == local ]] && name="nanofs, local packs"
  echo "| $name | $(rate "${write[$w]}") | $(rate "${read[$w]}") | $(calc "${write[rclone]} / ${write[$w]}" 2) | $(calc "${read[rclone]} / ${read[$w]}" 2) |"
done

fresh_cluster
log "restore: a volume of $FILES small files"
vol=$work/vol-files mnt=$work/mnt-files
"$NANOFS_BIN" init "$vol" "${s3[@]}" --s3-prefix "files/" >&2
mkdir -p "$mnt"; "$NANOFS_BIN" mount "$vol" "$mnt"; mounts+=("$mnt")
python3 - "$mnt" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range((n + 999) // 1000):
    os.makedirs(f"{root}/d{d:03}", exist_ok=True)
    for i in range(min(1000, n - d * 1000)):
        with open(f"{root}/d{d:03}/photo{i:04}.txt", "wb") as f:
            f.write(os.urandom(200))
PY
backup_s=$(timed "$NANOFS_BIN" meta backup "$vol")
"$NANOFS_BIN" umount "$mnt"
restore_s=$(timed "$NANOFS_BIN" meta restore "$work/host2" "${s3[@]}" --s3-prefix "files/")
check_s=$(timed "$NANOFS_BIN" check "$work/host2")
count=$(mkdir -p "$work/mnt2" && "$NANOFS_BIN" mount "$work/host2" "$work/mnt2" && find "$work/mnt2" -type f | wc -l)
mounts+=("$work/mnt2"); "$NANOFS_BIN" umount "$work/mnt2"
echo
echo "Metadata of $FILES files: backup ${backup_s} s while mounted; \`meta restore\` on another"
echo "directory ${restore_s} s; \`check\` there ${check_s} s; $count files seen through its mount."
