//! Decoded inode records, kept in memory.
//!
//! Nearly every request reads an inode (`lookup`, `getattr`, `setattr`, each change of a
//! directory), and reading one from the store is a RocksDB point lookup plus opening the
//! sealed record: a fifth of the daemon's time while `rsync` copies small files. Changes
//! update the cache after their batch commits, under the commit lock, so it follows the
//! store's order. A reader that missed fills the cache only if no change committed while
//! it read the store (the generation is unchanged); otherwise it might put back a record
//! that a change had just replaced.

use super::records::Inode;
use crate::ids::Ino;
use std::collections::HashMap;
use std::sync::Mutex;

/// Records kept; past this the cache starts over (a few MiB at most).
const CAPACITY: usize = 32 << 10;

#[derive(Default)]
pub(crate) struct InodeCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every committed change of inode records.
    generation: u64,
    records: HashMap<Ino, Inode>,
}

impl InodeCache {
    /// The cached record of `ino`, or the generation to pass to `fill` after reading it.
    pub fn get(&self, ino: Ino) -> Result<Inode, u64> {
        let inner = self.inner.lock().expect("inode cache lock");
        inner.records.get(&ino).cloned().ok_or(inner.generation)
    }

    /// Caches `inode` as read from the store, unless a change committed since `generation`.
    pub fn fill(&self, ino: Ino, inode: &Inode, generation: u64) {
        let mut inner = self.inner.lock().expect("inode cache lock");
        if inner.generation == generation {
            inner.insert(ino, inode.clone());
        }
    }

    /// Applies committed changes: `Some` is the new record, `None` a deleted inode.
    pub fn committed<'a>(&self, changes: impl IntoIterator<Item = (Ino, Option<&'a Inode>)>) {
        let mut inner = self.inner.lock().expect("inode cache lock");
        inner.generation += 1;
        for (ino, inode) in changes {
            match inode {
                Some(i) => inner.insert(ino, i.clone()),
                None => {
                    inner.records.remove(&ino);
                }
            }
        }
    }
}

impl Inner {
    fn insert(&mut self, ino: Ino, inode: Inode) {
        if self.records.len() >= CAPACITY && !self.records.contains_key(&ino) {
            self.records.clear();
        }
        self.records.insert(ino, inode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::records::Kind;

    #[test]
    fn a_fill_that_raced_a_commit_is_dropped() {
        let cache = InodeCache::default();
        let old = Inode::new(Kind::File, 0o644, 0, 0);
        let mut new = old.clone();
        new.size = 42;
        let seen = cache.get(Ino(7)).unwrap_err();
        // A change commits between the reader's store read and its fill.
        cache.committed([(Ino(7), Some(&new))]);
        cache.fill(Ino(7), &old, seen);
        assert_eq!(cache.get(Ino(7)).unwrap().size, 42);
        cache.committed([(Ino(7), None)]);
        let seen = cache.get(Ino(7)).unwrap_err();
        cache.fill(Ino(7), &new, seen);
        assert_eq!(cache.get(Ino(7)).unwrap(), new);
    }
}
