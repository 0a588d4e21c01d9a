//! `nanofs trash list|restore|empty VOLUME`: files deleted while `[retention] trash_days > 0`
//! (docs/operations.md).

use super::UnlockArgs;
use crate::control::Request;
use crate::volume::{TrashEmptied, TrashItem};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// What is in the trash, oldest first.
    List {
        /// The volume directory.
        volume: PathBuf,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Put back the file last deleted from PATH (or, for a directory, every file deleted
    /// from below it), with its data and metadata, at the path it had.
    Restore {
        /// The volume directory.
        volume: PathBuf,
        /// The path it had, inside the volume.
        path: String,
        /// Restore this entry (`trash list` shows ids) rather than the last deleted.
        #[arg(long)]
        id: Option<u64>,
        /// Restore it at this path instead (one entry only).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Delete what is in the trash for good.
    Empty {
        /// The volume directory.
        volume: PathBuf,
        /// Only what was deleted longer ago than this (`90s`, `30m`, `24h`, `7d`).
        #[arg(long)]
        older_than: Option<String>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::List { volume, json: as_json, unlock } => {
            let items: Vec<TrashItem> =
                super::via_daemon_or_open(&volume, &unlock, &Request::TrashList, super::json_answer, |vol, _| {
                    Ok(vol.trash_list()?)
                })?;
            for t in items {
                if as_json {
                    println!("{}", serde_json::to_string(&t)?);
                } else {
                    println!("{}\t{}\t{}\t{}", t.id, crate::utc::rfc3339(t.deleted), t.size, t.path);
                }
            }
        }
        Action::Restore { volume, path, id, to, unlock } => {
            let req = Request::TrashRestore { path: path.clone(), id, to: to.clone() };
            let restored: Vec<TrashItem> =
                super::via_daemon_or_open(&volume, &unlock, &req, super::json_answer, |vol, _| {
                    Ok(vol.trash_restore(&path, id, to.as_deref())?)
                })
                .map_err(|e| {
                    // The daemon answers with the error's text.
                    let is = |v: crate::volume::Error| e.to_string() == v.to_string();
                    if is(crate::volume::Error::Exists) {
                        anyhow::anyhow!(
                            "{} exists again; restore it elsewhere with --to PATH",
                            to.as_deref().unwrap_or(&path)
                        )
                    } else if is(crate::volume::Error::NotFound) {
                        anyhow::anyhow!("nothing deleted from {path} is in the trash")
                    } else {
                        e
                    }
                })?;
            for t in restored {
                println!("restored {}", to.as_deref().unwrap_or(&t.path));
            }
        }
        Action::Empty { volume, older_than, unlock } => {
            let before = match older_than {
                Some(age) => Some(crate::utc::now_secs() - super::parse_duration(&age)?),
                None => None,
            };
            let req = Request::TrashEmpty { before };
            let out: TrashEmptied = super::via_daemon_or_open(&volume, &unlock, &req, super::json_answer, |vol, _| {
                Ok(vol.trash_empty(before)?)
            })?;
            println!("deleted {} files ({} bytes) for good", out.items, out.bytes);
        }
    }
    Ok(())
}
