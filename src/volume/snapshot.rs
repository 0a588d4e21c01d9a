//! Snapshots and clones: copies of a directory tree that share every chunk.
//!
//! A clone copies the tree's metadata (inodes, entries, extents, xattrs, symlink targets)
//! under new inode numbers and adds one reference to each chunk its extents use; no chunk
//! body is read or written, so the cost is proportional to the number of files and
//! extents, not to their bytes. The whole copy is one atomic batch taken under the commit
//! lock, so it is a point-in-time image and a crash leaves either all of it or nothing.
//!
//! A snapshot is a clone of the root whose inodes are frozen (`Inode::frozen`: every change
//! is refused with `ReadOnly`), placed in the snapshots directory. That directory is
//! reached as `/.snapshots` from the root but is not listed there, so `rsync`, `tar` and
//! `du` of the mount do not walk into history (like ZFS's hidden `.zfs`).

use super::error::{Error, Result};
use super::records::{decode_xattr, DirentRecord, Inode, Kind, Timestamp};
use super::tree::{check_name, Attr};
use super::txn::Txn;
use super::Volume;
use crate::ids::Ino;
use crate::store::format::META_SNAPSHOTS_DIR;
use crate::store::keys;
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Name under which the root shows the snapshots directory.
pub const SNAPSHOTS_NAME: &[u8] = b".snapshots";

/// One snapshot as `snapshot list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its name under `/.snapshots`.
    pub name: String,
    /// Unix seconds of its creation.
    pub created: i64,
    /// Inode of its root directory.
    pub ino: u64,
}

impl Volume {
    /// The snapshots directory, if a snapshot was ever taken.
    pub(crate) fn snapshots_dir(&self) -> Result<Option<Ino>> {
        self.meta_ino(META_SNAPSHOTS_DIR)
    }

    /// Takes a read-only snapshot of the directory at volume path `path` (`/`: the whole
    /// tree) as `/.snapshots/NAME`.
    pub fn snapshot_create(&self, name: &str, path: &str) -> Result<SnapshotInfo> {
        check_name(name.as_bytes())?;
        let src = self.resolve(path)?;
        if self.load_inode(src)?.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        self.commit_all_windows()?;
        let mut txn = self.txn()?;
        txn.allow_frozen = true;
        let dir = match self.snapshots_dir()? {
            Some(d) => d,
            None => {
                let mut inode = Inode::new(Kind::Dir, 0o555, 0, 0);
                inode.parent = Ino::ROOT.0;
                inode.frozen = true;
                let d = txn.create_inode(inode);
                txn.put_hidden_dir(META_SNAPSHOTS_DIR, SNAPSHOTS_NAME, d);
                d
            }
        };
        if self.dirent(dir, name.as_bytes())?.is_some() {
            return Err(Error::Exists);
        }
        let ino = self.copy_tree(&mut txn, src, dir, name.as_bytes(), true)?;
        let created = txn.inode(ino)?.crtime;
        // The kernel keeps a listing until the directory's mtime changes.
        let d = txn.inode_mut(dir)?;
        d.mtime = created;
        d.ctime = created;
        let created = created.secs;
        txn.commit(Durability::Synced)?;
        tracing::info!(snapshot = name, path, inode = %ino, "snapshot taken");
        Ok(SnapshotInfo { name: name.into(), created, ino: ino.0 })
    }

