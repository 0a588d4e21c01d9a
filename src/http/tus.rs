//! `/uploads`: tus 1.0.0 (<https://tus.io/protocols/resumable-upload>) with the creation,
//! creation-with-upload, creation-defer-length, expiration, checksum (crc32c, sha1, sha256),
//! termination and concatenation extensions.
//!
//! Each PATCH is written through the engine as it arrives and made durable before the
//! answer, so the offset a client is told survives a crash of the sidecar. A checksum
//! mismatch truncates the upload back to where the PATCH started. A complete upload moves
//! to its target path in one atomic rename; a final concatenation is built from its parts'
//! extents without copying their bytes.

use super::auth::{self, authenticate};
use super::error::{ApiError, ApiResult};
use super::path::volume_path;
use super::Sidecar;
use crate::gallery::Action;
use crate::metrics::GaugeGuard;
use crate::volume::{Permission, SetAttr, TokenInfo, UploadState};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use futures_util::StreamExt;
use sha1::Digest;
use std::sync::Arc;

const VERSION: &str = "1.0.0";
const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation";
/// Bytes of the request body (its frames as they arrived) in each engine write.
const WRITE_PIECE: usize = 1 << 20;
/// `Upload-Checksum` algorithms accepted (`Tus-Checksum-Algorithm`).
const CHECKSUM_ALGORITHMS: &str = "crc32c,sha1,sha256";
/// tus's status for a checksum mismatch.
const CHECKSUM_MISMATCH: u16 = 460;
/// A client that sends nothing for this long loses its upload slot (what arrived is kept).
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

fn now() -> i64 {
    crate::utc::now_secs()
}

fn tus_headers(h: &mut HeaderMap) {
    h.insert("tus-resumable", HeaderValue::from_static(VERSION));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
}

fn respond(status: StatusCode, extra: Vec<(&'static str, String)>) -> Response {
    let mut r = status.into_response();
    tus_headers(r.headers_mut());
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

fn fail(e: ApiError) -> Response {
    let mut r = e.into_response();
    tus_headers(r.headers_mut());
    r
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Every request but OPTIONS must speak our version: the refusal for one that does not.
fn version_refused(h: &HeaderMap) -> Option<Response> {
    if header(h, "tus-resumable") == Some(VERSION) {
        return None;
    }
    let mut r = respond(StatusCode::PRECONDITION_FAILED, vec![("tus-version", VERSION.into())]);
    r.headers_mut().remove("tus-resumable");
    Some(r)
}

fn expires_header(at: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64))
}

/// `OPTIONS /uploads`: what this server supports.
pub async fn options(State(state): State<Arc<Sidecar>>) -> Response {
    let mut r = respond(
        StatusCode::NO_CONTENT,
        vec![
            ("tus-version", VERSION.into()),
            ("tus-extension", EXTENSIONS.into()),
            ("tus-max-size", state.max_upload().to_string()),
            ("tus-checksum-algorithm", CHECKSUM_ALGORITHMS.into()),
        ],
    );
    r.headers_mut().remove("cache-control");
    r
}

/// Decodes `Upload-Metadata`: `key base64,key base64,...`.
fn parse_metadata(raw: &str) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once(' ').unwrap_or((pair, ""));
        let value = Base64::decode_vec(v.trim())
            .map_err(|_| ApiError::bad_request(format!("Upload-Metadata {k}: bad base64")))?;
        out.push((k.to_string(), value));
    }
    Ok(out)
}

/// Where a complete upload goes: `path` metadata (a volume path), else `filename` placed
/// at the top of the token's prefix; either must be inside the token's scope.
fn target_of(meta: &[(String, Vec<u8>)], token: &TokenInfo) -> Result<String, ApiError> {
    let get = |k: &str| meta.iter().find(|(key, _)| key == k).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let wanted = match (get("path"), get("filename")) {
        (Some(p), _) => p,
        (None, Some(f)) if !f.contains('/') => format!("{}/{f}", token.prefix.trim_end_matches('/')),
        (None, Some(_)) => return Err(ApiError::bad_request("filename must not contain '/' (use path)")),
        (None, None) => return Err(ApiError::bad_request("Upload-Metadata needs path or filename")),
    };
    let encoded: String = wanted.split('/').map(|s| s.replace('%', "%25")).collect::<Vec<_>>().join("/");
    let path = volume_path(&encoded)?;
    if path == "/" {
        return Err(ApiError::bad_request("the upload target is the root"));
    }
    if !token.covers(&path) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("{path} is outside the token's scope")));
    }
    Ok(path)
}

