//! Errors of the HTTP front-end and the one map from engine and gallery errors to status
//! codes.

use crate::gallery::Error as GalleryError;
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
    /// More fields of the JSON body, for clients that act on them (an object).
    pub detail: Option<serde_json::Value>,
    /// When to try again (`Retry-After`, whole seconds rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), password_required: false, detail: None, retry_after: None }
    }

    /// The same error with the fields of `detail` (an object) in its body.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// 429 Too Many Requests, to try again after `wait`.
    pub fn too_many(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self { retry_after: Some(wait), ..Self::new(StatusCode::TOO_MANY_REQUESTS, message) }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The one table from engine and gallery errors to statuses: every variant, no `_` arm,
/// so a new variant cannot fall through to 500 unnoticed.
fn status_of(e: &GalleryError) -> StatusCode {
    match e {
        GalleryError::NotFound => StatusCode::NOT_FOUND,
        GalleryError::Exists => StatusCode::CONFLICT,
        GalleryError::Denied(_) => StatusCode::FORBIDDEN,
        GalleryError::Unauthenticated(_) | GalleryError::PasswordRequired => StatusCode::UNAUTHORIZED,
        GalleryError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        GalleryError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
        GalleryError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        GalleryError::Volume(e) => match e {
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Exists | Error::NotEmpty | Error::NotDir | Error::IsDir => StatusCode::CONFLICT,
            Error::NameTooLong | Error::Invalid | Error::Range => StatusCode::BAD_REQUEST,
            Error::NotPermitted | Error::ReadOnly => StatusCode::FORBIDDEN,
            Error::Held => StatusCode::LOCKED,
            Error::Unsupported | Error::NoAttr => StatusCode::NOT_IMPLEMENTED,
            Error::NoData => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            Error::Corrupt { .. }
            | Error::CorruptMeta(_)
            | Error::WrongPassphrase
            | Error::WrongIdentity
            | Error::LastSlot
            | Error::NotAVolume(_)
            | Error::Store(_)
            | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> Self {
        let status = status_of(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The cause goes to the log, not to the client.
            tracing::error!(error = %e, "request failed");
            return Self::new(status, "internal error");
        }
        let mut err = Self::new(status, e.to_string());
        err.password_required = matches!(e, GalleryError::PasswordRequired);
        err
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        GalleryError::Volume(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if self.password_required {
            body["password_required"] = true.into();
        }
        if let Some(serde_json::Value::Object(fields)) = self.detail {
            body.as_object_mut().expect("an object").extend(fields);
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
        }
        r
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: GalleryError) -> (StatusCode, bool) {
        let a = ApiError::from(e);
        (a.status, a.password_required)
    }

    #[test]
    fn status_table() {
        let said = |s: &str| s.to_string();
        let cases = [
            (GalleryError::NotFound, StatusCode::NOT_FOUND),
            (GalleryError::Exists, StatusCode::CONFLICT),
            (GalleryError::Denied(said("a viewer may not upload")), StatusCode::FORBIDDEN),
            (GalleryError::Unauthenticated(said("wrong password")), StatusCode::UNAUTHORIZED),
            (GalleryError::PasswordRequired, StatusCode::UNAUTHORIZED),
            (GalleryError::Rejected(said("the title is empty")), StatusCode::UNPROCESSABLE_ENTITY),
            (GalleryError::Limit(said("too many galleries")), StatusCode::TOO_MANY_REQUESTS),
            (GalleryError::Corrupt(said("x")), StatusCode::INTERNAL_SERVER_ERROR),
            (GalleryError::Volume(Error::NotFound), StatusCode::NOT_FOUND),
            (GalleryError::Volume(Error::NotEmpty), StatusCode::CONFLICT),
            (GalleryError::Volume(Error::NameTooLong), StatusCode::BAD_REQUEST),
            (GalleryError::Volume(Error::ReadOnly), StatusCode::FORBIDDEN),
            (GalleryError::Volume(Error::Held), StatusCode::LOCKED),
            (GalleryError::Volume(Error::NoAttr), StatusCode::NOT_IMPLEMENTED),
            (GalleryError::Volume(Error::NoSpace), StatusCode::INSUFFICIENT_STORAGE),
            (GalleryError::Volume(Error::CorruptMeta(said("gitem/1"))), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert_eq!(status(e).0, want, "{text}");
        }
        assert!(status(GalleryError::PasswordRequired).1);
        assert!(!status(GalleryError::Denied(said("no"))).1);
        // Internal causes stay in the log.
        let hidden = ApiError::from(Error::CorruptMeta(said("record gitem/7")));
        assert_eq!(hidden.message, "internal error");
        // Engine errors pass through the same table.
        assert_eq!(ApiError::from(Error::Exists).status, StatusCode::CONFLICT);
    }
}
