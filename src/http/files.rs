//! `/files/<path>`: downloads with ranges and conditional requests, JSON listings, deletes.

use super::auth::authorize;
use super::error::{ApiError, ApiResult};
use super::path::volume_path;
use super::{wants_fingerprint, Sidecar, FINGERPRINT_ALGORITHM, REPR_DIGEST};
use crate::volume::{Kind, Permission};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::Encoding;
use std::sync::Arc;
use std::time::SystemTime;

/// Bytes read from the engine per step of a download.
const PIECE: u64 = 1 << 20;
/// Most ranges served as the parts of one answer.
const MAX_RANGES: usize = 200;

fn raw_path(req: &Request) -> &str {
    req.uri().path().strip_prefix("/files").unwrap_or("")
}

/// `GET` and `HEAD`.
pub async fn get(State(state): State<Arc<Sidecar>>, req: Request) -> ApiResult<Response> {
    let path = volume_path(raw_path(&req))?;
    authorize(&state, req.headers(), &path, Permission::Read).await?;
    let query = req.uri().query().unwrap_or("").to_string();
    let p = path.clone();
    let attr = state.blocking(move |vol| vol.getattr(vol.resolve(&p)?)).await?;
    if attr.inode.kind == Kind::Dir {
        if !query.split('&').any(|q| q == "list" || q.starts_with("list=")) {
            return Err(ApiError::bad_request(format!("{path} is a directory: add ?list for its entries")));
        }
        return list(&state, attr.ino, &path, &query).await;
    }
    if attr.inode.kind != Kind::File {
        return Err(ApiError::bad_request(format!("{path} is not a regular file")));
    }
    if query.split('&').any(|q| q == "list" || q.starts_with("list=")) {
        return Err(ApiError::bad_request(format!("{path} is not a directory")));
    }
    serve_file(&state, &attr, &path, req.headers(), req.method() == Method::HEAD).await
}

/// The bytes of a regular file, with ranges (one or several), validators and conditional
/// requests; `name` gives the content type.
pub(super) async fn serve_file(
    state: &Arc<Sidecar>,
    attr: &crate::volume::Attr,
    name: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Response> {
    let state = state.clone();
    let ino = attr.ino;
    let size = attr.inode.size;
    // The ETag comes from the metadata, so answering never waits for a read of the whole
    // file; its content fingerprint goes along when known, or when the client asks for it
    // (RFC 9530), which may read the file once.
    let (inode, wanted) = (attr.inode.clone(), wants_fingerprint(headers));
    let (tag, fingerprint) = state
        .blocking(move |vol| {
            let tag = vol.version_tag(ino, &inode);
            let fp = if wanted { Some(vol.fingerprint(ino)?) } else { vol.cached_fingerprint(ino, &inode)? };
            Ok((tag, fp))
        })
        .await?;
    let etag = format!("\"{}\"", crate::ids::hex(&tag));
    let mtime = SystemTime::from(attr.inode.mtime);
    let last_modified = httpdate::fmt_http_date(mtime);

    let mut common = HeaderMap::new();
    common.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header"));
    common.insert(header::LAST_MODIFIED, HeaderValue::from_str(&last_modified).expect("date is a valid header"));
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(fp) = fingerprint {
        let digest = format!("{FINGERPRINT_ALGORITHM}=:{}:", base64ct::Base64::encode_string(&fp));
        common.insert(REPR_DIGEST, HeaderValue::from_str(&digest).expect("base64 is a valid header"));
    }

    if not_modified(headers, &etag, mtime) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let content_type = mime_guess::from_path(name).first_or_octet_stream().to_string();
    let ranges = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) if if_range_holds(headers, &etag, mtime) => bounded(parse_ranges(spec, size), size),
        _ => Ranges::Whole,
    };
    match ranges {
        Ranges::Whole => {
            let mut r = stream(&state, ino, vec![(0, size)], None, head).await?;
            r.headers_mut().extend(common);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).expect("mime"));
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            Ok(r)
        }
        Ranges::Unsatisfiable => {
            let mut r = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable").into_response();
            r.headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
            Ok(r)
        }
        Ranges::Some(list) if list.len() == 1 => {
            let (start, end) = list[0];
            let mut r = stream(&state, ino, vec![(start, end)], None, head).await?;
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut().extend(common);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).expect("mime"));
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)).expect("ascii"),
            );
            Ok(r)
        }
        Ranges::Some(list) => {
            // multipart/byteranges: a part header before each range, a closing delimiter.
            let boundary = format!("nanofs-{}", crate::ids::hex(&tag));
            let parts: Vec<(u64, u64, Vec<u8>)> = list
                .iter()
                .map(|&(s, e)| {
                    let head = format!(
                        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {s}-{}/{size}\r\n\r\n",
                        e - 1
                    );
                    (s, e, head.into_bytes())
                })
                .collect();
            let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
            let length: u64 = parts.iter().map(|(s, e, h)| e - s + h.len() as u64).sum::<u64>() + tail.len() as u64;
            let mut r = stream(&state, ino, Vec::new(), Some((parts, tail)), head).await?;
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut().extend(common);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")).expect("ascii"),
            );
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            Ok(r)
        }
    }
}

