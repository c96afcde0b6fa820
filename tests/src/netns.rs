//! Separate "machines" on one machine, for tests of hosts that lose the
//! network: each is a network namespace with a veth pair to a bridge in
//! the root namespace (where a Ceph cluster listens on the bridge's
//! address), and its processes run in a mount namespace of their own
//! (`ip netns exec` makes one per command) with the host's own
//! `/var/run/pfs` and `/etc/machine-id` bind-mounted over the machine's,
//! so they share nothing with the other hosts but the cluster.
//!
//! A host is cut off by taking its end of the pair down on the bridge
//! (nothing reaches it, nothing leaves it) and healed by bringing it up;
//! [`Net::partition`] separates it from some hosts and the bridge's
//! address only, with a packet filter in the bridge (nftables), as a
//! switch that stops forwarding would; [`Net::delay`] adds a netem delay
//! where the kernel has `sch_netem`, and [`Net::throttle`] squeezes the
//! host's traffic through a token bucket (`sch_tbf`) where it does not.
//!
//! Everything is removed when the [`Net`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One host: its namespace, its end of the veth pair on the bridge, its
/// address, and its private `/var/run/pfs` and machine id.
#[derive(Debug)]
pub struct Host {
    /// The network namespace (`ip netns` name).
    pub ns: String,
    /// Its address (IPv4).
    pub ip: String,
    /// The root namespace's end of its veth pair (on the bridge).
    pub link: String,
    /// The directory bind-mounted on `/var/run/pfs` for its processes.
    pub run_dir: PathBuf,
    /// The file bind-mounted on `/etc/machine-id`.
    pub machine_id: PathBuf,
}

impl Host {
    /// The namespace's end of its veth pair.
    fn peer(&self) -> String {
        self.link.replacen("pfv", "pfp", 1)
    }
}

/// A bridge and its hosts.
#[derive(Debug)]
pub struct Net {
    bridge: String,
    /// The bridge's address: where services for the hosts listen.
    pub gateway: String,
    /// The hosts, in the order [`Net::new`] was given their names.
    pub hosts: Vec<Host>,
    dir: PathBuf,
}

/// Runs `ip ARGS...`; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), crate::cli::text(&o)))
    }
}

