//! `nanofs mount VOLUME MOUNTPOINT`: unlock, daemonise (like sshfs), mount, serve.
//!
//! Everything that can fail on bad input (volume, passphrase, mount point) is checked in
//! the calling process, before anything is opened for writing, so the error is one clear
//! line and the volume is untouched. The daemon reports its start-up result through a
//! pipe; `mount` returns once the mount is ready.

use super::{credential, UnlockArgs};
use crate::config::FuseTransport;
use crate::control;
use crate::fs::MountConfig;
use crate::volume::{Error as VolumeError, OpenOptions, Volume};
use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{SigSet, Signal};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Writes idle this long are committed in the background (ext4's default commit interval).
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Where to mount it (an existing directory).
    mountpoint: PathBuf,
    #[command(flatten)]
    passphrase: UnlockArgs,
    /// Stay in the foreground and log to stderr.
    #[arg(short, long)]
    foreground: bool,
    /// How log lines are written (to VOLUME/nanofs.log, or stderr in the foreground).
    #[arg(long, value_enum, default_value_t)]
    log_format: super::LogFormat,
    /// Mount options: allow_other, ro, cache_mb=N, uring, transport=auto|uring|dev
    /// (comma-separated, repeatable).
    #[arg(short = 'o', value_name = "OPT,...")]
    options: Vec<String>,
    #[command(flatten)]
    http: super::serve::ListenArgs,
}

/// Parsed `-o` options.
#[derive(Debug, Default, PartialEq)]
struct Options {
    allow_other: bool,
    read_only: bool,
    cache_mb: Option<u32>,
    transport: Option<FuseTransport>,
}

fn parse_options(list: &[String]) -> anyhow::Result<Options> {
    let mut o = Options::default();
    for opt in list.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()) {
        match opt.split_once('=') {
            None if opt == "allow_other" => o.allow_other = true,
            None if opt == "ro" => o.read_only = true,
            None if opt == "rw" => o.read_only = false,
            None if opt == "uring" => o.transport = Some(FuseTransport::Uring),
            Some(("transport", v)) => o.transport = Some(v.parse().map_err(|e| anyhow!("-o transport={v}: {e}"))?),
            Some(("cache_mb", v)) => {
                let n: u32 = v.parse().map_err(|_| anyhow!("-o cache_mb={v}: not a number"))?;
                if !(8..=65536).contains(&n) {
                    bail!("-o cache_mb={n}: must be 8 to 65536");
                }
                o.cache_mb = Some(n);
            }
            _ => bail!("unknown mount option {opt:?} (known: allow_other, ro, rw, cache_mb=N, uring, transport=auto|uring|dev)"),
        }
    }
    Ok(o)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = parse_options(&args.options)?;
    let dir =
        std::fs::canonicalize(&args.volume).map_err(|_| anyhow!("volume {} does not exist", args.volume.display()))?;
    crate::volume::header::Header::load(&dir)?;
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .map_err(|_| anyhow!("mount point {} does not exist", args.mountpoint.display()))?;
    if !mountpoint.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    if let Some(m) = super::mounts::mount_at(&mountpoint) {
        bail!("mount point {} is already in use ({} is mounted there)", mountpoint.display(), m.source);
    }
    if let Some(control::Response::Status { pid, mountpoint: at }) = control::ask(&dir, &control::Request::Status) {
        if at.as_os_str().is_empty() {
            bail!("volume {} is in use by `nanofs serve` (pid {pid})", dir.display());
        }
        bail!("volume {} is already mounted at {} (daemon pid {pid})", dir.display(), at.display());
    }
    let cred = credential::get(&args.passphrase)?;
    let key = match Volume::unlock(&dir, &cred) {
        Ok(k) => k,
        Err(VolumeError::WrongPassphrase) => bail!("wrong passphrase for volume {}", dir.display()),
        Err(VolumeError::WrongIdentity) => bail!("this identity opens no key slot of volume {}", dir.display()),
        Err(e) => return Err(e).with_context(|| format!("cannot unlock {}", dir.display())),
    };
    drop(cred);
    let open = OpenOptions { read_only: opts.read_only, cache_mb: opts.cache_mb };
    let cfg = MountConfig {
        allow_other: opts.allow_other,
        read_only: opts.read_only,
        fsname: dir.display().to_string(),
        transport: opts.transport,
    };
    if args.foreground {
        super::install_logging(args.log_format, std::io::stderr, true);
        return serve(&dir, &mountpoint, key, &open, &cfg, &args.http, None);
    }
    let (read_end, write_end) = nix::unistd::pipe()?;
    if daemonize()? {
        drop(write_end);
        let mut answer = String::new();
        std::fs::File::from(read_end).read_to_string(&mut answer)?;
        return match answer.strip_prefix("OK") {
            Some(_) => Ok(()),
            None if answer.is_empty() => {
                bail!("the daemon stopped during start-up; see {}", dir.join("nanofs.log").display())
            }
            None => bail!("{}", answer.trim_end()),
        };
    }
    drop(read_end);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("nanofs.log"))?;
    super::install_logging(args.log_format, Mutex::new(log), false);
    // stderr goes to /dev/null: a panic must reach the log instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}");
        default_hook(info);
    }));
    redirect_stdio()?;
    let result = serve(&dir, &mountpoint, key, &open, &cfg, &args.http, Some(write_end));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    result
}

