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

use super::chunks::{Pending, Plain, Prepared, WindowBodies};
use super::error::{Error, Result};
use super::records::{Kind, Timestamp};
use super::txn::Txn;
use super::Volume;
use crate::chunk::cut_points;
use crate::ids::{ChunkId, Ino};
use crate::store::keys::{self, ExtentValue};
use crate::store::{Cf, Durability};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Unchunked bytes a window collects before its final cut points are taken.
const STREAM_THRESHOLD: usize = 8 << 20;
/// Bytes read ahead of a sequential reader.
const READAHEAD: u64 = 8 << 20;
/// Free space kept on the volume's disk so RocksDB can always flush and compact.
const SPACE_RESERVE: u64 = 96 << 20;

/// Per-file state while a file has uncommitted writes.
#[derive(Default)]
pub(crate) struct FileState {
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

struct Window {
    start: u64,
    /// Chunks stored and ready to reference, contiguous from `start`.
    pending: Vec<Pending>,
    /// Blocks being chunked and stored on the worker pool, contiguous after `pending`.
    jobs: VecDeque<Job>,
    /// Bytes covered by `pending` and `jobs`.
    pending_len: u64,
    tail: Vec<u8>,
    /// The bodies this window appended to packs, shared with its jobs.
    bodies: Arc<WindowBodies>,
}

impl Window {
    fn new(start: u64) -> Self {
        Self { start, pending: vec![], jobs: VecDeque::new(), pending_len: 0, tail: vec![], bodies: Arc::default() }
    }
    fn tail_start(&self) -> u64 {
        self.start + self.pending_len
    }
    fn end(&self) -> u64 {
        self.tail_start() + self.tail.len() as u64
    }
    /// Bodies went, or are going, to packs: the commit syncs them.
    fn streamed(&self) -> bool {
        self.packed() || !self.jobs.is_empty()
    }
    /// Some pending bodies are in packs: the commit syncs them.
    fn packed(&self) -> bool {
        self.pending.iter().any(|p| p.body.is_some())
    }
    /// Waits for the oldest job and moves its chunks to `pending`.
    fn finish_oldest_job(&mut self) -> Result<()> {
        if let Some(job) = self.jobs.pop_front() {
            let mut done = job.wait()?;
            self.pending.append(&mut done);
        }
        Ok(())
    }
    /// The chunks this window references that were stored already: pinned by the dedup
    /// that found them until the window commits.
    fn dedup_hits(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.pending.iter().filter(|p| p.body.is_none()).map(|p| p.id)
    }
    /// Waits for every job.
    fn finish_jobs(&mut self) -> Result<()> {
        while !self.jobs.is_empty() {
            self.finish_oldest_job()?;
        }
        Ok(())
    }
}

/// The chunked part of a full window: its bodies are being synced in the background.
struct Segment {
    /// All of it chunked and stored: no jobs, an empty tail.
    window: Window,
    /// Filled by the syncing thread once the packs are synced.
    synced: Arc<Handoff<Result<()>>>,
}

impl Segment {
    /// Splits the chunked part off `w` (whose jobs are finished), which goes on from there
    /// with the tail, and starts syncing its bodies.
    fn split_off(w: &mut Window, store: Arc<crate::store::Store>) -> Result<Self> {
        // The sync covers every body appended so far; started first, so that a thread that
        // cannot start leaves the window whole.
        let synced = Arc::new(Handoff::default());
        let done = Arc::clone(&synced);
        std::thread::Builder::new()
            .name("segment-sync".into())
            .spawn(move || done.fill(store.sync_bodies().map_err(Error::from)))
            .map_err(Error::Io)?;
        let mut rest = Window::new(w.tail_start());
        rest.tail = std::mem::take(&mut w.tail);
        // The rest dedups against the bodies the segment appended, uncommitted as they are.
        rest.bodies = w.bodies.clone();
        let window = std::mem::replace(w, rest);
        Ok(Self { window, synced })
    }

    /// Whether the sync has finished.
    fn synced(&self) -> bool {
        self.synced.is_filled()
    }
}

/// A result that one thread hands to another: filled once, then taken by a waiter.
struct Handoff<T> {
    value: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Self { value: Mutex::new(None), filled: Condvar::new() }
    }
}

impl<T> Handoff<T> {
    fn fill(&self, value: T) {
        *self.value.lock().expect("handoff lock") = Some(value);
        self.filled.notify_all();
    }
    fn is_filled(&self) -> bool {
        self.value.lock().expect("handoff lock").is_some()
    }
    /// Waits until the value is there and takes it.
    fn take(&self) -> T {
        let mut value = self.value.lock().expect("handoff lock");
        loop {
            if let Some(v) = value.take() {
                return v;
            }
            value = self.filled.wait(value).expect("handoff lock");
        }
    }
}

