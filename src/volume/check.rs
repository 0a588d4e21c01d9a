//! Integrity check: every reference, count, link and counter against a full recount, and
//! with `read_data` every chunk read, decrypted and verified.
//!
//! Runs under the commit lock, so it sees one consistent state. `repair` fixes what can be
//! derived from the rest (reference counts, link counts, space counters, dangling entries,
//! unreachable inodes); it never invents data: a file whose chunk is missing or damaged is
//! reported with its inode and left as is.

use super::error::{Error, Result};
use super::records::{DirentRecord, Kind};
use super::Volume;
use crate::ids::{ChunkId, Ino};
use crate::store::format::{META_ANOMALY, META_ANOMALY_REFS};
use crate::store::keys::{self, ExtentValue, RefRecord, SpaceCounters};
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// What a check found (and fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Inodes examined.
    pub inodes: u64,
    /// Directory entries examined.
    pub dirents: u64,
    /// Extents examined.
    pub extents: u64,
    /// Chunk records examined.
    pub chunks: u64,
    /// Chunks read and verified (`read_data`).
    pub chunks_verified: u64,
    /// Plaintext bytes verified.
    pub bytes_verified: u64,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
    /// How many of the problems were repaired.
    pub repaired: u64,
}

impl CheckReport {
    /// No problems left.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problems.len() as u64 == self.repaired
    }
}

