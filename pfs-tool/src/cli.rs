//! Command-line parsing and dispatch.

use crate::cmd;
use crate::exit::{Failure, USAGE};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// The PFS command-line tool.
///
/// A PBD name `nvme1n1` means the block device `/dev/nvme1n1` (`mapper_x`
/// means `/dev/mapper/x`). With `--device-dir DIR` or `PFS_DEVICE_DIR=DIR`
/// it means the file `DIR/nvme1n1` instead, so a plain (sparse) file can hold
/// a PFS: `truncate -s 10G DIR/nvme1n1 && pfs --device-dir DIR mkfs nvme1n1`.
/// `rbd:<pool>:<image>` is a Ceph RBD image, reached through librbd with the
/// configuration file in `PFS_RBD_CONF` as client `PFS_RBD_USER` (`admin`).
#[derive(Debug, Parser)]
#[command(name = "pfs", version)]
pub struct Cli {
    /// Host id to mount with, 1 to 127 as in the reference's tool (0: the
    /// filesystem's host count, the reference's default).
    #[arg(short = 'H', long = "hostid", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..128))]
    pub hostid: u32,
    /// Cluster name; only `disk` (local block devices or files) exists.
    #[arg(short = 'C', long = "cluster", default_value = "disk")]
    pub cluster: String,
    /// pfsd timeout, accepted for compatibility (no pfsd is used).
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u64>,
    /// Take over the writer lease of a mount that stopped renewing it
    /// (waits for it to expire).
    #[arg(long = "force")]
    pub force: bool,
    /// `--json` before the command (the commands that have a JSON form
    /// take it after their name too, and list it in their help).
    #[arg(long = "json", hide = true)]
    pub json: bool,
    /// Directory holding the devices (files named after their PBD).
    #[arg(long = "device-dir", env = "PFS_DEVICE_DIR", value_name = "DIR")]
    pub device_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a filesystem.
    Mkfs(MkfsArgs),
    /// Grow a filesystem onto chunks the device gained.
    Growfs(GrowfsArgs),
    /// Dump chunk headers and object counts, or meta objects (-m).
    Dumpfs(DumpfsArgs),
    /// Dump journal log entries.
    Dumple(DumpleArgs),
    /// Show allocation counts.
    Info(Json<PbdArg>),
    /// List used objects of one type per chunk.
    Usedinfo(Json<UsedinfoArgs>),
    /// List a directory.
    Ls(Json<PathArg>),
    /// Show a directory tree.
    Tree(Json<TreeArgs>),
    /// Show a file's status.
    Stat(Json<PathArg>),
    /// Write a file's bytes to stdout.
    Read(ReadArgs),
    /// Show a file's blocks.
    Map(MapArgs),
    /// Show disk usage.
    Du(Json<DuArgs>),
    /// Apply the journal to the metasets (checkpoint).
    Flushlog(PbdArg),
    /// Create a file (an existing file is left as it is).
    Touch(PathArg),
    /// Create a directory.
    Mkdir(MkdirArgs),
    /// Write stdin into a file.
    Write(WriteArgs),
    /// Set a file's size.
    Truncate(TruncateArgs),
    /// Allocate blocks for a file range.
    Fallocate(FallocateArgs),
    /// Remove files (and directories with -r).
    Rm(RmArgs),
    /// Remove an empty directory.
    Rmdir(PathArg),
    /// Rename a file or directory.
    Rename(RenameArgs),
    /// Check the metadata's consistency (not in the reference).
    Fsck(Json<PbdArg>),
    /// Copy files or trees between local paths and PFS paths (durably).
    ///
    /// An argument /<name>/... is a PFS path when /dev/<name> is a block
    /// device (or <name> is in the device directory), whatever the name:
    /// rbd0, dm-3, xvdb, nbd0, md0, sdb1 work as well as nvme1n1. When a
    /// local directory /<name> exists too, the device wins only if it holds
    /// a PFS. When neither exists, reference-style device names (nvme…,
    /// loop…, sd…, sf…, vd…, mapper_…, pangu-…, a leading digit) are taken
    /// as PFS paths and anything else is an error naming both places.
    /// /rbd:<pool>:<image>/... (a Ceph RBD image) is always a PFS path.
    /// Each file is written under a temporary name, flushed, then renamed
    /// into place; SIGINT, SIGTERM or SIGHUP remove that temporary file
    /// before the copy ends. Holes in the source stay holes. `cp -r dir/.
    /// DST` copies what dir holds into DST.
    Cp(CpArgs),
    /// WAL archiving: `push` for archive_command, `fetch` for restore_command.
    Archive(ArchiveArgs),
    /// Back up chunks as a stream on stdout, or restore them from stdin.
    ///
    /// The stream is the reference's format byte for byte. A restore checks
    /// the stream as it reads it and keeps the target's chunk headers blank
    /// until the whole stream is in: a cut or damaged stream fails and
    /// leaves a device that does not mount, never a half-restored one.
    Chunk(ChunkArgs),
    /// Copy a whole filesystem (used blocks and metadata) to another device.
    ///
    /// A destination that holds a PFS already is refused (exit 16) unless
    /// -f is given; one whose filesystem has a live writer, on any host, is
    /// refused even then.
    Fscp(FscpArgs),
    /// Discard free blocks (BLKDISCARD, or punched holes for files) when
    /// /etc/polarfs.conf (or $PFS_CONFIG) sets diskdev_trim_enable=1.
    Fstrim(FstrimArgs),
    /// Print what is appended to a file, following the writer's journal.
    Tail(TailArgs),
    /// Mount the filesystem with FUSE (in the background unless -f).
    ///
    /// A read-write mount is the single writer; a read-only mount (-r, with
    /// another host id) follows the writer and shows its changes within a
    /// second. PFS stores no owner, mode or settable times: chmod, chown and
    /// utimes succeed and change nothing.
    Mount(MountArgs),
    /// Unmount a FUSE mount (fusermount3 -u) and wait for its server to
    /// exit; exits non-zero as the server did when its log says it ended
    /// badly (5: writes had been stopped on the mount).
    Umount(UmountArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish,
    /// powershell).
    ///
    /// bash: pfs completions bash > /etc/bash_completion.d/pfs;
    /// zsh: pfs completions zsh > /usr/local/share/zsh/site-functions/_pfs;
    /// fish: pfs completions fish > ~/.config/fish/completions/pfs.fish.
    Completions(CompletionsArgs),
    /// Print the manual page pfs(1) in roff, or write it and one page per
    /// command (pfs-mkfs(1), ...) into a directory.
    ///
    /// pfs man | man -l -; pfs man --dir /usr/local/share/man/man1.
    Man(ManArgs),
}

/// `completions <shell>`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// `man [--dir DIR]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write pfs.1 and pfs-<command>.1 into this directory (made if
    /// missing) instead of printing pfs.1.
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The arguments of a command that has a JSON form, and `--json`.
#[derive(Debug, Args)]
pub struct Json<T: Args> {
    /// Print one JSON document on stdout instead of text; a failure prints
    /// one object {"command", "error", "errno", "exit"} instead.
    #[arg(long = "json")]
    pub json: bool,
    /// The command's own arguments.
    #[command(flatten)]
    pub args: T,
}

impl Command {
    /// Whether the command was given `--json` after its name.
    fn json(&self) -> bool {
        match self {
            Command::Ls(a) | Command::Stat(a) => a.json,
            Command::Info(a) | Command::Fsck(a) => a.json,
            Command::Tree(a) => a.json,
            Command::Du(a) => a.json,
            Command::Usedinfo(a) => a.json,
            _ => false,
        }
    }
}

/// `mount [-r] [-f] [-o opts] pbd mountpoint`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Mount read-only, following the writer.
    #[arg(short = 'r', long = "read-only")]
    pub read_only: bool,
    /// Stay in the foreground (log to stderr).
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Where the server logs (appended): the mount, errors the kernel only
    /// sees as EIO, and last how it ended (which pfs umount reads). Default
    /// in the background: /var/log/pfs/mount-<pbd>.log; in the
    /// foreground: stderr.
    #[arg(long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// FUSE options: allow_other, allow_root, default_permissions, noatime,
    /// noexec, ro (with -r), rw.
    #[arg(short = 'o', value_name = "OPTS")]
    pub options: Vec<String>,
    /// PBD name.
    pub pbd: String,
    /// Directory to mount on.
    pub mountpoint: PathBuf,
}

