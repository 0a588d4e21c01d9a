//! Deduplication and the space counters.

use crate::common::*;

#[test]
fn the_same_200_mib_file_twice_grows_storage_by_under_one_percent() {
    let v = TestVolume::new();
    let src = v.tmp.path().join("media.bin");
    write_random_file(&src, 77, 200 << 20);
    let m = v.mount();
    sh(&format!("cp '{}' '{}'", src.display(), m.p("first.bin").display()));
    sh(&format!("sync -f '{}'", m.p("first.bin").display()));
    let after_one = v.stat_u64("stored_bytes");
    sh(&format!("cp '{}' '{}'", src.display(), m.p("second.bin").display()));
    sh(&format!("sync -f '{}'", m.p("second.bin").display()));
    let after_two = v.stat_u64("stored_bytes");
    assert!(after_one >= 200 << 20, "incompressible data is stored in full ({after_one})");
    let growth = (after_two - after_one) as f64 / after_one as f64;
    assert!(growth < 0.01, "second copy grew stored bytes by {:.3} %", growth * 100.0);
    let s = v.stats();
    assert_eq!(s["logical_bytes"].as_u64(), Some(400 << 20));
    assert!(s["dedup_ratio"].as_f64().unwrap() > 1.98, "{s}");
    assert_eq!(sha256(&m.p("second.bin")), sha256(&src));
    m.unmount();
}

#[test]
fn a_block_repeated_inside_one_large_file_is_stored_once() {
    let v = TestVolume::new();
    let m = v.mount();
    // 16 MiB of random bytes four times in a row: one write window, streamed to packs,
    // with no chunk committed before its repeats are written.
    let block = random_bytes(31, 16 << 20);
    let whole: Vec<u8> = block.iter().copied().cycle().take(64 << 20).collect();
    std::fs::write(m.p("repeats.bin"), &whole).unwrap();
    let s = v.stats();
    let (stored, disk) = (s["stored_bytes"].as_u64().unwrap(), s["disk_bytes"].as_u64().unwrap());
    // Each repeat adds the few chunks across its seam; the rest are the first copy's.
    assert!(stored < 28 << 20, "stored {stored}: {s}");
    assert!(disk < 40 << 20, "the packs hold each body once, disk {disk}: {s}");
    assert_eq!(std::fs::read(m.p("repeats.bin")).unwrap(), whole);
    m.unmount();
    assert!(v.run_ok(&["check", v.path(), "--read-data"]).contains("clean"));
}

#[test]
fn compressible_data_is_stored_smaller_and_reads_back() {
    let v = TestVolume::new();
    let m = v.mount();
    let text: Vec<u8> = (0..(20 << 20) / 64).flat_map(|i: u32| format!("{:>63}\n", i % 1000).into_bytes()).collect();
    std::fs::write(m.p("log.txt"), &text).unwrap();
    assert_eq!(std::fs::read(m.p("log.txt")).unwrap(), text);
    m.unmount();
    let s = v.stats();
    assert!(s["stored_bytes"].as_u64().unwrap() < s["logical_bytes"].as_u64().unwrap() / 4, "{s}");
}

#[test]
fn deleting_files_returns_live_counters_to_zero() {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("a"), 1, 30 << 20);
    std::fs::copy(m.p("a"), m.p("b")).unwrap();
    std::fs::remove_file(m.p("a")).unwrap();
    std::fs::remove_file(m.p("b")).unwrap();
    m.unmount();
    let m = v.mount();
    let s = v.stats();
    m.unmount();
    assert_eq!(s["logical_bytes"].as_u64(), Some(0), "{s}");
    assert_eq!(s["chunks"].as_u64(), Some(0), "{s}");
    assert_eq!(s["stored_bytes"].as_u64(), Some(0), "{s}");
    assert!(s["reclaimable_bytes"].as_u64().unwrap() >= 30 << 20, "{s}");
}

