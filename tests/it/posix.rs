//! POSIX behaviour through a real mount.

use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

on_both_transports!(hard_links_symlinks_and_xattrs);
fn hard_links_symlinks_and_xattrs() {
    let v = TestVolume::new();
    let m = v.mount();
    fs::write(m.p("orig"), b"shared inode").unwrap();
    fs::hard_link(m.p("orig"), m.p("link")).unwrap();
    assert_eq!(fs::metadata(m.p("orig")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.p("orig")).unwrap().ino(), fs::metadata(m.p("link")).unwrap().ino());
    fs::OpenOptions::new().append(true).open(m.p("link")).unwrap().write_all(b"!").unwrap();
    assert_eq!(fs::read(m.p("orig")).unwrap(), b"shared inode!");
    fs::remove_file(m.p("orig")).unwrap();
    assert_eq!(fs::metadata(m.p("link")).unwrap().nlink(), 1);
    assert_eq!(fs::read(m.p("link")).unwrap(), b"shared inode!");
    assert!(fs::hard_link(m.p("."), m.p("dirlink")).is_err(), "no hard links to directories");

    std::os::unix::fs::symlink("../some/where", m.p("sym")).unwrap();
    assert_eq!(fs::read_link(m.p("sym")).unwrap().to_str(), Some("../some/where"));
    assert!(fs::symlink_metadata(m.p("sym")).unwrap().file_type().is_symlink());
    let long_target = "x/".repeat(2000);
    std::os::unix::fs::symlink(&long_target, m.p("longsym")).unwrap();
    assert_eq!(fs::read_link(m.p("longsym")).unwrap().to_str(), Some(long_target.as_str()));

    let f = m.p("link");
    sh(&format!("setfattr -n user.colour -v blue '{}'", f.display()));
    sh(&format!("setfattr -n user.empty '{}'", f.display()));
    let big = "v".repeat(60_000);
    sh(&format!("setfattr -n user.big -v {big} '{}'", f.display()));
    let dump = sh(&format!("getfattr -d '{}'", f.display()));
    assert!(dump.contains("user.colour=\"blue\""), "{dump}");
    assert!(dump.contains("user.empty"), "{dump}");
    assert_eq!(sh(&format!("getfattr --only-values -n user.big '{}'", f.display())), big);
    sh(&format!("setfattr -x user.colour '{}'", f.display()));
    let out = std::process::Command::new("getfattr").args(["-n", "user.colour"]).arg(&f).output().unwrap();
    assert!(!out.status.success(), "removed xattr is gone");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such attribute"));
    m.unmount();
    let m = v.mount();
    assert_eq!(sh(&format!("getfattr --only-values -n user.big '{}'", m.p("link").display())), big);
    assert_eq!(fs::read_link(m.p("sym")).unwrap().to_str(), Some("../some/where"));
    m.unmount();
}

