//! Media facts and previews of gallery items: the indexer that fills `ItemInfo` (type,
//! fingerprint, dimensions, duration, BlurHash) and stores thumbnails, and the thumbnail
//! endpoint that serves them, indexing on first request.
//!
//! Images are decoded here (`crate::media`); videos and audio are read by ffprobe and
//! ffmpeg through the sidecar's own loopback URL (`/internal/items/{ino}`, guarded by a
//! random key that lives only in this process), so they use range requests and never
//! need a copy on local disk.

use super::error::{ApiError, ApiResult};
use super::gallery::ctx;
use super::Sidecar;
use crate::gallery::items::{stamp_of, ItemInfo, THUMBNAIL_SIZES};
use crate::gallery::Action;
use crate::gallery::Galleries;
use crate::ids::Ino;
use crate::media::{self, Kind};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Largest image decoded for previews (bigger ones get a note instead).
const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Items waiting for the indexer, without duplicates.
#[derive(Default)]
pub struct IndexQueue {
    queued: Mutex<HashSet<Ino>>,
    wake: tokio::sync::Notify,
}

impl IndexQueue {
    fn push(&self, ino: Ino) {
        if self.queued.lock().expect("index queue").insert(ino) {
            self.wake.notify_one();
        }
    }

    fn pop(&self) -> Option<Ino> {
        let mut q = self.queued.lock().expect("index queue");
        let ino = q.iter().next().copied()?;
        q.remove(&ino);
        Some(ino)
    }
}