/// `umount mountpoint`.
#[derive(Debug, Args)]
pub struct UmountArgs {
    /// The mount point.
    pub mountpoint: PathBuf,
}

/// `chunk -m backup|restore -c start [-e end] [-f] pbd`.
#[derive(Debug, Args)]
pub struct ChunkArgs {
    /// backup (a stream on stdout) or restore (from stdin).
    #[arg(short = 'm', long = "mode")]
    pub mode: String,
    /// First chunk.
    #[arg(short = 'c', long = "chunkid")]
    pub chunkid: u64,
    /// Chunk to stop before (default: the first chunk + 1).
    #[arg(short = 'e', long = "endchunkid")]
    pub endchunkid: Option<u64>,
    /// Backup: allow chunks without used blocks; restore: overwrite chunks
    /// that hold a PFS.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// PBD name.
    pub pbd: String,
}

/// `fscp [-w workers] [-n frags] [-c] [-f] [-S cluster] [-D cluster] src dst`.
#[derive(Debug, Args)]
pub struct FscpArgs {
    /// IO workers, clamped to [2, 36] and to the number of chunks.
    #[arg(short = 'w', long = "nworker", default_value_t = 2)]
    pub nworker: i64,
    /// 16 KiB fragments per IO, clamped to [8, 256].
    #[arg(short = 'n', long = "nfrag", default_value_t = 8)]
    pub nfrag: i64,
    /// Read every copied block back from both devices and compare.
    #[arg(short = 'c', long = "crc_check")]
    pub crc_check: bool,
    /// Overwrite a destination that holds a PFS already (without it such a
    /// destination is refused, exit 16, nothing written).
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Source cluster (only "disk").
    #[arg(short = 'S', long = "src_cluster")]
    pub src_cluster: Option<String>,
    /// Destination cluster (only "disk").
    #[arg(short = 'D', long = "dst_cluster")]
    pub dst_cluster: Option<String>,
    /// Source PBD.
    pub src: String,
    /// Destination PBD.
    pub dst: String,
}

