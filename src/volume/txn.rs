//! One atomic change to the volume: a RocksDB batch plus the bookkeeping that must land
//! in the same batch (inode records, reference counts, space counters, inode allocation).
//!
//! A `Txn` holds the volume's commit lock from `Volume::txn()` until it is committed or
//! dropped, so reads of records inside it see no concurrent change. Reference counts are
//! accumulated as deltas and applied at commit: a chunk that a change both drops and
//! re-adds nets to zero and is never counted as garbage.

use super::chunks::Prepared;
use super::error::{Error, Result};
use super::observer;
use super::records::{DirentRecord, Inode};
use super::Volume;
use crate::ids::{ChunkId, Ino};
use crate::store::format::{META_ANOMALY_REFS, META_ANOMALY_SPACE, META_NEXT_INO, META_SPACE};
use crate::store::keys::{self, ExtentValue, RefRecord, SpaceCounters};
use crate::store::packs::Location;
use crate::store::{Batch, Cf, Durability};
use std::collections::HashMap;
use std::sync::MutexGuard;

/// State that only changes under the commit lock.
pub(crate) struct TxnState {
    pub next_ino: u64,
    pub space: SpaceCounters,
}

#[derive(Default)]
struct RefDelta {
    delta: i64,
    /// The body when this change also stores it.
    body: Option<NewBody>,
}

/// A chunk body stored by the change that references it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewBody {
    /// Sealed length.
    pub stored: u32,
    /// Plaintext length.
    pub plain: u32,
    /// Where it lies in a pack; `None`: it is inline, put in the batch by the caller.
    pub location: Option<Location>,
}

