//! The data path: write windows, content-defined chunking, commit, reads with read-ahead.
//!
//! Writes to a file collect in a *window*: a contiguous range of new bytes over the
//! committed file. Once its unchunked tail reaches a block (8 MiB for a window's first,
//! 2 MiB after), the final cut points are taken (the scan resumes where the last one
//! stopped) and the block is handed to the worker pool, which hashes, deduplicates,
//! compresses and seals its chunks while the writer fills the next block (at most
//! `MAX_JOBS` blocks in flight per file, so memory stays bounded). New
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
use super::records::{Inode, Timestamp};
use super::Volume;
use crate::ids::Ino;
use crate::store::keys;
use crate::store::{Cf, Durability};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use window::{QueuedWrites, Segment, Window};

pub use errors::Handle;
pub(crate) use errors::LostWrites;

mod errors;
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
    /// `chmod`, `chown` and `utimens` of a closed file whose commit was handed over
    /// (`closing`), folded into that commit rather than a batch of their own (`Volume::setattr`).
    /// Written by the commit before the writes' own mtime and setuid changes, which may be
    /// newer.
    pending_attrs: Option<PendingAttrs>,
    last_write: Option<Instant>,
    /// Written since it was opened: the last close tells the hooks.
    changed: bool,
    /// Handed to the committer by a close (`closing`), not committed yet.
    pub(crate) queued: bool,
    /// Writes so far: a commit prepared from a copy of the window checks that none came
    /// since (`closing`).
    writes: u64,
    /// Acknowledged writes lost to a failed store or commit, and the handles to tell.
    pub(crate) errors: errors::WriteErrors,
}

impl FileState {
    /// The writes not committed yet, oldest first: the segment, then the window.
    fn uncommitted(&self) -> impl Iterator<Item = &Window> {
        self.segment.iter().map(|s| &s.window).chain(self.window.iter())
    }

    /// Shows on `inode` what the uncommitted writes change besides the bytes: the
    /// attribute changes folded into their commit, the mtime, and setuid cleared by a write
    /// from another user.
    fn overlay_written(&self, inode: &mut Inode) {
        if let Some(p) = &self.pending_attrs {
            p.apply(inode);
        }
        if let Some(t) = self.mtime {
            inode.mtime = t;
            inode.ctime = t;
        }
        if self.kill_suid {
            inode.drop_setid();
        }
    }

    /// Records those changes in `inode`, which a change is about to write; the writes'
    /// commit does not apply them again.
    pub(crate) fn record_written(&mut self, inode: &mut Inode) {
        self.overlay_written(inode);
        self.pending_attrs = None;
        self.mtime = None;
        self.kill_suid = false;
    }

    /// Whether a `chmod`, `chown` or `utimens` (no size change) can fold into the file's
    /// handed-over commit instead of a batch of its own: its window is still waiting for
    /// the committer, whose commit will write the attributes with the bytes.
    pub(crate) fn folds_attr_changes(&self) -> bool {
        self.queued && self.window.is_some()
    }

    /// Whether attribute changes wait in the file's commit (`fold_attr_changes`).
    pub(crate) fn has_pending_attrs(&self) -> bool {
        self.pending_attrs.is_some()
    }

    /// Drops the attribute changes waiting for a commit of a file that is gone.
    pub(crate) fn forget_pending_attrs(&mut self) {
        self.pending_attrs = None;
    }

    /// Folds attribute changes into the pending commit: makes `change` on the file's
    /// current inode (`committed` as stored, with what the uncommitted writes change shown
    /// on it), keeps the permissions, owner and times that result for the commit to
    /// write, and returns that inode.
    pub(crate) fn fold_attr_changes(&mut self, mut committed: Inode, change: impl FnOnce(&mut Inode)) -> Inode {
        debug_assert!(self.folds_attr_changes());
        self.overlay_written(&mut committed);
        change(&mut committed);
        self.pending_attrs = Some(PendingAttrs::of(&committed));
        // Shown on the inode already, so part of the pending attributes.
        self.mtime = None;
        self.kill_suid = false;
        self.overlay_uncommitted(&mut committed);
        committed
    }

