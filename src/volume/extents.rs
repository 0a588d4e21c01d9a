//! The extent map of a file, and the operations that rewrite it without touching a byte
//! of data: trimming around an overwrite, punching holes, copying ranges between files
//! (`copy_file_range` shares chunks), and finding data and holes (`SEEK_DATA`).
//!
//! An extent is a run of one chunk's plaintext, `skip..skip + len`. Sequential writes make
//! whole-chunk extents; an overwrite, a hole punched, a truncate or a copied range keeps
//! the parts of the chunks around it as partial extents rather than reading and
//! re-chunking them, so a 4 KiB write into a large file stores 4 KiB. Every function that
//! changes extents does so inside a `Txn`, whose reference counts follow each extent put
//! and deleted.

use super::error::{Error, Result};
use super::file::FileState;
use super::records::Timestamp;
use super::txn::Txn;
use super::Volume;
use crate::ids::Ino;
use crate::store::keys::{self, ExtentValue};
use crate::store::{Cf, Durability};
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest range one `copy_range` call copies: the FUSE reply counts bytes in a u32, and
/// callers loop on a short count as they do for `write` (Linux caps a write at this too).
pub const MAX_COPY: u64 = 0x7fff_f000;

/// What `seek` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The first byte at or after the offset that is data (`SEEK_DATA`).
    Data,
    /// The first byte at or after the offset that is in a hole (`SEEK_HOLE`); the end of
    /// the file counts as a hole.
    Hole,
}

impl Volume {
    /// Extents of `ino` that end after `from`, in offset order.
    pub(crate) fn extents_from(&self, ino: Ino, from: u64) -> Result<Vec<(u64, ExtentValue)>> {
        self.extents_between(ino, from, u64::MAX)
    }

    /// The committed extent of `ino` that begins before `at` and runs past it.
    pub(super) fn extent_across(&self, ino: Ino, at: u64) -> Result<Option<(u64, ExtentValue)>> {
        Ok(self.extents_between(ino, at, at + 1)?.into_iter().next().filter(|(off, _)| *off < at))
    }

    /// Extents of `ino` overlapping `[from, to)`.
    pub(super) fn extents_between(&self, ino: Ino, from: u64, to: u64) -> Result<Vec<(u64, ExtentValue)>> {
        let committed_size = self.load_inode(ino).map_or(u64::MAX, |i| i.size);
        self.extents_below(ino, committed_size, from, to)
    }

    /// `extents_between` for a caller that has the committed size at hand.
    pub(super) fn extents_below(
        &self,
        ino: Ino,
        committed_size: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, ExtentValue)>> {
        // Extents lie below the committed size: a new file, or a write past its end (every
        // small file, every append), has none there, and skips the database.
        if from >= committed_size || from >= to {
            return Ok(vec![]);
        }
        let prefix = ino.to_key();
        let mut out = Vec::new();
        for kv in self.store.scan_from_floor(Cf::Extents, &prefix, &keys::extent_key(ino, from)) {
            let (k, v) = kv?;
            let off = keys::extent_offset(&k);
            if off >= to {
                break;
            }
            let e = ExtentValue::decode(&v).ok_or_else(|| Error::CorruptMeta(format!("extent of inode {ino}")))?;
            if off + u64::from(e.len) > from {
                out.push((off, e));
            }
        }
        Ok(out)
    }

    /// Removes `[from, to)` from the extent map of `ino`: the extents inside go, those
    /// across either end keep their outer parts. Returns the change in allocated bytes.
    pub(super) fn clear_range(&self, txn: &mut Txn<'_>, ino: Ino, from: u64, to: u64) -> Result<i64> {
        let mut allocated = 0i64;
        for (off, e) in self.extents_between(ino, from, to)? {
            txn.delete_extent(ino, off, e);
            allocated -= i64::from(e.len);
            let end = off + u64::from(e.len);
            if off < from {
                txn.put_extent(ino, off, e.part(0, (from - off) as u32), None);
                allocated += (from - off) as i64;
            }
            if end > to {
                txn.put_extent(ino, to, e.part((to - off) as u32, e.len), None);
                allocated += (end - to) as i64;
            }
        }
        Ok(allocated)
    }

    /// Runs `change` with the write windows of `inos` committed and their files locked,
    /// so no write slips in between: for changes that rewrite extents directly.
    fn with_committed<T>(&self, inos: &[Ino], change: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut inos = inos.to_vec();
        // One lock order (by inode) for every caller that takes two.
        inos.sort_unstable();
        inos.dedup();
        let states: Vec<(Ino, Arc<Mutex<FileState>>)> = inos.iter().map(|i| (*i, self.file_state(*i))).collect();
        let result = (|| {
            let mut guards: Vec<MutexGuard<'_, FileState>> = Vec::new();
            for (ino, state) in &states {
                let mut st = state.lock().expect("file lock");
                self.commit_window(*ino, &mut st, Durability::Buffered)?;
                guards.push(st);
            }
            change()
        })();
        drop(states);
        for ino in inos {
            self.forget_idle_state(ino);
        }
        result
    }

