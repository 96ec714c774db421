//! Caches kept current by persistent watches (Curator's NodeCache and TreeCache, on
//! ZooKeeper 3.6+ addWatch instead of re-set one-shot watches).
//!
//! Owns a local copy of one node (`NodeCache`) or a subtree (`TreeCache`) and a background
//! task that refreshes it: a persistent (recursive) watch reports each change and the task
//! re-reads what changed. After a reconnect the whole copy is re-read, because a
//! persistent watch does not replay the changes made while the client was away. Never
//! promises to show every intermediate value: readers see the newest state the task has
//! read, through a `watch` channel. Dropping the cache stops the task and its watch.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{recipes::{NodeCache, TreeCache}, CreateOptions, ZooKeeper};
//!
//! let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
//! let root = format!("/doc-cache-{}", std::process::id());
//! zk.create(&root, b"v1", &CreateOptions::default()).await?;
//! let node = NodeCache::start(&zk, &root).await?;
//! let tree = TreeCache::start(&zk, &root).await?;
//! zk.create(&format!("{root}/child"), b"c", &CreateOptions::default()).await?;
//! zk.set_data(&root, b"v2", -1).await?;
//! node.wait_until(Duration::from_secs(10), |n| n.is_some_and(|n| n.data == b"v2")).await?;
//! tree.wait_until(Duration::from_secs(10), |t| t.contains_key(&format!("{root}/child"))).await?;
//! # drop((node, tree));
//! # zk.delete(&format!("{root}/child"), -1).await?;
//! # zk.delete(&root, -1).await?;
//! # zk.close().await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use zkd_proto::records::event_type;
use zkd_proto::{ErrorCode, Stat};

use crate::error::Error;
use crate::session::ZooKeeper;
use crate::watches::WatchStream;

/// A node's data and Stat as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeData {
    pub data: Vec<u8>,
    pub stat: Stat,
}

