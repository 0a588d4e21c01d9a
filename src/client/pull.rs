//! `nanofs pull URL LOCAL`: ranged downloads over parallel connections into
//! `LOCAL.nanofs-part`, with a journal of the finished parts beside it
//! (`LOCAL.nanofs-pull`), so running the command again fetches only what is missing. Each
//! range is conditional on the ETag (`If-Range`): a file that changed meanwhile is noticed,
//! never stitched together from two versions. The result is verified against the ETag,
//! then renamed into place.

use super::http::{check, header, Remote, Retry};
use super::{journal, progress, Settings, Summary};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PullJournal {
    etag: String,
    size: u64,
    part_size: u64,
    done: BTreeSet<u64>,
}

/// Percent-encodes a volume path for a URL (keeps `/`).
#[must_use]
pub fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pulls the file or tree at volume path `source` into `local`.
pub fn pull(source: &str, local: &Path, remote: &Remote, s: &Settings) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut files = Vec::new();
    collect(remote, source, local, &mut files)?;
    let total: u64 = files.iter().map(|f| f.2).sum();
    let bar = progress(total, "pull", s.progress);
    let sent = AtomicU64::new(0);
    for (src, dst, _) in &files {
        pull_file(remote, src, dst, s, &bar, &sent)?;
        if bar.is_hidden() && s.progress {
            eprintln!("pulled {src} -> {}", dst.display());
        }
    }
    bar.finish_and_clear();
    let sizes: Vec<u64> = files.iter().map(|f| f.2).collect();
    Ok(Summary::of(&sizes, &sent, remote, started))
}

/// The files under `source` (itself if it is a file) with their local paths and sizes.
fn collect(remote: &Remote, source: &str, local: &Path, out: &mut Vec<(String, PathBuf, u64)>) -> anyhow::Result<()> {
    let mut after: Option<u64> = None;
    loop {
        let url = format!(
            "{}/files{}?list{}",
            remote.base,
            encode_path(source),
            after.map(|a| format!("&after={a}")).unwrap_or_default()
        );
        let listing = remote.retrying("listing", || {
            let r = remote.agent().get(&url).header("Authorization", remote.auth()).call()?;
            if r.status().as_u16() == 400 {
                return Ok(None); // a file
            }
            let mut r = check(r, "listing")?;
            let text = r.body_mut().read_to_string().map_err(|e| Retry::Again(e.to_string(), None))?;
            serde_json::from_str::<serde_json::Value>(&text).map(Some).map_err(|e| Retry::Fatal(e.to_string()))
        })?;
        let Some(listing) = listing else {
            let size = head(remote, source, false)?.size;
            out.push((source.to_string(), local.to_path_buf(), size));
            return Ok(());
        };
        std::fs::create_dir_all(local)?;
        for e in listing["entries"].as_array().cloned().unwrap_or_default() {
            let name = e["name"].as_str().context("entry without a name")?;
            if name.contains('/') || name == ".." || name == "." {
                bail!("the server listed a bad name {name:?}");
            }
            let child = format!("{}/{name}", source.trim_end_matches('/'));
            match e["kind"].as_str() {
                Some("dir") => collect(remote, &child, &local.join(name), out)?,
                Some("file") => out.push((child, local.join(name), e["size"].as_u64().unwrap_or(0))),
                _ => {}
            }
        }
        match listing["next"].as_u64() {
            Some(n) => after = Some(n),
            None => return Ok(()),
        }
    }
}

/// What a `HEAD` says of a file.
struct Head {
    etag: String,
    size: u64,
    /// Its fingerprint, when the server knows it or was asked for it.
    fingerprint: Option<String>,
}

/// A `HEAD` of a file, asking for its fingerprint when `want_fingerprint`.
fn head(remote: &Remote, source: &str, want_fingerprint: bool) -> anyhow::Result<Head> {
    let url = format!("{}/files{}", remote.base, encode_path(source));
    remote.retrying("HEAD", || {
        let mut req = remote.agent().head(&url).header("Authorization", remote.auth());
        if want_fingerprint {
            let (name, value) = super::want_fingerprint();
            req = req.header(name, value);
        }
        let r = check(req.call()?, "HEAD")?;
        Ok(Head {
            etag: header(&r, "etag").unwrap_or_default(),
            size: header(&r, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0),
            fingerprint: super::repr_fingerprint(&r),
        })
    })
}

