//! Argon2id: turns a passphrase into a 256-bit key-wrapping key.

use super::Error;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Argon2id cost parameters, stored in each passphrase key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// Default for new slots: 64 MiB, 3 passes (about half a second on one core here;
    /// OWASP's second recommended Argon2id setting uses less memory and is weaker).
    pub const DEFAULT: Self = Self { m_kib: 64 * 1024, t: 3, p: 1 };
    /// Cheap parameters for tests only (`NANOFS_INSECURE_FAST_KDF=1`).
    pub const TEST_ONLY: Self = Self { m_kib: 256, t: 1, p: 1 };
}

/// Derives 32 bytes from `passphrase` and `salt`.
pub fn derive(passphrase: &[u8], salt: &[u8], params: Argon2Params) -> Result<Zeroizing<[u8; 32]>, Error> {
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| Error::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(passphrase, salt, out.as_mut()).map_err(|e| Error::Kdf(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_depends_on_passphrase_and_salt() {
        let p = Argon2Params::TEST_ONLY;
        let a = derive(b"correct horse", b"saltsaltsaltsalt", p).unwrap();
        assert_eq!(*a, *derive(b"correct horse", b"saltsaltsaltsalt", p).unwrap());
        assert_ne!(*a, *derive(b"correct horsf", b"saltsaltsaltsalt", p).unwrap());
        assert_ne!(*a, *derive(b"correct horse", b"saltsaltsaltsalu", p).unwrap());
    }
}
