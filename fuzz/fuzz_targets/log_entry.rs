//! Arbitrary bytes never panic the log entry decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_format::LogEntryPhy;

fuzz_target!(|data: &[u8]| {
    let nchunk = data.first().map(|b| u32::from(*b)).unwrap_or(1);
    let body = data.get(1..).unwrap_or(&[]);
    if let Ok((le, _)) = LogEntryPhy::decode(body, nchunk) {
        assert_eq!(&le.to_bytes()[..], &body[..256]);
    }
});
