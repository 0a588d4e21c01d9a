//! A file's uncommitted writes: windows of new bytes, the blocks being chunked in the
//! background, and segments being synced.

use crate::buffers::Recycled;
use crate::chunk::Scan;
use crate::ids::ChunkId;
use crate::volume::chunks::{Head, Pending, Plain, WindowBodies};
use crate::volume::error::{Error, Result};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

pub(super) struct Window {
    pub(super) start: u64,
    /// Chunks stored and ready to reference, contiguous from `start`.
    pub(super) pending: Vec<Pending>,
    /// Blocks being chunked and stored on the worker pool, contiguous after `pending`.
    pub(super) jobs: VecDeque<Job>,
    /// Bytes covered by `pending` and `jobs`.
    pub(super) pending_len: u64,
    pub(super) tail: Vec<u8>,
    /// How far the search for the first cut point in `tail` got (`Scan::default()` after
    /// any change to the tail but an append).
    pub(super) scan: Scan,
    /// The first bytes of `tail`, hashed already: a chunk taken back (`None` after any
    /// change to them).
    pub(super) head: Option<Head>,
    /// The bodies this window appended to packs, shared with its jobs.
    pub(super) bodies: Arc<WindowBodies>,
}

impl Window {
    pub(super) fn new(start: u64) -> Self {
        Self {
            start,
            pending: vec![],
            jobs: VecDeque::new(),
            pending_len: 0,
            tail: vec![],
            scan: Scan::default(),
            head: None,
            bodies: Arc::default(),
        }
    }
    pub(super) fn tail_start(&self) -> u64 {
        self.start + self.pending_len
    }
    pub(super) fn end(&self) -> u64 {
        self.tail_start() + self.tail.len() as u64
    }
    /// Whether a write at `offset` continues this window: it lands in the tail or right
    /// after it (the chunked part before the tail is immutable).
    pub(super) fn takes(&self, offset: u64) -> bool {
        offset >= self.tail_start() && offset <= self.end()
    }
    /// Copies `data` into the tail at file offset `offset`, which the window `takes`.
    pub(super) fn put(&mut self, offset: u64, data: &[u8]) {
        debug_assert!(self.takes(offset));
        let rel = (offset - self.tail_start()) as usize;
        if rel > self.tail.len() {
            // A gap reads as zeros.
            self.tail.resize(rel, 0);
        }
        // Over bytes the tail holds, then appended: not zero-filled first, as most writes
        // (a copy, an upload) only append.
        let over = (self.tail.len() - rel).min(data.len());
        if over > 0 {
            self.scan = Scan::default();
            self.head = None;
        }
        self.tail[rel..rel + over].copy_from_slice(&data[..over]);
        self.tail.extend_from_slice(&data[over..]);
    }
    /// Lays this window over `out`, the file's bytes from `out_at`: it replaces all of
    /// `[start, end)`. `pending` reads a stored chunk's plaintext.
    pub(super) fn overlay(
        &self,
        out: &mut [u8],
        out_at: u64,
        pending: impl Fn(&Pending) -> Result<Plain>,
    ) -> Result<()> {
        let out_end = out_at + out.len() as u64;
        if self.start >= out_end || self.end() <= out_at {
            return Ok(());
        }
        let lo = self.start.max(out_at);
        let hi = self.end().min(out_end);
        out[(lo - out_at) as usize..(hi - out_at) as usize].fill(0);
        for p in &self.pending {
            if p.offset < out_end && p.offset + u64::from(p.len) > out_at {
                copy_overlap(out, out_at, p.offset, &pending(p)?);
            }
        }
        for job in &self.jobs {
            copy_overlap(out, out_at, job.offset, &job.data);
        }
        copy_overlap(out, out_at, self.tail_start(), &self.tail);
        Ok(())
    }
    /// The whole tail was chunked and stored as `pending` (laid end to end from the
    /// tail's start): the window holds them instead of the bytes.
    pub(super) fn tail_stored(&mut self, mut pending: Vec<Pending>) {
        debug_assert_eq!(pending.iter().map(|p| u64::from(p.len)).sum::<u64>(), self.tail.len() as u64);
        self.pending_len += self.tail.len() as u64;
        self.tail = vec![];
        self.scan = Scan::default();
        self.head = None;
        self.pending.append(&mut pending);
    }
    /// Nothing chunked yet: all of it is in the tail.
    pub(super) fn unchunked(&self) -> bool {
        self.pending_len == 0
    }
    /// Bodies went, or are going, to packs: the commit syncs them.
    pub(super) fn streamed(&self) -> bool {
        self.packed() || !self.jobs.is_empty()
    }
    /// Some pending bodies are in packs: the commit syncs them.
    pub(super) fn packed(&self) -> bool {
        self.pending.iter().any(|p| p.body.is_some())
    }
    /// Waits for the oldest job and moves its chunks to `pending`.
    pub(super) fn finish_oldest_job(&mut self) -> Result<()> {
        if let Some(job) = self.jobs.pop_front() {
            let mut done = job.wait()?;
            self.pending.append(&mut done);
        }
        Ok(())
    }
    /// The chunks this window references that were stored already: pinned by the dedup
    /// that found them until the window commits.
    pub(super) fn dedup_hits(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.pending.iter().filter(|p| p.body.is_none()).map(|p| p.id)
    }
    /// Waits for every job.
    pub(super) fn finish_jobs(&mut self) -> Result<()> {
        while !self.jobs.is_empty() {
            self.finish_oldest_job()?;
        }
        Ok(())
    }
}

