//! What to send a device: which video rendition to start on and cap at, which picture
//! format and width, and how many items ahead to prefetch, from what the device tells
//! (client hints, the Network Information and Battery Status APIs). Pure, so every choice
//! has a table test; `/api/adapt` hands the plan to the web client and `/render` follows it.

use serde::{Deserialize, Serialize};

/// The widths pictures are rendered at: a request's width rounds up to one of these, so
/// renders are shared between devices and their cache stays small.
pub const RENDER_WIDTHS: [u32; 8] = [320, 480, 640, 960, 1280, 1920, 2560, 3840];

/// Effective connection type (`ECT`, `navigator.connection.effectiveType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ect {
    /// Under about 50 kbit/s.
    #[serde(rename = "slow-2g")]
    Slow2g,
    /// About 70 kbit/s.
    #[serde(rename = "2g")]
    G2,
    /// About 700 kbit/s.
    #[serde(rename = "3g")]
    G3,
    /// Faster.
    #[serde(rename = "4g")]
    G4,
}

impl Ect {
    /// The value of an `ECT` header or `effectiveType`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "slow-2g" => Some(Self::Slow2g),
            "2g" => Some(Self::G2),
            "3g" => Some(Self::G3),
            "4g" => Some(Self::G4),
            _ => None,
        }
    }

    /// A bandwidth typical of the type, Mbit/s, for when `Downlink` is missing.
    fn typical_mbps(self) -> f64 {
        match self {
            Self::Slow2g => 0.04,
            Self::G2 => 0.07,
            Self::G3 => 0.7,
            Self::G4 => 10.0,
        }
    }
}

/// The battery, from the Battery Status API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    /// Charge, 0 to 1.
    pub level: f64,
    /// Whether it is charging.
    pub charging: bool,
}

impl Battery {
    /// Discharging below 20 %: the point where phones start saving power themselves.
    fn low(self) -> bool {
        !self.charging && self.level < 0.2
    }
}

/// Picture formats, best compression first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// AV1 still picture.
    Avif,
    /// WebP.
    Webp,
    /// JPEG, which every client takes.
    Jpeg,
}

impl ImageFormat {
    /// Its media type.
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Avif => "image/avif",
            Self::Webp => "image/webp",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// Its name, as in file names.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Avif => "avif",
            Self::Webp => "webp",
            Self::Jpeg => "jpeg",
        }
    }
}

/// What a device tells about itself; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hints {
    /// `Save-Data: on`, or `navigator.connection.saveData`.
    pub save_data: bool,
    /// `ECT`.
    pub ect: Option<Ect>,
    /// `Downlink`, Mbit/s.
    pub downlink_mbps: Option<f64>,
    /// `RTT`, milliseconds.
    pub rtt_ms: Option<u32>,
    /// `Sec-CH-DPR` / `DPR`: device pixels per CSS pixel.
    pub dpr: Option<f64>,
    /// `Sec-CH-Viewport-Width` / `Viewport-Width`, CSS pixels.
    pub viewport_width: Option<u32>,
    /// `Sec-CH-Width` / `Width` (device pixels) or `?w=`: the width the picture is shown at.
    pub width: Option<u32>,
    /// The battery, when the page could read it.
    pub battery: Option<Battery>,
    /// `Accept` names AVIF.
    pub accepts_avif: bool,
    /// `Accept` names WebP.
    pub accepts_webp: bool,
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Height of the rendition to start on.
    pub start_height: u32,
    /// Tallest rendition to switch up to.
    pub cap_height: u32,
    /// Picture format.
    pub image_format: ImageFormat,
    /// Picture width in device pixels, one of [`RENDER_WIDTHS`].
    pub image_width: u32,
    /// Device pixels per CSS pixel to spend on pictures: the screen's, or fewer under
    /// data saver (1) and on a low battery (at most 2). A page sizing its own pictures
    /// (`srcset`) asks for this density rather than the screen's.
    pub image_dpr: f64,
    /// Items (pictures, segments of the next video) to fetch ahead of the one shown.
    pub prefetch: u32,
}

/// Device pixels per CSS pixel that the plan spends: data saver and low battery both
/// spend fewer than the screen has.
fn effective_dpr(hints: &Hints) -> f64 {
    let dpr = hints.dpr.unwrap_or(1.0).clamp(1.0, 4.0);
    if hints.save_data {
        1.0
    } else if hints.battery.is_some_and(Battery::low) {
        dpr.min(2.0)
    } else {
        dpr
    }
}

