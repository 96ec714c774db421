//! One connection: the handshake, the reader task, the writer task, and the shared state
//! they and the `Client` handles touch.
//!
//! Owns the socket. Never reconnects: when the socket goes, every pending request fails,
//! the state becomes Disconnected (or Closed/AuthFailed/Expired if that is why), and every
//! later request fails at once. Resuming is done one level up: by `session::ZooKeeper`,
//! or by a caller with a new `Client::connect_with` carrying the old session id and
//! password. Two hooks serve the session layer: a reply hook run in socket order (watch
//! registration) and an event sink that takes notifications instead of the channel.
//!
//! Ordering: a single reader task handles frames strictly in socket order, and it hands a
//! notification to the event channel before it completes any later reply's waiter. So a
//! watch event the server sent ahead of a reply is always in the event channel by the time
//! that reply's future resolves (ZooKeeper's ordering guarantee, as in ClientCnxn).
//!
//! Writes: requests are framed and queued to the writer task while holding the same lock
//! that assigns the xid and appends to the pending FIFO, so the socket order, the xid order
//! and the FIFO order are one and the same. The writer also sends pings (xid -2) after
//! `negotiated_timeout / 3` without sending anything, as ClientCnxn does, and the reader
//! gives up after `negotiated_timeout * 2 / 3` without receiving anything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zkd_proto::records::xid;
use zkd_proto::{ConnectRequest, ConnectResponse, ErrorCode, OpCode, Record, ReplyHeader};

use crate::error::Error;
use crate::event::{SessionState, WatchedEvent};
use crate::frame::{record_frame, request_frame, FrameReader};
use crate::pending::{classify, Incoming, PendingQueue, XidCounter};

/// A raw reply: its header and the bytes after it.
pub(crate) type ReplyResult = Result<(ReplyHeader, Vec<u8>), Error>;
type Waiter = oneshot::Sender<ReplyResult>;

/// Runs in the reader task when a reply arrives, before its waiter is completed and before
/// the next frame is read. The session layer registers watches this way, as ClientCnxn's
/// WatchRegistration does in finishPacket, so a notification that follows the reply on the
/// socket always finds its watcher registered.
pub(crate) type ReplyHook = Box<dyn FnOnce(&ReplyHeader) + Send>;

/// Where notifications go instead of the event channel (the session layer's watch manager).
/// Called in the reader task, in socket order; it must not block.
pub(crate) type EventSink = Arc<dyn Fn(WatchedEvent) + Send + Sync>;

/// What the handshake needs; filled from `ConnectOptions`.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeParams {
    pub addr: String,
    pub session_timeout: Duration,
    pub session: Option<(i64, Vec<u8>)>,
    pub last_zxid_seen: i64,
    pub read_only: bool,
    pub connect_timeout: Duration,
    pub max_frame_len: usize,
}

/// State shared by the `Client` handles and the two connection tasks.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    events_tx: mpsc::UnboundedSender<WatchedEvent>,
    sink: Option<EventSink>,
    state_tx: watch::Sender<SessionState>,
    last_zxid: AtomicI64,
    /// When the last frame arrived: the session layer counts the session timeout from
    /// here, as the server does, not from when the loss was noticed.
    last_heard: Mutex<Instant>,
    shutdown_tx: watch::Sender<bool>,
}

struct Inner {
    xids: XidCounter,
    pending: PendingQueue<(Waiter, Option<ReplyHook>)>,
    auth_waiters: VecDeque<Waiter>,
    /// `None` once the connection is gone: nothing more can be sent.
    writer: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// `close()` sent closeSession: refuse new requests, and end in Closed, not
    /// Disconnected, when the server then drops the socket.
    closing: bool,
}

/// A live connection: the shared state plus the tasks to stop when the client goes away.
pub(crate) struct Connection {
    pub shared: Arc<Shared>,
    pub response: ConnectResponse,
    pub events_rx: mpsc::UnboundedReceiver<WatchedEvent>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Opens the socket, runs the handshake, and starts the reader and writer tasks.
pub(crate) async fn establish(
    p: &HandshakeParams,
    sink: Option<EventSink>,
) -> Result<Connection, Error> {
    let (write_half, response, reader) =
        match tokio::time::timeout(p.connect_timeout, handshake(p)).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout),
        };

    let negotiated = Duration::from_millis(response.time_out as u64);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let state = if response.read_only {
        SessionState::ConnectedReadOnly
    } else {
        SessionState::Connected
    };
    let (state_tx, _) = watch::channel(state);
    let (shutdown_tx, _) = watch::channel(false);
    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            xids: XidCounter::default(),
            pending: PendingQueue::default(),
            auth_waiters: VecDeque::new(),
            writer: Some(writer_tx),
            closing: false,
        }),
        events_tx,
        sink,
        state_tx,
        last_zxid: AtomicI64::new(p.last_zxid_seen),
        last_heard: Mutex::new(Instant::now()),
        shutdown_tx,
    });
    let tasks = vec![
        tokio::spawn(reader_task(shared.clone(), reader, negotiated * 2 / 3)),
        tokio::spawn(writer_task(
            shared.clone(),
            write_half,
            writer_rx,
            negotiated / 3,
        )),
    ];
    Ok(Connection {
        shared,
        response,
        events_rx,
        tasks,
    })
}

