//! `pfs fscp`: copy a whole filesystem to another device: every used block
//! (chunk headers and metasets, `.pfs-paxos`, `.pfs-journal` and file
//! data) as the reference does, up to each block's `bt_holeoff` rounded up
//! to 16 KiB; free blocks are not copied.
//!
//! Unlike the reference it refuses the same device twice, a destination
//! that holds a PFS already unless `-f` is given, and a destination whose
//! filesystem has a live writer; and it keeps the destination unmountable
//! while it copies: chunk 0's header sector is
//! blanked first and written last, after everything else is on the
//! destination and flushed, so an interrupted copy never looks whole.
//! Workers copy chunks in parallel; with `-c` every copied range is read
//! back from both devices and compared.
//!
//! Stdout keeps the reference's lines, but not its `\r` counter (a log of
//! it was one huge line): the counter's last state is one line, and each
//! `-c` check is a line of its own. Progress goes to stderr (see
//! [`crate::progress`]).

use super::{strerror, Context};
use crate::cli::FscpArgs;
use crate::exit::{CmdResult, Failure, FAILURE};
use crate::progress::{Progress, Unit};
use pfs_core::inspect::load_replayed;
use pfs_core::AlignedBuf;
use pfs_core::HostLock;
use pfs_core::{pbd, CoreError, Device};
use pfs_format::layout::{BLKTAGS_PER_CHUNK, BLOCK_SIZE, CHUNK_SIZE, FRAG_SIZE, SECTOR_SIZE};
use pfs_format::MetaType;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Worker count limits of the reference.
const NWORKER: (i64, i64) = (2, 36);
/// Fragments-per-IO limits of the reference.
const NFRAG: (i64, i64) = (8, (BLOCK_SIZE / FRAG_SIZE) as i64);

/// One used block to copy.
#[derive(Debug, Clone, Copy)]
struct UsedBlock {
    chunk: u32,
    oid: u32,
    holeoff: i32,
}

impl UsedBlock {
    fn blkno(&self) -> u64 {
        u64::from(self.chunk) * u64::from(BLKTAGS_PER_CHUNK) + u64::from(self.oid)
    }

    /// Bytes copied from the block's start: whole 16 KiB fragments that
    /// start before `holeoff`.
    fn copy_len(&self) -> usize {
        if self.holeoff <= 0 {
            return 0;
        }
        let h = self.holeoff as u64;
        (h.div_ceil(FRAG_SIZE) * FRAG_SIZE).min(BLOCK_SIZE) as usize
    }
}

/// Progress reports from the workers to the printing thread.
enum Event {
    Copied,
    ChunkDone,
    Checked(UsedBlock, u32),
}

fn fail(out: &mut dyn Write, errno: i32, msg: String) -> Failure {
    fail_with(out, errno, FAILURE, msg)
}

/// A failure with its own exit code (16 for a destination in use).
fn fail_with(out: &mut dyn Write, errno: i32, code: u8, msg: String) -> Failure {
    let _ = writeln!(out, "pfs fscp failed!");
    let _ = writeln!(out, "fscp failed: {}", strerror(errno));
    Failure::new(code, format!("fscp: {msg}"))
}

/// The device file behind a PBD, for telling two names of one device apart.
fn identity(ctx: &Context, name: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let p = pbd::device_path(name, ctx.device_dir.as_deref()).ok()?;
    let md = std::fs::metadata(p).ok()?;
    Some(if md.rdev() != 0 {
        (0, md.rdev())
    } else {
        (md.dev(), md.ino())
    })
}

