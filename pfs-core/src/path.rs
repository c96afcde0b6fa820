//! PFS paths: `/<pbd>/<path inside the filesystem>`, the one parser every
//! front end uses (the tool, the C SDK).
//!
//! As in the reference: after the first `/`, further leading slashes are
//! skipped; the PBD name runs to the next `/`, which must exist (`/nvme1n1`
//! alone is invalid, `/nvme1n1/` is the root), unless the caller takes a
//! bare PBD name as the root ([`BarePbd::Root`], the C SDK's rule). What
//! follows is the path inside the filesystem, which the mount's one
//! resolver takes apart ([`crate::mount::Mount::resolve`]: empty
//! components ignored, `.` and `..` followed, a trailing `/` requires a
//! directory).
//!
//! The path inside the filesystem is bytes: names need not be UTF-8, as in
//! the reference. The PBD name names a device and must be UTF-8.

use crate::error::{CoreError, Result};
use pfs_format::layout::{MAX_NAME_LEN, MAX_PATH_LEN, MAX_PBD_NAME_LEN};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// What a path that is only `/<pbd>`, with no `/` after the PBD name,
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarePbd {
    /// Nothing: the path is invalid (`BadPath`, EINVAL), as in the
    /// reference's library and tools (`pfs_namei_init`).
    Invalid,
    /// The root of the filesystem, as `/<pbd>/` is. The C SDK takes paths
    /// this way: libpfsd has always answered `pfsd_stat("/<pbd>")` and the
    /// like for the root (the reference's SDK refuses it with EINVAL).
    Root,
}

