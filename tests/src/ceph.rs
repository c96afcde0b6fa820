//! A one-machine Ceph cluster for the RBD tests: started once per test
//! binary with `scripts/ceph-cluster.sh` in a scratch directory, and
//! stopped (and the directory removed) by a watcher process once the test
//! binary has exited, however it exits.
//!
//! Where Ceph's daemons or client libraries are missing, or the cluster
//! does not start, [`cluster`] says why and each test is skipped with a
//! note.

use crate::cli::Pfs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The programs the cluster script needs.
const DAEMONS: &[&str] = &[
    "ceph-mon",
    "ceph-osd",
    "ceph-mgr",
    "ceph",
    "rbd",
    "monmaptool",
];
/// The client libraries `pfs` loads for RBD PBDs.
const LIBS: &[&str] = &["librbd.so.1", "librados.so.2"];

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

/// The cluster script of the repository.
pub fn script() -> PathBuf {
    crate::project_root().join("scripts/ceph-cluster.sh")
}

/// Whether the dynamic loader finds library `name` (`ldconfig -p`).
fn library_installed(name: &str) -> bool {
    let listed = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|p| Command::new(p).arg("-p").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed.lines().any(|l| l.trim_start().starts_with(name))
}

/// Starts the cluster, listening on `addr` (`None`: 127.0.0.1), or says
/// why it cannot run here.
fn start(addr: Option<&str>) -> Result<Cluster, String> {
    let missing: Vec<&str> = DAEMONS
        .iter()
        .copied()
        .filter(|p| !crate::on_path(p))
        .chain(LIBS.iter().copied().filter(|l| !library_installed(l)))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "Ceph is not installed ({} missing; apt-get install ceph-mon ceph-osd ceph-mgr \
             ceph-common)",
            missing.join(", ")
        ));
    }
    let dir = std::env::temp_dir().join(format!(
        "pfs-ceph-{}{}",
        std::process::id(),
        addr.map(|a| format!("-{a}")).unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .arg("start")
        .arg(&dir)
        .stdin(Stdio::null());
    if let Some(a) = addr {
        cmd.env("CEPH_ADDR", a);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    // Whatever happened, the watcher stops what did start once this
    // process is gone.
    watch(&dir);
    if !out.status.success() {
        return Err(format!(
            "the Ceph cluster did not start: {}",
            crate::cli::text(&out)
        ));
    }
    Ok(Cluster {
        conf: dir.join("ceph.conf"),
        dir,
    })
}

/// Starts a process, in a session of its own (so a Ctrl-C of the tests
/// does not reach it), that waits for this process to exit, then stops
/// the cluster in `dir`, removes the directory and the cluster's
/// live-mark files in `/var/run/pfs`.
fn watch(dir: &Path) {
    let fsid = std::fs::read_to_string(dir.join("ceph.conf"))
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("fsid = ").map(|f| f.trim().to_owned()))
        })
        .unwrap_or_else(|| "none".to_owned());
    let _ = Command::new("bash")
        .arg("-c")
        .arg(
            r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
               bash "$2" stop "$3"
               [ -n "$PFS_CEPH_KEEP" ] || rm -rf "$3"
               rm -f /var/run/pfs/rbd:"$4":*"#,
        )
        .arg("watch")
        .arg(std::process::id().to_string())
        .arg(script())
        .arg(dir)
        .arg(fsid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

/// This test binary's cluster, started on first use; `None`, after a
/// note that the test is skipped and why, where it cannot run.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| start(None)) {
        Ok(c) => Some(c),
        Err(why) => {
            crate::skipped(why);
            None
        }
    }
}

/// Like [`cluster`], a cluster whose daemons listen on local address
/// `addr` (a bridge's, for clients in network namespaces); one per test
/// binary, the first call's address.
pub fn cluster_on(addr: &str) -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| start(Some(addr))) {
        Ok(c) => Some(c),
        Err(why) => {
            crate::skipped(why);
            None
        }
    }
}

