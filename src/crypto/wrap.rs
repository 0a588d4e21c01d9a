//! Key wrapping: the data key sealed under a key derived from a passphrase.
//!
//! A wrapped key is `XChaCha20-Poly1305(kek, aad = context, data key)` where
//! `kek = Argon2id(passphrase, salt)`. The caller's context (volume id and slot id) is the
//! associated data, so a slot copied into another volume's header does not open.

use super::aead::SealKey;
use super::kdf::{self, Argon2Params};
use super::keys::{random_bytes, DataKey};
use super::Error;
use zeroize::Zeroizing;

/// A data key wrapped by a passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseWrap {
    /// Argon2id cost.
    pub params: Argon2Params,
    /// Random per-slot salt.
    pub salt: [u8; 16],
    /// `nonce | sealed data key | tag`.
    pub sealed_key: Vec<u8>,
}

impl PassphraseWrap {
    /// Wraps `key` under `passphrase`.
    pub fn wrap(key: &DataKey, passphrase: &[u8], params: Argon2Params, context: &[u8]) -> Result<Self, Error> {
        let mut salt = [0u8; 16];
        random_bytes(&mut salt);
        let kek = kdf::derive(passphrase, &salt, params)?;
        let sealed_key = SealKey::new(&kek).seal(context, key.expose());
        Ok(Self { params, salt, sealed_key })
    }

    /// Recovers the data key; `Error::Auth` for a wrong passphrase or a changed slot.
    pub fn unwrap(&self, passphrase: &[u8], context: &[u8]) -> Result<DataKey, Error> {
        let kek = kdf::derive(passphrase, &self.salt, self.params)?;
        let plain = Zeroizing::new(SealKey::new(&kek).open(context, &self.sealed_key)?);
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::Malformed("data key is not 32 bytes"))?;
        Ok(DataKey::from_bytes(Zeroizing::new(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passphrase_or_context_fails() {
        let key = DataKey::generate();
        let w = PassphraseWrap::wrap(&key, b"right", Argon2Params::TEST_ONLY, b"vol-1/slot-0").unwrap();
        assert_eq!(w.unwrap(b"right", b"vol-1/slot-0").unwrap().expose(), key.expose());
        assert!(matches!(w.unwrap(b"wrong", b"vol-1/slot-0"), Err(Error::Auth)));
        assert!(matches!(w.unwrap(b"right", b"vol-2/slot-0"), Err(Error::Auth)));
    }
}
