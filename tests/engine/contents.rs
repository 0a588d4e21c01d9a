//! Property test of the data path's contents: random writes (overwrites, appends, writes
//! past the end that leave holes), truncates and extensions, range copies between and
//! within files, punched holes and zeroed ranges of a few files, on the engine API (real
//! RocksDB, no mount), read back against a plain byte model after every operation, and
//! again after the volume is closed and reopened (cold caches, committed state only). The
//! model also knows which bytes are holes: `SEEK_DATA`/`SEEK_HOLE` must find exactly those.
//! A committer thread runs, as in a mount: a write elsewhere in an open file queues the
//! window before it, a close hands a small file's commit over, and reads, copies,
//! truncates and closes meet those queued writes and commits.

use crate::common::{engine_volume, open_engine_volume, repeating_blocks, small_chunk_engine_volume};
use nanofs::volume::{Error, Kind, Seek, SetAttr, SetTime, Timestamp, Volume};
use nanofs::Ino;
use proptest::prelude::*;
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
enum Op {
    /// Writes through one open handle, in order.
    Write {
        file: u8,
        pieces: Vec<(u32, u32, u8)>,
    },
    Truncate {
        file: u8,
        size: u32,
    },
    Copy {
        src: u8,
        src_offset: u32,
        dst: u8,
        dst_offset: u32,
        len: u32,
    },
    Zero {
        file: u8,
        offset: u32,
        len: u32,
        keep_size: bool,
    },
    Reopen,
}

/// A file as the model holds it: its bytes, and which of them are holes.
#[derive(Debug, Clone, Default)]
struct ModelFile {
    bytes: Vec<u8>,
    data: Vec<bool>,
}

impl ModelFile {
    fn grow(&mut self, end: usize) {
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
            self.data.resize(end, false);
        }
    }

    /// The answer `lseek` must give: the first data byte or hole at or after `offset`.
    fn seek(&self, offset: usize, want_data: bool) -> Option<usize> {
        if offset >= self.bytes.len() {
            return None;
        }
        match self.data[offset..].iter().position(|d| *d == want_data) {
            Some(i) => Some(offset + i),
            None if want_data => None,
            None => Some(self.bytes.len()),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, proptest::collection::vec((0u32..900_000, 1u32..300_000, any::<u8>()), 1..5)).prop_map(|(file, pieces)| Op::Write { file, pieces }),
        2 => (0u8..3, 0u32..1_000_000).prop_map(|(file, size)| Op::Truncate { file, size }),
        3 => (0u8..3, 0u32..900_000, 0u8..3, 0u32..900_000, 0u32..400_000).prop_map(|(src, src_offset, dst, dst_offset, len)| Op::Copy { src, src_offset, dst, dst_offset, len }),
        2 => (0u8..3, 0u32..900_000, 1u32..300_000, any::<bool>()).prop_map(|(file, offset, len, keep_size)| Op::Zero { file, offset, len, keep_size }),
        1 => Just(Op::Reopen),
    ]
}

fn name(i: u8) -> Vec<u8> {
    format!("f{i}").into_bytes()
}

/// `vol` with a committer thread, as mounted.
fn with_committer(vol: Volume) -> (Arc<Volume>, JoinHandle<()>) {
    let vol = Arc::new(vol);
    let committer = vol.clone();
    (vol, std::thread::spawn(move || committer.run_committer()))
}

/// Closes `vol` (which stops its committer) and waits for the committer thread.
fn close(vol: Arc<Volume>, committer: JoinHandle<()>) {
    vol.close().unwrap();
    committer.join().unwrap();
}

fn read_all(vol: &Volume, ino: Ino) -> Vec<u8> {
    read_all_by(vol, ino, ReadBy::Whole)
}

/// How `read_all_by` reads.
#[derive(Clone, Copy, Debug)]
enum ReadBy {
    /// `read`, 1 MiB at a time.
    Whole,
    /// `read_shared` (which may stop at a chunk's end), 1 MiB at a time.
    Shared,
    /// `read_pieces`, in reads of an odd size that start and end inside chunks.
    Pieces,
}