/// Device pixels for a picture shown `css_px` CSS pixels wide on the device of `hints`,
/// at the density [`plan`] spends (for `?w=` of `/render`, which is in CSS pixels).
#[must_use]
pub fn device_pixels(hints: &Hints, css_px: u32) -> u32 {
    (f64::from(css_px) * effective_dpr(hints)).round() as u32
}

/// Share of the measured bandwidth a stream may use: players need head room to fill
/// their buffer while playing.
const BANDWIDTH_SHARE: f64 = 0.7;

/// The plan for a device with `hints`, given the heights of the video's ladder (any order)
/// and each height's bit rate in kbit/s (`kbps`).
#[must_use]
pub fn plan(hints: &Hints, ladder: &[u32], kbps: impl Fn(u32) -> u32) -> Plan {
    let mut heights: Vec<u32> = ladder.to_vec();
    heights.sort_unstable();
    heights.dedup();
    let lowest = heights.first().copied().unwrap_or(360);
    let low_battery = hints.battery.is_some_and(Battery::low);
    let dpr = effective_dpr(hints);

    // The screen caps the rendition at the first rung that fills it (a 16:9 video across
    // the viewport): taller ones spend bytes on lines the screen cannot show.
    let highest = heights.last().copied().unwrap_or(lowest);
    let mut cap = match hints.viewport_width {
        Some(w) => {
            let screen_lines = (f64::from(w) * dpr * 9.0 / 16.0).round() as u32;
            heights.iter().copied().find(|h| *h >= screen_lines).unwrap_or(highest)
        }
        None => highest,
    };
    if hints.save_data {
        cap = lowest;
    } else if low_battery {
        // Decoding and receiving fewer pixels is what saves a phone's battery.
        cap = heights.iter().copied().filter(|h| *h <= 720 && *h <= cap).max().unwrap_or(lowest);
    }

    let bandwidth_mbps = hints.downlink_mbps.or(hints.ect.map(Ect::typical_mbps));
    let affordable = |h: u32| bandwidth_mbps.is_none_or(|mbps| f64::from(kbps(h)) / 1000.0 <= mbps * BANDWIDTH_SHARE);
    // Without any measure, start in the middle and let the player climb.
    let start = if bandwidth_mbps.is_none() {
        heights.iter().copied().filter(|h| *h <= 720 && *h <= cap).max().unwrap_or(lowest)
    } else {
        heights.iter().copied().filter(|h| *h <= cap && affordable(*h)).max().unwrap_or(lowest)
    };

    let slow = hints.ect.is_some_and(|e| e <= Ect::G3) || hints.rtt_ms.is_some_and(|r| r >= 400);
    let prefetch = if hints.save_data || hints.ect.is_some_and(|e| e <= Ect::G2) {
        0
    } else if slow || low_battery {
        1
    } else if bandwidth_mbps.is_some_and(|m| m >= 100.0) {
        5
    } else {
        3
    };

    // `Width` is already in device pixels; the viewport is in CSS pixels.
    let device_width = hints.width.map(f64::from).or(hints.viewport_width.map(|v| f64::from(v) * dpr));
    let wanted = device_width.map_or(1280, |w| w.round() as u32);
    let image_width =
        RENDER_WIDTHS.iter().copied().find(|w| *w >= wanted).unwrap_or(RENDER_WIDTHS[RENDER_WIDTHS.len() - 1]);
    // AVIF is smallest but slowest to encode and decode; a phone saving battery gets WebP.
    let image_format = if hints.accepts_avif && !low_battery {
        ImageFormat::Avif
    } else if hints.accepts_webp {
        ImageFormat::Webp
    } else {
        ImageFormat::Jpeg
    };
    Plan { start_height: start, cap_height: cap, image_format, image_width, image_dpr: dpr, prefetch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ladder;

    fn kbps(h: u32) -> u32 {
        ladder::plan(h, &[h])[0].video_kbps
    }

    #[test]
    fn each_device_profile_gets_its_rendition_picture_and_prefetch() {
        let ladder = [1080, 720, 480, 360];
        let chromium = |h: Hints| Hints { accepts_avif: true, accepts_webp: true, ..h };
        let phone_3g_save_data = chromium(Hints {
            save_data: true,
            ect: Some(Ect::G3),
            downlink_mbps: Some(0.7),
            rtt_ms: Some(300),
            dpr: Some(3.0),
            viewport_width: Some(390),
            ..Hints::default()
        });
        let phone_4g_low_battery = chromium(Hints {
            ect: Some(Ect::G4),
            downlink_mbps: Some(8.0),
            rtt_ms: Some(100),
            dpr: Some(3.0),
            viewport_width: Some(390),
            battery: Some(Battery { level: 0.15, charging: false }),
            ..Hints::default()
        });
        let laptop_wifi = chromium(Hints {
            ect: Some(Ect::G4),
            downlink_mbps: Some(30.0),
            rtt_ms: Some(50),
            dpr: Some(2.0),
            viewport_width: Some(1440),
            battery: Some(Battery { level: 0.8, charging: false }),
            ..Hints::default()
        });
        let desktop_4k_ethernet = Hints {
            ect: Some(Ect::G4),
            downlink_mbps: Some(500.0),
            rtt_ms: Some(5),
            dpr: Some(1.5),
            viewport_width: Some(2560),
            accepts_webp: true,
            ..Hints::default()
        };
        let table = [
            // (profile, start, cap, format, picture width, picture density, prefetch)
            (phone_3g_save_data, 360, 360, ImageFormat::Avif, 480, 1.0, 0),
            (phone_4g_low_battery, 480, 480, ImageFormat::Webp, 960, 2.0, 1),
            (laptop_wifi, 1080, 1080, ImageFormat::Avif, 3840, 2.0, 3),
            (desktop_4k_ethernet, 1080, 1080, ImageFormat::Webp, 3840, 1.5, 5),
        ];
        for (i, (hints, start, cap, format, width, dpr, prefetch)) in table.into_iter().enumerate() {
            let p = plan(&hints, &ladder, kbps);
            assert_eq!(
                (p.start_height, p.cap_height, p.image_format, p.image_width, p.image_dpr, p.prefetch),
                (start, cap, format, width, dpr, prefetch),
                "profile {i}: {hints:?}"
            );
        }
    }

    #[test]
    fn bandwidth_and_screen_bound_the_rendition_and_nothing_known_starts_mid_ladder() {
        let ladder = [1080, 720, 480, 360];
        let slow = Hints { downlink_mbps: Some(1.0), ..Hints::default() };
        assert_eq!(plan(&slow, &ladder, kbps).start_height, 360, "556 kbit/s fits 70 % of 1 Mbit/s");
        let fast_small_screen = Hints { downlink_mbps: Some(100.0), viewport_width: Some(640), ..Hints::default() };
        let p = plan(&fast_small_screen, &ladder, kbps);
        assert_eq!((p.start_height, p.cap_height), (360, 360), "640 CSS px at DPR 1 shows 360 lines");
        let p = plan(&Hints::default(), &ladder, kbps);
        assert_eq!((p.start_height, p.cap_height, p.image_format, p.image_width), (720, 1080, ImageFormat::Jpeg, 1280));
        let charging = Hints { battery: Some(Battery { level: 0.05, charging: true }), ..Hints::default() };
        assert_eq!(plan(&charging, &ladder, kbps).cap_height, 1080, "a charging phone is not saving power");
        let tiny = Hints { width: Some(100), ..Hints::default() };
        assert_eq!(plan(&tiny, &ladder, kbps).image_width, 320);
        let huge = Hints { width: Some(10_000), ..Hints::default() };
        assert_eq!(plan(&huge, &ladder, kbps).image_width, 3840);
        assert_eq!(plan(&slow, &[], kbps).start_height, 360, "an empty ladder still answers");
    }

    #[test]
    fn css_pixels_become_device_pixels_at_the_density_the_plan_spends() {
        let retina = Hints { dpr: Some(2.0), ..Hints::default() };
        assert_eq!(device_pixels(&retina, 480), 960);
        assert_eq!(device_pixels(&Hints { save_data: true, ..retina.clone() }, 480), 480);
        let low = Battery { level: 0.1, charging: false };
        assert_eq!(device_pixels(&Hints { dpr: Some(3.0), battery: Some(low), ..Hints::default() }, 400), 800);
        assert_eq!(device_pixels(&Hints::default(), 333), 333, "no DPR hint: one device pixel each");
        assert_eq!(device_pixels(&Hints { dpr: Some(9.0), ..Hints::default() }, 100), 400, "at most 4");
    }
}
