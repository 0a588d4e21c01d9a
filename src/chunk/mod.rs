//! Content-defined chunking (FastCDC 2020) and chunk identity (keyed BLAKE2b-256).
//!
//! Pure functions, no I/O. Boundaries depend only on content and the gear table, so an
//! insertion shifts the cut points near it and the rest of the file resynchronises and
//! deduplicates. The gear table of a new volume is drawn from its key (`Gear::keyed`), so
//! that the sequence of chunk sizes of a known file does not show whether a volume holds it
//! (docs/crypto.md); volumes made before that keep the public table of FastCDC. Ids are
//! keyed with a secret derived from the data key, so an id reveals nothing about content to
//! someone without the key.

pub mod compress;

use crate::ids::ChunkId;
use fastcdc::v2020::{get_gear_with_seed, select_masks, Normalization};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

/// FastCDC parameters: sizes in bytes and the gear table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkParams {
    /// No cut before this many bytes (except at the end of the data).
    pub min: usize,
    /// Target mean chunk size.
    pub avg: usize,
    /// A cut is forced at this many bytes.
    pub max: usize,
    /// The table the rolling hash draws from.
    pub gear: Gear,
}

impl ChunkParams {
    /// From the `[media.deduplication]` sizes in KiB, with the public gear table.
    #[must_use]
    pub fn from_kib(min: u32, avg: u32, max: u32) -> Self {
        Self { min: min as usize * 1024, avg: avg as usize * 1024, max: max as usize * 1024, gear: Gear::Public }
    }

    /// The same sizes with another gear table.
    #[must_use]
    pub fn with_gear(self, gear: Gear) -> Self {
        Self { gear, ..self }
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::from_kib(256, 1024, 4096)
    }
}

/// The gear table of FastCDC's rolling hash, which decides where chunks are cut.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Gear {
    /// The table published with FastCDC (and the `fastcdc` crate): the same for everyone.
    #[default]
    Public,
    /// 256 entries drawn from a volume's secret.
    Keyed(Arc<GearTables>),
}

/// A gear table and its left-shifted twin (FastCDC 2020, section 3.7).
#[derive(PartialEq, Eq)]
pub struct GearTables {
    gear: [u64; 256],
    gear_ls: [u64; 256],
}

/// A gear table and its shifted twin as the `fastcdc` crate hands out its own.
type CrateTables = (Cow<'static, [u64]>, Cow<'static, [u64]>);
static PUBLIC: LazyLock<CrateTables> = LazyLock::new(|| get_gear_with_seed(0));

impl Gear {
    /// The table of a volume whose chunker key is `key`. Format: entry `4j + k` is bytes
    /// `8k..8k+8`, little-endian, of keyed BLAKE2b-256(key, the byte `j`), for j in 0..64.
    ///
    /// Every entry is independent and secret. fastcdc's own seed (`with_level_and_seed`)
    /// only XORs the public table with one u64, which keeps the XOR of any two entries
    /// public and leaves 64 bits to guess.
    #[must_use]
    pub fn keyed(key: &[u8; 32]) -> Self {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(32).key(key);
        let mut gear = [0u64; 256];
        for (j, four) in gear.chunks_exact_mut(4).enumerate() {
            let hash = params.hash(&[j as u8]);
            for (k, entry) in four.iter_mut().enumerate() {
                *entry = u64::from_le_bytes(hash.as_bytes()[8 * k..8 * k + 8].try_into().expect("8 bytes"));
            }
        }
        Gear::Keyed(Arc::new(GearTables { gear, gear_ls: gear.map(|g| g << 1) }))
    }

    fn tables(&self) -> (&[u64], &[u64]) {
        match self {
            Gear::Public => (&PUBLIC.0, &PUBLIC.1),
            Gear::Keyed(t) => (&t.gear, &t.gear_ls),
        }
    }
}

impl std::fmt::Debug for Gear {
    // The entries are secret: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gear::Public => "Gear::Public",
            Gear::Keyed(_) => "Gear::Keyed",
        })
    }
}

/// Lengths of the chunks that `data` splits into.
///
/// With `at_end == false` the data is a prefix of a longer stream: the last piece, whose
/// cut point more data could still move, is not returned. Every returned length is final.
#[must_use]
pub fn cut_points(data: &[u8], params: &ChunkParams, at_end: bool) -> Vec<usize> {
    cut_points_from(data, params, at_end, &mut Scan::default())
}