/// Blocks chunked in the background per writing file: the writer fills the next block
/// while the worker pool hashes and seals the previous ones.
const MAX_JOBS: usize = 2;

/// A block of the window being chunked, hashed, sealed and stored in the background.
struct Job {
    offset: u64,
    /// The block's bytes, kept for reads until the job is finished.
    data: Arc<Vec<u8>>,
    done: Arc<Handoff<Result<Vec<Pending>>>>,
}

impl Job {
    fn wait(self) -> Result<Vec<Pending>> {
        self.done.take()
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
                    st.window.is_none() && st.segment.is_none() && !st.queued && st.deferred_error.is_none()
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
                self.commit_window(ino, &mut st, Durability::Buffered)?;
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
        if st.segment.is_some() || st.window.as_ref().is_some_and(Window::streamed) {
            st.queued = true;
            drop(st);
            if self.defer_commit(ino) {
                return Ok(());
            }
            st = state.lock().expect("file lock");
            st.queued = false;
        }
        self.commit_window(ino, &mut st, Durability::Buffered)
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
                self.commit_window(ino, &mut st, durability)
            }
            None if durability == Durability::Synced => self.sync(),
            None => Ok(()),
        }
    }

    /// Writes `data` at `offset` (or at the end of the file with `append`); returns the
    /// offset written at. `kill_suid` clears setuid/setgid (a write by a non-owner).
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8], append: bool, kill_suid: bool) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.make_room(data.len() as u64, SPACE_RESERVE)?;
        let state = self.file_state(ino);
        let mut st = state.lock().expect("file lock");
        st.changed = true;
        let result = self.write_locked(ino, &mut st, offset, data, append, kill_suid);
        if let Err(e) = &result {
            self.discard_window(ino, &mut st, e);
        }
        result
    }

    /// After a write failed storing or committing earlier writes: the window's writes are
    /// lost (the file keeps its committed contents, as after a crash), and the next fsync
    /// or close of the file reports it too, since some of them had been acknowledged.
    /// (A window left in place after a failed block would commit with a hole of zeros
    /// where the block was.)
    fn discard_window(&self, ino: Ino, st: &mut FileState, e: &Error) {
        let lost = match e {
            Error::NoSpace => Error::NoSpace,
            Error::Store(_) | Error::Io(_) => Error::Io(std::io::Error::from_raw_os_error(libc::EIO)),
            // Refused before anything was stored (a bad offset): the window stands.
            _ => return,
        };
        tracing::error!(inode = %ino, error = %e, "uncommitted writes to the file are lost");
        if let Some(w) = st.window.take() {
            self.chunks.unpin(w.dedup_hits().collect::<Vec<_>>().iter());
        }
        st.deferred_error.get_or_insert(lost);
    }

    fn write_locked(
        &self,
        ino: Ino,
        st: &mut FileState,
        offset: u64,
        data: &[u8],
        append: bool,
        kill_suid: bool,
    ) -> Result<u64> {
        // A synced segment is committed by the next write, so a crash loses no more than
        // one window.
        if st.segment.as_ref().is_some_and(Segment::synced) {
            self.finish_segment(ino, st)?;
        }
        let offset = if append {
            let committed = self.load_inode(ino)?.size;
            st.window.as_ref().map_or(committed, |w| committed.max(w.end()))
        } else {
            offset
        };
        offset.checked_add(data.len() as u64).filter(|end| *end <= i64::MAX as u64).ok_or(Error::Invalid)?;
        let fits = st.window.as_ref().is_some_and(|w| offset >= w.tail_start() && offset <= w.end());
        if !fits {
            self.commit_window(ino, st, Durability::Buffered)?;
            st.window = Some(self.open_window(ino, offset)?);
        }
        let w = st.window.as_mut().expect("window is open");
        let rel = (offset - w.tail_start()) as usize;
        if rel + data.len() > w.tail.len() {
            w.tail.resize(rel + data.len(), 0);
        }
        w.tail[rel..rel + data.len()].copy_from_slice(data);
        if w.tail.len() >= STREAM_THRESHOLD {
            self.stream(w)?;
        }
        let full = w.pending_len >= self.window_limit;
        st.mtime = Some(Timestamp::now());
        st.kill_suid |= kill_suid;
        st.last_write = Some(Instant::now());
        if full {
            self.split_window(ino, st)?;
        }
        Ok(offset)
    }

    /// A window for a write at `offset`. A write inside a committed extent starts the
    /// window right there: its commit keeps the extent's head as a partial extent
    /// (`clear_range`) instead of reading and re-chunking it, so a small write into a
    /// large file costs a small chunk.
    fn open_window(&self, ino: Ino, offset: u64) -> Result<Window> {
        let mut w = Window::new(offset);
        // An append right after the last chunk: take that chunk back into the window, so
        // the cut points come out as if the file had been written in one go (a file sent
        // in pieces, by tus or `>>`, dedups like one written at once). Only at the end: a
        // write inside the file that starts where an extent ends takes nothing back.
        if offset > 0 && offset == self.load_inode(ino)?.size {
            if let Some((off, e)) = self.extents_between(ino, offset - 1, offset)?.into_iter().next() {
                if off + u64::from(e.len) == offset {
                    let plain = self.chunks.extent(ino, &e)?;
                    w.start = off;
                    w.tail.extend_from_slice(&plain);
                }
            }
        }
        Ok(w)
    }

    /// Hands the final chunks of the window's tail to the worker pool.
    fn stream(&self, w: &mut Window) -> Result<()> {
        let lens = cut_points(&w.tail, &self.params, false);
        let consumed: usize = lens.iter().sum();
        if consumed == 0 {
            return Ok(());
        }
        while w.jobs.len() >= MAX_JOBS {
            w.finish_oldest_job()?;
        }
        // The next block grows in a buffer sized for it, so appends never reallocate.
        let mut rest = Vec::with_capacity(STREAM_THRESHOLD + self.params.max);
        rest.extend_from_slice(&w.tail[consumed..]);
        let mut block = std::mem::replace(&mut w.tail, rest);
        block.truncate(consumed);
        let block = Arc::new(block);
        let offset = w.tail_start();
        w.pending_len += consumed as u64;
        let done = Arc::new(Handoff::default());
        let (reader, data, slot, bodies) = (self.chunks.clone(), block.clone(), done.clone(), w.bodies.clone());
        rayon::spawn(move || slot.fill(reader.store_block(offset, &data, &lens, &bodies)));
        w.jobs.push_back(Job { offset, data: block, done });
        Ok(())
    }

    /// Splits a full window into a segment, committed once its bodies are synced, and the
    /// rest, which the writer goes on filling. A committed extent across the split point
    /// (an overwrite inside a file) keeps its far part through the segment's commit.
    fn split_window(&self, ino: Ino, st: &mut FileState) -> Result<()> {
        self.finish_segment(ino, st)?;
        let w = st.window.as_mut().expect("window is open");
        // The jobs in flight take a few milliseconds: the segment then holds no buffers.
        if let Err(e) = w.finish_jobs() {
            st.window = None;
            return Err(e);
        }
        st.segment = Some(Segment::split_off(w, self.store.clone())?);
        Ok(())
    }

    /// Commits the segment split off `ino`'s window once its bodies are synced. If that
    /// fails, the window after it goes too: the file keeps its last committed contents,
    /// as after a crash, rather than a gap where the segment was.
    fn finish_segment(&self, ino: Ino, st: &mut FileState) -> Result<()> {
        let Some(segment) = st.segment.take() else { return Ok(()) };
        let synced = segment.synced.take();
        let w = segment.window;
        let pinned: Vec<ChunkId> = w.dedup_hits().collect();
        let result = synced.and_then(|()| {
            // The segment's bodies are durable; no extent points at them yet.
            super::faults::crash_point("segment-synced");
            self.commit_extents(ino, st, &w, w.end(), vec![], Durability::Buffered)
        });
        self.chunks.unpin(pinned.iter());
        if let Err(e) = &result {
            tracing::error!(inode = %ino, error = %e, "could not commit the first part of a large write");
            st.window = None;
        }
        result
    }

    /// Makes the window part of the file: see the module docs.
    pub(crate) fn commit_window(&self, ino: Ino, st: &mut FileState, durability: Durability) -> Result<()> {
        self.finish_segment(ino, st)?;
        let Some(mut w) = st.window.take() else {
            return if durability == Durability::Synced { self.sync() } else { Ok(()) };
        };
        w.finish_jobs()?;
        let written_end = w.end();
        // After a long write, the committed extent across the window's end is re-chunked
        // with it: one more chunk read is noise there, and the cut points stay those of the
        // content. After a short one (a random write), it keeps its far part as it is.
        if w.streamed() {
            if let Some((off, e)) = self.extent_across(ino, written_end)? {
                let plain = self.chunks.extent(ino, &e)?;
                w.tail.extend_from_slice(&plain[(written_end - off) as usize..]);
            }
        }
        let lens = cut_points(&w.tail, &self.params, true);
        let prepared = self.chunks.prepare(&w.tail, &lens)?;
        let pinned: Vec<ChunkId> =
            w.dedup_hits().chain(prepared.iter().filter(|p| p.sealed.is_none()).map(|p| p.id)).collect();
        let result = self.store_tail_and_commit(ino, st, w, written_end, prepared, durability);
        self.chunks.unpin(pinned.iter());
        result
    }

    fn store_tail_and_commit(
        &self,
        ino: Ino,
        st: &mut FileState,
        mut w: Window,
        written_end: u64,
        mut prepared: Vec<Prepared>,
        durability: Durability,
    ) -> Result<()> {
        if w.packed() {
            // The packs are synced for this commit anyway: the tail's bodies go there too
            // rather than through the write-ahead log.
            let mut tail = self.chunks.pack(w.tail_start(), std::mem::take(&mut prepared), &w.bodies)?;
            w.pending.append(&mut tail);
            w.pending_len += w.tail.len() as u64;
            w.tail.clear();
            self.store.sync_bodies()?;
        }
        super::faults::crash_point("write-chunks-stored");
        self.commit_extents(ino, st, &w, written_end, prepared, durability)
    }

    fn commit_extents(
        &self,
        ino: Ino,
        st: &mut FileState,
        w: &Window,
        written_end: u64,
        prepared: Vec<Prepared>,
        durability: Durability,
    ) -> Result<()> {
        let end = w.end();
        let mut txn = self.txn()?;
        let mut allocated = self.clear_range(&mut txn, ino, w.start, end)?;
        for p in &w.pending {
            txn.put_extent(ino, p.offset, ExtentValue::whole(p.id, p.len), p.body);
            allocated += i64::from(p.len);
        }
        allocated += txn.put_prepared(ino, w.tail_start(), prepared);
        let inode = txn.inode_mut(ino)?;
        inode.size = inode.size.max(written_end);
        inode.allocated = (inode.allocated as i64 + allocated).max(0) as u64;
        if let Some(t) = st.mtime.take() {
            inode.mtime = t;
            inode.ctime = t;
        }
        if std::mem::take(&mut st.kill_suid) {
            inode.perm &= !libc::S_ISUID;
            if inode.perm & libc::S_IXGRP != 0 {
                inode.perm &= !libc::S_ISGID;
            }
        }
        txn.commit(durability)
    }

    /// Cuts a committed file to `size` (or extends it with a hole), inside `txn`. The
    /// extent across the new end keeps its head as a partial extent.
    pub(crate) fn truncate(&self, txn: &mut Txn<'_>, ino: Ino, size: u64) -> Result<()> {
        let old = txn.inode(ino)?.size;
        let allocated = if size < old { self.clear_range(txn, ino, size, u64::MAX)? } else { 0 };
        let i = txn.inode_mut(ino)?;
        i.size = size;
        i.allocated = i.allocated.saturating_add_signed(allocated);
        Ok(())
    }

    /// Extends the file to `offset + len` if it is shorter (`fallocate` mode 0). The new
    /// range is a hole: it reads as zeros and costs no storage until written.
    pub fn allocate(&self, ino: Ino, offset: u64, len: u64) -> Result<()> {
        let end = offset.checked_add(len).ok_or(Error::Invalid)?;
        if self.getattr(ino)?.inode.size >= end {
            return Ok(());
        }
        self.setattr(ino, &super::SetAttr { size: Some(end), ..Default::default() }).map(|_| ())
    }

    /// Reads up to `size` bytes at `offset`; fewer at the end of the file. A read inside
    /// one committed chunk (most reads of a large file) shares the cached plaintext
    /// instead of copying it.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Plain> {
        let state = self.open_file_state(ino);
        let guard = state.as_ref().map(|s| s.lock().expect("file lock"));
        let windows: Vec<&Window> = guard.as_ref().map(|g| g.uncommitted().collect()).unwrap_or_default();
        let inode = self.load_inode(ino)?;
        match inode.kind {
            Kind::File => {}
            Kind::Dir => return Err(Error::IsDir),
            _ => return Err(Error::Invalid),
        }
        let file_size = windows.iter().fold(inode.size, |size, w| size.max(w.end()));
        if offset >= file_size {
            return Ok(Plain::from(Vec::new()));
        }
        let end = file_size.min(offset + u64::from(size));
        // Near the previous read's end counts as sequential: the kernel issues read-ahead
        // requests in parallel, so they arrive slightly out of order.
        let sequential = {
            let mut last = self.last_read_end.lock().expect("readahead lock");
            let prev = last.put(ino, end);
            offset == 0 || prev.is_some_and(|p| p.abs_diff(offset) <= 4 << 20)
        };
        let look_to = if sequential { end + READAHEAD } else { end };
        let (now, ahead): (Vec<_>, Vec<_>) =
            self.extents_below(ino, inode.size, offset, look_to)?.into_iter().partition(|(off, _)| *off < end);
        let ahead: Vec<ChunkId> = ahead.into_iter().map(|(_, e)| e.chunk).collect();
        let mut shared = None;
        if let ([(off, e)], []) = (&now[..], &windows[..]) {
            if *off <= offset && off + u64::from(e.len) >= end {
                let plain = self.chunks.extent(ino, e)?;
                let range = (offset - off) as usize..(end - off) as usize;
                shared = (range.end <= plain.len()).then(|| plain.slice(range));
            }
        }
        let data = match shared {
            Some(data) => data,
            None => Plain::from(self.assemble(ino, offset, end, &now, &windows)?),
        };
        drop(guard);
        if !ahead.is_empty() {
            self.chunks.prefetch(ino, ahead);
        }
        if offset == 0 && !self.read_only && needs_atime_update(&inode) {
            self.touch_atime(ino)?;
        }
        Ok(data)
    }

    /// The bytes of `[offset, end)` from committed extents `now` and the uncommitted
    /// `windows`, oldest first.
    fn assemble(
        &self,
        ino: Ino,
        offset: u64,
        end: u64,
        now: &[(u64, ExtentValue)],
        windows: &[&Window],
    ) -> Result<Vec<u8>> {
        let mut out = vec![0u8; (end - offset) as usize];
        for (off, e) in now {
            let plain = self.chunks.extent(ino, e)?;
            copy_overlap(&mut out, offset, *off, &plain);
        }
        for w in windows {
            // A window replaces everything in [start, end) of what lies under it.
            if w.start < end && w.end() > offset {
                let lo = w.start.max(offset);
                let hi = w.end().min(end);
                out[(lo - offset) as usize..(hi - offset) as usize].fill(0);
            }
            for p in &w.pending {
                if p.offset < end && p.offset + u64::from(p.len) > offset {
                    let plain = self.chunks.pending_chunk(ino, p)?;
                    copy_overlap(&mut out, offset, p.offset, &plain);
                }
            }
            for job in &w.jobs {
                copy_overlap(&mut out, offset, job.offset, &job.data);
            }
            copy_overlap(&mut out, offset, w.tail_start(), &w.tail);
        }
        Ok(out)
    }
}

