//! What a live stream's viewers over HTTP read: the init segment and a window of recent
//! segments and parts in memory, with low-latency HLS playlists (partial segments,
//! blocking playlist reload, preload hints) and a DASH manifest over the same CMAF bytes.
//!
//! Names under `/live/NAME/`: `master.m3u8`, `index.m3u8`, `init.mp4`, `seg/N.m4s`,
//! `part/N.I.m4s`, `manifest.mpd`. A request for the next part, or a playlist that will
//! have it, waits until it exists (at most `BLOCK_LIMIT`), so players hear of each part
//! the moment it is cut.

use super::cmaf::Track;
use super::packager::Emit;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Complete segments kept for players that join or fall behind.
const WINDOW: usize = 6;
/// Segments whose parts are still listed (players near the live edge use them).
const PART_SEGMENTS: usize = 3;

/// A part of a segment.
#[derive(Debug)]
pub struct Part {
    /// Its fragment.
    pub bytes: Arc<[u8]>,
    /// Seconds.
    pub duration: f64,
    /// Starts with a keyframe.
    pub independent: bool,
}

#[derive(Debug)]
struct Segment {
    msn: u64,
    /// Seconds from the stream's first segment to its start, on the media clock.
    start: f64,
    parts: Vec<Arc<Part>>,
    complete: bool,
}

impl Segment {
    fn duration(&self) -> f64 {
        self.parts.iter().map(|p| p.duration).sum()
    }
}

#[derive(Debug, Default)]
struct State {
    init: Option<Arc<[u8]>>,
    tracks: Vec<Track>,
    /// Oldest first; the last one may be in progress.
    segments: VecDeque<Segment>,
    /// Longest segment so far, whole seconds rounded up.
    target: u64,
    ended: bool,
    /// Changes seen: each part, the end.
    version: u64,
    /// Wall-clock start of the first segment.
    first_started: Option<SystemTime>,
}

/// Where a request stands against the live edge.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// It can be answered now.
    Ready,
    /// It will be answerable after a part or two: wait for a change.
    Soon,
    /// It never will (too old, too far ahead, or the stream ended).
    Never,
}

/// How long a player counts as watching after its last playlist request.
const VIEWER_TTL: Duration = Duration::from_secs(10);

/// The HTTP side of one live stream.
pub struct Output {
    state: Mutex<State>,
    /// Players by a tag of their credential, with when they last asked.
    viewers: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    changed: tokio::sync::watch::Sender<u64>,
    part_target: Duration,
    /// When it was made, for DASH's availability start.
    created: SystemTime,
}

impl Output {
    /// An empty output whose parts last at most `part_target`.
    #[must_use]
    pub fn new(part_target: Duration, segment_target: Duration) -> Arc<Self> {
        let state = State { target: segment_target.as_secs().max(1), ..State::default() };
        Arc::new(Self {
            state: Mutex::new(state),
            viewers: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
            part_target,
            created: SystemTime::now(),
        })
    }

    /// Publishes what the packager made.
    pub fn apply(&self, emit: Emit) {
        let mut s = self.state.lock().expect("live output");
        match emit {
            Emit::Init { bytes, tracks } => {
                s.init = Some(bytes.into());
                s.tracks = tracks;
            }
            Emit::Part { bytes, duration, independent, starts_segment } => {
                let part = Arc::new(Part { bytes: bytes.into(), duration, independent });
                let open = s.segments.back().is_some_and(|seg| !seg.complete);
                if starts_segment || !open {
                    if let Some(last) = s.segments.back_mut() {
                        last.complete = true;
                    }
                    let (msn, start) =
                        s.segments.back().map_or((0, 0.0), |seg| (seg.msn + 1, seg.start + seg.duration()));
                    s.first_started.get_or_insert_with(SystemTime::now);
                    s.segments.push_back(Segment { msn, start, parts: Vec::new(), complete: false });
                    while s.segments.len() > WINDOW + 1 {
                        s.segments.pop_front();
                    }
                }
                let seg = s.segments.back_mut().expect("a segment in progress");
                seg.parts.push(part);
                let secs = seg.duration().ceil() as u64;
                s.target = s.target.max(secs);
            }
        }
        s.version += 1;
        let v = s.version;
        drop(s);
        self.changed.send_replace(v);
    }

