//! Flushes that are shared. A device flush makes durable every write that
//! completed before it was issued, so a caller that asks for one while
//! another is under way waits for that one, and needs none of its own if
//! it started after the caller asked. Many concurrent `fsync`s then cost
//! one or two device flushes instead of one each.
//!
//! The same rule works among the processes of a shared host (every
//! process's flush of the device covers the writes all of them completed
//! before it): [`crate::share::Share::flush`] keeps the host's two counters
//! in the shared file and orders its flushes with a byte-range lock of the
//! host's. Hosts never wait for each other's flushes: a paused host (a
//! stopped primary on the machine of its replica) must not hold up the
//! host that takes over.

use crate::error::Result;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who asked for a flush, and which request the last completed flush
/// covered.
#[derive(Debug, Default)]
pub(crate) struct FlushGate {
    /// Held while a flush is issued and until its result is counted.
    turn: Mutex<()>,
    /// Requests so far.
    requested: AtomicU64,
    /// The newest request a completed flush covered (it was made before
    /// that flush started).
    covered: AtomicU64,
}

impl FlushGate {
    /// Makes durable every write the caller completed before this call,
    /// by `flush` or by a flush that someone else started after this call.
    pub(crate) fn flush(&self, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let me = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.turn.lock();
        covered_or_flush(me, &self.requested, &self.covered, flush)
    }
}

/// Request `me`'s turn, once the caller holds the flush order: done if a
/// flush that started after it completed, otherwise `flush` run now for
/// every request made so far.
pub(crate) fn covered_or_flush(
    me: u64,
    requested: &AtomicU64,
    covered: &AtomicU64,
    flush: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if covered.load(Ordering::SeqCst) >= me {
        return Ok(());
    }
    let start = requested.load(Ordering::SeqCst);
    flush()?;
    covered.fetch_max(start, Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn concurrent_requests_share_flushes_and_later_ones_get_their_own() {
        let gate = Arc::new(FlushGate::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gate, flushes) = (Arc::clone(&gate), Arc::clone(&flushes));
                std::thread::spawn(move || {
                    gate.flush(|| {
                        std::thread::sleep(Duration::from_millis(30));
                        flushes.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..16).contains(&n), "{n} flushes for 16 requests");
        // A request after every flush completed is covered by none of them.
        gate.flush(|| {
            flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), n + 1);
        // A failed flush covers nobody: the next request flushes again.
        assert!(gate
            .flush(|| Err(crate::error::CoreError::ReadOnly))
            .is_err());
        gate.flush(|| {
            flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), n + 2);
    }
}
