//! Pack files: append-only files of sealed chunk bodies, beside the database.
//!
//! Large bodies are written here once, straight to the file system, instead of through a
//! RocksDB memtable into a blob file: no copy of a video waits in the daemon's memory for
//! a flush, and making a closed file durable costs one `fdatasync` of the pack rather
//! than a memtable flush. A chunk's `refs` record holds its `Location`, written by the
//! batch that adds the chunk's first reference, and only after `sync` has made the body
//! durable: a crash leaves at most unreferenced bytes at the end of a pack, which garbage
//! collection reclaims with the rest of a pack's dead space.
//!
//! Like the rest of the store, packs hold only sealed bytes (the envelope's associated
//! data binds a body to its chunk id, so a body read from a wrong place fails to open).

use super::faults::{Fault, Op};
use super::{io_error, Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// A local pack is closed for appends at this size.
const PACK_SIZE: u64 = 256 << 20;

/// Where a sealed body lies: pack number, byte offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    /// Encoded size: pack u32, offset u64, length u32 (big-endian).
    pub const ENCODED_LEN: usize = 16;

    /// The encoding.
    #[must_use]
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut v = [0u8; Self::ENCODED_LEN];
        v[..4].copy_from_slice(&self.pack.to_be_bytes());
        v[4..12].copy_from_slice(&self.offset.to_be_bytes());
        v[12..].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    /// Decodes; `None` if `v` has another length.
    #[must_use]
    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            pack: u32::from_be_bytes(v[..4].try_into().ok()?),
            offset: u64::from_be_bytes(v[4..12].try_into().ok()?),
            len: u32::from_be_bytes(v[12..].try_into().ok()?),
        })
    }
}

/// The pack files of one volume.
pub struct Packs {
    dir: PathBuf,
    writable: bool,
    /// A pack is closed for appends at this size.
    pack_size: u64,
    /// Whether appends after an open continue the last pack. Packs that leave for an
    /// object store are immutable once uploaded, so there every open starts a new one
    /// (above `first_new`).
    continue_last: bool,
    /// The lowest number a newly started pack may take.
    first_new: AtomicU32,
    /// The pack being appended to.
    tail: Mutex<Option<Tail>>,
    /// Read handles, opened on first use.
    readers: RwLock<HashMap<u32, Arc<File>>>,
    /// The same packs opened for direct reads (`read_direct`).
    direct_readers: RwLock<HashMap<u32, Arc<File>>>,
    /// Calls of `forget` so far: a handle opened before one is not kept (`open_reader`).
    forgotten: AtomicU64,
    /// Packs appended to since their last `fdatasync`.
    unsynced: Mutex<BTreeSet<u32>>,
    /// A pack file was created since the directory was last synced.
    dir_unsynced: AtomicBool,
    /// Held by `sync` for its whole run, so a second caller waits for a sync in progress
    /// instead of returning while the first one's packs are still being synced.
    syncing: Mutex<()>,
    /// The error of a failed pack sync (see `sync`).
    sync_failed: Mutex<Option<i32>>,
    /// Appends that have reserved their place in a pack and not finished writing.
    writing: Mutex<HashMap<u32, usize>>,
    /// Signalled when an append finishes writing.
    written: Condvar,
    /// Whether bodies are written and read uncached (`write_uncached`, `read_exact_at`);
    /// cleared when the file system refuses.
    uncached: AtomicBool,
    /// Whether `read_direct` reads with `O_DIRECT`; cleared when the file system refuses.
    direct: AtomicBool,
}

struct Tail {
    pack: u32,
    file: Arc<File>,
    len: u64,
}

