//! Live streams over HTTP (docs/live.md): WHIP (`POST /whip/NAME`, RFC 9725) for
//! publishers and WHEP (`POST /whep/NAME`) for viewers, each answering an SDP offer with
//! `201 Created`, the SDP answer and the session's URL in `Location` (DELETE it to end the
//! session); low-latency HLS and DASH under `/live/NAME/`; and the decisions on RTMP
//! publishers (`RtmpPublishers`).
//!
//! Who may publish: the stream's publish key as the bearer token, or a caller who may
//! upload to its gallery (contributor and up; a token with write on its path). Who may
//! watch: a caller who may read its gallery (viewer and up, share links included), or a
//! token with read on its path. Access is checked again while sessions last: a member's
//! change or a revoked link ends the viewer's session at once, a revoked token or an
//! expired link within `RECHECK`, a new publish key ends the publisher's.

use super::auth::{caller, Caller};
use super::error::{ApiError, ApiResult};
use super::Sidecar;
use crate::gallery::streams::StreamRecord;
use crate::gallery::users::Principal;
use crate::gallery::Action;
use crate::live::hls::Wait;
use crate::live::{Refusal, SessionId, StreamRef};
use crate::volume::Permission;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest SDP offer read.
pub(super) const MAX_OFFER: usize = 64 << 10;
/// How often every session's access is checked again (tokens and links can end without
/// an event).
const RECHECK: Duration = Duration::from_secs(2);
/// What a refused publisher or viewer is told to wait.
const RETRY_AFTER_SECS: &str = "10";

/// Who holds a session, for the checks while it lasts.
#[derive(Clone)]
pub(super) struct Holder {
    stream: String,
    /// `None`: a publisher with the stream's key (ended when the key changes).
    caller: Option<Caller>,
    publisher: bool,
}

/// Sessions by id.
pub(super) type Holders = std::sync::Mutex<HashMap<SessionId, Holder>>;

fn refusal(r: Refusal) -> ApiError {
    let status = match r {
        Refusal::BadOffer(_) => StatusCode::BAD_REQUEST,
        Refusal::Busy(_) => StatusCode::CONFLICT,
        Refusal::NotLive(_) => StatusCode::NOT_FOUND,
        Refusal::TooManyStreams(_) | Refusal::TooManyViewers(_) | Refusal::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    ApiError::new(status, r.to_string())
}

/// A 503 with `Retry-After`, as every over-limit answer is.
fn with_retry(e: ApiError) -> Response {
    let status = e.status;
    let mut r = e.into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    r
}

fn sdp_offer(headers: &HeaderMap, body: &Bytes) -> ApiResult<String> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.trim().to_ascii_lowercase().starts_with("application/sdp") {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the SDP offer as application/sdp"));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the SDP offer is not UTF-8"))?;
    if !text.starts_with("v=0") {
        return Err(ApiError::bad_request("the body is not an SDP offer (it must start with v=0)"));
    }
    Ok(text.to_string())
}

async fn stream_record(state: &Sidecar, name: &str) -> ApiResult<StreamRecord> {
    let n = name.to_string();
    state.gallery(move |gs| gs.stream(&n)).await.map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::new(e.status, "no such stream")
        } else {
            e
        }
    })
}

/// What the media plane needs of a stream: its directory resolved, whether to record it.
async fn stream_ref(state: &Sidecar, rec: &StreamRecord) -> ApiResult<StreamRef> {
    let r = rec.clone();
    let dir = state.gallery(move |gs| gs.stream_dir_path(&r)).await?;
    Ok(StreamRef {
        name: rec.name.clone(),
        gallery: rec.gallery.clone(),
        record: rec.record || state.vol.config().media.streaming.record_live,
        dir,
    })
}

