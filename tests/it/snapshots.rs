//! Snapshots and clones: frozen point-in-time trees and instant copies that share chunks.

use crate::common::*;
use std::os::unix::fs::MetadataExt;

fn erofs(r: std::io::Result<impl Sized>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EROFS))
}

#[test]
fn a_snapshot_stays_frozen_while_the_live_tree_changes() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir(m.p("dir")).unwrap();
    write_random_file(&m.p("dir/movie.bin"), 5, 24 << 20);
    std::fs::write(m.p("notes.txt"), b"version one\n").unwrap();
    std::fs::hard_link(m.p("notes.txt"), m.p("dir/notes-link")).unwrap();
    std::os::unix::fs::symlink("dir/movie.bin", m.p("latest")).unwrap();
    sh(&format!("setfattr -n user.tag -v blue '{}'", m.p("notes.txt").display()));
    let movie_sum = sha256(&m.p("dir/movie.bin"));
    let stored_before = v.stat_u64("stored_bytes");

    let out = v.run_ok(&["snapshot", "create", v.path(), "monday"]);
    assert!(out.contains("monday"), "{out}");
    let snap = m.p(".snapshots/monday");
    // Sharing every chunk, the snapshot costs (almost) no stored bytes.
    let stored_after = v.stat_u64("stored_bytes");
    assert!(stored_after - stored_before < stored_before / 100, "{stored_before} -> {stored_after}");

    // Change the live tree every way.
    write_random_file(&m.p("dir/movie.bin"), 6, 24 << 20);
    std::fs::write(m.p("notes.txt"), b"version two\n").unwrap();
    std::fs::remove_file(m.p("dir/notes-link")).unwrap();
    std::fs::write(m.p("new.txt"), b"new").unwrap();

    assert_eq!(sha256(&snap.join("dir/movie.bin")), movie_sum);
    assert_eq!(std::fs::read(snap.join("notes.txt")).unwrap(), b"version one\n");
    assert_eq!(std::fs::read(snap.join("dir/notes-link")).unwrap(), b"version one\n");
    let (a, b) =
        (std::fs::metadata(snap.join("notes.txt")).unwrap(), std::fs::metadata(snap.join("dir/notes-link")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "hard links stay hard links in the snapshot");
    assert_eq!(std::fs::read_link(snap.join("latest")).unwrap().to_str(), Some("dir/movie.bin"));
    assert_eq!(sh(&format!("getfattr --only-values -n user.tag '{}'", snap.join("notes.txt").display())), "blue");
    assert!(!snap.join("new.txt").exists());

    // Read-only, every way in; and hidden from listings of the root.
    assert!(erofs(std::fs::OpenOptions::new().write(true).open(snap.join("notes.txt"))));
    assert!(erofs(std::fs::write(snap.join("dir/x"), b"x")));
    assert!(erofs(std::fs::remove_file(snap.join("notes.txt"))));
    assert!(erofs(std::fs::rename(snap.join("notes.txt"), m.p("stolen.txt"))));
    assert!(erofs(std::fs::hard_link(snap.join("notes.txt"), m.p("linked.txt"))));
    assert!(erofs(std::fs::create_dir(m.p(".snapshots/mine"))));
    assert!(std::fs::create_dir(m.p(".snapshots")).is_err());
    let listing = sh(&format!("ls -a '{}'", m.path.display()));
    assert!(!listing.contains(".snapshots"), "{listing}");

    let list = v.run_ok(&["snapshot", "list", v.path()]);
    assert!(list.starts_with("monday\t"), "{list}");
    let dup = v.run(&["snapshot", "create", v.path(), "monday"]);
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("exists"));
    let check = v.run_ok(&["check", v.path(), "--read-data"]);
    assert!(check.contains("clean"), "{check}");
    m.unmount();

    // Persistent; delete it (unmounted, the command opens the volume) and GC frees the old movie.
    let m = v.mount();
    assert_eq!(sha256(&m.p(".snapshots/monday/dir/movie.bin")), movie_sum);
    m.unmount();
    let before_delete = v.stat_u64("stored_bytes");
    v.run_ok(&["snapshot", "delete", v.path(), "monday"]);
    v.run_ok(&["gc", v.path()]);
    let after_gc = v.stat_u64("stored_bytes");
    assert!(before_delete - after_gc >= 23 << 20, "{before_delete} -> {after_gc}");
    assert!(v.run_ok(&["snapshot", "list", v.path()]).is_empty());
    assert!(v.run_ok(&["check", v.path(), "--read-data"]).contains("clean"));
    let missing = v.run(&["snapshot", "delete", v.path(), "monday"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn clones_share_chunks_and_diverge_independently() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir_all(m.p("project/src")).unwrap();
    write_random_file(&m.p("project/src/take1.mov"), 9, 16 << 20);
    std::fs::write(m.p("project/README"), b"hello\n").unwrap();
    let stored = v.stat_u64("stored_bytes");

    // From inside the mount: paths in the mount name the volume. The copy appears at once,
    // though the kernel cached the miss of its name just before.
    assert!(!m.p("copy").exists());
    sh(&format!("{} clone '{}' '{}'", bin(), m.p("project").display(), m.p("copy").display()));
    assert_eq!(sha256(&m.p("copy/src/take1.mov")), sha256(&m.p("project/src/take1.mov")));
    assert!(v.stat_u64("stored_bytes") - stored < stored / 100);
    std::fs::write(m.p("copy/README"), b"changed\n").unwrap();
    assert_eq!(std::fs::read(m.p("project/README")).unwrap(), b"hello\n");
    assert!(m.p("copy/src").is_dir());

    // A snapshot restored by cloning it out is writable again.
    v.run_ok(&["snapshot", "create", v.path(), "s"]);
    std::fs::remove_dir_all(m.p("project")).unwrap();
    assert!(!m.p("restored").exists());
    v.run_ok(&["clone", v.path(), ".snapshots/s/project", "restored"]);
    std::fs::write(m.p("restored/README"), b"writable\n").unwrap();
    assert_eq!(sha256(&m.p("restored/src/take1.mov")), sha256(&m.p("copy/src/take1.mov")));
    let exists = v.run(&["clone", v.path(), "copy", "restored"]);
    assert!(!exists.status.success());
    m.unmount();
    assert!(v.run_ok(&["check", v.path(), "--read-data"]).contains("clean"));
}
