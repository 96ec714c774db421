//! Sessions and recipes against a 3-server ensemble, started by these tests, with servers
//! killed and restarted under connected clients. Every test body runs twice, against
//! Apache ZooKeeper (the Debian jars) and against zkd (this workspace's binary): the test
//! `<body>::zookeeper` and `<body>::zkd` (`cargo test --test ensemble zkd` runs the zkd
//! half).
//!
//! A back end that is missing (no java or jars; no `target/debug/zkd` and no `ZKD_BIN`)
//! skips with a message, unless `ZKD_REQUIRE_REFERENCE=1` (then it fails). The servers are
//! killed and their folder removed when the test ends, also on panic (a Drop guard) and if
//! the test process dies (a watchdog process per server). Ports are picked at run time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zkd_client::recipes::{sequence_of, Lock};
use zkd_client::{
    event_type, keeper_state, Client, ConnectOptions, CreateMode, CreateOptions, Error, ErrorCode,
    SessionOptions, SessionState, ZooKeeper,
};

const JAR: &str = "/usr/share/java/zookeeper.jar";
const SLF4J: &str = "/usr/share/java/slf4j-simple.jar";

/// Long enough to ride out a leader election on a busy 2-core machine.
const LONG: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    ZooKeeper,
    Zkd,
}

impl Backend {
    /// tickTime: zkd elects in a few ticks, so a small one keeps failovers short; the JVM
    /// keeps ZooKeeper's 1 s (its own tests' value), which it needs under load.
    fn tick_ms(self) -> u32 {
        match self {
            Backend::ZooKeeper => 1000,
            Backend::Zkd => 250,
        }
    }
}