/// `pfs fscp`.
pub fn fscp(ctx: &Context, a: &FscpArgs, out: &mut dyn Write) -> CmdResult {
    for c in [&a.src_cluster, &a.dst_cluster].into_iter().flatten() {
        if c != "disk" {
            return Err(Failure::new(
                crate::exit::USAGE,
                format!("fscp: cluster {c:?} is not supported; use disk"),
            ));
        }
    }
    // A device that does not open gets the usage first, as in the
    // reference (it checks both names before anything else).
    let open = |name: &str, w: bool, out: &mut dyn Write| {
        pbd::open_pbd(name, ctx.device_dir.as_deref(), w).map_err(|e| {
            let _ = out.write_all(crate::usage::FSCP.as_bytes());
            fail(out, e.errno(), e.to_string())
        })
    };
    let src = open(&a.src, false, out)?;
    let dst = open(&a.dst, true, out)?;
    if a.src == a.dst || identity(ctx, &a.src).is_some_and(|i| Some(i) == identity(ctx, &a.dst)) {
        return Err(fail(
            out,
            22,
            format!(
                "{} and {} are the same device; copy to another one",
                a.src, a.dst
            ),
        ));
    }
    if src.len() > dst.len() {
        return Err(fail(
            out,
            28,
            format!(
                "destination {} ({} bytes) is smaller than source {} ({} bytes); nothing was written",
                a.dst,
                dst.len(),
                a.src,
                src.len()
            ),
        ));
    }
    // Copying over a filesystem is as final as mkfs over one: it takes -f.
    let formatted = pfs_core::chunk_is_formatted(&*dst, 0).map_err(|e| {
        fail(
            out,
            e.errno(),
            format!("cannot read destination {}: {e}", a.dst),
        )
    })?;
    if formatted && !a.force {
        return Err(fail_with(
            out,
            nix::libc::EBUSY,
            16,
            format!(
                "destination {} holds a PFS already; run 'fscp -f' if you mean to overwrite it; \
                 nothing was written",
                a.dst
            ),
        ));
    }
    let nsumck = src.len() / CHUNK_SIZE;
    writeln!(
        out,
        "copy info: disk size {:#x}, chunk size {:#x}, nchunk {nsumck}",
        src.len(),
        CHUNK_SIZE
    )?;
    out.flush()?;
    let lock_path = pbd::lock_path(&a.dst, ctx.device_dir.as_deref());
    let _lock = HostLock::acquire(&lock_path, 0, dst.local_path())
        .map_err(|e| Failure::from_core("fscp", &e))?;
    // The host lock only keeps out this machine's writers: a writer of any
    // host holding the destination's lease is refused too, as mkfs -f
    // refuses it.
    pfs_core::ensure_no_live_writer(&*dst).map_err(|e| match e {
        CoreError::Busy { .. } => fail_with(
            out,
            nix::libc::EBUSY,
            16,
            format!(
                "{e}; the copy would overwrite the filesystem under it; unmount it first \
                 (or let its lease run out); nothing was written"
            ),
        ),
        other => fail(out, other.errno(), other.to_string()),
    })?;
    let (meta, _) = load_replayed(&*src).map_err(|e| Failure::from_core("fscp", &e))?;
    let chunks: Vec<Vec<UsedBlock>> = (0..meta.nchunk)
        .map(|c| {
            meta.objects(c, MetaType::BlkTag)
                .iter()
                .enumerate()
                .filter(|(_, m)| m.is_used())
                .map(|(i, m)| {
                    // As the reference lists them: a tag without a hole
                    // (holelen 0) is copied whole.
                    let bt = m.blktag();
                    let holeoff = if bt.bt_holelen.get() > 0 {
                        bt.bt_holeoff.get()
                    } else {
                        i32::MAX
                    };
                    UsedBlock {
                        chunk: c,
                        oid: i as u32,
                        holeoff,
                    }
                })
                .collect()
        })
        .collect();
    drop(meta);
    writeln!(
        out,
        "[1] get used blocks list in {}({} chunks) successfully",
        a.src,
        chunks.len()
    )?;
    let total: usize = chunks.iter().map(Vec::len).sum();
    let nworker = a
        .nworker
        .clamp(NWORKER.0, NWORKER.1)
        .min(total.max(1) as i64) as usize;
    // -n only bounded the reference's IO size; we copy each range in one IO.
    let _nfrag = a.nfrag.clamp(NFRAG.0, NFRAG.1);
    writeln!(out, "start {nworker} I/O workers")?;
    writeln!(
        out,
        "[2] send {} chunk copy tasks, {total} used blks",
        chunks.len()
    )?;
    out.flush()?;

    // Chunk 0's header stays blank on the destination until the end.
    let header0 = chunks
        .first()
        .and_then(|c| c.iter().find(|b| b.oid == 0))
        .filter(|b| b.copy_len() >= SECTOR_SIZE as usize)
        .is_some();
    let io = |e: CoreError| Failure::new(FAILURE, format!("fscp: {e}"));
    if header0 {
        dst.write_at(AlignedBuf::new(SECTOR_SIZE as usize).as_slice(), 0)
            .map_err(io)?;
        dst.sync().map_err(io)?;
    }

    // Workers take blocks (not whole chunks) from one list, so even a
    // one-chunk device keeps reads and writes of several blocks in flight.
    let tasks: Vec<(usize, &UsedBlock)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |b| (i, b)))
        .collect();
    let remaining: Vec<AtomicUsize> = chunks.iter().map(|c| AtomicUsize::new(c.len())).collect();
    let next_copy = AtomicUsize::new(0);
    let next_check = AtomicUsize::new(0);
    let copied_all = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Event>();
    let result: Result<(), String> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..nworker {
            let tx = tx.clone();
            let (src, dst, tasks, remaining) = (&*src, &*dst, &tasks, &remaining);
            let (next_copy, next_check) = (&next_copy, &next_check);
            let (copied_all, abort) = (&copied_all, &abort);
            let check = a.crc_check;
            handles.push(s.spawn(move || -> Result<(), String> {
                let mut buf = AlignedBuf::new(BLOCK_SIZE as usize);
                let mut back = AlignedBuf::new(BLOCK_SIZE as usize);
                while let Some(&(ci, b)) = tasks.get(next_copy.fetch_add(1, Ordering::SeqCst)) {
                    if abort.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    if let Err(e) = copy_block(src, dst, b, &mut buf) {
                        abort.store(true, Ordering::SeqCst);
                        return Err(e.to_string());
                    }
                    let _ = tx.send(Event::Copied);
                    if remaining[ci].fetch_sub(1, Ordering::SeqCst) == 1 {
                        let _ = tx.send(Event::ChunkDone);
                    }
                    copied_all.fetch_add(1, Ordering::SeqCst);
                }
                if !check {
                    return Ok(());
                }
                // Checks start once every block is on the destination.
                while copied_all.load(Ordering::SeqCst) < tasks.len() {
                    if abort.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                while let Some(&(_, b)) = tasks.get(next_check.fetch_add(1, Ordering::SeqCst)) {
                    if b.holeoff > 0 {
                        let crc = check_block(src, dst, b, &mut buf, &mut back)?;
                        let _ = tx.send(Event::Checked(*b, crc));
                    }
                }
                Ok(())
            }));
        }
        drop(tx);
        let (mut copied, mut done) = (0u64, 0u64);
        let mut copying = Progress::start(
            "fscp: copying",
            Unit::Items("blocks"),
            Some(total as u64),
            Some("chunks done"),
        );
        let mut checking: Option<Progress> = None;
        // The counter's last state, where the reference's `\r` line ended.
        let counter = |out: &mut dyn Write, copied: u64, done: u64| {
            let _ = writeln!(
                out,
                "{copied} blocks have been copied, {done} chunks are done"
            );
        };
        for ev in rx {
            match ev {
                Event::Copied => {
                    copied += 1;
                    copying.inc(1);
                }
                Event::ChunkDone => {
                    done += 1;
                    copying.count(1);
                }
                Event::Checked(b, crc) => {
                    // Every copy is reported before the first check.
                    let check = checking.get_or_insert_with(|| {
                        counter(out, copied, done);
                        copying = Progress::none();
                        let with_data = tasks.iter().filter(|(_, b)| b.holeoff > 0).count();
                        Progress::start(
                            "fscp: checking",
                            Unit::Items("blocks"),
                            Some(with_data as u64),
                            None,
                        )
                    });
                    check.inc(1);
                    let _ = check.suspend(|| {
                        writeln!(
                            out,
                            "crc check pass! crc={crc}, ckid={}, oid={}, blkno={},\t\t\t    holeoff={}",
                            b.chunk,
                            b.oid,
                            b.blkno(),
                            b.holeoff
                        )
                    });
                }
            }
        }
        if checking.is_none() {
            counter(out, copied, done);
        }
        let mut r = Ok(());
        for h in handles {
            let w = h
                .join()
                .unwrap_or_else(|_| Err("a copy worker panicked".to_owned()));
            if r.is_ok() {
                r = w;
            }
        }
        r
    });
    if let Err(e) = result {
        return Err(fail(
            out,
            5,
            format!("{e}; the destination's chunk 0 header is left blank so it does not mount"),
        ));
    }
    dst.sync().map_err(io)?;
    if header0 {
        let mut h = AlignedBuf::new(SECTOR_SIZE as usize);
        src.read_at(h.as_mut_slice(), 0).map_err(io)?;
        dst.write_at(h.as_slice(), 0).map_err(io)?;
        dst.sync().map_err(io)?;
    }
    // A copy of the metasets made while the copy ran is of none.
    pfs_core::forget_metaset_copy(&*dst);
    writeln!(out, "stop {nworker} I/O workers")?;
    writeln!(out, "[3] update {} paxos leader successfully", a.dst)?;
    writeln!(out, "pfs fscp successfully")?;
    Ok(())
}