/// The id in an upload URL (`/uploads/<id>` or a full URL).
fn id_of_url(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// `POST /uploads`: creation (with an optional first piece), or a final concatenation.
pub async fn create(State(state): State<Arc<Sidecar>>, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    match create_inner(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

/// The owner, target and author of an upload into a gallery (metadata `gallery` and
/// `filename`): any caller whose role there allows uploading. An existing name gets a
/// numbered variant, so a drop box never overwrites.
async fn gallery_upload(
    state: &Arc<Sidecar>,
    headers: &HeaderMap,
    gallery: &str,
    meta: &[(String, Vec<u8>)],
) -> ApiResult<(String, String, Option<String>)> {
    let c = super::gallery::ctx(state, headers, gallery).await?;
    let name = meta
        .iter()
        .find(|(k, _)| k == "filename")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .ok_or_else(|| ApiError::bad_request("Upload-Metadata needs filename for a gallery upload"))?;
    if name.is_empty() || name.contains('/') || name.contains('\0') || name.starts_with('.') || name.len() > 200 {
        return Err(ApiError::bad_request("filename: 1 to 200 bytes, without '/', not starting with '.'"));
    }
    // `folder`: the id of a folder of the gallery (default: the gallery's own).
    let folder = match meta.iter().find(|(k, _)| k == "folder") {
        Some((_, v)) => Some(
            String::from_utf8_lossy(v)
                .parse::<u64>()
                .map(crate::Ino)
                .map_err(|_| ApiError::bad_request("folder: a folder id of the gallery"))?,
        ),
        None => None,
    };
    let (g, actor) = (c.gallery.clone(), c.actor.clone());
    let target = state.gallery(move |gs| gs.upload_target(&g, &actor, folder, &name)).await?;
    let who = c.actor.name.clone().unwrap_or_else(|| "admin".into());
    Ok((format!("gallery:{}:{who}", c.gallery.id), target, c.actor.name))
}

async fn create_inner(state: &Arc<Sidecar>, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    let raw_meta = header(headers, "upload-metadata").unwrap_or("").to_string();
    let meta = parse_metadata(&raw_meta)?;
    if let Some((_, g)) = meta.iter().find(|(k, _)| k == "gallery") {
        if header(headers, "upload-concat").is_some() {
            return Err(ApiError::bad_request("uploads into a gallery are single uploads, without Upload-Concat"));
        }
        let (owner, target, author) = gallery_upload(state, headers, &String::from_utf8_lossy(g), &meta).await?;
        return begin(state, headers, body, raw_meta, Some(target), false, owner, author).await;
    }
    let token = authenticate(state, headers).await?;
    if !token.allow.contains(&Permission::Write) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "the token does not allow write"));
    }
    let concat = header(headers, "upload-concat").unwrap_or("");
    let partial = concat == "partial";
    let target = if partial { None } else { Some(target_of(&meta, &token)?) };
    let expires = now() + state.upload_expiry().as_secs() as i64;
    let mut id = [0u8; 16];
    crate::crypto::keys::random_bytes(&mut id);
    let id = crate::ids::hex(&id);

    if let Some(list) = concat.strip_prefix("final;") {
        let parts = final_parts(list)?;
        let target = target.expect("a final upload has a target");
        let (tok, t, i, m) = (token.clone(), target.clone(), id.clone(), raw_meta.clone());
        let max = state.max_upload();
        let size = state
            .on_pool(move |g| -> ApiResult<u64> {
                let vol = g.volume();
                let mut inos = Vec::new();
                let mut sizes = Vec::new();
                for p in &parts {
                    let (s, ino, offset) = vol.upload_get(p)?;
                    if !s.partial || s.owner != tok.id || s.length != Some(offset) {
                        return Err(crate::volume::Error::Invalid.into());
                    }
                    inos.push(ino);
                    sizes.push(offset);
                }
                final_size(&sizes, max)?;
                let st = UploadState {
                    id: i.clone(),
                    length: None,
                    metadata: m,
                    target: Some(t.clone()),
                    expires,
                    partial: false,
                    owner: tok.id.clone(),
                    author: None,
                };
                let ino = vol.upload_create(&st)?;
                let size = vol.concat_files(ino, &inos)?;
                vol.upload_finish(&i, ino, &t, None, None)?;
                for p in &parts {
                    vol.upload_delete(p)?;
                }
                Ok(size)
            })
            .await
            .map_err(|e| {
                if e.status == StatusCode::BAD_REQUEST {
                    ApiError::bad_request("the parts must be complete partial uploads of this token")
                } else {
                    e
                }
            })?;
        return Ok(respond(
            StatusCode::CREATED,
            vec![("location", format!("/uploads/{id}")), ("upload-offset", size.to_string())],
        ));
    }

    begin(state, headers, body, raw_meta, target, partial, token.id.clone(), None).await
}