on_both_transports!(rename_variants);
fn rename_variants() {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    let v = TestVolume::new();
    let m = v.mount();
    fs::create_dir(m.p("d1")).unwrap();
    fs::create_dir(m.p("d2")).unwrap();
    fs::write(m.p("d1/a"), b"A").unwrap();
    fs::write(m.p("d2/b"), b"B").unwrap();
    // Over an existing file, across directories.
    fs::rename(m.p("d1/a"), m.p("d2/b")).unwrap();
    assert_eq!(fs::read(m.p("d2/b")).unwrap(), b"A");
    assert!(!m.p("d1/a").exists());
    // RENAME_NOREPLACE refuses an existing target.
    fs::write(m.p("d1/c"), b"C").unwrap();
    let err = renameat2(AT_FDCWD, &m.p("d1/c"), AT_FDCWD, &m.p("d2/b"), RenameFlags::RENAME_NOREPLACE).unwrap_err();
    assert_eq!(err, nix::errno::Errno::EEXIST);
    // RENAME_EXCHANGE swaps, including a directory and a file.
    renameat2(AT_FDCWD, &m.p("d1/c"), AT_FDCWD, &m.p("d2/b"), RenameFlags::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(m.p("d1/c")).unwrap(), b"A");
    assert_eq!(fs::read(m.p("d2/b")).unwrap(), b"C");
    fs::create_dir(m.p("d1/sub")).unwrap();
    renameat2(AT_FDCWD, &m.p("d1/sub"), AT_FDCWD, &m.p("d2/b"), RenameFlags::RENAME_EXCHANGE).unwrap();
    assert!(m.p("d2/b").is_dir());
    assert_eq!(fs::read(m.p("d1/sub")).unwrap(), b"C");
    assert_eq!(fs::metadata(m.p("d2")).unwrap().nlink(), 3, "d2 gained a subdirectory");
    assert_eq!(fs::metadata(m.p("d1")).unwrap().nlink(), 2);
    // A directory cannot move into itself; a directory replaces only an empty one.
    assert!(fs::rename(m.p("d2"), m.p("d2/b/inside")).is_err());
    fs::create_dir(m.p("d1/full")).unwrap();
    fs::write(m.p("d1/full/x"), b"x").unwrap();
    assert_eq!(fs::rename(m.p("d2/b"), m.p("d1/full")).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    fs::create_dir(m.p("d1/empty")).unwrap();
    fs::rename(m.p("d2/b"), m.p("d1/empty")).unwrap();
    assert!(m.p("d1/empty").is_dir() && !m.p("d2/b").exists());
    assert_eq!(fs::metadata(m.p("d2")).unwrap().nlink(), 2);
    // The whole tree is intact after a remount.
    m.unmount();
    let m = v.mount();
    let tree = sh(&format!("cd '{}' && find . | sort", m.path.display()));
    assert_eq!(tree, ".\n./d1\n./d1/c\n./d1/empty\n./d1/full\n./d1/full/x\n./d1/sub\n./d2\n");
    m.unmount();
}

on_both_transports!(a_large_file_reads_back_while_still_being_written);
/// A large file read back while its writer still holds it open: the streamed part lies in
/// pack files that no committed record points at yet (past the two blocks still being
/// chunked, whose bytes are kept in memory).
fn a_large_file_reads_back_while_still_being_written() {
    let v = TestVolume::new();
    let m = v.mount();
    let data = random_bytes(15, 41 << 20);
    let w = OpenOptions::new().write(true).create(true).truncate(true).open(m.p("growing")).unwrap();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        w.write_all_at(piece, (i as u64) << 20).unwrap();
    }
    // The kernel keeps written pages: drop them, so that the reads reach the daemon.
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    assert_eq!(fs::read(m.p("growing")).unwrap(), data);
    let mut middle = vec![0u8; 3 << 20];
    File::open(m.p("growing")).unwrap().read_exact_at(&mut middle, 7 << 20).unwrap();
    assert_eq!(middle, &data[7 << 20..10 << 20]);
    drop(w);
    assert_eq!(fs::read(m.p("growing")).unwrap(), data);
    m.unmount();
}

on_both_transports!(a_file_larger_than_a_write_window_reads_back_while_and_after_it_is_split);
/// A write window that reaches 512 MiB is split: its first part is synced and committed in
/// the background while the writer goes on. Reads across the split see every byte while
/// that runs, and after a remount.
fn a_file_larger_than_a_write_window_reads_back_while_and_after_it_is_split() {
    const MIB: u64 = 1 << 20;
    let block = |i: u64| random_bytes(1 << 32 | i, MIB as usize);
    let v = TestVolume::new();
    let m = v.mount();
    // 600 MiB in 1 MiB writes: the window splits at about 520 MiB.
    let w = OpenOptions::new().write(true).create(true).truncate(true).open(m.p("big")).unwrap();
    for i in 0..600 {
        w.write_all_at(&block(i), i * MIB).unwrap();
        if i == 540 {
            // The kernel keeps written pages: drop them, so that the reads reach the daemon.
            fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
            let mut got = vec![0u8; (64 * MIB) as usize];
            File::open(m.p("big")).unwrap().read_exact_at(&mut got, (i - 63) * MIB).unwrap();
            for (k, piece) in got.chunks(MIB as usize).enumerate() {
                assert!(piece == block(i - 63 + k as u64), "MiB {} read after writing MiB {i}", i - 63 + k as u64);
            }
        }
    }
    drop(w);
    assert_eq!(fs::metadata(m.p("big")).unwrap().len(), 600 * MIB);
    m.unmount();
    let m = v.mount();
    let f = File::open(m.p("big")).unwrap();
    let mut got = vec![0u8; MIB as usize];
    for i in 0..600 {
        f.read_exact_at(&mut got, i * MIB).unwrap();
        assert!(got == block(i), "MiB {i} after a remount");
    }
    drop(f);
    m.unmount();
    v.assert_clean(&[]);
}

