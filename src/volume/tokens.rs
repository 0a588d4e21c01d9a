//! Access tokens of the HTTP sidecar: scoped to a path prefix and a set of operations,
//! time-limited, revocable. Only a keyed hash of each secret is stored (sealed, in `meta`
//! under `token/<id>`); verification compares hashes in constant time.

use super::error::{Error, Result};
use super::Volume;
use crate::crypto::keys::{keyed_hash, random_bytes};
use crate::ids::{hex, unhex};
use crate::store::{Cf, Durability};
use serde::{Deserialize, Serialize};

const PREFIX: &[u8] = b"token/";
/// Prefix of every token string.
pub const TOKEN_PREFIX: &str = "nft_";

/// An operation a token may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Download and list.
    Read,
    /// Upload.
    Write,
    /// Delete files and uploads.
    Delete,
    /// Scrape `/metrics` (and nothing else it grants on its own).
    Metrics,
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "delete" => Ok(Permission::Delete),
            "metrics" => Ok(Permission::Metrics),
            _ => Err(format!("unknown permission {s:?} (read, write, delete, metrics)")),
        }
    }
}

/// What a token allows (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id (the part of the token before the secret).
    pub id: String,
    /// A label for people.
    pub name: String,
    /// Volume path prefix the token reaches (`/` for all), normalised without a trailing slash.
    pub prefix: String,
    /// Allowed operations.
    pub allow: Vec<Permission>,
    /// Unix seconds of creation.
    pub created: i64,
    /// Unix seconds after which it no longer works.
    pub expires: i64,
    /// The user it acts as in galleries (`None`: scope-based access only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The networks its requests must come from (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ipnet::IpNet>,
    /// The countries (ISO 3166-1 alpha-2, upper case) its requests must come from, by the
    /// `[access] geoip_db` database (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Bound to the device that first uses it: every request must be signed with that
    /// device's key (`crypto::device`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub device: bool,
    /// The device's public key (hex), registered at first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

/// Where a token (`nanofs token create --cidr/--country/--device`) or a share link
/// (networks and countries) may be used from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bindings {
    /// Networks.
    #[serde(default)]
    pub networks: Vec<ipnet::IpNet>,
    /// ISO country codes.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Bound at first use to one device.
    #[serde(default)]
    pub device: bool,
}

/// A network (`10.0.0.0/8`) or one address (a /32 or /128).
#[must_use]
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// `code` as an ISO 3166-1 alpha-2 country code (upper case), if it is two letters.
#[must_use]
pub fn country_code(code: &str) -> Option<String> {
    (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic())).then(|| code.to_ascii_uppercase())
}

impl TokenInfo {
    /// Whether `path` (normalised, starting with `/`) lies inside the token's prefix.
    #[must_use]
    pub fn covers(&self, path: &str) -> bool {
        self.prefix == "/" || path == self.prefix || path.starts_with(&format!("{}/", self.prefix))
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    info: TokenInfo,
    /// Keyed BLAKE2b-256 of the secret, hex.
    hash: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Malformed, unknown, revoked, or a wrong secret.
    Invalid,
    /// Past its expiry (Unix seconds).
    Expired(i64),
}

fn now() -> i64 {
    crate::utc::now_secs()
}

impl Volume {
    fn token_key(id: &str) -> Vec<u8> {
        [PREFIX, id.as_bytes()].concat()
    }

    fn secret_hash(&self, secret: &[u8]) -> [u8; 32] {
        *keyed_hash(self.keys.name_hash.as_ref(), &[b"nanofs/v1/token\0".as_slice(), secret].concat())
    }

    /// Creates a token; returns what it allows and the token string (shown once). The
    /// caller checks that `user` exists.
    pub fn token_create(
        &self,
        name: &str,
        prefix: &str,
        allow: &[Permission],
        ttl_secs: i64,
        user: Option<&str>,
        bindings: &Bindings,
    ) -> Result<(TokenInfo, String)> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let prefix = normalise_prefix(prefix).ok_or(Error::Invalid)?;
        let (mut id, mut secret) = ([0u8; 8], [0u8; 32]);
        random_bytes(&mut id);
        random_bytes(&mut secret);
        let mut allow = allow.to_vec();
        allow.sort();
        allow.dedup();
        let created = now();
        let info = TokenInfo {
            id: hex(&id),
            name: name.into(),
            prefix,
            allow,
            created,
            expires: created.saturating_add(ttl_secs),
            user: user.map(str::to_string),
            networks: bindings.networks.iter().map(ipnet::IpNet::trunc).collect(),
            countries: bindings
                .countries
                .iter()
                .map(|c| country_code(c).ok_or(Error::Invalid))
                .collect::<Result<_>>()?,
            device: bindings.device,
            device_key: None,
        };
        let stored = Stored { info: info.clone(), hash: hex(&self.secret_hash(&secret)) };
        let key = Self::token_key(&info.id);
        let mut batch = self.store.batch();
        let json = serde_json::to_vec(&stored).expect("token serialises");
        batch.put(Cf::Meta, &key, &self.meta.seal(Cf::Meta.name(), &key, &json));
        self.store.commit(batch, Durability::Synced)?;
        let scope = format!("{} {:?} until {}", info.prefix, info.allow, crate::utc::rfc3339(info.expires));
        let scope = match &info.user {
            Some(u) => format!("{scope}, as {u}"),
            None => scope,
        };
        let scope = if info.networks.is_empty() {
            scope
        } else {
            let nets: Vec<String> = info.networks.iter().map(ToString::to_string).collect();
            format!("{scope}, from {}", nets.join(" "))
        };
        let scope = if info.countries.is_empty() { scope } else { format!("{scope}, in {}", info.countries.join(" ")) };
        let scope = if info.device { format!("{scope}, one device") } else { scope };
        self.audit_or_log(super::AuditEvent::new("token.create", "admin", &info.id).detail(scope.to_lowercase()));
        Ok((info.clone(), format!("{TOKEN_PREFIX}{}_{}", info.id, hex(&secret))))
    }

