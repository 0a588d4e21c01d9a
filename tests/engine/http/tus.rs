//! The tus 1.0.0 endpoint: discovery, creation (with and without a first piece), offsets,
//! checksums, size limits, concatenation, termination and who may resume an upload. Real
//! tus clients, resumption across sidecar restarts and concurrent PATCHes over sockets
//! are in `tests/it/http.rs`.

use super::{Reply, Served};
use base64ct::{Base64, Encoding};
use nanofs::volume::Permission;

const TUS: (&str, &str) = ("tus-resumable", "1.0.0");
const OCTETS: (&str, &str) = ("content-type", "application/offset+octet-stream");

fn meta_path(path: &str) -> String {
    format!("path {}", Base64::encode_string(path.as_bytes()))
}

/// `POST /uploads` for `len` bytes at `path` (or a partial upload); returns the upload's
/// URL.
fn create(s: &Served, token: &str, len: usize, path: Option<&str>) -> String {
    create_with(s, token, len, path, &[])
}

/// `create` with `extra` request headers.
fn create_with(s: &Served, token: &str, len: usize, path: Option<&str>, extra: &[(&str, &str)]) -> String {
    let len = len.to_string();
    let meta = path.map(meta_path);
    let mut headers = vec![TUS, ("upload-length", len.as_str())];
    headers.extend_from_slice(extra);
    match &meta {
        Some(m) => headers.push(("upload-metadata", m.as_str())),
        None => headers.push(("upload-concat", "partial")),
    }
    let r = s.send("POST", "/uploads", Some(token), &headers, Vec::new());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("upload-expires").is_some());
    r.header("location").unwrap().to_string()
}

fn patch(s: &Served, token: &str, url: &str, offset: u64, data: &[u8], extra: &[(&str, &str)]) -> Reply {
    let offset = offset.to_string();
    let mut headers = vec![TUS, OCTETS, ("upload-offset", offset.as_str())];
    headers.extend_from_slice(extra);
    s.send("PATCH", url, Some(token), &headers, data.to_vec())
}

fn offset_of(s: &Served, token: &str, url: &str) -> Option<u64> {
    let r = s.send("HEAD", url, Some(token), &[TUS], Vec::new());
    (r.status == 200).then(|| r.header("upload-offset").unwrap().parse().unwrap())
}

#[test]
fn discovery_and_requests_tus_refuses() {
    let s = Served::with("", |c| c.max_upload = Some(1000));
    let t = s.admin_token();
    let o = s.send("OPTIONS", "/uploads", None, &[], Vec::new());
    assert_eq!(o.status, 204);
    assert_eq!(o.header("tus-version"), Some("1.0.0"));
    assert_eq!(o.header("tus-max-size"), Some("1000"));
    let ext = o.header("tus-extension").unwrap();
    for e in ["creation", "termination", "concatenation", "checksum"] {
        assert!(ext.contains(e), "{ext}");
    }
    let meta = meta_path("/a.bin");
    // Without Tus-Resumable: 412, naming the version spoken.
    let r = s.send("POST", "/uploads", Some(&t), &[("upload-length", "1"), ("upload-metadata", &meta)], Vec::new());
    assert_eq!((r.status, r.header("tus-version")), (412, Some("1.0.0")));
    // Malformed creation headers: 400; over Tus-Max-Size: 413.
    for (headers, why) in [
        (vec![TUS, ("upload-metadata", meta.as_str())], "no length"),
        (vec![TUS, ("upload-length", "ten"), ("upload-metadata", meta.as_str())], "a length that is no number"),
        (vec![TUS, ("upload-length", "1"), ("upload-metadata", "path !!!")], "metadata that is no base64"),
        (vec![TUS, ("upload-length", "1"), ("upload-metadata", "colour Ymx1ZQ==")], "neither path nor filename"),
        (vec![TUS, ("upload-length", "1"), ("upload-concat", "final;")], "a final upload of nothing"),
    ] {
        let r = s.send("POST", "/uploads", Some(&t), &headers, Vec::new());
        assert_eq!(r.status, 400, "{why}: {}", String::from_utf8_lossy(&r.body));
    }
    let r =
        s.send("POST", "/uploads", Some(&t), &[TUS, ("upload-length", "1001"), ("upload-metadata", &meta)], Vec::new());
    assert_eq!(r.status, 413);
    assert!(s.vol.upload_ids().unwrap().is_empty(), "no refused creation left an upload");
}

