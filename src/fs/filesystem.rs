//! The file system of one volume: each kernel request becomes one engine call, whichever
//! transport carried it.

use super::abi::{self, init, op, Args, CreateIn, InHeader, Out, ReadIn, WriteIn};
use super::attr::{put_attr_out, put_dirent, put_entry};
use super::errno::to_errno;
use super::handler::{Handler, Negotiated, Reply};
use crate::ids::Ino;
use crate::metrics::FuseTimer;
use crate::volume::records::Timestamp;
use crate::volume::{Attr, Error as VolumeError, Handle, Kind, RenameMode, Seek, SetAttr, SetTime, Volume};
use std::sync::Arc;
use std::time::Duration;

/// How long the kernel may cache attributes. Short, because the HTTP side can change a
/// file's contents too.
const TTL: Duration = Duration::from_secs(1);
/// How long the kernel may cache a lookup, a miss included. Every change of a name made
/// outside the mount drops it at once (`Volume::foreign`), so this can be long: `rsync`
/// looks each new name up again well after its first miss.
const ENTRY_TTL: Duration = Duration::from_secs(60);
/// Largest write (and read) the kernel is asked to send in one request.
pub const MAX_WRITE: u32 = 1 << 20;
/// Directory entries fetched from the volume per readdir request.
const READDIR_BATCH: usize = 256;

type Handled = Result<Out, i32>;

/// A malformed request: the kernel never sends one, so this only guards the parser.
fn arg<T>(v: Option<T>) -> Result<T, i32> {
    v.ok_or(libc::EINVAL)
}

fn engine<T>(r: crate::volume::Result<T>) -> Result<T, i32> {
    r.map_err(|e| to_errno(&e))
}

fn empty() -> Handled {
    Ok(Out::default())
}

/// The FUSE file system of one volume.
pub struct NanoFs {
    vol: Arc<Volume>,
    /// The kernel takes `ENOSYS` from `opendir` as "no directory handles needed" and
    /// sends neither `opendir` nor `releasedir` again (`FUSE_NO_OPENDIR_SUPPORT`).
    no_opendir: bool,
}

impl NanoFs {
    /// Serves `vol`.
    #[must_use]
    pub fn new(vol: Arc<Volume>) -> Self {
        Self { vol, no_opendir: false }
    }

    /// The volume served.
    #[must_use]
    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }
}

/// The `FUSE_INIT` flags nanofs asks for; `want_uring` asks for requests over io_uring too.
#[must_use]
pub fn wanted_flags(want_uring: bool) -> u64 {
    let mut wanted = init::ASYNC_READ
            | init::BIG_WRITES
            | init::MAX_PAGES
            | init::PARALLEL_DIROPS
            | init::DO_READDIRPLUS
            | init::READDIRPLUS_AUTO
            // A symlink's target never changes, so the kernel may keep what it read.
            | init::CACHE_SYMLINKS
            // Directory reads resume from the entry's cookie and need no handle: two
            // round trips fewer per directory listed.
            | init::NO_OPENDIR_SUPPORT
            | init::INIT_EXT;
    if want_uring {
        wanted |= init::OVER_IO_URING;
    }
    wanted
}

impl Handler for NanoFs {
    fn negotiate(&mut self, offered: u64, max_readahead: u32, want_uring: bool) -> Negotiated {
        let flags = offered & wanted_flags(want_uring);
        self.no_opendir = flags & init::NO_OPENDIR_SUPPORT != 0;
        Negotiated { flags, max_readahead: max_readahead.min(MAX_WRITE) }
    }

    fn handle(&self, h: &InHeader, mut a: Args<'_>) -> Reply {
        if matches!(h.opcode, op::FORGET | op::BATCH_FORGET | op::INTERRUPT) {
            // Inodes are not reference-counted by lookups, and requests are not cancelled.
            return Reply::None;
        }
        let _timer = op_name(h.opcode).map(FuseTimer::start);
        if h.opcode == op::READ {
            let read =
                arg(ReadIn::parse(&mut a)).and_then(|r| engine(self.vol.read_pieces(Ino(h.nodeid), r.offset, r.size)));
            return match read {
                Ok(data) => Reply::Data(data),
                Err(errno) => Reply::Err(errno),
            };
        }
        match self.dispatch(h, a) {
            Ok(out) => Reply::Ok(out),
            Err(errno) => Reply::Err(errno),
        }
    }
}

