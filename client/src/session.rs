//! `ZooKeeper`: a session that outlives its connections.
//!
//! Owns what ZooKeeper's Java `ZooKeeper` + `ClientCnxn` own above the socket: a connect
//! string with several hosts and a chroot, the host order, reconnecting within the session
//! timeout (resuming with sessionId, password and lastZxidSeen), re-sending addAuth
//! credentials and re-arming watches with setWatches2 after a reconnect, the session state
//! stream, watches as futures and streams, and the chroot on every request path, reply path
//! and event path. Each connection is a `Client` (one socket, no reconnect); this module
//! swaps them. Never retries an operation: a request in flight when a connection drops
//! fails with ConnectionLoss, as in ZooKeeper, because it may or may not have been applied.
//!
//! Read-only: with `SessionOptions::read_only(true)` a session may land on a server that
//! lost its quorum (state ConnectedReadOnly: reads work, writes fail NotReadOnly). While
//! there, the other hosts are probed with `isro` and the session moves to the first one
//! that answers `rw`, as ClientCnxn.pingRwServer does.
//!
//! Host list from the ensemble: with `SessionOptions::refresh_servers_from_config(true)` a
//! refresher task reads `/zookeeper/config` (with a watch, on the raw connection, outside
//! the chroot and the watch tables, so setWatches2 never re-arms it under the chroot) after
//! every new connection and whenever its watch fires, and replaces the host list the
//! reconnects walk. The Java client leaves this to the application (`updateServerList`;
//! Curator's EnsembleTracker does it the same way).
//!
//! States: Connected / ConnectedReadOnly → Disconnected → (Connected again | Expired).
//! Expired, AuthFailed and Closed are terminal: the `ZooKeeper` never leaves them, every
//! request fails, every watcher gets a final event. Expired is reached when a server says
//! so in the handshake, or when no server could be reached for a whole negotiated session
//! timeout after the connection was lost (by then the ensemble has expired the session; the
//! Java client would keep trying and learn it on the next handshake).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zkd_proto::records::{add_watch_mode, keeper_state, watcher_type};
use zkd_proto::request::{decode_multi_results, encode_multi_ops};
use zkd_proto::{
    Acl, AddWatchRequest, ClientInfo, Create2Response, CreateMode, CreateRequest, CreateTtlRequest,
    DeleteRequest, ErrorCode, ExistsRequest, ExistsResponse, GetAclRequest, GetAclResponse,
    GetAllChildrenNumberRequest, GetAllChildrenNumberResponse, GetChildren2Request,
    GetChildren2Response, GetDataRequest, GetDataResponse, GetEphemeralsRequest,
    GetEphemeralsResponse, MultiOp, MultiResult, OpCode, Reader, Record, RemoveWatchesRequest,
    ReplyHeader, SetAclRequest, SetAclResponse, SetDataRequest, SetDataResponse, SetWatches2, Stat,
    SyncRequest, SyncResponse, WhoAmIResponse, Writer,
};

use crate::client::{Client, ConnectOptions};
use crate::conn::{EventSink, ReplyHook};
use crate::connect_string::{ConnectString, Rng};
use crate::error::Error;
use crate::event::{SessionState, WatchedEvent};
use crate::frame::DEFAULT_MAX_FRAME_LEN;
use crate::watches::{lock, OneShot, SharedWatches, Watch, WatchManager, WatchStream};

/// ClientCnxn's SET_WATCHES_MAX_LENGTH: re-armed watch paths go out in setWatches2 batches
/// whose path bytes add up to about this much, so no batch nears the frame limit.
pub const SET_WATCHES_MAX_LENGTH: usize = 128 * 1024;

/// ZooDefs.CONFIG_NODE: the ensemble configuration, outside any chroot.
const CONFIG_NODE: &str = "/zookeeper/config";

/// How to open a `ZooKeeper` session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// `host1:port,host2:port/chroot`.
    pub connect_string: String,
    /// Requested session timeout (the server clamps it, by default to [2, 20] ticks).
    pub session_timeout: Duration,
    /// How long `connect` keeps trying the hosts before giving up.
    pub connect_timeout: Duration,
    /// Seed for the host order; `None` picks a fresh one (ZooKeeper shuffles randomly).
    pub seed: Option<u64>,
    /// Accept a read-only server (ConnectRequest.readOnly).
    pub read_only: bool,
    /// Largest reply frame accepted.
    pub max_frame_len: usize,
    /// Limit for each request's reply once sent (`Error::Timeout`); `None` waits as long
    /// as the connection lives, as the Java client does by default. The wait for a
    /// reconnect before sending is bounded by the session timeout either way.
    pub request_timeout: Option<Duration>,
    /// Replace the host list with the client addresses in `/zookeeper/config` after each
    /// connect and whenever that node changes (see
    /// [`SessionOptions::refresh_servers_from_config`]). Off by default.
    pub refresh_servers_from_config: bool,
    /// Resume an existing session (id, password, last zxid seen) instead of opening a new
    /// one: what the Java client's `new ZooKeeper(..., sessionId, sessionPasswd)` does. The
    /// session moves to this handle; a handle still holding it is disconnected by the server.
    pub resume: Option<(i64, Vec<u8>, i64)>,
}

impl SessionOptions {
    pub fn new(connect_string: &str, session_timeout: Duration) -> Self {
        SessionOptions {
            connect_string: connect_string.to_string(),
            session_timeout,
            connect_timeout: Duration::from_secs(15),
            seed: None,
            read_only: false,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            request_timeout: None,
            refresh_servers_from_config: false,
            resume: None,
        }
    }

    pub fn request_timeout(mut self, t: Option<Duration>) -> Self {
        self.request_timeout = t;
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Resume session `id` (see [`SessionOptions::resume`]).
    pub fn resume_session(mut self, id: i64, password: &[u8], last_zxid_seen: i64) -> Self {
        self.resume = Some((id, password.to_vec(), last_zxid_seen));
        self
    }

    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }

    /// Learn the ensemble from the ensemble: after every connect (the first one before
    /// `connect_with` returns) the session reads `/zookeeper/config` with a watch, takes
    /// the client address of each member (`;clientHost:clientPort`, the member's quorum
    /// host when that is `0.0.0.0`; see
    /// [`client_hosts_from_config`](crate::connect_string::client_hosts_from_config)),
    /// and uses that list, shuffled, for its next reconnects; a change of the node (a
    /// watch event) reads it again. The chroot stays. A connect string with one server
    /// of an ensemble is then enough to survive that server's loss.
    ///
    /// A config with no usable address (a standalone server's node is empty; members
    /// without a client part) leaves the list as it was; so does a failed read. The
    /// current connection is never dropped because its server left the list (ZooKeeper's
    /// `updateServerList` may move a client to rebalance; this does not).
    pub fn refresh_servers_from_config(mut self, on: bool) -> Self {
        self.refresh_servers_from_config = on;
        self
    }
}

