//! Media facts and previews for the shared photo/video gallery.
//!
//! Images are handled in-process with the `image` crate (header-only dimension reads, bounded
//! decoding for thumbnails). Video and audio go through the `ffprobe`/`ffmpeg` command-line tools,
//! which read either a local file or an http(s) URL (ffmpeg issues Range requests, so a remote
//! file need not be downloaded in full).
//!
//! Every thumbnail carries a [BlurHash](https://blurha.sh) placeholder so clients can paint a
//! blurred preview before the JPEG arrives.
//!
//! Everything here blocks (CPU-bound decoding, waiting on child processes for up to 30 s); call it
//! from a blocking thread, e.g. `tokio::task::spawn_blocking`, not from an async task.

use std::io::{self, Cursor, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};
use serde::Deserialize;

/// Images with more pixels than this are refused before any pixel is decoded.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// Upper bound on what a decoder may allocate; 100 MP of 8-bit RGBA is 400 MB, so this admits every
/// 8-bit image under [`MAX_IMAGE_PIXELS`] while still catching 16-bit monsters.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// JPEG quality of thumbnails and posters: visually clean at thumbnail sizes, about half the bytes of 95.
const JPEG_QUALITY: u8 = 82;

/// BlurHash components (x, y): 4x3 suits the usual landscape photo and encodes to 28 characters.
const BLURHASH_COMPONENTS: (u32, u32) = (4, 3);

/// BlurHash only captures low frequencies, so computing it from a tiny image loses nothing and is cheap.
const BLURHASH_SOURCE_PX: u32 = 32;

/// How long ffprobe/ffmpeg may run before being killed.
const FFMPEG_TIMEOUT: Duration = Duration::from_secs(30);

/// Caps on captured child output, so a misbehaving tool cannot make us buffer without bound.
const MAX_STDOUT: u64 = 64 * 1024 * 1024;
const MAX_STDERR: u64 = 64 * 1024;

/// Demuxers ffmpeg may use on our inputs. Uploaded files are untrusted and ffmpeg picks the demuxer
/// by content, so without this a file named `x.mp4` holding an HLS playlist or an ffconcat script
/// would make ffmpeg fetch or read other resources (the classic ffmpeg SSRF / local-file trick).
/// `image2` and the `*_pipe` image demuxers are listed because ffmpeg probes still images with them.
const FORMAT_WHITELIST: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,asf,flv,mpegts,mpeg,mpegvideo,m4v,h264,hevc,\
     ogg,mp3,wav,w64,flac,aac,aiff,caf,ac3,eac3,dts,truehd,amr,ape,wv,tta,mpc,mpc8,dsf,au,mxf,dv,rm,nut,ivf,\
     gif,image2,jpeg_pipe,png_pipe,webp_pipe,bmp_pipe,tiff_pipe,gif_pipe,mjpeg";

/// Everything that can go wrong while extracting media facts or previews.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The input is in a format this module cannot handle (or not a media file at all).
    #[error("unsupported media: {0}")]
    Unsupported(String),
    /// The image is larger than we are willing to decode: over [`MAX_IMAGE_PIXELS`], or (for
    /// 16-bit images) over the 512 MiB decode budget. Refused after reading only the header.
    #[error("image is {width}x{height}, too large to decode (limit {max_pixels} pixels, 512 MiB decoded)")]
    TooLarge {
        /// Width claimed by the image header.
        width: u32,
        /// Height claimed by the image header.
        height: u32,
        /// The limit that was exceeded.
        max_pixels: u64,
    },
    /// The input claims a supported format but its data is broken.
    #[error("cannot decode media: {0}")]
    Decode(String),
    /// `ffprobe` or `ffmpeg` is not installed (not on PATH).
    #[error("ffprobe/ffmpeg is not installed")]
    FfmpegMissing,
    /// `ffprobe` or `ffmpeg` failed; carries its error output.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// `ffprobe` or `ffmpeg` ran past its deadline and was killed.
    #[error("ffmpeg timed out")]
    Timeout,
    /// The run was stopped on request (`Watch::stop`) and ffmpeg killed.
    #[error("stopped")]
    Stopped,
}

/// What kind of preview applies to a media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Still image: dimensions and thumbnail in-process ([`image_dimensions`], [`image_thumbnail`]).
    Image,
    /// Video: facts via [`probe_av`], poster frame via [`video_poster`].
    Video,
    /// Audio: duration via [`probe_av`]; no picture.
    Audio,
    /// Anything else: no preview.
    Other,
}

/// Facts about a media file, as stored alongside it and served to clients.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MediaInfo {
    /// Display width in pixels (after EXIF orientation / rotation metadata).
    pub width: Option<u32>,
    /// Display height in pixels (after EXIF orientation / rotation metadata).
    pub height: Option<u32>,
    /// Playing time in seconds, for video and audio.
    pub duration: Option<f64>,
    /// BlurHash of the picture, for a blurred placeholder.
    pub placeholder: Option<String>,
}

/// A JPEG preview and its facts.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The encoded JPEG.
    pub jpeg: Vec<u8>,
    /// Width of the JPEG in pixels.
    pub width: u32,
    /// Height of the JPEG in pixels.
    pub height: u32,
    /// BlurHash (4x3 components) of the picture.
    pub placeholder: String,
}

impl std::fmt::Debug for Thumbnail {
    // The JPEG bytes are noise in logs; their length is what matters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumbnail")
            .field("jpeg_len", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("placeholder", &self.placeholder)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Media type sniffing
// ---------------------------------------------------------------------------------------------

/// Media type of a file from its name and first bytes.
///
/// Magic numbers win over the extension for the common image/video/audio formats (jpeg, png,
/// gif, webp, bmp, tiff, avif/heic, mp4/mov/m4a, webm/mkv, ogg, mp3, wav, flac, pdf), because
/// names of uploads lie. Otherwise the extension decides via `mime_guess`, and failing that the
/// answer is `application/octet-stream`. `head` should be the first few hundred bytes (64 are
/// enough for everything but some ftyp brand lists); shorter is fine.
pub fn media_type(name: &str, head: &[u8]) -> String {
    let by_name = mime_guess::from_path(name).first().map(|m| m.essence_str().to_owned());
    if let Some(sniffed) = sniff(head, by_name.as_deref()) {
        return sniffed.to_owned();
    }
    by_name.unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// Media type from magic numbers alone; `by_name` only refines weak or container-level matches.
fn sniff(head: &[u8], by_name: Option<&str>) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);

    if at(0, b"\xFF\xD8\xFF") {
        return Some("image/jpeg");
    }
    if at(0, b"\x89PNG\r\n\x1A\n") {
        return Some("image/png");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return Some("image/gif");
    }
    if at(0, b"RIFF") {
        if at(8, b"WEBP") {
            return Some("image/webp");
        }
        if at(8, b"WAVE") {
            return Some("audio/wav");
        }
        if at(8, b"AVI ") {
            return Some("video/x-msvideo");
        }
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        // Camera raw formats (DNG, CR2, NEF, ARW...) are TIFF containers; keep their specific type.
        return Some(match by_name {
            Some("image/x-adobe-dng") => "image/x-adobe-dng",
            Some("image/x-canon-cr2") => "image/x-canon-cr2",
            Some("image/x-nikon-nef") => "image/x-nikon-nef",
            Some("image/x-sony-arw") => "image/x-sony-arw",
            _ => "image/tiff",
        });
    }
    if is_bmp(head) {
        return Some("image/bmp");
    }
    if at(4, b"ftyp") {
        return Some(sniff_ftyp(head));
    }
    // QuickTime files from before ftyp existed start straight with a movie or data atom.
    if at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") {
        return Some("video/quicktime");
    }
    if at(0, b"\x1A\x45\xDF\xA3") {
        // EBML; the DocType element near the start says "webm" or "matroska".
        let window = &head[..head.len().min(64)];
        let is_webm = window.windows(4).any(|w| w == b"webm");
        return Some(if is_webm { "video/webm" } else { "video/x-matroska" });
    }
    if at(0, b"OggS") {
        // The first packet of the first logical stream names the codec.
        if at(28, b"\x80theora") {
            return Some("video/ogg");
        }
        return Some("audio/ogg");
    }
    if at(0, b"fLaC") {
        return Some("audio/flac");
    }
    if at(0, b"ID3") {
        return Some("audio/mpeg");
    }
    if at(0, b"%PDF-") {
        return Some("application/pdf");
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return Some("audio/aiff");
    }
    // MPEG audio frame sync is only 11 bits, so trust it only when the name does not say otherwise.
    let name_allows_audio = match by_name {
        None => true,
        Some(t) => t.starts_with("audio/") || t == "application/octet-stream",
    };
    if name_allows_audio {
        if let Some(t) = sniff_mpeg_audio(head) {
            return Some(t);
        }
    }
    None
}