impl NanoFs {
    fn dispatch(&self, h: &InHeader, mut a: Args<'_>) -> Handled {
        let i = Ino(h.nodeid);
        let vol = &self.vol;
        match h.opcode {
            op::LOOKUP => {
                let name = arg(a.name())?;
                match vol.lookup(i, name) {
                    Ok(found) => entry(Some(&found)),
                    // A miss is cached too (inode 0).
                    Err(VolumeError::NotFound) => entry(None),
                    Err(e) => Err(to_errno(&e)),
                }
            }
            op::GETATTR => attr(&engine(vol.getattr(i))?),
            op::SETATTR => attr(&engine(vol.setattr(i, &setattr_args(a)?))?),
            op::READLINK => Ok(Out(engine(vol.readlink(i))?)),
            op::MKNOD => {
                let (mode, rdev) = (arg(a.u32())?, arg(a.u32())?);
                arg(a.skip(8))?;
                let name = arg(a.name())?;
                match Kind::from_mode(mode) {
                    Some(Kind::Dir | Kind::Symlink) | None => Err(libc::EINVAL),
                    Some(kind) => entry(Some(&engine(vol.create(i, name, kind, mode, h.uid, h.gid, rdev))?)),
                }
            }
            op::MKDIR => {
                let mode = arg(a.u32())?;
                arg(a.skip(4))?;
                let name = arg(a.name())?;
                entry(Some(&engine(vol.create(i, name, Kind::Dir, mode, h.uid, h.gid, 0))?))
            }
            op::UNLINK => {
                engine(vol.remove(i, arg(a.name())?, None))?;
                empty()
            }
            op::RMDIR => {
                engine(vol.rmdir(i, arg(a.name())?))?;
                empty()
            }
            op::SYMLINK => {
                let (name, target) = (arg(a.name())?, arg(a.name())?);
                entry(Some(&engine(vol.symlink(i, name, target, h.uid, h.gid))?))
            }
            op::RENAME | op::RENAME2 => {
                let newdir = Ino(arg(a.u64())?);
                let flags = if h.opcode == op::RENAME2 {
                    let f = arg(a.u32())?;
                    arg(a.skip(4))?;
                    f
                } else {
                    0
                };
                let mode = match flags {
                    0 => RenameMode::Replace,
                    abi::RENAME_NOREPLACE => RenameMode::NoReplace,
                    abi::RENAME_EXCHANGE => RenameMode::Exchange,
                    _ => return Err(libc::EINVAL),
                };
                let (name, newname) = (arg(a.name())?, arg(a.name())?);
                engine(vol.rename(i, name, newdir, newname, mode))?;
                empty()
            }
            op::LINK => {
                let old = Ino(arg(a.u64())?);
                entry(Some(&engine(vol.link(old, i, arg(a.name())?))?))
            }
            op::OPEN => {
                let flags = arg(a.u32())?;
                let write = flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
                let h = engine(vol.open_file(i, write))?;
                // Closing a handle that cannot have written has nothing to commit: the
                // kernel can skip the flush round trip (`rsync` opens every file read-only
                // to `fchmod` it).
                Ok(opened(h.0, if write { 0 } else { abi::FOPEN_NOFLUSH }))
            }
            op::WRITE => {
                let w = arg(WriteIn::parse(&mut a))?;
                let append = w.open_flags & libc::O_APPEND as u32 != 0;
                let kill = w.write_flags & abi::WRITE_KILL_SUIDGID != 0;
                engine(vol.write(i, w.offset, w.data, append, kill))?;
                let mut out = Out::with_capacity(8);
                out.u32(w.data.len() as u32).u32(0);
                Ok(out)
            }
            op::STATFS => {
                let s = engine(vol.statfs())?;
                let mut out = Out::with_capacity(80);
                out.u64(s.blocks).u64(s.bfree).u64(s.bavail).u64(s.files).u64(s.ffree);
                out.u32(s.bsize).u32(255).u32(s.bsize).u32(0).bytes(&[0; 24]);
                Ok(out)
            }
            op::RELEASE => {
                let fh = arg(a.u64())?;
                engine(vol.release(i, Handle(fh)))?;
                empty()
            }
            op::FLUSH => {
                let fh = arg(a.u64())?;
                engine(vol.flush(i, Handle(fh)))?;
                empty()
            }
            op::FSYNC => {
                let fh = arg(a.u64())?;
                engine(vol.fsync(i, Some(Handle(fh))))?;
                empty()
            }
            op::SETXATTR => {
                let (size, flags) = (arg(a.u32())?, arg(a.u32())?);
                let name = arg(a.name())?;
                let value = arg(a.bytes(size as usize))?;
                let create = flags & libc::XATTR_CREATE as u32 != 0;
                let replace = flags & libc::XATTR_REPLACE as u32 != 0;
                engine(vol.setxattr(i, name, value, create, replace))?;
                empty()
            }
            op::GETXATTR => {
                let size = arg(a.u32())?;
                arg(a.skip(4))?;
                let value = engine(vol.getxattr(i, arg(a.name())?))?;
                xattr(size, value)
            }
            op::LISTXATTR => {
                let size = arg(a.u32())?;
                let mut list = Vec::new();
                for n in engine(vol.listxattr(i))? {
                    list.extend_from_slice(&n);
                    list.push(0);
                }
                xattr(size, list)
            }
            op::REMOVEXATTR => {
                engine(vol.removexattr(i, arg(a.name())?))?;
                empty()
            }
            op::OPENDIR if self.no_opendir => Err(libc::ENOSYS),
            op::OPENDIR => Ok(opened(0, 0)),
            op::READDIR | op::READDIRPLUS => {
                let r = arg(ReadIn::parse(&mut a))?;
                if h.opcode == op::READDIR {
                    self.readdir(i, r.offset, r.size as usize)
                } else {
                    self.readdirplus(i, r.offset, r.size as usize)
                }
            }
            op::RELEASEDIR => empty(),
            op::ACCESS => {
                // The kernel checks permissions itself (default_permissions); only
                // existence is ours.
                engine(vol.getattr(i))?;
                empty()
            }
            op::FSYNCDIR => {
                // A directory's entries are in the database's log: syncing it is enough.
                if !vol.is_read_only() {
                    engine(vol.sync())?;
                }
                empty()
            }
            op::SYNCFS => {
                engine(vol.sync_all())?;
                empty()
            }
            op::CREATE => {
                let c = arg(CreateIn::parse(&mut a))?;
                let created = engine(vol.create(i, c.name, Kind::File, c.mode, h.uid, h.gid, 0))?;
                let handle = engine(vol.open_file(created.ino, true))?;
                let mut out = entry(Some(&created))?;
                out.bytes(&opened(handle.0, 0).0);
                Ok(out)
            }
            op::FALLOCATE => {
                let (_fh, offset, length, mode) = (arg(a.u64())?, arg(a.u64())?, arg(a.u64())?, arg(a.u32())?);
                self.fallocate(i, offset, length, mode as i32)
            }
            op::LSEEK => {
                let (_fh, offset, whence) = (arg(a.u64())?, arg(a.u64())?, arg(a.u32())?);
                // The kernel answers SEEK_SET, SEEK_CUR and SEEK_END itself.
                let what = match whence as i32 {
                    libc::SEEK_DATA => Seek::Data,
                    libc::SEEK_HOLE => Seek::Hole,
                    _ => return Err(libc::EINVAL),
                };
                if offset > i64::MAX as u64 {
                    return Err(libc::ENXIO);
                }
                let found = engine(vol.seek(i, offset, what))?;
                let mut out = Out::with_capacity(8);
                out.u64(found);
                Ok(out)
            }
            op::COPY_FILE_RANGE => {
                let (_fh_in, off_in, ino_out) = (arg(a.u64())?, arg(a.u64())?, arg(a.u64())?);
                let (_fh_out, off_out, len) = (arg(a.u64())?, arg(a.u64())?, arg(a.u64())?);
                // Chunks are shared, not copied: `cp` of a large file is a metadata change.
                let copied = engine(vol.copy_range(i, off_in, Ino(ino_out), off_out, len))?;
                let mut out = Out::with_capacity(8);
                out.u32(u32::try_from(copied).unwrap_or(u32::MAX)).u32(0);
                Ok(out)
            }
            op::DESTROY => empty(),
            // Locks are handled by the kernel (no FUSE_POSIX_LOCKS); the rest is not offered.
            _ => Err(libc::ENOSYS),
        }
    }

