#!/usr/bin/env bash
# Throughput benchmark: nanofs vs gocryptfs on the same data, in one run; prints Markdown.
# The media set is also ingested by `borg create` and `restic backup` (encrypted repos, their
# default compression), the backup tools a user compares for a media library.
#
#   sudo benches/scripts/fs_throughput.sh                 # full: 4 GiB media, 5 GiB file, /usr/share
#   MEDIA_GIB=1 BIG_GIB=1 SMALL_TREE=/usr/share/doc benches/scripts/fs_throughput.sh   # smoke
#
# Env: MEDIA_GIB (4), BIG_GIB (5) (fractions allowed), SMALL_TREE (/usr/share),
#      WORKLOADS ("media big small"), BACKUPS ("borg borg-unencrypted restic"; "" to skip), BENCH_DIR (/var/tmp; scratch dir is created inside),
#      NANOFS_BIN (~/.cache/nanofs-target/release/nanofs), OUT (also write the report there),
#      KEEP=1 (keep the scratch dir for inspection), FLOOR_BIN (the FUSE floor for the
#      small-file tree: ~/.cache/nanofs-target/release/examples/fuse_floor; built if missing).
set -Eeuo pipefail

cmdline=""
for v in MEDIA_GIB BIG_GIB SMALL_TREE WORKLOADS BACKUPS BENCH_DIR NANOFS_BIN OUT KEEP FLOOR_BIN; do
  if [[ -n ${!v+x} ]]; then cmdline+="$v=${!v@Q} "; fi
done
cmdline+="$0${*:+ $*}"
started=$(date --rfc-3339=seconds) LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MEDIA_GIB=${MEDIA_GIB:-4} BIG_GIB=${BIG_GIB:-5} SMALL_TREE=${SMALL_TREE:-/usr/share}
WORKLOADS=${WORKLOADS:-media big small}
BACKUPS=${BACKUPS-borg borg-unencrypted restic}
TARGET=$HOME/.cache/nanofs-target
NANOFS_BIN=${NANOFS_BIN:-$TARGET/release/nanofs}
FLOOR_BIN=${FLOOR_BIN:-$TARGET/release/examples/fuse_floor}
HZ=$(getconf CLK_TCK)
FSES=(nanofs gocryptfs)

log() { printf '[%(%T)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
trap 'log "error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

[[ $EUID -eq 0 ]] || die "run as root (drop_caches, FUSE mounts)"
[[ -d $SMALL_TREE ]] || die "SMALL_TREE $SMALL_TREE is not a directory"
need() {  # $1 command, $2 Debian package
  command -v "$1" >/dev/null || { apt-get install -y "$2" || { apt-get update && apt-get install -y "$2"; }; } >&2
}
need gocryptfs gocryptfs; need fusermount3 fuse3; need rsync rsync; need /usr/bin/time time
for b in $BACKUPS; do case $b in borg*) need borg borgbackup ;; restic) need restic restic ;; esac; done

# The tree may be mid-edit or the cargo lock held by someone else: retry for up to 40 min.
deadline=$((SECONDS + 2400))
until [[ -x $NANOFS_BIN ]]; do
  [[ $NANOFS_BIN == "$TARGET/release/nanofs" ]] || die "no nanofs binary at $NANOFS_BIN"
  (( SECONDS < deadline )) || die "could not build $NANOFS_BIN"
  log "building nanofs in $REPO"
  (cd "$REPO" && source scripts/rocksdb.sh && CARGO_TARGET_DIR=$TARGET cargo build --release >&2) || sleep 60
done

if [[ ! -x $FLOOR_BIN && $FLOOR_BIN == "$TARGET/release/examples/fuse_floor" ]]; then
  log "building the FUSE floor in $REPO"
  (cd "$REPO" && source scripts/rocksdb.sh && CARGO_TARGET_DIR=$TARGET cargo build --release --example fuse_floor >&2) || true
