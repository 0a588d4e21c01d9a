//! Bearer tokens: who may do what where.

use super::error::ApiError;
use super::geo::Whereabouts;
use super::Sidecar;
use crate::gallery::links::DeviceCheck;
use crate::gallery::users::{Principal, SessionRefusal};
use crate::gallery::{Actor, Gallery, Role};
use crate::volume::{Bindings, Permission, TokenInfo, TokenRefusal};
use axum::http::{HeaderMap, StatusCode};

/// The token of a request, checked against `path` and `need`.
pub async fn authorize(
    state: &Sidecar,
    headers: &HeaderMap,
    path: &str,
    need: Permission,
) -> Result<TokenInfo, ApiError> {
    let token = authenticate(state, headers).await?;
    if !token.allow.contains(&need) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("the token does not allow {need:?}").to_lowercase()));
    }
    if !token.covers(path) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("{path} is outside the token's scope")));
    }
    Ok(token)
}

/// The valid token of a request, whatever it allows.
pub async fn authenticate(state: &Sidecar, headers: &HeaderMap) -> Result<TokenInfo, ApiError> {
    let token = bearer(headers)?;
    accept(state, state.blocking(move |vol| vol.token_verify(&token)).await?).await
}

/// The bearer token a request carries.
pub fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get("authorization")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "malformed authorization header"))?;
    Ok(value
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "expected `Authorization: Bearer TOKEN`"))?
        .trim()
        .to_string())
}

/// `authenticate` after the engine's `token_verify`: the token, if valid and its bindings
/// (networks, countries, device) allow this request.
pub async fn accept(state: &Sidecar, verified: Result<TokenInfo, TokenRefusal>) -> Result<TokenInfo, ApiError> {
    match verified {
        Ok(info) => check_bindings(state, info).await,
        Err(TokenRefusal::Invalid) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid or revoked token")),
        Err(TokenRefusal::Expired(at)) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, format!("token expired at {}", crate::utc::rfc3339(at))))
        }
    }
}

/// Whether the request comes from the networks and countries of `b` (those of a `what`);
/// else 403 saying which rule refused.
pub async fn check_place(state: &Sidecar, b: &Bindings, what: &str) -> Result<(), ApiError> {
    let client = super::observe::current_request().client.0;
    let from = client.map_or_else(|| "an unknown address".to_string(), |c| c.to_string());
    let refuse = |why: String| Err(ApiError::new(StatusCode::FORBIDDEN, why));
    if !b.networks.is_empty() && !client.is_some_and(|ip| b.networks.iter().any(|n| n.contains(&ip))) {
        let nets: Vec<String> = b.networks.iter().map(ToString::to_string).collect();
        return refuse(format!(
            "the {what} is bound to the networks {}; this request comes from {from}",
            nets.join(", ")
        ));
    }
    if b.countries.is_empty() {
        return Ok(());
    }
    let codes = b.countries.join(", ");
    match state.country_of(client) {
        Whereabouts::Country(c) if b.countries.contains(&c) => Ok(()),
        Whereabouts::Country(c) => {
            refuse(format!("the {what} is bound to the countries {codes}; this request comes from {from}, in {c}"))
        }
        Whereabouts::Unknown => refuse(format!(
            "the {what} is bound to the countries {codes}; this request comes from {from}, in no country the database knows"
        )),
        Whereabouts::NoDatabase(why) => refuse(format!("the {what} is bound to the countries {codes}, but {why}")),
    }
}

/// Whether the request comes from the browser that link `id` is bound to (its device
/// cookie); else 403. A link nobody opened yet is bound at its opening (`open_link`).
pub async fn check_link_device(state: &Sidecar, id: &str) -> Result<(), ApiError> {
    let secret = super::observe::current_request().device_cookie;
    let link = id.to_string();
    match state.gallery(move |gs| gs.link_device_check(&link, secret.as_deref())).await? {
        DeviceCheck::Allowed | DeviceCheck::Unbound => Ok(()),
        DeviceCheck::Refused => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the share link is bound to another device (the browser that first opened it)",
        )),
    }
}

