#!/usr/bin/env bash
# Adaptive streaming, over loopback, in one run, each figure against a peer measured in the
# same run:
#  - packaging speed: `nanofs media package --wait` of a 1080p clip with audio into the
#    ladder 1080,720,480,360 (a job of the daemon of a mounted volume) against the same
#    ffmpeg command run by hand from the same file on ext4 into an ext4 directory (RUNS
#    alternating runs each, median);
#  - stored bytes: the volume's stored bytes of the video and its ladder (`nanofs stats`)
#    against the original file plus the plain ffmpeg output directory (du -sb);
#  - segment time to first byte, cold and warm, p50 and p99, over every segment of every
#    rung: nanofs `GET /stream/...` (bearer token) against nginx serving the by-hand output
#    directory. Cold: page cache dropped and the server restarted (nanofs unmounted and
#    mounted again) before the pass; warm: a second pass. ROUNDS alternating rounds, median.
# The by-hand command is the one the daemon logged for its own run (RUST_LOG debug of
# nanofs::stream::package), with the input and the output swapped for a file and a
# directory: the same ladder, and the same copy of the top rung when the source fits it.
# The clip: testsrc2 at 1920x1080, 30 fps, with temporal noise (noise=alls=NOISE:allf=t,
# film-grain-like detail that changes every frame), pink-noise audio, H.264 crf 20
# (veryfast) and AAC 192 kbit/s. NOISE=5 gives about 14 Mbit/s, near a phone camera's
# 1080p rate; NOISE=20 gives about 150 Mbit/s, far above any camera.
# Env: SECS (60), NOISE (5), RUNS (3), ROUNDS (3), CLIP (an existing clip instead of making
#      one), WORK (/var/tmp), NANOFS_BIN (release build), OUT (markdown report).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-60}
NOISE=${NOISE:-5}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-3}
LADDER=1080,720,480,360
SEGMENT_SECONDS=2
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-streaming-bench.XXXXXX")
MNT="$W/mnt"; mkdir -p "$MNT"
DAEMON=""; NGINX_CONF=""
cleanup() {
  if [ -n "$DAEMON" ]; then "$NANOFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  [ -n "$NGINX_CONF" ] && nginx -c "$NGINX_CONF" -p "$W/nginx" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
log() { echo "[$(date +%T)] $*" >&2; }

# The clip, made once.
if [ -n "${CLIP:-}" ]; then
  cp "$CLIP" "$W/clip.mp4"
else
  log "making a ${SECS}s 1080p clip (testsrc2 + noise alls=$NOISE)"
  ffmpeg -nostdin -v error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30,noise=alls=$NOISE:allf=t" \
    -f lavfi -i "anoisesrc=color=pink:amplitude=0.1:sample_rate=48000" \
    -t "$SECS" -c:v libx264 -preset veryfast -crf 20 -pix_fmt yuv420p \
    -c:a aac -b:a 192k -ac 2 -shortest "$W/clip.mp4"
fi
CLIP_BYTES=$(stat -c %s "$W/clip.mp4")
CLIP_DESC=$(ffprobe -v error -show_entries format=duration,bit_rate -show_entries stream=codec_name,width,height \
  -of json "$W/clip.mp4" | python3 -c '
import json, sys
p = json.load(sys.stdin)
v = next(s for s in p["streams"] if s.get("width"))
audio = ",".join(s["codec_name"] for s in p["streams"] if not s.get("width"))
f = p["format"]
print("%dx%d %s + %s, %.1f s, %.1f Mbit/s" % (v["width"], v["height"], v["codec_name"], audio, float(f["duration"]), int(f["bit_rate"]) / 1e6))')
log "clip: $CLIP_DESC, $CLIP_BYTES bytes"

# The by-hand run: the very ffmpeg command the daemon ran (it logs its arguments at debug
# level), reading the clip from ext4 and writing a directory instead of going through the
# loopback server: the ladder, the bit rates, a copied top rung when the source fits it.
hand_args() { # daemon log, input file, output directory: prints one argument a line
  python3 - "$1" "$2" "$3" <<'PY'
import ast, re, sys
log, src, out = sys.argv[1:]
lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(log, errors="replace")]
runs = [l for l in lines if "packaging with ffmpeg" in l and "args=[" in l]
if not runs:
    sys.exit("the daemon logged no ffmpeg command")
daemon = ast.literal_eval(runs[-1][runs[-1].index("args=[") + 5:].strip())
d_in = next(x for x in daemon if x.endswith("/in"))
d_out = next(x for x in daemon if x.endswith("/out/manifest.mpd"))
swap = {d_in: "file:" + src, d_out: out + "/manifest.mpd", "http,https,tcp,tls": "file"}
print("\n".join(swap.get(x, x) for x in daemon))
PY
}

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
MOUNTS=0
mount_vol() {
  MOUNTS=$((MOUNTS + 1))
  RUST_LOG=info,nanofs::stream::package=debug "$NANOFS" mount "$W/vol" "$MNT" --foreground --serve "127.0.0.1:$PORT" \
    2>"$W/daemon-$MOUNTS.log" &
  DAEMON=$!
  for _ in $(seq 300); do
    mountpoint -q "$MNT" && curl -sf "$BASE/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the daemon did not come up" >&2; cat "$W/daemon-$MOUNTS.log" >&2; exit 1
}
umount_vol() { "$NANOFS" umount "$MNT" >/dev/null; wait "$DAEMON" 2>/dev/null || true; DAEMON=""; }

"$NANOFS" init "$W/vol" >/dev/null
mount_vol
mkdir "$MNT/videos"
cp "$W/clip.mp4" "$MNT/videos/clip.mp4"
sync
TOKEN=$("$NANOFS" token create "$W/vol" --path /videos 2>/dev/null)
stats() { "$NANOFS" stats "$W/vol" --json; }
STATS_VIDEO=$(stats)

# 1. Packaging, alternating: nanofs, by hand, nanofs, by hand, ...
PACK_NANOFS=(); PACK_HAND=(); LOADS=()
load1() { cut -d' ' -f1 /proc/loadavg; }
for i in $(seq "$RUNS"); do
  drop_caches
  log "packaging run $i: nanofs"
  LOADS+=("$(load1)")
  t0=$(now)
  "$NANOFS" media package "$W/vol" /videos/clip.mp4 --ladder "$LADDER" --wait > "$W/job-$i.json"
  t1=$(now)
  PACK_NANOFS+=("$(python3 -c "print($t1 - $t0)")")
  [ "$i" = 1 ] && STATS_LADDER=$(stats)
  mkdir "$W/hand-$i"
  mapfile -t args < <(hand_args "$W/daemon-$MOUNTS.log" "$W/clip.mp4" "$W/hand-$i")
  drop_caches
  log "packaging run $i: by hand"
  LOADS+=("$(load1)")
  t0=$(now)
  ffmpeg "${args[@]}" > /dev/null
  t1=$(now)
  PACK_HAND+=("$(python3 -c "print($t1 - $t0)")")
  if [ "$i" = 2 ]; then # x264's threaded rate control is not deterministic: how far two runs differ
    HAND_SAME=0; HAND_ALL=0
    for f in "$W"/hand-1/*.m4s; do HAND_ALL=$((HAND_ALL + 1)); cmp -s "$f" "$W/hand-2/${f##*/}" && HAND_SAME=$((HAND_SAME + 1)); done
  fi
  [ "$i" = 1 ] || rm -rf "$W/hand-$i"
