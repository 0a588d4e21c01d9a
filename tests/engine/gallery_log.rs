//! The gallery event log on the engine alone (real RocksDB, no mount): numbering across
//! reopen, trimming to `event_log_len` with a `reset` for clients that fell behind, and
//! the item records of a gallery's tree following renames, moves and deletions.

use crate::common::{open_galleries as open, ENGINE_PASSPHRASE};
use nanofs::crypto::kdf::Argon2Params;
use nanofs::gallery::admin::admin;
use nanofs::gallery::Since;
use nanofs::volume::{Kind, RenameMode, Volume};
use nanofs::Ino;

fn seqs(s: Since) -> Vec<u64> {
    match s {
        Since::Events(list, _) => list.iter().map(|e| e.seq).collect(),
        Since::Reset(at) => panic!("unexpected reset at {at}"),
    }
}

#[test]
fn the_log_numbers_survive_reopen_trim_to_their_length_and_items_follow_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    Volume::init(&dir, ENGINE_PASSPHRASE, Argon2Params::TEST_ONLY).unwrap();
    std::fs::write(dir.join("nanofs.toml"), "[media.collaboration]\nevent_log_len = 100\n").unwrap();
    let gs = open(&dir);
    let vol = gs.volume().clone();
    gs.user_add("alice", "alice-password").unwrap();
    let g_dir = vol.create(Ino::ROOT, b"g", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
    let outside = vol.create(Ino::ROOT, b"outside", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
    let g = gs.gallery_create("/g", "G", "alice").unwrap();
    // 60 files: 60 events, numbered from 1.
    for i in 0..60 {
        vol.create(g_dir, format!("f{i}").as_bytes(), Kind::File, 0o644, 0, 0, 0).unwrap();
    }
    assert_eq!(seqs(gs.events_since(&g.id, 0).unwrap()), (1..=60).collect::<Vec<_>>());
    vol.close().unwrap();
    drop((vol, gs));

    // After reopening, numbering continues where it stopped.
    let gs = open(&dir);
    let vol = gs.volume().clone();
    let sub = vol.create(g_dir, b"sub", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino; // 61: folder.added
    vol.rename(g_dir, b"f0", sub, b"moved", RenameMode::Replace).unwrap(); // 62: item.renamed
    vol.rename(g_dir, b"f1", outside, b"gone", RenameMode::Replace).unwrap(); // 63: item.removed
    vol.unlink(g_dir, b"f2").unwrap(); // 64: item.removed
    let Since::Events(list, last) = gs.events_since(&g.id, 60).unwrap() else { panic!("reset") };
    assert_eq!(last, 64);
    let kinds: Vec<&str> = list.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["folder.added", "item.renamed", "item.removed", "item.removed"]);
    assert_eq!(list[1].data["name"], "moved");
    // The moved file is still an item; the ones that left or died are not.
    let items = gs.gallery_item_inos(&g).unwrap();
    assert_eq!(items.len(), 58);
    let moved = vol.lookup(sub, b"moved").unwrap().ino;
    assert!(items.contains(&moved));
    assert!(!items.contains(&vol.lookup(outside, b"gone").unwrap().ino));

    // 100 more events: the log keeps the newest 100; an old `since` gets a reset.
    for i in 0..100 {
        vol.create(sub, format!("n{i}").as_bytes(), Kind::File, 0o644, 0, 0, 0).unwrap();
    }
    assert!(matches!(gs.events_since(&g.id, 10).unwrap(), Since::Reset(164)));
    assert_eq!(seqs(gs.events_since(&g.id, 64).unwrap()), (65..=164).collect::<Vec<_>>());
    assert_eq!(seqs(gs.events_since(&g.id, 164).unwrap()), Vec::<u64>::new());

    // Removing the gallery's directory (after emptying it) removes the gallery.
    for e in vol.readdir(sub, 0, 1000).unwrap() {
        vol.unlink(sub, &e.name).unwrap();
    }
    vol.rmdir(g_dir, b"sub").unwrap();
    for e in vol.readdir(g_dir, 0, 1000).unwrap() {
        vol.unlink(g_dir, &e.name).unwrap();
    }
    vol.rmdir(Ino::ROOT, b"g").unwrap();
    assert!(gs.gallery(&g.id).is_err());
    assert!(gs.gallery_list().unwrap().is_empty());
    assert_eq!(gs.sweep().unwrap(), 0, "nothing was left behind");
    // The administrator acts as owner of every gallery.
    assert_eq!(admin().role, nanofs::gallery::Role::Owner);
}

#[test]
fn names_of_people_are_not_readable_in_the_database_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    Volume::init(&dir, ENGINE_PASSPHRASE, Argon2Params::TEST_ONLY).unwrap();
    let gs = open(&dir);
    let vol = gs.volume().clone();
    let name = "zoe-wants-privacy";
    gs.user_add(name, "zoe-password").unwrap();
    let g_dir = vol.create(Ino::ROOT, b"g", Kind::Dir, 0o755, 0, 0, 0).unwrap().ino;
    let g = gs.gallery_create("/g", "G", name).unwrap();
    let item = vol.create(g_dir, b"photo.jpg", Kind::File, 0o644, 0, 0, 0).unwrap().ino;
    let zoe = nanofs::gallery::Actor { name: Some(name.into()), role: nanofs::gallery::Role::Owner };
    assert_eq!(gs.reaction_toggle(&g, &zoe, item, "🔥").unwrap(), (true, 1));
    assert!(gs.user(name).unwrap().is_some(), "found again by name");
    assert_eq!(gs.user_list().unwrap(), [name]);
    vol.close().unwrap();
    drop((vol, gs));
    let mut found = Vec::new();
    for f in std::fs::read_dir(dir.join("db")).unwrap() {
        let path = f.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(name.len()).any(|w| w == name.as_bytes()) {
            found.push(path);
        }
    }
    assert!(found.is_empty(), "the name is readable in {found:?}");
    // Reopened, the reaction still counts and toggles off.
    let gs = open(&dir);
    assert_eq!(gs.reaction_toggle(&g, &zoe, item, "🔥").unwrap(), (false, 0));
}
