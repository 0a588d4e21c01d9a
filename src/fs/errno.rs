//! `volume::Error` → errno: the one translation table of the FUSE front-end.

use crate::volume::Error;
use fuser::Errno;

/// The errno a failed volume operation returns to the kernel. Damage is logged here too,
/// so every EIO caused by a bad chunk leaves a line in the log.
#[must_use]
pub fn to_errno(e: &Error) -> Errno {
    match e {
        Error::NotFound => Errno::ENOENT,
        Error::Exists => Errno::EEXIST,
        Error::NotDir => Errno::ENOTDIR,
        Error::IsDir => Errno::EISDIR,
        Error::NotEmpty => Errno::ENOTEMPTY,
        Error::NameTooLong => Errno::ENAMETOOLONG,
        Error::Invalid => Errno::EINVAL,
        Error::NotPermitted | Error::Held => Errno::EPERM,
        Error::Unsupported => Errno::EOPNOTSUPP,
        Error::NoData => Errno::ENXIO,
        Error::NoAttr => Errno::NO_XATTR,
        Error::Range => Errno::ERANGE,
        Error::ReadOnly => Errno::EROFS,
        Error::NoSpace => Errno::ENOSPC,
        Error::Corrupt { chunk, ino } => {
            tracing::error!(%chunk, inode = %ino, "read failed: damaged chunk, returning EIO");
            Errno::EIO
        }
        Error::CorruptMeta(what) => {
            tracing::error!(what = %what, "damaged metadata, returning EIO");
            Errno::EIO
        }
        Error::WrongPassphrase | Error::WrongIdentity | Error::LastSlot | Error::NotAVolume(_) => Errno::EINVAL,
        Error::Store(e) => {
            tracing::error!(error = %e, "store failure, returning EIO");
            Errno::EIO
        }
        Error::Io(e) => {
            tracing::error!(error = %e, "I/O failure, returning EIO");
            e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChunkId, Ino};

    #[test]
    fn errno_table() {
        let table: Vec<(Error, Errno)> = vec![
            (Error::NotFound, Errno::ENOENT),
            (Error::Exists, Errno::EEXIST),
            (Error::NotDir, Errno::ENOTDIR),
            (Error::IsDir, Errno::EISDIR),
            (Error::NotEmpty, Errno::ENOTEMPTY),
            (Error::NameTooLong, Errno::ENAMETOOLONG),
            (Error::Invalid, Errno::EINVAL),
            (Error::NotPermitted, Errno::EPERM),
            (Error::Held, Errno::EPERM),
            (Error::Unsupported, Errno::EOPNOTSUPP),
            (Error::NoData, Errno::ENXIO),
            (Error::NoAttr, Errno::NO_XATTR),
            (Error::Range, Errno::ERANGE),
            (Error::ReadOnly, Errno::EROFS),
            (Error::NoSpace, Errno::ENOSPC),
            (Error::Corrupt { chunk: ChunkId([0; 32]), ino: Ino(5) }, Errno::EIO),
            (Error::CorruptMeta("x".into()), Errno::EIO),
            (Error::from(crate::store::Error::NoSpace), Errno::ENOSPC),
            (Error::from(crate::store::Error::Db("x".into())), Errno::EIO),
            (Error::Io(std::io::Error::from_raw_os_error(libc::EACCES)), Errno::EACCES),
        ];
        for (e, want) in table {
            assert_eq!(to_errno(&e), want, "{e:?}");
        }
    }
}
