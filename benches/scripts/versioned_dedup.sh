#!/usr/bin/env bash
# Versioned-data dedup benchmark: nanofs (zstd auto / off; live tree / both versions kept)
# vs restic (compression auto / off) vs borg (lz4 / none), in one run; prints Markdown.
#
#   sudo benches/scripts/versioned_dedup.sh                    # full: 1.5 GiB from /usr
#   DATA_GIB=0.2 VARIANTS="nanofs-auto-both restic-auto" benches/scripts/versioned_dedup.sh  # smoke
#
# Data: v1 = a real tree copied from SRC_ROOTS, picked deterministically (SEED): directories
# no larger than DATA_GIB/10 (bigger ones are split into their children) are shuffled with
# SEED and taken until DATA_GIB is reached. v2 = a copy of v1 where CHANGE_PCT % of the files
# (seeded) are changed: 40 % get bytes inserted in the middle, 30 % get bytes appended,
# 15 % are copied (with an insertion) to a new file in another directory, 15 % are removed.
# Each system ingests v1 then v2:
#   nanofs-*-live  rsync -a --delete v1/ MNT/data/, then v2/ into the same MNT/data/
#   nanofs-*-both  rsync -a v1/ MNT/v1/, then v2/ MNT/v2/ (keeps both, like a backup tool)
#   restic-*, borg-*  v1 then v2 backed up from the same path (bind mount at SCRATCH/snap/data)
# Stored bytes are read after unmount (nanofs `stats --json`) and with `du -sb` (volume or repo).
# Then on each nanofs volume: remove v1 (both) or nothing (live), time `nanofs gc` (mounted,
# through the daemon; GC_MOUNTED=0: unmounted), unmount, time `nanofs check --read-data`.
#
# Env: DATA_GIB (1.5), SEED (42), CHANGE_PCT (5), SRC_ROOTS ("/usr/lib /usr/share"),
#      VARIANTS ("nanofs-auto-live nanofs-auto-both nanofs-off-live nanofs-off-both
#                 restic-auto restic-off borg-lz4 borg-none"),
#      WORK (/var/tmp; scratch dir is created inside), NANOFS_BIN
#      (~/.cache/nanofs-target/release/nanofs), OUT (also write the report there),
#      VERIFY (1: after ingest, remount and compare every file with rsync -c), GC_MOUNTED (1),
#      KEEP=1 (keep the scratch dir for inspection).
set -Eeuo pipefail

cmdline=""
for v in DATA_GIB SEED CHANGE_PCT SRC_ROOTS VARIANTS WORK NANOFS_BIN OUT VERIFY GC_MOUNTED KEEP; do
  if [[ -n ${!v+x} ]]; then cmdline+="$v=${!v@Q} "; fi
done
cmdline+="$0${*:+ $*}"
started=$(date --rfc-3339=seconds) LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

DATA_GIB=${DATA_GIB:-1.5} SEED=${SEED:-42} CHANGE_PCT=${CHANGE_PCT:-5}
SRC_ROOTS=${SRC_ROOTS:-/usr/lib /usr/share}
VARIANTS=${VARIANTS:-nanofs-auto-live nanofs-auto-both nanofs-off-live nanofs-off-both restic-auto restic-off borg-lz4 borg-none}
VERIFY=${VERIFY:-1} GC_MOUNTED=${GC_MOUNTED:-1}
NANOFS_BIN=${NANOFS_BIN:-$HOME/.cache/nanofs-target/release/nanofs}

