//! The forwarding loop: one tokio task owns every WebRTC session (a `str0m::Rtc`) and
//! the UDP sockets they share. Datagrams are handed to the session that accepts them; a
//! publisher's frames are written to each viewer of its stream; keyframe requests go the
//! other way. Work is queued and drained so a session is never borrowed twice.

use super::hub::Hub;
use super::media::{Codec, MediaFrame};
use super::simulcast::{self, LayerRates};
use super::{LiveStatus, Refusal, SessionId, StreamRef};
use crate::gallery::streams::LiveState;
use crate::gallery::Galleries;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Addresses offered as host candidates, one UDP socket each.
    pub addresses: Vec<IpAddr>,
    /// Their UDP port (0: a free one).
    pub port: u16,
    /// Streams published at once.
    pub max_streams: u32,
    /// WebRTC viewers of one stream.
    pub max_viewers: u32,
    /// How long a stream outlives its publisher, waiting for it to come back.
    pub grace: Duration,
    /// WebRTC sessions are taken (else the loop serves RTMP publishers alone).
    pub webrtc: bool,
}

impl SfuConfig {
    /// The settings of `[media.streaming]`; `listen` is the sidecar's address, offered
    /// when no addresses are configured and it is a specific one.
    #[must_use]
    pub fn from_config(st: &crate::config::Streaming, listen: Option<IpAddr>) -> Self {
        let addresses = if !st.enable_webrtc {
            Vec::new()
        } else if !st.webrtc_addresses.is_empty() {
            st.webrtc_addresses.clone()
        } else {
            match listen {
                Some(ip) if !ip.is_unspecified() => vec![ip],
                _ => interface_addresses(),
            }
        };
        Self {
            addresses,
            port: st.webrtc_port,
            max_streams: st.max_concurrent_streams,
            max_viewers: st.max_viewers_per_stream,
            grace: Duration::from_secs(u64::from(st.live_grace_seconds)),
            webrtc: st.enable_webrtc,
        }
    }
}

/// IPv4 addresses of the interfaces that are up (loopback last), and global IPv6 ones.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                let ip = v6.ip();
                // Link-local addresses need a scope id that candidates cannot carry.
                if (ip.segments()[0] & 0xffc0) != 0xfe80 && !ip.is_loopback() {
                    out.push(IpAddr::V6(ip));
                }
            }
        }
    }
    out.sort_by_key(IpAddr::is_loopback);
    out.dedup();
    out
}

/// The handle of the loop.
pub struct Sfu {
    commands: mpsc::UnboundedSender<Command>,
    ingested: mpsc::Sender<Ingested>,
    candidates: Vec<SocketAddr>,
    cert: DtlsCert,
}

