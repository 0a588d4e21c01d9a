//! Random writes off the writer's path. A write that lands outside the file's window sets
//! that window aside instead of committing it: a small one (nothing chunked yet) joins the
//! file's queue, and the committer thread commits it while the writer goes on, as a local
//! file system leaves dirty pages to writeback; a writer waits only when its file's queue
//! is full. The queue is committed in batches: chunked, hashed and sealed in parallel on a
//! copy, the new bodies appended to a pack and synced once, then each write committed in
//! order (one small metadata batch each), so the bytes reach the disk once and not through
//! the write-ahead log. The committer stores a batch outside the file's lock and commits a
//! write only while it is still the oldest: an `fsync` or any other commit of the file,
//! which commits the queue first and itself, may have come first.

use super::{FileState, LostWrites};
use crate::chunk::cut_points;
use crate::ids::{ChunkId, Ino};
use crate::store::Durability;
use crate::volume::chunks::{Pending, WindowBodies};
use crate::volume::error::{Error, Result};
use crate::volume::Volume;
use rayon::prelude::*;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// Queued bytes per file: a writer waits for the committer past this, which bounds memory
/// and what a crash can lose when the committer falls behind.
const MAX_QUEUED_BYTES: usize = 32 << 20;
/// Queued bytes stored with one pack sync.
const BATCH_BYTES: usize = 8 << 20;

impl Volume {
    /// Waits, with the file's lock released, while its queue is full and a committer runs
    /// to empty it.
    pub(super) fn wait_for_queue_room<'a>(&self, mut st: MutexGuard<'a, FileState>) -> MutexGuard<'a, FileState> {
        while st.queued_writes.bytes() >= MAX_QUEUED_BYTES && self.committer_runs() {
            let drained = st.drained.clone();
            // A timeout, in case the committer stops meanwhile.
            st = drained.wait_timeout(st, Duration::from_millis(100)).expect("file lock").0;
        }
        st
    }

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

    /// Commits every queued write of `ino`, oldest first, on the caller's thread (an
    /// `fsync`, a close or any change that needs the file committed).
    pub(super) fn commit_queued_writes(&self, ino: Ino, st: &mut FileState) -> Result<()> {
        loop {
            let batch = snapshot(st);
            if batch.is_empty() {
                return Ok(());
            }
            let stored = self.store_batch(&batch);
            self.commit_batch(ino, st, stored)?;
        }
    }

    /// The committer's part: commits the queued writes of `ino` in batches, storing each
    /// batch outside the file's lock. A failure is recorded for the file's handles.
    pub(crate) fn commit_queued_in_background(&self, ino: Ino) {
        let Some(state) = self.open_file_state(ino) else { return };
        loop {
            let batch = snapshot(&state.lock().expect("file lock"));
            if batch.is_empty() {
                break;
            }
            let stored = self.store_batch(&batch);
            let mut st = state.lock().expect("file lock");
            let committed = self.commit_batch(ino, &mut st, stored);
            st.drained.notify_all();
            match committed {
                Ok(()) => {}
                // Unlinked and released meanwhile: its data went with it.
                Err(Error::NotFound) => break,
                Err(e) => {
                    tracing::error!(inode = %ino, error = %e, "committing queued writes failed");
                    if let Some(lost) = LostWrites::of(&e) {
                        st.errors.record(lost);
                    }
                    break;
                }
            }
        }
        drop(state);
        self.forget_idle_state(ino);
    }

    /// Chunks, hashes and seals the writes of `batch` (in parallel), appends their new
    /// bodies to a pack and syncs it: the part that needs no lock.
    fn store_batch(&self, batch: &[(u64, u64, Arc<Vec<u8>>)]) -> StoredBatch {
        let bodies = WindowBodies::default();
        let stored: Vec<(u64, Vec<ChunkId>, Result<Vec<Pending>>)> = batch
            .par_iter()
            .map(|(seq, start, data)| {
                let prepared = self.chunks.prepare(data, &cut_points(data, &self.params, true));
                // Chunks found stored already are pinned by `prepare` until referenced.
                let found = prepared
                    .as_ref()
                    .map_or(vec![], |p| p.iter().filter(|p| p.sealed.is_none()).map(|p| p.id).collect());
                (*seq, found, prepared.and_then(|p| self.chunks.pack(*start, p, &bodies)))
            })
            .collect();
        let pinned = stored.iter().flat_map(|(_, found, _)| found.iter().copied()).collect();
        let writes = stored.into_iter().map(|(seq, _, pending)| pending.map(|p| (seq, p))).collect::<Result<_>>();
        let writes = writes.and_then(|w| self.store.sync_bodies().map(|()| w).map_err(Error::from));
        let last_seq = batch.last().map_or(0, |(seq, _, _)| *seq);
        StoredBatch { pinned, writes, last_seq }
    }

    /// Commits the writes of a stored batch in order, each only while it is still the
    /// oldest (one committed by someone else meanwhile is left alone), and unpins. If
    /// anything fails, the queue goes: the file keeps its committed contents, as after a
    /// crash.
    fn commit_batch(&self, ino: Ino, st: &mut FileState, stored: StoredBatch) -> Result<()> {
        let result = stored.writes.and_then(|writes| {
            writes.into_iter().try_for_each(|(seq, pending)| match st.queued_writes.pop_if(seq) {
                Some(mut w) => {
                    w.tail_stored(pending);
                    self.commit_extents(ino, st, &w, w.end(), vec![], Durability::Buffered)
                }
                None => Ok(()),
            })
        });
        self.chunks.unpin(stored.pinned.iter());
        if result.is_err() {
            // A batch that failed after another thread committed all its writes (through
            // a batch of its own) lost nothing.
            if st.queued_writes.oldest(0).next().is_none_or(|q| q.seq > stored.last_seq) {
                return Ok(());
            }
            st.queued_writes.clear();
        }
        result
    }
}

/// A batch of queued writes with their chunks stored and synced, ready to commit.
struct StoredBatch {
    /// Stored chunks the writes found, pinned until committed.
    pinned: Vec<ChunkId>,
    /// The newest write of the batch.
    last_seq: u64,
    /// Per write (by `seq`), its chunks laid end to end.
    writes: Result<Vec<(u64, Vec<Pending>)>>,
}

/// The oldest queued writes, about `BATCH_BYTES` of them: copies, to store without the lock.
fn snapshot(st: &FileState) -> Vec<(u64, u64, Arc<Vec<u8>>)> {
    st.queued_writes.oldest(BATCH_BYTES).map(|q| (q.seq, q.start, q.data.clone())).collect()
}
