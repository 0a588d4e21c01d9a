# Sourced by the build and test scripts: RocksDB's C++ takes about 9 minutes to compile on
# two cores, and every cargo profile (clippy's check, release, checked) would compile it
# again. It is compiled once per librocksdb-sys version into $HOME/.cache/nanofs-rocksdb and
# linked statically from there by every build (librocksdb-sys: ROCKSDB_LIB_DIR, ROCKSDB_STATIC).
# Needs: cd to the checkout first.
rocksdb_version=$(grep -A1 '^name = "librocksdb-sys"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
rocksdb_cache="$HOME/.cache/nanofs-rocksdb/$rocksdb_version"
if [ ! -f "$rocksdb_cache/librocksdb.a" ]; then
  echo "rocksdb: compiling RocksDB $rocksdb_version once into $rocksdb_cache"
  rocksdb_build="$HOME/.cache/nanofs-rocksdb/build"
  env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$rocksdb_build" \
    cargo build --release --locked --quiet -p librocksdb-sys
  mkdir -p "$rocksdb_cache"
  cp "$(ls -t "$rocksdb_build"/release/build/librocksdb-sys-*/out/librocksdb.a | head -1)" "$rocksdb_cache/librocksdb.a.tmp"
  mv "$rocksdb_cache/librocksdb.a.tmp" "$rocksdb_cache/librocksdb.a"
  rm -rf "$rocksdb_build"
fi
export ROCKSDB_LIB_DIR="$rocksdb_cache" ROCKSDB_STATIC=1
