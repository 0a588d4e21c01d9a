//! Items: the files of a gallery's tree, listed with paging and sorting, with cached media
//! facts (type, fingerprint, dimensions, duration, placeholder) and thumbnails.
//!
//! Media facts are computed by the sidecar's indexer and cached in `ginfo/<ino>`, valid
//! while the file's ctime and size are those recorded. Thumbnails are ordinary files in
//! the hidden `/.thumbnails` directory, so they are chunked, deduplicated and sealed like
//! any data.

use super::collab::{Comment, COMMENT, REACTION};
use super::error::{Error, Result};
use super::{now, Action, Actor, Galleries, Gallery};
use crate::ids::Ino;
use crate::media::MediaInfo;
use crate::volume::records::Inode;
use crate::volume::Timestamp;
use crate::volume::{Durability, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const ITEM_PREFIX: &[u8] = b"gitem/";
pub(crate) const INFO_PREFIX: &[u8] = b"ginfo/";
pub(crate) const COLLAB_PREFIX: &[u8] = b"gx/";
/// Name under which the root reaches the thumbnails directory (not listed).
pub const THUMBNAILS_NAME: &[u8] = b".thumbnails";
/// Format: the `meta` key that keeps the thumbnails directory's inode (u64 BE).
pub(crate) const THUMBNAILS_KEY: &[u8] = b"thumbnails_dir";
/// Thumbnail sizes (longest side, px).
pub const THUMBNAIL_SIZES: [u32; 2] = [256, 1024];

pub(crate) fn item_key(ino: Ino) -> Vec<u8> {
    [ITEM_PREFIX, &ino.0.to_be_bytes()[..]].concat()
}

pub(crate) fn info_key(ino: Ino) -> Vec<u8> {
    [INFO_PREFIX, &ino.0.to_be_bytes()[..]].concat()
}

/// `gx/<ino>/`: the comments, annotations and reactions of an item.
pub(crate) fn collab_prefix(ino: Ino) -> Vec<u8> {
    [COLLAB_PREFIX, &ino.0.to_be_bytes(), b"/"].concat()
}

/// Which gallery a file belongs to and who added it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRecord {
    /// Gallery id.
    pub gallery: String,
    /// Who uploaded it (`None`: through the mount or by the administrator).
    pub author: Option<String>,
    /// Unix seconds.
    pub added: i64,
}

/// Media facts of an item's content, as the indexer found them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemInfo {
    /// The file's ctime and size when indexed: the facts hold while these do.
    pub stamp: (i64, u32, u64),
    /// Media type sniffed from the content.
    pub media_type: String,
    /// BLAKE2b-256, hex.
    pub fingerprint: Option<String>,
    /// Size in pixels, duration, BlurHash.
    #[serde(flatten)]
    pub facts: MediaInfo,
    /// Thumbnail sizes stored for this stamp.
    pub thumbnails: Vec<u32>,
    /// Why no preview exists (an unsupported format, ffmpeg missing), for people.
    pub note: Option<String>,
}

/// The stamp of an inode's current content.
pub(crate) fn stamp_of(inode: &Inode) -> (i64, u32, u64) {
    (inode.ctime.secs, inode.ctime.nanos, inode.size)
}

/// Sort orders of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// By name (byte order of the UTF-8, case-folded first).
    Name,
    /// By modification time.
    Date,
    /// By size.
    Size,
    /// By media type, then name.
    Type,
}

/// What to list.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// The folder (a directory in the gallery's tree); `None` for the gallery's own.
    pub folder: Option<Ino>,
    /// Order.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// Items to skip.
    pub offset: usize,
    /// Items to return (at most 1000).
    pub limit: usize,
}

