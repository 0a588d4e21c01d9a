//! Pictures re-encoded for a device (`/render`): the format and width `crate::adapt::plan`
//! picks, made on first request and kept in the volume.
//!
//! Renders live in the hidden directory `.renders` (not listed in the mount, in galleries
//! or in `?list`), in a directory named after the source's inode that holds `source` (the
//! source's content fingerprint and display size, `HEX WxH`) and the renders, named
//! `w960.avif`, `w960-low.webp` (Save-Data quality), `w480.jpeg`. A directory whose
//! `source` no longer matches the picture (it was replaced or rewritten) is not used: the
//! next render replaces it. They are ordinary files, so their chunks are deduplicated,
//! encrypted and counted like any other, and each is written under a temporary name and
//! renamed into place, so a crash never leaves half a render under a render's name.
//!
//! JPEG is encoded in-process; WebP (libwebp) and AVIF (libaom) by ffmpeg, fed the raw
//! pixels over a pipe. AVIF's muxer needs a seekable output, so ffmpeg writes it into an
//! anonymous in-memory file of this process: no plaintext reaches a disk.

use super::{content_key, random_suffix, write_file};
use crate::adapt::ImageFormat;
use crate::ids::Ino;
use crate::media::{self, MediaError};
use crate::volume::{Kind, RenameMode, Volume};
use image::RgbImage;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The hidden directory of renders, and its key in `meta`.
pub const RENDERS_NAME: &[u8] = b".renders";
const RENDERS_KEY: &[u8] = b"renders-dir";
/// The file in a render directory that names the source's fingerprint and size.
const SOURCE_FILE: &str = "source";
/// Largest source read whole to be rendered (as for thumbnails).
pub const MAX_SOURCE_BYTES: u64 = 256 << 20;
/// Marks the temporary names renders are written under.
const TEMP_MARK: &str = ".tmp-";
/// A temporary file or directory older than this was left by a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// How long one ffmpeg encode may run.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest encoded render accepted from ffmpeg.
const MAX_RENDER_BYTES: u64 = 64 << 20;

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed.
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    /// The file is not a picture this server can decode (415).
    #[error("{0}")]
    NotAPicture(String),
    /// The picture's data is broken (422).
    #[error("{0}")]
    Corrupt(String),
    /// The picture is over the decoding limits (413).
    #[error("{0}")]
    TooLarge(String),
    /// The encoder failed (500), or ffmpeg is missing.
    #[error("{0}")]
    Encode(String),
}

/// Result of render operations.
pub type Result<T> = std::result::Result<T, Error>;

impl From<MediaError> for Error {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Unsupported(why) => Self::NotAPicture(format!("not a picture this server decodes: {why}")),
            e @ MediaError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            MediaError::Decode(why) if why.starts_with("decoder limit") => Self::TooLarge(why),
            MediaError::Decode(why) => Self::Corrupt(format!("the picture is damaged: {why}")),
            e @ (MediaError::FfmpegMissing | MediaError::Ffmpeg(_) | MediaError::Timeout | MediaError::Stopped) => {
                Self::Encode(format!("encoding failed: {e}"))
            }
        }
    }
}

/// Encoder quality: full, or lower for a client saving data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// What a screen shows without visible loss.
    Normal,
    /// `Save-Data`: visibly softer, about half the bytes.
    Low,
}

/// The render a device asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Its format.
    pub format: ImageFormat,
    /// Its width, device pixels; the source's own when that is narrower.
    pub width: u32,
    /// Its quality.
    pub quality: Quality,
}

/// The encoder setting of `format` at `quality`: JPEG and WebP quality (0-100, higher is
/// better), AVIF CRF (0-63, lower is better).
#[must_use]
pub fn setting(format: ImageFormat, quality: Quality) -> u8 {
    match (format, quality) {
        (ImageFormat::Jpeg, Quality::Normal) => 82,
        (ImageFormat::Jpeg, Quality::Low) => 55,
        (ImageFormat::Webp, Quality::Normal) => 80,
        (ImageFormat::Webp, Quality::Low) => 50,
        (ImageFormat::Avif, Quality::Normal) => 30,
        (ImageFormat::Avif, Quality::Low) => 42,
    }
}

