//! Taking, renewing, checking and releasing the single-writer lease on a
//! device: the IO side of [`pfs_paxos::lease`], whose module doc describes
//! the protocol.

use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use crate::live::LiveMark;
use crate::share::Share;
use parking_lot::Mutex;
use pfs_format::layout::SECTOR_SIZE;
use pfs_paxos::lease::{
    note_offset, slot_offset, LeaseRecord, Liveness, SlotState, TakeoverNote, Validity, Watch,
    Writer, FLAG_LIVE_MARK,
};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default writer lease duration, in milliseconds.
pub const DEFAULT_LEASE_MS: u32 = 10_000;

/// Milliseconds on this machine's `CLOCK_MONOTONIC` (since boot, one clock
/// for every process of the machine). Never compared with other machines'.
pub(crate) fn mono_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000,
        Err(_) => {
            // Not expected on Linux; a process-local clock is still monotonic.
            static ORIGIN: OnceLock<Instant> = OnceLock::new();
            ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64 + (1 << 40)
        }
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This machine's identity for leases: a hash of /etc/machine-id (or the
/// host name).
pub fn node_id() -> u32 {
    let id = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .unwrap_or_default();
    let h = pfs_format::checksum::pfs_crc32c(id.trim().as_bytes());
    h.max(1)
}

/// Whether process `pid` of this machine exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return true;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(wall_ms());
    h.write_u64(mono_ms());
    h.write_u32(std::process::id());
    h.finish()
}

/// Where the slots are and how many to look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slots {
    /// Device address of `.pfs-paxos`'s first sector (the leader record).
    pub(crate) paxos_bda: u64,
    /// Host ids in use: slots `1..=nhosts`.
    pub(crate) nhosts: u32,
}

impl Slots {
    /// The slots of the filesystem whose leader record `leader` sits at
    /// device address `paxos_bda` (one per host id up to its `num_hosts`).
    pub(crate) fn of(leader: &pfs_format::LeaderRecord, paxos_bda: u64) -> Slots {
        Slots {
            paxos_bda,
            nhosts: leader
                .num_hosts
                .get()
                .clamp(1, pfs_format::layout::MAX_HOSTS) as u32,
        }
    }

    fn bda(&self, hostid: u32) -> u64 {
        self.paxos_bda + slot_offset(hostid)
    }

    /// Reads every slot in one request, and every takeover note in
    /// another.
    fn read_all(&self, dev: &dyn Device) -> Result<View> {
        let n = self.nhosts.max(1) as usize;
        let mut buf = AlignedBuf::new(n * SECTOR_SIZE as usize);
        dev.read_at(buf.as_mut_slice(), self.bda(1))?;
        let slots = buf
            .as_slice()
            .chunks(SECTOR_SIZE as usize)
            .enumerate()
            .map(|(k, s)| LeaseRecord::decode(s).filter(|r| r.hostid.get() == k as u32 + 1))
            .collect();
        dev.read_at(buf.as_mut_slice(), self.paxos_bda + note_offset(1))?;
        let notes = buf
            .as_slice()
            .chunks(SECTOR_SIZE as usize)
            .enumerate()
            .filter_map(|(k, s)| TakeoverNote::decode(s).filter(|t| t.owner.get() == k as u32 + 1))
            .collect();
        Ok(View { slots, notes })
    }

