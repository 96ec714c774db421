//! The recipes against a live server (zkd or Apache ZooKeeper, from ZKD_TEST_ZK_ADDR),
//! under contention and with crashed participants.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use zkd_client::recipes::{
    sequence_of, Barrier, DoubleBarrier, LeaderLatch, Lock, NodeCache, SharedCounter, TreeCache,
};
use zkd_client::{CreateOptions, Error, ZooKeeper};

/// A short session, so a crashed holder's session expires quickly.
const SHORT: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_twenty_contenders_mutual_exclusion_and_fairness() {
    let Some(addr) = live_addr("lock_contention") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "lock").await;
    let dir = format!("{base}/l");
    let held = Arc::new(AtomicBool::new(false));
    let in_section = Arc::new(AtomicUsize::new(0));
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = vec![];
    for i in 0..20 {
        let (addr, dir, held, in_section, grants) = (
            addr.clone(),
            dir.clone(),
            held.clone(),
            in_section.clone(),
            grants.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let zk = ZooKeeper::connect(&addr, TIMEOUT).await.unwrap();
            let lock = Lock::new(&zk, &dir);
            let g = lock.acquire().await.unwrap();
            assert!(
                !held.swap(true, Ordering::SeqCst),
                "task {i}: lock granted while another task held it"
            );
            in_section.fetch_add(1, Ordering::SeqCst);
            grants.lock().unwrap().push(sequence_of(g.path()).unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
            held.store(false, Ordering::SeqCst);
            g.release().await.unwrap();
            zk.close().await.unwrap();
        }));
    }
    for t in tasks {
        within(120, "every contender acquires", t).await.unwrap();
    }
    assert_eq!(in_section.load(Ordering::SeqCst), 20);
    // Fair: granted in the order the lock nodes were created.
    let g = grants.lock().unwrap().clone();
    let mut sorted = g.clone();
    sorted.sort();
    assert_eq!(g, sorted, "grant order follows the sequence numbers");
    assert!(Lock::new(&admin, &dir)
        .contenders()
        .await
        .unwrap()
        .is_empty());
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}

#[tokio::test]
async fn crashed_lock_holder_is_released_by_session_expiry() {
    let Some(addr) = live_addr("lock_crash") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "lockcrash").await;
    let dir = format!("{base}/l");
    let holder = ZooKeeper::connect(&addr, SHORT).await.unwrap();
    let g = Lock::new(&holder, &dir).acquire().await.unwrap();
    let waiter = connect(&addr).await;
    let wl = Lock::new(&waiter, &dir);
    assert!(wl.try_acquire().await.unwrap().is_none());
    assert!(wl
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        wl.contenders().await.unwrap().len(),
        1,
        "a timed-out waiter leaves no node behind"
    );
    let t0 = Instant::now();
    let pending = tokio::spawn(async move { wl.acquire().await });
    // Crash: the socket goes without closeSession; the guard's clean-up cannot run.
    holder.abandon();
    drop(g);
    let g2 = within(30, "acquire after expiry", pending)
        .await
        .unwrap()
        .unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "released after {waited:?}: by expiry (timeout {SHORT:?}), not by a delete"
    );
    g2.release().await.unwrap();
    waiter.close().await.unwrap();
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}

#[tokio::test]
async fn leader_latch_one_leader_and_succession() {
    let Some(addr) = live_addr("leader_latch") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "latch").await;
    let dir = format!("{base}/e");
    let mut sessions = vec![];
    let mut latches = vec![];
    for i in 0..3 {
        let zk = connect(&addr).await;
        latches.push(
            LeaderLatch::start(&zk, &dir, &format!("p{i}"))
                .await
                .unwrap(),
        );
        sessions.push(zk);
    }
    latches[0].wait_leader().await.unwrap();
    let mut leaders = 0;
    for l in &latches {
        leaders += l.is_leader().await.unwrap() as usize;
    }
    assert_eq!(leaders, 1);
    assert_eq!(latches[2].leader().await.unwrap().as_deref(), Some("p0"));
    assert_eq!(latches[1].participants().await.unwrap(), ["p0", "p1", "p2"]);
    // p2 waits; p1 leaves out of turn, then p0: p2 leads.
    let l2 = latches.pop().unwrap();
    let w = tokio::spawn(async move { l2.wait_leader().await.map(|_| l2) });
    latches.pop().unwrap().close().await.unwrap();
    latches.pop().unwrap().close().await.unwrap();
    let l2 = within(10, "p2 leads", w).await.unwrap().unwrap();
    assert!(l2.is_leader().await.unwrap());
    l2.close().await.unwrap();
    for s in sessions {
        s.close().await.unwrap();
    }
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}

