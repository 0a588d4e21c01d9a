//! Live streams over the real sidecar of a real mount: the `nanofs stream` commands, WHIP
//! and WHEP refusals answered over loopback, and headless Chromium publishing a fake screen
//! from the gallery UI and a fake camera with the publish key, watched by a second browser
//! context, with limits and revocations (tests/browser/live.mjs).

use crate::galleries::{World, USERS};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `[media.streaming]` of these tests: a free UDP port, and limits small enough to reach.
const CONFIG: &str =
    "[media.streaming]\nwebrtc_port = 0\nmax_concurrent_streams = 2\nmax_viewers_per_stream = 1\nlive_grace_seconds = 2\n";

/// Creates a stream; returns its JSON and its publish key (the last line).
fn create(w: &World, name: &str, owner: &[&str]) -> (Value, String) {
    let mut args = vec!["stream", "create", w.v.path(), name];
    args.extend_from_slice(owner);
    let out = w.v.run_ok(&args);
    let (json, key) = out.trim_end().rsplit_once('\n').expect("a stream, then its key");
    assert!(key.starts_with("nsk_") && key.len() == 68, "a publish key: {key}");
    (serde_json::from_str(json).expect("the stream as JSON"), key.to_string())
}

/// Waits for the recording of stream `name` in /trip; returns its name, its path in the
/// mount, its codecs and its duration in seconds.
fn recording(w: &World, name: &str) -> (String, std::path::PathBuf, Vec<String>, f64) {
    let end = Instant::now() + Duration::from_secs(30);
    let file = loop {
        let found = std::fs::read_dir(w.m.p("trip"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".mp4"));
        if let Some(n) = found {
            break n;
        }
        assert!(Instant::now() < end, "no recording of {name} in /trip: {}", w.m.log_text());
        std::thread::sleep(Duration::from_millis(200));
    };
    let path = w.m.p(&format!("trip/{file}"));
    let probe = crate::common::sh(&format!(
        "ffprobe -v error -show_entries stream=codec_name:format=duration -of json '{}'",
        path.display()
    ));
    let probe: Value = serde_json::from_str(&probe).unwrap();
    let codecs =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap().to_string()).collect();
    let secs = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    (file, path, codecs, secs)
}

/// A WebRTC offer to receive video and audio, as a WHEP player makes one.
fn viewer_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::new(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

/// POST of an SDP body; returns the status, the body and the headers that matter here.
fn post_sdp(
    w: &World,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    sdp: &str,
) -> (u16, String, Option<String>) {
    let mut req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}{path}", w.base))
        .header("Content-Type", content_type);
    if let Some(b) = bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    let resp = w.http.run(req.body(sdp.as_bytes().to_vec()).unwrap()).unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, resp.into_body().read_to_string().unwrap(), retry)
}

