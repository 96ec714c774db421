//! Nemeses: seeded fault schedules and their execution against a `Cluster`.
//!
//! Owns turning (kind, seed, duration) into a recorded schedule of faults, the partition
//! shapes (grudges: for each server, whom it must not hear from), and applying and healing
//! each fault. Every start and stop is written to the history as a `NEMESIS` info op, so the
//! schedule of a run can be read back from its history. Never judges the outcome.
//!
//! Implemented:
//! - `partition`: random halves, isolate one, bridge, majorities ring, one-way; server to
//!   server links only.
//! - `client-partition`: the harness's clients (root namespace, arriving from the uplink
//!   address) cannot reach the client port of one or two servers; server links stay up.
//! - `kill` (kill -9 + restart) and `pause` (SIGSTOP/SIGCONT).
//! - `clock`, `clock-wall`: servers run under libfaketime with a per-server offset file; a
//!   fault steps one server's clock by ±1..60 s, or strobes it (offset on and off every
//!   1.5 s) for the hold; heal sets it back to +0 (itself a step). `clock` fakes
//!   CLOCK_MONOTONIC too, which libfaketime then moves with the wall clock, backwards
//!   included (no real kernel does that: a backward step stalls monotonic timers for that
//!   long); `clock-wall` fakes only the wall clock (an NTP step, the ZK-1366 scenario).
//!   Apache ZooKeeper's JVM reads both clocks through libc's clock_gettime, so libfaketime
//!   reaches it as well.
//! - `corrupt`: kill -9 one server, then truncate the tail of, or flip one bit near the end
//!   of, its newest txn log segment (`log.*`, both ZooKeeper and zkd name them so).
//! - `corrupt-snap`: kill -9 one server, then truncate, or flip one bit somewhere in, its
//!   newest snapshot (`zkd-v1/snapshot.<zxid>`, ZooKeeper's `version-2/snapshot.<zxid>`);
//!   the cluster is started with a low snapCount so snapshots (and older ones) exist, and
//!   every fault first deletes all but each server's 3 newest snapshots (zkCleanup.sh), or
//!   a 10-minute run of a large tree fills the disk.
//!
//! Both corruptions restart the server at heal. If it exits by itself within a few seconds
//! (refuses its data), that is recorded as a `refused` info op with the last lines of its
//! log, and the operator repair follows: its data directory is emptied (`myid` kept) and it
//! is started again, to sync from the leader; `repaired` records that. The schedule then
//! waits until that server serves sessions (has synced) before the next fault, so at most
//! one server's data is ever damaged at a time. Corruption destroys
//! acknowledged data on that server by design, so it is only allowed with 3 or more servers.
//! `mixed` draws from kill, pause, partition, client-partition and clock (the cluster then
//! runs under libfaketime when it is installed; without it clock faults record an error),
//! never corruption.
//!
//! - `lose-unsynced` (zkd only): servers run with `zkd.test.loseUnsyncedWrites=true`, which
//!   keeps every unsynced byte in the process, so kill -9 loses it as a power cut would; the
//!   fault kills one server, a minority, or all of them at once (acknowledged writes were
//!   fsynced on a quorum, so they must survive even that), restart at heal.

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
    CorruptSnap,
    ClientPartition,
    Clock,
    ClockWall,
    Mixed,
}

impl Kind {
    /// Whether servers must run under libfaketime, and whether it also fakes the monotonic
    /// clock (see `cluster::Options::faketime`).
    pub fn faketime(self) -> Option<bool> {
        match self {
            Kind::Clock => Some(true),
            Kind::ClockWall => Some(false),
            Kind::Mixed if crate::cluster::faketime_available() => Some(true),
            _ => None,
        }
    }

    /// Destroys acknowledged data on one server (needs 3 or more).
    pub fn corrupts(self) -> bool {
        matches!(self, Kind::Corrupt | Kind::CorruptSnap)
    }
}