    /// The stream ended: the last segment completes and playlists say so.
    pub fn end(&self) {
        let mut s = self.state.lock().expect("live output");
        if let Some(last) = s.segments.back_mut() {
            last.complete = true;
        }
        s.ended = true;
        s.version += 1;
        let v = s.version;
        drop(s);
        self.changed.send_replace(v);
    }

    /// Counts a player as watching; a new one only if `room(players now)` allows it.
    pub fn touch_viewer(&self, tag: &str, room: impl Fn(u32) -> bool) -> bool {
        let mut v = self.viewers.lock().expect("viewers");
        v.retain(|_, seen| seen.elapsed() < VIEWER_TTL);
        if !v.contains_key(tag) && !room(v.len() as u32) {
            return false;
        }
        v.insert(tag.to_string(), std::time::Instant::now());
        true
    }

    /// Players that asked for a playlist or a part within the last few seconds.
    #[must_use]
    pub fn viewers(&self) -> u32 {
        let v = self.viewers.lock().expect("viewers");
        v.values().filter(|seen| seen.elapsed() < VIEWER_TTL).count() as u32
    }

    /// Whether it ended.
    #[must_use]
    pub fn ended(&self) -> bool {
        self.state.lock().expect("live output").ended
    }

    /// A receiver that wakes at each change.
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The init segment, once the first keyframe came.
    #[must_use]
    pub fn init(&self) -> Option<Arc<[u8]>> {
        self.state.lock().expect("live output").init.clone()
    }

    /// Where part `part` of segment `msn` stands (`part: None`: the whole segment).
    #[must_use]
    pub fn wait_for(&self, msn: u64, part: Option<usize>) -> Wait {
        let s = self.state.lock().expect("live output");
        let Some(last) = s.segments.back() else { return if s.ended { Wait::Never } else { Wait::Soon } };
        let first = s.segments.front().map_or(0, |seg| seg.msn);
        if msn < first {
            return Wait::Never;
        }
        if let Some(seg) = s.segments.iter().find(|seg| seg.msn == msn) {
            let have = match part {
                Some(i) => i < seg.parts.len(),
                None => seg.complete,
            };
            if have {
                return Wait::Ready;
            }
            if seg.complete || s.ended {
                return Wait::Never;
            }
            return Wait::Soon;
        }
        // Ahead of the live edge: the next segment (or the one after) will come.
        if !s.ended && msn <= last.msn + 2 {
            Wait::Soon
        } else {
            Wait::Never
        }
    }

    /// The bytes of a whole segment, if complete and in the window.
    #[must_use]
    pub fn segment(&self, msn: u64) -> Option<Vec<u8>> {
        let s = self.state.lock().expect("live output");
        let seg = s.segments.iter().find(|seg| seg.msn == msn && seg.complete)?;
        Some(seg.parts.iter().flat_map(|p| p.bytes.iter().copied()).collect())
    }

    /// The bytes of a part, if it exists.
    #[must_use]
    pub fn part(&self, msn: u64, index: usize) -> Option<Arc<[u8]>> {
        let s = self.state.lock().expect("live output");
        s.segments.iter().find(|seg| seg.msn == msn)?.parts.get(index).map(|p| p.bytes.clone())
    }

    /// The media sequence number and part count of the live edge (the segment in progress).
    #[must_use]
    pub fn edge(&self) -> Option<(u64, usize)> {
        let s = self.state.lock().expect("live output");
        s.segments.back().map(|seg| if seg.complete { (seg.msn + 1, 0) } else { (seg.msn, seg.parts.len()) })
    }

