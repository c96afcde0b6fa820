//! Read-only inspection: `dumpfs`, `dumple`, `info`, `usedinfo`. None of
//! them writes to the device.

use super::Context;
use crate::cli::{DumpfsArgs, DumpleArgs, UsedinfoArgs};
use crate::dump;
use crate::exit::{CmdResult, Failure};
use pfs_core::inspect::{load_replayed, read_chunk0, Journal, MetaImage};
use pfs_core::{CoreError, Device};
use pfs_format::layout::{CHUNK_SIZE, LOG_ENTRY_SIZE};
use pfs_format::{LogEntryPhy, MetaType};
use std::io::Write;

fn fail(cmd: &str) -> impl Fn(CoreError) -> Failure + '_ {
    move |e| Failure::from_core(cmd, &e)
}

fn meta_type(raw: u8) -> Result<MetaType, Failure> {
    MetaType::from_raw(raw).ok_or_else(|| {
        Failure::new(
            crate::exit::USAGE,
            format!("unknown meta type {raw}; use 1, 2 or 3"),
        )
    })
}

/// `pfs dumpfs`.
pub fn dumpfs(ctx: &Context, a: &DumpfsArgs, out: &mut dyn Write) -> CmdResult {
    let dev = ctx.open("dumpfs", &a.pbd, false)?;
    if a.meta {
        return dumpfs_meta(&*dev, a, out);
    }
    let f = fail("dumpfs");
    let ck0 = read_chunk0(&*dev).map_err(&f)?;
    let meta = MetaImage::load(&*dev).map_err(&f)?;
    let chunks: Vec<u64> = match a.chunk {
        Some(c) if c < u64::from(meta.nchunk) => vec![c],
        Some(c) => {
            return Err(Failure::new(
                5,
                format!(
                    "dumpfs: chunk {c} does not exist; device {} has {} chunk(s)",
                    a.pbd, meta.nchunk
                ),
            ))
        }
        None => (0..u64::from(ck0.ck_nchunk.get())).collect(),
    };
    let mut counts = [(0u64, 0u64); 3];
    for &c in &chunks {
        let ck = &meta.chunks[c as usize];
        writeln!(out, "chunk {c}: ")?;
        let l = 2;
        dump::field(out, l, "ck_magic", format!("{:#x}", ck.ck_magic.get()))?;
        dump::field(out, l, "ck_chunksize", ck.ck_chunksize.get())?;
        dump::field(out, l, "ck_blksize", ck.ck_blksize.get())?;
        dump::field(out, l, "ck_sectsize", ck.ck_sectsize.get())?;
        dump::field(out, l, "ck_number", ck.ck_number.get())?;
        dump::field(out, l, "ck_nchunk", ck.ck_nchunk.get())?;
        dump::field(out, l, "ck_checksum", ck.ck_checksum.get())?;
        for t in MetaType::ALL {
            let name = format!("ck_physet[MT_{}].ms_nsect", type_macro(t));
            dump::field(out, l, &name, ck.metaset(t).ms_nsect.get())?;
        }
        for t in MetaType::ALL {
            let name = format!("ck_physet[MT_{}].ms_sectbda", type_macro(t));
            dump::field(
                out,
                l,
                &name,
                format!("{:#x}", ck.metaset(t).ms_sectbda.get()),
            )?;
        }
        for t in MetaType::ALL {
            let used = meta
                .objects(c as u32, t)
                .iter()
                .filter(|m| m.is_used())
                .count() as u64;
            let i = usize::from(t.raw()) - 1;
            counts[i].0 += u64::from(t.per_chunk()) - used;
            counts[i].1 += used;
        }
    }
    writeln!(out, "type\tfree\tused\ttotal")?;
    for (t, (free, used)) in ["blktag", "dentry", "inode"].iter().zip(counts) {
        writeln!(out, "{t}\t{free}\t{used}\t{}", free + used)?;
    }
    Ok(())
}

fn type_macro(t: MetaType) -> &'static str {
    match t {
        MetaType::BlkTag => "BLKTAG",
        MetaType::DirEntry => "DIRENTRY",
        MetaType::Inode => "INODE",
    }
}