#[test]
fn gc_frees_the_space_of_deleted_files_but_not_of_live_ones() {
    let v = TestVolume::new();
    let m = v.mount();
    write_random_file(&m.p("keep"), 1, 20 << 20);
    write_random_file(&m.p("drop"), 2, 60 << 20);
    // Shares every chunk with `keep`: deleting it must not free them.
    std::fs::copy(m.p("keep"), m.p("keep-copy")).unwrap();
    std::fs::remove_file(m.p("keep-copy")).unwrap();
    std::fs::remove_file(m.p("drop")).unwrap();
    let before = v.stats();
    let out = nanofs(&["gc", v.path(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = v.stats();
    assert_eq!(after["reclaimable_bytes"].as_u64(), Some(0), "{after}");
    // The deleted file's space is freed: as garbage chunks if its commit (which runs in
    // the background after a large file's close) came before the unlink, otherwise as
    // dead bytes in its pack, which collection rewrites. Only the live 20 MiB remain,
    // with a little overhead.
    let disk_after = after["disk_bytes"].as_u64().unwrap();
    assert!(before["disk_bytes"].as_u64().unwrap() - disk_after >= 40 << 20, "{report}");
    assert!(disk_after < (20 << 20) + (2 << 20), "{disk_after} bytes on disk for 20 MiB of live data: {report}");
    assert_eq!(after["logical_bytes"].as_u64(), Some(20 << 20));
    // The survivor reads back intact, now and after a remount.
    assert_eq!(sha256(&m.p("keep")), {
        let tmp = v.tmp.path().join("keep-ref");
        write_random_file(&tmp, 1, 20 << 20);
        sha256(&tmp)
    });
    m.unmount();
    let m = v.mount();
    let tmp = v.tmp.path().join("keep-ref");
    assert_eq!(sha256(&m.p("keep")), sha256(&tmp));
    // Checked through the daemon, while mounted.
    let out = nanofs(&["check", v.path(), "--read-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    m.unmount();
}

/// Writes `data` as file `name` of the root through the engine API; returns its inode.
fn engine_write(vol: &nanofs::volume::Volume, name: &str, data: &[u8]) -> nanofs::ids::Ino {
    use nanofs::ids::Ino;
    let ino = vol.create(Ino::ROOT, name.as_bytes(), nanofs::volume::Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    vol.open_file(ino, true).unwrap();
    vol.write(ino, 0, data, false, false).unwrap();
    vol.release(ino).unwrap();
    ino
}

/// The plain hashes of a file's chunks: equal sets mean equal cut points.
fn chunk_set(vol: &nanofs::volume::Volume, ino: nanofs::ids::Ino) -> std::collections::HashSet<[u8; 32]> {
    vol.chunks_by_plain_hash(ino).unwrap().into_keys().collect()
}

/// New volumes draw their chunk boundaries from their key: two volumes cut the same data at
/// different places, neither where FastCDC's public table would; inside one volume the
/// same data written twice is stored once, as before.
#[test]
fn keyed_volumes_cut_the_same_data_differently_and_still_dedup() {
    let data = random_bytes(21, 3 << 20);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut sets = Vec::new();
    for d in &dirs {
        let vol = small_chunk_engine_volume(&d.path().join("v"));
        let first = engine_write(&vol, "first", &data);
        let stored = vol.stats().unwrap().stored_bytes;
        let second = engine_write(&vol, "second", &data);
        assert_eq!(vol.stats().unwrap().stored_bytes, stored, "the second copy stores nothing");
        assert_eq!(chunk_set(&vol, first), chunk_set(&vol, second));
        sets.push(chunk_set(&vol, first));
        vol.close().unwrap();
    }
    let public: std::collections::HashSet<[u8; 32]> = {
        let params = nanofs::chunk::ChunkParams::from_kib(16, 64, 256);
        let mut at = 0;
        nanofs::chunk::cut_points(&data, &params, true)
            .into_iter()
            .map(|len| {
                at += len;
                nanofs::volume::plain_hash(&data[at - len..at])
            })
            .collect()
    };
    assert!(sets[0].len() > 20, "{} chunks", sets[0].len());
    for (x, y, what) in [(&sets[0], &sets[1], "two volumes"), (&sets[0], &public, "a volume and the public table")] {
        let shared = x.intersection(y).count();
        assert!(shared * 10 < x.len(), "{what} share {shared} of {} chunks", x.len());
    }
}
