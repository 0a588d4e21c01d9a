//! Device keys for tokens bound to one device (`nanofs token create --device`): the client
//! keeps an Ed25519 key pair and signs every request; the sidecar registers the public
//! half at the token's first use and from then on refuses requests that another key
//! signed, so a copied token is useless elsewhere.
//!
//! Header: `X-Nanofs-Device: <public key>.<unix seconds>.<signature>` (base64url, no
//! padding), the signature over `nanofs-device-v1\n<METHOD>\n<path and query>\n<seconds>`.
//! A proof is accepted within `MAX_SKEW` of the server's clock, so a captured header can
//! be replayed only for the same request, briefly; TLS keeps it from being captured.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64ct::{Base64UrlUnpadded, Encoding};
use std::path::Path;

/// The header that carries a proof.
pub const HEADER: &str = "x-nanofs-device";
/// How far a proof's time may be from the server's, seconds.
pub const MAX_SKEW: i64 = 300;

fn message(method: &str, path_and_query: &str, secs: i64) -> Vec<u8> {
    format!("nanofs-device-v1\n{method}\n{path_and_query}\n{secs}").into_bytes()
}

/// A device's key pair.
pub struct DeviceKey(Ed25519KeyPair);

impl DeviceKey {
    /// The key in `path` (PKCS#8), made (mode 0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let bad = |e: aws_lc_rs::error::KeyRejected| std::io::Error::other(format!("{}: {e}", path.display()));
        match std::fs::read(path) {
            Ok(der) => Ed25519KeyPair::from_pkcs8(&der).map(Self).map_err(bad),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| std::io::Error::other("cannot make a device key"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(der.as_ref())?;
                f.sync_all()?;
                Ed25519KeyPair::from_pkcs8(der.as_ref()).map(Self).map_err(bad)
            }
            Err(e) => Err(e),
        }
    }

    /// The header value proving this device sends `method path_and_query` now.
    #[must_use]
    pub fn proof(&self, method: &str, path_and_query: &str) -> String {
        let secs = crate::utc::now_secs();
        let sig = self.0.sign(&message(method, path_and_query, secs));
        format!(
            "{}.{secs}.{}",
            Base64UrlUnpadded::encode_string(self.0.public_key().as_ref()),
            Base64UrlUnpadded::encode_string(sig.as_ref())
        )
    }
}

/// The public key (hex) of a valid proof of `method path_and_query`, or why it is not one.
pub fn verify(header: &str, method: &str, path_and_query: &str) -> Result<String, String> {
    let mut parts = header.trim().split('.');
    let (Some(key), Some(secs), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the device proof is malformed".into());
    };
    let key = Base64UrlUnpadded::decode_vec(key).map_err(|_| "the device key is not base64url")?;
    let sig = Base64UrlUnpadded::decode_vec(sig).map_err(|_| "the device signature is not base64url")?;
    let secs: i64 = secs.parse().map_err(|_| "the device proof's time is not a number")?;
    if (crate::utc::now_secs() - secs).abs() > MAX_SKEW {
        return Err(format!("the device proof's time is more than {MAX_SKEW} s from the server's clock"));
    }
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(&message(method, path_and_query, secs), &sig)
        .map_err(|_| "the device signature does not match this request".to_string())?;
    Ok(crate::ids::hex(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let key = DeviceKey::load_or_create(&path).unwrap();
        let again = DeviceKey::load_or_create(&path).unwrap();
        let proof = key.proof("GET", "/files/a?x=1");
        let id = verify(&proof, "GET", "/files/a?x=1").unwrap();
        assert_eq!(verify(&again.proof("PUT", "/f"), "PUT", "/f").unwrap(), id, "the same key from the file");
        assert!(verify(&proof, "GET", "/files/b").is_err(), "another path");
        assert!(verify(&proof, "DELETE", "/files/a?x=1").is_err(), "another method");
        let other = DeviceKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert_ne!(verify(&other.proof("GET", "/"), "GET", "/").unwrap(), id);
        assert!(verify("a.b", "GET", "/").is_err());
        let old = proof.split('.').map(str::to_string).collect::<Vec<_>>();
        let stale = format!("{}.{}.{}", old[0], old[1].parse::<i64>().unwrap() - 1000, old[2]);
        assert!(verify(&stale, "GET", "/files/a?x=1").unwrap_err().contains("clock"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }
}
