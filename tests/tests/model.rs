//! Model-based test of the namespace and file API: random sequences of
//! create / write / truncate / rename / unlink / mkdir / rmdir run against
//! the filesystem and against a simple in-memory model; after every step
//! the two must agree (results, errors, the whole tree and every byte), and
//! at the end a remount must show the same tree and pass the consistency
//! check. Shrunk failures are kept below as regression tests.

#![allow(clippy::unwrap_used)]

use pfs_core::OpenOptions;
use pfs_core::{CoreError, Device};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::layout::MIN_LOG_SIZE;
use pfs_tests::device;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One operation; paths are built from a tiny name pool so that they
/// collide often.
#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

/// The model: path → node; the root is "".
#[derive(Debug, Default)]
struct Model {
    nodes: BTreeMap<String, Node>,
}

/// Error classes compared between model and filesystem.
#[derive(Debug, PartialEq, Eq)]
enum E {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    Invalid,
}

fn class(e: &CoreError) -> E {
    match e {
        CoreError::NotFound { .. } => E::NotFound,
        CoreError::Exists { .. } => E::Exists,
        CoreError::NotDir { .. } => E::NotDir,
        CoreError::IsDir { .. } => E::IsDir,
        CoreError::NotEmpty { .. } => E::NotEmpty,
        CoreError::InvalidArgument(_) => E::Invalid,
        other => panic!("unexpected error {other}"),
    }
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map(|(a, _)| a).unwrap_or("")
}

impl Model {
    fn new() -> Model {
        let mut m = Model::default();
        m.nodes.insert(String::new(), Node::Dir);
        m
    }

    fn parent_ok(&self, p: &str) -> Result<(), E> {
        match self.nodes.get(parent(p)) {
            Some(Node::Dir) => Ok(()),
            Some(Node::File(_)) => Err(E::NotDir),
            None => {
                // A missing ancestor: ENOTDIR if some ancestor is a file.
                let mut a = parent(p);
                while !a.is_empty() {
                    if let Some(Node::File(_)) = self.nodes.get(a) {
                        return Err(E::NotDir);
                    }
                    a = parent(a);
                }
                Err(E::NotFound)
            }
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), E> {
        match op {
            Op::Create(p) => {
                self.parent_ok(p)?;
                match self.nodes.get(p) {
                    Some(Node::Dir) => Err(E::IsDir),
                    Some(Node::File(_)) => Ok(()),
                    None => {
                        self.nodes.insert(p.clone(), Node::File(Vec::new()));
                        Ok(())
                    }
                }
            }
            Op::Write(p, off, data) => {
                self.parent_ok(p)?;
                match self.nodes.get_mut(p) {
                    Some(Node::Dir) => Err(E::IsDir),
                    None => Err(E::NotFound),
                    Some(Node::File(v)) => {
                        let end = *off as usize + data.len();
                        if v.len() < end {
                            v.resize(end, 0);
                        }
                        v[*off as usize..end].copy_from_slice(data);
                        Ok(())
                    }
                }
            }
            Op::Truncate(p, len) => {
                self.parent_ok(p)?;
                match self.nodes.get_mut(p) {
                    Some(Node::Dir) => Err(E::IsDir),
                    None => Err(E::NotFound),
                    Some(Node::File(v)) => {
                        v.resize(*len as usize, 0);
                        Ok(())
                    }
                }
            }
            Op::Unlink(p) => {
                self.parent_ok(p)?;
                match self.nodes.get(p) {
                    Some(Node::Dir) => Err(E::IsDir),
                    None => Err(E::NotFound),
                    Some(Node::File(_)) => {
                        self.nodes.remove(p);
                        Ok(())
                    }
                }
            }
            Op::Mkdir(p) => {
                self.parent_ok(p)?;
                if self.nodes.contains_key(p) {
                    return Err(E::Exists);
                }
                self.nodes.insert(p.clone(), Node::Dir);
                Ok(())
            }
            Op::Rmdir(p) => {
                self.parent_ok(p)?;
                match self.nodes.get(p) {
                    None => Err(E::NotFound),
                    Some(Node::File(_)) => Err(E::NotDir),
                    Some(Node::Dir) => {
                        let prefix = format!("{p}/");
                        if self.nodes.keys().any(|k| k.starts_with(&prefix)) {
                            return Err(E::NotEmpty);
                        }
                        self.nodes.remove(p);
                        Ok(())
                    }
                }
            }
            Op::Rename(a, b) => {
                self.parent_ok(a)?;
                let src = self.nodes.get(a).cloned().ok_or(E::NotFound)?;
                self.parent_ok(b)?;
                if a == b {
                    return Ok(());
                }
                if src == Node::Dir && (b.starts_with(&format!("{a}/"))) {
                    return Err(E::Invalid);
                }
                match (self.nodes.get(b), &src) {
                    (Some(Node::Dir), Node::File(_)) => return Err(E::IsDir),
                    (Some(Node::File(_)), Node::Dir) => return Err(E::NotDir),
                    (Some(Node::Dir), Node::Dir) => {
                        let prefix = format!("{b}/");
                        if self.nodes.keys().any(|k| k.starts_with(&prefix)) {
                            return Err(E::NotEmpty);
                        }
                    }
                    _ => {}
                }
                self.nodes.remove(b);
                let prefix = format!("{a}/");
                let moved: Vec<(String, Node)> = self
                    .nodes
                    .iter()
                    .filter(|(k, _)| *k == a || k.starts_with(&prefix))
                    .map(|(k, v)| (format!("{b}{}", &k[a.len()..]), v.clone()))
                    .collect();
                self.nodes
                    .retain(|k, _| !(k == a || k.starts_with(&prefix)));
                self.nodes.extend(moved);
                Ok(())
            }
        }
    }
}

fn run(m: &Arc<Mount>, op: &Op) -> Result<(), E> {
    let r = match op {
        Op::Create(p) => m
            .open_file(
                p,
                OpenOptions {
                    create: true,
                    write: true,
                    ..OpenOptions::default()
                },
            )
            .map(|_| ()),
        Op::Write(p, off, data) => m
            .open_file(
                p,
                OpenOptions {
                    write: true,
                    ..OpenOptions::default()
                },
            )
            .and_then(|f| f.write_at(data, *off).map(|_| ())),
        Op::Truncate(p, len) => m.truncate_path(p, *len),
        Op::Unlink(p) => m.unlink_path(p),
        Op::Mkdir(p) => m.mkdir_path(p).map(|_| ()),
        Op::Rmdir(p) => m.rmdir_path(p),
        Op::Rename(a, b) => m.rename_path(a, b),
    };
    r.map_err(|e| class(&e))
}

/// The filesystem's tree as the model would hold it.
fn tree(m: &Mount) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    out.insert(String::new(), Node::Dir);
    let mut stack = vec![(0u64, String::new())];
    while let Some((dir, path)) = stack.pop() {
        for e in m.readdir(dir).unwrap().collect::<Vec<_>>() {
            if e.ino == 1 || e.ino == 2 {
                continue;
            }
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let st = m.getattr(e.ino).unwrap();
            if st.is_dir() {
                out.insert(p.clone(), Node::Dir);
                stack.push((e.ino, p));
            } else {
                let mut v = vec![0u8; st.size as usize];
                assert_eq!(m.read_at(e.ino, &mut v, 0).unwrap(), v.len());
                out.insert(p, Node::File(v));
            }
        }
    }
    out
}

