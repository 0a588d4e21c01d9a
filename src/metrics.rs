//! The daemon's metrics, in Prometheus' text format (`GET /metrics`, docs/operations.md).
//!
//! One process-wide set: the engine, the FUSE front-end and the sidecar count into it where
//! things happen (a counter is one atomic add); figures that the volume already keeps, such
//! as stored bytes and the dedup ratio, are copied in at scrape time from the same
//! `Volume::stats` that `nanofs stats` prints, so the two always agree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Instant;

/// Labels of a FUSE operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// The request, e.g. `lookup`.
    pub op: &'static str,
}

/// Labels of an HTTP request counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The route's pattern (`/files/{*path}`), never the path asked for: bounded.
    pub route: String,
    /// The status answered.
    pub status: u16,
}

/// Labels of an HTTP route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route's pattern.
    pub route: String,
}

/// Labels of a kind of event client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `sse` or `websocket`; `queued` or `running` for packaging jobs.
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 10 µs to about 40 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 3.0, 15))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// FUSE requests by operation, with their latency.
    pub fuse_requests: HistogramFamily<OpLabel>,
    /// File bytes read through the engine (FUSE and HTTP).
    pub read_bytes: Counter,
    /// File bytes written through the engine.
    pub written_bytes: Counter,
    /// Chunk reads served from the plaintext cache.
    pub chunk_cache_hits: Counter,
    /// Chunk reads that opened a stored chunk.
    pub chunk_cache_misses: Counter,
    /// Metadata commits, with their latency.
    pub commits: Histogram,
    /// Garbage collections run.
    pub gc_runs: Counter,
    /// Stored bytes that garbage collection freed.
    pub gc_freed_bytes: Counter,
    /// HTTP requests answered.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request latency by route.
    pub http_latency: HistogramFamily<RouteLabel>,
    /// tus PATCH bodies being written.
    pub uploads_in_flight: Gauge,
    /// Clients of the gallery event streams.
    pub event_clients: Family<KindLabel, Gauge>,
    /// Audit records appended.
    pub audit_records: Counter,
    /// Scrape-time figures of the volume (`Volume::stats`).
    pub volume: VolumeGauges,
    /// Packaging jobs by state, at scrape time.
    pub packaging_jobs: Family<KindLabel, Gauge>,
    /// Live streams being published, at scrape time.
    pub live_streams: Gauge,
    /// Viewers of live streams (WebRTC and HTTP), at scrape time.
    pub live_viewers: Gauge,
}