/// The token, if the request meets its bindings: the client's address in one of its
/// networks and countries, and signed by its device; else 403 saying which rule refused.
async fn check_bindings(state: &Sidecar, info: TokenInfo) -> Result<TokenInfo, ApiError> {
    let place = Bindings { networks: info.networks.clone(), countries: info.countries.clone(), device: false };
    check_place(state, &place, "token").await?;
    let request = super::observe::current_request();
    let refuse = |why: String| Err(ApiError::new(StatusCode::FORBIDDEN, why));
    if info.device {
        let Some(proof) = request.device_proof else {
            return refuse(format!(
                "the token is bound to a device: sign each request with its key ({} header; nanofs push/pull --device-key)",
                crate::crypto::device::HEADER
            ));
        };
        let key = match crate::crypto::device::verify(&proof, &request.method, &request.target) {
            Ok(k) => k,
            Err(why) => return refuse(format!("the token is bound to a device: {why}")),
        };
        let bound = match &info.device_key {
            Some(k) => k.clone(),
            None => {
                let (id, k) = (info.id.clone(), key.clone());
                state.blocking(move |vol| vol.token_bind_device(&id, &k)).await?
            }
        };
        if bound != key {
            return refuse("the token is bound to another device".into());
        }
    }
    Ok(info)
}

/// Name of the session cookie the web UI uses.
pub const SESSION_COOKIE: &str = "nanofs_session";
/// Name of the cookie that identifies a browser to share links bound to a device.
pub const DEVICE_COOKIE: &str = "nanofs_device";

/// The value of cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Who calls the gallery API: a user or share link (session), a user-bound API token, or
/// an API token whose scope decides (`Scoped`).
#[derive(Debug, Clone)]
pub enum Caller {
    /// A user or a share link.
    Principal(Principal),
    /// An API token without a user: owner of galleries its scope covers when it allows
    /// write and delete, viewer when it allows only read.
    Scoped(TokenInfo),
}

impl Caller {
    /// The actor in `g` (whose directory is at `path`), if the caller has a role there.
    #[must_use]
    pub fn actor_in(&self, g: &Gallery, path: &str) -> Option<Actor> {
        match self {
            Caller::Principal(p) => p.role_in(g).map(|role| Actor { name: p.name(), role }),
            Caller::Scoped(t) if t.covers(path) => {
                let role = if t.allow.contains(&Permission::Write) && t.allow.contains(&Permission::Delete) {
                    Role::Owner
                } else if t.allow.contains(&Permission::Read) {
                    Role::Viewer
                } else {
                    return None;
                };
                Some(Actor { name: None, role })
            }
            Caller::Scoped(_) => None,
        }
    }

    /// Who acts, as the audit trail names them: a user, `link:ID`, `token:ID` or `admin`.
    #[must_use]
    pub fn who(&self) -> String {
        match self {
            Caller::Principal(Principal::User(u)) => u.clone(),
            Caller::Principal(Principal::Link { id, .. }) => format!("link:{id}"),
            Caller::Principal(Principal::Admin) => "admin".into(),
            Caller::Scoped(t) => format!("token:{}", t.id),
        }
    }

    /// The user behind the call, if it is one.
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Principal(Principal::User(u)) => Some(u),
            _ => None,
        }
    }
}

/// The bearer token or session cookie of a request.
pub fn credential_of(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    cookie(headers, SESSION_COOKIE)
}

/// The caller of a gallery request.
pub async fn caller(state: &Sidecar, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = credential_of(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "log in, open a share link, or send a bearer token"))?;
    caller_of_token(state, token).await
}

/// The caller a token or session stands for.
pub async fn caller_of_token(state: &Sidecar, token: String) -> Result<Caller, ApiError> {
    if token.starts_with(crate::volume::TOKEN_PREFIX) {
        let info = match state.blocking(move |vol| vol.token_verify(&token)).await? {
            Ok(info) => check_bindings(state, info).await?,
            Err(TokenRefusal::Invalid) => {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid or revoked token"))
            }
            Err(TokenRefusal::Expired(at)) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!("token expired at {}", crate::utc::rfc3339(at)),
                ))
            }
        };
        return Ok(match info.user.clone() {
            Some(u) => Caller::Principal(Principal::User(u)),
            None => Caller::Scoped(info),
        });
    }
    match state.gallery(move |gs| gs.session_verify(&token)).await? {
        Ok(Principal::Link { id, gallery, role, expires }) => {
            // A session of a link bound to networks or countries works only from there.
            let link = id.clone();
            if let Some(b) = state.gallery(move |gs| gs.link_bindings(&link)).await? {
                check_place(state, &b, "share link").await?;
                if b.device {
                    check_link_device(state, &id).await?;
                }
            }
            Ok(Caller::Principal(Principal::Link { id, gallery, role, expires }))
        }
        Ok(p) => Ok(Caller::Principal(p)),
        Err(SessionRefusal::Invalid) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "not logged in: the session is unknown or has ended"))
        }
        Err(SessionRefusal::Expired(at)) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("the session or its share link expired at {}", crate::utc::rfc3339(at)),
        )),
        Err(SessionRefusal::Revoked) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "the share link of this session has been revoked"))
        }
    }
}