#[test]
fn streams_are_managed_from_the_command_line_and_refuse_bad_requests_clearly() {
    let w = World::with_config(CONFIG);
    let (cam, key) = create(&w, "cam", &["--gallery", "/trip"]);
    assert_eq!(cam["gallery"], w.gallery.as_str());
    assert_eq!(cam["path"], "/trip");
    assert!(cam.get("publish_key").is_none(), "the key is printed alone, last");
    // A second stream of the same name, a bad name, a missing owner or a file as owner.
    for bad in [
        vec!["cam", "--gallery", "/trip"],
        vec!["../x", "--gallery", "/trip"],
        vec!["solo"],
        vec!["mine", "--gallery", "/nope"],
    ] {
        let mut args = vec!["stream", "create", w.v.path()];
        args.extend_from_slice(&bad);
        let out = w.v.run(&args);
        assert!(!out.status.success(), "{bad:?} is refused");
        assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty(), "{bad:?} says why");
    }
    std::fs::write(w.m.p("trip/notes.txt"), b"x").unwrap();
    assert!(!w.v.run(&["stream", "create", w.v.path(), "f", "--path", "/trip/notes.txt"]).status.success());
    let (by_path, _) = create(&w, "lobby", &["--path", "/trip"]);
    assert!(by_path["gallery"].is_null());
    let list: Value = serde_json::from_str(&w.v.run_ok(&["stream", "list", w.v.path()])).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cam", "lobby"]);
    assert!(!w.v.run_ok(&["stream", "show", w.v.path(), "cam"]).contains("nsk_"), "show never prints the key");

    let offer = viewer_offer();
    let bob = w.login("bob");
    let erin = w.login("erin");
    // Publishing: no credential, a wrong key, the old key after a new one, a viewer's session.
    assert_eq!(post_sdp(&w, "/whip/cam", None, "application/sdp", &offer).0, 401);
    let (s, body, _) = post_sdp(&w, "/whip/cam", Some("nsk_00"), "application/sdp", &offer);
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("wrong publish key"), "{body}");
    let out = w.v.run_ok(&["stream", "revoke-key", w.v.path(), "cam"]);
    let new_key = out.trim_end().rsplit('\n').next().unwrap().to_string();
    assert_ne!(new_key, key);
    assert_eq!(post_sdp(&w, "/whip/cam", Some(&key), "application/sdp", &offer).0, 401, "the old key is dead");
    assert_eq!(post_sdp(&w, "/whip/cam", Some(&bob), "application/sdp", &offer).0, 403, "a viewer may not publish");
    // Malformed requests: wrong media type, not SDP, SDP that cannot be read.
    let (s, body, _) = post_sdp(&w, "/whip/cam", Some(&new_key), "application/json", "{}");
    assert_eq!(s, 415, "{body}");
    let (s, body, _) = post_sdp(&w, "/whip/cam", Some(&new_key), "application/sdp", "hello");
    assert_eq!(s, 400, "{body}");
    let (s, body, _) =
        post_sdp(&w, "/whip/cam", Some(&new_key), "application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nnonsense\r\n");
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("line 3"), "the bad line is named: {body}");
    // Watching: a stranger does not see the gallery, nobody publishes yet, no such stream.
    assert_eq!(post_sdp(&w, "/whep/cam", Some(&erin), "application/sdp", &offer).0, 404);
    let (s, body, _) = post_sdp(&w, "/whep/cam", Some(&bob), "application/sdp", &offer);
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("not live"), "{body}");
    assert_eq!(post_sdp(&w, "/whep/nope", Some(&bob), "application/sdp", &offer).0, 404);
    // A path stream: a token with read on the path watches, one on another path does not.
    let token = |prefix: &str| {
        let out = w.v.run_ok(&["token", "create", w.v.path(), "--name", "t", "--path", prefix, "--allow", "read"]);
        out.trim().lines().last().unwrap().to_string()
    };
    let (s, body, _) = post_sdp(&w, "/whep/lobby", Some(&token("/trip")), "application/sdp", &offer);
    assert_eq!((s, body.contains("not live")), (404, true), "{body}");
    assert_eq!(post_sdp(&w, "/whep/lobby", Some(&token("/elsewhere")), "application/sdp", &offer).0, 403);
    // Trickle ICE is not needed and says so.
    let r = w.call("PATCH", "/whip/cam/00000000000000000000000000000000", Some(&new_key), None);
    assert_eq!(r.status, 405);
    assert_eq!(w.call("DELETE", "/whip/cam/00000000000000000000000000000000", None, None).status, 404);

    // Deleting the gallery deletes its streams; the path stream stays.
    w.v.run_ok(&["stream", "delete", w.v.path(), "lobby"]);
    assert!(!w.v.run(&["stream", "show", w.v.path(), "lobby"]).status.success());
    w.v.run_ok(&["gallery", "delete", w.v.path(), &w.gallery]);
    let list: Value = serde_json::from_str(&w.v.run_ok(&["stream", "list", w.v.path()])).unwrap();
    assert_eq!(list, serde_json::json!([]));
    assert_eq!(w.call("GET", "/healthz", None, None).status, 200);
}