/// The largest clock step a clock fault makes, in seconds.
pub const MAX_CLOCK_STEP_S: i64 = 60;

/// How late past its timeout a dead session's ephemeral may still be seen (the sessions
/// checker's bound): 10 s, plus the largest clock step when the nemesis moves servers'
/// CLOCK_MONOTONIC back (`clock`, and `mixed` under libfaketime). Session expiry is timed
/// by the monotonic clock (ZooKeeper's System.nanoTime, zkd's Instant), so when that clock
/// goes back by D a server, ZooKeeper or zkd, expires sessions D later in real time; it
/// cannot tell. No kernel steps CLOCK_MONOTONIC back; libfaketime does.
pub fn expiry_bound_ms(kind: Kind) -> u64 {
    let base = 10_000;
    if kind.faketime() == Some(true) {
        base + MAX_CLOCK_STEP_S as u64 * 1000
    } else {
        base
    }
}

/// `snapCount` for `corrupt-snap` runs: a snapshot every 50..100 txns, so there are several.
pub const CORRUPT_SNAP_COUNT: u64 = 100;

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
            "corrupt-snap" => Kind::CorruptSnap,
            "client-partition" => Kind::ClientPartition,
            "clock" => Kind::Clock,
            "clock-wall" => Kind::ClockWall,
            "mixed" => Kind::Mixed,
            _ => return Err(format!("unknown nemesis {s} ({NAMES})")),
        })
    }
}

pub const NAMES: &str =
    "none|kill|pause|partition|client-partition|clock|clock-wall|corrupt|corrupt-snap|lose-unsynced|mixed";

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
    /// Kill server, then truncate its newest snapshot to `permille`/1000 of its length
    /// (`flip` false) or flip one bit at that position (`flip` true).
    CorruptSnap {
        server: usize,
        flip: bool,
        permille: u64,
    },
    /// Clients cannot reach these servers' client port.
    ClientPartition(Vec<usize>),
    /// Step server's clock by `offset` seconds, or with `strobe` switch between that offset
    /// and +0 every 1.5 s for the hold.
    Clock {
        server: usize,
        offset: i64,
        strobe: bool,
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
            Kind::Mixed => [
                Kind::Kill,
                Kind::Pause,
                Kind::Partition,
                Kind::ClientPartition,
                Kind::Clock,
            ][rng.gen_range(0..5)],
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
            Kind::CorruptSnap => Fault::CorruptSnap {
                server: rng.gen_range(0..n),
                flip: rng.gen_bool(0.5),
                permille: rng.gen_range(0..1000),
            },
            Kind::ClientPartition => {
                let mut nodes: Vec<usize> = (0..n).collect();
                nodes.shuffle(&mut rng);
                let k = rng.gen_range(1..=2.min(n));
                nodes.truncate(k);
                nodes.sort();
                Fault::ClientPartition(nodes)
            }
            Kind::Clock | Kind::ClockWall => {
                let magnitude = rng.gen_range(1..=MAX_CLOCK_STEP_S);
                Fault::Clock {
                    server: rng.gen_range(0..n),
                    offset: if rng.gen_bool(0.5) {
                        magnitude
                    } else {
                        -magnitude
                    },
                    strobe: rng.gen_bool(0.25),
                }
            }
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
        Fault::CorruptSnap {
            server,
            flip,
            permille,
        } => {
            json!({"corrupt-snap": cluster.name(*server), "flip": flip, "permille": permille})
        }
        Fault::ClientPartition(v) => {
            json!({"client-partition": v.iter().map(|&i| cluster.name(i)).collect::<Vec<_>>()})
        }
        Fault::Clock {
            server,
            offset,
            strobe,
        } => json!({"clock": cluster.name(*server), "offset_s": offset, "strobe": strobe}),
        Fault::Partition(name, g) => json!({"partition": name, "grudge": g.iter().enumerate()
            .map(|(i, v)| (cluster.name(i), v.iter().map(|&j| cluster.name(j)).collect::<Vec<_>>()))
            .collect::<std::collections::BTreeMap<_, _>>()}),
    }
}