fn dumpfs_meta(dev: &dyn Device, a: &DumpfsArgs, out: &mut dyn Write) -> CmdResult {
    let (meta, _) = load_replayed(dev).map_err(fail("dumpfs"))?;
    let types: Vec<MetaType> = match a.mtype {
        Some(t) => vec![meta_type(t)?],
        None => MetaType::ALL.to_vec(),
    };
    if let Some(c) = a.chunk {
        if c >= u64::from(meta.nchunk) {
            return Err(Failure::new(
                crate::exit::FAILURE,
                format!(
                    "dumpfs: chunk {c} does not exist; device {} has {} chunk(s)",
                    a.pbd, meta.nchunk
                ),
            ));
        }
    }
    for t in types {
        let chunks: Vec<u32> = match a.chunk {
            Some(c) => vec![c as u32],
            None => (0..meta.nchunk).collect(),
        };
        for c in chunks {
            let objs = meta.objects(c, t);
            match a.oid {
                Some(o) => {
                    let mo = objs.get(o as usize).ok_or_else(|| {
                        Failure::new(
                            crate::exit::FAILURE,
                            format!(
                                "dumpfs: object id {o} is out of range: a chunk has {} {t} objects",
                                t.per_chunk()
                            ),
                        )
                    })?;
                    dump::metaobj(out, mo, 0)?;
                }
                None => {
                    for mo in &objs {
                        dump::metaobj(out, mo, 0)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `pfs info`.
pub fn info(ctx: &Context, pbd: &str, out: &mut dyn Write) -> CmdResult {
    let dev = ctx.open("info", pbd, false)?;
    let (meta, _) = load_replayed(&*dev).map_err(fail("info"))?;
    for (t, title) in MetaType::ALL.iter().zip(["Blktag", "Direntry", "Inode"]) {
        let (free, used) = meta.counts(*t);
        writeln!(out, "{title} Info:")?;
        writeln!(
            out,
            " (0)allocnode: id 0, shift 0, nchild={}, nall {}, nfree {}, next 0",
            meta.nchunk,
            free + used,
            free
        )?;
    }
    Ok(())
}

/// Chunk numbers, each with the ids of its used objects of one type.
pub(crate) type UsedByChunk = Vec<(u64, Vec<usize>)>;

/// What `usedinfo` reports, in text or JSON: the type asked for and, for
/// each chunk of the range (cut to the device), the ids of its used
/// objects of that type.
pub(crate) fn used_objects(
    ctx: &Context,
    a: &UsedinfoArgs,
) -> Result<(MetaType, UsedByChunk), Failure> {
    let t = match a.mtype.as_str() {
        "b" => MetaType::BlkTag,
        "d" => MetaType::DirEntry,
        _ => MetaType::Inode,
    };
    let dev = ctx.open("usedinfo", &a.pbd, false)?;
    let (meta, _) = load_replayed(&*dev).map_err(fail("usedinfo"))?;
    let n = u64::from(meta.nchunk);
    let begin = a.begin.unwrap_or(0);
    let end = a.end.filter(|&e| e <= n).unwrap_or(n);
    let chunks = (begin..end)
        .map(|c| {
            let objects = meta.objects(c as u32, t);
            let used = objects.iter().enumerate().filter(|(_, m)| m.is_used());
            (c, used.map(|(i, _)| i).collect())
        })
        .collect();
    Ok((t, chunks))
}

/// `pfs usedinfo`.
pub fn usedinfo(ctx: &Context, a: &UsedinfoArgs, out: &mut dyn Write) -> CmdResult {
    let (_, chunks) = used_objects(ctx, a)?;
    for (c, used) in chunks {
        writeln!(out, "chunk {c} has used {} objects:", used.len())?;
        for (k, oid) in used.iter().enumerate() {
            write!(out, "{oid:>6} ")?;
            if (k + 1) % 10 == 0 {
                writeln!(out)?;
            }
        }
        if used.len() % 10 != 0 {
            writeln!(out)?;
        }
    }
    Ok(())
}

/// `pfs dumple`.
pub fn dumple(ctx: &Context, a: &DumpleArgs, out: &mut dyn Write) -> CmdResult {
    let f = fail("dumple");
    let dev = ctx.open("dumple", &a.pbd, false)?;
    let meta = MetaImage::load(&*dev).map_err(&f)?;
    let journal = Journal::locate(&*dev, &meta).map_err(&f)?;
    let lr = &journal.leader;
    let (tail, head, size) = (
        lr.tail_offset.get(),
        lr.head_offset.get(),
        lr.log_size.get(),
    );
    let filter = |le: &LogEntryPhy| {
        if le.to_bytes().iter().all(|&b| b == 0) {
            return false;
        }
        if a.txid.is_some_and(|t| t != le.le_txid.get()) {
            return false;
        }
        let want = [
            (MetaType::BlkTag, a.btno),
            (MetaType::DirEntry, a.deno),
            (MetaType::Inode, a.ino),
        ];
        want.iter().all(|(t, n)| match n {
            Some(n) => le.le_obj_val.mo_type == t.raw() && le.le_obj_val.mo_number.get() == *n,
            None => true,
        })
    };
    let slot = LOG_ENTRY_SIZE as u64;
    // (first offset, number of slots) passes, as the reference runs them.
    let mut passes = Vec::new();
    if a.all {
        // The reference dumps the slot at head, then restarts one slot past
        // head and goes round the whole ring back to head.
        passes.push((head, 1));
        passes.push(((head + slot) % size, size / slot - 1));
    } else {
        passes.push((tail, ((head + size - tail) % size) / slot));
    }
    let mut buf = vec![0u8; 1 << 20];
    for (start, count) in passes {
        let mut done = 0u64;
        while done < count {
            let off = (start + done * slot) % size;
            // Read up to the buffer, the ring's end, or the pass's end.
            let n = (buf.len() as u64 / slot)
                .min((size - off) / slot)
                .min(count - done);
            let bytes = &mut buf[..(n * slot) as usize];
            journal.read(off, bytes).map_err(&f)?;
            for raw in bytes.chunks_exact(LOG_ENTRY_SIZE) {
                let le = LogEntryPhy::from_bytes(raw).map_err(|e| f(e.into()))?;
                if filter(&le) {
                    dump::logentry(out, &le, 0)?;
                }
            }
            done += n;
        }
    }
    Ok(())
}

/// `pfs flushlog`: mount read-write and checkpoint the journal.
pub fn flushlog(ctx: &Context, pbd: &str) -> CmdResult {
    let f = fail("flushlog");
    let m = ctx.mount("flushlog", pbd, pfs_core::Mode::ReadWrite)?;
    m.checkpoint().map_err(&f)
}

/// `pfs fsck`: check the metadata; exit 0 only when it is consistent.
pub fn fsck(ctx: &Context, pbd: &str, out: &mut dyn Write) -> CmdResult {
    // No mount: a damaged object must not stop the check at the first one.
    let dev = ctx.open("fsck", pbd, false)?;
    let progress = fsck_progress(pbd, pfs_core::Device::len(&*dev));
    let r = pfs_core::inspect::fsck_device(&*dev).map_err(fail("fsck"))?;
    drop(progress);
    writeln!(
        out,
        "{pbd}: {} directories, {} files, {} blocks, {} orphaned inodes",
        r.dirs,
        r.files,
        r.blocks,
        r.orphans.len()
    )?;
    for p in &r.problems {
        writeln!(out, "problem: {p}")?;
    }
    if r.is_clean() {
        writeln!(out, "clean")?;
        Ok(())
    } else {
        Err(Failure::new(
            5,
            format!("fsck: {pbd}: {} problem(s) found", r.problems.len()),
        ))
    }
}

/// What `fsck` shows on stderr while it works: the check is one call into
/// the library, so the time it has taken (a large device takes minutes).
pub fn fsck_progress(pbd: &str, device_len: u64) -> crate::progress::Progress {
    crate::progress::Progress::start(
        format!(
            "fsck {pbd} ({} chunk(s) of metadata)",
            device_len / CHUNK_SIZE
        ),
        crate::progress::Unit::Time,
        None,
        None,
    )
}

const _: () = assert!(CHUNK_SIZE > 0);