/// A parsed PFS path.
///
/// # Example
///
/// The paths the tool and the C SDK take:
///
/// ```
/// use pfs_core::{BarePbd, PfsPath};
///
/// let p = PfsPath::parse("/nvme1n1/pg_wal/000000010000000000000001")?;
/// assert_eq!(p.pbd, "nvme1n1");
/// assert_eq!(p.inner(), b"/pg_wal/000000010000000000000001");
/// assert_eq!(PfsPath::parse("//nvme1n1/")?.inner(), b"/");
///
/// let wal = PfsPath::parse("/nvme1n1/pg_wal")?;
/// assert_eq!(wal.join("archive_status")?.inner(), b"/pg_wal/archive_status");
///
/// // A bare PBD name is the root only where the C SDK's rule applies.
/// assert_eq!(PfsPath::parse("/nvme1n1").unwrap_err().errno(), libc::EINVAL);
/// assert_eq!(PfsPath::parse_with("/nvme1n1", BarePbd::Root)?.inner(), b"/");
/// assert!(PfsPath::parse("relative/path").is_err());
/// # Ok::<(), pfs_core::CoreError>(())
/// ```
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
    /// Parses `/<pbd>/...` from bytes (any bytes after the PBD name); a
    /// bare `/<pbd>` is invalid.
    pub fn parse(s: impl AsRef<[u8]>) -> Result<PfsPath> {
        PfsPath::parse_with(s, BarePbd::Invalid)
    }

    /// Parses `/<pbd>/...`, with `bare` saying what `/<pbd>` alone means.
    /// A path longer than PFS allows, a PBD name or a component too long
    /// fail with `NameTooLong` (ENAMETOOLONG) before anything else is
    /// looked at; anything that is no PFS path with `BadPath` (EINVAL).
    pub fn parse_with(s: impl AsRef<[u8]>, bare: BarePbd) -> Result<PfsPath> {
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
        let (pbd, inner) = match (rest.iter().position(|&b| b == b'/'), bare) {
            (Some(slash), _) => (&rest[..slash], &rest[slash..]),
            (None, BarePbd::Root) => (rest, &b"/"[..]),
            (None, BarePbd::Invalid) => {
                return Err(bad(
                    "a PFS path is /<pbd>/<path>; the PBD name must be followed by '/'",
                ))
            }
        };
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

    /// `rel`, a relative path, taken from this one as from a working
    /// directory: `<self>/<rel>`, parsed again (so the whole must fit the
    /// limits). An empty or absolute `rel` is `BadPath`.
    pub fn join(&self, rel: impl AsRef<[u8]>) -> Result<PfsPath> {
        let rel = rel.as_ref();
        if rel.is_empty() || rel.starts_with(b"/") {
            return Err(CoreError::BadPath {
                path: String::from_utf8_lossy(rel).into_owned(),
                reason: "a relative path is not empty and does not start with /",
            });
        }
        let mut s = self.given.clone();
        s.push(b'/');
        s.extend_from_slice(rel);
        PfsPath::parse(s)
    }

    /// The path of the same PBD whose path inside the filesystem is
    /// `inner` (starting with `/`), such as what
    /// [`crate::mount::Mount::canonical_path`] made of this one's.
    pub fn with_inner(&self, inner: impl AsRef<[u8]>) -> Result<PfsPath> {
        let inner = inner.as_ref();
        if !inner.starts_with(b"/") {
            return Err(CoreError::BadPath {
                path: String::from_utf8_lossy(inner).into_owned(),
                reason: "paths inside a filesystem start with '/'",
            });
        }
        let mut s = Vec::with_capacity(1 + self.pbd.len() + inner.len());
        s.push(b'/');
        s.extend_from_slice(self.pbd.as_bytes());
        s.extend_from_slice(inner);
        PfsPath::parse(s)
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
    fn a_bare_pbd_is_the_root_only_where_asked() {
        for bare in ["/1-1", "//1-1"] {
            let e = PfsPath::parse(bare).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bare}");
            let p = PfsPath::parse_with(bare, BarePbd::Root).unwrap();
            assert_eq!((p.pbd.as_str(), p.inner()), ("1-1", &b"/"[..]));
            assert_eq!(p.as_bytes(), bare.as_bytes());
        }
        let p = PfsPath::parse_with("/1-1/a/b", BarePbd::Root).unwrap();
        assert_eq!((p.pbd.as_str(), p.inner()), ("1-1", &b"/a/b"[..]));
        // Still no PFS path: no PBD name, relative, empty.
        for bad in ["/", "//", "rel", ""] {
            let e = PfsPath::parse_with(bad, BarePbd::Root).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bad:?}");
        }
        // Lengths are checked first, whatever the rest.
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN + 9));
        let e = PfsPath::parse_with(&long, BarePbd::Root).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        let e = PfsPath::parse_with(format!("/{}", "p".repeat(64)), BarePbd::Root).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        let e = PfsPath::parse_with(format!("/1-1/{}", "n".repeat(256)), BarePbd::Root);
        assert_eq!(e.unwrap_err().errno(), libc::ENAMETOOLONG);
    }

    #[test]
    fn relative_paths_join_a_working_directory() {
        let cwd = PfsPath::parse_with("/1-1", BarePbd::Root).unwrap();
        let p = cwd.join("d/f").unwrap();
        assert_eq!((p.pbd.as_str(), p.inner()), ("1-1", &b"/d/f"[..]));
        let cwd = PfsPath::parse("/1-1/d").unwrap();
        assert_eq!(cwd.join("../e").unwrap().inner(), b"/d/../e");
        for bad in ["", "/1-1/x"] {
            assert_eq!(cwd.join(bad).unwrap_err().errno(), libc::EINVAL, "{bad}");
        }
        let deep = "x/".repeat(MAX_PATH_LEN / 2);
        assert_eq!(cwd.join(deep).unwrap_err().errno(), libc::ENAMETOOLONG);
        let root = cwd.with_inner("/").unwrap();
        assert_eq!(root.as_bytes(), b"/1-1/");
        assert_eq!(root.inner(), b"/");
        assert_eq!(cwd.with_inner("/a/b").unwrap().as_bytes(), b"/1-1/a/b");
        assert!(cwd.with_inner("a").is_err());
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
