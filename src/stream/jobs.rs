//! The packaging queue of a process that serves a volume (the mount daemon, `nanofs
//! serve`): jobs with progress, at most `[media.streaming] max_jobs` at once, cancelled when
//! their video is deleted, restarted when it is rewritten, and kept across restarts.
//!
//! Every job is a sealed record in `meta` (`stream-job/<inode>`), written at each change of
//! state and synced, so a job queued survives a crash: at start, jobs that were queued or
//! running are queued again (a run cut short left only a staging directory, which the
//! sweep removes; nothing half-made is ever published). Progress lives in memory and goes
//! to subscribers (the sidecar turns it into gallery events).
//!
//! A hook on the namespace watches the videos with a job and those packaged: deleting one
//! stops its run and sweeps soon after (its ladder goes unless a clone or snapshot still
//! holds the same content); rewriting one restarts its run on the new bytes.

use super::{content_key, Error, PackageReport, Renditions, Result, Run};
use crate::ids::Ino;
use crate::volume::{Change, Durability, Hook, HookBatch, HookError, HookId, Kind, Note, Volume};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// Key prefix of job records.
const JOB_PREFIX: &[u8] = b"stream-job/";
/// Finished jobs kept for `media jobs`, newest first.
const KEEP_FINISHED: usize = 100;
/// How often the renditions of deleted videos are swept without a reason to sooner.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How long a video must have gone unwritten before its run starts: a copy into the
/// volume still in progress would make ffmpeg read half a file.
const SETTLE: Duration = Duration::from_secs(1);
/// How long after a packaged video is deleted its ladder is swept: deletes come in bursts
/// (`rm -r`), one sweep serves them all.
const SWEEP_AFTER_DELETE: Duration = Duration::from_secs(2);

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a free slot.
    Queued,
    /// ffmpeg is at work.
    Running,
    /// The ladder is published.
    Done,
    /// ffmpeg or the volume failed; `error` says why. The video is untouched.
    Failed,
    /// Stopped because the video was deleted.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    #[must_use]
    pub fn finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// One video to package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The video's inode.
    pub source: u64,
    /// Its volume path when the job was queued.
    pub path: String,
    /// Heights asked for.
    pub ladder: Vec<u32>,
    /// Where it is.
    pub state: JobState,
    /// Share done, 0 to 1 (of the current run).
    pub progress: f64,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the run made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PackageReport>,
    /// Queued by `package_on_upload`, not by a person.
    #[serde(default)]
    pub automatic: bool,
    /// Done at once, without a run, if the video's bytes have a ladder by the time its
    /// turn comes (queued with a directory, or on upload: another file with the same
    /// bytes may have been packaged meanwhile). A video named alone is packaged again.
    #[serde(default)]
    pub if_missing: bool,
    /// Runs started (more than one after a restart or a rewrite of the video).
    #[serde(default)]
    pub runs: u32,
    /// When it was queued, Unix seconds.
    pub queued_at: i64,
    /// When it finished, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

/// What the queue shares between its workers, the hook and its callers.
#[derive(Default)]
struct Queue {
    /// Every job known, by video.
    jobs: HashMap<Ino, Job>,
    /// Videos waiting, oldest first.
    waiting: VecDeque<Ino>,
    /// The stop flag and content key of each run in progress.
    running: HashMap<Ino, (Arc<AtomicBool>, String)>,
    /// Runs to start again when they stop (their video was rewritten).
    rerun: HashSet<Ino>,
    /// Set at shutdown: workers leave and runs stop.
    closing: bool,
}

/// Why the watcher wakes.
enum Touched {
    /// A name of the video went (maybe its last).
    Unlinked(Ino),
    /// The video was rewritten.
    Rewritten(Ino),
    /// The queue shuts down.
    Closing,
}

/// The packaging queue of one volume.
pub struct Jobs {
    vol: Arc<Volume>,
    hook: HookId,
    queue: Mutex<Queue>,
    /// Wakes workers (a job queued, closing) and waiters (a job finished).
    changed: Condvar,
    /// Videos with a job or a ladder: the hook reports their changes.
    watched: Arc<RwLock<HashSet<Ino>>>,
    events: tokio::sync::broadcast::Sender<Job>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Wakes the watcher thread.
    touched: Mutex<mpsc::Sender<Touched>>,
}

/// The namespace hook: reports changes of watched videos to the watcher thread.
struct Watch {
    watched: Arc<RwLock<HashSet<Ino>>>,
    touched: Mutex<mpsc::Sender<Touched>>,
}

