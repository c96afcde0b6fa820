//! Journal replay over arbitrary journal bytes and an arbitrary leader
//! record, on a small image whose journal holds real transactions. The
//! input is a flags byte, then patches `target | offset (2 bytes LE) | len
//! | bytes`: an even target patches the leader record (offset modulo its
//! 264 bytes), an odd one the journal from the start of its committed
//! range (offset modulo 64 KiB). Flags ask for the leader and the patched
//! log entries to be re-sealed, so the damage passes the checksums and
//! reaches replay. Mounting, reading and fsck-ing the result may fail,
//! never panic or hang.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use pfs_core::inspect::{Journal, MetaImage};
use pfs_core::Device;
use pfs_format::layout::{BLOCK_SIZE, LOG_ENTRY_SIZE, SECTOR_SIZE};
use pfs_format::{LeaderRecord, LogEntryPhy};
use std::sync::Arc;

const LEADER_LEN: usize = 264;
const WINDOW: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let dev = common::image(false);
    let Ok(meta) = MetaImage::load(&dev) else {
        return;
    };
    let Ok(journal) = Journal::locate(&dev, &meta) else {
        return;
    };
    let old = journal.leader;
    let size = old.log_size.get();
    // The leader record and the first 64 KiB of the committed range, as
    // the input leaves them.
    let mut lr_bytes = old.to_bytes();
    let mut window = vec![0u8; WINDOW];
    let at = |k: u64| (old.tail_offset.get() + k) % size;
    for (k, piece) in window.chunks_mut(LOG_ENTRY_SIZE).enumerate() {
        if journal
            .read(at((k * LOG_ENTRY_SIZE) as u64), piece)
            .is_err()
        {
            return;
        }
    }
    let mut touched = Vec::new();
    while rest.len() >= 4 {
        let target = rest[0];
        let off = usize::from(rest[1]) | usize::from(rest[2]) << 8;
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let bytes = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let dst: &mut [u8] = if target % 2 == 0 {
            &mut lr_bytes[..]
        } else {
            &mut window[..]
        };
        let off = off % dst.len();
        let n = bytes.len().min(dst.len() - off);
        dst[off..off + n].copy_from_slice(&bytes[..n]);
        if target % 2 == 1 {
            touched.push((off, off + n));
        }
    }
    let Ok(mut lr) = LeaderRecord::from_bytes(&lr_bytes) else {
        return;
    };
    if flags & 1 != 0 {
        lr.seal();
    }
    if flags & 2 != 0 {
        for (start, end) in touched {
            for k in start / LOG_ENTRY_SIZE..end.div_ceil(LOG_ENTRY_SIZE) {
                let e = &mut window[k * LOG_ENTRY_SIZE..(k + 1) * LOG_ENTRY_SIZE];
                if let Ok(mut le) = LogEntryPhy::from_bytes(e) {
                    le.seal();
                    e.copy_from_slice(&le.to_bytes());
                }
            }
        }
    }
    let mut sect = vec![0u8; SECTOR_SIZE as usize];
    sect[..LEADER_LEN].copy_from_slice(&lr.to_bytes());
    if dev.write_at(&sect, journal.leader_bda).is_err() {
        return;
    }
    for (k, piece) in window.chunks(LOG_ENTRY_SIZE).enumerate() {
        let off = at((k * LOG_ENTRY_SIZE) as u64);
        let Some(&blk) = journal.blocks.get((off / BLOCK_SIZE) as usize) else {
            return;
        };
        if dev
            .write_at(piece, blk * BLOCK_SIZE + off % BLOCK_SIZE)
            .is_err()
        {
            return;
        }
    }
    common::exercise(Arc::new(dev));
});
