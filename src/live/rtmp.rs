//! RTMP ingest: encoders that only speak RTMP (OBS, ffmpeg, cameras) publish here, and their
//! FLV audio and video become [`MediaFrame`]s like every other ingest's.
//!
//! The protocol (handshake, chunk stream, AMF commands) is `rml_rtmp`'s sans-IO
//! `ServerSession`: this module owns the socket, so reads, writes and waits for the stream's
//! receiver have our timeouts and our backpressure, and a refused publisher is told why before
//! the connection closes. Only H.264 video and AAC audio are taken: what the outputs carry.
//!
//! Two weaknesses of the crate are covered here: its AMF parser recurses without a limit (a
//! few KiB of nested objects overflow the stack and abort the process), so a second chunk
//! reader sees each message first and refuses deep nesting; and malformed chunk headers can
//! make its reader panic, which is caught and ends only that connection.

use super::media::{annex_b_units, avcc_to_annex_b, h264_type, Codec, MediaFrame};
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// A client's request to publish.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The RTMP application (`live` in rtmp://host:port/live/NAME).
    pub app: String,
    /// The stream name without its query (`NAME`).
    pub name: String,
    /// The `key` parameter of the stream name's query (`NAME?key=...`) or of the tcUrl's query, if any.
    pub key: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
}

/// Decides on publish requests.
pub trait Publishers: Send + Sync + 'static {
    /// Ok(sender): accepted, frames go to the sender (the channel closing, i.e. the receiver
    /// dropped, ends the client's session); Err(reason): refused, the client is told and the
    /// connection closes.
    fn publish(&self, req: Publish) -> Pin<Box<dyn Future<Output = Result<mpsc::Sender<MediaFrame>, String>> + Send>>;
}

/// The largest frame handed on; an RTMP message is below 16 MiB, but Annex B start codes
/// can outgrow short NAL length fields.
const MAX_FRAME_BYTES: usize = 16 << 20;
/// Connections served at once: each may hold two partly received 16 MiB messages (the
/// session's and the guard's), so their number bounds the memory strangers can take.
const MAX_CONNECTIONS: usize = 64;
/// From accepting the socket to an accepted publish (handshake, connect, the decision).
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Silence from a client after its setup; encoders send several messages a second.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Writing our (small) replies; a client that does not read them is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 << 10;
/// AMF containers nested in one command or data message; real clients use two or three.
const MAX_AMF_DEPTH: usize = 32;

/// Serves RTMP publishers on `listener` until the task is dropped/aborted; each connection
/// runs in its own task. Play requests are refused (this server only ingests).
pub async fn serve(listener: TcpListener, publishers: Arc<dyn Publishers>) {
    // Owned here so that dropping `serve` ends every connection (and their senders) too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::warn!(%peer, "refusing an RTMP connection: {MAX_CONNECTIONS} are open");
                    drop(socket);
                }
                Ok((socket, peer)) => {
                    let publishers = publishers.clone();
                    let span = tracing::info_span!("rtmp", %peer, stream = tracing::field::Empty);
                    connections.spawn(
                        async move {
                            if let Err(reason) = Connection::new(socket, peer).run(&*publishers).await {
                                tracing::warn!("closing the RTMP connection: {reason}");
                            }
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for connections to end rather than spin.
                    tracing::warn!(error = %e, "accepting an RTMP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended {
                    if e.is_panic() {
                        tracing::error!("an RTMP connection task panicked: {e}");
                    }
                }
            }
        }
    }
}

/// Why a connection ends early: logged as a warning with the client's address.
type Fault = String;

/// What follows a session event.
enum Next {
    /// Going on, with the session's answers to the event.
    Continue(Vec<ServerSessionResult>),
    /// Closing the connection normally.
    End,
}

/// The stream a connection publishes to.
struct Publishing {
    sender: mpsc::Sender<MediaFrame>,
    frames: FlvToFrames,
}

/// One client: its socket, its RTMP session, and the stream it publishes.
struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    setup_deadline: Instant,
    session: Option<ServerSession>,
    guard: MessageGuard,
    /// Replies waiting to be written, in the order the session made them.
    outbound: Vec<u8>,
    publishing: Option<Publishing>,
    /// Whether a publish was accepted once (the setup deadline is then over).
    published: bool,
}

