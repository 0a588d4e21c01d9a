//! Packaging one video into its ladder. ffmpeg reads the video from, and writes the
//! renditions to, a loopback HTTP server of this process (127.0.0.1, a random key in every
//! URL) that reads and writes the volume: neither the video nor its renditions reach the
//! local disk in clear, and ffmpeg reads the source with range requests as it seeks.
//!
//! One ffmpeg run makes every rung: the video is decoded once, scaled per rung, encoded
//! with H.264 with a keyframe forced at every segment boundary (so segments align across
//! rungs and a player switches at any of them), the audio once as AAC, and the `dash`
//! muxer writes CMAF segments with both the DASH manifest and the HLS playlists over them.

use super::ladder::{self, AUDIO_KBPS};
use super::{random_suffix, write_file, Error, Renditions, Result, SourceFile, RENDITIONS_NAME, SOURCE_FILE};
use crate::ids::Ino;
use crate::media;
use crate::volume::{Kind, Volume};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::Serialize;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one packaging run may take before ffmpeg is stopped.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Largest file ffmpeg may write (a segment or a playlist).
const MAX_OUTPUT: usize = 256 << 20;
/// Bytes read from the volume per piece of a response to ffmpeg.
const READ_PIECE: u32 = 1 << 20;

/// What a packaging run obeys and reports to whoever runs it (`jobs`).
pub struct Run<'a> {
    /// Set from another thread to stop the run: ffmpeg is killed, nothing is published.
    pub stop: &'a AtomicBool,
    /// Called with the share of the video done so far, 0 to 1.
    pub progress: &'a (dyn Fn(f64) + Sync),
}

impl Run<'_> {
    /// A run nobody stops or watches (the command line without a daemon).
    pub fn unwatched(f: impl FnOnce(&Run<'_>) -> Result<PackageReport>) -> Result<PackageReport> {
        let stop = AtomicBool::new(false);
        f(&Run { stop: &stop, progress: &|_| {} })
    }
}

/// What a packaging run made.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PackageReport {
    /// Heights of the video renditions, highest first.
    pub renditions: Vec<u32>,
    /// Whether the top rendition is the source's own video, copied rather than encoded.
    #[serde(default)]
    pub copied: bool,
    /// Whether an audio rendition was made.
    pub audio: bool,
    /// Files written (segments, init segments, playlists, manifest).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds the run took.
    pub seconds: f64,
}

impl Renditions {
    /// Packages the video at volume path `path` into `ladder` (heights) with segments of
    /// about `segment_seconds`, replacing its renditions when done. Blocks for as long as
    /// ffmpeg takes.
    pub fn package(&self, source: Ino, ladder: &[u32], segment_seconds: u32, run: &Run<'_>) -> Result<PackageReport> {
        let started = Instant::now();
        if self.vol.getattr(source)?.inode.kind != Kind::File {
            return Err(Error::NotAVideo("not a regular file".into()));
        }
        // Taken first: a video changed while it is packaged gets renditions that name its
        // old content, which it no longer has.
        let key = super::content_key(&self.vol, source)?;
        let size = self.vol.getattr(source)?.inode.size;
        let root = self.vol.hidden_dir_or_create(RENDITIONS_NAME)?;
        let staging = format!("{key}.staging-{}", random_suffix());
        let out = self.vol.create(root, staging.as_bytes(), Kind::Dir, 0o700, 0, 0, 0)?.ino;
        let made = self.package_into(source, out, ladder, segment_seconds, run).and_then(|report| {
            let record = serde_json::to_vec(&SourceFile { ino: source.0, size }).expect("serialises");
            write_file(&self.vol, out, SOURCE_FILE, &record)?;
            self.publish(root, &staging, &key)?;
            Ok(report)
        });
        if made.is_err() {
            if let Err(e) = self.vol.remove_tree(root, staging.as_bytes()) {
                tracing::warn!(error = %e, "removing the staging directory of a failed packaging run");
            }
        }
        let mut report = made?;
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(inode = %source, ?report, "packaged");
        Ok(report)
    }

