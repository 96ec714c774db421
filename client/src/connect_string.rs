//! Connect strings: `host1:2181,host2:2181/chroot`, and the order hosts are tried in.
//!
//! Owns parsing (as ZooKeeper's ConnectStringParser: comma-separated `host[:port]`, port
//! 2181 when absent, an optional chroot after the first `/`) and the host order
//! (a seedable shuffle, then round robin, as StaticHostProvider does). Never resolves
//! names: each `host:port` is handed to the socket as written.

use zkd_proto::ErrorCode;

use crate::error::Error;

/// A parsed connect string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// `host:port` entries, in the order written.
    pub hosts: Vec<String>,
    /// The chroot (`/app`), or `None` for none (or `/`).
    pub chroot: Option<String>,
}

impl ConnectString {
    /// Parses `h1:2181,h2:2181/app`. A bad chroot (relative, trailing `/`, empty component)
    /// or an empty host list is `BadArguments`, like Java's IllegalArgumentException.
    pub fn parse(s: &str) -> Result<ConnectString, Error> {
        let bad = || Error::Keeper(ErrorCode::BadArguments);
        let (hosts_part, chroot) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(c) => {
                if c.ends_with('/')
                    || c.contains("//")
                    || c.split('/').any(|p| p == "." || p == "..")
                {
                    return Err(bad());
                }
                Some(c.to_string())
            }
        };
        let mut hosts = Vec::new();
        for h in hosts_part.split(',') {
            let h = h.trim();
            if h.is_empty() {
                continue;
            }
            // `[::1]:2181`, `[::1]`, `host:2181`, `host`.
            let has_port = match h.rfind(']') {
                Some(close) => h[close..].contains(':'),
                None => h.contains(':'),
            };
            hosts.push(if has_port {
                h.to_string()
            } else {
                format!("{h}:2181")
            });
        }
        if hosts.is_empty() {
            return Err(bad());
        }
        Ok(ConnectString { hosts, chroot })
    }
}

