//! Bearer tokens over HTTP: missing, malformed, unknown, expired (with the reason),
//! revoked, scoped to a path, limited to some operations; paths that would leave a scope.

use super::Served;
use nanofs::volume::Permission;

/// A sidecar with /pub/film.mp4 and /private/secret.txt.
fn served() -> Served {
    let s = Served::new("");
    s.put_file("/pub/film.mp4", b"film");
    s.put_file("/private/secret.txt", b"secret");
    s
}

#[test]
fn requests_without_a_valid_token_are_401_with_the_reason() {
    let s = served();
    let url = "/files/pub/film.mp4";
    let r = s.get(url, None, &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(r.error().contains("missing bearer token"), "{}", r.error());
    let basic = s.get(url, None, &[("authorization", "Basic YTpi")]);
    assert_eq!(basic.status, 401);
    for bad in ["nft_zz", "nft_0123456789abcdef_00", "not-a-token"] {
        let r = s.get(url, Some(bad), &[]);
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.error().contains("invalid"), "{bad}: {}", r.error());
    }
    // A real token with the secret changed is as unknown as a made-up one.
    let good = s.admin_token();
    let forged = format!("{}{}", &good[..good.len() - 2], if good.ends_with("00") { "11" } else { "00" });
    assert_eq!(s.get(url, Some(&forged), &[]).status, 401);
    assert_eq!(s.get(url, Some(&good), &[]).status, 200);

    // Expired: refused, and told why.
    let (_, expired) = s.vol.token_create("short", "/", &[Permission::Read], 0, None, &Default::default()).unwrap();
    let r = s.get(url, Some(&expired), &[]);
    assert_eq!(r.status, 401);
    assert!(r.error().contains("expired"), "{}", r.error());
    // Revoked: refused from the next request on.
    let (info, revoked) =
        s.vol.token_create("gone", "/", &[Permission::Read], 3600, None, &Default::default()).unwrap();
    assert_eq!(s.get(url, Some(&revoked), &[]).status, 200);
    s.vol.token_revoke(&info.id).unwrap();
    assert_eq!(s.get(url, Some(&revoked), &[]).status, 401);
}

#[test]
fn a_token_reaches_only_its_path_and_its_operations() {
    let s = served();
    let scoped = s.token("/pub", &[Permission::Read]);
    assert_eq!(s.get("/files/pub/film.mp4", Some(&scoped), &[]).status, 200);
    let outside = s.get("/files/private/secret.txt", Some(&scoped), &[]);
    assert_eq!(outside.status, 403);
    assert!(outside.error().contains("outside the token's scope"), "{}", outside.error());
    assert_eq!(s.get("/files/publication", Some(&scoped), &[]).status, 403, "a prefix of a name is not a scope");
    let del = s.send("DELETE", "/files/pub/film.mp4", Some(&scoped), &[], Vec::new());
    assert_eq!(del.status, 403);
    assert!(del.error().contains("does not allow delete"), "{}", del.error());
    let upload = s.send(
        "POST",
        "/uploads",
        Some(&scoped),
        &[("tus-resumable", "1.0.0"), ("upload-length", "1"), ("upload-metadata", "filename eA==")],
        Vec::new(),
    );
    assert_eq!(upload.status, 403);
    // A token that may only write cannot read.
    let writer = s.token("/", &[Permission::Write]);
    assert_eq!(s.get("/files/pub/film.mp4", Some(&writer), &[]).status, 403);
    assert!(s.vol.resolve("/pub/film.mp4").is_ok(), "nothing refused was done");

    // Paths that would leave the scope, or hide what they name, are malformed requests.
    for attack in [
        "/files/pub/../private/secret.txt",
        "/files/pub/%2e%2e/private/secret.txt",
        "/files/pub%2F..%2Fprivate/secret.txt",
        "/files/pub/a%00b",
        "/files/pub/./film.mp4",
        "/files/pub/%zz",
        "/files/.uploads/x",
    ] {
        let r = s.get(attack, Some(&scoped), &[]);
        assert_eq!(r.status, 400, "{attack}");
    }
    let long = format!("/files/pub/{}", "x".repeat(256));
    assert_eq!(s.get(&long, Some(&scoped), &[]).status, 400, "a name over 255 bytes");
}

#[test]
fn the_transfer_settings_give_the_chunker_key_only_to_writers() {
    let s = served();
    let reader = s.get("/api/transfer", Some(&s.token("/", &[Permission::Read])), &[]).json();
    let writer = s.get("/api/transfer", Some(&s.token("/", &[Permission::Read, Permission::Write])), &[]).json();
    assert!(reader.get("chunker_key").is_none(), "{reader}");
    assert_eq!(writer["chunker_key"].as_str(), s.vol.chunker_key_hex().as_deref());
    let d = &s.vol.config().media.deduplication;
    assert_eq!(writer["cdc_kib"], serde_json::json!([d.min_chunk_size_kb, d.avg_chunk_size_kb, d.max_chunk_size_kb]));
    assert_eq!(s.get("/api/transfer", None, &[]).status, 401);
}
