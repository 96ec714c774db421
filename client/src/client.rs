//! The `Client` handle and the ZooKeeper operations.
//!
//! Owns the public API: connecting (new or resumed session), one async method per
//! ZooKeeper op, and access to session facts, state and the event stream. Each method
//! encodes its request with zkd-proto, waits for the matching reply, turns a non-zero
//! reply error into `Error::Keeper`, and decodes the reply record. Never validates input
//! and never retries: what the caller asks for is what goes on the wire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use zkd_proto::records::xid;
use zkd_proto::request::{decode_multi_results, encode_multi_ops};
use zkd_proto::{
    Acl, AddWatchRequest, AuthPacket, CheckVersionRequest, CheckWatchesRequest, ClientInfo,
    ConnectResponse, Create2Response, CreateMode, CreateRequest, CreateResponse, CreateTtlRequest,
    DeleteRequest, ErrorCode, ExistsRequest, ExistsResponse, GetAclRequest, GetAclResponse,
    GetAllChildrenNumberRequest, GetAllChildrenNumberResponse, GetChildren2Request,
    GetChildren2Response, GetChildrenRequest, GetChildrenResponse, GetDataRequest, GetDataResponse,
    GetEphemeralsRequest, GetEphemeralsResponse, MultiOp, MultiResult, OpCode, Reader, Record,
    RemoveWatchesRequest, ReplyHeader, SetAclRequest, SetAclResponse, SetDataRequest,
    SetDataResponse, SetWatches2, Stat, SyncRequest, SyncResponse, WhoAmIResponse, Writer,
};

use crate::conn::{establish, EventSink, HandshakeParams, ReplyHook, ReplyResult, Shared};
use crate::error::Error;
use crate::event::{SessionState, WatchedEvent};
use crate::frame::DEFAULT_MAX_FRAME_LEN;

/// How to connect. `ConnectOptions::new(addr, timeout)` gives a new session with defaults.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// "host:port".
    pub addr: String,
    /// Requested session timeout; the server clamps it to [2, 20] ticks by default.
    pub session_timeout: Duration,
    /// `(session_id, password)` to resume an existing session instead of creating one.
    pub session: Option<(i64, Vec<u8>)>,
    /// Sent in the ConnectRequest. ZooKeeper refuses (hangs up on) a client that has seen
    /// a zxid newer than its own.
    pub last_zxid_seen: i64,
    /// Ask for a read-only-capable session (ConnectRequest.readOnly).
    pub read_only: bool,
    /// Limit for TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Limit for each request's reply; `None` waits as long as the connection lives (the
    /// Java client's default). A timed-out request stays pending: its late reply is matched
    /// and dropped, so the stream stays in step.
    pub request_timeout: Option<Duration>,
    /// Largest incoming frame accepted; a bigger length prefix drops the connection.
    pub max_frame_len: usize,
}

impl ConnectOptions {
    pub fn new(addr: &str, session_timeout: Duration) -> Self {
        ConnectOptions {
            addr: addr.to_string(),
            session_timeout,
            session: None,
            last_zxid_seen: 0,
            read_only: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }

    /// Resume `session_id` with `password` (as returned by `Client::session_password`).
    pub fn session(mut self, session_id: i64, password: &[u8]) -> Self {
        self.session = Some((session_id, password.to_vec()));
        self
    }

    pub fn last_zxid_seen(mut self, zxid: i64) -> Self {
        self.last_zxid_seen = zxid;
        self
    }

    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    pub fn request_timeout(mut self, t: Option<Duration>) -> Self {
        self.request_timeout = t;
        self
    }

    pub fn max_frame_len(mut self, n: usize) -> Self {
        self.max_frame_len = n;
        self
    }
}

/// A ZooKeeper session over one connection. Cheap to clone; all clones share the session.
/// Dropping the last clone stops the connection tasks and drops the socket without
/// closeSession, so the session lingers on the server until it times out (call `close`
/// to end it at once).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    response: ConnectResponse,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<WatchedEvent>>>,
    tasks: Vec<JoinHandle<()>>,
    request_timeout: Option<Duration>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Client {
    /// Whether both are clones of the same connection.
    pub(crate) fn same_connection(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &format_args!("0x{:x}", self.session_id()))
            .field("state", &self.state())
            .finish()
    }
}

