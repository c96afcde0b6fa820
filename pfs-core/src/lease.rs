//! Taking, renewing, checking and releasing the single-writer lease
//! ([`pfs_paxos::lease`]) on a device.

use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use parking_lot::{Condvar, Mutex};
use pfs_format::layout::SECTOR_SIZE;
use pfs_paxos::lease::{LeaseRecord, LeaseState, LEASE_OFFSET};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default lease duration; `PFS_LEASE_MS` overrides it.
pub const DEFAULT_LEASE_MS: u32 = 10_000;

/// The lease duration in effect.
pub fn lease_ms_from_env() -> u32 {
    std::env::var("PFS_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v: &u32| v >= 100)
        .unwrap_or(DEFAULT_LEASE_MS)
}

fn now_ms() -> u64 {
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

fn random_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// A lease this mount holds.
pub struct Lease {
    dev: Arc<dyn Device>,
    bda: u64,
    hostid: u32,
    token: u64,
    duration_ms: u32,
    counter: Mutex<u64>,
    lost: Mutex<Option<String>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

fn read_record(dev: &dyn Device, bda: u64) -> Result<Option<LeaseRecord>> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    dev.read_at(sect.as_mut_slice(), bda)?;
    Ok(LeaseRecord::decode(sect.as_slice()))
}

fn write_record(dev: &dyn Device, bda: u64, r: &LeaseRecord) -> Result<()> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    sect.as_mut_slice()[..64].copy_from_slice(&r.to_bytes());
    dev.write_at(sect.as_slice(), bda)?;
    dev.sync()
}

impl Lease {
    /// Waits until no other mount holds a live lease in the `.pfs-paxos`
    /// block at `paxos_bda`: a live lease is refused at once, naming its
    /// holder, unless `force`, which waits for it to expire (up to two lease
    /// periods). Writes nothing.
    pub fn wait_free(
        dev: &dyn Device,
        paxos_bda: u64,
        force: bool,
        duration_ms: u32,
    ) -> Result<()> {
        let bda = paxos_bda + LEASE_OFFSET;
        let deadline = now_ms() + 2 * u64::from(duration_ms) + 1000;
        loop {
            let rec = read_record(dev, bda)?;
            match LeaseRecord::judge_local(rec.as_ref(), 0, now_ms(), node_id(), &pid_alive) {
                LeaseState::Free | LeaseState::Expired { .. } | LeaseState::Mine => return Ok(()),
                LeaseState::Live {
                    holder,
                    pid,
                    until_ms,
                } => {
                    if !force || now_ms() > deadline {
                        return Err(CoreError::Busy {
                            what: format!(
                                "device {} is mounted read-write by host {holder} (pid {pid}); its lease runs {} ms more{}",
                                dev.name(),
                                until_ms.saturating_sub(now_ms()),
                                if force {
                                    " and it keeps renewing"
                                } else {
                                    "; use --force to take over once it expires"
                                }
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(
                        (until_ms.saturating_sub(now_ms()) + 50).min(500),
                    ));
                }
            }
        }
    }

    /// Takes the lease (checking once more that nobody holds it live) and
    /// starts renewing it in the background.
    pub fn acquire(
        dev: Arc<dyn Device>,
        paxos_bda: u64,
        hostid: u32,
        duration_ms: u32,
    ) -> Result<Arc<Lease>> {
        Lease::wait_free(dev.as_ref(), paxos_bda, false, duration_ms)?;
        let lease = Arc::new(Lease {
            dev,
            bda: paxos_bda + LEASE_OFFSET,
            hostid,
            token: random_token(),
            duration_ms,
            counter: Mutex::new(0),
            lost: Mutex::new(None),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            renewer: Mutex::new(None),
        });
        lease.renew()?;
        let me = Arc::clone(&lease);
        let handle = std::thread::Builder::new()
            .name("pfs-lease".into())
            .spawn(move || me.renew_loop())
            .map_err(|e| CoreError::io("lease", "spawn renewal thread", 0, e))?;
        *lease.renewer.lock() = Some(handle);
        Ok(lease)
    }

    fn renew_loop(&self) {
        let (lock, cv) = &*self.stop;
        let period = Duration::from_millis(u64::from(self.duration_ms / 3).max(30));
        let mut stopped = lock.lock();
        while !*stopped {
            cv.wait_for(&mut stopped, period);
            if *stopped {
                break;
            }
            if self.check().is_err() || self.renew().is_err() {
                break;
            }
        }
    }

    /// Rewrites the lease with a fresh time stamp.
    pub fn renew(&self) -> Result<()> {
        let mut c = self.counter.lock();
        *c += 1;
        let r = LeaseRecord::held_on(
            self.hostid,
            self.token,
            std::process::id(),
            node_id(),
            *c,
            now_ms(),
            self.duration_ms,
        );
        write_record(self.dev.as_ref(), self.bda, &r)
    }

    /// Fails when another mount has taken the lease (this mount must then
    /// stop writing).
    pub fn check(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(CoreError::Fenced { reason: why });
        }
        let rec = read_record(self.dev.as_ref(), self.bda)?;
        match LeaseRecord::judge(rec.as_ref(), self.token, now_ms()) {
            LeaseState::Mine => Ok(()),
            other => {
                let why = match other {
                    LeaseState::Live { holder, .. } | LeaseState::Expired { holder } => {
                        format!("the writer lease was taken over by host {holder}")
                    }
                    _ => "the writer lease was released by someone else".to_owned(),
                };
                *self.lost.lock() = Some(why.clone());
                Err(CoreError::Fenced { reason: why })
            }
        }
    }

    /// Stops renewing and frees the lease if it is still ours.
    pub fn release(&self) {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock() = true;
            cv.notify_all();
        }
        if let Some(h) = self.renewer.lock().take() {
            let _ = h.join();
        }
        if self.check().is_ok() {
            let _ = write_record(self.dev.as_ref(), self.bda, &LeaseRecord::free(now_ms()));
        }
    }

    /// Stops renewing without releasing (simulates a writer that hangs).
    pub fn stop_renewing(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock() = true;
        cv.notify_all();
        if let Some(h) = self.renewer.lock().take() {
            let _ = h.join();
        }
    }
}