    /// Host `owner`'s takeover note as on the device (an empty one when it
    /// has none).
    fn read_note(&self, dev: &dyn Device, owner: u32) -> Result<TakeoverNote> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        dev.read_at(sect.as_mut_slice(), self.paxos_bda + note_offset(owner))?;
        Ok(TakeoverNote::decode(sect.as_slice())
            .filter(|t| t.owner.get() == owner)
            .unwrap_or_else(|| TakeoverNote::new(owner)))
    }

    /// Adds the claims in `dead` to host `owner`'s takeover note (keeping
    /// the entries whose slots still show what was overridden), and
    /// flushes it. First, before anything is written, the hosts of those
    /// claims are fenced at the storage where the device can
    /// ([`Device::fence_writers`]: an RBD image blocklists their clients),
    /// so that a write of theirs that passed its lease check before a
    /// stall never lands; a fence that fails refuses the takeover.
    pub(crate) fn note_overridden(
        &self,
        dev: &dyn Device,
        owner: u32,
        dead: &[LeaseRecord],
    ) -> Result<()> {
        // Never this host of this machine: its other processes share our
        // lease, or the host lock kept them out.
        let me = (owner, node_id());
        let mut hosts: Vec<(u32, u32)> = dead
            .iter()
            .map(|r| (r.hostid.get(), r.node.get()))
            .filter(|&h| h != me)
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        dev.fence_writers(&hosts)?;
        let view = self.read_all(dev)?;
        let mut note = self.read_note(dev, owner)?;
        note.retain(|e| {
            view.slots.iter().flatten().any(|r| {
                r.hostid == e.hostid && r.token == e.token && r.counter.get() <= e.counter.get()
            })
        });
        for r in dead {
            note.remember(r);
        }
        self.write_note(dev, owner, &note)
    }

    /// Marks the claims host `owner`'s note holds as taken over, now that
    /// `owner` holds the lease, and flushes the note (nothing is written
    /// when none was pending). Until then a note names no claim to its
    /// holder ([`TakeoverNote::names`]): a takeover that withdrew or gave
    /// up, or a mount that judged a claim dead and never wrote, deposes
    /// nobody.
    fn confirm_takeover(&self, dev: &dyn Device, owner: u32) -> Result<()> {
        let mut note = self.read_note(dev, owner)?;
        if !note.confirm() {
            return Ok(());
        }
        self.write_note(dev, owner, &note)
    }

    /// Writes `note` as host `owner`'s takeover note, and flushes it.
    fn write_note(&self, dev: &dyn Device, owner: u32, note: &TakeoverNote) -> Result<()> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        let bytes = note.to_bytes();
        sect.as_mut_slice()[..bytes.len()].copy_from_slice(&bytes);
        dev.write_at(sect.as_slice(), self.paxos_bda + note_offset(owner))?;
        dev.sync()
    }

    fn write(&self, dev: &dyn Device, rec: &LeaseRecord) -> Result<()> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        sect.as_mut_slice()[..64].copy_from_slice(&rec.to_bytes());
        dev.write_at(sect.as_slice(), self.bda(rec.hostid.get()))?;
        dev.sync()
    }
}

/// The slots and takeover notes as read at one moment.
struct View {
    /// Slot `h` at index `h - 1`; `None` where no valid slot is written.
    slots: Vec<Option<LeaseRecord>>,
    /// The takeover notes written so far.
    notes: Vec<TakeoverNote>,
}

impl View {
    /// Whether a host other than `rec`'s took the lease over from exactly
    /// the heartbeat `rec` shows.
    fn overridden(&self, rec: &LeaseRecord) -> bool {
        self.notes
            .iter()
            .any(|n| n.owner != rec.hostid && n.overrides(rec))
    }

    /// Whether another host took the lease over from host `hostid`'s
    /// claim with `token`, whatever heartbeat it showed then.
    fn taken_over(&self, hostid: u32, token: u64) -> bool {
        self.notes
            .iter()
            .any(|n| n.owner.get() != hostid && n.names(hostid, token))
    }
}

/// Another host's claim, as judged now.
struct Claim {
    rec: LeaseRecord,
    held: bool,
}

impl Claim {
    fn describe(&self) -> String {
        format!(
            "host {} (pid {}{})",
            self.rec.hostid.get(),
            self.rec.pid.get(),
            if self.rec.node.get() == node_id() {
                " on this machine"
            } else {
                ""
            }
        )
    }
}

/// The live claims of hosts other than the one holding `my_token`. With
/// `sibling`, that host id's slot as a shared mount of this machine wrote
/// it (pid 0) is ours too: the processes sharing a host are one writer.
fn live_claims(
    dev: &dyn Device,
    view: &View,
    my_token: u64,
    sibling: Option<u32>,
    watch: &mut Watch,
) -> Vec<Claim> {
    let (me, now) = (node_id(), mono_ms());
    others(view, my_token, sibling)
        .filter_map(|r| {
            let local_dead = view.overridden(r) || (r.node.get() == me && holder_gone(dev, r));
            match watch.judge(r, now, local_dead) {
                Liveness::Alive => Some(Claim {
                    rec: *r,
                    held: r.slot_state() == SlotState::Held,
                }),
                Liveness::Idle | Liveness::Dead => None,
            }
        })
        .collect()
}

