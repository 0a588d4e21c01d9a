//! Garbage collection and `check` through the daemon of a live mount (the `gc` and `check`
//! requests of the control socket). Deduplication and the space counters themselves are
//! tested on the engine: `tests/engine/dedup.rs`.

use crate::common::*;

#[test]
fn gc_and_check_run_through_the_daemon_of_a_live_mount() {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("keep"), 1, 20 << 20);
    write_random_file(&m.p("drop"), 2, 60 << 20);
    std::fs::remove_file(m.p("drop")).unwrap();
    let out = nanofs(&["gc", v.path(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = v.stats();
    assert_eq!(after["reclaimable_bytes"].as_u64(), Some(0), "{after}");
    assert!(after["disk_bytes"].as_u64().unwrap() < (20 << 20) + (2 << 20), "{after}: {report}");
    assert_eq!(after["logical_bytes"].as_u64(), Some(20 << 20));
    // The survivor reads back through the mount that collected under it.
    let expected = v.tmp.path().join("keep-ref");
    write_random_file(&expected, 1, 20 << 20);
    assert_eq!(sha256(&m.p("keep")), sha256(&expected));
    // Checked through the daemon, while mounted.
    let out = nanofs(&["check", v.path(), "--read-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("clean"));
    m.unmount();
}
