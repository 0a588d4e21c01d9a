//! The engine API: the only thing the FUSE and HTTP front-ends call.
//!
//! A `Volume` is one unlocked volume directory: header (key slots), configuration and the
//! RocksDB store. `tree` holds namespace operations, `file` the data path (write windows,
//! chunking, reads with read-ahead), `txn` the atomic change that keeps reference counts
//! and space counters exact. docs/design.md gives the overview.

mod acl;
mod audit;
pub mod backend;
mod check;
pub mod chunks;
mod closing;
mod erase;
pub mod error;
mod extents;
mod faults;
mod file;
mod fingerprint;
mod gc;
pub mod header;
mod hidden;
mod hold;
mod hook;
mod inode_cache;
mod keyslots;
pub mod meta_backup;
mod observer;
mod personal;
pub(crate) mod reclaim;
pub mod records;
mod schedule;
mod snapshot;
mod tokens;
mod trash;
mod tree;
mod txn;
mod uploads;
mod walk;

/// How durable a commit is; the engine's own choice of the store's.
pub use crate::store::Durability;
pub use audit::{AuditEvent, AuditRecord, AuditVerdict};
pub use check::CheckReport;
pub use error::{Error, Result};
pub use extents::{Seek, MAX_COPY};
pub(crate) use faults::crash_point;
pub use file::Handle;
pub use fingerprint::{PathStats, XATTR_FINGERPRINT, XATTR_STATS};
pub use gc::GcReport;
pub use header::{Credential, SlotInfo};
pub use hold::Hold;
pub use hook::{Change, Hook, HookBatch, HookError, HookId, Note};
pub use keyslots::{RekeyReport, RotateReport};
pub use observer::EntryObserver;
pub use personal::ERASED;
pub use reclaim::{ReclaimReason, RECLAIM_SLACK};
pub use records::{Kind, Timestamp};
pub use schedule::ScheduleReport;
pub use snapshot::SnapshotInfo;
pub use tokens::{
    country_code, normalise_prefix, parse_network, Bindings, Permission, TokenInfo, TokenRefusal, TOKEN_PREFIX,
};
pub use trash::{TrashEmptied, TrashItem, TRASH_NAME};
pub use tree::{Attr, DirEntry, RenameMode, SetAttr, SetTime, StatFs, NAME_MAX};
pub use uploads::{plain_hash, Piece, UploadState};

use crate::chunk::{ChunkHasher, ChunkParams, Gear};
use crate::config::{Config, CONFIG_FILE};
use crate::crypto::kdf::Argon2Params;
use crate::crypto::keys::{Keyring, Subkeys};
use crate::ids::Ino;
use crate::store::format::{
    CHUNKER_KEYED, CHUNK_ID_BLAKE2BP, FORMAT_OLDEST, FORMAT_VERSION, META_CHUNKER, META_CHUNK_ID, META_CLEAN,
    META_FORMAT, META_NEXT_INO, META_SNAPSHOTS_DIR, META_SPACE, META_UPLOADS_DIR,
};
use crate::store::keys::{self, SpaceCounters};
use crate::store::{Cf, OpenMode, Store};
use chunks::{ChunkCache, ChunkCodec};
use header::Header;
use records::{Inode, MetaSealer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use txn::{Txn, TxnState};

/// Files whose read position the volume remembers for read-ahead.
const READ_POSITIONS: usize = 4096;

/// Options for opening a volume.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Refuse every change.
    pub read_only: bool,
    /// Decrypted-chunk cache budget in MiB, overriding the configuration.
    pub cache_mb: Option<u32>,
}

/// Space figures of a volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Bytes of file data (holes excluded; a shared chunk counts once per use).
    pub logical_bytes: u64,
    /// Plaintext bytes of distinct chunks.
    pub unique_bytes: u64,
    /// Bytes of distinct chunks as stored (compressed and sealed).
    pub stored_bytes: u64,
    /// Distinct live chunks.
    pub chunks: u64,
    /// Mean plaintext size of a chunk.
    pub mean_chunk_bytes: u64,
    /// `logical_bytes / unique_bytes` (1.0 on an empty volume).
    pub dedup_ratio: f64,
    /// `1 - stored_bytes / logical_bytes`, in percent.
    pub space_saved_percent: f64,
    /// Stored bytes of unreferenced chunks that garbage collection would free.
    pub reclaimable_bytes: u64,
    /// Bytes of RocksDB's files (SST and blob files), all overheads included.
    pub disk_bytes: u64,
    /// The hidden directories of derived data (renditions, thumbnails, incomplete
    /// uploads), each on its own line: their files count in the figures above too. Only
    /// with the key (`Volume::area_stats`); snapshots are not walked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub areas: Vec<AreaStats>,
}

