//! What reading a file leaves in the kernel's page cache: through the mount, the plaintext,
//! which the kernel caches for the mount, and not the sealed bodies of the packs as well;
//! through a download, nothing (each byte is streamed once).

use crate::common::{sh, write_random_file, TestVolume};
use crate::http::{bearer, curl, Server};

/// Bytes of the volume's packs in the page cache (`fincore`, util-linux).
fn packs_resident(vol: &TestVolume) -> u64 {
    let out = sh(&format!("fincore --bytes --noheadings --output RES '{}'/packs/*", vol.path()));
    out.split_whitespace().map(|n| n.parse::<u64>().expect("fincore prints byte counts")).sum()
}

/// Drops what is cached of the packs; false where the page cache cannot be dropped or
/// the packs cannot be read around it (`O_DIRECT`), and there is nothing to test.
fn drop_packs_cache(vol: &TestVolume) -> bool {
    sh(&format!(
        "python3 -c 'import os,sys\nfor p in sys.argv[1:]:\n fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' '{}'/packs/*",
        vol.path()
    ));
    if packs_resident(vol) > 1 << 20 {
        eprintln!("the page cache of {} cannot be dropped here (tmpfs?); nothing to test", vol.path());
        return false;
    }
    let probe = sh(&format!(
        "python3 -c 'import os,sys,mmap\ntry:\n fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT); os.preadv(fd, [mmap.mmap(-1, 4096)], 0); print(1)\nexcept OSError: print(0)' \"$(ls '{}'/packs/* | head -1)\"",
        vol.path()
    ));
    if probe.trim() != "1" {
        eprintln!("no direct reads here; nothing to test");
        return false;
    }
    true
}

#[test]
fn reads_through_the_mount_and_downloads_leave_the_sealed_bodies_uncached() {
    let vol = TestVolume::new();
    let m = vol.mount();
    let file = m.p("film.bin");
    write_random_file(&file, 11, 64 << 20);
    let expected = sh(&format!("sync -f '{0}'; sha256sum < '{0}'", file.display()));
    m.unmount();
    if !drop_packs_cache(&vol) {
        return;
    }
    let m = vol.mount();
    assert_eq!(sh(&format!("sha256sum < '{}'", m.p("film.bin").display())), expected);
    // Read through the page cache, all 64 MiB would be.
    let resident = packs_resident(&vol);
    assert!(resident < 1 << 20, "reading through the mount left {resident} bytes of the packs cached");
    m.unmount();

    assert!(drop_packs_cache(&vol));
    let token = vol.run_ok(&["token", "create", vol.path(), "--allow", "read"]).trim().to_string();
    let server = Server::start(&vol);
    let (status, _, body) = curl(&["-H", &bearer(&token), &format!("{}/files/film.bin", server.base)]);
    assert_eq!(status, 200);
    let back = vol.tmp.path().join("back.bin");
    std::fs::write(&back, &body).unwrap();
    assert_eq!(sh(&format!("sha256sum < '{}'", back.display())), expected);
    let resident = packs_resident(&vol);
    assert!(resident < 1 << 20, "a download left {resident} bytes of the packs cached");
    server.stop();
}
