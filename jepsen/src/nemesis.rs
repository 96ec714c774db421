//! Nemeses: seeded fault schedules and their execution against a `Cluster`.
//!
//! Owns turning (kind, seed, duration) into a recorded schedule of faults, the partition
//! shapes (grudges: for each server, whom it must not hear from), and applying and healing
//! each fault. Every start and stop is written to the history as a `NEMESIS` info op, so the
//! schedule of a run can be read back from its history. Never judges the outcome.
//!
//! Implemented: partitions (random halves, isolate one, bridge, majorities ring, one-way),
//! kill -9 + restart, SIGSTOP/SIGCONT, and `corrupt`: kill -9 one server, then truncate the
//! tail of, or flip one bit near the end of, its newest txn log segment (`log.*`, both
//! ZooKeeper and zkd name them so), restart at heal. Corruption destroys acknowledged data
//! on that server by design, so it is only allowed with 3 or more servers.
//! `lose-unsynced` (zkd only): servers run with `zkd.test.loseUnsyncedWrites=true`, which
//! keeps every unsynced byte in the process, so kill -9 loses it as a power cut would; the
//! fault kills one server, a minority, or all of them at once (acknowledged writes were
//! fsynced on a quorum, so they must survive even that), restart at heal. NOT implemented
//! yet: clock skew (no libfaketime here), snapshot corruption.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cluster::{Cluster, ServerKind};
use crate::history::{Op, OpType, NEMESIS};
use crate::workload::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    None,
    Kill,
    Pause,
    Partition,
    Corrupt,
    LoseUnsynced,
    Mixed,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Kind::None,
            "kill" => Kind::Kill,
            "pause" => Kind::Pause,
            "partition" => Kind::Partition,
            "corrupt" => Kind::Corrupt,
            "lose-unsynced" => Kind::LoseUnsynced,
            "mixed" => Kind::Mixed,
            _ => {
                return Err(format!(
                    "unknown nemesis {s} (none|kill|pause|partition|corrupt|lose-unsynced|mixed)"
                ))
            }
        })
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Kill(usize),
    Pause(usize),
    /// Name of the shape and the grudge.
    Partition(&'static str, Vec<Vec<usize>>),
    /// Kill server, then cut `bytes` off its newest log segment (`flip` false) or flip one
    /// bit `bytes` before its end (`flip` true).
    Corrupt {
        server: usize,
        flip: bool,
        bytes: u64,
    },
    /// kill -9 these servers together (`scope`: one, minority, all), each losing every
    /// byte it had not fsynced.
    LoseUnsynced {
        scope: &'static str,
        servers: Vec<usize>,
    },
}

/// zoo.cfg lines every server needs for `kind`, or why `kind` cannot run on `server`.
pub fn server_cfg(kind: Kind, server: &ServerKind) -> Result<String, String> {
    match (kind, server) {
        (Kind::LoseUnsynced, ServerKind::Zkd(_)) => {
            Ok("zkd.test.loseUnsyncedWrites=true\n".to_string())
        }
        (Kind::LoseUnsynced, ServerKind::ApacheZk) => Err(
            "the lose-unsynced nemesis needs zkd's zkd.test.loseUnsyncedWrites mode; Apache ZooKeeper has no way to drop its unsynced writes on kill (use --server zkd)".into(),
        ),
        _ => Ok(String::new()),
    }
}

/// Which servers a `lose-unsynced` fault kills: one, a minority, or (most often, the case
/// that matters) all of them at once.
fn lose_unsynced(rng: &mut StdRng, n: usize) -> Fault {
    let mut nodes: Vec<usize> = (0..n).collect();
    nodes.shuffle(rng);
    let (scope, k) = match rng.gen_range(0..4) {
        0 => ("one", 1),
        1 => ("minority", ((n - 1) / 2).max(1)),
        _ => ("all", n),
    };
    let mut servers = nodes[..k].to_vec();
    servers.sort();
    Fault::LoseUnsynced { scope, servers }
}

/// Cut both ways between every pair across `a` and `b`.
fn split(n: usize, a: &[usize], b: &[usize]) -> Vec<Vec<usize>> {
    let mut g = vec![Vec::new(); n];
    for &x in a {
        for &y in b {
            g[x].push(y);
            g[y].push(x);
        }
    }
    g
}

