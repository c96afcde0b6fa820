//! What an operator meets around the commands themselves: help, shell
//! completions and manual pages, `--json` failures, colours, progress on
//! stderr, and exit codes and messages that are the same for the same kind
//! of error (issue 20, items 5 to 8 and 11).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

/// A device directory of its own, removed at the end.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pfs-ux-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(PFS);
        c.env("TZ", "UTC")
            .env_remove("NO_COLOR")
            .env_remove("PFS_PROGRESS_MS")
            .arg("--device-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "pfs {args:?}: {:?}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ------------------------------------------------- help, completions, man

#[test]
fn help_completions_and_man_pages() {
    let s = Scratch::new("help");
    // `pfs help <command>` is `pfs <command> --help`.
    let help = s.ok(&["help", "mkfs"]);
    assert_eq!(help, s.ok(&["mkfs", "--help"]));
    assert!(help.contains("--num-users"), "{help}");
    assert!(s.ok(&["help"]).contains("mkfs"));
    let o = s.run(&["help", "frobnicate"]);
    assert!(!o.status.success());

    // A completion script for each shell; bash's registers itself.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = s.ok(&["completions", shell]);
        assert!(script.contains("mkfs"), "{shell}: {script}");
    }
    let script = s.ok(&["completions", "bash"]);
    let mut bash = Command::new("bash")
        .args(["-c", "source /dev/stdin && complete -p pfs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = bash.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("pfs"), "{}", text(&o.stdout));
    assert!(!s.run(&["completions", "tcsh"]).status.success());

    // pfs(1) on stdout; with --dir, one page per command too.
    let page = s.ok(&["man"]);
    assert!(page.contains(".TH pfs 1"), "{page}");
    assert!(page.contains("mkfs") && page.contains("fscp"));
    let dir = s.dir.join("man1");
    let listed = s.ok(&["man", "--dir", dir.to_str().unwrap()]);
    for name in ["pfs.1", "pfs-mkfs.1", "pfs-cp.1", "pfs-archive-push.1"] {
        let p = dir.join(name);
        assert!(p.is_file(), "{name} missing; listed: {listed}");
        assert!(listed.lines().any(|l| Path::new(l) == p), "{listed}");
    }
    let mkfs = fs::read_to_string(dir.join("pfs-mkfs.1")).unwrap();
    assert!(mkfs.contains(".TH pfs-mkfs 1") && mkfs.contains("num\\-users"));
}