impl Net {
    /// A bridge with one host per name in `names` (at most 9), or why it
    /// cannot be made here (not root, no `ip`, no network namespaces,
    /// veth or bridges in the kernel).
    pub fn new(names: &[&str]) -> Result<Net, String> {
        if !crate::is_root() {
            return Err("needs root (network namespaces)".into());
        }
        if !crate::on_path("ip") {
            return Err("ip (iproute2) is not installed".into());
        }
        if !Path::new("/etc/machine-id").is_file() {
            return Err("no /etc/machine-id to give each host its own".into());
        }
        let id = std::process::id() % 100_000;
        let subnet = format!("10.221.{}", id % 250);
        let dir = std::env::temp_dir().join(format!("pfs-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut net = Net {
            bridge: format!("pfb{id}"),
            gateway: format!("{subnet}.1"),
            hosts: Vec::new(),
            dir,
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for (k, name) in names.iter().enumerate() {
            let host = Host {
                ns: format!("pfs-{name}-{id}"),
                ip: format!("{subnet}.{}", 11 + k),
                link: format!("pfv{k}{id}"),
                run_dir: net.dir.join(name).join("run"),
                machine_id: net.dir.join(name).join("machine-id"),
            };
            std::fs::create_dir_all(&host.run_dir).map_err(|e| e.to_string())?;
            // 32 hex digits, different for each host and run.
            std::fs::write(
                &host.machine_id,
                format!("{:032x}\n", (u128::from(id) << 8) | (k as u128 + 1)),
            )
            .map_err(|e| e.to_string())?;
            let peer = host.peer();
            ip(&["netns", "add", &host.ns])?;
            // Pushed first, so a failure below still removes it.
            let (ns, link) = (host.ns.clone(), host.link.clone());
            net.hosts.push(host);
            ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &ns])?;
            ip(&["link", "set", &link, "master", &net.bridge])?;
            ip(&["link", "set", &link, "up"])?;
            let ip_addr = format!("{}/24", net.hosts[k].ip);
            ip(&["-n", &ns, "addr", "add", &ip_addr, "dev", &peer])?;
            ip(&["-n", &ns, "link", "set", &peer, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Host `k`.
    pub fn host(&self, k: usize) -> &Host {
        &self.hosts[k]
    }

    /// A command running `program ARGS...` on host `k`: in its network
    /// namespace, with its `/var/run/pfs` and machine id.
    pub fn command(&self, k: usize, program: &Path) -> Command {
        let h = &self.hosts[k];
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h.ns, "sh", "-c"])
            .arg(
                r#"mkdir -p /var/run/pfs && mount --bind "$1" /var/run/pfs &&
                   mount --bind "$2" /etc/machine-id && shift 2 && exec "$@""#,
            )
            .arg("sh")
            .arg(&h.run_dir)
            .arg(&h.machine_id)
            .arg(program);
        c
    }

    /// Cuts host `k` off from everything (its link on the bridge down).
    pub fn cut(&self, k: usize) -> Result<(), String> {
        ip(&["link", "set", &self.hosts[k].link, "down"])
    }

    /// Connects host `k` again.
    pub fn heal(&self, k: usize) -> Result<(), String> {
        ip(&["link", "set", &self.hosts[k].link, "up"])
    }

    /// Drops, in the bridge, every frame between host `k` and the hosts
    /// `peers` and between host `k` and the bridge's own address (the
    /// services there), in both directions; the other hosts still reach
    /// `k`. Undone by [`Net::rejoin`]. An error where `nft` (nftables) or
    /// the kernel's bridge filtering is missing.
    pub fn partition(&self, k: usize, peers: &[usize]) -> Result<(), String> {
        if !crate::on_path("nft") {
            return Err("nft (nftables) is not installed".into());
        }
        let me = &self.hosts[k].link;
        let mut rules = format!(
            "table bridge {table} {{\n\
             chain input {{ type filter hook input priority 0; policy accept; iifname \"{me}\" drop; }}\n\
             chain output {{ type filter hook output priority 0; policy accept; oifname \"{me}\" drop; }}\n\
             chain forward {{ type filter hook forward priority 0; policy accept;\n",
            table = self.table(k)
        );
        for &p in peers {
            let peer = &self.hosts[p].link;
            rules.push_str(&format!(
                "iifname \"{me}\" oifname \"{peer}\" drop;\niifname \"{peer}\" oifname \"{me}\" drop;\n"
            ));
        }
        rules.push_str("}\n}\n");
        nft(&["-f", "-"], Some(&rules))
    }

    /// Removes host `k`'s partition.
    pub fn rejoin(&self, k: usize) -> Result<(), String> {
        nft(&["delete", "table", "bridge", &self.table(k)], None)
    }

    /// The nftables table of host `k`'s partition.
    fn table(&self, k: usize) -> String {
        format!("pfs_part_{}", self.hosts[k].link)
    }

    /// Delays every packet to and from host `k` by `ms` (netem on both
    /// ends of its pair); an error where `sch_netem` is missing.
    pub fn delay(&self, k: usize, ms: u32) -> Result<(), String> {
        let d = format!("{ms}ms");
        self.qdisc(k, "add", &["netem", "delay", &d])
    }

    /// Lets at most `bytes_per_s` through to and from host `k` (a token
    /// bucket, `tbf`, on both ends of its pair, queueing what waits):
    /// where the kernel lacks `sch_netem`, this stretches each of the
    /// host's requests over seconds as a delay would. Undone by
    /// [`Net::undelay`].
    pub fn throttle(&self, k: usize, bytes_per_s: u32) -> Result<(), String> {
        let rate = format!("{}bit", u64::from(bytes_per_s) * 8);
        self.qdisc(
            k,
            "add",
            &["tbf", "rate", &rate, "burst", "1600", "limit", "4000000"],
        )
    }

    /// Removes the delay (or throttle) of host `k`.
    pub fn undelay(&self, k: usize) -> Result<(), String> {
        self.qdisc(k, "del", &[])
    }

    /// `tc qdisc VERB dev ... root QDISC...` on both ends of host `k`'s
    /// pair: its end outside the namespace, then the peer inside it.
    fn qdisc(&self, k: usize, verb: &str, qdisc: &[&str]) -> Result<(), String> {
        let h = &self.hosts[k];
        let peer = h.peer();
        for (ns, dev) in [
            (None, h.link.as_str()),
            (Some(h.ns.as_str()), peer.as_str()),
        ] {
            let mut args = vec!["qdisc", verb, "dev", dev, "root"];
            args.extend(qdisc);
            tc(ns, &args)?;
        }
        Ok(())
    }
}

/// Runs `nft ARGS...`, with `input` on its stdin.
fn nft(args: &[&str], input: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.unwrap_or_default().as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    drop(stdin);
    let o = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}\n{}",
            args.join(" "),
            crate::cli::text(&o),
            input.unwrap_or_default()
        ))
    }
}

/// Runs `tc ARGS...` (in namespace `ns`).
fn tc(ns: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "tc"]);
            c
        }
        None => Command::new("tc"),
    };
    let o: Output = c
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run tc: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("tc {}: {}", args.join(" "), crate::cli::text(&o)))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (k, h) in self.hosts.iter().enumerate() {
            if crate::on_path("nft") {
                let _ = self.rejoin(k);
            }
            let _ = ip(&["link", "del", &h.link]);
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The qdiscs on both ends of host `k`'s pair, as `tc` shows them.
    fn qdiscs(net: &Net, k: usize) -> String {
        let h = &net.hosts[k];
        let peer = h.peer();
        let show = |pre: &[&str], dev: &str| {
            let o = Command::new(pre[0])
                .args(&pre[1..])
                .args(["tc", "qdisc", "show", "dev", dev])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        show(&["env"], &h.link) + &show(&["ip", "netns", "exec", &h.ns], &peer)
    }

    #[test]
    fn a_throttle_goes_on_both_ends_of_a_hosts_pair_and_comes_off() {
        let net = match Net::new(&["q"]) {
            Ok(n) => n,
            Err(why) => {
                crate::skipped(&format!("no network namespaces here: {why}"));
                return;
            }
        };
        if let Err(why) = net.throttle(0, 2000) {
            crate::skipped(&format!("no token bucket (sch_tbf) here: {why}"));
            return;
        }
        assert_eq!(qdiscs(&net, 0).matches("qdisc tbf").count(), 2);
        net.undelay(0).unwrap();
        assert_eq!(qdiscs(&net, 0).matches("qdisc tbf").count(), 0);
    }
}
