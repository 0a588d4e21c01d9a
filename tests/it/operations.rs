//! Running nanofs as a service: metrics that agree with `nanofs stats`, request ids in
//! JSON logs, readiness that says why the volume does not take writes.

use crate::common::*;
use crate::http::{bearer, curl, free_port};

/// A mount serving HTTP on a free loopback port, with `extra` arguments and `env`.
pub(crate) fn mount_serving(v: &TestVolume, extra: &[&str], env: &[(&str, &str)]) -> (Mounted, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let m = v.mount_with_env(&[&["--serve", &addr][..], extra].concat(), env);
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    (m, format!("http://{addr}"))
}

/// The value of the sample `name` (with its labels, as written) in an exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_agree_with_stats_and_need_their_own_scope() {
    let v = TestVolume::new();
    let scrape = v.run_ok(&["token", "create", v.path(), "--allow", "metrics"]).trim().to_string();
    let reader = v.run_ok(&["token", "create", v.path(), "--allow", "read"]).trim().to_string();
    let (m, base) = mount_serving(&v, &["--log-format", "json"], &[("RUST_LOG", "info,nanofs=debug")]);
    // Two copies of one file: half the logical bytes are deduplicated.
    write_random_file(&m.p("a.bin"), 7, 6 << 20);
    std::fs::copy(m.p("a.bin"), m.p("b.bin")).unwrap();
    assert_eq!(sha256(&m.p("b.bin")), sha256(&m.p("a.bin")));
    sh("sync");
    let url = format!("{base}/metrics");

    let (status, _, _) = curl(&[&url]);
    assert_eq!(status, 401, "no token");
    let (status, headers, body) = curl(&["-H", &bearer(&reader), "-H", "X-Request-Id: scrape-try-1", &url]);
    assert_eq!(status, 403, "a read token may not scrape: {}", String::from_utf8_lossy(&body));
    assert!(headers.contains("x-request-id: scrape-try-1"), "the client's id is answered: {headers}");

    let stats_before = v.stats();
    let (status, headers, body) = curl(&["-H", &bearer(&scrape), &url]);
    assert_eq!(status, 200);
    assert!(headers.contains("content-type: application/openmetrics-text"), "{headers}");
    let id = headers.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("a request id").trim();
    assert_eq!(id.len(), 16, "a fresh id: {id}");
    let text = String::from_utf8(body).unwrap();
    let stats = v.stats();
    assert_eq!(stats, stats_before, "nothing changed between the two looks");
    for (metric, key) in [
        ("nanofs_logical_bytes", "logical_bytes"),
        ("nanofs_unique_bytes", "unique_bytes"),
        ("nanofs_stored_bytes", "stored_bytes"),
        ("nanofs_chunks", "chunks"),
        ("nanofs_reclaimable_bytes", "reclaimable_bytes"),
    ] {
        assert_eq!(sample(&text, metric), stats[key].as_u64().unwrap() as f64, "{metric} and stats.{key}");
    }
    let ratio = sample(&text, "nanofs_dedup_ratio");
    assert!((ratio - stats["dedup_ratio"].as_f64().unwrap()).abs() < 1e-9, "{ratio} vs {}", stats["dedup_ratio"]);
    assert!(ratio > 1.9, "two copies: {ratio}");
    assert_eq!(sample(&text, "nanofs_writable"), 1.0);

    // What happened is counted: the writes of the first file and the reads of the copy
    // (made by copy_file_range, so never in the page cache), FUSE requests by operation,
    // commits, and the refused scrape by route and status.
    assert!(sample(&text, "nanofs_written_bytes_total") >= (6 << 20) as f64);
    assert!(sample(&text, "nanofs_read_bytes_total") >= (6 << 20) as f64);
    assert!(sample(&text, "nanofs_fuse_request_duration_seconds_count{op=\"write\"}") >= 6.0);
    assert!(sample(&text, "nanofs_fuse_request_duration_seconds_count{op=\"copy_file_range\"}") >= 1.0);
    assert!(sample(&text, "nanofs_fuse_request_duration_seconds_count{op=\"lookup\"}") >= 1.0);
    assert!(sample(&text, "nanofs_commit_duration_seconds_count") >= 1.0);
    let hits = sample(&text, "nanofs_chunk_cache_hits_total") + sample(&text, "nanofs_chunk_cache_misses_total");
    assert!(hits >= 1.0, "chunk reads are counted");
    assert_eq!(
        sample(&text, "nanofs_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"403\"}"),
        1.0,
        "{text}"
    );
    assert!(text.contains("nanofs_http_request_duration_seconds_bucket{le="), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));

    // The log is JSON lines, and the refused scrape's line carries the client's id.
    let log_path = m.log.clone();
    m.unmount();
    let log = std::fs::read_to_string(log_path).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert!(lines.iter().any(|l| l["message"] == "mounted"), "{log}");
    let refused = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "scrape-try-1")
        .unwrap_or_else(|| panic!("no line of request scrape-try-1:\n{log}"));
    assert_eq!(refused["span"]["route"], "/metrics");
    assert_eq!(refused["status"], 403);
}

