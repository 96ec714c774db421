//! The request pipeline of a standalone server (ZooKeeper's ZooKeeperServer with its
//! Prep -> Sync -> Final processor chain), as a synchronous, IO-free state machine.
//!
//! Owns the tree, the sessions, per-connection state (identity, auth, counters) and the
//! order of everything a client sees. Inputs are calls (`accept`, `connect`, `request`,
//! `disconnected`, `tick`) with an explicit `now_ms`; outputs are `Output`s for the network
//! layer to send. It never touches a socket or a clock, so tests drive it step by step.
//!
//! The write path: a write is prepared into a txn (Prep), handed to the log as
//! `Output::Persist` (Sync), and applied only once the log reports it durable through
//! `synced(zxid)` (Final): the tree changes, notifications are queued to every watcher,
//! and only then the writer gets its reply, so a client always sees an event before any
//! reply that reflects the change. Without a log (`durable == false`, in-memory mode and
//! unit tests) txns are applied as soon as they are prepared.
//!
//! Ordering (ZooKeeper's CommitProcessor): replies to one connection leave in request
//! order. Consecutive writes of a session are prepared at once (pipelined); a read, or any
//! request after a read, waits until the session's earlier writes are applied, so a
//! session reads its own writes and never sees a later write before an earlier reply.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use zkd_proto::records::*;
use zkd_proto::request::{encode_multi_results, MultiOp, MultiResult};
use zkd_proto::txn::{TxnBody, TxnEntry};
use zkd_proto::{ErrorCode, OpCode, Record, Request, Writer};

use crate::acl::{authenticate, check_acl, client_infos};
use crate::config::Config;
use crate::prep::{Prep, PrepContext};
use crate::session::{session_password, SessionTracker};
use crate::tree::{
    ephemeral_type, ttl_of_owner, DataTree, EphemeralType, FastMap, Notification, TxnResult,
};
use crate::watch::{ConnId, WatchMode};

/// What the network layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a whole frame (length prefix included).
    Send { conn: ConnId, frame: Vec<u8> },
    /// Close the connection after what was sent before.
    Close { conn: ConnId },
    /// Append this txn (TxnEntry bytes) to the log; report back with `synced`.
    Persist { zxid: i64, txn: Vec<u8> },
    /// Leader: hand this txn to zab (`Zab::propose`, which must assign `zxid`); zab's
    /// Apply comes back through `committed`.
    Propose { zxid: i64, txn: Vec<u8> },
    /// Learner: send this client request to the leader (`Zab::submit_request`).
    Forward { payload: Vec<u8> },
    /// Ask zab for a `sync` barrier (`Zab::sync`); answer with `sync_done(id)`.
    Sync { id: u64 },
}

/// How this server's writes reach its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// One server: txns go to the local log (`Persist`/`synced`), or straight into the
    /// tree without one.
    Standalone,
    /// Leader of an established ensemble: prepares every write (its clients' and those
    /// learners forward), proposes the txn, applies it when zab commits it.
    Leader,
    /// Follower or observer: forwards writes to the leader, applies committed txns,
    /// serves reads locally. Never prepares a txn or expires a session.
    Learner,
    /// No established leader: clients are turned away.
    Unavailable,
}

/// A request waiting behind its session's uncommitted writes.
#[derive(Debug, Clone)]
struct Held {
    xid: i32,
    op_type: i32,
    body: Vec<u8>,
    received_ms: i64,
}

/// What waits for a zab `sync` barrier.
#[derive(Debug, Clone)]
enum SyncWaiter {
    /// A client's `sync` request.
    Request {
        conn: ConnId,
        xid: i32,
        path: String,
        received_ms: i64,
    },
    /// A learner's check that a session a client resumes is still alive (ZooKeeper's
    /// REVALIDATE): once every txn the leader had committed is applied here, the session
    /// table is as fresh as the leader's, so an expired session is gone from it.
    Revalidate {
        conn: ConnId,
        session_id: i64,
        timeout_ms: i32,
    },
}

/// Who must hear about a txn once it is applied.
#[derive(Debug, Clone)]
enum Origin {
    Client {
        conn: ConnId,
        xid: i32,
        /// The request's op code: all its reply needs besides the txn and its result
        /// (the request itself moved into the txn).
        op: OpCode,
        received_ms: i64,
    },
    /// A malformed write: ZooKeeper logs ErrorTxn(MARSHALLINGERROR) and answers with it.
    Malformed {
        conn: ConnId,
        xid: i32,
        received_ms: i64,
    },
    Connect {
        conn: ConnId,
        session_id: i64,
        timeout_ms: i32,
    },
    CloseSession {
        conn: ConnId,
        xid: i32,
        received_ms: i64,
    },
    Expire {
        conn: Option<ConnId>,
    },
    Reaper,
    /// A request a learner forwarded: the learner that holds the session answers.
    Remote,
}

#[derive(Debug, Clone)]
struct PendingTxn {
    txn: TxnEntry,
    origin: Origin,
}

/// What a snapshot brings back: the tree as of `zxid` and the sessions (id, timeout).
pub struct RestoredSnapshot {
    pub tree: DataTree,
    pub sessions: Vec<(i64, i32)>,
    pub zxid: i64,
}

/// Per-connection state (ServerCnxn).
#[derive(Debug, Clone)]
pub struct Conn {
    pub id: ConnId,
    pub addr: SocketAddr,
    pub session_id: i64,
    /// Shared so that a request takes a reference count, not a copy of every id (three
    /// allocations per request before).
    pub auth: Arc<Vec<Id>>,
    pub established_ms: i64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub last_cxid: i32,
    pub last_zxid: i64,
    pub last_op: &'static str,
    pub last_response_ms: i64,
    pub last_latency_ms: i64,
    pub min_latency_ms: i64,
    pub max_latency_ms: i64,
    pub total_latency_ms: i64,
    pub latency_count: u64,
    /// Txns of this connection prepared but not yet applied (counts the handshake's
    /// createSession too).
    pub outstanding_writes: u32,
    held: std::collections::VecDeque<Held>,
}

impl Conn {
    /// Requests received and not yet answered (cons/stat "queued").
    pub fn queued(&self) -> usize {
        self.outstanding_writes as usize + self.held.len()
    }
}

/// Server-wide counters for stat/srvr/mntr.
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub min_latency_ms: i64,
    pub max_latency_ms: i64,
    pub total_latency_ms: i64,
    pub latency_count: u64,
}

pub struct Core {
    pub config: Config,
    pub tree: DataTree,
    pub prep: Prep,
    pub sessions: SessionTracker,
    /// foldhash, as every map a request touches: each request looks its connection up
    /// several times.
    pub conns: FastMap<ConnId, Conn>,
    pub stats: ServerStats,
    pub started_ms: i64,
    /// Wall clock minus the `now_ms` the driver passes in. `now_ms` is a monotonic clock
    /// (session expiry, timeouts and latencies must not jump when NTP steps the wall
    /// clock; ZooKeeper uses Time.currentElapsedTime for them); txn times, which clients
    /// see as ctime/mtime, are wall clock (ZooKeeper's Time.currentWallTime). The driver
    /// refreshes it every tick; 0 (the default) makes the two the same, as tests want.
    wall_offset_ms: i64,
    out: Vec<Output>,
    /// Containers/TTL nodes deleted in the current minute (container.maxPerMinute).
    container_budget: (i64, u32),
    last_container_check_ms: i64,
    /// True when txns go through the log (`Output::Persist` + `synced`).
    pub durable: bool,
    pending: std::collections::VecDeque<PendingTxn>,
    /// Connections whose held requests may run again.
    to_drain: Vec<ConnId>,
    pub replication: Replication,
    /// Learner: requests forwarded to the leader, per session in order, each waiting for
    /// the committed txn with its (session, cxid).
    forwarded: HashMap<i64, std::collections::VecDeque<(i32, Origin)>>,
    /// `sync` requests waiting for zab's barrier: id -> (conn, xid, path, received).
    syncs: HashMap<u64, SyncWaiter>,
    next_sync_id: u64,
    /// Learner: sessions its clients touched since the last PING (id -> timeout).
    touched: HashMap<i64, i32>,
    /// Learner: the touches its previous PING answer carried, sent once more with the next
    /// (`ensemble::deliver`).
    pub(crate) prev_ping_touches: Vec<(i64, i32)>,
    /// Sessions this leader removed from its tracker when it prepared their closeSession,
    /// with their timeout and when: until that txn is applied. If leadership ends first,
    /// the txn may never commit, so they go back into the tracker (already due, so a
    /// leader expires them again) instead of living on forever, unexpired, in every
    /// tree (zkd-sim seeds 125, and 1 with a small zxid counter).
    closing: std::collections::BTreeMap<i64, (i32, i64)>,
    /// Ensemble: the sessions as of the applied txns (ZooKeeper's
    /// ZKDatabase.sessionsWithTimeouts), which snapshots carry. A leader's tracker also
    /// holds sessions whose createSession or closeSession is not committed yet.
    committed_sessions: std::collections::BTreeMap<i64, i32>,
    /// The ZAB state machine of an ensemble server (None when standalone). It lives in
    /// the core so that one lock orders client requests, proposals and commits.
    pub zab: Option<Box<zkd_zab::Zab>>,
    /// zab's last reported role and leader, for stat/srvr/mntr.
    pub ensemble_role: Option<zkd_zab::Role>,
    pub ensemble_leader: Option<zkd_zab::ServerId>,
}