/// The space of one hidden directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaStats {
    /// Its name under the root, e.g. `.renditions`.
    pub name: String,
    /// Its files.
    pub files: u64,
    /// Bytes of its file data.
    pub logical_bytes: u64,
    /// Stored bytes of the distinct chunks it uses.
    pub stored_bytes: u64,
    /// Stored bytes of chunks only it uses: what removing it (and a GC) frees.
    pub exclusive_bytes: u64,
}

/// `logical / unique` (1.0 when nothing is stored) and `1 - stored / logical` in percent:
/// the derived figures of `Stats` and `PathStats`.
fn ratios(logical: u64, unique: u64, stored: u64) -> (f64, f64) {
    let dedup = if unique == 0 { 1.0 } else { logical as f64 / unique as f64 };
    let saved = if logical == 0 { 0.0 } else { 100.0 * (1.0 - stored as f64 / logical as f64) };
    (dedup, saved)
}

impl Stats {
    fn from_counters(c: SpaceCounters, disk_bytes: u64) -> Self {
        let (dedup_ratio, space_saved_percent) = ratios(c.logical_bytes, c.unique_bytes, c.stored_bytes);
        Self {
            logical_bytes: c.logical_bytes,
            unique_bytes: c.unique_bytes,
            stored_bytes: c.stored_bytes,
            chunks: c.chunks,
            mean_chunk_bytes: c.unique_bytes.checked_div(c.chunks).unwrap_or(0),
            dedup_ratio,
            space_saved_percent,
            reclaimable_bytes: c.reclaimable_bytes,
            disk_bytes,
            areas: Vec::new(),
        }
    }
}

/// An open, unlocked volume.
pub struct Volume {
    dir: PathBuf,
    /// `nanofs.toml`; its live keys change on `reload_config`.
    config: RwLock<Arc<Config>>,
    store: Arc<Store>,
    keys: Subkeys,
    meta: MetaSealer,
    chunks: Arc<chunks::Chunks>,
    params: ChunkParams,
    /// Chunked bytes a write window holds before it is committed in part (`file`).
    window_limit: u64,
    read_only: bool,
    txn_state: Mutex<TxnState>,
    /// The unlocked keys; changed by rotation and rekeying (`keyslots`).
    keyring: Mutex<Keyring>,
    files: Mutex<HashMap<Ino, Arc<Mutex<file::FileState>>>>,
    /// Closed files whose commit runs in the background (`closing`).
    closing: closing::Closing,
    opens: Mutex<HashMap<Ino, u32>>,
    /// The next `file::Handle` to hand out.
    next_handle: std::sync::atomic::AtomicU64,
    /// Where the last read of each recently read file ended (read-ahead detects
    /// sequential readers); bounded, since reads over HTTP open no handle to clean up after.
    last_read_end: Mutex<lru::LruCache<Ino, u64>>,
    /// Collections for space (`reclaim`).
    reclaimer: reclaim::Reclaimer,
    /// Extensions changed in the same batch as the namespace (`hook`).
    hooks: RwLock<Vec<Arc<hook::Registered>>>,
    /// Hidden directories of the root (`hidden`).
    hidden: RwLock<Vec<hidden::Hidden>>,
    /// Decoded inode records (`inode_cache`).
    inodes: inode_cache::InodeCache,
    /// Told of entries changed outside the mount (`observer`).
    entry_observer: std::sync::OnceLock<EntryObserver>,
    /// Directories under a legal hold (`hold`).
    holds: RwLock<std::collections::HashSet<Ino>>,
    /// The trash's ids and path cache (`trash`).
    trash: trash::TrashState,
}

impl Volume {
    /// Creates a volume in `dir` (which must not exist or be empty) protected by `passphrase`.
    pub fn init(dir: &Path, passphrase: &[u8], kdf: Argon2Params) -> Result<()> {
        Self::init_on(dir, passphrase, kdf, &crate::config::StoreSection::default())
    }

