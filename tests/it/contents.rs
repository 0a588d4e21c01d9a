//! Property test of the data path's contents: random writes (overwrites, appends, writes
//! past the end that leave holes), truncates and extensions of a few files, on the engine
//! API (real RocksDB, no mount), read back against a plain byte model after every
//! operation, and again after the volume is closed and reopened (cold caches, committed
//! state only).

use crate::common::{open_engine_volume, repeating_blocks, small_chunk_engine_volume};
use nanofs::volume::{Kind, SetAttr, Volume};
use nanofs::Ino;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write { file: u8, offset: u32, len: u32, seed: u8 },
    Truncate { file: u8, size: u32 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u32..900_000, 1u32..300_000, any::<u8>()).prop_map(|(file, offset, len, seed)| Op::Write { file, offset, len, seed }),
        2 => (0u8..3, 0u32..1_000_000).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => Just(Op::Reopen),
    ]
}

fn name(i: u8) -> Vec<u8> {
    format!("f{i}").into_bytes()
}

fn read_all(vol: &Volume, ino: Ino) -> Vec<u8> {
    let size = vol.getattr(ino).unwrap().inode.size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let part = vol.read(ino, out.len() as u64, 1 << 20).unwrap();
        assert!(!part.is_empty(), "short read at {} of {size}", out.len());
        out.extend_from_slice(&part);
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
        let mut vol = small_chunk_engine_volume(&dir);
        let mut model: Vec<Vec<u8>> = vec![Vec::new(); 3];
        let mut inos = Vec::new();
        for i in 0..3 {
            inos.push(vol.create(Ino::ROOT, &name(i), Kind::File, 0o644, 0, 0, 0).unwrap().ino);
        }
        for op in &ops {
            match *op {
                Op::Write { file, offset, len, seed } => {
                    let (ino, bytes) = (inos[file as usize], repeating_blocks(len, seed));
                    vol.open_file(ino, true).unwrap();
                    vol.write(ino, u64::from(offset), &bytes, false, false).unwrap();
                    vol.release(ino).unwrap();
                    let m = &mut model[file as usize];
                    let end = offset as usize + bytes.len();
                    if m.len() < end {
                        m.resize(end, 0);
                    }
                    m[offset as usize..end].copy_from_slice(&bytes);
                }
                Op::Truncate { file, size } => {
                    vol.setattr(inos[file as usize], &SetAttr { size: Some(u64::from(size)), ..Default::default() }).unwrap();
                    model[file as usize].resize(size as usize, 0);
                }
                Op::Reopen => {
                    vol.close().unwrap();
                    drop(vol);
                    vol = open_engine_volume(&dir);
                }
            }
            for (i, ino) in inos.iter().enumerate() {
                prop_assert!(read_all(&vol, *ino) == model[i], "file {i} differs after {op:?} in {ops:?}");
            }
        }
        vol.close().unwrap();
        drop(vol);
        let vol = open_engine_volume(&dir);
        for (i, ino) in inos.iter().enumerate() {
            prop_assert!(read_all(&vol, *ino) == model[i], "file {i} differs after reopening, after {ops:?}");
        }
        let report = vol.check(true, false, &|_, _| {}).unwrap();
        prop_assert!(report.is_clean(), "after {ops:?}: {:?}", report.problems);
        vol.close().unwrap();
    }
}
