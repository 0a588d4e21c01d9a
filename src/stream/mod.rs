//! Adaptive streaming of the volume's videos: an HLS and DASH ladder per video, packaged by
//! ffmpeg (`package`) in a queue of jobs (`jobs`) and kept in the volume, beside the engine
//! as galleries are.
//!
//! A video's renditions live in the hidden directory `.renditions` (not listed in the
//! mount, in galleries or in `?list`), in a directory named after the content fingerprint
//! of the video they were made from: CMAF segments (`seg-R-N.m4s`) and init segments
//! (`init-R.m4s`) once, referenced by the HLS playlists (`master.m3u8`, `media_R.m3u8`) and
//! the DASH manifest (`manifest.mpd`), and `source`, which names the file packaged and its
//! size. They are ordinary files, so their chunks are deduplicated, encrypted and counted
//! like any other. Keyed by content, renditions follow the bytes: a clone, a copy or a
//! snapshot of a video plays from the same ladder, and a replaced or rewritten video has
//! none until it is packaged again. A ladder goes when no file holds its content any more.
//!
//! A packaging run writes into a staging directory and renames it into place when ffmpeg
//! has finished, so a crash or a failure never leaves half a ladder published.

pub mod fmp4;
pub mod jobs;
pub mod ladder;
mod package;
pub mod render;

use crate::ids::Ino;
use crate::volume::{Kind, RenameMode, Volume};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

pub use package::{PackageReport, Run};

/// The hidden directory of renditions, and its key in `meta`.
pub const RENDITIONS_NAME: &[u8] = b".renditions";
const RENDITIONS_KEY: &[u8] = b"renditions-dir";
/// The file in a rendition directory that names what was packaged (`SourceFile`).
const SOURCE_FILE: &str = "source";

/// What a rendition directory records of the file it was made from: enough to find the
/// files that still hold its content without hashing the whole volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SourceFile {
    /// The inode packaged.
    ino: u64,
    /// Its size, bytes.
    size: u64,
}

/// Why streaming failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed.
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    /// The file is not a video ffmpeg can read.
    #[error("not a video: {0}")]
    NotAVideo(String),
    /// ffmpeg failed or is missing; its reason.
    #[error("{0}")]
    Media(#[from] crate::media::MediaError),
    /// A request that makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The loopback server that feeds ffmpeg failed.
    #[error("packaging I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The video's bytes have a ladder already (a job that wanted one only if missing).
    #[error("already packaged")]
    AlreadyPackaged,
}

/// Result of streaming operations.
pub type Result<T> = std::result::Result<T, Error>;

/// The renditions of one volume.
pub struct Renditions {
    vol: Arc<Volume>,
}

/// Registers the renditions and renders directories on `vol`, so it is hidden from every listing: call
/// when the volume opens.
pub fn register(vol: &Volume) {
    vol.register_hidden(RENDITIONS_NAME, RENDITIONS_KEY);
    render::register(vol);
}

impl Renditions {
    /// The renditions of `vol`.
    pub fn open(vol: Arc<Volume>) -> Self {
        register(&vol);
        Self { vol }
    }

