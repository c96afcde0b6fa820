//! What the on-disk records share, written once: compile-time pins of
//! field offsets, reading and writing a record's bytes, and sealing and
//! checking the checksum field a record carries.
//!
//! These are macros rather than a trait so that each record keeps its
//! methods inherent (`ChunkPhy::seal`, `LeaderRecord::from_bytes`) and
//! callers need no trait in scope.

/// Pins the offset of each named field of a `repr(C)` structure at compile
/// time: `pin_offsets!(T; a: 0, b: 8)` is one
/// `const _: () = assert!(offset_of!(T, a) == 0);` per field.
macro_rules! pin_offsets {
    ($t:ty; $($field:ident: $off:expr),+ $(,)?) => {
        $(const _: () = assert!(core::mem::offset_of!($t, $field) == $off);)+
    };
}
pub(crate) use pin_offsets;

/// `from_bytes` (a fallible read of the record's `size` bytes, `what`
/// naming it in the error) and `to_bytes` for the `Pod` record `T`.
macro_rules! record_bytes {
    ($t:ident, $size:expr, $what:literal) => {
        impl $t {
            #[doc = concat!("Reads the ", $what, " bytes without checking them.")]
            pub fn from_bytes(bytes: &[u8]) -> $crate::error::Result<$t> {
                $crate::error::read_pod(bytes, $what)
            }

            /// The on-disk bytes.
            pub fn to_bytes(&self) -> [u8; $size] {
                bytemuck::must_cast(*self)
            }
        }
    };
}
pub(crate) use record_bytes;

/// `compute_checksum`, `seal` and `checksum_mismatch` for the record `T`
/// whose checksum is the `U32Le` field `field`: by default the CRC-32C of
/// the whole record with that field zeroed; with `covering N`, the CRC-32C
/// of its first `N` bytes.
macro_rules! checksum_field {
    ($t:ident, $field:ident) => {
        $crate::record::checksum_field!(@impl $t, $field, |r: &$t| {
            $crate::checksum::pfs_crc32c_zeroed(
                bytemuck::bytes_of(r),
                core::mem::offset_of!($t, $field),
            )
            .unwrap_or(0)
        });
    };
    ($t:ident, $field:ident, covering $len:expr) => {
        $crate::record::checksum_field!(@impl $t, $field, |r: &$t| {
            let bytes = bytemuck::bytes_of(r);
            $crate::checksum::pfs_crc32c(bytes.get(..$len).unwrap_or(bytes))
        });
    };
    (@impl $t:ident, $field:ident, $compute:expr) => {
        impl $t {
            /// The checksum these bytes should carry.
            pub fn compute_checksum(&self) -> u32 {
                let compute: fn(&$t) -> u32 = $compute;
                compute(self)
            }

            /// Stores the checksum of the current contents.
            pub fn seal(&mut self) {
                let c = self.compute_checksum();
                self.$field.set(c);
            }

            /// The error of kind `kind` at `at` for a stored checksum that is
            /// not the computed one.
            fn checksum_mismatch(
                &self,
                kind: $crate::error::CorruptKind,
                at: $crate::error::Location,
            ) -> $crate::error::FormatError {
                $crate::error::corrupt(
                    kind,
                    at,
                    $crate::error::Expected::Hex(u64::from(self.compute_checksum())),
                    u64::from(self.$field.get()),
                )
            }
        }
    };
}
pub(crate) use checksum_field;

#[cfg(test)]
mod tests {
    use crate::chunk::CHUNK_PHY_SIZE;
    use crate::layout::{LOG_ENTRY_SIZE, OBJ_SIZE};
    use crate::leader::LEADER_SIZE;
    use crate::{ChunkPhy, LeaderRecord, LogEntryPhy, MetaObjPhy};
    use proptest::collection::vec;
    use proptest::num::u8::ANY;
    use proptest::prop_assert_eq;

    proptest::proptest! {
        /// Any bytes read as each record write back unchanged (padding
        /// included), and validating what was read never panics.
        #[test]
        fn records_round_trip(bytes in vec(ANY, LEADER_SIZE)) {
            let ck = ChunkPhy::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&ck.to_bytes()[..], &bytes[..CHUNK_PHY_SIZE]);
            let _ = ck.validate(0);
            let mo = MetaObjPhy::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&mo.to_bytes()[..], &bytes[..OBJ_SIZE]);
            let _ = mo.validate_any(4);
            let _ = mo.validate_links(4);
            let le = LogEntryPhy::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&le.to_bytes()[..], &bytes[..LOG_ENTRY_SIZE]);
            let _ = le.validate(3);
            let lr = LeaderRecord::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&lr.to_bytes()[..], &bytes[..]);
            let _ = lr.validate();
        }

        /// Decoding bytes of any length never panics.
        #[test]
        fn decoders_never_panic(bytes in vec(ANY, 0..300), n in 0u32..5) {
            let _ = ChunkPhy::decode(&bytes, n.into());
            let _ = MetaObjPhy::from_bytes(&bytes);
            let _ = LogEntryPhy::decode(&bytes, n);
            let _ = LeaderRecord::decode(&bytes);
        }
    }
}
