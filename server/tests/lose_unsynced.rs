//! Real zkd processes with `zkd.test.loseUnsyncedWrites=true`: every byte not fsynced
//! lives only in the process, so `kill -9` is a power cut that persisted nothing unsynced.
//!
//! - `acknowledged_writes_survive_sigkill_that_loses_unsynced_writes`: writers under load,
//!   killed at random moments; every acknowledged write is back with its Stat (zkd
//!   acknowledges only after fsync, so losing unsynced bytes must lose nothing promised).
//! - `without_fsync_acknowledged_writes_are_lost`: the mode really drops data. With
//!   `forceSync=no` (acknowledge without fsync) a kill loses the acknowledged writes; the
//!   same run without the mode keeps them, since a plain kill -9 leaves the page cache.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ZkdProcess;
use zkd_client::{Acl, Client, CreateMode, Stat};

const TIMEOUT: Duration = Duration::from_secs(20);
/// path -> (data, Stat) as last acknowledged to a client.
type Acked = HashMap<String, (Vec<u8>, Stat)>;

const MODE: &str = "zkd.test.loseUnsyncedWrites=true\n";

async fn connect(z: &ZkdProcess) -> Client {
    Client::connect(&z.addr().to_string(), TIMEOUT)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_that_loses_unsynced_writes() {
    // snapCount=200: snapshots (held in memory until their directory fsync) are taken
    // under load too.
    let mut z = ZkdProcess::start(&format!("{MODE}snapCount=200\n"));
    assert!(
        z.log()
            .contains("zkd.test.loseUnsyncedWrites=true: TEST ONLY"),
        "no start-up warning: {}",
        z.log()
    );
    let addr = z.addr().to_string();
    let open = Acl::open_unsafe();
    connect(&z)
        .await
        .create("/load", b"", &open, CreateMode::Persistent)
        .await
        .unwrap();
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let acks = Arc::new(AtomicU64::new(0));
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..5u32 {
        let mut writers = Vec::new();
        for w in 0..6u32 {
            let (addr, acked, acks, open) =
                (addr.clone(), acked.clone(), acks.clone(), open.clone());
            writers.push(tokio::spawn(async move {
                let Ok(c) = Client::connect(&addr, TIMEOUT).await else {
                    return;
                };
                for i in 0u32.. {
                    let path = format!("/load/w{w}-{}", i % 16);
                    let data = format!("r{round}-w{w}-i{i}").into_bytes();
                    let exists = acked.lock().unwrap().contains_key(&path);
                    let res = if exists {
                        c.set_data(&path, &data, -1).await
                    } else {
                        match c.create(&path, &data, &open, CreateMode::Persistent).await {
                            Ok(_) => c.exists(&path, false).await.map(|s| s.expect("created")),
                            Err(e) => Err(e),
                        }
                    };
                    match res {
                        Ok(stat) => {
                            acked.lock().unwrap().insert(path, (data, stat));
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 400)).await;
        z.kill9_and_restart();
        for w in writers {
            let _ = w.await;
        }
        let c = connect(&z).await;
        let before = acked.lock().unwrap().clone();
        assert!(!before.is_empty(), "round {round}: nothing acknowledged");
        let mut now = HashMap::new();
        for (path, (data, stat)) in &before {
            let (now_data, now_stat) = c
                .get_data(path, false)
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {path} lost: {e:?}"));
            assert!(
                now_stat.version >= stat.version,
                "round {round}: {path} went back from version {} to {}",
                stat.version,
                now_stat.version
            );
            if now_stat.version == stat.version {
                assert_eq!(&now_stat, stat, "round {round}: {path} Stat changed");
                assert_eq!(&now_data, data, "round {round}: {path} data changed");
            }
            now.insert(path.clone(), (now_data, now_stat));
        }
        *acked.lock().unwrap() = now;
    }
    let total = acks.load(Ordering::Relaxed);
    eprintln!("{total} acknowledged writes checked across 5 kills");
    assert!(total > 200, "too few writes to mean anything: {total}");
    assert!(
        z.log().contains("loaded snapshot"),
        "no restart loaded a snapshot"
    );
}

/// Creates /lost and 50 children (all acknowledged), kills, restarts; returns how many of
/// the 51 acknowledged nodes are there afterwards.
async fn acknowledged_then_killed(extra_cfg: &str) -> (usize, String) {
    let mut z = ZkdProcess::start(extra_cfg);
    let open = Acl::open_unsafe();
    let c = connect(&z).await;
    let mut paths = vec!["/lost".to_string()];
    c.create("/lost", b"x", &open, CreateMode::Persistent)
        .await
        .unwrap();
    for i in 0..50 {
        let p = format!("/lost/n{i}");
        c.create(&p, b"y", &open, CreateMode::Persistent)
            .await
            .unwrap();
        paths.push(p);
    }
    z.kill9_and_restart();
    let c = connect(&z).await;
    let mut present = 0;
    for p in &paths {
        if c.exists(p, false).await.unwrap().is_some() {
            present += 1;
        }
    }
    (present, z.log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fsync_acknowledged_writes_are_lost() {
    let (present, log) = acknowledged_then_killed(&format!("{MODE}forceSync=no\n")).await;
    assert_eq!(
        present, 0,
        "forceSync=no with unsynced writes lost: the kill should have lost every acknowledged write: {log}"
    );
    // Control: the same without the mode. The page cache keeps what was written, so a
    // plain kill -9 cannot show this.
    let (present, log) = acknowledged_then_killed("forceSync=no\n").await;
    assert_eq!(present, 51, "plain kill -9 lost page-cache writes?: {log}");
}
