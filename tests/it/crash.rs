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

/// Replacing a file by renaming a just-closed one over it (how editors, `rsync` and
/// package managers update files) commits the new file first, although its close handed
/// the commit to the committer: a crash right after, in the committer, leaves the name with
/// the old bytes or the new ones, never an empty file.
#[test]
fn a_crash_after_a_replacing_rename_leaves_the_old_or_the_new_file() {
    let v = TestVolume::new();
    let m = v.mount();
    let old = |i: usize| format!("old contents {i}\n");
    // 4 MiB of text: a small file (no streaming) that takes the committer milliseconds to
    // compress, so the rename, microseconds after the close, comes first.
    let new = |i: usize| format!("new contents {i}\n").repeat(4 << 20 >> 4);
    for i in 0..3 {
        std::fs::write(m.p(&format!("f{i}.txt")), old(i)).unwrap();
    }
    m.unmount();
    let m = v.mount_with_env(&[], &[("NANOFS_CRASH_AT", "closed-file-commit")]);
    let script = format!(
        "import os\nfor i in range(3):\n    t = '{d}/.f%d.tmp' % i\n    open(t, 'w').write(('new contents %d\\n' % i) * ({n}))\n    os.rename(t, '{d}/f%d.txt' % i)\n",
        d = m.p("").display(),
        n = 4 << 20 >> 4
    );
    let _ = std::process::Command::new("python3").args(["-c", &script]).status().unwrap();
    m.expect_crash("a closed file's commit");
    let m = v.mount();
    for i in 0..3 {
        let got = std::fs::read_to_string(m.p(&format!("f{i}.txt"))).unwrap();
        assert!(got == old(i) || got == new(i), "f{i}.txt holds {} bytes, neither the old file nor the new", got.len());
    }
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
        // Most of their pack: collection moves the survivor's bodies and deletes it. Written
        // by a process of its own: one that other tests fork meanwhile shares its descriptor
        // with their children, whose closes commit the small first windows of a file through
        // the database's log instead of the pack.
        assert!(sh_status(&format!(
            "dd if=/dev/urandom of='{}' bs=1M count=20 status=none",
            m.p("gone.bin").display()
        )));
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

/// Runs `nanofs ARGS --passphrase-file F` set to abort at `point`, and asserts that it did.
fn run_crashing_at(v: &TestVolume, args: &[&str], point: &str) {
    let out = std::process::Command::new(bin())
        .args(args)
        .args(["--passphrase-file", v.pass_file.to_str().unwrap()])
        .env_remove("NANOFS_PASSPHRASE")
        .env("NANOFS_CRASH_AT", point)
        .output()
        .unwrap();
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&out.status).is_some(),
        "{point}: nanofs {args:?} did not crash: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key_epoch(v: &TestVolume) -> u64 {
    let out = nanofs(&["key", "list", v.path(), "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("key list prints JSON");
    list["epoch"].as_u64().expect("an epoch")
}

/// A volume with one file written under key epoch 0 and one under epoch 1.
fn volume_with_two_epochs() -> (TestVolume, String, String) {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("old.bin"), 21, 6 << 20);
    let old = sha256(&m.p("old.bin"));
    m.unmount();
    v.run_ok(&["key", "rotate", v.path()]);
    let m = v.mount();
    write_random_file(&m.p("new.bin"), 22, 6 << 20);
    let new = sha256(&m.p("new.bin"));
    m.unmount();
    (v, old, new)
}

fn assert_files(v: &TestVolume, files: &[(&str, &str)]) {
    v.assert_clean(&["--read-data"]);
    let m = v.mount();
    for (name, sum) in files {
        assert_eq!(sha256(&m.p(name)), *sum, "{name}");
    }
    m.unmount();
}

/// A crash while the header is replaced leaves the old header or the new one, whole: the
/// passphrase that opens the volume is exactly the old or exactly the new one.
#[test]
fn a_crash_changing_the_passphrase_leaves_the_old_one_or_the_new_one() {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("keep.bin"), 20, 4 << 20);
    let keep = sha256(&m.p("keep.bin"));
    m.unmount();
    let new_pass = v.tmp.path().join("new.pass");
    std::fs::write(&new_pass, "a new passphrase\n").unwrap();
    let change = ["key", "change-passphrase", v.path(), "--new-passphrase-file", new_pass.to_str().unwrap()];
    let opens = |pass: &std::path::Path| nanofs(&["check", v.path(), "--passphrase-file", pass.to_str().unwrap()]);

    run_crashing_at(&v, &change, "header-tmp-written");
    assert!(
        opens(&v.pass_file).status.success(),
        "the old passphrase stopped working before the new header was in place"
    );
    assert!(!opens(&new_pass).status.success(), "the new passphrase works without the new header");
    assert_files(&v, &[("keep.bin", &keep)]);

    // Then done for real: now only the new one opens.
    v.run_ok(&change);
    assert!(opens(&new_pass).status.success());
    assert!(!opens(&v.pass_file).status.success());
}