    fn package_into(
        &self,
        source: Ino,
        out: Ino,
        ladder: &[u32],
        segment_seconds: u32,
        run: &Run<'_>,
    ) -> Result<PackageReport> {
        let io = IoServer::start(self.vol.clone(), source, out)?;
        let input = io.url("in");
        let info = media::probe_av(&input).map_err(|e| match e {
            media::MediaError::Ffmpeg(why) | media::MediaError::Unsupported(why) => Error::NotAVideo(why),
            e => Error::Media(e),
        })?;
        let height = info.height.ok_or_else(|| Error::NotAVideo("no video stream".into()))?;
        let probed = probe_source(&input, height)?;
        let audio = probed.audio.is_some();
        // A phone's or camera's H.264 that fits the ladder is its own top rung: copied,
        // not encoded again (faster, and no second generation of loss).
        let (copied, rungs) = ladder::plan_with_copy(height, ladder, probed.video.copyable(segment_seconds));
        let (options, target) = media::input_args(&input)?;
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-v", "error", "-y"]).args(&options).args(["-i", &target]);
        if !rungs.is_empty() {
            let split: String = (0..rungs.len()).map(|i| format!("[s{i}]")).collect();
            let mut graph = format!("[0:v:0]split={}{split}", rungs.len());
            for (i, r) in rungs.iter().enumerate() {
                graph.push_str(&format!(";[s{i}]scale=-2:{}[v{i}]", r.height));
            }
            cmd.args(["-filter_complex", &graph]);
        }
        let mut out_index = 0;
        if copied.is_some() {
            cmd.args(["-map", "0:v:0", "-c:v:0", "copy"]);
            out_index = 1;
        }
        // Keyframes at every segment boundary align the rungs; beside a copy, the encoded
        // rungs take their keyframes where the source has them.
        let keyframes =
            if copied.is_some() { "source".to_string() } else { format!("expr:gte(t,n_forced*{segment_seconds})") };
        for (i, r) in rungs.iter().enumerate() {
            let o = out_index + i;
            cmd.args(["-map", &format!("[v{i}]")])
                .args([format!("-c:v:{o}"), "libx264".into()])
                .args([format!("-preset:v:{o}"), "veryfast".into()])
                .args([format!("-profile:v:{o}"), "main".into()])
                .args([format!("-pix_fmt:v:{o}"), "yuv420p".into()])
                .args([format!("-b:v:{o}"), format!("{}k", r.video_kbps)])
                .args([format!("-maxrate:v:{o}"), format!("{}k", r.video_kbps * 6 / 5)])
                .args([format!("-bufsize:v:{o}"), format!("{}k", r.video_kbps * 2)])
                .args([format!("-force_key_frames:v:{o}"), keyframes.clone()])
                .args([format!("-sc_threshold:v:{o}"), "0".into()]);
        }
        match probed.audio.as_deref() {
            Some("aac") => {
                cmd.args(["-map", "0:a:0", "-c:a", "copy"]);
            }
            Some(_) => {
                cmd.args(["-map", "0:a:0", "-c:a", "aac", "-b:a", &format!("{AUDIO_KBPS}k"), "-ac", "2"]);
            }
            None => {}
        }
        let sets = if audio { "id=0,streams=v id=1,streams=a" } else { "id=0,streams=v" };
        cmd.args(["-f", "dash", "-seg_duration", &segment_seconds.to_string()])
            .args(["-use_template", "1", "-use_timeline", "0", "-hls_playlist", "1", "-adaptation_sets", sets])
            .args(["-init_seg_name", "init-$RepresentationID$.m4s"])
            .args(["-media_seg_name", "seg-$RepresentationID$-$Number%05d$.m4s"])
            .args(["-method", "PUT", &io.url("out/manifest.mpd")]);
        // ffmpeg reports the time it has reached on stdout; over the duration, the progress.
        cmd.args(["-progress", "pipe:1", "-nostats"]);
        let duration = info.duration.filter(|d| *d > 0.0);
        let on_line = |line: &str| {
            let reached = line.strip_prefix("out_time_us=").and_then(|v| v.parse::<f64>().ok());
            if let (Some(us), Some(d)) = (reached, duration) {
                (run.progress)((us / 1e6 / d).clamp(0.0, 1.0));
            }
        };
        tracing::debug!(args = ?cmd.get_args().collect::<Vec<_>>(), "packaging with ffmpeg");
        let watch = media::Watch { stop: Some(run.stop), on_line: Some(&on_line) };
        let finished = media::run_watched(cmd, Instant::now() + PACKAGE_TIMEOUT, &watch)?;
        if !finished.status.success() {
            return Err(media::failure("ffmpeg", &finished).into());
        }
        drop(io);
        let mut report = PackageReport {
            renditions: copied.into_iter().chain(rungs.iter().map(|r| r.height)).collect(),
            copied: copied.is_some(),
            audio,
            files: 0,
            bytes: 0,
            seconds: 0.0,
        };
        for e in self.vol.dir_entries(out)? {
            report.files += 1;
            report.bytes += self.vol.getattr(e.ino)?.inode.size;
        }
        for name in ["manifest.mpd", "master.m3u8"] {
            if self.vol.lookup(out, name.as_bytes()).is_err() {
                return Err(Error::Io(std::io::Error::other(format!("ffmpeg wrote no {name}"))));
            }
        }
        // A variant playlist without its end marker would make players wait for more.
        for e in self.vol.dir_entries(out)? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if name.starts_with("media_") && name.ends_with(".m3u8") {
                let size = self.vol.getattr(e.ino)?.inode.size;
                let text = self.vol.read(e.ino, 0, size.min(1 << 24) as u32)?;
                if !String::from_utf8_lossy(&text).trim_end().ends_with("#EXT-X-ENDLIST") {
                    return Err(Error::Io(std::io::Error::other(format!("{name} is incomplete"))));
                }
            }
        }
        Ok(report)
    }
}

