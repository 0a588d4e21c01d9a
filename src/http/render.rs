//! Pictures for the device that asks: `GET`/`HEAD /render/PATH?w=N` (a bearer token that
//! may read PATH, as for `/files`) and `/api/galleries/{id}/items/{item}/render?w=N` (a
//! gallery session, share link or token that may read the gallery). The format and width
//! come from `crate::adapt::plan` over the request's hints; `w` is the width the picture is
//! shown at in CSS pixels, multiplied by the device's pixel ratio. Renders are made once
//! and kept in the volume (`crate::stream::render`).

use super::adapt::{hints, mark_adapted, HintQuery};
use super::auth::authorize;
use super::error::{ApiError, ApiResult};
use super::gallery::ctx;
use super::path::volume_path;
use super::Sidecar;
use crate::adapt::{self, ImageFormat};
use crate::gallery::Action;
use crate::ids::Ino;
use crate::stream::render::{self, Quality, Render, Want};
use crate::volume::{Kind, Permission};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// Largest `w` (CSS pixels) a request may give: twice the widest render, at DPR 1.
const MAX_ASKED_WIDTH: u32 = 2 * adapt::RENDER_WIDTHS[adapt::RENDER_WIDTHS.len() - 1];

/// Encodes running at once, over all volumes of the process: each takes a core or more
/// and up to a few hundred MB for a large source.
static ENCODES: LazyLock<Arc<tokio::sync::Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    Arc::new(tokio::sync::Semaphore::new(cores.clamp(1, 4)))
});

/// Sources being rendered, by (volume, inode): a second request for a source waits for
/// the first and then finds its render in the cache instead of encoding it again.
type MakingKey = (usize, u64);
static MAKING: LazyLock<Mutex<HashMap<MakingKey, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Mutex::default);

/// The per-source lock of `key`; forgets it when the last holder is done.
struct Making {
    key: MakingKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Making {
    async fn lock(key: MakingKey) -> Self {
        let lock = MAKING.lock().expect("renders in flight").entry(key).or_default().clone();
        Self { key, guard: Some(lock.lock_owned().await) }
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut making = MAKING.lock().expect("renders in flight");
        // Only the map holds it: nobody waits.
        if making.get(&self.key).is_some_and(|l| Arc::strong_count(l) == 1) {
            making.remove(&self.key);
        }
    }
}

impl From<render::Error> for ApiError {
    fn from(e: render::Error) -> Self {
        match e {
            render::Error::Volume(e) => e.into(),
            render::Error::NotAPicture(why) => Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why),
            render::Error::Corrupt(why) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, why),
            render::Error::TooLarge(why) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, why),
            render::Error::Encode(why) => {
                tracing::error!(error = %why, "rendering a picture failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, why)
            }
        }
    }
}

/// `GET` and `HEAD /render/PATH`.
pub async fn get(State(state): State<Arc<Sidecar>>, req: Request) -> ApiResult<Response> {
    let path = volume_path(req.uri().path().strip_prefix("/render").unwrap_or(""))?;
    authorize(&state, req.headers(), &path, Permission::Read).await?;
    let want = want_of(req.headers(), req.uri())?;
    let p = path.clone();
    let attr = state.blocking(move |vol| vol.getattr(vol.resolve(&p)?)).await?;
    if attr.inode.kind != Kind::File {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{path} is not a file")));
    }
    respond(&state, attr.ino, want, req.headers(), req.method() == Method::HEAD).await
}

/// `GET` and `HEAD /api/galleries/{id}/items/{item}/render`.
pub async fn item(
    State(state): State<Arc<Sidecar>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Path((id, item)): Path<(String, String)>,
) -> ApiResult<Response> {
    let c = ctx(&state, &headers, &id).await?;
    c.actor.require(Action::Read)?;
    let ino = Ino(item.parse().map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such item"))?);
    let want = want_of(&headers, &uri)?;
    let g = c.gallery.clone();
    state.gallery(move |gs| gs.gallery_item(&g, ino)).await?;
    respond(&state, ino, want, &headers, method == Method::HEAD).await
}

/// The render the request asks for: the plan's format and width for its hints, with `?w=`
/// in CSS pixels.
fn want_of(headers: &HeaderMap, uri: &Uri) -> ApiResult<Want> {
    let Query(mut q) = Query::<HintQuery>::try_from_uri(uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let css_width = q.w.take();
    if let Some(w) = css_width.filter(|w| !(1..=MAX_ASKED_WIDTH).contains(w)) {
        return Err(ApiError::bad_request(format!("w={w}: the width shown, 1 to {MAX_ASKED_WIDTH} CSS pixels")));
    }
    let mut h = hints(headers, &q);
    if let Some(w) = css_width {
        h.width = Some(adapt::device_pixels(&h, w));
    }
    let plan = adapt::plan(&h, &[], |_| 0);
    // Without ffmpeg only JPEG can be made, and every client takes it.
    let format = if plan.image_format == ImageFormat::Jpeg || crate::media::ffmpeg_available() {
        plan.image_format
    } else {
        ImageFormat::Jpeg
    };
    let quality = if h.save_data { Quality::Low } else { Quality::Normal };
    Ok(Want { format, width: plan.image_width, quality })
}

/// The render `want` of `source`, from the cache or made now.
async fn respond(
    state: &Arc<Sidecar>,
    source: Ino,
    want: Want,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Response> {
    let cached = state.on_pool(move |g| render::find(g.volume(), source, want)).await?;
    let r = match cached {
        Some(r) => r,
        None => {
            let making = Making::lock((Arc::as_ptr(&state.vol) as usize, source.0)).await;
            let permit = ENCODES.clone().acquire_owned().await.expect("the semaphore is never closed");
            // Both move into the blocking call: an encode goes on after its client leaves,
            // and still counts and still holds its source.
            state
                .on_pool(move |g| {
                    let made = render::make(g.volume(), source, want);
                    drop((permit, making));
                    made
                })
                .await?
        }
    };
    answer(state, &r, headers, head).await
}

/// The response for render `r`: 304 when the client has it, else its bytes.
async fn answer(state: &Arc<Sidecar>, r: &Render, headers: &HeaderMap, head: bool) -> ApiResult<Response> {
    let etag = r.etag();
    let mut common = HeaderMap::new();
    common.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex and ascii"));
    common.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    let matches = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(&etag))
    });
    let mut resp = if matches {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        let body = if head {
            Body::empty()
        } else {
            let ino = r.ino;
            let size = r.size;
            let bytes = state.blocking(move |vol| read_whole(vol, ino, size)).await?;
            Body::from(bytes)
        };
        let mut resp = Response::new(body);
        let h = resp.headers_mut();
        h.extend(common);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(r.format.media_type()));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.size));
        h.insert(header::LAST_MODIFIED, HeaderValue::from_str(&httpdate::fmt_http_date(r.mtime)).expect("date"));
        h.insert("x-render-width", HeaderValue::from(r.width));
        resp
    };
    mark_adapted(&mut resp);
    Ok(resp)
}

/// The `size` bytes of render `ino`; a short read is an error, never a cut picture.
fn read_whole(vol: &crate::volume::Volume, ino: Ino, size: u64) -> crate::volume::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let piece = vol.read(ino, out.len() as u64, (size - out.len() as u64).min(8 << 20) as u32)?;
        if piece.is_empty() {
            return Err(crate::volume::Error::Io(std::io::Error::other("a render is shorter than its size")));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}
