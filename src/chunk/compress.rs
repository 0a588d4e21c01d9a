//! Which chunks are compressed, and how: zstd at the volume's level, skipped for bytes
//! that look random or start like a compressed format, kept when it saves at least 1 %.
//!
//! Media is mostly incompressible: bytes that look random (`looks_random`) are not tried
//! at all, which spares a zstd pass over encrypted, compressed or encoded data (a third of
//! the daemon's CPU on random writes of such data), and neither is a chunk that starts like
//! a compressed format (a `.gz` or `.png` file). Everything else is compressed whole: a
//! probe of a chunk's first 64 KiB, tried before, left 2 % of a tree from `/usr`
//! uncompressed that would have shrunk (docs/benchmarks.md, "compression level and probe";
//! `benches/compression_levels.rs` measures levels on any tree).

use std::cell::RefCell;

/// `plain` compressed with zstd at `level`, if the policy tries it and it saves at least 1 %.
#[must_use]
pub fn compress(plain: &[u8], level: i32) -> Option<Vec<u8>> {
    if plain.len() < 64 || looks_random(plain) || looks_compressed(plain) {
        return None;
    }
    let z = zstd_compress(plain, level)?;
    (z.len() * 100 <= plain.len() * 99).then_some(z)
}

thread_local! {
    /// One zstd context per thread, reused: setting one up cost more than compressing a
    /// small file (a profile of `rsync` of small files had 5 % of the daemon in it).
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Whether `data` looks random: the Shannon entropy of the bytes of 16 slices of 256, taken
/// across it, is at least 7.9 bits per byte (4,096 random bytes measure about 7.95; text
/// about 4.5, machine code about 6), and the slices' 4-byte sequences do not repeat (a
/// periodic run has uniform bytes too, and zstd shrinks it to nothing). Costs a few
/// microseconds, against a zstd pass of about 200 µs per 64 KiB that would find nothing.
pub fn looks_random(data: &[u8]) -> bool {
    const SLICES: usize = 16;
    const SLICE: usize = 256;
    if data.len() < SLICES * SLICE {
        return false;
    }
    let mut counts = [0u32; 256];
    let step = (data.len() - SLICE) / (SLICES - 1);
    for i in 0..SLICES {
        for b in &data[i * step..i * step + SLICE] {
            counts[*b as usize] += 1;
        }
    }
    let n = (SLICES * SLICE) as f64;
    let entropy: f64 = counts.iter().filter(|c| **c > 0).map(|c| f64::from(*c) / n).map(|p| -p * p.log2()).sum();
    if entropy < 7.9 {
        return false;
    }
    // 1,024 sequences hashed into 65,536 bits: random data collides about 8 times.
    let mut seen = [0u64; 1024];
    let mut repeats = 0;
    for i in 0..SLICES {
        for word in data[i * step..i * step + SLICE].chunks_exact(4) {
            let h = (u32::from_le_bytes(word.try_into().expect("4 bytes")).wrapping_mul(0x9E37_79B1) >> 16) as usize;
            repeats += u32::from(seen[h / 64] & (1 << (h % 64)) != 0);
            seen[h / 64] |= 1 << (h % 64);
        }
    }
    repeats <= 64
}

/// Whether `data` starts like a compressed file or media format.
pub fn looks_compressed(data: &[u8]) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"\x1f\x8b",           // gzip
        b"BZh",                // bzip2
        b"\xfd7zXZ\x00",       // xz
        b"\x28\xb5\x2f\xfd",   // zstd
        b"\x04\x22\x4d\x18",   // lz4
        b"PK\x03\x04",         // zip, jar, docx, odt, epub
        b"7z\xbc\xaf\x27\x1c", // 7-zip
        b"\x89PNG",            // PNG
        b"\xff\xd8\xff",       // JPEG
        b"GIF8",               // GIF
        b"OggS",               // Ogg
        b"fLaC",               // FLAC
        b"ID3",                // MP3
    ];
    MAGIC.iter().any(|m| data.starts_with(m))
        || (data.len() >= 12 && &data[4..8] == b"ftyp") // MP4, MOV, HEIC
        || (data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP")
}

fn zstd_compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = zstd::bulk::Compressor::new(level).ok();
        }
        let z = cell.as_mut()?;
        z.set_compression_level(level).ok()?;
        z.compress(data).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_look_random_and_text_code_and_patterns_do_not() {
        let mut random = vec![0u8; 64 << 10];
        crate::crypto::keys::random_bytes(&mut random);
        assert!(looks_random(&random));
        let text = b"The quick brown fox jumps over the lazy dog, again and again. ".repeat(2000);
        assert!(!looks_random(&text));
        let pattern: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        assert!(!looks_random(&pattern), "uniform bytes, but periodic");
        let code = std::fs::read("/proc/self/exe").expect("own binary");
        assert!(!looks_random(&code[..code.len().min(1 << 20)]));
        assert!(!looks_random(&random[..1000]), "too short to judge: compressed as before");
    }
}
