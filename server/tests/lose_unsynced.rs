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

use std::time::Duration;

use common::ZkdProcess;
use zkd_client::{Acl, Client, CreateMode};

const TIMEOUT: Duration = Duration::from_secs(20);

const MODE: &str = "zkd.test.loseUnsyncedWrites=true\n";

async fn connect(z: &ZkdProcess) -> Client {
    match Client::connect(&z.addr().to_string(), TIMEOUT).await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e:?}; zkd log: {}", z.log()),
    }
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
    let total =
        common::acknowledged_writes_survive_kills(&mut z, 5, 6, 0x2545_f491_4f6c_dd1d).await;
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
