//! The transports between zkd servers: the election channel (ZooKeeper's
//! `QuorumCnxManager` on the electionPort) and the quorum channel (ZooKeeper's
//! `Learner`/`LearnerHandler` sockets on the quorumPort).
//!
//! Owns: the TCP connections with the other configured servers, their handshakes, the
//! framing, the bounded outbound queues, the allow-list check on inbound connections, the
//! detection of broken quorum streams and the counters for `mntr`. The host hands every
//! zab `Output::Send { to, msg }` to [`QuorumTransport::send`] and feeds every
//! [`TransportEvent`] back into zab (`Message` → `Zab::step`, `Disconnected` →
//! `Zab::disconnected`).
//!
//! Never: interprets a zab message beyond `Message::is_election` (which picks the channel)
//! and the codec's own validation; decides anything about the protocol (who leads, when to
//! give up on a peer: zab's ticks do that); binds a socket (the host passes the listeners);
//! blocks or awaits in [`QuorumTransport::send`].
//!
//! # Connections
//!
//! Every connection is one-way: the dialler writes messages, the acceptor reads them. Each
//! server dials at most one connection per peer per channel, lazily on the first send, so
//! a pair of servers has up to four connections (A→B and B→A on each channel); the two
//! directions of a "quorum stream" are A's outbound plus A's inbound from B. The dialler
//! still reads its socket so that it notices at once when the acceptor closes it (any byte
//! received there is a protocol violation).
//!
//! # Wire layout (all integers big-endian)
//!
//! ```text
//! handshake, sent by the dialler right after connect; the acceptor answers with the same
//! 15 bytes carrying *its* id ("ack") only if it accepts, and closes without a word if not
//!   +0  u32  magic 0x7A6B4451 ("zkdQ")
//!   +4  u16  wire version = 1
//!   +6  u8   channel: 1 = election, 2 = quorum (must match the port it arrives on)
//!   +7  u64  sender's server id (myid)
//!
//! then, dialler → acceptor only, frames:
//!   +0  u32  n = length of the body
//!   +4  n    body: zkd_zab::message::encode(msg)   (its first byte repeats the channel)
//! ```
//!
//! The acceptor accepts a handshake only if the magic and version match, the channel is
//! the listener's, the id is a configured peer other than ourselves, and the TCP source IP
//! is one of the IPs of that peer's configured addresses or of
//! `TransportOptions::extra_allowed_ips` (an unknown server must never join:
//! CVE-2018-8012). Outbound sockets are not bound to a source IP, so a multi-homed server
//! connects from whichever interface routes to the peer: list all its IPs there. The
//! dialler accepts the ack only if it carries the id it meant to reach (a port pointing at
//! the wrong server is a dial failure, not a stream). At most `max_pending_handshakes`
//! inbound connections may be in their handshake at once, each for at most
//! `handshake_timeout`; more are closed on accept.
//!
//! Frame limits: a quorum body may be at most `max_message_bytes + FRAME_OVERHEAD`, an
//! election body at most [`ELECTION_FRAME_MAX`]. A larger length, a body that does not
//! decode, a message of the other channel, or EOF inside a frame closes the connection with
//! a log line naming the peer ("poison packet"). Bodies are read incrementally, the
//! buffer at most doubling ahead of the bytes received (from 64 KiB) and never past the
//! frame's length, so a hostile length costs at most 64 KiB until its bytes arrive.
//!
//! # Quorum streams: reliable FIFO or reported broken
//!
//! A quorum stream with peer P is the set of quorum connections registered for P (at most
//! one outbound, one inbound). When any of them fails (IO error, EOF, poison frame, write
//! stall, outbound queue overflow, or P opening a new inbound connection while the old one
//! is still registered, which means P saw the old one break), all of them are dropped
//! together, queued messages are discarded, and exactly one
//! [`TransportEvent::Disconnected`] is emitted. The events channel is the only path to the
//! host and every delivery checks, under the same lock as the teardown, that its connection
//! is still registered, so no message of a broken stream is delivered after its
//! `Disconnected`, and messages of a later stream come after it. Dropping our side makes
//! the peer see EOF, so both ends report the break.
//!
//! Dial failures are not breaks: messages stay queued and the dial is retried with
//! exponential backoff until it succeeds, the queue overflows (a break) or the host calls
//! [`QuorumTransport::disconnect`].
//!
//! [`QuorumTransport::disconnect`] (the host's reaction to zab's `RoleChanged`) drops the
//! stream *without* emitting `Disconnected`: the host already knows, and a late
//! `Disconnected` could be mistaken by zab for the break of the stream it opens next. Events
//! already in the channel when the host calls it are still delivered.
//!
//! # Host wiring
//!
//! ```text
//! event loop:  TransportEvent::Message { from, msg } → zab.step(from, msg)
//!              TransportEvent::Disconnected { peer } → zab.disconnected(peer)
//! zab.ready(), in order:
//!              Output::Send { to, msg }             → transport.send(to, &msg)
//!              Output::RoleChanged { role, .. }     → transport.disconnect_all() if `role`
//!                                                     differs from the previous one (not
//!                                                     when only `serving` changes: that
//!                                                     would cut the stream just synced)
//! exit:        transport.shutdown()
//! ```
//!
//! zab emits `RoleChanged` before the sends of the new role (e.g. FOLLOWERINFO), so
//! executing outputs in order never discards them.
//!
//! # Election connections
//!
//! Best effort, as fast leader election expects: the outbound queue keeps at most
//! `election_queue_max_messages` and drops the oldest beyond that (ZooKeeper's
//! `addToSendQueue` does the same); a broken connection is re-dialled while messages are
//! queued; nothing is reported to the host.
//!
//! # Writes
//!
//! TCP_NODELAY on every socket. A writer drains its whole queue at once and copies the
//! frames into one buffer per `write`, up to 256 KiB (bodies of 64 KiB and more are
//! written from their own buffer after their head, to avoid copying snapshots). A write that makes no progress for `write_stall_timeout`
//! breaks the connection.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zkd_zab::{Message, ServerId};

