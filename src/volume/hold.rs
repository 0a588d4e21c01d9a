//! Legal holds: while a directory is under hold, nothing in it (at any depth) can be deleted,
//! replaced by a rename, or renamed away; adding files still works. The mount answers
//! `EPERM`, HTTP `423 Locked`, until the hold is lifted (docs/operations.md).
//!
//! A hold is a sealed record `hold/` + the directory's inode in `meta`; the set of held
//! inodes is kept in memory, so a delete with no hold anywhere costs one empty-set check,
//! and one with holds a walk up its directory's ancestors.

use super::audit::AuditEvent;
use super::error::{Error, Result};
use super::records::Kind;
use super::Volume;
use crate::ids::Ino;
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};

const PREFIX: &[u8] = b"hold/";

/// A hold on a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The directory's inode.
    pub ino: u64,
    /// Its path (now, when listed; when set, in the record).
    pub path: String,
    /// Why, for people (a matter number).
    pub reason: String,
    /// Unix seconds when it was set.
    pub since: i64,
}

fn key(ino: Ino) -> Vec<u8> {
    [PREFIX, &ino.0.to_be_bytes()[..]].concat()
}

impl Volume {
    /// The held directories, read at open.
    pub(crate) fn load_holds(&self) -> Result<()> {
        let held = self.records::<Hold>(PREFIX, PREFIX)?.into_iter().map(|(_, h)| Ino(h.ino)).collect();
        *self.holds.write().expect("holds") = held;
        Ok(())
    }

    /// Puts the directory at `path` under hold.
    pub fn hold_set(&self, path: &str, reason: &str) -> Result<Hold> {
        let ino = self.resolve(path)?;
        if self.load_inode(ino)?.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let since = crate::utc::now_secs();
        let hold = Hold { ino: ino.0, path: self.dir_path(ino)?, reason: reason.into(), since };
        let mut txn = self.txn()?;
        let k = key(ino);
        let json = serde_json::to_vec(&hold).expect("a hold serialises");
        txn.batch.put(Cf::Meta, &k, &self.meta.seal(Cf::Meta.name(), &k, &json));
        txn.commit(Durability::Synced)?;
        self.holds.write().expect("holds").insert(ino);
        self.audit_or_log(AuditEvent::new("hold.set", "admin", &hold.path).detail(reason));
        Ok(hold)
    }

    /// Lifts the hold on the directory at `path`.
    pub fn hold_release(&self, path: &str) -> Result<()> {
        let ino = self.resolve(path)?;
        let mut txn = self.txn()?;
        if !self.holds.read().expect("holds").contains(&ino) {
            return Err(Error::NotFound);
        }
        txn.batch.delete(Cf::Meta, &key(ino));
        txn.commit(Durability::Synced)?;
        self.holds.write().expect("holds").remove(&ino);
        self.audit_or_log(AuditEvent::new("hold.release", "admin", self.dir_path(ino)?));
        Ok(())
    }

    /// Every hold, with the directory's path as it is now.
    pub fn hold_list(&self) -> Result<Vec<Hold>> {
        let mut out = Vec::new();
        for (_, mut h) in self.records::<Hold>(PREFIX, PREFIX)? {
            if let Ok(p) = self.dir_path(Ino(h.ino)) {
                h.path = p;
            }
            out.push(h);
        }
        Ok(out)
    }

    /// `Held` if `dir` or a directory above it is under hold. Called with the commit lock
    /// held, so a hold set meanwhile is seen.
    pub(crate) fn refuse_if_held(&self, mut dir: Ino) -> Result<()> {
        let holds = self.holds.read().expect("holds");
        if holds.is_empty() {
            return Ok(());
        }
        loop {
            if holds.contains(&dir) {
                return Err(Error::Held);
            }
            if dir == Ino::ROOT {
                return Ok(());
            }
            dir = self.parent_of(dir)?;
        }
    }
}
