//! CMAF (fragmented MP4) writing for live streams: an init segment that describes the
//! tracks, then one `moof` + `mdat` fragment per part. A live stream is packaged here, in
//! process, without a transcoder: H.264 with Opus (from WebRTC) or AAC (from RTMP), as
//! hls.js, Safari, DASH players and ffmpeg read them. The same bytes, init segment first,
//! make the recording: a fragmented MP4 is an ordinary MP4 file.

/// What a track carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKind {
    /// H.264 with its parameter sets (NAL units without start codes).
    Avc { sps: Vec<u8>, pps: Vec<u8>, width: u16, height: u16 },
    /// Opus at 48 kHz.
    Opus { channels: u8 },
    /// AAC with its AudioSpecificConfig.
    Aac { asc: Vec<u8>, channels: u8, sample_rate: u32 },
}

/// One track of the init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// From 1, in order.
    pub id: u32,
    /// Ticks per second of its times.
    pub timescale: u32,
    /// What it carries.
    pub kind: TrackKind,
}

impl Track {
    /// Whether it is the video track.
    #[must_use]
    pub fn is_video(&self) -> bool {
        matches!(self.kind, TrackKind::Avc { .. })
    }

    /// Its RFC 6381 codec string, for `CODECS` in playlists and `codecs` in manifests.
    #[must_use]
    pub fn codec_string(&self) -> String {
        match &self.kind {
            TrackKind::Avc { sps, .. } if sps.len() >= 4 => format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]),
            TrackKind::Avc { .. } => "avc1".into(),
            TrackKind::Opus { .. } => "opus".into(),
            TrackKind::Aac { asc, .. } => format!("mp4a.40.{}", asc.first().map_or(2, |b| b >> 3)),
        }
    }
}

/// A sample of a fragment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Ticks until the next sample.
    pub duration: u32,
    /// Presentation minus decode time, ticks.
    pub cts: i32,
    /// Decodes on its own.
    pub sync: bool,
    /// Its bytes (H.264: length-prefixed NAL units).
    pub data: std::sync::Arc<[u8]>,
}

/// The samples of one track in a fragment.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// The track.
    pub track: u32,
    /// Decode time of the first sample, ticks.
    pub base_time: u64,
    /// The samples, in decode order.
    pub samples: &'a [Sample],
}

/// A byte buffer that writes boxes, filling in their sizes.
struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
    /// A box of `kind` whose body `f` writes.
    fn bx(&mut self, kind: &[u8; 4], f: impl FnOnce(&mut W)) {
        let at = self.0.len();
        self.u32(0);
        self.bytes(kind);
        f(self);
        let size = u32::try_from(self.0.len() - at).expect("a box under 4 GiB");
        self.0[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }
    /// A full box: version and flags first.
    fn full(&mut self, kind: &[u8; 4], version: u8, flags: u32, f: impl FnOnce(&mut W)) {
        self.bx(kind, |w| {
            w.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
            f(w);
        });
    }
    fn matrix(&mut self) {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }
}

/// The init segment (`ftyp` + `moov`) of `tracks`.
#[must_use]
pub fn init_segment(tracks: &[Track]) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(1024));
    w.bx(b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
            w.bytes(brand);
        }
    });
    w.bx(b"moov", |w| {
        w.full(b"mvhd", 0, 0, |w| {
            w.u32(0);
            w.u32(0);
            w.u32(1000);
            w.u32(0);
            w.u32(0x0001_0000);
            w.u16(0x0100);
            w.zeros(10);
            w.matrix();
            w.zeros(24);
            w.u32(tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1);
        });
        for t in tracks {
            trak(w, t);
        }
        w.bx(b"mvex", |w| {
            for t in tracks {
                w.full(b"trex", 0, 0, |w| {
                    w.u32(t.id);
                    w.u32(1);
                    w.u32(0);
                    w.u32(0);
                    w.u32(0);
                });
            }
        });
    });
    w.0
}

