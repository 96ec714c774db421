//! Network namespaces, the bridge that joins them, and nftables link cuts.
//!
//! Owns every kernel object the harness makes: one namespace per server (`zkj<pid>-<k>n<i>`), a
//! veth pair from it to one bridge inside a hub namespace (`zkj<pid>-<k>hub`), an uplink veth
//! (`zkj<pid>-<k>h`) from the root namespace to that bridge, addresses in a
//! private 10.231.<x>.0/24 chosen to avoid ones already in use, and an `inet zkj` nftables
//! table inside each namespace whose input chain drops what a partition forbids. Clients
//! stay in the root namespace and reach every server over the uplink; partitions cut
//! server-to-server links only, client partitions (`cut_clients`) only the uplink's traffic
//! to one server's client port. Never touches objects without its prefix; everything it makes is registered
//! with `cleanup` before use, so a panic, Ctrl-C or a later sweep removes it.

use std::process::Command;

use crate::cleanup;

pub const PREFIX: &str = "zkj";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`{cmd}` failed: {stderr}")]
    Cmd { cmd: String, stderr: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("no free 10.231.x.0/24 subnet")]
    NoSubnet,
}

/// Runs a command, failing with its stderr.
pub fn run(args: &[&str]) -> Result<String, NetError> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        return Err(NetError::Cmd {
            cmd: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs an nft script inside a namespace.
fn nft(ns: &str, script: &str) -> Result<(), NetError> {
    run(&["ip", "netns", "exec", ns, "nft", script]).map(|_| ())
}

/// True when this process can make namespaces (root, iproute2, nft present).
pub fn available() -> Result<(), String> {
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    for tool in [["ip", "-V"], ["nft", "--version"]] {
        if run(&tool).is_err() {
            return Err(format!("`{}` not available", tool.join(" ")));
        }
    }
    Ok(())
}

/// The namespaces and bridge of one run.
#[derive(Debug)]
pub struct Net {
    pub bridge: String,
    pub namespaces: Vec<String>,
    pub ips: Vec<String>,
    pub gateway: String,
}

impl Net {
    /// Makes `n` namespaces joined by a fresh bridge (`bridge` names the hub namespace).
    pub fn create(n: usize) -> Result<Net, NetError> {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pid = std::process::id();
        // pid plus a per-process counter: tests in one process may make several nets.
        let id = format!(
            "{pid}-{}",
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let used = run(&["ip", "-4", "-o", "addr"])?;
        let x = (1..=250u32)
            .map(|i| (pid + i) % 250 + 1)
            .find(|x| !used.contains(&format!("10.231.{x}.")))
            .ok_or(NetError::NoSubnet)?;
        // The bridge lives in its own "hub" namespace: the root namespace may have
        // br_netfilter on with a FORWARD DROP policy (Docker), which would drop bridged
        // server-to-server traffic. A fresh namespace has no rules, so we change nothing
        // global. The root namespace reaches the hub through one more veth pair.
        let hub = format!("{PREFIX}{id}hub");
        let uplink = format!("{PREFIX}{id}h");
        let gateway = format!("10.231.{x}.1");
        cleanup::register_netns(&hub);
        cleanup::register_link(&uplink);
        run(&["ip", "netns", "add", &hub])?;
        let in_hub = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", hub.as_str()];
            v.extend_from_slice(args);
            run(&v)
        };
        in_hub(&["ip", "link", "add", "br0", "type", "bridge"])?;
        in_hub(&["ip", "link", "set", "br0", "up"])?;
        run(&[
            "ip", "link", "add", &uplink, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ])?;
        in_hub(&["ip", "link", "set", "up0", "master", "br0"])?;
        in_hub(&["ip", "link", "set", "up0", "up"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &uplink,
        ])?;
        run(&["ip", "link", "set", &uplink, "up"])?;
        let mut net = Net {
            bridge: hub.clone(),
            namespaces: Vec::new(),
            ips: Vec::new(),
            gateway,
        };
        for i in 1..=n {
            let ns = format!("{PREFIX}{id}n{i}");
            let veth = format!("{PREFIX}{id}v{i}");
            let ip = format!("10.231.{x}.{}", 10 + i);
            cleanup::register_netns(&ns);
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", &veth, "netns", &hub, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            in_hub(&["ip", "link", "set", &veth, "master", "br0"])?;
            in_hub(&["ip", "link", "set", &veth, "up"])?;
            run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            run(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
            nft(&ns, "add table inet zkj")?;
            nft(
                &ns,
                "add chain inet zkj input { type filter hook input priority 0; policy accept; }",
            )?;
            net.namespaces.push(ns);
            net.ips.push(ip);
        }
        Ok(net)
    }

    /// Drops everything server `to` receives from server `from` (one direction).
    pub fn cut(&self, from: usize, to: usize) -> Result<(), NetError> {
        nft(
            &self.namespaces[to],
            &format!("add rule inet zkj input ip saddr {} drop", self.ips[from]),
        )
    }

    /// Drops what server `to` receives on its client port from the root namespace (the
    /// harness's clients arrive from the uplink's `gateway` address); server links stay up.
    /// `heal` removes it.
    pub fn cut_clients(&self, to: usize) -> Result<(), NetError> {
        nft(
            &self.namespaces[to],
            &format!(
                "add rule inet zkj input ip saddr {} tcp dport {} drop",
                self.gateway,
                crate::cluster::CLIENT_PORT
            ),
        )
    }

    /// Applies a grudge: for each server, the set of servers it must not hear from.
    pub fn apply(&self, grudge: &[Vec<usize>]) -> Result<(), NetError> {
        self.heal()?;
        for (to, froms) in grudge.iter().enumerate() {
            for &from in froms {
                self.cut(from, to)?;
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<(), NetError> {
        for ns in &self.namespaces {
            nft(ns, "flush chain inet zkj input")?;
        }
        Ok(())
    }

    /// Removes namespaces and links now (also done by `cleanup::run_all`).
    pub fn destroy(&self) {
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        // Deleting the root end of the uplink removes its peer; the hub's veths go with it.
        let _ = run(&[
            "ip",
            "link",
            "del",
            &format!("{}h", self.bridge.trim_end_matches("hub")),
        ]);
        let _ = run(&["ip", "netns", "del", &self.bridge]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Removes namespaces and links with our prefix whose owning harness process is gone
/// (left behind by a SIGKILLed run). Returns what it removed.
pub fn sweep_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let alive = |name: &str| -> bool {
        let digits: String = name[PREFIX.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        match digits.parse::<u32>() {
            // A live process with that pid still owns it (a harness binary or a test
            // binary using the library); pid reuse can only make us keep leftovers longer.
            Ok(pid) => std::path::Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => true,
        }
    };
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(PREFIX) && !alive(name) {
                if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
                    for p in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
                let _ = run(&["ip", "netns", "del", name]);
                removed.push(name.to_string());
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link"]) {
        for l in links.lines() {
            let Some(name) = l
                .split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n))
            else {
                continue;
            };
            if name.starts_with(PREFIX) && !alive(name) {
                let _ = run(&["ip", "link", "del", name]);
                removed.push(name.to_string());
            }
        }
    }
    removed
}
