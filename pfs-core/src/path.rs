//! PFS paths: `/<pbd>/<path inside the filesystem>`.
//!
//! As in the reference: after the first `/`, further leading slashes are
//! skipped; the PBD name runs to the next `/`, which must exist (`/nvme1n1`
//! alone is invalid, `/nvme1n1/` is the root). What follows is the path
//! inside the filesystem, which the mount's one resolver takes apart
//! ([`crate::mount::Mount::resolve`]: empty components ignored, `.` and `..`
//! followed, a trailing `/` requires a directory).

use crate::error::{CoreError, Result};
use pfs_format::layout::{MAX_NAME_LEN, MAX_PATH_LEN, MAX_PBD_NAME_LEN};

/// A parsed PFS path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfsPath {
    /// The PBD name.
    pub pbd: String,
    /// The path inside the filesystem, from the `/` after the PBD name
    /// (`/` for the root).
    pub inner: String,
    /// The path as given, for messages.
    pub shown: String,
}

impl PfsPath {
    /// Parses `/<pbd>/...`.
    pub fn parse(s: &str) -> Result<PfsPath> {
        let bad = |reason| CoreError::BadPath {
            path: s.to_owned(),
            reason,
        };
        if s.len() > MAX_PATH_LEN {
            return Err(CoreError::NameTooLong { path: s.to_owned() });
        }
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| bad("a PFS path starts with /<pbd>/"))?;
        let rest = rest.trim_start_matches('/');
        let (pbd, inner) = rest.split_once('/').ok_or_else(|| {
            bad("a PFS path is /<pbd>/<path>; the PBD name must be followed by '/'")
        })?;
        if pbd.is_empty() {
            return Err(bad("empty PBD name"));
        }
        if pbd.len() > MAX_PBD_NAME_LEN {
            return Err(CoreError::NameTooLong { path: s.to_owned() });
        }
        if inner.split('/').any(|c| c.len() > MAX_NAME_LEN) {
            return Err(CoreError::NameTooLong { path: s.to_owned() });
        }
        Ok(PfsPath {
            pbd: pbd.to_owned(),
            inner: format!("/{inner}"),
            shown: s.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_reference() {
        let p = PfsPath::parse("/nvme1n1/shared_data//pg_wal/0001").unwrap();
        assert_eq!(p.pbd, "nvme1n1");
        assert_eq!(p.inner, "/shared_data//pg_wal/0001");
        let root = PfsPath::parse("//nvme1n1/").unwrap();
        assert_eq!(root.inner, "/");
        for bad in ["/d", "/nvme1n1", "/", "//", "nvme1n1/d"] {
            assert!(PfsPath::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            PfsPath::parse(&format!("/n/{}", "x".repeat(256))),
            Err(CoreError::NameTooLong { .. })
        ));
        assert!(PfsPath::parse(&format!("/n/{}", "x".repeat(255))).is_ok());
    }
}
