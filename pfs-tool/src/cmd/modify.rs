//! Commands that change a PFS: `touch`, `mkdir`, `write`, `truncate`,
//! `fallocate`, `rm`, `rmdir`, `rename`. Each mounts read-write (taking the
//! host lock and the writer lease), runs, and unmounts; every change is
//! committed to the journal before the command reports success.

use super::{failed, lossy, parse_path, read_full, shown, strerror, Context};
use crate::cli::{FallocateArgs, MkdirArgs, PathArg, RenameArgs, RmArgs, TruncateArgs, WriteArgs};
use crate::cmd::files::{parse_arg, parse_range};
use crate::exit::{CmdResult, Failure};
use crate::progress::{Progress, Unit};
use pfs_core::{CoreError, FallocMode, OpenOptions};
use pfs_core::{Mode, Mount, PfsPath, TreeGuard};
use pfs_format::layout::BLOCK_SIZE;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// Mounts the PBD of `path` read-write.
fn mount_rw(ctx: &Context, cmd: &str, path: &PfsPath) -> Result<Arc<Mount>, Failure> {
    ctx.mount(cmd, &path.pbd, Mode::ReadWrite)
}

/// `pfs touch`: creates the file, or leaves an existing one as it is.
pub fn touch(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("touch", &a.path, out)?;
    if p.inner().ends_with(b"/") {
        // A name with a trailing '/' names a directory: touch makes files.
        let e = CoreError::IsDir {
            path: lossy(&a.path),
        };
        return Err(failed("touch", out, &e));
    }
    let m = mount_rw(ctx, "touch", &p)?;
    let o = OpenOptions {
        create: true,
        ..OpenOptions::default()
    };
    m.open_file(p.inner(), o)
        .map_err(|e| failed("touch", out, &shown(e, &a.path)))?;
    Ok(())
}

/// `pfs mkdir [-p]`.
pub fn mkdir(ctx: &Context, a: &MkdirArgs, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("mkdir", &a.path, out)?;
    let m = mount_rw(ctx, "mkdir", &p)?;
    if a.parents {
        m.create_dir_all(p.inner())
    } else {
        m.mkdir_path(p.inner())
    }
    .map_err(|e| failed("mkdir", out, &shown(e, &a.path)))?;
    Ok(())
}

/// The `[   OK   ]` / `[  FAIL  ]` tag of `write`'s report line: in the
/// reference's colours by default, whatever stdout is (scripts compare
/// those bytes), and plain when `NO_COLOR` is set to anything but the
/// empty string (https://no-color.org).
fn tag(ok: bool) -> &'static str {
    let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    match (ok, plain) {
        (true, false) => "\x1b[40;32m[   OK   ]\x1b[0m",
        (false, false) => "\x1b[40;31m[  FAIL  ]\x1b[0m",
        (true, true) => "[   OK   ]",
        (false, true) => "[  FAIL  ]",
    }
}

/// `pfs write [-o off] [-l len]`: stdin to a file, in 4 MiB pieces.
pub fn write(ctx: &Context, a: &WriteArgs, input: &mut dyn Read, out: &mut dyn Write) -> CmdResult {
    let (off, len) = parse_range("write", a.offset.as_deref(), a.length.as_deref(), out)?;
    let p = parse_path("write", &a.path, out)?;
    let m = mount_rw(ctx, "write", &p)?;
    // The path goes out byte for byte, as the reference prints it.
    let report_fail = |out: &mut dyn Write, e: &CoreError| {
        let _ = write!(
            out,
            "{} Write {off} offset, {} bytes to file ",
            tag(false),
            len as i64
        );
        let _ = out.write_all(a.path.as_bytes());
        let _ = writeln!(out, ", errinfo={}", strerror(e.errno()));
        Failure::from_core("write", e)
    };
    let o = OpenOptions {
        create: true,
        write: true,
        ..OpenOptions::default()
    };
    let f = m
        .open_file(p.inner(), o)
        .map_err(|e| failed("write", out, &shown(e, &a.path)))?;
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut pos = off;
    let mut left = len;
    loop {
        let want = left.min(BLOCK_SIZE) as usize;
        if want == 0 {
            break;
        }
        let n = read_full(input, &mut buf[..want]).map_err(|e| {
            Failure::new(crate::exit::FAILURE, format!("write: reading stdin: {e}"))
        })?;
        if n == 0 {
            break;
        }
        f.write_at(&buf[..n], pos)
            .map_err(|e| report_fail(out, &shown(e, &a.path)))?;
        pos += n as u64;
        left -= n as u64;
    }
    write!(
        out,
        "{} Write {off} offset, {} bytes to file ",
        tag(true),
        pos - off
    )?;
    out.write_all(a.path.as_bytes())?;
    writeln!(out)?;
    Ok(())
}

/// `pfs truncate -l len`.
pub fn truncate(ctx: &Context, a: &TruncateArgs, out: &mut dyn Write) -> CmdResult {
    let len = parse_arg("truncate", "length", &a.length, false, out)?;
    let p = parse_path("truncate", &a.path, out)?;
    let m = mount_rw(ctx, "truncate", &p)?;
    m.truncate_path(p.inner(), len)
        .map_err(|e| failed("truncate", out, &shown(e, &a.path)))
}

