//! Administration of users and galleries from the command line: one serialisable request
//! per operation, answered by the mount daemon over its control socket or, when the
//! volume is not mounted, by opening it. The administrator acts as owner of every gallery.

use super::error::{Error, Result};
use super::users::Principal;
use super::{Actor, Galleries, Gallery, Role};
use crate::crypto::hybrid::{Identity, Recipient};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One administrative operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "admin", rename_all = "snake_case")]
pub enum AdminOp {
    /// Add a user.
    UserAdd { name: String, password: String },
    /// Set a user's password (ends their sessions).
    UserPasswd { name: String, password: String },
    /// Remove a user.
    UserRemove { name: String },
    /// List users.
    UserList,
    /// Write everything the volume holds about a user to a new directory.
    UserExport { name: String, out: std::path::PathBuf },
    /// Erase a user (GDPR); `owned` is required when they own anything.
    UserErase { name: String, owned: Option<super::privacy::Owned> },
    /// Make a directory a gallery.
    GalleryCreate { path: String, title: String, owner: String },
    /// Every gallery.
    GalleryList,
    /// One gallery with its members and links.
    GalleryShow { gallery: String },
    /// End sharing of a gallery (the files stay).
    GalleryDelete { gallery: String },
    /// Add, change or remove (`role: None`) a member.
    GalleryMember { gallery: String, user: String, role: Option<Role> },
    /// Transfer ownership.
    GalleryOwner { gallery: String, user: String },
    /// Write a gallery as a bundle encrypted to X-Wing recipients.
    GalleryExport { gallery: String, recipients: Vec<String>, out: std::path::PathBuf },
    /// Bring a bundle in as a new gallery (the identity's text travels over the root-only
    /// control socket, like a passphrase).
    GalleryImport { file: std::path::PathBuf, identity: String, path: String, owner: String },
    /// Create a live stream owned by a gallery (id or path) or by a volume path.
    StreamCreate { name: String, gallery: Option<String>, path: Option<String>, record: bool },
    /// Every stream.
    StreamList,
    /// One stream.
    StreamShow { name: String },
    /// Replace a stream's publish key (its publisher is cut off).
    StreamRevokeKey { name: String },
    /// Delete a stream (its recordings stay).
    StreamDelete { name: String },
}

impl AdminOp {
    /// The audit record of an operation that changes something (never a password).
    fn audit_event(&self) -> Option<crate::volume::AuditEvent> {
        use crate::volume::AuditEvent as E;
        let e = |action: &str, target: &str| E::new(action, "admin", target);
        Some(match self {
            AdminOp::UserAdd { name, .. } => e("user.add", name).about(name),
            AdminOp::UserPasswd { name, .. } => e("user.passwd", name).about(name),
            AdminOp::UserRemove { name } => e("user.remove", name).about(name),
            AdminOp::UserExport { name, .. } => e("user.export", name).about(name),
            // The erasure writes its own receipt, which names no one.
            AdminOp::UserErase { .. } => return None,
            AdminOp::GalleryCreate { path, owner, .. } => {
                e("gallery.create", path).detail(format!("owner {owner}")).about(owner)
            }
            AdminOp::GalleryDelete { gallery } => e("gallery.delete", gallery),
            AdminOp::GalleryMember { gallery, user, role } => match role {
                Some(r) => e("role.set", gallery).detail(format!("{user}: {}", r.as_str())).about(user),
                None => e("role.remove", gallery).detail(user.clone()).about(user),
            },
            AdminOp::GalleryOwner { gallery, user } => e("gallery.transfer", gallery).detail(user.clone()).about(user),
            AdminOp::GalleryExport { gallery, recipients, .. } => {
                e("gallery.export", gallery).detail(format!("{} recipients", recipients.len()))
            }
            AdminOp::GalleryImport { path, owner, .. } => {
                e("gallery.import", path).detail(format!("owner {owner}")).about(owner)
            }
            AdminOp::StreamCreate { name, .. } => e("stream.create", name),
            AdminOp::StreamRevokeKey { name } => e("stream.revoke_key", name),
            AdminOp::StreamDelete { name } => e("stream.delete", name),
            AdminOp::UserList | AdminOp::GalleryList | AdminOp::GalleryShow { .. } => return None,
            AdminOp::StreamList | AdminOp::StreamShow { .. } => return None,
        })
    }
}

/// The administrator, who acts as owner everywhere.
#[must_use]
pub fn admin() -> Actor {
    Actor { name: None, role: Role::Owner }
}

impl Galleries {
    /// A gallery by id, or by the volume path of its directory.
    pub fn gallery_by_id_or_path(&self, key: &str) -> Result<Gallery> {
        if key.starts_with('/') {
            let dir = self.vol.resolve(key)?;
            let id = self.gallery_root(dir).ok_or(Error::NotFound)?;
            self.gallery(&id)
        } else {
            self.gallery(key)
        }
    }

