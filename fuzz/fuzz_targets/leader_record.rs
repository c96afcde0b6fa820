//! Arbitrary bytes never panic the leader record decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_format::LeaderRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(lr) = LeaderRecord::decode(data) {
        assert_eq!(&lr.to_bytes()[..], &data[..264]);
    }
});
