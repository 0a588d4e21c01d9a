//! The volume header `nanofs.header`: format version, volume id and key slots.
//!
//! A JSON file beside the database, so that unlocking needs no database and a foreign
//! directory is recognised before anything is opened. Written atomically (temporary file,
//! fsync, rename, fsync of the directory). A MAC under a key derived from the data key
//! covers the whole header, so a changed slot list or parameter is noticed after unlock.

use super::error::{Error, Result};
use crate::crypto::hybrid::{Identity, Recipient, RecipientWrap};
use crate::crypto::kdf::Argon2Params;
use crate::crypto::keys::{keyed_hash, random_bytes, DataKey, Keyring, Purpose};
use crate::crypto::wrap::PassphraseWrap;
use crate::ids::{hex, unhex};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// File name of the header inside the volume directory.
pub const HEADER_FILE: &str = "nanofs.header";
const LOCK_FILE: &str = "nanofs.header.lock";
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
    /// Current key epoch: new chunks are sealed under its key, which the slots wrap.
    #[serde(default)]
    pub epoch: u32,
    /// The root key and older epoch keys sealed under the current key, hex (absent in
    /// epoch 0, where the root key is the epoch key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<String>,
    /// Key slots; the current key is wrapped once per slot.
    pub slots: Vec<Slot>,
    /// Keyed BLAKE2b-256 (header-MAC subkey of the current key) of the header with this
    /// field empty, hex.
    pub mac: String,
}

/// One wrapped copy of the current key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Slot {
    /// Wrapped under Argon2id(passphrase).
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
    /// Wrapped to an X-Wing (ML-KEM-768 + X25519) recipient.
    Recipient {
        /// Slot number, unique within the header.
        id: u32,
        /// The recipient (public key), kept so that rotation can wrap the new key to it.
        recipient: String,
        /// X-Wing ciphertext, hex.
        ciphertext: String,
        /// `nonce | sealed key | tag`, hex.
        wrapped_key: String,
    },
}

impl Slot {
    /// The slot number.
    #[must_use]
    pub fn id(&self) -> u32 {
        match self {
            Slot::Passphrase { id, .. } | Slot::Recipient { id, .. } => *id,
        }
    }
}

/// What unlocks a volume: a passphrase or an X-Wing identity.
pub enum Credential {
    /// A passphrase (opens passphrase slots).
    Passphrase(Zeroizing<Vec<u8>>),
    /// A private identity (opens the slot of its recipient).
    Identity(Box<Identity>),
}

impl Credential {
    /// An identity credential from the text of an identity file.
    pub fn identity_from_text(text: &str) -> Result<Self> {
        Identity::parse(text)
            .map(|i| Credential::Identity(Box::new(i)))
            .map_err(|e| Error::NotAVolume(format!("identity: {e}")))
    }

    /// The text of an identity file for an identity credential (to send to the daemon).
    #[must_use]
    pub fn identity_text(&self) -> Option<Zeroizing<String>> {
        match self {
            Credential::Passphrase(_) => None,
            Credential::Identity(i) => Some(i.to_file_text()),
        }
    }
}

/// A slot as `key list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot number.
    pub id: u32,
    /// `passphrase` or `recipient`.
    pub kind: String,
    /// Argon2id cost, or the recipient's fingerprint.
    pub detail: String,
}

