//! A session outlives a zkd crash: kill -9 and restart zkd on the same port and data
//! dir, and the client resumes its session (zkd persists sessions), with its ephemeral
//! and its watches. And a session whose server stayed away longer than the session
//! timeout ends as Expired.
//!
//! Uses the zkd binary of this workspace (`ZKD_BIN`, else target/debug/zkd; `.ci/run` and
//! `cargo test --workspace` build it). Skips with a message when it is missing, unless
//! `ZKD_REQUIRE_REFERENCE=1`. The server is killed and its folder removed when the test
//! ends, also on panic.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use zkd_client::recipes::{Lock, NodeCache, TreeCache};
use zkd_client::{event_type, Client, CreateMode, CreateOptions, Error, SessionState, ZooKeeper};

struct Zkd {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Zkd {
    fn start(bin: PathBuf) -> Zkd {
        let dir = tempdir("zkd-restart");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=1000\ndataDir={}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut z = Zkd {
            bin,
            dir,
            port,
            child: None,
        };
        z.spawn();
        z
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zkd.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start zkd");
        watchdog(&child.id().to_string(), &self.dir);
        self.child = Some(child);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn wait_serving(&self) {
        for _ in 0..200 {
            if let Ok(c) = Client::connect(&self.addr(), Duration::from_secs(4)).await {
                let _ = c.close().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "zkd did not serve; log: {}",
            self.dir.join("zkd.log").display()
        );
    }

    /// kill -9.
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Zkd {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin_or_skip(test: &str) -> Option<PathBuf> {
    match zkd_bin() {
        Some(b) => Some(b),
        None => {
            assert!(
                !require_reference(),
                "ZKD_REQUIRE_REFERENCE=1 but no zkd binary: run `cargo build --bin zkd` or set ZKD_BIN"
            );
            eprintln!(
                "skipping {test}: no target/debug/zkd (cargo build --bin zkd) and no ZKD_BIN"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_resumes_the_session() {
    let Some(bin) = bin_or_skip("kill9_and_restart_resumes_the_session") else {
        return;
    };
    let mut zkd = Zkd::start(bin);
    zkd.wait_serving().await;
    let zk = ZooKeeper::connect(&format!("{}/app", zkd.addr()), TIMEOUT)
        .await
        .err()
        .map(|e| e.to_string());
    // The chroot does not exist yet: a chrooted session still opens (as in ZooKeeper),
    // and ops under it fail with NoNode until it is created.
    assert_eq!(zk, None);
    let admin = connect(&zkd.addr()).await;
    admin.create_all("/app/w").await.unwrap();
    let zk = ZooKeeper::connect(&format!("{}/app", zkd.addr()), TIMEOUT)
        .await
        .unwrap();
    let sid = zk.session_id();
    let mut states = zk.state_events();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_w("/w").await.unwrap();
    // A node only this digest identity may read: after the restart the credential must
    // have been re-sent on the new connection for reads to keep working.
    zk.add_auth("digest", b"bob:pw").await.unwrap();
    zk.create(
        "/private",
        b"secret",
        &CreateOptions::default().acl(zkd_client::Acl::creator_all()),
    )
    .await
    .unwrap();
    // Enough exist watches (1000 paths of ~210 bytes) that re-arming them takes more than
    // one setWatches2 batch of SET_WATCHES_MAX_LENGTH.
    let long = |i: usize| format!("/{}-{i:04}", "n".repeat(200));
    let mut exist_watches = Vec::new();
    for i in 0..1000 {
        let (st, w) = zk.exists_w(&long(i)).await.unwrap();
        assert!(st.is_none());
        exist_watches.push(w);
    }
    assert!(1000 * long(0).len() > 128 * 1024);
    drop(admin);

    zkd.crash();
    assert_eq!(
        within(15, "Disconnected", states.recv()).await,
        Some(SessionState::Disconnected)
    );
    // Issued while the server is down: waits for the reconnect.
    let during = tokio::spawn({
        let zk = zk.clone();
        async move { zk.get_data("/w").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    zkd.spawn();
    assert_eq!(
        within(20, "Connected again", states.recv()).await,
        Some(SessionState::Connected)
    );
    assert_eq!(zk.session_id(), sid, "the same session, resumed");
    within(10, "request issued while down", during)
        .await
        .unwrap()
        .unwrap();
    let st = zk.exists("/e").await.unwrap().expect("ephemeral kept");
    assert_eq!(
        zk.get_data("/private").await.unwrap().0,
        b"secret",
        "auth re-sent"
    );
    assert!(zk
        .who_am_i()
        .await
        .unwrap()
        .iter()
        .any(|c| c.user.starts_with("bob")));
    assert_eq!(st.ephemeral_owner, sid);
    // The data watch was re-armed with setWatches2 on the new connection.
    let other = connect(&zkd.addr()).await;
    other.set_data("/app/w", b"x", -1).await.unwrap();
    let ev = within(10, "watch after restart", w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/w")
    );
    // Watches from the first and the last setWatches2 batch both fire.
    let last = exist_watches.pop().unwrap();
    let first = exist_watches.swap_remove(0);
    for (i, w) in [(0, first), (999, last)] {
        other
            .create(&format!("/app{}", long(i)), b"", &CreateOptions::default())
            .await
            .unwrap();
        let ev = within(10, "exist watch after restart", w).await;
        assert_eq!(
            (ev.event_type, ev.path),
            (event_type::NODE_CREATED, long(i))
        );
        other.delete(&format!("/app{}", long(i)), -1).await.unwrap();
    }
    zk.close().await.unwrap();
    assert!(other.exists("/app/e").await.unwrap().is_none());
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_away_longer_than_the_timeout_means_expired() {
    let Some(bin) = bin_or_skip("server_away_longer_than_the_timeout_means_expired") else {
        return;
    };
    let mut zkd = Zkd::start(bin);
    zkd.wait_serving().await;
    // tickTime=1000: 2 s is the smallest timeout the server grants.
    let zk = ZooKeeper::connect(&zkd.addr(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(zk.negotiated_timeout(), Duration::from_secs(2));
    let (_, w) = zk.exists_w("/").await.unwrap();
    let mut states = zk.state_events();
    zkd.crash();
    assert_eq!(
        within(10, "Disconnected", states.recv()).await,
        Some(SessionState::Disconnected)
    );
    // A request issued now waits for a reconnect that never comes, then fails.
    let t0 = std::time::Instant::now();
    let waiting = tokio::spawn({
        let zk = zk.clone();
        async move { zk.get_data("/").await }
    });
    // No server for a whole session timeout: the client gives the session up itself
    // (the server-side refusal is tested in session_expiry.rs).
    assert_eq!(
        within(10, "Expired", states.recv()).await,
        Some(SessionState::Expired)
    );
    assert_eq!(within(5, "stream end", states.recv()).await, None);
    let r = within(5, "the waiting request fails", waiting)
        .await
        .unwrap();
    assert!(
        matches!(r, Err(Error::ConnectionLoss | Error::SessionExpired)),
        "{r:?}"
    );
    assert!(
        t0.elapsed() <= Duration::from_secs(3),
        "gave up within the 2 s timeout (+slack)"
    );
    let ev = within(5, "watch ends", w).await;
    assert_eq!(ev.event_type, event_type::NONE);
    assert!(matches!(zk.exists("/").await, Err(Error::SessionExpired)));
    // Terminal: the server coming back changes nothing.
    zkd.spawn();
    zkd.wait_serving().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(zk.state(), SessionState::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_and_locks_carry_on_across_a_restart() {
    let Some(bin) = bin_or_skip("caches_and_locks_carry_on_across_a_restart") else {
        return;
    };
    let mut zkd = Zkd::start(bin);
    zkd.wait_serving().await;
    let zk = ZooKeeper::connect(&zkd.addr(), TIMEOUT).await.unwrap();
    zk.create_all("/t").await.unwrap();
    let tree = TreeCache::start(&zk, "/t").await.unwrap();
    let node = NodeCache::start(&zk, "/t").await.unwrap();
    let held = Lock::new(&zk, "/lock").acquire().await.unwrap();
    let mut states = zk.state_events();

    zkd.crash();
    assert_eq!(
        within(15, "Disconnected", states.recv()).await,
        Some(SessionState::Disconnected)
    );
    zkd.spawn();
    assert_eq!(
        within(20, "Connected again", states.recv()).await,
        Some(SessionState::Connected)
    );
    // The caches' persistent watches were re-armed: later changes still arrive.
    let other = connect(&zkd.addr()).await;
    other
        .create("/t/a", b"1", &CreateOptions::default())
        .await
        .unwrap();
    other.set_data("/t", b"root", -1).await.unwrap();
    tree.wait_until(TIMEOUT, |t| t.get("/t/a").is_some_and(|d| d.data == b"1"))
        .await
        .unwrap();
    node.wait_until(TIMEOUT, |n| n.is_some_and(|n| n.data == b"root"))
        .await
        .unwrap();
    // The lock is still ours (same session, same ephemeral node).
    let contenders = Lock::new(&other, "/lock").contenders().await.unwrap();
    assert_eq!(contenders.len(), 1);
    assert!(held.path().ends_with(&contenders[0]));
    assert!(Lock::new(&other, "/lock")
        .try_acquire()
        .await
        .unwrap()
        .is_none());
    held.release().await.unwrap();
    drop((tree, node));
    zk.close().await.unwrap();
    other.close().await.unwrap();
}
