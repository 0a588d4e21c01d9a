//! The audit trail: every security-relevant act (logins, tokens, share links, roles,
//! galleries, deletes over HTTP, key slots, rotation, erasure) appended to a hash chain
//! inside the volume (docs/operations.md).
//!
//! Record `n` lives in `meta` under `audit/` + `n` (big-endian), sealed like every other
//! record, and carries the BLAKE2b-256 of record `n - 1` as stored (`prev`). The head
//! (`audit-head`: the last number and its hash) is written in the same batch as each
//! record. So `verify` finds a record edited without the key (it no longer opens), one
//! edited with the key (the next record's `prev` no longer matches), one deleted (a gap in
//! the numbers) and the last ones deleted (the head names a record that is not there).
//! Someone holding the volume key could rewrite the whole chain: the head hash that
//! `verify` prints, kept elsewhere, is the anchor against that.

use super::error::Result;
use super::Volume;
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};

const PREFIX: &[u8] = b"audit/";
const HEAD: &[u8] = b"audit-head";

/// An act to record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What happened: `login`, `login.failed`, `token.create`, `share.open`, `delete`, ...
    pub action: String,
    /// Who did it: a user name, `token:ID`, `link:ID`, or `admin` (the volume's owner at
    /// the command line).
    pub actor: String,
    /// The client's address, for acts over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What it was done to: a path, a gallery id, a user, a token id, a key slot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// More facts, short (a role given, why a login failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Users whom `target` or `detail` name (`about`): those fields are stored sealed under
    /// each one's key (`personal`). Never stored itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub about: Vec<String>,
}

impl AuditEvent {
    /// An event of `action` by `actor` on `target`.
    pub fn new(action: &str, actor: impl Into<String>, target: impl Into<String>) -> Self {
        Self { action: action.into(), actor: actor.into(), target: target.into(), ..Self::default() }
    }

    /// The same event with the client's `address`.
    #[must_use]
    pub fn from_address(mut self, address: Option<std::net::IpAddr>) -> Self {
        self.address = address.map(|a| a.to_string());
        self
    }

    /// The same event with `detail`.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The same event, saying that its target or detail names user `name`.
    #[must_use]
    pub fn about(mut self, name: impl Into<String>) -> Self {
        self.about.push(name.into());
        self
    }

    /// Whether the actor is a user: not `admin`, `retention`, or a `kind:ID` (user names
    /// have no colon).
    fn actor_is_person(&self) -> bool {
        !self.actor.is_empty() && !self.actor.contains(':') && !["admin", "retention"].contains(&self.actor.as_str())
    }
}

/// A record of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its number, from 0, without gaps.
    pub seq: u64,
    /// When, in Unix milliseconds.
    pub at: i64,
    /// BLAKE2b-256 of the previous record as stored, hex (zeros for the first).
    pub prev: String,
    /// The act.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Tags of the users whose sealed fields the record holds (filled when read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persons: Vec<String>,
}

/// The end of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditHead {
    /// Number of the last record.
    seq: u64,
    /// Its hash.
    #[serde(with = "hex32")]
    hash: [u8; 32],
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerdict {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record, hex: keep it elsewhere to anchor the chain.
    pub head: String,
    /// The first break, if any: the record's number and what is wrong.
    pub broken: Option<(u64, String)>,
}

fn hash(stored_plain: &[u8]) -> [u8; 32] {
    let h = blake2b_simd::Params::new().hash_length(32).personal(b"nanofs-audit").hash(stored_plain);
    h.as_bytes().try_into().expect("32 bytes")
}

