//! The one table from engine and gallery errors to HTTP statuses (`src/http/error.rs`),
//! driven by real requests: each error kind a request can cause, and the status and body
//! it gets. (Kinds no request can cause on a healthy disk, such as `NoSpace` → 507, are
//! checked on the table itself by its unit test.)

use super::galleries::World;
use super::{Reply, Served};
use nanofs::store::{Cf, Durability, OpenMode, Store};
use serde_json::json;

#[test]
fn each_error_a_request_can_cause_gets_its_status() {
    let w = World::new("[media.collaboration]\nmax_galleries_per_user = 1\n");
    let s = &w.s;
    let t = s.admin_token();
    s.put_file("/docs/a.txt", b"abc");
    s.put_file("/full/b.txt", b"b");
    let (alice, bob, dave, erin) = (w.login("alice"), w.login("bob"), w.login("dave"), w.login("erin"));
    let link = w.call(
        "POST",
        &w.g("/links"),
        Some(&alice),
        Some(json!({"role": "viewer", "expires_in_secs": 60, "password": "s3cret!"})),
    );
    assert_eq!(link.status, 201, "{}", link.error());
    let link = link.json();
    let meta =
        |path: &str| format!("path {}", <base64ct::Base64 as base64ct::Encoding>::encode_string(path.as_bytes()));
    let upload_to = |path: &str| -> Reply {
        let m = meta(path);
        s.send(
            "POST",
            "/uploads",
            Some(&t),
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "1"),
                ("upload-metadata", &m),
                ("content-type", "application/offset+octet-stream"),
            ],
            b"x".to_vec(),
        )
    };

    let (first, second) = (w.upload(&alice, "a.jpg", b"a").1.unwrap(), w.upload(&alice, "b.jpg", b"b").1.unwrap());
    let cases: Vec<(&str, Reply, u16)> = vec![
        (
            "gallery Exists: an item renamed onto another",
            w.call("PATCH", &w.g(&format!("/items/{first}")), Some(&alice), Some(json!({"name": "b.jpg"}))),
            409,
        ),
        ("engine NotFound", s.get("/files/docs/missing.txt", Some(&t), &[]), 404),
        ("engine NotDir: a file as a directory", s.get("/files/docs/a.txt/b", Some(&t), &[]), 409),
        ("engine NotEmpty", s.send("DELETE", "/files/full", Some(&t), &[], Vec::new()), 409),
        ("engine IsDir: an upload onto a directory", upload_to("/docs"), 409),
        ("unsatisfiable range", s.get("/files/docs/a.txt", Some(&t), &[("range", "bytes=3-")]), 416),
        ("malformed path", s.get("/files/docs/%2e%2e/x", Some(&t), &[]), 400),
        ("gallery NotFound: no such gallery", w.call("GET", "/api/galleries/nosuch/items", Some(&alice), None), 404),
        ("gallery NotFound: not a member", w.call("GET", &w.g("/items"), Some(&erin), None), 404),
        (
            "gallery Denied: a viewer edits the title",
            w.call("PATCH", &w.g(""), Some(&bob), Some(json!({"title": "x"}))),
            403,
        ),
        (
            "gallery Unauthenticated: wrong password",
            w.call("POST", "/api/login", None, Some(json!({"user": "bob", "password": "nope-nope"}))),
            401,
        ),
        ("gallery Unauthenticated: no credentials", w.call("GET", &w.g("/items"), None, None), 401),
        (
            "gallery PasswordRequired",
            w.call("POST", "/api/share/open", None, Some(json!({"token": link["token"]}))),
            401,
        ),
        (
            "gallery Rejected: a moderator makes an owner",
            w.call("PUT", &w.g("/members/erin"), Some(&dave), Some(json!({"role": "owner"}))),
            422,
        ),
        (
            "gallery Rejected: a gallery inside a gallery",
            w.call(
                "POST",
                "/api/galleries",
                Some(&t),
                Some(json!({"title": "Again", "path": "/trip", "owner": "bob"})),
            ),
            422,
        ),
        (
            "gallery Limit: over max_galleries_per_user",
            {
                assert_eq!(w.call("POST", "/api/galleries", Some(&erin), Some(json!({"title": "One"}))).status, 201);
                w.call("POST", "/api/galleries", Some(&erin), Some(json!({"title": "Two"})))
            },
            429,
        ),
    ];
    for (what, reply, want) in &cases {
        assert_eq!(reply.status, *want, "{what}: {}", String::from_utf8_lossy(&reply.body));
        if *want != 416 {
            assert!(!reply.error().is_empty(), "{what}: a JSON error for people");
        }
        assert_eq!(reply.header("www-authenticate").is_some(), *want == 401, "{what}");
    }
    let password = &cases.iter().find(|c| c.0 == "gallery PasswordRequired").unwrap().1;
    assert_eq!(password.json()["password_required"], true, "tells the web UI to ask");
    assert!(cases.iter().filter(|c| c.0 != "gallery PasswordRequired").all(|c| c
        .1
        .json()
        .get("password_required")
        .is_none()));
    // The refused requests changed nothing.
    assert!(s.vol.resolve("/full/b.txt").is_ok());
    assert_eq!(w.item_id(&alice, "b.jpg"), Some(second));
    assert_eq!(s.galleries.gallery(&w.gallery).unwrap().members.get("erin"), None);
}

