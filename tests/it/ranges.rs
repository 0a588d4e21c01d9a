//! Range operations on a real mount, through the system calls and tools that use them:
//! `copy_file_range` (and `cp`, which calls it) shares chunks instead of copying bytes;
//! `fallocate` punches holes and zeroes ranges (`fallocate -p`, `-z`, `--dig-holes`);
//! `lseek` finds data and holes (`SEEK_DATA`/`SEEK_HOLE`), so sparse-aware tools see them.

use crate::common::{sh, write_random_file, TestVolume};

/// Runs a Python snippet (the standard library calls the system calls directly).
fn py(script: &str) -> String {
    sh(&format!("python3 - <<'EOF'\n{script}\nEOF"))
}

#[test]
fn copy_file_range_shares_chunks_at_any_offset_and_copies_stay_independent() {
    let vol = TestVolume::new();
    let m = vol.mount();
    let src = m.p("src.bin");
    write_random_file(&src, 7, 48 << 20);
    sh(&format!("sync -f '{}'", src.display()));
    let (chunks, unique) = (vol.stat_u64("chunks"), vol.stat_u64("unique_bytes"));

    // `cp` of the whole file.
    sh(&format!("cp '{}' '{}'", src.display(), m.p("whole.bin").display()));
    sh(&format!("cmp '{}' '{}'", src.display(), m.p("whole.bin").display()));

    // Unaligned ranges into a new file: a byte copy would store new chunks at its cut
    // points, which start at the copy's first byte; a shared copy stores none.
    let out = py(&format!(
        r#"
import os
src = os.open("{src}", os.O_RDONLY)
dst = os.open("{dst}", os.O_WRONLY | os.O_CREAT, 0o644)
print(os.copy_file_range(src, dst, 20_000_011, 123_457, 5_000_003))
print(os.copy_file_range(src, dst, 3_333_333, 7, 30_000_000))
os.close(src); os.close(dst)
"#,
        src = src.display(),
        dst = m.p("parts.bin").display()
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["20000011", "3333333"], "bytes copied per call");
    let expect = py(&format!(
        r#"
import hashlib
d = open("{src}", "rb").read()
want = bytearray(30_000_000 + 3_333_333)
want[5_000_003:5_000_003 + 20_000_011] = d[123_457:123_457 + 20_000_011]
want[30_000_000:] = d[7:7 + 3_333_333]
print(hashlib.sha256(want).hexdigest())
print(hashlib.sha256(open("{dst}", "rb").read()).hexdigest())
"#,
        src = src.display(),
        dst = m.p("parts.bin").display()
    ));
    let sums: Vec<&str> = expect.split_whitespace().collect();
    assert_eq!(sums[0], sums[1], "the copied ranges read back as the source's bytes, the gap as zeros");
    sh(&format!("sync -f '{}'", src.display()));
    assert_eq!(vol.stat_u64("chunks"), chunks, "copies stored no new chunk");
    assert_eq!(vol.stat_u64("unique_bytes"), unique, "copies stored no new bytes");

    // Writing into a copy leaves the source as it was.
    let before = sh(&format!("sha256sum < '{}'", src.display()));
    sh(&format!(
        "printf 'changed' | dd of='{}' bs=1 seek=1000000 conv=notrunc status=none",
        m.p("whole.bin").display()
    ));
    assert_eq!(sh(&format!("sha256sum < '{}'", src.display())), before);
    assert_ne!(sh(&format!("sha256sum < '{}'", m.p("whole.bin").display())), before);
    m.unmount();
    vol.assert_clean(&["--read-data"]);
}

#[test]
fn punched_holes_read_as_zeros_free_their_blocks_and_seek_finds_them() {
    let vol = TestVolume::new();
    let m = vol.mount();
    let f = m.p("image.raw");
    write_random_file(&f, 11, 16 << 20);
    let blocks = |p: &std::path::Path| sh(&format!("stat -c %b '{}'", p.display())).trim().parse::<u64>().unwrap();
    let full = blocks(&f);
    // Unaligned on purpose: the edges cut through chunks.
    sh(&format!("fallocate -p -o 3000001 -l 5000000 '{}'", f.display()));
    assert_eq!(sh(&format!("stat -c %s '{}'", f.display())).trim(), (16u64 << 20).to_string(), "size kept");
    assert!(blocks(&f) + 9000 < full, "the hole's blocks are freed: {} of {full}", blocks(&f));
    let out = py(&format!(
        r#"
import os
fd = os.open("{f}", os.O_RDONLY)
print(os.lseek(fd, 0, os.SEEK_HOLE), os.lseek(fd, 3000001, os.SEEK_DATA), os.lseek(fd, 8000001, os.SEEK_HOLE))
try:
    os.lseek(fd, 16 << 20, os.SEEK_DATA)
    print("no ENXIO")
except OSError as e:
    print(e.errno == 6)
print(os.pread(fd, 5000000, 3000001) == bytes(5000000), os.pread(fd, 10, 2999991) != bytes(10))
"#,
        f = f.display()
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["3000001", "8000001", "16777216", "True", "True", "True"]);

    // Zero range (`fallocate -z`) past the end extends the file with a hole.
    sh(&format!("fallocate -z -o {} -l 1048576 '{}'", 16 << 20, f.display()));
    assert_eq!(sh(&format!("stat -c %s '{}'", f.display())).trim(), (17u64 << 20).to_string());

    // `fallocate --dig-holes` finds runs of zeros by reading and punches them; `cp
    // --sparse=always` and `du` see the result.
    let z = m.p("zeros.bin");
    sh(&format!(
        "head -c 4194304 /dev/urandom > '{z}'; head -c 8388608 /dev/zero >> '{z}'; head -c 4194304 /dev/urandom >> '{z}'",
        z = z.display()
    ));
    let dense = blocks(&z);
    sh(&format!("fallocate --dig-holes '{}'", z.display()));
    assert!(blocks(&z) * 2 < dense + 1024, "dig-holes freed the zeros: {} of {dense}", blocks(&z));
    let holes = py(&format!(
        "import os\nfd = os.open('{}', os.O_RDONLY)\nprint(os.lseek(fd, 0, os.SEEK_HOLE) <= 4194304, os.lseek(fd, 4194304, os.SEEK_DATA) >= 12582912 - 65536)",
        z.display()
    ));
    assert_eq!(holes.trim(), "True True");
    sh(&format!("cp --sparse=always '{}' '{}'", z.display(), m.p("zeros.copy").display()));
    sh(&format!("cmp '{}' '{}'", z.display(), m.p("zeros.copy").display()));
    m.unmount();
    vol.assert_clean(&["--read-data"]);
}
