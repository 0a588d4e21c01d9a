//! The HTTP sidecar: a second thin front-end over the same engine as the FUSE mount.
//!
//! `/files/<path>` serves downloads (ranges, conditional requests, JSON listings) and
//! deletions, `/uploads` is a tus 1.0.0 endpoint for resumable uploads, `/healthz` and
//! `/readyz` report liveness. Every engine call is blocking and runs on tokio's blocking
//! pool; bodies stream through in constant memory. When the sidecar runs inside the mount
//! daemon, the names its changes touch are dropped from the kernel's caches.

mod adapt;
mod auth;
mod delta;
mod error;
mod events;
mod files;
mod gallery;
mod geo;
mod live;
mod media;
mod observe;
mod path;
mod render;
mod renditions;
mod stream;
mod throttle;
pub mod tls;
mod tus;
mod ui;

use crate::gallery::Galleries;
use crate::volume::Volume;
use axum::routing::{get, post};
use axum::Router;
use error::{ApiError, ApiResult};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the sidecar beyond the volume's `[sidecar]` section (`Default`: none).
#[derive(Debug, Clone, Default)]
pub struct SidecarConfig {
    /// How long an incomplete upload is kept; `None`: `[sidecar] upload_expiry_secs`,
    /// read at each use (it may be reloaded).
    pub upload_expiry: Option<Duration>,
    /// Largest upload accepted (`Tus-Max-Size`); `None`: `[sidecar] max_upload_gib`.
    pub max_upload: Option<u64>,
    /// Served over TLS (session cookies get `Secure`).
    pub tls: bool,
    /// The sidecar's own loopback address (`http://127.0.0.1:PORT`), for ffmpeg to read
    /// videos by URL with range requests.
    pub self_url: Option<String>,
    /// The address it listens on (offered to WebRTC peers when it is a specific one).
    pub listen: Option<std::net::SocketAddr>,
}

/// Largest delta manifest accepted (about 700,000 chunks: 700 GiB at the default size).
const MAX_MANIFEST: usize = 64 << 20;

/// Upload bodies written at once. Each holds a write window of up to a few MiB in the
/// engine, so this bounds the sidecar's memory whatever the number of clients; the others
/// wait with their bytes in the kernel's socket buffers.
const CONCURRENT_UPLOAD_WRITES: usize = 16;

/// State shared by the handlers.
pub struct Sidecar {
    vol: Arc<Volume>,
    galleries: Arc<Galleries>,
    config: SidecarConfig,
    upload_writers: tokio::sync::Semaphore,
    deltas: delta::Sessions,
    /// Uploads a PATCH is writing to: a second PATCH of the same upload meanwhile is
    /// refused (423), so two clients can never interleave bytes at one offset.
    busy_uploads: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Each whole upload's bytes hashed as they arrived.
    upload_hashes: tus::RunningHashes,
    /// Gallery items waiting for media facts and thumbnails.
    index_queue: media::IndexQueue,
    /// One item is indexed at a time: decoding is CPU-heavy and must not starve requests.
    indexing: tokio::sync::Mutex<()>,
    /// Key of `/internal/items`, random per process.
    internal_key: String,
    /// The packaging queue (`None` in tests of the HTTP layer alone).
    jobs: Option<Arc<crate::stream::jobs::Jobs>>,
    /// Layouts of fragmented MP4s served by byte ranges, by inode, with the inode's
    /// change stamp they were read at (`None`: not such a file).
    fmp4_layouts: std::sync::Mutex<std::collections::HashMap<crate::ids::Ino, Fmp4Layout>>,
    /// The WebRTC forwarding loop, started with the server (or why it could not start).
    sfu: std::sync::OnceLock<Result<Arc<crate::live::Sfu>, String>>,
    /// Who holds each live session, for the checks while it lasts.
    live_holders: live::Holders,
    /// Live streams packaged for HTTP viewers.
    hub: Arc<crate::live::Hub>,
    /// Failed password tries by name and network (`throttle`).
    logins: throttle::LoginThrottle,
    /// Password hashes computed at once.
    password_work: tokio::sync::Semaphore,
    /// When an HTTP viewer of a live stream (stream, credential tag) was last checked.
    live_checked: std::sync::Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
    /// The country database (`[access] geoip_db`).
    geo: geo::Geo,
}