/// What to create: mode, ACL and (for TTL modes) the TTL. `CreateOptions::default()` is a
/// persistent node open to the world (OPEN_ACL_UNSAFE).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub mode: CreateMode,
    pub acl: Vec<Acl>,
    /// Milliseconds; only for `PersistentWithTtl` / `PersistentSequentialWithTtl`.
    pub ttl: Option<Duration>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions::new(CreateMode::Persistent)
    }
}

impl CreateOptions {
    pub fn new(mode: CreateMode) -> Self {
        CreateOptions {
            mode,
            acl: Acl::open_unsafe(),
            ttl: None,
        }
    }

    pub fn acl(mut self, acl: Vec<Acl>) -> Self {
        self.acl = acl;
        self
    }

    /// Sets the TTL; the mode must be a TTL mode (the server says BadArguments otherwise).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Facts of the current session, replaced on each handshake.
#[derive(Debug, Clone)]
struct Facts {
    session_id: i64,
    password: Vec<u8>,
    negotiated: Duration,
    /// The `host:port` of the current (or last) connection.
    host: Option<String>,
}

pub(crate) struct Inner {
    /// The hosts tried on (re)connect, in order; replaced by `/zookeeper/config` when
    /// `refresh_servers_from_config` is on.
    hosts: Mutex<Vec<String>>,
    /// The config refresher's one-shot: fired by a notification on `/zookeeper/config`
    /// (the server path: that node is never chrooted).
    config_waiter: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    chroot: Option<String>,
    opts: SessionOptions,
    state_tx: watch::Sender<SessionState>,
    listeners: Mutex<Vec<mpsc::UnboundedSender<SessionState>>>,
    conn: Mutex<Option<Client>>,
    facts: Mutex<Facts>,
    last_zxid: AtomicI64,
    watches: SharedWatches,
    auths: Mutex<Vec<(String, Vec<u8>)>>,
    rng: Mutex<Rng>,
    next_host: Mutex<usize>,
    /// When the last connection was lost (None while connected).
    lost_at: Mutex<Option<Instant>>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops the supervisor task when the last `ZooKeeper` clone goes away.
struct Owner {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// The `/zookeeper/config` refresher, when `refresh_servers_from_config` is on.
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Owner {
    fn stop_tasks(&self) {
        if let Some(t) = guard(&self.supervisor).take() {
            t.abort();
        }
        if let Some(t) = guard(&self.refresher).take() {
            t.abort();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop_tasks();
        // Drop the socket without closeSession: the session lingers until it expires,
        // as with the Java client when the process dies.
        guard(&self.inner.conn).take();
    }
}

/// A ZooKeeper session across reconnects. Cheap to clone; clones share the session.
/// Dropping the last clone drops the connection without closeSession (the server expires
/// the session after its timeout); call `close` to end it at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), zkd_client::Error> {
/// # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
/// use std::time::Duration;
/// use zkd_client::{CreateMode, CreateOptions, ZooKeeper};
///
/// let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
/// let path = format!("/doc-zk-{}", std::process::id());
/// let (created, stat) = zk.create(&path, b"hello", &CreateOptions::new(CreateMode::Ephemeral)).await?;
/// assert_eq!(created, path);
/// assert_eq!(stat.ephemeral_owner, zk.session_id());
/// let (data, _) = zk.get_data(&path).await?;
/// assert_eq!(data, b"hello");
/// zk.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ZooKeeper {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for ZooKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeper")
            .field("session_id", &format_args!("0x{:x}", self.session_id()))
            .field("state", &self.state())
            .finish()
    }
}

fn decode<T: Record>(body: &[u8]) -> Result<T, Error> {
    Ok(T::read(&mut Reader::new(body))?)
}

fn check(h: &ReplyHeader) -> Result<(), Error> {
    match Error::from_code(h.err) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

impl ZooKeeper {
    /// Opens a new session on one of the hosts of `connect_string`.
    pub async fn connect(connect_string: &str, session_timeout: Duration) -> Result<Self, Error> {
        ZooKeeper::connect_with(SessionOptions::new(connect_string, session_timeout)).await
    }

    /// Opens a new session (or resumes `opts.resume`), trying the hosts (in shuffled order)
    /// until one answers or `opts.connect_timeout` passes.
    pub async fn connect_with(opts: SessionOptions) -> Result<Self, Error> {
        let cs = ConnectString::parse(&opts.connect_string)?;
        let mut rng = Rng::new(opts.seed.unwrap_or_else(Rng::entropy));
        let mut hosts = cs.hosts;
        rng.shuffle(&mut hosts);
        let (state_tx, _) = watch::channel(SessionState::Disconnected);
        let inner = Arc::new(Inner {
            hosts: Mutex::new(hosts),
            config_waiter: Arc::new(Mutex::new(None)),
            chroot: cs.chroot,
            state_tx,
            listeners: Mutex::new(Vec::new()),
            conn: Mutex::new(None),
            facts: Mutex::new(Facts {
                session_id: opts.resume.as_ref().map_or(0, |r| r.0),
                password: opts
                    .resume
                    .as_ref()
                    .map_or_else(|| vec![0; 16], |r| r.1.clone()),
                negotiated: opts.session_timeout,
                host: None,
            }),
            last_zxid: AtomicI64::new(opts.resume.as_ref().map_or(0, |r| r.2)),
            watches: Arc::new(Mutex::new(WatchManager::default())),
            auths: Mutex::new(Vec::new()),
            rng: Mutex::new(rng),
            next_host: Mutex::new(0),
            lost_at: Mutex::new(None),
            opts,
        });
        let deadline = Instant::now() + inner.opts.connect_timeout;
        let resuming = inner.opts.resume.is_some();
        let client = inner.attempts(deadline, resuming).await?;
        // The first read of /zookeeper/config before returning, so the list is known.
        let first = if inner.opts.refresh_servers_from_config {
            Some((client.clone(), inner.refresh_hosts(&client).await))
        } else {
            None
        };
        inner.publish(client);
        let supervisor = tokio::spawn(supervise(inner.clone()));
        let refresher = first.map(|f| tokio::spawn(refresh_servers(inner.clone(), f)));
        Ok(ZooKeeper {
            owner: Arc::new(Owner {
                inner,
                supervisor: Mutex::new(Some(supervisor)),
                refresher: Mutex::new(refresher),
            }),
        })
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.owner.inner
    }

    // ---- session facts and state -----------------------------------------------------

    pub fn session_id(&self) -> i64 {
        guard(&self.inner().facts).session_id
    }

    pub fn session_password(&self) -> Vec<u8> {
        guard(&self.inner().facts).password.clone()
    }

    pub fn negotiated_timeout(&self) -> Duration {
        guard(&self.inner().facts).negotiated
    }

    /// The chroot from the connect string, if any.
    pub fn chroot(&self) -> Option<&str> {
        self.inner().chroot.as_deref()
    }

    /// The hosts (`host:port`) the session tries when it reconnects, in the order it
    /// tries them: the connect string's, shuffled, or the members of
    /// `/zookeeper/config` with `refresh_servers_from_config`.
    pub fn servers(&self) -> Vec<String> {
        guard(&self.inner().hosts).clone()
    }

    /// The server (`host:port`) of the current connection, if connected.
    pub fn connected_host(&self) -> Option<String> {
        let i = self.inner();
        guard(&i.conn).as_ref()?;
        guard(&i.facts).host.clone()
    }

    /// The newest zxid seen in a reply (what the next handshake sends as lastZxidSeen).
    pub fn last_zxid(&self) -> i64 {
        self.inner().last_zxid()
    }

    pub fn state(&self) -> SessionState {
        *self.inner().state_tx.borrow()
    }

    /// The latest state (a `watch` receiver: it may skip intermediate states).
    pub fn state_watcher(&self) -> watch::Receiver<SessionState> {
        self.inner().state_tx.subscribe()
    }

    /// Every state change from now on, none skipped. The stream ends after a terminal
    /// state (Expired, AuthFailed, Closed).
    pub fn state_events(&self) -> mpsc::UnboundedReceiver<SessionState> {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = self.state();
        if matches!(
            s,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        ) {
            let _ = tx.send(s);
        } else {
            guard(&self.inner().listeners).push(tx);
        }
        rx
    }

    /// Waits until the state satisfies `f` (or `timeout` passes: `Err(Timeout)`).
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        f: impl Fn(SessionState) -> bool,
    ) -> Result<SessionState, Error> {
        let mut rx = self.state_watcher();
        let r = match tokio::time::timeout(timeout, rx.wait_for(|s| f(*s))).await {
            Ok(Ok(s)) => Ok(*s),
            Ok(Err(_)) => Err(Error::SessionExpired),
            Err(_) => Err(Error::Timeout),
        };
        r
    }

    /// closeSession, then terminal state Closed; the ephemerals go at once. While
    /// disconnected there is nobody to send closeSession to: the state becomes Closed and
    /// the server expires the session after its timeout.
    pub async fn close(&self) -> Result<(), Error> {
        let i = self.inner();
        self.owner.stop_tasks();
        let conn = guard(&i.conn).take();
        let r = match conn {
            Some(c) => c.close().await,
            None => Ok(()),
        };
        i.terminate(SessionState::Closed);
        r
    }

    /// Drops the connection and stops reconnecting, without closeSession: what a crashed
    /// process leaves behind. The server expires the session after its timeout (and then
    /// deletes its ephemerals, which is how the recipes' crashed holders are released).
    /// The state becomes Closed; every request fails.
    pub fn abandon(&self) {
        self.owner.stop_tasks();
        self.inner().terminate(SessionState::Closed);
    }

    // ---- plumbing --------------------------------------------------------------------

    async fn call(
        &self,
        op: OpCode,
        body: Vec<u8>,
        hook: Option<ReplyHook>,
    ) -> Result<(ReplyHeader, Vec<u8>), Error> {
        let c = self.inner().connection().await?;
        c.request_hooked(op as i32, body, hook).await
    }

    async fn call_ok(&self, op: OpCode, body: Vec<u8>) -> Result<Vec<u8>, Error> {
        let (h, body) = self.call(op, body, None).await?;
        check(&h)?;
        Ok(body)
    }

    fn server_path(&self, path: &str) -> String {
        self.inner().server_path(path)
    }

    fn client_path(&self, path: &str) -> String {
        strip_chroot(self.inner().chroot.as_deref(), path)
    }

    /// A hook that registers a one-shot watch when the reply says the server set one.
    fn watch_hook(&self, kind: OneShot, path: &str) -> (ReplyHook, Watch) {
        let (tx, rx) = oneshot::channel();
        let mgr = self.inner().watches.clone();
        let id = lock(&mgr).alloc_id();
        let watch = Watch::new(rx, id, &mgr);
        let path = path.to_string();
        let hook: ReplyHook = Box::new(move |h: &ReplyHeader| {
            // ExistsWatchRegistration: a NoNode exists sets an exist watch; otherwise a
            // watch is set only when the op succeeded.
            let kind = match (kind, h.err) {
                (_, 0) if kind == OneShot::Exist => OneShot::Data,
                (_, 0) => kind,
                (OneShot::Exist, e) if e == ErrorCode::NoNode.code() => OneShot::Exist,
                _ => return,
            };
            lock(&mgr).add_oneshot(kind, &path, id, tx);
        });
        (hook, watch)
    }

    // ---- znode operations ------------------------------------------------------------

    /// Creates a node; returns its path (with the sequence suffix, chroot stripped) and
    /// its Stat. The op is create2, createTTL (when `opts.ttl` is set) or createContainer
    /// (for `CreateMode::Container`).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(String, Stat), Error> {
        let sp = self.server_path(path);
        let (op, body) = create_body(&sp, data, opts);
        let r: Create2Response = decode(&self.call_ok(op, body).await?)?;
        Ok((self.client_path(&r.path), r.stat))
    }