/// The client addresses (`host:port`) of the members listed in `/zookeeper/config` data,
/// in the order listed, without duplicates: the `;clientHost:clientPort` part of each
/// `server.N=host:quorumPort:electionPort[:role];clientHost:clientPort` line. A client
/// host of `0.0.0.0` (or `[::]`, or a bare `;port`) is the wildcard the server listens
/// on, so the member's quorum host stands in for it, as Curator's EnsembleTracker does.
/// Observers count (clients may use them). Lines that are not `server.N=`, members
/// without a client part and malformed lines are skipped, never a panic.
///
/// ```
/// use zkd_client::connect_string::client_hosts_from_config;
///
/// let config = "server.1=10.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
///               server.2=10.0.0.2:2888:3888:observer;10.0.0.12:2182\n\
///               version=100000000";
/// assert_eq!(client_hosts_from_config(config), ["10.0.0.1:2181", "10.0.0.12:2182"]);
/// ```
pub fn client_hosts_from_config(data: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in data.lines() {
        if let Some(h) = client_host_of(line.trim()) {
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out
}

/// One `server.N=...` line's client `host:port`, or `None`.
fn client_host_of(line: &str) -> Option<String> {
    let (key, value) = line.split_once('=')?;
    let id = key.trim().strip_prefix("server.")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut parts = value.split(';');
    let quorum = parts.next()?.trim();
    let client = parts.next()?.trim();
    // The quorum host: `host:q:e[:role]` or `[v6]:q:e[:role]`; several `|`-separated
    // addresses (multiAddress): the first.
    let quorum = quorum.split('|').next()?;
    let (quorum_host, quorum_ports) = split_host(quorum)?;
    if quorum_ports.split(':').count() < 2 {
        return None;
    }
    let (host, port) = match client.rsplit_once(':') {
        Some(_) if client.starts_with('[') || client.matches(':').count() == 1 => {
            let (h, p) = split_host(client)?;
            (h, p)
        }
        // A bare port: the wildcard address.
        None => ("0.0.0.0", client),
        Some(_) => return None,
    };
    let port: u16 = port.trim().parse().ok().filter(|p| *p != 0)?;
    let host = host.trim();
    let wildcard = matches!(host, "0.0.0.0" | "::" | "0:0:0:0:0:0:0:0");
    let host = if wildcard { quorum_host } else { host };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ',' || c == '/') {
        return None;
    }
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// `host:rest` or `[v6]:rest` into (host without brackets, rest).
fn split_host(s: &str) -> Option<(&str, &str)> {
    if let Some(r) = s.strip_prefix('[') {
        let (h, rest) = r.split_once(']')?;
        Some((h, rest.strip_prefix(':')?))
    } else {
        s.split_once(':')
    }
}

/// A small deterministic generator (splitmix64): shuffles hosts and jitters back-off.
/// Seedable so tests can reproduce an order; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed that differs between processes and calls.
    pub fn entropy() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32) ^ (&t as *const u64 as u64)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_chroot() {
        let c = ConnectString::parse("a:1,b,[::1]:3,[::2]/app/x").unwrap();
        assert_eq!(c.hosts, ["a:1", "b:2181", "[::1]:3", "[::2]:2181"]);
        assert_eq!(c.chroot.as_deref(), Some("/app/x"));
        assert_eq!(ConnectString::parse("a:1/").unwrap().chroot, None);
        assert!(ConnectString::parse("a:1/app/").is_err());
        assert!(ConnectString::parse("a:1/app//b").is_err());
        assert!(ConnectString::parse("/app").is_err());
        assert!(ConnectString::parse("").is_err());
    }

    #[test]
    fn client_hosts_from_zookeeper_config() {
        // What Apache ZooKeeper 3.8 serves for a 3-server ensemble.
        let zk = "server.1=127.0.0.1:12881:13881:participant;127.0.0.1:12181\n\
                  server.2=127.0.0.1:12882:13882:participant;127.0.0.1:12182\n\
                  server.3=127.0.0.1:12883:13883:participant;127.0.0.1:12183\n\
                  version=0";
        assert_eq!(
            client_hosts_from_config(zk),
            ["127.0.0.1:12181", "127.0.0.1:12182", "127.0.0.1:12183"]
        );
        // Wildcard client hosts take the quorum host; observers count; IPv6 bracketed.
        let mixed = "server.1=zk1:2888:3888:participant;0.0.0.0:2181\r\n\
                     server.2=zk2:2888:3888:observer;2182\n\
                     server.3=[0:0:0:0:0:0:0:1]:2888:3888:participant;[0:0:0:0:0:0:0:1]:2183\n\
                     server.4=[::1]:2888:3888;[::]:2184\n\
                     server.5=zk5a:2888:3888|zk5b:2889:3889:participant;0.0.0.0:2185\n\
                     server.6=zk6:2888:3888:participant;zk1:2181\n\
                     version=100000000\n";
        assert_eq!(
            client_hosts_from_config(mixed),
            [
                "zk1:2181",
                "zk2:2182",
                "[0:0:0:0:0:0:0:1]:2183",
                "[::1]:2184",
                "zk5a:2185"
            ]
        );
    }

    #[test]
    fn malformed_config_lines_are_skipped() {
        let bad = [
            "",
            "version=0",
            "garbage",
            "server.1",
            "server.=a:1:2;a:3",
            "server.x=a:1:2;a:3",
            "server.1=a:1:2",          // no client part
            "server.1=a:1:2;",         // empty client part
            "server.1=a:1:2;a:",       // no port
            "server.1=a:1:2;a:0",      // port 0
            "server.1=a:1:2;a:99999",  // port out of range
            "server.1=a:1:2;a:b",      // not a port
            "server.1=a;a:3",          // quorum part without ports
            "server.1=[::1:1:2;a:3",   // unclosed bracket
            "server.1=a:1:2;[::1:3",   // unclosed bracket
            "server.1=a:1:2;a:b:3",    // unbracketed v6-ish
            "server.1=:1:2;0.0.0.0:3", // wildcard and no quorum host
            "server.1=a:1:2;b c:3",    // space in a host
            "server.1=a:1:2;b/c:3",    // would break a connect string
            "server.1=a:1:2;b,c:3",
            "=;:",
            ";;;",
            "server.1=\u{fffd}:1:2;\u{fffd}",
        ];
        for line in bad {
            assert!(
                client_hosts_from_config(line).is_empty(),
                "{line:?} gave {:?}",
                client_hosts_from_config(line)
            );
        }
        // Good lines among bad ones survive; duplicates count once.
        let text = format!("{}\nserver.7=h:1:2;h:7\nserver.8=h:1:2;h:7", bad.join("\n"));
        assert_eq!(client_hosts_from_config(&text), ["h:7"]);
    }

    #[test]
    fn seeded_shuffle_is_reproducible_and_a_permutation() {
        let base: Vec<u32> = (0..10).collect();
        let mut a = base.clone();
        let mut b = base.clone();
        Rng::new(7).shuffle(&mut a);
        Rng::new(7).shuffle(&mut b);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, base);
        let mut c = base.clone();
        Rng::new(8).shuffle(&mut c);
        assert_ne!(
            a, c,
            "different seeds give different orders (for these seeds)"
        );
    }
}