fn key(seq: u64) -> Vec<u8> {
    [PREFIX, &seq.to_be_bytes()[..]].concat()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Volume {
    /// Appends `event` to the audit trail, durably. A read-only volume records nothing (the
    /// act is logged instead).
    pub fn audit(&self, event: AuditEvent) -> Result<()> {
        if self.read_only || !self.config().audit.enabled {
            if self.read_only {
                tracing::info!(action = %event.action, actor = %event.actor, target = %event.target, "not audited: the volume is read-only");
            }
            return Ok(());
        }
        let event = self.seal_persons(event)?;
        let mut txn = self.txn()?;
        let head: Option<AuditHead> = self.record(HEAD)?;
        let (seq, prev) = head.map_or((0, [0u8; 32]), |h| (h.seq + 1, h.hash));
        let record = AuditRecord { seq, at: now_ms(), prev: crate::ids::hex(&prev), event, persons: Vec::new() };
        let plain = serde_json::to_vec(&record).expect("a record serialises");
        let k = key(seq);
        txn.batch.put(Cf::Meta, &k, &self.meta.seal(Cf::Meta.name(), &k, &plain));
        let head = serde_json::to_vec(&AuditHead { seq, hash: hash(&plain) }).expect("the head serialises");
        txn.batch.put(Cf::Meta, HEAD, &self.meta.seal(Cf::Meta.name(), HEAD, &head));
        txn.commit(Durability::Synced)?;
        crate::metrics::get().audit_records.inc();
        Ok(())
    }

    /// `audit`, with a failure logged rather than returned: for acts that must not fail
    /// because their record could not be written (a refused login).
    pub fn audit_or_log(&self, event: AuditEvent) {
        let action = event.action.clone();
        if let Err(e) = self.audit(event) {
            tracing::error!(%action, error = %e, "cannot append to the audit trail");
        }
    }

    /// The fields that name users, sealed under their keys: the actor and the client's
    /// address when the actor is a user, and a target or detail that names a user of
    /// `about`.
    fn seal_persons(&self, mut e: AuditEvent) -> Result<AuditEvent> {
        if e.actor_is_person() {
            let person = e.actor.clone();
            e.actor = self.seal_for_person(&person, &person)?;
            if let Some(a) = e.address.take() {
                e.address = Some(self.seal_for_person(&person, &a)?);
            }
        }
        for person in std::mem::take(&mut e.about) {
            for field in [&mut e.target, &mut e.detail] {
                if !person.is_empty() && field.contains(&person) {
                    *field = self.seal_for_person(&person, field)?;
                }
            }
        }
        Ok(e)
    }

    /// The records from `since` (Unix milliseconds) on, in order, with sealed fields opened
    /// (`(erased)` where their user was erased). A record that does not open is an error:
    /// `verify` says which.
    pub fn audit_records(&self, since: Option<i64>) -> Result<Vec<AuditRecord>> {
        let all = self.records::<AuditRecord>(PREFIX, PREFIX)?.into_iter().map(|(_, r)| r);
        all.filter(|r| since.is_none_or(|s| r.at >= s))
            .map(|mut r| {
                let e = &mut r.event;
                let mut fields: Vec<&mut String> = vec![&mut e.actor, &mut e.target, &mut e.detail];
                fields.extend(e.address.as_mut());
                for f in fields {
                    let mut tag = None;
                    *f = self.open_for_person(f, &mut tag)?;
                    r.persons.extend(tag.filter(|t| !r.persons.contains(t)));
                }
                Ok(r)
            })
            .collect()
    }

    /// Walks the whole chain and names the first break.
    pub fn audit_verify(&self) -> Result<AuditVerdict> {
        let mut expected_seq = 0u64;
        let mut prev = [0u8; 32];
        let mut records = 0u64;
        let broken = |seq: u64, why: String, records: u64, prev: &[u8; 32]| {
            Ok(AuditVerdict { records, head: crate::ids::hex(prev), broken: Some((seq, why)) })
        };
        for kv in self.store.scan(Cf::Meta, PREFIX, PREFIX) {
            let (k, v) = kv?;
            let Some(seq) = k.get(PREFIX.len()..).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_be_bytes)
            else {
                return broken(expected_seq, "a record with a malformed key".into(), records, &prev);
            };
            if seq != expected_seq {
                let why = format!("records {expected_seq} to {} are missing", seq - 1);
                return broken(expected_seq, why, records, &prev);
            }
            let Ok(plain) = self.meta.open(Cf::Meta.name(), &k, &v) else {
                return broken(seq, "the record does not open: altered or damaged".into(), records, &prev);
            };
            let rec: AuditRecord = match serde_json::from_slice(&plain) {
                Ok(r) => r,
                Err(e) => return broken(seq, format!("the record does not parse: {e}"), records, &prev),
            };
            if rec.seq != seq {
                return broken(seq, format!("the record says it is number {}", rec.seq), records, &prev);
            }
            if rec.prev != crate::ids::hex(&prev) {
                let why = if seq == 0 {
                    "the first record names a predecessor".to_string()
                } else {
                    format!("the hash of record {} does not match: it was altered", seq - 1)
                };
                return broken(seq, why, records, &prev);
            }
            prev = hash(&plain);
            records += 1;
            expected_seq = seq + 1;
        }
        let head: Option<AuditHead> = match self.record(HEAD) {
            Ok(h) => h,
            Err(_) => return broken(expected_seq, "the chain's head does not open".into(), records, &prev),
        };
        match head {
            None if records == 0 => {}
            None => return broken(expected_seq, "the chain's head is missing".into(), records, &prev),
            Some(h) if records == 0 || h.seq != expected_seq - 1 => {
                let why = format!("the head names record {} but the chain ends before it: records were deleted", h.seq);
                return broken(expected_seq, why, records, &prev);
            }
            Some(h) if h.hash != prev => {
                return broken(h.seq, "the last record does not match the head: it was altered".into(), records, &prev)
            }
            Some(_) => {}
        }
        Ok(AuditVerdict { records, head: crate::ids::hex(&prev), broken: None })
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::ids::hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let bytes = crate::ids::unhex(&s).ok_or_else(|| serde::de::Error::custom("not hex"))?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("not 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::tests_support::scratch_volume;

    fn events(vol: &Volume, n: usize) {
        for i in 0..n {
            vol.audit(AuditEvent::new("login.failed", format!("user{i}"), "").detail("wrong password")).unwrap();
        }
    }

    #[test]
    fn a_chain_verifies_and_every_kind_of_tampering_is_named() {
        let (_tmp, vol) = scratch_volume();
        assert_eq!(
            vol.audit_verify().unwrap(),
            AuditVerdict { records: 0, head: crate::ids::hex(&[0; 32]), broken: None }
        );
        events(&vol, 5);
        let good = vol.audit_verify().unwrap();
        assert_eq!((good.records, good.broken.clone()), (5, None));
        let recs = vol.audit_records(None).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(recs[3].event.actor, "user3");

        // Edited with the key: record 2 says another user; record 3 no longer follows.
        let mut edited = recs[2].clone();
        edited.event.actor = "someone-else".into();
        let plain = serde_json::to_vec(&edited).unwrap();
        let put = |k: &[u8], v: &[u8]| {
            let mut b = vol.store.batch();
            b.put(Cf::Meta, k, v);
            vol.store.commit(b, Durability::Synced).unwrap();
        };
        let original = vol.store.get(Cf::Meta, &key(2)).unwrap().unwrap();
        put(&key(2), &vol.meta.seal(Cf::Meta.name(), &key(2), &plain));
        let v = vol.audit_verify().unwrap();
        assert_eq!(v.broken.as_ref().map(|b| b.0), Some(3), "{v:?}");
        assert!(v.broken.unwrap().1.contains("record 2"));
        put(&key(2), &original);
        assert_eq!(vol.audit_verify().unwrap().broken, None, "restored");

        // Edited without the key: it no longer opens.
        let mut flipped = original.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        put(&key(2), &flipped);
        assert!(vol.audit_verify().unwrap().broken.unwrap().1.contains("does not open"));
        put(&key(2), &original);

        // Deleted in the middle, and at the end.
        let del = |k: &[u8]| {
            let mut b = vol.store.batch();
            b.delete(Cf::Meta, k);
            vol.store.commit(b, Durability::Synced).unwrap();
        };
        let third = vol.store.get(Cf::Meta, &key(3)).unwrap().unwrap();
        del(&key(3));
        let v = vol.audit_verify().unwrap();
        assert_eq!(v.broken, Some((3, "records 3 to 3 are missing".into())));
        put(&key(3), &third);
        del(&key(4));
        let v = vol.audit_verify().unwrap();
        assert!(v.broken.unwrap().1.contains("records were deleted"), "tail deleted");
    }
}
