//! The trash: with `[retention] trash_days > 0`, a file deleted through the mount or over
//! HTTP is moved to the hidden directory `/.trash` instead of being unlinked, and kept
//! there for that many days (docs/operations.md).
//!
//! Moving is a rename, so a trashed file keeps its inode: its data, owner, mode, times,
//! xattrs and hard links are what they were, and restoring it is a rename back. Each
//! trashed entry has a sealed record `trash/<id>` with the path it had; its name in
//! `/.trash` is `<id>-<old name>`. Deleting it from `/.trash` (or `trash empty`, or the
//! daemon when the period is over) deletes it for good. Directories are not trashed:
//! `rm -r` trashes the files and removes the then empty directories, and a restore makes
//! missing directories again.

use super::audit::AuditEvent;
use super::error::{Error, Result};
use super::records::Kind;
use super::tree::NAME_MAX;
use super::txn::Txn;
use super::{RenameMode, Volume};
use crate::ids::Ino;
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Name under which the root shows the trash.
pub const TRASH_NAME: &[u8] = b".trash";
const PREFIX: &[u8] = b"trash/";

/// One trashed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashItem {
    /// Its number; the prefix of its name in `/.trash`.
    pub id: u64,
    /// The path it had, from the volume's root.
    pub path: String,
    /// Its name in `/.trash`.
    pub name: String,
    /// Its inode (unchanged by trashing and restoring).
    pub ino: u64,
    /// Bytes of its data.
    pub size: u64,
    /// Unix seconds when it was deleted.
    pub deleted: i64,
    /// The user who deleted it over HTTP; `None`: through the mount or by the administrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What emptying the trash removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashEmptied {
    /// Entries deleted for good.
    pub items: u64,
    /// Bytes of their data (freed by the next garbage collection when no other file or
    /// snapshot shares their chunks).
    pub bytes: u64,
}

fn key(id: u64) -> Vec<u8> {
    [PREFIX, &id.to_be_bytes()[..]].concat()
}