impl Connection {
    fn new(socket: TcpStream, peer: SocketAddr) -> Self {
        Self {
            socket,
            peer,
            setup_deadline: Instant::now() + SETUP_TIMEOUT,
            session: None,
            guard: MessageGuard::new(),
            outbound: Vec::new(),
            publishing: None,
            published: false,
        }
    }

    /// Serves the client until it leaves (Ok) or has to be sent away (Err).
    async fn run(mut self, publishers: &dyn Publishers) -> Result<(), Fault> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut handshake = Handshake::new(PeerType::Server);
        let mut input = loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            match handshake.process_bytes(&buf[..n]).map_err(|e| format!("bad RTMP handshake: {e}"))? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.outbound.extend_from_slice(&response_bytes);
                    self.flush().await?;
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    self.outbound.extend_from_slice(&response_bytes);
                    break remaining_bytes;
                }
            }
        };
        let (session, greeting) =
            ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("starting the RTMP session: {e}"))?;
        self.session = Some(session);
        let mut results: VecDeque<ServerSessionResult> = greeting.into();
        loop {
            if !input.is_empty() {
                results.extend(self.handle_input(&input)?);
            }
            while let Some(result) = results.pop_front() {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => self.outbound.extend_from_slice(&packet.bytes),
                    ServerSessionResult::RaisedEvent(event) => match self.on_event(event, publishers).await? {
                        Next::Continue(answers) => results.extend(answers),
                        Next::End => {
                            // Whatever told the client why goes out first.
                            self.flush().await?;
                            return Ok(());
                        }
                    },
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
            self.flush().await?;
            let n = self.read(&mut buf).await?;
            if n == 0 {
                if self.publishing.take().is_some() {
                    tracing::info!("RTMP publisher disconnected");
                }
                return Ok(());
            }
            input.clear();
            input.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads from the client within the setup deadline, then within the idle timeout.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let idle = Instant::now() + IDLE_TIMEOUT;
        let deadline = if self.published { idle } else { idle.min(self.setup_deadline) };
        match tokio::time::timeout_at(deadline, self.socket.read(buf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(format!("reading from the client: {e}")),
            Err(_) if self.published => Err(format!("the client sent nothing for {}s", IDLE_TIMEOUT.as_secs())),
            Err(_) => Err(format!("the client did not start publishing within {}s", SETUP_TIMEOUT.as_secs())),
        }
    }

    async fn flush(&mut self) -> Result<(), Fault> {
        if self.outbound.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(WRITE_TIMEOUT, self.socket.write_all(&self.outbound)).await {
            Ok(Ok(())) => {
                self.outbound.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(format!("writing to the client: {e}")),
            Err(_) => Err(format!("the client read nothing for {}s", WRITE_TIMEOUT.as_secs())),
        }
    }

    /// Passes received bytes through the guard, then to the session.
    fn handle_input(&mut self, input: &[u8]) -> Result<Vec<ServerSessionResult>, Fault> {
        let Self { guard, session, .. } = self;
        let Some(session) = session.as_mut() else { return Err("no RTMP session".into()) };
        // The crate's chunk reader panics on some malformed headers (a length underflow);
        // the session is dropped with the connection, so nothing broken is used again.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            guard.check(input)?;
            session.handle_input(input).map_err(|e| format!("bad RTMP input: {e}"))
        }));
        outcome.unwrap_or_else(|_| Err("bad RTMP input: the chunk reader failed on it".into()))
    }

    async fn on_event(&mut self, event: ServerSessionEvent, publishers: &dyn Publishers) -> Result<Next, Fault> {
        let session = self.session.as_mut().ok_or("no RTMP session")?;
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                // Who may publish is decided per stream, at publish.
                session.accept_request(request_id).map(Next::Continue).map_err(|e| e.to_string())
            }
            ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
                self.on_publish(request_id, &app_name, &stream_key, publishers).await
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                // Dropping the sender tells the receiver that the stream ended.
                if self.publishing.take().is_some() {
                    tracing::info!("RTMP publisher finished");
                }
                Ok(Next::Continue(Vec::new()))
            }
            ServerSessionEvent::PlayStreamRequested { request_id, stream_key, .. } => {
                tracing::info!(stream = %stream_key, "refusing an RTMP play request: this server only ingests");
                let refusal = session
                    .reject_request(request_id, "NetStream.Play.Failed", "this server only takes publishers")
                    .map_err(|e| e.to_string())?;
                self.queue(refusal);
                Ok(Next::End)
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                let Some(p) = self.publishing.as_mut() else { return Ok(Next::Continue(Vec::new())) };
                let frame = p.frames.video(&data, timestamp.value)?;
                self.hand_on(frame).await
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                let Some(p) = self.publishing.as_mut() else { return Ok(Next::Continue(Vec::new())) };
                let frame = p.frames.audio(&data, timestamp.value)?;
                self.hand_on(frame).await
            }
            _ => Ok(Next::Continue(Vec::new())),
        }
    }

    async fn on_publish(
        &mut self,
        request_id: u32,
        app: &str,
        stream: &str,
        publishers: &dyn Publishers,
    ) -> Result<Next, Fault> {
        let req = publish_request(app, stream, self.peer);
        let decision = if self.publishing.is_some() {
            Err("this connection publishes a stream already".to_string())
        } else {
            // A first publish is part of the setup; one after an unpublish gets as long.
            let decide_by = if self.published { Instant::now() + SETUP_TIMEOUT } else { self.setup_deadline };
            match tokio::time::timeout_at(decide_by, publishers.publish(req.clone())).await {
                Ok(decision) => decision,
                Err(_) => Err("no decision on the publish request in time".to_string()),
            }
        };
        let session = self.session.as_mut().ok_or("no RTMP session")?;
        match decision {
            Ok(sender) => {
                tracing::Span::current().record("stream", req.name.as_str());
                tracing::info!(app = %req.app, "RTMP publisher started");
                self.publishing = Some(Publishing { sender, frames: FlvToFrames::default() });
                self.published = true;
                session.accept_request(request_id).map(Next::Continue).map_err(|e| e.to_string())
            }
            Err(reason) => {
                tracing::info!(app = %req.app, stream = %req.name, %reason, "RTMP publish refused");
                let refusal = session
                    .reject_request(request_id, "NetStream.Publish.Denied", &reason)
                    .map_err(|e| e.to_string())?;
                self.queue(refusal);
                Ok(Next::End)
            }
        }
    }

    fn queue(&mut self, results: Vec<ServerSessionResult>) {
        for result in results {
            if let ServerSessionResult::OutboundResponse(packet) = result {
                self.outbound.extend_from_slice(&packet.bytes);
            }
        }
    }

    /// Sends a frame to the stream's receiver, waiting while its channel is full (the
    /// socket is not read meanwhile, so TCP slows the client down).
    async fn hand_on(&mut self, frame: Option<MediaFrame>) -> Result<Next, Fault> {
        let (Some(frame), Some(p)) = (frame, self.publishing.as_ref()) else { return Ok(Next::Continue(Vec::new())) };
        if p.sender.send(frame).await.is_err() {
            tracing::info!("the stream's receiver is gone; closing the RTMP connection");
            self.publishing = None;
            return Ok(Next::End);
        }
        Ok(Next::Continue(Vec::new()))
    }
}

