//! Threads this library starts inside its callers' processes. A database
//! server that links the C SDK runs its signal handlers on its own threads
//! and expects no others to take them: every helper thread here starts
//! with all signals blocked (a thread inherits its creator's mask, so the
//! creator blocks them for the moment of the spawn).

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use std::thread::{JoinHandle, Scope, ScopedJoinHandle};

/// Starts `f` on a thread of scope `s` named `name`, with every signal
/// blocked on it; `None` when no thread could be had (the caller then does
/// the work itself).
pub(crate) fn spawn_scoped_quiet<'scope, 'env, T: Send + 'scope>(
    s: &'scope Scope<'scope, 'env>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Option<ScopedJoinHandle<'scope, T>> {
    quietly(|| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(s, f)
            .ok()
    })
}

/// Starts `f` on a thread of its own named `name`, with every signal
/// blocked on it.
pub(crate) fn spawn_quiet<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    quietly(|| std::thread::Builder::new().name(name.into()).spawn(f))
}

/// Runs `spawn` with every signal blocked on the calling thread (which the
/// thread it starts inherits), then puts the caller's mask back.
fn quietly<R>(spawn: impl FnOnce() -> R) -> R {
    let mut old = SigSet::empty();
    let masked = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .is_ok();
    let r = spawn();
    if masked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    fn mine() -> SigSet {
        let mut m = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut m)).unwrap();
        m
    }

    fn all_blocked(m: &SigSet) {
        for sig in [
            Signal::SIGUSR1,
            Signal::SIGTERM,
            Signal::SIGALRM,
            Signal::SIGINT,
        ] {
            assert!(m.contains(sig), "{sig} not blocked on the helper");
        }
    }

    #[test]
    fn a_helper_thread_blocks_every_signal_and_its_creator_keeps_its_mask() {
        let before = mine();
        let theirs = std::thread::scope(|s| {
            spawn_scoped_quiet(s, "pfs-test", mine)
                .unwrap()
                .join()
                .unwrap()
        });
        all_blocked(&theirs);
        assert_eq!(mine(), before);
        all_blocked(&spawn_quiet("pfs-test", mine).unwrap().join().unwrap());
        assert_eq!(mine(), before);
    }
}
