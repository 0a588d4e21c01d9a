//! `nanofs stream …`: live streams of galleries (docs/live.md).

use super::UnlockArgs;
use crate::gallery::admin::AdminOp;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a stream; prints it, then its publish key on the last line.
    Create {
        /// The volume directory.
        volume: PathBuf,
        /// Its name in URLs: letters, digits, '-', '_', '.'.
        name: String,
        /// The owning gallery (id or volume path): its members and share links watch.
        #[arg(long, conflicts_with = "path", required_unless_present = "path")]
        gallery: Option<String>,
        /// A volume directory owning it instead: tokens with read on it watch.
        #[arg(long)]
        path: Option<String>,
        /// Record it into its directory as an MP4 when it ends.
        #[arg(long)]
        record: bool,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// List streams, with whether each is live.
    List {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Show a stream.
    Show {
        /// The volume directory.
        volume: PathBuf,
        /// Stream name.
        name: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Replace the publish key: its publisher is cut off at once; prints the new key last.
    RevokeKey {
        /// The volume directory.
        volume: PathBuf,
        /// Stream name.
        name: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Delete a stream: its sessions end; its recordings stay.
    Delete {
        /// The volume directory.
        volume: PathBuf,
        /// Stream name.
        name: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

/// Prints a stream without its key, then the key alone on the last line of stdout.
fn print_with_key(mut v: serde_json::Value) -> anyhow::Result<()> {
    let key = v.as_object_mut().and_then(|o| o.remove("publish_key"));
    println!("{}", serde_json::to_string_pretty(&v)?);
    if let Some(key) = key.as_ref().and_then(|k| k.as_str()) {
        eprintln!("publish key (shown once; WHIP: Authorization: Bearer KEY, RTMP: ?key=KEY):");
        println!("{key}");
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let admin = super::gallery::admin;
    match args.action {
        Action::Create { volume, name, gallery, path, record, unlock } => {
            print_with_key(admin(&volume, &unlock, AdminOp::StreamCreate { name, gallery, path, record })?)
        }
        Action::List { volume, unlock } => {
            println!("{}", serde_json::to_string_pretty(&admin(&volume, &unlock, AdminOp::StreamList)?)?);
            Ok(())
        }
        Action::Show { volume, name, unlock } => {
            println!("{}", serde_json::to_string_pretty(&admin(&volume, &unlock, AdminOp::StreamShow { name })?)?);
            Ok(())
        }
        Action::RevokeKey { volume, name, unlock } => {
            print_with_key(admin(&volume, &unlock, AdminOp::StreamRevokeKey { name })?)
        }
        Action::Delete { volume, name, unlock } => {
            println!("{}", serde_json::to_string_pretty(&admin(&volume, &unlock, AdminOp::StreamDelete { name })?)?);
            Ok(())
        }
    }
}
