//! Bearer tokens: who may do what where.

use super::error::ApiError;
use super::Sidecar;
use crate::volume::{Permission, TokenInfo, TokenRefusal};
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
    let value = headers
        .get("authorization")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "malformed authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "expected `Authorization: Bearer TOKEN`"))?
        .trim()
        .to_string();
    match state.blocking(move |vol| vol.token_verify(&token)).await? {
        Ok(info) => Ok(info),
        Err(TokenRefusal::Invalid) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid or revoked token")),
        Err(TokenRefusal::Expired(at)) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, format!("token expired at {}", crate::utc::rfc3339(at))))
        }
    }
}
