//! `nanofs push LOCAL URL`: tus uploads. A large file is split into as many contiguous
//! parts as there are connections, each a partial upload sent in PATCHes of the part size
//! (longer over fewer than four connections: `patch_size`),
//! then joined by a final concatenation (the sidecar joins extents, no bytes are copied).
//! The upload URLs are kept in a journal, so running the same command again resumes each
//! part from the offset the server reports. Every PATCH carries its CRC-32C
//! (`Upload-Checksum`), which the server checks before it keeps the piece: damage in
//! transit is caught at memory speed, as S3 and GCS check uploads; `--verify` also compares
//! the whole file with the server's fingerprint (BLAKE2b) at the end.

use super::http::{check, header, Remote, Retry};
use super::{journal, progress, Settings, Summary};
use anyhow::{bail, Context};
use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    start: u64,
    len: u64,
    url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    target: String,
    size: u64,
    parts: Vec<Part>,
}

/// Pushes a file or a tree to `target` (a volume path) on `remote`.
pub fn push(local: &Path, target: &str, remote: &Remote, s: &Settings) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let meta = std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
    let mut files: Vec<(PathBuf, String, u64)> = Vec::new();
    if meta.is_dir() {
        walk(local, local, target, &mut files)?;
    } else {
        let target = if target.ends_with('/') {
            format!("{target}{}", local.file_name().and_then(|n| n.to_str()).context("file name is not UTF-8")?)
        } else {
            target.to_string()
        };
        files.push((local.to_path_buf(), target, meta.len()));
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    let bar = progress(total, "push", s.progress);
    let sent = AtomicU64::new(0);
    for (path, target, size) in &files {
        let job = Job { local: path, target, size: *size, remote, s, bar: &bar, sent: &sent };
        job.run()?;
        if bar.is_hidden() && s.progress {
            eprintln!("pushed {} -> {target} ({size} bytes)", path.display());
        }
    }
    bar.finish_and_clear();
    let sizes: Vec<u64> = files.iter().map(|f| f.2).collect();
    Ok(Summary::of(&sizes, &sent, remote, started))
}

fn walk(root: &Path, dir: &Path, target: &str, out: &mut Vec<(PathBuf, String, u64)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(root, &path, target, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).expect("under root").to_str().context("file names must be UTF-8")?;
            out.push((path.clone(), format!("{}/{rel}", target.trim_end_matches('/')), e.metadata()?.len()));
        }
    }
    Ok(())
}

fn journal_path(local: &Path, base: &str, target: &str, size: u64) -> anyhow::Result<PathBuf> {
    let abs = std::fs::canonicalize(local)?;
    let mtime = std::fs::metadata(local)?.modified()?.duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let key = format!("{}\0{base}\0{target}\0{size}\0{mtime}", abs.display());
    let h = blake2b_simd::Params::new().hash_length(16).hash(key.as_bytes());
    Ok(journal::push_dir().join(format!("{}.json", crate::ids::hex(h.as_bytes()))))
}

/// One file to push.
struct Job<'a> {
    local: &'a Path,
    target: &'a str,
    size: u64,
    remote: &'a Remote,
    s: &'a Settings,
    bar: &'a indicatif::ProgressBar,
    sent: &'a AtomicU64,
}

