//! A damaged chunk is an error and a log line, never wrong bytes; `check` finds damaged
//! chunks and wrong counts and repairs what can be derived. (`EIO` and the daemon's log
//! line through a mount, and `nanofs check --repair`: `tests/it/corrupt.rs`.)

use crate::common::*;
use nanofs::store::keys::{RefRecord, SpaceCounters};
use nanofs::store::{Batch, Cf, Durability, OpenMode, Store};
use nanofs::volume::{Error, Volume};
use nanofs::Ino;
use std::path::Path;

use nanofs::ids::hex;

/// Reads all of `ino` and expects the damage: `Error::Corrupt` naming `chunk` and the
/// inode, and a log line, never bytes.
fn assert_read_fails(vol: &Volume, ino: Ino, chunk: &[u8]) {
    let (result, log) = capture_logs(|| {
        let size = vol.getattr(ino).unwrap().inode.size;
        (0..size).step_by(1 << 20).map(|at| vol.read(ino, at, 1 << 20).map(|p| p.len())).find(Result::is_err)
    });
    match result {
        Some(Err(Error::Corrupt { chunk: c, ino: i })) => {
            assert_eq!((c.to_hex(), i), (hex(chunk), ino), "the error names the chunk and the inode");
        }
        other => panic!("reading a damaged file gave {other:?}"),
    }
    assert!(log.contains("failed verification") && log.contains(&hex(chunk)), "no log line for the damage:\n{log}");
}

#[test]
fn a_flipped_byte_in_a_stored_chunk_is_an_error_and_check_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let vol = engine_volume(&dir, "");
    let victim = write_file(&vol, Ino::ROOT, "victim.bin", &random_bytes(8, 3 << 20));
    let bystander = write_file(&vol, Ino::ROOT, "bystander.txt", b"unharmed");
    vol.close().unwrap();
    drop(vol);

    // Damage the largest chunk body (the victim's first chunk, not the small bystander).
    let store = Store::open(&dir, OpenMode::ReadWrite).unwrap();
    let (key, mut value) =
        store.scan(Cf::Chunks, &[], &[]).map(|kv| kv.unwrap()).max_by_key(|(_, v)| v.len()).expect("chunks are stored");
    let mid = value.len() / 2;
    value[mid] ^= 0x01;
    let mut batch = store.batch();
    batch.put(Cf::Chunks, &key, &value);
    store.commit(batch, Durability::Synced).unwrap();
    store.flush_all().unwrap();
    drop(store);

    let vol = open_engine_volume(&dir);
    assert_read_fails(&vol, victim, &key);
    assert_eq!(read_all(&vol, bystander), b"unharmed");
    // `check` without reading data finds the metadata consistent; with it, the damage.
    assert_clean(&vol, false);
    let report = vol.check(true, false, &|_, _| {}).unwrap();
    assert!(!report.is_clean());
    let text = report.problems.join("\n");
    assert!(text.contains("missing or damaged") && text.contains(&hex(&key)), "{text}");
    vol.close().unwrap();
}

#[test]
fn a_flipped_byte_in_a_packed_chunk_is_an_error_and_check_names_it() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let vol = engine_volume(&dir, "");
    // Large enough to stream: its bodies go to a pack file, not into the database.
    let big = write_random(&vol, Ino::ROOT, "big.bin", 9, 24 << 20);
    let small = write_file(&vol, Ino::ROOT, "small.txt", b"inline and unharmed");
    vol.close().unwrap();
    drop(vol);

    let store = Store::open(&dir, OpenMode::ReadOnly).unwrap();
    let packed: Vec<(Box<[u8]>, RefRecord)> = store
        .scan(Cf::Refs, &[], &[])
        .map(|kv| kv.unwrap())
        .filter_map(|(k, v)| RefRecord::decode(&v).filter(|r| r.location.is_some()).map(|r| (k, r)))
        .collect();
    assert!(packed.len() >= 10, "a 24 MiB file is stored in packs: {} packed chunks", packed.len());
    let (key, rec) = &packed[packed.len() / 2];
    let loc = rec.location.unwrap();
    let path = store.packs().pack_path(loc.pack);
    drop(store);
    let pack = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = loc.offset + u64::from(loc.len) / 2;
    let mut byte = [0u8];
    pack.read_exact_at(&mut byte, at).unwrap();
    pack.write_all_at(&[byte[0] ^ 0x80], at).unwrap();
    drop(pack);

    let vol = open_engine_volume(&dir);
    assert_read_fails(&vol, big, key);
    assert_eq!(read_all(&vol, small), b"inline and unharmed");
    let report = vol.check(true, false, &|_, _| {}).unwrap();
    let text = report.problems.join("\n");
    assert!(text.contains(&hex(key)) && text.matches("missing or damaged").count() == 1, "{text}");
    vol.close().unwrap();
}