/// The chunked part of a full window: its bodies are being synced in the background.
pub(super) struct Segment {
    /// All of it chunked and stored: no jobs, an empty tail.
    pub(super) window: Window,
    /// Filled by the syncing thread once the packs are synced.
    pub(super) synced: Arc<Handoff<Result<()>>>,
}

impl Segment {
    /// Splits the chunked part off `w` (whose jobs are finished), which goes on from there
    /// with the tail, and starts syncing its bodies.
    pub(super) fn split_off(w: &mut Window, store: Arc<crate::store::Store>) -> Result<Self> {
        // The sync covers every body appended so far; started first, so that a thread that
        // cannot start leaves the window whole.
        let synced = Arc::new(Handoff::default());
        let done = Arc::clone(&synced);
        crate::threads::spawn("segment-sync", move || done.fill(store.sync_bodies().map_err(Error::from)))
            .map_err(Error::Io)?;
        let mut rest = Window::new(w.tail_start());
        rest.tail = std::mem::take(&mut w.tail);
        rest.scan = std::mem::take(&mut w.scan);
        rest.head = w.head.take();
        // The rest dedups against the bodies the segment appended, uncommitted as they are.
        rest.bodies = w.bodies.clone();
        let window = std::mem::replace(w, rest);
        Ok(Self { window, synced })
    }

    /// Whether the sync has finished.
    pub(super) fn synced(&self) -> bool {
        self.synced.is_filled()
    }
}

/// A result that one thread hands to another: filled once, then taken by a waiter.
pub(super) struct Handoff<T> {
    pub(super) value: Mutex<Option<T>>,
    pub(super) filled: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Self { value: Mutex::new(None), filled: Condvar::new() }
    }
}

