#!/usr/bin/env bash
# A/B of two nanofs binaries on small files: alternating runs of `rsync -a` of a tree into
# a fresh mount of each, so both see the same machine state. Prints, per run, the rsync
# wall time, rsync's CPU time and the daemon's CPU time, then the means. Prints Markdown.
#
#   sudo benches/scripts/small_files_ab.sh /tmp/nanofs-before ~/.cache/nanofs-target/release/nanofs
#
# Env: RUNS (4), TREE (/usr/share/doc), BENCH_DIR (/var/tmp).
set -Eeuo pipefail

A=${1:?binary A} B=${2:?binary B}
RUNS=${RUNS:-4} TREE=${TREE:-/usr/share/doc}
[[ $EUID -eq 0 ]] || { echo "run as root (FUSE mounts)" >&2; exit 1; }
HZ=$(getconf CLK_TCK)

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-ab.XXXXXX")
trap 'fusermount3 -u "$W/mnt" 2>/dev/null || true; rm -rf "$W"' EXIT
cp -a "$TREE" "$W/src"
echo "bench-$RANDOM" > "$W/pass"

# One run: prints "wall rsync_cpu daemon_cpu".
run() {
  local bin=$1 vol=$W/vol mnt=$W/mnt pid t
  rm -rf "$vol" "$mnt"; mkdir "$mnt"
  "$bin" init "$vol" --passphrase-file "$W/pass" >/dev/null
  "$bin" mount "$vol" "$mnt" --passphrase-file "$W/pass"
  pid=$(pgrep -f -- " mount $vol " | tail -n 1)
  /usr/bin/time -o "$W/time" -f "%e %U %S" rsync -a "$W/src/" "$mnt/"
  read -r wall user sys < "$W/time"
  t=$(awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat")
  fusermount3 -u "$mnt"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }') $t"
}

echo "# small files A/B: \`rsync -a\` of $TREE ($(find "$W/src" -type f | wc -l) files)"
echo
echo "- A: $A"
echo "- B: $B"
echo
echo "| run | binary | wall s | rsync CPU s | daemon CPU s |"
echo "|---|---|---:|---:|---:|"
declare -A sum
for r in $(seq "$RUNS"); do
  for side in A B; do
    bin=${!side}
    read -r wall rcpu dcpu < <(run "$bin")
    echo "| $r | $side | $wall | $rcpu | $dcpu |"
    sum[$side.wall]=$(awk -v a="${sum[$side.wall]:-0}" -v b="$wall" 'BEGIN { print a + b }')
    sum[$side.dcpu]=$(awk -v a="${sum[$side.dcpu]:-0}" -v b="$dcpu" 'BEGIN { print a + b }')
  done
done
echo
for side in A B; do
  echo "- $side: mean wall $(awk -v s="${sum[$side.wall]}" -v n="$RUNS" 'BEGIN { printf "%.2f", s / n }') s," \
    "mean daemon CPU $(awk -v s="${sum[$side.dcpu]}" -v n="$RUNS" 'BEGIN { printf "%.2f", s / n }') s"
done
echo "- B / A wall: $(awk -v a="${sum[A.wall]}" -v b="${sum[B.wall]}" 'BEGIN { printf "%.2f", b / a }')"
