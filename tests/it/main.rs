//! Integration tests: one binary (one link of RocksDB), real FUSE mounts, real tools.
//! They need root (mounts, other users) and /dev/fuse.

mod common;

mod bindings;
mod browser;
mod caching;
mod cli;
mod corrupt;
mod crash;
mod dedup;
mod enospc;
mod faults;
mod fingerprints;
mod format_compat;
pub mod galleries;
pub mod http;
mod keys;
mod live;
mod live_rtmp;
mod object_store;
mod operations;
mod posix;
mod powercut;
mod privacy;
mod ranges;
mod reclaim;
mod render;
mod retention;
mod snapshots;
mod streaming;
mod tls;
mod tools;
mod transfer;
