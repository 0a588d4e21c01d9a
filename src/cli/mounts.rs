//! The mount table (/proc/self/mountinfo): which nanofs volume is mounted where.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// File system type of a nanofs mount in the mount table.
pub const FSTYPE: &str = "fuse.nanofs";

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    /// The mounted source (for nanofs: the volume directory).
    pub source: String,
    /// File system type, e.g. `fuse.nanofs`.
    pub fstype: String,
}

/// The mount whose mount point is exactly `path`, if any.
#[must_use]
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let want = path.to_str()?;
    entries().into_iter().rev().find(|(at, _)| at == want).map(|(_, e)| e)
}

/// The nanofs mount holding `path` (the deepest one) and its mount point.
#[must_use]
pub fn nanofs_mount_containing(path: &Path) -> Option<(PathBuf, MountEntry)> {
    entries()
        .into_iter()
        .filter(|(at, e)| e.fstype == FSTYPE && path.starts_with(at))
        .max_by_key(|(at, _)| at.len())
        .map(|(at, e)| (PathBuf::from(at), e))
}

/// Every mount: mount point and entry, in table order.
fn entries() -> Vec<(String, MountEntry)> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let entry = MountEntry { fstype: fields.get(sep + 1)?.to_string(), source: unescape(fields.get(sep + 2)?) };
            Some((unescape(fields.get(4)?), entry))
        })
        .collect()
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The volume and volume paths a command names: `VOLUME P...` (paths relative to the
/// volume's root) when there are `n + 1` arguments, else `n` paths inside one mounted volume.
pub fn locate(args: &[PathBuf], n: usize) -> anyhow::Result<(PathBuf, Vec<String>)> {
    if args.len() == n + 1 {
        let paths = args[1..].iter().map(|p| volume_path(p)).collect::<anyhow::Result<_>>()?;
        return Ok((args[0].clone(), paths));
    }
    let (volume, mountpoint) = mounted_volume(&args[0])?;
    let paths = args.iter().map(|p| inside(&mountpoint, p)).collect::<anyhow::Result<_>>()?;
    Ok((volume, paths))
}

fn volume_path(p: &Path) -> anyhow::Result<String> {
    p.to_str().map(|s| s.trim_start_matches('/').to_string()).context("paths must be UTF-8")
}

/// The volume directory and mount point of the nanofs mount holding `path`.
fn mounted_volume(path: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let abs = absolute(path)?;
    let Some((mountpoint, entry)) = nanofs_mount_containing(&abs) else {
        bail!("{} is not inside a mounted nanofs volume (or name the volume first)", path.display())
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

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
