//! The layout of a fragmented MP4 (`ftyp`, `moov`, then `moof`+`mdat` fragments), read box
//! header by box header: enough to serve a video that has no ladder yet as one HLS
//! rendition over byte ranges of the file itself (`EXT-X-BYTERANGE`), with no copy and no
//! encoding. A plain MP4 (one `mdat`, the index in `moov`) cannot be cut that way: for it,
//! `layout` says `None`.

use std::io;

/// Largest `moov` or `moof` read whole: real ones are a few KiB.
const MAX_INDEX_BOX: u64 = 4 << 20;
/// Most fragments accepted (a day of 1 s fragments).
const MAX_FRAGMENTS: usize = 100_000;

/// Where a fragmented MP4's parts lie.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Bytes of the initialization section (`ftyp` and `moov`), from offset 0.
    pub init_len: u64,
    /// The picture's size, from the video track's header.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// Segments: runs of whole fragments, each starting where a fragment starts.
    pub segments: Vec<Segment>,
}

/// A byte range of the file that plays on its own after the initialization section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Playing time, seconds.
    pub duration: f64,
}

impl Layout {
    /// Total playing time, seconds.
    #[must_use]
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// The HLS media playlist of the file at `uri`, one segment per range.
    #[must_use]
    pub fn media_playlist(&self, uri: &str) -> String {
        let target = self.segments.iter().map(|s| s.duration).fold(1.0f64, f64::max).ceil();
        let mut p = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{uri}\",BYTERANGE=\"{}@0\"\n",
            self.init_len
        );
        for s in &self.segments {
            p.push_str(&format!("#EXTINF:{:.6},\n#EXT-X-BYTERANGE:{}@{}\n{uri}\n", s.duration, s.len, s.offset));
        }
        p.push_str("#EXT-X-ENDLIST\n");
        p
    }

    /// The HLS master playlist with the one rendition at `media_uri`, of a file of
    /// `file_size` bytes.
    #[must_use]
    pub fn master_playlist(&self, media_uri: &str, file_size: u64) -> String {
        let bandwidth = (file_size as f64 * 8.0 / self.duration().max(0.001)).ceil() as u64;
        format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={}x{}\n{media_uri}\n",
            self.width, self.height
        )
    }
}

/// Reads `len` bytes at `offset` of the file (fewer only at its end).
pub type ReadAt<'a> = dyn FnMut(u64, u32) -> io::Result<Vec<u8>> + 'a;

/// The layout of the file of `size` bytes that `read` reads, if it is a fragmented MP4
/// with a video track; fragments are joined into segments of at least `segment_seconds`.
pub fn layout(read: &mut ReadAt<'_>, size: u64, segment_seconds: f64) -> io::Result<Option<Layout>> {
    let mut offset = 0;
    let mut tracks: Option<Tracks> = None;
    let mut init_len = None;
    let mut fragments: Vec<Segment> = Vec::new();
    let mut fragment_start: Option<(u64, f64)> = None;
    let mut first = true;
    while offset < size {
        let Some((kind, header, len)) = box_at(read, offset, size)? else { return Ok(None) };
        match &kind {
            b"ftyp" if first => {}
            b"moov" if tracks.is_none() => {
                if len > MAX_INDEX_BOX {
                    return Ok(None);
                }
                let body = read_exact(read, offset + header, (len - header) as u32)?;
                let Some(t) = Tracks::parse(&body) else { return Ok(None) };
                tracks = Some(t);
                init_len = Some(offset + len);
            }
            b"moof" => {
                let Some(t) = &tracks else { return Ok(None) };
                if len > MAX_INDEX_BOX || fragments.len() >= MAX_FRAGMENTS {
                    return Ok(None);
                }
                let body = read_exact(read, offset + header, (len - header) as u32)?;
                let Some(duration) = t.video_duration(&body) else { return Ok(None) };
                fragment_start = Some((offset, duration));
            }
            b"mdat" => {
                // A plain MP4's one `mdat` follows no `moof`: not cut into fragments.
                let Some((start, duration)) = fragment_start.take() else { return Ok(None) };
                fragments.push(Segment { offset: start, len: offset + len - start, duration });
            }
            // Boxes that carry nothing a player needs between fragments.
            b"free" | b"skip" | b"styp" | b"sidx" | b"prft" | b"emsg" | b"mfra" | b"uuid" | b"meta" => {}
            _ => return Ok(None),
        }
        first = false;
        offset += len;
    }
    let (Some(t), Some(init_len)) = (tracks, init_len) else { return Ok(None) };
    if fragments.is_empty() {
        return Ok(None);
    }
    // Join fragments so a segment lasts at least `segment_seconds`: players fetch fewer,
    // larger ranges.
    let mut segments: Vec<Segment> = Vec::new();
    for f in fragments {
        match segments.last_mut() {
            Some(s) if s.duration < segment_seconds && s.offset + s.len == f.offset => {
                s.len += f.len;
                s.duration += f.duration;
            }
            _ => segments.push(f),
        }
    }
    Ok(Some(Layout { init_len, width: t.width, height: t.height, segments }))
}

