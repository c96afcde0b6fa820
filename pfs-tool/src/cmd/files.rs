//! The read side of the namespace: `ls`, `tree`, `stat`, `read`, `map`,
//! `du`. Output is byte-identical to the reference's; on failure the
//! reference's `<cmd> failed: <reason>` line goes to stdout (scripts look
//! for it) and a detailed message to stderr.

use super::{failed, lossy, parse_path, shown, strerror, Context};
use crate::cli::{DuArgs, MapArgs, PathArg, ReadArgs, TreeArgs};
use crate::exit::{CmdResult, Failure};
use pfs_core::inspect::ctime;
use pfs_core::CoreError;
use pfs_core::PfsPath;
use pfs_core::{Attr, TreeGuard};
use pfs_core::{Mode, Mount};
use pfs_format::layout::{BLKTAGS_PER_CHUNK, BLOCK_SIZE, CHUNK_SIZE};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// 512-byte units per 4 MiB block.
const SECTORS_PER_BLOCK: u64 = BLOCK_SIZE / 512;

/// Mounts the PBD of `path` read-only.
/// The mount answers every later call from the state it loaded, so the
/// command sees one committed state even while a writer works.
fn mount_ro(ctx: &Context, cmd: &str, path: &PfsPath) -> Result<Arc<Mount>, Failure> {
    let m = ctx.mount(cmd, &path.pbd, Mode::ReadOnly)?;
    m.freeze();
    Ok(m)
}

/// The number `strtoull(name, NULL, 0)` reads from the start of a PBD name
/// (the reference prints it as the device number).
fn pbd_number(name: &str) -> u64 {
    let (digits, radix) =
        if let Some(h) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
            (h, 16)
        } else if name.starts_with('0') {
            (name, 8)
        } else {
            (name, 10)
        };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    u64::from_str_radix(&digits[..end], radix).unwrap_or(0)
}

fn open_target(
    ctx: &Context,
    cmd: &str,
    arg: &OsStr,
    must_be_dir: bool,
    out: &mut dyn Write,
) -> Result<(Arc<Mount>, PfsPath, u64), Failure> {
    let path = parse_path(cmd, arg, out)?;
    let m = mount_ro(ctx, cmd, &path)?;
    let ino = m
        .resolve(path.inner())
        .map_err(|e| failed(cmd, out, &shown(e, arg)))?;
    if must_be_dir && !m.getattr(ino).map_err(|e| failed(cmd, out, &e))?.is_dir() {
        let e = CoreError::NotDir { path: lossy(arg) };
        return Err(failed(cmd, out, &e));
    }
    Ok((m, path, ino))
}

/// `pfs ls`.
pub fn ls(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let (m, _, ino) = open_target(ctx, "ls", &a.path, true, out)?;
    let entries = m.readdir(ino).map_err(|e| failed("ls", out, &e))?;
    let mut total = 0u64;
    for e in entries {
        let st = m.getattr(e.ino).map_err(|err| failed("ls", out, &err))?;
        let tag = if st.is_dir() { "   Dir  " } else { "  File  " };
        // The name as stored, byte for byte (the reference prints it
        // with %s).
        write!(
            out,
            "{tag}{:<4}  {:<16}  {}  ",
            st.nlink,
            st.size,
            ctime(st.mtime)
        )?;
        out.write_all(&e.name)?;
        writeln!(out)?;
        total += st.nblock * SECTORS_PER_BLOCK;
    }
    writeln!(out, "total {total} (unit: 512Bytes)")?;
    Ok(())
}

