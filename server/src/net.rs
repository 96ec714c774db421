//! The client listener (ZooKeeper's NIOServerCnxnFactory/NIOServerCnxn) on tokio.
//!
//! Owns sockets: accepting, framing (length prefix capped by jute.maxbuffer), recognising
//! four-letter words on a fresh connection, and writing what the core emits in the order
//! it emits it. Never decides anything about requests: every frame goes to `Core`.
//!
//! One task reads each connection; the core sits behind a mutex and is called with the
//! frame, and the outputs it produces are pushed to per-connection writer queues while the
//! lock is held, so the order the core decided is the order on every socket.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use zkd_proto::records::{ConnectRequest, RequestHeader};
use zkd_proto::{Reader, Record};

use crate::config::Config;
use crate::core::{Core, Output};
use crate::fourlw;
use crate::persist::{self, LogAppender, Persistence};
use crate::tree::FastMap;
use crate::watch::ConnId;

/// The wall clock in ms since the epoch (txn times, what clients see as ctime/mtime).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The server's clock for everything but txn times: monotonic, never decreasing, and
/// equal to the wall clock when first read, so its values still look like epoch ms (and
/// session ids, which take their high bits from it, stay spread out as ZooKeeper's do).
/// A step of the wall clock (NTP, an operator) moves no session expiry or timeout; before
/// this, a backward step of 60 s kept dead sessions' ephemerals for 60 s too long (found
/// by the Jepsen sessions workload under the clock-wall nemesis).
pub fn now_ms() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<(std::time::Instant, i64)> = OnceLock::new();
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let (start, wall_at_start) = *START.get_or_init(|| (std::time::Instant::now(), wall_ms()));
    let now = wall_at_start + start.elapsed().as_millis() as i64;
    // Instant saturates rather than going back, but two threads may read it in either
    // order; hand out a never-decreasing value.
    LAST.fetch_max(now, Ordering::Relaxed).max(now)
}

enum Out {
    Frame(Vec<u8>),
    Close,
}

/// Bytes a connection may have queued for sending before it is treated as a slow reader
/// and closed: replies and notifications must not grow without bound for a client that
/// stopped reading. 32 MiB is 32 maximum-size replies.
pub const MAX_OUTBOUND_BYTES: usize = 32 << 20;

struct WriterHandle {
    tx: mpsc::UnboundedSender<Out>,
    /// The connection's socket, for direct sends (see `send_frames`).
    fd: std::os::fd::RawFd,
    queued: Arc<AtomicUsize>,
    closed: bool,
}

pub struct Shared {
    pub core: Mutex<Core>,
    writers: Mutex<FastMap<ConnId, WriterHandle>>,
    next_conn: AtomicU64,
    /// Where Persist outputs go (set once the syncer runs). Used under the core lock
    /// only, so its own mutex is never contended. What a `with_core` call appended is
    /// published to the syncer when the call ends (once per call, not once per txn).
    log: std::sync::OnceLock<Mutex<LogAppender>>,
    /// An ensemble server's transport, epoch files and storage (set before zab runs).
    pub ensemble: std::sync::OnceLock<crate::ensemble::EnsembleIo>,
}