fi

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-bench.XXXXXX")
mkdir -p "$W"/{src,vol,res,mnt/nanofs,mnt/gocryptfs,mnt/floor}
PASS=$W/passphrase
echo "bench-$RANDOM$RANDOM" > "$PASS"
log "scratch dir $W (free: $(df -h --output=avail "$W" | tail -n 1 | xargs))"

# Daemons are found by their command line, which always names a path under $W/vol.
cleanup_mounts() {
  local m pids
  for m in "$W"/mnt/*; do if grep -qs " $m fuse" /proc/mounts; then fusermount3 -uz "$m" || true; fi; done
  pids=$(pgrep -f -- "$W/vol" || true)
  if [[ -n $pids ]]; then
    log "killing leftover daemons: $pids"
    kill $pids 2>/dev/null || true; sleep 2; kill -9 $pids 2>/dev/null || true
  fi
}
# Long steps run as a background child + wait, so INT/TERM interrupt them at once.
CHILD=""
run_bg() { "$@" & CHILD=$!; wait "$CHILD"; }
killtree() { local c; for c in $(pgrep -P "$1"); do killtree "$c"; done; kill "$1" 2>/dev/null || true; }
cleanup() {
  local rc=$?
  set +e; trap - ERR
  if [[ -n $CHILD ]]; then killtree "$CHILD"; fi
  cleanup_mounts
  if [[ -n ${KEEP:-} ]]; then log "kept $W"; else rm -rf "$W"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# A private copy: a concurrent cargo build must not swap the binary between workloads.
cp "$NANOFS_BIN" "$W/nanofs"; NANOFS_REAL=$NANOFS_BIN NANOFS_BIN=$W/nanofs

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
cat_all() { find "$1" -type f -exec cat {} + > /dev/null; }
file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }

make_src() {  # generated once per workload (untimed), shared by both filesystems
  local d=$W/src/$1 mib i
  mkdir -p "$d"
  case $1 in
    media)
      mib=$(calc "$MEDIA_GIB * 1024" 0)
      for ((i = 0; i * 100 < mib; i++)); do
        head -c "$(( mib - i * 100 < 100 ? mib - i * 100 : 100 ))M" /dev/urandom > "$d/media_$i.bin"
      done ;;
    big) head -c "$(calc "$BIG_GIB * 1024" 0)M" /dev/urandom > "$d/big.bin" ;;
    small) rsync -a "$SMALL_TREE/" "$d/" ;;
    *) die "unknown workload $1" ;;
  esac
}

# Last seen counters of daemon $1: S_CPU (ticks, all threads incl. exited ones), S_WB (bytes
# it caused to be written to disk), S_HWM (peak RSS, KiB). Fails once the process has exited;
# a zombie still shows its final CPU and I/O totals, so those are read first.
sample() {
  local s f k v
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
  f=(${s##*) })
  S_CPU=$(( f[11] + f[12] ))
  { while read -r k v; do
      if [[ $k == write_bytes: ]]; then S_WB=$v; fi
    done < "/proc/$1/io"
    while read -r k v _; do
      if [[ $k == VmHWM: ]]; then S_HWM=$v; fi
    done < "/proc/$1/status"; } 2>/dev/null || return 1
  [[ ${f[0]} != Z ]]
}
# Unmount flushes happen in the daemon itself: poll until it exits, keeping the last values.
exec {SLEEP_FD}<> <(:)
fs_umount() {
  local u end=$((SECONDS + 900))
  if [[ $FS == nanofs ]]; then "$NANOFS_BIN" umount "$MNT" & else fusermount3 -u "$MNT" & fi
  u=$!
  while sample "$DPID"; do
    (( SECONDS < end )) || die "$FS daemon $DPID still running 15 min after unmount"
    if [[ -n $u ]] && ! kill -0 "$u" 2>/dev/null; then
      wait "$u" || die "unmounting $MNT failed"
      u=""
    fi
    read -t 0.01 -u "$SLEEP_FD" || true  # fork-free sleep, so polling steals little CPU
  done
  if [[ -n $u ]]; then wait "$u" || die "unmounting $MNT failed"; fi
}

fs_mount() {
  if [[ $FS == nanofs ]]; then "$NANOFS_BIN" mount "$VOL" "$MNT" --passphrase-file "$PASS"
  else gocryptfs -q -nosyslog -passfile "$PASS" "$VOL" "$MNT"; fi
  DPID=$(pgrep -n -f -- " $VOL $MNT( |\$)") || die "no $FS daemon found for $MNT"
  S_CPU=0 S_WB=0 S_HWM=0
  sample "$DPID" || die "$FS daemon $DPID vanished"
}
# One timed phase: client command under /usr/bin/time plus the daemon's counters from
# before the command until it has exited after unmount. Sets P_SECS P_CPU P_WB P_HWM.
phase() {
  local cmd=$1 src=$2 c0 w0 t0 t1 cu cs
  c0=$S_CPU w0=$S_WB
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$W/time" bash -c "$cmd" _ "$src" "$MNT"
  t1=$EPOCHREALTIME
  sample "$DPID"
  fs_umount
  read -r cu cs < "$W/time"
  P_SECS=$(calc "$t1 - $t0" 3)
  P_CPU=$(calc "$cu + $cs + ($S_CPU - $c0) / $HZ" 2)
  P_WB=$(( S_WB - w0 )) P_HWM=$S_HWM
}

run_fs() {  # $1 workload; $FS set. Writes key=value lines to $W/res/<workload>.<fs>
  set -e  # runs as an async child of a `set +e` caller: a failure ends just this run
  local wl=$1 src=$W/src/$1 res=$W/res/$1.$FS write read
  VOL=$W/vol/$FS MNT=$W/mnt/$FS
  rm -rf "$VOL" && mkdir -p "$VOL"
  if [[ $FS == nanofs ]]; then "$NANOFS_BIN" init "$VOL" --passphrase-file "$PASS" >/dev/null
  else gocryptfs -q -init -passfile "$PASS" "$VOL"; fi
  if [[ $wl == small ]]; then write='rsync -a "$1"/ "$2"/small/ && sync'
  else write='cp -r "$1" "$2"/ && sync'; fi
  # nanofs commits closed large files in the background: the phase ends once all are
  # committed, which `stats` (answered by the daemon) waits for.
  if [[ $FS == nanofs ]]; then write+=" && '$NANOFS_BIN' stats '$VOL' > /dev/null"; fi
  read='find "$2" -type f -exec cat {} + > /dev/null'

  # Same cache state for both filesystems: source in page cache, nothing else.
  drop_caches; cat_all "$src"
  fs_mount
  log "$wl/$FS: write"
  phase "$write" "$src"
  {
    echo "bytes=$(file_bytes "$src")"
    echo "wsecs=$P_SECS wcpu=$P_CPU wb=$P_WB whwm=$P_HWM"
    echo "du=$(du -sb "$VOL" | cut -f1)"
    if [[ $FS == nanofs ]]; then
      "$NANOFS_BIN" stats "$VOL" --json > "$W/res/$wl.stats.json"
      echo "stored=$(sed -n 's/.*"stored_bytes": *\([0-9]*\).*/\1/p' "$W/res/$wl.stats.json")"
    fi
  } >> "$res"

  drop_caches
  fs_mount
  log "$wl/$FS: read"
  phase "$read" "$src"
  echo "rsecs=$P_SECS rcpu=$P_CPU rhwm=$P_HWM" >> "$res"
  if [[ -z ${KEEP:-} ]]; then rm -rf "$VOL"; fi
}

