//! The data path: write windows, content-defined chunking, commit, reads with read-ahead.
//!
//! Writes to a file collect in a *window*: a contiguous range of new bytes over the
//! committed file. Once its unchunked tail reaches `STREAM_THRESHOLD`,
//! the final cut points are taken and the block is handed to the worker pool, which
//! hashes, deduplicates, compresses and seals its chunks while the writer fills the next
//! block (at most `MAX_JOBS` blocks in flight per file, so memory stays bounded). New
//! bodies are appended to a pack file (`store::packs`), so a large file is written to disk
//! once and waits in no memtable. The window is committed (on close, fsync or a
//! non-contiguous write) by chunking its tail, syncing the packs, and replacing the covered
//! range of the extent map in one batch that also records where the new bodies lie; the
//! extents across the window's edges keep their outer parts (`extents::clear_range`), so
//! a random write stores only what it wrote. Nothing references a body before the body is
//! durable, so a crash at any point loses at most uncommitted writes and never corrupts a
//! file. A small file (one window, never streamed) keeps its bodies inline in that batch:
//! it costs no `fdatasync` at close.
//!
//! A window whose chunked part reaches `storage.write_window_mb` is split at its last cut
//! point: the chunked part becomes a `Segment`, whose packs are synced on a thread of its
//! own while the writer fills the rest, and which the next holder of the file's lock
//! commits (`finish_segment`). So a large copy never waits for the disk.
//!
//! A write elsewhere in the file sets a small window aside (`queued`): the committer
//! thread commits it while the writer goes on, so random writes wait for no hashing,
//! sealing or batch.

use super::error::{Error, Result};
use super::records::Timestamp;
use super::Volume;
use crate::ids::Ino;
use crate::store::keys;
use crate::store::{Cf, Durability};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use window::{QueuedWrites, Segment, Window};

mod queued;
mod read;
mod window;
mod write;

/// Per-file state while a file has uncommitted writes.
#[derive(Default)]
pub(crate) struct FileState {
    /// Small windows set aside by writes elsewhere in the file, committed in the
    /// background; older than `segment` and `window`.
    queued_writes: QueuedWrites,
    /// Told when the committer took writes off the queue: a writer waiting for room.
    drained: Arc<Condvar>,
    window: Option<Window>,
    /// The chunked part of a full window, split off and being synced; it lies just
    /// before `window` and is committed before anything else touches the file.
    segment: Option<Segment>,
    mtime: Option<Timestamp>,
    kill_suid: bool,
    last_write: Option<Instant>,
    /// Written since it was opened: the last close tells the hooks.
    changed: bool,
    /// Handed to the committer by a close (`closing`), not committed yet.
    pub(crate) queued: bool,
    /// Why a commit in the background failed: the next close or fsync reports it.
    pub(crate) deferred_error: Option<Error>,
}

impl FileState {
    /// The writes not committed yet, oldest first: the segment, then the window.
    fn uncommitted(&self) -> impl Iterator<Item = &Window> {
        self.segment.iter().map(|s| &s.window).chain(self.window.iter())
    }
}

impl Volume {
    pub(crate) fn file_state(&self, ino: Ino) -> Arc<Mutex<FileState>> {
        self.files.lock().expect("files lock").entry(ino).or_default().clone()
    }

    /// The state of `ino` if it has one (open, or with writes in flight).
    pub(crate) fn open_file_state(&self, ino: Ino) -> Option<Arc<Mutex<FileState>>> {
        self.files.lock().expect("files lock").get(&ino).cloned()
    }

    /// Drops the state of a file that is not open and has nothing pending.
    pub(crate) fn forget_idle_state(&self, ino: Ino) {
        if self.open_count(ino) == 0 {
            let mut files = self.files.lock().expect("files lock");
            if let Some(s) = files.get(&ino) {
                let idle = |st: &FileState| {
                    st.window.is_none()
                        && st.segment.is_none()
                        && st.queued_writes.is_empty()
                        && !st.queued
                        && st.deferred_error.is_none()
                };
                if Arc::strong_count(s) == 1 && idle(&s.lock().expect("file lock")) {
                    files.remove(&ino);
                }
            }
        }
    }

    pub(crate) fn open_count(&self, ino: Ino) -> u32 {
        self.opens.lock().expect("opens lock").get(&ino).copied().unwrap_or(0)
    }

    /// The inode of `ino` with its uncommitted size and times. The file's state is locked
    /// before the record is read: a commit running meanwhile (which holds that lock)
    /// finishes first, so the record and the window never miss each other.
    pub(crate) fn current_inode(&self, ino: Ino) -> Result<super::records::Inode> {
        let state = self.open_file_state(ino);
        let st = state.as_ref().map(|s| s.lock().expect("file lock"));
        let mut inode = self.load_inode(ino)?;
        if let Some(st) = st {
            for w in st.uncommitted() {
                inode.size = inode.size.max(w.end());
            }
            inode.size = inode.size.max(st.queued_writes.end());
            if let Some(t) = st.mtime {
                inode.mtime = t;
                inode.ctime = t;
            }
        }
        Ok(inode)
    }

