//! The registry of hidden directories of the root: names the root reaches without listing
//! them (like ZFS's `.zfs`), so `rsync`, `tar` and `du` of the mount skip them. Each keeps
//! its inode in `meta` under a key of its own rather than as a directory entry.
//!
//! The engine registers `.snapshots` and `.uploads`; modules beside it register theirs
//! (the gallery thumbnails) before the volume is served or checked.

use super::error::Result;
use super::records::{Inode, Kind};
use super::Volume;
use crate::ids::Ino;
use crate::store::{Cf, Durability};

/// A hidden directory: its name under the root and the `meta` key of its inode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hidden {
    name: &'static [u8],
    key: &'static [u8],
}

impl Volume {
    /// Reserves `name` under the root for a hidden directory whose inode `meta` keeps
    /// under `key` (u64 big-endian).
    pub fn register_hidden(&self, name: &'static [u8], key: &'static [u8]) {
        let mut hidden = self.hidden.write().expect("hidden names");
        if !hidden.iter().any(|h| h.name == name) {
            hidden.push(Hidden { name, key });
        }
    }

    fn hidden_key(&self, name: &[u8]) -> Option<&'static [u8]> {
        self.hidden.read().expect("hidden names").iter().find(|h| h.name == name).map(|h| h.key)
    }

    /// Whether `name` in `parent` is reserved (a hidden directory of the root).
    pub(crate) fn is_reserved_name(&self, parent: Ino, name: &[u8]) -> bool {
        parent == Ino::ROOT && self.hidden_key(name).is_some()
    }

    /// The hidden directory `name`, if it exists.
    pub fn hidden_dir(&self, name: &[u8]) -> Result<Option<Ino>> {
        self.hidden_key(name).map_or(Ok(None), |key| self.meta_ino(key))
    }

    /// Every hidden directory that exists (for `check`, which reaches them from the root).
    pub(crate) fn hidden_dirs(&self) -> Result<Vec<Ino>> {
        let keys: Vec<&[u8]> = self.hidden.read().expect("hidden names").iter().map(|h| h.key).collect();
        Ok(keys.into_iter().map(|k| self.meta_ino(k)).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect())
    }

    /// An inode number kept in `meta` under `key` (u64 BE), if set.
    pub(crate) fn meta_ino(&self, key: &[u8]) -> Result<Option<Ino>> {
        Ok(self.store.get(Cf::Meta, key)?.and_then(|v| v.try_into().ok()).map(|b| Ino(u64::from_be_bytes(b))))
    }

    /// The registered hidden directory `name`, made (mode 0700, owned by root) the first
    /// time it is needed.
    pub fn hidden_dir_or_create(&self, name: &'static [u8]) -> Result<Ino> {
        let key = self.hidden_key(name).ok_or(super::Error::NotFound)?;
        if let Some(d) = self.meta_ino(key)? {
            return Ok(d);
        }
        let mut txn = self.txn()?;
        if let Some(d) = self.meta_ino(key)? {
            return Ok(d);
        }
        let mut inode = Inode::new(Kind::Dir, 0o700, 0, 0);
        inode.parent = Ino::ROOT.0;
        let d = txn.create_inode(inode);
        txn.put_hidden_dir(key, name, d);
        txn.commit(Durability::Buffered)?;
        Ok(d)
    }

    /// The space of each hidden directory that exists, but the snapshots (whose walk
    /// would read every snapshot's tree, and whose chunks the live tree mostly shares).
    pub fn area_stats(&self) -> Result<Vec<super::AreaStats>> {
        let hidden: Vec<Hidden> = self.hidden.read().expect("hidden names").clone();
        let mut out = Vec::new();
        for h in hidden.into_iter().filter(|h| h.name != super::snapshot::SNAPSHOTS_NAME) {
            let Some(dir) = self.meta_ino(h.key)? else { continue };
            let s = self.path_stats(dir)?;
            out.push(super::AreaStats {
                name: String::from_utf8_lossy(h.name).into_owned(),
                files: s.files,
                logical_bytes: s.logical_bytes,
                stored_bytes: s.stored_bytes,
                exclusive_bytes: s.exclusive_bytes,
            });
        }
        Ok(out)
    }
}
