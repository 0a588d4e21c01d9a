//! `nanofs push` and `nanofs pull` against a real sidecar over loopback: parallel parts,
//! resumption after the client or the sidecar is killed, verification.

use crate::common::*;
use crate::http::{free_port, Server};
use std::process::{Command, Stdio};
use std::time::Duration;

fn client(args: &[&str], token: &str, state: &std::path::Path) -> Command {
    let mut c = Command::new(bin());
    c.args(args).env("NANOFS_TOKEN", token).env("XDG_STATE_HOME", state).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// "(N transferred now)" of a summary line.
fn transferred(stderr: &str) -> u64 {
    let at = stderr.rfind(" transferred now").expect("a summary");
    stderr[..at].rsplit('(').next().unwrap().trim().parse().unwrap()
}

#[test]
fn push_and_pull_of_1_gib_survive_a_killed_client_and_a_restarted_sidecar() {
    let v = TestVolume::new();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write"]).trim().to_string();
    let state = v.tmp.path().join("state");
    let src = v.tmp.path().join("film.bin");
    let size = 1u64 << 30;
    write_random_file(&src, 55, size as usize);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start_at(&v, &addr);
    let url = format!("{}/files/films/film.bin", server.base);

    // Kill the client part-way; running the same command again resumes.
    let mut push =
        client(&["push", src.to_str().unwrap(), &url, "--connections", "4"], &token, &state).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(push.try_wait().unwrap().is_none(), "the push finished before it could be interrupted");
    push.kill().unwrap();
    push.wait().unwrap();

    // Again, and this time the sidecar dies and comes back on the same address meanwhile.
    let push = client(&["push", src.to_str().unwrap(), &url, "--connections", "4", "--retries", "10"], &token, &state)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.kill9();
    std::thread::sleep(Duration::from_millis(700));
    let server = Server::start_at(&v, &addr);
    let out = push.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "push failed: {log}");
    let sent = transferred(&log);
    assert!(sent < size, "the resumed push sent {sent} of {size} bytes: nothing was resumed");

    // Pull it back over 4 connections, with the sidecar restarted mid-way again.
    let back = v.tmp.path().join("back.bin");
    let pull = client(&["pull", &url, back.to_str().unwrap(), "--connections", "4", "--retries", "10"], &token, &state)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let mut server = server;
    server.kill9();
    std::thread::sleep(Duration::from_millis(700));
    let server = Server::start_at(&v, &addr);
    let out = pull.wait_with_output().unwrap();
    assert!(out.status.success(), "pull failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&back), sha256(&src), "byte-identical");
    assert!(!std::path::Path::new(&format!("{}.nanofs-pull", back.display())).exists(), "journal removed");
    server.stop();
    let m = v.mount();
    assert_eq!(std::fs::metadata(m.p("films/film.bin")).unwrap().len(), size);
    m.unmount();
}

#[test]
fn trees_push_and_pull_and_a_wrong_scope_is_a_clear_error() {
    let v = TestVolume::new();
    let token =
        v.run_ok(&["token", "create", v.path(), "--allow", "read,write", "--path", "/shared"]).trim().to_string();
    let state = v.tmp.path().join("state");
    let tree = v.tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("top.txt"), b"top").unwrap();
    std::fs::write(tree.join("a/b/deep.txt"), b"deep").unwrap();
    std::fs::write(tree.join("a/empty"), b"").unwrap();
    write_random_file(&tree.join("a/blob.bin"), 9, 20 << 20);
    let server = Server::start(&v);
    let out = client(
        &["push", tree.to_str().unwrap(), &format!("{}/files/shared/tree", server.base), "--part-size-mb", "2"],
        &token,
        &state,
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = v.tmp.path().join("back");
    let out = client(&["pull", &format!("{}/files/shared/tree", server.base), back.to_str().unwrap()], &token, &state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sh(&format!("diff -r '{}' '{}'", tree.display(), back.display()));
    let out = client(
        &["push", tree.join("top.txt").to_str().unwrap(), &format!("{}/files/elsewhere/x", server.base)],
        &token,
        &state,
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the token's scope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A part of no bytes would never finish: refused before anything is sent.
    let top = tree.join("top.txt");
    let out = client(
        &["push", top.to_str().unwrap(), &format!("{}/files/shared/x", server.base), "--part-size-mb", "0"],
        &token,
        &state,
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--part-size-mb") && stderr.contains("1..=4096"), "{stderr}");
    server.stop();
}

#[test]
fn a_second_version_sends_only_the_changed_chunks() {
    let v = TestVolume::new();
    // Chunks of 256 KiB on average, so that 128 MiB holds as many chunks as 512 MiB would
    // at the default size and three small edits are about 1 % of them.
    std::fs::write(
        v.dir.join("nanofs.toml"),
        "[media.deduplication]\nmin_chunk_size_kb = 64\navg_chunk_size_kb = 256\nmax_chunk_size_kb = 1024\n",
    )
    .unwrap();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write"]).trim().to_string();
    let state = v.tmp.path().join("state");
    let src = v.tmp.path().join("cut.mov");
    let size = 128usize << 20;
    write_random_file(&src, 77, size);
    let server = Server::start(&v);
    let url = format!("{}/files/edit/cut.mov", server.base);
    let push = |args: &[&str]| -> u64 {
        let mut all = vec!["push", src.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = client(&all, &token, &state).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        transferred(&log)
    };
    assert_eq!(push(&[&url]), size as u64, "the first version goes whole");
    // Edit three places, about 1 % of the file.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        for at in [5u64 << 20, 61 << 20, 100 << 20] {
            f.write_all_at(&random_bytes(at, 400_000), at).unwrap();
        }
    }
    // --verify: the assembled file is compared with the local one as a whole at the end.
    let sent = push(&[&url, "--verify"]);
    assert!(sent < size as u64 / 20, "the second version sent {sent} bytes of {size}");
    // The same edit under a new name, with the old file as base.
    let copy = format!("{}/files/edit/copy.mov", server.base);
    let sent = push(&[&copy, "--base", "/edit/cut.mov"]);
    assert!(sent < size as u64 / 100, "against an identical base only a little is sent: {sent}");
    // And --no-delta sends it whole; every version reads back right.
    assert_eq!(push(&[&copy, "--no-delta"]), size as u64);
    let back = v.tmp.path().join("back.mov");
    let out = client(&["pull", &url, back.to_str().unwrap(), "--verify"], &token, &state).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&back), sha256(&src));
    server.stop();
    assert!(v.run_ok(&["check", v.path(), "--read-data"]).contains("clean"));
}
