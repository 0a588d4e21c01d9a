//! `nanofs.toml`: the volume's configuration file, parsed and validated.
//!
//! Parsing only: every key has a default, unknown keys are an error (a typo must not
//! silently fall back to a default), and `validate` explains what is wrong with a value.
//! docs/config.md lists every key.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the configuration file inside a volume directory.
pub const CONFIG_FILE: &str = "nanofs.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Media handling: chunking for dedup and for transfers.
    pub media: Media,
    /// How chunks are stored and cached.
    pub storage: Storage,
    /// The HTTP sidecar.
    pub sidecar: SidecarSection,
    /// The audit trail.
    pub audit: Audit,
    /// The trash and scheduled snapshots.
    pub retention: Retention,
    /// Where requests come from: the country database.
    pub access: Access,
    /// Where chunk bodies are kept.
    pub store: StoreSection,
}

/// `[store]`: the backend that keeps chunk bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `local` or `s3`.
    pub backend: StoreBackend,
    /// `http(s)://host:port` of the S3 API.
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_region: String,
    /// Object names start with this.
    pub s3_prefix: String,
    /// A file holding the access key (AWS credentials-file lines); empty: the environment.
    pub credentials_file: String,
    /// Local copies of recently read packs, GiB.
    pub cache_gib: u32,
    /// Pack size, MiB.
    pub pack_mib: u32,
    /// Uploads at once.
    pub uploads: u32,
    /// Seconds a request is retried before it fails.
    pub timeout_secs: u32,
    /// Time between automatic metadata backups while mounted (`24h`, `30m`; `0`: never).
    pub meta_backup_every: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Local,
            s3_endpoint: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_prefix: String::new(),
            credentials_file: String::new(),
            cache_gib: 10,
            pack_mib: 32,
            uploads: 4,
            timeout_secs: 60,
            meta_backup_every: "24h".into(),
        }
    }
}

impl StoreSection {
    /// Time between automatic metadata backups; zero: none.
    #[must_use]
    pub fn meta_backup_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(parse_duration(&self.meta_backup_every).map_or(0, |s| s.max(0) as u64))
    }
}

/// Seconds of `90s`, `30m`, `24h`, `7d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration {s:?} (e.g. 90s, 30m, 24h, 7d)")),
    };
    Ok(n.saturating_mul(mult))
}

/// `store.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Pack files beside the database.
    Local,
    /// An S3-compatible object store.
    S3,
}

/// `[access]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// A MaxMind-format (`.mmdb`) country database, such as GeoLite2-Country, which tokens
    /// and share links bound to countries are checked against; empty: none (such tokens
    /// are then refused).
    pub geoip_db: String,
}

/// `[retention]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days a file deleted through the mount or over HTTP stays in `/.trash` before the
    /// daemon deletes it for good; 0: deletes are final at once.
    pub trash_days: u32,
    /// Snapshots the daemon takes and thins out (`[[retention.snapshots]]`).
    pub snapshots: Vec<SnapshotSchedule>,
}

/// `[[retention.snapshots]]`: a tree snapshotted on a schedule, and how many of its
/// snapshots to keep, as restic's `forget --keep-*` counts (UTC calendar).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSchedule {
    /// Its snapshots are named `NAME@YYYY-MM-DDTHHMMSSZ`.
    pub name: String,
    /// The directory snapshotted, from the volume's root (a gallery's folder, say).
    pub path: String,
    /// Keep the last snapshot of each of the last N hours that have one.
    pub hourly: u32,
    /// Likewise per day.
    pub daily: u32,
    /// Likewise per ISO week (Monday to Sunday).
    pub weekly: u32,
    /// Likewise per calendar month.
    pub monthly: u32,
    /// Also keep every snapshot taken within N days of the newest.
    pub within_days: u32,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Append security-relevant acts to the volume's audit trail.
    pub enabled: bool,
}

