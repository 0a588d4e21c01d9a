//! `nanofs audit verify|export VOLUME`: the audit trail (docs/operations.md), from the
//! daemon when mounted, else from the volume opened here.

use super::UnlockArgs;
use crate::control::{Request, Response};
use crate::volume::{AuditEvent, AuditRecord, AuditVerdict};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Walk the hash chain; exit 1 naming the first broken record.
    Verify {
        /// The volume directory.
        volume: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Print the records as JSON lines.
    Export {
        /// The volume directory.
        volume: PathBuf,
        /// Only records from then on: a date (2026-12-01, 2026-12-01T08:00:00Z) or an age (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

/// Unix milliseconds of `--since`.
fn since_ms(s: &str) -> anyhow::Result<i64> {
    if let Some(secs) = crate::utc::parse_rfc3339(s) {
        return Ok(secs * 1000);
    }
    let age = super::parse_duration(s).map_err(|_| {
        anyhow::anyhow!("--since {s:?}: give a date (2026-12-01 or 2026-12-01T08:00:00Z) or an age (24h, 7d)")
    })?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    Ok(now.saturating_sub(age) * 1000)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Verify { volume, json, unlock } => {
            let verdict: AuditVerdict = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::AuditVerify,
                |reply| match reply {
                    Response::Json { value } => serde_json::from_value(value).ok(),
                    _ => None,
                },
                |vol, _| Ok(vol.audit_verify()?),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&verdict)?);
            }
            match &verdict.broken {
                None if !json => {
                    println!("audit trail intact: {} records, head {}", verdict.records, verdict.head);
                }
                None => {}
                Some((seq, why)) => {
                    bail!(
                        "audit trail broken at record {seq}: {why} (the {} records before it verify)",
                        verdict.records
                    )
                }
            }
            Ok(())
        }
        Action::Export { volume, since, unlock } => {
            let since = since.as_deref().map(since_ms).transpose()?;
            let records: Vec<AuditRecord> = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::AuditExport { since },
                |reply| match reply {
                    Response::Json { value } => serde_json::from_value(value).ok(),
                    _ => None,
                },
                |vol, _| Ok(vol.audit_records(since)?),
            )
            .context("cannot read the audit trail (`nanofs audit verify` says where it is damaged)")?;
            let mut out = std::io::stdout().lock();
            for r in records {
                let mut line = serde_json::to_value(&r)?;
                line["time"] = crate::utc::rfc3339(r.at.div_euclid(1000)).into();
                use std::io::Write;
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
    }
}

/// Appends an act of the administrator at the command line: through the daemon when the
/// volume is mounted, else to the volume opened with `keys`.
pub(super) fn record_admin_act(
    dir: &Path,
    keys: crate::crypto::keys::Keyring,
    event: AuditEvent,
) -> anyhow::Result<()> {
    match crate::control::ask(dir, &Request::Audit { event: event.clone() }) {
        Some(Response::Done) => Ok(()),
        Some(Response::Error { message }) => bail!("cannot append to the audit trail: {message}"),
        Some(_) => bail!("unexpected answer from the daemon"),
        None => {
            let galleries = super::open_volume(dir, keys, &crate::volume::OpenOptions::default())?;
            let vol = galleries.volume();
            vol.audit(event).context("cannot append to the audit trail")?;
            vol.close()?;
            Ok(())
        }
    }
}