#[cfg(test)]
mod tests;

/// First four bytes of every handshake: "zkdQ".
pub const MAGIC: u32 = 0x7A6B_4451;
/// Version of the handshake and framing described in the module header.
pub const WIRE_VERSION: u16 = 1;
/// Length of a handshake (and of its ack).
pub const HANDSHAKE_LEN: usize = 15;
/// Bytes zab's codec adds around a quorum packet's data (channel, type, zxid, length).
pub const FRAME_OVERHEAD: usize = 17;
/// Largest election body accepted (a notification encodes to 41 bytes).
pub const ELECTION_FRAME_MAX: usize = 64;
/// Bodies at least this big are written from their own buffer instead of being copied
/// into the batch buffer.
const BIG_BODY: usize = 64 * 1024;

/// The two addresses of a peer, from `server.N=host:quorumPort:electionPort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddrs {
    pub quorum: SocketAddr,
    pub election: SocketAddr,
}

impl PeerAddrs {
    /// Resolves `host` (blocking DNS: call it at start-up or from `spawn_blocking`).
    /// Returns the addresses of its first IP and every IP it resolves to, the latter for
    /// [`TransportOptions::extra_allowed_ips`]: a multi-homed peer may connect from any
    /// of them.
    pub fn resolve(
        host: &str,
        quorum_port: u16,
        election_port: u16,
    ) -> io::Result<(PeerAddrs, Vec<IpAddr>)> {
        use std::net::ToSocketAddrs;
        let mut ips: Vec<IpAddr> = (host, quorum_port)
            .to_socket_addrs()?
            .map(|a| a.ip().to_canonical())
            .collect();
        let mut seen = std::collections::HashSet::new();
        ips.retain(|ip| seen.insert(*ip));
        let first = *ips.first().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            )
        })?;
        let addrs = PeerAddrs {
            quorum: SocketAddr::new(first, quorum_port),
            election: SocketAddr::new(first, election_port),
        };
        Ok((addrs, ips))
    }

    fn addr(&self, ch: Channel) -> SocketAddr {
        match ch {
            Channel::Election => self.election,
            Channel::Quorum => self.quorum,
        }
    }
}

/// What the transport reports to the host, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    Message {
        from: ServerId,
        msg: Message,
    },
    /// The quorum stream with `peer` broke: call `Zab::disconnected(peer)`.
    Disconnected {
        peer: ServerId,
    },
}

/// Which transport a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Election = 1,
    Quorum = 2,
}

impl Channel {
    fn of(msg: &Message) -> Channel {
        if msg.is_election() {
            Channel::Election
        } else {
            Channel::Quorum
        }
    }

    fn from_byte(b: u8) -> Option<Channel> {
        match b {
            1 => Some(Channel::Election),
            2 => Some(Channel::Quorum),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Election => "election",
            Channel::Quorum => "quorum",
        })
    }
}

/// Tunables. The defaults suit a production ensemble; tests shrink them.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Cap on the data of one zab message (zab's `Config::max_message_bytes`).
    pub max_message_bytes: usize,
    /// Connect plus handshake of an outbound connection.
    pub connect_timeout: Duration,
    /// Time an inbound connection has to send its handshake.
    pub handshake_timeout: Duration,
    /// Inbound connections allowed in their handshake at once; more are closed at once.
    pub max_pending_handshakes: usize,
    /// A write making no progress for this long breaks the connection.
    pub write_stall_timeout: Duration,
    /// First re-dial delay after a failed dial; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Outbound quorum queue caps per peer; exceeding either breaks the stream. One
    /// message is always accepted into an empty queue, whatever its size. The batch being
    /// written is no longer counted, so a peer can pin up to about twice the byte cap.
    pub quorum_queue_max_messages: usize,
    pub quorum_queue_max_bytes: usize,
    /// Outbound election queue cap per peer; the oldest is dropped beyond it.
    pub election_queue_max_messages: usize,
    /// Source IPs accepted for a peer on top of the IPs of its [`PeerAddrs`] (all the IPs
    /// its configured host name resolves to, see [`PeerAddrs::resolve`]).
    pub extra_allowed_ips: HashMap<ServerId, Vec<IpAddr>>,
    /// Capacity of the events channel to the host. Full means back-pressure on the
    /// inbound connections (they stop reading).
    pub event_capacity: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            max_message_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 64,
            write_stall_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(50),
            // ZooKeeper's learner retries its leader connection every second; a longer
            // cap would delay elections after a peer restarts.
            backoff_max: Duration::from_secs(1),
            quorum_queue_max_messages: 100_000,
            quorum_queue_max_bytes: 256 << 20,
            election_queue_max_messages: 16,
            extra_allowed_ips: HashMap::new(),
            event_capacity: 1024,
        }
    }
}

