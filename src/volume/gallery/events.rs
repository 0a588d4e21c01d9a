//! The per-gallery event log and the hook that turns namespace changes into items and events.
//!
//! A change queues its events on its `Txn`; the commit numbers them (1, 2, 3, … per
//! gallery, under the commit lock), writes them in the same batch as the change, trims the
//! log to `event_log_len`, and only after the batch is durable in the WAL sends them to
//! live subscribers. So an event is never lost, never sent for a change that failed, and
//! a client that reconnects with its last number gets exactly what it missed.

use super::items::{ItemRecord, ITEM_PREFIX};
use super::{now, now_ms, Volume};
use crate::ids::Ino;
use crate::store::{Batch, Cf};
use crate::volume::error::{Error, Result};
use crate::volume::records::Kind;
use crate::volume::Txn;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

const LOG_PREFIX: &[u8] = b"gevent/";

/// One change to a gallery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the gallery's log (0 for messages that are not logged).
    pub seq: u64,
    /// What happened: `item.added`, `comment.added`, … (docs/galleries.md).
    #[serde(rename = "type")]
    pub kind: String,
    /// When, RFC 3339 with milliseconds.
    pub at: String,
    /// Who (`None`: through the mount, or the administrator).
    pub actor: Option<String>,
    /// The item concerned, if any.
    pub item: Option<String>,
    /// Details of the change.
    pub data: serde_json::Value,
}

impl Event {
    /// A message outside the log (`gallery.deleted`, after which there is no log).
    #[must_use]
    pub fn ephemeral(kind: &str, actor: Option<String>) -> Self {
        Self { seq: 0, kind: kind.into(), at: at_now(), actor, item: None, data: serde_json::Value::Null }
    }
}

/// An event and the gallery it belongs to, as sent to live subscribers.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Gallery id.
    pub gallery: String,
    /// The event.
    pub event: Event,
    /// The event as JSON, serialised once for every subscriber.
    pub json: String,
}

impl LiveEvent {
    /// `event` of `gallery`.
    #[must_use]
    pub fn new(gallery: String, event: Event) -> Self {
        let json = serde_json::to_string(&event).expect("events serialise");
        Self { gallery, event, json }
    }
}

/// What a reconnecting client missed.
#[derive(Debug)]
pub enum Since {
    /// The events after the given number, oldest first, and the current number.
    Events(Vec<Event>, u64),
    /// The log no longer reaches back that far: reload, then follow from this number.
    Reset(u64),
}

fn at_now() -> String {
    let ms = now_ms();
    let s = crate::utc::rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// `gevent/<gallery>/`.
pub(crate) fn log_prefix(gallery: &str) -> Vec<u8> {
    [LOG_PREFIX, gallery.as_bytes(), b"/"].concat()
}

fn log_key(gallery: &str, seq: u64) -> Vec<u8> {
    [log_prefix(gallery), seq.to_be_bytes().to_vec()].concat()
}

/// Events queued on a `Txn`, numbered at commit.
#[derive(Default)]
pub(crate) struct PendingEvents(Vec<(String, Event)>);

/// The last event number of each gallery a commit wrote to.
pub(crate) type Numbers = Vec<(String, u64)>;

/// Last number per gallery, kept under the commit lock.
#[derive(Default)]
pub(crate) struct EventSeqs(HashMap<String, u64>);

impl PendingEvents {
    /// Numbers and writes the events into `batch`; returns them to publish after the commit
    /// and the last number per gallery to remember.
    pub fn write(
        self,
        vol: &Volume,
        seqs: &EventSeqs,
        batch: &mut Batch<'_>,
    ) -> Result<(Vec<Arc<LiveEvent>>, Numbers)> {
        let keep = u64::from(vol.config.media.collaboration.event_log_len);
        let mut next: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::with_capacity(self.0.len());
        for (gallery, mut event) in self.0 {
            let last = match next.get(&gallery) {
                Some(n) => *n,
                None => match seqs.0.get(&gallery) {
                    Some(n) => *n,
                    None => vol.last_seq(&gallery)?,
                },
            };
            event.seq = last + 1;
            next.insert(gallery.clone(), event.seq);
            vol.meta_put(batch, &log_key(&gallery, event.seq), &event);
            if event.seq > keep {
                batch.delete(Cf::Meta, &log_key(&gallery, event.seq - keep));
            }
            out.push(Arc::new(LiveEvent::new(gallery, event)));
        }
        Ok((out, next.into_iter().collect()))
    }
}

impl EventSeqs {
    pub fn remember(&mut self, numbers: Numbers) {
        self.0.extend(numbers);
    }
}

impl Txn<'_> {
    /// Queues an event of `gallery` to be numbered and logged by this change's commit.
    pub fn gallery_event(
        &mut self,
        gallery: &str,
        kind: &str,
        actor: Option<String>,
        item: Option<Ino>,
        data: serde_json::Value,
    ) {
        let event = Event { seq: 0, kind: kind.into(), at: at_now(), actor, item: item.map(|i| i.0.to_string()), data };
        self.events.0.push((gallery.to_string(), event));
    }
}

