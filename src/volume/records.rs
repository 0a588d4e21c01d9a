//! Metadata records and their sealed encodings: inodes, directory entries, xattrs, symlinks.
//!
//! Every record is sealed with the metadata subkey; the associated data is the column
//! family's name and the record's key, so a record copied under another key fails to open.

use super::error::{Error, Result};
use crate::crypto::aead::SealKey;
use crate::ids::Ino;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Regular file.
    File = 1,
    /// Directory.
    Dir = 2,
    /// Symbolic link.
    Symlink = 3,
    /// Named pipe.
    Fifo = 4,
    /// Unix socket.
    Socket = 5,
    /// Character device.
    CharDev = 6,
    /// Block device.
    BlockDev = 7,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDev,
            7 => Kind::BlockDev,
            _ => return None,
        })
    }

    /// The kind a `mode` (`S_IFMT` bits) names.
    #[must_use]
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return None,
        })
    }
}

/// A point in time with nanoseconds, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds, 0..1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time.
    #[must_use]
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self { secs: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Self { secs: -(d.as_secs() as i64), nanos: 0 }
                } else {
                    Self { secs: -(d.as_secs() as i64) - 1, nanos: 1_000_000_000 - d.subsec_nanos() }
                }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        if t.secs >= 0 {
            UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
        } else {
            UNIX_EPOCH - Duration::new(t.secs.unsigned_abs(), 0) + Duration::new(0, t.nanos)
        }
    }
}

/// An inode: everything `stat` shows, plus the parent of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// What it is.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (no `S_IFMT` bits).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Device number of a device node.
    pub rdev: u32,
    /// Size in bytes (files), target length (symlinks).
    pub size: u64,
    /// Bytes backed by chunks (size minus holes), for `st_blocks`.
    pub allocated: u64,
    /// Parent directory (directories only; 0 otherwise).
    pub parent: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last inode change.
    pub ctime: Timestamp,
    /// Creation.
    pub crtime: Timestamp,
    /// Part of a snapshot: no change is allowed (stored as bit 31 of the permission word).
    pub frozen: bool,
}

/// Bit of the stored permission word that marks a frozen (snapshot) inode.
const FROZEN_BIT: u32 = 1 << 31;

const INODE_RECORD_VERSION: u8 = 1;
const INODE_RECORD_LEN: usize = 2 + 5 * 4 + 3 * 8 + 4 * 12;

impl Inode {
    /// Clears setuid, and setgid where the group may execute (where it is not a
    /// mandatory-locking mark): what a write by another user and a change of owner do.
    pub fn drop_setid(&mut self) {
        self.perm &= !libc::S_ISUID;
        if self.perm & libc::S_IXGRP != 0 {
            self.perm &= !libc::S_ISGID;
        }
    }

    /// A new inode of `kind` created now.
    #[must_use]
    pub fn new(kind: Kind, perm: u32, uid: u32, gid: u32) -> Self {
        let now = Timestamp::now();
        Self {
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            size: 0,
            allocated: 0,
            parent: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            frozen: false,
        }
    }

    /// Fixed-width plaintext encoding (sealed before storage).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(INODE_RECORD_LEN);
        v.push(INODE_RECORD_VERSION);
        v.push(self.kind as u8);
        let perm_word = self.perm | if self.frozen { FROZEN_BIT } else { 0 };
        for x in [perm_word, self.uid, self.gid, self.nlink, self.rdev] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for x in [self.size, self.allocated, self.parent] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            v.extend_from_slice(&t.secs.to_be_bytes());
            v.extend_from_slice(&t.nanos.to_be_bytes());
        }
        v
    }

    /// Decodes `encode`'s output.
    pub fn decode(v: &[u8]) -> Result<Self> {
        if v.len() != INODE_RECORD_LEN || v[0] != INODE_RECORD_VERSION {
            return Err(Error::CorruptMeta("inode record has an unknown layout".into()));
        }
        let kind =
            Kind::from_byte(v[1]).ok_or_else(|| Error::CorruptMeta("inode record has an unknown kind".into()))?;
        let u32_at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        let ts_at = |i: usize| Timestamp { secs: u64_at(i) as i64, nanos: u32_at(i + 8) };
        Ok(Self {
            kind,
            perm: u32_at(2) & 0o7777,
            uid: u32_at(6),
            gid: u32_at(10),
            nlink: u32_at(14),
            rdev: u32_at(18),
            size: u64_at(22),
            allocated: u64_at(30),
            parent: u64_at(38),
            atime: ts_at(46),
            mtime: ts_at(58),
            ctime: ts_at(70),
            crtime: ts_at(82),
            frozen: u32_at(2) & FROZEN_BIT != 0,
        })
    }
}

/// Seals and opens metadata records under the metadata subkey.
#[derive(Clone)]
pub struct MetaSealer {
    key: SealKey,
}

impl MetaSealer {
    /// A sealer with the metadata subkey.
    #[must_use]
    pub fn new(key: SealKey) -> Self {
        Self { key }
    }

    /// Seals `plain` stored under `key` in column family `cf`.
    #[must_use]
    pub fn seal(&self, cf: &str, key: &[u8], plain: &[u8]) -> Vec<u8> {
        self.key.seal(&aad(cf, key), plain)
    }

    /// Opens a record sealed by `seal` with the same family and key.
    pub fn open(&self, cf: &str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.key
            .open(&aad(cf, key), sealed)
            .map_err(|e| Error::CorruptMeta(format!("{cf} record {}: {e}", crate::ids::hex(key))))
    }
}

