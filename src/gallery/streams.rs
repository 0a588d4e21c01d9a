//! Live streams: named endpoints that one publisher sends to and viewers watch.
//!
//! A stream belongs to a gallery, whose roles and share links decide who watches (viewer
//! and up) and who publishes from the web UI (contributor and up), or to a volume path,
//! which tokens with read on it may watch. Either way it has a directory: recordings land
//! there. Publishers from outside (OBS, ffmpeg) present the stream's publish key
//! `nsk_<secret>`, of which only a keyed hash is stored.
//!
//! Records: `stream/<keyed hash of the name>`. Whether a stream is live and how many watch
//! is the sidecar's business (`crate::live`), which it reports here (`set_live`) so the
//! command line and the API show it.

use super::error::{Error, Result};
use super::{now, Action, Actor, Galleries};
use crate::ids::hex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub(crate) const STREAM_PREFIX: &[u8] = b"stream/";
/// Prefix of publish keys.
pub const PUBLISH_KEY_PREFIX: &str = "nsk_";
/// Longest stream name.
const MAX_NAME: usize = 64;

/// A stream as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Its name in URLs (`/whip/NAME`, `/live/NAME/…`).
    pub name: String,
    /// The owning gallery's id, if a gallery owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gallery: Option<String>,
    /// The volume path that owns it otherwise (tokens with read on it watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Written into its directory as an MP4 when it ends.
    pub record: bool,
    /// Unix seconds.
    pub created: i64,
    /// Who made it (`None`: the administrator).
    pub created_by: Option<String>,
    /// Keyed hash of the publish key's secret, hex.
    key_hash: String,
    /// Unix seconds of the current publish key.
    pub key_created: i64,
}

/// What the sidecar reports of a live stream.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveState {
    /// Unix seconds since which the publisher sends.
    pub since: i64,
    /// Viewers connected now (WebRTC and HLS).
    pub viewers: u64,
    /// How the publisher sends (`whip`, `rtmp`).
    pub ingest: String,
}

/// Streams live now, by name.
pub(crate) type LiveMap = std::sync::Mutex<HashMap<String, LiveState>>;

/// Names are safe in URLs and file names: letters, digits, `-`, `_`, `.` (not first).
pub fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Rejected(format!(
            "a stream name has 1 to {MAX_NAME} letters, digits, '-', '_' or '.' (not first): {name:?}"
        )))
    }
}

impl Galleries {
    fn stream_key(&self, name: &str) -> Vec<u8> {
        let tag = hex(&self.vol.keyed_secret_hash(b"stream name", name.as_bytes())[..16]);
        [STREAM_PREFIX, tag.as_bytes()].concat()
    }

    fn new_publish_key(&self) -> (String, String) {
        let mut secret = [0u8; 32];
        crate::crypto::keys::random_bytes(&mut secret);
        let hash = hex(&self.vol.keyed_secret_hash(b"publish key", &secret));
        (format!("{PUBLISH_KEY_PREFIX}{}", hex(&secret)), hash)
    }

    /// Creates a stream owned by `gallery` (an id or a directory path) or by `path`;
    /// returns it and its publish key (shown once).
    pub fn stream_create(
        &self,
        name: &str,
        gallery: Option<&str>,
        path: Option<&str>,
        record: bool,
        actor: &Actor,
    ) -> Result<(StreamRecord, String)> {
        valid_name(name)?;
        let (gallery, path) = match (gallery, path) {
            (Some(g), None) => {
                let g = self.gallery_by_id_or_path(g)?;
                actor.require(Action::ManageLinks)?;
                (Some(g.id), None)
            }
            (None, Some(p)) => {
                let p = crate::volume::normalise_prefix(p)
                    .ok_or_else(|| Error::Rejected(format!("{p:?} is not an absolute volume path")))?;
                let attr = self.vol.getattr(self.vol.resolve(&p)?)?;
                if attr.inode.kind != crate::volume::Kind::Dir {
                    return Err(Error::Rejected(format!("{p} is not a directory")));
                }
                (None, Some(p))
            }
            _ => return Err(Error::Rejected("a stream belongs to a gallery or to a path: give one".into())),
        };
        let key = self.stream_key(name);
        let (publish_key, key_hash) = self.new_publish_key();
        let created = now();
        let rec = StreamRecord {
            name: name.into(),
            gallery,
            path,
            record,
            created,
            created_by: actor.name.clone(),
            key_hash,
            key_created: created,
        };
        self.update(|b| {
            if b.volume().record_exists(&key)? {
                return Err(Error::Exists);
            }
            b.put(&key, &rec);
            Ok(())
        })?;
        Ok((rec, publish_key))
    }

