//! Comments (threaded), annotations (an image region or a time range) and reactions of an
//! item, stored under `gx/<ino>/` so they go with their item.

use super::error::{Error, Result};
use super::items::collab_prefix;
use super::{check_text, now, time_id, Action, Actor, Galleries, Gallery};
use crate::ids::Ino;
use serde::{Deserialize, Serialize};

pub(crate) const COMMENT: &[u8] = b"c/";
pub(crate) const ANNOTATION: &[u8] = b"a/";
pub(crate) const REACTION: &[u8] = b"r/";

/// The reactions there are.
pub const REACTIONS: [&str; 8] = ["👍", "❤️", "😂", "😮", "😢", "😠", "🔥", "💖"];

/// Longest comment or annotation text, in characters.
pub const MAX_TEXT: usize = 10_000;

/// A comment or reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    /// Id (sorts by creation time).
    pub id: String,
    /// The item.
    pub item: String,
    /// The comment this replies to.
    pub parent: Option<String>,
    /// Who wrote it.
    pub author: Option<String>,
    /// The text (empty once deleted).
    pub text: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last edit.
    pub edited: Option<i64>,
    /// Deleted while it had replies: kept, without text, so the thread holds together.
    pub deleted: bool,
}

/// Where an annotation points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A rectangle of an image, in fractions of its width and height.
    Region {
        /// Left edge.
        x: f64,
        /// Top edge.
        y: f64,
        /// Width.
        w: f64,
        /// Height.
        h: f64,
    },
    /// A stretch of a video or audio item, in seconds.
    Time {
        /// Start.
        start: f64,
        /// End.
        end: f64,
    },
}

impl Target {
    fn check(&self) -> Result<()> {
        let ok = match *self {
            Target::Region { x, y, w, h } => {
                [x, y, w, h].iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v))
                    && w > 0.0
                    && h > 0.0
                    && x + w <= 1.0 + 1e-9
                    && y + h <= 1.0 + 1e-9
            }
            Target::Time { start, end } => start.is_finite() && end.is_finite() && start >= 0.0 && end >= start,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Rejected(
                "an annotation needs a region with 0 <= x, y and 0 < w, h and x + w, y + h <= 1, \
                 or a time range with 0 <= start <= end"
                    .into(),
            ))
        }
    }
}

/// An annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Id.
    pub id: String,
    /// The item.
    pub item: String,
    /// Who made it.
    pub author: Option<String>,
    /// Where.
    #[serde(flatten)]
    pub target: Target,
    /// The text.
    pub text: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last edit.
    pub edited: Option<i64>,
}

/// One person's reaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// One of `REACTIONS`.
    pub emoji: String,
    /// Who.
    pub user: String,
    /// Unix seconds.
    pub created: i64,
}

/// Everything said about an item.
#[derive(Debug, Clone, Serialize)]
pub struct Discussion {
    /// Oldest first; replies name their parent.
    pub comments: Vec<Comment>,
    /// Oldest first.
    pub annotations: Vec<Annotation>,
    /// Every reaction.
    pub reactions: Vec<Reaction>,
}

impl Galleries {
    /// `gx/<ino>/r/<emoji>\0<name tag>`: one user's reaction, counted by its prefix.
    pub(crate) fn reaction_key(&self, ino: Ino, emoji: &str, user: &str) -> Vec<u8> {
        key(ino, REACTION, &[emoji.as_bytes(), b"\0", self.name_tag(user).as_bytes()].concat())
    }
}

fn key(ino: Ino, kind: &[u8], rest: &[u8]) -> Vec<u8> {
    [collab_prefix(ino).as_slice(), kind, rest].concat()
}

fn parse_ino(id: &str) -> Result<Ino> {
    id.parse::<u64>().map(Ino).map_err(|_| Error::NotFound)
}