/// Anything that can follow a ReplyHeader (object-safe, unlike `Record`).
pub trait Encode {
    fn encode(&self, w: &mut Writer);

    /// Bytes to reserve for the encoded body: enough for most bodies (a Stat is 68), so
    /// that a reply frame is allocated once rather than grown.
    fn size_hint(&self) -> usize {
        128
    }
}

impl<T: Record> Encode for T {
    fn encode(&self, w: &mut Writer) {
        self.write(w)
    }
}

struct MultiBody(Vec<MultiResult>);

impl Encode for MultiBody {
    fn encode(&self, w: &mut Writer) {
        encode_multi_results(&self.0, w)
    }
}

/// A multi's reply (MultiResponse) written straight from the applied sub-results: the
/// bytes `encode_multi_results` gives for their `MultiResult`s, without building a
/// `MultiResult` (and copying a path) per sub-op first.
struct MultiReply<'a>(&'a [TxnResult]);

impl Encode for MultiReply<'_> {
    fn encode(&self, w: &mut Writer) {
        let head = |w: &mut Writer, op: OpCode, err: i32| {
            MultiHeader {
                op_type: op as i32,
                done: false,
                err,
            }
            .write(w)
        };
        let stat = |w: &mut Writer, rc: &TxnResult| match &rc.stat {
            Some(s) => s.write(w),
            None => Stat::default().write(w),
        };
        for rc in self.0 {
            match OpCode::from_i32(rc.txn_type) {
                Some(OpCode::Check) => head(w, OpCode::Check, 0),
                Some(OpCode::Create) => {
                    head(w, OpCode::Create, 0);
                    w.write_ustring(&rc.path);
                }
                Some(OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer) => {
                    head(w, OpCode::Create2, 0);
                    w.write_ustring(&rc.path);
                    stat(w, rc);
                }
                Some(OpCode::Delete | OpCode::DeleteContainer) => head(w, OpCode::Delete, 0),
                Some(OpCode::SetData) => {
                    head(w, OpCode::SetData, 0);
                    stat(w, rc);
                }
                _ => {
                    head(w, OpCode::Error, rc.err);
                    w.write_i32(rc.err);
                }
            }
        }
        MultiHeader {
            op_type: -1,
            done: true,
            err: -1,
        }
        .write(w);
    }

    fn size_hint(&self) -> usize {
        // Per result at most a header (9), a Stat (68) and a path; then the end marker.
        16 + self.0.iter().map(|rc| 84 + rc.path.len()).sum::<usize>()
    }
}

/// A reply body that is only a path (create's CreateResponse), written from a borrowed
/// string.
struct PathBody<'a>(&'a str);

impl Encode for PathBody<'_> {
    fn encode(&self, w: &mut Writer) {
        w.write_ustring(self.0)
    }

    fn size_hint(&self) -> usize {
        4 + self.0.len()
    }
}

fn reply_frame(xid: i32, zxid: i64, err: i32, body: Option<&dyn Encode>) -> Vec<u8> {
    // Length prefix (4) and ReplyHeader (16), then the body.
    let mut w = Writer::with_capacity(20 + body.map_or(0, |b| b.size_hint()));
    w.write_i32(0);
    ReplyHeader { xid, zxid, err }.write(&mut w);
    if let Some(b) = body {
        b.encode(&mut w);
    }
    let len = (w.buf.len() - 4) as i32;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    w.into_inner()
}

impl Core {
    /// Sets the wall clock's offset from the `now_ms` passed to every other call (see
    /// `wall_offset_ms`).
    pub fn set_wall_offset_ms(&mut self, offset_ms: i64) {
        self.wall_offset_ms = offset_ms;
    }

    pub fn new(config: Config, now_ms: i64) -> Core {
        // Standalone ZooKeeper numbers sessions as server 1; in an ensemble each server uses
        // its myid, so ids minted by different servers never collide.
        let session_server_id = if config.is_distributed() {
            config.my_id.unwrap_or(1) as i64
        } else {
            1
        };
        let sessions = SessionTracker::new(config.tick_time_ms, now_ms, session_server_id);
        Core {
            config,
            tree: DataTree::new(),
            prep: Prep::new(0),
            sessions,
            conns: FastMap::default(),
            stats: ServerStats {
                min_latency_ms: i64::MAX,
                ..Default::default()
            },
            started_ms: now_ms,
            wall_offset_ms: 0,
            out: Vec::new(),
            container_budget: (0, 0),
            last_container_check_ms: now_ms,
            durable: false,
            pending: std::collections::VecDeque::new(),
            to_drain: Vec::new(),
            replication: Replication::Standalone,
            forwarded: HashMap::new(),
            syncs: HashMap::new(),
            next_sync_id: 1,
            touched: HashMap::new(),
            prev_ping_touches: Vec::new(),
            closing: Default::default(),
            committed_sessions: Default::default(),
            zab: None,
            ensemble_role: None,
            ensemble_leader: None,
        }
    }

    /// The ensemble role changed (zab's RoleChanged). Like ZooKeeper, which shuts its
    /// ZooKeeperServer down and starts a new one on every role change, every client
    /// connection is closed and every request in flight forgotten: clients reconnect and
    /// resume their sessions, which are global. The tree keeps only committed txns, so it
    /// stays; the prep stage restarts from it, with zxids from `leader_zxid_base` (the
    /// new epoch's zxid with counter 0) when leading.
    pub fn set_replication(
        &mut self,
        replication: Replication,
        leader_zxid_base: i64,
        now_ms: i64,
    ) {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for c in conns {
            if let Some(conn) = self.conns.get(&c) {
                if conn.session_id != 0 {
                    let sid = conn.session_id;
                    if self.sessions.get(sid).is_some_and(|s| s.conn == Some(c)) {
                        self.sessions.set_conn(sid, None);
                    }
                }
            }
            self.tree.remove_connection(c);
            self.close(c);
        }
        self.conns.clear();
        for (id, (timeout, when)) in std::mem::take(&mut self.closing) {
            if self.sessions.get(id).is_none() {
                self.sessions.add(id, timeout, when);
            }
        }
        // Sessions whose createSession is dropped here exist nowhere yet: stop tracking
        // them (a learner never expires sessions, so it kept them forever and accepted
        // their clients back: zkd-sim real seed 106). If the txn commits after all,
        // `committed` adds the session again.
        for p in &self.pending {
            if matches!(p.txn.body, TxnBody::CreateSession(_)) {
                self.sessions.remove(p.txn.header.client_id);
            }
        }
        for q in self.forwarded.values() {
            for (_, o) in q {
                if let Origin::Connect { session_id, .. } = o {
                    self.sessions.remove(*session_id);
                }
            }
        }
        self.pending.clear();
        self.forwarded.clear();
        self.syncs.clear();
        self.touched.clear();
        self.prev_ping_touches.clear();
        self.to_drain.clear();
        let base = match replication {
            Replication::Leader => leader_zxid_base,
            _ => self.tree.last_processed_zxid,
        };
        self.prep = Prep::new(base);
        if replication == Replication::Leader && self.replication != Replication::Leader {
            // A new leader starts every session's clock afresh, as ZooKeeper's new
            // LeaderSessionTracker does: as a learner it never saw most sessions' pings.
            let mut all: Vec<(i64, i32)> =
                self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
            // In id order: the touch order is the expiry order within a tick, and a
            // replayed run (the simulator) must expire sessions in the same order.
            all.sort_unstable();
            for (id, timeout) in all {
                self.sessions.touch(id, timeout, now_ms);
            }
        }
        self.replication = replication;
    }