#[test]
fn readiness_fails_while_the_disk_is_full_or_the_mount_read_only_and_says_why() {
    let disk = SmallDisk::new("300m");
    let v = disk.volume();
    let (m, base) = mount_serving(&v, &[], &[]);
    let ready = format!("{base}/readyz");
    let (status, _, body) = curl(&[&ready]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Something else fills the disk: the volume can no longer take writes.
    let filler = disk.path.join("filler");
    assert!(!sh_status(&format!("dd if=/dev/zero of='{}' bs=1M status=none", filler.display())));
    let (status, _, body) = curl(&[&ready]);
    let why = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("the disk is full"), "{why}");
    std::fs::remove_file(&filler).unwrap();
    let (status, _, _) = curl(&[&ready]);
    assert_eq!(status, 200, "ready again once there is room");
    m.unmount();

    let (m, base) = mount_serving(&v, &["-o", "ro"], &[]);
    let (status, _, body) = curl(&[&format!("{base}/readyz")]);
    let why = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("read-only"), "{why}");
    m.unmount();
}

/// Adds the user `alice` with the password `alice-password-1`.
fn add_alice(v: &TestVolume) {
    let pw = v.tmp.path().join("alice.pw");
    std::fs::write(&pw, "alice-password-1\n").unwrap();
    v.run_ok(&["user", "add", v.path(), "alice", "--password-file", pw.to_str().unwrap()]);
}

