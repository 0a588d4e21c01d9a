//! Shared galleries: directories of the volume that a group of people share, with members
//! and roles, share links, comments, annotations, reactions and a per-gallery event log.
//!
//! Everything is a sealed JSON record in the `meta` family (keys below), written in the
//! same batch as the change it belongs to; namespace changes made through any front-end
//! reach `events::note` from the tree operations, so the mount, uploads and the API
//! produce the same items and events. docs/galleries.md is the user-facing description.
//!
//! Keys: `gallery/<id>`, `gitem/<ino>` (which gallery an item belongs to, its author),
//! `gx/<ino>/{c,a,r}/…` (comments, annotations, reactions of an item), `ginfo/<ino>`
//! (media facts), `gevent/<id>/<seq>`, `glink/<id>`, `user/<name>`, `session/<id>`.

pub mod admin;
pub mod bundle;
pub mod collab;
pub mod events;
pub mod items;
pub mod links;
pub mod roles;
pub mod users;

use super::error::{Error, Result};
use super::records::Kind;
use super::Volume;
use crate::crypto::keys::random_bytes;
use crate::ids::{hex, Ino};
use crate::store::{Batch, Cf, Durability};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

pub use events::{Event, LiveEvent, Since};
pub use roles::{allows, Action, Role};

const GALLERY_PREFIX: &[u8] = b"gallery/";

/// Who acts on a gallery: a user (or a share link's pseudo-user `link:<id>`) with a role,
/// or the volume's administrator (CLI, or an unbound API token), who acts as owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The name recorded as author; `None` for the administrator.
    pub name: Option<String>,
    /// The role in the gallery acted on.
    pub role: Role,
}

impl Actor {
    /// Refuses unless the role allows `action`.
    pub fn require(&self, action: Action) -> Result<()> {
        if allows(self.role, action) {
            Ok(())
        } else {
            Err(Error::Denied(format!("a {} may not {}", self.role.as_str(), action.describe())))
        }
    }

    /// Whether `author` is this actor.
    #[must_use]
    pub fn is(&self, author: Option<&str>) -> bool {
        self.name.is_some() && self.name.as_deref() == author
    }
}

/// A gallery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gallery {
    /// Public id (`g` and 16 hex digits).
    pub id: String,
    /// The directory.
    pub ino: u64,
    /// Shown to people.
    pub title: String,
    /// Unix seconds.
    pub created: i64,
    /// Members by name, the owner included (exactly one `Owner`).
    pub members: BTreeMap<String, Role>,
}

impl Gallery {
    /// The owner's name.
    #[must_use]
    pub fn owner(&self) -> Option<&str> {
        self.members.iter().find(|(_, r)| **r == Role::Owner).map(|(n, _)| n.as_str())
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> Ino {
        Ino(self.ino)
    }
}

/// In-memory state: gallery directories by inode (so a namespace change finds its gallery
/// without reading records) and the channel live events go out on.
pub(crate) struct GalleryState {
    pub roots: RwLock<HashMap<Ino, String>>,
    pub live: tokio::sync::broadcast::Sender<Arc<LiveEvent>>,
}

impl GalleryState {
    pub fn new() -> Self {
        Self { roots: RwLock::new(HashMap::new()), live: tokio::sync::broadcast::channel(4096).0 }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A random id of `n` bytes, hex.
pub fn random_id(n: usize) -> String {
    let mut b = vec![0u8; n];
    random_bytes(&mut b);
    hex(&b)
}

/// An id that sorts by creation order: a millisecond clock that never repeats or goes back
/// within the process (two ids in one millisecond get consecutive values), then 4 random
/// bytes, hex.
pub(crate) fn time_id() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_ms();
    let prev = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))).unwrap_or(now);
    format!("{:012x}{}", now.max(prev + 1), random_id(4))
}

