//! The key hierarchy: one random data key per volume, subkeys derived per purpose.
//!
//! Subkey = keyed BLAKE2b-256(key = data key, message = purpose label). Separate subkeys
//! keep the purposes independent: knowing how names hash says nothing about chunk ids.

use super::aead::SealKey;
use super::Error;
use chacha20poly1305::aead::{rand_core::RngCore, OsRng};
use std::collections::BTreeMap;
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
            meta_seal: SealKey::new(&self.derive(Purpose::MetaSeal)),
            name_hash: self.derive(Purpose::NameHash),
            chunker: self.derive(Purpose::ChunkerGear),
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
    /// Seals the keyring (root and older epoch keys) under the current epoch key.
    Keyring,
    /// Draws the gear table that places chunk boundaries (`chunk::Gear::keyed`).
    ChunkerGear,
    /// Seals metadata backups in an object store (`volume::meta_backup`).
    MetaBackup,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::ChunkId => "nanofs/v1/chunk-id",
            Purpose::ChunkSeal => "nanofs/v1/chunk-seal",
            Purpose::MetaSeal => "nanofs/v1/meta-seal",
            Purpose::NameHash => "nanofs/v1/name-hash",
            Purpose::HeaderMac => "nanofs/v1/header-mac",
            Purpose::Keyring => "nanofs/v1/keyring",
            Purpose::ChunkerGear => "nanofs/v1/chunker-gear",
            Purpose::MetaBackup => "nanofs/v1/meta-backup",
        }
    }
}

/// The unlocked keys of a volume.
///
/// The root key never changes: chunk ids, name hashes and metadata records derive from
/// it, so deduplication and lookups survive rotation. Chunk bodies are sealed under the key
/// of an epoch; rotation starts a new epoch with a fresh random key, which is what the key
/// slots wrap. The root and the older epoch keys travel sealed under the current one (the
/// header's keyring), so a slot opened with an old passphrase from an old copy of the header
/// yields nothing written after the rotation. In epoch 0 the root key is the epoch key.
#[derive(Clone)]
pub struct Keyring {
    root: DataKey,
    current: u32,
    epochs: BTreeMap<u32, DataKey>,
}

impl Keyring {
    /// The keys of a new volume: one random key, root and epoch 0 at once.
    #[must_use]
    pub fn generate() -> Self {
        let root = DataKey::generate();
        Self { epochs: BTreeMap::from([(0, root.clone())]), root, current: 0 }
    }

    /// The key that key slots wrap: the current epoch's.
    #[must_use]
    pub fn current_key(&self) -> &DataKey {
        &self.epochs[&self.current]
    }

    /// The current epoch.
    #[must_use]
    pub fn current_epoch(&self) -> u32 {
        self.current
    }

    /// The epochs whose keys are kept, oldest first.
    #[must_use]
    pub fn epochs(&self) -> Vec<u32> {
        self.epochs.keys().copied().collect()
    }

    /// The root key (ids, names, metadata).
    #[must_use]
    pub fn root(&self) -> &DataKey {
        &self.root
    }

    /// Chunk-sealing keys per epoch.
    #[must_use]
    pub fn chunk_seal_keys(&self) -> BTreeMap<u32, SealKey> {
        self.epochs.iter().map(|(e, k)| (*e, SealKey::new(&k.derive(Purpose::ChunkSeal)))).collect()
    }

    /// Starts a new epoch with a fresh random key; returns it.
    pub fn rotate(&mut self) -> u32 {
        self.current += 1;
        self.epochs.insert(self.current, DataKey::generate());
        self.current
    }

    /// Forgets the keys of `epochs` (no chunk uses them any more); never the current one.
    pub fn forget(&mut self, epochs: &[u32]) {
        for e in epochs {
            if *e != self.current {
                self.epochs.remove(e);
            }
        }
    }

    /// The keyring sealed under the current key (`None` in epoch 0 with nothing else to
    /// keep). Plaintext: `root 32 | count u32 | (epoch u32 | key 32)*`, older epochs only.
    #[must_use]
    pub fn seal(&self, context: &[u8]) -> Option<Vec<u8>> {
        if self.current == 0 && self.epochs.len() == 1 {
            return None;
        }
        let older: Vec<(&u32, &DataKey)> = self.epochs.iter().filter(|(e, _)| **e != self.current).collect();
        let mut plain = Zeroizing::new(Vec::with_capacity(36 + older.len() * 36));
        plain.extend_from_slice(self.root.expose());
        plain.extend_from_slice(&(older.len() as u32).to_be_bytes());
        for (e, k) in older {
            plain.extend_from_slice(&e.to_be_bytes());
            plain.extend_from_slice(k.expose());
        }
        Some(SealKey::new(&self.current_key().derive(Purpose::Keyring)).seal(context, &plain))
    }

