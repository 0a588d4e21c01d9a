//! `GET /stream/PATH/FILE`: the HLS playlists (`master.m3u8`, `media_R.m3u8`), the DASH
//! manifest (`manifest.mpd`) and the CMAF segments of the video at volume path PATH
//! (docs/streaming.md), with the access rules of `GET /files/PATH`; and the same files of
//! a gallery item at `/api/galleries/{id}/items/{item}/stream/FILE`, for gallery sessions
//! and share links. Playlists and segments are files of the volume, served as `/files`
//! serves files: ranges, strong ETags, conditional requests; segments never change under
//! a name, so they are cached for good. `/stream` answers the origins of `[sidecar]
//! cors_origins` (players on other sites).

use super::auth::authorize;
use super::error::{ApiError, ApiResult};
use super::files::serve_file;
use super::path::volume_path;
use super::Sidecar;
use crate::ids::Ino;
use crate::media;
use crate::stream::jobs::JobState;
use crate::volume::{Attr, Kind, Permission};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `GET` and `HEAD /stream/PATH/FILE`.
pub async fn get(State(state): State<Arc<Sidecar>>, req: Request) -> ApiResult<Response> {
    let full = volume_path(req.uri().path().strip_prefix("/stream").unwrap_or(""))?;
    let (source, file) = full.rsplit_once('/').filter(|(s, _)| !s.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "want /stream/PATH/master.m3u8 or /stream/PATH/manifest.mpd")
    })?;
    check_file(&state, file)?;
    authorize(&state, req.headers(), source, Permission::Read).await?;
    let src = source.to_string();
    let ino = state.blocking(move |vol| vol.resolve(&src)).await?;
    serve(&state, ino, source, file, req.headers(), req.method() == Method::HEAD).await
}

/// `GET` and `HEAD /api/galleries/{id}/items/{item}/stream/{file}`: authorized as the
/// item's `content`.
pub async fn gallery_item(
    State(state): State<Arc<Sidecar>>,
    headers: HeaderMap,
    method: Method,
    Path((id, item, file)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    // A file name only: the renditions directory has no sub-directories.
    if file.is_empty() || file.contains('/') || file.starts_with('.') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{file}: not a stream file name")));
    }
    check_file(&state, &file)?;
    let c = super::gallery::ctx(&state, &headers, &id).await?;
    c.actor.require(crate::gallery::Action::Read)?;
    let ino = item.parse::<u64>().map(Ino).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such item"))?;
    let name = state
        .gallery(move |gs| {
            gs.gallery_item(&c.gallery, ino)?;
            Ok(gs.locate_item(&c.gallery, ino)?.1)
        })
        .await?;
    serve(&state, ino, &name, &file, &headers, method == Method::HEAD).await
}

/// Refuses a file no enabled format has, and everything when streaming is off.
fn check_file(state: &Sidecar, file: &str) -> ApiResult<()> {
    let cfg = &state.vol.config().media.streaming;
    content_type(state, file)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("{file}: no such stream file")))?;
    if !cfg.enabled {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "streaming is off ([media.streaming] enabled = false)"));
    }
    Ok(())
}

fn content_type(state: &Sidecar, file: &str) -> Option<&'static str> {
    let cfg = &state.vol.config().media.streaming;
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("m3u8") if cfg.enable_hls => Some("application/vnd.apple.mpegurl"),
        Some("mpd") if cfg.enable_dash => Some("application/dash+xml"),
        Some("m4s") if cfg.enable_hls || cfg.enable_dash => Some("video/iso.segment"),
        // The original of a fragmented MP4 without renditions, played by byte ranges.
        Some("mp4") if file == BYTE_RANGE_SOURCE && cfg.enable_hls => Some("video/mp4"),
        _ => None,
    }
}

