//! `pfs`: the PFS command-line tool, compatible with the reference's
//! `pfs [-H hostid] [-C cluster] <command> [options] <args>`.

use std::io::Write;
use std::process::ExitCode;

mod cli;
mod cmd;
mod dump;
mod exit;
mod fuse;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = cli::run(&args, &mut stdout.lock(), &mut stderr.lock());
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}
