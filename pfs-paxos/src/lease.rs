//! The single-writer lease: one sector of `.pfs-paxos` naming the host that
//! may write, renewed while it is mounted.
//!
//! The reference keeps only a host-local lock, so two hosts can both write.
//! We record the writer in sector [`LEASE_SECTOR`] of `.pfs-paxos`, which the
//! reference never touches (it writes only sector 0, the leader record).
//! A writer stamps the wall-clock time on every renewal; the lease is live
//! until `written_ms + duration_ms`. Contenders refuse a live lease, may
//! take a free or expired one, and with force wait for expiry first. The
//! holder checks before every commit that the sector still names it.

use bytemuck::{Pod, Zeroable};
use core::mem::{offset_of, size_of};
use pfs_format::checksum::pfs_crc32c;
use pfs_format::endian::{U32Le, U64Le};
use pfs_format::layout::{MAX_HOSTS, SECTOR_SIZE};

/// Sector of `.pfs-paxos` holding the lease (after every host's sector).
pub const LEASE_SECTOR: u64 = MAX_HOSTS + 1;
/// Byte offset of the lease inside `.pfs-paxos`.
pub const LEASE_OFFSET: u64 = LEASE_SECTOR * SECTOR_SIZE;
/// `"PFSLEASE"`.
pub const LEASE_MAGIC: u64 = u64::from_le_bytes(*b"PFSLEASE");
/// Format version.
pub const LEASE_VERSION: u32 = 1;

/// The lease record (64 bytes at the start of its sector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct LeaseRecord {
    /// [`LEASE_MAGIC`].
    pub magic: U64Le,
    /// [`LEASE_VERSION`].
    pub version: U32Le,
    /// Host id of the writer; 0 when the lease is free.
    pub holder: U32Le,
    /// Random value identifying the holding mount.
    pub token: U64Le,
    /// Renewals so far.
    pub counter: U64Le,
    /// Wall-clock milliseconds since the epoch at the last write.
    pub written_ms: U64Le,
    /// How long a write keeps the lease live, in milliseconds.
    pub duration_ms: U32Le,
    /// Process id of the holder.
    pub pid: U32Le,
    /// Identity of the holder's machine (a hash of its machine id).
    pub node: U32Le,
    /// Reserved; 0.
    pub _pad: [u8; 8],
    /// PFS checksum of the bytes before it.
    pub checksum: U32Le,
}

const _: () = assert!(size_of::<LeaseRecord>() == 64);
const _: () = assert!(offset_of!(LeaseRecord, checksum) == 60);
const _: () = assert!(LEASE_OFFSET + SECTOR_SIZE <= pfs_format::layout::PAXOS_FILE_SIZE);

/// What a contender makes of the lease sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Never written, released, or unreadable: free to take.
    Free,
    /// Held by this mount.
    Mine,
    /// Held by another mount and live until `until_ms`.
    Live {
        /// Holder's host id.
        holder: u32,
        /// Holder's process id.
        pid: u32,
        /// When it expires unless renewed.
        until_ms: u64,
    },
    /// Held by another mount that stopped renewing.
    Expired {
        /// Holder's host id.
        holder: u32,
    },
}

impl LeaseRecord {
    /// A record naming `holder` with `token`, written now.
    pub fn held(
        holder: u32,
        token: u64,
        pid: u32,
        counter: u64,
        now_ms: u64,
        duration_ms: u32,
    ) -> LeaseRecord {
        LeaseRecord::held_on(holder, token, pid, 0, counter, now_ms, duration_ms)
    }

    /// [`Self::held`] with the holder's machine identity.
    pub fn held_on(
        holder: u32,
        token: u64,
        pid: u32,
        node: u32,
        counter: u64,
        now_ms: u64,
        duration_ms: u32,
    ) -> LeaseRecord {
        let mut r = LeaseRecord::zeroed();
        r.node.set(node);
        r.magic.set(LEASE_MAGIC);
        r.version.set(LEASE_VERSION);
        r.holder.set(holder);
        r.token.set(token);
        r.pid.set(pid);
        r.counter.set(counter);
        r.written_ms.set(now_ms);
        r.duration_ms.set(duration_ms);
        r.seal();
        r
    }

