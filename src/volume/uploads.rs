//! Resumable uploads (the engine side of tus): an incomplete upload is a file in the hidden
//! directory `/.uploads` named by its id, its state a sealed internal xattr. Received bytes
//! are chunked, deduplicated and sealed as they arrive, like any write; completion renames
//! the file to its target in one atomic change, so a half-received file is never visible
//! at the target. Concatenation builds the final file from the parts' extents: a metadata
//! change, the bytes are not copied again.

use super::error::{Error, Result};
use super::records::{decode_xattr, encode_xattr, Kind, Timestamp};
use super::tree::{Attr, RenameMode};
use super::Volume;
use crate::ids::Ino;
use crate::store::{keys, Cf, Durability};
use serde::{Deserialize, Serialize};

/// Name under which the root reaches the uploads directory (not listed).
pub const UPLOADS_NAME: &[u8] = b".uploads";
/// Internal xattr holding an upload's state.
const STATE_XATTR: &[u8] = b"\0nanofs.upload";

/// The state of an incomplete upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadState {
    /// Id (32 hex digits).
    pub id: String,
    /// Total length, when known (`None`: deferred).
    pub length: Option<u64>,
    /// The client's `Upload-Metadata` header, verbatim.
    pub metadata: String,
    /// Volume path the file goes to when complete (`None` for a partial upload).
    pub target: Option<String>,
    /// Unix seconds after which an incomplete upload is deleted.
    pub expires: i64,
    /// A partial upload, to be concatenated.
    pub partial: bool,
    /// Id of the token that created it (only that token's scope may continue it), or
    /// `gallery:<id>:<user>` for an upload into a gallery.
    pub owner: String,
    /// Who is recorded as the author of the item it becomes in a gallery.
    #[serde(default)]
    pub author: Option<String>,
}

impl Volume {
    /// The uploads directory, if one was ever made.
    pub(crate) fn uploads_dir(&self) -> Result<Option<Ino>> {
        self.hidden_dir(UPLOADS_NAME)
    }

    /// The hidden uploads directory, made on first use: a staging place outside the tree.
    pub fn uploads_dir_or_create(&self) -> Result<Ino> {
        self.hidden_dir_or_create(UPLOADS_NAME)
    }

    /// Starts an upload; its file is empty.
    pub fn upload_create(&self, state: &UploadState) -> Result<Ino> {
        check_id(&state.id)?;
        let dir = self.uploads_dir_or_create()?;
        // 0644 once it lands at its target; until then the 0700 uploads directory hides it.
        let attr = self.create(dir, state.id.as_bytes(), Kind::File, 0o644, 0, 0, 0)?;
        self.upload_put_state(attr.ino, state)?;
        Ok(attr.ino)
    }

    /// Rewrites an upload's state (deferred length now known).
    pub fn upload_put_state(&self, ino: Ino, state: &UploadState) -> Result<()> {
        let json = serde_json::to_vec(state).expect("state serialises");
        let key = keys::named_key(ino, &self.keys.name_hash(STATE_XATTR));
        let mut batch = self.store.batch();
        batch.put(Cf::Xattrs, &key, &self.meta.seal(Cf::Xattrs.name(), &key, &encode_xattr(STATE_XATTR, &json)));
        self.store.commit(batch, Durability::Synced)?;
        Ok(())
    }

    /// An upload's state, its inode and the bytes received so far.
    pub fn upload_get(&self, id: &str) -> Result<(UploadState, Ino, u64)> {
        check_id(id)?;
        let dir = self.uploads_dir()?.ok_or(Error::NotFound)?;
        let entry = self.dirent(dir, id.as_bytes())?.ok_or(Error::NotFound)?;
        let key = keys::named_key(entry.ino, &self.keys.name_hash(STATE_XATTR));
        let sealed = self.store.get(Cf::Xattrs, &key)?.ok_or(Error::NotFound)?;
        let plain = self.meta.open(Cf::Xattrs.name(), &key, &sealed)?;
        let state = serde_json::from_slice(decode_xattr(&plain)?.1)
            .map_err(|e| Error::CorruptMeta(format!("upload {id}: {e}")))?;
        Ok((state, entry.ino, self.getattr(entry.ino)?.inode.size))
    }