/// The slots of `view` that are not ours: not our token, and not the
/// slot of the host we share as a process of this machine.
fn others(view: &View, my_token: u64, sibling: Option<u32>) -> impl Iterator<Item = &LeaseRecord> {
    let me = node_id();
    view.slots
        .iter()
        .flatten()
        .filter(move |r| r.token.get() != my_token)
        .filter(move |r| {
            !(Some(r.hostid.get()) == sibling && r.node.get() == me && r.pid.get() == 0)
        })
}

/// Whether the holder of `rec`, a slot written on this machine, is known
/// to be gone: its live mark is gone (whatever process kind held it), or,
/// for a slot without one, its process no longer exists. Shared mounts
/// write pid 0; without a mark only their heartbeat tells.
fn holder_gone(dev: &dyn Device, rec: &LeaseRecord) -> bool {
    if rec.flags.get() & FLAG_LIVE_MARK != 0 {
        if let Some(marked) = crate::live::marked(dev, rec.token.get()) {
            return !marked;
        }
    }
    rec.pid.get() != 0 && !pid_alive(rec.pid.get())
}

/// Waits until no other host holds or is taking the writer lease. A live
/// holder is refused at once, naming it, unless `force`: then its heartbeat
/// is watched until it has been silent for its lease plus the margin (and
/// refused if it keeps beating for three lease periods). A contender that is
/// only taking the lease is waited for. Writes nothing. Returns the
/// claims left on the device that were found dead (their holders gone, or
/// silent too long) and no takeover note names yet.
pub(crate) fn wait_free(
    dev: &dyn Device,
    slots: Slots,
    my_token: u64,
    sibling: Option<u32>,
    force: bool,
    watch: &mut Watch,
) -> Result<Vec<LeaseRecord>> {
    let started = mono_ms();
    loop {
        let all = slots.read_all(dev)?;
        let claims = live_claims(dev, &all, my_token, sibling, watch);
        let Some(first) = claims.iter().find(|c| c.held).or(claims.first()) else {
            return Ok(others(&all, my_token, sibling)
                .filter(|r| r.slot_state() != SlotState::Idle && !all.overridden(r))
                .copied()
                .collect());
        };
        let d = u64::from(first.rec.duration_ms.get());
        let patience = 3 * d + 2 * pfs_paxos::lease::margin_ms(d) + 1000;
        if first.held && !force {
            return Err(CoreError::Busy {
                what: format!(
                    "device {} is mounted read-write by {}; use --force to take over once it stops renewing its lease",
                    dev.name(),
                    first.describe()
                ),
            });
        }
        if mono_ms().saturating_sub(started) > patience {
            return Err(CoreError::Busy {
                what: format!(
                    "device {} is mounted read-write by {}, which keeps renewing its lease",
                    dev.name(),
                    first.describe()
                ),
            });
        }
        let wait = claims
            .iter()
            .map(|c| watch.remaining_ms(&c.rec, mono_ms()))
            .max()
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(wait.clamp(5, 100)));
    }
}

/// Refuses (`Busy`) when any host holds or is taking the writer lease and
/// may still be running: what mkfs and growfs check before they write. A
/// claim whose heartbeat stays silent for its lease plus the margin is
/// waited out.
pub(crate) fn ensure_no_writer(dev: &dyn Device, slots: Slots) -> Result<()> {
    let mut watch = Watch::new();
    let mut first_beats = std::collections::HashMap::new();
    loop {
        let all = slots.read_all(dev)?;
        let claims = live_claims(dev, &all, 0, None, &mut watch);
        if claims.is_empty() {
            return Ok(());
        }
        let mut wait = 0;
        for c in &claims {
            let first = *first_beats
                .entry(c.rec.hostid.get())
                .or_insert(c.rec.beat());
            // A process of this machine that exists, or a heartbeat seen
            // changing, is a running writer.
            if c.rec.node.get() == node_id() || first != c.rec.beat() {
                return Err(CoreError::Busy {
                    what: format!("device {} has a live writer: {}", dev.name(), c.describe()),
                });
            }
            wait = wait.max(watch.remaining_ms(&c.rec, mono_ms()));
        }
        std::thread::sleep(Duration::from_millis(wait.clamp(5, 100)));
    }
}

