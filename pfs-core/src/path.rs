//! PFS paths: `/<pbd>/<path inside the filesystem>`.
//!
//! As in the reference: after the first `/`, further leading slashes are
//! skipped; the PBD name runs to the next `/`, which must exist (`/nvme1n1`
//! alone is invalid, `/nvme1n1/` is the root); empty components are ignored;
//! a trailing `/` means the target must be a directory.

use crate::error::{CoreError, Result};
use pfs_format::layout::{MAX_NAME_LEN, MAX_PATH_LEN, MAX_PBD_NAME_LEN};

/// A parsed PFS path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfsPath {
    /// The PBD name.
    pub pbd: String,
    /// Components inside the filesystem (`.` and `..` kept).
    pub components: Vec<String>,
    /// Whether the path ended in `/` (the target must be a directory).
    pub trailing_slash: bool,
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
        let components: Vec<String> = inner
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if components.iter().any(|c| c.len() > MAX_NAME_LEN) {
            return Err(CoreError::NameTooLong { path: s.to_owned() });
        }
        Ok(PfsPath {
            pbd: pbd.to_owned(),
            components,
            // The in-filesystem path starts at the '/' after the PBD name.
            trailing_slash: inner.is_empty() || inner.ends_with('/'),
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
        assert_eq!(p.components, vec!["shared_data", "pg_wal", "0001"]);
        assert!(!p.trailing_slash);
        let root = PfsPath::parse("//nvme1n1/").unwrap();
        assert!(root.components.is_empty() && root.trailing_slash);
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
