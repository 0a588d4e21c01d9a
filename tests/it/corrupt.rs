//! Through a mount and the command line: a damaged chunk gives `EIO` and a line in the
//! daemon's log, `nanofs check --read-data` names it, `nanofs check --repair` fixes a
//! wrong count. Damaged chunks in packs and counts taken below zero are tested on the
//! engine: `tests/engine/corrupt.rs`.

use crate::common::*;
use nanofs::store::{Cf, Durability, OpenMode, Store};

#[test]
fn flipped_byte_in_a_stored_chunk_gives_eio_and_a_log_line() {
    let v = TestVolume::new();
    let m = v.mount();
    let data = random_bytes(8, 3 << 20);
    std::fs::write(m.p("victim.bin"), &data).unwrap();
    std::fs::write(m.p("bystander.txt"), b"unharmed").unwrap();
    m.unmount();

    // Damage the largest chunk body (the victim's first chunk, not the small bystander).
    let store = Store::open(&v.dir, OpenMode::ReadWrite).unwrap();
    let (key, mut value) =
        store.scan(Cf::Chunks, &[], &[]).map(|kv| kv.unwrap()).max_by_key(|(_, v)| v.len()).expect("chunks are stored");
    let mid = value.len() / 2;
    value[mid] ^= 0x01;
    let mut batch = store.batch();
    batch.put(Cf::Chunks, &key, &value);
    store.commit(batch, Durability::Synced).unwrap();
    store.flush_all().unwrap();
    drop(store);

    let m = v.mount();
    let err = std::fs::read(m.p("victim.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(std::fs::read(m.p("bystander.txt")).unwrap(), b"unharmed");
    let log = m.log_text();
    assert!(log.contains("failed verification"), "no log line for the damaged chunk:\n{log}");
    // `check` without reading data finds the metadata consistent; with it, the damage.
    let out = nanofs(&["check", v.path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = nanofs(&["check", v.path(), "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("missing or damaged") && text.contains(&ChunkIdHex(&key).to_string()), "{text}");
    m.unmount();
}

/// Hex of a chunk key, as `check` prints ids.
struct ChunkIdHex<'a>(&'a [u8]);
impl std::fmt::Display for ChunkIdHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A volume holding one 5 MiB file `a` (bytes from `seed`), unmounted, where `damage`
/// changed the reference record of a chunk the file references once, directly in the
/// store (with anything else it puts in the same batch).
fn volume_with_a_damaged_count(
    seed: u64,
    damage: impl FnOnce(&mut nanofs::store::keys::RefRecord, &mut nanofs::store::Batch<'_>),
) -> TestVolume {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("a"), seed, 5 << 20);
    m.unmount();
    let store = Store::open(&v.dir, OpenMode::ReadWrite).unwrap();
    // A chunk the file references: the write may also have left one that a later commit
    // of the same window replaced (count 0, until garbage collection).
    let (key, mut rec) = store
        .scan(Cf::Refs, &[], &[])
        .map(|kv| kv.unwrap())
        .map(|(key, value)| (key, nanofs::store::keys::RefRecord::decode(&value).unwrap()))
        .find(|(_, rec)| rec.count == 1)
        .expect("a chunk referenced once");
    let mut batch = store.batch();
    damage(&mut rec, &mut batch);
    batch.put(Cf::Refs, &key, &rec.encode());
    store.commit(batch, Durability::Synced).unwrap();
    v
}

#[test]
fn check_repairs_a_wrong_reference_count_and_space_counters() {
    let v = volume_with_a_damaged_count(4, |rec, _| rec.count += 5);
    let pass = v.pass_file.to_str().unwrap();
    let out = nanofs(&["check", v.path(), "--passphrase-file", pass]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reference count 6, counted 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = nanofs(&["check", v.path(), "--repair", "--passphrase-file", pass]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = nanofs(&["check", v.path(), "--read-data", "--passphrase-file", pass]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("a")).unwrap().len(), 5 << 20);
    m.unmount();
}