/// A lease this mount holds.
pub struct Lease {
    /// The device itself, not the mount's fenced view of it: the lease's
    /// own slot is written whatever the lease's state.
    dev: Arc<dyn Device>,
    slots: Slots,
    /// Our slot's writer.
    writer: Mutex<Writer>,
    /// Shared with the other processes of this machine mounted with the
    /// same host id, when the mount is shared.
    share: Option<Arc<Share>>,
    counter: Mutex<u64>,
    validity: Mutex<Validity>,
    lost: Mutex<Option<String>>,
    /// This process's live mark of the token (see [`crate::live`]).
    mark: Mutex<Option<LiveMark>>,
    /// Set to stop the renewal thread, which waits on the condition
    /// variable between renewals. These are the standard library's, which
    /// wait on the objects themselves: a process forked while the thread
    /// waits inherits no record of it (parking_lot keeps waiting threads in
    /// a process-wide table, which a forked child would inherit with
    /// threads that no longer exist in it).
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("hostid", &self.writer.lock().hostid)
            .field("validity", &*self.validity.lock())
            .field("lost", &*self.lost.lock())
            .finish()
    }
}

/// How many times a contender withdraws before giving up.
const MAX_ROUNDS: u32 = 64;

impl Lease {
    /// Takes the lease for `hostid` with the two-phase protocol (see
    /// [`pfs_paxos::lease`]), then renews it in the background.
    ///
    /// With `share`, the processes of this machine mounted with `hostid`
    /// are one writer: the caller holds the host's transaction lock, uses
    /// the token another of them took the lease with (so their slot is no
    /// rival), and publishes its renewals for them.
    pub(crate) fn acquire(
        dev: Arc<dyn Device>,
        slots: Slots,
        hostid: u32,
        duration_ms: u32,
        force: bool,
        watch: &mut Watch,
        share: Option<Arc<Share>>,
    ) -> Result<Arc<Lease>> {
        let shared_token = share
            .as_ref()
            .map(|s| s.lease(u64::from(hostid)).0)
            .filter(|&t| t != 0);
        let token = shared_token.unwrap_or_else(|| random_u64() | 1);
        // Marked before the slot names the token, so no observer of this
        // machine ever sees the claim without its mark.
        let mark = crate::live::mark(dev.as_ref(), token);
        let writer = Writer {
            hostid,
            token,
            pid: if share.is_some() {
                0
            } else {
                std::process::id()
            },
            node: node_id(),
            duration_ms,
            flags: if mark.is_some() { FLAG_LIVE_MARK } else { 0 },
        };
        let mut counter = random_u64() >> 16;
        let next = |c: &mut u64| {
            *c = match &share {
                Some(s) => s.next_counter(u64::from(hostid), *c),
                None => *c + 1,
            };
            *c
        };
        let mut round = 0u32;
        loop {
            let sibling = share.is_some().then_some(hostid);
            let dead = wait_free(dev.as_ref(), slots, writer.token, sibling, force, watch)?;
            if !dead.is_empty() {
                // Remembered before our claim appears, so that nobody
                // after us waits the same dead claims out again.
                slots.note_overridden(dev.as_ref(), hostid, &dead)?;
            }
            slots.write(
                dev.as_ref(),
                &LeaseRecord::new(&writer, SlotState::Intent, next(&mut counter), wall_ms()),
            )?;
            let all = slots.read_all(dev.as_ref())?;
            let rivals = live_claims(dev.as_ref(), &all, writer.token, sibling, watch);
            if rivals.is_empty() {
                let started = mono_ms();
                slots.write(
                    dev.as_ref(),
                    &LeaseRecord::new(&writer, SlotState::Held, next(&mut counter), wall_ms()),
                )?;
                // Before anything is written under the lease: a holder of a
                // claim this host judged dead must never prove it again.
                slots.confirm_takeover(dev.as_ref(), hostid)?;
                if let Some(s) = &share {
                    s.set_lease(u64::from(hostid), writer.token, started);
                }
                let lease = Arc::new(Lease {
                    dev,
                    slots,
                    writer: Mutex::new(writer),
                    share,
                    counter: Mutex::new(counter),
                    validity: Mutex::new(Validity {
                        renewed_at_ms: started,
                        duration_ms: u64::from(duration_ms),
                    }),
                    lost: Mutex::new(None),
                    mark: Mutex::new(mark),
                    stop: Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new())),
                    renewer: Mutex::new(None),
                });
                let me = Arc::clone(&lease);
                let handle = crate::threads::spawn_quiet("pfs-lease", move || me.renew_loop())
                    .map_err(|e| CoreError::io("lease", "spawn renewal thread", 0, e))?;
                *lease.renewer.lock() = Some(handle);
                return Ok(lease);
            }
            // Someone else is taking it at the same time: withdraw, wait a
            // random while, and look again.
            slots.write(
                dev.as_ref(),
                &LeaseRecord::new(&writer, SlotState::Idle, next(&mut counter), wall_ms()),
            )?;
            round += 1;
            if round >= MAX_ROUNDS {
                return Err(CoreError::Busy {
                    what: format!(
                        "device {}: could not take the writer lease; {} kept competing for it",
                        dev.name(),
                        rivals[0].describe()
                    ),
                });
            }
            let cap = 5u64 << round.min(5);
            std::thread::sleep(Duration::from_millis(1 + random_u64() % cap));
        }
    }

    fn renew_loop(&self) {
        let (lock, cv) = &*self.stop;
        let period = Duration::from_millis((u64::from(self.duration_ms()) / 4).max(20));
        loop {
            {
                let stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                if *stopped {
                    break;
                }
                let stopped = match cv.wait_timeout(stopped, period) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
                if *stopped {
                    break;
                }
            }
            // Renewed without holding the stop flag's lock: a renewal that
            // finds the lease lost stops this very thread through it.
            if self.renew().is_err() {
                break;
            }
        }
    }

    fn duration_ms(&self) -> u32 {
        self.writer.lock().duration_ms
    }

    /// Our next heartbeat record in `state`.
    fn record(&self, state: SlotState) -> LeaseRecord {
        let w = *self.writer.lock();
        let mut c = self.counter.lock();
        *c = match &self.share {
            Some(s) => s.next_counter(u64::from(w.hostid), *c),
            None => *c + 1,
        };
        LeaseRecord::new(&w, state, *c, wall_ms())
    }

    /// Takes in a renewal another process of this machine made of the
    /// lease we share (a shared mount); `true` when one came in recently
    /// enough that ours can wait. A host whose lease the machine no longer
    /// records under our token was deposed (another host took the lease
    /// over and committed, see [`Share::depose`]): this lease is lost.
    fn take_shared_renewal(&self) -> bool {
        let Some(s) = &self.share else {
            return false;
        };
        let w = self.writer.lock();
        let (token, renewed) = s.lease(u64::from(w.hostid));
        if token != w.token {
            drop(w);
            self.lose(
                "another host took the writer lease over and committed; this host stopped writing",
            );
            return false;
        }
        let mut v = self.validity.lock();
        v.renewed_at_ms = v.renewed_at_ms.max(renewed);
        mono_ms().saturating_sub(renewed) < v.duration_ms / 8
    }

    /// Writes a new heartbeat while the lease still runs. A lease that ran
    /// out (the process or the device stalled) is not renewed here: the
    /// mount's next write proves it is still the writer first (see
    /// [`Lease::prove`]).
    fn renew(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(CoreError::Fenced { reason: why });
        }
        if self.take_shared_renewal() {
            return Ok(());
        }
        // Read after the checks: a renewal counts from when it started,
        // and only one that starts while the lease runs extends it.
        let started = mono_ms();
        if !self.validity.lock().may_write(started) {
            return Ok(());
        }
        let rec = self.record(SlotState::Held);
        match self.slots.write(self.dev.as_ref(), &rec) {
            Ok(()) => {
                self.published(started);
                Ok(())
            }
            Err(e) => {
                self.lose(&format!("renewing the writer lease failed: {e}"));
                Err(e)
            }
        }
    }

    /// Fails once this mount must not start a device write: with
    /// [`CoreError::Fenced`] when the lease is lost for good, with
    /// [`CoreError::LeaseLapsed`] when it ran out on this machine's
    /// monotonic clock (less a safety margin) and has to be proved again
    /// (`Lease::prove`). Costs no IO.
    pub fn check(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(CoreError::Fenced { reason: why });
        }
        self.take_shared_renewal();
        if let Some(why) = self.lost.lock().clone() {
            return Err(CoreError::Fenced { reason: why });
        }
        if self.validity.lock().may_write(mono_ms()) {
            Ok(())
        } else {
            Err(CoreError::LeaseLapsed)
        }
    }

    /// [`Lease::check`], and a lease that ran out during a stall (a slow
    /// flush, a paused process) is taken again as a newcomer would, our
    /// held slot standing for the intent, when no other host claims it.
    /// That proves no other host holds it *now*; the caller must still
    /// make sure that none committed meanwhile (the journal head is the
    /// one this host wrote last) and call [`Lease::lose`] otherwise.
    pub(crate) fn prove(&self) -> Result<()> {
        match self.check() {
            Err(CoreError::LeaseLapsed) => {}
            other => return other,
        }
        let lapsed = mono_ms().saturating_sub(self.validity.lock().renewed_at_ms);
        if matches!(self.revalidate(), Ok(true)) {
            return Ok(());
        }
        let mut why = format!(
            "the writer lease ran out {lapsed} ms after its last renewal (the process or the device stalled)"
        );
        let mut watch = Watch::new();
        if let Ok(all) = self.slots.read_all(self.dev.as_ref()) {
            if let Some(c) = live_claims(
                self.dev.as_ref(),
                &all,
                self.token(),
                self.sibling(),
                &mut watch,
            )
            .iter()
            .find(|c| c.held)
            {
                why.push_str(&format!("; {} holds it now", c.describe()));
            }
        }
        self.lose(&why);
        Err(CoreError::Fenced { reason: why })
    }

    /// Marks the lease lost for good: no write starts under it again, its
    /// renewals stop, and its slot says idle, so no other host has to wait
    /// it out (for a lease shared with other processes of this machine,
    /// only once the host no longer holds it: they may still write).
    pub(crate) fn lose(&self, why: &str) {
        {
            let mut lost = self.lost.lock();
            if lost.is_some() {
                return;
            }
            *lost = Some(why.to_owned());
        }
        self.stop_renewing();
        let give_up = match &self.share {
            None => true,
            Some(s) => {
                let w = *self.writer.lock();
                s.lease(u64::from(w.hostid)).0 != w.token
            }
        };
        if give_up {
            let rec = self.record(SlotState::Idle);
            let _ = self.slots.write(self.dev.as_ref(), &rec);
        }
    }

    /// Writes a new heartbeat, then reads every slot: valid again when no
    /// other host claims the lease (see [`Lease::prove`]).
    fn revalidate(&self) -> Result<bool> {
        let started = mono_ms();
        let rec = self.record(SlotState::Held);
        self.slots.write(self.dev.as_ref(), &rec)?;
        let all = self.slots.read_all(self.dev.as_ref())?;
        // Another host that took the lease over from this claim and has
        // let it go since claims nothing now; what it wrote meanwhile
        // (and a write of ours that landed after it, which may have put
        // back the journal head we last knew) must never be built on.
        let w = *self.writer.lock();
        if all.taken_over(w.hostid, w.token) {
            if let Some(s) = &self.share {
                // Every process of the host stops, and the next one to
                // mount takes the lease with a new token.
                s.depose(u64::from(w.hostid));
            }
            return Ok(false);
        }
        let rivals = live_claims(
            self.dev.as_ref(),
            &all,
            self.token(),
            self.sibling(),
            &mut Watch::new(),
        );
        if !rivals.is_empty() {
            return Ok(false);
        }
        self.published(started);
        Ok(self.validity.lock().may_write(mono_ms()))
    }

    fn token(&self) -> u64 {
        self.writer.lock().token
    }

    /// The host id whose slot the processes sharing this lease write.
    fn sibling(&self) -> Option<u32> {
        self.share.as_ref().map(|_| self.writer.lock().hostid)
    }

    /// Counts a heartbeat written at `started` (and tells the processes
    /// sharing the lease).
    fn published(&self, started: u64) {
        {
            // Released before `writer` is taken: `take_shared_renewal`
            // takes the two the other way round.
            let mut v = self.validity.lock();
            v.renewed_at_ms = v.renewed_at_ms.max(started);
        }
        if let Some(s) = &self.share {
            let w = self.writer.lock();
            s.set_lease(u64::from(w.hostid), w.token, started);
        }
    }

    /// How long (ms) writes may still start without another renewal.
    pub fn left_ms(&self) -> u64 {
        self.validity.lock().left_ms(mono_ms())
    }

    /// Stops renewing and marks the slot idle. A shared lease stays with
    /// the host while another process of this machine is mounted with it.
    pub fn release(&self) {
        self.stop_renewing();
        *self.lost.lock() = Some("the writer lease was released".into());
        // Dropped last: the slot says idle before the mark goes.
        let _mark = self.mark.lock().take();
        if let Some(s) = &self.share {
            let hostid = u64::from(self.writer.lock().hostid);
            if s.others_mounted(hostid) {
                return;
            }
            s.clear_lease(hostid);
        }
        let rec = self.record(SlotState::Idle);
        let _ = self.slots.write(self.dev.as_ref(), &rec);
    }

    /// Stops renewing without releasing (simulates a writer that hangs).
    pub fn stop_renewing(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.renewer.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// Marks host `hostid`'s slot idle when its last process of this machine
/// leaves without a lease of its own, while the machine still records the
/// host's lease (a parent whose forked children wrote and exited): the
/// lease would otherwise stay claimed until another host waited it out.
/// Only a slot that still carries the host's token from this machine, and
/// whose token no live process marks, is touched. The caller holds the
/// host's transaction lock.
pub(crate) fn release_abandoned(dev: &dyn Device, slots: Slots, hostid: u32, share: &Share) {
    let (token, _) = share.lease(u64::from(hostid));
    if token == 0 || crate::live::marked(dev, token) == Some(true) {
        return;
    }
    share.clear_lease(u64::from(hostid));
    let Ok(all) = slots.read_all(dev) else {
        return;
    };
    let Some(Some(rec)) = all.slots.get((hostid as usize).wrapping_sub(1)) else {
        return;
    };
    if rec.token.get() != token
        || rec.node.get() != node_id()
        || rec.slot_state() == SlotState::Idle
    {
        return;
    }
    let w = Writer {
        hostid,
        token,
        pid: rec.pid.get(),
        node: rec.node.get(),
        duration_ms: rec.duration_ms.get(),
        flags: rec.flags.get(),
    };
    let counter = share.next_counter(u64::from(hostid), rec.counter.get());
    let _ = slots.write(
        dev,
        &LeaseRecord::new(&w, SlotState::Idle, counter, wall_ms()),
    );
}

/// A test hook: when the environment variable `PFS_TEST_STOP_AT` names
/// `point`, the process stops itself with SIGSTOP there (a writer stalled
/// at a chosen step, for the lease tests); `point:N` stops only the N-th
/// time the process passes it. Does nothing otherwise.
pub(crate) fn stop_point(point: &str) {
    static WANT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let want = WANT.get_or_init(|| {
        let v = std::env::var("PFS_TEST_STOP_AT").ok()?;
        Some(match v.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(0)),
            None => (v, 0),
        })
    });
    let Some((p, nth)) = want else {
        return;
    };
    if p != point {
        return;
    }
    let passed = PASSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if *nth == 0 || passed == *nth {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}
