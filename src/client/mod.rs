//! The transfer client behind `nanofs push` and `nanofs pull`: parallel, resumable,
//! retrying transfers against the HTTP sidecar, with a progress bar, a checksum on every
//! uploaded piece and verification against the server's fingerprint (`Repr-Digest`). It
//! speaks only HTTP: tus uploads (parts in parallel, joined by concatenation) and ranged
//! downloads.

mod delta;
mod http;
mod journal;
pub mod pull;
pub mod push;

pub use http::{Remote, Retry};

use std::time::Duration;

/// How transfers run; defaults from `[media.chunking]`, flags override.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes per request (a PATCH or a ranged GET).
    pub part_size: u64,
    /// Connections used at once (1 to 16).
    pub connections: usize,
    /// Retries of one request before the transfer fails.
    pub max_retries: u32,
    /// Resume an interrupted transfer from its journal.
    pub resume: bool,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Push only the chunks a base file on the server lacks (when there is one).
    pub delta: bool,
    /// The base file of a delta push (default: the target itself).
    pub base: Option<String>,
    /// The volume's FastCDC sizes in KiB, for delta manifests.
    pub cdc_kib: [u32; 3],
    /// The volume's chunker key (hex), for delta manifests of a volume with keyed boundaries.
    pub chunker_key: Option<String>,
    /// Compare each whole file with the server's fingerprint at the end, even when the
    /// server must read the file for it. Without it a push relies on the checksum of every
    /// PATCH, and a pull checks the fingerprint when the server already has it.
    pub verify: bool,
}

impl Settings {
    /// Settings from a volume configuration's `[media.chunking]`.
    #[must_use]
    pub fn from_config(c: &crate::config::Chunking, cdc_kib: [u32; 3]) -> Self {
        Self {
            part_size: u64::from(c.chunk_size_mb) << 20,
            connections: c.parallel_chunks as usize,
            max_retries: c.max_retries,
            resume: c.enable_resume,
            progress: true,
            delta: true,
            base: None,
            cdc_kib,
            chunker_key: None,
            verify: false,
        }
    }
}

/// What a transfer did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Files transferred.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Bytes that went over the wire (resumed transfers skip what arrived before).
    pub sent: u64,
    /// Requests retried.
    pub retries: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Summary {
    /// The summary of `files` (their sizes) moved by `remote`, `sent` bytes of them now.
    fn of(files: &[u64], sent: &std::sync::atomic::AtomicU64, remote: &Remote, started: std::time::Instant) -> Self {
        use std::sync::atomic::Ordering;
        Self {
            files: files.len() as u64,
            bytes: files.iter().sum(),
            sent: sent.load(Ordering::Relaxed),
            retries: remote.retries.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        write!(
            f,
            "{} files, {} bytes ({} transferred now) in {:.1} s, {:.1} MB/s, {} retries",
            self.files,
            self.bytes,
            self.sent,
            secs,
            self.sent as f64 / secs / 1e6,
            self.retries
        )
    }
}

/// RFC 9530's headers, and the sidecar's key for its fingerprint in them (the wire's
/// names: this client speaks only HTTP).
const REPR_DIGEST: &str = "repr-digest";
const WANT_REPR_DIGEST: &str = "want-repr-digest";
const FINGERPRINT_ALGORITHM: &str = "blake2b-256";

/// `Want-Repr-Digest` asking for the fingerprint.
fn want_fingerprint() -> (&'static str, String) {
    (WANT_REPR_DIGEST, format!("{FINGERPRINT_ALGORITHM}=1"))
}

/// The fingerprint (hex) in an answer's `Repr-Digest`, if it has one.
fn repr_fingerprint(r: &http::Response) -> Option<String> {
    let value = http::header(r, REPR_DIGEST)?;
    value.split(',').find_map(|item| {
        let (key, b64) = item.trim().split_once('=')?;
        let b64 = b64.strip_prefix(':')?.strip_suffix(':')?;
        (key == FINGERPRINT_ALGORITHM)
            .then(|| <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64).ok())
            .flatten()
            .map(|bytes| crate::ids::hex(&bytes))
    })
}

/// Unkeyed BLAKE2b-256 of a local file, hex: the sidecar's fingerprint (`Repr-Digest`).
pub fn file_fingerprint(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        state.update(&buf[..n]);
    }
    Ok(crate::ids::hex(state.finalize().as_bytes()))
}

/// A progress bar over `total` bytes: drawn on a terminal, plain lines otherwise.
fn progress(total: u64, what: &str, show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