/// A cached `crate::stream::fmp4` layout and the (ctime, size) of the file it describes.
type Fmp4Layout = ((i64, u32, u64), Option<Arc<crate::stream::fmp4::Layout>>);

/// Layouts kept at most; past that the cache starts over (a layout is re-read in one
/// pass over the file's fragment headers).
const MAX_FMP4_LAYOUTS: usize = 256;

impl Sidecar {
    /// A sidecar over the volume of `galleries`.
    #[must_use]
    pub fn new(
        galleries: Arc<Galleries>,
        jobs: Option<Arc<crate::stream::jobs::Jobs>>,
        config: SidecarConfig,
    ) -> Arc<Self> {
        let hub = crate::live::Hub::new(
            crate::live::HubConfig::from_config(&galleries.volume().config().media.streaming),
            Some(galleries.volume().clone()),
        );
        Arc::new(Self {
            vol: galleries.volume().clone(),
            galleries,
            config,
            upload_writers: tokio::sync::Semaphore::new(CONCURRENT_UPLOAD_WRITES),
            deltas: delta::Sessions::default(),
            busy_uploads: std::sync::Mutex::default(),
            upload_hashes: tus::RunningHashes::default(),
            index_queue: media::IndexQueue::default(),
            indexing: tokio::sync::Mutex::new(()),
            internal_key: crate::gallery::random_id(32),
            jobs,
            fmp4_layouts: std::sync::Mutex::default(),
            sfu: std::sync::OnceLock::new(),
            live_holders: std::sync::Mutex::default(),
            hub,
            logins: throttle::LoginThrottle::default(),
            password_work: tokio::sync::Semaphore::new(throttle::PASSWORD_WORKERS),
            live_checked: std::sync::Mutex::default(),
            geo: geo::Geo::default(),
        })
    }

    /// The layout of the file `ino` if it is a fragmented MP4 (read once per version of
    /// the file), with its attributes.
    async fn fmp4_layout(
        &self,
        ino: crate::ids::Ino,
    ) -> ApiResult<Option<(crate::volume::Attr, Arc<crate::stream::fmp4::Layout>)>> {
        let attr = self.blocking(move |vol| vol.getattr(ino)).await?;
        let stamp = (attr.inode.ctime.secs, attr.inode.ctime.nanos, attr.inode.size);
        let cached = self.fmp4_layouts.lock().expect("layouts").get(&ino).filter(|(s, _)| *s == stamp).cloned();
        let layout = match cached {
            Some((_, layout)) => layout,
            None => {
                let segment_seconds = f64::from(self.vol.config().media.streaming.segment_seconds);
                let size = attr.inode.size;
                let layout = self
                    .blocking(move |vol| {
                        let mut read = |at: u64, len: u32| {
                            vol.read(ino, at, len).map(|b| b.to_vec()).map_err(std::io::Error::other)
                        };
                        crate::stream::fmp4::layout(&mut read, size, segment_seconds).map_err(crate::volume::Error::Io)
                    })
                    .await?
                    .map(Arc::new);
                let mut cache = self.fmp4_layouts.lock().expect("layouts");
                if cache.len() >= MAX_FMP4_LAYOUTS {
                    cache.clear();
                }
                cache.insert(ino, (stamp, layout.clone()));
                layout
            }
        };
        Ok(layout.map(|l| (attr, l)))
    }