impl Packs {
    /// The packs under `dir` (created when `writable`).
    pub fn open(dir: &Path, writable: bool) -> Result<Self> {
        if writable {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            writable,
            pack_size: PACK_SIZE,
            continue_last: true,
            first_new: AtomicU32::new(1),
            tail: Mutex::new(None),
            readers: RwLock::new(HashMap::new()),
            direct_readers: RwLock::new(HashMap::new()),
            forgotten: AtomicU64::new(0),
            unsynced: Mutex::new(BTreeSet::new()),
            dir_unsynced: AtomicBool::new(false),
            syncing: Mutex::new(()),
            sync_failed: Mutex::new(None),
            writing: Mutex::new(HashMap::new()),
            written: Condvar::new(),
            uncached: AtomicBool::new(true),
            direct: AtomicBool::new(true),
        })
    }

    /// Packs closed at `pack_size`, and new packs only: none numbered below `first_new`,
    /// and none continued after an open (see `continue_last`).
    pub fn staging(mut self, pack_size: u64, first_new: u32) -> Self {
        self.pack_size = pack_size;
        self.continue_last = false;
        self.first_new = AtomicU32::new(first_new);
        self
    }

    fn path(&self, pack: u32) -> PathBuf {
        self.dir.join(format!("{pack:08}.pack"))
    }

    /// Every pack file and its size, in pack order.
    pub fn list(&self) -> Result<Vec<(u32, u64)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_error(e)),
        };
        let mut packs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error)?;
            let name = entry.file_name();
            let Some(pack) = name.to_str().and_then(|n| n.strip_suffix(".pack")).and_then(|n| n.parse().ok()) else {
                continue;
            };
            packs.push((pack, entry.metadata().map_err(io_error)?.len()));
        }
        packs.sort_unstable();
        Ok(packs)
    }

    /// Bytes of all pack files.
    pub fn disk_bytes(&self) -> Result<u64> {
        Ok(self.list()?.iter().map(|(_, len)| len).sum())
    }

    /// Closes the tail pack for appends (unless it is empty) and returns the pack that new
    /// bodies go to from now on: every pack below it is closed.
    pub fn rotate(&self) -> Result<u32> {
        let mut tail = self.tail.lock().expect("pack tail lock");
        // A body too large for any pack makes `tail_for` start the next one, unless the
        // tail is empty.
        Ok(self.tail_for(&mut tail, self.pack_size + 1)?.pack)
    }

    /// The tail pack, opened (continuing the last pack, or starting one) or rotated so
    /// that `incoming` more bytes fit.
    fn tail_for<'a>(&self, tail: &'a mut Option<Tail>, incoming: u64) -> Result<&'a mut Tail> {
        let full = tail.as_ref().is_some_and(|t| t.len > 0 && t.len + incoming > self.pack_size);
        if tail.is_none() || full {
            let next = match tail.as_ref() {
                Some(t) => t.pack + 1,
                None => match self.list()?.last() {
                    Some(&(pack, len)) if self.continue_last && (len == 0 || len + incoming <= self.pack_size) => pack,
                    Some(&(pack, _)) => pack + 1,
                    None => 1,
                },
            };
            let next = next.max(self.first_new.load(Ordering::SeqCst));
            // An existing last pack is continued after its end, never truncated.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.path(next))
                .map_err(io_error)?;
            let len = file.metadata().map_err(io_error)?.len();
            // The new file's name must survive a crash as surely as its contents: `sync`
            // syncs the directory too. (Syncing it here, on the writers' path, cost a
            // device flush per pack while bodies were streaming in.)
            self.dir_unsynced.store(true, Ordering::SeqCst);
            *tail = Some(Tail { pack: next, file: Arc::new(file), len });
        }
        Ok(tail.as_mut().expect("tail is open"))
    }

    /// Closes the tail pack for appends if it holds anything, returning it; the next
    /// append starts a new pack.
    pub fn close_tail(&self) -> Option<u32> {
        let mut tail = self.tail.lock().expect("pack tail lock");
        match tail.as_ref() {
            Some(t) if t.len > 0 => {
                let pack = t.pack;
                self.first_new.fetch_max(pack + 1, Ordering::SeqCst);
                *tail = None;
                Some(pack)
            }
            _ => None,
        }
    }

    /// Every pack below this one is closed for appends.
    pub fn closed_below(&self) -> u32 {
        match self.tail.lock().expect("pack tail lock").as_ref() {
            Some(t) => t.pack,
            None => self.first_new.load(Ordering::SeqCst),
        }
    }

    /// Waits until every append that reserved a place in `pack` has written its bytes.
    pub fn wait_for_writes(&self, pack: u32) {
        let mut writing = self.writing.lock().expect("pack writes lock");
        while writing.contains_key(&pack) {
            writing = self.written.wait(writing).expect("pack writes lock");
        }
    }

    /// Closes the read handles of `pack`, whose file was just removed or replaced. A
    /// handle that a reader opened before this call, on the old file, is used for that
    /// one read and not kept, so later reads open the file as it is now (a damaged local
    /// copy of an object-store pack, dropped and fetched again, is never read again).
    pub fn forget(&self, pack: u32) {
        let mut readers = self.readers.write().expect("pack readers lock");
        let mut direct = self.direct_readers.write().expect("pack readers lock");
        readers.remove(&pack);
        direct.remove(&pack);
        self.forgotten.fetch_add(1, Ordering::SeqCst);
    }

    /// The handle of `pack` in `handles`, opened with `open` and kept there unless
    /// `forget` was called meanwhile.
    fn open_reader(
        &self,
        handles: &RwLock<HashMap<u32, Arc<File>>>,
        pack: u32,
        open: impl FnOnce(&Path) -> std::io::Result<File>,
    ) -> Result<Arc<File>> {
        if let Some(f) = handles.read().expect("pack readers lock").get(&pack) {
            return Ok(f.clone());
        }
        let seen = self.forgotten.load(Ordering::SeqCst);
        let file = Arc::new(open(&self.path(pack)).map_err(io_error)?);
        let mut handles = handles.write().expect("pack readers lock");
        if self.forgotten.load(Ordering::SeqCst) == seen {
            handles.insert(pack, file.clone());
        }
        Ok(file)
    }

    /// Appends a sealed body; it is durable once `sync` returns.
    pub fn append(&self, body: &[u8]) -> Result<Location> {
        if !self.writable {
            return Err(Error::Db("pack files are open read-only".into()));
        }
        let len = u32::try_from(body.len()).map_err(|_| Error::Db("chunk body over 4 GiB".into()))?;
        // Only the offset is reserved under the lock; the bytes are written outside it, so
        // the worker threads append in parallel.
        let (pack, file, offset) = {
            let mut tail = self.tail.lock().expect("pack tail lock");
            let t = self.tail_for(&mut tail, body.len() as u64)?;
            let offset = t.len;
            t.len += body.len() as u64;
            // Counted under the tail lock, so that whoever closes the pack sees it.
            *self.writing.lock().expect("pack writes lock").entry(t.pack).or_default() += 1;
            (t.pack, t.file.clone(), offset)
        };
        // A failed write leaves dead bytes in the range reserved for it, which no location
        // points at and later appends go past; garbage collection reclaims them.
        let written = write_body(&file, body, offset, &self.uncached);
        {
            let mut writing = self.writing.lock().expect("pack writes lock");
            if let Some(n) = writing.get_mut(&pack) {
                *n -= 1;
                if *n == 0 {
                    writing.remove(&pack);
                }
            }
        }
        self.written.notify_all();
        written?;
        start_writeback(&file, offset, body.len() as u64);
        self.unsynced.lock().expect("unsynced lock").insert(pack);
        Ok(Location { pack, offset, len })
    }

    /// Makes every body appended before this call durable.
    pub fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock().expect("pack sync lock");
        if let Some(errno) = *self.sync_failed.lock().expect("sync failure lock") {
            return Err(io_error(std::io::Error::from_raw_os_error(errno)));
        }
        let packs = std::mem::take(&mut *self.unsynced.lock().expect("unsynced lock"));
        for pack in packs {
            let file = match self.reader(pack) {
                Ok(f) => f,
                Err(e) => {
                    // Nothing was lost: a later sync retries it.
                    self.unsynced.lock().expect("unsynced lock").insert(pack);
                    return Err(e);
                }
            };
            if let Err(e) = super::faults::fail(Op::PackSync).and_then(|()| file.sync_data().map_err(io_error)) {
                // After a failed `fdatasync` the kernel may have dropped the pages it could
                // not write and marked them clean, so a retry would succeed without them
                // on disk. No later sync in this process can vouch for the bodies
                // appended before, whoever appended them: every one fails from now on.
                let errno = match &e {
                    Error::NoSpace => libc::ENOSPC,
                    Error::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
                    _ => libc::EIO,
                };
                *self.sync_failed.lock().expect("sync failure lock") = Some(errno);
                tracing::error!(pack, error = %e, "a pack could not be synced: bodies are no longer made durable until the volume is opened again");
                return Err(e);
            }
        }
        if self.dir_unsynced.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.sync_dir() {
                self.dir_unsynced.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }

    fn reader(&self, pack: u32) -> Result<Arc<File>> {
        self.open_reader(&self.readers, pack, |path| File::open(path))
    }

    /// The body at `loc`. `None` if its pack is gone (moved by garbage collection after the
    /// caller looked the location up: look it up again).
    pub fn read(&self, loc: Location) -> Result<Option<Vec<u8>>> {
        let file = match self.reader(loc.pack) {
            Ok(f) => f,
            Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match read_exact_at(&file, loc.len as usize, loc.offset, &self.uncached) {
            Ok(body) => Ok(Some(body)),
            // A pack cut short: what is missing cannot open, and the caller reports it.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(Some(Vec::new())),
            Err(e) => Err(io_error(e)),
        }
    }

    /// The body at `loc` read straight from the disk (`O_DIRECT`), around the page cache,
    /// as `(buf, start)`: the body is `buf[start..]`. A direct read covers whole blocks,
    /// so the buffer starts at the block that holds the body's first byte. No page-cache
    /// page is allocated, filled, copied and freed for it, which is most of what an
    /// uncached buffered read costs. Bodies not yet written back are written back first
    /// by the kernel. Where the file system refuses direct I/O, this is `read`.
    pub fn read_direct(&self, loc: Location) -> Result<Option<(Vec<u8>, Range<usize>)>> {
        if self.direct.load(Ordering::Relaxed) {
            match self.direct_reader(loc.pack) {
                Ok(file) => match read_direct_at(&file, loc.len as usize, loc.offset) {
                    Ok(read) => return Ok(Some(read)),
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(Some((Vec::new(), 0..0))),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.refuse_direct(&e),
                    Err(e) => return Err(io_error(e)),
                },
                Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EINVAL) => self.refuse_direct(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(self.read(loc)?.map(super::whole))
    }

    fn direct_reader(&self, pack: u32) -> Result<Arc<File>> {
        use std::os::unix::fs::OpenOptionsExt;
        self.open_reader(&self.direct_readers, pack, |path| {
            OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path)
        })
    }

    fn refuse_direct(&self, e: &std::io::Error) {
        if self.direct.swap(false, Ordering::Relaxed) {
            tracing::info!(dir = %self.dir.display(), error = %e, "direct reads refused: bodies are read through the page cache");
        }
    }

    /// Starts reading the body at `loc` into the page cache, without waiting for it: a
    /// reader's `pread`s go one body at a time, and the kernel's own read-ahead follows
    /// only one sequential stream per pack, where a download of several ranges or the
    /// read-ahead of a file reads several. Pages brought in this way stay cached after
    /// `read` (see `read_exact_at`).
    pub fn will_read(&self, loc: Location) {
        if let Ok(file) = self.reader(loc.pack) {
            let (offset, len) = (loc.offset as libc::off_t, libc::off_t::from(loc.len));
            let _ = nix::fcntl::posix_fadvise(&*file, offset, len, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED);
        }
    }

    /// Deletes a pack that no location points into any more.
    pub fn delete(&self, pack: u32) -> Result<()> {
        let removed = std::fs::remove_file(self.path(pack));
        self.forget(pack);
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_error)
    }

    /// The path of a pack (for tools and tests that inspect bodies where they lie).
    #[must_use]
    pub fn pack_path(&self, pack: u32) -> PathBuf {
        self.path(pack)
    }
}

