//! Fixtures: a volume in a temporary directory, and a real FUSE mount of it served by the
//! `nanofs` binary, unmounted on drop (also when a test panics).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

#[path = "../../support/mod.rs"]
mod support;
pub use support::*;

pub const PASSPHRASE: &str = "correct horse battery staple";

thread_local! {
    /// The FUSE transport of this thread's mounts (each test runs on its own thread).
    static TRANSPORT: std::cell::Cell<&'static str> = const { std::cell::Cell::new("dev") };
}

/// Runs `test` with every mount it makes on `transport` (`dev` or `uring`). Mounts are on
/// `dev` otherwise, whatever the kernel offers, so a test knows which one it exercises.
pub fn on_transport(transport: &'static str, test: impl FnOnce()) {
    if transport == "uring" {
        enable_fuse_uring();
    }
    TRANSPORT.set(transport);
    test();
}

/// Turns on the kernel's FUSE over io_uring (a module parameter; needs root).
pub fn enable_fuse_uring() {
    std::fs::write("/sys/module/fuse/parameters/enable_uring", "Y")
        .expect("enabling FUSE over io_uring needs root and a kernel built with CONFIG_FUSE_IO_URING");
}

/// `on_both_transports!(name)` beside `fn name()` makes two tests of it, `name::dev` and
/// `name::uring`.
macro_rules! on_both_transports {
    ($name:ident) => {
        mod $name {
            #[test]
            fn dev() {
                crate::common::on_transport("dev", super::$name)
            }
            #[test]
            fn uring() {
                crate::common::on_transport("uring", super::$name)
            }
        }
    };
}
pub(crate) use on_both_transports;

/// Path of the `nanofs` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nanofs")
}

/// Runs `nanofs ARGS` and returns its output.
pub fn nanofs(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env_remove("NANOFS_PASSPHRASE").output().expect("nanofs runs")
}

/// Runs a shell command, panicking with its output if it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(script).output().expect("bash runs");
    assert!(
        out.status.success(),
        "command failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command; returns whether it succeeded (for commands expected to fail).
pub fn sh_status(script: &str) -> bool {
    Command::new("bash").arg("-c").arg(script).status().map(|s| s.success()).unwrap_or(false)
}

/// A volume created with `nanofs init` in its own temporary directory.
pub struct TestVolume {
    pub tmp: TempDir,
    pub dir: PathBuf,
    pub pass_file: PathBuf,
}

impl TestVolume {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("nanofs-it-").tempdir().expect("tempdir");
        let dir = tmp.path().join("vol");
        let pass_file = tmp.path().join("pass");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
        let out = nanofs(&["init", dir.to_str().unwrap(), "--passphrase-file", pass_file.to_str().unwrap()]);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        Self { tmp, dir, pass_file }
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Mounts in the foreground as a child process; returns when the mount is live.
    pub fn mount(&self) -> Mounted {
        self.mount_with(&[])
    }

    pub fn mount_with(&self, extra: &[&str]) -> Mounted {
        self.mount_with_env(extra, &[])
    }

    /// Mounts with extra arguments and environment variables for the daemon.
    pub fn mount_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Mounted {
        let mnt = tempfile::Builder::new().prefix("nanofs-mnt-").tempdir().expect("tempdir");
        let log = self.tmp.path().join(format!("daemon-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(bin())
            .args(["mount", self.path(), mnt.path().to_str().unwrap(), "--foreground"])
            .args(["--passphrase-file", self.pass_file.to_str().unwrap()])
            .args(["-o", &format!("transport={}", TRANSPORT.get())])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("nanofs mount starts");
        let mut m = Mounted { child: Some(child), path: mnt.path().to_path_buf(), log, mnt: Some(mnt) };
        m.wait_until_mounted();
        m
    }

    /// Runs `nanofs ARGS --passphrase-file F` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--passphrase-file", self.pass_file.to_str().unwrap()]);
        nanofs(&all)
    }

    /// `run`, asserting success; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "nanofs {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// Runs `nanofs check` (with `extra` flags, such as `--read-data`) and asserts that it
    /// finds the volume clean.
    pub fn assert_clean(&self, extra: &[&str]) {
        let report = self.run_ok(&[&["check", self.path()][..], extra].concat());
        assert!(report.contains("clean"), "{report}");
    }

    /// `nanofs stats --json`, parsed.
    pub fn stats(&self) -> serde_json::Value {
        let out = nanofs(&["stats", self.path(), "--json"]);
        assert!(out.status.success(), "stats failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("stats prints JSON")
    }

    pub fn stat_u64(&self, key: &str) -> u64 {
        self.stats()[key].as_u64().unwrap_or_else(|| panic!("stats has no {key}"))
    }
}

/// Whether a nanofs file system is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_str().unwrap();
    table.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4) == Some(&p) && l.contains(" - fuse.nanofs ")
    })
}

