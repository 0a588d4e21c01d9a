//! Pictures for the device over the real sidecar of a real mount: `/render` with a token
//! and the gallery item's `/render` with a session cookie answer the format and width the
//! request's hints call for (checked by decoding the answer with ffprobe and the image
//! crate), keep the render in the hidden `.renders` directory, serve it again without
//! encoding, revalidate with 304, make a new one when the picture is replaced, and lose it
//! at housekeeping when the picture is deleted.

use crate::common::*;
use crate::galleries::World;
use crate::http::free_port;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// A w x h photo-like JPEG: red top-left quadrant, blue elsewhere, with a texture (so
/// quality changes the size), and an EXIF orientation when `orientation` is not 1.
fn photo(w: u32, h: u32, orientation: u16, tint: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let t = (((x * 7 + y * 13) % 31) as u8).wrapping_mul(2);
        if x < w / 2 && y < h / 2 {
            image::Rgb([220u8.saturating_add(t / 2), t, t])
        } else {
            image::Rgb([tint[0].saturating_add(t), tint[1].saturating_add(t), tint[2].saturating_sub(t)])
        }
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&img).unwrap();
    if orientation == 1 {
        return jpeg;
    }
    let mut tiff = b"MM\0*".to_vec();
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation, SHORT, one value
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn h(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

fn call(w: &World, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", w.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = w.http.run(req.body(Vec::new()).unwrap()).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let mut body = Vec::new();
    resp.into_body().into_reader().read_to_end(&mut body).unwrap();
    Answer { status, headers, body }
}

/// (codec, width, height) of a picture, by ffprobe.
fn probe(w: &World, bytes: &[u8]) -> (String, u32, u32) {
    let f = w.v.tmp.path().join("probe.bin");
    std::fs::write(&f, bytes).unwrap();
    let out =
        sh(&format!("ffprobe -v error -show_entries stream=codec_name,width,height -of csv=p=0 '{}'", f.display()));
    let mut parts = out.trim().lines().next().unwrap_or("").split(',');
    let codec = parts.next().unwrap_or("").to_string();
    let width = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let height = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (codec, width, height)
}

fn renders_of(w: &World, ino: u64) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(w.m.p(&format!(".renders/{ino}")))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn rendered_count(w: &World) -> usize {
    w.m.log_text().matches("picture rendered").count()
}

#[test]
fn pictures_are_rendered_for_the_device_cached_revalidated_remade_and_swept() {
    let w = World::new();
    let original = photo(4000, 3000, 6, [20, 40, 200]);
    std::fs::write(w.m.p("trip/photo.jpg"), &original).unwrap();
    std::fs::write(w.m.p("trip/notes.txt"), b"not a picture").unwrap();
    // A PNG signature, then junk.
    let mut broken = b"\x89PNG\r\n\x1A\n".to_vec();
    broken.extend_from_slice(&[0xAB; 4096]);
    std::fs::write(w.m.p("trip/broken.png"), &broken).unwrap();
    std::fs::write(w.m.p("outside.jpg"), photo(64, 48, 1, [0, 0, 200])).unwrap();
    let ino = std::fs::metadata(w.m.p("trip/photo.jpg")).unwrap().ino();
    let token = w.v.run_ok(&["token", "create", w.v.path(), "--path", "/trip", "--allow", "read"]).trim().to_string();
    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());
    let chromium = ("Accept", "image/avif,image/webp,*/*");

    // AVIF at twice the CSS width, upright (EXIF 6 turns 4000x3000 into 3000x4000).
    let started = std::time::Instant::now();
    let avif = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, chromium, ("DPR", "2")]);
    let took = started.elapsed();
    assert_eq!(avif.status, 200, "{}", String::from_utf8_lossy(&avif.body));
    assert_eq!(avif.h("content-type"), "image/avif");
    assert_eq!(probe(&w, &avif.body), ("av1".to_string(), 960, 1280), "a 960 px wide AVIF, upright");
    assert!(avif.h("vary").contains("Accept") && avif.h("vary").contains("DPR"), "{:?}", avif.headers);
    assert!(avif.h("accept-ch").contains("DPR"), "{:?}", avif.headers);
    assert_eq!(avif.h("cache-control"), "private, max-age=86400");
    let etag = avif.h("etag").to_string();
    assert!(etag.starts_with('"') && etag.contains("w960") && etag.ends_with(".avif\""), "{etag}");
    assert_eq!(avif.h("content-length"), avif.body.len().to_string());
    eprintln!("first render of a 12 MP JPEG as a 960 px AVIF over HTTP: {took:?}");

    // Kept in the volume, hidden from the mount's listing.
    assert_eq!(renders_of(&w, ino), ["source", "w960.avif"]);
    assert!(!sh(&format!("ls -A '{}'", w.m.p("").display())).contains(".renders"));
    let kept = std::fs::metadata(w.m.p(&format!(".renders/{ino}/w960.avif"))).unwrap();
    assert_eq!(kept.len(), avif.body.len() as u64);

    // Again: the same bytes from the cache, no encoding, the file untouched.
    let encoded = rendered_count(&w);
    assert_eq!(encoded, 1, "{}", w.m.log_text());
    let again = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, chromium, ("DPR", "2")]);
    assert_eq!((again.status, again.h("etag")), (200, etag.as_str()));
    assert_eq!(again.body, avif.body);
    assert_eq!(rendered_count(&w), encoded, "served from the cache without encoding");
    let still = std::fs::metadata(w.m.p(&format!(".renders/{ino}/w960.avif"))).unwrap();
    assert_eq!((still.ino(), still.mtime_nsec()), (kept.ino(), kept.mtime_nsec()));

    // Revalidation and HEAD.
    let revalidated =
        call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, chromium, ("DPR", "2"), ("If-None-Match", &etag)]);
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.h("etag"), etag);
    let head = call(&w, "HEAD", "/render/trip/photo.jpg?w=480", &[auth, chromium, ("DPR", "2")]);
    assert_eq!((head.status, head.h("content-length"), head.body.len()), (200, avif.h("content-length"), 0));

    // WebP and JPEG for clients that take no AVIF.
    let webp = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, ("Accept", "image/webp"), ("DPR", "2")]);
    assert_eq!((webp.status, webp.h("content-type")), (200, "image/webp"));
    assert_eq!(probe(&w, &webp.body), ("webp".to_string(), 960, 1280));
    let jpeg = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, ("Accept", "*/*"), ("DPR", "2")]);
    assert_eq!((jpeg.status, jpeg.h("content-type")), (200, "image/jpeg"));
    let pixels = image::load_from_memory(&jpeg.body).unwrap().to_rgb8();
    assert_eq!(pixels.dimensions(), (960, 1280));
    let [r, _, b] = pixels.get_pixel(900, 60).0;
    assert!(r > 150 && b < 100, "the red corner is top-right once upright: {r} {b}");
    let [r, _, b] = pixels.get_pixel(60, 60).0;
    assert!(r < 100 && b > 150, "blue top-left: {r} {b}");

    // Save-Data: lower quality at the same width, another ETag.
    let plain = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, ("Accept", "*/*")]);
    let saving = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, ("Accept", "*/*"), ("Save-Data", "on")]);
    assert_eq!((plain.status, saving.status), (200, 200));
    assert_eq!(image::load_from_memory(&plain.body).unwrap().width(), 480);
    assert_eq!(image::load_from_memory(&saving.body).unwrap().width(), 480);
    assert!(saving.body.len() < plain.body.len(), "Save-Data {} vs {}", saving.body.len(), plain.body.len());
    assert_ne!(saving.h("etag"), plain.h("etag"));

    // Never wider than the source: its own width, one render for every larger ask.
    let wide = call(&w, "GET", "/render/trip/photo.jpg?w=5000", &[auth, ("Accept", "*/*")]);
    assert_eq!(wide.status, 200, "{}", String::from_utf8_lossy(&wide.body));
    assert_eq!(image::load_from_memory(&wide.body).unwrap().to_rgb8().dimensions(), (3000, 4000));
    let wider = call(&w, "GET", "/render/trip/photo.jpg?w=4000", &[auth, ("Accept", "*/*"), ("DPR", "2")]);
    assert_eq!(wider.h("etag"), wide.h("etag"));
    assert!(renders_of(&w, ino).contains(&"w3000.jpeg".to_string()), "{:?}", renders_of(&w, ino));

    // Requests racing for a missing render: one encodes, the others wait for it.
    let before = rendered_count(&w);
    let etags: Vec<String> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let a = call(&w, "GET", "/render/trip/photo.jpg?w=300", &[auth, ("Accept", "image/webp")]);
                    assert_eq!(a.status, 200);
                    a.h("etag").to_string()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(etags.iter().all(|e| e == &etags[0] && e.contains("w320")), "{etags:?}");
    assert_eq!(rendered_count(&w), before + 1, "one encode for three requests");

    // Clear refusals.
    let status = |path: &str, headers: &[(&str, &str)]| call(&w, "GET", path, headers).status;
    assert_eq!(status("/render/trip/notes.txt", &[auth]), 415);
    let corrupt = call(&w, "GET", "/render/trip/broken.png", &[auth]);
    assert_eq!(corrupt.status, 422, "{}", String::from_utf8_lossy(&corrupt.body));
    assert!(String::from_utf8_lossy(&corrupt.body).contains("damaged"), "{}", String::from_utf8_lossy(&corrupt.body));
    assert_eq!(status("/render/outside.jpg", &[auth]), 403);
    assert_eq!(status("/render/trip/photo.jpg", &[]), 401);
    assert_eq!(status("/render/trip/photo.jpg?w=0", &[auth]), 400);
    assert_eq!(status("/render/trip/photo.jpg?w=100000", &[auth]), 400);
    assert_eq!(status("/render/trip/photo.jpg?w=wide", &[auth]), 400);
    assert_eq!(status("/render/trip/missing.jpg", &[auth]), 404);

    // The gallery's route with a session cookie; only for the gallery's own items.
    let session = w.login("bob");
    let cookie = format!("nanofs_session={session}");
    let item = w.item_id(&session, "photo.jpg").expect("the photo is an item");
    assert_eq!(item, ino.to_string());
    let via_gallery =
        call(&w, "GET", &w.g(&format!("/items/{item}/render?w=480")), &[("Cookie", &cookie), chromium, ("DPR", "2")]);
    assert_eq!(via_gallery.status, 200, "{}", String::from_utf8_lossy(&via_gallery.body));
    assert_eq!((via_gallery.h("etag"), via_gallery.h("content-type")), (etag.as_str(), "image/avif"));
    assert_eq!(via_gallery.body, avif.body);
    let outside = std::fs::metadata(w.m.p("outside.jpg")).unwrap().ino();
    assert_eq!(call(&w, "GET", &w.g(&format!("/items/{outside}/render")), &[("Cookie", &cookie)]).status, 404);
    let stranger = format!("nanofs_session={}", w.login("erin"));
    assert_eq!(call(&w, "GET", &w.g(&format!("/items/{item}/render")), &[("Cookie", &stranger)]).status, 404);

    // A replaced picture gets a new render: another ETag, its own pixels and shape.
    std::fs::write(w.m.p("trip/photo.jpg"), photo(2000, 1000, 1, [20, 200, 20])).unwrap();
    let replaced = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, chromium, ("DPR", "2")]);
    assert_eq!(replaced.status, 200);
    assert_ne!(replaced.h("etag"), etag);
    assert_eq!(probe(&w, &replaced.body), ("av1".to_string(), 960, 480));
    let green = call(&w, "GET", "/render/trip/photo.jpg?w=480", &[auth, ("Accept", "*/*")]);
    let [r, g, _] = image::load_from_memory(&green.body).unwrap().to_rgb8().get_pixel(400, 200).0;
    assert!(g > 150 && r < 100, "the new picture's pixels: {r} {g}");
    assert_eq!(renders_of(&w, ino), ["source", "w480.jpeg", "w960.avif"], "the old renders went with the old source");
    // Nothing is left under a temporary name.
    assert!(renders_of(&w, ino).iter().all(|n| !n.contains(".tmp-")));

    // Deleted: its renders go at the next housekeeping (at the sidecar's start).
    std::fs::remove_file(w.m.p("trip/photo.jpg")).unwrap();
    let World { v, m, .. } = w;
    m.unmount();
    let addr = format!("127.0.0.1:{}", free_port());
    let m = v.mount_with(&["--serve", &addr]);
    let swept = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        m.log_text().contains("renders of deleted or changed pictures removed")
    });
    assert!(swept, "the renders of the deleted picture stayed:\n{}", m.log_text());
    assert!(!m.p(&format!(".renders/{ino}")).exists());
    m.unmount();
    v.assert_clean(&["--read-data"]);
}
