//! RTMP ingest (`nanofs::live::rtmp`) over loopback, with Debian's ffmpeg as the publisher:
//! the frames it hands on, a refused key, and clients that send garbage.

use nanofs::live::media::{annex_b_units, h264_type};
use nanofs::live::rtmp::{serve, Publish, Publishers};
use nanofs::live::{Codec, MediaFrame};
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::time::RtmpTimestamp;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A publish request as the test's `Publishers` saw it, with the frames of an accepted one.
type Decided = (Publish, Option<mpsc::Receiver<MediaFrame>>);

/// Accepts the key `right` and refuses every other, reporting each request.
struct KeyCheck {
    decided: mpsc::UnboundedSender<Decided>,
}

impl Publishers for KeyCheck {
    fn publish(&self, req: Publish) -> Pin<Box<dyn Future<Output = Result<mpsc::Sender<MediaFrame>, String>> + Send>> {
        let decided = self.decided.clone();
        Box::pin(async move {
            if req.key.as_deref() == Some("right") {
                // A short queue, so that the publisher waits on the test now and then.
                let (frames, received) = mpsc::channel(8);
                decided.send((req, Some(received))).unwrap();
                Ok(frames)
            } else {
                decided.send((req, None)).unwrap();
                Err("the publish key is wrong".into())
            }
        })
    }
}

/// `serve` on a loopback port, in a runtime of its own.
struct Server {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    decided: mpsc::UnboundedReceiver<Decided>,
}

impl Server {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (tx, decided) = mpsc::unbounded_channel();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(serve(listener, Arc::new(KeyCheck { decided: tx })));
        Self { rt, addr, decided }
    }

    /// The next publish request, and its frames until the channel closes (`None` when refused).
    fn next_publish(&mut self) -> (Publish, Option<Vec<MediaFrame>>) {
        self.rt.block_on(async {
            let next = tokio::time::timeout(Duration::from_secs(30), self.decided.recv());
            let (req, received) = next.await.expect("no publish request within 30 s").unwrap();
            let Some(mut received) = received else { return (req, None) };
            let mut frames = Vec::new();
            let all = async {
                while let Some(frame) = received.recv().await {
                    frames.push(frame);
                }
            };
            tokio::time::timeout(Duration::from_secs(30), all).await.expect("the stream did not end within 30 s");
            (req, Some(frames))
        })
    }
}

/// Runs ffmpeg on a thread: 3 s of a test picture (H.264, 25 fps, a keyframe each second)
/// and a sine (AAC), published in real time to `url`.
fn ffmpeg_publish(url: String) -> std::thread::JoinHandle<(Output, Instant)> {
    std::thread::spawn(move || {
        let args = [
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-t",
            "3",
            "-f",
            "flv",
        ];
        let out = std::process::Command::new("ffmpeg")
            .args(args)
            .arg(&url)
            .output()
            .expect("ffmpeg (Debian's package) must be installed");
        (out, Instant::now())
    })
}

/// Checks the frames of ffmpeg's 3 s publication; returns a summary.
fn check_ffmpeg_frames(frames: &[MediaFrame]) -> String {
    let video: Vec<&MediaFrame> = frames.iter().filter(|f| f.codec == Codec::H264).collect();
    let audio: Vec<&MediaFrame> = frames.iter().filter(|f| f.codec == Codec::Aac).collect();
    assert_eq!(video.len() + audio.len(), frames.len(), "only H.264 and AAC");
    assert!((65..=80).contains(&video.len()), "{} video frames for 3 s at 25 fps", video.len());

    let first = video[0];
    assert!(first.keyframe, "the first video frame is a keyframe");
    let types: Vec<u8> = annex_b_units(&first.data).map(h264_type).collect();
    assert!(first.data.starts_with(&[0, 0, 0, 1]), "Annex B");
    for (t, what) in [(7, "SPS"), (8, "PPS"), (5, "IDR")] {
        assert!(types.contains(&t), "the first keyframe carries an {what}: unit types {types:?}");
    }
    let keyframes: Vec<usize> = video.iter().enumerate().filter(|(_, f)| f.keyframe).map(|(i, _)| i).collect();
    assert!((3..=4).contains(&keyframes.len()), "keyframes at {keyframes:?}");
    for gap in keyframes.windows(2).map(|w| w[1] - w[0]) {
        assert!((20..=25).contains(&gap), "keyframes at {keyframes:?}");
    }
    for key in keyframes.iter().map(|&i| video[i]) {
        let types: Vec<u8> = annex_b_units(&key.data).map(h264_type).collect();
        assert!(types.contains(&7) && types.contains(&8) && types.contains(&5), "each keyframe: {types:?}");
    }
    assert!(video.iter().all(|f| f.config.is_none()));

    for track in [&video, &audio] {
        assert!(track.windows(2).all(|w| w[0].dts_us <= w[1].dts_us), "decode times never go back");
    }
    let span_ms = (video.last().unwrap().dts_us - first.dts_us) / 1000;
    assert!((2700..=3100).contains(&span_ms), "the video spans {span_ms} ms");

    // 48 kHz AAC: 1024 samples a frame, 47 a second.
    assert!((100..=160).contains(&audio.len()), "{} audio frames", audio.len());
    let asc = audio[0].config.as_ref().expect("the AudioSpecificConfig");
    assert!(asc.len() >= 2, "AudioSpecificConfig {asc:?}");
    assert!(audio.iter().all(|f| f.config.as_ref() == Some(asc) && !f.keyframe && f.cts_us == 0));
    let audio_span_ms = (audio.last().unwrap().dts_us - audio[0].dts_us) / 1000;
    format!(
        "{} video frames ({} keyframes at {keyframes:?}) over {span_ms} ms, {} audio frames over {audio_span_ms} ms",
        video.len(),
        keyframes.len(),
        audio.len()
    )
}