impl Volume {
    /// Checks the volume; `progress(done, total)` is called while chunks are verified.
    pub fn check(&self, read_data: bool, repair: bool, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        self.wait_for_closed_commits();
        let mut txn = self.txn()?;
        // Repairs may fix counts of snapshot (frozen) inodes too.
        txn.allow_frozen = true;

        // Inodes.
        let mut inodes: HashMap<Ino, super::records::Inode> = HashMap::new();
        for kv in self.store.scan(Cf::Inodes, &[], &[]) {
            let (k, _) = kv?;
            let ino = Ino::from_key(&k).ok_or_else(|| Error::CorruptMeta("inode key".into()))?;
            match self.load_inode(ino) {
                Ok(i) => {
                    inodes.insert(ino, i);
                }
                Err(e) => r.problems.push(format!("inode {ino}: unreadable record ({e})")),
            }
        }
        r.inodes = inodes.len() as u64;
        let orphans: HashSet<Ino> = self
            .store
            .scan(Cf::Orphans, &[], &[])
            .filter_map(|kv| kv.ok().and_then(|(k, _)| Ino::from_key(&k)))
            .collect();

        // Directory entries: links per inode, subdirectories per directory, the tree's edges.
        let mut links: HashMap<Ino, u32> = HashMap::new();
        let mut subdirs: HashMap<Ino, u32> = HashMap::new();
        let mut named_by: HashMap<Ino, Ino> = HashMap::new();
        let mut children: HashMap<Ino, Vec<Ino>> = HashMap::new();
        for kv in self.store.scan(Cf::Dirents, &[], &[]) {
            let (k, v) = kv?;
            r.dirents += 1;
            let parent = Ino::from_key(&k).ok_or_else(|| Error::CorruptMeta("dirent key".into()))?;
            let entry = match self.meta.open(Cf::Dirents.name(), &k, &v).and_then(|p| DirentRecord::decode(&p)) {
                Ok(e) => e,
                Err(e) => {
                    r.problems.push(format!("directory {parent}: unreadable entry ({e})"));
                    continue;
                }
            };
            let name = String::from_utf8_lossy(&entry.name).into_owned();
            if !inodes.contains_key(&entry.ino) || !inodes.get(&parent).is_some_and(|p| p.kind == Kind::Dir) {
                r.problems.push(format!("entry {name:?} in {parent} points to missing inode {}", entry.ino));
                if repair {
                    txn.batch.delete(Cf::Dirents, &k);
                    r.repaired += 1;
                }
                continue;
            }
            *links.entry(entry.ino).or_default() += 1;
            children.entry(parent).or_default().push(entry.ino);
            if entry.kind == Kind::Dir {
                *subdirs.entry(parent).or_default() += 1;
                if let Some(other) = named_by.insert(entry.ino, parent) {
                    r.problems.push(format!("directory {} has two names (in {other} and {parent})", entry.ino));
                }
            }
        }

        // Reachability from the root, and from the snapshots directory that the root shows
        // without an entry: the directory tree is a tree.
        let mut reachable: HashSet<Ino> = HashSet::from([Ino::ROOT]);
        let mut stack = vec![Ino::ROOT];
        for hidden in self.hidden_dirs()? {
            reachable.insert(hidden);
            stack.push(hidden);
        }
        while let Some(dir) = stack.pop() {
            for child in children.get(&dir).into_iter().flatten() {
                if reachable.insert(*child) && inodes.get(child).is_some_and(|i| i.kind == Kind::Dir) {
                    stack.push(*child);
                }
            }
        }

        // Extents: recount references, check ranges.
        let mut recount: HashMap<ChunkId, u64> = HashMap::new();
        let mut logical = 0u64;
        let mut file_chunks: HashMap<ChunkId, Ino> = HashMap::new();
        // The furthest byte of each chunk an extent covers: it must lie inside the chunk.
        let mut reach: HashMap<ChunkId, u64> = HashMap::new();
        for kv in self.store.scan(Cf::Extents, &[], &[]) {
            let (k, v) = kv?;
            r.extents += 1;
            let ino = Ino::from_key(&k).ok_or_else(|| Error::CorruptMeta("extent key".into()))?;
            let Some(e) = ExtentValue::decode(&v) else {
                r.problems.push(format!("inode {ino}: malformed extent"));
                continue;
            };
            let off = keys::extent_offset(&k);
            match inodes.get(&ino) {
                Some(i) if off + u64::from(e.len) > i.size && i.kind == Kind::File => {
                    r.problems.push(format!("inode {ino}: extent at {off} ends past the file size {}", i.size));
                }
                Some(_) => {}
                None => r.problems.push(format!("extent at {off} of missing inode {ino}")),
            }
            *recount.entry(e.chunk).or_default() += 1;
            let covered = reach.entry(e.chunk).or_default();
            *covered = (*covered).max(e.plain_range().end as u64);
            file_chunks.entry(e.chunk).or_insert(ino);
            logical += u64::from(e.len);
        }

        // Inode link counts and reachability.
        for (ino, inode) in &inodes {
            let expected = if inode.kind == Kind::Dir {
                2 + subdirs.get(ino).copied().unwrap_or(0)
            } else {
                links.get(ino).copied().unwrap_or(0)
            };
            if *ino != Ino::ROOT && !reachable.contains(ino) && !orphans.contains(ino) {
                r.problems.push(format!("inode {ino} is not reachable from the root"));
                if repair {
                    // Orphaned, it is deleted (with its references) at the next mount.
                    txn.inode_mut(*ino)?.nlink = 0;
                    txn.batch.put(Cf::Orphans, &keys::ino_key(*ino), &[]);
                    r.repaired += 1;
                }
                continue;
            }
            let stored = inode.nlink;
            if stored != expected && !(orphans.contains(ino) && stored == 0) {
                r.problems.push(format!("inode {ino}: link count {stored}, counted {expected}"));
                if repair {
                    txn.inode_mut(*ino)?.nlink = expected;
                    r.repaired += 1;
                }
            }
        }

        // Reference counts against the recount; space counters from the result.
        let mut space = SpaceCounters { logical_bytes: logical, ..Default::default() };
        let mut seen: HashSet<ChunkId> = HashSet::new();
        let mut live: Vec<ChunkId> = Vec::new();
        for kv in self.store.scan(Cf::Refs, &[], &[]) {
            let (k, v) = kv?;
            r.chunks += 1;
            let (Some(id), Some(mut rec)) = (ChunkId::from_slice(&k), RefRecord::decode(&v)) else {
                r.problems.push("malformed chunk reference record".into());
                continue;
            };
            seen.insert(id);
            if reach.get(&id).is_some_and(|end| *end > u64::from(rec.plain_len)) {
                r.problems.push(format!("chunk {id}: an extent runs past its {} bytes", rec.plain_len));
            }
            let counted = recount.get(&id).copied().unwrap_or(0);
            if rec.count != counted {
                r.problems.push(format!("chunk {id}: reference count {}, counted {counted}", rec.count));
                if repair {
                    rec.count = counted;
                    txn.batch.put(Cf::Refs, &k, &rec.encode());
                    r.repaired += 1;
                }
            }
            if counted > 0 {
                space.chunks += 1;
                space.unique_bytes += u64::from(rec.plain_len);
                space.stored_bytes += u64::from(rec.stored_len);
                live.push(id);
            } else {
                space.reclaimable_bytes += u64::from(rec.stored_len);
            }
        }
        for (id, n) in &recount {
            if !seen.contains(id) {
                let ino = file_chunks[id];
                r.problems.push(format!("chunk {id} ({n} references, e.g. inode {ino}) has no record: data lost"));
            }
        }
        if space != txn.space() {
            r.problems.push(format!("space counters {:?}, counted {space:?}", txn.space()));
            if repair {
                txn.set_space(space);
                r.repaired += 1;
            }
        }

        // Disagreements earlier changes met and recorded (`Txn::commit`): the change that
        // hid one may have left the counts consistent again, so only the record tells.
        for kv in self.store.scan(Cf::Meta, META_ANOMALY, META_ANOMALY) {
            let (k, v) = kv?;
            r.problems.push(match k.strip_prefix(META_ANOMALY_REFS).and_then(ChunkId::from_slice) {
                Some(id) => {
                    let count = v.as_ref().try_into().map_or(0, i64::from_be_bytes);
                    format!("chunk {id}: a change took its reference count below zero (to {count})")
                }
                None => format!("a change took space counters below zero ({})", String::from_utf8_lossy(&v)),
            });
            if repair {
                txn.batch.delete(Cf::Meta, &k);
                r.repaired += 1;
            }
        }

        // Every live chunk read back and verified.
        if read_data {
            let total = live.len() as u64;
            for (i, id) in live.iter().enumerate() {
                let ino = file_chunks.get(id).copied().unwrap_or(Ino(0));
                match self.chunks.verify(ino, id) {
                    Ok(len) => {
                        r.chunks_verified += 1;
                        r.bytes_verified += len;
                    }
                    Err(_) => r.problems.push(format!("chunk {id} (inode {ino}) is missing or damaged: data lost")),
                }
                progress(i as u64 + 1, total);
            }
        }
        if repair && r.repaired > 0 {
            txn.commit(Durability::Synced)?;
        }
        Ok(r)
    }
}
