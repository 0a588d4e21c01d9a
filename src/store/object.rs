//! Chunk bodies in an S3-compatible object store: packs of many sealed bodies, one object
//! each, as restic and kopia keep theirs.
//!
//! Bodies are appended to local pack files exactly as with the local backend (`packs`),
//! but a pack here is closed at `pack_bytes` or by the first `sync` that finds it open, and
//! then uploaded whole: one PUT per pack, never one per chunk. A closed pack is uploaded in
//! the background as soon as it closes, so a long write keeps the network busy while it
//! chunks and seals; `sync` closes the open pack and waits until everything appended before
//! it has been acknowledged by the store, which is what makes a body durable here (no
//! `refs` record may point at it sooner, as with local packs). An upload that fails is
//! kept and retried by the next `sync`.
//!
//! The local files stay behind as a cache of recently used packs, bounded by `cache_bytes`
//! (least recently read first out). A read of a pack not cached fetches the whole pack:
//! media is read in order, and a pack holds consecutive chunks of a file. Every body read
//! from the cache is authenticated when it is opened (the AEAD tag), and a cached pack that
//! fails is dropped and fetched again (`drop_cached`).
//!
//! Object names reveal nothing but a pack's number: `PREFIX` `packs/` and eight hex digits.

use super::bucket::{Bucket, BucketConfig};
use super::packs::{Location, Packs};
use super::{io_error, Error, PackStore, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// The object store and how much of it to keep locally.
#[derive(Debug, Clone)]
pub struct ObjectSettings {
    pub bucket: BucketConfig,
    /// Bytes of local pack copies kept (beside the packs being filled or uploaded).
    pub cache_bytes: u64,
    /// A pack is closed and uploaded at this size.
    pub pack_bytes: u64,
    /// Uploads at once.
    pub uploads: usize,
}

/// The name of pack `n` below the volume's prefix.
#[must_use]
pub fn pack_object(pack: u32) -> String {
    format!("packs/{pack:08x}")
}

fn parse_pack_object(name: &str) -> Option<u32> {
    let hex = name.strip_prefix("packs/")?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten()
}

#[derive(Default)]
struct State {
    /// Packs the store has acknowledged, and their sizes.
    remote: BTreeMap<u32, u64>,
    /// Packs appended to and not yet handed to an uploader.
    open: BTreeSet<u32>,
    /// Closed packs waiting for an uploader.
    queued: BTreeSet<u32>,
    uploading: BTreeSet<u32>,
    /// The last failure of packs whose upload failed; retried by the next `sync`.
    failed: BTreeMap<u32, String>,
    /// Local copies of acknowledged packs: size and the tick of their last read.
    cached: HashMap<u32, (u64, u64)>,
    cached_bytes: u64,
    tick: u64,
    stop: bool,
}

struct Shared {
    bucket: Bucket,
    local: Packs,
    state: Mutex<State>,
    /// Signalled when a pack is queued, uploaded or failed, and on stop.
    changed: Condvar,
    cache_bytes: u64,
    /// Read-only opens (beside a daemon that has the volume open) delete no local copy.
    writable: bool,
    /// One fetch of a pack at a time.
    fetching: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
}

/// Packs in an object store, with a local cache.
pub struct ObjectPacks {
    shared: Arc<Shared>,
    writable: bool,
    uploaders: Vec<std::thread::JoinHandle<()>>,
    /// Held by `sync` for its whole run.
    syncing: Mutex<()>,
}

impl ObjectPacks {
    /// The packs of the bucket, with local copies under `dir`. Lists the bucket: an
    /// unreachable store fails the open after the configured time.
    pub fn open(dir: &Path, writable: bool, settings: &ObjectSettings) -> Result<Self> {
        let bucket = Bucket::connect(settings.bucket.clone())?;
        let mut remote = BTreeMap::new();
        for (name, size) in bucket.list("packs/")? {
            if let Some(pack) = parse_pack_object(&name) {
                remote.insert(pack, size);
            }
        }
        let local = Packs::open(dir, writable)?;
        if writable {
            // Fetches a crash cut off.
            for entry in std::fs::read_dir(dir).map_err(io_error)? {
                let path = entry.map_err(io_error)?.path();
                if path.extension().is_some_and(|e| e == "part") {
                    std::fs::remove_file(&path).map_err(io_error)?;
                }
            }
        }
        let mut state = State::default();
        let mut highest = remote.keys().next_back().copied().unwrap_or(0);
        for (pack, size) in local.list()? {
            highest = highest.max(pack);
            if remote.get(&pack) == Some(&size) {
                state.cached.insert(pack, (size, 0));
                state.cached_bytes += size;
            } else if writable {
                // Never acknowledged, so nothing committed points into it (bodies are
                // referenced only after `sync`): what a crash left mid-upload.
                tracing::info!(pack, "deleting a local pack the object store never acknowledged");
                std::fs::remove_file(local.pack_path(pack)).map_err(io_error)?;
            }
        }
        state.remote = remote;
        let local = local.staging(settings.pack_bytes, highest + 1);
        let shared = Arc::new(Shared {
            bucket,
            local,
            state: Mutex::new(state),
            changed: Condvar::new(),
            // A few packs at least: a sequential reader must not lose the pack it is in.
            cache_bytes: settings.cache_bytes.max(4 * settings.pack_bytes),
            writable,
            fetching: Mutex::default(),
        });
        shared.evict();
        let mut uploaders = Vec::new();
        if writable {
            for i in 0..settings.uploads.max(1) {
                let shared = shared.clone();
                uploaders.push(
                    crate::threads::spawn(format!("pack-upload-{i}"), move || shared.upload_loop())
                        .map_err(Error::Io)?,
                );
            }
        }
        Ok(Self { shared, writable, uploaders, syncing: Mutex::default() })
    }

    /// Queues the open packs below the one being filled: they are closed.
    fn queue_closed(&self, state: &mut State) {
        let below = self.shared.local.closed_below();
        let closed: Vec<u32> = state.open.range(..below).copied().collect();
        if !closed.is_empty() {
            for pack in closed {
                state.open.remove(&pack);
                state.queued.insert(pack);
            }
            self.shared.changed.notify_all();
        }
    }

    /// `read` of the local copy of `loc`'s pack, fetched first if it is not here.
    fn read_local_copy<T>(
        &self,
        loc: Location,
        read: impl Fn(&Packs, Location) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        for _ in 0..2 {
            if let Some(body) = read(&self.shared.local, loc)? {
                let mut state = self.shared.state.lock().expect("object state");
                state.tick += 1;
                let tick = state.tick;
                if let Some(entry) = state.cached.get_mut(&loc.pack) {
                    entry.1 = tick;
                }
                return Ok(Some(body));
            }
            if !self.shared.fetch(loc.pack)? {
                return Ok(None);
            }
            self.shared.prefetch(loc.pack + 1);
        }
        Ok(None)
    }
}

impl Shared {
    /// Fetches pack `pack` into the cache unless it is there; false if the store has no
    /// such pack.
    fn fetch(&self, pack: u32) -> Result<bool> {
        let one = self.fetching.lock().expect("fetching lock").entry(pack).or_default().clone();
        let fetched = {
            let _one_fetch = one.lock().expect("pack fetch lock");
            self.fetch_alone(pack)
        };
        self.fetching.lock().expect("fetching lock").remove(&pack);
        fetched
    }

    fn fetch_alone(&self, pack: u32) -> Result<bool> {
        let path = self.local.pack_path(pack);
        if path.exists() {
            return Ok(true);
        }
        let Some(expected) = self.state.lock().expect("object state").remote.get(&pack).copied() else {
            return Ok(false);
        };
        let Some(bytes) = self.bucket.get(&pack_object(pack))? else {
            return Ok(false);
        };
        if bytes.len() as u64 != expected {
            return Err(Error::Remote(format!(
                "pack {pack} is {} bytes in the object store, {expected} expected",
                bytes.len()
            )));
        }
        // Another process (a read-only open beside the daemon) may fetch it too.
        let part = path.with_extension(format!("{}.part", std::process::id()));
        std::fs::write(&part, &bytes).map_err(io_error)?;
        std::fs::rename(&part, &path).map_err(io_error)?;
        {
            let mut state = self.state.lock().expect("object state");
            state.tick += 1;
            let tick = state.tick;
            if state.cached.insert(pack, (expected, tick)).is_none() {
                state.cached_bytes += expected;
            }
        }
        self.evict();
        Ok(true)
    }

    /// Fetches `pack` in the background if the store has it and the cache does not:
    /// the next pack of a sequential reader arrives while it reads this one.
    fn prefetch(self: &Arc<Self>, pack: u32) {
        let wanted = {
            let state = self.state.lock().expect("object state");
            state.remote.contains_key(&pack) && !state.cached.contains_key(&pack)
        };
        if !wanted || self.fetching.lock().expect("fetching lock").contains_key(&pack) {
            return;
        }
        let shared = self.clone();
        let spawned = crate::threads::spawn("pack-prefetch", move || {
            if let Err(e) = shared.fetch(pack) {
                tracing::debug!(pack, error = %e, "prefetch failed; the read fetches it");
            }
        });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "cannot start a prefetch");
        }
    }

    fn upload_loop(&self) {
        loop {
            let pack = {
                let mut state = self.state.lock().expect("object state");
                loop {
                    if state.stop {
                        return;
                    }
                    if let Some(pack) = state.queued.pop_first() {
                        state.uploading.insert(pack);
                        break pack;
                    }
                    state = self.changed.wait(state).expect("object state");
                }
            };
            let result = self.upload(pack);
            let mut state = self.state.lock().expect("object state");
            state.uploading.remove(&pack);
            match result {
                Ok(size) => {
                    state.failed.remove(&pack);
                    state.remote.insert(pack, size);
                    state.tick += 1;
                    let tick = state.tick;
                    state.cached.insert(pack, (size, tick));
                    state.cached_bytes += size;
                }
                Err(e) => {
                    tracing::error!(pack, error = %e, "a pack could not be uploaded; the next sync retries it");
                    state.failed.insert(pack, e.to_string());
                }
            }
            drop(state);
            self.changed.notify_all();
            self.evict();
        }
    }

    /// Uploads a closed pack once every append reserved in it has written its bytes.
    fn upload(&self, pack: u32) -> Result<u64> {
        self.local.wait_for_writes(pack);
        let bytes = std::fs::read(self.local.pack_path(pack)).map_err(io_error)?;
        let size = bytes.len() as u64;
        self.bucket.put(&pack_object(pack), bytes.into())?;
        Ok(size)
    }

    /// Drops the least recently read local copies while the cache is over its budget.
    fn evict(&self) {
        if !self.writable {
            return;
        }
        let mut state = self.state.lock().expect("object state");
        while state.cached_bytes > self.cache_bytes {
            let Some((&pack, &(size, _))) = state.cached.iter().min_by_key(|(_, (_, tick))| *tick) else { break };
            state.cached.remove(&pack);
            state.cached_bytes -= size;
            // A reader holding the file open goes on reading it; a new one fetches it again.
            if let Err(e) = std::fs::remove_file(self.local.pack_path(pack)) {
                tracing::warn!(pack, error = %e, "cannot delete a cached pack");
            }
            self.local.forget(pack);
        }
    }
}

