#!/usr/bin/env bash
# Where a copy of small files spends its time, request by request: runs `rsync -a` (or
# `cp -a`) of a tree into a fresh nanofs mount (or gocryptfs, for the peer's figures) and
# prints, per
# FUSE opcode, how many requests the kernel sent and how long each took from send to
# reply (the kernel tracepoints fuse:fuse_request_send and fuse:fuse_request_end),
# then the copy's wall time. Prints Markdown.
#
#   sudo benches/scripts/fuse_requests.sh                        # nanofs, /usr/share/doc
#   FS=gocryptfs benches/scripts/fuse_requests.sh                # the peer
#   NANOFS_BIN=/tmp/nanofs-old TREE=/usr/share benches/scripts/fuse_requests.sh
#   TOOL=cp TRANSPORT=uring benches/scripts/fuse_requests.sh     # cp -a, over io_uring
#
# Env: FS (nanofs | gocryptfs), TOOL (rsync | cp), TRANSPORT (nanofs's: auto | uring |
#      dev, default dev), TREE (/usr/share/doc), NANOFS_BIN
#      (~/.cache/nanofs-target/release/nanofs), BENCH_DIR (/var/tmp).
set -Eeuo pipefail

FS=${FS:-nanofs} TREE=${TREE:-/usr/share/doc} TOOL=${TOOL:-rsync} TRANSPORT=${TRANSPORT:-dev}
[[ $TRANSPORT == dev ]] || echo Y > /sys/module/fuse/parameters/enable_uring
NANOFS_BIN=${NANOFS_BIN:-$HOME/.cache/nanofs-target/release/nanofs}
[[ $EUID -eq 0 ]] || { echo "run as root (FUSE mounts, tracepoints)" >&2; exit 1; }
command -v perf >/dev/null || { echo "needs perf (Debian: linux-perf)" >&2; exit 1; }
perf list 2>/dev/null | grep fuse:fuse_request_end >/dev/null || { echo "kernel lacks the fuse tracepoints" >&2; exit 1; }

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/nanofs-requests.XXXXXX")
mkdir -p "$W"/{mnt,cipher}
echo "bench-$RANDOM" > "$W/pass"
cleanup() {
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  while pgrep -f -- "$W/" >/dev/null; do sleep 0.2; done
  rm -rf "$W"
}
trap cleanup EXIT

cp -a "$TREE" "$W/src"   # the source in the page cache, on the same disk for both
case $FS in
  nanofs)
    "$NANOFS_BIN" init "$W/vol" --passphrase-file "$W/pass" >/dev/null
    "$NANOFS_BIN" mount "$W/vol" "$W/mnt" --passphrase-file "$W/pass" -o "transport=$TRANSPORT" ;;
  gocryptfs)
    gocryptfs -init -q -passfile "$W/pass" "$W/cipher" >/dev/null
    gocryptfs -q -passfile "$W/pass" "$W/cipher" "$W/mnt" ;;
  *) echo "FS is nanofs or gocryptfs" >&2; exit 1 ;;
esac

start=$(date +%s.%N)
case $TOOL in
  rsync) copy=(rsync -a "$W/src/" "$W/mnt/") ;;
  cp) copy=(cp -a "$W/src/." "$W/mnt/") ;;
  *) echo "TOOL is rsync or cp" >&2; exit 1 ;;
esac
perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o "$W/perf.data" -- \
  "${copy[@]}" 2>/dev/null
wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
files=$(find "$W/src" -type f | wc -l)

over=""; [[ $FS == nanofs ]] && over=" over $TRANSPORT"
echo "# FUSE requests of \`$TOOL -a\` into $FS$over"
echo
echo "- tree: $TREE ($files files); $(uname -r); $(date --rfc-3339=seconds)"
echo "- $TOOL wall time (with tracing): $wall s"
echo
perf script -i "$W/perf.data" 2>/dev/null | python3 -c '
import collections, re, sys
files = int(sys.argv[1])
sent, ops = {}, {}
n, total = collections.Counter(), collections.defaultdict(float)
pat = re.compile(r"(\d+\.\d+):\s+fuse:fuse_request_(send|end): connection \d+ req (\d+)(?: opcode \d+ \((\w+)\))?")
for line in sys.stdin:
    m = pat.search(line)
    if not m:
        continue
    t, kind, req = float(m.group(1)), m.group(2), m.group(3)
    if kind == "send":
        sent[req], ops[req] = t, m.group(4)
    elif req in sent:
        op = ops.pop(req)
        n[op] += 1
        total[op] += t - sent.pop(req)
print("| opcode | requests | per file | mean µs | total s |")
print("|---|---:|---:|---:|---:|")
for op in sorted(total, key=lambda o: -total[o]):
    print(f"| {op} | {n[op]} | {n[op] / files:.2f} | {1e6 * total[op] / n[op]:.1f} | {total[op]:.2f} |")
print(f"| all | {sum(n.values())} | {sum(n.values()) / files:.2f} | | {sum(total.values()):.2f} |")
' "$files"
