//! The adaptive ladder of a video: which renditions to make and at what bit rate. Pure, so
//! its choices have a table test.

/// One rendition to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Height in pixels (the width follows the source's aspect ratio, rounded to even).
    pub height: u32,
    /// H.264 target bit rate, kbit/s.
    pub video_kbps: u32,
}

/// AAC bit rate of the audio rendition, kbit/s.
pub const AUDIO_KBPS: u32 = 128;

/// What a source offers for its top rendition to be a copy of its video rather than a new
/// encoding (`Source::copyable`).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Height in pixels.
    pub height: u32,
    /// Video codec, as ffprobe names it (`h264`).
    pub codec: String,
    /// Pixel format (`yuv420p`).
    pub pix_fmt: String,
    /// Codec profile (`High`).
    pub profile: String,
    /// Rotation the player must apply, degrees.
    pub rotation: i32,
    /// Longest time between two keyframes seen, seconds.
    pub keyframe_gap: f64,
}

impl Source {
    /// Whether every player of the ladder plays the source's video as it is (H.264 in
    /// 8-bit 4:2:0, no rotation to apply) and its keyframes cut segments of about
    /// `segment_seconds` (at most twice that apart).
    #[must_use]
    pub fn copyable(&self, segment_seconds: u32) -> bool {
        self.codec == "h264"
            && matches!(self.pix_fmt.as_str(), "yuv420p" | "yuvj420p")
            && matches!(self.profile.as_str(), "Constrained Baseline" | "Baseline" | "Main" | "High")
            && self.rotation.rem_euclid(360) == 0
            && self.keyframe_gap > 0.0
            && self.keyframe_gap <= f64::from(2 * segment_seconds)
    }
}

/// The renditions of `source`: with `copy` and a source no taller than the ladder's top,
/// its own video is the top rendition (`Some(height)`), and the rungs below it are
/// encoded; otherwise every rung is encoded (`plan`).
#[must_use]
pub fn plan_with_copy(source_height: u32, ladder: &[u32], copy: bool) -> (Option<u32>, Vec<Rung>) {
    let top = ladder.iter().copied().max().unwrap_or(0);
    if copy && source_height <= top {
        let below = plan(source_height, ladder).into_iter().filter(|r| r.height < source_height).collect();
        return (Some(source_height), below);
    }
    (None, plan(source_height, ladder))
}

/// The rungs of `ladder` (heights) that are no taller than the source, highest first; a
/// source shorter than every rung gets one rendition at its own height (rounded down to
/// even), so every video plays.
#[must_use]
pub fn plan(source_height: u32, ladder: &[u32]) -> Vec<Rung> {
    let mut heights: Vec<u32> = ladder.iter().copied().filter(|h| *h <= source_height).collect();
    heights.sort_unstable_by(|a, b| b.cmp(a));
    heights.dedup();
    if heights.is_empty() {
        heights.push((source_height & !1).max(2));
    }
    heights.into_iter().map(|height| Rung { height, video_kbps: video_kbps(height) }).collect()
}

/// A bit rate that keeps H.264 clean at `height` (16:9, about 30 frames a second): the
/// usual ladder's 5,000 kbit/s at 1080p, scaled with the pixel count, never under 200.
fn video_kbps(height: u32) -> u32 {
    let scale = f64::from(height) / 1080.0;
    ((5000.0 * scale * scale).round() as u32).max(200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_never_exceed_the_source_and_a_small_source_still_gets_one() {
        let ladder = [1080, 720, 480, 360];
        let heights = |h| plan(h, &ladder).iter().map(|r| r.height).collect::<Vec<_>>();
        assert_eq!(heights(2160), [1080, 720, 480, 360]);
        assert_eq!(heights(1080), [1080, 720, 480, 360]);
        assert_eq!(heights(720), [720, 480, 360]);
        assert_eq!(heights(500), [480, 360]);
        assert_eq!(heights(241), [240]);
        assert_eq!(plan(360, &[360, 720, 360]).len(), 1, "sorted and deduplicated");
        let rates: Vec<u32> = plan(1080, &ladder).iter().map(|r| r.video_kbps).collect();
        assert_eq!(rates, [5000, 2222, 988, 556]);
        assert_eq!(plan(144, &ladder)[0].video_kbps, 200);
    }

    #[test]
    fn a_source_that_fits_the_top_rung_is_copied_and_only_lower_rungs_are_encoded() {
        let ladder = [1080, 720, 480, 360];
        let heights = |rungs: Vec<Rung>| rungs.iter().map(|r| r.height).collect::<Vec<_>>();
        let (copied, encoded) = plan_with_copy(1080, &ladder, true);
        assert_eq!((copied, heights(encoded)), (Some(1080), vec![720, 480, 360]));
        let (copied, encoded) = plan_with_copy(900, &ladder, true);
        assert_eq!((copied, heights(encoded)), (Some(900), vec![720, 480, 360]), "a height between rungs");
        let (copied, encoded) = plan_with_copy(240, &ladder, true);
        assert_eq!((copied, heights(encoded)), (Some(240), vec![]), "below every rung: the copy alone");
        let (copied, encoded) = plan_with_copy(2160, &ladder, true);
        assert_eq!((copied, heights(encoded)), (None, vec![1080, 720, 480, 360]), "taller than the top: encoded");
        let (copied, encoded) = plan_with_copy(1080, &ladder, false);
        assert_eq!((copied, heights(encoded)), (None, vec![1080, 720, 480, 360]));
    }

    #[test]
    fn only_plain_h264_with_close_keyframes_is_copied() {
        let phone = Source {
            height: 1080,
            codec: "h264".into(),
            pix_fmt: "yuv420p".into(),
            profile: "High".into(),
            rotation: 0,
            keyframe_gap: 1.0,
        };
        assert!(phone.copyable(2));
        let cases = [
            Source { codec: "hevc".into(), ..phone.clone() },
            Source { pix_fmt: "yuv420p10le".into(), ..phone.clone() },
            Source { profile: "High 4:2:2".into(), ..phone.clone() },
            Source { rotation: 90, ..phone.clone() },
            Source { keyframe_gap: 10.0, ..phone.clone() },
            Source { keyframe_gap: 0.0, ..phone.clone() },
        ];
        for c in cases {
            assert!(!c.copyable(2), "{c:?}");
        }
        assert!(Source { rotation: -360, ..phone.clone() }.copyable(2));
        assert!(Source { keyframe_gap: 4.0, ..phone }.copyable(2), "twice the segment length at most");
    }
}