on_both_transports!(small_write_windows_split_often_and_overwrites_keep_what_follows);
/// The same with a 16 MiB window and small chunks: a write that splits many times, read
/// back as it goes; and overwrites whose split point falls inside a committed chunk of the
/// file, which end just after the split and keep the far part of that chunk.
fn small_write_windows_split_often_and_overwrites_keep_what_follows() {
    let v = TestVolume::new();
    fs::write(v.dir.join("nanofs.toml"), format!("{SMALL_CHUNKS_TOML}\n[storage]\nwrite_window_mb = 16\n")).unwrap();
    let m = v.mount();
    // 160 MiB in 1 MiB writes: a split about every 24 MiB; read back at each eighth write.
    let data = random_bytes(41, 160 << 20);
    let w = OpenOptions::new().write(true).create(true).truncate(true).open(m.p("seq")).unwrap();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        w.write_all_at(piece, (i as u64) << 20).unwrap();
        if i % 8 == 7 {
            fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
            let from = (i + 1).saturating_sub(20) << 20;
            let mut got = vec![0u8; ((i + 1) << 20) - from];
            File::open(m.p("seq")).unwrap().read_exact_at(&mut got, from as u64).unwrap();
            assert!(got == data[from..(i + 1) << 20], "read back after writing MiB {i}");
        }
    }
    drop(w);
    fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
    assert!(fs::read(m.p("seq")).unwrap() == data, "the whole file after its close");

    let mut model = random_bytes(40, 64 << 20);
    fs::write(m.p("f"), &model).unwrap();
    // 1 MiB writes from offset 0: the window hands 8 MiB blocks to the workers at the 8th,
    // 16th and 24th write, and the third makes it split, just before 24 MiB. The committed
    // chunk across the split point reaches past 24 MiB about every other time.
    for n in 0..12 {
        let data = random_bytes(100 + n, 24 << 20);
        let w = OpenOptions::new().write(true).open(m.p("f")).unwrap();
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            w.write_all_at(piece, (i as u64) << 20).unwrap();
        }
        drop(w);
        model[..data.len()].copy_from_slice(&data);
        fs::write("/proc/sys/vm/drop_caches", "1").unwrap();
        let got = fs::read(m.p("f")).unwrap();
        let first_bad = got.iter().zip(&model).position(|(a, b)| a != b);
        assert!(got.len() == model.len() && first_bad.is_none(), "overwrite {n}: first wrong byte at {first_bad:?}");
    }
    m.unmount();
    v.assert_clean(&[]);
}

on_both_transports!(closed_large_files_are_whole_at_once_for_readers_stats_and_snapshots);
/// Large files are committed in the background after `close`: straight after it, their
/// size, contents, space counters and snapshots already include everything written.
fn closed_large_files_are_whole_at_once_for_readers_stats_and_snapshots() {
    let v = TestVolume::new();
    let m = v.mount();
    let files: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(30 + i, 20 << 20)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(m.p(&format!("f{i}")), data).unwrap();
    }
    assert_eq!(fs::metadata(m.p("f3")).unwrap().len(), 20 << 20);
    assert_eq!(fs::read(m.p("f3")).unwrap(), files[3]);
    assert_eq!(v.stat_u64("logical_bytes"), 80 << 20);
    v.run_ok(&["snapshot", "create", v.path(), "now"]);
    for (i, data) in files.iter().enumerate() {
        assert_eq!(&fs::read(m.p(&format!(".snapshots/now/f{i}"))).unwrap(), data, "f{i} in the snapshot");
    }
    // Written again right after its close: both writes land, in order.
    fs::write(m.p("f0"), &files[1]).unwrap();
    OpenOptions::new().append(true).open(m.p("f0")).unwrap().write_all(&files[2]).unwrap();
    m.unmount();
    let m = v.mount();
    assert_eq!(fs::read(m.p("f0")).unwrap(), [&files[1][..], &files[2][..]].concat());
    let report = v.run_ok(&["check", v.path(), "--read-data"]);
    assert!(report.contains("clean"), "{report}");
    m.unmount();
}

