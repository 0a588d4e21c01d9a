//! `nanofs media package VOLUME PATH [--ladder 1080,720,480,360] [--wait]` and `nanofs
//! media jobs VOLUME` (docs/streaming.md). While the volume is served (mounted, or `nanofs
//! serve`), packaging is a job of the daemon's queue; otherwise this process unlocks the
//! volume and packages right away.

use crate::control::{Request, Response};
use crate::stream::jobs::{Job, JobState};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Package a video, or every video under a directory, into an adaptive ladder (H.264
    /// and AAC in CMAF segments, HLS playlists and a DASH manifest), replacing its
    /// renditions when done.
    Package {
        /// The volume directory.
        volume: PathBuf,
        /// Volume path of the video, e.g. /videos/film.mp4, or of a directory: every video
        /// under it (by its first bytes, not its name).
        path: String,
        /// Heights of the renditions, comma-separated (default: `[media.streaming] ladder`);
        /// none taller than the video is made.
        #[arg(long, value_delimiter = ',')]
        ladder: Option<Vec<u32>>,
        /// Wait for the job to finish, with a progress bar on a terminal (without a
        /// daemon the command always waits).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        unlock: super::UnlockArgs,
    },
    /// List the packaging jobs of a served volume (queued, running with their progress,
    /// and the last finished ones).
    Jobs {
        /// The volume directory.
        volume: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        unlock: super::UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::init_logging();
    match args.action {
        Action::Package { volume, path, ladder, wait, unlock } => {
            let path = format!("/{}", path.trim_start_matches('/'));
            let queued = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::Package { path: path.clone(), ladder: ladder.clone() },
                |reply| match reply {
                    Response::Json { value } => Some(Queued::Jobs(serde_json::from_value(value).ok()?)),
                    _ => None,
                },
                |_, galleries| {
                    let made = crate::stream::package_now(galleries.volume(), &path, ladder)?;
                    Ok(Queued::Done(match made.as_slice() {
                        [(_, report)] => serde_json::to_value(report)?,
                        all => serde_json::Value::Array(
                            all.iter()
                                .map(|(path, report)| serde_json::json!({ "path": path, "report": report }))
                                .collect(),
                        ),
                    }))
                },
            )?;
            let jobs = match queued {
                Queued::Done(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    return Ok(());
                }
                Queued::Jobs(jobs) if !wait => jobs,
                Queued::Jobs(jobs) => jobs.into_iter().map(|j| follow(&volume, j)).collect::<anyhow::Result<_>>()?,
            };
            // One video: its job; a directory's: the list (empty when each has its ladder).
            match jobs.as_slice() {
                [one] => println!("{}", serde_json::to_string_pretty(one)?),
                all => println!("{}", serde_json::to_string_pretty(all)?),
            }
            let unfinished: Vec<String> = jobs
                .iter()
                .filter(|j| wait && j.state != JobState::Done)
                .map(|j| {
                    let state = serde_json::to_value(j.state).ok().and_then(|v| v.as_str().map(str::to_string));
                    format!(
                        "packaging {} {}: {}",
                        j.path,
                        state.unwrap_or_default(),
                        j.error.as_deref().unwrap_or("the daemon stopped")
                    )
                })
                .collect();
            if !unfinished.is_empty() {
                anyhow::bail!("{}", unfinished.join("\n"));
            }
            Ok(())
        }
        Action::Jobs { volume, json, unlock } => {
            let jobs: Vec<Job> = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::MediaJobs,
                |reply| match reply {
                    Response::Json { value } => serde_json::from_value(value).ok(),
                    _ => None,
                },
                |vol, _| Ok(crate::stream::jobs::Jobs::recorded(vol)?),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
                return Ok(());
            }
            println!("{:<10} {:>6}  {:<12} {:<20} PATH", "STATE", "DONE", "INODE", "RENDITIONS");
            for j in &jobs {
                let state = serde_json::to_value(j.state)?.as_str().unwrap_or("?").to_string();
                let made = j.report.as_ref().map_or_else(|| "-".to_string(), |r| format!("{:?}", r.renditions));
                println!("{state:<10} {:>5.1}%  {:<12} {made:<20} {}", j.progress * 100.0, j.source, j.path);
                if let Some(e) = &j.error {
                    println!("           {e}");
                }
            }
            Ok(())
        }
    }
}

/// What `package` got: the jobs of the daemon, or the reports of a run here.
enum Queued {
    Jobs(Vec<Job>),
    Done(serde_json::Value),
}

/// Follows `job` on the daemon until it finishes, with a progress bar on a terminal.
fn follow(volume: &std::path::Path, mut job: Job) -> anyhow::Result<Job> {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent}% ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("packaging {}", job.path));
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while !job.state.finished() {
        let reply = crate::control::ask(volume, &Request::MediaJob { source: job.source, wait_ms: 500 })
            .ok_or_else(|| anyhow::anyhow!("the daemon stopped answering"))?;
        job = match reply {
            Response::Json { value } => serde_json::from_value(value)?,
            Response::Error { message } => anyhow::bail!("{message}"),
            _ => anyhow::bail!("unexpected answer from the daemon"),
        };
        bar.set_position((job.progress * 1000.0) as u64);
        if !job.state.finished() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    bar.finish_and_clear();
    Ok(job)
}
