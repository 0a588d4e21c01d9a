//! Key layouts and the unsealed value encodings. All integers are big-endian so that
//! RocksDB's byte order is numeric order. docs/format.md draws each layout.

use super::packs::Location;
use crate::ids::{ChunkId, Ino};

/// Format: `ino u64` (inodes, symlinks, orphans).
#[must_use]
pub fn ino_key(ino: Ino) -> [u8; 8] {
    ino.to_key()
}

/// Format: `parent u64 | name hash [16]` (dirents) or `ino u64 | name hash [16]` (xattrs).
#[must_use]
pub fn named_key(ino: Ino, name_hash: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&ino.to_key());
    k[8..].copy_from_slice(name_hash);
    k
}

/// Format: `ino u64 | file offset u64`.
#[must_use]
pub fn extent_key(ino: Ino, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ino.to_key());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The file offset of an extent key.
#[must_use]
pub fn extent_offset(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[8..16].try_into().expect("extent keys are 16 bytes"))
}

/// Extent value: `len` bytes of `chunk`'s plaintext, from byte `skip` of it. Format:
/// `chunk id [32] | length u32` when `skip` is 0 (every extent written before partial
/// extents existed, and every whole chunk since), else `chunk id [32] | length u32 | skip u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentValue {
    /// The chunk holding the bytes.
    pub chunk: ChunkId,
    /// Plaintext bytes the extent covers: the whole chunk, or a part of it left by an
    /// overwrite, a hole punched, a truncate or a range copied.
    pub len: u32,
    /// Where in the chunk's plaintext the extent begins.
    pub skip: u32,
}

impl ExtentValue {
    /// An extent covering all of a chunk of `len` bytes.
    #[must_use]
    pub fn whole(chunk: ChunkId, len: u32) -> Self {
        Self { chunk, len, skip: 0 }
    }

    /// The part `[from, to)` of this extent, offsets relative to its start.
    #[must_use]
    pub fn part(&self, from: u32, to: u32) -> Self {
        debug_assert!(from < to && to <= self.len, "a non-empty part inside the extent");
        Self { chunk: self.chunk, len: to - from, skip: self.skip + from }
    }

    /// The range of the chunk's plaintext this extent covers.
    #[must_use]
    pub fn plain_range(&self) -> std::ops::Range<usize> {
        self.skip as usize..self.skip as usize + self.len as usize
    }

    /// 36- or 40-byte encoding (see the type).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&self.chunk.0);
        v.extend_from_slice(&self.len.to_be_bytes());
        if self.skip != 0 {
            v.extend_from_slice(&self.skip.to_be_bytes());
        }
        v
    }

    /// Decodes; `None` if the value has another length.
    #[must_use]
    pub fn decode(v: &[u8]) -> Option<Self> {
        let chunk = ChunkId::from_slice(v.get(..32)?)?;
        let len = u32::from_be_bytes(v.get(32..36)?.try_into().ok()?);
        let skip = match v.len() {
            36 => 0,
            40 => u32::from_be_bytes(v[36..40].try_into().ok()?),
            _ => return None,
        };
        Some(Self { chunk, len, skip })
    }
}

/// Reference record of a chunk. Format: `count u64 | stored length u32 | plain length u32`,
/// then, for a body kept in a pack, its `Location` (16 bytes).
///
/// A count of zero means the chunk is garbage waiting for collection; the body is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefRecord {
    /// Extents that use the chunk.
    pub count: u64,
    /// Size of the sealed envelope.
    pub stored_len: u32,
    /// Size of the plaintext.
    pub plain_len: u32,
    /// Where the body lies in a pack; `None`: inline in the `chunks` family.
    pub location: Option<Location>,
}

impl RefRecord {
    /// 16-byte encoding, 32 with a location.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + Location::ENCODED_LEN);
        v.extend_from_slice(&self.count.to_be_bytes());
        v.extend_from_slice(&self.stored_len.to_be_bytes());
        v.extend_from_slice(&self.plain_len.to_be_bytes());
        if let Some(loc) = self.location {
            v.extend_from_slice(&loc.encode());
        }
        v
    }

    /// Decodes; `None` if the value has another length.
    #[must_use]
    pub fn decode(v: &[u8]) -> Option<Self> {
        let location = match v.len() {
            16 => None,
            32 => Some(Location::decode(&v[16..])?),
            _ => return None,
        };
        Some(Self {
            count: u64::from_be_bytes(v[..8].try_into().ok()?),
            stored_len: u32::from_be_bytes(v[8..12].try_into().ok()?),
            plain_len: u32::from_be_bytes(v[12..16].try_into().ok()?),
            location,
        })
    }
}