/// Forks; returns true in the parent. The child starts a new session, detached from the
/// terminal. Called before any thread exists, as fork requires.
#[allow(unsafe_code)]
fn daemonize() -> anyhow::Result<bool> {
    // SAFETY: the process is single-threaded here (no runtime, pool or database started yet).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => Ok(true),
        nix::unistd::ForkResult::Child => {
            nix::unistd::setsid()?;
            std::env::set_current_dir("/")?;
            Ok(false)
        }
    }
}

fn redirect_stdio() -> anyhow::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}

/// Opens, mounts and serves until unmounted or signalled; reports readiness on `ready`.
fn serve(
    dir: &Path,
    mountpoint: &Path,
    key: crate::crypto::keys::Keyring,
    open: &OpenOptions,
    cfg: &MountConfig,
    http: &super::serve::ListenArgs,
    ready: Option<OwnedFd>,
) -> anyhow::Result<()> {
    // Termination signals are taken by one thread (sigwait); block them before any other
    // thread starts, so all threads inherit the mask.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block()?;
    limit_malloc_arenas();
    let started = (|| -> anyhow::Result<_> {
        let vol = Arc::new(Volume::open(dir, key, open).map_err(|e| match e {
            VolumeError::Store(crate::store::Error::Locked) => {
                anyhow!("volume {} is in use by another process", dir.display())
            }
            e => anyhow!(e).context(format!("cannot open volume {}", dir.display())),
        })?);
        // Before the mount serves anything: galleries hide their thumbnails directory.
        let galleries = crate::gallery::Galleries::open(vol.clone())?;
        let session = crate::fs::mount(vol.clone(), mountpoint, cfg)
            .with_context(|| format!("cannot mount at {}", mountpoint.display()))?;
        vol.set_entry_observer(session.entry_invalidator());
        let jobs = crate::stream::jobs::Jobs::start(vol.clone())?;
        control::serve(galleries.clone(), jobs.clone(), mountpoint.to_path_buf())
            .context("cannot open the control socket")?;
        let sidecar = match http.listen {
            Some(addr) => Some(super::serve::start(galleries, jobs.clone(), addr, &http.tls)?),
            None => None,
        };
        Ok((vol, session, sidecar, jobs))
    })();
    let (vol, session, sidecar, jobs) = match started {
        Ok(s) => s,
        Err(e) => {
            if let Some(fd) = ready {
                let _ = std::fs::File::from(fd).write_all(format!("{e:#}\n").as_bytes());
            }
            return Err(e);
        }
    };
    tracing::info!(volume = %dir.display(), mountpoint = %mountpoint.display(), "mounted");
    // Closed large files are committed on this thread, so `close` does not wait for it.
    let committer = vol.clone();
    std::thread::Builder::new().name("committer".into()).spawn(move || committer.run_committer())?;
    let background = session.spawn()?;
    if let Some(fd) = ready {
        std::fs::File::from(fd).write_all(b"OK\n")?;
    }
    let mp = mountpoint.to_path_buf();
    let reloader = vol.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Ok(sig) = super::serve::wait_for_stop(&signals, &reloader) {
            tracing::info!(signal = ?sig, "unmounting");
            if let Err(e) = super::umount::unmount(&mp) {
                tracing::error!(error = %e, "unmount failed; retrying lazily");
                let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    })?;
    spawn_maintenance(vol.clone())?;
    let joined = background.join();
    if let Some(s) = sidecar {
        s.stop();
    }
    jobs.shutdown();
    let closed = vol.close();
    control::remove_socket(dir);
    joined.context("FUSE session failed")?;
    closed.context("flushing the volume failed")?;
    tracing::info!("unmounted cleanly");
    Ok(())
}

