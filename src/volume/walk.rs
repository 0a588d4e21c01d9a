//! Walking the tree by name: the path of a directory, every entry of a directory, every
//! file below one. Built on the namespace operations, for the modules beside the engine.

use super::error::{Error, Result};
use super::records::Kind;
use super::tree::DirEntry;
use super::Volume;
use crate::ids::Ino;

impl Volume {
    /// The path of directory `dir` from the root (`/` for the root), found by walking up.
    pub fn dir_path(&self, dir: Ino) -> Result<String> {
        let mut parts = Vec::new();
        let mut d = dir;
        for _ in 0..4096 {
            if d == Ino::ROOT {
                parts.reverse();
                return Ok(format!("/{}", parts.join("/")));
            }
            let parent = self.parent_of(d)?;
            let name = self.name_in(parent, d)?.ok_or(Error::NotFound)?;
            parts.push(String::from_utf8_lossy(&name).into_owned());
            d = parent;
        }
        Err(Error::Invalid)
    }

    /// The name under which `dir` holds `ino`.
    pub fn name_in(&self, dir: Ino, ino: Ino) -> Result<Option<Vec<u8>>> {
        Ok(self.dir_entries(dir)?.into_iter().find(|e| e.ino == ino).map(|e| e.name))
    }

    /// Every entry of directory `dir`, in readdir order.
    pub fn dir_entries(&self, dir: Ino) -> Result<Vec<DirEntry>> {
        let mut all = Vec::new();
        loop {
            let cookie = all.last().map_or(0, |e: &DirEntry| e.cookie);
            let page = self.readdir(dir, cookie, 1024)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Deletes the tree `name` in `parent`, files and directories.
    pub fn remove_tree(&self, parent: Ino, name: &[u8]) -> Result<()> {
        let top = self.lookup(parent, name)?;
        let mut stack = vec![(parent, name.to_vec(), top.ino, false)];
        while let Some((p, n, ino, visited)) = stack.pop() {
            if visited {
                self.rmdir(p, &n)?;
                continue;
            }
            stack.push((p, n, ino, true));
            for e in self.dir_entries(ino)? {
                if e.kind == Kind::Dir {
                    stack.push((ino, e.name, e.ino, false));
                } else {
                    self.unlink(ino, &e.name)?;
                }
            }
        }
        Ok(())
    }

    /// Every regular file below `top` (depth first) with the directory that holds it.
    pub fn files_below(&self, top: Ino) -> Result<Vec<(Ino, DirEntry)>> {
        let mut out = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            for e in self.dir_entries(d)? {
                match e.kind {
                    Kind::Dir => stack.push(e.ino),
                    Kind::File => out.push((d, e)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Lengths of the content-defined chunks of `data` with this volume's chunk sizes;
    /// with `at_end == false` the data continues and its last piece is left out.
    #[must_use]
    pub fn cut_points(&self, data: &[u8], at_end: bool) -> Vec<usize> {
        crate::chunk::cut_points(data, &self.params, at_end)
    }

    /// A keyed hash of `secret` (a session or link secret) under a volume key, `context`
    /// separating its uses: what is stored instead of the secret.
    #[must_use]
    pub fn keyed_secret_hash(&self, context: &[u8], secret: &[u8]) -> [u8; 32] {
        *crate::crypto::keys::keyed_hash(self.keys.name_hash.as_ref(), &[context, b"\0", secret].concat())
    }
}
