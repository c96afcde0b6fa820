//! The single-writer lease: one slot per host id in `.pfs-paxos`, and the
//! rules that decide from them who may write.
//!
//! The reference keeps only a host-local lock, so two hosts can both write.
//! Each host id `h` owns sector `h` of `.pfs-paxos` (sector 0 is the leader
//! record; the reference writes nothing else in the file), and only that
//! host ever writes it. A slot says whether its host is idle, trying to
//! take the lease ([`SlotState::Intent`]) or holding it
//! ([`SlotState::Held`]), with a heartbeat counter that the holder bumps on
//! every renewal.
//!
//! Taking the lease is a two-phase flag protocol that needs nothing but
//! atomic single-sector reads and writes:
//!
//! 1. read every slot; if another host is not idle (and not known dead),
//!    back off;
//! 2. write our slot as `Intent` and flush;
//! 3. read every slot again; if another host is not idle, withdraw (write
//!    `Idle`) and back off; otherwise write our slot as `Held`.
//!
//! Two contenders cannot both pass step 3: whichever read its step-3 view
//! second did so after the other's step-2 write had completed, and saw it.
//! A slot is "dead" only when its process is known gone (same machine, pid
//! gone) or when its heartbeat has not changed for the lease duration plus a
//! margin, measured on the observer's own monotonic clock (see [`Watch`]);
//! wall clocks of different hosts are never compared. The holder, for its
//! part, stops writing once its own monotonic clock says the lease ran out
//! (see [`Validity`]), which happens before any observer can judge it dead.

use bytemuck::{Pod, Zeroable};
use core::mem::{offset_of, size_of};
use pfs_format::checksum::pfs_crc32c;
use pfs_format::endian::{U32Le, U64Le};
use pfs_format::layout::{MAX_HOSTS, SECTOR_SIZE};
use std::collections::HashMap;

/// `"PFSLEASE"`.
pub const LEASE_MAGIC: u64 = u64::from_le_bytes(*b"PFSLEASE");
/// Format version of a host slot.
pub const LEASE_VERSION: u32 = 2;

/// Byte offset inside `.pfs-paxos` of host `hostid`'s slot.
pub fn slot_offset(hostid: u32) -> u64 {
    u64::from(hostid) * SECTOR_SIZE
}

/// What a host's slot says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Not writing, not trying to.
    Idle,
    /// Trying to take the lease.
    Intent,
    /// Holding the lease.
    Held,
}

impl SlotState {
    fn raw(self) -> u32 {
        match self {
            SlotState::Idle => 0,
            SlotState::Intent => 1,
            SlotState::Held => 2,
        }
    }

    fn from_raw(v: u32) -> Option<SlotState> {
        match v {
            0 => Some(SlotState::Idle),
            1 => Some(SlotState::Intent),
            2 => Some(SlotState::Held),
            _ => None,
        }
    }
}

/// A host's slot (64 bytes at the start of its sector).
///
/// # Example
///
/// A slot written, read back, and refused once torn:
///
/// ```
/// use pfs_paxos::lease::{LeaseRecord, SlotState, Writer};
///
/// let w = Writer { hostid: 3, token: 77, pid: 4242, node: 1, duration_ms: 10_000, flags: 0 };
/// let slot = LeaseRecord::new(&w, SlotState::Held, 1, 0);
/// let bytes = slot.to_bytes();
/// let back = LeaseRecord::decode(&bytes).expect("a valid slot");
/// assert_eq!(back.slot_state(), SlotState::Held);
/// assert_eq!(back.hostid.get(), 3);
///
/// let mut torn = bytes;
/// torn[30] ^= 1;
/// assert_eq!(LeaseRecord::decode(&torn), None);
/// assert_eq!(LeaseRecord::decode(&[0u8; 64]), None); // never written
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct LeaseRecord {
    /// [`LEASE_MAGIC`].
    pub magic: U64Le,
    /// [`LEASE_VERSION`].
    pub version: U32Le,
    /// The host id owning this slot.
    pub hostid: U32Le,
    /// [`SlotState`] as a number.
    pub state: U32Le,
    /// How long the holder may write after starting a renewal, in ms.
    pub duration_ms: U32Le,
    /// Random value identifying one acquisition by one mount.
    pub token: U64Le,
    /// Heartbeat: bumped by every write of the slot.
    pub counter: U64Le,
    /// Wall-clock milliseconds at the write; only shown to people.
    pub wall_ms: U64Le,
    /// Process id of the writer.
    pub pid: U32Le,
    /// Identity of the writer's machine (a hash of its machine id).
    pub node: U32Le,
    /// Bits of [`FLAG_LIVE_MARK`]; the rest are 0.
    pub flags: U32Le,
    /// PFS checksum of the bytes before it.
    pub checksum: U32Le,
}

