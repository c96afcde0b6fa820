//! Usage errors of `chunk`, `fscp`, `fstrim` and `tail` as the reference
//! reports them (golden cases `chunk-backup`, `fscp`, `fstrim`): the
//! command's own usage text on stdout and exit 255, or 22 where the
//! reference calls `exit(EINVAL)` (a second PBD name for `chunk` and
//! `fstrim`). What was wrong still goes to stderr, in clap's words.
//!
//! A command given no arguments at all is left to the general rule (exit 1),
//! as the reference prints its general usage and exits 1 then. A host id
//! the tool refuses (`-H 200`) gets the reference's general usage on stdout
//! and exit 1, whatever the command.

use crate::cli::Cli;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;
use std::ffi::OsString;
use std::io::Write;

/// The reference's general usage, printed on stdout when the host id is
/// refused; [`VERSION_LINE`] follows it.
pub const GENERAL: &str = "Usage: pfs [-H hostid] [-C|--cluster=clustername] [-t pfsd_timeout] <command> [options] pbdpaths
pfs has following commands
  help       show help info
  tree       list all files in this dir and its subdirs
  ls         list all direntries in this directory
  rmdir      remove an empty directory
  truncate   truncate file
  tail       read file tail incessantly
  fallocate  allocate block for file
  write      write file
  read       read file
  stat       show file info
  touch      create file
  chunk      chunk operations
  cp         copy file or dir
  du         display disk usage statistics
  dumpfs     dump pbd info or data
  dumple     dump log entries
  flushlog   flush log to pbd
  fscp       transfer pfs pbd data
  fstrim     trim filesystem
  info       show pfs meta info
  map        dump a file's block index
  mkdir      create dir
  growfs     grow filesystem
  mkfs       make filesystem
  rename     rename file
  rm         remove file or dir
  usedinfo   dump pbd info or data

";

/// The last line of the general usage: the reference names its build
/// there, we name ours.
pub const VERSION_LINE: &str = concat!("pfs version: pfs-rs ", env!("CARGO_PKG_VERSION"), "\n");

/// `pfs chunk`'s usage, as the reference prints it.
pub const CHUNK: &str = "pfs chunk [-m|--mode=<backup|restore>] [-c|--chunkid=<chunkid>] \
[-e|--endchunkid=<chunkid>] [-f|--force] pbdno-version
    -m, --mode: work mode:
        backup: backup a chunk into stdout
        restore: restore a chunk from stdin
    -c, --chunkid: chunkid, start from 0
    -e, --endchunkid: endchunkid, bigger than chunkid, chunks between [chunkid, endchunkid) will be processed
    -f, --force: backup/restore forcedly (default is disabled)
";

/// `pfs fscp`'s usage, as the reference prints it.
pub const FSCP: &str = "pfs fscp [-w ioworkernum] [-n nfragment] [-c ] \
[-S|--src_cluster=src_cluster] [-D|--dst_cluster=dst_cluster] src_pbdname dst_pbdname
  -h, --help:             show this help message
  -w, --nworker:          I/O worker number @ [2, 36]
  -n, --nfrag:            pending fragments number when copying a block @ [8, 256]
  -S, --src_cluster:      source cluster name
  -D, --dst_cluster:      destination cluster name
  -c, --crc_check:        it will compare src pbd block and dest pbd block crc num. \
if crc check failed, we must check the error! crc check enhanced fscp reliability,\
but it will increase fscp time cost.

copy the whole file system from src to dst, one I/O worker transfers one chunk.
";

/// `pfs fstrim`'s usage, as the reference prints it.
pub const FSTRIM: &str = "pfs fstrim [options] pbdname
  -b, --beginid:           beginning chunk id to discard (default is the first chunk)
  -e, --endid:             end chunk id to discard (default is the last chunk)
  -a, --all:               discard all unused blocks (default is disabled)
  -q, --quiet:             don't show warning tips (default is disabled)
discard unused blocks of chunks in [beginckid, endckid),
fstrim must be the ONLY ONE writer of current filesystem,
hostid must be set explicitly by '-H'.
";

/// `pfs tail`'s usage, as the reference prints it.
pub const TAIL: &str = "  tail file
  $ pfs tail /1/mydir/newfile
";

/// Exit code of a usage error of these commands.
pub const EXIT: u8 = 255;
/// Exit code where the reference calls `exit(EINVAL)`.
pub const EXIT_EINVAL: u8 = 22;

/// The usage text of `command`, for the commands this module handles.
fn text_of(command: &str) -> Option<&'static str> {
    match command {
        "chunk" => Some(CHUNK),
        "fscp" => Some(FSCP),
        "fstrim" => Some(FSTRIM),
        "tail" => Some(TAIL),
        _ => None,
    }
}

