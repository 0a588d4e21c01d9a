//! Stored bytes and compression time of a tree's unique chunks at several zstd levels,
//! under the volume's compression policy (`nanofs::chunk::compress`) and default chunking.
//! Writes nothing to a volume: chunking and compression only, so levels compare on the
//! same chunks in one run.
//!
//!     NANOFS_COMPRESSION_TREE=/path/to/tree cargo bench --bench compression_levels
//!
//! Without the variable it says so and measures nothing (`cargo bench` runs every bench).

use nanofs::chunk::{compress, cut_points, ChunkParams};
use rayon::prelude::*;
use std::collections::HashSet;
use std::time::Instant;

/// Envelope bytes per stored chunk (version, key epoch, nonce, tag, codec).
const ENVELOPE: usize = 46;

fn main() {
    let Some(root) = std::env::var_os("NANOFS_COMPRESSION_TREE") else {
        eprintln!("compression_levels: set NANOFS_COMPRESSION_TREE to a directory to measure");
        return;
    };
    let params = ChunkParams::from_kib(256, 1024, 4096);
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(root)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("readable tree").flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(e.path()),
                Ok(t) if t.is_file() => files.push(e.path()),
                _ => {}
            }
        }
    }
    let (mut seen, mut chunks, mut total) = (HashSet::new(), Vec::new(), 0usize);
    for f in &files {
        let Ok(data) = std::fs::read(f) else { continue };
        total += data.len();
        let mut at = 0;
        for len in cut_points(&data, &params, true) {
            let c = &data[at..at + len];
            at += len;
            if seen.insert(*blake2b_simd::blake2b(c).as_array()) {
                chunks.push(c.to_vec());
            }
        }
    }
    let unique: usize = chunks.iter().map(Vec::len).sum();
    let mib = |b: usize| b as f64 / 1048576.0;
    println!("{} files, {:.1} MiB; {} unique chunks, {:.1} MiB", files.len(), mib(total), chunks.len(), mib(unique));
    println!(
        "| zstd level | stored MiB | vs level 1 | compression s ({} threads) | vs level 1 |",
        rayon::current_num_threads()
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut base = None;
    for level in [1, 2, 3, 4, 5, 6, 9] {
        let t = Instant::now();
        let stored: usize =
            chunks.par_iter().map(|c| compress::compress(c, level).map_or(c.len(), |z| z.len()) + ENVELOPE).sum();
        let secs = t.elapsed().as_secs_f64();
        let (b_stored, b_secs) = *base.get_or_insert((stored, secs));
        println!(
            "| {level} | {:.1} | {:.3} | {secs:.2} | {:.2} |",
            mib(stored),
            stored as f64 / b_stored as f64,
            secs / b_secs
        );
    }
}