impl Default for Audit {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[sidecar]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarSection {
    /// Seconds an incomplete upload is kept before it is deleted.
    pub upload_expiry_secs: u64,
    /// Largest upload accepted, GiB (`Tus-Max-Size`).
    pub max_upload_gib: u64,
    /// Origins (`https://host[:port]`) whose pages may read `/stream` (CORS).
    pub cors_origins: Vec<String>,
    /// Also serve `/metrics`, `/healthz` and `/readyz` on this address (empty: only on
    /// the sidecar's own).
    pub metrics_listen: String,
}

impl Default for SidecarSection {
    fn default() -> Self {
        Self {
            upload_expiry_secs: 86_400,
            max_upload_gib: 1024,
            cors_origins: Vec::new(),
            metrics_listen: String::new(),
        }
    }
}

/// Whether `s` is an origin as browsers send it (`Origin`): scheme, host, optional
/// port, in lower case, nothing else (no path, not even a trailing slash).
fn is_origin(s: &str) -> bool {
    let Some(("http" | "https", rest)) = s.split_once("://") else { return false };
    // An IPv6 host is bracketed; the port follows the last colon outside the brackets.
    let (host, port) = match rest.rfind(':').filter(|i| !rest[*i..].contains(']')) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    let port_ok = port.is_none_or(|p| !p.starts_with('0') && p.parse::<u16>().is_ok());
    host_ok && port_ok && s == s.to_ascii_lowercase()
}

/// `[media]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// `[media.deduplication]`: content-defined chunking and dedup.
    pub deduplication: Deduplication,
    /// `[media.chunking]`: transfer settings used by the HTTP client.
    pub chunking: Chunking,
    /// `[media.collaboration]`: shared galleries.
    pub collaboration: Collaboration,
    /// `[media.streaming]`: adaptive HLS and DASH renditions of videos.
    pub streaming: Streaming,
}

/// `[media.streaming]`: videos packaged into an adaptive ladder (docs/streaming.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Streaming {
    /// Serve `/stream` at all.
    pub enabled: bool,
    /// Serve the HLS playlists.
    pub enable_hls: bool,
    /// Serve the DASH manifest.
    pub enable_dash: bool,
    /// Heights of the renditions, highest first; none taller than the source is made.
    pub ladder: Vec<u32>,
    /// Target segment length, seconds (segments start on keyframes, aligned across
    /// renditions).
    pub segment_seconds: u32,
    /// Package videos that land in a gallery, by upload or through the mount.
    pub package_on_upload: bool,
    /// Packaging jobs at once.
    pub max_jobs: u32,
    /// Live streams: WebRTC publishing (WHIP) and playback (WHEP).
    pub enable_webrtc: bool,
    /// Live streams published at once; one more is refused (503).
    pub max_concurrent_streams: u32,
    /// Viewers of one live stream (WebRTC and HLS); one more is refused (503).
    pub max_viewers_per_stream: u32,
    /// Record every live stream into its directory, as if created with `--record`.
    pub record_live: bool,
    /// UDP port of WebRTC media (0: a free one, chosen at start).
    pub webrtc_port: u16,
    /// Addresses offered to WebRTC peers as host candidates (empty: the sidecar's own
    /// address when it listens on one, else every address of the machine's interfaces).
    pub webrtc_addresses: Vec<std::net::IpAddr>,
    /// STUN/TURN servers told to WebRTC clients (`stun:host:port`, ...).
    pub ice_servers: Vec<String>,
    /// Seconds a live stream waits for its publisher to come back before it ends.
    pub live_grace_seconds: u32,
    /// Where RTMP publishers connect (`0.0.0.0:1935`; empty: no RTMP).
    pub rtmp_listen: String,
}