/// The whole file, read as `by` says.
fn read_all_by(vol: &Volume, ino: Ino, by: ReadBy) -> Vec<u8> {
    let size = vol.getattr(ino).unwrap().inode.size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let at = out.len() as u64;
        let before = out.len();
        match by {
            ReadBy::Whole => out.extend_from_slice(&vol.read(ino, at, 1 << 20).unwrap()),
            ReadBy::Shared => out.extend_from_slice(&vol.read_shared(ino, at, 1 << 20).unwrap()),
            ReadBy::Pieces => {
                let pieces = vol.read_pieces(ino, at, 777_777).unwrap();
                let len: usize = pieces.iter().map(|p| p.len()).sum();
                assert_eq!(len as u64, (size - at).min(777_777), "pieces cover the whole read at {at}");
                pieces.iter().for_each(|p| out.extend_from_slice(p));
            }
        }
        assert!(out.len() > before, "short read at {before} of {size} by {by:?}");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn files_read_back_what_a_byte_model_holds(ops in proptest::collection::vec(op(), 1..30)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        // Small chunks: writes cut through committed ones.
        let (mut vol, mut committer) = with_committer(small_chunk_engine_volume(&dir));
        let mut model: Vec<ModelFile> = vec![ModelFile::default(); 3];
        let mut inos = Vec::new();
        for i in 0..3 {
            inos.push(vol.create(Ino::ROOT, &name(i), Kind::File, 0o644, 0, 0, 0).unwrap().ino);
        }
        for op in &ops {
            match *op {
                Op::Write { file, ref pieces } => {
                    let ino = inos[file as usize];
                    let h = vol.open_file(ino, true).unwrap();
                    for &(offset, len, seed) in pieces {
                        let bytes = repeating_blocks(len, seed);
                        vol.write(ino, u64::from(offset), &bytes, false, false).unwrap();
                        let m = &mut model[file as usize];
                        let range = offset as usize..offset as usize + bytes.len();
                        m.grow(range.end);
                        m.bytes[range.clone()].copy_from_slice(&bytes);
                        m.data[range].fill(true);
                    }
                    // A close: a small window's commit goes to the committer.
                    vol.flush(ino, h).unwrap();
                    vol.release(ino, h).unwrap();
                }
                Op::Truncate { file, size } => {
                    vol.setattr(inos[file as usize], &SetAttr { size: Some(u64::from(size)), ..Default::default() }).unwrap();
                    let m = &mut model[file as usize];
                    m.bytes.resize(size as usize, 0);
                    m.data.resize(size as usize, false);
                }
                Op::Copy { src, src_offset, dst, dst_offset, len } => {
                    let copied = vol.copy_range(inos[src as usize], u64::from(src_offset), inos[dst as usize], u64::from(dst_offset), u64::from(len)).unwrap();
                    let s = &model[src as usize];
                    let from = (src_offset as usize).min(s.bytes.len());
                    let to = (src_offset as usize + len as usize).min(s.bytes.len());
                    prop_assert_eq!(copied, (to - from) as u64, "bytes copied by {:?}", op);
                    let (bytes, data) = (s.bytes[from..to].to_vec(), s.data[from..to].to_vec());
                    if !bytes.is_empty() {
                        let d = &mut model[dst as usize];
                        let range = dst_offset as usize..dst_offset as usize + bytes.len();
                        d.grow(range.end);
                        d.bytes[range.clone()].copy_from_slice(&bytes);
                        d.data[range].copy_from_slice(&data);
                    }
                }
                Op::Zero { file, offset, len, keep_size } => {
                    let ino = inos[file as usize];
                    if keep_size {
                        vol.punch_hole(ino, u64::from(offset), u64::from(len)).unwrap();
                    } else {
                        vol.zero_range(ino, u64::from(offset), u64::from(len), false).unwrap();
                    }
                    let m = &mut model[file as usize];
                    if !keep_size {
                        m.grow(offset as usize + len as usize);
                    }
                    let end = (offset as usize + len as usize).min(m.bytes.len());
                    if (offset as usize) < end {
                        m.bytes[offset as usize..end].fill(0);
                        m.data[offset as usize..end].fill(false);
                    }
                }
                Op::Reopen => {
                    close(vol, committer);
                    (vol, committer) = with_committer(open_engine_volume(&dir));
                }
            }
            for (i, ino) in inos.iter().enumerate() {
                prop_assert!(read_all(&vol, *ino) == model[i].bytes, "file {i} differs after {op:?} in {ops:?}");
                prop_assert!(read_all_by(&vol, *ino, ReadBy::Shared) == model[i].bytes, "file {i} differs read shared, after {op:?} in {ops:?}");
                prop_assert!(read_all_by(&vol, *ino, ReadBy::Pieces) == model[i].bytes, "file {i} differs read in pieces, after {op:?} in {ops:?}");
                for at in [0, model[i].bytes.len() / 3, model[i].bytes.len().saturating_sub(1)] {
                    for (what, want_data) in [(Seek::Data, true), (Seek::Hole, false)] {
                        let got = match vol.seek(*ino, at as u64, what) {
                            Ok(n) => Some(n as usize),
                            Err(Error::NoData) => None,
                            Err(e) => panic!("seek: {e}"),
                        };
                        prop_assert_eq!(got, model[i].seek(at, want_data), "{:?} from {} in file {} after {:?} in {:?}", what, at, i, op, ops);
                    }
                }
            }
        }
        close(vol, committer);
        let vol = open_engine_volume(&dir);
        for (i, ino) in inos.iter().enumerate() {
            prop_assert!(read_all(&vol, *ino) == model[i].bytes, "file {i} differs after reopening, after {ops:?}");
        }
        let report = vol.check(true, false, &|_, _| {}).unwrap();
        prop_assert!(report.is_clean(), "after {ops:?}: {:?}", report.problems);
        vol.close().unwrap();
    }
}