    /// The multivariant playlist: one variant, with its codecs and picture size.
    #[must_use]
    pub fn master(&self) -> Option<String> {
        let s = self.state.lock().expect("live output");
        s.init.as_ref()?;
        let codecs: Vec<String> = s.tracks.iter().map(Track::codec_string).collect();
        let size = s.tracks.iter().find_map(|t| match t.kind {
            super::cmaf::TrackKind::Avc { width, height, .. } => Some(format!(",RESOLUTION={width}x{height}")),
            _ => None,
        });
        let bandwidth = bits_per_second(&s).max(100_000);
        Some(format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"{}\nindex.m3u8\n",
            codecs.join(","),
            size.unwrap_or_default()
        ))
    }

    /// The media playlist of the window, with parts near the live edge.
    #[must_use]
    pub fn playlist(&self) -> Option<String> {
        let s = self.state.lock().expect("live output");
        s.init.as_ref()?;
        let first = s.segments.front()?;
        let part_target = self.part_target.as_secs_f64();
        let mut out = String::with_capacity(2048);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
             #EXT-X-PART-INF:PART-TARGET={part_target:.3}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-MAP:URI=\"init.mp4\"\n",
            s.target,
            3.0 * part_target,
            first.msn
        );
        let with_parts = s.segments.len().saturating_sub(PART_SEGMENTS);
        for (i, seg) in s.segments.iter().enumerate() {
            // On the media clock from the first segment's wall-clock start: players align
            // playlists by these dates, so they must differ exactly by the durations.
            let date = s.first_started.unwrap_or(self.created) + Duration::from_secs_f64(seg.start);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(date));
            if i >= with_parts {
                for (k, p) in seg.parts.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={:.5},URI=\"part/{}.{k}.m4s\"{}",
                        p.duration,
                        seg.msn,
                        if p.independent { ",INDEPENDENT=YES" } else { "" }
                    );
                }
            }
            if seg.complete {
                let _ = writeln!(out, "#EXTINF:{:.5},\nseg/{}.m4s", seg.duration(), seg.msn);
            }
        }
        if s.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if let Some(last) = s.segments.back() {
            let (msn, index) = if last.complete { (last.msn + 1, 0) } else { (last.msn, last.parts.len()) };
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/{msn}.{index}.m4s\"");
        }
        Some(out)
    }

    /// A dynamic DASH manifest of the complete segments (SegmentTimeline over the same
    /// CMAF bytes).
    #[must_use]
    pub fn mpd(&self) -> Option<String> {
        let s = self.state.lock().expect("live output");
        s.init.as_ref()?;
        let complete: Vec<&Segment> = s.segments.iter().filter(|seg| seg.complete).collect();
        let first = complete.first()?;
        let start = rfc3339_ms(self.created);
        let published = rfc3339_ms(SystemTime::now());
        let codecs: Vec<String> = s.tracks.iter().map(Track::codec_string).collect();
        // The media clock starts with the first segment, this far after the availability
        // start; a segment's time is its start on that clock, shifted the same.
        let origin =
            s.first_started.and_then(|t| t.duration_since(self.created).ok()).unwrap_or_default().as_secs_f64();
        let mut timeline = String::new();
        for seg in &complete {
            let t = ((origin + seg.start) * 1000.0).round() as u64;
            let d = (seg.duration() * 1000.0).round() as u64;
            let _ = write!(timeline, "<S t=\"{t}\" d=\"{d}\"/>");
        }
        let offset = (origin * 1000.0).round() as u64;
        let (w, h) = s
            .tracks
            .iter()
            .find_map(|t| match t.kind {
                super::cmaf::TrackKind::Avc { width, height, .. } => Some((width, height)),
                _ => None,
            })
            .unwrap_or((0, 0));
        Some(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
             type=\"dynamic\" availabilityStartTime=\"{start}\" publishTime=\"{published}\" \
             minimumUpdatePeriod=\"PT{}S\" minBufferTime=\"PT{}S\" timeShiftBufferDepth=\"PT{}S\" \
             suggestedPresentationDelay=\"PT{}S\">\n\
             <Period id=\"0\" start=\"PT0S\"><AdaptationSet mimeType=\"video/mp4\" segmentAlignment=\"true\">\
             <Representation id=\"0\" bandwidth=\"{}\" codecs=\"{}\" width=\"{w}\" height=\"{h}\">\
             <SegmentTemplate timescale=\"1000\" presentationTimeOffset=\"{offset}\" initialization=\"init.mp4\" \
             media=\"seg/$Number$.m4s\" startNumber=\"{}\">\
             <SegmentTimeline>{timeline}</SegmentTimeline></SegmentTemplate>\
             </Representation></AdaptationSet></Period></MPD>\n",
            s.target,
            s.target,
            s.target * WINDOW as u64,
            s.target * 2,
            bits_per_second(&s).max(100_000),
            codecs.join(","),
            first.msn,
        ))
    }
}