    /// Creates `path` and any missing ancestors as persistent nodes with empty data
    /// (ZKUtil.createAll style); existing nodes are left alone.
    pub async fn create_all(&self, path: &str) -> Result<(), Error> {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            match self.create(&cur, b"", &CreateOptions::default()).await {
                Ok(_) | Err(Error::Keeper(ErrorCode::NodeExists)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// delete; `version` -1 matches any.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), Error> {
        let req = DeleteRequest {
            path: self.server_path(path),
            version,
        };
        self.call_ok(OpCode::Delete, req.to_bytes()).await?;
        Ok(())
    }

    /// exists: `None` if there is no such node.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, Error> {
        self.exists_inner(path, None).await
    }

    /// exists with a watch: fires on NodeCreated if the node is absent, else on
    /// NodeDataChanged / NodeDeleted.
    pub async fn exists_w(&self, path: &str) -> Result<(Option<Stat>, Watch), Error> {
        let (hook, w) = self.watch_hook(OneShot::Exist, path);
        Ok((self.exists_inner(path, Some(hook)).await?, w))
    }

    async fn exists_inner(
        &self,
        path: &str,
        hook: Option<ReplyHook>,
    ) -> Result<Option<Stat>, Error> {
        let req = ExistsRequest {
            path: self.server_path(path),
            watch: hook.is_some(),
        };
        let (h, body) = self.call(OpCode::Exists, req.to_bytes(), hook).await?;
        if h.err == ErrorCode::NoNode.code() {
            return Ok(None);
        }
        check(&h)?;
        Ok(Some(decode::<ExistsResponse>(&body)?.stat))
    }

    /// getData (null data reads as empty).
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), Error> {
        self.get_data_inner(path, None).await
    }

