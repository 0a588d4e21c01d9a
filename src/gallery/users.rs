//! Users of the sidecar (Argon2id password hashes) and login sessions.
//!
//! A session token is `nss_<id>_<secret>`; only a keyed hash of the secret is stored, and
//! it is compared in constant time. A session opened from a share link is bound to the
//! link and dies with it.

use super::error::{Error, Result};
use super::links::LinkRecord;
use super::{now, random_id, Galleries, Gallery, Role};
use crate::ids::{hex, unhex};
use crate::volume::Durability;
use crate::volume::HookBatch;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

pub(crate) const USER_PREFIX: &[u8] = b"user/";
pub(crate) const SESSION_PREFIX: &[u8] = b"session/";
/// Prefix of session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "nss_";

/// A user as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string.
    pub password: String,
    /// Unix seconds.
    pub created: i64,
}

/// Who a session or token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user.
    User(String),
    /// A share link: its gallery and role only.
    Link {
        /// Link id.
        id: String,
        /// Gallery id.
        gallery: String,
        /// Role it grants.
        role: Role,
        /// Unix seconds when it stops working.
        expires: i64,
    },
    /// The volume's administrator (acts as owner of every gallery).
    Admin,
}

impl Principal {
    /// The name recorded as author.
    #[must_use]
    pub fn name(&self) -> Option<String> {
        match self {
            Principal::User(u) => Some(u.clone()),
            Principal::Link { id, .. } => Some(format!("link:{id}")),
            Principal::Admin => None,
        }
    }

    /// The role this principal has in `g`, if any.
    #[must_use]
    pub fn role_in(&self, g: &Gallery) -> Option<Role> {
        match self {
            Principal::User(u) => g.members.get(u).copied(),
            Principal::Link { gallery, role, .. } => (gallery == &g.id).then_some(*role),
            Principal::Admin => Some(Role::Owner),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Session {
    user: Option<String>,
    link: Option<String>,
    hash: String,
    created: i64,
    expires: i64,
}

/// Why a session token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    /// Malformed, unknown, logged out, or a wrong secret.
    Invalid,
    /// Past its expiry, or its link expired (Unix seconds).
    Expired(i64),
    /// Its share link was revoked.
    Revoked,
}

pub(crate) fn check_user_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        && !name.starts_with('.')
        && !name.starts_with("link:");
    if ok {
        Ok(())
    } else {
        Err(Error::Rejected(format!(
            "user name {name:?}: 1 to 64 characters of letters, digits, '.', '_', '-' and '@', not starting with '.'"
        )))
    }
}

fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < 8 {
        return Err(Error::Rejected("a password needs at least 8 characters".into()));
    }
    hash_link_password(password)
}

/// Argon2id PHC string of a password, without a length rule (share links set their own).
pub(crate) fn hash_link_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    crate::crypto::keys::random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Rejected(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Rejected(format!("hashing the password: {e}")))
}

pub(crate) fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// `prefix<id>_<secret>` split and checked for shape.
pub(crate) fn split_token<'a>(token: &'a str, prefix: &str) -> Option<(&'a str, Vec<u8>)> {
    let (id, secret) = token.strip_prefix(prefix)?.split_once('_')?;
    let secret = unhex(secret)?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 32).then_some((id, secret))
}

/// A record whose key `hash_name_keys` rewrites.
enum Record {
    User(User),
    Reaction(super::collab::Reaction),
}

/// Whether `key` (under `gx/`) is a reaction's: `gx/` + ino (8 bytes) + `/r/`.
fn is_reaction_key(key: &[u8]) -> bool {
    key.len() > 14 && &key[11..12] == b"/" && &key[12..14] == super::collab::REACTION
}

fn equal_ct(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b.iter()).fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y)) == 0
}

impl Galleries {
    fn user_key(&self, name: &str) -> Vec<u8> {
        [USER_PREFIX, self.name_tag(name).as_bytes()].concat()
    }

    /// What keys hold instead of a person's name: 32 hex digits of a keyed BLAKE2b of it,
    /// so the database files show no names (docs/crypto.md). Values are sealed already.
    pub(crate) fn name_tag(&self, name: &str) -> String {
        self.vol.person_tag(name)
    }

