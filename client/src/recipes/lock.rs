//! A fair distributed lock (ZooKeeper's "Locks" recipe; Curator's InterProcessMutex).
//!
//! Owns acquiring and releasing one lock node: each contender creates an
//! EPHEMERAL_SEQUENTIAL node under the lock's directory; the lowest sequence holds the
//! lock; every other contender watches only its predecessor, so a release wakes exactly
//! one waiter and the lock is granted in arrival order. Never re-entrant: a second
//! `acquire` from the same process queues behind the first like anyone else. A holder
//! whose session expires (a crash, a partition longer than the timeout) loses its node
//! and so the lock; the holder learns it from its session state, not from the lock.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{recipes::Lock, ZooKeeper};
//!
//! let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
//! let lock = Lock::new(&zk, &format!("/doc-lock-{}", std::process::id()));
//! let guard = lock.acquire().await?;
//! // ... the critical section ...
//! assert!(lock.try_acquire().await?.is_none(), "held by us, so not free");
//! guard.release().await?;
//! # zk.delete(lock.dir(), -1).await?;
//! # zk.close().await?;
//! # Ok(())
//! # }
//! ```

use zkd_proto::ErrorCode;

use super::{child_path, create_protected, sorted_children, wait_first};
use crate::error::Error;
use crate::session::ZooKeeper;

const MARKER: &str = "lock-";

/// A lock named by its directory.
#[derive(Debug, Clone)]
pub struct Lock {
    zk: ZooKeeper,
    dir: String,
}

/// A held lock. `release` deletes the lock node; dropping the guard without releasing
/// deletes it from a spawned task (best effort, needs a tokio runtime).
#[derive(Debug)]
pub struct LockGuard {
    zk: ZooKeeper,
    path: String,
    released: bool,
}

impl Lock {
    pub fn new(zk: &ZooKeeper, dir: &str) -> Lock {
        Lock {
            zk: zk.clone(),
            dir: dir.to_string(),
        }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Waits until the lock is ours.
    pub async fn acquire(&self) -> Result<LockGuard, Error> {
        let me = create_protected(&self.zk, &self.dir, MARKER, b"").await?;
        let path = child_path(&self.dir, &me);
        match wait_first(&self.zk, &self.dir, MARKER, &me).await {
            Ok(()) => Ok(LockGuard {
                zk: self.zk.clone(),
                path,
                released: false,
            }),
            Err(e) => {
                // Do not leave a node that would hold up everyone behind it.
                let _ = self.zk.delete(&path, -1).await;
                Err(e)
            }
        }
    }

    /// Waits at most `timeout` for the lock; `None` if it did not come (our lock node is
    /// deleted again, so we leave no place in the queue behind).
    pub async fn acquire_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<LockGuard>, Error> {
        let me = create_protected(&self.zk, &self.dir, MARKER, b"").await?;
        let path = child_path(&self.dir, &me);
        match tokio::time::timeout(timeout, wait_first(&self.zk, &self.dir, MARKER, &me)).await {
            Ok(Ok(())) => Ok(Some(LockGuard {
                zk: self.zk.clone(),
                path,
                released: false,
            })),
            Ok(Err(e)) => {
                let _ = self.zk.delete(&path, -1).await;
                Err(e)
            }
            Err(_) => match self.zk.delete(&path, -1).await {
                Ok(()) | Err(Error::Keeper(ErrorCode::NoNode)) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Takes the lock if nobody holds it or waits for it; `None` otherwise.
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>, Error> {
        let me = create_protected(&self.zk, &self.dir, MARKER, b"").await?;
        let path = child_path(&self.dir, &me);
        let kids = sorted_children(&self.zk, &self.dir, MARKER).await?;
        if kids.first() == Some(&me) {
            return Ok(Some(LockGuard {
                zk: self.zk.clone(),
                path,
                released: false,
            }));
        }
        self.zk.delete(&path, -1).await?;
        Ok(None)
    }

    /// The lock nodes, in grant order (the first one holds the lock).
    pub async fn contenders(&self) -> Result<Vec<String>, Error> {
        match sorted_children(&self.zk, &self.dir, MARKER).await {
            Err(Error::Keeper(ErrorCode::NoNode)) => Ok(vec![]),
            r => r,
        }
    }
}

impl LockGuard {
    /// The lock node (chroot-relative).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Deletes the lock node. NoNode (already gone, e.g. with an expired session) is Ok.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        match self.zk.delete(&self.path, -1).await {
            Ok(()) | Err(Error::Keeper(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let zk = self.zk.clone();
        let path = std::mem::take(&mut self.path);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = zk.delete(&path, -1).await;
            });
        }
    }
}