/// BMP has a weak 2-byte magic, so also check the reserved fields and the DIB header size.
fn is_bmp(head: &[u8]) -> bool {
    if head.get(0..2) != Some(b"BM") {
        return false;
    }
    let reserved_zero = head.get(6..10) == Some(&[0, 0, 0, 0]);
    let dib_size = head.get(14..18).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    reserved_zero && matches!(dib_size, Some(12 | 16 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// Classify an ISO base media file (MP4, MOV, HEIF, AVIF...) by its ftyp brands.
fn sniff_ftyp(head: &[u8]) -> &'static str {
    let brand = |offset: usize| head.get(offset..offset + 4);
    let major = brand(8).unwrap_or(b"    ");
    // Compatible brands follow the minor version, up to the end of the ftyp box (or of `head`).
    let box_len = head.get(0..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let end = box_len.min(head.len());
    let compatible: Vec<&[u8]> = (16..end.saturating_sub(3)).step_by(4).filter_map(brand).collect();
    let has = |wanted: &[&[u8]]| wanted.contains(&major) || compatible.iter().any(|b| wanted.contains(b));

    match major {
        b"qt  " => "video/quicktime",
        b"M4A " | b"M4B " | b"M4P " => "audio/mp4",
        b"crx " => "image/x-canon-cr3",
        b if b.starts_with(b"3g2") => "video/3gpp2",
        b if b.starts_with(b"3g") => "video/3gpp",
        _ if has(&[b"avif", b"avis"]) => "image/avif",
        _ if has(&[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"]) => "image/heic",
        _ if has(&[b"mif1", b"msf1"]) => "image/heif",
        _ => "video/mp4",
    }
}

/// MPEG audio (MP3 and friends) or ADTS AAC from a bare frame header.
fn sniff_mpeg_audio(head: &[u8]) -> Option<&'static str> {
    let [b0, b1, b2, ..] = *head else { return None };
    if b0 != 0xFF || b1 & 0xE0 != 0xE0 {
        return None;
    }
    let version = (b1 >> 3) & 0b11;
    let layer = (b1 >> 1) & 0b11;
    if layer == 0 {
        // ADTS: MPEG version bit then layer 00; sampling frequency index 13..15 is reserved.
        let freq_index = (b2 >> 2) & 0b1111;
        return (b1 & 0xF6 == 0xF0 && freq_index < 13).then_some("audio/aac");
    }
    let bitrate_index = b2 >> 4;
    let rate_index = (b2 >> 2) & 0b11;
    let valid = version != 0b01 && bitrate_index != 0b1111 && rate_index != 0b11;
    valid.then_some("audio/mpeg")
}

/// What kind of preview applies to `media_type` (parameters such as `; charset=...` are ignored).
///
/// Every `image/*` type is [`Kind::Image`], even those the compiled-in codecs cannot decode (HEIC,
/// AVIF, SVG, camera raw); [`image_thumbnail`] answers [`MediaError::Unsupported`] for those, and a
/// caller may then try [`video_poster`], since ffmpeg can decode some of them.
pub fn kind_of(media_type: &str) -> Kind {
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split('/').next() {
        Some("image") => Kind::Image,
        Some("video") => Kind::Video,
        Some("audio") => Kind::Audio,
        _ => Kind::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// A decoder for `bytes` with our limits set, the format taken from the content.
fn image_decoder(bytes: &[u8]) -> Result<impl ImageDecoder + '_, MediaError> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| MediaError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(MediaError::Unsupported("not a recognised image format".into()));
    }
    reader.limits(decode_limits());
    reader.into_decoder().map_err(image_error)
}

fn decode_limits() -> Limits {
    // `Limits` is non-exhaustive, so start from the defaults.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

fn image_error(e: ImageError) -> MediaError {
    match e {
        ImageError::Unsupported(e) => MediaError::Unsupported(e.to_string()),
        ImageError::Limits(e) => MediaError::Decode(format!("decoder limit: {e}")),
        other => MediaError::Decode(other.to_string()),
    }
}

/// EXIF orientations 5-8 turn the picture by a quarter, swapping width and height.
fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Display dimensions (width, height) of an image, reading only its header.
///
/// EXIF orientations 5-8 (a quarter turn) swap width and height, so the answer matches what a
/// viewer shows. A missing or unreadable orientation counts as "as stored".
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    let mut decoder = image_decoder(bytes)?;
    let (width, height) = decoder.dimensions();
    // Broken EXIF must not make an otherwise fine image fail.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok(if swaps_axes(orientation) { (height, width) } else { (width, height) })
}

/// Largest size that fits in `max_px` x `max_px` with the aspect ratio kept; never larger than the input.
fn fit_within(width: u32, height: u32, max_px: u32) -> (u32, u32) {
    let max_px = max_px.max(1);
    if width <= max_px && height <= max_px {
        return (width, height);
    }
    let (w, h, m) = (u64::from(width), u64::from(height), u64::from(max_px));
    // Rounded integer scaling: 1200x800 into 256 gives 256x171. Results are <= max_px, so they fit in u32.
    let scale = |side: u64, long: u64| ((side * m + long / 2) / long).clamp(1, m) as u32;
    if width >= height {
        (max_px, scale(h, w))
    } else {
        (scale(w, h), max_px)
    }
}

/// A JPEG thumbnail fitting in `max_px` x `max_px`, plus a BlurHash placeholder.
///
/// The aspect ratio is kept and images are never upscaled. EXIF orientation is applied, and
/// transparency is flattened onto white (JPEG has no alpha; black would hide dark logos).
///
/// Decoding is bounded: images over [`MAX_IMAGE_PIXELS`] are refused with
/// [`MediaError::TooLarge`] after reading only the header.
pub fn image_thumbnail(bytes: &[u8], max_px: u32) -> Result<Thumbnail, MediaError> {
    let rgb = decode_upright(bytes, |w, h| fit_within(w, h, max_px))?;
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY).encode_image(&rgb).map_err(image_error)?;
    let placeholder = blurhash_of(&rgb)?;
    Ok(Thumbnail { jpeg, width: rgb.width(), height: rgb.height(), placeholder })
}

/// A picture `width` pixels wide (at most its own width: never upscaled), aspect ratio
/// kept, EXIF orientation applied and transparency flattened onto white; bounded like
/// [`image_thumbnail`].
pub fn image_scaled_to_width(bytes: &[u8], width: u32) -> Result<RgbImage, MediaError> {
    decode_upright(bytes, |w, h| {
        let target = width.clamp(1, w);
        // Rounded; the result is at most `h`, so it fits in u32.
        let height = ((u64::from(h) * u64::from(target) + u64::from(w) / 2) / u64::from(w)).max(1) as u32;
        (target, height)
    })
}

/// Decodes `bytes` within the limits, scales to the display size `size` picks from the
/// display dimensions, and turns the result upright.
fn decode_upright(bytes: &[u8], size: impl FnOnce(u32, u32) -> (u32, u32)) -> Result<RgbImage, MediaError> {
    let mut decoder = image_decoder(bytes)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(MediaError::TooLarge { width, height, max_pixels: MAX_IMAGE_PIXELS });
    }
    // The per-format decoders only check width/height limits; account for the output buffer here,
    // as `ImageReader::decode` would.
    let mut limits = decode_limits();
    limits.reserve(decoder.total_bytes()).map_err(|_| MediaError::TooLarge {
        width,
        height,
        max_pixels: MAX_IMAGE_PIXELS,
    })?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(image_error)?;

    // Scale first, in stored orientation, then rotate the small result: same pixels, far less work.
    let swap = swaps_axes(orientation);
    let (display_w, display_h) = if swap { (height, width) } else { (width, height) };
    let (target_w, target_h) = size(display_w, display_h);
    let (stored_w, stored_h) = if swap { (target_h, target_w) } else { (target_w, target_h) };
    let mut small =
        if (stored_w, stored_h) == (width, height) { image } else { image.thumbnail_exact(stored_w, stored_h) };
    small.apply_orientation(orientation);
    Ok(flatten_onto_white(&small))
}

/// RGB pixels of `image`, with any alpha composited over white.
fn flatten_onto_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        // Rounded c*a + 255*(1-a); the result is at most 255, so the cast is exact.
        let over_white = |c: u8| ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// BlurHash of an RGB image, computed from a copy at most [`BLURHASH_SOURCE_PX`] on a side.
fn blurhash_of(rgb: &RgbImage) -> Result<String, MediaError> {
    let (w, h) = fit_within(rgb.width(), rgb.height(), BLURHASH_SOURCE_PX);
    let tiny = image::imageops::thumbnail(rgb, w, h);
    let rgba = DynamicImage::ImageRgb8(tiny).into_rgba8();
    let (cx, cy) = BLURHASH_COMPONENTS;
    blurhash::encode(cx, cy, rgba.width(), rgba.height(), rgba.as_raw())
        .map_err(|e| MediaError::Decode(format!("blurhash: {e}")))
}

// ---------------------------------------------------------------------------------------------
// ffprobe / ffmpeg
// ---------------------------------------------------------------------------------------------

/// Whether `ffprobe` and `ffmpeg` are installed and runnable. Checked once per process.
pub fn ffmpeg_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let works = |program: &str| {
            let mut cmd = Command::new(program);
            cmd.arg("-version");
            let deadline = Instant::now() + Duration::from_secs(10);
            matches!(run_with_deadline(cmd, deadline), Ok(out) if out.status.success())
        };
        let available = works("ffprobe") && works("ffmpeg");
        if !available {
            tracing::info!("ffprobe/ffmpeg not found; video and audio previews are disabled");
        }
        available
    })
}