    /// Puts the finished staging directory `staging` in place as the renditions of the
    /// content `key`.
    fn publish(&self, root: Ino, staging: &str, key: &str) -> Result<()> {
        let old = format!("{key}.old-{}", random_suffix());
        let had_old = match self.vol.rename(root, key.as_bytes(), root, old.as_bytes(), RenameMode::NoReplace) {
            Ok(()) => true,
            Err(crate::volume::Error::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        self.vol.rename(root, staging.as_bytes(), root, key.as_bytes(), RenameMode::NoReplace)?;
        if had_old {
            match self.vol.remove_tree(root, old.as_bytes()) {
                // A sweep got there first.
                Ok(()) | Err(crate::volume::Error::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Removes the ladders whose content no file holds any more (the video was deleted,
    /// replaced or rewritten, in the tree and in every snapshot), old ladders a crash left
    /// while replacing them, and staging directories of runs that are not `running` (a
    /// crash mid-run; asked when the sweep meets each one, after it listed them); returns
    /// how many directories went.
    pub fn sweep(&self, running: &dyn Fn(&str) -> bool) -> Result<usize> {
        let Some(root) = self.vol.hidden_dir(RENDITIONS_NAME)? else { return Ok(0) };
        let entries = self.vol.dir_entries(root)?;
        // The sizes of the packaged files narrow the files to hash to a handful.
        let mut ladders = Vec::new();
        for e in &entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if is_content_key(&name) {
                ladders.push((name, read_source(&self.vol, e.ino)?));
            }
        }
        let sizes: HashSet<u64> = ladders.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.size)).collect();
        let mut held = HashSet::new();
        for ino in self.vol.files_of_sizes(&sizes)? {
            match self.vol.fingerprint(ino) {
                Ok(fp) => {
                    held.insert(crate::ids::hex(&fp));
                }
                // Gone meanwhile, or unreadable: its ladder is judged by the other files.
                Err(e) => tracing::debug!(inode = %ino, error = %e, "no fingerprint while sweeping renditions"),
            }
        }
        let mut removed = 0;
        for e in entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let gone = if is_content_key(&name) {
                !held.contains(&name)
            } else if let Some((key, _)) = name.split_once(".staging-") {
                !running(key)
            } else {
                name.contains(".old-")
            };
            if gone {
                match self.vol.remove_tree(root, &e.name) {
                    Ok(()) => removed += 1,
                    // Published or removed by its run meanwhile.
                    Err(crate::volume::Error::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// Removes the staging directories and old ladders an interrupted run left (call when
    /// no run is in progress); returns how many went. Reads only `.renditions` itself.
    pub fn sweep_interrupted(&self) -> Result<usize> {
        let Some(root) = self.vol.hidden_dir(RENDITIONS_NAME)? else { return Ok(0) };
        let mut removed = 0;
        for e in self.vol.dir_entries(root)? {
            let name = String::from_utf8_lossy(&e.name);
            if name.contains(".staging-") || name.contains(".old-") {
                self.vol.remove_tree(root, &e.name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The inodes packaged into the current ladders: the files whose deletion may free one.
    pub fn packaged_sources(&self) -> Result<Vec<Ino>> {
        let Some(root) = self.vol.hidden_dir(RENDITIONS_NAME)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for e in self.vol.dir_entries(root)? {
            if is_content_key(&String::from_utf8_lossy(&e.name)) {
                out.extend(read_source(&self.vol, e.ino)?.map(|s| Ino(s.ino)));
            }
        }
        Ok(out)
    }
}

/// Whether a name in `.renditions` is a content key (a published ladder).
fn is_content_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `source` file of a ladder directory, if it has a readable one.
fn read_source(vol: &Volume, dir: Ino) -> Result<Option<SourceFile>> {
    let ino = match vol.lookup(dir, SOURCE_FILE.as_bytes()) {
        Ok(a) => a.ino,
        Err(crate::volume::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(serde_json::from_slice(&vol.read(ino, 0, 4096)?).ok())
}

/// A random suffix for names that must not collide.
pub(crate) fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    crate::crypto::keys::random_bytes(&mut bytes);
    crate::ids::hex(&bytes)
}

/// The rendition file `name` of video `source`, if its content has renditions.
pub fn find(vol: &Volume, source: Ino, name: &str) -> Result<Option<Ino>> {
    let Some(dir) = current_dir(vol, source)? else { return Ok(None) };
    match vol.lookup(dir, name.as_bytes()) {
        Ok(a) if a.inode.kind == Kind::File => Ok(Some(a.ino)),
        Ok(_) | Err(crate::volume::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The ladder directory of `source`'s content, if it has one.
fn current_dir(vol: &Volume, source: Ino) -> Result<Option<Ino>> {
    let Some(root) = vol.hidden_dir(RENDITIONS_NAME)? else { return Ok(None) };
    match vol.lookup(root, content_key(vol, source)?.as_bytes()) {
        Ok(a) => Ok(Some(a.ino)),
        Err(crate::volume::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The name of the ladder of `source`'s content: its fingerprint, in hex.
pub(crate) fn content_key(vol: &Volume, source: Ino) -> crate::volume::Result<String> {
    Ok(crate::ids::hex(&vol.fingerprint(source)?))
}

/// Checks a ladder given on the command line or in a request.
pub fn check_ladder(ladder: &[u32]) -> Result<()> {
    if ladder.is_empty() || ladder.len() > 8 || ladder.iter().any(|h| !(144..=4320).contains(h)) {
        return Err(Error::Invalid(format!("ladder {ladder:?}: one to eight heights of 144 to 4320")));
    }
    Ok(())
}

/// Packages the video at `path`, or every video under the directory `path`, with `ladder`
/// (default: the volume's `[media.streaming]`) here and now, without a job queue: the
/// command line when no daemon serves the volume. The reports, with each video's path.
pub fn package_now(vol: &Arc<Volume>, path: &str, ladder: Option<Vec<u32>>) -> Result<Vec<(String, PackageReport)>> {
    let cfg = vol.config().media.streaming.clone();
    let ladder = ladder.unwrap_or(cfg.ladder);
    check_ladder(&ladder)?;
    let whole_dir = vol.getattr(vol.resolve(path)?)?.inode.kind == Kind::Dir;
    let mut made = Vec::new();
    for (source, path) in videos_at(vol, path)? {
        // Under a directory, only videos whose bytes have no ladder yet (a copy of one
        // packaged a moment ago has).
        if whole_dir && find(vol, source, "master.m3u8")?.is_some() {
            continue;
        }
        let report =
            Run::unwatched(|run| Renditions::open(vol.clone()).package(source, &ladder, cfg.segment_seconds, run))?;
        made.push((path, report));
    }
    Ok(made)
}

/// The file at `path`, or the videos under the directory `path` (by their first bytes, not
/// their names), with their paths.
pub fn videos_at(vol: &Volume, path: &str) -> Result<Vec<(Ino, String)>> {
    let top = vol.resolve(path)?;
    if vol.getattr(top)?.inode.kind != Kind::Dir {
        return Ok(vec![(top, path.to_string())]);
    }
    let mut out = Vec::new();
    for (dir, e) in vol.files_below(top)? {
        let head = vol.read(e.ino, 0, 512)?;
        if crate::media::kind_of(&crate::media::media_type("", &head)) == crate::media::Kind::Video {
            let name = String::from_utf8_lossy(&e.name);
            out.push((e.ino, format!("{}/{name}", vol.dir_path(dir)?.trim_end_matches('/'))));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Writes `data` as file `name` in `dir`, replacing what it held (in pieces of the size a
/// FUSE write has, as the engine expects); returns its inode.
pub(crate) fn write_file(vol: &Volume, dir: Ino, name: &str, data: &[u8]) -> crate::volume::Result<Ino> {
    let ino = match vol.lookup(dir, name.as_bytes()) {
        Ok(a) => {
            vol.setattr(a.ino, &crate::volume::SetAttr { size: Some(0), ..crate::volume::SetAttr::default() })?;
            a.ino
        }
        Err(crate::volume::Error::NotFound) => vol.create(dir, name.as_bytes(), Kind::File, 0o600, 0, 0, 0)?.ino,
        Err(e) => return Err(e),
    };
    let h = vol.open_file(ino, true)?;
    let mut written = Ok(0);
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        written = vol.write(ino, (i as u64) << 20, piece, false, false);
        if written.is_err() {
            break;
        }
    }
    let closed = vol.release(ino, h);
    written?;
    closed?;
    Ok(ino)
}
