//! A mounted session: the `FUSE_INIT` handshake on `/dev/fuse`, then request threads on
//! the transport agreed there (`/dev/fuse` reads and writes, or io_uring queues), and the
//! notifications the daemon sends the kernel.

use super::abi::{self, init, op, Args, InHeader, Out, IN_HEADER_LEN};
use super::filesystem::{NanoFs, MAX_WRITE};
use super::handler::{Body, Handler, Negotiated, Reply};
use super::mount::MountConfig;
use crate::config::FuseTransport as Transport;
use crate::volume::Volume;
use std::fs::File;
use std::io::{Error, ErrorKind, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Request threads on `/dev/fuse`. Each blocks in the engine while it hashes, seals or
/// reads, so more threads than cores keep both cores busy and let reads overtake a
/// committing writer.
const DEV_THREADS: usize = 6;
/// A request buffer: the largest write plus its headers.
pub(super) const REQUEST_BUFFER: usize = MAX_WRITE as usize + 4096;

/// A mounted file system whose requests are not served yet.
pub struct Session<H: Handler = NanoFs> {
    dev: Arc<File>,
    mountpoint: PathBuf,
    fs: Option<H>,
    transport: Transport,
}

/// Mounts `vol` at `mountpoint`; the mount exists when this returns.
pub fn mount(vol: Arc<Volume>, mountpoint: &Path, cfg: &MountConfig) -> std::io::Result<Session> {
    let transport = cfg.transport.unwrap_or(vol.config().storage.fuse_transport);
    mount_handler(NanoFs::new(vol), mountpoint, cfg, transport)
}

/// Mounts any `Handler` at `mountpoint`, its requests to come over `transport`.
pub fn mount_handler<H: Handler>(
    fs: H,
    mountpoint: &Path,
    cfg: &MountConfig,
    transport: Transport,
) -> std::io::Result<Session<H>> {
    if transport == Transport::Uring && !super::uring::kernel_enabled() {
        return Err(Error::new(ErrorKind::Unsupported, super::uring::NOT_ENABLED));
    }
    let dev = super::mount::mount(mountpoint, cfg)?;
    Ok(Session { dev: Arc::new(dev), mountpoint: mountpoint.to_path_buf(), fs: Some(fs), transport })
}

impl<H: Handler> Session<H> {
    /// The observer of entries changed outside the mount (`Volume::foreign`): it tells the
    /// kernel to drop its cached lookup of each, misses included.
    #[must_use]
    pub fn entry_invalidator(&self) -> crate::volume::EntryObserver {
        let dev = self.dev.clone();
        Arc::new(move |parent: crate::Ino, name: &[u8]| {
            if let Err(e) = inval_entry(&dev, parent.0, name) {
                // ENOENT: the kernel had nothing cached, which is fine.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    tracing::debug!(error = %e, "entry invalidation failed");
                }
            }
        })
    }

    /// Answers `FUSE_INIT` and starts the request threads.
    pub fn spawn(mut self) -> std::io::Result<Running> {
        let mut fs = self.fs.take().expect("spawned once");
        let negotiated = handshake(&mut fs, &self.dev, self.transport)?;
        let uring = negotiated.flags & init::OVER_IO_URING != 0;
        if self.transport == Transport::Uring && !uring {
            return Err(Error::new(ErrorKind::Unsupported, "the kernel did not offer FUSE over io_uring"));
        }
        let fs = Arc::new(fs);
        let mut threads = Vec::new();
        let mut on_ring = false;
        if uring {
            match super::uring::start(&fs, &self.dev, &mut threads) {
                Ok(()) => on_ring = true,
                Err(e) if self.transport == Transport::Uring => return Err(e),
                Err(e) => tracing::warn!(error = %e, "FUSE over io_uring failed; serving over /dev/fuse"),
            }
        }
        if on_ring {
            tracing::info!(queues = super::uring::queue_count()?, "FUSE requests over io_uring");
        } else {
            tracing::info!("FUSE requests over /dev/fuse");
        }
        // Over io_uring, /dev/fuse still carries what the ring does not (interrupts,
        // forgets) and whatever comes before every queue is registered.
        let dev_threads = if on_ring { 1 } else { DEV_THREADS };
        for n in 0..dev_threads {
            let dev = if n == 0 { self.dev.clone() } else { Arc::new(clone_channel(&self.dev)?) };
            let fs = fs.clone();
            threads.push(std::thread::Builder::new().name("fuse".into()).spawn(move || serve_dev(&*fs, &dev))?);
        }
        Ok(Running { threads, mountpoint: std::mem::take(&mut self.mountpoint) })
    }
}

impl<H: Handler> Drop for Session<H> {
    /// A session dropped before it served (the daemon failed while starting) leaves no
    /// mount behind that would hang whoever touches it.
    fn drop(&mut self) {
        if !self.mountpoint.as_os_str().is_empty() {
            super::mount::detach(&self.mountpoint);
        }
    }
}

/// The request threads of a served mount.
pub struct Running {
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    mountpoint: PathBuf,
}

impl Running {
    /// Waits until the file system is unmounted.
    pub fn join(self) -> std::io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            let r = t.join().unwrap_or_else(|_| Err(Error::other("a FUSE request thread panicked")));
            if let Err(e) = r {
                tracing::error!(error = %e, "FUSE request thread failed");
                if result.is_ok() {
                    // The others wait for the kernel to let go of the mount.
                    super::mount::detach(&self.mountpoint);
                    result = Err(e);
                }
            }
        }
        result
    }
}

