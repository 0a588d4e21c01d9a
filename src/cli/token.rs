//! `nanofs token create|list|revoke VOLUME`: bearer tokens of the HTTP sidecar.

use super::UnlockArgs;
use crate::control::{Request, Response};
use crate::volume::Permission;
use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a token; prints it once (only a hash is stored).
    Create {
        /// The volume directory.
        volume: PathBuf,
        /// Path prefix the token reaches.
        #[arg(long, default_value = "/")]
        path: String,
        /// Allowed operations: read, write, delete, metrics (comma-separated).
        #[arg(long, default_value = "read")]
        allow: String,
        /// Lifetime: e.g. 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// A label.
        #[arg(long, default_value = "")]
        name: String,
        /// Act as this user in shared galleries (see `nanofs user`).
        #[arg(long)]
        user: Option<String>,
        /// Accept the token only from this network (e.g. 10.0.0.0/8, 2001:db8::/32, or one
        /// address); repeat for more.
        #[arg(long = "cidr", value_name = "NETWORK")]
        networks: Vec<String>,
        /// Accept the token only from this country (ISO code such as DE), by the
        /// `[access] geoip_db` database; repeat for more.
        #[arg(long = "country", value_name = "CODE")]
        countries: Vec<String>,
        /// Bind the token to the first device that uses it: every request must then be
        /// signed with that device's key (`nanofs push/pull --device-key FILE`).
        #[arg(long)]
        device: bool,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// List tokens (never their secrets).
    List {
        /// The volume directory.
        volume: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The volume directory.
        volume: PathBuf,
        /// Token id (from `token list`).
        id: String,
        #[command(flatten)]
        unlock: UnlockArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Create { volume, path, allow, expires, name, user, networks, countries, device, unlock } => {
            let networks = networks
                .iter()
                .map(|n| {
                    crate::volume::parse_network(n)
                        .ok_or_else(|| anyhow::anyhow!("--cidr {n:?}: not a network (10.0.0.0/8) or an address"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let countries = countries
                .iter()
                .map(|c| {
                    crate::volume::country_code(c).ok_or_else(|| {
                        anyhow::anyhow!("--country {c:?}: an ISO 3166-1 code of two letters, such as DE")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let bindings = crate::volume::Bindings { networks, countries, device };
            let allow: Vec<Permission> = allow
                .split(',')
                .map(|p| p.trim().parse())
                .collect::<Result<_, String>>()
                .map_err(anyhow::Error::msg)?;
            let ttl = crate::cli::parse_duration(&expires)?;
            let req = Request::TokenCreate {
                name: name.clone(),
                prefix: path.clone(),
                allow: allow.clone(),
                ttl_secs: ttl,
                user: user.clone(),
                bindings: bindings.clone(),
            };
            let (info, token) = super::via_daemon_or_open(
                &volume,
                &unlock,
                &req,
                |reply| match reply {
                    Response::Token { info, token } => Some((info, token)),
                    _ => None,
                },
                |vol, galleries| {
                    if let Some(u) = &user {
                        galleries.require_user(u)?;
                    }
                    Ok(vol.token_create(&name, &path, &allow, ttl, user.as_deref(), &bindings)?)
                },
            )?;
            eprintln!(
                "token {} for {} ({:?}), expires {}",
                info.id,
                info.prefix,
                info.allow,
                crate::utc::rfc3339(info.expires)
            );
            println!("{token}");
        }
        Action::List { volume, json, unlock } => {
            let list = super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::TokenList,
                |reply| match reply {
                    Response::Tokens { tokens } => Some(tokens),
                    _ => None,
                },
                |vol, _| Ok(vol.token_list()?),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for t in list {
                    let allow: Vec<String> = t.allow.iter().map(|p| format!("{p:?}").to_lowercase()).collect();
                    let nets: Vec<String> = t.networks.iter().map(ToString::to_string).collect();
                    let mut from = if nets.is_empty() { "any".to_string() } else { nets.join(",") };
                    if !t.countries.is_empty() {
                        from = format!("{from} in {}", t.countries.join(","));
                    }
                    if t.device {
                        from.push_str(if t.device_key.is_some() { " on its device" } else { " on one device" });
                    }
                    println!(
                        "{}\t{}\t{}\t{}\tfrom {from}\t{}",
                        t.id,
                        t.prefix,
                        allow.join(","),
                        crate::utc::rfc3339(t.expires),
                        t.name
                    );
                }
            }
        }
        Action::Revoke { volume, id, unlock } => {
            super::via_daemon_or_open(
                &volume,
                &unlock,
                &Request::TokenRevoke { id: id.clone() },
                |reply| matches!(reply, Response::Done).then_some(()),
                |vol, _| Ok(vol.token_revoke(&id)?),
            )
            .with_context(|| format!("token {id}"))?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}