/// A crash during key rotation: before the new header is in place the volume stays at its
/// epoch; after, it is at the next one (with the keys of both). Either way it opens with
/// its passphrase, checks clean and reads every file, and new writes use the new epoch.
#[test]
fn a_crash_during_key_rotation_leaves_the_old_or_the_new_epoch() {
    for (point, epoch) in [("header-tmp-written", 0), ("rotate-header-stored", 1)] {
        let v = TestVolume::new();
        let m = v.mount();
        write_random_file(&m.p("old.bin"), 21, 6 << 20);
        let old = sha256(&m.p("old.bin"));
        m.unmount();
        run_crashing_at(&v, &["key", "rotate", v.path()], point);
        assert_eq!(key_epoch(&v), epoch, "{point}");
        assert_files(&v, &[("old.bin", &old)]);
        // Rotating again works from there.
        v.run_ok(&["key", "rotate", v.path()]);
        assert_eq!(key_epoch(&v), epoch + 1, "{point}");
        let m = v.mount();
        write_random_file(&m.p("after.bin"), 23, 6 << 20);
        let after = sha256(&m.p("after.bin"));
        m.unmount();
        assert_files(&v, &[("old.bin", &old), ("after.bin", &after)]);
    }
}

/// A crash at each step of a rekey (chunks re-sealed but not yet durable; old copies
/// collected; the header forgetting old keys half written) keeps every file readable and
/// the volume clean; the old epoch's key is kept until the rekey that completes forgets it.
#[test]
fn a_crash_during_rekey_keeps_every_file_and_the_old_key_until_done() {
    for point in ["rekey-resealed", "rekey-old-copies-gone", "header-tmp-written"] {
        let (v, old, new) = volume_with_two_epochs();
        run_crashing_at(&v, &["rekey", v.path()], point);
        assert_eq!(key_epoch(&v), 1, "{point}");
        assert_files(&v, &[("old.bin", &old), ("new.bin", &new)]);
        let out = v.run_ok(&["rekey", v.path()]);
        assert!(out.contains("forgot the keys of epochs [0]"), "{point}: the crashed rekey forgot a key: {out}");
        assert_files(&v, &[("old.bin", &old), ("new.bin", &new)]);
    }
}

/// A crash once a large write's first segment is synced but not committed: the file keeps
/// what was committed (nothing of it here), the rest of the volume is intact, and the
/// segment's bodies are garbage that the next collection frees.
#[test]
fn a_crash_between_a_segments_sync_and_its_commit_loses_only_that_write() {
    let v = TestVolume::new();
    std::fs::write(v.dir.join("nanofs.toml"), "[storage]\nwrite_window_mb = 16\n").unwrap();
    let m = v.mount();
    write_random_file(&m.p("keep.bin"), 11, 12 << 20);
    std::fs::File::open(m.p("keep.bin")).unwrap().sync_all().unwrap();
    let keep = sha256(&m.p("keep.bin"));
    m.unmount();

    let m = v.mount_with_env(&[], &[("NANOFS_CRASH_AT", "segment-synced")]);
    let path = m.p("large.bin");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(path).ok()?;
        for i in 0..12u64 {
            f.write_all(&random_bytes(i, 4 << 20)).ok()?;
        }
        f.sync_all().ok()
    });
    m.expect_crash("segment-synced");
    assert!(writer.join().unwrap().is_none(), "the write crossing the crash succeeded");

    v.assert_clean(&["--read-data"]);
    let m = v.mount();
    assert_eq!(sha256(&m.p("keep.bin")), keep);
    if let Ok(data) = std::fs::read(m.p("large.bin")) {
        for (i, piece) in data.chunks(4 << 20).enumerate() {
            assert_eq!(piece, &random_bytes(i as u64, 4 << 20)[..piece.len()], "piece {i} of the crashed write");
        }
        let _ = std::fs::remove_file(m.p("large.bin"));
    }
    m.unmount();
    v.run_ok(&["gc", v.path()]);
    let stored = v.stat_u64("stored_bytes");
    assert!(((12 << 20)..(12 << 20) + (64 << 10)).contains(&stored), "{stored}");
    v.assert_clean(&["--read-data"]);
}

