//! `--json`: one JSON document on stdout for `ls`, `stat`, `tree`, `du`,
//! `info`, `fsck` and `usedinfo`, with the facts of the text output as
//! typed values (times as integer seconds since the epoch, sizes in bytes,
//! inode numbers). The JSON is written by hand: the shapes are small and
//! fixed, and the only escaping needed is that of strings.
//!
//! Names and paths are bytes and need not be UTF-8. One that is UTF-8 is
//! a plain string (`"name":"café"`); one that is not is a string with each
//! invalid byte sequence replaced by U+FFFD, followed by the same key with
//! `_bytes` holding the exact bytes (`"name":"caf\ufffd",
//! "name_bytes":[99,97,102,233]`). A script that must handle every name
//! takes `<key>_bytes` when it is present.
//!
//! A failure prints one JSON object instead of the document (see
//! [`failure`]), never the text's `<cmd> failed:` line, and exits non-zero
//! with the code the text form has; the message goes to stderr as well.
//! `fsck` that finds problems prints its document (`"clean":false`) and
//! exits 5.

use super::{parse_path, Context};
use crate::cli::{DuArgs, PathArg, TreeArgs, UsedinfoArgs};
use crate::exit::{CmdResult, Failure};
use pfs_core::inspect::load_replayed;
use pfs_core::{Attr, Mode, Mount, TreeGuard};
use pfs_format::MetaType;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// 512-byte sectors per 4 MiB block, as `ls` and `stat` count them.
const SECTORS_PER_BLOCK: u64 = 8192;

/// A JSON string literal for `s` (lossy for names that are not UTF-8).
pub fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `"key":<string>` for a name or path of bytes, plus `"key_bytes":[...]`
/// with the exact bytes when they are not UTF-8 (see the module doc).
pub fn bytes_field(key: &str, b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => format!("\"{key}\":{}", string(s)),
        Err(_) => {
            let list: Vec<String> = b.iter().map(u8::to_string).collect();
            format!(
                "\"{key}\":{},\"{key}_bytes\":[{}]",
                string(&String::from_utf8_lossy(b)),
                list.join(",")
            )
        }
    }
}

/// A failure of `cmd`: without the text's `<cmd> failed:` line, which
/// would not be JSON.
fn fail(cmd: &str, e: &pfs_core::CoreError) -> Failure {
    Failure::from_core(cmd, e)
}

/// The one JSON object a failing `--json` command prints instead of its
/// document: `{"command", "error", "errno", "exit"}` (`error` is the
/// message stderr gets, without the command's name in front; `command` is
/// null when the command line names none).
pub fn failure(command: &str, f: &Failure) -> String {
    let prefix = format!("{command}: ");
    let error = f.message.strip_prefix(&prefix).unwrap_or(&f.message);
    // No command word at all (`pfs --json`): null.
    let command = match command {
        "" => "null".to_owned(),
        c => string(c),
    };
    format!(
        "{{\"command\":{command},\"error\":{},\"errno\":{},\"exit\":{}}}\n",
        string(error),
        f.errno,
        f.code
    )
}

fn kind(st: &Attr) -> &'static str {
    if st.is_dir() {
        "dir"
    } else {
        "file"
    }
}

/// The fields every object of the namespace carries.
fn stat_fields(st: &Attr) -> String {
    format!(
        "\"type\":\"{}\",\"ino\":{},\"size\":{},\"blocks\":{},\"nlink\":{},\"atime\":{},\"mtime\":{},\"ctime\":{},\"btime\":{}",
        kind(st),
        st.ino,
        st.size,
        st.nblock * SECTORS_PER_BLOCK,
        st.nlink,
        st.atime,
        st.mtime,
        st.ctime,
        st.btime
    )
}

fn open(
    ctx: &Context,
    cmd: &str,
    arg: &OsStr,
    must_be_dir: bool,
) -> Result<(Arc<Mount>, u64), Failure> {
    let path = parse_path(cmd, arg, &mut std::io::sink())?;
    let m = ctx.mount(cmd, &path.pbd, Mode::ReadOnly)?;
    // One committed state for the whole document.
    m.freeze();
    let ino = m
        .resolve(path.inner())
        .map_err(|e| fail(cmd, &super::shown(e, arg)))?;
    if must_be_dir && !m.getattr(ino).map_err(|e| fail(cmd, &e))?.is_dir() {
        let e = pfs_core::CoreError::NotDir {
            path: super::lossy(arg),
        };
        return Err(fail(cmd, &e));
    }
    Ok((m, ino))
}

