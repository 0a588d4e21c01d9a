//! Encrypted hand-over of a gallery: `gallery export` writes its items, folders, comments,
//! annotations and reactions as one bundle encrypted to X-Wing recipients
//! (`crypto::stream`), and `gallery import` brings a bundle into another volume.
//!
//! Inside the encrypted stream is a sequence of records, `kind (u8) || length (u32 BE) ||
//! body`: `META` (JSON), then for each folder `FOLDER` (JSON) and for each file `FILE`
//! (JSON) followed by its content as `CHUNK` (new bytes, numbered in order of appearance)
//! and `REF` (u32 number of an earlier chunk) records, then `TALK` (JSON: the discussion,
//! by file number) and `END`. Content is cut with the volume's content-defined chunking,
//! so a chunk that repeats across files travels once. docs/galleries.md has the format.
//!
//! Import builds everything in a hidden staging directory and moves it into place only
//! after `END` and the authenticated end of the stream, so a wrong key, a truncated or a
//! tampered bundle leaves nothing behind.

use super::collab::{Annotation, Comment, Reaction, ANNOTATION, COMMENT, REACTION};
use super::error::{Error, Result};
use super::items::{collab_prefix, item_key, ItemRecord};
use super::{now, Galleries, Gallery};
use crate::crypto::hybrid::{Identity, Recipient};
use crate::crypto::stream::{DecryptReader, EncryptWriter, StreamError};
use crate::ids::Ino;
use crate::volume::HookBatch;
use crate::volume::{Durability, RenameMode, SetAttr, SetTime};
use crate::volume::{Handle, Kind, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

const META: u8 = 1;
const FOLDER: u8 = 2;
const FILE: u8 = 3;
const CHUNK: u8 = 4;
const REF: u8 = 5;
const TALK: u8 = 6;
const END: u8 = 7;
/// Largest record accepted on import (the largest chunk is 16 MiB).
/// Names of import staging directories in the uploads directory start so.
pub(super) const IMPORT_STAGING: &str = "import-";

const MAX_RECORD: u32 = 32 << 20;
/// Bytes read from a file at a time while exporting.
const READ_BLOCK: u32 = 4 << 20;

#[derive(Serialize, Deserialize)]
struct MetaRecord {
    format: u32,
    title: String,
    exported: i64,
}

#[derive(Serialize, Deserialize)]
struct FolderRecord {
    path: String,
}

#[derive(Serialize, Deserialize)]
struct FileRecord {
    /// Number of the file in the bundle (the discussion refers to it).
    n: u32,
    path: String,
    size: u64,
    mtime: (i64, u32),
    perm: u32,
    author: Option<String>,
}

/// The file an import is writing.
struct Importing {
    ino: Ino,
    handle: Handle,
    written: u64,
    rec: FileRecord,
}

#[derive(Serialize, Deserialize, Default)]
struct Talk {
    comments: BTreeMap<u32, Vec<Comment>>,
    annotations: BTreeMap<u32, Vec<Annotation>>,
    reactions: BTreeMap<u32, Vec<Reaction>>,
}

/// What an export or import moved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BundleReport {
    /// Files.
    pub items: u64,
    /// Folders below the gallery's own.
    pub folders: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Distinct chunks (each travels once).
    pub chunks: u64,
    /// Chunk bytes saved by travelling once.
    pub dedup_bytes: u64,
    /// Comments, annotations and reactions.
    pub discussion: u64,
    /// The gallery created by an import.
    pub gallery: Option<String>,
}

fn stream_error(e: StreamError) -> Error {
    match e {
        StreamError::Io(e) => Error::from(e),
        other => Error::Rejected(other.to_string()),
    }
}

fn io_error(e: std::io::Error) -> Error {
    // The decrypting reader reports bad bundles as I/O errors that wrap a StreamError.
    match e.get_ref().and_then(|inner| inner.downcast_ref::<StreamError>()) {
        Some(s) => Error::Rejected(s.to_string()),
        None => Error::from(e),
    }
}