done
HAND="$W/hand-1"
HAND_SAME=${HAND_SAME:-?}; HAND_ALL=${HAND_ALL:-?}
STATS_END=$(stats)

# The by-hand run is the daemon's own command (hand_args), input and output swapped.
SAME_ARGS="yes (the daemon's logged command)"
COPIED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["report"].get("copied", False))' "$W/job-1.json")
log "top rung copied from the source: $COPIED"


# 3. Segment time to first byte: every init and media segment of every rung, in order.
mapfile -t SEGS < <(cd "$HAND" && ls init-*.m4s seg-*.m4s | python3 -c '
import re, sys
# By rung, the init segment first, then the media segments in order.
key = lambda n: tuple(map(int, re.findall(r"\d+", n[:-4]))) + ((-1,) if n.startswith("init") else ())
print("\n".join(sorted((l.strip() for l in sys.stdin), key=key)))')
log "${#SEGS[@]} segments per pass"
pass() { # base URL prefix, output file, extra curl args...
  local prefix=$1 outf=$2; shift 2
  local cfg="$W/curl.cfg"
  : > "$cfg"
  for s in "${SEGS[@]}"; do printf 'url = "%s/%s"\noutput = "/dev/null"\n' "$prefix" "$s" >> "$cfg"; done
  curl -sS --fail "$@" -K "$cfg" -w '%{time_starttransfer} %{http_code} %{time_total}\n' > "$outf"
  if awk '$2 != 200 {bad=1} END {exit !bad}' "$outf"; then echo "a request failed: $outf" >&2; exit 1; fi
}

mkdir -p "$W/nginx/tmp"
NPORT=$(free_port)
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
  types { video/iso.segment m4s; application/vnd.apple.mpegurl m3u8; application/dash+xml mpd; }
  server {
    listen 127.0.0.1:$NPORT;
    root $HAND;
  }
}
CONF
NGINX_UP=0
start_nginx() {
  nginx -c "$NGINX_CONF" -p "$W/nginx"; NGINX_UP=1
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$NPORT/" && return 0; sleep 0.1; done
}
stop_nginx() {
  nginx -c "$NGINX_CONF" -p "$W/nginx" -s stop
  for _ in $(seq 50); do [ -e "$W/nginx/nginx.pid" ] || break; sleep 0.1; done
  NGINX_UP=0
}