/// An item as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    /// The inode number, decimal.
    pub id: String,
    /// File name.
    pub name: String,
    /// Folder id (decimal inode of its directory).
    pub folder: String,
    /// Bytes.
    pub size: u64,
    /// Modification time, RFC 3339.
    pub modified: String,
    /// Media type (sniffed once indexed, from the name before).
    #[serde(rename = "type")]
    pub media_type: String,
    /// BLAKE2b-256, hex, once indexed.
    pub fingerprint: Option<String>,
    /// Size in pixels, duration, BlurHash, once indexed.
    #[serde(flatten)]
    pub facts: MediaInfo,
    /// Whether the indexer has still to look at the current content.
    pub pending: bool,
    /// Uploader.
    pub author: Option<String>,
    /// Comments (deleted ones excluded).
    pub comments: usize,
    /// Reaction counts by emoji.
    pub reactions: BTreeMap<String, usize>,
}

/// A sub-folder, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct FolderView {
    /// Decimal inode.
    pub id: String,
    /// Name.
    pub name: String,
}

/// One page of a folder.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The folder listed.
    pub folder: String,
    /// Items in the folder.
    pub total: usize,
    /// Index of the first item returned.
    pub offset: usize,
    /// The page.
    pub items: Vec<ItemView>,
    /// Sub-folders, by name (on every page).
    pub folders: Vec<FolderView>,
}

struct Entry {
    ino: Ino,
    name: String,
    /// The name case-folded, computed once for sorting.
    folded: String,
    inode: Inode,
    guess: String,
}

impl Galleries {
    /// The item record of `ino` if it is an item of `gallery` (else `NotFound`).
    pub fn gallery_item(&self, gallery: &Gallery, ino: Ino) -> Result<ItemRecord> {
        match self.vol.record::<ItemRecord>(&item_key(ino))? {
            Some(r) if r.gallery == gallery.id => Ok(r),
            _ => Err(Error::NotFound),
        }
    }

    /// The gallery an item belongs to.
    pub fn gallery_of_item(&self, ino: Ino) -> Result<Gallery> {
        let rec = self.vol.record::<ItemRecord>(&item_key(ino))?.ok_or(Error::NotFound)?;
        self.gallery(&rec.gallery)
    }

    /// Every item inode of a gallery.
    pub fn gallery_item_inos(&self, g: &Gallery) -> Result<Vec<Ino>> {
        Ok(self
            .scan::<ItemRecord>(ITEM_PREFIX)?
            .into_iter()
            .filter(|(_, r)| r.gallery == g.id)
            .filter_map(|(k, _)| {
                k.get(ITEM_PREFIX.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).map(Ino)
            })
            .collect())
    }

