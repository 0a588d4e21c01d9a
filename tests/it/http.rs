//! The HTTP sidecar over loopback: a real tus client (tuspy) and curl against
//! `nanofs mount --serve`, with the mount and HTTP seeing each other's changes.

use crate::common::*;
use std::process::Command;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Served {
    v: TestVolume,
    m: Mounted,
    base: String,
    token: String,
}

fn serve() -> Served {
    let v = TestVolume::new();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write,delete"]).trim().to_string();
    let addr = format!("127.0.0.1:{}", free_port());
    let m = v.mount_with(&["--serve", &addr]);
    let base = format!("http://{addr}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Served { v, m, base, token }
}

/// `curl -s -D- ARGS`: (status, headers lowercased, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl").args(["-s", "-S", "--path-as-is", "-D", "/dev/stderr"]).args(args).output().unwrap();
    let headers = String::from_utf8_lossy(&out.stderr).to_lowercase();
    let status = headers
        .lines()
        .rev()
        .find(|l| l.starts_with("http/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers, out.stdout)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn tuspy() -> String {
    format!("{}/.cache/nanofs-venv/bin/python", std::env::var("HOME").unwrap())
}

#[test]
fn a_tus_client_uploads_resumes_and_the_file_appears_in_the_mount() {
    let s = serve();
    let src = s.v.tmp.path().join("clip.bin");
    write_random_file(&src, 21, 12 << 20);
    // A lookup before the upload leaves a negative entry in the kernel; the sidecar must
    // invalidate it so the file is visible at once.
    std::fs::create_dir(s.m.p("videos")).unwrap();
    assert!(!s.m.p("videos/clip.bin").exists());
    let script = format!(
        r#"
import sys
from tusclient import client
c = client.TusClient("{base}/uploads", headers={{"Authorization": "Bearer {token}"}})
u = c.uploader("{src}", chunk_size=1 << 20, metadata={{"path": "videos/clip.bin"}}, upload_checksum=True)
u.upload(stop_at=5 << 20)
print(u.url, u.offset)
# A new client process resumes from the server's offset.
u2 = client.TusClient("{base}/uploads", headers={{"Authorization": "Bearer {token}"}}).uploader(
    "{src}", chunk_size=1 << 20, url=u.url, upload_checksum=True)
assert u2.offset == 5 << 20, u2.offset
u2.upload()
print(u2.offset)
"#,
        base = s.base,
        token = s.token,
        src = src.display()
    );
    let out = Command::new(tuspy()).arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "tuspy failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&s.m.p("videos/clip.bin")), sha256(&src), "visible and whole at once");
    // And back over HTTP, with the fingerprint as ETag.
    let (status, headers, body) = curl(&["-H", &bearer(&s.token), &format!("{}/files/videos/clip.bin", s.base)]);
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(&src).unwrap());
    let b2 = sh(&format!("b2sum -l 256 '{}'", src.display()));
    assert!(headers.contains(&format!("etag: \"{}\"", &b2[..64])), "{headers}");
    assert!(!s.m.p(".uploads").read_dir().is_ok_and(|mut d| d.next().is_some()), "no leftover upload");
    s.m.unmount();
}

#[test]
fn tus_checksum_termination_and_concatenation() {
    let s = serve();
    let auth = bearer(&s.token);
    let tus = "Tus-Resumable: 1.0.0";
    let uploads = format!("{}/uploads", s.base);
    let create = |len: usize, extra: &[&str]| -> String {
        let meta = format!("Upload-Metadata: path {}", base64("/parts/whole.bin"));
        let len = format!("Upload-Length: {len}");
        let mut args = vec!["-X", "POST", "-H", tus, "-H", &auth, "-H", &len];
        args.extend_from_slice(extra);
        if extra.is_empty() {
            args.extend_from_slice(&["-H", &meta]);
        }
        args.push(&uploads);
        let (status, headers, _) = curl(&args);
        assert_eq!(status, 201, "{headers}");
        let loc = headers.lines().find_map(|l| l.strip_prefix("location: ")).unwrap().trim().to_string();
        format!("{}{loc}", s.base)
    };
    let patch = |url: &str, offset: usize, data: &str, checksum: Option<&str>| -> (u16, String) {
        let off = format!("Upload-Offset: {offset}");
        let sum = checksum.map(|c| format!("Upload-Checksum: {c}"));
        let mut args = vec![
            "-X",
            "PATCH",
            "-H",
            tus,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/offset+octet-stream",
            "-H",
            &off,
        ];
        if let Some(sum) = &sum {
            args.extend_from_slice(&["-H", sum]);
        }
        args.extend_from_slice(&["--data-binary", data, url]);
        let (status, headers, _) = curl(&args);
        (status, headers)
    };
    let head_offset = |url: &str| -> Option<u64> {
        let (_, headers, _) = curl(&["-I", "-H", tus, "-H", &auth, url]);
        headers.lines().find_map(|l| l.strip_prefix("upload-offset: ")).map(|v| v.trim().parse().unwrap())
    };

    // A wrong checksum is refused with 460 and nothing is kept; the right one is accepted.
    let a = create(5, &["-H", "Upload-Concat: partial"]);
    let (status, _) = patch(&a, 0, "hello", Some(&format!("sha1 {}", base64_bytes(&[0u8; 20]))));
    assert_eq!(status, 460);
    assert_eq!(head_offset(&a), Some(0));
    let (status, headers) = patch(&a, 0, "hello", Some(&format!("sha1 {}", sha1_b64("hello"))));
    assert_eq!(status, 204, "{headers}");
    assert!(headers.contains("upload-offset: 5"));
    // A PATCH at the wrong offset conflicts.
    let b = create(6, &["-H", "Upload-Concat: partial"]);
    assert_eq!(patch(&b, 3, "xyz", None).0, 409);
    assert_eq!(patch(&b, 0, " world", None).0, 204);

    // Final concatenation of the two partial uploads, in order, at the metadata's path, in
    // a directory the upload creates. The kernel caches the miss of that directory, and must
    // drop it: the new directory is no name the sidecar was asked to write.
    assert!(!s.m.p("parts").exists());
    let fin = format!("Upload-Concat: final;{a} {b}");
    let meta = format!("Upload-Metadata: path {}", base64("/parts/whole.bin"));
    let (status, headers, _) = curl(&["-X", "POST", "-H", tus, "-H", &auth, "-H", &fin, "-H", &meta, &uploads]);
    assert_eq!(status, 201, "{headers}");
    assert_eq!(std::fs::read(s.m.p("parts/whole.bin")).unwrap(), b"hello world");
    assert_eq!(head_offset(&a), None, "parts are gone");

    // Termination.
    let c = create(100, &[]);
    assert_eq!(patch(&c, 0, "some", None).0, 204);
    let (status, _, _) = curl(&["-X", "DELETE", "-H", tus, "-H", &auth, &c]);
    assert_eq!(status, 204);
    assert_eq!(head_offset(&c), None);
    // A PATCH still sending its body holds the upload: a second one meanwhile gets 423.
    let d = create(1 << 20, &[]);
    let script = format!(
        r#"
import http.client, time, urllib.parse
u = urllib.parse.urlparse("{d}")
h = {{"Tus-Resumable": "1.0.0", "Authorization": "Bearer {token}", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}}
slow = http.client.HTTPConnection(u.hostname, u.port)
slow.putrequest("PATCH", u.path)
for k, v in dict(h, **{{"Content-Length": str(1 << 20)}}).items():
    slow.putheader(k, v)
slow.endheaders()
slow.send(b"x" * 4096)
time.sleep(0.5)
other = http.client.HTTPConnection(u.hostname, u.port)
other.request("PATCH", u.path, body=b"y" * 10, headers=h)
print(other.getresponse().status)
slow.send(b"x" * ((1 << 20) - 4096))
print(slow.getresponse().status)
"#,
        token = s.token
    );
    let out = std::process::Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["423", "204"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without Tus-Resumable: 412.
    let (status, _, _) = curl(&["-X", "POST", "-H", &auth, "-H", "Upload-Length: 1", &uploads]);
    assert_eq!(status, 412);
    s.m.unmount();
}

#[test]
fn ranges_conditionals_tokens_and_traversal() {
    let s = serve();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(s.m.p("pub/sub")).unwrap();
    std::fs::create_dir_all(s.m.p("private")).unwrap();
    std::fs::write(s.m.p("pub/sub/film.mp4"), &data).unwrap();
    std::fs::write(s.m.p("private/secret.txt"), b"secret").unwrap();
    let auth = bearer(&s.token);
    let url = format!("{}/files/pub/sub/film.mp4", s.base);

    let (status, headers, body) = curl(&["-H", &auth, "-H", "Range: bytes=100-199", &url]);
    assert_eq!(status, 206);
    assert_eq!(body, &data[100..200]);
    assert!(headers.contains("content-range: bytes 100-199/100000"), "{headers}");
    assert!(headers.contains("content-type: video/mp4"), "{headers}");
    let (status, headers, body) = curl(&["-H", &auth, "-H", "Range: bytes=0-1,-2", &url]);
    assert_eq!(status, 206);
    assert!(headers.contains("multipart/byteranges"), "{headers}");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("content-range: bytes 0-1/100000") || text.contains("Content-Range: bytes 0-1/100000"),
        "{text}"
    );
    assert!(text.contains("Content-Range: bytes 99998-99999/100000"), "{text}");
    let (status, headers, _) = curl(&["-H", &auth, "-H", "Range: bytes=200000-", &url]);
    assert_eq!(status, 416);
    assert!(headers.contains("content-range: bytes */100000"));
    let etag = headers_value(&curl(&["-I", "-H", &auth, &url]).1, "etag");
    let inm = format!("If-None-Match: {etag}");
    assert_eq!(curl(&["-H", &auth, "-H", &inm, &url]).0, 304);
    let (status, _, body) = curl(&["-H", &auth, "-H", "Range: bytes=0-9", "-H", "If-Range: \"stale\"", &url]);
    assert_eq!((status, body.len()), (200, data.len()), "If-Range mismatch gives the whole file");
    let ims = format!("If-Modified-Since: {}", raw_header(&["-I", "-H", &auth, &url], "last-modified"));
    assert_eq!(curl(&["-H", &auth, "-H", &ims, &url]).0, 304);
    let (status, _, body) = curl(&["-H", &auth, &format!("{}/files/pub?list", s.base)]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"name\":\"sub\""));

    // Tokens: missing, scoped, read-only, expired, revoked.
    assert_eq!(curl(&[&url]).0, 401);
    let scoped = s.v.run_ok(&["token", "create", s.v.path(), "--path", "/pub", "--allow", "read"]).trim().to_string();
    let sa = bearer(&scoped);
    assert_eq!(curl(&["-H", &sa, &url]).0, 200);
    assert_eq!(curl(&["-H", &sa, &format!("{}/files/private/secret.txt", s.base)]).0, 403);
    assert_eq!(curl(&["-H", &sa, "-X", "DELETE", &url]).0, 403);
    let (status, _, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Tus-Resumable: 1.0.0",
        "-H",
        &sa,
        "-H",
        "Upload-Length: 1",
        "-H",
        "Upload-Metadata: filename eA==",
        &format!("{}/uploads", s.base),
    ]);
    assert_eq!(status, 403);
    for attack in [
        "/files/pub/../private/secret.txt",
        "/files/pub/%2e%2e/private/secret.txt",
        "/files/pub%2F..%2Fprivate/secret.txt",
        "/files/pub/a%00b",
    ] {
        let (status, _, _) = curl(&["-H", &sa, &format!("{}{attack}", s.base)]);
        assert_eq!(status, 400, "{attack}");
    }
    let short = s.v.run_ok(&["token", "create", s.v.path(), "--expires", "1s"]).trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, _, body) = curl(&["-H", &bearer(&short), &url]);
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    let id = scoped.trim_start_matches("nft_").split('_').next().unwrap().to_string();
    s.v.run_ok(&["token", "revoke", s.v.path(), &id]);
    assert_eq!(curl(&["-H", &sa, &url]).0, 401);
    let list = s.v.run_ok(&["token", "list", s.v.path()]);
    assert!(!list.contains(&id) && !list.contains(&s.token[20..]), "no secrets listed: {list}");

    // Delete over HTTP disappears from the mount at once.
    assert!(s.m.p("private/secret.txt").exists());
    assert_eq!(curl(&["-X", "DELETE", "-H", &auth, &format!("{}/files/private/secret.txt", s.base)]).0, 204);
    assert!(!s.m.p("private/secret.txt").exists());
    assert_eq!(curl(&[&format!("{}/healthz", s.base)]).0, 200);
    let (status, _, body) = curl(&[&format!("{}/openapi.json", s.base)]);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
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
    ] {
        assert!(doc["paths"][route].is_object(), "{route} is documented");
    }
    assert_eq!(curl(&[&format!("{}/readyz", s.base)]).0, 200);
    s.m.unmount();
}

