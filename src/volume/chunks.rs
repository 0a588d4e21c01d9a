//! Chunk bodies: identify, compress, seal into the envelope, and open again; the bounded
//! cache of decrypted chunks; and `Chunks`, which stores and loads bodies for the data path
//! (background jobs, read-ahead, dedup pins).
//!
//! Envelope: `version u8 | key epoch u32 BE | nonce 24 | ciphertext | tag 16`, plaintext
//! `codec u8 | body`, associated data `version | epoch | chunk id`: a body moved under
//! another id, or altered in any bit, fails to open. A 1 MiB incompressible chunk stores as
//! 1,048,576 + 46 = 1,048,622 bytes.

use super::error::{Error, Result};
use super::txn::NewBody;
use crate::buffers::Recycled;
use crate::chunk::{ChunkHasher, IdState, Scan};
use crate::config::Compression;
use crate::crypto::aead::{SealKey, OVERHEAD};
use crate::crypto::keys::Keyring;
use crate::ids::{ChunkId, Ino};
use crate::store::keys::ExtentValue;
use crate::store::packs::Location;
use crate::store::{Bodies, Cf, Sealed, Store};
use lru::LruCache;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// Version byte of the chunk envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes an envelope adds to a raw body: header 5, codec 1, nonce 24, tag 16.
pub const ENVELOPE_OVERHEAD: usize = 5 + 1 + OVERHEAD;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// Why an envelope did not open.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Too short, unknown version, unknown codec, bad zstd frame.
    Malformed,
    /// Authentication failed.
    Auth,
}

/// Turns chunk plaintext into envelopes and back.
pub struct ChunkCodec {
    hasher: ChunkHasher,
    keys: RwLock<EpochKeys>,
    compression: Compression,
    level: i32,
}

/// Chunk-sealing keys: new envelopes use the current epoch's, old ones open with theirs.
struct EpochKeys {
    current: u32,
    seal: BTreeMap<u32, SealKey>,
}

/// A chunk ready to store.
pub struct SealedChunk {
    /// Its id.
    pub id: ChunkId,
    /// Plaintext length.
    pub plain_len: u32,
    /// The envelope.
    pub envelope: Recycled,
}

impl ChunkCodec {
    /// A codec with the volume's id hasher, keys and compression policy.
    #[must_use]
    pub fn new(hasher: ChunkHasher, keys: &Keyring, compression: Compression, level: i32) -> Self {
        let keys = RwLock::new(EpochKeys { current: keys.current_epoch(), seal: keys.chunk_seal_keys() });
        Self { hasher, keys, compression, level }
    }

    /// Takes the keys of a rotated (or pruned) keyring.
    pub fn set_keys(&self, keys: &Keyring) {
        *self.keys.write().expect("codec keys") =
            EpochKeys { current: keys.current_epoch(), seal: keys.chunk_seal_keys() };
    }

    /// The epoch new envelopes are sealed under.
    #[must_use]
    pub fn current_epoch(&self) -> u32 {
        self.keys.read().expect("codec keys").current
    }

