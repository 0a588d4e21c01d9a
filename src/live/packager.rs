//! Cuts a live stream's frames into CMAF parts and segments, for low-latency HLS and DASH
//! and for the recording. Pure: frames in, bytes out; the hub feeds it and publishes what
//! it makes.
//!
//! A segment starts on a video keyframe once the one before has lasted `segment_target`;
//! within a segment a part is cut every `part_target` (never longer), so a player can
//! start a segment's first part as soon as it exists. Times come from the frames' decode
//! times, on the first keyframe's origin; audio before it is dropped. A publisher's first
//! audio packet often comes a moment after its first keyframe, so the start waits up to
//! `AUDIO_WAIT_US` of video for it: the track list of the init segment is fixed once made.

use super::cmaf::{self, Run, Sample, Track, TrackKind};
use super::media::{annex_b_units, h264_type, Codec, MediaFrame};
use std::sync::Arc;
use std::time::Duration;

/// How much video (by its decode times) the start holds back while no audio has shown.
const AUDIO_WAIT_US: i64 = 1_000_000;

/// What the packager makes.
#[derive(Debug)]
pub enum Emit {
    /// The init segment, once, before any part.
    Init { bytes: Vec<u8>, tracks: Vec<Track> },
    /// A part: a fragment of the current segment.
    Part {
        /// Its fragment.
        bytes: Vec<u8>,
        /// Seconds it lasts.
        duration: f64,
        /// It starts with a video keyframe.
        independent: bool,
        /// It is the first part of a new segment.
        starts_segment: bool,
    },
}

/// A sample waiting for the next one to know its duration.
struct Pending {
    dts: u64,
    cts: i32,
    sync: bool,
    data: Arc<[u8]>,
}

struct TrackState {
    track: Track,
    queue: Vec<Pending>,
    /// Decode time of the last sample taken in, ticks.
    last_dts: Option<u64>,
    /// Ticks of the last sample's duration, for one whose successor never comes.
    last_duration: u32,
}

impl TrackState {
    fn ticks(&self, us: i64) -> u64 {
        (us.max(0) as u128 * u128::from(self.track.timescale) / 1_000_000) as u64
    }

    /// The samples before `cut` (all if `None`), with their durations. With
    /// `hold_last`, a sample whose successor has not come yet waits for it: its duration
    /// is the gap to that successor, where `cut` would be a guess that leaves a hole or an
    /// overlap between parts (players stall on holes).
    fn take(&mut self, cut: Option<u64>, nominal: u32, hold_last: bool) -> (u64, Vec<Sample>) {
        let mut n = match cut {
            Some(c) => self.queue.iter().take_while(|p| p.dts < c).count(),
            None => self.queue.len(),
        };
        if hold_last && cut.is_some() && n == self.queue.len() {
            n = n.saturating_sub(1);
        }
        let base = self.queue.first().map_or(0, |p| p.dts);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let next = self.queue.get(i + 1).map(|p| p.dts).or(cut);
            let d = match next {
                Some(next) if next > self.queue[i].dts => u32::try_from(next - self.queue[i].dts).unwrap_or(u32::MAX),
                _ => self.last_duration.max(nominal),
            };
            self.last_duration = d;
            let p = &self.queue[i];
            out.push(Sample { duration: d, cts: p.cts, sync: p.sync, data: p.data.clone() });
        }
        self.queue.drain(..n);
        (base, out)
    }
}

/// Packages one stream.
pub struct Packager {
    part_target_us: i64,
    segment_target_us: i64,
    /// The first keyframe's decode time: the timeline's origin.
    origin: Option<i64>,
    video: Option<TrackState>,
    audio: Option<TrackState>,
    /// The audio track's kind, once a frame showed it.
    audio_kind: Option<TrackKind>,
    sequence: u32,
    part_start: i64,
    segment_start: i64,
    next_starts_segment: bool,
    next_independent: bool,
    parameter_sets: (Option<Vec<u8>>, Option<Vec<u8>>),
    /// Video from the first keyframe on, held while the start waits for audio.
    held: Vec<MediaFrame>,
}

impl Packager {
    /// A packager cutting parts of at most `part_target` into segments of `segment_target`.
    #[must_use]
    pub fn new(part_target: Duration, segment_target: Duration) -> Self {
        Self {
            part_target_us: part_target.as_micros() as i64,
            segment_target_us: segment_target.as_micros() as i64,
            origin: None,
            video: None,
            audio: None,
            audio_kind: None,
            sequence: 0,
            part_start: 0,
            segment_start: 0,
            next_starts_segment: true,
            next_independent: true,
            parameter_sets: (None, None),
            held: Vec::new(),
        }
    }