impl Hook for Watch {
    fn active(&self) -> bool {
        !self.watched.read().expect("watched videos").is_empty()
    }

    fn changed(
        &self,
        change: &Change<'_>,
        _by: Option<&str>,
        b: &mut HookBatch<'_, '_>,
    ) -> std::result::Result<(), HookError> {
        let (ino, touched) = match *change {
            Change::Removed { ino, kind: Kind::File, .. } => (ino, Touched::Unlinked(ino)),
            Change::Written { ino } => (ino, Touched::Rewritten(ino)),
            _ => return Ok(()),
        };
        if self.watched.read().expect("watched videos").contains(&ino) {
            b.note::<Vec<Touched>>().push(touched);
        }
        Ok(())
    }

    fn committed(&self, note: Option<Note>) {
        let Some(touched) = note.and_then(|n| n.downcast::<Vec<Touched>>().ok()) else { return };
        let tx = self.touched.lock().expect("watcher channel");
        for t in *touched {
            let _ = tx.send(t);
        }
    }
}

impl Jobs {
    /// Starts the queue of `vol`: loads its jobs, queues again those a stop interrupted,
    /// sweeps what a crash left, and starts `max_jobs` workers and the watcher.
    pub fn start(vol: Arc<Volume>) -> Result<Arc<Self>> {
        super::register(&vol);
        let watched = Arc::new(RwLock::new(HashSet::new()));
        let (tx, rx) = mpsc::channel();
        let hook = vol.register_hook(
            &[JOB_PREFIX],
            Arc::new(Watch { watched: watched.clone(), touched: Mutex::new(tx.clone()) }),
        );
        let jobs = Arc::new(Self {
            vol: vol.clone(),
            hook,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            watched,
            events: tokio::sync::broadcast::channel(256).0,
            threads: Mutex::new(Vec::new()),
            touched: Mutex::new(tx),
        });
        let records = Self::recorded(&vol)?;
        let writable = !vol.is_read_only();
        {
            let mut q = jobs.queue.lock().expect("job queue");
            for mut job in records {
                if !job.state.finished() && writable {
                    job.state = JobState::Queued;
                    job.progress = 0.0;
                    q.waiting.push_back(Ino(job.source));
                    jobs.watched.write().expect("watched videos").insert(Ino(job.source));
                    jobs.save(&job)?;
                }
                q.jobs.insert(Ino(job.source), job);
            }
        }
        if !writable {
            return Ok(jobs);
        }
        jobs.watched.write().expect("watched videos").extend(Renditions::open(vol.clone()).packaged_sources()?);
        // Nothing runs yet: every staging directory is a crash's. (Ladders no file holds
        // are the watcher's first sweep, in the background: it scans the inode table.)
        let swept = Renditions::open(vol.clone()).sweep_interrupted()?;
        if swept > 0 {
            tracing::info!(directories = swept, "what interrupted packaging runs left removed");
        }
        let mut threads = jobs.threads.lock().expect("job threads");
        for n in 0..vol.config().media.streaming.max_jobs {
            let weak = Arc::downgrade(&jobs);
            threads.push(std::thread::Builder::new().name(format!("package-{n}")).spawn(move || work(&weak))?);
        }
        let weak = Arc::downgrade(&jobs);
        threads.push(std::thread::Builder::new().name("package-watch".into()).spawn(move || watch(&weak, &rx))?);
        drop(threads);
        Ok(jobs)
    }

    /// The jobs recorded in `vol`, oldest first, for a volume no daemon serves.
    pub fn recorded(vol: &Volume) -> Result<Vec<Job>> {
        let mut all: Vec<Job> = vol.records::<Job>(JOB_PREFIX, JOB_PREFIX)?.into_iter().map(|(_, j)| j).collect();
        all.sort_by_key(|j| (j.queued_at, j.source));
        Ok(all)
    }

    /// Queues the video at volume path `path`, or every video under the directory `path`
    /// that has no ladder yet (a job already queued or running for one is returned as it
    /// is, unless `ladder` differs: then it starts over with `ladder`).
    pub fn queue(&self, path: &str, ladder: Option<Vec<u32>>, automatic: bool) -> Result<Vec<Job>> {
        if self.vol.is_read_only() {
            return Err(Error::Invalid("the volume is read-only".into()));
        }
        // Named one by one, a video is packaged again; under a directory, only those that
        // have no ladder yet.
        let whole_dir = self.vol.getattr(self.vol.resolve(path)?)?.inode.kind == Kind::Dir;
        let mut queued = Vec::new();
        for (source, path) in super::videos_at(&self.vol, path)? {
            if whole_dir && super::find(&self.vol, source, "master.m3u8")?.is_some() {
                continue;
            }
            queued.push(self.queue_source(source, &path, ladder.clone(), automatic, whole_dir)?);
        }
        Ok(queued)
    }