/// The parts of a `multipart/byteranges` answer: each range with its part header, and
/// the closing boundary.
type Multipart = (Vec<(u64, u64, Vec<u8>)>, Vec<u8>);

/// A response whose body streams `ranges` of `ino` (or multipart parts) from the engine,
/// one piece at a time, read on the blocking pool.
async fn stream(
    state: &Arc<Sidecar>,
    ino: crate::Ino,
    ranges: Vec<(u64, u64)>,
    multipart: Option<Multipart>,
    head: bool,
) -> ApiResult<Response> {
    if head {
        return Ok(Response::new(Body::empty()));
    }
    // Each item: bytes to send as they are, or a range to read.
    enum Item {
        Bytes(Vec<u8>),
        Range(u64, u64),
    }
    let mut items: Vec<Item> = ranges.into_iter().map(|(s, e)| Item::Range(s, e)).collect();
    if let Some((parts, tail)) = multipart {
        for (s, e, head) in parts {
            items.push(Item::Bytes(head));
            items.push(Item::Range(s, e));
        }
        items.push(Item::Bytes(tail));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(2);
    // The first read decides the status: a file whose first piece cannot be read is an
    // error answer; a failure further on can only cut the body short (never wrong bytes).
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), crate::volume::Error>>();
    let vol = state.vol.clone();
    tokio::task::spawn_blocking(move || {
        let mut first = Some(first_tx);
        for item in items {
            match item {
                Item::Bytes(b) => {
                    if tx.blocking_send(Ok(b.into())).is_err() {
                        return;
                    }
                }
                Item::Range(mut at, end) => {
                    while at < end {
                        let n = (end - at).min(PIECE) as u32;
                        // The piece shares the engine's cached plaintext (it ends where its
                        // chunk does): no copy on the way out.
                        let piece = match (vol.read_shared(ino, at, n), first.take()) {
                            (Err(e), Some(first)) => {
                                let _ = first.send(Err(e));
                                return;
                            }
                            (piece, first) => {
                                if let Some(f) = first {
                                    let _ = f.send(Ok(()));
                                }
                                piece.map(axum::body::Bytes::from_owner).map_err(|e| {
                                    tracing::error!(ino = ino.0, offset = at, error = %e, "download cut short");
                                    std::io::Error::other(e.to_string())
                                })
                            }
                        };
                        let len = piece.as_ref().map_or(0, |p| p.len() as u64);
                        let failed = piece.is_err() || len == 0;
                        if tx.blocking_send(piece).is_err() || failed {
                            return;
                        }
                        at += len;
                    }
                }
            }
        }
    });
    // No range to read (an empty file): the sender is dropped unsent.
    if let Ok(Err(e)) = first_rx.await {
        return Err(e.into());
    }
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(Response::new(Body::from_stream(body)))
}

/// The ranges a `Range` header asks for, clipped to the file.
#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    /// No usable range header: the whole file.
    Whole,
    /// Half-open `[start, end)` ranges.
    Some(Vec<(u64, u64)>),
    /// No range overlaps the file: 416.
    Unsatisfiable,
}

fn parse_ranges(spec: &str, size: u64) -> Ranges {
    let Some(list) = spec.trim().strip_prefix("bytes=") else { return Ranges::Whole };
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim) {
        let Some((a, b)) = part.split_once('-') else { return Ranges::Whole };
        let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
            // `e` may be u64::MAX: the range runs to the end of the file.
            (Some(s), Some(e)) if s <= e => (s < size).then(|| (s, e.saturating_add(1).min(size))),
            (Some(s), None) if b.is_empty() => (s < size).then_some((s, size)),
            (None, Some(n)) if a.is_empty() => (n > 0 && size > 0).then(|| (size.saturating_sub(n), size)),
            _ => return Ranges::Whole,
        };
        if let Some(r) = range {
            out.push(r);
        }
    }
    if out.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Some(out)
    }
}

/// The whole file instead of ranges that would cost more than it: more than `MAX_RANGES`
/// parts, or overlaps that add up to more bytes than the file (`bytes=0-,0-,...` would
/// send it many times over, and its length could pass u64). RFC 9110 lets a server
/// ignore such a `Range`.
fn bounded(ranges: Ranges, size: u64) -> Ranges {
    match ranges {
        Ranges::Some(list) => {
            let total = list.iter().try_fold(0u64, |sum, &(s, e)| sum.checked_add(e - s));
            if list.len() <= MAX_RANGES && total.is_some_and(|t| t <= size) {
                Ranges::Some(list)
            } else {
                Ranges::Whole
            }
        }
        other => other,
    }
}

fn not_modified(headers: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    if let Some(v) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return v.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag));
    }
    match headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        Some(since) => truncate_secs(mtime) <= since,
        None => false,
    }
}

fn if_range_holds(headers: &HeaderMap, etag: &str, mtime: SystemTime) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) if v.starts_with('"') => v == etag,
        Some(v) => httpdate::parse_http_date(v).is_ok_and(|d| truncate_secs(mtime) <= d),
    }
}

