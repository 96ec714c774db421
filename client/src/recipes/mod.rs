//! Recipes on top of `ZooKeeper`: the coordination patterns of ZooKeeper's recipes page
//! and zookeeper-recipes, in their usual shapes.
//!
//! Owns the patterns only: every recipe is plain znode operations and watches through a
//! `ZooKeeper` session, so it behaves the same against zkd and Apache ZooKeeper and
//! inherits the session's reconnect behaviour. Never retries an operation that failed with
//! ConnectionLoss blindly: where a create may have happened (lock and latch nodes) the
//! node name carries a random prefix so the recipe can find its own node afterwards (the
//! "protected" pattern). A recipe whose session expired fails with SessionExpired; its
//! ephemeral nodes are gone with the session, which is how a crashed holder releases.
//!
//! - `lock`: `Lock`, a fair mutex (sequential-ephemeral nodes, each waiter watches its
//!   predecessor only, so a release wakes one waiter, not all).
//! - `latch`: `LeaderLatch`, leader election (the lowest sequential node leads).
//! - `barrier`: `Barrier` and `DoubleBarrier`.
//! - `counter`: `SharedCounter`, an i64 updated with versioned setData (compare-and-set).
//! - `cache`: `NodeCache` (one node) and `TreeCache` (a subtree), kept current by
//!   persistent watches.

pub mod barrier;
pub mod cache;
pub mod counter;
pub mod latch;
pub mod lock;

pub use barrier::{Barrier, DoubleBarrier};
pub use cache::{NodeCache, NodeData, TreeCache};
pub use counter::SharedCounter;
pub use latch::LeaderLatch;
pub use lock::{Lock, LockGuard};

use zkd_proto::{CreateMode, ErrorCode};

use crate::connect_string::Rng;
use crate::error::Error;
use crate::session::{CreateOptions, ZooKeeper};

/// `dir/name`, with `/` handled.
pub(crate) fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The sequence number ZooKeeper appended to a sequential node's name or path (its last
/// 10 characters, which read as negative after the int32 wrap).
pub fn sequence_of(name: &str) -> Option<i64> {
    sequence(name)
}

pub(crate) fn sequence(name: &str) -> Option<i64> {
    // The suffix is "%010d" of an int32: ten or more digits, with a '-' in front after
    // the wrap. Our markers end in '-', so a wrapped one reads "lock--2147483648".
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits < 10 {
        return None;
    }
    let head = &name[..name.len() - digits];
    let v: i64 = name[head.len()..].parse().ok()?;
    Some(if head.ends_with("--") { -v } else { v })
}

/// A random prefix that marks our own sequential node, so it can be found after a
/// ConnectionLoss hid the create's reply.
pub(crate) fn protected_prefix() -> String {
    format!("_c_{:016x}-", Rng::new(Rng::entropy()).next_u64())
}

/// Creates an ephemeral sequential `dir/<prefix><marker>` and returns its name. If the
/// reply is lost with the connection, looks for a child with our prefix before creating
/// again, so a lost reply never leaves a second node of ours behind.
pub(crate) async fn create_protected(
    zk: &ZooKeeper,
    dir: &str,
    marker: &str,
    data: &[u8],
) -> Result<String, Error> {
    let prefix = protected_prefix();
    let opts = CreateOptions::new(CreateMode::EphemeralSequential);
    loop {
        match zk
            .create(&child_path(dir, &format!("{prefix}{marker}")), data, &opts)
            .await
        {
            Ok((path, _)) => return Ok(path.rsplit('/').next().unwrap_or("").to_string()),
            Err(Error::Keeper(ErrorCode::NoNode)) => zk.create_all(dir).await?,
            Err(Error::ConnectionLoss) => {
                if let Ok((kids, _)) = zk.get_children(dir).await {
                    if let Some(k) = kids.into_iter().find(|k| k.starts_with(&prefix)) {
                        return Ok(k);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The children of `dir` that contain `marker`, sorted by sequence number.
pub(crate) async fn sorted_children(
    zk: &ZooKeeper,
    dir: &str,
    marker: &str,
) -> Result<Vec<String>, Error> {
    let (kids, _) = zk.get_children(dir).await?;
    let mut kids: Vec<(i64, String)> = kids
        .into_iter()
        .filter(|k| k.contains(marker))
        .filter_map(|k| sequence(&k).map(|s| (s, k)))
        .collect();
    kids.sort();
    Ok(kids.into_iter().map(|(_, k)| k).collect())
}

/// Waits until `me` is the first of the sorted children with `marker`: each round watches
/// only the node just before ours (no herd effect). NoNode if our node is gone (the
/// session expired, or someone deleted it).
pub(crate) async fn wait_first(
    zk: &ZooKeeper,
    dir: &str,
    marker: &str,
    me: &str,
) -> Result<(), Error> {
    loop {
        let kids = sorted_children(zk, dir, marker).await?;
        let Some(i) = kids.iter().position(|k| k == me) else {
            return Err(Error::Keeper(ErrorCode::NoNode));
        };
        if i == 0 {
            return Ok(());
        }
        let (stat, w) = zk.exists_w(&child_path(dir, &kids[i - 1])).await?;
        if stat.is_some() {
            let ev = w.await;
            if ev.event_type == zkd_proto::records::event_type::NONE {
                // The session ended; the next round reports how.
                continue;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_suffix() {
        assert_eq!(sequence("_c_ab-lock-0000000012"), Some(12));
        assert_eq!(sequence("lock--2147483648"), Some(-2147483648));
        assert_eq!(sequence("x"), None);
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/d", "a"), "/d/a");
    }
}
