//! Tokens bound to countries (a MaxMind-format database built here) and to one device
//! (a key pair registered at first use; a copied token is refused elsewhere). Requests
//! come from several loopback addresses (`curl --interface 127.0.x.y`).

use crate::common::*;
use crate::http::{bearer, curl};
use crate::operations::mount_serving;

/// A country database: 127.0.0.0/24 in DE, 127.0.1.0/24 in US, nothing else.
fn country_db(v: &TestVolume) -> std::path::PathBuf {
    let path = v.tmp.path().join("countries.mmdb");
    let python = format!("{}/.cache/nanofs-venv/bin/python", std::env::var("HOME").unwrap());
    let script = format!(
        "from netaddr import IPSet\nfrom mmdb_writer import MMDBWriter\n\
         w = MMDBWriter(ip_version=4, database_type='GeoIP2-Country')\n\
         w.insert_network(IPSet(['127.0.0.0/24']), {{'country': {{'iso_code': 'DE'}}}})\n\
         w.insert_network(IPSet(['127.0.1.0/24']), {{'country': {{'iso_code': 'US'}}}})\n\
         w.to_db_file('{}')\n",
        path.display()
    );
    let out = std::process::Command::new(python).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "building the database: {}", String::from_utf8_lossy(&out.stderr));
    path
}

#[test]
fn a_token_bound_to_countries_works_only_from_them() {
    let v = TestVolume::new();
    let db = country_db(&v);
    std::fs::write(v.dir.join("nanofs.toml"), format!("[access]\ngeoip_db = \"{}\"\n", db.display())).unwrap();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read", "--country", "de"]).trim().to_string();
    assert!(v.run_ok(&["token", "list", v.path()]).contains("in DE"));
    let (m, base) = mount_serving(&v, &[], &[]);
    std::fs::write(m.p("a.txt"), b"hallo").unwrap();
    let url = format!("{base}/files/a.txt");
    let from = |addr: &str| curl(&["--interface", addr, "-H", &bearer(&token), &url]);

    let (status, _, body) = from("127.0.0.1");
    assert_eq!((status, body.as_slice()), (200, &b"hallo"[..]));
    let (status, _, body) = from("127.0.1.5");
    let why = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{why}");
    assert!(why.contains("countries DE") && why.contains("127.0.1.5, in US"), "{why}");
    let (status, _, body) = from("127.0.2.5");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("in no country the database knows"));

    // Without a database such a token is refused, and says why (a live key).
    std::fs::write(v.dir.join("nanofs.toml"), "[access]\ngeoip_db = \"\"\n").unwrap();
    assert!(nanofs(&["config", "reload", v.path()]).status.success());
    let (status, _, body) = from("127.0.0.1");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("no country database is configured"));
    let bad = v.run(&["token", "create", v.path(), "--country", "Germany"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("two letters"), "{bad:?}");
    m.unmount();
}

#[test]
fn a_token_bound_to_a_device_is_refused_on_another() {
    let v = TestVolume::new();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write", "--device"]).trim().to_string();
    assert!(v.run_ok(&["token", "list", v.path()]).contains("on one device"));
    let (m, base) = mount_serving(&v, &[], &[]);
    let local = v.tmp.path().join("clip.bin");
    write_random_file(&local, 3, 3 << 20);
    let (mine, other) = (v.tmp.path().join("laptop.key"), v.tmp.path().join("elsewhere.key"));
    let client = |args: &[&str], key: &std::path::Path| {
        std::process::Command::new(bin())
            .args(args)
            .args(["--quiet", "--retries", "0", "--device-key", key.to_str().unwrap()])
            .env("NANOFS_TOKEN", &token)
            .output()
            .unwrap()
    };
    let url = format!("{base}/files/clip.bin");
    let pushed = client(&["push", local.to_str().unwrap(), &url], &mine);
    assert!(pushed.status.success(), "the first device binds the token: {pushed:?}");
    assert!(v.run_ok(&["token", "list", v.path()]).contains("on its device"));
    let back = v.tmp.path().join("back.bin");
    let pulled = client(&["pull", &url, back.to_str().unwrap()], &mine);
    assert!(pulled.status.success(), "{pulled:?}");
    assert_eq!(sha256(&back), sha256(&local));

    // A copy of the token on another device, or without any proof, does nothing.
    let stolen = client(&["pull", &url, v.tmp.path().join("x").to_str().unwrap()], &other);
    assert!(!stolen.status.success());
    assert!(String::from_utf8_lossy(&stolen.stderr).contains("bound to another device"), "{stolen:?}");
    let (status, _, body) = curl(&["-H", &bearer(&token), &url]);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("sign each request"));
    // A proof for one request does not open another.
    let (status, _, body) = curl(&["-H", &bearer(&token), "-H", "X-Nanofs-Device: AAAA.1.AAAA", &url]);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    m.unmount();
}