/// Where the search for the end of a chunk stopped when the bytes ran out: the rolling
/// hash and the next pair of bytes to test. A stream cut in steps goes on from there
/// instead of scanning the uncut piece again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan(Option<(u64, usize)>);

/// `cut_points` of `data`, whose first piece was scanned up to where `scan` says by an
/// earlier call on a shorter prefix of the same bytes (`Scan::default()`: not at all).
/// Leaves in `scan` where the search stopped in the piece after the returned ones.
#[must_use]
pub fn cut_points_from(data: &[u8], params: &ChunkParams, at_end: bool, scan: &mut Scan) -> Vec<usize> {
    let (gear, gear_ls) = params.gear.tables();
    let tables: (&[u64; 256], &[u64; 256]) =
        (gear.try_into().expect("256 gear entries"), gear_ls.try_into().expect("256 gear entries"));
    let masks = select_masks(params.avg, Normalization::Level1);
    let mut lengths = Vec::with_capacity(data.len() / params.avg + 1);
    let mut start = 0;
    while let Some(len) = find_cut(&data[start..], params, masks, tables, scan) {
        lengths.push(len);
        start += len;
        *scan = Scan::default();
    }
    if at_end && start < data.len() {
        lengths.push(data.len() - start);
        *scan = Scan::default();
    }
    lengths
}

/// The length of the chunk that starts `data`, if its end lies in `data`: where FastCDC
/// 2020 cuts (`fastcdc::v2020::cut_gear`, the same tests in the same order, so the same
/// boundaries), or at `max`. `None` when the bytes run out first; `scan` then says where
/// to go on from.
fn find_cut(
    data: &[u8],
    params: &ChunkParams,
    (mask_s, mask_l): (u64, u64),
    (gear, gear_ls): (&[u64; 256], &[u64; 256]),
    scan: &mut Scan,
) -> Option<usize> {
    if data.len() <= params.min {
        return None;
    }
    let remaining = data.len().min(params.max);
    // Bytes are tested in pairs: the strict mask up to the normal size, the loose one after.
    let (limit1, limit2) = (params.avg.min(remaining) / 2, remaining / 2);
    let mut at = scan.0.unwrap_or((0, params.min / 2));
    for (limit, mask) in [(limit1, mask_s), (limit2, mask_l)] {
        at = match scan_to(data, at, limit, mask, (gear, gear_ls)) {
            Ok(at) => at,
            Err(cut) => return Some(cut),
        };
    }
    if remaining == params.max {
        return Some(remaining);
    }
    *scan = Scan(Some(at));
    None
}

/// FastCDC 2020's pair loop from pair `index` (with the rolling `hash` of the bytes before)
/// up to pair `limit`, under one `mask`: `Ok` with the hash and pair where it stopped, or
/// `Err` with the cut.
///
/// Two pairs a step, with the same hashes and tests in the same order: only `hash << 4`
/// plus the sum of the four gear terms waits for the previous hash, the rest is computed
/// beside it, so the scan is not held to one dependent shift and add per byte. A last
/// single pair goes the plain way.
#[inline(always)]
fn scan_to(
    data: &[u8],
    (mut hash, index): (u64, usize),
    limit: usize,
    mask: u64,
    (gear, gear_ls): (&[u64; 256], &[u64; 256]),
) -> Result<(u64, usize), usize> {
    let mask_ls = mask << 1;
    let quads = limit.saturating_sub(index) / 2;
    let start = index * 2;
    for (k, q) in data[start..start + quads * 4].chunks_exact(4).enumerate() {
        // The pair loop: e = (h << 2) + gear_ls[q0], tested against the shifted mask;
        // o = e + gear[q1]; twice.
        let s0 = gear_ls[q[0] as usize];
        let s1 = s0.wrapping_add(gear[q[1] as usize]);
        let s2 = (s1 << 2).wrapping_add(gear_ls[q[2] as usize]);
        let s3 = s2.wrapping_add(gear[q[3] as usize]);
        let (h2, h4) = (hash << 2, hash << 4);
        let a = start + 4 * k;
        if h2.wrapping_add(s0) & mask_ls == 0 {
            return Err(a);
        }
        if h2.wrapping_add(s1) & mask == 0 {
            return Err(a + 1);
        }
        if h4.wrapping_add(s2) & mask_ls == 0 {
            return Err(a + 2);
        }
        hash = h4.wrapping_add(s3);
        if hash & mask == 0 {
            return Err(a + 3);
        }
    }
    let mut index = index + quads * 2;
    if index < limit {
        let a = index * 2;
        hash = (hash << 2).wrapping_add(gear_ls[data[a] as usize]);
        if hash & mask_ls == 0 {
            return Err(a);
        }
        hash = hash.wrapping_add(gear[data[a + 1] as usize]);
        if hash & mask == 0 {
            return Err(a + 1);
        }
        index += 1;
    }
    Ok((hash, index))
}

