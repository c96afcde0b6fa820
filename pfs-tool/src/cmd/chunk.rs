//! `pfs chunk -m backup|restore`: chunks as a byte stream on stdout and back
//! from stdin, in the reference's stream format (see
//! [`pfs_format::ossfile`]), so backups made by either tool restore with the
//! other.
//!
//! Backup streams one 4 MiB block at a time (a reader thread keeps the next
//! block coming while the previous one is written). Restore checks the whole
//! range and the target before it writes anything, checks each chunk's
//! header and used-block table and the metadata block's checksums as they
//! arrive, and keeps the chunk headers of the target blank until the whole
//! stream has been read: a stream that is cut or damaged halfway leaves a
//! device that refuses to mount ("not formatted") instead of a half-restored
//! one that looks whole, and the command fails.
//!
//! Both show their progress on stderr (see [`crate::progress`]); a backup
//! refuses to write its binary stream to a terminal.

use super::Context;
use crate::cli::ChunkArgs;
use crate::exit::{CmdResult, Failure};
use crate::progress::{Progress, Unit};
use pfs_core::inspect::load_replayed;
use pfs_core::AlignedBuf;
use pfs_core::{CoreError, Device};
use pfs_format::layout::{
    chunk_base, BLKTAGS_PER_CHUNK, BLKTAG_SET_OFFSET, BLOCK_SIZE, CHUNK_SIZE, DIRENTRY_SET_OFFSET,
    INODE_SET_OFFSET, OBJS_PER_SECTOR, SECTOR_SIZE,
};
use pfs_format::metaset::decode_sector;
use pfs_format::ossfile::{check_used_table, OssHeader, OSS_HEADER_SIZE};
use pfs_format::{ChunkPhy, MetaType};
use std::io::{IsTerminal, Read, Write};

/// Exit code of the reference for a bad argument or stream (`-EINVAL`).
const EXIT_EINVAL: u8 = 234;
/// Exit code of the reference when the device cannot be opened (`-EBADF`).
const EXIT_EBADF: u8 = 247;
/// Exit code for a target chunk that holds a PFS already (`EBUSY`).
const EXIT_EBUSY: u8 = 16;

fn einval(msg: impl Into<String>) -> Failure {
    Failure::new(EXIT_EINVAL, format!("chunk: {}", msg.into()))
}

/// The reference's `chunk failed: <reason>` line on stdout, reason and all:
/// it prints whatever `errno` held by then, which is not the cause (the
/// cause goes to stderr). Backup: "File exists" for chunks the device does
/// not have, "Input/output error" for a device that does not open; restore:
/// "impl specific" (errno 0) for every refused stream or range.
fn failed_line(out: &mut dyn Write, reason: &str) {
    let _ = writeln!(out, "chunk failed: {reason}");
    let _ = out.flush();
}

/// What `-m` names: the reference compares the first 6 or 7 characters.
enum Mode {
    Backup,
    Restore,
}

/// A usage error found after parsing: the reference's usage on stdout (as
/// its option parser fails), exit 255, and what was wrong on stderr.
fn usage(out: &mut dyn Write, message: String) -> Failure {
    let _ = out.write_all(crate::usage::CHUNK.as_bytes());
    Failure::new(crate::usage::EXIT, message)
}

/// `pfs chunk`.
pub fn chunk(ctx: &Context, a: &ChunkArgs, out: &mut dyn Write) -> CmdResult {
    let mode = if a.mode.starts_with("backup") {
        Mode::Backup
    } else if a.mode.starts_with("restore") {
        Mode::Restore
    } else {
        return Err(usage(
            out,
            format!("chunk: unknown mode {:?}; use backup or restore", a.mode),
        ));
    };
    let start = a.chunkid;
    let end = a.endchunkid.unwrap_or(start.saturating_add(1));
    if end <= start {
        return Err(usage(
            out,
            format!("chunk: end chunk {end} must be greater than the start chunk {start}"),
        ));
    }
    let open = |writable| {
        ctx.open("chunk", &a.pbd, writable)
            .map_err(|f| Failure::new(EXIT_EBADF, f.message))
    };
    match mode {
        Mode::Backup => {
            // The stream is binary: a terminal gets nothing of it.
            if std::io::stdout().is_terminal() {
                return Err(Failure::new(
                    crate::exit::USAGE,
                    format!(
                        "chunk: refusing to write the backup stream (binary) to a terminal; \
                         redirect stdout: pfs chunk -m backup -c {start} -e {end} {} > chunks.oss",
                        a.pbd
                    ),
                ));
            }
            let dev = open(false).inspect_err(|_| failed_line(out, &super::strerror(libc::EIO)))?;
            backup(&*dev, &a.pbd, start, end, a.force, out)
        }
        Mode::Restore => {
            let dev = open(true)?;
            // No writer of this machine may have the device mounted while
            // it is overwritten (the reference's host lock, whole file).
            let _lock = pfs_core::HostLock::acquire(
                &pfs_core::pbd::lock_path(&a.pbd, ctx.device_dir.as_deref()),
                0,
                dev.local_path(),
            )
            .map_err(|e| Failure::new(EXIT_EBUSY, format!("chunk: {e}")))?;
            let r = restore(&*dev, start, end, a.force, &mut std::io::stdin().lock());
            if let Err(f) = &r {
                if f.code == EXIT_EINVAL {
                    failed_line(out, "impl specific");
                }
            }
            r
        }
    }
}

