//! Load generator for live streams (benches/scripts/live_load.sh): WHIP publishers, WHEP
//! viewers and LL-HLS viewers of the sidecar, all in this process, over loopback.
//!
//! `live_load URL STREAMS TOKEN VIDEO SECONDS WHEP HLS`: STREAMS is a file of `NAME KEY`
//! lines, one stream each; every stream is published from VIDEO (H.264 Annex B, one
//! access unit per AUD, replayed at 30 frames/s without encoding, so publishers cost
//! almost nothing), and watched by WHEP viewers (WebRTC, str0m) and HLS viewers (blocking
//! playlist reloads, then every new part, as LL-HLS players do) per stream.
//!
//! Prints one JSON object: frames published, for WebRTC viewers the frames each received
//! against those published while it watched and the delay from a frame's send to its
//! receipt (p50/p99), for HLS viewers the parts each received against those published
//! while it watched and how long after the first viewer each got a part.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

const FPS: u64 = 30;

/// Send times of a stream's frames, by their 90 kHz RTP time.
type Sent = Arc<Mutex<HashMap<u32, Instant>>>;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Splits an Annex B stream into access units at its access unit delimiters.
fn access_units(data: &[u8]) -> Vec<Arc<[u8]>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 < data.len() {
        if data[i..i + 4] == [0, 0, 0, 1] && data[i + 4] & 0x1f == 9 {
            starts.push(i);
        }
        i += 1;
    }
    starts.push(data.len());
    starts.windows(2).map(|w| Arc::from(&data[w[0]..w[1]])).collect()
}

fn is_keyframe(au: &[u8]) -> bool {
    au.windows(4).any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5)
}

/// A WebRTC peer on its own UDP socket.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
}

impl Peer {
    async fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP socket");
        let local = socket.local_addr().expect("its address");
        // This one process receives every viewer's media: room for bursts.
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(1usize << 20));
        let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("a candidate"));
        Self { rtc, socket, local }
    }

    /// Offers one video line in `dir`, posts the offer to `url` and applies the answer.
    async fn connect(&mut self, url: String, bearer: String, dir: Direction) -> Result<Mid, String> {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, dir, None, None, None);
        let (offer, pending): (_, SdpPendingOffer) = api.apply().expect("an offer");
        let sdp = offer.to_sdp_string();
        let answer = tokio::task::spawn_blocking(move || {
            let resp = agent()
                .post(&url)
                .header("Authorization", &format!("Bearer {bearer}"))
                .content_type("application/sdp")
                .send(sdp.as_bytes())
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp.into_body().read_to_string().map_err(|e| e.to_string())?;
            if status == 201 {
                Ok(body)
            } else {
                Err(format!("{status}: {body}"))
            }
        })
        .await
        .expect("signalling")?;
        let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| e.to_string())?;
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| e.to_string())?;
        Ok(mid)
    }

    /// Sends what the session has to send; returns when it next wants time, or `None`
    /// once it is closed.
    fn drive(&mut self, mut event: impl FnMut(Event)) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => event(e),
                Err(_) => return None,
            }
        }
    }

    /// Waits for a datagram or `until`, and hands either to the session.
    async fn wait(&mut self, buf: &mut [u8], until: Instant) -> bool {
        let input = tokio::select! {
            r = self.socket.recv_from(buf) => match r {
                Ok((n, source)) => {
                    let Ok(contents) = buf[..n].try_into() else { return true };
                    Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents })
                }
                Err(_) => return true,
            },
            () = tokio::time::sleep_until(until.into()) => Input::Timeout(Instant::now()),
        };
        self.rtc.handle_input(input).is_ok()
    }
}

/// Publishes `units` by WHIP until `end`, recording each frame's send time in `sent`.
async fn publish(base: String, name: String, key: String, units: Arc<Vec<Arc<[u8]>>>, end: Instant, sent: Sent) {
    let mut peer = Peer::new().await;
    let mid = match peer.connect(format!("{base}/whip/{name}"), key, Direction::SendOnly).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("publisher {name}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 2048];
    let mut connected = false;
    let mut frame = 0u64;
    let mut next_frame = Instant::now();
    while Instant::now() < end {
        let Some(timeout) = peer.drive(|e| connected |= matches!(e, Event::Connected)) else { break };
        if connected && Instant::now() >= next_frame {
            let au = &units[(frame as usize) % units.len()];
            let Some(writer) = peer.rtc.writer(mid) else { break };
            let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else { break };
            let ts = frame * 90_000 / FPS;
            let now = Instant::now();
            if writer.write(pt, now, MediaTime::from_90khz(ts), au.clone()).is_err() {
                break;
            }
            sent.lock().unwrap().insert(ts as u32, now);
            frame += 1;
            next_frame += Duration::from_micros(1_000_000 / FPS);
            continue;
        }
        let until = if connected { timeout.min(next_frame) } else { timeout };
        if !peer.wait(&mut buf, until).await {
            break;
        }
        if !connected {
            next_frame = Instant::now();
        }
    }
    let _ = peer.rtc.close();
    peer.drive(|_| {});
}

/// What one WebRTC viewer got: each frame's RTP time and when it was complete.
type Received = Vec<(u32, Instant)>;

/// Watches by WHEP until `end`.
async fn view_webrtc(base: String, name: String, token: String, end: Instant) -> Result<Received, String> {
    let mut peer = Peer::new().await;
    peer.connect(format!("{base}/whep/{name}"), token, Direction::RecvOnly).await?;
    let mut buf = vec![0u8; 2048];
    let mut got = Vec::new();
    while Instant::now() < end {
        let Some(timeout) = peer.drive(|e| {
            if let Event::MediaData(d) = e {
                got.push((d.time.numer() as u32, Instant::now()));
            }
        }) else {
            break;
        };
        if !peer.wait(&mut buf, timeout.min(end)).await {
            break;
        }
    }
    let _ = peer.rtc.close();
    peer.drive(|_| {});
    Ok(got)
}

/// What one HLS viewer got: each part (segment, index) and when it had it all.
type Parts = Vec<((u64, u64), Instant)>;

/// Parts listed in a media playlist, in order.
fn listed_parts(playlist: &str) -> Vec<(u64, u64)> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| {
            let uri = l.split("URI=\"part/").nth(1)?.split(".m4s").next()?;
            let (msn, k) = uri.split_once('.')?;
            Some((msn.parse().ok()?, k.parse().ok()?))
        })
        .collect()
}

