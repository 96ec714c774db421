//! The shell's ZooKeeper session: connecting, printing watch and state events the way
//! zkCli.sh's watcher does, and the table of watches this session holds.
//!
//! Owns the `Client`, the background task that prints notifications, and the local
//! watch table that `removewatches` consults (the Java client keeps one and refuses to
//! remove a watch it does not hold). Never parses commands.
//!
//! Session-state events (SyncConnected, Closed, AuthFailed, Expired) are made up here,
//! because zkd-client reports state on a separate channel and the Java client pushes
//! them through the watcher; they are printed at the moment the shell learns of them.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use zkd_client::{
    event_type, keeper_state, Client, ConnectOptions, SessionState, SetWatches2, WatchedEvent,
};

use crate::fmt;

/// Which watches the session holds on one path.
#[derive(Default, Clone, Copy, Debug)]
pub struct WatchSet {
    pub data: bool,
    /// An exists watch on a node that did not exist (fires on NodeCreated).
    pub exist: bool,
    pub child: bool,
    pub persistent: bool,
    pub recursive: bool,
}

impl WatchSet {
    fn is_empty(&self) -> bool {
        !(self.data || self.exist || self.child || self.persistent || self.recursive)
    }
}

/// State shared between the shell and the event-printing task.
#[derive(Default)]
pub struct Shared {
    pub print_watches: AtomicBool,
    pub watches: Mutex<HashMap<String, WatchSet>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        let s = Shared::default();
        s.print_watches.store(true, Ordering::SeqCst);
        Arc::new(s)
    }

    pub fn note_watch(&self, path: &str, f: impl FnOnce(&mut WatchSet)) {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        f(w.entry(path.to_string()).or_default());
    }

    pub fn watch_set(&self, path: &str) -> WatchSet {
        let w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        w.get(path).copied().unwrap_or_default()
    }

    /// Drops one-shot watches a notification consumed, as ZKWatchManager.materialize.
    fn consume(&self, etype: i32, path: &str) {
        let mut w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ws) = w.get_mut(path) {
            match etype {
                event_type::NODE_DATA_CHANGED | event_type::NODE_CREATED => {
                    ws.data = false;
                    ws.exist = false;
                }
                event_type::NODE_CHILDREN_CHANGED => ws.child = false,
                event_type::NODE_DELETED => {
                    ws.data = false;
                    ws.exist = false;
                    ws.child = false;
                }
                _ => {}
            }
            if ws.is_empty() {
                w.remove(path);
            }
        }
    }

    /// The held watches in the form setWatches2 re-registers them.
    fn as_set_watches(&self, relative_zxid: i64) -> SetWatches2 {
        let w = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let pick = |f: fn(&WatchSet) -> bool| -> Vec<String> {
            let mut v: Vec<String> = w
                .iter()
                .filter(|(_, s)| f(s))
                .map(|(p, _)| p.clone())
                .collect();
            v.sort();
            v
        };
        SetWatches2 {
            relative_zxid,
            data_watches: pick(|s| s.data),
            exist_watches: pick(|s| s.exist),
            child_watches: pick(|s| s.child),
            persistent_watches: pick(|s| s.persistent),
            persistent_recursive_watches: pick(|s| s.recursive),
        }
    }

    pub fn clear_watches(&self) {
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// ZooKeeperMain's watcher: a blank line, "WATCHER::", a blank line, the event.
    pub fn print_event(&self, state: i32, etype: i32, path: Option<&str>, zxid: i64) {
        if !self.print_watches.load(Ordering::SeqCst) {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\nWATCHER::\n\n{}\n",
            fmt::watched_event(state, etype, path, zxid)
        );
        let _ = out.flush();
    }
}

/// How to (re)connect, from the command line.
#[derive(Clone)]
pub struct ConnectParams {
    pub timeout_ms: u64,
    pub read_only: bool,
}

/// One live (or once-live) session.
pub struct Session {
    pub client: Client,
    /// The server of the connection string this session is connected to.
    addr: String,
    /// Set once `close` ran, or the session expired or failed auth: the shell then says
    /// "Not connected" until `connect`.
    pub dead: Option<&'static str>,
    params: ConnectParams,
    shared: Arc<Shared>,
    /// Asks the printing task to print every notification already received, so a
    /// notification that arrived before a command's reply is printed before the next
    /// command runs (zkCli.sh's watcher thread is usually that quick too).
    flush_tx: Option<mpsc::UnboundedSender<oneshot::Sender<()>>>,
}

fn options(host: &str, p: &ConnectParams) -> ConnectOptions {
    let t = Duration::from_millis(p.timeout_ms.max(1));
    ConnectOptions::new(host, t)
        .read_only(p.read_only)
        .connect_timeout(t)
}