/// Used block indexes of chunk `c` in stream order (descending).
fn used_blocks(meta: &pfs_core::inspect::MetaImage, c: u32) -> Vec<u32> {
    if c >= meta.nchunk {
        return Vec::new();
    }
    let mut v: Vec<u32> = meta
        .objects(c, MetaType::BlkTag)
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_used())
        .map(|(i, _)| i as u32)
        .collect();
    v.reverse();
    v
}

/// Writes to the stream; a closed or failing output is an incomplete
/// backup, never a quiet success.
fn emit(out: &mut dyn Write, bytes: &[u8], done: &mut u64) -> CmdResult {
    out.write_all(bytes).map_err(|e| {
        einval(format!(
            "writing the stream failed after {} bytes ({e}): the backup is incomplete",
            *done
        ))
    })?;
    *done += bytes.len() as u64;
    Ok(())
}

fn backup(
    dev: &dyn Device,
    pbd: &str,
    start: u64,
    end: u64,
    force: bool,
    out: &mut dyn Write,
) -> CmdResult {
    let (meta, _) = load_replayed(dev).map_err(|e| Failure::from_core("chunk", &e))?;
    let nsumck = dev.len() / CHUNK_SIZE;
    if end > nsumck {
        failed_line(out, &super::strerror(libc::EEXIST));
        return Err(einval(format!(
            "chunks [{start}, {end}) do not exist: {pbd} has room for {nsumck} chunk(s) \
             ({} formatted); nothing was written",
            meta.nchunk
        )));
    }
    // Everything is decided before the first byte goes out.
    let plan: Vec<(u32, Vec<u32>)> = (start..end)
        .map(|c| (c as u32, used_blocks(&meta, c as u32)))
        .collect();
    if let Some((c, _)) = plan.iter().find(|(_, u)| u.is_empty()) {
        if !force {
            return Err(einval(format!(
                "chunk {c} has no used block (it is not formatted); -f backs up its header \
                 alone; nothing was written"
            )));
        }
    }
    let ctime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut done = 0u64;
    let size: u64 = plan
        .iter()
        .map(|(_, u)| (OSS_HEADER_SIZE + 4 * u.len()) as u64 + u.len() as u64 * BLOCK_SIZE)
        .sum();
    let progress = Progress::start(
        format!("chunk backup {pbd} [{start}, {end})"),
        Unit::Bytes,
        Some(size),
        Some("chunks done"),
    );
    for (c, used) in &plan {
        let h = OssHeader::new(
            pbd,
            ctime,
            nsumck as u32,
            meta.nchunk,
            *c,
            used.len() as u32,
        );
        emit(out, &h.encode(), &mut done)?;
        let table: Vec<u8> = used.iter().flat_map(|b| b.to_le_bytes()).collect();
        emit(out, &table, &mut done)?;
        progress.inc((OSS_HEADER_SIZE + table.len()) as u64);
        stream_blocks(dev, *c, used, out, &mut done, &progress)?;
        progress.count(1);
    }
    out.flush()
        .map_err(|e| einval(format!("flushing the stream failed ({e})")))?;
    Ok(())
}

/// Reads the blocks of chunk `c` in a helper thread and writes them out in
/// order: one block in flight while the previous one is written.
fn stream_blocks(
    dev: &dyn Device,
    c: u32,
    used: &[u32],
    out: &mut dyn Write,
    done: &mut u64,
    progress: &Progress,
) -> CmdResult {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<AlignedBuf, CoreError>>(1);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<AlignedBuf>();
    for _ in 0..2 {
        let _ = empty_tx.send(AlignedBuf::new(BLOCK_SIZE as usize));
    }
    // The closure owns the main side's channel ends, so a failed write drops
    // them and the reader thread stops instead of waiting forever.
    std::thread::scope(move |s| {
        let (empty_tx, full_rx) = (empty_tx, full_rx);
        s.spawn(move || {
            for &b in used {
                let Ok(mut buf) = empty_rx.recv() else { return };
                let at = chunk_base(u64::from(c)) + u64::from(b) * BLOCK_SIZE;
                let r = dev.read_at(buf.as_mut_slice(), at).map(|()| buf);
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
            }
        });
        for _ in used {
            let buf = match full_rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(einval(format!("reading the device failed: {e}"))),
                Err(_) => return Err(einval("the device reader stopped")),
            };
            emit(out, buf.as_slice(), done)?;
            progress.inc(BLOCK_SIZE);
            let _ = empty_tx.send(buf);
        }
        Ok(())
    })
}

