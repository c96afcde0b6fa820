//! `pfs completions <shell>` and `pfs man`: shell completion scripts
//! (clap_complete) and manual pages (clap_mangen), both made from the
//! command-line definition itself, so they never fall behind it.

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::exit::{CmdResult, Failure, FAILURE};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// `pfs completions <shell>`: the script on stdout.
pub fn completions(a: &CompletionsArgs, out: &mut dyn Write) -> CmdResult {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "pfs", &mut script);
    out.write_all(&script)?;
    Ok(())
}

/// `pfs man [--dir DIR]`: pfs(1) on stdout, or every page written into
/// DIR (each path printed on its own line).
pub fn man(a: &ManArgs, out: &mut dyn Write) -> CmdResult {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = &a.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(|e| Failure::new(FAILURE, format!("man: {e}")))?;
        out.write_all(&page)?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::new(
            FAILURE,
            format!("man: cannot create {}: {e}", dir.display()),
        )
    })?;
    write_pages(cmd, dir, out)
}

/// Writes the page of `cmd` and of each of its (visible) subcommands,
/// which after `build` carry their full names (`pfs-archive-push`).
fn write_pages(cmd: clap::Command, dir: &Path, out: &mut dyn Write) -> CmdResult {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, out)?;
    }
    let path = clap_mangen::Man::new(cmd).generate_to(dir).map_err(|e| {
        Failure::new(
            FAILURE,
            format!("man: cannot write a page into {}: {e}", dir.display()),
        )
    })?;
    out.write_all(path.as_os_str().as_encoded_bytes())?;
    writeln!(out)?;
    Ok(())
}