/// Watches by LL-HLS until `end`: blocking playlist reloads, then every new part.
fn view_hls(base: &str, name: &str, token: &str, end: Instant) -> Result<Parts, String> {
    let a = agent();
    let get = |path: &str| -> Result<(u16, Vec<u8>), String> {
        let resp = a
            .get(&format!("{base}/live/{name}/{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        resp.into_body().into_reader().read_to_end(&mut body).map_err(|e| e.to_string())?;
        Ok((status, body))
    };
    let (status, body) = get("index.m3u8")?;
    if status != 200 {
        return Err(format!("playlist: {status}: {}", String::from_utf8_lossy(&body)));
    }
    let mut parts = listed_parts(&String::from_utf8_lossy(&body));
    // Start at the live edge: the last part listed.
    let mut cursor = parts.len().checked_sub(2).map(|i| parts[i]);
    let mut got = Vec::new();
    while Instant::now() < end {
        let after = cursor;
        for &p in parts.iter().filter(|&&p| after.is_none_or(|c| p > c)) {
            let (status, _) = get(&format!("part/{}.{}.m4s", p.0, p.1))?;
            if status != 200 {
                return Err(format!("part {p:?}: {status}"));
            }
            got.push((p, Instant::now()));
            cursor = Some(p);
        }
        let Some((msn, k)) = cursor else { return Err("no parts".into()) };
        let (status, body) = get(&format!("index.m3u8?_HLS_msn={msn}&_HLS_part={}", k + 1))?;
        if status != 200 {
            // The next part is in the next segment: ask for that one's first.
            let (status, b) = get(&format!("index.m3u8?_HLS_msn={}&_HLS_part=0", msn + 1))?;
            if status != 200 {
                return Err(format!("blocking reload: {status}: {}", String::from_utf8_lossy(&b)));
            }
            parts = listed_parts(&String::from_utf8_lossy(&b));
        } else {
            parts = listed_parts(&String::from_utf8_lossy(&body));
        }
    }
    Ok(got)
}

/// What a viewer received, if anything; otherwise why not goes to `failed`.
fn got_any<'a, T>(r: &'a Result<Vec<T>, String>, what: &str, failed: &mut Vec<String>) -> Option<&'a [T]> {
    match r {
        Ok(got) if !got.is_empty() => Some(got),
        Ok(_) => {
            failed.push(format!("no {what}"));
            None
        }
        Err(e) => {
            failed.push(e.clone());
            None
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, streams, token, video, seconds, whep, hls] = &args[..] else {
        eprintln!("usage: live_load URL STREAMS TOKEN VIDEO SECONDS WHEP-PER-STREAM HLS-PER-STREAM");
        std::process::exit(2);
    };
    let streams: Vec<(String, String)> = std::fs::read_to_string(streams)
        .expect("streams file")
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, k)| (n.to_string(), k.to_string())))
        .collect();
    let units = Arc::new(access_units(&std::fs::read(video).expect("video")));
    assert!(units.first().is_some_and(|u| is_keyframe(u)), "the video starts on a keyframe, with AUDs");
    let seconds: u64 = seconds.parse().expect("seconds");
    let (whep, hls): (usize, usize) = (whep.parse().expect("WHEP"), hls.parse().expect("HLS"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let start = Instant::now();
    // Publishers first, then viewers join over a few seconds (as an audience does), and
    // all are measured over the same final span.
    let ramp = Duration::from_secs(3 + (streams.len() * (whep + hls)) as u64 / 100);
    let end = start + ramp + Duration::from_secs(seconds);
    let sent: Vec<Sent> = streams.iter().map(|_| Sent::default()).collect();
    let report = rt.block_on(async {
        let mut publishers = Vec::new();
        for ((name, key), sent) in streams.iter().zip(&sent) {
            let task = publish(base.clone(), name.clone(), key.clone(), units.clone(), end, sent.clone());
            publishers.push(tokio::spawn(task));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut viewers = Vec::new();
        let mut hls_viewers = Vec::new();
        let step = (ramp - Duration::from_secs(2)) / ((streams.len() * (whep + hls)) as u32).max(1);
        for (s, (name, _)) in streams.iter().enumerate() {
            for _ in 0..whep {
                viewers.push((s, tokio::spawn(view_webrtc(base.clone(), name.clone(), token.clone(), end))));
                tokio::time::sleep(step).await;
            }
            for _ in 0..hls {
                let (b, n, t) = (base.clone(), name.clone(), token.clone());
                let thread = std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || view_hls(&b, &n, &t, end))
                    .expect("a thread");
                hls_viewers.push((s, thread));
                tokio::time::sleep(step).await;
            }
        }
        let mut webrtc = Vec::new();
        for (s, v) in viewers {
            webrtc.push((s, v.await.expect("viewer task")));
        }
        for p in publishers {
            let _ = p.await;
        }
        let hls: Vec<_> = hls_viewers.into_iter().map(|(s, t)| (s, t.join().expect("HLS viewer"))).collect();
        (webrtc, hls)
    });
    let (webrtc, hls_results) = report;
    let published: usize = sent.iter().map(|s| s.lock().unwrap().len()).sum();

    // WebRTC: each viewer's frames against those sent between its first frame and a
    // second before the end (frames in flight at the end are not counted missing).
    let mut delays = Vec::new();
    let (mut expected, mut received, mut failed, mut incomplete) = (0usize, 0usize, Vec::new(), 0usize);
    for (s, result) in &webrtc {
        let Some(got) = got_any(result, "frame", &mut failed) else { continue };
        let sent = sent[*s].lock().unwrap();
        let first = got.iter().filter_map(|(ts, _)| sent.get(ts)).min().copied().expect("frames are known");
        let cutoff = end - Duration::from_secs(1);
        let want: Vec<u32> = sent.iter().filter(|(_, &t)| t >= first && t < cutoff).map(|(&ts, _)| ts).collect();
        let have: HashMap<u32, Instant> = got.iter().copied().collect();
        let n = want.iter().filter(|ts| have.contains_key(ts)).count();
        expected += want.len();
        received += n;
        if n < want.len() {
            incomplete += 1;
        }
        for (ts, at) in got {
            if let Some(t) = sent.get(ts) {
                delays.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
            }
        }
    }
    delays.sort_by(f64::total_cmp);

    // HLS: each part's first receipt by any viewer; a viewer's parts against those first
    // received by anyone while it watched.
    let mut first_seen: BTreeMap<(usize, (u64, u64)), Instant> = BTreeMap::new();
    for (s, r) in &hls_results {
        for (p, at) in r.as_ref().map(Vec::as_slice).unwrap_or_default() {
            let e = first_seen.entry((*s, *p)).or_insert(*at);
            *e = (*e).min(*at);
        }
    }
    let mut spread = Vec::new();
    let (mut hls_expected, mut hls_received, mut hls_failed, mut hls_incomplete) = (0, 0, Vec::new(), 0);
    for (s, r) in &hls_results {
        let Some(got) = got_any(r, "part", &mut hls_failed) else { continue };
        let (lo, hi) = (got[0].0, got[got.len() - 1].0);
        let want = first_seen.keys().filter(|(x, p)| x == s && *p >= lo && *p <= hi).count();
        hls_expected += want;
        hls_received += got.len();
        if got.len() < want {
            hls_incomplete += 1;
        }
        for (p, at) in got {
            spread.push(at.saturating_duration_since(first_seen[&(*s, *p)]).as_secs_f64() * 1000.0);
        }
    }
    spread.sort_by(f64::total_cmp);
    failed.sort();
    failed.dedup();
    hls_failed.sort();
    hls_failed.dedup();
    let report = serde_json::json!({
        "streams": streams.len(),
        "frames_published": published,
        "webrtc": {
            "viewers": webrtc.len(),
            "failed": webrtc.iter().filter(|(_, r)| !r.as_ref().is_ok_and(|g| !g.is_empty())).count(),
            "errors": failed.iter().take(5).collect::<Vec<_>>(),
            "frames_expected": expected,
            "frames_received": received,
            "viewers_missing_frames": incomplete,
            "delay_p50_ms": percentile(&delays, 0.5),
            "delay_p99_ms": percentile(&delays, 0.99),
        },
        "hls": {
            "viewers": hls_results.len(),
            "failed": hls_results.iter().filter(|(_, r)| !r.as_ref().is_ok_and(|g| !g.is_empty())).count(),
            "errors": hls_failed.iter().take(5).collect::<Vec<_>>(),
            "parts_expected": hls_expected,
            "parts_received": hls_received,
            "viewers_missing_parts": hls_incomplete,
            "after_first_viewer_p50_ms": percentile(&spread, 0.5),
            "after_first_viewer_p99_ms": percentile(&spread, 0.99),
        },
    });
    println!("{report}");
}
