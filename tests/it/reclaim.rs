//! Space comes back without a manual `nanofs gc` or the daily timer: on a small disk, a
//! write that would fail for want of space first collects garbage. (The disk budget on
//! the engine alone: `tests/engine/reclaim.rs`.)

use crate::common::*;

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
