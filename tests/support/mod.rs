//! Helpers shared by both test binaries (`tests/it` and `tests/engine`, each includes this
//! file with `#[path]`): reproducible data and volumes opened on the engine API in a
//! temporary directory, with no mount and no daemon.

#![allow(dead_code)]

use nanofs::volume::{Credential, OpenOptions, Volume};
use std::path::Path;

/// The passphrase of the volumes made here (the KDF runs with test-only parameters).
pub const ENGINE_PASSPHRASE: &[u8] = b"pw";

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, reproducible.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes made of 64 KiB blocks that repeat across seeds, so that writes with
/// different seeds share chunks.
pub fn repeating_blocks(len: u32, seed: u8) -> Vec<u8> {
    (0..len as usize).map(|i| ((i / 65536) as u8 % 3).wrapping_mul(seed).wrapping_add((i % 251) as u8)).collect()
}

/// `nanofs.toml` with small chunks (16/64/256 KiB), so that files of a few hundred KiB
/// have several.
pub const SMALL_CHUNKS_TOML: &str =
    "[media.deduplication]\nmin_chunk_size_kb = 16\navg_chunk_size_kb = 64\nmax_chunk_size_kb = 256\n";

/// A new volume in `dir` whose `nanofs.toml` is `toml` (empty: the defaults), opened on
/// the engine API.
pub fn engine_volume(dir: &Path, toml: &str) -> Volume {
    Volume::init(dir, ENGINE_PASSPHRASE, nanofs::crypto::kdf::Argon2Params::TEST_ONLY).unwrap();
    if !toml.is_empty() {
        std::fs::write(dir.join("nanofs.toml"), toml).unwrap();
    }
    open_engine_volume(dir)
}

/// A new volume in `dir` with `SMALL_CHUNKS_TOML`, opened on the engine API: for property
/// tests.
pub fn small_chunk_engine_volume(dir: &Path) -> Volume {
    engine_volume(dir, SMALL_CHUNKS_TOML)
}

/// Opens a volume that `engine_volume` made (after it was closed and dropped).
pub fn open_engine_volume(dir: &Path) -> Volume {
    let keys = Volume::unlock(dir, &Credential::Passphrase(ENGINE_PASSPHRASE.to_vec().into())).unwrap();
    Volume::open(dir, keys, &OpenOptions::default()).unwrap()
}

/// The pieces of a pseudo-random file of `len` bytes: 4 MiB each (the last shorter), so
/// that large files are written and compared in bounded memory. The same `seed` and `len`
/// give the same bytes in both binaries.
pub fn random_file_parts(seed: u64, len: usize) -> impl Iterator<Item = Vec<u8>> {
    const PART: usize = 4 << 20;
    (0..len.div_ceil(PART)).map(move |part| random_bytes(seed ^ ((part as u64) << 32), (len - part * PART).min(PART)))
}
