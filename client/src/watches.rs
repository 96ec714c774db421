//! The session layer's watch manager: which local watchers wait on which path, and what
//! a notification from the server wakes.
//!
//! Owns the five watch tables of ZooKeeper's ZKWatchManager (data, exist, child,
//! persistent, persistent-recursive), keyed by client paths (chroot already stripped), and
//! the public handles: `Watch` (a one-shot watch, a future) and `WatchStream` (a persistent
//! or persistent-recursive watch, a stream). Never talks to the server itself: the session
//! registers watchers from reply hooks (so a notification that follows a reply on the socket
//! finds its watcher), re-arms the tables with setWatches2 after a reconnect, and sends
//! removeWatches when the last stream on a path is dropped.
//!
//! Which watchers an event wakes follows ZKWatchManager.materialize: NodeCreated and
//! NodeDataChanged wake data and exist watchers; NodeChildrenChanged wakes child watchers;
//! NodeDeleted wakes data, exist and child watchers; persistent watchers on the path see
//! every event; persistent-recursive watchers on the path or any ancestor see every event
//! except NodeChildrenChanged (the server may send those for ordinary child watches on a
//! descendant, and a recursive watch promises none).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use zkd_proto::records::{event_type, keeper_state, watcher_type};

use crate::event::WatchedEvent;

/// Which one-shot table a watcher sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneShot {
    Data,
    Exist,
    Child,
}

type OneShots = HashMap<String, Vec<(u64, oneshot::Sender<WatchedEvent>)>>;
type Streams = HashMap<String, Vec<(u64, mpsc::UnboundedSender<WatchedEvent>)>>;

/// The watch tables. Shared between the session (registration, re-arming) and the
/// connection's reader task (delivery), behind one mutex that is never held across an await.
#[derive(Default)]
pub(crate) struct WatchManager {
    next_id: u64,
    data: OneShots,
    exist: OneShots,
    child: OneShots,
    persistent: Streams,
    recursive: Streams,
    /// Set once the session is over (Expired, Closed, AuthFailed): the event every watcher
    /// registered later gets at once.
    terminal: Option<WatchedEvent>,
}

/// The paths to re-arm after a reconnect, per table (client paths).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WatchedPaths {
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub recursive: Vec<String>,
}

pub(crate) type SharedWatches = Arc<Mutex<WatchManager>>;

pub(crate) fn lock(m: &Mutex<WatchManager>) -> MutexGuard<'_, WatchManager> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn session_event(state: i32) -> WatchedEvent {
    WatchedEvent {
        event_type: event_type::NONE,
        state,
        path: String::new(),
        zxid: -1,
    }
}

impl WatchManager {
    pub fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn table(&mut self, kind: OneShot) -> &mut OneShots {
        match kind {
            OneShot::Data => &mut self.data,
            OneShot::Exist => &mut self.exist,
            OneShot::Child => &mut self.child,
        }
    }

    pub fn add_oneshot(
        &mut self,
        kind: OneShot,
        path: &str,
        id: u64,
        tx: oneshot::Sender<WatchedEvent>,
    ) {
        if let Some(ev) = &self.terminal {
            let _ = tx.send(ev.clone());
            return;
        }
        self.table(kind)
            .entry(path.to_string())
            .or_default()
            .push((id, tx));
    }

    pub fn add_stream(
        &mut self,
        recursive: bool,
        path: &str,
        id: u64,
        tx: mpsc::UnboundedSender<WatchedEvent>,
    ) {
        if let Some(ev) = &self.terminal {
            let _ = tx.send(ev.clone());
            return;
        }
        let t = if recursive {
            &mut self.recursive
        } else {
            &mut self.persistent
        };
        t.entry(path.to_string()).or_default().push((id, tx));
    }

    /// Forgets a one-shot watcher (its future was dropped). The server keeps its watch
    /// until it fires; the event then finds nobody, which is harmless.
    pub fn remove_oneshot(&mut self, id: u64) {
        for t in [&mut self.data, &mut self.exist, &mut self.child] {
            t.retain(|_, v| {
                v.retain(|(i, _)| *i != id);
                !v.is_empty()
            });
        }
    }

    /// Forgets a stream watcher; true if no other stream of that mode remains on `path`
    /// (then the server-side watch should be removed too).
    pub fn remove_stream(&mut self, recursive: bool, path: &str, id: u64) -> bool {
        let t = if recursive {
            &mut self.recursive
        } else {
            &mut self.persistent
        };
        let Some(v) = t.get_mut(path) else {
            return false;
        };
        let before = v.len();
        v.retain(|(i, _)| *i != id);
        let removed = v.len() != before;
        if v.is_empty() {
            t.remove(path);
            return removed && self.terminal.is_none();
        }
        false
    }

