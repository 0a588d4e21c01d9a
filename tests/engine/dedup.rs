//! Deduplication and the space counters, on the engine with its default chunk sizes.
//! (`nanofs gc` and `check` through the daemon of a live mount: `tests/it/dedup.rs`.)

use crate::common::*;
use nanofs::Ino;

/// A volume with the default configuration in a temporary directory.
fn volume() -> (tempfile::TempDir, std::path::PathBuf, nanofs::Volume) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let vol = engine_volume(&dir, "");
    (tmp, dir, vol)
}

#[test]
fn the_same_200_mib_file_twice_grows_storage_by_under_one_percent() {
    let (_tmp, _dir, vol) = volume();
    let first = write_random(&vol, Ino::ROOT, "first.bin", 77, 200 << 20);
    let after_one = vol.stats().unwrap().stored_bytes;
    let second = write_random(&vol, Ino::ROOT, "second.bin", 77, 200 << 20);
    let s = vol.stats().unwrap();
    assert!(after_one >= 200 << 20, "incompressible data is stored in full ({after_one})");
    let growth = (s.stored_bytes - after_one) as f64 / after_one as f64;
    assert!(growth < 0.01, "second copy grew stored bytes by {:.3} %", growth * 100.0);
    assert_eq!(s.logical_bytes, 400 << 20);
    assert!(s.dedup_ratio > 1.98, "{s:?}");
    assert!(holds_random(&vol, second, 77, 200 << 20) && holds_random(&vol, first, 77, 200 << 20));
    vol.close().unwrap();
}

#[test]
fn a_block_repeated_inside_one_large_file_is_stored_once() {
    let (_tmp, _dir, vol) = volume();
    // 16 MiB of random bytes four times in a row: one write window, streamed to packs,
    // with no chunk committed before its repeats are written.
    let block = random_bytes(31, 16 << 20);
    let whole: Vec<u8> = block.iter().copied().cycle().take(64 << 20).collect();
    let ino = write_file(&vol, Ino::ROOT, "repeats.bin", &whole);
    let s = vol.stats().unwrap();
    // Each repeat adds the few chunks across its seam; the rest are the first copy's.
    assert!(s.stored_bytes < 28 << 20, "{s:?}");
    assert!(s.disk_bytes < 40 << 20, "the packs hold each body once: {s:?}");
    assert!(read_all(&vol, ino) == whole);
    assert_clean(&vol, true);
    vol.close().unwrap();
}

#[test]
fn compressible_data_is_stored_smaller_and_reads_back() {
    let (_tmp, dir, vol) = volume();
    let text: Vec<u8> = (0..(20 << 20) / 64).flat_map(|i: u32| format!("{:>63}\n", i % 1000).into_bytes()).collect();
    let ino = write_file(&vol, Ino::ROOT, "log.txt", &text);
    assert!(read_all(&vol, ino) == text);
    let vol = reopen(vol, &dir);
    let s = vol.stats().unwrap();
    assert!(s.stored_bytes < s.logical_bytes / 4, "{s:?}");
    assert!(read_all(&vol, ino) == text);
    vol.close().unwrap();
}