fn put(out: &mut impl Write, kind: u8, body: &[u8]) -> Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| Error::from(crate::volume::Error::Invalid))?;
    out.write_all(&[kind])
        .and_then(|()| out.write_all(&len.to_be_bytes()))
        .and_then(|()| out.write_all(body))
        .map_err(io_error)
}

fn put_json(out: &mut impl Write, kind: u8, v: &impl Serialize) -> Result<()> {
    put(out, kind, &serde_json::to_vec(v).expect("records serialise"))
}

/// The next record, read into `buf`; `None` at a clean end of input.
fn next_record(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<u8>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]).map_err(io_error)? {
            0 if got == 0 => return Ok(None),
            0 => return Err(Error::Rejected("the bundle ends inside a record".into())),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_RECORD {
        return Err(Error::Rejected(format!("the bundle holds a record of {len} bytes, more than allowed")));
    }
    buf.resize(len as usize, 0);
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof && e.get_ref().is_none() {
            Error::Rejected("the bundle ends inside a record".into())
        } else {
            io_error(e)
        }
    })?;
    Ok(Some(head[0]))
}

fn json<T: for<'de> Deserialize<'de>>(buf: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(buf).map_err(|e| Error::Rejected(format!("the bundle's {what} record is malformed: {e}")))
}

/// A relative path of the bundle, checked: no empty, `.`, `..` or hidden components.
fn safe_relative(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    let ok = !path.is_empty()
        && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0') && p.len() <= 255);
    if ok {
        Ok(parts)
    } else {
        Err(Error::Rejected(format!("the bundle names an unsafe path {path:?}")))
    }
}