/// What a finished child process produced.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    stderr: String,
}

/// Run `cmd` to completion, killing it if it is still running at `deadline`.
pub(crate) fn run_with_deadline(cmd: Command, deadline: Instant) -> Result<Finished, MediaError> {
    run(cmd, None, deadline, &Watch::default())
}

/// What a long run reports and obeys: a stop flag (set from another thread, the child is
/// killed within 50 ms) and, when set, a function that gets each line of the child's
/// standard output as it comes (then `Finished::stdout` is empty).
#[derive(Default)]
pub(crate) struct Watch<'a> {
    pub(crate) stop: Option<&'a std::sync::atomic::AtomicBool>,
    pub(crate) on_line: Option<&'a dyn Fn(&str)>,
}

/// [`run_with_deadline`] with `input` written to the child's standard input.
pub(crate) fn run_with_input(cmd: Command, input: Vec<u8>, deadline: Instant) -> Result<Finished, MediaError> {
    run(cmd, Some(input), deadline, &Watch::default())
}

/// Run `cmd` to completion, killing it at `deadline` or when `watch.stop` is set.
pub(crate) fn run_watched(cmd: Command, deadline: Instant, watch: &Watch<'_>) -> Result<Finished, MediaError> {
    run(cmd, None, deadline, watch)
}

fn run(mut cmd: Command, input: Option<Vec<u8>>, deadline: Instant, watch: &Watch<'_>) -> Result<Finished, MediaError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let stdin = if input.is_some() { Stdio::piped() } else { Stdio::null() };
    let mut child = cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            MediaError::FfmpegMissing
        } else {
            MediaError::Ffmpeg(format!("cannot start {program}: {e}"))
        }
    })?;
    // Fed from a thread of its own: a child that stops reading early (or is killed) ends
    // the write with an error instead of a hang. Dropping the pipe is its end of file.
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        thread::spawn(move || {
            let _ = io::Write::write_all(&mut pipe, &input);
        });
    }
    // Drain both pipes on their own threads: a child blocked on a full pipe would never exit.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().map(|pipe| match watch.on_line {
        Some(_) => thread::spawn(move || {
            for line in io::BufRead::lines(io::BufReader::new(pipe)).map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
            Vec::new()
        }),
        None => drain(pipe, MAX_STDOUT),
    });
    let stderr = child.stderr.take().map(|pipe| drain(pipe, MAX_STDERR));
    let collect = |handle: Option<thread::JoinHandle<Vec<u8>>>| handle.and_then(|h| h.join().ok()).unwrap_or_default();
    let deliver = || {
        if let Some(f) = watch.on_line {
            lines.try_iter().for_each(|line| f(&line));
        }
    };
    let stopped = || watch.stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));

    let mut pause = Duration::from_millis(1);
    let status = loop {
        deliver();
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline || stopped() => {
                // Killing closes the pipes, which ends the drain threads.
                let _ = child.kill();
                let _ = child.wait();
                collect(stdout);
                collect(stderr);
                if stopped() {
                    return Err(MediaError::Stopped);
                }
                tracing::warn!(%program, "killed after running past its deadline");
                return Err(MediaError::Timeout);
            }
            Ok(None) => {
                thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(MediaError::Ffmpeg(format!("waiting for {program}: {e}")));
            }
        }
    };
    let stdout = collect(stdout);
    deliver();
    let stderr = String::from_utf8_lossy(&collect(stderr)).trim().to_owned();
    Ok(Finished { status, stdout, stderr })
}

/// Read up to `cap` bytes from `pipe` on a new thread, discarding (but consuming) the rest.
fn drain(mut pipe: impl Read + Send + 'static, cap: u64) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = pipe.by_ref().take(cap).read_to_end(&mut kept);
        let _ = io::copy(&mut pipe, &mut io::sink());
        kept
    })
}

/// The error to report for a failed run: the tool's own message when it gave one.
pub(crate) fn failure(program: &str, finished: &Finished) -> MediaError {
    if finished.stderr.is_empty() {
        MediaError::Ffmpeg(format!("{program} failed ({})", finished.status))
    } else {
        MediaError::Ffmpeg(finished.stderr.clone())
    }
}

