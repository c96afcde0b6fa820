//! The journal's last, partly written sector, kept in memory by the
//! mount that wrote it. Transactions are packed one after another in the
//! journal, so most start and end inside a sector; written as they are,
//! each would make the device read the sector it starts in and the one it
//! ends in first (direct IO writes whole sectors). With the sector the
//! last append ended in at hand, an append writes whole sectors: what it
//! starts with from memory, zeros after its end (past the head, which no
//! reader of the journal looks at). The sector is used only while nobody
//! else appended since (the journal head is still the one after this
//! mount's last append); otherwise it is read from the device as before.
//!
//! A process of a shared host catches up with what the host's other
//! processes appended by reading their entries, under the host's
//! transaction lock, up to the head it is about to append at: that read
//! keeps the head's sector as well ([`CatchLog`]), so the append that
//! follows need not read it again.

use super::Mount;
use crate::device::AlignedBuf;
use crate::error::Result;
use crate::meta::DeviceLog;
use crate::share::Share;
use parking_lot::Mutex;
use pfs_format::LeaderRecord;
use pfs_journal::LogStore;
use std::cell::RefCell;

/// Inside an `impl LogStore` of a wrapper whose field `log` is the
/// [`DeviceLog`] it wraps: the leader record and flushes go straight to it.
macro_rules! forward_leader_and_flush {
    () => {
        fn read_leader(&self) -> Result<LeaderRecord> {
            self.log.read_leader()
        }

        fn write_leader(&self, lr: &LeaderRecord) -> Result<()> {
            self.log.write_leader(lr)
        }

        fn flush(&self) -> Result<()> {
            self.log.flush()
        }
    };
}

/// The sector the journal's last append by this mount ended in.
#[derive(Debug, Default)]
pub(crate) struct TailSector {
    /// Journal offset where that append ended (0: nothing kept).
    end: u64,
    /// The head txid after that append (0 while it is being written).
    txid: u64,
    /// The sector's bytes up to `end`, then zeros.
    bytes: Vec<u8>,
}

/// The journal as one append of a transaction writes it: [`DeviceLog`],
/// whose writes start and end on sector boundaries using the kept
/// [`TailSector`].
pub(super) struct TailLog<'a> {
    /// Where the journal is.
    pub(super) log: DeviceLog<'a>,
    /// The kept sector.
    pub(super) tail: &'a Mutex<TailSector>,
    /// The journal's head txid before this append.
    pub(super) head_txid: u64,
    /// A shared mount's share and host id: what is written goes into the
    /// share's journal window as well.
    pub(super) window: Option<(&'a Share, u64)>,
    /// When set, the device writes are not made here but kept for the
    /// caller to make once the host's transaction lock is let go (see
    /// `Mount::write_in_flight`).
    pub(super) defer: Option<&'a RefCell<Vec<Pending>>>,
}

/// A device write of an append, made after the transaction lock is let go.
pub(super) struct Pending {
    /// Where in the journal.
    pub(super) offset: u64,
    /// Where on the device.
    pub(super) bda: u64,
    /// The whole sectors to write.
    pub(super) buf: AlignedBuf,
}

impl LogStore for TailLog<'_> {
    type Error = crate::error::CoreError;

    fn read_log(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.log.read_log(offset, buf)
    }

    fn write_log(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        let ss = u64::from(self.log.dev.sector_size());
        let start = offset - offset % ss;
        let end = offset + bytes.len() as u64;
        let whole = end.next_multiple_of(ss);
        let head = (offset - start) as usize;
        let mut buf = AlignedBuf::new((whole - start) as usize);
        let mut tail = self.tail.lock();
        let kept = tail.end == offset && tail.txid == self.head_txid && tail.txid != 0;
        let kept_bytes = std::mem::take(&mut *tail).bytes;
        if head > 0 {
            if kept && kept_bytes.len() >= head {
                buf.as_mut_slice()[..head].copy_from_slice(&kept_bytes[..head]);
            } else {
                self.log
                    .read_log(start, &mut buf.as_mut_slice()[..ss as usize])?;
            }
        }
        buf.as_mut_slice()[head..head + bytes.len()].copy_from_slice(bytes);
        match self.defer {
            Some(pending) => self.log.each_piece(start, buf.len(), |bda, r| {
                let mut piece = AlignedBuf::new(r.len());
                piece
                    .as_mut_slice()
                    .copy_from_slice(&buf.as_slice()[r.clone()]);
                pending.borrow_mut().push(Pending {
                    offset: start + r.start as u64,
                    bda,
                    buf: piece,
                });
                Ok(())
            })?,
            None => self.log.write_log(start, buf.as_slice())?,
        }
        if let Some((share, hostid)) = self.window {
            share.window_put(hostid, start, buf.as_slice());
        }
        let last = buf.as_slice().len() - ss as usize;
        *tail = TailSector {
            end,
            txid: 0,
            bytes: buf.as_slice()[last..].to_vec(),
        };
        Ok(())
    }

    forward_leader_and_flush!();
}