    fn readdir(&self, dir: Ino, offset: u64, limit: usize) -> Handled {
        let mut out = Out::with_capacity(limit.min(64 << 10));
        let mut cookie = offset;
        if cookie < 1 {
            if !put_dirent(&mut out, limit, dir.0, 1, Kind::Dir, b".") {
                return Ok(out);
            }
            cookie = 1;
        }
        if cookie < 2 {
            let parent = engine(self.vol.parent_of(dir))?;
            if !put_dirent(&mut out, limit, parent.0, 2, Kind::Dir, b"..") {
                return Ok(out);
            }
            cookie = 2;
        }
        loop {
            let entries = engine(self.vol.readdir(dir, cookie, READDIR_BATCH))?;
            if entries.is_empty() {
                return Ok(out);
            }
            for e in entries {
                if !put_dirent(&mut out, limit, e.ino.0, e.cookie, e.kind, &e.name) {
                    return Ok(out);
                }
                cookie = e.cookie;
            }
        }
    }

    fn readdirplus(&self, dir: Ino, offset: u64, limit: usize) -> Handled {
        let mut out = Out::with_capacity(limit.min(64 << 10));
        // A `fuse_direntplus` is a `fuse_entry_out` (128 bytes) before the dirent.
        let add = |out: &mut Out, a: &Attr, cookie: u64, name: &[u8]| {
            if out.0.len() + 128 + (24 + name.len()).next_multiple_of(8) > limit {
                return false;
            }
            put_entry(out, Some(a), ENTRY_TTL, TTL);
            put_dirent(out, usize::MAX, a.ino.0, cookie, a.inode.kind, name)
        };
        let mut cookie = offset;
        if cookie < 2 {
            let me = engine(self.vol.getattr(dir))?;
            let parent = engine(self.vol.parent_of(dir).and_then(|p| self.vol.getattr(p)))?;
            for (c, name, a) in [(1, &b"."[..], &me), (2, &b".."[..], &parent)] {
                if c > cookie {
                    if !add(&mut out, a, c, name) {
                        return Ok(out);
                    }
                    cookie = c;
                }
            }
        }
        loop {
            let entries = engine(self.vol.readdir(dir, cookie, READDIR_BATCH))?;
            if entries.is_empty() {
                return Ok(out);
            }
            for e in entries {
                let a = engine(self.vol.getattr(e.ino))?;
                if !add(&mut out, &a, e.cookie, &e.name) {
                    return Ok(out);
                }
                cookie = e.cookie;
            }
        }
    }

