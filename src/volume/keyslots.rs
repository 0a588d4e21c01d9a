//! Key changes that touch the engine: rotation to a new key epoch, and rekeying, which
//! re-seals every chunk of older epochs under the current key and then forgets the old keys.
//!
//! Adding and removing slots only rewrites the header (`Header::modify`) and needs no open
//! volume; rotation also switches the codec of the running engine, so while a volume is
//! mounted it goes through the daemon.

use super::chunks::ChunkCodec;
use super::error::{Error, Result};
use super::header::{Credential, Header};
use super::Volume;
use crate::ids::ChunkId;
use crate::store::Cf;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};

/// What a rotation did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RotateReport {
    /// The new current epoch.
    pub epoch: u32,
    /// Passphrase slots removed because their passphrases were not given.
    pub dropped_slots: Vec<u32>,
}

/// What a rekey did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RekeyReport {
    /// The current epoch, which every chunk now uses.
    pub epoch: u32,
    /// Chunks re-sealed.
    pub chunks_resealed: u64,
    /// Their stored bytes.
    pub bytes_resealed: u64,
    /// Chunks that could not be opened (damaged); their epochs' keys are kept.
    pub chunks_damaged: u64,
    /// Epochs whose keys were forgotten.
    pub epochs_forgotten: Vec<u32>,
}

impl Volume {
    /// Starts a new key epoch (see `Header::rotate`); `cred` must open a slot.
    pub fn rotate_key(&self, cred: &Credential) -> Result<RotateReport> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut ring = self.keyring.lock().expect("keyring lock");
        let mut next = ring.clone();
        let dropped = Header::modify(&self.dir, |h| {
            let (opened, slot) = h.unlock(cred)?;
            if opened.current_epoch() != ring.current_epoch() {
                return Err(Error::NotAVolume("the header changed under the running volume".into()));
            }
            h.rotate(&mut next, cred, slot)
        })?;
        super::faults::crash_point("rotate-header-stored");
        // Only now that the header holding the new key is durable may chunks use it.
        *ring = next;
        self.chunks.codec.set_keys(&ring);
        tracing::info!(epoch = ring.current_epoch(), "key rotated");
        let report = RotateReport { epoch: ring.current_epoch(), dropped_slots: dropped };
        drop(ring);
        self.audit_or_log(super::AuditEvent::new("key.rotate", "admin", format!("epoch {}", report.epoch)));
        Ok(report)
    }

    /// Re-seals every chunk of an older epoch under the current key, then forgets the keys
    /// no chunk uses. `progress(done, total)` is called as chunks are examined.
    pub fn rekey(&self, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<RekeyReport> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Held throughout: no rotation meanwhile, so the current epoch stays the target.
        let mut ring = self.keyring.lock().expect("keyring lock");
        let mut report = RekeyReport { epoch: ring.current_epoch(), ..Default::default() };
        let mut in_use = BTreeSet::from([ring.current_epoch()]);
        // Chunks sealed before the rotation may still sit in write windows: commit them so
        // the scan sees them. A second pass picks up chunks committed during the first.
        let mut seen: HashSet<ChunkId> = HashSet::new();
        for _pass in 0..2 {
            self.commit_all_windows()?;
            let ids: Vec<ChunkId> = self
                .store
                .scan(Cf::Refs, &[], &[])
                .filter_map(|kv| kv.ok().and_then(|(k, _)| ChunkId::from_slice(&k)))
                .filter(|id| !seen.contains(id))
                .collect();
            let total = ids.len() as u64;
            for (i, id) in ids.into_iter().enumerate() {
                seen.insert(id);
                progress(i as u64 + 1, total);
                let Some(envelope) = self.store.get_chunk(&id.0)? else { continue };
                match ChunkCodec::epoch_of(&envelope) {
                    Some(e) if e == report.epoch => continue,
                    Some(e) => match self.chunks.codec.reseal(&id, envelope) {
                        Ok(resealed) => {
                            // Under the commit lock, so GC cannot delete it meanwhile and
                            // this write bring it back.
                            let _commit = self.txn_state.lock().expect("commit lock");
                            if self.store.replace_chunk_body(&id.0, &resealed)? {
                                report.bytes_resealed += resealed.len() as u64;
                                report.chunks_resealed += 1;
                            }
                        }
                        Err(_) => {
                            tracing::error!(chunk = %id, epoch = e, "chunk does not open; its key is kept");
                            report.chunks_damaged += 1;
                            in_use.insert(e);
                        }
                    },
                    None => report.chunks_damaged += 1,
                }
            }
        }
        super::faults::crash_point("rekey-resealed");
        // The new bodies are durable before the header forgets the keys that open the old
        // copies; then the old copies go, from blob files and packs.
        self.store.sync_wal()?;
        self.store.reclaim_chunk_space()?;
        self.compact_packs(&std::collections::HashSet::new())?;
        super::faults::crash_point("rekey-old-copies-gone");
        let unused: Vec<u32> = ring.epochs().into_iter().filter(|e| !in_use.contains(e)).collect();
        if !unused.is_empty() {
            let mut next = ring.clone();
            next.forget(&unused);
            Header::modify(&self.dir, |h| {
                h.seal(&next);
                Ok(())
            })?;
            *ring = next;
            self.chunks.codec.set_keys(&ring);
            report.epochs_forgotten = unused;
        }
        tracing::info!(?report, "rekey finished");
        drop(ring);
        let detail = format!("epochs forgotten: {:?}", report.epochs_forgotten);
        self.audit_or_log(super::AuditEvent::new("key.rekey", "admin", "").detail(detail));
        Ok(report)
    }
}
