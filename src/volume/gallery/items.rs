//! Items: the files of a gallery's tree, listed with paging and sorting, with cached media
//! facts (type, fingerprint, dimensions, duration, placeholder) and thumbnails.
//!
//! Media facts are computed by the sidecar's indexer and cached in `ginfo/<ino>`, valid
//! while the file's ctime and size are those recorded. Thumbnails are ordinary files in
//! the hidden `/.thumbnails` directory, so they are chunked, deduplicated and sealed like
//! any data.

use super::collab::{COMMENT, REACTION};
use super::{now, Action, Actor, Gallery, Volume};
use crate::ids::Ino;
use crate::media::MediaInfo;
use crate::store::format::META_THUMBNAILS_DIR;
use crate::store::{Cf, Durability};
use crate::volume::error::{Error, Result};
use crate::volume::records::{Inode, Kind, Timestamp};
use crate::volume::Txn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const ITEM_PREFIX: &[u8] = b"gitem/";
const INFO_PREFIX: &[u8] = b"ginfo/";
/// Name under which the root reaches the thumbnails directory (not listed).
pub const THUMBNAILS_NAME: &[u8] = b".thumbnails";
/// Thumbnail sizes (longest side, px).
pub const THUMBNAIL_SIZES: [u32; 2] = [256, 1024];

pub(crate) fn item_key(ino: Ino) -> Vec<u8> {
    [ITEM_PREFIX, &ino.0.to_be_bytes()[..]].concat()
}

fn info_key(ino: Ino) -> Vec<u8> {
    [INFO_PREFIX, &ino.0.to_be_bytes()[..]].concat()
}

