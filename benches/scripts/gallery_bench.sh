#!/usr/bin/env bash
# Shared galleries, over loopback, in one run:
#  - listing a gallery of ITEMS items (default 10,000): first page and deep pages, sorted
#    by name, date and size; the baseline is `ls -l` of the same directory through the mount;
#  - live-event fan-out: a comment posted while 50 and 500 WebSocket clients are connected,
#    latency from the POST to its arrival at every client (p50, p99), against the POST's
#    own round trip; daemon memory per connected client.
# Env: ITEMS (10000), CLIENTS ("50 500"), WORK (/var/tmp), NANOFS_BIN, LOAD_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."
ITEMS=${ITEMS:-10000}
CLIENTS=${CLIENTS:-"50 500"}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}
NANOFS=${NANOFS_BIN:-$TARGET/release/nanofs}
LOAD=${LOAD_BIN:-$TARGET/release/examples/gallery_load}
[ -x "$LOAD" ] || { source scripts/rocksdb.sh && cargo build --release --example gallery_load >&2; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-gallery-bench.XXXXXX")
MNT="$W/mnt"; mkdir -p "$MNT"
DAEMON=""
cleanup() {
  if [ -n "$DAEMON" ]; then "$NANOFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ulimit -n 65536 2>/dev/null || ulimit -n 8192

"$NANOFS" init "$W/vol" >/dev/null
printf 'alice-password\n' > "$W/pw"
"$NANOFS" user add "$W/vol" alice --password-file "$W/pw" 2>/dev/null
PORT=$(free_port)
"$NANOFS" mount "$W/vol" "$MNT" --foreground --serve "127.0.0.1:$PORT" 2>"$W/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
BASE="http://127.0.0.1:$PORT"

echo "creating $ITEMS files through the mount" >&2
mkdir "$MNT/big"
python3 - "$MNT/big" "$ITEMS" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"IMG_{i:05d}.jpg"), "wb") as f:
        f.write(os.urandom(64 + (i * 37) % 4096))
PY
G=$("$NANOFS" gallery create "$W/vol" /big --title Big --owner alice | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
TOKEN=$(curl -s -H 'Content-Type: application/json' -d '{"user":"alice","password":"alice-password"}' "$BASE/api/login" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$LOAD" listing "$BASE" "$G" "$TOKEN" >/dev/null   # warm the caches once
echo "## listing"
"$LOAD" listing "$BASE" "$G" "$TOKEN"
python3 - "$MNT/big" <<'PY'
import os, sys, time, statistics, subprocess
runs = []
for _ in range(15):
    t = time.perf_counter()
    subprocess.run(["ls", "-l", sys.argv[1]], stdout=subprocess.DEVNULL, check=True)
    runs.append((time.perf_counter() - t) * 1000)
runs.sort()
print(f"baseline: ls -l of the same {len(os.listdir(sys.argv[1]))} files through the mount: median {statistics.median(runs):.1f} ms")
PY

mkdir "$MNT/live"
echo hello > "$MNT/live/a.txt"
L=$("$NANOFS" gallery create "$W/vol" /live --title Live --owner alice | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ITEM=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/api/galleries/$L/items" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
echo "## fan-out"
python3 - "$BASE" "$L" "$ITEM" "$TOKEN" <<'PY'
import json, sys, time, statistics, urllib.request
base, g, item, token = sys.argv[1:]
runs = []
for i in range(20):
    req = urllib.request.Request(f"{base}/api/galleries/{g}/items/{item}/comments", method="POST",
        data=json.dumps({"text": f"warm {i}"}).encode(), headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    t = time.perf_counter(); urllib.request.urlopen(req).read(); runs.append((time.perf_counter() - t) * 1000)
runs.sort()
print(f"baseline: POST of a comment (durable commit, no listeners): p50 {statistics.median(runs):.1f} ms, p99 {runs[-1]:.1f} ms")
PY
for n in $CLIENTS; do
  "$LOAD" fanout "$BASE" "$L" "$ITEM" "$TOKEN" "$n" "$DAEMON"
  sleep 1
done