    /// Every incomplete upload (for expiry).
    pub fn upload_ids(&self) -> Result<Vec<String>> {
        let Some(dir) = self.uploads_dir()? else { return Ok(vec![]) };
        Ok(self
            .readdir(dir, 0, usize::MAX)?
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect())
    }

    /// Appends the concatenation of `parts` (a body as it arrived) at `offset`, the bytes
    /// received so far. Not durable yet: the request's `fsync` makes it so before the
    /// client is told.
    pub fn upload_append(&self, ino: Ino, offset: u64, parts: &[impl AsRef<[u8]>]) -> Result<()> {
        self.write_parts(ino, offset, parts, false, false)?;
        Ok(())
    }

    /// Moves a complete upload to `target` (creating missing directories), atomically.
    /// `by`: the user hooks record as having made the change; `fingerprint`: the BLAKE2b-256
    /// of its bytes when the receiver hashed them as they arrived, cached with the move so
    /// the file is never read back for it (with the count of bytes it covers, checked).
    pub fn upload_finish(
        &self,
        id: &str,
        ino: Ino,
        target: &str,
        by: Option<&str>,
        fingerprint: Option<(u64, [u8; 32])>,
    ) -> Result<Attr> {
        self.fsync(ino, None)?;
        // Every byte is durable; the upload is still where a client resumes it.
        super::faults::crash_point("upload-data-synced");
        let (parent, name) = self.mkdir_parents(target, (0, 0))?;
        let dir = self.uploads_dir()?.ok_or(Error::NotFound)?;
        // The state goes in the rename's batch: a crash leaves either the upload, whole and
        // resumable (and a failed rename, say onto a directory, leaves it expirable), or the
        // file at its target without it.
        let state = keys::named_key(ino, &self.keys.name_hash(STATE_XATTR));
        let to = (parent, name.as_bytes());
        self.rename_with(dir, id.as_bytes(), to, RenameMode::Replace, by, Durability::Synced, |txn, _| {
            txn.batch.delete(Cf::Xattrs, &state);
            if let Some((hashed, hash)) = fingerprint {
                // The inode as the move commits it: the stamp the cache is valid for.
                let inode = txn.inode(ino)?.clone();
                if inode.size == hashed {
                    let (key, value) = self.fingerprint_record(ino, &inode, &hash);
                    txn.batch.put(Cf::Xattrs, &key, &value);
                }
            }
            Ok::<_, Error>(())
        })?;
        super::faults::crash_point("upload-moved");
        self.getattr(ino)
    }