/// The publish request for stream name `stream` (with its query) in application `app`.
/// The crate hands on the connect command's `app` but not its tcUrl; the tcUrl is
/// `rtmp://host/APP`, so a query on it arrives as the app's.
fn publish_request(app: &str, stream: &str, peer: SocketAddr) -> Publish {
    let (app, app_query) = app.split_once('?').unwrap_or((app, ""));
    let (name, name_query) = stream.split_once('?').unwrap_or((stream, ""));
    Publish {
        app: app.to_string(),
        name: name.to_string(),
        key: query_value(name_query, "key").or_else(|| query_value(app_query, "key")),
        peer,
    }
}

/// The percent-decoded value of `param` in a URL query (`a=1&key=x`); an empty one is none.
fn query_value(query: &str, param: &str) -> Option<String> {
    let raw = query.split('&').find_map(|pair| pair.strip_prefix(param)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned()).filter(|v| !v.is_empty())
}

/// Sees every RTMP message before the session does, with a chunk reader of its own (the
/// crate's, told of chunk size changes like the session's), and refuses AMF messages that
/// nest deeper than the session's recursive parser can take.
struct MessageGuard {
    chunks: ChunkDeserializer,
}

impl MessageGuard {
    fn new() -> Self {
        Self { chunks: ChunkDeserializer::new() }
    }

