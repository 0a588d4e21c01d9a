//! A power cut loses what was not fsync'd, page cache included (`kill -9` keeps that):
//! simulated with a lazy file system under the volume (`common::lazyfs`).

use crate::common::lazyfs::LazyFs;
use crate::common::*;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// Random writes land in 128 KiB slots of the 8 MiB file, one write per slot at most per
/// round, so a write either happened or not.
const SLOT: u64 = 128 << 10;

/// `n` distinct slots with a length of 4-128 KiB each (whole pages), from `seed`.
fn random_writes(seed: u64, n: usize) -> Vec<(u64, usize)> {
    let picks = random_bytes(seed, 64 * 3);
    let mut slots: Vec<u64> = (0..64).collect();
    // A seeded shuffle: distinct slots.
    for i in (1..slots.len()).rev() {
        slots.swap(i, picks[i] as usize % (i + 1));
    }
    (0..n).map(|i| (slots[i % 64], 4096 * (1 + picks[64 + i % 128] as usize % 32))).collect()
}

#[test]
fn a_power_cut_loses_only_what_was_not_fsynced() {
    let mut lazy = LazyFs::new();
    let v = TestVolume::init_at(&lazy.mountpoint.join("vol"));
    let m = v.mount();
    // A large file (streamed: bodies in packs) and a small one (bodies in the database's
    // log), fsync'd; a rename made durable by an fsync of its directory.
    write_random_file(&m.p("big.bin"), 1, 40 << 20);
    std::fs::File::open(m.p("big.bin")).unwrap().sync_all().unwrap();
    let big = sha256(&m.p("big.bin"));
    let mut small = std::fs::File::create(m.p("small.txt")).unwrap();
    small.write_all(b"fsync'd small file").unwrap();
    small.sync_data().unwrap();
    drop(small);
    std::fs::create_dir(m.p("dir")).unwrap();
    std::fs::rename(m.p("small.txt"), m.p("dir/renamed.txt")).unwrap();
    std::fs::File::open(m.p("dir")).unwrap().sync_all().unwrap();
    // Random writes into a file (queued, committed in the background), fsync'd, then
    // more of them into other places, not fsync'd.
    let mut db = random_bytes(5, 8 << 20);
    std::fs::write(m.p("db.bin"), &db).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(m.p("db.bin")).unwrap();
    for (i, (slot, len)) in random_writes(6, 200).into_iter().enumerate() {
        let data = random_bytes(1000 + i as u64, len);
        f.write_all_at(&data, slot * SLOT).unwrap();
        db[(slot * SLOT) as usize..(slot * SLOT) as usize + len].copy_from_slice(&data);
    }
    f.sync_all().unwrap();
    let mut later = db.clone();
    for (i, (slot, len)) in random_writes(7, 60).into_iter().enumerate() {
        let data = random_bytes(2000 + i as u64, len);
        f.write_all_at(&data, slot * SLOT).unwrap();
        later[(slot * SLOT) as usize..(slot * SLOT) as usize + len].copy_from_slice(&data);
    }
    drop(f);
    // Then more of everything, never fsync'd.
    write_random_file(&m.p("unsynced-big.bin"), 2, 24 << 20);
    std::fs::write(m.p("unsynced-small.txt"), random_bytes(3, 3000)).unwrap();
    std::fs::write(m.p("dir/renamed.txt"), b"overwritten, not fsync'd").unwrap_or(());
    m.kill9();
    lazy.power_cut();

    let v = v.moved_to(&lazy.backing.join("vol"));
    v.assert_clean(&["--read-data"]);
    let m = v.mount();
    assert_eq!(sha256(&m.p("big.bin")), big, "an fsync'd large file changed");
    let renamed = std::fs::read(m.p("dir/renamed.txt")).expect("an fsync'd rename was lost");
    assert!(
        renamed == b"fsync'd small file" || renamed == b"overwritten, not fsync'd",
        "the renamed file holds {:?}",
        String::from_utf8_lossy(&renamed)
    );
    assert!(!m.p("small.txt").exists(), "the rename was undone halfway");
    // The fsync'd random writes are all there; each later one is there or not, whole
    // pages of it at least (a write is never torn into other bytes).
    let got = std::fs::read(m.p("db.bin")).unwrap();
    assert_eq!(got.len(), db.len());
    for (page, ((g, synced), late)) in got.chunks(4096).zip(db.chunks(4096)).zip(later.chunks(4096)).enumerate() {
        assert!(g == synced || g == late, "page {page} of the randomly written file holds other bytes");
    }
    // Unsynced files are gone, empty, or hold a prefix of what was written (or zeros):
    // never other bytes.
    if let Ok(data) = std::fs::read(m.p("unsynced-small.txt")) {
        let expect = random_bytes(3, 3000);
        assert!(expect.starts_with(&data) || data.iter().all(|b| *b == 0), "unsynced small file is wrong");
    }
    if let Ok(data) = std::fs::read(m.p("unsynced-big.bin")) {
        for (i, piece) in data.chunks(4 << 20).enumerate() {
            let expect = random_bytes(2 ^ ((i as u64) << 32), 4 << 20);
            assert!(
                piece == &expect[..piece.len()] || piece.iter().all(|b| *b == 0),
                "piece {i} of the unsynced large file holds other bytes"
            );
        }
    }
    // The volume works normally afterwards.
    write_random_file(&m.p("after.bin"), 4, 12 << 20);
    std::fs::write(m.p("after.txt"), b"ok").unwrap();
    m.unmount();
    v.assert_clean(&["--read-data"]);
}
