//! Mounting and fsck-ing a damaged image: the input patches the metadata
//! of a small valid image (chunk header, block tags, direntries, inodes),
//! optionally re-sealing every patched object so the damage passes the
//! checksums and reaches the namespace code. Nothing may panic or hang.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use pfs_core::Device;
use pfs_format::layout::{META_END_OFFSET, OBJ_SIZE, SECTOR_SIZE};
use pfs_format::MetaObjPhy;
use std::sync::Arc;

/// Each patch is `offset (3 bytes LE) | len (1 byte) | bytes`, the offset
/// taken modulo the metadata area of chunk 0.
fn patches(data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let off = u64::from(rest[0]) | u64::from(rest[1]) << 8 | u64::from(rest[2]) << 16;
        let len = usize::from(rest[3]).min(rest.len() - 4);
        out.push((off % META_END_OFFSET, &rest[4..4 + len]));
        rest = &rest[4 + len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let dev = common::image(flags & 1 == 0);
    let reseal = flags & 2 != 0;
    let mut touched = Vec::new();
    for (off, bytes) in patches(body) {
        let end = (off + bytes.len() as u64).min(META_END_OFFSET);
        let bytes = &bytes[..(end - off) as usize];
        if dev.write_at(bytes, off).is_err() {
            return;
        }
        touched.push((off, end));
    }
    if reseal {
        // Give every object the patches touched in a metaset a correct
        // checksum (the chunk header keeps whatever it now holds).
        for (start, end) in touched {
            let first = start / OBJ_SIZE as u64;
            let last = end.saturating_sub(1) / OBJ_SIZE as u64;
            for k in first..=last {
                let at = k * OBJ_SIZE as u64;
                if at < SECTOR_SIZE {
                    continue;
                }
                let mut raw = [0u8; OBJ_SIZE];
                if dev.read_at(&mut raw, at).is_err() {
                    continue;
                }
                if let Ok(mut mo) = MetaObjPhy::from_bytes(&raw) {
                    mo.seal();
                    let _ = dev.write_at(&mo.to_bytes(), at);
                }
            }
        }
    }
    common::exercise(Arc::new(dev));
});