/// `fstrim [-b begin] [-e end] [-a] [-q] pbd`.
#[derive(Debug, Args)]
pub struct FstrimArgs {
    /// First chunk.
    #[arg(short = 'b', long = "beginid", allow_hyphen_values = true)]
    pub begin: Option<i64>,
    /// Chunk to stop before (default: the last chunk + 1).
    #[arg(short = 'e', long = "endid", allow_hyphen_values = true)]
    pub end: Option<i64>,
    /// Discard every free block, also those never used or discarded before.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Do not print the single-writer warning.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// PBD name.
    pub pbd: String,
}

/// `tail [-f] [-n N] /pbd/path`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Accepted for compatibility (tail always follows).
    #[arg(short = 'f')]
    pub follow: bool,
    /// Accepted for compatibility (ignored, as in the reference).
    #[arg(short = 'n')]
    pub lines: Option<String>,
    /// `/<pbd>/<file>`.
    pub path: OsString,
}

/// `cp [-r] [-f] [-S cluster] [-D cluster] [-s hostid] [-d hostid] SRC DST`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Copy directories recursively (implies -f).
    #[arg(short = 'r', long = "recursive")]
    pub recursive: bool,
    /// Overwrite existing files.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Source cluster (only "disk").
    #[arg(short = 'S', long = "src_cluster")]
    pub src_cluster: Option<String>,
    /// Destination cluster (only "disk").
    #[arg(short = 'D', long = "dst_cluster")]
    pub dst_cluster: Option<String>,
    /// Host id for the source mount.
    #[arg(short = 's', long = "src_hostid")]
    pub src_hostid: Option<u64>,
    /// Host id for the destination mount.
    #[arg(short = 'd', long = "dst_hostid")]
    pub dst_hostid: Option<u64>,
    /// Source path.
    pub src: OsString,
    /// Destination path.
    pub dst: OsString,
}

/// `archive push|fetch`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: ArchiveCmd,
}

/// The archiver's two directions.
#[derive(Debug, Subcommand)]
pub enum ArchiveCmd {
    /// archive_command: copy a finished WAL segment into the archive. An
    /// identical existing copy is success; a different one is an error.
    Push {
        /// The segment (%p).
        src: OsString,
        /// Its place in the archive (<archive_dir>/%f).
        dst: OsString,
    },
    /// restore_command: copy a segment back; a missing one exits 1 quietly.
    Fetch {
        /// The archived segment (<archive_dir>/%f).
        src: OsString,
        /// Where PostgreSQL wants it (%p).
        dst: OsString,
    },
}

/// `mkdir [-p] path`.
#[derive(Debug, Args)]
pub struct MkdirArgs {
    /// Create missing parents; an existing directory is fine.
    #[arg(short = 'p')]
    pub parents: bool,
    /// `/<pbd>/<dir>`.
    pub path: OsString,
}