impl Shared {
    /// Runs `f` on the core and routes its outputs (and zab's) while still holding the
    /// lock, until neither has anything left to say; then sends the replies, in order,
    /// once the core lock is released.
    pub fn with_core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        let mut deliveries = Vec::new();
        let mut core = self.core.lock();
        let r = f(&mut core);
        self.route(&mut core, &mut deliveries);
        self.wake_log();
        if deliveries.is_empty() {
            return r;
        }
        // The writers lock is taken before the core lock is let go: whoever takes the
        // core next and has replies of its own waits for it, so each connection still
        // gets its replies in the order the core emitted them, while the core is free
        // for requests during these sends.
        let mut writers = self.writers.lock();
        drop(core);
        for d in deliveries {
            match d {
                Delivery::Frames(conn, bytes) => send_frames(&mut writers, conn, bytes),
                Delivery::Close(conn) => {
                    if let Some(w) = writers.get_mut(&conn) {
                        w.closed = true;
                        let _ = w.tx.send(Out::Close);
                    }
                }
            }
        }
        r
    }

    fn wake_log(&self) {
        if let Some(log) = self.log.get() {
            log.lock().publish();
        }
    }

    fn route(&self, core: &mut Core, deliveries: &mut Vec<Delivery>) {
        if core.zab.is_none() {
            let mut outs = core.take_output();
            if !outs.is_empty() {
                self.route_client_outputs(core, &mut outs, deliveries);
            }
            // The emptied vector goes back for the next call's outputs: taking the
            // core's outputs otherwise leaves it a fresh vector to grow every time.
            core.recycle_output(outs);
            return;
        }
        crate::ensemble::route(self, core, now_ms(), |core, mut outs| {
            self.route_client_outputs(core, &mut outs, deliveries)
        });
    }

    /// The frames one call holds for one connection are concatenated into one buffer
    /// (in the order the core emitted them), so a batch of replies (a pipelined burst of
    /// reads, or every txn covered by one fsync) costs each connection one send instead
    /// of one per reply. Order per connection is unchanged; a Close follows the frames
    /// emitted before it, and frames emitted after it are dropped, as the connection is
    /// closing.
    fn route_client_outputs(
        &self,
        core: &mut Core,
        outs: &mut Vec<Output>,
        deliveries: &mut Vec<Delivery>,
    ) {
        for o in outs.drain(..) {
            match o {
                Output::Send { conn, frame } => {
                    // Usually few connections per call, so a linear scan beats hashing.
                    let mut found = false;
                    for d in deliveries.iter_mut().rev() {
                        match d {
                            Delivery::Frames(c, buf) if *c == conn => {
                                buf.extend_from_slice(&frame);
                                found = true;
                                break;
                            }
                            Delivery::Close(c) if *c == conn => {
                                found = true;
                                break;
                            }
                            _ => {}
                        }
                    }
                    if !found {
                        deliveries.push(Delivery::Frames(conn, frame));
                    }
                }
                Output::Close { conn } => deliveries.push(Delivery::Close(conn)),
                // Appended while the core lock is held, so the log sees txns in zxid order.
                Output::Persist { zxid, txn } => self.append_to_log(zxid, &txn),
                o @ (Output::Propose { .. } | Output::Forward { .. } | Output::Sync { .. }) => {
                    crate::ensemble::to_zab(core, o, now_ms())
                }
            }
        }
    }

    /// Appends a txn to the log. Called under the core lock only, so txns reach the
    /// log in zxid order.
    fn append_to_log(&self, zxid: i64, txn: &[u8]) {
        let log = self.log.get().expect("a durable core has a log");
        log.lock().append(zxid, txn);
    }
}

impl crate::ensemble::EnsembleHost for Shared {
    fn append(&self, zxid: i64, payload: Vec<u8>) {
        self.append_to_log(zxid, &payload);
    }

    fn truncate_log(&self, after: i64) -> Result<(), String> {
        // After the earlier appends, which it publishes first (as the appender thread
        // did): called under the core lock, as every append is.
        let log = self.log.get().ok_or("no log")?;
        log.lock().truncate_after(after)
    }

    fn io(&self) -> &crate::ensemble::EnsembleIo {
        self.ensemble
            .get()
            .expect("an ensemble server has its IO set up before zab runs")
    }
}

/// What one core call has for a connection, in emission order.
enum Delivery {
    /// Whole frames, concatenated.
    Frames(ConnId, Vec<u8>),
    Close(ConnId),
}

