//! Shared galleries over the real sidecar (loopback) of a real mount: share links (expiry,
//! revocation, passwords, drop boxes), live events over WebSocket and SSE with replay
//! after reconnect, events for changes made through the mount, media facts and
//! thumbnails, the per-user gallery limit, bundles. Every cell of the permission table is
//! checked in process: `tests/engine/http/galleries.rs`.

use crate::common::*;
use crate::http::free_port;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

pub const USERS: [(&str, &str); 5] = [
    ("alice", "alice-password"),
    ("bob", "bob-password1"),
    ("carol", "carol-password"),
    ("dave", "dave-password1"),
    ("erin", "erin-password1"),
];

/// A mounted volume with its sidecar, five users and one gallery owned by alice, in
/// which bob is viewer, carol contributor and dave moderator; erin is no member.
pub struct World {
    pub v: TestVolume,
    pub m: Mounted,
    pub base: String,
    pub gallery: String,
    pub http: ureq::Agent,
}

/// An HTTP reply: status and JSON (or raw) body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// A world whose `nanofs.toml` is `toml` (every key left out keeps its default).
    pub fn with_config(toml: &str) -> Self {
        let v = TestVolume::new();
        if !toml.is_empty() {
            std::fs::write(v.dir.join("nanofs.toml"), toml).unwrap();
        }
        for (name, pass) in USERS {
            let f = v.tmp.path().join(format!("{name}.pw"));
            std::fs::write(&f, format!("{pass}\n")).unwrap();
            v.run_ok(&["user", "add", v.path(), name, "--password-file", f.to_str().unwrap()]);
        }
        let addr = format!("127.0.0.1:{}", free_port());
        let m = v.mount_with(&["--serve", &addr]);
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::create_dir(m.p("trip")).unwrap();
        let out = v.run_ok(&["gallery", "create", v.path(), "/trip", "--title", "Trip", "--owner", "alice"]);
        let gallery = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
        for (user, role) in [("bob", "viewer"), ("carol", "contributor"), ("dave", "moderator")] {
            v.run_ok(&["gallery", "member", v.path(), &gallery, user, "--role", role]);
        }
        let http = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { v, m, base: format!("http://{addr}"), gallery, http }
    }

    /// `METHOD path` with an optional bearer token and JSON body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let url = format!("{}{path}", self.base);
        let req = ureq::http::Request::builder().method(method).uri(&url);
        let req = match token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        };
        let resp = match body {
            Some(b) => {
                self.http.run(req.header("Content-Type", "application/json").body(b.to_string().into_bytes()).unwrap())
            }
            None => self.http.run(req.body(Vec::new()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        resp.into_body().into_reader().read_to_end(&mut body).unwrap();
        Reply { status, body }
    }

    pub fn login(&self, user: &str) -> String {
        let pass = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
        let r = self.call("POST", "/api/login", None, Some(json!({ "user": user, "password": pass })));
        assert_eq!(r.status, 200, "login {user}: {}", String::from_utf8_lossy(&r.body));
        r.json()["token"].as_str().unwrap().to_string()
    }

    pub fn g(&self, rest: &str) -> String {
        format!("/api/galleries/{}{rest}", self.gallery)
    }

    /// Uploads `data` as `name` into the gallery with tus (creation with the whole body);
    /// returns the status and the item id once it appears.
    pub fn upload(&self, token: &str, name: &str, data: &[u8]) -> (u16, Option<String>) {
        let status = self.upload_into(token, None, name, data);
        if status != 201 {
            return (status, None);
        }
        (status, self.item_id(token, name))
    }

    /// Uploads into a folder of the gallery (`None`: its own); returns the status.
    pub fn upload_into(&self, token: &str, folder: Option<&str>, name: &str, data: &[u8]) -> u16 {
        use base64ct::{Base64, Encoding};
        let mut meta = format!(
            "gallery {},filename {}",
            Base64::encode_string(self.gallery.as_bytes()),
            Base64::encode_string(name.as_bytes())
        );
        if let Some(f) = folder {
            meta.push_str(&format!(",folder {}", Base64::encode_string(f.as_bytes())));
        }
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/uploads", self.base))
            .header("Authorization", format!("Bearer {token}"))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", data.len().to_string())
            .header("Upload-Metadata", meta)
            .header("Content-Type", "application/offset+octet-stream")
            .body(data.to_vec())
            .unwrap();
        self.http.run(req).unwrap().status().as_u16()
    }

    /// The id of the item named `name` in the gallery's top folder.
    pub fn item_id(&self, token: &str, name: &str) -> Option<String> {
        let list = self.call("GET", &self.g("/items?limit=1000"), Some(token), None).json();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["id"].as_str().unwrap().to_string())
    }
}

