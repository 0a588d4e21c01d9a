//! Request paths: percent-decoding that refuses anything that could leave a token's scope
//! or name something else than it seems (encoded slashes, NUL, `.` and `..`, over-long
//! names, the hidden upload directory).

use super::error::ApiError;

/// The volume path (`/a/b`, `/` for the root) of the raw (still percent-encoded) path
/// that follows a route prefix.
pub fn volume_path(raw: &str) -> Result<String, ApiError> {
    let mut parts = Vec::new();
    for segment in raw.split('/').filter(|s| !s.is_empty()) {
        let bytes = percent_decode(segment).ok_or_else(|| ApiError::bad_request("malformed percent-encoding"))?;
        let name = String::from_utf8(bytes).map_err(|_| ApiError::bad_request("path is not UTF-8"))?;
        if name.contains('/') || name.contains('\0') {
            return Err(ApiError::bad_request("encoded slash or NUL in the path"));
        }
        if name == "." || name == ".." {
            return Err(ApiError::bad_request("`.` and `..` are not allowed in paths"));
        }
        if name.len() > crate::volume::NAME_MAX {
            return Err(ApiError::bad_request("a path component is longer than 255 bytes"));
        }
        parts.push(name);
    }
    if parts.first().is_some_and(|p| p == ".uploads") {
        return Err(ApiError::bad_request("/.uploads is internal"));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::volume_path;

    #[test]
    fn traversal_and_tricks_are_refused() {
        assert_eq!(volume_path("a/b%20c//d").unwrap(), "/a/b c/d");
        assert_eq!(volume_path("").unwrap(), "/");
        for bad in ["a/../b", "..", "a/%2e%2e/b", "a%2Fb", "a%2fb", "a%00b", "%zz", ".uploads/x", "a/./b"] {
            assert!(volume_path(bad).is_err(), "{bad}");
        }
        assert!(volume_path(&"x".repeat(256)).is_err());
    }
}