    /// getData with a data watch (NodeDataChanged / NodeDeleted).
    pub async fn get_data_w(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch), Error> {
        let (hook, w) = self.watch_hook(OneShot::Data, path);
        let (d, s) = self.get_data_inner(path, Some(hook)).await?;
        Ok((d, s, w))
    }

    async fn get_data_inner(
        &self,
        path: &str,
        hook: Option<ReplyHook>,
    ) -> Result<(Vec<u8>, Stat), Error> {
        let req = GetDataRequest {
            path: self.server_path(path),
            watch: hook.is_some(),
        };
        let (h, body) = self.call(OpCode::GetData, req.to_bytes(), hook).await?;
        check(&h)?;
        let r: GetDataResponse = decode(&body)?;
        Ok((r.data.unwrap_or_default(), r.stat))
    }

    /// setData; `version` -1 matches any. Returns the new Stat.
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, Error> {
        let req = SetDataRequest {
            path: self.server_path(path),
            data: Some(data.to_vec()),
            version,
        };
        Ok(decode::<SetDataResponse>(&self.call_ok(OpCode::SetData, req.to_bytes()).await?)?.stat)
    }

    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        let req = GetAclRequest {
            path: self.server_path(path),
        };
        let r: GetAclResponse = decode(&self.call_ok(OpCode::GetAcl, req.to_bytes()).await?)?;
        Ok((r.acl, r.stat))
    }

    /// setACL; `version` is the ACL version (aversion), -1 for any.
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Error> {
        let req = SetAclRequest {
            path: self.server_path(path),
            acl: acl.to_vec(),
            version,
        };
        Ok(decode::<SetAclResponse>(&self.call_ok(OpCode::SetAcl, req.to_bytes()).await?)?.stat)
    }

    /// getChildren2: child names (order unspecified) and the node's Stat.
    pub async fn get_children(&self, path: &str) -> Result<(Vec<String>, Stat), Error> {
        self.get_children_inner(path, None).await
    }

    /// getChildren2 with a child watch (NodeChildrenChanged / NodeDeleted).
    pub async fn get_children_w(&self, path: &str) -> Result<(Vec<String>, Stat, Watch), Error> {
        let (hook, w) = self.watch_hook(OneShot::Child, path);
        let (c, s) = self.get_children_inner(path, Some(hook)).await?;
        Ok((c, s, w))
    }

    async fn get_children_inner(
        &self,
        path: &str,
        hook: Option<ReplyHook>,
    ) -> Result<(Vec<String>, Stat), Error> {
        let req = GetChildren2Request {
            path: self.server_path(path),
            watch: hook.is_some(),
        };
        let (h, body) = self
            .call(OpCode::GetChildren2, req.to_bytes(), hook)
            .await?;
        check(&h)?;
        let r: GetChildren2Response = decode(&body)?;
        Ok((r.children, r.stat))
    }

    /// sync: the server catches up with the leader before answering.
    pub async fn sync(&self, path: &str) -> Result<String, Error> {
        let req = SyncRequest {
            path: self.server_path(path),
        };
        let r: SyncResponse = decode(&self.call_ok(OpCode::Sync, req.to_bytes()).await?)?;
        Ok(self.client_path(&r.path))
    }

