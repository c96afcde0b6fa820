//! Commands that change a PFS: `touch`, `mkdir`, `write`, `truncate`,
//! `fallocate`, `rm`, `rmdir`, `rename`. Each mounts read-write (taking the
//! host lock and the writer lease), runs, and unmounts; every change is
//! committed to the journal before the command reports success.

use super::{failed, parse_path, strerror, Context};
use crate::cli::{FallocateArgs, MkdirArgs, PathArg, RenameArgs, RmArgs, TruncateArgs, WriteArgs};
use crate::cmd::files::parse_c_u64;
use crate::exit::{CmdResult, Failure};
use pfs_core::chain::TreeGuard;
use pfs_core::mount::{Mode, Mount};
use pfs_core::path::PfsPath;
use pfs_core::CoreError;
use pfs_format::layout::BLOCK_SIZE;
use std::io::{Read, Write};

/// Mounts the PBD of `path` read-write.
fn mount_rw(ctx: &Context, cmd: &str, path: &PfsPath) -> Result<Mount, Failure> {
    ctx.mount(cmd, &path.pbd, Mode::ReadWrite)
}

/// `pfs touch`.
pub fn touch(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("touch", &a.path, out)?;
    let m = mount_rw(ctx, "touch", &p)?;
    m.create(&p.components, false, &a.path)
        .map_err(|e| failed("touch", out, &e))?;
    Ok(())
}

/// `pfs mkdir [-p]`.
pub fn mkdir(ctx: &Context, a: &MkdirArgs, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("mkdir", &a.path, out)?;
    let m = mount_rw(ctx, "mkdir", &p)?;
    m.mkdir(&p.components, a.parents, &a.path)
        .map_err(|e| failed("mkdir", out, &e))?;
    Ok(())
}

/// Reads up to `buf.len()` bytes, stopping early only at end of input.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `pfs write [-o off] [-l len]`: stdin to a file, in 4 MiB pieces.
pub fn write(ctx: &Context, a: &WriteArgs, input: &mut dyn Read, out: &mut dyn Write) -> CmdResult {
    let off = match &a.offset {
        Some(s) => parse_c_u64(s).ok_or_else(|| {
            Failure::new(crate::exit::FAILURE, format!("write: bad offset {s:?}"))
        })?,
        None => 0,
    };
    let len = match &a.length {
        Some(s) => parse_c_u64(s).ok_or_else(|| {
            Failure::new(crate::exit::FAILURE, format!("write: bad length {s:?}"))
        })?,
        None => u64::MAX,
    };
    let to_eof = (len as i64) < 0;
    let p = parse_path("write", &a.path, out)?;
    let m = mount_rw(ctx, "write", &p)?;
    let report_fail = |out: &mut dyn Write, e: &CoreError| {
        let _ = writeln!(
            out,
            "\x1b[40;31m[  FAIL  ]\x1b[0m Write {off} offset, {} bytes to file {}, errinfo={}",
            len as i64,
            a.path,
            strerror(e.errno())
        );
        Failure::from_core("write", e)
    };
    let ino = m
        .create(&p.components, false, &a.path)
        .map_err(|e| failed("write", out, &e))?;
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut pos = off;
    let mut left = len;
    loop {
        let want = if to_eof {
            BLOCK_SIZE
        } else {
            left.min(BLOCK_SIZE)
        } as usize;
        if want == 0 {
            break;
        }
        let n = read_full(input, &mut buf[..want]).map_err(|e| {
            Failure::new(crate::exit::FAILURE, format!("write: reading stdin: {e}"))
        })?;
        if n == 0 {
            break;
        }
        m.pwrite(ino, pos, &buf[..n])
            .map_err(|e| report_fail(out, &e))?;
        pos += n as u64;
        if !to_eof {
            left -= n as u64;
        }
    }
    writeln!(
        out,
        "\x1b[40;32m[   OK   ]\x1b[0m Write {off} offset, {} bytes to file {}",
        pos - off,
        a.path
    )?;
    Ok(())
}

/// `pfs truncate -l len`.
pub fn truncate(ctx: &Context, a: &TruncateArgs, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("truncate", &a.path, out)?;
    let m = mount_rw(ctx, "truncate", &p)?;
    let ino = m
        .resolve(&p.components, p.trailing_slash, &a.path)
        .map_err(|e| failed("truncate", out, &e))?;
    if m.stat(ino).map_err(|e| failed("truncate", out, &e))?.is_dir {
        return Err(failed(
            "truncate",
            out,
            &CoreError::IsDir {
                path: a.path.clone(),
            },
        ));
    }
    m.truncate_ino(ino, a.length)
        .map_err(|e| failed("truncate", out, &e))
}