impl Default for Streaming {
    fn default() -> Self {
        Self {
            enabled: true,
            enable_hls: true,
            enable_dash: true,
            ladder: vec![1080, 720, 480, 360],
            segment_seconds: 2,
            package_on_upload: false,
            max_jobs: 1,
            enable_webrtc: true,
            max_concurrent_streams: 100,
            max_viewers_per_stream: 1000,
            record_live: false,
            webrtc_port: 8189,
            webrtc_addresses: Vec::new(),
            ice_servers: Vec::new(),
            live_grace_seconds: 10,
            rtmp_listen: String::new(),
        }
    }
}

/// `[media.collaboration]`: shared galleries (docs/galleries.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Collaboration {
    /// Serve the gallery API (off: its routes answer 503).
    pub enabled: bool,
    /// Galleries one user may own.
    pub max_galleries_per_user: u32,
    /// Volume directory under which users create gallery directories through the API.
    pub galleries_root: String,
    /// Hours a login session lasts.
    pub session_ttl_hours: u32,
    /// Events kept per gallery for clients that reconnect.
    pub event_log_len: u32,
}

impl Default for Collaboration {
    fn default() -> Self {
        Self {
            enabled: true,
            max_galleries_per_user: 20,
            galleries_root: "/galleries".into(),
            session_ttl_hours: 168,
            event_log_len: 10_000,
        }
    }
}

/// `[media.deduplication]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deduplication {
    /// Store identical chunks once.
    pub chunk_level_dedup: bool,
    /// Chunk identity hash; only `blake2b-256` (keyed) exists.
    pub hash_algorithm: String,
    /// FastCDC minimum chunk size, KiB.
    pub min_chunk_size_kb: u32,
    /// FastCDC average (target) chunk size, KiB.
    pub avg_chunk_size_kb: u32,
    /// FastCDC maximum chunk size, KiB.
    pub max_chunk_size_kb: u32,
    /// Hours between automatic garbage collections while mounted; 0 disables them.
    pub gc_interval_hours: u32,
}

impl Default for Deduplication {
    fn default() -> Self {
        Self {
            chunk_level_dedup: true,
            hash_algorithm: "blake2b-256".into(),
            min_chunk_size_kb: 256,
            avg_chunk_size_kb: 1024,
            max_chunk_size_kb: 4096,
            gc_interval_hours: 24,
        }
    }
}

/// `[media.chunking]`: how the transfer client splits and sends files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chunking {
    /// Size of one upload/download part, MiB. An upload's PATCH ends with a durable
    /// commit, so larger parts upload faster (docs/benchmarks.md, "2026-12-07 (later)"); a
    /// PATCH cut off by a broken connection is sent again whole.
    pub chunk_size_mb: u32,
    /// Parts in flight at once.
    pub parallel_chunks: u32,
    /// Retries of one part before the transfer fails.
    pub max_retries: u32,
    /// Resume interrupted transfers instead of starting over.
    pub enable_resume: bool,
}

impl Default for Chunking {
    fn default() -> Self {
        Self { chunk_size_mb: 16, parallel_chunks: 4, max_retries: 5, enable_resume: true }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// `auto` compresses a chunk with zstd unless it looks incompressible; `off` never does.
    pub compression: Compression,
    /// zstd level for compressed chunks. 3 by measurement on a tree from `/usr`: 10 % less
    /// stored than level 1 for half again its compression time; 5 stores 3 % less than 3
    /// for twice its time (docs/benchmarks.md, "compression level and probe").
    pub compression_level: i32,
    /// Budget of the decrypted-chunk cache, MiB (overridden by `-o cache_mb=N`).
    pub cache_mb: u32,
    /// Most of one file's writes held uncommitted, MiB: a longer write is committed in
    /// parts of this size, each once its packs are synced in the background.
    pub write_window_mb: u32,
    /// How FUSE requests reach the daemon (overridden by `-o uring` or `-o transport=`).
    pub fuse_transport: FuseTransport,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            compression: Compression::Auto,
            compression_level: 3,
            cache_mb: 32,
            write_window_mb: 512,
            fuse_transport: FuseTransport::Auto,
        }
    }
}