/// A snapshot of the transport's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportMetrics {
    /// Messages / bytes (frames, length prefix included) written to sockets.
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// Messages / bytes read from sockets and decoded.
    pub messages_received: u64,
    pub bytes_received: u64,
    /// Election messages dropped (queue full, or too large).
    pub election_dropped: u64,
    /// Quorum streams broken because an outbound queue overflowed.
    pub quorum_overflows: u64,
    /// Sends to an id that is not a configured peer.
    pub unroutable: u64,
    /// Inbound handshakes refused (bad magic/version/channel, unknown id, wrong IP).
    pub handshakes_refused: u64,
    /// Connections closed for a bad frame (oversized, undecodable, wrong channel). A frame
    /// cut short by EOF is an ordinary break, not counted here.
    pub poison_frames: u64,
    /// Failed dials (connect, handshake or ack).
    pub dial_failures: u64,
    /// `Disconnected` events emitted.
    pub disconnects_reported: u64,
    /// Established connections right now, both channels, both directions.
    pub connections: u64,
}

#[derive(Default)]
struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    election_dropped: AtomicU64,
    quorum_overflows: AtomicU64,
    unroutable: AtomicU64,
    handshakes_refused: AtomicU64,
    poison_frames: AtomicU64,
    dial_failures: AtomicU64,
    disconnects_reported: AtomicU64,
    connections: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// An outbound connection: its queue lives here, under the state lock, so that `send`
/// and the teardown of a stream are atomic with respect to each other.
struct OutConn {
    id: u64,
    task: u64,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    notify: Arc<Notify>,
    connected: bool,
}

struct InConn {
    id: u64,
    task: u64,
}

struct Backoff {
    delay: Duration,
    next_dial: Option<Instant>,
}

struct PeerLinks {
    q_out: Option<OutConn>,
    q_in: Option<InConn>,
    e_out: Option<OutConn>,
    e_in: Option<InConn>,
    /// A break whose `Disconnected` could not be queued yet (events channel full); it is
    /// emitted before any later message of this peer's quorum stream.
    pending_disconnect: bool,
    backoff: [Backoff; 2],
}

impl PeerLinks {
    fn new(min: Duration) -> Self {
        let b = || Backoff {
            delay: min,
            next_dial: None,
        };
        PeerLinks {
            q_out: None,
            q_in: None,
            e_out: None,
            e_in: None,
            pending_disconnect: false,
            backoff: [b(), b()],
        }
    }

    fn out(&mut self, ch: Channel) -> &mut Option<OutConn> {
        match ch {
            Channel::Election => &mut self.e_out,
            Channel::Quorum => &mut self.q_out,
        }
    }

    fn inb(&mut self, ch: Channel) -> &mut Option<InConn> {
        match ch {
            Channel::Election => &mut self.e_in,
            Channel::Quorum => &mut self.q_in,
        }
    }

    fn backoff(&mut self, ch: Channel) -> &mut Backoff {
        &mut self.backoff[ch as usize - 1]
    }
}

struct State {
    peers: HashMap<ServerId, PeerLinks>,
    /// None once shut down.
    events: Option<mpsc::Sender<TransportEvent>>,
}

struct Inner {
    my_id: ServerId,
    addrs: HashMap<ServerId, PeerAddrs>,
    allowed: HashMap<ServerId, Vec<IpAddr>>,
    opts: TransportOptions,
    rt: tokio::runtime::Handle,
    state: Mutex<State>,
    /// Every task we spawned, so that teardown and shutdown can abort them. None once
    /// shut down. Lock order: `state` before `tasks`.
    tasks: Mutex<Option<HashMap<u64, AbortHandle>>>,
    next_id: AtomicU64,
    /// Inbound connections still in their handshake (`max_pending_handshakes`).
    handshake_slots: Arc<tokio::sync::Semaphore>,
    /// Wakes the flusher when a `Disconnected` is pending.
    flush: Notify,
    c: Counters,
}

/// Handle on the transport; clones share it. [`QuorumTransport::shutdown`] stops it, and
/// so does dropping the last handle.
#[derive(Clone)]
pub struct QuorumTransport {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

/// Shared by the handles only (tasks hold `Inner`), so its drop means "no handle left".
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        shutdown(&self.0);
    }
}

impl fmt::Debug for QuorumTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuorumTransport")
            .field("my_id", &self.inner.my_id)
            .finish_non_exhaustive()
    }
}

impl QuorumTransport {
    /// Starts the transport on the current tokio runtime. `peers` are all the other
    /// servers (an entry for `my_id` is ignored). Binds nothing itself: the listeners are
    /// already bound (tests use port 0).
    pub fn start(
        my_id: ServerId,
        mut peers: HashMap<ServerId, PeerAddrs>,
        quorum_listener: TcpListener,
        election_listener: TcpListener,
        opts: TransportOptions,
    ) -> (QuorumTransport, mpsc::Receiver<TransportEvent>) {
        peers.remove(&my_id);
        let (tx, rx) = mpsc::channel(opts.event_capacity.max(1));
        let allowed = peers
            .iter()
            .map(|(&id, a)| {
                let mut ips = vec![a.quorum.ip(), a.election.ip()];
                ips.extend(opts.extra_allowed_ips.get(&id).into_iter().flatten());
                let mut ips: Vec<IpAddr> = ips.into_iter().map(|ip| ip.to_canonical()).collect();
                ips.sort_unstable();
                ips.dedup();
                (id, ips)
            })
            .collect();
        let links = peers
            .keys()
            .map(|&id| (id, PeerLinks::new(opts.backoff_min)))
            .collect();
        let slots = opts.max_pending_handshakes.max(1);
        let inner = Arc::new(Inner {
            my_id,
            addrs: peers,
            allowed,
            opts,
            rt: tokio::runtime::Handle::current(),
            state: Mutex::new(State {
                peers: links,
                events: Some(tx.clone()),
            }),
            tasks: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
            handshake_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            flush: Notify::new(),
            c: Counters::default(),
        });
        for (listener, ch) in [
            (quorum_listener, Channel::Quorum),
            (election_listener, Channel::Election),
        ] {
            let acceptor = Acceptor {
                listener,
                _events: tx.clone(),
            };
            let i = inner.clone();
            inner.spawn(move |_| accept_loop(i, acceptor, ch));
        }
        let i = inner.clone();
        inner.spawn(move |_| flusher(i, tx));
        let owner = Arc::new(Owner(inner.clone()));
        (
            QuorumTransport {
                inner,
                _owner: owner,
            },
            rx,
        )
    }