/// `pfs fallocate [-o off] -l len`.
pub fn fallocate(ctx: &Context, a: &FallocateArgs, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("fallocate", &a.path, out)?;
    let m = mount_rw(ctx, "fallocate", &p)?;
    let ino = m
        .resolve(&p.components, p.trailing_slash, &a.path)
        .map_err(|e| failed("fallocate", out, &e))?;
    m.fallocate_ino(ino, a.offset, a.length, false)
        .map_err(|e| failed("fallocate", out, &e))
}

/// `pfs rmdir`.
pub fn rmdir(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let p = parse_path("rmdir", &a.path, out)?;
    let m = mount_rw(ctx, "rmdir", &p)?;
    m.rmdir(&p.components, &a.path)
        .map_err(|e| failed("rmdir", out, &e))
}

/// `pfs rm [-r] path...`.
pub fn rm(ctx: &Context, a: &RmArgs, out: &mut dyn Write) -> CmdResult {
    let mut result = Ok(());
    for arg in &a.paths {
        let p = parse_path("rm", arg, out)?;
        let m = mount_rw(ctx, "rm", &p)?;
        let mut guard = TreeGuard::new(m.device().name());
        if let Err(f) = rm_one(&m, &p.components, arg, a.recursive, &mut guard, out) {
            result = Err(f);
        }
    }
    result
}

/// Removes `comps`; with `recursive`, a directory's entries first. The
/// guard keeps the recursion finite on a damaged tree, and refuses names
/// that would lead a path out of it (`..`).
fn rm_one(
    m: &Mount,
    comps: &[String],
    shown: &str,
    recursive: bool,
    guard: &mut TreeGuard,
    out: &mut dyn Write,
) -> CmdResult {
    let ino = m
        .resolve(comps, false, shown)
        .map_err(|e| failed("rm", out, &e))?;
    let is_dir = match m.stat(ino) {
        Ok(st) => st.is_dir,
        // A damaged file (impossible size or type) can still be removed:
        // unlink checks the stored type itself and refuses a directory.
        Err(CoreError::Corrupt { .. }) => false,
        Err(e) => return Err(failed("rm", out, &e)),
    };
    if !is_dir {
        if ino == pfs_format::layout::PAXOS_FILE_INO || ino == pfs_format::layout::JOURNAL_FILE_INO
        {
            return Err(Failure::new(
                crate::exit::FAILURE,
                "rm: cannot remove paxos/journal file",
            ));
        }
        return m.unlink(comps, shown).map_err(|e| failed("rm", out, &e));
    }
    if !recursive {
        let _ = writeln!(out, "rm failed: {}", strerror(21));
        return Err(Failure::new(
            crate::exit::FAILURE,
            format!("rm: {shown} is a directory (use -r)"),
        ));
    }
    if comps.iter().all(|c| c == ".") {
        return Err(Failure::new(
            crate::exit::FAILURE,
            format!("rm: {shown} is the root directory"),
        ));
    }
    guard
        .enter(ino, comps.len() as u64)
        .map_err(|e| failed("rm", out, &e))?;
    let entries = m.read_dir(ino).map_err(|e| failed("rm", out, &e))?;
    // Every name is checked before anything is removed.
    for e in &entries {
        guard.check_name(e).map_err(|err| failed("rm", out, &err))?;
    }
    for e in entries {
        let name = String::from_utf8_lossy(&e.name).into_owned();
        let mut child = comps.to_vec();
        child.push(name.clone());
        rm_one(m, &child, &format!("{shown}/{name}"), true, guard, out)?;
    }
    m.rmdir(comps, shown).map_err(|e| failed("rm", out, &e))
}

/// `pfs rename old new`.
pub fn rename(ctx: &Context, a: &RenameArgs, out: &mut dyn Write) -> CmdResult {
    let from = parse_path("rename", &a.from, out)?;
    let to = parse_path("rename", &a.to, out)?;
    if from.pbd != to.pbd {
        return Err(Failure::new(
            crate::exit::FAILURE,
            format!("rename: {} and {} are on different devices", a.from, a.to),
        ));
    }
    let m = mount_rw(ctx, "rename", &from)?;
    m.rename(&from.components, &to.components, &a.from, &a.to)
        .map_err(|e| failed("rename", out, &e))
}