    fn check(&mut self, input: &[u8]) -> Result<(), Fault> {
        let bad = |e: &dyn std::fmt::Display| format!("bad RTMP input: {e}");
        let mut bytes = input;
        while let Some(message) = self.chunks.get_next_message(bytes).map_err(|e| bad(&e))? {
            bytes = &[];
            let amf0 = match message.type_id {
                1 => {
                    if let Ok(RtmpMessage::SetChunkSize { size }) = message.to_rtmp_message() {
                        if size == 0 {
                            return Err("bad RTMP input: a chunk size of 0".into());
                        }
                        self.chunks.set_max_chunk_size(size as usize).map_err(|e| bad(&e))?;
                    }
                    continue;
                }
                15 | 18 | 20 => &message.data[..],
                // AMF3 commands that are AMF0 after a zero byte, as the session reads them.
                17 => message.data.strip_prefix(&[0]).unwrap_or(&message.data),
                _ => continue,
            };
            if amf0_nesting_exceeds(amf0, MAX_AMF_DEPTH) {
                return Err(format!("bad RTMP input: AMF values nested more than {MAX_AMF_DEPTH} deep"));
            }
        }
        Ok(())
    }
}

/// Whether AMF0 `data` nests objects or arrays deeper than `max_depth`. It walks the values
/// as the session's parser does, and at least as far: where it stops (a value cut short, a
/// marker that parser does not know), that parser fails or stops too.
fn amf0_nesting_exceeds(data: &[u8], max_depth: usize) -> bool {
    enum Open {
        /// An object or ECMA array: keyed values up to an empty key and the end marker.
        Keyed,
        /// A strict array with this many values left.
        Values(u32),
    }
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = data.split_at_checked(n)?;
        *data = rest;
        Some(head)
    }
    fn be(bytes: &[u8]) -> usize {
        bytes.iter().fold(0, |acc, b| (acc << 8) | usize::from(*b))
    }
    let mut rest = data;
    let mut open: Vec<Open> = Vec::new();
    loop {
        match open.last_mut() {
            Some(Open::Keyed) => {
                let Some(key_len) = take(&mut rest, 2).map(be) else { return false };
                if key_len == 0 && rest.first() == Some(&9) {
                    rest = &rest[1..];
                    open.pop();
                    continue;
                }
                if take(&mut rest, key_len).is_none() {
                    return false;
                }
            }
            Some(Open::Values(0)) => {
                open.pop();
                continue;
            }
            Some(Open::Values(left)) => *left -= 1,
            None if rest.is_empty() => return false,
            None => {}
        }
        // One value.
        let Some(marker) = take(&mut rest, 1).map(|m| m[0]) else { return false };
        let skipped = match marker {
            0 => take(&mut rest, 8).is_some(),
            1 => take(&mut rest, 1).is_some(),
            2 => take(&mut rest, 2).map(be).is_some_and(|n| take(&mut rest, n).is_some()),
            3 => {
                open.push(Open::Keyed);
                true
            }
            5 | 6 => true,
            7 => take(&mut rest, 2).is_some(),
            // The session's parser takes an object end marker in a strict array as its end.
            9 if matches!(open.last(), Some(Open::Values(_))) => {
                open.pop();
                true
            }
            8 => {
                open.push(Open::Keyed);
                take(&mut rest, 4).is_some()
            }
            10 => match take(&mut rest, 4).map(be) {
                Some(n) => {
                    open.push(Open::Values(u32::try_from(n).unwrap_or(u32::MAX)));
                    true
                }
                None => false,
            },
            11 => take(&mut rest, 10).is_some(),
            12 | 15 => take(&mut rest, 4).map(be).is_some_and(|n| take(&mut rest, n).is_some()),
            16 => {
                open.push(Open::Keyed);
                take(&mut rest, 2).map(be).is_some_and(|n| take(&mut rest, n).is_some())
            }
            _ => false,
        };
        if open.len() > max_depth {
            return true;
        }
        if !skipped {
            return false;
        }
    }
}

/// A 32-bit millisecond RTMP clock made 64-bit and monotonic.
#[derive(Debug, Default)]
struct Clock {
    last: Option<u32>,
    ms: i64,
}

impl Clock {
    /// Milliseconds for raw timestamp `raw`: the first is taken as it is, later ones advance
    /// by their difference to the previous one modulo 2^32 (so a wrap moves on), and a step
    /// back counts as no time at all (the clock never goes backwards).
    fn unwrap(&mut self, raw: u32) -> i64 {
        match self.last {
            None => self.ms = i64::from(raw),
            Some(last) => self.ms += i64::from((raw.wrapping_sub(last) as i32).max(0)),
        }
        self.last = Some(raw);
        self.ms
    }
}