/// Sends `bytes` (whole frames) to `conn`, or closes a connection whose client stopped
/// reading.
///
/// When nothing is queued for the connection, the bytes go straight to its socket from
/// the calling thread (a non-blocking send); only what the socket does not take is
/// queued for its writer task. A reply then costs no wake-up of the writer task, which
/// for a reply sent by the log syncer was a wake-up of the runtime's worker too: with
/// one synchronous client that was one of the two context switches the network thread
/// paid per create.
fn send_frames(writers: &mut FastMap<ConnId, WriterHandle>, conn: ConnId, mut bytes: Vec<u8>) {
    let Some(w) = writers.get_mut(&conn) else {
        return;
    };
    if w.closed {
        return;
    }
    // Nothing queued means the writer task has written everything it was given: a
    // direct send cannot overtake it. (Only holders of the writers lock queue.)
    if w.queued.load(Ordering::Acquire) == 0 {
        match send_now(w.fd, &bytes) {
            Some(n) if n == bytes.len() => return,
            Some(n) => {
                bytes.drain(..n);
            }
            None => {}
        }
    }
    let queued = w.queued.fetch_add(bytes.len(), Ordering::AcqRel);
    if queued + bytes.len() > MAX_OUTBOUND_BYTES {
        tracing::warn!(
            "closing connection {conn}: more than {MAX_OUTBOUND_BYTES} bytes queued for a client that does not read"
        );
        w.closed = true;
        let _ = w.tx.send(Out::Close);
    } else {
        let _ = w.tx.send(Out::Frame(bytes));
    }
}

/// One non-blocking send on a connection's socket: how many bytes it took, or None if
/// it took none (a full socket buffer, or an error, which the writer task then meets
/// and handles).
fn send_now(fd: std::os::fd::RawFd, bytes: &[u8]) -> Option<usize> {
    // SAFETY: `fd` is the connection's socket, open while its WriterHandle is in the
    // writers map (the connection's read half, which keeps it open, is dropped only
    // after the handle is removed, under the same lock this is called under); the
    // buffer is valid for its length. MSG_NOSIGNAL: a closed peer is an error, not a
    // signal.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    (n > 0).then_some(n as usize)
}

/// Quorum messages handed to zab per core call at most (a bound on the lock hold).
const ENSEMBLE_EVENTS_PER_CALL: usize = 64;

/// Serves clients on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Load before serving: connections wait in the backlog until the tree is back, so
    // nothing (not even ruok) is answered from a half-loaded server.
    let started = std::time::Instant::now();
    let (core, persistence) = persist::open(&config, now_ms())
        .map_err(|e| std::io::Error::other(format!("cannot load the data directory: {e}")))?;
    tracing::info!("data loaded in {:?}", started.elapsed());
    if config.is_distributed() {
        return serve_ensemble(listener, config, core, persistence, shutdown).await;
    }
    serve(listener, core, Some(persistence), shutdown).await
}

