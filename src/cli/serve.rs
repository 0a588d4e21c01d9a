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
    let ops = ops_listener(&vol, tls_config.is_some() || tls.allow_plain_http)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let local = if addr.ip().is_unspecified() {
        SocketAddr::new(
            if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            addr.port(),
        )
    } else {
        addr
    };
    let config = SidecarConfig {
        tls: tls_config.is_some(),
        self_url: Some(format!("{scheme}://{local}")),
        listen: Some(addr),
        ..SidecarConfig::default()
    };
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
            let ops = ops.and_then(|l| match tokio::net::TcpListener::from_std(l) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(error = %e, "cannot use the metrics socket");
                    None
                }
            });
            let ops = ops.map(|l| {
                let (state, tls) = (state.clone(), tls_config.clone());
                tokio::spawn(async move {
                    let served = match tls {
                        Some(config) => match crate::http::tls::TlsListener::new(l, config) {
                            Ok(l) => crate::http::serve_ops(l, state).await,
                            Err(e) => Err(e),
                        },
                        None => crate::http::serve_ops(l, state).await,
                    };
                    if let Err(e) = served {
                        tracing::error!(error = %e, "the metrics listener failed");
                    }
                })
            });
            let served = match tls_config {
                Some(config) => match crate::http::tls::TlsListener::new(listener, config) {
                    Ok(l) => crate::http::serve(l, state, shutdown).await,
                    Err(e) => Err(e),
                },
                None => crate::http::serve(listener, state, shutdown).await,
            };
            if let Some(ops) = ops {
                ops.abort();
            }
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP sidecar failed");
            }
        });
    })?;
    tracing::info!(%addr, scheme, "HTTP sidecar listening");
    Ok(SidecarHandle { stop, thread, addr, scheme })
}

/// Binds `[sidecar] metrics_listen` if set: plain HTTP only on loopback unless the sidecar
/// serves TLS (the same certificate serves it) or plain HTTP is allowed.
fn ops_listener(vol: &Volume, tls_or_allowed: bool) -> anyhow::Result<Option<std::net::TcpListener>> {
    let addr = vol.config().sidecar.metrics_listen.clone();
    if addr.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = addr.parse().context("sidecar.metrics_listen")?;
    if !addr.ip().is_loopback() && !tls_or_allowed {
        bail!("refusing plain HTTP for metrics on {addr}, which is not loopback (serve TLS, or --allow-plain-http)");
    }
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
    l.set_nonblocking(true)?;
    tracing::info!(addr = %l.local_addr()?, "metrics listening");
    Ok(Some(l))
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
