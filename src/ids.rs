//! Typed identifiers and their fixed-width encodings.
//!
//! Every id that reaches RocksDB has one encoding, written here, so key order and
//! on-disk layout are decided in one place (see docs/format.md).

use std::fmt;

/// Identity of a chunk: keyed BLAKE2b-256 of its plaintext.
///
/// Format: 32 raw bytes, used verbatim as the key of the `chunks` and `refs` column families.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Length of the encoded id in bytes.
    pub const LEN: usize = 32;

    /// Parses the 32-byte encoding; `None` when the slice has another length.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(ChunkId)
    }

    /// Lower-case hex, as printed in logs and reports.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

/// An inode number. 1 is the root directory; numbers are never reused.
///
/// Format: 8 bytes big-endian, so RocksDB orders keys by inode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);

    /// Big-endian encoding used as a key prefix.
    #[must_use]
    pub fn to_key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Decodes the first 8 bytes of a key.
    #[must_use]
    pub fn from_key(key: &[u8]) -> Option<Self> {
        key.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(|b| Ino(u64::from_be_bytes(b)))
    }
}

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Lower-case hex of any bytes.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses lower- or upper-case hex; `None` on odd length or a non-hex digit.
#[must_use]
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ino_key_order_matches_numeric_order(a: u64, b: u64) {
            prop_assert_eq!(a.cmp(&b), Ino(a).to_key().cmp(&Ino(b).to_key()));
            prop_assert_eq!(Ino::from_key(&Ino(a).to_key()), Some(Ino(a)));
        }

        #[test]
        fn hex_round_trips(bytes: Vec<u8>) {
            prop_assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        }
    }
}
