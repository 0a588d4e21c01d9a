//! Scheduled snapshots (`[[retention.snapshots]]`): the daemon snapshots each configured
//! directory once per period of its finest count (an hour when `hourly` is set, else a day,
//! a week, a month) and thins its snapshots out as restic's `forget --keep-*` does.
//!
//! A schedule's snapshots are those named `NAME@<time>`; snapshots taken by hand are never
//! touched. Periods are UTC hours, days, ISO weeks (Monday first) and calendar months.

use super::error::{Error, Result};
use super::snapshot::SnapshotInfo;
use super::Volume;
use crate::config::SnapshotSchedule;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// What one application of the schedules did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleReport {
    /// Snapshots taken.
    pub taken: Vec<String>,
    /// Snapshots kept by the counts.
    pub kept: Vec<String>,
    /// Snapshots deleted (or that would be) because no count keeps them.
    pub forgotten: Vec<String>,
}

/// The period a time falls in, for each kind of count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    fn of(self, secs: i64) -> i64 {
        match self {
            Period::Hour => secs.div_euclid(3600),
            Period::Day => secs.div_euclid(86_400),
            // 1970-01-01 was a Thursday: shifted by three days, weeks start on Monday.
            Period::Week => (secs.div_euclid(86_400) + 3).div_euclid(7),
            Period::Month => crate::utc::month_number(secs),
        }
    }
}

fn counts(s: &SnapshotSchedule) -> [(Period, u32); 4] {
    [(Period::Hour, s.hourly), (Period::Day, s.daily), (Period::Week, s.weekly), (Period::Month, s.monthly)]
}

/// Whether `s` wants a snapshot at `now`, its newest being taken at `newest`: none yet in
/// the current period of its finest count (a day when only `within_days` is set).
fn due(s: &SnapshotSchedule, newest: Option<i64>, now: i64) -> bool {
    let finest = counts(s).into_iter().find(|&(_, n)| n > 0).map_or(Period::Day, |(p, _)| p);
    newest.is_none_or(|t| finest.of(t) != finest.of(now))
}

/// The names among `snaps` (name, Unix seconds) that `s` keeps: for each count N, the
/// newest snapshot of each of the N latest periods that have one; and with `within_days`,
/// everything within that many days of the newest snapshot.
fn keep(s: &SnapshotSchedule, snaps: &[(String, i64)]) -> HashSet<String> {
    let mut newest_first: Vec<&(String, i64)> = snaps.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut kept = HashSet::new();
    for (period, n) in counts(s) {
        let mut last = None;
        let mut used = 0;
        for (name, t) in &newest_first {
            if used == n {
                break;
            }
            let p = period.of(*t);
            if last != Some(p) {
                kept.insert(name.clone());
                last = Some(p);
                used += 1;
            }
        }
    }
    if let Some((_, newest)) = newest_first.first() {
        let since = newest - i64::from(s.within_days) * 86_400;
        kept.extend(newest_first.iter().filter(|(_, t)| s.within_days > 0 && *t > since).map(|(n, _)| n.clone()));
    }
    kept
}

/// The name of a snapshot of `s` taken at `secs`: RFC 3339 without colons.
fn snapshot_name(s: &SnapshotSchedule, secs: i64) -> String {
    format!("{}@{}", s.name, crate::utc::rfc3339(secs).replace(':', ""))
}

