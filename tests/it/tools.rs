//! The tools users bring: rsync -aHAX, cp -a, tar, git, sqlite3.

use crate::common::*;

/// A real tree with the awkward parts added: hard links, symlinks, xattrs, odd modes,
/// a sparse file, an empty directory, names with spaces and UTF-8.
pub(crate) fn build_tree(root: &std::path::Path) {
    sh(&format!(
        "set -e; mkdir -p '{r}'; cp -a /usr/share/perl5 '{r}/perl5' 2>/dev/null || cp -a /usr/share/doc '{r}/perl5'; \
         cp -a /usr/include/linux '{r}/linux-headers'; \
         cd '{r}'; mkdir -p 'empty dir' 'ünïcödé/deep/er'; echo hi > 'ünïcödé/deep/er/file with spaces'; \
         ln 'ünïcödé/deep/er/file with spaces' hardlink; ln -s 'ünïcödé/deep' symlink; ln -s /nonexistent dangling; \
         setfattr -n user.origin -v nanofs-test hardlink; chmod 0750 'empty dir'; chmod 0604 hardlink; \
         truncate -s 50M sparse.img; printf data | dd of=sparse.img bs=1 seek=30000000 conv=notrunc status=none; \
         mkfifo pipe; find . -exec touch -h -d '2020-05-06 07:08:09.123456789' {{}} +; \
         touch -d '2001-02-03 04:05:06.123456789' hardlink",
        r = root.display()
    ));
}

/// Type, mode, owner, links, size (not of directories: that is file-system specific),
/// mtime with nanoseconds and link target of every entry.
pub(crate) fn tree_meta(dir: &std::path::Path) -> String {
    sh(&format!(
        "cd '{}' && {{ find . ! -type d -printf '%p %y %m %U %G %n %s %T@ %l\\n'; find . -type d -printf '%p %y %m %U %G %n %T@\\n'; }} | sort",
        dir.display()
    ))
}

/// Asserts equal listings, printing only the lines that differ.
pub(crate) fn assert_same_listing(want: &str, got: &str) {
    let w: std::collections::BTreeSet<&str> = want.lines().collect();
    let g: std::collections::BTreeSet<&str> = got.lines().collect();
    let missing: Vec<_> = w.difference(&g).take(10).collect();
    let extra: Vec<_> = g.difference(&w).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "listings differ\nonly in source: {missing:#?}\nonly in copy: {extra:#?}"
    );
}

on_both_transports!(rsync_a_h_a_x_round_trips_a_real_tree);
fn rsync_a_h_a_x_round_trips_a_real_tree() {
    let v = TestVolume::new();
    let src = v.tmp.path().join("src");
    build_tree(&src);
    let m = v.mount();
    let dst = m.p("copy");
    sh(&format!("rsync -aHAX '{}/' '{}/'", src.display(), dst.display()));
    // Nothing left to transfer, by checksum and by metadata.
    let changes = sh(&format!("rsync -aHAXc --itemize-changes --dry-run '{}/' '{}/'", src.display(), dst.display()));
    assert_eq!(changes.trim(), "", "rsync still sees differences:\n{changes}");
    let sums = |d: &std::path::Path| {
        sh(&format!("cd '{}' && find . -type f -print0 | sort -z | xargs -0 sha256sum", d.display()))
    };
    assert_eq!(sums(&src), sums(&dst));
    assert_same_listing(&tree_meta(&src), &tree_meta(&dst));
    m.unmount();
    // And again after a remount, from the stored data.
    let m = v.mount();
    assert_eq!(sums(&src), sums(&m.p("copy")));
    let changes =
        sh(&format!("rsync -aHAXc --itemize-changes --dry-run '{}/' '{}/'", src.display(), m.p("copy").display()));
    assert_eq!(changes.trim(), "");
    m.unmount();
}

on_both_transports!(cp_a_and_tar_round_trip);
fn cp_a_and_tar_round_trip() {
    let v = TestVolume::new();
    let src = v.tmp.path().join("src");
    build_tree(&src);
    let m = v.mount();
    sh(&format!("cp -a '{}' '{}'", src.display(), m.p("cp").display()));
    sh(&format!("tar -C '{}' --xattrs -cf '{}' .", src.display(), m.p("tree.tar").display()));
    sh(&format!(
        "mkdir '{0}' && tar -C '{0}' --xattrs -xf '{1}'",
        m.p("untarred").display(),
        m.p("tree.tar").display()
    ));
    // cp -a keeps everything; tar does not restore hard-link counts beyond the archive or
    // the top directory's times, so compare names, types, modes and sizes there.
    assert_same_listing(&tree_meta(&src), &tree_meta(&m.p("cp")));
    let brief = |d: &std::path::Path| {
        sh(&format!("cd '{}' && find . -mindepth 1 -printf '%p %y %m %l\\n' | sort", d.display()))
    };
    assert_same_listing(&brief(&src), &brief(&m.p("untarred")));
    sh(&format!("diff -r --no-dereference -x pipe '{}' '{}'", src.display(), m.p("untarred").display()));
    m.unmount();
}

on_both_transports!(git_and_sqlite_work_on_the_mount);
fn git_and_sqlite_work_on_the_mount() {
    let v = TestVolume::new();
    let m = v.mount();
    let repo = m.p("repo");
    sh(&format!(
        "set -e; git init -q '{r}'; cd '{r}'; git config user.email t@example.org; git config user.name T; \
         for i in $(seq 1 30); do echo line $i >> file.txt; cp file.txt copy-$((i % 5)).txt; git add -A; git commit -qm \"c$i\"; done; \
         git gc -q; git fsck --full --strict",
        r = repo.display()
    ));
    let log = sh(&format!("cd '{}' && git log --oneline | wc -l", repo.display()));
    assert_eq!(log.trim(), "30");
    let db = m.p("test.db");
    let out = sh(&format!(
        "sqlite3 '{db}' 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);' >/dev/null; \
         for i in $(seq 1 20); do sqlite3 '{db}' \"BEGIN; INSERT INTO t(v) SELECT hex(randomblob(200)) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<100) SELECT x FROM c); COMMIT;\"; done; \
         sqlite3 '{db}' 'PRAGMA integrity_check; SELECT count(*) FROM t;'",
        db = db.display()
    ));
    assert_eq!(out, "ok\n2000\n");
    m.unmount();
    let m = v.mount();
    sh(&format!("cd '{}' && git fsck --full --strict", m.p("repo").display()));
    let out = sh(&format!("sqlite3 '{}' 'PRAGMA integrity_check; SELECT count(*) FROM t;'", m.p("test.db").display()));
    assert_eq!(out, "ok\n2000\n");
    m.unmount();
}
