//! Random writes off the writer's path. A write that lands outside the file's window sets
//! that window aside instead of committing it: a small one (nothing chunked yet) joins the
//! file's queue, and the committer thread chunks, hashes, seals and commits it while the
//! writer goes on, as a local file system leaves dirty pages to writeback. The expensive
//! part runs on a copy outside the file's lock; the commit itself (one batch per write, in
//! order) takes the lock, and commits the write only if it is still the oldest one, so an
//! `fsync` or `close` that committed the queue itself meanwhile wins. Every commit of the
//! file commits the queue first, so the order of writes is kept.

use super::FileState;
use crate::chunk::cut_points;
use crate::ids::{ChunkId, Ino};
use crate::store::Durability;
use crate::volume::chunks::Prepared;
use crate::volume::error::{Error, Result};
use crate::volume::Volume;

/// Queued bytes per file; a write past this commits the queue itself, which bounds memory
/// and what a crash can lose when the committer falls behind.
const MAX_QUEUED_BYTES: usize = 16 << 20;

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

    /// The committer's part: commits the queued writes of `ino`, sealing each outside the
    /// file's lock. A failure is kept for the file's next `fsync` or `close`.
    pub(crate) fn commit_queued_in_background(&self, ino: Ino) {
        let Some(state) = self.open_file_state(ino) else { return };
        loop {
            let (seq, data) = {
                let st = state.lock().expect("file lock");
                match st.queued_writes.front() {
                    Some(q) => (q.seq, q.data.clone()),
                    None => break,
                }
            };
            let prepared = self.prepare_queued(&data);
            drop(data);
            let mut st = state.lock().expect("file lock");
            match self.commit_queued(ino, &mut st, seq, prepared) {
                Ok(()) => {}
                // Unlinked and released meanwhile: its data went with it.
                Err(Error::NotFound) => break,
                Err(e) => {
                    tracing::error!(inode = %ino, error = %e, "committing a queued write failed");
                    st.deferred_error.get_or_insert(e);
                    break;
                }
            }
        }
        drop(state);
        self.forget_idle_state(ino);
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