    /// Every token, oldest first.
    pub fn token_list(&self) -> Result<Vec<TokenInfo>> {
        let mut out = Vec::new();
        for kv in self.store.scan(Cf::Meta, PREFIX, PREFIX) {
            let (k, v) = kv?;
            let plain = self.meta.open(Cf::Meta.name(), &k, &v)?;
            let stored: Stored =
                serde_json::from_slice(&plain).map_err(|e| Error::CorruptMeta(format!("token record: {e}")))?;
            out.push(stored.info);
        }
        out.sort_by_key(|t| t.created);
        Ok(out)
    }

    /// Revokes the token with public id `id`.
    pub fn token_revoke(&self, id: &str) -> Result<()> {
        let key = Self::token_key(id);
        if !self.store.contains(Cf::Meta, &key)? {
            return Err(Error::NotFound);
        }
        let mut batch = self.store.batch();
        batch.delete(Cf::Meta, &key);
        self.store.commit(batch, Durability::Synced)?;
        self.audit_or_log(super::AuditEvent::new("token.revoke", "admin", id));
        Ok(())
    }

    /// Binds the device-bound token `id` to the device with public key `key` (hex) if no
    /// device holds it yet; returns the key it is bound to (the first device's).
    pub fn token_bind_device(&self, id: &str, key: &str) -> Result<String> {
        let k = Self::token_key(id);
        let txn = self.txn()?;
        let Some(sealed) = self.store.get(Cf::Meta, &k)? else { return Err(Error::NotFound) };
        let mut stored: Stored = serde_json::from_slice(&self.meta.open(Cf::Meta.name(), &k, &sealed)?)
            .map_err(|e| Error::CorruptMeta(format!("token record: {e}")))?;
        if let Some(bound) = &stored.info.device_key {
            return Ok(bound.clone());
        }
        stored.info.device_key = Some(key.to_string());
        let json = serde_json::to_vec(&stored).expect("token serialises");
        let mut batch = self.store.batch();
        batch.put(Cf::Meta, &k, &self.meta.seal(Cf::Meta.name(), &k, &json));
        self.store.commit(batch, Durability::Synced)?;
        // Held until the record is written: two first uses at once bind one device.
        drop(txn);
        self.audit_or_log(super::AuditEvent::new("token.bind_device", "admin", id).detail(format!("device {key}")));
        Ok(key.to_string())
    }

    /// Whether the token with public id `id` exists (is not revoked).
    pub fn token_exists(&self, id: &str) -> Result<bool> {
        Ok(self.store.contains(Cf::Meta, &Self::token_key(id))?)
    }

    /// What `token` allows, or why it is refused.
    pub fn token_verify(&self, token: &str) -> Result<std::result::Result<TokenInfo, TokenRefusal>> {
        let Some((id, secret)) = token.strip_prefix(TOKEN_PREFIX).and_then(|t| t.split_once('_')) else {
            return Ok(Err(TokenRefusal::Invalid));
        };
        let (Some(secret), true) = (unhex(secret), id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())) else {
            return Ok(Err(TokenRefusal::Invalid));
        };
        let key = Self::token_key(id);
        let Some(sealed) = self.store.get(Cf::Meta, &key)? else { return Ok(Err(TokenRefusal::Invalid)) };
        let stored: Stored = serde_json::from_slice(&self.meta.open(Cf::Meta.name(), &key, &sealed)?)
            .map_err(|e| Error::CorruptMeta(format!("token record: {e}")))?;
        let expected = unhex(&stored.hash).unwrap_or_default();
        let got = self.secret_hash(&secret);
        if !crate::crypto::keys::constant_time_eq(&expected, &got[..]) {
            return Ok(Err(TokenRefusal::Invalid));
        }
        if now() >= stored.info.expires {
            return Ok(Err(TokenRefusal::Expired(stored.info.expires)));
        }
        Ok(Ok(stored.info))
    }
}

/// `/a/b` from `a/b/`, `/a//b`, ...; `None` for `..`, `.`, NUL or over-long names.
#[must_use]
pub fn normalise_prefix(p: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in p.split('/').filter(|s| !s.is_empty()) {
        if part == "." || part == ".." || part.contains('\0') || part.len() > super::tree::NAME_MAX {
            return None;
        }
        parts.push(part);
    }
    Some(format!("/{}", parts.join("/")))
}