log() { printf '[%(%T)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
mib() { if [[ -n ${1:-} ]]; then calc "$1 / 1048576" "${2:-1}"; else printf 'n/a'; fi; }
ratio() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
trap 'log "error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

[[ $EUID -eq 0 ]] || die "run as root (drop_caches, FUSE and bind mounts)"
for r in $SRC_ROOTS; do [[ -d $r ]] || die "SRC_ROOTS: $r is not a directory"; done
[[ -x $NANOFS_BIN ]] || die "no nanofs binary at $NANOFS_BIN (build it: cargo build --release)"
need() {  # $1 command, $2 Debian package
  command -v "$1" >/dev/null || { apt-get install -y "$2" || { apt-get update && apt-get install -y "$2"; }; } >&2
}
need restic restic; need borg borgbackup; need rsync rsync; need fusermount3 fuse3; need python3 python3

W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-vdedup.XXXXXX")
mkdir -p "$W"/{src,vol,mnt,repo,res,snap/data,cache}
PASS=$W/passphrase
echo "bench-$RANDOM$RANDOM" > "$PASS"
RESTIC_PASSWORD=$(cat "$PASS") BORG_PASSPHRASE=$(cat "$PASS")
export RESTIC_PASSWORD BORG_PASSPHRASE RESTIC_CACHE_DIR=$W/cache/restic BORG_DISPLAY_PASSPHRASE=no
export BORG_BASE_DIR=$W/cache/borg BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
log "scratch dir $W (free: $(df -h --output=avail "$W" | tail -n 1 | xargs))"

# nanofs daemons started by this script, one pid file per mount point (so subshells can add).
cleanup_mounts() {
  local m p
  if mountpoint -q "$W/snap/data"; then umount -l "$W/snap/data" || true; fi
  for m in "$W"/mnt/*; do if grep -qs " $m fuse" /proc/mounts; then fusermount3 -uz "$m" || true; fi; done
  for p in "$W"/res/*.dpid; do
    [[ -f $p ]] || continue
    if kill -0 "$(cat "$p")" 2>/dev/null; then
      log "killing leftover daemon $(cat "$p")"
      kill "$(cat "$p")" 2>/dev/null || true; sleep 2; kill -9 "$(cat "$p")" 2>/dev/null || true
    fi
    rm -f "$p"
  done
}
CHILD=""
run_bg() { "$@" & CHILD=$!; wait "$CHILD"; }
killtree() { local c; for c in $(pgrep -P "$1"); do killtree "$c"; done; kill "$1" 2>/dev/null || true; }
cleanup() {
  local rc=$?
  set +e; trap - ERR
  if [[ -n $CHILD ]]; then killtree "$CHILD"; sleep 1; fi
  cleanup_mounts
  if [[ -n ${KEEP:-} ]]; then log "kept $W"; else rm -rf "$W"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# A private copy: a concurrent cargo build must not swap the binary between variants.
cp "$NANOFS_BIN" "$W/nanofs"; NANOFS_REAL=$NANOFS_BIN NANOFS_BIN=$W/nanofs

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }
nfiles() { find "$1" -type f | wc -l; }
jget() {  # $1 json file, $2 key
  python3 -c 'import json,sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else (len(v) if isinstance(v, list) else v))' "$1" "$2"
}

# ---------------------------------------------------------------- data set
make_v1() {
  python3 - "$W/src/v1.list" "$DATA_GIB" "$SEED" $SRC_ROOTS <<'PY' >&2
import os, random, stat, sys
out, target, seed, roots = sys.argv[1], int(float(sys.argv[2]) * 2**30), int(sys.argv[3]), sys.argv[4:]
cap = target // 10
def scan(d):  # -> (bytes, [(path, bytes, subtree or None)])
    total, kids = 0, []
    try:
        it = sorted(os.scandir(d), key=lambda e: e.name)
    except OSError:
        return 0, []
    for e in it:
        st = e.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub = scan(e.path); kids.append((e.path, sub[0], sub)); total += sub[0]
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            kids.append((e.path, size, None)); total += size
    return total, kids
units = []
def split(path, tree):
    if tree[0] <= cap:
        units.append((path, tree[0], tree)); return
    for p, size, sub in tree[1]:
        if sub is None: units.append((p, size, None))
        else: split(p, sub)
for r in roots:
    split(r, scan(r))
units.sort(key=lambda u: u[0])
random.Random(seed).shuffle(units)
def files(path, tree):
    if tree is None: yield path; return
    for p, _, sub in tree[1]: yield from files(p, sub)
taken, got = [], 0
for path, size, tree in units:
    if got >= target: break
    if size == 0: continue
    taken.extend(files(path, tree)); got += size
with open(out, "w") as f:
    for p in sorted(taken): f.write(p.lstrip("/") + "\n")
print(f"picked {len(taken)} entries, {got} bytes, from {len(units)} units (cap {cap})")
PY
  rsync -a --files-from="$W/src/v1.list" / "$W/src/v1/"
}

make_v2() {
  cp -a "$W/src/v1" "$W/src/v2"
  python3 - "$W/src/v2" "$SEED" "$CHANGE_PCT" > "$W/res/changes" <<'PY'
import os, random, shutil, sys
root, seed, pct = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(seed * 7919 + 1)
files, dirs = [], []
for d, ds, fs in os.walk(root):
    ds.sort()
    dirs.append(d)
    files += [os.path.join(d, f) for f in sorted(fs) if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f))]
n = max(4, round(len(files) * pct / 100))
chosen = rng.sample(files, n)
k_ins, k_app, k_new = round(n * 0.40), round(n * 0.30), round(n * 0.15)
groups = {"inserted": chosen[:k_ins], "appended": chosen[k_ins:k_ins + k_app],
          "copied": chosen[k_ins + k_app:k_ins + k_app + k_new], "removed": chosen[k_ins + k_app + k_new:]}
added = 0
def rd(p):
    with open(p, "rb") as f: return f.read()
def wr(p, b):
    with open(p, "wb") as f: f.write(b)
for p in groups["inserted"]:
    b = rd(p); ins = rng.randbytes(rng.randint(16, 4096)); wr(p, b[:len(b) // 2] + ins + b[len(b) // 2:]); added += len(ins)
for p in groups["appended"]:
    ins = rng.randbytes(rng.randint(256, 65536))
    with open(p, "ab") as f: f.write(ins)
    added += len(ins)
for i, p in enumerate(groups["copied"]):
    b = rd(p); ins = rng.randbytes(rng.randint(16, 4096)); at = rng.randrange(len(b) + 1)
    dst = os.path.join(rng.choice(dirs), f"v2-new-{i}-{os.path.basename(p)}")
    wr(dst, b[:at] + ins + b[at:]); shutil.copymode(p, dst); added += len(b) + len(ins)
for p in groups["removed"]:
    os.unlink(p)
size = lambda ps: sum(os.path.getsize(p) for p in ps if os.path.exists(p))
print(f"{n} of {len(files)} files: " + ", ".join(f"{len(v)} {k}" for k, v in groups.items())
      + f"; {added} bytes added/copied; changed files hold {size(groups['inserted'] + groups['appended'])} bytes")
PY
}

# ---------------------------------------------------------------- nanofs
nmount() {
  "$NANOFS_BIN" mount "$VOL" "$MNT" --passphrase-file "$PASS"
  DPID=$(pgrep -n -f -- " $VOL $MNT( |\$)") || die "no nanofs daemon found for $MNT"
  echo "$DPID" > "$W/res/$NAME.dpid"
}
numount() {
  local start
  "$NANOFS_BIN" umount "$MNT"
  start=$SECONDS
  while kill -0 "$DPID" 2>/dev/null; do
    (( SECONDS < start + 900 )) || die "nanofs daemon $DPID still running 15 min after unmount"
    sleep 0.2
  done
  if (( SECONDS > start + 20 )); then
    echo "daemon $DPID exited $((SECONDS - start)) s after 'nanofs umount' returned" >> "$W/res/$NAME.odd"
  fi
  rm -f "$W/res/$NAME.dpid"
}
# stats after unmount (stable) and du of the volume: appends <prefix>_* keys to $RES
record_nanofs() {
  local p=$1 js=$W/res/$NAME.$1.json
  "$NANOFS_BIN" stats "$VOL" --json > "$js"
  {
    echo "${p}_stored=$(jget "$js" stored_bytes) ${p}_logical=$(jget "$js" logical_bytes)"
    echo "${p}_unique=$(jget "$js" unique_bytes) ${p}_chunks=$(jget "$js" chunks)"
    echo "${p}_reclaim=$(jget "$js" reclaimable_bytes) ${p}_disk=$(jget "$js" disk_bytes)"
    echo "${p}_du=$(du -sb "$VOL" | cut -f1)"
  } >> "$RES"
}

run_nanofs() {  # $1 auto|off, $2 live|both
  set -e
  local comp=$1 mode=$2 ver dest t0 ms js v
  VOL=$W/vol/$NAME MNT=$W/mnt/$NAME
  mkdir -p "$VOL" "$MNT"
  "$NANOFS_BIN" init "$VOL" --passphrase-file "$PASS" >/dev/null
  sed -i "s/^compression = .*/compression = \"$comp\"/" "$VOL/nanofs.toml"
  grep -q "^compression = \"$comp\"\$" "$VOL/nanofs.toml" || die "could not set compression in $VOL/nanofs.toml"
  for ver in v1 v2; do
    if [[ $mode == live ]]; then dest=data; else dest=$ver; fi
    nmount
    log "$NAME: rsync $ver/ -> $dest/"
    t0=$EPOCHREALTIME
    rsync -a --delete "$W/src/$ver/" "$MNT/$dest/"
    sync
    # stats while mounted (through the daemon), to compare with the settled figures below
    "$NANOFS_BIN" stats "$VOL" --json > "$W/res/$NAME.$ver.mounted.json"
    numount
    echo "${ver}_secs=$(calc "$EPOCHREALTIME - $t0" 2)" >> "$RES"
    record_nanofs "$ver"
    ms=$(jget "$W/res/$NAME.$ver.mounted.json" stored_bytes)
    v=$(jget "$W/res/$NAME.$ver.json" stored_bytes)
    if [[ $ms != "$v" ]]; then echo "$ver: stored_bytes mounted (after sync) $ms != after unmount $v" >> "$W/res/$NAME.odd"; fi
  done

  nmount
  if [[ $VERIFY == 1 ]]; then
    drop_caches
    log "$NAME: verify (rsync -c dry run against the sources)"
    t0=$EPOCHREALTIME
    if [[ $mode == live ]]; then
      rsync -rlnci --delete "$W/src/v2/" "$MNT/data/" > "$W/res/$NAME.verify"
      echo "verify_bytes=$(file_bytes "$W/src/v2")" >> "$RES"
    else
      { rsync -rlnci --delete "$W/src/v1/" "$MNT/v1/"; rsync -rlnci --delete "$W/src/v2/" "$MNT/v2/"; } > "$W/res/$NAME.verify"
      echo "verify_bytes=$(( $(file_bytes "$W/src/v1") + $(file_bytes "$W/src/v2") ))" >> "$RES"
    fi
    echo "verify_secs=$(calc "$EPOCHREALTIME - $t0" 2) verify_diffs=$(wc -l < "$W/res/$NAME.verify")" >> "$RES"
  fi
  if [[ $mode == both ]]; then
    log "$NAME: rm -rf v1"
    rm -rf "$MNT/v1"; sync
  fi
  if [[ $GC_MOUNTED != 1 ]]; then numount; fi
  "$NANOFS_BIN" stats "$VOL" --json > "$W/res/$NAME.pregc.json"
  echo "pregc_stored=$(jget "$W/res/$NAME.pregc.json" stored_bytes) pregc_reclaim=$(jget "$W/res/$NAME.pregc.json" reclaimable_bytes) pregc_du=$(du -sb "$VOL" | cut -f1)" >> "$RES"
  drop_caches
  log "$NAME: gc"
  t0=$EPOCHREALTIME
  "$NANOFS_BIN" gc "$VOL" --passphrase-file "$PASS" --json > "$W/res/$NAME.gc.json"
  echo "gc_secs=$(calc "$EPOCHREALTIME - $t0" 3)" >> "$RES"
  if [[ $GC_MOUNTED == 1 ]]; then numount; fi
  js=$W/res/$NAME.gc.json
  echo "gc_freed=$(jget "$js" stored_bytes_deleted) gc_chunks=$(jget "$js" chunks_deleted) gc_pinned=$(jget "$js" chunks_pinned) gc_disk0=$(jget "$js" disk_bytes_before) gc_disk1=$(jget "$js" disk_bytes_after)" >> "$RES"
  record_nanofs final
  drop_caches
  log "$NAME: check --read-data"
  t0=$EPOCHREALTIME
  set +e
  "$NANOFS_BIN" check "$VOL" --read-data --passphrase-file "$PASS" --json > "$W/res/$NAME.check.json"
  v=$?
  echo "chk_rc=$v chk_secs=$(calc "$EPOCHREALTIME - $t0" 3)" >> "$RES"
  set -e
  js=$W/res/$NAME.check.json
  echo "chk_bytes=$(jget "$js" bytes_verified) chk_chunks=$(jget "$js" chunks_verified) chk_problems=$(jget "$js" problems)" >> "$RES"
  if grep -Eci 'error|warn|panic' "$VOL/nanofs.log" > /dev/null; then
    { echo "nanofs.log has $(grep -Eci 'error|warn|panic' "$VOL/nanofs.log") error/warn/panic lines, e.g.:"
      grep -Ei 'error|warn|panic' "$VOL/nanofs.log" | head -n 3; } >> "$W/res/$NAME.odd"
  fi
  if [[ -z ${KEEP:-} ]]; then rm -rf "$VOL"; fi
}

# ---------------------------------------------------------------- restic / borg
stage() { mount --bind "$W/src/$1" "$W/snap/data"; }
unstage() { umount "$W/snap/data"; }

run_backup() {  # $1 restic|borg, $2 compression
  set -e
  local tool=$1 comp=$2 ver t0 repo=$W/repo/$NAME
  if [[ $tool == restic ]]; then
    restic -q -r "$repo" init --repository-version 2 >&2
  else
    borg init -e repokey "$repo" >&2
  fi
  for ver in v1 v2; do
    stage "$ver"
    log "$NAME: backup $ver"
    t0=$EPOCHREALTIME
    if [[ $tool == restic ]]; then
      (cd "$W/snap" && restic -q -r "$repo" backup --compression "$comp" --host bench data >&2)
    else
      (cd "$W/snap" && borg create --compression "$comp" "$repo::$ver" data >&2)
    fi
    sync
    echo "${ver}_secs=$(calc "$EPOCHREALTIME - $t0" 2)" >> "$RES"
    unstage
    echo "${ver}_du=$(du -sb "$repo" | cut -f1)" >> "$RES"
  done
  if [[ -z ${KEEP:-} ]]; then rm -rf "$repo"; fi
}

# ---------------------------------------------------------------- run
log "building v1 ($DATA_GIB GiB from $SRC_ROOTS, seed $SEED)"
run_bg make_v1
log "building v2 ($CHANGE_PCT % of files changed)"
run_bg make_v2
V1_BYTES=$(file_bytes "$W/src/v1") V2_BYTES=$(file_bytes "$W/src/v2")
V1_FILES=$(nfiles "$W/src/v1") V2_FILES=$(nfiles "$W/src/v2")
INGESTED=$((V1_BYTES + V2_BYTES))
log "v1: $V1_FILES files, $V1_BYTES bytes; v2: $V2_FILES files, $V2_BYTES bytes; $(cat "$W/res/changes")"

failed=0
for NAME in $VARIANTS; do
  RES=$W/res/$NAME.res
  : > "$RES"
  log "=== $NAME"
  set +e
  case $NAME in
    nanofs-auto-live) run_bg run_nanofs auto live ;;
    nanofs-auto-both) run_bg run_nanofs auto both ;;
    nanofs-off-live) run_bg run_nanofs off live ;;
    nanofs-off-both) run_bg run_nanofs off both ;;
    restic-auto) run_bg run_backup restic auto ;;
    restic-off) run_bg run_backup restic off ;;
    borg-lz4) run_bg run_backup borg lz4 ;;
    borg-none) run_bg run_backup borg none ;;
    *) false ;;
  esac
  rc=$?
  set -e
  if (( rc )); then
    log "$NAME FAILED (exit $rc)"; failed=1
    echo "exit $rc" > "$W/res/$NAME.fail"
    if [[ -f $W/vol/$NAME/nanofs.log ]]; then tail -n 20 "$W/vol/$NAME/nanofs.log" > "$W/res/$NAME.log"; fi
    cleanup_mounts
  fi
