//! Namespace operations: lookup, create, link, unlink, rename, readdir, attributes,
//! symlinks, extended attributes, statfs.
//!
//! Each change is one `Txn`. Names are looked up by their keyed hash; the name itself is
//! sealed inside the entry. Permission checks are the kernel's (`default_permissions`).

use super::acl;
use super::error::{Error, Result};
use super::hook::Change;
use super::records::{decode_xattr, encode_xattr, DirentRecord, Inode, Kind, Timestamp};
use super::txn::Txn;
use super::Volume;
use crate::ids::Ino;
use crate::store::keys;
use crate::store::{Cf, Durability};

/// Longest name of a directory entry or xattr, bytes.
pub const NAME_MAX: usize = 255;
/// Longest symlink target, bytes.
pub const SYMLINK_MAX: usize = 4095;
/// Largest xattr value, bytes (Linux's limit).
pub const XATTR_VALUE_MAX: usize = 65536;

/// An inode with its number: what `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// The record, with the size and times of unflushed writes applied.
    pub inode: Inode,
}

/// One directory entry as `readdir` returns it.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Resume cookie: pass it back to continue after this entry. Always > 2.
    pub cookie: u64,
    /// Child inode.
    pub ino: Ino,
    /// Child kind.
    pub kind: Kind,
    /// Name, raw bytes.
    pub name: Vec<u8>,
}

/// How `rename` treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace it (POSIX rename).
    Replace,
    /// Fail with `Exists` (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and target (`RENAME_EXCHANGE`).
    Exchange,
}

/// A time to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The current time.
    Now,
    /// This time.
    At(Timestamp),
}

/// Attributes to change; `None` leaves one alone.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// File system figures for `statfs`.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    /// Block size.
    pub bsize: u32,
    /// Total blocks of the disk holding the volume.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks free for unprivileged users.
    pub bavail: u64,
    /// Inodes in use.
    pub files: u64,
    /// Inodes that can still be created.
    pub ffree: u64,
}

pub(super) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::Invalid);
    }
    Ok(())
}

/// Makes the changes of `set` other than the size on `i`, at time `now`.
fn change_attrs(i: &mut Inode, set: &SetAttr, now: Timestamp) {
    if let Some(perm) = set.perm {
        i.perm = perm & 0o7777;
        i.ctime = now;
    }
    if set.uid.is_some() || set.gid.is_some() {
        let changes = set.uid.is_some_and(|u| u != i.uid) || set.gid.is_some_and(|g| g != i.gid);
        if changes && set.perm.is_none() && i.kind != Kind::Dir {
            i.drop_setid();
        }
        if let Some(u) = set.uid {
            i.uid = u;
        }
        if let Some(g) = set.gid {
            i.gid = g;
        }
        i.ctime = now;
    }
    let resolve = |t: SetTime| match t {
        SetTime::Now => now,
        SetTime::At(t) => t,
    };
    if let Some(t) = set.atime {
        i.atime = resolve(t);
        i.ctime = now;
    }
    if let Some(t) = set.mtime {
        i.mtime = resolve(t);
        i.ctime = now;
    }
}

/// Readdir cookie of a name hash: monotonic in the hash, above the 1 and 2 of `.` and `..`.
fn cookie_of(hash: &[u8]) -> u64 {
    (u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) >> 1) + 3
}

/// The smallest name hash whose entry can come after `cookie`, where a scan resumes;
/// `None` past the last cookie `cookie_of` gives (nothing comes after it).
fn resume_hash(cookie: u64) -> Option<u64> {
    cookie.checked_sub(3).map_or(Some(0), |c| c.checked_mul(2))
}

impl Volume {
    pub(super) fn dirent(&self, parent: Ino, name: &[u8]) -> Result<Option<DirentRecord>> {
        let key = keys::named_key(parent, &self.keys.name_hash(name));
        match self.store.get(Cf::Dirents, &key)? {
            Some(sealed) => Ok(Some(DirentRecord::decode(&self.meta.open(Cf::Dirents.name(), &key, &sealed)?)?)),
            None => Ok(None),
        }
    }