    /// Queues `msg` for `to` on the channel `msg.is_election()` picks. Never blocks.
    /// Election messages beyond the queue cap drop the oldest queued one; a quorum queue
    /// overflow breaks the stream (reported as `Disconnected`).
    pub fn send(&self, to: ServerId, msg: &Message) {
        let inner = &self.inner;
        if !inner.addrs.contains_key(&to) {
            bump(&inner.c.unroutable, 1);
            warn!(
                peer = to,
                msg = msg.name(),
                "send to a server that is not a configured peer; dropped"
            );
            return;
        }
        let ch = Channel::of(msg);
        let body = zkd_zab::encode(msg);
        let mut st = inner.state.lock();
        if st.events.is_none() {
            return;
        }
        if body.len() > inner.frame_limit(ch) {
            warn!(
                peer = to,
                msg = msg.name(),
                len = body.len(),
                "message exceeds max_message_bytes; dropped"
            );
            match ch {
                Channel::Election => bump(&inner.c.election_dropped, 1),
                // The peer would refuse it as poison anyway; a silent drop would break FIFO.
                Channel::Quorum => inner.quorum_break(&mut st, to, "message too large", true),
            }
            return;
        }
        let links = st
            .peers
            .get_mut(&to)
            .expect("every configured peer has links");
        if links.out(ch).is_none() {
            let id = inner.fresh_id();
            let notify = Arc::new(Notify::new());
            let i = inner.clone();
            let task = inner.spawn(move |_| run_outbound(i, to, ch, id));
            *links.out(ch) = Some(OutConn {
                id,
                task,
                queue: VecDeque::new(),
                queued_bytes: 0,
                notify,
                connected: false,
            });
        }
        let out = links.out(ch).as_mut().expect("just ensured");
        match ch {
            Channel::Election => {
                if out.queue.len() >= inner.opts.election_queue_max_messages.max(1) {
                    if let Some(old) = out.queue.pop_front() {
                        out.queued_bytes -= old.len();
                    }
                    bump(&inner.c.election_dropped, 1);
                }
            }
            Channel::Quorum => {
                let full = out.queue.len() >= inner.opts.quorum_queue_max_messages.max(1)
                    || (!out.queue.is_empty()
                        && out.queued_bytes + body.len() > inner.opts.quorum_queue_max_bytes);
                if full {
                    bump(&inner.c.quorum_overflows, 1);
                    inner.quorum_break(&mut st, to, "outbound queue overflow", true);
                    return;
                }
            }
        }
        out.queued_bytes += body.len();
        out.queue.push_back(body);
        out.notify.notify_one();
    }

    /// Drops the quorum connections with `peer` and discards what is queued for it,
    /// without reporting `Disconnected` (the host asked). The peer sees the connections
    /// close and reports the break on its side. The next `send` dials a new stream.
    pub fn disconnect(&self, peer: ServerId) {
        let mut st = self.inner.state.lock();
        self.inner
            .quorum_break(&mut st, peer, "closed by this server", false);
    }

    /// [`QuorumTransport::disconnect`] for every peer.
    pub fn disconnect_all(&self) {
        let mut st = self.inner.state.lock();
        let peers: Vec<ServerId> = st.peers.keys().copied().collect();
        for p in peers {
            self.inner
                .quorum_break(&mut st, p, "closed by this server", false);
        }
    }

    /// Closes every connection and both listeners and stops every task (aborted tasks
    /// close their sockets as the runtime drops them, right after). The events receiver
    /// yields `None` once the listeners and the inbound connections are closed. Later
    /// sends are ignored.
    pub fn shutdown(&self) {
        shutdown(&self.inner);
    }

    /// Current counters.
    pub fn metrics(&self) -> TransportMetrics {
        let c = &self.inner.c;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportMetrics {
            messages_sent: g(&c.messages_sent),
            bytes_sent: g(&c.bytes_sent),
            messages_received: g(&c.messages_received),
            bytes_received: g(&c.bytes_received),
            election_dropped: g(&c.election_dropped),
            quorum_overflows: g(&c.quorum_overflows),
            unroutable: g(&c.unroutable),
            handshakes_refused: g(&c.handshakes_refused),
            poison_frames: g(&c.poison_frames),
            dial_failures: g(&c.dial_failures),
            disconnects_reported: g(&c.disconnects_reported),
            connections: g(&c.connections),
        }
    }
}

