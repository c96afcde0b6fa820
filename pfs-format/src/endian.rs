//! Little-endian integer fields with alignment 1.
//!
//! PFS is written by x86 hosts and every multi-byte field on disk is little
//! endian. Holding fields as byte arrays keeps every structure free of
//! compiler padding (so `bytemuck::Pod` can be derived) and makes the code
//! correct on any host.

use bytemuck::{Pod, Zeroable};
use core::fmt;

macro_rules! le_int {
    ($(#[$doc:meta])* $name:ident, $int:ty, $n:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
        #[repr(transparent)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Wraps a native value.
            pub const fn new(value: $int) -> Self {
                Self(value.to_le_bytes())
            }

            /// The native value.
            pub const fn get(self) -> $int {
                <$int>::from_le_bytes(self.0)
            }

            /// Stores a native value.
            pub fn set(&mut self, value: $int) {
                self.0 = value.to_le_bytes();
            }
        }

        impl From<$int> for $name {
            fn from(value: $int) -> Self {
                Self::new(value)
            }
        }

        impl From<$name> for $int {
            fn from(value: $name) -> Self {
                value.get()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.get(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.get(), f)
            }
        }
    };
}

le_int!(
    /// A little-endian `u16`.
    U16Le, u16, 2
);
le_int!(
    /// A little-endian `u32`.
    U32Le, u32, 4
);
le_int!(
    /// A little-endian `i32`.
    I32Le, i32, 4
);
le_int!(
    /// A little-endian `u64`.
    U64Le, u64, 8
);
le_int!(
    /// A little-endian `i64`.
    I64Le, i64, 8
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_little_endian() {
        assert_eq!(U32Le::new(0x0102_0304).0, [4, 3, 2, 1]);
        assert_eq!(U64Le::new(1).0, [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(I64Le::new(-1).0, [0xff; 8]);
        assert_eq!(I32Le([0xff, 0xff, 0xff, 0x7f]).get(), i32::MAX);
        let mut v = U16Le::default();
        v.set(0xbeef);
        assert_eq!(v.0, [0xef, 0xbe]);
        assert_eq!(u16::from(v), 0xbeef);
    }
}