/// What the loop is asked.
enum Command {
    Join {
        stream: StreamRef,
        publisher: bool,
        id: SessionId,
        rtc: Box<Rtc>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    End {
        id: SessionId,
        reply: oneshot::Sender<bool>,
    },
    EndStream {
        name: String,
        publisher_only: bool,
    },
    Status {
        name: String,
        reply: oneshot::Sender<Option<LiveStatus>>,
    },
    /// A publisher from outside WebRTC (RTMP): its frames come as `Ingested`; dropping
    /// `stop` ends its connection.
    Ingest {
        stream: StreamRef,
        id: SessionId,
        how: &'static str,
        stop: oneshot::Sender<()>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Sessions {
        name: String,
        reply: oneshot::Sender<Vec<SessionId>>,
    },
}

impl Sfu {
    /// Binds the UDP sockets and starts the loop on the current tokio runtime.
    pub async fn start(config: SfuConfig, galleries: Arc<Galleries>, hub: Arc<Hub>) -> std::io::Result<Arc<Self>> {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("cannot make a DTLS certificate"))?;
        if config.addresses.is_empty() && config.webrtc {
            return Err(std::io::Error::other(
                "no address to offer WebRTC peers (set media.streaming.webrtc_addresses)",
            ));
        }
        let mut sockets = Vec::new();
        let mut port = config.port;
        for ip in &config.addresses {
            let socket = UdpSocket::bind(SocketAddr::new(*ip, port))
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("WebRTC UDP {ip}:{port}: {e}")))?;
            // Every address gets the port the first one got.
            port = socket.local_addr()?.port();
            enlarge_buffers(&socket);
            sockets.push(Arc::new(socket));
        }
        let candidates: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr()).collect::<Result<_, _>>()?;
        tracing::info!(?candidates, "WebRTC media sockets");
        let (commands, rx) = mpsc::unbounded_channel();
        let (ingested, ingested_rx) = mpsc::channel(INGEST_QUEUE);
        let state = Loop::new(config, sockets, galleries, hub);
        tokio::spawn(state.run(rx, ingested_rx));
        Ok(Arc::new(Self { commands, ingested, candidates, cert }))
    }

    /// The addresses peers send media to.
    #[must_use]
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// A session for `offer`, not yet in the loop: its answer and its `Rtc`.
    fn answer(&self, offer: &str, publisher: bool) -> Result<(String, Rtc), Refusal> {
        // The parser's own message points into memory; people need to know where.
        let offer = SdpOffer::from_sdp_string(offer).map_err(|_| Refusal::BadOffer(malformed_line(offer)))?;
        let builder = Rtc::builder();
        // A viewer's egress is estimated (TWCC) to choose its simulcast layer.
        let builder = if publisher {
            builder
        } else {
            // Its send statistics show loss (NACKs) sooner than the estimate falls.
            builder.enable_bwe(Some(INITIAL_ESTIMATE)).set_stats_interval(Some(STATS_INTERVAL))
        };
        let mut rtc = builder
            .set_ice_lite(true)
            .set_dtls_cert(self.cert.clone())
            .clear_codecs()
            .enable_h264(true)
            .enable_vp8(true)
            .enable_opus(true, false)
            .build(Instant::now());
        for c in &self.candidates {
            let cand = Candidate::host(*c, "udp").map_err(|e| Refusal::Unavailable(e.to_string()))?;
            rtc.add_local_candidate(cand);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| Refusal::BadOffer(e.to_string()))?;
        Ok((answer.to_sdp_string(), rtc))
    }

    async fn join(&self, stream: StreamRef, offer: &str, publisher: bool) -> Result<(SessionId, String), Refusal> {
        let (answer, rtc) = self.answer(offer, publisher)?;
        let id = SessionId::random();
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Join { stream, publisher, id, rtc: Box::new(rtc), reply };
        self.commands.send(cmd).map_err(|_| Refusal::Unavailable("the media loop has stopped".into()))?;
        rx.await.map_err(|_| Refusal::Unavailable("the media loop has stopped".into()))??;
        Ok((id, answer))
    }

    /// Answers a publisher's offer (WHIP); refused while another publishes to the stream
    /// or when `max_streams` others are live.
    pub async fn publish(&self, stream: StreamRef, offer: &str) -> Result<(SessionId, String), Refusal> {
        self.join(stream, offer, true).await
    }

    /// Answers a viewer's offer (WHEP); refused when nobody publishes or the stream has
    /// `max_viewers` viewers.
    pub async fn view(&self, stream: StreamRef, offer: &str) -> Result<(SessionId, String), Refusal> {
        self.join(stream, offer, false).await
    }

    /// Takes a publisher from outside WebRTC (`how`: `rtmp`): returns where its frames go.
    /// Its video reaches WebRTC viewers when it is H.264 (AAC audio does not: WebRTC
    /// carries Opus), and everything reaches the packager and the recording. Dropping the
    /// sender ends its session; the loop ends it (closing the sender) when its key changes.
    pub async fn ingest(&self, stream: StreamRef, how: &'static str) -> Result<mpsc::Sender<MediaFrame>, Refusal> {
        let id = SessionId::random();
        let (stop, mut stopped) = oneshot::channel();
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Ingest { stream, id, how, stop, reply };
        self.commands.send(cmd).map_err(|_| Refusal::Unavailable("the media loop has stopped".into()))?;
        rx.await.map_err(|_| Refusal::Unavailable("the media loop has stopped".into()))??;
        let (tx, mut frames) = mpsc::channel::<MediaFrame>(INGEST_QUEUE);
        let to_loop = self.ingested.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    f = frames.recv() => match f {
                        Some(f) => {
                            if to_loop.send(Ingested::Frame(id, f)).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = &mut stopped => break,
                }
            }
            let _ = to_loop.send(Ingested::End(id)).await;
        });
        Ok(tx)
    }

    /// Ends a session; false when there is no such session.
    pub async fn end(&self, id: SessionId) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::End { id, reply }).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Ends a stream's publisher (its key changed), or every session of it.
    pub fn end_stream(&self, name: &str, publisher_only: bool) {
        let _ = self.commands.send(Command::EndStream { name: name.into(), publisher_only });
    }

    /// Ends viewer sessions (their access ended).
    pub fn kick(&self, ids: Vec<SessionId>) {
        for id in ids {
            let (reply, _) = oneshot::channel();
            let _ = self.commands.send(Command::End { id, reply });
        }
    }

    /// The stream's state in the loop, if it is live.
    pub async fn status(&self, name: &str) -> Option<LiveStatus> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Status { name: name.into(), reply }).ok()?;
        rx.await.ok().flatten()
    }

    /// The sessions of a stream, its publisher's included.
    pub async fn sessions(&self, name: &str) -> Vec<SessionId> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Sessions { name: name.into(), reply }).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// Frames of publishers from outside WebRTC, queued to the loop.
const INGEST_QUEUE: usize = 256;

/// What an outside publisher's forwarder tells the loop.
enum Ingested {
    Frame(SessionId, MediaFrame),
    End(SessionId),
}

/// A received datagram.
struct Datagram {
    local: SocketAddr,
    source: SocketAddr,
    data: Vec<u8>,
}

