//! The volume header `nanofs.header`: format version, volume id and key slots.
//!
//! A JSON file beside the database, so that unlocking needs no database and a foreign
//! directory is recognised before anything is opened. Written atomically (temporary file,
//! fsync, rename, fsync of the directory). A MAC under a key derived from the data key
//! covers the whole header, so a changed slot list or parameter is noticed after unlock.

use super::error::{Error, Result};
use crate::crypto::kdf::Argon2Params;
use crate::crypto::keys::{keyed_hash, random_bytes, DataKey, Purpose};
use crate::crypto::wrap::PassphraseWrap;
use crate::ids::{hex, unhex};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// File name of the header inside the volume directory.
pub const HEADER_FILE: &str = "nanofs.header";
const MAGIC: &str = "nanofs-volume";
/// Header layout version this build reads and writes.
pub const HEADER_VERSION: u32 = 1;

/// The parsed header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always `nanofs-volume`.
    pub magic: String,
    /// Layout version of this header.
    pub version: u32,
    /// Random id of the volume, hex.
    pub volume_id: String,
    /// Unix seconds of creation.
    pub created: u64,
    /// Key slots; the data key is wrapped once per slot.
    pub slots: Vec<Slot>,
    /// Keyed BLAKE2b-256 (header-MAC subkey) of the header with this field empty, hex.
    pub mac: String,
}

/// One wrapped copy of the data key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Slot {
    /// Data key wrapped under Argon2id(passphrase).
    Passphrase {
        /// Slot number, unique within the header.
        id: u32,
        /// Argon2id cost.
        argon2: Argon2Params,
        /// Salt, hex.
        salt: String,
        /// `nonce | sealed key | tag`, hex.
        wrapped_key: String,
    },
}

impl Header {
    /// A header for a new volume with one passphrase slot; returns it with the new data key.
    pub fn create(passphrase: &[u8], params: Argon2Params) -> Result<(Self, DataKey)> {
        let mut id = [0u8; 16];
        random_bytes(&mut id);
        let key = DataKey::generate();
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut header = Header {
            magic: MAGIC.into(),
            version: HEADER_VERSION,
            volume_id: hex(&id),
            created,
            slots: vec![],
            mac: String::new(),
        };
        let wrap = PassphraseWrap::wrap(&key, passphrase, params, &header.slot_context(0))
            .map_err(|e| Error::NotAVolume(e.to_string()))?;
        header.slots.push(Slot::Passphrase {
            id: 0,
            argon2: wrap.params,
            salt: hex(&wrap.salt),
            wrapped_key: hex(&wrap.sealed_key),
        });
        header.mac = header.compute_mac(&key);
        Ok((header, key))
    }

    /// Reads and parses the header of the volume in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(HEADER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAVolume(if dir.exists() {
                    format!("{} is not a nanofs volume (no {HEADER_FILE})", dir.display())
                } else {
                    format!("volume {} does not exist", dir.display())
                }))
            }
            Err(e) => return Err(e.into()),
        };
        let header: Header = serde_json::from_str(&text)
            .map_err(|e| Error::NotAVolume(format!("{}: unreadable header: {e}", path.display())))?;
        if header.magic != MAGIC {
            return Err(Error::NotAVolume(format!("{} is not a nanofs volume header", path.display())));
        }
        if header.version > HEADER_VERSION {
            return Err(Error::NotAVolume(format!(
                "{} has header version {}; this nanofs reads up to {HEADER_VERSION}",
                path.display(),
                header.version
            )));
        }
        Ok(header)
    }

    /// Writes the header atomically into `dir`.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{HEADER_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self).expect("header serialises").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(HEADER_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Unwraps the data key with a passphrase and verifies the header MAC.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<DataKey> {
        for slot in &self.slots {
            let Slot::Passphrase { id, argon2, salt, wrapped_key } = slot;
            let (Some(salt), Some(sealed_key)) = (unhex(salt), unhex(wrapped_key)) else { continue };
            let Ok(salt) = <[u8; 16]>::try_from(salt) else { continue };
            let wrap = PassphraseWrap { params: *argon2, salt, sealed_key };
            if let Ok(key) = wrap.unwrap(passphrase, &self.slot_context(*id)) {
                if self.compute_mac(&key) != self.mac {
                    return Err(Error::NotAVolume("the volume header was modified (MAC mismatch)".into()));
                }
                return Ok(key);
            }
        }
        Err(Error::WrongPassphrase)
    }

    /// Associated data of slot `id`: binds the slot to this volume.
    fn slot_context(&self, id: u32) -> Vec<u8> {
        format!("nanofs/v1/slot/{}/{id}", self.volume_id).into_bytes()
    }

    fn compute_mac(&self, key: &DataKey) -> String {
        let mut unsigned = self.clone();
        unsigned.mac = String::new();
        let bytes = serde_json::to_vec(&unsigned).expect("header serialises");
        hex(keyed_hash(key.derive(Purpose::HeaderMac).as_ref(), &bytes).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_with_right_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let (h, key) = Header::create(b"pw", Argon2Params::TEST_ONLY).unwrap();
        h.store(dir.path()).unwrap();
        let loaded = Header::load(dir.path()).unwrap();
        assert_eq!(loaded, h);
        assert_eq!(loaded.unlock(b"pw").unwrap().expose(), key.expose());
        assert!(matches!(loaded.unlock(b"pW"), Err(Error::WrongPassphrase)));
    }

    #[test]
    fn tampered_header_is_refused() {
        let (mut h, _) = Header::create(b"pw", Argon2Params::TEST_ONLY).unwrap();
        h.created += 1;
        assert!(matches!(h.unlock(b"pw"), Err(Error::NotAVolume(m)) if m.contains("modified")));
    }

    #[test]
    fn foreign_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Header::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a nanofs volume"), "{err}");
        std::fs::write(dir.path().join(HEADER_FILE), "{}").unwrap();
        assert!(Header::load(dir.path()).unwrap_err().to_string().contains("unreadable header"));
    }
}