/// The stream's rate over the window, bits per second.
fn bits_per_second(s: &State) -> u64 {
    let (bytes, secs) = s
        .segments
        .iter()
        .flat_map(|seg| seg.parts.iter())
        .fold((0usize, 0f64), |(b, d), p| (b + p.bytes.len(), d + p.duration));
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 * 8.0 / secs) as u64
    }
}

fn rfc3339_ms(t: SystemTime) -> String {
    let ms = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let s = crate::utc::rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::cmaf::TrackKind;

    fn part(starts_segment: bool) -> Emit {
        Emit::Part { bytes: vec![1, 2, 3], duration: 0.5, independent: starts_segment, starts_segment }
    }

    #[test]
    fn playlists_list_segments_parts_and_the_next_part() {
        let out = Output::new(Duration::from_millis(500), Duration::from_secs(2));
        assert!(out.playlist().is_none(), "nothing before the init segment");
        assert_eq!(out.wait_for(0, Some(0)), Wait::Soon);
        let sps = vec![0x67, 0x42, 0xc0, 0x1e];
        out.apply(Emit::Init {
            bytes: vec![0; 8],
            tracks: vec![Track {
                id: 1,
                timescale: 90_000,
                kind: TrackKind::Avc { sps, pps: vec![0x68], width: 640, height: 360 },
            }],
        });
        for i in 0..9 {
            out.apply(part(i % 4 == 0));
        }
        // Segments 0 and 1 are complete (4 parts each), segment 2 has one part.
        let p = out.playlist().unwrap();
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{p}");
        assert!(p.contains("#EXTINF:2.00000,\nseg/0.m4s\n") && p.contains("seg/1.m4s"), "{p}");
        assert!(p.contains("#EXT-X-PART:DURATION=0.50000,URI=\"part/2.0.m4s\",INDEPENDENT=YES\n"), "{p}");
        assert!(p.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/2.1.m4s\"\n"), "{p}");
        assert!(p.contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500"), "{p}");
        assert_eq!(out.edge(), Some((2, 1)));
        assert_eq!(out.wait_for(2, Some(0)), Wait::Ready);
        assert_eq!(out.wait_for(2, Some(1)), Wait::Soon, "the hinted part");
        assert_eq!(out.wait_for(2, None), Wait::Soon, "the segment in progress");
        assert_eq!(out.wait_for(9, None), Wait::Never, "too far ahead");
        assert_eq!(out.segment(1).unwrap().len(), 12);
        assert!(out.segment(2).is_none());
        assert_eq!(&*out.part(2, 0).unwrap(), &[1, 2, 3]);
        let m = out.master().unwrap();
        assert!(m.contains("CODECS=\"avc1.42c01e\",RESOLUTION=640x360\nindex.m3u8"), "{m}");
        assert!(out.mpd().unwrap().contains("<S t="), "DASH lists the complete segments");
        // The window slides: old segments go, the sequence number follows.
        for i in 0..40 {
            out.apply(part(i % 4 == 3));
        }
        let p = out.playlist().unwrap();
        assert!(!p.contains("seg/0.m4s") && !p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{p}");
        assert_eq!(out.wait_for(0, None), Wait::Never, "gone from the window");
        out.end();
        let p = out.playlist().unwrap();
        assert!(p.ends_with("#EXT-X-ENDLIST\n") && !p.contains("PRELOAD-HINT"), "{p}");
        let (last, _) = out.edge().unwrap();
        assert_eq!(out.wait_for(last, Some(99)), Wait::Never);
    }
}
