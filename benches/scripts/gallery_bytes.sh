#!/usr/bin/env bash
# Bytes a browser transfers to load a gallery of 100 photos, per device profile (the
# profiles of the table test in src/adapt.rs), against the same gallery served as the
# originals. Inits a volume, mounts it with the sidecar on loopback, makes 100 varied
# 3000x2000 JPEGs (ffmpeg), copies them into a gallery, waits for the indexer, then
# benches/scripts/gallery_bytes.mjs opens the gallery in Chromium once per profile
# (viewport, DPR, Save-Data, throttling, battery), scrolls to the end, opens the first
# picture, and sums the encoded bytes of every response. Prints a markdown table.
# Env: ITEMS (100), WORK (/var/tmp), NANOFS_BIN, CHROMIUM (/usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/../.."
ITEMS=${ITEMS:-100}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}
NANOFS=${NANOFS_BIN:-$TARGET/release/nanofs}
[ -x "$NANOFS" ] || { source scripts/rocksdb.sh && cargo build --release --bin nanofs >&2; }
W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-gallery-bytes.XXXXXX")
MNT="$W/mnt"; mkdir -p "$MNT" "$W/photos"
DAEMON=""
cleanup() {
  if [ -n "$DAEMON" ]; then "$NANOFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
export NANOFS_PASSPHRASE=bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "making $ITEMS photos (3000x2000 JPEG, ffmpeg)" >&2
photo() { # index -> one JPEG: a lavfi source, a different seed and colour each, film-like grain
  local i=$1 src
  case $((i % 5)) in
    0) src="testsrc2=size=3000x2000" ;;
    1) src="cellauto=size=3000x2000:seed=$i:rule=$((30 + i % 90))" ;;
    2) src="mandelbrot=size=3000x2000:start_x=-0.7$((i % 10)):start_scale=$((1 + i % 4))" ;;
    3) src="gradients=size=3000x2000:seed=$i:nb_colors=$((2 + i % 6))" ;;
    4) src="life=size=3000x2000:seed=$i:mold=10:ratio=0.$((1 + i % 8))" ;;
  esac
  ffmpeg -nostdin -v error -y -f lavfi -i "$src" -frames:v 1 \
    -vf "format=rgb24,gblur=sigma=$((1 + i % 3)),hue=h=$((i * 37 % 360)):s=1.2,noise=alls=$((6 + i % 6)):allf=t:all_seed=$i" \
    -q:v 2 "$W/photos/IMG_$(printf %04d "$i").jpg"
}
export -f photo; export W
seq 0 $((ITEMS - 1)) | xargs -P 2 -I{} bash -c 'photo {}'

"$NANOFS" init "$W/vol" >/dev/null
printf 'alice-password\n' > "$W/pw"
"$NANOFS" user add "$W/vol" alice --password-file "$W/pw" 2>/dev/null
PORT=$(free_port)
"$NANOFS" mount "$W/vol" "$MNT" --foreground --serve "127.0.0.1:$PORT" 2>"$W/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -s -o /dev/null "$BASE/" && break; sleep 0.1; done
mkdir "$MNT/photos"
G=$("$NANOFS" gallery create "$W/vol" /photos --title Photos --owner alice | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "copying them into the gallery" >&2
cp "$W"/photos/*.jpg "$MNT/photos/"

TOKEN=$(curl -s -H 'Content-Type: application/json' -d '{"user":"alice","password":"alice-password"}' "$BASE/api/login" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "waiting for the indexer" >&2
for _ in $(seq 600); do
  n=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/api/galleries/$G/items?limit=500" \
    | python3 -c 'import json,sys; print(sum(1 for i in json.load(sys.stdin)["items"] if i.get("width") and i.get("placeholder")))')
  [ "$n" -ge "$ITEMS" ] && break
  sleep 1
done
[ "$n" -ge "$ITEMS" ] || { echo "only $n of $ITEMS items indexed" >&2; exit 1; }

NANOFS_URL="$BASE" GALLERY_ID="$G" USER1=alice PASS1=alice-password node benches/scripts/gallery_bytes.mjs