/// Whether `caller` may watch the stream (or publish to it, `publish`): in its gallery by
/// role (viewer, contributor), on its path by a token's permission (read, write).
pub(super) async fn allowed(state: &Sidecar, rec: &StreamRecord, caller: &Caller, publish: bool) -> ApiResult<()> {
    if let Some(g) = &rec.gallery {
        let c = super::gallery::ctx_of(state, caller.clone(), g).await?;
        c.actor.require(if publish { Action::Upload } else { Action::Read })?;
        if let Caller::Principal(Principal::Link { id, .. }) = caller {
            let id = id.clone();
            state
                .gallery(move |gs| gs.link_principal(&id))
                .await?
                .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "the share link was revoked or has expired"))?;
        }
        return Ok(());
    }
    let path = rec.path.clone().unwrap_or_default();
    let need = if publish { Permission::Write } else { Permission::Read };
    match caller {
        Caller::Scoped(t) if t.covers(&path) && t.allow.contains(&need) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the stream belongs to {path}, which this caller may not {}",
                if publish { "write" } else { "read" }
            ),
        )),
    }
}

/// The sessions' answer: 201 with the SDP answer, `Location`, and the ICE servers.
fn created(state: &Sidecar, kind: &str, name: &str, id: SessionId, answer: String) -> Response {
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&format!("/{kind}/{name}/{id}")) {
        h.insert(header::LOCATION, v);
    }
    ice_links(state, h);
    r
}

/// `Link: <stun:…>; rel="ice-server"` for each configured server.
fn ice_links(state: &Sidecar, h: &mut HeaderMap) {
    for url in &state.vol.config().media.streaming.ice_servers {
        if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")) {
            h.append(header::LINK, v);
        }
    }
}

/// The loop, for a WebRTC session.
fn webrtc(state: &Sidecar) -> ApiResult<Arc<crate::live::Sfu>> {
    if !state.vol.config().media.streaming.enable_webrtc {
        return Err(refusal(Refusal::Unavailable("WebRTC is off (media.streaming.enable_webrtc)".into())));
    }
    sfu(state)
}

fn sfu(state: &Sidecar) -> ApiResult<Arc<crate::live::Sfu>> {
    match state.sfu.get() {
        Some(Ok(s)) => Ok(s.clone()),
        Some(Err(why)) => Err(refusal(Refusal::Unavailable(why.clone()))),
        None => Err(refusal(Refusal::Unavailable("WebRTC is off (media.streaming.enable_webrtc)".into()))),
    }
}

/// `POST /whip/{name}`.
pub async fn whip(
    State(state): State<Arc<Sidecar>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    publish(&state, &name, &headers, &body).await.unwrap_or_else(with_retry)
}

async fn publish(state: &Arc<Sidecar>, name: &str, headers: &HeaderMap, body: &Bytes) -> ApiResult<Response> {
    let sfu = webrtc(state)?;
    let rec = stream_record(state, name).await?;
    let credential = super::auth::credential_of(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "send the stream's publish key as a bearer token"))?;
    let caller = if credential.starts_with(crate::gallery::streams::PUBLISH_KEY_PREFIX) {
        let (r, key) = (rec.clone(), credential.clone());
        if !state.gallery(move |gs| Ok(gs.stream_key_matches(&r, &key))).await? {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong publish key for this stream"));
        }
        None
    } else {
        let c = caller(state, headers).await?;
        allowed(state, &rec, &c, true).await?;
        Some(c)
    };
    let offer = sdp_offer(headers, body)?;
    let (id, answer) = sfu.publish(stream_ref(state, &rec).await?, &offer).await.map_err(refusal)?;
    state
        .live_holders
        .lock()
        .expect("holders")
        .insert(id, Holder { stream: rec.name.clone(), caller, publisher: true });
    Ok(created(state, "whip", name, id, answer))
}

/// `POST /whep/{name}`.
pub async fn whep(
    State(state): State<Arc<Sidecar>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    view(&state, &name, &headers, &body).await.unwrap_or_else(with_retry)
}