/// A crash while an upload completes: between its last byte's `fsync` and its move, the
/// client's `HEAD` after the restart (how a tus client resumes) finds every byte and moves
/// it; after the move, the upload is gone and the file is at its target. Either way the
/// volume checks clean and the file holds the bytes sent.
#[test]
fn a_crash_while_an_upload_completes_leaves_it_resumable_or_at_its_target() {
    use crate::http::Server;
    for point in ["upload-data-synced", "upload-moved"] {
        let v = TestVolume::new();
        let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write"]).trim().to_string();
        let auth = format!("Authorization: Bearer {token}");
        let data = v.tmp.path().join("clip.bin");
        write_random_file(&data, 5, 3 << 20);
        let server = Server::start_env(&v, &[("NANOFS_CRASH_AT", point)]);
        let meta = format!("Upload-Metadata: path {}", sh("printf /clips/clip.bin | base64 -w0").trim());
        let created = sh(&format!(
            "curl -s -D- -o /dev/null -X POST -H 'Tus-Resumable: 1.0.0' -H '{auth}' -H 'Upload-Length: {}' -H '{meta}' {}/uploads",
            3 << 20,
            server.base
        ));
        let location = created.lines().find_map(|l| l.strip_prefix("location: ")).expect(&created).trim().to_string();
        let url = format!("{}{location}", server.base);
        // The server dies while answering.
        let sent = sh_status(&format!(
            "curl -sf -X PATCH -H 'Tus-Resumable: 1.0.0' -H '{auth}' -H 'Upload-Offset: 0' \
             -H 'Content-Type: application/offset+octet-stream' --data-binary @{} {url}",
            data.display()
        ));
        assert!(!sent, "{point}: the PATCH crossing the crash succeeded");
        server.expect_crash(point);
        v.assert_clean(&["--read-data"]);

        let server = Server::start(&v);
        let url = format!("{}{location}", server.base);
        let head =
            sh(&format!("curl -s -o /dev/null -w '%{{http_code}}' -I -H 'Tus-Resumable: 1.0.0' -H '{auth}' {url}"));
        let want = if point == "upload-data-synced" { "200" } else { "404" };
        assert_eq!(head.trim(), want, "{point}: HEAD after the restart");
        let got = v.tmp.path().join("got.bin");
        assert!(sh_status(&format!("curl -sf -H '{auth}' -o {} {}/files/clips/clip.bin", got.display(), server.base)));
        assert!(std::fs::read(&got).unwrap() == std::fs::read(&data).unwrap(), "{point}: the file at its target");
        server.stop();
        v.assert_clean(&["--read-data"]);
    }
}

/// A crash while a bundle is imported: before the last batch, no gallery and nothing at the
/// target path, and the staging directory goes at the next start; after it, the whole
/// gallery. The volume checks clean, and an import afterwards works.
#[test]
fn a_crash_while_a_bundle_is_imported_leaves_no_gallery_or_all_of_it() {
    let v = TestVolume::new();
    let pw = v.tmp.path().join("bob.pw");
    std::fs::write(&pw, "bob-password\n").unwrap();
    v.run_ok(&["user", "add", v.path(), "bob", "--password-file", pw.to_str().unwrap()]);
    let m = v.mount();
    std::fs::create_dir(m.p("trip")).unwrap();
    write_random_file(&m.p("trip/video.bin"), 3, 3 << 20);
    std::fs::write(m.p("trip/note.txt"), b"day one").unwrap();
    m.unmount();
    v.run_ok(&["gallery", "create", v.path(), "/trip", "--title", "Trip", "--owner", "bob"]);
    let key = v.tmp.path().join("one.key");
    let out = nanofs(&["keygen", key.to_str().unwrap()]);
    let recipient = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    let bundle = v.tmp.path().join("trip.bundle");
    v.run_ok(&["gallery", "export", v.path(), "/trip", "--recipient", &recipient, "-o", bundle.to_str().unwrap()]);
    let galleries = |v: &TestVolume| -> usize {
        serde_json::from_str::<serde_json::Value>(&v.run_ok(&["gallery", "list", v.path()]))
            .unwrap()
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(galleries(&v), 1);

    for (point, dest) in [("import-staged", "/staged"), ("import-committed", "/committed")] {
        let import = ["gallery", "import", v.path(), bundle.to_str().unwrap(), "--identity", key.to_str().unwrap()];
        let args = [&import[..], &["--path", dest, "--owner", "bob"]].concat();
        run_crashing_at(&v, &args, point);
        v.assert_clean(&["--read-data"]);
        let addr = format!("127.0.0.1:{}", crate::http::free_port());
        let m = v.mount_with(&["--serve", &addr]);
        let imported = m.p(dest.trim_start_matches('/'));
        if point == "import-staged" {
            assert!(!imported.exists(), "{point}: the target exists");
            assert_eq!(galleries(&v), 1, "{point}");
            // The sidecar's housekeeping removes the staging directory at start.
            let swept = (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                m.log_text().contains("removing the staging directory of an interrupted import")
            });
            assert!(swept, "{point}: staging directory not removed:\n{}", m.log_text());
        } else {
            assert_eq!(galleries(&v), 2, "{point}");
            assert_eq!(std::fs::read(imported.join("note.txt")).unwrap(), b"day one");
            assert!(
                std::fs::read(imported.join("video.bin")).unwrap() == std::fs::read(m.p("trip/video.bin")).unwrap()
            );
        }
        m.unmount();
        v.assert_clean(&["--read-data"]);
    }
    let args = ["gallery", "import", v.path(), bundle.to_str().unwrap(), "--identity", key.to_str().unwrap()];
    v.run_ok(&[&args[..], &["--path", "/again", "--owner", "bob"]].concat());
    assert_eq!(galleries(&v), 3);
    v.assert_clean(&["--read-data"]);
}
