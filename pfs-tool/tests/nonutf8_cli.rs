//! Names that are not UTF-8 (the reference makes them): every command
//! takes them as arguments and prints them byte for byte, on a sparse-file
//! device. Names that cannot exist (`..`, longer than 255 bytes, a trailing
//! `/` on a file) still fail as they always did.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device;
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::Output;

const PBD: &str = "nvme5n1";

/// A scratch directory holding a fresh sparse device and local files, and
/// the tool on it, taking its arguments as bytes.
struct Scratch {
    dir: device::Scratch,
    pfs: Pfs,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = device::Scratch::new(&format!("nonutf8-{name}"));
        dir.subdir("local");
        let pfs = Pfs::new(dir.subdir("dev"));
        pfs.mkfs_new(PBD, 1, &[]);
        Scratch { dir, pfs }
    }

    /// A local path under the scratch directory, from bytes.
    fn local(&self, rel: &[u8]) -> PathBuf {
        self.dir.join("local").join(OsStr::from_bytes(rel))
    }

    /// Runs pfs with byte arguments and `stdin` as its input.
    fn run_with(&self, args: &[&[u8]], stdin: &[u8]) -> Output {
        self.pfs.run_with_input(&os(args), stdin)
    }

    fn run(&self, args: &[&[u8]]) -> Output {
        self.pfs.run(&os(args))
    }

    /// Runs pfs; panics unless it succeeds; returns stdout.
    fn ok(&self, args: &[&[u8]]) -> Vec<u8> {
        self.pfs.ok_bytes(&os(args))
    }
}

/// Byte arguments as the `OsStr`s they are.
fn os<'a>(args: &[&'a [u8]]) -> Vec<&'a OsStr> {
    args.iter().map(|a| OsStr::from_bytes(a)).collect()
}

/// `/<PBD><rel>` as bytes.
fn p(rel: &[u8]) -> Vec<u8> {
    [b"/", PBD.as_bytes(), rel].concat()
}

