//! `pfs fstrim`: discard free blocks, as the single writer (the mount takes
//! the host lock and the writer lease like every modifying command).
//!
//! As in the reference, the device is only told to discard when the libpfs
//! option `diskdev_trim_enable` is on in `/etc/polarfs.conf` (the path can
//! be changed with `PFS_CONFIG`); the selected blocks are journaled either
//! way, so images match the reference's. When nothing was discarded,
//! stderr says why.

use super::{failed, strerror, Context};
use crate::cli::FstrimArgs;
use crate::exit::{CmdResult, Failure};
use pfs_core::CoreError;
use pfs_core::Mode;
use std::io::Write;
use std::path::PathBuf;

/// Environment variable naming the libpfs configuration file.
pub const CONFIG_ENV: &str = "PFS_CONFIG";
/// The reference's configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/polarfs.conf";
/// `diskdev_trim_enable` value that means off (the reference's default).
const TRIM_DISABLE: i64 = 2;

/// Where the configuration file is.
fn config_path() -> PathBuf {
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// The `diskdev_trim_enable` value in config text, as libpfs reads it:
/// `key = value` lines in `[section]`s, `#` comments; a value must be a
/// positive integer to count. Later lines win.
pub fn trim_setting(text: &str) -> Option<i64> {
    let mut found = None;
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            section = rest.split(']').next().unwrap_or("").trim().to_owned();
            continue;
        }
        if section == "restart" {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != "diskdev_trim_enable" {
            continue;
        }
        let v = v.split('#').next().unwrap_or("").trim();
        if let Ok(n) = v.parse::<i64>() {
            if n > 0 {
                found = Some(n);
            }
        }
    }
    found
}

/// Whether discards are on, and what to say about it.
fn trim_enabled() -> (bool, String) {
    let path = config_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => match trim_setting(&text) {
            Some(v) if v != TRIM_DISABLE => (
                true,
                format!("{} sets diskdev_trim_enable={v}", path.display()),
            ),
            Some(v) => (
                false,
                format!(
                    "discards are off: {} sets diskdev_trim_enable={v}",
                    path.display()
                ),
            ),
            None => (
                false,
                format!(
                    "discards are off: {} does not set diskdev_trim_enable (set it to 1 under \
                     [common] to discard)",
                    path.display()
                ),
            ),
        },
        Err(e) => (
            false,
            format!(
                "discards are off: no configuration at {} ({e}); put \
                 '[common]' and 'diskdev_trim_enable=1' there to discard",
                path.display()
            ),
        ),
    }
}

/// `pfs fstrim`.
pub fn fstrim(
    ctx: &Context,
    a: &FstrimArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> CmdResult {
    if !a.quiet {
        // The reference also sleeps 3 s here; our writer lease makes sure
        // no other writer is active, so there is nothing to wait for.
        writeln!(
            out,
            "Make sure that fstrim is the ONLY ONE writer on current device {}. sleep 3s.",
            a.pbd
        )?;
        out.flush()?;
    }
    let m = ctx.mount("fstrim", &a.pbd, Mode::ReadWrite)?;
    let to_u32 = |v: Option<i64>| {
        v.filter(|&x| x >= 0)
            .map(|x| u32::try_from(x).unwrap_or(u32::MAX))
    };
    let (enabled, why) = trim_enabled();
    let r = m.fstrim(to_u32(a.begin), to_u32(a.end), a.all, enabled);
    let report = match r {
        Ok(r) => r,
        Err(e @ CoreError::InvalidArgument(_)) => {
            let _ = writeln!(out, "fstrim failed: {}", strerror(22));
            // The reference exits with -EIO here.
            return Err(Failure::new(251, format!("fstrim: {e}")));
        }
        Err(e) => return Err(failed("fstrim", out, &e)),
    };
    let (b, e) = report.chunks;
    if report.selected == 0 {
        writeln!(
            err,
            "pfs: fstrim: nothing discarded: no free block to discard in chunks [{b}, {e}){}",
            if a.all {
                ""
            } else {
                " (blocks never used or already discarded are skipped; -a takes them too)"
            }
        )?;
    } else if report.discarded == 0 {
        let reason = if !enabled {
            why
        } else if !report.device_supports {
            format!("device {} does not support discarding", a.pbd)
        } else {
            "every selected block was taken again before it could be discarded".to_owned()
        };
        writeln!(
            err,
            "pfs: fstrim: nothing discarded: {reason}; {} free block(s) in chunks [{b}, {e}) \
             were selected and journaled",
            report.selected
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::trim_setting;

    #[test]
    fn config_lines() {
        assert_eq!(trim_setting("[common]\ndiskdev_trim_enable=1\n"), Some(1));
        assert_eq!(
            trim_setting("[common]\n diskdev_trim_enable = 2 # off\n"),
            Some(2)
        );
        assert_eq!(trim_setting("[common]\ndiskdev_trim_enable=0\n"), None);
        assert_eq!(trim_setting("[restart]\ndiskdev_trim_enable=1\n"), None);
        assert_eq!(trim_setting("# diskdev_trim_enable=1\n"), None);
        assert_eq!(trim_setting(""), None);
    }
}
