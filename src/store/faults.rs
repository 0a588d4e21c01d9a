//! Fault injection for the tests: with `NANOFS_STORE_FAULTS` in the environment, the
//! store's write paths fail at chosen calls, as a failing disk would make them fail.
//!
//! The value is a comma-separated list of `operation:kind@N` (the Nth call of that
//! operation fails, counting from 1) or `operation:kind@N+` (every call from the Nth on):
//!
//! - operations: `pack-write` (appending a body to a pack), `pack-sync` (`fdatasync` of a
//!   pack), `commit` (a RocksDB batch), `wal-sync` (syncing RocksDB's write-ahead log);
//! - kinds: `eio`, `enospc`, and for `pack-write` also `short` (a prefix of the body
//!   reaches the file, then the write fails with EIO).
//!
//! A commit with `Durability::Synced` counts as a `commit` and then a `wal-sync`. Faults
//! are injected before RocksDB is called, so a failed commit has written nothing.
//!
//! With `NANOFS_STORE_FAULTS_ARMED_BY=PATH`, calls count only while `PATH` exists, so a
//! test can set a file up first and then make the next commit fail, however many commits
//! the set-up took.
//!
//! The variables are read once; without them every check is one `OnceLock` load.

use super::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A store operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    PackWrite,
    PackSync,
    Commit,
    WalSync,
}

impl Op {
    const ALL: [Op; 4] = [Op::PackWrite, Op::PackSync, Op::Commit, Op::WalSync];

    fn name(self) -> &'static str {
        match self {
            Op::PackWrite => "pack-write",
            Op::PackSync => "pack-sync",
            Op::Commit => "commit",
            Op::WalSync => "wal-sync",
        }
    }
}

/// How an operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Eio,
    NoSpace,
    /// Only part of the bytes are written, then EIO.
    Short,
}

impl Fault {
    /// The error the store returns for this fault, the same one a real disk error becomes.
    pub(crate) fn error(self) -> Error {
        match self {
            Fault::Eio | Fault::Short => Error::Io(std::io::Error::from_raw_os_error(libc::EIO)),
            Fault::NoSpace => Error::NoSpace,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Rule {
    op: Op,
    fault: Fault,
    nth: u64,
    onward: bool,
}

struct Plan {
    rules: Vec<Rule>,
    armed_by: Option<std::path::PathBuf>,
    /// Calls so far, per operation (indexed as `Op::ALL`).
    calls: [AtomicU64; 4],
}

fn parse(spec: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("NANOFS_STORE_FAULTS: cannot parse {item:?} (want operation:kind@N or @N+)");
        let (op, rest) = item.split_once(':').ok_or_else(bad)?;
        let (kind, at) = rest.split_once('@').ok_or_else(bad)?;
        let op = Op::ALL.into_iter().find(|o| o.name() == op).ok_or_else(bad)?;
        let fault = match kind {
            "eio" => Fault::Eio,
            "enospc" => Fault::NoSpace,
            "short" if op == Op::PackWrite => Fault::Short,
            _ => return Err(bad()),
        };
        let (at, onward) = match at.strip_suffix('+') {
            Some(n) => (n, true),
            None => (at, false),
        };
        let nth = at.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        rules.push(Rule { op, fault, nth, onward });
    }
    Ok(rules)
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let spec = std::env::var("NANOFS_STORE_FAULTS").ok()?;
        // A test that mistypes its faults must not pass by testing nothing.
        let rules = parse(&spec).unwrap_or_else(|e| panic!("{e}"));
        tracing::warn!(spec, "store fault injection is on");
        let armed_by = std::env::var_os("NANOFS_STORE_FAULTS_ARMED_BY").map(Into::into);
        Some(Plan { rules, armed_by, calls: Default::default() })
    })
    .as_ref()
}

/// Counts a call of `op`; the fault to inject into it, if one is planned.
pub(crate) fn check(op: Op) -> Option<Fault> {
    let plan = plan()?;
    if plan.armed_by.as_ref().is_some_and(|p| !p.exists()) {
        return None;
    }
    let i = Op::ALL.iter().position(|o| *o == op).expect("every operation is listed");
    let n = plan.calls[i].fetch_add(1, Ordering::Relaxed) + 1;
    let rule = plan.rules.iter().find(|r| r.op == op && (n == r.nth || (r.onward && n > r.nth)))?;
    tracing::warn!(operation = op.name(), call = n, fault = ?rule.fault, "injecting a store fault");
    Some(rule.fault)
}

/// `Err` with the planned fault of `op`, for operations where a fault is all-or-nothing.
pub(crate) fn fail(op: Op) -> super::Result<()> {
    match check(op) {
        Some(f) => Err(f.error()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        let rules = parse("pack-write:short@3, pack-sync:eio@2,commit:enospc@5+").unwrap();
        assert_eq!(
            rules,
            [
                Rule { op: Op::PackWrite, fault: Fault::Short, nth: 3, onward: false },
                Rule { op: Op::PackSync, fault: Fault::Eio, nth: 2, onward: false },
                Rule { op: Op::Commit, fault: Fault::NoSpace, nth: 5, onward: true },
            ]
        );
        for bad in ["commit:short@1", "pack-write:eio@0", "disk:eio@1", "wal-sync:eio", "wal-sync@1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
