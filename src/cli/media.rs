//! `nanofs media package VOLUME PATH [--ladder 1080,720,480,360]`: packages a video into
//! its HLS and DASH ladder (docs/streaming.md). Through the daemon when mounted, else in
//! this process; either way the command waits until ffmpeg is done.

use crate::control::{Request, Response};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Package one video into an adaptive ladder (H.264 and AAC in CMAF segments, HLS
    /// playlists and a DASH manifest), replacing its renditions when done.
    Package {
        /// The volume directory.
        volume: PathBuf,
        /// Volume path of the video, e.g. /videos/film.mp4.
        path: String,
        /// Heights of the renditions, comma-separated (default: `[media.streaming] ladder`);
        /// none taller than the video is made.
        #[arg(long, value_delimiter = ',')]
        ladder: Option<Vec<u32>>,
        #[command(flatten)]
        unlock: super::UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::init_logging();
    match args.action {
        Action::Package { volume, path, ladder, unlock } => {
            let path = format!("/{}", path.trim_start_matches('/'));
            let report = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::Package { path: path.clone(), ladder: ladder.clone() },
                |reply| match reply {
                    Response::Json { value } => Some(value),
                    _ => None,
                },
                |_, galleries| Ok(serde_json::to_value(crate::stream::package(galleries.volume(), &path, ladder)?)?),
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}
