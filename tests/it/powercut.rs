//! A power cut loses what was not fsync'd, page cache included (`kill -9` keeps that):
//! simulated with a lazy file system under the volume (`common::lazyfs`).

use crate::common::lazyfs::LazyFs;
use crate::common::*;
use std::io::Write;

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