/// [`QuorumTransport::shutdown`], also run when the last handle is dropped.
fn shutdown(inner: &Inner) {
    {
        let mut st = inner.state.lock();
        if st.events.take().is_none() {
            return;
        }
        for links in st.peers.values_mut() {
            *links = PeerLinks::new(inner.opts.backoff_min);
        }
    }
    let tasks = inner.tasks.lock().take().unwrap_or_default();
    for h in tasks.values() {
        h.abort();
    }
    inner.c.connections.store(0, Ordering::Relaxed);
    info!(my_id = inner.my_id, "quorum transport shut down");
}

/// Removes its task from the registry when the task ends or is aborted.
struct TaskGuard {
    inner: Arc<Inner>,
    key: u64,
    /// Set before the removal, so that `spawn` does not register a task that already
    /// ended (see there).
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.finished.store(true, Ordering::SeqCst);
        if let Some(t) = self.inner.tasks.lock().as_mut() {
            t.remove(&self.key);
        }
    }
}

impl Inner {
    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn frame_limit(&self, ch: Channel) -> usize {
        match ch {
            Channel::Election => ELECTION_FRAME_MAX,
            Channel::Quorum => self.opts.max_message_bytes.saturating_add(FRAME_OVERHEAD),
        }
    }

    /// Spawns a registered task; `f` gets the task's key. After shutdown nothing is
    /// spawned (the key is still returned, it just names no task).
    fn spawn<F, Fut>(self: &Arc<Self>, f: F) -> u64
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let key = self.fresh_id();
        if self.tasks.lock().is_none() {
            return key;
        }
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = TaskGuard {
            inner: self.clone(),
            key,
            finished: finished.clone(),
        };
        let fut = f(key);
        // Not under the tasks lock: a runtime that is shutting down drops the future
        // (and its guard, which takes that lock) inside `spawn`.
        let h = self.rt.spawn(async move {
            let _guard = guard;
            fut.await
        });
        // The guard sets `finished` before taking the lock to remove the entry, so either
        // we see it set and skip the insert, or its removal runs after our insert.
        let mut tasks = self.tasks.lock();
        match tasks.as_mut() {
            Some(t) if !finished.load(Ordering::SeqCst) => {
                t.insert(key, h.abort_handle());
            }
            Some(_) => {}
            // Shut down meanwhile: shutdown() could not see this task.
            None => h.abort(),
        }
        key
    }

    fn abort_task(&self, key: u64) {
        let h = self.tasks.lock().as_mut().and_then(|t| t.remove(&key));
        if let Some(h) = h {
            h.abort();
        }
    }

    fn drop_out(&self, conn: Option<OutConn>) {
        if let Some(c) = conn {
            if c.connected {
                self.c.connections.fetch_sub(1, Ordering::Relaxed);
            }
            self.abort_task(c.task);
        }
    }

    fn drop_in(&self, conn: Option<InConn>) {
        if let Some(c) = conn {
            self.c.connections.fetch_sub(1, Ordering::Relaxed);
            self.abort_task(c.task);
        }
    }

    /// Tears down the quorum stream with `peer` (see the module header); with `report`,
    /// emits its one `Disconnected`.
    fn quorum_break(&self, st: &mut State, peer: ServerId, reason: &str, report: bool) {
        let Some(links) = st.peers.get_mut(&peer) else {
            return;
        };
        self.drop_out(links.q_out.take());
        self.drop_in(links.q_in.take());
        if !report {
            // The host reset its view of this peer; an older unreported break is moot.
            links.pending_disconnect = false;
            debug!(peer, reason, "quorum connections closed");
            return;
        }
        info!(peer, reason, "quorum stream broken");
        if links.pending_disconnect {
            return; // nothing of the peer was delivered since: one event covers both
        }
        if let Some(tx) = &st.events {
            match tx.try_send(TransportEvent::Disconnected { peer }) {
                Ok(()) => bump(&self.c.disconnects_reported, 1),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    links.pending_disconnect = true;
                    self.flush.notify_one();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// A registered connection of ours failed: a break for quorum, a re-dial for election.
    /// Returns true if an election writer should dial again.
    fn conn_failed(&self, peer: ServerId, ch: Channel, dir: Dir, conn: u64, reason: &str) -> bool {
        let mut st = self.state.lock();
        let Some(links) = st.peers.get_mut(&peer) else {
            return false;
        };
        let registered = match dir {
            Dir::Out => links.out(ch).as_ref().is_some_and(|c| c.id == conn),
            Dir::In => links.inb(ch).as_ref().is_some_and(|c| c.id == conn),
        };
        if !registered {
            return false; // already torn down with its stream
        }
        // A peer that accepts and then drops us at once must not make us spin.
        let b = links.backoff(ch);
        b.next_dial = Some(Instant::now() + self.opts.backoff_min);
        match (ch, dir) {
            (Channel::Quorum, _) => {
                self.quorum_break(&mut st, peer, reason, true);
                false
            }
            (Channel::Election, Dir::In) => {
                debug!(peer, reason, "inbound election connection closed");
                let c = links.e_in.take();
                self.drop_in(c);
                false
            }
            (Channel::Election, Dir::Out) => {
                debug!(
                    peer,
                    reason, "outbound election connection closed; will re-dial"
                );
                let c = links.e_out.as_mut().expect("registered");
                if c.connected {
                    c.connected = false;
                    self.c.connections.fetch_sub(1, Ordering::Relaxed);
                }
                true
            }
        }
    }

    /// The outbound connection `conn` finished its handshake. False if it was torn down
    /// meanwhile (the caller drops the socket).
    fn mark_connected(&self, peer: ServerId, ch: Channel, conn: u64) -> bool {
        let mut st = self.state.lock();
        let Some(links) = st.peers.get_mut(&peer) else {
            return false;
        };
        let Some(c) = links.out(ch).as_mut().filter(|c| c.id == conn) else {
            return false;
        };
        c.connected = true;
        bump(&self.c.connections, 1);
        let b = links.backoff(ch);
        b.delay = self.opts.backoff_min;
        b.next_dial = None;
        true
    }

    fn dial_failed(&self, peer: ServerId, ch: Channel, err: &io::Error) {
        bump(&self.c.dial_failures, 1);
        let mut st = self.state.lock();
        let Some(links) = st.peers.get_mut(&peer) else {
            return;
        };
        let b = links.backoff(ch);
        // Log the first failure of a series loudly, the retries quietly.
        if b.delay <= self.opts.backoff_min {
            warn!(peer, channel = %ch, error = %err, "cannot connect to peer; retrying with backoff");
        } else {
            debug!(peer, channel = %ch, error = %err, "re-dial failed");
        }
        b.next_dial = Some(Instant::now() + b.delay);
        b.delay = (b.delay * 2).min(self.opts.backoff_max);
    }

    /// Takes everything queued on `conn`. None if `conn` is no longer registered.
    #[allow(clippy::type_complexity)]
    fn take_batch(
        &self,
        peer: ServerId,
        ch: Channel,
        conn: u64,
    ) -> Option<(VecDeque<Vec<u8>>, Arc<Notify>)> {
        let mut st = self.state.lock();
        let c = st
            .peers
            .get_mut(&peer)?
            .out(ch)
            .as_mut()
            .filter(|c| c.id == conn)?;
        c.queued_bytes = 0;
        Some((std::mem::take(&mut c.queue), c.notify.clone()))
    }

    /// Whether `conn`'s queue is empty, and its wake-up. None if `conn` is no longer
    /// registered.
    fn out_status(&self, peer: ServerId, ch: Channel, conn: u64) -> Option<(bool, Arc<Notify>)> {
        let mut st = self.state.lock();
        let c = st
            .peers
            .get_mut(&peer)?
            .out(ch)
            .as_ref()
            .filter(|c| c.id == conn)?;
        Some((c.queue.is_empty(), c.notify.clone()))
    }

    fn next_dial(&self, peer: ServerId, ch: Channel) -> Option<Instant> {
        let mut st = self.state.lock();
        st.peers.get_mut(&peer)?.backoff(ch).next_dial
    }

    /// Registers an accepted, handshaken inbound connection. Returns the events sender,
    /// or None after shutdown.
    fn register_inbound(
        &self,
        peer: ServerId,
        ch: Channel,
        conn: u64,
        task: u64,
    ) -> Option<mpsc::Sender<TransportEvent>> {
        let mut st = self.state.lock();
        let tx = st.events.clone()?;
        let links = st.peers.get_mut(&peer)?;
        match ch {
            Channel::Quorum => {
                if links.q_in.is_some() {
                    // The peer dialled again: it saw its old connection break. Whatever
                    // the old one still holds must not be delivered before the new one.
                    self.quorum_break(&mut st, peer, "peer opened a new quorum connection", true);
                }
            }
            Channel::Election => {
                let old = links.e_in.take();
                self.drop_in(old);
            }
        }
        let links = st.peers.get_mut(&peer)?;
        *links.inb(ch) = Some(InConn { id: conn, task });
        bump(&self.c.connections, 1);
        Some(tx)
    }

    /// Hands `msg` to the host if `conn` is still registered; false if it is not (the
    /// reader stops). The registration check and the push happen under the state lock,
    /// so a teardown is either before (nothing delivered) or after (delivered first).
    async fn deliver(
        &self,
        tx: &mpsc::Sender<TransportEvent>,
        peer: ServerId,
        ch: Channel,
        conn: u64,
        msg: Message,
    ) -> bool {
        let mut msg = Some(msg);
        loop {
            let Ok(permit) = tx.reserve().await else {
                return false;
            };
            let mut st = self.state.lock();
            let Some(links) = st.peers.get_mut(&peer) else {
                return false;
            };
            if links.inb(ch).as_ref().map(|c| c.id) != Some(conn) {
                return false;
            }
            if ch == Channel::Quorum && links.pending_disconnect {
                links.pending_disconnect = false;
                permit.send(TransportEvent::Disconnected { peer });
                bump(&self.c.disconnects_reported, 1);
                continue;
            }
            let msg = msg.take().expect("sent once");
            permit.send(TransportEvent::Message { from: peer, msg });
            return true;
        }
    }

    /// Why an inbound handshake is refused, if it is.
    fn check_handshake(
        &self,
        hs: &[u8; HANDSHAKE_LEN],
        ch: Channel,
        from: IpAddr,
    ) -> Result<ServerId, String> {
        let (id, their_ch) = parse_handshake(hs)?;
        if their_ch != ch {
            return Err(format!("{their_ch} handshake on the {ch} port"));
        }
        if id == self.my_id {
            return Err(format!("claims our own id {id}"));
        }
        let Some(ips) = self.allowed.get(&id) else {
            return Err(format!("unknown server id {id}"));
        };
        if !ips.contains(&from.to_canonical()) {
            return Err(format!(
                "server id {id} is configured at {ips:?}, not at {from}"
            ));
        }
        Ok(id)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    In,
    Out,
}

/// Builds a handshake (or ack) for `id` on `ch`.
pub fn handshake(id: ServerId, ch: Channel) -> [u8; HANDSHAKE_LEN] {
    let mut b = [0u8; HANDSHAKE_LEN];
    b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&WIRE_VERSION.to_be_bytes());
    b[6] = ch as u8;
    b[7..15].copy_from_slice(&id.to_be_bytes());
    b
}

fn parse_handshake(b: &[u8; HANDSHAKE_LEN]) -> Result<(ServerId, Channel), String> {
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#010x}"));
    }
    let version = u16::from_be_bytes([b[4], b[5]]);
    if version != WIRE_VERSION {
        return Err(format!("unsupported wire version {version}"));
    }
    let ch = Channel::from_byte(b[6]).ok_or_else(|| format!("unknown channel {}", b[6]))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[7..15]);
    Ok((u64::from_be_bytes(id), ch))
}