/// The journal as a catch-up reads it: [`DeviceLog`], keeping the sector
/// the head is in when a read ends at the head (read from the sector's
/// start, which costs the device nothing more: direct IO reads whole
/// sectors anyway).
pub(super) struct CatchLog<'a> {
    /// Where the journal is.
    pub(super) log: DeviceLog<'a>,
    /// Journal offset of the head caught up to.
    pub(super) head: u64,
    /// The head's sector as read: its bytes up to the head, then zeros.
    pub(super) caught: RefCell<Option<Vec<u8>>>,
    /// Catching up with what the host's processes appended under its
    /// running lease: the share and host id whose journal window may hold
    /// the bytes.
    pub(super) window: Option<(&'a Share, u64)>,
    /// Run before any read of the device: waits until the host's appends
    /// the read may reach are written (see `Mount::await_flights`).
    pub(super) before_device: Option<&'a dyn Fn() -> Result<()>>,
}

impl CatchLog<'_> {
    /// The kept sector of head `txid`, if a read reached it.
    pub(super) fn tail(self, txid: u64) -> Option<TailSector> {
        let bytes = self.caught.into_inner()?;
        Some(TailSector {
            end: self.head,
            txid,
            bytes,
        })
    }
}

impl CatchLog<'_> {
    /// The journal's bytes at `offset`: from the share's journal window
    /// when it holds them, from the device otherwise.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.window {
            Some((share, hostid)) if share.window_get(hostid, offset, buf) => Ok(()),
            _ => {
                if let Some(wait) = self.before_device {
                    wait()?;
                }
                self.log.read_log(offset, buf)
            }
        }
    }
}

impl LogStore for CatchLog<'_> {
    type Error = crate::error::CoreError;

    fn read_log(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let ss = u64::from(self.log.dev.sector_size());
        let end = offset + buf.len() as u64;
        let in_sector = (self.head % ss) as usize;
        if end != self.head || in_sector == 0 {
            return self.read(offset, buf);
        }
        let start = self.head - in_sector as u64;
        let mut sector = vec![0u8; ss as usize];
        if start >= offset {
            self.read(offset, buf)?;
            let from = (start - offset) as usize;
            sector[..in_sector].copy_from_slice(&buf[from..]);
        } else {
            // The read starts inside the head's sector: read the sector
            // from its start (journal offsets start at 0, sectors align).
            let mut whole = vec![0u8; (end - start) as usize];
            self.read(start, &mut whole)?;
            buf.copy_from_slice(&whole[(offset - start) as usize..]);
            sector[..in_sector].copy_from_slice(&whole);
        }
        *self.caught.borrow_mut() = Some(sector);
        Ok(())
    }

    fn write_log(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.log.write_log(offset, bytes)
    }

    forward_leader_and_flush!();
}

impl Mount {
    /// After an append that ended with journal head `txid`: the kept
    /// sector is that head's. After a failed one (`None`): nothing is
    /// kept.
    pub(super) fn keep_tail(&self, txid: Option<u64>) {
        let mut t = self.journal_tail.lock();
        match txid {
            Some(txid) if t.end != 0 => t.txid = txid,
            _ => *t = TailSector::default(),
        }
    }
}