const _: () = assert!(size_of::<LeaseRecord>() == 64);
const _: () = assert!(offset_of!(LeaseRecord, checksum) == 60);
const _: () = assert!((MAX_HOSTS + 1) * SECTOR_SIZE <= pfs_format::layout::PAXOS_FILE_SIZE);

/// Set in [`LeaseRecord::flags`] when the holder keeps a mark of its token
/// on its machine that vanishes with its processes (pfs-core's `live`
/// marks): an observer on the same machine that finds the mark gone knows
/// the holder is dead, whatever `pid` says.
pub const FLAG_LIVE_MARK: u32 = 1;

/// Who wrote a slot, as [`LeaseRecord::new`] stamps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    /// Host id (the slot's owner).
    pub hostid: u32,
    /// Acquisition token.
    pub token: u64,
    /// Process id.
    pub pid: u32,
    /// Machine identity.
    pub node: u32,
    /// Lease duration in ms.
    pub duration_ms: u32,
    /// [`LeaseRecord::flags`].
    pub flags: u32,
}

impl LeaseRecord {
    /// A slot written by `w` in `state` with heartbeat `counter`.
    pub fn new(w: &Writer, state: SlotState, counter: u64, wall_ms: u64) -> LeaseRecord {
        let mut r = LeaseRecord::zeroed();
        r.magic.set(LEASE_MAGIC);
        r.version.set(LEASE_VERSION);
        r.hostid.set(w.hostid);
        r.state.set(state.raw());
        r.duration_ms.set(w.duration_ms);
        r.token.set(w.token);
        r.counter.set(counter);
        r.wall_ms.set(wall_ms);
        r.pid.set(w.pid);
        r.node.set(w.node);
        r.flags.set(w.flags);
        r.seal();
        r
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

    /// Reads a slot; `None` when the bytes hold no valid slot (a sector
    /// never written, zeroed by mkfs, or torn).
    pub fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        let r: LeaseRecord =
            bytemuck::try_pod_read_unaligned(bytes.get(..size_of::<LeaseRecord>())?).ok()?;
        (r.magic.get() == LEASE_MAGIC
            && r.version.get() == LEASE_VERSION
            && r.checksum.get() == r.compute_checksum()
            && SlotState::from_raw(r.state.get()).is_some())
        .then_some(r)
    }

    /// The on-disk bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        bytemuck::must_cast(*self)
    }

    /// What the slot says its host is doing (an undecodable state reads
    /// as idle; [`Self::decode`] refuses such slots anyway).
    pub fn slot_state(&self) -> SlotState {
        SlotState::from_raw(self.state.get()).unwrap_or(SlotState::Idle)
    }

    /// The heartbeat as one comparable value: any write changes it.
    pub fn beat(&self) -> (u64, u64) {
        (self.token.get(), self.counter.get())
    }
}

/// First sector of the takeover notes: host `h`'s note is sector
/// `NOTE_BASE + h` of `.pfs-paxos` (the reference writes none of them).
pub const NOTE_BASE: u64 = 256;
/// `"PFSNOTE1"`.
pub const NOTE_MAGIC: u64 = u64::from_le_bytes(*b"PFSNOTE1");
/// Claims one note remembers.
pub const NOTE_ENTRIES: usize = 8;