/// The ids of the parts of `Upload-Concat: final;URL URL ...`. Each part is deleted once
/// joined, so one named twice would fail after the final upload is in place.
fn final_parts(list: &str) -> ApiResult<Vec<String>> {
    let mut parts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in list.split_whitespace().map(id_of_url) {
        if !seen.insert(id) {
            return Err(ApiError::bad_request(format!("Upload-Concat: the partial upload {id} is named twice")));
        }
        parts.push(id.to_string());
    }
    if parts.is_empty() {
        return Err(ApiError::bad_request("Upload-Concat: final needs partial uploads"));
    }
    Ok(parts)
}

/// The size of a final upload of parts of `sizes` bytes, which `Tus-Max-Size` bounds as
/// it bounds any upload.
fn final_size(sizes: &[u64], max: u64) -> ApiResult<u64> {
    sizes.iter().try_fold(0u64, |sum, &n| sum.checked_add(n)).filter(|&total| total <= max).ok_or_else(|| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Upload-Concat: the parts together are larger than Tus-Max-Size")
    })
}

/// Creates an upload (with its first piece when the request carries one).
#[allow(clippy::too_many_arguments)]
async fn begin(
    state: &Arc<Sidecar>,
    headers: &HeaderMap,
    body: Body,
    raw_meta: String,
    target: Option<String>,
    partial: bool,
    owner: String,
    author: Option<String>,
) -> ApiResult<Response> {
    let expires = now() + state.upload_expiry().as_secs() as i64;
    let mut id = [0u8; 16];
    crate::crypto::keys::random_bytes(&mut id);
    let id = crate::ids::hex(&id);
    let length = match (header(headers, "upload-length"), header(headers, "upload-defer-length")) {
        (Some(l), _) => Some(l.parse::<u64>().map_err(|_| ApiError::bad_request("Upload-Length must be a number"))?),
        (None, Some("1")) => None,
        _ => return Err(ApiError::bad_request("Upload-Length or Upload-Defer-Length: 1 is required")),
    };
    if length.is_some_and(|l| l > state.max_upload()) {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "larger than Tus-Max-Size"));
    }
    let st = UploadState { id: id.clone(), length, metadata: raw_meta, target, expires, partial, owner, author };
    let st2 = st.clone();
    let ino = state.blocking(move |vol| vol.upload_create(&st2)).await?;
    let mut extra = vec![("location", format!("/uploads/{id}")), ("upload-expires", expires_header(expires))];
    let with_body = header(headers, "content-type") == Some("application/offset+octet-stream");
    if !partial && (st.owner.starts_with("gallery:") || super::wants_fingerprint(headers)) {
        state.upload_hashes.start(&id);
    }
    let mut offset = 0;
    if with_body {
        offset = receive(state, &st, ino, 0, headers, body).await?;
        extra.push(("upload-offset", offset.to_string()));
    }
    if length == Some(offset) {
        complete(state, headers, &st, ino).await?;
    }
    Ok(respond(StatusCode::CREATED, extra))
}

