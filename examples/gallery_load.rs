//! Load generator for the gallery benchmarks (benches/scripts/gallery_bench.sh):
//!
//! `gallery_load listing URL GALLERY TOKEN` times the first and a deep page of a large
//! gallery; `gallery_load fanout URL GALLERY ITEM TOKEN N PID` connects N WebSocket
//! clients, posts comments and measures how long each takes to reach every client, and
//! the daemon's memory per connected client (from /proc/PID/status).

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn get(a: &ureq::Agent, url: &str, token: &str) -> (u16, Vec<u8>) {
    let resp = a.get(url).header("Authorization", &format!("Bearer {token}")).call().expect("GET");
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.into_body().into_reader().read_to_end(&mut body).expect("body");
    (status, body)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn listing(base: &str, gallery: &str, token: &str) {
    let a = agent();
    let (_, first) = get(&a, &format!("{base}/api/galleries/{gallery}/items?limit=1"), token);
    let total = serde_json::from_slice::<serde_json::Value>(&first).expect("JSON")["total"].as_u64().unwrap_or(0);
    for (what, query) in [
        ("first page, by name", "sort=name&limit=100".to_string()),
        ("deep page, by name", format!("sort=name&limit=100&offset={}", total.saturating_sub(100))),
        ("first page, by date", "sort=date&order=desc&limit=100".to_string()),
        ("deep page, by size", format!("sort=size&limit=100&offset={}", total / 2)),
    ] {
        let mut ms = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            let (status, body) = get(&a, &format!("{base}/api/galleries/{gallery}/items?{query}"), token);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "listing {total} items, {what}: median {:.1} ms, p90 {:.1} ms",
            percentile(&ms, 0.5),
            percentile(&ms, 0.9)
        );
    }
}

fn fanout(base: &str, gallery: &str, item: &str, token: &str, clients: usize, pid: u32) {
    use tungstenite::client::IntoClientRequest;
    let before = rss_kib(pid);
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let host = base.trim_start_matches("http://").to_string();
    for _ in 0..clients {
        let (tx, ready_tx, host) = (tx.clone(), ready_tx.clone(), host.clone());
        let mut req = format!("ws://{host}/api/galleries/{gallery}/events").into_client_request().expect("request");
        req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().expect("header"));
        std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let stream = std::net::TcpStream::connect(&host).expect("connect");
                let (mut ws, _) = tungstenite::client(req, stream).expect("handshake");
                let mut ready = Some(ready_tx);
                loop {
                    match ws.read() {
                        Ok(tungstenite::Message::Text(t)) => {
                            let at = Instant::now();
                            let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                            if v["type"] == "hello" {
                                if let Some(r) = ready.take() {
                                    let _ = r.send(());
                                }
                            } else if v["type"] == "comment.added" {
                                let text = v["data"]["text"].as_str().unwrap_or_default().to_string();
                                if tx.send((text, at)).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
            .expect("thread");
    }
    drop(ready_tx);
    for _ in 0..clients {
        ready_rx.recv_timeout(Duration::from_secs(60)).expect("every client connects");
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    let a = agent();
    let rounds = 20;
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let text = format!("round {round}");
        let t0 = Instant::now();
        let resp = a
            .post(&format!("{base}/api/galleries/{gallery}/items/{item}/comments"))
            .header("Authorization", &format!("Bearer {token}"))
            .content_type("application/json")
            .send(serde_json::json!({ "text": text }).to_string())
            .expect("POST");
        assert_eq!(resp.status().as_u16(), 201);
        let mut got = 0;
        while got < clients {
            let (t, at) = rx.recv_timeout(Duration::from_secs(30)).expect("every client gets the comment");
            if t == text {
                latencies.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                got += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "fan-out to {clients} WebSocket clients ({} deliveries): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         daemon RSS {} -> {} KiB, {:.1} KiB per client",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
        before,
        after,
        after.saturating_sub(before) as f64 / clients as f64
    );
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("listing") if args.len() == 4 => listing(&args[1], &args[2], &args[3]),
        Some("fanout") if args.len() == 7 => fanout(
            &args[1],
            &args[2],
            &args[3],
            &args[4],
            args[5].parse().expect("N clients"),
            args[6].parse().expect("daemon pid"),
        ),
        _ => {
            eprintln!("usage: gallery_load listing URL GALLERY TOKEN | fanout URL GALLERY ITEM TOKEN N PID");
            std::process::exit(2);
        }
    }
}
