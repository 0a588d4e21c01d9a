//! Reading a device's hints off a request, and `GET /api/adapt`: the plan of
//! `crate::adapt` for the calling device, for the web client to set its player and its
//! pictures by. Every answer that depends on hints says so (`Vary`) and asks for them
//! (`Accept-CH`).

use crate::adapt::{self, Battery, Ect, Hints};
use crate::stream::ladder;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// The client hints the server asks for (`Accept-CH`).
pub const ACCEPT_CH: &str =
    "Sec-CH-DPR, Sec-CH-Viewport-Width, Sec-CH-Width, DPR, Viewport-Width, Width, ECT, Downlink, RTT, Save-Data";
/// The request headers an adapted answer depends on (`Vary`).
pub const VARY: &str = "Accept, Sec-CH-DPR, DPR, Sec-CH-Viewport-Width, Viewport-Width, Sec-CH-Width, Width, ECT, Downlink, RTT, Save-Data";

/// What the web client adds to the hints of the headers (from `navigator.connection` and
/// `navigator.getBattery()`, which no header carries).
#[derive(Debug, Default, Deserialize)]
pub struct HintQuery {
    /// Width the picture is shown at, device pixels.
    pub w: Option<u32>,
    /// `on`/`1`/`true` for data saver.
    pub save_data: Option<String>,
    /// `effectiveType`.
    pub ect: Option<String>,
    /// `downlink`, Mbit/s.
    pub downlink: Option<f64>,
    /// `rtt`, ms.
    pub rtt: Option<u32>,
    /// `devicePixelRatio`.
    pub dpr: Option<f64>,
    /// `innerWidth`, CSS pixels.
    pub viewport: Option<u32>,
    /// Battery level, 0 to 1.
    pub battery: Option<f64>,
    /// Whether the battery charges.
    pub charging: Option<bool>,
}

/// The hints of a request: its headers, then the query's values over them.
#[must_use]
pub fn hints(headers: &HeaderMap, q: &HintQuery) -> Hints {
    let text = |names: &[&str]| names.iter().find_map(|n| headers.get(*n)?.to_str().ok().map(str::trim));
    let number = |names: &[&str]| {
        text(names).and_then(|v| v.trim_matches('"').parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0)
    };
    let accept = text(&["accept"]).unwrap_or("").to_ascii_lowercase();
    let yes = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "on" | "1" | "true" | "yes");
    Hints {
        save_data: q.save_data.as_deref().map_or_else(|| text(&["save-data"]).is_some_and(yes), yes),
        ect: q.ect.as_deref().or(text(&["ect"])).and_then(Ect::parse),
        downlink_mbps: q.downlink.filter(|v| v.is_finite() && *v >= 0.0).or(number(&["downlink"])),
        rtt_ms: q.rtt.or(number(&["rtt"]).map(|v| v as u32)),
        dpr: q.dpr.filter(|v| v.is_finite() && *v > 0.0).or(number(&["sec-ch-dpr", "dpr"])),
        viewport_width: q.viewport.or(number(&["sec-ch-viewport-width", "viewport-width"]).map(|v| v as u32)),
        width: q.w.or(number(&["sec-ch-width", "width"]).map(|v| v as u32)),
        battery: q
            .battery
            .filter(|l| (0.0..=1.0).contains(l))
            .map(|level| Battery { level, charging: q.charging.unwrap_or(true) }),
        accepts_avif: accept.contains("image/avif"),
        accepts_webp: accept.contains("image/webp"),
    }
}

/// Marks `r` as adapted to the device: `Vary` on the hints, `Accept-CH` to get them.
pub fn mark_adapted(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static(VARY));
    h.insert("accept-ch", HeaderValue::from_static(ACCEPT_CH));
}

/// `GET /api/adapt?…`: the plan for this device with the volume's ladder.
pub async fn get(State(state): State<Arc<super::Sidecar>>, headers: HeaderMap, Query(q): Query<HintQuery>) -> Response {
    let ladder_heights = state.vol.config().media.streaming.ladder.clone();
    let hints = hints(&headers, &q);
    let plan = adapt::plan(&hints, &ladder_heights, |h| ladder::plan(h, &[h])[0].video_kbps);
    let mut r = Json(serde_json::json!({ "plan": plan, "hints": hints })).into_response();
    mark_adapted(&mut r);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_the_hints_and_the_query_overrides_them() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("accept", "image/avif,image/webp,*/*"),
            ("save-data", "on"),
            ("ect", "3g"),
            ("downlink", "1.45"),
            ("rtt", "350"),
            ("sec-ch-dpr", "2.625"),
            ("viewport-width", "412"),
            ("width", "nonsense"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let got = hints(&h, &HintQuery::default());
        assert!(got.save_data && got.accepts_avif && got.accepts_webp);
        assert_eq!((got.ect, got.downlink_mbps, got.rtt_ms), (Some(Ect::G3), Some(1.45), Some(350)));
        assert_eq!((got.dpr, got.viewport_width, got.width, got.battery), (Some(2.625), Some(412), None, None));
        let q = HintQuery {
            save_data: Some("off".into()),
            battery: Some(0.1),
            charging: Some(false),
            w: Some(800),
            ..HintQuery::default()
        };
        let got = hints(&h, &q);
        assert!(!got.save_data);
        assert_eq!((got.width, got.battery), (Some(800), Some(Battery { level: 0.1, charging: false })));
        assert_eq!(hints(&HeaderMap::new(), &HintQuery::default()), Hints::default());
    }
}
