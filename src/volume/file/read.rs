//! Reading: committed extents and uncommitted windows assembled, with read-ahead.

use super::window::{copy_overlap, QueuedWrites, Window};
use crate::ids::{ChunkId, Ino};
use crate::store::keys::ExtentValue;
use crate::store::Durability;
use crate::volume::chunks::Plain;
use crate::volume::error::{Error, Result};
use crate::volume::records::{Kind, Timestamp};
use crate::volume::Volume;

/// Bytes read ahead of a sequential reader.
const READAHEAD: u64 = 8 << 20;

impl Volume {
    /// Reads up to `size` bytes at `offset`; fewer at the end of the file. A read inside
    /// one committed chunk (most reads of a large file) shares the cached plaintext
    /// instead of copying it.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Plain> {
        self.read_inner(ino, offset, size, false)
    }

    /// `read` that may return fewer bytes (but at least one, before the end of the file):
    /// it stops at the end of the committed chunk that holds `offset`, so that its bytes
    /// are shared with the chunk cache rather than copied into a new buffer. For readers
    /// that take any length, such as a download's body.
    pub fn read_shared(&self, ino: Ino, offset: u64, size: u32) -> Result<Plain> {
        self.read_inner(ino, offset, size, true)
    }

    fn read_inner(&self, ino: Ino, offset: u64, size: u32, stop_at_chunk: bool) -> Result<Plain> {
        let state = self.open_file_state(ino);
        let guard = state.as_ref().map(|s| s.lock().expect("file lock"));
        let windows: Vec<&Window> = guard.as_ref().map(|g| g.uncommitted().collect()).unwrap_or_default();
        let queued = guard.as_ref().map(|g| &g.queued_writes).filter(|q| !q.is_empty());
        let inode = self.load_inode(ino)?;
        match inode.kind {
            Kind::File => {}
            Kind::Dir => return Err(Error::IsDir),
            _ => return Err(Error::Invalid),
        }
        let file_size =
            windows.iter().fold(inode.size, |size, w| size.max(w.end())).max(queued.map_or(0, QueuedWrites::end));
        if offset >= file_size {
            return Ok(Plain::from(Vec::new()));
        }
        let mut end = file_size.min(offset + u64::from(size));
        // Near the previous read's end counts as sequential: the kernel issues read-ahead
        // requests in parallel, so they arrive slightly out of order.
        let sequential = {
            let mut last = self.last_read_end.lock().expect("readahead lock");
            let prev = last.put(ino, end);
            offset == 0 || prev.is_some_and(|p| p.abs_diff(offset) <= 4 << 20)
        };
        let look_to = if sequential { end + READAHEAD } else { end };
        let (mut now, ahead): (Vec<_>, Vec<_>) =
            self.extents_below(ino, inode.size, offset, look_to)?.into_iter().partition(|(off, _)| *off < end);
        let mut ahead: Vec<ChunkId> = ahead.into_iter().map(|(_, e)| e.chunk).collect();
        if stop_at_chunk && windows.is_empty() && queued.is_none() {
            if let Some(&(off, e)) = now.first().filter(|(off, _)| *off <= offset) {
                end = end.min(off + u64::from(e.len));
                ahead.splice(0..0, now.drain(1..).map(|(_, e)| e.chunk));
            }
        }
        let mut shared = None;
        if let ([(off, e)], [], None) = (&now[..], &windows[..], queued) {
            if *off <= offset && off + u64::from(e.len) >= end {
                let plain = self.chunks.extent(ino, e)?;
                let range = (offset - off) as usize..(end - off) as usize;
                shared = (range.end <= plain.len()).then(|| plain.slice(range));
            }
        }
        let data = match shared {
            Some(data) => data,
            None => Plain::from(self.assemble(ino, offset, end, &now, queued, &windows)?),
        };
        drop(guard);
        if !ahead.is_empty() {
            self.chunks.prefetch(ino, ahead);
        }
        if offset == 0 && !self.read_only && needs_atime_update(&inode) {
            self.touch_atime(ino)?;
        }
        crate::metrics::get().read_bytes.inc_by(data.len() as u64);
        Ok(data)
    }

    /// The bytes of `[offset, end)` from committed extents `now`, then the queued writes
    /// and the uncommitted `windows`, oldest first.
    fn assemble(
        &self,
        ino: Ino,
        offset: u64,
        end: u64,
        now: &[(u64, ExtentValue)],
        queued: Option<&QueuedWrites>,
        windows: &[&Window],
    ) -> Result<Vec<u8>> {
        let mut out = vec![0u8; (end - offset) as usize];
        for (off, e) in now {
            let plain = self.chunks.extent(ino, e)?;
            copy_overlap(&mut out, offset, *off, &plain);
        }
        if let Some(q) = queued {
            q.overlay(&mut out, offset);
        }
        for w in windows {
            w.overlay(&mut out, offset, |p| self.chunks.pending_chunk(ino, p))?;
        }
        Ok(out)
    }
}

/// Linux's default `relatime`: update atime on read when it is not newer than the last
/// change, or is a day old; otherwise reads would turn into metadata writes.
fn needs_atime_update(inode: &crate::volume::records::Inode) -> bool {
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
