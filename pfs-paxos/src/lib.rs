//! The leader record's host side: host ids and where each host's sectors
//! are in `.pfs-paxos`.
//!
//! `.pfs-paxos` is one 4 MiB block. Sector 0 holds the leader record
//! ([`pfs_format::LeaderRecord`]); sector `h` is host `h`'s slot of the
//! single-writer lease ([`lease`]), for host ids `1..=max_hosts`.
//!
//! # Example
//!
//! Which host id a mount gets, and where its slot is:
//!
//! ```
//! use pfs_format::LeaderRecord;
//! use pfs_paxos::{lease, HostId, PaxosError};
//!
//! let leader = LeaderRecord::new(30, 1 << 30); // mkfs -u 30
//! let h = HostId::resolve(2, &leader)?;
//! assert_eq!(h.get(), 2);
//! assert_eq!(h.sector_offset(), 2 * 4096);
//! assert_eq!(lease::slot_offset(2), h.sector_offset());
//! // 0 is the tool's default: the filesystem's host count.
//! assert_eq!(HostId::resolve(0, &leader)?.get(), 30);
//! assert_eq!(
//!     HostId::resolve(31, &leader),
//!     Err(PaxosError::HostIdOutOfRange { hostid: 31, num_hosts: 30 })
//! );
//! # Ok::<(), PaxosError>(())
//! ```

#![forbid(unsafe_code)]

pub mod lease;

pub use lease::{LeaseRecord, Liveness, SlotState, TakeoverNote, Validity, Watch, Writer};

use pfs_format::layout::{MAX_HOSTS, PAXOS_FILE_SIZE, SECTOR_SIZE};
use pfs_format::LeaderRecord;

/// Result alias of this crate.
pub type Result<T, E = PaxosError> = std::result::Result<T, E>;

/// What can go wrong choosing a host identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaxosError {
    /// The host id is above the filesystem's host count.
    #[error("host id {hostid} is out of range: this filesystem allows host ids 1..={num_hosts} (mkfs -u)")]
    HostIdOutOfRange {
        /// The id asked for.
        hostid: u64,
        /// The leader record's `num_hosts`.
        num_hosts: u64,
    },
}

/// A host id in `1..=num_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(u64);

impl HostId {
    /// The host id a mount uses when asked for `requested`: 0 means the
    /// tool's default, which the reference turns into `num_hosts`; any other
    /// value must lie in `1..=num_hosts`.
    pub fn resolve(requested: u64, leader: &LeaderRecord) -> Result<HostId> {
        let num_hosts = leader.num_hosts.get();
        match requested {
            0 => Ok(HostId(num_hosts)),
            h if h <= num_hosts && h <= MAX_HOSTS => Ok(HostId(h)),
            h => Err(PaxosError::HostIdOutOfRange {
                hostid: h,
                num_hosts,
            }),
        }
    }

    /// The numeric id.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Offset inside `.pfs-paxos` of this host's own sector.
    pub fn sector_offset(self) -> u64 {
        self.0 * SECTOR_SIZE
    }
}

const _: () = assert!((MAX_HOSTS + 1) * SECTOR_SIZE <= PAXOS_FILE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_follow_the_reference() {
        let lr = LeaderRecord::new(30, 1 << 30);
        assert_eq!(HostId::resolve(0, &lr).unwrap().get(), 30);
        assert_eq!(HostId::resolve(1, &lr).unwrap().get(), 1);
        assert_eq!(HostId::resolve(30, &lr).unwrap().sector_offset(), 30 * 4096);
        assert_eq!(
            HostId::resolve(31, &lr),
            Err(PaxosError::HostIdOutOfRange {
                hostid: 31,
                num_hosts: 30
            })
        );
    }
}