    /// The key epoch an envelope was sealed under.
    #[must_use]
    pub fn epoch_of(envelope: &[u8]) -> Option<u32> {
        envelope.get(1..5).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    /// The id of `plain`.
    #[must_use]
    pub fn id(&self, plain: &[u8]) -> ChunkId {
        self.hasher.id(plain)
    }

    /// The id of `piece` and, if `keep`, its running hash; a `head` that `piece` starts
    /// with is not hashed again.
    fn hash(&self, piece: &[u8], head: Option<&Head>, keep: bool) -> (ChunkId, Option<IdState>) {
        match head.filter(|h| h.len <= piece.len()) {
            Some(h) => {
                let mut state = h.state.clone();
                state.update(&piece[h.len..]);
                (state.id(), keep.then_some(state))
            }
            None if keep => {
                let mut state = self.hasher.state();
                state.update(piece);
                (state.id(), Some(state))
            }
            None => (self.id(piece), None),
        }
    }

    /// Compresses (when it pays) and seals `plain` whose id is `id`.
    #[must_use]
    pub fn seal(&self, id: ChunkId, plain: &[u8]) -> SealedChunk {
        let compressed = self.compress(plain);
        // The payload is the codec byte, then the body; both go straight into the envelope.
        let (codec, body) = match &compressed {
            Some(z) => (CODEC_ZSTD, &z[..]),
            None => (CODEC_RAW, plain),
        };
        let keys = self.keys.read().expect("codec keys");
        let epoch = keys.current;
        // In a kept buffer, given back once the body is in its pack: a new one costs a
        // zero-fill and a fault for every page (docs/benchmarks.md, "2026-12-08").
        let mut envelope = crate::buffers::take(5 + OVERHEAD + 1 + body.len());
        envelope.truncate(5 + OVERHEAD + 1 + body.len());
        envelope[0] = ENVELOPE_VERSION;
        envelope[1..5].copy_from_slice(&epoch.to_be_bytes());
        let aad = aad(ENVELOPE_VERSION, epoch, &id);
        keys.seal[&epoch].seal_parts_over(&aad, &[&[codec], body], &mut envelope[5..]);
        SealedChunk { id, plain_len: plain.len() as u32, envelope: envelope.into() }
    }

    /// The chunk compressed, when the policy (`chunk::compress`) finds that it pays.
    fn compress(&self, plain: &[u8]) -> Option<Vec<u8>> {
        match self.compression {
            Compression::Off => None,
            Compression::Auto => crate::chunk::compress::compress(plain, self.level),
        }
    }

    /// Opens an envelope stored under `id`. The ciphertext is read where it lies and
    /// decrypted straight into the plaintext's buffer: a read costs no copy of its own.
    pub fn open(&self, id: &ChunkId, envelope: &[u8]) -> std::result::Result<Plain, OpenError> {
        let (epoch, aad) = Self::header(id, envelope)?;
        let payload = {
            let keys = self.keys.read().expect("codec keys");
            let key = keys.seal.get(&epoch).ok_or(OpenError::Malformed)?;
            key.open(&aad, &envelope[5..]).map_err(|_| OpenError::Auth)?
        };
        let end = payload.len();
        Self::decode(payload, 0, end)
    }

    /// `open` of an envelope the caller owns (read from a pack), at `buf[body]`:
    /// decrypted where it lies, so a read allocates and fills one buffer, not two.
    pub fn open_owned(
        &self,
        id: &ChunkId,
        mut buf: Vec<u8>,
        body: std::ops::Range<usize>,
    ) -> std::result::Result<Plain, OpenError> {
        let start = body.start;
        let envelope = buf.get_mut(body).ok_or(OpenError::Malformed)?;
        let (epoch, aad) = Self::header(id, envelope)?;
        let len = {
            let keys = self.keys.read().expect("codec keys");
            let key = keys.seal.get(&epoch).ok_or(OpenError::Malformed)?;
            key.open_in_place(&aad, &mut envelope[5..]).map_err(|_| OpenError::Auth)?.len()
        };
        let payload = start + 5 + crate::crypto::aead::NONCE_LEN;
        Self::decode(buf, payload, payload + len)
    }

    /// The epoch and associated data of an envelope, after a check of its form.
    fn header(id: &ChunkId, envelope: &[u8]) -> std::result::Result<(u32, [u8; 37]), OpenError> {
        if envelope.len() < 5 + OVERHEAD + 1 || envelope[0] != ENVELOPE_VERSION {
            return Err(OpenError::Malformed);
        }
        let epoch = u32::from_be_bytes(envelope[1..5].try_into().expect("4 bytes"));
        Ok((epoch, aad(envelope[0], epoch, id)))
    }

    /// The plaintext of the payload at `buf[start..end]` (codec byte, then the body).
    fn decode(buf: Vec<u8>, start: usize, end: usize) -> std::result::Result<Plain, OpenError> {
        match buf.get(start) {
            Some(&CODEC_RAW) if start < end => Ok(Plain { start: start + 1, end, buf: Arc::new(buf.into()) }),
            Some(&CODEC_ZSTD) if start < end => {
                let plain = zstd::stream::decode_all(&buf[start + 1..end]);
                crate::buffers::give_back(buf);
                plain.map(Plain::from).map_err(|_| OpenError::Malformed)
            }
            _ => Err(OpenError::Malformed),
        }
    }
}

impl ChunkCodec {
    /// The envelope re-sealed under the current epoch, its payload (codec byte and body)
    /// unchanged, so its length and the stored-bytes accounting stay the same.
    pub fn reseal(&self, id: &ChunkId, mut envelope: Vec<u8>) -> std::result::Result<Vec<u8>, OpenError> {
        let epoch = Self::epoch_of(&envelope).ok_or(OpenError::Malformed)?;
        if envelope.len() < 5 + OVERHEAD + 1 || envelope[0] != ENVELOPE_VERSION {
            return Err(OpenError::Malformed);
        }
        let keys = self.keys.read().expect("codec keys");
        let key = keys.seal.get(&epoch).ok_or(OpenError::Malformed)?;
        let payload =
            key.open_in_place(&aad(envelope[0], epoch, id), &mut envelope[5..]).map_err(|_| OpenError::Auth)?;
        let mut out = Vec::with_capacity(payload.len() + 5 + OVERHEAD);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&keys.current.to_be_bytes());
        keys.seal[&keys.current].seal_into(&aad(ENVELOPE_VERSION, keys.current, id), payload, &mut out);
        Ok(out)
    }
}