    fn dir_is_empty(&self, dir: Ino) -> Result<bool> {
        Ok(self.store.scan(Cf::Dirents, &dir.to_key(), &dir.to_key()).next().transpose()?.is_none())
    }

    /// Attributes of `ino`, including writes not yet committed.
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        Ok(Attr { ino, inode: self.current_inode(ino)? })
    }

    /// Looks `name` up in `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        if name.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        let p = self.load_inode(parent)?;
        if p.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if self.is_reserved_name(parent, name) {
            return self.getattr(self.hidden_dir(name)?.ok_or(Error::NotFound)?);
        }
        let entry = self.dirent(parent, name)?.ok_or(Error::NotFound)?;
        self.getattr(entry.ino)
    }

    /// Creates a file, directory, device node, fifo or socket `name` in `parent`.
    // The arguments of mknod(2) and their context, as every front-end has them.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        parent: Ino,
        name: &[u8],
        kind: Kind,
        perm: u32,
        uid: u32,
        gid: u32,
        rdev: u32,
    ) -> Result<Attr> {
        check_name(name)?;
        let mut txn = self.txn()?;
        let p = txn.inode(parent)?;
        if p.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        // A directory with setgid passes its group and (for directories) the bit itself on.
        let (gid, perm) = if p.perm & libc::S_ISGID != 0 {
            (p.gid, if kind == Kind::Dir { perm | libc::S_ISGID } else { perm })
        } else {
            (gid, perm)
        };
        if self.is_reserved_name(parent, name) || self.dirent(parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let mut inode = Inode::new(kind, perm, uid, gid);
        inode.rdev = rdev;
        if kind == Kind::Dir {
            inode.parent = parent.0;
        }
        let ino = txn.create_inode(inode.clone());
        txn.put_dirent(parent, &DirentRecord { ino, kind, name: name.to_vec() });
        let p = txn.inode_mut(parent)?;
        if kind == Kind::Dir {
            p.nlink += 1;
        }
        p.mtime = inode.mtime;
        p.ctime = inode.mtime;
        self.notify(&mut txn, Change::Added { parent, name, ino, kind }, None);
        txn.commit(Durability::Buffered)?;
        Ok(Attr { ino, inode })
    }

    /// Creates a symbolic link `name` in `parent` pointing at `target`.
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], uid: u32, gid: u32) -> Result<Attr> {
        check_name(name)?;
        if target.len() > SYMLINK_MAX {
            return Err(Error::NameTooLong);
        }
        let mut txn = self.txn()?;
        if txn.inode(parent)?.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if self.is_reserved_name(parent, name) || self.dirent(parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let mut inode = Inode::new(Kind::Symlink, 0o777, uid, gid);
        inode.size = target.len() as u64;
        let ino = txn.create_inode(inode.clone());
        let key = keys::ino_key(ino);
        let sealed = self.meta.seal(Cf::Symlinks.name(), &key, target);
        txn.batch.put(Cf::Symlinks, &key, &sealed);
        txn.put_dirent(parent, &DirentRecord { ino, kind: Kind::Symlink, name: name.to_vec() });
        let p = txn.inode_mut(parent)?;
        p.mtime = inode.mtime;
        p.ctime = inode.mtime;
        txn.commit(Durability::Buffered)?;
        Ok(Attr { ino, inode })
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let key = keys::ino_key(ino);
        match self.store.get(Cf::Symlinks, &key)? {
            Some(sealed) => self.meta.open(Cf::Symlinks.name(), &key, &sealed),
            None if self.load_inode(ino)?.kind != Kind::Symlink => Err(Error::Invalid),
            None => Err(Error::CorruptMeta(format!("symlink {ino} has no target"))),
        }
    }

    /// Adds the name `newname` in `newparent` for the existing inode `ino`.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> Result<Attr> {
        check_name(newname)?;
        let mut txn = self.txn()?;
        if txn.inode(newparent)?.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let kind = txn.inode(ino)?.kind;
        if kind == Kind::Dir {
            return Err(Error::NotPermitted);
        }
        if self.is_reserved_name(newparent, newname) || self.dirent(newparent, newname)?.is_some() {
            return Err(Error::Exists);
        }
        let now = Timestamp::now();
        txn.put_dirent(newparent, &DirentRecord { ino, kind, name: newname.to_vec() });
        let i = txn.inode_mut(ino)?;
        i.nlink += 1;
        i.ctime = now;
        let p = txn.inode_mut(newparent)?;
        p.mtime = now;
        p.ctime = now;
        // A linked inode that was an orphan (unlinked while open) lives again.
        txn.batch.delete(Cf::Orphans, &keys::ino_key(ino));
        self.notify(&mut txn, Change::Added { parent: newparent, name: newname, ino, kind }, None);
        txn.commit(Durability::Buffered)?;
        self.getattr(ino)
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.unlink_by(parent, name, None)
    }

    /// `unlink` on behalf of user `by`, whom hooks record.
    pub fn unlink_by(&self, parent: Ino, name: &[u8], by: Option<&str>) -> Result<()> {
        self.unlink_with(parent, name, by, |_| ())
    }

    /// `unlink_by` with `also` adding changes of its own to the unlink's batch.
    pub(crate) fn unlink_with(
        &self,
        parent: Ino,
        name: &[u8],
        by: Option<&str>,
        also: impl FnOnce(&mut Txn<'_>),
    ) -> Result<()> {
        let mut txn = self.txn()?;
        let entry = self.dirent(parent, name)?.ok_or(Error::NotFound)?;
        if entry.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        self.refuse_if_held(parent)?;
        txn.delete_dirent(parent, name);
        let now = Timestamp::now();
        let p = txn.inode_mut(parent)?;
        p.mtime = now;
        p.ctime = now;
        let orphan = self.drop_link(&mut txn, entry.ino, now)?;
        self.notify(&mut txn, Change::Removed { parent, name, ino: entry.ino, kind: entry.kind }, by);
        also(&mut txn);
        txn.commit(Durability::Buffered)?;
        orphan.map_or(Ok(()), |ino| self.reclaim_closed_orphan(ino))
    }

    /// One name of `ino` is gone: delete the inode with its last name, unless it is open;
    /// then it becomes an orphan, returned so the caller can reclaim it after committing if
    /// its last handle closed meanwhile (`reclaim_closed_orphan`).
    pub(crate) fn drop_link(&self, txn: &mut super::Txn<'_>, ino: Ino, now: Timestamp) -> Result<Option<Ino>> {
        let i = txn.inode_mut(ino)?;
        i.nlink = i.nlink.saturating_sub(1);
        i.ctime = now;
        if i.nlink == 0 {
            if self.open_count(ino) > 0 {
                txn.batch.put(Cf::Orphans, &keys::ino_key(ino), &[]);
                return Ok(Some(ino));
            }
            txn.delete_inode(ino)?;
        }
        Ok(None)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        if name == b"." {
            return Err(Error::Invalid);
        }
        if name == b".." {
            return Err(Error::NotEmpty);
        }
        let mut txn = self.txn()?;
        let entry = self.dirent(parent, name)?.ok_or(Error::NotFound)?;
        if entry.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if !self.dir_is_empty(entry.ino)? {
            return Err(Error::NotEmpty);
        }
        self.refuse_if_held(entry.ino)?;
        txn.delete_dirent(parent, name);
        txn.delete_inode(entry.ino)?;
        let now = Timestamp::now();
        let p = txn.inode_mut(parent)?;
        p.nlink -= 1;
        p.mtime = now;
        p.ctime = now;
        self.notify(&mut txn, Change::Removed { parent, name, ino: entry.ino, kind: Kind::Dir }, None);
        txn.commit(Durability::Buffered)
    }

    /// Whether `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor(&self, ancestor: Ino, mut dir: Ino) -> Result<bool> {
        loop {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == Ino::ROOT {
                return Ok(false);
            }
            dir = Ino(self.load_inode(dir)?.parent);
        }
    }

    /// Renames `parent/name` to `newparent/newname`.
    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8], mode: RenameMode) -> Result<()> {
        self.rename_by(parent, name, newparent, newname, mode, None)
    }

    /// `rename` on behalf of user `by`, whom hooks record.
    pub fn rename_by(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        mode: RenameMode,
        by: Option<&str>,
    ) -> Result<()> {
        let to = (newparent, newname);
        self.rename_with(parent, name, to, mode, by, Durability::Buffered, |_, _| Ok::<_, Error>(()))
    }

    /// `rename_by` with `also` adding changes of its own to the rename's batch, given the
    /// inode moved: both commit, with `durability`, or neither does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename_with<T, E: From<Error>>(
        &self,
        parent: Ino,
        name: &[u8],
        (newparent, newname): (Ino, &[u8]),
        mode: RenameMode,
        by: Option<&str>,
        durability: Durability,
        also: impl FnOnce(&mut Txn<'_>, Ino) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        // Replacing a file with one whose writes are not committed yet (its close handed
        // them to the committer) commits them first, as ext4's `auto_da_alloc` does: after
        // a crash the name holds the old file or the new one, never an empty one.
        if mode == RenameMode::Replace && self.dirent(newparent, newname)?.is_some() {
            if let Some(src) = self.dirent(parent, name)?.filter(|d| d.kind == Kind::File) {
                self.commit_file(src.ino, Durability::Buffered)?;
            }
        }
        let mut txn = self.txn()?;
        let (moved, orphan) = self.stage_rename(&mut txn, parent, name, newparent, newname, mode, by)?;
        let out = also(&mut txn, moved)?;
        txn.commit(durability)?;
        orphan.map_or(Ok(()), |ino| self.reclaim_closed_orphan(ino))?;
        Ok(out)
    }

    /// Stages a rename in `txn`; the inode moved, and the one it replaced if that was its
    /// last name (deleted after the commit unless open).
    #[allow(clippy::too_many_arguments)]
    fn stage_rename(
        &self,
        txn: &mut Txn<'_>,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        mode: RenameMode,
        by: Option<&str>,
    ) -> Result<(Ino, Option<Ino>)> {
        check_name(newname)?;
        if self.is_reserved_name(parent, name) || self.is_reserved_name(newparent, newname) {
            return Err(Error::NotPermitted);
        }
        let src = self.dirent(parent, name)?.ok_or(Error::NotFound)?;
        if txn.inode(newparent)?.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let dst = self.dirent(newparent, newname)?;
        if src.kind == Kind::Dir && parent != newparent && self.is_ancestor(src.ino, newparent)? {
            return Err(Error::Invalid);
        }
        // Under a hold nothing leaves or is renamed, and nothing is replaced.
        self.refuse_if_held(parent)?;
        if dst.is_some() {
            self.refuse_if_held(newparent)?;
        }
        if src.kind == Kind::Dir || dst.as_ref().is_some_and(|d| d.kind == Kind::Dir) {
            self.trash.dir_renamed();
        }
        // Moved out of the trash through the mount: restored by hand.
        self.forget_trashed(txn, parent, name)?;
        if parent == newparent && name == newname {
            return if mode == RenameMode::NoReplace { Err(Error::Exists) } else { Ok((src.ino, None)) };
        }
        let now = Timestamp::now();
        let mut orphan = None;
        match (mode, &dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(Error::Exists),
            (RenameMode::Exchange, None) => return Err(Error::NotFound),
            (RenameMode::Exchange, Some(d)) => {
                if d.kind == Kind::Dir && parent != newparent && self.is_ancestor(d.ino, parent)? {
                    return Err(Error::Invalid);
                }
                txn.put_dirent(parent, &DirentRecord { ino: d.ino, kind: d.kind, name: name.to_vec() });
                txn.put_dirent(newparent, &DirentRecord { ino: src.ino, kind: src.kind, name: newname.to_vec() });
                self.move_dir(txn, &src, parent, newparent)?;
                self.move_dir(txn, d, newparent, parent)?;
                txn.inode_mut(d.ino)?.ctime = now;
            }
            (_, Some(d)) if d.ino == src.ino => return Ok((src.ino, None)),
            (_, Some(d)) => {
                match (src.kind == Kind::Dir, d.kind == Kind::Dir) {
                    (true, false) => return Err(Error::NotDir),
                    (false, true) => return Err(Error::IsDir),
                    (true, true) => {
                        if !self.dir_is_empty(d.ino)? {
                            return Err(Error::NotEmpty);
                        }
                        txn.delete_inode(d.ino)?;
                        txn.inode_mut(newparent)?.nlink -= 1;
                    }
                    (false, false) => orphan = self.drop_link(txn, d.ino, now)?,
                }
                txn.delete_dirent(parent, name);
                txn.put_dirent(newparent, &DirentRecord { ino: src.ino, kind: src.kind, name: newname.to_vec() });
                self.move_dir(txn, &src, parent, newparent)?;
            }
            (_, None) => {
                txn.delete_dirent(parent, name);
                txn.put_dirent(newparent, &DirentRecord { ino: src.ino, kind: src.kind, name: newname.to_vec() });
                self.move_dir(txn, &src, parent, newparent)?;
            }
        }
        txn.inode_mut(src.ino)?.ctime = now;
        for dir in [parent, newparent] {
            let p = txn.inode_mut(dir)?;
            p.mtime = now;
            p.ctime = now;
        }
        let moved = Change::Moved { from: parent, name, to: newparent, newname, ino: src.ino, kind: src.kind };
        match (mode, &dst) {
            (RenameMode::Exchange, Some(d)) => {
                self.notify(txn, moved, by);
                let back = Change::Moved {
                    from: newparent,
                    name: newname,
                    to: parent,
                    newname: name,
                    ino: d.ino,
                    kind: d.kind,
                };
                self.notify(txn, back, by);
            }
            (_, Some(d)) => {
                self.notify(txn, Change::Removed { parent: newparent, name: newname, ino: d.ino, kind: d.kind }, by);
                self.notify(txn, moved, by);
            }
            (_, None) => self.notify(txn, moved, by),
        }
        Ok((src.ino, orphan))
    }

    /// Bookkeeping when a directory changes parent: its `..` and both parents' link counts.
    fn move_dir(&self, txn: &mut super::Txn<'_>, entry: &DirentRecord, from: Ino, to: Ino) -> Result<()> {
        if entry.kind != Kind::Dir || from == to {
            return Ok(());
        }
        txn.inode_mut(entry.ino)?.parent = to.0;
        txn.inode_mut(from)?.nlink -= 1;
        txn.inode_mut(to)?.nlink += 1;
        Ok(())
    }

    /// Entries of directory `ino` after `cookie` (0 = from the start), at most `limit`.
    /// `.` and `..` are not included; see `DirEntry::cookie`.
    pub fn readdir(&self, ino: Ino, cookie: u64, limit: usize) -> Result<Vec<DirEntry>> {
        let dir = self.load_inode(ino)?;
        if dir.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let prefix = ino.to_key();
        let mut start = prefix.to_vec();
        // A made-up cookie (`?after=` of `/files`, a seek on the directory) can be past
        // them all; shifted, it would wrap to the start of the directory.
        let Some(resume) = resume_hash(cookie) else { return Ok(Vec::new()) };
        start.extend_from_slice(&resume.to_be_bytes());
        let mut out = Vec::new();
        for kv in self.store.scan(Cf::Dirents, &prefix, &start) {
            let (k, v) = kv?;
            let c = cookie_of(&k[8..]);
            if c <= cookie {
                continue;
            }
            let rec = DirentRecord::decode(&self.meta.open(Cf::Dirents.name(), &k, &v)?)?;
            out.push(DirEntry { cookie: c, ino: rec.ino, kind: rec.kind, name: rec.name });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The parent of directory `ino` (itself for the root).
    pub fn parent_of(&self, ino: Ino) -> Result<Ino> {
        let i = self.load_inode(ino)?;
        Ok(if i.kind == Kind::Dir && i.parent != 0 { Ino(i.parent) } else { Ino::ROOT })
    }

    /// Changes attributes. A size change truncates or extends; `chown` clears setuid and
    /// (with group execute) setgid on non-directories, as Linux does.
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Uncommitted writes go first, so their times and size cannot override these. Only a
        // size change needs the file's lock held throughout; chmod, chown and utimens on
        // files without writes in flight (most of what rsync and tar do) skip it.
        let mut state = if set.size.is_some() { Some(self.file_state(ino)) } else { self.open_file_state(ino) };
        let mut guard = state.as_ref().map(|s| s.lock().expect("file lock"));
        // A closed file whose commit was handed over (`closing`) keeps its writes there, so
        // `rsync`'s chmod and utimens right after a close need not wait for it: they fold
        // into that commit, which writes them with the bytes, and cost no batch of their own.
        let now = Timestamp::now();
        if let Some(st) = guard.as_mut().filter(|st| st.folds_attr_changes() && set.size.is_none()) {
            let inode = st.fold_attr_changes(self.load_inode(ino)?, |i| change_attrs(i, set, now));
            return Ok(Attr { ino, inode });
        }
        if let Some(st) = guard.as_mut() {
            self.commit_window(ino, st, Durability::Buffered)?;
        }
        let mut txn = self.txn()?;
        if let Some(size) = set.size {
            match txn.inode(ino)?.kind {
                Kind::File => self.truncate(&mut txn, ino, size)?,
                Kind::Dir => return Err(Error::IsDir),
                _ => return Err(Error::Invalid),
            }
            let i = txn.inode_mut(ino)?;
            i.mtime = now;
            i.ctime = now;
        }
        let i = txn.inode_mut(ino)?;
        change_attrs(i, set, now);
        let inode = i.clone();
        txn.commit(Durability::Buffered)?;
        drop(guard);
        if state.take().is_some() {
            self.forget_idle_state(ino);
        }
        Ok(Attr { ino, inode })
    }

    /// Sets an extended attribute. `create`: fail if it exists; `replace`: fail if not.
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], create: bool, replace: bool) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        if name.is_empty() {
            return Err(Error::Invalid);
        }
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::Range);
        }
        if name.starts_with(super::fingerprint::XATTR_PREFIX) {
            return Err(Error::NotPermitted);
        }
        if name == acl::ACCESS {
            return match acl::parse_access(value) {
                acl::AccessAcl::Mode(bits) => {
                    // A chmod folded into the file's pending commit is written first, so
                    // that commit cannot undo this one (`FileState::pending_attrs`).
                    let state = self.open_file_state(ino);
                    let mut guard = state.as_ref().map(|s| s.lock().expect("file lock"));
                    if let Some(st) = guard.as_mut().filter(|st| st.has_pending_attrs()) {
                        self.commit_window(ino, st, Durability::Buffered)?;
                    }
                    let mut txn = self.txn()?;
                    let i = txn.inode_mut(ino)?;
                    i.perm = (i.perm & !0o777) | bits;
                    i.ctime = Timestamp::now();
                    txn.commit(Durability::Buffered)
                }
                acl::AccessAcl::Extended => Err(Error::Unsupported),
                acl::AccessAcl::Malformed => Err(Error::Invalid),
            };
        }
        if name == acl::DEFAULT {
            return Err(Error::Unsupported);
        }
        let mut txn = self.txn()?;
        let key = keys::named_key(ino, &self.keys.name_hash(name));
        let exists = self.store.contains(Cf::Xattrs, &key)?;
        if create && exists {
            return Err(Error::Exists);
        }
        if replace && !exists {
            return Err(Error::NoAttr);
        }
        let sealed = self.meta.seal(Cf::Xattrs.name(), &key, &encode_xattr(name, value));
        txn.batch.put(Cf::Xattrs, &key, &sealed);
        txn.inode_mut(ino)?.ctime = Timestamp::now();
        txn.commit(Durability::Buffered)
    }

    /// The value of an extended attribute.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        if name.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        if let Some(v) = self.virtual_xattr(ino, name)? {
            return Ok(v);
        }
        let key = keys::named_key(ino, &self.keys.name_hash(name));
        match self.store.get(Cf::Xattrs, &key)? {
            Some(sealed) => {
                let plain = self.meta.open(Cf::Xattrs.name(), &key, &sealed)?;
                Ok(decode_xattr(&plain)?.1.to_vec())
            }
            None => {
                self.load_inode(ino)?;
                Err(Error::NoAttr)
            }
        }
    }

    /// Names of all extended attributes.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.load_inode(ino)?;
        let prefix = ino.to_key();
        let mut names = Vec::new();
        for kv in self.store.scan(Cf::Xattrs, &prefix, &prefix) {
            let (k, v) = kv?;
            let plain = self.meta.open(Cf::Xattrs.name(), &k, &v)?;
            let name = decode_xattr(&plain)?.0;
            // Internal records (names starting with NUL) are not the user's.
            if !name.starts_with(b"\0") {
                names.push(name.to_vec());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        if name.starts_with(super::fingerprint::XATTR_PREFIX) {
            return Err(Error::NotPermitted);
        }
        let mut txn = self.txn()?;
        let key = keys::named_key(ino, &self.keys.name_hash(name));
        if !self.store.contains(Cf::Xattrs, &key)? {
            return Err(Error::NoAttr);
        }
        txn.batch.delete(Cf::Xattrs, &key);
        txn.inode_mut(ino)?.ctime = Timestamp::now();
        txn.commit(Durability::Buffered)
    }

    /// Space of the disk holding the volume (what new data can really use).
    pub fn statfs(&self) -> Result<StatFs> {
        let s = nix::sys::statvfs::statvfs(self.dir.as_path()).map_err(std::io::Error::from)?;
        let used_inodes = self.txn_state.lock().expect("commit lock").next_ino;
        Ok(StatFs {
            bsize: s.fragment_size() as u32,
            blocks: s.blocks(),
            bfree: s.blocks_free(),
            bavail: s.blocks_available(),
            files: used_inodes + (1 << 32),
            ffree: 1 << 32,
        })
    }

    /// Makes every committed change durable (syncs the write-ahead log).
    pub fn sync(&self) -> Result<()> {
        let txn = self.txn()?;
        txn.commit(Durability::Synced)
    }
}

#[cfg(test)]
mod tests {
    use super::{cookie_of, resume_hash};

    #[test]
    fn a_scan_resumes_at_the_cookie_and_nowhere_past_the_last() {
        assert_eq!(resume_hash(0), Some(0));
        assert_eq!(resume_hash(3), Some(0));
        let hash = 0x1234_5678_9abc_def0_u64;
        assert_eq!(resume_hash(cookie_of(&hash.to_be_bytes())), Some(hash));
        let last = cookie_of(&[0xff; 8]);
        assert_eq!(resume_hash(last), Some(u64::MAX - 1));
        assert_eq!(resume_hash(last + 1), None);
        assert_eq!(resume_hash(u64::MAX), None);
    }
}