on_both_transports!(unlinked_open_file_stays_readable_until_closed);
fn unlinked_open_file_stays_readable_until_closed() {
    let v = TestVolume::new();
    let m = v.mount();
    let data = random_bytes(5, 5 << 20);
    fs::write(m.p("victim"), &data).unwrap();
    let mut f = File::open(m.p("victim")).unwrap();
    let w = OpenOptions::new().write(true).open(m.p("victim")).unwrap();
    fs::remove_file(m.p("victim")).unwrap();
    assert!(!m.p("victim").exists());
    w.write_all_at(b"still writable", 0).unwrap();
    drop(w);
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(&back[..14], b"still writable");
    assert_eq!(&back[14..], &data[14..]);
    drop(f);
    m.unmount();
    // With the last handle gone the data is released (at the last close, or at the next
    // mount if the close had not reached the daemon before it stopped).
    let m = v.mount();
    assert_eq!(v.stat_u64("logical_bytes"), 0);
    assert_eq!(std::fs::read_dir(&m.path).unwrap().count(), 0);
    m.unmount();
}

on_both_transports!(truncate_down_and_up_reads_zeros);
fn truncate_down_and_up_reads_zeros() {
    let v = TestVolume::new();
    let m = v.mount();
    let data = random_bytes(11, 10 << 20);
    fs::write(m.p("t"), &data).unwrap();
    let f = OpenOptions::new().write(true).open(m.p("t")).unwrap();
    let cut = 3 * (1 << 20) + 12345;
    f.set_len(cut as u64).unwrap();
    f.set_len(8 << 20).unwrap();
    drop(f);
    let back = fs::read(m.p("t")).unwrap();
    assert_eq!(back.len(), 8 << 20);
    assert_eq!(&back[..cut], &data[..cut]);
    assert!(back[cut..].iter().all(|b| *b == 0), "bytes past a truncation read as zeros");
    // O_TRUNC empties the file.
    OpenOptions::new().write(true).truncate(true).open(m.p("t")).unwrap();
    assert_eq!(fs::metadata(m.p("t")).unwrap().len(), 0);
    m.unmount();
    assert_eq!(v.stat_u64("logical_bytes"), 0);
}

on_both_transports!(sparse_files_and_large_offsets);
fn sparse_files_and_large_offsets() {
    let v = TestVolume::new();
    let m = v.mount();
    let mut f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(m.p("sparse")).unwrap();
    let six_gib = 6u64 << 30;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"far away", six_gib).unwrap();
    f.sync_all().unwrap();
    let md = fs::metadata(m.p("sparse")).unwrap();
    assert_eq!(md.len(), six_gib + 8);
    assert!(md.blocks() * 512 < 1 << 20, "a hole costs no storage ({} blocks)", md.blocks());
    let mut buf = vec![1u8; 1 << 20];
    f.read_exact_at(&mut buf, 3 << 30).unwrap();
    assert!(buf.iter().all(|b| *b == 0), "a hole reads as zeros");
    let mut tail = [0u8; 12];
    f.seek(SeekFrom::Start(six_gib - 4)).unwrap();
    f.read_exact(&mut tail).unwrap();
    assert_eq!(&tail, b"\0\0\0\0far away");
    drop(f);
    m.unmount();
    assert!(v.stat_u64("stored_bytes") < 1 << 20);
    let m = v.mount();
    let f = File::open(m.p("sparse")).unwrap();
    let mut back = [0u8; 8];
    f.read_exact_at(&mut back, six_gib).unwrap();
    assert_eq!(&back, b"far away");
    drop(f);
    m.unmount();
}

