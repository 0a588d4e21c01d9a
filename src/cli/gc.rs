//! `nanofs gc VOLUME`: collect garbage, through the daemon when mounted.

use super::{passphrase, PassphraseArgs};
use crate::control::{self, Request, Response};
use crate::volume::{OpenOptions, Volume};
use anyhow::{bail, Context};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Unlock with this passphrase when the volume is not mounted.
    #[command(flatten)]
    passphrase: PassphraseArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let report = match control::ask(&args.volume, &Request::Gc) {
        Some(Response::Gc(r)) => r,
        Some(Response::Error { message }) => bail!("{message}"),
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => {
            let pass = passphrase::get(&args.passphrase, false)?;
            let key = Volume::unlock(&args.volume, &pass)?;
            let vol = Volume::open(&args.volume, &key, &OpenOptions::default())
                .with_context(|| format!("cannot open {}", args.volume.display()))?;
            let r = vol.gc()?;
            vol.close()?;
            r
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "deleted {} chunks ({} bytes stored); {} kept for writes in flight; database {} -> {} bytes",
            report.chunks_deleted,
            report.stored_bytes_deleted,
            report.chunks_pinned,
            report.disk_bytes_before,
            report.disk_bytes_after
        );
    }
    Ok(())
}
