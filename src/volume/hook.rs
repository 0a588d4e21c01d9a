//! The one extension point for modules beside the engine (galleries, later renditions and
//! trash): things that must change in the same batch as a namespace change, and sealed
//! JSON records of their own in `meta`.
//!
//! A `Hook` is registered with the key prefixes it owns. Every create, link, unlink,
//! rmdir, rename and last close of a written file calls it under the commit lock with a
//! `Change` and a `HookBatch` that writes only under those prefixes. Its writes are staged
//! and join the change's batch only if the hook succeeds: a failing hook is logged and
//! counted, and the namespace change commits without it, so an extension can never turn
//! `mkdir` into `EIO`. `Hook::committed` runs after the batch is written, still under the
//! commit lock (so what it publishes is in commit order). Under the commit lock a hook
//! reads records and the tree, but never changes the volume or reads a file being written
//! (`HookBatch::inode`, not `Volume::getattr`): both would wait for locks held by writers
//! waiting for this commit.

use super::error::{Error, Result};
use super::records::{Inode, Kind};
use super::txn::Txn;
use super::Volume;
use crate::ids::Ino;
use crate::store::{Cf, Durability};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A namespace change, as the tree operations report it to hooks.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// `name` in `parent` now names `ino` (create, mkdir, link).
    Added { parent: Ino, name: &'a [u8], ino: Ino, kind: Kind },
    /// `name` in `parent`, which named `ino`, is gone (unlink, rmdir, replaced by a rename).
    Removed { parent: Ino, name: &'a [u8], ino: Ino, kind: Kind },
    /// `ino` moved from `from/name` to `to/newname`.
    Moved { from: Ino, name: &'a [u8], to: Ino, newname: &'a [u8], ino: Ino, kind: Kind },
    /// The file `ino` was written and its last handle closed.
    Written { ino: Ino },
}

/// Why a hook failed; the engine only logs it.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Per-change state a hook keeps between `changed` and `committed` (`HookBatch::note`).
pub type Note = Box<dyn Any + Send>;

/// Something that changes with the namespace, in the same batch.
pub trait Hook: Send + Sync {
    /// Whether the hook has anything to do at all; when not, changes skip it (and the
    /// close of a written file takes no commit lock for it).
    fn active(&self) -> bool {
        true
    }

    /// Called under the commit lock for each namespace change, `by` the user a front-end
    /// acts for (`None`: the mount or the administrator).
    fn changed(
        &self,
        change: &Change<'_>,
        by: Option<&str>,
        batch: &mut HookBatch<'_, '_>,
    ) -> std::result::Result<(), HookError>;

    /// Called after a change this hook took part in was written, with its note if it set
    /// one; still under the commit lock.
    fn committed(&self, note: Option<Note>) {
        let _ = note;
    }
}

/// A registered hook: the handle to change its records (`Volume::update`) and to read its
/// failure count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookId(usize);

pub(crate) struct Registered {
    prefixes: Vec<&'static [u8]>,
    hook: Arc<dyn Hook>,
    failures: AtomicU64,
}

/// What one hook contributes to one `Txn`.
#[derive(Default)]
pub(crate) struct Slot {
    /// Sealed puts (`Some`) and deletes (`None`) in `meta`, applied at commit.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    note: Option<Note>,
    failed: bool,
    used: bool,
}

/// The batch a hook writes through: only keys under its prefixes, sealed JSON in `meta`.
pub struct HookBatch<'t, 'v> {
    txn: &'t mut Txn<'v>,
    hook: usize,
}

impl<'v> HookBatch<'_, 'v> {
    /// The volume, to read records and the committed tree.
    #[must_use]
    pub fn volume(&self) -> &'v Volume {
        self.txn.volume()
    }

    fn slot(&mut self) -> &mut Slot {
        self.txn.hook_slot(self.hook)
    }

    /// Refuses a key outside the hook's prefixes: a bug in the hook, so a panic in debug
    /// builds; in release the write is dropped and logged.
    fn allowed(&self, key: &[u8]) -> bool {
        let ok = self.volume().hooks.read().expect("hooks")[self.hook].prefixes.iter().any(|p| key.starts_with(p));
        debug_assert!(ok, "a hook wrote outside its prefixes: {}", String::from_utf8_lossy(key));
        if !ok {
            tracing::error!(key = %String::from_utf8_lossy(key), "a hook wrote outside its prefixes; refused");
        }
        ok
    }

    /// Seals `value` as JSON under `key`.
    pub fn put<T: Serialize>(&mut self, key: &[u8], value: &T) {
        if self.allowed(key) {
            let json = serde_json::to_vec(value).expect("records serialise");
            let sealed = self.volume().meta.seal(Cf::Meta.name(), key, &json);
            self.slot().writes.push((key.to_vec(), Some(sealed)));
        }
    }

    /// Deletes the record under `key`.
    pub fn delete(&mut self, key: &[u8]) {
        if self.allowed(key) {
            self.slot().writes.push((key.to_vec(), None));
        }
    }

    /// Deletes every committed record under `prefix`.
    pub fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        for key in self.volume().record_keys(prefix)? {
            self.delete(&key);
        }
        Ok(())
    }

    /// The inode as this change sees it: the committed record with this change's edits,
    /// without writes still in a file's window (whose lock must not be taken here).
    pub fn inode(&mut self, ino: Ino) -> Result<Inode> {
        Ok(self.txn.inode(ino)?.clone())
    }

    /// The parent of directory `dir` as this change sees the tree (`None`: not a
    /// directory, the root, or gone).
    pub fn parent_dir(&mut self, dir: Ino) -> Result<Option<Ino>> {
        match self.txn.inode(dir) {
            Ok(i) if i.kind == Kind::Dir && i.parent != 0 && dir != Ino::ROOT => Ok(Some(Ino(i.parent))),
            Ok(_) | Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The hook's state for this change, made with `Default` on first use; handed to
    /// `Hook::committed`.
    pub fn note<T: Default + Send + 'static>(&mut self) -> &mut T {
        let slot = self.slot();
        if !slot.note.as_ref().is_some_and(|n| (**n).is::<T>()) {
            slot.note = Some(Box::new(T::default()));
        }
        slot.note.as_mut().and_then(|n| n.downcast_mut()).expect("just set")
    }
}