#[test]
fn patches_at_the_wrong_offset_or_with_a_wrong_checksum_keep_nothing() {
    let s = Served::new("");
    let t = s.admin_token();
    // Asked for at creation: the upload is hashed as it arrives.
    let url = create_with(&s, &t, 11, Some("/docs/hello.txt"), &[("want-repr-digest", "blake2b-256=1")]);
    let head = s.send("HEAD", &url, Some(&t), &[TUS], Vec::new());
    assert_eq!((head.status, head.header("upload-length"), head.header("upload-offset")), (200, Some("11"), Some("0")));
    assert_eq!(head.header("cache-control"), Some("no-store"));

    assert_eq!(patch(&s, &t, &url, 3, b"xyz", &[]).status, 409, "offset mismatch");
    let wrong_type = s.send("PATCH", &url, Some(&t), &[TUS, ("upload-offset", "0")], b"hello".to_vec());
    assert_eq!(wrong_type.status, 415);
    let zeros = format!("sha1 {}", Base64::encode_string(&[0u8; 20]));
    assert_eq!(patch(&s, &t, &url, 0, b"hello", &[("upload-checksum", &zeros)]).status, 460);
    assert_eq!(patch(&s, &t, &url, 0, b"hello", &[("upload-checksum", "md5 AAAA")]).status, 400, "unknown algorithm");
    assert_eq!(offset_of(&s, &t, &url), Some(0), "refused bodies are not kept");

    let sum = format!("sha1 {}", Base64::encode_string(&<sha1::Sha1 as sha1::Digest>::digest(b"hello")));
    let r = patch(&s, &t, &url, 0, b"hello", &[("upload-checksum", &sum)]);
    assert_eq!((r.status, r.header("upload-offset")), (204, Some("5")));
    assert_eq!(patch(&s, &t, &url, 5, b" world, and more", &[]).status, 413, "more than Upload-Length");
    assert_eq!(offset_of(&s, &t, &url), Some(5));
    // CRC-32C, sent big-endian as S3 does: the standard check value pins the algorithm.
    let crc = |b: &[u8]| {
        let sum = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b) as u32;
        format!("crc32c {}", Base64::encode_string(&sum.to_be_bytes()))
    };
    assert_eq!(crc(b"123456789"), format!("crc32c {}", Base64::encode_string(&0xE306_9283u32.to_be_bytes())));
    assert_eq!(patch(&s, &t, &url, 5, b" wor", &[("upload-checksum", &crc(b" wox"))]).status, 460);
    assert_eq!(offset_of(&s, &t, &url), Some(5));
    assert_eq!(patch(&s, &t, &url, 5, b" wor", &[("upload-checksum", &crc(b" wor"))]).status, 204);
    let sum = format!("sha256 {}", Base64::encode_string(&<sha2::Sha256 as sha2::Digest>::digest(b"ld")));
    assert_eq!(patch(&s, &t, &url, 9, b"ld", &[("upload-checksum", &sum)]).status, 204);
    // The last byte finishes the upload: the file is in place, the upload is gone.
    let ino = s.vol.resolve("/docs/hello.txt").unwrap();
    assert_eq!(crate::common::read_all(&s.vol, ino), b"hello world");
    // Its fingerprint was hashed as the kept bytes arrived (the refused ones undone), so
    // it is known without a read.
    let expected = blake2b_simd::Params::new().hash_length(32).hash(b"hello world");
    let inode = s.vol.getattr(ino).unwrap().inode;
    assert_eq!(s.vol.cached_fingerprint(ino, &inode).unwrap().as_ref().map(|h| &h[..]), Some(expected.as_bytes()));
    assert_eq!(offset_of(&s, &t, &url), None);
    assert_eq!(patch(&s, &t, &url, 11, b"!", &[]).status, 404);

    // Not asked for: not hashed, so not known until a request wants it.
    let url = create(&s, &t, 5, Some("/docs/plain.txt"));
    assert_eq!(patch(&s, &t, &url, 0, b"plain", &[]).status, 204);
    let ino = s.vol.resolve("/docs/plain.txt").unwrap();
    let inode = s.vol.getattr(ino).unwrap().inode;
    assert_eq!(s.vol.cached_fingerprint(ino, &inode).unwrap(), None);
}

