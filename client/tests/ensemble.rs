//! A session survives the loss of its server: a 3-server Apache ZooKeeper ensemble (the
//! Debian jars), started by this test, one server killed under a connected client. zkd
//! has no ensembles yet, so this runs against ZooKeeper only.
//!
//! Skips with a message when java or the ZooKeeper jars are missing, unless
//! `ZKD_REQUIRE_REFERENCE=1` (then it fails). The servers are killed and their folder
//! removed when the test ends, also on panic (a Drop guard) and if the test process dies
//! (a watchdog process per server).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zkd_client::recipes::Lock;
use zkd_client::{
    event_type, Client, CreateMode, CreateOptions, SessionOptions, SessionState, ZooKeeper,
};

const JAR: &str = "/usr/share/java/zookeeper.jar";
const SLF4J: &str = "/usr/share/java/slf4j-simple.jar";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three QuorumPeerMain processes on free ports.
struct Ensemble {
    dir: PathBuf,
    client_ports: Vec<u16>,
    procs: Vec<Option<Child>>,
}

impl Ensemble {
    fn available() -> bool {
        Path::new(JAR).exists()
            && Command::new("java")
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    fn start() -> Ensemble {
        Ensemble::start_with(&[], "")
    }

    fn start_with(jvm_args: &[&str], extra_cfg: &str) -> Ensemble {
        let dir = tempdir("ensemble");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peer: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let servers: String = peer
            .iter()
            .enumerate()
            .map(|(i, (q, e))| format!("server.{}=127.0.0.1:{q}:{e}\n", i + 1))
            .collect();
        let mut procs = vec![];
        for (i, port) in client_ports.iter().enumerate() {
            let sdir = dir.join(format!("s{}", i + 1));
            std::fs::create_dir_all(sdir.join("data")).unwrap();
            std::fs::write(sdir.join("data/myid"), format!("{}\n", i + 1)).unwrap();
            let cfg = format!(
                "tickTime=1000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n{servers}{extra_cfg}",
                sdir.join("data").display()
            );
            std::fs::write(sdir.join("zoo.cfg"), cfg).unwrap();
            let log = std::fs::File::create(sdir.join("server.log")).unwrap();
            let child = Command::new("java")
                .args([
                    "-Xmx128m",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                ])
                .args(jvm_args)
                .args([
                    "-cp",
                    &format!("{JAR}:{SLF4J}"),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ])
                .arg(sdir.join("zoo.cfg"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start QuorumPeerMain");
            watchdog(&child.id().to_string(), &dir);
            procs.push(Some(child));
        }
        Ensemble {
            dir,
            client_ports,
            procs,
        }
    }

    fn hosts(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// Waits until every server opens a session.
    async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        for h in self.hosts() {
            loop {
                if let Ok(c) = Client::connect(&h, Duration::from_secs(4)).await {
                    let _ = c.close().await;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "ensemble server {h} did not serve within 90s; logs under {}",
                    self.dir.display()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    fn kill(&mut self, host: &str) {
        let i = self.hosts().iter().position(|h| h == host).expect("host");
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_moves_to_another_server_with_ephemerals_and_watches() {
    if !Ensemble::available() {
        assert!(
            !require_reference(),
            "ZKD_REQUIRE_REFERENCE=1 but java or {JAR} is missing"
        );
        eprintln!("skipping: java or {JAR} missing");
        return;
    }
    let mut ens = Ensemble::start();
    ens.wait_serving().await;
    let hosts = ens.hosts();
    let cs = format!("{}/app", hosts.join(","));

    // The chroot node must exist before a chrooted session uses it.
    let admin = ZooKeeper::connect(&hosts.join(","), TIMEOUT).await.unwrap();
    admin.create_all("/app/w").await.unwrap();
    admin.create_all("/app/r").await.unwrap();

    // 20 s (the most tickTime=1000 grants): room for a leader election on a busy machine.
    let zk = ZooKeeper::connect_with(SessionOptions::new(&cs, Duration::from_secs(20)).seed(42))
        .await
        .unwrap();
    let sid = zk.session_id();
    let first = zk.connected_host().unwrap();
    let mut states = zk.state_events();
    zk.create("/e", b"eph", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, data_watch) = zk.get_data_w("/w").await.unwrap();
    let (_, child_watch) = {
        let (kids, _, w) = zk.get_children_w("/w").await.unwrap();
        (kids, w)
    };
    // On its own path: ZooKeeper before 3.9 keeps one watch mode per path and session,
    // so a recursive watch on /w would swallow the child watch (ZOOKEEPER-4466).
    let mut stream = zk.watch_recursive("/r").await.unwrap();
    // A lock held by this session, and a waiter in another session (on any server).
    let held = Lock::new(&zk, "/lock").acquire().await.unwrap();
    let waiter_zk =
        ZooKeeper::connect_with(SessionOptions::new(&cs, Duration::from_secs(20)).seed(7))
            .await
            .unwrap();
    let waiter = tokio::spawn({
        let l = Lock::new(&waiter_zk, "/lock");
        async move { l.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());

    // Kill the server under the client.
    ens.kill(&first);
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
    let second = zk.connected_host().unwrap();
    assert_ne!(second, first, "moved to a surviving server");
    assert_eq!(zk.session_id(), sid, "same session");
    let st = within(10, "request issued while disconnected", during)
        .await
        .unwrap()
        .unwrap()
        .expect("ephemeral survived the move");
    assert_eq!(st.ephemeral_owner, sid);

    // The watches were re-armed on the new server (setWatches2): changes fire them.
    let other = ZooKeeper::connect(&second, TIMEOUT).await.unwrap();
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

    // Closing the session removes the ephemeral everywhere.
    zk.close().await.unwrap();
    assert!(other.exists("/app/e").await.unwrap().is_none());
    other.close().await.unwrap();
    drop(admin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_quorum_gives_read_only_sessions() {
    if !Ensemble::available() {
        assert!(
            !require_reference(),
            "ZKD_REQUIRE_REFERENCE=1 but java or {JAR} is missing"
        );
        eprintln!("skipping: java or {JAR} missing");
        return;
    }
    // Read-only mode; ZooKeeper 3.8 opens sessions on a read-only server only as local
    // sessions (otherwise it answers the handshake with a bare NotReadOnly reply header).
    let mut ens = Ensemble::start_with(
        &["-Dreadonlymode.enabled=true"],
        "localSessionsEnabled=true\n",
    );
    ens.wait_serving().await;
    let hosts = ens.hosts();
    ens.kill(&hosts[1]);
    ens.kill(&hosts[2]);
    // The survivor loses quorum and, a few seconds later, serves read-only.
    let zk = ZooKeeper::connect_with(
        SessionOptions::new(&hosts[0], Duration::from_secs(20))
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
        Err(zkd_client::Error::Keeper(
            zkd_client::ErrorCode::NotReadOnly
        ))
    ));
    // A client that does not accept read-only is refused (NotReadOnly), so it never
    // connects.
    let r = ZooKeeper::connect_with(
        SessionOptions::new(&hosts[0], Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    zk.close().await.ok();
}
