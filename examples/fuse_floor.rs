//! The floor of a FUSE file system on this machine: an in-memory file system that does
//! nothing but keep its tree and bytes in a map, served by nanofs's own transports with
//! nanofs's options (same threads, `FUSE_INIT` flags, caching times, negative entries, no
//! directory handles, no flush after read-only opens). What a copy into it costs is what
//! the kernel's request pattern and the round trips cost alone: no file system can copy
//! faster through FUSE here. `benches/scripts/fuse_floor.sh` compares it with nanofs and
//! gocryptfs.
//!
//!   fuse_floor MOUNTPOINT [auto|uring|dev]   (serves until unmounted: `fusermount3 -u MOUNTPOINT`)

use nanofs::config::FuseTransport;
use nanofs::fs::abi::{op, Args, CreateIn, InHeader, Out, ReadIn, WriteIn};
use nanofs::fs::attr::{put_attr_out, put_dirent, put_entry};
use nanofs::fs::{wanted_flags, Handler, MountConfig, Negotiated, Reply, MAX_WRITE};
use nanofs::volume::records::{Inode, Timestamp};
use nanofs::volume::{Attr, Kind, SetTime};
use nanofs::Ino;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(1);
const ENTRY_TTL: Duration = Duration::from_secs(60);

struct Node {
    attr: Attr,
    data: Vec<u8>,
    entries: BTreeMap<Vec<u8>, u64>,
    target: Vec<u8>,
}

struct Tree {
    nodes: HashMap<u64, Node>,
    next: u64,
}

struct Floor {
    tree: Mutex<Tree>,
}

impl Tree {
    fn add(&mut self, parent: u64, name: &[u8], kind: Kind, mode: u32, h: &InHeader) -> Result<Attr, i32> {
        let dir = self.nodes.get(&parent).ok_or(libc::ENOENT)?;
        if dir.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        let attr = Attr { ino: Ino(ino), inode: Inode::new(kind, mode & 0o7777, h.uid, h.gid) };
        self.nodes.insert(ino, Node { attr: attr.clone(), data: vec![], entries: BTreeMap::new(), target: vec![] });
        let dir = self.nodes.get_mut(&parent).expect("checked");
        dir.entries.insert(name.to_vec(), ino);
        dir.attr.inode.mtime = Timestamp::now();
        Ok(attr)
    }
}

fn entry(a: Option<&Attr>) -> Result<Out, i32> {
    let mut out = Out::default();
    put_entry(&mut out, a, ENTRY_TTL, TTL);
    Ok(out)
}

fn attr(a: &Attr) -> Result<Out, i32> {
    let mut out = Out::default();
    put_attr_out(&mut out, a, TTL);
    Ok(out)
}

fn opened(flags: u32) -> Out {
    let mut out = Out::default();
    out.u64(0).u32(flags).u32(0);
    out
}

fn time(t: SetTime) -> Timestamp {
    match t {
        SetTime::Now => Timestamp::now(),
        SetTime::At(t) => t,
    }
}