/// The subcommand word of `args` and how many arguments follow it, read
/// with the top-level options' own definitions (which of them take a
/// value).
pub fn subcommand_of(args: &[OsString]) -> Option<(String, usize)> {
    let cli = Cli::command();
    let top = |long: Option<&str>, short: Option<char>| {
        cli.get_arguments().find(|a| {
            (long.is_some() && a.get_long() == long) || (short.is_some() && a.get_short() == short)
        })
    };
    let mut it = args.iter().enumerate().skip(1);
    while let Some((i, a)) = it.next() {
        let s = a.to_str()?;
        if s == "--" {
            return None;
        }
        let (arg, inline) = if let Some(long) = s.strip_prefix("--") {
            (top(long.split('=').next(), None), long.contains('='))
        } else if let Some(short) = s.strip_prefix('-').filter(|r| !r.is_empty()) {
            (top(None, short.chars().next()), short.len() > 1)
        } else {
            return Some((s.to_owned(), args.len() - i - 1));
        };
        if arg.is_some_and(|a| a.get_action().takes_values()) && !inline {
            it.next();
        }
    }
    None
}

/// Whether a clap error is about a top-level option (`-H 200`): those are
/// the tool's, not the command's.
fn about_top_level(invalid: &[String]) -> bool {
    let cli = Cli::command();
    invalid.iter().any(|v| {
        let name = v.split([' ', '=']).next().unwrap_or("");
        cli.get_arguments().any(|a| {
            a.get_long().is_some_and(|l| name == format!("--{l}"))
                || a.get_short().is_some_and(|c| name == format!("-{c}"))
        })
    })
}

/// Reports a failed parse of `args` the reference's way when it is a usage
/// error of `chunk`, `fscp`, `fstrim` or `tail`; returns the exit code, or
/// `None` to leave the error to the general rule.
pub fn report(
    args: &[OsString],
    e: &clap::Error,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Option<u8> {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let invalid: Vec<String> = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    if e.kind() == ErrorKind::ValueValidation && invalid.iter().any(|v| v.starts_with("--hostid")) {
        let _ = out.write_all(GENERAL.as_bytes());
        let _ = out.write_all(VERSION_LINE.as_bytes());
        let _ = out.flush();
        let _ = write!(err, "{}", e.render());
        return Some(crate::exit::USAGE);
    }
    let (command, following) = subcommand_of(args)?;
    let text = text_of(&command)?;
    if following == 0 {
        return None;
    }
    if about_top_level(&invalid) {
        return None;
    }
    let extra_name = e.kind() == ErrorKind::UnknownArgument
        && invalid.first().is_some_and(|v| !v.starts_with('-'));
    let (stdout, code) = match (command.as_str(), extra_name) {
        // `exit(EINVAL)` after the usage when more than one PBD is named.
        ("chunk" | "fstrim", true) => (text.to_owned(), EXIT_EINVAL),
        // The reference mounts the first path and then fails on the rest.
        ("tail", true) => ("tail failed: Invalid argument\n".to_owned(), EXIT),
        // With the source but no destination the reference's fscp runs,
        // prints its usage and fails (with "impl specific": we give the
        // reason).
        ("fscp", false)
            if e.kind() == ErrorKind::MissingRequiredArgument
                && invalid.iter().all(|v| v == "<DST>") =>
        {
            (format!("{text}fscp failed: Invalid argument\n"), EXIT)
        }
        _ => (text.to_owned(), EXIT),
    };
    let _ = out.write_all(stdout.as_bytes());
    let _ = out.flush();
    let _ = write!(err, "{}", e.render());
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn finds_the_subcommand_after_top_level_options() {
        assert_eq!(
            subcommand_of(&os(&["pfs", "-H", "1", "fstrim", "-q"])),
            Some(("fstrim".into(), 1))
        );
        assert_eq!(
            subcommand_of(&os(&["pfs", "--device-dir", "/d", "-C", "disk", "chunk"])),
            Some(("chunk".into(), 0))
        );
        assert_eq!(
            subcommand_of(&os(&["pfs", "--device-dir=/d", "-H1", "fscp", "a", "b"])),
            Some(("fscp".into(), 2))
        );
        assert_eq!(
            subcommand_of(&os(&["pfs", "--force", "--json", "tail", "/x/y"])),
            Some(("tail".into(), 1))
        );
        assert_eq!(subcommand_of(&os(&["pfs", "-H", "1"])), None);
    }

    #[test]
    fn top_level_option_errors_are_not_the_commands() {
        assert!(about_top_level(&["--hostid <HOSTID>".into()]));
        assert!(!about_top_level(&["--chunkid <CHUNKID>".into()]));
        assert!(!about_top_level(&["nvme2n1".into()]));
    }
}
