#!/usr/bin/env bash
# The whole test suite: formatting and lints, then unit, property and integration tests
# (tests/engine on volumes in temporary directories, tests/it on real FUSE mounts), twice:
# optimised, and with overflow checks and debug assertions.
# Needs root for FUSE mounts and the tests that change users; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One persistent target directory outside the checkout keeps builds incremental, and
# RocksDB's C++ is compiled once and kept (scripts/rocksdb.sh).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nanofs-target}"
source scripts/rocksdb.sh
# Lints first: they take seconds and fail fast.
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
# Build every binary first: the integration tests drive nanofs and the mount helper.
cargo build --release --workspace --locked
cargo test --release --workspace --locked "$@"
# Once more with overflow checks and debug assertions in our own code (profile `checked`:
# dependencies as in release, linked with the same RocksDB).
cargo build --profile checked --workspace --locked
cargo test --profile checked --workspace --locked "$@"