/// An ensemble server: the client listener as a standalone one has, plus the quorum and
/// election transport, zab's ticks, and zab's outputs carried out by `ensemble::execute`.
async fn serve_ensemble(
    listener: TcpListener,
    config: Config,
    core: Core,
    persistence: Persistence,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use crate::quorum::{PeerAddrs, QuorumTransport, TransportEvent, TransportOptions};
    let my_id = config
        .my_id
        .ok_or_else(|| std::io::Error::other("an ensemble server needs its myid"))?;
    let mut peers = HashMap::new();
    let mut mine = None;
    for s in &config.servers {
        let resolve = |port: u16| -> std::io::Result<SocketAddr> {
            use std::net::ToSocketAddrs;
            (s.host.as_str(), port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", s.host)))
        };
        let addrs = PeerAddrs {
            quorum: resolve(s.quorum_port)?,
            election: resolve(s.election_port)?,
        };
        if s.id == my_id {
            mine = Some(addrs);
        } else {
            peers.insert(s.id, addrs);
        }
    }
    let mine = mine.ok_or_else(|| std::io::Error::other("myid is not in the server.N list"))?;
    let quorum_listener = TcpListener::bind(mine.quorum).await.map_err(|e| {
        std::io::Error::other(format!("cannot listen on quorum port {}: {e}", mine.quorum))
    })?;
    let election_listener = TcpListener::bind(mine.election).await.map_err(|e| {
        std::io::Error::other(format!(
            "cannot listen on election port {}: {e}",
            mine.election
        ))
    })?;
    let max_message_bytes = crate::ensemble::zab_config(&config)
        .map_err(std::io::Error::other)?
        .max_message_bytes;
    let (transport, mut events) = QuorumTransport::start(
        my_id,
        peers.clone(),
        quorum_listener,
        election_listener,
        TransportOptions {
            max_message_bytes,
            ..TransportOptions::default()
        },
    );
    tracing::info!(
        "server {my_id}: quorum {} election {}, {} peers",
        mine.quorum,
        mine.election,
        peers.len()
    );
    let io = crate::ensemble::EnsembleIo {
        sender: Arc::new(transport.clone()),
        epochs: zkd_storage::EpochFiles::new(&config.data_dir),
        backend: persistence.backend.clone(),
        storage: persistence.storage.clone(),
        peers: peers.keys().copied().collect(),
    };
    let tick_ms = u64::from(config.tick_time_ms.max(1));
    let shared = new_shared(core);
    let _ = shared.ensemble.set(io);
    let appender = persist::start(&shared, persistence);
    let _ = shared.log.set(Mutex::new(appender));
    // Whatever zab wants to say at start (its first votes) goes out now.
    shared.with_core(|_| ());
    let event_loop = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let handle = |c: &mut Core, ev: TransportEvent| match ev {
                TransportEvent::Message { from, msg } => {
                    crate::ensemble::deliver(c, from, msg);
                }
                TransportEvent::Disconnected { peer } => {
                    if let Some(zab) = c.zab.as_mut() {
                        zab.disconnected(peer);
                    }
                }
            };
            while let Some(ev) = events.recv().await {
                // The messages already waiting go to zab in the same core call, so their
                // outputs go out together: a follower's replies to its clients for a run
                // of COMMITs leave in one send per connection (one call per message
                // sent each reply on its own: 0.7 sends per op under 64 x 4 setData),
                // and its ACKs in one quorum write. zab is IO-free: what it asks of the
                // host is queued in order and carried out, in that order, by `route`.
                shared.with_core(|c| {
                    handle(c, ev);
                    for _ in 1..ENSEMBLE_EVENTS_PER_CALL {
                        match events.try_recv() {
                            Ok(ev) => handle(c, ev),
                            Err(_) => break,
                        }
                    }
                });
            }
        })
    };
    let zab_ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(tick_ms));
            loop {
                iv.tick().await;
                shared.with_core(crate::ensemble::tick);
            }
        })
    };
    let r = accept_loop(shared, listener, shutdown).await;
    event_loop.abort();
    zab_ticker.abort();
    transport.shutdown();
    r
}

/// Serves clients with `core` until `shutdown` resolves; with `persistence`, writes go
/// through the log thread.
pub async fn serve(
    listener: TcpListener,
    core: Core,
    persistence: Option<Persistence>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = new_shared(core);
    if let Some(p) = persistence {
        let appender = persist::start(&shared, p);
        let _ = shared.log.set(Mutex::new(appender));
    }
    accept_loop(shared, listener, shutdown).await
}

fn new_shared(core: Core) -> Arc<Shared> {
    Arc::new(Shared {
        core: Mutex::new(core),
        writers: Mutex::new(FastMap::default()),
        next_conn: AtomicU64::new(1),
        log: std::sync::OnceLock::new(),
        ensemble: std::sync::OnceLock::new(),
    })
}

