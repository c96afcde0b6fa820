//! Arbitrary bytes never panic the chunk header decoder; what decodes
//! re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_format::ChunkPhy;

fuzz_target!(|data: &[u8]| {
    let chunk = data.first().map(|b| u64::from(*b % 4)).unwrap_or(0);
    let body = data.get(1..).unwrap_or(&[]);
    if let Ok(ck) = ChunkPhy::decode(body, chunk) {
        assert_eq!(&ck.to_bytes()[..], &body[..120]);
    }
});
