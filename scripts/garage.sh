#!/usr/bin/env bash
# Garage (https://garagehq.deuxfleurs.fr), the S3-compatible distributed object store the
# object-store tests run on: built from crates.io once into ~/.cache/garage-VERSION and
# reused (about 8 minutes on 2 cores). `scripts/garage.sh path` prints the binary, building
# it when missing.
set -euo pipefail
VERSION=2.5.0
root=${GARAGE_ROOT:-$HOME/.cache/garage-$VERSION}
bin=$root/bin/garage
if [ ! -x "$bin" ]; then
    echo "building Garage $VERSION into $root (once)" >&2
    cargo install garage --version "$VERSION" --locked --root "$root" --no-default-features \
        --features bundled-libs,lmdb --target-dir "$HOME/.cache/garage-build/target" >&2
    rm -rf "$HOME/.cache/garage-build"
fi
case "${1:-path}" in
path) echo "$bin" ;;
*) exec "$bin" "$@" ;;
esac