/// Byte offset inside `.pfs-paxos` of host `hostid`'s takeover note.
pub fn note_offset(hostid: u32) -> u64 {
    (NOTE_BASE + u64::from(hostid)) * SECTOR_SIZE
}

/// A claim that a host judged dead and took the lease over from: the
/// claim's host, token and the heartbeat counter it had stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Overridden {
    /// Host id of the claim (0: an empty entry).
    pub hostid: U32Le,
    /// 1 while the takeover is under way (the claim was judged dead, the
    /// lease not yet taken); 0 once the note's owner holds the lease
    /// (notes written before this field say 0).
    pub pending: u8,
    /// Reserved; 0.
    pub _pad: [u8; 3],
    /// The claim's token.
    pub token: U64Le,
    /// Its heartbeat counter when it was judged dead.
    pub counter: U64Le,
}

/// What a host remembers of the claims it overrode with `--force`, in a
/// sector of its own ([`note_offset`]), so that later observers need not
/// wait out the same silent claim again: a slot that still shows exactly
/// such a heartbeat is dead. A claim that beats again (a paused writer
/// that resumed) no longer matches and is judged afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct TakeoverNote {
    /// [`NOTE_MAGIC`].
    pub magic: U64Le,
    /// The host that wrote the note (the sector's owner).
    pub owner: U32Le,
    /// Reserved; 0.
    pub _pad: [u8; 4],
    /// Overridden claims; empty entries have host id 0.
    pub entries: [Overridden; NOTE_ENTRIES],
    /// Reserved; 0.
    pub _pad2: [u8; 4],
    /// PFS checksum of the bytes before it.
    pub checksum: U32Le,
}

const _: () = assert!(size_of::<TakeoverNote>() == 216);
const _: () =
    assert!((NOTE_BASE + MAX_HOSTS + 1) * SECTOR_SIZE <= pfs_format::layout::PAXOS_FILE_SIZE);

impl TakeoverNote {
    /// An empty note of host `owner`.
    pub fn new(owner: u32) -> TakeoverNote {
        let mut n = TakeoverNote::zeroed();
        n.magic.set(NOTE_MAGIC);
        n.owner.set(owner);
        n
    }

    /// Reads a note; `None` when the bytes hold none.
    pub fn decode(bytes: &[u8]) -> Option<TakeoverNote> {
        let n: TakeoverNote =
            bytemuck::try_pod_read_unaligned(bytes.get(..size_of::<TakeoverNote>())?).ok()?;
        (n.magic.get() == NOTE_MAGIC && n.checksum.get() == n.compute_checksum()).then_some(n)
    }

    fn compute_checksum(&self) -> u32 {
        pfs_crc32c(&bytemuck::bytes_of(self)[..offset_of!(TakeoverNote, checksum)])
    }

    /// The on-disk bytes, sealed with their checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut n = *self;
        n.checksum.set(n.compute_checksum());
        bytemuck::bytes_of(&n).to_vec()
    }

    /// Remembers `rec` as overridden (replacing an older entry of its
    /// host; the oldest entry makes room when all are taken), pending
    /// until [`TakeoverNote::confirm`] unless the same claim was taken
    /// over already.
    pub fn remember(&mut self, rec: &LeaseRecord) {
        let taken = self.names(rec.hostid.get(), rec.token.get());
        let e = Overridden {
            hostid: rec.hostid,
            pending: u8::from(!taken),
            _pad: [0; 3],
            token: rec.token,
            counter: rec.counter,
        };
        let at = self
            .entries
            .iter()
            .position(|x| x.hostid == rec.hostid || x.hostid.get() == 0)
            .unwrap_or_else(|| {
                self.entries.rotate_left(1);
                NOTE_ENTRIES - 1
            });
        self.entries[at] = e;
    }

    /// Keeps only the entries for which `still` holds (the claims whose
    /// slots still show the overridden heartbeat).
    pub fn retain(&mut self, mut still: impl FnMut(&Overridden) -> bool) {
        let kept: Vec<Overridden> = self
            .entries
            .iter()
            .filter(|e| e.hostid.get() != 0 && still(e))
            .copied()
            .collect();
        self.entries = [Overridden::zeroed(); NOTE_ENTRIES];
        self.entries[..kept.len()].copy_from_slice(&kept);
    }

    /// Whether this note names a claim of host `hostid` made with
    /// `token`, at any heartbeat, as taken over: the note's owner took the
    /// lease after judging that claim dead, and a holder of it must never
    /// write again. A claim noted by a takeover still under way (or one
    /// that gave up) is not named.
    pub fn names(&self, hostid: u32, token: u64) -> bool {
        hostid != 0
            && self
                .entries
                .iter()
                .any(|e| e.hostid.get() == hostid && e.token.get() == token && e.pending == 0)
    }

    /// Marks every entry taken over (the owner now holds the lease);
    /// `false` when none was pending.
    pub fn confirm(&mut self) -> bool {
        let mut changed = false;
        for e in self.entries.iter_mut().filter(|e| e.hostid.get() != 0) {
            changed |= e.pending != 0;
            e.pending = 0;
        }
        changed
    }

    /// Whether the slot `rec` shows a heartbeat this note overrode.
    pub fn overrides(&self, rec: &LeaseRecord) -> bool {
        self.entries.iter().any(|e| {
            e.hostid.get() != 0
                && e.hostid == rec.hostid
                && e.token == rec.token
                && e.counter.get() >= rec.counter.get()
        })
    }
}