/// Owns a listener and a clone of the events sender, declared in this order so that the
/// listener is closed before the host can see the channel close.
struct Acceptor {
    listener: TcpListener,
    _events: mpsc::Sender<TransportEvent>,
}

async fn accept_loop(inner: Arc<Inner>, acceptor: Acceptor, ch: Channel) {
    loop {
        match acceptor.listener.accept().await {
            Ok((stream, from)) => {
                // Unauthenticated sockets are cheap to open: cap how many may sit in the
                // handshake at once so that a flood cannot exhaust memory or tasks.
                let Ok(slot) = inner.handshake_slots.clone().try_acquire_owned() else {
                    bump(&inner.c.handshakes_refused, 1);
                    warn!(%from, channel = %ch, "refused connection: too many pending handshakes");
                    continue;
                };
                let i = inner.clone();
                inner.spawn(move |key| inbound(i, stream, from, ch, key, slot));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(channel = %ch, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Emits the `Disconnected` events that did not fit in the events channel when their
/// stream broke.
async fn flusher(inner: Arc<Inner>, tx: mpsc::Sender<TransportEvent>) {
    loop {
        inner.flush.notified().await;
        loop {
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            let mut st = inner.state.lock();
            let Some((&peer, links)) = st.peers.iter_mut().find(|(_, l)| l.pending_disconnect)
            else {
                break;
            };
            links.pending_disconnect = false;
            permit.send(TransportEvent::Disconnected { peer });
            bump(&inner.c.disconnects_reported, 1);
        }
    }
}

#[derive(Debug)]
enum FrameError {
    Io(io::Error),
    TooLarge(usize),
    Truncated,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            FrameError::Truncated => f.write_str("connection closed inside a frame"),
        }
    }
}

/// Reads one frame; Ok(None) on EOF at a frame boundary.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    if r.read(&mut len[..1]).await.map_err(FrameError::Io)? == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..])
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            _ => FrameError::Io(e),
        })?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge(len));
    }
    // Grow with the bytes that actually arrive (a lying length costs nothing up front),
    // doubling but never past `len` (a 64 MiB snapshot must not take 128 MiB).
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        if body.len() == body.capacity() {
            body.reserve_exact((len - body.len()).min(body.len().max(BIG_BODY)));
        }
        let want = (len - body.len()) as u64;
        // `take` keeps the read inside this frame; the spare capacity keeps `read_buf`
        // from growing the vector on its own.
        let n = (&mut *r)
            .take(want)
            .read_buf(&mut body)
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(body))
}