fn info(rec: &Recorder, f: &str, value: serde_json::Value) {
    rec.record(Op::new(NEMESIS, OpType::Info, f, None, value, rec.now()));
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
        info(rec, "start", value.clone());
        // Byte length of each server log before the fault: a refusal is read from what
        // follows.
        let log_len = |c: &Cluster, i: usize| {
            std::fs::metadata(c.servers[i].dir.join("server.log")).map_or(0, |m| m.len())
        };
        let mut corrupted = None;
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
            Fault::ClientPartition(v) => v
                .iter()
                .try_for_each(|&i| cluster.net.cut_clients(i))
                .map_err(|e| e.to_string()),
            Fault::Clock { server, offset, .. } => cluster
                .set_clock_offset(*server, *offset)
                .map_err(|e| e.to_string()),
            Fault::Corrupt {
                server,
                flip,
                bytes,
            } => {
                cluster.kill(*server);
                corrupted = Some((*server, log_len(cluster, *server)));
                corrupt_newest_log(&cluster.servers[*server].dir, *flip, *bytes)
                    .map(|f| info(rec, "corrupted", json!(f)))
            }
            Fault::CorruptSnap {
                server,
                flip,
                permille,
            } => {
                // snapCount is low, so a large tree would otherwise fill the disk with
                // snapshots (no autopurge runs: ZooKeeper's is hourly at best).
                for s in &cluster.servers {
                    if let Err(e) = purge_old_snapshots(&s.dir, SNAPSHOTS_KEPT) {
                        info(rec, "error", json!(format!("purging snapshots: {e}")));
                    }
                }
                cluster.kill(*server);
                corrupted = Some((*server, log_len(cluster, *server)));
                corrupt_newest_snapshot(&cluster.servers[*server].dir, *flip, *permille)
                    .map(|f| info(rec, "corrupted", json!(f)))
            }
        };
        if let Err(e) = &res {
            info(rec, "error", json!(e));
        }
        match fault {
            Fault::Clock {
                server,
                offset,
                strobe: true,
            } if res.is_ok() => {
                // Offset on, off, on, ... every 1.5 s (libfaketime rereads within 1 s).
                let until = tokio::time::Instant::now() + hold;
                let mut on = true;
                while tokio::time::Instant::now() < until {
                    tokio::time::sleep(
                        Duration::from_millis(1500).min(until - tokio::time::Instant::now()),
                    )
                    .await;
                    on = !on;
                    let _ = cluster.set_clock_offset(*server, if on { *offset } else { 0 });
                }
            }
            _ => tokio::time::sleep(hold).await,
        }
        let healed = cluster.heal_all().map_err(|e| e.to_string());
        let mut op = Op::new(NEMESIS, OpType::Info, "stop", None, value, rec.now());
        if let Err(e) = healed {
            op = op.with_error(e);
        }
        rec.record(op);
        if let Some((i, from)) = corrupted {
            recover_corrupted(cluster, i, from, rec).await;
        }
    }
}

