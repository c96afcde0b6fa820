//! RBD images as devices: a PFS on a Ceph block image, reached through
//! librbd in this process (no kernel module, no `/dev` node).
//!
//! PBD `rbd:<pool>:<image>` is image `<image>` of pool `<pool>`; the name
//! has no `/`, so it is the first component of `/<pbd>/path` as any other
//! PBD. The cluster is found with the configuration file in
//! [`RBD_CONF_ENV`] (Ceph's default search when unset: `$CEPH_CONF`,
//! `/etc/ceph/ceph.conf` ...), as the client named by [`RBD_USER_ENV`]
//! (`admin` when unset).
//!
//! The image's own cache is turned off (`rbd_cache = false`): as with
//! O_DIRECT on a block device, every write reaches the cluster before it
//! returns and every read asks the cluster, so readers on other machines
//! following the writer see what it wrote.
//!
//! A read-write mount registers its client in the image's metadata, and
//! a host that takes the writer lease over blocklists the clients of the
//! host it deposed (see `writers`): their operations fail from then on
//! with `EBLOCKLISTED`, which this device reports as
//! [`CoreError::Fenced`].

use crate::device::Device;
use crate::error::{CoreError, Result};
use crate::sys::ceph::{Cluster, Image, IoCtx};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod writers;

/// Environment variable naming the Ceph configuration file of RBD PBDs.
pub const RBD_CONF_ENV: &str = "PFS_RBD_CONF";
/// Environment variable naming the Ceph client id (`admin` for
/// `client.admin`) of RBD PBDs.
pub const RBD_USER_ENV: &str = "PFS_RBD_USER";
/// The prefix that makes a PBD name an RBD image.
pub const RBD_PREFIX: &str = "rbd:";

/// Seconds to wait for the cluster's monitors when connecting, unless the
/// configuration says otherwise.
const CONNECT_TIMEOUT_SECS: &str = "30";

/// Which image a PBD name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdSpec {
    /// The pool.
    pub pool: String,
    /// The image in the pool.
    pub image: String,
}

impl RbdSpec {
    /// The image of PBD `name` when it is `rbd:<pool>:<image>`; `None`
    /// for a PBD name without the `rbd:` prefix, an error for one with it
    /// that names no image.
    pub fn parse(name: &str) -> Option<Result<RbdSpec>> {
        let rest = name.strip_prefix(RBD_PREFIX)?;
        let bad = |reason| {
            Some(Err(CoreError::BadPbdName {
                name: name.to_owned(),
                reason,
            }))
        };
        let Some((pool, image)) = rest.split_once(':') else {
            return bad("an RBD PBD is rbd:<pool>:<image>");
        };
        if pool.is_empty() || image.is_empty() {
            return bad("an RBD PBD needs a pool and an image: rbd:<pool>:<image>");
        }
        if image.contains('@') {
            return bad("RBD snapshots (image@snap) cannot be PBDs");
        }
        Some(Ok(RbdSpec {
            pool: pool.to_owned(),
            image: image.to_owned(),
        }))
    }
}

/// Where a client finds the cluster: configuration file and client id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RbdClient {
    /// The configuration file (`None`: Ceph's default search).
    pub conf: Option<PathBuf>,
    /// The client id (`None`: `admin`).
    pub user: Option<String>,
}

impl RbdClient {
    /// The client the environment names ([`RBD_CONF_ENV`],
    /// [`RBD_USER_ENV`]; empty values count as unset).
    pub fn from_env() -> RbdClient {
        let var = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        RbdClient {
            conf: var(RBD_CONF_ENV).map(PathBuf::from),
            user: var(RBD_USER_ENV).map(|v| v.to_string_lossy().into_owned()),
        }
    }

    fn describe(&self) -> String {
        format!(
            "client.{} with {}",
            self.user.as_deref().unwrap_or("admin"),
            self.conf
                .as_ref()
                .map_or("the default ceph.conf".to_owned(), |p| p
                    .display()
                    .to_string())
        )
    }
}

