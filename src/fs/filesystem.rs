//! `fuser::Filesystem` for a volume: one engine call per request.

use super::attr::{file_attr, file_type, negative_entry};
use super::errno::to_errno;
use crate::ids::Ino;
use crate::metrics::FuseTimer;
use crate::volume::{Error as VolumeError, Handle, Kind, RenameMode, Seek, SetAttr, SetTime, Volume};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes. Short, because the HTTP side can change a
/// file's contents too.
const TTL: Duration = Duration::from_secs(1);
/// How long the kernel may cache a lookup, a miss included. Every change of a name made
/// outside the mount drops it at once (`Volume::foreign`), so this can be long: `rsync`
/// looks each new name up again well after its first miss.
const ENTRY_TTL: Duration = Duration::from_secs(60);
/// Largest write the kernel is asked to send in one request.
const MAX_WRITE: u32 = 1 << 20;
/// Directory entries fetched from the volume per readdir request.
const READDIR_BATCH: usize = 256;

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
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t.into()),
    }
}

macro_rules! try_reply {
    ($reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                $reply.error(to_errno(&err));
                return;
            }
        }
    };
}

impl fuser::Filesystem for NanoFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_WRITE);
        let _ = config.set_max_background(64);
        // A symlink's target never changes, so the kernel may keep what it read.
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        // Directory reads resume from the entry's cookie and need no handle: two round
        // trips fewer per directory listed.
        self.no_opendir = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT).is_ok();
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.vol.close() {
            tracing::error!(error = %e, "closing the volume failed");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _timer = FuseTimer::start("lookup");
        match self.vol.lookup(ino(parent), name.as_bytes()) {
            Ok(a) => reply.entry_with_ttls(&TTL, &ENTRY_TTL, &file_attr(&a), Generation(0)),
            // A miss is cached too (inode 0).
            Err(VolumeError::NotFound) => reply.entry_with_ttls(&TTL, &ENTRY_TTL, &negative_entry(), Generation(0)),
            Err(e) => reply.error(to_errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _timer = FuseTimer::start("getattr");
        let a = try_reply!(reply, self.vol.getattr(ino(i)));
        reply.attr(&TTL, &file_attr(&a));
    }

    fn setattr(
        &self,
        _req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _timer = FuseTimer::start("setattr");
        let set = SetAttr {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
        };
        let a = try_reply!(reply, self.vol.setattr(ino(i), &set));
        reply.attr(&TTL, &file_attr(&a));
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        let _timer = FuseTimer::start("readlink");
        let t = try_reply!(reply, self.vol.readlink(ino(i)));
        reply.data(&t);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _timer = FuseTimer::start("mknod");
        let Some(kind) = Kind::from_mode(mode) else {
            reply.error(Errno::EINVAL);
            return;
        };
        if kind == Kind::Dir || kind == Kind::Symlink {
            reply.error(Errno::EINVAL);
            return;
        }
        let a =
            try_reply!(reply, self.vol.create(ino(parent), name.as_bytes(), kind, mode, req.uid(), req.gid(), rdev));
        reply.entry(&TTL, &file_attr(&a), Generation(0));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let _timer = FuseTimer::start("mkdir");
        let a =
            try_reply!(reply, self.vol.create(ino(parent), name.as_bytes(), Kind::Dir, mode, req.uid(), req.gid(), 0));
        reply.entry(&TTL, &file_attr(&a), Generation(0));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("unlink");
        try_reply!(reply, self.vol.remove(ino(parent), name.as_bytes(), None));
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("rmdir");
        try_reply!(reply, self.vol.rmdir(ino(parent), name.as_bytes()));
        reply.ok();
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let _timer = FuseTimer::start("symlink");
        let a = try_reply!(
            reply,
            self.vol.symlink(ino(parent), link_name.as_bytes(), target.as_os_str().as_bytes(), req.uid(), req.gid())
        );
        reply.entry(&TTL, &file_attr(&a), Generation(0));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _timer = FuseTimer::start("rename");
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            reply.error(Errno::EINVAL);
            return;
        };
        try_reply!(reply, self.vol.rename(ino(parent), name.as_bytes(), ino(newparent), newname.as_bytes(), mode));
        reply.ok();
    }

    fn link(&self, _req: &Request, i: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _timer = FuseTimer::start("link");
        let a = try_reply!(reply, self.vol.link(ino(i), ino(newparent), newname.as_bytes()));
        reply.entry(&TTL, &file_attr(&a), Generation(0));
    }

    fn open(&self, _req: &Request, i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _timer = FuseTimer::start("open");
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let h = try_reply!(reply, self.vol.open_file(ino(i), write));
        // Closing a handle that cannot have written has nothing to commit: the kernel can
        // skip the flush round trip (`rsync` opens every file read-only to `fchmod` it).
        let open_flags = if write { FopenFlags::empty() } else { FopenFlags::FOPEN_NOFLUSH };
        reply.opened(FileHandle(h.0), open_flags);
    }

    fn read(
        &self,
        _req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _timer = FuseTimer::start("read");
        let data = try_reply!(reply, self.vol.read(ino(i), offset, size));
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _timer = FuseTimer::start("write");
        let append = flags.0 & libc::O_APPEND != 0;
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        try_reply!(reply, self.vol.write(ino(i), offset, data, append, kill));
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, i: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("flush");
        try_reply!(reply, self.vol.flush(ino(i), Handle(fh.0)));
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        i: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _timer = FuseTimer::start("release");
        try_reply!(reply, self.vol.release(ino(i), Handle(fh.0)));
        reply.ok();
    }

    fn fsync(&self, _req: &Request, i: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("fsync");
        try_reply!(reply, self.vol.fsync(ino(i), Some(Handle(fh.0))));
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _i: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _timer = FuseTimer::start("opendir");
        if self.no_opendir {
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::empty());
        }
    }

    fn readdir(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _timer = FuseTimer::start("readdir");
        let dir = ino(i);
        let mut cookie = offset;
        if cookie < 1 {
            if reply.add(i, 1, fuser::FileType::Directory, ".") {
                return reply.ok();
            }
            cookie = 1;
        }
        if cookie < 2 {
            let parent = try_reply!(reply, self.vol.parent_of(dir));
            if reply.add(INodeNo(parent.0), 2, fuser::FileType::Directory, "..") {
                return reply.ok();
            }
            cookie = 2;
        }
        loop {
            let entries = try_reply!(reply, self.vol.readdir(dir, cookie, READDIR_BATCH));
            if entries.is_empty() {
                return reply.ok();
            }
            for e in entries {
                if reply.add(INodeNo(e.ino.0), e.cookie, file_type(e.kind), OsStr::from_bytes(&e.name)) {
                    return reply.ok();
                }
                cookie = e.cookie;
            }
        }
    }

    fn readdirplus(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let _timer = FuseTimer::start("readdirplus");
        let dir = ino(i);
        let mut cookie = offset;
        if cookie < 2 {
            let me = try_reply!(reply, self.vol.getattr(dir));
            let parent = try_reply!(reply, self.vol.parent_of(dir).and_then(|p| self.vol.getattr(p)));
            for (c, name, a) in [(1, ".", &me), (2, "..", &parent)] {
                if c > cookie {
                    if reply.add(INodeNo(a.ino.0), c, name, &TTL, &file_attr(a), Generation(0)) {
                        return reply.ok();
                    }
                    cookie = c;
                }
            }
        }
        loop {
            let entries = try_reply!(reply, self.vol.readdir(dir, cookie, READDIR_BATCH));
            if entries.is_empty() {
                return reply.ok();
            }
            for e in entries {
                let a = try_reply!(reply, self.vol.getattr(e.ino));
                if reply.add(
                    INodeNo(e.ino.0),
                    e.cookie,
                    OsStr::from_bytes(&e.name),
                    &TTL,
                    &file_attr(&a),
                    Generation(0),
                ) {
                    return reply.ok();
                }
                cookie = e.cookie;
            }
        }
    }

    fn fsyncdir(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("fsyncdir");
        if self.vol.is_read_only() {
            return reply.ok();
        }
        try_reply!(reply, self.vol.sync());
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _i: INodeNo, reply: ReplyStatfs) {
        let _timer = FuseTimer::start("statfs");
        let s = try_reply!(reply, self.vol.statfs());
        reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, 255, s.bsize);
    }

    fn setxattr(
        &self,
        _req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _timer = FuseTimer::start("setxattr");
        let create = flags & libc::XATTR_CREATE != 0;
        let replace = flags & libc::XATTR_REPLACE != 0;
        try_reply!(reply, self.vol.setxattr(ino(i), name.as_bytes(), value, create, replace));
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _timer = FuseTimer::start("getxattr");
        let v = try_reply!(reply, self.vol.getxattr(ino(i), name.as_bytes()));
        xattr_reply(reply, size, &v);
    }

    fn listxattr(&self, _req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        let _timer = FuseTimer::start("listxattr");
        let names = try_reply!(reply, self.vol.listxattr(ino(i)));
        let mut list = Vec::new();
        for n in names {
            list.extend_from_slice(&n);
            list.push(0);
        }
        xattr_reply(reply, size, &list);
    }

    fn removexattr(&self, _req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("removexattr");
        try_reply!(reply, self.vol.removexattr(ino(i), name.as_bytes()));
        reply.ok();
    }

    fn access(&self, _req: &Request, i: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let _timer = FuseTimer::start("access");
        // The kernel checks permissions itself (default_permissions); only existence is ours.
        try_reply!(reply, self.vol.getattr(ino(i)));
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let _timer = FuseTimer::start("create");
        let a =
            try_reply!(reply, self.vol.create(ino(parent), name.as_bytes(), Kind::File, mode, req.uid(), req.gid(), 0));
        let h = try_reply!(reply, self.vol.open_file(a.ino, true));
        reply.created(&TTL, &file_attr(&a), Generation(0), FileHandle(h.0), FopenFlags::empty());
    }

    fn fallocate(
        &self,
        _req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _timer = FuseTimer::start("fallocate");
        // Linux passes only these modes to a FUSE file system (collapse and insert range
        // are refused before they reach it).
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        const ZERO_KEEP: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        let i = ino(i);
        match mode {
            0 => try_reply!(reply, self.vol.allocate(i, offset, length)),
            libc::FALLOC_FL_KEEP_SIZE => {}
            PUNCH => try_reply!(reply, self.vol.punch_hole(i, offset, length)),
            libc::FALLOC_FL_ZERO_RANGE => try_reply!(reply, self.vol.zero_range(i, offset, length, false)),
            ZERO_KEEP => try_reply!(reply, self.vol.zero_range(i, offset, length, true)),
            _ => return reply.error(Errno::EOPNOTSUPP),
        }
        reply.ok();
    }

    fn lseek(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let _timer = FuseTimer::start("lseek");
        // The kernel answers SEEK_SET, SEEK_CUR and SEEK_END itself.
        let what = match whence {
            libc::SEEK_DATA => Seek::Data,
            libc::SEEK_HOLE => Seek::Hole,
            _ => return reply.error(Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else { return reply.error(Errno::ENXIO) };
        let found = try_reply!(reply, self.vol.seek(ino(i), offset, what));
        reply.offset(found as i64);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _timer = FuseTimer::start("copy_file_range");
        // Chunks are shared, not copied: `cp` of a large file is a metadata change.
        let copied = try_reply!(reply, self.vol.copy_range(ino(ino_in), offset_in, ino(ino_out), offset_out, len));
        reply.written(copied as u32);
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
