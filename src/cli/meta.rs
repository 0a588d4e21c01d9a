//! `nanofs meta backup|restore`: the metadata of a volume on an object store, backed up to
//! its bucket and rebuilt from there on another host (docs/object-store.md).

use super::init::S3Args;
use super::UnlockArgs;
use crate::control::Request;
use crate::volume::meta_backup::{BackupReport, RestoreReport};
use crate::volume::Volume;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Store a sealed copy of the metadata in the bucket (through the daemon when mounted).
    Backup {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a volume from the newest metadata backup in a bucket.
    Restore {
        /// The directory to rebuild the volume in (must not exist, or be empty).
        volume: PathBuf,
        #[command(flatten)]
        s3: S3Args,
        /// Restore this backup (its object name, meta/…) rather than the newest.
        #[arg(long)]
        backup: Option<String>,
        #[command(flatten)]
        unlock: UnlockArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Backup { volume, unlock, json } => {
            let report: BackupReport =
                super::via_daemon_or_open(&volume, &unlock, &Request::MetaBackup, super::json_answer, |vol, _| {
                    Ok(vol.meta_backup()?)
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "metadata backed up to {} ({} files, {} bytes); {} emptied packs deleted",
                    report.name, report.files, report.bytes, report.packs_deleted
                );
            }
        }
        Action::Restore { volume, s3, backup, unlock, json } => {
            anyhow::ensure!(s3.is_set(), "nanofs meta restore needs --s3-endpoint and --s3-bucket");
            let store = s3.store_section()?;
            let started = std::time::Instant::now();
            let report: RestoreReport =
                Volume::meta_restore(&volume, &store, backup.as_deref(), &super::credential::get(&unlock)?)
                    .with_context(|| format!("cannot restore a volume into {}", volume.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "restored {} from {} ({} database files, {} bytes) in {:.1} s",
                    volume.display(),
                    report.name,
                    report.files,
                    report.bytes,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok(())
}
