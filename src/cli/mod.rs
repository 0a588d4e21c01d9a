//! Command-line interface: argument parsing and one module per subcommand. The only
//! place that wires the layers together.

mod audit;
mod check;
mod clone;
mod config;
mod credential;
mod fingerprint;
mod gallery;
mod gc;
mod hold;
mod init;
mod key;
mod media;
mod meta;
mod mount;
mod mounts;
mod serve;
mod snapshot;
mod stats;
mod stream;
mod token;
mod transfer;
mod trash;
mod umount;

use crate::gallery::Galleries;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// nanofs: a deduplicating, encrypted file system for large media.
#[derive(Debug, Parser)]
#[command(name = "nanofs", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new volume.
    Init(init::Args),
    /// Mount a volume (runs as a daemon unless --foreground).
    Mount(mount::Args),
    /// Unmount a mounted volume and wait until its daemon has flushed everything.
    Umount(umount::Args),
    /// Show space statistics: logical and stored bytes, chunks, dedup ratio.
    Stats(stats::Args),
    /// Delete unreferenced chunks and reclaim their disk space.
    Gc(gc::Args),
    /// Legal holds: set, release, list (nothing under a held directory can be deleted).
    Hold(hold::Args),
    /// The trash: list, restore, empty (deleted files kept for `[retention] trash_days`).
    Trash(trash::Args),
    /// Check nanofs.toml, or reload it in the running daemon (as SIGHUP does).
    Config(config::Args),
    /// Verify or export the audit trail of security-relevant acts.
    Audit(audit::Args),
    /// Verify references, counts and the tree; with --read-data every chunk.
    Check(check::Args),
    /// Create, list and delete read-only snapshots of the whole tree.
    Snapshot(snapshot::Args),
    /// Metadata backups in the object store, and restoring a volume from them.
    Meta(meta::Args),
    /// Copy a file or tree instantly; the copy shares every chunk.
    Clone(clone::Args),
    /// Print the BLAKE2b-256 fingerprint of a file or a whole tree.
    Fingerprint(fingerprint::Args),
    /// Write a new X-Wing (ML-KEM-768 + X25519) identity; prints its public recipient.
    Keygen(key::KeygenArgs),
    /// Manage key slots: add, list, remove, change-passphrase, rotate.
    Key(key::Args),
    /// Re-seal chunks of older key epochs under the current key, then forget the old keys.
    Rekey(key::RekeyArgs),
    /// Run the HTTP sidecar (uploads, downloads) in the foreground.
    Serve(serve::Args),
    /// Create, list and revoke access tokens of the HTTP sidecar.
    Token(token::Args),
    /// Manage users of the sidecar: add, passwd, list, remove.
    User(gallery::UserArgs),
    /// Manage shared galleries: create, list, show, delete, member, owner.
    Gallery(gallery::GalleryArgs),
    /// Adaptive streaming: package videos into HLS and DASH renditions.
    Media(media::Args),
    /// Live streams: create, list, show, revoke-key, delete.
    Stream(stream::Args),
    /// Upload a file or tree to a sidecar (parallel, resumable, verified).
    Push(transfer::PushArgs),
    /// Download a file or tree from a sidecar (parallel, resumable, verified).
    Pull(transfer::PullArgs),
}

/// What unlocks a volume, shared by every command that needs its keys.
#[derive(Debug, Clone, clap::Args)]
pub struct UnlockArgs {
    /// Read the passphrase from the first line of this file (else $NANOFS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Unlock with this identity file (from `nanofs keygen`); takes precedence over a passphrase.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

/// Runs the command line; returns the process exit code.
#[must_use]
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => umount::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Check(a) => check::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Config(a) => config::run(a),
        Command::Hold(a) => hold::run(a),
        Command::Trash(a) => trash::run(a),
        Command::Snapshot(a) => snapshot::run(a),
        Command::Clone(a) => clone::run(a),
        Command::Meta(a) => meta::run(a),
        Command::Fingerprint(a) => fingerprint::run(a),
        Command::Keygen(a) => key::keygen(a),
        Command::Key(a) => key::run(a),
        Command::Media(a) => media::run(a),
        Command::Stream(a) => stream::run(a),
        Command::Rekey(a) => key::rekey(a),
        Command::Serve(a) => serve::run(a),
        Command::Token(a) => token::run(a),
        Command::User(a) => gallery::run_user(a),
        Command::Gallery(a) => gallery::run_gallery(a),
        Command::Push(a) => transfer::push(a),
        Command::Pull(a) => transfer::pull(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nanofs: {e:#}");
            1
        }
    }
}

/// Log filter: `RUST_LOG`, else `info`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// Opens the volume in `dir` with its galleries attached (their hook and hidden
/// directory), as every process that serves or checks a volume must.
fn open_volume(
    dir: &std::path::Path,
    keys: crate::crypto::keys::Keyring,
    opts: &crate::volume::OpenOptions,
) -> anyhow::Result<Arc<Galleries>> {
    use anyhow::Context;
    let vol = crate::volume::Volume::open(dir, keys, opts).with_context(|| format!("cannot open {}", dir.display()))?;
    crate::stream::register(&vol);
    Ok(Galleries::open(Arc::new(vol))?)
}

/// Sends `req` to the daemon serving `dir`; when no daemon does, unlocks and opens the
/// volume here and runs `local` on it instead. `answer` picks the expected reply.
fn via_daemon_or_open<T>(
    dir: &std::path::Path,
    pass: &UnlockArgs,
    req: &crate::control::Request,
    answer: impl FnOnce(crate::control::Response) -> Option<T>,
    local: impl FnOnce(&crate::volume::Volume, &Galleries) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use crate::control::Response;
    match crate::control::ask(dir, req) {
        Some(Response::Error { message }) => anyhow::bail!("{message}"),
        Some(reply) => answer(reply).ok_or_else(|| anyhow::anyhow!("unexpected answer from the daemon")),
        None => {
            let keys = crate::volume::Volume::unlock(dir, &credential::get(pass)?)?;
            let galleries = open_volume(dir, keys, &crate::volume::OpenOptions::default())?;
            let vol = galleries.volume();
            let result = local(vol, &galleries)?;
            vol.close()?;
            Ok(result)
        }
    }
}

/// A daemon's `Json` answer as `T` (for `via_daemon_or_open`).
fn json_answer<T: serde::de::DeserializeOwned>(reply: crate::control::Response) -> Option<T> {
    match reply {
        crate::control::Response::Json { value } => serde_json::from_value(value).ok(),
        _ => None,
    }
}

/// Seconds of `90s`, `30m`, `24h`, `7d` or a plain number of seconds.
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<i64> {
    crate::config::parse_duration(s).map_err(anyhow::Error::msg)
}

/// A progress bar on a terminal; hidden otherwise (plain output stays clean).
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Logs to stderr.
fn init_logging() {
    install_logging(LogFormat::Text, std::io::stderr, true);
}

/// How a daemon writes its log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line; the fields of the request (`request_id`, `method`,
    /// `route`) under `span`.
    Json,
}

/// Logs to `writer` in `format`.
fn install_logging<W>(format: LogFormat, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        assert_eq!(super::parse_duration("90s").unwrap(), 90);
        assert_eq!(super::parse_duration("24h").unwrap(), 86_400);
        assert_eq!(super::parse_duration("7d").unwrap(), 604_800);
        assert_eq!(super::parse_duration("15").unwrap(), 15);
        assert!(super::parse_duration("3w").is_err());
    }
}