/// `gx/<ino>/`: the comments, annotations and reactions of an item.
pub(crate) fn collab_prefix(ino: Ino) -> Vec<u8> {
    [b"gx/".as_slice(), &ino.0.to_be_bytes(), b"/"].concat()
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

impl Volume {
    /// The gallery whose tree holds `dir` in the committed tree.
    pub fn gallery_of(&self, dir: Ino) -> Result<Option<String>> {
        self.find_gallery(dir, |d| {
            let i = self.load_inode(d)?;
            Ok((i.kind == Kind::Dir && i.parent != 0).then_some(Ino(i.parent)))
        })
    }

    /// The item record of `ino` if it is an item of `gallery` (else `NotFound`).
    pub fn gallery_item(&self, gallery: &Gallery, ino: Ino) -> Result<ItemRecord> {
        match self.meta_get::<ItemRecord>(&item_key(ino))? {
            Some(r) if r.gallery == gallery.id => Ok(r),
            _ => Err(Error::NotFound),
        }
    }

    /// The gallery an item belongs to.
    pub fn gallery_of_item(&self, ino: Ino) -> Result<Gallery> {
        let rec = self.meta_get::<ItemRecord>(&item_key(ino))?.ok_or(Error::NotFound)?;
        self.gallery(&rec.gallery)
    }

    /// Every item inode of a gallery.
    pub fn gallery_item_inos(&self, g: &Gallery) -> Result<Vec<Ino>> {
        Ok(self
            .meta_scan::<ItemRecord>(ITEM_PREFIX)?
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
        for e in self.dir_entries(folder)? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            match e.kind {
                Kind::Dir => folders.push(FolderView { id: e.ino.0.to_string(), name }),
                Kind::File => {
                    let inode = self.getattr(e.ino)?.inode;
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
            let record = self.meta_get::<ItemRecord>(&item_key(e.ino))?;
            if record.as_ref().is_none_or(|r| r.gallery != gallery.id) {
                unregistered.push(e.ino);
            }
            items.push(self.item_view(e.ino, e.name, folder, &e.inode, e.guess, record.and_then(|r| r.author))?);
        }
        // Files that reached the tree without passing the namespace hook (a clone into the
        // gallery) become items when first listed.
        if !unregistered.is_empty() && !self.read_only {
            let mut txn = self.txn()?;
            for ino in unregistered {
                let rec = ItemRecord { gallery: gallery.id.clone(), author: None, added: now() };
                self.meta_put(&mut txn.batch, &item_key(ino), &rec);
            }
            txn.commit(Durability::Buffered)?;
        }
        Ok(Listing { folder: folder.0.to_string(), total, offset: q.offset, items, folders })
    }

    /// One item as listed, by id, with where it is.
    pub fn gallery_item_view(&self, gallery: &Gallery, actor: &Actor, ino: Ino) -> Result<ItemView> {
        actor.require(Action::Read)?;
        let rec = self.gallery_item(gallery, ino)?;
        let inode = self.getattr(ino)?.inode;
        let (folder, name) = self.locate_item(gallery, ino)?;
        let guess = mime_guess::from_path(&name).first_or_octet_stream().essence_str().to_string();
        self.item_view(ino, name, folder, &inode, guess, rec.author)
    }

    /// The folder and name of an item (searching the gallery's tree).
    pub fn locate_item(&self, gallery: &Gallery, ino: Ino) -> Result<(Ino, String)> {
        self.files_below(gallery.dir())?
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
        for kv in self.store.scan(Cf::Meta, &prefix, &prefix) {
            let (k, v) = kv?;
            match k.get(prefix.len()..prefix.len() + 2) {
                Some(t) if t == COMMENT => {
                    let c: super::collab::Comment = serde_json::from_slice(&self.meta.open(Cf::Meta.name(), &k, &v)?)
                        .map_err(|e| Error::CorruptMeta(format!("comment: {e}")))?;
                    comments += usize::from(!c.deleted);
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
        Ok(self.meta_get::<ItemInfo>(&info_key(ino))?.filter(|i| i.stamp == stamp_of(inode)))
    }

    /// Records media facts (the indexer). Ignored when the content changed meanwhile.
    pub fn item_info_put(&self, ino: Ino, info: &ItemInfo) -> Result<()> {
        let mut txn = self.txn()?;
        match self.meta_get::<ItemRecord>(&item_key(ino))? {
            Some(item) if stamp_of(txn.inode(ino)?) == info.stamp => {
                self.meta_put(&mut txn.batch, &info_key(ino), info);
                txn.gallery_event(
                    &item.gallery,
                    "item.indexed",
                    None,
                    Some(ino),
                    serde_json::to_value(info_public(info)).unwrap_or_default(),
                );
                txn.commit(Durability::Buffered)
            }
            _ => Ok(()),
        }
    }

    /// The items still to index (no valid facts), of every gallery.
    pub fn items_to_index(&self) -> Result<Vec<Ino>> {
        let mut out = Vec::new();
        for (k, _) in self.meta_scan::<ItemRecord>(ITEM_PREFIX)? {
            let Some(ino) = k.get(ITEM_PREFIX.len()..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
                continue;
            };
            let ino = Ino(ino);
            if let Ok(a) = self.getattr(ino) {
                if self.item_info(ino, &a.inode)?.is_none() {
                    out.push(ino);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn thumbnails_dir(&self) -> Result<Option<Ino>> {
        self.meta_ino(META_THUMBNAILS_DIR)
    }

    fn thumbnails_dir_or_create(&self) -> Result<Ino> {
        self.hidden_dir_or_create(META_THUMBNAILS_DIR, THUMBNAILS_NAME)
    }

    fn thumbnail_name(ino: Ino, px: u32) -> Vec<u8> {
        format!("{}-{px}.jpg", ino.0).into_bytes()
    }

    /// Stores the thumbnail of `ino` at `px` (replacing an older one).
    pub fn thumbnail_put(&self, ino: Ino, px: u32, jpeg: &[u8]) -> Result<()> {
        let dir = self.thumbnails_dir_or_create()?;
        let name = Self::thumbnail_name(ino, px);
        match self.unlink(dir, &name) {
            Ok(()) | Err(Error::NotFound) => {}
            Err(e) => return Err(e),
        }
        let file = self.create(dir, &name, Kind::File, 0o600, 0, 0, 0)?.ino;
        self.open_file(file, true)?;
        let written = self.write(file, 0, jpeg, false, false);
        let closed = self.release(file);
        written?;
        closed
    }

    /// The stored thumbnail of `ino` at `px`, if any.
    pub fn thumbnail_get(&self, ino: Ino, px: u32) -> Result<Option<Vec<u8>>> {
        let Some(dir) = self.thumbnails_dir()? else { return Ok(None) };
        let Some(entry) = self.dirent(dir, &Self::thumbnail_name(ino, px))? else { return Ok(None) };
        let size = self.getattr(entry.ino)?.inode.size;
        Ok(Some(self.read(entry.ino, 0, u32::try_from(size).map_err(|_| Error::Invalid)?)?.to_vec()))
    }

    /// Deletes an item's records and thumbnails in `txn`.
    pub(crate) fn purge_item(&self, txn: &mut Txn<'_>, ino: Ino) -> Result<()> {
        txn.batch.delete(Cf::Meta, &item_key(ino));
        txn.batch.delete(Cf::Meta, &info_key(ino));
        self.meta_delete_prefix(&mut txn.batch, &collab_prefix(ino))?;
        if let Some(dir) = self.thumbnails_dir()? {
            for px in THUMBNAIL_SIZES {
                let name = Self::thumbnail_name(ino, px);
                if let Some(e) = self.dirent(dir, &name)? {
                    txn.delete_dirent(dir, &name);
                    self.drop_link(txn, e.ino, Timestamp::now())?;
                }
            }
        }
        Ok(())
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