/// Which channel carries FUSE requests between the kernel and the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FuseTransport {
    /// io_uring when the kernel offers it, else `/dev/fuse`; the log says which runs.
    #[default]
    Auto,
    /// io_uring; mounting fails when the kernel does not offer it.
    Uring,
    /// `read` and `write` on `/dev/fuse`.
    Dev,
}

impl std::str::FromStr for FuseTransport {
    type Err = String;
    /// The names `nanofs.toml` takes (serde's), for `-o transport=`.
    fn from_str(s: &str) -> Result<Self, String> {
        use serde::de::IntoDeserializer;
        Self::deserialize(s.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
    }
}

/// Compression policy for new chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd, unless the chunk looks random or starts like a compressed format.
    Auto,
    /// Never compress.
    Off,
}

/// Keys that take effect while the volume is served: limits, intervals, feature flags,
/// CORS. A name ending in `.` covers its whole section. The others (chunking, storage,
/// listening sockets, worker counts) are read once, when the daemon starts.
pub const LIVE_KEYS: &[&str] = &[
    "access.geoip_db",
    "audit.enabled",
    "retention.",
    "store.meta_backup_every",
    "sidecar.upload_expiry_secs",
    "sidecar.max_upload_gib",
    "sidecar.cors_origins",
    "media.chunking.",
    "media.collaboration.",
    "media.deduplication.gc_interval_hours",
    "media.streaming.enabled",
    "media.streaming.enable_hls",
    "media.streaming.enable_dash",
    "media.streaming.ladder",
    "media.streaming.package_on_upload",
    "media.streaming.max_viewers_per_stream",
    "media.streaming.record_live",
    "media.streaming.ice_servers",
];

fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|k| if k.ends_with('.') { key.starts_with(k) } else { key == *k })
}

/// The dotted keys whose values differ between `old` and `new` (arrays are values), with
/// the new value.
fn changed_leaves(
    old: &serde_json::Value,
    new: &serde_json::Value,
    at: &str,
    out: &mut Vec<(String, serde_json::Value)>,
) {
    match (old, new) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                let key = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match a.get(k) {
                    Some(o) => changed_leaves(o, v, &key, out),
                    None => out.push((key, v.clone())),
                }
            }
        }
        _ if old != new => out.push((at.to_string(), new.clone())),
        _ => {}
    }
}