async fn inbound(
    inner: Arc<Inner>,
    mut stream: TcpStream,
    from: SocketAddr,
    ch: Channel,
    task: u64,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let mut hs = [0u8; HANDSHAKE_LEN];
    match tokio::time::timeout(inner.opts.handshake_timeout, stream.read_exact(&mut hs)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            bump(&inner.c.handshakes_refused, 1);
            warn!(%from, channel = %ch, error = %e, "refused connection: no handshake");
            return;
        }
        Err(_) => {
            bump(&inner.c.handshakes_refused, 1);
            warn!(%from, channel = %ch, "refused connection: handshake timed out");
            return;
        }
    }
    let peer = match inner.check_handshake(&hs, ch, from.ip()) {
        Ok(p) => p,
        Err(why) => {
            bump(&inner.c.handshakes_refused, 1);
            warn!(%from, channel = %ch, "refused connection: {why}");
            return;
        }
    };
    drop(slot); // authenticated: no longer a pending handshake
    let conn = inner.fresh_id();
    let Some(tx) = inner.register_inbound(peer, ch, conn, task) else {
        return;
    };
    debug!(peer, %from, channel = %ch, "accepted connection");
    let ack = handshake(inner.my_id, ch);
    let acked = tokio::time::timeout(inner.opts.handshake_timeout, stream.write_all(&ack)).await;
    if !matches!(acked, Ok(Ok(()))) {
        inner.conn_failed(peer, ch, Dir::In, conn, "could not send the handshake ack");
        return;
    }
    let limit = inner.frame_limit(ch);
    let mut rd = BufReader::with_capacity(BIG_BODY, stream);
    loop {
        let body = match read_frame(&mut rd, limit).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                inner.conn_failed(peer, ch, Dir::In, conn, "closed by peer");
                return;
            }
            Err(e) => {
                // A peer that dies or drops us mid-write leaves a truncated frame: a
                // break, not an attack. Only a length above the limit is poison here.
                if matches!(e, FrameError::TooLarge(_)) {
                    bump(&inner.c.poison_frames, 1);
                    warn!(peer, channel = %ch, "closing connection: {e}");
                }
                inner.conn_failed(peer, ch, Dir::In, conn, &e.to_string());
                return;
            }
        };
        let n = body.len() as u64 + 4;
        let msg = match zkd_zab::decode(&body, inner.opts.max_message_bytes) {
            Ok(m) if Channel::of(&m) == ch => m,
            Ok(m) => {
                bump(&inner.c.poison_frames, 1);
                warn!(peer, channel = %ch, msg = m.name(), "closing connection: message of the other channel");
                inner.conn_failed(peer, ch, Dir::In, conn, "message of the other channel");
                return;
            }
            Err(e) => {
                bump(&inner.c.poison_frames, 1);
                warn!(peer, channel = %ch, error = %e, "closing connection: undecodable frame");
                inner.conn_failed(peer, ch, Dir::In, conn, "undecodable frame");
                return;
            }
        };
        bump(&inner.c.messages_received, 1);
        bump(&inner.c.bytes_received, n);
        if !inner.deliver(&tx, peer, ch, conn, msg).await {
            return;
        }
    }
}