/// `nanofs audit export`, parsed.
pub(crate) fn audit_records(v: &TestVolume, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = v.run_ok(&[&["audit", "export", v.path()][..], extra].concat());
    out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn security_acts_land_in_a_verified_audit_trail_and_tampering_is_named() {
    let v = TestVolume::new();
    add_alice(&v);
    let deleter =
        v.run_ok(&["token", "create", v.path(), "--allow", "read,delete", "--name", "cleanup"]).trim().to_string();
    let (m, base) = mount_serving(&v, &[], &[]);
    std::fs::write(m.p("old.txt"), b"to be deleted over HTTP").unwrap();
    let login = format!("{base}/api/login");
    let json = "Content-Type: application/json";
    let (status, _, _) = curl(&["-X", "POST", "-H", json, "-d", r#"{"user":"alice","password":"guess"}"#, &login]);
    assert_eq!(status, 401);
    let (status, _, _) =
        curl(&["-X", "POST", "-H", json, "-d", r#"{"user":"alice","password":"alice-password-1"}"#, &login]);
    assert_eq!(status, 200);
    let (status, _, _) = curl(&["-X", "DELETE", "-H", &bearer(&deleter), &format!("{base}/files/old.txt")]);
    assert_eq!(status, 204);
    // A key slot added while mounted is recorded through the daemon.
    let second = v.tmp.path().join("second.pass");
    std::fs::write(&second, "a second passphrase for the audit test\n").unwrap();
    v.run_ok(&["key", "add", v.path(), "--new-passphrase-file", second.to_str().unwrap()]);

    let records = audit_records(&v, &[]);
    let acts: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(acts, ["user.add", "token.create", "login.failed", "login", "delete", "key.add"], "{records:#?}");
    let failed = &records[2];
    assert_eq!((failed["actor"].as_str(), failed["address"].as_str()), (Some("alice"), Some("127.0.0.1")));
    assert!(!failed.to_string().contains("guess"), "no password in the trail");
    let token_id = deleter.trim_start_matches("nft_").split('_').next().unwrap();
    assert_eq!(records[4]["actor"], format!("token:{token_id}"));
    assert_eq!(records[4]["target"], "/old.txt");
    assert!(records[4]["time"].as_str().unwrap().ends_with('Z'));
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64);
    }
    assert!(audit_records(&v, &["--since", "2999-01-01"]).is_empty());
    assert_eq!(audit_records(&v, &["--since", "1h"]).len(), records.len());
    let verdict = v.run_ok(&["audit", "verify", v.path()]);
    assert!(verdict.starts_with("audit trail intact: 6 records, head "), "{verdict}");
    m.unmount();

    // Deleting a record, even with full access to the database, is named by `verify`.
    let store = nanofs::store::Store::open(&v.dir, nanofs::store::OpenMode::ReadWrite).unwrap();
    let mut batch = store.batch();
    batch.delete(nanofs::store::Cf::Meta, &[&b"audit/"[..], &3u64.to_be_bytes()].concat());
    store.commit(batch, nanofs::store::Durability::Synced).unwrap();
    drop(store);
    let out = v.run(&["audit", "verify", v.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("broken at record 3: records 3 to 3 are missing"), "{err}");
}

#[test]
fn password_guessing_is_slowed_with_429_and_retry_after() {
    let v = TestVolume::new();
    add_alice(&v);
    let (m, base) = mount_serving(&v, &[], &[]);
    let login = |user: &str, password: &str| {
        let body = serde_json::json!({ "user": user, "password": password }).to_string();
        curl(&["-X", "POST", "-H", "Content-Type: application/json", "-d", &body, &format!("{base}/api/login")])
    };
    for i in 0..5 {
        assert_eq!(login("alice", &format!("guess-{i}")).0, 401, "the first tries are only refused");
    }
    // Now every try waits, the right password too: it is not even checked.
    let (status, headers, body) = login("alice", "alice-password-1");
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let wait: u64 = headers.lines().find_map(|l| l.strip_prefix("retry-after: ")).unwrap().trim().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(login("nobody", "anything").0, 429, "the address waits too, whatever the name");
    std::thread::sleep(std::time::Duration::from_secs(wait));
    assert_eq!(login("alice", "alice-password-1").0, 200, "after the wait the right password works");
    m.unmount();
    let failed = audit_records(&v, &[]).iter().filter(|r| r["action"] == "login.failed").count();
    assert_eq!(failed, 5, "refused tries are recorded, turned-away ones are not");
}

#[test]
fn the_configuration_reloads_on_request_and_on_sighup_and_a_bad_file_changes_nothing() {
    let v = TestVolume::new();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read"]).trim().to_string();
    let (m, base) = mount_serving(&v, &[], &[]);
    let galleries = || curl(&["-H", &bearer(&token), &format!("{base}/api/galleries")]);
    assert_eq!(galleries().0, 200);
    let toml = v.dir.join("nanofs.toml");

    std::fs::write(&toml, "[media.collaboration]\nenabled = false\n\n[storage]\ncache_mb = 64\n").unwrap();
    let out = nanofs(&["config", "reload", v.path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("applied\tmedia.collaboration.enabled"), "{out}");
    assert!(out.contains("needs a restart\tstorage.cache_mb"), "{out}");
    let (status, _, body) = galleries();
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("[media.collaboration] enabled = false"));

    // A wrong file is refused whole, naming the key; what was in force stays.
    std::fs::write(&toml, "[media.collaboration]\nenabled = true\n\n[sidecar]\nmax_upload_gb = 5\n").unwrap();
    let out = nanofs(&["config", "reload", v.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nothing changed") && err.contains("line 5") && err.contains("max_upload_gb"), "{err}");
    assert!(!nanofs(&["config", "check", v.path()]).status.success());
    assert_eq!(galleries().0, 503, "still as before");

    // SIGHUP does the same as `config reload`, and the mount stays.
    std::fs::write(&toml, "[media.collaboration]\nenabled = true\n").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(m.pid() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while galleries().0 != 200 {
        assert!(std::time::Instant::now() < deadline, "SIGHUP did not reload:\n{}", m.log_text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(is_mounted(&m.path), "SIGHUP does not unmount");
    assert!(m.log_text().contains("configuration reloaded"));
    m.unmount();
}

/// The checks of the fuzzing pass: no 5xx, and every answer as documented (status,
/// content type, headers, body schema), and no operation that needs a token works without.
const FUZZ_CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                           response_schema_conformance,response_headers_conformance,ignored_auth";

#[test]
fn a_fuzzing_pass_from_the_openapi_description_finds_no_5xx_and_no_undocumented_answer() {
    let v = TestVolume::new();
    // Port 0: WebRTC on a port of its own, so WHIP and WHEP are fuzzed, not refused for a
    // port another test holds.
    std::fs::write(v.dir.join("nanofs.toml"), "[media.streaming]\nwebrtc_port = 0\n").unwrap();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write,delete,metrics"]).trim().to_string();
    let server = crate::http::Server::start(&v);
    let schemathesis = format!("{}/.cache/nanofs-venv/bin/schemathesis", std::env::var("HOME").unwrap());
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(schemathesis)
        .args(["run", &format!("{root}/docs/openapi.json"), "--url", &server.base])
        .args(["-H", &bearer(&token), "--checks", FUZZ_CHECKS, "--max-time", "45", "--no-color"])
        // Upload bytes and session descriptions are sent as generated (tests/fuzz/hooks.py).
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", format!("{root}/tests/fuzz"))
        .current_dir(v.tmp.path())
        .output()
        .expect("schemathesis runs (scripts/setup.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let generated = report.lines().find(|l| l.contains(" generated, ")).unwrap_or_default();
    assert!(generated.split_whitespace().next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0) >= 500, "{report}");
    let (status, _, _) = curl(&[&format!("{}/healthz", server.base)]);
    assert_eq!(status, 200, "the server outlives the pass");
}

#[test]
fn a_token_bound_to_networks_works_only_from_them_and_a_refusal_names_the_rule() {
    let v = TestVolume::new();
    let token = |cidr: &str| {
        v.run_ok(&["token", "create", v.path(), "--allow", "read", "--cidr", cidr, "--cidr", "10.0.0.0/8"])
            .trim()
            .to_string()
    };
    let near = token("127.0.0.2");
    let far = token("192.0.2.0/24");
    let bad = v.run(&["token", "create", v.path(), "--cidr", "127.0.0.300/8"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--cidr \"127.0.0.300/8\": not a network"));
    let (m, base) = mount_serving(&v, &[], &[]);
    std::fs::write(m.p("hello.txt"), b"hello").unwrap();
    let url = format!("{base}/files/hello.txt");

    let (status, _, body) = curl(&["-H", &bearer(&near), &url]);
    let why = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 403, "{why}");
    assert!(why.contains("bound to the networks 127.0.0.2/32, 10.0.0.0/8; this request comes from 127.0.0.1"), "{why}");
    let (status, _, body) = curl(&["--interface", "127.0.0.2", "-H", &bearer(&near), &url]);
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]), "from its network it works");
    assert_eq!(curl(&["--interface", "127.0.0.2", "-H", &bearer(&far), &url]).0, 403);
    let list = v.run_ok(&["token", "list", v.path()]);
    assert!(list.contains("from 127.0.0.2/32,10.0.0.0/8") && list.contains("from 192.0.2.0/24,10.0.0.0/8"), "{list}");
    m.unmount();
}

#[test]
fn metrics_can_be_served_on_an_address_of_their_own() {
    let v = TestVolume::new();
    let ops = format!("127.0.0.1:{}", free_port());
    std::fs::write(v.dir.join("nanofs.toml"), format!("[sidecar]\nmetrics_listen = \"{ops}\"\n")).unwrap();
    let scrape = v.run_ok(&["token", "create", v.path(), "--allow", "metrics,read"]).trim().to_string();
    let (m, _base) = mount_serving(&v, &[], &[]);
    let (status, _, body) = curl(&["-H", &bearer(&scrape), &format!("http://{ops}/metrics")]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("nanofs_stored_bytes "));
    assert_eq!(curl(&[&format!("http://{ops}/metrics")]).0, 401, "the same token rule");
    assert_eq!(curl(&[&format!("http://{ops}/readyz")]).0, 200);
    assert_eq!(curl(&["-H", &bearer(&scrape), &format!("http://{ops}/files/")]).0, 404, "nothing else there");
    m.unmount();
}

#[test]
fn a_legal_hold_refuses_deletes_through_the_mount_and_http_until_lifted() {
    let v = TestVolume::new();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write,delete"]).trim().to_string();
    let (m, base) = mount_serving(&v, &[], &[]);
    std::fs::create_dir_all(m.p("case/mail")).unwrap();
    std::fs::write(m.p("case/mail/a.eml"), b"evidence").unwrap();
    std::fs::write(m.p("case/b.txt"), b"more").unwrap();
    std::fs::write(m.p("free.txt"), b"not held").unwrap();
    let out = v.run_ok(&["hold", "set", v.path(), "/case", "--reason", "matter 12"]);
    assert!(out.contains("/case is under hold"), "{out}");

    let eperm = |r: std::io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM));
    eperm(std::fs::remove_file(m.p("case/mail/a.eml")));
    eperm(std::fs::rename(m.p("case/b.txt"), m.p("taken.txt")));
    eperm(std::fs::rename(m.p("free.txt"), m.p("case/b.txt")));
    eperm(std::fs::remove_dir_all(m.p("case")));
    let (status, _, body) = curl(&["-X", "DELETE", "-H", &bearer(&token), &format!("{base}/files/case/b.txt")]);
    assert_eq!(status, 423, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("legal hold"));
    // Adding still works, and what is outside is not held.
    std::fs::write(m.p("case/mail/c.eml"), b"new").unwrap();
    std::fs::remove_file(m.p("free.txt")).unwrap();
    assert_eq!(std::fs::read(m.p("case/mail/a.eml")).unwrap(), b"evidence");
    let list = v.run_ok(&["hold", "list", v.path()]);
    assert!(list.starts_with("/case\tsince ") && list.contains("matter 12"), "{list}");

    v.run_ok(&["hold", "release", v.path(), "/case"]);
    std::fs::remove_dir_all(m.p("case")).unwrap();
    assert!(v.run_ok(&["hold", "list", v.path()]).is_empty());
    m.unmount();
    let acts: Vec<String> = audit_records(&v, &[]).iter().map(|r| r["action"].as_str().unwrap().to_string()).collect();
    assert!(acts.ends_with(&["hold.set".to_string(), "hold.release".to_string()]), "{acts:?}");
}