impl Job<'_> {
    fn run(&self) -> anyhow::Result<()> {
        let jpath = journal_path(self.local, &self.remote.base, self.target, self.size)?;
        // A delta needs a base and pays only for files of a few chunks or more; an upload
        // already under way is finished as it began.
        if self.s.delta && self.size >= 1 << 20 && !(self.s.resume && jpath.exists()) {
            let (s, base) = (self.s, self.s.base.as_deref());
            // Each chunk of a delta is checked against its hash as it arrives.
            if super::delta::push(self.remote, self.local, self.target, base, s.cdc_kib, s, self.bar, self.sent)?
                .is_some()
            {
                return self.verify();
            }
        }
        let resumed = match self.s.resume.then(|| journal::load::<Plan>(&jpath)).flatten() {
            Some(p) if p.size == self.size && p.target == self.target => Some(p),
            _ => None,
        };
        let had_journal = resumed.is_some();
        match self.push_with_plan(&jpath, resumed) {
            // The uploads of an old journal expired or finished meanwhile: start over.
            Err(e) if had_journal && e.to_string().contains("HTTP 404") => {
                tracing::warn!(error = %e, "the uploads of the journal are gone; starting over");
                journal::remove(&jpath);
                self.push_with_plan(&jpath, None)
            }
            other => other,
        }
    }

    fn push_with_plan(&self, jpath: &Path, resumed: Option<Plan>) -> anyhow::Result<()> {
        let (remote, target) = (self.remote, self.target);
        let mut plan = resumed.unwrap_or_else(|| new_plan(target, self.size, self.s));
        let concat = plan.parts.len() > 1;
        // Create the uploads that do not exist yet; remember each at once.
        for i in 0..plan.parts.len() {
            if plan.parts[i].url.is_none() {
                plan.parts[i].url = Some(create(remote, target, plan.parts[i].len, concat, self.s.verify)?);
                journal::save(jpath, &plan)?;
            }
        }
        let file = std::fs::File::open(self.local)?;
        let patch = patch_size(self.s.part_size, plan.parts.len());
        let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = plan
                .parts
                .iter()
                .map(|part| scope.spawn(|| send_part(remote, &file, part, patch, self.bar, self.sent)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked"))))
                .collect()
        });
        for r in results {
            r?;
        }
        if concat {
            let urls: Vec<String> = plan.parts.iter().map(|p| path_of(p.url.as_deref().expect("created"))).collect();
            remote.retrying("joining the parts", || {
                let r = remote
                    .agent()
                    .post(format!("{}/uploads", remote.base))
                    .header("Tus-Resumable", "1.0.0")
                    .header("Authorization", remote.auth())
                    .header("Upload-Concat", format!("final;{}", urls.join(" ")))
                    .header("Upload-Metadata", metadata(target))
                    .send_empty()?;
                check(r, "final concatenation").map(|_| ())
            })?;
        }
        journal::remove(jpath);
        self.verify()
    }

    /// With `--verify`, compares the server's fingerprint of the file with the local one's.
    fn verify(&self) -> anyhow::Result<()> {
        if !self.s.verify {
            return Ok(());
        }
        let url = format!("{}/files{}", self.remote.base, super::pull::encode_path(self.target));
        let want = super::want_fingerprint();
        let theirs = self.remote.retrying("verifying", || {
            let r = self
                .remote
                .agent()
                .head(&url)
                .header("Authorization", self.remote.auth())
                .header(want.0, &want.1)
                .call()?;
            let r = check(r, "HEAD of the pushed file")?;
            super::repr_fingerprint(&r).ok_or_else(|| Retry::Fatal("the server sent no fingerprint".into()))
        })?;
        let ours = super::file_fingerprint(self.local)?;
        if theirs != ours {
            bail!("{}: the server's fingerprint {theirs} differs from the local file's {ours}", self.target);
        }
        Ok(())
    }
}

/// The smallest range of a file that gets a connection of its own.
const MIN_RANGE: u64 = 8 << 20;

/// Connections whose PATCHes of the part size have as many bytes in flight as a push
/// ever has.
const FULL_CONNECTIONS: u64 = 4;

/// The PATCH size of a push over `parts` connections: the part size, times
/// `FULL_CONNECTIONS / parts` with fewer. Each PATCH ends with a durable commit that the
/// next one on its connection waits for, so over one connection 64 MiB PATCHes go about
/// 1.2x faster than 16 MiB ones (docs/benchmarks.md, "2026-12-08"). A PATCH cut off is
/// sent again whole (its checksum cannot be checked), and what an interrupted push sends
/// again stays bounded by the bytes `FULL_CONNECTIONS` PATCHes of the part size carry.
fn patch_size(part_size: u64, parts: usize) -> u64 {
    part_size * (FULL_CONNECTIONS / (parts as u64).clamp(1, FULL_CONNECTIONS))
}

