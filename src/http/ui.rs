//! The web UI: three static files compiled into the binary, served same-origin with a
//! strict content security policy. Deep links (`/g/{id}`, `/s/{token}`) get the page too;
//! the script routes them.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");
/// hls.js, vendored from npm (web/vendor, docs/streaming.md); the version is in its URL,
/// so browsers may keep it for good.
const HLS: &str = include_str!("../../web/vendor/hls.min.js");
/// Where the page loads hls.js from: change with the vendored file.
pub const HLS_PATH: &str = "/vendor/hls-1.7.4.min.js";

/// Only this origin's scripts, styles, images (and decoded placeholders), media and
/// connections; never framed; share-link tokens in the path never leave in a Referer.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
                   connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    // The build is in the binary: a new binary means new files, so revalidate each load.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `/`, `/g/{id}`, `/s/{token}`.
/// The page asks for the device's client hints, so the pictures and streams it loads
/// can follow the screen and the network (`crate::adapt`).
pub async fn index() -> Response {
    let mut r = page(INDEX, "text/html; charset=utf-8");
    r.headers_mut().insert("accept-ch", HeaderValue::from_static(super::adapt::ACCEPT_CH));
    r
}

/// `/app.js`.
pub async fn script() -> Response {
    page(SCRIPT, "text/javascript; charset=utf-8")
}

/// `/vendor/hls-VERSION.min.js`.
pub async fn hls() -> Response {
    let mut r = page(HLS, "text/javascript; charset=utf-8");
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    r
}

/// `/style.css`.
pub async fn style() -> Response {
    page(STYLE, "text/css; charset=utf-8")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_the_vendored_hls_js_by_its_versioned_path() {
        assert!(super::SCRIPT.contains(super::HLS_PATH), "web/app.js must load {}", super::HLS_PATH);
        let version = super::HLS_PATH.trim_start_matches("/vendor/hls-").trim_end_matches(".min.js");
        assert!(super::HLS.contains(&format!("\"{version}\"")), "web/vendor/hls.min.js is not hls.js {version}");
    }
}