    /// Volumes written before names were hashed have `user/<name>` keys and reaction keys
    /// that end in a name: rewritten once, at the first writable open. Returns how many.
    pub(crate) fn hash_name_keys(&self) -> Result<usize> {
        if self.vol.is_read_only() {
            return Ok(0);
        }
        let mut moves: Vec<(Vec<u8>, Vec<u8>, Record)> = Vec::new();
        for (key, user) in self.scan::<User>(USER_PREFIX)? {
            let new = self.user_key(&user.name);
            if key != new {
                moves.push((key, new, Record::User(user)));
            }
        }
        for (key, r) in self
            .scan::<super::collab::Reaction>(super::items::COLLAB_PREFIX)?
            .into_iter()
            .filter(|(k, _)| is_reaction_key(k))
        {
            let ino = crate::ids::Ino(u64::from_be_bytes(key[3..11].try_into().expect("8 bytes")));
            let new = self.reaction_key(ino, &r.emoji, &r.user);
            if key != new {
                moves.push((key, new, Record::Reaction(r)));
            }
        }
        if moves.is_empty() {
            return Ok(0);
        }
        let n = moves.len();
        self.update(|b| {
            for (old, new, rec) in &moves {
                b.delete(old);
                match rec {
                    Record::User(u) => b.put(new, u),
                    Record::Reaction(r) => b.put(new, r),
                }
            }
            Ok(())
        })?;
        // The old keys leave the database files only when compaction drops them.
        self.vol.compact_records()?;
        tracing::info!(records = n, "keys that held names now hold keyed hashes");
        Ok(n)
    }

