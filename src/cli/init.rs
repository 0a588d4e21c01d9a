//! `nanofs init VOLUME`: create a volume.

use super::credential;
use crate::crypto::kdf::Argon2Params;
use crate::volume::Volume;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to create the volume in (must not exist, or be empty).
    volume: PathBuf,
    /// Read the passphrase from the first line of this file (else $NANOFS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pass = credential::read_passphrase(args.passphrase_file.as_deref(), credential::ENV, "Passphrase", true)?;
    Volume::init(&args.volume, &pass, Argon2Params::DEFAULT)
        .with_context(|| format!("cannot create volume {}", args.volume.display()))?;
    println!("created volume {}", args.volume.display());
    Ok(())
}
