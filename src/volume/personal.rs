//! Keys per person, for what must become unreadable when a person is erased even where it
//! cannot be rewritten: the audit trail is a hash chain, so a record naming a user keeps
//! that name (and the client address) sealed under the user's own key. Erasing the user
//! destroys the key (`nanofs user erase`), and every such field, in the volume and in any
//! copy of its database taken before, stays sealed for good while the chain still verifies
//! (crypto-shredding; docs/operations.md, "Erasing a user").
//!
//! A person is named in keys by a tag, a keyed BLAKE2b of the name, so the database files
//! show no names. A sealed field reads `sealed:<tag>:<base64 of nonce | ciphertext | tag>`,
//! bound to the tag as associated data.

use super::error::Result;
use super::Volume;
use crate::crypto::aead::SealKey;
use crate::store::{Cf, Durability};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

const PREFIX: &[u8] = b"pkey/";
const SEALED: &str = "sealed:";
/// What a sealed field reads as once its person was erased.
pub const ERASED: &str = "(erased)";

#[derive(Serialize, Deserialize)]
struct PersonKey {
    key: String,
}

fn key(tag: &str) -> Vec<u8> {
    [PREFIX, tag.as_bytes()].concat()
}

impl Volume {
    /// What keys and sealed fields hold instead of the person `name`: 32 hex digits of a
    /// keyed BLAKE2b of it.
    #[must_use]
    pub fn person_tag(&self, name: &str) -> String {
        crate::ids::hex(&self.keyed_secret_hash(b"person name", name.as_bytes())[..16])
    }

    fn person_key(&self, tag: &str) -> Result<Option<SealKey>> {
        let Some(k) = self.record::<PersonKey>(&key(tag))? else { return Ok(None) };
        let bytes: Option<[u8; 32]> = crate::ids::unhex(&k.key).and_then(|b| b.try_into().ok());
        Ok(bytes.map(|b| SealKey::new(&b)))
    }

    /// `value` sealed under the key of person `name`, made the first time it is needed.
    pub(crate) fn seal_for_person(&self, name: &str, value: &str) -> Result<String> {
        let tag = self.person_tag(name);
        let sealer = match self.person_key(&tag)? {
            Some(k) => k,
            None => {
                let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
                crate::crypto::keys::random_bytes(bytes.as_mut());
                let record = PersonKey { key: crate::ids::hex(bytes.as_ref()) };
                let k = key(&tag);
                let mut txn = self.txn()?;
                // Another thread may have made it meanwhile: the commit lock is held now.
                if let Some(existing) = self.person_key(&tag)? {
                    existing
                } else {
                    let json = serde_json::to_vec(&record).expect("a key record serialises");
                    txn.batch.put(Cf::Meta, &k, &self.meta.seal(Cf::Meta.name(), &k, &json));
                    txn.commit(Durability::Synced)?;
                    SealKey::new(&bytes)
                }
            }
        };
        let sealed = sealer.seal(tag.as_bytes(), value.as_bytes());
        Ok(format!("{SEALED}{tag}:{}", Base64UrlUnpadded::encode_string(&sealed)))
    }

    /// A field as stored, opened: itself when it is not sealed, `ERASED` when its person's
    /// key is gone, and the sealed text otherwise. `tag` is set to the person's tag.
    pub(crate) fn open_for_person(&self, field: &str, tag: &mut Option<String>) -> Result<String> {
        let Some((t, body)) = field.strip_prefix(SEALED).and_then(|r| r.split_once(':')) else {
            return Ok(field.to_string());
        };
        *tag = Some(t.to_string());
        let Some(k) = self.person_key(t)? else { return Ok(ERASED.into()) };
        let opened = Base64UrlUnpadded::decode_vec(body).ok().and_then(|b| k.open(t.as_bytes(), &b).ok());
        Ok(opened.map_or_else(|| ERASED.into(), |p| String::from_utf8_lossy(&p).into_owned()))
    }

    /// Whether person `name` has a key (something about them was sealed and not shredded).
    pub(crate) fn person_key_exists(&self, name: &str) -> Result<bool> {
        self.record_exists(&key(&self.person_tag(name)))
    }

    /// Destroys the key of person `name`: every field sealed under it is unreadable from
    /// now on. Returns whether there was one.
    pub(crate) fn shred_person_key(&self, name: &str) -> Result<bool> {
        let k = key(&self.person_tag(name));
        if !self.record_exists(&k)? {
            return Ok(false);
        }
        let mut txn = self.txn()?;
        txn.batch.delete(Cf::Meta, &k);
        txn.commit(Durability::Synced)?;
        // The key's old versions leave the database files only when compaction drops them.
        self.compact_records()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::volume::tests_support::scratch_volume;

    #[test]
    fn a_sealed_field_opens_until_its_key_is_shredded() {
        let (_tmp, vol) = scratch_volume();
        let sealed = vol.seal_for_person("alice", "alice from 10.0.0.7").unwrap();
        assert!(!sealed.contains("alice") && sealed.starts_with("sealed:"), "{sealed}");
        let mut tag = None;
        assert_eq!(vol.open_for_person(&sealed, &mut tag).unwrap(), "alice from 10.0.0.7");
        assert_eq!(tag.as_deref(), Some(vol.person_tag("alice").as_str()));
        let bob = vol.seal_for_person("bob", "bob").unwrap();
        assert_eq!(vol.open_for_person("plain", &mut None).unwrap(), "plain");
        assert!(vol.shred_person_key("alice").unwrap());
        assert_eq!(vol.open_for_person(&sealed, &mut None).unwrap(), super::ERASED);
        assert_eq!(vol.open_for_person(&bob, &mut None).unwrap(), "bob", "others keep theirs");
        assert!(!vol.shred_person_key("alice").unwrap());
    }
}