/// Linux's default `relatime`: update atime on read when it is not newer than the last
/// change, or is a day old; otherwise reads would turn into metadata writes.
fn needs_atime_update(inode: &super::records::Inode) -> bool {
    inode.atime <= inode.mtime || inode.atime <= inode.ctime || Timestamp::now().secs - inode.atime.secs >= 86_400
}

impl Volume {
    fn touch_atime(&self, ino: Ino) -> Result<()> {
        let mut txn = self.txn()?;
        if txn.inode(ino)?.frozen {
            return Ok(());
        }
        txn.inode_mut(ino)?.atime = Timestamp::now();
        txn.commit(Durability::Buffered)
    }
}

/// Copies the part of `src` (which starts at file offset `src_at`) that overlaps `out`
/// (which starts at `out_at`).
fn copy_overlap(out: &mut [u8], out_at: u64, src_at: u64, src: &[u8]) {
    let lo = out_at.max(src_at);
    let hi = (out_at + out.len() as u64).min(src_at + src.len() as u64);
    if lo < hi {
        out[(lo - out_at) as usize..(hi - out_at) as usize]
            .copy_from_slice(&src[(lo - src_at) as usize..(hi - src_at) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::copy_overlap;
    use proptest::prelude::*;

    proptest! {
        /// `copy_overlap` equals slicing the file image: the range arithmetic of every read.
        #[test]
        fn copy_overlap_matches_slicing(file_len in 1usize..4000, src_at in 0usize..4000, src_len in 0usize..2000, out_at in 0usize..4000, out_len in 0usize..2000) {
            let file: Vec<u8> = (0..file_len + 6000).map(|i| (i % 251) as u8).collect();
            let src_end = (src_at + src_len).min(file.len());
            let src = &file[src_at.min(src_end)..src_end];
            let mut out = vec![0u8; out_len];
            copy_overlap(&mut out, out_at as u64, src_at as u64, src);
            for (i, b) in out.iter().enumerate() {
                let pos = out_at + i;
                let expect = if pos >= src_at && pos < src_at + src.len() { file[pos] } else { 0 };
                prop_assert_eq!(*b, expect);
            }
        }
    }
}
