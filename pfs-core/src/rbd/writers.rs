//! Fencing at the cluster: the image's registry of the clients that may
//! write it, and cutting off a deposed host's clients.
//!
//! Every process that mounts an RBD PBD read-write records its client
//! address in the image's metadata, under a key naming its host id and
//! its machine ([`register`]); a host that takes the writer lease over
//! from a host that stopped renewing it blocklists every address that host
//! registered, before its first write ([`fence`]). From then on the OSDs
//! refuse the deposed clients' operations (`EBLOCKLISTED`), whatever their
//! clocks say and however long they were stalled, so a write that passed
//! the lease check before a pause never lands.
//!
//! Each process has its own cluster connection, and the processes of one
//! host (a database's forked backends, SDK processes sharing a mount) each
//! register theirs: the taker cuts off the whole host, never one process,
//! and never a host it did not take over from. Readers do not register.

use crate::sys::ceph::Image;
use std::io;
use std::time::{Duration, Instant};

/// The prefix of the registry's keys in the image's metadata.
const PREFIX: &str = "pfs.writer.";

/// The registry key of client `instance` of host `hostid` on machine
/// `node`.
fn key(hostid: u32, node: u32, instance: u64) -> String {
    format!("{}{instance}", host_prefix(hostid, node))
}

/// The prefix of every key host `hostid` of machine `node` registers.
fn host_prefix(hostid: u32, node: u32) -> String {
    format!("{PREFIX}{hostid}.{node:08x}.")
}

/// A registry value: the address, then the process id (for people).
fn value(addr: &str) -> String {
    format!("{addr} pid {}", std::process::id())
}

/// The address in a registry value.
fn addr_of(value: &str) -> Option<&str> {
    value.split_whitespace().next().filter(|a| !a.is_empty())
}

/// Records this client (of `image`) as a writer of host `hostid` on
/// machine `node`; returns the key, for [`unregister`].
pub(crate) fn register(image: &Image, hostid: u32, node: u32) -> io::Result<String> {
    let cluster = image.cluster();
    let k = key(hostid, node, cluster.instance_id());
    image.metadata_set(&k, &value(&cluster.addrs()?))?;
    Ok(k)
}

/// Removes this client's registration `key` (a clean unmount).
pub(crate) fn unregister(image: &Image, key: &str) {
    let _ = image.metadata_remove(key);
}

/// Blocklists every client that the hosts `hosts` ((host id, machine)
/// pairs; `None`: every host) registered on `image`, except this one, and
/// removes their keys. Returns the addresses cut off.
pub(crate) fn fence(
    image: &Image,
    hosts: Option<&[(u32, u32)]>,
    own_key: Option<&str>,
) -> io::Result<Vec<String>> {
    let prefixes: Vec<String> = match hosts {
        Some(hosts) => hosts.iter().map(|&(h, n)| host_prefix(h, n)).collect(),
        None => vec![PREFIX.to_owned()],
    };
    let mut cut = Vec::new();
    for (k, v) in image.metadata_list()? {
        if !prefixes.iter().any(|p| k.starts_with(p.as_str())) || Some(k.as_str()) == own_key {
            continue;
        }
        let Some(addr) = addr_of(&v) else {
            continue;
        };
        blocklist(image, addr)?;
        cut.push(addr.to_owned());
        // Gone from the registry once cut off: nobody blocklists it again.
        match image.metadata_remove(&k) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            _ => {}
        }
    }
    Ok(cut)
}

/// Blocklists `addr` through `image`'s cluster connection. A monitor
/// client that has just connected may be refused (`EPERM`) until it has
/// the monitors' map; that is tried again for a few seconds.
fn blocklist(image: &Image, addr: &str) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match image.cluster().blocklist_add(addr, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_host_and_machine() {
        assert_eq!(key(2, 0xab, 4140), "pfs.writer.2.000000ab.4140");
        assert!(key(12, 1, 5).starts_with(&host_prefix(12, 1)));
        // Host 1's prefix is not a prefix of host 12's keys.
        assert!(!key(12, 1, 5).starts_with(&host_prefix(1, 1)));
    }

    #[test]
    fn values_carry_the_address_first() {
        let v = value("127.0.0.1:0/3317405751");
        assert_eq!(addr_of(&v), Some("127.0.0.1:0/3317405751"));
        assert_eq!(addr_of(""), None);
    }
}