/// Input options that confine ffmpeg to the one resource we name: URLs may only use the web
/// protocols, local paths only files, and only media demuxers are allowed (see [`FORMAT_WHITELIST`]).
/// Returns the options and the input argument to pass after them.
pub(crate) fn input_args(input: &str) -> Result<(Vec<String>, String), MediaError> {
    if input.is_empty() {
        return Err(MediaError::Unsupported("empty input".into()));
    }
    let lower = input.to_ascii_lowercase();
    let is_url = lower.starts_with("http://") || lower.starts_with("https://");
    let (protocols, target) = if is_url {
        ("http,https,tcp,tls", input.to_owned())
    } else {
        // "file:" keeps a path with a colon from being read as a protocol and one starting
        // with '-' from being read as an option.
        ("file", format!("file:{input}"))
    };
    let options = ["-protocol_whitelist", protocols, "-format_whitelist", FORMAT_WHITELIST];
    Ok((options.iter().map(|s| (*s).to_owned()).collect(), target))
}

/// The parts of `ffprobe -print_format json -show_format -show_streams` output we use.
#[derive(Debug, Default, Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    #[serde(default)]
    format: ProbeFormat,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    sample_aspect_ratio: Option<String>,
    #[serde(default)]
    disposition: ProbeDisposition,
    #[serde(default)]
    tags: ProbeTags,
    #[serde(default)]
    side_data_list: Vec<ProbeSideData>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeTags {
    /// Rotation as older ffmpeg versions (< 5) report it.
    rotate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeSideData {
    /// Rotation of a display matrix in degrees (counter-clockwise, so often negative).
    rotation: Option<f64>,
}

/// A duration string from ffprobe ("2.000000"; "N/A" when unknown).
fn parse_seconds(text: Option<&str>) -> Option<f64> {
    text?.trim().parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0)
}

impl ProbeStream {
    /// Rotation in degrees from the display matrix, else from the legacy `rotate` tag.
    fn rotation(&self) -> f64 {
        let from_matrix = self.side_data_list.iter().find_map(|s| s.rotation);
        let from_tag = || self.tags.rotate.as_deref().and_then(|r| r.trim().parse::<f64>().ok());
        from_matrix.or_else(from_tag).filter(|r| r.is_finite()).unwrap_or(0.0)
    }

    /// Display size: stored size stretched by a non-square sample aspect ratio, then rotated.
    fn display_size(&self) -> Option<(u32, u32)> {
        let (mut width, height) = (self.width.filter(|w| *w > 0)?, self.height.filter(|h| *h > 0)?);
        if let Some((num, den)) = self.sample_aspect_ratio.as_deref().and_then(|s| s.split_once(':')) {
            if let (Ok(num), Ok(den)) = (num.parse::<u64>(), den.parse::<u64>()) {
                // "0:1" means unknown; treat as square.
                if num > 0 && den > 0 && num != den {
                    let stretched = (u64::from(width) * num + den / 2) / den;
                    width = u32::try_from(stretched).unwrap_or(u32::MAX).max(1);
                }
            }
        }
        let quarter_turn = (self.rotation().round() as i64).rem_euclid(180) == 90;
        Some(if quarter_turn { (height, width) } else { (width, height) })
    }
}

/// Extract [`MediaInfo`] from ffprobe's JSON.
fn media_info_from_probe(json: &[u8]) -> Result<MediaInfo, MediaError> {
    let probe: Probe =
        serde_json::from_slice(json).map_err(|e| MediaError::Ffmpeg(format!("unreadable ffprobe output: {e}")))?;
    // Cover art in audio files shows up as a one-frame video stream; it is not the picture size.
    let video = probe
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .find_map(ProbeStream::display_size);
    let duration = parse_seconds(probe.format.duration.as_deref())
        .or_else(|| probe.streams.iter().filter_map(|s| parse_seconds(s.duration.as_deref())).reduce(f64::max));
    if video.is_none() && duration.is_none() && probe.streams.is_empty() {
        return Err(MediaError::Unsupported("no audio or video streams".into()));
    }
    Ok(MediaInfo { width: video.map(|v| v.0), height: video.map(|v| v.1), duration, placeholder: None })
}

/// Width, height and duration of a video or audio file.
///
/// `input` is a local path or an http(s) URL; ffprobe reads URLs with Range requests, so only the
/// parts it needs are fetched. Width and height are display sizes (rotation metadata of 90/270
/// degrees swaps them) and are `None` for audio (cover art is ignored). ffprobe is killed after
/// 30 s ([`MediaError::Timeout`]); its error output becomes [`MediaError::Ffmpeg`].
pub fn probe_av(input: &str) -> Result<MediaInfo, MediaError> {
    if !ffmpeg_available() {
        return Err(MediaError::FfmpegMissing);
    }
    let (options, target) = input_args(input)?;
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"])
        .args(&options)
        .args(["-print_format", "json", "-show_format", "-show_streams"])
        .arg(&target);
    let finished = run_with_deadline(cmd, Instant::now() + FFMPEG_TIMEOUT)?;
    if !finished.status.success() {
        return Err(failure("ffprobe", &finished));
    }
    media_info_from_probe(&finished.stdout)
}

/// Where to grab the poster frame: 10% in (skipping black lead-ins and fades), at most 3 s.
fn poster_time(duration: Option<f64>) -> f64 {
    duration.filter(|d| d.is_finite() && *d > 0.0).map_or(0.0, |d| (d * 0.1).min(3.0))
}

/// Run ffmpeg to grab one frame at `at` seconds as a JPEG fitting `max_px`; `None` if no frame came out.
fn grab_frame(
    options: &[String],
    target: &str,
    at: f64,
    max_px: u32,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, MediaError> {
    // Square the pixels first (anamorphic video), then shrink to fit without ever enlarging.
    // Quotes keep the commas inside min() from splitting the filter chain.
    let filter = format!(
        "scale=w='iw*sar':h=ih,setsar=1,\
         scale=w='min({max_px},iw)':h='min({max_px},ih)':force_original_aspect_ratio=decrease"
    );
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error"])
        .args(options)
        .args(["-ss", &format!("{at:.3}"), "-i", target])
        .args(["-frames:v", "1", "-an", "-sn", "-dn", "-vf", &filter])
        // Near-lossless intermediate: image_thumbnail re-encodes it at the final quality.
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "2", "-"]);
    let finished = run_with_deadline(cmd, deadline)?;
    if !finished.status.success() {
        return Err(failure("ffmpeg", &finished));
    }
    Ok(Some(finished.stdout).filter(|jpeg| !jpeg.is_empty()))
}