    fn fallocate(&self, i: Ino, offset: u64, length: u64, mode: i32) -> Handled {
        // Linux passes only these modes to a FUSE file system (collapse and insert range
        // are refused before they reach it).
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        const ZERO_KEEP: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        let vol = &self.vol;
        match mode {
            0 => engine(vol.allocate(i, offset, length))?,
            libc::FALLOC_FL_KEEP_SIZE => {}
            PUNCH => engine(vol.punch_hole(i, offset, length))?,
            libc::FALLOC_FL_ZERO_RANGE => engine(vol.zero_range(i, offset, length, false))?,
            ZERO_KEEP => engine(vol.zero_range(i, offset, length, true))?,
            _ => return Err(libc::EOPNOTSUPP),
        }
        empty()
    }
}

/// `fuse_setattr_in` as the engine's `SetAttr`.
pub fn setattr_args(mut a: Args<'_>) -> Result<SetAttr, i32> {
    let valid = arg(a.u32())?;
    arg(a.skip(4))?;
    let (_fh, size, _lock_owner) = (arg(a.u64())?, arg(a.u64())?, arg(a.u64())?);
    let (atime, mtime, _ctime) = (arg(a.u64())?, arg(a.u64())?, arg(a.u64())?);
    let (atimensec, mtimensec, _ctimensec) = (arg(a.u32())?, arg(a.u32())?, arg(a.u32())?);
    let mode = arg(a.u32())?;
    arg(a.skip(4))?;
    let (uid, gid) = (arg(a.u32())?, arg(a.u32())?);
    let when = |bit: u32, now_bit: u32, secs: u64, nanos: u32| {
        if valid & now_bit != 0 {
            Some(SetTime::Now)
        } else if valid & bit != 0 {
            Some(SetTime::At(Timestamp { secs: secs as i64, nanos }))
        } else {
            None
        }
    };
    Ok(SetAttr {
        perm: (valid & abi::FATTR_MODE != 0).then_some(mode & 0o7777),
        uid: (valid & abi::FATTR_UID != 0).then_some(uid),
        gid: (valid & abi::FATTR_GID != 0).then_some(gid),
        size: (valid & abi::FATTR_SIZE != 0).then_some(size),
        atime: when(abi::FATTR_ATIME, abi::FATTR_ATIME_NOW, atime, atimensec),
        mtime: when(abi::FATTR_MTIME, abi::FATTR_MTIME_NOW, mtime, mtimensec),
    })
}