impl Header {
    /// A header for a new volume with one passphrase slot; returns it with the new keys.
    pub fn create(passphrase: &[u8], params: Argon2Params) -> Result<(Self, Keyring)> {
        let mut id = [0u8; 16];
        random_bytes(&mut id);
        let keyring = Keyring::generate();
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut header = Header {
            magic: MAGIC.into(),
            version: HEADER_VERSION,
            volume_id: hex(&id),
            created,
            epoch: 0,
            keyring: None,
            slots: vec![],
            mac: String::new(),
        };
        header.add_passphrase_slot(&keyring, passphrase, params)?;
        Ok((header, keyring))
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
        // The new header is whole on disk; until the rename the old one is in force.
        super::faults::crash_point("header-tmp-written");
        std::fs::rename(&tmp, dir.join(HEADER_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Loads the header of `dir`, lets `change` edit it, and stores it, all under an
    /// exclusive lock so that two commands never lose each other's slots.
    pub fn modify<T>(dir: &Path, change: impl FnOnce(&mut Header) -> Result<T>) -> Result<T> {
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::Io(std::io::Error::from(e)))?;
        let mut header = Self::load(dir)?;
        let out = change(&mut header)?;
        header.store(dir)?;
        Ok(out)
    }

    /// Unwraps the keys with `cred`, verifies the header MAC; returns them with the number
    /// of the slot that opened.
    pub fn unlock(&self, cred: &Credential) -> Result<(Keyring, u32)> {
        for slot in &self.slots {
            let context = self.slot_context(slot.id());
            let key = match (slot, cred) {
                (Slot::Passphrase { argon2, salt, wrapped_key, .. }, Credential::Passphrase(pass)) => {
                    let (Some(salt), Some(sealed_key)) = (unhex(salt), unhex(wrapped_key)) else { continue };
                    let Ok(salt) = <[u8; 16]>::try_from(salt) else { continue };
                    PassphraseWrap { params: *argon2, salt, sealed_key }.unwrap(pass, &context).ok()
                }
                (Slot::Recipient { recipient, ciphertext, wrapped_key, .. }, Credential::Identity(identity)) => {
                    if Recipient::parse(recipient).ok().as_ref() != Some(&identity.recipient()) {
                        continue;
                    }
                    let (Some(ciphertext), Some(sealed_key)) = (unhex(ciphertext), unhex(wrapped_key)) else {
                        continue;
                    };
                    RecipientWrap { ciphertext, sealed_key }.unwrap(identity, &context).ok()
                }
                _ => None,
            };
            if let Some(key) = key {
                if self.compute_mac(&key) != self.mac {
                    return Err(Error::NotAVolume("the volume header was modified (MAC mismatch)".into()));
                }
                let sealed = match &self.keyring {
                    Some(h) => Some(unhex(h).ok_or_else(|| Error::NotAVolume("the keyring is not hex".into()))?),
                    None => None,
                };
                let keyring = Keyring::open(self.epoch, key, sealed.as_deref(), &self.keyring_context())
                    .map_err(|e| Error::NotAVolume(format!("the keyring does not open: {e}")))?;
                return Ok((keyring, slot.id()));
            }
        }
        Err(match cred {
            Credential::Passphrase(_) => Error::WrongPassphrase,
            Credential::Identity(_) => Error::WrongIdentity,
        })
    }

    /// Slots as `key list` shows them.
    #[must_use]
    pub fn slot_infos(&self) -> Vec<SlotInfo> {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Passphrase { id, argon2, .. } => SlotInfo {
                    id: *id,
                    kind: "passphrase".into(),
                    detail: format!("argon2id m={}KiB t={} p={}", argon2.m_kib, argon2.t, argon2.p),
                },
                Slot::Recipient { id, recipient, .. } => SlotInfo {
                    id: *id,
                    kind: "recipient".into(),
                    detail: Recipient::parse(recipient)
                        .map_or_else(|_| "unreadable recipient".into(), |r| r.fingerprint()),
                },
            })
            .collect()
    }

    /// Adds a passphrase slot wrapping the current key; returns its number.
    pub fn add_passphrase_slot(&mut self, keys: &Keyring, passphrase: &[u8], params: Argon2Params) -> Result<u32> {
        let id = self.next_slot_id();
        let wrap = PassphraseWrap::wrap(keys.current_key(), passphrase, params, &self.slot_context(id))
            .map_err(|e| Error::NotAVolume(e.to_string()))?;
        self.slots.push(Slot::Passphrase {
            id,
            argon2: wrap.params,
            salt: hex(&wrap.salt),
            wrapped_key: hex(&wrap.sealed_key),
        });
        self.seal(keys);
        Ok(id)
    }

    /// Adds a slot for `recipient`; returns its number. A recipient already present is refused.
    pub fn add_recipient_slot(&mut self, keys: &Keyring, recipient: &Recipient) -> Result<u32> {
        let encoded = recipient.to_string_encoded();
        if self.slots.iter().any(|s| matches!(s, Slot::Recipient { recipient: r, .. } if *r == encoded)) {
            return Err(Error::Exists);
        }
        let id = self.next_slot_id();
        let wrap = RecipientWrap::wrap(keys.current_key(), recipient, &self.slot_context(id))
            .map_err(|e| Error::NotAVolume(e.to_string()))?;
        self.slots.push(Slot::Recipient {
            id,
            recipient: encoded,
            ciphertext: hex(&wrap.ciphertext),
            wrapped_key: hex(&wrap.sealed_key),
        });
        self.seal(keys);
        Ok(id)
    }

    /// Removes slot `id`; removing the last slot is refused (the volume would be lost).
    pub fn remove_slot(&mut self, keys: &Keyring, id: u32) -> Result<()> {
        let before = self.slots.len();
        if !self.slots.iter().any(|s| s.id() == id) {
            return Err(Error::NotFound);
        }
        if before == 1 {
            return Err(Error::LastSlot);
        }
        self.slots.retain(|s| s.id() != id);
        self.seal(keys);
        Ok(())
    }