/// The partition shapes Jepsen uses, for `n` servers.
pub fn partition(rng: &mut StdRng, n: usize) -> (&'static str, Vec<Vec<usize>>) {
    let mut nodes: Vec<usize> = (0..n).collect();
    nodes.shuffle(rng);
    match rng.gen_range(0..5) {
        0 => {
            let (a, b) = nodes.split_at(n / 2);
            ("random-halves", split(n, a, b))
        }
        1 => ("isolate-one", split(n, &nodes[..1], &nodes[1..])),
        2 if n >= 3 => {
            // Two halves that cannot talk, and one node (nodes[0]) that talks to both.
            let rest = &nodes[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            ("bridge", split(n, a, b))
        }
        3 => {
            // Each server hears only its ring neighbours within distance d, where 2d+1 is a
            // majority: every server sees a majority, no two see the same one. For n = 3 this
            // degenerates to no cut at all.
            let d = n / 2 / 2 + (n / 2) % 2;
            let mut g = vec![Vec::new(); n];
            for (pos, &x) in nodes.iter().enumerate() {
                for (qos, &y) in nodes.iter().enumerate() {
                    let dist = pos.abs_diff(qos).min(n - pos.abs_diff(qos));
                    if dist > d {
                        g[x].push(y);
                    }
                }
            }
            ("majorities-ring", g)
        }
        _ => {
            // One way: nobody hears nodes[0], nodes[0] still hears everyone.
            let mut g = vec![Vec::new(); n];
            for &y in &nodes[1..] {
                g[y].push(nodes[0]);
            }
            ("one-way", g)
        }
    }
}

/// A deterministic schedule: faults of `kind`, each held for `hold`, separated by `gap`.
pub fn schedule(
    kind: Kind,
    seed: u64,
    n: usize,
    total: Duration,
    hold: Duration,
    gap: Duration,
) -> Vec<(Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65);
    let mut out = Vec::new();
    let mut t = gap;
    while t + hold < total && kind != Kind::None {
        let k = match kind {
            Kind::Mixed => [Kind::Kill, Kind::Pause, Kind::Partition][rng.gen_range(0..3)],
            k => k,
        };
        let f = match k {
            Kind::Kill => Fault::Kill(rng.gen_range(0..n)),
            Kind::Pause => Fault::Pause(rng.gen_range(0..n)),
            Kind::Corrupt => Fault::Corrupt {
                server: rng.gen_range(0..n),
                flip: rng.gen_bool(0.5),
                bytes: rng.gen_range(1..4096),
            },
            Kind::LoseUnsynced => lose_unsynced(&mut rng, n),
            _ if n < 2 => Fault::Kill(0),
            _ => {
                let (name, g) = partition(&mut rng, n);
                Fault::Partition(name, g)
            }
        };
        out.push((t, f));
        t += hold + gap;
    }
    out
}

fn describe(f: &Fault, cluster: &Cluster) -> serde_json::Value {
    match f {
        Fault::Kill(i) => json!({"kill": cluster.name(*i)}),
        Fault::Pause(i) => json!({"pause": cluster.name(*i)}),
        Fault::Corrupt {
            server,
            flip,
            bytes,
        } => json!({"corrupt": cluster.name(*server), "flip": flip, "bytes": bytes}),
        Fault::LoseUnsynced { scope, servers } => json!({"lose-unsynced": scope,
            "kill": servers.iter().map(|&i| cluster.name(i)).collect::<Vec<_>>()}),
        Fault::Partition(name, g) => json!({"partition": name, "grudge": g.iter().enumerate()
            .map(|(i, v)| (cluster.name(i), v.iter().map(|&j| cluster.name(j)).collect::<Vec<_>>()))
            .collect::<std::collections::BTreeMap<_, _>>()}),
    }
}

/// Runs the schedule: start each fault at its time, heal after `hold`. Ends healed.
pub async fn run(
    cluster: &mut Cluster,
    plan: &[(Duration, Fault)],
    hold: Duration,
    rec: &Recorder,
) {
    let start = tokio::time::Instant::now();
    for (at, fault) in plan {
        tokio::time::sleep_until(start + *at).await;
        let value = describe(fault, cluster);
        rec.record(Op::new(
            NEMESIS,
            OpType::Info,
            "start",
            None,
            value.clone(),
            rec.now(),
        ));
        let res = match fault {
            Fault::Kill(i) => {
                cluster.kill(*i);
                Ok(())
            }
            Fault::Pause(i) => {
                cluster.pause(*i);
                Ok(())
            }
            Fault::Partition(_, g) => cluster.net.apply(g).map_err(|e| e.to_string()),
            Fault::LoseUnsynced { servers, .. } => {
                cluster.kill_together(servers);
                Ok(())
            }
            Fault::Corrupt {
                server,
                flip,
                bytes,
            } => {
                cluster.kill(*server);
                corrupt_newest_log(&cluster.servers[*server].dir, *flip, *bytes).map(|f| {
                    rec.record(Op::new(
                        NEMESIS,
                        OpType::Info,
                        "corrupted",
                        None,
                        json!(f),
                        rec.now(),
                    ));
                })
            }
        };
        if let Err(e) = res {
            rec.record(Op::new(
                NEMESIS,
                OpType::Info,
                "error",
                None,
                json!(e),
                rec.now(),
            ));
        }
        tokio::time::sleep(hold).await;
        let healed = cluster.heal_all().map_err(|e| e.to_string());
        let mut op = Op::new(NEMESIS, OpType::Info, "stop", None, value, rec.now());
        if let Err(e) = healed {
            op = op.with_error(e);
        }
        rec.record(op);
    }
}