    /// Shows the uncommitted writes' size on `inode`, and their bytes as allocated (as
    /// ext4 counts delayed allocations: an overwrite counts twice until its commit, up to
    /// the size).
    pub(crate) fn overlay_uncommitted(&self, inode: &mut Inode) {
        let queued = (!self.queued_writes.is_empty()).then(|| self.queued_writes.end());
        let Some(end) = self.uncommitted().map(Window::end).chain(queued).max() else { return };
        inode.size = inode.size.max(end);
        let bytes: u64 = self.uncommitted().map(|w| w.end() - w.start).sum::<u64>() + self.queued_writes.bytes() as u64;
        inode.allocated = (inode.allocated + bytes).min(inode.size.next_multiple_of(4096)).max(inode.allocated);
    }
}

/// The attributes a folded `chmod`, `chown` or `utimens` left (`FileState::pending_attrs`).
#[derive(Clone, Copy)]
struct PendingAttrs {
    perm: u32,
    uid: u32,
    gid: u32,
    atime: Timestamp,
    mtime: Timestamp,
    ctime: Timestamp,
}

impl PendingAttrs {
    fn of(inode: &Inode) -> Self {
        let Inode { perm, uid, gid, atime, mtime, ctime, .. } = *inode;
        Self { perm, uid, gid, atime, mtime, ctime }
    }

