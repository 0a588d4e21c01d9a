//! Errors of the HTTP front-end and the one map from engine errors to status codes.

use crate::volume::Error;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A request that fails: a status and a message for the client (JSON `{"error": ...}`).
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// A share link that needs a password (tells the web UI to ask for one).
    pub password_required: bool,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), password_required: false }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Exists | Error::NotEmpty | Error::NotDir | Error::IsDir => StatusCode::CONFLICT,
            Error::NameTooLong | Error::Invalid | Error::Range => StatusCode::BAD_REQUEST,
            Error::NotPermitted | Error::ReadOnly => StatusCode::FORBIDDEN,
            Error::Unsupported | Error::NoAttr => StatusCode::NOT_IMPLEMENTED,
            Error::NoData => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::Unauthenticated(_) | Error::PasswordRequired => StatusCode::UNAUTHORIZED,
            Error::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
        }
        let mut err = Self::new(status, e.to_string());
        err.password_required = matches!(e, Error::PasswordRequired);
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.password_required {
            serde_json::json!({ "error": self.message, "password_required": true })
        } else {
            serde_json::json!({ "error": self.message })
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