    /// A gallery as the API and the CLI show it.
    pub fn gallery_json(&self, g: &Gallery, principal: &Principal) -> Result<Value> {
        let path = self.vol.dir_path(g.dir()).unwrap_or_default();
        Ok(json!({
            "id": g.id, "title": g.title, "path": path, "owner": g.owner(),
            "created": crate::utc::rfc3339(g.created),
            "role": principal.role_in(g).map(Role::as_str),
            "members": g.members,
        }))
    }

    /// Runs an administrative operation.
    pub fn admin(&self, op: &AdminOp) -> Result<Value> {
        let done = self.admin_op(op)?;
        if let Some(event) = op.audit_event() {
            self.volume().audit_or_log(event);
        }
        Ok(done)
    }

    fn admin_op(&self, op: &AdminOp) -> Result<Value> {
        let a = admin();
        Ok(match op {
            AdminOp::UserAdd { name, password } => {
                self.user_add(name, password)?;
                json!({ "user": name })
            }
            AdminOp::UserPasswd { name, password } => {
                self.user_set_password(name, password)?;
                json!({ "user": name })
            }
            AdminOp::UserRemove { name } => {
                self.user_remove(name)?;
                json!({ "user": name })
            }
            AdminOp::UserList => json!(self.user_list()?),
            AdminOp::UserExport { name, out } => json!(self.user_export(name, out)?),
            AdminOp::UserErase { name, owned } => json!(self.user_erase(name, owned.as_ref())?),
            AdminOp::GalleryCreate { path, title, owner } => {
                let g = self.gallery_create(path, title, owner)?;
                self.gallery_json(&g, &Principal::Admin)?
            }
            AdminOp::GalleryList => {
                let all = self.gallery_list()?;
                Value::Array(all.iter().map(|g| self.gallery_json(g, &Principal::Admin)).collect::<Result<_>>()?)
            }
            AdminOp::GalleryShow { gallery } => {
                let g = self.gallery_by_id_or_path(gallery)?;
                let mut v = self.gallery_json(&g, &Principal::Admin)?;
                v["links"] = json!(self.link_list(&g, &a)?);
                v["items"] = json!(self.gallery_item_inos(&g)?.len());
                v
            }
            AdminOp::GalleryDelete { gallery } => {
                let g = self.gallery_by_id_or_path(gallery)?;
                self.gallery_delete(&g.id, &a)?;
                json!({ "deleted": g.id })
            }
            AdminOp::GalleryMember { gallery, user, role } => {
                let g = self.gallery_by_id_or_path(gallery)?;
                let g = self.gallery_set_member(&g.id, &a, user, *role)?;
                self.gallery_json(&g, &Principal::Admin)?
            }
            AdminOp::GalleryOwner { gallery, user } => {
                let g = self.gallery_by_id_or_path(gallery)?;
                let g = self.gallery_transfer(&g.id, &a, user)?;
                self.gallery_json(&g, &Principal::Admin)?
            }
            AdminOp::GalleryExport { gallery, recipients, out } => {
                let g = self.gallery_by_id_or_path(gallery)?;
                let recipients = recipients
                    .iter()
                    .map(|r| Recipient::parse(r).map_err(|e| Error::Rejected(format!("recipient {r:?}: {e}"))))
                    .collect::<Result<Vec<_>>>()?;
                // Written beside the target and renamed, so a failed export leaves no partial file.
                let tmp = out.with_extension("partial");
                let file = std::fs::File::create(&tmp)?;
                let report = self.gallery_export(&g, std::io::BufWriter::new(&file), &recipients);
                let report = report.and_then(|r| {
                    file.sync_all()?;
                    std::fs::rename(&tmp, out)?;
                    Ok(r)
                });
                if report.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                json!(report?)
            }
            AdminOp::GalleryImport { file, identity, path, owner } => {
                let identity = Identity::parse(identity).map_err(|e| Error::Rejected(format!("identity: {e}")))?;
                let input = std::fs::File::open(file)?;
                let (g, report) = self.gallery_import(std::io::BufReader::new(input), &identity, path, owner)?;
                let mut v = self.gallery_json(&g, &Principal::Admin)?;
                v["imported"] = json!(report);
                v
            }
            AdminOp::StreamCreate { name, gallery, path, record } => {
                let (s, key) = self.stream_create(name, gallery.as_deref(), path.as_deref(), *record, &a)?;
                let mut v = self.stream_json(&s);
                v["publish_key"] = json!(key);
                v
            }
            AdminOp::StreamList => Value::Array(self.stream_list()?.iter().map(|s| self.stream_json(s)).collect()),
            AdminOp::StreamShow { name } => self.stream_json(&self.stream(name)?),
            AdminOp::StreamRevokeKey { name } => {
                let key = self.stream_new_key(name)?;
                let mut v = self.stream_json(&self.stream(name)?);
                v["publish_key"] = json!(key);
                v
            }
            AdminOp::StreamDelete { name } => {
                self.stream_delete(name)?;
                json!({ "deleted": name })
            }
        })
    }
}
