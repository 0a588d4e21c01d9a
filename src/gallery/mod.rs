//! Shared galleries: directories of the volume that a group of people share, with members
//! and roles, share links, comments, annotations, reactions and a per-gallery event log.
//!
//! The module sits beside the engine: everything is a sealed JSON record in the `meta`
//! family under its own prefixes (keys below), written in the same batch as the change it
//! belongs to. Namespace changes made through any front-end reach `hook` (a
//! `volume::Hook`), so the mount, uploads and the API produce the same items and events;
//! a failure there never fails the file operation (`check` repairs what it left out).
//! docs/galleries.md is the user-facing description.
//!
//! Keys: `gallery/<id>`, `gitem/<ino>` (which gallery an item belongs to, its author),
//! `gx/<ino>/{c,a,r}/…` (comments, annotations, reactions of an item), `ginfo/<ino>`
//! (media facts), `gevent/<id>/<seq>`, `glink/<id>`, `user/<name>`, `session/<id>`.

pub mod admin;
pub mod bundle;
mod check;
pub mod collab;
mod edits;
mod error;
pub mod events;
mod hook;
pub mod items;
pub mod links;
pub mod privacy;
pub mod roles;
pub mod streams;
pub mod users;

use crate::crypto::keys::random_bytes;
use crate::ids::{hex, Ino};
use crate::volume::{Durability, HookBatch, HookId, Kind, Volume};
use hook::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::{Error, Result};
pub use events::{Event, LiveEvent, Since};
pub use roles::{allows, Action, Role};

const GALLERY_PREFIX: &[u8] = b"gallery/";

/// Every `meta` prefix the galleries own (docs/format.md).
const PREFIXES: [&[u8]; 9] = [
    GALLERY_PREFIX,
    items::ITEM_PREFIX,
    items::COLLAB_PREFIX,
    items::INFO_PREFIX,
    events::LOG_PREFIX,
    links::LINK_PREFIX,
    users::USER_PREFIX,
    users::SESSION_PREFIX,
    streams::STREAM_PREFIX,
];

/// The galleries of one volume: their records, the in-memory map of gallery directories,
/// event numbering and the live event channel. Registered on the volume as a hook, so
/// namespace changes made through any front-end produce the same items and events.
pub struct Galleries {
    vol: Arc<Volume>,
    state: Arc<State>,
    hook: HookId,
    /// Held by a person's change of an item from its permission check to its end.
    edits: std::sync::Mutex<()>,
    /// Staging directories of bundle imports in progress (`bundle`), which `sweep` spares.
    importing: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Galleries {
    /// Opens the galleries of `vol`: loads the gallery directories and registers the
    /// namespace hook and the thumbnails directory. Call once per volume, before serving.
    pub fn open(vol: Arc<Volume>) -> Result<Arc<Self>> {
        vol.register_hidden(items::THUMBNAILS_NAME, items::THUMBNAILS_KEY);
        let mut roots = std::collections::HashMap::new();
        for key in vol.record_keys(GALLERY_PREFIX)? {
            // A damaged record must not keep the volume from being served; `check` reports it.
            match vol.record::<Gallery>(&key) {
                Ok(Some(g)) => {
                    roots.insert(g.dir(), g.id);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "a gallery record is damaged; run nanofs check --repair"),
            }
        }
        let state = Arc::new(State::new(roots));
        let hook = vol.register_hook(&PREFIXES, state.clone());
        let galleries = Arc::new(Self { vol, state, hook, edits: Default::default(), importing: Default::default() });
        galleries.hash_name_keys()?;
        Ok(galleries)
    }

    /// The volume.
    #[must_use]
    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }

    /// Namespace changes that committed without their gallery part since open (a damaged
    /// gallery record, say); each was logged. `nanofs check --repair` fixes what follows.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.vol.hook_failures(self.hook)
    }

    /// Runs `f` with a batch of gallery records under the volume's commit lock and commits
    /// it with its events (`Synced`: an answer to a person survives a crash).
    fn update<T>(&self, f: impl FnOnce(&mut HookBatch<'_, '_>) -> Result<T>) -> Result<T> {
        self.vol.update(self.hook, Durability::Synced, f)
    }

    /// Every record under `prefix` that can be read; a damaged one is logged and skipped,
    /// so it hides only itself (`check` reports it).
    fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        for key in self.vol.record_keys(prefix)? {
            match self.vol.record(&key) {
                Ok(Some(rec)) => out.push((key, rec)),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "a gallery record is damaged; run nanofs check --repair"),
            }
        }
        Ok(out)
    }
}

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