/// Looks an upload up for the caller: the token that made it or one with write access to
/// its target; for a gallery upload, the same person, still allowed to upload there.
async fn upload_for(state: &Arc<Sidecar>, headers: &HeaderMap, id: &str) -> ApiResult<(UploadState, crate::Ino, u64)> {
    let id = id.to_string();
    // The bearer token is checked beside the lookup, not after it: each engine call waits
    // for a thread of the blocking pool to wake, and every PATCH starts here
    // (docs/benchmarks.md, "2026-12-07 (day)"). An upload into a gallery ignores it.
    let token = auth::bearer(headers);
    let verify = async {
        match &token {
            Ok(t) => {
                let t = t.clone();
                Some(state.blocking(move |vol| vol.token_verify(&t)).await)
            }
            Err(_) => None,
        }
    };
    let (found, verified) = tokio::join!(state.blocking(move |vol| vol.upload_get(&id)), verify);
    let (st, ino, offset) = found?;
    if let Some(rest) = st.owner.strip_prefix("gallery:") {
        let (gallery, who) = rest.split_once(':').unwrap_or((rest, ""));
        let c = super::gallery::ctx(state, headers, gallery).await?;
        c.actor.require(Action::Upload)?;
        if c.actor.name.as_deref().unwrap_or("admin") != who {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "this upload belongs to someone else"));
        }
        return Ok((st, ino, offset));
    }
    let token = match verified {
        Some(verified) => auth::accept(state, verified?).await?,
        None => return Err(token.expect_err("verified unless the header is bad")),
    };
    let allowed = token.id == st.owner
        || (token.allow.contains(&Permission::Write) && st.target.as_deref().is_some_and(|t| token.covers(t)));
    if !allowed {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this upload belongs to another token"));
    }
    Ok((st, ino, offset))
}

/// `HEAD /uploads/<id>`: how much arrived. An upload whose every byte arrived but that
/// is still here (the server stopped between its last byte and its move) is moved to its
/// target now: a client that finds the offset at the length resumes no further.
pub async fn head(State(state): State<Arc<Sidecar>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let found = async {
        let (st, ino, offset) = upload_for(&state, &headers, &id).await?;
        if st.length == Some(offset) && !st.partial {
            // A PATCH holding the upload completes it itself.
            if let Ok(_busy) = Busy::take(&state, &id) {
                complete(&state, &headers, &st, ino).await?;
            }
        }
        Ok::<_, ApiError>((st, ino, offset))
    };
    match found.await {
        Ok((st, _, offset)) => {
            let mut extra = vec![("upload-offset", offset.to_string()), ("upload-expires", expires_header(st.expires))];
            match st.length {
                Some(l) => extra.push(("upload-length", l.to_string())),
                None => extra.push(("upload-defer-length", "1".into())),
            }
            if !st.metadata.is_empty() {
                extra.push(("upload-metadata", st.metadata.clone()));
            }
            if st.partial {
                extra.push(("upload-concat", "partial".into()));
            }
            respond(StatusCode::OK, extra)
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            fail(ApiError::new(StatusCode::NOT_FOUND, "no such upload (finished, terminated or expired)"))
        }
        Err(e) => fail(e),
    }
}

/// `PATCH /uploads/<id>`: the next piece.
pub async fn patch(
    State(state): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    match patch_inner(&state, &id, &headers, body).await {
        Ok(r) => r,
        Err(e) => fail(e),
    }
}

/// Marks an upload busy for the life of a PATCH.
struct Busy<'a> {
    state: &'a Sidecar,
    id: String,
    _counted: crate::metrics::GaugeGuard,
}

