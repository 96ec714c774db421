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