fn decode<T: Record>(body: &[u8]) -> Result<T, Error> {
    Ok(T::read(&mut Reader::new(body))?)
}

fn check_err(h: &ReplyHeader) -> Result<(), Error> {
    match Error::from_code(h.err) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

impl Client {
    /// Opens a new session with default options.
    pub async fn connect(addr: &str, session_timeout: Duration) -> Result<Client, Error> {
        Client::connect_with(ConnectOptions::new(addr, session_timeout)).await
    }

    /// Opens (or resumes, with `opts.session`) a session.
    pub async fn connect_with(opts: ConnectOptions) -> Result<Client, Error> {
        Client::connect_with_sink(opts, None).await
    }

    /// `connect_with`, sending notifications to `sink` instead of the event channel.
    pub(crate) async fn connect_with_sink(
        opts: ConnectOptions,
        sink: Option<EventSink>,
    ) -> Result<Client, Error> {
        let conn = establish(
            &HandshakeParams {
                addr: opts.addr.clone(),
                session_timeout: opts.session_timeout,
                session: opts.session.clone(),
                last_zxid_seen: opts.last_zxid_seen,
                read_only: opts.read_only,
                connect_timeout: opts.connect_timeout,
                max_frame_len: opts.max_frame_len,
            },
            sink,
        )
        .await?;
        Ok(Client {
            inner: Arc::new(Handle {
                shared: conn.shared,
                response: conn.response,
                events_rx: Mutex::new(Some(conn.events_rx)),
                tasks: conn.tasks,
                request_timeout: opts.request_timeout,
            }),
        })
    }

    // ---- session facts -------------------------------------------------------------

    pub fn session_id(&self) -> i64 {
        self.inner.response.session_id
    }

    pub fn session_password(&self) -> Vec<u8> {
        self.inner.response.passwd.clone()
    }

    /// The session timeout the server granted.
    pub fn negotiated_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.response.time_out.max(0) as u64)
    }

    /// Whether the server said this is a read-only session.
    pub fn is_read_only(&self) -> bool {
        self.inner.response.read_only
    }

    /// The ConnectResponse exactly as received.
    pub fn connect_response(&self) -> ConnectResponse {
        self.inner.response.clone()
    }

    /// The zxid of the newest reply with a positive zxid (starts at `last_zxid_seen`).
    /// Pings, auth replies and notifications do not move it, as in ClientCnxn.
    pub fn last_zxid(&self) -> i64 {
        self.inner.shared.last_zxid()
    }

    pub fn state(&self) -> SessionState {
        self.inner.shared.state()
    }

    /// Drops the socket without closeSession; pending requests fail with ConnectionLoss
    /// and the state becomes Disconnected (used to leave a read-only server).
    pub(crate) fn disconnect(&self) {
        self.inner.shared.lose(&Error::ConnectionLoss);
    }

    /// When the last frame (reply, ping reply or notification) arrived.
    pub(crate) fn last_heard(&self) -> tokio::time::Instant {
        self.inner.shared.last_heard()
    }

    /// A receiver that sees every later state change.
    pub fn state_watcher(&self) -> watch::Receiver<SessionState> {
        self.inner.shared.subscribe_state()
    }

    /// The stream of watch notifications, in socket order. Can be taken once (later calls
    /// return `None`); notifications arriving before it is taken are buffered.
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<WatchedEvent>> {
        self.inner
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    // ---- plumbing ------------------------------------------------------------------

    async fn wait(&self, rx: oneshot::Receiver<ReplyResult>) -> ReplyResult {
        let fut = async {
            match rx.await {
                Ok(r) => r,
                // The connection task went away without answering (aborted).
                Err(_) => Err(Error::ConnectionLoss),
            }
        };
        match self.inner.request_timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .unwrap_or(Err(Error::Timeout)),
        }
    }

    /// Sends any op with a fresh xid and returns the reply header and body bytes as they
    /// arrived, whatever the header's error code. For tests: unknown op codes, malformed
    /// bodies, ops this client has no method for.
    ///
    /// The reply must come back with the same xid. Apache ZooKeeper answers a ping (op 11)
    /// with xid -2 whatever xid it was sent with, so a raw ping never completes and the
    /// next reply then looks out of order, which drops the connection.
    pub async fn request_raw(
        &self,
        op_type: i32,
        body: Vec<u8>,
    ) -> Result<(ReplyHeader, Vec<u8>), Error> {
        let rx = self.inner.shared.submit(op_type, &body)?;
        self.wait(rx).await
    }

    /// `request_raw` with a hook run in the reader task when the reply arrives.
    pub(crate) async fn request_hooked(
        &self,
        op_type: i32,
        body: Vec<u8>,
        hook: Option<ReplyHook>,
    ) -> Result<(ReplyHeader, Vec<u8>), Error> {
        let rx = self.inner.shared.submit_hooked(op_type, &body, hook)?;
        self.wait(rx).await
    }

    /// Sends `op` with `body`; a non-zero reply error becomes `Err`, else the body bytes.
    async fn call(&self, op: OpCode, body: Vec<u8>) -> Result<Vec<u8>, Error> {
        let (h, body) = self.request_raw(op as i32, body).await?;
        check_err(&h)?;
        Ok(body)
    }

    async fn call_record<R: Record, T: Record>(&self, op: OpCode, req: &R) -> Result<T, Error> {
        decode(&self.call(op, req.to_bytes()).await?)
    }

    // ---- znode operations ----------------------------------------------------------

    /// create (op 1): returns the created path (with the sequence suffix if sequential).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<String, Error> {
        let req = create_request(path, data, acl, mode);
        let r: CreateResponse = self.call_record(OpCode::Create, &req).await?;
        Ok(r.path)
    }

    /// create2 (op 15): returns the created path and its Stat.
    pub async fn create2(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<(String, Stat), Error> {
        let req = create_request(path, data, acl, mode);
        let r: Create2Response = self.call_record(OpCode::Create2, &req).await?;
        Ok((r.path, r.stat))
    }

    /// createTTL (op 21). ZooKeeper needs `extendedTypesEnabled` for this.
    pub async fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl_ms: i64,
    ) -> Result<(String, Stat), Error> {
        let req = CreateTtlRequest {
            path: path.to_string(),
            data: Some(data.to_vec()),
            acl: acl.to_vec(),
            flags: mode.flag(),
            ttl: ttl_ms,
        };
        let r: Create2Response = self.call_record(OpCode::CreateTtl, &req).await?;
        Ok((r.path, r.stat))
    }

    /// createContainer (op 19).
    pub async fn create_container(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
    ) -> Result<(String, Stat), Error> {
        let req = create_request(path, data, acl, CreateMode::Container);
        let r: Create2Response = self.call_record(OpCode::CreateContainer, &req).await?;
        Ok((r.path, r.stat))
    }

    /// delete (op 2); `version` -1 matches any version.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), Error> {
        let req = DeleteRequest {
            path: path.to_string(),
            version,
        };
        self.call(OpCode::Delete, req.to_bytes()).await?;
        Ok(())
    }

    /// exists (op 3): `None` when the node does not exist (the server still sets an exist
    /// watch in that case if `watch`).
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>, Error> {
        let req = ExistsRequest {
            path: path.to_string(),
            watch,
        };
        let (h, body) = self
            .request_raw(OpCode::Exists as i32, req.to_bytes())
            .await?;
        if h.err == ErrorCode::NoNode.code() {
            return Ok(None);
        }
        check_err(&h)?;
        Ok(Some(decode::<ExistsResponse>(&body)?.stat))
    }

    /// getData (op 4), null data read as empty.
    pub async fn get_data(&self, path: &str, watch: bool) -> Result<(Vec<u8>, Stat), Error> {
        let (data, stat) = self.get_data_raw(path, watch).await?;
        Ok((data.unwrap_or_default(), stat))
    }

    /// getData (op 4), keeping null data (`None`) apart from empty data.
    pub async fn get_data_raw(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Vec<u8>>, Stat), Error> {
        let req = GetDataRequest {
            path: path.to_string(),
            watch,
        };
        let r: GetDataResponse = self.call_record(OpCode::GetData, &req).await?;
        Ok((r.data, r.stat))
    }

    /// setData (op 5).
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, Error> {
        let req = SetDataRequest {
            path: path.to_string(),
            data: Some(data.to_vec()),
            version,
        };
        let r: SetDataResponse = self.call_record(OpCode::SetData, &req).await?;
        Ok(r.stat)
    }

    /// getACL (op 6).
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        let req = GetAclRequest {
            path: path.to_string(),
        };
        let r: GetAclResponse = self.call_record(OpCode::GetAcl, &req).await?;
        Ok((r.acl, r.stat))
    }

    /// setACL (op 7); `version` is the ACL version (aversion).
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Error> {
        let req = SetAclRequest {
            path: path.to_string(),
            acl: acl.to_vec(),
            version,
        };
        let r: SetAclResponse = self.call_record(OpCode::SetAcl, &req).await?;
        Ok(r.stat)
    }

    /// getChildren (op 8). Order is whatever the server sent.
    pub async fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>, Error> {
        let req = GetChildrenRequest {
            path: path.to_string(),
            watch,
        };
        let r: GetChildrenResponse = self.call_record(OpCode::GetChildren, &req).await?;
        Ok(r.children)
    }

    /// getChildren2 (op 12): children plus the parent's Stat.
    pub async fn get_children2(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat), Error> {
        let req = GetChildren2Request {
            path: path.to_string(),
            watch,
        };
        let r: GetChildren2Response = self.call_record(OpCode::GetChildren2, &req).await?;
        Ok((r.children, r.stat))
    }

    /// sync (op 9): returns the path the server echoes.
    pub async fn sync(&self, path: &str) -> Result<String, Error> {
        let req = SyncRequest {
            path: path.to_string(),
        };
        let r: SyncResponse = self.call_record(OpCode::Sync, &req).await?;
        Ok(r.path)
    }

    /// check (op 13) sent on its own, outside a multi. The Java client never does this;
    /// it exists so tests can see how a server answers it. Apache ZooKeeper 3.8.0 answers
    /// a failing check (BadVersion, NoNode, BadArguments) but never answers a passing one
    /// (a NullPointerException in FinalRequestProcessor), so against it this hangs, and
    /// the next reply then drops the connection as out of order.
    pub async fn check(&self, path: &str, version: i32) -> Result<(), Error> {
        let req = CheckVersionRequest {
            path: path.to_string(),
            version,
        };
        self.call(OpCode::Check, req.to_bytes()).await?;
        Ok(())
    }

    /// multi (op 14). Returns the per-op results exactly as the server sent them; a
    /// failed transaction is still `Ok` (ZooKeeper reports it per op, with header err 0).
    /// Only a non-zero reply header error is `Err`.
    pub async fn multi(&self, ops: Vec<MultiOp>) -> Result<Vec<MultiResult>, Error> {
        self.multi_inner(OpCode::Multi, &ops).await
    }

    /// multiRead (op 22): getData/getChildren ops, each answered on its own.
    pub async fn multi_read(&self, ops: Vec<MultiOp>) -> Result<Vec<MultiResult>, Error> {
        self.multi_inner(OpCode::MultiRead, &ops).await
    }

    async fn multi_inner(&self, op: OpCode, ops: &[MultiOp]) -> Result<Vec<MultiResult>, Error> {
        let mut w = Writer::new();
        encode_multi_ops(ops, &mut w);
        let body = self.call(op, w.into_inner()).await?;
        Ok(decode_multi_results(&mut Reader::new(&body))?)
    }

    // ---- auth, watches, session ----------------------------------------------------

    /// Sends an auth packet (xid -4). AUTHFAILED comes back as
    /// `Err(Keeper(AuthFailed))`, moves the state to AuthFailed, and ZooKeeper then closes
    /// the connection.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), Error> {
        let pkt = AuthPacket {
            auth_type: 0,
            scheme: scheme.to_string(),
            auth: auth.to_vec(),
        };
        let rx = self.inner.shared.submit_auth(&pkt.to_bytes())?;
        self.wait(rx).await?;
        Ok(())
    }

    /// addWatch (op 106); `mode` from `add_watch_mode`.
    pub async fn add_watch(&self, path: &str, mode: i32) -> Result<(), Error> {
        let req = AddWatchRequest {
            path: path.to_string(),
            mode,
        };
        self.call(OpCode::AddWatch, req.to_bytes()).await?;
        Ok(())
    }

    /// removeWatches (op 18), sent to the server without the Java client's local check;
    /// `watcher_type` from `watcher_type`.
    pub async fn remove_watches(&self, path: &str, watcher_type: i32) -> Result<(), Error> {
        let req = RemoveWatchesRequest {
            path: path.to_string(),
            watcher_type,
        };
        self.call(OpCode::RemoveWatches, req.to_bytes()).await?;
        Ok(())
    }

    /// checkWatches (op 17), sent to the server without a local check.
    pub async fn check_watches(&self, path: &str, watcher_type: i32) -> Result<(), Error> {
        let req = CheckWatchesRequest {
            path: path.to_string(),
            watcher_type,
        };
        self.call(OpCode::CheckWatches, req.to_bytes()).await?;
        Ok(())
    }

    /// setWatches2 (op 105, xid -8): re-registers watches, typically right after resuming
    /// a session. `relative_zxid` overrides `watches.relative_zxid`; the server fires at
    /// once any watch whose node changed after it.
    pub async fn set_watches(
        &self,
        relative_zxid: i64,
        mut watches: SetWatches2,
    ) -> Result<(), Error> {
        watches.relative_zxid = relative_zxid;
        let rx = self.inner.shared.submit_with_xid(
            xid::SET_WATCHES,
            OpCode::SetWatches2 as i32,
            &watches.to_bytes(),
        )?;
        let (h, _) = self.wait(rx).await?;
        check_err(&h)
    }

    /// getEphemerals (op 103): this session's ephemeral nodes under `prefix`.
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let req = GetEphemeralsRequest {
            prefix_path: prefix.to_string(),
        };
        let r: GetEphemeralsResponse = self.call_record(OpCode::GetEphemerals, &req).await?;
        Ok(r.ephemerals)
    }

    /// getAllChildrenNumber (op 104): number of descendants, not counting `path`.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, Error> {
        let req = GetAllChildrenNumberRequest {
            path: path.to_string(),
        };
        let r: GetAllChildrenNumberResponse =
            self.call_record(OpCode::GetAllChildrenNumber, &req).await?;
        Ok(r.total_number)
    }

    /// whoAmI (op 107): the identities this session is authenticated as.
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, Error> {
        let body = self.call(OpCode::WhoAmI, Vec::new()).await?;
        Ok(decode::<WhoAmIResponse>(&body)?.client_info)
    }

    /// closeSession (op -11): waits for the reply (bounded by the negotiated timeout),
    /// then drops the socket. Afterwards the state is Closed and requests fail with
    /// SessionExpired. Closing a closed client is Ok; closing after the connection was
    /// lost returns that loss's error (the session is then left to expire).
    pub async fn close(&self) -> Result<(), Error> {
        let shared = &self.inner.shared;
        if shared.state() == SessionState::Closed {
            return Ok(());
        }
        let rx = shared.submit_close()?;
        let wait = tokio::time::timeout(self.negotiated_timeout().max(Duration::from_secs(1)), rx);
        let result = match wait.await {
            Ok(Ok(Ok((h, _)))) => check_err(&h),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::ConnectionLoss),
            Err(_) => Err(Error::Timeout),
        };
        shared.finish_close();
        result
    }
}

fn create_request(path: &str, data: &[u8], acl: &[Acl], mode: CreateMode) -> CreateRequest {
    CreateRequest {
        path: path.to_string(),
        data: Some(data.to_vec()),
        acl: acl.to_vec(),
        flags: mode.flag(),
    }
}