/// A live mount; unmounted and its daemon reaped on drop.
pub struct Mounted {
    child: Option<Child>,
    pub path: PathBuf,
    pub log: PathBuf,
    mnt: Option<TempDir>,
}

impl Mounted {
    fn wait_until_mounted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&self.path) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nanofs mount exited with {status} before mounting:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "mount did not appear in 60 s:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Unmounts cleanly and checks that the daemon exits with success.
    pub fn unmount(mut self) {
        // Another test thread that forks between our close and this unmount holds a copy of
        // our descriptors until it execs: the mount is briefly busy. Retry a little.
        let mut tries = 0;
        let out = loop {
            let out = Command::new("fusermount3").arg("-u").arg(&self.path).output().unwrap();
            let busy = String::from_utf8_lossy(&out.stderr).contains("busy");
            if out.status.success() || !busy || tries == 50 {
                break out;
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(out.status.success(), "fusermount3 -u failed: {}", String::from_utf8_lossy(&out.stderr));
        let status = self.wait_child(Duration::from_secs(120)).expect("daemon exits after unmount");
        assert!(status.success(), "daemon exited with {status}:\n{}", self.log_text());
    }

    /// Kills the daemon with SIGKILL and removes the dead mount.
    pub fn kill9(mut self) {
        let child = self.child.as_mut().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        let _ = child.wait();
        self.child = None;
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.path).output();
    }

    /// Waits until the daemon dies by a signal (an injected crash) and removes the dead mount.
    /// `what` names the step for the failure message, which also shows the daemon's log.
    pub fn expect_crash(mut self, what: &str) {
        let Some(status) = self.wait_child(Duration::from_secs(120)) else {
            panic!("{what}: the daemon did not crash within 120 s; its log:\n{}", self.log_text());
        };
        assert!(std::os::unix::process::ExitStatusExt::signal(&status).is_some(), "daemon exited with {status}");
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.path).output();
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn wait_child(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(s) = child.try_wait().ok()? {
                self.child = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.is_some() {
            if Command::new("fusermount3")
                .arg("-u")
                .arg(&self.path)
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.path).output();
            }
            if self.wait_child(Duration::from_secs(60)).is_none() {
                if let Some(c) = self.child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        if is_mounted(&self.path) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.path).output();
        }
    }
}

/// Writes `len` pseudo-random bytes (`random_file_parts`) to `path` (bounded memory).
pub fn write_random_file(path: &Path, seed: u64, len: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for part in random_file_parts(seed, len) {
        f.write_all(&part).unwrap();
    }
    f.flush().unwrap();
}

/// SHA-256 of a file, via sha256sum.
pub fn sha256(path: &Path) -> String {
    sh(&format!("sha256sum '{}'", path.display())).split_whitespace().next().unwrap().to_string()
}

/// A tmpfs of `size` (such as "400m") mounted in a temporary directory and lazily unmounted
/// on drop: a small disk to fill.
pub struct SmallDisk {
    pub path: PathBuf,
    _outer: TempDir,
}

impl SmallDisk {
    pub fn new(size: &str) -> Self {
        let outer = tempfile::tempdir().unwrap();
        let path = outer.path().join("small");
        std::fs::create_dir(&path).unwrap();
        sh(&format!("mount -t tmpfs -o size={size} nanofs-small '{}'", path.display()));
        Self { path, _outer: outer }
    }

    /// A volume made with `nanofs init` on this disk (passphrase file beside it).
    pub fn volume(&self) -> TestVolume {
        let pass_file = self.path.join("pass");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
        let dir = self.path.join("vol");
        let out = nanofs(&["init", dir.to_str().unwrap(), "--passphrase-file", pass_file.to_str().unwrap()]);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        TestVolume { tmp: tempfile::tempdir().unwrap(), dir, pass_file }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

pub mod lazyfs;

impl TestVolume {
    /// A volume made with `nanofs init` at `dir` (which may lie on another file system),
    /// with its passphrase file and the daemon's logs in a temporary directory.
    pub fn init_at(dir: &Path) -> Self {
        let tmp = tempfile::Builder::new().prefix("nanofs-it-").tempdir().expect("tempdir");
        let pass_file = tmp.path().join("pass");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
        let out = nanofs(&["init", dir.to_str().unwrap(), "--passphrase-file", pass_file.to_str().unwrap()]);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        Self { tmp, dir: dir.to_path_buf(), pass_file }
    }

    /// The same volume found at `dir` (such as the disk under a file system it was made on).
    pub fn moved_to(&self, dir: &Path) -> Self {
        let tmp = tempfile::Builder::new().prefix("nanofs-it-").tempdir().expect("tempdir");
        let pass_file = tmp.path().join("pass");
        std::fs::copy(&self.pass_file, &pass_file).unwrap();
        Self { tmp, dir: dir.to_path_buf(), pass_file }
    }
}