    /// Queues the video `source`, known as `path`, as `queue` does.
    pub fn queue_source(
        &self,
        source: Ino,
        path: &str,
        ladder: Option<Vec<u32>>,
        automatic: bool,
        if_missing: bool,
    ) -> Result<Job> {
        let ladder = ladder.unwrap_or_else(|| self.vol.config().media.streaming.ladder.clone());
        super::check_ladder(&ladder)?;
        if self.vol.getattr(source)?.inode.kind != Kind::File {
            return Err(Error::NotAVideo(format!("{path} is not a regular file")));
        }
        let mut q = self.queue.lock().expect("job queue");
        if let Some(job) = q.jobs.get(&source).filter(|j| !j.state.finished()) {
            if job.ladder == ladder {
                return Ok(job.clone());
            }
            if let Some((stop, _)) = q.running.get(&source) {
                stop.store(true, Ordering::Relaxed);
                q.rerun.insert(source);
            }
        }
        let job = Job {
            source: source.0,
            path: path.to_string(),
            ladder,
            state: JobState::Queued,
            progress: 0.0,
            error: None,
            report: None,
            automatic,
            if_missing: if_missing || automatic,
            runs: 0,
            queued_at: now(),
            finished_at: None,
        };
        self.save(&job)?;
        self.watched.write().expect("watched videos").insert(source);
        if !q.waiting.contains(&source) && !q.running.contains_key(&source) {
            q.waiting.push_back(source);
        }
        q.jobs.insert(source, job.clone());
        self.prune(&mut q);
        drop(q);
        self.publish(&job);
        self.changed.notify_all();
        Ok(job)
    }

