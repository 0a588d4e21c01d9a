//! What every ingest hands on and every output takes: access units with their codec and
//! time, whatever protocol brought them (WHIP, RTMP).

use std::sync::Arc;

/// Codecs a live stream can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264, as Annex B (start codes); SPS and PPS precede each keyframe.
    H264,
    /// VP8 frames.
    Vp8,
    /// Opus packets (48 kHz).
    Opus,
    /// Raw AAC frames; the frame's `config` is the AudioSpecificConfig.
    Aac,
}

impl Codec {
    /// Whether it is a video codec.
    #[must_use]
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::Vp8)
    }
}

/// One access unit: a video frame or an audio packet.
#[derive(Debug, Clone)]
pub struct MediaFrame {
    /// Its codec (and so its track: one video and one audio track per stream).
    pub codec: Codec,
    /// Decode time, microseconds on the stream's clock (any origin; it only grows).
    pub dts_us: i64,
    /// Presentation time minus decode time, microseconds (B-frames; 0 otherwise).
    pub cts_us: i64,
    /// A video frame that decodes on its own.
    pub keyframe: bool,
    /// The payload, in the form `codec` says.
    pub data: Arc<[u8]>,
    /// Codec configuration the payload needs beside it (AAC's AudioSpecificConfig).
    pub config: Option<Arc<[u8]>>,
}

/// The NAL units of an Annex B buffer (start codes of 3 or 4 bytes removed).
pub fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The unit ends before the next start code, and its zero byte of a 4-byte one.
            let e = s - 3;
            if e > 0 && data[e - 1] == 0 {
                e - 1
            } else {
                e
            }
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).filter(|(s, e)| e > s).map(move |(s, e)| &data[s..e])
}

/// Annex B from length-prefixed (AVCC) NAL units with `len_size`-byte lengths; `None` when
/// a length runs past the end.
#[must_use]
pub fn avcc_to_annex_b(data: &[u8], len_size: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at = 0;
    while at < data.len() {
        let len = data.get(at..at + len_size)?.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        at += len_size;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(data.get(at..at + len)?);
        at += len;
    }
    Some(out)
}

/// The NAL unit type of an H.264 unit.
#[must_use]
pub fn h264_type(unit: &[u8]) -> u8 {
    unit.first().map_or(0, |b| b & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_and_avcc_round_trip() {
        let annex = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6];
        let units: Vec<&[u8]> = annex_b_units(&annex).collect();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5, 6]]);
        assert_eq!(units.iter().map(|u| h264_type(u)).collect::<Vec<_>>(), [7, 8, 5]);
        let avcc = [0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 1, 0x65];
        assert_eq!(avcc_to_annex_b(&avcc, 4).unwrap(), [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x65]);
        assert!(avcc_to_annex_b(&[0, 0, 0, 9, 1], 4).is_none(), "a length past the end");
        assert_eq!(annex_b_units(&[]).count(), 0);
    }
}
