//! XChaCha20-Poly1305 sealing with a random 192-bit nonce per message.
//!
//! Format: `nonce 24 | ciphertext | tag 16`. The caller binds context (chunk id, record
//! key, format version) as associated data, so a sealed value moved to another key or
//! column family fails to open.

use super::Error;
use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// Bytes added by sealing: nonce plus tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// XChaCha20 nonce length.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// A 256-bit AEAD key with its cipher state ready.
#[derive(Clone)]
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    /// Wraps 32 key bytes.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(Key::from_slice(key)) }
    }

    /// Appends `nonce | ciphertext | tag` of `plaintext` to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        out.reserve(OVERHEAD + plaintext.len());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, aad, &mut out[start..])
            .expect("XChaCha20-Poly1305 accepts any message length we produce");
        out.extend_from_slice(&tag);
    }

    /// `nonce | ciphertext | tag` of `plaintext`.
    #[must_use]
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// Opens `sealed` in place and returns the plaintext, a sub-slice of it (no copy).
    pub fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Result<&'a [u8], Error> {
        if sealed.len() < OVERHEAD {
            return Err(Error::Malformed("shorter than nonce and tag"));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.cipher
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, ciphertext, (&*tag).into())
            .map_err(|_| Error::Auth)?;
        Ok(ciphertext)
    }

    /// Opens what `seal` produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() < OVERHEAD {
            return Err(Error::Malformed("shorter than nonce and tag"));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut plain, tag.into())
            .map_err(|_| Error::Auth)?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_round_trip(key: [u8; 32], aad: Vec<u8>, plain: Vec<u8>) {
            let k = SealKey::new(&key);
            let sealed = k.seal(&aad, &plain);
            prop_assert_eq!(sealed.len(), plain.len() + OVERHEAD);
            prop_assert_eq!(k.open(&aad, &sealed).unwrap(), plain);
        }

        #[test]
        fn any_flipped_bit_is_detected(key: [u8; 32], plain in proptest::collection::vec(any::<u8>(), 0..300), pos: usize, bit in 0u8..8) {
            let k = SealKey::new(&key);
            let mut sealed = k.seal(b"ctx", &plain);
            let i = pos % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert_eq!(k.open(b"ctx", &sealed), Err(Error::Auth));
        }

        #[test]
        fn other_aad_or_key_is_refused(key: [u8; 32], plain: Vec<u8>) {
            let k = SealKey::new(&key);
            let sealed = k.seal(b"chunk-a", &plain);
            prop_assert_eq!(k.open(b"chunk-b", &sealed), Err(Error::Auth));
            let mut other = key;
            other[0] ^= 1;
            prop_assert_eq!(SealKey::new(&other).open(b"chunk-a", &sealed), Err(Error::Auth));
        }
    }

    #[test]
    fn open_in_place_matches_open() {
        let k = SealKey::new(&[4; 32]);
        let mut sealed = k.seal(b"a", b"payload");
        assert_eq!(k.open_in_place(b"a", &mut sealed).unwrap(), b"payload");
        let mut sealed = k.seal(b"a", b"payload");
        assert_eq!(k.open_in_place(b"b", &mut sealed), Err(Error::Auth));
    }

    #[test]
    fn truncated_input_is_malformed() {
        let k = SealKey::new(&[0; 32]);
        assert!(matches!(k.open(b"", &[0u8; 10]), Err(Error::Malformed(_))));
    }
}
