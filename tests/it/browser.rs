//! The web UI in headless Chromium (Debian's, driven by playwright-core from
//! tests/browser): two users in two browser contexts see each other's comment and
//! reaction live; a drag-and-drop upload lands in the mount; keyboard and phone layout.

use crate::galleries::World;
use std::process::Command;

/// Runs the script tests/browser/NAME against `w`'s sidecar and gallery, signed in as
/// alice, with `env` on top; returns the JSON line it prints last, once it says `ok`.
pub(crate) fn run_script(w: &World, name: &str, env: &[(&str, &std::ffi::OsStr)]) -> serde_json::Value {
    let shots = w.v.tmp.path().join("screenshots");
    let script = format!("{}/tests/browser/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(script)
        .env("NANOFS_URL", &w.base)
        .env("GALLERY_ID", &w.gallery)
        .env("USER1", "alice")
        .env("PASS1", crate::galleries::USERS[0].1)
        .env("SCREENSHOT_DIR", &shots)
        .envs(env.iter().copied())
        .output()
        .expect("node runs (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test {name} failed:\n{stdout}\n{}\nscreenshots in {}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        shots.display(),
        w.m.log_text()
    );
    let result: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script prints a JSON line");
    assert_eq!(result["ok"], true, "{result}");
    eprintln!("{result}");
    result
}

#[test]
fn two_browsers_collaborate_live_and_a_dropped_file_lands_in_the_mount() {
    let w = World::new();
    let alice = w.login("alice");
    // Something to look at before the upload.
    let photo = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x / 3) as u8, (y / 2) as u8, 90]));
    let mut png = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut png, image::ImageFormat::Png).unwrap();
    assert_eq!(w.upload(&alice, "harbour.png", &png.into_inner()).0, 201);
    let upload = w.v.tmp.path().join("dropped.jpg");
    image::RgbImage::from_fn(320, 200, |x, _| image::Rgb([200, (x % 256) as u8, 40])).save(&upload).unwrap();
    let result = run_script(
        &w,
        "galleries.mjs",
        &[
            ("USER2", "bob".as_ref()),
            ("PASS2", crate::galleries::USERS[1].1.as_ref()),
            ("UPLOAD_FILE", upload.as_os_str()),
            ("KEEP", "1".as_ref()),
        ],
    );
    assert_eq!(result["transport"], "websocket", "live updates came over the WebSocket");
    // Every file the browser uploaded is in the mount, byte for byte.
    let sent = std::fs::read(&upload).unwrap();
    let uploaded = result["uploaded"].as_array().expect("the script lists its uploads");
    assert!(!uploaded.is_empty());
    for u in uploaded {
        let name = u["name"].as_str().expect("an upload has a name");
        let path = w.m.p(&format!("trip/{name}"));
        assert_eq!(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())), sent, "{name}");
    }
    // The comment made in the first browser is stored with its author.
    let items = w.call("GET", &w.g("/items"), Some(&alice), None).json();
    let harbour = items["items"].as_array().unwrap().iter().find(|i| i["name"] == "harbour.png").unwrap().clone();
    assert!(harbour["comments"].as_u64().unwrap() >= 1);
    assert_eq!(harbour["reactions"]["🔥"], 1);
}

/// The gallery viewer plays a packaged video through hls.js (tests/browser/streaming.mjs):
/// adaptive switching under a throttled network, Save-Data, a low battery, the position in
/// the URL.
#[test]
fn a_packaged_video_plays_adaptively_in_the_gallery_viewer() {
    let w = World::with_config("[media.streaming]\nladder = [720, 480, 360, 240]\n");
    // 24 s of 1280x720 with a tone: four rungs of twelve 2 s segments.
    crate::common::sh(&format!(
        "ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=1280x720:rate=24 -f lavfi -i sine=frequency=440 -t 24 \
         -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest '{}'",
        w.m.p("trip/clip.mp4").display()
    ));
    let job: serde_json::Value =
        serde_json::from_str(&w.v.run_ok(&["media", "package", w.v.path(), "/trip/clip.mp4", "--wait"])).unwrap();
    assert_eq!(job["report"]["renditions"], serde_json::json!([720, 480, 360, 240]), "{job}");
    let alice = w.login("alice");
    let item = w.item_id(&alice, "clip.mp4").expect("the video is an item of the gallery");
    run_script(&w, "streaming.mjs", &[("ITEM_ID", item.as_ref())]);
}

/// The gallery's pictures in the browser (tests/browser/pictures.mjs): tiles and the viewer
/// load renders sized for the device (srcset/sizes, AVIF), never the originals, and the
/// viewer's prefetch is a cache hit.
#[test]
fn tiles_and_the_viewer_load_pictures_sized_for_the_device() {
    let w = World::new();
    // Landscape pictures wider than the largest tile candidate, each a little different.
    for i in 0..8u32 {
        let img = image::RgbImage::from_fn(2400, 1600, |x, y| {
            let v = (x ^ y).wrapping_mul(i + 3) >> 3;
            image::Rgb([(x / 10 + i * 30) as u8, (y / 7) as u8, v as u8])
        });
        img.save(w.m.p(&format!("trip/photo-{i:02}.jpg"))).unwrap();
    }
    let alice = w.login("alice");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let l = w.call("GET", &w.g("/items?limit=100"), Some(&alice), None).json();
        let items = l["items"].as_array().unwrap();
        if items.len() == 8 && items.iter().all(|i| i["width"].as_u64() == Some(2400) && i["placeholder"].is_string()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "indexing never finished: {l}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    run_script(&w, "pictures.mjs", &[]);
}