/// Volume-wide space counters, kept exact in the same batch as every change.
/// Format: five u64: logical, unique plain, stored, live chunks, garbage chunks' stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceCounters {
    /// Bytes of file data referenced by extents (holes excluded, shared bytes counted per use).
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct live chunks.
    pub unique_bytes: u64,
    /// Sealed bytes of the distinct live chunks.
    pub stored_bytes: u64,
    /// Distinct live chunks.
    pub chunks: u64,
    /// Sealed bytes of chunks no longer referenced, until garbage collection frees them.
    pub reclaimable_bytes: u64,
}

impl SpaceCounters {
    /// 40-byte encoding.
    #[must_use]
    pub fn encode(&self) -> [u8; 40] {
        let mut v = [0u8; 40];
        for (i, x) in [self.logical_bytes, self.unique_bytes, self.stored_bytes, self.chunks, self.reclaimable_bytes]
            .iter()
            .enumerate()
        {
            v[i * 8..i * 8 + 8].copy_from_slice(&x.to_be_bytes());
        }
        v
    }

    /// Decodes; `None` if the value has another length.
    #[must_use]
    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 40 {
            return None;
        }
        let n = |i: usize| u64::from_be_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(Self {
            logical_bytes: n(0),
            unique_bytes: n(1),
            stored_bytes: n(2),
            chunks: n(3),
            reclaimable_bytes: n(4),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        crate::ids::hex(b)
    }

    /// The key layouts are the on-disk format (docs/format.md): a change that moved a byte
    /// would make every existing volume unreadable, so each is pinned to its bytes.
    #[test]
    fn key_layouts_are_pinned() {
        assert_eq!(hex(&ino_key(Ino(0x0102_0304_0506_0708))), "0102030405060708");
        let hash: [u8; 16] = std::array::from_fn(|i| 0xa0 + i as u8);
        assert_eq!(hex(&named_key(Ino(2), &hash)), "0000000000000002a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
        assert_eq!(hex(&extent_key(Ino(5), 0x1122_3344_5566_7788)), "00000000000000051122334455667788");
        assert_eq!(extent_offset(&extent_key(Ino(5), 0x1122_3344_5566_7788)), 0x1122_3344_5566_7788);
    }

    #[test]
    fn value_encodings_are_pinned() {
        let inline = RefRecord { count: 3, stored_len: 0x0102_0304, plain_len: 0x0506_0708, location: None };
        assert_eq!(hex(&inline.encode()), "00000000000000030102030405060708");
        let packed = RefRecord { location: Some(Location { pack: 9, offset: 0x0a0b_0c0d, len: 0x10 }), ..inline };
        assert_eq!(hex(&packed.encode()), "0000000000000003010203040506070800000009000000000a0b0c0d00000010");
        assert_eq!(RefRecord::decode(&packed.encode()), Some(packed));
        let space =
            SpaceCounters { logical_bytes: 1, unique_bytes: 2, stored_bytes: 3, chunks: 4, reclaimable_bytes: 5 };
        assert_eq!(
            hex(&space.encode()),
            "0000000000000001000000000000000200000000000000030000000000000004\
             0000000000000005"
        );
    }

    proptest! {
        #[test]
        fn extent_keys_order_by_inode_then_offset(a: u64, b: u64, x: u64, y: u64) {
            prop_assert_eq!((a, x).cmp(&(b, y)), extent_key(Ino(a), x).cmp(&extent_key(Ino(b), y)));
            prop_assert_eq!(extent_offset(&extent_key(Ino(a), x)), x);
        }

        #[test]
        fn records_round_trip(id: [u8; 32], len: u32, skip: u32, count: u64, s: u32, p: u32, pack: Option<(u32, u64)>) {
            let e = ExtentValue { chunk: ChunkId(id), len, skip };
            prop_assert_eq!(ExtentValue::decode(&e.encode()), Some(e));
            let location = pack.map(|(pack, offset)| Location { pack, offset, len });
            let r = RefRecord { count, stored_len: s, plain_len: p, location };
            prop_assert_eq!(RefRecord::decode(&r.encode()), Some(r));
            let c = SpaceCounters { logical_bytes: count, unique_bytes: u64::from(s), stored_bytes: u64::from(p), chunks: 3, reclaimable_bytes: 4 };
            prop_assert_eq!(SpaceCounters::decode(&c.encode()), Some(c));
        }
    }

    /// A whole-chunk extent keeps the encoding it had before partial extents existed, so
    /// volumes written then read the same; a partial one appends its skip.
    #[test]
    fn extent_encoding_is_pinned() {
        let whole = ExtentValue::whole(ChunkId([7; 32]), 0x0102_0304);
        assert_eq!(whole.encode(), [[7u8; 32].as_slice(), &[1, 2, 3, 4]].concat());
        let part = whole.part(0x10, 0x20);
        assert_eq!(part.encode(), [[7u8; 32].as_slice(), &[0, 0, 0, 0x10], &[0, 0, 0, 0x10]].concat());
        assert_eq!(ExtentValue::decode(&part.encode()), Some(part));
        assert_eq!(ExtentValue::decode(&[0; 38]), None);
    }
}