impl Galleries {
    /// Comments, annotations and reactions of an item.
    pub fn item_discussion(&self, g: &Gallery, actor: &Actor, ino: Ino) -> Result<Discussion> {
        actor.require(Action::Read)?;
        self.gallery_item(g, ino)?;
        let prefix = collab_prefix(ino);
        let comments = self.scan::<Comment>(&[prefix.as_slice(), COMMENT].concat())?;
        let annotations = self.scan::<Annotation>(&[prefix.as_slice(), ANNOTATION].concat())?;
        let reactions = self.scan::<Reaction>(&[prefix.as_slice(), REACTION].concat())?;
        Ok(Discussion {
            comments: comments.into_iter().map(|(_, c)| c).collect(),
            annotations: annotations.into_iter().map(|(_, a)| a).collect(),
            reactions: reactions.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// Adds a comment (or a reply to `parent`).
    pub fn comment_add(
        &self,
        g: &Gallery,
        actor: &Actor,
        ino: Ino,
        text: &str,
        parent: Option<&str>,
    ) -> Result<Comment> {
        actor.require(Action::Comment)?;
        check_text("the comment", text, MAX_TEXT)?;
        self.gallery_item(g, ino)?;
        if let Some(p) = parent {
            if self.vol.record::<Comment>(&key(ino, COMMENT, p.as_bytes()))?.is_none() {
                return Err(Error::Rejected(format!("no comment {p} on this item to reply to")));
            }
        }
        let c = Comment {
            id: time_id(),
            item: ino.0.to_string(),
            parent: parent.map(str::to_string),
            author: actor.name.clone(),
            text: text.to_string(),
            created: now(),
            edited: None,
            deleted: false,
        };
        self.put_announced(g, actor, &key(ino, COMMENT, c.id.as_bytes()), ino, &c, "comment.added")?;
        Ok(c)
    }

    /// Changes the text of one's own comment.
    pub fn comment_edit(&self, g: &Gallery, actor: &Actor, item: &str, id: &str, text: &str) -> Result<Comment> {
        actor.require(Action::EditOwnComment)?;
        check_text("the comment", text, MAX_TEXT)?;
        let (ino, mut c) = self.comment_of(g, item, id)?;
        if !actor.is(c.author.as_deref()) || c.deleted {
            return Err(Error::Denied("only its author can edit a comment".into()));
        }
        c.text = text.to_string();
        c.edited = Some(now());
        self.put_announced(g, actor, &key(ino, COMMENT, id.as_bytes()), ino, &c, "comment.edited")?;
        Ok(c)
    }

    /// Stores `record` under `key` and announces it to the gallery as `kind` (its data is
    /// the record), in one durable change.
    fn put_announced<T: Serialize>(
        &self,
        g: &Gallery,
        actor: &Actor,
        key: &[u8],
        ino: Ino,
        record: &T,
        kind: &str,
    ) -> Result<()> {
        self.update(|b| {
            b.put(key, record);
            self.state.event(
                b,
                &g.id,
                kind,
                actor.name.clone(),
                Some(ino),
                serde_json::to_value(record).unwrap_or_default(),
            )
        })
    }

    /// The comment `id` of item `item`.
    fn comment_of(&self, g: &Gallery, item: &str, id: &str) -> Result<(Ino, Comment)> {
        let ino = parse_ino(item)?;
        self.gallery_item(g, ino)?;
        let c = self.vol.record::<Comment>(&key(ino, COMMENT, id.as_bytes()))?.ok_or(Error::NotFound)?;
        Ok((ino, c))
    }

    /// Deletes a comment (its author, or a moderator). One with replies stays as a
    /// tombstone so the thread holds together.
    pub fn comment_delete(&self, g: &Gallery, actor: &Actor, item: &str, id: &str) -> Result<()> {
        let (ino, mut c) = self.comment_of(g, item, id)?;
        if c.deleted {
            return Err(Error::NotFound);
        }
        if actor.is(c.author.as_deref()) {
            actor.require(Action::EditOwnComment)?;
        } else {
            actor.require(Action::Moderate)?;
        }
        // Any reply, deleted or not, keeps its parent as a tombstone: the thread holds.
        let prefix = [collab_prefix(ino).as_slice(), COMMENT].concat();
        let has_replies = self.scan::<Comment>(&prefix)?.iter().any(|(_, r)| r.parent.as_deref() == Some(id));
        self.update(|b| {
            let k = key(ino, COMMENT, id.as_bytes());
            if has_replies {
                c.deleted = true;
                c.text.clear();
                b.put(&k, &c);
            } else {
                b.delete(&k);
            }
            self.state.event(
                b,
                &g.id,
                "comment.deleted",
                actor.name.clone(),
                Some(ino),
                serde_json::json!({ "id": id }),
            )
        })
    }

    /// Adds an annotation.
    pub fn annotation_add(
        &self,
        g: &Gallery,
        actor: &Actor,
        ino: Ino,
        target: Target,
        text: &str,
    ) -> Result<Annotation> {
        actor.require(Action::Annotate)?;
        check_text("the annotation", text, MAX_TEXT)?;
        target.check()?;
        self.gallery_item(g, ino)?;
        let a = Annotation {
            id: time_id(),
            item: ino.0.to_string(),
            author: actor.name.clone(),
            target,
            text: text.to_string(),
            created: now(),
            edited: None,
        };
        self.put_announced(g, actor, &key(ino, ANNOTATION, a.id.as_bytes()), ino, &a, "annotation.added")?;
        Ok(a)
    }

    fn annotation_of(&self, g: &Gallery, item: &str, id: &str) -> Result<(Ino, Annotation)> {
        let ino = parse_ino(item)?;
        self.gallery_item(g, ino)?;
        let a = self.vol.record::<Annotation>(&key(ino, ANNOTATION, id.as_bytes()))?.ok_or(Error::NotFound)?;
        Ok((ino, a))
    }

    /// Changes one's own annotation (text and/or target).
    pub fn annotation_edit(
        &self,
        g: &Gallery,
        actor: &Actor,
        item: &str,
        id: &str,
        text: Option<&str>,
        target: Option<Target>,
    ) -> Result<Annotation> {
        actor.require(Action::Annotate)?;
        let (ino, mut a) = self.annotation_of(g, item, id)?;
        if !actor.is(a.author.as_deref()) {
            return Err(Error::Denied("only its author can edit an annotation".into()));
        }
        if let Some(t) = text {
            check_text("the annotation", t, MAX_TEXT)?;
            a.text = t.to_string();
        }
        if let Some(t) = target {
            t.check()?;
            a.target = t;
        }
        a.edited = Some(now());
        self.put_announced(g, actor, &key(ino, ANNOTATION, id.as_bytes()), ino, &a, "annotation.edited")?;
        Ok(a)
    }

    /// Deletes an annotation (its author, or a moderator).
    pub fn annotation_delete(&self, g: &Gallery, actor: &Actor, item: &str, id: &str) -> Result<()> {
        let (ino, a) = self.annotation_of(g, item, id)?;
        if actor.is(a.author.as_deref()) {
            actor.require(Action::Annotate)?;
        } else {
            actor.require(Action::Moderate)?;
        }
        self.update(|b| {
            b.delete(&key(ino, ANNOTATION, id.as_bytes()));
            self.state.event(
                b,
                &g.id,
                "annotation.deleted",
                actor.name.clone(),
                Some(ino),
                serde_json::json!({ "id": id }),
            )
        })
    }

    /// Toggles the actor's `emoji` on an item; returns whether it is now on and the count.
    pub fn reaction_toggle(&self, g: &Gallery, actor: &Actor, ino: Ino, emoji: &str) -> Result<(bool, usize)> {
        actor.require(Action::React)?;
        if !REACTIONS.contains(&emoji) {
            return Err(Error::Rejected(format!("{emoji:?} is not a reaction; use one of {}", REACTIONS.join(" "))));
        }
        let user = actor.name.clone().ok_or_else(|| Error::Rejected("reactions need a user".into()))?;
        self.gallery_item(g, ino)?;
        let k = self.reaction_key(ino, emoji, &user);
        self.update(|b| {
            // Read under the commit lock: two toggles at once count right.
            let on = !self.vol.record_exists(&k)?;
            if on {
                b.put(&k, &Reaction { emoji: emoji.into(), user: user.clone(), created: now() });
            } else {
                b.delete(&k);
            }
            let before = self.vol.record_keys(&key(ino, REACTION, &[emoji.as_bytes(), b"\0"].concat()))?.len();
            let count = if on { before + 1 } else { before.saturating_sub(1) };
            let data = serde_json::json!({ "emoji": emoji, "user": user, "on": on, "count": count });
            self.state.event(b, &g.id, "reaction.changed", actor.name.clone(), Some(ino), data)?;
            Ok((on, count))
        })
    }
}
