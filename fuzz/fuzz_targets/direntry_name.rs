//! Arbitrary direntry chains never panic name reassembly; valid names
//! survive a split/assemble round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_format::direntry::{assemble_name, split_name};
use pfs_format::{DirEntryPhy, FormatError};

fuzz_target!(|data: &[u8]| {
    // Treat the input as a table of 88-byte direntries numbered 0, 1, ...
    let table: Vec<DirEntryPhy> = data
        .chunks_exact(88)
        .filter_map(|c| bytemuck_read(c))
        .collect();
    if let Some(head) = table.first() {
        let _ = assemble_name(0, head, |n| {
            table
                .get(n as usize)
                .copied()
                .ok_or(FormatError::InvalidName { reason: "no such direntry" })
        });
    }
    if let Ok(pieces) = split_name(data) {
        let joined: Vec<u8> = pieces.concat();
        assert_eq!(&joined[..data.len()], data);
    }
});

fn bytemuck_read(c: &[u8]) -> Option<DirEntryPhy> {
    let mut mo = pfs_format::MetaObjPhy::from_bytes(&[0u8; 128]).ok()?;
    mo.mo_data.copy_from_slice(c);
    Some(*mo.direntry())
}
