//! Taking, renewing, checking and releasing the single-writer lease on a
//! device: the IO side of [`pfs_paxos::lease`], whose module doc describes
//! the protocol.

use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use parking_lot::{Condvar, Mutex};
use pfs_format::layout::SECTOR_SIZE;
use pfs_paxos::lease::{slot_offset, LeaseRecord, Liveness, SlotState, Validity, Watch, Writer};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default writer lease duration, in milliseconds.
pub const DEFAULT_LEASE_MS: u32 = 10_000;

/// Milliseconds on this machine's monotonic clock (since a process-wide
/// origin). Only ever compared with other readings of this process.
pub(crate) fn mono_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
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

    /// Reads every slot in one request.
    fn read_all(&self, dev: &dyn Device) -> Result<Vec<Option<LeaseRecord>>> {
        let n = self.nhosts.max(1) as usize;
        let mut buf = AlignedBuf::new(n * SECTOR_SIZE as usize);
        dev.read_at(buf.as_mut_slice(), self.bda(1))?;
        Ok(buf
            .as_slice()
            .chunks(SECTOR_SIZE as usize)
            .enumerate()
            .map(|(k, s)| LeaseRecord::decode(s).filter(|r| r.hostid.get() == k as u32 + 1))
            .collect())
    }

    fn write(&self, dev: &dyn Device, rec: &LeaseRecord) -> Result<()> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        sect.as_mut_slice()[..64].copy_from_slice(&rec.to_bytes());
        dev.write_at(sect.as_slice(), self.bda(rec.hostid.get()))?;
        dev.sync()
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

