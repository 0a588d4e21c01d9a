//! What every request passes through, and `GET /metrics`.
//!
//! Each request gets an id: the client's `X-Request-Id` when it is a short plain token
//! (so a proxy's id follows the request through), else a random one. It is answered in
//! `X-Request-Id` and carried by every log line the request causes, engine calls on the
//! blocking pool included (`Sidecar::on_pool` enters the request's span there), so a
//! client's report of a failure finds its cause in the log.

use super::auth::authorize;
use super::error::ApiResult;
use super::Sidecar;
use crate::metrics::{HttpLabels, RouteLabel};
use crate::volume::Permission;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The peer address of a connection, as `axum::serve` hands it over (plain TCP or TLS).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, super::tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, super::tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The client's address (`None` when the router runs without a listener, in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Client(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Client>().copied().unwrap_or_default())
    }
}

/// What the checks of a token's bindings need to know of the request being served.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The client's address.
    pub client: Client,
    /// The method.
    pub method: String,
    /// The path and query, as sent.
    pub target: String,
    /// The device proof header (`crypto::device`), if sent.
    pub device_proof: Option<String>,
    /// The browser's device cookie (share links bound to a device), if sent.
    pub device_cookie: Option<String>,
}

tokio::task_local! {
    /// The request the current task serves (`observe` sets it).
    static REQUEST: RequestFacts;
}

/// The request the current task serves (empty outside one).
#[must_use]
pub fn current_request() -> RequestFacts {
    REQUEST.try_with(Clone::clone).unwrap_or_default()
}

/// The header that carries a request's id.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a client.
const MAX_CLIENT_ID: usize = 64;

/// The id a request is known by: the client's if it is plain, else a new one.
fn request_id(req: &Request) -> String {
    let plain = |s: &&str| {
        !s.is_empty()
            && s.len() <= MAX_CLIENT_ID
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    };
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(plain)
        .map_or_else(|| crate::gallery::random_id(8), str::to_owned)
}

/// The middleware: id, span, count and latency (to the response's head; a streamed body
/// may take longer), and one log line for each failed request.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let client = Client(req.extensions().get::<axum::extract::ConnectInfo<PeerAddr>>().map(|c| c.0 .0.ip()));
    req.extensions_mut().insert(client);
    // The pattern, not the path: one series per route however many files there are.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, %method, %route, client = client.0.map(tracing::field::display));
    let started = Instant::now();
    let facts = RequestFacts {
        client,
        method: method.to_string(),
        target: req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
        device_proof: req
            .headers()
            .get(crate::crypto::device::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        device_cookie: super::auth::cookie(req.headers(), super::auth::DEVICE_COOKIE),
    };
    let mut response = REQUEST.scope(facts, next.run(req).instrument(span.clone())).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let m = crate::metrics::get();
    m.http_requests
        .get_or_create(&HttpLabels { method: method.to_string(), route: route.clone(), status: status.as_u16() })
        .inc();
    m.http_latency.get_or_create(&RouteLabel { route }).observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        let ms = elapsed.as_millis();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "answered");
        }
    });
    response.headers_mut().insert(REQUEST_ID, HeaderValue::from_str(&id).expect("an id of plain characters"));
    as_json_error(response).await
}

/// Largest plain-text error body rewritten as JSON.
const MAX_PLAIN_ERROR: usize = 64 << 10;

/// The framework's own refusals (a body that is not JSON, a malformed query) come as plain
/// text; every error of the API is `{"error": ...}`, so they are rewritten to match.
async fn as_json_error(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain || !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(text) = axum::body::to_bytes(body, MAX_PLAIN_ERROR).await else {
        return (parts.status, axum::Json(serde_json::json!({ "error": "request refused" }))).into_response();
    };
    let json = serde_json::json!({ "error": String::from_utf8_lossy(&text).trim() }).to_string();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(json))
}

/// `GET /metrics`: the Prometheus exposition, to a token that allows `metrics`.
pub async fn metrics(State(state): State<Arc<Sidecar>>, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    authorize(&state, &headers, "/", Permission::Metrics).await?;
    let stats = state.blocking(|vol| vol.stats()).await?;
    let m = crate::metrics::get();
    m.set_volume(&stats, state.vol.writable().is_ok());
    state.set_service_gauges().await;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        m.encode(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(header: Option<&str>) -> String {
        let mut b = Request::builder();
        if let Some(h) = header {
            b = b.header(REQUEST_ID, h);
        }
        request_id(&b.body(axum::body::Body::empty()).unwrap())
    }

    #[test]
    fn client_ids_are_kept_only_when_plain() {
        assert_eq!(id_of(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in ["", "a b", "x\"y", "é", &"a".repeat(65)] {
            let id = id_of(Some(bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "{bad:?} gave {id:?}");
        }
        assert_ne!(id_of(None), id_of(None));
    }
}