/// What an observer makes of another host's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Idle or unwritten: no claim on the lease.
    Idle,
    /// A claim whose writer may still be running.
    Alive,
    /// A claim whose writer is known gone: a process of this machine that
    /// no longer exists, or a heartbeat silent for longer than its lease
    /// plus the margin.
    Dead,
}

/// Watches other hosts' heartbeats on the observer's monotonic clock.
///
/// A claim counts as dead once the same heartbeat has been seen for longer
/// than its lease duration plus [`margin_ms`], counted from the first time
/// this observer saw it. The first sighting is after the write that set it
/// started, so the holder's own clock (see [`Validity`]) expires first.
///
/// # Example
///
/// Another host's claim, seen on this observer's clock (ms): alive while
/// its heartbeat moves, dead once it stays silent past the lease and the
/// margin:
///
/// ```
/// use pfs_paxos::lease::{margin_ms, LeaseRecord, Liveness, SlotState, Watch, Writer};
///
/// let w = Writer { hostid: 2, token: 9, pid: 1, node: 1, duration_ms: 1000, flags: 0 };
/// let mut watch = Watch::new();
/// let beat1 = LeaseRecord::new(&w, SlotState::Held, 1, 0);
/// assert_eq!(watch.judge(&beat1, 0, false), Liveness::Alive);
/// let beat2 = LeaseRecord::new(&w, SlotState::Held, 2, 0);
/// assert_eq!(watch.judge(&beat2, 900, false), Liveness::Alive); // it renewed
///
/// let silent_until = 900 + 1000 + margin_ms(1000);
/// assert_eq!(watch.judge(&beat2, silent_until, false), Liveness::Alive);
/// assert_eq!(watch.judge(&beat2, silent_until + 1, false), Liveness::Dead);
/// // A process of this machine known gone is dead at once.
/// assert_eq!(Watch::new().judge(&beat2, 0, true), Liveness::Dead);
/// ```
#[derive(Debug, Default)]
pub struct Watch {
    seen: HashMap<u32, ((u64, u64), u64)>,
}

impl Watch {
    /// A watch that has seen nothing.
    pub fn new() -> Watch {
        Watch::default()
    }

