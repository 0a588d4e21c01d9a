//! Volumes whose chunks live on a real three-node Garage cluster (replication factor 3) on
//! loopback: the tree, large-file, dedup, snapshot and GC paths, nodes stopped mid-write,
//! an outage that writes wait out and then fail cleanly, and a volume rebuilt on another
//! "host" from the bucket alone.

use crate::common::*;
use crate::tools::{assert_same_listing, build_tree, tree_meta};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A Garage cluster started by scripts/garage-cluster.sh in a temporary directory, every
/// node stopped on drop.
struct Garage {
    dir: tempfile::TempDir,
    endpoint: String,
    credentials: PathBuf,
}

fn cluster_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/garage-cluster.sh")
}

impl Garage {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("nanofs-garage-").tempdir().expect("tempdir");
        sh(&format!("'{}' start '{}' 3", cluster_script(), dir.path().display()));
        let endpoint = std::fs::read_to_string(dir.path().join("endpoint")).unwrap().trim().to_string();
        let credentials = dir.path().join("credentials");
        Self { dir, endpoint, credentials }
    }

    fn stop_node(&self, n: u32) {
        sh(&format!("'{}' stop-node '{}' {n}", cluster_script(), self.dir.path().display()));
    }

    fn start_node(&self, n: u32) {
        sh(&format!("'{}' start-node '{}' {n}", cluster_script(), self.dir.path().display()));
    }

    fn key(&self, field: &str) -> String {
        let text = std::fs::read_to_string(&self.credentials).unwrap();
        text.lines().find_map(|l| l.strip_prefix(field)).unwrap().trim_start_matches([' ', '=']).to_string()
    }

    /// The bucket's objects and sizes, listed by curl's own SigV4 signing (another S3
    /// client than the one under test).
    fn objects(&self) -> Vec<(String, u64)> {
        let xml = sh(&format!(
            "curl -sf --aws-sigv4 aws:amz:garage:s3 -u '{}:{}' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
             '{}/nanofs?list-type=2'",
            self.key("aws_access_key_id"),
            self.key("aws_secret_access_key"),
            self.endpoint
        ));
        assert!(xml.contains("<IsTruncated>false</IsTruncated>"), "one page of objects: {xml}");
        xml.split("<Contents>")
            .skip(1)
            .map(|c| {
                let field = |name: &str| {
                    c.split(&format!("<{name}>")).nth(1).and_then(|r| r.split('<').next()).unwrap().to_string()
                };
                (field("Key"), field("Size").parse().unwrap())
            })
            .collect()
    }

    fn pack_bytes(&self) -> u64 {
        self.objects().iter().filter(|(k, _)| k.starts_with("packs/")).map(|(_, s)| s).sum()
    }

    /// `nanofs init`/`meta restore` flags naming this cluster.
    fn flags(&self) -> Vec<String> {
        [
            "--s3-endpoint",
            &self.endpoint,
            "--s3-bucket",
            "nanofs",
            "--s3-region",
            "garage",
            "--s3-credentials",
            self.credentials.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// A volume on this cluster, with `[store]` keys set as `settings` says.
    fn volume(&self, settings: &[(&str, &str)]) -> TestVolume {
        let tmp = tempfile::Builder::new().prefix("nanofs-it-").tempdir().expect("tempdir");
        let dir = tmp.path().join("vol");
        let pass_file = tmp.path().join("pass");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
        let flags = self.flags();
        let mut args = vec!["init", dir.to_str().unwrap(), "--passphrase-file", pass_file.to_str().unwrap()];
        args.extend(flags.iter().map(String::as_str));
        let out = nanofs(&args);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        set_store_keys(&dir, settings);
        TestVolume { tmp, dir, pass_file }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = std::process::Command::new(cluster_script()).arg("stop").arg(self.dir.path()).output();
    }
}

/// Sets keys of the `[store]` section (the last of nanofs.toml).
fn set_store_keys(volume: &Path, settings: &[(&str, &str)]) {
    let path = volume.join("nanofs.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (key, value) in settings {
        let at = text.rfind(&format!("\n{key} = ")).unwrap_or_else(|| panic!("no {key} in [store]"));
        let end = text[at + 1..].find('\n').map_or(text.len(), |e| at + 1 + e);
        text.replace_range(at + 1..end, &format!("{key} = {value}"));
    }
    std::fs::write(path, text).unwrap();
}

fn write_and_sync(path: &Path, seed: u64, len: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for b in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b.copy_from_slice(&state.to_le_bytes()[..b.len()]);
        }
        let n = left.min(block.len());
        f.write_all(&block[..n])?;
        left -= n;
    }
    f.sync_all()
}

