//! Volumes written by earlier builds keep working: `tests/fixtures/volume-v1.tar.gz`, made
//! by `tests/fixtures/make-volume-fixture.sh` with the nanofs of database format 1, must
//! unlock (passphrase and X-Wing slot), read byte for byte, keep its snapshot, hard link,
//! symlink, xattr, hole, users and gallery, take new writes that deduplicate against its
//! old chunks, and check clean before and after.

use crate::common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FIXTURE_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/volume-v1.tar.gz");

/// A fresh copy of a fixture, unpacked into its own temporary directory.
fn unpack(archive: &str) -> (TestVolume, PathBuf) {
    let tmp = tempfile::Builder::new().prefix("nanofs-compat-").tempdir().unwrap();
    sh(&format!("tar -xzf '{archive}' -C '{}'", tmp.path().display()));
    let root = tmp.path().join("volume-v1");
    let v = TestVolume { dir: root.join("vol"), pass_file: root.join("passphrase"), tmp };
    (v, root)
}

/// The files the script wrote, regenerated from the same generator.
fn bits(data: Vec<u8>) -> Vec<u8> {
    data.iter().map(|b| 0x30 | (b & 1)).collect()
}
fn clip() -> Vec<u8> {
    bits(random_bytes(1, 1 << 20))
}
fn noise() -> Vec<u8> {
    random_bytes(2, 100_000)
}
fn looped() -> Vec<u8> {
    bits(random_bytes(3, 65536)).repeat(144)
}
fn sparse() -> Vec<u8> {
    let mut v = vec![0u8; 1 << 20];
    v[..4].copy_from_slice(b"head");
    v[786432..786436].copy_from_slice(b"tail");
    v
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn xattr(p: &Path, name: &str) -> String {
    sh(&format!("getfattr --only-values -n {name} '{}'", p.display()))
}

/// Every file of the fixture as the script left it: `root` is the live tree or the snapshot.
fn assert_common_files(root: &Path) {
    assert_eq!(read(&root.join("a/b/c/deep.txt")), b"three levels down\n");
    assert!(read(&root.join("media/clip.bin")) == clip(), "clip.bin differs");
    assert!(read(&root.join("media/noise.bin")) == noise(), "noise.bin differs");
    assert!(read(&root.join("media/loop.bin")) == looped(), "loop.bin differs");
    assert!(read(&root.join("sparse.img")) == sparse(), "sparse.img differs");
    let holes = std::fs::metadata(root.join("sparse.img")).unwrap();
    assert!(holes.blocks() * 512 < holes.len() / 2, "the hole stores nothing: {} blocks", holes.blocks());
    assert_eq!(std::fs::read_link(root.join("latest")).unwrap(), Path::new("media/clip.bin"));
    assert!(read(&root.join("latest")) == clip());
    let (file, link) = (root.join("hello.txt"), root.join("a/hello-link.txt"));
    let (a, b) = (std::fs::metadata(&file).unwrap(), std::fs::metadata(&link).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "a hard link of hello.txt");
    assert_eq!(read(&file), read(&link));
    assert_eq!(xattr(&file, "user.comment"), "fixture v1");
    assert_eq!(read(&root.join("galleries/trip/note.txt")), b"a gallery item\n");
}

#[test]
fn volume_v1_opens_reads_and_takes_writes() {
    let (v, root) = unpack(FIXTURE_V1);
    v.assert_clean(&["--read-data"]);
    let before = v.stats();

    let m = v.mount();
    assert_common_files(&m.path);
    assert_eq!(read(&m.p("hello.txt")), b"hello, changed after the snapshot\n");
    assert!(!m.p("empty").exists());
    let snap = m.p(".snapshots/v1");
    assert_common_files(&snap);
    assert_eq!(read(&snap.join("hello.txt")), b"hello, nanofs format v1\n");
    assert_eq!(std::fs::metadata(snap.join("empty")).unwrap().len(), 0);
    assert!(std::fs::write(snap.join("hello.txt"), b"x").is_err(), "a snapshot stays read-only");

    // New data, and copies of old files: the copies cut where the old chunks were cut, so
    // they store nothing new.
    for name in ["clip.bin", "noise.bin", "loop.bin"] {
        sh(&format!("cp '{}' '{}'", m.p(&format!("media/{name}")).display(), m.p(&format!("copy-{name}")).display()));
    }
    let fresh = random_bytes(9, 300_000);
    std::fs::write(m.p("a/new.bin"), &fresh).unwrap();
    std::fs::write(m.p("hello.txt"), b"written by a newer nanofs\n").unwrap();
    sh(&format!("setfattr -n user.added -v yes '{}'", m.p("a/new.bin").display()));
    m.unmount();

    let after = v.stats();
    let stored = |s: &serde_json::Value| s["stored_bytes"].as_u64().unwrap();
    let grown = stored(&after) - stored(&before);
    assert!(grown < 300_000 + 300_000 / 50, "copies of old files stored {grown} new bytes (new data: 300000)");
    let logical = |s: &serde_json::Value| s["logical_bytes"].as_u64().unwrap();
    let copied = (1 << 20) + 100_000 + 144 * 65536;
    assert_eq!(logical(&after) - logical(&before), copied + 300_000 + 26 - 34, "{after}");
    v.assert_clean(&["--read-data"]);

    // The recipient slot of format 1 unlocks too, and everything reads back.
    let identity = root.join("identity.key");
    let m = v.mount_with(&["--identity", identity.to_str().unwrap()]);
    assert!(read(&m.p("copy-clip.bin")) == clip());
    assert!(read(&m.p("copy-loop.bin")) == looped());
    assert!(read(&m.p("a/new.bin")) == fresh);
    assert_eq!(read(&m.p("a/hello-link.txt")), b"written by a newer nanofs\n");
    assert_eq!(xattr(&m.p("a/new.bin"), "user.added"), "yes");
    assert_eq!(read(&m.p(".snapshots/v1/hello.txt")), b"hello, nanofs format v1\n");
    m.unmount();

    let users = v.run_ok(&["user", "list", v.path()]);
    assert!(users.contains("alice"), "{users}");
    // Format 1 kept `user/alice` as a key in clear; the first writable open hashed it.
    assert!(
        !sh_status(&format!("grep -rqa alice '{}'", v.dir.join("db").display())),
        "a user name is still readable in the database files"
    );
    let galleries = v.run_ok(&["gallery", "list", v.path()]);
    assert!(galleries.contains("Trip") && galleries.contains("/galleries/trip"), "{galleries}");
    let snapshots = v.run_ok(&["snapshot", "list", v.path()]);
    assert!(snapshots.contains("v1"), "{snapshots}");
    v.assert_clean(&["--read-data"]);
}
