//! Reading a passphrase: file, environment, or terminal prompt.

use super::PassphraseArgs;
use anyhow::{bail, Context};
use std::io::IsTerminal;
use zeroize::Zeroizing;

/// Environment variable holding a passphrase.
pub const ENV: &str = "NANOFS_PASSPHRASE";

/// The passphrase from `--passphrase-file`, `$NANOFS_PASSPHRASE` or a prompt (`confirm`:
/// ask twice, for a new passphrase).
pub fn get(args: &PassphraseArgs, confirm: bool) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(path) = &args.passphrase_file {
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
    if let Some(p) = std::env::var_os(ENV) {
        if p.is_empty() {
            bail!("${ENV} is empty");
        }
        return Ok(Zeroizing::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: give --passphrase-file FILE, set ${ENV}, or run on a terminal");
    }
    let p = Zeroizing::new(rpassword::prompt_password("Passphrase: ").context("cannot read the passphrase")?);
    if p.is_empty() {
        bail!("empty passphrase");
    }
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ")?);
        if *again != *p {
            bail!("the passphrases differ");
        }
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}
