//! The module arrows of docs/design.md, checked on the sources: the engine knows nothing of
//! what is built on it, the galleries sit beside it without reaching into storage, and the
//! front-ends translate without touching storage, crypto or chunking. A single crate does
//! not let Cargo enforce this; a scan of the `use`s does.

use std::path::{Path, PathBuf};

/// Imports a module may not make, and the few known exceptions (file, import) with why.
struct Rule {
    dir: &'static str,
    forbidden: &'static [&'static str],
    exceptions: &'static [(&'static str, &'static str)],
}

const RULES: &[Rule] = &[
    Rule {
        dir: "volume",
        forbidden: &["gallery", "stream", "http", "fs", "control", "client", "cli"],
        exceptions: &[],
    },
    Rule { dir: "gallery", forbidden: &["store", "chunk", "http", "fs", "control", "client", "cli"], exceptions: &[] },
    Rule {
        dir: "stream",
        forbidden: &["store", "chunk", "gallery", "http", "fs", "control", "client", "cli"],
        exceptions: &[],
    },
    Rule {
        dir: "live",
        forbidden: &["store", "chunk", "stream", "http", "fs", "control", "client", "cli"],
        exceptions: &[],
    },
    Rule { dir: "fs", forbidden: &["gallery", "store", "crypto", "chunk", "http", "cli"], exceptions: &[] },
    Rule { dir: "control.rs", forbidden: &["store", "crypto", "chunk", "http", "fs"], exceptions: &[] },
    Rule { dir: "http", forbidden: &["store", "chunk", "fs", "control", "cli"], exceptions: &[] },
    Rule {
        dir: "client",
        forbidden: &["store", "chunk", "crypto", "volume", "gallery", "http", "fs", "control", "cli", "media"],
        exceptions: &[
            // Cuts a new version with the volume's FastCDC sizes and hashes its chunks as the
            // sidecar does; to move to a shared leaf.
            ("delta.rs", "chunk"),
            ("delta.rs", "volume"),
            // Shares the sidecar's TLS provider, the random source and the device keys.
            ("http.rs", "http"),
            ("http.rs", "crypto"),
        ],
    },
];

fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        out.extend(sources(&entry.unwrap().path()));
    }
    out
}

/// The `crate::X` modules `code` names, outside comments.
fn imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn modules_import_only_along_the_arrows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for rule in RULES {
        for file in sources(&root.join(rule.dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests may build lower-layer values to feed the translation tables.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            for module in imports(code) {
                let excepted = rule.exceptions.iter().any(|(f, m)| *f == name && *m == module);
                if rule.forbidden.contains(&module.as_str()) && !excepted {
                    wrong.push(format!("{} uses crate::{module}", file.display()));
                }
            }
            // The engine's own modules reach galleries through `super::` no more.
            if rule.dir == "volume" && code.contains("super::gallery") {
                wrong.push(format!("{} uses super::gallery", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the arrows of docs/design.md:\n{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_imports() {
    assert_eq!(imports("use crate::store::Cf;\n// crate::chunk\nlet x = crate::gallery::now();"), ["store", "gallery"]);
}