impl super::PackStore for Packs {
    fn append(&self, body: &[u8]) -> Result<Location> {
        Packs::append(self, body)
    }
    fn sync(&self) -> Result<()> {
        Packs::sync(self)
    }
    fn read(&self, loc: Location) -> Result<Option<Vec<u8>>> {
        Packs::read(self, loc)
    }
    fn rotate(&self) -> Result<u32> {
        Packs::rotate(self)
    }
    fn list(&self) -> Result<Vec<(u32, u64)>> {
        Packs::list(self)
    }
    fn delete(&self, pack: u32) -> Result<()> {
        Packs::delete(self, pack)
    }
    fn will_read(&self, loc: Location) {
        Packs::will_read(self, loc);
    }
    fn read_direct(&self, loc: Location) -> Result<Option<(Vec<u8>, Range<usize>)>> {
        Packs::read_direct(self, loc)
    }
    fn stored_bytes(&self) -> Result<u64> {
        self.disk_bytes()
    }
    fn pack_path(&self, pack: u32) -> PathBuf {
        Packs::pack_path(self, pack)
    }
}

/// Writes `body` at `offset`, or an injected failure (a short write: part of it).
fn write_body(file: &File, body: &[u8], offset: u64, uncached: &AtomicBool) -> Result<()> {
    match super::faults::check(Op::PackWrite) {
        None => write_uncached(file, body, offset, uncached).map_err(io_error),
        Some(Fault::Short) => {
            file.write_all_at(&body[..body.len() / 2], offset).map_err(io_error)?;
            Err(Fault::Short.error())
        }
        Some(fault) => Err(fault.error()),
    }
}