    /// getEphemerals: this session's ephemerals under `prefix` (chroot stripped).
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let req = GetEphemeralsRequest {
            prefix_path: self.server_path(prefix),
        };
        let r: GetEphemeralsResponse =
            decode(&self.call_ok(OpCode::GetEphemerals, req.to_bytes()).await?)?;
        Ok(r.ephemerals.iter().map(|p| self.client_path(p)).collect())
    }

    /// getAllChildrenNumber: descendants of `path`, not counting it.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, Error> {
        let req = GetAllChildrenNumberRequest {
            path: self.server_path(path),
        };
        let r: GetAllChildrenNumberResponse = decode(
            &self
                .call_ok(OpCode::GetAllChildrenNumber, req.to_bytes())
                .await?,
        )?;
        Ok(r.total_number)
    }

    /// whoAmI: the identities this session is authenticated as.
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, Error> {
        let body = self.call_ok(OpCode::WhoAmI, Vec::new()).await?;
        Ok(decode::<WhoAmIResponse>(&body)?.client_info)
    }

    /// The ensemble configuration: data of `/zookeeper/config` (never chrooted, as in
    /// ZooKeeper's getConfig). An ensemble (of ZooKeeper or zkd) serves its members, one
    /// `server.N=host:quorumPort:electionPort:role;clientHost:clientPort` line each,
    /// then `version=<hex>`; a standalone server an empty node.
    pub async fn get_config(&self) -> Result<(Vec<u8>, Stat), Error> {
        let req = GetDataRequest {
            path: CONFIG_NODE.to_string(),
            watch: false,
        };
        let r: GetDataResponse = decode(&self.call_ok(OpCode::GetData, req.to_bytes()).await?)?;
        Ok((r.data.unwrap_or_default(), r.stat))
    }

    /// reconfig (incremental: `joining` / `leaving`, or non-incremental: `new_members`),
    /// conditional on `from_config` (-1 for any). Returns the new config's data and Stat.
    /// Servers without `reconfigEnabled` (zkd; ZooKeeper by default) answer
    /// ReconfigDisabled.
    pub async fn reconfig(
        &self,
        joining: Option<&str>,
        leaving: Option<&str>,
        new_members: Option<&str>,
        from_config: i64,
    ) -> Result<(Vec<u8>, Stat), Error> {
        let req = zkd_proto::ReconfigRequest {
            joining_servers: joining.map(str::to_string),
            leaving_servers: leaving.map(str::to_string),
            new_members: new_members.map(str::to_string),
            cur_config_id: from_config,
        };
        let r: GetDataResponse = decode(&self.call_ok(OpCode::Reconfig, req.to_bytes()).await?)?;
        Ok((r.data.unwrap_or_default(), r.stat))
    }

    /// A multi (transaction) builder.
    pub fn multi(&self) -> Multi {
        Multi {
            zk: self.clone(),
            ops: Vec::new(),
            read: false,
        }
    }

    /// A multiRead builder (getData / getChildren ops, each answered on its own).
    pub fn multi_read(&self) -> Multi {
        Multi {
            zk: self.clone(),
            ops: Vec::new(),
            read: true,
        }
    }

    // ---- auth and watches ------------------------------------------------------------

    /// addAuth: authenticates this session (e.g. `digest`, `user:password`). Remembered and
    /// re-sent after every reconnect, as the Java client does. AuthFailed is terminal.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), Error> {
        let c = self.inner().connection().await?;
        guard(&self.inner().auths).push((scheme.to_string(), auth.to_vec()));
        c.add_auth(scheme, auth).await
    }

    /// A persistent watch (addWatch PERSISTENT) on `path`: data changes, deletes, creates
    /// of the node and changes of its children, until the stream is dropped.
    pub async fn watch(&self, path: &str) -> Result<WatchStream, Error> {
        self.add_watch(path, false).await
    }

    /// A persistent recursive watch (addWatch PERSISTENT_RECURSIVE) on `path` and every
    /// descendant: creates, deletes and data changes (no child events).
    pub async fn watch_recursive(&self, path: &str) -> Result<WatchStream, Error> {
        self.add_watch(path, true).await
    }

    async fn add_watch(&self, path: &str, recursive: bool) -> Result<WatchStream, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mgr = self.inner().watches.clone();
        let id = lock(&mgr).alloc_id();
        let weak = Arc::downgrade(self.inner());
        let on_drop = Arc::new(move |path: String, recursive: bool| {
            let Some(inner) = weak.upgrade() else { return };
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            rt.spawn(async move {
                let t = if recursive {
                    watcher_type::PERSISTENT_RECURSIVE
                } else {
                    watcher_type::PERSISTENT
                };
                // ZooKeeper before 3.9 knows only the CHILDREN/DATA/ANY types here
                // (ZOOKEEPER-4472) and answers MarshallingError; then ANY does it, if no
                // one-shot watcher of ours is left on the path to lose its watch.
                let r = inner.remove_watches_on_server(&path, t).await;
                if matches!(r, Err(Error::Keeper(ErrorCode::MarshallingError)))
                    && !lock(&inner.watches).has_watchers(&path)
                {
                    let _ = inner
                        .remove_watches_on_server(&path, watcher_type::ANY)
                        .await;
                }
            });
        });
        let stream = WatchStream::new(rx, id, path, recursive, &mgr, on_drop);
        let p = path.to_string();
        let hook: ReplyHook = Box::new(move |h: &ReplyHeader| {
            if h.err == 0 {
                lock(&mgr).add_stream(recursive, &p, id, tx);
            }
        });
        let req = AddWatchRequest {
            path: self.server_path(path),
            mode: if recursive {
                add_watch_mode::PERSISTENT_RECURSIVE
            } else {
                add_watch_mode::PERSISTENT
            },
        };
        let (h, _) = self
            .call(OpCode::AddWatch, req.to_bytes(), Some(hook))
            .await?;
        check(&h)?;
        Ok(stream)
    }

    /// removeWatches: removes this session's watches of `watcher_type` (see
    /// `zkd_client::watcher_type`) on `path` from the server; the local watchers get a
    /// *WatchRemoved event. NoWatcher if the server has none.
    pub async fn remove_watches(&self, path: &str, watcher_type: i32) -> Result<(), Error> {
        self.inner()
            .remove_watches_on_server(path, watcher_type)
            .await?;
        lock(&self.inner().watches).removed(path, watcher_type);
        Ok(())
    }
}

impl Inner {
    fn server_path(&self, path: &str) -> String {
        match &self.chroot {
            None => path.to_string(),
            Some(c) if path == "/" => c.clone(),
            Some(c) => format!("{c}{path}"),
        }
    }

    fn last_zxid(&self) -> i64 {
        let own = self.last_zxid.load(Ordering::SeqCst);
        match guard(&self.conn).as_ref() {
            Some(c) => own.max(c.last_zxid()),
            None => own,
        }
    }

    async fn remove_watches_on_server(&self, path: &str, wtype: i32) -> Result<(), Error> {
        let c = self.connection().await?;
        let req = RemoveWatchesRequest {
            path: self.server_path(path),
            watcher_type: wtype,
        };
        let (h, _) = c
            .request_raw(OpCode::RemoveWatches as i32, req.to_bytes())
            .await?;
        check(&h)
    }

    fn set_state(&self, s: SessionState) {
        let old = self.state_tx.send_replace(s);
        if old == s {
            return;
        }
        guard(&self.listeners).retain(|tx| tx.send(s).is_ok());
        match s {
            SessionState::Disconnected => {
                lock(&self.watches).state_change(keeper_state::DISCONNECTED)
            }
            SessionState::Connected => {
                lock(&self.watches).state_change(keeper_state::SYNC_CONNECTED)
            }
            SessionState::ConnectedReadOnly => {
                lock(&self.watches).state_change(keeper_state::CONNECTED_READ_ONLY)
            }
            _ => {}
        }
    }

    /// Enters a terminal state (once): fails watchers, ends state streams.
    fn terminate(&self, s: SessionState) {
        if matches!(
            self.state(),
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        ) {
            return;
        }
        guard(&self.conn).take();
        self.set_state(s);
        guard(&self.listeners).clear();
        lock(&self.watches).terminate(s.keeper_state());
    }

    fn state(&self) -> SessionState {
        *self.state_tx.borrow()
    }

    fn publish(&self, c: Client) {
        {
            let mut f = guard(&self.facts);
            f.session_id = c.session_id();
            f.password = c.session_password();
            f.negotiated = c.negotiated_timeout();
        }
        let ro = c.is_read_only();
        *guard(&self.conn) = Some(c);
        *guard(&self.lost_at) = None;
        self.set_state(if ro {
            SessionState::ConnectedReadOnly
        } else {
            SessionState::Connected
        });
    }

