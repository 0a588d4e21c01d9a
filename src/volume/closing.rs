//! Commits of closed large files, in the background.
//!
//! Committing a file that streamed into pack files means chunking and sealing its last
//! block and an `fdatasync` of the packs: about a tenth of a second that `close` would
//! otherwise wait for, a quarter of the time of a `cp` of 100 MiB videos. A mounted
//! volume hands such commits to a committer thread instead, as a local file system leaves
//! a closed file's dirty pages to writeback: the window stays in the file's state until
//! then, so every read, `stat` and later write sees the data, and `fsync`, snapshots,
//! `stats`, garbage collection and unmount commit or wait for it first. A commit that
//! fails is logged and reported as a writeback error (`file::errors`).
//!
//! A small file's close hands its commit over too: hashing, compressing and sealing it
//! are most of what a copy of small files waits for in the daemon, and the committer
//! does them on another CPU while the copy goes on. It prepares the chunks from a copy of
//! the file's bytes without holding the file's lock, so the `chmod` and `utimens` that
//! `rsync` and `tar` send right after the close do not wait for it; those fold into the
//! handed-over commit instead of forcing it (`Volume::setattr`). A closed file's commit
//! failing is reported like any writeback error: at the next `fsync` or close.

use super::error::Error;
use super::Volume;
use crate::ids::Ino;
use crate::store::Durability;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// Bytes that closed files waiting for their commit may hold in memory; a close past this
/// waits for room. A large file counts as all of it (its blocks in flight are many times
/// its tail), so at most one waits at a time.
const MAX_HELD: usize = 64 << 20;

#[derive(Default)]
pub(crate) struct Closing {
    state: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// A committer thread runs (`run_committer`); without one, closes commit themselves.
    running: bool,
    /// The volume is closing: no committer starts any more.
    stopped: bool,
    files: VecDeque<(Ino, usize)>,
    /// Bytes the files in `files` hold (`MAX_HELD`).
    held: usize,
    /// Files with queued random writes (`file::queued`), each once.
    writes: VecDeque<Ino>,
    /// The committer is committing a file it took off the queue.
    busy: bool,
}

impl Volume {
    /// Commits closed files handed over by `close` until the volume closes: run it on a
    /// thread of its own while mounted.
    pub fn run_committer(&self) {
        let closing = &self.closing;
        let mut q = closing.state.lock().expect("closing lock");
        if q.stopped {
            return;
        }
        q.running = true;
        loop {
            // Closed files first: a close may be waiting for room in their queue.
            let (ino, closed) = match (q.files.pop_front(), q.writes.pop_front()) {
                (Some((ino, held)), _) => {
                    q.held -= held;
                    (ino, true)
                }
                (None, Some(ino)) => (ino, false),
                (None, None) if !q.running => break,
                (None, None) => {
                    q = closing.changed.wait(q).expect("closing lock");
                    continue;
                }
            };
            q.busy = true;
            closing.changed.notify_all();
            drop(q);
            if closed {
                self.commit_closed(ino);
            } else {
                self.commit_queued_in_background(ino);
            }
            q = closing.state.lock().expect("closing lock");
            q.busy = false;
            closing.changed.notify_all();
        }
    }

    fn commit_closed(&self, ino: Ino) {
        let Some(state) = self.open_file_state(ino) else { return };
        // A small file is chunked and sealed before its lock is taken (see the module docs).
        let prepared = self.prepare_small_window(&state);
        super::faults::crash_point("closed-file-commit");
        let mut st = state.lock().expect("file lock");
        st.queued = false;
        let committed = match prepared {
            Ok(Some(p)) => self.commit_prepared_window(ino, &mut st, p),
            // Not small, or failed without the lock: committing under it records a failure.
            Ok(None) | Err(_) => self.commit_window(ino, &mut st, Durability::Buffered),
        };
        match committed {
            Ok(()) => {}
            // Unlinked and released meanwhile: its data and attributes went with it.
            Err(Error::NotFound) => st.forget_pending_attrs(),
            Err(e) => {
                // `commit_window` recorded the loss for the file's handles.
                tracing::error!(inode = %ino, error = %e, "committing a closed file failed");
            }
        }
        drop(st);
        drop(state);
        self.forget_idle_state(ino);
    }

    /// Hands the commit of closed file `ino` to the committer; false if there is none
    /// (the caller commits). `held`: the bytes its window holds in memory, `None` for a
    /// large file.
    pub(crate) fn defer_commit(&self, ino: Ino, held: Option<usize>) -> bool {
        let held = held.map_or(MAX_HELD, |n| n.min(MAX_HELD));
        let mut q = self.closing.state.lock().expect("closing lock");
        if !q.running {
            return false;
        }
        while !q.files.is_empty() && q.held + held > MAX_HELD {
            q = self.closing.changed.wait(q).expect("closing lock");
        }
        q.held += held;
        q.files.push_back((ino, held));
        self.closing.changed.notify_all();
        true
    }

    /// Whether a committer thread runs.
    pub(crate) fn committer_runs(&self) -> bool {
        self.closing.state.lock().expect("closing lock").running
    }

    /// Asks the committer to commit the queued writes of `ino`; false if there is none (the
    /// writer commits them).
    pub(crate) fn defer_queued_writes(&self, ino: Ino) -> bool {
        let mut q = self.closing.state.lock().expect("closing lock");
        if !q.running {
            return false;
        }
        if !q.writes.contains(&ino) {
            q.writes.push_back(ino);
            self.closing.changed.notify_all();
        }
        true
    }

    /// Waits until every closed file handed to the committer is committed.
    pub(crate) fn wait_for_closed_commits(&self) {
        let mut q = self.closing.state.lock().expect("closing lock");
        while !q.files.is_empty() || !q.writes.is_empty() || q.busy {
            q = self.closing.changed.wait(q).expect("closing lock");
        }
    }

    /// Stops the committer once its queue is empty; closes commit themselves from now on.
    pub(crate) fn stop_committer(&self) {
        let mut q = self.closing.state.lock().expect("closing lock");
        q.running = false;
        q.stopped = true;
        self.closing.changed.notify_all();
        drop(q);
        self.wait_for_closed_commits();
    }
}
