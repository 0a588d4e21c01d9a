#!/usr/bin/env bash
# HTTP sidecar against nginx, over loopback, on the same data in one run:
#  - upload and download MB/s of one file with `nanofs push`/`pull` (1 and 4 connections),
#    tuspy (one connection) and curl (1 and 4 connections, ranges), against nginx receiving
#    it (WebDAV PUT, then `sync`) and serving it from a plain directory (curl); the same
#    over TLS 1.3 (the sidecar's rustls, X25519MLKEM768 first; nginx with its defaults);
#  - bytes sent again when an upload is interrupted at about half and resumed;
#  - bytes sent when a second version with 1 % changed is pushed over the first;
#  - peak RSS of the sidecar with 100 concurrent tus uploads.
# Env: SIZE_MIB (2048), UPLOADS (100), UPLOAD_MIB (16 per concurrent upload), WORK (/var/tmp),
#      NANOFS_BIN (release build), OUT (markdown report).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${SIZE_MIB:-2048}
UPLOADS=${UPLOADS:-100}
UPLOAD_MIB=${UPLOAD_MIB:-16}
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-sidecar-bench.XXXXXX")
SERVE_PID=""; NGINX_CONF=""
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
  [ -n "$NGINX_CONF" ] && nginx -c "$NGINX_CONF" -p "$W/nginx" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench XDG_STATE_HOME="$W/state"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
mbps() { python3 -c "print(f'{$1/1e6/($3-$2):.1f}')"; }

echo "data: $SIZE_MIB MiB of random bytes" >&2
# One file per upload into a volume: the same bytes twice would only be deduplicated.
for f in src src4 srctus; do head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/$f.bin"; done
BYTES=$((SIZE_MIB << 20))

start_sidecar() { # extra serve args (TLS) after
  "$NANOFS" init "$W/vol" >/dev/null
  local port; port=$(free_port)
  "$NANOFS" serve "$W/vol" --listen "127.0.0.1:$port" "$@" > "$W/serve.out" 2>"$W/serve.log" &
  SERVE_PID=$!
  for _ in $(seq 100); do grep -q listening "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
  BASE=$(sed -n 's/listening on //p' "$W/serve.out")
  export NANOFS_TOKEN; NANOFS_TOKEN=$("$NANOFS" token create "$W/vol" --allow read,write,delete 2>/dev/null)
}
stop_sidecar() { kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=""; rm -rf "$W/vol"; }

rows=()
row() { rows+=("| $1 | $2 | $3 |"); }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# curl GET of $1 into back.bin over $2 connections (ranges into part files, then joined
# outside the timing), extra curl args after; prints MB/s. Compares with $SRC. With
# SYNC=1, the timing ends after a `sync`, as `nanofs pull` ends with an `fsync`.
SRC="$W/src.bin"
curl_get() {
  local url=$1 conns=$2; shift 2
  rm -f "$W"/back.bin "$W"/part.*; drop
  local t0 t1; t0=$(now)
  if [ "$conns" = 1 ]; then
    curl -sS --fail "$@" "$url" -o "$W/back.bin"
  else
    local per=$(( (BYTES + conns - 1) / conns )) pids=()
    for i in $(seq 0 $((conns - 1))); do
      local a=$((i * per)) b=$(( (i + 1) * per - 1 )); [ $b -ge $BYTES ] && b=$((BYTES - 1))
      curl -sS --fail "$@" -r "$a-$b" "$url" -o "$W/part.$i" & pids+=($!)
    done
    wait "${pids[@]}"
  fi
  [ "${SYNC:-0}" = 1 ] && sync
  t1=$(now)
  [ "$conns" = 1 ] || cat $(for i in $(seq 0 $((conns - 1))); do echo "$W/part.$i"; done) > "$W/back.bin"
  cmp -s "$SRC" "$W/back.bin" || { echo "download differs: $url" >&2; exit 1; }
  mbps $BYTES "$t0" "$t1"
}
# nanofs push and pull over $1 connections to $BASE, extra client args after.
nanofs_pair() {
  local conns=$1 label=$2; shift 2
  SRC="$W/src.bin"; [ "$conns" = 1 ] || SRC="$W/src$conns.bin"
  drop
  local t0 t1 t2 t3; t0=$(now); "$NANOFS" push "$SRC" "$BASE/files/f$conns.bin" --connections "$conns" -q "$@"; t1=$(now)
  rm -f "$W/back.bin"; drop
  t2=$(now); "$NANOFS" pull "$BASE/files/f$conns.bin" "$W/back.bin" --connections "$conns" -q "$@"; t3=$(now)
  cmp -s "$SRC" "$W/back.bin" || { echo "pull differs" >&2; exit 1; }
  row "$label, nanofs push / pull, $conns connection(s)" "$(mbps $BYTES "$t0" "$t1")" "$(mbps $BYTES "$t2" "$t3")"
  row "$label, curl GET from nanofs, $conns connection(s)" "" "$(curl_get "$BASE/files/f$conns.bin" "$conns" -H "Authorization: Bearer $NANOFS_TOKEN" "${CURL_TLS[@]}")"
}
tuspy_push() { # tuspy, one connection, PATCHes of 8 MiB
  local py="$HOME/.cache/nanofs-venv/bin/python"
  [ -x "$py" ] || { echo "(no tuspy: run scripts/setup.sh)" >&2; return; }
  drop
  local t0 t1; t0=$(now)
  REQUESTS_CA_BUNDLE="$W/cert.pem" "$py" - "$BASE" "$NANOFS_TOKEN" "$W/srctus.bin" <<'PY'
import sys
from tusclient import client
base, token, src = sys.argv[1:4]
c = client.TusClient(base + "/uploads", headers={"Authorization": "Bearer " + token})
u = c.uploader(src, chunk_size=8 << 20, metadata={"path": "/tus.bin"})
u.upload()
PY
  t1=$(now)
  row "$1, tuspy upload, 1 connection" "$(mbps $BYTES "$t0" "$t1")" ""
}

