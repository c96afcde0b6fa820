//! `pfs tail`: prints what a writer appends to a file, as the reference
//! does: nothing at the start, then the bytes from the size seen last time
//! up to the new size whenever the size changes (a file that shrinks just
//! sets the new starting point). The read-only mount follows the writer's
//! journal on every look.
//!
//! SIGINT and SIGTERM end it cleanly (output flushed, exit 0); a closed
//! output pipe ends it quietly too. A directory is refused (the reference
//! waits on it forever).

use super::{failed, parse_path, Context};
use crate::cli::TailArgs;
use crate::exit::{CmdResult, Failure};
use nix::sys::signal::{SigSet, Signal};
use pfs_core::Mode;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the file's size is looked at (the reference: every second).
const POLL: Duration = Duration::from_millis(200);
/// Bytes read per piece.
const PIECE: usize = 1 << 20;

/// `pfs tail`.
pub fn tail(ctx: &Context, a: &TailArgs, out: &mut dyn Write) -> CmdResult {
    // Signals are taken by a waiting thread instead of killing us, so the
    // loop can stop between pieces. Blocking them must happen before any
    // other thread starts.
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGINT);
    sigs.add(Signal::SIGTERM);
    sigs.thread_block()
        .map_err(|e| Failure::new(crate::exit::FAILURE, format!("tail: blocking signals: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            if sigs.wait().is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }

    let p = parse_path("tail", &a.path, out)?;
    let m = ctx.mount("tail", &p.pbd, Mode::ReadOnly)?;
    let ino = m.resolve(p.inner()).map_err(|e| failed("tail", out, &e))?;
    let st = m.getattr(ino).map_err(|e| failed("tail", out, &e))?;
    if st.is_dir() {
        return Err(failed(
            "tail",
            out,
            &pfs_core::CoreError::IsDir {
                path: super::lossy(&a.path),
            },
        ));
    }
    let mut seen = st.size;
    let mut buf = vec![0u8; PIECE];
    while !stop.load(Ordering::SeqCst) {
        let size = m.getattr(ino).map_err(|e| failed("tail", out, &e))?.size;
        if size == seen {
            std::thread::sleep(POLL);
            continue;
        }
        let mut pos = seen;
        while pos < size && !stop.load(Ordering::SeqCst) {
            let want = ((size - pos) as usize).min(PIECE);
            let n = m
                .read_at(ino, &mut buf[..want], pos)
                .map_err(|e| failed("tail", out, &e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            pos += n as u64;
        }
        out.flush()?;
        seen = size;
    }
    out.flush()?;
    Ok(())
}
