//! RocksDB storage: column families, key layouts, atomic batches. Bytes only.
//!
//! The store never sees plaintext or keys: chunk bodies arrive sealed, metadata records
//! arrive sealed, and the only unsealed values are ids, offsets, lengths and counters
//! (docs/format.md lists every key and value). Durability is the caller's choice per
//! batch: `Durability::Synced` syncs the write-ahead log before returning.

pub mod bucket;
mod faults;
pub mod format;
pub mod keys;
pub mod object;
pub mod packs;

use keys::RefRecord;
use packs::{Location, Packs};
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamilyDescriptor, CompactOptions, DBCompressionType,
    Direction, FlushOptions, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk is full.
    #[error("no space left on the device holding the volume")]
    NoSpace,
    /// Another process holds the database open.
    #[error("the volume database is in use by another process")]
    Locked,
    /// The directory holds no database, or one with missing column families.
    #[error("no nanofs database at {0}")]
    Missing(PathBuf),
    /// Any other RocksDB error.
    #[error("database error: {0}")]
    Db(String),
    /// Reading or writing a pack file failed.
    #[error("pack file: {0}")]
    Io(std::io::Error),
    /// The object store failed or could not be reached in the configured time.
    #[error("object store: {0}")]
    Remote(String),
    /// The object store has no such object.
    #[error("object store: no such object")]
    RemoteMissing,
}

/// Where chunk bodies are kept: the one interface of the two backends, local pack files
/// (`packs`, the default) and packs in an S3-compatible object store (`object`). Both hold
/// only sealed bytes and give the same guarantees: a body is durable once `sync` returns
/// after its `append`, and is read back by its `Location`.
pub trait PackStore: Send + Sync {
    /// Appends a sealed body; it is durable once `sync` returns.
    fn append(&self, body: &[u8]) -> Result<Location>;
    /// Makes every body appended before this call durable.
    fn sync(&self) -> Result<()>;
    /// The body at `loc`; `None` if its pack is gone (moved by garbage collection after
    /// the caller looked the location up: look it up again).
    fn read(&self, loc: Location) -> Result<Option<Vec<u8>>>;
    /// `read` around the page cache, as `(buf, range)` with the body at `buf[range]`:
    /// for a reader whose plaintext is cached elsewhere (`Bodies::Uncached`). A store on
    /// a local disk reads it with `O_DIRECT` (`Packs::read_direct`).
    fn read_direct(&self, loc: Location) -> Result<Option<(Vec<u8>, std::ops::Range<usize>)>> {
        Ok(self.read(loc)?.map(whole))
    }
    /// Closes the pack being filled and returns the pack that new bodies go to from now
    /// on: every pack below it is closed.
    fn rotate(&self) -> Result<u32>;
    /// Every pack and its size, in pack order.
    fn list(&self) -> Result<Vec<(u32, u64)>>;
    /// Deletes a pack that no location points into any more.
    fn delete(&self, pack: u32) -> Result<()>;
    /// Bytes of all packs where they are kept.
    fn stored_bytes(&self) -> Result<u64>;
    /// A hint that the body at `loc` will be read soon: a store on a local disk starts
    /// reading it, so that several bodies are in flight at once.
    fn will_read(&self, _loc: Location) {}
    /// Drops a local copy of `pack` that failed to open, so the next read fetches it
    /// again; false when there is no other copy to read.
    fn drop_cached(&self, _pack: u32) -> bool {
        false
    }
    /// The local file of a pack (for tools and tests that inspect bodies where they lie).
    fn pack_path(&self, pack: u32) -> PathBuf;
    /// The object store's bucket, for a backend that has one.
    fn bucket(&self) -> Option<&bucket::Bucket> {
        None
    }
}

/// How a reader takes chunk bodies from the packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Through the page cache, where the bodies read ahead (`will_read`) stay: for the
    /// engine's other readers (media probes and packaging, renders, bundles, tools). A
    /// page that the read itself brings in leaves the cache once copied (`Packs::read`).
    KeepCached,
    /// Around the page cache (`PackStore::read_direct`): for the mount, whose plaintext
    /// the kernel caches, and for downloads and the integrity check, which read each byte
    /// once. Hot plaintext stays in the engine's chunk cache (`storage.cache_mb`).
    Uncached,
}

