//! The leader record (`pfs_leader_record_t`): the first sector of
//! `.pfs-paxos`, at device offset 4 MiB on every device mkfs made. It holds
//! the host counts and the journal's committed range `(tail, head]`.

use crate::endian::{U32Le, U64Le};
use crate::error::{corrupt, CorruptKind, Expected, Location, Result};
use crate::layout::{LOG_ENTRY_SIZE, MAX_HOSTS, MIN_LOG_SIZE, SECTOR_SIZE};
use crate::record::{checksum_field, pin_offsets, record_bytes};
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// `PFS_LEADER_MAGIC`.
pub const LEADER_MAGIC: u32 = 0xbaba_baba;
/// `PFS_LEADER_CLEAR`: magic of a leader record that was cleared.
pub const LEADER_CLEAR: u32 = 0x1128_2016;
/// The version this build writes (`PRIMARY | SECONDARY`).
pub const LEADER_VERSION: u32 = 0x0001_0002;
/// The part of the version a reader must match (`PFS_LEADER_VERSION_PRIMARY`).
pub const LEADER_VERSION_PRIMARY: u32 = 0x0001_0000;
/// Bytes covered by the leader checksum (`offsetof(checksum)`).
pub const LEADER_CHECKSUM_LEN: usize = 256;
/// Size of the record with its trailing C padding.
pub const LEADER_SIZE: usize = 264;

/// The leader record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct LeaderRecord {
    /// [`LEADER_MAGIC`].
    pub magic: U32Le,
    /// [`LEADER_VERSION`]; the high half must be `0x0001`.
    pub version: U32Le,
    /// Unused; 0.
    pub flags: U32Le,
    /// Always 4096.
    pub sector_size: U32Le,
    /// Hosts allowed to mount (`mkfs -u`, default 30); host ids are
    /// `1..=num_hosts`.
    pub num_hosts: U64Le,
    /// Always 254.
    pub max_hosts: U64Le,
    /// Unused by the reference; 0.
    pub unused: [u8; 176],
    /// Transactions up to this id are in the metasets.
    pub tail_txid: U64Le,
    /// Last committed transaction.
    pub head_txid: U64Le,
    /// Journal offset where the oldest uncheckpointed entry starts.
    pub tail_offset: U64Le,
    /// Journal offset where the next entry will be written.
    pub head_offset: U64Le,
    /// Journal size in bytes (`mkfs -l`).
    pub log_size: U64Le,
    /// Last log sequence number written.
    pub head_lsn: U64Le,
    /// Checksum of the first 256 bytes.
    pub checksum: U32Le,
    /// Hidden C tail padding; 0.
    pub _pad: [u8; 4],
}

const _: () = assert!(size_of::<LeaderRecord>() == LEADER_SIZE);
pin_offsets!(LeaderRecord;
    version: 4, flags: 8, sector_size: 12, num_hosts: 16, max_hosts: 24, unused: 32,
    tail_txid: 208, head_txid: 216, tail_offset: 224, head_offset: 232, log_size: 240,
    head_lsn: 248, checksum: LEADER_CHECKSUM_LEN
);
record_bytes!(LeaderRecord, LEADER_SIZE, "leader record");
checksum_field!(LeaderRecord, checksum, covering LEADER_CHECKSUM_LEN);

impl LeaderRecord {
    /// The record mkfs writes: empty journal of `log_size` bytes, sealed.
    pub fn new(num_hosts: u64, log_size: u64) -> LeaderRecord {
        let mut lr = LeaderRecord::zeroed();
        lr.magic.set(LEADER_MAGIC);
        lr.version.set(LEADER_VERSION);
        lr.sector_size.set(SECTOR_SIZE as u32);
        lr.num_hosts.set(num_hosts);
        lr.max_hosts.set(MAX_HOSTS);
        lr.log_size.set(log_size);
        lr.seal();
        lr
    }

