//! The per-gallery event log as clients read it: events, live messages, and what a client
//! that reconnects with its last number missed. Events are numbered and written by
//! `hook` in the same batch as their change.

use super::error::Result;
use super::hook::last_seq;
use super::{now_ms, Galleries};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(crate) const LOG_PREFIX: &[u8] = b"gevent/";

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

pub(crate) fn at_now() -> String {
    let ms = now_ms();
    let s = crate::utc::rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// `gevent/<gallery>/`.
pub(crate) fn log_prefix(gallery: &str) -> Vec<u8> {
    [LOG_PREFIX, gallery.as_bytes(), b"/"].concat()
}

pub(crate) fn log_key(gallery: &str, seq: u64) -> Vec<u8> {
    [log_prefix(gallery), seq.to_be_bytes().to_vec()].concat()
}

impl Galleries {
    /// Tells the live subscribers of `item`'s gallery of `kind` with `data`, outside the
    /// log (`seq` 0): news that is stale a moment later, such as a packaging job's
    /// progress. Nothing when the file is no gallery's item.
    pub fn announce(&self, item: crate::ids::Ino, kind: &str, data: serde_json::Value) -> Result<()> {
        let gallery = match self.gallery_of_item(item) {
            Ok(g) => g,
            Err(super::Error::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let event =
            Event { seq: 0, kind: kind.into(), at: at_now(), actor: None, item: Some(item.0.to_string()), data };
        // Nobody listening is fine.
        let _ = self.state.live.send(Arc::new(LiveEvent::new(gallery.id, event)));
        Ok(())
    }

    /// Tells the live subscribers of gallery `id` of `kind` with `data`, outside the log
    /// (`seq` 0): a live stream starting, its viewer count, its end.
    pub fn announce_gallery(&self, id: &str, kind: &str, data: serde_json::Value) {
        let event = Event { seq: 0, kind: kind.into(), at: at_now(), actor: None, item: None, data };
        // Nobody listening is fine.
        let _ = self.state.live.send(Arc::new(LiveEvent::new(id.to_string(), event)));
    }

    /// What a client that saw events up to `since` missed.
    pub fn events_since(&self, gallery: &str, since: u64) -> Result<Since> {
        let last = last_seq(&self.vol, gallery)?;
        if since >= last {
            return Ok(Since::Events(Vec::new(), last));
        }
        let out: Vec<Event> =
            self.vol.records(&log_prefix(gallery), &log_key(gallery, since + 1))?.into_iter().map(|(_, e)| e).collect();
        match out.first() {
            Some(first) if first.seq == since + 1 => Ok(Since::Events(out, last)),
            _ => Ok(Since::Reset(last)),
        }
    }

    /// The live event channel (every gallery's events; receivers filter).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LiveEvent>> {
        self.state.live.subscribe()
    }
}
