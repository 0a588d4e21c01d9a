//! Integration tests: one binary (one link of RocksDB), real FUSE mounts, real tools.
//! They need root (mounts, other users) and /dev/fuse.

mod common;

mod browser;
mod cli;
mod contents;
mod corrupt;
mod crash;
mod dedup;
mod enospc;
mod faults;
mod fingerprints;
mod format_compat;
pub mod galleries;
mod gallery_damage;
mod gallery_log;
pub mod http;
mod keys;
mod layering;
mod posix;
mod powercut;
mod ranges;
mod reclaim;
mod refcounts;
mod snapshots;
mod tls;
mod tools;
mod transfer;
