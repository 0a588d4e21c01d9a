//! `nanofs fingerprint PATH` (inside a mount) or `nanofs fingerprint VOLUME PATH`: the
//! BLAKE2b-256 of a file (as `b2sum -l 256` prints it) or of a whole tree.

use super::UnlockArgs;
use crate::control::{Request, Response};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `PATH` inside a mounted volume, or `VOLUME PATH` with PATH relative to its root.
    #[arg(num_args = 1..=2, required = true, value_name = "[VOLUME] PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    unlock: UnlockArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (volume, paths) = super::mounts::locate(&args.paths, 1)?;
    let path = paths.into_iter().next().expect("one path");
    let hex = super::via_daemon_or_open(
        &volume,
        &args.unlock,
        &Request::Fingerprint { path: path.clone() },
        |reply| match reply {
            Response::Fingerprint { blake2b } => Some(blake2b),
            _ => None,
        },
        |vol, _| Ok(crate::ids::hex(&vol.fingerprint(vol.resolve(&path)?)?)),
    )?;
    println!("{hex}  /{path}");
    Ok(())
}
