//! Keys: `nanofs keygen OUT`, `nanofs key add|list|remove|change-passphrase|rotate VOLUME`
//! and `nanofs rekey VOLUME`.
//!
//! Slot changes rewrite only the header, under its lock, after unlocking it with an existing
//! slot; they work the same whether or not the volume is mounted. Rotation and rekeying
//! change the keys the engine uses, so they go through the daemon when it runs.

use super::credential::{self, NEW_ENV};
use super::UnlockArgs;
use crate::control::{Request, Response, WireCredential};
use crate::crypto::hybrid::{Identity, Recipient};
use crate::crypto::kdf::Argon2Params;
use crate::volume::header::Header;
use crate::volume::AuditEvent;
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the new identity (created with mode 0600; never overwritten).
    out: PathBuf,
}

/// Writes a new X-Wing identity and prints its recipient as the last line.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let identity = Identity::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    f.write_all(identity.to_file_text().as_bytes())?;
    f.sync_all()?;
    eprintln!("wrote identity {}; its public recipient (for `nanofs key add --recipient`):", args.out.display());
    println!("{}", identity.recipient());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Add a key slot: a recipient (public key from `keygen`) or a new passphrase.
    Add {
        /// The volume directory.
        volume: PathBuf,
        /// Recipient string (`nanofs-xwing1...`).
        #[arg(long, conflicts_with = "new_passphrase_file")]
        recipient: Option<String>,
        /// Read the new passphrase from this file (else $NANOFS_NEW_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// List the key slots (needs no key).
    List {
        /// The volume directory.
        volume: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a key slot (the last one cannot be removed).
    Remove {
        /// The volume directory.
        volume: PathBuf,
        /// Slot number, from `key list`.
        slot: u32,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Replace the passphrase that unlocks (its slot) with a new one.
    ChangePassphrase {
        /// The volume directory.
        volume: PathBuf,
        /// Read the new passphrase from this file (else $NANOFS_NEW_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Start a new key epoch: new chunks use a fresh key; `nanofs rekey` moves old ones.
    Rotate {
        /// The volume directory.
        volume: PathBuf,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Add { volume, recipient, new_passphrase_file, unlock } => {
            let cred = credential::get(&unlock)?;
            let (id, keys, kind) = match recipient {
                Some(r) => {
                    let r = Recipient::parse(&r).context("--recipient")?;
                    Header::modify(&volume, |h| {
                        let (keys, _) = h.unlock(&cred)?;
                        Ok((h.add_recipient_slot(&keys, &r)?, keys, "recipient"))
                    })?
                }
                None => {
                    let new =
                        credential::read_passphrase(new_passphrase_file.as_deref(), NEW_ENV, "New passphrase", true)?;
                    Header::modify(&volume, |h| {
                        let (keys, _) = h.unlock(&cred)?;
                        Ok((h.add_passphrase_slot(&keys, &new, Argon2Params::DEFAULT)?, keys, "passphrase"))
                    })?
                }
            };
            println!("added key slot {id}");
            super::audit::record_admin_act(
                &volume,
                keys,
                AuditEvent::new("key.add", "admin", format!("slot {id}")).detail(kind),
            )?;
        }
        Action::List { volume, json } => {
            let h = Header::load(&volume)?;
            let slots = h.slot_infos();
            if json {
                println!("{}", serde_json::json!({ "epoch": h.epoch, "slots": slots }));
            } else {
                println!("key epoch {}", h.epoch);
                for s in slots {
                    println!("{}\t{}\t{}", s.id, s.kind, s.detail);
                }
            }
        }
        Action::Remove { volume, slot, unlock } => {
            let cred = credential::get(&unlock)?;
            let keys = Header::modify(&volume, |h| {
                let (keys, _) = h.unlock(&cred)?;
                h.remove_slot(&keys, slot)?;
                Ok(keys)
            })
            .with_context(|| format!("key slot {slot}"))?;
            println!("removed key slot {slot}");
            super::audit::record_admin_act(
                &volume,
                keys,
                AuditEvent::new("key.remove", "admin", format!("slot {slot}")),
            )?;
        }
        Action::ChangePassphrase { volume, new_passphrase_file, unlock } => {
            if unlock.identity.is_some() {
                bail!("change-passphrase replaces the passphrase that unlocks; give the current passphrase, not --identity");
            }
            let cred = credential::get(&unlock)?;
            let new = credential::read_passphrase(new_passphrase_file.as_deref(), NEW_ENV, "New passphrase", true)?;
            let (id, old, keys) = Header::modify(&volume, |h| {
                let (keys, old) = h.unlock(&cred)?;
                let id = h.add_passphrase_slot(&keys, &new, Argon2Params::DEFAULT)?;
                h.remove_slot(&keys, old)?;
                Ok((id, old, keys))
            })?;
            println!("passphrase changed (now key slot {id})");
            let event = AuditEvent::new("key.change_passphrase", "admin", format!("slot {id}"))
                .detail(format!("replaces slot {old}"));
            super::audit::record_admin_act(&volume, keys, event)?;
        }
        Action::Rotate { volume, unlock } => {
            let cred = credential::get(&unlock)?;
            let report = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::RotateKey { credential: WireCredential::from(&cred) },
                |reply| match reply {
                    Response::Rotated(r) => Some(r),
                    _ => None,
                },
                |vol, _| Ok(vol.rotate_key(&cred)?),
            )?;
            println!("new key epoch {}; new chunks are sealed under its key", report.epoch);
            for id in report.dropped_slots {
                println!("removed passphrase slot {id}: its passphrase was not given (add it again with `key add`)");
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RekeyArgs {
    /// The volume directory.
    volume: PathBuf,
    #[command(flatten)]
    unlock: UnlockArgs,
}

/// Re-seals the chunks of older key epochs under the current key.
pub fn rekey(args: RekeyArgs) -> anyhow::Result<()> {
    let bar = super::progress_bar("rekey");
    let report = super::via_daemon_or_open(
        &args.volume,
        &args.unlock,
        &Request::Rekey,
        |reply| match reply {
            Response::Rekeyed(r) => Some(r),
            _ => None,
        },
        |vol, _| {
            Ok(vol.rekey(&|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?)
        },
    )?;
    bar.finish_and_clear();
    println!(
        "re-sealed {} chunks ({} bytes) under epoch {}; forgot the keys of epochs {:?}",
        report.chunks_resealed, report.bytes_resealed, report.epoch, report.epochs_forgotten
    );
    if report.chunks_damaged > 0 {
        bail!(
            "{} chunks could not be opened (run `nanofs check --read-data`); their keys are kept",
            report.chunks_damaged
        );
    }
    Ok(())
}