/// Decrypted chunk bytes: a range of a shared buffer.
#[derive(Clone)]
pub struct Plain {
    /// Given back for reuse when the last piece goes (`buffers`).
    buf: Arc<Recycled>,
    start: usize,
    end: usize,
}

impl From<Vec<u8>> for Plain {
    fn from(v: Vec<u8>) -> Self {
        let end = v.len();
        Self { buf: Arc::new(v.into()), start: 0, end }
    }
}

impl Plain {
    /// The bytes at `range` of these, sharing the buffer.
    #[must_use]
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= self.end - self.start, "slice within the plaintext");
        Self { buf: self.buf.clone(), start: self.start + range.start, end: self.start + range.end }
    }
}

impl AsRef<[u8]> for Plain {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for Plain {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

fn aad(version: u8, epoch: u32, id: &ChunkId) -> [u8; 37] {
    let mut a = [0u8; 37];
    a[0] = version;
    a[1..5].copy_from_slice(&epoch.to_be_bytes());
    a[5..].copy_from_slice(&id.0);
    a
}

/// Decrypted chunks, least recently used evicted first, bounded in bytes.
///
/// Chunks read ahead and not yet asked for get a second chance at eviction, and read-ahead
/// may hold at most half the budget (`reserve_ahead`). Several readers reading ahead at
/// once (the ranges of one download) otherwise evicted each other's chunks before they were
/// read, and each chunk was decrypted two or three times (docs/benchmarks.md,
/// "2026-12-07 (evening)").
pub struct ChunkCache {
    inner: Mutex<CacheInner>,
    budget: usize,
}

struct CacheInner {
    lru: LruCache<ChunkId, Plain>,
    bytes: usize,
    /// Read-ahead chunks not yet asked for, with their lengths.
    unread: HashMap<ChunkId, usize>,
    /// Bytes of `unread`, and those reserved for read-ahead in flight.
    ahead_bytes: usize,
}

impl CacheInner {
    fn forget_unread(&mut self, id: &ChunkId) {
        if let Some(len) = self.unread.remove(id) {
            self.ahead_bytes -= len;
        }
    }

    fn put(&mut self, id: ChunkId, plain: Plain, budget: usize) {
        self.bytes += plain.len();
        if let Some(old) = self.lru.put(id, plain) {
            self.bytes -= old.len();
        }
        // At most one second chance per entry, so the loop ends.
        let mut chances = self.lru.len();
        while self.bytes > budget {
            let Some((id, v)) = self.lru.pop_lru() else { break };
            if chances > 0 && self.unread.contains_key(&id) {
                // Read ahead, not read yet: back to the front once, as a chunk like any other.
                chances -= 1;
                self.forget_unread(&id);
                self.lru.put(id, v);
                continue;
            }
            self.bytes -= v.len();
            self.forget_unread(&id);
        }
    }
}

impl ChunkCache {
    /// A cache holding at most `budget` bytes of plaintext.
    #[must_use]
    pub fn new(budget: usize) -> Self {
        let inner = CacheInner { lru: LruCache::unbounded(), bytes: 0, unread: HashMap::new(), ahead_bytes: 0 };
        Self { inner: Mutex::new(inner), budget }
    }

    /// The cached plaintext of `id`.
    pub fn get(&self, id: &ChunkId) -> Option<Plain> {
        let mut c = self.inner.lock().expect("cache lock");
        let plain = c.lru.get(id).cloned();
        if plain.is_some() {
            c.forget_unread(id);
        }
        plain
    }

    /// Whether `id` is cached (without touching its recency).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.inner.lock().expect("cache lock").lru.contains(id)
    }

    /// Adds a chunk, evicting old ones beyond the budget.
    pub fn insert(&self, id: ChunkId, plain: Plain) {
        let mut c = self.inner.lock().expect("cache lock");
        c.forget_unread(&id);
        c.put(id, plain, self.budget);
    }

    /// Reserves room for a chunk of about `len` bytes to be read ahead; `false` when
    /// read-ahead holds its half of the budget (one chunk is always allowed).
    pub fn reserve_ahead(&self, len: usize) -> bool {
        let mut c = self.inner.lock().expect("cache lock");
        if c.ahead_bytes > 0 && c.ahead_bytes + len > self.budget / 2 {
            return false;
        }
        c.ahead_bytes += len;
        true
    }