on_both_transports!(append_exclusive_create_and_overwrite_in_the_middle);
fn append_exclusive_create_and_overwrite_in_the_middle() {
    let v = TestVolume::new();
    let m = v.mount();
    let data = random_bytes(21, 12 << 20);
    fs::write(m.p("f"), &data).unwrap();
    let mut a = OpenOptions::new().append(true).open(m.p("f")).unwrap();
    a.write_all(b"appended").unwrap();
    drop(a);
    assert!(OpenOptions::new().write(true).create_new(true).open(m.p("f")).is_err(), "O_EXCL on an existing file");
    // A small overwrite inside a large file.
    let f = OpenOptions::new().write(true).open(m.p("f")).unwrap();
    f.write_all_at(b"PATCH", 5_000_000).unwrap();
    drop(f);
    let mut expect = data.clone();
    expect.extend_from_slice(b"appended");
    expect[5_000_000..5_000_005].copy_from_slice(b"PATCH");
    assert_eq!(fs::read(m.p("f")).unwrap(), expect);
    m.unmount();
    let m = v.mount();
    assert_eq!(fs::read(m.p("f")).unwrap(), expect);
    m.unmount();
}

on_both_transports!(times_with_nanoseconds_utime_now_and_omit);
fn times_with_nanoseconds_utime_now_and_omit() {
    let v = TestVolume::new();
    let m = v.mount();
    fs::write(m.p("t"), b"x").unwrap();
    let p = m.p("t");
    let set = |a: nix::sys::time::TimeSpec, mt: nix::sys::time::TimeSpec| {
        nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &p, &a, &mt, nix::sys::stat::UtimensatFlags::FollowSymlink)
            .unwrap()
    };
    use nix::sys::time::TimeSpec;
    set(TimeSpec::new(1_000_000_000, 123_456_789), TimeSpec::new(1_100_000_000, 987_654_321));
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_100_000_000, 987_654_321));
    set(TimeSpec::UTIME_OMIT, TimeSpec::UTIME_NOW);
    let md2 = fs::metadata(&p).unwrap();
    assert_eq!((md2.atime(), md2.atime_nsec()), (1_000_000_000, 123_456_789), "UTIME_OMIT keeps atime");
    assert!(md2.mtime() > 1_700_000_000, "UTIME_NOW sets mtime to now");
    // A write moves mtime and ctime forward.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = fs::metadata(&p).unwrap();
    fs::OpenOptions::new().write(true).open(&p).unwrap().write_all(b"y").unwrap();
    let after = fs::metadata(&p).unwrap();
    assert!((after.mtime(), after.mtime_nsec()) > (before.mtime(), before.mtime_nsec()));
    assert!((after.ctime(), after.ctime_nsec()) > (before.ctime(), before.ctime_nsec()));
    m.unmount();
    let m = v.mount();
    assert_eq!(fs::metadata(m.p("t")).unwrap().atime_nsec(), 123_456_789);
    m.unmount();
}