impl Galleries {
    /// Writes gallery `g` as a bundle encrypted to `recipients`.
    pub fn gallery_export(&self, g: &Gallery, out: impl Write, recipients: &[Recipient]) -> Result<BundleReport> {
        let mut w = EncryptWriter::new(out, recipients).map_err(stream_error)?;
        let mut report = BundleReport::default();
        put_json(&mut w, META, &MetaRecord { format: 1, title: g.title.clone(), exported: now() })?;
        let mut seen: HashMap<[u8; 32], u32> = HashMap::new();
        let mut talk = Talk::default();
        let mut n = 0u32;
        // Depth first, folders before their files.
        let mut stack = vec![(g.dir(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            for e in self.vol.dir_entries(dir)? {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                match e.kind {
                    Kind::Dir => {
                        put_json(&mut w, FOLDER, &FolderRecord { path: path.clone() })?;
                        report.folders += 1;
                        stack.push((e.ino, path));
                    }
                    Kind::File => {
                        let inode = self.vol.getattr(e.ino)?.inode;
                        let author = self.vol.record::<ItemRecord>(&item_key(e.ino))?.and_then(|r| r.author);
                        let rec = FileRecord {
                            n,
                            path,
                            size: inode.size,
                            mtime: (inode.mtime.secs, inode.mtime.nanos),
                            perm: inode.perm & 0o7777,
                            author,
                        };
                        put_json(&mut w, FILE, &rec)?;
                        self.export_content(e.ino, inode.size, &mut w, &mut seen, &mut report)?;
                        self.export_talk(e.ino, n, &mut talk, &mut report)?;
                        report.items += 1;
                        report.bytes += inode.size;
                        n += 1;
                    }
                    _ => {}
                }
            }
        }
        put_json(&mut w, TALK, &talk)?;
        put(&mut w, END, &[])?;
        let mut out = w.finish().map_err(stream_error)?;
        out.flush()?;
        Ok(report)
    }

    fn export_content(
        &self,
        ino: Ino,
        size: u64,
        w: &mut impl Write,
        seen: &mut HashMap<[u8; 32], u32>,
        report: &mut BundleReport,
    ) -> Result<()> {
        let mut pending: Vec<u8> = Vec::new();
        let mut offset = 0u64;
        loop {
            let at_end = offset >= size;
            if !at_end {
                let block = self.vol.read(ino, offset, READ_BLOCK)?;
                if block.is_empty() {
                    return Err(Error::from(crate::volume::Error::Invalid));
                }
                offset += block.len() as u64;
                pending.extend_from_slice(&block);
            }
            let last = offset >= size;
            let mut start = 0;
            for len in self.vol.cut_points(&pending, last) {
                let end = start + len;
                let chunk = &pending[start..end];
                let hash = crate::volume::plain_hash(chunk);
                match seen.get(&hash) {
                    Some(i) => {
                        put(w, REF, &i.to_be_bytes())?;
                        report.dedup_bytes += chunk.len() as u64;
                    }
                    None => {
                        let i = u32::try_from(seen.len()).map_err(|_| Error::from(crate::volume::Error::Invalid))?;
                        seen.insert(hash, i);
                        put(w, CHUNK, chunk)?;
                        report.chunks += 1;
                    }
                }
                start = end;
            }
            pending.drain(..start);
            if last {
                debug_assert!(pending.is_empty());
                return Ok(());
            }
        }
    }

    fn export_talk(&self, ino: Ino, n: u32, talk: &mut Talk, report: &mut BundleReport) -> Result<()> {
        let prefix = collab_prefix(ino);
        let comments: Vec<Comment> =
            self.scan(&[prefix.as_slice(), COMMENT].concat())?.into_iter().map(|(_, c)| c).collect();
        let annotations: Vec<Annotation> =
            self.scan(&[prefix.as_slice(), ANNOTATION].concat())?.into_iter().map(|(_, a)| a).collect();
        let reactions: Vec<Reaction> =
            self.scan(&[prefix.as_slice(), REACTION].concat())?.into_iter().map(|(_, r)| r).collect();
        report.discussion += (comments.len() + annotations.len() + reactions.len()) as u64;
        if !comments.is_empty() {
            talk.comments.insert(n, comments);
        }
        if !annotations.is_empty() {
            talk.annotations.insert(n, annotations);
        }
        if !reactions.is_empty() {
            talk.reactions.insert(n, reactions);
        }
        Ok(())
    }

    /// Imports a bundle as a new gallery at volume path `dest` (which must not exist),
    /// owned by `owner`. Nothing is left behind when the bundle is refused.
    pub fn gallery_import(
        &self,
        input: impl Read,
        identity: &Identity,
        dest: &str,
        owner: &str,
    ) -> Result<(Gallery, BundleReport)> {
        self.require_user(owner)?;
        match self.vol.resolve(dest).map_err(Error::from) {
            Err(Error::NotFound) => {}
            Ok(_) => return Err(Error::Rejected(format!("{dest} exists already; import into a new path"))),
            Err(e) => return Err(e),
        }
        let mut r = DecryptReader::open(input, identity).map_err(stream_error)?;
        let staging_parent = self.vol.uploads_dir_or_create()?;
        let staging_name = format!("{IMPORT_STAGING}{}", super::random_id(8));
        self.importing.lock().expect("imports").insert(staging_name.clone());
        let result = self.import_staged(&mut r, dest, owner, staging_parent, &staging_name);
        if result.is_err() {
            if let Err(cleanup) = self.vol.remove_tree(staging_parent, staging_name.as_bytes()) {
                tracing::warn!(error = %cleanup, "removing a refused import left its staging directory; the next sweep removes it");
            }
        }
        self.importing.lock().expect("imports").remove(&staging_name);
        result
    }

    /// Writes the bundle's tree into a staging directory, then moves it to `dest` in one
    /// batch with the gallery's record and its discussion: a crash leaves no gallery (and a
    /// staging directory that `sweep` removes) or all of it.
    fn import_staged(
        &self,
        r: &mut impl Read,
        dest: &str,
        owner: &str,
        staging_parent: Ino,
        staging_name: &str,
    ) -> Result<(Gallery, BundleReport)> {
        let staging = self.vol.create(staging_parent, staging_name.as_bytes(), Kind::Dir, 0o755, 0, 0, 0)?.ino;
        let (title, files, talk, mut report) = self.import_into(r, staging)?;
        self.check_new_gallery(&title, owner)?;
        let (parent, leaf) = self.vol.mkdir_parents(dest, (0, 0))?;
        crate::volume::crash_point("import-staged");
        let to = (parent, leaf.as_bytes());
        let g = self.vol.rename_updating(
            staging_parent,
            staging_name.as_bytes(),
            to,
            RenameMode::NoReplace,
            None,
            self.hook,
            Durability::Synced,
            |b, moved| {
                let g = self.put_new_gallery(b, moved, &title, owner)?;
                self.put_talk(b, &g, &files, talk)?;
                Ok::<_, Error>(g)
            },
        )?;
        crate::volume::crash_point("import-committed");
        report.gallery = Some(g.id.clone());
        Ok((g, report))
    }

    #[allow(clippy::type_complexity)]
    fn import_into(
        &self,
        r: &mut impl Read,
        root: Ino,
    ) -> Result<(String, HashMap<u32, (Ino, Option<String>)>, Talk, BundleReport)> {
        let mut buf = Vec::new();
        let mut report = BundleReport::default();
        let meta: MetaRecord = match next_record(r, &mut buf)? {
            Some(META) => json(&buf, "meta")?,
            _ => return Err(Error::Rejected("the bundle does not start with its description".into())),
        };
        if meta.format != 1 {
            return Err(Error::Rejected(format!("bundle content format {} is not supported", meta.format)));
        }
        let mut dirs: HashMap<String, Ino> = HashMap::new();
        let mut files: HashMap<u32, (Ino, Option<String>)> = HashMap::new();
        // Where each chunk was first written, to copy it for later references.
        let mut chunks: Vec<(Ino, u64, u32)> = Vec::new();
        let mut current: Option<Importing> = None;
        let mut talk = None;
        let result = self.import_records(
            r,
            root,
            &mut buf,
            &mut report,
            &mut dirs,
            &mut files,
            &mut chunks,
            &mut current,
            &mut talk,
        );
        if let Some(f) = current.take() {
            // A refused bundle: close the half-written file so its removal reclaims it.
            let _ = self.vol.release(f.ino, f.handle);
        }
        result?;
        let talk = talk.ok_or_else(|| Error::Rejected("the bundle has no discussion record".into()))?;
        Ok((meta.title, files, talk, report))
    }

    #[allow(clippy::too_many_arguments)]
    fn import_records(
        &self,
        r: &mut impl Read,
        root: Ino,
        buf: &mut Vec<u8>,
        report: &mut BundleReport,
        dirs: &mut HashMap<String, Ino>,
        files: &mut HashMap<u32, (Ino, Option<String>)>,
        chunks: &mut Vec<(Ino, u64, u32)>,
        current: &mut Option<Importing>,
        talk: &mut Option<Talk>,
    ) -> Result<()> {
        let finish_file = |vol: &crate::volume::Volume, cur: Option<Importing>| -> Result<()> {
            if let Some(Importing { ino, handle, written, rec }) = cur {
                vol.release(ino, handle)?;
                if written != rec.size {
                    return Err(Error::Rejected(format!(
                        "{}: the bundle holds {written} bytes, not {}",
                        rec.path, rec.size
                    )));
                }
                let set = SetAttr {
                    perm: Some(rec.perm & 0o777),
                    mtime: Some(SetTime::At(Timestamp { secs: rec.mtime.0, nanos: rec.mtime.1 })),
                    ..SetAttr::default()
                };
                vol.setattr(ino, &set)?;
            }
            Ok(())
        };
        loop {
            let kind =
                next_record(r, buf)?.ok_or_else(|| Error::Rejected("the bundle ends before its end record".into()))?;
            match kind {
                FOLDER => {
                    finish_file(&self.vol, current.take())?;
                    let f: FolderRecord = json(buf, "folder")?;
                    let parts = safe_relative(&f.path)?;
                    let parent = self.import_parent(root, &parts, dirs)?;
                    let ino =
                        self.vol.create(parent, parts[parts.len() - 1].as_bytes(), Kind::Dir, 0o755, 0, 0, 0)?.ino;
                    dirs.insert(f.path.clone(), ino);
                    report.folders += 1;
                }
                FILE => {
                    finish_file(&self.vol, current.take())?;
                    let f: FileRecord = json(buf, "file")?;
                    let parts = safe_relative(&f.path)?;
                    let parent = self.import_parent(root, &parts, dirs)?;
                    let ino =
                        self.vol.create(parent, parts[parts.len() - 1].as_bytes(), Kind::File, 0o644, 0, 0, 0)?.ino;
                    let handle = self.vol.open_file(ino, true)?;
                    files.insert(f.n, (ino, f.author.clone()));
                    report.items += 1;
                    report.bytes += f.size;
                    *current = Some(Importing { ino, handle, written: 0, rec: f });
                }
                CHUNK | REF => {
                    let Importing { ino, written, rec, .. } =
                        current.as_mut().ok_or_else(|| Error::Rejected("file content outside a file".into()))?;
                    let data = if kind == CHUNK {
                        chunks.push((*ino, *written, buf.len() as u32));
                        report.chunks += 1;
                        std::mem::take(buf)
                    } else {
                        let i = buf.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
                        let &(src, off, len) = i
                            .and_then(|i| chunks.get(i as usize))
                            .ok_or_else(|| Error::Rejected("the bundle refers to a chunk it never sent".into()))?;
                        report.dedup_bytes += u64::from(len);
                        // A chunk of the file being written may still sit in its write window.
                        self.vol.read(src, off, len)?.to_vec()
                    };
                    if *written + data.len() as u64 > rec.size {
                        return Err(Error::Rejected(format!("{}: more content than its size", rec.path)));
                    }
                    self.vol.write(*ino, *written, &data, false, false)?;
                    *written += data.len() as u64;
                }
                TALK => {
                    finish_file(&self.vol, current.take())?;
                    *talk = Some(json::<Talk>(buf, "discussion")?);
                }
                END => {
                    finish_file(&self.vol, current.take())?;
                    // The end record must be the last thing in the authenticated stream.
                    if next_record(r, buf)?.is_some() {
                        return Err(Error::Rejected("the bundle has records after its end".into()));
                    }
                    return Ok(());
                }
                other => return Err(Error::Rejected(format!("the bundle holds an unknown record kind {other}"))),
            }
        }
    }

    fn import_parent(&self, root: Ino, parts: &[&str], dirs: &HashMap<String, Ino>) -> Result<Ino> {
        if parts.len() == 1 {
            return Ok(root);
        }
        let parent = parts[..parts.len() - 1].join("/");
        dirs.get(&parent)
            .copied()
            .ok_or_else(|| Error::Rejected(format!("the bundle's folder {parent:?} comes after its content")))
    }

    fn put_talk(
        &self,
        b: &mut HookBatch<'_, '_>,
        g: &Gallery,
        files: &HashMap<u32, (Ino, Option<String>)>,
        talk: Talk,
    ) -> Result<()> {
        for (ino, author) in files.values() {
            let rec = ItemRecord { gallery: g.id.clone(), author: author.clone(), added: now() };
            b.put(&item_key(*ino), &rec);
        }
        let target = |n: &u32| files.get(n).map(|(ino, _)| *ino);
        for (n, list) in &talk.comments {
            let Some(ino) = target(n) else { continue };
            for mut c in list.clone() {
                c.item = ino.0.to_string();
                let key = [collab_prefix(ino).as_slice(), COMMENT, c.id.as_bytes()].concat();
                b.put(&key, &c);
            }
        }
        for (n, list) in &talk.annotations {
            let Some(ino) = target(n) else { continue };
            for mut a in list.clone() {
                a.item = ino.0.to_string();
                let key = [collab_prefix(ino).as_slice(), ANNOTATION, a.id.as_bytes()].concat();
                b.put(&key, &a);
            }
        }
        for (n, list) in &talk.reactions {
            let Some(ino) = target(n) else { continue };
            for r in list {
                b.put(&self.reaction_key(ino, &r.emoji, &r.user), r);
            }
        }
        Ok(())
    }
}