impl Txn<'_> {
    fn hook_slot(&mut self, hook: usize) -> &mut Slot {
        if self.hook_slots.len() <= hook {
            self.hook_slots.resize_with(hook + 1, Slot::default);
        }
        let slot = &mut self.hook_slots[hook];
        slot.used = true;
        slot
    }

    /// Puts the staged writes of the hooks that succeeded into the batch.
    pub(crate) fn apply_hook_writes(&mut self) {
        for slot in &mut self.hook_slots {
            if !slot.failed {
                for (key, value) in std::mem::take(&mut slot.writes) {
                    match value {
                        Some(v) => self.batch.put(Cf::Meta, &key, &v),
                        None => self.batch.delete(Cf::Meta, &key),
                    }
                }
            }
        }
    }

    /// After the batch is written: each hook that took part (and did not fail) gets its note.
    pub(crate) fn hooks_committed(&mut self) {
        if self.hook_slots.is_empty() {
            return;
        }
        let hooks = self.volume().hooks.read().expect("hooks");
        for (slot, reg) in std::mem::take(&mut self.hook_slots).into_iter().zip(hooks.iter()) {
            if slot.used && !slot.failed {
                reg.hook.committed(slot.note);
            }
        }
    }
}

impl Volume {
    /// Registers `hook`, which owns the `meta` keys under `prefixes`.
    pub fn register_hook(&self, prefixes: &[&'static [u8]], hook: Arc<dyn Hook>) -> HookId {
        let mut hooks = self.hooks.write().expect("hooks");
        hooks.push(Arc::new(Registered { prefixes: prefixes.to_vec(), hook, failures: AtomicU64::new(0) }));
        HookId(hooks.len() - 1)
    }

    /// How many namespace changes committed without the hook's part since open.
    #[must_use]
    pub fn hook_failures(&self, id: HookId) -> u64 {
        self.hooks.read().expect("hooks")[id.0].failures.load(Ordering::Relaxed)
    }

    /// Tells every active hook of `change`, in `txn`. A hook that fails loses its part of
    /// the change; the change itself goes on.
    pub(crate) fn notify(&self, txn: &mut Txn<'_>, change: Change<'_>, by: Option<&str>) {
        let hooks: Vec<Arc<Registered>> = self.hooks.read().expect("hooks").clone();
        for (i, reg) in hooks.iter().enumerate() {
            if !reg.hook.active() || txn.hook_slot(i).failed {
                continue;
            }
            if let Err(e) = reg.hook.changed(&change, by, &mut HookBatch { txn: &mut *txn, hook: i }) {
                reg.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, change = ?change, "a hook failed; the change commits without its part");
                let slot = txn.hook_slot(i);
                slot.failed = true;
                slot.writes.clear();
                slot.note = None;
            }
        }
    }