/// Computes chunk ids under the volume's id key: keyed BLAKE2bp-256 in new volumes, keyed
/// BLAKE2b-256 (RFC 7693) in volumes made before (`meta/chunk_id`).
///
/// `blake2b_simd` rather than `blake2`: the same functions (the golden tests pin ids), but
/// with AVX2 chosen at run time, and hashing is the largest cost of writing
/// (docs/benchmarks.md). BLAKE2bp runs four BLAKE2b lanes side by side: 2.2x BLAKE2b's
/// rate on one core here.
#[derive(Clone)]
pub struct ChunkHasher {
    hash: ChunkHash,
}

/// The keyed hash of chunk ids: BLAKE2b-256 in volumes made before BLAKE2bp-256 (same
/// family, four lanes in parallel) became the default.
#[derive(Clone)]
enum ChunkHash {
    Blake2b(blake2b_simd::Params),
    Blake2bp(blake2b_simd::blake2bp::Params),
}

impl ChunkHasher {
    /// A keyed BLAKE2b-256 hasher with a 32-byte secret (derived from the data key): the
    /// chunk ids of volumes made before BLAKE2bp.
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(32).key(&key);
        Self { hash: ChunkHash::Blake2b(params) }
    }

    /// A keyed BLAKE2bp-256 hasher: the chunk ids of new volumes.
    #[must_use]
    pub fn parallel(key: [u8; 32]) -> Self {
        let mut params = blake2b_simd::blake2bp::Params::new();
        params.hash_length(32).key(&key);
        Self { hash: ChunkHash::Blake2bp(params) }
    }

    /// A running hash for a chunk whose plaintext comes in parts: its `id` is `id` of
    /// their concatenation.
    #[must_use]
    pub fn state(&self) -> IdState {
        match &self.hash {
            ChunkHash::Blake2b(p) => IdState::Blake2b(Box::new(p.to_state())),
            ChunkHash::Blake2bp(p) => IdState::Blake2bp(Box::new(p.to_state())),
        }
    }

    /// The id of a chunk with this plaintext.
    #[must_use]
    pub fn id(&self, plaintext: &[u8]) -> ChunkId {
        let hash = match &self.hash {
            ChunkHash::Blake2b(p) => p.hash(plaintext),
            ChunkHash::Blake2bp(p) => p.hash(plaintext),
        };
        ChunkId(hash.as_bytes().try_into().expect("32-byte hash"))
    }
}

/// The hash of a chunk's first bytes (`ChunkHasher::state`), kept to go on with: an
/// append that takes a long write's last chunk back does not hash it again.
#[derive(Clone)]
pub enum IdState {
    /// BLAKE2b-256.
    Blake2b(Box<blake2b_simd::State>),
    /// BLAKE2bp-256.
    Blake2bp(Box<blake2b_simd::blake2bp::State>),
}

