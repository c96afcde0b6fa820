//! Arbitrary bytes never panic the meta object decoders or link checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_format::{MetaObjPhy, MetaType, ObjectId};

fuzz_target!(|data: &[u8]| {
    if let Ok(mo) = MetaObjPhy::from_bytes(data) {
        assert_eq!(&mo.to_bytes()[..], &data[..128]);
        let _ = mo.validate_any(3);
        let _ = mo.validate_links(3);
        for t in MetaType::ALL {
            if let Ok(id) = ObjectId::from_number(t, mo.mo_number.get(), 3) {
                let _ = MetaObjPhy::decode(data, id);
            }
        }
    }
});