/// Reads `FUSE_INIT` and answers it with what `fs` chooses from the kernel's offer.
fn handshake(fs: &mut impl Handler, dev: &File, transport: Transport) -> std::io::Result<Negotiated> {
    let mut buf = vec![0u8; REQUEST_BUFFER];
    let n = read_request(dev, &mut buf)?.ok_or_else(|| Error::other("unmounted before FUSE_INIT"))?;
    let h = InHeader::parse(&buf[..n]).ok_or_else(|| Error::other("short FUSE_INIT"))?;
    if h.opcode != op::INIT {
        return Err(Error::other(format!("expected FUSE_INIT, got opcode {}", h.opcode)));
    }
    let mut a = Args::new(&buf[IN_HEADER_LEN..n], &[]);
    let bad = || Error::other("short FUSE_INIT");
    let (major, minor, max_readahead, flags) =
        (a.u32().ok_or_else(bad)?, a.u32().ok_or_else(bad)?, a.u32().ok_or_else(bad)?, a.u32().ok_or_else(bad)?);
    let flags2 = if u64::from(flags) & init::INIT_EXT != 0 { a.u32().unwrap_or(0) } else { 0 };
    if major != abi::MAJOR || minor < 31 {
        send(dev, h.unique, &Reply::Err(libc::EPROTO))?;
        return Err(Error::other(format!("unsupported FUSE protocol {major}.{minor} (7.31 or later needed)")));
    }
    let offered = u64::from(flags) | (u64::from(flags2) << 32);
    let negotiated = fs.negotiate(offered, max_readahead, transport != Transport::Dev);
    let mut out = Out::with_capacity(64);
    out.u32(abi::MAJOR).u32(minor.min(abi::MINOR)).u32(negotiated.max_readahead);
    out.u32(negotiated.flags as u32).u16(64).u16(48).u32(MAX_WRITE).u32(1);
    out.u16((MAX_WRITE / 4096) as u16).u16(0).u32((negotiated.flags >> 32) as u32);
    out.u32(0).u16(0).bytes(&[0; 22]);
    send(dev, h.unique, &Reply::Ok(out))?;
    Ok(negotiated)
}

/// Reads one request; `None` once the file system is unmounted.
fn read_request(mut dev: &File, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
        match dev.read(buf) {
            Ok(n) => return Ok(Some(n)),
            // ENOENT: the request was interrupted before we read it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR | libc::EAGAIN)) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Writes the reply to request `unique` (nothing for a request that takes none).
fn send(mut dev: &File, unique: u64, reply: &Reply) -> std::io::Result<()> {
    let Some((errno, body)) = reply.parts() else { return Ok(()) };
    let header = abi::out_header(unique, errno, body.len());
    // `/dev/fuse` takes a reply in one write, so it is never cut short. Most replies are
    // one slice after the header and need no list on the heap.
    let written = match body {
        Body::Bytes(bytes) => dev.write_vectored(&[IoSlice::new(&header), IoSlice::new(bytes)]),
        Body::Pieces(_) => {
            let slices: Vec<IoSlice<'_>> =
                std::iter::once(&header[..]).chain(body.slices()).map(IoSlice::new).collect();
            dev.write_vectored(&slices)
        }
    };
    match written {
        Ok(_) => Ok(()),
        // The request was interrupted meanwhile, or the mount is gone.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Serves requests read from `dev` until the file system is unmounted.
fn serve_dev(fs: &impl Handler, dev: &File) -> std::io::Result<()> {
    let mut buf = vec![0u8; REQUEST_BUFFER];
    while let Some(n) = read_request(dev, &mut buf)? {
        let Some(h) = InHeader::parse(&buf[..n]) else {
            tracing::warn!(len = n, "short FUSE request ignored");
            continue;
        };
        let reply = fs.handle(&h, Args::new(&buf[IN_HEADER_LEN..n], &[]));
        send(dev, h.unique, &reply)?;
    }
    Ok(())
}

/// A second channel to the same connection (`FUSE_DEV_IOC_CLONE`): each has its own
/// queue of requests in flight, so request threads do not contend on one.
fn clone_channel(dev: &File) -> std::io::Result<File> {
    nix::ioctl_read!(fuse_dev_ioc_clone, 229, 0, u32);
    let clone = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse")?;
    let mut session_fd = dev.as_raw_fd() as u32;
    #[allow(unsafe_code)]
    // SAFETY: the ioctl reads one u32 (the session's descriptor) from a valid pointer.
    unsafe { fuse_dev_ioc_clone(clone.as_raw_fd(), &raw mut session_fd) }.map_err(Error::from)?;
    Ok(clone)
}

/// `FUSE_NOTIFY_INVAL_ENTRY`: forget the cached lookup of `name` in `parent`.
fn inval_entry(mut dev: &File, parent: u64, name: &[u8]) -> std::io::Result<()> {
    let mut body = Out::with_capacity(16 + name.len() + 1);
    body.u64(parent).u32(name.len() as u32).u32(0).bytes(name).bytes(&[0]);
    // A notification is a reply with unique 0 whose error field holds the code.
    let header = abi::out_header(0, -abi::NOTIFY_INVAL_ENTRY, body.0.len());
    dev.write_vectored(&[IoSlice::new(&header), IoSlice::new(&body.0)]).map(|_| ())
}