/// `buf` as a read result whose body is all of it: `(buf, 0..buf.len())`.
pub fn whole(buf: Vec<u8>) -> (Vec<u8>, std::ops::Range<usize>) {
    let len = buf.len();
    (buf, 0..len)
}

/// A sealed chunk body as the store hands it to `with_chunk`'s caller.
pub enum Sealed<'a> {
    /// Stored inline: borrowed where the database holds it.
    Inline(&'a [u8]),
    /// Read from a pack into `buf`, where it lies at `body`.
    Packed { buf: Vec<u8>, body: std::ops::Range<usize> },
}

impl Sealed<'_> {
    /// The body alone, as an owned buffer.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Sealed::Inline(body) => body.to_vec(),
            Sealed::Packed { buf, body } if body.start == 0 && body.end == buf.len() => buf,
            Sealed::Packed { buf, body } => buf[body].to_vec(),
        }
    }
}

/// Which backend keeps the chunk bodies of a volume.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Pack files beside the database.
    Local,
    /// An S3-compatible object store.
    Object(object::ObjectSettings),
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        let text = e.into_string();
        if text.contains("No space left") || text.contains("ENOSPC") {
            Error::NoSpace
        } else if text.contains("lock") && (text.contains("LOCK") || text.contains("Resource temporarily unavailable"))
        {
            Error::Locked
        } else {
            Error::Db(text)
        }
    }
}

/// A file-system error of pack files, a full disk told apart.
fn io_error(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        Error::NoSpace
    } else {
        Error::Io(e)
    }
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// The column families. The names are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Volume-wide values: format version, inode counter, space counters.
    Meta,
    /// Inode number → sealed inode record.
    Inodes,
    /// Parent inode + keyed name hash → sealed directory entry.
    Dirents,
    /// Inode + file offset → chunk id + length.
    Extents,
    /// Chunk id → sealed chunk envelope of a body not kept in a pack (kept in blob files,
    /// out of compaction).
    Chunks,
    /// Chunk id → reference count, sizes, and the body's location if it is in a pack.
    Refs,
    /// Inode + keyed name hash → sealed extended attribute.
    Xattrs,
    /// Inode → sealed symlink target.
    Symlinks,
    /// Inodes unlinked while open, reclaimed on release or at the next mount.
    Orphans,
}

impl Cf {
    /// Every column family, in creation order.
    pub const ALL: [Cf; 9] =
        [Cf::Meta, Cf::Inodes, Cf::Dirents, Cf::Extents, Cf::Chunks, Cf::Refs, Cf::Xattrs, Cf::Symlinks, Cf::Orphans];

    /// The RocksDB name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Inodes => "inodes",
            Cf::Dirents => "dirents",
            Cf::Extents => "extents",
            Cf::Chunks => "chunks",
            Cf::Refs => "refs",
            Cf::Xattrs => "xattrs",
            Cf::Symlinks => "symlinks",
            Cf::Orphans => "orphans",
        }
    }
}

/// How durable a committed batch must be when `commit` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the write-ahead log, which survives a crash of the process but not of the machine.
    Buffered,
    /// The write-ahead log is synced: survives power loss.
    Synced,
}

/// Whether to open for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Exclusive, read-write (takes RocksDB's lock).
    ReadWrite,
    /// Read-only; works beside a running writer and sees its flushed state.
    ReadOnly,
}

/// A key and its value, as RocksDB hands them out.
pub type Pair = (Box<[u8]>, Box<[u8]>);

/// The RocksDB database of one volume.
pub struct Store {
    db: DB,
    packs: Box<dyn PackStore>,
    read_only: bool,
}

/// Memtable size of the chunk column family: the bodies stored inline (through the WAL)
/// wait here until a flush moves them into a blob file.
const CHUNK_MEMTABLE: usize = 16 << 20;
const CHUNK_MEMTABLES: i32 = 3;