/// Indexes items as they are added or changed, and those left unindexed at start.
pub async fn index_loop(state: Arc<Sidecar>) {
    let mut live = state.galleries.subscribe();
    if let Ok(pending) = state.gallery(|gs| gs.items_to_index()).await {
        pending.into_iter().for_each(|ino| state.index_queue.push(ino));
    }
    loop {
        while let Some(ino) = state.index_queue.pop() {
            match index(&state, ino).await {
                Ok(info) => super::renditions::after_index(&state, ino, &info).await,
                Err(e) if e.status == StatusCode::NOT_FOUND => {}
                Err(e) => tracing::warn!(inode = %ino, error = %e.message, "indexing failed"),
            }
        }
        tokio::select! {
            () = state.index_queue.wake.notified() => {}
            got = live.recv() => match got {
                Ok(e) if matches!(e.event.kind.as_str(), "item.added" | "item.changed") => {
                    if let Some(ino) = e.event.item.as_deref().and_then(|i| i.parse().ok()) {
                        state.index_queue.push(Ino(ino));
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok(pending) = state.gallery(|gs| gs.items_to_index()).await {
                        pending.into_iter().for_each(|ino| state.index_queue.push(ino));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Computes and stores the media facts and thumbnails of `ino` (unless already current).
pub async fn index(state: &Arc<Sidecar>, ino: Ino) -> ApiResult<ItemInfo> {
    let url = state
        .config
        .self_url
        .as_ref()
        .map(|base| format!("{base}/internal/items/{}?key={}", ino.0, state.internal_key));
    let _one_at_a_time = state.indexing.lock().await;
    state.gallery(move |gs| index_blocking(gs, ino, url.as_deref())).await
}

fn index_blocking(gs: &Galleries, ino: Ino, url: Option<&str>) -> crate::gallery::Result<ItemInfo> {
    let vol = gs.volume();
    let inode = vol.getattr(ino)?.inode;
    if let Some(info) = gs.item_info(ino, &inode)? {
        return Ok(info);
    }
    let gallery = gs.gallery_of_item(ino)?;
    let (_, name) = gs.locate_item(&gallery, ino)?;
    let head = vol.read(ino, 0, 64 << 10)?;
    let media_type = media::media_type(&name, &head);
    let mut info = ItemInfo { stamp: stamp_of(&inode), media_type: media_type.clone(), ..ItemInfo::default() };
    match media::kind_of(&media_type) {
        Kind::Image if inode.size <= MAX_IMAGE_BYTES => {
            let bytes = vol.read(ino, 0, inode.size as u32)?;
            match media::image_dimensions(&bytes) {
                Ok((w, h)) => (info.facts.width, info.facts.height) = (Some(w), Some(h)),
                Err(e) => info.note = Some(e.to_string()),
            }
            if info.note.is_none() {
                for px in THUMBNAIL_SIZES {
                    match media::image_thumbnail(&bytes, px) {
                        Ok(t) => {
                            gs.thumbnail_put(ino, px, &t.jpeg)?;
                            info.thumbnails.push(px);
                            info.facts.placeholder.get_or_insert(t.placeholder);
                        }
                        Err(e) => {
                            info.note = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
        }
        Kind::Image => info.note = Some(format!("images over {} MiB get no preview", MAX_IMAGE_BYTES >> 20)),
        Kind::Video | Kind::Audio => match (media::ffmpeg_available(), url) {
            (true, Some(url)) => {
                match media::probe_av(url) {
                    Ok(av) => info.facts = av,
                    Err(e) => info.note = Some(e.to_string()),
                }
                if info.facts.width.is_some() {
                    match media::video_poster(url, info.facts.duration, THUMBNAIL_SIZES[1]) {
                        Ok(poster) => {
                            gs.thumbnail_put(ino, THUMBNAIL_SIZES[1], &poster.jpeg)?;
                            info.thumbnails.push(THUMBNAIL_SIZES[1]);
                            if let Ok(small) = media::image_thumbnail(&poster.jpeg, THUMBNAIL_SIZES[0]) {
                                gs.thumbnail_put(ino, THUMBNAIL_SIZES[0], &small.jpeg)?;
                                info.thumbnails.push(THUMBNAIL_SIZES[0]);
                            }
                            info.facts.placeholder = Some(poster.placeholder);
                        }
                        Err(e) => info.note = Some(e.to_string()),
                    }
                }
            }
            (false, _) => info.note = Some("ffmpeg is not installed: no video or audio facts and no poster".into()),
            (true, None) => info.note = Some("the sidecar has no loopback address for ffmpeg".into()),
        },
        Kind::Other => {}
    }
    info.fingerprint = Some(crate::ids::hex(&vol.fingerprint(ino)?));
    gs.item_info_put(ino, &info)?;
    Ok(info)
}

#[derive(Deserialize)]
pub struct ThumbQuery {
    size: Option<u32>,
}

/// `GET /api/galleries/{id}/items/{item}/thumbnail?size=256|1024`: a JPEG, made on first
/// request; 404 with the reason when the item has no preview.
pub async fn thumbnail(
    State(state): State<Arc<Sidecar>>,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
    Query(q): Query<ThumbQuery>,
) -> ApiResult<Response> {
    let c = ctx(&state, &headers, &id).await?;
    c.actor.require(Action::Read)?;
    let ino = Ino(item.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such item"))?);
    let px = q.size.unwrap_or(THUMBNAIL_SIZES[0]);
    if !THUMBNAIL_SIZES.contains(&px) {
        return Err(ApiError::bad_request(format!("size={px}: one of {THUMBNAIL_SIZES:?}")));
    }
    let g = c.gallery.clone();
    state.gallery(move |gs| gs.gallery_item(&g, ino)).await?;
    let info = index(&state, ino).await?;
    if !info.thumbnails.contains(&px) {
        let why = info.note.unwrap_or_else(|| format!("{} items have no preview", info.media_type));
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no preview: {why}")));
    }
    let etag = format!("\"t{}-{}-{}-{px}\"", info.stamp.0, info.stamp.1, info.stamp.2);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let jpeg = state
        .gallery(move |gs| gs.thumbnail_get(ino, px))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no preview stored"))?;
    let mut r = jpeg.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    Ok(r)
}

#[derive(Deserialize)]
pub struct KeyQuery {
    key: String,
}

/// `GET /internal/items/{ino}?key=…`: an item's bytes for this process's own ffmpeg.
pub async fn internal_item(
    State(state): State<Arc<Sidecar>>,
    headers: HeaderMap,
    method: axum::http::Method,
    Path(ino): Path<u64>,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Response> {
    let expected = state.internal_key.as_bytes();
    let same = expected.len() == q.key.len()
        && expected.iter().zip(q.key.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not found"));
    }
    let attr = state.blocking(move |vol| vol.getattr(Ino(ino))).await?;
    if attr.inode.kind != crate::volume::Kind::File {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not found"));
    }
    super::files::serve_file(&state, &attr, "item", &headers, method == axum::http::Method::HEAD).await
}