/// The fsid of a connected cluster. The monitor client may not have the
/// monitors' map yet right after connecting (the fsid then reads as all
/// zeros), so it is asked again for a while; a cluster that never says
/// gives the nil UUID.
fn cluster_fsid(cluster: &Cluster) -> std::io::Result<String> {
    const NIL: &str = "00000000-0000-0000-0000-000000000000";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fsid = cluster.fsid()?;
        if fsid != NIL || Instant::now() >= deadline {
            return Ok(fsid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An RBD image open through librbd.
pub struct RbdDevice {
    /// The image; it holds the pool's I/O context and the cluster
    /// connection, which a fence (exclusive lock, blocklist) will use.
    image: Image,
    name: String,
    len: u64,
    key: String,
    /// This client's key in the image's writer registry, once registered.
    registered: parking_lot::Mutex<Option<String>>,
}

/// What a deposed client's operations fail with once blocklisted.
const EBLOCKLISTED: i32 = libc::ESHUTDOWN;

impl RbdDevice {
    /// Connects as `client` and opens the image of `spec` under PBD name
    /// `name`, for writing when `writable`.
    pub fn open(name: &str, spec: &RbdSpec, client: &RbdClient, writable: bool) -> Result<Self> {
        let open_err = |what: String, source| CoreError::Open {
            device: name.to_owned(),
            path: what,
            source,
        };
        let target = format!(
            "RBD image {} of pool {} as {}",
            spec.image,
            spec.pool,
            client.describe()
        );
        let cluster = Cluster::connect(
            client.user.as_deref(),
            client.conf.as_deref(),
            &[
                ("rbd_cache", "false"),
                ("client_mount_timeout", CONNECT_TIMEOUT_SECS),
            ],
        )
        .map_err(|e| open_err(format!("{target}: {}", e.step), e.source))?;
        let cluster = Arc::new(cluster);
        let fsid = cluster_fsid(&cluster)
            .map_err(|e| open_err(format!("{target}: rados_cluster_fsid"), e))?;
        let io = IoCtx::new(&cluster, &spec.pool)
            .map_err(|e| open_err(format!("{target}: opening pool {}", spec.pool), e))?;
        let image = Image::open(&Arc::new(io), &spec.image, !writable)
            .map_err(|e| open_err(format!("{target}: rbd_open"), e))?;
        let len = image
            .size()
            .map_err(|e| open_err(format!("{target}: rbd_get_size"), e))?;
        Ok(RbdDevice {
            image,
            name: name.to_owned(),
            len,
            key: format!("rbd:{fsid}:{}:{}", spec.pool, spec.image).replace('/', "_"),
            registered: parking_lot::Mutex::new(None),
        })
    }

    /// The error of a failed `op` at `offset`: [`CoreError::Fenced`] when
    /// the cluster blocklisted this client (another host took the writer
    /// lease over and cut this one off), an I/O error otherwise.
    fn fail(&self, op: &'static str, offset: u64, e: std::io::Error) -> CoreError {
        if e.raw_os_error() == Some(EBLOCKLISTED) {
            return CoreError::Fenced {
                reason: format!(
                    "the Ceph cluster blocklisted this client of {} (another host took the writer lease over and fenced this one; the {op} failed)",
                    self.name
                ),
            };
        }
        CoreError::io(&self.name, op, offset, e)
    }

    fn check(&self, offset: u64, n: u64, op: &'static str) -> Result<()> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        crate::device::check_range(&self.name, self.len, offset, n, op)
    }
}

/// Large writes kept in flight on an image ([`Device::write_depth`]): an
/// image is striped over RADOS objects of 4 MiB that the cluster's OSDs
/// write in parallel, so a bulk copy goes faster with more writes in
/// flight than a local disk needs (`rbd bench` keeps 16).
const RBD_WRITE_DEPTH: usize = 8;

impl Device for RbdDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len() as u64, "read")?;
        self.image
            .read(buf, offset)
            .map_err(|e| self.fail("read", offset, e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len() as u64, "write")?;
        self.image
            .write(buf, offset)
            .map_err(|e| self.fail("write", offset, e))
    }

    fn sync(&self) -> Result<()> {
        self.image.flush().map_err(|e| self.fail("flush", 0, e))
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn sector_size(&self) -> u32 {
        512
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn write_depth(&self) -> usize {
        RBD_WRITE_DEPTH
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.check(offset, len, "zero range")?;
        match self.image.write_zeroes(offset, len) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                crate::device::write_zeros(self, offset, len)
            }
            Err(e) => Err(self.fail("zero range", offset, e)),
        }
    }

    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        self.check(offset, len, "discard")?;
        match self.image.discard(offset, len) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(self.fail("discard", offset, e)),
        }
    }

    fn machine_key(&self) -> Option<&str> {
        Some(&self.key)
    }

    fn register_writer(&self, hostid: u32, node: u32) -> Result<()> {
        let mut reg = self.registered.lock();
        if reg.is_none() {
            let k = writers::register(&self.image, hostid, node)
                .map_err(|e| self.fail("registering as a writer (rbd_metadata_set)", 0, e))?;
            *reg = Some(k);
        }
        Ok(())
    }

    fn fence_writers(&self, hosts: &[(u32, u32)]) -> Result<usize> {
        if hosts.is_empty() {
            return Ok(0);
        }
        self.fence(Some(hosts))
    }

    fn fence_every_writer(&self) -> Result<usize> {
        self.fence(None)
    }
}

impl RbdDevice {
    /// Cuts off the registered writers of `hosts` (`None`: of every host)
    /// but this process.
    fn fence(&self, hosts: Option<&[(u32, u32)]>) -> Result<usize> {
        let own = self.registered.lock().clone();
        let cut = writers::fence(&self.image, hosts, own.as_deref()).map_err(|e| {
            self.fail(
                "fencing the deposed writer (rados_blocklist_add, rbd_metadata_remove)",
                0,
                e,
            )
        })?;
        Ok(cut.len())
    }
}

impl Drop for RbdDevice {
    fn drop(&mut self) {
        if let Some(k) = self.registered.get_mut().take() {
            writers::unregister(&self.image, &k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert!(RbdSpec::parse("nvme1n1").is_none());
        assert_eq!(
            RbdSpec::parse("rbd:rbd:pfs1").unwrap().unwrap(),
            RbdSpec {
                pool: "rbd".into(),
                image: "pfs1".into()
            }
        );
        // The image is everything after the pool.
        assert_eq!(RbdSpec::parse("rbd:p.x:a:b").unwrap().unwrap().image, "a:b");
        for bad in [
            "rbd:",
            "rbd:pfs1",
            "rbd::img",
            "rbd:pool:",
            "rbd:p:img@snap",
        ] {
            assert!(
                matches!(RbdSpec::parse(bad), Some(Err(CoreError::BadPbdName { .. }))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_cluster_is_an_open_error() {
        // A configuration file that does not exist: whether or not the
        // libraries are installed, opening fails with an open error and
        // does not panic.
        let client = RbdClient {
            conf: Some(PathBuf::from("/nonexistent/pfs-test/ceph.conf")),
            user: None,
        };
        let spec = RbdSpec::parse("rbd:rbd:x").unwrap().unwrap();
        let e = RbdDevice::open("rbd:rbd:x", &spec, &client, false)
            .err()
            .expect("no cluster to open");
        assert!(matches!(e, CoreError::Open { .. }), "{e}");
    }
}
