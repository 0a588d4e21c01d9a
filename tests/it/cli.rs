//! The command line: clear errors that touch nothing, daemon mode, stats while mounted.

use crate::common::*;
use std::process::Command;

fn listing(dir: &std::path::Path) -> String {
    sh(&format!("cd '{}' && find . -printf '%p %s %T@\\n' | sort", dir.display()))
}

#[test]
fn wrong_passphrase_is_refused_and_touches_nothing() {
    let v = TestVolume::new();
    let before = listing(&v.dir);
    let bad = v.tmp.path().join("bad");
    std::fs::write(&bad, "not the passphrase\n").unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let out = nanofs(&["mount", v.path(), mnt.path().to_str().unwrap(), "--passphrase-file", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!is_mounted(mnt.path()));
    assert_eq!(listing(&v.dir), before, "a refused mount changed the volume directory");
}

#[test]
fn missing_and_foreign_volumes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("p");
    std::fs::write(&pass, "x\n").unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let missing = tmp.path().join("nope");
    let out = nanofs(&[
        "mount",
        missing.to_str().unwrap(),
        mnt.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("data.txt"), "hello").unwrap();
    let out = nanofs(&[
        "mount",
        foreign.to_str().unwrap(),
        mnt.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a nanofs volume"));
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1, "nothing was created in a foreign directory");
    let out = nanofs(&["init", foreign.to_str().unwrap(), "--passphrase-file", pass.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "init refuses a non-empty directory");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

#[test]
fn busy_mountpoint_and_mounted_volume_are_refused() {
    let v = TestVolume::new();
    let m = v.mount();
    let w = TestVolume::new();
    let out =
        nanofs(&["mount", w.path(), m.path.to_str().unwrap(), "--passphrase-file", w.pass_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = tempfile::tempdir().unwrap();
    let out = nanofs(&[
        "mount",
        v.path(),
        other.path().to_str().unwrap(),
        "--passphrase-file",
        v.pass_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already mounted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.unmount();
}

#[test]
fn daemon_mode_stats_and_umount() {
    let v = TestVolume::new();
    let mnt = tempfile::tempdir().unwrap();
    let mp = mnt.path().to_str().unwrap();
    let out = nanofs(&["mount", v.path(), mp, "--passphrase-file", v.pass_file.to_str().unwrap(), "-o", "cache_mb=32"]);
    assert!(out.status.success(), "daemon mount failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(mnt.path()), "mount is ready when nanofs mount returns");
    let guard = scopeguard(mp);
    write_random_file(&mnt.path().join("a.bin"), 1, 3 << 20);
    std::fs::copy(mnt.path().join("a.bin"), mnt.path().join("b.bin")).unwrap();
    // stats asks the running daemon (the database is locked by it).
    let s = v.stats();
    assert_eq!(s["logical_bytes"].as_u64(), Some(6 << 20), "{s}");
    assert!(s["dedup_ratio"].as_f64().unwrap() > 1.9, "{s}");
    let human = nanofs(&["stats", v.path()]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("dedup ratio"));
    let out = nanofs(&["umount", mp]);
    assert!(out.status.success(), "umount failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(mnt.path()));
    assert!(!v.dir.join("control.sock").exists(), "the daemon removed its socket: it exited cleanly");
    drop(guard);
    // Offline stats read the same counters.
    assert_eq!(v.stat_u64("logical_bytes"), 6 << 20);
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("b.bin")).unwrap(), random_bytes(1, 3 << 20));
    m.unmount();
}

/// Unmounts a daemon-mode mount if the test fails before `nanofs umount`.
struct Guard(String);
fn scopeguard(mp: &str) -> Guard {
    Guard(mp.to_string())
}
impl Drop for Guard {
    fn drop(&mut self) {
        if is_mounted(std::path::Path::new(&self.0)) {
            let _ = Command::new("fusermount3").args(["-uz", &self.0]).output();
        }
    }
}

#[test]
fn data_survives_unmount_and_remount() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir_all(m.p("a/b/c")).unwrap();
    std::fs::write(m.p("a/b/c/note.txt"), b"persistent").unwrap();
    write_random_file(&m.p("a/big.bin"), 9, 40 << 20);
    m.unmount();
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("a/b/c/note.txt")).unwrap(), b"persistent");
    assert_eq!(std::fs::read(m.p("a/big.bin")).unwrap(), random_bytes_file(9, 40 << 20));
    m.unmount();
}

fn random_bytes_file(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut part = 0u64;
    while v.len() < len {
        let n = (len - v.len()).min(4 << 20);
        v.extend_from_slice(&random_bytes(seed ^ (part << 32), n));
        part += 1;
    }
    v
}

#[test]
fn mount_helper_serves_mount_t_nanofs() {
    let v = TestVolume::new();
    let helper = std::path::Path::new(env!("CARGO_BIN_EXE_nanofs")).with_file_name("mount-nanofs");
    assert!(helper.exists(), "the mount helper is built beside nanofs");
    // mount(8) looks for helpers in /sbin; install ours there for the test.
    let installed = std::path::Path::new("/sbin/mount.nanofs");
    std::fs::copy(&helper, installed).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let mp = mnt.path().to_str().unwrap();
    let opts = format!("passphrase_file={},noauto,cache_mb=16", v.pass_file.display());
    let out = Command::new("mount")
        .args(["-t", "nanofs", v.path(), mp, "-o", &opts])
        .env("NANOFS_BIN", bin())
        .output()
        .unwrap();
    let guard = scopeguard(mp);
    assert!(out.status.success(), "mount -t nanofs failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(mnt.path()));
    std::fs::write(mnt.path().join("via-helper"), b"ok").unwrap();
    let out = nanofs(&["umount", mp]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(guard);
    let m = v.mount();
    assert_eq!(std::fs::read(m.p("via-helper")).unwrap(), b"ok");
    m.unmount();
}

#[test]
fn read_only_mount_serves_reads_and_refuses_writes() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::write(m.p("kept"), b"read me").unwrap();
    m.unmount();
    let m = v.mount_with(&["-o", "ro"]);
    assert_eq!(std::fs::read(m.p("kept")).unwrap(), b"read me");
    let err = std::fs::write(m.p("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert_eq!(std::fs::remove_file(m.p("kept")).unwrap_err().raw_os_error(), Some(libc::EROFS));
    m.unmount();
}

#[test]
fn a_bad_configuration_is_refused_with_the_key_named() {
    let v = TestVolume::new();
    let config = v.dir.join("nanofs.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("avg_chunk_size_kb = 1024", "avg_chunk_sise_kb = 1024")).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let out =
        nanofs(&["mount", v.path(), mnt.path().to_str().unwrap(), "--passphrase-file", v.pass_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("avg_chunk_sise_kb"), "{err}");
    assert!(!is_mounted(mnt.path()));
}