    /// Whether any local watcher (of any table) waits on `path`.
    pub fn has_watchers(&self, path: &str) -> bool {
        self.data.contains_key(path)
            || self.exist.contains_key(path)
            || self.child.contains_key(path)
            || self.persistent.contains_key(path)
            || self.recursive.contains_key(path)
    }

    /// Wakes the watchers `ev` (a server notification, path already client-relative) is for.
    pub fn deliver(&mut self, ev: &WatchedEvent) {
        let fire = |t: &mut OneShots| {
            if let Some(v) = t.remove(&ev.path) {
                for (_, tx) in v {
                    let _ = tx.send(ev.clone());
                }
            }
        };
        match ev.event_type {
            event_type::NODE_CREATED | event_type::NODE_DATA_CHANGED => {
                fire(&mut self.data);
                fire(&mut self.exist);
            }
            event_type::NODE_CHILDREN_CHANGED => fire(&mut self.child),
            event_type::NODE_DELETED => {
                fire(&mut self.data);
                fire(&mut self.exist);
                fire(&mut self.child);
            }
            _ => {}
        }
        if let Some(v) = self.persistent.get_mut(&ev.path) {
            v.retain(|(_, tx)| tx.send(ev.clone()).is_ok());
        }
        if ev.event_type != event_type::NODE_CHILDREN_CHANGED {
            for p in ancestors_and_self(&ev.path) {
                if let Some(v) = self.recursive.get_mut(p) {
                    v.retain(|(_, tx)| tx.send(ev.clone()).is_ok());
                }
            }
        }
    }

    /// A session state change that is not terminal (Disconnected, SyncConnected): streams
    /// see it as an event of type None, as Java watchers do. One-shot watches stay armed.
    pub fn state_change(&mut self, state: i32) {
        let ev = session_event(state);
        for t in [&mut self.persistent, &mut self.recursive] {
            for v in t.values_mut() {
                v.retain(|(_, tx)| tx.send(ev.clone()).is_ok());
            }
        }
    }

    /// The session is over: every watcher gets one event of type None with `state` and
    /// the tables are emptied (streams then end).
    pub fn terminate(&mut self, state: i32) {
        let ev = session_event(state);
        for t in [&mut self.data, &mut self.exist, &mut self.child] {
            for (_, v) in t.drain() {
                for (_, tx) in v {
                    let _ = tx.send(ev.clone());
                }
            }
        }
        for t in [&mut self.persistent, &mut self.recursive] {
            for (_, v) in t.drain() {
                for (_, tx) in v {
                    let _ = tx.send(ev.clone());
                }
            }
        }
        self.terminal = Some(ev);
    }

    /// removeWatches succeeded on the server: the local watchers of that type on `path`
    /// get a *WatchRemoved event and are forgotten, as ZooKeeper's client does.
    pub fn removed(&mut self, path: &str, wtype: i32) {
        let mk = |t| WatchedEvent {
            event_type: t,
            state: keeper_state::SYNC_CONNECTED,
            path: path.to_string(),
            zxid: -1,
        };
        let fire = |t: &mut OneShots, ev: WatchedEvent| {
            if let Some(v) = t.remove(path) {
                for (_, tx) in v {
                    let _ = tx.send(ev.clone());
                }
            }
        };
        if wtype == watcher_type::DATA || wtype == watcher_type::ANY {
            fire(&mut self.data, mk(event_type::DATA_WATCH_REMOVED));
            fire(&mut self.exist, mk(event_type::DATA_WATCH_REMOVED));
        }
        if wtype == watcher_type::CHILDREN || wtype == watcher_type::ANY {
            fire(&mut self.child, mk(event_type::CHILD_WATCH_REMOVED));
        }
        let ev = mk(event_type::PERSISTENT_WATCH_REMOVED);
        if wtype == watcher_type::PERSISTENT || wtype == watcher_type::ANY {
            for (_, tx) in self.persistent.remove(path).unwrap_or_default() {
                let _ = tx.send(ev.clone());
            }
        }
        if wtype == watcher_type::PERSISTENT_RECURSIVE || wtype == watcher_type::ANY {
            for (_, tx) in self.recursive.remove(path).unwrap_or_default() {
                let _ = tx.send(ev.clone());
            }
        }
    }