/// Whether `hay` contains `needle`.
fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn non_utf8_names_through_every_command() {
    let s = Scratch::new("cmds");
    let cafe = p(b"/caf\xe9");
    let dir = p(b"/\xff\xfe");
    let inner = p(b"/\xff\xfe/x\xe9");

    // Create: touch, mkdir, write (its OK line names the file byte for byte).
    s.ok(&[b"touch", &cafe]);
    s.ok(&[b"mkdir", &dir]);
    s.ok(&[b"mkdir", b"-p", &p(b"/\xe0/\xe1/")]);
    let o = s.run_with(&[b"write", &inner], b"hello, bytes\n");
    assert!(o.status.success(), "{}", show(&o.stderr));
    let want = [b"bytes to file ".as_slice(), &inner, b"\n"].concat();
    assert!(has(&o.stdout, &want), "{}", show(&o.stdout));

    // cp from a local file with a non-UTF-8 name into the directory.
    let local_src = s.local(b"l\xe9");
    fs::write(&local_src, b"local data").unwrap();
    let out = s.ok(&[b"cp", local_src.as_os_str().as_bytes(), &dir]);
    let want = [
        b"copy file from ".as_slice(),
        local_src.as_os_str().as_bytes(),
        b" to ",
        &dir,
        b"/l\xe9 succeeded\n",
    ]
    .concat();
    assert_eq!(out, want, "{}", show(&out));

    // ls and tree print the names as stored.
    let ls = s.ok(&[b"ls", &p(b"/")]);
    assert!(has(&ls, b"  caf\xe9\n"), "{}", show(&ls));
    assert!(has(&ls, b"  \xff\xfe\n"), "{}", show(&ls));
    assert!(!has(&ls, "\u{fffd}".as_bytes()), "{}", show(&ls));
    let ls = s.ok(&[b"ls", &dir]);
    assert!(
        has(&ls, b"  x\xe9\n") && has(&ls, b"  l\xe9\n"),
        "{}",
        show(&ls)
    );
    let tree = s.ok(&[b"tree", &p(b"/")]);
    for line in [
        b"|-caf\xe9\n".as_slice(),
        b"|-\xff\xfe\n",
        b" |-x\xe9\n",
        b" |-l\xe9\n",
        b" |-\xe1\n",
    ] {
        assert!(has(&tree, line), "{:?} in {}", show(line), show(&tree));
    }
    assert!(has(&tree, b"\n3 directories, 5 files\n"), "{}", show(&tree));
    // -v pads the name to 20 bytes, as the reference's %-20s does.
    let tree = s.ok(&[b"tree", b"-v", &p(b"/")]);
    let want = [b"|-caf\xe9".as_slice(), &[b' '; 16], b"\tFile\t"].concat();
    assert!(has(&tree, &want), "{}", show(&tree));

    // du -a names every file by its whole path, as given plus the names.
    let du = s.ok(&[b"du", b"-a", &dir]);
    let want = [b"\t".as_slice(), &dir, b"/x\xe9\n"].concat();
    assert!(has(&du, &want), "{}", show(&du));
    let want = [b"\t".as_slice(), &dir, b"\n"].concat();
    assert!(du.ends_with(&want), "{}", show(&du));

    // stat prints the path it was given; read reads the file.
    let st = s.ok(&[b"stat", &cafe]);
    assert!(
        st.starts_with(&[b"  file: ".as_slice(), &cafe, b"\n"].concat()),
        "{}",
        show(&st)
    );
    let st = s.ok(&[b"stat", &dir]);
    assert!(st.starts_with(&[b"   dir: ".as_slice(), &dir, b"\n"].concat()));
    assert_eq!(s.ok(&[b"read", &inner]), b"hello, bytes\n");
    assert_eq!(s.ok(&[b"read", &p(b"/\xff\xfe/l\xe9")]), b"local data");

    // truncate, fallocate and map take such paths too.
    s.ok(&[b"truncate", b"-l", b"5", &inner]);
    assert_eq!(s.ok(&[b"read", &inner]), b"hello");
    let alloc = p(b"/\xe0/f\xe2");
    s.ok(&[b"touch", &alloc]);
    s.ok(&[b"fallocate", b"-l", b"4096", &alloc]);
    assert!(has(&s.ok(&[b"map", &alloc]), b"filesize(B): 4096"));

    // dumpfs -m shows the direntry's name bytes.
    let dump = s.ok(&[b"dumpfs", b"-m", b"-t", b"2", b"-c", b"0", PBD.as_bytes()]);
    assert!(has(&dump, b"de_name    caf\xe9\n"), "no de_name caf\\xe9");

    // --json: a name that is not UTF-8 comes with its exact bytes.
    s.ok(&[b"touch", &p(b"/caf\xc3\xa9")]);
    let ls: Value = serde_json::from_slice(&s.ok(&[b"--json", b"ls", &p(b"/")])).unwrap();
    let entries = ls["entries"].as_array().unwrap();
    let cafe_e = entries
        .iter()
        .find(|e| e["name_bytes"] == serde_json::json!([99, 97, 102, 233]))
        .unwrap_or_else(|| panic!("no name_bytes for caf\\xe9: {ls}"));
    assert_eq!(cafe_e["name"], "caf\u{fffd}");
    assert_eq!(cafe_e["type"], "file");
    let utf8 = entries.iter().find(|e| e["name"] == "café").unwrap();
    assert!(utf8.get("name_bytes").is_none(), "{utf8}");
    assert_eq!(ls["path"], format!("/{PBD}/"));
    assert!(ls.get("path_bytes").is_none());
    let st: Value = serde_json::from_slice(&s.ok(&[b"--json", b"stat", &cafe])).unwrap();
    let want: Vec<Value> = cafe.iter().map(|&b| Value::from(b)).collect();
    assert_eq!(st["path_bytes"], Value::Array(want));
    let tree: Value = serde_json::from_slice(&s.ok(&[b"--json", b"tree", &dir])).unwrap();
    let mut names: Vec<Value> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name_bytes"].clone())
        .collect();
    names.sort_by_key(|v| v.to_string());
    assert_eq!(
        names,
        [serde_json::json!([108, 233]), serde_json::json!([120, 233])]
    );
    let du: Value = serde_json::from_slice(&s.ok(&[b"--json", b"du", b"-a", &dir])).unwrap();
    let last = du["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["path"], format!("/{PBD}/\u{fffd}\u{fffd}"));
    let want: Vec<Value> = dir.iter().map(|&b| Value::from(b)).collect();
    assert_eq!(last["path_bytes"], Value::Array(want));

    // cp back to a local non-UTF-8 name, and a whole tree with -r.
    let back = s.local(b"back\xe1");
    s.ok(&[b"cp", &p(b"/\xff\xfe/l\xe9"), back.as_os_str().as_bytes()]);
    assert_eq!(fs::read(&back).unwrap(), b"local data");
    let tree_dst = s.local(b"t\xf0");
    s.ok(&[b"cp", b"-r", &dir, tree_dst.as_os_str().as_bytes()]);
    let mut got: Vec<Vec<u8>> = fs::read_dir(&tree_dst)
        .unwrap()
        .map(|e| OsString::into_vec(e.unwrap().file_name()))
        .collect();
    got.sort();
    assert_eq!(got, [b"l\xe9".to_vec(), b"x\xe9".to_vec()]);
    assert_eq!(
        fs::read(tree_dst.join(OsStr::from_bytes(b"x\xe9"))).unwrap(),
        b"hello"
    );
    // ... and a local tree with such names into the PFS.
    let up = s.local(b"up\xfa");
    fs::create_dir_all(up.join(OsStr::from_bytes(b"s\xfb"))).unwrap();
    fs::write(up.join(OsStr::from_bytes(b"s\xfb/f\xfc")), b"deep").unwrap();
    s.ok(&[b"cp", b"-r", up.as_os_str().as_bytes(), &p(b"/")]);
    assert_eq!(s.ok(&[b"read", &p(b"/up\xfa/s\xfb/f\xfc")]), b"deep");

    // archive push and fetch.
    let seg = s.local(b"seg\xe7");
    fs::write(&seg, b"wal segment").unwrap();
    let archived = p(b"/\xe0/seg\xe7");
    s.ok(&[b"archive", b"push", seg.as_os_str().as_bytes(), &archived]);
    let again = s.ok(&[b"archive", b"push", seg.as_os_str().as_bytes(), &archived]);
    assert!(
        again.starts_with(&[archived.as_slice(), b" is already archived"].concat()),
        "{}",
        show(&again)
    );
    let fetched = s.local(b"fetched\xe7");
    s.ok(&[
        b"archive",
        b"fetch",
        &archived,
        fetched.as_os_str().as_bytes(),
    ]);
    assert_eq!(fs::read(&fetched).unwrap(), b"wal segment");

    // rename, rm, rm -r, rmdir.
    let new = p(b"/n\xe8w");
    s.ok(&[b"rename", &cafe, &new]);
    let ls = s.ok(&[b"ls", &p(b"/")]);
    assert!(
        has(&ls, b"  n\xe8w\n") && !has(&ls, b"  caf\xe9\n"),
        "{}",
        show(&ls)
    );
    s.ok(&[b"rm", &new]);
    s.ok(&[b"rm", b"-r", &dir]);
    s.ok(&[b"rmdir", &p(b"/\xe0/\xe1")]);
    let ls = s.ok(&[b"ls", &p(b"/")]);
    for gone in [b"  n\xe8w\n".as_slice(), b"  \xff\xfe\n"] {
        assert!(!has(&ls, gone), "{}", show(&ls));
    }
    let o = s.run(&[b"stat", &dir]);
    assert!(!o.status.success());
    assert!(has(&o.stdout, b"stat failed: No such file or directory"));
    let fsck = show(&s.ok(&[b"fsck", PBD.as_bytes()]));
    assert!(fsck.contains("clean"), "{fsck}");
}

/// What failed and how: exit code, stdout.
fn failure(o: &Output) -> (Option<i32>, String) {
    (o.status.code(), show(&o.stdout))
}

#[test]
fn impossible_names_still_fail() {
    let s = Scratch::new("bad");
    // `..` names the parent: the root exists.
    let o = s.run(&[b"touch", &p(b"/..")]);
    assert_eq!(
        failure(&o),
        (Some(255), "touch failed: File exists\n".into())
    );
    let o = s.run(&[b"mkdir", &p(b"/.")]);
    assert_eq!(
        failure(&o),
        (Some(255), "mkdir failed: File exists\n".into())
    );
    // 256 bytes that are not UTF-8, in a name.
    let long = p(&[[b'/'].as_slice(), &[0xe9; 256]].concat());
    let o = s.run(&[b"touch", &long]);
    assert_eq!(
        failure(&o),
        (Some(255), "touch failed: File name too long\n".into())
    );
    let ok = p(&[[b'/'].as_slice(), &[0xe9; 255]].concat());
    s.ok(&[b"touch", &ok]);
    assert!(has(&s.ok(&[b"ls", &p(b"/")]), &[0xe9; 255]));
    // A trailing '/' names a directory: touch makes files (a directory
    // where a file is needed exits 235, -EISDIR, as cp's does).
    let o = s.run(&[b"touch", &p(b"/a\xff/")]);
    assert_eq!(
        failure(&o),
        (Some(235), "touch failed: Is a directory\n".into())
    );
    assert!(
        show(&o.stderr).contains("a\u{fffd}/"),
        "{}",
        show(&o.stderr)
    );
    // A missing name in the middle.
    let o = s.run(&[b"touch", &p(b"/no\xff/x")]);
    assert_eq!(
        failure(&o),
        (
            Some(255),
            "touch failed: No such file or directory\n".into()
        )
    );
    // A PBD name that is not UTF-8 is no device.
    let o = s.run(&[b"ls", b"/nv\xffme/"]);
    assert_eq!(o.status.code(), Some(22), "{}", show(&o.stderr));
    // A path without the PBD: an invalid path, as `/caf` is.
    let o = s.run(&[b"ls", b"caf\xe9"]);
    assert_eq!(o.status.code(), Some(22));
    assert!(show(&o.stderr).contains("not a PFS path"));
}

#[test]
fn local_paths_need_not_be_utf8() {
    // A missing local source with a non-UTF-8 name is reported, not a panic.
    let s = Scratch::new("local");
    let missing = s.local(b"none\xe9");
    let o = s.run(&[b"cp", missing.as_os_str().as_bytes(), &p(b"/x")]);
    assert!(!o.status.success());
    assert!(
        show(&o.stderr).contains("none\u{fffd}"),
        "{}",
        show(&o.stderr)
    );
}
