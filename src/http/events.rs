//! Live gallery events over WebSocket, or Server-Sent Events as a fallback, on one URL:
//! `GET /api/galleries/{id}/events?since=N`.
//!
//! A stream first says `hello` with the current sequence number, then sends every logged
//! event after `since` and then live ones, skipping any it already sent, so a client that
//! reconnects with its last number misses nothing and sees nothing twice. The caller's
//! access is checked again whenever membership or links change and at the moment a share
//! link expires; a stream whose caller lost access is closed (WebSocket code 4401).

use super::auth::{caller, Caller};
use super::error::{ApiError, ApiResult};
use super::gallery::ctx_of;
use super::Sidecar;
use crate::gallery::users::Principal;
use crate::gallery::{Action, LiveEvent, Since};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// Messages queued for one client before it counts as too slow and is dropped (it then
/// reconnects with its last number and catches up from the log).
const CLIENT_QUEUE: usize = 1024;

/// WebSocket close code for "access ended" (the 4000s are the application's).
const CLOSE_ACCESS: u16 = 4401;
/// Close code for "gallery deleted".
const CLOSE_GONE: u16 = 4404;

#[derive(Deserialize)]
pub struct EventsQuery {
    since: Option<u64>,
    /// The session or link token, for clients that cannot set headers (EventSource).
    token: Option<String>,
}

/// What the pump hands the transport.
enum Out {
    /// A JSON message with its sequence number (0 for `hello` and `reset`).
    Text(u64, Arc<str>),
    /// The end, with a code and a reason.
    Close(u16, String),
}

/// `GET /api/galleries/{id}/events`.
pub async fn events(
    State(state): State<Arc<Sidecar>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    req: Request,
) -> ApiResult<Response> {
    let (mut parts, _) = req.into_parts();
    let caller = match q.token {
        Some(t) => super::auth::caller_of_token(&state, t).await?,
        None => caller(&state, &parts.headers).await?,
    };
    let c = ctx_of(&state, caller.clone(), &id).await?;
    c.actor.require(Action::Read)?;
    let since = q.since.or_else(|| last_event_id(&parts.headers));
    // Subscribe before reading the log, so nothing falls between the two.
    let live = state.galleries.subscribe();
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let is_ws =
        parts.headers.get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_ws {
        // Events are small and clients only send control frames: small buffers keep a
        // connected client cheap (the defaults are 128 KiB each way).
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
            .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade: {e}")))?
            .read_buffer_size(4 << 10)
            .write_buffer_size(0)
            .max_message_size(64 << 10);
        let pump = tokio::spawn(pump(state.clone(), caller, id, since, live, tx));
        Ok(ws.on_upgrade(move |socket| async move {
            let _counted = client_counted("websocket");
            websocket(socket, rx).await;
            pump.abort();
        }))
    } else {
        tokio::spawn(pump(state.clone(), caller, id, since, live, tx));
        // The count falls when the stream is dropped: the client went away.
        let stream = futures_util::stream::unfold((rx, client_counted("sse")), |(mut rx, counted)| async move {
            let out = rx.recv().await;
            let event = match out {
                Some(Out::Text(seq, json)) => {
                    let mut e = SseEvent::default().data(&*json);
                    if seq > 0 {
                        e = e.id(seq.to_string());
                    }
                    e
                }
                Some(Out::Close(code, reason)) => {
                    let body = serde_json::json!({ "type": "closed", "code": code, "reason": reason }).to_string();
                    rx.close();
                    SseEvent::default().event("close").data(body)
                }
                None => return None,
            };
            Some((Ok::<_, std::convert::Infallible>(event), (rx, counted)))
        });
        Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
    }
}

/// Counts an event client of `kind` while it lives.
fn client_counted(kind: &'static str) -> crate::metrics::GaugeGuard {
    let m = crate::metrics::get();
    crate::metrics::GaugeGuard::hold(&m.event_clients.get_or_create(&crate::metrics::KindLabel { kind }))
}

