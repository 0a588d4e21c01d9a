//! Encrypted, authenticated, streaming bundles addressed to X-Wing recipients: the file
//! format of a gallery hand-over (`nanofs gallery export … --recipient PUB -o FILE`,
//! `nanofs gallery import VOLUME FILE --identity KEY`).
//!
//! The design follows age v1. A fresh random file key is wrapped to every recipient
//! ([`RecipientWrap`], X-Wing), a MAC under that key authenticates the whole header, and the
//! payload is cut into 64 KiB segments sealed with the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár, CRYPTO 2015): each segment's ChaCha20-Poly1305 nonce is its
//! index plus a last-segment flag, so reordered, dropped, duplicated or appended segments
//! and a stream cut short all fail. [`EncryptWriter`] and [`DecryptReader`] each hold one
//! segment in memory, whatever the size of the payload.
//!
//! # Byte format, version 1
//!
//! Integers are unsigned big-endian; `||` is concatenation.
//!
//! ```text
//! bundle  = header || payload
//!
//! header  = magic || count || stanza × count || salt || mac
//!   magic      17 bytes   "nanofs-bundle/v1\n"
//!   count       2 bytes   u16, number of stanzas, 1 ..= 1024
//!   stanza   1214 bytes   three fields, each a u16 length then that many bytes:
//!                           0x0010 || fingerprint   Recipient::fingerprint: 16 lowercase hex ASCII
//!                           0x0460 || ciphertext    RecipientWrap::ciphertext, the 1120-byte X-Wing
//!                                                   ciphertext
//!                           0x0048 || sealed key    RecipientWrap::sealed_key, 72 bytes:
//!                                                   XChaCha20-Poly1305 nonce 24 | file key 32 | tag 16
//!   salt       32 bytes   random
//!   mac        32 bytes   BLAKE2b-256(key = K_mac, msg = every header byte before mac)
//!
//! payload = segment × n, n >= 1; every segment but the last holds exactly 65536 plaintext
//!           bytes, the last holds fewer (0 ..= 65535; an empty payload is one empty segment)
//! segment = len || len_tag || ciphertext || tag
//!   len         4 bytes   u32, plaintext length of this segment
//!   len_tag     8 bytes   BLAKE2b with 8-byte output (key = K_len, msg = u64 index || u32 len)
//!   ciphertext  len bytes, tag 16 bytes:
//!                         ChaCha20-Poly1305(K_payload, nonce(index, last), aad = "", plaintext)
//!   nonce(i, last) = 0x000000 || u64 i || (0x01 if last, else 0x00)
//!                  = an 11-byte counter and a last-segment flag byte, as in age
//! ```
//!
//! Keys, with `F` the 32-byte file key drawn fresh for each bundle:
//!
//! ```text
//! stanza    = RecipientWrap::wrap(F, recipient, context = "nanofs/v1/bundle")
//! K_mac     = BLAKE2b-256(key = F, msg = "nanofs/v1/bundle/header-mac")
//! K_payload = BLAKE2b-256(key = F, msg = "nanofs/v1/bundle/payload" || salt)
//! K_len     = BLAKE2b-256(key = F, msg = "nanofs/v1/bundle/length" || salt)
//! ```
//!
//! `F` is fresh for every bundle, so `K_payload` is too, and the counter nonces never
//! repeat under one key.
//!
//! # Why it is built this way
//!
//! - A payload whose length is a multiple of 64 KiB ends with an empty last segment, so a
//!   segment is the last one exactly when it is shorter than 64 KiB. The nonce flag
//!   authenticates that fact, as STREAM requires.
//! - `len` and `len_tag` are not in age. Without them a cut in the middle of the final
//!   segment looks just like a changed byte (the tag simply fails to verify). With them,
//!   a length is checked before its body is read, so end of input inside an authentic
//!   segment is certainly [`StreamError::Truncated`] and a changed byte is certainly
//!   [`StreamError::Tampered`]. Security does not depend on them: the AEAD authenticates
//!   the ciphertext with its length, and `len_tag` only makes the error precise and bounds
//!   the read.
//! - Unwrapping tries the stanzas carrying the identity's fingerprint first, then all the
//!   others: the fingerprint is only a hint. If none opens, the error is
//!   [`StreamError::HeaderTampered`] when a stanza carried the fingerprint, otherwise
//!   [`StreamError::NotForThisIdentity`]. The header MAC is checked before any payload is read.
//! - A header is parsed before it can be authenticated, so every count and length in it is
//!   checked against the format first. A hostile header makes a reader hold at most
//!   about 1.2 MiB (1024 stanzas). A malformed header is [`StreamError::HeaderTampered`].
//!
//! # What it does not protect
//!
//! - The fingerprints are in the clear: anyone holding a bundle learns which known
//!   recipients it is addressed to.
//! - There is no sender authentication. Anyone with a recipient can make a bundle for it,
//!   and every recipient of a bundle holds its file key. So one recipient could write new
//!   content under the same header that the other recipients would accept.
//! - A reader yields each segment only after it authenticates, but the bundle is complete
//!   only when `read` returns 0. On any error, the consumer must discard everything read
//!   before it, for example by importing into a staging area that is committed only at the end.

use super::aead::OVERHEAD as WRAP_OVERHEAD;
use super::hybrid::{Identity, Recipient, RecipientWrap};
use super::keys::{keyed_hash, random_bytes, DataKey};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use std::fmt;
use std::io::{self, Read, Write};
use x_wing::CIPHERTEXT_SIZE;
use zeroize::Zeroizing;

/// First bytes of every version-1 bundle.
pub const MAGIC: &[u8; 17] = b"nanofs-bundle/v1\n";
/// Plaintext bytes in every segment but the last (the last holds fewer).
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// Most recipients one bundle may be addressed to; this bounds the header a reader must hold.
pub const MAX_RECIPIENTS: usize = 1024;