type Handshake = (OwnedWriteHalf, ConnectResponse, FrameReader<OwnedReadHalf>);

async fn handshake(p: &HandshakeParams) -> Result<Handshake, Error> {
    let stream = TcpStream::connect(&p.addr).await?;
    // Requests are small and latency-bound; Nagle only delays them.
    stream.set_nodelay(true)?;
    let (read_half, mut write_half) = stream.into_split();
    let (session_id, passwd) = p.session.clone().unwrap_or((0, vec![0u8; 16]));
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: p.last_zxid_seen,
        time_out: p.session_timeout.as_millis().min(i32::MAX as u128) as i32,
        session_id,
        passwd,
        read_only: p.read_only,
        has_read_only: true,
    };
    write_half.write_all(&record_frame(&req)).await?;
    let mut reader = FrameReader::new(read_half, p.max_frame_len);
    let frame = match reader.read_frame().await {
        Ok(f) => f,
        // A server that refuses the handshake by hanging up (e.g. ZooKeeper when our
        // last_zxid_seen is ahead of it) is a connection loss, as ClientCnxn sees it.
        Err(Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Err(Error::ConnectionLoss)
        }
        Err(e) => return Err(e),
    };
    // A ZooKeeper server may refuse the handshake with a bare ReplyHeader (16 bytes, too
    // short for any ConnectResponse): a read-only server that cannot open the session
    // answers NotReadOnly that way.
    if frame.len() == 16 {
        if let Ok(h) = ReplyHeader::from_bytes(&frame) {
            if let Some(e) = Error::from_code(h.err) {
                return Err(e);
            }
        }
    }
    let response = ConnectResponse::from_bytes(&frame)?;
    // ClientCnxn.onConnected: a non-positive timeout means the server would not open (or
    // reopen) the session. A zero session id can only mean the same thing.
    if response.time_out <= 0 || response.session_id == 0 {
        return Err(Error::SessionExpired);
    }
    Ok((write_half, response, reader))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> SessionState {
        *self.state_tx.borrow()
    }

    pub fn subscribe_state(&self) -> watch::Receiver<SessionState> {
        self.state_tx.subscribe()
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid.load(Ordering::SeqCst)
    }

    pub fn last_heard(&self) -> Instant {
        *self.last_heard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error a request gets when it cannot be sent or its connection went away,
    /// chosen as ClientCnxn.conLossPacket does from the state.
    fn gone_error(&self) -> Error {
        match self.state() {
            SessionState::AuthFailed => Error::Keeper(ErrorCode::AuthFailed),
            SessionState::Closed | SessionState::Expired => Error::SessionExpired,
            _ => Error::ConnectionLoss,
        }
    }

    /// Queues a request with a fresh xid into the pending FIFO and the writer.
    pub fn submit(
        &self,
        op_type: i32,
        body: &[u8],
    ) -> Result<oneshot::Receiver<ReplyResult>, Error> {
        self.submit_inner(None, op_type, body, false, None)
    }

    /// Like `submit`, with a hook run in socket order when the reply arrives.
    pub fn submit_hooked(
        &self,
        op_type: i32,
        body: &[u8],
        hook: Option<ReplyHook>,
    ) -> Result<oneshot::Receiver<ReplyResult>, Error> {
        self.submit_inner(None, op_type, body, false, hook)
    }

    /// Queues a request with a fixed special xid (SetWatches' -8) into the FIFO.
    pub fn submit_with_xid(
        &self,
        xid: i32,
        op_type: i32,
        body: &[u8],
    ) -> Result<oneshot::Receiver<ReplyResult>, Error> {
        self.submit_inner(Some(xid), op_type, body, false, None)
    }

    /// Queues closeSession and marks the connection closing.
    pub fn submit_close(&self) -> Result<oneshot::Receiver<ReplyResult>, Error> {
        self.submit_inner(None, OpCode::CloseSession as i32, &[], true, None)
    }

    fn submit_inner(
        &self,
        fixed_xid: Option<i32>,
        op_type: i32,
        body: &[u8],
        close: bool,
        hook: Option<ReplyHook>,
    ) -> Result<oneshot::Receiver<ReplyResult>, Error> {
        let mut inner = self.lock();
        if inner.closing {
            return Err(self.gone_error());
        }
        let Some(writer) = inner.writer.clone() else {
            return Err(self.gone_error());
        };
        let xid = fixed_xid.unwrap_or_else(|| inner.xids.next());
        let (tx, rx) = oneshot::channel();
        inner.pending.push(xid, op_type, (tx, hook));
        if writer.send(request_frame(xid, op_type, body)).is_err() {
            // The writer is gone but the reader has not noticed yet.
            inner.pending.remove(xid);
            return Err(self.gone_error());
        }
        if close {
            inner.closing = true;
        }
        Ok(rx)
    }

    /// Queues an auth packet (xid -4). Its reply is matched from the auth queue, not the
    /// FIFO, because ZooKeeper may answer it ahead of earlier requests.
    pub fn submit_auth(&self, body: &[u8]) -> Result<oneshot::Receiver<ReplyResult>, Error> {
        let mut inner = self.lock();
        if inner.closing {
            return Err(self.gone_error());
        }
        let Some(writer) = inner.writer.clone() else {
            return Err(self.gone_error());
        };
        let (tx, rx) = oneshot::channel();
        inner.auth_waiters.push_back(tx);
        if writer
            .send(request_frame(xid::AUTH, OpCode::Auth as i32, body))
            .is_err()
        {
            inner.auth_waiters.pop_back();
            return Err(self.gone_error());
        }
        Ok(rx)
    }

    /// Handles one incoming frame. An error means the stream can no longer be trusted.
    fn dispatch(&self, frame: &[u8]) -> Result<(), Error> {
        match classify(frame)? {
            Incoming::Ping(_) => {}
            Incoming::Auth(h) => {
                let waiter = self.lock().auth_waiters.pop_front();
                let result = match Error::from_code(h.err) {
                    None => Ok((h, Vec::new())),
                    Some(e) => {
                        if h.err == ErrorCode::AuthFailed.code() {
                            self.state_tx.send_replace(SessionState::AuthFailed);
                        }
                        Err(e)
                    }
                };
                if let Some(w) = waiter {
                    let _ = w.send(result);
                }
            }
            Incoming::Notification(ev) => {
                // Not lastZxid: ClientCnxn does not advance it from notifications either.
                match &self.sink {
                    Some(sink) => sink(ev),
                    None => {
                        let _ = self.events_tx.send(ev);
                    }
                }
            }
            Incoming::Reply(h, body) => {
                let p = self.lock().pending.take_reply(h.xid)?;
                if h.zxid > 0 {
                    self.last_zxid.store(h.zxid, Ordering::SeqCst);
                }
                let (waiter, hook) = p.waiter;
                if let Some(hook) = hook {
                    hook(&h);
                }
                let _ = waiter.send(Ok((h, body)));
            }
        }
        Ok(())
    }

    /// The connection is gone (or being closed): settle the state, stop the tasks, and
    /// fail everything still waiting.
    pub fn lose(&self, why: &Error) {
        let (pending, auths) = {
            let mut inner = self.lock();
            inner.writer = None;
            let closing = inner.closing;
            self.state_tx.send_modify(|s| {
                *s = match *s {
                    _ if closing => SessionState::Closed,
                    s @ (SessionState::AuthFailed
                    | SessionState::Expired
                    | SessionState::Closed) => s,
                    _ => SessionState::Disconnected,
                }
            });
            let auths: Vec<_> = inner.auth_waiters.drain(..).collect();
            (inner.pending.drain(), auths)
        };
        if !pending.is_empty() || !auths.is_empty() {
            tracing::debug!(
                "connection lost ({why}); failing {} pending requests",
                pending.len() + auths.len()
            );
        }
        for p in pending {
            let _ = p.waiter.0.send(Err(self.gone_error()));
        }
        for w in auths {
            let _ = w.send(Err(self.gone_error()));
        }
        self.shutdown_tx.send_replace(true);
    }

    /// Marks the client closed after closeSession was answered (or gave up on).
    pub fn finish_close(&self) {
        self.lock().closing = true;
        self.lose(&Error::SessionExpired);
    }

    fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    // Err only if the sender is gone, which means the Shared is gone: stop as well.
    let _ = rx.wait_for(|v| *v).await;
}

