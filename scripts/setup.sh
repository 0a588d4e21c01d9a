#!/usr/bin/env bash
# Installs the system packages nanofs needs to build, mount and test, on Debian 12.
# Idempotent: does nothing when everything is there already.
set -euo pipefail
packages=(
  clang libclang-dev pkg-config   # RocksDB's C++ build and bindgen
  fuse3                           # /dev/fuse user space: fusermount3
  rsync attr acl sqlite3 git python3 coreutils util-linux mount tar diffutils findutils  # tools the tests drive
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
