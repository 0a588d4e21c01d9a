//! Threads the engine starts: rayon's pool (hashing, sealing, read-ahead) and the helper
//! threads started on demand. They run on every CPU the process may use, whichever thread
//! starts them. A new thread inherits its creator's CPU set, and the FUSE queue threads
//! are pinned to one CPU each (`fs::uring`): a pool they started lazily had one worker,
//! on their CPU, for all of a mount's hashing, sealing and decrypting.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::sync::OnceLock;
use std::thread::JoinHandle;

/// The CPUs the process may use, as the first caller of `start_pool` found them.
static CPUS: OnceLock<Option<CpuSet>> = OnceLock::new();

/// Starts rayon's global pool with a worker per CPU the calling thread may use (or
/// `RAYON_NUM_THREADS`), each on all of them. Call it from a thread that is not pinned,
/// before any other rayon use: `Volume::open` does. Later calls do nothing.
pub fn start_pool() {
    let cpus = CPUS.get_or_init(|| sched_getaffinity(Pid::from_raw(0)).ok());
    let workers = cpus.map_or(0, |set| (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).count());
    // Already built (by an earlier volume in this process): its workers unpin themselves.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(std::env::var_os("RAYON_NUM_THREADS").map_or(workers, |_| 0))
        .thread_name(|i| format!("engine-{i}"))
        .start_handler(|_| unpin())
        .build_global();
}

/// Starts a named thread that runs on every CPU the process may use.
pub fn spawn<T: Send + 'static>(
    name: impl Into<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        unpin();
        f()
    })
}

/// Moves the calling thread back onto all of the process's CPUs.
fn unpin() {
    if let Some(Some(set)) = CPUS.get() {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), set) {
            tracing::debug!(error = %e, "engine thread not moved onto every CPU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread started from a thread pinned to one CPU runs on all of them again.
    #[test]
    fn threads_started_from_a_pinned_thread_run_on_every_cpu() {
        start_pool();
        let all = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let allowed = |set: &CpuSet| (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap()).collect::<Vec<_>>();
        let cpus = allowed(&all);
        if cpus.len() < 2 {
            return; // one CPU: nothing to unpin
        }
        let (pinned_set, from_spawn, from_pool) = std::thread::spawn(move || {
            let mut one = CpuSet::new();
            one.set(cpus[0]).unwrap();
            sched_setaffinity(Pid::from_raw(0), &one).unwrap();
            let pinned = sched_getaffinity(Pid::from_raw(0)).unwrap();
            let spawned = spawn("test", || sched_getaffinity(Pid::from_raw(0)).unwrap()).unwrap().join().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            rayon::spawn(move || tx.send(sched_getaffinity(Pid::from_raw(0)).unwrap()).unwrap());
            (pinned, spawned, rx.recv().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(allowed(&pinned_set).len(), 1);
        assert_eq!(allowed(&from_spawn), allowed(&all));
        assert_eq!(allowed(&from_pool), allowed(&all));
        assert!(rayon::current_num_threads() >= 2 || std::env::var_os("RAYON_NUM_THREADS").is_some());
    }
}
