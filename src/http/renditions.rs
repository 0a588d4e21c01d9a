//! The sidecar's side of the packaging queue (`crate::stream::jobs`): videos that land in a
//! gallery are queued when `[media.streaming] package_on_upload` is on, and every change of
//! a job reaches the gallery's live clients as a `rendition.*` event.

use super::Sidecar;
use crate::gallery::items::ItemInfo;
use crate::ids::Ino;
use crate::media::{self, Kind};
use crate::stream::jobs::{Job, JobState};
use std::sync::Arc;

/// Queues a freshly indexed gallery video for packaging, unless its content has a ladder
/// or a job already, or the volume does not package on upload.
pub async fn after_index(state: &Arc<Sidecar>, ino: Ino, info: &ItemInfo) {
    let cfg = &state.vol.config().media.streaming;
    let Some(jobs) = state.jobs.clone() else { return };
    if !cfg.enabled || !cfg.package_on_upload || media::kind_of(&info.media_type) != Kind::Video {
        return;
    }
    if info.facts.width.is_none() {
        // ffprobe found no picture: nothing to package (the item says why).
        return;
    }
    let queued = state
        .gallery(move |gs| {
            if crate::stream::find(gs.volume(), ino, "master.m3u8").map_err(stream_error)?.is_some() {
                return Ok(None);
            }
            match jobs.get(ino) {
                Some(j) if !j.state.finished() => return Ok(None),
                // The same bytes would fail the same way; a new version is tried again.
                Some(j) if j.state == JobState::Failed && !rewritten_since(gs, &j, ino) => return Ok(None),
                _ => {}
            }
            let g = gs.gallery_of_item(ino)?;
            let (dir, name) = gs.locate_item(&g, ino)?;
            let path = format!("{}/{name}", gs.volume().dir_path(dir)?.trim_end_matches('/'));
            Ok(Some(jobs.queue_source(ino, &path, None, true, true).map_err(stream_error)?))
        })
        .await;
    match queued {
        Ok(Some(job)) => tracing::info!(path = %job.path, "queued for packaging"),
        Ok(None) => {}
        Err(e) => tracing::warn!(inode = %ino, error = %e.message, "queueing a gallery video for packaging"),
    }
}

/// Whether the item was written after `job` finished.
fn rewritten_since(gs: &crate::gallery::Galleries, job: &Job, ino: Ino) -> bool {
    let finished = job.finished_at.unwrap_or(i64::MAX);
    gs.volume().getattr(ino).is_ok_and(|a| a.inode.mtime.secs >= finished)
}

fn stream_error(e: crate::stream::Error) -> crate::gallery::Error {
    match e {
        crate::stream::Error::Volume(e) => e.into(),
        e => crate::gallery::Error::Rejected(e.to_string()),
    }
}

/// Turns every change of a packaging job into a live event of the video's gallery:
/// `rendition.queued`, `rendition.progress`, `rendition.ready`, `rendition.failed`,
/// `rendition.cancelled`, with the job's state, progress and error.
pub async fn events_loop(state: Arc<Sidecar>) {
    let Some(jobs) = state.jobs.clone() else { return };
    let mut changes = jobs.subscribe();
    loop {
        let job = match changes.recv().await {
            Ok(job) => job,
            // Progress is stale a moment later; skipping some is harmless.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let kind = match job.state {
            JobState::Queued => "rendition.queued",
            JobState::Running => "rendition.progress",
            JobState::Done => "rendition.ready",
            JobState::Failed => "rendition.failed",
            JobState::Cancelled => "rendition.cancelled",
        };
        let data = serde_json::json!({
            "state": job.state,
            "progress": job.progress,
            "error": job.error,
            "renditions": job.report.as_ref().map(|r| r.renditions.clone()),
        });
        let item = Ino(job.source);
        if let Err(e) = state.gallery(move |gs| gs.announce(item, kind, data)).await {
            tracing::debug!(error = %e.message, "announcing a packaging job");
        }
    }
}