/// The box at `offset`: its type, header length and whole length; `None` when it is not
/// a well-formed box inside the file.
fn box_at(read: &mut ReadAt<'_>, offset: u64, size: u64) -> io::Result<Option<([u8; 4], u64, u64)>> {
    let head = read(offset, 16)?;
    if head.len() < 8 {
        return Ok(None);
    }
    let kind: [u8; 4] = head[4..8].try_into().expect("4 bytes");
    let (header, len) = match u32::from_be_bytes(head[0..4].try_into().expect("4 bytes")) {
        0 => (8, size - offset),
        1 if head.len() >= 16 => (16, u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"))),
        1 => return Ok(None),
        n => (8, u64::from(n)),
    };
    if len < header || offset.checked_add(len).is_none_or(|end| end > size) {
        return Ok(None);
    }
    Ok(Some((kind, header, len)))
}

fn read_exact(read: &mut ReadAt<'_>, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let data = read(offset, len)?;
    if data.len() != len as usize {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended inside a box"));
    }
    Ok(data)
}

/// The children of a box body: (type, body).
fn children(body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let head = body.get(at..at + 8)?;
        let n = u32::from_be_bytes(head[0..4].try_into().ok()?) as usize;
        let (header, len) = match n {
            1 => (16, u64::from_be_bytes(body.get(at + 8..at + 16)?.try_into().ok()?) as usize),
            0 => (8, body.len() - at),
            n => (8, n),
        };
        if len < header || at + len > body.len() {
            return None;
        }
        let child = (&head[4..8], &body[at + header..at + len]);
        at += len;
        Some(child)
    })
}

fn child<'a>(body: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
    children(body).find(|(k, _)| *k == kind).map(|(_, b)| b)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What `moov` says of the video track.
struct Tracks {
    video_id: u32,
    timescale: u32,
    width: u32,
    height: u32,
    /// `trex` default sample duration of the video track.
    default_duration: u32,
}

impl Tracks {
    fn parse(moov: &[u8]) -> Option<Self> {
        let mut found = None;
        for (kind, trak) in children(moov) {
            if kind != b"trak" {
                continue;
            }
            let tkhd = child(trak, b"tkhd")?;
            let mdia = child(trak, b"mdia")?;
            let hdlr = child(mdia, b"hdlr")?;
            if hdlr.get(8..12)? != b"vide" {
                continue;
            }
            let mdhd = child(mdia, b"mdhd")?;
            let (id, size_at) = if tkhd[0] == 1 { (be32(tkhd, 20)?, 88) } else { (be32(tkhd, 12)?, 76) };
            let timescale = if mdhd[0] == 1 { be32(mdhd, 20)? } else { be32(mdhd, 12)? };
            found = Some(Self {
                video_id: id,
                timescale,
                width: be32(tkhd, size_at)? >> 16,
                height: be32(tkhd, size_at + 4)? >> 16,
                default_duration: 0,
            });
            break;
        }
        let mut t = found?;
        if t.timescale == 0 {
            return None;
        }
        // A fragmented file says so in `mvex`; the video track's defaults are in its `trex`.
        let mvex = child(moov, b"mvex")?;
        for (kind, trex) in children(mvex) {
            if kind == b"trex" && be32(trex, 4)? == t.video_id {
                t.default_duration = be32(trex, 12)?;
            }
        }
        Some(t)
    }