/// What packaging needs to know of a source beyond `probe_av`.
struct Probed {
    video: ladder::Source,
    /// The first audio stream's codec, if there is one.
    audio: Option<String>,
}

/// How far into the source its keyframes are looked at: the first half minute tells how
/// a camera or an encoder places them.
const KEYFRAME_PROBE: &str = "%+30";

/// The video's codec, format, rotation and keyframe spacing, and the audio's codec.
fn probe_source(input: &str, height: u32) -> Result<Probed> {
    let (options, target) = media::input_args(input)?;
    let ffprobe = |args: &[&str]| -> Result<String> {
        let mut cmd = Command::new("ffprobe");
        cmd.args(["-v", "error"]).args(&options).args(args).arg(&target);
        let finished = media::run_with_deadline(cmd, Instant::now() + Duration::from_secs(60))?;
        if !finished.status.success() {
            return Err(media::failure("ffprobe", &finished).into());
        }
        Ok(String::from_utf8_lossy(&finished.stdout).into_owned())
    };
    let streams: serde_json::Value = serde_json::from_str(&ffprobe(&[
        "-show_entries",
        "stream=codec_type,codec_name,pix_fmt,profile:stream_side_data=rotation:stream_tags=rotate",
        "-of",
        "json",
    ])?)
    .map_err(|e| Error::NotAVideo(format!("ffprobe: {e}")))?;
    let streams = streams["streams"].as_array().cloned().unwrap_or_default();
    let of_type = |t: &str| streams.iter().find(|s| s["codec_type"] == t);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let video = of_type("video").ok_or_else(|| Error::NotAVideo("no video stream".into()))?;
    let rotation = video["side_data_list"]
        .as_array()
        .and_then(|l| l.iter().find_map(|d| d["rotation"].as_i64()))
        .or_else(|| video["tags"]["rotate"].as_str().and_then(|r| r.parse().ok()))
        .unwrap_or(0);
    let packets = ffprobe(&[
        "-select_streams",
        "v:0",
        "-read_intervals",
        KEYFRAME_PROBE,
        "-show_entries",
        "packet=pts_time,flags",
        "-of",
        "csv=p=0",
    ])?;
    Ok(Probed {
        video: ladder::Source {
            height,
            codec: text(&video["codec_name"]),
            pix_fmt: text(&video["pix_fmt"]),
            profile: text(&video["profile"]),
            rotation: rotation as i32,
            keyframe_gap: keyframe_gap(&packets),
        },
        audio: of_type("audio").map(|a| text(&a["codec_name"])),
    })
}