    /// A released lease.
    pub fn free(now_ms: u64) -> LeaseRecord {
        LeaseRecord::held(0, 0, 0, 0, now_ms, 0)
    }

    /// The checksum these bytes should carry.
    pub fn compute_checksum(&self) -> u32 {
        pfs_crc32c(&bytemuck::bytes_of(self)[..offset_of!(LeaseRecord, checksum)])
    }

    /// Stores the checksum.
    pub fn seal(&mut self) {
        let c = self.compute_checksum();
        self.checksum.set(c);
    }

    /// Reads a record; `None` when the bytes hold no valid lease (a sector
    /// never written, or torn).
    pub fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        let r: LeaseRecord =
            bytemuck::try_pod_read_unaligned(bytes.get(..size_of::<LeaseRecord>())?).ok()?;
        (r.magic.get() == LEASE_MAGIC
            && r.version.get() == LEASE_VERSION
            && r.checksum.get() == r.compute_checksum())
        .then_some(r)
    }

    /// The on-disk bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        bytemuck::must_cast(*self)
    }

    /// Like [`Self::judge`], but a live lease held by a process of this
    /// machine (`my_node`) that no longer exists (`alive` says no) counts as
    /// expired: a crashed writer on the same machine does not block the
    /// next one for a whole lease period.
    pub fn judge_local(
        record: Option<&LeaseRecord>,
        my_token: u64,
        now_ms: u64,
        my_node: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> LeaseState {
        match (record, LeaseRecord::judge(record, my_token, now_ms)) {
            (Some(r), LeaseState::Live { holder, .. })
                if my_node != 0 && r.node.get() == my_node && !alive(r.pid.get()) =>
            {
                LeaseState::Expired { holder }
            }
            (_, state) => state,
        }
    }

    /// What this record means to a mount holding `my_token` at `now_ms`.
    pub fn judge(record: Option<&LeaseRecord>, my_token: u64, now_ms: u64) -> LeaseState {
        let Some(r) = record else {
            return LeaseState::Free;
        };
        if r.holder.get() == 0 {
            return LeaseState::Free;
        }
        if r.token.get() == my_token {
            return LeaseState::Mine;
        }
        let until_ms = r
            .written_ms
            .get()
            .saturating_add(u64::from(r.duration_ms.get()));
        if now_ms > until_ms {
            LeaseState::Expired {
                holder: r.holder.get(),
            }
        } else {
            LeaseState::Live {
                holder: r.holder.get(),
                pid: r.pid.get(),
                until_ms,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging() {
        let r = LeaseRecord::held(3, 77, 1, 0, 1_000, 500);
        let back = LeaseRecord::decode(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(LeaseRecord::judge(Some(&r), 77, 1_200), LeaseState::Mine);
        assert_eq!(
            LeaseRecord::judge(Some(&r), 5, 1_200),
            LeaseState::Live {
                holder: 3,
                pid: 1,
                until_ms: 1_500
            }
        );
        assert_eq!(
            LeaseRecord::judge(Some(&r), 5, 1_501),
            LeaseState::Expired { holder: 3 }
        );
        assert_eq!(
            LeaseRecord::judge(Some(&LeaseRecord::free(9)), 5, 10),
            LeaseState::Free
        );
        assert_eq!(LeaseRecord::judge(None, 5, 10), LeaseState::Free);
        let local = LeaseRecord::held_on(3, 77, 1234, 9, 0, 1_000, 500);
        assert_eq!(
            LeaseRecord::judge_local(Some(&local), 5, 1_200, 9, &|_| false),
            LeaseState::Expired { holder: 3 }
        );
        assert!(matches!(
            LeaseRecord::judge_local(Some(&local), 5, 1_200, 9, &|_| true),
            LeaseState::Live { .. }
        ));
        assert!(matches!(
            LeaseRecord::judge_local(Some(&local), 5, 1_200, 8, &|_| false),
            LeaseState::Live { .. }
        ));
        let mut torn = r.to_bytes();
        torn[20] ^= 1;
        assert!(LeaseRecord::decode(&torn).is_none());
        assert!(LeaseRecord::decode(&[0u8; 64]).is_none());
    }
}