    /// One page of a folder of `gallery`.
    pub fn gallery_items(&self, gallery: &Gallery, actor: &Actor, q: &ListQuery) -> Result<Listing> {
        actor.require(Action::Read)?;
        let folder = q.folder.unwrap_or(gallery.dir());
        if self.gallery_of(folder)?.as_deref() != Some(gallery.id.as_str()) {
            return Err(Error::NotFound);
        }
        let mut files = Vec::new();
        let mut folders = Vec::new();
        for e in self.vol.dir_entries(folder)? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            match e.kind {
                Kind::Dir => folders.push(FolderView { id: e.ino.0.to_string(), name }),
                Kind::File => {
                    let inode = self.vol.getattr(e.ino)?.inode;
                    let guess = mime_guess::from_path(&name).first_or_octet_stream().essence_str().to_string();
                    files.push(Entry { ino: e.ino, folded: name.to_lowercase(), name, inode, guess });
                }
                _ => {}
            }
        }
        folders.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.name.cmp(&b.name)));
        let by_name = |a: &Entry, b: &Entry| a.folded.cmp(&b.folded).then(a.name.cmp(&b.name));
        match q.sort {
            SortKey::Name => files.sort_by(by_name),
            SortKey::Date => files.sort_by(|a, b| {
                (a.inode.mtime.secs, a.inode.mtime.nanos)
                    .cmp(&(b.inode.mtime.secs, b.inode.mtime.nanos))
                    .then(by_name(a, b))
            }),
            SortKey::Size => files.sort_by(|a, b| a.inode.size.cmp(&b.inode.size).then(by_name(a, b))),
            SortKey::Type => files.sort_by(|a, b| a.guess.cmp(&b.guess).then(by_name(a, b))),
        }
        if q.descending {
            files.reverse();
        }
        let total = files.len();
        let limit = q.limit.clamp(1, 1000);
        let page: Vec<Entry> = files.into_iter().skip(q.offset).take(limit).collect();
        let mut unregistered = Vec::new();
        let mut items = Vec::with_capacity(page.len());
        for e in page {
            let record = self.vol.record::<ItemRecord>(&item_key(e.ino))?;
            if record.as_ref().is_none_or(|r| r.gallery != gallery.id) {
                unregistered.push(e.ino);
            }
            items.push(self.item_view(e.ino, e.name, folder, &e.inode, e.guess, record.and_then(|r| r.author))?);
        }
        // Files that reached the tree without passing the namespace hook (a clone into the
        // gallery) become items when first listed.
        if !unregistered.is_empty() && !self.vol.is_read_only() {
            self.vol.update(self.hook, Durability::Buffered, |b| {
                for ino in unregistered {
                    b.put(&item_key(ino), &ItemRecord { gallery: gallery.id.clone(), author: None, added: now() });
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(Listing { folder: folder.0.to_string(), total, offset: q.offset, items, folders })
    }

    /// One item as listed, by id, with where it is.
    pub fn gallery_item_view(&self, gallery: &Gallery, actor: &Actor, ino: Ino) -> Result<ItemView> {
        actor.require(Action::Read)?;
        let rec = self.gallery_item(gallery, ino)?;
        let inode = self.vol.getattr(ino)?.inode;
        let (folder, name) = self.locate_item(gallery, ino)?;
        let guess = mime_guess::from_path(&name).first_or_octet_stream().essence_str().to_string();
        self.item_view(ino, name, folder, &inode, guess, rec.author)
    }

    /// The folder and name of an item (searching the gallery's tree).
    pub fn locate_item(&self, gallery: &Gallery, ino: Ino) -> Result<(Ino, String)> {
        self.vol
            .files_below(gallery.dir())?
            .into_iter()
            .find(|(_, e)| e.ino == ino)
            .map(|(d, e)| (d, String::from_utf8_lossy(&e.name).into_owned()))
            .ok_or(Error::NotFound)
    }

    fn item_view(
        &self,
        ino: Ino,
        name: String,
        folder: Ino,
        inode: &Inode,
        guess: String,
        author: Option<String>,
    ) -> Result<ItemView> {
        let info = self.item_info(ino, inode)?;
        let mut comments = 0;
        let mut reactions = BTreeMap::new();
        let prefix = collab_prefix(ino);
        for k in self.vol.record_keys(&prefix)? {
            match k.get(prefix.len()..prefix.len() + 2) {
                Some(t) if t == COMMENT => {
                    comments += usize::from(self.vol.record::<Comment>(&k)?.is_some_and(|c| !c.deleted));
                }
                Some(t) if t == REACTION => {
                    let rest = &k[prefix.len() + 2..];
                    let emoji = rest.split(|b| *b == 0).next().unwrap_or_default();
                    *reactions.entry(String::from_utf8_lossy(emoji).into_owned()).or_insert(0) += 1;
                }
                _ => {}
            }
        }
        let pending = info.is_none();
        let info = info.unwrap_or_default();
        Ok(ItemView {
            id: ino.0.to_string(),
            name,
            folder: folder.0.to_string(),
            size: inode.size,
            modified: rfc3339_of(inode.mtime),
            media_type: if info.media_type.is_empty() { guess } else { info.media_type },
            fingerprint: info.fingerprint,
            facts: info.facts,
            pending,
            author,
            comments,
            reactions,
        })
    }

    /// The cached media facts of `ino`, if still valid for its current content.
    pub fn item_info(&self, ino: Ino, inode: &Inode) -> Result<Option<ItemInfo>> {
        Ok(self.vol.record::<ItemInfo>(&info_key(ino))?.filter(|i| i.stamp == stamp_of(inode)))
    }

    /// Records media facts (the indexer). Ignored when the content changed meanwhile.
    pub fn item_info_put(&self, ino: Ino, info: &ItemInfo) -> Result<()> {
        self.vol.update(self.hook, Durability::Buffered, |b| match self.vol.record::<ItemRecord>(&item_key(ino))? {
            Some(item) if stamp_of(&b.inode(ino)?) == info.stamp => {
                b.put(&info_key(ino), info);
                let data = serde_json::to_value(info_public(info)).unwrap_or_default();
                self.state.event(b, &item.gallery, "item.indexed", None, Some(ino), data)
            }
            _ => Ok(()),
        })
    }

    /// The items still to index (no valid facts), of every gallery.
    pub fn items_to_index(&self) -> Result<Vec<Ino>> {
        let mut out = Vec::new();
        for (k, _) in self.scan::<ItemRecord>(ITEM_PREFIX)? {
            let Some(ino) = k.get(ITEM_PREFIX.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
                continue;
            };
            let ino = Ino(ino);
            if let Ok(a) = self.vol.getattr(ino) {
                if self.item_info(ino, &a.inode)?.is_none() {
                    out.push(ino);
                }
            }
        }
        Ok(out)
    }

    fn thumbnail_name(ino: Ino, px: u32) -> Vec<u8> {
        format!("{}-{px}.jpg", ino.0).into_bytes()
    }

    /// Stores the thumbnail of `ino` at `px` (replacing an older one).
    pub fn thumbnail_put(&self, ino: Ino, px: u32, jpeg: &[u8]) -> Result<()> {
        let dir = self.vol.hidden_dir_or_create(THUMBNAILS_NAME)?;
        let name = Self::thumbnail_name(ino, px);
        match self.vol.unlink(dir, &name) {
            Ok(()) | Err(crate::volume::Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let file = self.vol.create(dir, &name, Kind::File, 0o600, 0, 0, 0)?.ino;
        let h = self.vol.open_file(file, true)?;
        let written = self.vol.write(file, 0, jpeg, false, false);
        let closed = self.vol.release(file, h);
        written?;
        Ok(closed?)
    }

    /// The stored thumbnail of `ino` at `px`, if any.
    pub fn thumbnail_get(&self, ino: Ino, px: u32) -> Result<Option<Vec<u8>>> {
        let Some(dir) = self.vol.hidden_dir(THUMBNAILS_NAME)? else { return Ok(None) };
        let file = match self.vol.lookup(dir, &Self::thumbnail_name(ino, px)) {
            Ok(a) => a,
            Err(crate::volume::Error::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = u32::try_from(file.inode.size).map_err(|_| Error::Corrupt("a thumbnail over 4 GiB".into()))?;
        Ok(Some(self.vol.read(file.ino, 0, size)?.to_vec()))
    }

    /// Deletes the thumbnails of `items` (after their records went). A failure leaves
    /// files that the sweep removes later.
    pub(crate) fn remove_thumbnails(&self, items: &[Ino]) {
        let Ok(Some(dir)) = self.vol.hidden_dir(THUMBNAILS_NAME) else { return };
        for ino in items {
            for px in THUMBNAIL_SIZES {
                match self.vol.unlink(dir, &Self::thumbnail_name(*ino, px)) {
                    Ok(()) | Err(crate::volume::Error::NotFound) => {}
                    Err(e) => tracing::warn!(inode = %ino, error = %e, "a thumbnail was not deleted"),
                }
            }
        }
    }
}

/// What an `item.indexed` event tells clients.
fn info_public(i: &ItemInfo) -> serde_json::Value {
    serde_json::json!({
        "type": i.media_type, "fingerprint": i.fingerprint, "width": i.facts.width, "height": i.facts.height,
        "duration": i.facts.duration, "placeholder": i.facts.placeholder,
    })
}

fn rfc3339_of(t: Timestamp) -> String {
    crate::utc::rfc3339(t.secs)
}
