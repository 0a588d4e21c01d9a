//! Hybrid post-quantum wrapping of the volume key to a recipient's public key, age-stanza
//! style, with X-Wing (ML-KEM-768 of FIPS 203 + X25519, `draft-connolly-cfrg-xwing-kem`).
//!
//! An [`Identity`] is the 32-byte X-Wing decapsulation key (the seed from which the ML-KEM-768
//! and X25519 keys expand); its [`Recipient`] is the 1216-byte encapsulation key. Anyone with
//! the recipient can wrap the data key to it; only the identity unwraps it. A classical
//! attacker must break X25519 *and* ML-KEM-768; a quantum one still faces ML-KEM-768.
//!
//! # Wrapping (one [`RecipientWrap`] per recipient)
//!
//! ```text
//! (ct, ss) = X-Wing.Encapsulate(recipient)             ct: 1120 bytes, ss: 32 bytes
//! kek      = BLAKE2b-256(key = ss, msg = "nanofs/v1/xwing-slot" || context)
//! sealed   = XChaCha20-Poly1305(kek).seal(aad = context, plaintext = data key)
//!          = nonce 24 | ciphertext 32 | tag 16
//! ```
//!
//! The X-Wing combiner already hashes the X25519 ciphertext and public key into `ss`, and
//! ML-KEM's implicit rejection makes any change to `ct` yield an unrelated `ss`, so a changed
//! ciphertext, a changed `context` (the caller binds the volume id and slot there) or the
//! wrong identity all end in [`Error::Auth`] when the sealed key is opened. Decapsulation
//! also rejects a non-contributory (all-zero) X25519 share. `ss` and `kek` live only in
//! zeroizing buffers.
//!
//! # Text forms
//!
//! - Recipient: `nanofs-xwing1` followed by the base64url (no padding) encoding of the
//!   1216-byte encapsulation key, 1635 characters in all.
//! - Identity file: `#` comment lines (creation time, the recipient), then the line
//!   `NANOFS-XWING-IDENTITY-1` followed by the base64url (no padding) encoding of the seed.
//!   Blank lines and comments are ignored on parsing. The seed is decoded in constant time.
//!
//! The test vectors of the draft's Appendix C (identical in revisions -06 to -10, the
//! construction the `x-wing` 0.1 crate implements) are checked in the tests below.

use super::aead::SealKey;
use super::keys::{keyed_hash, random_bytes, DataKey};
use super::Error;
use base64ct::{Base64UrlUnpadded, Encoding};
use std::fmt;
use x_wing::{
    DecapsulationKeyRejectNonContrib, Decapsulator, Encapsulate, EncapsulationKey, KeyExport, TryDecapsulate,
    CIPHERTEXT_SIZE, DECAPSULATION_KEY_SIZE, ENCAPSULATION_KEY_SIZE,
};
use zeroize::{Zeroize, Zeroizing};

/// Prefix of a recipient string.
pub const RECIPIENT_PREFIX: &str = "nanofs-xwing1";
/// Prefix of the secret line of an identity file.
pub const IDENTITY_PREFIX: &str = "NANOFS-XWING-IDENTITY-1";
/// Domain-separation label of the key-encryption-key derivation (part of the format).
const KEK_LABEL: &[u8] = b"nanofs/v1/xwing-slot";

/// Characters of base64url without padding for `n` bytes.
const fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}
const RECIPIENT_B64_LEN: usize = b64_len(ENCAPSULATION_KEY_SIZE);
const SEED_B64_LEN: usize = b64_len(DECAPSULATION_KEY_SIZE);

/// A private X-Wing identity (the 32-byte decapsulation-key seed), zeroized on drop.
pub struct Identity {
    /// The seed, kept for `to_file_text`.
    seed: Zeroizing<[u8; DECAPSULATION_KEY_SIZE]>,
    /// The expanded key (it zeroizes its own copy of the seed on drop).
    dk: DecapsulationKeyRejectNonContrib,
}

impl Identity {
    /// A fresh identity from the operating system's CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; DECAPSULATION_KEY_SIZE]);
        random_bytes(seed.as_mut());
        Self::from_seed(seed)
    }

    /// The identity whose decapsulation key is `seed`.
    fn from_seed(seed: Zeroizing<[u8; DECAPSULATION_KEY_SIZE]>) -> Self {
        let dk = DecapsulationKeyRejectNonContrib::from(*seed);
        Self { seed, dk }
    }

    /// The public recipient that wraps keys to this identity.
    #[must_use]
    pub fn recipient(&self) -> Recipient {
        Recipient { ek: self.dk.encapsulation_key().clone() }
    }

    /// Text of an identity file: comment lines starting with `#` (creation time, the
    /// recipient), then the line `NANOFS-XWING-IDENTITY-1<base64url-no-pad of the seed>`.
    #[must_use]
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let recipient = self.recipient().to_string_encoded();
        let mut encoded = Zeroizing::new([0u8; SEED_B64_LEN]);
        let line = Base64UrlUnpadded::encode(self.seed.as_ref(), encoded.as_mut()).expect("buffer sized for the seed");
        // Reserve everything up front so the secret is never left behind by a reallocation.
        let mut text = Zeroizing::new(String::with_capacity(256 + recipient.len()));
        text.push_str("# nanofs X-Wing identity (ML-KEM-768 + X25519). Keep this file secret.\n");
        text.push_str("# created: ");
        text.push_str(&crate::utc::now_rfc3339());
        text.push_str("\n# recipient: ");
        text.push_str(&recipient);
        text.push('\n');
        text.push_str(IDENTITY_PREFIX);
        text.push_str(line);
        text.push('\n');
        text
    }

    /// Parses the text of an identity file, ignoring `#` comments and blank lines.
    ///
    /// # Errors
    /// [`Error::Malformed`] if there is not exactly one identity line or it does not decode.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut found: Option<&str> = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if found.is_some() {
                return Err(Error::Malformed("identity file holds more than one identity line"));
            }
            found = Some(line);
        }
        let line = found.ok_or(Error::Malformed("identity file holds no identity line"))?;
        let body = line
            .strip_prefix(IDENTITY_PREFIX)
            .ok_or(Error::Malformed("not a nanofs X-Wing identity (expected NANOFS-XWING-IDENTITY-1)"))?;
        if body.len() != SEED_B64_LEN {
            return Err(Error::Malformed("identity has the wrong length"));
        }
        let mut seed = Zeroizing::new([0u8; DECAPSULATION_KEY_SIZE]);
        let decoded = Base64UrlUnpadded::decode(body, seed.as_mut())
            .map_err(|_| Error::Malformed("identity is not valid base64url"))?;
        if decoded.len() != DECAPSULATION_KEY_SIZE {
            return Err(Error::Malformed("identity has the wrong length"));
        }
        Ok(Self::from_seed(seed))
    }
}

