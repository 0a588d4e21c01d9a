//! Fingerprints (`user.nanofs.blake2b`, `nanofs fingerprint`) and per-directory figures
//! (`stats --path`, `user.nanofs.stats`).

use crate::common::*;

fn xattr(path: &std::path::Path, name: &str) -> String {
    sh(&format!("getfattr --only-values -n {name} '{}'", path.display()))
}

fn b2sum(path: &std::path::Path) -> String {
    sh(&format!("b2sum -l 256 '{}'", path.display())).split_whitespace().next().unwrap().to_string()
}

#[test]
fn file_and_tree_fingerprints_match_b2sum_and_prove_a_snapshot_unchanged() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir(m.p("album")).unwrap();
    write_random_file(&m.p("album/a.raw"), 1, 9 << 20);
    std::fs::write(m.p("album/b.txt"), b"caption").unwrap();
    let file = m.p("album/a.raw");
    let fp = xattr(&file, "user.nanofs.blake2b");
    assert_eq!(fp, b2sum(&file));
    let cli = sh(&format!("{} fingerprint '{}'", bin(), file.display()));
    assert!(cli.starts_with(&fp), "{cli}");
    assert_eq!(xattr(&file, "user.nanofs.blake2b"), fp, "cached value is the same");

    // Any change shows.
    sh(&format!("printf X | dd of='{}' bs=1 seek=4000000 conv=notrunc status=none", file.display()));
    let changed = xattr(&file, "user.nanofs.blake2b");
    assert_ne!(changed, fp);
    assert_eq!(changed, b2sum(&file));

    // Neither the cache nor the virtual names are listed or settable.
    let listed = sh(&format!("getfattr -d -m - '{}'", file.display()));
    assert!(!listed.contains("nanofs"), "{listed}");
    assert!(std::process::Command::new("setfattr")
        .args(["-n", "user.nanofs.blake2b", "-v", "0", file.to_str().unwrap()])
        .status()
        .map(|s| !s.success())
        .unwrap());

    // A tree fingerprint: the snapshot's equals the tree's at the time, and stays so.
    let tree = xattr(&m.path, "user.nanofs.blake2b");
    v.run_ok(&["snapshot", "create", v.path(), "proof"]);
    assert_eq!(xattr(&m.p(".snapshots/proof"), "user.nanofs.blake2b"), tree);
    std::fs::write(m.p("album/b.txt"), b"caption, edited").unwrap();
    assert_ne!(xattr(&m.path, "user.nanofs.blake2b"), tree);
    let out = v.run_ok(&["fingerprint", v.path(), ".snapshots/proof"]);
    assert!(out.starts_with(&tree), "{out}");
    m.unmount();
    // Unmounted, the command opens the volume itself.
    let out = v.run_ok(&["fingerprint", v.path(), ".snapshots/proof"]);
    assert!(out.starts_with(&tree), "{out}");
}

#[test]
fn per_directory_stats_count_sharing_inside_and_outside_the_tree() {
    let v = TestVolume::new();
    let m = v.mount();
    for d in ["a", "b"] {
        std::fs::create_dir(m.p(d)).unwrap();
    }
    write_random_file(&m.p("a/one"), 7, 8 << 20);
    write_random_file(&m.p("a/own"), 8, 4 << 20);
    sh(&format!("cp '{0}/a/one' '{0}/a/two' && cp '{0}/a/one' '{0}/b/three'", m.path.display()));
    let json = v.run_ok(&["stats", v.path(), "--path", "/a", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(s["files"].as_u64(), Some(3), "{s}");
    assert_eq!(s["logical_bytes"].as_u64(), Some(20 << 20), "{s}");
    assert_eq!(s["unique_bytes"].as_u64(), Some(12 << 20), "{s}");
    let exclusive = s["exclusive_bytes"].as_u64().unwrap();
    assert!(((4 << 20)..5 << 20).contains(&exclusive), "only a/own is not shared with b: {s}");
    let root: serde_json::Value = serde_json::from_str(&xattr(&m.path, "user.nanofs.stats")).unwrap();
    assert_eq!(root["logical_bytes"].as_u64(), Some(28 << 20), "{root}");
    let dir: serde_json::Value = serde_json::from_str(&xattr(&m.p("b"), "user.nanofs.stats")).unwrap();
    assert_eq!((dir["files"].as_u64(), dir["exclusive_bytes"].as_u64()), (Some(1), Some(0)), "{dir}");
    m.unmount();
}
