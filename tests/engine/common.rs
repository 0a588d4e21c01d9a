//! Helpers of the engine tests: whole files in and out of a `Volume`, a check that must be
//! clean, galleries over a volume directory, and the log lines of a call.

#![allow(dead_code)]

pub use crate::support::*;
use nanofs::gallery::Galleries;
use nanofs::volume::{Credential, Kind, OpenOptions, Volume};
use nanofs::Ino;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Creates file `name` in `parent`, writes `data` as one open file (in 1 MiB writes, as a
/// mount would send them) and closes it; returns its inode.
pub fn write_file(vol: &Volume, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let ino = vol.create(parent, name.as_bytes(), Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let h = vol.open_file(ino, true).unwrap();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        vol.write(ino, (i as u64) << 20, piece, false, false).unwrap();
    }
    vol.release(ino, h).unwrap();
    ino
}

/// `write_file` of `random_file_parts(seed, len)`, without holding the whole file.
pub fn write_random(vol: &Volume, parent: Ino, name: &str, seed: u64, len: usize) -> Ino {
    let ino = vol.create(parent, name.as_bytes(), Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let h = vol.open_file(ino, true).unwrap();
    let mut at = 0u64;
    for part in random_file_parts(seed, len) {
        for piece in part.chunks(1 << 20) {
            vol.write(ino, at, piece, false, false).unwrap();
            at += piece.len() as u64;
        }
    }
    vol.release(ino, h).unwrap();
    ino
}

/// Whether file `ino` holds exactly `random_file_parts(seed, len)`.
pub fn holds_random(vol: &Volume, ino: Ino, seed: u64, len: usize) -> bool {
    if vol.getattr(ino).unwrap().inode.size != len as u64 {
        return false;
    }
    let mut at = 0u64;
    random_file_parts(seed, len).all(|part| {
        let got = read_range(vol, ino, at, part.len());
        at += part.len() as u64;
        got == part
    })
}

/// `len` bytes of `ino` from `offset` (fewer at the end of the file).
pub fn read_range(vol: &Volume, ino: Ino, offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let want = (len - out.len()).min(1 << 20) as u32;
        let part = vol.read(ino, offset + out.len() as u64, want).unwrap();
        if part.is_empty() {
            break;
        }
        out.extend_from_slice(&part);
    }
    out
}

/// The whole content of file `ino`.
pub fn read_all(vol: &Volume, ino: Ino) -> Vec<u8> {
    let size = vol.getattr(ino).unwrap().inode.size;
    let out = read_range(vol, ino, 0, size as usize);
    assert_eq!(out.len() as u64, size, "short read");
    out
}

/// The inode at `path` (from the root, `/`-separated).
pub fn ino_of(vol: &Volume, path: &str) -> Ino {
    vol.resolve(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Asserts that `check` (reading every chunk when `read_data`) finds nothing wrong.
pub fn assert_clean(vol: &Volume, read_data: bool) {
    let report = vol.check(read_data, false, &|_, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// Closes `vol` (a clean shutdown) and opens it again with the test passphrase.
pub fn reopen(vol: Volume, dir: &Path) -> Volume {
    vol.close().unwrap();
    drop(vol);
    open_engine_volume(dir)
}

/// The galleries of the volume in `dir` (made by `engine_volume` or `Volume::init` with
/// `ENGINE_PASSPHRASE`), opened as the daemon opens them.
pub fn open_galleries(dir: &Path) -> Arc<Galleries> {
    let keys = Volume::unlock(dir, &Credential::Passphrase(ENGINE_PASSPHRASE.to_vec().into())).unwrap();
    Galleries::open(Arc::new(Volume::open(dir, keys, &OpenOptions::default()).unwrap())).unwrap()
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn subscriber(sink: Sink) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).finish()
}

/// Where the log lines of threads other than a test's own go (the engine's read-ahead
/// and commit workers): one sink for the whole binary, installed on first use.
fn shared_sink() -> &'static Sink {
    static SHARED: std::sync::OnceLock<Sink> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let sink = Sink::default();
        tracing::subscriber::set_global_default(subscriber(sink.clone())).expect("no other global subscriber");
        sink
    })
}

/// Runs `f` and returns what it returned with the log lines written meanwhile: all those
/// of this thread, and those of other threads (which may include other tests' lines, so
/// look for something of the test's own, such as a chunk id).
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let shared = shared_sink();
    let start = shared.0.lock().unwrap().len();
    let own = Sink::default();
    let out = tracing::subscriber::with_default(subscriber(own.clone()), f);
    let mut text = String::from_utf8_lossy(&own.0.lock().unwrap()).into_owned();
    text.push_str(&String::from_utf8_lossy(&shared.0.lock().unwrap()[start..]));
    (out, text)
}
