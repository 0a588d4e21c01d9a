//! Garbage collection: deletes the chunks that no extent references any more.
//!
//! Reference counts are exact in every committed state (`txn`), so garbage is exactly the
//! set of `refs` records with count zero. Collection runs under the commit lock, so no
//! change can add a reference meanwhile, and under the pin lock, so a write that found a
//! chunk already stored (and will reference it without storing it again) keeps it: see
//! `Chunks::prepare`. The deletes are one batch; a crash before it leaves the garbage for
//! the next run, a crash after it has nothing left to do. Then the chunk family is
//! compacted with blob garbage collection on, which drops the blob files of the deleted
//! bodies and rewrites the live rest of partly dead files, and the metadata families are
//! compacted so that the tombstones of deleted records go too.
//!
//! Bodies in pack files (`store::packs`) are reclaimed a pack at a time: a pack whose live
//! bodies fill less than half of it has them copied to the current pack (synced), its
//! `refs` records repointed in one synced batch, and is then deleted. A crash before that
//! batch leaves the old copies in use and the new ones dead; after it, the old pack has no
//! live bytes and goes at the next collection.
//!
//! A crash between storing a new chunk's body and committing the change that references
//! it leaves a body without a `refs` record; `sweep_unreferenced_bodies` deletes those when
//! a volume is opened after an unclean shutdown, and `check` reports them.

use super::error::{Error, Result};
use super::reclaim::disk_budget;
use super::Volume;
use crate::ids::ChunkId;
use crate::store::keys::RefRecord;
use crate::store::packs::Location;
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// What a collection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Chunks deleted.
    pub chunks_deleted: u64,
    /// Their sealed bytes.
    pub stored_bytes_deleted: u64,
    /// Unreferenced chunks kept because a write in flight is about to use them.
    pub chunks_pinned: u64,
    /// Bytes of database files before.
    pub disk_bytes_before: u64,
    /// Bytes of database files after compaction.
    pub disk_bytes_after: u64,
    /// Pack files deleted (their live bodies moved first).
    pub packs_deleted: u64,
    /// Live body bytes moved out of those packs.
    pub pack_bytes_moved: u64,
}

/// A chunk's `refs` key and record, and where its body lies in a pack.
type PackedChunk = (Box<[u8]>, RefRecord, Location);

/// A pack whose live bodies fill less than this share of it is rewritten.
const PACK_LIVE_MIN: f64 = 0.5;
/// A volume over its disk budget also rewrites packs with at least this share dead.
const PACK_DEAD_MIN: f64 = 0.1;

impl Volume {
    /// Deletes unreferenced chunks and reclaims their disk space.
    pub fn gc(&self) -> Result<GcReport> {
        self.collect_garbage(&HashSet::new())
    }

    /// `gc`, rewriting the packs `purge` however much of them is alive.
    pub(crate) fn collect_garbage(&self, purge: &HashSet<u32>) -> Result<GcReport> {
        self.wait_for_closed_commits();
        let disk_bytes_before = self.store.disk_bytes()?;
        let (mut chunks_deleted, mut stored_bytes_deleted, mut chunks_pinned) = (0, 0, 0);
        {
            let mut txn = self.txn()?;
            let pins = self.chunks.pins.lock().expect("pins lock");
            for kv in self.store.scan(Cf::Refs, &[], &[]) {
                let (k, v) = kv?;
                let rec = RefRecord::decode(&v).ok_or_else(|| Error::CorruptMeta("ref record".into()))?;
                if rec.count > 0 {
                    continue;
                }
                let id = ChunkId::from_slice(&k).ok_or_else(|| Error::CorruptMeta("ref key".into()))?;
                if pins.contains_key(&id) {
                    chunks_pinned += 1;
                    continue;
                }
                txn.batch.delete(Cf::Refs, &k);
                txn.batch.delete(Cf::Chunks, &k);
                chunks_deleted += 1;
                stored_bytes_deleted += u64::from(rec.stored_len);
            }
            txn.release_garbage(stored_bytes_deleted);
            super::faults::crash_point("gc-before-commit");
            txn.commit(Durability::Synced)?;
            drop(pins);
        }
        super::faults::crash_point("gc-after-commit");
        if chunks_deleted > 0 {
            self.store.reclaim_chunk_space()?;
            self.store.compact_metadata()?;
        }
        super::faults::crash_point("gc-after-compaction");
        let (packs_deleted, pack_bytes_moved) = self.compact_packs(purge)?;
        let disk_bytes_after = self.store.disk_bytes()?;
        let report = GcReport {
            chunks_deleted,
            stored_bytes_deleted,
            chunks_pinned,
            disk_bytes_before,
            disk_bytes_after,
            packs_deleted,
            pack_bytes_moved,
        };
        tracing::info!(?report, "garbage collected");
        let m = crate::metrics::get();
        m.gc_runs.inc();
        m.gc_freed_bytes.inc_by(stored_bytes_deleted);
        Ok(report)
    }