#[test]
fn deleting_files_returns_live_counters_to_zero() {
    let (_tmp, dir, vol) = volume();
    let a = write_random(&vol, Ino::ROOT, "a", 1, 30 << 20);
    let b = vol.create(Ino::ROOT, b"b", nanofs::volume::Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    // What `cp` does on a mount: copy_file_range, which shares the chunks.
    assert_eq!(vol.copy_range(a, 0, b, 0, 30 << 20).unwrap(), 30 << 20);
    vol.unlink(Ino::ROOT, b"a").unwrap();
    vol.unlink(Ino::ROOT, b"b").unwrap();
    let vol = reopen(vol, &dir);
    let s = vol.stats().unwrap();
    assert_eq!((s.logical_bytes, s.chunks, s.stored_bytes), (0, 0, 0), "{s:?}");
    assert!(s.reclaimable_bytes >= 30 << 20, "{s:?}");
    vol.close().unwrap();
}

#[test]
fn gc_frees_the_space_of_deleted_files_but_not_of_live_ones() {
    let (_tmp, dir, vol) = volume();
    let keep = write_random(&vol, Ino::ROOT, "keep", 1, 20 << 20);
    write_random(&vol, Ino::ROOT, "drop", 2, 60 << 20);
    // Shares every chunk with `keep`: deleting it must not free them.
    let copy = vol.create(Ino::ROOT, b"keep-copy", nanofs::volume::Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    vol.copy_range(keep, 0, copy, 0, 20 << 20).unwrap();
    vol.unlink(Ino::ROOT, b"keep-copy").unwrap();
    vol.unlink(Ino::ROOT, b"drop").unwrap();
    let before = vol.stats().unwrap();
    let report = vol.gc().unwrap();
    let after = vol.stats().unwrap();
    assert_eq!(after.reclaimable_bytes, 0, "{after:?}");
    // The deleted file's space is freed: as garbage chunks if its commit (which runs in
    // the background after a large file's close) came before the unlink, otherwise as
    // dead bytes in its pack, which collection rewrites. Only the live 20 MiB remain,
    // with a little overhead.
    assert!(before.disk_bytes - after.disk_bytes >= 40 << 20, "{report:?}");
    assert!(after.disk_bytes < (20 << 20) + (2 << 20), "{after:?} for 20 MiB of live data: {report:?}");
    assert_eq!(after.logical_bytes, 20 << 20);
    // The survivor reads back intact, now and after reopening.
    assert!(holds_random(&vol, keep, 1, 20 << 20));
    let vol = reopen(vol, &dir);
    assert!(holds_random(&vol, keep, 1, 20 << 20));
    assert_clean(&vol, true);
    vol.close().unwrap();
}

/// The plain hashes of a file's chunks: equal sets mean equal cut points.
fn chunk_set(vol: &nanofs::volume::Volume, ino: Ino) -> std::collections::HashSet<[u8; 32]> {
    vol.chunks_by_plain_hash(ino).unwrap().into_keys().collect()
}

/// New volumes draw their chunk boundaries from their key: two volumes cut the same data at
/// different places, neither where FastCDC's public table would; inside one volume the
/// same data written twice is stored once, as before.
#[test]
fn keyed_volumes_cut_the_same_data_differently_and_still_dedup() {
    let data = random_bytes(21, 3 << 20);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut sets = Vec::new();
    for d in &dirs {
        let vol = small_chunk_engine_volume(&d.path().join("v"));
        let first = write_file(&vol, Ino::ROOT, "first", &data);
        let stored = vol.stats().unwrap().stored_bytes;
        let second = write_file(&vol, Ino::ROOT, "second", &data);
        assert_eq!(vol.stats().unwrap().stored_bytes, stored, "the second copy stores nothing");
        assert_eq!(chunk_set(&vol, first), chunk_set(&vol, second));
        sets.push(chunk_set(&vol, first));
        vol.close().unwrap();
    }
    let public: std::collections::HashSet<[u8; 32]> = {
        let params = nanofs::chunk::ChunkParams::from_kib(16, 64, 256);
        let mut at = 0;
        nanofs::chunk::cut_points(&data, &params, true)
            .into_iter()
            .map(|len| {
                at += len;
                nanofs::volume::plain_hash(&data[at - len..at])
            })
            .collect()
    };
    assert!(sets[0].len() > 20, "{} chunks", sets[0].len());
    for (x, y, what) in [(&sets[0], &sets[1], "two volumes"), (&sets[0], &public, "a volume and the public table")] {
        let shared = x.intersection(y).count();
        assert!(shared * 10 < x.len(), "{what} share {shared} of {} chunks", x.len());
    }
}

#[test]
fn chunk_ids_follow_the_volume_s_hash_and_an_unknown_one_is_refused() {
    use nanofs::store::format::META_CHUNK_ID;
    use nanofs::store::{Cf, Durability, OpenMode, Store};
    let set_chunk_id = |dir: &std::path::Path, value: Option<&[u8]>| {
        let store = Store::open(dir, OpenMode::ReadWrite).unwrap();
        let mut batch = store.batch();
        match value {
            Some(v) => batch.put(Cf::Meta, META_CHUNK_ID, v),
            None => batch.delete(Cf::Meta, META_CHUNK_ID),
        }
        store.commit(batch, Durability::Synced).unwrap();
        store.flush_all().unwrap();
    };
    // A new volume (BLAKE2bp) and one as made before `meta/chunk_id` existed (BLAKE2b): in
    // each, data written in one session checks clean in the next, where `check` recomputes
    // every chunk id from its plaintext with the hash the volume names.
    let tmp = tempfile::tempdir().unwrap();
    for (name, made_before) in [("new", false), ("old", true)] {
        let dir = tmp.path().join(name);
        let vol = engine_volume(&dir, "");
        vol.close().unwrap();
        drop(vol);
        if made_before {
            set_chunk_id(&dir, None);
        }
        let vol = open_engine_volume(&dir);
        let ino = write_random(&vol, Ino::ROOT, "film.bin", 5, 3 << 20);
        let vol = reopen(vol, &dir);
        assert!(holds_random(&vol, ino, 5, 3 << 20));
        assert_clean(&vol, true);
        vol.close().unwrap();
        drop(vol);
        // A hash this nanofs does not know is refused, not guessed.
        set_chunk_id(&dir, Some(&7u32.to_be_bytes()));
        let keys =
            nanofs::Volume::unlock(&dir, &nanofs::volume::Credential::Passphrase(ENGINE_PASSPHRASE.to_vec().into()))
                .unwrap();
        let err = nanofs::Volume::open(&dir, keys, &Default::default()).err().expect("refused");
        assert!(err.to_string().contains("unknown chunk id hash"), "{err}");
    }
}

/// A file sent as an upload is (pieces appended and each made durable, as tus PATCHes
/// are) cuts where the same bytes written at once do: each append takes the last chunk
/// back and goes on with the search for its end, and with its hash, where the commit left
/// them.
#[test]
fn a_file_appended_in_synced_pieces_holds_the_chunks_of_one_written_at_once() {
    let (_tmp, _dir, vol) = volume();
    let data = random_bytes(53, 48 << 20);
    let whole = write_file(&vol, Ino::ROOT, "whole.bin", &data);
    let ino = vol.create(Ino::ROOT, b"pieces.bin", nanofs::volume::Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let lens = [3 << 20, 8 << 20, (5 << 20) + 12_345, 1 << 20, 100_000, 9 << 20, 333];
    let mut at = 0;
    for len in lens.iter().copied().cycle() {
        let end = (at + len).min(data.len());
        for piece in data[at..end].chunks(1 << 20) {
            vol.write(ino, at as u64, piece, false, false).unwrap();
            at += piece.len();
        }
        vol.fsync(ino, None).unwrap();
        if at == data.len() {
            break;
        }
    }
    assert_eq!(chunk_set(&vol, ino), chunk_set(&vol, whole));
    assert!(read_all(&vol, ino) == data);
    // The same ids too (the appends hash the chunks they take back no more): the second
    // copy is stored once, and every chunk's plaintext hashes to its id.
    let s = vol.stats().unwrap();
    assert!(s.dedup_ratio > 1.99, "{s:?}");
    assert_clean(&vol, true);
    vol.close().unwrap();
}