/// After a corruption's heal: if server `i` exits by itself within a few seconds of its
/// restart, record that (`refused`, with its exit status and the last lines its log got
/// after byte `from`), empty its data directory but `myid`, and start it again (`repaired`).
/// Either way, wait (up to 60 s) until it serves sessions again, that is, has synced with a
/// leader: the next corruption must not find two damaged servers (with one wiped and one
/// truncated, those two could elect each other and lose what only the third one has).
async fn recover_corrupted(cluster: &mut Cluster, i: usize, from: u64, rec: &Recorder) {
    let limit = match cluster.kind {
        crate::cluster::ServerKind::ApacheZk => Duration::from_secs(10),
        crate::cluster::ServerKind::Zkd(_) => Duration::from_secs(5),
    };
    let exited = cluster.wait_exit(i, limit).await;
    // What it logged since the fault: why it refused, or what it said about the damage.
    let log = std::fs::read(cluster.servers[i].dir.join("server.log")).unwrap_or_default();
    let tail = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
    if let Some(status) = exited {
        let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
        let last = lines.last().copied().unwrap_or("");
        // The first error-looking line says why more often than the last one (a JVM's
        // shutdown chatter, say).
        let error = lines
            .iter()
            .find(|l| l.contains("ERROR") || l.contains("rror"))
            .copied()
            .unwrap_or(last);
        info(
            rec,
            "refused",
            json!({"server": cluster.name(i), "refused": true, "status": status.code(),
                   "stderr": last, "error": error}),
        );
        let res = cluster
            .wipe(i)
            .and_then(|()| cluster.restart(i))
            .map_err(|e| e.to_string());
        let mut op = Op::new(
            NEMESIS,
            OpType::Info,
            "repaired",
            None,
            json!({"server": cluster.name(i), "wiped": true}),
            rec.now(),
        );
        if let Err(e) = res {
            op = op.with_error(e);
        }
        rec.record(op);
    } else {
        // It started: record what it said about the damage (fell back to an older
        // snapshot, cut a torn log tail), so every corruption shows it was noticed.
        let lines = damage_lines(&tail);
        info(
            rec,
            "noticed",
            json!({"server": cluster.name(i), "noticed": !lines.is_empty(), "lines": lines}),
        );
    }
    if let Err(e) = cluster.wait_ready(i, Duration::from_secs(60)).await {
        rec.record(
            Op::new(
                NEMESIS,
                OpType::Info,
                "unavailable",
                None,
                json!(cluster.name(i)),
                rec.now(),
            )
            .with_error(e.to_string()),
        );
    }
}

/// Up to three log lines in which a server reports damaged data it read at start-up
/// (zkd: "skipping unreadable snapshot", a truncated torn tail; ZooKeeper: "problem
/// reading snap file", "Invalid snapshot", CRC errors), each cut to 300 bytes.
fn damage_lines(log: &str) -> Vec<String> {
    const WORDS: [&str; 8] = [
        "unreadable",
        "corrupt",
        "invalid snapshot",
        "problem reading",
        "crc",
        "checksum",
        "truncat",
        "torn",
    ];
    log.lines()
        .filter(|l| {
            // Words only: file paths (the run's own directory may be called "...corrupt...")
            // must not match.
            let words: String = l
                .split_whitespace()
                .filter(|w| !w.contains('/'))
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_lowercase();
            WORDS.iter().any(|w| words.contains(w))
        })
        .take(3)
        .map(|l| l.chars().take(300).collect())
        .collect()
}

/// The most recently modified regular file under `dir` whose name passes `want`.
fn newest_file(dir: &std::path::Path, want: impl Fn(&str) -> bool) -> Option<std::path::PathBuf> {
    let mut best: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(&want) {
                let m = meta.modified().ok()?;
                if best.as_ref().is_none_or(|(bm, _)| m > *bm) {
                    best = Some((m, p));
                }
            }
        }
    }
    best.map(|b| b.1)
}

/// Snapshots `corrupt-snap` keeps in each server directory, the newest ones (zkCleanup.sh -n 3).
pub const SNAPSHOTS_KEPT: usize = 3;

/// Deletes all but the `keep` highest-zxid complete snapshots (`snapshot.<hex zxid>`, never
/// a `.tmp`) in every directory under `dir`, as ZooKeeper's zkCleanup.sh does on a running
/// server. Logs stay: both servers track their open segments, and they grow with txns,
/// not with snapCount. Returns how many files went.
pub fn purge_old_snapshots(dir: &std::path::Path, keep: usize) -> Result<usize, String> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut snaps = Vec::new();
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let Ok(e) = e else { continue };
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
                continue;
            }
            let zxid = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("snapshot."))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            if let Some(z) = zxid {
                snaps.push((z, p));
            }
        }
        snaps.sort();
        let old = snaps.len().saturating_sub(keep);
        for (_, p) in &snaps[..old] {
            match std::fs::remove_file(p) {
                Ok(()) => removed += 1,
                // The server's own purge may have been first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
    }
    Ok(removed)
}