    /// Deletes the packs that are mostly dead, and those of `purge`, after moving their
    /// live bodies; returns the packs deleted and the bytes moved.
    pub(crate) fn compact_packs(&self, purge: &HashSet<u32>) -> Result<(u64, u64)> {
        // From here on, writes append to a new pack. Once every window is committed, the
        // packs below it hold only bodies that `refs` records point at, and dead bytes.
        let current = self.store.packs().rotate()?;
        self.commit_all_windows()?;
        let mut txn = self.txn()?;
        // Per pack below the fresh one: the chunk ids (keys) and records pointing into it.
        let mut live: HashMap<u32, Vec<PackedChunk>> = HashMap::new();
        for kv in self.store.scan(Cf::Refs, &[], &[]) {
            let (k, v) = kv?;
            let rec = RefRecord::decode(&v).ok_or_else(|| Error::CorruptMeta("ref record".into()))?;
            if let Some(loc) = rec.location.filter(|l| l.pack < current) {
                live.entry(loc.pack).or_default().push((k, rec, loc));
            }
        }
        // Mostly dead packs are rewritten; then, while the volume is over its disk budget,
        // the packs with the most dead bytes, so that garbage never keeps it over budget.
        let mut packs: Vec<(u32, u64, u64)> = Vec::new();
        let doomed = self.store.doomed_packs()?;
        for (pack, size) in self.store.packs().list()? {
            if pack < current && !doomed.contains(&pack) {
                let live_bytes = live.get(&pack).map_or(0, |b| b.iter().map(|(_, _, loc)| u64::from(loc.len)).sum());
                packs.push((pack, size, live_bytes));
            }
        }
        packs.sort_by_key(|(_, size, live_bytes)| std::cmp::Reverse(size - live_bytes.min(size)));
        // Under the commit lock (`txn`): the budget comes from its counters.
        let (budget, mut projected) = (disk_budget(txn.space().stored_bytes), self.store.disk_bytes()?);
        let (mut emptied, mut moved) = (Vec::new(), 0u64);
        for (pack, size, live_bytes) in packs {
            let dead = size.saturating_sub(live_bytes);
            let mostly_dead = live_bytes == 0 || (live_bytes as f64) < size as f64 * PACK_LIVE_MIN;
            let over_budget = projected > budget && (dead as f64) >= size as f64 * PACK_DEAD_MIN;
            if !mostly_dead && !over_budget && !purge.contains(&pack) {
                continue;
            }
            projected = projected.saturating_sub(dead);
            for (id, mut rec, loc) in live.remove(&pack).unwrap_or_default() {
                let body = self.store.packs().read(loc)?.filter(|b| !b.is_empty()).ok_or_else(|| {
                    let id = ChunkId::from_slice(&id).map_or_else(String::new, |c| c.to_string());
                    Error::CorruptMeta(format!("chunk {id} lies beyond the end of pack {pack}"))
                })?;
                rec.location = Some(self.store.append_body(&body)?);
                txn.batch.put(Cf::Refs, &id, &rec.encode());
                moved += body.len() as u64;
            }
            emptied.push(pack);
        }
        if emptied.is_empty() {
            return Ok((0, 0));
        }
        self.store.sync_bodies()?;
        super::faults::crash_point("gc-packs-copied");
        txn.commit(Durability::Synced)?;
        for pack in &emptied {
            self.store.delete_pack(*pack)?;
        }
        Ok((emptied.len() as u64, moved))
    }
}

impl Volume {
    /// Deletes chunk bodies that have no `refs` record: left by a crash between storing a
    /// body and committing its first reference. Only safe while no write is in flight,
    /// hence only at open. Returns how many were deleted.
    pub(crate) fn sweep_unreferenced_bodies(&self) -> Result<u64> {
        let mut batch = self.store.batch();
        let mut n = 0;
        for id in self.store.scan_keys(Cf::Chunks)? {
            if !self.store.contains(Cf::Refs, &id)? {
                batch.delete(Cf::Chunks, &id);
                n += 1;
            }
        }
        if n > 0 {
            self.store.commit(batch, Durability::Synced)?;
            self.store.reclaim_chunk_space()?;
            tracing::warn!(chunks = n, "deleted chunk bodies left unreferenced by a crash");
        }
        Ok(n)
    }
}