fn aad(cf: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(cf.len() + 1 + key.len());
    a.extend_from_slice(cf.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

/// A directory entry's sealed payload: `child u64 | kind u8 | name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirentRecord {
    /// The child inode.
    pub ino: Ino,
    /// Its kind (so readdir needs no inode reads).
    pub kind: Kind,
    /// The name, raw bytes.
    pub name: Vec<u8>,
}

impl DirentRecord {
    /// Plaintext encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.name.len());
        v.extend_from_slice(&self.ino.to_key());
        v.push(self.kind as u8);
        v.extend_from_slice(&self.name);
        v
    }

    /// Decodes `encode`'s output.
    pub fn decode(v: &[u8]) -> Result<Self> {
        if v.len() < 9 {
            return Err(Error::CorruptMeta("directory entry too short".into()));
        }
        let kind = Kind::from_byte(v[8]).ok_or_else(|| Error::CorruptMeta("directory entry kind".into()))?;
        Ok(Self { ino: Ino::from_key(v).expect("8 bytes checked"), kind, name: v[9..].to_vec() })
    }
}

/// An extended attribute's sealed payload: `name length u16 | name | value`.
#[must_use]
pub fn encode_xattr(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + name.len() + value.len());
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(name);
    v.extend_from_slice(value);
    v
}

/// Splits an xattr payload into name and value.
pub fn decode_xattr(v: &[u8]) -> Result<(&[u8], &[u8])> {
    let n = v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
    match n {
        Some(n) if v.len() >= 2 + n => Ok((&v[2..2 + n], &v[2 + n..])),
        _ => Err(Error::CorruptMeta("xattr record too short".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn inode_round_trips(perm in 0u32..0o7777, uid: u32, size: u64, secs: i64, nanos in 0u32..1_000_000_000) {
            let mut i = Inode::new(Kind::File, perm, uid, 7);
            i.size = size;
            i.mtime = Timestamp { secs, nanos };
            prop_assert_eq!(Inode::decode(&i.encode()).unwrap(), i);
        }

        #[test]
        fn timestamps_survive_system_time(secs in -4_000_000_000i64..4_000_000_000, nanos in 0u32..1_000_000_000) {
            let t = Timestamp { secs, nanos };
            prop_assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        }
    }

    /// The record layouts of docs/format.md, byte for byte (expected values computed from
    /// the table there, not from this code): existing volumes hold these bytes.
    #[test]
    fn record_encodings_are_pinned() {
        let t = |secs, nanos| Timestamp { secs, nanos };
        let inode = Inode {
            kind: Kind::File,
            perm: 0o4755,
            uid: 1000,
            gid: 100,
            nlink: 2,
            rdev: 0,
            size: 0x01_0203_0405,
            allocated: 0x1000,
            parent: 0,
            atime: t(1, 2),
            mtime: t(-1, 999_999_999),
            ctime: t(1_764_108_000, 500),
            crtime: t(0, 0),
            frozen: true,
        };
        let expected = "0101800009ed000003e80000006400000002000000000000000102030405000000000000100000000000\
                        00000000000000000000000100000002ffffffffffffffff3b9ac9ff00000000692626e0000001f40000\
                        00000000000000000000";
        assert_eq!(crate::ids::hex(&inode.encode()), expected);
        assert_eq!(Inode::decode(&inode.encode()).unwrap(), inode);
        let dirent = DirentRecord { ino: Ino(7), kind: Kind::Dir, name: b"photos".to_vec() };
        assert_eq!(crate::ids::hex(&dirent.encode()), "00000000000000070270686f746f73");
        assert_eq!(crate::ids::hex(&encode_xattr(b"user.comment", b"v1")), "000c757365722e636f6d6d656e747631");
        assert_eq!(crate::ids::hex(&aad("inodes", &2u64.to_be_bytes())), "696e6f646573000000000000000002");
    }

    /// A record sealed by an earlier build (key `[3; 32]`) still opens: pins the AEAD, the
    /// nonce/tag layout and the associated data together.
    #[test]
    fn a_sealed_record_of_format_1_opens() {
        let s = MetaSealer::new(SealKey::new(&[3; 32]));
        let sealed = crate::ids::unhex(GOLDEN_SEALED_DIRENT).unwrap();
        let plain = s.open("dirents", &GOLDEN_DIRENT_KEY, &sealed).unwrap();
        assert_eq!(DirentRecord::decode(&plain).unwrap().name, b"photos");
    }
    const GOLDEN_DIRENT_KEY: [u8; 24] = [0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];
    const GOLDEN_SEALED_DIRENT: &str =
        "525bb2fb1248773e79db732b2b2a7d1eb807223aa19a0d460c62d7178dc233a84332307d0a53d17a3ed848e40dc37133\
                                        bdebcfffd7d064";

    #[test]
    fn record_moved_to_another_key_fails() {
        let s = MetaSealer::new(SealKey::new(&[3; 32]));
        let sealed = s.seal("inodes", &[0, 0, 0, 0, 0, 0, 0, 2], b"x");
        assert!(s.open("inodes", &[0, 0, 0, 0, 0, 0, 0, 3], &sealed).is_err());
        assert!(s.open("dirents", &[0, 0, 0, 0, 0, 0, 0, 2], &sealed).is_err());
        assert_eq!(s.open("inodes", &[0, 0, 0, 0, 0, 0, 0, 2], &sealed).unwrap(), b"x");
    }
}
