//! Barriers (ZooKeeper's "Barriers" and "Double Barriers" recipes).
//!
//! Owns two patterns. `Barrier`: a node whose existence holds everyone in `wait` until
//! it is removed. `DoubleBarrier`: `size` participants `enter` together (nobody passes
//! until `size` have arrived, signalled by a `ready` node) and `leave` together (nobody
//! passes until all have left). Never reusable for a second round on the same path while
//! participants of the first are still leaving: the last one out deletes `ready`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{recipes::{Barrier, DoubleBarrier}, ZooKeeper};
//!
//! let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
//! let b = Barrier::new(&zk, &format!("/doc-barrier-{}", std::process::id()));
//! b.set().await?;
//! let waiter = tokio::spawn({ let b = b.clone(); async move { b.wait().await } });
//! b.remove().await?;
//! waiter.await.unwrap()?;
//!
//! let dir = format!("/doc-double-{}", std::process::id());
//! let (p1, p2) = (DoubleBarrier::new(&zk, &dir, 2, "p1"), DoubleBarrier::new(&zk, &dir, 2, "p2"));
//! tokio::try_join!(p1.enter(), p2.enter())?;
//! tokio::try_join!(p1.leave(), p2.leave())?;
//! # zk.delete(&dir, -1).await?;
//! # zk.close().await?;
//! # Ok(())
//! # }
//! ```

use zkd_proto::records::event_type;
use zkd_proto::{CreateMode, ErrorCode};

use super::child_path;
use crate::error::Error;
use crate::session::{CreateOptions, ZooKeeper};

/// A barrier: `wait` returns once the node at `path` does not exist.
#[derive(Debug, Clone)]
pub struct Barrier {
    zk: ZooKeeper,
    path: String,
}

impl Barrier {
    pub fn new(zk: &ZooKeeper, path: &str) -> Barrier {
        Barrier {
            zk: zk.clone(),
            path: path.to_string(),
        }
    }

    /// Raises the barrier (creates the node, parents too; already raised is fine).
    pub async fn set(&self) -> Result<(), Error> {
        self.zk.create_all(&self.path).await
    }

    /// Lowers the barrier (already lowered is fine).
    pub async fn remove(&self) -> Result<(), Error> {
        match self.zk.delete(&self.path, -1).await {
            Ok(()) | Err(Error::Keeper(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the barrier is lowered.
    pub async fn wait(&self) -> Result<(), Error> {
        loop {
            let (stat, w) = self.zk.exists_w(&self.path).await?;
            if stat.is_none() {
                return Ok(());
            }
            w.await;
        }
    }
}

/// A double barrier of `size` participants under `path`.
#[derive(Debug, Clone)]
pub struct DoubleBarrier {
    zk: ZooKeeper,
    path: String,
    size: usize,
    name: String,
}

const READY: &str = "ready";

impl DoubleBarrier {
    /// `name` must be unique among the participants.
    pub fn new(zk: &ZooKeeper, path: &str, size: usize, name: &str) -> DoubleBarrier {
        DoubleBarrier {
            zk: zk.clone(),
            path: path.to_string(),
            size,
            name: name.to_string(),
        }
    }

    fn me(&self) -> String {
        child_path(&self.path, &self.name)
    }

    async fn participants(&self) -> Result<Vec<String>, Error> {
        let (mut kids, _) = self.zk.get_children(&self.path).await?;
        kids.retain(|k| k != READY);
        kids.sort();
        Ok(kids)
    }

    /// Joins and waits until `size` participants have joined.
    pub async fn enter(&self) -> Result<(), Error> {
        self.zk.create_all(&self.path).await?;
        let ready = child_path(&self.path, READY);
        // Watch `ready` before joining, so its creation cannot slip past us.
        let (stat, w) = self.zk.exists_w(&ready).await?;
        match self
            .zk
            .create(&self.me(), b"", &CreateOptions::new(CreateMode::Ephemeral))
            .await
        {
            Ok(_) | Err(Error::Keeper(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(e),
        }
        if stat.is_some() {
            return Ok(());
        }
        if self.participants().await?.len() >= self.size {
            match self.zk.create(&ready, b"", &CreateOptions::default()).await {
                Ok(_) | Err(Error::Keeper(ErrorCode::NodeExists)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let ev = w.await;
        if ev.event_type == event_type::NONE {
            return Err(Error::SessionExpired);
        }
        Ok(())
    }

    /// Leaves and waits until every participant has left (the recipe: the lowest node
    /// leaves last, watching the highest; the others leave and watch the lowest).
    pub async fn leave(&self) -> Result<(), Error> {
        loop {
            let kids = self.participants().await?;
            if kids.is_empty() {
                let _ = self.zk.delete(&child_path(&self.path, READY), -1).await;
                return Ok(());
            }
            let mine = kids.contains(&self.name);
            if kids.len() == 1 && mine {
                self.zk.delete(&self.me(), -1).await?;
                let _ = self.zk.delete(&child_path(&self.path, READY), -1).await;
                return Ok(());
            }
            let lowest = &kids[0];
            let watch_for = if *lowest == self.name {
                kids.last().unwrap().clone()
            } else {
                if mine {
                    match self.zk.delete(&self.me(), -1).await {
                        Ok(()) | Err(Error::Keeper(ErrorCode::NoNode)) => {}
                        Err(e) => return Err(e),
                    }
                }
                lowest.clone()
            };
            let (stat, w) = self
                .zk
                .exists_w(&child_path(&self.path, &watch_for))
                .await?;
            if stat.is_some() && w.await.event_type == event_type::NONE {
                return Err(Error::SessionExpired);
            }
        }
    }
}