/// `pfs fallocate [-o off] -l len`.
pub fn fallocate(ctx: &Context, a: &FallocateArgs, out: &mut dyn Write) -> CmdResult {
    let off = match &a.offset {
        Some(s) => parse_arg("fallocate", "offset", s, false, out)?,
        None => 0,
    };
    let len = parse_arg("fallocate", "length", &a.length, true, out)?;
    let p = parse_path("fallocate", &a.path, out)?;
    let m = mount_rw(ctx, "fallocate", &p)?;
    let ino = m
        .resolve(p.inner())
        .map_err(|e| failed("fallocate", out, &shown(e, &a.path)))?;
    m.fallocate(ino, off, len, FallocMode::default())
        .map_err(|e| failed("fallocate", out, &shown(e, &a.path)))
}

/// `pfs rmdir`.
pub fn rmdir(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("rmdir", &a.path, out)?;
    let m = mount_rw(ctx, "rmdir", &p)?;
    m.rmdir_path(p.inner())
        .map_err(|e| failed("rmdir", out, &shown(e, &a.path)))
}

/// `pfs rm [-r] path...`.
pub fn rm(ctx: &Context, a: &RmArgs, out: &mut dyn Write) -> CmdResult {
    let mut result = Ok(());
    for arg in &a.paths {
        let p = parse_path("rm", arg, out)?;
        let m = mount_rw(ctx, "rm", &p)?;
        let mut guard = TreeGuard::new(m.device().name());
        // Files and directories removed, on stderr (a tree can take long).
        let progress = if a.recursive {
            Progress::start(
                format!("rm -r {}", lossy(arg)),
                Unit::Items("removed"),
                None,
                None,
            )
        } else {
            Progress::none()
        };
        let walk = &mut RmWalk {
            recursive: a.recursive,
            guard: &mut guard,
            progress: &progress,
        };
        if let Err(f) = rm_path(&m, p.inner(), &lossy(arg), walk, out) {
            result = Err(f);
        }
    }
    result
}

/// What a removal carries down a tree.
struct RmWalk<'a> {
    recursive: bool,
    guard: &'a mut TreeGuard,
    progress: &'a Progress,
}

/// Removes `inner`; with `recursive`, a directory's entries first. The
/// guard keeps the recursion finite on a damaged tree, and refuses names
/// that would lead a path out of it (`..`).
fn rm_path(
    m: &Mount,
    inner: &[u8],
    shown_as: &str,
    walk: &mut RmWalk<'_>,
    out: &mut dyn Write,
) -> CmdResult {
    let fail = |out: &mut dyn Write, e: CoreError| {
        failed("rm", out, &shown(e, std::ffi::OsStr::new(shown_as)))
    };
    let ino = m.resolve(inner).map_err(|e| fail(out, e))?;
    if ino == pfs_format::layout::ROOT_INO {
        return Err(Failure::new(
            crate::exit::FAILURE,
            format!("rm: {shown_as} is the root directory"),
        ));
    }
    let (dir, name) = m.resolve_parent(inner).map_err(|e| fail(out, e))?;
    rm_one(m, dir, name, shown_as, walk, 0, out)
}

fn rm_one(
    m: &Mount,
    dir: u64,
    name: &[u8],
    shown_as: &str,
    walk: &mut RmWalk<'_>,
    depth: u64,
    out: &mut dyn Write,
) -> CmdResult {
    let fail = |out: &mut dyn Write, e: CoreError| {
        failed("rm", out, &shown(e, std::ffi::OsStr::new(shown_as)))
    };
    let ino = m.lookup(dir, name).map_err(|e| fail(out, e))?;
    let is_dir = match m.getattr(ino) {
        Ok(st) => st.is_dir(),
        // A damaged file (impossible size or type) can still be removed:
        // unlink checks the stored type itself and refuses a directory.
        Err(CoreError::Corrupt { .. }) => false,
        Err(e) => return Err(fail(out, e)),
    };
    if !is_dir {
        m.unlink(dir, name).map_err(|e| fail(out, e))?;
        walk.progress.inc(1);
        return Ok(());
    }
    if !walk.recursive {
        let e = CoreError::IsDir {
            path: shown_as.to_owned(),
        };
        let _ = writeln!(out, "rm failed: {}", strerror(e.errno()));
        return Err(Failure::new(
            crate::exit::IS_DIR,
            format!("rm: {shown_as} is a directory (use -r)"),
        ));
    }
    walk.guard.enter(ino, depth).map_err(|e| fail(out, e))?;
    let entries: Vec<_> = m.readdir(ino).map_err(|e| fail(out, e))?.collect();
    // Every name is checked before anything is removed.
    for e in &entries {
        walk.guard
            .check_name(ino, &e.name)
            .map_err(|err| fail(out, err))?;
    }
    for e in entries {
        let child = format!("{shown_as}/{}", String::from_utf8_lossy(&e.name));
        rm_one(m, ino, &e.name, &child, walk, depth + 1, out)?;
    }
    m.rmdir(dir, name).map_err(|e| fail(out, e))?;
    walk.progress.inc(1);
    Ok(())
}

/// `pfs rename old new`.
pub fn rename(ctx: &Context, a: &RenameArgs, out: &mut dyn Write) -> CmdResult {
    let from = parse_path("rename", &a.from, out)?;
    let to = parse_path("rename", &a.to, out)?;
    if from.pbd != to.pbd {
        return Err(Failure::new(
            crate::exit::FAILURE,
            format!("rename: {from} and {to} are on different devices"),
        ));
    }
    let m = mount_rw(ctx, "rename", &from)?;
    m.rename_path(from.inner(), to.inner())
        .map_err(|e| failed("rename", out, &e))
}