/// A publisher's frame, as forwarded.
struct Frame {
    kind: MediaKind,
    rid: Option<Rid>,
    /// The publisher's payload type (`None`: from outside WebRTC, H.264 by construction).
    params: Option<PayloadParams>,
    /// The frame as an outside publisher gave it (the packager takes it as it is).
    ingested: Option<MediaFrame>,
    network_time: Instant,
    time: MediaTime,
    keyframe: bool,
    data: Arc<[u8]>,
}

/// Work drained by the loop.
enum Work {
    Poll(SessionId),
    Forward(String, Arc<Frame>),
    /// A viewer of the stream needs a keyframe (of the layer, if any).
    Keyframe(String, Option<Rid>),
    /// A viewer's simulcast layer is chosen again (its estimate or the layers changed).
    Layer(SessionId),
}

struct Session {
    stream: StreamRef,
    publisher: bool,
    rtc: Rtc,
    /// When it wants `Input::Timeout` next.
    next: Instant,
    connected: bool,
    /// Media lines and their kinds: incoming for a publisher, outgoing for a viewer.
    media: Vec<(Mid, MediaKind)>,
    /// A viewer forwards video from a keyframe on.
    waiting_keyframe: bool,
    /// The simulcast layer a viewer receives.
    layer: Option<Rid>,
    /// The layer it moves to at that layer's next keyframe.
    pending_layer: Option<Rid>,
    /// The move is down: the current layer no longer fits, so it stops at once rather
    /// than crowd out the keyframe of the lower one (the picture holds meanwhile).
    pending_down: bool,
    /// A viewer's estimated bandwidth, bits per second.
    estimate: Option<u64>,
    /// Video packets sent and NACKs received, as last counted.
    egress: (u64, u64),
    /// When its video last lost packets to congestion (NACKs for many of them).
    congested_at: Option<Instant>,
    /// When it last moved to another layer.
    switched_at: Option<Instant>,
    /// The minimum and desired rates last given to its bandwidth estimator.
    bwe_rates: (u64, u64),
    /// Added to forwarded video times, so that they run on across a layer switch (each
    /// layer's RTP clock starts anywhere).
    video_offset: i64,
    /// The last video time written to a viewer, and when its frame arrived.
    last_video: Option<(i64, Instant)>,
}

impl Session {
    /// The time a video frame is written to this viewer with; `switched`: the first
    /// frame of a new layer, whose clock is aligned on the frames' arrival.
    fn video_time(&mut self, frame: &Frame, switched: bool) -> MediaTime {
        let numer = frame.time.numer() as i64;
        if switched {
            if let Some((last, at)) = self.last_video {
                let gap_us = frame.network_time.saturating_duration_since(at).as_micros() as i64;
                let gap = (gap_us * i64::from(frame.time.denom()) / 1_000_000).max(1);
                self.video_offset = last + gap - numer;
            }
        }
        let out = (numer + self.video_offset).max(0);
        self.last_video = Some((out, frame.network_time));
        MediaTime::new(out as u64, frame.time.frequency())
    }
}

/// One live stream in the loop.
struct Live {
    stream: StreamRef,
    publisher: Option<SessionId>,
    viewers: Vec<SessionId>,
    /// Since when it has had no publisher.
    orphaned: Option<Instant>,
    since: i64,
    codecs: Vec<String>,
    layers: Vec<Rid>,
    /// The simulcast layers' measured rates.
    rates: LayerRates,
    /// When a keyframe of each layer was last asked for.
    last_keyframe_request: HashMap<Option<Rid>, Instant>,
    /// The viewer count last announced.
    announced_viewers: u32,
    /// Where its frames are packaged for HTTP viewers and the recording.
    tap: Option<mpsc::Sender<MediaFrame>>,
    /// Each kind's first RTP time and arrival, microseconds: frames are timed on the
    /// arrival clock, so audio and video stay together whatever their RTP origins.
    clocks: HashMap<MediaKind, (i64, i64)>,
    /// When the packager last asked the publisher for a keyframe (segments start on one).
    last_segment_keyframe: Option<Instant>,
    /// How its publisher sends (`whip`, `rtmp`).
    ingest: String,
}

/// A viewer's bandwidth estimate before its first feedback.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(2500);

/// How often a viewer's send statistics are taken.
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// A viewer that lost packets to congestion stays below its layer this long.
const CONGESTION_HOLD: Duration = Duration::from_secs(3);
/// Loss this soon after a layer switch is not counted.
const SETTLE: Duration = Duration::from_secs(1);

/// Keyframe requests to a publisher, at most this often (per layer).
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

struct Loop {
    config: SfuConfig,
    sockets: Vec<Arc<UdpSocket>>,
    galleries: Arc<Galleries>,
    sessions: HashMap<SessionId, Session>,
    /// The session a remote address last reached, tried first.
    by_source: HashMap<SocketAddr, SessionId>,
    streams: HashMap<String, Live>,
    work: VecDeque<Work>,
    /// Sessions' timeouts, soonest first; an entry whose session has since moved its
    /// timeout is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    hub: Arc<Hub>,
    /// Origin of the arrival clock.
    epoch: Instant,
    /// Publishers from outside WebRTC, by session: dropping the handle ends them.
    external: HashMap<SessionId, oneshot::Sender<()>>,
}