/// The magic up to the version digits. A file that starts like this but differs afterwards
/// comes from another format version, not from another program.
const MAGIC_FAMILY: &[u8] = b"nanofs-bundle/v";
/// `RecipientWrap` context: binds a stanza to this format.
const WRAP_CONTEXT: &[u8] = b"nanofs/v1/bundle";
const HEADER_MAC_LABEL: &[u8] = b"nanofs/v1/bundle/header-mac";
const PAYLOAD_LABEL: &[u8] = b"nanofs/v1/bundle/payload";
const LENGTH_LABEL: &[u8] = b"nanofs/v1/bundle/length";

const FINGERPRINT_LEN: usize = 16;
const SEALED_KEY_LEN: usize = 32 + WRAP_OVERHEAD;
const STANZA_LEN: usize = 3 * 2 + FINGERPRINT_LEN + CIPHERTEXT_SIZE + SEALED_KEY_LEN;
const SALT_LEN: usize = 32;
const MAC_LEN: usize = 32;
const LENGTH_TAG_LEN: usize = 8;
/// `len || len_tag` in front of every segment.
const SEGMENT_HEADER_LEN: usize = 4 + LENGTH_TAG_LEN;
/// Poly1305 tag after every segment.
const TAG_LEN: usize = 16;

/// Header bytes of a bundle with `recipients` stanzas.
const fn header_len(recipients: usize) -> usize {
    MAGIC.len() + 2 + recipients * STANZA_LEN + SALT_LEN + MAC_LEN
}

/// Why a bundle could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The input does not start with the bundle magic.
    #[error("not a nanofs bundle (it does not start with \"nanofs-bundle/v1\")")]
    NotABundle,
    /// A bundle of a format version this build does not know.
    #[error("this bundle uses a newer format version than this nanofs supports; upgrade nanofs to import it")]
    UnsupportedVersion,
    /// [`EncryptWriter::new`] was given no recipient.
    #[error("a bundle needs at least one recipient")]
    NoRecipients,
    /// [`EncryptWriter::new`] was given more than [`MAX_RECIPIENTS`] recipients.
    #[error("a bundle can be addressed to at most {max} recipients, not {count}")]
    TooManyRecipients {
        /// Recipients given.
        count: usize,
        /// [`MAX_RECIPIENTS`].
        max: usize,
    },
    /// No stanza opens with the identity, and none carries its fingerprint.
    #[error("this bundle is not addressed to this identity (recipients: {})", .recipients.join(", "))]
    NotForThisIdentity {
        /// Fingerprints of the stanzas in the header, in order.
        recipients: Vec<String>,
    },
    /// The header is malformed, the identity's stanza does not open, or the header MAC fails.
    #[error("the bundle header is damaged or has been tampered with")]
    HeaderTampered,
    /// The input ends before the last segment: an incomplete download or copy.
    #[error("the bundle is truncated: it ends before its final segment (incomplete download or copy?)")]
    Truncated,
    /// A segment's length or contents failed authentication.
    #[error("the bundle is damaged or has been tampered with (segment {segment} fails authentication)")]
    Tampered {
        /// Index of the failing segment, from 0; segment `i` holds plaintext from byte `i × 65536`.
        segment: u64,
    },
    /// More bytes follow the last segment.
    #[error("the bundle has unexpected data after its final segment")]
    TrailingData,
    /// Wrapping the file key to a recipient failed.
    #[error("could not wrap the bundle key to a recipient")]
    Wrap(#[from] super::Error),
    /// Reading or writing the underlying stream failed.
    #[error(transparent)]
    Io(io::Error),
}