/// The outcome of reloading the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reload {
    /// The configuration in force now.
    #[serde(skip)]
    pub config: Config,
    /// Keys changed and in force.
    pub applied: Vec<String>,
    /// Keys changed in the file that only a restart applies; they keep their values.
    pub kept: Vec<String>,
}

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// A value outside what nanofs accepts.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads and validates `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path: path.display().to_string(), source }),
        };
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.display().to_string(), message },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { path: path.display().to_string(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // The line, so the key at fault can be found (the message names the key).
            let line = e
                .span()
                .map(|s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1);
            let message = match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            };
            ConfigError::Parse { path: String::new(), message }
        })?;
        config.validate().map_err(|message| ConfigError::Invalid { path: String::new(), message })?;
        Ok(config)
    }

    /// This configuration with the keys of `new` that can change while the volume is
    /// served (`LIVE_KEYS`); the others keep their values and are named in `kept`.
    pub fn reloaded(&self, new: &Config) -> Result<Reload, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: String::new(), message };
        let old = serde_json::to_value(self).expect("a configuration serialises");
        let mut merged = old.clone();
        let (mut applied, mut kept) = (Vec::new(), Vec::new());
        let mut changed = Vec::new();
        changed_leaves(&old, &serde_json::to_value(new).expect("a configuration serialises"), "", &mut changed);
        for (key, value) in changed {
            if is_live(&key) {
                let pointer = format!("/{}", key.replace('.', "/"));
                *merged.pointer_mut(&pointer).expect("a key of both") = value;
                applied.push(key);
            } else {
                kept.push(key);
            }
        }
        let config: Config = serde_json::from_value(merged).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(Reload { config, applied, kept })
    }

    /// Checks the values that types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        let o = &self.store;
        if o.backend == StoreBackend::S3 {
            if !(o.s3_endpoint.starts_with("http://") || o.s3_endpoint.starts_with("https://")) {
                return Err(format!("store.s3_endpoint = {:?}: an http:// or https:// URL", o.s3_endpoint));
            }
            if o.s3_bucket.is_empty() {
                return Err("store.s3_bucket: a bucket name is needed with backend = \"s3\"".into());
            }
        }
        if !(1..=1024).contains(&o.pack_mib) {
            return Err(format!("store.pack_mib = {}: must be 1 to 1024", o.pack_mib));
        }
        if !(1..=64).contains(&o.uploads) {
            return Err(format!("store.uploads = {}: must be 1 to 64", o.uploads));
        }
        if o.timeout_secs == 0 {
            return Err("store.timeout_secs = 0: must be at least 1".into());
        }
        parse_duration(&o.meta_backup_every)
            .map_err(|e| format!("store.meta_backup_every = {:?}: {e}", o.meta_backup_every))?;
        let m = &self.sidecar.metrics_listen;
        if !m.is_empty() && m.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("sidecar.metrics_listen = {m:?}: an address and port, such as 127.0.0.1:9464"));
        }
        let st = &self.media.streaming;
        if st.ladder.is_empty() || st.ladder.iter().any(|h| !(144..=4320).contains(h)) {
            return Err(format!("media.streaming.ladder = {:?}: one to eight heights of 144 to 4320", st.ladder));
        }
        if st.ladder.len() > 8 {
            return Err(format!("media.streaming.ladder = {:?}: at most eight renditions", st.ladder));
        }
        if !(1..=10).contains(&st.segment_seconds) {
            return Err(format!("media.streaming.segment_seconds = {}: must be 1 to 10", st.segment_seconds));
        }
        if !(1..=16).contains(&st.max_jobs) {
            return Err(format!("media.streaming.max_jobs = {}: must be 1 to 16", st.max_jobs));
        }
        if st.max_concurrent_streams == 0 || st.max_viewers_per_stream == 0 {
            return Err("media.streaming: max_concurrent_streams and max_viewers_per_stream must be at least 1".into());
        }
        if !(1..=3600).contains(&st.live_grace_seconds) {
            return Err(format!("media.streaming.live_grace_seconds = {}: must be 1 to 3600", st.live_grace_seconds));
        }
        if !st.rtmp_listen.is_empty() && st.rtmp_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "media.streaming.rtmp_listen = {:?}: an address such as 0.0.0.0:1935, or empty",
                st.rtmp_listen
            ));
        }
        if let Some(bad) =
            st.ice_servers.iter().find(|u| !["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)))
        {
            return Err(format!("media.streaming.ice_servers: {bad:?} is not a stun:, stuns:, turn: or turns: URL"));
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.retention.snapshots {
            let valid = !s.name.is_empty()
                && s.name.len() <= 200
                && s.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !s.name.starts_with('.');
            if !valid {
                return Err(format!(
                    "retention.snapshots: name = {:?}: 1 to 200 letters, digits, '-', '_' or '.', not first",
                    s.name
                ));
            }
            if !names.insert(&s.name) {
                return Err(format!("retention.snapshots: the name {:?} is used twice", s.name));
            }
            if s.path.is_empty() {
                return Err(format!("retention.snapshots {:?}: path is missing (\"/\" for the whole volume)", s.name));
            }
            if s.hourly + s.daily + s.weekly + s.monthly + s.within_days == 0 {
                return Err(format!(
                    "retention.snapshots {:?}: set at least one of hourly, daily, weekly, monthly, within_days",
                    s.name
                ));
            }
        }
        let d = &self.media.deduplication;
        if d.hash_algorithm != "blake2b-256" {
            return Err(format!(
                "media.deduplication.hash_algorithm = {:?}: only \"blake2b-256\" is supported",
                d.hash_algorithm
            ));
        }
        if !d.chunk_level_dedup {
            return Err("media.deduplication.chunk_level_dedup = false is not supported: \
                        chunk ids are content hashes, so identical chunks are always shared"
                .into());
        }
        let (min, avg, max) = (d.min_chunk_size_kb, d.avg_chunk_size_kb, d.max_chunk_size_kb);
        if !(1..=1024).contains(&min) {
            return Err(format!("media.deduplication.min_chunk_size_kb = {min}: must be 1 to 1024"));
        }
        if !(1..=4096).contains(&avg) {
            return Err(format!("media.deduplication.avg_chunk_size_kb = {avg}: must be 1 to 4096"));
        }
        if !(4..=16384).contains(&max) {
            return Err(format!("media.deduplication.max_chunk_size_kb = {max}: must be 4 to 16384"));
        }
        if !(min < avg && avg < max) {
            return Err(format!(
                "media.deduplication: chunk sizes must satisfy min < avg < max (got {min} / {avg} / {max} KiB)"
            ));
        }
        let c = &self.media.chunking;
        if !(1..=4096).contains(&c.chunk_size_mb) {
            return Err(format!("media.chunking.chunk_size_mb = {}: must be 1 to 4096", c.chunk_size_mb));
        }
        if !(1..=16).contains(&c.parallel_chunks) {
            return Err(format!("media.chunking.parallel_chunks = {}: must be 1 to 16", c.parallel_chunks));
        }
        if c.max_retries > 100 {
            return Err(format!("media.chunking.max_retries = {}: must be at most 100", c.max_retries));
        }
        let g = &self.media.collaboration;
        if g.max_galleries_per_user > 100_000 {
            return Err(format!(
                "media.collaboration.max_galleries_per_user = {}: must be at most 100000",
                g.max_galleries_per_user
            ));
        }
        if !g.galleries_root.starts_with('/') || g.galleries_root.split('/').any(|p| p == ".." || p == ".") {
            return Err(format!(
                "media.collaboration.galleries_root = {:?}: must be an absolute volume path without . or ..",
                g.galleries_root
            ));
        }
        if !(1..=8760).contains(&g.session_ttl_hours) {
            return Err(format!("media.collaboration.session_ttl_hours = {}: must be 1 to 8760", g.session_ttl_hours));
        }
        if !(100..=10_000_000).contains(&g.event_log_len) {
            return Err(format!("media.collaboration.event_log_len = {}: must be 100 to 10000000", g.event_log_len));
        }
        let s = &self.storage;
        if !(1..=19).contains(&s.compression_level) {
            return Err(format!("storage.compression_level = {}: must be 1 to 19", s.compression_level));
        }
        if !(8..=65536).contains(&s.cache_mb) {
            return Err(format!("storage.cache_mb = {}: must be 8 to 65536", s.cache_mb));
        }
        if !(16..=65536).contains(&s.write_window_mb) {
            return Err(format!("storage.write_window_mb = {}: must be 16 to 65536", s.write_window_mb));
        }
        let h = &self.sidecar;
        if h.upload_expiry_secs == 0 {
            return Err("sidecar.upload_expiry_secs = 0: must be at least 1".into());
        }
        if !(1..=1 << 20).contains(&h.max_upload_gib) {
            return Err(format!("sidecar.max_upload_gib = {}: must be 1 to 1048576", h.max_upload_gib));
        }
        if let Some(o) = h.cors_origins.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "sidecar.cors_origins: {o:?} is not an origin: want scheme://host[:port] in lower case, without a path"
            ));
        }
        Ok(())
    }

    /// The text `nanofs init` writes: every key with its default, commented.
    #[must_use]
    pub fn default_file_text() -> String {
        include_str!("../docs/nanofs.toml.example").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloading_applies_live_keys_and_keeps_the_others() {
        let new = Config::parse(
            "[sidecar]\ncors_origins = [\"https://a.example\"]\n[storage]\ncache_mb = 64\n\
             [media.collaboration]\nenabled = false\n[media.deduplication]\navg_chunk_size_kb = 512\n",
        )
        .unwrap();
        let r = Config::default().reloaded(&new).unwrap();
        assert_eq!(r.applied, ["media.collaboration.enabled", "sidecar.cors_origins"]);
        assert_eq!(r.kept, ["media.deduplication.avg_chunk_size_kb", "storage.cache_mb"]);
        assert!(!r.config.media.collaboration.enabled);
        assert_eq!(r.config.sidecar.cors_origins, ["https://a.example"]);
        assert_eq!(r.config.storage.cache_mb, 32, "kept as it was");
        assert_eq!(
            r.config.media.deduplication.avg_chunk_size_kb,
            Config::default().media.deduplication.avg_chunk_size_kb
        );
        let same = Config::default().reloaded(&Config::default()).unwrap();
        assert!(same.applied.is_empty() && same.kept.is_empty());
    }

    #[test]
    fn a_parse_error_names_its_line_and_key() {
        let e = Config::parse("[sidecar]\nupload_expiry_secs = 10\ncors_origin = []\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("cors_origin"), "{e}");
    }

    #[test]
    fn example_file_parses_to_defaults() {
        assert_eq!(Config::parse(&Config::default_file_text()).unwrap(), Config::default());
    }

    /// Dotted paths of the leaf keys of a TOML document.
    fn leaf_keys(prefix: &str, table: &toml::Table, out: &mut std::collections::BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => leaf_keys(&path, t, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    /// `init` writes the example file so that every key is there to edit: it must name
    /// every key the configuration has, and no other.
    #[test]
    fn example_file_names_every_key() {
        let mut written = std::collections::BTreeSet::new();
        leaf_keys("", &toml::from_str(&Config::default_file_text()).unwrap(), &mut written);
        let mut known = std::collections::BTreeSet::new();
        leaf_keys("", &toml::Table::try_from(Config::default()).unwrap(), &mut known);
        assert_eq!(written, known, "docs/nanofs.toml.example against Config");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[media.deduplication]\nchunk_sise_kb = 3\n").unwrap_err();
        assert!(err.to_string().contains("chunk_sise_kb"), "{err}");
    }

    #[test]
    fn bad_sizes_are_refused() {
        let err = Config::parse("[media.deduplication]\nmin_chunk_size_kb = 2048\n").unwrap_err();
        assert!(err.to_string().contains("min_chunk_size_kb"), "{err}");
        let err = Config::parse("[media.deduplication]\navg_chunk_size_kb = 100\n").unwrap_err();
        assert!(err.to_string().contains("min < avg < max"), "{err}");
        let err = Config::parse("[media.chunking]\nparallel_chunks = 0\n").unwrap_err();
        assert!(err.to_string().contains("parallel_chunks"), "{err}");
    }

    #[test]
    fn cors_origins_are_bare_origins() {
        let ok = r#"[sidecar]
cors_origins = ["https://player.example", "http://127.0.0.1:8080", "http://[::1]:3000"]
"#;
        assert_eq!(Config::parse(ok).unwrap().sidecar.cors_origins.len(), 3);
        for bad in [
            "https://a.example/",
            "https://a.example/path",
            "a.example",
            "ftp://a.example",
            "https://A.example",
            "https://a.example:0x",
            "https://user@a.example",
            "*",
            "null",
            "https://",
        ] {
            let err = Config::parse(&format!("[sidecar]\ncors_origins = [{bad:?}]\n")).unwrap_err();
            assert!(err.to_string().contains("cors_origins"), "{bad}: {err}");
        }
    }

    #[test]
    fn wrong_type_is_refused() {
        assert!(Config::parse("[storage]\ncache_mb = \"lots\"\n").is_err());
        assert!(Config::parse("[storage]\ncompression = \"lz4\"\n").is_err());
    }
}
