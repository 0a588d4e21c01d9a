//! Telling the kernel which names changed behind its back.
//!
//! A FUSE mount lets the kernel cache lookups for a second, the misses too: `rsync` looks
//! every new name up three times before it exists, and a cached miss saves the later
//! round trips. The kernel knows of every change made through the mount. The other
//! front-ends (the HTTP sidecar, the control socket) run their engine calls in
//! `Volume::foreign`: each directory entry their changes add, replace or delete is noted
//! by the change that commits it (`Txn`), on the calling thread, and announced to the
//! observer when the call returns. By then the call holds no lock of the volume, which
//! matters: dropping an entry takes the kernel's lock of its directory, and a request
//! through the mount may hold that lock while it waits for the volume.

use super::Volume;
use crate::ids::Ino;
use std::cell::RefCell;
use std::sync::Arc;

/// A directory and a name in it.
type Entry = (Ino, Vec<u8>);

/// Receives `(directory, name)` of each entry changed outside the mount.
pub type EntryObserver = Arc<dyn Fn(Ino, &[u8]) + Send + Sync>;

thread_local! {
    /// Entries changed by this thread's current foreign call; `None` outside one.
    static CHANGED: RefCell<Option<Vec<Entry>>> = const { RefCell::new(None) };
}

/// Whether this thread is in a foreign call, so its changes must be noted.
pub(crate) fn noting() -> bool {
    CHANGED.with(|c| c.borrow().is_some())
}

/// Notes entries that a committed change added, replaced or deleted.
pub(crate) fn note(entries: Vec<(Ino, Vec<u8>)>) {
    CHANGED.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.extend(entries);
        }
    });
}

impl Volume {
    /// Where changes made outside the mount are announced (set once, by the mount).
    pub fn set_entry_observer(&self, observer: EntryObserver) {
        if self.entry_observer.set(observer).is_err() {
            tracing::warn!("an entry observer was already set; the new one is ignored");
        }
    }

    /// Runs `f`, an engine call of a front-end other than the mount, and announces the
    /// entries it changed once it returns (see the module docs).
    pub fn foreign<T>(&self, f: impl FnOnce() -> T) -> T {
        let outermost = CHANGED.with(|c| {
            let mut c = c.borrow_mut();
            let outermost = c.is_none();
            if outermost {
                *c = Some(Vec::new());
            }
            outermost
        });
        if !outermost {
            return f();
        }
        // Taken back even if `f` unwinds, so the thread is not left noting.
        struct Scope;
        impl Drop for Scope {
            fn drop(&mut self) {
                CHANGED.with(|c| c.borrow_mut().take());
            }
        }
        let scope = Scope;
        let result = f();
        let changed = CHANGED.with(|c| c.borrow_mut().take()).unwrap_or_default();
        drop(scope);
        if let Some(observer) = self.entry_observer.get() {
            for (dir, name) in changed {
                observer(dir, &name);
            }
        }
        result
    }
}