/// glibc gives every thread that allocates its own arena; with chunk-sized buffers freed on
/// other threads that fragments into hundreds of MiB of resident memory. Two arenas keep
/// the daemon's memory close to what it uses.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// How often the daemon applies the retention policies (trash expiry, scheduled snapshots).
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the daemon's maintenance thread. It commits idle writes every few seconds, so a
/// crash loses at most that much unsynced data. It collects garbage when garbage makes the
/// volume outgrow its disk budget or the disk runs low (`Volume::reclaim_if_due`), and in
/// any case every `gc_interval_hours`, applies `[retention]` every minute, and on an
/// object store backs the metadata up every `[store] meta_backup_every`. Used by `mount`
/// and by `serve`.
pub(super) fn spawn_maintenance(worker: Arc<Volume>) -> std::io::Result<()> {
    std::thread::Builder::new().name("maintenance".into()).spawn(move || {
        let mut last_gc = std::time::Instant::now();
        let mut last_backup = std::time::Instant::now();
        let mut last_retention: Option<std::time::Instant> = None;
        let mut last_schedule_error = String::new();
        loop {
            std::thread::sleep(COMMIT_INTERVAL);
            // Read each round: a configuration reload may change it.
            let gc_every =
                std::time::Duration::from_secs(u64::from(worker.config().media.deduplication.gc_interval_hours) * 3600);
            if let Err(e) = worker.commit_idle(COMMIT_INTERVAL) {
                tracing::error!(error = %e, "background commit failed");
            }
            if !gc_every.is_zero() && last_gc.elapsed() >= gc_every && !worker.is_read_only() {
                last_gc = std::time::Instant::now();
                if let Err(e) = worker.gc() {
                    tracing::error!(error = %e, "scheduled garbage collection failed");
                }
            } else if let Err(e) = worker.reclaim_if_due() {
                tracing::error!(error = %e, "garbage collection for space failed");
            }
            let store = &worker.config().store;
            let backup_every = store.meta_backup_interval();
            if store.backend == crate::config::StoreBackend::S3
                && !backup_every.is_zero()
                && last_backup.elapsed() >= backup_every
                && !worker.is_read_only()
            {
                last_backup = std::time::Instant::now();
                if let Err(e) = worker.meta_backup() {
                    tracing::error!(error = %e, "scheduled metadata backup failed");
                }
            }
            if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_INTERVAL) && !worker.is_read_only() {
                last_retention = Some(std::time::Instant::now());
                // Changes outside the mount's own requests: the kernel must drop what it cached.
                if let Err(e) = worker.foreign(|| worker.trash_expire()) {
                    tracing::error!(error = %e, "emptying the trash of expired files failed");
                }
                match worker.foreign(|| worker.snapshot_schedules(true, false)) {
                    Ok(r) => {
                        for name in &r.taken {
                            tracing::info!(snapshot = name, "scheduled snapshot taken");
                        }
                        for name in &r.forgotten {
                            tracing::info!(snapshot = name, "scheduled snapshot deleted: no count keeps it");
                        }
                        last_schedule_error.clear();
                    }
                    // Said once, not every minute.
                    Err(e) if e.to_string() == last_schedule_error => {}
                    Err(e) => {
                        tracing::error!(error = %e, "scheduled snapshots failed");
                        last_schedule_error = e.to_string();
                    }
                }
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_parse() {
        let o = parse_options(&["allow_other,cache_mb=128".into(), "ro".into()]).unwrap();
        assert_eq!(o, Options { allow_other: true, read_only: true, cache_mb: Some(128), transport: None });
        assert_eq!(parse_options(&["uring".into()]).unwrap().transport, Some(FuseTransport::Uring));
        assert_eq!(parse_options(&["transport=dev".into()]).unwrap().transport, Some(FuseTransport::Dev));
        assert!(parse_options(&["transport=pigeon".into()]).unwrap_err().to_string().contains("pigeon"));
        assert!(parse_options(&["cache_mb=1".into()]).is_err());
        assert!(parse_options(&["bogus".into()]).unwrap_err().to_string().contains("bogus"));
    }
}
