//! `nanofs clone VOLUME SRC DST` (paths inside the volume) or `nanofs clone SRC DST`
//! (paths inside a mounted volume): an instant copy of a file or tree that shares chunks.

use super::UnlockArgs;
use crate::control::{Request, Response};
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `VOLUME SRC DST` with SRC and DST relative to the volume's root, or `SRC DST` as
    /// paths inside a mounted volume.
    #[arg(num_args = 2..=3, required = true, value_name = "[VOLUME] SRC DST")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    passphrase: UnlockArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (volume, paths) = super::mounts::locate(&args.paths, 2)?;
    let [src, dst] = <[String; 2]>::try_from(paths).expect("two paths");
    super::via_daemon_or_open(
        &volume,
        &args.passphrase,
        &Request::Clone { src: src.clone(), dst: dst.clone() },
        |reply| matches!(reply, Response::Done).then_some(()),
        |vol, _| Ok(vol.clone_path(&src, &dst).map(|_| ())?),
    )
    .with_context(|| format!("cannot clone /{src} to /{dst}"))?;
    Ok(())
}