impl<T> Handoff<T> {
    pub(super) fn fill(&self, value: T) {
        *self.value.lock().expect("handoff lock") = Some(value);
        self.filled.notify_all();
    }
    pub(super) fn is_filled(&self) -> bool {
        self.value.lock().expect("handoff lock").is_some()
    }
    /// Waits until the value is there and takes it.
    pub(super) fn take(&self) -> T {
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
pub(super) const MAX_JOBS: usize = 2;

/// A block of the window being chunked, hashed, sealed and stored in the background.
pub(super) struct Job {
    pub(super) offset: u64,
    /// The block's bytes, kept for reads until the job is finished.
    pub(super) data: Arc<Recycled>,
    pub(super) done: Arc<Handoff<Result<Vec<Pending>>>>,
}

impl Job {
    pub(super) fn wait(self) -> Result<Vec<Pending>> {
        self.done.take()
    }
}

/// Small windows set aside by a write elsewhere in the file (random writes), oldest first,
/// waiting for the committer: the writer goes on while they are chunked, hashed, sealed and
/// committed in the background. Reads see them; every commit of the file commits them first.
#[derive(Default)]
pub(super) struct QueuedWrites {
    writes: VecDeque<QueuedWrite>,
    bytes: usize,
    next_seq: u64,
}

/// One set-aside window. `seq` tells the committer, which works on a copy outside the file's
/// lock, whether its write is still the oldest when it comes back to commit it.
pub(super) struct QueuedWrite {
    pub(super) seq: u64,
    pub(super) start: u64,
    pub(super) data: Arc<Vec<u8>>,
}

impl QueuedWrites {
    /// Queues window `w`, which is `unchunked`.
    pub(super) fn push(&mut self, w: Window) {
        debug_assert!(w.unchunked() && w.jobs.is_empty());
        self.bytes += w.tail.len();
        self.writes.push_back(QueuedWrite { seq: self.next_seq, start: w.start, data: Arc::new(w.tail) });
        self.next_seq += 1;
    }
    /// The oldest writes, about `max_bytes` of them (at least one if any).
    pub(super) fn oldest(&self, max_bytes: usize) -> impl Iterator<Item = &QueuedWrite> {
        let mut taken = 0;
        self.writes.iter().take_while(move |q| {
            let first = taken == 0;
            taken += q.data.len();
            first || taken <= max_bytes
        })
    }
    /// Takes the oldest write back as a window, if it is `seq`.
    pub(super) fn pop_if(&mut self, seq: u64) -> Option<Window> {
        if self.writes.front()?.seq != seq {
            return None;
        }
        let q = self.writes.pop_front()?;
        self.bytes -= q.data.len();
        let mut w = Window::new(q.start);
        w.tail = Arc::try_unwrap(q.data).unwrap_or_else(|shared| shared.as_ref().clone());
        Some(w)
    }
    pub(super) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
    /// The end of the furthest write, 0 without any.
    pub(super) fn end(&self) -> u64 {
        self.writes.iter().map(|q| q.start + q.data.len() as u64).max().unwrap_or(0)
    }
    /// Lays the writes over `out` (the file's bytes from `out_at`), oldest first.
    pub(super) fn overlay(&self, out: &mut [u8], out_at: u64) {
        for q in &self.writes {
            copy_overlap(out, out_at, q.start, &q.data);
        }
    }
    /// Drops every write (a commit failed: the file keeps its committed contents).
    pub(super) fn clear(&mut self) {
        self.writes.clear();
        self.bytes = 0;
    }
}

/// Copies the part of `src` (which starts at file offset `src_at`) that overlaps `out`
/// (which starts at `out_at`).
pub(super) fn copy_overlap(out: &mut [u8], out_at: u64, src_at: u64, src: &[u8]) {
    let lo = out_at.max(src_at);
    let hi = (out_at + out.len() as u64).min(src_at + src.len() as u64);
    if lo < hi {
        out[(lo - out_at) as usize..(hi - out_at) as usize]
            .copy_from_slice(&src[(lo - src_at) as usize..(hi - src_at) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_pending(_: &Pending) -> Result<Plain> {
        unreachable!("these windows have no stored chunks")
    }

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

        /// Writes that a window takes, laid over a file, read as the same writes applied to a
        /// byte image; a write it does not take goes to a new window, the old one queued, as
        /// the write path does. The queue and the window over the base equal the model.
        #[test]
        fn windows_and_queue_read_as_the_writes_in_order(
            base_len in 0usize..3000,
            writes in proptest::collection::vec((0u64..4000, 1usize..300, any::<u8>()), 1..40),
        ) {
            let base: Vec<u8> = (0..base_len).map(|i| (i % 253) as u8).collect();
            let mut model = base.clone();
            let mut queue = QueuedWrites::default();
            let mut window: Option<Window> = None;
            for (offset, len, byte) in writes {
                let data = vec![byte; len];
                let end = offset as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[offset as usize..end].copy_from_slice(&data);
                if !window.as_ref().is_some_and(|w| w.takes(offset)) {
                    if let Some(w) = window.take() {
                        queue.push(w);
                    }
                    window = Some(Window::new(offset));
                }
                window.as_mut().unwrap().put(offset, &data);
            }
            let w = window.unwrap();
            let size = (base.len() as u64).max(queue.end()).max(w.end());
            prop_assert_eq!(size, model.len() as u64);
            // Read the whole file and a few slices, as `read` assembles them.
            for (at, len) in [(0u64, model.len()), (7, 100), (1000, 2500)] {
                if at as usize > model.len() {
                    continue;
                }
                let len = len.min(model.len() - at as usize);
                let mut out = vec![0u8; len];
                copy_overlap(&mut out, at, 0, &base);
                queue.overlay(&mut out, at);
                w.overlay(&mut out, at, no_pending).unwrap();
                prop_assert_eq!(&out[..], &model[at as usize..at as usize + len]);
            }
        }
    }

    #[test]
    fn the_committer_commits_a_queued_write_only_while_it_is_the_oldest() {
        let mut queue = QueuedWrites::default();
        for (start, len) in [(0u64, 10usize), (100, 20), (50, 5)] {
            let mut w = Window::new(start);
            w.put(start, &vec![1; len]);
            queue.push(w);
        }
        assert_eq!((queue.bytes(), queue.end()), (35, 120));
        let starts = |max| queue.oldest(max).map(|q| q.start).collect::<Vec<_>>();
        assert_eq!((starts(0), starts(30), starts(35)), (vec![0], vec![0, 100], vec![0, 100, 50]));
        let first = queue.oldest(0).next().unwrap().seq;
        // Someone else (an fsync) committed the oldest while the committer sealed a copy.
        let w = queue.pop_if(first).unwrap();
        assert_eq!((w.start, w.end()), (0, 10));
        assert!(queue.pop_if(first).is_none(), "a stale copy must not commit again");
        let second = queue.oldest(0).next().unwrap().seq;
        assert_ne!(first, second);
        assert_eq!(queue.pop_if(second).map(|w| w.start), Some(100));
        queue.clear();
        assert!(queue.is_empty());
        assert_eq!((queue.bytes(), queue.end()), (0, 0));
    }

    #[test]
    fn a_window_takes_writes_in_its_tail_and_right_after_it() {
        let mut w = Window::new(4096);
        w.put(4096, b"abcd");
        assert!(w.takes(4096) && w.takes(4100) && !w.takes(4101) && !w.takes(4095));
        w.put(4098, b"XYZ");
        assert_eq!(&w.tail, b"abXYZ");
        assert_eq!(w.end(), 4101);
        let handoff = Arc::new(Handoff::default());
        let filler = handoff.clone();
        let t = std::thread::spawn(move || filler.fill(7));
        assert_eq!(handoff.take(), 7);
        t.join().unwrap();
    }
}