impl fmt::Debug for Identity {
    /// Shows the recipient's fingerprint, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("recipient", &self.recipient().fingerprint()).finish_non_exhaustive()
    }
}

/// A public recipient (X-Wing encapsulation key, 1216 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    ek: EncapsulationKey,
}

impl Recipient {
    /// Parses `nanofs-xwing1<base64url-no-pad>`, ignoring surrounding whitespace.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a wrong prefix, length or encoding, or bytes that are not a
    /// valid ML-KEM-768 encapsulation key (FIPS 203 §7.2 modulus check).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let body = s
            .trim()
            .strip_prefix(RECIPIENT_PREFIX)
            .ok_or(Error::Malformed("not a nanofs X-Wing recipient (expected nanofs-xwing1...)"))?;
        if body.len() != RECIPIENT_B64_LEN {
            return Err(Error::Malformed("recipient has the wrong length"));
        }
        let mut bytes = [0u8; ENCAPSULATION_KEY_SIZE];
        let decoded = Base64UrlUnpadded::decode(body, &mut bytes)
            .map_err(|_| Error::Malformed("recipient is not valid base64url"))?;
        if decoded.len() != ENCAPSULATION_KEY_SIZE {
            return Err(Error::Malformed("recipient has the wrong length"));
        }
        let ek = EncapsulationKey::try_from(&bytes[..])
            .map_err(|_| Error::Malformed("recipient is not a valid X-Wing encapsulation key"))?;
        Ok(Self { ek })
    }

    /// The 1216 key bytes: ML-KEM-768 encapsulation key (1184) then X25519 public key (32).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; ENCAPSULATION_KEY_SIZE] {
        self.ek.to_bytes().into()
    }

    /// `nanofs-xwing1` followed by the base64url (no padding) encoding of the key bytes.
    #[must_use]
    pub fn to_string_encoded(&self) -> String {
        let mut buf = [0u8; RECIPIENT_B64_LEN];
        let body = Base64UrlUnpadded::encode(&self.to_bytes(), &mut buf).expect("buffer sized for the key");
        let mut s = String::with_capacity(RECIPIENT_PREFIX.len() + RECIPIENT_B64_LEN);
        s.push_str(RECIPIENT_PREFIX);
        s.push_str(body);
        s
    }

    /// Short stable id: hex of the first 8 bytes of the unkeyed BLAKE2b-256 of the key bytes.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let hash = blake2b_simd::Params::new().hash_length(32).hash(&self.to_bytes());
        hash.as_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_encoded())
    }
}

impl fmt::Debug for Recipient {
    /// The start of the encoded key and the fingerprint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_string_encoded();
        write!(f, "Recipient({}… {})", &s[..RECIPIENT_PREFIX.len() + 12], self.fingerprint())
    }
}

impl std::str::FromStr for Recipient {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// The volume key wrapped to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientWrap {
    /// The X-Wing ciphertext (1120 bytes).
    pub ciphertext: Vec<u8>,
    /// `SealKey(kek).seal(context, key)` = nonce 24 | ciphertext 32 | tag 16.
    pub sealed_key: Vec<u8>,
}

impl RecipientWrap {
    /// Wraps `key` to `recipient`, bound to `context` (e.g. the volume id and slot index).
    ///
    /// # Errors
    /// None today; the `Result` leaves room for recipient types that can fail.
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn wrap(key: &DataKey, recipient: &Recipient, context: &[u8]) -> Result<Self, Error> {
        let (ciphertext, mut ss) = recipient.ek.encapsulate();
        let kek = derive_kek(&ss, context);
        ss.as_mut_slice().zeroize();
        let sealed_key = SealKey::new(&kek).seal(context, key.expose());
        Ok(Self { ciphertext: ciphertext.to_vec(), sealed_key })
    }

    /// Unwraps the key with `identity` and the same `context` it was wrapped with.
    ///
    /// # Errors
    /// [`Error::Auth`] for a different identity, a changed context, or tampered bytes;
    /// [`Error::Malformed`] for a ciphertext or sealed key of the wrong length.
    pub fn unwrap(&self, identity: &Identity, context: &[u8]) -> Result<DataKey, Error> {
        if self.ciphertext.len() != CIPHERTEXT_SIZE {
            return Err(Error::Malformed("X-Wing ciphertext has the wrong length"));
        }
        let ct = x_wing::Ciphertext::try_from(self.ciphertext.as_slice())
            .map_err(|_| Error::Malformed("X-Wing ciphertext has the wrong length"))?;
        let mut ss = identity.dk.try_decapsulate(&ct).map_err(|_| Error::Auth)?;
        let kek = derive_kek(&ss, context);
        ss.as_mut_slice().zeroize();
        let plain = Zeroizing::new(SealKey::new(&kek).open(context, &self.sealed_key)?);
        let bytes: [u8; 32] =
            plain.as_slice().try_into().map_err(|_| Error::Malformed("wrapped key is not 32 bytes"))?;
        Ok(DataKey::from_bytes(Zeroizing::new(bytes)))
    }
}

