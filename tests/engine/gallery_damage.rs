//! A damaged gallery record never fails a plain file operation. The namespace change
//! commits without its gallery part, the failure is logged, and `check` with `repair`
//! rebuilds what the tree says. Before, a damaged gallery record kept the volume from
//! opening at all, and removing a gallery's directory with a damaged record failed (`EIO`
//! on a mount).

use crate::common::{capture_logs, engine_volume, open_galleries, read_all};
use nanofs::gallery::Since;
use nanofs::store::{Cf, Durability, OpenMode, Store};
use nanofs::volume::{CheckReport, Kind};
use nanofs::Ino;

/// The engine's and the galleries' check together, as `nanofs check` runs them.
fn check(gs: &nanofs::gallery::Galleries, repair: bool) -> CheckReport {
    let mut report = gs.volume().check(false, repair, &|_, _| {}).unwrap();
    gs.check(repair, &mut report).unwrap();
    report
}

#[test]
fn damaged_gallery_records_fail_no_file_operation_and_check_repairs_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    engine_volume(&dir, "").close().unwrap();
    let gs = open_galleries(&dir);
    let vol = gs.volume().clone();
    gs.user_add("alice", "alice-password").unwrap();
    let trip = vol.create(Ino::ROOT, b"trip", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
    vol.create(Ino::ROOT, b"other", Kind::Dir, 0o755, 0, 0, 0).unwrap();
    for f in ["a.jpg", "b.jpg", "c.jpg"] {
        crate::common::write_file(&vol, trip, f, f.as_bytes());
    }
    gs.gallery_create("/trip", "Trip", "alice").unwrap();
    let other = gs.gallery_create("/other", "Other", "alice").unwrap();
    vol.close().unwrap();
    drop((vol, gs));

    // Garbage over a.jpg's item record and over the second gallery's record; b.jpg's item
    // record is gone.
    let store = Store::open(&dir, OpenMode::ReadWrite).unwrap();
    let items: Vec<Box<[u8]>> = store.scan(Cf::Meta, b"gitem/", b"gitem/").map(|kv| kv.unwrap().0).collect();
    assert_eq!(items.len(), 3, "a.jpg, b.jpg and c.jpg are items");
    let mut batch = store.batch();
    batch.put(Cf::Meta, &items[0], b"garbage");
    batch.delete(Cf::Meta, &items[1]);
    batch.put(Cf::Meta, format!("gallery/{}", other.id).as_bytes(), b"garbage");
    store.commit(batch, Durability::Synced).unwrap();
    store.flush_all().unwrap();
    drop(store);

    // The volume opens, and every file operation in both directories succeeds.
    let gs = open_galleries(&dir);
    let vol = gs.volume().clone();
    let ((), log) = capture_logs(|| {
        let a = vol.lookup(trip, b"a.jpg").unwrap().ino;
        let h = vol.open_file(a, true).unwrap();
        vol.write(a, 5, b" and more", true, false).unwrap();
        vol.release(a, h).unwrap();
        let sub = vol.create(trip, b"sub", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
        crate::common::write_file(&vol, sub, "new.jpg", b"new");
        vol.unlink(trip, b"c.jpg").unwrap();
        let other_dir = vol.lookup(Ino::ROOT, b"other").unwrap().ino;
        crate::common::write_file(&vol, other_dir, "x.jpg", b"x");
        vol.unlink(other_dir, b"x.jpg").unwrap();
        vol.rmdir(Ino::ROOT, b"other").unwrap();
        assert_eq!(read_all(&vol, a), b"a.jpg and more");
    });
    assert!(log.contains("a hook failed") && log.contains("damaged"), "no log line for the failure:\n{log}");
    assert!(gs.failures() > 0);

    // `check` names the problems; with `repair` it fixes them.
    let report = check(&gs, false);
    assert!(!report.is_clean());
    let text = report.problems.join("\n");
    for problem in ["gallery: item record of inode", "b.jpg", "gallery: record gallery/"] {
        assert!(text.contains(problem), "check does not report {problem:?}:\n{text}");
    }
    assert!(check(&gs, true).is_clean());
    let report = check(&gs, false);
    assert!(report.is_clean() && report.problems.is_empty(), "{:?}", report.problems);
    vol.close().unwrap();
    drop((vol, gs));
    let gs = open_galleries(&dir);
    assert!(check(&gs, false).problems.is_empty());
}

/// A hook that fails leaves none of its writes (no event is logged or numbered for the
/// change), the change itself commits, and the failure is counted.
#[test]
fn a_failed_gallery_hook_writes_nothing_and_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    engine_volume(&dir, "").close().unwrap();
    let gs = open_galleries(&dir);
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

    let gs = open_galleries(&dir);
    let vol = gs.volume().clone();
    vol.create(g_dir, b"new", Kind::File, 0o644, 0, 0, 0).unwrap(); // 1: item.added
    assert_eq!(gs.failures(), 0);
    let h = vol.open_file(f, true).unwrap();
    vol.write(f, 0, b"changed", false, false).unwrap();
    vol.release(f, h).unwrap(); // item.changed reads the damaged record: the hook fails
    assert_eq!(gs.failures(), 1);
    assert_eq!(vol.read(f, 0, 7).unwrap().as_ref(), b"changed");
    vol.create(g_dir, b"newer", Kind::File, 0o644, 0, 0, 0).unwrap(); // 2: item.added
    let Since::Events(events, last) = gs.events_since(&g.id, 0).unwrap() else { panic!("reset") };
    assert_eq!(last, 2, "the failed change numbered no event");
    assert!(events.iter().all(|e| e.kind == "item.added"));
}
