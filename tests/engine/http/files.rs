//! `/files`: whole and ranged downloads (one range, several, unsatisfiable), `HEAD`,
//! validators and conditional requests, directory listings with paging, deletes.

use super::Served;
use base64ct::Encoding;
use nanofs::Ino;

const FILM: &str = "/files/pub/sub/film.mp4";

/// A sidecar with 100,000 bytes at /pub/sub/film.mp4; returns it, a token that may do
/// everything, the bytes and the file's inode.
fn film() -> (Served, String, Vec<u8>, Ino) {
    let s = Served::new("");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let ino = s.put_file("/pub/sub/film.mp4", &data);
    let token = s.admin_token();
    (s, token, data, ino)
}

#[test]
fn whole_files_and_head_carry_a_version_tag_and_the_fingerprint_when_known_or_asked() {
    let (s, t, data, ino) = film();
    let r = s.get(FILM, Some(&t), &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == data);
    // The ETag comes from the metadata: no read of the file before the first byte.
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let fingerprint = blake2b_simd::Params::new().hash_length(32).hash(&data);
    assert_ne!(etag.trim_matches('"'), &fingerprint.to_hex()[..32], "not the content hash");
    assert_eq!(r.header("repr-digest"), None, "the fingerprint is not known yet, and not asked for");
    // RFC 9530: asked for, the fingerprint comes (and is kept); unknown algorithms are ignored.
    let digest = format!("blake2b-256=:{}:", base64ct::Base64::encode_string(fingerprint.as_bytes()));
    let asked = s.get(FILM, Some(&t), &[("want-repr-digest", "sha-512=3, blake2b-256=5")]);
    assert_eq!(asked.header("repr-digest"), Some(digest.as_str()));
    assert_eq!(asked.header("etag"), Some(etag.as_str()), "the same version");
    assert_eq!(
        s.get(FILM, Some(&t), &[("want-repr-digest", "sha-512=3")]).header("repr-digest"),
        Some(digest.as_str()),
        "known now"
    );
    assert_eq!(
        s.get(FILM, Some(&t), &[("want-repr-digest", "blake2b-256=0")]).header("repr-digest"),
        Some(digest.as_str())
    );
    assert_eq!(s.vol.fingerprint(ino).unwrap().to_vec(), fingerprint.as_bytes());
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let head = s.send("HEAD", FILM, Some(&t), &[], Vec::new());
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sends no body");
    for h in ["etag", "last-modified", "content-length", "content-type", "repr-digest"] {
        assert_eq!(head.header(h), asked.header(h), "{h}");
    }
    // A change of the content: a new tag, and the old fingerprint is never served again.
    s.vol.write(ino, 10, b"changed", false, false).unwrap();
    s.vol.fsync(ino, None).unwrap();
    let after = s.get(FILM, Some(&t), &[]);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(after.header("repr-digest"), None);
}