/// The volume's space figures, as `nanofs stats` prints them.
#[derive(Default)]
pub struct VolumeGauges {
    /// `Stats::logical_bytes`.
    pub logical_bytes: Gauge,
    /// `Stats::unique_bytes`.
    pub unique_bytes: Gauge,
    /// `Stats::stored_bytes`.
    pub stored_bytes: Gauge,
    /// `Stats::chunks`.
    pub chunks: Gauge,
    /// `Stats::reclaimable_bytes`.
    pub reclaimable_bytes: Gauge,
    /// `Stats::disk_bytes`.
    pub disk_bytes: Gauge,
    /// `Stats::dedup_ratio`.
    pub dedup_ratio: Gauge<f64, AtomicU64>,
    /// 1 while the volume takes writes (`/readyz`), else 0.
    pub writable: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut root = Registry::with_prefix("nanofs");
        let m = Self {
            registry: Registry::default(),
            fuse_requests: Family::new_with_constructor(latency_histogram),
            read_bytes: Counter::default(),
            written_bytes: Counter::default(),
            chunk_cache_hits: Counter::default(),
            chunk_cache_misses: Counter::default(),
            commits: latency_histogram(),
            gc_runs: Counter::default(),
            gc_freed_bytes: Counter::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            uploads_in_flight: Gauge::default(),
            event_clients: Family::default(),
            audit_records: Counter::default(),
            volume: VolumeGauges::default(),
            packaging_jobs: Family::default(),
            live_streams: Gauge::default(),
            live_viewers: Gauge::default(),
        };
        let r = &mut root;
        let s = Unit::Seconds;
        r.register_with_unit("fuse_request_duration", "FUSE requests by operation", s.clone(), m.fuse_requests.clone());
        r.register_with_unit("read", "File bytes read", Unit::Bytes, m.read_bytes.clone());
        r.register_with_unit("written", "File bytes written", Unit::Bytes, m.written_bytes.clone());
        r.register("chunk_cache_hits", "Chunk reads served from the plaintext cache", m.chunk_cache_hits.clone());
        r.register("chunk_cache_misses", "Chunk reads that opened a stored chunk", m.chunk_cache_misses.clone());
        r.register_with_unit("commit_duration", "Metadata commits", s.clone(), m.commits.clone());
        r.register("gc_runs", "Garbage collections run", m.gc_runs.clone());
        r.register_with_unit(
            "gc_freed",
            "Stored bytes freed by garbage collection",
            Unit::Bytes,
            m.gc_freed_bytes.clone(),
        );
        r.register("http_requests", "HTTP requests answered", m.http_requests.clone());
        r.register_with_unit("http_request_duration", "HTTP requests by route", s, m.http_latency.clone());
        r.register("uploads_in_flight", "Upload bodies being written", m.uploads_in_flight.clone());
        r.register("event_clients", "Clients of gallery event streams", m.event_clients.clone());
        r.register("audit_records", "Audit records appended", m.audit_records.clone());
        let v = &m.volume;
        let b = Unit::Bytes;
        r.register_with_unit("logical", "File data, holes excluded", b.clone(), v.logical_bytes.clone());
        r.register_with_unit("unique", "Plaintext bytes of distinct chunks", b.clone(), v.unique_bytes.clone());
        r.register_with_unit("stored", "Distinct chunks as stored", b.clone(), v.stored_bytes.clone());
        r.register("chunks", "Distinct live chunks", v.chunks.clone());
        r.register_with_unit(
            "reclaimable",
            "Garbage that collection would free",
            b.clone(),
            v.reclaimable_bytes.clone(),
        );
        r.register_with_unit("disk", "Database files on disk", b, v.disk_bytes.clone());
        r.register("dedup_ratio", "Logical bytes over unique bytes", v.dedup_ratio.clone());
        r.register("writable", "1 while the volume takes writes", v.writable.clone());
        r.register("packaging_jobs", "Packaging jobs by state", m.packaging_jobs.clone());
        r.register("live_streams", "Live streams being published", m.live_streams.clone());
        r.register("live_viewers", "Viewers of live streams", m.live_viewers.clone());
        Self { registry: root, ..m }
    }

    /// The text exposition (OpenMetrics 1.0).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// Copies the volume's space figures in.
    pub fn set_volume(&self, s: &crate::volume::Stats, writable: bool) {
        let v = &self.volume;
        let set = |g: &Gauge, n: u64| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        set(&v.logical_bytes, s.logical_bytes);
        set(&v.unique_bytes, s.unique_bytes);
        set(&v.stored_bytes, s.stored_bytes);
        set(&v.chunks, s.chunks);
        set(&v.reclaimable_bytes, s.reclaimable_bytes);
        set(&v.disk_bytes, s.disk_bytes);
        v.dedup_ratio.set(s.dedup_ratio);
        v.writable.set(i64::from(writable));
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Times a FUSE request: observed when dropped, whichever way the handler returns.
pub struct FuseTimer {
    op: &'static str,
    start: Instant,
}

impl FuseTimer {
    /// Starts timing `op`.
    #[must_use]
    pub fn start(op: &'static str) -> Self {
        Self { op, start: Instant::now() }
    }
}

impl Drop for FuseTimer {
    fn drop(&mut self) {
        get().fuse_requests.get_or_create(&OpLabel { op: self.op }).observe(self.start.elapsed().as_secs_f64());
    }
}

/// Holds a gauge one higher while it lives (a client connected, an upload in flight).
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Raises `gauge` until dropped.
    #[must_use]
    pub fn hold(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_counts() {
        let m = get();
        m.gc_freed_bytes.inc_by(4096);
        drop(FuseTimer::start("lookup"));
        let gauge = Gauge::default();
        {
            let _held = GaugeGuard::hold(&gauge);
            assert_eq!(gauge.get(), 1);
        }
        assert_eq!(gauge.get(), 0);
        let text = m.encode();
        assert!(text.contains("# TYPE nanofs_gc_freed_bytes counter"), "{text}");
        assert!(text.contains("nanofs_fuse_request_duration_seconds_count{op=\"lookup\"}"), "{text}");
        assert!(text.contains("nanofs_dedup_ratio "), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