impl Loop {
    fn new(config: SfuConfig, sockets: Vec<Arc<UdpSocket>>, galleries: Arc<Galleries>, hub: Arc<Hub>) -> Self {
        Self {
            config,
            sockets,
            galleries,
            hub,
            epoch: Instant::now(),
            external: HashMap::new(),
            sessions: HashMap::new(),
            by_source: HashMap::new(),
            streams: HashMap::new(),
            work: VecDeque::new(),
            timers: BinaryHeap::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, mut ingested: mpsc::Receiver<Ingested>) {
        let (tx, mut datagrams) = mpsc::channel::<Datagram>(4096);
        let readers: Vec<_> = self.sockets.iter().map(|s| tokio::spawn(read_socket(s.clone(), tx.clone()))).collect();
        drop(tx);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        loop {
            let wake = self.next_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                Some(d) = datagrams.recv() => self.datagram(&d),
                Some(i) = ingested.recv() => self.ingested(i),
                () = tokio::time::sleep_until(wake.into()) => self.timeouts(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.drain();
        }
        for r in readers {
            r.abort();
        }
        for name in self.streams.keys() {
            self.galleries.set_live(name, None);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join { stream, publisher, id, rtc, reply } => {
                let result = self.admit(&stream, publisher, id, "whip");
                if result.is_ok() {
                    let session = Session {
                        stream,
                        publisher,
                        rtc: *rtc,
                        next: Instant::now(),
                        connected: false,
                        media: Vec::new(),
                        waiting_keyframe: true,
                        layer: None,
                        pending_layer: None,
                        pending_down: false,
                        estimate: None,
                        egress: (0, 0),
                        congested_at: None,
                        switched_at: None,
                        bwe_rates: (0, 0),
                        video_offset: 0,
                        last_video: None,
                    };
                    self.sessions.insert(id, session);
                    self.work.push_back(Work::Poll(id));
                }
                let _ = reply.send(result);
            }
            Command::End { id, reply } => {
                let found = self.sessions.contains_key(&id);
                self.close(id);
                let _ = reply.send(found);
            }
            Command::EndStream { name, publisher_only } => {
                let Some(live) = self.streams.get(&name) else { return };
                let ids: Vec<SessionId> = if publisher_only {
                    live.publisher.into_iter().collect()
                } else {
                    live.publisher.into_iter().chain(live.viewers.iter().copied()).collect()
                };
                for id in ids {
                    self.close(id);
                }
                if !publisher_only {
                    self.end_live(&name);
                }
            }
            Command::Ingest { stream, id, how, stop, reply } => {
                let result = self.admit(&stream, true, id, how);
                if result.is_ok() {
                    self.external.insert(id, stop);
                }
                let _ = reply.send(result);
            }
            Command::Status { name, reply } => {
                let status = self.streams.get(&name).map(|l| LiveStatus {
                    publishing: l.publisher.is_some(),
                    viewers: l.viewers.len() as u32,
                    codecs: l.codecs.clone(),
                    layers: l.layers.iter().map(ToString::to_string).collect(),
                });
                let _ = reply.send(status);
            }
            Command::Sessions { name, reply } => {
                let ids =
                    self.streams.get(&name).map(|l| l.publisher.into_iter().chain(l.viewers.iter().copied()).collect());
                let _ = reply.send(ids.unwrap_or_default());
            }
        }
    }

    /// Whether a session may join, and its place in the stream if so.
    fn admit(&mut self, stream: &StreamRef, publisher: bool, id: SessionId, how: &str) -> Result<(), Refusal> {
        if publisher {
            match self.streams.get_mut(&stream.name) {
                Some(live) if live.publisher.is_some() => return Err(Refusal::Busy(stream.name.clone())),
                Some(live) => {
                    live.publisher = Some(id);
                    live.orphaned = None;
                    // The new publisher's RTP clocks start anywhere.
                    live.clocks.clear();
                    live.ingest = how.to_string();
                }
                None => {
                    if self.streams.len() >= self.config.max_streams as usize {
                        return Err(Refusal::TooManyStreams(self.config.max_streams));
                    }
                    self.streams.insert(
                        stream.name.clone(),
                        Live {
                            stream: stream.clone(),
                            publisher: Some(id),
                            viewers: Vec::new(),
                            orphaned: None,
                            since: crate::gallery::now(),
                            codecs: Vec::new(),
                            layers: Vec::new(),
                            rates: LayerRates::default(),
                            last_keyframe_request: HashMap::new(),
                            announced_viewers: 0,
                            tap: self.hub.begin(stream),
                            clocks: HashMap::new(),
                            last_segment_keyframe: None,
                            ingest: how.to_string(),
                        },
                    );
                    self.galleries.set_live(
                        &stream.name,
                        Some(LiveState { since: crate::gallery::now(), viewers: 0, ingest: how.into() }),
                    );
                    if let Some(g) = &stream.gallery {
                        self.galleries.announce_gallery(
                            g,
                            "live.started",
                            serde_json::json!({ "stream": stream.name }),
                        );
                    }
                }
            }
            tracing::info!(stream = %stream.name, session = %id, "publisher joined");
            Ok(())
        } else {
            let Some(live) = self.streams.get_mut(&stream.name) else {
                return Err(Refusal::NotLive(stream.name.clone()));
            };
            if live.viewers.len() as u32 + self.hub.http_viewers(&stream.name) >= self.config.max_viewers {
                return Err(Refusal::TooManyViewers(self.config.max_viewers));
            }
            live.viewers.push(id);
            Ok(())
        }
    }

    fn datagram(&mut self, d: &Datagram) {
        let Ok(contents) = d.data.as_slice().try_into() else { return };
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source: d.source, destination: d.local, contents },
        );
        let known = self
            .by_source
            .get(&d.source)
            .copied()
            .filter(|id| self.sessions.get(id).is_some_and(|s| s.rtc.accepts(&input)));
        let Some(id) = known.or_else(|| self.sessions.iter().find(|(_, s)| s.rtc.accepts(&input)).map(|(id, _)| *id))
        else {
            return;
        };
        self.by_source.insert(d.source, id);
        let s = self.sessions.get_mut(&id).expect("found above");
        if let Err(e) = s.rtc.handle_input(input) {
            tracing::debug!(session = %id, error = %e, "WebRTC input failed; ending the session");
            s.rtc.disconnect();
        }
        self.work.push_back(Work::Poll(id));
    }

