//! The galleries' side of namespace changes: files arriving in a gallery's tree become
//! items, files leaving it lose their discussion, and both are logged as events, in the
//! same batch as the change (`volume::Hook`).
//!
//! Events are numbered here, under the commit lock (1, 2, 3, … per gallery), written with
//! the change and trimmed to `event_log_len`. The numbers, the map of gallery directories
//! and the live channel change only in `committed`, once the batch is in the WAL: an event
//! is never sent for a change that failed, nor lost for one that happened.

use super::events::{at_now, log_key, log_prefix, Event, LiveEvent};
use super::items::{collab_prefix, info_key, item_key, ItemRecord, ITEM_PREFIX};
use super::{links, now, Error, Gallery, Result};
use crate::ids::Ino;
use crate::volume::{Change, Hook, HookBatch, HookError, Kind, Note, Volume};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What stays in memory between changes.
pub(crate) struct State {
    /// Gallery directories by inode, so a change finds its gallery without reading records.
    pub roots: RwLock<HashMap<Ino, String>>,
    /// Last event number of each gallery that had an event since open.
    seqs: Mutex<HashMap<String, u64>>,
    /// Every gallery's live events; receivers filter.
    pub live: tokio::sync::broadcast::Sender<Arc<LiveEvent>>,
    /// Names of streams whose key changed or that went (`streams`).
    pub stream_changes: tokio::sync::broadcast::Sender<String>,
    /// Streams live now, as the sidecar reports them.
    pub live_streams: super::streams::LiveMap,
}

impl State {
    /// The state of a volume whose gallery directories are `roots`.
    pub fn new(roots: HashMap<Ino, String>) -> Self {
        Self {
            roots: RwLock::new(roots),
            seqs: Mutex::default(),
            live: tokio::sync::broadcast::channel(4096).0,
            stream_changes: tokio::sync::broadcast::channel(256).0,
            live_streams: Mutex::default(),
        }
    }
}

/// What one change does to the in-memory state once committed.
#[derive(Default)]
pub(crate) struct Pending {
    numbers: HashMap<String, u64>,
    live: Vec<Arc<LiveEvent>>,
    added_roots: Vec<(Ino, String)>,
    removed_roots: Vec<Ino>,
}

/// An entry a change added or removed: `name` in `folder`.
#[derive(Clone, Copy)]
struct Entry<'a> {
    folder: Ino,
    name: &'a [u8],
    ino: Ino,
    kind: Kind,
}

impl Entry<'_> {
    /// What an event says of the entry (folders also get their id).
    fn data(&self) -> serde_json::Value {
        let mut data = serde_json::json!({ "name": name_str(self.name), "folder": self.folder.0.to_string() });
        if self.kind == Kind::Dir {
            data["id"] = serde_json::json!(self.ino.0.to_string());
        }
        data
    }
}