    /// Registers an open handle of `ino`; `write`: opened for writing, refused on a
    /// read-only volume and on a snapshot's files.
    pub fn open_file(&self, ino: Ino, write: bool) -> Result<()> {
        let inode = self.load_inode(ino)?;
        if write && (self.read_only || inode.frozen) {
            return Err(Error::ReadOnly);
        }
        *self.opens.lock().expect("opens lock").entry(ino).or_default() += 1;
        Ok(())
    }

    /// Closes a handle of `ino`: commits its writes, and deletes the inode if this was the
    /// last handle of a file without names.
    pub fn release(&self, ino: Ino) -> Result<()> {
        let last = {
            let mut opens = self.opens.lock().expect("opens lock");
            let n = opens.entry(ino).or_default();
            *n = n.saturating_sub(1);
            let last = *n == 0;
            if last {
                opens.remove(&ino);
            }
            last
        };
        let result = self.flush(ino);
        let changed = last
            && self.open_file_state(ino).is_some_and(|s| std::mem::take(&mut s.lock().expect("file lock").changed));
        if changed {
            // Announcing the change must not fail the close that made it.
            if let Err(e) = self.notify_written(ino) {
                tracing::warn!(inode = %ino, error = %e, "hooks were not told of a written file");
            }
        }
        // Only a file unlinked while open (recorded in `orphans`) is deleted here; the
        // lookup keeps the commit lock off the path of every other close.
        if last && !self.read_only {
            self.forget_idle_state(ino);
            if self.store.contains(Cf::Orphans, &keys::ino_key(ino))? {
                self.reclaim_closed_orphan(ino)?;
            }
        }
        result
    }

    /// Deletes `ino` if it has no names and no open handles left. Both the last close and
    /// the unlink that orphaned an open file call this after their own change, so whichever
    /// comes second finds the other's done; an inode already deleted is left alone.
    pub(crate) fn reclaim_closed_orphan(&self, ino: Ino) -> Result<()> {
        if self.open_count(ino) > 0 {
            return Ok(());
        }
        let mut txn = self.txn()?;
        match txn.inode(ino) {
            Ok(i) if i.nlink == 0 => {
                txn.delete_inode(ino)?;
                txn.commit(Durability::Buffered)
            }
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Commits every window that has seen no write for `idle`: bounds what a crash can
    /// lose of data that was never fsync'd, like a journaling file system's commit interval.
    pub fn commit_idle(&self, idle: Duration) -> Result<()> {
        let files: Vec<(Ino, Arc<Mutex<FileState>>)> =
            self.files.lock().expect("files lock").iter().map(|(k, v)| (*k, v.clone())).collect();
        for (ino, state) in files {
            // A file busy with a write or read is skipped; it is picked up next time.
            let Ok(mut st) = state.try_lock() else { continue };
            if st.window.is_some() && st.last_write.is_some_and(|t| t.elapsed() >= idle) {
                // A failure is kept for the file's next fsync or close (`commit_window`).
                if let Err(e) = self.commit_window(ino, &mut st, Durability::Buffered) {
                    tracing::error!(inode = %ino, error = %e, "committing an idle file failed");
                }
            }
        }
        Ok(())
    }

    /// Commits the writes of `ino` (close), or hands a large file's commit to the
    /// committer (`closing`).
    pub fn flush(&self, ino: Ino) -> Result<()> {
        let Some(state) = self.open_file_state(ino) else { return Ok(()) };
        let mut st = state.lock().expect("file lock");
        if let Some(e) = st.deferred_error.take() {
            return Err(e);
        }
        if st.queued {
            return Ok(());
        }
        if st.segment.is_some() || !st.queued_writes.is_empty() || st.window.as_ref().is_some_and(Window::streamed) {
            st.queued = true;
            drop(st);
            if self.defer_commit(ino) {
                return Ok(());
            }
            st = state.lock().expect("file lock");
            st.queued = false;
        }
        self.commit_reporting(ino, &mut st, Durability::Buffered)
    }

    /// Commits the writes of `ino` and makes them durable.
    pub fn fsync(&self, ino: Ino) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.commit_file(ino, Durability::Synced)
    }

    /// Commits the writes of `ino` now (the close path may leave that to the committer).
    pub(crate) fn commit_file(&self, ino: Ino, durability: Durability) -> Result<()> {
        match self.open_file_state(ino) {
            Some(state) => {
                let mut st = state.lock().expect("file lock");
                if let Some(e) = st.deferred_error.take() {
                    return Err(e);
                }
                self.commit_reporting(ino, &mut st, durability)
            }
            None if durability == Durability::Synced => self.sync(),
            None => Ok(()),
        }
    }

    /// `commit_window` for a caller that reports its failure to the writer itself (its
    /// `close` or `fsync`): the error is not kept for a second report.
    fn commit_reporting(&self, ino: Ino, st: &mut FileState, durability: Durability) -> Result<()> {
        let result = self.commit_window(ino, st, durability);
        if result.is_err() {
            st.deferred_error = None;
        }
        result
    }
}
