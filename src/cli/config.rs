//! `nanofs config check|reload VOLUME`: validate `nanofs.toml`, or have the daemon read it
//! again (as `kill -HUP` does) and say what changed.

use crate::config::{Config, Reload, CONFIG_FILE};
use crate::control::{self, Request, Response};
use anyhow::bail;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Check the file: exit 1 naming the key at fault.
    Check {
        /// The volume directory.
        volume: PathBuf,
    },
    /// Put the file's live keys in force in the running daemon; report the keys that need
    /// a restart (they keep their values). An invalid file changes nothing.
    Reload {
        /// The volume directory.
        volume: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Check { volume } => {
            Config::load(&volume.join(CONFIG_FILE))?;
            println!("{} is valid", volume.join(CONFIG_FILE).display());
        }
        Action::Reload { volume, json } => match control::ask(&volume, &Request::ConfigReload) {
            Some(Response::Json { value }) => {
                let reload: Reload = serde_json::from_value(value)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&reload)?);
                    return Ok(());
                }
                if reload.applied.is_empty() && reload.kept.is_empty() {
                    println!("nothing changed");
                }
                for k in &reload.applied {
                    println!("applied\t{k}");
                }
                for k in &reload.kept {
                    println!("needs a restart\t{k}");
                }
            }
            Some(Response::Error { message }) => bail!("configuration not reloaded, nothing changed: {message}"),
            Some(_) => bail!("unexpected answer from the daemon"),
            None => {
                Config::load(&volume.join(CONFIG_FILE))?;
                println!("no daemon serves {}; the file is valid and is read when one starts", volume.display());
            }
        },
    }
    Ok(())
}
