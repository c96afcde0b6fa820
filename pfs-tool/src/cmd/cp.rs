//! `pfs cp` and `pfs archive`: copies between local paths and PFS paths,
//! on one device or across two.
//!
//! An argument `/<name>/...` is a PFS path when `/dev/<name>` is a block
//! device (or `<name>` is in the device directory), whatever the name looks
//! like (`rbd0`, `dm-3`, `xvdb`, `nbd0`, `md0`, `sdb1`, ...). When a local
//! directory `/<name>` exists too, the device wins only if it holds a PFS.
//! When neither exists, names the reference takes for devices (`nvme…`,
//! `loop…`, `sd…`, `sf…`, `vd…`, `mapper_…`, `pangu-…`, a leading digit)
//! are PFS paths (the mount then says which device is missing); any other
//! is an error naming both places looked at. `/rbd:<pool>:<image>/...`
//! (an RBD image) is always a PFS path. Relative paths are local.

use super::{lossy, Context};
use crate::cli::{ArchiveArgs, ArchiveCmd, CpArgs};
use crate::cmd::copy::{copy_file, same_content, CopyError, Kind, Place};
use crate::cmd::strerror;
use crate::exit::{CmdResult, Failure};
use crate::progress::{Progress, Unit};
use pfs_core::{Mode, Mount, PfsPath, TreeGuard, MAX_DEPTH};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether `arg` names a file inside a PFS (see the module doc); an
/// absolute path that is neither a device's nor a local one is an error
/// naming both places looked at. The first component names a device
/// only if it is UTF-8 (the rest may be any bytes).
pub fn classify(arg: &OsStr, device_dir: Option<&Path>) -> Result<bool, String> {
    let Some(rest) = arg.as_bytes().strip_prefix(b"/") else {
        return Ok(false);
    };
    let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
    let rest = &rest[start..];
    let Some(slash) = rest.iter().position(|&b| b == b'/') else {
        return Ok(false);
    };
    let Ok(first) = std::str::from_utf8(&rest[..slash]) else {
        return Ok(false);
    };
    if first.is_empty() || first == "." || first == ".." {
        return Ok(false);
    }
    // An RBD image is not in this machine's file system: its name says.
    if pfs_core::pbd::is_rbd(first) {
        return Ok(true);
    }
    let dev = pfs_core::pbd::device_path(first, device_dir).ok();
    let dev_exists = dev.as_deref().is_some_and(|p| match device_dir {
        Some(_) => p.exists(),
        None => std::fs::metadata(p)
            .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
            .unwrap_or(false),
    });
    let local = Path::new("/").join(first);
    let local_exists = std::fs::symlink_metadata(&local).is_ok();
    match (dev_exists, local_exists) {
        (true, false) => Ok(true),
        (true, true) => Ok(holds_pfs(first, device_dir)),
        (false, true) => Ok(false),
        (false, false) => {
            let looks = first.starts_with(|c: char| c.is_ascii_digit())
                || ["nvme", "loop", "sd", "sf", "vd", "mapper_", "pangu-"]
                    .iter()
                    .any(|p| first.starts_with(p));
            if looks {
                return Ok(true);
            }
            let dev_shown = dev
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| format!("/dev/{first}"));
            Err(format!(
                "{}: no device {dev_shown} (for a PFS path) and no local {} (for a local path)",
                lossy(arg),
                local.display()
            ))
        }
    }
}

/// Whether the device of PBD `name` holds a PFS (chunk 0's header).
fn holds_pfs(name: &str, device_dir: Option<&Path>) -> bool {
    pfs_core::pbd::open_pbd(name, device_dir, false)
        .and_then(|d| pfs_core::inspect::read_chunk0(&*d))
        .is_ok()
}

/// The mounts a copy needs: the destination's read-write, the source's
/// read-only (or the same mount when both are on one device).
struct Mounts {
    src: Option<(PfsPath, Option<Arc<Mount>>)>,
    dst: Option<(PfsPath, Arc<Mount>)>,
}

