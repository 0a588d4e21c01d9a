//! Buffers kept for reuse: those of the reads around the page cache
//! (`Packs::read_direct`), the blocks a long write is cut into, and the envelopes of new
//! chunks until their bodies are in a pack.
//!
//! Each such read fills a buffer of the body's size (about a megabyte), and the body is
//! decrypted where it lies, so the buffer travels on as the plaintext (`Plain`: the chunk
//! cache, FUSE replies, HTTP bodies). A new buffer each time costs a zero-fill and a page
//! fault for every page, which took a tenth of the sidecar's CPU in a download
//! (docs/benchmarks.md, "2026-12-07 (late night)"); an upload paid the same for every
//! block and envelope ("2026-12-08"). So the last user of a buffer gives it back here, and
//! the next user takes it and overwrites its old bytes.

use std::sync::Mutex;

/// Bytes the kept buffers may hold in all.
const KEPT_BYTES: usize = 32 << 20;
/// Buffers smaller than this are not worth keeping.
const SMALLEST_KEPT: usize = 64 << 10;
/// Nor larger ones: one would hold much of the room, and nothing asks for as much (a
/// window's block is 6 MiB, a chunk's body at most 4 MiB and a little).
const LARGEST_KEPT: usize = 8 << 20;

static KEPT: Pool = Pool::new(KEPT_BYTES);

/// A buffer of at least `len` bytes, kept or new (`Pool::take`).
#[must_use]
pub fn take(len: usize) -> Vec<u8> {
    KEPT.take(len)
}

/// An empty buffer with room for at least `capacity` bytes, kept or new
/// (`Pool::take_empty`).
#[must_use]
pub fn take_empty(capacity: usize) -> Vec<u8> {
    KEPT.take_empty(capacity)
}

/// Keeps `buf` for a later `take`, if it is worth keeping and there is room.
pub fn give_back(buf: Vec<u8>) {
    KEPT.give_back(buf);
}

struct Pool {
    kept: Mutex<Vec<Vec<u8>>>,
    budget: usize,
}

impl Pool {
    const fn new(budget: usize) -> Self {
        Self { kept: Mutex::new(Vec::new()), budget }
    }

    /// A buffer of at least `len` bytes: a kept one (the one with the least room of at
    /// least `len`), or a new zero-filled one. Its bytes are those of an earlier use: the
    /// caller overwrites what it reads. A kept buffer with room for over twice `len` is
    /// left for a longer read: the plaintext in it may stay in the chunk cache, which
    /// counts only the plaintext's bytes.
    fn take(&self, len: usize) -> Vec<u8> {
        match self.pick(len) {
            Some(mut buf) => {
                // Within its room: no move, and only the bytes past its old end are zeroed.
                buf.resize(len.max(buf.len()), 0);
                buf
            }
            None => vec![0; len],
        }
    }

    /// An empty buffer with room for at least `capacity` bytes, for bytes to be appended:
    /// a kept one, whose pages are mapped already, or a new one.
    fn take_empty(&self, capacity: usize) -> Vec<u8> {
        match self.pick(capacity) {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// The kept buffer with the least room of at least `len`, and at most twice that.
    fn pick(&self, len: usize) -> Option<Vec<u8>> {
        let mut kept = self.kept.lock().expect("kept buffers lock");
        let fits = kept.iter().enumerate().filter(|(_, b)| b.capacity() >= len && b.capacity() <= 2 * len);
        let pick = fits.min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
        pick.map(|i| kept.remove(i))
    }

    /// Keeps `buf`; the buffers given back longest ago make room for it, so what is kept
    /// follows what is asked for now (reads of bodies, or a write's blocks and envelopes).
    fn give_back(&self, buf: Vec<u8>) {
        if !(SMALLEST_KEPT..=LARGEST_KEPT).contains(&buf.capacity()) {
            return;
        }
        let mut kept = self.kept.lock().expect("kept buffers lock");
        let mut room = kept.iter().map(Vec::capacity).sum::<usize>();
        while room + buf.capacity() > self.budget && !kept.is_empty() {
            room -= kept.remove(0).capacity();
        }
        if room + buf.capacity() <= self.budget {
            kept.push(buf);
        }
    }

    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.kept.lock().expect("kept buffers lock").iter().map(Vec::capacity).sum()
    }
}

/// A buffer that goes back to `give_back` when dropped.
pub struct Recycled(Vec<u8>);

impl From<Vec<u8>> for Recycled {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl std::ops::Deref for Recycled {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Recycled {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_and_the_room_is_bounded() {
        let pool = Pool::new(3 << 20);
        let mut buf = pool.take(1 << 20);
        assert_eq!(buf.len(), 1 << 20);
        buf[..4].copy_from_slice(b"mark");
        let at = buf.as_ptr();
        pool.give_back(buf);
        pool.give_back(vec![7; 2 << 20]);
        // The one with the least room that is enough: the first one, bytes and all.
        let again = pool.take(1000 << 10);
        assert_eq!((again.as_ptr(), &again[..4], again.len()), (at, &b"mark"[..], 1 << 20));
        // Far too long for a short read: left for a longer one.
        let short = pool.take(100 << 10);
        assert_eq!(short.len(), 100 << 10);
        assert_eq!(pool.kept_bytes(), 2 << 20);
        // None long enough: a new one, zeroed.
        let longer = pool.take(3 << 20);
        assert!(longer.len() == 3 << 20 && longer.iter().all(|&b| b == 0));
        // Never more than the room: the buffer given back longest ago goes first. Small
        // and huge ones are not kept.
        pool.give_back(again);
        assert_eq!(pool.kept_bytes(), 3 << 20);
        pool.give_back(vec![0; 1536 << 10]);
        assert_eq!(pool.kept_bytes(), (1 << 20) + (1536 << 10));
        let third = pool.take(1 << 20);
        assert_eq!(third.as_ptr(), at);
        pool.give_back(vec![0; 1 << 10]);
        pool.give_back(Vec::with_capacity(LARGEST_KEPT + 1));
        assert_eq!(pool.kept_bytes(), 1536 << 10);
    }

    #[test]
    fn an_empty_buffer_keeps_the_room_of_a_kept_one() {
        let pool = Pool::new(8 << 20);
        let mut buf = Vec::with_capacity(4 << 20);
        buf.extend_from_slice(b"old bytes");
        let at = buf.as_ptr();
        pool.give_back(buf);
        // Too much room for a small buffer: a new one, and the kept one stays.
        let small = pool.take_empty(100 << 10);
        assert!(small.is_empty() && small.capacity() >= 100 << 10 && small.as_ptr() != at);
        assert_eq!(pool.kept_bytes(), 4 << 20);
        let again = pool.take_empty(3 << 20);
        assert_eq!((again.as_ptr(), again.len(), again.capacity()), (at, 0, 4 << 20));
        assert_eq!(pool.kept_bytes(), 0);
    }
}