async fn reader_task(
    shared: Arc<Shared>,
    mut reader: FrameReader<OwnedReadHalf>,
    read_timeout: Duration,
) {
    let mut shutdown = shared.shutdown_rx();
    let why = loop {
        let frame = tokio::select! {
            biased;
            _ = wait_shutdown(&mut shutdown) => return,
            r = tokio::time::timeout(read_timeout, reader.read_frame()) => r,
        };
        let frame = match frame {
            Err(_) => {
                break Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("nothing received for {read_timeout:?}"),
                ))
            }
            Ok(Err(e)) => break e,
            Ok(Ok(f)) => f,
        };
        *shared.last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if let Err(e) = shared.dispatch(&frame) {
            tracing::warn!("dropping connection: {e}");
            break e;
        }
    };
    shared.lose(&why);
}

async fn writer_task(
    shared: Arc<Shared>,
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    ping_interval: Duration,
) {
    let mut shutdown = shared.shutdown_rx();
    let ping = request_frame(xid::PING, OpCode::Ping as i32, &[]);
    let mut last_send = Instant::now();
    loop {
        let frame = tokio::select! {
            biased;
            _ = wait_shutdown(&mut shutdown) => break,
            m = rx.recv() => match m {
                Some(f) => f,
                None => break,
            },
            _ = tokio::time::sleep_until(last_send + ping_interval) => ping.clone(),
        };
        let res = tokio::select! {
            biased;
            _ = wait_shutdown(&mut shutdown) => break,
            r = w.write_all(&frame) => r,
        };
        if let Err(e) = res {
            shared.lose(&Error::Io(e));
            break;
        }
        last_send = Instant::now();
    }
    let _ = w.shutdown().await;
}
