//! Reading: committed extents and uncommitted windows assembled, with read-ahead.

use super::window::{copy_overlap, QueuedWrites, Window};
use crate::ids::{ChunkId, Ino};
use crate::store::keys::ExtentValue;
use crate::store::{Bodies, Durability};
use crate::volume::chunks::Plain;
use crate::volume::error::{Error, Result};
use crate::volume::records::{Kind, Timestamp};
use crate::volume::Volume;

/// Bytes read ahead of a sequential reader.
const READAHEAD: u64 = 8 << 20;

/// Pieces a read hands back at most: more (a range of many small extents, left by small
/// random writes) are assembled into one buffer, as a gather write takes at most
/// `IOV_MAX` (1024) pieces and a copy of small pieces is cheap.
const MAX_PIECES: usize = 64;

impl Volume {
    /// Reads up to `size` bytes at `offset`; fewer at the end of the file. A read inside
    /// one committed chunk (most reads of a large file) shares the cached plaintext
    /// instead of copying it.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Plain> {
        self.read_inner(ino, offset, size, Shape::Whole, Bodies::KeepCached).map(one_piece)
    }

    /// `read` that may return fewer bytes (but at least one, before the end of the file):
    /// it stops at the end of the committed chunk that holds `offset`, so that its bytes
    /// are shared with the chunk cache rather than copied into a new buffer. For readers
    /// that take any length, such as a download's body. A download streams each byte
    /// once, so its sealed bodies are read around the page cache, as the mount's are.
    pub fn read_shared(&self, ino: Ino, offset: u64, size: u32) -> Result<Plain> {
        self.read_inner(ino, offset, size, Shape::StopAtChunk, Bodies::Uncached).map(one_piece)
    }

    /// `read` as consecutive pieces: a read across committed chunks shares each chunk's
    /// cached plaintext instead of copying it into one buffer. For a reader that sends
    /// the bytes on with a gather write, as the FUSE transports do. The kernel keeps what
    /// it reads through the mount in its page cache, so the sealed bodies read for it are
    /// not kept there as well.
    pub fn read_pieces(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<Plain>> {
        self.read_inner(ino, offset, size, Shape::Pieces, Bodies::Uncached)
    }

    fn read_inner(&self, ino: Ino, offset: u64, size: u32, shape: Shape, bodies: Bodies) -> Result<Vec<Plain>> {
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
            return Ok(vec![Plain::from(Vec::new())]);
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
        let mut ahead: Vec<(ChunkId, u32)> = ahead.into_iter().map(|(_, e)| (e.chunk, e.len)).collect();
        if shape == Shape::StopAtChunk && windows.is_empty() && queued.is_none() {
            if let Some(&(off, e)) = now.first().filter(|(off, _)| *off <= offset) {
                end = end.min(off + u64::from(e.len));
                ahead.splice(0..0, now.drain(1..).map(|(_, e)| (e.chunk, e.len)));
            }
        }
        // Committed extents alone, end to end over the whole range, are shared as they are
        // cached: as one piece, or as several where the caller takes pieces.
        let mut shared = None;
        if windows.is_empty()
            && queued.is_none()
            && (now.len() == 1 || (shape == Shape::Pieces && now.len() <= MAX_PIECES))
            && covers(&now, offset, end)
        {
            shared = self.shared_pieces(ino, offset, end, &now, bodies)?;
        }
        let data = match shared {
            Some(pieces) => pieces,
            None => {
                let committed: Vec<(u64, Plain)> = now
                    .iter()
                    .map(|(off, e)| Ok((*off, self.chunks.extent(ino, e, bodies)?)))
                    .collect::<Result<_>>()?;
                vec![Plain::from(self.assemble(ino, offset, end, &committed, queued, &windows)?)]
            }
        };
        drop(guard);
        if !ahead.is_empty() {
            self.chunks.prefetch(ino, ahead, bodies);
        }
        if offset == 0 && !self.read_only && needs_atime_update(&inode) {
            self.touch_atime(ino)?;
        }
        crate::metrics::get().read_bytes.inc_by(data.iter().map(|p| p.len() as u64).sum());
        Ok(data)
    }

    /// The cached plaintext of extents `now` (which cover `[offset, end)` end to end),
    /// cut to that range; `None` if a chunk is shorter than its extent says (the caller
    /// assembles the range, which reads the rest as zeros).
    fn shared_pieces(
        &self,
        ino: Ino,
        offset: u64,
        end: u64,
        now: &[(u64, ExtentValue)],
        bodies: Bodies,
    ) -> Result<Option<Vec<Plain>>> {
        let mut pieces = Vec::with_capacity(now.len());
        for (off, e) in now {
            let plain = self.chunks.extent(ino, e, bodies)?;
            let range = (offset.max(*off) - off) as usize..(end.min(off + u64::from(e.len)) - off) as usize;
            if range.end > plain.len() {
                return Ok(None);
            }
            pieces.push(plain.slice(range));
        }
        Ok(Some(pieces))
    }

    /// The bytes of `[offset, end)` from the plaintext of the `committed` extents (file
    /// offset, bytes), then the queued writes and the uncommitted `windows`, oldest first.
    fn assemble(
        &self,
        ino: Ino,
        offset: u64,
        end: u64,
        committed: &[(u64, Plain)],
        queued: Option<&QueuedWrites>,
        windows: &[&Window],
    ) -> Result<Vec<u8>> {
        let mut out = vec![0u8; (end - offset) as usize];
        for (off, plain) in committed {
            copy_overlap(&mut out, offset, *off, plain);
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

/// How a read hands back its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One piece, all of the range.
    Whole,
    /// One piece, up to the end of the chunk where the range starts.
    StopAtChunk,
    /// Consecutive pieces, all of the range.
    Pieces,
}

fn one_piece(mut pieces: Vec<Plain>) -> Plain {
    debug_assert_eq!(pieces.len(), 1, "one piece unless pieces were asked for");
    pieces.pop().unwrap_or_else(|| Plain::from(Vec::new()))
}

/// Whether extents `now` (in file order) lie end to end over `[offset, end)`.
fn covers(now: &[(u64, ExtentValue)], offset: u64, end: u64) -> bool {
    let Some(&(first, _)) = now.first() else { return false };
    let mut at = first;
    for (off, e) in now {
        if *off != at {
            return false;
        }
        at = off + u64::from(e.len);
    }
    first <= offset && at >= end
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