fn db_options(create: bool) -> Options {
    let mut o = Options::default();
    o.create_if_missing(create);
    o.create_missing_column_families(create);
    // RocksDB gives a quarter of the background jobs to flushes: eight jobs make two flush
    // threads, so one flush syncing its blob file does not stall the next.
    o.set_max_background_jobs(8);
    o.set_bytes_per_sync(1 << 20);
    // RocksDB's own info log: enough to diagnose, never a noticeable share of the volume.
    o.set_keep_log_file_num(2);
    o.set_max_log_file_size(1 << 20);
    o.set_max_total_wal_size(64 << 20);
    o
}

fn cf_options(cf: Cf, cache: &Cache) -> Options {
    let mut o = Options::default();
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    o.set_block_based_table_factory(&table);
    // Values are sealed (random-looking) or tiny: compression would only cost CPU.
    o.set_compression_type(DBCompressionType::None);
    if cf == Cf::Chunks {
        // BlobDB: bodies go to blob files at flush and are not rewritten by compaction,
        // so a stored video is written to disk once.
        o.set_enable_blob_files(true);
        o.set_min_blob_size(0);
        o.set_blob_file_size(256 << 20);
        o.set_blob_compression_type(DBCompressionType::None);
        // No blob GC during normal compactions: it would relocate live media (rewriting it);
        // garbage collection of the volume reclaims blob files explicitly.
        o.set_enable_blob_gc(false);
        o.set_write_buffer_size(CHUNK_MEMTABLE);
        o.set_max_write_buffer_number(CHUNK_MEMTABLES);
    } else {
        o.set_write_buffer_size(8 << 20);
        o.set_max_write_buffer_number(2);
    }
    o
}

/// See `Store::scan_from_floor`.
pub struct PrefixScan<'a> {
    it: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    prefix: Vec<u8>,
    started: bool,
    failed: bool,
}

impl Iterator for PrefixScan<'_> {
    type Item = Result<(Box<[u8]>, Box<[u8]>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if std::mem::replace(&mut self.started, true) {
            self.it.next();
        }
        match (self.it.key(), self.it.value()) {
            (Some(k), Some(v)) if k.starts_with(&self.prefix) => Some(Ok((k.into(), v.into()))),
            (Some(_), _) => None,
            _ => {
                let status = self.it.status().err()?;
                self.failed = true;
                Some(Err(status.into()))
            }
        }
    }
}

impl Store {
    /// Creates a new, empty database in `dir/db`, with its bodies kept by `backend`.
    pub fn create(dir: &Path, backend: &Backend) -> Result<Self> {
        Self::open_at(dir, OpenMode::ReadWrite, true, backend)
    }

    /// Opens the database in `dir/db`, with local packs.
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Self> {
        Self::open_with(dir, mode, &Backend::Local)
    }

    /// Opens the database in `dir/db`, with its bodies kept by `backend`.
    pub fn open_with(dir: &Path, mode: OpenMode, backend: &Backend) -> Result<Self> {
        if !dir.join("db").join("CURRENT").exists() {
            return Err(Error::Missing(dir.to_path_buf()));
        }
        Self::open_at(dir, mode, false, backend)
    }