    /// Runs a blocking call on the blocking pool; the names it changes are dropped from a
    /// mount's kernel caches (`Volume::foreign`).
    async fn on_pool<T: Send + 'static, E: Send + 'static>(
        &self,
        f: impl FnOnce(&Galleries) -> Result<T, E> + Send + 'static,
    ) -> ApiResult<T>
    where
        ApiError: From<E>,
    {
        let galleries = self.galleries.clone();
        // The request's id goes along to the log lines of the engine call.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| galleries.volume().foreign(|| f(&galleries))))
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(ApiError::from)
    }

    /// An engine call, on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Volume) -> crate::volume::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        self.on_pool(move |g| f(g.volume())).await
    }

    /// How long an incomplete upload is kept.
    fn upload_expiry(&self) -> Duration {
        self.config.upload_expiry.unwrap_or_else(|| Duration::from_secs(self.vol.config().sidecar.upload_expiry_secs))
    }

    /// The largest upload accepted.
    fn max_upload(&self) -> u64 {
        self.config.max_upload.unwrap_or_else(|| self.vol.config().sidecar.max_upload_gib << 30)
    }

    /// Copies the figures of the services into the metrics, before a scrape.
    async fn set_service_gauges(&self) {
        let m = crate::metrics::get();
        if let Some(jobs) = &self.jobs {
            let list = jobs.list();
            for (kind, state) in
                [("queued", crate::stream::jobs::JobState::Queued), ("running", crate::stream::jobs::JobState::Running)]
            {
                let n = list.iter().filter(|j| j.state == state).count();
                m.packaging_jobs.get_or_create(&crate::metrics::KindLabel { kind }).set(n as i64);
            }
        }
        let live = self.hub.live();
        let mut viewers: u64 = live.iter().map(|(_, n)| u64::from(*n)).sum();
        if let Some(Ok(sfu)) = self.sfu.get() {
            for (name, _) in &live {
                viewers += sfu.status(name).await.map_or(0, |s| u64::from(s.viewers));
            }
        }
        m.live_streams.set(live.len() as i64);
        m.live_viewers.set(viewers as i64);
    }

    /// Appends `event`, with the client's address, to the audit trail (a failure to is
    /// logged: the act itself has happened).
    async fn audit(&self, client: observe::Client, event: crate::volume::AuditEvent) {
        let event = event.from_address(client.0);
        let _ = self
            .blocking(move |vol| {
                vol.audit_or_log(event);
                Ok(())
            })
            .await;
    }

    /// Where `client` is, by the `[access] geoip_db` database.
    fn country_of(&self, client: Option<std::net::IpAddr>) -> geo::Whereabouts {
        match client {
            Some(ip) => self.geo.locate(&self.vol.config().access.geoip_db, ip),
            None => geo::Whereabouts::Unknown,
        }
    }

    /// Runs `check`, a call that verifies the password tried for `name` from `client`:
    /// refused at once (429) while that name or network must wait, and counted when it
    /// fails with 401 (but not when a password is only asked for). At most
    /// `PASSWORD_WORKERS` such calls run at once.
    async fn password_try<T>(
        &self,
        name: &str,
        client: observe::Client,
        check: impl Future<Output = ApiResult<T>>,
    ) -> ApiResult<T> {
        if let Err(wait) = self.logins.check(name, client.0, std::time::Instant::now()) {
            return Err(ApiError::too_many("too many failed tries: wait before trying again", wait));
        }
        let slot = tokio::time::timeout(throttle::PASSWORD_QUEUE_WAIT, self.password_work.acquire()).await;
        let Ok(Ok(_slot)) = slot else {
            return Err(ApiError::too_many("too many logins at once", Duration::from_secs(1)));
        };
        let result = check.await;
        match &result {
            Ok(_) => self.logins.succeeded(name),
            // Asking for a link's password is not a wrong one.
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED && !e.password_required => {
                self.logins.failed(name, client.0, std::time::Instant::now());
            }
            Err(_) => {}
        }
        result
    }

    /// Records the outcome of a `password_try`: `success` when it passed, the same action
    /// with `.failed` and the reason when the password was refused, nothing when the try
    /// was turned away before any password was checked (a flood of those would fill the
    /// trail).
    async fn audit_password_try<T>(
        &self,
        client: observe::Client,
        result: &ApiResult<T>,
        success: impl FnOnce() -> crate::volume::AuditEvent,
    ) {
        let event = match result {
            Ok(_) => success(),
            Err(e) if e.status == axum::http::StatusCode::TOO_MANY_REQUESTS => return,
            Err(e) => {
                let mut event = success().detail(&e.message);
                event.action.push_str(".failed");
                event
            }
        };
        self.audit(client, event).await;
    }

    /// A gallery call, on the blocking pool.
    async fn gallery<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Galleries) -> crate::gallery::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        self.on_pool(f).await
    }
}