for r in $(seq "$ROUNDS"); do
  log "latency round $r: nanofs"
  umount_vol; drop_caches; mount_vol
  pass "$BASE/stream/videos/clip.mp4" "$W/ttfb-nanofs-cold-$r" -H "Authorization: Bearer $TOKEN"
  pass "$BASE/stream/videos/clip.mp4" "$W/ttfb-nanofs-warm-$r" -H "Authorization: Bearer $TOKEN"
  log "latency round $r: nginx"
  [ "$NGINX_UP" = 1 ] && stop_nginx
  drop_caches; start_nginx
  pass "http://127.0.0.1:$NPORT" "$W/ttfb-nginx-cold-$r"
  pass "http://127.0.0.1:$NPORT" "$W/ttfb-nginx-warm-$r"
done

# The segments nanofs serves against the by-hand ones, byte for byte.
mkdir "$W/fetched"
IDENTICAL=0
for s in "${SEGS[@]}"; do
  curl -sf -H "Authorization: Bearer $TOKEN" "$BASE/stream/videos/clip.mp4/$s" -o "$W/fetched/$s"
  cmp -s "$W/fetched/$s" "$HAND/$s" && IDENTICAL=$((IDENTICAL + 1))
done
VOL_DU=$(du -sb "$W/vol" | cut -f1)
"$NANOFS" gc "$W/vol" >/dev/null
VOL_DU_GC=$(du -sb "$W/vol" | cut -f1)
HAND_DU=$(du -sb "$HAND" | cut -f1)
HAND_FILES=$(find "$HAND" -type f | wc -l)
umount_vol
stop_nginx; NGINX_CONF=""

report=$(python3 - "$W" "$ROUNDS" "$CLIP_BYTES" "$HAND_DU" "$HAND_FILES" "$VOL_DU" "${#SEGS[@]}" "$IDENTICAL" \
  "${PACK_NANOFS[*]}" "${PACK_HAND[*]}" "$STATS_VIDEO" "$STATS_LADDER" "$STATS_END" "$HAND_SAME" "$HAND_ALL" "$SECS" "$VOL_DU_GC" "${LOADS[*]}" <<'PY'
import json, math, statistics, sys
w, rounds, clip, hand_du, hand_files, vol_du, nseg, identical = sys.argv[1:9]
rounds, clip, hand_du, hand_files, vol_du, nseg, identical = map(int, (rounds, clip, hand_du, hand_files, vol_du, nseg, identical))
pack_n = [float(x) for x in sys.argv[9].split()]
pack_h = [float(x) for x in sys.argv[10].split()]
s_video, s_ladder, s_end = (json.loads(x) for x in sys.argv[11:14])
hand_same, hand_all, secs, vol_du_gc, loads = sys.argv[14:19]
med = statistics.median
def area(s, name):
    return next((a for a in s.get("areas", []) if a["name"] == name), {})
def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]
def ttfb(server, kind, p, col=0):
    per_round = []
    for r in range(1, rounds + 1):
        xs = [float(l.split()[col]) * 1000 for l in open(f"{w}/ttfb-{server}-{kind}-{r}")]
        per_round.append(pct(xs, p))
    return med(per_round), per_round
mib = lambda b: f"{b / 2**20:,.1f}"
rows = []
rows.append((f"packaging, {secs} s 1080p into 1080/720/480/360 + audio (s)",
             med(pack_n), med(pack_h), " / ".join(f"{x:.1f}" for x in pack_n), " / ".join(f"{x:.1f}" for x in pack_h), 1))