impl<'a> Busy<'a> {
    fn take(state: &'a Sidecar, id: &str) -> ApiResult<Self> {
        if !state.busy_uploads.lock().expect("busy uploads").insert(id.to_string()) {
            return Err(ApiError::new(StatusCode::LOCKED, "another request is writing to this upload"));
        }
        Ok(Self { state, id: id.to_string(), _counted: GaugeGuard::hold(&crate::metrics::get().uploads_in_flight) })
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.state.busy_uploads.lock().expect("busy uploads").remove(&self.id);
    }
}

async fn patch_inner(state: &Arc<Sidecar>, id: &str, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    if header(headers, "content-type") != Some("application/offset+octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream",
        ));
    }
    let _busy = Busy::take(state, id)?;
    let claimed: u64 = header(headers, "upload-offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::bad_request("Upload-Offset is required"))?;
    let (mut st, ino, offset) = upload_for(state, headers, id).await?;
    if claimed != offset {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Upload-Offset is {claimed}, the upload has {offset} bytes"),
        ));
    }
    if st.length.is_none() {
        if let Some(l) = header(headers, "upload-length") {
            let l: u64 = l.parse().map_err(|_| ApiError::bad_request("Upload-Length must be a number"))?;
            if l < offset || l > state.max_upload() {
                return Err(ApiError::bad_request("Upload-Length is smaller than what arrived, or too large"));
            }
            st.length = Some(l);
            let st2 = st.clone();
            state.blocking(move |vol| vol.upload_put_state(ino, &st2)).await?;
        }
    }
    let new_offset = receive(state, &st, ino, offset, headers, body).await?;
    if st.length == Some(new_offset) && !st.partial {
        complete(state, headers, &st, ino).await?;
    }
    Ok(respond(
        StatusCode::NO_CONTENT,
        vec![("upload-offset", new_offset.to_string()), ("upload-expires", expires_header(st.expires))],
    ))
}

/// The BLAKE2b of a whole (not partial) upload's bytes so far, hashed in order as they
/// arrive, for uploads whose fingerprint (`Repr-Digest`, the `user.nanofs.blake2b` of the
/// file) will be wanted: those into a gallery, which fingerprints every item, and those
/// whose creation asked for it with `Want-Repr-Digest`. It is then known without reading
/// the file back. Others are not hashed: that hash is a serial BLAKE2b of every byte, the
/// largest single cost of an upload (docs/benchmarks.md, "fingerprints when asked"), and
/// each piece is already checked by its `Upload-Checksum`. Kept in memory only: after a
/// restart of the sidecar, the engine computes it on first request, as for any file.
#[derive(Default)]
pub struct RunningHashes(std::sync::Mutex<std::collections::HashMap<String, (u64, blake2b_simd::State)>>);

impl RunningHashes {
    /// Hashes upload `id` from its first byte on.
    fn start(&self, id: &str) {
        let h = blake2b_simd::Params::new().hash_length(32).to_state();
        self.0.lock().expect("upload hashes").insert(id.to_string(), (0, h));
    }

    /// The hash of an upload's first `offset` bytes, taken out while a PATCH adds to it.
    fn take(&self, id: &str, offset: u64) -> Option<blake2b_simd::State> {
        match self.0.lock().expect("upload hashes").remove(id) {
            Some((at, h)) if at == offset => Some(h),
            _ => None,
        }
    }

    fn put(&self, id: &str, offset: u64, h: blake2b_simd::State) {
        self.0.lock().expect("upload hashes").insert(id.to_string(), (offset, h));
    }

    /// The fingerprint of a complete upload of `len` bytes, if all of them were hashed.
    fn finish(&self, id: &str, len: u64) -> Option<(u64, [u8; 32])> {
        let (at, h) = self.0.lock().expect("upload hashes").remove(id)?;
        (at == len).then(|| (len, h.finalize().as_bytes().try_into().expect("32 bytes")))
    }

    fn forget(&self, id: &str) {
        self.0.lock().expect("upload hashes").remove(id);
    }
}

