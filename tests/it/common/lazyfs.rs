//! A FUSE pass-through file system with its own page cache, to simulate a power cut: data
//! written to a file stays in memory until the file is fsync'd (or fdatasync'd), and
//! `LazyFs::power_cut` drops whatever was not, as a machine losing power loses its dirty
//! pages. (`kill -9` of a process keeps them: the kernel still writes them back.)
//!
//! The model is LazyFS's (Jepsen's tool for this) and weaker than a real disk's in one way:
//! metadata operations (create, mkdir, mknod, symlink, rename, unlink, rmdir, link,
//! truncate, chmod and other attribute changes) reach the backing directory at once, as if
//! every one were journaled and synced; only file data is lazy. So it catches data that a
//! program reports durable without an fsync, not a missing fsync of a directory. Closing a
//! file (`flush`) persists nothing, and `sync_file_range` never reaches a FUSE file system.
//!
//! Files are opened with direct I/O, so the kernel's page cache holds none of their data:
//! the lazy cache here is the only one. Mapped files are not supported (RocksDB and nanofs
//! use none); `fallocate` answers EOPNOTSUPP (RocksDB then writes without preallocating).

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PAGE: u64 = 4096;
/// Attributes change behind the kernel's back (unsynced sizes): it must always ask.
const TTL: Duration = Duration::ZERO;

/// A file's unsynced data: whole pages over the backing file, and its size as written.
#[derive(Default)]
struct Dirty {
    pages: HashMap<u64, Box<[u8]>>,
    /// The size including unsynced writes (`None`: the backing file's).
    size: Option<u64>,
}

struct Node {
    /// Relative to the backing directory (one of its names, for a file with several).
    path: PathBuf,
    dirty: Dirty,
}

struct State {
    backing: PathBuf,
    nodes: HashMap<u64, Node>,
    /// Backing inode number → ours.
    by_backing: HashMap<u64, u64>,
    next_ino: u64,
    handles: HashMap<u64, (u64, Arc<File>)>,
    next_fh: u64,
    /// After a power cut every request fails: nothing more reaches the "disk".
    off: bool,
}

struct Lazy(Arc<Mutex<State>>);

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn to_time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

impl State {
    fn full(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        if self.off {
            return Err(Errno::EIO);
        }
        self.nodes.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.node(parent)?.path.join(name))
    }

    /// Our inode for the backing file at `rel` (registered on first sight) and its attributes.
    fn attr_at(&mut self, rel: &Path) -> Result<FileAttr, Errno> {
        let md = std::fs::symlink_metadata(self.full(rel)).map_err(|e| errno(&e))?;
        let ino = match self.by_backing.get(&md.ino()) {
            Some(i) => *i,
            None => {
                let i = self.next_ino;
                self.next_ino += 1;
                self.by_backing.insert(md.ino(), i);
                self.nodes.insert(i, Node { path: rel.to_path_buf(), dirty: Dirty::default() });
                i
            }
        };
        let node = self.nodes.get_mut(&ino).expect("registered");
        // A file renamed or linked elsewhere is found under its latest name.
        node.path = rel.to_path_buf();
        let size = node.dirty.size.unwrap_or(md.len());
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: to_time(md.atime(), md.atime_nsec()),
            mtime: to_time(md.mtime(), md.mtime_nsec()),
            ctime: to_time(md.ctime(), md.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind_of(md.mode()),
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev() as u32,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn attr(&mut self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let rel = self.node(ino)?.path.clone();
        self.attr_at(&rel)
    }

    fn file(&self, fh: FileHandle) -> Result<(u64, Arc<File>), Errno> {
        if self.off {
            return Err(Errno::EIO);
        }
        self.handles.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn open_handle(&mut self, ino: u64, file: File) -> FileHandle {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (ino, Arc::new(file)));
        FileHandle(fh)
    }

    /// The backing inode number of `rel` is about to lose its last name: the backing file
    /// system may give the number to a new file, which must get a node of its own (the old
    /// one lives on for the handles still open).
    fn forget_if_last_name(&mut self, rel: &Path) {
        if let Ok(md) = std::fs::symlink_metadata(self.full(rel)) {
            if md.nlink() <= 1 || md.is_dir() {
                self.by_backing.remove(&md.ino());
            }
        }
    }

    fn remove(&mut self, rel: &Path, dir: bool) -> Result<(), Errno> {
        let full = self.full(rel);
        let md = std::fs::symlink_metadata(&full).map_err(|e| errno(&e))?;
        let (ino, last) = (md.ino(), md.nlink() <= 1 || md.is_dir());
        if dir { std::fs::remove_dir(&full) } else { std::fs::remove_file(&full) }.map_err(|e| errno(&e))?;
        if last {
            self.by_backing.remove(&ino);
        }
        Ok(())
    }

    /// After a rename, every node at or under `from` moves to `to`.
    fn renamed(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
            }
        }
    }

    /// Writes a file's dirty pages to the backing file: it is "on disk" from now on.
    fn persist(&mut self, ino: u64, file: &File) -> std::io::Result<()> {
        let Some(node) = self.nodes.get_mut(&ino) else { return Ok(()) };
        let dirty = std::mem::take(&mut node.dirty);
        let size = match dirty.size {
            Some(s) => s,
            None => file.metadata()?.len(),
        };
        for (page, data) in dirty.pages {
            let at = page * PAGE;
            if at < size {
                file.write_all_at(&data[..(size - at).min(PAGE) as usize], at)?;
            }
        }
        file.set_len(size)
    }

    /// Cuts `ino`'s cached view to `size` (the backing file was cut already).
    fn truncated(&mut self, ino: u64, size: u64) {
        let Some(node) = self.nodes.get_mut(&ino) else { return };
        node.dirty.pages.retain(|page, _| page * PAGE < size);
        if let Some(data) = node.dirty.pages.get_mut(&(size / PAGE)) {
            data[(size % PAGE) as usize..].fill(0);
        }
        if node.dirty.size.is_some() {
            node.dirty.size = Some(size);
        }
    }
}

