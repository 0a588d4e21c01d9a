//! Chunk bodies: identify, compress, seal into the envelope, and open again; plus the
//! bounded cache of decrypted chunks that serves reads and read-ahead.
//!
//! Envelope: `version u8 | key epoch u32 BE | nonce 24 | ciphertext | tag 16`, plaintext
//! `codec u8 | body`, associated data `version | epoch | chunk id`: a body moved under
//! another id, or altered in any bit, fails to open. A 1 MiB incompressible chunk stores as
//! 1,048,576 + 46 = 1,048,622 bytes.

use crate::chunk::ChunkHasher;
use crate::config::Compression;
use crate::crypto::aead::{SealKey, OVERHEAD};
use crate::ids::ChunkId;
use lru::LruCache;
use std::sync::{Arc, Mutex};

/// Version byte of the chunk envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// Key epoch written into new envelopes.
pub const CURRENT_EPOCH: u32 = 0;
/// Bytes an envelope adds to a raw body: header 5, codec 1, nonce 24, tag 16.
pub const ENVELOPE_OVERHEAD: usize = 5 + 1 + OVERHEAD;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
/// Bytes of a chunk compressed to decide whether the whole chunk is worth compressing.
const SAMPLE: usize = 64 << 10;

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
    seal: SealKey,
    compression: Compression,
    level: i32,
}

/// A chunk ready to store.
pub struct SealedChunk {
    /// Its id.
    pub id: ChunkId,
    /// Plaintext length.
    pub plain_len: u32,
    /// The envelope.
    pub envelope: Vec<u8>,
}

impl ChunkCodec {
    /// A codec with the volume's id hasher, seal key and compression policy.
    #[must_use]
    pub fn new(hasher: ChunkHasher, seal: SealKey, compression: Compression, level: i32) -> Self {
        Self { hasher, seal, compression, level }
    }

    /// The id of `plain`.
    #[must_use]
    pub fn id(&self, plain: &[u8]) -> ChunkId {
        self.hasher.id(plain)
    }

    /// Compresses (when it pays) and seals `plain` whose id is `id`.
    #[must_use]
    pub fn seal(&self, id: ChunkId, plain: &[u8]) -> SealedChunk {
        let mut payload = Vec::with_capacity(plain.len() + 1);
        match self.compress(plain) {
            Some(z) => {
                payload.push(CODEC_ZSTD);
                payload.extend_from_slice(&z);
            }
            None => {
                payload.push(CODEC_RAW);
                payload.extend_from_slice(plain);
            }
        }
        let mut envelope = Vec::with_capacity(5 + OVERHEAD + payload.len());
        envelope.push(ENVELOPE_VERSION);
        envelope.extend_from_slice(&CURRENT_EPOCH.to_be_bytes());
        let aad = aad(ENVELOPE_VERSION, CURRENT_EPOCH, &id);
        self.seal.seal_into(&aad, &payload, &mut envelope);
        SealedChunk { id, plain_len: plain.len() as u32, envelope }
    }

    /// zstd output when a sample shows at least 10 % saving and the whole chunk confirms it.
    fn compress(&self, plain: &[u8]) -> Option<Vec<u8>> {
        if self.compression == Compression::Off || plain.len() < 512 {
            return None;
        }
        // Media is mostly incompressible: a 64 KiB probe at level 1 costs little and spares
        // compressing the whole chunk for nothing.
        let sample = &plain[..plain.len().min(SAMPLE)];
        let probe = zstd::bulk::compress(sample, 1).ok()?;
        if probe.len() * 10 > sample.len() * 9 {
            return None;
        }
        let z = zstd::bulk::compress(plain, self.level).ok()?;
        (z.len() * 10 <= plain.len() * 9).then_some(z)
    }