/// Asserts that `path` holds what `write_and_sync(_, seed, len)` writes.
fn assert_holds(v: &TestVolume, path: &Path, seed: u64, len: usize, what: &str) {
    let want = v.tmp.path().join("want.bin");
    write_and_sync(&want, seed, len).unwrap();
    assert_eq!(sha256(path), sha256(&want), "{what}");
    std::fs::remove_file(want).unwrap();
}

#[test]
fn a_volume_on_a_garage_cluster_holds_a_tree_a_large_file_dedup_snapshots_and_gc() {
    let garage = Garage::start();
    // The smallest local cache (four packs), so that reading back fetches from the cluster.
    let v = garage.volume(&[("cache_gib", "0"), ("meta_backup_every", "\"0\"")]);
    let m = v.mount();

    let src = v.tmp.path().join("tree");
    build_tree(&src);
    sh(&format!("rsync -aHAX '{}/' '{}/'", src.display(), m.p("tree").display()));
    let changes =
        sh(&format!("rsync -aHAXc --itemize-changes --dry-run '{}/' '{}/'", src.display(), m.p("tree").display()));
    assert_eq!(changes.trim(), "", "rsync still sees differences:\n{changes}");
    assert_same_listing(&tree_meta(&src), &tree_meta(&m.p("tree")));

    let big = v.tmp.path().join("big.bin");
    write_and_sync(&big, 7, 2 << 30).unwrap();
    let sum = sha256(&big);
    sh(&format!("cp '{}' '{b}' && sync '{b}'", big.display(), b = m.p("big.bin").display()));
    std::fs::remove_file(&big).unwrap();
    let stored = garage.pack_bytes();
    assert!(stored > 2 << 30, "the 2 GiB file is in the cluster: {stored} bytes of packs");
    // Object names say nothing but a pack's number.
    for (key, _) in garage.objects() {
        let hex = key.strip_prefix("packs/").unwrap_or_else(|| panic!("unexpected object {key}"));
        assert!(hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    }
    let local: u64 =
        std::fs::read_dir(v.dir.join("packs")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(local <= 4 * (32 << 20) + (64 << 20), "the local cache stays bounded: {local} bytes");
    assert_eq!(sha256(&m.p("big.bin")), sum, "read back through a cache smaller than the file");

    // A second copy stores (almost) nothing new.
    sh(&format!("cp '{}' '{c}' && sync '{c}'", m.p("big.bin").display(), c = m.p("copy.bin").display()));
    let after_copy = garage.pack_bytes();
    assert!(after_copy - stored < stored / 100, "dedup: {stored} -> {after_copy}");

    // A snapshot keeps the file; once it and both copies are gone, GC empties the bucket.
    v.run_ok(&["snapshot", "create", v.path(), "before"]);
    std::fs::remove_file(m.p("big.bin")).unwrap();
    std::fs::remove_file(m.p("copy.bin")).unwrap();
    v.run_ok(&["gc", v.path()]);
    assert_eq!(sha256(&m.p(".snapshots/before/big.bin")), sum);
    assert!(garage.pack_bytes() > 2 << 30, "the snapshot keeps the packs");
    v.run_ok(&["snapshot", "delete", v.path(), "before"]);
    let report = v.run_ok(&["gc", v.path()]);
    let left = garage.pack_bytes();
    assert!(left < 256 << 20, "GC deleted the packs of the file: {left} bytes left\n{report}");
    assert_same_listing(&tree_meta(&src), &tree_meta(&m.p("tree")));
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn a_node_stopped_in_the_middle_of_a_large_write_loses_nothing() {
    let garage = Garage::start();
    let v = garage.volume(&[("cache_gib", "0"), ("meta_backup_every", "\"0\"")]);
    let m = v.mount();
    let path = m.p("during-failure.bin");
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || write_and_sync(&path, 11, 768 << 20))
    };
    // Stopped while the file streams in (the first packs are already uploaded).
    let deadline = Instant::now() + Duration::from_secs(60);
    while garage.pack_bytes() < 64 << 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    garage.stop_node(3);
    writer.join().unwrap().expect("a write with two of three nodes up succeeds");
    assert_holds(&v, &path, 11, 768 << 20, "read back with a node down");
    garage.start_node(3);
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn with_two_nodes_down_writes_wait_then_fail_with_eio_reads_of_cached_data_go_on_and_all_recovers() {
    let garage = Garage::start();
    let v = garage.volume(&[("timeout_secs", "4"), ("meta_backup_every", "\"0\"")]);
    let m = v.mount();
    write_and_sync(&m.p("before.bin"), 1, 64 << 20).unwrap();
    let before = sha256(&m.p("before.bin"));

    garage.stop_node(2);
    garage.stop_node(3);
    let started = Instant::now();
    let err = write_and_sync(&m.p("during.bin"), 2, 64 << 20).expect_err("no quorum: the write cannot be stored");
    let waited = started.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(waited >= Duration::from_secs(3), "the write waited for the store first: {waited:?}");
    // Cached packs are still read (the kernel's page cache is dropped first).
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(sha256(&m.p("before.bin")), before);
    assert!(m.log_text().contains("could not be uploaded"), "the failure is logged");

    garage.start_node(2);
    garage.start_node(3);
    // Once the nodes are back, writes work again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match write_and_sync(&m.p("after.bin"), 3, 32 << 20) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("writes did not recover: {e}"),
        }
    }
    assert_holds(&v, &m.p("after.bin"), 3, 32 << 20, "written after the outage");
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn a_volume_is_rebuilt_on_another_host_from_the_bucket_and_a_key_slot() {
    let garage = Garage::start();
    let v = garage.volume(&[("meta_backup_every", "\"0\"")]);
    let id_file = v.tmp.path().join("identity");
    let out = nanofs(&["keygen", id_file.to_str().unwrap()]);
    let recipient = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    v.run_ok(&["key", "add", v.path(), "--recipient", &recipient]);

    let m = v.mount();
    let src = v.tmp.path().join("tree");
    build_tree(&src);
    sh(&format!("cp -a '{}/.' '{}/'", src.display(), m.p("tree").display()));
    write_and_sync(&m.p("gone-later.bin"), 5, 96 << 20).unwrap();
    let gone_sum = sha256(&m.p("gone-later.bin"));
    // Backed up through the daemon, while mounted.
    let first = v.run_ok(&["meta", "backup", v.path(), "--json"]);
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    // After the backup: a file deleted and collected (its packs must outlive the backup
    // that names them), and a file the backup does not know.
    std::fs::remove_file(m.p("gone-later.bin")).unwrap();
    v.run_ok(&["gc", v.path()]);
    write_and_sync(&m.p("after-backup.bin"), 6, 8 << 20).unwrap();
    m.unmount();

    // Another host: only the bucket, the cluster's key and the identity.
    let host = tempfile::Builder::new().prefix("nanofs-host2-").tempdir().unwrap();
    let restored = host.path().join("vol");
    let mut args = vec!["meta", "restore", restored.to_str().unwrap(), "--identity", id_file.to_str().unwrap()];
    let flags = garage.flags();
    args.extend(flags.iter().map(String::as_str));
    let out = nanofs(&args);
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(first["name"].as_str().unwrap()), "the newest backup: {text}");
    let r = v.moved_to(&restored);
    assert!(!restored.join("packs").exists() || std::fs::read_dir(restored.join("packs")).unwrap().next().is_none());
    r.assert_clean(&["--read-data"]);
    // Damaged local copies of packs (check fetched them all) are dropped and fetched again.
    for entry in std::fs::read_dir(restored.join("packs")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[100] ^= 0x55;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, bytes).unwrap();
    }
    let rm = r.mount();
    sh(&format!("find '{}' -type f -exec cat {{}} + > /dev/null", rm.p("tree").display()));
    assert_eq!(sha256(&rm.p("gone-later.bin")), gone_sum, "the packs the backup names were kept");
    assert!(rm.log_text().contains("dropping a damaged local copy"), "{}", rm.log_text());
    assert_same_listing(&tree_meta(&src), &tree_meta(&rm.p("tree")));
    assert_eq!(sha256(&rm.p("gone-later.bin")), gone_sum, "the packs the backup names were kept");
    assert!(!rm.p("after-backup.bin").exists(), "written after the backup");

    // The next backup lets the emptied packs go; what is mounted is still whole.
    let packs_before = garage.pack_bytes();
    std::fs::remove_file(rm.p("gone-later.bin")).unwrap();
    r.run_ok(&["gc", r.path()]);
    let second: serde_json::Value = serde_json::from_str(&r.run_ok(&["meta", "backup", r.path(), "--json"])).unwrap();
    assert!(second["packs_deleted"].as_u64().unwrap() > 0, "{second}");
    assert!(garage.pack_bytes() < packs_before - (64 << 20), "{packs_before} -> {}", garage.pack_bytes());
    rm.unmount();
    r.assert_clean(&["--read-data"]);

    // A wrong passphrase rebuilds nothing.
    let wrong = host.path().join("wrong");
    let bad_pass = host.path().join("bad-pass");
    std::fs::write(&bad_pass, "not it\n").unwrap();
    let mut args = vec!["meta", "restore", wrong.to_str().unwrap(), "--passphrase-file", bad_pass.to_str().unwrap()];
    args.extend(flags.iter().map(String::as_str));
    let out = nanofs(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn metadata_is_backed_up_on_schedule_and_the_newest_two_are_kept() {
    let garage = Garage::start();
    let v = garage.volume(&[("meta_backup_every", "\"1s\"")]);
    let m = v.mount();
    std::fs::write(m.p("note.txt"), b"kept in the database").unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while m.log_text().matches("metadata backed up").count() < 3 {
        assert!(Instant::now() < deadline, "no scheduled backups:\n{}", m.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    let backups: Vec<String> =
        garage.objects().into_iter().map(|(k, _)| k).filter(|k| k.starts_with("meta/")).collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    m.unmount();
}

#[test]
fn init_refuses_a_prefix_in_use_or_a_wrong_key_and_leaves_nothing_behind() {
    let garage = Garage::start();
    let first = garage.volume(&[]);
    let m = first.mount();
    write_and_sync(&m.p("movie.bin"), 9, 40 << 20).unwrap();
    m.unmount();
    let init = |dir: &Path, extra: &[&str]| {
        let flags = garage.flags();
        let mut args = vec!["init", dir.to_str().unwrap(), "--passphrase-file", first.pass_file.to_str().unwrap()];
        args.extend(flags.iter().map(String::as_str));
        args.extend(extra);
        nanofs(&args)
    };
    let second = first.tmp.path().join("second");
    let out = init(&second, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--s3-prefix"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!second.exists(), "nothing is left behind");
    // A wrong key is refused at once, not after the retry timeout.
    let bad_key = first.tmp.path().join("bad-key");
    std::fs::write(&bad_key, "aws_access_key_id = GK0000\naws_secret_access_key = nope\n").unwrap();
    let started = Instant::now();
    let mut args = vec!["init", second.to_str().unwrap(), "--passphrase-file", first.pass_file.to_str().unwrap()];
    args.extend(["--s3-endpoint", &garage.endpoint, "--s3-bucket", "nanofs", "--s3-region", "garage"]);
    args.extend(["--s3-credentials", bad_key.to_str().unwrap(), "--s3-prefix", "second"]);
    let out = nanofs(&args);
    assert!(!out.status.success() && !second.exists());
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    // Under a prefix of its own it is made, and both volumes keep their own objects.
    assert!(init(&second, &["--s3-prefix", "second"]).status.success());
    let second = first.moved_to(&second);
    let m = second.mount();
    write_and_sync(&m.p("other.bin"), 10, 40 << 20).unwrap();
    m.unmount();
    assert!(garage.objects().iter().any(|(k, _)| k.starts_with("second/packs/")), "{:?}", garage.objects());
    first.assert_clean(&["--read-data"]);
    second.assert_clean(&["--read-data"]);
}