/// Splits a file into contiguous ranges of whole MiB (the last takes the rest), one per
/// connection, but none under `MIN_RANGE` (or the part size, if smaller): each is a
/// partial upload, sent in PATCHes of `patch_size`.
fn new_plan(target: &str, size: u64, s: &Settings) -> Plan {
    let min_range = MIN_RANGE.min(s.part_size).max(1);
    let n = (size / min_range).clamp(1, s.connections.max(1) as u64);
    let per = size.div_ceil(n).next_multiple_of(1 << 20);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < size || parts.is_empty() {
        let len = per.min(size - start);
        parts.push(Part { start, len, url: None });
        start += len;
        if len == 0 {
            break;
        }
    }
    Plan { target: target.to_string(), size, parts }
}

fn metadata(target: &str) -> String {
    format!("path {}", Base64::encode_string(target.as_bytes()))
}

/// The path part of an upload URL (`/uploads/<id>`).
fn path_of(url: &str) -> String {
    url.find("/uploads/").map_or_else(|| url.to_string(), |i| url[i..].to_string())
}

/// Creates an upload; `fingerprint`: asks the server to hash it as it arrives (for
/// `--verify`), so that comparing fingerprints at the end reads nothing back.
fn create(remote: &Remote, target: &str, len: u64, partial: bool, fingerprint: bool) -> anyhow::Result<String> {
    remote.retrying("creating the upload", || {
        let mut req = remote
            .agent()
            .post(format!("{}/uploads", remote.base))
            .header("Tus-Resumable", "1.0.0")
            .header("Authorization", remote.auth())
            .header("Upload-Length", len.to_string());
        req = if partial {
            req.header("Upload-Concat", "partial")
        } else {
            req.header("Upload-Metadata", metadata(target))
        };
        if fingerprint {
            let (name, value) = super::want_fingerprint();
            req = req.header(name, value);
        }
        let r = check(req.send_empty()?, "creating the upload")?;
        let loc = header(&r, "location").ok_or_else(|| Retry::Fatal("no Location in the answer".into()))?;
        Ok(format!("{}{}", remote.base, path_of(&loc)))
    })
}

/// Bytes a piece is read in, for its checksum and as it is sent: a push holds no piece in
/// memory, whatever the part size.
const READ_BUF: usize = 1 << 20;

/// A piece of a part, checksummed, ready to send.
struct Piece {
    /// Its offset in the part.
    at: u64,
    len: u64,
    /// Its `Upload-Checksum`: the server checks it before it keeps the piece.
    checksum: String,
}

impl Piece {
    /// Reads the piece once for its CRC-32C, which also brings it into the page cache for
    /// the send. A file changed between the two reads fails the server's check (460), and
    /// the piece is read again.
    fn checksummed(file: &std::fs::File, part_start: u64, at: u64, len: u64) -> std::io::Result<Self> {
        let mut buf = vec![0; READ_BUF.min(len as usize)];
        let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], part_start + at + done)?;
            crc.update(&buf[..n]);
            done += n as u64;
        }
        let checksum = format!("crc32c {}", Base64::encode_string(&(crc.finalize() as u32).to_be_bytes()));
        Ok(Self { at, len, checksum })
    }
}

/// A range of a file as a reader, for a request body.
struct FileRange<'a> {
    file: &'a std::fs::File,
    at: u64,
    end: u64,
}

impl std::io::Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.at).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file became shorter"));
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// 423 answers in a row a part waits out (1.6 s each after the first few): longer than the
/// sidecar's 30 s wait for a stalled body.
const MAX_LOCKED_WAITS: u32 = 30;

