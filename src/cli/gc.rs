//! `nanofs gc VOLUME`: collect garbage, through the daemon when mounted.

use super::UnlockArgs;
use crate::control::{Request, Response};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Unlock with this passphrase when the volume is not mounted.
    #[command(flatten)]
    passphrase: UnlockArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let report = super::via_daemon_or_open(
        &args.volume,
        &args.passphrase,
        &Request::Gc,
        |reply| match reply {
            Response::Gc(r) => Some(r),
            _ => None,
        },
        |vol, _| Ok(vol.gc()?),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "deleted {} chunks ({} bytes stored); {} kept for writes in flight; {} packs rewritten ({} live bytes \
             moved); on disk {} -> {} bytes",
            report.chunks_deleted,
            report.stored_bytes_deleted,
            report.chunks_pinned,
            report.packs_deleted,
            report.pack_bytes_moved,
            report.disk_bytes_before,
            report.disk_bytes_after
        );
    }
    Ok(())
}