/// `fuse_read_in`: offset and size.
fn entry(a: Option<&Attr>) -> Handled {
    let mut out = Out::with_capacity(128 + 16);
    put_entry(&mut out, a, ENTRY_TTL, TTL);
    Ok(out)
}

fn attr(a: &Attr) -> Handled {
    let mut out = Out::with_capacity(104);
    put_attr_out(&mut out, a, TTL);
    Ok(out)
}

/// `fuse_open_out`.
fn opened(fh: u64, open_flags: u32) -> Out {
    let mut out = Out::with_capacity(16);
    out.u64(fh).u32(open_flags).u32(0);
    out
}

/// A size query (`size` 0) gets `fuse_getxattr_out`; otherwise the value, if it fits.
fn xattr(size: u32, value: Vec<u8>) -> Handled {
    if size == 0 {
        let mut out = Out::with_capacity(8);
        out.u32(value.len() as u32).u32(0);
        Ok(out)
    } else if value.len() > size as usize {
        Err(libc::ERANGE)
    } else {
        Ok(Out(value))
    }
}

/// The metrics label of an operation.
fn op_name(opcode: u32) -> Option<&'static str> {
    Some(match opcode {
        op::LOOKUP => "lookup",
        op::GETATTR => "getattr",
        op::SETATTR => "setattr",
        op::READLINK => "readlink",
        op::SYMLINK => "symlink",
        op::MKNOD => "mknod",
        op::MKDIR => "mkdir",
        op::UNLINK => "unlink",
        op::RMDIR => "rmdir",
        op::RENAME | op::RENAME2 => "rename",
        op::LINK => "link",
        op::OPEN => "open",
        op::READ => "read",
        op::WRITE => "write",
        op::STATFS => "statfs",
        op::RELEASE => "release",
        op::FSYNC => "fsync",
        op::SETXATTR => "setxattr",
        op::GETXATTR => "getxattr",
        op::LISTXATTR => "listxattr",
        op::REMOVEXATTR => "removexattr",
        op::FLUSH => "flush",
        op::OPENDIR => "opendir",
        op::READDIR => "readdir",
        op::READDIRPLUS => "readdirplus",
        op::FSYNCDIR => "fsyncdir",
        op::ACCESS => "access",
        op::CREATE => "create",
        op::FALLOCATE => "fallocate",
        op::LSEEK => "lseek",
        op::COPY_FILE_RANGE => "copy_file_range",
        _ => return None,
    })
}
