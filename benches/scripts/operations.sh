#!/usr/bin/env bash
# Costs of running nanofs as a service, as ratios measured in one run (docs/benchmarks.md):
#  1. a Prometheus scrape of /metrics against a /healthz round trip on the same keep-alive
#     connection, and the daemon's CPU time per scrape (from /proc);
#  2. the audit trail on a small-file workload: N files written through the mount, then
#     deleted over HTTP (each delete an audited act, fsync'd), with [audit] enabled = true
#     and = false on two fresh volumes, alternated over ROUNDS rounds;
#  3. the trash on the same small-file workload deleted through the mount (`rm -r` of a
#     directory of N files), with [retention] trash_days = 7 and = 0, alternated likewise.
# Usage: benches/scripts/operations.sh [FILES] [ROUNDS] [SCRAPES]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/rocksdb.sh
cargo build --release --quiet --bin nanofs
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
FILES=${1:-500}
ROUNDS=${2:-3}
SCRAPES=${3:-500}
export NANOFS_PASSPHRASE=bench
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-ops.XXXXXX")
DAEMON=""
MNT=""
stop() {
  if [ -n "$DAEMON" ]; then
    "$NANOFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
    DAEMON=""
  fi
}
trap 'stop; rm -rf "$W"' EXIT
# start NAME TOML: a fresh volume mounted with its sidecar; sets MNT, BASE, DAEMON, TOKEN.
start() {
  local vol="$W/$1"
  MNT="$W/$1.mnt"
  mkdir -p "$MNT"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  BASE="http://127.0.0.1:$port"
  "$NANOFS" init "$vol" >/dev/null
  printf '%s\n' "$2" > "$vol/nanofs.toml"
  TOKEN=$("$NANOFS" token create "$vol" --allow read,delete,metrics 2>/dev/null)
  RUST_LOG=warn "$NANOFS" mount "$vol" "$MNT" --foreground --serve "127.0.0.1:$port" 2>"$W/$1.log" &
  DAEMON=$!
  for _ in $(seq 300); do
    mountpoint -q "$MNT" && curl -sf "$BASE/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}

echo "== /metrics scrape cost ($SCRAPES scrapes, a volume of $FILES files)"
start scrape "[media.streaming]
webrtc_port = 0"
for i in $(seq "$FILES"); do head -c 4096 /dev/urandom > "$MNT/f$i"; done
sync
python3 - "$BASE" "$TOKEN" "$SCRAPES" "$DAEMON" <<'PY'
import http.client, sys, time, urllib.parse
base, token, n, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
tick = 100  # USER_HZ
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def run(path, auth):
    h = {"Authorization": f"Bearer {token}"} if auth else {}
    for _ in range(20):
        c.request("GET", path, headers=h); c.getresponse().read()
    c0, t0 = cpu(), time.perf_counter()
    size = 0
    for _ in range(n):
        c.request("GET", path, headers=h); r = c.getresponse(); size = len(r.read())
        assert r.status == 200, r.status
    return (time.perf_counter() - t0) / n, (cpu() - c0) / n, size
hz = run("/healthz", False)
m = run("/metrics", True)
print(f"/healthz   {hz[0]*1e3:.3f} ms per request, {hz[1]*1e3:.3f} ms daemon CPU")
print(f"/metrics   {m[0]*1e3:.3f} ms per scrape,  {m[1]*1e3:.3f} ms daemon CPU, {m[2]} bytes")
print(f"scrape / healthz round trip: {m[0]/hz[0]:.2f}x")
PY
stop

echo "== audit trail on $FILES small-file deletes over HTTP ($ROUNDS rounds, alternating)"
for r in $(seq "$ROUNDS"); do
  for audit in true false; do
    start "audit-$audit-$r" "[audit]
enabled = $audit
[media.streaming]
webrtc_port = 0"
    for i in $(seq "$FILES"); do head -c 4096 /dev/urandom > "$MNT/f$i"; done
    sync
    python3 - "$BASE" "$TOKEN" "$FILES" "$audit" <<'PY'
import http.client, sys, time, urllib.parse
base, token, n, audit = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
t0 = time.perf_counter()
for i in range(1, n + 1):
    c.request("DELETE", f"/files/f{i}", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); r.read()
    assert r.status == 204, r.status
dt = time.perf_counter() - t0
print(f"audit={audit:5} {n / dt:8.1f} deletes/s ({dt / n * 1e3:.2f} ms each)")
PY
    stop
  done
done | tee "$W/audit.txt"
python3 - "$W/audit.txt" <<'PY'
import sys, statistics
on, off = [], []
for line in open(sys.argv[1]):
    rate = float(line.split()[1])
    (on if line.startswith("audit=true") else off).append(rate)
print(f"median deletes/s with the audit trail {statistics.median(on):.1f}, without {statistics.median(off):.1f}: "
      f"{statistics.median(on) / statistics.median(off):.2f}x")
PY

echo "== trash on $FILES small-file deletes through the mount (rm -r, $ROUNDS rounds, alternating)"
for r in $(seq "$ROUNDS"); do
  for days in 7 0; do
    start "trash-$days-$r" "[retention]
trash_days = $days
[media.streaming]
webrtc_port = 0"
    mkdir -p "$MNT/album/2024"
    for i in $(seq "$FILES"); do head -c 4096 /dev/urandom > "$MNT/album/2024/f$i"; done
    sync
    t0=$(date +%s.%N)
    rm -r "$MNT/album"
    t1=$(date +%s.%N)
    python3 -c "import sys; n, dt = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'trash_days={sys.argv[4]} {n / dt:8.1f} deletes/s ({dt / n * 1e3:.3f} ms each)')" "$FILES" "$t0" "$t1" "$days"
    if [ "$days" = 7 ]; then
      kept=$("$NANOFS" trash list "$W/trash-$days-$r" | wc -l)
      [ "$kept" = "$FILES" ] || { echo "expected $FILES files in the trash, found $kept" >&2; exit 1; }
    fi
    stop
  done
done | tee "$W/trash.txt"
python3 - "$W/trash.txt" <<'PY'
import sys, statistics
on, off = [], []
for line in open(sys.argv[1]):
    rate = float(line.split()[1])
    (on if line.startswith("trash_days=7") else off).append(rate)
print(f"median deletes/s into the trash {statistics.median(on):.1f}, for good {statistics.median(off):.1f}: "
      f"{statistics.median(on) / statistics.median(off):.2f}x")
PY
