//! `volume::Error` → errno: the one translation table of the FUSE front-end.

use crate::volume::Error;

/// The errno a failed volume operation returns to the kernel. Damage is logged here too,
/// so every EIO caused by a bad chunk leaves a line in the log.
#[must_use]
pub fn to_errno(e: &Error) -> i32 {
    match e {
        Error::NotFound => libc::ENOENT,
        Error::Exists => libc::EEXIST,
        Error::NotDir => libc::ENOTDIR,
        Error::IsDir => libc::EISDIR,
        Error::NotEmpty => libc::ENOTEMPTY,
        Error::NameTooLong => libc::ENAMETOOLONG,
        Error::Invalid => libc::EINVAL,
        Error::NotPermitted | Error::Held => libc::EPERM,
        Error::Unsupported => libc::EOPNOTSUPP,
        Error::NoData => libc::ENXIO,
        Error::NoAttr => libc::ENODATA,
        Error::Range => libc::ERANGE,
        Error::ReadOnly => libc::EROFS,
        Error::NoSpace => libc::ENOSPC,
        Error::Corrupt { chunk, ino } => {
            tracing::error!(%chunk, inode = %ino, "read failed: damaged chunk, returning EIO");
            libc::EIO
        }
        Error::CorruptMeta(what) => {
            tracing::error!(what = %what, "damaged metadata, returning EIO");
            libc::EIO
        }
        Error::WrongPassphrase | Error::WrongIdentity | Error::LastSlot | Error::NotAVolume(_) => libc::EINVAL,
        Error::Store(e) => {
            tracing::error!(error = %e, "store failure, returning EIO");
            libc::EIO
        }
        Error::Io(e) => {
            tracing::error!(error = %e, "I/O failure, returning EIO");
            e.raw_os_error().unwrap_or(libc::EIO)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChunkId, Ino};

    #[test]
    fn errno_table() {
        let table: Vec<(Error, i32)> = vec![
            (Error::NotFound, libc::ENOENT),
            (Error::Exists, libc::EEXIST),
            (Error::NotDir, libc::ENOTDIR),
            (Error::IsDir, libc::EISDIR),
            (Error::NotEmpty, libc::ENOTEMPTY),
            (Error::NameTooLong, libc::ENAMETOOLONG),
            (Error::Invalid, libc::EINVAL),
            (Error::NotPermitted, libc::EPERM),
            (Error::Held, libc::EPERM),
            (Error::Unsupported, libc::EOPNOTSUPP),
            (Error::NoData, libc::ENXIO),
            (Error::NoAttr, libc::ENODATA),
            (Error::Range, libc::ERANGE),
            (Error::ReadOnly, libc::EROFS),
            (Error::NoSpace, libc::ENOSPC),
            (Error::Corrupt { chunk: ChunkId([0; 32]), ino: Ino(5) }, libc::EIO),
            (Error::CorruptMeta("x".into()), libc::EIO),
            (Error::from(crate::store::Error::NoSpace), libc::ENOSPC),
            (Error::from(crate::store::Error::Db("x".into())), libc::EIO),
            (Error::Io(std::io::Error::from_raw_os_error(libc::EACCES)), libc::EACCES),
        ];
        for (e, want) in table {
            assert_eq!(to_errno(&e), want, "{e:?}");
        }
    }
}