/// What H.264 frames need from the AVC sequence header (an AVCDecoderConfigurationRecord).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AvcConfig {
    /// The size of the length field before each NAL unit (1, 2 or 4 bytes).
    nal_length_size: usize,
    /// The SPS and PPS units, Annex B, to put before keyframes.
    parameter_sets: Vec<u8>,
}

impl AvcConfig {
    fn parse(record: &[u8]) -> Result<Self, Fault> {
        let [version, _profile, _compatibility, _level, length_size_byte, sps_count_byte, rest @ ..] = record else {
            return Err(TRUNCATED_AVC_CONFIG.into());
        };
        if *version != 1 {
            return Err(format!("an AVC sequence header of version {version}"));
        }
        let nal_length_size = usize::from(length_size_byte & 0x03) + 1;
        if nal_length_size == 3 {
            return Err("an AVC sequence header with 3-byte NAL lengths".into());
        }
        let mut rest = rest;
        let mut parameter_sets = Vec::new();
        let sps_count = sps_count_byte & 0x1f;
        Self::read_units(&mut rest, sps_count, 7, &mut parameter_sets)?;
        let (&pps_count, after) = rest.split_first().ok_or(TRUNCATED_AVC_CONFIG)?;
        rest = after;
        Self::read_units(&mut rest, pps_count, 8, &mut parameter_sets)?;
        if sps_count == 0 || pps_count == 0 {
            return Err("an AVC sequence header without SPS or PPS".into());
        }
        Ok(Self { nal_length_size, parameter_sets })
    }

    /// Moves `count` units of `unit_type` (each after a 16-bit length) from `rest` to `out`, Annex B.
    fn read_units(rest: &mut &[u8], count: u8, unit_type: u8, out: &mut Vec<u8>) -> Result<(), Fault> {
        for _ in 0..count {
            let (len, after) = rest.split_at_checked(2).ok_or(TRUNCATED_AVC_CONFIG)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let (unit, after) = after.split_at_checked(len).ok_or(TRUNCATED_AVC_CONFIG)?;
            *rest = after;
            if h264_type(unit) != unit_type {
                return Err(format!(
                    "an AVC sequence header with a NAL unit of type {} where {unit_type} belongs",
                    h264_type(unit)
                ));
            }
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(unit);
        }
        Ok(())
    }
}

const TRUNCATED_AVC_CONFIG: &str = "a truncated AVC sequence header";

/// FLV audio and video tag bodies of one published stream turned into frames.
#[derive(Default)]
struct FlvToFrames {
    avc: Option<AvcConfig>,
    /// The AAC AudioSpecificConfig.
    asc: Option<Arc<[u8]>>,
    /// Whether the client was told once that its audio is dropped.
    audio_refused: bool,
    video_clock: Clock,
    audio_clock: Clock,
}

/// FLV's name of a video codec id.
fn flv_video_codec(id: u8) -> &'static str {
    match id {
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video 2",
        12 => "HEVC",
        _ => "unknown",
    }
}

