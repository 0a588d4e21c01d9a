//! Errors of the engine API. Front-ends translate them in one place each
//! (`fs::errno` for FUSE); nothing else matches on them.

use crate::ids::{ChunkId, Ino};

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such file, directory or inode.
    #[error("not found")]
    NotFound,
    /// The name exists already.
    #[error("already exists")]
    Exists,
    /// A directory was needed.
    #[error("not a directory")]
    NotDir,
    /// A non-directory was needed.
    #[error("is a directory")]
    IsDir,
    /// The directory is not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// A name longer than 255 bytes, or a symlink target longer than 4095.
    #[error("name too long")]
    NameTooLong,
    /// An argument that makes no sense (moving a directory into itself, a bad offset).
    #[error("invalid argument")]
    Invalid,
    /// The operation is not allowed on this kind of object (hard link to a directory).
    #[error("operation not permitted")]
    NotPermitted,
    /// The directory, or one above it, is under a legal hold: nothing in it may be deleted.
    #[error("under a legal hold: nothing in it can be deleted until the hold is lifted")]
    Held,
    /// The operation or mode is not supported.
    #[error("operation not supported")]
    Unsupported,
    /// Nothing of what was asked lies at or after the offset (`SEEK_DATA` past the last
    /// data, `SEEK_DATA` or `SEEK_HOLE` at or past the end).
    #[error("no data at or after the offset")]
    NoData,
    /// The extended attribute does not exist.
    #[error("no such attribute")]
    NoAttr,
    /// The buffer given is too small for the answer.
    #[error("result too large for the buffer")]
    Range,
    /// The volume is mounted read-only.
    #[error("read-only volume")]
    ReadOnly,
    /// The disk holding the volume is (nearly) full.
    #[error("no space left on the device holding the volume")]
    NoSpace,
    /// A chunk failed authentication or decoding: the stored bytes are damaged.
    #[error("chunk {chunk} of inode {ino} failed verification")]
    Corrupt {
        /// The damaged chunk.
        chunk: ChunkId,
        /// The inode being read.
        ino: Ino,
    },
    /// A metadata record failed authentication or decoding.
    #[error("metadata record damaged: {0}")]
    CorruptMeta(String),
    /// The passphrase opens no key slot.
    #[error("wrong passphrase: no key slot of this volume opens with it")]
    WrongPassphrase,
    /// The identity opens no key slot.
    #[error("this identity opens no key slot of the volume")]
    WrongIdentity,
    /// The last key slot cannot be removed.
    #[error("refusing to remove the last key slot: the volume could never be unlocked again")]
    LastSlot,
    /// The directory is not a nanofs volume (or a newer format).
    #[error("{0}")]
    NotAVolume(String),
    /// The storage layer failed (a full disk is `NoSpace` instead).
    #[error(transparent)]
    Store(crate::store::Error),
    /// An I/O error outside the database (header file, statfs).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of volume operations.
pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        match e {
            crate::store::Error::NoSpace => Error::NoSpace,
            e => Error::Store(e),
        }
    }
}
