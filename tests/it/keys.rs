//! Key slots: passphrases and X-Wing recipients, removal, rotation and rekeying.

use crate::common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_slot_kind_unlocks_removed_slots_do_not_and_rotation_keeps_data() {
    let v = TestVolume::new();
    let id_file = v.tmp.path().join("alice.key");
    let out = nanofs(&["keygen", id_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recipient = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    assert!(recipient.starts_with("nanofs-xwing1"), "{recipient}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&id_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(!nanofs(&["keygen", id_file.to_str().unwrap()]).status.success(), "never overwrites");

    v.run_ok(&["key", "add", v.path(), "--recipient", &recipient]);
    let second = v.tmp.path().join("second.pass");
    std::fs::write(&second, "second passphrase\n").unwrap();
    v.run_ok(&["key", "add", v.path(), "--new-passphrase-file", second.to_str().unwrap()]);
    let list = nanofs(&["key", "list", v.path()]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert_eq!(list.lines().filter(|l| l.contains("passphrase")).count(), 2, "{list}");
    assert_eq!(list.lines().filter(|l| l.contains("recipient")).count(), 1, "{list}");

    // Data written through the identity's mount, read through the second passphrase's.
    let m = v.mount_with(&["--identity", id_file.to_str().unwrap()]);
    write_random_file(&m.p("clip.bin"), 3, 8 << 20);
    let sum = sha256(&m.p("clip.bin"));
    m.unmount();

    // Rotation while mounted goes through the daemon; new writes use the new epoch.
    let m = v.mount();
    let out = v.run_ok(&["key", "rotate", v.path()]);
    assert!(out.contains("epoch 1"), "{out}");
    assert!(out.contains("removed passphrase slot 2"), "{out}");
    write_random_file(&m.p("after.bin"), 4, 8 << 20);
    let after = sha256(&m.p("after.bin"));
    m.unmount();
    let second_arg = ["--passphrase-file", second.to_str().unwrap()];
    let refused = nanofs(&[&["check", v.path()][..], &second_arg[..]].concat());
    assert!(!refused.status.success() && stderr(&refused).contains("wrong passphrase"), "{}", stderr(&refused));

    // Both epochs read; rekey moves everything to the current one and forgets epoch 0.
    let m = v.mount_with(&["--identity", id_file.to_str().unwrap()]);
    assert_eq!(sha256(&m.p("clip.bin")), sum);
    assert_eq!(sha256(&m.p("after.bin")), after);
    let out = v.run_ok(&["rekey", v.path()]);
    assert!(out.contains("forgot the keys of epochs [0]"), "{out}");
    let header = std::fs::read_to_string(v.dir.join("nanofs.header")).unwrap();
    assert!(header.contains("\"epoch\": 1"), "{header}");
    m.unmount();
    let m = v.mount();
    assert_eq!(sha256(&m.p("clip.bin")), sum);
    m.unmount();
    assert!(v.run_ok(&["check", v.path(), "--read-data"]).contains("clean"));

    // Remove the recipient slot: the identity no longer unlocks; the last slot stays.
    let list = String::from_utf8_lossy(&nanofs(&["key", "list", v.path()]).stdout).into_owned();
    let recipient_slot =
        list.lines().find(|l| l.contains("recipient")).unwrap().split('\t').next().unwrap().to_string();
    v.run_ok(&["key", "remove", v.path(), &recipient_slot]);
    let refused = nanofs(&["check", v.path(), "--identity", id_file.to_str().unwrap()]);
    assert!(stderr(&refused).contains("opens no key slot"), "{}", stderr(&refused));
    let last = v.run(&["key", "remove", v.path(), "0"]);
    assert!(!last.status.success() && stderr(&last).contains("last key slot"), "{}", stderr(&last));
}

#[test]
fn change_passphrase_replaces_the_old_one_and_a_tampered_header_is_refused() {
    let v = TestVolume::new();
    let new = v.tmp.path().join("new.pass");
    std::fs::write(&new, "brand new\n").unwrap();
    v.run_ok(&["key", "change-passphrase", v.path(), "--new-passphrase-file", new.to_str().unwrap()]);
    assert!(!v.run(&["check", v.path()]).status.success(), "the old passphrase is gone");
    let ok = nanofs(&["check", v.path(), "--passphrase-file", new.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    let path = v.dir.join("nanofs.header");
    let header = std::fs::read_to_string(&path).unwrap();
    let tampered = header.replacen("\"created\": ", "\"created\": 1", 1);
    std::fs::write(&path, tampered).unwrap();
    let out = nanofs(&["check", v.path(), "--passphrase-file", new.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("modified"), "{}", stderr(&out));
}
