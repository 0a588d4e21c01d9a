//! Delta pushes: send only the chunks that changed.
//!
//! The client cuts its file with the volume's FastCDC parameters (from `/api/transfer`)
//! and sends the list of chunk lengths and plain BLAKE2b-256 hashes. The sidecar matches
//! them against the chunks of a base file the token may read (by default the target
//! itself), answers which are missing, takes those one by one, and commits the new file as
//! a list of chunk references: no byte is reassembled on the server. Only the base file is
//! consulted, so a client learns nothing about content it could not read anyway.

use super::auth::authorize;
use super::error::{ApiError, ApiResult};
use super::path::volume_path;
use super::Sidecar;
use crate::volume::{plain_hash, Kind, Permission, Piece, UploadState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Largest chunk a manifest may name (the largest `max_chunk_size_kb`).
const MAX_CHUNK: u32 = 16 << 20;
/// Most chunks in one manifest (16 TiB of 1 MiB chunks).
const MAX_CHUNKS: usize = 1 << 24;

/// A delta in progress.
pub struct Session {
    owner: String,
    target: String,
    entries: Vec<Entry>,
    created: Instant,
}

struct Entry {
    len: u32,
    hash: [u8; 32],
    piece: Option<Piece>,
}

/// Open sessions by id.
pub type Sessions = std::sync::Mutex<HashMap<String, Session>>;

/// One chunk of a manifest.
#[derive(Debug, Deserialize)]
pub struct ChunkRef {
    len: u32,
    /// Plain BLAKE2b-256, hex.
    hash: String,
}

/// `POST /api/delta`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Where the new file goes.
    target: String,
    /// The file whose chunks may be reused (default: the target).
    base: Option<String>,
    /// The new file, chunk by chunk.
    chunks: Vec<ChunkRef>,
}

/// The answer: which chunks to send.
#[derive(Debug, Serialize)]
pub struct Plan {
    session: String,
    missing: Vec<usize>,
    reused_bytes: u64,
}

fn encode(p: &str) -> String {
    p.split('/').map(|s| s.replace('%', "%25")).collect::<Vec<_>>().join("/")
}

/// Opens a session: matches the manifest against the base file.
pub async fn start(
    State(state): State<Arc<Sidecar>>,
    headers: HeaderMap,
    Json(m): Json<Manifest>,
) -> ApiResult<Json<Plan>> {
    let target = volume_path(&encode(&m.target))?;
    if target == "/" {
        return Err(ApiError::bad_request("the target is the root"));
    }
    let token = authorize(&state, &headers, &target, Permission::Write).await?;
    let base = volume_path(&encode(m.base.as_deref().unwrap_or(&target)))?;
    authorize(&state, &headers, &base, Permission::Read).await?;
    if m.chunks.len() > MAX_CHUNKS {
        return Err(ApiError::bad_request("too many chunks"));
    }
    let mut entries = Vec::with_capacity(m.chunks.len());
    for c in &m.chunks {
        let hash: [u8; 32] = crate::ids::unhex(&c.hash)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| ApiError::bad_request("a chunk hash is not 64 hex digits"))?;
        if c.len == 0 || c.len > MAX_CHUNK {
            return Err(ApiError::bad_request("a chunk length is 0 or over 16 MiB"));
        }
        entries.push(Entry { len: c.len, hash, piece: None });
    }
    let known = state
        .blocking(move |vol| match vol.resolve(&base) {
            Ok(ino) if vol.getattr(ino)?.inode.kind == Kind::File => vol.chunks_by_plain_hash(ino),
            Ok(_) | Err(crate::volume::Error::NotFound) => Ok(HashMap::new()),
            Err(e) => Err(e),
        })
        .await?;
    let mut missing = Vec::new();
    let mut reused_bytes = 0;
    for (i, e) in entries.iter_mut().enumerate() {
        match known.get(&e.hash).filter(|p| p.len == e.len) {
            Some(p) => {
                e.piece = Some(*p);
                reused_bytes += u64::from(e.len);
            }
            None => missing.push(i),
        }
    }
    let mut id = [0u8; 16];
    crate::crypto::keys::random_bytes(&mut id);
    let id = crate::ids::hex(&id);
    let mut sessions = state.deltas.lock().expect("sessions");
    let expiry = state.upload_expiry();
    sessions.retain(|_, s| s.created.elapsed() < expiry);
    sessions.insert(id.clone(), Session { owner: token.id, target, entries, created: Instant::now() });
    Ok(Json(Plan { session: id, missing, reused_bytes }))
}

fn owned<'a>(sessions: &'a mut HashMap<String, Session>, id: &str, owner: &str) -> ApiResult<&'a mut Session> {
    match sessions.get_mut(id) {
        Some(s) if s.owner == owner => Ok(s),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "this delta belongs to another token")),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such delta (expired or committed)")),
    }
}

/// `PUT /api/delta/<session>/<index>`: one missing chunk.
pub async fn put_chunk(
    State(state): State<Arc<Sidecar>>,
    Path((id, index)): Path<(String, usize)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let token = super::auth::authenticate(&state, &headers).await?;
    let (len, hash) = {
        let mut sessions = state.deltas.lock().expect("sessions");
        let s = owned(&mut sessions, &id, &token.id)?;
        let e = s.entries.get(index).ok_or_else(|| ApiError::bad_request("no such chunk index"))?;
        (e.len, e.hash)
    };
    let bytes = axum::body::to_bytes(body, len as usize + 1)
        .await
        .map_err(|e| ApiError::bad_request(format!("chunk body: {e}")))?;
    if bytes.len() != len as usize || plain_hash(&bytes) != hash {
        return Err(ApiError::bad_request("the chunk does not match its length and hash"));
    }
    let _slot = state
        .upload_writers
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let piece = state.blocking(move |vol| vol.store_plain_chunk(&bytes)).await?;
    let mut sessions = state.deltas.lock().expect("sessions");
    owned(&mut sessions, &id, &token.id)?.entries[index].piece = Some(piece);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/delta/<session>/commit`: the new file, from chunk references.
pub async fn commit(
    State(state): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let token = super::auth::authenticate(&state, &headers).await?;
    let (target, pieces) = {
        let mut sessions = state.deltas.lock().expect("sessions");
        let s = owned(&mut sessions, &id, &token.id)?;
        let missing: Vec<usize> =
            s.entries.iter().enumerate().filter(|(_, e)| e.piece.is_none()).map(|(i, _)| i).collect();
        if !missing.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{} chunks still missing, first {}", missing.len(), missing[0]),
            ));
        }
        (s.target.clone(), s.entries.iter().map(|e| e.piece.expect("checked")).collect::<Vec<_>>())
    };
    let st = UploadState {
        id: id.clone(),
        length: None,
        metadata: String::new(),
        target: Some(target.clone()),
        expires: 0,
        partial: false,
        owner: token.id.clone(),
        author: None,
    };
    let (t, i) = (target.clone(), id.clone());
    let size = state
        .blocking(move |vol| {
            let ino = vol.assemble_upload(&st, &pieces)?;
            let attr = vol.upload_finish(&i, ino, &t, None, None)?;
            Ok(attr.inode.size)
        })
        .await
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                ApiError::new(StatusCode::CONFLICT, "a reused chunk was collected meanwhile; start the delta again")
            } else {
                e
            }
        })?;
    state.deltas.lock().expect("sessions").remove(&id);
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "path": target, "size": size }))))
}
