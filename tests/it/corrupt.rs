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
    m.unmount();
}