    /// The current connection, waiting for a reconnect up to the rest of the session
    /// timeout (then ConnectionLoss). Terminal states fail at once.
    async fn connection(&self) -> Result<Client, Error> {
        let mut rx = self.state_tx.subscribe();
        loop {
            if let Some(c) = guard(&self.conn).clone() {
                if c.state().is_connected() {
                    return Ok(c);
                }
            }
            match *rx.borrow_and_update() {
                SessionState::Expired | SessionState::Closed => return Err(Error::SessionExpired),
                SessionState::AuthFailed => return Err(Error::Keeper(ErrorCode::AuthFailed)),
                _ => {}
            }
            let negotiated = guard(&self.facts).negotiated;
            let deadline = guard(&self.lost_at).unwrap_or_else(Instant::now) + negotiated;
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::SessionExpired),
                Err(_) => return Err(Error::ConnectionLoss),
            }
        }
    }

    /// Notifications from the current connection, chroot stripped, into the watch tables.
    fn sink(&self) -> EventSink {
        let mgr = self.watches.clone();
        let chroot = self.chroot.clone();
        let config_waiter = self.config_waiter.clone();
        Arc::new(move |mut ev: WatchedEvent| {
            if ev.path == CONFIG_NODE {
                if let Some(tx) = guard(&config_waiter).take() {
                    let _ = tx.send(());
                }
            }
            ev.path = strip_chroot(chroot.as_deref(), &ev.path);
            lock(&mgr).deliver(&ev);
        })
    }

    /// Tries the hosts round robin until one completes a handshake (and, when `resume`,
    /// the re-priming: auth, setWatches2) or `deadline` passes. A refused session
    /// (expired) and a refused credential are final.
    async fn attempts(&self, deadline: Instant, resume: bool) -> Result<Client, Error> {
        let mut tried = 0usize;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(if resume {
                    Error::SessionExpired
                } else {
                    Error::ConnectionLoss
                });
            }
            // The list may be replaced meanwhile (refresh_servers_from_config).
            let (host, n) = {
                let hosts = guard(&self.hosts);
                let n = hosts.len();
                let mut i = guard(&self.next_host);
                let h = hosts[*i % n].clone();
                *i = (*i + 1) % n;
                (h, n)
            };
            let facts = guard(&self.facts).clone();
            // As ClientCnxn: each attempt gets a share of the session timeout.
            let per_try = (facts.negotiated / n as u32).max(Duration::from_millis(500));
            let mut o = ConnectOptions::new(&host, self.opts.session_timeout)
                .read_only(self.opts.read_only)
                .connect_timeout(per_try.min(deadline - now))
                .last_zxid_seen(self.last_zxid.load(Ordering::SeqCst));
            o.max_frame_len = self.opts.max_frame_len;
            o.request_timeout = self.opts.request_timeout;
            if resume {
                o = o.session(facts.session_id, &facts.password);
            }
            tracing::debug!("connecting to {host} (resume: {resume})");
            match Client::connect_with_sink(o, Some(self.sink())).await {
                Ok(c) => match self.prime(&c).await {
                    Ok(()) => {
                        guard(&self.facts).host = Some(host);
                        return Ok(c);
                    }
                    Err(Error::Keeper(ErrorCode::AuthFailed)) => {
                        return Err(Error::Keeper(ErrorCode::AuthFailed))
                    }
                    Err(e) => tracing::debug!("priming {host} failed: {e}"),
                },
                Err(Error::SessionExpired) => return Err(Error::SessionExpired),
                Err(e) => tracing::debug!("connect to {host} failed: {e}"),
            }
            tried += 1;
            if tried.is_multiple_of(n) {
                // Every host failed once: back off a little, with jitter, as
                // StaticHostProvider does after a full cycle.
                let ms = 50 + guard(&self.rng).below(200);
                let wake = (Instant::now() + Duration::from_millis(ms)).min(deadline);
                tokio::time::sleep_until(wake).await;
            }
        }
    }

    /// After a handshake: re-send every addAuth credential, then re-arm the watches with
    /// setWatches2 batches relative to lastZxidSeen.
    async fn prime(&self, c: &Client) -> Result<(), Error> {
        let auths = guard(&self.auths).clone();
        for (scheme, auth) in auths {
            c.add_auth(&scheme, &auth).await?;
        }
        let paths = lock(&self.watches).watched_paths();
        let rel = self.last_zxid.load(Ordering::SeqCst);
        for batch in set_watches_batches(&paths, |p| self.server_path(p)) {
            c.set_watches(rel, batch).await?;
        }
        Ok(())
    }
}

impl Inner {
    /// Polls the other hosts with the `isro` four-letter word, as ClientCnxn.pingRwServer
    /// does (first after 100 ms, then doubling up to 60 s), until one answers `rw`. Sets
    /// `next_host` to it and returns it. ZooKeeper whitelists `isro` when
    /// `readonlymode.enabled=true`.
    async fn find_rw_server(&self) -> String {
        let current = guard(&self.facts).host.clone();
        let mut wait = Duration::from_millis(100);
        let mut i = 0usize;
        loop {
            tokio::time::sleep(wait).await;
            let host = {
                let hosts = guard(&self.hosts);
                hosts[i % hosts.len()].clone()
            };
            i += 1;
            if Some(&host) == current.as_ref() {
                continue;
            }
            if probe_isro(&host, Duration::from_secs(1)).await.as_deref() == Some("rw") {
                let hosts = guard(&self.hosts);
                if let Some(p) = hosts.iter().position(|h| *h == host) {
                    *guard(&self.next_host) = p;
                }
                return host;
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }
}

impl Inner {
    /// Reads `/zookeeper/config` on `c` with a watch and, if it lists any client address,
    /// makes those the hosts of the next reconnects: shuffled, with the server of `c`
    /// moved last (when it is listed) so that a reconnect after losing it tries the
    /// others first. Returns what fires when the node changes (or never, if the read
    /// failed; the next connection reads again).
    async fn refresh_hosts(&self, c: &Client) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        // Armed before the request: a notification can only follow the reply.
        *guard(&self.config_waiter) = Some(tx);
        let data = match c.get_data(CONFIG_NODE, true).await {
            Ok((data, _)) => data,
            Err(e) => {
                tracing::debug!("reading {CONFIG_NODE} failed: {e}");
                return rx;
            }
        };
        let mut hosts =
            crate::connect_string::client_hosts_from_config(&String::from_utf8_lossy(&data));
        if hosts.is_empty() {
            tracing::debug!("{CONFIG_NODE} lists no client address; keeping the host list");
            return rx;
        }
        guard(&self.rng).shuffle(&mut hosts);
        let current = guard(&self.facts).host.clone();
        if let Some(p) = hosts.iter().position(|h| Some(h) == current.as_ref()) {
            let h = hosts.remove(p);
            hosts.push(h);
        }
        tracing::debug!("hosts from {CONFIG_NODE}: {hosts:?}");
        let mut list = guard(&self.hosts);
        *list = hosts;
        *guard(&self.next_host) = 0;
        rx
    }
}

/// With `refresh_servers_from_config`: reads `/zookeeper/config` again whenever it
/// changes (its watch fired) and after every new connection. `first` is the connection
/// `connect_with` already read it on, with that read's watch.
async fn refresh_servers(inner: Arc<Inner>, first: (Client, oneshot::Receiver<()>)) {
    let (mut conn, mut changed) = first;
    loop {
        let mut st = conn.state_watcher();
        let fired = tokio::select! {
            r = &mut changed => r.is_ok(),
            _ = st.wait_for(|s| !s.is_connected()) => false,
        };
        if fired && conn.state().is_connected() {
            changed = inner.refresh_hosts(&conn).await;
            continue;
        }
        if !fired {
            // The waiter is gone (the session is ending): wait for the connection's end.
            let _ = st.wait_for(|s| !s.is_connected()).await;
        }
        // This connection is gone: wait for the supervisor's next one and read there.
        let mut state = inner.state_tx.subscribe();
        loop {
            if let Some(c) = guard(&inner.conn).clone() {
                if c.state().is_connected() && !c.same_connection(&conn) {
                    conn = c;
                    break;
                }
            }
            if matches!(
                *state.borrow_and_update(),
                SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
            ) {
                return;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
        changed = inner.refresh_hosts(&conn).await;
    }
}

/// Sends `isro` and returns the answer (`rw` or `ro`), if any came within `timeout`.
async fn probe_isro(host: &str, timeout: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        s.write_all(b"isro").await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).trim().to_string())
    };
    tokio::time::timeout(timeout, probe).await.ok().flatten()
}