    /// The soonest timeout of a session, dropping stale entries.
    fn next_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if self.sessions.get(&id).is_some_and(|s| s.next == t) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.sessions.get(&id).is_some_and(|s| s.next == t) {
                due.push(id);
            }
        }
        for id in due {
            if let Some(s) = self.sessions.get_mut(&id) {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(session = %id, error = %e, "WebRTC timeout failed; ending the session");
                    s.rtc.disconnect();
                }
                self.work.push_back(Work::Poll(id));
            }
        }
    }

    /// Drains the work queue, then drops dead sessions.
    fn drain(&mut self) {
        while let Some(w) = self.work.pop_front() {
            match w {
                Work::Poll(id) => self.poll(id),
                Work::Forward(stream, frame) => self.forward(&stream, &frame),
                Work::Keyframe(stream, rid) => self.request_keyframe(&stream, rid),
                Work::Layer(id) => self.choose_layer(id),
            }
        }
        self.reap();
    }

    /// Takes a session's output until it wants a timeout.
    fn poll(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        loop {
            if !s.rtc.is_alive() {
                return;
            }
            let out = match s.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(session = %id, error = %e, "WebRTC output failed; ending the session");
                    s.rtc.disconnect();
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    if s.next != t {
                        s.next = t;
                        self.timers.push(Reverse((t, id)));
                    }
                    return;
                }
                Output::Transmit(t) => {
                    if let Some(sock) = self.sockets.iter().find(|k| k.local_addr().ok() == Some(t.source)) {
                        // A full socket buffer drops the datagram, as the network would.
                        let _ = sock.try_send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        s.connected = true;
                        if !s.publisher {
                            self.work.push_back(Work::Keyframe(s.stream.name.clone(), s.layer));
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => s.rtc.disconnect(),
                    Event::MediaAdded(m) => {
                        let ours = if s.publisher { Direction::RecvOnly } else { Direction::SendOnly };
                        if m.direction == ours || m.direction == Direction::SendRecv {
                            s.media.push((m.mid, m.kind));
                        }
                    }
                    Event::MediaData(data) if s.publisher => {
                        let Some(kind) = s.media.iter().find(|(mid, _)| *mid == data.mid).map(|(_, k)| *k) else {
                            continue;
                        };
                        if !data.contiguous && kind == MediaKind::Video {
                            self.work.push_back(Work::Keyframe(s.stream.name.clone(), data.rid));
                        }
                        let frame = Frame {
                            kind,
                            rid: data.rid,
                            params: Some(data.params),
                            ingested: None,
                            network_time: data.network_time,
                            time: data.time,
                            keyframe: kind == MediaKind::Video && data.is_keyframe(),
                            data: data.data.clone(),
                        };
                        self.work.push_back(Work::Forward(s.stream.name.clone(), Arc::new(frame)));
                    }
                    Event::KeyframeRequest(_) if !s.publisher => {
                        self.work.push_back(Work::Keyframe(s.stream.name.clone(), s.layer));
                    }
                    Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. })
                        if !s.publisher =>
                    {
                        tracing::trace!(session = %id, estimate = estimate.as_u64(), "egress estimate");
                        s.estimate = Some(estimate.as_u64());
                        self.work.push_back(Work::Layer(id));
                    }
                    Event::MediaEgressStats(st) if !s.publisher => {
                        if !s.media.iter().any(|&(m, k)| m == st.mid && k == MediaKind::Video) {
                            continue;
                        }
                        let (packets, nacks) =
                            (st.packets - s.egress.0.min(st.packets), st.nacks - s.egress.1.min(st.nacks));
                        s.egress = (st.packets, st.nacks);
                        // Loss right after a switch is the old layer's packets draining.
                        let settled = s.switched_at.is_none_or(|t| t.elapsed() >= SETTLE);
                        if settled && packets >= 15 && nacks * 20 > packets {
                            s.congested_at = Some(Instant::now());
                            self.work.push_back(Work::Layer(id));
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    /// Writes a publisher's frame to every viewer of its stream.
    fn forward(&mut self, stream: &str, frame: &Frame) {
        let Some(live) = self.streams.get_mut(stream) else { return };
        let codec = match (&frame.params, &frame.ingested) {
            (Some(p), _) => format!("{}/{}", kind_name(frame.kind), p.spec().codec),
            (None, Some(f)) => format!("{}/{:?}", kind_name(frame.kind), f.codec),
            (None, None) => String::new(),
        };
        if !live.codecs.contains(&codec) {
            live.codecs.push(codec);
        }
        if let Some(rid) = frame.rid {
            if !live.layers.contains(&rid) {
                live.layers.push(rid);
            }
            live.rates.add(rid, frame.data.len(), frame.network_time);
        }
        if let Some(tap) = &live.tap {
            if frame.rid.is_none() || frame.rid == live.layers.first().copied() {
                let f = match &frame.ingested {
                    Some(f) => Some(f.clone()),
                    None => media_frame(frame, &mut live.clocks, self.epoch),
                };
                if let Some(f) = f {
                    // A packager that cannot keep up loses frames, never the viewers'.
                    if tap.try_send(f).is_err() {
                        tracing::debug!(stream = %stream, "the live packager is behind; a frame is dropped");
                    }
                }
            }
        }
        let default_layer = live.rates.default_layer();
        // WebRTC carries H.264, VP8 and Opus: AAC from RTMP reaches HTTP viewers only.
        if frame.ingested.as_ref().is_some_and(|f| f.codec != Codec::H264) {
            return;
        }
        for vid in live.viewers.clone() {
            let Some(v) = self.sessions.get_mut(&vid) else { continue };
            if !v.connected || !v.rtc.is_alive() {
                continue;
            }
            let Some(mid) = v.media.iter().find(|(_, k)| *k == frame.kind).map(|(m, _)| *m) else { continue };
            let mut switched = false;
            if frame.kind == MediaKind::Video {
                if v.layer.is_none() {
                    v.layer = default_layer;
                }
                if frame.rid.is_some() && frame.rid == v.pending_layer && frame.keyframe {
                    tracing::info!(session = %vid, from = ?v.layer, to = ?frame.rid, "viewer switched simulcast layer");
                    v.layer = v.pending_layer.take();
                    v.switched_at = Some(Instant::now());
                    switched = true;
                } else if frame.rid.is_some() && (frame.rid != v.layer || (v.pending_down && v.pending_layer.is_some()))
                {
                    continue;
                }
                if v.waiting_keyframe {
                    if !frame.keyframe {
                        continue;
                    }
                    v.waiting_keyframe = false;
                }
            }
            let time = if frame.kind == MediaKind::Video { v.video_time(frame, switched) } else { frame.time };
            let Some(writer) = v.rtc.writer(mid) else { continue };
            let pt = match frame.params {
                Some(p) => writer.match_params(p),
                // The viewer's H.264 with non-interleaved packets (every browser offers it).
                None => writer
                    .payload_params()
                    .find(|p| {
                        p.spec().codec == str0m::format::Codec::H264 && p.spec().format.packetization_mode == Some(1)
                    })
                    .map(|p| p.pt()),
            };
            let Some(pt) = pt else { continue };
            if let Err(e) = writer.write(pt, frame.network_time, time, frame.data.clone()) {
                tracing::debug!(session = %vid, error = %e, "writing to a viewer failed; ending the session");
                v.rtc.disconnect();
            }
            self.work.push_back(Work::Poll(vid));
        }
    }

    /// Asks the stream's publisher for a keyframe, at most every `KEYFRAME_INTERVAL`.
    fn request_keyframe(&mut self, stream: &str, rid: Option<Rid>) {
        let Some(live) = self.streams.get_mut(stream) else { return };
        let Some(pid) = live.publisher else { return };
        if live.last_keyframe_request.get(&rid).is_some_and(|t| t.elapsed() < KEYFRAME_INTERVAL) {
            return;
        }
        let Some(p) = self.sessions.get_mut(&pid) else { return };
        let videos: Vec<Mid> = p.media.iter().filter(|(_, k)| *k == MediaKind::Video).map(|(m, _)| *m).collect();
        for mid in videos {
            if let Some(mut w) = p.rtc.writer(mid) {
                if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
                    let _ = w.request_keyframe(rid, KeyframeRequestKind::Pli);
                }
            }
        }
        live.last_keyframe_request.insert(rid, Instant::now());
        self.work.push_back(Work::Poll(pid));
    }

    /// Chooses a viewer's simulcast layer again from its estimate and the layers' rates,
    /// and tells its bandwidth estimator what to probe for.
    fn choose_layer(&mut self, id: SessionId) {
        let Some(v) = self.sessions.get_mut(&id) else { return };
        let Some(live) = self.streams.get(&v.stream.name) else { return };
        let ranked = live.rates.ranked();
        if v.publisher || ranked.len() < 2 || v.layer.is_none() {
            return;
        }
        // Congestion caps the estimate below the current layer until it has passed: the
        // estimator takes a second or two to see what NACKs show at once.
        let current = ranked.iter().find(|&&(r, _)| Some(r) == v.layer).map(|&(_, bps)| bps);
        let estimate = match (v.congested_at, current) {
            (Some(t), Some(bps)) if t.elapsed() < CONGESTION_HOLD => {
                Some(v.estimate.unwrap_or(u64::MAX).min(bps * 4 / 5))
            }
            _ => v.estimate,
        };
        let target = simulcast::choose(&ranked, estimate, v.layer);
        // Probe towards the next better layer (padding up to its rate) and the best one.
        let at = ranked.iter().position(|&(r, _)| Some(r) == target).unwrap_or(0);
        let rates = (ranked[at.saturating_sub(1)].1, ranked[0].1 * 3 / 2);
        // Small changes of the measured rates are not worth a new probe.
        if rates.0.abs_diff(v.bwe_rates.0) * 4 > v.bwe_rates.0 || rates.1.abs_diff(v.bwe_rates.1) * 4 > v.bwe_rates.1 {
            v.bwe_rates = rates;
            v.rtc.bwe().set_bitrate(Bitrate::bps(rates.0), Bitrate::bps(rates.1));
        }
        if target == v.layer {
            v.pending_layer = None;
        } else {
            if target != v.pending_layer {
                tracing::debug!(session = %id, from = ?v.layer, to = ?target, ?estimate, ?ranked, "viewer changes simulcast layer");
                v.pending_layer = target;
                let rank = |r: Option<Rid>| ranked.iter().position(|&(x, _)| Some(x) == r);
                // From a layer not yet measured, nothing is known to be down.
                v.pending_down = matches!((rank(target), rank(v.layer)), (Some(t), Some(c)) if t > c);
            }
            // Asked again while it has not come (requests are rate limited per layer).
            self.work.push_back(Work::Keyframe(v.stream.name.clone(), target));
        }
        self.work.push_back(Work::Poll(id));
    }

    /// Ends a session in order: the peer is told (RTCP BYE, DTLS close_notify), so its
    /// connection closes at once instead of timing out.
    fn close(&mut self, id: SessionId) {
        if self.external.remove(&id).is_some() {
            // Its forwarder stops, the connection closes and `Ingested::End` follows.
            return;
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.rtc.close().is_err() {
                s.rtc.disconnect();
            }
            self.work.push_back(Work::Poll(id));
        }
    }

    /// Drops dead sessions from their streams.
    fn reap(&mut self) {
        let dead: Vec<SessionId> = self.sessions.iter().filter(|(_, s)| !s.rtc.is_alive()).map(|(id, _)| *id).collect();
        for id in dead {
            let Some(s) = self.sessions.remove(&id) else { continue };
            self.by_source.retain(|_, v| *v != id);
            let Some(live) = self.streams.get_mut(&s.stream.name) else { continue };
            if live.publisher == Some(id) {
                self.publisher_left(&s.stream.name, id);
            } else {
                live.viewers.retain(|v| *v != id);
            }
        }
    }

    /// The stream's publisher is gone: the stream waits out its grace period.
    fn publisher_left(&mut self, name: &str, id: SessionId) {
        let Some(live) = self.streams.get_mut(name) else { return };
        if live.publisher != Some(id) {
            return;
        }
        tracing::info!(stream = %name, session = %id, "publisher left");
        live.publisher = None;
        live.orphaned = Some(Instant::now());
        // A returning publisher starts on a keyframe for everyone.
        for v in &live.viewers {
            if let Some(vs) = self.sessions.get_mut(v) {
                vs.waiting_keyframe = true;
            }
        }
    }

    /// A frame or the end of a publisher from outside WebRTC.
    fn ingested(&mut self, i: Ingested) {
        let (Ingested::Frame(id, _) | Ingested::End(id)) = &i;
        let Some(name) = self.streams.iter().find(|(_, l)| l.publisher == Some(*id)).map(|(n, _)| n.clone()) else {
            return;
        };
        match i {
            Ingested::End(id) => {
                self.external.remove(&id);
                self.publisher_left(&name, id);
            }
            Ingested::Frame(_, f) => {
                let kind = if f.codec.is_video() { MediaKind::Video } else { MediaKind::Audio };
                let frame = Frame {
                    kind,
                    rid: None,
                    params: None,
                    network_time: Instant::now(),
                    time: MediaTime::from_90khz((f.dts_us.max(0) as u64) * 9 / 100),
                    keyframe: f.keyframe,
                    data: f.data.clone(),
                    ingested: Some(f),
                };
                self.forward(&name, &frame);
            }
        }
    }

    /// Ends streams whose publisher stayed away past the grace period, and tells galleries
    /// of viewer counts that changed.
    fn housekeeping(&mut self) {
        let expired: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, l)| l.orphaned.is_some_and(|t| t.elapsed() >= self.config.grace))
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            let viewers = self.streams.get(&name).map(|l| l.viewers.clone()).unwrap_or_default();
            for v in viewers {
                self.close(v);
            }
            self.end_live(&name);
        }
        self.reap();
        let segment = self.hub.segment_target();
        let due: Vec<(String, Option<Rid>)> = self
            .streams
            .iter_mut()
            .filter(|(_, l)| l.tap.is_some() && l.publisher.is_some())
            // Asked a little early, so the keyframe arrives as the segment is due.
            .filter(|(_, l)| {
                l.last_segment_keyframe.is_none_or(|t| t.elapsed() + Duration::from_millis(400) >= segment)
            })
            .map(|(n, l)| {
                l.last_segment_keyframe = Some(Instant::now());
                // Of the layer that is packaged.
                (n.clone(), l.layers.first().copied())
            })
            .collect();
        for (name, layer) in due {
            self.work.push_back(Work::Keyframe(name, layer));
        }
        // Layers' rates move: their viewers' choices are made again.
        for live in self.streams.values().filter(|l| l.layers.len() > 1) {
            self.work.extend(live.viewers.iter().map(|&v| Work::Layer(v)));
        }
        for (name, live) in &mut self.streams {
            let n = live.viewers.len() as u32 + self.hub.http_viewers(name);
            if n != live.announced_viewers {
                live.announced_viewers = n;
                self.galleries.set_live(
                    name,
                    Some(LiveState { since: live.since, viewers: u64::from(n), ingest: live.ingest.clone() }),
                );
                if let Some(g) = &live.stream.gallery {
                    self.galleries.announce_gallery(
                        g,
                        "live.viewers",
                        serde_json::json!({ "stream": name, "viewers": n }),
                    );
                }
            }
        }
    }

    /// Forgets a stream and says so.
    fn end_live(&mut self, name: &str) {
        if let Some(live) = self.streams.remove(name) {
            tracing::info!(stream = %name, "live stream ended");
            self.galleries.set_live(name, None);
            if let Some(g) = &live.stream.gallery {
                self.galleries.announce_gallery(g, "live.ended", serde_json::json!({ "stream": name }));
            }
        }
    }
}

