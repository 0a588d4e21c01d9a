//! `nanofs clone VOLUME SRC DST` (paths inside the volume) or `nanofs clone SRC DST`
//! (paths inside a mounted volume): an instant copy of a file or tree that shares chunks.

use super::UnlockArgs;
use crate::control::{Request, Response};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `VOLUME SRC DST` with SRC and DST relative to the volume's root, or `SRC DST` as
    /// paths inside a mounted volume.
    #[arg(num_args = 2..=3, required = true, value_name = "[VOLUME] SRC DST")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    passphrase: UnlockArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (volume, src, dst) = match args.paths.as_slice() {
        [volume, src, dst] => (volume.clone(), volume_path(src)?, volume_path(dst)?),
        [src, dst] => {
            let (volume, mountpoint) = mounted_volume(src)?;
            (volume, inside(&mountpoint, src)?, inside(&mountpoint, dst)?)
        }
        _ => unreachable!("clap allows two or three paths"),
    };
    super::via_daemon_or_open(
        &volume,
        &args.passphrase,
        &Request::Clone { src: src.clone(), dst: dst.clone() },
        |reply| matches!(reply, Response::Done).then_some(()),
        |vol| vol.clone_path(&src, &dst).map(|_| ()),
    )
    .with_context(|| format!("cannot clone /{src} to /{dst}"))?;
    Ok(())
}

fn volume_path(p: &Path) -> anyhow::Result<String> {
    p.to_str().map(|s| s.trim_start_matches('/').to_string()).context("paths must be UTF-8")
}

/// The volume directory and mount point of the nanofs mount holding `path`.
fn mounted_volume(path: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let abs = absolute(path)?;
    let Some((mountpoint, entry)) = super::mounts::nanofs_mount_containing(&abs) else {
        bail!("{} is not inside a mounted nanofs volume (give the volume: nanofs clone VOLUME SRC DST)", path.display())
    };
    Ok((PathBuf::from(entry.source), mountpoint))
}

/// `path` relative to the mount point.
fn inside(mountpoint: &Path, path: &Path) -> anyhow::Result<String> {
    let abs = absolute(path)?;
    let rel = abs
        .strip_prefix(mountpoint)
        .with_context(|| format!("{} is not on the same nanofs mount as {}", path.display(), mountpoint.display()))?;
    volume_path(rel)
}

/// An absolute path with the parent resolved (the last component may not exist yet).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = std::fs::canonicalize(&parent).with_context(|| format!("{} does not exist", parent.display()))?;
    Ok(parent.join(name))
}