    /// The paths with live watchers, per table; dead watchers (dropped receivers) are
    /// pruned first so they are not re-armed.
    pub fn watched_paths(&mut self) -> WatchedPaths {
        fn one(t: &mut OneShots) -> Vec<String> {
            t.retain(|_, v| {
                v.retain(|(_, tx)| !tx.is_closed());
                !v.is_empty()
            });
            let mut p: Vec<String> = t.keys().cloned().collect();
            p.sort();
            p
        }
        fn many(t: &mut Streams) -> Vec<String> {
            t.retain(|_, v| {
                v.retain(|(_, tx)| !tx.is_closed());
                !v.is_empty()
            });
            let mut p: Vec<String> = t.keys().cloned().collect();
            p.sort();
            p
        }
        WatchedPaths {
            data: one(&mut self.data),
            exist: one(&mut self.exist),
            child: one(&mut self.child),
            persistent: many(&mut self.persistent),
            recursive: many(&mut self.recursive),
        }
    }
}

/// `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = Some(path);
    std::iter::from_fn(move || {
        let p = cur?;
        cur = match p.rfind('/') {
            _ if p == "/" => None,
            Some(0) => Some("/"),
            Some(i) => Some(&p[..i]),
            None => None,
        };
        Some(p)
    })
}

/// A one-shot watch (data, exist or child), set by `ZooKeeper::get_data_w` and friends.
/// Resolves with the event that triggered it, or with a `NONE` event whose state says why
/// it never will (Expired, Closed, AuthFailed). A disconnection does not resolve it: the
/// watch is re-armed with setWatches2 on reconnect and fires then if the node changed.
/// Dropping it forgets the local watcher (the server-side watch stays until it fires).
#[must_use = "a watch does nothing unless awaited"]
pub struct Watch {
    rx: oneshot::Receiver<WatchedEvent>,
    id: u64,
    mgr: Weak<Mutex<WatchManager>>,
}

impl Watch {
    pub(crate) fn new(rx: oneshot::Receiver<WatchedEvent>, id: u64, mgr: &SharedWatches) -> Self {
        Watch {
            rx,
            id,
            mgr: Arc::downgrade(mgr),
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("id", &self.id).finish()
    }
}

impl Future for Watch {
    type Output = WatchedEvent;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WatchedEvent> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(ev)) => Poll::Ready(ev),
            // The session (and its watch manager) is gone.
            Poll::Ready(Err(_)) => Poll::Ready(session_event(keeper_state::CLOSED)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(m) = self.mgr.upgrade() {
            lock(&m).remove_oneshot(self.id);
        }
    }
}

/// Called when the last stream of a mode on a path is dropped: removes the server watch.
pub(crate) type StreamDropHook = Arc<dyn Fn(String, bool) + Send + Sync>;

/// A persistent or persistent-recursive watch (addWatch), as a stream of events. Also
/// carries session state changes as events of type `NONE` (Disconnected, SyncConnected
/// after a reconnect) and ends (`next` returns `None`) after a terminal one. Dropping the
/// last stream on a path (of one mode) sends removeWatches for it.
///
/// It is a [`futures_core::Stream`] (and `Unpin`), so the combinators of `futures` /
/// `futures-util` (`StreamExt`) and `tokio-stream` work on it. The inherent `next` is the
/// same as `StreamExt::next`; call the trait's as `StreamExt::next(&mut s)`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), zkd_client::Error> {
/// # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use zkd_client::{event_type, CreateOptions, ZooKeeper};
///
/// let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
/// let p = format!("/doc-stream-{}", std::process::id());
/// let mut changes = zk.watch(&p).await?;
/// zk.create(&p, b"", &CreateOptions::default()).await?;
/// zk.set_data(&p, b"x", -1).await?;
/// let ev = StreamExt::next(&mut changes).await.unwrap();
/// assert_eq!(ev.event_type, event_type::NODE_CREATED);
/// // Combinators: the next event, as its type.
/// let types: Vec<i32> = (&mut changes).take(1).map(|e| e.event_type).collect().await;
/// assert_eq!(types, [event_type::NODE_DATA_CHANGED]);
/// # drop(changes);
/// # zk.delete(&p, -1).await?;
/// # zk.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct WatchStream {
    rx: mpsc::UnboundedReceiver<WatchedEvent>,
    id: u64,
    path: String,
    recursive: bool,
    mgr: Weak<Mutex<WatchManager>>,
    on_last_drop: Option<StreamDropHook>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("path", &self.path)
            .field("recursive", &self.recursive)
            .finish()
    }
}

