//! `nanofs snapshot create|list|delete VOLUME [NAME]`: read-only images of the whole tree,
//! shown in the mount under `/.snapshots/NAME`.

use super::UnlockArgs;
use crate::control::{Request, Response};
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Take a snapshot of the whole tree as /.snapshots/NAME.
    Create {
        /// The volume directory.
        volume: PathBuf,
        /// Name of the snapshot.
        name: String,
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
        Action::Create { volume, name, passphrase } => {
            let info = super::via_daemon_or_open(
                &volume,
                &passphrase,
                &Request::SnapshotCreate { name: name.clone() },
                |reply| match reply {
                    Response::Snapshot(s) => Some(s),
                    _ => None,
                },
                |vol, _| Ok(vol.snapshot_create(&name)?),
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
