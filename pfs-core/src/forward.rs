//! What a device that wraps another passes straight through: the `Device`
//! methods that describe the device rather than move bytes.

/// Inside an `impl Device for Wrapper`: `len`, `sector_size`, `name` and
/// `write_depth` taken from the wrapped device in field `inner`; with a sector size
/// given (`forward_geometry!(live, 512)`), that size instead of the
/// wrapped device's.
macro_rules! forward_geometry {
    ($inner:ident) => {
        $crate::forward::forward_geometry!(@with $inner, |d: &Self| d.$inner.sector_size());
    };
    ($inner:ident, $sector:expr) => {
        $crate::forward::forward_geometry!(@with $inner, |_: &Self| $sector);
    };
    (@with $inner:ident, $sector:expr) => {
        fn len(&self) -> u64 {
            self.$inner.len()
        }

        fn sector_size(&self) -> u32 {
            let sector: fn(&Self) -> u32 = $sector;
            sector(self)
        }

        fn name(&self) -> &str {
            self.$inner.name()
        }

        fn write_depth(&self) -> usize {
            self.$inner.write_depth()
        }
    };
}
pub(crate) use forward_geometry;