impl Mounts {
    fn new(
        ctx: &Context,
        cmd: &str,
        src: &OsStr,
        dst: &OsStr,
        src_host: u64,
        dst_host: u64,
    ) -> Result<Mounts, Failure> {
        let dir = ctx.device_dir.as_deref();
        let parse =
            |a: &OsStr| PfsPath::parse_os(a).map_err(|e| Failure::new(22, format!("{cmd}: {e}")));
        let class = |a: &OsStr| {
            classify(a, dir).map_err(|m| Failure::new(crate::exit::FAILURE, format!("{cmd}: {m}")))
        };
        let dst = if class(dst)? {
            let p = parse(dst)?;
            let m = ctx.mount_as(cmd, &p.pbd, Mode::ReadWrite, dst_host)?;
            Some((p, m))
        } else {
            None
        };
        let src = if class(src)? {
            let p = parse(src)?;
            let same = dst.as_ref().is_some_and(|(d, _)| d.pbd == p.pbd);
            let m = if same {
                None
            } else {
                Some(ctx.mount_as(cmd, &p.pbd, Mode::ReadOnly, src_host)?)
            };
            Some((p, m))
        } else {
            None
        };
        Ok(Mounts { src, dst })
    }

    fn src_place(&self, arg: &OsStr) -> Place<'_> {
        match &self.src {
            Some((p, Some(m))) => Place::pfs(m, p),
            Some((p, None)) => match &self.dst {
                Some((_, m)) => Place::pfs(m, p),
                None => Place::Local(PathBuf::from(arg)),
            },
            None => Place::Local(PathBuf::from(arg)),
        }
    }

    fn dst_place(&self, arg: &OsStr) -> Place<'_> {
        match &self.dst {
            Some((p, m)) => Place::pfs(m, p),
            None => Place::Local(PathBuf::from(arg)),
        }
    }
}

fn check_cluster(name: &Option<String>) -> Result<(), Failure> {
    match name.as_deref() {
        None | Some("disk") | Some("") => Ok(()),
        Some(other) => Err(Failure::new(
            crate::exit::USAGE,
            format!("cp: cluster {other:?} is not supported; only \"disk\" exists"),
        )),
    }
}

fn same_place(a: &Place<'_>, b: &Place<'_>) -> bool {
    match (a, b) {
        (Place::Local(x), Place::Local(y)) => match (x.canonicalize(), y.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => x == y,
        },
        (
            Place::Pfs {
                mount: m1,
                comps: c1,
                ..
            },
            Place::Pfs {
                mount: m2,
                comps: c2,
                ..
            },
        ) => Arc::ptr_eq(m1, m2) && c1 == c2,
        _ => false,
    }
}

struct CopyOpts {
    recursive: bool,
    force: bool,
    /// Bytes and files copied, on stderr.
    progress: Progress,
    /// The source ends in `/.` (`dir/.`): its contents go into an existing
    /// destination directory, not a new directory inside it (as cp does).
    contents: bool,
}

/// Whether a path's last component is `.` (`dir/.`, `dir/./`, `.`).
fn ends_in_dot(arg: &OsStr) -> bool {
    let b = arg.as_bytes();
    let end = b.iter().rposition(|&c| c != b'/').map_or(0, |i| i + 1);
    let b = &b[..end];
    b == b"." || b.ends_with(b"/.")
}

/// Keeps a recursive copy finite: a PFS source directory is entered once
/// (a damaged tree may loop), and no copy goes deeper than a path can.
struct CopyWalk {
    guard: TreeGuard,
}

/// A name in a directory: bytes, which need not be UTF-8.
type Name = Vec<u8>;

/// A directory being copied: where from, where to, the names left.
struct Frame<'m> {
    src: Place<'m>,
    dst: Place<'m>,
    names: std::vec::IntoIter<Name>,
    depth: u64,
}