impl Volume {
    /// Applies every `[[retention.snapshots]]` schedule: with `take`, snapshots what is
    /// due; then deletes the schedule's snapshots no count keeps (with `dry_run`, only
    /// says which). A schedule whose directory is missing is reported as `NotFound` after
    /// the others ran.
    pub fn snapshot_schedules(&self, take: bool, dry_run: bool) -> Result<ScheduleReport> {
        let schedules = self.config().retention.snapshots.clone();
        let mut report = ScheduleReport::default();
        let mut missing = None;
        for s in &schedules {
            let prefix = format!("{}@", s.name);
            let mine = |all: Vec<SnapshotInfo>| -> Vec<(String, i64)> {
                all.into_iter().filter(|i| i.name.starts_with(&prefix)).map(|i| (i.name, i.created)).collect()
            };
            let mut snaps = mine(self.snapshot_list()?);
            let now = crate::utc::now_secs();
            if take && !dry_run && due(s, snaps.iter().map(|(_, t)| *t).max(), now) {
                let name = snapshot_name(s, now);
                match self.snapshot_create(&name, &s.path) {
                    Ok(info) => {
                        snaps.push((info.name.clone(), info.created));
                        report.taken.push(info.name);
                    }
                    Err(Error::NotFound) => {
                        missing.get_or_insert_with(|| s.path.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let kept = keep(s, &snaps);
            snaps.sort_by_key(|(_, t)| *t);
            for (name, _) in snaps {
                if kept.contains(&name) {
                    report.kept.push(name);
                    continue;
                }
                if !dry_run {
                    self.snapshot_delete(&name)?;
                }
                report.forgotten.push(name);
            }
        }
        if let Some(path) = missing {
            tracing::warn!(path, "a scheduled snapshot's directory does not exist");
            return Err(Error::NotFound);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 86_400;
    /// 2026-12-07T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_796_601_600;

    fn schedule(hourly: u32, daily: u32, weekly: u32, monthly: u32, within_days: u32) -> SnapshotSchedule {
        SnapshotSchedule { name: "s".into(), path: "/".into(), hourly, daily, weekly, monthly, within_days }
    }

    fn kept_times(s: &SnapshotSchedule, times: &[i64]) -> Vec<i64> {
        let snaps: Vec<(String, i64)> = times.iter().map(|&t| (snapshot_name(s, t), t)).collect();
        let kept = keep(s, &snaps);
        let mut out: Vec<i64> = snaps.into_iter().filter(|(n, _)| kept.contains(n)).map(|(_, t)| t).collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn monday_is_the_first_day_of_a_week() {
        assert_eq!(crate::utc::rfc3339(MONDAY), "2026-12-07T00:00:00Z");
        assert_eq!(Period::Week.of(MONDAY), Period::Week.of(MONDAY + 6 * D + 23 * H));
        assert_ne!(Period::Week.of(MONDAY), Period::Week.of(MONDAY - 1));
        assert_ne!(Period::Month.of(MONDAY + 24 * D), Period::Month.of(MONDAY + 25 * D), "31 Dec / 1 Jan");
    }

    #[test]
    fn counts_keep_the_newest_of_each_period_as_restic_does() {
        // Every 20 minutes for three days.
        let times: Vec<i64> = (0..3 * 72).map(|i| MONDAY + i * 20 * 60).collect();
        let newest = *times.last().unwrap();
        let hourly = kept_times(&schedule(3, 0, 0, 0, 0), &times);
        assert_eq!(hourly, [newest - 2 * H, newest - H, newest], "the last of each of the last 3 hours");
        let daily = kept_times(&schedule(0, 2, 0, 0, 0), &times);
        assert_eq!(daily, [MONDAY + 2 * D - 20 * 60, newest], "the last of each of the last 2 days");
        // The counts add up: hourly and daily overlap on the newest.
        assert_eq!(kept_times(&schedule(3, 2, 0, 0, 0), &times).len(), 4);
        // A count larger than the history keeps one per period there is.
        assert_eq!(kept_times(&schedule(0, 10, 0, 0, 0), &times).len(), 3);
        let within = kept_times(&schedule(0, 0, 0, 0, 1), &times);
        assert_eq!(within.len(), 72, "everything of the last 24 hours");
        // Weeks and months, over a year of dailies.
        let year: Vec<i64> = (0..365).map(|i| MONDAY + i * D).collect();
        assert_eq!(kept_times(&schedule(0, 0, 4, 0, 0), &year).len(), 4);
        let months = kept_times(&schedule(0, 0, 0, 12, 0), &year);
        assert_eq!(months.len(), 12);
        assert!(months
            .iter()
            .all(|&t| crate::utc::rfc3339(t + D).ends_with("01T00:00:00Z") || t == *year.last().unwrap()));
    }

    #[test]
    fn a_snapshot_is_due_once_per_period_of_the_finest_count() {
        let hourly = schedule(24, 7, 0, 0, 0);
        assert!(due(&hourly, None, MONDAY));
        assert!(!due(&hourly, Some(MONDAY + 60), MONDAY + 59 * 60));
        assert!(due(&hourly, Some(MONDAY + 59 * 60), MONDAY + H));
        let weekly = schedule(0, 0, 4, 0, 0);
        assert!(!due(&weekly, Some(MONDAY), MONDAY + 6 * D));
        assert!(due(&weekly, Some(MONDAY), MONDAY + 7 * D));
        assert!(!due(&schedule(0, 0, 0, 0, 3), Some(MONDAY), MONDAY + 23 * H), "within only: daily");
    }
}