/// Serves `file` of the renditions of the video `ino` (named `source` in errors), once
/// the caller is authorized to read it.
async fn serve(
    state: &Arc<Sidecar>,
    ino: Ino,
    source: &str,
    file: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Response> {
    let content_type = content_type(state, file)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("{file}: no such stream file")))?;
    let name = file.to_string();
    let found = state
        .blocking(move |vol| {
            let attr = vol.getattr(ino)?;
            if attr.inode.kind != Kind::File {
                return Ok(Found::NotAFile);
            }
            let rendition = crate::stream::find(vol, ino, &name).map_err(|e| match e {
                crate::stream::Error::Volume(e) => e,
                e => crate::volume::Error::Io(std::io::Error::other(e.to_string())),
            })?;
            if let Some(r) = rendition {
                return Ok(Found::Rendition(vol.getattr(r)?));
            }
            // What the bytes say, not the name: an upload's name may lie.
            let head = vol.read(ino, 0, 512)?;
            let video = media::kind_of(&media::media_type("", &head)) == media::Kind::Video;
            Ok(if video { Found::NotPackaged } else { Found::NotAVideo })
        })
        .await?;
    let attr = match found {
        Found::Rendition(attr) => attr,
        Found::NotAFile => return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{source} is not a file"))),
        Found::NotAVideo => {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{source} is not a video")))
        }
        Found::NotPackaged if file.ends_with(".m4s") => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{file}: no such segment of {source}")))
        }
        Found::NotPackaged => {
            return match by_byte_ranges(state, ino, file, headers, head).await? {
                Some(r) => Ok(r),
                None if file == "master.m3u8" => Err(not_packaged(state, ino, source)),
                None if file.ends_with(".m3u8") || file == BYTE_RANGE_SOURCE => {
                    Err(ApiError::new(StatusCode::NOT_FOUND, format!("{file}: no such stream file of {source}")))
                }
                None => Err(not_packaged(state, ino, source)),
            }
        }
    };
    let mut r = serve_file(state, &attr, file, headers, head).await?;
    let h = r.headers_mut();
    if h.contains_key(header::CONTENT_TYPE) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    // A segment's name never names other bytes; playlists change when packaged again.
    let cache = if file.ends_with(".m4s") { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(r)
}

/// The name under which a video without renditions serves its own bytes to the byte-range
/// playlist, and the playlist's name.
const BYTE_RANGE_SOURCE: &str = "source.mp4";
const BYTE_RANGE_PLAYLIST: &str = "source.m3u8";

/// A video without renditions that is a fragmented MP4 plays as it is, as one HLS
/// rendition over byte ranges of the file (`crate::stream::fmp4`): its master playlist,
/// media playlist and bytes. `None` when it is not such a file or `file` is none of those.
async fn by_byte_ranges(
    state: &Arc<Sidecar>,
    ino: Ino,
    file: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Option<Response>> {
    if !state.vol.config().media.streaming.enable_hls
        || !matches!(file, "master.m3u8" | BYTE_RANGE_PLAYLIST | BYTE_RANGE_SOURCE)
    {
        return Ok(None);
    }
    let Some((attr, layout)) = state.fmp4_layout(ino).await? else { return Ok(None) };
    if file == BYTE_RANGE_SOURCE {
        let mut r = serve_file(state, &attr, file, headers, head).await?;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(Some(r));
    }
    let text = if file == "master.m3u8" {
        layout.master_playlist(BYTE_RANGE_PLAYLIST, attr.inode.size)
    } else {
        layout.media_playlist(BYTE_RANGE_SOURCE)
    };
    let mut r = if head { Response::new(axum::body::Body::empty()) } else { text.clone().into_response() };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apple.mpegurl"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(Some(r))
}

/// The answer for a video without renditions: `409`, with its packaging job's state and
/// progress when it has one, so a player or a page can say how long to wait.
fn not_packaged(state: &Sidecar, ino: Ino, source: &str) -> ApiError {
    let job = state.jobs.as_ref().and_then(|j| j.get(ino)).filter(|j| !j.state.finished());
    let message = match &job {
        Some(j) if j.state == JobState::Running => {
            format!("{source} is being packaged ({:.0} % done); its streams come when it is done", j.progress * 100.0)
        }
        Some(_) => format!("{source} is queued for packaging; its streams come when it is done"),
        None => format!("{source} has no current renditions: package it (`nanofs media package`)"),
    };
    let mut e = ApiError::new(StatusCode::CONFLICT, message);
    if let Some(j) = job {
        e = e.with_detail(serde_json::json!({ "job": { "state": j.state, "progress": j.progress } }));
    }
    e
}

/// What a stream path names.
enum Found {
    Rendition(Attr),
    NotAFile,
    NotAVideo,
    /// A video without current renditions.
    NotPackaged,
}

/// CORS for `/stream`: an origin of `[sidecar] cors_origins` may read the streams (with a
/// bearer token; no cookies, so no credentials mode). Other origins get no CORS headers,
/// and their browsers refuse them the answer.
pub async fn cors(State(state): State<Arc<Sidecar>>, req: Request, next: axum::middleware::Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| state.vol.config().sidecar.cors_origins.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut r = if preflight {
        if origin.is_some() {
            StatusCode::NO_CONTENT.into_response()
        } else {
            ApiError::new(StatusCode::FORBIDDEN, "this origin may not read streams ([sidecar] cors_origins)")
                .into_response()
        }
    } else {
        next.run(req).await
    };
    let h = r.headers_mut();
    // Caches must keep one answer per origin, even the ones without CORS headers.
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else { return r };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if preflight {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        // Players send a token and ranges; If-None-Match revalidates playlists.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Range, If-None-Match, If-Range, If-Modified-Since"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    } else {
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Length, Content-Range, ETag, Accept-Ranges"),
        );
    }
    r
}
