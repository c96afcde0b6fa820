//! The chunk backup stream's header and used-block table: arbitrary bytes
//! never panic the decoder, and a header that decodes encodes back to the
//! same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pfs_format::ossfile::{check_used_table, OssHeader, OSS_HEADER_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut b = [0u8; OSS_HEADER_SIZE];
    let n = data.len().min(OSS_HEADER_SIZE);
    b[..n].copy_from_slice(&data[..n]);
    if let Ok(h) = OssHeader::decode(&b) {
        let name_ok = !h.oss_pbdname.contains('\u{fffd}');
        let tail_zero = b[132..].iter().all(|&x| x == 0) && b[92..96].iter().all(|&x| x == 0);
        let name_clean = {
            let raw = &b[28..92];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            raw[end..].iter().all(|&c| c == 0) && end < 64
        };
        if name_ok && tail_zero && name_clean {
            assert_eq!(h.encode(), b);
        }
    }
    let table: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let _ = check_used_table(&table);
});
