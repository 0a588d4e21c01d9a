#!/usr/bin/env bash
# Live streams at scale over loopback (examples/live_load.rs): STREAMS streams published at
# once, each watched by WHEP_PER_STREAM WebRTC and HLS_PER_STREAM LL-HLS viewers, then one
# stream watched by WHEP_ONE WebRTC and HLS_ONE LL-HLS viewers. Publishers replay a
# 640x360, 30 frames/s H.264 test pattern (made once by ffmpeg) without encoding, so the
# two cores go to the sidecar and to the viewers' own decryption.
# Reports the sidecar's CPU (cores busy over the run), its memory growth per viewer, the
# frames and parts every viewer got against those published while it watched, and delays.
# Env: SECONDS_PER_RUN (30), STREAMS (100), WHEP_PER_STREAM (1), HLS_PER_STREAM (1),
# WHEP_ONE (200), HLS_ONE (800), WORK (/var/tmp), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-30}
STREAMS=${STREAMS:-100}
WHEP_PER_STREAM=${WHEP_PER_STREAM:-1}
HLS_PER_STREAM=${HLS_PER_STREAM:-1}
WHEP_ONE=${WHEP_ONE:-200}
HLS_ONE=${HLS_ONE:-800}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}
source scripts/rocksdb.sh
cargo build --release --quiet --bin nanofs --example live_load
NANOFS_BIN=$TARGET/release/nanofs
LOAD=$TARGET/release/examples/live_load
source benches/scripts/live_common.sh
ulimit -n "$(ulimit -Hn)"
live_mount live-load "$(printf '[media.streaming]\nwebrtc_port = 0\nmax_concurrent_streams = %s\nmax_viewers_per_stream = %s\nlive_grace_seconds = 2' \
  $((STREAMS + 10)) $((WHEP_ONE + HLS_ONE + 100)))"

ffmpeg -v error -f lavfi -i "testsrc2=size=640x360:rate=30" -t 10 -c:v libx264 -preset veryfast \
  -tune zerolatency -profile:v baseline -g 30 -b:v 600k -x264-params aud=1:repeat-headers=1 \
  -bsf:v h264_mp4toannexb -f h264 "$W/video.h264"

PID=$DAEMON
for i in $(seq "$STREAMS"); do
  echo "s$i $("$NANOFS" stream create "$W/vol" "s$i" --path /live 2>/dev/null | tail -1)"
done > "$W/streams"
head -1 "$W/streams" > "$W/one"
TOKEN=$("$NANOFS" token create "$W/vol" --path /live 2>/dev/null)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# run NAME STREAMS-FILE WHEP HLS: the load, with the sidecar's CPU and peak memory.
run() {
  local name=$1 file=$2 whep=$3 hls=$4
  sleep 3 # the previous run's streams end (grace period)
  local rss0 t0 c0 peak=0
  rss0=$(rss_kib "$PID"); c0=$(cpu_ticks "$PID"); t0=$(date +%s.%N)
  "$LOAD" "$BASE" "$file" "$TOKEN" "$W/video.h264" "$SECONDS_PER_RUN" "$whep" "$hls" > "$W/$name.json" &
  local load=$!
  while kill -0 "$load" 2>/dev/null; do
    local r; r=$(rss_kib "$PID"); [ "$r" -gt "$peak" ] && peak=$r
    sleep 1
  done
  wait "$load"
  local c1 t1
  c1=$(cpu_ticks "$PID"); t1=$(date +%s.%N)
  python3 - "$W/$name.json" "$name" "$rss0" "$peak" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
name, rss0, peak, c0, c1, t0, t1, hz = sys.argv[2], *map(float, sys.argv[3:])
viewers = r["webrtc"]["viewers"] + r["hls"]["viewers"]
print(f"## {name}: {r['streams']} stream(s), {r['webrtc']['viewers']} WebRTC + {r['hls']['viewers']} LL-HLS viewers")
print(f"sidecar CPU {(c1 - c0) / hz / (t1 - t0):.2f} cores over {t1 - t0:.0f} s; "
      f"memory +{(peak - rss0) / 1024:.0f} MiB at peak, {(peak - rss0) / max(viewers, 1):.0f} KiB per viewer")
w, h = r["webrtc"], r["hls"]
for d in (w, h):  # no viewers of a kind: no delays
    for k, v in d.items():
        d[k] = float("nan") if v is None else v
print(f"WebRTC: {w['frames_received']}/{w['frames_expected']} frames, {w['viewers_missing_frames']} viewers missed some, "
      f"{w['failed']} failed {w['errors']}; delay p50 {w['delay_p50_ms']:.1f} ms, p99 {w['delay_p99_ms']:.1f} ms")
print(f"LL-HLS: {h['parts_received']}/{h['parts_expected']} parts, {h['viewers_missing_parts']} viewers missed some, "
      f"{h['failed']} failed {h['errors']}; after the first viewer p50 {h['after_first_viewer_p50_ms']:.1f} ms, "
      f"p99 {h['after_first_viewer_p99_ms']:.1f} ms")
EOF
}

run streams "$W/streams" "$WHEP_PER_STREAM" "$HLS_PER_STREAM"
run audience "$W/one" "$WHEP_ONE" "$HLS_ONE"