/// A namespace change, as the tree operations report it to `note`.
pub(crate) enum NsChange<'a> {
    /// `name` in `parent` now names `ino` (create, mkdir, link).
    Added { parent: Ino, name: &'a [u8], ino: Ino, kind: Kind },
    /// `name` in `parent`, which named `ino`, is gone (unlink, rmdir, replaced by a rename).
    Removed { parent: Ino, name: &'a [u8], ino: Ino, kind: Kind },
    /// `ino` moved from `from/name` to `to/newname`.
    Moved { from: Ino, name: &'a [u8], to: Ino, newname: &'a [u8], ino: Ino, kind: Kind },
}

thread_local! {
    /// The user on whose behalf the engine changes the namespace (set by the gallery API
    /// around tree operations; unset for the mount).
    static ACTING: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `actor` recorded as the author of the items it adds and of its events.
pub fn acting_as<T>(actor: Option<&str>, f: impl FnOnce() -> T) -> T {
    let previous = ACTING.with(|a| a.replace(actor.map(str::to_string)));
    let out = f();
    ACTING.with(|a| *a.borrow_mut() = previous);
    out
}

fn acting() -> Option<String> {
    ACTING.with(|a| a.borrow().clone())
}

fn name_str(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Volume {
    fn last_seq(&self, gallery: &str) -> Result<u64> {
        let prefix = log_prefix(gallery);
        let end = [prefix.clone(), u64::MAX.to_be_bytes().to_vec()].concat();
        Ok(self
            .store
            .floor(Cf::Meta, &prefix, &end)?
            .and_then(|(k, _)| k.get(prefix.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// The gallery whose tree holds directory `dir`, as `txn` sees the tree.
    pub(crate) fn gallery_of_dir(&self, txn: &mut Txn<'_>, dir: Ino) -> Result<Option<String>> {
        self.find_gallery(dir, |d| match txn.inode(d) {
            Ok(i) if i.kind == Kind::Dir && i.parent != 0 => Ok(Some(Ino(i.parent))),
            Ok(_) | Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Reports a namespace change made in `txn`: registers or purges items and queues
    /// their events. Cheap when the volume has no gallery.
    pub(crate) fn note(&self, txn: &mut Txn<'_>, change: NsChange<'_>) -> Result<()> {
        if !self.has_galleries() {
            return Ok(());
        }
        match change {
            NsChange::Added { parent, name, ino, kind } => {
                if let Some(g) = self.gallery_of_dir(txn, parent)? {
                    self.item_arrived(txn, &g, parent, name, ino, kind, false)?;
                }
            }
            NsChange::Removed { parent, name, ino, kind } => {
                if kind == Kind::Dir {
                    if let Some(id) = self.gallery_root(ino) {
                        // The gallery's directory itself is gone: so is the gallery.
                        let g = self.gallery(&id)?;
                        self.purge_gallery(txn, &g)?;
                        self.galleries.roots.write().expect("gallery roots").remove(&ino);
                        return Ok(());
                    }
                }
                if let Some(g) = self.gallery_of_dir(txn, parent)? {
                    self.item_left(txn, &g, parent, name, ino, kind)?;
                }
            }
            NsChange::Moved { from, name, to, newname, ino, kind } => {
                if self.gallery_root(ino).is_some() {
                    return Ok(()); // A gallery's directory moves with its gallery.
                }
                let (old, new) = (self.gallery_of_dir(txn, from)?, self.gallery_of_dir(txn, to)?);
                match (old, new) {
                    (Some(a), Some(b)) if a == b => {
                        let kind_name = if kind == Kind::Dir { "folder.renamed" } else { "item.renamed" };
                        let mut data = serde_json::json!({
                            "from": name_str(name), "name": name_str(newname),
                            "from_folder": from.0.to_string(), "folder": to.0.to_string(),
                        });
                        if kind == Kind::Dir {
                            data["id"] = serde_json::json!(ino.0.to_string());
                        }
                        txn.gallery_event(&a, kind_name, acting(), (kind != Kind::Dir).then_some(ino), data);
                    }
                    (old, new) => {
                        if let Some(a) = old {
                            self.item_left(txn, &a, from, name, ino, kind)?;
                        }
                        if let Some(b) = new {
                            self.item_arrived(txn, &b, to, newname, ino, kind, true)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `moved`: an existing entry moved in (a directory brings its files), rather than a new one.
    #[allow(clippy::too_many_arguments)]
    fn item_arrived(
        &self,
        txn: &mut Txn<'_>,
        g: &str,
        parent: Ino,
        name: &[u8],
        ino: Ino,
        kind: Kind,
        moved: bool,
    ) -> Result<()> {
        let actor = acting();
        match kind {
            Kind::File => {
                let rec = ItemRecord { gallery: g.to_string(), author: actor.clone(), added: now() };
                self.meta_put(&mut txn.batch, &super::items::item_key(ino), &rec);
                let data = serde_json::json!({ "name": name_str(name), "folder": parent.0.to_string() });
                txn.gallery_event(g, "item.added", actor, Some(ino), data);
            }
            Kind::Dir => {
                let data = serde_json::json!({ "name": name_str(name), "folder": parent.0.to_string(), "id": ino.0.to_string() });
                txn.gallery_event(g, "folder.added", actor.clone(), None, data);
                if moved {
                    self.register_tree(txn, g, ino, actor, true)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn item_left(&self, txn: &mut Txn<'_>, g: &str, parent: Ino, name: &[u8], ino: Ino, kind: Kind) -> Result<()> {
        match kind {
            Kind::File => {
                self.purge_item(txn, ino)?;
                let data = serde_json::json!({ "name": name_str(name), "folder": parent.0.to_string() });
                txn.gallery_event(g, "item.removed", acting(), Some(ino), data);
            }
            Kind::Dir => {
                self.unregister_tree(txn, g, ino)?;
                let data = serde_json::json!({ "name": name_str(name), "folder": parent.0.to_string(), "id": ino.0.to_string() });
                txn.gallery_event(g, "folder.removed", acting(), None, data);
            }
            _ => {}
        }
        Ok(())
    }

    /// Registers every file below `dir` as an item of `g` (a directory moved in, or a
    /// directory made a gallery), with `item.added` events when `announce`.
    pub(crate) fn register_tree(
        &self,
        txn: &mut Txn<'_>,
        g: &str,
        dir: Ino,
        author: Option<String>,
        announce: bool,
    ) -> Result<()> {
        for (d, e) in self.files_below(dir)? {
            let rec = ItemRecord { gallery: g.to_string(), author: author.clone(), added: now() };
            self.meta_put(&mut txn.batch, &super::items::item_key(e.ino), &rec);
            if announce {
                let data = serde_json::json!({ "name": name_str(&e.name), "folder": d.0.to_string() });
                txn.gallery_event(g, "item.added", author.clone(), Some(e.ino), data);
            }
        }
        Ok(())
    }

    fn unregister_tree(&self, txn: &mut Txn<'_>, g: &str, dir: Ino) -> Result<()> {
        for (d, e) in self.files_below(dir)? {
            self.purge_item(txn, e.ino)?;
            let data = serde_json::json!({ "name": name_str(&e.name), "folder": d.0.to_string() });
            txn.gallery_event(g, "item.removed", acting(), Some(e.ino), data);
        }
        Ok(())
    }

    /// The file `ino`'s content changed (last close after a write, or a truncation).
    pub(crate) fn note_written(&self, ino: Ino) -> Result<()> {
        if !self.has_galleries() || self.read_only {
            return Ok(());
        }
        let Some(item) = self.meta_get::<ItemRecord>(&super::items::item_key(ino))? else { return Ok(()) };
        let size = self.getattr(ino).map(|a| a.inode.size).unwrap_or(0);
        let mut txn = self.txn()?;
        txn.gallery_event(&item.gallery, "item.changed", acting(), Some(ino), serde_json::json!({ "size": size }));
        txn.commit(crate::store::Durability::Buffered)
    }

    /// What a client that saw events up to `since` missed.
    pub fn gallery_events_since(&self, gallery: &str, since: u64) -> Result<Since> {
        let last = self.last_seq(gallery)?;
        if since >= last {
            return Ok(Since::Events(Vec::new(), last));
        }
        let prefix = log_prefix(gallery);
        let start = log_key(gallery, since + 1);
        let mut out = Vec::new();
        for kv in self.store.scan(Cf::Meta, &prefix, &start) {
            let (k, v) = kv?;
            let plain = self.meta.open(Cf::Meta.name(), &k, &v)?;
            let e: Event = serde_json::from_slice(&plain).map_err(|e| Error::CorruptMeta(format!("event: {e}")))?;
            out.push(e);
        }
        match out.first() {
            Some(first) if first.seq == since + 1 => Ok(Since::Events(out, last)),
            _ => Ok(Since::Reset(last)),
        }
    }

    /// Items whose gallery is gone or whose inode no longer exists (left behind by a
    /// crash between steps that are not one batch, e.g. an orphan reclaimed at open):
    /// their records are deleted. Returns how many.
    pub fn gallery_sweep(&self) -> Result<usize> {
        let roots = self.galleries.roots.read().expect("gallery roots").clone();
        let live: std::collections::HashSet<&String> = roots.values().collect();
        let mut stale = Vec::new();
        for (k, item) in self.meta_scan::<ItemRecord>(ITEM_PREFIX)? {
            let Some(ino) = k.get(ITEM_PREFIX.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
                continue;
            };
            let exists = match self.getattr(Ino(ino)) {
                Ok(a) => a.inode.nlink > 0,
                Err(Error::NotFound) => false,
                Err(e) => return Err(e),
            };
            if !exists || !live.contains(&item.gallery) {
                stale.push(Ino(ino));
            }
        }
        if stale.is_empty() {
            return Ok(0);
        }
        let mut txn = self.txn()?;
        for ino in &stale {
            self.purge_item(&mut txn, *ino)?;
        }
        txn.commit(crate::store::Durability::Buffered)?;
        Ok(stale.len())
    }
}
