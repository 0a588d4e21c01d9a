#!/usr/bin/env bash
# Installs the system packages nanofs needs to build, mount and test, on Debian 12.
# Idempotent: does nothing when everything is there already.
set -euo pipefail
packages=(
  clang libclang-dev pkg-config   # RocksDB's C++ build and bindgen
  libssl-dev                      # libcrypto, which seals chunks (src/crypto/aead.rs)
  fuse3                           # /dev/fuse user space: fusermount3
  rsync attr acl sqlite3 git python3 coreutils util-linux mount tar diffutils findutils  # tools the tests drive
  curl python3-venv               # HTTP tests: curl, and a venv for the tus client (tuspy)
  openssl                         # test certificates and the Garage cluster's secret
  ffmpeg                          # video facts and posters in galleries
  chromium                        # browser tests of the web UI (driven by playwright-core)
)
# Node.js and npm drive the browser tests; Debian's are enough where none is installed.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
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
# Python tools of the tests, from PyPI, in a venv of their own: the reference tus client.
venv="$HOME/.cache/nanofs-venv"
if ! "$venv/bin/python" -c "import tusclient" 2>/dev/null; then
  echo "setup: installing tuspy into $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "tuspy==1.1.0"
fi
# Schemathesis, from PyPI, fuzzes the HTTP API from docs/openapi.json (tests/it/operations.rs).
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "4.32.5"; then
  echo "setup: installing schemathesis into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
# mmdb-writer, from PyPI, builds the small country database of tests/it/bindings.rs.
if ! "$venv/bin/python" -c "import mmdb_writer" 2>/dev/null; then
  echo "setup: installing mmdb-writer into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "mmdb-writer==0.2.7" "netaddr==1.3.0"
fi
# playwright-core, from npm, for the browser tests (it drives Debian's Chromium; no
# browser is downloaded).
browser_tests="$(dirname "$0")/../tests/browser"
if [ ! -d "$browser_tests/node_modules/playwright-core" ]; then
  echo "setup: installing the browser test dependencies (npm ci)"
  npm ci --prefix "$browser_tests" --no-audit --no-fund --loglevel=error
fi
# Garage, the S3-compatible object store of tests/it/object_store.rs, built from crates.io
# once into ~/.cache (scripts/garage.sh; about 8 minutes on 2 cores the first time).
bash "$(dirname "$0")/garage.sh" path >/dev/null