# The floor for the small-file tree: the same copy into a FUSE file system that does no
# work (examples/fuse_floor.rs, mounted like nanofs). Write only: it keeps nothing.
run_floor() {
  set -e
  local src=$W/src/small mnt=$W/mnt/floor pid t0 t1
  drop_caches; cat_all "$src"
  "$FLOOR_BIN" "$mnt" & pid=$!
  until mountpoint -q "$mnt"; do kill -0 "$pid" || return 1; sleep 0.05; done
  log "small/floor: write"
  t0=$EPOCHREALTIME
  rsync -a "$src"/ "$mnt"/small/ && sync
  t1=$EPOCHREALTIME
  fusermount3 -u "$mnt"; wait "$pid"
  echo "fsecs=$(calc "$t1 - $t0" 3)" > "$W/res/small.floor"
}

# A backup tool ingesting the media set into a new encrypted repository (borg: repokey-blake2,
# lz4; restic: AES-256 + Poly1305, compression auto; and borg without encryption, as some
# keep a media library), from the same cache state as the file systems. Sets bsecs and bcpu (user + sys) in $W/res/media.<tool>.
run_backup() {
  set -e
  local tool=$1 src=$W/src/media repo=$W/vol/$1 t0 t1 cu cs; local -a cmd
  rm -rf "$repo"
  export BORG_PASSPHRASE=$(cat "$PASS") RESTIC_PASSWORD=$(cat "$PASS") BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
  case $tool in
    borg) borg init --encryption repokey-blake2 "$repo"; cmd=(borg create "$repo::media" "$src") ;;
    borg-unencrypted) borg init --encryption none "$repo"; cmd=(borg create "$repo::media" "$src") ;;
    restic) restic init -q --repo "$repo"; cmd=(restic backup -q --repo "$repo" "$src") ;;
  esac
  drop_caches; cat_all "$src"
  log "media/$tool: ingest"
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$W/time" "${cmd[@]}"
  sync
  t1=$EPOCHREALTIME
  read -r cu cs < "$W/time"
  echo "bsecs=$(calc "$t1 - $t0" 3) bcpu=$(calc "$cu + $cs" 2) bdu=$(du -sb "$repo" | cut -f1)" > "$W/res/media.$tool"
  rm -rf "$repo"
}