/// The integrity check a client asked for on one PATCH (`Upload-Checksum`).
#[derive(Clone)]
enum Checksum {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    /// CRC-32C (Castagnoli), big-endian as S3 and GCS send it: a check against damage in
    /// transit at memory speed, where TLS already guards against tampering.
    Crc32c(crc_fast::Digest),
}

impl Checksum {
    /// Parses `ALGORITHM BASE64`; returns the running check and the value it must reach.
    fn parse(v: &str) -> ApiResult<(Self, Vec<u8>)> {
        let (algo, b64) =
            v.split_once(' ').ok_or_else(|| ApiError::bad_request("Upload-Checksum: ALGORITHM BASE64"))?;
        let want = Base64::decode_vec(b64.trim()).map_err(|_| ApiError::bad_request("Upload-Checksum: bad base64"))?;
        let check = match algo {
            "sha1" => Self::Sha1(sha1::Sha1::new()),
            "sha256" => Self::Sha256(sha2::Sha256::new()),
            "crc32c" => Self::Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi)),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unsupported checksum algorithm {algo:?} ({CHECKSUM_ALGORITHMS})"
                )))
            }
        };
        Ok((check, want))
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Crc32c(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32c(h) => (h.finalize() as u32).to_be_bytes().to_vec(),
        }
    }
}

/// What a PATCH computes over its bytes besides storing them: the client's checksum and the
/// upload's running fingerprint. A piece is hashed on the blocking pool beside the engine's
/// write of it, while the next piece arrives: the receiving task only gathers bytes
/// (docs/benchmarks.md, "hashes beside the write").
struct PieceHashes {
    checksum: Option<Checksum>,
    fingerprint: Option<blake2b_simd::State>,
}

impl PieceHashes {
    fn update(mut self, parts: &[Bytes]) -> Self {
        for data in parts {
            if let Some(c) = &mut self.checksum {
                c.update(data);
            }
            if let Some(h) = &mut self.fingerprint {
                h.update(data);
            }
        }
        self
    }

    fn nothing_to_hash(&self) -> bool {
        self.checksum.is_none() && self.fingerprint.is_none()
    }

    /// Whether the checksum, if any, is `want`.
    fn intact(&self, want: Option<&[u8]>) -> bool {
        match (&self.checksum, want) {
            (Some(c), Some(want)) => c.clone().finish() == want,
            _ => true,
        }
    }
}

/// A piece handed on: its engine write and its hashing, running side by side.
struct InFlight {
    write: tokio::task::JoinHandle<ApiResult<()>>,
    /// `None` with nothing to hash: a thread woken for nothing costs the upload a little
    /// with every piece.
    hashing: Option<tokio::task::JoinHandle<PieceHashes>>,
}

impl InFlight {
    /// Waits for both; gives the hashes back, if its hashing had them, to go on with the
    /// next piece.
    async fn finish(self) -> ApiResult<Option<PieceHashes>> {
        let hashed = match self.hashing {
            Some(hashing) => Some(hashing.await),
            None => None,
        };
        joined(self.write.await)?;
        hashed.transpose().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }
}