impl Lazy {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, rel: &Path, reply: ReplyEntry) {
        match self.state().attr_at(rel) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    /// Runs a metadata operation on the backing directory, then replies with the entry.
    fn make(&self, parent: INodeNo, name: &OsStr, reply: ReplyEntry, op: impl FnOnce(&Path) -> std::io::Result<()>) {
        let path = match self.state().child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let full = self.state().full(&path);
        match op(&full) {
            Ok(()) => self.entry(&path, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

fn open_options(flags: i32) -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    // Every handle reads and writes the backing file, whatever the kernel lets its caller
    // do: a partly written page is filled from it, and an fsync through a read-only handle
    // (legal, and how nanofs syncs its packs) writes the file's cached pages.
    o.read(true).write(true);
    // Truncation is applied by the caller, to the cache too; appends are positioned by
    // the kernel. Other flags (O_CLOEXEC, O_NOATIME...) do not matter here.
    o.custom_flags(flags & !(libc::O_ACCMODE | libc::O_TRUNC | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL));
    o
}

fn cstring(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in a path")
}

impl Filesystem for Lazy {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = self.state().child(parent, name);
        match path {
            Ok(p) => self.entry(&p, reply),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
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
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.state();
        let result = (|| -> Result<FileAttr, Errno> {
            let full = st.full(&st.node(ino)?.path);
            let io = |e: std::io::Error| errno(&e);
            if let Some(mode) = mode {
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(io)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&full, uid, gid).map_err(io)?;
            }
            if let Some(size) = size {
                // Metadata: the backing file is cut (or extended) now.
                std::fs::OpenOptions::new().write(true).open(&full).and_then(|f| f.set_len(size)).map_err(io)?;
                st.truncated(ino.0, size);
            }
            if atime.is_some() || mtime.is_some() {
                let t = |t: Option<TimeOrNow>| match t {
                    None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
                    Some(TimeOrNow::Now) => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
                    Some(TimeOrNow::SpecificTime(s)) => {
                        let d = s.duration_since(UNIX_EPOCH).unwrap_or_default();
                        libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) }
                    }
                };
                let times = [t(atime), t(mtime)];
                // SAFETY: a valid C path and two timespecs that outlive the call.
                #[allow(unsafe_code)]
                let rc = unsafe { libc::utimensat(libc::AT_FDCWD, cstring(&full).as_ptr(), times.as_ptr(), 0) };
                if rc != 0 {
                    return Err(io(std::io::Error::last_os_error()));
                }
            }
            st.attr(ino)
        })();
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let st = self.state();
        match st.node(ino).map(|n| st.full(&n.path)) {
            Ok(full) => match std::fs::read_link(full) {
                Ok(t) => reply.data(t.as_os_str().as_bytes()),
                Err(e) => reply.error(errno(&e)),
            },
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.make(parent, name, reply, |full| {
            // SAFETY: a valid C path; mknod reads nothing else of ours.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::mknod(cstring(full).as_ptr(), mode & !umask, u64::from(rdev)) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.make(parent, name, reply, |full| {
            std::fs::create_dir(full)?;
            std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode & !umask & 0o7777))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.state();
        match st.child(parent, name).and_then(|p| st.remove(&p, false)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.state();
        match st.child(parent, name).and_then(|p| st.remove(&p, true)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.make(parent, link_name, reply, |full| std::os::unix::fs::symlink(target, full));
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
        let mut st = self.state();
        let paths = st.child(parent, name).and_then(|from| Ok((from, st.child(newparent, newname)?)));
        let (from, to) = match paths {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        // A replaced target loses its name (an exchange keeps both).
        if !flags.contains(RenameFlags::RENAME_EXCHANGE) && st.full(&to).symlink_metadata().is_ok() {
            st.forget_if_last_name(&to);
        }
        let result = if flags.is_empty() {
            std::fs::rename(st.full(&from), st.full(&to))
        } else {
            // SAFETY: two valid C paths; renameat2 reads nothing else of ours.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    cstring(&st.full(&from)).as_ptr(),
                    libc::AT_FDCWD,
                    cstring(&st.full(&to)).as_ptr(),
                    flags.bits(),
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        match result {
            Ok(()) => {
                st.renamed(&from, &to);
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let mut st = self.state();
        let paths = st.node(ino).map(|n| n.path.clone()).and_then(|f| Ok((f, st.child(newparent, newname)?)));
        let (from, to) = match paths {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        // The node keeps its first name: both lead to the same backing file.
        match std::fs::hard_link(st.full(&from), st.full(&to)).map_err(|e| errno(&e)).and_then(|()| st.attr_at(&from)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut st = self.state();
        let full = match st.node(ino) {
            Ok(n) => st.full(&n.path),
            Err(e) => return reply.error(e),
        };
        match open_options(flags.0).open(full) {
            Ok(file) => {
                if flags.0 & libc::O_TRUNC != 0 {
                    if let Err(e) = file.set_len(0) {
                        return reply.error(errno(&e));
                    }
                    st.truncated(ino.0, 0);
                }
                let fh = st.open_handle(ino.0, file);
                reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.state();
        let path = match st.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let mut o = open_options(flags);
        o.write(true).create(true).mode(mode & !umask);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        }
        let file = match o.open(st.full(&path)) {
            Ok(f) => f,
            Err(e) => return reply.error(errno(&e)),
        };
        if flags & libc::O_TRUNC != 0 {
            if let Err(e) = file.set_len(0) {
                return reply.error(errno(&e));
            }
        }
        match st.attr_at(&path) {
            Ok(a) => {
                if flags & libc::O_TRUNC != 0 {
                    st.truncated(a.ino.0, 0);
                }
                let fh = st.open_handle(a.ino.0, file);
                reply.created(&TTL, &a, Generation(0), fh, FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let st = self.state();
        let (ino, file) = match st.file(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let dirty = &st.nodes[&ino].dirty;
        let file_size = match dirty.size {
            Some(s) => s,
            None => match file.metadata() {
                Ok(m) => m.len(),
                Err(e) => return reply.error(errno(&e)),
            },
        };
        let end = file_size.min(offset + u64::from(size));
        if offset >= end {
            return reply.data(&[]);
        }
        let mut out = vec![0u8; (end - offset) as usize];
        // The backing file's bytes (short where it ends: the rest reads as zeros), then
        // the unsynced pages over them.
        let mut done = 0;
        while done < out.len() {
            match file.read_at(&mut out[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => return reply.error(errno(&e)),
            }
        }
        for page in offset / PAGE..end.div_ceil(PAGE) {
            if let Some(data) = dirty.pages.get(&page) {
                let lo = (page * PAGE).max(offset);
                let hi = ((page + 1) * PAGE).min(end);
                out[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&data[(lo - page * PAGE) as usize..(hi - page * PAGE) as usize]);
            }
        }
        reply.data(&out);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.state();
        let (ino, file) = match st.file(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let backing_len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return reply.error(errno(&e)),
        };
        let dirty = &mut st.nodes.get_mut(&ino).expect("open files have nodes").dirty;
        let end = offset + data.len() as u64;
        let old_size = dirty.size.unwrap_or(backing_len);
        for page in offset / PAGE..end.div_ceil(PAGE) {
            let buf = match dirty.pages.entry(page) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    // A page is cached whole: what the backing file holds there (up to the
                    // cached size: beyond it, a cut file's old bytes must not come back).
                    let mut buf = vec![0u8; PAGE as usize].into_boxed_slice();
                    let valid = old_size.saturating_sub(page * PAGE).min(PAGE) as usize;
                    let mut done = 0;
                    while done < valid {
                        match file.read_at(&mut buf[done..valid], page * PAGE + done as u64) {
                            Ok(0) => break,
                            Ok(n) => done += n,
                            Err(e) => return reply.error(errno(&e)),
                        }
                    }
                    e.insert(buf)
                }
            };
            let lo = (page * PAGE).max(offset);
            let hi = ((page + 1) * PAGE).min(end);
            buf[(lo - page * PAGE) as usize..(hi - page * PAGE) as usize]
                .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
        }
        dirty.size = Some(old_size.max(end));
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        // Closing persists nothing.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The cached pages belong to the file, not the handle: they stay until an fsync
        // (through another handle) or the power cut.
        self.state().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.state();
        let result = st.file(fh).and_then(|(ino, file)| st.persist(ino, &file).map_err(|e| errno(&e)));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().node(ino) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut st = self.state();
        let dir = match st.node(ino) {
            Ok(n) => n.path.clone(),
            Err(e) => return reply.error(e),
        };
        let entries = match std::fs::read_dir(st.full(&dir)) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut names: Vec<OsString> = entries.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort();
        let mut all = vec![(ino, FileType::Directory, OsString::from(".")), (ino, FileType::Directory, "..".into())];
        for name in names {
            // Gone meanwhile: skipped.
            if let Ok(a) = st.attr_at(&dir.join(&name)) {
                all.push((a.ino, a.kind, name));
            }
        }
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory changes are persistent at once in this model.
        match self.state().node(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.state().backing.clone();
        match nix::sys::statvfs::statvfs(&backing) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Only root uses this file system.
        match self.state().node(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}

/// A lazy file system mounted in a temporary directory over a backing directory of its
/// own; unmounted on drop (also when a test panics).
pub struct LazyFs {
    pub mountpoint: PathBuf,
    pub backing: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    _dirs: tempfile::TempDir,
}

impl LazyFs {
    pub fn new() -> Self {
        let dirs = tempfile::Builder::new().prefix("nanofs-lazy-").tempdir().expect("tempdir");
        let (mountpoint, backing) = (dirs.path().join("mnt"), dirs.path().join("disk"));
        std::fs::create_dir(&mountpoint).unwrap();
        std::fs::create_dir(&backing).unwrap();
        let root_ino = std::fs::metadata(&backing).unwrap().ino();
        let state = Arc::new(Mutex::new(State {
            backing: backing.clone(),
            nodes: HashMap::from([(1, Node { path: PathBuf::new(), dirty: Dirty::default() })]),
            by_backing: HashMap::from([(root_ino, 1)]),
            next_ino: 2,
            handles: HashMap::new(),
            next_fh: 1,
            off: false,
        }));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("lazyfs".into()), MountOption::DefaultPermissions];
        config.n_threads = Some(4);
        let session = fuser::spawn_mount(Lazy(state.clone()), &mountpoint, &config).expect("lazy FS mounts");
        Self { mountpoint, backing, state, session: Some(session), _dirs: dirs }
    }

    /// Loses every write not fsync'd, as a power cut would, and unmounts. Whatever still
    /// has files open on it gets EIO from now on; the backing directory stays, holding
    /// what was on the "disk".
    pub fn power_cut(&mut self) {
        {
            let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            st.off = true;
            for node in st.nodes.values_mut() {
                node.dirty = Dirty::default();
            }
        }
        self.unmount();
    }

    fn unmount(&mut self) {
        if let Some(session) = self.session.take() {
            // Lazily: a process killed a moment ago may still be closing its files.
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
            drop(session);
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.unmount();
    }
}
