//! Kernel attribute structs from volume attributes.

use crate::volume::Attr;
use crate::volume::Kind;
use fuser::{FileAttr, FileType, INodeNo};

/// Block size reported in `st_blksize`: large, so `cp` and friends use big I/O.
const BLKSIZE: u32 = 1 << 20;

pub(super) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    let i = &a.inode;
    let (size, blocks) = match i.kind {
        Kind::Dir => (4096, 8),
        Kind::File => (i.size, i.allocated.div_ceil(512)),
        _ => (i.size, 0),
    };
    FileAttr {
        ino: INodeNo(a.ino.0),
        size,
        blocks,
        atime: i.atime.into(),
        mtime: i.mtime.into(),
        ctime: i.ctime.into(),
        crtime: i.crtime.into(),
        kind: file_type(i.kind),
        perm: i.perm as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The reply to a lookup of a name that does not exist, for the kernel to cache: inode 0.
pub(super) fn negative_entry() -> FileAttr {
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
        crtime: epoch,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}