    /// Deletes an upload and its bytes (GC frees the chunks only it used).
    pub fn upload_delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let dir = self.uploads_dir()?.ok_or(Error::NotFound)?;
        self.unlink(dir, id.as_bytes())
    }

    /// Appends the extents of `parts` to the empty file `dst`, in order: the final upload
    /// of a tus concatenation, built without copying a byte. Returns its size.
    pub fn concat_files(&self, dst: Ino, parts: &[Ino]) -> Result<u64> {
        for p in parts.iter().copied().chain([dst]) {
            self.commit_file(p, Durability::Buffered)?;
        }
        let mut txn = self.txn()?;
        let mut base = 0u64;
        let mut allocated = 0u64;
        for part in parts {
            let inode = txn.inode(*part)?.clone();
            for (off, e) in self.extents_from(*part, 0)? {
                txn.put_extent(dst, base + off, e, None);
            }
            base += inode.size;
            allocated += inode.allocated;
        }
        Self::finish_assembled(txn, dst, base, allocated)?;
        Ok(base)
    }

    /// Gives the empty file `ino`, whose extents `txn` just added, its size, and commits.
    fn finish_assembled(mut txn: super::txn::Txn<'_>, ino: Ino, size: u64, allocated: u64) -> Result<()> {
        let now = Timestamp::now();
        let i = txn.inode_mut(ino)?;
        if i.size != 0 {
            return Err(Error::Invalid);
        }
        i.size = size;
        i.allocated = allocated;
        i.mtime = now;
        i.ctime = now;
        txn.commit(Durability::Synced)
    }

    /// Creates the missing directories of `path`'s parent (mode 0755, owned by `owner`,
    /// uid and gid); returns the parent and the last name.
    pub fn mkdir_parents<'a>(&self, path: &'a str, (uid, gid): (u32, u32)) -> Result<(Ino, &'a str)> {
        let path = path.trim_matches('/');
        let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut dir = Ino::ROOT;
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            dir = match self.lookup(dir, part.as_bytes()) {
                Ok(a) if a.inode.kind == Kind::Dir => a.ino,
                Ok(_) => return Err(Error::NotDir),
                Err(Error::NotFound) => match self.create(dir, part.as_bytes(), Kind::Dir, 0o755, uid, gid, 0) {
                    Ok(a) => a.ino,
                    Err(Error::Exists) => self.lookup(dir, part.as_bytes())?.ino,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            };
        }
        Ok((dir, name))
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// One chunk of a file assembled from chunk ids (a delta push).
#[derive(Debug, Clone, Copy)]
pub struct Piece {
    /// The chunk.
    pub chunk: crate::ids::ChunkId,
    /// Its plaintext length.
    pub len: u32,
}

impl Volume {
    /// The chunks of file `ino` by the plain (unkeyed) BLAKE2b-256 of their bytes, the
    /// hash a client can compute: what a delta push may reuse. Reads the file once.
    pub fn chunks_by_plain_hash(&self, ino: Ino) -> Result<std::collections::HashMap<[u8; 32], Piece>> {
        let mut out = std::collections::HashMap::new();
        for (_, e) in self.extents_from(ino, 0)? {
            let plain = self.chunks.chunk(ino, &e.chunk)?;
            // Only whole chunks: a piece is referenced from its start.
            if e.skip == 0 && plain.len() == e.len as usize {
                out.insert(plain_hash(&plain), Piece { chunk: e.chunk, len: e.len });
            }
        }
        Ok(out)
    }

    /// Stores one chunk sent by a client (sealed like any chunk; a body already stored is
    /// shared), durably, with a reference record of count zero: until `assemble_upload`
    /// references it, it is ordinary garbage that GC may collect (and an abandoned delta
    /// leaves nothing behind).
    pub fn store_plain_chunk(&self, plain: &[u8]) -> Result<Piece> {
        let len = u32::try_from(plain.len()).map_err(|_| Error::Invalid)?;
        let id = self.chunks.codec.id(plain);
        if self.store.contains(Cf::Refs, &id.0)? {
            return Ok(Piece { chunk: id, len });
        }
        let sealed = self.chunks.codec.seal(id, plain);
        let mut txn = self.txn()?;
        txn.batch.put(Cf::Chunks, &id.0, &sealed.envelope[..]);
        txn.register_body(id, sealed.envelope.len() as u32, len);
        txn.commit(Durability::Synced)?;
        Ok(Piece { chunk: id, len })
    }

    /// Builds upload `id`'s file from `pieces` in order, in one change: a metadata
    /// operation, no byte is read or written. Fails with `NotFound` if a chunk vanished
    /// meanwhile (GC of a base file deleted since).
    pub fn assemble_upload(&self, state: &UploadState, pieces: &[Piece]) -> Result<Ino> {
        let ino = self.upload_create(state)?;
        let mut txn = self.txn()?;
        let mut offset = 0u64;
        for p in pieces {
            // Under the commit lock: GC cannot delete it between this check and the commit.
            if !self.store.contains(Cf::Refs, &p.chunk.0)? {
                drop(txn);
                self.upload_delete(&state.id)?;
                return Err(Error::NotFound);
            }
            txn.put_extent(ino, offset, crate::store::keys::ExtentValue::whole(p.chunk, p.len), None);
            offset += u64::from(p.len);
        }
        Self::finish_assembled(txn, ino, offset, offset)?;
        Ok(ino)
    }
}

/// Unkeyed BLAKE2b-256: the chunk hash of delta manifests.
#[must_use]
pub fn plain_hash(data: &[u8]) -> [u8; 32] {
    blake2b_simd::Params::new().hash_length(32).hash(data).as_bytes().try_into().expect("32 bytes")
}