/// `RWF_DONTCACHE` (Linux 6.14; not in the `libc` crate yet).
const RWF_DONTCACHE: libc::c_int = 0x80;

/// `write_all_at`, as uncached buffered I/O while `uncached` is set, which is cleared when
/// the kernel or the file system refuses it (before Linux 6.14, tmpfs). The pages go to disk
/// as usual (`sync` still makes them durable), then leave the page cache instead of
/// crowding it out. New page-cache pages were the dearest part of writing a body: on a VM
/// whose free memory goes back to the host, each one is faulted in from the host again,
/// and the copy into them took half of the daemon's time in a `cp` into the mount
/// (docs/benchmarks.md, "2026-12-07 (day)"). Bodies read soon after their write (an
/// upload's last chunk, taken back by its next PATCH) are in the chunk cache.
#[allow(unsafe_code)]
fn write_uncached(file: &File, mut buf: &[u8], mut offset: u64, uncached: &AtomicBool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() && uncached.load(Ordering::Relaxed) {
        let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: `pwritev2` reads `iov_len` bytes from `iov_base`, which `buf` borrows for
        // the call, from a file descriptor that `file` keeps open.
        let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, offset as libc::off_t, RWF_DONTCACHE) };
        if n > 0 {
            buf = &buf[n as usize..];
            offset += n as u64;
            continue;
        }
        let e = if n == 0 { std::io::Error::from(ErrorKind::WriteZero) } else { std::io::Error::last_os_error() };
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            // An older kernel, or a file system without uncached writes: plain writes from now on.
            Some(libc::EOPNOTSUPP | libc::EINVAL) => uncached.store(false, Ordering::Relaxed),
            _ => return Err(e),
        }
    }
    file.write_all_at(buf, offset)
}

