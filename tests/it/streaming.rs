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
    // Through the daemon while mounted.
    let report: serde_json::Value =
        serde_json::from_str(&v.run_ok(&["media", "package", v.path(), "/videos/clip.mp4", "--ladder", "720,360,240"]))
            .unwrap();
    assert_eq!(report["renditions"], serde_json::json!([360, 240]), "no rung above the source: {report}");
    assert_eq!(report["audio"], true);
    let refused = v.run(&["media", "package", v.path(), "/videos/notes.mp4"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a video"), "{refused:?}");
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
        let mut heights: Vec<u32> = streams.iter().filter(|(t, _)| t == "video").map(|(_, h)| *h).collect();
        heights.sort_unstable();
        heights.dedup();
        assert_eq!(heights, [240, 360], "{manifest}: {streams:?}");
        assert!(streams.iter().any(|(t, _)| t == "audio"), "{manifest}: {streams:?}");
        assert!((duration - 6.0).abs() <= 2.0, "{manifest}: {duration} s, the clip lasts 6 s (segments of 2 s)");
        // Every rendition decodes to its end without an error.
        let programs = if manifest.ends_with("m3u8") { 2 } else { 1 };
        for rung in 0..2 {
            let map = if programs == 2 { format!("0:p:{rung}:v") } else { format!("0:v:{rung}") };
            let decoded = sh(&format!(
                "ffmpeg -nostdin -v error -xerror -headers '{auth}\r\n' -i '{u}' -map {map} -map 0:a:0 -f null - 2>&1 && echo decoded"
            ));
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
    server.stop();

    // A deleted video's renditions go at the sidecar's next housekeeping (here at start).
    let m = v.mount();
    std::fs::remove_file(m.p("videos/clip.mp4")).unwrap();
    m.unmount();
    let addr = format!("127.0.0.1:{}", crate::http::free_port());
    let m = v.mount_with(&["--serve", &addr]);
    let swept = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        m.log_text().contains("renditions of deleted videos removed")
    });
    assert!(swept, "renditions of the deleted video stayed:\n{}", m.log_text());
    m.unmount();
    v.assert_clean(&["--read-data"]);
}