pub fn now() -> i64 {
    crate::utc::now_secs()
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

impl Galleries {
    pub(crate) fn gallery_key(id: &str) -> Vec<u8> {
        [GALLERY_PREFIX, id.as_bytes()].concat()
    }

    /// The gallery `id`.
    pub fn gallery(&self, id: &str) -> Result<Gallery> {
        self.vol.record(&Self::gallery_key(id))?.ok_or(Error::NotFound)
    }

    /// Every gallery, by title.
    pub fn gallery_list(&self) -> Result<Vec<Gallery>> {
        let mut all: Vec<Gallery> = self.scan(GALLERY_PREFIX)?.into_iter().map(|(_, g)| g).collect();
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
        let dir = self.vol.resolve(path)?;
        self.gallery_create_at(dir, title, owner)
    }

    /// A new gallery directory named `name` under `[media.collaboration] galleries_root`,
    /// created by `owner` through the API (within the per-user limit).
    pub fn gallery_create_dir(&self, name: &str, title: &str, owner: &str) -> Result<Gallery> {
        check_text("the gallery name", name, 255)?;
        if name.starts_with('.') || name.contains('/') {
            return Err(Error::Rejected("a gallery name may not start with '.' or contain '/'".into()));
        }
        let root = self.vol.config().media.collaboration.galleries_root.trim_end_matches('/').to_string();
        let path = format!("{root}/{name}");
        let (parent, leaf) = self.vol.mkdir_parents(&path, (0, 0))?;
        let dir = self.vol.create(parent, leaf.as_bytes(), Kind::Dir, 0o755, 0, 0, 0)?.ino;
        self.gallery_create_at(dir, title, owner)
    }

    fn gallery_create_at(&self, dir: Ino, title: &str, owner: &str) -> Result<Gallery> {
        self.check_new_gallery(title, owner)?;
        if self.vol.getattr(dir)?.inode.kind != Kind::Dir {
            return Err(crate::volume::Error::NotDir.into());
        }
        self.update(|b| self.put_new_gallery(b, dir, title, owner))
    }

    /// Refuses a new gallery with a bad title, or for an owner who is no user or owns the
    /// most galleries allowed.
    fn check_new_gallery(&self, title: &str, owner: &str) -> Result<()> {
        check_text("the title", title, 200)?;
        self.require_user(owner)?;
        let limit = self.vol.config().media.collaboration.max_galleries_per_user as usize;
        let owned = self.gallery_list()?.iter().filter(|g| g.owner() == Some(owner)).count();
        if owned >= limit {
            return Err(Error::Limit(format!(
                "{owner} owns {owned} galleries already, the most allowed ([media.collaboration] max_galleries_per_user = {limit})"
            )));
        }
        Ok(())
    }

    /// Records a new gallery at `dir` in `b`: refused inside or around another one.
    fn put_new_gallery(&self, b: &mut HookBatch<'_, '_>, dir: Ino, title: &str, owner: &str) -> Result<Gallery> {
        if let Some(g) = self.state.gallery_of_dir(b, dir)? {
            return Err(Error::Rejected(format!("the directory is inside gallery {g} already")));
        }
        if self.state.roots.read().expect("gallery roots").keys().any(|r| self.is_below(*r, dir)) {
            return Err(Error::Rejected("the directory holds a gallery already".into()));
        }
        let g = Gallery {
            id: format!("g{}", random_id(8)),
            ino: dir.0,
            title: title.trim().to_string(),
            created: now(),
            members: BTreeMap::from([(owner.to_string(), Role::Owner)]),
        };
        b.put(&Self::gallery_key(&g.id), &g);
        // Files already in the directory become items, without events (nobody listens yet).
        self.state.register_tree(b, &g.id, dir, None, false)?;
        State::add_root(b, &g);
        Ok(g)
    }

    /// Whether `ino` lies strictly below directory `top`.
    fn is_below(&self, ino: Ino, top: Ino) -> bool {
        let mut d = ino;
        for _ in 0..4096 {
            if d == Ino::ROOT {
                return false;
            }
            match self.vol.parent_of(d) {
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
        self.update(|b| {
            let mut g = self.gallery(id)?;
            let data = change(&mut g)?;
            b.put(&Self::gallery_key(id), &g);
            self.state.event(b, id, event, actor.name.clone(), None, data)?;
            Ok(g)
        })
    }

    /// Ends sharing of a gallery: its members, links, comments, annotations, reactions
    /// and events are deleted; the directory and its files stay (owner).
    pub fn gallery_delete(&self, id: &str, actor: &Actor) -> Result<()> {
        actor.require(Action::Administer)?;
        let g = self.gallery(id)?;
        let items = self.gallery_item_inos(&g)?;
        let streams: Vec<String> =
            self.stream_list()?.into_iter().filter(|s| s.gallery.as_ref() == Some(&g.id)).map(|s| s.name).collect();
        self.update(|b| {
            self.state.purge_gallery(b, &g)?;
            State::send_at_commit(b, &g.id, Event::ephemeral("gallery.deleted", actor.name.clone()));
            Ok(())
        })?;
        for name in streams {
            self.stream_changed(&name);
        }
        self.remove_thumbnails(&items);
        Ok(())
    }

    /// The gallery whose tree holds `dir` in the committed tree.
    pub fn gallery_of(&self, dir: Ino) -> Result<Option<String>> {
        self.state.find(dir, |d| {
            let a = self.vol.getattr(d)?;
            Ok((a.inode.kind == Kind::Dir && a.inode.parent != 0 && d != Ino::ROOT).then_some(Ino(a.inode.parent)))
        })
    }

    /// The gallery whose directory is `dir`, if any.
    #[must_use]
    pub fn gallery_root(&self, dir: Ino) -> Option<String> {
        self.state.root(dir)
    }
}