    /// Starts a new key epoch: a fresh key, wrapped again for every recipient slot and for
    /// the passphrase slot `cred` opened (`kept_slot`). Other passphrase slots cannot be
    /// re-wrapped without their passphrases and are removed; their numbers are returned.
    pub fn rotate(&mut self, keys: &mut Keyring, cred: &Credential, kept_slot: u32) -> Result<Vec<u32>> {
        keys.rotate();
        self.epoch = keys.current_epoch();
        let old = std::mem::take(&mut self.slots);
        let mut dropped = Vec::new();
        for slot in old {
            match (&slot, cred) {
                (Slot::Passphrase { id, argon2, .. }, Credential::Passphrase(pass)) if *id == kept_slot => {
                    let wrap = PassphraseWrap::wrap(keys.current_key(), pass, *argon2, &self.slot_context(*id))
                        .map_err(|e| Error::NotAVolume(e.to_string()))?;
                    self.slots.push(Slot::Passphrase {
                        id: *id,
                        argon2: wrap.params,
                        salt: hex(&wrap.salt),
                        wrapped_key: hex(&wrap.sealed_key),
                    });
                }
                (Slot::Passphrase { id, .. }, _) => dropped.push(*id),
                (Slot::Recipient { id, recipient, .. }, _) => {
                    let r = Recipient::parse(recipient).map_err(|e| Error::NotAVolume(format!("slot {id}: {e}")))?;
                    let wrap = RecipientWrap::wrap(keys.current_key(), &r, &self.slot_context(*id))
                        .map_err(|e| Error::NotAVolume(e.to_string()))?;
                    self.slots.push(Slot::Recipient {
                        id: *id,
                        recipient: recipient.clone(),
                        ciphertext: hex(&wrap.ciphertext),
                        wrapped_key: hex(&wrap.sealed_key),
                    });
                }
            }
        }
        self.seal(keys);
        Ok(dropped)
    }

    /// Re-seals the keyring and recomputes the MAC after a change of slots or keys.
    pub fn seal(&mut self, keys: &Keyring) {
        self.epoch = keys.current_epoch();
        self.keyring = keys.seal(&self.keyring_context()).map(|s| hex(&s));
        self.mac = self.compute_mac(keys.current_key());
    }

    fn next_slot_id(&self) -> u32 {
        self.slots.iter().map(|s| s.id() + 1).max().unwrap_or(0)
    }

    /// Associated data of slot `id`: binds the slot to this volume and key epoch.
    fn slot_context(&self, id: u32) -> Vec<u8> {
        if self.epoch == 0 {
            format!("nanofs/v1/slot/{}/{id}", self.volume_id).into_bytes()
        } else {
            format!("nanofs/v1/slot/{}/{id}/epoch/{}", self.volume_id, self.epoch).into_bytes()
        }
    }

    fn keyring_context(&self) -> Vec<u8> {
        format!("nanofs/v1/keyring/{}/{}", self.volume_id, self.epoch).into_bytes()
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

    fn pass(p: &str) -> Credential {
        Credential::Passphrase(Zeroizing::new(p.as_bytes().to_vec()))
    }

    #[test]
    fn unlock_with_right_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let (h, keys) = Header::create(b"pw", Argon2Params::TEST_ONLY).unwrap();
        h.store(dir.path()).unwrap();
        let loaded = Header::load(dir.path()).unwrap();
        assert_eq!(loaded, h);
        let (got, slot) = loaded.unlock(&pass("pw")).unwrap();
        assert_eq!((got.current_key().expose(), slot), (keys.current_key().expose(), 0));
        assert!(matches!(loaded.unlock(&pass("pW")), Err(Error::WrongPassphrase)));
    }

    #[test]
    fn tampered_header_is_refused() {
        let (mut h, _) = Header::create(b"pw", Argon2Params::TEST_ONLY).unwrap();
        h.created += 1;
        assert!(matches!(h.unlock(&pass("pw")), Err(Error::NotAVolume(m)) if m.contains("modified")));
    }

    #[test]
    fn each_slot_kind_unlocks_and_a_removed_slot_does_not() {
        let (mut h, keys) = Header::create(b"first", Argon2Params::TEST_ONLY).unwrap();
        let alice = Identity::generate();
        let a = h.add_recipient_slot(&keys, &alice.recipient()).unwrap();
        let p = h.add_passphrase_slot(&keys, b"second", Argon2Params::TEST_ONLY).unwrap();
        assert!(matches!(h.add_recipient_slot(&keys, &alice.recipient()), Err(Error::Exists)));
        let root = *keys.root().expose();
        for (cred, slot) in [(Credential::Identity(Box::new(alice)), a), (pass("second"), p), (pass("first"), 0)] {
            let (k, s) = h.unlock(&cred).unwrap();
            assert_eq!((*k.root().expose(), s), (root, slot));
        }
        assert!(matches!(h.unlock(&Credential::Identity(Box::new(Identity::generate()))), Err(Error::WrongIdentity)));
        h.remove_slot(&keys, p).unwrap();
        assert!(matches!(h.unlock(&pass("second")), Err(Error::WrongPassphrase)));
        h.remove_slot(&keys, a).unwrap();
        assert!(matches!(h.remove_slot(&keys, 0), Err(Error::LastSlot)));
        assert!(h.unlock(&pass("first")).is_ok());
    }

