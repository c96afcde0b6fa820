//! PFS paths: `/<pbd>/<path inside the filesystem>`.
//!
//! As in the reference: after the first `/`, further leading slashes are
//! skipped; the PBD name runs to the next `/`, which must exist (`/nvme1n1`
//! alone is invalid, `/nvme1n1/` is the root). What follows is the path
//! inside the filesystem, which the mount's one resolver takes apart
//! ([`crate::mount::Mount::resolve`]: empty components ignored, `.` and `..`
//! followed, a trailing `/` requires a directory).
//!
//! The path inside the filesystem is bytes: names need not be UTF-8, as in
//! the reference. The PBD name names a device and must be UTF-8.

use crate::error::{CoreError, Result};
use pfs_format::layout::{MAX_NAME_LEN, MAX_PATH_LEN, MAX_PBD_NAME_LEN};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// A parsed PFS path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfsPath {
    /// The PBD name.
    pub pbd: String,
    /// The path inside the filesystem, from the `/` after the PBD name.
    inner: Vec<u8>,
    /// The path as given.
    given: Vec<u8>,
}

impl PfsPath {
    /// Parses `/<pbd>/...` from bytes (any bytes after the PBD name).
    pub fn parse(s: impl AsRef<[u8]>) -> Result<PfsPath> {
        let s = s.as_ref();
        let shown = || String::from_utf8_lossy(s).into_owned();
        let bad = |reason| CoreError::BadPath {
            path: shown(),
            reason,
        };
        if s.len() > MAX_PATH_LEN {
            return Err(CoreError::NameTooLong { path: shown() });
        }
        let rest = s
            .strip_prefix(b"/")
            .ok_or_else(|| bad("a PFS path starts with /<pbd>/"))?;
        let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
        let rest = &rest[start..];
        let slash = rest.iter().position(|&b| b == b'/').ok_or_else(|| {
            bad("a PFS path is /<pbd>/<path>; the PBD name must be followed by '/'")
        })?;
        let (pbd, inner) = (&rest[..slash], &rest[slash..]);
        if pbd.is_empty() {
            return Err(bad("empty PBD name"));
        }
        if pbd.len() > MAX_PBD_NAME_LEN {
            return Err(CoreError::NameTooLong { path: shown() });
        }
        let pbd = std::str::from_utf8(pbd).map_err(|_| bad("a PBD name must be UTF-8"))?;
        if inner.split(|&b| b == b'/').any(|c| c.len() > MAX_NAME_LEN) {
            return Err(CoreError::NameTooLong { path: shown() });
        }
        Ok(PfsPath {
            pbd: pbd.to_owned(),
            inner: inner.to_vec(),
            given: s.to_vec(),
        })
    }

    /// Parses a command-line argument (see [`PfsPath::parse`]).
    pub fn parse_os(s: &OsStr) -> Result<PfsPath> {
        PfsPath::parse(s.as_bytes())
    }

    /// The path inside the filesystem, from the `/` after the PBD name
    /// (`/` for the root).
    pub fn inner(&self) -> &[u8] {
        &self.inner
    }

    /// The whole path, byte for byte as it was given.
    pub fn as_bytes(&self) -> &[u8] {
        &self.given
    }
}

/// The path as given, for messages (bytes that are not UTF-8 shown as
/// U+FFFD).
impl fmt::Display for PfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.given))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_reference() {
        let p = PfsPath::parse("/nvme1n1/shared_data//pg_wal/0001").unwrap();
        assert_eq!(p.pbd, "nvme1n1");
        assert_eq!(p.inner(), b"/shared_data//pg_wal/0001");
        assert_eq!(p.to_string(), "/nvme1n1/shared_data//pg_wal/0001");
        let root = PfsPath::parse("//nvme1n1/").unwrap();
        assert_eq!(root.inner(), b"/");
        for bad in ["/d", "/nvme1n1", "/", "//", "nvme1n1/d"] {
            assert!(PfsPath::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            PfsPath::parse(format!("/n/{}", "x".repeat(256))),
            Err(CoreError::NameTooLong { .. })
        ));
        assert!(PfsPath::parse(format!("/n/{}", "x".repeat(255))).is_ok());
    }

    #[test]
    fn names_need_not_be_utf8() {
        let p = PfsPath::parse_os(OsStr::from_bytes(b"/nvme1n1/caf\xe9/\xff\xfe")).unwrap();
        assert_eq!(p.pbd, "nvme1n1");
        assert_eq!(p.inner(), b"/caf\xe9/\xff\xfe");
        assert_eq!(p.as_bytes(), b"/nvme1n1/caf\xe9/\xff\xfe");
        assert_eq!(p.to_string(), "/nvme1n1/caf\u{fffd}/\u{fffd}\u{fffd}");
        // 255 bytes in a name, whatever they are; 256 is too long.
        let mut long = b"/n/".to_vec();
        long.extend(std::iter::repeat(0xe9).take(255));
        assert!(PfsPath::parse(&long).is_ok());
        long.push(0xe9);
        assert!(matches!(
            PfsPath::parse(&long),
            Err(CoreError::NameTooLong { .. })
        ));
        // The PBD name is a device's and must be UTF-8.
        assert!(matches!(
            PfsPath::parse(b"/nv\xffme/x"),
            Err(CoreError::BadPath { .. })
        ));
    }
}