async fn read(zk: &ZooKeeper, path: &str) -> Result<Option<NodeData>, Error> {
    match zk.get_data(path).await {
        Ok((data, stat)) => Ok(Some(NodeData { data, stat })),
        Err(Error::Keeper(ErrorCode::NoNode)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn wait_until<T>(
    rx: &watch::Receiver<T>,
    timeout: Duration,
    f: impl Fn(&T) -> bool,
) -> Result<(), Error> {
    let mut rx = rx.clone();
    let r = match tokio::time::timeout(timeout, rx.wait_for(|v| f(v))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(Error::SessionExpired),
        Err(_) => Err(Error::Timeout),
    };
    r
}

/// A local copy of one node (`None` while it does not exist).
#[derive(Debug)]
pub struct NodeCache {
    rx: watch::Receiver<Option<NodeData>>,
    task: JoinHandle<()>,
}

impl NodeCache {
    /// Sets a persistent watch on `path`, reads it, and keeps the copy current.
    pub async fn start(zk: &ZooKeeper, path: &str) -> Result<NodeCache, Error> {
        // Watch first, then read: a change between the two is then seen as an event.
        let stream = zk.watch(path).await?;
        let first = read(zk, path).await?;
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(node_task(zk.clone(), path.to_string(), stream, tx));
        Ok(NodeCache { rx, task })
    }

    /// The copy now.
    pub fn current(&self) -> Option<NodeData> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every refresh.
    pub fn subscribe(&self) -> watch::Receiver<Option<NodeData>> {
        self.rx.clone()
    }

    /// Waits until the copy satisfies `f` (Timeout otherwise; SessionExpired if the
    /// cache stopped).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        f: impl Fn(Option<&NodeData>) -> bool,
    ) -> Result<(), Error> {
        wait_until(&self.rx, timeout, |v| f(v.as_ref())).await
    }
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn node_task(
    zk: ZooKeeper,
    path: String,
    mut stream: WatchStream,
    tx: watch::Sender<Option<NodeData>>,
) {
    // Each event (a change, or NONE/SyncConnected after a reconnect) means: read again.
    while let Some(ev) = stream.next().await {
        if ev.event_type == event_type::NONE
            && ev.state != zkd_proto::records::keeper_state::SYNC_CONNECTED
        {
            continue;
        }
        match read(&zk, &path).await {
            Ok(v) => {
                tx.send_if_modified(|cur| {
                    if *cur != v {
                        *cur = v;
                        true
                    } else {
                        false
                    }
                });
            }
            // Disconnected mid-read: the SyncConnected event after the reconnect
            // brings us back here.
            Err(Error::ConnectionLoss) => {}
            Err(_) => return,
        }
    }
}

/// A local copy of a subtree: every node under (and including) the root, by path.
#[derive(Debug)]
pub struct TreeCache {
    rx: watch::Receiver<Arc<BTreeMap<String, NodeData>>>,
    task: JoinHandle<()>,
}

type Tree = BTreeMap<String, NodeData>;

async fn walk(zk: &ZooKeeper, root: &str) -> Result<Tree, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        let Some(n) = read(zk, &p).await? else {
            continue;
        };
        if n.stat.num_children > 0 {
            match zk.get_children(&p).await {
                Ok((kids, _)) => {
                    for k in kids {
                        stack.push(super::child_path(&p, &k));
                    }
                }
                Err(Error::Keeper(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(e),
            }
        }
        out.insert(p, n);
    }
    Ok(out)
}

fn is_under(path: &str, root: &str) -> bool {
    path == root || root == "/" || path.starts_with(&format!("{root}/"))
}

impl TreeCache {
    /// Sets a persistent recursive watch on `root`, reads the subtree, and keeps it current.
    pub async fn start(zk: &ZooKeeper, root: &str) -> Result<TreeCache, Error> {
        let stream = zk.watch_recursive(root).await?;
        let first = walk(zk, root).await?;
        let (tx, rx) = watch::channel(Arc::new(first));
        let task = tokio::spawn(tree_task(zk.clone(), root.to_string(), stream, tx));
        Ok(TreeCache { rx, task })
    }

    pub fn current(&self) -> Arc<Tree> {
        self.rx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Tree>> {
        self.rx.clone()
    }

    pub async fn wait_until(
        &self,
        timeout: Duration,
        f: impl Fn(&Tree) -> bool,
    ) -> Result<(), Error> {
        wait_until(&self.rx, timeout, |t| f(t)).await
    }
}

impl Drop for TreeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tree_task(
    zk: ZooKeeper,
    root: String,
    mut stream: WatchStream,
    tx: watch::Sender<Arc<Tree>>,
) {
    while let Some(ev) = stream.next().await {
        let mut tree = (**tx.borrow()).clone();
        let r = match ev.event_type {
            event_type::NONE if ev.state == zkd_proto::records::keeper_state::SYNC_CONNECTED => {
                walk(&zk, &root).await.map(|t| tree = t)
            }
            event_type::NONE => continue,
            event_type::NODE_DELETED => {
                tree.retain(|p, _| !is_under(p, &ev.path));
                Ok(())
            }
            _ => match read(&zk, &ev.path).await {
                Ok(Some(n)) => {
                    tree.insert(ev.path.clone(), n);
                    Ok(())
                }
                Ok(None) => {
                    tree.retain(|p, _| !is_under(p, &ev.path));
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        // A create or delete changes the parent's Stat (numChildren, cversion, pzxid),
        // and a recursive watch sends no child event for it: re-read the parent.
        let r = match (r, ev.event_type) {
            (Ok(()), event_type::NODE_CREATED | event_type::NODE_DELETED) if ev.path != root => {
                let parent = match ev.path.rfind('/') {
                    Some(0) => "/".to_string(),
                    Some(i) => ev.path[..i].to_string(),
                    None => root.clone(),
                };
                match read(&zk, &parent).await {
                    Ok(Some(n)) if is_under(&parent, &root) => {
                        tree.insert(parent, n);
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            (r, _) => r,
        };
        match r {
            Ok(()) => {
                tx.send_replace(Arc::new(tree));
            }
            Err(Error::ConnectionLoss) => {}
            Err(_) => return,
        }
    }
}
