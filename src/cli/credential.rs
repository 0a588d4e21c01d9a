//! What unlocks a volume: an identity file, or a passphrase from a file, the environment
//! or a terminal prompt.

use super::UnlockArgs;
use crate::crypto::hybrid::Identity;
use crate::volume::Credential;
use anyhow::{bail, Context};
use std::io::IsTerminal;
use zeroize::Zeroizing;

/// Environment variable holding a passphrase.
pub const ENV: &str = "NANOFS_PASSPHRASE";
/// Environment variable holding the new passphrase of `key add` and `change-passphrase`.
pub const NEW_ENV: &str = "NANOFS_NEW_PASSPHRASE";

/// `--identity FILE` when given, else the passphrase (see `passphrase`).
pub fn get(args: &UnlockArgs) -> anyhow::Result<Credential> {
    match &args.identity {
        Some(path) => Ok(Credential::Identity(Box::new(read_identity(path)?))),
        None => Ok(Credential::Passphrase(passphrase(args, false)?)),
    }
}

/// Reads and parses an identity file written by `nanofs keygen`.
pub fn read_identity(path: &std::path::Path) -> anyhow::Result<Identity> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read identity file {}", path.display()))?,
    );
    Identity::parse(&text).with_context(|| format!("identity file {}", path.display()))
}

/// The passphrase from `--passphrase-file`, `$NANOFS_PASSPHRASE` or a prompt (`confirm`:
/// ask twice, for a new passphrase).
pub fn passphrase(args: &UnlockArgs, confirm: bool) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    read_passphrase(args.passphrase_file.as_deref(), ENV, "Passphrase", confirm)
}

/// A passphrase from `file`, else the environment variable `env`, else a prompt.
pub fn read_passphrase(
    file: Option<&std::path::Path>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read(path).with_context(|| format!("cannot read passphrase file {}", path.display()))?,
        );
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            bail!("passphrase file {} is empty", path.display());
        }
        return Ok(Zeroizing::new(line.to_vec()));
    }
    if let Some(p) = std::env::var_os(env) {
        if p.is_empty() {
            bail!("${env} is empty");
        }
        return Ok(Zeroizing::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no {}: give a file, set ${env}, or run on a terminal", prompt.to_lowercase());
    }
    let p = Zeroizing::new(rpassword::prompt_password(format!("{prompt}: ")).context("cannot read the passphrase")?);
    if p.is_empty() {
        bail!("empty passphrase");
    }
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password(format!("Repeat {}: ", prompt.to_lowercase()))?);
        if *again != *p {
            bail!("the passphrases differ");
        }
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}