#[test]
fn rtmp_ffmpeg_publisher_delivers_h264_and_aac_frames() {
    let mut server = Server::start();
    let started = Instant::now();
    let ffmpeg = ffmpeg_publish(format!("rtmp://{}/live/cam?key=right", server.addr));
    let (req, frames) = server.next_publish();
    let closed = Instant::now();
    let (out, ffmpeg_ended) = ffmpeg.join().unwrap();
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((req.app.as_str(), req.name.as_str(), req.key.as_deref()), ("live", "cam", Some("right")));
    assert!(req.peer.ip().is_loopback());
    let summary = check_ffmpeg_frames(&frames.expect("accepted"));
    // The channel closes when ffmpeg unpublishes, just before it exits.
    let gap = ffmpeg_ended.saturating_duration_since(closed) + closed.saturating_duration_since(ffmpeg_ended);
    assert!(gap < Duration::from_secs(2), "the stream ended {gap:?} away from ffmpeg's exit");
    eprintln!("{summary}; the stream ended {:?} after the start", closed - started);
}

#[test]
fn rtmp_wrong_key_is_refused_and_told() {
    let mut server = Server::start();
    let ffmpeg = ffmpeg_publish(format!("rtmp://{}/live/cam?key=wrong", server.addr));
    let (req, frames) = server.next_publish();
    let (out, _) = ffmpeg.join().unwrap();
    assert_eq!((req.name.as_str(), req.key.as_deref()), ("cam", Some("wrong")));
    assert!(frames.is_none(), "refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ffmpeg must fail: {stderr}");
    assert!(stderr.contains("the publish key is wrong"), "ffmpeg is told why: {stderr}");
    // Nothing else was asked or delivered.
    assert!(server.decided.try_recv().is_err());
}

/// Completes an RTMP handshake as a client.
async fn handshake(socket: &mut TcpStream) {
    let mut hs = Handshake::new(PeerType::Client);
    socket.write_all(&hs.generate_outbound_p0_and_p1().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed during the handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await.unwrap(),
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                socket.write_all(&response_bytes).await.unwrap();
                return;
            }
        }
    }
}

/// How long the server takes to close `socket` after `bad` was written to it (what it
/// answers is read and thrown away; a reset counts as closed).
async fn closed_after(mut socket: TcpStream, bad: &[u8]) -> Duration {
    let start = Instant::now();
    // The server may close before it has read everything.
    let _ = socket.write_all(bad).await;
    let mut buf = vec![0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after 30 s"),
        }
    }
}

/// An AMF0 `connect` command whose object nests `depth` objects, as one RTMP message.
fn nested_connect(depth: usize) -> Vec<u8> {
    let mut amf = vec![2, 0, 7];
    amf.extend_from_slice(b"connect");
    amf.push(0);
    amf.extend_from_slice(&1f64.to_be_bytes());
    amf.extend_from_slice(&[3, 0, 1, b'a'].repeat(depth));
    let message =
        MessagePayload { timestamp: RtmpTimestamp::new(0), type_id: 20, message_stream_id: 0, data: amf.into() };
    ChunkSerializer::new().serialize(&message, true, false).unwrap().bytes
}

#[test]
fn rtmp_garbage_closes_only_its_connection() {
    let mut server = Server::start();
    let addr = server.addr;
    let ffmpeg = ffmpeg_publish(format!("rtmp://{addr}/live/good?key=right"));
    let bad_clients = server.rt.spawn(async move {
        // Connected while the good publisher is on.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let random = crate::common::random_bytes(7, 4096);
        let raw = closed_after(TcpStream::connect(addr).await.unwrap(), &random);
        let after_handshake = async {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            handshake(&mut socket).await;
            closed_after(socket, &random).await
        };
        // Deep enough to overflow a worker's stack in the crate's recursive AMF parser.
        let amf_bomb = async {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            handshake(&mut socket).await;
            closed_after(socket, &nested_connect(100_000)).await
        };
        // A message header shrinking a message midway: the crate's chunk reader panics.
        let shrinking = async {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            handshake(&mut socket).await;
            let mut chunks = vec![3, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0];
            chunks.extend_from_slice(&[0; 128]);
            chunks.extend_from_slice(&[0x43, 0, 0, 0, 0, 0, 10, 9]);
            chunks.extend_from_slice(&[0; 10]);
            closed_after(socket, &chunks).await
        };
        tokio::join!(raw, after_handshake, amf_bomb, shrinking)
    });
    let (req, frames) = server.next_publish();
    let (out, _) = ffmpeg.join().unwrap();
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(req.name, "good");
    let summary = check_ffmpeg_frames(&frames.expect("accepted"));
    let (raw, after_handshake, amf_bomb, shrinking) = server.rt.block_on(bad_clients).unwrap();
    eprintln!(
        "good publisher: {summary}; closed: random bytes after {raw:?}, random chunks after {after_handshake:?}, \
         nested AMF after {amf_bomb:?}, shrinking message after {shrinking:?}"
    );
    for (what, took) in [("random bytes", raw), ("nested AMF", amf_bomb), ("a shrinking message", shrinking)] {
        assert!(took < Duration::from_secs(2), "{what} closed after {took:?}");
    }
    // Random chunks may wait for the rest of a message they announce: the setup timeout ends them.
    assert!(after_handshake < Duration::from_secs(20), "random chunks closed after {after_handshake:?}");
}