failed=0
for wl in $WORKLOADS; do
  log "$wl: generating source data"
  run_bg make_src "$wl"
  for FS in "${FSES[@]}"; do
    set +e; run_bg run_fs "$wl"; rc=$?; set -e
    if (( rc )); then
      log "$wl/$FS FAILED (exit $rc)"; failed=1
      echo "exit $rc" > "$W/res/$wl.$FS.fail"
      if [[ -f $W/vol/$FS/nanofs.log ]]; then tail -n 20 "$W/vol/$FS/nanofs.log" | tee -a "$W/res/$wl.$FS.log" >&2; fi
      cleanup_mounts
    fi
  done
  if [[ $wl == media ]]; then
    for b in $BACKUPS; do
      set +e; run_bg run_backup "$b"; rc=$?; set -e
      if (( rc )); then log "media/$b FAILED (exit $rc)"; failed=1; fi
    done
  fi
  if [[ $wl != small ]]; then
    # The disk's own rate for the same bytes: read straight from ext4, cold, with the
    # kernel's read-ahead and no FUSE or decryption, right after the file systems' reads.
    drop_caches
    t0=$EPOCHREALTIME; cat_all "$W/src/$wl"; t1=$EPOCHREALTIME
    echo "psecs=$(calc "$t1 - $t0" 3)" > "$W/res/$wl.plain"
  fi
  if [[ $wl == small && -x $FLOOR_BIN ]]; then
    set +e; run_bg run_floor; rc=$?; set -e
    if (( rc )); then log "small/floor FAILED (exit $rc)"; cleanup_mounts; fi
  fi
  rm -rf "${W:?}/src/$wl"
done

