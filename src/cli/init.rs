//! `nanofs init VOLUME`: create a volume.

use super::{passphrase, PassphraseArgs};
use crate::crypto::kdf::Argon2Params;
use crate::volume::Volume;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to create the volume in (must not exist, or be empty).
    volume: PathBuf,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pass = passphrase::get(&args.passphrase, true)?;
    Volume::init(&args.volume, &pass, Argon2Params::DEFAULT)
        .with_context(|| format!("cannot create volume {}", args.volume.display()))?;
    println!("created volume {}", args.volume.display());
    Ok(())
}
