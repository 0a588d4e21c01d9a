//! Adaptive streaming of the volume's videos: an HLS and DASH ladder per video, packaged by
//! ffmpeg (`package`) and kept in the volume, beside the engine as galleries are.
//!
//! A video's renditions live in the hidden directory `.renditions` (not listed in the
//! mount, in galleries or in `?list`), in a directory named after the source's inode:
//! CMAF segments (`seg-R-N.m4s`) and init segments (`init-R.m4s`) once, referenced by the
//! HLS playlists (`master.m3u8`, `media_R.m3u8`) and the DASH manifest (`manifest.mpd`),
//! and `source`, the content fingerprint of the video they were made from. They are
//! ordinary files, so their chunks are deduplicated, encrypted and counted like any other.
//! Renditions whose `source` no longer matches the video (it was replaced or rewritten)
//! are not served; packaging again replaces them.
//!
//! A packaging run writes into a staging directory and renames it into place when ffmpeg
//! has finished, so a crash or a failure never leaves half a ladder published.

pub mod ladder;
mod package;
pub mod render;

use crate::ids::Ino;
use crate::volume::{Kind, RenameMode, Volume};
use std::sync::Arc;

pub use package::PackageReport;

/// The hidden directory of renditions, and its key in `meta`.
pub const RENDITIONS_NAME: &[u8] = b".renditions";
const RENDITIONS_KEY: &[u8] = b"renditions-dir";
/// The file in a rendition directory that names the source's fingerprint.
const SOURCE_FILE: &str = "source";

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

    /// Puts the finished staging directory `staging` in place of `source`'s renditions.
    fn publish(&self, root: Ino, staging: &str, source: Ino) -> Result<()> {
        let name = dir_name(source);
        let old = format!("{name}.old-{}", random_suffix());
        let had_old = match self.vol.rename(root, name.as_bytes(), root, old.as_bytes(), RenameMode::NoReplace) {
            Ok(()) => true,
            Err(crate::volume::Error::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        self.vol.rename(root, staging.as_bytes(), root, name.as_bytes(), RenameMode::NoReplace)?;
        if had_old {
            self.vol.remove_tree(root, old.as_bytes())?;
        }
        Ok(())
    }

    /// Removes the renditions of videos that are gone and the old ladders a crash left
    /// behind while replacing them; returns how many directories went. Staging directories
    /// are left alone: a run may be writing into one.
    pub fn sweep(&self) -> Result<usize> {
        let Some(root) = self.vol.hidden_dir(RENDITIONS_NAME)? else { return Ok(0) };
        let mut removed = 0;
        for e in self.vol.dir_entries(root)? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let gone = match name.parse::<u64>() {
                Ok(ino) => !self.vol.getattr(Ino(ino)).is_ok_and(|a| a.inode.kind == Kind::File && a.inode.nlink > 0),
                Err(_) => name.contains(".old-"),
            };
            if gone {
                self.vol.remove_tree(root, &e.name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A random suffix for names that must not collide.
fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    crate::crypto::keys::random_bytes(&mut bytes);
    crate::ids::hex(&bytes)
}

/// The rendition file `name` of video `source`, if its renditions are current.
pub fn find(vol: &Volume, source: Ino, name: &str) -> Result<Option<Ino>> {
    let Some(dir) = current_dir(vol, source)? else { return Ok(None) };
    match vol.lookup(dir, name.as_bytes()) {
        Ok(a) if a.inode.kind == Kind::File => Ok(Some(a.ino)),
        Ok(_) | Err(crate::volume::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The rendition directory of `source`, if it was made from the source as it is now.
fn current_dir(vol: &Volume, source: Ino) -> Result<Option<Ino>> {
    let Some(root) = vol.hidden_dir(RENDITIONS_NAME)? else { return Ok(None) };
    let dir = match vol.lookup(root, dir_name(source).as_bytes()) {
        Ok(a) => a.ino,
        Err(crate::volume::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stamp = match vol.lookup(dir, SOURCE_FILE.as_bytes()) {
        Ok(a) => vol.read(a.ino, 0, 64)?.to_vec(),
        Err(crate::volume::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok((stamp == source_stamp(vol, source)?.as_bytes()).then_some(dir))
}

/// What a rendition directory records of its video: the content fingerprint, in hex.
fn source_stamp(vol: &Volume, source: Ino) -> Result<String> {
    Ok(crate::ids::hex(&vol.fingerprint(source)?))
}

/// Packages the video at `path` with `ladder` (default: the volume's `[media.streaming]`).
pub fn package(vol: &Arc<Volume>, path: &str, ladder: Option<Vec<u32>>) -> Result<PackageReport> {
    let cfg = vol.config().media.streaming.clone();
    let ladder = ladder.unwrap_or(cfg.ladder);
    if ladder.is_empty() || ladder.iter().any(|h| !(144..=4320).contains(h)) {
        return Err(Error::Invalid(format!("ladder {ladder:?}: heights of 144 to 4320")));
    }
    Renditions::open(vol.clone()).package(path, &ladder, cfg.segment_seconds)
}

/// The name of `source`'s rendition directory.
fn dir_name(source: Ino) -> String {
    source.0.to_string()
}