/// Copies `src` to `dst` (see [`copy_one`]), directories depth first in
/// their own order, with an explicit stack instead of recursion: a tree
/// as deep as a path allows needs no deep native stack.
fn do_copy<'m>(
    src: &Place<'m>,
    dst: &Place<'m>,
    o: &CopyOpts,
    walk: &mut CopyWalk,
    out: &mut dyn Write,
) -> Result<(), CopyError> {
    let mut stack: Vec<Frame<'m>> = Vec::new();
    if let Some((d, names)) = copy_one(src, dst, true, 0, o, walk, out)? {
        stack.push(Frame {
            src: src.clone(),
            dst: d,
            names: names.into_iter(),
            depth: 0,
        });
    }
    while let Some(top) = stack.last_mut() {
        super::interrupt::check()?;
        let Some(name) = top.names.next() else {
            stack.pop();
            continue;
        };
        let (s, d, depth) = (top.src.join(&name), top.dst.join(&name), top.depth + 1);
        if let Some((d, names)) = copy_one(&s, &d, false, depth, o, walk, out)? {
            stack.push(Frame {
                src: s,
                dst: d,
                names: names.into_iter(),
                depth,
            });
        }
    }
    Ok(())
}

/// An existing file `dst` that only `-f` may replace with `src` (EEXIST).
fn overwrite_refused(src: &Place<'_>, dst: &Place<'_>) -> CopyError {
    CopyError::new(
        17,
        format!(
            "cannot overwrite {} with {} (use -f)",
            dst.shown(),
            src.shown()
        ),
    )
}

/// One step of the reference's `do_copy`: a file onto a directory goes
/// inside it; a directory needs `-r` and goes inside an existing directory
/// the first time; an existing file needs `-f`. A file is copied; for a
/// directory (`depth` below the copy's start) the destination is made and
/// returned with the names to copy into it.
#[allow(clippy::too_many_arguments)]
fn copy_one<'m>(
    src: &Place<'m>,
    dst: &Place<'m>,
    first: bool,
    depth: u64,
    o: &CopyOpts,
    walk: &mut CopyWalk,
    out: &mut dyn Write,
) -> Result<Option<(Place<'m>, Vec<Name>)>, CopyError> {
    let skind = src.kind()?;
    let mut dst = dst.clone();
    match skind {
        Kind::Missing => Err(CopyError::new(
            2,
            format!("cannot stat {}: no such file or directory", src.shown()),
        )),
        Kind::File(_) => {
            match dst.kind()? {
                Kind::Dir => dst = dst.join(&src.basename()),
                Kind::File(_) if !o.force => return Err(overwrite_refused(src, &dst)),
                _ => {}
            }
            if let Kind::Dir = dst.kind()? {
                return Err(CopyError::new(
                    21,
                    format!("cannot overwrite directory {} with a file", dst.shown()),
                ));
            }
            if same_place(src, &dst) {
                return Err(CopyError::new(
                    22,
                    format!("cannot copy {} onto itself", src.shown()),
                ));
            }
            if let (Kind::File(_), false) = (dst.kind()?, o.force) {
                return Err(overwrite_refused(src, &dst));
            }
            copy_file(src, &dst, &o.progress)?;
            o.progress.count(1);
            // Paths byte for byte, as the reference prints them.
            o.progress.suspend(|| {
                let _ = out.write_all(b"copy file from ");
                let _ = out.write_all(src.shown_bytes());
                let _ = out.write_all(b" to ");
                let _ = out.write_all(dst.shown_bytes());
                let _ = out.write_all(b" succeeded\n");
            });
            Ok(None)
        }
        Kind::Dir => {
            if !o.recursive {
                return Err(CopyError::new(
                    21,
                    format!("omitting directory {} (use -r)", src.shown()),
                ));
            }
            // The first time, an existing directory receives a copy inside
            // (or, for `dir/.`, the directory's contents).
            if first && !o.contents && dst.kind()? == Kind::Dir {
                dst = dst.join(&src.basename());
            }
            match dst.kind()? {
                Kind::Dir => {}
                Kind::File(_) => {
                    return Err(CopyError::new(
                        20,
                        format!(
                            "cannot copy directory {} onto file {}",
                            src.shown(),
                            dst.shown()
                        ),
                    ))
                }
                Kind::Missing => dst.mkdir()?,
            }
            if same_place(src, &dst) {
                return Err(CopyError::new(
                    22,
                    format!("cannot copy {} into itself", src.shown()),
                ));
            }
            match src.pfs_ino()? {
                Some(ino) => walk.guard.enter(ino, depth).map_err(CopyError::from)?,
                None if depth > MAX_DEPTH => {
                    return Err(CopyError::new(
                        40,
                        format!("{} lies too deep to copy (a loop?)", src.shown()),
                    ))
                }
                None => {}
            }
            Ok(Some((dst, src.list()?)))
        }
    }
}