/// `pfs tree`.
pub fn tree(ctx: &Context, a: &TreeArgs, out: &mut dyn Write) -> CmdResult {
    let (m, _, ino) = open_target(ctx, "tree", &a.path, true, out)?;
    if a.verbose {
        writeln!(out, "name\t\t\ttype\tinode\t\tsize\t\t\tctime\t\t\t\tmtime")?;
    }
    let mut guard = TreeGuard::new(m.device().name());
    guard.enter(ino, 0).map_err(|e| failed("tree", out, &e))?;
    let mut w = TreeWalk {
        guard,
        verbose: a.verbose,
        ndir: 0,
        nfile: 0,
    };
    walk_tree(&m, ino, 0, &mut w, out)?;
    writeln!(out)?;
    writeln!(out, "{} directories, {} files", w.ndir, w.nfile)?;
    Ok(())
}

/// State of a `tree` walk.
struct TreeWalk {
    guard: TreeGuard,
    verbose: bool,
    ndir: u64,
    nfile: u64,
}

/// Prints directory `dir`'s subtree; the guard keeps the recursion as deep
/// as the tree really is (a loop is an error, not a stack overflow).
fn walk_tree(
    m: &Mount,
    dir: u64,
    level: usize,
    w: &mut TreeWalk,
    out: &mut dyn Write,
) -> CmdResult {
    let entries = m.readdir(dir).map_err(|e| failed("tree", out, &e))?;
    for e in entries {
        let st = m.getattr(e.ino).map_err(|err| failed("tree", out, &err))?;
        let indent = " ".repeat(level);
        // Names are written as stored, byte for byte, and padded by bytes
        // as the reference's %-20s does.
        write!(out, "{indent}|-")?;
        out.write_all(&e.name)?;
        if w.verbose {
            // The reference prints ctime in both time columns.
            let t = ctime(st.ctime);
            let ty = if st.is_dir() { "Dir" } else { "File" };
            let pad = " ".repeat(20usize.saturating_sub(e.name.len()));
            writeln!(out, "{pad}\t{ty}\t{:<10}\t{:<20}\t{t}\t{t}", e.ino, st.size)?;
        } else {
            writeln!(out)?;
        }
        if st.is_dir() {
            w.ndir += 1;
            w.guard
                .enter(e.ino, level as u64 + 1)
                .map_err(|err| failed("tree", out, &err))?;
            walk_tree(m, e.ino, level + 1, w, out)?;
        } else {
            w.nfile += 1;
        }
    }
    Ok(())
}

/// `pfs stat`.
pub fn stat(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let (m, path, ino) = open_target(ctx, "stat", &a.path, false, out)?;
    let st: Attr = m.getattr(ino).map_err(|e| failed("stat", out, &e))?;
    let tag = if st.is_dir() { "   dir: " } else { "  file: " };
    write!(out, "{tag}")?;
    out.write_all(a.path.as_bytes())?;
    writeln!(out)?;
    writeln!(
        out,
        "  size: {:<15}\tblocks: {}",
        st.size,
        st.nblock * SECTORS_PER_BLOCK
    )?;
    writeln!(
        out,
        "device: pbd-{}\t\tinode: {} links: {}",
        pbd_number(&path.pbd),
        st.ino,
        st.nlink
    )?;
    writeln!(out, "access: {}, {}", st.atime, ctime(st.atime))?;
    writeln!(out, "modify: {}, {}", st.mtime, ctime(st.mtime))?;
    writeln!(out, "change: {}, {}", st.ctime, ctime(st.ctime))?;
    Ok(())
}