impl IdState {
    /// Hashes the next bytes of the chunk.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Blake2b(s) => {
                s.update(data);
            }
            Self::Blake2bp(s) => {
                s.update(data);
            }
        }
    }

    /// The id of the chunk of the bytes hashed so far; more may follow.
    #[must_use]
    pub fn id(&self) -> ChunkId {
        let hash = match self {
            Self::Blake2b(s) => s.finalize(),
            Self::Blake2bp(s) => s.finalize(),
        };
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
        let lens = cut_points(&data, &p, true);
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
        let lens = cut_points(&data, &ChunkParams::default(), true);
        let hasher = ChunkHasher::new([7; 32]);
        let first = hasher.id(&data[..lens[0]]);
        assert_eq!(lens.len(), GOLDEN_COUNT, "chunk count changed");
        assert_eq!(&lens[..4], &GOLDEN_FIRST_LENS, "chunk boundaries changed");
        assert_eq!(first.to_hex(), GOLDEN_FIRST_ID, "keyed BLAKE2b changed");
    }
    const GOLDEN_COUNT: usize = 27;
    const GOLDEN_FIRST_LENS: [usize; 4] = [1_368_193, 1_560_625, 1_106_833, 881_364];
    const GOLDEN_FIRST_ID: &str = "eea8e734ecd88cedb4b1167800031d5b14a64b66664378b2f6d3a3e213f5156b";

    /// The cut points of the `fastcdc` crate's own scan, which `find_cut` follows.
    fn crate_cut_points(data: &[u8], params: &ChunkParams) -> Vec<usize> {
        let (gear, gear_ls) = params.gear.tables();
        let (mask_s, mask_l) = select_masks(params.avg, Normalization::Level1);
        let mut lengths = vec![];
        let mut start = 0;
        while start < data.len() {
            let (_, len) = fastcdc::v2020::cut_gear(
                &data[start..],
                params.min,
                params.avg,
                params.max,
                mask_s,
                mask_l,
                mask_s << 1,
                mask_l << 1,
                gear,
                gear_ls,
            );
            lengths.push(len);
            start += len;
        }
        lengths
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Cutting a stream in steps, each going on from the last one's `Scan`, gives the
        /// boundaries of cutting it whole, which are those of the `fastcdc` crate.
        #[test]
        fn a_stream_cut_in_steps_cuts_as_the_crate_cuts_it_whole(
            seed in any::<u64>(),
            len in 0usize..600_000,
            steps in proptest::collection::vec(1usize..90_000, 1..12),
            keyed in any::<bool>(),
            low_entropy in any::<bool>(),
        ) {
            let mut data = stream(seed, len);
            if low_entropy {
                // Runs of equal bytes: chunks forced at the maximum size.
                data.iter_mut().enumerate().for_each(|(i, b)| *b = if (i / 70_000) % 2 == 0 { 0 } else { *b });
            }
            let mut p = ChunkParams::from_kib(8, 32, 64);
            if keyed {
                p = p.with_gear(Gear::keyed(&[3; 32]));
            }
            let whole = cut_points(&data, &p, true);
            prop_assert_eq!(&whole, &crate_cut_points(&data, &p));
            let (mut lens, mut start, mut end, mut scan) = (vec![], 0, 0, Scan::default());
            for step in steps.iter().cycle() {
                end = (end + step).min(data.len());
                let at_end = end == data.len();
                let cut = cut_points_from(&data[start..end], &p, at_end, &mut scan);
                start += cut.iter().sum::<usize>();
                lens.extend(cut);
                if at_end {
                    break;
                }
            }
            prop_assert_eq!(lens, whole);
        }
    }

    #[test]
    fn prefix_cuts_are_final() {
        let data = stream(3, 12 << 20);
        for p in [ChunkParams::default(), ChunkParams::default().with_gear(Gear::keyed(&[5; 32]))] {
            let whole = cut_points(&data, &p, true);
            let prefix = cut_points(&data[..7 << 20], &p, false);
            assert_eq!(&whole[..prefix.len()], &prefix[..]);
        }
    }

    /// The boundaries of a keyed volume are pinned too (key `[5; 32]`): a change of the
    /// table's derivation would stop dedup against everything such volumes hold.
    #[test]
    fn golden_keyed_boundaries() {
        let data = stream(42, 32 << 20);
        let p = ChunkParams::default().with_gear(Gear::keyed(&[5; 32]));
        let lens = cut_points(&data, &p, true);
        assert_eq!(lens.len(), GOLDEN_KEYED_COUNT, "chunk count changed");
        assert_eq!(&lens[..4], &GOLDEN_KEYED_FIRST_LENS, "chunk boundaries changed");
        let Gear::Keyed(t) = &p.gear else { unreachable!() };
        // Entries 0 and 255, from keyed BLAKE2b computed independently (Python's hashlib).
        assert_eq!((t.gear[0], t.gear[255]), (0x8773_e50e_445d_0015, 0xb6be_5778_6cd0_1b57));
        assert!(t.gear.iter().zip(&t.gear_ls).all(|(g, ls)| *ls == g << 1));
    }
    const GOLDEN_KEYED_COUNT: usize = 28;
    const GOLDEN_KEYED_FIRST_LENS: [usize; 4] = [665_228, 1_305_567, 3_297_008, 303_957];

    /// Set of chunk end offsets.
    fn ends(data: &[u8], p: &ChunkParams) -> std::collections::HashSet<usize> {
        cut_points(data, p, true)
            .iter()
            .scan(0, |s, l| {
                *s += l;
                Some(*s)
            })
            .collect()
    }

    /// The point of keying: two volumes (and the public table) cut the same data at
    /// different places, so a chunk-size sequence says nothing without the key. Within one
    /// key, the same data cuts the same way (dedup).
    #[test]
    fn different_keys_cut_the_same_data_differently() {
        let data = stream(9, 8 << 20);
        let sizes = ChunkParams::from_kib(16, 64, 256);
        let public = ends(&data, &sizes);
        let a = ends(&data, &sizes.clone().with_gear(Gear::keyed(&[1; 32])));
        let b = ends(&data, &sizes.clone().with_gear(Gear::keyed(&[2; 32])));
        assert_eq!(a, ends(&data, &sizes.clone().with_gear(Gear::keyed(&[1; 32]))));
        for (x, y, what) in [(&a, &b, "two keys"), (&a, &public, "key and public table")] {
            let shared = x.intersection(y).count();
            // Of about 128 cut points a few coincide by chance; the end of the data always does.
            assert!(shared * 10 < x.len(), "{what}: {shared} of {} cut points shared", x.len());
        }
    }

    #[test]
    fn golden_chunk_ids() {
        // BLAKE2b-256 as Python's hashlib.blake2b(data, key=bytes([1] * 32), digest_size=32);
        // BLAKE2bp-256 as blake2b_simd computes it (tested by its crate against the reference
        // vectors): a volume's ids must never change under it.
        assert_eq!(
            crate::ids::hex(&ChunkHasher::new([1; 32]).id(b"nanofs chunk").0),
            "22bd02ffa5ea37621cf47aff4905904a42ce514392044301e4e82769bbeb0bfc"
        );
        assert_eq!(
            crate::ids::hex(&ChunkHasher::parallel([1; 32]).id(b"nanofs chunk").0),
            "338b6cd20772e6a1f38d48ac463098c1a940aaa0f974707db50a23ffbb0bb993"
        );
    }

    proptest! {
        #[test]
        fn an_id_hashed_in_parts_is_the_id_of_the_whole(data in proptest::collection::vec(any::<u8>(), 0..5000), cuts in proptest::collection::vec(0usize..5000, 0..4), parallel: bool) {
            let h = if parallel { ChunkHasher::parallel([9; 32]) } else { ChunkHasher::new([9; 32]) };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut state = h.state();
            let mut at = 0;
            for c in cuts {
                state.update(&data[at..c]);
                at = c;
                // Asked midway, and the hashing goes on.
                prop_assert_eq!(state.id(), h.id(&data[..c]));
            }
            state.update(&data[at..]);
            prop_assert_eq!(state.id(), h.id(&data));
        }
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
        fn boundaries_resynchronise_after_insertion(seed: u64, at in 0usize..(6 << 20), insert in proptest::collection::vec(any::<u8>(), 1..5000), keyed: bool) {
            let p = ChunkParams::from_kib(16, 64, 256);
            let p = if keyed { p.with_gear(Gear::keyed(&[seed as u8; 32])) } else { p };
            let data = stream(seed, 8 << 20);
            let mut edited = data[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&data[at..]);
            let ends = |d: &[u8]| cut_points(d, &p, true).iter().scan(0, |s, l| { *s += l; Some(*s) }).collect::<Vec<_>>();
            let before: std::collections::HashSet<usize> = ends(&data).into_iter().filter(|e| *e > at + 2 * p.max).collect();
            let after: std::collections::HashSet<usize> = ends(&edited).into_iter().map(|e| e - insert.len()).filter(|e| *e > at + 2 * p.max).collect();
            let common = before.intersection(&after).count();
            prop_assert!(common + 2 >= before.len(), "only {common} of {} later cut points survived", before.len());
        }
    }
}