/// A response header's value, case preserved (HTTP dates are case-sensitive).
fn raw_header(args: &[&str], name: &str) -> String {
    let out = Command::new("curl").args(["-s", "-D", "/dev/stderr"]).args(args).output().unwrap();
    let headers = String::from_utf8_lossy(&out.stderr).into_owned();
    headers
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
        })
        .unwrap()
}

fn headers_value(headers: &str, name: &str) -> String {
    headers.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap().trim().to_string()
}

fn base64(s: &str) -> String {
    base64_bytes(s.as_bytes())
}

fn base64_bytes(b: &[u8]) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin.as_ref().unwrap().write_all(b).unwrap();
    String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
}

fn sha1_b64(s: &str) -> String {
    sh(&format!("printf %s '{s}' | openssl dgst -sha1 -binary | base64 -w0"))
}

/// `nanofs serve` in the foreground; killed on drop.
pub struct Server {
    child: std::process::Child,
    pub base: String,
}

impl Server {
    pub fn start(v: &TestVolume) -> Self {
        Self::start_at(v, "127.0.0.1:0")
    }

    pub fn start_at(v: &TestVolume, addr: &str) -> Self {
        Self::start_with(v, addr, &[])
    }

    pub fn start_with(v: &TestVolume, addr: &str, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(bin())
            .args(["serve", v.path(), "--listen", addr, "--passphrase-file", v.pass_file.to_str().unwrap()])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("no address: {line:?}")).to_string();
        Self { child, base }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(mut self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_upload_resumes_after_the_sidecar_is_killed_and_expired_uploads_are_deleted() {
    let v = TestVolume::new();
    std::fs::write(v.dir.join("nanofs.toml"), "[sidecar]\nupload_expiry_secs = 3\n").unwrap();
    let token = v.run_ok(&["token", "create", v.path(), "--allow", "read,write"]).trim().to_string();
    let src = v.tmp.path().join("big.bin");
    write_random_file(&src, 33, 10 << 20);
    let mut server = Server::start(&v);
    let other = v.tmp.path().join("other.bin");
    write_random_file(&other, 34, 4 << 20);
    let script_for = |src: &std::path::Path, base: &str, url: Option<&str>, stop_at: Option<u64>| {
        format!(
            r#"
from tusclient import client
c = client.TusClient("{base}/uploads", headers={{"Authorization": "Bearer {token}"}})
u = c.uploader("{src}", chunk_size=1 << 20, metadata={{"filename": "big.bin"}}{url})
u.upload({stop})
print(u.url.rsplit("/", 1)[1], u.offset)
"#,
            src = src.display(),
            url = url.map(|u| format!(", url=\"{u}\"")).unwrap_or_default(),
            stop = stop_at.map(|s| format!("stop_at={s}")).unwrap_or_default(),
        )
    };
    let script = |base: &str, url: Option<&str>, stop_at: Option<u64>| script_for(&src, base, url, stop_at);
    let out = Command::new(tuspy()).arg("-c").arg(script(&server.base, None, Some(4 << 20))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = printed.split_whitespace().next().unwrap().to_string();
    server.kill9();

    // A new sidecar process: the upload is where the client left it, and completes.
    let server = Server::start(&v);
    let url = format!("{}/uploads/{id}", server.base);
    let out = Command::new(tuspy()).arg("-c").arg(script(&server.base, Some(&url), None)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _, body) = curl(&["-H", &bearer(&token), &format!("{}/files/big.bin", server.base)]);
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(&src).unwrap());

    // An incomplete upload (of other data: the same bytes would be shared) expires, and
    // its bytes become garbage for GC.
    let out =
        Command::new(tuspy()).arg("-c").arg(script_for(&other, &server.base, None, Some(2 << 20))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stale = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_secs(6));
    let (status, _, _) =
        curl(&["-I", "-H", "Tus-Resumable: 1.0.0", "-H", &bearer(&token), &format!("{}/uploads/{stale}", server.base)]);
    assert_eq!(status, 404);
    server.stop();
    let gc = v.run_ok(&["gc", v.path(), "--json"]);
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    assert!(gc["stored_bytes_deleted"].as_u64().unwrap() >= 2 << 20, "{gc}");
    assert!(v.run_ok(&["check", v.path(), "--read-data"]).contains("clean"));
}