fn pull_file(
    remote: &Remote,
    source: &str,
    local: &Path,
    s: &Settings,
    bar: &indicatif::ProgressBar,
    sent: &AtomicU64,
) -> anyhow::Result<()> {
    let Head { etag, size, fingerprint } = head(remote, source, s.verify)?;
    let part_path = PathBuf::from(format!("{}.nanofs-part", local.display()));
    let jpath = PathBuf::from(format!("{}.nanofs-pull", local.display()));
    if let Some(dir) = local.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let j = match s.resume.then(|| journal::load::<PullJournal>(&jpath)).flatten() {
        Some(j) if j.etag == etag && j.size == size && part_path.exists() => j,
        _ => {
            let f = std::fs::File::create(&part_path)?;
            f.set_len(size)?;
            PullJournal { etag: etag.clone(), size, part_size: s.part_size.max(1), done: BTreeSet::new() }
        }
    };
    let parts = size.div_ceil(j.part_size);
    bar.inc(j.done.iter().map(|i| (j.part_size).min(size - i * j.part_size)).sum());
    let todo: Mutex<Vec<u64>> = Mutex::new((0..parts).filter(|i| !j.done.contains(i)).rev().collect());
    let journal_state = Mutex::new(j);
    let file = std::fs::OpenOptions::new().write(true).open(&part_path)?;
    let url = format!("{}/files{}", remote.base, encode_path(source));
    let in_order = fingerprint.is_some().then(|| Mutex::new(InOrderHash::new()));
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.connections.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let Some(i) = todo.lock().expect("queue").pop() else { return Ok(()) };
                        let part_size = journal_state.lock().expect("journal").part_size;
                        let start = i * part_size;
                        let end = (start + part_size).min(size);
                        fetch_range(remote, &url, &etag, &file, (start, end), in_order.as_ref(), bar, sent)?;
                        let mut j = journal_state.lock().expect("journal");
                        j.done.insert(i);
                        journal::save(&jpath, &*j)?;
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))).collect()
    });
    for r in results {
        r?;
    }
    file.sync_all()?;
    // Checked when the server knew the fingerprint already, or `--verify` asked for it.
    if let Some(theirs) = fingerprint {
        let ours = match in_order.and_then(|h| h.into_inner().expect("hash").finish(size)) {
            Some(hex) => hex,
            None => super::file_fingerprint(&part_path)?,
        };
        if ours != theirs {
            journal::remove(&jpath);
            bail!("{source}: the downloaded bytes do not match the server's fingerprint; run again");
        }
    }
    std::fs::rename(&part_path, local)?;
    journal::remove(&jpath);
    Ok(())
}

/// The fingerprint of a download hashed as its bytes arrive, as long as they arrive in
/// order (one connection, from the start); else the file is hashed once complete. The
/// hashing runs on a thread of its own, beside the one receiving.
struct InOrderHash {
    /// The offset up to which the bytes are handed to the hasher.
    next: u64,
    pieces: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    hasher: std::thread::JoinHandle<blake2b_simd::Hash>,
}

impl InOrderHash {
    fn new() -> Self {
        let (pieces, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let hasher = std::thread::spawn(move || {
            let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
            for piece in rx {
                state.update(&piece);
            }
            state.finalize()
        });
        Self { next: 0, pieces: Some(pieces), hasher }
    }

    fn add(&mut self, at: u64, bytes: &[u8]) {
        if at == self.next && self.pieces.as_ref().is_some_and(|p| p.send(bytes.to_vec()).is_ok()) {
            self.next += bytes.len() as u64;
        }
    }

    /// The hex fingerprint of the first `size` bytes, if all of them were hashed.
    fn finish(mut self, size: u64) -> Option<String> {
        drop(self.pieces.take());
        let hash = self.hasher.join().ok()?;
        (self.next == size).then(|| crate::ids::hex(hash.as_bytes()))
    }
}

/// Fetches `[start, end)` into `file`, resuming within the range after a broken connection.
#[allow(clippy::too_many_arguments)]
fn fetch_range(
    remote: &Remote,
    url: &str,
    etag: &str,
    file: &std::fs::File,
    (start, end): (u64, u64),
    in_order: Option<&Mutex<InOrderHash>>,
    bar: &indicatif::ProgressBar,
    sent: &AtomicU64,
) -> anyhow::Result<()> {
    let mut at = start;
    remote.retrying("downloading a range", || {
        if at >= end {
            return Ok(());
        }
        let r = remote
            .agent()
            .get(url)
            .header("Authorization", remote.auth())
            .header("Range", format!("bytes={at}-{}", end - 1))
            .header("If-Range", etag)
            .call()?;
        let mut r = check(r, "ranged GET")?;
        if r.status().as_u16() != 206 {
            return Err(Retry::Fatal("the file changed on the server during the download; run again".into()));
        }
        let mut reader = r.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 20];
        while at < end {
            let n = reader.read(&mut buf).map_err(|e| Retry::Again(e.to_string(), None))?;
            if n == 0 {
                return Err(Retry::Again("connection closed early".into(), None));
            }
            let n = n.min((end - at) as usize);
            file.write_all_at(&buf[..n], at)?;
            if let Some(h) = in_order {
                h.lock().expect("hash").add(at, &buf[..n]);
            }
            at += n as u64;
            bar.inc(n as u64);
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    })
}