/// `len` bytes of `file` at `offset`, read into a new buffer that is not zero-filled
/// first: a chunk body is read whole, and filling it before the copy from the page cache
/// cost a few percent of a read's CPU.
///
/// Read uncached while `uncached` is set (cleared where the file system refuses): pages
/// the read itself brings in leave the page cache once copied, and pages cached before
/// (by `will_read`, or by another reader) stay. Readers that want bodies kept cached
/// read them ahead with `will_read`; the mount and downloads read around the page cache
/// (`read_direct`).
#[allow(unsafe_code)]
fn read_exact_at(file: &File, len: usize, offset: u64, uncached: &AtomicBool) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut body: Vec<u8> = Vec::with_capacity(len);
    while body.len() < len {
        let done = body.len();
        let at = offset + done as u64;
        let spare = &mut body.spare_capacity_mut()[..len - done];
        let iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() };
        let flags = if uncached.load(Ordering::Relaxed) { RWF_DONTCACHE } else { 0 };
        // SAFETY: `preadv2` writes at most `iov_len` bytes into `spare`, memory that `body`
        // owns and nothing else refers to; `set_len` below covers only bytes it wrote.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at as libc::off_t, flags) };
        match n {
            n if n > 0 => {
                // SAFETY: the first `n` bytes of the spare capacity were just written.
                unsafe { body.set_len(done + n as usize) };
            }
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EOPNOTSUPP | libc::EINVAL) if flags != 0 => uncached.store(false, Ordering::Relaxed),
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(body)
}

/// Alignment of direct reads: offset, length and buffer. 4 KiB covers the logical block
/// size of the disks this runs on (512 bytes or 4 KiB).
const DIRECT_ALIGN: usize = 4096;