fn last_event_id(h: &HeaderMap) -> Option<u64> {
    h.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

/// Sends the queued messages on the socket; returns when either side is done.
async fn websocket(mut socket: WebSocket, mut rx: mpsc::Receiver<Out>) {
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Text(_, json)) => {
                    if socket.send(Message::Text((&*json).into())).await.is_err() {
                        return;
                    }
                }
                Some(Out::Close(code, reason)) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    return;
                }
                None => return,
            },
            msg = socket.recv() => match msg {
                // Clients send nothing but pings (answered by the library) and the close.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Feeds one client: hello, the missed events, then live ones, until access ends.
async fn pump(
    state: Arc<Sidecar>,
    caller: Caller,
    gallery: String,
    since: Option<u64>,
    mut live: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    tx: mpsc::Sender<Out>,
) {
    let text = |seq: u64, v: serde_json::Value| Out::Text(seq, Arc::from(v.to_string()));
    let expires = match &caller {
        Caller::Principal(Principal::Link { expires, .. }) => Some(*expires),
        _ => None,
    };
    let mut sent = match catch_up(&state, &gallery, since, true, &tx).await {
        Some(n) => n,
        None => return,
    };
    let expiry = async {
        match expires {
            Some(at) => {
                let wait = (at - crate::gallery::now()).max(0) as u64;
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            () = &mut expiry => {
                let _ = tx.send(Out::Close(CLOSE_ACCESS, "the share link expired".into())).await;
                return;
            }
            got = live.recv() => match got {
                Ok(e) if e.gallery == gallery => {
                    if e.event.kind == "gallery.deleted" {
                        let _ = tx.send(text(0, serde_json::to_value(&e.event).unwrap_or_default())).await;
                        let _ = tx.send(Out::Close(CLOSE_GONE, "the gallery was deleted".into())).await;
                        return;
                    }
                    // Unlogged news (seq 0, e.g. packaging progress) passes; logged events once.
                    if e.event.seq != 0 && e.event.seq <= sent {
                        continue;
                    }
                    if tx.send(Out::Text(e.event.seq, Arc::from(e.json.as_str()))).await.is_err() {
                        return;
                    }
                    sent = sent.max(e.event.seq);
                    if matches!(e.event.kind.as_str(), "member.changed" | "link.revoked") {
                        if let Err(why) = still_allowed(&state, &caller, &gallery).await {
                            let _ = tx.send(Out::Close(CLOSE_ACCESS, why)).await;
                            return;
                        }
                    }
                }
                Ok(_) => {}
                // Too slow for the live channel: the log has what was skipped.
                Err(RecvError::Lagged(_)) => match catch_up(&state, &gallery, Some(sent), false, &tx).await {
                    Some(n) => sent = n,
                    None => return,
                },
                Err(RecvError::Closed) => return,
            },
            () = tx.closed() => return,
        }
    }
}

/// Whether the caller may still read the gallery: a share link must still exist and be
/// valid, a user must still have a role.
async fn still_allowed(state: &Sidecar, caller: &Caller, gallery: &str) -> Result<(), String> {
    if let Caller::Principal(Principal::Link { id, .. }) = caller {
        let id = id.clone();
        match state.gallery(move |gs| gs.link_principal(&id)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err("the share link was revoked or has expired".into()),
            Err(e) => return Err(e.message),
        }
    }
    ctx_of(state, caller.clone(), gallery).await.map(|_| ()).map_err(|e| e.message)
}

/// Sends `hello` (when `announce`) or `reset`, and the logged events after `since`;
/// returns the last number sent, or `None` when the client is gone.
async fn catch_up(
    state: &Sidecar,
    gallery: &str,
    since: Option<u64>,
    announce: bool,
    tx: &mpsc::Sender<Out>,
) -> Option<u64> {
    let g = gallery.to_string();
    let from = since.unwrap_or(u64::MAX);
    let missed = match state.gallery(move |gs| gs.events_since(&g, from)).await {
        Ok(m) => m,
        Err(e) => {
            let _ = tx.send(Out::Close(1011, e.message)).await;
            return None;
        }
    };
    let note =
        |kind: &str, seq: u64| Out::Text(0, Arc::from(serde_json::json!({ "type": kind, "seq": seq }).to_string()));
    match missed {
        Since::Events(list, last) => {
            if announce {
                tx.send(note("hello", last)).await.ok()?;
            }
            for e in list {
                let json = serde_json::to_string(&e).unwrap_or_default();
                tx.send(Out::Text(e.seq, Arc::from(json))).await.ok()?;
            }
            // A client claiming more than exists gets everything from here on.
            Some(last)
        }
        Since::Reset(last) => {
            tx.send(note("reset", last)).await.ok()?;
            Some(last)
        }
    }
}