fn trak(w: &mut W, t: &Track) {
    let (width, height) = match t.kind {
        TrackKind::Avc { width, height, .. } => (width, height),
        _ => (0, 0),
    };
    w.bx(b"trak", |w| {
        // Enabled and in the presentation.
        w.full(b"tkhd", 0, 3, |w| {
            w.u32(0);
            w.u32(0);
            w.u32(t.id);
            w.u32(0);
            w.u32(0);
            w.zeros(8);
            w.u16(0);
            w.u16(0);
            w.u16(if t.is_video() { 0 } else { 0x0100 });
            w.u16(0);
            w.matrix();
            w.u32(u32::from(width) << 16);
            w.u32(u32::from(height) << 16);
        });
        w.bx(b"mdia", |w| {
            w.full(b"mdhd", 0, 0, |w| {
                w.u32(0);
                w.u32(0);
                w.u32(t.timescale);
                w.u32(0);
                w.u16(0x55c4); // "und"
                w.u16(0);
            });
            w.full(b"hdlr", 0, 0, |w| {
                w.u32(0);
                w.bytes(if t.is_video() { b"vide" } else { b"soun" });
                w.zeros(12);
                w.bytes(if t.is_video() { b"VideoHandler\0" } else { b"SoundHandler\0" });
            });
            w.bx(b"minf", |w| {
                if t.is_video() {
                    w.full(b"vmhd", 0, 1, |w| w.zeros(8));
                } else {
                    w.full(b"smhd", 0, 0, |w| w.zeros(4));
                }
                w.bx(b"dinf", |w| {
                    w.full(b"dref", 0, 0, |w| {
                        w.u32(1);
                        w.full(b"url ", 0, 1, |_| {});
                    });
                });
                w.bx(b"stbl", |w| {
                    w.full(b"stsd", 0, 0, |w| {
                        w.u32(1);
                        sample_entry(w, t);
                    });
                    w.full(b"stts", 0, 0, |w| w.u32(0));
                    w.full(b"stsc", 0, 0, |w| w.u32(0));
                    w.full(b"stsz", 0, 0, |w| {
                        w.u32(0);
                        w.u32(0);
                    });
                    w.full(b"stco", 0, 0, |w| w.u32(0));
                });
            });
        });
    });
}

fn sample_entry(w: &mut W, t: &Track) {
    match &t.kind {
        TrackKind::Avc { sps, pps, width, height } => w.bx(b"avc1", |w| {
            w.zeros(6);
            w.u16(1);
            w.zeros(16);
            w.u16(*width);
            w.u16(*height);
            w.u32(0x0048_0000);
            w.u32(0x0048_0000);
            w.u32(0);
            w.u16(1);
            w.zeros(32);
            w.u16(0x0018);
            w.u16(0xffff);
            w.bx(b"avcC", |w| {
                w.u8(1);
                w.bytes(sps.get(1..4).unwrap_or(&[66, 0, 30]));
                w.u8(0xff); // 4-byte lengths
                w.u8(0xe1); // one SPS
                w.u16(u16::try_from(sps.len()).unwrap_or(0));
                w.bytes(sps);
                w.u8(1);
                w.u16(u16::try_from(pps.len()).unwrap_or(0));
                w.bytes(pps);
            });
        }),
        TrackKind::Opus { channels } => w.bx(b"Opus", |w| {
            audio_entry_head(w, *channels, 48_000);
            w.bx(b"dOps", |w| {
                w.u8(0);
                w.u8(*channels);
                w.u16(312); // pre-skip of libopus's encoder at 48 kHz
                w.u32(48_000);
                w.u16(0);
                w.u8(0);
            });
        }),
        TrackKind::Aac { asc, channels, sample_rate } => w.bx(b"mp4a", |w| {
            audio_entry_head(w, *channels, *sample_rate);
            w.full(b"esds", 0, 0, |w| {
                let dsi = asc.len();
                // ES_Descriptor { DecoderConfigDescriptor { DecoderSpecificInfo }, SLConfig }.
                w.u8(3);
                w.u8(u8::try_from(3 + 2 + 13 + 2 + dsi + 3).unwrap_or(0x7f));
                w.u16(0);
                w.u8(0);
                w.u8(4);
                w.u8(u8::try_from(13 + 2 + dsi).unwrap_or(0x7f));
                w.u8(0x40); // MPEG-4 audio
                w.u8(0x15); // audio stream
                w.bytes(&[0, 0, 0]);
                w.u32(0);
                w.u32(0);
                w.u8(5);
                w.u8(u8::try_from(dsi).unwrap_or(0x7f));
                w.bytes(asc);
                w.u8(6);
                w.u8(1);
                w.u8(2);
            });
        }),
    }
}

