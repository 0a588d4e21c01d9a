//! Per-layer throughput of the data path's primitives, one core each: FastCDC chunking,
//! keyed BLAKE2b ids, zstd, XChaCha20-Poly1305, and the whole chunk seal as shipped.
//!
//! `cargo bench --bench primitives`; figures in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nanofs::chunk::{cut_points, ChunkHasher, ChunkParams, Gear};
use nanofs::config::Compression;
use nanofs::crypto::aead::SealKey;
use nanofs::volume::chunks::ChunkCodec;
use std::hint::black_box;

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    nanofs::crypto::keys::random_bytes(&mut v);
    v
}

fn text(len: usize) -> Vec<u8> {
    (0..)
        .flat_map(|i: u32| format!("{i:>10} frame=ok pts={} dts={}\n", i * 3, i * 3 + 1).into_bytes())
        .take(len)
        .collect()
}

fn chunking(c: &mut Criterion) {
    let data = random(64 << 20);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("fastcdc_256k_1m_4m", |b| b.iter(|| black_box(cut_points(&data, &ChunkParams::default(), true))));
    let keyed = ChunkParams::default().with_gear(Gear::keyed(&[7; 32]));
    g.bench_function("fastcdc_keyed_256k_1m_4m", |b| b.iter(|| black_box(cut_points(&data, &keyed, true))));
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let chunk = random(1 << 20);
    let words = text(1 << 20);
    let mut g = c.benchmark_group("per_chunk_1MiB");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    let hasher = ChunkHasher::new([7; 32]);
    g.bench_function("keyed_blake2b_256", |b| b.iter(|| black_box(hasher.id(&chunk))));
    let mut bp = blake2b_simd::blake2bp::Params::new();
    bp.hash_length(32).key(&[7; 32]);
    g.bench_function("keyed_blake2bp_256", |b| b.iter(|| black_box(bp.hash(&chunk))));
    let key = SealKey::new(&[9; 32]);
    g.bench_function("xchacha20poly1305_seal", |b| b.iter(|| black_box(key.seal(b"aad", &chunk))));
    let sealed = key.seal(b"aad", &chunk);
    g.bench_function("xchacha20poly1305_open", |b| b.iter(|| black_box(key.open(b"aad", &sealed).unwrap())));
    // Baseline: the portable RustCrypto implementation of the same construction.
    {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let reference = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&[9; 32]));
        let nonce = XNonce::from_slice(&sealed[..24]);
        g.bench_function("xchacha20poly1305_seal_rustcrypto", |b| {
            b.iter(|| black_box(reference.encrypt(nonce, Payload { msg: &chunk, aad: b"aad" }).unwrap()))
        });
        g.bench_function("xchacha20poly1305_open_rustcrypto", |b| {
            b.iter(|| black_box(reference.decrypt(nonce, Payload { msg: &sealed[24..], aad: b"aad" }).unwrap()))
        });
    }
    for (name, data) in [("text", &words), ("random", &chunk)] {
        g.bench_with_input(BenchmarkId::new("zstd3_compress", name), data, |b, d| {
            b.iter(|| black_box(zstd::bulk::compress(d, 3).unwrap()))
        });
    }
    // The shipped pipeline: id, compression decision, seal into the envelope.
    let codec =
        ChunkCodec::new(ChunkHasher::new([7; 32]), &nanofs::crypto::keys::Keyring::generate(), Compression::Auto, 3);
    for (name, data) in [("text", &words), ("random", &chunk)] {
        g.bench_with_input(BenchmarkId::new("chunk_pipeline", name), data, |b, d| {
            b.iter(|| {
                let id = codec.id(d);
                black_box(codec.seal(id, d))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, chunking, primitives);
criterion_main!(benches);
