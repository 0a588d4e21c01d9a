//! Checking gallery records against the tree (`nanofs check`) and the hourly sweep.
//!
//! Galleries are derived in part from the tree: a file in a gallery's tree is an item. A
//! change whose gallery part failed (a damaged record, say; see `hook`), or a crash
//! between steps that are not one batch, can leave items missing or stale. `check` reports
//! each such problem and, with `repair`, fixes what can be derived: missing items are added
//! (without an author), stale and damaged records are deleted. A damaged gallery record
//! cannot be rebuilt: it is deleted and its directory stays an ordinary one.

use super::error::Result;
use super::hook::{item_ino, purge_item};
use super::items::{item_key, ItemRecord, ITEM_PREFIX, THUMBNAILS_NAME};
use super::{now, Galleries, Gallery, GALLERY_PREFIX};
use crate::ids::Ino;
use crate::volume::{CheckReport, Durability, HookBatch, Kind};
use std::collections::{HashMap, HashSet};

/// How to fix one problem.
enum Fix {
    /// A record that does not decode.
    Delete(Vec<u8>),
    /// An item whose file or gallery is gone.
    Purge(Ino),
    /// A file in a gallery's tree without an item record.
    Add(Ino, String),
    /// A gallery whose directory is gone.
    Gone(Gallery),
}

impl Galleries {
    /// Reports gallery problems into `report`; with `repair`, fixes them in one batch.
    pub fn check(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        let found = self.examine()?;
        report.problems.extend(found.iter().map(|(problem, _)| format!("gallery: {problem}")));
        if repair && !found.is_empty() {
            self.fix(found.iter().map(|(_, f)| f))?;
            report.repaired += found.len() as u64;
        }
        Ok(())
    }

    /// Deletes the records of items whose file or gallery is gone (left by a crash between
    /// steps that are not one batch) and thumbnails of items that are gone. Returns how
    /// many items.
    pub fn sweep(&self) -> Result<usize> {
        let stale: Vec<Fix> =
            self.examine()?.into_iter().map(|(_, f)| f).filter(|f| matches!(f, Fix::Purge(_))).collect();
        if !stale.is_empty() {
            self.fix(stale.iter())?;
        }
        self.sweep_thumbnails()?;
        self.sweep_import_staging()?;
        Ok(stale.len())
    }

    /// Removes the staging directories of bundle imports that are not running (left by a
    /// crash before the import's last batch).
    fn sweep_import_staging(&self) -> Result<()> {
        let Some(dir) = self.vol.uploads_dir()? else { return Ok(()) };
        for e in self.vol.dir_entries(dir)? {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if e.kind == Kind::Dir
                && name.starts_with(super::bundle::IMPORT_STAGING)
                && !self.importing.lock().expect("imports").contains(&name)
            {
                tracing::warn!(staging = name, "removing the staging directory of an interrupted import");
                self.vol.remove_tree(dir, &e.name)?;
            }
        }
        Ok(())
    }

    fn fix<'a>(&self, fixes: impl Iterator<Item = &'a Fix>) -> Result<()> {
        self.vol.update(self.hook, Durability::Synced, |b: &mut HookBatch<'_, '_>| {
            for fix in fixes {
                match fix {
                    Fix::Delete(key) => b.delete(key),
                    Fix::Purge(ino) => purge_item(b, *ino)?,
                    Fix::Add(ino, g) => {
                        b.put(&item_key(*ino), &ItemRecord { gallery: g.clone(), author: None, added: now() });
                    }
                    Fix::Gone(g) => self.state.purge_gallery(b, g)?,
                }
            }
            Ok(())
        })
    }

    /// Every problem, with its fix; damaged records come before the items that replace them.
    fn examine(&self) -> Result<Vec<(String, Fix)>> {
        let mut found = Vec::new();
        let mut galleries = Vec::new();
        for key in self.vol.record_keys(GALLERY_PREFIX)? {
            let name = String::from_utf8_lossy(&key).into_owned();
            match self.vol.record::<Gallery>(&key) {
                Err(e) => found
                    .push((format!("record {name} is damaged ({e}); deleted, its directory stays"), Fix::Delete(key))),
                Ok(None) => {}
                Ok(Some(g)) => match self.vol.getattr(g.dir()) {
                    Ok(a) if a.inode.kind == Kind::Dir && a.inode.nlink > 0 => galleries.push(g),
                    _ => found.push((format!("gallery {} lost its directory", g.id), Fix::Gone(g))),
                },
            }
        }
        let live: HashSet<&str> = galleries.iter().map(|g| g.id.as_str()).collect();
        let mut items: HashMap<Ino, String> = HashMap::new();
        for key in self.vol.record_keys(ITEM_PREFIX)? {
            let Some(ino) = item_ino(&key) else {
                found.push((format!("item key {} is malformed", crate::ids::hex(&key)), Fix::Delete(key)));
                continue;
            };
            match self.vol.record::<ItemRecord>(&key) {
                Err(e) => found.push((format!("item record of inode {ino} is damaged ({e})"), Fix::Delete(key))),
                Ok(None) => {}
                Ok(Some(rec)) => {
                    let exists = match self.vol.getattr(ino) {
                        Ok(a) => a.inode.nlink > 0,
                        Err(crate::volume::Error::NotFound) => false,
                        Err(e) => return Err(e.into()),
                    };
                    if exists && live.contains(rec.gallery.as_str()) {
                        items.insert(ino, rec.gallery);
                    } else {
                        found.push((format!("item {ino} of gallery {} is stale", rec.gallery), Fix::Purge(ino)));
                    }
                }
            }
        }
        for g in &galleries {
            for (dir, e) in self.vol.files_below(g.dir())? {
                if items.get(&e.ino).map(String::as_str) != Some(g.id.as_str()) {
                    let name = String::from_utf8_lossy(&e.name);
                    found.push((
                        format!("file {name} (inode {}, folder {dir}) of gallery {} is no item", e.ino, g.id),
                        Fix::Add(e.ino, g.id.clone()),
                    ));
                }
            }
        }
        Ok(found)
    }

    /// Deletes thumbnails whose item is gone (the hook leaves them: it writes no files).
    fn sweep_thumbnails(&self) -> Result<()> {
        let Some(dir) = self.vol.hidden_dir(THUMBNAILS_NAME)? else { return Ok(()) };
        let gone: Vec<Ino> = self
            .vol
            .dir_entries(dir)?
            .iter()
            .filter_map(|e| String::from_utf8_lossy(&e.name).split('-').next()?.parse().ok().map(Ino))
            .collect::<HashSet<Ino>>()
            .into_iter()
            .filter(|ino| !self.vol.record_exists(&item_key(*ino)).unwrap_or(true))
            .collect();
        self.remove_thumbnails(&gone);
        Ok(())
    }
}