    /// Judges `rec` (the slot of another host) seen at monotonic time
    /// `now_ms`. `local_dead` says whether the writer is a process of this
    /// machine that no longer exists.
    pub fn judge(&mut self, rec: &LeaseRecord, now_ms: u64, local_dead: bool) -> Liveness {
        if rec.slot_state() == SlotState::Idle {
            self.seen.remove(&rec.hostid.get());
            return Liveness::Idle;
        }
        if local_dead {
            return Liveness::Dead;
        }
        let beat = rec.beat();
        let since = match self.seen.get(&rec.hostid.get()) {
            Some(&(b, since)) if b == beat => since,
            _ => {
                self.seen.insert(rec.hostid.get(), (beat, now_ms));
                now_ms
            }
        };
        let d = u64::from(rec.duration_ms.get());
        if now_ms.saturating_sub(since) > d + margin_ms(d) {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }

    /// How much longer (ms) the claim of `rec` must stay silent before it
    /// counts as dead; 0 once dead or never seen.
    pub fn remaining_ms(&self, rec: &LeaseRecord, now_ms: u64) -> u64 {
        let Some(&(beat, since)) = self.seen.get(&rec.hostid.get()) else {
            return 0;
        };
        if beat != rec.beat() {
            return 0;
        }
        let d = u64::from(rec.duration_ms.get());
        (since + d + margin_ms(d) + 1).saturating_sub(now_ms)
    }
}

/// The safety margin for a lease of `duration_ms`: a holder stops writing
/// this long before its lease ends, and observers wait this long past it.
pub fn margin_ms(duration_ms: u64) -> u64 {
    (duration_ms / 5).max(20)
}

/// The holder's view of its lease on its own monotonic clock.
///
/// # Example
///
/// The holder stops writing a margin before its lease ends, so it stops
/// before any observer can judge it dead:
///
/// ```
/// use pfs_paxos::lease::{margin_ms, Validity};
///
/// let v = Validity { renewed_at_ms: 5_000, duration_ms: 10_000 };
/// assert!(v.may_write(5_000));
/// assert_eq!(v.left_ms(5_000), 10_000 - margin_ms(10_000));
/// assert!(!v.may_write(15_000 - margin_ms(10_000)));
/// assert_eq!(v.left_ms(20_000), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Monotonic ms at which the last successful renewal write started.
    pub renewed_at_ms: u64,
    /// Lease duration.
    pub duration_ms: u64,
}

impl Validity {
    /// Whether a device write may start at `now_ms`: the lease must still
    /// run for more than the margin.
    pub fn may_write(&self, now_ms: u64) -> bool {
        now_ms + margin_ms(self.duration_ms) < self.renewed_at_ms + self.duration_ms
    }

