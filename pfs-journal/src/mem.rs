//! An in-memory journal, for tests of this crate and of its users.

use crate::error::JournalError;
use crate::store::LogStore;
use pfs_format::LeaderRecord;
use std::cell::{Cell, RefCell};

/// A journal and leader record in memory. Writes can be made to fail from
/// the n-th on, and a "crash" keeps only what was flushed.
#[derive(Debug)]
pub struct MemLog {
    log: RefCell<Vec<u8>>,
    leader: RefCell<LeaderRecord>,
    durable: RefCell<(Vec<u8>, LeaderRecord)>,
    writes: Cell<u64>,
    fail_from: Cell<Option<u64>>,
}

impl MemLog {
    /// An empty journal of `log_size` bytes, as mkfs leaves it.
    pub fn new(log_size: u64) -> MemLog {
        let lr = LeaderRecord::new(30, log_size);
        MemLog::from_bytes(vec![0; log_size as usize], lr)
    }

    /// A journal holding `bytes` under leader record `lr`.
    pub fn from_bytes(bytes: Vec<u8>, lr: LeaderRecord) -> MemLog {
        MemLog {
            durable: RefCell::new((bytes.clone(), lr)),
            log: RefCell::new(bytes),
            leader: RefCell::new(lr),
            writes: Cell::new(0),
            fail_from: Cell::new(None),
        }
    }

    /// Flips the bits of the byte at `offset`.
    pub fn damage(&self, offset: usize) {
        self.log.borrow_mut()[offset] ^= 0xff;
    }

    /// Makes the `n`-th write from now, and every later one, fail.
    pub fn fail_writes_after(&self, n: u64) {
        self.fail_from.set(Some(self.writes.get() + n));
    }

    /// What survives a crash now: the bytes and leader as of the last flush.
    pub fn crashed(&self) -> MemLog {
        let (bytes, lr) = self.durable.borrow().clone();
        MemLog::from_bytes(bytes, lr)
    }

    fn count_write(&self, offset: u64) -> Result<(), JournalError> {
        let n = self.writes.get();
        self.writes.set(n + 1);
        match self.fail_from.get() {
            Some(f) if n >= f => Err(JournalError::Io {
                offset,
                source: "injected write failure".into(),
            }),
            _ => Ok(()),
        }
    }
}

/// Bytes `offset..offset + len` of a journal of `size` bytes; a `what`
/// (read or write) reaching past its end is an IO error.
fn within(
    size: usize,
    offset: u64,
    len: usize,
    what: &str,
) -> Result<std::ops::Range<usize>, JournalError> {
    usize::try_from(offset)
        .ok()
        .and_then(|s| Some(s..s.checked_add(len)?))
        .filter(|r| r.end <= size)
        .ok_or_else(|| JournalError::Io {
            offset,
            source: format!("{what} past the journal").into(),
        })
}

impl LogStore for MemLog {
    type Error = JournalError;

    fn read_log(&self, offset: u64, buf: &mut [u8]) -> Result<(), JournalError> {
        let log = self.log.borrow();
        buf.copy_from_slice(&log[within(log.len(), offset, buf.len(), "read")?]);
        Ok(())
    }

    fn write_log(&self, offset: u64, bytes: &[u8]) -> Result<(), JournalError> {
        self.count_write(offset)?;
        let mut log = self.log.borrow_mut();
        let at = within(log.len(), offset, bytes.len(), "write")?;
        log[at].copy_from_slice(bytes);
        Ok(())
    }

    fn read_leader(&self) -> Result<LeaderRecord, JournalError> {
        Ok(*self.leader.borrow())
    }

    fn write_leader(&self, lr: &LeaderRecord) -> Result<(), JournalError> {
        self.count_write(u64::MAX)?;
        *self.leader.borrow_mut() = *lr;
        Ok(())
    }

    fn flush(&self) -> Result<(), JournalError> {
        *self.durable.borrow_mut() = (self.log.borrow().clone(), *self.leader.borrow());
        Ok(())
    }
}
