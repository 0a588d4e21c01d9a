//! Recording a live stream into its directory as an MP4 file: the CMAF init segment and
//! every part, as the packager makes them (a fragmented MP4 plays like any MP4).
//!
//! The file grows in the hidden `/.live` directory, synced every few seconds, and moves
//! into the stream's directory when the stream ends, where it becomes a gallery item with
//! its event and is chunked and deduplicated like any file. After a crash, what was synced
//! is moved into place at the next start (`recover`).

use crate::ids::Ino;
use crate::volume::{Kind, RenameMode, Volume};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hidden directory where recordings grow.
pub const LIVE_NAME: &[u8] = b".live";
const LIVE_KEY: &[u8] = b"live-recordings-dir";
/// Longest time written bytes stay unsynced.
const SYNC_EVERY: Duration = Duration::from_secs(5);
/// Between the time and the stream's name in a growing recording's name (no stream name
/// has it).
const SEPARATOR: char = '+';

/// A recording in progress; dropping it (or `finish`) ends it.
pub struct Recorder {
    tx: Option<mpsc::Sender<Arc<[u8]>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `2026-12-05T21-10-00Z`: a time for file names (no colons).
fn stamp() -> String {
    crate::utc::rfc3339(crate::gallery::now()).replace(':', "-")
}

/// Registers the hidden directory; call once per volume before recording.
pub fn register(vol: &Volume) {
    vol.register_hidden(LIVE_NAME, LIVE_KEY);
}

impl Recorder {
    /// Starts recording stream `name` into the directory at volume path `dir`.
    pub fn start(vol: Arc<Volume>, name: &str, dir: String) -> crate::volume::Result<Self> {
        let staging = vol.hidden_dir_or_create(LIVE_NAME)?;
        let file = format!("{}{SEPARATOR}{name}.mp4", stamp());
        let ino = vol.create(staging, file.as_bytes(), Kind::File, 0o644, 0, 0, 0)?.ino;
        let h = vol.open_file(ino, true)?;
        let (tx, rx) = mpsc::channel::<Arc<[u8]>>();
        let name = name.to_string();
        let thread = std::thread::Builder::new().name("live-record".into()).spawn(move || {
            let mut at = 0u64;
            let mut synced = Instant::now();
            let mut failed = false;
            for bytes in rx {
                if failed {
                    continue;
                }
                if let Err(e) = vol.write(ino, at, &bytes, false, false) {
                    // A full disk keeps what was written; the rest of the stream is not recorded.
                    tracing::error!(stream = %name, error = %e, "recording stopped");
                    failed = true;
                    continue;
                }
                at += bytes.len() as u64;
                if synced.elapsed() >= SYNC_EVERY {
                    if let Err(e) = vol.fsync(ino, Some(h)) {
                        tracing::error!(stream = %name, error = %e, "recording stopped");
                        failed = true;
                    }
                    synced = Instant::now();
                }
            }
            let _ = vol.fsync(ino, Some(h));
            let _ = vol.release(ino, h);
            match place(&vol, staging, &file, &name, &dir) {
                Ok(path) => tracing::info!(stream = %name, %path, bytes = at, "recording saved"),
                Err(e) => tracing::error!(stream = %name, error = %e, "the recording stays in /.live"),
            }
        });
        match thread {
            Ok(t) => Ok(Self { tx: Some(tx), thread: Some(t) }),
            Err(e) => Err(crate::volume::Error::Io(e)),
        }
    }

    /// Appends bytes (in the order given).
    pub fn write(&self, bytes: Arc<[u8]>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(bytes);
        }
    }

    /// Ends the recording and waits until it is in place.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.end();
    }
}

/// Moves the recording `file` of stream `name` from the staging directory into `dir` as
/// `NAME-TIME.mp4` (another free name if taken); returns its volume path.
fn place(vol: &Volume, staging: Ino, file: &str, name: &str, dir: &str) -> crate::volume::Result<String> {
    let target = vol.resolve(dir)?;
    let time = file.split(SEPARATOR).next().unwrap_or_default();
    let mut n = 1;
    loop {
        let candidate = if n == 1 { format!("{name}-{time}.mp4") } else { format!("{name}-{time} ({n}).mp4") };
        match vol.rename(staging, file.as_bytes(), target, candidate.as_bytes(), RenameMode::NoReplace) {
            Ok(()) => return Ok(format!("{}/{candidate}", dir.trim_end_matches('/'))),
            Err(crate::volume::Error::Exists) if n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Moves recordings left by a crash into their streams' directories (`dir_of(name)`);
/// those of streams that are gone stay in `/.live`. Returns how many moved.
pub fn recover(vol: &Volume, dir_of: impl Fn(&str) -> Option<String>) -> crate::volume::Result<usize> {
    let Some(staging) = vol.hidden_dir(LIVE_NAME)? else { return Ok(0) };
    let mut moved = 0;
    for entry in vol.dir_entries(staging)? {
        let file = String::from_utf8_lossy(&entry.name).into_owned();
        let Some(name) = file.split_once(SEPARATOR).and_then(|(_, rest)| rest.strip_suffix(".mp4")) else { continue };
        let Some(dir) = dir_of(name) else {
            tracing::warn!(%file, "a recording of a stream that no longer exists stays in /.live");
            continue;
        };
        match place(vol, staging, &file, name, &dir) {
            Ok(path) => {
                tracing::info!(%path, "a recording cut short by a stop was saved");
                moved += 1;
            }
            Err(e) => tracing::error!(%file, error = %e, "a recording cut short stays in /.live"),
        }
    }
    Ok(moved)
}