fn audio_entry_head(w: &mut W, channels: u8, sample_rate: u32) {
    w.zeros(6);
    w.u16(1);
    w.zeros(8);
    w.u16(u16::from(channels));
    w.u16(16);
    w.u16(0);
    w.u16(0);
    w.u32(sample_rate.min(0xffff) << 16);
}

/// Sample flags of a sync sample and of one that depends on others.
const SYNC: u32 = 0x0200_0000;
const NON_SYNC: u32 = 0x0101_0000;

/// One fragment (`moof` + `mdat`) numbered `sequence`, with the runs of each track.
#[must_use]
pub fn fragment(sequence: u32, runs: &[Run<'_>]) -> Vec<u8> {
    let runs: Vec<&Run<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let mut w = W(Vec::new());
    // Where each trun's data offset goes, to be filled once the moof's size is known.
    let mut offset_at = Vec::new();
    w.bx(b"moof", |w| {
        w.full(b"mfhd", 0, 0, |w| w.u32(sequence));
        for r in &runs {
            w.bx(b"traf", |w| {
                // Default base is the moof: offsets count from its first byte.
                w.full(b"tfhd", 0, 0x02_0000, |w| w.u32(r.track));
                w.full(b"tfdt", 1, 0, |w| w.u64(r.base_time));
                // Data offset, and per sample: duration, size, flags, composition offset.
                w.full(b"trun", 1, 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800, |w| {
                    w.u32(u32::try_from(r.samples.len()).unwrap_or(u32::MAX));
                    offset_at.push(w.0.len());
                    w.u32(0);
                    for s in r.samples {
                        w.u32(s.duration);
                        w.u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                        w.u32(if s.sync { SYNC } else { NON_SYNC });
                        w.u32(s.cts as u32);
                    }
                });
            });
        }
    });
    let moof_len = w.0.len();
    let body: usize = runs.iter().flat_map(|r| r.samples.iter()).map(|s| s.data.len()).sum();
    let mut at = moof_len + 8;
    for (r, pos) in runs.iter().zip(offset_at) {
        w.0[pos..pos + 4].copy_from_slice(&u32::try_from(at).unwrap_or(u32::MAX).to_be_bytes());
        at += r.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    w.u32(u32::try_from(8 + body).unwrap_or(u32::MAX));
    w.bytes(b"mdat");
    for s in runs.iter().flat_map(|r| r.samples.iter()) {
        w.bytes(&s.data);
    }
    w.0
}

/// Reads bits of an H.264 RBSP (emulation-prevention bytes removed first).
struct Bits {
    data: Vec<u8>,
    at: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Self {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Self { data, at: 0 }
    }
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.at / 8)?;
        let b = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }
    /// Exp-Golomb, unsigned.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
    /// Exp-Golomb, signed.
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 { k.div_ceil(2) as i32 } else { -((k / 2) as i32) })
    }
}

