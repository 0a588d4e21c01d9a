//! Retention: the trash (deletes through the mount and over HTTP kept for `trash_days`,
//! restored with their metadata) and scheduled snapshots.

use crate::common::*;
use crate::http::{bearer, curl};
use crate::operations::{audit_records, mount_serving};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn trash_list(v: &TestVolume) -> Vec<serde_json::Value> {
    let out = v.run_ok(&["trash", "list", v.path(), "--json"]);
    out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn deleted_files_wait_in_the_trash_and_come_back_with_their_metadata() {
    let v = TestVolume::new();
    std::fs::write(v.dir.join("nanofs.toml"), "[retention]\ntrash_days = 7\n").unwrap();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write,delete"]).trim().to_string();
    let (m, base) = mount_serving(&v, &[], &[]);
    std::fs::create_dir_all(m.p("photos/2024")).unwrap();
    write_random_file(&m.p("photos/2024/a.jpg"), 1, 3 << 20);
    std::fs::write(m.p("photos/2024/b.jpg"), b"second").unwrap();
    std::fs::write(m.p("c.txt"), b"old c").unwrap();
    std::fs::set_permissions(m.p("photos/2024/a.jpg"), std::fs::Permissions::from_mode(0o640)).unwrap();
    sh(&format!(
        "setfattr -n user.note -v kept {0} && touch -m -d 2020-01-02T03:04:05Z {0}",
        m.p("photos/2024/a.jpg").display()
    ));
    let a_sum = sha256(&m.p("photos/2024/a.jpg"));
    let before = std::fs::metadata(m.p("photos/2024/a.jpg")).unwrap();

    // `rm -r` through the mount, and a delete over HTTP.
    std::fs::remove_dir_all(m.p("photos/2024")).unwrap();
    assert!(!m.p("photos/2024").exists());
    let (status, _, _) = curl(&["-X", "DELETE", "-H", &bearer(&token), &format!("{base}/files/c.txt")]);
    assert_eq!(status, 204);
    let names = |dir: &str| -> Vec<String> {
        let mut n: Vec<String> =
            std::fs::read_dir(m.p(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        n.sort();
        n
    };
    assert!(!names("").contains(&".trash".to_string()), "the trash is not listed: {:?}", names(""));
    let in_trash = names(".trash");
    assert_eq!(in_trash.len(), 3, "{in_trash:?}");
    assert!(in_trash.iter().any(|n| n.ends_with("-a.jpg")) && in_trash.iter().any(|n| n.ends_with("-c.txt")));
    let listed = trash_list(&v);
    let mut paths: Vec<&str> = listed.iter().map(|t| t["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/c.txt", "/photos/2024/a.jpg", "/photos/2024/b.jpg"]);
    assert_eq!(listed.iter().find(|t| t["path"] == "/photos/2024/a.jpg").unwrap()["size"], 3 << 20);
    let trash_area = v.stats()["areas"].as_array().unwrap().iter().find(|a| a["name"] == ".trash").cloned();
    assert_eq!(trash_area.expect("the trash's space in stats")["files"], 3);

    // The directory comes back whole: data, mode, times, xattrs, inode.
    let out = v.run_ok(&["trash", "restore", v.path(), "photos/2024"]);
    assert!(out.contains("restored /photos/2024/a.jpg") && out.contains("restored /photos/2024/b.jpg"), "{out}");
    let after = std::fs::metadata(m.p("photos/2024/a.jpg")).unwrap();
    assert_eq!(sha256(&m.p("photos/2024/a.jpg")), a_sum);
    assert_eq!(
        (after.ino(), after.mode(), after.mtime(), after.uid()),
        (before.ino(), before.mode(), before.mtime(), before.uid())
    );
    assert_eq!(sh(&format!("getfattr --only-values -n user.note {}", m.p("photos/2024/a.jpg").display())), "kept");
    assert_eq!(std::fs::read(m.p("photos/2024/b.jpg")).unwrap(), b"second");
    let again = v.run(&["trash", "restore", v.path(), "photos/2024"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing deleted from photos/2024"), "{again:?}");

    // A path taken again is not overwritten; --to puts the old file beside it.
    std::fs::write(m.p("c.txt"), b"new c").unwrap();
    let refused = v.run(&["trash", "restore", v.path(), "/c.txt"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("exists again"), "{refused:?}");
    v.run_ok(&["trash", "restore", v.path(), "/c.txt", "--to", "old/c.txt"]);
    assert_eq!(std::fs::read(m.p("old/c.txt")).unwrap(), b"old c");
    assert_eq!(std::fs::read(m.p("c.txt")).unwrap(), b"new c");
    assert!(trash_list(&v).is_empty());

    // Deleting from /.trash, and emptying it, is for good.
    std::fs::remove_file(m.p("photos/2024/a.jpg")).unwrap();
    std::fs::remove_file(m.p("photos/2024/b.jpg")).unwrap();
    let a_in_trash = names(".trash").into_iter().find(|n| n.ends_with("-a.jpg")).unwrap();
    std::fs::remove_file(m.p(&format!(".trash/{a_in_trash}"))).unwrap();
    assert_eq!(trash_list(&v).len(), 1);
    let out = v.run_ok(&["trash", "empty", v.path()]);
    assert!(out.contains("deleted 1 files (6 bytes)"), "{out}");
    assert!(trash_list(&v).is_empty() && names(".trash").is_empty());
    m.unmount();
    v.assert_clean(&[]);
    let acts: Vec<String> = audit_records(&v, &[]).iter().map(|r| r["action"].as_str().unwrap().to_string()).collect();
    assert!(acts.contains(&"trash.restore".to_string()) && acts.contains(&"trash.empty".to_string()), "{acts:?}");
}

#[test]
fn without_trash_days_deletes_are_final() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::write(m.p("x"), b"x").unwrap();
    std::fs::remove_file(m.p("x")).unwrap();
    assert!(!m.p(".trash").exists());
    m.unmount();
    assert!(trash_list(&v).is_empty(), "and offline the CLI opens the volume itself");
}

#[test]
fn the_daemon_snapshots_a_directory_on_schedule_and_forget_thins_out_only_its_snapshots() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir(m.p("photos")).unwrap();
    std::fs::write(m.p("photos/a.jpg"), b"a photo").unwrap();
    std::fs::write(m.p("elsewhere.txt"), b"not in the schedule's tree").unwrap();
    m.unmount();
    let schedule = "[[retention.snapshots]]\nname = \"photos\"\npath = \"/photos\"\nhourly = 1\ndaily = 7\n";
    std::fs::write(v.dir.join("nanofs.toml"), schedule).unwrap();
    let m = v.mount();
    let snapshots = |m: &Mounted| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(m.p(".snapshots"))
            .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        n.sort();
        n
    };
    let mut taken = Vec::new();
    for _ in 0..120 {
        taken = snapshots(&m);
        if !taken.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(taken.len(), 1, "one scheduled snapshot soon after the mount: {taken:?}");
    let first = taken[0].clone();
    assert!(first.starts_with("photos@") && first.ends_with('Z') && !first.contains(':'), "{first}");
    assert_eq!(std::fs::read(m.p(&format!(".snapshots/{first}/a.jpg"))).unwrap(), b"a photo");
    assert!(!m.p(&format!(".snapshots/{first}/elsewhere.txt")).exists(), "only the directory");

    // Two more in the same hour (taken by hand under the schedule's name) and one of
    // another name: `forget` keeps the newest of the hour and leaves the other alone.
    v.run_ok(&["snapshot", "create", v.path(), "photos@by-hand-1", "--path", "/photos"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    v.run_ok(&["snapshot", "create", v.path(), "photos@by-hand-2", "--path", "/photos"]);
    v.run_ok(&["snapshot", "create", v.path(), "manual"]);
    let dry = v.run_ok(&["snapshot", "forget", v.path(), "--dry-run"]);
    assert!(dry.contains("keep\tphotos@by-hand-2"), "{dry}");
    assert_eq!(dry.matches("would delete\t").count(), 2, "{dry}");
    assert_eq!(snapshots(&m).len(), 4, "a dry run deletes nothing");
    v.run_ok(&["snapshot", "forget", v.path()]);
    assert_eq!(snapshots(&m), ["manual", "photos@by-hand-2"]);
    m.unmount();
    v.assert_clean(&[]);
}

#[test]
fn a_schedule_that_keeps_nothing_is_refused_with_its_name() {
    let v = TestVolume::new();
    std::fs::write(v.dir.join("nanofs.toml"), "[[retention.snapshots]]\nname = \"x\"\npath = \"/\"\n").unwrap();
    let out = nanofs(&["config", "check", v.path()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retention.snapshots \"x\"") && err.contains("hourly"), "{err}");
}
