# Sourced by the FUSE floor benchmarks (fuse_floor.sh, read_floor.sh): checks that it runs
# as root with both binaries built and gocryptfs installed, and turns the kernel's FUSE
# over io_uring on (the fuse module's enable_uring).
# Sets NANOFS_BIN and FLOOR_BIN where unset
# (~/.cache/nanofs-target/release/{nanofs,examples/fuse_floor}).
T=${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}/release
NANOFS_BIN=${NANOFS_BIN:-$T/nanofs} FLOOR_BIN=${FLOOR_BIN:-$T/examples/fuse_floor}
[[ $EUID -eq 0 ]] || { echo "run as root (FUSE mounts, drop_caches)" >&2; exit 1; }
for b in "$NANOFS_BIN" "$FLOOR_BIN"; do
  [[ -x $b ]] || { echo "$b missing: cargo build --release --bin nanofs --example fuse_floor" >&2; exit 1; }
done
command -v gocryptfs >/dev/null || { echo "needs gocryptfs" >&2; exit 1; }
echo Y > /sys/module/fuse/parameters/enable_uring