/// A WebSocket client of the events endpoint.
pub struct Ws {
    socket: tungstenite::WebSocket<std::net::TcpStream>,
}

impl Ws {
    pub fn connect(base: &str, path: &str, token: &str) -> Result<Self, String> {
        use tungstenite::client::IntoClientRequest;
        let url = format!("{}{path}", base.replace("http://", "ws://"));
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let host = base.trim_start_matches("http://");
        let stream = std::net::TcpStream::connect(host).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        match tungstenite::client(req, stream) {
            Ok((socket, _)) => Ok(Self { socket }),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next JSON message, or `Err(close code)` when the server closes.
    pub fn receive(&mut self) -> Result<Value, u16> {
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(t)) => return Ok(serde_json::from_str(&t).unwrap()),
                Ok(tungstenite::Message::Close(f)) => return Err(f.map_or(1005, |f| u16::from(f.code))),
                Ok(_) => {}
                Err(e) => panic!("websocket read: {e}"),
            }
        }
    }

    /// Messages until one of `kind` arrives (which is returned).
    pub fn until(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let m = self.receive().unwrap_or_else(|code| panic!("closed ({code}) while waiting for {kind}"));
            if m["type"] == kind {
                return m;
            }
        }
        panic!("no {kind} event");
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn share_links_expire_are_revoked_and_close_open_streams() {
    let w = World::new();
    let alice = w.login("alice");
    let (_, item) = w.upload(&alice, "a.jpg", b"abc");
    let item = item.unwrap();
    // A viewer link: reads, comments, cannot upload.
    let made =
        w.call("POST", &w.g("/links"), Some(&alice), Some(json!({"role": "viewer", "expires_in_secs": 3600}))).json();
    let link_token = made["token"].as_str().unwrap().to_string();
    let link_id = made["link"]["id"].as_str().unwrap().to_string();
    let opened = w.call("POST", "/api/share/open", None, Some(json!({"token": link_token})));
    assert_eq!(opened.status, 200);
    let ls = opened.json()["token"].as_str().unwrap().to_string();
    assert_eq!(w.call("GET", &w.g("/items"), Some(&ls), None).status, 200);
    assert_eq!(
        w.call("POST", &w.g(&format!("/items/{item}/comments")), Some(&ls), Some(json!({"text": "via link"}))).status,
        201
    );
    assert_eq!(w.upload(&ls, "nope.jpg", b"x").0, 403);
    // Other galleries stay invisible to it.
    assert_eq!(w.call("GET", "/api/galleries", Some(&ls), None).json()["galleries"].as_array().unwrap().len(), 1);
    // Revocation closes an open stream at once and stops the session.
    let mut ws = Ws::connect(&w.base, &w.g("/events"), &ls).unwrap();
    assert_eq!(ws.receive().unwrap()["type"], "hello");
    assert_eq!(w.call("DELETE", &w.g(&format!("/links/{link_id}")), Some(&alice), None).status, 204);
    let code = loop {
        match ws.receive() {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(code, 4401, "revocation closes the stream with 4401");
    assert_eq!(w.call("GET", &w.g("/items"), Some(&ls), None).status, 401);
    assert_eq!(w.call("POST", "/api/share/open", None, Some(json!({"token": link_token}))).status, 401);

    // A short-lived link: works, then its open stream closes at the expiry and it is refused.
    let short =
        w.call("POST", &w.g("/links"), Some(&alice), Some(json!({"role": "viewer", "expires_in_secs": 3}))).json();
    let st = w.call("POST", "/api/share/open", None, Some(json!({"token": short["token"]}))).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ws = Ws::connect(&w.base, &w.g("/events"), &st).unwrap();
    assert_eq!(ws.receive().unwrap()["type"], "hello");
    let t0 = Instant::now();
    let code = loop {
        match ws.receive() {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(code, 4401);
    assert!(t0.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1100));
    let refused = w.call("GET", &w.g("/items"), Some(&st), None);
    assert_eq!(refused.status, 401);
    assert!(String::from_utf8_lossy(&refused.body).contains("expired"), "{}", String::from_utf8_lossy(&refused.body));
    let reopen = w.call("POST", "/api/share/open", None, Some(json!({"token": short["token"]})));
    assert_eq!(reopen.status, 401);

    // A password-protected contributor link is an upload drop box.
    let drop = w
        .call(
            "POST",
            &w.g("/links"),
            Some(&alice),
            Some(json!({"role": "contributor", "expires_in_secs": 600, "password": "s3cret!"})),
        )
        .json();
    let no_pw = w.call("POST", "/api/share/open", None, Some(json!({"token": drop["token"]})));
    assert_eq!(no_pw.status, 401);
    assert_eq!(no_pw.json()["password_required"], true);
    let wrong = w.call("POST", "/api/share/open", None, Some(json!({"token": drop["token"], "password": "guess"})));
    assert_eq!(wrong.status, 401);
    let ok = w.call("POST", "/api/share/open", None, Some(json!({"token": drop["token"], "password": "s3cret!"})));
    assert_eq!(ok.status, 200);
    let ds = ok.json()["token"].as_str().unwrap().to_string();
    assert_eq!(w.upload(&ds, "dropped.jpg", b"dropped bytes").0, 201);
    // Same name again: a numbered variant, never an overwrite.
    assert_eq!(w.upload(&ds, "dropped.jpg", b"second drop").0, 201);
    assert_eq!(std::fs::read(w.m.p("trip/dropped.jpg")).unwrap(), b"dropped bytes");
    assert_eq!(std::fs::read(w.m.p("trip/dropped (2).jpg")).unwrap(), b"second drop");
    // Links grant at most contributor.
    let too_much =
        w.call("POST", &w.g("/links"), Some(&alice), Some(json!({"role": "moderator", "expires_in_secs": 60})));
    assert_eq!(too_much.status, 422);
}

#[test]
fn events_replay_after_reconnect_and_report_mount_changes() {
    let w = World::new();
    let alice = w.login("alice");
    let bob = w.login("bob");
    let (_, item) = w.upload(&alice, "pic.jpg", b"pic");
    let item = item.unwrap();
    let comments = w.g(&format!("/items/{item}/comments"));
    let mut ws = Ws::connect(&w.base, &w.g("/events"), &bob).unwrap();
    let hello = ws.receive().unwrap();
    assert_eq!(hello["type"], "hello");
    let start = hello["seq"].as_u64().unwrap();
    w.call("POST", &comments, Some(&alice), Some(json!({"text": "first"})));
    let first = ws.until("comment.added");
    // The upload's `item.indexed` may come first, when indexing ran late.
    assert!(first["seq"].as_u64().unwrap() > start);
    assert_eq!(first["actor"], "alice");
    assert_eq!(first["data"]["text"], "first");
    drop(ws);
    // While bob is away: two comments and a reaction.
    w.call("POST", &comments, Some(&alice), Some(json!({"text": "second"})));
    w.call("POST", &comments, Some(&alice), Some(json!({"text": "third"})));
    w.call("POST", &w.g(&format!("/items/{item}/reactions")), Some(&alice), Some(json!({"emoji": "💖"})));
    let seen = first["seq"].as_u64().unwrap();
    let mut ws = Ws::connect(&w.base, &w.g(&format!("/events?since={seen}")), &bob).unwrap();
    assert_eq!(ws.receive().unwrap()["type"], "hello");
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = ws.receive().unwrap();
        if m["type"] == "item.indexed" {
            continue;
        }
        got.push(m);
    }
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[1] > p[0]) && seqs[0] > seen, "in order, after {seen}: {seqs:?}");
    assert_eq!(got[0]["data"]["text"], "second");
    assert_eq!(got[1]["data"]["text"], "third");
    assert_eq!(got[2]["type"], "reaction.changed");
    assert_eq!(got[2]["data"]["emoji"], "💖");

    // Changes through the mount are events too, with no actor.
    std::fs::write(w.m.p("trip/from-mount.txt"), b"hello").unwrap();
    let added = ws.until("item.added");
    assert_eq!(added["data"]["name"], "from-mount.txt");
    assert!(added["actor"].is_null());
    let new_id = added["item"].as_str().unwrap().to_string();
    std::fs::rename(w.m.p("trip/from-mount.txt"), w.m.p("trip/renamed.txt")).unwrap();
    let renamed = ws.until("item.renamed");
    assert_eq!(renamed["item"], new_id.as_str());
    assert_eq!(renamed["data"]["name"], "renamed.txt");
    sh(&format!("echo more >> {}", w.m.p("trip/renamed.txt").display()));
    assert_eq!(ws.until("item.changed")["item"], new_id.as_str());
    // Removing the item removes its comments with it.
    w.call("POST", &w.g(&format!("/items/{new_id}/comments")), Some(&alice), Some(json!({"text": "soon gone"})));
    std::fs::remove_file(w.m.p("trip/renamed.txt")).unwrap();
    assert_eq!(ws.until("item.removed")["item"], new_id.as_str());
    assert_eq!(w.call("GET", &w.g(&format!("/items/{new_id}")), Some(&alice), None).status, 404);
    // Moving a file out of the gallery is a removal; the gallery's own events stay per gallery.
    std::fs::write(w.m.p("trip/leaving.txt"), b"x").unwrap();
    ws.until("item.added");
    std::fs::rename(w.m.p("trip/leaving.txt"), w.m.p("outside.txt")).unwrap();
    assert_eq!(ws.until("item.removed")["data"]["name"], "leaving.txt");

    // SSE: the same log, resumed with Last-Event-ID.
    let req = ureq::http::Request::builder()
        .uri(format!("{}{}", w.base, w.g("/events")))
        .header("Authorization", format!("Bearer {bob}"))
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", seen.to_string())
        .body(Vec::new())
        .unwrap();
    let resp = w.http.run(req).unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let line = lines.next().expect("SSE stream open").unwrap();
        if let Some(data) = line.strip_prefix("data:") {
            let v: Value = serde_json::from_str(data.trim()).unwrap();
            if v["type"] == "comment.added" {
                texts.push(v["data"]["text"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(texts, ["second", "third"]);
}

#[test]
fn items_list_with_paging_sorting_media_facts_and_thumbnails() {
    let w = World::new();
    let alice = w.login("alice");
    // Files through the mount, of different sizes and times.
    for (i, name) in ["c.txt", "a.txt", "B.txt"].iter().enumerate() {
        std::fs::write(w.m.p(&format!("trip/{name}")), vec![b'x'; 10 * (i + 1)]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::create_dir(w.m.p("trip/day2")).unwrap();
    std::fs::write(w.m.p("trip/photo.png"), png(1200, 800)).unwrap();
    let names = |q: &str| -> Vec<String> {
        let l = w.call("GET", &w.g(&format!("/items?{q}")), Some(&alice), None).json();
        l["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("sort=name"), ["a.txt", "B.txt", "c.txt", "photo.png"]);
    assert_eq!(names("sort=size&order=desc&limit=2"), ["photo.png", "B.txt"]);
    assert_eq!(names("sort=size&order=desc&limit=2&offset=2"), ["a.txt", "c.txt"]);
    assert_eq!(names("sort=date&limit=3"), ["c.txt", "a.txt", "B.txt"]);
    assert_eq!(names("sort=type")[0], "photo.png", "image/png sorts before text/plain");
    let listing = w.call("GET", &w.g("/items?limit=1"), Some(&alice), None).json();
    assert_eq!(listing["total"], 4);
    assert_eq!(listing["folders"][0]["name"], "day2");
    // Uploads go into a folder of the gallery by id, never into a directory outside it.
    let day2 = listing["folders"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(w.upload_into(&alice, Some(&day2), "late.txt", b"late"), 201);
    assert_eq!(std::fs::read(w.m.p("trip/day2/late.txt")).unwrap(), b"late");
    std::fs::create_dir(w.m.p("elsewhere")).unwrap();
    let elsewhere = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(w.m.p("elsewhere")).unwrap()).to_string();
    assert_eq!(w.upload_into(&alice, Some(&elsewhere), "escape.txt", b"x"), 404);
    assert!(!w.m.p("elsewhere/escape.txt").exists());
    assert_eq!(w.call("GET", &w.g("/items?sort=weird"), Some(&alice), None).status, 400);

    // The indexer fills in the image's facts; the fingerprint is the file's BLAKE2b-256.
    let id = w.item_id(&alice, "photo.png").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let item = loop {
        let it = w.call("GET", &w.g(&format!("/items/{id}")), Some(&alice), None).json();
        if !it["pending"].as_bool().unwrap() {
            break it;
        }
        assert!(Instant::now() < deadline, "indexing never finished");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(item["type"], "image/png");
    assert_eq!((item["width"].as_u64(), item["height"].as_u64()), (Some(1200), Some(800)));
    let b2 = sh(&format!("b2sum -l 256 {}", w.m.p("trip/photo.png").display()));
    assert_eq!(item["fingerprint"].as_str().unwrap(), b2.split_whitespace().next().unwrap());
    assert_eq!(item["placeholder"].as_str().unwrap().len(), 28, "a 4x3 BlurHash");
    let thumb = w.call("GET", &w.g(&format!("/items/{id}/thumbnail?size=256")), Some(&alice), None);
    assert_eq!(thumb.status, 200);
    let img = image::load_from_memory_with_format(&thumb.body, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (256, 171));
    let big = w.call("GET", &w.g(&format!("/items/{id}/thumbnail?size=1024")), Some(&alice), None);
    assert_eq!(image::load_from_memory(&big.body).unwrap().width(), 1024);
    // A text file has no preview, and says why.
    let txt = w.item_id(&alice, "a.txt").unwrap();
    let none = w.call("GET", &w.g(&format!("/items/{txt}/thumbnail")), Some(&alice), None);
    assert_eq!(none.status, 404);
    assert!(none.json()["error"].as_str().unwrap().contains("no preview"));
    // Content with ranges.
    let req = ureq::http::Request::builder()
        .uri(format!("{}{}", w.base, w.g(&format!("/items/{txt}/content"))))
        .header("Authorization", format!("Bearer {alice}"))
        .header("Range", "bytes=2-5")
        .body(Vec::new())
        .unwrap();
    let resp = w.http.run(req).unwrap();
    assert_eq!(resp.status().as_u16(), 206);

    // A video, when ffmpeg is installed: duration, size and a poster.
    if sh_status("command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null") {
        let clip = w.v.tmp.path().join("clip.mp4");
        sh(&format!(
            "ffmpeg -nostdin -v error -f lavfi -i testsrc=duration=2:size=320x240:rate=25 -pix_fmt yuv420p {}",
            clip.display()
        ));
        std::fs::copy(&clip, w.m.p("trip/clip.mp4")).unwrap();
        let vid = w.item_id(&alice, "clip.mp4").unwrap();
        let poster = w.call("GET", &w.g(&format!("/items/{vid}/thumbnail?size=256")), Some(&alice), None);
        assert_eq!(poster.status, 200, "{}", String::from_utf8_lossy(&poster.body));
        let it = w.call("GET", &w.g(&format!("/items/{vid}")), Some(&alice), None).json();
        assert_eq!(it["type"], "video/mp4");
        assert_eq!((it["width"].as_u64(), it["height"].as_u64()), (Some(320), Some(240)));
        assert!((it["duration"].as_f64().unwrap() - 2.0).abs() < 0.2, "{}", it["duration"]);
    } else {
        eprintln!("ffmpeg not installed: video facts not tested");
    }
}

#[test]
fn users_create_galleries_within_their_limit() {
    let w = World::with_config("[media.collaboration]\nmax_galleries_per_user = 2\n");
    let erin = w.login("erin");
    let a = w.call("POST", "/api/galleries", Some(&erin), Some(json!({"title": "Erin's Cats"})));
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["role"], "owner");
    assert!(w.m.p("galleries/erin-s-cats").is_dir(), "a gallery is a directory in the mount");
    assert_eq!(w.call("POST", "/api/galleries", Some(&erin), Some(json!({"title": "Dogs"}))).status, 201);
    let third = w.call("POST", "/api/galleries", Some(&erin), Some(json!({"title": "Birds"})));
    assert_eq!(third.status, 429);
    assert!(third.json()["error"].as_str().unwrap().contains("max_galleries_per_user"));
    let mine = w.call("GET", "/api/galleries", Some(&erin), None).json();
    assert_eq!(mine["galleries"].as_array().unwrap().len(), 2);
    // An administrator's token marks an existing directory; a user cannot.
    std::fs::create_dir(w.m.p("archive")).unwrap();
    let admin = w.v.run_ok(&["token", "create", w.v.path(), "--allow", "read,write,delete"]).trim().to_string();
    let marked = w.call(
        "POST",
        "/api/galleries",
        Some(&admin),
        Some(json!({"title": "Archive", "path": "/archive", "owner": "bob"})),
    );
    assert_eq!(marked.status, 201, "{}", String::from_utf8_lossy(&marked.body));
    assert_eq!(marked.json()["owner"], "bob");
    let refused =
        w.call("POST", "/api/galleries", Some(&erin), Some(json!({"title": "Mine", "path": "/trip", "owner": "erin"})));
    assert_eq!(refused.status, 403);
    // The CLI sees them; removing a user who owns galleries is refused.
    let list: Value = serde_json::from_str(&w.v.run_ok(&["gallery", "list", w.v.path()])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);
    let out = w.v.run(&["user", "remove", w.v.path(), "erin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("transfer or delete them first"));
    assert!(w.v.run_ok(&["user", "list", w.v.path()]).contains("bob"));
    // Every gallery route is in the served API description.
    let doc = w.call("GET", "/openapi.json", None, None).json();
    for route in ["/api/login", "/api/share/open", "/api/galleries/{id}/items", "/api/galleries/{id}/events"] {
        assert!(doc["paths"][route].is_object(), "{route} is documented");
    }
    // Deleting a gallery ends sharing; the directory and files stay.
    std::fs::write(w.m.p("trip/keep.txt"), b"stay").unwrap();
    w.v.run_ok(&["gallery", "delete", w.v.path(), &w.gallery]);
    let alice = w.login("alice");
    assert_eq!(w.call("GET", &w.g("/items"), Some(&alice), None).status, 404);
    assert_eq!(std::fs::read(w.m.p("trip/keep.txt")).unwrap(), b"stay");
}

/// A new identity: (file, recipient).
fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let file = dir.join(format!("{name}.key"));
    let out = nanofs(&["keygen", file.to_str().unwrap()]);
    assert!(out.status.success());
    (file, String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string())
}

#[test]
fn a_gallery_travels_encrypted_to_recipients_and_bad_bundles_are_refused() {
    let w = World::new();
    let alice = w.login("alice");
    let carol = w.login("carol");
    // Content with repeats (a copy travels once), a folder, and a discussion.
    let big = random_bytes(7, 3 << 20);
    std::fs::write(w.m.p("trip/video.bin"), &big).unwrap();
    std::fs::write(w.m.p("trip/video-copy.bin"), &big).unwrap();
    std::fs::create_dir(w.m.p("trip/day2")).unwrap();
    std::fs::write(w.m.p("trip/day2/note.txt"), b"second day").unwrap();
    let (_, photo) = w.upload(&carol, "photo.png", &png(300, 200));
    let photo = photo.unwrap();
    let c =
        w.call("POST", &w.g(&format!("/items/{photo}/comments")), Some(&alice), Some(json!({"text": "lovely"}))).json();
    w.call(
        "POST",
        &w.g(&format!("/items/{photo}/comments")),
        Some(&carol),
        Some(json!({"text": "thanks", "parent": c["id"]})),
    );
    w.call("POST", &w.g(&format!("/items/{photo}/reactions")), Some(&alice), Some(json!({"emoji": "😮"})));
    w.call(
        "POST",
        &w.g(&format!("/items/{photo}/annotations")),
        Some(&carol),
        Some(json!({"text": "the boat", "region": {"x": 0.5, "y": 0.25, "w": 0.25, "h": 0.5}})),
    );
    let keys = w.v.tmp.path();
    let (id1, r1) = keygen(keys, "one");
    let (id2, r2) = keygen(keys, "two");
    let (stranger, _) = keygen(keys, "stranger");
    let bundle = keys.join("trip.bundle");
    let out = w.v.run(&[
        "gallery",
        "export",
        w.v.path(),
        &w.gallery,
        "--recipient",
        &r1,
        "--recipient",
        &r2,
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), w.m.log_text());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["items"], 4);
    assert_eq!(report["discussion"], 4);
    assert!(report["dedup_bytes"].as_u64().unwrap() >= 3 << 20, "the copy travels as references: {report}");
    let size = std::fs::metadata(&bundle).unwrap().len();
    assert!(size < (3 << 20) + (1 << 20), "one copy of the 3 MiB content, not two: {size}");
    assert!(!String::from_utf8_lossy(&std::fs::read(&bundle).unwrap()).contains("lovely"), "encrypted");

    // Into a second volume, with the second recipient's identity.
    let other = World::new();
    let import = |file: &std::path::Path, id: &std::path::Path, path: &str| {
        other.v.run(&[
            "gallery",
            "import",
            other.v.path(),
            file.to_str().unwrap(),
            "--identity",
            id.to_str().unwrap(),
            "--path",
            path,
            "--owner",
            "bob",
        ])
    };
    let refused = |out: std::process::Output, why: &str| {
        assert!(!out.status.success(), "{why}: accepted");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(why), "expected {why:?} in: {err}");
    };
    refused(import(&bundle, &stranger, "/moved"), "not addressed to this identity");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let cut = keys.join("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    refused(import(&cut, &id2, "/moved"), "truncated");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = keys.join("bad.bundle");
    std::fs::write(&bad, &bytes).unwrap();
    refused(import(&bad, &id2, "/moved"), "tampered");
    // Refusals leave nothing behind.
    assert!(!other.m.p("moved").exists());
    assert_eq!(sh(&format!("ls -A {}", other.m.p("").display())).trim(), "trip");

    let out = import(&bundle, &id2, "/moved/trip");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["title"], "Trip");
    assert_eq!(made["owner"], "bob");
    let gid = made["id"].as_str().unwrap();
    for f in ["video.bin", "video-copy.bin"] {
        assert_eq!(std::fs::read(other.m.p(&format!("moved/trip/{f}"))).unwrap(), big);
    }
    assert_eq!(std::fs::read(other.m.p("moved/trip/day2/note.txt")).unwrap(), b"second day");
    let bob = other.login("bob");
    let list = other.call("GET", &format!("/api/galleries/{gid}/items"), Some(&bob), None).json();
    let new_photo = list["items"].as_array().unwrap().iter().find(|i| i["name"] == "photo.png").unwrap().clone();
    assert_eq!(new_photo["author"], "carol");
    assert_eq!(new_photo["comments"], 2);
    assert_eq!(new_photo["reactions"]["😮"], 1);
    let detail = other
        .call("GET", &format!("/api/galleries/{gid}/items/{}", new_photo["id"].as_str().unwrap()), Some(&bob), None)
        .json();
    let talk = &detail["discussion"];
    assert_eq!(talk["comments"][1]["parent"], talk["comments"][0]["id"], "the thread holds together");
    assert_eq!(talk["annotations"][0]["text"], "the boat");
    assert_eq!(talk["annotations"][0]["region"]["x"], 0.5);
    // The first recipient can open it too (into yet another path).
    let again = import(&bundle, &id1, "/copy");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(other.m.p("copy/video.bin")).unwrap(), big);
}
