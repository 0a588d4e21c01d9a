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
//! Only files with bodies in packs are deferred: a small file's commit is one logged
//! batch, cheaper than the hand-over.

use super::error::Error;
use super::Volume;
use crate::ids::Ino;
use crate::store::Durability;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// Closed files waiting for their commit; a close past this waits for room, which bounds
/// the memory that uncommitted windows hold.
const MAX_QUEUED: usize = 1;

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
    files: VecDeque<Ino>,
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
                (Some(ino), _) => (ino, true),
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
        let mut st = state.lock().expect("file lock");
        st.queued = false;
        match self.commit_window(ino, &mut st, Durability::Buffered) {
            Ok(()) => {}
            // Unlinked and released meanwhile: its data went with it.
            Err(Error::NotFound) => {}
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
    /// (the caller commits).
    pub(crate) fn defer_commit(&self, ino: Ino) -> bool {
        let mut q = self.closing.state.lock().expect("closing lock");
        if !q.running {
            return false;
        }
        while q.files.len() >= MAX_QUEUED {
            q = self.closing.changed.wait(q).expect("closing lock");
        }
        q.files.push_back(ino);
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
