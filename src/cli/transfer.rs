//! `nanofs push LOCAL URL` and `nanofs pull URL LOCAL`: the transfer client.

use crate::client::{self, Remote, Settings};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Options shared by push and pull.
#[derive(Debug, Clone, clap::Args)]
pub struct TransferArgs {
    /// Bearer token (else $NANOFS_TOKEN).
    #[arg(long, env = "NANOFS_TOKEN", hide_env_values = true)]
    token: String,
    /// Parallel connections, 1 to 16 (default: the volume's parallel_chunks).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=16))]
    connections: Option<u16>,
    /// Part size in MiB, 1 to 4096 (default: the volume's chunk_size_mb): the bytes of a
    /// pull's range requests and of a push's PATCHes, which are longer over fewer than
    /// four connections (one connection: four parts each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    part_size_mb: Option<u32>,
    /// Retries of one request (default: the volume's max_retries).
    #[arg(long)]
    retries: Option<u32>,
    /// Start over instead of resuming an interrupted transfer.
    #[arg(long)]
    no_resume: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Trust this CA certificate (PEM) for HTTPS, e.g. a sidecar's VOLUME/tls/cert.pem.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Sign every request with this device key (made if missing), for tokens bound to a
    /// device (`nanofs token create --device`).
    #[arg(long, value_name = "FILE", env = "NANOFS_DEVICE_KEY")]
    device_key: Option<PathBuf>,
    /// Compare each whole file with the server's fingerprint (BLAKE2b-256) at the end,
    /// even when the server must read the file for it.
    #[arg(long)]
    verify: bool,
}

/// Options of push only.
#[derive(Debug, Clone, clap::Args)]
pub struct DeltaArgs {
    /// Send only the chunks this file on the server (default: the target) lacks.
    #[arg(long, value_name = "PATH")]
    base: Option<String>,
    /// Always send whole files (tus), even when the target exists.
    #[arg(long)]
    no_delta: bool,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Local file or directory.
    local: PathBuf,
    /// `http://HOST:PORT/files/PATH` (a trailing `/` puts a file inside that directory).
    url: String,
    #[command(flatten)]
    opts: TransferArgs,
    #[command(flatten)]
    delta: DeltaArgs,
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// `http://HOST:PORT/files/PATH` of a file or directory.
    url: String,
    /// Local file or directory to create.
    local: PathBuf,
    #[command(flatten)]
    opts: TransferArgs,
}

/// `http://host:port` and the decoded volume path of a `/files/` URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let (scheme, rest) = url
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("http", r)))
        .context("the URL must start with http:// or https://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.strip_prefix("files").context("the URL's path must start with /files/")?;
    let mut decoded = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3])?, 16).context("bad percent-encoding")?;
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(decoded).context("the URL's path is not UTF-8")?;
    let path = if path.is_empty() { "/".into() } else { path };
    Ok((format!("{scheme}://{host}"), path))
}

/// Settings: the server's `[media.chunking]`, overridden by flags.
fn settings(remote: &Remote, o: &TransferArgs) -> Settings {
    let server = remote
        .agent()
        .get(format!("{}/api/transfer", remote.base))
        .header("Authorization", remote.auth())
        .call()
        .ok()
        .filter(|r| r.status().is_success())
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .and_then(|t| serde_json::from_str::<crate::http::TransferInfo>(&t).ok());
    let mut s = match server {
        Some(info) => Settings { chunker_key: info.chunker_key, ..Settings::from_config(&info.chunking, info.cdc_kib) },
        None => {
            let mut s = Settings::from_config(&crate::config::Chunking::default(), [256, 1024, 4096]);
            s.delta = false;
            s
        }
    };
    if let Some(c) = o.connections {
        s.connections = c.into();
    }
    if let Some(p) = o.part_size_mb {
        s.part_size = u64::from(p.max(1)) << 20;
    }
    s.verify = o.verify;
    if o.no_resume {
        s.resume = false;
    }
    s.progress = !o.quiet;
    s
}

pub fn push(args: PushArgs) -> anyhow::Result<()> {
    super::init_logging();
    let (base, path) = split_url(&args.url)?;
    if path == "/" && !args.local.is_dir() {
        bail!("give the target path: {base}/files/NAME");
    }
    let (ca, device) = (args.opts.ca_cert.as_deref(), args.opts.device_key.as_deref());
    let probe = Remote::new(&base, &args.opts.token, 0, ca, device)?;
    let mut s = settings(&probe, &args.opts);
    s.delta &= !args.delta.no_delta;
    if let Some(b) = &args.delta.base {
        s.base = Some(if b.starts_with('/') { b.clone() } else { format!("/{b}") });
    }
    let remote = Remote::new(&base, &args.opts.token, args.opts.retries.unwrap_or(s.max_retries), ca, device)?;
    let summary = client::push::push(&args.local, &path, &remote, &s)?;
    if !args.opts.quiet {
        eprintln!("pushed {summary}");
    }
    Ok(())
}

pub fn pull(args: PullArgs) -> anyhow::Result<()> {
    super::init_logging();
    let (base, path) = split_url(&args.url)?;
    let (ca, device) = (args.opts.ca_cert.as_deref(), args.opts.device_key.as_deref());
    let probe = Remote::new(&base, &args.opts.token, 0, ca, device)?;
    let s = settings(&probe, &args.opts);
    let remote = Remote::new(&base, &args.opts.token, args.opts.retries.unwrap_or(s.max_retries), ca, device)?;
    let summary = client::pull::pull(&path, &args.local, &remote, &s)?;
    if !args.opts.quiet {
        eprintln!("pulled {summary}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_split_into_base_and_volume_path() {
        let (b, p) = super::split_url("http://127.0.0.1:8080/files/a%20b/c.mkv").unwrap();
        assert_eq!((b.as_str(), p.as_str()), ("http://127.0.0.1:8080", "/a b/c.mkv"));
        assert_eq!(super::split_url("http://h:1/files/").unwrap().1, "/");
        assert!(super::split_url("ftp://h/files/x").is_err());
        assert_eq!(super::split_url("https://h:1/files/x").unwrap().0, "https://h:1");
        assert!(super::split_url("http://h/other/x").is_err());
    }
}
