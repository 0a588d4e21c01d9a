//! `nanofs umount MOUNTPOINT`: unmount and wait for the daemon to flush and exit.

use crate::control;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the volume is mounted.
    mountpoint: PathBuf,
}

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
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    table.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if unescape(fields.get(4)?) != want {
            return None;
        }
        Some(MountEntry { fstype: fields.get(sep + 1)?.to_string(), source: unescape(fields.get(sep + 2)?) })
    })
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

/// Unmounts `mountpoint` (through fusermount3, so it works for the mounting user too).
pub fn unmount(mountpoint: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("fusermount3").arg("-u").arg(mountpoint).output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!("{}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(_) => nix::mount::umount(mountpoint).with_context(|| format!("cannot unmount {}", mountpoint.display())),
    }
}

/// Whether `pid` still runs (a zombie has finished: its parent just has not reaped it).
fn alive(pid: nix::unistd::Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {} does not exist", args.mountpoint.display()))?;
    let Some(entry) = mount_at(&mountpoint) else { bail!("nothing is mounted at {}", mountpoint.display()) };
    if entry.fstype != "fuse.nanofs" {
        bail!("{} is not a nanofs mount ({})", mountpoint.display(), entry.fstype);
    }
    let pid = match control::ask(Path::new(&entry.source), &control::Request::Status) {
        Some(control::Response::Status { pid, .. }) => Some(pid),
        _ => None,
    };
    unmount(&mountpoint)?;
    if let Some(pid) = pid {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let deadline = Instant::now() + Duration::from_secs(300);
        while alive(pid) {
            if Instant::now() > deadline {
                bail!("the daemon (pid {pid}) is still flushing after 5 minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
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