    /// A stream by name.
    pub fn stream(&self, name: &str) -> Result<StreamRecord> {
        valid_name(name).map_err(|_| Error::NotFound)?;
        self.vol.record(&self.stream_key(name))?.ok_or(Error::NotFound)
    }

    /// Every stream, by name.
    pub fn stream_list(&self) -> Result<Vec<StreamRecord>> {
        let mut v: Vec<StreamRecord> = self.scan(STREAM_PREFIX)?.into_iter().map(|(_, s)| s).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Replaces the publish key; returns the new one. The sidecar ends the session of a
    /// publisher that used the old one (it watches `stream_changes`).
    pub fn stream_new_key(&self, name: &str) -> Result<String> {
        let mut rec = self.stream(name)?;
        let (publish_key, key_hash) = self.new_publish_key();
        rec.key_hash = key_hash;
        rec.key_created = now();
        let key = self.stream_key(name);
        self.update(|b| {
            b.put(&key, &rec);
            Ok(())
        })?;
        self.stream_changed(name);
        Ok(publish_key)
    }

    /// Deletes a stream (its recordings stay).
    pub fn stream_delete(&self, name: &str) -> Result<()> {
        self.stream(name)?;
        let key = self.stream_key(name);
        self.update(|b| {
            b.delete(&key);
            Ok(())
        })?;
        self.stream_changed(name);
        Ok(())
    }

    /// Whether `key` is the stream's publish key (compared in constant time).
    pub fn stream_key_matches(&self, rec: &StreamRecord, key: &str) -> bool {
        let Some(secret) = key.strip_prefix(PUBLISH_KEY_PREFIX).and_then(crate::ids::unhex) else { return false };
        let hash = hex(&self.vol.keyed_secret_hash(b"publish key", &secret));
        crate::crypto::keys::constant_time_eq(hash.as_bytes(), rec.key_hash.as_bytes())
    }

    /// Names of streams whose key or existence changed; the sidecar ends what they no
    /// longer allow.
    #[must_use]
    pub fn stream_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.state.stream_changes.subscribe()
    }

    pub(crate) fn stream_changed(&self, name: &str) {
        // Nobody listening (no sidecar) is fine.
        let _ = self.state.stream_changes.send(name.to_string());
    }

    /// Records that `name` is live (`Some`) or no longer (`None`); used by the sidecar.
    pub fn set_live(&self, name: &str, state: Option<LiveState>) {
        let mut live = self.state.live_streams.lock().expect("live streams");
        match state {
            Some(s) => live.insert(name.to_string(), s),
            None => live.remove(name),
        };
    }

    /// Whether `name` is live, and how.
    #[must_use]
    pub fn live_state(&self, name: &str) -> Option<LiveState> {
        self.state.live_streams.lock().expect("live streams").get(name).cloned()
    }

    /// A stream as the API and the CLI show it (never its key).
    #[must_use]
    pub fn stream_json(&self, s: &StreamRecord) -> serde_json::Value {
        let dir = self.stream_dir_path(s).ok();
        serde_json::json!({
            "name": s.name, "gallery": s.gallery, "path": dir, "record": s.record,
            "created": crate::utc::rfc3339(s.created), "created_by": s.created_by,
            "key_created": crate::utc::rfc3339(s.key_created),
            "live": self.live_state(&s.name),
        })
    }

    /// The volume path of the directory a stream belongs to (its gallery's, or its own).
    pub fn stream_dir_path(&self, s: &StreamRecord) -> Result<String> {
        match (&s.gallery, &s.path) {
            (Some(g), _) => {
                let g = self.gallery(g)?;
                Ok(self.vol.dir_path(g.dir())?)
            }
            (None, Some(p)) => Ok(p.clone()),
            (None, None) => Err(Error::NotFound),
        }
    }
}