    /// Takes a frame; returns what it completes.
    pub fn push(&mut self, f: &MediaFrame) -> Vec<Emit> {
        if self.origin.is_some() || self.audio_kind.is_some() {
            return self.push_now(f);
        }
        if f.codec.is_video() {
            if f.keyframe || !self.held.is_empty() {
                self.held.push(f.clone());
            }
            let waited = self.held.last().map_or(0, |l| l.dts_us) - self.held.first().map_or(0, |h| h.dts_us);
            if waited < AUDIO_WAIT_US {
                return Vec::new();
            }
            return self.release_held();
        }
        // The first audio: the start can go ahead with both tracks.
        self.push_audio(f);
        let mut out = self.release_held();
        out.extend(self.push_now(f));
        out
    }

    /// Starts with the video held back so far.
    fn release_held(&mut self) -> Vec<Emit> {
        std::mem::take(&mut self.held).iter().flat_map(|h| self.push_now(h)).collect()
    }

    fn push_now(&mut self, f: &MediaFrame) -> Vec<Emit> {
        let mut out = Vec::new();
        if !f.codec.is_video() {
            self.push_audio(f);
            return out;
        }
        if f.codec != Codec::H264 {
            return out; // only H.264 goes into CMAF here; WHIP offers it first
        }
        let (sample, sps, pps) = avcc_sample(&f.data);
        if let Some(s) = sps {
            self.parameter_sets.0 = Some(s);
        }
        if let Some(p) = pps {
            self.parameter_sets.1 = Some(p);
        }
        if self.origin.is_none() {
            if !f.keyframe {
                return out;
            }
            let (Some(sps), Some(pps)) = self.parameter_sets.clone() else { return out };
            let Some((width, height)) = cmaf::sps_dimensions(&sps) else { return out };
            self.origin = Some(f.dts_us);
            self.part_start = f.dts_us;
            self.segment_start = f.dts_us;
            let mut tracks = vec![Track { id: 1, timescale: 90_000, kind: TrackKind::Avc { sps, pps, width, height } }];
            if let Some(kind) = self.audio_kind.clone() {
                let timescale = match &kind {
                    TrackKind::Aac { sample_rate, .. } => *sample_rate,
                    _ => 48_000,
                };
                tracks.push(Track { id: 2, timescale, kind });
            }
            self.video =
                Some(TrackState { track: tracks[0].clone(), queue: Vec::new(), last_dts: None, last_duration: 3000 });
            self.audio = tracks.get(1).map(|t| TrackState {
                track: t.clone(),
                queue: Vec::new(),
                last_dts: None,
                last_duration: 0,
            });
            // Audio that came before the first keyframe is dropped.
            out.push(Emit::Init { bytes: cmaf::init_segment(&tracks), tracks });
        }
        let origin = self.origin.unwrap_or_default();
        if f.dts_us < origin {
            return out;
        }
        // Decode times must grow: a frame with its predecessor's time is the rest of it (a
        // sender split it), merged into it; one from before it is dropped.
        if let Some(video) = self.video.as_mut() {
            let dts = video.ticks(f.dts_us - origin);
            if video.last_dts.is_some_and(|last| dts <= last) {
                if let Some(last) = video.queue.last_mut().filter(|p| p.dts == dts) {
                    last.data = [&last.data[..], &sample[..]].concat().into();
                    last.sync |= f.keyframe;
                }
                return out;
            }
            video.last_dts = Some(dts);
        }
        let at = f.dts_us;
        let segment_due = f.keyframe && at - self.segment_start >= self.segment_target_us;
        // Cut a little early, so no part outlasts the target by the frame that follows.
        let part_due = at - self.part_start >= self.part_target_us * 9 / 10;
        // A keyframe starts a part of its own, where a player can join.
        if segment_due || part_due || (f.keyframe && at > self.part_start) {
            if let Some(part) = self.cut(Some(at)) {
                out.push(part);
            }
            self.part_start = at;
            self.next_independent = f.keyframe;
            if segment_due {
                self.segment_start = at;
                self.next_starts_segment = true;
            }
        }
        let Some(video) = self.video.as_mut() else { return out };
        let dts = video.ticks(at - origin);
        let cts = i32::try_from(f.cts_us * 9 / 100).unwrap_or(0);
        video.queue.push(Pending { dts, cts, sync: f.keyframe, data: sample.into() });
        out
    }

