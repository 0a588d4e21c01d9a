//! Adaptive streaming with real clients: `nanofs media package` has ffmpeg make a clip's
//! ladder, and ffprobe and ffmpeg read the HLS master playlist and the DASH manifest over
//! HTTP with a token (`-headers`) and decode every rendition to its end.

use crate::common::*;
use crate::http::Server;

/// The streams ffprobe finds behind `url`: (codec type, height), and the duration.
fn probe(url: &str, auth: &str) -> (Vec<(String, u32)>, f64) {
    let out = sh(&format!(
        "ffprobe -v error -headers '{auth}\r\n' -show_entries stream=codec_type,height:format=duration -of json '{url}'"
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let streams = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["codec_type"].as_str().unwrap().to_string(), s["height"].as_u64().unwrap_or(0) as u32))
        .collect();
    (streams, v["format"]["duration"].as_str().unwrap().parse().unwrap())
}

#[test]
fn a_packaged_video_plays_over_hls_and_dash_and_bad_requests_get_clear_answers() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir(m.p("videos")).unwrap();
    // 6 s of 640x360 at 25 fps with a tone: H.264 and AAC, as a camera or phone makes them.
    sh(&format!(
        "ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -t 6 \
         -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest '{}'",
        m.p("videos/clip.mp4").display()
    ));
    std::fs::write(m.p("videos/notes.mp4"), b"a text file with a video's name").unwrap();
    std::fs::write(m.p("other.txt"), b"outside the token").unwrap();
    // A job of the daemon while mounted.
    let job = package(&v, "/videos/clip.mp4", &["--ladder", "720,360,240"]);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["report"]["renditions"], serde_json::json!([360, 240]), "no rung above the source: {job}");
    assert_eq!(job["report"]["audio"], true);
    let refused = v.run(&["media", "package", v.path(), "/videos/notes.mp4", "--wait"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a video"), "{refused:?}");
    let jobs = jobs(&v);
    let failed = jobs.iter().find(|j| j["path"] == "/videos/notes.mp4").expect("the failed job is listed");
    assert_eq!(failed["state"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("not a video"), "ffmpeg's reason is kept: {failed}");
    assert_eq!(std::fs::read(m.p("videos/notes.mp4")).unwrap(), b"a text file with a video's name", "untouched");
    // The renditions are in the volume but hidden from the mount.
    assert_eq!(
        sh(&format!("ls -A '{}'", m.p("").display())).split_whitespace().collect::<Vec<_>>(),
        ["other.txt", "videos"]
    );
    m.unmount();
    v.assert_clean(&["--read-data"]);

    let token = v.run_ok(&["token", "create", v.path(), "--path", "/videos"]).trim().to_string();
    let auth = format!("Authorization: Bearer {token}");
    let server = Server::start(&v);
    let url = |path: &str, file: &str| format!("{}/stream/{path}/{file}", server.base);
    for manifest in ["master.m3u8", "manifest.mpd"] {
        let u = url("videos/clip.mp4", manifest);
        let (streams, duration) = probe(&u, &auth);
        assert_eq!(video_heights(&streams), [240, 360], "{manifest}: {streams:?}");
        assert!(streams.iter().any(|(t, _)| t == "audio"), "{manifest}: {streams:?}");
        assert!((duration - 6.0).abs() <= 2.0, "{manifest}: {duration} s, the clip lasts 6 s (segments of 2 s)");
        // Every rendition decodes to its end without an error.
        let programs = if manifest.ends_with("m3u8") { 2 } else { 1 };
        for rung in 0..2 {
            let map = if programs == 2 { format!("0:p:{rung}:v") } else { format!("0:v:{rung}") };
            let decoded = decode(&u, &auth, &format!("-map {map} -map 0:a:0"));
            assert!(decoded.trim().ends_with("decoded"), "{manifest} rendition {rung}: {decoded}");
        }
    }
    let status = |path: &str, file: &str, auth: &str| {
        sh(&format!("curl -s --path-as-is -o /dev/null -w '%{{http_code}}' -H '{auth}' '{}'", url(path, file)))
            .trim()
            .to_string()
    };
    // Segments are cached for good, playlists revalidated.
    let head = sh(&format!("curl -sI -H '{auth}' '{}'", url("videos/clip.mp4", "seg-0-00001.m4s"))).to_lowercase();
    assert!(head.contains("cache-control: public, max-age=31536000, immutable"), "{head}");
    assert!(head.contains("content-type: video/iso.segment"), "{head}");
    assert!(head.contains("etag: \""), "{head}");
    assert_eq!(status("videos/notes.mp4", "master.m3u8", &auth), "415", "not a video");
    assert_eq!(status("other.txt", "master.m3u8", &auth), "403", "outside the token");
    assert_eq!(status("videos/clip.mp4", "master.m3u8", "Authorization: Bearer nft_wrong"), "401");
    assert_eq!(status("videos/clip.mp4", "seg-9-00001.m4s", &auth), "404");
    assert_eq!(status("videos/clip.mp4", "../../other.txt", &auth), "400");
    server.stop();

    // A replaced video is not served from the old ladder: it has to be packaged again.
    let m = v.mount();
    sh(&format!(
        "ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 2 -c:v libx264 -preset veryfast -pix_fmt yuv420p '{}'",
        m.p("videos/clip.mp4").display()
    ));
    m.unmount();
    let server = Server::start(&v);
    let url = |file: &str| format!("{}/stream/videos/clip.mp4/{file}", server.base);
    let status = sh(&format!("curl -s -o /dev/null -w '%{{http_code}}' -H '{auth}' '{}'", url("master.m3u8")));
    assert_eq!(status.trim(), "409", "stale renditions are not served");

    // Renditions follow the content: a snapshot keeps the ladder of a video deleted from
    // the tree, and it goes with the last file that holds those bytes.
    // (The new clip is 180 lines high: below every rung, so one rendition at its height.)
    let job = package(&v, "/videos/clip.mp4", &["--ladder", "240"]);
    assert_eq!(job["state"], "done", "{job}");
    v.run_ok(&["snapshot", "create", v.path(), "before-delete"]);
    server.stop();
    let m = v.mount();
    std::fs::remove_file(m.p("videos/clip.mp4")).unwrap();
    m.unmount();
    let root_token = v.run_ok(&["token", "create", v.path(), "--path", "/"]).trim().to_string();
    let root_auth = format!("Authorization: Bearer {root_token}");
    let server = Server::start(&v);
    let snap = format!("{}/stream/.snapshots/before-delete/videos/clip.mp4/master.m3u8", server.base);
    let (streams, _) = probe(&snap, &root_auth);
    assert!(streams.iter().any(|(t, h)| t == "video" && *h == 180), "the snapshot's video still streams: {streams:?}");
    v.run_ok(&["snapshot", "delete", v.path(), "before-delete"]);
    server.stop();
    let m = v.mount();
    let swept = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        m.log_text().contains("renditions no file holds any more removed")
    });
    assert!(swept, "the ladder no file holds went at start:\n{}", m.log_text());
    assert_eq!(rendition_files(&v), 0, "nothing is left in .renditions");
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

/// The heights of the video streams ffprobe found, in order, each once.
fn video_heights(streams: &[(String, u32)]) -> Vec<u32> {
    let mut heights: Vec<u32> = streams.iter().filter(|(t, _)| t == "video").map(|(_, h)| *h).collect();
    heights.sort_unstable();
    heights.dedup();
    heights
}

/// ffmpeg decoding the streams `maps` selects of `url` to their end: its errors, then
/// `decoded` when it succeeded.
fn decode(url: &str, auth: &str, maps: &str) -> String {
    sh(&format!(
        "ffmpeg -nostdin -v error -xerror -headers '{auth}\r\n' -i '{url}' {maps} -f null - 2>&1 && echo decoded"
    ))
}

/// `nanofs media package VOLUME PATH ARGS --wait`: the finished job.
fn package(v: &TestVolume, path: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["media", "package", v.path(), path, "--wait"];
    all.extend(args);
    serde_json::from_str(&v.run_ok(&all)).unwrap()
}

/// `nanofs media jobs VOLUME --json`.
fn jobs(v: &TestVolume) -> Vec<serde_json::Value> {
    serde_json::from_str(&v.run_ok(&["media", "jobs", v.path(), "--json"])).unwrap()
}

/// Files in `.renditions`, from `nanofs stats` (a served volume's figures have its areas).
fn rendition_files(v: &TestVolume) -> u64 {
    let stats: serde_json::Value = serde_json::from_str(&v.run_ok(&["stats", v.path(), "--json"])).unwrap();
    stats["areas"]
        .as_array()
        .map(|a| a.iter().find(|x| x["name"] == ".renditions").map_or(0, |x| x["files"].as_u64().unwrap()))
        .unwrap_or(0)
}

/// An H.264/AAC clip of `seconds` at `size` written to `path`.
fn clip(path: &std::path::Path, size: &str, seconds: u32) {
    sh(&format!(
        "ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size={size}:rate=25 -f lavfi -i sine=frequency=440 -t {seconds} \
         -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest '{}'",
        path.display()
    ));
}

/// Polls `media jobs` until `done` says so of the job of `path`; returns that job.
fn wait_for_job(
    v: &TestVolume,
    path: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(j) = jobs(v).into_iter().find(|j| j["path"] == path && done(j)) {
            return j;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: never {what}: {:?}", jobs(v));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn packaging_jobs_queue_report_progress_cancel_with_their_video_and_survive_a_crash() {
    let v = TestVolume::new();
    std::fs::write(v.dir.join("nanofs.toml"), "[media.streaming]\nladder = [360, 240]\nmax_jobs = 1\n").unwrap();
    let addr = format!("127.0.0.1:{}", crate::http::free_port());
    let m = v.mount_with(&["--serve", &addr]);
    // Long enough to be caught mid-run on any machine: 90 s of video.
    clip(&m.p("long.mp4"), "640x360", 90);
    clip(&m.p("short.mp4"), "320x180", 3);
    let queued: serde_json::Value =
        serde_json::from_str(&v.run_ok(&["media", "package", v.path(), "/long.mp4"])).unwrap();
    assert!(matches!(queued["state"].as_str(), Some("queued" | "running")), "{queued}");
    v.run_ok(&["media", "package", v.path(), "/short.mp4"]);
    // One job at a time: the long one runs and reports progress while the short one waits.
    let running = wait_for_job(&v, "/long.mp4", "running with progress", |j| {
        j["state"] == "running" && j["progress"].as_f64().unwrap() > 0.0
    });
    assert!(running["progress"].as_f64().unwrap() < 1.0);
    // A player asking meanwhile hears how far the job is, not a hang.
    let token = v.run_ok(&["token", "create", v.path(), "--path", "/"]).trim().to_string();
    let answer = sh(&format!(
        "curl -s -w ' %{{http_code}}' -H 'Authorization: Bearer {token}' http://{addr}/stream/long.mp4/master.m3u8"
    ));
    let (body, code) = answer.rsplit_once(' ').unwrap();
    assert_eq!(code, "409", "{answer}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["job"]["state"], "running", "{body}");
    assert!(body["job"]["progress"].as_f64().unwrap() > 0.0, "{body}");
    let table = v.run_ok(&["media", "jobs", v.path()]);
    assert!(table.lines().any(|l| l.starts_with("queued") && l.ends_with("/short.mp4")), "{table}");
    // Deleting a waiting video cancels its job.
    std::fs::remove_file(m.p("short.mp4")).unwrap();
    let cancelled = wait_for_job(&v, "/short.mp4", "cancelled", |j| j["state"] == "cancelled");
    assert!(cancelled["error"].as_str().unwrap().contains("deleted"), "{cancelled}");
    // A crash mid-run: the job is run again at the next start, and what the first run
    // wrote is swept, not published.
    m.kill9();
    let m = v.mount();
    let done = wait_for_job(&v, "/long.mp4", "done", |j| j["state"] == "done");
    assert_eq!(done["runs"], 2, "run again after the crash: {done}");
    let files = done["report"]["files"].as_u64().unwrap();
    assert_eq!(rendition_files(&v), files + 1, "the ladder and its source record, nothing of the first run");
    // Deleting a packaged video sweeps its ladder within seconds.
    std::fs::remove_file(m.p("long.mp4")).unwrap();
    let swept = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        m.log_text().contains("renditions no file holds any more removed")
    });
    assert!(swept, "the deleted video's ladder stayed:\n{}", m.log_text());
    assert_eq!(rendition_files(&v), 0);
    m.unmount();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn a_video_that_lands_in_a_gallery_is_packaged_and_its_clients_hear_of_it() {
    let w = crate::galleries::World::with_config("[media.streaming]\npackage_on_upload = true\nladder = [240]\n");
    let alice = w.login("alice");
    let mut events = crate::galleries::Ws::connect(&w.base, &w.g("/events"), &alice).unwrap();
    // Through the mount, as a camera import or rsync would.
    let staged = w.v.tmp.path().join("holiday.mp4");
    clip(&staged, "320x240", 3);
    std::fs::copy(&staged, w.m.p("trip/holiday.mp4")).unwrap();
    let queued = events.until("rendition.queued");
    let item = queued["item"].as_str().unwrap().to_string();
    let ready = events.until("rendition.ready");
    assert_eq!(ready["item"], item.as_str());
    assert_eq!(ready["data"]["renditions"], serde_json::json!([240]), "{ready}");
    let job = jobs(&w.v).into_iter().find(|j| j["path"] == "/trip/holiday.mp4").expect("the job is listed");
    assert_eq!((job["state"].as_str(), job["automatic"].as_bool()), (Some("done"), Some(true)), "{job}");
    // Its ladder streams.
    let token = w.v.run_ok(&["token", "create", w.v.path(), "--path", "/trip"]).trim().to_string();
    let (streams, _) =
        probe(&format!("{}/stream/trip/holiday.mp4/master.m3u8", w.base), &format!("Authorization: Bearer {token}"));
    assert!(streams.iter().any(|(t, h)| t == "video" && *h == 240), "{streams:?}");
    // Pictures are not videos: nothing is queued for them.
    std::fs::write(w.m.p("trip/notes.txt"), b"not a video").unwrap();
    events.until("item.indexed");
    assert_eq!(jobs(&w.v).len(), 1, "only the video was queued");
}

/// Gallery sessions and share links reach the streams through the item's route, with the
/// item's `content` rules; `/stream` answers the configured origins' preflights and reads.
#[test]
fn gallery_members_and_share_links_stream_items_and_configured_origins_get_cors() {
    use crate::galleries::World;
    use serde_json::json;
    let w = World::with_config(
        "[sidecar]\ncors_origins = [\"https://player.example\"]\n[media.streaming]\nladder = [360, 240]\n",
    );
    sh(&format!(
        "ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=640x360:rate=25 -t 4 -c:v libx264 -preset ultrafast \
         -pix_fmt yuv420p '{0}/clip.mp4' && ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=640x360:rate=25 -t 3 \
         -c:v libx264 -preset ultrafast -pix_fmt yuv420p '{0}/raw.mp4'",
        w.m.p("trip").display()
    ));
    std::fs::write(w.m.p("trip/notes.mp4"), b"a text file with a video's name").unwrap();
    w.v.run_ok(&["media", "package", w.v.path(), "/trip/clip.mp4", "--wait"]);
    let (alice, bob, erin) = (w.login("alice"), w.login("bob"), w.login("erin"));
    let clip = w.item_id(&alice, "clip.mp4").unwrap();
    let item = |id: &str, file: &str| w.g(&format!("/items/{id}/stream/{file}"));
    // A viewer streams every file of the ladder.
    let master = w.call("GET", &item(&clip, "master.m3u8"), Some(&bob), None);
    assert_eq!(master.status, 200, "{}", String::from_utf8_lossy(&master.body));
    let text = String::from_utf8_lossy(&master.body).to_string();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    let variant = text.lines().find(|l| l.starts_with("media_") && l.ends_with(".m3u8")).expect("a variant playlist");
    let variant = String::from_utf8_lossy(&w.call("GET", &item(&clip, variant), Some(&bob), None).body).to_string();
    let segment = variant.lines().find(|l| l.ends_with(".m4s") && !l.starts_with('#')).expect("a segment").to_string();
    assert_eq!(w.call("GET", &item(&clip, &segment), Some(&bob), None).status, 200);
    assert_eq!(w.call("HEAD", &item(&clip, "manifest.mpd"), Some(&bob), None).status, 200);
    let head =
        sh(&format!("curl -sI -H 'Authorization: Bearer {bob}' '{}{}'", w.base, item(&clip, &segment))).to_lowercase();
    assert!(head.contains("cache-control: public, max-age=31536000, immutable"), "{head}");
    assert!(head.contains("content-type: video/iso.segment"), "{head}");
    // The errors of /stream, and the gallery's rules.
    let status = |file: &str, id: &str, token: Option<&str>| w.call("GET", &item(id, file), token, None).status;
    assert_eq!(status("master.m3u8", &w.item_id(&alice, "notes.mp4").unwrap(), Some(&bob)), 415);
    assert_eq!(status("master.m3u8", &w.item_id(&alice, "raw.mp4").unwrap(), Some(&bob)), 409);
    assert_eq!(status("seg-9-00001.m4s", &clip, Some(&bob)), 404);
    assert_eq!(status("notes.txt", &clip, Some(&bob)), 404);
    assert_eq!(status("master.m3u8", &clip, Some(&erin)), 404, "no member: no such gallery");
    assert_eq!(status("master.m3u8", &clip, None), 401);
    assert_eq!(status("master.m3u8", "999999", Some(&bob)), 404);
    // A share link's session streams too.
    let link =
        w.call("POST", &w.g("/links"), Some(&alice), Some(json!({"role": "viewer", "expires_in_secs": 600}))).json();
    let opened =
        w.call("POST", "/api/share/open", None, Some(json!({"token": link["token"].as_str().unwrap()}))).json();
    assert_eq!(status("master.m3u8", &clip, opened["token"].as_str()), 200);

    // CORS on /stream: the configured origin only, with the headers a player reads.
    let token = w.v.run_ok(&["token", "create", w.v.path(), "--path", "/trip"]).trim().to_string();
    let url = format!("{}/stream/trip/clip.mp4/master.m3u8", w.base);
    let preflight = |origin: &str| {
        sh(&format!(
            "curl -s -i -X OPTIONS -H 'Origin: {origin}' -H 'Access-Control-Request-Method: GET' \
             -H 'Access-Control-Request-Headers: authorization,range' '{url}'"
        ))
        .to_lowercase()
    };
    let ok = preflight("https://player.example");
    assert!(ok.starts_with("http/1.1 204"), "{ok}");
    assert!(ok.contains("access-control-allow-origin: https://player.example\r\n"), "{ok}");
    assert!(ok.contains("access-control-allow-headers: authorization, range"), "{ok}");
    assert!(ok.contains("vary: origin"), "{ok}");
    let refused = preflight("https://elsewhere.example");
    assert!(refused.starts_with("http/1.1 403"), "{refused}");
    assert!(!refused.contains("access-control-allow-origin"), "{refused}");
    let get = |origin: &str| {
        sh(&format!("curl -s -i -o /dev/stderr -D - -H 'Origin: {origin}' -H 'Authorization: Bearer {token}' '{url}' 2>/dev/null"))
            .to_lowercase()
    };
    let read = get("https://player.example");
    assert!(read.starts_with("http/1.1 200"), "{read}");
    assert!(read.contains("access-control-allow-origin: https://player.example\r\n"), "{read}");
    assert!(
        read.contains("access-control-expose-headers: content-length, content-range, etag, accept-ranges"),
        "{read}"
    );
    assert!(read.contains("vary: origin"), "{read}");
    let other = get("https://elsewhere.example");
    assert!(other.starts_with("http/1.1 200") && !other.contains("access-control-allow-origin"), "{other}");
    // Errors carry the CORS headers too, so a player on the origin can read why.
    let denied = sh(&format!("curl -s -i -H 'Origin: https://player.example' '{url}'")).to_lowercase();
    assert!(denied.starts_with("http/1.1 401") && denied.contains("access-control-allow-origin"), "{denied}");
}

#[test]
fn a_source_that_fits_the_top_rung_is_copied_not_encoded_again() {
    let v = TestVolume::new();
    let m = v.mount();
    // As a phone makes it: H.264 High with a keyframe every second, and AAC.
    sh(&format!(
        "ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=854x480:rate=30 -f lavfi -i sine=frequency=440 -t 6 \
         -c:v libx264 -preset veryfast -profile:v high -g 30 -pix_fmt yuv420p -c:a aac -shortest '{}'",
        m.p("phone.mp4").display()
    ));
    let job = package(&v, "/phone.mp4", &["--ladder", "720,360"]);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["report"]["copied"], true, "{job}");
    assert_eq!(job["report"]["renditions"], serde_json::json!([480, 360]), "the source is the top rung: {job}");
    m.unmount();
    let token = v.run_ok(&["token", "create", v.path(), "--path", "/"]).trim().to_string();
    let auth = format!("Authorization: Bearer {token}");
    let server = Server::start(&v);
    let u = format!("{}/stream/phone.mp4/master.m3u8", server.base);
    let (streams, duration) = probe(&u, &auth);
    assert!((duration - 6.0).abs() <= 2.0, "{duration}");
    assert_eq!(video_heights(&streams), [360, 480], "{streams:?}");
    for rung in 0..2 {
        let decoded = decode(&u, &auth, &format!("-map 0:p:{rung}:v -map 0:a:0"));
        assert!(decoded.trim().ends_with("decoded"), "rendition {rung}: {decoded}");
    }
    // The copy keeps the source's own encoding: its profile, not the ladder's Main.
    let profiles =
        sh(&format!("ffprobe -v error -headers '{auth}\r\n' -show_entries stream=height,profile -of csv=p=0 '{u}'"));
    assert!(profiles.lines().any(|l| l.contains("High") && l.contains("480")), "{profiles}");
    server.stop();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn a_fragmented_mp4_without_renditions_plays_by_byte_ranges_of_itself() {
    let v = TestVolume::new();
    let m = v.mount();
    // As screen recorders and live archivers write it: a fragment at every keyframe.
    sh(&format!(
        "ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -t 8 \
         -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -c:a aac -shortest \
         -movflags frag_keyframe+empty_moov+default_base_moof '{}'",
        m.p("fragmented.mp4").display()
    ));
    clip(&m.p("plain.mp4"), "320x180", 3);
    m.unmount();
    let token = v.run_ok(&["token", "create", v.path(), "--path", "/"]).trim().to_string();
    let auth = format!("Authorization: Bearer {token}");
    let server = Server::start(&v);
    let url = |path: &str, file: &str| format!("{}/stream/{path}/{file}", server.base);
    let get = |u: &str| sh(&format!("curl -s -w '\\n%{{http_code}}' -H '{auth}' '{u}'"));
    let master = get(&url("fragmented.mp4", "master.m3u8"));
    assert!(master.ends_with("\n200") && master.contains("RESOLUTION=640x360\nsource.m3u8"), "{master}");
    let media = get(&url("fragmented.mp4", "source.m3u8"));
    assert!(
        media.contains("#EXT-X-MAP:URI=\"source.mp4\",BYTERANGE=") && media.contains("#EXT-X-BYTERANGE:"),
        "{media}"
    );
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    // Players read it to the end, range by range, from the original's own bytes.
    let u = url("fragmented.mp4", "master.m3u8");
    let (streams, duration) = probe(&u, &auth);
    assert!(streams.iter().any(|(t, h)| t == "video" && *h == 360), "{streams:?}");
    assert!((duration - 8.0).abs() <= 1.0, "{duration}");
    let decoded = decode(&u, &auth, "");
    assert!(decoded.trim().ends_with("decoded"), "{decoded}");
    // A plain MP4 cannot be cut that way: 409 until it is packaged.
    assert!(get(&url("plain.mp4", "master.m3u8")).ends_with("\n409"));
    assert!(get(&url("plain.mp4", "source.m3u8")).ends_with("\n404"));
    // Packaged, the same video has its ladder.
    let job = package(&v, "/fragmented.mp4", &["--ladder", "360,240"]);
    assert_eq!(job["state"], "done", "{job}");
    let master = get(&url("fragmented.mp4", "master.m3u8"));
    assert!(master.contains("media_0.m3u8") && !master.contains("source.m3u8"), "{master}");
    server.stop();
}

#[test]
fn a_video_rewritten_while_it_is_packaged_is_packaged_again_from_its_new_bytes() {
    let v = TestVolume::new();
    std::fs::write(v.dir.join("nanofs.toml"), "[media.streaming]\nladder = [240]\n").unwrap();
    let m = v.mount();
    clip(&m.p("take.mp4"), "640x360", 90);
    v.run_ok(&["media", "package", v.path(), "/take.mp4"]);
    wait_for_job(&v, "/take.mp4", "running", |j| j["state"] == "running" && j["progress"].as_f64().unwrap() > 0.0);
    // The take is replaced in place by a short one while ffmpeg reads the long one.
    let short = v.tmp.path().join("short.mp4");
    clip(&short, "320x240", 2);
    std::fs::copy(&short, m.p("take.mp4")).unwrap();
    let done = wait_for_job(&v, "/take.mp4", "done", |j| j["state"] == "done");
    assert_eq!(done["runs"], 2, "the first run stopped and a second one started: {done}");
    // A video deleted while ffmpeg works on it: the run stops, the job ends cancelled.
    clip(&m.p("gone.mp4"), "640x360", 90);
    v.run_ok(&["media", "package", v.path(), "/gone.mp4"]);
    wait_for_job(&v, "/gone.mp4", "running", |j| j["state"] == "running" && j["progress"].as_f64().unwrap() > 0.0);
    std::fs::remove_file(m.p("gone.mp4")).unwrap();
    let cancelled = wait_for_job(&v, "/gone.mp4", "cancelled", |j| j["state"] == "cancelled");
    assert!(cancelled["progress"].as_f64().unwrap() < 1.0, "stopped before its end: {cancelled}");
    m.unmount();
    let token = v.run_ok(&["token", "create", v.path(), "--path", "/"]).trim().to_string();
    let server = Server::start(&v);
    let (_, duration) =
        probe(&format!("{}/stream/take.mp4/master.m3u8", server.base), &format!("Authorization: Bearer {token}"));
    assert!(duration < 5.0, "the ladder is of the new 2 s take, not the 90 s one: {duration} s");
    server.stop();
    v.assert_clean(&["--read-data"]);
}

#[test]
fn packaging_a_directory_queues_every_video_under_it_that_has_no_ladder() {
    let v = TestVolume::new();
    let m = v.mount();
    std::fs::create_dir_all(m.p("trip/day2")).unwrap();
    clip(&m.p("trip/a.mp4"), "320x240", 2);
    clip(&m.p("trip/day2/b.mov"), "320x240", 3);
    std::fs::copy(m.p("trip/a.mp4"), m.p("trip/copy-of-a.mp4")).unwrap();
    std::fs::write(m.p("trip/day2/notes.mp4"), b"a text file with a video's name").unwrap();
    let out = v.run_ok(&["media", "package", v.path(), "/trip", "--ladder", "240", "--wait"]);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let paths: Vec<&str> = jobs.iter().map(|j| j["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/trip/a.mp4", "/trip/copy-of-a.mp4", "/trip/day2/b.mov"],
        "videos by their bytes, not their names: {out}"
    );
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{out}");
    // The copy's bytes had their ladder by its turn: no second run for them.
    assert!(jobs[1]["report"].is_null() && jobs[0]["report"].is_object(), "{out}");
    // Again: each has its ladder, so nothing is queued; a video named alone is redone.
    let again: Vec<serde_json::Value> =
        serde_json::from_str(&v.run_ok(&["media", "package", v.path(), "/trip", "--wait"])).unwrap();
    assert!(again.is_empty(), "{again:?}");
    let redone = package(&v, "/trip/a.mp4", &["--ladder", "240"]);
    assert_eq!(redone["state"], "done", "{redone}");
    m.unmount();
}
