//! On-disk format version and the names of volume-wide values in the `meta` family.

/// Version of the database layout; written to `meta/format` at creation.
///
/// 2: extents may cover part of a chunk (a 40-byte extent value with a skip). A volume of
/// version 1 is read as it is and marked 2 at its first writable open, since builds that
/// read only version 1 would take a partial extent for its whole chunk.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this build opens.
pub const FORMAT_OLDEST: u32 = 1;

/// `meta` key: format version, u32 BE.
pub const META_FORMAT: &[u8] = b"format";
/// `meta` key: next inode number to allocate, u64 BE.
pub const META_NEXT_INO: &[u8] = b"next_ino";
/// `meta` key: space counters (see `keys::SpaceCounters`).
pub const META_SPACE: &[u8] = b"space";
/// `meta` key: inode number of the snapshots directory (`/.snapshots`), u64 BE; absent
/// until the first snapshot.
pub const META_SNAPSHOTS_DIR: &[u8] = b"snapshots_dir";
/// `meta` key: present while the volume is closed cleanly; deleted (durably) at open, so
/// its absence at the next open means the last run crashed.
pub const META_CLEAN: &[u8] = b"clean";
/// `meta` key: inode number of the directory of incomplete uploads (`/.uploads`), u64 BE.
pub const META_UPLOADS_DIR: &[u8] = b"uploads_dir";
/// `meta` key: inode number of the trash directory (`/.trash`), u64 BE; absent until the
/// first file is trashed.
pub const META_TRASH_DIR: &[u8] = b"trash_dir";

/// `meta` key of the inode of the hidden thumbnails directory (u64 BE), once made.
pub const META_THUMBNAILS_DIR: &[u8] = b"thumbnails_dir";

/// `meta` key: how chunk boundaries are placed, u32 BE. Absent in volumes made before
/// keyed chunking, which keep FastCDC's public gear table (so that new data still
/// deduplicates against theirs); `CHUNKER_KEYED` in every volume made since.
pub const META_CHUNKER: &[u8] = b"chunker";
/// `meta/chunker` value: FastCDC with the gear table drawn from the root key's chunker subkey.
pub const CHUNKER_KEYED: u32 = 1;

/// `meta` key: the keyed hash naming chunks, u32 BE. Absent in volumes made before it:
/// BLAKE2b-256; `CHUNK_ID_BLAKE2BP` in every volume made since.
pub const META_CHUNK_ID: &[u8] = b"chunk_id";
/// `meta/chunk_id` value: keyed BLAKE2bp-256, BLAKE2's four-way parallel form (RFC 7693's
/// family; about twice BLAKE2b's speed here, `cargo bench --bench primitives -- keyed`).
pub const CHUNK_ID_BLAKE2BP: u32 = 1;

/// `meta` key prefix of inconsistencies a change met and could not fix on its own; `check`
/// reports each and `check --repair` deletes it after recounting.
pub const META_ANOMALY: &[u8] = b"anomaly/";
/// `meta` key: space counters that a change would have taken below zero (value: their
/// names, comma-separated); they were kept at zero.
pub const META_ANOMALY_SPACE: &[u8] = b"anomaly/space";
/// `meta` key prefix: `"anomaly/refs/" + chunk id [32]`, a reference count that a change
/// would have taken below zero (value: that count, i64 BE); it was kept at zero.
pub const META_ANOMALY_REFS: &[u8] = b"anomaly/refs/";

/// `meta` key: the object name of the newest metadata backup in the object store (UTF-8);
/// absent until the first. While present, packs that garbage collection empties are kept
/// until the next backup (see `META_DOOMED_PACK`).
pub const META_BACKUP_NEWEST: &[u8] = b"meta_backup";
/// `meta` key prefix: `"doomed_pack/" + pack u32 BE`, a pack in the object store that no
/// record points into any more but that the newest metadata backup may: deleted by the
/// next backup.
pub const META_DOOMED_PACK: &[u8] = b"doomed_pack/";