    /// Reports the last close of a written file to the hooks, in a change of its own.
    pub(crate) fn notify_written(&self, ino: Ino) -> Result<()> {
        if self.read_only || !self.hooks.read().expect("hooks").iter().any(|r| r.hook.active()) {
            return Ok(());
        }
        let mut txn = self.txn()?;
        self.notify(&mut txn, Change::Written { ino }, None);
        txn.commit(Durability::Buffered)
    }

    /// Runs `f` under the commit lock with the batch of hook `id`, then commits what it
    /// wrote and calls the hook's `committed`. Nothing is written when `f` fails.
    pub fn update<T, E: From<Error>>(
        &self,
        id: HookId,
        durability: Durability,
        f: impl FnOnce(&mut HookBatch<'_, '_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut txn = self.txn()?;
        let out = f(&mut HookBatch { txn: &mut txn, hook: id.0 })?;
        txn.commit(durability)?;
        Ok(out)
    }

    /// Renames `name` in `parent` to `to` and runs `f` with the batch of hook `id` and the
    /// inode moved: the rename and the hook's records commit together, with `durability`,
    /// or nothing does (also when the hook failed its own part of the rename).
    #[allow(clippy::too_many_arguments)]
    pub fn rename_updating<T, E: From<Error>>(
        &self,
        parent: Ino,
        name: &[u8],
        to: (Ino, &[u8]),
        mode: super::RenameMode,
        by: Option<&str>,
        id: HookId,
        durability: Durability,
        f: impl FnOnce(&mut HookBatch<'_, '_>, Ino) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.rename_with(parent, name, to, mode, by, durability, |txn, moved| {
            if txn.hook_slot(id.0).failed {
                let e = std::io::Error::other("a hook failed its part of the rename; nothing was changed");
                return Err(Error::Io(e).into());
            }
            f(&mut HookBatch { txn, hook: id.0 }, moved)
        })
    }

    /// The sealed JSON record under `key` in `meta`.
    pub fn record<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let Some(sealed) = self.store.get(Cf::Meta, key)? else { return Ok(None) };
        decode(key, &self.meta.open(Cf::Meta.name(), key, &sealed)?).map(Some)
    }

    /// Whether a record exists under `key`.
    pub fn record_exists(&self, key: &[u8]) -> Result<bool> {
        Ok(self.store.contains(Cf::Meta, key)?)
    }

    /// Every record under `prefix` from `start` on (`start` = `prefix`: all), in key order.
    pub fn records<T: DeserializeOwned>(&self, prefix: &[u8], start: &[u8]) -> Result<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        for kv in self.store.scan(Cf::Meta, prefix, start) {
            let (k, v) = kv?;
            let rec = decode(&k, &self.meta.open(Cf::Meta.name(), &k, &v)?)?;
            out.push((k.to_vec(), rec));
        }
        Ok(out)
    }

    /// Compacts the metadata, so records deleted or moved leave the database files (a
    /// record's key is in clear there until compaction drops its old version).
    pub fn compact_records(&self) -> Result<()> {
        Ok(self.store.compact_metadata()?)
    }

    /// The keys under `prefix`, in order, without opening the records.
    pub fn record_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.store.scan(Cf::Meta, prefix, prefix).map(|kv| -> Result<Vec<u8>> { Ok(kv?.0.to_vec()) }).collect()
    }

    /// The greatest key under `prefix` that is at most `key`.
    pub fn record_key_floor(&self, prefix: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.store.floor(Cf::Meta, prefix, key)?.map(|(k, _)| k.to_vec()))
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], plain: &[u8]) -> Result<T> {
    serde_json::from_slice(plain)
        .map_err(|e| Error::CorruptMeta(format!("record {}: {e}", String::from_utf8_lossy(key))))
}
