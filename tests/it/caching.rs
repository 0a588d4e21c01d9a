//! What reading through the mount leaves in the kernel's page cache: the plaintext, which the
//! kernel caches for the mount, and not the sealed bodies of the packs as well.

use crate::common::{sh, write_random_file, TestVolume};

/// Bytes of the volume's packs in the page cache (`fincore`, util-linux).
fn packs_resident(vol: &TestVolume) -> u64 {
    let out = sh(&format!("fincore --bytes --noheadings --output RES '{}'/packs/*", vol.path()));
    out.split_whitespace().map(|n| n.parse::<u64>().expect("fincore prints byte counts")).sum()
}

#[test]
fn a_read_through_the_mount_leaves_the_sealed_bodies_uncached() {
    let vol = TestVolume::new();
    let m = vol.mount();
    let file = m.p("film.bin");
    write_random_file(&file, 11, 64 << 20);
    let expected = sh(&format!("sync -f '{0}'; sha256sum < '{0}'", file.display()));
    m.unmount();
    // Bodies are written uncached; whatever is left of them is dropped.
    sh(&format!(
        "python3 -c 'import os,sys\nfor p in sys.argv[1:]:\n fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' '{}'/packs/*",
        vol.path()
    ));
    if packs_resident(&vol) > 1 << 20 {
        eprintln!("the page cache of {} cannot be dropped here (tmpfs?); nothing to test", vol.path());
        return;
    }
    // Uncached reads (`RWF_DONTCACHE`) need Linux 6.14 and a file system that has them.
    let probe = sh(&format!(
        "python3 -c 'import os,sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\ntry:\n os.preadv(fd, [bytearray(4096)], 0, 0x80); print(1)\nexcept OSError: print(0)' '{}'/packs/*",
        vol.path()
    ));
    if probe.trim() != "1" {
        eprintln!("no uncached reads here; nothing to test");
        return;
    }
    let m = vol.mount();
    assert_eq!(sh(&format!("sha256sum < '{}'", m.p("film.bin").display())), expected);
    let resident = packs_resident(&vol);
    // Cached, all 64 MiB would be. Some may stay: bodies the kernel read ahead after
    // another reader of the pack had taken them (a few MiB at most).
    assert!(resident < 32 << 20, "reading through the mount left {resident} bytes of the packs cached");
    m.unmount();
}
