//! Offsets of the committed range in the circular journal.

use pfs_format::layout::LOG_ENTRY_SIZE;
use pfs_format::LeaderRecord;

/// The committed part of the journal: `[tail, head)` in bytes, modulo
/// `log_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRange {
    /// Offset of the first committed entry.
    pub tail: u64,
    /// Offset one past the last committed entry.
    pub head: u64,
    /// Journal size in bytes.
    pub log_size: u64,
}

impl LogRange {
    /// The range a (validated) leader record describes.
    pub fn of_leader(lr: &LeaderRecord) -> LogRange {
        LogRange {
            tail: lr.tail_offset.get(),
            head: lr.head_offset.get(),
            log_size: lr.log_size.get(),
        }
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        if self.head >= self.tail {
            self.head - self.tail
        } else {
            self.head + self.log_size - self.tail
        }
    }

    /// Whether the range holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offsets of each entry slot in the range, in log order.
    pub fn slots(&self) -> impl Iterator<Item = u64> + '_ {
        let n = self.len() / LOG_ENTRY_SIZE as u64;
        (0..n).map(move |i| (self.tail + i * LOG_ENTRY_SIZE as u64) % self.log_size)
    }

    /// The contiguous pieces `(offset, len)` covering the range (two when
    /// it wraps).
    pub fn pieces(&self) -> Vec<(u64, u64)> {
        if self.is_empty() {
            Vec::new()
        } else if self.head > self.tail {
            vec![(self.tail, self.head - self.tail)]
        } else {
            let mut v = vec![(self.tail, self.log_size - self.tail)];
            if self.head > 0 {
                v.push((0, self.head));
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_ranges() {
        let r = LogRange {
            tail: 1024,
            head: 256,
            log_size: 1280,
        };
        assert_eq!(r.len(), 512);
        assert_eq!(r.slots().collect::<Vec<_>>(), vec![1024, 0]);
        assert_eq!(r.pieces(), vec![(1024, 256), (0, 256)]);
        let e = LogRange {
            tail: 512,
            head: 512,
            log_size: 1280,
        };
        assert!(e.is_empty());
        assert!(e.pieces().is_empty());
        let plain = LogRange {
            tail: 0,
            head: 768,
            log_size: 1280,
        };
        assert_eq!(plain.pieces(), vec![(0, 768)]);
    }
}