/// Splits watched paths into setWatches2 records as ClientCnxn does: data, then exist,
/// then child, then persistent, then recursive paths, each batch closed once its path
/// lengths reach SET_WATCHES_MAX_LENGTH (the last path may overshoot it a little).
pub(crate) fn set_watches_batches(
    paths: &crate::watches::WatchedPaths,
    server_path: impl Fn(&str) -> String,
) -> Vec<SetWatches2> {
    let mut out = Vec::new();
    let mut cur = SetWatches2::default();
    let mut len = 0usize;
    type Field = fn(&mut SetWatches2) -> &mut Vec<String>;
    let lists: [(&Vec<String>, Field); 5] = [
        (&paths.data, |s| &mut s.data_watches),
        (&paths.exist, |s| &mut s.exist_watches),
        (&paths.child, |s| &mut s.child_watches),
        (&paths.persistent, |s| &mut s.persistent_watches),
        (&paths.recursive, |s| &mut s.persistent_recursive_watches),
    ];
    for (list, field) in lists {
        for p in list {
            let sp = server_path(p);
            len += sp.len();
            field(&mut cur).push(sp);
            if len >= SET_WATCHES_MAX_LENGTH {
                out.push(std::mem::take(&mut cur));
                len = 0;
            }
        }
    }
    if len > 0 {
        out.push(cur);
    }
    out
}

pub(crate) fn strip_chroot(chroot: Option<&str>, path: &str) -> String {
    match chroot {
        None => path.to_string(),
        Some(c) => match path.strip_prefix(c) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            // Not under the chroot (ClientCnxn logs and keeps such a path as is).
            _ => path.to_string(),
        },
    }
}

fn create_body(server_path: &str, data: &[u8], o: &CreateOptions) -> (OpCode, Vec<u8>) {
    if let Some(ttl) = o.ttl {
        let req = CreateTtlRequest {
            path: server_path.to_string(),
            data: Some(data.to_vec()),
            acl: o.acl.clone(),
            flags: o.mode.flag(),
            ttl: ttl.as_millis() as i64,
        };
        return (OpCode::CreateTtl, req.to_bytes());
    }
    let req = CreateRequest {
        path: server_path.to_string(),
        data: Some(data.to_vec()),
        acl: o.acl.clone(),
        flags: o.mode.flag(),
    };
    let op = if o.mode == CreateMode::Container {
        OpCode::CreateContainer
    } else {
        OpCode::Create2
    };
    (op, req.to_bytes())
}

/// The supervisor: waits for the current connection to go, then reconnects within the
/// session timeout, or ends the session.
async fn supervise(inner: Arc<Inner>) {
    loop {
        let Some(conn) = guard(&inner.conn).clone() else {
            return;
        };
        let mut st = conn.state_watcher();
        if conn.is_read_only() && guard(&inner.hosts).len() > 1 {
            // On a read-only server: look for a read-write one meanwhile, and move there
            // when found (ClientCnxn.pingRwServer).
            tokio::select! {
                _ = st.wait_for(|s| !s.is_connected()) => {}
                found = inner.find_rw_server() => {
                    tracing::debug!("read-write server {found} found; leaving the read-only one");
                    conn.disconnect();
                }
            }
        }
        let _ = st.wait_for(|s| !s.is_connected()).await;
        let s = *st.borrow();
        inner
            .last_zxid
            .fetch_max(conn.last_zxid(), Ordering::SeqCst);
        // The server's clock for this session started at the last frame we heard (the
        // reader gives up only after 2/3 of the timeout of silence), so the reconnect
        // deadline counts from there, not from now.
        let heard = conn.last_heard();
        drop(conn);
        guard(&inner.conn).take();
        match s {
            SessionState::AuthFailed => return inner.terminate(SessionState::AuthFailed),
            SessionState::Closed => return inner.terminate(SessionState::Closed),
            SessionState::Expired => return inner.terminate(SessionState::Expired),
            _ => {}
        }
        let lost = heard.min(Instant::now());
        *guard(&inner.lost_at) = Some(lost);
        inner.set_state(SessionState::Disconnected);
        let deadline = lost + guard(&inner.facts).negotiated;
        match inner.attempts(deadline, true).await {
            Ok(c) => inner.publish(c),
            Err(Error::Keeper(ErrorCode::AuthFailed)) => {
                return inner.terminate(SessionState::AuthFailed)
            }
            Err(_) => return inner.terminate(SessionState::Expired),
        }
    }
}