    /// Learner: the sessions touched since the last call, for the next PING.
    pub fn take_session_touches(&mut self) -> Vec<(i64, i32)> {
        let mut v: Vec<_> = self.touched.drain().collect();
        v.sort();
        v
    }

    /// Leader: a learner's PING says these sessions are alive.
    pub fn touch_sessions(&mut self, touches: &[(i64, i32)], now_ms: i64) {
        for &(id, timeout) in touches {
            self.sessions.touch(id, timeout, now_ms);
        }
    }

    fn touch_session(&mut self, session_id: i64, timeout_ms: i32, now_ms: i64) -> bool {
        if self.replication == Replication::Learner {
            self.touched.insert(session_id, timeout_ms);
        }
        self.sessions.touch(session_id, timeout_ms, now_ms)
    }

    /// Rebuilds the state from a snapshot (its tree, sessions and zxid) and the logged txns
    /// after it, as ZooKeeper's ZKDatabase.loadDataBase does: txns are applied without
    /// notifying anyone, sessions are tracked again with their full timeout from `now_ms`
    /// (so they expire afterwards as they would have, had the server not stopped).
    pub fn restore(&mut self, snapshot: Option<RestoredSnapshot>, txns: &[TxnEntry], now_ms: i64) {
        if let Some(RestoredSnapshot {
            tree,
            sessions,
            zxid,
        }) = snapshot
        {
            self.tree = tree;
            self.tree.last_processed_zxid = zxid;
            // The snapshot's sessions replace the tracked ones (a learner taking its
            // leader's SNAP would otherwise keep sessions closed in the txns it skipped,
            // and accept their clients again: zkd-sim real seed 295).
            let keep: std::collections::HashSet<i64> = sessions.iter().map(|s| s.0).collect();
            for id in self.session_table().into_iter().map(|s| s.0) {
                if !keep.contains(&id) {
                    self.sessions.remove(id);
                }
            }
            self.closing.clear();
            self.committed_sessions = sessions.iter().copied().collect();
            for (id, timeout) in sessions {
                self.sessions.add(id, timeout, now_ms);
                self.sessions.ensure_next_id_above(id);
            }
        }
        let mut ignored = Vec::new();
        for t in txns {
            if t.header.zxid <= self.tree.last_processed_zxid {
                continue;
            }
            self.tree.process_txn(&t.header, &t.body, &mut ignored);
            ignored.clear();
            match &t.body {
                TxnBody::CreateSession(c) => {
                    self.sessions.add(t.header.client_id, c.time_out, now_ms);
                    self.sessions.ensure_next_id_above(t.header.client_id);
                    self.committed_sessions
                        .insert(t.header.client_id, c.time_out);
                }
                TxnBody::CloseSession(_) => {
                    self.sessions.remove(t.header.client_id);
                    self.committed_sessions.remove(&t.header.client_id);
                }
                _ => {}
            }
        }
        self.prep = Prep::new(self.tree.last_processed_zxid);
        // An ensemble server serves its membership in /zookeeper/config, set afresh after
        // every load as ZooKeeper does (its snapshot may carry another server's copy).
        if let Some(text) = self.config.dynamic_config_text() {
            self.tree
                .set_config_node(text.as_bytes(), 0, now_ms + self.wall_offset_ms);
        }
    }

    /// The sessions a snapshot of the applied tree carries: in an ensemble those of the
    /// applied txns (a leader's tracker also holds uncommitted ones: a snapshot with them
    /// made a restarted server track a session that never existed, zkd-sim real storm
    /// seed 45); standalone, the tracker.
    pub fn snapshot_sessions(&self) -> Vec<(i64, i32)> {
        if self.zab.is_some() {
            self.committed_sessions
                .iter()
                .map(|(id, t)| (*id, *t))
                .collect()
        } else {
            self.session_table()
        }
    }

    /// Sessions with their timeouts (the tracker's).
    pub fn session_table(&self) -> Vec<(i64, i32)> {
        let mut v: Vec<_> = self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
        v.sort();
        v
    }

    /// Takes the outputs produced so far.
    pub fn take_output(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Hands back a vector `take_output` returned, once its outputs are dealt with, so
    /// that the next outputs reuse its allocation (kept only if nothing new is queued).
    pub fn recycle_output(&mut self, mut outs: Vec<Output>) {
        outs.clear();
        if self.out.is_empty() && self.out.capacity() < outs.capacity() {
            self.out = outs;
        }
    }

    fn send(&mut self, conn: ConnId, frame: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.packets_sent += 1;
        }
        self.stats.packets_sent += 1;
        self.out.push(Output::Send { conn, frame });
    }

    fn close(&mut self, conn: ConnId) {
        self.out.push(Output::Close { conn });
    }

    /// A new TCP connection. False: refuse it (maxClientCnxns per IP reached).
    pub fn accept(&mut self, conn: ConnId, addr: SocketAddr, now_ms: i64) -> bool {
        let max = self.config.max_client_cnxns;
        if max > 0 {
            let from_ip = self
                .conns
                .values()
                .filter(|c| c.addr.ip() == addr.ip())
                .count();
            if from_ip >= max as usize {
                tracing::warn!("Too many connections from {} - max is {}", addr.ip(), max);
                return false;
            }
        }
        self.conns.insert(
            conn,
            Conn {
                id: conn,
                addr,
                session_id: 0,
                auth: Arc::new(vec![Id {
                    scheme: "ip".into(),
                    id: addr.ip().to_string(),
                }]),
                established_ms: now_ms + self.wall_offset_ms,
                packets_received: 0,
                packets_sent: 0,
                last_cxid: -1,
                last_zxid: -1,
                last_op: "NA",
                last_response_ms: now_ms,
                last_latency_ms: 0,
                min_latency_ms: i64::MAX,
                max_latency_ms: 0,
                total_latency_ms: 0,
                latency_count: 0,
                outstanding_writes: 0,
                held: std::collections::VecDeque::new(),
            },
        );
        true
    }