async fn view(state: &Arc<Sidecar>, name: &str, headers: &HeaderMap, body: &Bytes) -> ApiResult<Response> {
    let sfu = webrtc(state)?;
    let rec = stream_record(state, name).await?;
    let c = caller(state, headers).await?;
    allowed(state, &rec, &c, false).await?;
    let offer = sdp_offer(headers, body)?;
    let (id, answer) = sfu.view(stream_ref(state, &rec).await?, &offer).await.map_err(refusal)?;
    state
        .live_holders
        .lock()
        .expect("holders")
        .insert(id, Holder { stream: rec.name.clone(), caller: Some(c), publisher: false });
    Ok(created(state, "whep", name, id, answer))
}

/// Decides on RTMP publishers: the application `live`, a stream that exists, its publish
/// key in `?key=`; then the same loop as WHIP (one publisher, the stream limit).
pub(super) struct RtmpPublishers(pub(super) Arc<Sidecar>);

type Accepted = Result<tokio::sync::mpsc::Sender<crate::live::MediaFrame>, String>;

impl crate::live::rtmp::Publishers for RtmpPublishers {
    fn publish(
        &self,
        req: crate::live::rtmp::Publish,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Accepted> + Send>> {
        let state = self.0.clone();
        Box::pin(async move {
            if req.app != "live" {
                return Err(format!(
                    "publish to rtmp://HOST:PORT/live/NAME?key=KEY, not to the application {:?}",
                    req.app
                ));
            }
            let rec = stream_record(&state, &req.name).await.map_err(|e| e.message)?;
            let key = req.key.clone().ok_or("give the stream's publish key: rtmp://HOST:PORT/live/NAME?key=KEY")?;
            let r = rec.clone();
            if !state.gallery(move |gs| Ok(gs.stream_key_matches(&r, &key))).await.map_err(|e| e.message)? {
                tracing::warn!(stream = %req.name, peer = %req.peer, "RTMP publisher with a wrong key");
                return Err("wrong publish key for this stream".into());
            }
            let stream = stream_ref(&state, &rec).await.map_err(|e| e.message)?;
            let tx = sfu(&state).map_err(|e| e.message)?.ingest(stream, "rtmp").await.map_err(|e| e.to_string())?;
            tracing::info!(stream = %req.name, peer = %req.peer, "RTMP publisher joined");
            Ok(tx)
        })
    }
}

/// `DELETE /whip/{name}/{session}` and `/whep/…`: ends the session.
pub async fn end(
    State(state): State<Arc<Sidecar>>,
    Path((name, session)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id: SessionId = session.parse().map_err(|()| ApiError::new(StatusCode::NOT_FOUND, "no such session"))?;
    let held = state.live_holders.lock().expect("holders").get(&id).is_some_and(|h| h.stream == name);
    if !held || !sfu(&state)?.end(id).await {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such session"));
    }
    state.live_holders.lock().expect("holders").remove(&id);
    Ok(StatusCode::OK)
}

/// `PATCH` of a session: candidates are learnt from the peer's own checks (the server is
/// ICE-lite and offers its candidates in the answer), so trickled ones are not needed.
pub async fn patch() -> Response {
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE is not supported; send the offer with its candidates",
    )
    .into_response();
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    r
}

/// `OPTIONS /whip/{name}` and `/whep/…`.
pub async fn options(State(state): State<Arc<Sidecar>>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
    ice_links(&state, h);
    r
}

/// `GET /api/live/{name}`: the stream and whether it is live, for whoever may watch it.
pub async fn status(
    State(state): State<Arc<Sidecar>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let rec = stream_record(&state, &name).await?;
    let c = caller(&state, &headers).await?;
    allowed(&state, &rec, &c, false).await?;
    let r = rec.clone();
    let mut v = state.gallery(move |gs| Ok(gs.stream_json(&r))).await?;
    let live = match state.sfu.get() {
        Some(Ok(s)) => s.status(&name).await,
        _ => None,
    };
    v["webrtc"] = serde_json::json!(live);
    Ok(axum::Json(v))
}

/// `GET /api/galleries/{id}/streams`: the gallery's streams and which are live, for its
/// viewers and up.
pub async fn gallery_streams(
    State(state): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let c = super::gallery::ctx_of(&state, caller(&state, &headers).await?, &id).await?;
    c.actor.require(Action::Read)?;
    let may_publish = crate::gallery::allows(c.actor.role, Action::Upload);
    let list = state
        .gallery(move |gs| {
            let mine = gs.stream_list()?.into_iter().filter(|s| s.gallery.as_deref() == Some(id.as_str()));
            Ok(mine.map(|s| gs.stream_json(&s)).collect::<Vec<_>>())
        })
        .await?;
    Ok(axum::Json(serde_json::json!({ "streams": list, "may_publish": may_publish })))
}

/// The blocking-reload parameters of a playlist request.
#[derive(serde::Deserialize)]
pub struct BlockingReload {
    #[serde(rename = "_HLS_msn")]
    msn: Option<u64>,
    #[serde(rename = "_HLS_part")]
    part: Option<usize>,
}

/// Longest wait of a blocking request: three segment targets, as the HLS specification
/// suggests.
fn block_limit(state: &Sidecar) -> Duration {
    Duration::from_secs(3 * u64::from(state.vol.config().media.streaming.segment_seconds))
}

/// Waits until `ready()` holds or the output changes no more within the limit; returns
/// whether it holds.
async fn wait_until(state: &Sidecar, out: &crate::live::hls::Output, ready: impl Fn() -> Wait) -> Wait {
    let mut changes = out.subscribe();
    let deadline = tokio::time::Instant::now() + block_limit(state);
    loop {
        match ready() {
            Wait::Soon => {}
            done => return done,
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
            return Wait::Soon;
        }
    }
}

/// Checks a viewer of a live stream over HTTP, remembering the answer for `RECHECK` so a
/// player's many requests cost one check; counts it among the stream's viewers.
async fn http_viewer(
    state: &Arc<Sidecar>,
    name: &str,
    headers: &HeaderMap,
) -> ApiResult<Arc<crate::live::hls::Output>> {
    let credential = super::auth::credential_of(headers).unwrap_or_default();
    let tag = crate::ids::hex(&state.vol.keyed_secret_hash(b"live viewer", credential.as_bytes())[..8]);
    let key = (name.to_string(), tag.clone());
    let fresh = state.live_checked.lock().expect("checked").get(&key).is_some_and(|t| t.elapsed() < RECHECK);
    if !fresh {
        let rec = stream_record(state, name).await?;
        let c = caller(state, headers).await?;
        allowed(state, &rec, &c, false).await?;
        let mut checked = state.live_checked.lock().expect("checked");
        // Players that left are forgotten (a check is redone after `RECHECK` anyway).
        if checked.len() > 4096 {
            checked.retain(|_, t| t.elapsed() < RECHECK);
        }
        checked.insert(key, std::time::Instant::now());
    }
    let out = state.hub.output(name).ok_or_else(|| refusal(Refusal::NotLive(name.to_string())))?;
    let others = match state.sfu.get() {
        Some(Ok(s)) => s.status(name).await.map_or(0, |st| st.viewers),
        _ => 0,
    };
    let max = state.vol.config().media.streaming.max_viewers_per_stream;
    if !out.touch_viewer(&tag, |hls| hls + others < max) {
        return Err(refusal(Refusal::TooManyViewers(max)));
    }
    Ok(out)
}

/// `GET /live/{name}/{*file}`: low-latency HLS and DASH of a live stream.
pub async fn http(
    State(state): State<Arc<Sidecar>>,
    Path((name, file)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<BlockingReload>,
    headers: HeaderMap,
) -> Response {
    serve_file(&state, &name, &file, &q, &headers).await.unwrap_or_else(with_retry)
}

async fn serve_file(
    state: &Arc<Sidecar>,
    name: &str,
    file: &str,
    q: &BlockingReload,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let st = &state.vol.config().media.streaming;
    let dash = file == "manifest.mpd";
    if (dash && !st.enable_dash) || (!dash && !st.enable_hls) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            if dash { "DASH is off (media.streaming.enable_dash)" } else { "HLS is off (media.streaming.enable_hls)" },
        ));
    }
    let out = http_viewer(state, name, headers).await?;
    let not_yet = || {
        ApiError::new(StatusCode::NOT_FOUND, "not yet: the stream has not sent its first keyframe")
            .with_detail(serde_json::json!({ "retry": true }))
    };
    let has_init = || {
        if out.init().is_some() {
            Wait::Ready
        } else if out.ended() {
            Wait::Never
        } else {
            Wait::Soon
        }
    };
    const PLAYLIST: &str = "application/vnd.apple.mpegurl";
    let (body, content_type, cache): (Vec<u8>, &str, &str) = match file {
        "master.m3u8" | "index.m3u8" | "manifest.mpd" | "init.mp4" => {
            if wait_until(state, &out, has_init).await != Wait::Ready {
                return Err(not_yet());
            }
            match file {
                "master.m3u8" => (out.master().unwrap_or_default().into_bytes(), PLAYLIST, "no-cache"),
                "init.mp4" => (out.init().map(|b| b.to_vec()).unwrap_or_default(), "video/mp4", "max-age=3600"),
                "manifest.mpd" => (out.mpd().ok_or_else(not_yet)?.into_bytes(), "application/dash+xml", "no-cache"),
                _ => {
                    // A first request waits for a whole segment: players without partial
                    // segments need one, and it comes within a segment target.
                    let first = out.edge().is_none_or(|(m, _)| m == 0);
                    let msn = q.msn.or(first.then_some(0));
                    if let Some(msn) = msn {
                        let edge = out.edge().map_or(0, |(m, _)| m);
                        if msn > edge + 2 {
                            return Err(ApiError::bad_request(format!(
                                "_HLS_msn={msn} is more than two segments past the live edge ({edge})"
                            )));
                        }
                        // A playlist with that part, or any later segment.
                        let part = q.part;
                        wait_until(state, &out, || match out.edge() {
                            Some((m, p)) if m > msn || (m == msn && part.is_some_and(|want| p > want)) => Wait::Ready,
                            _ if out.ended() => Wait::Ready,
                            _ => Wait::Soon,
                        })
                        .await;
                    }
                    (out.playlist().ok_or_else(not_yet)?.into_bytes(), PLAYLIST, "no-cache")
                }
            }
        }
        _ => {
            let (msn, part) = media_name(file)
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such file of a live stream"))?;
            match wait_until(state, &out, || out.wait_for(msn, part)).await {
                Wait::Ready => {}
                _ => return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{file} is not in the live window"))),
            }
            let bytes = match part {
                Some(i) => out.part(msn, i).map(|b| b.to_vec()),
                None => out.segment(msn),
            };
            (
                bytes.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "gone from the live window"))?,
                "video/mp4",
                "max-age=60",
            )
        }
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(r)
}