/// Width and height of the pictures an H.264 SPS (with its NAL header) describes.
#[must_use]
pub fn sps_dimensions(sps: &[u8]) -> Option<(u16, u16)> {
    let mut b = Bits::new(sps.get(1..)?);
    let profile = b.bits(8)?;
    b.bits(16)?;
    b.ue()?;
    let mut chroma = 1;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        chroma = b.ue()?;
        if chroma == 3 {
            b.bit()?;
        }
        b.ue()?;
        b.ue()?;
        b.bit()?;
        if b.bit()? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + b.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    b.ue()?;
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            for _ in 0..b.ue()? {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?;
    b.bit()?;
    let width_mbs = b.ue()? + 1;
    let height_units = b.ue()? + 1;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?;
    }
    b.bit()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if b.bit()? == 1 {
        (cl, cr, ct, cb) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
    }
    let (sub_w, sub_h) = match chroma {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_w;
    let crop_y = sub_h * (2 - frame_mbs_only);
    let width = (width_mbs * 16).checked_sub(crop_x * (cl + cr))?;
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub(crop_y * (ct + cb))?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sps_dimensions_of_common_encoders() {
        // x264, 320x240, High profile.
        let x264 = [
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
            0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
        ];
        assert_eq!(sps_dimensions(&x264), Some((320, 240)));
        // x264, 640x360, Constrained Baseline (cropped from 368 rows).
        let baseline = [
            0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00,
            0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
        ];
        assert_eq!(sps_dimensions(&baseline), Some((640, 360)));
        // x264, 1920x1080, Main (cropped from 1088 rows).
        let main = [
            0x67, 0x4d, 0x40, 0x28, 0xec, 0xa0, 0x3c, 0x01, 0x13, 0xf2, 0xe0, 0x22, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00,
            0x00, 0x03, 0x00, 0x64, 0x1e, 0x30, 0x63, 0x2c,
        ];
        assert_eq!(sps_dimensions(&main), Some((1920, 1080)));
        assert_eq!(sps_dimensions(&[0x67]), None);
        assert_eq!(sps_dimensions(&[]), None);
    }

    #[test]
    fn boxes_carry_their_sizes_and_offsets_point_at_the_samples() {
        let tracks = [
            Track {
                id: 1,
                timescale: 90_000,
                kind: TrackKind::Avc {
                    sps: vec![0x67, 0x42, 0xc0, 0x1e],
                    pps: vec![0x68, 0xce],
                    width: 640,
                    height: 360,
                },
            },
            Track { id: 2, timescale: 48_000, kind: TrackKind::Opus { channels: 2 } },
        ];
        assert_eq!(tracks[0].codec_string(), "avc1.42c01e");
        let init = init_segment(&tracks);
        assert_eq!(&init[4..8], b"ftyp");
        let ftyp = u32::from_be_bytes(init[0..4].try_into().unwrap()) as usize;
        assert_eq!(&init[ftyp + 4..ftyp + 8], b"moov");
        assert_eq!(ftyp + u32::from_be_bytes(init[ftyp..ftyp + 4].try_into().unwrap()) as usize, init.len());
        let v = [Sample { duration: 3000, cts: 0, sync: true, data: vec![0, 0, 0, 2, 0x65, 1].into() }];
        let a = [Sample { duration: 960, cts: 0, sync: true, data: vec![9, 9, 9].into() }];
        let frag =
            fragment(7, &[Run { track: 1, base_time: 0, samples: &v }, Run { track: 2, base_time: 0, samples: &a }]);
        let moof = u32::from_be_bytes(frag[0..4].try_into().unwrap()) as usize;
        assert_eq!(&frag[moof + 4..moof + 8], b"mdat");
        assert_eq!(&frag[moof + 8..], &[0, 0, 0, 2, 0x65, 1, 9, 9, 9]);
        // The second trun's data offset points at the audio bytes.
        let second = frag.windows(4).enumerate().filter(|(_, w)| w == b"trun").nth(1).unwrap().0;
        let off = u32::from_be_bytes(frag[second + 12..second + 16].try_into().unwrap()) as usize;
        assert_eq!(&frag[off..off + 3], &[9, 9, 9]);
    }
}