impl FlvToFrames {
    /// A video tag body: a frame, or nothing for headers and frames that come before them.
    fn video(&mut self, tag: &[u8], timestamp_ms: u32) -> Result<Option<MediaFrame>, Fault> {
        let Some(&first) = tag.first() else { return Ok(None) };
        if first & 0x80 != 0 {
            return Err("the client sends enhanced RTMP video (a FourCC codec); only H.264 is taken".into());
        }
        let (frame_type, codec_id) = (first >> 4, first & 0x0f);
        if frame_type == 5 {
            // A command frame (seek markers): no picture.
            return Ok(None);
        }
        if codec_id != 7 {
            return Err(format!(
                "the client sends {} video (FLV codec id {codec_id}); only H.264 is taken",
                flv_video_codec(codec_id)
            ));
        }
        let [_, packet_type, c0, c1, c2, body @ ..] = tag else { return Err("a truncated AVC video tag".into()) };
        match packet_type {
            0 => {
                self.avc = Some(AvcConfig::parse(body)?);
                return Ok(None);
            }
            1 => {}
            // The end of the sequence: nothing to hand on.
            _ => return Ok(None),
        }
        // Frames before the sequence header cannot be decoded.
        let Some(avc) = &self.avc else { return Ok(None) };
        let mut data = avcc_to_annex_b(body, avc.nal_length_size)
            .ok_or("an H.264 frame whose NAL unit length runs past its end")?;
        if data.is_empty() {
            return Ok(None);
        }
        let keyframe = frame_type == 1;
        if keyframe {
            let types: Vec<u8> = annex_b_units(&data).map(h264_type).collect();
            if !(types.contains(&7) && types.contains(&8)) {
                data.splice(0..0, avc.parameter_sets.iter().copied());
            }
        }
        if data.len() > MAX_FRAME_BYTES {
            return Err(format!("an H.264 frame of {} bytes (at most {MAX_FRAME_BYTES})", data.len()));
        }
        // The composition time offset is a signed 24-bit number of milliseconds.
        let cts_ms = i32::from_be_bytes([*c0, *c1, *c2, 0]) >> 8;
        Ok(Some(MediaFrame {
            codec: Codec::H264,
            dts_us: self.video_clock.unwrap(timestamp_ms) * 1000,
            cts_us: i64::from(cts_ms) * 1000,
            keyframe,
            data: data.into(),
            config: None,
        }))
    }

