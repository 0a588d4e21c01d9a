//! Metadata backups of a volume whose chunks are in an object store, kept in the same
//! bucket: with one, a volume can be rebuilt on another host from the bucket alone and a
//! key slot (a passphrase or an X-Wing identity).
//!
//! A backup is a RocksDB checkpoint of the whole database (a consistent copy of every
//! committed change) and nanofs.toml, archived and sealed, behind the volume's header in
//! the clear (its key slots are what unlocks the rest; they are as safe to keep beside the
//! data as they are in the volume directory). Object `meta/<UTC time>-<random>`:
//!
//! ```text
//! magic "nanofs-meta-backup/v1\n" | u32 header length | header (nanofs.header, JSON)
//! | id 16 random bytes | segment*
//! segment = u32 sealed length | sealed
//! sealed  = XChaCha20-Poly1305 under the root key's meta-backup subkey, of at most 4 MiB
//!           of the archive; aad = id | u64 index | u8 last
//! archive = (u16 name length | name | u64 length | bytes)* | u16 0
//! ```
//!
//! The id and the index in every segment's associated data make segments of another backup,
//! reordered, dropped or repeated ones fail, and the last flag a backup cut short.
//!
//! Packs that garbage collection empties are kept until the next backup (see
//! `Store::delete_pack`): the newest backup never points at a deleted pack.

use super::{Error, Result, Volume};
use crate::config::{Config, StoreSection, CONFIG_FILE};
use crate::crypto::aead::SealKey;
use crate::crypto::keys::{Keyring, Purpose};
use crate::store::bucket::Bucket;
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"nanofs-meta-backup/v1\n";
const SEGMENT: usize = 4 << 20;
/// Backups kept: the newest, which restores completely, and the one before it.
const KEEP: usize = 2;
/// The largest volume header a backup may hold.
const MAX_HEADER: usize = 4 << 20;
/// Object name prefix of backups.
pub const BACKUP_DIR: &str = "meta/";

/// What a backup stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupReport {
    /// Its object name.
    pub name: String,
    /// Files of the database copy.
    pub files: u64,
    /// Bytes of the object.
    pub bytes: u64,
    /// Packs emptied by garbage collection since the previous backup, deleted now.
    pub packs_deleted: u64,
}

/// What a restore rebuilt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestoreReport {
    /// The backup it came from.
    pub name: String,
    /// Files of the database.
    pub files: u64,
    /// Bytes of the backup.
    pub bytes: u64,
}

fn backup_key(keyring: &Keyring) -> SealKey {
    SealKey::new(&keyring.root().derive(Purpose::MetaBackup))
}

fn segment_aad(id: &[u8; 16], index: u64, last: bool) -> Vec<u8> {
    [&id[..], &index.to_be_bytes(), &[u8::from(last)]].concat()
}

/// Seals what is written to it into segments.
struct SealingWriter<W: Write> {
    out: W,
    key: SealKey,
    id: [u8; 16],
    index: u64,
    buf: Vec<u8>,
}