#[test]
fn a_share_link_bound_to_a_network_opens_and_works_only_from_it() {
    use crate::galleries::World;
    let w = World::new();
    let alice = w.login("alice");
    let body = serde_json::json!({"role": "viewer", "networks": ["127.0.0.0/24"]}).to_string();
    let made = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer(&alice),
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("{}{}", w.base, w.g("/links")),
    ]);
    assert_eq!(made.0, 201, "{}", String::from_utf8_lossy(&made.2));
    let made: serde_json::Value = serde_json::from_slice(&made.2).unwrap();
    assert_eq!(made["link"]["networks"][0], "127.0.0.0/24");
    let open = |from: &str| {
        let body = serde_json::json!({"token": made["token"]}).to_string();
        let url = format!("{}/api/share/open", w.base);
        curl(&["--interface", from, "-X", "POST", "-H", "Content-Type: application/json", "-d", &body, &url])
    };
    let (status, _, why) = open("127.0.1.5");
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&why).contains("share link is bound to the networks 127.0.0.0/24"));
    let (status, _, session) = open("127.0.0.1");
    assert_eq!(status, 200);
    let session: serde_json::Value = serde_json::from_slice(&session).unwrap();
    let token = session["token"].as_str().unwrap();
    let items = format!("{}{}", w.base, w.g("/items"));
    assert_eq!(curl(&["--interface", "127.0.0.9", "-H", &bearer(token), &items]).0, 200);
    assert_eq!(curl(&["--interface", "127.0.1.9", "-H", &bearer(token), &items]).0, 403, "its session moves with it");
    let bad = serde_json::json!({"role": "viewer", "networks": ["not-a-net"]}).to_string();
    let refused = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer(&alice),
        "-H",
        "Content-Type: application/json",
        "-d",
        &bad,
        &format!("{}{}", w.base, w.g("/links")),
    ]);
    assert_eq!(refused.0, 400);
}

#[test]
fn a_share_link_bound_to_a_device_works_only_in_the_browser_that_opened_it_first() {
    use crate::galleries::World;
    let w = World::new();
    let alice = w.login("alice");
    let made =
        w.call("POST", &w.g("/links"), Some(&alice), Some(serde_json::json!({"role": "viewer", "device": true})));
    assert_eq!(made.status, 201);
    let made = made.json();
    assert_eq!(made["link"]["device"], true);
    let (home, elsewhere) = (w.v.tmp.path().join("home.jar"), w.v.tmp.path().join("elsewhere.jar"));
    let open = |jar: &std::path::Path| {
        let body = serde_json::json!({"token": made["token"]}).to_string();
        let jar = jar.to_str().unwrap();
        let url = format!("{}/api/share/open", w.base);
        curl(&["-b", jar, "-c", jar, "-X", "POST", "-H", "Content-Type: application/json", "-d", &body, &url])
    };
    let (status, headers, body) = open(&home);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains("set-cookie: nanofs_device=") && headers.contains("httponly"), "{headers}");
    assert_eq!(open(&home).0, 200, "the same browser opens it again");
    let (status, _, body) = open(&elsewhere);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("bound to another device"));

    // Its session, copied elsewhere without the device cookie, is refused too.
    let items = format!("{}{}", w.base, w.g("/items"));
    let jar = home.to_str().unwrap();
    assert_eq!(curl(&["-b", jar, &items]).0, 200);
    let session = std::fs::read_to_string(&home).unwrap();
    let token =
        session.lines().find(|l| l.contains("nanofs_session")).unwrap().split('\t').next_back().unwrap().to_string();
    let (status, _, body) = curl(&["-H", &bearer(&token), &items]);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}