/// The routes.
pub fn router(state: Arc<Sidecar>) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/g/{id}", get(ui::index))
        .route("/s/{token}", get(ui::index))
        .route("/app.js", get(ui::script))
        .route("/style.css", get(ui::style))
        .route(ui::HLS_PATH, get(ui::hls))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(observe::metrics))
        .route("/files", get(files::get).head(files::get))
        .route("/files/", get(files::get).head(files::get))
        .route("/files/{*path}", get(files::get).head(files::get).delete(files::delete))
        .route(
            "/stream/{*path}",
            get(stream::get).head(stream::get).layer(axum::middleware::from_fn_with_state(state.clone(), stream::cors)),
        )
        .route("/render/{*path}", get(render::get).head(render::get))
        .route("/api/transfer", get(transfer_settings))
        .route("/api/adapt", get(adapt::get))
        .route("/openapi.json", get(openapi))
        .route("/api/delta", post(delta::start).layer(axum::extract::DefaultBodyLimit::max(MAX_MANIFEST)))
        .route("/api/delta/{id}/{index}", axum::routing::put(delta::put_chunk))
        .route("/api/delta/{id}/commit", post(delta::commit))
        .route("/uploads", post(tus::create).options(tus::options))
        .route("/uploads/{id}", axum::routing::head(tus::head).patch(tus::patch).delete(tus::terminate))
        .merge(gallery_routes(&state))
        .route("/internal/items/{ino}", get(media::internal_item).head(media::internal_item))
        .merge(live_routes(&state))
        // Upload bodies stream to the engine and are bounded by Upload-Length; the small
        // bodies that are read whole (manifest, a delta chunk) have limits of their own.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// The routes of the operations listener (`[sidecar] metrics_listen`): metrics and
/// health, nothing else.
pub fn ops_router(state: Arc<Sidecar>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(observe::metrics))
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// Serves `ops_router` on `listener` until the task is dropped.
pub async fn serve_ops<L>(listener: L, state: Arc<Sidecar>) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> observe::PeerAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    axum::serve(listener, ops_router(state).into_make_service_with_connect_info::<observe::PeerAddr>()).await
}

/// Live streams over WebRTC (docs/live.md).
fn live_routes(state: &Arc<Sidecar>) -> Router<Arc<Sidecar>> {
    use axum::routing::delete;
    let offers = axum::extract::DefaultBodyLimit::max(live::MAX_OFFER);
    Router::new()
        .route("/whip/{name}", post(live::whip).options(live::options).layer(offers))
        .route("/whep/{name}", post(live::whep).options(live::options).layer(offers))
        .route("/whip/{name}/{session}", delete(live::end).patch(live::patch))
        .route("/whep/{name}/{session}", delete(live::end).patch(live::patch))
        .route("/api/live/{name}", get(live::status))
        .route(
            "/live/{name}/{*file}",
            get(live::http).layer(axum::middleware::from_fn_with_state(state.clone(), stream::cors)),
        )
}

