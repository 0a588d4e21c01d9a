//! What the volume holds about a person, for their rights under the GDPR: `nanofs user
//! export` writes all of it (account, memberships, comments, annotations, reactions, the
//! files they uploaded, the events and audit records about them) to a directory as JSON
//! plus files; `nanofs user erase` removes it. docs/operations.md, "Erasing a user", says
//! exactly what remains afterwards and where.
//!
//! Erasure works in an order that can be run again after a crash: what the person owns
//! is deleted or transferred first (by the administrator's choice), then their
//! memberships, sessions and account go, their discussion is anonymized (a comment with
//! replies stays as a tombstone without author or text so the thread holds), their events
//! lose their name, their tokens are revoked, and last their person key is destroyed,
//! which leaves every audit field that named them sealed for good (`volume::personal`).
//! Copies of their deleted files in snapshots, where the data was only theirs, are deleted
//! too, and a collection removes the sealed bodies from disk. The audit trail gets a
//! receipt that names no one.

use super::collab::{Annotation, Comment, Reaction, ANNOTATION, COMMENT, REACTION};
use super::error::{Error, Result};
use super::events::{Event, LOG_PREFIX};
use super::items::{ItemRecord, COLLAB_PREFIX, ITEM_PREFIX};
use super::{Galleries, Gallery};
use crate::ids::{ChunkId, Ino};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

/// What happens to what an erased user owns (galleries, files they uploaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owned {
    /// Their uploads are deleted for good (with their copies in snapshots); the galleries
    /// they own stop being shared (the files others added there stay).
    Delete,
    /// Galleries and uploads pass to this user.
    TransferTo(String),
}

/// What `user_export` wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportSummary {
    /// The user.
    pub user: String,
    /// Galleries they belong to.
    pub memberships: usize,
    /// Their comments.
    pub comments: usize,
    /// Their annotations.
    pub annotations: usize,
    /// Their reactions.
    pub reactions: usize,
    /// Files they uploaded (copied under `files/`).
    pub uploads: usize,
    /// Bytes of those files.
    pub upload_bytes: u64,
    /// Gallery events they caused or that name them.
    pub events: usize,
    /// Audit records about them.
    pub audit_records: usize,
    /// Trash entries they deleted.
    pub trash_entries: usize,
}

/// The receipt of an erasure, kept in the audit trail: counts only, no name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// A random id for the receipt (the audit record's target).
    pub receipt: String,
    /// `deleted` or `transferred`.
    pub owned: String,
    /// Files they uploaded, deleted for good.
    pub files_deleted: u64,
    /// Copies of those files deleted from snapshots.
    pub snapshot_copies_deleted: u64,
    /// Files they uploaded, passed to another user.
    pub files_transferred: u64,
    /// Galleries they owned that stopped being shared.
    pub galleries_ended: u64,
    /// Galleries they owned, passed to another user.
    pub galleries_transferred: u64,
    /// Comments deleted or left as anonymous tombstones.
    pub comments_anonymized: u64,
    /// Annotations deleted.
    pub annotations_deleted: u64,
    /// Reactions deleted.
    pub reactions_deleted: u64,
    /// Gallery events that lost their name.
    pub events_anonymized: u64,
    /// Trash entries that lost who deleted them.
    pub trash_entries_anonymized: u64,
    /// API tokens acting as them, revoked.
    pub tokens_revoked: u64,
    /// Whether a person key was destroyed (audit fields naming them are sealed for good).
    pub person_key_destroyed: bool,
    /// Sealed bytes of chunks freed by the final collection.
    pub stored_bytes_freed: u64,
    /// Number of the receipt's audit record.
    pub audit_seq: u64,
    /// Hash of the audit chain's head after the receipt, to keep elsewhere.
    pub audit_head: String,
}

/// Bytes read from a file at a time while exporting.
const READ_BLOCK: u32 = 1 << 20;

/// Whether a `gx/` key is of `kind` (`c/`, `a/`, `r/`): `gx/` + ino (8) + `/` + kind.
fn collab_kind(key: &[u8], kind: &[u8]) -> bool {
    key.len() > 14 && &key[12..14] == kind
}

