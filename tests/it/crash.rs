//! `kill -9` of the daemon loses nothing that was fsync'd.

use crate::common::*;
use std::io::Write;

#[test]
fn kill_9_after_fsync_loses_nothing() {
    let v = TestVolume::new();
    let m = v.mount();
    // Large (streamed, unlogged bodies) and small (logged) files, plus a rename, all fsync'd.
    let big = random_bytes(3, 48 << 20);
    let mut f = std::fs::File::create(m.p("big.bin")).unwrap();
    f.write_all(&big).unwrap();
    f.sync_all().unwrap();
    let mut small = std::fs::File::create(m.p("small.txt")).unwrap();
    small.write_all(b"fsync'd small file").unwrap();
    small.sync_data().unwrap();
    std::fs::create_dir(m.p("dir")).unwrap();
    std::fs::rename(m.p("small.txt"), m.p("dir/renamed.txt")).unwrap();
    std::fs::File::open(m.p("dir")).unwrap().sync_all().unwrap();
    // Writes after the last fsync may be lost, but must not damage anything.
    let mut g = std::fs::File::create(m.p("unsynced.bin")).unwrap();
    g.write_all(&random_bytes(4, 20 << 20)).unwrap();
    m.kill9();
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(m.p("dir/renamed.txt")).unwrap(), b"fsync'd small file");
    if let Ok(data) = std::fs::read(m.p("unsynced.bin")) {
        let expect = random_bytes(4, 20 << 20);
        assert!(
            expect.starts_with(&data) || data.iter().all(|b| *b == 0) || data == expect,
            "unsynced file holds wrong bytes"
        );
    }
    // The volume works normally after recovery, and checks clean down to every chunk.
    std::fs::write(m.p("after"), b"ok").unwrap();
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn kill_9_during_a_large_write_keeps_the_volume_consistent() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::write(m.p("before.txt"), b"committed").unwrap();
    std::fs::File::open(m.p("before.txt")).unwrap().sync_all().unwrap();
    let path = m.p("in-flight.bin");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(path).unwrap();
        for i in 0..64u64 {
            if f.write_all(&random_bytes(i, 4 << 20)).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(600));
    m.kill9();
    let _ = writer.join();
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("before.txt")).unwrap(), b"committed");
    // Whatever part of the file survived reads without error and holds the bytes written.
    if let Ok(data) = std::fs::read(m.p("in-flight.bin")) {
        for (i, piece) in data.chunks(4 << 20).enumerate() {
            assert_eq!(piece, &random_bytes(i as u64, 4 << 20)[..piece.len()], "piece {i} of a crashed write is wrong");
        }
    }
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

/// A crash at each point where the order of writes matters (chunk bodies stored but not
/// yet referenced; GC before and after its delete batch, after its compaction, after
/// copying live bodies out of a mostly dead pack) leaves a
/// volume that checks clean, keeps all fsync'd data, and whose next GC frees exactly the
/// garbage, back to the live data's size.
#[test]
fn a_crash_at_every_kill_point_of_writes_and_gc_leaves_a_clean_volume() {
    for point in
        ["write-chunks-stored", "gc-before-commit", "gc-after-commit", "gc-after-compaction", "gc-packs-copied"]
    {
        let v = TestVolume::new();
        let m = v.mount();
        write_random_file(&m.p("keep.bin"), 11, 12 << 20);
        std::fs::File::open(m.p("keep.bin")).unwrap().sync_all().unwrap();
        // Most of their pack: collection moves the survivor's bodies and deletes it.
        write_random_file(&m.p("gone.bin"), 12, 20 << 20);
        std::fs::remove_file(m.p("gone.bin")).unwrap();
        let keep = sha256(&m.p("keep.bin"));
        m.unmount();

        let m = v.mount_with_env(&[], &[("NANOFS_CRASH_AT", point)]);
        let step = if point.starts_with("gc") {
            // The daemon dies mid-way; the command then finds no daemon and may finish the
            // collection itself, as the next run would.
            let out = v.run(&["gc", v.path()]);
            format!("gc: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        } else {
            let ok = sh_status(&format!(
                "dd if=/dev/urandom of='{}' bs=1M count=20 conv=fsync status=none",
                m.p("new.bin").display()
            ));
            format!("dd succeeded: {ok}")
        };
        m.expect_crash(&format!("{point} ({step})"));

        v.assert_clean(&["--read-data"]);
        let m = v.mount();
        assert_eq!(sha256(&m.p("keep.bin")), keep, "{point}");
        let _ = std::fs::remove_file(m.p("new.bin"));
        m.unmount();
        v.run_ok(&["gc", v.path()]);
        let s = v.stats();
        let stored = s["stored_bytes"].as_u64().unwrap();
        assert!(((12 << 20)..(12 << 20) + (64 << 10)).contains(&stored), "{point}: {s}");
        assert_eq!(s["reclaimable_bytes"].as_u64(), Some(0), "{point}: {s}");
        v.assert_clean(&["--read-data"]);
    }
}
