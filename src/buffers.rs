//! Buffers kept for reuse by the reads around the page cache (`Packs::read_direct`).
//!
//! Each such read fills a buffer of the body's size (about a megabyte), and the body is
//! decrypted where it lies, so the buffer travels on as the plaintext (`Plain`: the chunk
//! cache, FUSE replies, HTTP bodies). A new buffer each time costs a zero-fill and a page
//! fault for every page, which took a tenth of the sidecar's CPU in a download
//! (docs/benchmarks.md, "2026-12-07 (late night)"). So the last user of a buffer gives it back
//! here, and the next read takes it, its old bytes overwritten by the read.

use std::sync::Mutex;

/// Bytes the kept buffers may hold in all.
const KEPT_BYTES: usize = 32 << 20;
/// Buffers smaller than this are not worth keeping.
const SMALLEST_KEPT: usize = 64 << 10;

static KEPT: Pool = Pool::new(KEPT_BYTES);

/// A buffer of at least `len` bytes, kept or new (`Pool::take`).
#[must_use]
pub fn take(len: usize) -> Vec<u8> {
    KEPT.take(len)
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

    /// A buffer of at least `len` bytes: a kept one (the shortest long enough, or else
    /// the longest shorter, lengthened with zeros), or a new zero-filled one. Its bytes
    /// are those of an earlier use: the caller overwrites what it reads. A kept buffer
    /// over twice `len` is left for a longer read: the plaintext in it may stay in the
    /// chunk cache, which counts only the plaintext's bytes.
    fn take(&self, len: usize) -> Vec<u8> {
        let kept = {
            let mut kept = self.kept.lock().expect("kept buffers lock");
            let fits = kept.iter().enumerate().filter(|(_, b)| b.len() >= len && b.len() <= 2 * len);
            let shorter = kept.iter().enumerate().filter(|(_, b)| b.len() < len);
            let pick = fits.min_by_key(|(_, b)| b.len()).or_else(|| shorter.max_by_key(|(_, b)| b.len()));
            pick.map(|(i, _)| i).map(|i| kept.swap_remove(i))
        };
        let mut buf = kept.unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.len() < SMALLEST_KEPT {
            return;
        }
        let mut kept = self.kept.lock().expect("kept buffers lock");
        if kept.iter().map(Vec::len).sum::<usize>() + buf.len() <= self.budget {
            kept.push(buf);
        }
    }

    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.kept.lock().expect("kept buffers lock").iter().map(Vec::len).sum()
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
        // The shortest that is long enough: the first one, bytes and all.
        let again = pool.take(1000 << 10);
        assert_eq!((again.as_ptr(), &again[..4]), (at, &b"mark"[..]));
        // Far too long for a short read: left for a longer one.
        let short = pool.take(100 << 10);
        assert_eq!(short.len(), 100 << 10);
        assert_eq!(pool.kept_bytes(), 2 << 20);
        // None long enough: the longest shorter, lengthened with zeros.
        let longer = pool.take(3 << 20);
        assert_eq!(longer.len(), 3 << 20);
        assert!(longer[..2 << 20].iter().all(|&b| b == 7) && longer[2 << 20..].iter().all(|&b| b == 0));
        // Never more than the budget; small ones are not kept.
        pool.give_back(again);
        pool.give_back(longer);
        pool.give_back(vec![0; 1 << 20]);
        assert_eq!(pool.kept_bytes(), 2 << 20);
        pool.give_back(vec![0; 1 << 10]);
        assert_eq!(pool.kept_bytes(), 2 << 20);
    }
}
