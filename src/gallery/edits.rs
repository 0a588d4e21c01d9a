//! Changes to a gallery's files on behalf of a person: uploads, renames and deletions of
//! items. Each checks the person's role and makes the change under one lock, and the
//! change records them as its author through the namespace hook.

use super::error::{Error, Result};
use super::{Action, Actor, Galleries, Gallery};
use crate::ids::Ino;
use crate::volume::RenameMode;

impl Galleries {
    /// Checks that `actor` may change an item added by `author`: their own (contributor)
    /// or anyone's (moderator).
    fn may_change(actor: &Actor, author: Option<&str>) -> Result<()> {
        actor.require(if actor.is(author) { Action::ChangeOwnItem } else { Action::ChangeAnyItem })
    }

    /// Renames item `ino` in its folder; returns its old name.
    pub fn rename_item(&self, g: &Gallery, actor: &Actor, ino: Ino, name: &str) -> Result<String> {
        let _edit = self.edits.lock().expect("gallery edits");
        Self::may_change(actor, self.gallery_item(g, ino)?.author.as_deref())?;
        let (folder, old) = self.locate_item(g, ino)?;
        let by = actor.name.as_deref();
        self.vol.rename_by(folder, old.as_bytes(), folder, name.as_bytes(), RenameMode::NoReplace, by)?;
        Ok(old)
    }

    /// Deletes item `ino` (its file, its discussion and its thumbnails).
    pub fn delete_item(&self, g: &Gallery, actor: &Actor, ino: Ino) -> Result<()> {
        let _edit = self.edits.lock().expect("gallery edits");
        Self::may_change(actor, self.gallery_item(g, ino)?.author.as_deref())?;
        let (folder, name) = self.locate_item(g, ino)?;
        self.vol.remove(folder, name.as_bytes(), actor.name.as_deref())?;
        self.remove_thumbnails(&[ino]);
        Ok(())
    }

    /// Moves the complete upload `id` (file `ino`) to `target` in `g` with `actor` as its
    /// author, if they may still upload there and its folder is still in `g`.
    pub fn finish_upload(
        &self,
        g: &Gallery,
        actor: &Actor,
        id: &str,
        ino: Ino,
        target: &str,
        fingerprint: Option<(u64, [u8; 32])>,
    ) -> Result<()> {
        let _edit = self.edits.lock().expect("gallery edits");
        actor.require(Action::Upload)?;
        let folder = match target.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => self.vol.resolve(dir)?,
            _ => Ino::ROOT,
        };
        if self.gallery_of(folder)?.as_deref() != Some(g.id.as_str()) {
            return Err(Error::Rejected("the upload's folder is no longer in the gallery".into()));
        }
        self.vol.upload_finish(id, ino, target, actor.name.as_deref(), fingerprint)?;
        Ok(())
    }

    /// Where an upload of `name` into `folder` (default: the gallery's own) by `actor`
    /// lands: a volume path that does not exist yet, so a drop box never overwrites (an
    /// existing name gets a numbered variant).
    pub fn upload_target(&self, g: &Gallery, actor: &Actor, folder: Option<Ino>, name: &str) -> Result<String> {
        actor.require(Action::Upload)?;
        let dir = match folder {
            Some(f) if self.gallery_of(f)?.as_deref() == Some(g.id.as_str()) => f,
            Some(_) => return Err(Error::NotFound),
            None => g.dir(),
        };
        let dir = self.vol.dir_path(dir)?.trim_end_matches('/').to_string();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
            _ => (name.to_string(), String::new()),
        };
        for n in 1..10_000 {
            let candidate = if n == 1 { name.to_string() } else { format!("{stem} ({n}){ext}") };
            let path = format!("{dir}/{candidate}");
            match self.vol.resolve(&path) {
                Err(crate::volume::Error::NotFound) => return Ok(path),
                Ok(_) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Exists)
    }
}