    fn open_at(dir: &Path, mode: OpenMode, create: bool, backend: &Backend) -> Result<Self> {
        let path = dir.join("db");
        let cache = Cache::new_lru_cache(16 << 20);
        let cfs = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(*cf, &cache)));
        let opts = db_options(create);
        let db = match mode {
            OpenMode::ReadWrite => DB::open_cf_descriptors(&opts, &path, cfs)?,
            OpenMode::ReadOnly => DB::open_cf_descriptors_read_only(&opts, &path, cfs, false)?,
        };
        let writable = mode == OpenMode::ReadWrite;
        let packs: Box<dyn PackStore> = match backend {
            Backend::Local => Box::new(Packs::open(&dir.join("packs"), writable)?),
            Backend::Object(settings) => Box::new(object::ObjectPacks::open(&dir.join("packs"), writable, settings)?),
        };
        Ok(Self { db, packs, read_only: mode == OpenMode::ReadOnly })
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(cf.name()).expect("every column family is opened")
    }

    /// Point lookup.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Runs `f` on a sealed chunk body: a packed one owned as read from its pack (to be
    /// decrypted where it lies), read as `bodies` says, an inline one borrowed where
    /// RocksDB holds it, neither copied. RocksDB's own block checksum is skipped: the
    /// envelope's AEAD tag authenticates every byte anyway, and the CRC cost 4 % of a
    /// read's CPU.
    pub fn with_chunk<R>(&self, id: &[u8], bodies: Bodies, f: impl FnOnce(Sealed<'_>) -> R) -> Result<Option<R>> {
        // Looked up again only if garbage collection moved the body to another pack
        // between the lookup and the read.
        for _ in 0..2 {
            match self.chunk_location(id)? {
                Some(loc) => {
                    let read = match bodies {
                        Bodies::KeepCached => self.packs.read(loc)?.map(whole),
                        Bodies::Uncached => self.packs.read_direct(loc)?,
                    };
                    if let Some((buf, body)) = read {
                        return Ok(Some(f(Sealed::Packed { buf, body })));
                    }
                }
                None => {
                    let mut ro = ReadOptions::default();
                    ro.set_verify_checksums(false);
                    return Ok(self.db.get_pinned_cf_opt(self.cf(Cf::Chunks), id, &ro)?.map(|v| f(Sealed::Inline(&v))));
                }
            }
        }
        Ok(None)
    }

    /// A hint that the chunk `id` will be read soon (see `PackStore::will_read`).
    pub fn will_read_chunk(&self, id: &[u8]) -> Result<()> {
        if let Some(loc) = self.chunk_location(id)? {
            self.packs.will_read(loc);
        }
        Ok(())
    }

    /// Where a packed chunk body lies (`None`: not stored, or stored inline).
    pub fn chunk_location(&self, id: &[u8]) -> Result<Option<Location>> {
        Ok(self.db.get_pinned_cf(self.cf(Cf::Refs), id)?.and_then(|v| RefRecord::decode(&v)).and_then(|r| r.location))
    }

    /// Where the chunk bodies are kept.
    #[must_use]
    pub fn packs(&self) -> &dyn PackStore {
        self.packs.as_ref()
    }

    /// A sealed chunk body.
    pub fn get_chunk(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_chunk(id, Bodies::KeepCached, |body| body.into_vec())
    }

    /// Whether `key` exists (reads the value; chunk bodies should use `refs`).
    pub fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key)?.is_some())
    }

    /// Key-value pairs whose key starts with `prefix`, from `start` (inclusive) on.
    /// Every key of `cf`. (The iterator may still load blob values: this is for rare
    /// sweeps, such as after a crash.)
    pub fn scan_keys(&self, cf: Cf) -> Result<Vec<Box<[u8]>>> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf));
        it.seek_to_first();
        let mut keys = Vec::new();
        while let Some(k) = it.key() {
            keys.push(k.into());
            it.next();
        }
        it.status()?;
        Ok(keys)
    }

    pub fn scan(&self, cf: Cf, prefix: &[u8], start: &[u8]) -> impl Iterator<Item = Result<Pair>> + '_ {
        let prefix = prefix.to_vec();
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(start, Direction::Forward))
            .map(|r| r.map_err(Error::from))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
    }

    /// The last pair with key `<= key` that still starts with `prefix`.
    pub fn floor(&self, cf: Cf, prefix: &[u8], key: &[u8]) -> Result<Option<Pair>> {
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ReadOptions::default());
        it.seek_for_prev(key);
        if it.valid() {
            let k = it.key().expect("valid iterator has a key");
            if k.starts_with(prefix) {
                return Ok(Some((k.into(), it.value().expect("valid iterator has a value").into())));
            }
        }
        it.status()?;
        Ok(None)
    }

    /// The pairs starting with `prefix`, in key order, from the last one with key `<= key`
    /// (or, if there is none, the first after it): one iterator where `floor` and `scan`
    /// take two, which a small file's commit pays for several times.
    pub fn scan_from_floor(&self, cf: Cf, prefix: &[u8], key: &[u8]) -> PrefixScan<'_> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf));
        it.seek_for_prev(key);
        if !it.key().is_some_and(|k| k.starts_with(prefix)) {
            it.seek(key);
        }
        PrefixScan { it, prefix: prefix.to_vec(), started: false, failed: false }
    }

    /// An empty atomic batch.
    #[must_use]
    pub fn batch(&self) -> Batch<'_> {
        Batch { store: self, wb: WriteBatch::default() }
    }

    /// Applies `batch` atomically.
    pub fn commit(&self, batch: Batch<'_>, durability: Durability) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Synced);
        faults::fail(faults::Op::Commit)?;
        if durability == Durability::Synced {
            faults::fail(faults::Op::WalSync)?;
        }
        self.db.write_opt(batch.wb, &wo)?;
        Ok(())
    }

    /// Appends a sealed chunk body to a pack. Contract: it is durable only after
    /// `sync_bodies` returns, and no `refs` record may point at it in a batch committed
    /// before then.
    pub fn append_body(&self, sealed: &[u8]) -> Result<Location> {
        self.packs.append(sealed)
    }

    /// Makes every body appended so far durable.
    pub fn sync_bodies(&self) -> Result<()> {
        self.packs.sync()
    }

    /// Replaces the body of stored chunk `id` (re-sealed under another key) where it is
    /// kept: a packed body goes to a new place in a pack, synced before its record points
    /// there. Returns false if the chunk is not stored. The caller keeps every other change
    /// to the chunk's records out meanwhile.
    pub fn replace_chunk_body(&self, id: &[u8], sealed: &[u8]) -> Result<bool> {
        let Some(mut rec) = self.get(Cf::Refs, id)?.and_then(|v| RefRecord::decode(&v)) else {
            return Ok(false);
        };
        let mut batch = self.batch();
        if rec.location.is_some() {
            rec.location = Some(self.append_body(sealed)?);
            self.sync_bodies()?;
            batch.put(Cf::Refs, id, &rec.encode());
        } else {
            batch.put(Cf::Chunks, id, sealed);
        }
        self.commit(batch, Durability::Buffered)?;
        Ok(true)
    }

    /// Deletes a pack that no location points into any more, unless the newest metadata
    /// backup in the object store may still point into it: such a pack is recorded as
    /// doomed and deleted by the next backup (`take_doomed_packs`), so that a volume
    /// restored from the newest backup never misses a pack.
    pub fn delete_pack(&self, pack: u32) -> Result<()> {
        if self.packs.bucket().is_some() && self.get(Cf::Meta, format::META_BACKUP_NEWEST)?.is_some() {
            let mut batch = self.batch();
            batch.put(Cf::Meta, &doomed_key(pack), &[]);
            return self.commit(batch, Durability::Synced);
        }
        self.packs.delete(pack)
    }

    /// The packs waiting for the next metadata backup to be deleted.
    pub fn doomed_packs(&self) -> Result<std::collections::BTreeSet<u32>> {
        let mut doomed = std::collections::BTreeSet::new();
        for kv in self.scan(Cf::Meta, format::META_DOOMED_PACK, format::META_DOOMED_PACK) {
            let (k, _) = kv?;
            if let Some(n) = k.get(format::META_DOOMED_PACK.len()..).and_then(|b| b.try_into().ok()) {
                doomed.insert(u32::from_be_bytes(n));
            }
        }
        Ok(doomed)
    }

    /// Records that a metadata backup named `name` is being taken: from now on emptied
    /// packs are kept until the next one.
    pub fn backup_started(&self, name: &str) -> Result<()> {
        let mut batch = self.batch();
        batch.put(Cf::Meta, format::META_BACKUP_NEWEST, name.as_bytes());
        self.commit(batch, Durability::Synced)
    }

    /// After a metadata backup that points into none of `doomed` was stored: deletes them.
    pub fn backed_up(&self, doomed: &std::collections::BTreeSet<u32>) -> Result<()> {
        for pack in doomed {
            self.packs.delete(*pack)?;
            let mut batch = self.batch();
            batch.delete(Cf::Meta, &doomed_key(*pack));
            self.commit(batch, Durability::Synced)?;
        }
        Ok(())
    }

    /// A consistent copy of the database in `dir` (which must not exist): hard links to
    /// its immutable files where the file system allows, after a flush.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Syncs the write-ahead log: every batch committed so far becomes durable.
    pub fn sync_wal(&self) -> Result<()> {
        faults::fail(faults::Op::WalSync)?;
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Writes the chunk memtable to blob files and syncs them.
    fn flush_chunks(&self) -> Result<()> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cf_opt(self.cf(Cf::Chunks), &fo)?;
        Ok(())
    }

    /// After chunk bodies were deleted: compacts the chunk family with blob garbage
    /// collection switched on for this run, so blob files of deleted bodies are dropped and
    /// partly dead ones rewritten. Normal compactions leave blob files alone.
    pub fn reclaim_chunk_space(&self) -> Result<()> {
        let cf = self.cf(Cf::Chunks);
        self.flush_chunks()?;
        self.db.set_options_cf(
            cf,
            &[("enable_blob_garbage_collection", "true"), ("blob_garbage_collection_age_cutoff", "1.0")],
        )?;
        let mut co = CompactOptions::default();
        co.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        self.db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &co);
        self.db.set_options_cf(cf, &[("enable_blob_garbage_collection", "false")])?;
        Ok(())
    }

    /// Compacts the metadata families, dropping the tombstones of deleted records: after a
    /// large deletion and GC, the database returns to its empty size.
    pub fn compact_metadata(&self) -> Result<()> {
        let mut co = CompactOptions::default();
        co.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        for cf in Cf::ALL.into_iter().filter(|c| *c != Cf::Chunks) {
            self.db.flush_cf(self.cf(cf))?;
            self.db.compact_range_cf_opt(self.cf(cf), None::<&[u8]>, None::<&[u8]>, &co);
        }
        Ok(())
    }

    /// Flushes every memtable and syncs the WAL (clean shutdown).
    pub fn flush_all(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        let cfs: Vec<_> = Cf::ALL.iter().map(|c| self.cf(*c)).collect();
        self.db.flush_cfs_opt(&cfs, &fo)?;
        self.db.flush_wal(true)?;
        self.packs.sync()
    }

    /// Bytes of pack files, live blob files and SST files of all column families.
    pub fn disk_bytes(&self) -> Result<u64> {
        let mut total = self.packs.stored_bytes()?;
        for cf in Cf::ALL {
            for prop in ["rocksdb.total-sst-files-size", "rocksdb.total-blob-file-size"] {
                total += self.db.property_int_value_cf(self.cf(cf), prop)?.unwrap_or(0);
            }
        }
        Ok(total)
    }
}

