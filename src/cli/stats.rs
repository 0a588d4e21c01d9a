//! `nanofs stats VOLUME [--path DIR]`: space figures, from the daemon when mounted, else
//! from the database read-only (no passphrase needed: the counters are not secret). Per
//! directory (`--path`) the tree is walked, which needs the key.

use crate::control::{self, Request, Response};
use crate::volume::{Stats, Volume};
use anyhow::{bail, Context};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Figures of this directory tree (path inside the volume) instead of the volume's.
    #[arg(long, value_name = "DIR")]
    path: Option<String>,
    #[command(flatten)]
    unlock: super::UnlockArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.path {
        let path = path.trim_start_matches('/').to_string();
        let stats = super::via_daemon_or_open(
            &args.volume,
            &args.unlock,
            &Request::PathStats { path: path.clone() },
            |reply| match reply {
                Response::PathStats(s) => Some(s),
                _ => None,
            },
            |vol, _| Ok(vol.path_stats(vol.resolve(&path)?)?),
        )
        .with_context(|| format!("/{path}"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&stats)?);
        } else {
            print!(
                "files              {}\ndirectories        {}\nlogical bytes      {}\nunique bytes       {}\n\
                 stored bytes       {}\nchunks             {} (mean {})\ndedup ratio        {:.2}\n\
                 space saved        {:.1} %\nonly in this tree  {}\n",
                stats.files,
                stats.directories,
                size(stats.logical_bytes),
                size(stats.unique_bytes),
                size(stats.stored_bytes),
                stats.chunks,
                size(stats.mean_chunk_bytes),
                stats.dedup_ratio,
                stats.space_saved_percent,
                size(stats.exclusive_bytes),
            );
        }
        return Ok(());
    }
    let stats = match control::ask(&args.volume, &Request::Stats) {
        Some(Response::Stats(s)) => s,
        Some(Response::Error { message }) => bail!("{message}"),
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => {
            Volume::offline_stats(&args.volume).with_context(|| format!("cannot read {}", args.volume.display()))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", human(&stats));
    }
    Ok(())
}

fn human(s: &Stats) -> String {
    let mut out = format!(
        "logical bytes      {}\nunique bytes       {}\nstored bytes       {}\nchunks             {} (mean {})\n\
         dedup ratio        {:.2}\nspace saved        {:.1} %\nreclaimable by GC  {}\ndatabase on disk   {}\n",
        size(s.logical_bytes),
        size(s.unique_bytes),
        size(s.stored_bytes),
        s.chunks,
        size(s.mean_chunk_bytes),
        s.dedup_ratio,
        s.space_saved_percent,
        size(s.reclaimable_bytes),
        size(s.disk_bytes),
    );
    for a in &s.areas {
        let label = format!("in {}", a.name);
        out.push_str(&format!(
            "{label:<19}{} stored, {} of files ({} files; {} only there)\n",
            size(a.stored_bytes),
            size(a.logical_bytes),
            a.files,
            size(a.exclusive_bytes)
        ));
    }
    out
}

fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {} ({b} B)", UNITS[u])
    }
}