fn name_str(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// The inode an item key names.
pub(crate) fn item_ino(key: &[u8]) -> Option<Ino> {
    key.get(ITEM_PREFIX.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).map(Ino)
}

impl Hook for State {
    fn active(&self) -> bool {
        !self.roots.read().expect("gallery roots").is_empty()
    }

    fn changed(
        &self,
        change: &Change<'_>,
        by: Option<&str>,
        b: &mut HookBatch<'_, '_>,
    ) -> std::result::Result<(), HookError> {
        Ok(self.note(change, by.map(str::to_string), b)?)
    }

    fn committed(&self, note: Option<Note>) {
        let Some(p) = note.and_then(|n| n.downcast::<Pending>().ok()) else { return };
        self.seqs.lock().expect("event numbers").extend(p.numbers);
        let mut roots = self.roots.write().expect("gallery roots");
        for ino in &p.removed_roots {
            roots.remove(ino);
        }
        roots.extend(p.added_roots);
        drop(roots);
        for e in p.live {
            // Nobody listening is fine: the log has it.
            let _ = self.live.send(e);
        }
    }
}

impl State {
    fn note(&self, change: &Change<'_>, by: Option<String>, b: &mut HookBatch<'_, '_>) -> Result<()> {
        match *change {
            Change::Added { parent, name, ino, kind } => {
                if let Some(g) = self.gallery_of_dir(b, parent)? {
                    self.item_arrived(b, &g, Entry { folder: parent, name, ino, kind }, by, false)?;
                }
            }
            Change::Removed { parent, name, ino, kind } => {
                if let Some(id) = self.root(ino).filter(|_| kind == Kind::Dir) {
                    // The gallery's directory itself is gone: so is the gallery.
                    let g: Gallery = b.volume().record(&super::Galleries::gallery_key(&id))?.ok_or(Error::NotFound)?;
                    return self.purge_gallery(b, &g);
                }
                if let Some(g) = self.gallery_of_dir(b, parent)? {
                    self.item_left(b, &g, Entry { folder: parent, name, ino, kind }, by)?;
                }
            }
            Change::Moved { from, name, to, newname, ino, kind } => {
                if self.root(ino).is_some() {
                    return Ok(()); // A gallery's directory moves with its gallery.
                }
                match (self.gallery_of_dir(b, from)?, self.gallery_of_dir(b, to)?) {
                    (Some(a), Some(c)) if a == c => {
                        let kind_name = if kind == Kind::Dir { "folder.renamed" } else { "item.renamed" };
                        let mut data = serde_json::json!({
                            "from": name_str(name), "name": name_str(newname),
                            "from_folder": from.0.to_string(), "folder": to.0.to_string(),
                        });
                        if kind == Kind::Dir {
                            data["id"] = serde_json::json!(ino.0.to_string());
                        }
                        self.event(b, &a, kind_name, by, (kind != Kind::Dir).then_some(ino), data)?;
                    }
                    (old, new) => {
                        if let Some(a) = old {
                            self.item_left(b, &a, Entry { folder: from, name, ino, kind }, by.clone())?;
                        }
                        if let Some(c) = new {
                            self.item_arrived(b, &c, Entry { folder: to, name: newname, ino, kind }, by, true)?;
                        }
                    }
                }
            }
            Change::Written { ino } => {
                let Some(item) = b.volume().record::<ItemRecord>(&item_key(ino))? else { return Ok(()) };
                let size = b.inode(ino).map(|i| i.size).unwrap_or(0);
                self.event(b, &item.gallery, "item.changed", by, Some(ino), serde_json::json!({ "size": size }))?;
            }
        }
        Ok(())
    }

    /// The gallery whose directory is `dir`, if any.
    pub fn root(&self, dir: Ino) -> Option<String> {
        self.roots.read().expect("gallery roots").get(&dir).cloned()
    }

    /// The gallery of the innermost gallery directory at or above `dir`; `up` gives a
    /// directory's parent (`None`: not a directory, the root, or gone).
    pub fn find(&self, dir: Ino, mut up: impl FnMut(Ino) -> Result<Option<Ino>>) -> Result<Option<String>> {
        if !self.active() {
            return Ok(None);
        }
        let mut d = dir;
        for _ in 0..4096 {
            if let Some(g) = self.root(d) {
                return Ok(Some(g));
            }
            match up(d)? {
                Some(p) => d = p,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The gallery whose tree holds directory `dir`, as the change in `b` sees the tree.
    pub fn gallery_of_dir(&self, b: &mut HookBatch<'_, '_>, dir: Ino) -> Result<Option<String>> {
        self.find(dir, |d| Ok(b.parent_dir(d)?))
    }

    /// `moved`: an existing entry moved in (a directory brings its files), rather than a new one.
    fn item_arrived(
        &self,
        b: &mut HookBatch<'_, '_>,
        g: &str,
        e: Entry<'_>,
        by: Option<String>,
        moved: bool,
    ) -> Result<()> {
        match e.kind {
            Kind::File => {
                b.put(&item_key(e.ino), &ItemRecord { gallery: g.to_string(), author: by.clone(), added: now() });
                self.event(b, g, "item.added", by, Some(e.ino), e.data())
            }
            Kind::Dir => {
                self.event(b, g, "folder.added", by.clone(), None, e.data())?;
                if moved {
                    self.register_tree(b, g, e.ino, by, true)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn item_left(&self, b: &mut HookBatch<'_, '_>, g: &str, e: Entry<'_>, by: Option<String>) -> Result<()> {
        match e.kind {
            Kind::File => {
                purge_item(b, e.ino)?;
                self.event(b, g, "item.removed", by, Some(e.ino), e.data())
            }
            Kind::Dir => {
                for (d, f) in b.volume().files_below(e.ino)? {
                    purge_item(b, f.ino)?;
                    let data = Entry { folder: d, name: &f.name, ino: f.ino, kind: Kind::File }.data();
                    self.event(b, g, "item.removed", by.clone(), Some(f.ino), data)?;
                }
                self.event(b, g, "folder.removed", by, None, e.data())
            }
            _ => Ok(()),
        }
    }

    /// Registers every file below `dir` as an item of `g` (a directory moved in, or a
    /// directory made a gallery), with `item.added` events when `announce`.
    pub fn register_tree(
        &self,
        b: &mut HookBatch<'_, '_>,
        g: &str,
        dir: Ino,
        author: Option<String>,
        announce: bool,
    ) -> Result<()> {
        for (d, e) in b.volume().files_below(dir)? {
            b.put(&item_key(e.ino), &ItemRecord { gallery: g.to_string(), author: author.clone(), added: now() });
            if announce {
                let data = Entry { folder: d, name: &e.name, ino: e.ino, kind: Kind::File }.data();
                self.event(b, g, "item.added", author.clone(), Some(e.ino), data)?;
            }
        }
        Ok(())
    }

    /// Deletes the gallery's records in `b`; its directory leaves the map at commit.
    pub fn purge_gallery(&self, b: &mut HookBatch<'_, '_>, g: &Gallery) -> Result<()> {
        // A damaged record of another gallery must not stop this one from going; `check`
        // deals with it.
        for key in b.volume().record_keys(ITEM_PREFIX)? {
            if let (Ok(Some(item)), Some(ino)) = (b.volume().record::<ItemRecord>(&key), item_ino(&key)) {
                if item.gallery == g.id {
                    purge_item(b, ino)?;
                }
            }
        }
        for key in b.volume().record_keys(links::LINK_PREFIX)? {
            if b.volume().record::<links::LinkRecord>(&key).ok().flatten().is_some_and(|l| l.gallery == g.id) {
                b.delete(&key);
            }
        }
        for key in b.volume().record_keys(super::streams::STREAM_PREFIX)? {
            let rec = b.volume().record::<super::streams::StreamRecord>(&key).ok().flatten();
            if rec.is_some_and(|s| s.gallery.as_deref() == Some(g.id.as_str())) {
                b.delete(&key);
            }
        }
        b.delete_prefix(&log_prefix(&g.id))?;
        b.delete(&super::Galleries::gallery_key(&g.id));
        b.note::<Pending>().removed_roots.push(g.dir());
        Ok(())
    }

    /// A new gallery: its directory joins the map at commit.
    pub fn add_root(b: &mut HookBatch<'_, '_>, g: &Gallery) {
        b.note::<Pending>().added_roots.push((g.dir(), g.id.clone()));
    }

    /// A message outside the log, sent at commit (`gallery.deleted`).
    pub fn send_at_commit(b: &mut HookBatch<'_, '_>, gallery: &str, event: Event) {
        b.note::<Pending>().live.push(Arc::new(LiveEvent::new(gallery.to_string(), event)));
    }

    /// Numbers an event of `gallery` and logs it in `b`; it goes live at commit.
    pub fn event(
        &self,
        b: &mut HookBatch<'_, '_>,
        gallery: &str,
        kind: &str,
        actor: Option<String>,
        item: Option<Ino>,
        data: serde_json::Value,
    ) -> Result<()> {
        let known = b.note::<Pending>().numbers.get(gallery).copied();
        let committed = || self.seqs.lock().expect("event numbers").get(gallery).copied();
        let last = match known.or_else(committed) {
            Some(n) => n,
            None => last_seq(b.volume(), gallery)?,
        };
        let seq = last + 1;
        let event = Event { seq, kind: kind.into(), at: at_now(), actor, item: item.map(|i| i.0.to_string()), data };
        b.put(&log_key(gallery, seq), &event);
        let keep = u64::from(b.volume().config().media.collaboration.event_log_len);
        if seq > keep {
            b.delete(&log_key(gallery, seq - keep));
        }
        let pending = b.note::<Pending>();
        pending.numbers.insert(gallery.to_string(), seq);
        pending.live.push(Arc::new(LiveEvent::new(gallery.to_string(), event)));
        Ok(())
    }
}

/// The number of the last logged event of `gallery` (0: none).
pub(crate) fn last_seq(vol: &Volume, gallery: &str) -> Result<u64> {
    let prefix = log_prefix(gallery);
    let end = [prefix.clone(), u64::MAX.to_be_bytes().to_vec()].concat();
    Ok(vol
        .record_key_floor(&prefix, &end)?
        .and_then(|k| k.get(prefix.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// Deletes an item's records in `b`. Its thumbnails stay until the sweep (`Galleries::sweep`):
/// a hook writes only gallery records, never the tree.
pub(crate) fn purge_item(b: &mut HookBatch<'_, '_>, ino: Ino) -> Result<()> {
    b.delete(&item_key(ino));
    b.delete(&info_key(ino));
    b.delete_prefix(&collab_prefix(ino))?;
    Ok(())
}
