//! Copies that SIGINT, SIGTERM or SIGHUP stop remove their temporary file
//! before the process ends.
//!
//! [`install`] blocks the three signals in the command's thread (and so in
//! every thread it starts) and leaves them to one thread that waits for
//! them. When one comes and no temporary file exists, the process ends at
//! once, killed by that signal as it would have been. While a copy holds a
//! temporary file ([`temp`]), the signal only marks the copy as stopped:
//! the copy notices within one 4 MiB piece ([`check`]), removes its
//! temporary file and then ends the process the same way ([`finish`]). A
//! second signal ends it at once (the next copy into that directory
//! removes what is left, as after a crash).

use crate::cmd::copy::CopyError;
use nix::sys::signal::{SigSet, Signal};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// The signal that stopped the copy, 0 while none has.
static STOPPED: AtomicI32 = AtomicI32::new(0);
/// Temporary files that exist now.
static TEMPS: Mutex<usize> = Mutex::new(0);

fn signals() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGINT);
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGHUP);
    s
}

/// Takes over the three signals. Must run before the command starts any
/// thread (the threads inherit the blocked set).
pub fn install() -> Result<(), String> {
    let sigs = signals();
    sigs.thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    std::thread::Builder::new()
        .name("pfs-signals".into())
        .spawn(move || wait(sigs))
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

fn wait(sigs: SigSet) {
    let Ok(sig) = sigs.wait() else { return };
    {
        let temps = TEMPS.lock().unwrap_or_else(|p| p.into_inner());
        STOPPED.store(sig as i32, Ordering::SeqCst);
        if *temps == 0 {
            die(sig);
        }
    }
    if sigs.wait().is_ok() {
        die(sig);
    }
}

/// Ends the process as `sig` would have: the parent sees it killed by
/// the signal.
fn die(sig: Signal) -> ! {
    let mut one = SigSet::empty();
    one.add(sig);
    let _ = one.thread_unblock();
    let _ = nix::sys::signal::raise(sig);
    std::process::exit(128 + sig as i32)
}

/// The signal that stopped the copy, if one did.
pub fn stopped() -> Option<Signal> {
    match STOPPED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// `Err` once a signal stopped the copy.
pub fn check() -> Result<(), CopyError> {
    match stopped() {
        None => Ok(()),
        Some(sig) => Err(CopyError::new(libc::EINTR, format!("stopped by {sig}"))),
    }
}

/// A temporary file that exists: a signal leaves it to the copy to remove
/// (until this is dropped).
pub struct Temp(());

impl Drop for Temp {
    fn drop(&mut self) {
        let mut n = TEMPS.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
    }
}

/// Announces a temporary file about to be made; refused once a signal
/// stopped the copy.
pub fn temp() -> Result<Temp, CopyError> {
    let mut n = TEMPS.lock().unwrap_or_else(|p| p.into_inner());
    check()?;
    *n += 1;
    Ok(Temp(()))
}

/// After a failed copy: when a signal stopped it (its temporary file is
/// gone by now), says so and ends the process as the signal would have.
pub fn finish(cmd: &str) {
    if let Some(sig) = stopped() {
        eprintln!("pfs: {cmd}: stopped by {sig}; its temporary file was removed");
        die(sig);
    }
}
