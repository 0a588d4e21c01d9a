# Sourced by the sidecar benchmarks that compare builds or measure one (transfer_ab.sh,
# get_ab.sh, download_cpu.sh, sidecar_profile.sh): `nanofs serve` on a fresh volume over
# loopback.
#   serve_fresh BIN: a new volume at $W/vol served by BIN; sets BASE (its URL), SERVE_PID
#   and NANOFS_TOKEN (read, write, delete). Needs W and NANOFS_PASSPHRASE.
#   serve_stop: stops it. The caller's EXIT trap should call serve_stop too.
SERVE_PID=""
serve_fresh() {
  local bin=$1 port
  rm -rf "$W/vol"; "$bin" init "$W/vol" >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" serve "$W/vol" --listen "127.0.0.1:$port" > "$W/serve.out" 2>"$W/serve.log" &
  SERVE_PID=$!
  for _ in $(seq 100); do grep -q listening "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
  BASE="http://127.0.0.1:$port"
  export NANOFS_TOKEN; NANOFS_TOKEN=$("$bin" token create "$W/vol" --allow read,write,delete 2>/dev/null)
}
serve_stop() {
  [ -z "$SERVE_PID" ] && return 0
  kill "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=""
}

# A/B of two builds: `ab_rounds` runs the caller's `one BIN LABEL` for builds A and B,
# ROUNDS times, the order alternating (this machine is noisy); `one` appends each MB/s
# figure to runs["LABEL KEY"]. `ab_table TITLE KEY...` prints the medians with B/A, in
# UNIT (MB/s unless set).
declare -A runs
ab_rounds() {
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then one "$A" A; one "$B" B; else one "$B" B; one "$A" A; fi
  done
}
ab_table() {
  local title=$1 key a b; shift
  median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.1f}')" $1; }
  echo "| $title | A ${UNIT:-MB/s} (runs) | B ${UNIT:-MB/s} (runs) | B/A |"
  echo "|---|---|---|---:|"
  for key in "$@"; do
    a=$(median "${runs[A $key]}"); b=$(median "${runs[B $key]}")
    echo "| $key connection(s) | $a (${runs[A $key]% }) | $b (${runs[B $key]% }) | $(python3 -c "print(f'{$b/$a:.2f}')") |"
  done
}