# A self-signed certificate for both servers' TLS runs.
# (An end-entity certificate: rustls refuses a CA certificate as a server's.)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -addext keyUsage=digitalSignature -addext extendedKeyUsage=serverAuth \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null

CURL_TLS=()
start_sidecar
for conns in 1 4; do nanofs_pair "$conns" plain; done
tuspy_push plain
stop_sidecar
CURL_TLS=(--cacert "$W/cert.pem")
start_sidecar --tls-cert "$W/cert.pem" --tls-key "$W/key.pem"
for conns in 1 4; do nanofs_pair "$conns" TLS --ca-cert "$W/cert.pem"; done
tuspy_push TLS
stop_sidecar

# nginx: WebDAV PUT in (then sync, as a tus PATCH is durable before its answer), static
# GET out; plain and TLS 1.3 with its default groups.
mkdir -p "$W/nginx/root" "$W/nginx/tmp"
NPORT=$(free_port); SPORT=$(free_port)
NGINX_CONF="$W/nginx/nginx.conf"
cat > "$NGINX_CONF" <<CONF
user root;
worker_processes 2;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $W/nginx/tmp;
  sendfile on;
  server {
    listen 127.0.0.1:$NPORT;
    listen 127.0.0.1:$SPORT ssl;
    ssl_certificate $W/cert.pem;
    ssl_certificate_key $W/key.pem;
    ssl_protocols TLSv1.3;
    root $W/nginx/root;
    client_max_body_size 0;
    dav_methods PUT DELETE;
    create_full_put_path on;
  }
}
CONF
nginx -c "$NGINX_CONF" -p "$W/nginx"
SRC="$W/src.bin"
for mode in plain TLS; do
  if [ $mode = plain ]; then U="http://127.0.0.1:$NPORT"; T=(); else U="https://127.0.0.1:$SPORT"; T=(--cacert "$W/cert.pem"); fi
  drop
  t0=$(now); curl -sS --fail "${T[@]}" -T "$W/src.bin" "$U/f.bin" -o /dev/null; sync; t1=$(now)
  row "$mode, nginx WebDAV PUT (curl), 1 connection" "$(mbps $BYTES "$t0" "$t1")" ""
  for conns in 1 4; do
    row "$mode, curl GET from nginx, $conns connection(s)" "" "$(curl_get "$U/f.bin" "$conns" "${T[@]}")"
    # The peer of `nanofs pull`, which makes what it wrote durable before it returns.
    row "$mode, curl GET from nginx, then sync, $conns connection(s)" "" "$(SYNC=1 curl_get "$U/f.bin" "$conns" "${T[@]}")"
  done
done
nginx -c "$NGINX_CONF" -p "$W/nginx" -s stop; NGINX_CONF=""