/// `write [-o off] [-l len] path`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Offset (decimal, 0x hex or 0 octal).
    #[arg(short = 'o', allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Bytes to take from stdin (default: all).
    #[arg(short = 'l', allow_hyphen_values = true)]
    pub length: Option<String>,
    /// `/<pbd>/<file>`.
    pub path: OsString,
}

/// `truncate -l len path`.
#[derive(Debug, Args)]
pub struct TruncateArgs {
    /// New size in bytes (decimal, 0x hex or 0 octal).
    #[arg(short = 'l', allow_hyphen_values = true)]
    pub length: String,
    /// `/<pbd>/<file>`.
    pub path: OsString,
}

/// `fallocate [-o off] -l len path`.
#[derive(Debug, Args)]
pub struct FallocateArgs {
    /// Start of the range (decimal, 0x hex or 0 octal).
    #[arg(short = 'o', allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Length of the range.
    #[arg(short = 'l', allow_hyphen_values = true)]
    pub length: String,
    /// `/<pbd>/<file>`.
    pub path: OsString,
}

/// `rm [-r] path...`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove directories and their contents.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// `/<pbd>/<path>`.
    #[arg(required = true)]
    pub paths: Vec<OsString>,
}

/// `rename old new`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// `/<pbd>/<old>`.
    pub from: OsString,
    /// `/<pbd>/<new>`.
    pub to: OsString,
}

/// A lone PFS path.
#[derive(Debug, Args)]
pub struct PathArg {
    /// `/<pbd>/<path>`.
    pub path: OsString,
}

/// `tree [-v] path`.
#[derive(Debug, Args)]
pub struct TreeArgs {
    /// Show type, inode, size and times.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// `/<pbd>/<dir>`.
    pub path: OsString,
}

/// `read [-o off] [-l len] path`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Offset (decimal, 0x hex or 0 octal).
    #[arg(short = 'o', allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Length (default: to end of file).
    #[arg(short = 'l', allow_hyphen_values = true)]
    pub length: Option<String>,
    /// `/<pbd>/<file>`.
    pub path: OsString,
}

/// `map [-o off] path`.
#[derive(Debug, Args)]
pub struct MapArgs {
    /// Show only the block holding this offset.
    #[arg(short = 'o', long = "offset", allow_hyphen_values = true)]
    pub offset: Option<i64>,
    /// `/<pbd>/<file>`.
    pub path: OsString,
}

/// `du [-a] [-d depth] path`.
#[derive(Debug, Args)]
pub struct DuArgs {
    /// Show files too, not just directories.
    #[arg(short = 'a')]
    pub all: bool,
    /// Deepest level shown (0 = only the path itself).
    #[arg(short = 'd', allow_hyphen_values = true)]
    pub depth: Option<i64>,
    /// `/<pbd>/<path>`.
    pub path: OsString,
}

/// `mkfs [-u num] [-l size] [-f] pbd`.
#[derive(Debug, Args)]
pub struct MkfsArgs {
    /// Number of hosts that may mount, 1..=254.
    #[arg(short = 'u', long = "num-users", default_value_t = pfs_core::DEFAULT_NUM_HOSTS)]
    pub num_hosts: u64,
    /// Journal size in bytes (0: sized from the device), 32 MiB..=1 GiB.
    #[arg(short = 'l', long = "log-size", default_value_t = pfs_core::DEFAULT_LOG_SIZE)]
    pub log_size: u64,
    /// Sector size; only 4096 is supported.
    #[arg(short = 's', long = "sector-size", default_value_t = 4096)]
    pub sector_size: u64,
    /// Format even if the device already holds PFS.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// PBD name.
    pub pbd: String,
}

/// `growfs [-o old] [-n new] [-f] pbd`.
#[derive(Debug, Args)]
pub struct GrowfsArgs {
    /// Chunks the filesystem has now (default: what its chunk 0 header
    /// says).
    #[arg(short = 'o', long = "oldcknum")]
    pub old: Option<u64>,
    /// Chunks it should have (default: the device's whole chunks).
    #[arg(short = 'n', long = "newcknum")]
    pub new: Option<u64>,
    /// Format chunk `old` even if it looks formatted.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// PBD name.
    pub pbd: String,
}