    /// An audio tag body: an AAC frame, or nothing for its header, for frames before it and
    /// for other formats (dropped with one warning: the video goes on).
    fn audio(&mut self, tag: &[u8], timestamp_ms: u32) -> Result<Option<MediaFrame>, Fault> {
        let Some(&first) = tag.first() else { return Ok(None) };
        let sound_format = first >> 4;
        if sound_format != 10 {
            if !self.audio_refused {
                self.audio_refused = true;
                tracing::warn!(sound_format, "the RTMP client sends audio other than AAC; dropping its audio");
            }
            return Ok(None);
        }
        match tag.get(1) {
            Some(0) => {
                let asc = &tag[2..];
                if asc.len() < 2 {
                    return Err("a truncated AAC sequence header".into());
                }
                self.asc = Some(asc.into());
                Ok(None)
            }
            Some(1) => {
                let (Some(asc), raw) = (&self.asc, &tag[2..]) else { return Ok(None) };
                if raw.is_empty() {
                    return Ok(None);
                }
                Ok(Some(MediaFrame {
                    codec: Codec::Aac,
                    dts_us: self.audio_clock.unwrap(timestamp_ms) * 1000,
                    cts_us: 0,
                    keyframe: false,
                    data: raw.into(),
                    config: Some(asc.clone()),
                }))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AVCDecoderConfigurationRecord with 4-byte lengths, one SPS and one PPS.
    const AVC_RECORD: [u8; 17] = [1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 1, 2, 3, 1, 0, 2, 0x68, 9];

    #[test]
    fn avc_config_record_gives_length_size_and_parameter_sets() {
        let config = AvcConfig::parse(&AVC_RECORD).unwrap();
        assert_eq!(config.nal_length_size, 4);
        assert_eq!(config.parameter_sets, [0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 9]);
        let mut two_bytes = AVC_RECORD;
        two_bytes[4] = 0xfd;
        assert_eq!(AvcConfig::parse(&two_bytes).unwrap().nal_length_size, 2);
        // High profiles may add fields after the PPS; they are not needed.
        assert!(AvcConfig::parse(&[&AVC_RECORD[..], &[0xfc, 0xf8, 0xf8, 0]].concat()).is_ok());
    }

    #[test]
    fn bad_avc_config_records_are_refused() {
        for len in 0..AVC_RECORD.len() {
            let err = AvcConfig::parse(&AVC_RECORD[..len]).unwrap_err();
            assert!(err.contains("truncated") || err.contains("without"), "{len} bytes: {err}");
        }
        let with = |at: usize, byte: u8| {
            let mut r = AVC_RECORD;
            r[at] = byte;
            AvcConfig::parse(&r).unwrap_err()
        };
        assert!(with(0, 0).contains("version 0"));
        assert!(with(4, 0xfe).contains("3-byte"));
        assert!(with(8, 0x68).contains("type 8 where 7"), "a PPS in the SPS's place");
        let no_sps = [1, 0x64, 0, 0x1f, 0xff, 0xe0, 1, 0, 2, 0x68, 9];
        assert!(AvcConfig::parse(&no_sps).unwrap_err().contains("without SPS or PPS"));
        let no_pps = [&AVC_RECORD[..12], &[0]].concat();
        assert!(AvcConfig::parse(&no_pps).unwrap_err().contains("without SPS or PPS"));
    }

    #[test]
    fn clock_unwraps_32_bit_timestamps_and_never_goes_back() {
        let mut clock = Clock::default();
        assert_eq!(clock.unwrap(1000), 1000, "the first timestamp is taken as it is");
        assert_eq!(clock.unwrap(1040), 1040);
        assert_eq!(clock.unwrap(1040), 1040);
        assert_eq!(clock.unwrap(1020), 1040, "a step back");
        assert_eq!(clock.unwrap(1060), 1080, "counts from the step back");
        let mut clock = Clock::default();
        assert_eq!(clock.unwrap(u32::MAX - 15), i64::from(u32::MAX) - 15);
        assert_eq!(clock.unwrap(16), i64::from(u32::MAX) + 17, "past the wrap");
        assert_eq!(clock.unwrap(56), i64::from(u32::MAX) + 57);
    }

    #[test]
    fn publish_request_splits_name_and_key() {
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let req = publish_request("live", "cam?key=right", peer);
        assert_eq!((req.app.as_str(), req.name.as_str(), req.key.as_deref()), ("live", "cam", Some("right")));
        assert_eq!(req.peer, peer);
        let key = |app: &str, name: &str| publish_request(app, name, peer).key;
        assert_eq!(key("live", "cam"), None);
        assert_eq!(key("live", "cam?key="), None, "empty");
        assert_eq!(key("live", "cam?a=1&key=k%2Fy%3d&b=2"), Some("k/y=".into()), "percent-decoded");
        assert_eq!(key("live", "cam?keys=1&monkey=2"), None, "other parameters");
        assert_eq!(key("live", "cam?key=100%"), Some("100%".into()), "a lone % stays");
        assert_eq!(key("live", "cam?key=%+5"), Some("%+5".into()), "so does one before no hex digits");
        assert_eq!(key("live?key=fromurl", "cam"), Some("fromurl".into()), "the tcUrl's query");
        assert_eq!(key("live?key=fromurl", "cam?key=fromname"), Some("fromname".into()));
        let req = publish_request("live?key=x", "cam", peer);
        assert_eq!((req.app.as_str(), req.name.as_str()), ("live", "cam"));
    }

    fn avc_tag(frame_type: u8, packet_type: u8, cts_ms: i32, body: &[u8]) -> Vec<u8> {
        let cts = cts_ms.to_be_bytes();
        [&[frame_type << 4 | 7, packet_type, cts[1], cts[2], cts[3]][..], body].concat()
    }

    #[test]
    fn flv_video_becomes_annex_b_frames() {
        let mut flv = FlvToFrames::default();
        let idr = [0, 0, 0, 3, 0x65, 1, 2];
        assert!(flv.video(&avc_tag(1, 1, 0, &idr), 0).unwrap().is_none(), "before the sequence header");
        assert!(flv.video(&avc_tag(1, 0, 0, &AVC_RECORD), 0).unwrap().is_none());
        let key = flv.video(&avc_tag(1, 1, 80, &idr), 40).unwrap().unwrap();
        assert_eq!((key.codec, key.keyframe, key.dts_us, key.cts_us), (Codec::H264, true, 40_000, 80_000));
        let units: Vec<&[u8]> = annex_b_units(&key.data).collect();
        assert_eq!(units, [&[0x67, 1, 2, 3][..], &[0x68, 9], &[0x65, 1, 2]], "SPS and PPS put before it");
        let delta = flv.video(&avc_tag(2, 1, -40, &[0, 0, 0, 2, 0x41, 7]), 80).unwrap().unwrap();
        assert_eq!((delta.keyframe, delta.dts_us, delta.cts_us), (false, 80_000, -40_000));
        assert_eq!(&delta.data[..], [0, 0, 0, 1, 0x41, 7]);
        let carrying = [&[0, 0, 0, 2, 0x67, 5, 0, 0, 0, 1, 0x68][..], &idr].concat();
        let key = flv.video(&avc_tag(1, 1, 0, &carrying), 120).unwrap().unwrap();
        assert_eq!(annex_b_units(&key.data).count(), 3, "its own SPS and PPS are enough");
        assert!(flv.video(&avc_tag(2, 1, 0, &[0, 0, 0, 9, 0x41]), 160).is_err(), "a length past the end");
        assert!(flv.video(&avc_tag(1, 2, 0, &[]), 160).unwrap().is_none(), "end of sequence");
        assert!(flv.video(&[0x17, 1, 0], 160).is_err(), "truncated tag");
        assert!(flv.video(&[0x52, 0], 160).unwrap().is_none(), "a command frame");
        assert!(flv.video(&avc_tag(1, 0, 0, &AVC_RECORD[..9]), 160).is_err(), "a truncated record");
        let err = flv.video(&[0x12, 0, 0], 160).unwrap_err();
        assert!(err.contains("Sorenson H.263") && err.contains("only H.264"), "{err}");
        assert!(flv.video(&[0x90, b'h', b'v', b'c', b'1'], 160).unwrap_err().contains("enhanced"));
    }

    #[test]
    fn flv_audio_becomes_aac_frames_and_other_formats_are_dropped() {
        let mut flv = FlvToFrames::default();
        assert!(flv.audio(&[0xaf, 1, 0x21, 0x10], 0).unwrap().is_none(), "before the AudioSpecificConfig");
        assert!(flv.audio(&[0xaf, 0, 0x11], 0).unwrap_err().contains("truncated"));
        assert!(flv.audio(&[0xaf, 0, 0x11, 0x90], 0).unwrap().is_none());
        let frame = flv.audio(&[0xaf, 1, 0x21, 0x10], 21).unwrap().unwrap();
        assert_eq!((frame.codec, frame.keyframe, frame.dts_us, frame.cts_us), (Codec::Aac, false, 21_000, 0));
        assert_eq!((&frame.data[..], frame.config.as_deref()), (&[0x21, 0x10][..], Some(&[0x11, 0x90][..])));
        assert!(flv.audio(&[0x2f, 1, 2, 3], 42).unwrap().is_none(), "MP3");
        assert!(flv.audio(&[0x2f, 1, 2, 3], 42).unwrap().is_none());
        assert!(flv.audio_refused);
    }

    #[test]
    fn amf0_nesting_is_measured_without_recursion() {
        // connect(1, {app: "live", flashVer: "FMLE/3.0"}).
        let mut connect = vec![2, 0, 7];
        connect.extend_from_slice(b"connect");
        connect.push(0);
        connect.extend_from_slice(&1f64.to_be_bytes());
        connect.extend_from_slice(&[3, 0, 3, b'a', b'p', b'p', 2, 0, 4, b'l', b'i', b'v', b'e']);
        connect.extend_from_slice(&[0, 8, b'f', b'l', b'a', b's', b'h', b'V', b'e', b'r', 2, 0, 3, b'F', b'M', b'L']);
        connect.extend_from_slice(&[0, 0, 9, 5]);
        assert!(!amf0_nesting_exceeds(&connect, 1));
        let nested = |depth: usize, open: &[u8], close: &[u8]| [open.repeat(depth), close.repeat(depth)].concat();
        // Objects holding one property `a` each.
        let objects = nested(40, &[3, 0, 1, b'a'], &[0, 0, 9]);
        assert!(amf0_nesting_exceeds(&objects, MAX_AMF_DEPTH));
        assert!(!amf0_nesting_exceeds(&objects, 40));
        assert!(amf0_nesting_exceeds(&objects[..200], MAX_AMF_DEPTH), "even when cut short");
        // Strict arrays of one element each, and an ECMA array as the deepest.
        let arrays = [nested(20, &[10, 0, 0, 0, 1], &[]), vec![8, 0, 0, 0, 0, 0, 0, 9]].concat();
        assert!(!amf0_nesting_exceeds(&arrays, 21));
        assert!(amf0_nesting_exceeds(&arrays, 20));
        // A million nested objects take no stack.
        assert!(amf0_nesting_exceeds(&[3, 0, 1, b'a'].repeat(1 << 20), MAX_AMF_DEPTH));
        assert!(!amf0_nesting_exceeds(&[0xff; 64], 1), "unknown markers end the walk");
        // An end marker ends a strict array early; what follows is still walked.
        let after_short_array = [&[10, 0, 0, 0, 9, 9][..], &objects].concat();
        assert!(amf0_nesting_exceeds(&after_short_array, MAX_AMF_DEPTH));
        assert!(!amf0_nesting_exceeds(&[], 1));
    }
}
