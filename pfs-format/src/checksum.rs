//! The PFS checksum: the one place it is computed.
//!
//! PFS uses the CRC-32C (Castagnoli) polynomial in its reflected, table-driven
//! form, but starts from `0xFFFF_FFFE` (`~1` in the C source) and applies **no**
//! final inversion. Structures are checksummed with their own checksum field
//! read as zero.
//!
//! The `crc32c` crate implements the standard CRC-32C, which inverts on entry
//! and on exit: `crc32c_append(c, d) = !raw(!c, d)`. So the raw update from
//! state `s` is `!crc32c_append(!s, d)`, and chaining raw updates is exact.

/// Start value of every PFS checksum.
pub const CRC_SEED: u32 = 0xFFFF_FFFE;

/// Continues a raw (non-inverted) CRC-32C from `state` over `bytes`.
fn raw_update(state: u32, bytes: &[u8]) -> u32 {
    !crc32c::crc32c_append(!state, bytes)
}

/// PFS checksum of `bytes` (seed `0xFFFF_FFFE`, no final inversion).
///
/// # Example
///
/// The check value of the PFS variant (seed `0xFFFF_FFFE`, no final inversion), and a checksum field read as zero:
///
/// ```
/// use pfs_format::checksum::CRC_SEED;
/// use pfs_format::{pfs_crc32c, pfs_crc32c_zeroed};
///
/// assert_eq!(pfs_crc32c(b"123456789"), 0xe8c7_bb34);
/// assert_eq!(pfs_crc32c(b""), CRC_SEED);
///
/// let mut record = *b"head\xaa\xbb\xcc\xddtail";
/// let sum = pfs_crc32c_zeroed(&record, 4).expect("the field is inside");
/// record[4..8].fill(0);
/// assert_eq!(sum, pfs_crc32c(&record));
/// assert_eq!(pfs_crc32c_zeroed(&record, 10), None);
/// ```
pub fn pfs_crc32c(bytes: &[u8]) -> u32 {
    raw_update(CRC_SEED, bytes)
}

/// PFS checksum of `bytes` as if the 4-byte field at `field_offset` were zero.
///
/// Returns `None` when the field does not lie inside `bytes`; callers pass
/// compile-time offsets of their own structures, so this never happens for
/// well-formed calls.
pub fn pfs_crc32c_zeroed(bytes: &[u8], field_offset: usize) -> Option<u32> {
    let end = field_offset.checked_add(4)?;
    let head = bytes.get(..field_offset)?;
    let tail = bytes.get(end..)?;
    let state = raw_update(CRC_SEED, head);
    let state = raw_update(state, &[0u8; 4]);
    Some(raw_update(state, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same algorithm written out bit by bit, as the reference's table
    /// encodes it (reflected polynomial 0x82F63B78).
    fn bitwise(mut crc: u32, bytes: &[u8]) -> u32 {
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn known_answer_check_string() {
        // The classic check input; value established from the reference's
        // algorithm (seed ~1, no final xor).
        assert_eq!(pfs_crc32c(b"123456789"), 0xe8c7_bb34);
        assert_eq!(bitwise(CRC_SEED, b"123456789"), 0xe8c7_bb34);
    }

    #[test]
    fn empty_input_is_the_seed() {
        assert_eq!(pfs_crc32c(&[]), CRC_SEED);
    }

    #[test]
    fn zeroed_field_matches_explicit_copy() {
        let mut buf: Vec<u8> = (0..=255u8).collect();
        let got = pfs_crc32c_zeroed(&buf, 100).unwrap();
        buf[100..104].fill(0);
        assert_eq!(got, pfs_crc32c(&buf));
        assert_eq!(pfs_crc32c_zeroed(&buf, 253), None);
    }

    #[test]
    fn known_answer_from_reference_image() {
        // Chunk 0 header of the golden `fresh-1chunk` image (reference mkfs,
        // one 10 GiB chunk): dumpfs printed ck_checksum 2527540582.
        let mut hdr = [0u8; 120];
        let put =
            |b: &mut [u8; 120], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(&mut hdr, 0, &0x50_4653_434au64.to_le_bytes());
        put(&mut hdr, 8, &(10u64 << 30).to_le_bytes());
        put(&mut hdr, 16, &(4u64 << 20).to_le_bytes());
        put(&mut hdr, 24, &4096u64.to_le_bytes());
        put(&mut hdr, 32, &0u64.to_le_bytes());
        put(&mut hdr, 40, &1u32.to_le_bytes());
        for (i, (bda, nsect)) in [(0x1000u64, 80u32), (0x51000, 64), (0x91000, 64)]
            .into_iter()
            .enumerate()
        {
            let off = 48 + 16 * (i + 1);
            put(&mut hdr, off, &bda.to_le_bytes());
            put(&mut hdr, off + 8, &nsect.to_le_bytes());
            put(&mut hdr, off + 12, &128u32.to_le_bytes());
        }
        assert_eq!(pfs_crc32c_zeroed(&hdr, 112), Some(2_527_540_582));
        assert_eq!(bitwise(CRC_SEED, &hdr), 2_527_540_582);
    }

    proptest::proptest! {
        #[test]
        fn matches_bitwise(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            proptest::prop_assert_eq!(pfs_crc32c(&bytes), bitwise(CRC_SEED, &bytes));
        }
    }
}
