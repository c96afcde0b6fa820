//! Reads that are shared as flushes are ([`crate::flush`]): a caller that
//! needs a value read *after it asked* (the journal head on the device, to
//! see every commit that returned before, or to be sure nothing committed
//! while it read data) can take the value of a read that someone else
//! started after that moment. A caller that asks while a read is under way
//! waits for it, and reads again only if it started before the request;
//! the callers that arrived meanwhile then share that next read. Many
//! threads checking the head cost one or two reads of it instead of one
//! each.

use crate::error::Result;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The newest value read, and the newest request whose read it is.
#[derive(Debug)]
pub(crate) struct FreshRead<T> {
    /// Requests so far.
    requested: AtomicU64,
    /// Held while a read is under way; the last completed read: the
    /// newest request made before it started, and its value.
    turn: Mutex<Option<(u64, T)>>,
}

impl<T> Default for FreshRead<T> {
    fn default() -> Self {
        FreshRead {
            requested: AtomicU64::new(0),
            turn: Mutex::new(None),
        }
    }
}

impl<T: Clone> FreshRead<T> {
    /// A value read by a call of `read` that started after this call
    /// began: this caller's, or another caller's, which then serves every
    /// request made before it started. A failed read serves nobody else;
    /// the next caller reads for itself.
    pub(crate) fn read(&self, read: impl FnOnce() -> Result<T>) -> Result<T> {
        let me = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut turn = self.turn.lock();
        if let Some((covered, value)) = turn.as_ref() {
            if *covered >= me {
                return Ok(value.clone());
            }
        }
        // Every request counted now was made before this read starts.
        let start = self.requested.load(Ordering::SeqCst);
        let value = read()?;
        *turn = Some((start, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn every_caller_gets_a_read_started_after_it_asked_and_reads_are_shared() {
        // One clock for requests and reads: a read's value is the tick at
        // which it started.
        let clock = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(FreshRead::<u64>::default());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (clock, reads, shared) =
                    (Arc::clone(&clock), Arc::clone(&reads), Arc::clone(&shared));
                std::thread::spawn(move || {
                    for i in 0..20 {
                        std::thread::sleep(Duration::from_micros((t * 37 + i * 11) % 500));
                        let asked = clock.fetch_add(1, Ordering::SeqCst);
                        let started = shared
                            .read(|| {
                                let now = clock.fetch_add(1, Ordering::SeqCst);
                                reads.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(2));
                                Ok(now)
                            })
                            .unwrap();
                        assert!(
                            started > asked,
                            "a read started at {started} served a request made at {asked}"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = reads.load(Ordering::SeqCst);
        assert!(
            n < 16 * 20,
            "{n} reads for {} requests: none shared",
            16 * 20
        );
    }

    #[test]
    fn a_failed_read_serves_nobody_and_a_later_request_reads_again() {
        let shared = FreshRead::<u64>::default();
        assert_eq!(shared.read(|| Ok(1)).unwrap(), 1);
        let failed = shared.read(|| {
            Err(crate::error::CoreError::Busy {
                what: "test".into(),
            })
        });
        assert!(failed.is_err());
        // The value of the first read was read before this request: read.
        assert_eq!(shared.read(|| Ok(3)).unwrap(), 3);
    }
}
