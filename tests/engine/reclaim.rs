//! Space comes back without a manual `nanofs gc` or the daily timer: garbage that puts a
//! volume over its disk budget is due for collection, and collecting brings the volume
//! back within it. (A write that would fail for want of space collecting first, on a real
//! small disk: `tests/it/reclaim.rs`.)

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
        let h = vol.open_file(ino, true).unwrap();
        for i in 0..mib {
            vol.write(ino, i << 20, &random_bytes(seed << 32 | i, 1 << 20), false, false).unwrap();
        }
        vol.release(ino, h).unwrap();
    }
    vol.fsync(keep, None).unwrap();
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