/// The item a `gx/` key belongs to.
fn collab_item(key: &[u8]) -> Option<Ino> {
    key.get(COLLAB_PREFIX.len()..COLLAB_PREFIX.len() + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .map(Ino)
}

/// Replaces every string equal to `name` in `v` with null; returns whether any was.
fn scrub(v: &mut Value, name: &str) -> bool {
    match v {
        Value::String(s) if s == name => {
            *v = Value::Null;
            true
        }
        Value::Array(a) => a.iter_mut().fold(false, |acc, x| scrub(x, name) | acc),
        Value::Object(o) => o.values_mut().fold(false, |acc, x| scrub(x, name) | acc),
        _ => false,
    }
}

fn write_json(dir: &Path, file: &str, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(v).map_err(|e| Error::Rejected(e.to_string()))?;
    std::fs::write(dir.join(file), text).map_err(io)
}

fn io(e: std::io::Error) -> Error {
    Error::Volume(crate::volume::Error::Io(e))
}

/// An upload of the user: the item, its gallery, where it is.
struct Upload {
    ino: Ino,
    gallery: Gallery,
    folder: Ino,
    name: String,
}

impl Galleries {
    /// The files `name` uploaded, wherever they are now.
    fn uploads_of(&self, name: &str) -> Result<Vec<Upload>> {
        let mine: Vec<(Ino, ItemRecord)> = self
            .scan::<ItemRecord>(ITEM_PREFIX)?
            .into_iter()
            .filter(|(_, r)| r.author.as_deref() == Some(name))
            .filter_map(|(k, r)| super::hook::item_ino(&k).map(|ino| (ino, r)))
            .collect();
        let mut by_gallery: HashMap<String, Vec<Ino>> = HashMap::new();
        for (ino, r) in mine {
            by_gallery.entry(r.gallery).or_default().push(ino);
        }
        let mut out = Vec::new();
        for (id, inos) in by_gallery {
            let Ok(gallery) = self.gallery(&id) else { continue };
            let wanted: HashSet<Ino> = inos.into_iter().collect();
            for (folder, e) in self.vol.files_below(gallery.dir())? {
                if wanted.contains(&e.ino) {
                    let name = String::from_utf8_lossy(&e.name).into_owned();
                    out.push(Upload { ino: e.ino, gallery: gallery.clone(), folder, name });
                }
            }
        }
        out.sort_by_key(|u| u.ino);
        Ok(out)
    }

    /// Every comment, annotation and reaction, with its key.
    #[allow(clippy::type_complexity)]
    fn discussion_records(
        &self,
    ) -> Result<(Vec<(Vec<u8>, Comment)>, Vec<(Vec<u8>, Annotation)>, Vec<(Vec<u8>, Reaction)>)> {
        let (mut c, mut a, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for key in self.vol.record_keys(COLLAB_PREFIX)? {
            if collab_kind(&key, COMMENT) {
                c.extend(self.vol.record::<Comment>(&key)?.map(|v| (key.clone(), v)));
            } else if collab_kind(&key, ANNOTATION) {
                a.extend(self.vol.record::<Annotation>(&key)?.map(|v| (key.clone(), v)));
            } else if collab_kind(&key, REACTION) {
                r.extend(self.vol.record::<Reaction>(&key)?.map(|v| (key.clone(), v)));
            }
        }
        Ok((c, a, r))
    }

    /// Gallery events `name` caused or that name them, with their keys.
    fn events_about(&self, name: &str) -> Result<Vec<(Vec<u8>, Event)>> {
        Ok(self
            .scan::<Event>(LOG_PREFIX)?
            .into_iter()
            .filter(|(_, e)| e.actor.as_deref() == Some(name) || scrub(&mut e.data.clone(), name))
            .collect())
    }

    /// Writes everything the volume holds about user `name` to the new directory `out`:
    /// `account.json`, `memberships.json`, `comments.json`, `annotations.json`,
    /// `reactions.json`, `uploads.json` with the files under `files/GALLERY/PATH`,
    /// `events.json`, `audit.json`, `trash.json`, and `summary.json`.
    pub fn user_export(&self, name: &str, out: &Path) -> Result<ExportSummary> {
        let user = self.require_user(name)?;
        if out.exists() && std::fs::read_dir(out).map_err(io)?.next().is_some() {
            return Err(Error::Rejected(format!("{} exists and is not empty", out.display())));
        }
        std::fs::create_dir_all(out).map_err(io)?;
        let mut s = ExportSummary { user: name.into(), ..ExportSummary::default() };

        let tokens: Vec<Value> = self
            .vol
            .token_list()?
            .into_iter()
            .filter(|t| t.user.as_deref() == Some(name))
            .map(
                |t| json!({ "id": t.id, "name": t.name, "allow": t.allow, "created": t.created, "expires": t.expires }),
            )
            .collect();
        let sessions = self.sessions_of(name)?;
        write_json(
            out,
            "account.json",
            &json!({
                "name": user.name,
                "created": crate::utc::rfc3339(user.created),
                "password": "set; kept only as an Argon2id hash, which is not exported",
                "sessions": sessions, "tokens": tokens,
            }),
        )?;

        let galleries = self.galleries_of(name)?;
        let memberships: Vec<Value> = galleries
            .iter()
            .map(|g| {
                let path = self.vol.dir_path(g.dir()).unwrap_or_default();
                json!({ "gallery": g.id, "title": g.title, "path": path, "role": g.members.get(name).map(|r| r.as_str()) })
            })
            .collect();
        s.memberships = memberships.len();
        write_json(out, "memberships.json", &memberships)?;

        let (comments, annotations, reactions) = self.discussion_records()?;
        let comments: Vec<Comment> =
            comments.into_iter().map(|(_, c)| c).filter(|c| c.author.as_deref() == Some(name)).collect();
        let annotations: Vec<Annotation> =
            annotations.into_iter().map(|(_, a)| a).filter(|a| a.author.as_deref() == Some(name)).collect();
        let reactions: Vec<Value> = reactions
            .into_iter()
            .filter(|(_, r)| r.user == name)
            .map(|(k, r)| {
                let item = collab_item(&k).map(|i| i.0.to_string());
                json!({ "item": item, "emoji": r.emoji, "created": r.created })
            })
            .collect();
        (s.comments, s.annotations, s.reactions) = (comments.len(), annotations.len(), reactions.len());
        write_json(out, "comments.json", &comments)?;
        write_json(out, "annotations.json", &annotations)?;
        write_json(out, "reactions.json", &reactions)?;

        let mut uploads = Vec::new();
        for u in self.uploads_of(name)? {
            let gallery_path = self.vol.dir_path(u.gallery.dir())?;
            let folder = self.vol.dir_path(u.folder)?;
            let inside = folder.strip_prefix(&gallery_path).unwrap_or("").trim_matches('/');
            let rel = if inside.is_empty() { u.name.clone() } else { format!("{inside}/{}", u.name) };
            let local = out.join("files").join(&u.gallery.id).join(&rel);
            let size = self.copy_out(u.ino, &local)?;
            s.uploads += 1;
            s.upload_bytes += size;
            uploads.push(json!({
                "item": u.ino.0.to_string(), "gallery": u.gallery.id, "title": u.gallery.title,
                "path": format!("{}/{}", folder.trim_end_matches('/'), u.name), "size": size,
                "file": format!("files/{}/{rel}", u.gallery.id),
            }));
        }
        write_json(out, "uploads.json", &uploads)?;

        let events: Vec<Value> = self
            .events_about(name)?
            .into_iter()
            .map(|(k, e)| {
                let gallery = String::from_utf8_lossy(&k[LOG_PREFIX.len()..k.len() - 9]).into_owned();
                json!({ "gallery": gallery, "event": e })
            })
            .collect();
        s.events = events.len();
        write_json(out, "events.json", &events)?;

        let tag = self.vol.person_tag(name);
        let audit: Vec<_> = self
            .vol
            .audit_records(None)?
            .into_iter()
            .filter(|r| r.persons.contains(&tag) || r.event.actor == name)
            .collect();
        s.audit_records = audit.len();
        write_json(out, "audit.json", &audit)?;

        let trash: Vec<_> = self.vol.trash_list()?.into_iter().filter(|t| t.by.as_deref() == Some(name)).collect();
        s.trash_entries = trash.len();
        write_json(out, "trash.json", &trash)?;
        write_json(out, "summary.json", &s)?;
        Ok(s)
    }

    /// Copies file `ino` to `local`, a block at a time; returns its size.
    fn copy_out(&self, ino: Ino, local: &Path) -> Result<u64> {
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut f = std::io::BufWriter::new(std::fs::File::create(local).map_err(io)?);
        let size = self.vol.getattr(ino)?.inode.size;
        let mut offset = 0;
        while offset < size {
            let block = self.vol.read(ino, offset, READ_BLOCK)?;
            if block.is_empty() {
                break;
            }
            f.write_all(&block).map_err(io)?;
            offset += block.len() as u64;
        }
        f.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        Ok(offset)
    }

    /// Erases user `name` (see the module docs); `owned` says what happens to what they
    /// own, and is required when they own anything.
    pub fn user_erase(&self, name: &str, owned: Option<&Owned>) -> Result<ErasureReceipt> {
        // An erasure cut short after the account went is finished by running it again:
        // the person key is still there then.
        let account = self.user(name)?.is_some();
        if !account && !self.vol.person_key_exists(name)? {
            return Err(Error::Rejected(format!("no user {name:?}")));
        }
        let galleries: Vec<Gallery> = self.gallery_list()?.into_iter().filter(|g| g.owner() == Some(name)).collect();
        let uploads = self.uploads_of(name)?;
        let owned = match owned {
            Some(o) => o,
            None if galleries.is_empty() && uploads.is_empty() => &Owned::Delete,
            None => {
                return Err(Error::Rejected(format!(
                    "{name} owns {} galleries and uploaded {} files: say --delete-owned or --transfer-to USER",
                    galleries.len(),
                    uploads.len()
                )))
            }
        };
        if let Owned::TransferTo(heir) = owned {
            if heir == name {
                return Err(Error::Rejected("transfer what they own to another user".into()));
            }
            self.require_user(heir)?;
        }
        let admin = super::admin::admin();
        let mut r = ErasureReceipt { receipt: super::random_id(8), ..ErasureReceipt::default() };

        // What they own: uploads first (their records go when a gallery ends), then galleries.
        let mut erased_chunks: HashSet<ChunkId> = HashSet::new();
        match owned {
            Owned::Delete => {
                r.owned = "deleted".into();
                for u in &uploads {
                    erased_chunks.extend(self.vol.file_chunks(u.ino)?);
                    // For good: an erasure does not leave the files in the trash.
                    match self.vol.unlink_by(u.folder, u.name.as_bytes(), None) {
                        Ok(()) => r.files_deleted += 1,
                        // Deleted meanwhile.
                        Err(crate::volume::Error::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                self.remove_thumbnails(&uploads.iter().map(|u| u.ino).collect::<Vec<_>>());
                for g in &galleries {
                    self.gallery_delete(&g.id, &admin)?;
                    r.galleries_ended += 1;
                }
            }
            Owned::TransferTo(heir) => {
                r.owned = "transferred".into();
                self.update(|b| {
                    for u in &uploads {
                        let key = super::items::item_key(u.ino);
                        if let Some(mut item) = self.vol.record::<ItemRecord>(&key)? {
                            item.author = Some(heir.clone());
                            b.put(&key, &item);
                        }
                    }
                    Ok(())
                })?;
                r.files_transferred = uploads.len() as u64;
                for g in &galleries {
                    self.gallery_transfer(&g.id, &admin, heir)?;
                    r.galleries_transferred += 1;
                }
            }
        }
        r.snapshot_copies_deleted = self.vol.erase_snapshot_copies(&erased_chunks)?;

        // Memberships, sessions and the account (their removal is an event, anonymized below).
        if account {
            self.user_remove(name)?;
        }
        // Their discussion: tombstones where others replied, gone elsewhere.
        let (comments, annotations, reactions) = self.discussion_records()?;
        let replied: HashSet<String> = comments.iter().filter_map(|(_, c)| c.parent.clone()).collect();
        self.update(|b| {
            for (k, mut c) in comments.into_iter().filter(|(_, c)| c.author.as_deref() == Some(name)) {
                if replied.contains(&c.id) {
                    c.author = None;
                    c.text.clear();
                    c.deleted = true;
                    b.put(&k, &c);
                } else {
                    b.delete(&k);
                }
                r.comments_anonymized += 1;
            }
            for (k, _) in annotations.into_iter().filter(|(_, a)| a.author.as_deref() == Some(name)) {
                b.delete(&k);
                r.annotations_deleted += 1;
            }
            for (k, _) in reactions.into_iter().filter(|(_, x)| x.user == name) {
                b.delete(&k);
                r.reactions_deleted += 1;
            }
            for (k, mut e) in self.events_about(name)? {
                if e.actor.as_deref() == Some(name) {
                    e.actor = None;
                    if let Some(o) = e.data.as_object_mut() {
                        o.remove("text");
                    }
                }
                scrub(&mut e.data, name);
                b.put(&k, &e);
                r.events_anonymized += 1;
            }
            Ok(())
        })?;
        r.trash_entries_anonymized = self.vol.trash_forget_deleter(name)?;
        for t in self.vol.token_list()?.into_iter().filter(|t| t.user.as_deref() == Some(name)) {
            self.vol.token_revoke(&t.id)?;
            r.tokens_revoked += 1;
        }
        r.person_key_destroyed = self.vol.shred_person_key(name)?;
        // Old versions of the rewritten records leave the database files.
        self.vol.compact_records()?;
        r.stored_bytes_freed = self.vol.gc_purging(&erased_chunks)?.stored_bytes_deleted;

        let detail = serde_json::to_string(&r).expect("a receipt serialises");
        self.vol.audit(
            crate::volume::AuditEvent::new("user.erase", "admin", format!("receipt {}", r.receipt)).detail(detail),
        )?;
        let verdict = self.vol.audit_verify()?;
        r.audit_seq = verdict.records.saturating_sub(1);
        r.audit_head = verdict.head;
        tracing::info!(receipt = %r.receipt, "user erased");
        Ok(r)
    }
}
