//! `nanofs serve VOLUME --listen ADDR`: the HTTP sidecar on its own, and the plumbing that
//! `nanofs mount --serve ADDR` shares: binding, the runtime thread, orderly shutdown.

use super::{credential, UnlockArgs};
use crate::control;
use crate::http::{Invalidator, Sidecar, SidecarConfig};
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
    /// Allow plain HTTP on an address other than loopback.
    #[arg(long)]
    pub allow_plain_http: bool,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Address to listen on (e.g. 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Allow plain HTTP on an address other than loopback.
    #[arg(long)]
    allow_plain_http: bool,
    #[command(flatten)]
    unlock: UnlockArgs,
}

/// A running sidecar: stop it to let requests in flight finish.
pub struct SidecarHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    /// The bound address.
    pub addr: SocketAddr,
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
    vol: Arc<Volume>,
    addr: SocketAddr,
    allow_plain: bool,
    invalidate: Option<Invalidator>,
) -> anyhow::Result<SidecarHandle> {
    if !addr.ip().is_loopback() && !allow_plain {
        bail!("refusing plain HTTP on {addr}, which is not loopback (add --allow-plain-http)");
    }
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
    let config = SidecarConfig::from_volume(&vol);
    let state = Sidecar::new(vol, invalidate, config);
    let thread = std::thread::Builder::new().name("sidecar".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "cannot use the listening socket"),
            };
            if let Err(e) = crate::http::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            {
                tracing::error!(error = %e, "HTTP sidecar failed");
            }
        });
    })?;
    tracing::info!(%addr, "HTTP sidecar listening");
    Ok(SidecarHandle { stop, thread, addr })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::init_logging();
    let dir = std::fs::canonicalize(&args.volume)
        .with_context(|| format!("volume {} does not exist", args.volume.display()))?;
    let keys = Volume::unlock(&dir, &credential::get(&args.unlock)?)?;
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block()?;
    let vol = Arc::new(
        Volume::open(&dir, keys, &OpenOptions::default()).with_context(|| format!("cannot open {}", dir.display()))?,
    );
    control::serve(vol.clone(), PathBuf::new()).context("cannot open the control socket")?;
    let handle = match start(vol.clone(), args.listen, args.allow_plain_http, None) {
        Ok(h) => h,
        Err(e) => {
            control::remove_socket(&dir);
            vol.close()?;
            return Err(e);
        }
    };
    println!("listening on http://{}", handle.addr);
    use std::io::Write;
    std::io::stdout().flush()?;
    let sig = signals.wait()?;
    tracing::info!(signal = ?sig, "stopping");
    handle.stop();
    control::remove_socket(&dir);
    vol.close()?;
    Ok(())
}