    /// Seconds of video in the fragment whose `moof` body is `moof` (0 for a fragment of
    /// other tracks only); `None` when it does not parse.
    fn video_duration(&self, moof: &[u8]) -> Option<f64> {
        let mut ticks = 0u64;
        for (kind, traf) in children(moof) {
            if kind != b"traf" {
                continue;
            }
            let tfhd = child(traf, b"tfhd")?;
            let flags = be32(tfhd, 0)? & 0x00ff_ffff;
            if be32(tfhd, 4)? != self.video_id {
                continue;
            }
            // tfhd: base-data-offset (0x01, 8 bytes) and sample-description-index (0x02, 4)
            // come before the default sample duration (0x08).
            let mut at = 8;
            if flags & 0x01 != 0 {
                at += 8;
            }
            if flags & 0x02 != 0 {
                at += 4;
            }
            let default = if flags & 0x08 != 0 { be32(tfhd, at)? } else { self.default_duration };
            for (kind, trun) in children(traf) {
                if kind != b"trun" {
                    continue;
                }
                let flags = be32(trun, 0)? & 0x00ff_ffff;
                let count = be32(trun, 4)? as usize;
                let mut at = 8;
                if flags & 0x001 != 0 {
                    at += 4; // data offset
                }
                if flags & 0x004 != 0 {
                    at += 4; // first sample flags
                }
                if flags & 0x100 == 0 {
                    ticks += u64::from(default) * count as u64;
                    continue;
                }
                let per_sample = 4 * [0x100, 0x200, 0x400, 0x800].iter().filter(|f| flags & **f != 0).count();
                for i in 0..count {
                    ticks += u64::from(be32(trun, at + i * per_sample)?);
                }
            }
        }
        Some(ticks as f64 / f64::from(self.timescale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&(body.len() as u32 + 8).to_be_bytes()[..], kind, body].concat()
    }

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// `ftyp` and a `moov` with a 640x360 video track 1 (timescale 1000) and an audio track 2.
    fn init() -> Vec<u8> {
        let mut tkhd = vec![0u8; 84];
        tkhd[12..16].copy_from_slice(&1u32.to_be_bytes());
        tkhd[76..80].copy_from_slice(&(640u32 << 16).to_be_bytes());
        tkhd[80..84].copy_from_slice(&(360u32 << 16).to_be_bytes());
        let video = bx(
            b"trak",
            &[
                bx(b"tkhd", &tkhd),
                bx(b"mdia", &[bx(b"mdhd", &words(&[0, 0, 0, 1000, 0])), bx(b"hdlr", b"\0\0\0\0\0\0\0\0vide")].concat()),
            ]
            .concat(),
        );
        let mut tkhd2 = tkhd.clone();
        tkhd2[12..16].copy_from_slice(&2u32.to_be_bytes());
        let audio = bx(
            b"trak",
            &[
                bx(b"tkhd", &tkhd2),
                bx(
                    b"mdia",
                    &[bx(b"mdhd", &words(&[0, 0, 0, 48000, 0])), bx(b"hdlr", b"\0\0\0\0\0\0\0\0soun")].concat(),
                ),
            ]
            .concat(),
        );
        let mvex = bx(
            b"mvex",
            &[bx(b"trex", &words(&[0, 1, 1, 40, 0, 0])), bx(b"trex", &words(&[0, 2, 1, 1024, 0, 0]))].concat(),
        );
        [bx(b"ftyp", b"isom\0\0\0\0isom"), bx(b"moov", &[audio, video, mvex].concat())].concat()
    }

    /// A fragment with `samples` video samples of `ms` each (durations in `trun`), and an
    /// audio run that must not count.
    fn fragment(samples: u32, ms: u32) -> Vec<u8> {
        let mut trun = words(&[0x0000_0301, samples, 0]);
        for _ in 0..samples {
            trun.extend(words(&[ms, 100]));
        }
        let video = bx(
            b"traf",
            &[bx(b"tfhd", &words(&[0x0002_0000, 1])), bx(b"tfdt", &words(&[0, 0])), bx(b"trun", &trun)].concat(),
        );
        let audio = bx(b"traf", &[bx(b"tfhd", &words(&[0x0002_0000, 2])), bx(b"trun", &words(&[0, 47]))].concat());
        [
            bx(b"moof", &[bx(b"mfhd", &words(&[0, 1])), audio, video].concat()),
            bx(b"mdat", &vec![7u8; 100 * samples as usize]),
        ]
        .concat()
    }

    fn layout_of(file: &[u8], segment_seconds: f64) -> Option<Layout> {
        let mut read = |at: u64, len: u32| -> io::Result<Vec<u8>> {
            let from = (at as usize).min(file.len());
            Ok(file[from..(from + len as usize).min(file.len())].to_vec())
        };
        layout(&mut read, file.len() as u64, segment_seconds).unwrap()
    }

    #[test]
    fn fragments_become_byte_ranges_joined_to_the_segment_length() {
        let init = init();
        let frags = [fragment(25, 40), fragment(25, 40), fragment(10, 40)];
        let file = [init.clone(), frags.concat()].concat();
        let l = layout_of(&file, 2.0).expect("a fragmented MP4");
        assert_eq!((l.init_len, l.width, l.height), (init.len() as u64, 640, 360));
        let first = (frags[0].len() + frags[1].len()) as u64;
        assert_eq!(l.segments.len(), 2, "{l:?}");
        assert_eq!((l.segments[0].offset, l.segments[0].len), (init.len() as u64, first));
        assert!((l.segments[0].duration - 2.0).abs() < 1e-9, "audio runs do not count: {l:?}");
        assert_eq!(l.segments[1].offset, init.len() as u64 + first);
        assert!((l.duration() - 2.4).abs() < 1e-9);
        let playlist = l.media_playlist("source.mp4");
        assert!(
            playlist.contains(&format!("#EXT-X-MAP:URI=\"source.mp4\",BYTERANGE=\"{}@0\"", init.len())),
            "{playlist}"
        );
        assert!(playlist.contains(&format!("#EXT-X-BYTERANGE:{first}@{}\nsource.mp4\n", init.len())), "{playlist}");
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
        assert!(l.master_playlist("source.m3u8", file.len() as u64).contains("RESOLUTION=640x360"));
    }

    #[test]
    fn a_plain_or_broken_mp4_has_no_layout() {
        let init = init();
        let plain = [bx(b"ftyp", b"isom\0\0\0\0isom"), bx(b"mdat", &[1; 64]), bx(b"moov", &init[24..])].concat();
        assert_eq!(layout_of(&plain, 2.0), None, "one mdat, no fragments");
        let good = [init.clone(), fragment(25, 40)].concat();
        assert!(layout_of(&good, 2.0).is_some());
        assert_eq!(layout_of(&good[..good.len() - 10], 2.0), None, "cut short");
        let mut lying = good.clone();
        let at = init.len();
        lying[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(layout_of(&lying, 2.0), None, "a box longer than the file");
        assert_eq!(layout_of(&init, 2.0), None, "no fragment at all");
        assert_eq!(layout_of(b"not an mp4 at all", 2.0), None);
    }
}