/// The file name of a render `width` pixels wide.
#[must_use]
pub fn file_name(format: ImageFormat, width: u32, quality: Quality) -> String {
    let low = if quality == Quality::Low { "-low" } else { "" };
    format!("w{width}{low}.{}", format.name())
}

/// A render stored in the volume.
#[derive(Debug, Clone)]
pub struct Render {
    /// Its file.
    pub ino: Ino,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written.
    pub mtime: SystemTime,
    /// Its format.
    pub format: ImageFormat,
    /// Its width and height in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// Its quality.
    pub quality: Quality,
    /// The content fingerprint (hex) of the source it was made from.
    pub stamp: String,
}

impl Render {
    /// A strong validator naming everything the bytes depend on: the source's content,
    /// the format, the width and the encoder setting.
    #[must_use]
    pub fn etag(&self) -> String {
        etag(&self.stamp, self.format, self.width, self.quality)
    }
}

/// The ETag of a render of the source with fingerprint `stamp`.
#[must_use]
pub fn etag(stamp: &str, format: ImageFormat, width: u32, quality: Quality) -> String {
    format!("\"{stamp}-w{width}-q{}.{}\"", setting(format, quality), format.name())
}

/// Registers the renders directory on `vol`, so it is hidden from every listing: call
/// when the volume opens.
pub fn register(vol: &Volume) {
    vol.register_hidden(RENDERS_NAME, RENDERS_KEY);
}

/// A source's render directory, current for its content.
struct Current {
    dir: Ino,
    width: u32,
    height: u32,
}

/// The render of `source` that `want` names, if one is stored for the source as it is now.
/// Reads no pixels: answering from the cache costs a few lookups.
pub fn find(vol: &Volume, source: Ino, want: Want) -> Result<Option<Render>> {
    let stamp = content_key(vol, source)?;
    match current(vol, source, &stamp)? {
        Some(cur) => find_in(vol, &cur, &stamp, want),
        None => Ok(None),
    }
}

/// The render of `source` that `want` names, made and stored if it is missing. Blocks
/// for as long as decoding and encoding take; callers make one render of a source at a time.
pub fn make(vol: &Volume, source: Ino, want: Want) -> Result<Render> {
    let attr = vol.getattr(source)?;
    if attr.inode.kind != Kind::File {
        return Err(Error::NotAPicture("not a regular file".into()));
    }
    // Taken before the bytes are read: a picture changed meanwhile gets a render that is
    // not served again.
    let stamp = content_key(vol, source)?;
    let cur = current(vol, source, &stamp)?;
    if let Some(cur) = &cur {
        if let Some(r) = find_in(vol, cur, &stamp, want)? {
            return Ok(r);
        }
    }
    // What the bytes say, not the name: an upload's name may lie.
    let head = vol.read(source, 0, 512)?;
    let media_type = media::media_type("", &head);
    if media::kind_of(&media_type) != media::Kind::Image {
        return Err(Error::NotAPicture(format!("not a picture ({media_type})")));
    }
    if attr.inode.size > MAX_SOURCE_BYTES {
        return Err(Error::TooLarge(format!("pictures over {} MiB are not rendered", MAX_SOURCE_BYTES >> 20)));
    }
    let bytes = read_all(vol, source, attr.inode.size)?;
    let (source_w, source_h) = media::image_dimensions(&bytes)?;
    let width = want.width.clamp(1, source_w);
    let rgb = media::image_scaled_to_width(&bytes, width)?;
    drop(bytes);
    let encoded = encode(&rgb, want.format, want.quality)?;

    let cur = match cur {
        Some(cur) => cur,
        None => fresh_dir(vol, source, &stamp, source_w, source_h)?,
    };
    let name = file_name(want.format, width, want.quality);
    let temp = format!("{name}{TEMP_MARK}{}", random_suffix());
    write_file(vol, cur.dir, &temp, &encoded)?;
    if let Err(e) = vol.rename(cur.dir, temp.as_bytes(), cur.dir, name.as_bytes(), RenameMode::Replace) {
        let _ = vol.unlink(cur.dir, temp.as_bytes());
        return Err(e.into());
    }
    tracing::info!(source = %source, name, bytes = encoded.len(), "picture rendered");
    find_in(vol, &cur, &stamp, want)?.ok_or(Error::Volume(crate::volume::Error::NotFound))
}