#[tokio::test]
async fn barrier_and_double_barrier() {
    let Some(addr) = live_addr("barriers") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "barrier").await;

    let b = Barrier::new(&admin, &format!("{base}/b"));
    b.set().await.unwrap();
    let passed = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (b, passed) = (b.clone(), passed.clone());
        tokio::spawn(async move {
            b.wait().await.unwrap();
            passed.store(true, Ordering::SeqCst);
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!passed.load(Ordering::SeqCst), "passed a raised barrier");
    b.remove().await.unwrap();
    within(10, "barrier lowered", waiter).await.unwrap();
    assert!(passed.load(Ordering::SeqCst));

    let dir = format!("{base}/d");
    let entering = Arc::new(AtomicUsize::new(0));
    let leaving = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for i in 0..3u64 {
        let (addr, dir, entering, leaving) =
            (addr.clone(), dir.clone(), entering.clone(), leaving.clone());
        tasks.push(tokio::spawn(async move {
            let zk = ZooKeeper::connect(&addr, TIMEOUT).await.unwrap();
            let d = DoubleBarrier::new(&zk, &dir, 3, &format!("p{i}"));
            // Stagger arrivals so early ones really wait.
            tokio::time::sleep(Duration::from_millis(200 * i)).await;
            entering.fetch_add(1, Ordering::SeqCst);
            d.enter().await.unwrap();
            assert_eq!(
                entering.load(Ordering::SeqCst),
                3,
                "entered before all arrived"
            );
            tokio::time::sleep(Duration::from_millis(200 * (2 - i))).await;
            leaving.fetch_add(1, Ordering::SeqCst);
            d.leave().await.unwrap();
            assert_eq!(leaving.load(Ordering::SeqCst), 3, "left before all left");
            zk.close().await.unwrap();
        }));
    }
    for t in tasks {
        within(30, "double barrier", t).await.unwrap();
    }
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_counter_loses_no_update() {
    let Some(addr) = live_addr("counter") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "counter").await;
    let path = format!("{base}/c");
    SharedCounter::new(&admin, &path, 1000).await.unwrap();
    let mut tasks = vec![];
    for _ in 0..5 {
        let (addr, path) = (addr.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let zk = ZooKeeper::connect(&addr, TIMEOUT).await.unwrap();
            let c = SharedCounter::new(&zk, &path, 0).await.unwrap();
            for _ in 0..20 {
                c.add(1).await.unwrap();
            }
            zk.close().await.unwrap();
        }));
    }
    for t in tasks {
        within(60, "counter tasks", t).await.unwrap();
    }
    let c = SharedCounter::new(&admin, &path, 0).await.unwrap();
    let (v, version) = c.get().await.unwrap();
    assert_eq!(v, 1100, "every CAS increment landed exactly once");
    assert_eq!(version, 100);
    assert!(
        !c.try_set(0, version - 1).await.unwrap(),
        "stale version refused"
    );
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}

#[tokio::test]
async fn node_and_tree_caches_follow_changes() {
    let Some(addr) = live_addr("caches") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "caches").await;
    let zk = connect(&addr).await;
    let n = format!("{base}/n");
    let node = NodeCache::start(&zk, &n).await.unwrap();
    assert_eq!(node.current(), None);
    let tree = TreeCache::start(&zk, &base).await.unwrap();
    assert_eq!(tree.current().len(), 1);
    let o = CreateOptions::default();
    admin.create(&n, b"a", &o).await.unwrap();
    node.wait_until(TIMEOUT, |v| v.is_some_and(|v| v.data == b"a"))
        .await
        .unwrap();
    admin.set_data(&n, b"b", -1).await.unwrap();
    node.wait_until(TIMEOUT, |v| {
        v.is_some_and(|v| v.data == b"b" && v.stat.version == 1)
    })
    .await
    .unwrap();
    admin.create(&format!("{n}/x"), b"x", &o).await.unwrap();
    admin.create(&format!("{n}/x/y"), b"y", &o).await.unwrap();
    tree.wait_until(TIMEOUT, |t| {
        t.get(&format!("{n}/x/y")).is_some_and(|d| d.data == b"y")
            && t.get(&n)
                .is_some_and(|d| d.data == b"b" && d.stat.num_children == 1)
    })
    .await
    .unwrap();
    admin.delete(&format!("{n}/x/y"), -1).await.unwrap();
    admin.delete(&format!("{n}/x"), -1).await.unwrap();
    admin.delete(&n, -1).await.unwrap();
    node.wait_until(TIMEOUT, |v| v.is_none()).await.unwrap();
    tree.wait_until(TIMEOUT, |t| t.len() == 1 && t.contains_key(&base))
        .await
        .unwrap();
    drop((node, tree));
    zk.close().await.unwrap();
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}

#[tokio::test]
async fn recipes_fail_cleanly_after_close() {
    let Some(addr) = live_addr("recipes_closed") else {
        return;
    };
    let zk = connect(&addr).await;
    zk.close().await.unwrap();
    assert!(matches!(
        Lock::new(&zk, "/x").acquire().await,
        Err(Error::SessionExpired)
    ));
}