report() {
  local wl fs bytes wsecs wcpu wb whwm du stored rsecs rcpu rhwm a b k
  declare -A R
  cat <<EOF2
# nanofs vs gocryptfs throughput

- command: \`$cmdline\`
- date: $started (finished $(date --rfc-3339=seconds))
- host: $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, load before start: $LOAD0
- disk: $(df -T "$W" | awk 'NR == 2 { print $1 " (" $2 ")" }')
- nanofs: $NANOFS_REAL ($("$NANOFS_BIN" --version 2>/dev/null | head -n 1 || true)); $(gocryptfs -version | cut -d';' -f1)

| workload | fs | data MB | write MB/s | read MB/s | CPU s write | CPU s read | peak RSS MiB | stored MiB (stats / du) | write ampl. |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF2
  for wl in $WORKLOADS; do
    for fs in "${FSES[@]}"; do
      if [[ -f $W/res/$wl.$fs.fail || ! -f $W/res/$wl.$fs ]]; then
        echo "| $wl | $fs | FAILED ($(cat "$W/res/$wl.$fs.fail" 2>/dev/null)) | | | | | | | |"; continue
      fi
      stored=""
      for k in $(cat "$W/res/$wl.$fs"); do declare "${k%%=*}=${k#*=}"; done
      R[$wl.$fs.w]=$(calc "$bytes / $wsecs / 1e6") R[$wl.$fs.r]=$(calc "$bytes / $rsecs / 1e6")
      R[$wl.$fs.cw]=$wcpu R[$wl.$fs.cr]=$rcpu
      R[$wl.$fs.rss]=$(calc "($whwm > $rhwm ? $whwm : $rhwm) / 1024")
      echo "| $wl | $fs | $(calc "$bytes / 1e6") | ${R[$wl.$fs.w]} | ${R[$wl.$fs.r]} | $wcpu | $rcpu" \
        "| ${R[$wl.$fs.rss]} | ${stored:+$(calc "$stored / 1048576") / }$(calc "$du / 1048576")" \
        "| $(calc "$wb / $bytes" 2) |"
    done
  done
  printf '\n%s\n\n%s\n%s\n' "Ratios nanofs / gocryptfs (throughput: >1 means nanofs faster; CPU and RSS: >1 means nanofs uses more):" \
    "| workload | write MB/s | read MB/s | CPU write | CPU read | peak RSS |" "|---|---:|---:|---:|---:|---:|"
  for wl in $WORKLOADS; do
    [[ -n ${R[$wl.nanofs.w]:-} && -n ${R[$wl.gocryptfs.w]:-} ]] || { echo "| $wl | n/a | n/a | n/a | n/a | n/a |"; continue; }
    a=$wl.nanofs b=$wl.gocryptfs
    echo "| $wl | $(ratio "${R[$a.w]}" "${R[$b.w]}") | $(ratio "${R[$a.r]}" "${R[$b.r]}")" \
      "| $(ratio "${R[$a.cw]}" "${R[$b.cw]}") | $(ratio "${R[$a.cr]}" "${R[$b.cr]}") | $(ratio "${R[$a.rss]}" "${R[$b.rss]}") |"
  done
  echo
  cat <<'EOF2'
MB = 10^6 bytes of regular-file data. Write = copy + sync (nanofs: and every closed file
committed, as `nanofs stats` waits for); read = cat of every file after
unmount, drop_caches and remount. CPU = client user+sys plus daemon utime+stime from the
start of the phase until the daemon exited after unmount (so unmount flushes count).
Peak RSS = daemon VmHWM (max of write and read mounts). Write ampl. = daemon write_bytes
(/proc/PID/io, mount to exit, incl. background flushes) / data bytes. Stored: nanofs
`stats --json` stored_bytes and `du -sb` of the volume; gocryptfs `du -sb` of the cipher dir.
EOF2
  if [[ -n ${R[media.nanofs.w]:-} ]]; then
    local mbytes bsecs bcpu bdu tool
    mbytes=$(sed -n 's/^bytes=//p' "$W/res/media.nanofs")
    echo
    echo "The media set written into nanofs (copy + sync) against the backup tools ingesting it:"
    echo
    echo "| media ingest | MB/s | CPU s | stored MiB | nanofs rate / theirs | nanofs CPU / theirs |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "| nanofs | ${R[media.nanofs.w]} | ${R[media.nanofs.cw]} | | | |"
    for tool in gocryptfs $BACKUPS; do
      if [[ $tool == gocryptfs ]]; then
        [[ -n ${R[media.gocryptfs.w]:-} ]] || continue
        bsecs=$(calc "$mbytes / ${R[media.gocryptfs.w]} / 1e6" 3) bcpu=${R[media.gocryptfs.cw]} bdu=""
      else
        [[ -f $W/res/media.$tool ]] || { echo "| $tool | FAILED | | | | |"; continue; }
        for k in $(cat "$W/res/media.$tool"); do declare "${k%%=*}=${k#*=}"; done
      fi
      echo "| $tool | $(calc "$mbytes / $bsecs / 1e6") | $bcpu | ${bdu:+$(calc "$bdu / 1048576")}" \
        "| $(ratio "${R[media.nanofs.w]}" "$(calc "$mbytes / $bsecs / 1e6")") | $(ratio "${R[media.nanofs.cw]}" "$bcpu") |"
    done
  fi
  for wl in $WORKLOADS; do
    [[ -f $W/res/$wl.plain && -n ${R[$wl.nanofs.r]:-} && -n ${R[$wl.gocryptfs.r]:-} ]] || continue
    local plain
    plain=$(calc "$(sed -n 's/^bytes=//p' "$W/res/$wl.nanofs") / $(sed -n 's/^psecs=//p' "$W/res/$wl.plain") / 1e6")
    echo "$wl, the same bytes read straight from ext4 (\`cat\` after drop_caches, no FUSE): $plain MB/s;" \
      "nanofs reads at $(ratio "${R[$wl.nanofs.r]}" "$plain") of that, gocryptfs at $(ratio "${R[$wl.gocryptfs.r]}" "$plain")."
    echo
  done
  if [[ -f $W/res/small.floor && -n ${R[small.gocryptfs.w]:-} && -n ${R[small.nanofs.w]:-} ]]; then
    local fsecs floor
    fsecs=$(sed -n 's/^fsecs=//p' "$W/res/small.floor")
    floor=$(calc "$(sed -n 's/^bytes=//p' "$W/res/small.nanofs") / $fsecs / 1e6")
    echo
    echo "FUSE floor for the small-file tree (examples/fuse_floor.rs: in memory, no work, mounted like"
    echo "nanofs; rsync -a + sync): $floor MB/s. gocryptfs reaches $(ratio "${R[small.gocryptfs.w]}" "$floor") of it, nanofs"
    echo "$(ratio "${R[small.nanofs.w]}" "$floor"); twice gocryptfs's rate would be $(ratio "$(calc "2 * ${R[small.gocryptfs.w]}")" "$floor") of it."
  fi
  for wl in $WORKLOADS; do
    if [[ -f $W/res/$wl.stats.json ]]; then
      echo; echo "nanofs stats after $wl: \`$(tr -d ' \n' < "$W/res/$wl.stats.json")\`"
    fi
    for fs in "${FSES[@]}"; do
      if [[ -s $W/res/$wl.$fs.log ]]; then
        echo; echo "$wl/$fs failed; end of $fs log:"; echo '```'; cat "$W/res/$wl.$fs.log"; echo '```'
      fi
    done
  done
}
report > "$W/report.md"
cat "$W/report.md"
if [[ -n ${OUT:-} ]]; then cp "$W/report.md" "$OUT"; log "report saved to $OUT"; fi
exit $(( failed ? 2 : 0 ))  # the table is printed even when a run failed
