//! FUSE over io_uring (Linux 6.14+, `Documentation/filesystems/fuse-io-uring.rst`): each
//! request thread registers a header and a payload buffer with the kernel through an
//! `IORING_OP_URING_CMD` on `/dev/fuse`. A request arrives as the completion of that command;
//! its reply goes back with the next command, which also fetches the next request, so a
//! round trip is one `io_uring_enter` instead of a `write` and a `read`.
//!
//! The kernel keeps one queue per possible CPU and hands a request to a free entry of the
//! queue of the CPU it was made on, so every queue gets its own threads, pinned to it.

use super::abi::{Args, InHeader, IN_HEADER_LEN};
use super::handler::Handler;
use super::session::REQUEST_BUFFER;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::fs::File;
use std::io::Error;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where the kernel turns the transport on.
const ENABLE_PARAMETER: &str = "/sys/module/fuse/parameters/enable_uring";
/// Why io_uring cannot be used, for the error a user sees.
pub const NOT_ENABLED: &str = "FUSE over io_uring is off in this kernel: turn it on with \
    `echo Y > /sys/module/fuse/parameters/enable_uring` (the README shows how for every boot), \
    or mount with `-o transport=dev`";

/// Request threads per queue (per CPU). Each blocks in the engine while it hashes, seals or
/// reads, so a queue needs more than one to keep a slow request from holding up the rest.
const THREADS_PER_QUEUE: usize = 3;

/// `enum fuse_uring_cmd`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_uring_req_header`: the request or reply header (128 bytes), the
/// operation's fixed struct (128), then `struct fuse_uring_ent_in_out` (32).
const HEADER_LEN: usize = 288;
const OP_IN: usize = 128;
const ENT_IN_OUT: usize = 256;

/// Whether the running kernel offers FUSE over io_uring to new mounts.
#[must_use]
pub fn kernel_enabled() -> bool {
    std::fs::read_to_string(ENABLE_PARAMETER).is_ok_and(|v| v.trim() == "Y")
}

/// The kernel's queue count: one per possible CPU.
pub fn queue_count() -> std::io::Result<usize> {
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for range in possible.trim().split(',') {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let parse = |s: &str| s.parse::<usize>().map_err(|_| Error::other(format!("bad CPU list {possible:?}")));
        n += parse(last)? - parse(first)? + 1;
    }
    Ok(n)
}

/// Starts the request threads of every queue, adding them to `threads`, and waits until
/// each has its ring. An error (io_uring refused, say by the `kernel.io_uring_disabled`
/// sysctl) leaves the kernel without a complete set of queues, so it keeps sending every
/// request over `/dev/fuse`; the threads already started wait there until the unmount.
pub fn start<H: Handler>(
    fs: &Arc<H>,
    dev: &Arc<File>,
    threads: &mut Vec<JoinHandle<std::io::Result<()>>>,
) -> std::io::Result<()> {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let mut started = 0;
    for qid in 0..queue_count()? {
        let qid = u16::try_from(qid).map_err(|_| Error::other("too many CPUs"))?;
        for _ in 0..THREADS_PER_QUEUE {
            let (fs, dev, ready_tx) = (fs.clone(), dev.clone(), ready_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fuse-q{qid}"))
                    .spawn(move || serve_queue(&*fs, &dev, qid, &ready_tx))?,
            );
            started += 1;
        }
    }
    drop(ready_tx);
    for _ in 0..started {
        ready.recv().map_err(|_| Error::other("a FUSE queue thread stopped while starting"))??;
    }
    Ok(())
}

/// One ring entry's buffers. They are shared with the kernel while a command is in flight,
/// so they are only read or written between a completion and the next submission.
struct Entry {
    header: Box<[u8; HEADER_LEN]>,
    payload: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

impl Entry {
    fn new() -> Self {
        let mut header = Box::new([0u8; HEADER_LEN]);
        let mut payload = vec![0u8; REQUEST_BUFFER];
        let iov = Box::new([
            libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: HEADER_LEN },
            libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() },
        ]);
        Self { header, payload, iov }
    }

    /// The command that registers these buffers (`REGISTER`) or returns a reply and waits
    /// for the next request (`COMMIT_AND_FETCH`).
    fn command(&self, dev: &File, cmd_op: u32, qid: u16, commit_id: u64) -> squeue::Entry128 {
        // `struct fuse_uring_cmd_req`: flags, commit_id, qid.
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
        let sqe = opcode::UringCmd80::new(types::Fd(dev.as_raw_fd()), cmd_op)
            .cmd(cmd)
            .addr(Some(self.iov.as_ptr() as u64))
            .build();
        with_iovec_count(sqe, 2)
    }
}

