//! `nanofs hold set|release|list VOLUME`: legal holds on directories (docs/operations.md).

use super::UnlockArgs;
use crate::control::{Request, Response};
use crate::volume::Hold;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Put a directory under hold: nothing in it can be deleted until it is released.
    Set {
        /// The volume directory.
        volume: PathBuf,
        /// The directory, as a path inside the volume.
        path: String,
        /// Why (a matter or ticket number), kept with the hold and in the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Lift the hold on a directory.
    Release {
        /// The volume directory.
        volume: PathBuf,
        /// The directory, as a path inside the volume.
        path: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// List the holds.
    List {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Set { volume, path, reason, unlock } => {
            let req = Request::HoldSet { path: path.clone(), reason: reason.clone() };
            let hold: Hold = super::via_daemon_or_open(&volume, &unlock, &req, super::json_answer, |vol, _| {
                Ok(vol.hold_set(&path, &reason)?)
            })?;
            println!("{} is under hold", hold.path);
        }
        Action::Release { volume, path, unlock } => {
            let req = Request::HoldRelease { path: path.clone() };
            let done = |r| matches!(r, Response::Done).then_some(());
            super::via_daemon_or_open(&volume, &unlock, &req, done, |vol, _| Ok(vol.hold_release(&path)?))?;
            println!("hold on {path} lifted");
        }
        Action::List { volume, unlock } => {
            let holds: Vec<Hold> =
                super::via_daemon_or_open(&volume, &unlock, &Request::HoldList, super::json_answer, |vol, _| {
                    Ok(vol.hold_list()?)
                })?;
            for h in holds {
                println!("{}\tsince {}\t{}", h.path, crate::utc::rfc3339(h.since), h.reason);
            }
        }
    }
    Ok(())
}