/// Parses a number as `strtoull(s, NULL, 0)`: hex with `0x`, octal with a
/// leading `0`, decimal otherwise; a leading `-` wraps.
pub fn parse_c_u64(s: &str) -> Option<u64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        u64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Parses a numeric option as `strtoull` would; a negative value (or, with
/// `positive`, zero) fails with EINVAL (`<cmd> failed: Invalid argument`),
/// text that is not a number is a usage error.
pub fn parse_arg(
    cmd: &str,
    what: &str,
    s: &str,
    positive: bool,
    out: &mut dyn Write,
) -> Result<u64, Failure> {
    let v = parse_c_u64(s)
        .ok_or_else(|| Failure::new(crate::exit::FAILURE, format!("{cmd}: bad {what} {s:?}")))?;
    if s.trim_start().starts_with('-') && v != 0 {
        let e = CoreError::InvalidArgument(format!("{cmd}: {what} {s} is negative"));
        return Err(failed(cmd, out, &e));
    }
    if positive && v == 0 {
        let e = CoreError::InvalidArgument(format!("{cmd}: {what} must be positive"));
        return Err(failed(cmd, out, &e));
    }
    Ok(v)
}

/// The `-o off` and `-l len` options of `read` and `write`: the offset (0
/// by default) and the length (`u64::MAX`, to the end, by default).
pub fn parse_range(
    cmd: &str,
    offset: Option<&str>,
    length: Option<&str>,
    out: &mut dyn Write,
) -> Result<(u64, u64), Failure> {
    let off = match offset {
        Some(s) => parse_arg(cmd, "offset", s, false, out)?,
        None => 0,
    };
    let len = match length {
        Some(s) => parse_arg(cmd, "length", s, true, out)?,
        None => u64::MAX,
    };
    Ok((off, len))
}

/// `pfs read`.
pub fn read(ctx: &Context, a: &ReadArgs, out: &mut dyn Write) -> CmdResult {
    let (off, len) = parse_range("read", a.offset.as_deref(), a.length.as_deref(), out)?;
    let path = parse_path("read", &a.path, out)?;
    let m = mount_ro(ctx, "read", &path)?;
    // The inode and its size and birth from one state: the name may be
    // given to another file at any time.
    let attr = m
        .stat_path(path.inner())
        .map_err(|e| failed("read", out, &shown(e, &a.path)))?;
    let mut ino = attr.ino;
    // The size in the state the command reads: no read past it is needed
    // to find the end (the file may be replaced after its last byte).
    let (mut size, mut born) = (attr.size, attr.btime);
    if attr.is_dir() {
        return Err(failed(
            "read",
            out,
            &CoreError::IsDir {
                path: lossy(&a.path),
            },
        ));
    }
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut pos = off;
    let mut left = len;
    let mut retries = 0;
    loop {
        let want = left.min(BLOCK_SIZE) as usize;
        if want == 0 || pos >= size {
            break;
        }
        let n = match m.read_born_at(ino, born, &mut buf[..want], pos) {
            // Replaced by the writer before anything was printed: read the
            // file that has the name now.
            Err(CoreError::NotFound { .. }) if pos == off && retries < 16 => {
                retries += 1;
                let attr = m
                    .stat_path(path.inner())
                    .map_err(|e| failed("read", out, &shown(e, &a.path)))?;
                (ino, size, born) = (attr.ino, attr.size, attr.btime);
                continue;
            }
            r => r.map_err(|e| failed("read", out, &e))?,
        };
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        pos += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// `pfs map`.
pub fn map(ctx: &Context, a: &MapArgs, out: &mut dyn Write) -> CmdResult {
    let (m, _, ino) = open_target(ctx, "map", &a.path, false, out)?;
    let st = m.getattr(ino).map_err(|e| failed("map", out, &e))?;
    if st.is_dir() {
        let e = CoreError::IsDir {
            path: lossy(&a.path),
        };
        let _ = writeln!(out, "map failed: {}", strerror(e.errno()));
        return Err(Failure::new(235, format!("map: {e}")));
    }
    // One offset, or the start of every block (lazily: a sparse file may
    // span far more blocks than it has).
    let (first, count) = match a.offset {
        Some(o) if o >= 0 => {
            if o as u64 >= st.size {
                let _ = writeln!(out, "map failed: {}", strerror(22));
                return Err(Failure::new(
                    234,
                    format!("map: offset {o} is not below the file size {}", st.size),
                ));
            }
            (o as u64, 1)
        }
        _ => (0, st.size.div_ceil(BLOCK_SIZE)),
    };
    let offsets = (0..count).map(|i| first + i * BLOCK_SIZE);
    if count == 0 {
        let e = CoreError::InvalidArgument(format!(
            "map: {} is empty: it has no blocks",
            lossy(&a.path)
        ));
        return Err(failed("map", out, &e));
    }
    let blocks = m.blocks(ino).map_err(|e| failed("map", out, &e))?;
    writeln!(
        out,
        "filesize(B): {:<8}\tblksize(B): {:<8}",
        st.size, BLOCK_SIZE
    )?;
    writeln!(out, "------------------")?;
    writeln!(
        out,
        "blkidx\t\toffset\t\tbtno\t\tbtholeoff\t\tblkno\t\tchunk\t\tbda\t\tcka"
    )?;
    for off in offsets {
        let blkidx = off / BLOCK_SIZE;
        let (blkno, holeoff) = match blocks.get(&blkidx) {
            Some(b) => (b.blkno, b.holeoff),
            None => (0, 0),
        };
        let per = u64::from(BLKTAGS_PER_CHUNK);
        let btno = ((blkno / per) << pfs_format::MetaType::BlkTag.shift()) | (blkno % per);
        let chunk = blkno / per;
        let bda = blkno * BLOCK_SIZE + off % BLOCK_SIZE;
        let cka = bda - chunk * CHUNK_SIZE;
        writeln!(
            out,
            "{blkidx:<8}\t{off:<8}\t{btno:<8}\t{holeoff:<8}\t\t{blkno:<8}\t{chunk:<8}\t{bda:<8}\t{cka:<8}"
        )?;
    }
    Ok(())
}

/// `pfs du`.
pub fn du(ctx: &Context, a: &DuArgs, out: &mut dyn Write) -> CmdResult {
    let depth = match a.depth {
        Some(d) if d < 0 => {
            return Err(Failure::new(
                crate::exit::FAILURE,
                format!("du: invalid depth {d}"),
            ))
        }
        Some(d) => d as u64,
        None => u64::MAX,
    };
    let (m, _, ino) = open_target(ctx, "du", &a.path, false, out)?;
    let mut guard = TreeGuard::new(m.device().name());
    du_walk(&m, ino, a.path.as_bytes(), 0, depth, a.all, &mut guard, out)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn du_walk(
    m: &Mount,
    ino: u64,
    path: &[u8],
    level: u64,
    depth: u64,
    all: bool,
    guard: &mut TreeGuard,
    out: &mut dyn Write,
) -> Result<u64, Failure> {
    let st = m.getattr(ino).map_err(|e| failed("du", out, &e))?;
    let usage = if st.is_dir() {
        guard.enter(ino, level).map_err(|e| failed("du", out, &e))?;
        let mut sum = 0u64;
        for e in m.readdir(ino).map_err(|err| failed("du", out, &err))? {
            let child = [path, b"/", &e.name].concat();
            sum += du_walk(m, e.ino, &child, level + 1, depth, all, guard, out)?;
        }
        sum
    } else {
        m.disk_usage(ino).map_err(|e| failed("du", out, &e))?
    };
    if level <= depth && (level == 0 || st.is_dir() || all) {
        // The path as given and the names as stored, byte for byte.
        write!(out, "{}\t", usage >> 10)?;
        out.write_all(path)?;
        writeln!(out)?;
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_number_parsing() {
        assert_eq!(parse_c_u64("0x10"), Some(16));
        assert_eq!(parse_c_u64("010"), Some(8));
        assert_eq!(parse_c_u64("0"), Some(0));
        assert_eq!(parse_c_u64("-1"), Some(u64::MAX));
        assert_eq!(parse_c_u64("abc"), None);
        assert_eq!(pbd_number("nvme1n1"), 0);
        assert_eq!(pbd_number("12abc"), 12);
        assert_eq!(pbd_number("0x1a"), 26);
    }
}