/// The gallery API (docs/galleries.md).
fn gallery_routes(state: &Arc<Sidecar>) -> Router<Arc<Sidecar>> {
    use axum::routing::{delete, patch, put};
    const G: &str = "/api/galleries/{id}";
    const I: &str = "/api/galleries/{id}/items/{item}";
    Router::new()
        .route("/api/login", post(gallery::login))
        .route("/api/logout", post(gallery::logout))
        .route("/api/me", get(gallery::me))
        .route("/api/share/open", post(gallery::open_link))
        .route("/api/galleries", get(gallery::list).post(gallery::create))
        .route(G, get(gallery::show).patch(gallery::retitle).delete(gallery::delete))
        .route(&format!("{G}/items"), get(gallery::items))
        .route(I, get(gallery::item).patch(gallery::rename).delete(gallery::delete_item))
        .route(&format!("{I}/content"), get(gallery::content).head(gallery::content))
        .route(&format!("{I}/stream/{{file}}"), get(stream::gallery_item).head(stream::gallery_item))
        .route(&format!("{I}/thumbnail"), get(media::thumbnail))
        .route(&format!("{I}/render"), get(render::item).head(render::item))
        .route(&format!("{I}/comments"), post(gallery::comment))
        .route(&format!("{I}/comments/{{c}}"), patch(gallery::comment_edit).delete(gallery::comment_delete))
        .route(&format!("{I}/annotations"), post(gallery::annotate))
        .route(&format!("{I}/annotations/{{a}}"), patch(gallery::annotation_edit).delete(gallery::annotation_delete))
        .route(&format!("{I}/reactions"), post(gallery::react))
        .route(&format!("{G}/members"), get(gallery::members))
        .route(&format!("{G}/members/{{user}}"), put(gallery::set_member).delete(gallery::remove_member))
        .route(&format!("{G}/owner"), post(gallery::transfer))
        .route(&format!("{G}/links"), get(gallery::links).post(gallery::link_create))
        .route(&format!("{G}/links/{{link}}"), delete(gallery::link_revoke))
        .route(&format!("{G}/events"), get(events::events))
        .route(&format!("{G}/streams"), get(live::gallery_streams))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), galleries_enabled))
}

/// Turns the gallery API away while `[media.collaboration] enabled = false`.
async fn galleries_enabled(
    axum::extract::State(state): axum::extract::State<Arc<Sidecar>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.vol.config().media.collaboration.enabled {
        let why = "shared galleries are turned off ([media.collaboration] enabled = false)";
        return ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    next.run(req).await
}

/// `GET /readyz`: 200 while the volume takes writes, else 503 and why (read-only, disk
/// full, the database failing).
async fn readyz(axum::extract::State(state): axum::extract::State<Arc<Sidecar>>) -> ApiResult<&'static str> {
    state.blocking(|vol| vol.stats()).await?;
    state.vol.writable().map_err(|why| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, why))?;
    Ok("ready\n")
}

/// `GET /openapi.json`: docs/openapi.json, the API this module serves.
async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("../../docs/openapi.json"))
}

/// RFC 9530's digest of a file's whole content (the representation of a `GET` without
/// ranges), and the request header that asks for it.
const REPR_DIGEST: &str = "repr-digest";
/// See [`REPR_DIGEST`].
const WANT_REPR_DIGEST: &str = "want-repr-digest";
/// The algorithm key of the fingerprint in those headers: BLAKE2b-256 as `b2sum -l 256`.
const FINGERPRINT_ALGORITHM: &str = "blake2b-256";

/// Whether `Want-Repr-Digest` asks for the fingerprint (a preference above 0).
pub(crate) fn wants_fingerprint(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all(WANT_REPR_DIGEST).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let (key, pref) = item.split_once('=').unwrap_or((item, "1"));
        key.trim().eq_ignore_ascii_case(FINGERPRINT_ALGORITHM) && pref.trim().parse::<u8>().is_ok_and(|p| p > 0)
    })
}

/// What `GET /api/transfer` tells the transfer client.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TransferInfo {
    /// The volume's `[media.chunking]`: the client's defaults.
    pub chunking: crate::config::Chunking,
    /// FastCDC sizes in KiB (min, avg, max), for delta manifests.
    pub cdc_kib: [u32; 3],
    /// The key of the volume's gear table (hex), for delta manifests: only to a token that
    /// may write, and absent for a volume with FastCDC's public table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunker_key: Option<String>,
}