/// Sets `sqe->len`, the number of iovecs at `addr`, which the kernel requires and the
/// `io-uring` crate's `UringCmd80` does not expose.
fn with_iovec_count(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    /// Offset of `len` in `struct io_uring_sqe`.
    const LEN_OFFSET: usize = 24;
    #[allow(unsafe_code)]
    // SAFETY: `Entry128` is `repr(C)` over the 128-byte `io_uring_sqe`; every bit pattern
    // is a valid byte array and back.
    let mut bytes: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    bytes[LEN_OFFSET..LEN_OFFSET + 4].copy_from_slice(&len.to_ne_bytes());
    #[allow(unsafe_code)]
    // SAFETY: as above.
    unsafe {
        std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes)
    }
}

/// Serves requests of queue `qid` until the file system is unmounted.
fn serve_queue(
    fs: &impl Handler,
    dev: &File,
    qid: u16,
    ready: &std::sync::mpsc::Sender<std::io::Result<()>>,
) -> std::io::Result<()> {
    // The kernel queues a request on the CPU it was made on. A thread of that queue that
    // stays on that CPU is woken there, without an inter-processor wake-up: on this
    // machine's two vCPUs that makes the floor's small-file copy 1.8x and nanofs's 1.3x
    // faster than unpinned threads (docs/benchmarks.md).
    // A possible CPU may be offline; its queue then serves from anywhere.
    let mut cpus = nix::sched::CpuSet::new();
    if let Err(e) =
        cpus.set(usize::from(qid)).and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus))
    {
        tracing::debug!(queue = qid, error = %e, "FUSE queue thread not pinned");
    }
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry> = match IoUring::builder().setup_single_issuer().build(2) {
        Ok(ring) => ring,
        Err(e) => {
            let _ = ready.send(Err(Error::new(e.kind(), format!("cannot set up an io_uring: {e}"))));
            return Ok(());
        }
    };
    let _ = ready.send(Ok(()));
    let mut entry = Entry::new();
    let mut next = entry.command(dev, CMD_REGISTER, qid, 0);
    loop {
        #[allow(unsafe_code)]
        // SAFETY: the entry's buffers and iovecs live as long as this function, beyond the
        // command's completion (the loop waits for it before touching them).
        unsafe {
            ring.submission().push(&next).map_err(|_| Error::other("io_uring submission queue full"))?;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        let Some(done) = ring.completion().next() else { continue };
        let res = done.result();
        if res < 0 {
            match -res {
                // Registered before the kernel finished processing `FUSE_INIT`.
                libc::EAGAIN => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    next = entry.command(dev, CMD_REGISTER, qid, 0);
                    continue;
                }
                // Unmounted: the kernel cancels every command in flight.
                libc::ENOTCONN | libc::ECONNABORTED | libc::ENODEV | libc::ECANCELED => return Ok(()),
                errno => return Err(Error::from_raw_os_error(errno)),
            }
        }
        let commit_id = answer(fs, &mut entry);
        next = entry.command(dev, CMD_COMMIT_AND_FETCH, qid, commit_id);
    }
}

/// Answers the request in `entry`'s buffers in place; returns the id to commit it with.
fn answer(fs: &impl Handler, entry: &mut Entry) -> u64 {
    let ent = &entry.header[ENT_IN_OUT..];
    let commit_id = u64::from_ne_bytes(ent[8..16].try_into().expect("8 bytes"));
    let payload_len = (u32::from_ne_bytes(ent[16..20].try_into().expect("4 bytes")) as usize).min(entry.payload.len());
    let (errno, body_len) = match InHeader::parse(&entry.header[..]) {
        None => (libc::EIO, 0),
        Some(h) => {
            // The operation's fixed struct is what the payload does not hold.
            let op_len = (h.len as usize).saturating_sub(IN_HEADER_LEN + payload_len).min(OP_IN);
            let head = &entry.header[OP_IN..OP_IN + op_len];
            let reply = fs.handle(&h, Args::new(head, &entry.payload[..payload_len]));
            match reply.parts() {
                Some((0, body)) if body.len() <= entry.payload.len() => {
                    let mut at = 0;
                    for slice in body.slices() {
                        entry.payload[at..at + slice.len()].copy_from_slice(slice);
                        at += slice.len();
                    }
                    (0, at)
                }
                Some((0, body)) => {
                    tracing::error!(len = body.len(), "FUSE reply larger than the ring buffer");
                    (libc::EIO, 0)
                }
                Some((errno, _)) => (errno, 0),
                // Nothing the ring carries goes unanswered; commit an empty reply.
                None => (0, 0),
            }
        }
    };
    let header = super::abi::out_header(commit_id, errno, body_len);
    entry.header[..header.len()].copy_from_slice(&header);
    entry.header[ENT_IN_OUT + 16..ENT_IN_OUT + 20].copy_from_slice(&(body_len as u32).to_ne_bytes());
    commit_id
}
