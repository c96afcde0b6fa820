//! The install step: the library carries its SONAME and is installed
//! stripped, and pkg-config gives programs of a prefix the loader does not
//! search an rpath to it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn readelf(args: &[&str], file: &Path) -> Option<String> {
    let o = Command::new("readelf").args(args).arg(file).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn install_gives_a_stripped_library_with_its_soname_and_an_rpath() {
    if Command::new("readelf").arg("--version").output().is_err() {
        println!(
            "skipped: install_gives_a_stripped_library_with_its_soname_and_an_rpath: no readelf"
        );
        return;
    }
    let prefix = std::env::temp_dir().join(format!("pfs-sdk-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lib = prefix.join("lib/libpfsd.so");
    let dynamic = readelf(&["-d"], &lib).unwrap();
    assert!(
        dynamic.contains("Library soname: [libpfsd.so]"),
        "{dynamic}"
    );
    let sections = readelf(&["-S", "-W"], &lib).unwrap();
    assert!(!sections.contains(".symtab"), "not stripped");
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/pfsd.pc")).unwrap();
    assert!(pc.contains("-Wl,-rpath,${libdir}"), "{pc}");
    assert!(prefix.join("include/pfsd_sdk.h").exists());
    std::fs::remove_dir_all(&prefix).unwrap();
}