    /// The keyring of epoch `current`, whose key a slot gave, from `seal`'s output.
    pub fn open(current: u32, key: DataKey, sealed: Option<&[u8]>, context: &[u8]) -> Result<Self, Error> {
        let Some(sealed) = sealed else {
            if current != 0 {
                return Err(Error::Malformed("keyring missing after a key rotation"));
            }
            return Ok(Self { epochs: BTreeMap::from([(0, key.clone())]), root: key, current: 0 });
        };
        let plain = Zeroizing::new(SealKey::new(&key.derive(Purpose::Keyring)).open(context, sealed)?);
        let key_at = |i: usize| -> Result<DataKey, Error> {
            let bytes: [u8; 32] =
                plain.get(i..i + 32).and_then(|b| b.try_into().ok()).ok_or(Error::Malformed("keyring"))?;
            Ok(DataKey::from_bytes(Zeroizing::new(bytes)))
        };
        let root = key_at(0)?;
        let count = plain
            .get(32..36)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
            .ok_or(Error::Malformed("keyring"))?;
        let mut epochs = BTreeMap::from([(current, key)]);
        for i in 0..count as usize {
            let at = 36 + i * 36;
            let e = plain
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                .ok_or(Error::Malformed("keyring"))?;
            epochs.insert(e, key_at(at + 4)?);
        }
        Ok(Self { root, current, epochs })
    }
}

/// The engine's working keys.
#[derive(Clone)]
pub struct Subkeys {
    /// Key of the chunk id hash (see `chunk::ChunkHasher`).
    pub chunk_id: [u8; 32],
    /// Seals metadata records.
    pub meta_seal: SealKey,
    /// Keys `name_hash`.
    pub name_hash: Zeroizing<[u8; 32]>,
    /// Draws the gear table of volumes with keyed chunk boundaries. From the root key, like
    /// the chunk-id key, so rotation and rekeying never move a boundary (which would stop
    /// new data from deduplicating against old).
    pub chunker: Zeroizing<[u8; 32]>,
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

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y)) == 0
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
        let labels = [
            Purpose::ChunkId,
            Purpose::ChunkSeal,
            Purpose::MetaSeal,
            Purpose::NameHash,
            Purpose::HeaderMac,
            Purpose::Keyring,
            Purpose::ChunkerGear,
            Purpose::MetaBackup,
        ];
        let derived: std::collections::HashSet<[u8; 32]> = labels.iter().map(|p| *k.derive(*p)).collect();
        assert_eq!(derived.len(), labels.len());
        let other = DataKey::from_bytes(Zeroizing::new([8; 32]));
        assert_ne!(*k.derive(Purpose::ChunkId), *other.derive(Purpose::ChunkId));
    }

    /// The purpose labels are part of the format: every subkey of key `[9; 32]` pinned to
    /// keyed BLAKE2b-256 of its label (computed independently, with Python's hashlib).
    #[test]
    fn subkeys_are_pinned() {
        let k = DataKey::from_bytes(Zeroizing::new([9; 32]));
        let pinned = [
            (Purpose::ChunkId, "cbd040039505b29bc6cbc438c56e3dfbb382228a5dadc498f09a40816d58c2cc"),
            (Purpose::ChunkSeal, "95c834ab991c86662c899900f92e342c333fe8ee76d667c66b7ccedb3e854eeb"),
            (Purpose::MetaSeal, "f86ec54d6ca65439d7ff8d685a1d7e532e9134c9dc2afe044fa948253ad3d523"),
            (Purpose::NameHash, "e666f22720c89f53d8aeb4f5856492a535816aa0c9138368f3238dcff3359127"),
            (Purpose::HeaderMac, "a4ad464ac2e965dca20eb1ed37d23f29bb792807f8a504619fe86ef627401bf8"),
            (Purpose::Keyring, "fa3e2a6c33bf227b3ee4d873aea2c692f615baa2ccfdf5f6035cf078470eb05f"),
            (Purpose::ChunkerGear, "9e120696aa70fb660f441f52ed3427b11b7ef14942847da45543ec88bd75b04b"),
            (Purpose::MetaBackup, "326a0665896b6daf01a2e6a3b81b892203caaac7f6bb74e2a033358d094d47e0"),
        ];
        for (purpose, hex) in pinned {
            assert_eq!(crate::ids::hex(k.derive(purpose).as_ref()), hex, "{purpose:?}");
        }
        assert_eq!(crate::ids::hex(&k.subkeys().name_hash(b"photos")), "d0205eeb44a26b9ee864d975481bc97b");
    }

    #[test]
    fn keyring_rotates_seals_and_forgets() {
        let mut ring = Keyring::generate();
        assert!(ring.seal(b"ctx").is_none(), "epoch 0 needs no sealed keyring");
        let root = *ring.root().expose();
        let first = *ring.current_key().expose();
        assert_eq!(root, first);
        assert_eq!(ring.rotate(), 1);
        assert_ne!(*ring.current_key().expose(), first);
        let sealed = ring.seal(b"ctx").unwrap();
        let key = ring.current_key().clone();
        let back = Keyring::open(1, key.clone(), Some(&sealed), b"ctx").unwrap();
        assert_eq!(back.epochs(), vec![0, 1]);
        assert_eq!(*back.root().expose(), root);
        assert!(matches!(Keyring::open(1, key.clone(), Some(&sealed), b"other"), Err(Error::Auth)));
        assert!(Keyring::open(1, key, None, b"ctx").is_err());
        // The old epoch key cannot open the new keyring.
        let old = DataKey::from_bytes(Zeroizing::new(first));
        assert!(matches!(Keyring::open(1, old, Some(&sealed), b"ctx"), Err(Error::Auth)));
        ring.forget(&[0, 1]);
        assert_eq!(ring.epochs(), vec![1]);
        // What places chunk boundaries and names chunks survives rotation and forgetting.
        let first_ring = DataKey::from_bytes(Zeroizing::new(root)).subkeys();
        assert_eq!(*ring.root().subkeys().chunker, *first_ring.chunker);
        assert_eq!(ring.root().subkeys().chunk_id, first_ring.chunk_id);
    }
}