/// A forwarded frame as the packager takes it, timed on the arrival clock.
fn media_frame(f: &Frame, clocks: &mut HashMap<MediaKind, (i64, i64)>, epoch: Instant) -> Option<MediaFrame> {
    let codec = match f.params?.spec().codec {
        str0m::format::Codec::H264 => Codec::H264,
        str0m::format::Codec::Vp8 => Codec::Vp8,
        str0m::format::Codec::Opus => Codec::Opus,
        _ => return None,
    };
    let rtp_us = f.time.as_micros() as i64;
    let arrived_us = f.network_time.saturating_duration_since(epoch).as_micros() as i64;
    let (rtp0, arrived0) = *clocks.entry(f.kind).or_insert((rtp_us, arrived_us));
    Some(MediaFrame {
        codec,
        dts_us: arrived0 + (rtp_us - rtp0),
        cts_us: 0,
        keyframe: f.keyframe,
        data: f.data.clone(),
        config: None,
    })
}

/// Names the first line of an offer that is not `x=value`, or says it cannot be read.
fn malformed_line(offer: &str) -> String {
    let bad = offer.lines().enumerate().find(|(_, l)| {
        let b = l.as_bytes();
        !(b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=')
    });
    match bad {
        Some((n, l)) => format!("line {} is not an SDP line: {:?}", n + 1, l.chars().take(60).collect::<String>()),
        None => "it is not a complete SDP session description".into(),
    }
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// Socket buffers for bursts: every publisher's packets arrive on one socket while the
/// loop works, and a full buffer drops datagrams (NACKs recover them, but late).
const SOCKET_BUFFER: usize = 4 << 20;

fn enlarge_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    // Past net.core.rmem_max takes CAP_NET_ADMIN; without it the plain option is capped there.
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

/// Hands a socket's datagrams to the loop.
async fn read_socket(socket: Arc<UdpSocket>, tx: mpsc::Sender<Datagram>) {
    let Ok(local) = socket.local_addr() else { return };
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, source)) => {
                let d = Datagram { local, source, data: buf[..n].to_vec() };
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            // ICMP errors of earlier sends surface here; the socket goes on.
            Err(e) => tracing::debug!(error = %e, "WebRTC socket"),
        }
    }
}