/// `seg/N.m4s` → (N, None); `part/N.I.m4s` → (N, Some(I)).
fn media_name(file: &str) -> Option<(u64, Option<usize>)> {
    if let Some(n) = file.strip_prefix("seg/").and_then(|f| f.strip_suffix(".m4s")) {
        return Some((n.parse().ok()?, None));
    }
    let (n, i) = file.strip_prefix("part/")?.strip_suffix(".m4s")?.split_once('.')?;
    Some((n.parse().ok()?, Some(i.parse().ok()?)))
}

/// Ends sessions whose access ended: at once on a member change, a revoked link or a new
/// publish key, and every `RECHECK` for tokens and links that expire or are revoked
/// without an event.
pub async fn watch_access(state: Arc<Sidecar>) {
    let mut events = state.galleries.subscribe();
    let mut keys = state.galleries.stream_changes();
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) if matches!(e.event.kind.as_str(), "member.changed" | "link.revoked" | "gallery.deleted") => {
                    // HTTP players are checked again at their next request.
                    state.live_checked.lock().expect("checked").clear();
                    recheck(&state, |h| h.caller.is_some()).await;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => recheck(&state, |_| true).await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            k = keys.recv() => match k {
                Ok(name) => {
                    // A new key cuts the publisher off, however it came (WHIP, RTMP, the web
                    // UI); a deleted stream ends for everyone.
                    let n = name.clone();
                    let gone = state.gallery(move |gs| gs.stream(&n)).await.is_err();
                    if let Ok(sfu) = sfu(&state) {
                        tracing::info!(stream = %name, deleted = gone, "ending the publisher of a stream whose key changed");
                        sfu.end_stream(&name, !gone);
                    }
                    state.hub.forget_if(&name, gone);
                    recheck(&state, |h| h.stream == name).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => recheck(&state, |_| true).await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => recheck(&state, |_| true).await,
        }
    }
}

