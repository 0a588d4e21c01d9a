//! Property test of the engine's reference counts: random sequences of writes, overwrites,
//! truncates, hard links, unlinks, renames, snapshots, clones and deletions, after which
//! every count equals a recount (`check`) and GC frees exactly the unreferenced set.
//! Runs on the engine API directly (real RocksDB, no mount) so many cases fit in seconds.

use crate::common::{repeating_blocks, small_chunk_engine_volume};
use nanofs::volume::{Kind, RenameMode, SetAttr, Volume};
use nanofs::Ino;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write { file: u8, offset: u32, len: u32, seed: u8 },
    Truncate { file: u8, size: u32 },
    Link { file: u8, to: u8 },
    Unlink { file: u8 },
    Rename { file: u8, to: u8 },
    Snapshot { name: u8 },
    DeleteSnapshot { name: u8 },
    Clone { file: u8, to: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u32..600_000, 1u32..400_000, any::<u8>()).prop_map(|(file, offset, len, seed)| Op::Write { file, offset, len, seed }),
        1 => (0u8..6, 0u32..700_000).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => (0u8..6, 0u8..6).prop_map(|(file, to)| Op::Link { file, to }),
        1 => (0u8..6).prop_map(|file| Op::Unlink { file }),
        1 => (0u8..6, 0u8..6).prop_map(|(file, to)| Op::Rename { file, to }),
        1 => (0u8..3).prop_map(|name| Op::Snapshot { name }),
        1 => (0u8..3).prop_map(|name| Op::DeleteSnapshot { name }),
        1 => (0u8..6, 0u8..6).prop_map(|(file, to)| Op::Clone { file, to }),
    ]
}

fn name(i: u8) -> Vec<u8> {
    format!("f{i}").into_bytes()
}

fn run(vol: &Volume, op: &Op) {
    let lookup = |i: u8| vol.lookup(Ino::ROOT, &name(i)).ok().map(|a| a.ino);
    // Errors such as NotFound or Exists are expected outcomes of random operations.
    match *op {
        Op::Write { file, offset, len, seed } => {
            let ino = match lookup(file) {
                Some(i) => i,
                None => vol.create(Ino::ROOT, &name(file), Kind::File, 0o644, 0, 0, 0).unwrap().ino,
            };
            let h = vol.open_file(ino, true).unwrap();
            vol.write(ino, u64::from(offset), &repeating_blocks(len, seed), false, false).unwrap();
            vol.release(ino, h).unwrap();
        }
        Op::Truncate { file, size } => {
            if let Some(ino) = lookup(file) {
                vol.setattr(ino, &SetAttr { size: Some(u64::from(size)), ..Default::default() }).unwrap();
            }
        }
        Op::Link { file, to } => {
            if let Some(ino) = lookup(file) {
                let _ = vol.link(ino, Ino::ROOT, &name(to));
            }
        }
        Op::Unlink { file } => {
            let _ = vol.unlink(Ino::ROOT, &name(file));
        }
        Op::Rename { file, to } => {
            let _ = vol.rename(Ino::ROOT, &name(file), Ino::ROOT, &name(to), RenameMode::Replace);
        }
        Op::Snapshot { name } => {
            let _ = vol.snapshot_create(&format!("s{name}"), "/");
        }
        Op::DeleteSnapshot { name } => {
            let _ = vol.snapshot_delete(&format!("s{name}"));
        }
        Op::Clone { file, to } => {
            let _ = vol.clone_path(&format!("f{file}"), &format!("f{to}"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn counts_equal_a_recount_and_gc_frees_exactly_the_garbage(ops in proptest::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let vol = small_chunk_engine_volume(&dir);
        for op in &ops {
            run(&vol, op);
        }
        let report = vol.check(true, false, &|_, _| {}).unwrap();
        prop_assert!(report.is_clean(), "after {ops:?}: {:?}", report.problems);
        let garbage = vol.stats().unwrap().reclaimable_bytes;
        let gc = vol.gc().unwrap();
        prop_assert_eq!(gc.stored_bytes_deleted, garbage);
        prop_assert_eq!(gc.chunks_pinned, 0);
        let after = vol.stats().unwrap();
        prop_assert_eq!(after.reclaimable_bytes, 0);
        let report = vol.check(true, false, &|_, _| {}).unwrap();
        prop_assert!(report.is_clean(), "after GC: {:?}", report.problems);
        prop_assert_eq!(report.chunks, after.chunks, "no record of a dead chunk is left");
        vol.close().unwrap();
    }
}
