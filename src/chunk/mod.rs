//! Content-defined chunking (FastCDC 2020) and chunk identity (keyed BLAKE2b-256).
//!
//! Pure functions, no I/O. Boundaries depend only on content, so an insertion shifts the
//! cut points near it and the rest of the file resynchronises and deduplicates. Ids are
//! keyed with a secret derived from the data key, so an id reveals nothing about content to
//! someone without the key.

use crate::ids::ChunkId;

/// FastCDC size parameters, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// No cut before this many bytes (except at the end of the data).
    pub min: usize,
    /// Target mean chunk size.
    pub avg: usize,
    /// A cut is forced at this many bytes.
    pub max: usize,
}

impl ChunkParams {
    /// From the `[media.deduplication]` sizes in KiB.
    #[must_use]
    pub fn from_kib(min: u32, avg: u32, max: u32) -> Self {
        Self { min: min as usize * 1024, avg: avg as usize * 1024, max: max as usize * 1024 }
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::from_kib(256, 1024, 4096)
    }
}

/// Lengths of the chunks that `data` splits into.
///
/// With `at_end == false` the data is a prefix of a longer stream: the last piece is not
/// returned, because more data could move its cut point. Every returned length is final.
#[must_use]
pub fn cut_points(data: &[u8], params: ChunkParams, at_end: bool) -> Vec<usize> {
    let mut lengths: Vec<usize> =
        fastcdc::v2020::FastCDC::new(data, params.min, params.avg, params.max).map(|c| c.length).collect();
    if !at_end {
        lengths.pop();
    }
    lengths
}

/// Computes chunk ids under the volume's id key: keyed BLAKE2b-256 (RFC 7693).
///
/// `blake2b_simd` rather than `blake2`: same function (the golden test pins an id), but with
/// AVX2 chosen at run time it hashes about twice as fast, and hashing is the largest cost of
/// writing (docs/benchmarks.md).
#[derive(Clone)]
pub struct ChunkHasher {
    params: blake2b_simd::Params,
}

impl ChunkHasher {
    /// A hasher keyed with a 32-byte secret (derived from the data key).
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(32).key(&key);
        Self { params }
    }

    /// The id of a chunk with this plaintext.
    #[must_use]
    pub fn id(&self, plaintext: &[u8]) -> ChunkId {
        let hash = self.params.hash(plaintext);
        ChunkId(hash.as_bytes().try_into().expect("32-byte hash"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift), so golden values never depend on a crate.
    fn stream(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_data_within_bounds() {
        let data = stream(7, 32 << 20);
        let p = ChunkParams::default();
        let lens = cut_points(&data, p, true);
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        for l in &lens[..lens.len() - 1] {
            assert!((p.min..=p.max).contains(l), "chunk of {l} bytes");
        }
        let mean = data.len() / lens.len();
        assert!((p.avg / 2..p.avg * 2).contains(&mean), "mean chunk {mean}");
    }

    /// Pins the boundaries of a seeded 32 MiB stream: a fastcdc upgrade that moved them
    /// would silently stop new data from deduplicating against old data.
    #[test]
    fn golden_boundaries() {
        let data = stream(42, 32 << 20);
        let lens = cut_points(&data, ChunkParams::default(), true);
        let hasher = ChunkHasher::new([7; 32]);
        let first = hasher.id(&data[..lens[0]]);
        assert_eq!(lens.len(), GOLDEN_COUNT, "chunk count changed");
        assert_eq!(&lens[..4], &GOLDEN_FIRST_LENS, "chunk boundaries changed");
        assert_eq!(first.to_hex(), GOLDEN_FIRST_ID, "keyed BLAKE2b changed");
    }
    const GOLDEN_COUNT: usize = 27;
    const GOLDEN_FIRST_LENS: [usize; 4] = [1_368_193, 1_560_625, 1_106_833, 881_364];
    const GOLDEN_FIRST_ID: &str = "eea8e734ecd88cedb4b1167800031d5b14a64b66664378b2f6d3a3e213f5156b";

    #[test]
    fn prefix_cuts_are_final() {
        let data = stream(3, 12 << 20);
        let p = ChunkParams::default();
        let whole = cut_points(&data, p, true);
        let prefix = cut_points(&data[..7 << 20], p, false);
        assert_eq!(&whole[..prefix.len()], &prefix[..]);
    }

    #[test]
    fn id_depends_on_key_and_content() {
        let a = ChunkHasher::new([1; 32]);
        let b = ChunkHasher::new([2; 32]);
        assert_ne!(a.id(b"x"), b.id(b"x"));
        assert_ne!(a.id(b"x"), a.id(b"y"));
        assert_eq!(a.id(b"x"), a.id(b"x"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// An insertion changes only the chunks near it: the cut points after it come back.
        #[test]
        fn boundaries_resynchronise_after_insertion(seed: u64, at in 0usize..(6 << 20), insert in proptest::collection::vec(any::<u8>(), 1..5000)) {
            let p = ChunkParams::from_kib(16, 64, 256);
            let data = stream(seed, 8 << 20);
            let mut edited = data[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&data[at..]);
            let ends = |d: &[u8]| cut_points(d, p, true).iter().scan(0, |s, l| { *s += l; Some(*s) }).collect::<Vec<_>>();
            let before: std::collections::HashSet<usize> = ends(&data).into_iter().filter(|e| *e > at + 2 * p.max).collect();
            let after: std::collections::HashSet<usize> = ends(&edited).into_iter().map(|e| e - insert.len()).filter(|e| *e > at + 2 * p.max).collect();
            let common = before.intersection(&after).count();
            prop_assert!(common + 2 >= before.len(), "only {common} of {} later cut points survived", before.len());
        }
    }
}
