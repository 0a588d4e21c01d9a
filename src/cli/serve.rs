//! `nanofs serve VOLUME --listen ADDR`: the HTTP sidecar on its own, and the plumbing that
//! `nanofs mount --serve ADDR` shares: binding, the runtime thread, orderly shutdown.

use super::{credential, UnlockArgs};
use crate::control;
use crate::gallery::Galleries;
use crate::http::{Sidecar, SidecarConfig};
use crate::stream::jobs::Jobs;
use crate::volume::{OpenOptions, Volume};
use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the sidecar listens; shared by `serve` and `mount --serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Serve HTTP on this address (e.g. 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long = "serve", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// HTTPS settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate kept in VOLUME/tls/ (for a LAN).
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
    /// Allow plain HTTP on an address other than loopback.
    #[arg(long)]
    pub allow_plain_http: bool,
}

impl TlsArgs {
    /// The certificate and key to serve with, if HTTPS is asked for.
    fn files(&self, volume: &std::path::Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
        if self.tls_self_signed {
            let dir = volume.join("tls");
            return Ok(Some(crate::http::tls::self_signed(&dir).context("cannot make a self-signed certificate")?));
        }
        Ok(self.tls_cert.clone().zip(self.tls_key.clone()))
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Address to listen on (e.g. 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    unlock: UnlockArgs,
    /// How log lines are written (to stderr).
    #[arg(long, value_enum, default_value_t)]
    log_format: super::LogFormat,
}

/// A running sidecar: stop it to let requests in flight finish.
pub struct SidecarHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    /// The bound address.
    pub addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
}

impl SidecarHandle {
    /// Stops accepting, waits for requests in flight, returns.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Binds `addr` (refusing plain HTTP off loopback unless allowed) and serves `vol` on a
/// runtime thread of its own.
pub fn start(
    galleries: Arc<Galleries>,
    jobs: Arc<Jobs>,
    addr: SocketAddr,
    tls: &TlsArgs,
) -> anyhow::Result<SidecarHandle> {
    let vol = galleries.volume().clone();
    let tls_config = match tls.files(vol.dir())? {
        Some((cert, key)) => Some(crate::http::tls::server_config(&cert, &key)?),
        None if !addr.ip().is_loopback() && !tls.allow_plain_http => {
            bail!(
                "refusing plain HTTP on {addr}, which is not loopback \
                 (give --tls-cert/--tls-key, --tls-self-signed, or --allow-plain-http)"
            )
        }
        None => None,
    };
    let scheme = if tls_config.is_some() { "https" } else { "http" };
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = SidecarConfig::from_volume(&vol);
    config.tls = tls_config.is_some();
    let local = if addr.ip().is_unspecified() {
        SocketAddr::new(
            if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            addr.port(),
        )
    } else {
        addr
    };
    config.self_url = Some(format!("{scheme}://{local}"));
    config.listen = Some(addr);
    let state = Sidecar::new(galleries, Some(jobs), config);
    let thread = std::thread::Builder::new().name("sidecar".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "cannot use the listening socket"),
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            let served = match tls_config {
                Some(config) => match crate::http::tls::TlsListener::new(listener, config) {
                    Ok(l) => crate::http::serve(l, state, shutdown).await,
                    Err(e) => Err(e),
                },
                None => crate::http::serve(listener, state, shutdown).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP sidecar failed");
            }
        });
    })?;
    tracing::info!(%addr, scheme, "HTTP sidecar listening");
    Ok(SidecarHandle { stop, thread, addr, scheme })
}

/// Waits for SIGTERM or SIGINT (returned); each SIGHUP meanwhile reloads the volume's
/// configuration, as daemons do.
pub(super) fn wait_for_stop(signals: &SigSet, vol: &Volume) -> nix::Result<Signal> {
    loop {
        let sig = signals.wait()?;
        if sig != Signal::SIGHUP {
            return Ok(sig);
        }
        if let Err(e) = vol.reload_config() {
            tracing::error!("configuration not reloaded, nothing changed: {e}");
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::install_logging(args.log_format, std::io::stderr, true);
    let dir = std::fs::canonicalize(&args.volume)
        .with_context(|| format!("volume {} does not exist", args.volume.display()))?;
    let keys = Volume::unlock(&dir, &credential::get(&args.unlock)?)?;
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block()?;
    let galleries = super::open_volume(&dir, keys, &OpenOptions::default())?;
    let vol = galleries.volume().clone();
    let jobs = Jobs::start(vol.clone())?;
    control::serve(galleries.clone(), jobs.clone(), PathBuf::new()).context("cannot open the control socket")?;
    super::mount::spawn_maintenance(vol.clone())?;
    let handle = match start(galleries, jobs.clone(), args.listen, &args.tls) {
        Ok(h) => h,
        Err(e) => {
            control::remove_socket(&dir);
            jobs.shutdown();
            vol.close()?;
            return Err(e);
        }
    };
    println!("listening on {}://{}", handle.scheme, handle.addr);
    use std::io::Write;
    std::io::stdout().flush()?;
    let sig = wait_for_stop(&signals, &vol)?;
    tracing::info!(signal = ?sig, "stopping");
    handle.stop();
    control::remove_socket(&dir);
    jobs.shutdown();
    vol.close()?;
    Ok(())
}