    /// The connection is gone: its watches go with it; its session lives on until expiry.
    pub fn disconnected(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.tree.remove_connection(conn);
            if c.session_id != 0 {
                if let Some(s) = self.sessions.get(c.session_id) {
                    if s.conn == Some(conn) {
                        self.sessions.set_conn(c.session_id, None);
                    }
                }
            }
        }
    }

    /// The handshake (ZooKeeperServer.processConnectRequest).
    pub fn connect(&mut self, conn: ConnId, req: &ConnectRequest, now_ms: i64) {
        self.stats.packets_received += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.packets_received += 1;
        if self.replication == Replication::Unavailable {
            // ZooKeeper does not serve clients while it has no leader.
            self.close(conn);
            return;
        }
        let last_zxid = self.tree.last_processed_zxid;
        if req.last_zxid_seen > last_zxid {
            tracing::info!(
                "Refusing session request for client {} as it has seen zxid 0x{:x} our last zxid is 0x{:x} client must try another server",
                c.addr, req.last_zxid_seen, last_zxid
            );
            self.close(conn);
            return;
        }
        let timeout = self.config.effective_session_timeout_ms(req.time_out);
        if req.session_id == 0 {
            let id = self.sessions.create(timeout, now_ms);
            self.sessions.set_conn(id, Some(conn));
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session_id = id;
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.outstanding_writes += 1;
            }
            let origin = Origin::Connect {
                conn,
                session_id: id,
                timeout_ms: timeout,
            };
            if self.replication == Replication::Learner {
                // The leader logs the createSession; the session is this server's.
                self.touched.insert(id, timeout);
                self.forward(
                    id,
                    0,
                    OpCode::CreateSession as i32,
                    &[],
                    timeout.to_be_bytes().to_vec(),
                    origin,
                );
                return;
            }
            let ctx = self.prep_ctx(id, 0, &[], now_ms);
            let txn = self.prep.create_session(&ctx, timeout);
            self.propose(txn, origin);
            self.settle(now_ms);
            return;
        }
        // Resume: the password must be the one this session id generates, and the
        // session must still be alive.
        let password_ok = req.passwd.as_slice() == session_password(req.session_id);
        if self.replication == Replication::Learner
            && password_ok
            && self.sessions.get(req.session_id).is_some()
        {
            // A learner asks the leader first, as ZooKeeper's revalidateSession does: its
            // own session table may lag behind an expiry the leader already decided, or
            // it may be cut off from the leader altogether.
            let id = self.next_sync_id;
            self.next_sync_id += 1;
            self.syncs.insert(
                id,
                SyncWaiter::Revalidate {
                    conn,
                    session_id: req.session_id,
                    timeout_ms: timeout,
                },
            );
            self.out.push(Output::Sync { id });
            return;
        }
        let valid = password_ok && self.touch_session(req.session_id, timeout, now_ms);
        if !valid {
            self.finish_session_init(conn, None);
            return;
        }
        self.attach_session(conn, req.session_id);
        self.finish_session_init(conn, Some((req.session_id, timeout)));
    }

    /// Moves a session onto `conn`; the connection it was on before is closed
    /// (CLIENT_RECONNECT: a session lives on one connection).
    fn attach_session(&mut self, conn: ConnId, session_id: i64) {
        if let Some(old) = self.sessions.get(session_id).and_then(|s| s.conn) {
            if old != conn {
                self.tree.remove_connection(old);
                if let Some(oc) = self.conns.get_mut(&old) {
                    oc.session_id = 0;
                }
                self.close(old);
            }
        }
        self.sessions.set_conn(session_id, Some(conn));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session_id = session_id;
        }
    }

    fn finish_session_init(&mut self, conn: ConnId, valid: Option<(i64, i32)>) {
        if let Some((id, timeout)) = valid {
            // ZooKeeperServer.finishSessionInit logs the same line.
            let addr = self
                .conns
                .get(&conn)
                .map(|c| c.addr.to_string())
                .unwrap_or_default();
            tracing::info!(
                "Established session 0x{id:x} with negotiated timeout {timeout} for client {addr}"
            );
        }
        let rsp = match valid {
            Some((id, timeout)) => ConnectResponse {
                protocol_version: 0,
                time_out: timeout,
                session_id: id,
                passwd: session_password(id).to_vec(),
                read_only: false,
                has_read_only: true,
            },
            // The expired-session reply: timeout 0, session 0, sixteen zero bytes.
            None => ConnectResponse {
                protocol_version: 0,
                time_out: 0,
                session_id: 0,
                passwd: vec![0; 16],
                read_only: false,
                has_read_only: true,
            },
        };
        let frame = zkd_proto::frame::frame(&rsp.to_bytes());
        self.send(conn, frame);
        if valid.is_none() {
            self.close(conn);
        }
    }

    /// Sends a prepared txn towards the log (or applies it at once without one).
    fn propose(&mut self, txn: TxnEntry, origin: Origin) {
        match self.replication {
            Replication::Leader => self.out.push(Output::Propose {
                zxid: txn.header.zxid,
                txn: txn.to_bytes(),
            }),
            Replication::Standalone if self.durable => self.out.push(Output::Persist {
                zxid: txn.header.zxid,
                txn: txn.to_bytes(),
            }),
            Replication::Standalone => {}
            Replication::Learner | Replication::Unavailable => {
                unreachable!("only a standalone server or a leader prepares txns")
            }
        }
        self.pending.push_back(PendingTxn { txn, origin });
    }

    /// Learner: sends a request to the leader and remembers who waits for its txn.
    fn forward(
        &mut self,
        session_id: i64,
        cxid: i32,
        op_type: i32,
        auth: &[Id],
        body: Vec<u8>,
        origin: Origin,
    ) {
        let payload = crate::forward::ForwardedRequest {
            session_id,
            cxid,
            op_type,
            auth: auth.to_vec(),
            body,
        }
        .encode();
        self.forwarded
            .entry(session_id)
            .or_default()
            .push_back((cxid, origin));
        self.out.push(Output::Forward { payload });
    }

    /// Leader or learner: zab committed this txn (in zxid order): apply it and answer
    /// whoever here asked for it.
    pub fn committed(&mut self, zxid: i64, payload: &[u8], now_ms: i64) -> Result<(), String> {
        let txn = TxnEntry::from_bytes(payload)
            .map_err(|e| format!("committed txn 0x{zxid:x} does not decode: {e}"))?;
        if txn.header.zxid != zxid {
            return Err(format!(
                "committed txn 0x{zxid:x} carries zxid 0x{:x}",
                txn.header.zxid
            ));
        }
        if zxid <= self.tree.last_processed_zxid {
            tracing::warn!(
                "zab committed txn 0x{zxid:x} again (tree at 0x{:x}); skipping it",
                self.tree.last_processed_zxid
            );
            return Ok(());
        }
        let origin = if self
            .pending
            .front()
            .is_some_and(|p| p.txn.header.zxid == zxid)
        {
            self.pending.pop_front().map(|p| p.origin)
        } else {
            let sid = txn.header.client_id;
            let matches = self
                .forwarded
                .get(&sid)
                .and_then(|q| q.front())
                .is_some_and(|(cxid, o)| {
                    *cxid == txn.header.cxid
                        && matches!(o, Origin::Connect { .. })
                            == matches!(txn.body, TxnBody::CreateSession(_))
                });
            if matches {
                let q = self.forwarded.get_mut(&sid).expect("checked above");
                let o = q.pop_front().map(|(_, o)| o);
                if q.is_empty() {
                    self.forwarded.remove(&sid);
                }
                o
            } else {
                None
            }
        };
        match &txn.body {
            // Not if this leader already prepared the session's close (it expired before
            // its createSession committed): tracking it again let a later create of an
            // ephemeral through after the closeSession, and that node then outlived its
            // session everywhere (ZOOKEEPER-1208's class; zkd-sim real storm seed 461, 5
            // voters and an observer).
            TxnBody::CreateSession(c)
                if self.sessions.get(txn.header.client_id).is_none()
                    && !self.closing.contains_key(&txn.header.client_id) =>
            {
                self.sessions.add(txn.header.client_id, c.time_out, now_ms);
            }
            // Tracked since its createSession was prepared (the leader) or requested (the
            // learner it connected to): its timeout runs again from the commit, when its
            // client gets the connect response and can first ping. ZooKeeper's tracker
            // counts from the prepare only, so a createSession slower to commit than the
            // timeout lets the session expire before its client ever spoke; learners now
            // report touches on the leader's PINGs (not on their own tick), which made
            // that window one tick shorter in the simulator (real_scenarios seed 2).
            TxnBody::CreateSession(c) if !self.closing.contains_key(&txn.header.client_id) => {
                self.sessions
                    .touch(txn.header.client_id, c.time_out, now_ms);
            }
            TxnBody::CloseSession(_) if origin.is_none() => {
                // Expired or closed elsewhere: a connection here still carrying the
                // session is closed, as the session's owner would close it.
                if let Some(c) = self.sessions.get(txn.header.client_id).and_then(|s| s.conn) {
                    if let Some(cs) = self.conns.get_mut(&c) {
                        cs.session_id = 0;
                    }
                    self.close(c);
                }
            }
            _ => {}
        }
        let rc = self.apply(&txn);
        if let Some(origin) = origin {
            self.finalize(PendingTxn { txn, origin }, rc, now_ms);
        }
        self.settle(now_ms);
        Ok(())
    }

    /// Leader: a request a learner forwarded (or its own, looped back by zab).
    pub fn forwarded_request(&mut self, payload: &[u8], now_ms: i64) -> Result<(), String> {
        if self.replication != Replication::Leader {
            return Err("a forwarded request reached a server that is not leading".into());
        }
        let f = crate::forward::ForwardedRequest::decode(payload)
            .map_err(|e| format!("forwarded request does not decode: {e}"))?;
        let ctx_auth = f.auth.clone();
        if f.op_type == OpCode::CreateSession as i32 {
            let timeout = i32::from_be_bytes(
                f.body
                    .as_slice()
                    .try_into()
                    .map_err(|_| "createSession body is not a timeout".to_string())?,
            );
            self.sessions.add(f.session_id, timeout, now_ms);
            let ctx = self.prep_ctx(f.session_id, f.cxid, &ctx_auth, now_ms);
            let txn = self.prep.create_session(&ctx, timeout);
            self.propose(txn, Origin::Remote);
            self.settle(now_ms);
            return Ok(());
        }
        let timeout = self.sessions.get(f.session_id).map(|s| s.timeout_ms);
        let pctx = self.prep_ctx(f.session_id, f.cxid, &ctx_auth, now_ms);
        let txn = match timeout {
            None => {
                // The session expired here first: the learner's client gets the error
                // from the txn, as ZooKeeper's prep logs an ErrorTxn for it.
                self.error_txn(&pctx, ErrorCode::SessionExpired)
            }
            Some(t) => {
                self.sessions.touch(f.session_id, t, now_ms);
                if f.op_type == OpCode::CloseSession as i32 {
                    let txn = self.prep.close_session(&self.tree, &pctx);
                    self.start_closing(f.session_id, now_ms);
                    txn
                } else {
                    match Request::decode(f.op_type, &f.body) {
                        Ok(r) if OpCode::from_i32(f.op_type).is_some_and(is_write) => {
                            self.prep.prep_write(&self.tree, &pctx, r)
                        }
                        _ => self.error_txn(&pctx, ErrorCode::MarshallingError),
                    }
                }
            }
        };
        self.propose(txn, Origin::Remote);
        self.settle(now_ms);
        Ok(())
    }

    /// zab's barrier for the `sync` with this id passed: answer it.
    pub fn sync_done(&mut self, id: u64, now_ms: i64) {
        match self.syncs.remove(&id) {
            Some(SyncWaiter::Request {
                conn,
                xid,
                path,
                received_ms,
            }) => {
                if self.conns.contains_key(&conn) {
                    let reply = self.reply(xid, ErrorCode::Ok, Some(&SyncResponse { path }));
                    self.respond(conn, xid, "SYNC", reply, received_ms, now_ms);
                }
                self.write_done(conn);
                self.settle(now_ms);
            }
            Some(SyncWaiter::Revalidate {
                conn,
                session_id,
                timeout_ms,
            }) if self.conns.contains_key(&conn) => {
                let alive = self.touch_session(session_id, timeout_ms, now_ms);
                let valid = alive.then_some((session_id, timeout_ms));
                if alive {
                    self.attach_session(conn, session_id);
                }
                self.finish_session_init(conn, valid);
            }
            Some(SyncWaiter::Revalidate { .. }) | None => {}
        }
    }

    /// The log made every txn up to `zxid` durable: apply them in order and answer.
    pub fn synced(&mut self, zxid: i64, now_ms: i64) {
        if let Some(zab) = self.zab.as_mut() {
            // In an ensemble the log's fsync is this server's ACK; zab decides commits.
            zab.log_synced(zxid);
            return;
        }
        self.apply_through(zxid, now_ms);
        self.settle(now_ms);
    }

    /// Requests received and not yet answered, over all connections (stat "Outstanding").
    pub fn outstanding_requests(&self) -> usize {
        self.conns.values().map(Conn::queued).sum()
    }

    /// Zxids prepared but not yet applied.
    pub fn pending_txns(&self) -> usize {
        self.pending.len()
    }

    fn apply_through(&mut self, zxid: i64, now_ms: i64) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.txn.header.zxid <= zxid)
        {
            let p = self.pending.pop_front().expect("front exists");
            let rc = self.apply(&p.txn);
            self.finalize(p, rc, now_ms);
        }
    }

    /// Runs what became runnable: in-memory mode applies everything prepared, and
    /// connections whose writes are all applied get their held requests served.
    fn settle(&mut self, now_ms: i64) {
        loop {
            if !self.durable {
                let last = self.prep.last_zxid;
                self.apply_through(last, now_ms);
            }
            let conns = std::mem::take(&mut self.to_drain);
            if conns.is_empty() {
                break;
            }
            for c in conns {
                self.drain_held(c, now_ms);
            }
        }
    }

    fn write_done(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.outstanding_writes = c.outstanding_writes.saturating_sub(1);
            if c.outstanding_writes == 0 && !c.held.is_empty() {
                self.to_drain.push(conn);
            }
        }
    }

    fn drain_held(&mut self, conn: ConnId, now_ms: i64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let Some(h) = c.held.front() else {
                return;
            };
            if c.outstanding_writes > 0 && !is_write_op(h.op_type) {
                return;
            }
            let h = c.held.pop_front().expect("front exists");
            self.handle(conn, h.xid, h.op_type, &h.body, h.received_ms, now_ms);
        }
    }

    /// FinalRequestProcessor: answers whoever asked for an applied txn.
    fn finalize(&mut self, p: PendingTxn, rc: TxnResult, now_ms: i64) {
        match p.origin {
            Origin::Client {
                conn,
                xid,
                op,
                received_ms,
            } => {
                if self.conns.contains_key(&conn) {
                    let reply = self.write_reply(xid, op, &p.txn, &rc);
                    self.respond(conn, xid, last_op_name(op), reply, received_ms, now_ms);
                }
                self.write_done(conn);
            }
            Origin::Malformed {
                conn,
                xid,
                received_ms,
            } => {
                if self.conns.contains_key(&conn) {
                    let reply = self.reply(xid, ErrorCode::MarshallingError, None);
                    self.respond(conn, xid, "NA", reply, received_ms, now_ms);
                }
                self.write_done(conn);
            }
            Origin::Connect {
                conn,
                session_id,
                timeout_ms,
            } => {
                let still_ours = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.session_id == session_id);
                if still_ours {
                    self.finish_session_init(conn, Some((session_id, timeout_ms)));
                }
                self.write_done(conn);
            }
            Origin::CloseSession {
                conn,
                xid,
                received_ms,
            } => {
                if self.conns.contains_key(&conn) {
                    let zxid = self.tree.last_processed_zxid;
                    let reply = Reply::Close(Some(reply_frame(xid, zxid, 0, None)));
                    self.respond(conn, xid, "CLOS", reply, received_ms, now_ms);
                }
                self.write_done(conn);
            }
            Origin::Expire { conn } => {
                if let Some(c) = conn {
                    self.close(c);
                }
            }
            Origin::Reaper | Origin::Remote => {}
        }
    }

    fn apply(&mut self, txn: &TxnEntry) -> TxnResult {
        let mut notes = Vec::new();
        let rc = self.tree.process_txn(&txn.header, &txn.body, &mut notes);
        self.prep.applied(txn.header.zxid);
        match &txn.body {
            TxnBody::CloseSession(_) => {
                self.sessions.remove(txn.header.client_id);
                self.closing.remove(&txn.header.client_id);
                self.committed_sessions.remove(&txn.header.client_id);
            }
            TxnBody::CreateSession(c) => {
                self.committed_sessions
                    .insert(txn.header.client_id, c.time_out);
            }
            _ => {}
        }
        self.dispatch(notes);
        rc
    }

    fn dispatch(&mut self, notes: Vec<Notification>) {
        for n in notes {
            let Some(c) = self.conns.get(&n.conn) else {
                continue;
            };
            // CVE-2024-23944: never reveal a path its watcher may not read.
            if let Some(acl) = &n.acl {
                if check_acl(acl, perms::READ, &c.auth, self.config.skip_acl).is_err() {
                    continue;
                }
            }
            let zxid = n.zxid;
            let ev = n.event;
            let frame = reply_frame(xid::NOTIFICATION, zxid, 0, Some(&ev));
            self.send(n.conn, frame);
        }
    }

    /// One request frame after the handshake: header already split off.
    pub fn request(&mut self, conn: ConnId, xid: i32, op_type: i32, body: &[u8], now_ms: i64) {
        self.stats.packets_received += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.packets_received += 1;
        let session_id = c.session_id;
        if session_id == 0 {
            self.close(conn);
            return;
        }
        let timeout = self.sessions.get(session_id).map(|s| s.timeout_ms);
        match timeout {
            Some(t) => {
                self.touch_session(session_id, t, now_ms);
            }
            None => {
                // The session expired (or is closing) under this connection.
                self.close(conn);
                return;
            }
        }
        let c = self.conns.get_mut(&conn).expect("checked above");
        // FIFO per session: behind uncommitted writes only further writes may be prepared
        // at once (nothing held yet); everything else waits its turn.
        let must_wait = !c.held.is_empty() || (c.outstanding_writes > 0 && !is_write_op(op_type));
        if must_wait {
            c.held.push_back(Held {
                xid,
                op_type,
                body: body.to_vec(),
                received_ms: now_ms,
            });
            return;
        }
        self.handle(conn, xid, op_type, body, now_ms, now_ms);
        self.settle(now_ms);
    }

    /// Processes one request now: a read is answered, a write is proposed.
    fn handle(
        &mut self,
        conn: ConnId,
        xid: i32,
        op_type: i32,
        body: &[u8],
        received_ms: i64,
        now_ms: i64,
    ) {
        let Some(session_id) = self.conns.get(&conn).map(|c| c.session_id) else {
            return;
        };
        if session_id == 0 {
            // Held behind this connection's closeSession, which cleared its session: the
            // request belongs to no session any more (prepared as session 0, a
            // closeSession would delete every persistent node with an outstanding change,
            // zkd-sim seed 35). The close reply follows, then the connection closes.
            return;
        }
        let (reply, op_name) = self.process(conn, session_id, xid, op_type, body, received_ms);
        if let Some(reply) = reply {
            self.respond(conn, xid, op_name, reply, received_ms, now_ms);
        }
    }

    /// Sends a reply and accounts for it (lcxid, lastOp, latency).
    fn respond(
        &mut self,
        conn: ConnId,
        xid: i32,
        op_name: &'static str,
        reply: Reply,
        received_ms: i64,
        now_ms: i64,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // ZooKeeper records lcxid only for client xids (not ping/auth/setWatches).
        if xid >= 0 {
            c.last_cxid = xid;
        }
        c.last_op = op_name;
        c.last_zxid = self.tree.last_processed_zxid;
        c.last_response_ms = now_ms;
        // Whole milliseconds from receipt to reply, as ZooKeeper counts them: for a write
        // that includes waiting for the log's fsync.
        let latency = (now_ms - received_ms).max(0);
        c.last_latency_ms = latency;
        c.min_latency_ms = c.min_latency_ms.min(latency);
        c.max_latency_ms = c.max_latency_ms.max(latency);
        c.total_latency_ms += latency;
        c.latency_count += 1;
        let s = &mut self.stats;
        s.min_latency_ms = s.min_latency_ms.min(latency);
        s.max_latency_ms = s.max_latency_ms.max(latency);
        s.total_latency_ms += latency;
        s.latency_count += 1;
        match reply {
            Reply::Frame(frame) => self.send(conn, frame),
            Reply::Close(frame) => {
                if let Some(f) = frame {
                    self.send(conn, f);
                }
                self.close(conn);
            }
        }
    }

    fn reply(&self, xid: i32, err: ErrorCode, body: Option<&dyn Encode>) -> Reply {
        let zxid = self.tree.last_processed_zxid;
        if err != ErrorCode::Ok {
            return Reply::Frame(reply_frame(xid, zxid, err.code(), None));
        }
        Reply::Frame(reply_frame(xid, zxid, 0, body))
    }

    /// Decodes and runs one request; `None` when the answer waits for a txn.
    fn process(
        &mut self,
        conn: ConnId,
        session_id: i64,
        xid: i32,
        op_type: i32,
        body: &[u8],
        now_ms: i64,
    ) -> (Option<Reply>, &'static str) {
        let Some(op) = OpCode::from_i32(op_type) else {
            // UnimplementedRequestProcessor: the error reply, then the connection is
            // closed (the session survives and the client may resume it).
            tracing::warn!("Received packet at server of unknown type {}", op_type);
            return (
                Some(Reply::Close(Some(reply_frame(
                    xid,
                    -1,
                    ErrorCode::Unimplemented.code(),
                    None,
                )))),
                "NA",
            );
        };
        if op == OpCode::Exists {
            // The commonest read decodes in place: its path is borrowed from the frame
            // rather than copied into a String that lives for one lookup. A body that
            // does not decode goes the general way, which answers it.
            let mut r = zkd_proto::Reader::new(body);
            if let Ok(path) = r.read_ustring_opt_ref() {
                if let Ok(watch) = r.read_bool() {
                    let path = path.unwrap_or_default();
                    let auth = self
                        .conns
                        .get(&conn)
                        .map(|c| c.auth.clone())
                        .unwrap_or_default();
                    let reply = self
                        .exists(conn, xid, &auth, &path, watch)
                        .unwrap_or_else(|e| self.reply(xid, e, None));
                    return (Some(reply), last_op_name(op));
                }
            }
        }
        let req = match Request::decode(op_type, body) {
            Ok(r) => r,
            Err(zkd_proto::DecodeError::UnknownOpCode(_)) => {
                return (
                    Some(Reply::Close(Some(reply_frame(
                        xid,
                        -1,
                        ErrorCode::Unimplemented.code(),
                        None,
                    )))),
                    "NA",
                )
            }
            Err(e) => {
                tracing::warn!(
                    "malformed {} request from connection {}: {}",
                    op.name(),
                    conn,
                    e
                );
                if is_write(op) && self.replication == Replication::Learner {
                    // The leader decodes it too, and logs the ErrorTxn.
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.outstanding_writes += 1;
                    }
                    let auth = self
                        .conns
                        .get(&conn)
                        .map(|c| c.auth.clone())
                        .unwrap_or_default();
                    let origin = Origin::Malformed {
                        conn,
                        xid,
                        received_ms: now_ms,
                    };
                    self.forward(session_id, xid, op_type, &auth, body.to_vec(), origin);
                    return (None, "NA");
                }
                if is_write(op) {
                    // ZooKeeper logs an ErrorTxn(MARSHALLINGERROR) for a bad write.
                    let pctx = self.prep_ctx(session_id, xid, &[], now_ms);
                    let txn = self.error_txn(&pctx, ErrorCode::MarshallingError);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.outstanding_writes += 1;
                    }
                    self.propose(
                        txn,
                        Origin::Malformed {
                            conn,
                            xid,
                            received_ms: now_ms,
                        },
                    );
                    return (None, "NA");
                }
                let r = self.reply(xid, ErrorCode::MarshallingError, None);
                return (Some(r), "NA");
            }
        };
        let auth = self
            .conns
            .get(&conn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        let auth: &[Id] = &auth;
        match req {
            Request::Ping => {
                let zxid = self.tree.last_processed_zxid;
                (
                    Some(Reply::Frame(reply_frame(xid::PING, zxid, 0, None))),
                    "PING",
                )
            }
            Request::Auth(a) => {
                let ip = self.conns.get(&conn).map(|c| c.addr.ip());
                match authenticate(&a.scheme, &a.auth, ip, self.config.super_digest.as_deref()) {
                    Ok(ids) => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            for id in ids {
                                if !c.auth.contains(&id) {
                                    Arc::make_mut(&mut c.auth).push(id);
                                }
                            }
                        }
                        (Some(Reply::Frame(reply_frame(xid, 0, 0, None))), "AUTH")
                    }
                    Err(_) => {
                        tracing::warn!("Authentication failed for scheme: {}", a.scheme);
                        (
                            Some(Reply::Close(Some(reply_frame(
                                xid,
                                0,
                                ErrorCode::AuthFailed.code(),
                                None,
                            )))),
                            "AUTH",
                        )
                    }
                }
            }
            Request::Sasl(_) => (
                Some(Reply::Close(Some(reply_frame(
                    xid,
                    0,
                    ErrorCode::AuthFailed.code(),
                    None,
                )))),
                "SASL",
            ),
            Request::CloseSession if self.replication == Replication::Learner => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session_id = 0;
                    c.outstanding_writes += 1;
                }
                let origin = Origin::CloseSession {
                    conn,
                    xid,
                    received_ms: now_ms,
                };
                self.forward(session_id, xid, op_type, auth, Vec::new(), origin);
                (None, "CLOS")
            }
            Request::Sync(r)
                if matches!(self.replication, Replication::Leader | Replication::Learner) =>
            {
                // A quorum barrier, not a local no-op: the reply leaves once every txn the
                // leader had proposed before it is applied here.
                let id = self.next_sync_id;
                self.next_sync_id += 1;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outstanding_writes += 1;
                }
                self.syncs.insert(
                    id,
                    SyncWaiter::Request {
                        conn,
                        xid,
                        path: r.path,
                        received_ms: now_ms,
                    },
                );
                self.out.push(Output::Sync { id });
                (None, "SYNC")
            }
            r if is_write(r.op_code()) && self.replication == Replication::Learner => {
                let op = r.op_code();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outstanding_writes += 1;
                }
                let origin = Origin::Client {
                    conn,
                    xid,
                    op,
                    received_ms: now_ms,
                };
                self.forward(session_id, xid, op_type, auth, body.to_vec(), origin);
                (None, last_op_name(op))
            }
            Request::CloseSession => {
                let pctx = self.prep_ctx(session_id, xid, auth, now_ms);
                let txn = self.prep.close_session(&self.tree, &pctx);
                // ZooKeeper's setSessionClosing: nothing more runs on this session.
                self.start_closing(session_id, now_ms);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session_id = 0;
                    c.outstanding_writes += 1;
                }
                self.propose(
                    txn,
                    Origin::CloseSession {
                        conn,
                        xid,
                        received_ms: now_ms,
                    },
                );
                (None, "CLOS")
            }
            r if is_write(r.op_code()) => {
                let op = r.op_code();
                let pctx = self.prep_ctx(session_id, xid, auth, now_ms);
                let txn = self.prep.prep_write(&self.tree, &pctx, r);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.outstanding_writes += 1;
                }
                self.propose(
                    txn,
                    Origin::Client {
                        conn,
                        xid,
                        op,
                        received_ms: now_ms,
                    },
                );
                (None, last_op_name(op))
            }
            other => {
                let name = last_op_name(other.op_code());
                let (_, reply) = self.read(conn, xid, auth, other);
                (Some(reply), name)
            }
        }
    }

    /// An ErrorTxn with its own zxid, as ZooKeeper's prep logs for a write it refuses
    /// before preparing it (a malformed request, an expired session).
    fn error_txn(&mut self, pctx: &PrepContext<'_>, err: ErrorCode) -> TxnEntry {
        let mut txn = self.prep.prep_write(&self.tree, pctx, Request::Ping);
        txn.body = TxnBody::Error(zkd_proto::txn::ErrorTxn { err: err.code() });
        txn
    }

    fn prep_ctx<'a>(
        &self,
        session_id: i64,
        cxid: i32,
        auth: &'a [Id],
        now_ms: i64,
    ) -> PrepContext<'a> {
        PrepContext {
            session_id,
            cxid,
            auth,
            time_ms: now_ms + self.wall_offset_ms,
            extended_types_enabled: self.config.extended_types_enabled,
            enforce_quota: self.config.enforce_quota,
            skip_acl: self.config.skip_acl,
        }
    }

    /// FinalRequestProcessor's reply to a write (`op` is the request's op code).
    fn write_reply(&self, xid: i32, op: OpCode, txn: &TxnEntry, rc: &TxnResult) -> Reply {
        if let TxnBody::Error(e) = &txn.body {
            let err = ErrorCode::from_code(e.err).unwrap_or(ErrorCode::SystemError);
            return self.reply(xid, err, None);
        }
        let err = ErrorCode::from_code(rc.err).unwrap_or(ErrorCode::SystemError);
        match op {
            OpCode::Multi => self.reply(xid, ErrorCode::Ok, Some(&MultiReply(&rc.multi))),
            OpCode::Create => self.reply(xid, err, Some(&PathBody(&rc.path))),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                let r = Create2Response {
                    path: rc.path.clone(),
                    stat: rc.stat.clone().unwrap_or_default(),
                };
                self.reply(xid, err, Some(&r))
            }
            OpCode::SetData => {
                let r = SetDataResponse {
                    stat: rc.stat.clone().unwrap_or_default(),
                };
                self.reply(xid, err, Some(&r))
            }
            OpCode::SetAcl => {
                let r = SetAclResponse {
                    stat: rc.stat.clone().unwrap_or_default(),
                };
                self.reply(xid, err, Some(&r))
            }
            OpCode::Check => {
                // The checked path is the txn's (the request moved into it).
                let stat = match &txn.body {
                    TxnBody::Check(c) => self.tree.get(&c.path).map(|n| n.client_stat()),
                    _ => None,
                }
                .unwrap_or_default();
                let r = SetDataResponse { stat };
                self.reply(xid, err, Some(&r))
            }
            _ => self.reply(xid, err, None),
        }
    }

    /// exists: the node's Stat, and a watch on the path (set even when the node is absent,
    /// to fire on its creation, but not when the ACL refuses the read).
    fn exists(
        &mut self,
        conn: ConnId,
        xid: i32,
        auth: &[Id],
        path: &str,
        watch: bool,
    ) -> Result<Reply, ErrorCode> {
        if path.as_bytes().contains(&0) {
            return Err(ErrorCode::BadArguments);
        }
        // One lookup for the ACL check and the Stat (a path lookup was ~10 % of the CPU
        // of an exists, done twice): adding a watch changes no node.
        let stat = match self.tree.get(path) {
            Some(n) => {
                check_acl(&n.acl, perms::READ, auth, self.config.skip_acl)?;
                Some(n.client_stat())
            }
            None => None,
        };
        if watch {
            self.tree
                .data_watches
                .add_watch(path, conn, WatchMode::Standard);
        }
        let stat = stat.ok_or(ErrorCode::NoNode)?;
        Ok(self.reply(xid, ErrorCode::Ok, Some(&ExistsResponse { stat })))
    }

    fn get_data(
        &mut self,
        conn: ConnId,
        auth: &[Id],
        path: &str,
        watch: bool,
    ) -> Result<GetDataResponse, ErrorCode> {
        let n = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        check_acl(&n.acl, perms::READ, auth, self.config.skip_acl)?;
        let rsp = GetDataResponse {
            data: n.data().map(<[u8]>::to_vec),
            stat: n.client_stat(),
        };
        if watch {
            self.tree
                .data_watches
                .add_watch(path, conn, WatchMode::Standard);
        }
        Ok(rsp)
    }

    fn get_children(
        &mut self,
        conn: ConnId,
        auth: &[Id],
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat), ErrorCode> {
        let n = self.tree.get(path).ok_or(ErrorCode::NoNode)?;
        check_acl(&n.acl, perms::READ, auth, self.config.skip_acl)?;
        let children: Vec<String> = self.tree.child_names(&n).map(str::to_string).collect();
        let stat = n.client_stat();
        if watch {
            self.tree
                .child_watches
                .add_watch(path, conn, WatchMode::Standard);
        }
        Ok((children, stat))
    }

    fn read(&mut self, conn: ConnId, xid: i32, auth: &[Id], req: Request) -> (ErrorCode, Reply) {
        let res: Result<Reply, ErrorCode> = (|| match req {
            Request::Exists(r) => self.exists(conn, xid, auth, &r.path, r.watch),
            Request::GetData(r) => {
                let rsp = self.get_data(conn, auth, &r.path, r.watch)?;
                Ok(self.reply(xid, ErrorCode::Ok, Some(&rsp)))
            }
            Request::GetChildren(r) => {
                let (children, _) = self.get_children(conn, auth, &r.path, r.watch)?;
                Ok(self.reply(xid, ErrorCode::Ok, Some(&GetChildrenResponse { children })))
            }
            Request::GetChildren2(r) => {
                let (children, stat) = self.get_children(conn, auth, &r.path, r.watch)?;
                Ok(self.reply(
                    xid,
                    ErrorCode::Ok,
                    Some(&GetChildren2Response { children, stat }),
                ))
            }
            Request::GetAcl(r) => {
                let n = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
                check_acl(
                    &n.acl,
                    perms::READ | perms::ADMIN,
                    auth,
                    self.config.skip_acl,
                )?;
                let stat = n.client_stat();
                // CVE-2019-0201: without ADMIN, digest hashes are masked.
                let acl: Vec<Acl> =
                    if check_acl(&n.acl, perms::ADMIN, auth, self.config.skip_acl).is_ok() {
                        n.acl.as_ref().clone()
                    } else {
                        n.acl
                            .iter()
                            .map(|a| {
                                let mut a = a.clone();
                                if a.id.scheme == "digest" {
                                    if let Some(i) = a.id.id.find(':') {
                                        a.id.id = format!("{}:x", &a.id.id[..i]);
                                    }
                                }
                                a
                            })
                            .collect()
                    };
                Ok(self.reply(xid, ErrorCode::Ok, Some(&GetAclResponse { acl, stat })))
            }
            Request::GetAllChildrenNumber(r) => {
                let n = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
                check_acl(&n.acl, perms::READ, auth, self.config.skip_acl)?;
                let total_number = self.tree.all_children_number(&r.path);
                Ok(self.reply(
                    xid,
                    ErrorCode::Ok,
                    Some(&GetAllChildrenNumberResponse { total_number }),
                ))
            }
            Request::GetEphemerals(r) => {
                let session = self.conns.get(&conn).map(|c| c.session_id).unwrap_or(0);
                let all = self.tree.ephemerals_of(session);
                let prefix = r.prefix_path.trim();
                let ephemerals = if prefix.is_empty() || prefix == "/" {
                    all
                } else {
                    all.into_iter()
                        .filter(|p| p.starts_with(&r.prefix_path))
                        .collect()
                };
                Ok(self.reply(
                    xid,
                    ErrorCode::Ok,
                    Some(&GetEphemeralsResponse { ephemerals }),
                ))
            }
            Request::WhoAmI => {
                let client_info = client_infos(auth);
                Ok(self.reply(xid, ErrorCode::Ok, Some(&WhoAmIResponse { client_info })))
            }
            Request::Sync(r) => {
                Ok(self.reply(xid, ErrorCode::Ok, Some(&SyncResponse { path: r.path })))
            }
            Request::SetWatches(s) => {
                let mut notes = Vec::new();
                self.tree.set_watches(
                    s.relative_zxid,
                    &s.data_watches,
                    &s.exist_watches,
                    &s.child_watches,
                    &[],
                    &[],
                    conn,
                    &mut notes,
                );
                self.dispatch(notes);
                Ok(self.reply(xid, ErrorCode::Ok, None))
            }
            Request::SetWatches2(s) => {
                let mut notes = Vec::new();
                self.tree.set_watches(
                    s.relative_zxid,
                    &s.data_watches,
                    &s.exist_watches,
                    &s.child_watches,
                    &s.persistent_watches,
                    &s.persistent_recursive_watches,
                    conn,
                    &mut notes,
                );
                self.dispatch(notes);
                Ok(self.reply(xid, ErrorCode::Ok, None))
            }
            Request::AddWatch(r) => {
                let mode = match r.mode {
                    add_watch_mode::PERSISTENT => WatchMode::Persistent,
                    add_watch_mode::PERSISTENT_RECURSIVE => WatchMode::PersistentRecursive,
                    _ => return Err(ErrorCode::MarshallingError),
                };
                self.tree.add_watch(&r.path, conn, mode);
                Ok(self.reply(xid, ErrorCode::Ok, Some(&ErrorResponse { err: 0 })))
            }
            Request::CheckWatches(r) => {
                if !self.tree.watch_op(&r.path, r.watcher_type, conn, false) {
                    return Err(ErrorCode::NoWatcher);
                }
                Ok(self.reply(xid, ErrorCode::Ok, None))
            }
            Request::RemoveWatches(r) => {
                if !self.tree.watch_op(&r.path, r.watcher_type, conn, true) {
                    return Err(ErrorCode::NoWatcher);
                }
                Ok(self.reply(xid, ErrorCode::Ok, None))
            }
            Request::MultiRead(ops) => {
                if ops.iter().any(|o| !o.is_read()) {
                    return Err(ErrorCode::MarshallingError);
                }
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    let r = match op {
                        MultiOp::GetChildren(g) => self
                            .get_children(conn, auth, &g.path, false)
                            .map(|(children, _)| MultiResult::GetChildren { children }),
                        MultiOp::GetData(g) => self.get_data(conn, auth, &g.path, false).map(|d| {
                            MultiResult::GetData {
                                data: d.data,
                                stat: d.stat,
                            }
                        }),
                        _ => return Err(ErrorCode::MarshallingError),
                    };
                    results.push(r.unwrap_or_else(|e| MultiResult::Error { err: e.code() }));
                }
                Ok(self.reply(xid, ErrorCode::Ok, Some(&MultiBody(results))))
            }
            _ => Err(ErrorCode::Unimplemented),
        })();
        match res {
            Ok(r) => (ErrorCode::Ok, r),
            Err(e) => (e, self.reply(xid, e, None)),
        }
    }

    /// Periodic work: expire sessions, reap empty containers and expired TTL nodes.
    pub fn tick(&mut self, now_ms: i64) {
        // The leader alone decides expiry and reaps containers (ZooKeeper's
        // LeaderSessionTracker and ContainerManager); learners apply what it logs.
        if !matches!(
            self.replication,
            Replication::Standalone | Replication::Leader
        ) {
            self.settle(now_ms);
            return;
        }
        for id in self.sessions.expired(now_ms) {
            tracing::info!("Expiring session 0x{:x}", id);
            self.close_session(id, now_ms);
        }
        let interval = self.config.container_check_interval_ms as i64;
        if now_ms - self.last_container_check_ms >= interval {
            self.last_container_check_ms = now_ms;
            self.reap_containers(now_ms);
        }
        self.settle(now_ms);
    }

    /// Takes a session out of the tracker as its closeSession is prepared (see `closing`).
    fn start_closing(&mut self, id: i64, now_ms: i64) {
        if let Some(s) = self.sessions.remove(id) {
            if self.zab.is_some() {
                self.closing.insert(id, (s.timeout_ms, now_ms));
            }
        }
    }

    fn close_session(&mut self, id: i64, now_ms: i64) {
        let conn = self.sessions.get(id).and_then(|s| s.conn);
        let pctx = self.prep_ctx(id, 0, &[], now_ms);
        let txn = self.prep.close_session(&self.tree, &pctx);
        self.start_closing(id, now_ms);
        if let Some(c) = conn {
            if let Some(cs) = self.conns.get_mut(&c) {
                cs.session_id = 0;
            }
        }
        self.propose(txn, Origin::Expire { conn });
    }

    /// ContainerManager: delete containers that had children and have none now, and TTL
    /// nodes without children whose ttl has passed since their last change.
    fn reap_containers(&mut self, now_ms: i64) {
        let mut candidates = Vec::new();
        for p in self.tree.containers() {
            if let Some(n) = self.tree.get(p) {
                // cversion > 0: it once had a child. A container that never had one is
                // kept, unless znode.container.maxNeverUsedIntervalMs (0 = off) passed.
                let never_used_limit = self.config.container_max_never_used_interval_ms as i64;
                if n.num_children() == 0
                    && (n.stat.cversion > 0
                        || (never_used_limit != 0 && now_ms - n.stat.mtime > never_used_limit))
                {
                    candidates.push(p.clone());
                }
            }
        }
        for p in self.tree.ttls() {
            if let Some(n) = self.tree.get(p) {
                if n.num_children() == 0
                    && ephemeral_type(n.stat.ephemeral_owner) == EphemeralType::Ttl
                {
                    let ttl = ttl_of_owner(n.stat.ephemeral_owner);
                    if ttl != 0 && now_ms - n.stat.mtime > ttl {
                        candidates.push(p.clone());
                    }
                }
            }
        }
        let minute = now_ms / 60_000;
        if self.container_budget.0 != minute {
            self.container_budget = (minute, 0);
        }
        for p in candidates {
            if self.container_budget.1 >= self.config.container_max_per_minute {
                break;
            }
            self.container_budget.1 += 1;
            let pctx = self.prep_ctx(0, 0, &[], now_ms);
            let txn = self
                .prep
                .prep_write(&self.tree, &pctx, Request::DeleteContainer(p));
            // A failed delete (the container got a child meanwhile) is logged as an
            // ErrorTxn like any failed write, keeping the zxid sequence gap-free.
            self.propose(txn, Origin::Reaper);
        }
    }
}

