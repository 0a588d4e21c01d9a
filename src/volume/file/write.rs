//! Writing: filling windows, streaming blocks to the worker pool, and commits.

use super::window::{Handoff, Job, Segment, Window, MAX_JOBS};
use super::{FileState, LostWrites};
use crate::buffers::Recycled;
use crate::chunk::{cut_points, cut_points_from, Scan};
use crate::ids::{ChunkId, Ino};
use crate::store::keys::ExtentValue;
use crate::store::{Bodies, Durability};
use crate::volume::chunks::{Plain, Prepared};
use crate::volume::error::{Error, Result};
use crate::volume::records::Timestamp;
use crate::volume::txn::Txn;
use crate::volume::Volume;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A small window's chunks, prepared from a copy of it (`Volume::prepare_small_window`).
pub(crate) struct PreparedWindow {
    /// `FileState::writes` when it was copied.
    writes: u64,
    prepared: Vec<Prepared>,
    /// Chunks found stored already, pinned until the commit.
    pinned: Vec<ChunkId>,
}

/// Whether the window is all the file has uncommitted: no segment, no queued writes.
fn small_window_only(st: &FileState) -> bool {
    st.segment.is_none() && st.queued_writes.is_empty() && st.window.as_ref().is_none_or(|w| !w.streamed())
}

/// Records a failed commit's lost writes for the file's handles.
fn record_loss(st: &mut FileState, result: &Result<()>) {
    if let Some(lost) = result.as_ref().err().and_then(LostWrites::of) {
        st.errors.record(lost);
    }
}

/// Unchunked bytes a window collects before its first cut points are taken: a file that
/// ends before keeps its bodies inline, committed with no pack sync (`FIRST_BLOCK`).
const FIRST_BLOCK: usize = 8 << 20;
/// Unchunked bytes after which a window that streams already, or that starts past
/// `FIRST_BLOCK` in a large file, hands its next block to the workers: small blocks keep
/// hashing and sealing close behind the writes, so a commit (every PATCH of an upload
/// ends with one) waits for little (docs/benchmarks.md, "2026-12-07 (later)").
const NEXT_BLOCK: usize = 2 << 20;

/// The tail length at which `w` streams a block.
fn block_size(w: &Window) -> usize {
    if w.streamed() || w.start >= FIRST_BLOCK as u64 {
        NEXT_BLOCK
    } else {
        FIRST_BLOCK
    }
}

