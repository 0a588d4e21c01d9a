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