/// Removes the renders of pictures that are gone or changed, and the temporary files and
/// directories a crash left behind; returns how many entries went.
pub fn sweep(vol: &Volume) -> Result<usize> {
    let Some(root) = vol.hidden_dir(RENDERS_NAME)? else { return Ok(0) };
    let old = |ino: Ino| {
        vol.getattr(ino).is_ok_and(|a| SystemTime::from(a.inode.mtime).elapsed().is_ok_and(|age| age > STALE_TEMP))
    };
    let mut removed = 0;
    for e in vol.dir_entries(root)? {
        let name = String::from_utf8_lossy(&e.name).into_owned();
        let gone = match name.parse::<u64>() {
            Ok(ino) => {
                let source = Ino(ino);
                let live = vol.getattr(source).is_ok_and(|a| a.inode.kind == Kind::File && a.inode.nlink > 0);
                !live || current(vol, source, &content_key(vol, source)?)?.is_none()
            }
            Err(_) => name.contains(".old-") || old(e.ino),
        };
        if gone {
            vol.remove_tree(root, &e.name)?;
            removed += 1;
            continue;
        }
        if name.parse::<u64>().is_ok() {
            for f in vol.dir_entries(e.ino)? {
                if String::from_utf8_lossy(&f.name).contains(TEMP_MARK) && old(f.ino) {
                    vol.unlink(e.ino, &f.name)?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// The render `want` in `cur`, if stored.
fn find_in(vol: &Volume, cur: &Current, stamp: &str, want: Want) -> Result<Option<Render>> {
    let width = want.width.clamp(1, cur.width);
    let name = file_name(want.format, width, want.quality);
    match vol.lookup(cur.dir, name.as_bytes()) {
        Ok(a) if a.inode.kind == Kind::File => Ok(Some(Render {
            ino: a.ino,
            size: a.inode.size,
            mtime: a.inode.mtime.into(),
            format: want.format,
            width,
            height: scaled_height(cur.width, cur.height, width),
            quality: want.quality,
            stamp: stamp.to_string(),
        })),
        Ok(_) | Err(crate::volume::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The height of a `w`x`h` picture scaled to `width`, as `media::image_scaled_to_width` makes it.
fn scaled_height(w: u32, h: u32, width: u32) -> u32 {
    ((u64::from(h) * u64::from(width) + u64::from(w) / 2) / u64::from(w.max(1))).max(1) as u32
}

/// The render directory of `source`, if it was made from the source as it is now.
fn current(vol: &Volume, source: Ino, stamp: &str) -> Result<Option<Current>> {
    let Some(root) = vol.hidden_dir(RENDERS_NAME)? else { return Ok(None) };
    let dir = match vol.lookup(root, source.0.to_string().as_bytes()) {
        Ok(a) => a.ino,
        Err(crate::volume::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let record = match vol.lookup(dir, SOURCE_FILE.as_bytes()) {
        Ok(a) => vol.read(a.ino, 0, 256)?.to_vec(),
        Err(crate::volume::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(parse_source(&record).filter(|(s, _, _)| s == stamp).map(|(_, width, height)| Current { dir, width, height }))
}

/// `HEX WxH`: the fingerprint and display size of a render directory's source.
fn parse_source(record: &[u8]) -> Option<(String, u32, u32)> {
    let text = std::str::from_utf8(record).ok()?;
    let (stamp, size) = text.trim().split_once(' ')?;
    let (w, h) = size.split_once('x')?;
    let (w, h) = (w.parse().ok().filter(|w| *w > 0)?, h.parse().ok().filter(|h| *h > 0)?);
    Some((stamp.to_string(), w, h))
}

/// Makes `source`'s render directory anew for `stamp`, replacing a stale one.
fn fresh_dir(vol: &Volume, source: Ino, stamp: &str, width: u32, height: u32) -> Result<Current> {
    let root = vol.hidden_dir_or_create(RENDERS_NAME)?;
    let name = source.0.to_string();
    let staging = format!("{name}.new-{}", random_suffix());
    let dir = vol.create(root, staging.as_bytes(), Kind::Dir, 0o700, 0, 0, 0)?.ino;
    let placed = write_file(vol, dir, SOURCE_FILE, format!("{stamp} {width}x{height}").as_bytes()).and_then(|_| {
        let old = format!("{name}.old-{}", random_suffix());
        let had_old = match vol.rename(root, name.as_bytes(), root, old.as_bytes(), RenameMode::NoReplace) {
            Ok(()) => true,
            Err(crate::volume::Error::NotFound) => false,
            Err(e) => return Err(e),
        };
        vol.rename(root, staging.as_bytes(), root, name.as_bytes(), RenameMode::NoReplace)?;
        if had_old {
            vol.remove_tree(root, old.as_bytes())?;
        }
        Ok(())
    });
    if let Err(e) = placed {
        let _ = vol.remove_tree(root, staging.as_bytes());
        return Err(e.into());
    }
    Ok(Current { dir, width, height })
}

/// The whole of file `ino`, `size` bytes.
fn read_all(vol: &Volume, ino: Ino, size: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let want = (size - out.len() as u64).min(8 << 20) as u32;
        let piece = vol.read(ino, out.len() as u64, want)?;
        if piece.is_empty() {
            break;
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// `rgb` encoded as `format` at `quality`.
pub fn encode(rgb: &RgbImage, format: ImageFormat, quality: Quality) -> Result<Vec<u8>> {
    let q = setting(format, quality);
    match format {
        ImageFormat::Jpeg => {
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
                .encode_image(rgb)
                .map_err(|e| Error::Encode(format!("JPEG encoding failed: {e}")))?;
            Ok(out)
        }
        ImageFormat::Webp => {
            let args = ["-c:v", "libwebp", "-quality", &q.to_string(), "-f", "webp", "pipe:1"];
            Ok(ffmpeg_encode(rgb, &args)?)
        }
        ImageFormat::Avif => encode_avif(rgb, q),
    }
}

/// AVIF by libaom in its real-time mode at its fastest setting: a 1920 px picture in about
/// 0.4 s on two cores, about ten per cent larger than the best-compression mode, which
/// takes three times as long.
fn encode_avif(rgb: &RgbImage, crf: u8) -> Result<Vec<u8>> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    // The muxer seeks back to write sizes: an anonymous in-memory file that ffmpeg opens
    // by its /proc name (close-on-exec, so no other child inherits it).
    let memfd = nix::sys::memfd::memfd_create("nanofs-render", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::Encode(format!("memfd_create: {e}")))?;
    let mut file = std::fs::File::from(memfd);
    let out = format!("file:/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
    let crf = crf.to_string();
    let args = [
        "-c:v",
        "libaom-av1",
        "-still-picture",
        "1",
        "-usage",
        "realtime",
        "-cpu-used",
        "8",
        "-crf",
        &crf,
        "-pix_fmt",
        "yuv420p",
        // What the conversion from RGB does, so decoders convert back the same way.
        "-colorspace",
        "smpte170m",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "iec61966-2-1",
        "-color_range",
        "tv",
        "-f",
        "avif",
        "-y",
        &out,
    ];
    ffmpeg_encode(rgb, &args)?;
    let len = file.metadata().map_err(|e| Error::Encode(format!("reading the AVIF: {e}")))?.len();
    if len == 0 || len > MAX_RENDER_BYTES {
        return Err(Error::Encode(format!("ffmpeg wrote an AVIF of {len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| Error::Encode(format!("reading the AVIF: {e}")))?;
    Ok(bytes)
}

/// Runs ffmpeg on the raw pixels of `rgb` (on its standard input) with output `args`;
/// returns its standard output.
fn ffmpeg_encode(rgb: &RgbImage, args: &[&str]) -> Result<Vec<u8>> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-protocol_whitelist", "pipe", "-f", "rawvideo", "-pix_fmt", "rgb24"])
        .args(["-s", &format!("{}x{}", rgb.width(), rgb.height()), "-i", "pipe:0", "-frames:v", "1"])
        .args(args);
    let finished = media::run_with_input(cmd, rgb.as_raw().clone(), Instant::now() + ENCODE_TIMEOUT)?;
    if !finished.status.success() {
        return Err(media::failure("ffmpeg", &finished).into());
    }
    Ok(finished.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]))
    }

    #[test]
    fn names_etags_and_settings_tell_every_render_apart() {
        assert_eq!(file_name(ImageFormat::Avif, 960, Quality::Normal), "w960.avif");
        assert_eq!(file_name(ImageFormat::Webp, 480, Quality::Low), "w480-low.webp");
        assert_eq!(file_name(ImageFormat::Jpeg, 1999, Quality::Normal), "w1999.jpeg");
        let a = etag("ab12", ImageFormat::Avif, 960, Quality::Normal);
        assert_eq!(a, "\"ab12-w960-q30.avif\"");
        assert_ne!(a, etag("ab12", ImageFormat::Avif, 960, Quality::Low));
        assert_ne!(a, etag("ab13", ImageFormat::Avif, 960, Quality::Normal));
        assert_ne!(a, etag("ab12", ImageFormat::Webp, 960, Quality::Normal));
        // Save-Data asks less of every encoder (AVIF's CRF grows as quality falls).
        assert!(setting(ImageFormat::Jpeg, Quality::Low) < setting(ImageFormat::Jpeg, Quality::Normal));
        assert!(setting(ImageFormat::Webp, Quality::Low) < setting(ImageFormat::Webp, Quality::Normal));
        assert!(setting(ImageFormat::Avif, Quality::Low) > setting(ImageFormat::Avif, Quality::Normal));
    }

    #[test]
    fn the_source_record_is_read_back_and_garbage_is_refused() {
        assert_eq!(parse_source(b"ff00 4000x3000"), Some(("ff00".into(), 4000, 3000)));
        assert_eq!(parse_source(b"ff00 0x3000"), None);
        assert_eq!(parse_source(b"ff00"), None);
        assert_eq!(parse_source(b"\xff\xfe"), None);
        assert_eq!(scaled_height(4000, 3000, 960), 720);
        assert_eq!(scaled_height(3000, 4000, 1), 1);
    }

    #[test]
    fn each_format_encodes_to_a_picture_of_the_asked_size() {
        if !media::ffmpeg_available() {
            eprintln!("skipped: no ffmpeg");
            return;
        }
        // Odd sizes: 4:2:0 chroma must not cost a row or column.
        let rgb = gradient(333, 201);
        for format in [ImageFormat::Jpeg, ImageFormat::Webp, ImageFormat::Avif] {
            let bytes = encode(&rgb, format, Quality::Normal).unwrap();
            assert_eq!(media::media_type("", &bytes), format.media_type(), "{format:?}");
            let low = encode(&rgb, format, Quality::Low).unwrap();
            assert!(low.len() < bytes.len(), "{format:?}: low {} vs {}", low.len(), bytes.len());
            if format != ImageFormat::Avif {
                assert_eq!(media::image_dimensions(&bytes).unwrap(), (333, 201), "{format:?}");
            }
        }
    }
}