on_both_transports!(name_limits);
fn name_limits() {
    let v = TestVolume::new();
    let m = v.mount();
    let ok = "n".repeat(255);
    fs::write(m.p(&ok), b"x").unwrap();
    assert_eq!(fs::read(m.p(&ok)).unwrap(), b"x");
    let too_long = "n".repeat(256);
    let err = fs::write(m.p(&too_long), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    m.unmount();
}

on_both_transports!(permissions_for_other_users_and_setuid_clearing);
fn permissions_for_other_users_and_setuid_clearing() {
    let v = TestVolume::new();
    let m = v.mount_with(&["-o", "allow_other"]);
    fs::set_permissions(&m.path, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.p("private"), b"secret").unwrap();
    fs::set_permissions(m.p("private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.p("public"), b"hello").unwrap();
    fs::set_permissions(m.p("public"), fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = |cmd: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", cmd])
            .output()
            .unwrap()
    };
    let out = as_nobody(&format!("cat '{}'", m.p("public").display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello");
    let out = as_nobody(&format!("cat '{}'", m.p("private").display()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    let out = as_nobody(&format!("echo x > '{}'", m.p("public").display()));
    assert!(!out.status.success(), "no write permission for others");
    let out = as_nobody(&format!("touch '{}'", m.p("newfile").display()));
    assert!(!out.status.success(), "no create permission in a 0755 root-owned directory");

    // chown clears setuid; a write by another user clears setuid too.
    fs::write(m.p("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(m.p("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(fs::metadata(m.p("suid")).unwrap().mode() & 0o7777, 0o4755);
    std::os::unix::fs::chown(m.p("suid"), Some(65534), None).unwrap();
    assert_eq!(fs::metadata(m.p("suid")).unwrap().mode() & 0o7777, 0o755, "chown cleared setuid");
    fs::set_permissions(m.p("suid"), fs::Permissions::from_mode(0o4777)).unwrap();
    std::os::unix::fs::chown(m.p("suid"), Some(0), None).unwrap();
    fs::set_permissions(m.p("suid"), fs::Permissions::from_mode(0o4777)).unwrap();
    let out = as_nobody(&format!("echo more >> '{}'", m.p("suid").display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::metadata(m.p("suid")).unwrap().mode() & 0o7000, 0, "a write by another user cleared setuid");
    m.unmount();
}

on_both_transports!(statfs_reports_the_real_disk);
fn statfs_reports_the_real_disk() {
    let v = TestVolume::new();
    let m = v.mount();
    let ours = nix::sys::statvfs::statvfs(&m.path).unwrap();
    let disk = nix::sys::statvfs::statvfs(&v.dir).unwrap();
    let free = |s: &nix::sys::statvfs::Statvfs| s.blocks_available() * s.fragment_size();
    let (a, b) = (free(&ours) as f64, free(&disk) as f64);
    assert!((a - b).abs() / b < 0.05, "free space {a} vs disk {b}");
    assert_eq!(ours.name_max(), 255);
    m.unmount();
}

on_both_transports!(readdir_lists_everything_once_across_pages);
fn readdir_lists_everything_once_across_pages() {
    let v = TestVolume::new();
    let m = v.mount();
    fs::create_dir(m.p("many")).unwrap();
    for i in 0..3000 {
        File::create(m.p(&format!("many/file-{i:05}-{}", "x".repeat(i % 40)))).unwrap();
    }
    let names: std::collections::BTreeSet<String> =
        fs::read_dir(m.p("many")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 3000);
    let ls = sh(&format!("ls -a '{}' | wc -l", m.p("many").display()));
    assert_eq!(ls.trim(), "3002", "ls -a shows . and .. and every entry once");
    // Deleting while iterating must not skip or repeat survivors.
    let mut seen = 0;
    for e in fs::read_dir(m.p("many")).unwrap() {
        let e = e.unwrap();
        seen += 1;
        if seen % 2 == 0 {
            fs::remove_file(e.path()).unwrap();
        }
    }
    assert_eq!(seen, 3000);
    assert_eq!(fs::read_dir(m.p("many")).unwrap().count(), 1500);
    m.unmount();
}

on_both_transports!(mmap_writes_reach_the_file);
fn mmap_writes_reach_the_file() {
    let v = TestVolume::new();
    let m = v.mount();
    let script = format!(
        "import mmap, os\n\
         p = '{}'\n\
         with open(p, 'wb') as f: f.write(b'\\0' * 1048576)\n\
         with open(p, 'r+b') as f:\n\
         \x20   mm = mmap.mmap(f.fileno(), 0)\n\
         \x20   mm[4096:4101] = b'mmap!'\n\
         \x20   mm.flush(); mm.close()\n",
        m.p("mapped").display()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    m.unmount();
    let m = v.mount();
    let back = fs::read(m.p("mapped")).unwrap();
    assert_eq!(&back[4096..4101], b"mmap!");
    assert_eq!(back.len(), 1 << 20);
    m.unmount();
}

/// Voluntary context switches of the daemon's FUSE threads: (io_uring queue threads,
/// `/dev/fuse` threads). A thread switches once per request it waits for.
fn fuse_thread_switches(pid: u32) -> (u64, u64) {
    let (mut ring, mut dev) = (0, 0);
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = fs::read_to_string(task.join("comm")).unwrap_or_default();
        let status = fs::read_to_string(task.join("status")).unwrap_or_default();
        // Both kinds: on a busy machine a thread that answered may have been preempted
        // each time instead of waiting for the next request.
        let switches: u64 = status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .map(|v| v.trim().parse::<u64>().unwrap())
            .sum();
        match comm.trim() {
            c if c.starts_with("fuse-q") => ring += switches,
            "fuse" => dev += switches,
            _ => {}
        }
    }
    (ring, dev)
}

/// The log says which transport runs; over io_uring the ring's threads answer the requests,
/// not the `/dev/fuse` thread kept for interrupts and forgets; `auto` takes io_uring when
/// the kernel offers it.
#[test]
fn requests_travel_over_the_chosen_transport() {
    let v = TestVolume::new();
    on_transport("uring", || {
        let m = v.mount();
        for i in 0..300 {
            fs::write(m.p(&format!("f{i}")), b"x").unwrap();
        }
        let (ring, dev) = fuse_thread_switches(m.pid());
        assert!(ring >= 600, "ring threads waited for {ring} requests");
        assert!(dev < ring / 10, "the /dev/fuse thread answered {dev} times (ring {ring})");
        assert!(m.log_text().contains("FUSE requests over io_uring"), "{}", m.log_text());
        m.unmount();
        let m = v.mount_with(&["-o", "transport=auto"]);
        assert_eq!(fs::read_dir(m.path.as_path()).unwrap().count(), 300);
        assert!(m.log_text().contains("FUSE requests over io_uring"), "auto with the kernel's switch on");
        m.unmount();
    });
    on_transport("dev", || {
        let m = v.mount();
        for i in 0..300 {
            assert_eq!(fs::read(m.p(&format!("f{i}"))).unwrap(), b"x");
        }
        let (ring, dev) = fuse_thread_switches(m.pid());
        assert_eq!(ring, 0, "no ring threads on /dev/fuse");
        assert!(dev > 0);
        assert!(m.log_text().contains("FUSE requests over /dev/fuse"), "{}", m.log_text());
        m.unmount();
    });
}

/// The ring's threads are pinned to their CPUs; the engine's threads, which hash, seal and
/// decrypt for them, are not, and there is one per CPU (a pool started by a pinned ring
/// thread had one worker, on that thread's CPU).
#[test]
fn engine_threads_run_on_every_cpu_under_pinned_ring_threads() {
    let v = TestVolume::new();
    on_transport("uring", || {
        let m = v.mount();
        write_random_file(&m.p("f"), 7, 16 << 20);
        assert_eq!(fs::read(m.p("f")).unwrap().len(), 16 << 20);
        let cpus = |task: &str| {
            let status = fs::read_to_string(format!("{task}/status")).unwrap();
            status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string()
        };
        let all = cpus(&format!("/proc/{}", m.pid()));
        let (mut engine, mut pinned_ring) = (0, 0);
        for task in fs::read_dir(format!("/proc/{}/task", m.pid())).unwrap() {
            let task = task.unwrap().path().display().to_string();
            let comm = fs::read_to_string(format!("{task}/comm")).unwrap();
            if comm.starts_with("engine-") {
                assert_eq!(cpus(&task), all, "{} runs on fewer CPUs than the process", comm.trim());
                engine += 1;
            } else if comm.starts_with("fuse-q") && cpus(&task) != all {
                pinned_ring += 1;
            }
        }
        let online = std::thread::available_parallelism().unwrap().get();
        assert_eq!(engine, online, "one engine thread per CPU");
        if online > 1 {
            assert!(pinned_ring > 0, "the ring's threads are pinned (the case this test is about)");
        }
        m.unmount();
    });
}