#[test]
fn creation_with_the_whole_body_and_concatenation_of_partial_uploads() {
    let s = Served::new("");
    let t = s.admin_token();
    let meta = meta_path("/one/shot.bin");
    let r = s.send(
        "POST",
        "/uploads",
        Some(&t),
        &[TUS, OCTETS, ("upload-length", "4"), ("upload-metadata", &meta)],
        b"shot".to_vec(),
    );
    assert_eq!((r.status, r.header("upload-offset")), (201, Some("4")));
    assert_eq!(crate::common::read_all(&s.vol, s.vol.resolve("/one/shot.bin").unwrap()), b"shot");

    let a = create(&s, &t, 5, None);
    let b = create(&s, &t, 6, None);
    assert_eq!(patch(&s, &t, &a, 0, b"hello", &[]).status, 204);
    // A final upload of an incomplete part is refused and changes nothing.
    let early = format!("final;{a} {b}");
    let r = s.send(
        "POST",
        "/uploads",
        Some(&t),
        &[TUS, ("upload-concat", &early), ("upload-metadata", &meta_path("/parts/whole.bin"))],
        Vec::new(),
    );
    assert_eq!(r.status, 400);
    assert!(s.vol.resolve("/parts/whole.bin").is_err());
    assert_eq!(patch(&s, &t, &b, 0, b" world", &[]).status, 204);
    // Parts of another token are not this token's to join.
    let other = s.token("/", &[Permission::Read, Permission::Write]);
    let r = s.send(
        "POST",
        "/uploads",
        Some(&other),
        &[TUS, ("upload-concat", &early), ("upload-metadata", &meta_path("/parts/whole.bin"))],
        Vec::new(),
    );
    assert_eq!(r.status, 400);
    let r = s.send(
        "POST",
        "/uploads",
        Some(&t),
        &[TUS, ("upload-concat", &early), ("upload-metadata", &meta_path("/parts/whole.bin"))],
        Vec::new(),
    );
    assert_eq!((r.status, r.header("upload-offset")), (201, Some("11")));
    assert_eq!(crate::common::read_all(&s.vol, s.vol.resolve("/parts/whole.bin").unwrap()), b"hello world");
    assert_eq!((offset_of(&s, &t, &a), offset_of(&s, &t, &b)), (None, None), "parts are gone");
    assert!(s.vol.upload_ids().unwrap().is_empty());
}

#[test]
fn a_final_upload_names_each_part_once_and_is_bounded_like_any_upload() {
    let s = Served::with("", |c| c.max_upload = Some(10));
    let t = s.admin_token();
    let a = create(&s, &t, 6, None);
    let b = create(&s, &t, 6, None);
    assert_eq!(patch(&s, &t, &a, 0, b"hello ", &[]).status, 204);
    assert_eq!(patch(&s, &t, &b, 0, b"world!", &[]).status, 204);
    for (concat, status) in [(format!("final;{a} {b}"), 413), (format!("final;{a} {a}"), 400)] {
        let r = s.send(
            "POST",
            "/uploads",
            Some(&t),
            &[TUS, ("upload-concat", &concat), ("upload-metadata", &meta_path("/parts/whole.bin"))],
            Vec::new(),
        );
        assert_eq!(r.status, status, "{concat}: {}", String::from_utf8_lossy(&r.body));
    }
    assert!(s.vol.resolve("/parts/whole.bin").is_err(), "nothing was made");
    assert_eq!((offset_of(&s, &t, &a), offset_of(&s, &t, &b)), (Some(6), Some(6)), "the parts are kept");
}

#[test]
fn termination_and_uploads_of_another_token() {
    let s = Served::new("");
    let t = s.admin_token();
    let url = create(&s, &t, 100, Some("/x.bin"));
    assert_eq!(patch(&s, &t, &url, 0, b"some", &[]).status, 204);
    // Another token may neither see, resume nor end it.
    let other = s.token("/elsewhere", &[Permission::Read, Permission::Write, Permission::Delete]);
    assert_eq!(s.send("HEAD", &url, Some(&other), &[TUS], Vec::new()).status, 403);
    assert_eq!(patch(&s, &other, &url, 4, b"more", &[]).status, 403);
    assert_eq!(s.send("DELETE", &url, Some(&other), &[TUS], Vec::new()).status, 403);
    assert_eq!(offset_of(&s, &t, &url), Some(4));
    assert_eq!(s.send("DELETE", &url, Some(&t), &[TUS], Vec::new()).status, 204);
    assert_eq!(offset_of(&s, &t, &url), None);
    assert_eq!(s.send("DELETE", &url, Some(&t), &[TUS], Vec::new()).status, 404);
    assert!(s.vol.resolve("/x.bin").is_err(), "a terminated upload leaves no file");
    assert!(s.vol.upload_ids().unwrap().is_empty());
}