    /// Writes them on `inode`; a ctime set since by another change (a rename, a link)
    /// stays if it is newer.
    fn apply(&self, inode: &mut Inode) {
        inode.perm = self.perm;
        inode.uid = self.uid;
        inode.gid = self.gid;
        inode.atime = self.atime;
        inode.mtime = self.mtime;
        inode.ctime = inode.ctime.max(self.ctime);
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
                        && !st.has_pending_attrs()
                        && st.errors.idle()
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
            st.overlay_uncommitted(&mut inode);
            st.overlay_written(&mut inode);
        }
        Ok(inode)
    }

    /// Opens `ino`; `write`: for writing, refused on a read-only volume and on a
    /// snapshot's files. The handle is for `flush`, `fsync` and `release`.
    pub fn open_file(&self, ino: Ino, write: bool) -> Result<Handle> {
        let inode = self.load_inode(ino)?;
        if write && (self.read_only || inode.frozen) {
            return Err(Error::ReadOnly);
        }
        let h = Handle(self.next_handle.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        *self.opens.lock().expect("opens lock").entry(ino).or_default() += 1;
        self.file_state(ino).lock().expect("file lock").errors.opened(h);
        Ok(h)
    }

    /// Closes handle `h` of `ino`: commits its writes, and deletes the inode if this was the
    /// last handle of a file without names.
    pub fn release(&self, ino: Ino, h: Handle) -> Result<()> {
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
        let (result, changed) = match self.open_file_state(ino) {
            Some(state) => {
                let committed = self.commit_at_release(ino, &state);
                let mut st = state.lock().expect("file lock");
                let lost = st.errors.peek_for(h);
                st.errors.closed(h);
                (committed.and(lost.map_or(Ok(()), Err)), last && std::mem::take(&mut st.changed))
            }
            None => (Ok(()), false),
        };
        if changed {
            // Announcing the change must not fail the close that made it.
            if let Err(e) = self.notify_written(ino) {
                tracing::warn!(inode = %ino, error = %e, "hooks were not told of a written file");
            }
        }
        // Only a file unlinked while open (recorded in `orphans`) is deleted here; the
        // lookup keeps the commit lock off the path of every other close.
        if last {
            // Every open makes a state (for its handle's errors): a read-only volume's too.
            self.forget_idle_state(ino);
            if !self.read_only && self.store.contains(Cf::Orphans, &keys::ino_key(ino))? {
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
                // A failure is recorded for the file's handles (`commit_window`).
                if let Err(e) = self.commit_window(ino, &mut st, Durability::Buffered) {
                    tracing::error!(inode = %ino, error = %e, "committing an idle file failed");
                }
            }
        }
        Ok(())
    }

    /// A close of a descriptor of handle `h` (FUSE `flush`; a handle shared by forked
    /// processes sees one per process): hands a small file's writes to the committer (or,
    /// without one, commits them, one logged batch, so the close reports its failure), and
    /// reports writes lost since `h` last `fsync`ed. Writes that need the packs synced are
    /// left to the handle's release: a child closing its copy must not break up the
    /// parent's large write.
    pub fn flush(&self, ino: Ino, h: Handle) -> Result<()> {
        let Some(state) = self.open_file_state(ino) else { return Ok(()) };
        let mut st = state.lock().expect("file lock");
        let committed = if st.queued || needs_packs_synced(&st) {
            Ok(())
        } else if let Some(held) = st.window.as_ref().map(|w| w.tail.len()) {
            let taken;
            (st, taken) = self.hand_over(ino, &state, st, Some(held));
            if taken {
                Ok(())
            } else {
                self.commit_window(ino, &mut st, Durability::Buffered)
            }
        } else {
            Ok(())
        };
        let lost = st.errors.peek_for(h);
        committed?;
        lost.map_or(Ok(()), Err)
    }

    /// At a release: commits the writes of `ino`, or hands them to the committer if they
    /// need the packs synced (`closing`).
    fn commit_at_release(&self, ino: Ino, state: &Mutex<FileState>) -> Result<()> {
        let mut st = state.lock().expect("file lock");
        if st.queued {
            return Ok(());
        }
        if needs_packs_synced(&st) {
            let taken;
            (st, taken) = self.hand_over(ino, state, st, None);
            if taken {
                return Ok(());
            }
        }
        self.commit_window(ino, &mut st, Durability::Buffered)
    }

    /// Hands the commit of closed file `ino` to the committer (`closing`), with the file's
    /// lock released while it waits for room; false if there is no committer (the caller
    /// commits). `held`: bytes the window holds, `None` for a large file.
    fn hand_over<'a>(
        &self,
        ino: Ino,
        state: &'a Mutex<FileState>,
        mut st: MutexGuard<'a, FileState>,
        held: Option<usize>,
    ) -> (MutexGuard<'a, FileState>, bool) {
        st.queued = true;
        drop(st);
        let taken = self.defer_commit(ino, held);
        let mut st = state.lock().expect("file lock");
        if !taken {
            st.queued = false;
        }
        (st, taken)
    }

    /// Commits the writes of `ino` and makes them durable; reports writes lost since
    /// handle `h` last `fsync`ed (without a handle: lost writes nobody was told of).
    pub fn fsync(&self, ino: Ino, h: Option<Handle>) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let Some(state) = self.open_file_state(ino) else { return self.sync() };
        let mut st = state.lock().expect("file lock");
        let committed = self.commit_window(ino, &mut st, Durability::Synced);
        // A failure of this very commit is recorded too, and told once.
        let lost = st.errors.take_for(h);
        committed?;
        lost.map_or(Ok(()), Err)
    }

    /// Commits the writes of `ino` now (the close path may leave that to the committer).
    /// What fails is returned and recorded for the file's handles.
    pub(crate) fn commit_file(&self, ino: Ino, durability: Durability) -> Result<()> {
        match self.open_file_state(ino) {
            Some(state) => self.commit_window(ino, &mut state.lock().expect("file lock"), durability),
            None if durability == Durability::Synced => self.sync(),
            None => Ok(()),
        }
    }
}

/// Whether committing the file's writes means an `fdatasync` of the packs.
fn needs_packs_synced(st: &FileState) -> bool {
    st.segment.is_some() || !st.queued_writes.is_empty() || st.window.as_ref().is_some_and(Window::streamed)
}