/// A port nobody listens on, below the kernel's ephemeral range when it can: a port
/// picked by binding port 0 comes from that range, where any outgoing connection (our
/// clients', other tests') may take it as its local port before the server binds it.
fn free_port() -> u16 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let low: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    if low > 11_000 {
        let seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let x =
                (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let port = 10_000 + (x >> 33) % (low - 10_000);
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three servers (ZooKeeper's QuorumPeerMain or zkd) on free ports, each with its own
/// dataDir and myid.
struct Ensemble {
    backend: Backend,
    dir: PathBuf,
    client_ports: Vec<u16>,
    /// The `server.N=` lines every zoo.cfg has.
    server_lines: String,
    procs: Vec<Option<Child>>,
    zkd: Option<PathBuf>,
    jvm_args: Vec<String>,
}

impl Ensemble {
    /// Starts the ensemble, or says why not and returns `None` (a failure instead when
    /// `ZKD_REQUIRE_REFERENCE=1`).
    fn start_or_skip(backend: Backend, test: &str) -> Option<Ensemble> {
        Ensemble::start_with(backend, test, &[], "")
    }

    fn start_with(
        backend: Backend,
        test: &str,
        jvm_args: &[&str],
        extra_cfg: &str,
    ) -> Option<Ensemble> {
        let zkd = match backend {
            Backend::ZooKeeper => {
                let java = Command::new("java")
                    .arg("-version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !(java && Path::new(JAR).exists()) {
                    assert!(
                        !require_reference(),
                        "ZKD_REQUIRE_REFERENCE=1 but java or {JAR} is missing"
                    );
                    eprintln!("skipping {test}: java or {JAR} missing");
                    return None;
                }
                None
            }
            Backend::Zkd => match zkd_bin() {
                Some(b) => Some(b),
                None => {
                    assert!(
                        !require_reference(),
                        "ZKD_REQUIRE_REFERENCE=1 but no zkd binary: run `cargo build --bin zkd` or set ZKD_BIN"
                    );
                    eprintln!("skipping {test}: no target/debug/zkd (cargo build --bin zkd) and no ZKD_BIN");
                    return None;
                }
            },
        };
        let dir = tempdir("ensemble");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let servers: String = client_ports
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "server.{}=127.0.0.1:{}:{};127.0.0.1:{c}\n",
                    i + 1,
                    free_port(),
                    free_port()
                )
            })
            .collect();
        let tick = backend.tick_ms();
        for i in 0..3 {
            let sdir = dir.join(format!("s{}", i + 1));
            std::fs::create_dir_all(sdir.join("data")).unwrap();
            std::fs::write(sdir.join("data/myid"), format!("{}\n", i + 1)).unwrap();
            let backend_cfg = match backend {
                Backend::ZooKeeper => "maxClientCnxns=0\nadmin.enableServer=false\n",
                Backend::Zkd => "",
            };
            // maxSessionTimeout=20000 whatever the tick: sessions that outlive elections.
            let cfg = format!(
                "tickTime={tick}\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
                 maxSessionTimeout=20000\n4lw.commands.whitelist=*\n{backend_cfg}{servers}{extra_cfg}",
                sdir.join("data").display()
            );
            std::fs::write(sdir.join("zoo.cfg"), cfg).unwrap();
        }
        let mut e = Ensemble {
            backend,
            dir,
            client_ports,
            server_lines: servers,
            procs: (0..3).map(|_| None).collect(),
            zkd,
            jvm_args: jvm_args.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..3 {
            e.spawn(i);
        }
        Some(e)
    }

    fn spawn(&mut self, i: usize) {
        let sdir = self.dir.join(format!("s{}", i + 1));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sdir.join("server.log"))
            .unwrap();
        let mut cmd = match &self.zkd {
            Some(bin) => Command::new(bin),
            None => {
                let mut c = Command::new("java");
                c.args([
                    "-Xmx128m",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                ])
                .args(&self.jvm_args)
                .args([
                    "-cp",
                    &format!("{JAR}:{SLF4J}"),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ]);
                c
            }
        };
        let child = cmd
            .arg(sdir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a server");
        watchdog(&child.id().to_string(), &self.dir);
        self.procs[i] = Some(child);
    }

    fn hosts(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    fn host(&self, i: usize) -> String {
        self.hosts()[i].clone()
    }

    /// What Apache ZooKeeper 3.8 serves in `/zookeeper/config` for these server lines
    /// (QuorumMaj.toString): each line with its role spelled out, then the version, 0
    /// for a static config without reconfig.
    fn expected_config(&self) -> String {
        let mut out = String::new();
        for l in self.server_lines.lines() {
            let (quorum, client) = l.split_once(';').unwrap();
            out.push_str(&format!("{quorum}:participant;{client}\n"));
        }
        out.push_str("version=0");
        out
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) server `i`: alive to the kernel (its sockets
    /// stay open) but silent.
    fn freeze(&self, i: usize, stop: bool) {
        if let Some(c) = &self.procs[i] {
            let sig = if stop { "-STOP" } else { "-CONT" };
            Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .expect("kill");
            // SIGSTOP takes effect asynchronously: wait until every thread is stopped.
            let deadline = Instant::now() + Duration::from_secs(5);
            while stop && !all_threads_stopped(c.id()) {
                assert!(Instant::now() < deadline, "server {} did not stop", i + 1);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// SIGKILL server `i`.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again on its config and data.
    fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// `srvr`'s Mode of server `i` ("" when down or not serving).
    async fn mode(&self, i: usize) -> String {
        four_letter(&self.host(i), "srvr")
            .await
            .lines()
            .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits until exactly one running server leads, every other running one follows, and
    /// every running server opens a session; returns the leader's index.
    async fn wait_quorum(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            for (i, p) in self.procs.iter_mut().enumerate() {
                if let Some(Ok(Some(status))) = p.as_mut().map(|c| c.try_wait()) {
                    panic!("{:?} server {} exited: {status}", self.backend, i + 1);
                }
            }
            let mut modes = vec![];
            for i in 0..3 {
                modes.push(if self.procs[i].is_some() {
                    self.mode(i).await
                } else {
                    "down".to_string()
                });
            }
            let leaders: Vec<usize> = (0..3).filter(|i| modes[*i] == "leader").collect();
            if leaders.len() == 1
                && modes
                    .iter()
                    .all(|m| m == "leader" || m == "follower" || m == "down")
            {
                let mut serving = true;
                for i in (0..3).filter(|i| self.procs[*i].is_some()) {
                    match Client::connect(&self.host(i), Duration::from_secs(4)).await {
                        Ok(c) => {
                            let _ = c.close().await;
                        }
                        Err(_) => serving = false,
                    }
                }
                if serving {
                    return leaders[0];
                }
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: no settled quorum within 90 s: modes {modes:?}; logs under {}",
                self.backend,
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
        if std::thread::panicking() {
            // Keep the logs of a failed run in the message; the folder goes.
            for i in 0..3 {
                let log = std::fs::read_to_string(self.dir.join(format!("s{}/server.log", i + 1)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!(
                    "--- {:?} server {} (last lines) ---\n{}",
                    self.backend,
                    i + 1,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether every thread of `pid` is in state T (stopped).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
            // pid (comm) STATE ...: the state follows the last ')'.
            st.rsplit_once(')').is_some_and(|(_, rest)| {
                matches!(rest.trim_start().chars().next(), Some('T' | 't'))
            })
        })
    })
}

/// Sends a four-letter word; the whole answer, or "" when the server is down.
async fn four_letter(host: &str, cmd: &str) -> String {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        s.write_all(cmd.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(3), io).await {
        Ok(Ok(s)) => s,
        _ => String::new(),
    }
}

/// A session over `cs` (all hosts, optional chroot) whose first connection is on server
/// `want`: tries host-order seeds until one lands there.
async fn session_on(ens: &Ensemble, cs: &str, timeout: Duration, want: usize) -> ZooKeeper {
    let target = ens.host(want);
    for seed in 0..64 {
        let zk = ZooKeeper::connect_with(SessionOptions::new(cs, timeout).seed(seed))
            .await
            .unwrap();
        if zk.connected_host().as_deref() == Some(target.as_str()) {
            return zk;
        }
        zk.close().await.unwrap();
    }
    panic!("no seed put a session on {target}");
}

/// Generates `<body>::zookeeper` and `<body>::zkd`, each starting its own ensemble.
macro_rules! both_backends {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn zookeeper() {
                if let Some(e) = Ensemble::start_or_skip(Backend::ZooKeeper, stringify!($body)) {
                    super::$body(e).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn zkd() {
                if let Some(e) = Ensemble::start_or_skip(Backend::Zkd, stringify!($body)) {
                    super::$body(e).await;
                }
            }
        }
    )*};
}

both_backends!(
    session_resume_on_a_follower_needs_the_leader,
    session_moves_to_another_server_with_ephemerals_and_watches,
    session_moves_off_the_killed_leader,
    watches_missed_while_away_fire_on_resume,
    ephemeral_of_a_session_crashed_during_an_election_expires,
    leader_killed_under_a_client_on_a_follower,
    rolling_restart_under_a_session_with_ephemeral_watch_and_lock,
    lock_contention_spread_over_the_servers,
    crashed_holder_on_one_server_is_released_by_expiry,
    session_closed_on_another_server_surfaces_as_expired,
    config_node_lists_the_members,
    one_host_connect_string_learns_the_ensemble_from_the_config_node,
);

/// `/zookeeper/config` on every server: the members, byte for byte as Apache ZooKeeper
/// 3.8 serves them, with its Stat (set locally at load: version -1, mzxid the config
/// version 0, mtime the load time, aversion -1, everything else 0), the read-only ACL,
/// and unchrooted for a chrooted session. Also after a server restart.
async fn config_node_lists_the_members(mut ens: Ensemble) {
    ens.wait_quorum().await;
    let expected = ens.expected_config();
    let admin = ZooKeeper::connect(&ens.hosts().join(","), TIMEOUT)
        .await
        .unwrap();
    admin.create_all("/app").await.unwrap();
    let check = |data: Vec<u8>, st: zkd_client::Stat, what: &str| {
        assert_eq!(String::from_utf8_lossy(&data), expected, "{what}");
        assert_eq!(
            (
                st.czxid,
                st.mzxid,
                st.ctime,
                st.version,
                st.cversion,
                st.aversion,
                st.ephemeral_owner,
                st.data_length,
                st.num_children,
                st.pzxid
            ),
            (0, 0, 0, -1, 0, -1, 0, expected.len() as i32, 0, 0),
            "{what}: {st:?}"
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            st.mtime > now_ms - 600_000 && st.mtime <= now_ms + 5_000,
            "{what}: mtime {} is not this server's load time (now {now_ms})",
            st.mtime
        );
    };
    for i in 0..3 {
        let cs = format!("{}/app", ens.host(i));
        let zk = ZooKeeper::connect(&cs, TIMEOUT).await.unwrap();
        let (data, st) = zk.get_config().await.unwrap();
        check(data, st, &format!("server {}", i + 1));
        let (acl, _) = admin.get_acl("/zookeeper/config").await.unwrap();
        assert_eq!(acl, zkd_client::Acl::read_unsafe());
        zk.close().await.unwrap();
    }
    // A restarted server sets it again from its own config when it loads its data.
    ens.restart(0);
    ens.wait_quorum().await;
    let zk = ZooKeeper::connect(&ens.host(0), TIMEOUT).await.unwrap();
    let (data, st) = zk.get_config().await.unwrap();
    check(data, st, "server 1 restarted");
    zk.close().await.unwrap();
    admin.close().await.unwrap();
}

/// A connect string with one server of the ensemble and `refresh_servers_from_config`:
/// the session learns the other two from `/zookeeper/config`, and when its only server
/// is killed it moves to another one with the session, its ephemeral and its chroot
/// intact.
async fn one_host_connect_string_learns_the_ensemble_from_the_config_node(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    let admin = ZooKeeper::connect(&ens.hosts().join(","), TIMEOUT)
        .await
        .unwrap();
    admin.create_all("/app").await.unwrap();
    // A follower: killing it leaves the quorum serving, with no election to wait out.
    let only = (leader + 1) % 3;
    let cs = format!("{}/app", ens.host(only));

    // Off by default: the list stays the connect string's.
    let plain = ZooKeeper::connect(&cs, LONG).await.unwrap();
    assert_eq!(plain.servers(), [ens.host(only)]);
    plain.close().await.unwrap();

    let zk =
        ZooKeeper::connect_with(SessionOptions::new(&cs, LONG).refresh_servers_from_config(true))
            .await
            .unwrap();
    let mut learned = zk.servers();
    learned.sort();
    let mut all = ens.hosts();
    all.sort();
    assert_eq!(learned, all, "the members' client addresses");
    assert_eq!(
        zk.servers().last(),
        Some(&ens.host(only)),
        "the current server is tried last"
    );
    let sid = zk.session_id();
    let mut states = zk.state_events();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();

    ens.kill(only);
    assert_eq!(
        within(20, "Disconnected", states.recv()).await,
        Some(SessionState::Disconnected)
    );
    assert_eq!(
        within(30, "Connected again", states.recv()).await,
        Some(SessionState::Connected)
    );
    let now_on = zk.connected_host().unwrap();
    assert_ne!(now_on, ens.host(only), "moved off the killed server");
    assert_eq!(zk.session_id(), sid, "same session");
    assert_eq!(zk.chroot(), Some("/app"));
    let st = zk
        .exists("/e")
        .await
        .unwrap()
        .expect("the ephemeral survived");
    assert_eq!(st.ephemeral_owner, sid);
    let st = admin
        .exists("/app/e")
        .await
        .unwrap()
        .expect("under the chroot");
    assert_eq!(st.ephemeral_owner, sid);
    // The list is read again on the new server: still the three members, that one last.
    let deadline = Instant::now() + Duration::from_secs(10);
    while zk.servers().last() != Some(&now_on) {
        assert!(Instant::now() < deadline, "not re-read: {:?}", zk.servers());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = zk.servers();
    again.sort();
    assert_eq!(again, all);
    zk.close().await.unwrap();
    admin.close().await.unwrap();
}

/// A follower is killed under a connected client: the session moves to another server
/// with its ephemeral, its one-shot and persistent watches, and its lock.
async fn session_moves_to_another_server_with_ephemerals_and_watches(ens: Ensemble) {
    session_moves_off_a_killed_server(ens, false).await
}

/// The same with the leader killed under the client: the session moves to a follower
/// (after the survivors elected a new leader).
async fn session_moves_off_the_killed_leader(ens: Ensemble) {
    session_moves_off_a_killed_server(ens, true).await
}

async fn session_moves_off_a_killed_server(mut ens: Ensemble, kill_leader: bool) {
    let leader = ens.wait_quorum().await;
    let hosts = ens.hosts();
    let cs = format!("{}/app", hosts.join(","));

    // The chroot node must exist before a chrooted session uses it.
    let admin = ZooKeeper::connect(&hosts.join(","), TIMEOUT).await.unwrap();
    admin.create_all("/app/w").await.unwrap();
    admin.create_all("/app/r").await.unwrap();

    let victim = if kill_leader {
        leader
    } else {
        (leader + 1) % 3
    };
    let zk = session_on(&ens, &cs, LONG, victim).await;
    let sid = zk.session_id();
    let first = zk.connected_host().unwrap();
    let mut states = zk.state_events();
    zk.create("/e", b"eph", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, data_watch) = zk.get_data_w("/w").await.unwrap();
    let (_, _, child_watch) = zk.get_children_w("/w").await.unwrap();
    // On its own path: ZooKeeper before 3.9 keeps one watch mode per path and session,
    // so a recursive watch on /w would swallow the child watch (ZOOKEEPER-4466).
    let mut stream = zk.watch_recursive("/r").await.unwrap();
    // A lock held by this session, and a waiter in another session (on any server).
    let held = Lock::new(&zk, "/lock").acquire().await.unwrap();
    let waiter_zk = ZooKeeper::connect_with(SessionOptions::new(&cs, LONG).seed(7))
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let l = Lock::new(&waiter_zk, "/lock");
        async move { l.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());

    // Kill the server under the client.
    ens.kill(victim);
    assert_eq!(
        within(20, "Disconnected", states.recv()).await,
        Some(SessionState::Disconnected)
    );
    // A request issued while disconnected waits for the reconnect instead of failing.
    let during = tokio::spawn({
        let zk = zk.clone();
        async move { zk.exists("/e").await }
    });
    assert_eq!(
        within(30, "Connected again", states.recv()).await,
        Some(SessionState::Connected)
    );
    // Connected may be followed by another Disconnected when the server we landed on
    // goes on to change roles (an election under way): wait for a settled connection.
    let new_leader = ens.wait_quorum().await;
    assert!(!kill_leader || new_leader != leader);
    zk.wait_for_state(Duration::from_secs(30), |s| s == SessionState::Connected)
        .await
        .unwrap();
    let second = zk.connected_host().unwrap();
    assert_ne!(second, first, "moved to a surviving server");
    assert_eq!(zk.session_id(), sid, "same session");
    match within(10, "request issued while disconnected", during)
        .await
        .unwrap()
    {
        Ok(st) => assert_eq!(
            st.expect("ephemeral survived the move").ephemeral_owner,
            sid
        ),
        Err(e) => panic!("request issued while disconnected: {e}"),
    }
    let st = zk
        .exists("/e")
        .await
        .unwrap()
        .expect("ephemeral survived the move");
    assert_eq!(st.ephemeral_owner, sid);

    // The watches were re-armed on the new server (setWatches2): changes fire them. The
    // changes are made through the *other* surviving server.
    let third = hosts
        .iter()
        .find(|h| **h != first && **h != second)
        .unwrap();
    let other = ZooKeeper::connect(third, TIMEOUT).await.unwrap();
    other.set_data("/app/w", b"changed", -1).await.unwrap();
    other
        .create("/app/w/k", b"", &CreateOptions::default())
        .await
        .unwrap();
    other.set_data("/app/r", b"changed", -1).await.unwrap();
    other
        .create("/app/r/k", b"", &CreateOptions::default())
        .await
        .unwrap();
    let ev = within(10, "data watch after the move", data_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/w")
    );
    let ev = within(10, "child watch after the move", child_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_CHILDREN_CHANGED, "/w")
    );
    // The recursive stream saw Disconnected and SyncConnected, then both changes.
    let mut seen = vec![];
    while seen.len() < 2 {
        let ev = within(10, "recursive events", stream.next()).await.unwrap();
        if ev.event_type != event_type::NONE {
            seen.push((ev.event_type, ev.path));
        }
    }
    assert_eq!(
        seen,
        [
            (event_type::NODE_DATA_CHANGED, "/r".to_string()),
            (event_type::NODE_CREATED, "/r/k".to_string())
        ]
    );

    // The lock survived the move: the waiter is still waiting; a release lets it in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock must survive the failover");
    held.release().await.unwrap();
    let g = within(20, "waiter acquires after the release", waiter)
        .await
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
    waiter_zk.close().await.unwrap();

    // Closing the session removes the ephemeral everywhere (sync first: `other` is on
    // another server than the one that took the close).
    zk.close().await.unwrap();
    other.sync("/app").await.unwrap();
    assert!(other.exists("/app/e").await.unwrap().is_none());
    other.close().await.unwrap();
    admin.close().await.ok();
}

/// A session whose only host is one server: that server is killed, changes are made
/// through another, the server comes back (restoring its tree and catching up from the
/// leader) and the session resumes there; setWatches2 carries the session's lastZxid, so
/// the server fires at once the data, exist and child watches whose nodes changed while
/// the client was away.
async fn watches_missed_while_away_fire_on_resume(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;
    let admin = ZooKeeper::connect(&ens.host(b), TIMEOUT).await.unwrap();
    admin.create_all("/c").await.unwrap();
    admin.create_all("/w").await.unwrap();
    admin.create_all("/same").await.unwrap();
    let zk = ZooKeeper::connect(&ens.host(a), LONG).await.unwrap();
    let sid = zk.session_id();
    let mut states = zk.state_events();
    zk.sync("/").await.unwrap();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, data_w) = zk.get_data_w("/w").await.unwrap();
    let (st, exist_w) = zk.exists_w("/new").await.unwrap();
    assert!(st.is_none());
    let (_, _, child_w) = zk.get_children_w("/c").await.unwrap();
    // Not changed while away: must not fire on resume.
    let (_, _, quiet_w) = zk.get_data_w("/same").await.unwrap();

    ens.kill(a);
    assert_eq!(
        within(20, "Disconnected", states.recv()).await,
        Some(SessionState::Disconnected)
    );
    admin.set_data("/w", b"1", -1).await.unwrap();
    admin
        .create("/new", b"", &CreateOptions::default())
        .await
        .unwrap();
    admin
        .create("/c/k", b"", &CreateOptions::default())
        .await
        .unwrap();
    ens.restart(a);
    assert_eq!(
        within(40, "Connected again", states.recv()).await,
        Some(SessionState::Connected)
    );
    assert_eq!(zk.connected_host(), Some(ens.host(a)));
    assert_eq!(zk.session_id(), sid);
    let ev = within(10, "data watch missed while away", data_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/w")
    );
    let ev = within(10, "exist watch missed while away", exist_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_CREATED, "/new")
    );
    let ev = within(10, "child watch missed while away", child_w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_CHILDREN_CHANGED, "/c")
    );
    // The restarted server has the changes and the ephemeral.
    assert_eq!(zk.get_data("/w").await.unwrap().0, b"1");
    assert_eq!(
        zk.exists("/e").await.unwrap().map(|s| s.ephemeral_owner),
        Some(sid)
    );
    // The untouched node's watch is still armed: only a change fires it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut quiet_w = quiet_w;
    assert!(
        futures_poll_once(&mut quiet_w).await.is_none(),
        "a watch on an unchanged node fired on resume"
    );
    admin.set_data("/same", b"x", -1).await.unwrap();
    let ev = within(10, "the untouched node's watch", quiet_w).await;
    assert_eq!(ev.event_type, event_type::NODE_DATA_CHANGED);
    zk.close().await.unwrap();
    admin.close().await.unwrap();
}

/// Polls a future once: `Some` if it is ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    tokio::time::timeout(Duration::from_millis(1), f).await.ok()
}

/// A client crashes (no closeSession) while the leader that tracks its session dies: the
/// new leader must still expire the session and delete its ephemeral, on every server.
async fn ephemeral_of_a_session_crashed_during_an_election_expires(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    let short = Duration::from_secs(4);
    let holder = ZooKeeper::connect(&ens.host(f1), short).await.unwrap();
    holder
        .create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let lock = Lock::new(&holder, "/l").acquire().await.unwrap();
    let watcher = ZooKeeper::connect(&ens.host(f2), LONG).await.unwrap();
    watcher.sync("/").await.unwrap();
    let (st, gone) = watcher.exists_w("/e").await.unwrap();
    assert!(st.is_some());

    holder.abandon();
    drop(lock);
    ens.kill(leader);
    let t0 = Instant::now();
    let new_leader = ens.wait_quorum().await;
    assert_ne!(new_leader, leader);
    let ev = within(40, "the crashed session's ephemeral is deleted", gone).await;
    eprintln!(
        "{:?}: ephemeral of the crashed session deleted {:?} after the leader's death",
        ens.backend,
        t0.elapsed()
    );
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DELETED, "/e")
    );
    assert!(Lock::new(&watcher, "/l")
        .contenders()
        .await
        .unwrap()
        .is_empty());
    ens.restart(leader);
    ens.wait_quorum().await;
    for i in 0..3 {
        let c = ZooKeeper::connect(&ens.host(i), TIMEOUT).await.unwrap();
        c.sync("/").await.unwrap();
        assert!(
            c.exists("/e").await.unwrap().is_none(),
            "server {}: the expired session's ephemeral survived",
            i + 1
        );
        c.close().await.unwrap();
    }
    watcher.close().await.unwrap();
}

/// The leader is killed while a client works on a follower: its writes pause (nothing
/// commits without a leader) and then succeed once the survivors elected one; the session
/// survives with its ephemeral and its watch; no acknowledged write is lost.
async fn leader_killed_under_a_client_on_a_follower(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    let hosts = ens.hosts();
    let follower = (leader + 1) % 3;
    let zk = session_on(&ens, &hosts.join(","), LONG, follower).await;
    let sid = zk.session_id();
    zk.create("/seq", b"", &CreateOptions::default())
        .await
        .unwrap();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_w("/seq").await.unwrap();

    // A writer that keeps creating sequential nodes and notes what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = tokio::spawn({
        let (zk, stop, acked) = (zk.clone(), stop.clone(), acked.clone());
        async move {
            let mut losses = 0;
            while !stop.load(Ordering::SeqCst) {
                match zk
                    .create(
                        "/seq/n-",
                        b"",
                        &CreateOptions::new(CreateMode::PersistentSequential),
                    )
                    .await
                {
                    Ok((p, _)) => acked.lock().unwrap().push(p),
                    // In flight when the connection dropped: maybe applied, maybe not.
                    Err(Error::ConnectionLoss) => losses += 1,
                    Err(e) => panic!("writer: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            losses
        }
    });
    within(10, "writes before the kill", async {
        while acked.lock().unwrap().len() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    ens.kill(leader);
    let killed_at = Instant::now();
    let before = acked.lock().unwrap().len();
    // One write issued after the kill cannot commit before a new leader exists.
    let first_after = {
        let t = Instant::now();
        let r = zk
            .create(
                "/seq/after-",
                b"",
                &CreateOptions::new(CreateMode::PersistentSequential),
            )
            .await;
        (r.map(|(p, _)| p), t.elapsed())
    };
    // Writes resume: 5 more acknowledged after the kill.
    within(60, "writes resume after the election", async {
        while acked.lock().unwrap().len() < before + 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let resumed_after = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let losses = within(20, "writer stops", writer).await.unwrap();
    let new_leader = ens.wait_quorum().await;
    assert_ne!(new_leader, leader);
    eprintln!(
        "{:?}: leader {} killed; first write after it: {:?} in {:?}; 5 writes acknowledged \
         {resumed_after:?} after the kill; {losses} lost connections; new leader {}",
        ens.backend,
        leader + 1,
        first_after.0,
        first_after.1,
        new_leader + 1
    );
    match &first_after.0 {
        Ok(_) => assert!(
            first_after.1 >= Duration::from_millis(100),
            "a write committed {:?} after the leader died: no election is that fast",
            first_after.1
        ),
        Err(Error::ConnectionLoss) => {}
        Err(e) => panic!("write after the kill: {e}"),
    }

    // The same session, its ephemeral, its watch; and every acknowledged write is there,
    // read on every surviving server.
    assert_eq!(zk.session_id(), sid, "the session survived the election");
    assert_eq!(zk.state(), SessionState::Connected);
    let st = zk.exists("/e").await.unwrap().expect("ephemeral kept");
    assert_eq!(st.ephemeral_owner, sid);
    let acked = acked.lock().unwrap().clone();
    for i in (0..3).filter(|i| *i != leader) {
        let c = ZooKeeper::connect(&ens.host(i), TIMEOUT).await.unwrap();
        c.sync("/seq").await.unwrap();
        let (kids, _) = c.get_children("/seq").await.unwrap();
        for p in &acked {
            assert!(
                kids.iter().any(|k| p.ends_with(k.as_str())),
                "server {}: acknowledged {p} is missing",
                i + 1
            );
        }
        assert!(kids.len() <= acked.len() + losses + 1);
        c.close().await.unwrap();
    }
    let other = ZooKeeper::connect(&ens.host(3 - leader - follower), TIMEOUT)
        .await
        .unwrap();
    other.set_data("/seq", b"x", -1).await.unwrap();
    let ev = within(10, "data watch after the election", w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/seq")
    );
    // The old leader comes back as a follower and has everything.
    ens.restart(leader);
    ens.wait_quorum().await;
    assert_eq!(ens.mode(leader).await, "follower");
    let back = ZooKeeper::connect(&ens.host(leader), TIMEOUT)
        .await
        .unwrap();
    back.sync("/seq").await.unwrap();
    let (kids, _) = back.get_children("/seq").await.unwrap();
    assert!(kids.len() >= acked.len());
    assert!(back.exists("/e").await.unwrap().is_some());
    zk.close().await.unwrap();
    back.sync("/").await.unwrap();
    assert!(back.exists("/e").await.unwrap().is_none());
    back.close().await.unwrap();
    other.close().await.unwrap();
}

/// Every server restarted in turn (followers first, the leader last, as operators do)
/// under a session holding an ephemeral, a one-shot data watch, a persistent watch and a
/// lock another session waits for. After every restart the session is the same, the
/// ephemeral is there, the persistent watch delivers, the waiter still waits; at the end
/// the one-shot watch fires once and the lock hands over.
async fn rolling_restart_under_a_session_with_ephemeral_watch_and_lock(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    let hosts = ens.hosts();
    let cs = hosts.join(",");
    let zk = session_on(&ens, &cs, LONG, (leader + 1) % 3).await;
    let sid = zk.session_id();
    zk.create_all("/w").await.unwrap();
    zk.create_all("/r").await.unwrap();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, data_watch) = zk.get_data_w("/w").await.unwrap();
    let mut stream = zk.watch_recursive("/r").await.unwrap();
    let held = Lock::new(&zk, "/lock").acquire().await.unwrap();
    let waiter_zk = ZooKeeper::connect_with(SessionOptions::new(&cs, LONG).seed(3))
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let l = Lock::new(&waiter_zk, "/lock");
        async move { l.acquire().await }
    });

    let order: Vec<usize> = [(leader + 1) % 3, (leader + 2) % 3, leader].into();
    let t0 = Instant::now();
    for (round, i) in order.into_iter().enumerate() {
        ens.restart(i);
        ens.wait_quorum().await;
        // Wait until the session is connected again (it may never have left).
        zk.wait_for_state(Duration::from_secs(30), |s| s == SessionState::Connected)
            .await
            .unwrap_or_else(|e| panic!("round {round}: session not connected: {e}"));
        assert_eq!(zk.session_id(), sid, "round {round}: same session");
        let st = zk
            .exists("/e")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: ephemeral gone"));
        assert_eq!(st.ephemeral_owner, sid);
        // A change made through another session reaches the persistent watch.
        let other = ZooKeeper::connect(&cs, TIMEOUT).await.unwrap();
        let p = format!("/r/n{round}");
        other
            .create(&p, b"", &CreateOptions::default())
            .await
            .unwrap();
        loop {
            let ev = within(10, "persistent watch after a restart", stream.next())
                .await
                .unwrap();
            if ev.event_type != event_type::NONE {
                assert_eq!((ev.event_type, ev.path), (event_type::NODE_CREATED, p));
                break;
            }
        }
        // The lock is still ours; the waiter still queues behind it.
        let contenders = Lock::new(&other, "/lock").contenders().await.unwrap();
        assert_eq!(contenders.len(), 2, "round {round}: {contenders:?}");
        assert!(held.path().ends_with(&contenders[0]));
        assert!(!waiter.is_finished(), "round {round}: lock handed over");
        other.close().await.unwrap();
    }
    eprintln!("{:?}: rolling restart took {:?}", ens.backend, t0.elapsed());
    // The one-shot watch set before the restarts fires once, after them.
    let other = ZooKeeper::connect(&cs, TIMEOUT).await.unwrap();
    other.set_data("/w", b"1", -1).await.unwrap();
    let ev = within(10, "data watch after the rolling restart", data_watch).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/w")
    );
    held.release().await.unwrap();
    let g = within(20, "waiter acquires after the release", waiter)
        .await
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
    waiter_zk.close().await.unwrap();
    zk.close().await.unwrap();
    other.sync("/").await.unwrap();
    assert!(other.exists("/e").await.unwrap().is_none());
    other.close().await.unwrap();
}

/// 20 tasks, each with its own session on one server (spread over the three), contend
/// for one lock: never two holders, granted in sequence order, and a counter read and
/// written without versions inside the critical section loses no increment (each holder
/// reads, on its own server, what the previous holder wrote on another).
async fn lock_contention_spread_over_the_servers(mut ens: Ensemble) {
    ens.wait_quorum().await;
    let hosts = ens.hosts();
    let admin = ZooKeeper::connect(&hosts.join(","), TIMEOUT).await.unwrap();
    admin
        .create("/counter", b"0", &CreateOptions::default())
        .await
        .unwrap();
    let held = Arc::new(AtomicBool::new(false));
    let in_section = Arc::new(AtomicUsize::new(0));
    let grants = Arc::new(Mutex::new(Vec::new()));
    let servers_used = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let t0 = Instant::now();
    let mut tasks = vec![];
    for i in 0..20 {
        let host = hosts[i % 3].clone();
        let (held, in_section, grants, servers_used) = (
            held.clone(),
            in_section.clone(),
            grants.clone(),
            servers_used.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let zk = ZooKeeper::connect(&host, TIMEOUT).await.unwrap();
            servers_used
                .lock()
                .unwrap()
                .insert(zk.connected_host().unwrap());
            let g = Lock::new(&zk, "/l").acquire().await.unwrap();
            assert!(
                !held.swap(true, Ordering::SeqCst),
                "task {i}: lock granted while another task held it"
            );
            in_section.fetch_add(1, Ordering::SeqCst);
            grants.lock().unwrap().push(sequence_of(g.path()).unwrap());
            let (data, _) = zk.get_data("/counter").await.unwrap();
            let n: u32 = String::from_utf8(data).unwrap().parse().unwrap();
            zk.set_data("/counter", (n + 1).to_string().as_bytes(), -1)
                .await
                .unwrap();
            held.store(false, Ordering::SeqCst);
            g.release().await.unwrap();
            zk.close().await.unwrap();
        }));
    }
    for t in tasks {
        within(120, "every contender acquires", t).await.unwrap();
    }
    eprintln!("{:?}: 20 contenders in {:?}", ens.backend, t0.elapsed());
    assert_eq!(in_section.load(Ordering::SeqCst), 20);
    assert_eq!(servers_used.lock().unwrap().len(), 3);
    let g = grants.lock().unwrap().clone();
    let mut sorted = g.clone();
    sorted.sort();
    assert_eq!(g, sorted, "grant order follows the sequence numbers");
    admin.sync("/counter").await.unwrap();
    assert_eq!(admin.get_data("/counter").await.unwrap().0, b"20");
    assert!(Lock::new(&admin, "/l")
        .contenders()
        .await
        .unwrap()
        .is_empty());
    admin.close().await.unwrap();
}

/// A lock holder on one server crashes (no closeSession); the waiter on another server
/// gets the lock when the ensemble expires the holder's session, not before, and the
/// holder's ephemerals are gone on every server.
async fn crashed_holder_on_one_server_is_released_by_expiry(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    // The holder on a follower (its session is kept alive through the leader), the
    // waiter on the other follower.
    let (hf, wf) = ((leader + 1) % 3, (leader + 2) % 3);
    let short = Duration::from_secs(4);
    let holder = ZooKeeper::connect(&ens.host(hf), short).await.unwrap();
    assert_eq!(holder.negotiated_timeout(), short);
    let g = Lock::new(&holder, "/l").acquire().await.unwrap();
    holder
        .create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    // Outlive a few session timeouts first: pings keep the session alive.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(holder.state(), SessionState::Connected);
    let waiter = ZooKeeper::connect(&ens.host(wf), TIMEOUT).await.unwrap();
    assert!(
        waiter.exists("/e").await.unwrap().is_some(),
        "alive after 6 s"
    );
    let wl = Lock::new(&waiter, "/l");
    assert!(wl.try_acquire().await.unwrap().is_none());
    let t0 = Instant::now();
    let pending = tokio::spawn(async move { wl.acquire().await });
    holder.abandon();
    drop(g);
    let g2 = within(30, "acquire after expiry", pending)
        .await
        .unwrap()
        .unwrap();
    let waited = t0.elapsed();
    eprintln!(
        "{:?}: lock released {waited:?} after the crash (timeout {short:?})",
        ens.backend
    );
    assert!(
        waited >= Duration::from_secs(2),
        "released after {waited:?}: by expiry (timeout {short:?}), not by a delete"
    );
    for i in 0..3 {
        let c = ZooKeeper::connect(&ens.host(i), TIMEOUT).await.unwrap();
        c.sync("/").await.unwrap();
        assert!(
            c.exists("/e").await.unwrap().is_none(),
            "server {}: the expired session's ephemeral survived",
            i + 1
        );
        c.close().await.unwrap();
    }
    g2.release().await.unwrap();
    waiter.close().await.unwrap();
}

/// A session on one server is taken over and closed from a connection to another server
/// (the ensemble-wide session): the first client is told Expired when it resumes, its
/// watches end with Expired, its ephemeral is gone everywhere.
async fn session_closed_on_another_server_surfaces_as_expired(mut ens: Ensemble) {
    ens.wait_quorum().await;
    let hosts = ens.hosts();
    let zk = session_on(&ens, &hosts.join(","), TIMEOUT, 0).await;
    let mut states = zk.state_events();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_w("/e").await.unwrap();
    let (sid, pw) = (zk.session_id(), zk.session_password());
    let mut closed = false;
    for _ in 0..50 {
        match Client::connect_with(ConnectOptions::new(&hosts[1], TIMEOUT).session(sid, &pw)).await
        {
            Ok(thief) => {
                assert_eq!(thief.session_id(), sid);
                if thief.close().await.is_ok() {
                    closed = true;
                    break;
                }
            }
            Err(Error::SessionExpired) => {
                closed = true;
                break;
            }
            // Refused mid-handover, or (ZooKeeper under load) the revalidation through
            // the leader took longer than the connect timeout: again.
            Err(Error::ConnectionLoss | Error::Timeout) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(closed, "could not close the session from server 2");
    let mut seen = vec![];
    while let Some(s) = within(30, "state changes", states.recv()).await {
        seen.push(s);
    }
    assert_eq!(seen.last(), Some(&SessionState::Expired), "{seen:?}");
    assert!(matches!(zk.exists("/").await, Err(Error::SessionExpired)));
    let ev = within(5, "watch resolves", w).await;
    assert!(
        ev.event_type == event_type::NONE && ev.state == keeper_state::EXPIRED
            || ev.event_type == event_type::NODE_DELETED,
        "{ev:?}"
    );
    for i in 0..3 {
        let c = ZooKeeper::connect(&ens.host(i), TIMEOUT).await.unwrap();
        c.sync("/").await.unwrap();
        assert!(
            c.exists("/e").await.unwrap().is_none(),
            "server {}: the closed session's ephemeral survived",
            i + 1
        );
        c.close().await.unwrap();
    }
    // Nothing is retried after Expired.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(zk.state(), SessionState::Expired);
}

/// ZooKeeper only: zkd has no read-only mode in ensembles (`readonlymode.enabled` only
/// enables `isro` in standalone mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_quorum_gives_read_only_sessions() {
    // Read-only mode; ZooKeeper 3.8 opens sessions on a read-only server only as local
    // sessions (otherwise it answers the handshake with a bare NotReadOnly reply header).
    let Some(mut ens) = Ensemble::start_with(
        Backend::ZooKeeper,
        "server_without_quorum_gives_read_only_sessions",
        &["-Dreadonlymode.enabled=true"],
        "localSessionsEnabled=true\n",
    ) else {
        return;
    };
    ens.wait_quorum().await;
    let hosts = ens.hosts();
    ens.kill(1);
    ens.kill(2);
    // The survivor loses quorum and, a few seconds later, serves read-only (until then
    // it may still take a read-write session).
    within(60, "the survivor turns read-only", async {
        while ens.mode(0).await != "read-only" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let zk = ZooKeeper::connect_with(
        SessionOptions::new(&hosts[0], LONG)
            .read_only(true)
            .connect_timeout(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(zk.state(), SessionState::ConnectedReadOnly);
    assert!(
        zk.exists("/zookeeper").await.unwrap().is_some(),
        "reads work"
    );
    assert!(matches!(
        zk.create("/x", b"", &CreateOptions::default()).await,
        Err(Error::Keeper(ErrorCode::NotReadOnly))
    ));
    // A client that does not accept read-only is refused (NotReadOnly), so it never
    // connects.
    let r = ZooKeeper::connect_with(
        SessionOptions::new(&hosts[0], LONG).connect_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    zk.close().await.ok();
}

/// A follower resumes a session only with its leader's word (ZooKeeper's learner sends
/// REVALIDATE to the leader and answers the handshake with the leader's verdict): with
/// the leader frozen (SIGSTOP: its sockets stay open, so the follower still follows), a
/// resume on the follower does not complete. A follower that resumed sessions on its own
/// would, in a partition, tell a client whose session the leader already expired that
/// it is connected, with its ephemerals (and locks) seemingly still its own.
async fn session_resume_on_a_follower_needs_the_leader(mut ens: Ensemble) {
    let leader = ens.wait_quorum().await;
    let f = (leader + 1) % 3;
    let c = Client::connect(&ens.host(f), LONG).await.unwrap();
    let (sid, pw) = (c.session_id(), c.session_password());
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ens.freeze(leader, true);
    let r = Client::connect_with(
        ConnectOptions::new(&ens.host(f), LONG)
            .session(sid, &pw)
            .connect_timeout(Duration::from_secs(3)),
    )
    .await;
    ens.freeze(leader, false);
    assert!(
        r.is_err(),
        "{:?}: server {} resumed session 0x{sid:x} while its leader (server {}) was frozen",
        ens.backend,
        f + 1,
        leader + 1
    );
}