    /// Every job, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<Job> {
        let mut all: Vec<Job> = self.queue.lock().expect("job queue").jobs.values().cloned().collect();
        all.sort_by_key(|j| (j.queued_at, j.source));
        all
    }

    /// The job of the video `source`, if it has one.
    #[must_use]
    pub fn get(&self, source: Ino) -> Option<Job> {
        self.queue.lock().expect("job queue").jobs.get(&source).cloned()
    }

    /// The job of `source` once it has finished, the queue closes or `timeout` passes.
    #[must_use]
    pub fn wait_timeout(&self, source: Ino, timeout: Duration) -> Option<Job> {
        let deadline = Instant::now() + timeout;
        let mut q = self.queue.lock().expect("job queue");
        loop {
            let job = q.jobs.get(&source)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if job.state.finished() || q.closing || left.is_zero() {
                return Some(job.clone());
            }
            q = self.changed.wait_timeout(q, left).expect("job queue").0;
        }
    }

    /// Every change of a job (queued, started, progress, finished).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Job> {
        self.events.subscribe()
    }

    /// Stops every run (their jobs stay queued for the next start) and waits for the
    /// workers: call before the volume closes.
    pub fn shutdown(&self) {
        {
            let mut q = self.queue.lock().expect("job queue");
            q.closing = true;
            for (stop, _) in q.running.values() {
                stop.store(true, Ordering::Relaxed);
            }
        }
        self.changed.notify_all();
        let _ = self.touched.lock().expect("watcher channel").send(Touched::Closing);
        let threads = std::mem::take(&mut *self.threads.lock().expect("job threads"));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Sweeps the renditions no file holds any more, sparing the runs in progress.
    pub fn sweep(&self) -> Result<usize> {
        // Asked as the sweep meets each staging directory, not beforehand: a run that
        // starts meanwhile has its key before it makes its directory.
        let running =
            |key: &str| self.queue.lock().expect("job queue").running.values().any(|(_, k)| !k.is_empty() && k == key);
        let removed = Renditions::open(self.vol.clone()).sweep(&running)?;
        let mut packaged: HashSet<Ino> = Renditions::open(self.vol.clone()).packaged_sources()?.into_iter().collect();
        packaged.extend(
            self.queue.lock().expect("job queue").jobs.values().filter(|j| !j.state.finished()).map(|j| Ino(j.source)),
        );
        *self.watched.write().expect("watched videos") = packaged;
        Ok(removed)
    }

    fn save(&self, job: &Job) -> Result<()> {
        let key = job_key(Ino(job.source));
        self.vol.update(self.hook, Durability::Synced, |b| {
            b.put(&key, job);
            Ok::<_, Error>(())
        })
    }

    fn publish(&self, job: &Job) {
        // Nobody listening is fine: `media jobs` reads the records.
        let _ = self.events.send(job.clone());
    }

    /// Forgets the oldest finished jobs beyond `KEEP_FINISHED`.
    fn prune(&self, q: &mut Queue) {
        let mut finished: Vec<(i64, Ino)> =
            q.jobs.iter().filter(|(_, j)| j.state.finished()).map(|(i, j)| (j.finished_at.unwrap_or(0), *i)).collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort_unstable();
        for (_, ino) in &finished[..finished.len() - KEEP_FINISHED] {
            q.jobs.remove(ino);
            let key = job_key(*ino);
            if let Err(e) = self.vol.update(self.hook, Durability::Buffered, |b| {
                b.delete(&key);
                Ok::<_, crate::volume::Error>(())
            }) {
                tracing::warn!(error = %e, "forgetting an old packaging job");
            }
        }
    }

    /// Runs the next job; false when the queue closes.
    fn run_next(&self) -> bool {
        let (source, ladder, stop, if_missing) = {
            let mut q = self.queue.lock().expect("job queue");
            let source = loop {
                if q.closing {
                    return false;
                }
                match q.waiting.pop_front() {
                    Some(s) => break s,
                    None => q = self.changed.wait(q).expect("job queue"),
                }
            };
            let Some(job) = q.jobs.get_mut(&source) else { return true };
            job.state = JobState::Running;
            job.progress = 0.0;
            job.runs += 1;
            job.error = None;
            let job = job.clone();
            let stop = Arc::new(AtomicBool::new(false));
            q.running.insert(source, (stop.clone(), String::new()));
            if let Err(e) = self.save(&job) {
                tracing::warn!(error = %e, "recording a packaging job");
            }
            self.publish(&job);
            (source, job.ladder, stop, job.if_missing)
        };
        self.settle(source, &stop);
        let before = self.stamp(source);
        // Outside the lock: the first fingerprint of a large video reads all of it. A video
        // deleted while it waited has none, and its run fails at once.
        let key = content_key(&self.vol, source).unwrap_or_default();
        if let Some(r) = self.queue.lock().expect("job queue").running.get_mut(&source) {
            r.1 = key;
        }
        let segment_seconds = self.vol.config().media.streaming.segment_seconds;
        let last_sent = Mutex::new((Instant::now(), 0.0f64));
        let progress = |p: f64| {
            let mut last = last_sent.lock().expect("progress");
            // At most a few events a second, and each a visible step.
            if p - last.1 < 0.01 || last.0.elapsed() < Duration::from_millis(250) {
                return;
            }
            *last = (Instant::now(), p);
            drop(last);
            let mut q = self.queue.lock().expect("job queue");
            if let Some(job) = q.jobs.get_mut(&source) {
                job.progress = p;
                let job = job.clone();
                drop(q);
                self.publish(&job);
            }
        };
        let has_ladder = || super::find(&self.vol, source, "master.m3u8").is_ok_and(|f| f.is_some());
        let result = if if_missing && has_ladder() {
            Err(Error::AlreadyPackaged)
        } else {
            Renditions::open(self.vol.clone()).package(
                source,
                &ladder,
                segment_seconds,
                &Run { stop: &stop, progress: &progress },
            )
        };
        let mut q = self.queue.lock().expect("job queue");
        q.running.remove(&source);
        let stopped = matches!(result, Err(Error::Media(crate::media::MediaError::Stopped)));
        // A run that failed on a video written meanwhile (ffmpeg read it half-replaced)
        // starts over on the new bytes, as a stopped one does.
        let rewritten = result.is_err() && !stopped && self.stamp(source) != before;
        let rerun = q.rerun.remove(&source) || rewritten;
        let closing = q.closing;
        let queue = &mut *q;
        let Some(job) = queue.jobs.get_mut(&source) else { return true };
        match result {
            _ if stopped && closing => {
                // Queued again at the next start.
                job.state = JobState::Queued;
                job.progress = 0.0;
            }
            // Also when the run got to its end first: its ladder is of the old bytes.
            _ if rerun => {
                job.state = JobState::Queued;
                job.progress = 0.0;
                queue.waiting.push_back(source);
            }
            Err(Error::Volume(crate::volume::Error::NotFound)) => cancel(job),
            _ if stopped => cancel(job),
            Ok(report) => {
                job.state = JobState::Done;
                job.progress = 1.0;
                job.report = Some(report);
                job.finished_at = Some(now());
            }
            Err(Error::AlreadyPackaged) => {
                job.state = JobState::Done;
                job.progress = 1.0;
                job.report = None;
                job.finished_at = Some(now());
            }
            Err(e) => {
                tracing::warn!(path = %job.path, error = %e, "packaging failed");
                job.state = JobState::Failed;
                job.error = Some(e.to_string());
                job.finished_at = Some(now());
            }
        }
        let job = job.clone();
        if let Err(e) = self.save(&job) {
            tracing::warn!(error = %e, "recording a packaging job");
        }
        if job.state == JobState::Done {
            self.watched.write().expect("watched videos").insert(source);
        }
        self.prune(&mut q);
        drop(q);
        self.publish(&job);
        self.changed.notify_all();
        true
    }

    /// Waits until the video has not been written for `SETTLE` (a copy into the volume
    /// is still going on), or the run is stopped.
    fn settle(&self, source: Ino, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let Ok(attr) = self.vol.getattr(source) else { return };
            let mtime = std::time::UNIX_EPOCH
                + Duration::new(attr.inode.mtime.secs.max(0) as u64, attr.inode.mtime.nanos.min(999_999_999));
            let age = std::time::SystemTime::now().duration_since(mtime).unwrap_or_default();
            if age >= SETTLE {
                return;
            }
            std::thread::sleep((SETTLE - age).min(Duration::from_millis(200)));
        }
    }

    /// What tells one version of a video from the next without reading it: its change
    /// time and size (`None`: gone).
    fn stamp(&self, source: Ino) -> Option<(i64, u32, u64)> {
        let a = self.vol.getattr(source).ok()?;
        Some((a.inode.ctime.secs, a.inode.ctime.nanos, a.inode.size))
    }

    /// A watched video was unlinked or rewritten.
    fn touched(&self, t: &Touched) -> bool {
        match *t {
            Touched::Unlinked(ino) => {
                let gone = self.vol.getattr(ino).map_or(true, |a| a.inode.nlink == 0);
                if gone {
                    let mut q = self.queue.lock().expect("job queue");
                    if let Some((stop, _)) = q.running.get(&ino) {
                        stop.store(true, Ordering::Relaxed);
                    } else if let Some(pos) = q.waiting.iter().position(|i| *i == ino) {
                        q.waiting.remove(pos);
                        if let Some(job) = q.jobs.get_mut(&ino) {
                            cancel(job);
                            let job = job.clone();
                            drop(q);
                            if let Err(e) = self.save(&job) {
                                tracing::warn!(error = %e, "recording a packaging job");
                            }
                            self.publish(&job);
                            self.changed.notify_all();
                        }
                    }
                }
                gone
            }
            Touched::Rewritten(ino) => {
                let mut q = self.queue.lock().expect("job queue");
                if let Some((stop, _)) = q.running.get(&ino) {
                    stop.store(true, Ordering::Relaxed);
                    q.rerun.insert(ino);
                }
                false
            }
            Touched::Closing => false,
        }
    }
}

