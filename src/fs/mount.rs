//! Mount options and the FUSE session.

use super::NanoFs;
use crate::volume::Volume;
use fuser::{Config, MountOption, Session, SessionACL};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Request threads. Each blocks in the engine while it hashes, seals or reads, so more
/// threads than cores keep both cores busy and let reads overtake a committing writer.
const FUSE_THREADS: usize = 6;

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountConfig {
    /// Let other users access the mount (permissions still apply).
    pub allow_other: bool,
    /// Read-only mount.
    pub read_only: bool,
    /// Source shown in /proc/mounts (the volume path).
    pub fsname: String,
}

/// Mounts `vol` at `mountpoint`; the mount exists when this returns.
pub fn mount(vol: Arc<Volume>, mountpoint: &Path, cfg: &MountConfig) -> std::io::Result<Session<NanoFs>> {
    let mut options = vec![
        MountOption::FSName(cfg.fsname.clone()),
        // Passed to the kernel directly: a root mount by mount(2) ignores `Subtype`, and the
        // type must read `fuse.nanofs` in /proc/mounts for `nanofs umount` and `df -t`.
        MountOption::CUSTOM("subtype=nanofs".into()),
        MountOption::DefaultPermissions,
        MountOption::CUSTOM("max_read=1048576".into()),
    ];
    options.push(if cfg.read_only { MountOption::RO } else { MountOption::RW });
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if cfg.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    Session::new(NanoFs::new(vol), mountpoint, &config)
}

/// The observer of entries changed outside the mount (`Volume::foreign`): it tells the
/// kernel to drop its cached lookup of each, misses included.
pub fn entry_invalidator(session: &Session<NanoFs>) -> crate::volume::EntryObserver {
    let notifier = session.notifier();
    std::sync::Arc::new(move |parent: crate::Ino, name: &[u8]| {
        let name = std::ffi::OsStr::from_bytes(name);
        if let Err(e) = notifier.inval_entry(fuser::INodeNo(parent.0), name) {
            // ENOENT: the kernel had nothing cached, which is fine.
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::debug!(error = %e, "entry invalidation failed");
            }
        }
    })
}