/// Truncates its newest snapshot (zkd's `snapshot.<zxid>`, ZooKeeper's likewise; never a
/// `.tmp`) of a (stopped) server to `permille`/1000 of its length, or flips one bit there.
fn corrupt_newest_snapshot(
    dir: &std::path::Path,
    flip: bool,
    permille: u64,
) -> Result<String, String> {
    let path = newest_file(dir, |n| n.starts_with("snapshot.") && !n.ends_with(".tmp"))
        .ok_or("no snapshot")?;
    let len = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Err(format!("{} is empty", path.display()));
    }
    let at = (len * permille / 1000).min(len - 1);
    damage(&path, len, at, flip.then_some((permille % 8) as u8))
}

/// Flips bit `flip` of byte `at` of `path`, or (`flip` None) truncates it to `at` bytes;
/// `len` is only for the description it returns.
fn damage(path: &std::path::Path, len: u64, at: u64, flip: Option<u8>) -> Result<String, String> {
    if let Some(bit) = flip {
        flip_bit(path, at, bit)?;
        Ok(format!(
            "flipped bit {bit} of byte {at} of {} ({len} bytes)",
            path.display()
        ))
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(at))
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "truncated {} from {len} to {at} bytes",
            path.display()
        ))
    }
}

fn flip_bit(path: &std::path::Path, at: u64, bit: u8) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at))
        .and_then(|_| f.read_exact(&mut b))
        .map_err(|e| e.to_string())?;
    b[0] ^= 1 << bit;
    f.seek(SeekFrom::Start(at))
        .and_then(|_| f.write_all(&b))
        .map_err(|e| e.to_string())
}