#[test]
fn single_multiple_and_unsatisfiable_ranges() {
    let (s, t, data, _) = film();
    let r = s.get(FILM, Some(&t), &[("range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert!(r.body == data[100..200]);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/100000"));
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    let tail = s.get(FILM, Some(&t), &[("range", "bytes=-10")]);
    assert_eq!((tail.status, tail.header("content-range")), (206, Some("bytes 99990-99999/100000")));
    assert!(tail.body == data[99_990..]);

    // Several ranges: multipart/byteranges, each part with its own Content-Range.
    let r = s.get(FILM, Some(&t), &[("range", "bytes=0-1,-2")]);
    assert_eq!(r.status, 206);
    let ctype = r.header("content-type").unwrap().to_string();
    let boundary = ctype.strip_prefix("multipart/byteranges; boundary=").unwrap_or_else(|| panic!("{ctype}"));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    let text = String::from_utf8_lossy(&r.body);
    let parts: Vec<&str> = text.split(&format!("--{boundary}")).collect();
    assert_eq!(parts.len(), 4, "two parts between the delimiters: {text:?}");
    assert!(parts[1].contains("Content-Range: bytes 0-1/100000"), "{text:?}");
    assert!(parts[2].contains("Content-Range: bytes 99998-99999/100000"), "{text:?}");
    assert!(parts[1].ends_with(&format!("\r\n\r\n{}\r\n", String::from_utf8_lossy(&data[..2]))), "{text:?}");
    assert_eq!(parts[3], "--\r\n");
    // Ranges that add up to more than the file (here all of it twice) give it once.
    let r = s.get(FILM, Some(&t), &[("range", "bytes=0-,0-")]);
    assert_eq!((r.status, r.header("content-range")), (200, None));
    assert!(r.body == data);

    let r = s.get(FILM, Some(&t), &[("range", "bytes=200000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */100000"));
    // A HEAD of a range: its headers, no body.
    let head = s.send("HEAD", FILM, Some(&t), &[("range", "bytes=10-19")], Vec::new());
    assert_eq!((head.status, head.header("content-range"), head.body.len()), (206, Some("bytes 10-19/100000"), 0));
}

#[test]
fn conditional_requests_use_the_etag_and_the_modification_time() {
    let (s, t, data, _) = film();
    let first = s.get(FILM, Some(&t), &[]);
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    assert_eq!(s.get(FILM, Some(&t), &[("if-none-match", &etag)]).status, 304);
    assert_eq!(s.get(FILM, Some(&t), &[("if-none-match", "\"other\"")]).status, 200);
    assert_eq!(s.get(FILM, Some(&t), &[("if-modified-since", &modified)]).status, 304);
    assert_eq!(s.get(FILM, Some(&t), &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")]).status, 200);
    // If-Range: a stale validator gives the whole file, the current one the range.
    let stale = s.get(FILM, Some(&t), &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]);
    assert_eq!((stale.status, stale.body.len()), (200, data.len()), "If-Range mismatch gives the whole file");
    let fresh = s.get(FILM, Some(&t), &[("range", "bytes=0-9"), ("if-range", &etag)]);
    assert_eq!((fresh.status, fresh.body.len()), (206, 10));
    // A change of content changes the validator.
    let ino = s.vol.resolve("/pub/sub/film.mp4").unwrap();
    let h = s.vol.open_file(ino, true).unwrap();
    s.vol.write(ino, 0, b"changed", false, false).unwrap();
    s.vol.release(ino, h).unwrap();
    let after = s.get(FILM, Some(&t), &[("if-none-match", &etag)]);
    assert_eq!(after.status, 200);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
}

#[test]
fn directories_list_in_pages_and_are_not_downloads() {
    let (s, t, _, _) = film();
    for name in ["a", "b", "c"] {
        s.put_file(&format!("/pub/{name}.txt"), name.as_bytes());
    }
    let r = s.get("/files/pub?list", Some(&t), &[]);
    assert_eq!(r.status, 200);
    let names: Vec<String> =
        r.json()["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 4);
    for n in ["a.txt", "b.txt", "c.txt", "sub"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let sub = r.json()["entries"].as_array().unwrap().iter().find(|e| e["name"] == "sub").unwrap().clone();
    assert_eq!(sub["kind"], "dir");
    // Pages of two: the second starts after the first's `next`, and says there is no more.
    let one = s.get("/files/pub?list&limit=2", Some(&t), &[]).json();
    assert_eq!(one["entries"].as_array().unwrap().len(), 2);
    let next = one["next"].as_u64().expect("a next cookie");
    let two = s.get(&format!("/files/pub?list&limit=2&after={next}"), Some(&t), &[]).json();
    let mut paged: Vec<String> = [&one, &two]
        .iter()
        .flat_map(|p| p["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()))
        .collect();
    assert!(two["next"].is_null());
    paged.sort();
    let mut all = names.clone();
    all.sort();
    assert_eq!(paged, all, "every entry once across pages");
    // A directory without ?list, and ?list of a file, are mistakes; the root lists.
    assert_eq!(s.get("/files/pub", Some(&t), &[]).status, 400);
    assert_eq!(s.get(&format!("{FILM}?list"), Some(&t), &[]).status, 400);
    assert_eq!(s.get("/files?list", Some(&t), &[]).json()["entries"][0]["name"], "pub");
    assert_eq!(s.get("/files/pub?list&limit=x", Some(&t), &[]).status, 400);
}

#[test]
fn deletes_remove_files_and_empty_directories_only() {
    let (s, t, _, _) = film();
    assert_eq!(s.send("DELETE", FILM, Some(&t), &[], Vec::new()).status, 204);
    assert_eq!(s.get(FILM, Some(&t), &[]).status, 404);
    assert!(s.vol.resolve("/pub/sub/film.mp4").is_err(), "gone from the volume");
    s.put_file("/pub/sub/again.txt", b"x");
    assert_eq!(s.send("DELETE", "/files/pub/sub", Some(&t), &[], Vec::new()).status, 409, "not empty");
    assert_eq!(s.send("DELETE", "/files/pub/sub/again.txt", Some(&t), &[], Vec::new()).status, 204);
    assert_eq!(s.send("DELETE", "/files/pub/sub", Some(&t), &[], Vec::new()).status, 204);
    assert_eq!(s.send("DELETE", "/files/", Some(&t), &[], Vec::new()).status, 405, "no DELETE route for the root");
    assert_eq!(s.send("DELETE", "/files/pub/sub", Some(&t), &[], Vec::new()).status, 404);
}

#[test]
fn health_readiness_and_the_api_description() {
    let s = Served::new("");
    assert_eq!(s.get("/healthz", None, &[]).status, 200);
    assert_eq!(s.get("/readyz", None, &[]).status, 200);
    let doc = s.get("/openapi.json", None, &[]).json();
    for route in [
        "/files/{path}",
        "/uploads",
        "/uploads/{id}",
        "/healthz",
        "/readyz",
        "/api/transfer",
        "/api/delta",
        "/api/delta/{id}/{index}",
        "/api/delta/{id}/commit",
        "/api/login",
        "/api/share/open",
        "/api/galleries/{id}/items",
        "/api/galleries/{id}/events",
    ] {
        assert!(doc["paths"][route].is_object(), "{route} is documented");
    }
    // What every operation of a kind can answer is documented for each: a client generator
    // must know every status.
    for (route, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let has = |status: &str| op["responses"][status].is_object();
            let what = format!("{} {route}", method.to_uppercase());
            if op["requestBody"]["content"]["application/json"].is_object() {
                assert!(has("400") && has("415") && has("422"), "{what}: a JSON body can be malformed");
            }
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|o| !o.is_empty())));
            if secured {
                assert!(has("401"), "{what}: needs a token, so answers 401");
            }
            for (media, body) in op["requestBody"]["content"].as_object().into_iter().flatten() {
                assert!(body["schema"].is_object(), "{what}: the {media} body has a schema");
            }
        }
    }
    // The framework's own refusals are JSON errors like every other.
    for (content_type, body, status) in
        [("application/json", "{not json", 400), ("text/plain", "{}", 415), ("application/json", "{\"user\":1}", 422)]
    {
        let r = s.send("POST", "/api/login", None, &[("content-type", content_type)], body.as_bytes().to_vec());
        assert_eq!(r.status, status, "{body}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(!r.json()["error"].as_str().unwrap().is_empty());
    }
    // A read-only volume is alive but not ready for writes.
    let s = s.reopen(true, |_| {});
    assert_eq!(s.get("/healthz", None, &[]).status, 200);
    assert_eq!(s.get("/readyz", None, &[]).status, 503);
}
