//! Content fingerprints, per-directory space figures, and the virtual xattrs that show them
//! (`user.nanofs.blake2b`, `user.nanofs.stats`).
//!
//! A file's fingerprint is the plain BLAKE2b-256 of its bytes, the value `b2sum -l 256`
//! prints, so it can be checked outside nanofs. It is computed on first request and cached
//! (sealed, like every record) with the file's ctime and size: any change of the content
//! moves the ctime, so a stale value is never served. A directory's fingerprint is a hash
//! over its entries sorted by name, each with its kind, permissions and the fingerprint of
//! its content (files and subdirectories recursively, symlink targets, device numbers):
//! one hex string that proves a whole snapshot unchanged.

use super::error::{Error, Result};
use super::records::{decode_xattr, encode_xattr, Inode, Kind};
use super::Volume;
use crate::ids::{hex, ChunkId, Ino};
use crate::store::keys::{self, RefRecord};
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Virtual xattr: hex fingerprint of a file or tree.
pub const XATTR_FINGERPRINT: &[u8] = b"user.nanofs.blake2b";
/// Virtual xattr of a directory: its space figures as JSON (the volume's on the root).
pub const XATTR_STATS: &[u8] = b"user.nanofs.stats";
/// Prefix of the virtual xattrs; users cannot set or remove these.
pub const XATTR_PREFIX: &[u8] = b"user.nanofs.";
/// Internal xattr holding the cached fingerprint. The NUL keeps it out of reach of the
/// xattr system calls (names are C strings) and out of `listxattr`.
pub(crate) const CACHE_XATTR: &[u8] = b"\0nanofs.fingerprint";

/// Space figures of one directory tree (`stats --path`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PathStats {
    /// Regular files (each hard-linked inode once).
    pub files: u64,
    /// Directories, the top one included.
    pub directories: u64,
    /// Bytes of file data (holes excluded).
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct chunks the tree uses.
    pub unique_bytes: u64,
    /// Their stored (compressed, sealed) bytes.
    pub stored_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Mean plaintext size of those chunks.
    pub mean_chunk_bytes: u64,
    /// `logical_bytes / unique_bytes`.
    pub dedup_ratio: f64,
    /// `1 - stored_bytes / logical_bytes`, in percent.
    pub space_saved_percent: f64,
    /// Stored bytes of chunks used only inside this tree: what deleting it (and a GC) frees.
    pub exclusive_bytes: u64,
}

/// What a cached fingerprint is valid for: any change of the content moves the ctime.
fn stamp(inode: &Inode) -> Vec<u8> {
    [&inode.ctime.secs.to_be_bytes()[..], &inode.ctime.nanos.to_be_bytes(), &inode.size.to_be_bytes()].concat()
}

impl Volume {
    /// The fingerprint of a file, directory tree, symlink or special file.
    pub fn fingerprint(&self, ino: Ino) -> Result<[u8; 32]> {
        let inode = self.load_inode(ino)?;
        match inode.kind {
            Kind::File => self.file_fingerprint(ino),
            Kind::Dir => self.tree_fingerprint(ino),
            Kind::Symlink => Ok(hash_all(&[&self.readlink(ino)?])),
            _ => Ok(hash_all(&[&inode.rdev.to_be_bytes()])),
        }
    }

    /// Every linked regular file (snapshots' too) whose size is in `sizes`: the candidates
    /// for a content looked up by fingerprint, found by one scan of the inode table.
    pub fn files_of_sizes(&self, sizes: &HashSet<u64>) -> Result<Vec<Ino>> {
        let mut out = Vec::new();
        if sizes.is_empty() {
            return Ok(out);
        }
        for kv in self.store.scan(Cf::Inodes, &[], &[]) {
            let (k, _) = kv?;
            let ino = Ino::from_key(&k).ok_or_else(|| Error::CorruptMeta("inode key".into()))?;
            let inode = self.load_inode(ino)?;
            if inode.kind == Kind::File && inode.nlink > 0 && sizes.contains(&inode.size) {
                out.push(ino);
            }
        }
        Ok(out)
    }

    fn file_fingerprint(&self, ino: Ino) -> Result<[u8; 32]> {
        if !self.read_only {
            self.commit_file(ino, Durability::Buffered)?;
        }
        let before = self.load_inode(ino)?;
        if let Some(hash) = self.cached_fingerprint_of(ino, &before)? {
            return Ok(hash);
        }
        let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
        let mut offset = 0;
        while offset < before.size {
            let piece = self.read(ino, offset, 1 << 20)?;
            if piece.is_empty() {
                break;
            }
            state.update(&piece);
            offset += piece.len() as u64;
        }
        let hash: [u8; 32] = state.finalize().as_bytes().try_into().expect("32 bytes");
        // Cached only if the file did not change while it was read; the cache is a
        // private record, not a change of the file, so it leaves ctime alone.
        if !self.read_only && stamp(&self.load_inode(ino)?) == stamp(&before) {
            let (key, value) = self.fingerprint_record(ino, &before, &hash);
            let mut batch = self.store.batch();
            batch.put(Cf::Xattrs, &key, &value);
            self.store.commit(batch, Durability::Buffered)?;
        }
        Ok(hash)
    }