/// Checks the sessions `which` selects again; ends those no longer allowed, and forgets
/// those the loop has ended.
async fn recheck(state: &Arc<Sidecar>, which: impl Fn(&Holder) -> bool) {
    let Ok(sfu) = sfu(state) else { return };
    let held: Vec<(SessionId, Holder)> = state
        .live_holders
        .lock()
        .expect("holders")
        .iter()
        .filter(|(_, h)| which(h))
        .map(|(i, h)| (*i, h.clone()))
        .collect();
    let mut ended = Vec::new();
    let mut gone = Vec::new();
    let mut live: HashMap<String, Vec<SessionId>> = HashMap::new();
    for (id, h) in held {
        if !live.contains_key(&h.stream) {
            let sessions = sfu.sessions(&h.stream).await;
            live.insert(h.stream.clone(), sessions);
        }
        if !live[&h.stream].contains(&id) {
            gone.push(id);
            continue;
        }
        let rec = match stream_record(state, &h.stream).await {
            Ok(r) => r,
            Err(_) => {
                ended.push(id);
                continue;
            }
        };
        if let Some(c) = &h.caller {
            // A session or token that ended fails here too.
            let still = match c {
                Caller::Principal(Principal::User(_) | Principal::Link { .. }) | Caller::Scoped(_) => {
                    revalidate(state, c).await && allowed(state, &rec, c, h.publisher).await.is_ok()
                }
                Caller::Principal(_) => allowed(state, &rec, c, h.publisher).await.is_ok(),
            };
            if !still {
                ended.push(id);
            }
        }
    }
    {
        let mut holders = state.live_holders.lock().expect("holders");
        for id in &gone {
            holders.remove(id);
        }
    }
    end_sessions(state, ended, "access ended");
}

/// Whether a token behind a caller still verifies (a revoked or expired token fails).
async fn revalidate(state: &Sidecar, c: &Caller) -> bool {
    match c {
        Caller::Scoped(t) => {
            let id = t.id.clone();
            state.blocking(move |vol| vol.token_exists(&id)).await.unwrap_or(false) && t.expires > crate::gallery::now()
        }
        Caller::Principal(Principal::Link { expires, .. }) => *expires > crate::gallery::now(),
        _ => true,
    }
}

fn end_sessions(state: &Sidecar, ids: Vec<SessionId>, why: &str) {
    if ids.is_empty() {
        return;
    }
    let mut holders = state.live_holders.lock().expect("holders");
    for id in &ids {
        if let Some(h) = holders.remove(id) {
            tracing::info!(stream = %h.stream, session = %id, publisher = h.publisher, why, "ending a live session");
        }
    }
    drop(holders);
    if let Ok(sfu) = sfu(state) {
        sfu.kick(ids);
    }
}