/// Sends one part from the offset the server has, in PATCHes of `piece_size` bytes.
fn send_part(
    remote: &Remote,
    file: &std::fs::File,
    part: &Part,
    piece_size: u64,
    bar: &indicatif::ProgressBar,
    sent: &AtomicU64,
) -> anyhow::Result<()> {
    let url = part.url.clone().expect("created");
    if part.len == 0 {
        return Ok(());
    }
    let mut offset = server_offset(remote, &url)?;
    bar.inc(offset);
    let mut ahead: Option<std::thread::JoinHandle<std::io::Result<Piece>>> = None;
    // 423 answers in a row.
    let mut locked = 0u32;
    while offset < part.len {
        let n = piece_size.min(part.len - offset);
        let piece = match ahead.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Ok(p))) if p.at == offset && p.len == n => p,
            _ => Piece::checksummed(file, part.start, offset, n)?,
        };
        // The next piece is read and checksummed while this one travels.
        if offset + n < part.len {
            let (f, start, next) = (file.try_clone()?, part.start, offset + n);
            let m = piece_size.min(part.len - next);
            ahead = Some(std::thread::spawn(move || Piece::checksummed(&f, start, next, m)));
        }
        let result = (|| -> Result<u64, Retry> {
            let from = part.start + offset;
            let mut body = FileRange { file, at: from, end: from + n };
            let r = remote
                .agent()
                .patch(&url)
                .header("Tus-Resumable", "1.0.0")
                .header("Authorization", remote.auth())
                .header("Content-Type", "application/offset+octet-stream")
                .header("Content-Length", n.to_string())
                .header("Upload-Offset", offset.to_string())
                .header("Upload-Checksum", &piece.checksum)
                .send(ureq::SendBody::from_reader(&mut body))?;
            let r = check(r, "sending a part")?;
            header(&r, "upload-offset")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Retry::Fatal("no Upload-Offset".into()))
        })();
        match result {
            Ok(new) => {
                locked = 0;
                bar.inc(new - offset);
                sent.fetch_add(new - offset, Ordering::Relaxed);
                offset = new;
            }
            // 409: another offset than ours; 460: the piece arrived damaged and was dropped;
            // 423: an earlier PATCH of ours, cut off (a sidecar restarted, a connection
            // broken), is still finishing on the server.
            Err(Retry::Fatal(m)) if !["HTTP 409", "HTTP 423", "HTTP 460"].iter().any(|s| m.contains(s)) => bail!("{m}"),
            Err(e) => {
                // Transient, or an offset conflict: ask the server where it stands (with
                // retries and backoff), then go on from there.
                let why = match e {
                    Retry::Again(m, _) | Retry::Fatal(m) => m,
                };
                if why.contains("HTTP 423") {
                    // The earlier PATCH ends within the server's idle timeout: wait, more each time.
                    locked += 1;
                    anyhow::ensure!(locked <= MAX_LOCKED_WAITS, "{why}");
                    std::thread::sleep(Duration::from_millis(100 << locked.min(4)));
                } else {
                    locked = 0;
                }
                tracing::warn!(error = %why, "part interrupted; resuming");
                remote.retries.fetch_add(1, Ordering::Relaxed);
                let before = offset;
                offset = server_offset(remote, &url)?;
                if offset >= before {
                    bar.inc(offset - before);
                }
            }
        }
    }
    Ok(())
}

fn server_offset(remote: &Remote, url: &str) -> anyhow::Result<u64> {
    remote.retrying("asking for the upload offset", || {
        let r =
            remote.agent().head(url).header("Tus-Resumable", "1.0.0").header("Authorization", remote.auth()).call()?;
        let r = check(r, "HEAD of the upload")?;
        header(&r, "upload-offset").and_then(|v| v.parse().ok()).ok_or_else(|| Retry::Fatal("no Upload-Offset".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_connections_send_longer_patches_with_no_more_bytes_in_flight() {
        let mib = 1 << 20;
        let sizes: Vec<u64> = (1..=6).map(|parts| patch_size(16 * mib, parts) / mib).collect();
        assert_eq!(sizes, [64, 32, 16, 16, 16, 16]);
        for parts in 1..=6 {
            assert!(patch_size(16 * mib, parts) * (parts as u64).min(FULL_CONNECTIONS) <= 64 * mib);
        }
    }
}
