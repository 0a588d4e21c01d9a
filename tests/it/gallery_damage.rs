//! A damaged gallery record never fails a plain file operation. The namespace change
//! commits without its gallery part, the failure is logged, and `nanofs check --repair`
//! rebuilds what the tree says. Before, a damaged gallery record kept the volume from
//! opening at all, and removing a gallery's directory with a damaged record gave `EIO`.

use crate::common::*;
use nanofs::store::{Cf, Durability, OpenMode, Store};

#[test]
fn damaged_gallery_records_fail_no_file_operation_and_check_repairs_them() {
    let v = TestVolume::new();
    let pw = v.tmp.path().join("alice.pw");
    std::fs::write(&pw, "alice-password\n").unwrap();
    v.run_ok(&["user", "add", v.path(), "alice", "--password-file", pw.to_str().unwrap()]);
    let m = v.mount();
    for dir in ["trip", "other"] {
        std::fs::create_dir(m.p(dir)).unwrap();
    }
    for f in ["a.jpg", "b.jpg", "c.jpg"] {
        std::fs::write(m.p(&format!("trip/{f}")), f).unwrap();
    }
    v.run_ok(&["gallery", "create", v.path(), "/trip", "--title", "Trip", "--owner", "alice"]);
    let out = v.run_ok(&["gallery", "create", v.path(), "/other", "--title", "Other", "--owner", "alice"]);
    let other: serde_json::Value = serde_json::from_str(&out).unwrap();
    m.unmount();

    // Garbage over a.jpg's item record and over the second gallery's record; b.jpg's item
    // record is gone.
    let store = Store::open(&v.dir, OpenMode::ReadWrite).unwrap();
    let items: Vec<Box<[u8]>> = store.scan(Cf::Meta, b"gitem/", b"gitem/").map(|kv| kv.unwrap().0).collect();
    assert_eq!(items.len(), 3, "a.jpg, b.jpg and c.jpg are items");
    let mut batch = store.batch();
    batch.put(Cf::Meta, &items[0], b"garbage");
    batch.delete(Cf::Meta, &items[1]);
    batch.put(Cf::Meta, format!("gallery/{}", other["id"].as_str().unwrap()).as_bytes(), b"garbage");
    store.commit(batch, Durability::Synced).unwrap();
    store.flush_all().unwrap();
    drop(store);

    // Every file operation in both directories succeeds.
    let m = v.mount();
    let mut a = std::fs::OpenOptions::new().append(true).open(m.p("trip/a.jpg")).unwrap();
    std::io::Write::write_all(&mut a, b" and more").unwrap();
    drop(a);
    std::fs::create_dir(m.p("trip/sub")).unwrap();
    std::fs::write(m.p("trip/sub/new.jpg"), b"new").unwrap();
    std::fs::remove_file(m.p("trip/c.jpg")).unwrap();
    std::fs::write(m.p("other/x.jpg"), b"x").unwrap();
    std::fs::remove_file(m.p("other/x.jpg")).unwrap();
    std::fs::remove_dir(m.p("other")).unwrap();
    assert_eq!(std::fs::read(m.p("trip/a.jpg")).unwrap(), b"a.jpg and more");
    let log = m.log_text();
    assert!(log.contains("a hook failed") && log.contains("damaged"), "no log line for the failure:\n{log}");

    // `check` names the problems; `--repair` fixes them.
    let out = nanofs(&["check", v.path()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for problem in ["gallery: item record of inode", "b.jpg", "gallery: record gallery/"] {
        assert!(text.contains(problem), "check does not report {problem:?}:\n{text}");
    }
    let out = nanofs(&["check", v.path(), "--repair"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    v.assert_clean(&[]);
    m.unmount();
    v.assert_clean(&[]);
}

/// On the engine alone: a hook that fails leaves none of its writes (no event is logged or
/// numbered for the change), the change itself commits, and the failure is counted.
#[test]
fn a_failed_gallery_hook_writes_nothing_and_is_counted() {
    use nanofs::gallery::{Galleries, Since};
    use nanofs::volume::{Credential, Kind, OpenOptions, Volume};
    use nanofs::Ino;
    use std::sync::Arc;
    let open = |dir: &std::path::Path| {
        let keys = Volume::unlock(dir, &Credential::Passphrase(b"pw".to_vec().into())).unwrap();
        Galleries::open(Arc::new(Volume::open(dir, keys, &OpenOptions::default()).unwrap())).unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    Volume::init(&dir, b"pw", nanofs::crypto::kdf::Argon2Params::TEST_ONLY).unwrap();
    let gs = open(&dir);
    let vol = gs.volume().clone();
    gs.user_add("alice", "alice-password").unwrap();
    let g_dir = vol.create(Ino::ROOT, b"g", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
    let f = vol.create(g_dir, b"f", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let g = gs.gallery_create("/g", "G", "alice").unwrap();
    vol.close().unwrap();
    drop((vol, gs));

    let store = Store::open(&dir, OpenMode::ReadWrite).unwrap();
    let mut batch = store.batch();
    batch.put(Cf::Meta, &[b"gitem/".as_slice(), &f.0.to_be_bytes()].concat(), b"garbage");
    store.commit(batch, Durability::Synced).unwrap();
    drop(store);

    let gs = open(&dir);
    let vol = gs.volume().clone();
    vol.create(g_dir, b"new", Kind::File, 0o644, 0, 0, 0).unwrap(); // 1: item.added
    assert_eq!(gs.failures(), 0);
    vol.open_file(f, true).unwrap();
    vol.write(f, 0, b"changed", false, false).unwrap();
    vol.release(f).unwrap(); // item.changed reads the damaged record: the hook fails
    assert_eq!(gs.failures(), 1);
    assert_eq!(vol.read(f, 0, 7).unwrap().as_ref(), b"changed");
    vol.create(g_dir, b"newer", Kind::File, 0o644, 0, 0, 0).unwrap(); // 2: item.added
    let Since::Events(events, last) = gs.events_since(&g.id, 0).unwrap() else { panic!("reset") };
    assert_eq!(last, 2, "the failed change numbered no event");
    assert!(events.iter().all(|e| e.kind == "item.added"));
}
