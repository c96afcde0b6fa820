//! `mkfs` and `growfs`.

use super::Context;
use crate::cli::{GrowfsArgs, MkfsArgs};
use crate::exit::{CmdResult, Failure};
use pfs_core::{growfs as core_growfs, GrowfsOptions};
use pfs_core::{mkfs as core_mkfs, MkfsOptions};
use pfs_format::layout::CHUNK_SIZE;
use pfs_format::MetaType;
use std::io::Write;

/// Prints the lines the reference prints while initialising `chunk`.
fn print_chunk_init(out: &mut dyn Write, chunk: u64) -> std::io::Result<()> {
    writeln!(out, "Init chunk {chunk}")?;
    for t in MetaType::ALL {
        let ms = pfs_format::MetasetPhy::standard(chunk, t);
        let first = chunk << t.shift();
        let end = (chunk << t.shift()) + u64::from(t.per_chunk());
        writeln!(
            out,
            "\t\tmetaset {:>8x}/{}: sectbda {:>#16x}, npage {:>8}, objsize {:>4}, nobj {:>4}, oid range [{:>8x}, {:>8x})",
            chunk,
            t.raw(),
            ms.ms_sectbda.get(),
            ms.ms_nsect.get(),
            ms.ms_objsize.get(),
            t.per_chunk(),
            first,
            end
        )?;
    }
    writeln!(out)
}

/// `pfs mkfs`.
pub fn mkfs(ctx: &Context, a: &MkfsArgs, out: &mut dyn Write, err: &mut dyn Write) -> CmdResult {
    if a.sector_size != 4096 {
        return Err(Failure::new(
            234,
            format!(
                "mkfs: sector size {} is not supported; PFS uses 4096",
                a.sector_size
            ),
        ));
    }
    let run = || -> Result<pfs_core::MkfsSummary, Failure> {
        let dev = ctx.open("mkfs", &a.pbd, true)?;
        // The whole host-lock file, as the reference's mkfs takes it: no
        // writer of either tool may run on this machine meanwhile.
        let _lock = ctx.host_lock("mkfs", &a.pbd, 0)?;
        let opts = MkfsOptions {
            num_hosts: a.num_hosts,
            log_size: a.log_size,
            force: a.force,
        };
        core_mkfs(&*dev, &opts).map_err(|e| Failure::from_core("mkfs", &e))
    };
    match run() {
        Ok(s) => {
            if s.wasted > 0 {
                writeln!(
                    err,
                    "pfs: note: device {} is {} bytes, not a multiple of 10 GiB; using {} chunk(s), {} bytes at the end stay unused",
                    a.pbd,
                    s.disk_size + s.wasted,
                    s.nchunk,
                    s.wasted
                )?;
            }
            for chunk in 0..u64::from(s.nchunk) {
                print_chunk_init(out, chunk)?;
            }
            writeln!(
                out,
                "Inited filesystem({} bytes), {} chunks, {} blktags, {} direntries, {} inodes per chunk",
                s.disk_size,
                s.nchunk,
                MetaType::BlkTag.per_chunk(),
                MetaType::DirEntry.per_chunk(),
                MetaType::Inode.per_chunk()
            )?;
            writeln!(
                out,
                "making paxos file\ninit paxos lease\nmaking journal file\npfs mkfs succeeds!"
            )?;
            Ok(())
        }
        Err(f) => {
            writeln!(out, "pfs mkfs failed!")?;
            writeln!(out, "mkfs failed: {}", super::strerror(f.errno))?;
            Err(f)
        }
    }
}

/// `pfs growfs`. Without `-o` the filesystem's chunk count comes from its
/// chunk 0 header, without `-n` the device's size gives the new one.
pub fn growfs(ctx: &Context, a: &GrowfsArgs, out: &mut dyn Write) -> CmdResult {
    let run = || -> Result<(u64, u64), Failure> {
        let dev = ctx.open("growfs", &a.pbd, true)?;
        let _lock = ctx.host_lock("growfs", &a.pbd, 0)?;
        let old = match a.old {
            Some(n) => n,
            None => pfs_core::inspect::read_chunk0(&*dev)
                .map(|ck| u64::from(ck.ck_nchunk.get()))
                .map_err(|e| Failure::from_core("growfs", &e))?,
        };
        let new = a.new.unwrap_or(dev.len() / CHUNK_SIZE);
        if (a.old.is_none() || a.new.is_none()) && new <= old {
            return Err(Failure::new(
                234,
                format!(
                    "growfs: nothing to grow: {} holds {new} whole chunk(s) of 10 GiB and the \
                     filesystem has {old}; enlarge the device first",
                    a.pbd
                ),
            ));
        }
        core_growfs(
            &*dev,
            GrowfsOptions {
                old_nchunk: old,
                new_nchunk: new,
                force: a.force,
            },
        )
        .map_err(|e| Failure::from_core("growfs", &e))?;
        Ok((old, new))
    };
    match run() {
        Ok((old, new)) => {
            for chunk in old..new {
                print_chunk_init(out, chunk)?;
            }
            writeln!(out, "pfs growfs succeeds!")?;
            Ok(())
        }
        Err(f) => {
            writeln!(out, "pfs growfs failed!")?;
            writeln!(out, "growfs failed: {}", super::strerror(f.errno))?;
            Err(f)
        }
    }
}

const _: () = assert!(CHUNK_SIZE == 10 << 30);