    /// Adds a chunk read ahead for which `reserved` bytes were reserved (`None`: it could
    /// not be read; the reader will meet the error itself).
    pub fn insert_ahead(&self, id: ChunkId, reserved: usize, plain: Option<Plain>) {
        let mut c = self.inner.lock().expect("cache lock");
        c.ahead_bytes -= reserved;
        let Some(plain) = plain else { return };
        c.forget_unread(&id);
        c.unread.insert(id, plain.len());
        c.ahead_bytes += plain.len();
        c.put(id, plain, self.budget);
    }
}

/// A chunk cut from a write, stored (or found stored) but not yet referenced.
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    /// File offset.
    pub offset: u64,
    pub id: ChunkId,
    pub len: u32,
    /// The body when this write stored it (`None`: a dedup hit, pinned).
    pub body: Option<NewBody>,
}

/// The bodies one write window appended to packs, by id. Dedup looks in `refs`, which
/// knows a window's chunks only once it commits: a chunk that repeats inside the window
/// (a disk image, a video with a repeated segment) is appended once and referenced again.
pub(crate) type WindowBodies = Mutex<HashMap<ChunkId, NewBody>>;

/// Chunks `(id, length, body)` as pending extents, one after the other from `offset`.
fn laid_end_to_end(offset: u64, chunks: Vec<(ChunkId, u32, Option<NewBody>)>) -> Vec<Pending> {
    let mut at = offset;
    chunks
        .into_iter()
        .map(|(id, len, body)| {
            let p = Pending { offset: at, id, len, body };
            at += u64::from(len);
            p
        })
        .collect()
}

/// Chunk bodies in and out: prepares and stores new chunks, reads and caches decrypted
/// ones; shared with background jobs and read-ahead tasks.
pub(crate) struct Chunks {
    store: Arc<Store>,
    pub(crate) codec: ChunkCodec,
    cache: ChunkCache,
    /// Chunks being decrypted by read-ahead; a reader that needs one waits for it.
    inflight: Mutex<HashSet<ChunkId>>,
    loaded: Condvar,
    /// Chunks that a write in flight will reference without storing them (dedup hits):
    /// garbage collection must not delete them before that write commits.
    pub(crate) pins: Mutex<HashMap<ChunkId, u32>>,
    /// The last chunks of long writes, with their lengths, how far the search for their
    /// end got and their running hashes (`remember_end`), newest last.
    ends: Mutex<VecDeque<(ChunkId, u32, Scan, IdState)>>,
}

/// The first bytes of a window's tail, hashed already: a long write's last chunk, taken
/// back by an append (`Chunks::end_of`).
pub(crate) struct Head {
    pub len: usize,
    pub state: IdState,
}

/// Last chunks of long writes whose scans and hashes are kept: one per upload going on,
/// and more.
const KEPT_ENDS: usize = 256;

impl Chunks {
    pub(crate) fn new(store: Arc<Store>, codec: ChunkCodec, cache: ChunkCache) -> Self {
        Self {
            store,
            codec,
            cache,
            inflight: Mutex::new(HashSet::new()),
            loaded: Condvar::new(),
            pins: Mutex::new(HashMap::new()),
            ends: Mutex::new(VecDeque::new()),
        }
    }

