//! Mounting: `mount(2)` on an open `/dev/fuse` when we may (root), else `fusermount3`,
//! which mounts for an ordinary user and hands the device back over a socket.

use crate::config::FuseTransport;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::fs::File;
use std::io::{Error, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountConfig {
    /// Let other users access the mount (permissions still apply).
    pub allow_other: bool,
    /// Read-only mount.
    pub read_only: bool,
    /// Source shown in /proc/mounts (the volume path).
    pub fsname: String,
    /// The request channel, when the mount command chose it (else `[storage]
    /// fuse_transport` of the volume's configuration).
    pub transport: Option<FuseTransport>,
}

/// The FUSE options shared by `mount(2)` and `fusermount3`.
fn options(cfg: &MountConfig) -> Vec<String> {
    let mut o = vec![
        // The type must read `fuse.nanofs` in /proc/mounts for `nanofs umount` and `df -t`.
        "subtype=nanofs".to_string(),
        "default_permissions".to_string(),
        format!("max_read={}", super::filesystem::MAX_WRITE),
    ];
    if cfg.allow_other {
        o.push("allow_other".into());
    }
    o
}

/// Mounts a FUSE file system at `mountpoint` and returns its `/dev/fuse` channel.
pub fn mount(mountpoint: &Path, cfg: &MountConfig) -> std::io::Result<File> {
    let dev = match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(dev) => dev,
        // An ordinary user may not open the device; fusermount3 may.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return fusermount(mountpoint, cfg),
        Err(e) => return Err(Error::new(e.kind(), format!("cannot open /dev/fuse ({e}); is the fuse module loaded?"))),
    };
    let root_mode = std::fs::metadata(mountpoint)?.permissions().mode() & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={}",
        dev.as_raw_fd(),
        root_mode,
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    for o in options(cfg) {
        data.push(',');
        data.push_str(&o);
    }
    let mut flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
    if cfg.read_only {
        flags |= nix::mount::MsFlags::MS_RDONLY;
    }
    match nix::mount::mount(Some(cfg.fsname.as_str()), mountpoint, Some("fuse"), flags, Some(data.as_str())) {
        Ok(()) => Ok(dev),
        Err(nix::errno::Errno::EPERM) => fusermount(mountpoint, cfg),
        Err(e) => Err(Error::other(format!("mount(2) failed: {e}"))),
    }
}

/// Mounts through the setuid `fusermount3`, which sends the device back over a socket
/// (the `_FUSE_COMMFD` protocol).
fn fusermount(mountpoint: &Path, cfg: &MountConfig) -> std::io::Result<File> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut opts = options(cfg);
    opts.push(format!("fsname={}", cfg.fsname));
    opts.push(if cfg.read_only { "ro" } else { "rw" }.into());
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-o").arg(opts.join(",")).arg("--").arg(mountpoint).env("_FUSE_COMMFD", theirs_fd.to_string());
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec only async-signal-safe fcntl is called, on an fd we own.
    unsafe {
        cmd.pre_exec(move || {
            // The socket must survive exec in the child.
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) == -1 {
                return Err(Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    drop(theirs);
    let received = receive_fd(&ours);
    let output = child.wait_with_output()?;
    match received {
        Some(fd) => Ok(File::from(fd)),
        None => Err(Error::other(format!("fusermount3 failed: {}", String::from_utf8_lossy(&output.stderr).trim()))),
    }
}

fn receive_fd(sock: &UnixStream) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                #[allow(unsafe_code)]
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table; nothing else owns it.
                return Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    None
}

/// Detaches the mount at `mountpoint` (used when the daemon fails after mounting).
pub fn detach(mountpoint: &Path) {
    if nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).is_err() {
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(mountpoint).output();
    }
}