/// The id at the start of a name in `/.trash`.
fn id_of(name: &[u8]) -> Option<u64> {
    let digits = name.split(|&b| b == b'-').next()?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The trash's state in memory: the next id, and the paths of recently trashed-from
/// directories. `rm -r` deletes a directory's files one after the other, and each needs
/// its directory's path, which costs a scan of every ancestor's entries; any directory
/// rename makes those paths stale (`dir_renamed`).
#[derive(Default)]
pub(crate) struct TrashState {
    /// The next id; 0 until read from the records at first use.
    next_id: Mutex<u64>,
    renames: AtomicU64,
    paths: Mutex<(u64, HashMap<Ino, String>)>,
}

impl TrashState {
    /// Called by every rename that moves or renames a directory.
    pub(crate) fn dir_renamed(&self) {
        self.renames.fetch_add(1, Ordering::Relaxed);
    }
}

impl Volume {
    /// Deletes the non-directory `name` in `parent` on behalf of `by`, as users delete (the
    /// mount, HTTP): into the trash when `[retention] trash_days > 0` and it lies in the
    /// visible tree, else for good. Deleting an entry of `/.trash` deletes it for good.
    pub fn remove(&self, parent: Ino, name: &[u8], by: Option<&str>) -> Result<()> {
        if self.hidden_dir(TRASH_NAME)? == Some(parent) {
            let forget = id_of(name).map(key);
            return self.unlink_with(parent, name, by, |txn| {
                if let Some(k) = forget {
                    txn.batch.delete(Cf::Meta, &k);
                }
            });
        }
        if self.config().retention.trash_days == 0 || !self.in_visible_tree(parent)? {
            return self.unlink_by(parent, name, by);
        }
        let entry = self.dirent(parent, name)?.ok_or(Error::NotFound)?;
        if entry.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        let dir_path = self.cached_dir_path(parent)?;
        let trash = self.hidden_dir_or_create(TRASH_NAME)?;
        let id = self.next_trash_id()?;
        let mut trash_name = format!("{id}-").into_bytes();
        trash_name.extend_from_slice(name);
        trash_name.truncate(NAME_MAX);
        let item = TrashItem {
            id,
            path: format!("{}/{}", dir_path.trim_end_matches('/'), String::from_utf8_lossy(name)),
            name: String::from_utf8_lossy(&trash_name).into_owned(),
            ino: entry.ino.0,
            size: 0,
            deleted: crate::utc::now_secs(),
            by: by.map(str::to_string),
        };
        let to = (trash, trash_name.as_slice());
        self.rename_with(parent, name, to, RenameMode::NoReplace, by, Durability::Buffered, |txn, ino| {
            let mut item = item;
            item.size = txn.inode(ino)?.size;
            self.put_trash_record(txn, &item);
            Ok::<_, Error>(())
        })
    }

    /// Drops the record of `name` in `parent` in `txn` if `parent` is the trash (the entry
    /// leaves it by a rename).
    pub(crate) fn forget_trashed(&self, txn: &mut Txn<'_>, parent: Ino, name: &[u8]) -> Result<()> {
        if let Some(id) = id_of(name) {
            if self.hidden_dir(TRASH_NAME)? == Some(parent) {
                txn.batch.delete(Cf::Meta, &key(id));
            }
        }
        Ok(())
    }

    fn put_trash_record(&self, txn: &mut Txn<'_>, item: &TrashItem) {
        let k = key(item.id);
        let json = serde_json::to_vec(item).expect("a trash record serialises");
        txn.batch.put(Cf::Meta, &k, &self.meta.seal(Cf::Meta.name(), &k, &json));
    }

    fn next_trash_id(&self) -> Result<u64> {
        let mut next = self.trash.next_id.lock().expect("trash ids");
        if *next == 0 {
            let last = self.record_key_floor(PREFIX, &key(u64::MAX))?;
            *next = last.and_then(|k| k[PREFIX.len()..].try_into().ok()).map_or(1, |b| u64::from_be_bytes(b) + 1);
        }
        let id = *next;
        *next += 1;
        Ok(id)
    }

    /// Whether `dir` lies in the tree users see (not in a hidden directory: the trash,
    /// snapshots, incomplete uploads, derived data).
    fn in_visible_tree(&self, mut dir: Ino) -> Result<bool> {
        let hidden = self.hidden_dirs()?;
        for _ in 0..4096 {
            if dir == Ino::ROOT {
                return Ok(true);
            }
            if hidden.contains(&dir) {
                return Ok(false);
            }
            dir = self.parent_of(dir)?;
        }
        Err(Error::Invalid)
    }

    fn cached_dir_path(&self, dir: Ino) -> Result<String> {
        let renames = self.trash.renames.load(Ordering::Relaxed);
        {
            let mut cache = self.trash.paths.lock().expect("trash paths");
            if cache.0 != renames || cache.1.len() > 1024 {
                *cache = (renames, HashMap::new());
            }
            if let Some(p) = cache.1.get(&dir) {
                return Ok(p.clone());
            }
        }
        let path = self.dir_path(dir)?;
        let mut cache = self.trash.paths.lock().expect("trash paths");
        if cache.0 == renames {
            cache.1.insert(dir, path.clone());
        }
        Ok(path)
    }

    /// Everything in the trash, oldest first.
    pub fn trash_list(&self) -> Result<Vec<TrashItem>> {
        Ok(self.records::<TrashItem>(PREFIX, PREFIX)?.into_iter().map(|(_, t)| t).collect())
    }

    /// Puts back what was deleted from `path`: the file deleted last from there, and when
    /// `path` was a directory, the last deleted version of every file that was below it.
    /// `id` picks one entry instead; `to` restores a single entry elsewhere. Missing
    /// directories are made again (mode 0755, owned by the file's owner). A path that is
    /// taken again is refused with `Exists` before anything moves.
    pub fn trash_restore(&self, path: &str, id: Option<u64>, to: Option<&str>) -> Result<Vec<TrashItem>> {
        let path = format!("/{}", path.trim_matches('/'));
        let items = self.trash_list()?;
        let mut chosen: Vec<TrashItem> = match id {
            Some(id) => items.into_iter().filter(|t| t.id == id).collect(),
            None => {
                let below = format!("{}/", path.trim_end_matches('/'));
                let mut latest: HashMap<String, TrashItem> = HashMap::new();
                for t in items.into_iter().filter(|t| t.path == path || t.path.starts_with(&below)) {
                    // Ids grow with time: the last one seen is the last deleted.
                    latest.insert(t.path.clone(), t);
                }
                latest.into_values().collect()
            }
        };
        chosen.sort_by_key(|t| t.id);
        if chosen.is_empty() {
            return Err(Error::NotFound);
        }
        if to.is_some() && chosen.len() > 1 {
            return Err(Error::Invalid);
        }
        let target = |t: &TrashItem| to.map_or_else(|| t.path.clone(), |p| format!("/{}", p.trim_matches('/')));
        for t in &chosen {
            if self.resolve(&target(t)).is_ok() {
                return Err(Error::Exists);
            }
        }
        let trash = self.hidden_dir(TRASH_NAME)?.ok_or(Error::NotFound)?;
        for t in &chosen {
            let owner = self.load_inode(Ino(t.ino)).map(|i| (i.uid, i.gid))?;
            let dest = target(t);
            let (parent, name) = self.mkdir_parents(&dest, owner)?;
            let from = self.dirent_name_in_trash(trash, t)?;
            let k = key(t.id);
            self.rename_with(
                trash,
                &from,
                (parent, name.as_bytes()),
                RenameMode::NoReplace,
                None,
                Durability::Buffered,
                |txn, _| {
                    txn.batch.delete(Cf::Meta, &k);
                    Ok::<_, Error>(())
                },
            )?;
            self.audit_or_log(AuditEvent::new("trash.restore", "admin", &dest).detail(format!("trash id {}", t.id)));
        }
        Ok(chosen)
    }

    /// The name of `t` in the trash directory (its record keeps it lossily when the old
    /// name was not UTF-8; the entry then is found by its id prefix).
    fn dirent_name_in_trash(&self, trash: Ino, t: &TrashItem) -> Result<Vec<u8>> {
        if self.dirent(trash, t.name.as_bytes())?.is_some() {
            return Ok(t.name.clone().into_bytes());
        }
        let prefix = format!("{}-", t.id).into_bytes();
        self.dir_entries(trash)?
            .into_iter()
            .find(|e| e.name.starts_with(&prefix) && e.ino.0 == t.ino)
            .map(|e| e.name)
            .ok_or(Error::NotFound)
    }

    /// Deletes for good what was trashed before `before` (Unix seconds; `None`: everything).
    pub fn trash_empty(&self, before: Option<i64>) -> Result<TrashEmptied> {
        self.empty_trash(before, "admin")
    }

    /// `trash_empty` on behalf of `actor`, whom the audit trail names.
    fn empty_trash(&self, before: Option<i64>, actor: &str) -> Result<TrashEmptied> {
        let mut out = TrashEmptied::default();
        let Some(trash) = self.hidden_dir(TRASH_NAME)? else { return Ok(out) };
        for t in self.trash_list()? {
            if before.is_some_and(|b| t.deleted >= b) {
                continue;
            }
            let k = key(t.id);
            match self.dirent_name_in_trash(trash, &t) {
                Ok(name) => self.unlink_with(trash, &name, None, |txn| txn.batch.delete(Cf::Meta, &k))?,
                // Renamed inside the trash through the mount, its name lost the id.
                Err(Error::NotFound) => {
                    let mut txn = self.txn()?;
                    txn.batch.delete(Cf::Meta, &k);
                    txn.commit(Durability::Buffered)?;
                }
                Err(e) => return Err(e),
            }
            out.items += 1;
            out.bytes += t.size;
        }
        if out.items > 0 {
            let detail = format!("{} files, {} bytes", out.items, out.bytes);
            self.audit_or_log(AuditEvent::new("trash.empty", actor, "/.trash").detail(detail));
        }
        Ok(out)
    }

    /// Forgets who deleted what is in the trash, for the entries user `by` deleted (their
    /// erasure); returns how many.
    pub fn trash_forget_deleter(&self, by: &str) -> Result<u64> {
        let mine: Vec<TrashItem> = self.trash_list()?.into_iter().filter(|t| t.by.as_deref() == Some(by)).collect();
        if mine.is_empty() {
            return Ok(0);
        }
        let mut txn = self.txn()?;
        for mut t in mine.iter().cloned() {
            t.by = None;
            self.put_trash_record(&mut txn, &t);
        }
        txn.commit(Durability::Synced)?;
        Ok(mine.len() as u64)
    }

    /// Empties what has been in the trash longer than `[retention] trash_days` (the
    /// daemon calls it); with `trash_days = 0` the trash is kept until emptied by hand.
    pub fn trash_expire(&self) -> Result<TrashEmptied> {
        let days = self.config().retention.trash_days;
        if days == 0 || self.read_only {
            return Ok(TrashEmptied::default());
        }
        let out = self.empty_trash(Some(crate::utc::now_secs() - i64::from(days) * 86_400), "retention")?;
        if out.items > 0 {
            tracing::info!(items = out.items, bytes = out.bytes, days, "trash emptied of what outlived its period");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::tests_support::scratch_volume;

    fn with_trash_days(vol: &Volume, days: u32) {
        let mut config = (*vol.config()).clone();
        config.retention.trash_days = days;
        *vol.config.write().expect("config") = std::sync::Arc::new(config);
    }

    fn file(vol: &Volume, name: &str) {
        vol.create(Ino::ROOT, name.as_bytes(), Kind::File, 0o644, 0, 0, 0).unwrap();
    }

    #[test]
    fn expiry_deletes_only_what_outlived_the_period() {
        let (_tmp, vol) = scratch_volume();
        with_trash_days(&vol, 7);
        file(&vol, "old");
        file(&vol, "new");
        vol.remove(Ino::ROOT, b"old", None).unwrap();
        vol.remove(Ino::ROOT, b"new", None).unwrap();
        // Backdate the first deletion past the period.
        let mut old = vol.trash_list().unwrap().into_iter().find(|t| t.path == "/old").unwrap();
        old.deleted -= 8 * 86_400;
        let mut txn = vol.txn().unwrap();
        vol.put_trash_record(&mut txn, &old);
        txn.commit(Durability::Buffered).unwrap();

        assert_eq!(vol.trash_expire().unwrap().items, 1);
        let left: Vec<String> = vol.trash_list().unwrap().into_iter().map(|t| t.path).collect();
        assert_eq!(left, ["/new"]);
        let trash = vol.hidden_dir(TRASH_NAME).unwrap().unwrap();
        assert_eq!(vol.dir_entries(trash).unwrap().len(), 1, "its entry went with its record");
        with_trash_days(&vol, 0);
        assert_eq!(vol.trash_expire().unwrap().items, 0, "trash_days = 0 keeps what is in the trash");
    }

    #[test]
    fn ids_go_on_after_a_reopen_and_renames_keep_paths_right() {
        let (_tmp, vol) = scratch_volume();
        with_trash_days(&vol, 1);
        let d = vol.create(Ino::ROOT, b"d", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
        vol.create(d, b"f", Kind::File, 0o644, 0, 0, 0).unwrap();
        vol.create(d, b"g", Kind::File, 0o644, 0, 0, 0).unwrap();
        vol.remove(d, b"f", None).unwrap();
        vol.rename(Ino::ROOT, b"d", Ino::ROOT, b"e", RenameMode::NoReplace).unwrap();
        vol.remove(d, b"g", None).unwrap();
        let paths: Vec<(u64, String)> = vol.trash_list().unwrap().into_iter().map(|t| (t.id, t.path)).collect();
        assert_eq!(paths, [(1, "/d/f".to_string()), (2, "/e/g".to_string())]);
        *vol.trash.next_id.lock().unwrap() = 0;
        file(&vol, "h");
        vol.remove(Ino::ROOT, b"h", None).unwrap();
        assert_eq!(vol.trash_list().unwrap().last().unwrap().id, 3, "read again from the records");
    }
}
