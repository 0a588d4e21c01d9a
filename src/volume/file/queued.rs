//! Random writes off the writer's path. A write that lands outside the file's window sets
//! that window aside instead of committing it: a small one (nothing chunked yet) joins the
//! file's queue, and the committer thread commits it while the writer goes on, as a local
//! file system leaves dirty pages to writeback. The committer takes the queue in batches:
//! it chunks, hashes and seals them on a copy outside the file's lock, appends their new
//! bodies to a pack and syncs it once, then commits each write in order under the lock (one
//! small metadata batch each), so the bytes are written once and not through the
//! write-ahead log. A write is committed only while it is still the oldest one: an `fsync`
//! or `close` that committed the queue itself meanwhile (on its own thread, through the
//! log) wins. Every commit of the file commits the queue first, so writes keep their order.

use super::FileState;
use crate::chunk::cut_points;
use crate::ids::{ChunkId, Ino};
use crate::store::Durability;
use crate::volume::chunks::{Pending, Prepared, WindowBodies};
use crate::volume::error::{Error, Result};
use crate::volume::Volume;
use std::sync::Arc;

/// Queued bytes per file; a write past this commits the queue itself, which bounds memory
/// and what a crash can lose when the committer falls behind.
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Queued bytes the committer stores with one pack sync.
const BATCH_BYTES: usize = 8 << 20;

impl Volume {
    /// Moves the window out of the way of a write elsewhere in the file: a small one joins
    /// the queue if a committer runs; anything else is committed now.
    pub(super) fn set_window_aside(&self, ino: Ino, st: &mut FileState) -> Result<()> {
        let small = st.segment.is_none() && st.window.as_ref().is_some_and(|w| w.unchunked() && w.jobs.is_empty());
        if small && st.queued_writes.bytes() < MAX_QUEUED_BYTES && self.defer_queued_writes(ino) {
            st.queued_writes.push(st.window.take().expect("window is open"));
            return Ok(());
        }
        self.commit_window(ino, st, Durability::Buffered)
    }

    /// Commits every queued write of `ino`, oldest first, on the caller's thread.
    pub(super) fn commit_queued_writes(&self, ino: Ino, st: &mut FileState) -> Result<()> {
        while let Some(q) = st.queued_writes.front() {
            let (seq, data) = (q.seq, q.data.clone());
            let prepared = self.prepare_queued(&data);
            drop(data);
            self.commit_queued(ino, st, seq, prepared)?;
        }
        Ok(())
    }

    /// The committer's part: commits the queued writes of `ino` in batches. Each batch is
    /// chunked, hashed and sealed outside the file's lock, its new bodies appended to a
    /// pack, the pack synced once, and then each write committed in order: the bytes reach
    /// the disk once, and not through the write-ahead log. A failure is kept for the file's
    /// next `fsync` or `close`.
    pub(crate) fn commit_queued_in_background(&self, ino: Ino) {
        let Some(state) = self.open_file_state(ino) else { return };
        loop {
            let batch: Vec<(u64, u64, Arc<Vec<u8>>)> = {
                let st = state.lock().expect("file lock");
                st.queued_writes.oldest(BATCH_BYTES).map(|q| (q.seq, q.start, q.data.clone())).collect()
            };
            if batch.is_empty() {
                break;
            }
            let bodies = WindowBodies::default();
            // Chunks found stored already are pinned by `prepare` until referenced.
            let mut pinned: Vec<ChunkId> = Vec::new();
            let mut stored: Vec<(u64, Result<Vec<Pending>>)> = Vec::new();
            for (seq, start, data) in batch {
                let prepared = self.prepare_queued(&data);
                if let Ok(p) = &prepared {
                    pinned.extend(p.iter().filter(|p| p.sealed.is_none()).map(|p| p.id));
                }
                stored.push((seq, prepared.and_then(|p| self.chunks.pack(start, p, &bodies))));
            }
            let synced = self.store.sync_bodies().map_err(Error::from);
            let mut st = state.lock().expect("file lock");
            let committed = synced.and_then(|()| {
                stored.into_iter().try_for_each(|(seq, pending)| self.commit_queued_stored(ino, &mut st, seq, pending))
            });
            self.chunks.unpin(pinned.iter());
            match committed {
                Ok(()) => {}
                // Unlinked and released meanwhile: its data went with it.
                Err(Error::NotFound) => break,
                Err(e) => {
                    tracing::error!(inode = %ino, error = %e, "committing queued writes failed");
                    st.queued_writes.clear();
                    st.deferred_error.get_or_insert(e);
                    break;
                }
            }
        }
        drop(state);
        self.forget_idle_state(ino);
    }

    /// Commits queued write `seq`, whose chunks are stored and synced as `pending`, if it
    /// is still the oldest (see `commit_queued`); the caller unpins.
    fn commit_queued_stored(
        &self,
        ino: Ino,
        st: &mut FileState,
        seq: u64,
        pending: Result<Vec<Pending>>,
    ) -> Result<()> {
        let pending = pending?;
        match st.queued_writes.pop_if(seq) {
            Some(mut w) => {
                w.tail_stored(pending);
                self.commit_extents(ino, st, &w, w.end(), vec![], Durability::Buffered)
            }
            None => Ok(()),
        }
    }

    /// Chunks, hashes and seals a queued write: the part that needs no lock.
    fn prepare_queued(&self, data: &[u8]) -> Result<Vec<Prepared>> {
        self.chunks.prepare(data, &cut_points(data, &self.params, true))
    }

    /// Commits queued write `seq` with its `prepared` chunks if it is still the oldest; a
    /// write committed by someone else meanwhile is left alone. If the commit fails, the
    /// queue goes: the file keeps its committed contents, as after a crash.
    fn commit_queued(&self, ino: Ino, st: &mut FileState, seq: u64, prepared: Result<Vec<Prepared>>) -> Result<()> {
        let result = prepared.and_then(|prepared| {
            // Chunks found stored already are pinned by `prepare` until referenced.
            let pinned: Vec<ChunkId> = prepared.iter().filter(|p| p.sealed.is_none()).map(|p| p.id).collect();
            let result = match st.queued_writes.pop_if(seq) {
                Some(w) => self.commit_extents(ino, st, &w, w.end(), prepared, Durability::Buffered),
                None => Ok(()),
            };
            self.chunks.unpin(pinned.iter());
            result
        });
        if result.is_err() {
            st.queued_writes.clear();
        }
        result
    }
}