#[test]
fn ranges_of_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = small_chunk_engine_volume(&tmp.path().join("vol"));
    let f = vol.create(Ino::ROOT, b"f", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    assert!(matches!(vol.copy_range(Ino::ROOT, 0, f, 0, 10), Err(Error::IsDir)));
    assert!(matches!(vol.copy_range(f, 0, Ino::ROOT, 0, 10), Err(Error::IsDir)));
    assert!(matches!(vol.punch_hole(Ino::ROOT, 0, 10), Err(Error::IsDir)));
    assert_eq!(vol.getattr(Ino::ROOT).unwrap().inode.kind, Kind::Dir);
    vol.close().unwrap();
}

/// A shared read (a download's) of a committed file stops at the end of the chunk that
/// holds its offset, and its pieces still make up the file; while the file has writes in
/// flight it reads as much as asked.
#[test]
fn a_shared_read_stops_at_its_chunk_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, committer) = with_committer(small_chunk_engine_volume(&tmp.path().join("vol")));
    let ino = vol.create(Ino::ROOT, b"f", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let h = vol.open_file(ino, true).unwrap();
    vol.write(ino, 0, &data, false, false).unwrap();
    vol.release(ino, h).unwrap();
    vol.fsync(ino, None).unwrap();
    let first = vol.read_shared(ino, 0, 1 << 20).unwrap();
    assert!(!first.is_empty() && first.len() < 1 << 20, "{} bytes: not cut at a chunk's end", first.len());
    assert!(read_all_by(&vol, ino, ReadBy::Shared) == data);
    let pieces = vol.read_pieces(ino, 0, 1 << 20).unwrap();
    assert!(pieces.len() > 1, "a read across chunks comes as the chunks' own bytes, one piece each");
    let h = vol.open_file(ino, true).unwrap();
    vol.write(ino, 10, b"in flight", false, false).unwrap();
    assert_eq!(vol.read_shared(ino, 0, 1 << 20).unwrap().len(), 1 << 20, "a window is read whole");
    assert_eq!(vol.read_pieces(ino, 0, 1 << 20).unwrap().len(), 1, "a window is assembled into one piece");
    assert_eq!(&vol.read_shared(ino, 10, 9).unwrap()[..], b"in flight");
    vol.release(ino, h).unwrap();
    close(vol, committer);
}