/// The core's ticker and the client accept loop, until `shutdown` resolves.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tick = {
        let core = shared.core.lock();
        Duration::from_millis((core.config.tick_time_ms as u64).clamp(10, 100))
    };
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(tick);
            loop {
                iv.tick().await;
                shared.with_core(|c| {
                    let now = now_ms();
                    c.set_wall_offset_ms(wall_ms() - now);
                    c.tick(now)
                });
            }
        })
    };
    tracing::info!("binding to port {}", listener.local_addr()?);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => {
                match acc {
                    Ok((stream, addr)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move { serve_connection(shared, stream, addr).await });
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
    ticker.abort();
    Ok(())
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (max_buffer, accepted) = {
        let mut core = shared.core.lock();
        let max = core.config.jute_max_buffer;
        (max, core.accept(conn, addr, now_ms()))
    };
    if !accepted {
        return;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let queued = Arc::new(AtomicUsize::new(0));
    shared.writers.lock().insert(
        conn,
        WriterHandle {
            tx: tx.clone(),
            fd,
            queued: queued.clone(),
            closed: false,
        },
    );
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        'outer: while let Some(first) = rx.recv().await {
            let mut close = false;
            let mut next = Some(first);
            // The common case, one buffer queued: write it as it is (no copy).
            if let Some(Out::Frame(f)) = &next {
                if rx.is_empty() {
                    if wr.write_all(f).await.is_err() {
                        break 'outer;
                    }
                    let n = f.len();
                    let _ = queued.fetch_update(Ordering::Release, Ordering::Relaxed, |q| {
                        Some(q.saturating_sub(n))
                    });
                    continue;
                }
            }
            // Coalesce whatever is queued into one write.
            while let Some(o) = next.take() {
                match o {
                    Out::Frame(f) => buf.extend_from_slice(&f),
                    Out::Close => {
                        close = true;
                        break;
                    }
                }
                if buf.len() < 256 * 1024 {
                    next = rx.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                if wr.write_all(&buf).await.is_err() {
                    break 'outer;
                }
                let n = buf.len();
                let _ = queued.fetch_update(Ordering::Release, Ordering::Relaxed, |q| {
                    Some(q.saturating_sub(n))
                });
                buf.clear();
            }
            if close {
                break;
            }
        }
        let _ = wr.shutdown().await;
        let _ = closed_tx.send(());
    });

    let result = tokio::select! {
        r = read_loop(&shared, conn, &mut rd, max_buffer, &tx) => r,
        _ = &mut closed_rx => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!("connection {conn} from {addr} closed: {e}");
    }
    shared.with_core(|c| c.disconnected(conn));
    shared.writers.lock().remove(&conn);
    let _ = tx.send(Out::Close);
    drop(tx);
    let _ = writer.await;
}

/// A connection's read side: one buffer that each `recv` fills as far as it can, out of
/// which whole frames are cut, so a pipelining client costs one syscall for many requests
/// (instead of two per request) and its requests reach the core in one lock hold.
struct FrameReader {
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet.
    pos: usize,
    max_buffer: usize,
}

/// Largest read buffer kept between frames; a buffer starts at `READ_START` bytes (an
/// idle connection costs little) and doubles while the client keeps it full.
const READ_CHUNK: usize = 64 * 1024;
const READ_START: usize = 4 * 1024;