/// HTTP dates have whole seconds.
fn truncate_secs(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// `?list[&after=COOKIE][&limit=N]`: a page of a directory's entries.
async fn list(state: &Arc<Sidecar>, dir: crate::Ino, path: &str, query: &str) -> ApiResult<Response> {
    let mut after = 0u64;
    let mut limit = 1000usize;
    for (k, v) in query.split('&').filter_map(|q| q.split_once('=')) {
        match k {
            "after" => after = v.parse().map_err(|_| ApiError::bad_request("after= must be a number"))?,
            "limit" => {
                limit =
                    v.parse::<usize>().map_err(|_| ApiError::bad_request("limit= must be a number"))?.clamp(1, 10_000)
            }
            _ => {}
        }
    }
    let entries = state
        .blocking(move |vol| {
            let page = vol.readdir(dir, after, limit + 1)?;
            page.into_iter()
                .map(|e| {
                    let a = vol.getattr(e.ino)?;
                    Ok(serde_json::json!({
                        "name": String::from_utf8_lossy(&e.name),
                        "kind": format!("{:?}", e.kind).to_lowercase(),
                        "size": a.inode.size,
                        "mtime": a.inode.mtime.secs,
                        "cookie": e.cookie,
                    }))
                })
                .collect::<crate::volume::Result<Vec<_>>>()
        })
        .await?;
    let more = entries.len() > limit;
    let entries: Vec<_> = entries.into_iter().take(limit).collect();
    let next = if more { entries.last().and_then(|e| e["cookie"].as_u64()) } else { None };
    Ok(axum::Json(serde_json::json!({ "path": path, "entries": entries, "next": next })).into_response())
}

/// `DELETE`: a file, or an empty directory.
pub async fn delete(
    State(state): State<Arc<Sidecar>>,
    client: super::observe::Client,
    req: Request,
) -> ApiResult<StatusCode> {
    let path = volume_path(raw_path(&req))?;
    if path == "/" {
        return Err(ApiError::bad_request("the root cannot be deleted"));
    }
    let token = authorize(&state, req.headers(), &path, Permission::Delete).await?;
    let event = crate::volume::AuditEvent::new("delete", format!("token:{}", token.id), &path);
    let (parent_path, name) = path.rsplit_once('/').expect("starts with /");
    let (parent_path, name) = (parent_path.to_string(), name.to_string());
    state
        .blocking(move |vol| {
            let parent = vol.resolve(&parent_path)?;
            match vol.lookup(parent, name.as_bytes())?.inode.kind {
                Kind::Dir => vol.rmdir(parent, name.as_bytes()),
                _ => vol.remove(parent, name.as_bytes(), None),
            }
        })
        .await?;
    state.audit(client, event).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::{bounded, parse_ranges, Ranges};

    #[test]
    fn ranges_are_clipped_and_validated() {
        assert_eq!(parse_ranges("bytes=0-9", 100), Ranges::Some(vec![(0, 10)]));
        assert_eq!(parse_ranges("bytes=90-", 100), Ranges::Some(vec![(90, 100)]));
        assert_eq!(parse_ranges("bytes=-10", 100), Ranges::Some(vec![(90, 100)]));
        assert_eq!(parse_ranges("bytes=95-200", 100), Ranges::Some(vec![(95, 100)]));
        assert_eq!(parse_ranges("bytes=0-0, 5-6", 100), Ranges::Some(vec![(0, 1), (5, 7)]));
        assert_eq!(parse_ranges("bytes=100-", 100), Ranges::Unsatisfiable);
        assert_eq!(parse_ranges("bytes=5-2", 100), Ranges::Whole);
        let huge = format!("bytes=0-{}", u64::MAX);
        assert_eq!(parse_ranges(&huge, 3_000_000), Ranges::Some(vec![(0, 3_000_000)]));
        assert_eq!(parse_ranges(&format!("bytes=-{}", u64::MAX), 100), Ranges::Some(vec![(0, 100)]));
        assert_eq!(parse_ranges("items=0-1", 100), Ranges::Whole);
    }

    #[test]
    fn costly_range_sets_give_the_whole_file() {
        let two = parse_ranges("bytes=0-9, 20-29", 100);
        assert_eq!(bounded(two, 100), Ranges::Some(vec![(0, 10), (20, 30)]));
        assert_eq!(bounded(parse_ranges("bytes=90-", 100), 100), Ranges::Some(vec![(90, 100)]));
        assert_eq!(bounded(parse_ranges("bytes=0-,0-", 100), 100), Ranges::Whole);
        assert_eq!(bounded(parse_ranges("bytes=0-59,40-99", 100), 100), Ranges::Whole);
        // A huge sparse file asked for twice: the lengths add up past u64.
        let huge = u64::MAX - 1;
        assert_eq!(bounded(Ranges::Some(vec![(0, huge), (0, huge)]), huge), Ranges::Whole);
        let many = (0..=super::MAX_RANGES as u64).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(bounded(parse_ranges(&format!("bytes={many}"), 1000), 1000), Ranges::Whole);
        assert_eq!(bounded(Ranges::Unsatisfiable, 100), Ranges::Unsatisfiable);
    }
}