/// Writes the body at `offset`; returns the new offset. Bytes that arrived before a broken
/// connection are kept (the client resumes after them); with a checksum, a mismatch or a
/// broken body undoes the whole piece.
async fn receive(
    state: &Arc<Sidecar>,
    st: &UploadState,
    ino: crate::Ino,
    offset: u64,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<u64> {
    let (checksum, want) = match header(headers, "upload-checksum") {
        None => (None, None),
        Some(v) => Checksum::parse(v).map(|(c, want)| (Some(c), Some(want)))?,
    };
    let limit = st.length.unwrap_or(state.max_upload());
    let _slot = state
        .upload_writers
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let fingerprint = if st.partial { None } else { state.upload_hashes.take(&st.id, offset) };
    let fingerprint_before = fingerprint.clone();
    // The hashes travel with the pieces: `None` while a piece's hashing has them.
    let mut hashes = Some(PieceHashes { checksum, fingerprint });
    let mut at = offset;
    // The body's frames as they arrived, written and hashed in place: not gathered.
    let mut piece: Vec<Bytes> = Vec::new();
    let mut piece_len = 0usize;
    // One piece is written and hashed while the next arrives: the network, the engine and
    // the hashes overlap, and pieces still land in order (docs/benchmarks.md, "profile").
    let mut in_flight: Option<InFlight> = None;
    let mut stream = body.into_data_stream();
    let mut broken = None;
    // Whether the last piece's write committed the upload's file already.
    let mut synced = false;
    loop {
        let next = match tokio::time::timeout(BODY_IDLE, stream.next()).await {
            Ok(n) => n,
            Err(_) => Some(Err(axum::Error::new("no data for 30 s"))),
        };
        let done = match next {
            Some(Ok(bytes)) => {
                if at + (piece_len + bytes.len()) as u64 > limit {
                    broken = Some(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "more bytes than Upload-Length"));
                    true
                } else {
                    piece_len += bytes.len();
                    piece.push(bytes);
                    false
                }
            }
            Some(Err(e)) => {
                broken = Some(ApiError::bad_request(format!("request body: {e}")));
                true
            }
            None => true,
        };
        if piece_len >= WRITE_PIECE || (done && piece_len > 0) {
            let data = Arc::new(std::mem::take(&mut piece));
            let from = at;
            at += std::mem::take(&mut piece_len) as u64;
            if let Some(previous) = in_flight.take() {
                if let Some(h) = previous.finish().await? {
                    hashes = Some(h);
                }
            }
            let h = hashes.take().expect("the previous piece gave the hashes back");
            if done && broken.is_none() {
                // The last piece of a whole body is written, hashed and, if its checksum
                // holds, committed in one engine call: the answer waits for one hand-off to
                // the blocking pool instead of two (docs/benchmarks.md, "2026-12-07 (day)").
                let want = want.clone();
                let (h, committed) = state
                    .blocking(move |vol| {
                        vol.upload_append(ino, from, &data)?;
                        let h = h.update(&data);
                        let intact = h.intact(want.as_deref());
                        if intact {
                            vol.fsync(ino, None)?;
                        }
                        Ok((h, intact))
                    })
                    .await?;
                hashes = Some(h);
                synced = committed;
                break;
            }
            let (s, piece) = (state.clone(), data.clone());
            let write = async move { s.blocking(move |vol| vol.upload_append(ino, from, &piece)).await };
            let hashing = if h.nothing_to_hash() {
                hashes = Some(h);
                None
            } else {
                Some(tokio::task::spawn_blocking(move || h.update(&data)))
            };
            in_flight = Some(InFlight {
                write: tokio::spawn(tracing::Instrument::instrument(write, tracing::Span::current())),
                hashing,
            });
        }
        if done {
            break;
        }
    }
    if let Some(last) = in_flight.take() {
        if let Some(h) = last.finish().await? {
            hashes = Some(h);
        }
    }
    let hashes = hashes.expect("every piece gave the hashes back");
    let mismatch = !hashes.intact(want.as_deref());
    let fingerprint = hashes.fingerprint;
    let undo = mismatch
        || (broken.is_some() && header(headers, "upload-checksum").is_some())
        || broken.as_ref().is_some_and(|e| e.status == StatusCode::PAYLOAD_TOO_LARGE);
    // A failed engine write returned above and forgot the hash: the file is hashed on
    // first request instead.
    match if undo { fingerprint_before.map(|h| (offset, h)) } else { fingerprint.map(|h| (at, h)) } {
        Some((bytes, h)) => state.upload_hashes.put(&st.id, bytes, h),
        None => state.upload_hashes.forget(&st.id),
    }
    if undo {
        state
            .blocking(move |vol| {
                vol.setattr(ino, &SetAttr { size: Some(offset), ..Default::default() })?;
                vol.fsync(ino, None)
            })
            .await?;
        if mismatch {
            return Err(ApiError::new(
                StatusCode::from_u16(CHECKSUM_MISMATCH).expect("valid status"),
                "checksum mismatch",
            ));
        }
    } else if !synced {
        state.blocking(move |vol| vol.fsync(ino, None)).await?;
    }
    match broken {
        Some(e) => Err(e),
        None => Ok(at),
    }
}