/// `dumpfs [-m] [-t type] [-c chunk] [-o oid] pbd`.
#[derive(Debug, Args)]
pub struct DumpfsArgs {
    /// Dump meta objects (after replaying the journal) instead of headers.
    #[arg(short = 'm', long = "meta")]
    pub meta: bool,
    /// Object type: 1 block tag, 2 direntry, 3 inode.
    #[arg(short = 't', long = "type")]
    pub mtype: Option<u8>,
    /// Chunk number.
    #[arg(short = 'c', long = "chunk")]
    pub chunk: Option<u64>,
    /// Object id inside the chunk.
    #[arg(short = 'o', long = "object")]
    pub oid: Option<u64>,
    /// PBD name.
    pub pbd: String,
}

/// `dumple [-a] [-t txid] [-b|-d|-i number] pbd`.
#[derive(Debug, Args)]
pub struct DumpleArgs {
    /// Also show the slot at the journal head, as the reference does.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Only entries of this transaction.
    #[arg(short = 't', long = "txid")]
    pub txid: Option<i64>,
    /// Only entries of this block tag number.
    #[arg(short = 'b', long = "btno", conflicts_with_all = ["deno", "ino"])]
    pub btno: Option<u64>,
    /// Only entries of this direntry number.
    #[arg(short = 'd', long = "deno", conflicts_with = "ino")]
    pub deno: Option<u64>,
    /// Only entries of this inode number.
    #[arg(short = 'i', long = "ino")]
    pub ino: Option<u64>,
    /// PBD name.
    pub pbd: String,
}

/// `usedinfo -t b|d|i [-b begin] [-e end] pbd`.
#[derive(Debug, Args)]
pub struct UsedinfoArgs {
    /// Type: b (block tags), d (direntries), i (inodes).
    #[arg(short = 't', value_parser = ["b", "d", "i"])]
    pub mtype: String,
    /// First chunk.
    #[arg(short = 'b')]
    pub begin: Option<u64>,
    /// Chunk to stop before.
    #[arg(short = 'e')]
    pub end: Option<u64>,
    /// PBD name.
    pub pbd: String,
}

/// A lone PBD name.
#[derive(Debug, Args)]
pub struct PbdArg {
    /// PBD name.
    pub pbd: String,
}

/// Parses `args`, runs the command, returns the exit code.
pub fn run(args: &[OsString], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            if e.use_stderr() && wants_json(args) {
                let text = e.render().to_string();
                let _ = write!(err, "{text}");
                // clap's first paragraph, on one line.
                let what: Vec<&str> = text
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let what = what.join(" ");
                let f = Failure::new(USAGE, what.strip_prefix("error: ").unwrap_or(&what));
                print_json_failure(args, &f, out);
                return USAGE;
            }
            if let Some(code) = crate::usage::report(args, &e, out, err) {
                return code;
            }
            let code = if e.use_stderr() { USAGE } else { 0 };
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(err, "{text}");
            } else {
                let _ = write!(out, "{text}");
            }
            return code;
        }
    };
    let json = cli.json || cli.command.json();
    if cli.cluster != "disk" {
        let f = Failure::new(
            USAGE,
            format!("cluster {:?} is not supported; use -C disk", cli.cluster),
        );
        if json {
            print_json_failure(args, &f, out);
        }
        return f.report(err);
    }
    let ctx = cmd::Context {
        device_dir: cli.device_dir.clone().filter(|d| !d.as_os_str().is_empty()),
        hostid: u64::from(cli.hostid),
        force: cli.force,
    };
    if json {
        return run_json(&ctx, &cli.command, args, out, err);
    }
    let result = match &cli.command {
        Command::Mkfs(a) => cmd::mkfs::mkfs(&ctx, a, out, err),
        Command::Growfs(a) => cmd::mkfs::growfs(&ctx, a, out),
        Command::Dumpfs(a) => cmd::inspect::dumpfs(&ctx, a, out),
        Command::Dumple(a) => cmd::inspect::dumple(&ctx, a, out),
        Command::Info(a) => cmd::inspect::info(&ctx, &a.args.pbd, out),
        Command::Usedinfo(a) => cmd::inspect::usedinfo(&ctx, &a.args, out),
        Command::Ls(a) => cmd::files::ls(&ctx, &a.args, out),
        Command::Tree(a) => cmd::files::tree(&ctx, &a.args, out),
        Command::Stat(a) => cmd::files::stat(&ctx, &a.args, out),
        Command::Read(a) => cmd::files::read(&ctx, a, out),
        Command::Map(a) => cmd::files::map(&ctx, a, out),
        Command::Du(a) => cmd::files::du(&ctx, &a.args, out),
        Command::Flushlog(a) => cmd::inspect::flushlog(&ctx, &a.pbd),
        Command::Touch(a) => cmd::modify::touch(&ctx, a, out),
        Command::Mkdir(a) => cmd::modify::mkdir(&ctx, a, out),
        Command::Write(a) => cmd::modify::write(&ctx, a, &mut std::io::stdin().lock(), out),
        Command::Truncate(a) => cmd::modify::truncate(&ctx, a, out),
        Command::Fallocate(a) => cmd::modify::fallocate(&ctx, a, out),
        Command::Rm(a) => cmd::modify::rm(&ctx, a, out),
        Command::Rmdir(a) => cmd::modify::rmdir(&ctx, a, out),
        Command::Rename(a) => cmd::modify::rename(&ctx, a, out),
        Command::Fsck(a) => cmd::inspect::fsck(&ctx, &a.args.pbd, out),
        Command::Cp(a) => cmd::cp::cp(&ctx, a, out),
        Command::Archive(a) => cmd::cp::archive(&ctx, a, out),
        Command::Chunk(a) => cmd::chunk::chunk(&ctx, a, out),
        Command::Fscp(a) => cmd::fscp::fscp(&ctx, a, out),
        Command::Fstrim(a) => cmd::fstrim::fstrim(&ctx, a, out, err),
        Command::Tail(a) => cmd::tail::tail(&ctx, a, out),
        Command::Mount(a) => {
            cmd::check_mount_point(&a.mountpoint).and_then(|()| crate::fuse::mount(&ctx, a, out))
        }
        Command::Umount(a) => crate::fuse::umount(a),
        Command::Completions(a) => cmd::docs::completions(a, out),
        Command::Man(a) => cmd::docs::man(a, out),
    };
    let _ = out.flush();
    match result {
        Ok(()) => 0,
        Err(f) => f.report(err),
    }
}

