//! A failing disk (EIO, ENOSPC, short writes) under the store, injected with
//! `NANOFS_STORE_FAULTS`: the writer sees the error, never success with lost or wrong data,
//! and the volume reopens without faults clean, with everything fsync'd before intact.

use crate::common::*;
use std::io::Write;
use std::path::Path;

fn mount_with_faults(v: &TestVolume, spec: &str) -> Mounted {
    v.mount_with_env(&[], &[("NANOFS_STORE_FAULTS", spec)])
}

/// Writes `len` bytes of seed `seed` to `path` and fsyncs; the first error of the write,
/// the fsync or the close.
fn write_and_fsync(path: &Path, seed: u64, len: usize) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let data = random_bytes(seed, len);
    for piece in data.chunks(1 << 20) {
        f.write_all(piece)?;
    }
    f.sync_all()
}

/// The error number of a failed write, for the failure message and the assertions.
fn errno(r: &std::io::Result<()>) -> Option<i32> {
    r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// A file whose fsync failed holds, in each 4 KiB block, what was written there or zeros
/// (a write lost to the fault leaves a hole; writes after it may still land), and is no
/// longer than what was written: never other bytes.
fn assert_written_or_zeros(path: &Path, seed: u64, len: usize) {
    if let Ok(data) = std::fs::read(path) {
        let expect = random_bytes(seed, len);
        assert!(data.len() <= len, "{}: {} bytes, more than written", path.display(), data.len());
        for (i, block) in data.chunks(4096).enumerate() {
            let want = &expect[i * 4096..i * 4096 + block.len()];
            assert!(
                block == want || block.iter().all(|b| *b == 0),
                "{}: block {i} holds bytes that were never written there",
                path.display()
            );
        }
    }
}

/// Reopens without faults: clean down to every chunk, `intact` files hold their bytes,
/// and new large and small writes work.
fn reopen_and_verify(v: &TestVolume, intact: &[(&str, u64, usize)], failed: &[(&str, u64, usize)]) {
    v.assert_clean(&["--read-data"]);
    let m = v.mount();
    for (name, seed, len) in intact {
        assert!(std::fs::read(m.p(name)).unwrap() == random_bytes(*seed, *len), "{name} lost fsync'd bytes");
    }
    for (name, seed, len) in failed {
        assert_written_or_zeros(&m.p(name), *seed, *len);
    }
    write_and_fsync(&m.p("after-big.bin"), 90, 12 << 20).unwrap();
    write_and_fsync(&m.p("after-small.txt"), 91, 1000).unwrap();
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

/// Failed pack appends (the bodies of large files): the writer gets the error, and a
/// fault that passes leaves the volume usable at once.
#[test]
fn failed_pack_writes_reach_the_writer_and_leave_packs_readable() {
    for (spec, want, persists) in [
        ("pack-write:eio@3", libc::EIO, false),
        ("pack-write:short@3", libc::EIO, false),
        ("pack-write:short@2+", libc::EIO, true),
        ("pack-write:enospc@3+", libc::ENOSPC, true),
    ] {
        let v = TestVolume::new();
        let m = mount_with_faults(&v, spec);
        // Small files keep their bodies in the database: no pack write.
        write_and_fsync(&m.p("small.txt"), 1, 5000).unwrap();
        // Large files append to packs, so the fault reaches one of them (a window set aside
        // before it streamed goes through the database's log instead); each either fails
        // with the fault's error or is whole after reopening.
        let mut intact = vec![("small.txt", 1, 5000), ("small-2.txt", 4, 5000)];
        let mut failed = vec![];
        for (name, seed, len) in [("big.bin", 2, 24 << 20), ("next.bin", 3, 12 << 20)] {
            let r = write_and_fsync(&m.p(name), seed, len);
            assert!(r.is_ok() || errno(&r) == Some(want), "{spec}: {name}: {r:?}");
            if r.is_ok() {
                intact.push((name, seed, len))
            } else {
                failed.push((name, seed, len))
            }
        }
        // A one-off fault may also hit a copy of a batch that another thread committed
        // meanwhile, which loses nothing; a lasting one reaches a writer.
        if persists {
            assert!(!failed.is_empty(), "{spec}: no write failed");
        } else {
            // A fault that passed leaves the volume usable at once.
            write_and_fsync(&m.p("after-fault.bin"), 5, 12 << 20).unwrap();
            intact.push(("after-fault.bin", 5, 12 << 20));
        }
        write_and_fsync(&m.p("small-2.txt"), 4, 5000).unwrap();
        m.unmount();
        reopen_and_verify(&v, &intact, &failed);
    }
}

/// A one-off ENOSPC from a pack append may be retried away or reach the writer as ENOSPC;
/// either way nothing acknowledged is lost and the next write works.
#[test]
fn a_one_off_enospc_is_absorbed_or_reported_as_enospc() {
    let v = TestVolume::new();
    let m = mount_with_faults(&v, "pack-write:enospc@3");
    // The fault hits the first large file, or the next one if the first went through the
    // database's log; after it, writes work again.
    let (mut intact, mut failed) = (vec![], vec![]);
    for (name, seed, len) in [("big.bin", 2, 24 << 20), ("next.bin", 3, 12 << 20), ("after.bin", 5, 12 << 20)] {
        let r = write_and_fsync(&m.p(name), seed, len);
        assert!(matches!(errno(&r), None | Some(libc::ENOSPC)), "{name}: {r:?}");
        assert!(r.is_ok() || failed.is_empty(), "{name}: a second write failed after a one-off fault: {r:?}");
        if r.is_ok() {
            intact.push((name, seed, len))
        } else {
            failed.push((name, seed, len))
        }
    }
    m.unmount();
    reopen_and_verify(&v, &intact, &failed);
}

/// A failed `fdatasync` of a pack: that fsync fails, and so does every later one that
/// needs the packs (the kernel may have dropped the pages it could not write, so a retry
/// proves nothing), while small files, logged in the database, go on.
#[test]
fn a_failed_pack_sync_fails_every_later_pack_sync_of_the_session() {
    for (spec, want) in [("pack-sync:eio@1", libc::EIO), ("pack-sync:enospc@1", libc::ENOSPC)] {
        let v = TestVolume::new();
        let m = mount_with_faults(&v, spec);
        write_and_fsync(&m.p("small.txt"), 1, 5000).unwrap();
        // Each large file fails if it needs the packs. A window committed before it
        // streamed (a write that arrived out of order sets it aside) went through the
        // database's log, which still works: a file whose fsync succeeds must be whole.
        let mut intact = vec![("small.txt", 1, 5000), ("small-2.txt", 4, 5000)];
        let mut failed = vec![];
        let mut errors = vec![];
        for (name, seed, len) in [("big.bin", 2, 24 << 20), ("next.bin", 3, 12 << 20)] {
            let r = write_and_fsync(&m.p(name), seed, len);
            assert!(r.is_ok() || errno(&r) == Some(want), "{spec}: {name}: {r:?}");
            if r.is_ok() {
                intact.push((name, seed, len))
            } else {
                errors.push(r);
                failed.push((name, seed, len))
            }
        }
        assert!(!errors.is_empty(), "{spec}: no fsync failed");
        write_and_fsync(&m.p("small-2.txt"), 4, 5000).unwrap();
        // The clean shutdown cannot make the packs durable either.
        m.kill9();
        reopen_and_verify(&v, &intact, &failed);
    }
}

/// Failed database commits and write-ahead-log syncs, at several points of a mixed
/// workload: each operation either succeeds or reports the error, a lasting fault reaches
/// the writers, and what was fsync'd survives.
#[test]
fn failed_commits_and_log_syncs_lose_nothing_fsynced() {
    for spec in ["commit:eio@12", "commit:enospc@25", "commit:eio@18+", "wal-sync:eio@3", "wal-sync:eio@6+"] {
        let v = TestVolume::new();
        let m = mount_with_faults(&v, spec);
        let mut intact = vec![];
        let mut failed = vec![];
        let mut errors = vec![];
        let names: Vec<String> = (0..12).map(|i| format!("f{i}.bin")).collect();
        for (i, name) in names.iter().enumerate() {
            // Every fourth file is large (bodies in packs); the others are small.
            let len = if i % 4 == 3 { 10 << 20 } else { 3000 + i * 1000 };
            let r = write_and_fsync(&m.p(name), i as u64, len);
            match errno(&r) {
                None => intact.push((name.as_str(), i as u64, len)),
                Some(e) => {
                    assert!(e == libc::EIO || e == libc::ENOSPC, "{spec}: {name}: {r:?}");
                    errors.push(e);
                    failed.push((name.as_str(), i as u64, len));
                }
            }
        }
        // A lasting fault must reach the writers. A one-off one may hit a background
        // commit (an idle file, a time stamp) instead, which loses nothing fsync'd.
        if spec.ends_with('+') {
            assert!(!errors.is_empty(), "{spec}: no operation failed");
        }
        if spec.starts_with("commit:enospc") {
            assert!(errors.iter().all(|e| *e == libc::ENOSPC), "{spec}: {errors:?}");
        }
        m.kill9();
        reopen_and_verify(&v, &intact, &failed);
    }
}

/// A process that forks while writing shares its open file with the child, and the child's
/// copy closes at `exec`: the mount commits the file then. When that commit fails, the
/// writer's own `fsync` still reports it, once.
#[test]
fn a_close_by_a_forked_child_does_not_hide_lost_writes_from_the_writer() {
    let v = TestVolume::new();
    let armed = v.tmp.path().join("faults-armed");
    let m = v.mount_with_env(
        &[],
        &[("NANOFS_STORE_FAULTS", "commit:eio@1+"), ("NANOFS_STORE_FAULTS_ARMED_BY", armed.to_str().unwrap())],
    );
    let mut f = std::fs::File::create(m.p("shared.bin")).unwrap();
    f.write_all(&random_bytes(1, 100_000)).unwrap();
    // From here on every commit fails.
    std::fs::write(&armed, b"").unwrap();
    assert!(std::process::Command::new("true").status().unwrap().success());
    let first = f.sync_all();
    assert_eq!(errno(&first), Some(libc::EIO), "the writer's fsync after its writes were lost: {first:?}");
    // Told once: a second fsync has nothing new to report.
    f.sync_all().unwrap();
    std::fs::remove_file(&armed).unwrap();
    drop(f);
    m.unmount();
    reopen_and_verify(&v, &[], &[("shared.bin", 1, 100_000)]);
}