    /// Releases the pins a committed (or abandoned) write took.
    pub(crate) fn unpin<'a>(&self, ids: impl Iterator<Item = &'a ChunkId>) {
        let mut pins = self.pins.lock().expect("pins lock");
        for id in ids {
            if let Some(n) = pins.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(id);
                }
            }
        }
    }

    /// The plaintext of `id`, verified. A damaged chunk is `Corrupt` and a log line.
    pub(crate) fn chunk(&self, ino: Ino, id: &ChunkId) -> Result<Plain> {
        self.chunk_at(ino, id, None, Bodies::KeepCached)
    }

    /// The plaintext an extent covers: all or part of its chunk, sharing the cached buffer;
    /// a chunk not cached is read as `bodies` says.
    pub(crate) fn extent(&self, ino: Ino, e: &ExtentValue, bodies: Bodies) -> Result<Plain> {
        let plain = self.chunk_at(ino, &e.chunk, None, bodies)?;
        let range = e.plain_range();
        if range.end > plain.len() {
            return Err(Error::CorruptMeta(format!("an extent of inode {ino} runs past the end of chunk {}", e.chunk)));
        }
        Ok(plain.slice(range))
    }

    /// Caches the plaintext of the last chunk of a long write, which the next append
    /// (an upload's next PATCH) takes back, with how far the search for its end got and
    /// its running hash: that append goes on from there (`end_of`) instead of scanning and
    /// hashing the chunk again.
    pub(crate) fn remember_end(&self, id: ChunkId, plain: Plain, scan: Scan, state: IdState) {
        let len = plain.len() as u32;
        self.cache.insert(id, plain);
        let mut ends = self.ends.lock().expect("ends lock");
        ends.retain(|(kept, ..)| *kept != id);
        if ends.len() == KEPT_ENDS {
            ends.pop_front();
        }
        ends.push_back((id, len, scan, state));
    }

    /// How far the search for a cut got in the remembered last chunk that extent `e`
    /// covers whole, and its running hash; `None` for any other chunk.
    pub(crate) fn end_of(&self, e: &ExtentValue) -> Option<(Scan, Head)> {
        let mut ends = self.ends.lock().expect("ends lock");
        let at = ends.iter().position(|(id, len, ..)| *id == e.chunk && e.skip == 0 && e.len == *len)?;
        let (_, len, scan, state) = ends.remove(at)?;
        Some((scan, Head { len: len as usize, state }))
    }

    /// The plaintext of a chunk that a write in flight stored: its body may lie in a pack
    /// that no committed record points at yet.
    pub(crate) fn pending_chunk(&self, ino: Ino, p: &Pending) -> Result<Plain> {
        self.chunk_at(ino, &p.id, p.body.and_then(|b| b.location), Bodies::KeepCached)
    }

    /// `chunk`, reading the body at `packed` if given instead of where `refs` says, and
    /// from there as `bodies` says.
    fn chunk_at(&self, ino: Ino, id: &ChunkId, packed: Option<Location>, bodies: Bodies) -> Result<Plain> {
        if let Some(p) = self.cache.get(id) {
            crate::metrics::get().chunk_cache_hits.inc();
            return Ok(p);
        }
        // Decrypting it twice would only waste the core that read-ahead is using.
        let mut inflight = self.inflight.lock().expect("inflight");
        while inflight.contains(id) {
            inflight = self.loaded.wait_timeout(inflight, Duration::from_secs(5)).expect("inflight").0;
        }
        drop(inflight);
        if let Some(p) = self.cache.get(id) {
            crate::metrics::get().chunk_cache_hits.inc();
            return Ok(p);
        }
        crate::metrics::get().chunk_cache_misses.inc();
        let plain = match packed {
            Some(loc) => {
                let open = || -> Result<_> {
                    Ok(self
                        .store
                        .packs()
                        .read(loc)?
                        .map(crate::store::whole)
                        .map(|(buf, body)| self.codec.open_owned(id, buf, body)))
                };
                let mut opened = open()?;
                if matches!(opened, Some(Err(_))) && self.store.packs().drop_cached(loc.pack) {
                    opened = open()?;
                }
                self.verified(ino, id, opened)?
            }
            None => self.load(ino, id, bodies)?,
        };
        self.cache.insert(*id, plain.clone());
        Ok(plain)
    }

    pub(crate) fn load(&self, ino: Ino, id: &ChunkId, bodies: Bodies) -> Result<Plain> {
        let open = || {
            self.store.with_chunk(&id.0, bodies, |envelope| match envelope {
                Sealed::Packed { buf, body } => self.codec.open_owned(id, buf, body),
                Sealed::Inline(envelope) => self.codec.open(id, envelope),
            })
        };
        let mut opened = open()?;
        // A damaged local copy of a pack kept in an object store is fetched again.
        if matches!(opened, Some(Err(_))) {
            if let Some(loc) = self.store.chunk_location(&id.0)? {
                if self.store.packs().drop_cached(loc.pack) {
                    opened = open()?;
                }
            }
        }
        self.verified(ino, id, opened)
    }

    /// An opened envelope, or the log line and error for a missing or damaged one.
    fn verified(&self, ino: Ino, id: &ChunkId, opened: Option<std::result::Result<Plain, OpenError>>) -> Result<Plain> {
        let Some(opened) = opened else {
            tracing::error!(chunk = %id, inode = %ino, "chunk is missing from the store");
            return Err(Error::Corrupt { chunk: *id, ino });
        };
        opened.map_err(|e| {
            let why = match e {
                OpenError::Auth => "authentication failed",
                OpenError::Malformed => "malformed envelope",
            };
            tracing::error!(chunk = %id, inode = %ino, "chunk failed verification: {why}");
            Error::Corrupt { chunk: *id, ino }
        })
    }

    /// Hashes the pieces of `data` (lengths `lens`) and seals those not stored yet, in
    /// parallel on the worker pool.
    pub(crate) fn prepare(&self, data: &[u8], lens: &[usize]) -> Result<Vec<Prepared>> {
        Ok(self.prepare_then(data, lens, None, false, Ok)?.0)
    }

    /// `prepare` of the end of a write, whose first piece may start with `head`; with
    /// `keep_last` (a long write), also gives the running hash of its last piece, for
    /// `remember_end`.
    pub(crate) fn prepare_end(
        &self,
        data: &[u8],
        lens: &[usize],
        head: Option<&Head>,
        keep_last: bool,
    ) -> Result<(Vec<Prepared>, Option<IdState>)> {
        self.prepare_then(data, lens, head, keep_last, Ok)
    }

    /// `prepare`, with `then` applied to each piece on the worker that prepared it: the
    /// first piece goes on from `head`, if given, and the last one's running hash is
    /// given back too if `keep_last`.
    fn prepare_then<T: Send>(
        &self,
        data: &[u8],
        lens: &[usize],
        head: Option<&Head>,
        keep_last: bool,
        then: impl Fn(Prepared) -> Result<T> + Sync,
    ) -> Result<(Vec<T>, Option<IdState>)> {
        let mut pieces = Vec::with_capacity(lens.len());
        let mut at = 0;
        for l in lens {
            pieces.push(&data[at..at + l]);
            at += l;
        }
        let last = pieces.len().saturating_sub(1);
        let prepare_one = |(i, piece): (usize, &&[u8])| -> Result<(T, Option<IdState>)> {
            let (id, state) = self.codec.hash(piece, head.filter(|_| i == 0), keep_last && i == last);
            // Checked and pinned under one lock, which garbage collection holds while it
            // deletes: a chunk found here stays until this write commits.
            let known = {
                let mut pins = self.pins.lock().expect("pins lock");
                let known = self.store.contains(Cf::Refs, &id.0)?;
                if known {
                    *pins.entry(id).or_default() += 1;
                }
                known
            };
            let sealed = (!known).then(|| self.codec.seal(id, piece).envelope);
            Ok((then(Prepared { id, len: piece.len() as u32, sealed })?, state))
        };
        // A single small piece (most files) is cheaper here than a hop to the pool.
        let done: Vec<(T, Option<IdState>)> = if pieces.len() <= 1 {
            pieces.iter().enumerate().map(prepare_one).collect::<Result<_>>()?
        } else {
            pieces.par_iter().enumerate().map(prepare_one).collect::<Result<_>>()?
        };
        let (done, mut states): (Vec<T>, Vec<Option<IdState>>) = done.into_iter().unzip();
        Ok((done, states.pop().flatten()))
    }

    /// Chunks a block at `offset` into `lens`, appending new bodies to a pack as soon as
    /// each is sealed (so a block's sealed copy never sits in memory whole). Its first
    /// piece goes on from `head`, if given.
    pub(crate) fn store_block(
        &self,
        offset: u64,
        data: &[u8],
        lens: &[usize],
        head: Option<&Head>,
        window: &WindowBodies,
    ) -> Result<Vec<Pending>> {
        let stored = self.prepare_then(data, lens, head, false, |p| Ok((p.id, p.len, self.pack_body(&p, window)?)))?.0;
        Ok(laid_end_to_end(offset, stored))
    }

    /// Appends the new bodies of `prepared` (laid end to end from `offset`) to a pack.
    pub(crate) fn pack(&self, offset: u64, prepared: Vec<Prepared>, window: &WindowBodies) -> Result<Vec<Pending>> {
        let stored = prepared.iter().map(|p| Ok((p.id, p.len, self.pack_body(p, window)?))).collect::<Result<_>>()?;
        Ok(laid_end_to_end(offset, stored))
    }

    /// Appends a prepared chunk's body to a pack if it is new, and new to `window`. The
    /// window's lock is held across the append, so two workers never append one id twice.
    fn pack_body(&self, p: &Prepared, window: &WindowBodies) -> Result<Option<NewBody>> {
        let Some(env) = &p.sealed else { return Ok(None) };
        let mut appended = window.lock().expect("window bodies lock");
        if let Some(body) = appended.get(&p.id) {
            return Ok(Some(*body));
        }
        let location = Some(self.store.append_body(env)?);
        let body = NewBody { stored: env.len() as u32, plain: p.len, location };
        appended.insert(p.id, body);
        Ok(Some(body))
    }

    /// Reads, decrypts and re-hashes chunk `id` (bypassing the cache, and the page cache:
    /// a scan of every chunk would push out everything else); its plaintext length.
    pub(crate) fn verify(&self, ino: Ino, id: &ChunkId) -> Result<u64> {
        let plain = self.load(ino, id, Bodies::Uncached)?;
        if self.codec.id(&plain) != *id {
            tracing::error!(chunk = %id, inode = %ino, "chunk plaintext does not hash to its id");
            return Err(Error::Corrupt { chunk: *id, ino });
        }
        Ok(plain.len() as u64)
    }

    /// Decrypts the chunks `ahead` (ids, lengths), in file order, into the cache in the
    /// background, as far as read-ahead's share of the cache allows, reading their sealed
    /// bodies as `bodies` says: those kept cached are read ahead into the page cache
    /// first, all at once, where they stay.
    pub(crate) fn prefetch(self: &Arc<Self>, ino: Ino, ahead: Vec<(ChunkId, u32)>, bodies: Bodies) {
        for (id, len) in ahead {
            if self.cache.contains(&id) || self.inflight.lock().expect("inflight").contains(&id) {
                continue;
            }
            // The rest is read ahead by a later read, once the reader has caught up.
            if !self.cache.reserve_ahead(len as usize) {
                break;
            }
            if !self.inflight.lock().expect("inflight").insert(id) {
                self.cache.insert_ahead(id, len as usize, None);
                continue;
            }
            // The workers read one body each at a time; the disk gets all of them at once.
            if bodies == Bodies::KeepCached {
                let _ = self.store.will_read_chunk(&id.0);
            }
            let me = self.clone();
            rayon::spawn(move || {
                me.cache.insert_ahead(id, len as usize, me.load(ino, &id, bodies).ok());
                me.inflight.lock().expect("inflight").remove(&id);
                me.loaded.notify_all();
            });
        }
    }
}