/// A volume in `dir` holding one 5 MiB file `a` (bytes from `seed`), closed, whose first
/// chunk's reference record `damage` changed directly in the store (with anything else
/// it puts in the same batch); returns that chunk's key.
fn damage_a_count(dir: &Path, seed: u64, damage: impl FnOnce(&mut RefRecord, &mut Batch<'_>)) -> Box<[u8]> {
    let vol = engine_volume(dir, "");
    write_random(&vol, Ino::ROOT, "a", seed, 5 << 20);
    vol.close().unwrap();
    drop(vol);
    let store = Store::open(dir, OpenMode::ReadWrite).unwrap();
    let (key, value) = store.scan(Cf::Refs, &[], &[]).map(|kv| kv.unwrap()).next().unwrap();
    let mut rec = RefRecord::decode(&value).unwrap();
    let mut batch = store.batch();
    damage(&mut rec, &mut batch);
    batch.put(Cf::Refs, &key, &rec.encode());
    store.commit(batch, Durability::Synced).unwrap();
    key
}

#[test]
fn check_repairs_a_wrong_reference_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    damage_a_count(&dir, 4, |rec, _| rec.count += 5);
    let vol = open_engine_volume(&dir);
    let report = vol.check(false, false, &|_, _| {}).unwrap();
    assert!(report.problems.join("\n").contains("reference count 6, counted 1"), "{:?}", report.problems);
    let repaired = vol.check(false, true, &|_, _| {}).unwrap();
    assert!(repaired.is_clean() && repaired.repaired > 0, "{repaired:?}");
    assert_clean(&vol, true);
    assert!(holds_random(&vol, ino_of(&vol, "/a"), 4, 5 << 20));
    vol.close().unwrap();
}

/// A change that would take a reference count or a space counter below zero keeps it at
/// zero (no wrap, no panic) and records that: after the deletion below, the counts agree
/// with the extents again, and only the record lets `check` tell that the volume was
/// inconsistent. A repair recounts and clears it.
#[test]
fn counts_taken_below_zero_are_recorded_for_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let key = damage_a_count(&dir, 5, |rec, batch| {
        rec.count = 0;
        batch.put(Cf::Meta, b"space", &SpaceCounters::default().encode());
    });
    let vol = open_engine_volume(&dir);
    let report = vol.check(false, false, &|_, _| {}).unwrap();
    assert!(report.problems.join("\n").contains("reference count 0, counted 1"), "{:?}", report.problems);

    let ((), log) = capture_logs(|| vol.unlink(Ino::ROOT, b"a").unwrap());
    assert!(log.contains("corrupt reference count") && log.contains("corrupt space counters"), "{log}");
    let vol = reopen(vol, &dir);
    let report = vol.check(false, false, &|_, _| {}).unwrap();
    assert!(!report.is_clean());
    let text = report.problems.join("\n");
    let id = hex(&key);
    assert!(text.contains(&format!("chunk {id}: a change took its reference count below zero (to -1)")), "{text}");
    assert!(text.contains("a change took space counters below zero (chunks,unique_bytes,stored_bytes"), "{text}");
    assert!(!text.contains("reference count 0, counted"), "the deletion made the counts agree: {text}");
    assert!(vol.check(false, true, &|_, _| {}).unwrap().is_clean());
    assert_clean(&vol, true);
    vol.close().unwrap();
}
