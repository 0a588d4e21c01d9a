//! `nanofs stats VOLUME`: space figures, from the daemon when mounted, else from the
//! database read-only (no passphrase needed: the counters are not secret).

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
}

pub fn run(args: Args) -> anyhow::Result<()> {
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
    format!(
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
    )
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