/// The most recently modified `log.*` file under `dir`.
fn newest_log(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    newest_file(dir, |n| n.starts_with("log."))
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
    damage(&path, len, at, flip.then_some((bytes % 8) as u8))
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
    fn corrupt_snap_hits_only_the_newest_complete_snapshot() {
        let dir = std::env::temp_dir().join(format!("zkj-csnap-{}", std::process::id()));
        let v1 = dir.join("data/zkd-v1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("snapshot.0000000000000001"), vec![0xffu8; 100]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(v1.join("snapshot.0000000000000002"), vec![0xffu8; 200]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(v1.join("snapshot.0000000000000003.tmp"), vec![0xffu8; 50]).unwrap();
        std::fs::write(v1.join("log.0000000000000001"), vec![0xffu8; 50]).unwrap();
        let what = corrupt_newest_snapshot(&dir, false, 500).unwrap();
        assert!(what.contains("snapshot.0000000000000002"), "{what}");
        let len = |n: &str| std::fs::metadata(v1.join(n)).unwrap().len();
        assert_eq!(len("snapshot.0000000000000002"), 100);
        assert_eq!(len("snapshot.0000000000000001"), 100);
        assert_eq!(len("snapshot.0000000000000003.tmp"), 50);
        corrupt_newest_snapshot(&dir, true, 999).unwrap();
        let data = std::fs::read(v1.join("snapshot.0000000000000002")).unwrap();
        assert_eq!(data.iter().filter(|b| **b != 0xff).count(), 1);
        assert_eq!(data[99], 0xff ^ (1 << (999 % 8)));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(corrupt_newest_snapshot(&dir, true, 1).is_err());
    }

    #[test]
    fn damage_lines_pick_what_either_server_says_about_damaged_files() {
        let zkd = "INFO starting\nWARN zkd_storage::storage: skipping unreadable snapshot error=corrupt snapshot /d/snapshot.1f: checksum mismatch\nINFO serving";
        assert_eq!(damage_lines(zkd).len(), 1);
        let zk = "WARN [main:o.a.z.s.p.FileSnap@103] - Invalid snapshot snapshot.2a. len = 10, byte = 3\njava.io.IOException: CRC corruption in snapshot";
        assert_eq!(damage_lines(zk).len(), 2);
        assert!(damage_lines("INFO all fine\nINFO loaded snapshot.5").is_empty());
        // A path is not a word: a run directory named after the nemesis does not match.
        let cfg = "/out/watch-corrupt-snap/n2/zoo.cfg:9: admin.enableServer is accepted but has no effect yet";
        assert!(damage_lines(cfg).is_empty());
        let many = "crc\n".repeat(10);
        assert_eq!(damage_lines(&many).len(), 3);
    }

    #[test]
    fn snapshot_purge_keeps_the_newest_by_zxid_and_nothing_else_goes() {
        let dir = std::env::temp_dir().join(format!("zkj-purge-{}", std::process::id()));
        let v1 = dir.join("data/zkd-v1");
        let v2 = dir.join("data/version-2");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        for z in [0x1u64, 0x2, 0x10, 0x1_0000_0003, 0x9] {
            std::fs::write(v1.join(format!("snapshot.{z:016x}")), b"s").unwrap();
            // ZooKeeper's names are not zero-padded.
            std::fs::write(v2.join(format!("snapshot.{z:x}")), b"s").unwrap();
        }
        for other in [
            "snapshot.0000000200000000.tmp",
            "log.0000000000000001",
            "myid",
        ] {
            std::fs::write(v1.join(other), b"x").unwrap();
        }
        assert_eq!(purge_old_snapshots(&dir, 3).unwrap(), 4);
        let names = |d: &std::path::Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&v1),
            [
                "log.0000000000000001",
                "myid",
                "snapshot.0000000000000009",
                "snapshot.0000000000000010",
                "snapshot.0000000100000003",
                "snapshot.0000000200000000.tmp"
            ]
        );
        assert_eq!(
            names(&v2),
            ["snapshot.10", "snapshot.100000003", "snapshot.9"]
        );
        assert_eq!(purge_old_snapshots(&dir, 3).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(purge_old_snapshots(&dir, 3).is_err());
    }

    #[test]
    fn new_kinds_schedule_their_faults() {
        let t = Duration::from_secs(60);
        let (h, g) = (Duration::from_secs(5), Duration::from_secs(5));
        for f in schedule(Kind::Clock, 3, 3, t, h, g) {
            let Fault::Clock { server, offset, .. } = f.1 else {
                panic!("{f:?}")
            };
            assert!(server < 3 && offset != 0 && offset.abs() <= 60);
        }
        for f in schedule(Kind::ClientPartition, 3, 3, t, h, g) {
            let Fault::ClientPartition(v) = f.1 else {
                panic!("{f:?}")
            };
            assert!((1..=2).contains(&v.len()) && v.iter().all(|&i| i < 3));
        }
        for f in schedule(Kind::CorruptSnap, 3, 3, t, h, g) {
            assert!(matches!(f.1, Fault::CorruptSnap { permille, .. } if permille < 1000));
        }
        assert_eq!("corrupt-snap".parse::<Kind>(), Ok(Kind::CorruptSnap));
        assert_eq!("clock-wall".parse::<Kind>(), Ok(Kind::ClockWall));
        assert!(Kind::CorruptSnap.corrupts() && !Kind::Clock.corrupts());
        assert_eq!(Kind::Clock.faketime(), Some(true));
        assert_eq!(Kind::ClockWall.faketime(), Some(false));
        assert_eq!(Kind::Kill.faketime(), None);
        assert_eq!(expiry_bound_ms(Kind::Kill), 10_000);
        assert_eq!(expiry_bound_ms(Kind::ClockWall), 10_000);
        assert_eq!(expiry_bound_ms(Kind::Clock), 70_000);
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