/// `pfs cp`.
pub fn cp(ctx: &Context, a: &CpArgs, out: &mut dyn Write) -> CmdResult {
    check_cluster(&a.src_cluster)?;
    check_cluster(&a.dst_cluster)?;
    let report = |out: &mut dyn Write, e: CopyError| {
        let _ = writeln!(out, "cp failed: {}", strerror(e.errno));
        // A directory without -r exits -EISDIR as in the reference.
        let code = if e.errno == 21 {
            235
        } else {
            crate::exit::FAILURE
        };
        Failure::new(code, format!("cp: {}", e.message))
    };
    if a.src.is_empty() || a.dst.is_empty() {
        return Err(Failure::new(crate::exit::USAGE, "cp: empty path"));
    }
    // Before any thread starts: a signal must find the copy's temporary
    // file still known, so it can be removed.
    super::interrupt::install()
        .map_err(|m| Failure::new(crate::exit::FAILURE, format!("cp: {m}")))?;
    let mounts = Mounts::new(
        ctx,
        "cp",
        &a.src,
        &a.dst,
        a.src_hostid.unwrap_or(ctx.hostid),
        a.dst_hostid.unwrap_or(ctx.hostid),
    )?;
    let (src, dst) = (mounts.src_place(&a.src), mounts.dst_place(&a.dst));
    // A single file's size is the total; a tree's is not known ahead.
    let total = match src.kind() {
        Ok(Kind::File(n)) => Some(n),
        _ => None,
    };
    let o = CopyOpts {
        recursive: a.recursive,
        force: a.force || a.recursive,
        progress: Progress::start("cp", Unit::Bytes, total, Some("files")),
        contents: ends_in_dot(&a.src),
    };
    let device = match &src {
        Place::Pfs { mount, .. } => mount.device().name().to_owned(),
        Place::Local(_) => String::new(),
    };
    let mut walk = CopyWalk {
        guard: TreeGuard::new(&device),
    };
    do_copy(&src, &dst, &o, &mut walk, out).map_err(|e| {
        super::interrupt::finish("cp");
        report(out, e)
    })
}

/// Exit code of every failure of `archive push`: PostgreSQL treats an
/// archive_command exit status above 125 as fatal (the archiver process
/// aborts) and any other failure as "retry this segment later".
const PUSH_FAILED: u8 = 1;

/// `pfs archive push|fetch`.
pub fn archive(ctx: &Context, a: &ArchiveArgs, out: &mut dyn Write) -> CmdResult {
    // As for cp: a signal removes the temporary file before the end.
    super::interrupt::install()
        .map_err(|m| Failure::new(crate::exit::FAILURE, format!("archive: {m}")))?;
    let r = archive_steps(ctx, a, out);
    if r.is_err() {
        super::interrupt::finish("archive");
    }
    r
}

fn archive_steps(ctx: &Context, a: &ArchiveArgs, out: &mut dyn Write) -> CmdResult {
    match &a.cmd {
        ArchiveCmd::Push { .. } => archive_inner(ctx, a, out).map_err(|f| match f.code {
            0 => f,
            _ => Failure::new(PUSH_FAILED, f.message),
        }),
        ArchiveCmd::Fetch { .. } => archive_inner(ctx, a, out),
    }
}