fn check(ops: &[Op]) {
    let dev: Arc<dyn Device> = pfs_tests::device::in_memory("model", MIN_LOG_SIZE);
    let opts = MountOptions {
        lease_ms: 600_000,
        ..MountOptions::default()
    };
    let m = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap());
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        let got = run(&m, op);
        assert_eq!(got, want, "step {i}: {op:?}");
        assert_eq!(tree(&m), model.nodes, "tree after step {i}: {op:?}");
    }
    device::fsck_clean(&m);
    drop(m);
    let r = Mount::open_with(dev, Mode::ReadOnly, &opts).unwrap();
    assert_eq!(tree(&r), model.nodes, "after remount");
    let report = r.fsck().unwrap();
    assert!(report.is_clean() && report.orphans.is_empty(), "{report:?}");
}

fn path() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("c".to_owned()),
        Just("x".repeat(64)),
        Just("y".repeat(200)),
    ];
    proptest::collection::vec(name, 1..=3).prop_map(|v| format!("/{}", v.join("/")))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::Create),
        3 => (path(), 0u64..9_000_000, proptest::collection::vec(any::<u8>(), 1..3000))
            .prop_map(|(p, o, d)| Op::Write(p, o, d)),
        1 => (path(), 0u64..9_000_000).prop_map(|(p, l)| Op::Truncate(p, l)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => path().prop_map(Op::Unlink),
        3 => path().prop_map(Op::Mkdir),
        1 => path().prop_map(Op::Rmdir),
    ]
}

proptest! {
    // PFS_MODEL_CASES raises the case count for longer hunts.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PFS_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn filesystem_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        check(&ops);
    }
}

#[test]
fn regression_rename_dir_over_empty_dir_and_long_names() {
    check(&[
        Op::Mkdir("/a".into()),
        Op::Mkdir(format!("/{}", "y".repeat(200))),
        Op::Create("/a/b".into()),
        Op::Rename(
            "/a/b".into(),
            format!("/{}/{}", "y".repeat(200), "x".repeat(64)),
        ),
        Op::Rename(format!("/{}", "y".repeat(200)), "/c".into()),
        Op::Mkdir("/b".into()),
        Op::Rename("/a".into(), "/b".into()),
        Op::Write("/c/".to_owned() + &"x".repeat(64), 4_194_300, vec![7; 100]),
        Op::Truncate("/c/".to_owned() + &"x".repeat(64), 10),
    ]);
}
