//! `pfs`: the PFS command-line tool, compatible with the reference's
//! `pfs [-H hostid] [-C cluster] <command> [options] <args>`.

use std::io::Write;
use std::process::ExitCode;

mod cli;
mod cmd;
mod dump;
mod exit;
mod fuse;
mod progress;
mod usage;

/// Stack of the thread that runs the command. `tree`, `du` and `rm -r`
/// recurse once per directory level, and a tree is at most 2047 levels deep
/// (a 4095-byte path; deeper is refused as corruption): a few MiB in a
/// debug build. The margin keeps that true whatever the main thread's
/// stack limit is; only the pages used are ever committed.
const COMMAND_STACK: usize = 64 << 20;

fn run() -> u8 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let stdout = std::io::stdout();
    // Stderr is not held locked: progress (see `progress`) writes to it
    // from its own thread while the command runs.
    let code = cli::run(&args, &mut stdout.lock(), &mut std::io::stderr());
    let _ = std::io::stdout().flush();
    code
}

fn main() -> ExitCode {
    let code = match std::thread::Builder::new()
        .name("pfs".into())
        .stack_size(COMMAND_STACK)
        .spawn(run)
    {
        Ok(t) => {
            // Termination signals go to the command's thread, which either
            // dies of them as a process would or takes them itself (`tail`,
            // `mount`): this waiting thread must not be the one to get them.
            let mut sigs = nix::sys::signal::SigSet::empty();
            sigs.add(nix::sys::signal::Signal::SIGINT);
            sigs.add(nix::sys::signal::Signal::SIGTERM);
            sigs.add(nix::sys::signal::Signal::SIGHUP);
            let _ = sigs.thread_block();
            t.join().unwrap_or(exit::FAILURE)
        }
        // No thread (a tight memory limit): run on this one.
        Err(_) => run(),
    };
    ExitCode::from(code)
}