impl Drop for ObjectPacks {
    fn drop(&mut self) {
        self.shared.state.lock().expect("object state").stop = true;
        self.shared.changed.notify_all();
        for t in self.uploaders.drain(..) {
            let _ = t.join();
        }
    }
}

impl PackStore for ObjectPacks {
    fn append(&self, body: &[u8]) -> Result<Location> {
        if !self.writable {
            return Err(Error::Db("pack files are open read-only".into()));
        }
        let loc = self.shared.local.append(body)?;
        let mut state = self.shared.state.lock().expect("object state");
        state.open.insert(loc.pack);
        self.queue_closed(&mut state);
        Ok(loc)
    }

    fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock().expect("pack sync lock");
        self.shared.local.close_tail();
        let mut state = self.shared.state.lock().expect("object state");
        self.queue_closed(&mut state);
        // Retry what failed before.
        let failed: Vec<u32> = std::mem::take(&mut state.failed).into_keys().collect();
        state.queued.extend(failed);
        self.shared.changed.notify_all();
        let waiting_for: BTreeSet<u32> = state.queued.union(&state.uploading).copied().collect();
        loop {
            if let Some((pack, why)) = state.failed.iter().find(|(p, _)| waiting_for.contains(p)) {
                return Err(Error::Remote(format!("pack {pack} was not stored: {why}")));
            }
            if waiting_for.iter().all(|p| state.remote.contains_key(p)) {
                return Ok(());
            }
            state = self.shared.changed.wait(state).expect("object state");
        }
    }

    fn read(&self, loc: Location) -> Result<Option<Vec<u8>>> {
        self.read_local_copy(loc, Packs::read)
    }

    fn read_direct(&self, loc: Location) -> Result<Option<(Vec<u8>, std::ops::Range<usize>)>> {
        self.read_local_copy(loc, Packs::read_direct)
    }

    fn rotate(&self) -> Result<u32> {
        self.shared.local.close_tail();
        let mut state = self.shared.state.lock().expect("object state");
        self.queue_closed(&mut state);
        Ok(self.shared.local.closed_below())
    }

    fn list(&self) -> Result<Vec<(u32, u64)>> {
        let state = self.shared.state.lock().expect("object state");
        let mut packs: BTreeMap<u32, u64> = state.remote.clone();
        for pack in state.open.iter().chain(&state.queued).chain(&state.uploading).chain(state.failed.keys()) {
            let size = std::fs::metadata(self.shared.local.pack_path(*pack)).map_or(0, |m| m.len());
            packs.entry(*pack).or_insert(size);
        }
        Ok(packs.into_iter().collect())
    }

    fn delete(&self, pack: u32) -> Result<()> {
        self.shared.bucket.delete(&pack_object(pack))?;
        let mut state = self.shared.state.lock().expect("object state");
        state.remote.remove(&pack);
        if let Some((size, _)) = state.cached.remove(&pack) {
            state.cached_bytes -= size;
        }
        drop(state);
        self.shared.local.delete(pack)
    }

    fn will_read(&self, loc: Location) {
        // Only a local copy can be read ahead; a fetch is started by the read itself.
        self.shared.local.will_read(loc);
    }

    fn stored_bytes(&self) -> Result<u64> {
        Ok(self.list()?.iter().map(|(_, size)| size).sum())
    }

    fn drop_cached(&self, pack: u32) -> bool {
        let mut state = self.shared.state.lock().expect("object state");
        let Some((size, _)) = state.cached.remove(&pack) else {
            // Another reader of the same damaged copy dropped it first (and may have fetched
            // it again since): read again too. A pack the bucket lacks has no other copy.
            return state.remote.contains_key(&pack);
        };
        state.cached_bytes -= size;
        drop(state);
        tracing::warn!(pack, "dropping a damaged local copy of a pack; it is fetched again");
        let removed = std::fs::remove_file(self.shared.local.pack_path(pack)).is_ok();
        self.shared.local.forget(pack);
        removed
    }

    fn pack_path(&self, pack: u32) -> PathBuf {
        self.shared.local.pack_path(pack)
    }

    fn bucket(&self) -> Option<&Bucket> {
        Some(&self.shared.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_objects_are_named_by_number_alone() {
        assert_eq!(pack_object(0x1a2b), "packs/00001a2b");
        assert_eq!(parse_pack_object("packs/00001a2b"), Some(0x1a2b));
        assert_eq!(parse_pack_object("packs/1a2b"), None);
        assert_eq!(parse_pack_object("meta/00001a2b"), None);
    }
}
