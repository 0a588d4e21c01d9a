//! `GET /stream/PATH/FILE`: the HLS playlists (`master.m3u8`, `media_R.m3u8`), the DASH
//! manifest (`manifest.mpd`) and the CMAF segments of the video at volume path PATH
//! (docs/streaming.md), with the access rules of `GET /files/PATH`. Playlists and segments
//! are files of the volume, served as `/files` serves files: ranges, strong ETags,
//! conditional requests; segments never change under a name, so they are cached for good.

use super::auth::authorize;
use super::error::{ApiError, ApiResult};
use super::files::serve_file;
use super::path::volume_path;
use super::Sidecar;
use crate::media;
use crate::volume::{Attr, Kind, Permission};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// `GET` and `HEAD`.
pub async fn get(State(state): State<Arc<Sidecar>>, req: Request) -> ApiResult<Response> {
    let cfg = state.vol.config().media.streaming.clone();
    let full = volume_path(req.uri().path().strip_prefix("/stream").unwrap_or(""))?;
    let (source, file) = full.rsplit_once('/').filter(|(s, _)| !s.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "want /stream/PATH/master.m3u8 or /stream/PATH/manifest.mpd")
    })?;
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("m3u8") if cfg.enable_hls => "application/vnd.apple.mpegurl",
        Some("mpd") if cfg.enable_dash => "application/dash+xml",
        Some("m4s") if cfg.enable_hls || cfg.enable_dash => "video/iso.segment",
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{file}: no such stream file"))),
    };
    if !cfg.enabled {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "streaming is off ([media.streaming] enabled = false)"));
    }
    authorize(&state, req.headers(), source, Permission::Read).await?;
    let (src, name) = (source.to_string(), file.to_string());
    let found = state
        .blocking(move |vol| {
            let ino = vol.resolve(&src)?;
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
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{source} has no current renditions: package it (`nanofs media package`)"),
            ))
        }
    };
    let mut r = serve_file(&state, &attr, file, req.headers(), req.method() == Method::HEAD).await?;
    let h = r.headers_mut();
    if h.contains_key(header::CONTENT_TYPE) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    // A segment's name never names other bytes; playlists change when packaged again.
    let cache = if file.ends_with(".m4s") { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(r)
}

/// What a stream path names.
enum Found {
    Rendition(Attr),
    NotAFile,
    NotAVideo,
    /// A video without current renditions.
    NotPackaged,
}