impl FrameReader {
    fn new(max_buffer: usize) -> Self {
        FrameReader {
            buf: Vec::with_capacity(READ_START),
            pos: 0,
            max_buffer,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes (at least one) from `rd`; EOF is an error.
    async fn fill(&mut self, rd: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<()> {
        if self.pos > 0 {
            // Move the unconsumed tail to the front so the buffer does not grow forever.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 2 * READ_CHUNK {
            // After a large frame: give the memory back.
            self.buf.shrink_to(READ_CHUNK);
        }
        let spare = self.buf.capacity() - self.buf.len();
        if spare < 512 {
            let cap = self.buf.capacity().clamp(READ_START, READ_CHUNK);
            self.buf.reserve(cap);
        }
        if rd.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Reads until `n` bytes are available.
    async fn fill_to(
        &mut self,
        rd: &mut (impl AsyncReadExt + Unpin),
        n: usize,
    ) -> std::io::Result<()> {
        while self.available().len() < n {
            if self.buf.capacity() < self.pos + n {
                self.buf.reserve(self.pos + n - self.buf.len());
            }
            self.fill(rd).await?;
        }
        Ok(())
    }

    /// The body range of the next whole frame in the buffer, if there is one; consumes it.
    fn next_frame(&mut self) -> std::io::Result<Option<std::ops::Range<usize>>> {
        let a = self.available();
        if a.len() < 4 {
            return Ok(None);
        }
        let len = zkd_proto::frame::check_frame_len([a[0], a[1], a[2], a[3]], self.max_buffer)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if a.len() < 4 + len {
            return Ok(None);
        }
        let start = self.pos + 4;
        self.pos = start + len;
        Ok(Some(start..start + len))
    }

    /// Reads until one whole frame is buffered (frame length checked first).
    async fn fill_frame(&mut self, rd: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<()> {
        loop {
            let a = self.available();
            let need = if a.len() >= 4 {
                let len =
                    zkd_proto::frame::check_frame_len([a[0], a[1], a[2], a[3]], self.max_buffer)
                        .map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                        })?;
                4 + len
            } else {
                4
            };
            if a.len() >= need {
                return Ok(());
            }
            // Room for the whole frame once its length is known.
            self.fill_to(rd, need).await?;
        }
    }

    /// Reads one whole frame and returns its body range.
    async fn read_frame(
        &mut self,
        rd: &mut (impl AsyncReadExt + Unpin),
    ) -> std::io::Result<std::ops::Range<usize>> {
        self.fill_frame(rd).await?;
        Ok(self.next_frame()?.expect("a whole frame is buffered"))
    }
}

fn bad_header(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad header: {e}"))
}

async fn read_loop(
    shared: &Arc<Shared>,
    conn: ConnId,
    rd: &mut (impl AsyncReadExt + Unpin),
    max_buffer: usize,
    tx: &mpsc::UnboundedSender<Out>,
) -> std::io::Result<()> {
    let mut fr = FrameReader::new(max_buffer);
    fr.fill_to(rd, 4).await?;
    let a = fr.available();
    let prefix = [a[0], a[1], a[2], a[3]];
    if let Ok(cmd) = std::str::from_utf8(&prefix) {
        if fourlw::is_command(cmd) {
            let allowed = shared.with_core(|c| c.config.four_letter_whitelist.allows(cmd));
            let text = if cmd == "stmk" && allowed {
                // stmk carries an 8-byte trace mask after the word.
                match fr.fill_to(rd, 12).await {
                    Ok(()) => {
                        let a = fr.available();
                        let mut mask = [0u8; 8];
                        mask.copy_from_slice(&a[4..12]);
                        shared.with_core(|c| {
                            fourlw::set_trace_mask(c, conn, i64::from_be_bytes(mask), now_ms())
                        })
                    }
                    Err(_) => shared.with_core(|c| fourlw::execute(c, conn, cmd, now_ms())),
                }
            } else {
                shared.with_core(|c| fourlw::execute(c, conn, cmd, now_ms()))
            };
            let _ = tx.send(Out::Frame(text.into_bytes()));
            let _ = tx.send(Out::Close);
            return Ok(());
        }
    }
    let first = fr.read_frame(rd).await?;
    let req = ConnectRequest::read(&mut Reader::new(&fr.buf[first])).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad ConnectRequest: {e}"),
        )
    })?;
    shared.with_core(|c| c.connect(conn, &req, now_ms()));
    let mut frames: Vec<std::ops::Range<usize>> = Vec::new();
    loop {
        // Every whole frame already buffered goes to the core in one lock hold.
        frames.clear();
        let mut bad = None;
        loop {
            match fr.next_frame() {
                Ok(Some(r)) => frames.push(r),
                Ok(None) => break,
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if !frames.is_empty() {
            let buf = &fr.buf;
            let now = now_ms();
            let err = shared.with_core(|c| {
                for r in frames.iter() {
                    let mut rdr = Reader::new(&buf[r.clone()]);
                    let header = match RequestHeader::read(&mut rdr) {
                        Ok(h) => h,
                        Err(e) => return Some(bad_header(e)),
                    };
                    c.request(conn, header.xid, header.op_type, rdr.rest(), now);
                }
                None
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
        if let Some(e) = bad {
            return Err(e);
        }
        fr.fill_frame(rd).await?;
    }
}