    /// A tag of the file's current version, from its metadata alone (an HTTP `ETag`): it
    /// changes with every change of the content (which moves the ctime), costs no read,
    /// and, keyed, tells nothing of the inode number or times.
    #[must_use]
    pub fn version_tag(&self, ino: Ino, inode: &Inode) -> [u8; 16] {
        self.keys.name_hash(&[&b"nanofs-version-v1"[..], &ino.0.to_be_bytes(), &stamp(inode)].concat())
    }

    /// The fingerprint of a file if it is known without reading the file (cached, and the
    /// file unchanged since).
    pub fn cached_fingerprint(&self, ino: Ino, inode: &Inode) -> Result<Option<[u8; 32]>> {
        if inode.kind != Kind::File {
            return Ok(None);
        }
        self.cached_fingerprint_of(ino, inode)
    }

    fn cached_fingerprint_of(&self, ino: Ino, inode: &Inode) -> Result<Option<[u8; 32]>> {
        let key = keys::named_key(ino, &self.keys.name_hash(CACHE_XATTR));
        let Some(sealed) = self.store.get(Cf::Xattrs, &key)? else { return Ok(None) };
        let plain = self.meta.open(Cf::Xattrs.name(), &key, &sealed)?;
        let (_, cached) = decode_xattr(&plain)?;
        let stamp = stamp(inode);
        Ok((cached.len() == stamp.len() + 32 && cached[..stamp.len()] == stamp[..])
            .then(|| cached[stamp.len()..].try_into().expect("32 bytes")))
    }

    /// The sealed record (key, value) caching `hash` as the fingerprint of file `ino` in
    /// the state `inode`: for a writer that hashed the bytes as it wrote them, to put in
    /// the batch that commits that state.
    pub(crate) fn fingerprint_record(&self, ino: Ino, inode: &Inode, hash: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
        let key = keys::named_key(ino, &self.keys.name_hash(CACHE_XATTR));
        let value = [stamp(inode), hash.to_vec()].concat();
        let sealed = self.meta.seal(Cf::Xattrs.name(), &key, &encode_xattr(CACHE_XATTR, &value));
        (key.to_vec(), sealed)
    }

    fn tree_fingerprint(&self, dir: Ino) -> Result<[u8; 32]> {
        let mut entries = self.readdir(dir, 0, usize::MAX)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
        state.update(b"nanofs-tree-v1");
        for e in entries {
            let inode = self.load_inode(e.ino)?;
            state.update(&[e.kind as u8]);
            state.update(&(e.name.len() as u32).to_be_bytes());
            state.update(&e.name);
            state.update(&inode.perm.to_be_bytes());
            state.update(&self.fingerprint(e.ino)?);
        }
        Ok(state.finalize().as_bytes().try_into().expect("32 bytes"))
    }

    /// The value of a virtual xattr, `None` when `name` is not one.
    pub(crate) fn virtual_xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>> {
        if name == XATTR_FINGERPRINT {
            return Ok(Some(hex(&self.fingerprint(ino)?).into_bytes()));
        }
        if name == XATTR_STATS {
            if self.load_inode(ino)?.kind != Kind::Dir {
                return Err(Error::NoAttr);
            }
            let json = if ino == Ino::ROOT {
                serde_json::to_vec(&self.stats()?)
            } else {
                serde_json::to_vec(&self.path_stats(ino)?)
            };
            return Ok(Some(json.expect("stats serialise")));
        }
        Ok(None)
    }

    /// Space figures of the tree under `top`.
    pub fn path_stats(&self, top: Ino) -> Result<PathStats> {
        self.wait_for_closed_commits();
        let mut s = PathStats::default();
        let mut uses: HashMap<ChunkId, u64> = HashMap::new();
        let mut seen: HashSet<Ino> = HashSet::new();
        let mut stack = vec![top];
        while let Some(ino) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            match self.load_inode(ino)?.kind {
                Kind::Dir => {
                    s.directories += 1;
                    stack.extend(self.readdir(ino, 0, usize::MAX)?.into_iter().map(|e| e.ino));
                }
                Kind::File => {
                    s.files += 1;
                    for (_, e) in self.extents_from(ino, 0)? {
                        s.logical_bytes += u64::from(e.len);
                        *uses.entry(e.chunk).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        for (id, n) in &uses {
            let Some(rec) = self.store.get(Cf::Refs, &id.0)?.and_then(|v| RefRecord::decode(&v)) else { continue };
            s.chunks += 1;
            s.unique_bytes += u64::from(rec.plain_len);
            s.stored_bytes += u64::from(rec.stored_len);
            if rec.count <= *n {
                s.exclusive_bytes += u64::from(rec.stored_len);
            }
        }
        s.mean_chunk_bytes = s.unique_bytes.checked_div(s.chunks).unwrap_or(0);
        (s.dedup_ratio, s.space_saved_percent) = super::ratios(s.logical_bytes, s.unique_bytes, s.stored_bytes);
        Ok(s)
    }
}

fn hash_all(parts: &[&[u8]]) -> [u8; 32] {
    let mut state = blake2b_simd::Params::new().hash_length(32).to_state();
    for p in parts {
        state.update(p);
    }
    state.finalize().as_bytes().try_into().expect("32 bytes")
}
