//! Share links: time-limited, optionally password-protected, revocable links that grant a
//! role (viewer or contributor) in one gallery. The token is `nsl_<id>_<secret>`; opening
//! it gives a session bound to the link, which stops working when the link expires or is
//! revoked.

use super::error::{Error, Result};
use super::users::{split_token, verify_password, Principal};
use super::{now, random_id, Action, Actor, Galleries, Gallery, Role};
use crate::ids::{hex, unhex};
use serde::{Deserialize, Serialize};

pub(crate) const LINK_PREFIX: &[u8] = b"glink/";
/// Prefix of share-link tokens.
pub const LINK_TOKEN_PREFIX: &str = "nsl_";
/// Longest life of a link: one year.
pub const MAX_LINK_TTL: i64 = 366 * 86_400;

pub(crate) fn link_key(id: &str) -> Vec<u8> {
    [LINK_PREFIX, id.as_bytes()].concat()
}

/// A link as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Public id.
    pub id: String,
    /// Gallery id.
    pub gallery: String,
    /// Role granted.
    pub role: Role,
    /// Unix seconds of creation.
    pub created: i64,
    /// Unix seconds when it stops working.
    pub expires: i64,
    /// Who made it.
    pub created_by: Option<String>,
    /// Argon2id hash of the password, if one is needed.
    pub password: Option<String>,
    /// Keyed hash of the secret, hex.
    hash: String,
    /// The networks it works from (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ipnet::IpNet>,
    /// The countries it works from (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Bound to the first browser that opens it (`link_bind_device`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub device: bool,
    /// Keyed hash of that browser's device secret, hex, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_hash: Option<String>,
}

/// Whether a request comes from the device a link is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCheck {
    /// The link is bound to no device, or to this one.
    Allowed,
    /// The link is bound to a device and no browser opened it yet.
    Unbound,
    /// It is bound to another device (or the request shows none).
    Refused,
}

/// A link as shown to moderators (no secret, no hash).
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    /// Public id.
    pub id: String,
    /// Role granted.
    pub role: Role,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds.
    pub expires: i64,
    /// Who made it.
    pub created_by: Option<String>,
    /// Whether opening it needs a password.
    pub password: bool,
    /// The networks it works from (empty: any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ipnet::IpNet>,
    /// The countries it works from (empty: any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Bound to the first browser that opens it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub device: bool,
}

impl From<&LinkRecord> for LinkInfo {
    fn from(l: &LinkRecord) -> Self {
        Self {
            id: l.id.clone(),
            role: l.role,
            created: l.created,
            expires: l.expires,
            created_by: l.created_by.clone(),
            password: l.password.is_some(),
            networks: l.networks.clone(),
            countries: l.countries.clone(),
            device: l.device,
        }
    }
}

impl Galleries {
    /// Creates a link; returns it and its token (shown once).
    pub fn link_create(
        &self,
        g: &Gallery,
        actor: &Actor,
        role: Role,
        ttl_secs: i64,
        password: Option<&str>,
        bindings: &crate::volume::Bindings,
    ) -> Result<(LinkInfo, String)> {
        actor.require(Action::ManageLinks)?;
        let countries = bindings
            .countries
            .iter()
            .map(|c| {
                crate::volume::country_code(c)
                    .ok_or_else(|| Error::Rejected(format!("country {c:?}: an ISO 3166-1 code of two letters")))
            })
            .collect::<Result<Vec<_>>>()?;
        if role > Role::Contributor {
            return Err(Error::Rejected("a share link grants viewer or contributor, nothing more".into()));
        }
        if !(1..=MAX_LINK_TTL).contains(&ttl_secs) {
            return Err(Error::Rejected(format!("a link lasts from 1 s to {MAX_LINK_TTL} s")));
        }
        let password = match password {
            Some(p) if p.chars().count() < 4 => {
                return Err(Error::Rejected("a link password needs at least 4 characters".into()))
            }
            Some(p) => Some(super::users::hash_link_password(p)?),
            None => None,
        };
        let id = random_id(8);
        let mut secret = [0u8; 32];
        crate::crypto::keys::random_bytes(&mut secret);
        let created = now();
        let rec = LinkRecord {
            id: id.clone(),
            gallery: g.id.clone(),
            role,
            created,
            expires: created + ttl_secs,
            created_by: actor.name.clone(),
            password,
            hash: hex(&self.vol.keyed_secret_hash(b"link", &secret)),
            networks: bindings.networks.iter().map(ipnet::IpNet::trunc).collect(),
            countries,
            device: bindings.device,
            device_hash: None,
        };
        let info = LinkInfo::from(&rec);
        self.update(|b| {
            b.put(&link_key(&id), &rec);
            self.state.event(
                b,
                &g.id,
                "link.created",
                actor.name.clone(),
                None,
                serde_json::to_value(&info).unwrap_or_default(),
            )
        })?;
        Ok((info, format!("{LINK_TOKEN_PREFIX}{id}_{}", hex(&secret))))
    }