/// `ls --json`: `{"path", "entries": [{"name", "type", "ino", "size",
/// "blocks", "nlink", "atime", "mtime", "ctime", "btime"}], "total_blocks"}`
/// (blocks in 512-byte units, as the text's total; `path_bytes` and
/// `name_bytes` for names that are not UTF-8).
pub fn ls(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let (m, ino) = open(ctx, "ls", &a.path, true)?;
    let entries = m.readdir(ino).map_err(|e| fail("ls", &e))?;
    let mut items = Vec::new();
    let mut total = 0u64;
    for e in entries {
        let st = m.getattr(e.ino).map_err(|err| fail("ls", &err))?;
        total += st.nblock * SECTORS_PER_BLOCK;
        items.push(format!(
            "{{{},{}}}",
            bytes_field("name", &e.name),
            stat_fields(&st)
        ));
    }
    writeln!(
        out,
        "{{{},\"entries\":[{}],\"total_blocks\":{total}}}",
        bytes_field("path", a.path.as_bytes()),
        items.join(",")
    )?;
    Ok(())
}

/// `stat --json`: `{"path", "pbd", "type", "ino", "size", "blocks",
/// "nlink", "atime", "mtime", "ctime", "btime"}`.
pub fn stat(ctx: &Context, a: &PathArg, out: &mut dyn Write) -> CmdResult {
    let path = parse_path("stat", &a.path, &mut std::io::sink())?;
    let (m, ino) = open(ctx, "stat", &a.path, false)?;
    let st = m.getattr(ino).map_err(|e| fail("stat", &e))?;
    writeln!(
        out,
        "{{{},\"pbd\":{},{}}}",
        bytes_field("path", a.path.as_bytes()),
        string(&path.pbd),
        stat_fields(&st)
    )?;
    Ok(())
}

/// `tree --json`: `{"path", "directories", "files", "children": [...]}`,
/// each child `{"name", <stat fields>, "children": [...]}` (directories
/// only have `children`).
pub fn tree(ctx: &Context, a: &TreeArgs, out: &mut dyn Write) -> CmdResult {
    let (m, ino) = open(ctx, "tree", &a.path, true)?;
    let (mut ndir, mut nfile) = (0u64, 0u64);
    let mut guard = TreeGuard::new(m.device().name());
    guard.enter(ino, 0).map_err(|e| fail("tree", &e))?;
    let walk = &mut TreeWalk {
        guard: &mut guard,
        ndir: &mut ndir,
        nfile: &mut nfile,
    };
    let children = tree_children(&m, ino, 0, walk)?;
    writeln!(
        out,
        "{{{},\"directories\":{ndir},\"files\":{nfile},\"children\":{children}}}",
        bytes_field("path", a.path.as_bytes())
    )?;
    Ok(())
}

/// Counters and the loop guard of a tree walk.
struct TreeWalk<'a> {
    guard: &'a mut TreeGuard,
    ndir: &'a mut u64,
    nfile: &'a mut u64,
}

fn tree_children(m: &Mount, dir: u64, level: u64, w: &mut TreeWalk<'_>) -> Result<String, Failure> {
    let mut items = Vec::new();
    for e in m.readdir(dir).map_err(|err| fail("tree", &err))? {
        w.guard
            .check_name(dir, &e.name)
            .map_err(|err| fail("tree", &err))?;
        let st = m.getattr(e.ino).map_err(|err| fail("tree", &err))?;
        let name = bytes_field("name", &e.name);
        if st.is_dir() {
            *w.ndir += 1;
            w.guard
                .enter(e.ino, level + 1)
                .map_err(|err| fail("tree", &err))?;
            let sub = tree_children(m, e.ino, level + 1, w)?;
            items.push(format!(
                "{{{name},{},\"children\":{sub}}}",
                stat_fields(&st)
            ));
        } else {
            *w.nfile += 1;
            items.push(format!("{{{name},{}}}", stat_fields(&st)));
        }
    }
    Ok(format!("[{}]", items.join(",")))
}

/// `du --json`: `{"entries": [{"path", "bytes", "kib"}]}` in the text's
/// order (children before their directory).
pub fn du(ctx: &Context, a: &DuArgs, out: &mut dyn Write) -> CmdResult {
    let depth = match a.depth {
        Some(d) if d < 0 => {
            return Err(
                Failure::new(crate::exit::FAILURE, format!("du: invalid depth {d}"))
                    .with_errno(libc::EINVAL),
            )
        }
        Some(d) => d as u64,
        None => u64::MAX,
    };
    let (m, ino) = open(ctx, "du", &a.path, false)?;
    let mut items = Vec::new();
    let mut guard = TreeGuard::new(m.device().name());
    let walk = &mut DuWalk {
        depth,
        all: a.all,
        guard: &mut guard,
        items: &mut items,
    };
    du_walk(&m, ino, a.path.as_bytes(), 0, walk)?;
    writeln!(out, "{{\"entries\":[{}]}}", items.join(","))?;
    Ok(())
}

/// What a `du` walk carries along.
struct DuWalk<'a> {
    depth: u64,
    all: bool,
    guard: &'a mut TreeGuard,
    items: &'a mut Vec<String>,
}