impl<W: Write> SealingWriter<W> {
    fn flush_segment(&mut self, last: bool) -> std::io::Result<()> {
        let sealed = self.key.seal(&segment_aad(&self.id, self.index, last), &self.buf);
        self.out.write_all(&(sealed.len() as u32).to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.index += 1;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.flush_segment(true)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() == SEGMENT {
            self.flush_segment(false)?;
        }
        let n = data.len().min(SEGMENT - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens the segments read from `input`.
struct OpeningReader<R: Read> {
    input: R,
    key: SealKey,
    id: [u8; 16],
    index: u64,
    plain: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<R: Read> Read for OpeningReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
        while self.at == self.plain.len() {
            if self.ended {
                return Ok(0);
            }
            let mut len = [0u8; 4];
            self.input.read_exact(&mut len).map_err(|_| bad("the backup is cut short"))?;
            let len = u32::from_be_bytes(len) as usize;
            if len > SEGMENT + 64 {
                return Err(bad("a backup segment is too long"));
            }
            let mut sealed = vec![0u8; len];
            self.input.read_exact(&mut sealed).map_err(|_| bad("the backup is cut short"))?;
            // The last flag is not stored: a segment opens under exactly one of the two.
            let (plain, last) = match self.key.open(&segment_aad(&self.id, self.index, false), &sealed) {
                Ok(p) => (p, false),
                Err(_) => match self.key.open(&segment_aad(&self.id, self.index, true), &sealed) {
                    Ok(p) => (p, true),
                    Err(_) => return Err(bad("a backup segment failed authentication")),
                },
            };
            self.plain = plain;
            self.at = 0;
            self.index += 1;
            self.ended = last;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn archive_file(w: &mut impl Write, name: &str, path: &Path) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    w.write_all(&(name.len() as u16).to_be_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&len.to_be_bytes())?;
    let copied = std::io::copy(&mut (&mut f).take(len), w)?;
    if copied != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{name} shrank while copied")));
    }
    Ok(())
}

impl Volume {
    /// Stores a metadata backup in the object store, deletes the packs the previous one
    /// kept alive, and all but the newest `KEEP` backups.
    pub fn meta_backup(&self) -> Result<BackupReport> {
        let bucket = self.bucket()?;
        // Names sort by time: "2026-12-06T10:31:23Z" without its colons.
        let mut suffix = [0u8; 4];
        crate::crypto::keys::random_bytes(&mut suffix);
        let name = format!("{BACKUP_DIR}{}-{}", crate::utc::now_rfc3339().replace(':', ""), crate::ids::hex(&suffix));
        // Recorded before the copy is taken, so that a volume restored from it keeps the
        // packs it empties for its own next backup too.
        self.store.backup_started(&name)?;
        // Packs doomed before the copy is taken are in no record of it.
        let doomed = self.store.doomed_packs()?;
        let work = self.dir.join("meta-backup.tmp");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let result = self.write_backup(&work, bucket, &name);
        let _ = std::fs::remove_dir_all(&work);
        let (files, bytes) = result?;
        self.store.backed_up(&doomed)?;
        let backups: Vec<String> = bucket.list(BACKUP_DIR)?.into_iter().map(|(n, _)| n).collect();
        for old in backups.iter().rev().skip(KEEP) {
            bucket.delete(old)?;
        }
        tracing::info!(backup = %name, files, bytes, packs_deleted = doomed.len(), "metadata backed up");
        Ok(BackupReport { name, files, bytes, packs_deleted: doomed.len() as u64 })
    }

    fn bucket(&self) -> Result<&Bucket> {
        self.store.packs().bucket().ok_or_else(|| {
            Error::NotAVolume(
                "this volume keeps its chunks in local packs: back up the volume directory instead \
                 (metadata backups are for volumes on an object store)"
                    .into(),
            )
        })
    }

    fn write_backup(&self, work: &Path, bucket: &Bucket, name: &str) -> Result<(u64, u64)> {
        let db = work.join("db");
        self.store.checkpoint(&db)?;
        let header = std::fs::read(self.dir.join(super::header::HEADER_FILE))?;
        let mut id = [0u8; 16];
        crate::crypto::keys::random_bytes(&mut id);
        let sealed_path = work.join("backup");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&sealed_path)?);
        out.write_all(MAGIC)?;
        out.write_all(&(header.len() as u32).to_be_bytes())?;
        out.write_all(&header)?;
        out.write_all(&id)?;
        let key = backup_key(&self.keyring.lock().expect("keyring lock"));
        let mut w = SealingWriter { out, key, id, index: 0, buf: Vec::with_capacity(SEGMENT) };
        archive_file(&mut w, CONFIG_FILE, &self.dir.join(CONFIG_FILE))?;
        let mut files = 0u64;
        let mut entries: Vec<_> = std::fs::read_dir(&db)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            archive_file(&mut w, &format!("db/{name}"), &entry.path())?;
            files += 1;
        }
        w.write_all(&0u16.to_be_bytes())?;
        let out = w.finish()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let bytes = std::fs::metadata(&sealed_path)?.len();
        bucket.put_file(name, &sealed_path)?;
        Ok((files, bytes))
    }

    /// Rebuilds a volume in `dir` (which must not exist, or be empty) from the newest
    /// metadata backup in the bucket `store` describes (or the one named `backup`),
    /// unlocked with `credential`. Its nanofs.toml is the backed-up one with `store` as
    /// its `[store]` section; no chunk is fetched until it is read.
    pub fn meta_restore(
        dir: &Path,
        store: &StoreSection,
        backup: Option<&str>,
        credential: &super::Credential,
    ) -> Result<RestoreReport> {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(Error::NotAVolume(format!("{} exists and is not empty", dir.display())));
        }
        let crate::store::Backend::Object(settings) = super::backend::backend(store, dir)? else {
            return Err(Error::NotAVolume("a restore needs the object store's settings (--s3-…)".into()));
        };
        let bucket = Bucket::connect(settings.bucket.clone())?;
        let name = match backup {
            Some(b) => b.to_string(),
            None => bucket.list(BACKUP_DIR)?.pop().map(|(n, _)| n).ok_or_else(|| {
                Error::NotAVolume(format!(
                    "bucket {} holds no metadata backup under the prefix {:?}",
                    settings.bucket.bucket, settings.bucket.prefix
                ))
            })?,
        };
        let object = bucket.get(&name)?.ok_or_else(|| Error::NotAVolume(format!("no backup {name} in the bucket")))?;
        let bytes = object.len() as u64;
        let mut input = &object[..];
        let malformed = || Error::NotAVolume(format!("{name} is not a nanofs metadata backup"));
        let mut magic = [0u8; MAGIC.len()];
        input.read_exact(&mut magic).map_err(|_| malformed())?;
        if magic != MAGIC {
            return Err(malformed());
        }
        let mut len = [0u8; 4];
        input.read_exact(&mut len).map_err(|_| malformed())?;
        let len = u32::from_be_bytes(len) as usize;
        // A header with a thousand key slots is under 2 MiB.
        if len > input.len().min(MAX_HEADER) {
            return Err(malformed());
        }
        let mut header = vec![0u8; len];
        input.read_exact(&mut header).map_err(|_| malformed())?;
        let mut id = [0u8; 16];
        input.read_exact(&mut id).map_err(|_| malformed())?;

        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let partial = dir.join("restore.partial");
        std::fs::create_dir_all(&partial)?;
        std::fs::write(partial.join(super::header::HEADER_FILE), &header)?;
        let keyring = Self::unlock(&partial, credential)?;
        let key = backup_key(&keyring);
        let mut r = OpeningReader { input, key, id, index: 0, plain: Vec::new(), at: 0, ended: false };
        let bad = |e: std::io::Error| Error::NotAVolume(format!("{name}: {e}"));
        let mut files = 0u64;
        std::fs::create_dir_all(partial.join("db"))?;
        loop {
            let mut n = [0u8; 2];
            r.read_exact(&mut n).map_err(bad)?;
            let n = u16::from_be_bytes(n) as usize;
            if n == 0 {
                break;
            }
            let mut entry = vec![0u8; n];
            r.read_exact(&mut entry).map_err(bad)?;
            let entry = String::from_utf8(entry).map_err(|_| malformed())?;
            // Only the names a backup writes: nanofs.toml and plain files under db/.
            let safe = entry == CONFIG_FILE
                || entry.strip_prefix("db/").is_some_and(|f| !f.is_empty() && !f.contains('/') && f != "..");
            if !safe {
                return Err(malformed());
            }
            let mut len = [0u8; 8];
            r.read_exact(&mut len).map_err(bad)?;
            let len = u64::from_be_bytes(len);
            let mut f = std::fs::File::create(partial.join(&entry))?;
            if std::io::copy(&mut (&mut r).take(len), &mut f)? != len {
                return Err(bad(std::io::Error::other("the backup is cut short")));
            }
            f.sync_all()?;
            files += u64::from(entry != CONFIG_FILE);
        }
        if r.read(&mut [0u8; 1]).map_err(bad)? != 0 || !r.ended {
            return Err(malformed());
        }
        // The backed-up configuration, on the object store given here (its endpoint or
        // key file may differ on this host).
        let config_path = partial.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path)?;
        std::fs::write(&config_path, super::backend::with_store_section(&text, store))?;
        Config::load(&config_path).map_err(|e| Error::NotAVolume(e.to_string()))?;
        for entry in std::fs::read_dir(&partial)? {
            let entry = entry?;
            std::fs::rename(entry.path(), dir.join(entry.file_name()))?;
        }
        std::fs::remove_dir(&partial)?;
        std::fs::File::open(dir)?.sync_all()?;
        tracing::info!(backup = %name, files, bytes, "volume metadata restored");
        Ok(RestoreReport { name, files, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], key: &SealKey, id: [u8; 16]) -> Vec<u8> {
        let mut w = SealingWriter { out: Vec::new(), key: key.clone(), id, index: 0, buf: Vec::new() };
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(sealed: &[u8], key: &SealKey, id: [u8; 16]) -> std::io::Result<Vec<u8>> {
        let mut r = OpeningReader { input: sealed, key: key.clone(), id, index: 0, plain: vec![], at: 0, ended: false };
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn sealed_segments_round_trip_and_refuse_cuts_swaps_and_other_backups() {
        let key = SealKey::new(&[7u8; 32]);
        let data: Vec<u8> = (0..SEGMENT * 2 + 100).map(|i| (i % 251) as u8).collect();
        let sealed = seal(&data, &key, [1; 16]);
        assert_eq!(open(&sealed, &key, [1; 16]).unwrap(), data);
        assert!(open(&sealed, &key, [2; 16]).is_err(), "another backup's id");
        // Cut after the first segment: no last segment.
        let first = 4 + u32::from_be_bytes(sealed[..4].try_into().unwrap()) as usize;
        assert!(open(&sealed[..first], &key, [1; 16]).is_err(), "cut short");
        // The second segment dropped.
        let second = first + 4 + u32::from_be_bytes(sealed[first..first + 4].try_into().unwrap()) as usize;
        let dropped = [&sealed[..first], &sealed[second..]].concat();
        assert!(open(&dropped, &key, [1; 16]).is_err(), "a segment dropped");
        let empty = seal(b"", &key, [3; 16]);
        assert_eq!(open(&empty, &key, [3; 16]).unwrap(), b"");
    }
}
