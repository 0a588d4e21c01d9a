//! Fault injection for the crash tests: with `NANOFS_CRASH_AT=<point>` in its environment,
//! the process aborts when it reaches that point, as abruptly as `kill -9` (no destructor,
//! no flush). The points sit between the steps whose order crash safety depends on.

use std::sync::OnceLock;

/// Aborts the process if `NANOFS_CRASH_AT` names `point`.
pub(crate) fn crash_point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var("NANOFS_CRASH_AT").ok()).as_deref() == Some(point) {
        tracing::warn!(point, "crash point reached: aborting");
        std::process::abort();
    }
}
