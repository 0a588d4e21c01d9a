//! A full disk gives ENOSPC, not a corrupt volume.

use crate::common::*;
use std::io::Write;

#[test]
fn full_disk_gives_enospc_and_keeps_the_volume_intact() {
    let disk = SmallDisk::new("400m");
    let v = disk.volume();
    let m = v.mount();
    std::fs::write(m.p("keep.txt"), b"written before the disk filled").unwrap();
    let mut f = std::fs::File::create(m.p("filler.bin")).unwrap();
    let mut written = 0usize;
    let err = loop {
        match f.write_all(&random_bytes(written as u64, 1 << 20)) {
            Ok(()) => written += 1 << 20,
            Err(e) => break e,
        }
        assert!(written < 1 << 30, "a 400 MiB disk never filled");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(written > 100 << 20, "only {written} bytes fit");
    // Closing commits what was accepted; nothing acknowledged is lost.
    f.sync_all().unwrap();
    drop(f);
    m.unmount();
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("keep.txt")).unwrap(), b"written before the disk filled");
    let back = std::fs::read(m.p("filler.bin")).unwrap();
    assert_eq!(back.len(), written, "the file holds exactly the acknowledged writes");
    for (i, piece) in back.chunks(1 << 20).enumerate() {
        assert!(piece == random_bytes((i << 20) as u64, 1 << 20), "MiB {i} of the filler differs");
    }
    // Metadata changes still work on the full disk.
    std::fs::create_dir(m.p("still-works")).unwrap();
    // Deleting and collecting garbage makes room again.
    std::fs::remove_file(m.p("filler.bin")).unwrap();
    let out = nanofs(&["gc", v.path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    write_random_file(&m.p("after.bin"), 5, 50 << 20);
    m.unmount();
}