impl Session {
    /// Connects to the first server of a "host:port,host:port" list that answers, as
    /// the Java client walks its list. A chroot suffix ("host:port/app") is refused:
    /// zkd-client has no chroot yet, and silently ignoring it would act on the wrong
    /// tree.
    pub async fn open(
        host: &str,
        params: &ConnectParams,
        shared: &Arc<Shared>,
    ) -> Result<Session, String> {
        if let Some(i) = host.find('/') {
            return Err(format!(
                "chroot \"{}\" in the connection string is not supported by zkcli",
                &host[i..]
            ));
        }
        let addrs: Vec<&str> = host
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let mut errors = Vec::new();
        for &addr in &addrs {
            match Client::connect_with(options(addr, params)).await {
                Ok(client) => {
                    let mut s = Session {
                        client,
                        addr: addr.to_string(),
                        dead: None,
                        params: params.clone(),
                        shared: shared.clone(),
                        flush_tx: None,
                    };
                    s.start_tasks();
                    s.print_connected();
                    return Ok(s);
                }
                Err(e) if addrs.len() == 1 => errors.push(e.to_string()),
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        if errors.is_empty() {
            errors.push("no server in the connection string".into());
        }
        Err(errors.join("; "))
    }

    fn print_connected(&self) {
        let state = if self.client.is_read_only() {
            keeper_state::CONNECTED_READ_ONLY
        } else {
            keeper_state::SYNC_CONNECTED
        };
        self.shared.print_event(state, event_type::NONE, None, -1);
    }

    /// Prints notifications as they arrive, and "Disconnected" when the socket drops.
    fn start_tasks(&mut self) {
        if let Some(mut rx) = self.client.take_events() {
            let shared = self.shared.clone();
            let (flush_tx, mut flush_rx) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
            self.flush_tx = Some(flush_tx);
            tokio::spawn(async move {
                let show = |ev: WatchedEvent| {
                    shared.consume(ev.event_type, &ev.path);
                    shared.print_event(ev.state, ev.event_type, Some(&ev.path), ev.zxid);
                };
                loop {
                    tokio::select! {
                        biased;
                        ev = rx.recv() => match ev {
                            Some(ev) => show(ev),
                            None => break,
                        },
                        Some(done) = flush_rx.recv() => {
                            while let Ok(ev) = rx.try_recv() {
                                show(ev);
                            }
                            let _ = done.send(());
                        }
                    }
                }
            });
        }
        let mut states = self.client.state_watcher();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let s = *states.borrow();
                // Closed, AuthFailed and Expired are printed by the command that
                // caused or found them, so they appear in order with its output.
                if s == SessionState::Disconnected {
                    shared.print_event(keeper_state::DISCONNECTED, event_type::NONE, None, -1);
                }
            }
        });
    }

    /// Returns once every notification received so far has been printed.
    pub async fn flush_events(&self) {
        if let Some(tx) = &self.flush_tx {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }

    /// ZooKeeper.States name for the prompt.
    pub fn state_name(&self) -> &'static str {
        if let Some(d) = self.dead {
            return d;
        }
        match self.client.state() {
            SessionState::Connected => "CONNECTED",
            SessionState::ConnectedReadOnly => "CONNECTEDREADONLY",
            // The Java client would be reconnecting; this shell resumes the session
            // before the next command.
            SessionState::Disconnected => "CONNECTING",
            SessionState::Expired | SessionState::Closed => "CLOSED",
            SessionState::AuthFailed => "AUTH_FAILED",
        }
    }

    pub fn is_alive(&self) -> bool {
        self.dead.is_none()
    }

    /// If the socket dropped, tries once to resume the same session, as the Java client
    /// keeps doing in the background, and re-registers the session's watches with
    /// setWatches2 as it does: the server then fires at once those whose node changed
    /// while the client was away.
    pub async fn revive(&mut self) {
        if self.dead.is_some() || self.client.state() != SessionState::Disconnected {
            return;
        }
        let last_zxid = self.client.last_zxid();
        let opts = options(&self.addr, &self.params)
            .session(self.client.session_id(), &self.client.session_password())
            .last_zxid_seen(last_zxid);
        match Client::connect_with(opts).await {
            Ok(c) => {
                self.client = c;
                self.start_tasks();
                self.print_connected();
                let watches = self.shared.as_set_watches(last_zxid);
                if self.client.set_watches(last_zxid, watches).await.is_err() {
                    // Not re-registered: the table would otherwise promise watches the
                    // server does not hold.
                    self.shared.clear_watches();
                }
            }
            Err(zkd_client::Error::SessionExpired) => {
                self.shared
                    .print_event(keeper_state::EXPIRED, event_type::NONE, None, -1);
                self.shared.clear_watches();
                self.dead = Some("CLOSED");
            }
            Err(_) => {}
        }
    }

    pub async fn close(&mut self) {
        if self.dead.is_some() {
            return;
        }
        self.flush_events().await;
        let _ = self.client.close().await;
        self.dead = Some("CLOSED");
        self.shared.clear_watches();
        self.shared
            .print_event(keeper_state::CLOSED, event_type::NONE, None, -1);
    }

    pub fn auth_failed(&mut self) {
        self.dead = Some("AUTH_FAILED");
        self.shared
            .print_event(keeper_state::AUTH_FAILED, event_type::NONE, None, -1);
    }
}