impl Floor {
    fn dispatch(&self, h: &InHeader, mut a: Args<'_>) -> Result<Out, i32> {
        let bad = libc::EINVAL;
        let mut t = self.tree.lock().unwrap();
        let node = h.nodeid;
        match h.opcode {
            op::LOOKUP => {
                let name = a.name().ok_or(bad)?;
                let dir = t.nodes.get(&node).ok_or(libc::ENOENT)?;
                entry(dir.entries.get(name).map(|ino| &t.nodes[ino].attr))
            }
            op::GETATTR => attr(&t.nodes.get(&node).ok_or(libc::ENOENT)?.attr),
            op::SETATTR => {
                let set = nanofs::fs::setattr_args(a)?;
                let n = t.nodes.get_mut(&node).ok_or(libc::ENOENT)?;
                let i = &mut n.attr.inode;
                i.perm = set.perm.unwrap_or(i.perm);
                i.uid = set.uid.unwrap_or(i.uid);
                i.gid = set.gid.unwrap_or(i.gid);
                if let Some(size) = set.size {
                    n.data.resize(size as usize, 0);
                    i.size = size;
                }
                i.atime = set.atime.map_or(i.atime, time);
                i.mtime = set.mtime.map_or(i.mtime, time);
                i.ctime = Timestamp::now();
                attr(&n.attr)
            }
            op::READLINK => Ok(Out(t.nodes.get(&node).ok_or(libc::ENOENT)?.target.clone())),
            op::MKDIR => {
                let mode = a.u32().ok_or(bad)?;
                a.skip(4).ok_or(bad)?;
                entry(Some(&t.add(node, a.name().ok_or(bad)?, Kind::Dir, mode, h)?))
            }
            op::SYMLINK => {
                let (name, target) = (a.name().ok_or(bad)?, a.name().ok_or(bad)?);
                let mut added = t.add(node, name, Kind::Symlink, 0o777, h)?;
                let n = t.nodes.get_mut(&added.ino.0).expect("just added");
                n.target = target.to_vec();
                n.attr.inode.size = target.len() as u64;
                added.inode.size = n.attr.inode.size;
                entry(Some(&added))
            }
            op::RENAME | op::RENAME2 => {
                let newdir = a.u64().ok_or(bad)?;
                if h.opcode == op::RENAME2 {
                    a.skip(8).ok_or(bad)?;
                }
                let (name, newname) = (a.name().ok_or(bad)?, a.name().ok_or(bad)?);
                let ino = t.nodes.get_mut(&node).and_then(|d| d.entries.remove(name)).ok_or(libc::ENOENT)?;
                let d = t.nodes.get_mut(&newdir).ok_or(libc::ENOENT)?;
                if let Some(old) = d.entries.insert(newname.to_vec(), ino) {
                    t.nodes.remove(&old);
                }
                Ok(Out::default())
            }
            op::OPEN => {
                let flags = a.u32().ok_or(bad)?;
                let write = flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
                Ok(opened(if write { 0 } else { nanofs::fs::abi::FOPEN_NOFLUSH }))
            }
            op::READ => {
                let r = ReadIn::parse(&mut a).ok_or(bad)?;
                let n = t.nodes.get(&node).ok_or(libc::ENOENT)?;
                let start = (r.offset as usize).min(n.data.len());
                let end = (start + r.size as usize).min(n.data.len());
                Ok(Out(n.data[start..end].to_vec()))
            }
            op::WRITE => {
                let w = WriteIn::parse(&mut a).ok_or(bad)?;
                let n = t.nodes.get_mut(&node).ok_or(libc::ENOENT)?;
                let end = w.offset as usize + w.data.len();
                if n.data.len() < end {
                    n.data.resize(end, 0);
                }
                n.data[w.offset as usize..end].copy_from_slice(w.data);
                n.attr.inode.size = n.data.len() as u64;
                n.attr.inode.allocated = n.attr.inode.size;
                n.attr.inode.mtime = Timestamp::now();
                let mut out = Out::default();
                out.u32(w.data.len() as u32).u32(0);
                Ok(out)
            }
            op::FLUSH | op::RELEASE | op::RELEASEDIR | op::ACCESS => Ok(Out::default()),
            op::OPENDIR => Err(libc::ENOSYS),
            op::READDIR => {
                let r = ReadIn::parse(&mut a).ok_or(bad)?;
                let d = t.nodes.get(&node).ok_or(libc::ENOENT)?;
                let mut out = Out::default();
                for (k, (name, ino)) in d.entries.iter().enumerate().skip(r.offset as usize) {
                    if !put_dirent(&mut out, r.size as usize, *ino, (k + 1) as u64, t.nodes[ino].attr.inode.kind, name)
                    {
                        break;
                    }
                }
                Ok(out)
            }
            op::GETXATTR => Err(libc::ENODATA),
            op::CREATE => {
                let c = CreateIn::parse(&mut a).ok_or(bad)?;
                let added = t.add(node, c.name, Kind::File, c.mode, h)?;
                let mut out = entry(Some(&added))?;
                out.bytes(&opened(0).0);
                Ok(out)
            }
            _ => Err(libc::ENOSYS),
        }
    }
}

impl Handler for Floor {
    fn negotiate(&mut self, offered: u64, max_readahead: u32, want_uring: bool) -> Negotiated {
        // nanofs's flags, minus READDIRPLUS (the floor lists with plain READDIR).
        let readdirplus = nanofs::fs::abi::init::DO_READDIRPLUS | nanofs::fs::abi::init::READDIRPLUS_AUTO;
        Negotiated {
            flags: offered & wanted_flags(want_uring) & !readdirplus,
            max_readahead: max_readahead.min(MAX_WRITE),
        }
    }

    fn handle(&self, h: &InHeader, a: Args<'_>) -> Reply {
        match h.opcode {
            op::FORGET | op::BATCH_FORGET | op::INTERRUPT => Reply::None,
            _ => match self.dispatch(h, a) {
                Ok(out) => Reply::Ok(out),
                Err(errno) => Reply::Err(errno),
            },
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mountpoint = args.next().expect("usage: fuse_floor MOUNTPOINT [auto|uring|dev]");
    let transport: FuseTransport = args.next().as_deref().unwrap_or("auto").parse().map_err(std::io::Error::other)?;
    let root = Node {
        attr: Attr { ino: Ino(1), inode: Inode::new(Kind::Dir, 0o755, 0, 0) },
        data: vec![],
        entries: BTreeMap::new(),
        target: vec![],
    };
    let floor = Floor { tree: Mutex::new(Tree { nodes: HashMap::from([(1, root)]), next: 2 }) };
    let cfg = MountConfig { fsname: "fuse_floor".into(), ..MountConfig::default() };
    let session = nanofs::fs::mount_handler(floor, Path::new(&mountpoint), &cfg, transport)?;
    session.spawn()?.join()
}
