//! nanofs: a FUSE-mounted, deduplicating, encrypted storage file system for large media.
//!
//! Layers, from the bottom: `chunk` (content-defined chunking, chunk ids), `crypto`
//! (sealing, key derivation, key wrapping), `store` (RocksDB, bytes only), `volume` (the
//! engine API), `gallery` (shared galleries, beside the engine through its hook) and
//! `media`, then the front-ends `fs` (FUSE), `control` (the daemon's socket), `http` (the
//! sidecar) and `client` (push and pull over HTTP), and `cli`, which wires them together.
//! docs/design.md is the map.

pub mod adapt;
pub mod buffers;
pub mod chunk;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod crypto;
pub mod fs;
pub mod gallery;
pub mod http;
pub mod ids;
pub mod live;
pub mod media;
pub mod metrics;
pub mod store;
pub mod stream;
pub mod threads;
pub mod utc;
pub mod volume;

pub use ids::{ChunkId, Ino};
pub use volume::{Stats, Volume};