/// `len` bytes at `offset` read with `O_DIRECT` into a kept buffer (`buffers::take`), as
/// `(buf, range)` with the bytes at `buf[range]`. The read covers the aligned blocks around
/// them, into an aligned place inside the buffer (a `Vec` cannot be allocated aligned and
/// freed as one).
fn read_direct_at(file: &File, len: usize, offset: u64) -> std::io::Result<(Vec<u8>, Range<usize>)> {
    let align = DIRECT_ALIGN as u64;
    let first = offset / align * align;
    let blocks = ((offset + len as u64).next_multiple_of(align) - first) as usize;
    let mut buf = crate::buffers::take(blocks + DIRECT_ALIGN);
    let pad = buf.as_ptr().align_offset(DIRECT_ALIGN);
    let want = (offset - first) as usize + len;
    let mut done = 0;
    while done < want {
        // Reads stay aligned: each ends at a block boundary, or at the end of the file.
        match file.read_at(&mut buf[pad + done..pad + blocks], first + done as u64) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let start = pad + (offset - first) as usize;
    Ok((buf, start..start + len))
}

/// Starts writing `len` bytes at `offset` back to disk without waiting, as RocksDB's
/// `bytes_per_sync` does: the `fdatasync` at commit then waits only for the last bodies,
/// and dirty pages never pile up in the page cache.
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a file descriptor that `file` keeps open; it reads
    // and writes no memory of ours. Failure only loses the early start of writeback.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_round_trips() {
        let loc = Location { pack: 7, offset: 1 << 40, len: 4 << 20 };
        assert_eq!(Location::decode(&loc.encode()), Some(loc));
        assert_eq!(Location::decode(&loc.encode()[1..]), None);
    }

    #[test]
    fn bodies_append_read_back_and_packs_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path(), true).unwrap();
        let a = packs.append(b"first body").unwrap();
        let b = packs.append(b"second").unwrap();
        assert_eq!((a.pack, a.offset, b.offset), (1, 0, 10));
        packs.sync().unwrap();
        assert_eq!(packs.read(b).unwrap().unwrap(), b"second");
        assert_eq!(packs.read(a).unwrap().unwrap(), b"first body");
        // A location past the pack's end (a pack cut short) reads as an empty body.
        assert_eq!(packs.read(Location { offset: 12, len: 10, ..b }).unwrap().unwrap(), b"");
        // Reopened, appends continue the last pack.
        drop(packs);
        let packs = Packs::open(dir.path(), true).unwrap();
        let c = packs.append(b"third").unwrap();
        assert_eq!((c.pack, c.offset), (1, 16));
        assert_eq!(packs.list().unwrap(), vec![(1, 21)]);
        // A body that does not fit starts the next pack.
        let big = vec![9u8; (PACK_SIZE - 10) as usize];
        let d = packs.append(&big).unwrap();
        assert_eq!((d.pack, d.offset), (2, 0));
        assert_eq!(packs.rotate().unwrap(), 3);
        assert_eq!(packs.rotate().unwrap(), 3, "an empty tail is not rotated");
        packs.delete(1).unwrap();
        assert_eq!(packs.read(a).unwrap(), None);
        assert_eq!(packs.list().unwrap(), vec![(2, PACK_SIZE - 10), (3, 0)]);
    }

    /// Bytes of `path` in the page cache, as `fincore` (util-linux) counts them.
    fn resident_bytes(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore runs");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("fincore prints a byte count")
    }

    #[test]
    fn synced_bodies_leave_the_page_cache_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path(), true).unwrap();
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let loc = packs.append(&body).unwrap();
        packs.sync().unwrap();
        let path = packs.path(loc.pack);
        if packs.uncached.load(Ordering::Relaxed) {
            // Written back by the sync, the pages are dropped: at most a page or two stays.
            assert!(resident_bytes(&path) <= 8192, "{} bytes of the pack stayed cached", resident_bytes(&path));
        } else {
            eprintln!("{} refuses uncached writes: plain writes were used", path.display());
        }
        assert_eq!(packs.read(loc).unwrap().unwrap(), body);
    }

    #[test]
    fn bodies_are_read_uncached_unless_read_ahead_into_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path(), true).unwrap();
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 249) as u8).collect();
        let loc = packs.append(&body).unwrap();
        packs.sync().unwrap();
        let path = packs.path(loc.pack);
        let file = File::open(&path).unwrap();
        nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
        if resident_bytes(&path) == u64::from(loc.len) {
            eprintln!("the page cache of {} cannot be dropped here (tmpfs?); nothing to test", path.display());
            return;
        }
        if packs.uncached.load(Ordering::Relaxed) {
            assert_eq!(packs.read(loc).unwrap().unwrap(), body);
            assert!(packs.uncached.load(Ordering::Relaxed), "the uncached read was refused");
            assert!(resident_bytes(&path) <= 8192, "a read left {} bytes of the pack cached", resident_bytes(&path));
        } else {
            eprintln!("{} refuses uncached I/O: plain reads are used", path.display());
        }
        // Read ahead, the body is cached, and a read leaves it there.
        packs.will_read(loc);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while resident_bytes(&path) < u64::from(loc.len) {
            assert!(std::time::Instant::now() < deadline, "the body was not read ahead");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(packs.read(loc).unwrap().unwrap(), body);
        assert_eq!(resident_bytes(&path), u64::from(loc.len), "a read dropped pages read ahead");
    }

    #[test]
    fn direct_reads_return_each_body_wherever_it_lies_and_cache_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path(), true).unwrap();
        // Bodies that start and end inside blocks, and one that ends the file mid-block.
        let bodies: Vec<Vec<u8>> =
            [10usize, 5000, (1 << 20) + 3, 77].iter().map(|&n| (0..n).map(|i| (i * 7 % 251) as u8).collect()).collect();
        let locs: Vec<Location> = bodies.iter().map(|b| packs.append(b).unwrap()).collect();
        packs.sync().unwrap();
        let path = packs.path(locs[0].pack);
        let file = File::open(&path).unwrap();
        nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
        let cached_before = resident_bytes(&path);
        for (loc, body) in locs.iter().zip(&bodies) {
            let (buf, range) = packs.read_direct(*loc).unwrap().unwrap();
            assert_eq!(&buf[range], &body[..]);
        }
        if packs.direct.load(Ordering::Relaxed) {
            assert_eq!(resident_bytes(&path), cached_before, "a direct read left pages of the pack cached");
        }
        // A body appended and not synced yet is read back too (the kernel writes it first).
        let late = packs.append(b"not synced yet").unwrap();
        let (buf, range) = packs.read_direct(late).unwrap().unwrap();
        assert_eq!(&buf[range], b"not synced yet");
        // Cut short, as `read`: nothing to open. A pack that is gone: look it up again.
        let beyond = Location { offset: late.offset + 4096, ..late };
        assert_eq!(packs.read_direct(beyond).unwrap().map(|(_, range)| range.len()), Some(0));
        assert_eq!(packs.read_direct(Location { pack: late.pack + 9, ..late }).unwrap(), None);
    }

    #[test]
    fn where_uncached_io_is_refused_packs_fall_back_to_plain_reads_and_writes() {
        // tmpfs has no uncached writes.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else { return };
        let packs = Packs::open(dir.path(), true).unwrap();
        let a = packs.append(b"first body").unwrap();
        let b = packs.append(&[3u8; 100_000]).unwrap();
        packs.sync().unwrap();
        assert!(!packs.uncached.load(Ordering::Relaxed), "tmpfs took an uncached write");
        assert_eq!(packs.read(a).unwrap().unwrap(), b"first body");
        // Reopened, the first uncached read is refused too, and falls back.
        drop(packs);
        let packs = Packs::open(dir.path(), false).unwrap();
        assert_eq!(packs.read(b).unwrap().unwrap(), vec![3u8; 100_000]);
        assert!(!packs.uncached.load(Ordering::Relaxed), "tmpfs took an uncached read");
        // Direct reads work there or fall back to plain ones: the same bytes either way.
        let (buf, range) = packs.read_direct(a).unwrap().unwrap();
        assert_eq!(&buf[range], b"first body");
    }

    #[test]
    fn staging_packs_start_above_a_floor_close_on_demand_and_are_never_continued() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::open(dir.path(), true).unwrap().staging(64, 5);
        assert_eq!(packs.closed_below(), 5);
        let a = packs.append(&[1; 40]).unwrap();
        assert_eq!((a.pack, a.offset), (5, 0));
        assert_eq!(packs.closed_below(), 5, "pack 5 is open");
        // Full at 64 bytes: the next body starts pack 6.
        let b = packs.append(&[2; 40]).unwrap();
        assert_eq!((b.pack, packs.closed_below()), (6, 6));
        packs.wait_for_writes(5);
        assert_eq!(packs.close_tail(), Some(6));
        assert_eq!((packs.close_tail(), packs.closed_below()), (None, 7));
        assert_eq!(packs.append(&[3; 8]).unwrap().pack, 7);
        // Reopened, a new pack is started rather than the last one continued.
        drop(packs);
        let packs = Packs::open(dir.path(), true).unwrap().staging(64, 1);
        assert_eq!(packs.append(&[4; 8]).unwrap().pack, 8);
        assert_eq!(packs.read(b).unwrap().unwrap(), [2; 40]);
    }
}
