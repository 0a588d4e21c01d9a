//! Small JSON state files that let an interrupted transfer resume: written atomically
//! (temporary file, rename), removed when the transfer completes.

use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};

/// Loads a journal; `None` when absent or unreadable (then the transfer starts over).
pub fn load<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Saves a journal atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(value).expect("journal serialises"))?;
    std::fs::rename(tmp, path)
}

/// Removes a journal.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Where push journals live: `$XDG_STATE_HOME/nanofs/push` or `~/.local/state/nanofs/push`
/// (the source may be read-only, so nothing is written beside it).
pub fn push_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("nanofs").join("push")
}