/// Reads exactly `buf.len()` bytes; returns how many came before the end.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> Result<usize, Failure> {
    super::read_full(input, buf).map_err(|e| einval(format!("reading the stream failed: {e}")))
}

/// Checks the metadata block (block 0) of chunk `c` as it came in the
/// stream: chunk header and every metaset sector's object checksums.
fn check_meta_block(block: &[u8], c: u32) -> Result<ChunkPhy, String> {
    let ck = ChunkPhy::decode(&block[..SECTOR_SIZE as usize], u64::from(c))
        .map_err(|e| format!("its chunk header is invalid: {e}"))?;
    for (t, off) in [
        (MetaType::BlkTag, BLKTAG_SET_OFFSET),
        (MetaType::DirEntry, DIRENTRY_SET_OFFSET),
        (MetaType::Inode, INODE_SET_OFFSET),
    ] {
        for s in 0..t.per_chunk() / OBJS_PER_SECTOR {
            let at = (off + u64::from(s) * SECTOR_SIZE) as usize;
            decode_sector(&block[at..at + SECTOR_SIZE as usize], t, c, s)
                .map_err(|e| format!("its {} metaset is damaged: {e}", t.name()))?;
        }
    }
    Ok(ck)
}

fn restore(dev: &dyn Device, start: u64, end: u64, force: bool, input: &mut dyn Read) -> CmdResult {
    let name = dev.name().to_owned();
    let nsumck = dev.len() / CHUNK_SIZE;
    if end > nsumck {
        return Err(einval(format!(
            "{name} has room for {nsumck} chunk(s); chunks [{start}, {end}) do not fit; \
             nothing was written"
        )));
    }
    // The first header is read before the target is looked at, so an empty
    // or foreign stream is reported as such.
    let mut first = [0u8; OSS_HEADER_SIZE];
    let n = read_full(input, &mut first)?;
    if n == 0 {
        return Err(einval("the stream is empty; nothing was restored"));
    }
    if n == OSS_HEADER_SIZE {
        let h = OssHeader::decode(&first)
            .map_err(|e| damaged(false, &format!("chunk {start}'s stream header: {e}")))?;
        if u64::from(h.oss_ckid) != start {
            return Err(damaged(
                false,
                &format!(
                    "the stream starts with chunk {} of {}, not chunk {start} \
                     (restore it with -c {})",
                    h.oss_ckid, h.oss_pbdname, h.oss_ckid
                ),
            ));
        }
    }
    let mut pending = Some((first, n));
    // The target must not hold a PFS in the range unless -f says so.
    let mut formatted = Vec::new();
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    for c in start..end {
        dev.read_at(sect.as_mut_slice(), chunk_base(c))
            .map_err(|e| einval(e.to_string()))?;
        if ChunkPhy::decode(sect.as_slice(), c).is_ok() {
            formatted.push(c);
        }
    }
    if let Some(c) = formatted.first() {
        if !force {
            return Err(Failure::new(
                EXIT_EBUSY,
                format!(
                    "chunk: chunk {c} of {name} holds a PFS already; \
                     run 'chunk -m restore -f' if you mean to overwrite it; nothing was written"
                ),
            ));
        }
    }
    // The host lock only keeps out this machine's writers: a writer of any
    // host holding the lease on the device's filesystem is refused too, as
    // mkfs -f refuses it.
    pfs_core::ensure_no_live_writer(dev).map_err(|e| match e {
        CoreError::Busy { .. } => Failure::new(
            EXIT_EBUSY,
            format!(
                "chunk: {e}; a restore would overwrite the filesystem under it; \
                 unmount it first (or let its lease run out); nothing was written"
            ),
        ),
        other => einval(other.to_string()),
    })?;
    let progress = Progress::start(
        format!("chunk restore {name} [{start}, {end})"),
        Unit::Bytes,
        None,
        Some("chunks done"),
    );
    let mut blank_done = false;
    // The filesystem's chunk count, from the stream, for the closing note.
    let mut fs_nchunk = 0u32;
    let mut headers: Vec<(u64, AlignedBuf)> = Vec::new();
    let mut block = AlignedBuf::new(BLOCK_SIZE as usize);
    for c in start..end {
        let (hb, n) = match pending.take() {
            Some(p) => p,
            None => {
                let mut hb = [0u8; OSS_HEADER_SIZE];
                let n = read_full(input, &mut hb)?;
                (hb, n)
            }
        };
        if n < OSS_HEADER_SIZE {
            return Err(cut(blank_done, &format!("inside the header of chunk {c}")));
        }
        let h = OssHeader::decode(&hb)
            .map_err(|e| damaged(blank_done, &format!("chunk {c}'s stream header: {e}")))?;
        fs_nchunk = h.oss_nchunk;
        if u64::from(h.oss_ckid) != c {
            return Err(damaged(
                blank_done,
                &format!(
                    "this part of the stream holds chunk {} of {}, not chunk {c} \
                     (restore it with -c {})",
                    h.oss_ckid, h.oss_pbdname, h.oss_ckid
                ),
            ));
        }
        let mut tb = vec![0u8; h.oss_nusedblk as usize * 4];
        if read_full(input, &mut tb)? < tb.len() {
            return Err(cut(
                blank_done,
                &format!("inside chunk {c}'s used-block table"),
            ));
        }
        let table: Vec<u32> = tb
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Err((i, b)) = check_used_table(&table) {
            return Err(damaged(
                blank_done,
                &format!(
                    "chunk {c}'s used-block table is damaged (entry {i} is {b}; \
                     entries must fall below {BLKTAGS_PER_CHUNK}, descending)"
                ),
            ));
        }
        if table.last().is_some_and(|&b| b != 0) {
            return Err(damaged(
                blank_done,
                &format!("chunk {c}'s used-block table lacks block 0 (the chunk header)"),
            ));
        }
        if !blank_done {
            // From here on the target is being changed: its chunk headers in
            // the range stay blank until the whole stream is in.
            for &f in &formatted {
                dev.write_at(
                    AlignedBuf::new(SECTOR_SIZE as usize).as_slice(),
                    chunk_base(f),
                )
                .map_err(|e| einval(e.to_string()))?;
            }
            dev.sync().map_err(|e| einval(e.to_string()))?;
            blank_done = true;
        }
        for (k, &b) in table.iter().enumerate() {
            if read_full(input, block.as_mut_slice())? < BLOCK_SIZE as usize {
                return Err(cut(
                    true,
                    &format!("after {k} of the {} blocks of chunk {c}", table.len()),
                ));
            }
            let at = chunk_base(c) + u64::from(b) * BLOCK_SIZE;
            if b == 0 {
                check_meta_block(block.as_slice(), c as u32)
                    .map_err(|why| damaged(true, &format!("chunk {c}'s metadata block: {why}")))?;
                let mut h = AlignedBuf::new(SECTOR_SIZE as usize);
                h.as_mut_slice()
                    .copy_from_slice(&block.as_slice()[..SECTOR_SIZE as usize]);
                headers.push((c, h));
                dev.write_at(&block.as_slice()[SECTOR_SIZE as usize..], at + SECTOR_SIZE)
                    .map_err(|e| einval(e.to_string()))?;
            } else {
                dev.write_at(block.as_slice(), at)
                    .map_err(|e| einval(e.to_string()))?;
            }
            progress.inc(BLOCK_SIZE);
        }
        progress.count(1);
    }
    drop(progress);
    dev.sync().map_err(|e| einval(e.to_string()))?;
    // Chunk 0's header goes last: until it is written the device does not
    // mount.
    for (c, h) in headers.iter().rev() {
        dev.write_at(h.as_slice(), chunk_base(*c))
            .map_err(|e| einval(e.to_string()))?;
    }
    dev.sync().map_err(|e| einval(e.to_string()))?;
    // A copy of the metasets made while the restore ran is of none.
    pfs_core::forget_metaset_copy(dev);
    if start > 0 || end < u64::from(fs_nchunk) {
        eprintln!(
            "pfs: chunk: restored chunks [{start}, {end}) of a filesystem of {fs_nchunk} \
             chunk(s); it mounts once all of them are restored"
        );
    }
    Ok(())
}

fn cut(written: bool, where_: &str) -> Failure {
    if written {
        einval(format!(
            "the stream ends {where_}: it is truncated; the chunk headers of the restored range \
             are left blank, so the device does not mount half-restored; restore again (with -f) \
             from a complete stream"
        ))
    } else {
        einval(format!(
            "the stream ends {where_}: it is truncated; nothing was written"
        ))
    }
}

fn damaged(written: bool, what: &str) -> Failure {
    if written {
        einval(format!(
            "damaged stream: {what}; the chunk headers of the restored range are left blank, \
             so the device does not mount half-restored; restore again (with -f) from a good \
             stream"
        ))
    } else {
        einval(format!("damaged stream: {what}; nothing was written"))
    }
}