/// Copies one block's range (chunk 0's header sector excepted).
fn copy_block(
    src: &dyn Device,
    dst: &dyn Device,
    b: &UsedBlock,
    buf: &mut AlignedBuf,
) -> Result<(), CoreError> {
    let n = b.copy_len();
    if n == 0 {
        return Ok(());
    }
    let at = b.blkno() * BLOCK_SIZE;
    let skip = if at == 0 { SECTOR_SIZE as usize } else { 0 };
    let slice = &mut buf.as_mut_slice()[..n];
    src.read_at(slice, at)?;
    dst.write_at(&slice[skip..], at + skip as u64)
}

/// Reads one block's copied range from both devices and compares; returns
/// the PFS CRC-32C of the range (first 4 bytes taken as zero, as the
/// reference computes it).
fn check_block(
    src: &dyn Device,
    dst: &dyn Device,
    b: &UsedBlock,
    x: &mut AlignedBuf,
    y: &mut AlignedBuf,
) -> Result<u32, String> {
    let n = b.copy_len();
    let at = b.blkno() * BLOCK_SIZE;
    src.read_at(&mut x.as_mut_slice()[..n], at)
        .map_err(|e| e.to_string())?;
    dst.read_at(&mut y.as_mut_slice()[..n], at)
        .map_err(|e| e.to_string())?;
    // Chunk 0's header sector is written at the very end.
    let from = if at == 0 { SECTOR_SIZE as usize } else { 0 };
    if x.as_slice()[from..n] != y.as_slice()[from..n] {
        return Err(format!(
            "crc check failed: block {} (chunk {}, oid {}) differs between source and \
             destination after the copy",
            b.blkno(),
            b.chunk,
            b.oid
        ));
    }
    let len = (b.holeoff as usize).min(BLOCK_SIZE as usize);
    Ok(pfs_format::pfs_crc32c_zeroed(&x.as_slice()[..len], 0).unwrap_or(0))
}