/// `GET /api/transfer`.
async fn transfer_settings(
    axum::extract::State(state): axum::extract::State<Arc<Sidecar>>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::Json<TransferInfo>> {
    let token = auth::authenticate(&state, &headers).await?;
    let c = state.vol.config();
    let d = &c.media.deduplication;
    Ok(axum::Json(TransferInfo {
        chunking: c.media.chunking.clone(),
        cdc_kib: [d.min_chunk_size_kb, d.avg_chunk_size_kb, d.max_chunk_size_kb],
        // It protects the boundaries from whoever holds a copy of the volume, not from
        // someone who may write to it (who could probe them with chosen data anyway).
        chunker_key: token
            .allow
            .contains(&crate::volume::Permission::Write)
            .then(|| state.vol.chunker_key_hex())
            .flatten(),
    }))
}

/// Starts the WebRTC loop when `[media.streaming] enable_webrtc` is on; a failure (the UDP
/// port is taken, say) is logged and answers WHIP and WHEP with 503.
async fn start_live(state: &Arc<Sidecar>) {
    // Recordings a crash cut short go where they belong first.
    let galleries = state.galleries.clone();
    let recovered = tokio::task::spawn_blocking(move || {
        crate::live::record::recover(galleries.volume(), |name| {
            galleries.stream(name).and_then(|s| galleries.stream_dir_path(&s)).ok()
        })
    })
    .await;
    if let Ok(Err(e)) = recovered {
        tracing::error!(error = %e, "cannot look for recordings cut short");
    }
    let st = &state.vol.config().media.streaming;
    if !st.enable_webrtc && st.rtmp_listen.is_empty() {
        return;
    }
    let config = crate::live::SfuConfig::from_config(st, state.config.listen.map(|a| a.ip()));
    let sfu = crate::live::Sfu::start(config, state.galleries.clone(), state.hub.clone()).await.map_err(|e| {
        tracing::error!(error = %e, "live streams are unavailable");
        e.to_string()
    });
    let _ = state.sfu.set(sfu);
}

/// Serves RTMP publishers when `[media.streaming] rtmp_listen` is set; a failure to bind
/// is logged and the rest goes on.
async fn start_rtmp(state: &Arc<Sidecar>) -> Option<tokio::task::JoinHandle<()>> {
    let addr = state.vol.config().media.streaming.rtmp_listen.clone();
    if addr.is_empty() {
        return None;
    }
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => {
            tracing::info!(addr = %l.local_addr().map_or(addr, |a| a.to_string()), "RTMP publishers accepted");
            Some(tokio::spawn(crate::live::rtmp::serve(l, Arc::new(live::RtmpPublishers(state.clone())))))
        }
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen for RTMP publishers");
            None
        }
    }
}

/// Serves on `listener` (plain TCP or `tls::TlsListener`) until `shutdown` resolves;
/// requests in flight then finish.
pub async fn serve<L>(
    listener: L,
    state: Arc<Sidecar>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> observe::PeerAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let sweeper = tokio::spawn(tus::expire_loop(state.clone()));
    let indexer = tokio::spawn(media::index_loop(state.clone()));
    let housekeeping = tokio::spawn(gallery::housekeeping(state.clone()));
    let job_events = tokio::spawn(renditions::events_loop(state.clone()));
    start_live(&state).await;
    let rtmp = start_rtmp(&state).await;
    let live_access = tokio::spawn(live::watch_access(state.clone()));
    let app = router(state).into_make_service_with_connect_info::<observe::PeerAddr>();
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    live_access.abort();
    if let Some(r) = rtmp {
        r.abort();
    }
    sweeper.abort();
    indexer.abort();
    housekeeping.abort();
    job_events.abort();
    result
}