    /// `init`, with chunk bodies kept where `store` says (an object store's bucket must
    /// hold nothing under the volume's prefix yet).
    pub fn init_on(
        dir: &Path,
        passphrase: &[u8],
        kdf: Argon2Params,
        store: &crate::config::StoreSection,
    ) -> Result<()> {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(Error::NotAVolume(format!("{} exists and is not empty", dir.display())));
        }
        // The object store is checked first: a wrong key, an unreachable store or a prefix
        // in use leaves nothing behind.
        let backend = backend::backend(store, dir)?;
        if let crate::store::Backend::Object(settings) = &backend {
            let bucket = crate::store::bucket::Bucket::connect(settings.bucket.clone())?;
            if let Some((name, _)) = bucket.list("")?.first() {
                return Err(Error::NotAVolume(format!(
                    "bucket {} already holds {name:?} under the prefix {:?}: give this volume a prefix of its own \
                     (--s3-prefix), or restore the volume there with nanofs meta restore",
                    settings.bucket.bucket, settings.bucket.prefix
                )));
            }
        }
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        std::fs::write(dir.join(CONFIG_FILE), backend::with_store_section(&Config::default_file_text(), store))?;
        let (header, keyring) = Header::create(passphrase, kdf)?;
        let store = Store::create(dir, &backend)?;
        let subkeys = keyring.root().subkeys();
        let meta = MetaSealer::new(subkeys.meta_seal.clone());
        let mut root = Inode::new(Kind::Dir, 0o755, nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        root.parent = Ino::ROOT.0;
        let mut batch = store.batch();
        let root_key = keys::ino_key(Ino::ROOT);
        batch.put(Cf::Inodes, &root_key, &meta.seal(Cf::Inodes.name(), &root_key, &root.encode()));
        batch.put(Cf::Meta, META_FORMAT, &FORMAT_VERSION.to_be_bytes());
        batch.put(Cf::Meta, META_CHUNKER, &CHUNKER_KEYED.to_be_bytes());
        batch.put(Cf::Meta, META_CHUNK_ID, &CHUNK_ID_BLAKE2BP.to_be_bytes());
        batch.put(Cf::Meta, META_NEXT_INO, &2u64.to_be_bytes());
        batch.put(Cf::Meta, META_SPACE, &SpaceCounters::default().encode());
        batch.put(Cf::Meta, META_CLEAN, &[]);
        store.commit(batch, Durability::Synced)?;
        store.flush_all()?;
        // The header goes last: a directory with a header is a complete volume.
        header.store(dir)?;
        Ok(())
    }

    /// Unwraps the keys of the volume in `dir` with a passphrase or identity.
    pub fn unlock(dir: &Path, cred: &Credential) -> Result<Keyring> {
        Ok(Header::load(dir)?.unlock(cred)?.0)
    }