enum Reply {
    Frame(Vec<u8>),
    /// Send (optionally) then close the connection.
    Close(Option<Vec<u8>>),
}

fn is_write_op(op_type: i32) -> bool {
    OpCode::from_i32(op_type).is_some_and(|op| is_write(op) || op == OpCode::CloseSession)
}

fn is_write(op: OpCode) -> bool {
    matches!(
        op,
        OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::DeleteContainer
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Check
            | OpCode::Multi
            | OpCode::Reconfig
    )
}

/// The short op names ZooKeeper's `cons` prints as lastOp.
fn last_op_name(op: OpCode) -> &'static str {
    match op {
        OpCode::Create | OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => "CREA",
        OpCode::Delete | OpCode::DeleteContainer => "DELE",
        OpCode::SetData => "SETD",
        OpCode::SetAcl => "SETA",
        OpCode::Check => "CHEC",
        OpCode::Multi => "MULT",
        OpCode::MultiRead => "MLTR",
        OpCode::Exists => "EXIS",
        OpCode::GetData => "GETD",
        OpCode::GetAcl => "GETA",
        OpCode::GetChildren | OpCode::GetChildren2 => "GETC",
        OpCode::GetAllChildrenNumber => "GETACN",
        OpCode::Sync => "SYNC",
        OpCode::SetWatches => "SETW",
        OpCode::SetWatches2 => "STW2",
        OpCode::AddWatch => "ADDW",
        OpCode::CheckWatches => "CHKW",
        OpCode::RemoveWatches => "REMW",
        OpCode::WhoAmI => "HOMI",
        OpCode::GetEphemerals => "GETE",
        OpCode::Reconfig => "RECO",
        _ => "NA",
    }
}

#[cfg(test)]
mod tests;