/// A multi or multiRead under construction. Paths are chroot-relative; the chroot is
/// applied when the ops are sent and stripped from created paths in the results.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), zkd_client::Error> {
/// # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
/// use std::time::Duration;
/// use zkd_client::{CreateMode, CreateOptions, MultiResult, ZooKeeper};
///
/// let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
/// let p = format!("/doc-multi-{}", std::process::id());
/// let results = zk
///     .multi()
///     .create(&p, b"v0", &CreateOptions::new(CreateMode::Ephemeral))
///     .set_data(&p, b"v1", 0)
///     .check(&p, 1)
///     .commit()
///     .await?;
/// // (ZooKeeper 3.8 answers with `Create`, zkd and 3.9 with `Create2`, which adds the Stat.)
/// assert!(matches!(&results[0],
///     MultiResult::Create { path } | MultiResult::Create2 { path, .. } if *path == p));
///
/// // A failing transaction reports every op: the culprit's code, RuntimeInconsistency after.
/// let results = zk.multi().check(&p, 7).delete(&p, -1).run().await?;
/// assert_eq!(results[0], MultiResult::Error { err: -103 }); // BadVersion
/// assert_eq!(results[1], MultiResult::Error { err: -2 });
/// # zk.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct Multi {
    zk: ZooKeeper,
    ops: Vec<MultiOp>,
    read: bool,
}

impl Multi {
    fn push(mut self, op: MultiOp) -> Self {
        self.ops.push(op);
        self
    }

    /// A create, sent as create2 (or createTTL / createContainer). The result is `Create2`
    /// (path and Stat) from zkd and ZooKeeper 3.9, a plain `Create` (path only) from 3.8.
    pub fn create(self, path: &str, data: &[u8], opts: &CreateOptions) -> Self {
        let sp = self.zk.server_path(path);
        let op = match opts.ttl {
            Some(ttl) => {
                crate::op::create_ttl(&sp, data, &opts.acl, opts.mode, ttl.as_millis() as i64)
            }
            None if opts.mode == CreateMode::Container => {
                crate::op::create_container(&sp, data, &opts.acl)
            }
            None => crate::op::create2(&sp, data, &opts.acl, opts.mode),
        };
        self.push(op)
    }

    pub fn delete(self, path: &str, version: i32) -> Self {
        let sp = self.zk.server_path(path);
        self.push(crate::op::delete(&sp, version))
    }

    pub fn set_data(self, path: &str, data: &[u8], version: i32) -> Self {
        let sp = self.zk.server_path(path);
        self.push(crate::op::set_data(&sp, data, version))
    }

    pub fn check(self, path: &str, version: i32) -> Self {
        let sp = self.zk.server_path(path);
        self.push(crate::op::check(&sp, version))
    }

    /// multiRead only.
    pub fn get_data(self, path: &str) -> Self {
        let sp = self.zk.server_path(path);
        self.push(crate::op::get_data(&sp))
    }

    /// multiRead only.
    pub fn get_children(self, path: &str) -> Self {
        let sp = self.zk.server_path(path);
        self.push(crate::op::get_children(&sp))
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends the ops; the per-op results exactly as the server sent them (chroot stripped).
    /// A failed transaction is `Ok` with `MultiResult::Error` entries (see `first_error`).
    pub async fn run(self) -> Result<Vec<MultiResult>, Error> {
        let mut w = Writer::new();
        encode_multi_ops(&self.ops, &mut w);
        let op = if self.read {
            OpCode::MultiRead
        } else {
            OpCode::Multi
        };
        let body = self.zk.call_ok(op, w.into_inner()).await?;
        let mut results = decode_multi_results(&mut Reader::new(&body))?;
        for r in &mut results {
            match r {
                MultiResult::Create { path } | MultiResult::Create2 { path, .. } => {
                    *path = self.zk.client_path(path)
                }
                _ => {}
            }
        }
        Ok(results)
    }

    /// `run`, but a failed transaction is `Err` with the failing op's code (multi only;
    /// a multiRead's per-op errors are left in the results).
    pub async fn commit(self) -> Result<Vec<MultiResult>, Error> {
        let read = self.read;
        let results = self.run().await?;
        if !read {
            if let Some((_, e)) = first_error(&results) {
                return Err(e);
            }
        }
        Ok(results)
    }
}

/// The first failing op of a multi's results: its index and error. Skips the 0 and -2
/// (RuntimeInconsistency) entries ZooKeeper puts around the culprit.
pub fn first_error(results: &[MultiResult]) -> Option<(usize, Error)> {
    results.iter().enumerate().find_map(|(i, r)| match r {
        MultiResult::Error { err }
            if *err != 0 && *err != ErrorCode::RuntimeInconsistency.code() =>
        {
            Error::from_code(*err).map(|e| (i, e))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watches::WatchedPaths;

    #[test]
    fn chroot_strip() {
        assert_eq!(strip_chroot(Some("/app"), "/app"), "/");
        assert_eq!(strip_chroot(Some("/app"), "/app/x"), "/x");
        assert_eq!(strip_chroot(Some("/app"), "/apple"), "/apple");
        assert_eq!(strip_chroot(None, "/x"), "/x");
    }

    #[test]
    fn set_watches_batches_stay_under_the_limit_and_keep_every_path() {
        let long = |i: usize| format!("/{}/{i}", "x".repeat(1000));
        let paths = WatchedPaths {
            data: (0..200).map(long).collect(),
            exist: vec!["/e".into()],
            child: (200..400).map(long).collect(),
            persistent: vec!["/p".into()],
            recursive: vec!["/r".into()],
        };
        let batches = set_watches_batches(&paths, |p| format!("/root{p}"));
        assert!(batches.len() >= 3, "{} batches", batches.len());
        let mut n = 0;
        for b in &batches {
            let bytes: usize = [
                &b.data_watches,
                &b.exist_watches,
                &b.child_watches,
                &b.persistent_watches,
                &b.persistent_recursive_watches,
            ]
            .iter()
            .flat_map(|v| v.iter())
            .map(|p| p.len())
            .sum();
            assert!(bytes < SET_WATCHES_MAX_LENGTH + 2000);
            assert!(b.to_bytes().len() < zkd_proto::frame::DEFAULT_MAX_BUFFER);
            n += b.data_watches.len()
                + b.exist_watches.len()
                + b.child_watches.len()
                + b.persistent_watches.len()
                + b.persistent_recursive_watches.len();
        }
        assert_eq!(n, 403);
        assert!(batches[0].data_watches[0].starts_with("/root/"));
        assert_eq!(
            batches.last().unwrap().persistent_recursive_watches,
            ["/root/r"]
        );
    }

    #[test]
    fn first_error_skips_neighbours() {
        let r = vec![
            MultiResult::Error { err: 0 },
            MultiResult::Error { err: -101 },
            MultiResult::Error { err: -2 },
        ];
        let (i, e) = first_error(&r).unwrap();
        assert_eq!(i, 1);
        assert!(matches!(e, Error::Keeper(ErrorCode::NoNode)));
        assert!(first_error(&[MultiResult::Delete]).is_none());
    }
}
