//! Leader election (ZooKeeper's "Leader Election" recipe; Curator's LeaderLatch).
//!
//! Owns one participant: an EPHEMERAL_SEQUENTIAL node under the election directory whose
//! data is the participant's id. The lowest sequence leads; the others each watch their
//! predecessor, so when the leader goes exactly one participant re-checks. Never tells a
//! leader it lost leadership by itself: leadership ends with the node (`close`) or the
//! session (watch `ZooKeeper::state_events` for Expired).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{recipes::LeaderLatch, ZooKeeper};
//!
//! let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
//! let dir = format!("/doc-election-{}", std::process::id());
//! let a = LeaderLatch::start(&zk, &dir, "node-a").await?;
//! let b = LeaderLatch::start(&zk, &dir, "node-b").await?;
//! a.wait_leader().await?;
//! assert!(!b.is_leader().await?);
//! assert_eq!(b.leader().await?.as_deref(), Some("node-a"));
//! a.close().await?; // b's predecessor is gone: b leads
//! b.wait_leader().await?;
//! b.close().await?;
//! # zk.delete(&dir, -1).await?;
//! # zk.close().await?;
//! # Ok(())
//! # }
//! ```

use zkd_proto::ErrorCode;

use super::{child_path, create_protected, sorted_children, wait_first};
use crate::error::Error;
use crate::session::ZooKeeper;

const MARKER: &str = "latch-";

/// One participant of an election.
#[derive(Debug)]
pub struct LeaderLatch {
    zk: ZooKeeper,
    dir: String,
    id: String,
    node: String,
}

impl LeaderLatch {
    /// Joins the election under `dir` as `id`.
    pub async fn start(zk: &ZooKeeper, dir: &str, id: &str) -> Result<LeaderLatch, Error> {
        let node = create_protected(zk, dir, MARKER, id.as_bytes()).await?;
        Ok(LeaderLatch {
            zk: zk.clone(),
            dir: dir.to_string(),
            id: id.to_string(),
            node,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits until this participant leads.
    pub async fn wait_leader(&self) -> Result<(), Error> {
        wait_first(&self.zk, &self.dir, MARKER, &self.node).await
    }

    /// Whether this participant leads now.
    pub async fn is_leader(&self) -> Result<bool, Error> {
        let kids = sorted_children(&self.zk, &self.dir, MARKER).await?;
        Ok(kids.first() == Some(&self.node))
    }

    /// The current leader's id (`None` if nobody takes part).
    pub async fn leader(&self) -> Result<Option<String>, Error> {
        loop {
            let kids = sorted_children(&self.zk, &self.dir, MARKER).await?;
            let Some(first) = kids.first() else {
                return Ok(None);
            };
            match self.zk.get_data(&child_path(&self.dir, first)).await {
                Ok((d, _)) => return Ok(Some(String::from_utf8_lossy(&d).into_owned())),
                // It left between the two reads: look again.
                Err(Error::Keeper(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The ids of all participants, leader first.
    pub async fn participants(&self) -> Result<Vec<String>, Error> {
        let mut out = vec![];
        for k in sorted_children(&self.zk, &self.dir, MARKER).await? {
            if let Ok((d, _)) = self.zk.get_data(&child_path(&self.dir, &k)).await {
                out.push(String::from_utf8_lossy(&d).into_owned());
            }
        }
        Ok(out)
    }

    /// Leaves the election (deletes our node).
    pub async fn close(self) -> Result<(), Error> {
        match self.zk.delete(&child_path(&self.dir, &self.node), -1).await {
            Ok(()) | Err(Error::Keeper(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
