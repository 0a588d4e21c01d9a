//! `nanofs user …` and `nanofs gallery …`: people of the sidecar and shared galleries.

use super::UnlockArgs;
use crate::control::{Request, Response};
use crate::gallery::admin::AdminOp;
use crate::gallery::Role;
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Debug, clap::Subcommand)]
enum UserAction {
    /// Add a user (password from --password-file, else a prompt).
    Add {
        /// The volume directory.
        volume: PathBuf,
        /// Login name.
        name: String,
        /// Read the password from the first line of this file.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Set a user's password; their sessions end.
    Passwd {
        /// The volume directory.
        volume: PathBuf,
        /// Login name.
        name: String,
        /// Read the password from the first line of this file.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// List users.
    List {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Remove a user (refused while they own a gallery).
    Remove {
        /// The volume directory.
        volume: PathBuf,
        /// Login name.
        name: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Write everything the volume holds about a user to a new directory (JSON and their
    /// uploaded files), for a GDPR access or portability request.
    Export {
        /// The volume directory.
        volume: PathBuf,
        /// Login name.
        name: String,
        /// The directory to write (new or empty).
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Erase a user (GDPR): account, memberships and sessions go, their comments become
    /// anonymous, the audit trail's fields naming them become unreadable for good, and what
    /// they own is deleted or transferred (docs/operations.md, "Erasing a user").
    Erase {
        /// The volume directory.
        volume: PathBuf,
        /// Login name.
        name: String,
        /// Delete the files they uploaded (with their copies in snapshots) and stop
        /// sharing the galleries they own.
        #[arg(long, conflicts_with = "transfer_to")]
        delete_owned: bool,
        /// Give the galleries they own and the files they uploaded to this user.
        #[arg(long, value_name = "USER")]
        transfer_to: Option<String>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct GalleryArgs {
    #[command(subcommand)]
    action: GalleryAction,
}

#[derive(Debug, clap::Subcommand)]
enum GalleryAction {
    /// Make an existing directory (volume path) a gallery.
    Create {
        /// The volume directory.
        volume: PathBuf,
        /// Volume path of the directory, e.g. /photos/2026.
        path: String,
        /// Title shown to people (default: the directory name).
        #[arg(long)]
        title: Option<String>,
        /// The owning user.
        #[arg(long)]
        owner: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// List galleries.
    List {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Show a gallery (by id or volume path) with members and links.
    Show {
        /// The volume directory.
        volume: PathBuf,
        /// Gallery id or volume path.
        gallery: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// End sharing of a gallery: members, links, comments and events go; files stay.
    Delete {
        /// The volume directory.
        volume: PathBuf,
        /// Gallery id or volume path.
        gallery: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Add a member, change a role, or remove a member (--remove).
    Member {
        /// The volume directory.
        volume: PathBuf,
        /// Gallery id or volume path.
        gallery: String,
        /// User name.
        user: String,
        /// viewer, contributor or moderator.
        #[arg(long, conflicts_with = "remove")]
        role: Option<Role>,
        /// Remove the member.
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Write the gallery (items, comments, annotations, reactions) as a bundle encrypted to
    /// X-Wing recipients (ML-KEM-768 + X25519).
    Export {
        /// The volume directory.
        volume: PathBuf,
        /// Gallery id or volume path.
        gallery: String,
        /// A recipient (`nanofs-xwing1…`, from `nanofs keygen`); repeat for several.
        #[arg(long = "recipient", required = true)]
        recipients: Vec<String>,
        /// The bundle file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Bring a bundle into this volume as a new gallery at PATH.
    Import {
        /// The volume directory.
        volume: PathBuf,
        /// The bundle file.
        file: PathBuf,
        /// Volume path of the new gallery directory (must not exist).
        #[arg(long)]
        path: String,
        /// The identity file the bundle is addressed to (from `nanofs keygen`).
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// The owning user.
        #[arg(long)]
        owner: String,
        /// Read the volume's passphrase from this file (else $NANOFS_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Unlock the volume with this identity file instead of a passphrase.
        #[arg(long, value_name = "FILE")]
        volume_identity: Option<PathBuf>,
    },
    /// Transfer ownership (the old owner becomes moderator).
    Owner {
        /// The volume directory.
        volume: PathBuf,
        /// Gallery id or volume path.
        gallery: String,
        /// The new owner.
        user: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

fn password(file: Option<&Path>) -> anyhow::Result<String> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            Ok(text.lines().next().unwrap_or_default().to_string())
        }
        None => {
            let p = rpassword::prompt_password("New password: ")?;
            if rpassword::prompt_password("Again: ")? != p {
                anyhow::bail!("the passwords differ");
            }
            Ok(p)
        }
    }
}

/// Runs `op` in the mount daemon, or on the volume opened here.
pub(super) fn admin(volume: &Path, unlock: &UnlockArgs, op: AdminOp) -> anyhow::Result<serde_json::Value> {
    super::via_daemon_or_open(
        volume,
        unlock,
        &Request::Admin(op.clone()),
        |reply| match reply {
            Response::Json { value } => Some(value),
            _ => None,
        },
        |_, galleries| Ok(galleries.admin(&op)?),
    )
}

fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run_user(args: UserArgs) -> anyhow::Result<()> {
    match args.action {
        UserAction::Add { volume, name, password_file, unlock } => {
            let password = password(password_file.as_deref())?;
            admin(&volume, &unlock, AdminOp::UserAdd { name: name.clone(), password })?;
            eprintln!("added user {name}");
        }
        UserAction::Passwd { volume, name, password_file, unlock } => {
            let password = password(password_file.as_deref())?;
            admin(&volume, &unlock, AdminOp::UserPasswd { name: name.clone(), password })?;
            eprintln!("changed the password of {name}; their sessions have ended");
        }
        UserAction::List { volume, unlock } => {
            for u in admin(&volume, &unlock, AdminOp::UserList)?.as_array().into_iter().flatten() {
                println!("{}", u.as_str().unwrap_or_default());
            }
        }
        UserAction::Remove { volume, name, unlock } => {
            admin(&volume, &unlock, AdminOp::UserRemove { name: name.clone() })?;
            eprintln!("removed user {name}");
        }
        UserAction::Export { volume, name, out, unlock } => {
            // The daemon writes the files: give it a path that does not depend on our cwd.
            let out = std::path::absolute(&out)?;
            let summary = admin(&volume, &unlock, AdminOp::UserExport { name, out: out.clone() })?;
            print(&summary)?;
            eprintln!("written to {}", out.display());
        }
        UserAction::Erase { volume, name, delete_owned, transfer_to, unlock } => {
            use crate::gallery::privacy::Owned;
            let owned = match (delete_owned, transfer_to) {
                (true, _) => Some(Owned::Delete),
                (false, Some(heir)) => Some(Owned::TransferTo(heir)),
                (false, None) => None,
            };
            let receipt = admin(&volume, &unlock, AdminOp::UserErase { name: name.clone(), owned })?;
            print(&receipt)?;
            eprintln!("erased {name}; the receipt above is in the audit trail");
        }
    }
    Ok(())
}

pub fn run_gallery(args: GalleryArgs) -> anyhow::Result<()> {
    match args.action {
        GalleryAction::Create { volume, path, title, owner, unlock } => {
            let title = title.unwrap_or_else(|| {
                path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("Gallery").to_string()
            });
            print(&admin(&volume, &unlock, AdminOp::GalleryCreate { path, title, owner })?)?;
        }
        GalleryAction::List { volume, unlock } => print(&admin(&volume, &unlock, AdminOp::GalleryList)?)?,
        GalleryAction::Show { volume, gallery, unlock } => {
            print(&admin(&volume, &unlock, AdminOp::GalleryShow { gallery })?)?;
        }
        GalleryAction::Delete { volume, gallery, unlock } => {
            print(&admin(&volume, &unlock, AdminOp::GalleryDelete { gallery })?)?;
        }
        GalleryAction::Member { volume, gallery, user, role, remove, unlock } => {
            if role.is_none() && !remove {
                anyhow::bail!("give --role ROLE or --remove");
            }
            print(&admin(&volume, &unlock, AdminOp::GalleryMember { gallery, user, role })?)?;
        }
        GalleryAction::Export { volume, gallery, recipients, output, unlock } => {
            // The daemon writes the file: give it an absolute path.
            let out = std::path::absolute(&output)?;
            print(&admin(&volume, &unlock, AdminOp::GalleryExport { gallery, recipients, out })?)?;
        }
        GalleryAction::Import { volume, file, path, identity, owner, passphrase_file, volume_identity } => {
            let unlock = UnlockArgs { passphrase_file, identity: volume_identity };
            let identity =
                std::fs::read_to_string(&identity).with_context(|| format!("cannot read {}", identity.display()))?;
            let file = std::path::absolute(&file)?;
            print(&admin(&volume, &unlock, AdminOp::GalleryImport { file, identity, path, owner })?)?;
        }
        GalleryAction::Owner { volume, gallery, user, unlock } => {
            print(&admin(&volume, &unlock, AdminOp::GalleryOwner { gallery, user })?)?;
        }
    }
    Ok(())
}