ren = area(s_ladder, ".renditions")
rows.append(("stored: video + ladder (MiB; nanofs `stats` stored, plain = file + du -sb)",
             s_ladder["stored_bytes"] / 2**20, (clip + hand_du) / 2**20, mib(s_ladder["stored_bytes"]), mib(clip + hand_du), 1))
rows.append(("stored: ladder only (MiB; `.renditions` stored against du -sb)",
             ren.get("stored_bytes", 0) / 2**20, hand_du / 2**20, mib(ren.get("stored_bytes", 0)), mib(hand_du), 1))
for kind in ("cold", "warm"):
    for p in (50, 99):
        n, nr = ttfb("nanofs", kind, p)
        g, gr = ttfb("nginx", kind, p)
        rows.append((f"segment TTFB, {kind}, p{p} (ms)", n, g, " / ".join(f"{x:.2f}" for x in nr), " / ".join(f"{x:.2f}" for x in gr), 2))
print("| figure | nanofs | peer | nanofs / peer | nanofs runs | peer runs |")
print("|---|---:|---:|---:|---|---|")
for name, n, g, nr, gr, d in rows:
    print(f"| {name} | {n:,.{d}f} | {g:,.{d}f} | **{n / g:.2f}** | {nr} | {gr} |")
print()
print(f"- packaging: median of {len(pack_n)} runs each, alternating (nanofs first); peer = the same ffmpeg command by hand, ext4 file to ext4 directory; "
      f"1-minute load average at the start of each run, in order: {' / '.join(loads.split())}")
print(f"- segment TTFB: {nseg} requests a pass (every init and media segment of every rung, one keep-alive connection), median over {rounds} alternating rounds of the pass's percentile; peer = nginx serving the by-hand directory")
print(f"- volume after the video alone: stored {mib(s_video['stored_bytes'])} MiB (file {mib(clip)} MiB); after the first package run: stored {mib(s_ladder['stored_bytes'])} MiB, "
      f"`.renditions` {ren.get('files', '?')} files, logical {mib(ren.get('logical_bytes', 0))} MiB, stored {mib(ren.get('stored_bytes', 0))} MiB, only there {mib(ren.get('exclusive_bytes', 0))} MiB; "
      f"by-hand directory {hand_files} files, {mib(hand_du)} MiB")
ren_end = area(s_end, ".renditions")
print(f"- after all {len(pack_n)} package runs: stored {mib(s_end['stored_bytes'])} MiB, reclaimable by GC {mib(s_end.get('reclaimable_bytes', 0))} MiB, "
      f"`.renditions` stored {mib(ren_end.get('stored_bytes', 0))} MiB; volume directory du -sb {mib(vol_du)} MiB (with the database), "
      f"{mib(int(vol_du_gc))} MiB after `nanofs gc`")
print(f"- segments nanofs serves that are byte-identical to the first by-hand run's: {identical} of {nseg}; "
      f"between the first two by-hand runs: {hand_same} of {hand_all}")
whole = {(s, k): ttfb(s, k, 50, col=2)[0] for s in ("nanofs", "nginx") for k in ("cold", "warm")}
print(f"- whole segment (curl time_total), p50: cold nanofs {whole['nanofs', 'cold']:.2f} ms, nginx {whole['nginx', 'cold']:.2f} ms; "
      f"warm nanofs {whole['nanofs', 'warm']:.2f} ms, nginx {whole['nginx', 'warm']:.2f} ms")
PY
)

report=$(cat <<MD
# Streaming: packaging, stored bytes and segment latency (loopback)

- command: \`SECS=$SECS NOISE=$NOISE RUNS=$RUNS ROUNDS=$ROUNDS benches/scripts/streaming_bench.sh\`
- date: $(date -u +%FT%TZ); $(nproc) CPUs; $(ffmpeg -version | head -1 | cut -d' ' -f1-3); nginx $(nginx -v 2>&1 | sed 's/.*\///')
- clip: testsrc2 + noise=alls=$NOISE:allf=t, pink-noise audio: $CLIP_DESC
- by-hand ffmpeg arguments identical to the daemon's (input, output and protocol list aside): $SAME_ARGS
- top rung copied from the source (it fits the ladder's top, with keyframes at most twice the segment length apart): $COPIED

$report
MD
)
echo "$report"
if [ -n "${OUT:-}" ]; then echo "$report" > "$OUT"; fi
exit 0
