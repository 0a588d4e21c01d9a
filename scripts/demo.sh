#!/usr/bin/env bash
# Builds nanofs, installs it (nanofs and mount.nanofs under /usr/local), creates a demo
# volume and mounts it. Volume: $NANOFS_DEMO (default ~/nanofs-demo/volume), mounted at
# ~/nanofs-demo/mnt. The passphrase comes from $NANOFS_PASSPHRASE or a prompt. With
# NANOFS_DEMO_SERVE=127.0.0.1:8080 the mount also serves the HTTP sidecar and web UI there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}"
source scripts/rocksdb.sh
cargo build --release --locked --workspace
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd install -m 755 "$CARGO_TARGET_DIR/release/nanofs" /usr/local/bin/nanofs
$sudo_cmd install -m 755 "$CARGO_TARGET_DIR/release/mount-nanofs" /usr/local/sbin/mount.nanofs
base="${NANOFS_DEMO:-$HOME/nanofs-demo}"
volume="$base/volume"
mnt="$base/mnt"
mkdir -p "$mnt"
[ -e "$volume/nanofs.header" ] || nanofs init "$volume"
if ! mountpoint -q "$mnt"; then
  nanofs mount "$volume" "$mnt" ${NANOFS_DEMO_SERVE:+--serve "$NANOFS_DEMO_SERVE"}
fi
echo
echo "Mounted $volume at $mnt. Try:"
echo "  cp -r /usr/share/doc $mnt/ && nanofs stats $volume"
echo "  nanofs umount $mnt"
echo "Share a folder as a gallery (mount with NANOFS_DEMO_SERVE=127.0.0.1:8080 for the web UI):"
echo "  nanofs user add $volume alice && mkdir $mnt/photos"
echo "  nanofs gallery create $volume /photos --owner alice   # then open http://127.0.0.1:8080/"