    fn push_audio(&mut self, f: &MediaFrame) {
        if self.audio_kind.is_none() {
            self.audio_kind = match f.codec {
                Codec::Opus => Some(TrackKind::Opus { channels: 2 }),
                Codec::Aac => f.config.as_deref().and_then(aac_kind),
                _ => None,
            };
        }
        let Some(origin) = self.origin else { return };
        let Some(audio) = self.audio.as_mut() else { return };
        if f.dts_us < origin {
            return;
        }
        let dts = audio.ticks(f.dts_us - origin);
        // Out-of-order or repeated audio would give a negative duration.
        if audio.last_dts.is_some_and(|last| dts <= last) {
            return;
        }
        audio.last_dts = Some(dts);
        audio.queue.push(Pending { dts, cts: 0, sync: true, data: f.data.clone() });
    }

    /// The part of everything before `cut` (microseconds; `None`: everything).
    fn cut(&mut self, cut: Option<i64>) -> Option<Emit> {
        let origin = self.origin?;
        let video = self.video.as_mut()?;
        let vcut = cut.map(|c| video.ticks(c - origin));
        // The cut is the next video frame's time: the last frame's duration is exact.
        let (vbase, vsamples) = video.take(vcut, 3000, false);
        if vsamples.is_empty() {
            return None;
        }
        let vticks: u64 = vsamples.iter().map(|s| u64::from(s.duration)).sum();
        let duration = vticks as f64 / 90_000.0;
        let mut runs = vec![Run { track: 1, base_time: vbase, samples: &vsamples }];
        let audio_samples;
        if let Some(audio) = self.audio.as_mut() {
            let acut = cut.map(|c| audio.ticks(c - origin));
            let nominal = match audio.track.kind {
                TrackKind::Aac { .. } => 1024,
                _ => 960,
            };
            // Audio runs on its own clock and arrives in its own bursts.
            let (abase, samples) = audio.take(acut, nominal, true);
            audio_samples = samples;
            runs.push(Run { track: 2, base_time: abase, samples: &audio_samples });
        }
        self.sequence += 1;
        let part = Emit::Part {
            bytes: cmaf::fragment(self.sequence, &runs),
            duration,
            independent: self.next_independent,
            starts_segment: self.next_starts_segment,
        };
        self.next_starts_segment = false;
        Some(part)
    }

    /// Everything still waiting, as a last part (the stream ended).
    pub fn finish(&mut self) -> Vec<Emit> {
        let mut out = self.release_held();
        out.extend(self.cut(None));
        out
    }
}

