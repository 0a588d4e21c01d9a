//! `nanofs snapshot create|list|delete|forget VOLUME [NAME]`: read-only images of the whole
//! tree or of a directory, shown in the mount under `/.snapshots/NAME`; `forget` applies
//! the `[[retention.snapshots]]` counts.

use super::UnlockArgs;
use crate::control::{Request, Response};
use crate::volume::ScheduleReport;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Take a snapshot of the whole tree (or of --path) as /.snapshots/NAME.
    Create {
        /// The volume directory.
        volume: PathBuf,
        /// Name of the snapshot.
        name: String,
        /// Snapshot only this directory (a path inside the volume).
        #[arg(long, default_value = "/")]
        path: String,
        #[command(flatten)]
        passphrase: UnlockArgs,
    },
    /// List the snapshots, oldest first.
    List {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        passphrase: UnlockArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the scheduled snapshots that no count of their [[retention.snapshots]]
    /// schedule keeps (the daemon does it too, every minute).
    Forget {
        /// The volume directory.
        volume: PathBuf,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        passphrase: UnlockArgs,
    },
    /// Delete a snapshot (run `nanofs gc` to reclaim what only it held).
    Delete {
        /// The volume directory.
        volume: PathBuf,
        /// Name of the snapshot.
        name: String,
        #[command(flatten)]
        passphrase: UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Create { volume, name, path, passphrase } => {
            let info = super::via_daemon_or_open(
                &volume,
                &passphrase,
                &Request::SnapshotCreate { name: name.clone(), path: path.clone() },
                |reply| match reply {
                    Response::Snapshot(s) => Some(s),
                    _ => None,
                },
                |vol, _| Ok(vol.snapshot_create(&name, &path)?),
            )
            .with_context(|| format!("snapshot {name:?}"))?;
            println!("created snapshot {} (/.snapshots/{})", info.name, info.name);
        }
        Action::List { volume, passphrase, json } => {
            let list = super::via_daemon_or_open(
                &volume,
                &passphrase,
                &Request::SnapshotList,
                |reply| match reply {
                    Response::Snapshots { snapshots } => Some(snapshots),
                    _ => None,
                },
                |vol, _| Ok(vol.snapshot_list()?),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in list {
                    println!("{}\t{}", s.name, crate::utc::rfc3339(s.created));
                }
            }
        }
        Action::Forget { volume, dry_run, passphrase } => {
            let report: ScheduleReport = super::via_daemon_or_open(
                &volume,
                &passphrase,
                &Request::SnapshotForget { dry_run },
                super::json_answer,
                |vol, _| Ok(vol.snapshot_schedules(false, dry_run)?),
            )?;
            for name in &report.kept {
                println!("keep\t{name}");
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            for name in &report.forgotten {
                println!("{verb}\t{name}");
            }
        }
        Action::Delete { volume, name, passphrase } => {
            super::via_daemon_or_open(
                &volume,
                &passphrase,
                &Request::SnapshotDelete { name: name.clone() },
                |reply| matches!(reply, Response::Done).then_some(()),
                |vol, _| Ok(vol.snapshot_delete(&name)?),
            )
            .with_context(|| format!("snapshot {name:?}"))?;
            println!("deleted snapshot {name}");
        }
    }
    Ok(())
}
