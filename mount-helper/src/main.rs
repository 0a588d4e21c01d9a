//! `mount.nanofs`: the helper mount(8) runs for `mount -t nanofs` and `/etc/fstab`.
//!
//! mount(8) calls `mount.nanofs VOLUME MOUNTPOINT [-sfnv] [-o OPTIONS]`. This turns the
//! options into a `nanofs mount` command line and runs it: `passphrase_file=F` becomes
//! `--passphrase-file F` and `identity=F` becomes `--identity F`, mount(8)'s own options (defaults, auto, noauto, user, nofail,
//! _netdev, x-*) are dropped, the rest (ro, allow_other, cache_mb=N, uring, transport=…) pass through.
//! It shares no code with nanofs, so it stays a few lines that are easy to audit.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

/// Options that only mean something to mount(8) or fstab.
const DROPPED: &[&str] = &["defaults", "auto", "noauto", "user", "nouser", "users", "nofail", "_netdev", "rw"];

struct Plan {
    volume: String,
    mountpoint: String,
    passphrase_file: Option<String>,
    identity: Option<String>,
    options: Vec<String>,
    fake: bool,
}

fn parse(args: &[String]) -> Result<Plan, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut passphrase_file = None;
    let mut identity = None;
    let mut fake = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                let list = it.next().ok_or("-o needs a value")?;
                for opt in list.split(',').filter(|o| !o.is_empty()) {
                    if let Some(f) = opt.strip_prefix("passphrase_file=") {
                        passphrase_file = Some(f.to_string());
                    } else if let Some(f) = opt.strip_prefix("identity=") {
                        identity = Some(f.to_string());
                    } else if !(DROPPED.contains(&opt) || opt.starts_with("x-") || opt.starts_with("comment=")) {
                        options.push(opt.to_string());
                    }
                }
            }
            "-t" => {
                it.next();
            }
            "-f" => fake = true,
            "-s" | "-n" | "-v" => {}
            s if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            _ => positional.push(a.clone()),
        }
    }
    let [volume, mountpoint] = <[String; 2]>::try_from(positional)
        .map_err(|_| "usage: mount.nanofs VOLUME MOUNTPOINT [-o OPTIONS]".to_string())?;
    Ok(Plan { volume, mountpoint, passphrase_file, identity, options, fake })
}

/// `$NANOFS_BIN`, else `nanofs` beside this helper or in /usr/local/bin or /usr/bin,
/// else the first on PATH.
fn nanofs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NANOFS_BIN") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        for candidate in [dir.join("nanofs"), PathBuf::from("/usr/local/bin/nanofs"), PathBuf::from("/usr/bin/nanofs")]
        {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("nanofs")
}

fn command(plan: &Plan) -> Command {
    let mut cmd = Command::new(nanofs_binary());
    cmd.arg("mount").arg(&plan.volume).arg(&plan.mountpoint);
    if let Some(f) = &plan.identity {
        cmd.arg("--identity").arg(f);
    }
    if let Some(f) = &plan.passphrase_file {
        cmd.arg("--passphrase-file").arg(f);
    }
    if !plan.options.is_empty() {
        cmd.arg("-o").arg(plan.options.join(","));
    }
    cmd
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mount.nanofs: {e}");
            exit(1);
        }
    };
    if plan.fake {
        exit(0);
    }
    let err = command(&plan).exec();
    eprintln!("mount.nanofs: cannot run nanofs: {err}");
    exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn fstab_options_become_nanofs_flags() {
        let p =
            parse(&args("/vol /mnt -o rw,noauto,passphrase_file=/etc/k,allow_other,x-systemd.automount,cache_mb=64"))
                .unwrap();
        assert_eq!((p.volume.as_str(), p.mountpoint.as_str()), ("/vol", "/mnt"));
        assert_eq!(p.passphrase_file.as_deref(), Some("/etc/k"));
        assert_eq!(p.options, vec!["allow_other", "cache_mb=64"]);
        let cmd = command(&p);
        let argv: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(argv, ["mount", "/vol", "/mnt", "--passphrase-file", "/etc/k", "-o", "allow_other,cache_mb=64"]);
    }

    #[test]
    fn identity_option_becomes_the_identity_flag() {
        let p = parse(&args("/vol /mnt -o identity=/root/me.key,ro")).unwrap();
        let argv: Vec<_> = command(&p).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(argv, ["mount", "/vol", "/mnt", "--identity", "/root/me.key", "-o", "ro"]);
    }

    #[test]
    fn bad_usage_is_refused() {
        assert!(parse(&args("/vol")).is_err());
        assert!(parse(&args("/vol /mnt -z")).is_err());
    }
}