impl WatchStream {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<WatchedEvent>,
        id: u64,
        path: &str,
        recursive: bool,
        mgr: &SharedWatches,
        on_last_drop: StreamDropHook,
    ) -> Self {
        WatchStream {
            rx,
            id,
            path: path.to_string(),
            recursive,
            mgr: Arc::downgrade(mgr),
            on_last_drop: Some(on_last_drop),
        }
    }

    /// The next event; `None` once the session is over or the watch was removed.
    pub async fn next(&mut self) -> Option<WatchedEvent> {
        self.rx.recv().await
    }

    /// The next event if one is already here.
    pub fn try_next(&mut self) -> Option<WatchedEvent> {
        self.rx.try_recv().ok()
    }

    /// The (client) path this stream watches.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl futures_core::Stream for WatchStream {
    type Item = WatchedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchedEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let Some(m) = self.mgr.upgrade() else {
            return;
        };
        let last = lock(&m).remove_stream(self.recursive, &self.path, self.id);
        if last {
            if let Some(h) = self.on_last_drop.take() {
                h(self.path.clone(), self.recursive);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i32, p: &str) -> WatchedEvent {
        WatchedEvent {
            event_type: t,
            state: keeper_state::SYNC_CONNECTED,
            path: p.into(),
            zxid: 1,
        }
    }

    #[test]
    fn ancestors() {
        let v: Vec<_> = ancestors_and_self("/a/b/c").collect();
        assert_eq!(v, ["/a/b/c", "/a/b", "/a", "/"]);
        let v: Vec<_> = ancestors_and_self("/").collect();
        assert_eq!(v, ["/"]);
    }

    #[test]
    fn materialize_like_zkwatchmanager() {
        let mut m = WatchManager::default();
        let (dtx, mut drx) = oneshot::channel();
        let (ctx, mut crx) = oneshot::channel();
        let (rtx, mut rrx) = mpsc::unbounded_channel();
        m.add_oneshot(OneShot::Data, "/a/b", 1, dtx);
        m.add_oneshot(OneShot::Child, "/a/b", 2, ctx);
        m.add_stream(true, "/a", 3, rtx);
        // A child change wakes the child watch only, never the recursive one.
        m.deliver(&ev(event_type::NODE_CHILDREN_CHANGED, "/a/b"));
        assert_eq!(crx.try_recv().unwrap().event_type, 4);
        assert!(drx.try_recv().is_err());
        assert!(rrx.try_recv().is_err());
        // A data change wakes the data watch once, and the recursive one every time.
        m.deliver(&ev(event_type::NODE_DATA_CHANGED, "/a/b"));
        m.deliver(&ev(event_type::NODE_DATA_CHANGED, "/a/b"));
        assert_eq!(drx.try_recv().unwrap().event_type, 3);
        assert_eq!(rrx.try_recv().unwrap().path, "/a/b");
        assert_eq!(rrx.try_recv().unwrap().path, "/a/b");
        assert!(m.watched_paths().data.is_empty());
        assert_eq!(m.watched_paths().recursive, ["/a"]);
    }

    #[test]
    fn terminate_wakes_everyone_and_later_registrations() {
        let mut m = WatchManager::default();
        let (tx, mut rx) = oneshot::channel();
        m.add_oneshot(OneShot::Exist, "/x", 1, tx);
        m.terminate(keeper_state::EXPIRED);
        assert_eq!(rx.try_recv().unwrap().state, keeper_state::EXPIRED);
        let (tx, mut rx) = oneshot::channel();
        m.add_oneshot(OneShot::Data, "/y", 2, tx);
        assert_eq!(rx.try_recv().unwrap().state, keeper_state::EXPIRED);
    }

    /// WatchStream is a futures Stream: StreamExt::next sees delivered events in order,
    /// then the terminal event, then the end.
    #[tokio::test]
    async fn watch_stream_is_a_futures_stream() {
        use futures_util::StreamExt;
        let mgr: SharedWatches = Arc::new(Mutex::new(WatchManager::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let hook: StreamDropHook = Arc::new(|_, _| {});
        let mut s = WatchStream::new(rx, 1, "/a", true, &mgr, hook);
        lock(&mgr).add_stream(true, "/a", 1, tx);
        lock(&mgr).deliver(&ev(event_type::NODE_CREATED, "/a/b"));
        lock(&mgr).deliver(&ev(event_type::NODE_DATA_CHANGED, "/a"));
        let first = StreamExt::next(&mut s).await.unwrap();
        assert_eq!((first.event_type, first.path.as_str()), (1, "/a/b"));
        assert_eq!(StreamExt::next(&mut s).await.unwrap().event_type, 3);
        lock(&mgr).terminate(keeper_state::CLOSED);
        let rest: Vec<WatchedEvent> = (&mut s).collect().await;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].state, keeper_state::CLOSED);
        assert!(StreamExt::next(&mut s).await.is_none());
    }

    #[test]
    fn last_stream_drop_is_reported_once() {
        let mut m = WatchManager::default();
        let (a, _ra) = mpsc::unbounded_channel();
        let (b, _rb) = mpsc::unbounded_channel();
        m.add_stream(false, "/p", 1, a);
        m.add_stream(false, "/p", 2, b);
        assert!(!m.remove_stream(false, "/p", 1));
        assert!(m.remove_stream(false, "/p", 2));
        assert!(!m.remove_stream(false, "/p", 2));
    }
}