    /// Opens the volume in `dir` with its keys.
    pub fn open(dir: &Path, keyring: Keyring, opts: &OpenOptions) -> Result<Self> {
        Header::load(dir)?;
        crate::threads::start_pool();
        let config = Config::load(&dir.join(CONFIG_FILE)).map_err(|e| Error::NotAVolume(e.to_string()))?;
        let mode = if opts.read_only { OpenMode::ReadOnly } else { OpenMode::ReadWrite };
        let store = Arc::new(Store::open_with(dir, mode, &backend::backend(&config.store, dir)?)?);
        let format = store.get(Cf::Meta, META_FORMAT)?.and_then(|v| v.try_into().ok()).map(u32::from_be_bytes);
        match format {
            Some(v) if (FORMAT_OLDEST..=FORMAT_VERSION).contains(&v) => {}
            Some(v) => {
                return Err(Error::NotAVolume(format!(
                    "database format {v}; this nanofs reads {FORMAT_OLDEST} to {FORMAT_VERSION}"
                )))
            }
            None => return Err(Error::NotAVolume("database has no format version".into())),
        }
        let next_ino = store
            .get(Cf::Meta, META_NEXT_INO)?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| Error::CorruptMeta("inode counter missing".into()))?;
        let space = store
            .get(Cf::Meta, META_SPACE)?
            .and_then(|v| SpaceCounters::decode(&v))
            .ok_or_else(|| Error::CorruptMeta("space counters missing".into()))?;
        let keys = keyring.root().subkeys();
        let gear = match store.get(Cf::Meta, META_CHUNKER)?.as_deref() {
            None => Gear::Public,
            Some(v) if v == CHUNKER_KEYED.to_be_bytes() => Gear::keyed(&keys.chunker),
            Some(v) => return Err(Error::NotAVolume(format!("unknown chunker {}", crate::ids::hex(v)))),
        };
        let hasher = match store.get(Cf::Meta, META_CHUNK_ID)?.as_deref() {
            None => ChunkHasher::new(keys.chunk_id),
            Some(v) if v == CHUNK_ID_BLAKE2BP.to_be_bytes() => ChunkHasher::parallel(keys.chunk_id),
            Some(v) => return Err(Error::NotAVolume(format!("unknown chunk id hash {}", crate::ids::hex(v)))),
        };
        let d = &config.media.deduplication;
        let codec = ChunkCodec::new(hasher, &keyring, config.storage.compression, config.storage.compression_level);
        let cache_mb = opts.cache_mb.unwrap_or(config.storage.cache_mb);
        let vol = Self {
            dir: dir.to_path_buf(),
            config: RwLock::new(Arc::new(config.clone())),
            meta: MetaSealer::new(keys.meta_seal.clone()),
            chunks: Arc::new(chunks::Chunks::new(store.clone(), codec, ChunkCache::new(cache_mb as usize * (1 << 20)))),
            store,
            keys,
            params: ChunkParams::from_kib(d.min_chunk_size_kb, d.avg_chunk_size_kb, d.max_chunk_size_kb)
                .with_gear(gear),
            window_limit: u64::from(config.storage.write_window_mb) << 20,
            read_only: opts.read_only,
            txn_state: Mutex::new(TxnState { next_ino, space }),
            keyring: Mutex::new(keyring),
            files: Mutex::new(HashMap::new()),
            closing: closing::Closing::default(),
            opens: Mutex::new(HashMap::new()),
            next_handle: std::sync::atomic::AtomicU64::new(1),
            last_read_end: Mutex::new(lru::LruCache::new(READ_POSITIONS.try_into().expect("non-zero"))),
            reclaimer: reclaim::Reclaimer::default(),
            hooks: RwLock::default(),
            hidden: RwLock::default(),
            inodes: inode_cache::InodeCache::default(),
            entry_observer: std::sync::OnceLock::new(),
            holds: RwLock::default(),
            trash: trash::TrashState::default(),
        };
        vol.load_holds()?;
        vol.register_hidden(snapshot::SNAPSHOTS_NAME, META_SNAPSHOTS_DIR);
        vol.register_hidden(uploads::UPLOADS_NAME, META_UPLOADS_DIR);
        vol.register_hidden(trash::TRASH_NAME, crate::store::format::META_TRASH_DIR);
        if !vol.read_only {
            vol.reclaim_orphans()?;
            if !vol.store.contains(Cf::Meta, META_CLEAN)? {
                vol.sweep_unreferenced_bodies()?;
            }
            let mut batch = vol.store.batch();
            batch.delete(Cf::Meta, META_CLEAN);
            if format != Some(FORMAT_VERSION) {
                batch.put(Cf::Meta, META_FORMAT, &FORMAT_VERSION.to_be_bytes());
            }
            vol.store.commit(batch, Durability::Synced)?;
        }
        Ok(vol)
    }

    /// Space figures from the database alone, without a key (works on a volume that is
    /// not mounted; `OpenMode::ReadOnly` takes no lock).
    pub fn offline_stats(dir: &Path) -> Result<Stats> {
        Header::load(dir)?;
        let config = Config::load(&dir.join(CONFIG_FILE)).map_err(|e| Error::NotAVolume(e.to_string()))?;
        let store = Store::open_with(dir, OpenMode::ReadOnly, &backend::backend(&config.store, dir)?)?;
        let space = store
            .get(Cf::Meta, META_SPACE)?
            .and_then(|v| SpaceCounters::decode(&v))
            .ok_or_else(|| Error::CorruptMeta("space counters missing".into()))?;
        Ok(Stats::from_counters(space, store.disk_bytes()?))
    }

    /// The volume directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The volume's configuration (`nanofs.toml`) in force now. Read it where it is
    /// used, not once at start, so a reload's live keys take effect.
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config").clone()
    }

    /// Reads `nanofs.toml` again and puts its live keys in force (`Config::reloaded`); an
    /// invalid file changes nothing.
    pub fn reload_config(&self) -> std::result::Result<crate::config::Reload, crate::config::ConfigError> {
        let new = Config::load(&self.dir.join(CONFIG_FILE))?;
        let mut current = self.config.write().expect("config");
        let reload = current.reloaded(&new)?;
        *current = Arc::new(reload.config.clone());
        tracing::info!(applied = ?reload.applied, kept = ?reload.kept, "configuration reloaded");
        Ok(reload)
    }

    /// The secret that places chunk boundaries, hex; `None` for a volume that uses FastCDC's
    /// public table. A transfer client that may write needs it to cut a delta push where
    /// the volume cuts.
    #[must_use]
    pub fn chunker_key_hex(&self) -> Option<String> {
        matches!(self.params.gear, Gear::Keyed(_)).then(|| crate::ids::hex(self.keys.chunker.as_ref()))
    }

    /// Whether the volume refuses changes.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Current space figures.
    pub fn stats(&self) -> Result<Stats> {
        self.wait_for_closed_commits();
        let space = self.txn_state.lock().expect("commit lock").space;
        Ok(Stats::from_counters(space, self.store.disk_bytes()?))
    }

    /// Makes everything written so far durable (FUSE `syncfs`; Linux sends it to virtiofs
    /// only, so `sync` on a mount does not reach here): closed files handed to the
    /// committer and the windows of open files are committed first.
    pub fn sync_all(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.wait_for_closed_commits();
        self.commit_all_windows()?;
        self.sync()
    }

    /// Commits every open write window and flushes the database: a clean shutdown.
    pub fn close(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.stop_committer();
        let result = self.commit_all_windows();
        self.store.flush_all()?;
        if result.is_ok() {
            let mut batch = self.store.batch();
            batch.put(Cf::Meta, META_CLEAN, &[]);
            self.store.commit(batch, Durability::Synced)?;
        }
        result
    }

    /// Commits the write windows of every open file (before a close or a snapshot).
    fn commit_all_windows(&self) -> Result<()> {
        let files: Vec<(Ino, Arc<Mutex<file::FileState>>)> =
            self.files.lock().expect("files lock").iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut first_err = None;
        for (ino, state) in files {
            let mut st = state.lock().expect("file lock");
            if let Err(e) = self.commit_window(ino, &mut st, Durability::Buffered) {
                tracing::error!(inode = %ino, error = %e, "could not commit a file at close");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn txn(&self) -> Result<Txn<'_>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(Txn::new(self))
    }

    fn load_inode(&self, ino: Ino) -> Result<Inode> {
        let generation = match self.inodes.get(ino) {
            Ok(inode) => return Ok(inode),
            Err(generation) => generation,
        };
        let key = keys::ino_key(ino);
        let sealed = self.store.get(Cf::Inodes, &key)?.ok_or(Error::NotFound)?;
        let inode = Inode::decode(&self.meta.open(Cf::Inodes.name(), &key, &sealed)?)?;
        self.inodes.fill(ino, &inode, generation);
        Ok(inode)
    }

    /// Purges inodes that were unlinked while open when the daemon stopped.
    fn reclaim_orphans(&self) -> Result<()> {
        let orphans: Vec<Ino> = self
            .store
            .scan(Cf::Orphans, &[], &[])
            .filter_map(|kv| kv.ok().and_then(|(k, _)| Ino::from_key(&k)))
            .collect();
        for ino in orphans {
            let mut txn = self.txn()?;
            match txn.inode(ino) {
                Ok(i) if i.nlink == 0 => txn.delete_inode(ino)?,
                Ok(_) | Err(Error::NotFound) => txn.batch.delete(Cf::Orphans, &keys::ino_key(ino)),
                Err(e) => return Err(e),
            }
            txn.commit(Durability::Buffered)?;
        }
        Ok(())
    }
}

/// A volume in a temporary directory, for the engine's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::{OpenOptions, Volume};

    pub(crate) fn scratch_volume() -> (tempfile::TempDir, Volume) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        Volume::init(&dir, b"unit-test", crate::crypto::kdf::Argon2Params::TEST_ONLY).unwrap();
        let keys = Volume::unlock(&dir, &super::Credential::Passphrase(b"unit-test".to_vec().into())).unwrap();
        let vol = Volume::open(&dir, keys, &OpenOptions::default()).unwrap();
        (tmp, vol)
    }
}