/// An H.264 access unit as a CMAF sample (4-byte lengths, no access unit delimiters), and
/// the SPS and PPS it carries.
fn avcc_sample(annex_b: &[u8]) -> (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut out = Vec::with_capacity(annex_b.len() + 8);
    let (mut sps, mut pps) = (None, None);
    for unit in annex_b_units(annex_b) {
        match h264_type(unit) {
            9 => continue,
            7 => sps = Some(unit.to_vec()),
            8 => pps = Some(unit.to_vec()),
            _ => {}
        }
        out.extend_from_slice(&u32::try_from(unit.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(unit);
    }
    (out, sps, pps)
}

/// The track of an AAC AudioSpecificConfig.
fn aac_kind(asc: &[u8]) -> Option<TrackKind> {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    if asc.len() < 2 {
        return None;
    }
    let index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
    let channels = (asc[1] >> 3) & 0x0f;
    let sample_rate = *RATES.get(usize::from(index))?;
    Some(TrackKind::Aac { asc: asc.to_vec(), channels: channels.max(1), sample_rate })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
        0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];

    fn video(ms: i64, keyframe: bool) -> MediaFrame {
        let mut data = Vec::new();
        if keyframe {
            for unit in [&SPS[..], &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0][..], &[0x65, 1, 2, 3][..]] {
                data.extend_from_slice(&[0, 0, 0, 1]);
                data.extend_from_slice(unit);
            }
        } else {
            data.extend_from_slice(&[0, 0, 0, 1, 0x41, 9, 9]);
        }
        MediaFrame { codec: Codec::H264, dts_us: ms * 1000, cts_us: 0, keyframe, data: data.into(), config: None }
    }

    fn opus(ms: i64) -> MediaFrame {
        MediaFrame {
            codec: Codec::Opus,
            dts_us: ms * 1000,
            cts_us: 0,
            keyframe: false,
            data: vec![0xfc; 20].into(),
            config: None,
        }
    }

    #[test]
    fn parts_and_segments_follow_the_targets_and_keyframes() {
        let mut p = Packager::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut emitted = Vec::new();
        // Audio from before the first keyframe, then 6 s of 25 fps video with a keyframe
        // every 1.6 s and 20 ms audio packets.
        emitted.extend(p.push(&opus(-40)));
        for ms in (0..6000).step_by(20) {
            if ms % 40 == 0 {
                emitted.extend(p.push(&video(ms, ms % 1600 == 0)));
            }
            emitted.extend(p.push(&opus(ms)));
        }
        emitted.extend(p.finish());
        let Emit::Init { tracks, .. } = &emitted[0] else { panic!("init first") };
        assert_eq!(tracks.len(), 2, "video and the audio seen before the first keyframe");
        assert_eq!(
            tracks[0].kind,
            TrackKind::Avc {
                sps: SPS.to_vec(),
                pps: vec![0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0],
                width: 320,
                height: 240
            }
        );
        let parts: Vec<(f64, bool, bool)> = emitted[1..]
            .iter()
            .map(|e| match e {
                Emit::Part { duration, independent, starts_segment, .. } => (*duration, *independent, *starts_segment),
                Emit::Init { .. } => panic!("one init"),
            })
            .collect();
        let total: f64 = parts.iter().map(|p| p.0).sum();
        assert!((total - 6.0).abs() < 0.05, "every frame is in a part: {total}");
        assert!(parts.iter().all(|p| p.0 <= 0.5 + 1e-9), "no part outlasts its target: {parts:?}");
        // Segments start on the keyframes at 0 and 3.2 s (1.6 s and 4.8 s are too early for
        // one; they start independent parts).
        let starts: Vec<usize> = parts.iter().enumerate().filter(|(_, p)| p.2).map(|(i, _)| i).collect();
        assert_eq!(starts.len(), 2, "{parts:?}");
        assert_eq!(parts.iter().filter(|p| p.1).count(), 4, "a part starts at each keyframe: {parts:?}");
        assert!(starts.iter().all(|&i| parts[i].1), "a segment starts independent");
        let seg_secs: Vec<f64> = starts
            .iter()
            .enumerate()
            .map(|(k, &i)| parts[i..starts.get(k + 1).copied().unwrap_or(parts.len())].iter().map(|p| p.0).sum())
            .collect();
        assert!((seg_secs[0] - 3.2).abs() < 0.05 && (seg_secs[1] - 2.8).abs() < 0.05, "{seg_secs:?}");
    }

    #[test]
    fn decode_times_always_grow() {
        let mut p = Packager::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut emitted = Vec::new();
        for ms in [0, 40, 40, 80, 60, 120, 160, 500, 540, 580] {
            emitted.extend(p.push(&video(ms, ms == 0)));
        }
        emitted.extend(p.finish());
        let mut starts = Vec::new();
        for e in &emitted {
            if let Emit::Part { bytes, .. } = e {
                // tfdt and the trun's durations, read back.
                let at = bytes.windows(4).position(|w| w == b"tfdt").unwrap();
                let mut t = u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap());
                let trun = bytes.windows(4).position(|w| w == b"trun").unwrap();
                let n = u32::from_be_bytes(bytes[trun + 8..trun + 12].try_into().unwrap()) as usize;
                for i in 0..n {
                    let d = u32::from_be_bytes(bytes[trun + 16 + i * 16..trun + 20 + i * 16].try_into().unwrap());
                    assert!(d > 0, "no sample lasts nothing");
                    starts.push(t);
                    t += u64::from(d);
                }
            }
        }
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        assert_eq!(starts.len(), 8, "the repeated frame is merged, the late one dropped: {starts:?}");
    }

    /// Each track's (tfdt, sample durations) in a part.
    fn runs(part: &[u8]) -> Vec<(u64, Vec<u32>)> {
        let at =
            |name: &[u8]| part.windows(4).enumerate().filter(|(_, w)| *w == name).map(|(i, _)| i).collect::<Vec<_>>();
        at(b"tfdt")
            .into_iter()
            .zip(at(b"trun"))
            .map(|(tfdt, trun)| {
                let base = u64::from_be_bytes(part[tfdt + 8..tfdt + 16].try_into().unwrap());
                let n = u32::from_be_bytes(part[trun + 8..trun + 12].try_into().unwrap()) as usize;
                let durations = (0..n)
                    .map(|i| u32::from_be_bytes(part[trun + 16 + i * 16..trun + 20 + i * 16].try_into().unwrap()))
                    .collect();
                (base, durations)
            })
            .collect()
    }

    #[test]
    fn audio_runs_on_across_parts_when_it_arrives_late_and_in_bursts() {
        // A starved publisher: audio comes in bursts of 10 packets, 200 ms behind the video.
        let mut p = Packager::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut emitted = Vec::new();
        emitted.extend(p.push(&opus(-20)));
        let mut audio_sent = -20;
        for ms in (0..4000).step_by(40) {
            emitted.extend(p.push(&video(ms, ms % 2000 == 0)));
            if ms % 200 == 0 {
                while audio_sent + 20 <= ms - 200 {
                    audio_sent += 20;
                    emitted.extend(p.push(&opus(audio_sent)));
                }
            }
        }
        emitted.extend(p.finish());
        let mut audio_end = None;
        let mut samples = 0;
        for e in &emitted {
            let Emit::Part { bytes, .. } = e else { continue };
            // A part without audio has no audio run.
            let Some((base, durations)) = runs(bytes).into_iter().nth(1) else { continue };
            // No hole and no overlap between one part's audio and the next one's.
            if let Some(end) = audio_end {
                assert_eq!(base, end, "audio continues where it stopped");
            }
            assert!(durations.iter().all(|&d| d == 960), "every packet lasts its 20 ms: {durations:?}");
            samples += durations.len();
            audio_end = Some(base + durations.iter().map(|&d| u64::from(d)).sum::<u64>());
        }
        assert!(samples > 150, "the audio is packaged: {samples} packets");
    }

    #[test]
    fn nothing_is_made_before_a_keyframe_with_parameter_sets() {
        let mut p = Packager::new(Duration::from_millis(500), Duration::from_secs(2));
        for ms in (0..2000).step_by(40) {
            assert!(p.push(&video(ms, false)).is_empty());
        }
        assert!(p.finish().is_empty());
        // A keyframe starts the stream once a second of video has shown there is no audio.
        let mut emitted = Vec::new();
        for ms in (2000..3040).step_by(40) {
            emitted.extend(p.push(&video(ms, ms == 2000)));
        }
        let Some(Emit::Init { tracks, .. }) = emitted.first() else { panic!("no init: {emitted:?}") };
        assert_eq!(tracks.len(), 1, "video only");
        assert!(emitted.len() > 1, "and its first parts");
    }

    #[test]
    fn audio_that_starts_just_after_the_first_keyframe_is_in_the_stream() {
        let mut p = Packager::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut emitted = Vec::new();
        for ms in (0..3000).step_by(20) {
            if ms % 40 == 0 {
                emitted.extend(p.push(&video(ms, ms % 1600 == 0)));
            }
            if ms >= 300 {
                emitted.extend(p.push(&opus(ms)));
            }
        }
        emitted.extend(p.finish());
        let Emit::Init { tracks, .. } = &emitted[0] else { panic!("init first") };
        assert_eq!(tracks.len(), 2, "the audio that came 300 ms after the keyframe has its track");
        let video_s: f64 = emitted[1..]
            .iter()
            .map(|e| match e {
                Emit::Part { duration, .. } => *duration,
                Emit::Init { .. } => panic!("one init"),
            })
            .sum();
        assert!((video_s - 3.0).abs() < 0.05, "no video lost while waiting: {video_s} s");
    }

    #[test]
    fn aac_configs_give_rate_and_channels() {
        // AAC-LC, 48 kHz, stereo; 44.1 kHz mono.
        assert_eq!(
            aac_kind(&[0x11, 0x90]),
            Some(TrackKind::Aac { asc: vec![0x11, 0x90], channels: 2, sample_rate: 48000 })
        );
        assert_eq!(
            aac_kind(&[0x12, 0x08]),
            Some(TrackKind::Aac { asc: vec![0x12, 0x08], channels: 1, sample_rate: 44100 })
        );
        assert_eq!(aac_kind(&[0x11]), None);
    }
}