/// The most recently modified `log.*` file under `dir`.
fn newest_log(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut best: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log."))
            {
                let m = meta.modified().ok()?;
                if best.as_ref().is_none_or(|(bm, _)| m > *bm) {
                    best = Some((m, p));
                }
            }
        }
    }
    best.map(|b| b.1)
}

/// Truncates or bit-flips the newest log segment of a (stopped) server; returns what it did.
fn corrupt_newest_log(dir: &std::path::Path, flip: bool, bytes: u64) -> Result<String, String> {
    let path = newest_log(dir).ok_or("no log segment")?;
    // Both servers preallocate segments with zeros; measure from the end of the data.
    let content = std::fs::read(&path).map_err(|e| e.to_string())?;
    let len = content
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i as u64 + 1);
    let at = len.saturating_sub(bytes);
    if flip {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| e.to_string())?;
        let mut b = [0u8];
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.read_exact(&mut b))
            .map_err(|e| e.to_string())?;
        b[0] ^= 1 << (bytes % 8);
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.write_all(&b))
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "flipped bit {} of byte {at} of {} ({len} bytes)",
            bytes % 8,
            path.display()
        ))
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(at))
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "truncated {} from {len} to {at} bytes",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_truncates_or_flips_only_the_newest_segment() {
        let dir = std::env::temp_dir().join(format!("zkj-corrupt-{}", std::process::id()));
        let v2 = dir.join("data/version-2");
        std::fs::create_dir_all(&v2).unwrap();
        // 100 bytes of data (0xff), then 50 bytes of zero preallocation.
        let seg = [vec![0xffu8; 100], vec![0u8; 50]].concat();
        std::fs::write(v2.join("log.1"), &seg).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(v2.join("log.2"), &seg).unwrap();
        std::fs::write(v2.join("snapshot.1"), &seg).unwrap();
        corrupt_newest_log(&dir, false, 30).unwrap();
        assert_eq!(std::fs::metadata(v2.join("log.2")).unwrap().len(), 70);
        assert_eq!(std::fs::metadata(v2.join("log.1")).unwrap().len(), 150);
        corrupt_newest_log(&dir, true, 10).unwrap();
        let data = std::fs::read(v2.join("log.2")).unwrap();
        assert_eq!(data.iter().filter(|b| **b != 0xff).count(), 1);
        assert_eq!(data[60], 0xff ^ (1 << 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn schedules_are_seeded() {
        let t = Duration::from_secs(60);
        let (h, g) = (Duration::from_secs(5), Duration::from_secs(5));
        assert_eq!(
            schedule(Kind::Mixed, 7, 5, t, h, g),
            schedule(Kind::Mixed, 7, 5, t, h, g)
        );
        assert_ne!(
            schedule(Kind::Mixed, 7, 5, t, h, g),
            schedule(Kind::Mixed, 8, 5, t, h, g)
        );
        assert!(schedule(Kind::None, 7, 5, t, h, g).is_empty());
    }

    #[test]
    fn lose_unsynced_kills_one_a_minority_or_all_and_is_zkd_only() {
        let t = Duration::from_secs(600);
        let (h, g) = (Duration::from_secs(5), Duration::from_secs(5));
        let mut scopes = std::collections::BTreeSet::new();
        for (_, f) in schedule(Kind::LoseUnsynced, 1, 5, t, h, g) {
            let Fault::LoseUnsynced { scope, servers } = f else {
                panic!("{f:?}")
            };
            let want = match scope {
                "one" => 1,
                "minority" => 2,
                _ => 5,
            };
            assert_eq!(servers.len(), want, "{scope}");
            scopes.insert(scope);
        }
        assert_eq!(scopes.len(), 3);
        assert!(
            server_cfg(Kind::LoseUnsynced, &ServerKind::Zkd("zkd".into()))
                .unwrap()
                .contains("zkd.test.loseUnsyncedWrites=true")
        );
        assert!(server_cfg(Kind::LoseUnsynced, &ServerKind::ApacheZk).is_err());
        assert_eq!(server_cfg(Kind::Kill, &ServerKind::ApacheZk).unwrap(), "");
    }

    #[test]
    fn partition_shapes_never_cut_a_server_from_itself() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            for n in [3, 5] {
                let (name, g) = partition(&mut rng, n);
                for (i, v) in g.iter().enumerate() {
                    assert!(!v.contains(&i), "{name}");
                }
                if name == "majorities-ring" {
                    for v in &g {
                        assert!(n - v.len() > n / 2, "each server still sees a majority");
                    }
                }
            }
        }
    }
}
