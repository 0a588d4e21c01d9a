//! The HTTP sidecar over loopback: a real tus client (tuspy), curl and Python's
//! http.client against `nanofs mount --serve` and `nanofs serve`, with the mount and HTTP
//! seeing each other's changes. Request/response behaviour (ranges, conditionals, tus,
//! tokens, the error-to-status table) is tested in process: `tests/engine/http/`.

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
pub fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
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

pub fn bearer(token: &str) -> String {
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
# Asking for the fingerprint: the sidecar hashes the upload as it arrives.
c = client.TusClient("{base}/uploads", headers={{"Authorization": "Bearer {token}", "Want-Repr-Digest": "blake2b-256=1"}})
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
    // And back over HTTP, with its fingerprint: hashed as the bytes arrived, not read back.
    let (status, headers, body) = curl(&["-H", &bearer(&s.token), &format!("{}/files/videos/clip.bin", s.base)]);
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(&src).unwrap());
    let b2 = sh(&format!(
        "python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.blake2b(open(sys.argv[1], \"rb\").read(), digest_size=32).digest()).decode())' '{}'",
        src.display()
    ));
    // (The helper lowercases the headers.)
    assert!(headers.contains(&format!("repr-digest: blake2b-256=:{}:", b2.trim()).to_lowercase()), "{headers}");
    assert!(!s.m.p(".uploads").read_dir().is_ok_and(|mut d| d.next().is_some()), "no leftover upload");
    s.m.unmount();
}

#[test]
fn a_concatenated_upload_appears_in_the_mount_and_a_busy_upload_is_locked() {
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
    let patch = |url: &str, data: &str| -> u16 {
        let args = [
            "-X",
            "PATCH",
            "-H",
            tus,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/offset+octet-stream",
            "-H",
            "Upload-Offset: 0",
            "--data-binary",
            data,
            url,
        ];
        curl(&args).0
    };
    let a = create(5, &["-H", "Upload-Concat: partial"]);
    assert_eq!(patch(&a, "hello"), 204);
    let b = create(6, &["-H", "Upload-Concat: partial"]);
    assert_eq!(patch(&b, " world"), 204);

    // Final concatenation of the two partial uploads, in order, at the metadata's path, in
    // a directory the upload creates. The kernel caches the miss of that directory, and must
    // drop it: the new directory is no name the sidecar was asked to write. (The tus
    // protocol itself is tested in process: tests/engine/http/tus.rs.)
    assert!(!s.m.p("parts").exists());
    let fin = format!("Upload-Concat: final;{a} {b}");
    let meta = format!("Upload-Metadata: path {}", base64("/parts/whole.bin"));
    let (status, headers, _) = curl(&["-X", "POST", "-H", tus, "-H", &auth, "-H", &fin, "-H", &meta, &uploads]);
    assert_eq!(status, 201, "{headers}");
    assert_eq!(std::fs::read(s.m.p("parts/whole.bin")).unwrap(), b"hello world");

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
    s.m.unmount();
}

/// Tokens made, listed and revoked with the command line work over HTTP, and a delete over
/// HTTP is gone from the mount at once. (Ranges, conditionals, scopes, expiry and path
/// tricks are tested in process: tests/engine/http/.)
#[test]
fn cli_tokens_work_over_http_and_a_delete_disappears_from_the_mount() {
    let s = serve();
    std::fs::create_dir_all(s.m.p("pub")).unwrap();
    std::fs::create_dir_all(s.m.p("private")).unwrap();
    std::fs::write(s.m.p("pub/film.mp4"), b"film").unwrap();
    std::fs::write(s.m.p("private/secret.txt"), b"secret").unwrap();
    let url = format!("{}/files/pub/film.mp4", s.base);
    let scoped = s.v.run_ok(&["token", "create", s.v.path(), "--path", "/pub", "--allow", "read"]).trim().to_string();
    let sa = bearer(&scoped);
    let (status, _, body) = curl(&["-H", &sa, &url]);
    assert_eq!((status, body.as_slice()), (200, b"film".as_slice()));
    assert_eq!(curl(&["-H", &sa, &format!("{}/files/private/secret.txt", s.base)]).0, 403);
    assert_eq!(curl(&["-H", &sa, "-X", "DELETE", &url]).0, 403);
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
    let auth = bearer(&s.token);
    assert!(s.m.p("private/secret.txt").exists());
    assert_eq!(curl(&["-X", "DELETE", "-H", &auth, &format!("{}/files/private/secret.txt", s.base)]).0, 204);
    assert!(!s.m.p("private/secret.txt").exists());
    assert_eq!(curl(&[&format!("{}/readyz", s.base)]).0, 200);
    s.m.unmount();
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
        Self::start_full(v, addr, extra, &[])
    }

    /// On a free loopback port, with `env` set for the server.
    pub fn start_env(v: &TestVolume, env: &[(&str, &str)]) -> Self {
        Self::start_full(v, "127.0.0.1:0", &[], env)
    }

    fn start_full(v: &TestVolume, addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(bin())
            .args(["serve", v.path(), "--listen", addr, "--passphrase-file", v.pass_file.to_str().unwrap()])
            .args(extra)
            .envs(env.iter().copied())
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

    /// Waits until the server dies by a signal (an injected crash).
    pub fn expect_crash(mut self, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: the server did not crash within 60 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            std::os::unix::process::ExitStatusExt::signal(&status).is_some(),
            "{what}: server exited with {status}"
        );
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
# Asking for the fingerprint: the sidecar hashes the upload as it arrives.
c = client.TusClient("{base}/uploads", headers={{"Authorization": "Bearer {token}", "Want-Repr-Digest": "blake2b-256=1"}})
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
