//! A damaged chunk gives EIO and a log line, never wrong bytes.

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

#[test]
fn flipped_byte_in_a_packed_chunk_gives_eio_and_check_names_it() {
    use nanofs::store::keys::RefRecord;
    use std::os::unix::fs::FileExt;
    let v = TestVolume::new();
    let m = v.mount();
    // Large enough to stream: its bodies go to a pack file, not into the database.
    let data = random_bytes(9, 24 << 20);
    std::fs::write(m.p("big.bin"), &data).unwrap();
    std::fs::write(m.p("small.txt"), b"inline and unharmed").unwrap();
    m.unmount();

    let store = Store::open(&v.dir, OpenMode::ReadOnly).unwrap();
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

    let m = v.mount();
    let err = std::fs::read(m.p("big.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(std::fs::read(m.p("small.txt")).unwrap(), b"inline and unharmed");
    assert!(m.log_text().contains("failed verification"), "{}", m.log_text());
    m.unmount();
    let out = nanofs(&["check", v.path(), "--read-data", "--passphrase-file", v.pass_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&ChunkIdHex(key).to_string()) && text.matches("missing or damaged").count() == 1, "{text}");
}

/// Hex of a chunk key, as `check` prints ids.
struct ChunkIdHex<'a>(&'a [u8]);
impl std::fmt::Display for ChunkIdHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A volume holding one 5 MiB file `a` (bytes from `seed`), unmounted, whose first chunk's
/// reference record `damage` changed, directly in the store (with anything else it puts
/// in the same batch); returns it with that chunk's id.
fn volume_with_a_damaged_count(
    seed: u64,
    damage: impl FnOnce(&mut nanofs::store::keys::RefRecord, &mut nanofs::store::Batch<'_>),
) -> (TestVolume, Box<[u8]>) {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("a"), seed, 5 << 20);
    m.unmount();
    let store = Store::open(&v.dir, OpenMode::ReadWrite).unwrap();
    let (key, value) = store.scan(Cf::Refs, &[], &[]).map(|kv| kv.unwrap()).next().unwrap();
    let mut rec = nanofs::store::keys::RefRecord::decode(&value).unwrap();
    let mut batch = store.batch();
    damage(&mut rec, &mut batch);
    batch.put(Cf::Refs, &key, &rec.encode());
    store.commit(batch, Durability::Synced).unwrap();
    (v, key)
}

#[test]
fn check_repairs_a_wrong_reference_count_and_space_counters() {
    let (v, _) = volume_with_a_damaged_count(4, |rec, _| rec.count += 5);
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

/// A change that would take a reference count or a space counter below zero keeps it at
/// zero (no wrap, no panic) and records that: after the deletion below, the counts agree
/// with the extents again, and only the record lets `check` tell that the volume was
/// inconsistent. `check --repair` recounts and clears it.
#[test]
fn counts_taken_below_zero_are_recorded_for_check() {
    use nanofs::store::keys::SpaceCounters;
    let (v, key) = volume_with_a_damaged_count(5, |rec, batch| {
        rec.count = 0;
        batch.put(Cf::Meta, b"space", &SpaceCounters::default().encode());
    });
    let report = String::from_utf8_lossy(&v.run(&["check", v.path()]).stdout).into_owned();
    assert!(report.contains("reference count 0, counted 1"), "{report}");

    let m = v.mount();
    std::fs::remove_file(m.p("a")).unwrap();
    let log = m.log.clone();
    m.unmount();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("corrupt reference count") && log.contains("corrupt space counters"), "{log}");
    let out = v.run(&["check", v.path()]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{report}");
    let id = ChunkIdHex(&key).to_string();
    assert!(report.contains(&format!("chunk {id}: a change took its reference count below zero (to -1)")), "{report}");
    assert!(report.contains("a change took space counters below zero (chunks,unique_bytes,stored_bytes"), "{report}");
    assert!(!report.contains("reference count 0, counted"), "the deletion made the counts agree: {report}");
    v.run_ok(&["check", v.path(), "--repair"]);
    v.assert_clean(&["--read-data"]);
}
