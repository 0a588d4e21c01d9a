//! Space comes back without a manual `nanofs gc` or the daily timer: garbage that puts a
//! volume over its disk budget is collected, and a write that would fail for want of
//! space first collects garbage.

use crate::common::*;
use nanofs::volume::{Kind, ReclaimReason};
use nanofs::Ino;

#[test]
fn garbage_over_the_disk_budget_is_due_and_reclaiming_brings_the_volume_back_within_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let vol = small_chunk_engine_volume(&dir);
    let keep = vol.create(Ino::ROOT, b"keep", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let gone = vol.create(Ino::ROOT, b"gone", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    for (ino, seed, mib) in [(keep, 1, 64u64), (gone, 2, 384)] {
        vol.open_file(ino, true).unwrap();
        for i in 0..mib {
            vol.write(ino, i << 20, &random_bytes(seed << 32 | i, 1 << 20), false, false).unwrap();
        }
        vol.release(ino).unwrap();
    }
    vol.fsync(keep).unwrap();
    assert_eq!(vol.reclaim_due().unwrap(), None, "no garbage, nothing due");
    vol.unlink(Ino::ROOT, b"gone").unwrap();
    assert_eq!(vol.reclaim_due().unwrap(), Some(ReclaimReason::OverBudget));
    let before = vol.stats().unwrap();
    assert!(before.disk_bytes > vol.disk_budget(), "{before:?}");
    let report = vol.reclaim_if_due().unwrap().expect("a collection ran");
    assert!(report.stored_bytes_deleted >= 380 << 20, "{report:?}");
    let after = vol.stats().unwrap();
    assert!(after.disk_bytes <= vol.disk_budget(), "{after:?} against a budget of {}", vol.disk_budget());
    assert_eq!(after.reclaimable_bytes, 0);
    assert_eq!(vol.reclaim_due().unwrap(), None, "nothing left to do");
    assert!(vol.check(true, false, &|_, _| {}).unwrap().is_clean());
    vol.close().unwrap();
}

#[test]
fn a_small_disk_takes_file_after_deleted_file_without_a_manual_gc() {
    let disk = SmallDisk::new("700m");
    let v = disk.volume();
    let m = v.mount();
    // 5 × 250 MiB through a 700 MiB disk, each file deleted right after it is written:
    // only collecting the garbage of the last makes room for the next.
    for round in 0..5u64 {
        let f = m.p(&format!("take-{round}.bin"));
        write_random_file(&f, round, 250 << 20);
        std::fs::File::open(&f).unwrap().sync_all().unwrap();
        std::fs::remove_file(&f).unwrap();
    }
    write_random_file(&m.p("last.bin"), 9, 100 << 20);
    let expected = v.tmp.path().join("last.bin");
    write_random_file(&expected, 9, 100 << 20);
    sh(&format!("cmp '{}' '{}'", expected.display(), m.p("last.bin").display()));
    m.unmount();
    v.assert_clean(&["--read-data"]);
}
