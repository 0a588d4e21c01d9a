//! POSIX ACL xattrs (`system.posix_acl_access`) that only restate the mode bits.
//!
//! Without ACL support the kernel still forwards these xattrs, and tools such as `cp -a`
//! set an access ACL *instead of* calling chmod. An ACL with only the owner, group (or
//! mask) and other entries is the mode in another form (`posix_acl_equiv_mode` in Linux),
//! so it is applied as a chmod. ACLs that name users or groups are refused: permission
//! checks are the kernel's and work on the mode alone.

const ACL_VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// The access-ACL xattr name.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// The default-ACL xattr name.
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// What an access ACL means for the mode.
#[derive(Debug, PartialEq, Eq)]
pub enum AccessAcl {
    /// Equivalent to these permission bits (0o777 part of the mode).
    Mode(u32),
    /// Names users or groups: not representable as a mode.
    Extended,
    /// Not a valid ACL xattr.
    Malformed,
}

/// Parses the kernel's ACL xattr format: `version u32 LE`, then entries of
/// `tag u16 LE | perm u16 LE | id u32 LE`.
#[must_use]
pub fn parse_access(value: &[u8]) -> AccessAcl {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return AccessAcl::Malformed;
    }
    if u32::from_le_bytes(value[..4].try_into().expect("4 bytes")) != ACL_VERSION {
        return AccessAcl::Malformed;
    }
    let (mut user, mut group, mut mask, mut other) = (None, None, None, None);
    for e in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u32::from(u16::from_le_bytes([e[2], e[3]]) & 0o7);
        match tag {
            USER_OBJ => user = Some(perm),
            GROUP_OBJ => group = Some(perm),
            MASK => mask = Some(perm),
            OTHER => other = Some(perm),
            USER | GROUP => return AccessAcl::Extended,
            _ => return AccessAcl::Malformed,
        }
    }
    match (user, mask.or(group), other) {
        (Some(u), Some(g), Some(o)) => AccessAcl::Mode(u << 6 | g << 3 | o),
        _ => AccessAcl::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        v
    }

    #[test]
    fn base_entries_are_a_mode() {
        assert_eq!(parse_access(&acl(&[(USER_OBJ, 6), (GROUP_OBJ, 4), (OTHER, 4)])), AccessAcl::Mode(0o644));
        assert_eq!(parse_access(&acl(&[(USER_OBJ, 7), (GROUP_OBJ, 7), (MASK, 5), (OTHER, 0)])), AccessAcl::Mode(0o750));
    }

    #[test]
    fn named_entries_and_garbage_are_not() {
        assert_eq!(parse_access(&acl(&[(USER_OBJ, 6), (USER, 4), (GROUP_OBJ, 4), (OTHER, 4)])), AccessAcl::Extended);
        assert_eq!(parse_access(b"\x02\0\0\0\x01"), AccessAcl::Malformed);
        assert_eq!(parse_access(&acl(&[(USER_OBJ, 6)])), AccessAcl::Malformed);
    }
}