    /// Every snapshot, oldest first.
    pub fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        let Some(dir) = self.snapshots_dir()? else { return Ok(vec![]) };
        let mut out = Vec::new();
        for e in self.readdir(dir, 0, usize::MAX)? {
            let inode = self.load_inode(e.ino)?;
            out.push(SnapshotInfo {
                name: String::from_utf8_lossy(&e.name).into(),
                created: inode.crtime.secs,
                ino: e.ino.0,
            });
        }
        out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(out)
    }

    /// Deletes snapshot `name`; its chunks lose a reference each (GC frees what only it held).
    pub fn snapshot_delete(&self, name: &str) -> Result<()> {
        let dir = self.snapshots_dir()?.ok_or(Error::NotFound)?;
        let mut txn = self.txn()?;
        txn.allow_frozen = true;
        let entry = self.dirent(dir, name.as_bytes())?.ok_or(Error::NotFound)?;
        self.delete_frozen_tree(&mut txn, entry.ino)?;
        txn.delete_dirent(dir, name.as_bytes());
        let d = txn.inode_mut(dir)?;
        d.nlink -= 1;
        d.mtime = Timestamp::now();
        d.ctime = d.mtime;
        txn.commit(Durability::Synced)?;
        tracing::info!(snapshot = name, "snapshot deleted");
        Ok(())
    }

    /// Clones the file or tree at volume path `src` to the new path `dst`; the copy shares
    /// every chunk and is writable (cloning out of a snapshot restores it).
    pub fn clone_path(&self, src: &str, dst: &str) -> Result<Attr> {
        let src = self.resolve(src)?;
        let (parent, name) = match dst.trim_end_matches('/').rsplit_once('/') {
            Some((p, n)) => (self.resolve(p)?, n),
            None => (Ino::ROOT, dst),
        };
        check_name(name.as_bytes())?;
        if self.is_reserved_name(parent, name.as_bytes()) {
            return Err(Error::Exists);
        }
        self.commit_all_windows()?;
        let mut txn = self.txn()?;
        if txn.inode(parent)?.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if self.dirent(parent, name.as_bytes())?.is_some() {
            return Err(Error::Exists);
        }
        let ino = self.copy_tree(&mut txn, src, parent, name.as_bytes(), false)?;
        let now = Timestamp::now();
        let p = txn.inode_mut(parent)?;
        p.mtime = now;
        p.ctime = now;
        txn.commit(Durability::Buffered)?;
        self.getattr(ino)
    }

    /// The inode at a volume path (`/`-separated, relative to the root; `.snapshots` works).
    pub fn resolve(&self, path: &str) -> Result<Ino> {
        let mut ino = Ino::ROOT;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            ino = if part == ".." { self.parent_of(ino)? } else { self.lookup(ino, part.as_bytes())?.ino };
        }
        Ok(ino)
    }

    /// Copies the tree at `src` as `name` in `dst_parent` inside `txn`; returns the new top.
    /// Hard links inside the tree stay hard links; the copy reads only committed records
    /// (the caller holds the commit lock, so they cannot change meanwhile).
    fn copy_tree(&self, txn: &mut Txn<'_>, src: Ino, dst_parent: Ino, name: &[u8], freeze: bool) -> Result<Ino> {
        let mut copies: HashMap<Ino, Ino> = HashMap::new();
        let mut stack = vec![(src, dst_parent, name.to_vec())];
        let mut top = None;
        while let Some((from, parent, name)) = stack.pop() {
            if let Some(&copy) = copies.get(&from) {
                // Another name of a file copied already.
                txn.inode_mut(copy)?.nlink += 1;
                let kind = txn.inode(copy)?.kind;
                txn.put_dirent(parent, &DirentRecord { ino: copy, kind, name });
                continue;
            }
            let mut inode = self.load_inode(from)?;
            inode.frozen = freeze;
            if inode.kind == Kind::Dir {
                inode.nlink = 2;
                inode.parent = parent.0;
            } else {
                inode.nlink = 1;
            }
            let kind = inode.kind;
            let to = txn.create_inode(inode);
            top.get_or_insert(to);
            txn.put_dirent(parent, &DirentRecord { ino: to, kind, name });
            if kind == Kind::Dir {
                txn.inode_mut(parent)?.nlink += 1;
                for e in self.readdir(from, 0, usize::MAX)? {
                    stack.push((e.ino, to, e.name));
                }
            } else {
                copies.insert(from, to);
            }
            for (off, e) in self.extents_from(from, 0)? {
                txn.put_extent(to, off, e, None);
            }
            // Sealed records are bound to their key, which names the inode: re-seal them.
            for kv in self.store.scan(Cf::Xattrs, &from.to_key(), &from.to_key()) {
                let (k, v) = kv?;
                let plain = self.meta.open(Cf::Xattrs.name(), &k, &v)?;
                decode_xattr(&plain)?;
                let key = keys::named_key(to, k[8..].try_into().map_err(|_| Error::CorruptMeta("xattr key".into()))?);
                txn.batch.put(Cf::Xattrs, &key, &self.meta.seal(Cf::Xattrs.name(), &key, &plain));
            }
            if kind == Kind::Symlink {
                let target = self.readlink(from)?;
                let key = keys::ino_key(to);
                txn.batch.put(Cf::Symlinks, &key, &self.meta.seal(Cf::Symlinks.name(), &key, &target));
            }
        }
        top.ok_or(Error::NotFound)
    }

    /// Deletes a frozen tree: every inode in it and every entry under it. A frozen tree is
    /// closed (no hard link leads out of it), so each inode is deleted once. A file still
    /// open becomes an orphan, reclaimed at its last close.
    fn delete_frozen_tree(&self, txn: &mut Txn<'_>, top: Ino) -> Result<()> {
        let mut seen = HashSet::new();
        let mut stack = vec![top];
        while let Some(ino) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if self.load_inode(ino)?.kind == Kind::Dir {
                for e in self.readdir(ino, 0, usize::MAX)? {
                    txn.delete_dirent(ino, &e.name);
                    stack.push(e.ino);
                }
            }
            if self.open_count(ino) > 0 {
                txn.inode_mut(ino)?.nlink = 0;
                txn.batch.put(Cf::Orphans, &keys::ino_key(ino), &[]);
            } else {
                txn.delete_inode(ino)?;
            }
        }
        Ok(())
    }
}