/// A poster frame of a video as a JPEG [`Thumbnail`] fitting in `max_px` x `max_px`.
///
/// The frame is taken at 10% of `duration`, capped at 3 s (at 0 when the duration is unknown),
/// and at 0 if seeking there yields no frame. Rotation metadata is applied by ffmpeg, the aspect
/// ratio is kept, and small videos are not enlarged. The whole operation is bounded by 30 s.
/// `input` is a local path or an http(s) URL, as for [`probe_av`].
pub fn video_poster(input: &str, duration: Option<f64>, max_px: u32) -> Result<Thumbnail, MediaError> {
    if !ffmpeg_available() {
        return Err(MediaError::FfmpegMissing);
    }
    let (options, target) = input_args(input)?;
    let max_px = max_px.max(1);
    let deadline = Instant::now() + FFMPEG_TIMEOUT;
    let at = poster_time(duration);
    let first = grab_frame(&options, &target, at, max_px, deadline);
    let frame = match first {
        Ok(Some(frame)) => frame,
        // A wrong duration or a sparse index can make the seek miss; the first frame always exists.
        Ok(None) | Err(MediaError::Ffmpeg(_)) if at > 0.0 => {
            tracing::debug!(input, at, "no frame at seek point; retrying at 0");
            grab_frame(&options, &target, 0.0, max_px, deadline)?
                .ok_or_else(|| MediaError::Ffmpeg("ffmpeg produced no frame".into()))?
        }
        Ok(None) => return Err(MediaError::Ffmpeg("ffmpeg produced no frame".into())),
        Err(e) => return Err(e),
    };
    image_thumbnail(&frame, max_px)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    // --- helpers -----------------------------------------------------------------------------

    /// A w x h RGB image: red in the top-left quadrant, blue elsewhere, so rotations are visible.
    fn quadrant_image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| if x < w / 2 && y < h / 2 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) })
    }

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode test image");
        out.into_inner()
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        encode(&DynamicImage::ImageRgb8(quadrant_image(w, h)), ImageFormat::Png)
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        encode(&DynamicImage::ImageRgb8(quadrant_image(w, h)), ImageFormat::Jpeg)
    }

    /// Insert an EXIF APP1 segment with the given orientation right after the JPEG's SOI marker.
    fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0*"); // big-endian TIFF header
        tiff.extend_from_slice(&8u32.to_be_bytes()); // offset of IFD0
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation tag
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]); // value padding
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// A valid tiny PNG whose IHDR (with a correct CRC) claims `w` x `h`.
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let mut bytes = png(4, 4);
        // Signature (8) + length (4) + "IHDR" (4), then width, height, 5 more bytes, then the CRC.
        assert_eq!(&bytes[12..16], b"IHDR");
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// A JPEG whose SOF0 header claims `w` x `h`.
    fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
        let mut bytes = jpeg(16, 16);
        let sof = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).expect("baseline JPEG has SOF0");
        // Marker (2), length (2), precision (1), then height and width.
        bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        bytes
    }

    fn decode_jpeg(bytes: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).expect("thumbnail is a valid JPEG").to_rgb8()
    }

    fn is_reddish(p: Rgb<u8>) -> bool {
        p.0[0] > 180 && p.0[2] < 80
    }

    fn is_blueish(p: Rgb<u8>) -> bool {
        p.0[2] > 180 && p.0[0] < 80
    }

    /// Check the shape of a BlurHash: base83 alphabet, size flag matching the components, length.
    fn assert_blurhash(hash: &str, cx: u32, cy: u32) {
        const BASE83: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
        assert_eq!(hash.len(), (4 + 2 * cx * cy) as usize, "length of {hash:?}");
        assert!(hash.chars().all(|c| BASE83.contains(c)), "alphabet of {hash:?}");
        let size_flag = BASE83.find(hash.chars().next().unwrap()).unwrap() as u32;
        assert_eq!(size_flag, (cx - 1) + (cy - 1) * 9, "size flag of {hash:?}");
        // And the crate itself must accept it.
        blurhash::decode(hash, 8, 6, 1.0).expect("blurhash decodes");
    }

    // --- media type ----------------------------------------------------------------------------

    #[test]
    fn media_type_prefers_magic_over_extension() {
        assert_eq!(media_type("notes.txt", &jpeg(8, 8)), "image/jpeg");
        assert_eq!(media_type("photo.jpg", &png(8, 8)), "image/png");
        assert_eq!(media_type("x", b"GIF89a\x01\x00\x01\x00"), "image/gif");
        assert_eq!(media_type("x.bin", b"RIFF\x24\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(media_type("x.bin", b"RIFF\x24\0\0\0WAVEfmt "), "audio/wav");
        assert_eq!(media_type("x.bin", b"II*\0\x08\0\0\0"), "image/tiff");
        assert_eq!(media_type("x.bin", b"MM\0*\0\0\0\x08"), "image/tiff");
        assert_eq!(media_type("x.dng", b"II*\0\x08\0\0\0"), "image/x-adobe-dng");
        assert_eq!(media_type("x", b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(media_type("x.mp3", b"fLaC\0\0\0\x22"), "audio/flac");
        assert_eq!(media_type("x.bin", b"ID3\x04\0\0\0\0\0\0"), "audio/mpeg");
        assert_eq!(media_type("x.wav", b"OggS\0\x02\0\0\0\0\0\0\0\0"), "audio/ogg");
        let bmp = encode(&DynamicImage::ImageRgb8(quadrant_image(4, 4)), ImageFormat::Bmp);
        assert_eq!(media_type("x.dat", &bmp), "image/bmp");
    }

    #[test]
    fn media_type_reads_ftyp_brands() {
        let ftyp = |major: &[u8; 4], compat: &[&[u8; 4]]| {
            let mut b = Vec::new();
            b.extend_from_slice(&u32::try_from(16 + 4 * compat.len()).unwrap().to_be_bytes());
            b.extend_from_slice(b"ftyp");
            b.extend_from_slice(major);
            b.extend_from_slice(&[0, 0, 0, 0]);
            for c in compat {
                b.extend_from_slice(*c);
            }
            b.extend_from_slice(b"\0\0\0\x08free");
            b
        };
        assert_eq!(media_type("a.bin", &ftyp(b"isom", &[b"isom", b"avc1"])), "video/mp4");
        assert_eq!(media_type("a.bin", &ftyp(b"qt  ", &[b"qt  "])), "video/quicktime");
        assert_eq!(media_type("a.mp4", &ftyp(b"M4A ", &[b"M4A ", b"mp42"])), "audio/mp4");
        assert_eq!(media_type("a.jpg", &ftyp(b"avif", &[b"mif1"])), "image/avif");
        assert_eq!(media_type("a.jpg", &ftyp(b"mif1", &[b"mif1", b"heic"])), "image/heic");
        assert_eq!(media_type("a.jpg", &ftyp(b"heic", &[])), "image/heic");
        assert_eq!(media_type("a.bin", &ftyp(b"mif1", &[b"miaf"])), "image/heif");
        assert_eq!(media_type("a.bin", &ftyp(b"3gp4", &[])), "video/3gpp");
    }

    #[test]
    fn media_type_reads_ebml_doctype_and_frame_sync() {
        let webm = b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\xF7\x81\x01\x42\x82\x84webm";
        let mkv = b"\x1A\x45\xDF\xA3\xA3\x42\x86\x81\x01\x42\xF7\x81\x01\x42\x82\x88matroska";
        assert_eq!(media_type("v.mkv", webm), "video/webm");
        assert_eq!(media_type("v.webm", mkv), "video/x-matroska");
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz.
        assert_eq!(media_type("song", b"\xFF\xFB\x90\x64\0\0"), "audio/mpeg");
        assert_eq!(media_type("song", b"\xFF\xF1\x50\x80\0\0"), "audio/aac");
        // A frame-sync lookalike does not override a name that says otherwise.
        assert_eq!(media_type("data.json", b"\xFF\xFB\x90\x64\0\0"), "application/json");
    }

    #[test]
    fn media_type_falls_back_to_extension_then_octet_stream() {
        assert_eq!(media_type("readme.txt", b"hello"), "text/plain");
        assert_eq!(media_type("clip.mp4", b""), "video/mp4");
        assert_eq!(media_type("dir/Photo.JPG", b"short"), "image/jpeg");
        assert_eq!(media_type("mystery", b"\0\x01\x02\x03"), "application/octet-stream");
        // "BM" alone is too weak to call a file a bitmap.
        assert_eq!(media_type("mystery", b"BM hello world, not a bitmap"), "application/octet-stream");
    }

    #[test]
    fn kind_of_maps_top_level_types() {
        assert_eq!(kind_of("image/jpeg"), Kind::Image);
        assert_eq!(kind_of("IMAGE/PNG"), Kind::Image);
        assert_eq!(kind_of("video/mp4"), Kind::Video);
        assert_eq!(kind_of("audio/ogg; codecs=opus"), Kind::Audio);
        assert_eq!(kind_of("application/pdf"), Kind::Other);
        assert_eq!(kind_of("application/octet-stream"), Kind::Other);
        assert_eq!(kind_of(""), Kind::Other);
        assert_eq!(kind_of(&media_type("x.txt", &jpeg(4, 4))), Kind::Image);
    }

    // --- images ------------------------------------------------------------------------------

    #[test]
    fn fit_within_keeps_aspect_and_never_upscales() {
        assert_eq!(fit_within(1200, 800, 256), (256, 171));
        assert_eq!(fit_within(800, 1200, 256), (171, 256));
        assert_eq!(fit_within(256, 256, 256), (256, 256));
        assert_eq!(fit_within(100, 50, 256), (100, 50));
        assert_eq!(fit_within(10_000, 1, 256), (256, 1));
        assert_eq!(fit_within(50, 50, 0), (1, 1));
    }

    #[test]
    fn png_thumbnail_fits_and_has_blurhash() {
        let bytes = png(1200, 800);
        assert_eq!(image_dimensions(&bytes).unwrap(), (1200, 800));
        let thumb = image_thumbnail(&bytes, 256).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 171));
        let decoded = decode_jpeg(&thumb.jpeg);
        assert_eq!(decoded.dimensions(), (256, 171));
        assert!(is_reddish(*decoded.get_pixel(10, 10)), "top-left stays red");
        assert!(is_blueish(*decoded.get_pixel(245, 160)), "bottom-right stays blue");
        assert_eq!(thumb.placeholder.len(), 28);
        assert_blurhash(&thumb.placeholder, 4, 3);
    }

    #[test]
    fn jpeg_thumbnail_fits_and_has_blurhash() {
        let bytes = jpeg(1200, 800);
        assert_eq!(image_dimensions(&bytes).unwrap(), (1200, 800));
        let thumb = image_thumbnail(&bytes, 256).unwrap();
        assert_eq!((thumb.width, thumb.height), (256, 171));
        assert_eq!(decode_jpeg(&thumb.jpeg).dimensions(), (256, 171));
        assert_blurhash(&thumb.placeholder, 4, 3);
        // Different pictures give different placeholders.
        let other = image_thumbnail(&png(800, 600), 256).unwrap();
        assert_ne!(other.placeholder, thumb.placeholder);
    }

    #[test]
    fn portrait_and_small_images() {
        let thumb = image_thumbnail(&png(600, 900), 300).unwrap();
        assert_eq!((thumb.width, thumb.height), (200, 300));
        // Never upscaled, still re-encoded as JPEG.
        let small = image_thumbnail(&png(100, 50), 256).unwrap();
        assert_eq!((small.width, small.height), (100, 50));
        assert_eq!(decode_jpeg(&small.jpeg).dimensions(), (100, 50));
    }

    #[test]
    fn other_formats_thumbnail() {
        let picture = DynamicImage::ImageRgb8(quadrant_image(300, 200));
        for format in [ImageFormat::Gif, ImageFormat::WebP, ImageFormat::Bmp, ImageFormat::Tiff] {
            let bytes = encode(&picture, format);
            assert_eq!(image_dimensions(&bytes).unwrap(), (300, 200), "{format:?}");
            let thumb = image_thumbnail(&bytes, 150).unwrap();
            assert_eq!((thumb.width, thumb.height), (150, 100), "{format:?}");
            assert!(is_reddish(*decode_jpeg(&thumb.jpeg).get_pixel(5, 5)), "{format:?}");
        }
    }

    #[test]
    fn exif_orientation_swaps_dimensions_and_rotates_pixels() {
        let plain = jpeg(1200, 800);
        // 6 = rotate 90 degrees clockwise for display: the red top-left quadrant ends up top-right.
        let rotated = with_exif_orientation(&plain, 6);
        assert_eq!(image_dimensions(&rotated).unwrap(), (800, 1200));
        let thumb = image_thumbnail(&rotated, 256).unwrap();
        assert_eq!((thumb.width, thumb.height), (171, 256));
        let pixels = decode_jpeg(&thumb.jpeg);
        assert_eq!(pixels.dimensions(), (171, 256));
        assert!(is_reddish(*pixels.get_pixel(160, 10)), "top-right is red after rotation");
        assert!(is_blueish(*pixels.get_pixel(10, 10)), "top-left is blue after rotation");

        // 3 = rotate 180: no swap, red moves to the bottom-right.
        let upside_down = with_exif_orientation(&plain, 3);
        assert_eq!(image_dimensions(&upside_down).unwrap(), (1200, 800));
        let pixels = decode_jpeg(&image_thumbnail(&upside_down, 256).unwrap().jpeg);
        assert!(is_reddish(*pixels.get_pixel(250, 165)));
        assert!(is_blueish(*pixels.get_pixel(5, 5)));

        // 8 = rotate 270 (counter-clockwise 90): swapped, red moves to the bottom-left.
        let ccw = with_exif_orientation(&plain, 8);
        assert_eq!(image_dimensions(&ccw).unwrap(), (800, 1200));
        let pixels = decode_jpeg(&image_thumbnail(&ccw, 256).unwrap().jpeg);
        assert!(is_reddish(*pixels.get_pixel(10, 250)));
    }

    #[test]
    fn scaled_to_width_is_upright_keeps_the_aspect_and_never_upscales() {
        let rotated = with_exif_orientation(&jpeg(1200, 800), 6);
        let picture = image_scaled_to_width(&rotated, 400).unwrap();
        assert_eq!(picture.dimensions(), (400, 600));
        assert!(is_reddish(*picture.get_pixel(390, 10)), "top-right is red after rotation");
        assert!(is_blueish(*picture.get_pixel(10, 10)));
        assert_eq!(image_scaled_to_width(&rotated, 5000).unwrap().dimensions(), (800, 1200), "no upscaling");
        assert_eq!(image_scaled_to_width(&png(333, 201), 100).unwrap().dimensions(), (100, 60));
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0])));
        let thumb = image_thumbnail(&encode(&clear, ImageFormat::Png), 32).unwrap();
        let pixel = *decode_jpeg(&thumb.jpeg).get_pixel(16, 16);
        assert!(pixel.0.iter().all(|c| *c > 245), "transparent became {pixel:?}, not white");
    }

    #[test]
    fn huge_images_are_refused_from_the_header() {
        let huge_png = png_claiming(20_000, 20_000);
        // The header alone is readable...
        assert_eq!(image_dimensions(&huge_png).unwrap(), (20_000, 20_000));
        // ...but decoding is refused before allocating 1.6 GB.
        let started = Instant::now();
        match image_thumbnail(&huge_png, 256) {
            Err(MediaError::TooLarge { width: 20_000, height: 20_000, max_pixels: MAX_IMAGE_PIXELS }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));

        let huge_jpeg = jpeg_claiming(20_000, 20_000);
        assert_eq!(image_dimensions(&huge_jpeg).unwrap(), (20_000, 20_000));
        assert!(matches!(image_thumbnail(&huge_jpeg, 256), Err(MediaError::TooLarge { .. })));

        // Just over the limit is refused; the message says why.
        let err = image_thumbnail(&png_claiming(10_001, 10_000), 256).unwrap_err();
        assert!(matches!(err, MediaError::TooLarge { .. }));
        assert!(err.to_string().contains("10001x10000"), "{err}");
    }

    #[test]
    fn garbage_and_truncated_images_are_errors() {
        assert!(matches!(image_dimensions(b"definitely not an image"), Err(MediaError::Unsupported(_))));
        assert!(matches!(image_thumbnail(b"", 256), Err(MediaError::Unsupported(_))));
        let whole = png(64, 64);
        let truncated = &whole[..whole.len() / 2];
        assert!(matches!(image_thumbnail(truncated, 256), Err(MediaError::Decode(_))));
        // A PNG signature followed by junk is a decode error, not a panic.
        let mut junk = b"\x89PNG\r\n\x1A\n".to_vec();
        junk.extend_from_slice(&[0xAB; 100]);
        assert!(matches!(image_dimensions(&junk), Err(MediaError::Decode(_))));
    }

    // --- ffprobe JSON (no ffmpeg needed) -------------------------------------------------------

    #[test]
    fn probe_json_rotation_sar_and_cover_art() {
        let rotated = br#"{"streams":[{"codec_type":"video","width":1920,"height":1080,
            "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]}],
            "format":{"duration":"12.5"}}"#;
        let info = media_info_from_probe(rotated).unwrap();
        assert_eq!((info.width, info.height, info.duration), (Some(1080), Some(1920), Some(12.5)));

        let legacy = br#"{"streams":[{"codec_type":"video","width":640,"height":480,"tags":{"rotate":"270"}}],
            "format":{}}"#;
        let info = media_info_from_probe(legacy).unwrap();
        assert_eq!((info.width, info.height, info.duration), (Some(480), Some(640), None));

        let upside_down = br#"{"streams":[{"codec_type":"video","width":640,"height":480,
            "side_data_list":[{"rotation":180}]}],"format":{"duration":"N/A"}}"#;
        let info = media_info_from_probe(upside_down).unwrap();
        assert_eq!((info.width, info.height, info.duration), (Some(640), Some(480), None));

        let anamorphic = br#"{"streams":[{"codec_type":"video","width":720,"height":576,
            "sample_aspect_ratio":"64:45","duration":"3.0"}],"format":{}}"#;
        let info = media_info_from_probe(anamorphic).unwrap();
        assert_eq!((info.width, info.height, info.duration), (Some(1024), Some(576), Some(3.0)));

        let song = br#"{"streams":[{"codec_type":"audio","duration":"200.1"},
            {"codec_type":"video","width":500,"height":500,"disposition":{"attached_pic":1}}],
            "format":{"duration":"200.123"}}"#;
        let info = media_info_from_probe(song).unwrap();
        assert_eq!(info, MediaInfo { width: None, height: None, duration: Some(200.123), placeholder: None });

        assert!(matches!(media_info_from_probe(b"{}"), Err(MediaError::Unsupported(_))));
        assert!(matches!(media_info_from_probe(b"not json"), Err(MediaError::Ffmpeg(_))));
    }

    #[test]
    fn poster_time_is_ten_percent_capped() {
        assert_eq!(poster_time(None), 0.0);
        assert_eq!(poster_time(Some(2.0)), 0.2);
        assert_eq!(poster_time(Some(600.0)), 3.0);
        assert_eq!(poster_time(Some(f64::NAN)), 0.0);
        assert_eq!(poster_time(Some(-1.0)), 0.0);
    }

    #[test]
    fn input_args_confine_ffmpeg() {
        let (options, target) = input_args("-weird:name.mp4").unwrap();
        assert_eq!(target, "file:-weird:name.mp4");
        assert_eq!(options[..2], ["-protocol_whitelist".to_owned(), "file".to_owned()]);
        let (options, target) = input_args("HTTPS://example.com/a.mp4").unwrap();
        assert_eq!(target, "HTTPS://example.com/a.mp4");
        assert_eq!(options[1], "http,https,tcp,tls");
        assert!(matches!(input_args(""), Err(MediaError::Unsupported(_))));
    }

    #[test]
    fn media_info_serde_round_trip() {
        let info =
            MediaInfo { width: Some(3), height: Some(2), duration: Some(1.5), placeholder: Some("L00000".into()) };
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<MediaInfo>(&json).unwrap(), info);
        assert_eq!(serde_json::from_str::<MediaInfo>("{}").unwrap(), MediaInfo::default());
    }

    #[test]
    fn child_is_killed_at_deadline() {
        let mut cmd = Command::new("sleep");
        cmd.arg("10");
        let started = Instant::now();
        let result = run_with_deadline(cmd, Instant::now() + Duration::from_millis(200));
        assert!(matches!(result, Err(MediaError::Timeout)), "{:?}", result.err());
        assert!(started.elapsed() < Duration::from_secs(3));

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let done = run_with_deadline(cmd, Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!((done.stdout.as_slice(), done.stderr.as_str(), done.status.code()), (&b"out\n"[..], "err", Some(3)));

        let missing =
            run_with_deadline(Command::new("no-such-program-nanofs"), Instant::now() + Duration::from_secs(1));
        assert!(matches!(missing, Err(MediaError::FfmpegMissing)));
    }

    #[test]
    fn child_output_larger_than_a_pipe_does_not_deadlock() {
        // 1 MiB on stdout and stderr each: far more than a pipe buffer holds.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"]);
        let done = run_with_deadline(cmd, Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(done.stdout.len(), 1 << 20);
        // stderr is kept only up to its cap, but still drained to the end.
        assert_eq!(done.stderr.len() as u64, MAX_STDERR);
    }

    // --- ffmpeg (skipped when not installed) ----------------------------------------------------

    fn ffmpeg_or_skip(test: &str) -> bool {
        if ffmpeg_available() {
            return true;
        }
        eprintln!("note: ffmpeg/ffprobe not installed; skipping {test}");
        false
    }

    fn ffmpeg(args: &[&str]) {
        let status =
            Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-y"]).args(args).status().expect("run ffmpeg");
        assert!(status.success(), "ffmpeg {args:?} failed");
    }

    fn test_video(dir: &Path) -> PathBuf {
        let path = dir.join("clip.mp4");
        let out = path.to_str().unwrap();
        ffmpeg(&["-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25", "-pix_fmt", "yuv420p", out]);
        path
    }

    /// A copy of `video` flagged to display rotated by 90 degrees.
    fn rotated_copy(video: &Path, dir: &Path) -> PathBuf {
        let path = dir.join("rotated.mp4");
        let (input, out) = (video.to_str().unwrap(), path.to_str().unwrap());
        // ffmpeg >= 6 has -display_rotation; older versions take the legacy rotate tag.
        let modern = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-display_rotation", "90", "-i", input, "-c", "copy", out])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !modern {
            ffmpeg(&["-i", input, "-c", "copy", "-metadata:s:v", "rotate=90", out]);
        }
        path
    }

    #[test]
    fn missing_ffmpeg_is_reported_as_such() {
        // Run with a PATH lacking ffmpeg to exercise the first branch.
        let result = probe_av("/no/such/file.mp4");
        if ffmpeg_available() {
            assert!(matches!(result, Err(MediaError::Ffmpeg(_))), "{result:?}");
        } else {
            assert!(matches!(result, Err(MediaError::FfmpegMissing)), "{result:?}");
            assert!(matches!(video_poster("/no/such/file.mp4", None, 64), Err(MediaError::FfmpegMissing)));
        }
    }

    #[test]
    fn probe_and_poster_of_a_video() {
        if !ffmpeg_or_skip("probe_and_poster_of_a_video") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let video = test_video(dir.path());
        let input = video.to_str().unwrap();
        let info = probe_av(input).unwrap();
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
        let duration = info.duration.expect("duration");
        assert!((duration - 2.0).abs() < 0.1, "duration {duration}");
        assert_eq!(info.placeholder, None);

        let poster = video_poster(input, info.duration, 256).unwrap();
        assert_eq!((poster.width, poster.height), (256, 192));
        assert_eq!(decode_jpeg(&poster.jpeg).dimensions(), (256, 192));
        assert_blurhash(&poster.placeholder, 4, 3);

        // Not enlarged beyond the video's own size.
        let big = video_poster(input, info.duration, 1024).unwrap();
        assert_eq!((big.width, big.height), (320, 240));

        // A duration that overshoots makes the seek miss; the fallback to t=0 still finds a frame.
        let fallback = video_poster(input, Some(100.0), 128).unwrap();
        assert_eq!((fallback.width, fallback.height), (128, 96));
        assert_eq!(media_type("clip.bin", &std::fs::read(&video).unwrap()[..64]), "video/mp4");
    }

    #[test]
    fn rotated_video_swaps_dimensions() {
        if !ffmpeg_or_skip("rotated_video_swaps_dimensions") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rotated = rotated_copy(&test_video(dir.path()), dir.path());
        let input = rotated.to_str().unwrap();
        let info = probe_av(input).unwrap();
        assert_eq!((info.width, info.height), (Some(240), Some(320)));
        // ffmpeg applies the rotation when decoding, so the poster is portrait too.
        let poster = video_poster(input, info.duration, 160).unwrap();
        assert_eq!((poster.width, poster.height), (120, 160));
    }

    #[test]
    fn anamorphic_video_is_shown_with_square_pixels() {
        if !ffmpeg_or_skip("anamorphic_video_is_shown_with_square_pixels") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.mp4");
        let input = path.to_str().unwrap();
        // 360x288 stored with 64:45 pixels is displayed as 512x288 (16:9).
        let source = "testsrc=duration=1:size=360x288:rate=25";
        ffmpeg(&["-f", "lavfi", "-i", source, "-vf", "setsar=64/45", "-pix_fmt", "yuv420p", input]);
        let info = probe_av(input).unwrap();
        assert_eq!((info.width, info.height), (Some(512), Some(288)));
        let poster = video_poster(input, info.duration, 256).unwrap();
        assert_eq!((poster.width, poster.height), (256, 144));
    }

    #[test]
    fn audio_has_duration_but_no_size() {
        if !ffmpeg_or_skip("audio_has_duration_but_no_size") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for name in ["tone.wav", "tone.m4a"] {
            let path = dir.path().join(name);
            ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", path.to_str().unwrap()]);
            let info = probe_av(path.to_str().unwrap()).unwrap();
            let duration = info.duration.expect("duration");
            assert!((duration - 1.0).abs() < 0.1, "{name}: duration {duration}");
            assert_eq!((info.width, info.height), (None, None), "{name}");
            // No picture to take a poster from.
            assert!(matches!(video_poster(path.to_str().unwrap(), info.duration, 256), Err(MediaError::Ffmpeg(_))));
        }
    }

    #[test]
    fn garbage_input_reports_ffprobe_message() {
        if !ffmpeg_or_skip("garbage_input_reports_ffprobe_message") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.mp4");
        std::fs::write(&path, b"this is not a video at all, just some words").unwrap();
        match probe_av(path.to_str().unwrap()) {
            Err(MediaError::Ffmpeg(message)) => {
                assert!(message.contains("Invalid data found when processing input"), "{message}")
            }
            other => panic!("expected MediaError::Ffmpeg, got {other:?}"),
        }
        assert!(matches!(video_poster(path.to_str().unwrap(), None, 256), Err(MediaError::Ffmpeg(_))));
        match probe_av(dir.path().join("missing.mp4").to_str().unwrap()) {
            Err(MediaError::Ffmpeg(message)) => assert!(message.contains("No such file"), "{message}"),
            other => panic!("expected MediaError::Ffmpeg, got {other:?}"),
        }
    }

    #[test]
    fn playlist_disguised_as_video_is_not_followed() {
        if !ffmpeg_or_skip("playlist_disguised_as_video_is_not_followed") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let video = test_video(dir.path());
        // An HLS playlist pointing at another local file: the demuxer whitelist must refuse it.
        let playlist = dir.path().join("innocent.mp4");
        let body = format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n", video.display());
        std::fs::write(&playlist, body).unwrap();
        match probe_av(playlist.to_str().unwrap()) {
            Err(MediaError::Ffmpeg(message)) => assert!(message.contains("not on whitelist"), "{message}"),
            other => panic!("expected the demuxer whitelist to refuse, got {other:?}"),
        }
        assert!(video_poster(playlist.to_str().unwrap(), None, 64).is_err());
    }

    /// Serve `body` over HTTP on localhost, honouring single Range requests like the sidecar does.
    /// Returns the URL and a count of the Range requests seen.
    fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/clip.mp4", listener.local_addr().unwrap());
        let (body, ranges) = (Arc::new(body), Arc::new(AtomicUsize::new(0)));
        let seen = ranges.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (body, seen) = (body.clone(), seen.clone());
                thread::spawn(move || respond(&stream, &body, &seen));
            }
        });
        (url, ranges)
    }

    fn respond(mut stream: &std::net::TcpStream, body: &[u8], ranges: &AtomicUsize) {
        let mut range = None;
        let mut line = String::new();
        let mut reader = BufReader::new(stream);
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && !line.trim().is_empty() {
            let lower = line.trim().to_ascii_lowercase();
            if let Some((start, end)) = lower.strip_prefix("range: bytes=").and_then(|r| r.split_once('-')) {
                let last = body.len() - 1;
                let start = start.parse::<usize>().unwrap_or(0);
                let end = end.parse::<usize>().map_or(last, |e| e.min(last));
                range = (start <= end).then_some((start, end));
            }
            line.clear();
        }
        let (status, start, end) = match range {
            Some((start, end)) => {
                ranges.fetch_add(1, Ordering::Relaxed);
                ("206 Partial Content", start, end)
            }
            None => ("200 OK", 0, body.len() - 1),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\
             Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            end + 1 - start,
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body[start..=end]));
    }

    #[test]
    fn probe_and_poster_over_http() {
        if !ffmpeg_or_skip("probe_and_poster_over_http") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (url, ranges) = serve(std::fs::read(test_video(dir.path())).unwrap());
        let info = probe_av(&url).unwrap();
        assert_eq!((info.width, info.height), (Some(320), Some(240)));
        assert!((info.duration.unwrap() - 2.0).abs() < 0.1);
        let poster = video_poster(&url, info.duration, 200).unwrap();
        assert_eq!((poster.width, poster.height), (200, 150));
        // The index sits at the end of this file, so reaching it takes Range requests.
        assert!(ranges.load(Ordering::Relaxed) > 0, "no Range requests were made");
    }
}
