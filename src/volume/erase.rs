//! What erasing a person needs from the engine (`nanofs user erase`, in `gallery::privacy`):
//! the chunks of their files, the copies of those files in snapshots (frozen trees that
//! nothing else may change), and a collection that removes the sealed bodies from disk
//! even where a pack is mostly alive.

use super::error::{Error, Result};
use super::gc::GcReport;
use super::records::Kind;
use super::Volume;
use crate::ids::{ChunkId, Ino};
use crate::store::keys::RefRecord;
use crate::store::{Cf, Durability};
use std::collections::HashSet;

impl Volume {
    /// The chunks that file `ino`'s extents use.
    pub fn file_chunks(&self, ino: Ino) -> Result<HashSet<ChunkId>> {
        Ok(self.extents_from(ino, 0)?.into_iter().map(|(_, e)| e.chunk).collect())
    }

    /// Deletes from every snapshot each file that holds data and whose chunks all lie in
    /// `chunks`: the copies of erased files, where the data was only theirs. Returns the
    /// names deleted.
    pub fn erase_snapshot_copies(&self, chunks: &HashSet<ChunkId>) -> Result<u64> {
        let Some(snapshots) = self.snapshots_dir()? else { return Ok(0) };
        if chunks.is_empty() {
            return Ok(0);
        }
        self.commit_all_windows()?;
        let mut doomed: Vec<(Ino, Vec<u8>, Ino)> = Vec::new();
        let mut stack = vec![snapshots];
        while let Some(dir) = stack.pop() {
            for e in self.dir_entries(dir)? {
                match e.kind {
                    Kind::Dir => stack.push(e.ino),
                    Kind::File => {
                        let mine = self.file_chunks(e.ino)?;
                        if !mine.is_empty() && mine.is_subset(chunks) {
                            doomed.push((dir, e.name, e.ino));
                        }
                    }
                    _ => {}
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut txn = self.txn()?;
        txn.allow_frozen = true;
        let now = super::Timestamp::now();
        for (dir, name, ino) in &doomed {
            txn.delete_dirent(*dir, name);
            if let Some(orphan) = self.drop_link(&mut txn, *ino, now)? {
                tracing::debug!(inode = %orphan, "an erased snapshot copy is open; it goes at its last close");
            }
        }
        txn.commit(Durability::Synced)?;
        Ok(doomed.len() as u64)
    }

    /// `gc`, and then every pack that held a body of `chunks` is rewritten without it
    /// however much of it is alive, so the erased data's sealed bodies leave the disk.
    pub fn gc_purging(&self, chunks: &HashSet<ChunkId>) -> Result<GcReport> {
        let mut packs = HashSet::new();
        for id in chunks {
            if let Some(v) = self.store.get(Cf::Refs, &id.0)? {
                let rec = RefRecord::decode(&v).ok_or_else(|| Error::CorruptMeta("ref record".into()))?;
                packs.extend(rec.location.map(|l| l.pack));
            }
        }
        self.collect_garbage(&packs)
    }
}