    /// Deallocates `[offset, offset + len)` of `ino` (`FALLOC_FL_PUNCH_HOLE`): it reads as
    /// zeros and holds no chunk. The size does not change.
    pub fn punch_hole(&self, ino: Ino, offset: u64, len: u64) -> Result<()> {
        self.zero_range(ino, offset, len, true)
    }

    /// Makes `[offset, offset + len)` of `ino` read as zeros (`FALLOC_FL_ZERO_RANGE`), as
    /// a hole; extends the file to the range's end unless `keep_size`.
    pub fn zero_range(&self, ino: Ino, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        let end = checked_end(offset, len)?;
        self.with_committed(&[ino], || {
            let mut txn = self.txn()?;
            let size = regular_file(txn.inode(ino)?)?.size;
            let allocated = self.clear_range(&mut txn, ino, offset, end.min(size))?;
            let now = Timestamp::now();
            let i = txn.inode_mut(ino)?;
            add_allocated(i, allocated);
            if !keep_size {
                i.size = i.size.max(end);
            }
            i.mtime = now;
            i.ctime = now;
            txn.commit(Durability::Buffered)
        })
    }

    /// Copies up to `len` bytes (at most `MAX_COPY`) of `src` at `src_offset` over `dst`
    /// at `dst_offset`, by reference: the destination's extents become parts of the same
    /// chunks, so no byte is read, written or stored again, at any offsets (the edges
    /// become partial extents). Holes stay holes. Ranges of one file may overlap. Returns
    /// the bytes copied: fewer than asked past the end of `src`, 0 at or after it.
    pub fn copy_range(&self, src: Ino, src_offset: u64, dst: Ino, dst_offset: u64, len: u64) -> Result<u64> {
        checked_end(src_offset, len)?;
        checked_end(dst_offset, len)?;
        self.with_committed(&[src, dst], || {
            let mut txn = self.txn()?;
            regular_file(txn.inode(dst)?)?;
            let src_size = regular_file(txn.inode(src)?)?.size;
            let len = len.min(MAX_COPY).min(src_size.saturating_sub(src_offset));
            if len == 0 {
                return Ok(0);
            }
            let (src_end, dst_end) = (src_offset + len, dst_offset + len);
            // Read before the destination is cleared: with one file, they may overlap.
            let pieces: Vec<(u64, ExtentValue)> = self
                .extents_between(src, src_offset, src_end)?
                .into_iter()
                .map(|(off, e)| {
                    let from = src_offset.max(off);
                    let to = src_end.min(off + u64::from(e.len));
                    (dst_offset + (from - src_offset), e.part((from - off) as u32, (to - off) as u32))
                })
                .collect();
            let mut allocated = self.clear_range(&mut txn, dst, dst_offset, dst_end)?;
            for (off, e) in pieces {
                txn.put_extent(dst, off, e, None);
                allocated += i64::from(e.len);
            }
            let now = Timestamp::now();
            let i = txn.inode_mut(dst)?;
            add_allocated(i, allocated);
            i.size = i.size.max(dst_end);
            i.mtime = now;
            i.ctime = now;
            txn.commit(Durability::Buffered)?;
            Ok(len)
        })
    }

    /// The first offset at or after `offset` that is data or a hole (`lseek` with
    /// `SEEK_DATA`/`SEEK_HOLE`). `NoData` when `offset` is at or past the end, or when
    /// only holes follow it and data is asked for.
    pub fn seek(&self, ino: Ino, offset: u64, what: Seek) -> Result<u64> {
        self.with_committed(&[ino], || {
            let size = self.load_inode(ino)?.size;
            if offset >= size {
                return Err(Error::NoData);
            }
            let mut at = offset;
            for (off, e) in self.extents_from(ino, offset)? {
                match what {
                    Seek::Data => return Ok(off.max(offset)),
                    Seek::Hole if off > at => return Ok(at),
                    Seek::Hole => at = off + u64::from(e.len),
                }
            }
            match what {
                Seek::Data => Err(Error::NoData),
                Seek::Hole => Ok(at.min(size)),
            }
        })
    }
}

/// `inode`, if it is a regular file: ranges of anything else are refused as Linux does.
fn regular_file(inode: &super::records::Inode) -> Result<&super::records::Inode> {
    match inode.kind {
        super::records::Kind::File => Ok(inode),
        super::records::Kind::Dir => Err(Error::IsDir),
        _ => Err(Error::Invalid),
    }
}

fn checked_end(offset: u64, len: u64) -> Result<u64> {
    offset.checked_add(len).filter(|end| *end <= i64::MAX as u64).ok_or(Error::Invalid)
}

fn add_allocated(i: &mut super::records::Inode, delta: i64) {
    i.allocated = i.allocated.saturating_add_signed(delta);
}