    /// Milliseconds left before writes must stop (0 when they must).
    pub fn left_ms(&self, now_ms: u64) -> u64 {
        (self.renewed_at_ms + self.duration_ms).saturating_sub(now_ms + margin_ms(self.duration_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(hostid: u32, token: u64) -> Writer {
        Writer {
            hostid,
            token,
            pid: 10,
            node: 7,
            duration_ms: 1000,
            flags: 0,
        }
    }

    #[test]
    fn slots_round_trip_and_reject_damage() {
        let r = LeaseRecord::new(&writer(3, 77), SlotState::Held, 5, 123);
        let back = LeaseRecord::decode(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.slot_state(), SlotState::Held);
        let mut torn = r.to_bytes();
        torn[20] ^= 1;
        assert!(LeaseRecord::decode(&torn).is_none());
        assert!(LeaseRecord::decode(&[0u8; 64]).is_none());
        assert!(LeaseRecord::decode(&[0u8; 10]).is_none());
        assert_eq!(slot_offset(3), 3 * 4096);
    }

    #[test]
    fn a_note_overrides_only_the_heartbeat_it_saw() {
        let r = LeaseRecord::new(&writer(3, 77), SlotState::Held, 5, 0);
        let mut n = TakeoverNote::new(2);
        assert!(!n.overrides(&r));
        n.remember(&r);
        let back = TakeoverNote::decode(&n.to_bytes()).unwrap();
        assert!(back.overrides(&r));
        // The same writer beating again is alive again.
        let beat = LeaseRecord::new(&writer(3, 77), SlotState::Held, 6, 0);
        assert!(!back.overrides(&beat));
        // Another acquisition of the same host is another claim.
        let other = LeaseRecord::new(&writer(3, 78), SlotState::Held, 5, 0);
        assert!(!back.overrides(&other));
        let mut torn = n.to_bytes();
        torn[30] ^= 1;
        assert!(TakeoverNote::decode(&torn).is_none());
        let mut full = TakeoverNote::new(2);
        for h in 1..=(NOTE_ENTRIES as u32 + 2) {
            full.remember(&LeaseRecord::new(&writer(h, 1), SlotState::Held, 1, 0));
        }
        let last = LeaseRecord::new(&writer(NOTE_ENTRIES as u32 + 2, 1), SlotState::Held, 1, 0);
        assert!(full.overrides(&last));
        full.retain(|e| e.hostid.get() != NOTE_ENTRIES as u32 + 2);
        assert!(!full.overrides(&last));
    }

    #[test]
    fn a_note_names_a_claim_as_taken_over_only_once_confirmed() {
        let r = LeaseRecord::new(&writer(3, 77), SlotState::Held, 5, 0);
        let mut n = TakeoverNote::new(2);
        n.remember(&r);
        // Judged dead, the lease not yet taken: not named, but overridden.
        let back = TakeoverNote::decode(&n.to_bytes()).unwrap();
        assert!(back.overrides(&r));
        assert!(!back.names(3, 77));
        assert!(n.confirm());
        assert!(!n.confirm());
        let back = TakeoverNote::decode(&n.to_bytes()).unwrap();
        assert!(back.names(3, 77));
        assert!(!back.names(3, 78));
        // Noted again (it beat once more before it stopped): still taken
        // over; another claim of the host is pending.
        n.remember(&LeaseRecord::new(&writer(3, 77), SlotState::Held, 9, 0));
        assert!(n.names(3, 77));
        n.remember(&LeaseRecord::new(&writer(3, 79), SlotState::Held, 1, 0));
        assert!(!n.names(3, 79));
    }

    #[test]
    fn silence_is_judged_on_the_observers_clock() {
        let mut w = Watch::new();
        let r = LeaseRecord::new(&writer(3, 77), SlotState::Held, 5, 999_999_999);
        // The wall clock in the record plays no part.
        assert_eq!(w.judge(&r, 50_000, false), Liveness::Alive);
        assert_eq!(w.remaining_ms(&r, 50_000), 1000 + 200 + 1);
        assert_eq!(w.judge(&r, 51_200, false), Liveness::Alive);
        assert_eq!(w.judge(&r, 51_201, false), Liveness::Dead);
        // A new heartbeat brings it back to life and restarts the count.
        let r2 = LeaseRecord::new(&writer(3, 77), SlotState::Held, 6, 0);
        assert_eq!(w.judge(&r2, 51_300, false), Liveness::Alive);
        assert_eq!(w.judge(&r2, 52_400, false), Liveness::Alive);
        assert_eq!(w.judge(&r2, 52_600, false), Liveness::Dead);
        // A process known gone is dead at once; an idle slot claims nothing.
        let mut fresh = Watch::new();
        assert_eq!(fresh.judge(&r, 0, true), Liveness::Dead);
        let idle = LeaseRecord::new(&writer(3, 77), SlotState::Idle, 7, 0);
        assert_eq!(fresh.judge(&idle, 0, false), Liveness::Idle);
    }

    #[test]
    fn holder_stops_before_any_observer_takes_over() {
        // The holder's renewal write starts at 1_000 on its clock; an
        // observer cannot see it before then, so the earliest takeover is at
        // 1_000 + duration + margin, while the holder stops at
        // 1_000 + duration - margin.
        let v = Validity {
            renewed_at_ms: 1_000,
            duration_ms: 1_000,
        };
        assert!(v.may_write(1_000));
        assert!(v.may_write(1_799));
        assert!(!v.may_write(1_800));
        assert_eq!(v.left_ms(1_500), 300);
        assert_eq!(v.left_ms(5_000), 0);
        let mut w = Watch::new();
        let r = LeaseRecord::new(&writer(1, 1), SlotState::Held, 1, 0);
        let mut t = 1_000;
        while w.judge(&r, t, false) != Liveness::Dead {
            assert!(t < 3_000);
            t += 1;
        }
        assert!(t >= 1_800 + 2 * margin_ms(1_000));
    }
}