    #[test]
    fn rotation_keeps_the_root_and_locks_out_old_header_copies() {
        let (mut h, mut keys) = Header::create(b"pw", Argon2Params::TEST_ONLY).unwrap();
        let bob = Identity::generate();
        h.add_recipient_slot(&keys, &bob.recipient()).unwrap();
        h.add_passphrase_slot(&keys, b"other", Argon2Params::TEST_ONLY).unwrap();
        let old_copy = h.clone();
        let dropped = h.rotate(&mut keys, &pass("pw"), 0).unwrap();
        assert_eq!(dropped, vec![2], "the passphrase that was not given cannot be re-wrapped");
        assert_eq!((h.epoch, keys.epochs()), (1, vec![0, 1]));
        let (k, _) = h.unlock(&Credential::Identity(Box::new(bob))).unwrap();
        assert_eq!((k.root().expose(), k.current_epoch()), (keys.root().expose(), 1));
        let (k, _) = h.unlock(&pass("pw")).unwrap();
        assert_eq!(k.current_key().expose(), keys.current_key().expose());
        // The old header copy still opens, but only to the old epoch's key.
        let (old, _) = old_copy.unlock(&pass("other")).unwrap();
        assert_ne!(old.current_key().expose(), keys.current_key().expose());
        assert!(matches!(h.unlock(&pass("other")), Err(Error::WrongPassphrase)));
    }

    /// A header written by an earlier build (Argon2id at test cost, passphrase "pw", one
    /// rotation, so it has a keyring): the JSON layout, the slot and keyring contexts, the
    /// key wrapping and the MAC all stay readable, and yield the same keys.
    #[test]
    fn a_header_of_version_1_unlocks() {
        let h: Header = serde_json::from_str(GOLDEN_HEADER).unwrap();
        let (keys, slot) = h.unlock(&pass("pw")).unwrap();
        assert_eq!((slot, keys.current_epoch(), keys.epochs()), (0, 1, vec![0, 1]));
        assert_eq!(hex(keys.root().expose()), GOLDEN_ROOT);
        assert_eq!(hex(keys.current_key().expose()), GOLDEN_EPOCH_1);
        assert!(matches!(h.unlock(&pass("pW")), Err(Error::WrongPassphrase)));
    }
    const GOLDEN_HEADER: &str = r#"{"magic":"nanofs-volume","version":1,"volume_id":"10f62cb49fca2a045d20128768a3066d","created":1796464026,"epoch":1,"keyring":"c0fe24c0ba4188fa9df7727edbdeaa7b1fb68ee2114e48787f585a0e9a79f5653dd09f5cbf948fa90b7086ba330d4e19f14ae7961654bf275e53d1b91a8d850395bd919c92051896ce143e96fc459d58814fa7b886cc7cfedbe882d74451c30342afce57f845236dd1887fad6b69a0f2","slots":[{"kind":"passphrase","id":0,"argon2":{"m_kib":256,"t":1,"p":1},"salt":"38e0cd150b3eb1e735ed673711109dcd","wrapped_key":"75ff5045bd1c73b0814f8ac5b3acc58b3a615cd82b88b4fde3fee4bc74a56b3fd8404a3c37665219b4de102f939f8e4ddab4859d2cf1c4a006cf4fb6f52ab411fa6e5d793d60c8fd"}],"mac":"1151e3082a74cf2fd1867242759792e91d49912b299862a9a14070b04ca72392"}"#;
    const GOLDEN_ROOT: &str = "45ac0f1f76e43ae2bc338acaa58d1e6418f60f8ab6ccc00867ab851431b0656e";
    const GOLDEN_EPOCH_1: &str = "b0ddda2bc66a38c6515969db6a6980e907af01d1d7fa6f6e3f1debd8bc67b222";

    #[test]
    fn foreign_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Header::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a nanofs volume"), "{err}");
        std::fs::write(dir.path().join(HEADER_FILE), "{}").unwrap();
        assert!(Header::load(dir.path()).unwrap_err().to_string().contains("unreadable header"));
    }
}