fn du_walk(
    m: &Mount,
    ino: u64,
    path: &[u8],
    level: u64,
    w: &mut DuWalk<'_>,
) -> Result<u64, Failure> {
    let st = m.getattr(ino).map_err(|e| fail("du", &e))?;
    let usage = if st.is_dir() {
        w.guard.enter(ino, level).map_err(|e| fail("du", &e))?;
        let mut sum = 0u64;
        for e in m.readdir(ino).map_err(|err| fail("du", &err))? {
            w.guard
                .check_name(ino, &e.name)
                .map_err(|err| fail("du", &err))?;
            let child = [path, b"/", &e.name].concat();
            sum += du_walk(m, e.ino, &child, level + 1, w)?;
        }
        sum
    } else {
        m.disk_usage(ino).map_err(|e| fail("du", &e))?
    };
    if level <= w.depth && (level == 0 || st.is_dir() || w.all) {
        w.items.push(format!(
            "{{{},\"type\":\"{}\",\"bytes\":{usage},\"kib\":{}}}",
            bytes_field("path", path),
            kind(&st),
            usage >> 10
        ));
    }
    Ok(usage)
}

/// `info --json`: `{"pbd", "nchunk", "blktag": {"total", "free", "used"},
/// "direntry": {...}, "inode": {...}}`.
pub fn info(ctx: &Context, pbd: &str, out: &mut dyn Write) -> CmdResult {
    let dev = ctx.open("info", pbd, false)?;
    let (meta, _) = load_replayed(&*dev).map_err(|e| Failure::from_core("info", &e))?;
    let mut parts = Vec::new();
    for (t, key) in MetaType::ALL.iter().zip(["blktag", "direntry", "inode"]) {
        let (free, used) = meta.counts(*t);
        parts.push(format!(
            "\"{key}\":{{\"total\":{},\"free\":{free},\"used\":{used}}}",
            free + used
        ));
    }
    writeln!(
        out,
        "{{\"pbd\":{},\"nchunk\":{},{}}}",
        string(pbd),
        meta.nchunk,
        parts.join(",")
    )?;
    Ok(())
}

/// `usedinfo --json`: `{"pbd", "type": "blktag"|"direntry"|"inode",
/// "chunks": [{"chunk", "used": [oid, ...]}]}`.
pub fn usedinfo(ctx: &Context, a: &UsedinfoArgs, out: &mut dyn Write) -> CmdResult {
    let (t, used) = super::inspect::used_objects(ctx, a)?;
    let key = match t {
        MetaType::BlkTag => "blktag",
        MetaType::DirEntry => "direntry",
        MetaType::Inode => "inode",
    };
    let mut chunks = Vec::new();
    for (c, used) in used {
        let used: Vec<String> = used.iter().map(usize::to_string).collect();
        chunks.push(format!("{{\"chunk\":{c},\"used\":[{}]}}", used.join(",")));
    }
    writeln!(
        out,
        "{{\"pbd\":{},\"type\":\"{key}\",\"chunks\":[{}]}}",
        string(&a.pbd),
        chunks.join(",")
    )?;
    Ok(())
}

/// `fsck --json`: `{"pbd", "directories", "files", "blocks",
/// "orphaned_inodes": [ino, ...], "problems": [text, ...], "clean"}`; exits
/// 5 when not clean, as the text form does.
pub fn fsck(ctx: &Context, pbd: &str, out: &mut dyn Write) -> CmdResult {
    let progress = ctx
        .open("fsck", pbd, false)
        .map(|d| super::inspect::fsck_progress(pbd, d.len()))?;
    let m = ctx.mount("fsck", pbd, Mode::ReadOnly)?;
    let r = m.fsck().map_err(|e| Failure::from_core("fsck", &e))?;
    drop(progress);
    let orphans: Vec<String> = r.orphans.iter().map(u64::to_string).collect();
    let problems: Vec<String> = r.problems.iter().map(|p| string(p)).collect();
    writeln!(
        out,
        "{{\"pbd\":{},\"directories\":{},\"files\":{},\"blocks\":{},\"orphaned_inodes\":[{}],\"problems\":[{}],\"clean\":{}}}",
        string(pbd),
        r.dirs,
        r.files,
        r.blocks,
        orphans.join(","),
        problems.join(","),
        r.is_clean()
    )?;
    if r.is_clean() {
        Ok(())
    } else {
        Err(Failure::new(
            5,
            format!("fsck: {pbd}: {} problem(s) found", r.problems.len()),
        )
        .with_errno(libc::EUCLEAN))
    }
}

#[cfg(test)]
mod tests {
    use super::{bytes_field, string};

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn names_that_are_not_utf8_carry_their_bytes() {
        assert_eq!(bytes_field("name", "é\"".as_bytes()), "\"name\":\"é\\\"\"");
        assert_eq!(
            bytes_field("name", b"caf\xe9"),
            "\"name\":\"caf\u{fffd}\",\"name_bytes\":[99,97,102,233]"
        );
    }
}