impl Volume {
    /// Writes `data` at `offset` (or at the end of the file with `append`); returns the
    /// offset written at. `kill_suid` clears setuid/setgid (a write by a non-owner).
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8], append: bool, kill_suid: bool) -> Result<u64> {
        self.write_parts(ino, offset, &[data], append, kill_suid)
    }

    /// `write` of the concatenation of `parts`, each copied once, straight into the
    /// window: a body that arrived in pieces (an upload's) is not gathered first.
    pub fn write_parts(
        &self,
        ino: Ino,
        offset: u64,
        parts: &[impl AsRef<[u8]>],
        append: bool,
        kill_suid: bool,
    ) -> Result<u64> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let len: u64 = parts.iter().map(|p| p.as_ref().len() as u64).sum();
        self.make_room(len, crate::volume::reclaim::SPACE_RESERVE)?;
        let state = self.file_state(ino);
        let mut st = self.wait_for_queue_room(state.lock().expect("file lock"));
        st.changed = true;
        let result = self.write_locked(ino, &mut st, offset, parts, len, append, kill_suid);
        match &result {
            Ok(_) => {
                crate::metrics::get().written_bytes.inc_by(len);
            }
            Err(e) => self.discard_window(ino, &mut st, e),
        }
        result
    }

    /// After a write failed storing or committing earlier writes: the window's writes are
    /// lost (the file keeps its committed contents, as after a crash), and the file's
    /// handles are told at their next `fsync` (`errors`), since some had been acknowledged.
    /// (A window left in place after a failed block would commit with a hole of zeros
    /// where the block was.)
    fn discard_window(&self, ino: Ino, st: &mut FileState, e: &Error) {
        // Refused before anything was stored (a bad offset): the window stands.
        let Some(lost) = LostWrites::of(e) else { return };
        tracing::error!(inode = %ino, error = %e, "uncommitted writes to the file are lost");
        if let Some(w) = st.window.take() {
            self.drop_window(w);
        }
        st.errors.record(lost);
    }

    #[allow(clippy::too_many_arguments)]
    fn write_locked(
        &self,
        ino: Ino,
        st: &mut FileState,
        offset: u64,
        parts: &[impl AsRef<[u8]>],
        len: u64,
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
            let queued = committed.max(st.queued_writes.end());
            st.window.as_ref().map_or(queued, |w| queued.max(w.end()))
        } else {
            offset
        };
        offset.checked_add(len).filter(|end| *end <= i64::MAX as u64).ok_or(Error::Invalid)?;
        if !st.window.as_ref().is_some_and(|w| w.takes(offset)) {
            self.set_window_aside(ino, st)?;
            let takes_back = st.queued_writes.is_empty();
            st.window = Some(self.open_window(ino, offset, takes_back)?);
        }
        let w = st.window.as_mut().expect("window is open");
        let mut at = offset;
        for part in parts {
            let part = part.as_ref();
            w.put(at, part);
            at += part.len() as u64;
            if w.tail.len() >= block_size(w) {
                self.stream(w)?;
            }
        }
        let full = w.pending_len >= self.window_limit;
        st.writes += 1;
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
    fn open_window(&self, ino: Ino, offset: u64, takes_back: bool) -> Result<Window> {
        let mut w = Window::new(offset);
        // An append right after the last chunk: take that chunk back into the window, so
        // the cut points come out as if the file had been written in one go (a file sent
        // in pieces, by tus or `>>`, dedups like one written at once). Only at the end: a
        // write inside the file that starts where an extent ends takes nothing back. Not
        // while writes are queued: they may lie over that chunk's committed bytes.
        if takes_back && offset > 0 && offset == self.load_inode(ino)?.size {
            if let Some((off, e)) = self.extents_between(ino, offset - 1, offset)?.into_iter().next() {
                if off + u64::from(e.len) == offset {
                    let plain = self.chunks.extent(ino, &e, Bodies::Uncached)?;
                    w.start = off;
                    // A long write goes on: a block's room, kept, as `stream` takes.
                    w.tail = crate::buffers::take_empty(NEXT_BLOCK + self.params.max);
                    w.tail.extend_from_slice(&plain);
                    if let Some((scan, head)) = self.chunks.end_of(&e) {
                        (w.scan, w.head) = (scan, Some(head));
                    }
                }
            }
        }
        Ok(w)
    }

    /// Hands the final chunks of the window's tail to the worker pool.
    fn stream(&self, w: &mut Window) -> Result<()> {
        let lens = cut_points_from(&w.tail, &self.params, false, &mut w.scan);
        let consumed: usize = lens.iter().sum();
        if consumed == 0 {
            return Ok(());
        }
        while w.jobs.len() >= MAX_JOBS {
            w.finish_oldest_job()?;
        }
        // The next block grows in a buffer sized for it, so appends never reallocate; a
        // kept one, so they never fault its pages in either (docs/benchmarks.md,
        // "2026-12-08").
        let mut rest = crate::buffers::take_empty(NEXT_BLOCK + self.params.max);
        rest.extend_from_slice(&w.tail[consumed..]);
        let mut block = std::mem::replace(&mut w.tail, rest);
        block.truncate(consumed);
        let block = Arc::new(Recycled::from(block));
        let offset = w.tail_start();
        w.pending_len += consumed as u64;
        let done = Arc::new(Handoff::default());
        let (reader, data, slot, bodies) = (self.chunks.clone(), block.clone(), done.clone(), w.bodies.clone());
        let head = w.head.take();
        rayon::spawn(move || slot.fill(reader.store_block(offset, &data, &lens, head.as_ref(), &bodies)));
        w.jobs.push_back(Job { offset, data: block, done });
        Ok(())
    }

    /// Splits a full window into a segment, committed once its bodies are synced, and the
    /// rest, which the writer goes on filling. A committed extent across the split point
    /// (an overwrite inside a file) keeps its far part through the segment's commit.
    fn split_window(&self, ino: Ino, st: &mut FileState) -> Result<()> {
        // A segment is younger than every queued write: they go first.
        self.commit_queued_writes(ino, st)?;
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
            crate::volume::faults::crash_point("segment-synced");
            self.commit_extents(ino, st, &w, w.end(), vec![], Durability::Buffered)
        });
        self.chunks.unpin(pinned.iter());
        if let Err(e) = &result {
            tracing::error!(inode = %ino, error = %e, "could not commit the first part of a large write");
            st.window = None;
        }
        result
    }

    /// Makes the queued writes, the segment and the window part of the file: see the
    /// module docs. What fails to commit is lost, and the loss is also recorded for the
    /// file's handles (`errors`): the caller may be someone other than the writer (idle
    /// commits, snapshots, range operations, the volume's close), and the writer was told
    /// its writes succeeded.
    ///
    /// A file deleted before its writes were committed (closed with a commit handed to
    /// the committer, then unlinked) has nothing left to commit to: its writes are
    /// dropped, and the commit succeeds.
    pub(crate) fn commit_window(&self, ino: Ino, st: &mut FileState, durability: Durability) -> Result<()> {
        let result = self.commit_uncommitted(ino, st, durability);
        if matches!(result, Err(Error::NotFound)) && matches!(self.load_inode(ino), Err(Error::NotFound)) {
            self.drop_uncommitted(st);
            tracing::debug!(inode = %ino, "the uncommitted writes of a deleted file were dropped");
            return Ok(());
        }
        record_loss(st, &result);
        result
    }

    /// Drops everything `st` has not committed: its queued writes, its segment, its
    /// window and the attributes folded into them.
    fn drop_uncommitted(&self, st: &mut FileState) {
        st.queued_writes.clear();
        if let Some(segment) = st.segment.take() {
            self.drop_window(segment.window);
        }
        if let Some(w) = st.window.take() {
            self.drop_window(w);
        }
        st.forget_pending_attrs();
    }

    /// Drops window `w` uncommitted: waits for its jobs, whose dedup hits pin chunks as
    /// well, and unpins those.
    fn drop_window(&self, mut w: Window) {
        while !w.jobs.is_empty() {
            // Only the hits of the jobs that succeed are known here.
            let _ = w.finish_oldest_job();
        }
        self.chunks.unpin(w.dedup_hits().collect::<Vec<_>>().iter());
    }

    fn commit_uncommitted(&self, ino: Ino, st: &mut FileState, durability: Durability) -> Result<()> {
        self.commit_queued_writes(ino, st)?;
        self.finish_segment(ino, st)?;
        let Some(mut w) = st.window.take() else {
            if st.has_pending_attrs() {
                // Folded into writes that were lost (`discard_window`): written on their own.
                let mut txn = self.txn()?;
                st.record_written(txn.inode_mut(ino)?);
                txn.commit(durability)?;
            }
            return if durability == Durability::Synced { self.sync() } else { Ok(()) };
        };
        let written_end = w.end();
        // After a long write, the committed extent across the window's end is re-chunked
        // with it: one more chunk read is noise there, and the cut points stay those of the
        // content. After a short one (a random write), it keeps its far part as it is.
        if w.streamed() {
            if let Some((off, e)) = self.extent_across(ino, written_end)? {
                let plain = self.chunks.extent(ino, &e, Bodies::Uncached)?;
                w.tail.extend_from_slice(&plain[(written_end - off) as usize..]);
            }
        }
        // The tail is cut, hashed and sealed while the workers finish the last blocks: an
        // upload's every PATCH ends here (docs/benchmarks.md, "2026-12-07 (later)").
        let mut lens = cut_points_from(&w.tail, &self.params, false, &mut w.scan);
        let cut: usize = lens.iter().sum();
        // The rest, uncut so far, ends the write as its last chunk; the search for its
        // end got as far as `w.scan` says.
        let last_scan = if cut < w.tail.len() { w.scan } else { Scan::default() };
        if cut < w.tail.len() {
            lens.push(w.tail.len() - cut);
        }
        // Only a long write's last chunk is remembered: a short one's running hash would
        // go unused.
        let (prepared, last_state) = self.chunks.prepare_end(&w.tail, &lens, w.head.take().as_ref(), w.streamed())?;
        // The last chunk of a long write is most often an append's, which the next append
        // (an upload's next PATCH) takes back (`open_window`): cached, it is neither read
        // nor opened again (docs/benchmarks.md, "2026-12-07 (day)"), nor scanned and hashed
        // again ("2026-12-08").
        let last = prepared.last().zip(last_state).map(|(p, state)| {
            let plain = w.tail[w.tail.len() - p.len as usize..].to_vec();
            (p.id, Plain::from(plain), state)
        });
        let found: Vec<ChunkId> = prepared.iter().filter(|p| p.sealed.is_none()).map(|p| p.id).collect();
        if let Err(e) = w.finish_jobs() {
            self.chunks.unpin(found.iter());
            return Err(e);
        }
        let pinned: Vec<ChunkId> = w.dedup_hits().chain(found).collect();
        let result = self.store_tail_and_commit(ino, st, w, written_end, prepared, durability);
        self.chunks.unpin(pinned.iter());
        if let (Ok(()), Some((id, plain, state))) = (&result, last) {
            self.chunks.remember_end(id, plain, last_scan, state);
        }
        result
    }

    /// Chunks, hashes, compresses and seals a copy of the window of a small closed file
    /// without holding its lock (`closing`); `None` unless all the file has uncommitted is
    /// one window with nothing chunked yet. The chunks are pinned until
    /// `commit_prepared_window`.
    pub(crate) fn prepare_small_window(&self, state: &Mutex<FileState>) -> Result<Option<PreparedWindow>> {
        let (writes, tail) = {
            let st = state.lock().expect("file lock");
            match &st.window {
                Some(w) if small_window_only(&st) && w.unchunked() => (st.writes, w.tail.clone()),
                _ => return Ok(None),
            }
        };
        let lens = cut_points(&tail, &self.params, true);
        let prepared = self.chunks.prepare(&tail, &lens)?;
        let pinned = prepared.iter().filter(|p| p.sealed.is_none()).map(|p| p.id).collect();
        Ok(Some(PreparedWindow { writes, prepared, pinned }))
    }

    /// Commits the window from `prepared` if no write came since it was copied; else
    /// commits it the usual way.
    pub(crate) fn commit_prepared_window(&self, ino: Ino, st: &mut FileState, prepared: PreparedWindow) -> Result<()> {
        let PreparedWindow { writes, prepared, pinned } = prepared;
        let result = if st.writes == writes && small_window_only(st) && st.window.is_some() {
            let w = st.window.take().expect("window checked");
            let result = self.commit_extents(ino, st, &w, w.end(), prepared, Durability::Buffered);
            record_loss(st, &result);
            result
        } else {
            self.commit_window(ino, st, Durability::Buffered)
        };
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
            crate::buffers::give_back(std::mem::take(&mut w.tail));
            self.store.sync_bodies()?;
        }
        crate::volume::faults::crash_point("write-chunks-stored");
        self.commit_extents(ino, st, &w, written_end, prepared, durability)
    }

    pub(super) fn commit_extents(
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
        st.record_written(inode);
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
        self.setattr(ino, &crate::volume::SetAttr { size: Some(end), ..Default::default() }).map(|_| ())
    }
}