#[test]
fn a_read_over_many_small_extents_comes_in_one_piece() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, committer) = with_committer(small_chunk_engine_volume(&tmp.path().join("vol")));
    let ino = vol.create(Ino::ROOT, b"f", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let mut model: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let h = vol.open_file(ino, true).unwrap();
    vol.write(ino, 0, &model, false, false).unwrap();
    vol.fsync(ino, None).unwrap();
    // Small overwrites, each committed on its own, leave 200 extents end to end.
    for i in 0..100u64 {
        let at = i * 40;
        vol.write(ino, at, &[0xee; 10], false, false).unwrap();
        vol.fsync(ino, None).unwrap();
        model[at as usize..at as usize + 10].fill(0xee);
    }
    vol.release(ino, h).unwrap();
    let pieces = vol.read_pieces(ino, 0, 4000).unwrap();
    assert_eq!(pieces.len(), 1, "many small pieces are assembled (a gather write takes at most 1024)");
    assert!(pieces[0][..] == model[..]);
    assert!(read_all_by(&vol, ino, ReadBy::Pieces) == model);
    close(vol, committer);
}

/// The kernel's xattr form of an access ACL with only the owner, group and other
/// entries: the same as mode bits `mode`.
fn acl_of_mode(mode: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, mode >> 6), (0x04, mode >> 3), (0x20, mode)] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&((perm & 0o7) as u16).to_le_bytes());
        v.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    v
}

/// An append takes the file's last chunk back into its window (so a file written in pieces
/// cuts like one written at once); a queued write into that chunk must not be undone by it.
#[test]
fn an_append_keeps_a_queued_write_into_the_last_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, committer) = with_committer(small_chunk_engine_volume(&tmp.path().join("vol")));
    let ino = vol.create(Ino::ROOT, b"f", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let mut model = repeating_blocks(100_000, 1);
    let h = vol.open_file(ino, true).unwrap();
    vol.write(ino, 0, &model, false, false).unwrap();
    vol.release(ino, h).unwrap();
    vol.fsync(ino, None).unwrap();
    for round in 0..20u8 {
        let h = vol.open_file(ino, true).unwrap();
        // Into the last bytes, then an append right at the committed end.
        let at = model.len() - 50;
        vol.write(ino, at as u64, &[round; 10], false, false).unwrap();
        model[at..at + 10].fill(round);
        let tail = repeating_blocks(3_000, round);
        vol.write(ino, model.len() as u64, &tail, false, false).unwrap();
        model.extend_from_slice(&tail);
        assert!(read_all(&vol, ino) == model, "round {round}: wrong bytes while queued");
        vol.release(ino, h).unwrap();
        vol.fsync(ino, None).unwrap();
        assert!(read_all(&vol, ino) == model, "round {round}: wrong bytes once committed");
    }
    close(vol, committer);
}