impl Cluster {
    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its configuration file.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Runs `rbd -c CONF ARGS...` to its end; panics unless it succeeds.
    pub fn rbd(&self, args: &[&str]) -> Output {
        crate::cli::run_ok(
            Command::new("rbd")
                .arg("-c")
                .arg(&self.conf)
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    /// Runs `ceph -c CONF ARGS...` to its end; panics unless it succeeds.
    pub fn ceph(&self, args: &[&str]) -> Output {
        crate::cli::run_ok(
            Command::new("ceph")
                .arg("-c")
                .arg(&self.conf)
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    /// Image `name`'s writer registry: its metadata keys
    /// `pfs.writer.<hostid>.<machine>.<client>` with their values (`<client
    /// address> pid <pid>`; see `pfs-core`'s `rbd/writers.rs`).
    pub fn registered_writers(&self, name: &str) -> Vec<(String, String)> {
        let o = self.rbd(&[
            "image-meta",
            "list",
            "--format",
            "json",
            &format!("rbd/{name}"),
        ]);
        // {"key":"value",...}: keys and values are the quoted strings, in
        // turn (none holds a quote).
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let quoted: Vec<&str> = out.split('"').skip(1).step_by(2).collect();
        quoted
            .chunks(2)
            .filter(|kv| kv.len() == 2 && kv[0].starts_with("pfs.writer."))
            .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
            .collect()
    }

    /// The cluster's blocklist (`ceph osd blocklist ls`), one address
    /// with its expiry per line.
    pub fn blocklist(&self) -> String {
        crate::cli::text(&self.ceph(&["osd", "blocklist", "ls"]))
    }

    /// Takes snapshot `snap` of image `name`, without asking the image's
    /// clients to quiesce (a stalled or cut-off client would never answer).
    pub fn snapshot(&self, name: &str, snap: &str) {
        self.rbd(&[
            "snap",
            "create",
            "--skip-quiesce",
            &format!("rbd/{name}@{snap}"),
        ]);
    }

    /// The extents of image `name` written since snapshot `snap` (`rbd
    /// diff --from-snap`, JSON; `[]` when nothing changed).
    pub fn changed_since(&self, name: &str, snap: &str) -> String {
        let o = self.rbd(&[
            "diff",
            "--from-snap",
            snap,
            "--format",
            "json",
            &format!("rbd/{name}"),
        ]);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Creates image `name` of pool `rbd` with `size` (`rbd create
    /// --size`, e.g. `20G`) and the features `docs/operators.md` asks for
    /// (`layering` only: no exclusive lock passed between the processes
    /// that write), and returns its PBD name, `rbd:rbd:<name>`.
    pub fn create_image(&self, name: &str, size: &str) -> String {
        self.rbd(&[
            "create",
            "--size",
            size,
            "--image-feature",
            "layering",
            &format!("rbd/{name}"),
        ]);
        format!("rbd:rbd:{name}")
    }

    /// [`Cluster::create_image`] with `rbd`'s default features
    /// (exclusive lock, object map, ...).
    pub fn create_image_default_features(&self, name: &str, size: &str) -> String {
        self.rbd(&["create", "--size", size, &format!("rbd/{name}")]);
        format!("rbd:rbd:{name}")
    }

    /// Resizes image `name` of pool `rbd` to `size`.
    pub fn resize_image(&self, name: &str, size: &str) {
        self.rbd(&["resize", "--size", size, &format!("rbd/{name}")]);
    }

    /// The environment a client of the cluster needs, as (name, value).
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PFS_RBD_CONF", self.conf.display().to_string()),
            ("PFS_RBD_USER", "admin".to_owned()),
        ]
    }

    /// A `pfs` runner for the cluster's images, its device directory (for
    /// the host-lock and share files) a fresh one named for `test`.
    pub fn pfs(&self, test: &str) -> Pfs {
        let dir = self.dir.join("devs").join(test);
        std::fs::create_dir_all(&dir).expect("make a device directory");
        self.client_env()
            .into_iter()
            .fold(Pfs::new(dir), |p, (k, v)| p.env(k, v))
    }
}
