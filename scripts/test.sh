#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests (real FUSE mounts).
# Needs root for FUSE mounts and the tests that change users; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One persistent target directory outside the checkout keeps RocksDB's C++ build incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}"
# Build every binary first: the integration tests drive nanofs and the mount helper.
cargo build --release --workspace --locked
cargo test --release --workspace --locked "$@"
