//! `nanofs umount MOUNTPOINT`: unmount and wait for the daemon to flush and exit.

use super::mounts::mount_at;
use crate::control;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the volume is mounted.
    mountpoint: PathBuf,
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
    if entry.fstype != super::mounts::FSTYPE {
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