    /// The user `name`, if there is one.
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self.vol.record(&self.user_key(name))?)
    }

    /// The user `name`, or `Rejected` naming who is missing.
    pub fn require_user(&self, name: &str) -> Result<User> {
        self.user(name)?.ok_or_else(|| Error::Rejected(format!("no user {name:?}")))
    }

    /// Adds a user.
    pub fn user_add(&self, name: &str, password: &str) -> Result<()> {
        check_user_name(name)?;
        let hash = hash_password(password)?;
        self.update(|b| {
            if self.user(name)?.is_some() {
                return Err(Error::Exists);
            }
            b.put(&self.user_key(name), &User { name: name.into(), password: hash, created: now() });
            Ok(())
        })
    }

    /// Sets a user's password and ends their sessions.
    pub fn user_set_password(&self, name: &str, password: &str) -> Result<()> {
        let hash = hash_password(password)?;
        let mut user = self.user(name)?.ok_or(Error::NotFound)?;
        user.password = hash;
        self.update(|b| {
            b.put(&self.user_key(name), &user);
            self.end_sessions(b, |s| s.user.as_deref() == Some(name)).map(drop)
        })
    }

    /// Every user name.
    pub fn user_list(&self) -> Result<Vec<String>> {
        Ok(self.scan::<User>(USER_PREFIX)?.into_iter().map(|(_, u)| u.name).collect())
    }

    /// Removes a user: their sessions end and their memberships go. Refused while they own
    /// a gallery (ownership must be transferred first, so no gallery is left ownerless).
    pub fn user_remove(&self, name: &str) -> Result<()> {
        self.user(name)?.ok_or(Error::NotFound)?;
        let owned: Vec<String> =
            self.gallery_list()?.into_iter().filter(|g| g.owner() == Some(name)).map(|g| g.title).collect();
        if !owned.is_empty() {
            return Err(Error::Rejected(format!(
                "{name} owns {}; transfer or delete them first",
                owned.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
        self.update(|b| {
            for mut g in self.galleries_of(name)? {
                g.members.remove(name);
                b.put(&Self::gallery_key(&g.id), &g);
                self.state.event(
                    b,
                    &g.id,
                    "member.changed",
                    None,
                    None,
                    serde_json::json!({ "user": name, "role": null }),
                )?;
            }
            self.end_sessions(b, |s| s.user.as_deref() == Some(name))?;
            b.delete(&self.user_key(name));
            Ok(())
        })
    }

    /// The open sessions of `name`: when each began and ends (never its secret).
    pub(crate) fn sessions_of(&self, name: &str) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .scan::<Session>(SESSION_PREFIX)?
            .into_iter()
            .filter(|(_, s)| s.user.as_deref() == Some(name))
            .map(|(_, s)| {
                serde_json::json!({
                    "created": crate::utc::rfc3339(s.created), "expires": crate::utc::rfc3339(s.expires)
                })
            })
            .collect())
    }

    /// Ends the sessions `which` selects, in `b`; returns how many.
    fn end_sessions(&self, b: &mut HookBatch<'_, '_>, which: impl Fn(&Session) -> bool) -> Result<usize> {
        let mut n = 0;
        for (k, s) in self.scan::<Session>(SESSION_PREFIX)? {
            if which(&s) {
                b.delete(&k);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Checks a user's password and opens a session; returns the token and its expiry.
    pub fn login(&self, name: &str, password: &str) -> Result<(String, i64)> {
        let user = self.user(name)?;
        // An unknown user costs the same as a wrong password, so names cannot be probed.
        let phc = user.as_ref().map_or(DUMMY_HASH, |u| u.password.as_str());
        if !verify_password(phc, password) || user.is_none() {
            return Err(Error::Unauthenticated("wrong user name or password".into()));
        }
        let ttl = i64::from(self.vol.config().media.collaboration.session_ttl_hours) * 3600;
        self.session_open(Some(name.to_string()), None, now() + ttl)
    }

    pub(crate) fn session_open(
        &self,
        user: Option<String>,
        link: Option<String>,
        expires: i64,
    ) -> Result<(String, i64)> {
        let id = random_id(8);
        let mut secret = [0u8; 32];
        crate::crypto::keys::random_bytes(&mut secret);
        let s = Session {
            user,
            link,
            hash: hex(&self.vol.keyed_secret_hash(b"session", &secret)),
            created: now(),
            expires,
        };
        self.update(|b| {
            b.put(&[SESSION_PREFIX, id.as_bytes()].concat(), &s);
            Ok(())
        })?;
        Ok((format!("{SESSION_TOKEN_PREFIX}{id}_{}", hex(&secret)), expires))
    }

    /// Ends the session of `token` (no error if it is unknown).
    pub fn logout(&self, token: &str) -> Result<()> {
        if let Some((id, _)) = split_token(token, SESSION_TOKEN_PREFIX) {
            if let Ok(Ok(_)) = self.session_verify(token) {
                self.update(|b| {
                    b.delete(&[SESSION_PREFIX, id.as_bytes()].concat());
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// Who the session `token` speaks for, or why it is refused.
    pub fn session_verify(&self, token: &str) -> Result<std::result::Result<Principal, SessionRefusal>> {
        let Some((id, secret)) = split_token(token, SESSION_TOKEN_PREFIX) else {
            return Ok(Err(SessionRefusal::Invalid));
        };
        let Some(s) = self.vol.record::<Session>(&[SESSION_PREFIX, id.as_bytes()].concat())? else {
            return Ok(Err(SessionRefusal::Invalid));
        };
        let expected = unhex(&s.hash).unwrap_or_default();
        if !equal_ct(&expected, &self.vol.keyed_secret_hash(b"session", &secret)) {
            return Ok(Err(SessionRefusal::Invalid));
        }
        if now() >= s.expires {
            return Ok(Err(SessionRefusal::Expired(s.expires)));
        }
        if let Some(link) = s.link {
            return self.link_principal(&link);
        }
        match s.user {
            Some(u) if self.user(&u)?.is_some() => Ok(Ok(Principal::User(u))),
            _ => Ok(Err(SessionRefusal::Invalid)),
        }
    }

    /// The principal of link `id` if it still works.
    pub fn link_principal(&self, id: &str) -> Result<std::result::Result<Principal, SessionRefusal>> {
        let Some(l) = self.vol.record::<LinkRecord>(&super::links::link_key(id))? else {
            return Ok(Err(SessionRefusal::Revoked));
        };
        if now() >= l.expires {
            return Ok(Err(SessionRefusal::Expired(l.expires)));
        }
        Ok(Ok(Principal::Link { id: l.id, gallery: l.gallery, role: l.role, expires: l.expires }))
    }

    /// Deletes sessions past their expiry; returns how many.
    pub fn session_sweep(&self) -> Result<usize> {
        let t = now();
        self.vol.update(self.hook, Durability::Buffered, |b| self.end_sessions(b, |s| s.expires <= t))
    }
}

/// A valid Argon2id hash of a random password, verified against when the user does not
/// exist so that both cases take the same time.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Ur6zD0a7JH3XGqmOBAzQ0v8zXJ6o1Bb6bF8hG3gYh2Q";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsf"));
        assert!(hash_password("short").is_err());
        // The dummy parses with the parameters of real hashes, so an unknown user costs
        // the same verification as a known one.
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = PasswordHash::new(&h).unwrap();
        assert_eq!((dummy.algorithm, dummy.version, &dummy.params), (real.algorithm, real.version, &real.params));
        assert_eq!(dummy.hash.map(|o| o.len()), real.hash.map(|o| o.len()));
        assert!(!verify_password(DUMMY_HASH, "anything"));
    }

    #[test]
    fn user_names() {
        for ok in ["alice", "bob.smith", "c_d-e@x"] {
            check_user_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "a b", "link:abc", "ä", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