/// Checks a user-chosen display text: not empty, at most `max` characters, no control
/// characters but newlines and tabs.
pub(crate) fn check_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::Rejected(format!("{what} is empty")));
    }
    if text.chars().count() > max {
        return Err(Error::Rejected(format!("{what} is longer than {max} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::Rejected(format!("{what} contains control characters")));
    }
    Ok(())
}

impl Volume {
    /// A sealed JSON record.
    pub(crate) fn meta_get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let Some(sealed) = self.store.get(Cf::Meta, key)? else { return Ok(None) };
        let plain = self.meta.open(Cf::Meta.name(), key, &sealed)?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| Error::CorruptMeta(format!("record {}: {e}", String::from_utf8_lossy(key))))
    }

    /// Seals `value` under `key` into `batch`.
    pub(crate) fn meta_put<T: Serialize>(&self, batch: &mut Batch<'_>, key: &[u8], value: &T) {
        let json = serde_json::to_vec(value).expect("records serialise");
        batch.put(Cf::Meta, key, &self.meta.seal(Cf::Meta.name(), key, &json));
    }

    /// Every record under `prefix`, in key order.
    pub(crate) fn meta_scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        for kv in self.store.scan(Cf::Meta, prefix, prefix) {
            let (k, v) = kv?;
            let plain = self.meta.open(Cf::Meta.name(), &k, &v)?;
            let rec = serde_json::from_slice(&plain)
                .map_err(|e| Error::CorruptMeta(format!("record {}: {e}", String::from_utf8_lossy(&k))))?;
            out.push((k.to_vec(), rec));
        }
        Ok(out)
    }

    /// Deletes every record under `prefix` in `batch`.
    pub(crate) fn meta_delete_prefix(&self, batch: &mut Batch<'_>, prefix: &[u8]) -> Result<()> {
        for kv in self.store.scan(Cf::Meta, prefix, prefix) {
            batch.delete(Cf::Meta, &kv?.0);
        }
        Ok(())
    }

    fn gallery_key(id: &str) -> Vec<u8> {
        [GALLERY_PREFIX, id.as_bytes()].concat()
    }

    /// Loads the gallery directories into memory (at open).
    pub(crate) fn load_gallery_roots(&self) -> Result<()> {
        let all: Vec<(Vec<u8>, Gallery)> = self.meta_scan(GALLERY_PREFIX)?;
        let mut roots = self.galleries.roots.write().expect("gallery roots");
        roots.clear();
        roots.extend(all.into_iter().map(|(_, g)| (g.dir(), g.id)));
        Ok(())
    }

    /// The gallery `id`.
    pub fn gallery(&self, id: &str) -> Result<Gallery> {
        self.meta_get(&Self::gallery_key(id))?.ok_or(Error::NotFound)
    }

    /// Every gallery, by title.
    pub fn gallery_list(&self) -> Result<Vec<Gallery>> {
        let mut all: Vec<Gallery> = self.meta_scan(GALLERY_PREFIX)?.into_iter().map(|(_, g)| g).collect();
        all.sort_by(|a, b| a.title.cmp(&b.title).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The galleries `user` is a member of.
    pub fn galleries_of(&self, user: &str) -> Result<Vec<Gallery>> {
        Ok(self.gallery_list()?.into_iter().filter(|g| g.members.contains_key(user)).collect())
    }

    /// The role of `user` in `gallery`, if a member.
    #[must_use]
    pub fn member_role(gallery: &Gallery, user: &str) -> Option<Role> {
        gallery.members.get(user).copied()
    }

    /// Marks the existing directory `path` as a gallery owned by `owner` (a user).
    pub fn gallery_create(&self, path: &str, title: &str, owner: &str) -> Result<Gallery> {
        let dir = self.resolve(path)?;
        self.gallery_create_at(dir, title, owner)
    }

    /// A new gallery directory named `name` under `[media.collaboration] galleries_root`,
    /// created by `owner` through the API (within the per-user limit).
    pub fn gallery_create_dir(&self, name: &str, title: &str, owner: &str) -> Result<Gallery> {
        check_text("the gallery name", name, 255)?;
        if name.starts_with('.') || name.contains('/') {
            return Err(Error::Rejected("a gallery name may not start with '.' or contain '/'".into()));
        }
        let root = self.config.media.collaboration.galleries_root.trim_end_matches('/').to_string();
        let path = format!("{root}/{name}");
        let (parent, leaf) = self.mkdir_parents(&path)?;
        let dir = self.create(parent, leaf.as_bytes(), Kind::Dir, 0o755, 0, 0, 0)?.ino;
        self.gallery_create_at(dir, title, owner)
    }

    fn gallery_create_at(&self, dir: Ino, title: &str, owner: &str) -> Result<Gallery> {
        check_text("the title", title, 200)?;
        self.user(owner)?.ok_or_else(|| Error::Rejected(format!("no user {owner:?}")))?;
        if self.getattr(dir)?.inode.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        let limit = self.config.media.collaboration.max_galleries_per_user as usize;
        let owned = self.gallery_list()?.iter().filter(|g| g.owner() == Some(owner)).count();
        if owned >= limit {
            return Err(Error::Limit(format!(
                "{owner} owns {owned} galleries already, the most allowed ([media.collaboration] max_galleries_per_user = {limit})"
            )));
        }
        let mut txn = self.txn()?;
        if let Some(g) = self.gallery_of_dir(&mut txn, dir)? {
            return Err(Error::Rejected(format!("the directory is inside gallery {g} already")));
        }
        if self.galleries.roots.read().expect("gallery roots").keys().any(|r| self.is_below(*r, dir)) {
            return Err(Error::Rejected("the directory holds a gallery already".into()));
        }
        let g = Gallery {
            id: format!("g{}", random_id(8)),
            ino: dir.0,
            title: title.trim().to_string(),
            created: now(),
            members: BTreeMap::from([(owner.to_string(), Role::Owner)]),
        };
        self.meta_put(&mut txn.batch, &Self::gallery_key(&g.id), &g);
        // Files already in the directory become items, without events (nobody listens yet).
        self.register_tree(&mut txn, &g.id, dir, None, false)?;
        txn.commit(Durability::Synced)?;
        self.galleries.roots.write().expect("gallery roots").insert(dir, g.id.clone());
        Ok(g)
    }

    /// Whether `ino` lies strictly below directory `top`.
    fn is_below(&self, ino: Ino, top: Ino) -> bool {
        let mut d = ino;
        for _ in 0..4096 {
            if d == Ino::ROOT {
                return false;
            }
            match self.parent_of(d) {
                Ok(p) if p == top => return true,
                Ok(p) => d = p,
                Err(_) => return false,
            }
        }
        false
    }

    /// Changes the title (owner).
    pub fn gallery_set_title(&self, id: &str, actor: &Actor, title: &str) -> Result<Gallery> {
        actor.require(Action::Administer)?;
        check_text("the title", title, 200)?;
        self.gallery_update(id, actor, "gallery.changed", |g| {
            g.title = title.trim().to_string();
            Ok(serde_json::json!({ "title": g.title }))
        })
    }

    /// Adds a member, changes a member's role (`Some`) or removes a member (`None`).
    /// Moderators manage everyone below owner; nobody changes the owner this way.
    pub fn gallery_set_member(&self, id: &str, actor: &Actor, user: &str, role: Option<Role>) -> Result<Gallery> {
        actor.require(Action::ManageMembers)?;
        if role == Some(Role::Owner) {
            return Err(Error::Rejected("ownership moves with a transfer, not a role change".into()));
        }
        if role.is_some() && self.user(user)?.is_none() {
            return Err(Error::Rejected(format!("no user {user:?}")));
        }
        self.gallery_update(id, actor, "member.changed", |g| {
            if g.members.get(user) == Some(&Role::Owner) {
                return Err(Error::Denied("the owner's role cannot be changed; transfer ownership instead".into()));
            }
            match role {
                Some(r) => g.members.insert(user.to_string(), r),
                None => g.members.remove(user),
            };
            Ok(serde_json::json!({ "user": user, "role": role.map(Role::as_str) }))
        })
    }

    /// Makes `user` (a member or not) the owner; the old owner becomes a moderator.
    pub fn gallery_transfer(&self, id: &str, actor: &Actor, user: &str) -> Result<Gallery> {
        actor.require(Action::Administer)?;
        if self.user(user)?.is_none() {
            return Err(Error::Rejected(format!("no user {user:?}")));
        }
        self.gallery_update(id, actor, "member.changed", |g| {
            let old = g.owner().map(str::to_string);
            if let Some(old) = &old {
                g.members.insert(old.clone(), Role::Moderator);
            }
            g.members.insert(user.to_string(), Role::Owner);
            Ok(serde_json::json!({ "user": user, "role": "owner", "previous_owner": old }))
        })
    }

    fn gallery_update(
        &self,
        id: &str,
        actor: &Actor,
        event: &str,
        change: impl FnOnce(&mut Gallery) -> Result<serde_json::Value>,
    ) -> Result<Gallery> {
        let mut txn = self.txn()?;
        let mut g = self.gallery(id)?;
        let data = change(&mut g)?;
        self.meta_put(&mut txn.batch, &Self::gallery_key(id), &g);
        txn.gallery_event(id, event, actor.name.clone(), None, data);
        txn.commit(Durability::Synced)?;
        Ok(g)
    }

    /// Ends sharing of a gallery: its members, links, comments, annotations, reactions
    /// and events are deleted; the directory and its files stay (owner).
    pub fn gallery_delete(&self, id: &str, actor: &Actor) -> Result<()> {
        actor.require(Action::Administer)?;
        let g = self.gallery(id)?;
        let mut txn = self.txn()?;
        self.purge_gallery(&mut txn, &g)?;
        txn.commit(Durability::Synced)?;
        self.galleries.roots.write().expect("gallery roots").remove(&g.dir());
        let gone = Event::ephemeral("gallery.deleted", actor.name.clone());
        let _ = self.galleries.live.send(Arc::new(LiveEvent::new(g.id.clone(), gone)));
        Ok(())
    }

    /// The gallery's records, in `txn`.
    pub(crate) fn purge_gallery(&self, txn: &mut super::Txn<'_>, g: &Gallery) -> Result<()> {
        for (k, item) in self.meta_scan::<items::ItemRecord>(items::ITEM_PREFIX)? {
            if item.gallery == g.id {
                if let Some(ino) = k.get(items::ITEM_PREFIX.len()..).and_then(|b| b.try_into().ok()) {
                    self.purge_item(txn, Ino(u64::from_be_bytes(ino)))?;
                }
            }
        }
        for link in self.links_of(&g.id)? {
            txn.batch.delete(Cf::Meta, &links::link_key(&link.id));
        }
        self.meta_delete_prefix(&mut txn.batch, &events::log_prefix(&g.id))?;
        txn.batch.delete(Cf::Meta, &Self::gallery_key(&g.id));
        Ok(())
    }

    /// The path of directory `dir` from the root (`/` for the root), found by walking up.
    pub fn dir_path(&self, dir: Ino) -> Result<String> {
        let mut parts = Vec::new();
        let mut d = dir;
        for _ in 0..4096 {
            if d == Ino::ROOT {
                parts.reverse();
                return Ok(format!("/{}", parts.join("/")));
            }
            let parent = self.parent_of(d)?;
            let name = self.name_in(parent, d)?.ok_or(Error::NotFound)?;
            parts.push(String::from_utf8_lossy(&name).into_owned());
            d = parent;
        }
        Err(Error::Invalid)
    }

    /// The name under which `dir` holds `ino`.
    pub(crate) fn name_in(&self, dir: Ino, ino: Ino) -> Result<Option<Vec<u8>>> {
        Ok(self.dir_entries(dir)?.into_iter().find(|e| e.ino == ino).map(|e| e.name))
    }

    /// Every entry of directory `dir`, in readdir order.
    pub(crate) fn dir_entries(&self, dir: Ino) -> Result<Vec<crate::volume::DirEntry>> {
        let mut all = Vec::new();
        loop {
            let cookie = all.last().map_or(0, |e: &crate::volume::DirEntry| e.cookie);
            let page = self.readdir(dir, cookie, 1024)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Every regular file below `top` (depth first) with the directory that holds it.
    pub(crate) fn files_below(&self, top: Ino) -> Result<Vec<(Ino, crate::volume::DirEntry)>> {
        let mut out = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            for e in self.dir_entries(d)? {
                match e.kind {
                    Kind::Dir => stack.push(e.ino),
                    Kind::File => out.push((d, e)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// The gallery of the innermost gallery directory at or above `dir`; `up` gives a
    /// directory's parent (`None`: not a directory, or gone).
    pub(crate) fn find_gallery(
        &self,
        dir: Ino,
        mut up: impl FnMut(Ino) -> Result<Option<Ino>>,
    ) -> Result<Option<String>> {
        if !self.has_galleries() {
            return Ok(None);
        }
        let mut d = dir;
        for _ in 0..4096 {
            if let Some(g) = self.gallery_root(d) {
                return Ok(Some(g));
            }
            if d == Ino::ROOT {
                return Ok(None);
            }
            match up(d)? {
                Some(p) => d = p,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The gallery whose directory is `dir`, if any.
    pub(crate) fn gallery_root(&self, dir: Ino) -> Option<String> {
        self.galleries.roots.read().expect("gallery roots").get(&dir).cloned()
    }

    /// Whether any gallery exists (the namespace hooks do nothing otherwise).
    pub(crate) fn has_galleries(&self) -> bool {
        !self.galleries.roots.read().expect("gallery roots").is_empty()
    }

    /// The live event channel (every gallery's events; receivers filter).
    #[must_use]
    pub fn gallery_events(&self) -> tokio::sync::broadcast::Receiver<Arc<LiveEvent>> {
        self.galleries.live.subscribe()
    }
}
