//! The kernel's FUSE protocol (`include/uapi/linux/fuse.h`, protocol 7.45): opcodes, flags,
//! and the byte layout of requests and replies. Everything is native-endian and packed to
//! 8 bytes, so a request is read and a reply written field by field, without `unsafe`.

/// Protocol version we speak; the kernel's minor is used when it is older.
pub const MAJOR: u32 = 7;
pub const MINOR: u32 = 45;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;

pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SYNCFS: u32 = 50;
}

/// `fuse_init_in.flags` / `fuse_init_out.flags` (bits 32.. travel in `flags2`).
pub mod init {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const NO_OPENDIR_SUPPORT: u64 = 1 << 24;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const OVER_IO_URING: u64 = 1 << 41;
}

pub const FATTR_MODE: u32 = 1 << 0;
pub const FATTR_UID: u32 = 1 << 1;
pub const FATTR_GID: u32 = 1 << 2;
pub const FATTR_SIZE: u32 = 1 << 3;
pub const FATTR_ATIME: u32 = 1 << 4;
pub const FATTR_MTIME: u32 = 1 << 5;
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
pub const FATTR_MTIME_NOW: u32 = 1 << 8;

pub const FOPEN_NOFLUSH: u32 = 1 << 5;
pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
pub const RENAME_NOREPLACE: u32 = 1 << 0;
pub const RENAME_EXCHANGE: u32 = 1 << 1;

pub const NOTIFY_INVAL_ENTRY: i32 = 3;

/// `fuse_in_header`.
#[derive(Debug, Clone, Copy)]
pub struct InHeader {
    /// The whole request's length, this header included.
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
}

impl InHeader {
    /// Parses the first 40 bytes of a request; `None` when there are fewer.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<Self> {
        let mut r = Args::new(b.get(..IN_HEADER_LEN)?, &[]);
        Some(Self { len: r.u32()?, opcode: r.u32()?, unique: r.u64()?, nodeid: r.u64()?, uid: r.u32()?, gid: r.u32()? })
    }
}

/// Reads a request's arguments: first the operation's fixed struct (`head`), then names and
/// data (`rest`). Over `/dev/fuse` everything is in `head`.
pub struct Args<'a> {
    head: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    #[must_use]
    pub fn new(head: &'a [u8], rest: &'a [u8]) -> Self {
        Self { head, rest }
    }

    fn current(&mut self) -> &mut &'a [u8] {
        if self.head.is_empty() {
            &mut self.rest
        } else {
            &mut self.head
        }
    }

    /// The next `n` bytes; `None` when the request is shorter.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let cur = self.current();
        if cur.len() < n {
            return None;
        }
        let (taken, left) = cur.split_at(n);
        *cur = left;
        Some(taken)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    /// A NUL-terminated name, without the NUL.
    pub fn name(&mut self) -> Option<&'a [u8]> {
        let cur = self.current();
        let end = cur.iter().position(|&b| b == 0)?;
        let name = &cur[..end];
        *cur = &cur[end + 1..];
        Some(name)
    }
}

/// `fuse_read_in` and `fuse_readdir_in` (the same layout), the fields we use.
#[derive(Debug, Clone, Copy)]
pub struct ReadIn {
    pub offset: u64,
    pub size: u32,
}

impl ReadIn {
    pub fn parse(a: &mut Args<'_>) -> Option<Self> {
        let (_fh, offset, size) = (a.u64()?, a.u64()?, a.u32()?);
        Some(Self { offset, size })
    }
}

/// `fuse_write_in` and the data that follows it.
#[derive(Debug, Clone, Copy)]
pub struct WriteIn<'a> {
    pub offset: u64,
    /// `FUSE_WRITE_*` bits.
    pub write_flags: u32,
    /// The open file's flags (`O_APPEND`, ...).
    pub open_flags: u32,
    pub data: &'a [u8],
}

impl<'a> WriteIn<'a> {
    pub fn parse(a: &mut Args<'a>) -> Option<Self> {
        let (_fh, offset, size, write_flags) = (a.u64()?, a.u64()?, a.u32()?, a.u32()?);
        let (_lock_owner, open_flags) = (a.u64()?, a.u32()?);
        a.skip(4)?;
        Some(Self { offset, write_flags, open_flags, data: a.bytes(size as usize)? })
    }
}

/// `fuse_create_in` and the new file's name.
#[derive(Debug, Clone, Copy)]
pub struct CreateIn<'a> {
    pub mode: u32,
    pub name: &'a [u8],
}

impl<'a> CreateIn<'a> {
    pub fn parse(a: &mut Args<'a>) -> Option<Self> {
        let (_flags, mode) = (a.u32()?, a.u32()?);
        a.skip(8)?;
        Some(Self { mode, name: a.name()? })
    }
}

/// A reply's arguments, appended field by field.
#[derive(Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_ne_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    /// Zero bytes up to the next multiple of 8 (directory entries are 8-aligned).
    pub fn align8(&mut self) -> &mut Self {
        let n = self.0.len().next_multiple_of(8);
        self.0.resize(n, 0);
        self
    }
}

/// `fuse_out_header` for a reply of `body_len` bytes, or an error (`errno` > 0).
#[must_use]
pub fn out_header(unique: u64, errno: i32, body_len: usize) -> [u8; OUT_HEADER_LEN] {
    let mut h = [0u8; OUT_HEADER_LEN];
    let len = u32::try_from(OUT_HEADER_LEN + body_len).unwrap_or(u32::MAX);
    h[0..4].copy_from_slice(&len.to_ne_bytes());
    h[4..8].copy_from_slice(&(-errno).to_ne_bytes());
    h[8..16].copy_from_slice(&unique.to_ne_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_read_the_fixed_struct_then_names_across_both_parts() {
        let head = [1u8, 0, 0, 0, 2, 0, 0, 0];
        let rest = b"old\0new\0";
        let mut a = Args::new(&head, rest);
        assert_eq!(a.u32(), Some(1));
        assert_eq!(a.u32(), Some(2));
        assert_eq!(a.name(), Some(&b"old"[..]));
        assert_eq!(a.name(), Some(&b"new"[..]));
        assert_eq!(a.name(), None, "no third name");
        assert_eq!(a.u32(), None);
    }

    #[test]
    fn a_name_without_its_nul_is_malformed() {
        let mut a = Args::new(b"abc", &[]);
        assert_eq!(a.name(), None);
    }

    #[test]
    fn out_header_carries_the_negated_errno_and_total_length() {
        let h = out_header(7, libc::ENOENT, 0);
        assert_eq!(u32::from_ne_bytes(h[0..4].try_into().unwrap()), 16);
        assert_eq!(i32::from_ne_bytes(h[4..8].try_into().unwrap()), -libc::ENOENT);
        assert_eq!(u64::from_ne_bytes(h[8..16].try_into().unwrap()), 7);
    }
}