/// Whether the command line asks for JSON (`--json` before any `--`).
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| a.as_os_str() != "--")
        .any(|a| a.as_os_str() == "--json")
}

/// Prints the JSON object of a failure of the command `args` name (see
/// [`cmd::json::failure`]).
fn print_json_failure(args: &[OsString], f: &Failure, out: &mut dyn Write) {
    let name = crate::usage::subcommand_of(args)
        .map(|(c, _)| c)
        .unwrap_or_default();
    let _ = out.write_all(cmd::json::failure(&name, f).as_bytes());
    let _ = out.flush();
}

/// Runs a command with `--json`: its document on stdout, or on failure one
/// JSON object saying what failed (see [`cmd::json::failure`]); stderr gets
/// the message as without `--json`.
fn run_json(
    ctx: &cmd::Context,
    command: &Command,
    args: &[OsString],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let name = crate::usage::subcommand_of(args)
        .map(|(c, _)| c)
        .unwrap_or_default();
    // The document is made whole before it goes out, so a failure halfway
    // prints only the error object.
    let mut doc = Vec::new();
    let r = match command {
        Command::Ls(a) => cmd::json::ls(ctx, &a.args, &mut doc),
        Command::Stat(a) => cmd::json::stat(ctx, &a.args, &mut doc),
        Command::Tree(a) => cmd::json::tree(ctx, &a.args, &mut doc),
        Command::Du(a) => cmd::json::du(ctx, &a.args, &mut doc),
        Command::Info(a) => cmd::json::info(ctx, &a.args.pbd, &mut doc),
        Command::Fsck(a) => cmd::json::fsck(ctx, &a.args.pbd, &mut doc),
        Command::Usedinfo(a) => cmd::json::usedinfo(ctx, &a.args, &mut doc),
        _ => Err(Failure::new(
            USAGE,
            format!("--json is for ls, stat, tree, du, info, fsck and usedinfo, not {name}"),
        )),
    };
    match r {
        // A document that says what failed (fsck's "clean": false) is the
        // answer itself.
        Ok(()) | Err(_) if !doc.is_empty() => {
            let printed = out.write_all(&doc).and_then(|()| out.flush());
            match (r, printed) {
                (Err(f), _) => f.report(err),
                (Ok(()), Err(e)) => Failure::from_output(e).report(err),
                (Ok(()), Ok(())) => 0,
            }
        }
        Ok(()) => 0,
        Err(f) if f.code == 0 => 0,
        Err(f) => {
            print_json_failure(args, &f, out);
            f.report(err)
        }
    }
}