fn archive_inner(ctx: &Context, a: &ArchiveArgs, out: &mut dyn Write) -> CmdResult {
    // For fetch, exit 1 means only "not archived" to PostgreSQL, which ends
    // recovery on it: every other failure exits 255 (push maps all its
    // failures to 1, see `archive`).
    let fail = |msg: String| Failure::new(crate::exit::FAILURE, format!("archive: {msg}"));
    let (push, src, dst) = match &a.cmd {
        ArchiveCmd::Push { src, dst } => (true, src.as_os_str(), dst.as_os_str()),
        ArchiveCmd::Fetch { src, dst } => (false, src.as_os_str(), dst.as_os_str()),
    };
    let mounts = Mounts::new(ctx, "archive", src, dst, ctx.hostid, ctx.hostid)?;
    let (s, d) = (mounts.src_place(src), mounts.dst_place(dst));
    match s.kind().map_err(|e| fail(e.message))? {
        Kind::File(_) => {}
        // restore_command contract: a missing file is a quiet failure.
        Kind::Missing if !push => return Err(Failure::new(crate::exit::USAGE, String::new())),
        Kind::Missing => return Err(fail(format!("{}: no such file", lossy(src)))),
        Kind::Dir => return Err(fail(format!("{} is a directory", lossy(src)))),
    }
    if push {
        match d.kind().map_err(|e| fail(e.message))? {
            Kind::Missing => {}
            Kind::Dir => {
                return Err(fail(format!(
                    "{} is a directory; give the archived file's full path",
                    lossy(dst)
                )))
            }
            Kind::File(_) => {
                // PostgreSQL retries a segment after a crash: an identical
                // copy is success, anything else is an alarm.
                return if same_content(&s, &d).map_err(|e| fail(e.message))? {
                    let _ = out.write_all(dst.as_bytes());
                    let _ = writeln!(out, " is already archived with identical content");
                    Ok(())
                } else {
                    Err(fail(format!(
                        "{} already exists with DIFFERENT content than {}; refusing to overwrite an archived file",
                        lossy(dst),
                        lossy(src)
                    )))
                };
            }
        }
    }
    copy_file(&s, &d, &Progress::none()).map_err(|e| fail(e.message))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        // Names the reference takes for devices, with no such device here.
        for p in [
            "/nvme1n1/x",
            "/nvme3n1/archive/0001",
            "/loop0/a",
            "/vdzz/c",
            "/mapper_vg/d",
            "/1/x",
            "/pangu-a/b",
        ] {
            assert_eq!(classify(OsStr::new(p), None), Ok(true), "{p}");
        }
        for p in ["/tmp/x", "relative", "/nvme1n1", "/", "//", "/./x"] {
            assert_eq!(classify(OsStr::new(p), None), Ok(false), "{p}");
        }
        assert_eq!(
            classify(
                OsStr::new("/nvme1n1/shared_data//pg_wal/000000010000000000000001"),
                None
            ),
            Ok(true)
        );
        // Any name in the device directory; neither place is an error.
        let dir = std::env::temp_dir().join(format!("pfs-cp-classify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::write(dir.join("rbd0"), b"").unwrap_or_default();
        assert_eq!(classify(OsStr::new("/rbd0/x"), Some(&dir)), Ok(true));
        let e = classify(OsStr::new("/no-such-place-xyz/x"), Some(&dir)).unwrap_err();
        assert!(
            e.contains("no-such-place-xyz") && e.contains("local"),
            "{e}"
        );
        // A first component that is not UTF-8 is no device name.
        assert_eq!(
            classify(OsStr::from_bytes(b"/caf\xe9/x"), Some(&dir)),
            Ok(false)
        );
        assert_eq!(
            classify(OsStr::from_bytes(b"/rbd0/caf\xe9"), Some(&dir)),
            Ok(true)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