/// A cut chunk after hashing and, if new, sealing.
pub(crate) struct Prepared {
    pub id: ChunkId,
    pub len: u32,
    /// The envelope to store; `None` when the chunk is stored already (then it is pinned).
    pub sealed: Option<Recycled>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(c: Compression) -> ChunkCodec {
        ChunkCodec::new(ChunkHasher::new([1; 32]), &crate::crypto::keys::Keyring::generate(), c, 3)
    }

    #[test]
    fn compressible_chunks_shrink_and_round_trip() {
        let c = codec(Compression::Auto);
        let plain = b"frame ".repeat(100_000);
        let id = c.id(&plain);
        let s = c.seal(id, &plain);
        assert!(s.envelope.len() < plain.len() / 10);
        assert_eq!(&*c.open(&id, &s.envelope).unwrap(), &plain[..]);
    }

    #[test]
    fn small_chunks_compress_unless_they_start_like_a_compressed_format() {
        let c = codec(Compression::Auto);
        let text = b"Copyright notice, repeated. ".repeat(200);
        let s = c.seal(c.id(&text), &text);
        assert!(s.envelope.len() < text.len() / 4);
        // The same bytes behind a gzip header are taken for compressed and stored raw.
        let gz = [&b"\x1f\x8b\x08\x00"[..], &text].concat();
        let s = c.seal(c.id(&gz), &gz);
        assert_eq!(s.envelope.len(), gz.len() + ENVELOPE_OVERHEAD);
        assert_eq!(&*c.open(&c.id(&gz), &s.envelope).unwrap(), &gz[..]);
    }