#[test]
fn browsers_publish_and_watch_live_with_limits_and_revocation() {
    let w = World::with_config(CONFIG);
    let (_, _) = create(&w, "desk", &["--gallery", "/trip"]);
    // The UI shares to the first stream (by name) that is not live.
    let (_, cam_key) = create(&w, "studio", &["--gallery", "/trip", "--record"]);
    let (_, extra_key) = create(&w, "zextra", &["--gallery", "/trip"]);
    let signals = w.v.tmp.path().join("signals");
    std::fs::create_dir(&signals).unwrap();
    // The script asks for the key to be replaced mid-stream by writing `revoke`.
    let revoker = {
        let (volume, signal) = (w.v.path().to_string(), signals.join("revoke"));
        let pass = w.v.pass_file.to_str().unwrap().to_string();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(300);
            while !signal.exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            if signal.exists() {
                let out =
                    crate::common::nanofs(&["stream", "revoke-key", &volume, "studio", "--passphrase-file", &pass]);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        })
    };
    // When the script asks, ffmpeg decodes the shared screen over low-latency HLS, as alice.
    let reader = {
        let (signal, done) = (signals.join("hls"), signals.join("hls-done"));
        let (base, alice) = (w.base.clone(), w.login("alice"));
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(300);
            while !signal.exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !signal.exists() {
                return;
            }
            let out = std::process::Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-headers"])
                .arg(format!("Authorization: Bearer {alice}\r\n"))
                .args(["-i", &format!("{base}/live/desk/master.m3u8"), "-t", "3", "-map", "0:v", "-f", "framecrc", "-"])
                .output()
                .expect("ffmpeg runs");
            let frames = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count();
            let said = if out.status.success() && frames >= 30 {
                format!("ok {frames} frames decoded")
            } else {
                format!("ffmpeg failed ({}) with {frames} frames: {}", out.status, String::from_utf8_lossy(&out.stderr))
            };
            std::fs::write(done, said).unwrap();
        })
    };
    let result = crate::browser::run_script(
        &w,
        "live.mjs",
        &[
            ("USER2", "bob".as_ref()),
            ("PASS2", USERS[1].1.as_ref()),
            ("USER3", "carol".as_ref()),
            ("PASS3", USERS[2].1.as_ref()),
            ("DESK", "desk".as_ref()),
            ("CAM", "studio".as_ref()),
            ("EXTRA", "zextra".as_ref()),
            ("PUBLISH_KEY", cam_key.as_ref()),
            ("EXTRA_KEY", extra_key.as_ref()),
            ("SIGNAL_DIR", signals.as_os_str()),
        ],
    );
    revoker.join().unwrap();
    reader.join().unwrap();
    let codec = result["steps"]["the viewer plays the camera by WHEP and its frames advance"]["codec"]
        .as_str()
        .unwrap_or_default();
    assert!(["video/H264", "video/VP8"].contains(&codec), "forwarded as sent: {codec}");
    // The camera's stream ends once its publisher has been gone for the grace period: its
    // recording lands in the gallery as an ordinary MP4 that decodes, and is an item.
    let (file, path, codecs, secs) = recording(&w, "studio");
    assert_eq!(codecs, ["h264", "opus"]);
    assert!(secs > 5.0, "the whole camera session is recorded: {secs} s");
    // Every frame decodes (frame checksums at the stream's own time base).
    let decode = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "framecrc", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success() && decode.stderr.is_empty(), "{}", String::from_utf8_lossy(&decode.stderr));
    let alice = w.login("alice");
    let end = Instant::now() + Duration::from_secs(10);
    while w.item_id(&alice, &file).is_none() {
        assert!(Instant::now() < end, "the recording is no gallery item");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.call("GET", "/healthz", None, None).status, 200);
}

/// ffmpeg publishing a test pattern (H.264 and AAC) over RTMP to `name` with `key` for
/// `secs` seconds, keyframes every second.
fn rtmp_publisher(port: u16, name: &str, key: &str, secs: u32) -> std::process::Command {
    let mut c = std::process::Command::new("ffmpeg");
    c.args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-t", &secs.to_string(), "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/{name}?key={key}"));
    c
}

#[test]
fn ffmpeg_publishes_over_rtmp_is_read_back_over_ll_hls_and_recorded() {
    let port = crate::http::free_port();
    let w = World::with_config(&format!("{CONFIG}rtmp_listen = \"127.0.0.1:{port}\"\n"));
    let (_, key) = create(&w, "feed", &["--gallery", "/trip", "--record"]);
    let alice = w.login("alice");
    // A wrong key is refused, and ffmpeg says why.
    let wrong = rtmp_publisher(port, "feed", "nsk_00", 1).output().unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong publish key"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let mut publisher = rtmp_publisher(port, "feed", &key, 12).spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let s = w.call("GET", "/api/live/feed", Some(&alice), None).json();
        if s["live"]["ingest"] == "rtmp" {
            break;
        }
        assert!(Instant::now() < end, "the RTMP stream never went live: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second publisher of the same stream is refused while the first sends.
    let second = rtmp_publisher(port, "feed", &key, 1).output().unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already has a publisher"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // ffmpeg reads the live stream back over low-latency HLS and decodes it.
    let url = format!("{}/live/feed/master.m3u8", w.base);
    let auth = format!("Authorization: Bearer {alice}\r\n");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-headers",
            &auth,
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
            &url,
        ])
        .output()
        .unwrap();
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap_or_default();
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["codec_name"].as_str()).collect())
        .unwrap_or_default();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{probe}");
    let read = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-headers",
            &auth,
            "-i",
            &url,
            "-t",
            "4",
            "-map",
            "0:v",
            "-f",
            "framecrc",
            "-",
        ])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&read.stdout).lines().filter(|l| !l.starts_with('#')).count();
    assert!(read.status.success() && frames >= 75, "{frames} frames: {}", String::from_utf8_lossy(&read.stderr));
    let mpd = w.call("GET", "/live/feed/manifest.mpd", Some(&alice), None);
    assert_eq!(mpd.status, 200);
    assert!(String::from_utf8_lossy(&mpd.body).contains("<SegmentTimeline><S t="));

    assert!(publisher.wait().unwrap().success(), "the publisher ran to its end");
    // The stream ends after the grace period; its recording is an MP4 in the gallery.
    let (_, _, codecs, secs) = recording(&w, "feed");
    assert_eq!(codecs, ["h264", "aac"]);
    assert!((10.0..=13.0).contains(&secs), "the whole publication is recorded: {secs} s");
    assert_eq!(w.call("GET", "/healthz", None, None).status, 200);
}
