//! Space comes back without waiting for the GC timer, as in a log-structured store:
//! garbage is collected when it makes the volume's disk use exceed its budget, when the
//! disk runs low on free space, and before a write is refused for want of space.
//!
//! The budget is `1.5 × live stored bytes + RECLAIM_SLACK` (docs/design.md). Deciding
//! costs two counters and a `statvfs`, so the daemon asks every few seconds. A collection
//! that leaves the volume over budget (RocksDB's own overhead, bodies pinned by writes in
//! flight) is not repeated until there is new garbage.

use super::error::{Error, Result};
use super::gc::GcReport;
use super::Volume;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Disk use the budget allows on top of 1.5 × the live stored bytes: RocksDB's files, the
/// write-ahead log and memtables of a small volume, and garbage too small to be worth a
/// collection.
pub const RECLAIM_SLACK: u64 = 256 << 20;
/// Free space kept on the volume's disk so RocksDB can always flush and compact: a write
/// that would leave less is refused (`NoSpace`).
pub(crate) const SPACE_RESERVE: u64 = 96 << 20;
/// Free space on the volume's disk below which any garbage is collected.
const LOW_FREE: u64 = 1 << 30;

/// Why garbage is collected now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimReason {
    /// Disk use is over budget.
    OverBudget,
    /// The disk holding the volume is nearly full.
    LowFreeSpace,
    /// A write would otherwise fail with `ENOSPC`.
    DiskFull,
}

/// Collections for space run at most this often, but for a write that would fail.
const MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Collections run one at a time (the lock); what the last one left.
#[derive(Default)]
pub(crate) struct Reclaimer {
    last: Mutex<Option<LastRun>>,
}

struct LastRun {
    at: Instant,
    /// Reclaimable bytes left behind (pinned by writes in flight).
    garbage_left: u64,
}

/// The disk budget of a volume whose live chunks store `stored` bytes.
pub(super) fn disk_budget(stored: u64) -> u64 {
    stored + stored / 2 + RECLAIM_SLACK
}

impl Volume {
    /// The most disk the volume should use for its live data: see the module docs.
    #[must_use]
    pub fn disk_budget(&self) -> u64 {
        disk_budget(self.txn_state.lock().expect("commit lock").space.stored_bytes)
    }

    /// Why garbage should be collected now, if it should.
    pub fn reclaim_due(&self) -> Result<Option<ReclaimReason>> {
        let garbage = self.txn_state.lock().expect("commit lock").space.reclaimable_bytes;
        if garbage == 0 || self.read_only {
            return Ok(None);
        }
        if self.store.disk_bytes()? > self.disk_budget() {
            return Ok(Some(ReclaimReason::OverBudget));
        }
        if self.free_disk_bytes()? < LOW_FREE {
            return Ok(Some(ReclaimReason::LowFreeSpace));
        }
        Ok(None)
    }

    /// Collects garbage if `reclaim_due` says so; the daemon calls this every few seconds.
    pub fn reclaim_if_due(&self) -> Result<Option<GcReport>> {
        match self.reclaim_due()? {
            Some(reason) => self.reclaim(reason),
            None => Ok(None),
        }
    }

    /// Collects garbage, unless there is none that the last collection did not leave
    /// behind (pinned bodies: nothing to gain), or the last ran less than `MIN_INTERVAL`
    /// ago and no write waits. A collection running meanwhile is waited for.
    pub(crate) fn reclaim(&self, reason: ReclaimReason) -> Result<Option<GcReport>> {
        let mut last = self.reclaimer.last.lock().expect("reclaimer lock");
        let garbage = self.txn_state.lock().expect("commit lock").space.reclaimable_bytes;
        let recent = last.as_ref().is_some_and(|l| l.at.elapsed() < MIN_INTERVAL) && reason != ReclaimReason::DiskFull;
        if garbage == 0 || last.as_ref().is_some_and(|l| l.garbage_left == garbage) || recent {
            return Ok(None);
        }
        tracing::info!(?reason, garbage, "collecting garbage");
        let report = self.gc()?;
        let garbage_left = self.txn_state.lock().expect("commit lock").space.reclaimable_bytes;
        *last = Some(LastRun { at: Instant::now(), garbage_left });
        Ok(Some(report))
    }

    /// Bytes free for the volume on its disk.
    pub(crate) fn free_disk_bytes(&self) -> Result<u64> {
        let s = nix::sys::statvfs::statvfs(self.dir.as_path()).map_err(std::io::Error::from)?;
        Ok(s.blocks_available() * s.fragment_size())
    }

    /// Whether the volume takes writes now, and if not, why (for `/readyz`).
    pub fn writable(&self) -> std::result::Result<(), String> {
        if self.read_only {
            return Err("the volume is open read-only".into());
        }
        let free = self.free_disk_bytes().map_err(|e| format!("cannot read the disk's free space: {e}"))?;
        if free < SPACE_RESERVE {
            let garbage = self.txn_state.lock().expect("commit lock").space.reclaimable_bytes;
            return Err(format!(
                "the disk is full: {free} bytes free, {SPACE_RESERVE} kept in reserve \
                 ({garbage} bytes of garbage a collection may free)"
            ));
        }
        Ok(())
    }

    /// Refuses a write of `incoming` bytes that would leave less than `reserve` free, after
    /// collecting garbage to make room if there is any. Called with no file locked, since
    /// a collection commits every open window.
    pub(crate) fn make_room(&self, incoming: u64, reserve: u64) -> Result<()> {
        let needed = reserve + incoming;
        if self.free_disk_bytes()? >= needed {
            return Ok(());
        }
        self.reclaim(ReclaimReason::DiskFull)?;
        if self.free_disk_bytes()? >= needed {
            return Ok(());
        }
        Err(Error::NoSpace)
    }
}