    /// Where link `id` may be used from (`None`: no such link).
    pub fn link_bindings(&self, id: &str) -> Result<Option<crate::volume::Bindings>> {
        Ok(self.vol.record::<LinkRecord>(&link_key(id))?.map(|l| crate::volume::Bindings {
            networks: l.networks,
            countries: l.countries,
            device: l.device,
        }))
    }

    /// Whether a request showing the device secret `secret` (the browser's device cookie)
    /// may use link `id`.
    pub fn link_device_check(&self, id: &str, secret: Option<&str>) -> Result<DeviceCheck> {
        let Some(l) = self.vol.record::<LinkRecord>(&link_key(id))? else { return Ok(DeviceCheck::Allowed) };
        Ok(match (l.device, &l.device_hash, secret) {
            (false, _, _) => DeviceCheck::Allowed,
            (true, None, _) => DeviceCheck::Unbound,
            (true, Some(h), Some(s)) if *h == self.device_hash(s) => DeviceCheck::Allowed,
            (true, Some(_), _) => DeviceCheck::Refused,
        })
    }

    /// Binds link `id` to the device with secret `secret` unless a device holds it
    /// already; returns whether it is bound to this one.
    pub fn link_bind_device(&self, id: &str, secret: &str) -> Result<bool> {
        let hash = self.device_hash(secret);
        self.update(|b| {
            let mut l = self.vol.record::<LinkRecord>(&link_key(id))?.ok_or(Error::NotFound)?;
            match &l.device_hash {
                Some(h) => Ok(*h == hash),
                None => {
                    l.device_hash = Some(hash.clone());
                    b.put(&link_key(id), &l);
                    Ok(true)
                }
            }
        })
    }

    fn device_hash(&self, secret: &str) -> String {
        hex(&self.vol.keyed_secret_hash(b"link device", secret.as_bytes()))
    }

    /// The links of a gallery (expired ones included until revoked), oldest first.
    pub(crate) fn links_of(&self, gallery: &str) -> Result<Vec<LinkRecord>> {
        let mut v: Vec<LinkRecord> = self
            .scan::<LinkRecord>(LINK_PREFIX)?
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| l.gallery == gallery)
            .collect();
        v.sort_by_key(|l| l.created);
        Ok(v)
    }

    /// The links of a gallery, for moderators.
    pub fn link_list(&self, g: &Gallery, actor: &Actor) -> Result<Vec<LinkInfo>> {
        actor.require(Action::ManageLinks)?;
        Ok(self.links_of(&g.id)?.iter().map(LinkInfo::from).collect())
    }

    /// Revokes a link: it and every session opened with it stop working at once.
    pub fn link_revoke(&self, g: &Gallery, actor: &Actor, id: &str) -> Result<()> {
        actor.require(Action::ManageLinks)?;
        self.update(|b| {
            match self.vol.record::<LinkRecord>(&link_key(id))? {
                Some(l) if l.gallery == g.id => {}
                _ => return Err(Error::NotFound),
            }
            b.delete(&link_key(id));
            self.state.event(b, &g.id, "link.revoked", actor.name.clone(), None, serde_json::json!({ "id": id }))
        })
    }

    /// Opens a share link: checks its secret, expiry and password, and returns a session
    /// token bound to it with its expiry (that of the link).
    pub fn link_open(&self, token: &str, password: Option<&str>) -> Result<(String, i64, Principal)> {
        let invalid = || Error::Unauthenticated("this share link is invalid or has been revoked".into());
        let (id, secret) = split_token(token, LINK_TOKEN_PREFIX).ok_or_else(invalid)?;
        let l = self.vol.record::<LinkRecord>(&link_key(id))?.ok_or_else(invalid)?;
        let expected = unhex(&l.hash).unwrap_or_default();
        let got = self.vol.keyed_secret_hash(b"link", &secret);
        let same =
            expected.iter().zip(got.iter()).fold(expected.len() ^ got.len(), |a, (x, y)| a | usize::from(x ^ y)) == 0;
        if !same {
            return Err(invalid());
        }
        if now() >= l.expires {
            return Err(Error::Unauthenticated(format!(
                "this share link expired at {}",
                crate::utc::rfc3339(l.expires)
            )));
        }
        if let Some(phc) = &l.password {
            match password {
                None => return Err(Error::PasswordRequired),
                Some(p) if !verify_password(phc, p) => {
                    return Err(Error::Unauthenticated("wrong password for this share link".into()))
                }
                Some(_) => {}
            }
        }
        let (token, expires) = self.session_open(None, Some(l.id.clone()), l.expires)?;
        Ok((token, expires, Principal::Link { id: l.id, gallery: l.gallery, role: l.role, expires: l.expires }))
    }
}