impl StreamError {
    /// A copy for a reader that keeps returning the error that stopped it. `io::Error` is
    /// not `Clone`, so an `Io` copy keeps only the kind and the message.
    fn duplicate(&self) -> Self {
        match self {
            Self::NotABundle => Self::NotABundle,
            Self::UnsupportedVersion => Self::UnsupportedVersion,
            Self::NoRecipients => Self::NoRecipients,
            Self::TooManyRecipients { count, max } => Self::TooManyRecipients { count: *count, max: *max },
            Self::NotForThisIdentity { recipients } => Self::NotForThisIdentity { recipients: recipients.clone() },
            Self::HeaderTampered => Self::HeaderTampered,
            Self::Truncated => Self::Truncated,
            Self::Tampered { segment } => Self::Tampered { segment: *segment },
            Self::TrailingData => Self::TrailingData,
            Self::Wrap(e) => Self::Wrap(match e {
                super::Error::Auth => super::Error::Auth,
                super::Error::Malformed(what) => super::Error::Malformed(what),
                super::Error::Kdf(what) => super::Error::Kdf(what.clone()),
            }),
            Self::Io(e) => Self::Io(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl From<io::Error> for StreamError {
    /// Recovers the `StreamError` inside an `io::Error` made by [`DecryptReader`]'s `Read`
    /// implementation (so `io::copy(&mut reader, …)?` gives back `Tampered`, `Truncated`, …).
    /// Any other `io::Error` becomes [`StreamError::Io`].
    fn from(err: io::Error) -> Self {
        if !err.get_ref().is_some_and(|inner| inner.is::<StreamError>()) {
            return Self::Io(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|inner| inner.downcast::<StreamError>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Self::Io(io::Error::new(kind, other)),
            None => Self::Io(kind.into()),
        }
    }
}

impl From<StreamError> for io::Error {
    /// `Io` errors come back unchanged. `Truncated` becomes kind `UnexpectedEof` and every
    /// other error `InvalidData`, each with the `StreamError` as the inner error.
    fn from(err: StreamError) -> Self {
        match err {
            StreamError::Io(e) => e,
            StreamError::Truncated => io::Error::new(io::ErrorKind::UnexpectedEof, err),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// The keys of the payload, derived from the file key and the salt.
struct PayloadKeys {
    /// Seals segments (zeroizes its key on drop).
    cipher: ChaCha20Poly1305,
    /// Keys `len_tag`.
    length_key: Zeroizing<[u8; 32]>,
}

impl PayloadKeys {
    fn derive(file_key: &DataKey, salt: &[u8; SALT_LEN]) -> Self {
        let payload_key = keyed_hash(file_key.expose(), &[PAYLOAD_LABEL, salt].concat());
        let length_key = keyed_hash(file_key.expose(), &[LENGTH_LABEL, salt].concat());
        Self { cipher: ChaCha20Poly1305::new(Key::from_slice(payload_key.as_ref())), length_key }
    }

    /// `len_tag` of segment `index` holding `len` plaintext bytes.
    fn length_tag(&self, index: u64, len: u32) -> blake2b_simd::Hash {
        let mut msg = [0u8; 12];
        msg[..8].copy_from_slice(&index.to_be_bytes());
        msg[8..].copy_from_slice(&len.to_be_bytes());
        blake2b_simd::Params::new().hash_length(LENGTH_TAG_LEN).key(self.length_key.as_ref()).hash(&msg)
    }
}

/// STREAM nonce: 11-byte big-endian segment counter, then the last-segment flag.
fn segment_nonce(index: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce.into()
}

/// `BLAKE2b-256(key = K_mac, msg = header)`; the comparison of [`blake2b_simd::Hash`] is
/// constant-time.
fn header_mac(file_key: &DataKey, header: &[u8]) -> blake2b_simd::Hash {
    let mac_key = keyed_hash(file_key.expose(), HEADER_MAC_LABEL);
    blake2b_simd::Params::new().hash_length(MAC_LEN).key(mac_key.as_ref()).hash(header)
}

/// Appends a u16-length-prefixed field to a header being written.
fn put_field(header: &mut Vec<u8>, bytes: &[u8]) {
    // The fields are fixed sizes of at most 1120 bytes, made here, not read from input.
    let len = u16::try_from(bytes.len()).expect("stanza fields are far smaller than 64 KiB");
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(bytes);
}

/// Writes a bundle: the header at [`EncryptWriter::new`], then the payload one sealed
/// segment at a time, and the final segment at [`EncryptWriter::finish`].
///
/// `flush` flushes only the inner writer: up to one segment of plaintext stays buffered
/// until the segment fills or the bundle is finished. A writer dropped without `finish`
/// leaves a bundle that readers refuse as [`StreamError::Truncated`].
pub struct EncryptWriter<W: Write> {
    inner: W,
    keys: PayloadKeys,
    /// `len || len_tag || plaintext (then ciphertext) || tag` of the segment being filled,
    /// so that each segment is one `write_all`.
    buf: Zeroizing<Vec<u8>>,
    /// Plaintext bytes in `buf`.
    filled: usize,
    /// Index of the segment being filled.
    index: u64,
    /// Set when a segment could not be written: the output is unusable from then on.
    poisoned: bool,
}

impl<W: Write> EncryptWriter<W> {
    /// Writes the header of a new bundle addressed to `recipients` and returns the writer
    /// for its payload.
    ///
    /// # Errors
    /// [`StreamError::NoRecipients`] or [`StreamError::TooManyRecipients`] for a bad recipient
    /// list, [`StreamError::Wrap`] if wrapping the file key fails (no recipient type does
    /// today), [`StreamError::Io`] if writing the header fails.
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn new(mut inner: W, recipients: &[Recipient]) -> Result<Self, StreamError> {
        if recipients.is_empty() {
            return Err(StreamError::NoRecipients);
        }
        let too_many = StreamError::TooManyRecipients { count: recipients.len(), max: MAX_RECIPIENTS };
        if recipients.len() > MAX_RECIPIENTS {
            return Err(too_many);
        }
        let count = u16::try_from(recipients.len()).map_err(|_| too_many)?;

        let file_key = DataKey::generate();
        let mut salt = [0u8; SALT_LEN];
        random_bytes(&mut salt);
        let mut header = Vec::with_capacity(header_len(recipients.len()));
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&count.to_be_bytes());
        for recipient in recipients {
            let wrap = RecipientWrap::wrap(&file_key, recipient, WRAP_CONTEXT)?;
            put_field(&mut header, recipient.fingerprint().as_bytes());
            put_field(&mut header, &wrap.ciphertext);
            put_field(&mut header, &wrap.sealed_key);
        }
        header.extend_from_slice(&salt);
        let mac = header_mac(&file_key, &header);
        header.extend_from_slice(mac.as_bytes());
        debug_assert_eq!(header.len(), header_len(recipients.len()), "stanza sizes drifted from the format");
        inner.write_all(&header)?;

        Ok(Self {
            inner,
            keys: PayloadKeys::derive(&file_key, &salt),
            buf: Zeroizing::new(vec![0u8; SEGMENT_HEADER_LEN + SEGMENT_SIZE + TAG_LEN]),
            filled: 0,
            index: 0,
            poisoned: false,
        })
    }

    /// Writes the last segment, flushes and returns the inner writer. Without this call the
    /// bundle is incomplete.
    ///
    /// # Errors
    /// [`StreamError::Io`] if writing fails, now or in an earlier `write`.
    pub fn finish(mut self) -> Result<W, StreamError> {
        self.check_poisoned()?;
        // A full buffer is never the last segment: the last one is always shorter.
        if self.filled == SEGMENT_SIZE {
            self.seal_segment(false)?;
        }
        self.seal_segment(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn check_poisoned(&self) -> io::Result<()> {
        if self.poisoned {
            return Err(io::Error::other("an earlier write of this bundle failed; its output is incomplete"));
        }
        Ok(())
    }

    /// Seals the buffered plaintext as segment `self.index` and writes it.
    fn seal_segment(&mut self, last: bool) -> io::Result<()> {
        let len = self.filled;
        debug_assert!(if last { len < SEGMENT_SIZE } else { len == SEGMENT_SIZE });
        // Cannot happen (2^64 segments), but a wrapped counter would reuse nonces.
        let Some(next) = self.index.checked_add(1) else {
            self.poisoned = true;
            return Err(io::Error::other("bundle too large: segment counter exhausted"));
        };
        // Poisoned from here until the write succeeds: the plaintext is about to become
        // ciphertext, so a failed segment cannot be retried.
        self.poisoned = true;
        let len32 = u32::try_from(len).expect("a segment holds at most 64 KiB");
        let (head, rest) = self.buf.split_at_mut(SEGMENT_HEADER_LEN);
        head[..4].copy_from_slice(&len32.to_be_bytes());
        head[4..].copy_from_slice(self.keys.length_tag(self.index, len32).as_bytes());
        let (body, tail) = rest.split_at_mut(len);
        let tag = self
            .keys
            .cipher
            .encrypt_in_place_detached(&segment_nonce(self.index, last), b"", body)
            .map_err(|_| io::Error::other("ChaCha20-Poly1305 refused a segment"))?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        self.inner.write_all(&self.buf[..SEGMENT_HEADER_LEN + len + TAG_LEN])?;
        self.poisoned = false;
        self.filled = 0;
        self.index = next;
        Ok(())
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    /// Buffers up to one segment of `data`; seals and writes a segment once it is full and
    /// more data follows.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.check_poisoned()?;
        // Sealed only now that more data follows, so `Err` means none of `data` was taken.
        if self.filled == SEGMENT_SIZE {
            self.seal_segment(false)?;
        }
        let n = data.len().min(SEGMENT_SIZE - self.filled);
        let at = SEGMENT_HEADER_LEN + self.filled;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        Ok(n)
    }

    /// Flushes the inner writer; buffered plaintext stays until its segment is sealed.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> fmt::Debug for EncryptWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptWriter")
            .field("segment", &self.index)
            .field("buffered", &self.filled)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// One stanza of a header, as read.
struct Stanza {
    fingerprint: String,
    wrap: RecipientWrap,
}

/// A header as read, not yet authenticated.
struct Header {
    stanzas: Vec<Stanza>,
    salt: [u8; SALT_LEN],
    mac: [u8; MAC_LEN],
    /// Every header byte before the MAC, which the MAC covers.
    signed: Vec<u8>,
}

/// Reads exactly `buf.len()` bytes; end of input is [`StreamError::Truncated`].
fn read_exact_or_truncated<R: Read>(inner: &mut R, buf: &mut [u8]) -> Result<(), StreamError> {
    inner.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => StreamError::Truncated,
        _ => StreamError::from(e),
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to<R: Read>(inner: &mut R, buf: &mut [u8]) -> Result<usize, StreamError> {
    let mut n = 0;
    while n < buf.len() {
        match inner.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Classifies the first bytes of the input (at most `MAGIC.len()`).
fn check_magic(start: &[u8]) -> Result<(), StreamError> {
    let family = start.len().min(MAGIC_FAMILY.len());
    if start.is_empty() || start[..family] != MAGIC_FAMILY[..family] {
        return Err(StreamError::NotABundle);
    }
    if start != &MAGIC[..start.len()] {
        return Err(StreamError::UnsupportedVersion);
    }
    if start.len() < MAGIC.len() {
        return Err(StreamError::Truncated);
    }
    Ok(())
}

impl Header {
    /// Parses a header. Every length is checked against the format before anything is
    /// allocated or read for it, so a hostile header costs at most `header_len(1024)` bytes.
    fn read<R: Read>(inner: &mut R) -> Result<Self, StreamError> {
        let mut magic = [0u8; MAGIC.len()];
        let n = read_up_to(inner, &mut magic)?;
        check_magic(&magic[..n])?;

        let mut count_bytes = [0u8; 2];
        read_exact_or_truncated(inner, &mut count_bytes)?;
        let count = usize::from(u16::from_be_bytes(count_bytes));
        if count == 0 || count > MAX_RECIPIENTS {
            return Err(StreamError::HeaderTampered);
        }
        let mut signed = Vec::with_capacity(header_len(count) - MAC_LEN);
        signed.extend_from_slice(MAGIC);
        signed.extend_from_slice(&count_bytes);

        let mut stanzas = Vec::with_capacity(count);
        for _ in 0..count {
            let fingerprint = read_field(inner, &mut signed, FINGERPRINT_LEN)?;
            // Checked so the fingerprint can be shown to the user (it is untrusted text).
            if !fingerprint.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
                return Err(StreamError::HeaderTampered);
            }
            let fingerprint = String::from_utf8(fingerprint).map_err(|_| StreamError::HeaderTampered)?;
            let ciphertext = read_field(inner, &mut signed, CIPHERTEXT_SIZE)?;
            let sealed_key = read_field(inner, &mut signed, SEALED_KEY_LEN)?;
            stanzas.push(Stanza { fingerprint, wrap: RecipientWrap { ciphertext, sealed_key } });
        }

        let mut salt = [0u8; SALT_LEN];
        read_exact_or_truncated(inner, &mut salt)?;
        signed.extend_from_slice(&salt);
        let mut mac = [0u8; MAC_LEN];
        read_exact_or_truncated(inner, &mut mac)?;
        Ok(Self { stanzas, salt, mac, signed })
    }

    /// The file key, from the first stanza that opens with `identity`: those carrying its
    /// fingerprint first, then the others (a fingerprint is only a hint).
    fn unwrap_file_key(&self, identity: &Identity) -> Result<DataKey, StreamError> {
        let mine = identity.recipient().fingerprint();
        let (matching, others): (Vec<&Stanza>, Vec<&Stanza>) = self.stanzas.iter().partition(|s| s.fingerprint == mine);
        for stanza in matching.iter().chain(&others) {
            if let Ok(key) = stanza.wrap.unwrap(identity, WRAP_CONTEXT) {
                return Ok(key);
            }
        }
        if matching.is_empty() {
            let recipients = self.stanzas.iter().map(|s| s.fingerprint.clone()).collect();
            Err(StreamError::NotForThisIdentity { recipients })
        } else {
            // Addressed to this identity, yet the stanza does not open: it was changed.
            Err(StreamError::HeaderTampered)
        }
    }
}

/// Reads one u16-length-prefixed header field that must be `expected` bytes long,
/// appending prefix and field to `signed`.
fn read_field<R: Read>(inner: &mut R, signed: &mut Vec<u8>, expected: usize) -> Result<Vec<u8>, StreamError> {
    let mut len = [0u8; 2];
    read_exact_or_truncated(inner, &mut len)?;
    if usize::from(u16::from_be_bytes(len)) != expected {
        return Err(StreamError::HeaderTampered);
    }
    let mut field = vec![0u8; expected];
    read_exact_or_truncated(inner, &mut field)?;
    signed.extend_from_slice(&len);
    signed.extend_from_slice(&field);
    Ok(field)
}

/// Where a [`DecryptReader`] stands.
enum ReadState {
    /// More segments follow.
    Reading,
    /// The last segment authenticated and the input ended there.
    Finished,
    /// An error stopped the stream; every later read returns it again.
    Failed(StreamError),
}

/// Reads a bundle: the header is read and authenticated by [`DecryptReader::open`], then
/// `read` yields the plaintext of each segment once that segment has authenticated.
///
/// Errors from `read` are `io::Error`s carrying a [`StreamError`] (convert back with
/// `StreamError::from`). [`StreamError::Truncated`] has kind `UnexpectedEof`.
/// [`StreamError::Tampered`] and [`StreamError::TrailingData`] have kind `InvalidData`.
/// Failures of the inner reader come back unchanged. After an error, every later `read`
/// fails too. The inner reader is expected to block: a `WouldBlock` error ends the stream.
pub struct DecryptReader<R: Read> {
    inner: R,
    keys: PayloadKeys,
    /// Ciphertext then, once authenticated, plaintext of the current segment, plus room for its tag.
    buf: Zeroizing<Vec<u8>>,
    /// Plaintext not yet returned: `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// Index of the next segment to read.
    index: u64,
    state: ReadState,
}

impl<R: Read> DecryptReader<R> {
    /// Reads the header of a bundle, unwraps its file key with `identity` and checks the
    /// header MAC. No payload is read yet.
    ///
    /// # Errors
    /// [`StreamError::NotABundle`], [`StreamError::UnsupportedVersion`],
    /// [`StreamError::Truncated`] (the input ends inside the header),
    /// [`StreamError::NotForThisIdentity`], [`StreamError::HeaderTampered`], or
    /// [`StreamError::Io`].
    pub fn open(mut inner: R, identity: &Identity) -> Result<Self, StreamError> {
        let header = Header::read(&mut inner)?;
        let file_key = header.unwrap_file_key(identity)?;
        if header_mac(&file_key, &header.signed) != header.mac[..] {
            return Err(StreamError::HeaderTampered);
        }
        Ok(Self {
            inner,
            keys: PayloadKeys::derive(&file_key, &header.salt),
            buf: Zeroizing::new(vec![0u8; SEGMENT_SIZE + TAG_LEN]),
            pos: 0,
            end: 0,
            index: 0,
            state: ReadState::Reading,
        })
    }

    /// Reads, authenticates and decrypts the next segment into `buf`.
    fn next_segment(&mut self) -> Result<(), StreamError> {
        let index = self.index;
        let tampered = || StreamError::Tampered { segment: index };
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        read_exact_or_truncated(&mut self.inner, &mut head)?;
        let len32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let len = usize::try_from(len32).map_err(|_| tampered())?;
        // The tag is checked before `len` sizes a read.
        if len > SEGMENT_SIZE || self.keys.length_tag(index, len32) != head[4..] {
            return Err(tampered());
        }
        let last = len < SEGMENT_SIZE;
        let sealed = &mut self.buf[..len + TAG_LEN];
        // `len` is authentic, so end of input here is a cut, not a changed length.
        read_exact_or_truncated(&mut self.inner, sealed)?;
        let (body, tag) = sealed.split_at_mut(len);
        let tag = Tag::clone_from_slice(tag);
        // Poly1305 is verified before decrypting: on failure `body` stays ciphertext.
        self.keys
            .cipher
            .decrypt_in_place_detached(&segment_nonce(index, last), b"", body, &tag)
            .map_err(|_| tampered())?;
        if last {
            // Checked before the last plaintext is handed out.
            let mut probe = [0u8; 1];
            if read_up_to(&mut self.inner, &mut probe)? != 0 {
                return Err(StreamError::TrailingData);
            }
            self.state = ReadState::Finished;
        } else {
            // A non-last segment at index u64::MAX can have no successor.
            self.index = index.checked_add(1).ok_or_else(tampered)?;
        }
        self.pos = 0;
        self.end = len;
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    /// Copies authenticated plaintext into `out`; reads and authenticates the next segment
    /// when the current one is used up. Returns 0 only after the last segment.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.end {
                let n = out.len().min(self.end - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                ReadState::Reading => {}
                ReadState::Finished => return Ok(0),
                ReadState::Failed(err) => return Err(err.duplicate().into()),
            }
            if let Err(err) = self.next_segment() {
                self.state = ReadState::Failed(err.duplicate());
                return Err(err.into());
            }
        }
    }
}

impl<R: Read> fmt::Debug for DecryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ReadState::Reading => "reading",
            ReadState::Finished => "finished",
            ReadState::Failed(_) => "failed",
        };
        f.debug_struct("DecryptReader")
            .field("segment", &self.index)
            .field("buffered", &(self.end - self.pos))
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Wire size of a full (non-last) segment.
    const FULL: usize = SEGMENT_HEADER_LEN + SEGMENT_SIZE + TAG_LEN;

    /// Deterministic, non-repeating test data (xorshift64*).
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// Seals `plain` to `recipients`, writing it in pieces of the sizes in `writes` (cycled).
    fn seal_with(plain: &[u8], recipients: &[Recipient], writes: &[usize]) -> Vec<u8> {
        let mut w = EncryptWriter::new(Vec::new(), recipients).unwrap();
        let mut rest = plain;
        for size in writes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            w.write_all(piece).unwrap();
            rest = tail;
        }
        w.finish().unwrap()
    }

    fn seal(plain: &[u8], recipients: &[Recipient]) -> Vec<u8> {
        seal_with(plain, recipients, &[usize::MAX])
    }

    /// Opens and reads a whole bundle in reads of the sizes in `reads` (cycled).
    fn open_with(bundle: &[u8], id: &Identity, reads: &[usize]) -> Result<Vec<u8>, StreamError> {
        let mut r = DecryptReader::open(bundle, id)?;
        let mut out = Vec::new();
        for size in reads.iter().cycle() {
            let mut buf = vec![0u8; *size];
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
        unreachable!("reads is not empty")
    }

    fn open(bundle: &[u8], id: &Identity) -> Result<Vec<u8>, StreamError> {
        let mut r = DecryptReader::open(bundle, id)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Plaintext a reader yields before it fails, and the error.
    fn read_until_error(bundle: &[u8], id: &Identity) -> (Vec<u8>, StreamError) {
        let mut r = DecryptReader::open(bundle, id).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 10_000];
        loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("bundle read to the end without an error"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, e.into()),
            }
        }
    }

    /// Offset of segment `i` in a bundle with `recipients` stanzas (all earlier segments full).
    fn segment_at(recipients: usize, i: usize) -> usize {
        header_len(recipients) + i * FULL
    }

    #[test]
    fn round_trip_sizes_with_odd_writes_and_reads() {
        let id = Identity::generate();
        let mut random = [0u8; 4];
        random_bytes(&mut random);
        let random_size = u32::from_le_bytes(random) as usize % (1 << 20) + 1;
        for size in [0, 1, 65535, 65536, 65537, 3 * 65536, random_size] {
            let plain = data(size, size as u64);
            let bundle = seal_with(&plain, &[id.recipient()], &[1, 7, 4093, 65537, 100_003, 3]);
            let full = size / SEGMENT_SIZE;
            let last = size % SEGMENT_SIZE;
            assert_eq!(bundle.len(), header_len(1) + full * FULL + SEGMENT_HEADER_LEN + last + TAG_LEN, "size {size}");
            assert_eq!(open_with(&bundle, &id, &[3, 65539, 1, 8191, 65536]).unwrap(), plain, "size {size}");
            assert_eq!(open(&bundle, &id).unwrap(), plain, "size {size}");
        }
    }

    #[test]
    fn empty_payload_is_one_empty_last_segment() {
        let id = Identity::generate();
        let bundle = seal(b"", &[id.recipient()]);
        assert_eq!(bundle.len(), header_len(1) + SEGMENT_HEADER_LEN + TAG_LEN);
        assert_eq!(&bundle[..MAGIC.len()], MAGIC);
        assert_eq!(&bundle[header_len(1)..header_len(1) + 4], &[0, 0, 0, 0]);
        assert!(open(&bundle, &id).unwrap().is_empty());
    }

    #[test]
    fn same_input_seals_differently() {
        let id = Identity::generate();
        let a = seal(b"same", &[id.recipient()]);
        let b = seal(b"same", &[id.recipient()]);
        assert_ne!(a, b);
        assert_ne!(a[header_len(1)..], b[header_len(1)..]);
    }

    #[test]
    fn header_layout_matches_the_documented_format() {
        let id = Identity::generate();
        let bundle = seal(b"x", &[id.recipient()]);
        let s = MAGIC.len() + 2;
        assert_eq!(&bundle[MAGIC.len()..s], &[0, 1]);
        assert_eq!(&bundle[s..s + 2], &[0x00, 0x10]);
        assert_eq!(&bundle[s + 2..s + 18], id.recipient().fingerprint().as_bytes());
        assert_eq!(&bundle[s + 18..s + 20], &[0x04, 0x60]);
        assert_eq!(&bundle[s + 1140..s + 1142], &[0x00, 0x48]);
        assert_eq!(s + 1142 + 72, s + STANZA_LEN);
    }

    #[test]
    fn every_recipient_opens_and_others_are_refused() {
        let (alice, bob, eve) = (Identity::generate(), Identity::generate(), Identity::generate());
        let plain = data(150_000, 1);
        let bundle = seal(&plain, &[alice.recipient(), bob.recipient()]);
        assert_eq!(open(&bundle, &alice).unwrap(), plain);
        assert_eq!(open(&bundle, &bob).unwrap(), plain);
        let (fa, fb) = (alice.recipient().fingerprint(), bob.recipient().fingerprint());
        match DecryptReader::open(&bundle[..], &eve) {
            Err(err @ StreamError::NotForThisIdentity { .. }) => {
                assert_eq!(
                    err.to_string(),
                    format!("this bundle is not addressed to this identity (recipients: {fa}, {fb})")
                );
            }
            other => panic!("expected NotForThisIdentity, got {other:?}"),
        }
    }

    #[test]
    fn recipient_lists_are_checked() {
        assert!(matches!(EncryptWriter::new(Vec::new(), &[]), Err(StreamError::NoRecipients)));
        let many = vec![Identity::generate().recipient(); MAX_RECIPIENTS + 1];
        let err = EncryptWriter::new(Vec::new(), &many).unwrap_err();
        assert!(matches!(err, StreamError::TooManyRecipients { count: 1025, max: 1024 }), "{err:?}");
    }

    #[test]
    fn every_header_bit_flip_is_refused() {
        /// The error a flip at `i` must give.
        fn check(err: &StreamError, i: usize) {
            if i < MAGIC_FAMILY.len() {
                assert!(matches!(err, StreamError::NotABundle), "byte {i}: {err:?}");
            } else if i < MAGIC.len() {
                assert!(matches!(err, StreamError::UnsupportedVersion), "byte {i}: {err:?}");
            } else {
                assert!(matches!(err, StreamError::HeaderTampered), "byte {i}: {err:?}");
            }
        }
        // Every header byte of a one-recipient bundle (each open costs an X-Wing
        // decapsulation, slow in debug builds; the project tests in release).
        let id = Identity::generate();
        let bundle = seal(&data(1000, 2), &[id.recipient()]);
        for i in 0..header_len(1) {
            let mut bad = bundle.clone();
            bad[i] ^= 1 << (i % 8);
            check(&DecryptReader::open(&bad[..], &id).unwrap_err(), i);
        }
        // With two recipients, flips in the other recipient's stanza (before the one that
        // opens) are caught by the MAC: its count and length fields, fingerprint, then a
        // sample of the ciphertext and sealed key.
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let bundle = seal(&data(1000, 2), &[alice.recipient(), bob.recipient()]);
        let first = MAGIC.len() + 2;
        let spots = (MAGIC.len()..first + 20).chain((first + 20..first + STANZA_LEN).step_by(37));
        for i in spots.chain(header_len(2) - SALT_LEN - MAC_LEN..header_len(2)) {
            let mut bad = bundle.clone();
            bad[i] ^= 1 << (i % 8);
            check(&DecryptReader::open(&bad[..], &bob).unwrap_err(), i);
        }
    }

    #[test]
    fn foreign_input_is_not_a_bundle() {
        let id = Identity::generate();
        for input in [&b""[..], b"hello world, this is not a bundle", b"age-encryption.org/v1\n", b"nanofs-vol"] {
            assert!(matches!(DecryptReader::open(input, &id), Err(StreamError::NotABundle)), "{input:?}");
        }
        // The start of the magic is the start of a bundle, cut short.
        assert!(matches!(DecryptReader::open(&b"nanofs-b"[..], &id), Err(StreamError::Truncated)));
        let mut v2 = seal(b"x", &[id.recipient()]);
        v2[15] = b'2';
        assert!(matches!(DecryptReader::open(&v2[..], &id), Err(StreamError::UnsupportedVersion)));
        assert!(matches!(DecryptReader::open(&b"nanofs-bundle/v10\n"[..], &id), Err(StreamError::UnsupportedVersion)));
    }

    #[test]
    fn payload_flips_name_the_segment() {
        let id = Identity::generate();
        // Two full segments and a short last one; then two full ones and an empty last one.
        for size in [2 * SEGMENT_SIZE + 5000, 2 * SEGMENT_SIZE] {
            let plain = data(size, 3);
            let bundle = seal(&plain, &[id.recipient()]);
            for seg in 0..3 {
                let start = segment_at(1, seg);
                let end = if seg == 2 { bundle.len() } else { start + FULL };
                // len, len_tag, ciphertext (first, middle, last byte when present), tag.
                let mut spots = vec![start, start + 3, start + 4, start + 11, end - TAG_LEN, end - 1];
                if end - start > SEGMENT_HEADER_LEN + TAG_LEN {
                    spots.extend([start + 12, usize::midpoint(start, end), end - TAG_LEN - 1]);
                }
                for at in spots {
                    for bit in [0, 7] {
                        let mut bad = bundle.clone();
                        bad[at] ^= 1 << bit;
                        let (got, err) = read_until_error(&bad, &id);
                        assert!(
                            matches!(err, StreamError::Tampered { segment } if segment == seg as u64),
                            "size {size}, byte {at}: {err:?}"
                        );
                        // Exactly the segments before the damaged one were yielded.
                        assert_eq!(got, plain[..seg * SEGMENT_SIZE], "size {size}, byte {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_truncated() {
        let id = Identity::generate();
        let bundle = seal(&data(2 * SEGMENT_SIZE + 5000, 4), &[id.recipient()]);
        let h = header_len(1);
        // Every cut inside the header.
        assert!(matches!(DecryptReader::open(&bundle[..0], &id), Err(StreamError::NotABundle)));
        for cut in 1..h {
            let err = DecryptReader::open(&bundle[..cut], &id).unwrap_err();
            assert!(matches!(err, StreamError::Truncated), "cut {cut}: {err:?}");
        }
        // Every segment boundary and cuts inside each segment's header, body and tag.
        let mut cuts = Vec::new();
        for seg in 0..3 {
            let start = segment_at(1, seg);
            let end = if seg == 2 { bundle.len() } else { start + FULL };
            cuts.extend([start, start + 1, start + 4, start + 11, start + 12, start + 13, usize::midpoint(start, end)]);
            cuts.extend([end - TAG_LEN - 1, end - TAG_LEN, end - 1]);
        }
        for cut in cuts {
            let err = open(&bundle[..cut], &id).unwrap_err();
            assert!(matches!(err, StreamError::Truncated), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn truncation_is_unexpected_eof_and_tamper_is_invalid_data() {
        let id = Identity::generate();
        let bundle = seal(&data(70_000, 5), &[id.recipient()]);
        let mut r = DecryptReader::open(&bundle[..bundle.len() - 1], &id).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(matches!(StreamError::from(err), StreamError::Truncated));

        let mut bad = bundle.clone();
        bad[header_len(1) + 100] ^= 1;
        let mut r = DecryptReader::open(&bad[..], &id).unwrap();
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("segment 0"), "{err}");
        // The reader stays failed.
        let again = r.read(&mut [0u8; 10]).unwrap_err();
        assert!(matches!(StreamError::from(again), StreamError::Tampered { segment: 0 }));
    }

    #[test]
    fn appended_bytes_are_trailing_data() {
        let id = Identity::generate();
        let plain = data(70_000, 6);
        let bundle = seal(&plain, &[id.recipient()]);
        let last_segment = bundle[segment_at(1, 1)..].to_vec();
        for extra in [vec![0u8], vec![0xAA; 1000], last_segment, seal(b"", &[id.recipient()])] {
            let mut long = bundle.clone();
            long.extend_from_slice(&extra);
            let (got, err) = read_until_error(&long, &id);
            assert!(matches!(err, StreamError::TrailingData), "{err:?}");
            // The last segment's plaintext is withheld.
            assert_eq!(got, plain[..SEGMENT_SIZE]);
        }
    }

    #[test]
    fn reordered_duplicated_dropped_or_spliced_segments_are_refused() {
        let id = Identity::generate();
        let bundle = seal(&data(3 * SEGMENT_SIZE + 10, 7), &[id.recipient()]);
        let h = header_len(1);
        let seg = |i: usize| &bundle[segment_at(1, i)..segment_at(1, i) + FULL];
        let tail = &bundle[segment_at(1, 3)..];
        let rebuild = |parts: &[&[u8]]| -> Vec<u8> {
            let mut out = bundle[..h].to_vec();
            for part in parts {
                out.extend_from_slice(part);
            }
            out
        };
        let cases: [(Vec<u8>, u64); 4] = [
            (rebuild(&[seg(1), seg(0), seg(2), tail]), 0),
            (rebuild(&[seg(0), seg(2), seg(1), tail]), 1),
            (rebuild(&[seg(0), seg(0), seg(1), seg(2), tail]), 1),
            (rebuild(&[seg(0), seg(2), tail]), 1),
        ];
        for (bad, expected) in cases {
            let err = open(&bad, &id).unwrap_err();
            assert!(matches!(err, StreamError::Tampered { segment } if segment == expected), "{err:?}");
        }
        // The last segment moved forward is still refused.
        let err = open(&rebuild(&[seg(0), tail]), &id).unwrap_err();
        assert!(matches!(err, StreamError::Tampered { segment: 1 }), "{err:?}");
        // The header of one bundle with the payload of another for the same recipient.
        let other = seal(&data(3 * SEGMENT_SIZE + 10, 7), &[id.recipient()]);
        let mut spliced = bundle[..h].to_vec();
        spliced.extend_from_slice(&other[h..]);
        assert!(matches!(open(&spliced, &id), Err(StreamError::Tampered { segment: 0 })));
    }

    #[test]
    fn writer_dropped_without_finish_is_truncated() {
        let id = Identity::generate();
        for size in [0, 10, SEGMENT_SIZE, 2 * SEGMENT_SIZE + SEGMENT_SIZE / 2] {
            let mut out = Vec::new();
            {
                let mut w = EncryptWriter::new(&mut out, &[id.recipient()]).unwrap();
                w.write_all(&data(size, 8)).unwrap();
                w.flush().unwrap();
            }
            let err = open(&out, &id).unwrap_err();
            assert!(matches!(err, StreamError::Truncated), "size {size}: {err:?}");
        }
    }

    #[test]
    fn failed_inner_writes_poison_the_writer() {
        /// Accepts `room` bytes, then fails.
        struct Limited {
            room: usize,
        }
        impl Write for Limited {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.room == 0 {
                    return Err(io::Error::other("disk full"));
                }
                let n = buf.len().min(self.room);
                self.room -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let id = Identity::generate();
        let mut w = EncryptWriter::new(Limited { room: header_len(1) + 10 }, &[id.recipient()]).unwrap();
        let err = w.write_all(&data(2 * SEGMENT_SIZE, 9)).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert!(w.write(b"more").is_err());
        assert!(matches!(w.finish(), Err(StreamError::Io(_))));
    }

    #[test]
    fn error_messages_read_well() {
        let cases = [
            (StreamError::Truncated, "truncated"),
            (StreamError::Tampered { segment: 3 }, "segment 3"),
            (StreamError::HeaderTampered, "header"),
            (StreamError::NotABundle, "not a nanofs bundle"),
            (StreamError::TrailingData, "after its final segment"),
            (StreamError::UnsupportedVersion, "newer format version"),
        ];
        for (err, needle) in cases {
            assert!(err.to_string().contains(needle), "{err}");
        }
        let io_err: io::Error = StreamError::Io(io::Error::other("boom")).into();
        assert_eq!(io_err.to_string(), "boom");
        assert!(matches!(StreamError::from(io::Error::other("x")), StreamError::Io(_)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn round_trip_any_size_and_chunking(
            size in 0usize..(3 * SEGMENT_SIZE + 100),
            seed: u64,
            write in 1usize..100_000,
            read in 1usize..100_000,
        ) {
            let id = Identity::generate();
            let plain = data(size, seed);
            let bundle = seal_with(&plain, &[id.recipient()], &[write, write / 3 + 1]);
            prop_assert_eq!(open_with(&bundle, &id, &[read, read / 7 + 1]).unwrap(), plain);
        }

        #[test]
        fn any_change_or_cut_is_refused(
            size in 0usize..(2 * SEGMENT_SIZE + 100),
            at: prop::sample::Index,
            xor in 1u8..=255,
            cut: prop::sample::Index,
        ) {
            let id = Identity::generate();
            let plain = data(size, size as u64);
            let bundle = seal(&plain, &[id.recipient()]);
            let mut bad = bundle.clone();
            bad[at.index(bundle.len())] ^= xor;
            prop_assert!(open(&bad, &id).is_err());
            let cut = cut.index(bundle.len());
            let err = open(&bundle[..cut], &id).unwrap_err();
            prop_assert!(matches!(err, StreamError::Truncated | StreamError::NotABundle), "cut {}: {:?}", cut, err);
        }
    }
}
