//! Errors of the gallery API. The HTTP front-end maps them to statuses in one table
//! (`http::error`); engine failures pass through as `Volume`.

/// Why a gallery operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such gallery, item, comment, link or user (or not visible to the caller).
    #[error("not found")]
    NotFound,
    /// The name exists already.
    #[error("already exists")]
    Exists,
    /// The principal's role does not allow this.
    #[error("{0}")]
    Denied(String),
    /// Wrong credentials, or an expired or revoked session or link.
    #[error("{0}")]
    Unauthenticated(String),
    /// The share link needs a password.
    #[error("this share link needs a password")]
    PasswordRequired,
    /// A request that makes no sense, with the reason for people.
    #[error("{0}")]
    Rejected(String),
    /// A per-user limit of the configuration is reached.
    #[error("{0}")]
    Limit(String),
    /// A gallery record failed to decode or names what does not exist.
    #[error("gallery record damaged: {0}")]
    Corrupt(String),
    /// The engine failed (a file operation, a damaged record, the store).
    #[error(transparent)]
    Volume(crate::volume::Error),
}

/// Result of gallery operations.
pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::volume::Error> for Error {
    fn from(e: crate::volume::Error) -> Self {
        match e {
            crate::volume::Error::NotFound => Error::NotFound,
            crate::volume::Error::Exists => Error::Exists,
            e => Error::Volume(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Volume(e.into())
    }
}