#[test]
fn a_damaged_chunk_is_an_internal_error_that_never_serves_wrong_bytes() {
    let s = Served::new("");
    let t = s.admin_token();
    let data = crate::common::random_bytes(5, 300_000);
    s.put_file("/victim.bin", &data);
    s.put_file("/bystander.txt", b"unharmed");
    let s = s.reopen(false, |dir| {
        let store = Store::open(dir, OpenMode::ReadWrite).unwrap();
        let (key, mut value) = store
            .scan(Cf::Chunks, &[], &[])
            .map(|kv| kv.unwrap())
            .max_by_key(|(_, v)| v.len())
            .expect("chunks are stored");
        let mid = value.len() / 2;
        value[mid] ^= 0x01;
        let mut batch = store.batch();
        batch.put(Cf::Chunks, &key, &value);
        store.commit(batch, Durability::Synced).unwrap();
    });
    for range in [None, Some("bytes=0-99")] {
        let headers: Vec<(&str, &str)> = range.iter().map(|r| ("range", *r)).collect();
        let r = s.get("/files/victim.bin", Some(&t), &headers);
        assert_eq!(r.status, 500, "{range:?}");
        // The cause (which chunk, which inode) goes to the log, not to the client.
        assert_eq!(r.error(), "internal error");
        assert!(r.body.windows(64).all(|w| !data.windows(64).any(|d| d == w)), "no bytes of the file are served");
    }
    let ok = s.get("/files/bystander.txt", Some(&t), &[]);
    assert_eq!((ok.status, ok.body.as_slice()), (200, b"unharmed".as_slice()));
}

#[test]
fn a_read_only_volume_serves_reads_and_refuses_changes_with_403() {
    let s = Served::new("");
    let t = s.admin_token();
    s.put_file("/keep.txt", b"kept");
    let s = s.reopen(true, |_| {});
    assert_eq!(s.get("/files/keep.txt", Some(&t), &[]).body, b"kept");
    let del = s.send("DELETE", "/files/keep.txt", Some(&t), &[], Vec::new());
    assert_eq!(del.status, 403);
    assert!(del.error().contains("read-only"), "{}", del.error());
    let meta = format!("path {}", <base64ct::Base64 as base64ct::Encoding>::encode_string(b"/new.txt"));
    let up = s.send(
        "POST",
        "/uploads",
        Some(&t),
        &[("tus-resumable", "1.0.0"), ("upload-length", "1"), ("upload-metadata", &meta)],
        Vec::new(),
    );
    assert_eq!(up.status, 403);
    assert!(s.vol.resolve("/keep.txt").is_ok() && s.vol.resolve("/new.txt").is_err());
}