fn doomed_key(pack: u32) -> Vec<u8> {
    [format::META_DOOMED_PACK, &pack.to_be_bytes()].concat()
}

/// An atomic group of writes, applied by `Store::commit`.
pub struct Batch<'a> {
    store: &'a Store,
    wb: WriteBatch,
}

impl Batch<'_> {
    /// Sets `key` to `value`.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.wb.put_cf(self.store.cf(cf), key, value);
    }

    /// Removes `key`.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.wb.delete_cf(self.store.cf(cf), key);
    }

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(scan: PrefixScan<'_>) -> Vec<Vec<u8>> {
        scan.map(|kv| kv.expect("scan").0.to_vec()).collect()
    }

    #[test]
    fn scan_from_floor_starts_at_the_last_key_at_or_below_and_stays_in_its_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path(), &Backend::Local).expect("create");
        let mut batch = store.batch();
        for k in [&b"a5"[..], b"b1", b"b4", b"b7", b"c2"] {
            batch.put(Cf::Extents, k, b"v");
        }
        store.commit(batch, Durability::Buffered).expect("commit");
        let scan = |prefix: &[u8], key: &[u8]| keys_of(store.scan_from_floor(Cf::Extents, prefix, key));
        // Between two keys: from the lower one.
        assert_eq!(scan(b"b", b"b5"), [b"b4".to_vec(), b"b7".to_vec()]);
        // Exactly on a key: from it.
        assert_eq!(scan(b"b", b"b4"), [b"b4".to_vec(), b"b7".to_vec()]);
        // Below the prefix's first key, with another prefix's key below: from the first.
        assert_eq!(scan(b"b", b"b0"), [b"b1".to_vec(), b"b4".to_vec(), b"b7".to_vec()]);
        // Past the prefix's last key: that key alone, not the next prefix's.
        assert_eq!(scan(b"b", b"b9"), [b"b7".to_vec()]);
        // Nothing below at all, and an empty prefix range.
        assert_eq!(scan(b"a", b"a0"), [b"a5".to_vec()]);
        assert!(scan(b"d", b"d5").is_empty());
    }
}