    /// Opens an envelope stored under `id`.
    pub fn open(&self, id: &ChunkId, envelope: &[u8]) -> Result<Vec<u8>, OpenError> {
        if envelope.len() < 5 + OVERHEAD + 1 || envelope[0] != ENVELOPE_VERSION {
            return Err(OpenError::Malformed);
        }
        let epoch = u32::from_be_bytes(envelope[1..5].try_into().expect("4 bytes"));
        if epoch != CURRENT_EPOCH {
            return Err(OpenError::Malformed);
        }
        let payload = self.seal.open(&aad(envelope[0], epoch, id), &envelope[5..]).map_err(|_| OpenError::Auth)?;
        match payload[0] {
            CODEC_RAW => {
                let mut p = payload;
                p.remove(0);
                Ok(p)
            }
            CODEC_ZSTD => zstd::stream::decode_all(&payload[1..]).map_err(|_| OpenError::Malformed),
            _ => Err(OpenError::Malformed),
        }
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
pub struct ChunkCache {
    inner: Mutex<CacheInner>,
    budget: usize,
}

struct CacheInner {
    lru: LruCache<ChunkId, Arc<[u8]>>,
    bytes: usize,
}

impl ChunkCache {
    /// A cache holding at most `budget` bytes of plaintext.
    #[must_use]
    pub fn new(budget: usize) -> Self {
        Self { inner: Mutex::new(CacheInner { lru: LruCache::unbounded(), bytes: 0 }), budget }
    }

    /// The cached plaintext of `id`.
    pub fn get(&self, id: &ChunkId) -> Option<Arc<[u8]>> {
        self.inner.lock().expect("cache lock").lru.get(id).cloned()
    }

    /// Whether `id` is cached (without touching its recency).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.inner.lock().expect("cache lock").lru.contains(id)
    }

    /// Adds a chunk, evicting old ones beyond the budget.
    pub fn insert(&self, id: ChunkId, plain: Arc<[u8]>) {
        let mut c = self.inner.lock().expect("cache lock");
        c.bytes += plain.len();
        if let Some(old) = c.lru.put(id, plain) {
            c.bytes -= old.len();
        }
        while c.bytes > self.budget {
            match c.lru.pop_lru() {
                Some((_, v)) => c.bytes -= v.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(c: Compression) -> ChunkCodec {
        ChunkCodec::new(ChunkHasher::new([1; 32]), SealKey::new(&[2; 32]), c, 3)
    }

    #[test]
    fn compressible_chunks_shrink_and_round_trip() {
        let c = codec(Compression::Auto);
        let plain = b"frame ".repeat(100_000);
        let id = c.id(&plain);
        let s = c.seal(id, &plain);
        assert!(s.envelope.len() < plain.len() / 10);
        assert_eq!(c.open(&id, &s.envelope).unwrap(), plain);
    }

    #[test]
    fn incompressible_chunks_cost_the_fixed_overhead() {
        let c = codec(Compression::Auto);
        let mut plain = vec![0u8; 1 << 20];
        crate::crypto::keys::random_bytes(&mut plain);
        let id = c.id(&plain);
        let s = c.seal(id, &plain);
        assert_eq!(s.envelope.len(), plain.len() + ENVELOPE_OVERHEAD);
        assert_eq!(c.open(&id, &s.envelope).unwrap(), plain);
    }

    #[test]
    fn tampered_or_moved_envelope_fails() {
        let c = codec(Compression::Off);
        let plain = vec![5u8; 4096];
        let id = c.id(&plain);
        let mut s = c.seal(id, &plain).envelope;
        let other = c.id(b"other");
        assert_eq!(c.open(&other, &s), Err(OpenError::Auth));
        let n = s.len();
        s[n / 2] ^= 0x40;
        assert_eq!(c.open(&id, &s), Err(OpenError::Auth));
        assert_eq!(c.open(&id, &s[..10]), Err(OpenError::Malformed));
    }

    #[test]
    fn cache_stays_within_budget() {
        let cache = ChunkCache::new(10);
        for i in 0..5u8 {
            cache.insert(ChunkId([i; 32]), Arc::from(vec![i; 4]));
        }
        assert!(cache.get(&ChunkId([4; 32])).is_some());
        assert!(cache.get(&ChunkId([0; 32])).is_none());
    }
}