/// `kek = BLAKE2b-256(key = ss, msg = KEK_LABEL || context)`.
fn derive_kek(ss: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut msg = Vec::with_capacity(KEK_LABEL.len() + context.len());
    msg.extend_from_slice(KEK_LABEL);
    msg.extend_from_slice(context);
    keyed_hash(ss, &msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x_wing::{Decapsulate, DecapsulationKey};

    fn key(byte: u8) -> DataKey {
        DataKey::from_bytes(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let id = Identity::generate();
        let wrap = RecipientWrap::wrap(&key(7), &id.recipient(), b"volume-1/slot-0").unwrap();
        assert_eq!(wrap.ciphertext.len(), CIPHERTEXT_SIZE);
        assert_eq!(wrap.sealed_key.len(), 32 + super::super::aead::OVERHEAD);
        let got = wrap.unwrap(&id, b"volume-1/slot-0").unwrap();
        assert_eq!(got.expose(), &[7; 32]);
        // Fresh encapsulation randomness and nonce every time.
        let again = RecipientWrap::wrap(&key(7), &id.recipient(), b"volume-1/slot-0").unwrap();
        assert_ne!(again, wrap);
    }

    #[test]
    fn other_identity_is_refused() {
        let id = Identity::generate();
        let wrap = RecipientWrap::wrap(&key(1), &id.recipient(), b"ctx").unwrap();
        assert_eq!(wrap.unwrap(&Identity::generate(), b"ctx").err(), Some(Error::Auth));
    }

    #[test]
    fn changed_context_is_refused() {
        let id = Identity::generate();
        let wrap = RecipientWrap::wrap(&key(1), &id.recipient(), b"volume-1/slot-0").unwrap();
        assert_eq!(wrap.unwrap(&id, b"volume-1/slot-1").err(), Some(Error::Auth));
        assert_eq!(wrap.unwrap(&id, b"").err(), Some(Error::Auth));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let id = Identity::generate();
        let wrap = RecipientWrap::wrap(&key(3), &id.recipient(), b"ctx").unwrap();
        // Every byte of the X-Wing ciphertext: ML-KEM part (0..1088) and X25519 part.
        for i in 0..wrap.ciphertext.len() {
            let mut bad = wrap.clone();
            bad.ciphertext[i] ^= if i % 2 == 0 { 0x01 } else { 0x80 };
            assert_eq!(bad.unwrap(&id, b"ctx").err(), Some(Error::Auth), "ciphertext byte {i}");
        }
        for i in 0..wrap.sealed_key.len() {
            let mut bad = wrap.clone();
            bad.sealed_key[i] ^= 0x01;
            assert_eq!(bad.unwrap(&id, b"ctx").err(), Some(Error::Auth), "sealed_key byte {i}");
        }
        assert_eq!(wrap.unwrap(&id, b"ctx").unwrap().expose(), &[3; 32]);
    }

    #[test]
    fn non_contributory_x25519_share_is_refused() {
        let id = Identity::generate();
        let mut wrap = RecipientWrap::wrap(&key(3), &id.recipient(), b"ctx").unwrap();
        wrap.ciphertext[1088..].fill(0);
        assert_eq!(wrap.unwrap(&id, b"ctx").err(), Some(Error::Auth));
    }

    #[test]
    fn wrong_lengths_are_malformed() {
        let id = Identity::generate();
        let wrap = RecipientWrap::wrap(&key(3), &id.recipient(), b"ctx").unwrap();
        let mut short = wrap.clone();
        short.ciphertext.pop();
        assert!(matches!(short.unwrap(&id, b"ctx"), Err(Error::Malformed(_))));
        let mut long = wrap.clone();
        long.ciphertext.push(0);
        assert!(matches!(long.unwrap(&id, b"ctx"), Err(Error::Malformed(_))));
        let mut cut = wrap;
        cut.sealed_key.truncate(10);
        assert!(matches!(cut.unwrap(&id, b"ctx"), Err(Error::Malformed(_))));
    }

    #[test]
    fn identity_file_round_trip() {
        let id = Identity::generate();
        let text = id.to_file_text();
        let recipient = id.recipient().to_string_encoded();
        assert!(text.starts_with('#'));
        assert!(text.contains("# created: "));
        assert!(text.contains(&format!("# recipient: {recipient}\n")));
        let secret_lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(secret_lines.len(), 1);
        assert!(secret_lines[0].starts_with(IDENTITY_PREFIX));
        assert_eq!(secret_lines[0].len(), IDENTITY_PREFIX.len() + 43);

        let back = Identity::parse(&text).unwrap();
        assert_eq!(back.recipient(), id.recipient());
        assert_eq!(*back.seed, *id.seed);
        // CRLF line ends, indentation and blank lines are tolerated.
        let crlf = format!("\r\n\n  {}  \r\n", text.replace('\n', "\r\n"));
        assert_eq!(Identity::parse(&crlf).unwrap().recipient(), id.recipient());
        // A key wrapped to the recipient opens with the parsed identity.
        let wrap = RecipientWrap::wrap(&key(9), &id.recipient(), b"c").unwrap();
        assert_eq!(wrap.unwrap(&back, b"c").unwrap().expose(), &[9; 32]);
    }

    #[test]
    fn identity_debug_hides_the_seed() {
        let id = Identity::from_seed(Zeroizing::new([0x42; 32]));
        let dbg = format!("{id:?}");
        assert!(dbg.contains(&id.recipient().fingerprint()), "{dbg}");
        assert!(!dbg.contains("4242") && !dbg.contains("66, 66"), "{dbg}");
    }

    #[test]
    fn recipient_string_round_trip() {
        let r = Identity::generate().recipient();
        let s = r.to_string_encoded();
        assert!(s.starts_with(RECIPIENT_PREFIX));
        assert_eq!(s.len(), RECIPIENT_PREFIX.len() + 1622);
        assert_eq!(r.to_string(), s);
        assert_eq!(Recipient::parse(&s).unwrap(), r);
        assert_eq!(Recipient::parse(&format!("  {s}\n")).unwrap(), r);
        assert_eq!(s.parse::<Recipient>().unwrap(), r);
        let fp = r.fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(Recipient::parse(&s).unwrap().fingerprint(), fp);
        assert!(format!("{r:?}").contains(&fp));
        assert_ne!(Identity::generate().recipient().fingerprint(), fp);
    }

    #[test]
    fn garbage_recipients_are_malformed() {
        let good = Identity::generate().recipient().to_string_encoded();
        let body = &good[RECIPIENT_PREFIX.len()..];
        let wrong_prefix = format!("age1{body}");
        let short = &good[..good.len() - 1];
        let long = format!("{good}A");
        let bad_char = format!("{}*{}", &good[..100], &good[101..]);
        // Valid base64 of 1216 bytes 0xff: ML-KEM coefficients 0xfff >= q fail the modulus check.
        let mut buf = [0u8; RECIPIENT_B64_LEN];
        let not_a_key = format!(
            "{RECIPIENT_PREFIX}{}",
            Base64UrlUnpadded::encode(&[0xff; ENCAPSULATION_KEY_SIZE], &mut buf).unwrap()
        );
        // The last character of 1216 bytes carries 4 unused bits; 'B' sets one of them, so the
        // text is non-canonical and refused (one key, one spelling).
        let noncanon = format!("{}B", &good[..good.len() - 1]);
        let cases = ["", "nanofs-xwing1", "hello", &wrong_prefix, short, &long, &bad_char, &not_a_key, &noncanon];
        for s in cases {
            assert!(matches!(Recipient::parse(s), Err(Error::Malformed(_))), "{s:.40}");
        }
    }

    #[test]
    fn garbage_identities_are_malformed() {
        let text = Identity::generate().to_file_text();
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap().to_owned();
        let body = &line[IDENTITY_PREFIX.len()..];
        let cases = [
            String::new(),
            "# only a comment\n\n".to_owned(),
            "AGE-SECRET-KEY-1QQQ".to_owned(),
            format!("AGE-SECRET-KEY-1{body}"),
            format!("{IDENTITY_PREFIX}{}", &body[1..]),
            format!("{line}A"),
            format!("{IDENTITY_PREFIX}{}!", &body[1..]),
            format!("{line}\n{line}\n"),
            // Non-canonical last character (2 unused bits set).
            format!("{}B", &line[..line.len() - 1]),
            Identity::generate().recipient().to_string_encoded(),
        ];
        for c in &cases {
            assert!(matches!(Identity::parse(c), Err(Error::Malformed(_))), "{c:.60}");
        }
    }

    // ---- Published X-Wing test vectors ----

    /// One vector of draft-connolly-cfrg-xwing-kem, Appendix C "Test vectors" (the same three
    /// vectors in revisions -06 through -10; also spec/test-vectors.json of the draft's
    /// repository). `seed` is the 32-byte decapsulation key (`sk` = `seed`), `eseed` the
    /// 64-byte encapsulation randomness of `EncapsulateDerand`.
    struct Vector {
        seed: &'static str,
        eseed: &'static str,
        ss: &'static str,
        pk: &'static str,
        ct: &'static str,
    }

    fn unhex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2));
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        unhex(s).try_into().expect("vector field length")
    }

    #[test]
    fn xwing_draft_test_vectors() {
        for (n, v) in VECTORS.iter().enumerate() {
            let seed: [u8; 32] = arr(v.seed);
            let pk: [u8; ENCAPSULATION_KEY_SIZE] = arr(v.pk);
            let ct: [u8; CIPHERTEXT_SIZE] = arr(v.ct);
            let ss: [u8; 32] = arr(v.ss);
            let eseed: [u8; 64] = arr(v.eseed);

            // Key derivation: seed -> encapsulation key, compared in full.
            let id = Identity::from_seed(Zeroizing::new(seed));
            let recipient = id.recipient();
            assert_eq!(recipient.to_bytes(), pk, "vector {n}: encapsulation key");
            // The published key also parses through the text form.
            let mut buf = [0u8; RECIPIENT_B64_LEN];
            let text = format!("{RECIPIENT_PREFIX}{}", Base64UrlUnpadded::encode(&pk, &mut buf).unwrap());
            assert_eq!(Recipient::parse(&text).unwrap(), recipient, "vector {n}");

            // Derandomized encapsulation with the published eseed.
            let (got_ct, got_ss) = recipient.ek.encapsulate_deterministic(&eseed.into());
            assert_eq!(got_ct.as_slice(), &ct[..], "vector {n}: ciphertext");
            assert_eq!(got_ss.as_slice(), &ss[..], "vector {n}: shared secret");

            // Decapsulating the published ciphertext with the published seed.
            let ct_arr = x_wing::Ciphertext::try_from(&ct[..]).unwrap();
            assert_eq!(DecapsulationKey::from(seed).decapsulate(&ct_arr).as_slice(), &ss[..], "vector {n}");
            assert_eq!(id.dk.try_decapsulate(&ct_arr).unwrap().as_slice(), &ss[..], "vector {n}");

            // And a slot made from the published ciphertext opens through our KDF.
            let context = b"nanofs test vector";
            let sealed_key = SealKey::new(&derive_kek(&ss, context)).seal(context, &[0x5a; 32]);
            let wrap = RecipientWrap { ciphertext: ct.to_vec(), sealed_key };
            assert_eq!(wrap.unwrap(&id, context).unwrap().expose(), &[0x5a; 32], "vector {n}");
        }
    }

    const VECTORS: [Vector; 3] = [
        Vector {
            seed: "7f9c2ba4e88f827d616045507605853ed73b8093f6efbc88eb1a6eacfa66ef26",
            eseed: concat!(
                "3cb1eea988004b93103cfb0aeefd2a686e01fa4a58e8a3639ca8a1e3f9ae57e2",
                "35b8cc873c23dc62b8d260169afa2f75ab916a58d974918835d25e6a435085b2",
            ),
            ss: "d2df0522128f09dd8e2c92b1e905c793d8f57a54c3da25861f10bf4ca613e384",
            pk: concat!(
                "e2236b35a8c24b39b10aa1323a96a919a2ced88400633a7b07131713fc14b2b5",
                "b19cfc3da5fa1a92c49f25513e0fd30d6b1611c9ab9635d7086727a4b7d21d34",
                "244e66969cf15b3b2a785329f61b096b277ea037383479a6b556de7231fe4b7f",
                "a9c9ac24c0699a0018a5253401bacfa905ca816573e56a2d2e067e9b7287533b",
                "a13a937dedb31fa44baced40769923610034ae31e619a170245199b3c5c39864",
                "859fe1b4c9717a07c30495bdfb98a0a002ccf56c1286cef5041dede3c44cf16b",
                "f562c7448518026b3d8b9940680abd38a1575fd27b58da063bfac32c39c30869",
                "374c05c1aeb1898b6b303cc68be455346ee0af699636224a148ca2aea1046311",
                "1c709f69b69c70ce8538746698c4c60a9aef0030c7924ceec42a5d36816f545e",
                "ae13293460b3acb37ea0e13d70e4aa78686da398a8397c08eaf96882113fe4f7",
                "bad4da40b0501e1c753efe73053c87014e8661c33099afe8bede414a5b1aa27d",
                "8392b3e131e9a70c1055878240cad0f40d5fe3cdf85236ead97e2a97448363b2",
                "808caafd516cd25052c5c362543c2517e4acd0e60ec07163009b6425fc32277a",
                "cee71c24bab53ed9f29e74c66a0a3564955998d76b96a9a8b50d1635a4d7a67e",
                "b42df5644d330457293a8042f53cc7a69288f17ed55827e82b28e82665a86a14",
                "fbd96645eca8172c044f83bc0d8c0b4c8626985631ca87af829068f1358963cb",
                "333664ca482763ba3b3bb208577f9ba6ac62c25f76592743b64be519317714cb",
                "4102cb7b2f9a25b2b4f0615de31decd9ca55026d6da0b65111b16fe52feed8a4",
                "87e144462a6dba93728f500b6ffc49e515569ef25fed17aff520507368253525",
                "860f58be3be61c964604a6ac814e6935596402a520a4670b3d284318866593d1",
                "5a4bb01c35e3e587ee0c67d2880d6f2407fb7a70712b838deb96c5d7bf2b44bc",
                "f6038ccbe33fbcf51a54a584fe90083c91c7a6d43d4fb15f48c60c2fd66e0a8a",
                "ad4ad64e5c42bb8877c0ebec2b5e387c8a988fdc23beb9e16c8757781e0a1499",
                "c61e138c21f216c29d076979871caa6942bafc090544bee99b54b16cb9a9a364",
                "d6246d9f42cce53c66b59c45c8f9ae9299a75d15180c3c952151a91b7a107724",
                "29dc4cbae6fcc622fa8018c63439f890630b9928db6bb7f9438ae4065ed34d73",
                "d486f3f52f90f0807dc88dfdd8c728e954f1ac35c06c000ce41a0582580e3bb5",
                "7b672972890ac5e7988e7850657116f1b57d0809aaedec0bede1ae148148311c",
                "6f7e317346e5189fb8cd635b986f8c0bdd27641c584b778b3a911a80be1c9692",
                "ab8e1bbb12839573cce19df183b45835bbb55052f9fc66a1678ef2a36dea7841",
                "1e6c8d60501b4e60592d13698a943b509185db912e2ea10be06171236b327c71",
                "716094c964a68b03377f513a05bcd99c1f346583bb052977a10a12adfc758034",
                "e5617da4c1276585e5774e1f3b9978b09d0e9c44d3bc86151c43aad185712717",
                "340223ac381d21150a04294e97bb13bbda21b5a182b6da969e19a7fd072737fa",
                "8e880a53c2428e3d049b7d2197405296ddb361912a7bcf4827ced611d0c7a7da",
                "104dde4322095339f64a61d5bb108ff0bf4d780cae509fb22c256914193ff734",
                "9042581237d522828824ee3bdfd07fb03f1f942d2ea179fe722f06cc03de5b69",
                "859edb06eff389b27dce59844570216223593d4ba32d9abac8cd049040ef6534",
            ),
            ct: concat!(
                "b83aa828d4d62b9a83ceffe1d3d3bb1ef31264643c070c5798927e41fb07914a",
                "273f8f96e7826cd5375a283d7da885304c5de0516a0f0654243dc5b97f8bfeb8",
                "31f68251219aabdd723bc6512041acbaef8af44265524942b902e68ffd23221c",
                "da70b1b55d776a92d1143ea3a0c475f63ee6890157c7116dae3f62bf72f60acd",
                "2bb8cc31ce2ba0de364f52b8ed38c79d719715963a5dd3842d8e8b43ab704e47",
                "59b5327bf027c63c8fa857c4908d5a8a7b88ac7f2be394d93c3706ddd4e698cc",
                "6ce370101f4d0213254238b4a2e8821b6e414a1cf20f6c1244b699046f5a01ca",
                "a0a1a55516300b40d2048c77cc73afba79afeea9d2c0118bdf2adb8870dc328c",
                "5516cc45b1a2058141039e2c90a110a9e16b318dfb53bd49a126d6b73f215787",
                "517b8917cc01cabd107d06859854ee8b4f9861c226d3764c87339ab16c3667d2",
                "f49384e55456dd40414b70a6af841585f4c90c68725d57704ee8ee7ce6e2f9be",
                "582dbee985e038ffc346ebfb4e22158b6c84374a9ab4a44e1f91de5aac5197f8",
                "9bc5e5442f51f9a5937b102ba3beaebf6e1c58380a4a5fedce4a4e5026f88f52",
                "8f59ffd2db41752b3a3d90efabe463899b7d40870c530c8841e8712b733668ed",
                "033adbfafb2d49d37a44d4064e5863eb0af0a08d47b3cc888373bc05f7a33b84",
                "1bc2587c57eb69554e8a3767b7506917b6b70498727f16eac1a36ec8d8cfaf75",
                "1549f2277db277e8a55a9a5106b23a0206b4721fa9b3048552c5bd5b594d6e24",
                "7f38c18c591aea7f56249c72ce7b117afcc3a8621582f9cf71787e183dee0936",
                "7976e98409ad9217a497df888042384d7707a6b78f5f7fb8409e3b5351753734",
                "61b776002d799cbad62860be70573ecbe13b246e0da7e93a52168e0fb6a9756b",
                "895ef7f0147a0dc81bfa644b088a9228160c0f9acf1379a2941cd28c06ebc80e",
                "44e17aa2f8177010afd78a97ce0868d1629ebb294c5151812c583daeb8868522",
                "0f4da9118112e07041fcc24d5564a99fdbde28869fe0722387d7a9a4d16e1cc8",
                "555917e09944aa5ebaaaec2cf62693afad42a3f518fce67d273cc6c9fb5472b3",
                "80e8573ec7de06a3ba2fd5f931d725b493026cb0acbd3fe62d00e4c790d965d7",
                "a03a3c0b4222ba8c2a9a16e2ac658f572ae0e746eafc4feba023576f08942278",
                "a041fb82a70a595d5bacbf297ce2029898a71e5c3b0d1c6228b485b1ade509b3",
                "5fbca7eca97b2132e7cb6bc465375146b7dceac969308ac0c2ac89e7863eb894",
                "3015b24314cafb9c7c0e85fe543d56658c213632599efabfc1ec49dd8c88547b",
                "b2cc40c9d38cbd3099b4547840560531d0188cd1e9c23a0ebee0a03d5577d66b",
                "1d2bcb4baaf21cc7fef1e03806ca96299df0dfbc56e1b2b43e4fc20c37f834c4",
                "af62127e7dae86c3c25a2f696ac8b589dec71d595bfbe94b5ed4bc07d800b330",
                "796fda89edb77be0294136139354eb8cd37591578f9c600dd9be8ec6219fdd50",
                "7adf3397ed4d68707b8d13b24ce4cd8fb22851bfe9d632407f31ed6f7cb1600d",
                "e56f17576740ce2a32fc5145030145cfb97e63e0e41d354274a079d3e6fb2e15",
            ),
        },
        Vector {
            seed: "badfd6dfaac359a5efbb7bcc4b59d538df9a04302e10c8bc1cbf1a0b3a5120ea",
            eseed: concat!(
                "17cda7cfad765f5623474d368ccca8af0007cd9f5e4c849f167a580b14aabdef",
                "aee7eef47cb0fca9767be1fda69419dfb927e9df07348b196691abaeb580b32d",
            ),
            ss: "f2e86241c64d60f6649fbc6c5b7d17180b780a3f34355e64a85749949c45f150",
            pk: concat!(
                "0333285fa253661508c9fb444852caa4061636cb060e69943b431400134ae1fb",
                "c02287247cb38068bbb89e6714af10a3fcda6613acc4b5e4b0d6eb960c302a02",
                "53b1f507b596f0884d351da89b01c35543214c8e542390b2bc497967961ef102",
                "86879c34316e6483b644fc27e8019d73024ba1d1cc83650bb068a5431b33d122",
                "1b3d122dc1239010a55cb13782140893f30aca7c09380255a0c621602ffbb6a9",
                "db064c1406d12723ab3bbe2950a21fe521b160b30b16724cc359754b4c883426",
                "51333ea9412d5137791cf75558ebc5c54c520dd6c622a059f6b332ccebb9f241",
                "03e59a297cd69e4a48a3bfe53a5958559e840db5c023f66c10ce23081c2c8261",
                "d744799ba078285cfa71ac51f44708d0a6212c3993340724b3ac38f63e82a889",
                "a4fc581f6b8353cc6233ac8f5394b6cca292f892360570a3031c90c4da3f02a8",
                "95677390e60c24684a405f69ccf1a7b95312a47c844a4f9c2c4a37696dc10072",
                "a87bf41a2717d45b2a99ce09a4898d5a3f6b67085f9a626646bcf369982d4839",
                "72b9cd7d244c4f49970f766a22507925eca7df99a491d80c27723e84c7b49b63",
                "3a46b46785a16a41e02c538251622117364615d9c2cdaa1687a860c18bfc9ce8",
                "690efb2a524cb97cdfd1a4ea661fa7d08817998af838679b07c9db8455e2167a",
                "67c14d6a347522e89e8971270bec858364b1c1023b82c483cf8a8b76f040fe41",
                "c24dec2d49f6376170660605b80383391c4abad1136d874a77ef73b440758b6e",
                "7059add20873192e6e372e069c22c5425188e5c240cb3a6e29197ad17e87ec41",
                "a813af68531f262a6db25bbdb8a15d2ed9c9f35b9f2063890bd26ef09426f225",
                "aa1e6008d31600a29bcdf3b10d0bc72788d35e25f4976b3ca6ac7cbf0b442ae3",
                "99b225d9714d0638a864bda7018d3b7c793bd2ace6ac68f4284d10977cc029cf",
                "203c5698f15a06b162d6c8b4fd40c6af40824f9c6101bb94e9327869ab7efd83",
                "5dfc805367160d6c8571e3643ac70cbad5b96a1ad99352793f5af71705f95126",
                "cb4787392e94d808491a2245064ba5a7a30c066301392a6c315336e10dbc9c21",
                "77c7af382765b6c88eeab51588d01d6a95747f3652dc5b5c401a23863c7a0343",
                "737c737c99287a40a90896d4594730b552b910d23244684206f0eb842fb9aa31",
                "6ab182282a75fb72b6806cea4774b822169c386a58773c3edc8229d85905abb8",
                "7ac228f0f7a2ce9a497bb5325e17a6a82777a997c036c3b862d29c14682ad325",
                "a9600872f3913029a1588648ba590a7157809ff740b5138380015c40e9fb90f0",
                "311107946f28e5962e21666ad65092a3a60480cd16e61ff7fb5b44b70cf12201",
                "878428ef8067fceb1e1dcb49d66c773d312c7e53238cb620e126187009472d41",
                "036b702032411dc96cb750631df9d99452e495deb4300df660c8d35f32b424e9",
                "8c7ed14b12d8ab11a289ac63c50a24d52925950e49ba6bf4c2c38953c92d60b6",
                "cd034e575c711ac41bfa66951f62b9392828d7b45aed377ac69c35f1c6b80f38",
                "8f34e0bb9ce8167eb2bc630382825c396a407e905108081b444ac8a07c250737",
                "6a750d18248ee0a81c4318d9a38fc44c3b41e8681f87c34138442659512c4127",
                "6e1cc8fc4eb66e12727bcb5a9e0e405cdea21538d6ea885ab169050e6b91e1b6",
                "9f7ed34bcbb48fd4c562a576549f85b528c953926d96ea8a160b8843f1c89c62",
            ),
            ct: concat!(
                "c93beb22326705699bbc3d1d0aa6339be7a405debe61a7c337e1a91453c097a6",
                "f77c130639d1aaeb193175f1a987aa1fd789a63c9cd487ebd6965f5d8389c8d7",
                "c8cfacbba4b44d2fbe0ae84de9e96fb11215d9b76acd51887b752329c1a3e046",
                "8ccc49392c1e0f1aad61a73c10831e60a9798cb2e7ec07596b5803db3e243ecb",
                "b94166feade0c9197378700f8eb65a43502bbac4605992e2de2b906ab30ba401",
                "d7e1ff3c98f42cfc4b30b974d3316f331461ac05f43e0db7b41d3da702a4f567",
                "b6ee7295199c7be92f6b4a47e7307d34278e03c872fb48647c446a64a3937dcc",
                "d7c6d8de4d34b9dea45a0b065ef15b9e94d1b6df6dca7174d9bc9d14c6225e3a",
                "78a58785c3fe4e2fe6a0706f3365389e4258fbb61ecf1a1957715982b3f18444",
                "24e03acd83da7eee50573f6cd3ff396841e9a00ad679da92274129da277833d0",
                "524674feea09a98d25b888616f338412d8e65e151e65736c8c6fb448c9260fa2",
                "0e7b2712148bcd3a0853865f50c1fc9e4f201aee3757120e034fd509d954b7a7",
                "49ff776561382c4cb64cebcbb6aa82d04cd5c2b40395ecaf231bde8334ecfd95",
                "5d09efa8c6e7935b1cb0298fb8b6740be4593360eed5f129d59d98822a6cea37",
                "c57674e919e84d6b90f695fca58e7d29092bd70f7c97c6dfb021b9f87216a627",
                "1d8b144a364d03b6bf084f972dc59800b14a2c008bbd0992b5b82801020978f2",
                "bdddb3ca3367d876cffb3548dab695a29882cae2eb5ba7c847c3c71bd0150fa9",
                "c33aac8e6240e0c269b8e295ddb7b77e9c17bd310be65e28c0802136d086777b",
                "e5652d6f1ac879d3263e9c712d1af736eac048fe848a577d6afaea1428dc71db",
                "8c430edd7b584ae6e6aeaf7257aff0fd8fe25c30840e30ccfa1d95118ef0f665",
                "7367e9070f3d97a2e9a7bae19957bd707b00e31b6b0ebb9d7df4bd22e44c0608",
                "30a194b5b8288353255b52954ff5905ab2b126d9aa049e44599368c27d6cb033",
                "eae5182c2e1504ee4e3745f51488997b8f958f0209064f6f44a7e4de5226d559",
                "4d1ad9b42ac59a2d100a2f190df873a2e141552f33c923b4c927e8747c6f830c",
                "441a8bd3c5b371f6b3ab8103ebcfb18543aefc1beb6f776bbfd5344779f4aa23",
                "daaf395f69ec31dc046b491f0e5cc9c651dfc306bd8f2105be7bc7a4f4e21957",
                "f87278c771528a8740a92e2daefa76a3525f1fae17ec4362a2700988001d8600",
                "11d6ca3a95f79a0205bcf634cef373a8ea273ff0f4250eb8617d0fb92102a6aa",
                "09cf0c3ee2cad1ad96438c8e4dfd6ee0fcc85833c3103dd6c1600cd305bc2df4",
                "cda89b55ca237a3f9c3f82390074ff30825fc750130ebaf13d0cf7556d2c52a9",
                "8a4bad39ca5d44aaadeaef775c695e64d06e966acfcd552a14e2df6c63ae541f",
                "0fa88fc48263089685704506a21a03856ce65d4f06d54f3157eeabd62491cb4a",
                "c7bf029e79f9fbd4c77e2a3588790c710e611da8b2040c76a61507a8020758dc",
                "c30894ad018fef98e401cc54106e20d94bd544a8f0e1fd0500342d123f618aa8",
                "c91bdf6e0e03200693c9651e469aee6f91c98bea4127ae66312f4ae3ea155b67",
            ),
        },
        Vector {
            seed: "ef58538b8d23f87732ea63b02b4fa0f4873360e2841928cd60dd4cee8cc0d4c9",
            eseed: concat!(
                "22a96188d032675c8ac850933c7aff1533b94c834adbb69c6115bad4692d8619",
                "f90b0cdf8a7b9c264029ac185b70b83f2801f2f4b3f70c593ea3aeeb613a7f1b",
            ),
            ss: "953f7f4e8c5b5049bdc771d1dffada0dd961477d1a2ae0988baa7ea6898d893f",
            pk: concat!(
                "36244278824f77c621c660892c1c3886a9560caa52a97c461fd3958a598e749b",
                "bc8c7798ac8870bac7318ac2b863000ca3b0bdcbbc1ccfcb1a30875df9a76976",
                "763247083e646ccb2499a4e4f0c9f4125378ba3da1999538b86f99f2328332c1",
                "77d1192b849413e65510128973f679d23253850bb6c347ba7ca81b5e6ac4c574",
                "565c731740b3cd8c9756caac39fba7ac422acc60c6c1a645b94e3b6d21485eba",
                "d9c4fe5bb4ea0853670c5246652bff65ce8381cb473c40c1a0cd06b54dcec118",
                "72b351397c0eaf995bebdb6573000cbe2496600ba76c8cb023ec260f0571e3ec",
                "12a9c82d9db3c57b3a99e8701f78db4fabc1cc58b1bae02745073a81fc804543",
                "9ba3b885581a283a1ba64e103610aabb4ddfe9959e7241011b2638b56ba6a982",
                "ef610c514a57212555db9a98fb6bcf0e91660ec15dfa66a67408596e9ccb9748",
                "9a09a073ffd1a0a7ebbe71aa5ff793cb91964160703b4b6c9c5390842c2c905d",
                "4a9f88111fed57874ba9b03cf611e70486edf539767c7485189d5f1b08e32a27",
                "4dc24a39c918fd2a4dfa946a8c897486f2c974031b2804aabc81749db430b853",
                "11372a3b8478868200b40e043f7bf4a1c3a08b0771b431e342ee277410bca034",
                "a0c77086c8f702b3aed2b4108bbd3af471633373a1ac74b128b148d1b9412aa6",
                "6948cac6dc6614681fda02ca86675d2a756003c49c50f06e13c63ce4bc9f321c",
                "860b202ee931834930011f485c9af86b9f642f0c353ad305c66996b9a136b753",
                "973929495f0d8048db75529edcb4935904797ac66605490f66329c3bb36b8573",
                "a3e00f817b3082162ff106674d11b261baae0506cde7e69fdce93c6c7b59b9d4",
                "c759758acf287c2e4c4bfab5170a9236daf21bdb6005e92464ee8863f845cf37",
                "978ef19969264a516fe992c93b5f7ae7cb6718ac69257d630379e4aac6029cb9",
                "06f98d91c92d118c36a6d16115d4c8f16066078badd161a65ba51e0252bc358c",
                "67cd2c4beab2537e42956e08a39cfccf0cd875b5499ee952c83a162c68084f6d",
                "35cf92f71ec66baec74ab87e2243160b64df54afb5a07f78ec0f5c5759e5a432",
                "2bca2643425748a1a97c62108510c44fd9089c5a7c14e57b1b77532800013027",
                "cff91922d7c935b4202bb507aa47598a6a5a030117210d4c49c174700550ad6f",
                "82ad40e965598b86bc575448eb19d70380d465c1f870824c026d74a2522a799b",
                "7b122d06c83aa64c0974635897261433914fdfb14106c230425a83dc8467ad82",
                "34f086c72a47418be9cfb582b1dcfa3d9aa45299b79fff265356d8286a1ca2f3",
                "c2184b2a70d15289e5b202d03b64c735a867b1154c55533ff61d6c2962770118",
                "48143bc85a4b823040ae025a29293ab77747d85310078682e0ba0ac236548d90",
                "5a79494324574d417c7a3457bd5fb5253c4876679034ae844d0d05010fec722d",
                "b5621e3a67a2d58e2ff33b432269169b51f9dcc095b8406dc1864cf0aeb6a213",
                "2661a38d641877594b3c51892b9364d25c63d637140a2018d10931b0daa5a2f2",
                "a405017688c991e586b522f94b1132bc7e87a63246475816c8be9c62b731691a",
                "b912eb656ce2619225663364701a014b7d0337212caa2ecc731f34438289e0ca",
                "4590a276802d980056b5d0d316cae2ecfea6d86696a9f161aa90ad47eaad8cad",
                "d31ae3cbc1c013747dfee80fb35b5299f555dcc2b787ea4f6f16ffdf66952461",
            ),
            ct: concat!(
                "0d2e38cbf17a2e2e4e0c87a94ca1e7701ae1552e02509b3b00f9c82c39e3fd43",
                "5b05b91275f47abc9f1021429a26a346598cd6cd9efdc8adc1dbc35036d0290b",
                "f89733c835309202232f9bf652ea82f3d49280d6e8a3bd3135fb883445ab5b07",
                "4d949c5350c7c7d6ac59905bdbfce6639da8a9d4b390ecc1dd05522d2956f2d3",
                "7a05593996e5cb3fd8d5a9eb52417732e1ebf545588713b4760227115aab7ada",
                "178dadbca583b26cfedba2888a0c95b950bf07f750d7aa8103798aa3470a042c",
                "0105c6a037de2f9ebc396021b2ba2c16aba696fbac3454dc8e053b8fa55edd45",
                "215eeb57a1eab9106fb426b375a9b9e5c3419efc7610977e72640f9fd1b2ec33",
                "7de33c35e5a7581b2aae4d8ee86d2e0ebf82a1350714de50d2d788687878a196",
                "44ae4e3175e8d59dc90171b3badeff65aeaf600e5e5483a3595fdeb40cbafcbd",
                "040c29a2f6900533ae999d24f54dfcef748c30313ca447cdddfa57ad78eaa890",
                "e90f3f7bf8d116968a5713cc75fd0408f36364fa265c5617039304eaeac4cbee",
                "6fc49b9fe2276768cdbec2d73a507b543cc028dc1b154b7c2b0412254c466a94",
                "a8d6ea3a47e1743469bd45c08f54cf965884be3696e961741ede16e3b1bc4feb",
                "93faaef31d911dc0cb3fa90bcda991959a9d2cbc817a5564c5c01177a59e9577",
                "589ea344d60cf5b0aa39f31863febd54603ca87ad2363c766642a3f52557bcd9",
                "e4c05a87665842ba336b83156a677030f0bad531a8387a1486a599caa748fcea",
                "7bdc1eb63f3cdb97173551ab7c1c36b69acbbdb2ff7a1e7bc70439632ddc67b9",
                "7f3da1f59b3c1588515957cb8a2f86ab635ce0a78b7cdf24eac3445e8fc8b79b",
                "a04da9e903f49a7d912c197a84b4cfabc779b97d24788419bcf58035db99717e",
                "db9fd1c1df8c4005f700eabba528ddfcbaeda6dd30754f795948a34c9319ab65",
                "3524b19931c7900c4167988af52292fe902e746b524d20ceffb4339e8f5535f4",
                "1cf35f0f8ea8b4a7b949c5d2381116b146e9b913a83a3fa1c65ff9468c835fe4",
                "114554a6c66a80e1c9a6bb064b380be3c95e5595ec979bf1c85aa938938e3f10",
                "e72b0c87811969e8ab0d83de0b0604c4016ac3a015e19514089271bdc6ebf2ec",
                "56fab6018e44de749b4c36cc235e370da8466dbdc253542a2d704eb3316fd70d",
                "5d238cb7eaaf05966d973f62c7ef43b9a806f4ed213ac8099ea15d61a9024441",
                "60883f6bf441a3e1469945c9b79489ea18390f1ebc83caca10bdb8f2429877b5",
                "2bd44c94a228ef91c392ef5398c5c83982701318ccedab92f7a279c4fddebaa7",
                "fe5e986c48b7d8135b3fe4cd15be2004ce73ff86b1e55f8ecd6ba5b8114315f8",
                "e716ef3ab0a64564a4644651166ebd68b1f783e2e443dbccadfe189368647629",
                "f1a12215840b7f1d026de2f665c2eb023ff51a6df160912811ee03444ae4227f",
                "b941dc9ec4f31b445006fd384de5e60e0a5061b50cb1202f863090fc05eb814e",
                "2d42a03586c0b56f533847ac7b8184ce9690bc8dece32a88ca934f541d4cc520",
                "fa64de6b6e1c3c8e03db5971a445992227c825590688d203523f527161137334",
            ),
        },
    ];
}