# Interrupted at about half, then resumed. Bytes on the wire are the loopback interface's
# counter over both runs (requests and answers; answers are a few hundred bytes each).
lo_bytes() { awk '/^ *lo:/ {print $2}' /proc/net/dev; }
start_sidecar
sync; echo 3 > /proc/sys/vm/drop_caches
lo0=$(lo_bytes)
"$NANOFS" push "$W/src.bin" "$BASE/files/r.bin" --connections 4 -q 2>"$W/push1.log" &
PP=$!
# Kill the client once the sidecar holds half the file (the offsets of its part uploads,
# whose URLs the client's journal names).
python3 - "$XDG_STATE_HOME/nanofs/push" "$NANOFS_TOKEN" "$BYTES" <<'PY'
import glob, json, sys, time, urllib.request
d, token, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
while True:
    got = 0
    for j in glob.glob(d + "/*.json"):
        try:
            plan = json.load(open(j))
        except ValueError:
            continue
        for p in plan["parts"]:
            if p.get("url"):
                req = urllib.request.Request(p["url"], method="HEAD", headers={"Tus-Resumable": "1.0.0", "Authorization": "Bearer " + token})
                try:
                    got += int(urllib.request.urlopen(req).headers["Upload-Offset"])
                except Exception:
                    pass
    if got >= total // 2:
        break
    time.sleep(0.1)
PY
kill -9 "$PP" 2>/dev/null || true; wait "$PP" 2>/dev/null || true
lo1=$(lo_bytes)
"$NANOFS" push "$W/src.bin" "$BASE/files/r.bin" --connections 4 2>"$W/push2.log"
lo2=$(lo_bytes)
first=$((lo1 - lo0)); second=$((lo2 - lo1))
resent=$(python3 -c "print(max(0, $first + $second - $BYTES))")
resent_pct=$(python3 -c "print(f'{max(0, $first + $second - $BYTES) / $BYTES * 100:.2f}')")

# A second version with 1 % changed in five places, pushed over the first: delta push.
python3 - "$W/src.bin" <<'PY'
import os, sys
size = os.path.getsize(sys.argv[1])
with open(sys.argv[1], "r+b") as f:
    for i in range(5):
        f.seek(size * (2 * i + 1) // 11)
        f.write(os.urandom(size // 500))
PY
lo3=$(lo_bytes)
t0=$(now); "$NANOFS" push "$W/src.bin" "$BASE/files/r.bin" --connections 4 -q; t1=$(now)
lo4=$(lo_bytes)
delta_sent=$((lo4 - lo3))
delta_pct=$(python3 -c "print(f'{$delta_sent / $BYTES * 100:.2f}')")
delta_secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
stop_sidecar

# 100 concurrent uploads: peak RSS of the sidecar.
start_sidecar
head -c $((UPLOAD_MIB << 20)) /dev/urandom > "$W/small.bin"
python3 - "$BASE" "$NANOFS_TOKEN" "$W/small.bin" "$UPLOADS" <<'PY'
import sys, threading, http.client, base64, urllib.parse
base, token, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = open(path, "rb").read()
u = urllib.parse.urlparse(base)
def one(i):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    meta = "path " + base64.b64encode(f"/many/{i}.bin".encode()).decode()
    c.request("POST", "/uploads", headers={"Tus-Resumable": "1.0.0", "Authorization": "Bearer " + token, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    r = c.getresponse(); r.read(); loc = r.getheader("Location")
    step = 1 << 20
    for off in range(0, len(data), step):
        c.request("PATCH", loc, body=data[off:off+step], headers={"Tus-Resumable": "1.0.0", "Authorization": "Bearer " + token, "Upload-Offset": str(off), "Content-Type": "application/offset+octet-stream"})
        r = c.getresponse(); r.read()
        assert r.status == 204, r.status
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
rss=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$SERVE_PID/status)
stop_sidecar

report=$(cat <<MD
# Sidecar transfers against nginx (loopback)

- command: \`SIZE_MIB=$SIZE_MIB UPLOADS=$UPLOADS UPLOAD_MIB=$UPLOAD_MIB benches/scripts/sidecar_transfer.sh\`
- date: $(date -u +%FT%TZ); $(nproc) CPUs; nginx $(nginx -v 2>&1 | sed 's/.*\///')
- one file of $SIZE_MIB MiB of random bytes; page cache dropped before each transfer

| transfer | upload MB/s | download MB/s |
|---|---:|---:|
$(printf '%s\n' "${rows[@]}")

- interrupted upload (4 connections, client killed at about half, command run again): the
  first run moved $first bytes over loopback, the second $second; bytes sent twice
  (or HTTP overhead): $resent ($resent_pct % of the file).
- second version, 1 % changed in five places, pushed over the first (delta): $delta_sent
  bytes over loopback ($delta_pct % of the file), $delta_secs s including the manifest.
- $UPLOADS concurrent tus uploads of $UPLOAD_MIB MiB each: peak sidecar RSS $rss MiB.
MD
)
echo "$report"
if [ -n "${OUT:-}" ]; then echo "$report" > "$OUT"; fi
