//! Engine tests: a volume in a temporary directory opened through `nanofs::volume::Volume`
//! (real RocksDB, real crypto), the gallery layer over it, and the HTTP router called in
//! process (`tower::ServiceExt::oneshot`, no socket). They need no root, no FUSE and no
//! network; the tests that mount, run the `nanofs` binary or drive real tools are in
//! `tests/it`.
//!
//! To confirm that nothing here needs privileges, run the binary as `nobody` with
//! `/dev/fuse` out of reach (a copy of it: the target directory may not be readable):
//!
//! ```sh
//! B=$(cargo test --release --test engine --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$/\1/p')
//! mkdir -m 1777 -p /tmp/engine-nobody && cp "$B" /tmp/engine-nobody/engine
//! unshare --mount sh -c 'mount --bind /dev/null /dev/fuse && exec setpriv --reuid=65534 \
//!     --regid=65534 --clear-groups env TMPDIR=/tmp/engine-nobody HOME=/tmp/engine-nobody \
//!     PROPTEST_DISABLE_FAILURE_PERSISTENCE=1 /tmp/engine-nobody/engine'
//! ```

#[path = "../support/mod.rs"]
mod support;

mod common;

mod contents;
mod corrupt;
mod dedup;
mod gallery_damage;
mod gallery_log;
mod http;
mod layering;
mod reclaim;
mod refcounts;