async fn dial(inner: &Inner, peer: ServerId, ch: Channel) -> io::Result<TcpStream> {
    let addr = inner.addrs[&peer].addr(ch);
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&handshake(inner.my_id, ch)).await?;
        let mut ack = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut ack).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("no handshake ack (refused by {addr}?): {e}"),
            )
        })?;
        let (id, their_ch) =
            parse_handshake(&ack).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if id != peer || their_ch != ch {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{addr} answered as server {id} on the {their_ch} channel"),
            ));
        }
        Ok(s)
    };
    match tokio::time::timeout(inner.opts.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {addr} timed out"),
        )),
    }
}

/// The task behind one outbound connection: dials (with backoff) while something is
/// queued, then writes. A quorum writer ends with its stream; an election writer re-dials.
async fn run_outbound(inner: Arc<Inner>, peer: ServerId, ch: Channel, conn: u64) {
    loop {
        let Some((empty, notify)) = inner.out_status(peer, ch, conn) else {
            return;
        };
        if empty {
            notify.notified().await;
            continue;
        }
        if let Some(at) = inner.next_dial(peer, ch) {
            tokio::time::sleep_until(at).await;
        }
        let stream = match dial(&inner, peer, ch).await {
            Ok(s) => s,
            Err(e) => {
                inner.dial_failed(peer, ch, &e);
                continue;
            }
        };
        if !inner.mark_connected(peer, ch, conn) {
            return;
        }
        debug!(peer, channel = %ch, "connected");
        let reason = write_loop(&inner, peer, ch, conn, stream).await;
        if !inner.conn_failed(peer, ch, Dir::Out, conn, &reason) {
            return;
        }
    }
}

/// Writes batches until the connection fails or is torn down; returns why it ended.
async fn write_loop(
    inner: &Inner,
    peer: ServerId,
    ch: Channel,
    conn: u64,
    stream: TcpStream,
) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let mut probe = [0u8; 1];
    loop {
        let Some((batch, notify)) = inner.take_batch(peer, ch, conn) else {
            return "closed by this server".into();
        };
        if batch.is_empty() {
            tokio::select! {
                _ = notify.notified() => continue,
                r = rd.read(&mut probe) => return match r {
                    Ok(0) => "closed by peer".into(),
                    Ok(_) => "peer wrote on a one-way connection".into(),
                    Err(e) => e.to_string(),
                },
            }
        }
        let n = batch.len() as u64;
        let bytes: u64 = batch.iter().map(|b| b.len() as u64 + 4).sum();
        if let Err(e) = write_batch(&mut wr, batch, &mut buf, inner.opts.write_stall_timeout).await
        {
            return e.to_string();
        }
        bump(&inner.c.messages_sent, n);
        bump(&inner.c.bytes_sent, bytes);
    }
}

async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: VecDeque<Vec<u8>>,
    buf: &mut Vec<u8>,
    stall: Duration,
) -> io::Result<()> {
    buf.clear();
    for body in &batch {
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        if body.len() >= BIG_BODY {
            // Flush what is batched plus the body's head (so the length prefix never
            // leaves alone in a tiny segment), then the rest straight from the body.
            let (head, tail) = body.split_at(BIG_BODY);
            buf.extend_from_slice(head);
            write_all_stall(wr, buf, stall).await?;
            buf.clear();
            write_all_stall(wr, tail, stall).await?;
        } else {
            buf.extend_from_slice(body);
            // Bound the copy: a long queue of small messages goes out in 256 KiB writes.
            if buf.len() >= 4 * BIG_BODY {
                write_all_stall(wr, buf, stall).await?;
                buf.clear();
            }
        }
    }
    write_all_stall(wr, buf, stall).await?;
    // Keep a one-off large buffer from pinning memory for the connection's lifetime.
    if buf.capacity() > 8 * BIG_BODY {
        *buf = Vec::new();
    }
    Ok(())
}

/// `write_all` that fails when a single write makes no progress for `stall` (a peer
/// that stopped reading), yet lets a big snapshot take as long as it keeps moving.
async fn write_all_stall<W: AsyncWrite + Unpin>(
    wr: &mut W,
    data: &[u8],
    stall: Duration,
) -> io::Result<()> {
    let mut off = 0;
    while off < data.len() {
        match tokio::time::timeout(stall, wr.write(&data[off..])).await {
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => off += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(())
}