fn cancel(job: &mut Job) {
    job.state = JobState::Cancelled;
    job.error = Some("the video was deleted".into());
    job.finished_at = Some(now());
}

/// A worker: runs jobs until the queue closes.
fn work(jobs: &Weak<Jobs>) {
    while let Some(jobs) = jobs.upgrade() {
        if !jobs.run_next() {
            return;
        }
    }
}

/// The watcher: acts on changes of watched videos and sweeps, at start, hourly and soon
/// after a packaged video is deleted.
fn watch(jobs: &Weak<Jobs>, touched: &mpsc::Receiver<Touched>) {
    let mut next_sweep = Instant::now();
    loop {
        let wait = next_sweep.saturating_duration_since(Instant::now());
        match touched.recv_timeout(wait) {
            Ok(Touched::Closing) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(t) => {
                let Some(jobs) = jobs.upgrade() else { return };
                if jobs.touched(&t) {
                    next_sweep = next_sweep.min(Instant::now() + SWEEP_AFTER_DELETE);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let Some(jobs) = jobs.upgrade() else { return };
                match jobs.sweep() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(directories = n, "renditions no file holds any more removed"),
                    Err(e) => tracing::warn!(error = %e, "sweeping renditions failed"),
                }
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
        }
    }
}

fn job_key(source: Ino) -> Vec<u8> {
    [JOB_PREFIX, &source.0.to_be_bytes()].concat()
}

fn now() -> i64 {
    crate::utc::now_secs()
}