/// The longest time between keyframes in ffprobe's `pts_time,flags` lines (counting the
/// time after the last keyframe seen); 0 when there is none.
fn keyframe_gap(packets: &str) -> f64 {
    let mut times: Vec<(f64, bool)> = packets
        .lines()
        .filter_map(|l| {
            let (t, flags) = l.split_once(',')?;
            Some((t.trim().parse::<f64>().ok()?, flags.starts_with('K')))
        })
        .collect();
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let keys: Vec<f64> = times.iter().filter(|(_, k)| *k).map(|(t, _)| *t).collect();
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else { return 0.0 };
    let end = times.last().map_or(*last, |(t, _)| *t);
    let between = keys.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    between.max(end - last).max(first - times[0].0)
}

/// The loopback server that feeds ffmpeg the source and takes its output; stops on drop.
struct IoServer {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct IoState {
    vol: Arc<Volume>,
    source: Ino,
    out: Ino,
    key: String,
    /// Per file, the newest version stored (`SendOrder`): ffmpeg rewrites the playlists and
    /// the manifest as segments come, and a version on another connection may arrive later
    /// than a newer one.
    stored: std::sync::Mutex<std::collections::HashMap<String, SendOrder>>,
}

/// The order in which ffmpeg sent a request: its connection's place among connections,
/// then the request's place on that connection (a connection's requests are sequential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SendOrder(u64, u64);

impl IoServer {
    fn start(vol: Arc<Volume>, source: Ino, out: Ino) -> std::io::Result<Self> {
        let key = random_suffix() + &random_suffix();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}/{key}", listener.local_addr()?);
        let state = Arc::new(IoState { vol, source, out, key, stored: Default::default() });
        let router = Router::new()
            .route("/{key}/in", get(read_source))
            .route("/{key}/out/{name}", put(write_output))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_OUTPUT))
            .with_state(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let thread = std::thread::Builder::new().name("package-io".into()).spawn(move || {
            if let Err(e) = runtime.block_on(serve(listener, router, stopped)) {
                tracing::error!(error = %e, "packaging I/O server");
            }
        })?;
        Ok(Self { base, stop: Some(stop), thread: Some(thread) })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// Serves `router` until `stopped`, then until every request already sent is answered.
/// ffmpeg closes a connection right after the body of its last request without reading
/// the answer, so connections are half-closed rather than dropped at the end of the input
/// (hyper's default would drop that request), and after the stop (ffmpeg has exited) the
/// connections still queued are accepted and every one is read to its end.
async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut connections = tokio::task::JoinSet::new();
    let mut accepted_count = 0u64;
    let mut serve_one = |stream: tokio::net::TcpStream| {
        use tower::ServiceExt;
        accepted_count += 1;
        let (connection, requests) = (accepted_count, Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let tagged = router.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            let n = requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            req.extensions_mut().insert(SendOrder(connection, n));
            req
        });
        let service = hyper_util::service::TowerToHyperService::new(tagged);
        let io = hyper_util::rt::TokioIo::new(stream);
        async move {
            let conn = hyper::server::conn::http1::Builder::new().half_close(true).serve_connection(io, service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "packaging I/O connection");
            }
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                connections.spawn(serve_one(accepted?.0));
            }
        }
    }
    while let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await {
        connections.spawn(serve_one(stream));
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

impl Drop for IoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /KEY/in`: the source's bytes, from a single range (`bytes=A-` or `bytes=A-B`).
async fn read_source(State(st): State<Arc<IoState>>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    if key != st.key {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (vol, source) = (st.vol.clone(), st.source);
    let size = match tokio::task::spawn_blocking(move || vol.getattr(source)).await {
        Ok(Ok(a)) => a.inode.size,
        _ => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|r| single_range(r, size));
    let (start, end, status) = match range {
        Some((a, b)) => (a, b, StatusCode::PARTIAL_CONTENT),
        None if headers.contains_key(header::RANGE) && size > 0 => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))])
                .into_response()
        }
        None => (0, size, StatusCode::OK),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let vol = st.vol.clone();
    tokio::task::spawn_blocking(move || {
        let mut at = start;
        while at < end {
            let len = (end - at).min(u64::from(READ_PIECE)) as u32;
            let piece = vol.read(source, at, len).map(|p| Bytes::copy_from_slice(&p)).map_err(std::io::Error::other);
            let failed = piece.is_err();
            // ffmpeg closes the connection when it seeks: stop reading then.
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
            at += u64::from(len);
        }
    });
    let pieces = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) });
    let body = Body::from_stream(pieces);
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, (end - start).into());
    h.insert(header::ACCEPT_RANGES, header::HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{size}", end - 1);
        h.insert(header::CONTENT_RANGE, header::HeaderValue::from_str(&range).expect("digits"));
    }
    response
}

/// `bytes=A-` or `bytes=A-B` within `size`, as `[start, end)`.
fn single_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => size,
        b => b.parse::<u64>().ok()?.saturating_add(1).min(size),
    };
    (start < end).then_some((start, end))
}

/// `PUT /KEY/out/NAME`: a file ffmpeg wrote (a segment, a playlist, the manifest).
async fn write_output(
    State(st): State<Arc<IoState>>,
    Path((key, name)): Path<(String, String)>,
    axum::Extension(order): axum::Extension<SendOrder>,
    body: Bytes,
) -> StatusCode {
    tracing::debug!(name, bytes = body.len(), ?order, "rendition file from ffmpeg");
    if key != st.key {
        return StatusCode::NOT_FOUND;
    }
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain || name.starts_with('.') || name == SOURCE_FILE {
        return StatusCode::BAD_REQUEST;
    }
    let store = move || {
        let mut stored = st.stored.lock().expect("stored versions");
        if stored.get(&name).is_some_and(|newer| *newer > order) {
            tracing::debug!(name, "an older version of a rendition file arrived late; dropped");
            return Ok::<(), crate::volume::Error>(());
        }
        let ino = write_file(&st.vol, st.out, &name, &body)?;
        if name.ends_with(".m4s") {
            // Its ETag now, while the bytes are warm: the first player to ask for this
            // segment then waits for one chunk read, not for a hash of the whole segment.
            st.vol.fingerprint(ino)?;
        }
        stored.insert(name, order);
        Ok(())
    };
    match tokio::task::spawn_blocking(store).await {
        Ok(Ok(())) => StatusCode::CREATED,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "storing a rendition file");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::{keyframe_gap, single_range};

    #[test]
    fn ranges_ffmpeg_sends_are_read_and_others_refused() {
        assert_eq!(single_range("bytes=0-", 100), Some((0, 100)));
        assert_eq!(single_range("bytes=10-19", 100), Some((10, 20)));
        assert_eq!(single_range("bytes=90-500", 100), Some((90, 100)));
        assert_eq!(single_range("bytes=100-", 100), None);
        assert_eq!(single_range("bytes=-5", 100), None);
        assert_eq!(single_range("items=0-", 100), None);
    }

    #[test]
    fn the_keyframe_gap_is_the_longest_stretch_without_one() {
        assert!((keyframe_gap("0.000,K_\n0.040,__\n1.000,K_\n1.040,__\n3.500,K_\n3.540,__\n") - 2.5).abs() < 1e-9);
        assert!(
            (keyframe_gap("0.0,K_\n0.5,__\n9.0,__\n") - 9.0).abs() < 1e-9,
            "the stretch after the last keyframe counts"
        );
        // Packets come in decoding order; B-frames make their times go back and forth.
        assert!((keyframe_gap("0.08,K_\n0.00,__\n0.04,__\n2.08,K_\n2.0,__\n") - 2.0).abs() < 1e-9);
        assert!(keyframe_gap("").abs() < 1e-9);
        assert!(keyframe_gap("0.0,__\n1.0,__\n").abs() < 1e-9, "no keyframe: nothing to copy");
    }
}
