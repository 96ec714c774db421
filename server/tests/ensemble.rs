//! Real zkd ensembles on loopback: three and five processes with their own data
//! directories, talking ZAB over TCP. Leader election, writes through followers, a
//! leader killed under load, a server restarted and caught up, and an observer.

mod common;

use std::time::{Duration, Instant};

use common::{four_letter, ZkdEnsemble};
use zkd_client::{Acl, Client, ConnectOptions, CreateMode};

async fn connect(addr: std::net::SocketAddr) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let opts = ConnectOptions::new(&addr.to_string(), Duration::from_secs(4))
            .connect_timeout(Duration::from_secs(2));
        match Client::connect_with(opts).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    }
}

/// Retries a write through transient leader changes (ConnectionLoss while the ensemble
/// re-elects), reconnecting as a client library would.
async fn create_eventually(addr: std::net::SocketAddr, path: &str, data: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = connect(addr).await;
        match c
            .create(path, data, &Acl::open_unsafe(), CreateMode::Persistent)
            .await
        {
            Ok(_) => return,
            Err(zkd_client::Error::Keeper(zkd_client::ErrorCode::NodeExists)) => return,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create {path} via {addr}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_elect_replicate_and_survive_the_leader() {
    let mut e = ZkdEnsemble::start(3, 0, "");
    let leader = e.wait_for_quorum(Duration::from_secs(60));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    // mntr reports the quorum as ZooKeeper's leader and follower gauges do.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = four_letter(e.clients[leader], "mntr");
        if m.contains("zk_synced_followers\t2\n") {
            assert!(m.contains("zk_server_state\tleader\n"), "{m}");
            assert!(m.contains("zk_quorum_size\t3\n"), "{m}");
            assert!(m.contains("zk_learners\t2\n"), "{m}");
            break;
        }
        assert!(Instant::now() < deadline, "leader mntr: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = four_letter(e.clients[follower], "mntr");
    assert!(m.contains("zk_peer_state\tfollowing - broadcast\n"), "{m}");
    assert!(!m.contains("zk_synced_followers"), "{m}");

    // Writes through a follower are visible everywhere after sync.
    let c = connect(e.clients[follower]).await;
    c.create("/app", b"v1", &Acl::open_unsafe(), CreateMode::Persistent)
        .await
        .unwrap();
    let eph = c
        .create("/app/e", b"", &Acl::open_unsafe(), CreateMode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(eph, "/app/e");
    for i in 0..3 {
        let r = connect(e.clients[i]).await;
        r.sync("/app").await.unwrap();
        let (data, stat) = r.get_data("/app", false).await.unwrap();
        assert_eq!(data, b"v1", "server {}", i + 1);
        assert_eq!(stat.num_children, 1);
        r.close().await.unwrap();
    }
    let before = c.exists("/app", false).await.unwrap().unwrap();

    // Kill the leader: the two others elect a new one that serves writes.
    let killed_at = Instant::now();
    e.kill(leader);
    let new_leader = e.wait_for_quorum(Duration::from_secs(60));
    assert_ne!(new_leader, leader);
    eprintln!(
        "new leader serving {:?} after the kill",
        killed_at.elapsed()
    );
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    create_eventually(e.clients[survivor], "/after", b"x").await;
    let r = connect(e.clients[survivor]).await;
    let (_, st) = r.get_data("/after", false).await.unwrap();
    assert!(
        st.czxid >> 32 > before.czxid >> 32,
        "a new epoch: {:#x} vs {:#x}",
        st.czxid,
        before.czxid
    );

    // The old leader comes back as a follower and catches up.
    e.restart(leader);
    e.wait_for_quorum(Duration::from_secs(60));
    let back = connect(e.clients[leader]).await;
    back.sync("/").await.unwrap();
    assert!(back.exists("/after", false).await.unwrap().is_some());
    assert!(back.exists("/app", false).await.unwrap().is_some());
    let modes: Vec<String> = (0..3).map(|i| e.mode(i)).collect();
    assert_eq!(
        modes.iter().filter(|m| *m == "leader").count(),
        1,
        "{modes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_added_later_catches_up_and_serves_without_voting() {
    let mut e = common::ZkdEnsemble::start_some(3, 1, 500, "", &[3]);
    let leader = e.wait_for_quorum(Duration::from_secs(60));
    let c = connect(e.clients[leader]).await;
    for i in 0..50 {
        c.create(
            &format!("/pre{i}"),
            b"x",
            &Acl::open_unsafe(),
            CreateMode::Persistent,
        )
        .await
        .unwrap();
    }
    // The observer joins a running ensemble and is synced to everything before it.
    e.restart(3);
    e.wait_for_quorum(Duration::from_secs(60));
    assert_eq!(e.mode(3), "observer");
    let o = connect(e.clients[3]).await;
    o.sync("/").await.unwrap();
    assert_eq!(o.get_children("/", false).await.unwrap().len(), 51);
    // Writes through the observer are forwarded to the leader.
    o.create("/o", b"1", &Acl::open_unsafe(), CreateMode::Persistent)
        .await
        .unwrap();
    let r = connect(e.clients[0]).await;
    r.sync("/o").await.unwrap();
    assert_eq!(r.get_data("/o", false).await.unwrap().0, b"1");
    assert!(four_letter(e.clients[3], "mntr").contains("zk_server_state\tobserver"));
    // It never counts for the quorum: with two voters down, nothing is served.
    let down: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    e.kill(down[0]);
    e.kill(down[1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.mode(3) == "observer" || e.mode(leader) == "leader" {
        assert!(
            Instant::now() < deadline,
            "a leader and an observer are not a quorum"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader is killed while clients write through the followers: every write that was
/// acknowledged is still there afterwards, and writes succeed again once a new leader is
/// elected (the time it took is printed; the test only bounds it loosely).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_load_loses_no_acknowledged_write() {
    let mut e = ZkdEnsemble::start(3, 0, "");
    let leader = e.wait_for_quorum(Duration::from_secs(60));
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for (w, f) in followers.iter().enumerate() {
        let addr = e.clients[*f];
        let stop = stop.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            let mut c = connect(addr).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = format!("/w{w}-{n}");
                match c
                    .create(&p, b"", &Acl::open_unsafe(), CreateMode::Persistent)
                    .await
                {
                    Ok(_) => {
                        acked.lock().unwrap().push(p);
                        n += 1;
                    }
                    Err(zkd_client::Error::Keeper(zkd_client::ErrorCode::NodeExists)) => n += 1,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        c = connect(addr).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = acked.lock().unwrap().len();
    let killed = Instant::now();
    e.kill(leader);
    // Writes resume once the survivors elected a leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if acked.lock().unwrap().len() > before_kill + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no writes after the leader's death"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "writes resumed {:?} after the leader's SIGKILL (tickTime 500 ms, initLimit 10)",
        killed.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(before_kill > 0 && acked.len() > before_kill);
    for f in &followers {
        let c = connect(e.clients[*f]).await;
        c.sync("/").await.unwrap();
        let have: std::collections::HashSet<String> = c
            .get_children("/", false)
            .await
            .unwrap()
            .into_iter()
            .collect();
        for p in &acked {
            assert!(
                have.contains(&p[1..]),
                "acknowledged {p} missing on server {}",
                f + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_servers_keep_serving_with_two_down() {
    let mut e = ZkdEnsemble::start(5, 0, "");
    let leader = e.wait_for_quorum(Duration::from_secs(60));
    // Take down the leader and one follower: three of five are a quorum.
    let follower = (0..5).find(|i| *i != leader).unwrap();
    e.kill(leader);
    e.kill(follower);
    let new_leader = e.wait_for_quorum(Duration::from_secs(60));
    assert!(new_leader != leader && new_leader != follower);
    let live: Vec<usize> = (0..5).filter(|i| *i != leader && *i != follower).collect();
    create_eventually(e.clients[live[0]], "/five", b"ok").await;
    for i in &live {
        let c = connect(e.clients[*i]).await;
        c.sync("/five").await.unwrap();
        assert_eq!(c.get_data("/five", false).await.unwrap().0, b"ok");
    }
}

/// Every server restarted in turn while one client session stays connected through the
/// ensemble's connect string: the session (and its ephemeral) survives every restart and
/// writes keep succeeding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_keeps_sessions_and_data() {
    use zkd_client::{CreateOptions, SessionOptions, ZooKeeper};
    let mut e = ZkdEnsemble::start_with_tick(3, 0, 500, "");
    e.wait_for_quorum(Duration::from_secs(60));
    let hosts: Vec<String> = e.clients.iter().map(|a| a.to_string()).collect();
    let zk = ZooKeeper::connect_with(
        SessionOptions::new(&hosts.join(","), Duration::from_secs(10)).seed(7),
    )
    .await
    .unwrap();
    let sid = zk.session_id();
    zk.create("/roll", b"", &CreateOptions::new(CreateMode::Persistent))
        .await
        .unwrap();
    zk.create("/roll/eph", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    for round in 0..3 {
        e.restart(round);
        e.wait_for_quorum(Duration::from_secs(60));
        // Writes go through as soon as the session is back on some server.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = zk
                .create(
                    &format!("/roll/n{round}"),
                    b"",
                    &CreateOptions::new(CreateMode::Persistent),
                )
                .await;
            match r {
                Ok(_) => break,
                Err(zkd_client::Error::Keeper(zkd_client::ErrorCode::NodeExists)) => break,
                Err(err) => {
                    assert!(Instant::now() < deadline, "round {round}: {err}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        assert_eq!(zk.session_id(), sid, "the session survived restart {round}");
        let (_, st) = zk.get_data("/roll/eph").await.unwrap();
        assert_eq!(st.ephemeral_owner, sid);
    }
    let (children, _) = zk.get_children("/roll").await.unwrap();
    assert_eq!(children.len(), 4, "{children:?}");
    zk.close().await.unwrap();
}

/// Every server SIGKILLed at once and restarted: every acknowledged write is back, with
/// the Stat it was acknowledged with (each was fsynced on a quorum before its reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_ensemble_killed_at_once_keeps_every_acknowledged_write() {
    let mut e = ZkdEnsemble::start(3, 0, "snapCount=50\n");
    let leader = e.wait_for_quorum(Duration::from_secs(60));
    let mut acked = Vec::new();
    for i in 0..3 {
        let c = connect(e.clients[i]).await;
        for n in 0..40 {
            let p = format!("/all-{i}-{n}");
            c.create(
                &p,
                p.as_bytes(),
                &Acl::open_unsafe(),
                CreateMode::Persistent,
            )
            .await
            .unwrap();
            let st = c.set_data(&p, b"v2", 0).await.unwrap();
            acked.push((p, st));
        }
    }
    let _ = leader;
    for i in 0..3 {
        e.kill(i);
    }
    for i in 0..3 {
        e.restart(i);
    }
    e.wait_for_quorum(Duration::from_secs(60));
    for i in 0..3 {
        let c = connect(e.clients[i]).await;
        c.sync("/").await.unwrap();
        for (p, st) in &acked {
            let (data, got) = c.get_data(p, false).await.unwrap();
            assert_eq!(data, b"v2", "{p} on server {}", i + 1);
            assert_eq!(&got, st, "{p} Stat on server {}", i + 1);
        }
    }
}
