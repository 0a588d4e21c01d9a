//! Cryptography: AEAD sealing, passphrase KDF, the key hierarchy and key wrapping.
//!
//! Everything secret lives in zeroizing types. `aead` seals chunk and metadata records,
//! `keys` derives the per-purpose subkeys from the data key, `kdf` turns a passphrase into
//! a wrapping key (Argon2id), `wrap` seals the data key into a header key slot.
//! docs/crypto.md describes the hierarchy and the threat model.

pub mod aead;
pub mod device;
pub mod hybrid;
pub mod kdf;
pub mod keys;
pub mod stream;
pub mod wrap;

/// Why a cryptographic operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Authentication failed: wrong key, or the bytes were changed.
    #[error("authentication failed (wrong key or tampered data)")]
    Auth,
    /// The sealed bytes are too short or have an unknown version.
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    /// The key derivation function rejected its parameters.
    #[error("key derivation failed: {0}")]
    Kdf(String),
}