    /// Reads and validates a record (see [`Self::validate`]).
    ///
    /// # Example
    ///
    /// The record of a new filesystem, through its bytes:
    ///
    /// ```
    /// use pfs_format::{CorruptKind, LeaderRecord};
    ///
    /// let lr = LeaderRecord::new(30, 1 << 30);
    /// let bytes = lr.to_bytes();
    /// let back = LeaderRecord::decode(&bytes)?;
    /// assert_eq!(back.num_hosts.get(), 30);
    /// assert_eq!((back.head_txid.get(), back.tail_txid.get()), (0, 0));
    ///
    /// let mut bad = bytes;
    /// bad[0] ^= 0xff;
    /// assert_eq!(LeaderRecord::decode(&bad).unwrap_err().corrupt_kind(), Some(CorruptKind::LeaderMagic));
    /// # Ok::<(), pfs_format::FormatError>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<LeaderRecord> {
        let lr = LeaderRecord::from_bytes(bytes)?;
        lr.validate()?;
        Ok(lr)
    }

    /// Checks magic, version, sector size, host counts, journal geometry and
    /// checksum.
    pub fn validate(&self) -> Result<()> {
        let at = || Location::structure("leader record");
        let magic = self.magic.get();
        if magic != LEADER_MAGIC {
            return Err(corrupt(
                CorruptKind::LeaderMagic,
                at(),
                Expected::Hex(u64::from(LEADER_MAGIC)),
                u64::from(magic),
            ));
        }
        let version = self.version.get();
        if version & 0xffff_0000 != LEADER_VERSION_PRIMARY {
            return Err(corrupt(
                CorruptKind::LeaderVersion,
                at(),
                Expected::Hex(u64::from(LEADER_VERSION_PRIMARY)),
                u64::from(version),
            ));
        }
        if u64::from(self.sector_size.get()) != SECTOR_SIZE {
            return Err(corrupt(
                CorruptKind::LeaderSectorSize,
                at(),
                Expected::Value(SECTOR_SIZE),
                u64::from(self.sector_size.get()),
            ));
        }
        // max_hosts within 1..=MAX_HOSTS, then num_hosts within 1..=max_hosts.
        let max_hosts = self.max_hosts.get();
        for (hosts, most) in [(max_hosts, MAX_HOSTS), (self.num_hosts.get(), max_hosts)] {
            if hosts == 0 || hosts > most {
                return Err(corrupt(
                    CorruptKind::LeaderHosts,
                    at(),
                    Expected::Within(1, most),
                    hosts,
                ));
            }
        }
        let log_size = self.log_size.get();
        if log_size < MIN_LOG_SIZE || log_size % SECTOR_SIZE != 0 || log_size > (1 << 40) {
            return Err(corrupt(
                CorruptKind::LeaderLogSize,
                at(),
                Expected::Desc("a whole number of sectors, at least 32 MiB"),
                log_size,
            ));
        }
        for off in [self.tail_offset.get(), self.head_offset.get()] {
            if off >= log_size || off % LOG_ENTRY_SIZE as u64 != 0 {
                return Err(corrupt(
                    CorruptKind::LeaderJournalRange,
                    at(),
                    Expected::Desc("a 256-byte aligned offset inside the journal"),
                    off,
                ));
            }
        }
        if self.tail_txid.get() > self.head_txid.get() {
            return Err(corrupt(
                CorruptKind::LeaderJournalRange,
                at(),
                Expected::Desc("tail_txid <= head_txid"),
                self.tail_txid.get(),
            ));
        }
        if self.checksum.get() != self.compute_checksum() {
            return Err(self.checksum_mismatch(CorruptKind::LeaderChecksum, at()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_record_validates_and_bad_fields_do_not() {
        let lr = LeaderRecord::new(30, 1 << 30);
        LeaderRecord::decode(&lr.to_bytes()).unwrap();
        type Case = (fn(&mut LeaderRecord), CorruptKind);
        let cases: Vec<Case> = vec![
            (|l| l.magic.set(LEADER_CLEAR), CorruptKind::LeaderMagic),
            (|l| l.version.set(0x0002_0002), CorruptKind::LeaderVersion),
            (|l| l.sector_size.set(512), CorruptKind::LeaderSectorSize),
            (|l| l.num_hosts.set(0), CorruptKind::LeaderHosts),
            (|l| l.num_hosts.set(255), CorruptKind::LeaderHosts),
            (|l| l.log_size.set(4096), CorruptKind::LeaderLogSize),
            (
                |l| l.head_offset.set(1 << 30),
                CorruptKind::LeaderJournalRange,
            ),
            (|l| l.tail_offset.set(100), CorruptKind::LeaderJournalRange),
            (|l| l.tail_txid.set(3), CorruptKind::LeaderJournalRange),
        ];
        for (mutate, kind) in cases {
            let mut l = lr;
            mutate(&mut l);
            l.seal();
            assert_eq!(
                LeaderRecord::decode(&l.to_bytes())
                    .unwrap_err()
                    .corrupt_kind(),
                Some(kind)
            );
        }
        let mut bytes = lr.to_bytes();
        bytes[100] = 1;
        assert_eq!(
            LeaderRecord::decode(&bytes).unwrap_err().corrupt_kind(),
            Some(CorruptKind::LeaderChecksum)
        );
        // The padding after the checksum is not covered.
        let mut bytes = lr.to_bytes();
        bytes[262] = 1;
        LeaderRecord::decode(&bytes).unwrap();
    }
}
