//! The key hierarchy: one random data key per volume, subkeys derived per purpose.
//!
//! Subkey = keyed BLAKE2b-256(key = data key, message = purpose label). Separate subkeys
//! keep the purposes independent: knowing how names hash says nothing about chunk ids.

use super::aead::SealKey;
use chacha20poly1305::aead::{rand_core::RngCore, OsRng};
use zeroize::Zeroizing;

/// The volume's 256-bit data key; every other key derives from it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// Wraps existing key bytes (from an unwrapped key slot).
    #[must_use]
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// The raw key, for wrapping into a key slot.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The subkey for one purpose.
    #[must_use]
    pub fn derive(&self, purpose: Purpose) -> Zeroizing<[u8; 32]> {
        keyed_hash(self.0.as_ref(), purpose.label().as_bytes())
    }

    /// All subkeys the engine needs, ready to use.
    #[must_use]
    pub fn subkeys(&self) -> Subkeys {
        Subkeys {
            chunk_id: *self.derive(Purpose::ChunkId),
            chunk_seal: SealKey::new(&self.derive(Purpose::ChunkSeal)),
            meta_seal: SealKey::new(&self.derive(Purpose::MetaSeal)),
            name_hash: self.derive(Purpose::NameHash),
        }
    }
}

/// What a subkey is for. The labels are part of the on-disk format.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// Keys the chunk id hash.
    ChunkId,
    /// Seals chunk bodies.
    ChunkSeal,
    /// Seals metadata records (inodes, names, symlinks, xattrs).
    MetaSeal,
    /// Keys the hash under which directory entries and xattrs are looked up.
    NameHash,
    /// Authenticates the volume header.
    HeaderMac,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::ChunkId => "nanofs/v1/chunk-id",
            Purpose::ChunkSeal => "nanofs/v1/chunk-seal",
            Purpose::MetaSeal => "nanofs/v1/meta-seal",
            Purpose::NameHash => "nanofs/v1/name-hash",
            Purpose::HeaderMac => "nanofs/v1/header-mac",
        }
    }
}

/// The engine's working keys.
#[derive(Clone)]
pub struct Subkeys {
    /// Key of the chunk id hash (see `chunk::ChunkHasher`).
    pub chunk_id: [u8; 32],
    /// Seals chunk bodies.
    pub chunk_seal: SealKey,
    /// Seals metadata records.
    pub meta_seal: SealKey,
    /// Keys `name_hash`.
    pub name_hash: Zeroizing<[u8; 32]>,
}

impl Drop for Subkeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.chunk_id);
    }
}

impl Subkeys {
    /// 128-bit keyed hash of a name, the lookup key of directory entries and xattrs.
    #[must_use]
    pub fn name_hash(&self, name: &[u8]) -> [u8; 16] {
        let full = keyed_hash(self.name_hash.as_ref(), name);
        full[..16].try_into().expect("16 of 32 bytes")
    }
}

/// Keyed BLAKE2b-256 (RFC 7693), `key` at most 64 bytes.
#[must_use]
pub fn keyed_hash(key: &[u8], message: &[u8]) -> Zeroizing<[u8; 32]> {
    let hash = blake2b_simd::Params::new().hash_length(32).key(key).hash(message);
    Zeroizing::new(hash.as_bytes().try_into().expect("32-byte hash"))
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    OsRng.fill_bytes(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_differ_per_purpose_and_key() {
        let k = DataKey::from_bytes(Zeroizing::new([9; 32]));
        let labels = [Purpose::ChunkId, Purpose::ChunkSeal, Purpose::MetaSeal, Purpose::NameHash, Purpose::HeaderMac];
        let derived: std::collections::HashSet<[u8; 32]> = labels.iter().map(|p| *k.derive(*p)).collect();
        assert_eq!(derived.len(), labels.len());
        let other = DataKey::from_bytes(Zeroizing::new([8; 32]));
        assert_ne!(*k.derive(Purpose::ChunkId), *other.derive(Purpose::ChunkId));
    }
}
