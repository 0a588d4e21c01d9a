#!/usr/bin/env bash
# Live streams over loopback: latency from publisher to viewer measured on the frames
# themselves (benches/scripts/live_latency.mjs: the publisher draws the wall-clock time
# into each 640x360 frame and sends it by WHIP from headless Chromium; a viewer in a second
# browser context reads it back from every decoded frame), over WebRTC (WHEP) and over
# low-latency HLS (hls.js), ROUNDS rounds each, alternating. No peer server runs here:
# MediaMTX is not in any registry this machine reaches, so the figures are absolute.
# Env: SECONDS_PER_RUN (20), ROUNDS (3), WORK (/var/tmp), NANOFS_BIN (release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
ROUNDS=${ROUNDS:-3}
source benches/scripts/live_common.sh
live_mount live-bench "$(printf '[media.streaming]\nwebrtc_port = 0')"
KEY=$("$NANOFS" stream create "$W/vol" bench --path /live 2>/dev/null | tail -1)
TOKEN=$("$NANOFS" token create "$W/vol" --path /live 2>/dev/null)

for r in $(seq "$ROUNDS"); do
  for mode in webrtc hls; do
    NANOFS_URL=$BASE STREAM=bench KEY=$KEY TOKEN=$TOKEN MODE=$mode SECONDS=$SECONDS_PER_RUN \
      node benches/scripts/live_latency.mjs | tee -a "$W/results"
    # The stream ends before the next round starts (grace period).
    sleep 12
  done
done
python3 - "$W/results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for mode in ("webrtc", "hls"):
    rs = [r for r in rows if r["mode"] == mode]
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f"{mode}: p50 {med('p50_ms')} ms, p90 {med('p90_ms')} ms, p99 {med('p99_ms')} ms "
          f"(median of {len(rs)} runs, {sum(r['frames'] for r in rs)} frames)")
EOF
