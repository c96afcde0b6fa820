//! Arbitrary bytes never panic the metaset sector decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_format::metaset::{decode_sector, encode_sector};
use pfs_format::MetaType;

fuzz_target!(|data: &[u8]| {
    let (Some(&t), Some(&s)) = (data.first(), data.get(1)) else { return };
    let mtype = MetaType::ALL[usize::from(t % 3)];
    let body = &data[2..];
    if let Ok(objs) = decode_sector(body, mtype, 0, u32::from(s)) {
        assert_eq!(&encode_sector(&objs)[..], &body[..4096]);
    }
});
