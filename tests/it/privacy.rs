//! A person's rights over their data: `nanofs user export` gives them everything the
//! volume holds about them; `nanofs user erase` removes it, keeps threads whole with
//! tombstones, shreds the audit fields that named them and deletes their files' copies
//! in snapshots, and leaves a receipt in the audit trail that names no one.

use crate::common::*;
use crate::galleries::{World, Ws};
use serde_json::{json, Value};

fn audit_text(v: &TestVolume) -> String {
    v.run_ok(&["audit", "export", v.path()])
}

#[test]
fn a_user_is_exported_then_erased_leaving_threads_and_a_receipt_but_nothing_of_them() {
    let w = World::new();
    let (carol, dave) = (w.login("carol"), w.login("dave"));
    let photo: Vec<u8> = (0..400_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (_, c1) = w.upload(&carol, "c1.jpg", &photo);
    let c1 = c1.expect("carol's upload");
    w.upload(&carol, "c2.jpg", b"carol's second photo");
    let (_, d1) = w.upload(&dave, "d1.jpg", b"dave's photo, which stays");
    let d1 = d1.unwrap();
    let item = |id: &str| w.g(&format!("/items/{id}"));
    let said =
        w.call("POST", &format!("{}/comments", item(&d1)), Some(&carol), Some(json!({"text": "carol was here"})));
    let said_id = said.json()["id"].as_str().unwrap().to_string();
    let reply = json!({"text": "dave answers", "parent": said_id});
    assert_eq!(w.call("POST", &format!("{}/comments", item(&d1)), Some(&dave), Some(reply)).status, 201);
    let alone = json!({"text": "carol alone"});
    assert_eq!(w.call("POST", &format!("{}/comments", item(&d1)), Some(&carol), Some(alone)).status, 201);
    let note = json!({"text": "carol's note", "region": {"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}});
    assert_eq!(w.call("POST", &format!("{}/annotations", item(&d1)), Some(&carol), Some(note)).status, 201);
    w.call("POST", &format!("{}/reactions", item(&d1)), Some(&carol), Some(json!({"emoji": "🔥"})));
    // A snapshot holds copies of every photo.
    w.v.run_ok(&["snapshot", "create", w.v.path(), "before"]);

    // Export: everything, as JSON and files.
    let out = w.v.tmp.path().join("carol-export");
    let summary: Value =
        serde_json::from_str(&w.v.run_ok(&["user", "export", w.v.path(), "carol", "-o", out.to_str().unwrap()]))
            .unwrap();
    assert_eq!((summary["uploads"].as_u64(), summary["comments"].as_u64()), (Some(2), Some(2)), "{summary}");
    assert_eq!(std::fs::read(out.join(format!("files/{}/c1.jpg", w.gallery))).unwrap(), photo);
    let read = |f: &str| -> Value { serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap() };
    assert_eq!(read("account.json")["name"], "carol");
    assert!(!read("account.json").to_string().contains("argon2id$"), "no password hash");
    assert_eq!(read("memberships.json")[0]["role"], "contributor");
    assert_eq!(read("annotations.json")[0]["text"], "carol's note");
    assert_eq!(read("reactions.json")[0]["emoji"], "🔥");
    assert_eq!(read("reactions.json")[0]["item"], d1.as_str());
    let audit = read("audit.json");
    let logins = audit.as_array().unwrap().iter().filter(|r| r["action"] == "login" && r["actor"] == "carol").count();
    assert_eq!(logins, 1, "{audit}");
    assert!(read("events.json").as_array().unwrap().iter().any(|e| e["event"]["type"] == "comment.added"));

    // Erasing someone who uploaded files needs a decision about them.
    let refused = w.v.run(&["user", "erase", w.v.path(), "carol"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--delete-owned or --transfer-to"), "{refused:?}");
    let receipt: Value =
        serde_json::from_str(&w.v.run_ok(&["user", "erase", w.v.path(), "carol", "--delete-owned"])).unwrap();
    assert_eq!(receipt["files_deleted"], 2, "{receipt}");
    assert_eq!(receipt["snapshot_copies_deleted"], 2, "{receipt}");
    assert_eq!(receipt["comments_anonymized"], 2);
    assert_eq!((receipt["annotations_deleted"].as_u64(), receipt["reactions_deleted"].as_u64()), (Some(1), Some(1)));
    assert_eq!(receipt["person_key_destroyed"], true);
    assert!(!receipt.to_string().contains("carol"), "{receipt}");

    // The audit trail still verifies, names her nowhere, and ends with the receipt (a
    // later attempt to log in as her is new data, under a new key).
    let audit = audit_text(&w.v);
    assert!(!audit.contains("carol"), "{audit}");
    assert!(audit.contains("\"actor\":\"(erased)\""), "her login records are sealed for good");
    let last: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "user.erase");
    assert_eq!(last["target"], format!("receipt {}", receipt["receipt"].as_str().unwrap()));
    w.v.run_ok(&["audit", "verify", w.v.path()]);

    // Gone: the account, the session, the files, their copies, the discussion but the
    // thread's shape.
    assert_eq!(w.call("GET", &w.g("/items"), Some(&carol), None).status, 401);
    let login = w.call("POST", "/api/login", None, Some(json!({"user": "carol", "password": "carol-password"})));
    assert_eq!(login.status, 401);
    assert_eq!(w.call("GET", &item(&c1), Some(&dave), None).status, 404);
    assert!(!w.m.p("trip/c1.jpg").exists());
    assert!(!w.m.p(".snapshots/before/trip/c1.jpg").exists(), "the copy in the snapshot is erased");
    assert!(w.m.p(".snapshots/before/trip/d1.jpg").exists(), "others' copies stay");
    let talk = w.call("GET", &item(&d1), Some(&dave), None).json()["discussion"].clone();
    let comments = talk["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2, "the tombstone and dave's reply: {talk}");
    let tomb = comments.iter().find(|c| c["id"] == said_id.as_str()).unwrap();
    assert_eq!(
        (tomb["deleted"].as_bool(), tomb["author"].is_null(), tomb["text"].as_str()),
        (Some(true), true, Some(""))
    );
    assert!(talk["annotations"].as_array().unwrap().is_empty() && talk["reactions"].as_array().unwrap().is_empty());

    // The gallery's events no longer name or quote her.
    w.call("POST", &format!("{}/comments", item(&d1)), Some(&dave), Some(json!({"text": "marker"})));
    let mut ws = Ws::connect(&w.base, &w.g("/events?since=0"), &dave).unwrap();
    let mut seen = Vec::new();
    loop {
        let m = ws.receive().unwrap();
        let done = m["type"] == "comment.added" && m.to_string().contains("marker");
        seen.push(m.to_string());
        if done {
            break;
        }
    }
    assert!(seen.iter().all(|e| !e.contains("carol")), "{seen:?}");

    let World { v, m, .. } = w;
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn erasing_with_transfer_gives_galleries_and_uploads_to_the_heir() {
    let w = World::new();
    let alice = w.login("alice");
    let (_, a1) = w.upload(&alice, "a1.jpg", b"alice's photo");
    let a1 = a1.unwrap();
    let receipt: Value =
        serde_json::from_str(&w.v.run_ok(&["user", "erase", w.v.path(), "alice", "--transfer-to", "dave"])).unwrap();
    assert_eq!((receipt["galleries_transferred"].as_u64(), receipt["files_transferred"].as_u64()), (Some(1), Some(1)));
    let dave = w.login("dave");
    let shown = w.call("GET", &w.g(""), Some(&dave), None).json();
    assert_eq!(shown["owner"], "dave", "{shown}");
    assert!(shown["members"].get("alice").is_none(), "{shown}");
    let it = w.call("GET", &w.g(&format!("/items/{a1}")), Some(&dave), None).json();
    assert_eq!(it["author"], "dave", "{it}");
    assert_eq!(std::fs::read(w.m.p("trip/a1.jpg")).unwrap(), b"alice's photo");
}
