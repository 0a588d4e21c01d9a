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
}