done

report() {
  local name k sys variant comp incs incd ratio_s ratio_d
  cat <<EOF2
# Versioned data: nanofs vs restic vs borg

- command: \`$cmdline\`
- date: $started (finished $(date --rfc-3339=seconds))
- host: $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, load before start: $LOAD0, load at end: $(cut -d' ' -f1-3 /proc/loadavg)
- disk: $(df -T "$W" | awk 'NR == 2 { print $1 " (" $2 ")" }')
- nanofs: $NANOFS_REAL ($("$NANOFS_BIN" --version 2>/dev/null | head -n 1 || true)); $(restic version | cut -d' ' -f1-2); $(borg --version)
- v1: $V1_FILES files, $(calc "$V1_BYTES / 1048576") MiB from \`$SRC_ROOTS\` (seed $SEED); v2: $V2_FILES files, $(calc "$V2_BYTES / 1048576") MiB; logical bytes ingested (v1 + v2): $(calc "$INGESTED / 1048576") MiB
- v2 changes: $(cat "$W/res/changes")

| system | variant | after v1 MiB (stored / du) | after v2 MiB (stored / du) | v2 increment MiB (stored / du) | dedup ratio (stored / du) | ingest s v1 / v2 | MB/s v1 / v2 |
|---|---|---:|---:|---:|---:|---:|---:|
EOF2
  for name in $VARIANTS; do
    sys=${name%%-*} variant=${name#*-}
    if [[ -f $W/res/$name.fail || ! -s $W/res/$name.res ]]; then
      echo "| $sys | $variant | FAILED ($(cat "$W/res/$name.fail" 2>/dev/null)) | | | | | |"; continue
    fi
    v1_stored="" v2_stored="" v1_du="" v2_du="" v1_secs="" v2_secs=""
    for k in $(cat "$W/res/$name.res"); do declare "${k%%=*}=${k#*=}"; done
    if [[ -z $v1_stored ]]; then v1_stored=$v1_du v2_stored=$v2_du; fi  # restic/borg: the repo is the store
    incs=$((v2_stored - v1_stored)) incd=$((v2_du - v1_du))
    case $variant in
      auto-live) variant="zstd auto, live tree (v2 replaces v1)" ;;
      auto-both) variant="zstd auto, keeps v1 + v2" ;;
      off-live) variant="no compression, live tree" ;;
      off-both) variant="no compression, keeps v1 + v2" ;;
      auto) variant="--compression auto" ;; off) variant="--compression off" ;;
      lz4) variant="--compression lz4" ;; none) variant="--compression none" ;;
    esac
    if [[ $sys == nanofs ]]; then
      echo "| nanofs | $variant | $(mib "$v1_stored") / $(mib "$v1_du") | $(mib "$v2_stored") / $(mib "$v2_du")" \
        "| $(mib "$incs") / $(mib "$incd") | $(ratio "$INGESTED" "$v2_stored") / $(ratio "$INGESTED" "$v2_du")" \
        "| $v1_secs / $v2_secs | $(calc "$V1_BYTES / $v1_secs / 1e6") / $(calc "$V2_BYTES / $v2_secs / 1e6") |"
    else
      echo "| $sys | $variant | $(mib "$v1_du") | $(mib "$v2_du") | $(mib "$incd")" \
        "| $(ratio "$INGESTED" "$v2_du") | $v1_secs / $v2_secs | $(calc "$V1_BYTES / $v1_secs / 1e6") / $(calc "$V2_BYTES / $v2_secs / 1e6") |"
    fi
  done
  cat <<'EOF2'

Stored = nanofs `stats --json` stored_bytes after unmount (encrypted, compressed chunk
payloads); du = `du -sb` of the volume (RocksDB: chunks + metadata + WAL/SST overhead) or of
the restic/borg repository. Dedup ratio = logical bytes ingested (v1 + v2 file sizes) / bytes
stored after v2. stored_bytes counts live chunks only: on the live-tree volumes the chunks
only v1 used are garbage until gc ("reclaimable" below), still on disk (in du) but not in
stored, and the volume holds only v2 afterwards. Ingest time: rsync
start until `nanofs umount` returned (daemon flushed), or the backup command plus sync.
MB/s = 10^6 bytes of file data of that version / ingest seconds.

| nanofs volume | logical / unique / stored MiB after v2 | chunks | reclaimable after v2 MiB | verify (rsync -c vs source) |
|---|---:|---:|---:|---|
EOF2
  for name in $VARIANTS; do
    [[ $name == nanofs-* && -s $W/res/$name.res && ! -f $W/res/$name.fail ]] || continue
    verify_diffs="" verify_secs="" verify_bytes=""
    for k in $(cat "$W/res/$name.res"); do declare "${k%%=*}=${k#*=}"; done
    echo "| $name | $(mib "$v2_logical") / $(mib "$v2_unique") / $(mib "$v2_stored") | $v2_chunks | $(mib "$v2_reclaim")" \
      "| ${verify_diffs:+$verify_diffs differing entries, read $(calc "$verify_bytes / $verify_secs / 1e6") MB/s} |"
  done
  cat <<EOF2

Maintenance on the final nanofs volumes (after v1 was deleted from the keep-both volumes;
nothing deleted on the live ones). gc $( [[ $GC_MOUNTED == 1 ]] && echo "ran mounted, through the daemon" || echo "ran unmounted"); check ran unmounted; caches dropped before each.

| nanofs volume | stored before gc MiB (reclaimable) | gc s | gc MB/s | gc freed MiB (chunks) | stored after gc MiB | du before → after gc MiB | check --read-data s | check MB/s | check problems |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF2
  for name in $VARIANTS; do
    [[ $name == nanofs-* && -s $W/res/$name.res && ! -f $W/res/$name.fail ]] || continue
    gc_secs="" chk_secs="" chk_bytes="" chk_problems="" chk_rc="" final_du=""
    for k in $(cat "$W/res/$name.res"); do declare "${k%%=*}=${k#*=}"; done
    [[ -n $gc_secs ]] || { echo "| $name | not reached | | | | | | | | |"; continue; }
    echo "| $name | $(mib "$pregc_stored") ($(mib "$pregc_reclaim")) | $gc_secs | $(calc "$pregc_stored / $gc_secs / 1e6")" \
      "| $(mib "$gc_freed") ($gc_chunks) | $(mib "$final_stored") | $(mib "$pregc_du") → $(mib "$final_du")" \
      "| ${chk_secs:-n/a} | $( [[ -n $chk_bytes && -n $chk_secs ]] && calc "$chk_bytes / $chk_secs / 1e6" || echo n/a)" \
      "| ${chk_problems:-?} (exit ${chk_rc:-?}) |"
  done
  cat <<'EOF2'

gc MB/s = stored bytes before gc / gc seconds. check MB/s = bytes_verified (plaintext of
every chunk, read, decrypted and re-hashed) / seconds.
EOF2
  for name in $VARIANTS; do
    if [[ -s $W/res/$name.odd ]]; then echo; echo "$name notes:"; sed 's/^/- /' "$W/res/$name.odd"; fi
    if [[ -s $W/res/$name.verify ]]; then echo; echo "$name verify differences (first 10):"; echo '```'; head -n 10 "$W/res/$name.verify"; echo '```'; fi
    if [[ -s $W/res/$name.log ]]; then
      echo; echo "$name failed; end of nanofs.log:"; echo '```'; cat "$W/res/$name.log"; echo '```'
    fi
  done
}
report > "$W/report.md"
cat "$W/report.md"
if [[ -n ${OUT:-} ]]; then cp "$W/report.md" "$OUT"; log "report saved to $OUT"; fi
exit $(( failed ? 2 : 0 ))  # the table is printed even when a run failed