    #[test]
    fn incompressible_chunks_cost_the_fixed_overhead() {
        let c = codec(Compression::Auto);
        let mut plain = vec![0u8; 1 << 20];
        crate::crypto::keys::random_bytes(&mut plain);
        let id = c.id(&plain);
        let s = c.seal(id, &plain);
        assert_eq!(s.envelope.len(), plain.len() + ENVELOPE_OVERHEAD);
        assert_eq!(&*c.open(&id, &s.envelope).unwrap(), &plain[..]);
    }

    #[test]
    fn tampered_or_moved_envelope_fails() {
        let c = codec(Compression::Off);
        let plain = vec![5u8; 4096];
        let id = c.id(&plain);
        let mut s = c.seal(id, &plain).envelope;
        let other = c.id(b"other");
        assert_eq!(c.open(&other, &s).err(), Some(OpenError::Auth));
        let n = s.len();
        s[n / 2] ^= 0x40;
        assert_eq!(c.open(&id, &s).err(), Some(OpenError::Auth));
        assert_eq!(c.open(&id, &s[..10]).err(), Some(OpenError::Malformed));
    }

    /// A fixed keyring (epoch 0, key `[7; 32]`) so that envelopes made by an earlier build
    /// can be opened.
    fn golden_codec() -> ChunkCodec {
        let key = crate::crypto::keys::DataKey::from_bytes(zeroize::Zeroizing::new([7; 32]));
        let ring = crate::crypto::keys::Keyring::open(0, key, None, b"").unwrap();
        ChunkCodec::new(ChunkHasher::new([1; 32]), &ring, Compression::Auto, 3)
    }