/// The live claims of hosts other than the one holding `my_token`.
fn live_claims(slots: &[Option<LeaseRecord>], my_token: u64, watch: &mut Watch) -> Vec<Claim> {
    let (me, now) = (node_id(), mono_ms());
    slots
        .iter()
        .flatten()
        .filter(|r| r.token.get() != my_token)
        .filter_map(|r| {
            let local_dead = r.node.get() == me && !pid_alive(r.pid.get());
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

/// Waits until no other host holds or is taking the writer lease. A live
/// holder is refused at once, naming it, unless `force`: then its heartbeat
/// is watched until it has been silent for its lease plus the margin (and
/// refused if it keeps beating for three lease periods). A contender that is
/// only taking the lease is waited for. Writes nothing.
pub(crate) fn wait_free(
    dev: &dyn Device,
    slots: Slots,
    my_token: u64,
    force: bool,
    watch: &mut Watch,
) -> Result<()> {
    let started = mono_ms();
    loop {
        let all = slots.read_all(dev)?;
        let claims = live_claims(&all, my_token, watch);
        let Some(first) = claims.iter().find(|c| c.held).or(claims.first()) else {
            return Ok(());
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
        let claims = live_claims(&all, 0, &mut watch);
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
    dev: Arc<dyn Device>,
    slots: Slots,
    writer: Writer,
    counter: Mutex<u64>,
    validity: Mutex<Validity>,
    lost: Mutex<Option<String>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("hostid", &self.writer.hostid)
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
    pub(crate) fn acquire(
        dev: Arc<dyn Device>,
        slots: Slots,
        hostid: u32,
        duration_ms: u32,
        force: bool,
        watch: &mut Watch,
    ) -> Result<Arc<Lease>> {
        let writer = Writer {
            hostid,
            token: random_u64() | 1,
            pid: std::process::id(),
            node: node_id(),
            duration_ms,
        };
        let mut counter = random_u64() >> 16;
        let mut round = 0u32;
        loop {
            wait_free(dev.as_ref(), slots, writer.token, force, watch)?;
            counter += 1;
            slots.write(
                dev.as_ref(),
                &LeaseRecord::new(&writer, SlotState::Intent, counter, wall_ms()),
            )?;
            let all = slots.read_all(dev.as_ref())?;
            let rivals = live_claims(&all, writer.token, watch);
            if rivals.is_empty() {
                counter += 1;
                let started = mono_ms();
                slots.write(
                    dev.as_ref(),
                    &LeaseRecord::new(&writer, SlotState::Held, counter, wall_ms()),
                )?;
                let lease = Arc::new(Lease {
                    dev,
                    slots,
                    writer,
                    counter: Mutex::new(counter),
                    validity: Mutex::new(Validity {
                        renewed_at_ms: started,
                        duration_ms: u64::from(duration_ms),
                    }),
                    lost: Mutex::new(None),
                    stop: Arc::new((Mutex::new(false), Condvar::new())),
                    renewer: Mutex::new(None),
                });
                let me = Arc::clone(&lease);
                let handle = std::thread::Builder::new()
                    .name("pfs-lease".into())
                    .spawn(move || me.renew_loop())
                    .map_err(|e| CoreError::io("lease", "spawn renewal thread", 0, e))?;
                *lease.renewer.lock() = Some(handle);
                return Ok(lease);
            }
            // Someone else is taking it at the same time: withdraw, wait a
            // random while, and look again.
            counter += 1;
            slots.write(
                dev.as_ref(),
                &LeaseRecord::new(&writer, SlotState::Idle, counter, wall_ms()),
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
        let period = Duration::from_millis((u64::from(self.writer.duration_ms) / 4).max(20));
        let mut stopped = lock.lock();
        while !*stopped {
            cv.wait_for(&mut stopped, period);
            if *stopped {
                break;
            }
            if self.renew().is_err() {
                break;
            }
        }
    }

    /// Writes a new heartbeat, if the lease has not run out meanwhile.
    fn renew(&self) -> Result<()> {
        self.check()?;
        let mut c = self.counter.lock();
        *c += 1;
        let started = mono_ms();
        let rec = LeaseRecord::new(&self.writer, SlotState::Held, *c, wall_ms());
        match self.slots.write(self.dev.as_ref(), &rec) {
            Ok(()) => {
                let mut v = self.validity.lock();
                v.renewed_at_ms = v.renewed_at_ms.max(started);
                Ok(())
            }
            Err(e) => {
                *self.lost.lock() = Some(format!("renewing the writer lease failed: {e}"));
                Err(e)
            }
        }
    }

    /// Fails once this mount must stop writing: the lease ran out on this
    /// machine's monotonic clock (less a safety margin) because it could
    /// not be renewed in time, or renewing failed. Costs no IO.
    pub fn check(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(CoreError::Fenced { reason: why });
        }
        let v = *self.validity.lock();
        let now = mono_ms();
        if v.may_write(now) {
            return Ok(());
        }
        // A stall (a slow flush, a paused process) is not a takeover: take
        // the lease again as a newcomer would, our held slot standing for
        // the intent, and go on if no other host claims it. Anything another
        // writer committed meanwhile is still caught by the commit's check
        // of the leader record.
        if self.lost.lock().is_none() && matches!(self.revalidate(), Ok(true)) {
            return Ok(());
        }
        let mut why = format!(
            "the writer lease ran out {} ms after its last renewal (the process or the device stalled)",
            now.saturating_sub(v.renewed_at_ms)
        );
        let mut watch = Watch::new();
        if let Ok(all) = self.slots.read_all(self.dev.as_ref()) {
            if let Some(c) = live_claims(&all, self.writer.token, &mut watch)
                .iter()
                .find(|c| c.held)
            {
                why.push_str(&format!("; {} holds it now", c.describe()));
            }
        }
        *self.lost.lock() = Some(why.clone());
        Err(CoreError::Fenced { reason: why })
    }

    /// Writes a new heartbeat, then reads every slot: valid again when no
    /// other host claims the lease (see [`Lease::check`]).
    fn revalidate(&self) -> Result<bool> {
        let started = mono_ms();
        {
            let mut c = self.counter.lock();
            *c += 1;
            let rec = LeaseRecord::new(&self.writer, SlotState::Held, *c, wall_ms());
            self.slots.write(self.dev.as_ref(), &rec)?;
        }
        let all = self.slots.read_all(self.dev.as_ref())?;
        if !live_claims(&all, self.writer.token, &mut Watch::new()).is_empty() {
            return Ok(false);
        }
        let mut v = self.validity.lock();
        v.renewed_at_ms = v.renewed_at_ms.max(started);
        Ok(v.may_write(mono_ms()))
    }

    /// How long (ms) writes may still start without another renewal.
    pub fn left_ms(&self) -> u64 {
        self.validity.lock().left_ms(mono_ms())
    }

    /// Stops renewing and marks the slot idle.
    pub fn release(&self) {
        self.stop_renewing();
        let mut c = self.counter.lock();
        *c += 1;
        let rec = LeaseRecord::new(&self.writer, SlotState::Idle, *c, wall_ms());
        let _ = self.slots.write(self.dev.as_ref(), &rec);
        *self.lost.lock() = Some("the writer lease was released".into());
    }

    /// Stops renewing without releasing (simulates a writer that hangs).
    pub fn stop_renewing(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock() = true;
        cv.notify_all();
        if let Some(h) = self.renewer.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// A test hook: when the environment variable `PFS_TEST_STOP_AT` names
/// `point`, the process stops itself with SIGSTOP there (a writer stalled
/// at a chosen step, for the lease tests). Does nothing otherwise.
pub(crate) fn stop_point(point: &str) {
    static WANT: OnceLock<Option<String>> = OnceLock::new();
    let want = WANT.get_or_init(|| std::env::var("PFS_TEST_STOP_AT").ok());
    if want.as_deref() == Some(point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

/// What mkfs and growfs check before writing to a formatted device: no
/// host holds or is taking the writer lease (see [`ensure_no_writer`]).
/// A device whose metadata cannot be read has no lease to respect; a
/// device read error is returned.
pub(crate) fn refuse_live_writer(dev: &dyn Device) -> Result<()> {
    let found = crate::meta::MetaImage::load(dev).and_then(|meta| {
        let j = crate::meta::Journal::locate(dev, &meta)?;
        Ok(Slots::of(&j.leader, j.leader_bda))
    });
    match found {
        Ok(slots) => ensure_no_writer(dev, slots),
        Err(e @ CoreError::Io { .. }) => Err(e),
        Err(_) => Ok(()),
    }
}