/// An open change; see the module docs.
pub(crate) struct Txn<'a> {
    vol: &'a Volume,
    state: MutexGuard<'a, TxnState>,
    pub batch: Batch<'a>,
    inodes: HashMap<Ino, (Inode, bool)>,
    refs: HashMap<ChunkId, RefDelta>,
    logical: i64,
    garbage_released: u64,
    space_override: Option<SpaceCounters>,
    allocated_ino: bool,
    /// Snapshot creation and deletion may change frozen inodes; nothing else may.
    pub allow_frozen: bool,
    /// What each registered hook adds to this change (`hook`).
    pub(crate) hook_slots: Vec<super::hook::Slot>,
    /// Inodes this change deletes.
    deleted_inodes: Vec<Ino>,
    /// Entries this change adds or deletes, when made outside the mount (`observer`).
    changed_entries: Vec<(Ino, Vec<u8>)>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(vol: &'a Volume) -> Self {
        let state = vol.txn_state.lock().expect("commit lock");
        Self {
            vol,
            state,
            batch: vol.store.batch(),
            inodes: HashMap::new(),
            refs: HashMap::new(),
            logical: 0,
            garbage_released: 0,
            space_override: None,
            allocated_ino: false,
            allow_frozen: false,
            hook_slots: Vec::new(),
            deleted_inodes: Vec::new(),
            changed_entries: Vec::new(),
        }
    }

    /// The volume this change is made to.
    pub fn volume(&self) -> &'a Volume {
        self.vol
    }

    /// The inode as this change sees it.
    pub fn inode(&mut self, ino: Ino) -> Result<&Inode> {
        self.load(ino)?;
        Ok(&self.inodes[&ino].0)
    }

    /// The inode, to be written back at commit. A frozen (snapshot) inode is `ReadOnly`:
    /// every change of an inode or of a directory's entries goes through here.
    pub fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode> {
        self.load(ino)?;
        let e = self.inodes.get_mut(&ino).expect("just loaded");
        if e.0.frozen && !self.allow_frozen {
            return Err(Error::ReadOnly);
        }
        e.1 = true;
        Ok(&mut e.0)
    }

    fn load(&mut self, ino: Ino) -> Result<()> {
        if !self.inodes.contains_key(&ino) {
            let inode = self.vol.load_inode(ino)?;
            self.inodes.insert(ino, (inode, false));
        }
        Ok(())
    }

    /// A new inode number and its record.
    pub fn create_inode(&mut self, inode: Inode) -> Ino {
        let ino = Ino(self.state.next_ino);
        self.state.next_ino += 1;
        self.allocated_ino = true;
        self.inodes.insert(ino, (inode, true));
        ino
    }

    /// Deletes the inode record and everything keyed by it (extents, xattrs, symlink).
    pub fn delete_inode(&mut self, ino: Ino) -> Result<()> {
        let extents: Vec<(u64, ExtentValue)> = self.vol.extents_from(ino, 0)?;
        for (off, e) in extents {
            self.delete_extent(ino, off, e);
        }
        for kv in self.vol.store.scan(Cf::Xattrs, &ino.to_key(), &ino.to_key()) {
            let (k, _) = kv?;
            self.batch.delete(Cf::Xattrs, &k);
        }
        self.batch.delete(Cf::Symlinks, &keys::ino_key(ino));
        self.batch.delete(Cf::Orphans, &keys::ino_key(ino));
        self.batch.delete(Cf::Inodes, &keys::ino_key(ino));
        self.inodes.remove(&ino);
        self.deleted_inodes.push(ino);
        Ok(())
    }

    /// Adds a directory entry.
    pub fn put_dirent(&mut self, parent: Ino, entry: &DirentRecord) {
        let key = keys::named_key(parent, &self.vol.keys.name_hash(&entry.name));
        let sealed = self.vol.meta.seal(Cf::Dirents.name(), &key, &entry.encode());
        self.batch.put(Cf::Dirents, &key, &sealed);
        self.note_entry(parent, &entry.name);
    }

    /// Removes a directory entry.
    pub fn delete_dirent(&mut self, parent: Ino, name: &[u8]) {
        let key = keys::named_key(parent, &self.vol.keys.name_hash(name));
        self.batch.delete(Cf::Dirents, &key);
        self.note_entry(parent, name);
    }

    /// Records `dir` as the hidden directory `name` of the root, kept in `meta` under `key`
    /// rather than as a directory entry; a change outside the mount announces it all the same.
    pub fn put_hidden_dir(&mut self, key: &[u8], name: &[u8], dir: Ino) {
        self.batch.put(Cf::Meta, key, &dir.0.to_be_bytes());
        self.note_entry(Ino::ROOT, name);
    }

    fn note_entry(&mut self, parent: Ino, name: &[u8]) {
        if observer::noting() {
            self.changed_entries.push((parent, name.to_vec()));
        }
    }

    /// Adds an extent; `body` when this change stores the chunk body too.
    pub fn put_extent(&mut self, ino: Ino, offset: u64, e: ExtentValue, body: Option<NewBody>) {
        self.batch.put(Cf::Extents, &keys::extent_key(ino, offset), &e.encode());
        let r = self.refs.entry(e.chunk).or_default();
        r.delta += 1;
        if body.is_some() {
            r.body = body;
        }
        self.logical += i64::from(e.len);
    }

    /// Adds extents for `prepared` chunks laid end to end from `offset`, storing the bodies
    /// that are new; returns the bytes they cover.
    pub fn put_prepared(&mut self, ino: Ino, mut offset: u64, prepared: Vec<Prepared>) -> i64 {
        let mut covered = 0;
        for p in prepared {
            let body = p.sealed.map(|env| {
                self.batch.put(Cf::Chunks, &p.id.0, &env[..]);
                NewBody { stored: env.len() as u32, plain: p.len, location: None }
            });
            self.put_extent(ino, offset, ExtentValue::whole(p.id, p.len), body);
            covered += i64::from(p.len);
            offset += u64::from(p.len);
        }
        covered
    }

    /// Records a chunk body stored by this change without a reference yet (count zero).
    pub fn register_body(&mut self, id: ChunkId, stored: u32, plain: u32) {
        self.refs.entry(id).or_default().body = Some(NewBody { stored, plain, location: None });
    }

    /// Removes an extent.
    pub fn delete_extent(&mut self, ino: Ino, offset: u64, e: ExtentValue) {
        self.batch.delete(Cf::Extents, &keys::extent_key(ino, offset));
        self.refs.entry(e.chunk).or_default().delta -= 1;
        self.logical -= i64::from(e.len);
    }

    /// The space counters as committed so far.
    pub fn space(&self) -> SpaceCounters {
        self.state.space
    }

    /// Replaces the space counters at commit (repair after a recount).
    pub fn set_space(&mut self, space: SpaceCounters) {
        self.space_override = Some(space);
    }

    /// Records that this change deletes unreferenced chunks of `stored` sealed bytes.
    pub fn release_garbage(&mut self, stored: u64) {
        self.garbage_released += stored;
    }

    /// Applies the change atomically.
    ///
    /// A count that would go below zero means the records disagree already (a corrupt
    /// volume or a bug): it is kept at zero, logged, and recorded under `meta/anomaly/`, so
    /// that `check` reports it even after the change hid the disagreement; `check
    /// --repair` recounts.
    pub fn commit(mut self, durability: Durability) -> Result<()> {
        let mut space = self.state.space;
        let mut underflow: Vec<&str> = Vec::new();
        let mut sub = |counter: &mut u64, by: u64, name: &'static str| {
            *counter = counter.checked_sub(by).unwrap_or_else(|| {
                underflow.push(name);
                0
            });
        };
        for (id, d) in std::mem::take(&mut self.refs) {
            let old = match self.vol.store.get(Cf::Refs, &id.0)? {
                Some(v) => {
                    Some(RefRecord::decode(&v).ok_or_else(|| Error::CorruptMeta(format!("ref record of {id}")))?)
                }
                None => None,
            };
            let mut rec = match (old, d.body) {
                (Some(r), _) => r,
                // A body that concurrent writes both stored is recorded once; the other
                // copy is dead space in its pack.
                (None, Some(body)) => {
                    space.reclaimable_bytes += u64::from(body.stored);
                    RefRecord { count: 0, stored_len: body.stored, plain_len: body.plain, location: body.location }
                }
                (None, None) if d.delta <= 0 => continue,
                (None, None) => return Err(Error::CorruptMeta(format!("chunk {id} is referenced but not stored"))),
            };
            let was_live = rec.count > 0;
            let count = rec.count as i64 + d.delta;
            if count < 0 {
                tracing::error!(chunk = %id, count, "corrupt reference count: it would go below zero; kept at 0, run `nanofs check --repair`");
                self.batch.put(Cf::Meta, &[META_ANOMALY_REFS, &id.0[..]].concat(), &count.to_be_bytes());
            }
            rec.count = count.max(0) as u64;
            match (was_live, rec.count > 0) {
                (false, true) => {
                    space.chunks += 1;
                    space.unique_bytes += u64::from(rec.plain_len);
                    space.stored_bytes += u64::from(rec.stored_len);
                    space.reclaimable_bytes = space.reclaimable_bytes.saturating_sub(u64::from(rec.stored_len));
                }
                (true, false) => {
                    sub(&mut space.chunks, 1, "chunks");
                    sub(&mut space.unique_bytes, u64::from(rec.plain_len), "unique_bytes");
                    sub(&mut space.stored_bytes, u64::from(rec.stored_len), "stored_bytes");
                    space.reclaimable_bytes += u64::from(rec.stored_len);
                }
                _ => {}
            }
            self.batch.put(Cf::Refs, &id.0, &rec.encode());
        }
        match space.logical_bytes.checked_add_signed(self.logical) {
            Some(n) => space.logical_bytes = n,
            None => sub(&mut space.logical_bytes, self.logical.unsigned_abs(), "logical_bytes"),
        }
        space.reclaimable_bytes = space.reclaimable_bytes.saturating_sub(self.garbage_released);
        if !underflow.is_empty() {
            tracing::error!(counters = ?underflow, "corrupt space counters: they would go below zero; kept at 0, run `nanofs check --repair`");
            self.batch.put(Cf::Meta, META_ANOMALY_SPACE, underflow.join(",").as_bytes());
        }
        if let Some(s) = self.space_override {
            space = s;
        }
        for (ino, (inode, dirty)) in &self.inodes {
            if *dirty {
                let key = keys::ino_key(*ino);
                let sealed = self.vol.meta.seal(Cf::Inodes.name(), &key, &inode.encode());
                self.batch.put(Cf::Inodes, &key, &sealed);
            }
        }
        if space != self.state.space {
            self.batch.put(Cf::Meta, META_SPACE, &space.encode());
        }
        if self.allocated_ino {
            self.batch.put(Cf::Meta, META_NEXT_INO, &self.state.next_ino.to_be_bytes());
        }
        self.apply_hook_writes();
        let batch = std::mem::replace(&mut self.batch, self.vol.store.batch());
        if batch.is_empty() {
            if durability == Durability::Synced {
                self.vol.store.sync_wal()?;
            }
            self.hooks_committed();
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.vol.store.commit(batch, durability)?;
        crate::metrics::get().commits.observe(started.elapsed().as_secs_f64());
        let written = self.inodes.iter().filter(|(_, (_, dirty))| *dirty).map(|(ino, (inode, _))| (*ino, Some(inode)));
        self.vol.inodes.committed(written.chain(self.deleted_inodes.iter().map(|ino| (*ino, None))));
        observer::note(std::mem::take(&mut self.changed_entries));
        self.state.space = space;
        self.hooks_committed();
        Ok(())
    }
}
