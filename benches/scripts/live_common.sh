# Sourced by the live stream benchmarks (live_bench.sh, live_load.sh, live_simulcast.sh):
# a fresh volume mounted with its sidecar on loopback, unmounted and removed on exit.
#   live_mount NAME CONFIG [PORT]: NAME prefixes the work directory, CONFIG is the
#   volume's nanofs.toml, PORT the sidecar's (default: a free one). Sets W (the work
#   directory), MNT, BASE (the sidecar's URL) and DAEMON (its pid); /live exists.
NANOFS=${NANOFS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release/nanofs}
export NANOFS_PASSPHRASE=bench
W=""
DAEMON=""
live_cleanup() {
  if [ -n "$DAEMON" ]; then
    "$NANOFS" umount "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
  fi
  [ -z "$W" ] || rm -rf "$W"
}
trap live_cleanup EXIT
live_mount() {
  W=$(mktemp -d "${WORK:-/var/tmp}/nanofs-$1.XXXXXX")
  MNT="$W/mnt"
  mkdir -p "$MNT"
  local port=${3:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
  BASE="http://127.0.0.1:$port"
  "$NANOFS" init "$W/vol" >/dev/null
  printf '%s\n' "$2" > "$W/vol/nanofs.toml"
  RUST_LOG=${RUST_LOG:-info} "$NANOFS" mount "$W/vol" "$MNT" --foreground --serve "127.0.0.1:$port" 2>"$W/daemon.log" &
  DAEMON=$!
  for _ in $(seq 300); do
    mountpoint -q "$MNT" && curl -sf "$BASE/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  mkdir "$MNT/live"
}