/// A close hands a small file's commit to the committer. A chmod and utimens that come
/// before that commit (as `rsync` sends them right after the close) keep what they set,
/// and the file has the writes' size and bytes, before and after the commit and after
/// reopening; a setuid bit that the write stripped stays stripped unless a chmod sets it.
/// Most of those changes fold into the pending commit (`FileState::pending_attrs`); an
/// access ACL set after them, and a write after them, keep their own effects.
#[test]
fn attributes_set_after_a_close_outlast_the_handed_over_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let (vol, committer) = with_committer(engine_volume(&dir, ""));
    let at = |i: u32| Timestamp { secs: 1_000_000 + i64::from(i), nanos: i };
    let mut files = Vec::new();
    for i in 0..60u32 {
        let ino = vol.create(Ino::ROOT, format!("f{i}").as_bytes(), Kind::File, 0o4755, 0, 0, 0).unwrap().ino;
        let bytes = repeating_blocks(1_000 + i * 97, i as u8);
        let h = vol.open_file(ino, true).unwrap();
        // Odd files are written by someone other than the owner: setuid goes.
        vol.write(ino, 0, &bytes, false, i % 2 == 1).unwrap();
        vol.flush(ino, h).unwrap();
        vol.release(ino, h).unwrap();
        // Every third file gets its mode set again; all get their times set.
        let perm = (i % 3 == 0).then_some(0o4700);
        let set = SetAttr { perm, mtime: Some(SetTime::At(at(i))), ..Default::default() };
        let attr = vol.setattr(ino, &set).unwrap();
        assert_eq!(attr.inode.size, bytes.len() as u64, "file {i}: the size in the reply");
        assert_eq!(attr.inode.mtime, at(i), "file {i}: the mtime in the reply");
        let mut want_perm = perm.unwrap_or(if i % 2 == 1 { 0o755 } else { 0o4755 });
        let mut bytes = bytes;
        // Every seventh file then gets an access ACL (a mode change of its own): it must
        // not be undone by a chmod folded into the commit before it.
        if i % 7 == 0 {
            vol.setxattr(ino, b"system.posix_acl_access", &acl_of_mode(0o750), false, false).unwrap();
            want_perm = (want_perm & !0o777) | 0o750;
        }
        // Every fifth file is written again, by someone else, before its commit: that
        // write's mtime and its stripping of setuid win over the earlier utimens and chmod.
        if i % 5 == 0 {
            let h = vol.open_file(ino, true).unwrap();
            let more = repeating_blocks(500, 7);
            vol.write(ino, bytes.len() as u64, &more, false, true).unwrap();
            bytes.extend_from_slice(&more);
            vol.flush(ino, h).unwrap();
            vol.release(ino, h).unwrap();
            want_perm &= !0o4000;
        }
        files.push((ino, bytes, want_perm));
    }
    let check = |vol: &Volume, when: &str| {
        for (i, (ino, bytes, perm)) in files.iter().enumerate() {
            let inode = vol.getattr(*ino).unwrap().inode;
            if i % 5 == 0 {
                assert!(inode.mtime > at(1_000), "file {i} {when}: the later write's mtime, not {:?}", inode.mtime);
            } else {
                assert_eq!(inode.mtime, at(i as u32), "file {i} {when}: mtime");
            }
            assert_eq!(inode.perm, *perm, "file {i} {when}: mode {:o}", inode.perm);
            assert!(read_all(vol, *ino) == *bytes, "file {i} {when}: bytes");
        }
    };
    check(&vol, "while committing");
    vol.sync_all().unwrap();
    check(&vol, "once committed");
    close(vol, committer);
    let vol = open_engine_volume(&dir);
    check(&vol, "after reopening");
    assert!(vol.check(true, false, &|_, _| {}).unwrap().is_clean());
    vol.close().unwrap();
}

/// A file closed with a random write still queued, and deleted before the committer
/// reaches it (as SQLite does with its rollback journal), leaves nothing behind: the
/// committer drops its writes, the volume closes cleanly, and its space is free.
#[test]
fn a_file_deleted_before_its_handed_over_commit_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (vol, committer) = with_committer(small_chunk_engine_volume(&tmp.path().join("vol")));
    let kept = vol.create(Ino::ROOT, b"kept", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let kept_bytes = repeating_blocks(50_000, 7);
    let h = vol.open_file(kept, true).unwrap();
    vol.write(kept, 0, &kept_bytes, false, false).unwrap();
    vol.release(kept, h).unwrap();
    vol.fsync(kept, None).unwrap();
    let before = vol.stats().unwrap();
    for i in 0..40u8 {
        let name = format!("journal{i}");
        let ino = vol.create(Ino::ROOT, name.as_bytes(), Kind::File, 0o644, 0, 0, 0).unwrap().ino;
        let h = vol.open_file(ino, true).unwrap();
        vol.write(ino, 0, &repeating_blocks(20_000, i), false, false).unwrap();
        // A write elsewhere sets the first one aside, into the committer's queue.
        vol.write(ino, 1 << 20, &repeating_blocks(3_000, i.wrapping_add(100)), false, false).unwrap();
        vol.write(ino, 0, b"header", false, false).unwrap();
        vol.flush(ino, h).unwrap();
        vol.release(ino, h).unwrap();
        vol.unlink(Ino::ROOT, name.as_bytes()).unwrap();
    }
    vol.sync_all().unwrap();
    let after = vol.stats().unwrap();
    assert_eq!(after.logical_bytes, before.logical_bytes, "the deleted files' bytes still count");
    assert_eq!(after.unique_bytes, before.unique_bytes, "the deleted files' chunks are still referenced");
    assert!(read_all(&vol, kept) == kept_bytes);
    assert!(vol.check(true, false, &|_, _| {}).unwrap().is_clean(), "reference counts or bodies out of step");
    close(vol, committer);
}
