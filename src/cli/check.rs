//! `nanofs check VOLUME [--read-data] [--repair]`: verify the volume; the exit status says
//! whether it is clean.

use super::UnlockArgs;
use crate::control::{Request, Response};
use crate::volume::CheckReport;
use anyhow::bail;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume directory.
    volume: PathBuf,
    /// Also read, decrypt and verify every chunk.
    #[arg(long)]
    read_data: bool,
    /// Fix what can be derived from the rest (counts, links, dangling entries).
    #[arg(long)]
    repair: bool,
    /// Unlock with this passphrase when the volume is not mounted.
    #[command(flatten)]
    passphrase: UnlockArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let req = Request::Check { read_data: args.read_data, repair: args.repair };
    let report = super::via_daemon_or_open(
        &args.volume,
        &args.passphrase,
        &req,
        |reply| match reply {
            Response::Check(r) => Some(r),
            _ => None,
        },
        |vol, galleries| {
            let bar = super::progress_bar("verifying chunks");
            let mut r = vol.check(args.read_data, args.repair, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            galleries.check(args.repair, &mut r)?;
            Ok(r)
        },
    )?;
    print_report(&report, args.json)?;
    if !report.is_clean() {
        bail!("{} problem(s) found, {} repaired", report.problems.len(), report.repaired);
    }
    Ok(())
}

fn print_report(r: &CheckReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "{} inodes, {} entries, {} extents, {} chunks; {} chunks ({} bytes) read and verified",
        r.inodes, r.dirents, r.extents, r.chunks, r.chunks_verified, r.bytes_verified
    );
    for p in &r.problems {
        println!("problem: {p}");
    }
    if r.problems.is_empty() {
        println!("clean");
    }
    Ok(())
}