    /// Envelopes of format 1, one raw and one zstd, sealed by an earlier build: the
    /// header bytes (version, epoch), the AEAD layout, the associated data and both codecs
    /// stay readable.
    #[test]
    fn envelopes_of_format_1_open() {
        let c = golden_codec();
        let raw = b"golden chunk, stored raw";
        let zstd = b"golden chunk, compressed with zstd. ".repeat(40);
        for (plain, golden, codec) in [(&raw[..], GOLDEN_RAW, CODEC_RAW), (&zstd[..], GOLDEN_ZSTD, CODEC_ZSTD)] {
            let envelope = crate::ids::unhex(golden).unwrap();
            assert_eq!(&envelope[..5], &[ENVELOPE_VERSION, 0, 0, 0, 0], "version 1, epoch 0");
            let id = c.id(plain);
            assert_eq!(&*c.open(&id, &envelope).unwrap(), plain);
            // The codec byte is the first byte of the sealed payload.
            let key = crate::crypto::aead::SealKey::new(
                &crate::crypto::keys::DataKey::from_bytes(zeroize::Zeroizing::new([7; 32]))
                    .derive(crate::crypto::keys::Purpose::ChunkSeal),
            );
            assert_eq!(key.open(&aad(1, 0, &id), &envelope[5..]).unwrap()[0], codec);
        }
        assert_eq!(ENVELOPE_OVERHEAD, 46);
        let ad = crate::ids::hex(&aad(1, 0x0102_0304, &ChunkId([0xab; 32])));
        assert_eq!(ad, format!("0101020304{}", "ab".repeat(32)), "version | epoch | chunk id");
    }
    const GOLDEN_RAW: &str = "\
        0100000000bbede9bc46cc524b83df256e863fd7fd5fa4b84a31944a9f5746dc7e0381e32d20c46b9c392a8c9f610e77\
        ae1be99089d78f96d040b8865655e2bc226ea5b0bc77";
    const GOLDEN_ZSTD: &str = "\
        0100000000b462608d656a1a09781ba56de51f4a80e1c3252c9ac882e2601df953081e4bd2ebe6486d7e60703433971b\
        95bf4cdffae3eff2a2f0344348e1ba4e182bfb402569abb406cc798113135720a8cedabf01fe8768c5eedb960466d4d9\
        4de737f06e";

    #[test]
    fn cache_stays_within_budget() {
        let cache = ChunkCache::new(10);
        for i in 0..5u8 {
            cache.insert(ChunkId([i; 32]), Plain::from(vec![i; 4]));
        }
        assert!(cache.get(&ChunkId([4; 32])).is_some());
        assert!(cache.get(&ChunkId([0; 32])).is_none());
    }

    fn chunk(n: u8, len: usize) -> (ChunkId, Plain) {
        (ChunkId([n; 32]), Plain::from(vec![n; len]))
    }

    /// Read-ahead chunks not yet read outlive chunks read since, but only once.
    #[test]
    fn chunks_read_ahead_are_evicted_after_those_already_read() {
        let cache = ChunkCache::new(10);
        let (a, pa) = chunk(1, 4);
        assert!(cache.reserve_ahead(4));
        cache.insert_ahead(a, 4, Some(pa));
        for n in 2..4 {
            let (id, p) = chunk(n, 4);
            cache.insert(id, p);
        }
        // Over budget: `a` is the oldest but unread, so the chunk read after it went.
        assert!(cache.contains(&a));
        assert!(!cache.contains(&ChunkId([2; 32])));
        // Its second chance used, a chunk nobody reads is evicted like any other.
        for n in 4..7 {
            let (id, p) = chunk(n, 4);
            cache.insert(id, p);
        }
        assert!(!cache.contains(&a));
        assert!(cache.reserve_ahead(5), "an evicted chunk gives its read-ahead share back");
    }

    #[test]
    fn read_ahead_holds_at_most_half_the_budget() {
        let cache = ChunkCache::new(16);
        assert!(cache.reserve_ahead(4) && cache.reserve_ahead(4));
        assert!(!cache.reserve_ahead(4), "8 of 16 bytes are reserved already");
        let (a, pa) = chunk(1, 4);
        cache.insert_ahead(a, 4, Some(pa));
        cache.insert_ahead(ChunkId([2; 32]), 4, None);
        assert!(!cache.reserve_ahead(5));
        assert!(cache.get(&a).is_some());
        assert!(cache.reserve_ahead(5) && cache.reserve_ahead(3), "a chunk read is no longer read-ahead");
        // One chunk is always allowed, however large.
        assert!(ChunkCache::new(16).reserve_ahead(40));
    }
}
