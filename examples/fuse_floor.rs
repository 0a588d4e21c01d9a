//! The floor of a FUSE file system on this machine: an in-memory file system that does
//! nothing but keep its tree and bytes in a map, mounted with nanofs's own options (same
//! threads, caching times, negative entries, no directory handles, no flush after
//! read-only opens). What a copy into it costs is what the kernel's request pattern and
//! the round trips cost alone: no file system can copy faster through FUSE here.
//! `benches/scripts/fuse_floor.sh` compares it with nanofs and gocryptfs.
//!
//!   fuse_floor MOUNTPOINT      (serves until unmounted: `fusermount3 -u MOUNTPOINT`)
//!
//! Env, to try what the kernel offers: `FLOOR_THREADS` (request threads, 6 like nanofs),
//! `FLOOR_WRITEBACK=1` (the kernel's writeback cache).

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::from_secs(1);
const ENTRY_TTL: Duration = Duration::from_secs(60);

struct Node {
    attr: FileAttr,
    data: Vec<u8>,
    entries: BTreeMap<OsString, u64>,
    target: Vec<u8>,
}

struct Tree {
    nodes: HashMap<u64, Node>,
    next: u64,
}

struct Floor {
    tree: Mutex<Tree>,
}

fn attr(ino: u64, kind: FileType, perm: u16, uid: u32, gid: u32) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 1 << 20,
        flags: 0,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(t) => t,
    }
}

impl Tree {
    fn add(&mut self, parent: u64, name: &OsStr, kind: FileType, mode: u32, req: &Request) -> Result<FileAttr, Errno> {
        let dir = self.nodes.get(&parent).ok_or(Errno::ENOENT)?;
        if dir.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        let a = attr(ino, kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        self.nodes.insert(ino, Node { attr: a, data: vec![], entries: BTreeMap::new(), target: vec![] });
        let dir = self.nodes.get_mut(&parent).expect("checked");
        dir.entries.insert(name.to_owned(), ino);
        dir.attr.mtime = SystemTime::now();
        Ok(a)
    }
}

impl fuser::Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_NO_OPENDIR_SUPPORT,
        ] {
            let _ = config.add_capabilities(flag);
        }
        if std::env::var_os("FLOOR_WRITEBACK").is_some() {
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = self.tree.lock().unwrap();
        let Some(dir) = t.nodes.get(&parent.0) else { return reply.error(Errno::ENOENT) };
        match dir.entries.get(name) {
            Some(ino) => reply.entry_with_ttls(&TTL, &ENTRY_TTL, &t.nodes[ino].attr, Generation(0)),
            None => {
                let mut miss = attr(0, FileType::RegularFile, 0, 0, 0);
                miss.ino = INodeNo(0);
                reply.entry_with_ttls(&TTL, &ENTRY_TTL, &miss, Generation(0));
            }
        }
    }

    fn getattr(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.lock().unwrap().nodes.get(&i.0) {
            Some(n) => reply.attr(&TTL, &n.attr),
            None => reply.error(Errno::ENOENT),
        }
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
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = self.tree.lock().unwrap();
        let Some(n) = t.nodes.get_mut(&i.0) else { return reply.error(Errno::ENOENT) };
        if let Some(m) = mode {
            n.attr.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.attr.uid = u;
        }
        if let Some(g) = gid {
            n.attr.gid = g;
        }
        if let Some(s) = size {
            n.data.resize(s as usize, 0);
            n.attr.size = s;
        }
        if let Some(a) = atime {
            n.attr.atime = time(a);
        }
        if let Some(m) = mtime {
            n.attr.mtime = time(m);
        }
        n.attr.ctime = SystemTime::now();
        reply.attr(&TTL, &n.attr);
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        match self.tree.lock().unwrap().nodes.get(&i.0) {
            Some(n) => reply.data(&n.target),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.tree.lock().unwrap().add(parent.0, name, FileType::Directory, mode, req) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let mut t = self.tree.lock().unwrap();
        match t.add(parent.0, link_name, FileType::Symlink, 0o777, req) {
            Ok(mut a) => {
                let n = t.nodes.get_mut(&a.ino.0).expect("just added");
                n.target = target.as_os_str().as_encoded_bytes().to_vec();
                n.attr.size = n.target.len() as u64;
                a.size = n.attr.size;
                reply.entry(&TTL, &a, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut t = self.tree.lock().unwrap();
        let Some(ino) = t.nodes.get_mut(&parent.0).and_then(|d| d.entries.remove(name)) else {
            return reply.error(Errno::ENOENT);
        };
        match t.nodes.get_mut(&newparent.0) {
            Some(d) => {
                let replaced = d.entries.insert(newname.to_owned(), ino);
                if let Some(old) = replaced {
                    t.nodes.remove(&old);
                }
                reply.ok();
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        reply.opened(FileHandle(0), if write { FopenFlags::empty() } else { FopenFlags::FOPEN_NOFLUSH });
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
        let t = self.tree.lock().unwrap();
        let Some(n) = t.nodes.get(&i.0) else { return reply.error(Errno::ENOENT) };
        let start = (offset as usize).min(n.data.len());
        let end = (start + size as usize).min(n.data.len());
        reply.data(&n.data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut t = self.tree.lock().unwrap();
        let Some(n) = t.nodes.get_mut(&i.0) else { return reply.error(Errno::ENOENT) };
        let end = offset as usize + data.len();
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[offset as usize..end].copy_from_slice(data);
        n.attr.size = n.data.len() as u64;
        n.attr.blocks = n.attr.size.div_ceil(512);
        n.attr.mtime = SystemTime::now();
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _i: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let t = self.tree.lock().unwrap();
        let Some(d) = t.nodes.get(&i.0) else { return reply.error(Errno::ENOENT) };
        for (k, (name, ino)) in d.entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (k + 1) as u64, t.nodes[ino].attr.kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, _i: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENODATA);
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
        match self.tree.lock().unwrap().add(parent.0, name, FileType::RegularFile, mode, req) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

fn main() -> std::io::Result<()> {
    let mountpoint = std::env::args_os().nth(1).expect("usage: fuse_floor MOUNTPOINT");
    let mut root = Node {
        attr: attr(1, FileType::Directory, 0o755, 0, 0),
        data: vec![],
        entries: BTreeMap::new(),
        target: vec![],
    };
    root.attr.ino = INodeNo(1);
    let tree = Tree { nodes: HashMap::from([(1, root)]), next: 2 };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("fuse_floor".into()),
        MountOption::DefaultPermissions,
        MountOption::CUSTOM("max_read=1048576".into()),
    ];
    config.n_threads = Some(std::env::var("FLOOR_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(6));
    config.clone_fd = true;
    let session = fuser::Session::new(Floor { tree: Mutex::new(tree) }, Path::new(&mountpoint), &config)?;
    session.run()
}
