//! The front-ends use the engine API only: no storage, crypto or chunking in `fs/` or
//! `control.rs`.

#[test]
fn front_ends_do_not_reach_below_the_volume() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.join("control.rs")];
    for entry in std::fs::read_dir(root.join("fs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may build lower-layer values to feed the translation tables.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for forbidden in ["crate::store", "crate::crypto", "crate::chunk"] {
            let uses = code.lines().filter(|l| l.contains(forbidden) && !l.trim_start().starts_with("//")).count();
            assert_eq!(uses, 0, "{} uses {forbidden}", f.display());
        }
    }
}
