//! Kernel attribute and entry structs (`fuse_attr`, `fuse_entry_out`, directory entries)
//! from volume attributes.

use super::abi::Out;
use crate::volume::records::Timestamp;
use crate::volume::{Attr, Kind};
use std::time::Duration;

/// Block size reported in `st_blksize`: large, so `cp` and friends use big I/O.
const BLKSIZE: u32 = 1 << 20;

/// The `S_IF*` bits of a kind.
pub fn type_bits(kind: Kind) -> u32 {
    match kind {
        Kind::File => libc::S_IFREG,
        Kind::Dir => libc::S_IFDIR,
        Kind::Symlink => libc::S_IFLNK,
        Kind::Fifo => libc::S_IFIFO,
        Kind::Socket => libc::S_IFSOCK,
        Kind::CharDev => libc::S_IFCHR,
        Kind::BlockDev => libc::S_IFBLK,
    }
}

fn time(out: &mut Out, t: Timestamp) {
    // The kernel reads the seconds as signed.
    out.u64(t.secs as u64);
}

/// `fuse_attr` (88 bytes).
pub fn put_attr(out: &mut Out, a: &Attr) {
    let i = &a.inode;
    let (size, blocks) = match i.kind {
        Kind::Dir => (4096, 8),
        Kind::File => (i.size, i.allocated.div_ceil(512)),
        _ => (i.size, 0),
    };
    out.u64(a.ino.0).u64(size).u64(blocks);
    time(out, i.atime);
    time(out, i.mtime);
    time(out, i.ctime);
    out.u32(i.atime.nanos).u32(i.mtime.nanos).u32(i.ctime.nanos);
    out.u32(type_bits(i.kind) | (i.perm & 0o7777)).u32(i.nlink).u32(i.uid).u32(i.gid).u32(i.rdev);
    out.u32(BLKSIZE).u32(0);
}

/// `fuse_entry_out` (128 bytes); `None` is a miss the kernel may cache (inode 0).
pub fn put_entry(out: &mut Out, a: Option<&Attr>, entry_ttl: Duration, attr_ttl: Duration) {
    out.u64(a.map_or(0, |a| a.ino.0)).u64(0);
    out.u64(entry_ttl.as_secs()).u64(attr_ttl.as_secs());
    out.u32(entry_ttl.subsec_nanos()).u32(attr_ttl.subsec_nanos());
    match a {
        Some(a) => put_attr(out, a),
        None => {
            out.bytes(&[0; 80]).u32(BLKSIZE).u32(0);
        }
    }
}

/// `fuse_attr_out` (104 bytes).
pub fn put_attr_out(out: &mut Out, a: &Attr, ttl: Duration) {
    out.u64(ttl.as_secs()).u32(ttl.subsec_nanos()).u32(0);
    put_attr(out, a);
}

/// `fuse_dirent` with its name, padded to 8 bytes; false (and nothing written) when it
/// would not fit in `limit` bytes.
pub fn put_dirent(out: &mut Out, limit: usize, ino: u64, cookie: u64, kind: Kind, name: &[u8]) -> bool {
    let len = (24 + name.len()).next_multiple_of(8);
    if out.0.len() + len > limit {
        return false;
    }
    out.u64(ino).u64(cookie).u32(name.len() as u32).u32(type_bits(kind) >> 12).bytes(name).align8();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_entry_has_the_size_of_a_full_one() {
        let mut miss = Out::default();
        put_entry(&mut miss, None, Duration::from_secs(60), Duration::from_secs(1));
        assert_eq!(miss.0.len(), 128);
        assert_eq!(&miss.0[..8], &0u64.to_ne_bytes(), "inode 0 marks the miss");
    }

    #[test]
    fn dirents_are_8_aligned_and_respect_the_limit() {
        let mut out = Out::default();
        assert!(put_dirent(&mut out, 64, 5, 1, Kind::File, b"abc"));
        assert_eq!(out.0.len(), 32);
        assert!(!put_dirent(&mut out, 64, 6, 2, Kind::Dir, b"0123456789"), "40 more bytes do not fit in 64");
        assert_eq!(out.0.len(), 32, "nothing written when it does not fit");
        assert_eq!(u32::from_ne_bytes(out.0[20..24].try_into().unwrap()), libc::DT_REG as u32);
    }
}