/// The outcome of a spawned engine write.
fn joined(r: Result<ApiResult<()>, tokio::task::JoinError>) -> ApiResult<()> {
    r.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Moves a complete upload to its target; one into a gallery through the galleries, which
/// check once more that its uploader may.
async fn complete(state: &Arc<Sidecar>, headers: &HeaderMap, st: &UploadState, ino: crate::Ino) -> ApiResult<()> {
    if st.partial {
        return Ok(());
    }
    let target = st.target.clone().ok_or_else(|| ApiError::bad_request("the upload has no target"))?;
    let (id, t) = (st.id.clone(), target.clone());
    let fingerprint = st.length.and_then(|len| state.upload_hashes.finish(&st.id, len));
    match st.owner.strip_prefix("gallery:") {
        Some(rest) => {
            let c = super::gallery::ctx(state, headers, rest.split_once(':').map_or(rest, |(g, _)| g)).await?;
            state.gallery(move |gs| gs.finish_upload(&c.gallery, &c.actor, &id, ino, &t, fingerprint)).await?;
        }
        None => state.blocking(move |vol| vol.upload_finish(&id, ino, &t, None, fingerprint).map(drop)).await?,
    }
    tracing::info!(upload = %st.id, target, "upload complete");
    Ok(())
}

/// `DELETE /uploads/<id>`: termination.
pub async fn terminate(State(state): State<Arc<Sidecar>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = version_refused(&headers) {
        return r;
    }
    let result = async {
        upload_for(&state, &headers, &id).await?;
        let _busy = Busy::take(&state, &id)?;
        let i = id.clone();
        state.blocking(move |vol| vol.upload_delete(&i)).await?;
        state.upload_hashes.forget(&id);
        Ok(())
    }
    .await;
    match result {
        Ok(()) => respond(StatusCode::NO_CONTENT, vec![]),
        Err(e) => fail(e),
    }
}

/// Deletes expired incomplete uploads (every minute, or sooner for short expiries); their
/// chunks go to GC.
pub async fn expire_loop(state: Arc<Sidecar>) {
    let every =
        (state.upload_expiry() / 4).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let swept = state
            .blocking(|vol| {
                let mut expired = Vec::new();
                for id in vol.upload_ids()? {
                    if let Ok((st, _, _)) = vol.upload_get(&id) {
                        if st.expires <= now() {
                            vol.upload_delete(&id)?;
                            expired.push(id);
                        }
                    }
                }
                Ok(expired)
            })
            .await;
        match swept {
            Ok(expired) if expired.is_empty() => {}
            Ok(expired) => {
                for id in &expired {
                    state.upload_hashes.forget(id);
                }
                tracing::info!(uploads = expired.len(), "expired uploads deleted");
            }
            Err(e) => tracing::warn!(error = %e.message, "expiring uploads failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_uploads_name_each_part_once_and_stay_under_the_maximum() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        assert_eq!(final_parts(&format!("/uploads/{a} http://h/uploads/{b}")).unwrap(), [a, b]);
        assert_eq!(final_parts("").unwrap_err().status, StatusCode::BAD_REQUEST);
        let twice = final_parts(&format!("/uploads/{a} /uploads/{b} http://h/uploads/{a}")).unwrap_err();
        assert_eq!(twice.status, StatusCode::BAD_REQUEST);
        assert!(twice.message.contains(a), "{}", twice.message);

        assert_eq!(final_size(&[5, 6], 11).unwrap(), 11);
        assert_eq!(final_size(&[], 11).unwrap(), 0);
        assert_eq!(final_size(&[6, 6], 11).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        // Parts each under the maximum whose sum passes u64.
        assert_eq!(final_size(&[u64::MAX, 1], u64::MAX).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
