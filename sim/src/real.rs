//! The real-server simulation: every simulated server is a real [`zkd_server::core::Core`]
//! with its real zab peer, driven through the server's own host glue
//! ([`zkd_server::ensemble::execute`] and [`zkd_server::ensemble::to_zab`], in the order
//! `ensemble::route` uses), over zkd-storage's [`Storage`] (txn log, snapshot store) and
//! [`EpochFiles`] on a [`FaultyBackend`] per server; simulated clients speak the client
//! protocol to the cores (`accept`/`connect`/`request`, frames decoded from the outputs).
//!
//! Owns the virtual network, virtual time, the clients and the checks of ZooKeeper's
//! promises. Never changes server behaviour: the only sim-side choices are when messages
//! arrive, when fsyncs complete, when fuzzy snapshots are taken (step by step, interleaved
//! with applies, as `persist::take_snapshot` does), and when servers crash.
//!
//! A restart rebuilds the core the way `persist::open` does for an ensemble server:
//! `Storage::open` (newest valid snapshot + the log after it), the tree restored from the
//! snapshot only, the logged txns handed to zab in `Restored`.
//!
//! Failpoints (crash right after): acceptedEpoch durable, currentEpoch durable, the ACK of
//! NEWLEADER sent, a leader's SNAP persisted but the log not yet truncated (the host's
//! `truncate_log` is skipped and the server crashes before anything else happens, which is
//! indistinguishable from crashing before it). A crash in the middle of a local fuzzy
//! snapshot happens whenever a random crash lands while one is in progress.
//!
//! Checks (see [`RealChecker`] and [`RealSim::heal_and_check`]):
//! - every tick: multis all-or-nothing on every live server;
//! - every step: LeaderUniqueness, ZxidUniqueness, PrefixConsistency/Agreement/TotalOrder
//!   over the txns each server applies (zab's `Apply` outputs), Integrity, PrimaryIntegrity,
//!   CommittedLogMonotonicity across SNAPs and restarts; per client reply: P4 (a session's
//!   observed zxids never decrease, across reconnects too);
//! - after healing: every server up and converged; all trees equal (paths, full Stats, data,
//!   and `zk_tree_digest`); every acknowledged write in the delivered sequence and present
//!   with the Stat and data it was acknowledged with unless later changed; no ephemeral
//!   whose owner is not a live session of the leader, and none of a session whose close was
//!   acknowledged or whose expiry a client saw; sequential names strictly increasing in
//!   zxid order per parent; multis all-or-nothing on every server.
//! - per client `sync` (SyncConsistency): its reply's zxid covers every write acknowledged
//!   (to any client) before it was sent, of an epoch not above the server's leader's;
//! - per handshake: a new session's id was never handed out before;
//! - after healing, also: every server tracks the same sessions.
//!
//! Time: a unit is 500 ms of server time (tickTime 2000 ms = 4 units); session timeouts
//! 6-10 s. Clients pick a random live server, ping every tick, reconnect (resuming their
//! session with its password and last seen zxid) after losing their connection, sometimes
//! go silent for good (their session must expire) or close their session.
//!
//! Not modelled / not checked: watches (no client sets one, so notification order and
//! delivery are unchecked), ACLs and auth, TTL and container nodes, ephemeral-sequential
//! nodes, read results beyond their zxid (P4), reconfig, failed fsyncs and bit rot (the
//! server's `execute` would `exit` the process, which a test cannot survive), per-message
//! loss on quorum links (whole connections break instead), clock skew (all tick together).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zkd_proto::records::*;
use zkd_proto::request::{decode_multi_results, MultiOp, MultiResult};
use zkd_proto::{CreateMode, OpCode, Reader, Record, Request, Writer};
use zkd_server::config::{Config as ServerConfig, PeerRole, ServerSpec};
use zkd_server::core::{Core, Output as CoreOutput, Replication, RestoredSnapshot};
use zkd_server::ensemble::{execute, to_zab, zab_config, EnsembleHost, EnsembleIo, PeerSender};
use zkd_server::tree::snapshot::{deserialize_snapshot, FuzzySnapshot, SnapshotSession};
use zkd_server::watch::ConnId;
use zkd_storage::{
    Backend, EpochFiles, FaultyBackend, LogOptions, Storage, StorageOptions, TxnLog,
};
use zkd_zab::{zxid_epoch, Message, Output as ZabOutput, ServerId, Zxid};

use crate::check::Violation;
use crate::node::Failpoint;
use crate::UNITS_PER_TICK;

const T0: i64 = 1_000_000;
/// tickTime of the simulated servers.
const TICK_MS: i64 = 2000;
const DATA: &str = "/data";
const LOG: &str = "/log";

/// Test-only bugs planted in the server side of the sim, to show the checker catches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerBug {
    /// A learner's CloseSession apply leaves the session's ephemerals in place (the class
    /// of ZK-2355/4678): done by re-creating the ephemerals after the real apply.
    KeepEphemeralsOnClose,
    /// A learner answers its client's write before the txn commits (ack-before-commit):
    /// the sim hands the client a success reply with the zxid it predicts.
    AnswerBeforeCommit,
    /// A learner answers `sync` at once instead of through the leader's barrier.
    LocalSync,
}

/// Knobs of one real-server run.
#[derive(Debug, Clone)]
pub struct RealOptions {
    pub seed: u64,
    pub voters: usize,
    pub observers: usize,
    pub fault_ticks: u64,
    pub heal_ticks: u64,
    pub clients: usize,
    /// Probability per unit that a connected client issues a request.
    pub request_rate: f64,
    pub loss: f64,
    pub duplicate: f64,
    pub max_delay: u64,
    pub crash_rate: f64,
    pub disconnect_rate: f64,
    pub partition_rate: f64,
    /// Probability per unit that a server begins a fuzzy snapshot.
    pub snapshot_rate: f64,
    pub fsync_rate: f64,
    pub failpoint_rate: f64,
    /// Probability per tick that a connected client goes silent for good (its session
    /// must then expire).
    pub abandon_rate: f64,
    pub max_zxid_counter: u32,
    pub committed_log_max: usize,
    pub bug: Option<ServerBug>,
    /// Probability per time unit that the packets due at it reach each server in runs:
    /// all of one server's due packets (up to `BATCH_MAX`, per-link order kept) go to its
    /// core before one pump, as zkd's ensemble event loop hands zab what is already
    /// queued in one core call. 0 (the default) delivers and pumps one packet at a time,
    /// and draws nothing from the seed's random stream.
    pub batch_rate: f64,
}

/// Packets one server takes per pump when batched (net.rs: ENSEMBLE_EVENTS_PER_CALL).
pub const BATCH_MAX: usize = 64;

impl RealOptions {
    pub fn new(seed: u64, voters: usize) -> Self {
        RealOptions {
            seed,
            voters,
            observers: 0,
            fault_ticks: 150,
            heal_ticks: 150,
            clients: 5,
            request_rate: 0.1,
            loss: 0.05,
            duplicate: 0.03,
            max_delay: 6,
            crash_rate: 0.004,
            disconnect_rate: 0.002,
            partition_rate: 0.002,
            snapshot_rate: 0.01,
            fsync_rate: 0.4,
            failpoint_rate: 0.3,
            abandon_rate: 0.01,
            max_zxid_counter: u32::MAX,
            committed_log_max: 8,
            bug: None,
            batch_rate: 0.0,
        }
    }

    /// The defaults with a zxid counter of 60: leaders exhaust their epoch mid-run, so zab
    /// refuses proposals the core already prepared (an expiry's closeSession among them).
    pub fn exhausting(seed: u64, voters: usize) -> Self {
        RealOptions {
            max_zxid_counter: 60,
            ..RealOptions::new(seed, voters)
        }
    }

    /// Far more faults: frequent crashes, partitions, connection breaks, 20% datagram
    /// loss, every failpoint armed at random, a small committed log (more SNAPs).
    pub fn storm(seed: u64, voters: usize) -> Self {
        RealOptions {
            loss: 0.2,
            duplicate: 0.1,
            max_delay: 12,
            crash_rate: 0.02,
            disconnect_rate: 0.01,
            partition_rate: 0.01,
            snapshot_rate: 0.02,
            failpoint_rate: 1.0,
            committed_log_max: 4,
            ..RealOptions::new(seed, voters)
        }
    }

    /// No random faults; scenarios script their own.
    pub fn quiet(seed: u64, voters: usize) -> Self {
        RealOptions {
            loss: 0.0,
            duplicate: 0.0,
            crash_rate: 0.0,
            disconnect_rate: 0.0,
            partition_rate: 0.0,
            snapshot_rate: 0.0,
            failpoint_rate: 0.0,
            abandon_rate: 0.0,
            max_zxid_counter: u32::MAX,
            ..RealOptions::new(seed, voters)
        }
    }
}

/// Coverage counters.
#[derive(Debug, Default, Clone)]
pub struct RealStats {
    pub crashes: u64,
    pub failpoint_crashes: BTreeMap<&'static str, u64>,
    pub restarts: u64,
    pub partitions: u64,
    pub applied: u64,
    pub replayed_applies: u64,
    pub acked_writes: u64,
    pub failed_writes: u64,
    pub reads: u64,
    pub syncs: u64,
    pub multis_ok: u64,
    pub multis_failed: u64,
    pub sessions_created: u64,
    pub reconnects: u64,
    pub expired_seen: u64,
    pub closes_acked: u64,
    pub fuzzy_snapshots: u64,
    /// Fuzzy snapshots during which the tree changed (their content is really fuzzy).
    pub fuzzy_snapshots_spanning: u64,
    /// Restarts from a snapshot whose tree holds txns after its zxid.
    pub fuzzy_restarts: u64,
    pub snap_restores: u64,
    pub max_epoch: u32,
    /// Pumps that followed more than one delivered packet (`batch_rate`), and the most
    /// packets one pump followed.
    pub batched_pumps: u64,
    pub max_batch: usize,
}

impl RealStats {
    /// Adds another run's counters to these.
    pub fn merge(&mut self, o: &RealStats) {
        for (k, v) in &o.failpoint_crashes {
            *self.failpoint_crashes.entry(k).or_default() += v;
        }
        self.crashes += o.crashes;
        self.restarts += o.restarts;
        self.partitions += o.partitions;
        self.applied += o.applied;
        self.replayed_applies += o.replayed_applies;
        self.acked_writes += o.acked_writes;
        self.failed_writes += o.failed_writes;
        self.reads += o.reads;
        self.syncs += o.syncs;
        self.multis_ok += o.multis_ok;
        self.multis_failed += o.multis_failed;
        self.sessions_created += o.sessions_created;
        self.reconnects += o.reconnects;
        self.expired_seen += o.expired_seen;
        self.closes_acked += o.closes_acked;
        self.fuzzy_snapshots += o.fuzzy_snapshots;
        self.fuzzy_snapshots_spanning += o.fuzzy_snapshots_spanning;
        self.fuzzy_restarts += o.fuzzy_restarts;
        self.snap_restores += o.snap_restores;
        self.max_epoch = self.max_epoch.max(o.max_epoch);
        self.batched_pumps += o.batched_pumps;
        self.max_batch = self.max_batch.max(o.max_batch);
    }
}

#[derive(Default)]
struct Outbox {
    msgs: Mutex<Vec<(ServerId, Message)>>,
    disconnects: Mutex<Vec<ServerId>>,
}

impl PeerSender for Outbox {
    fn send(&self, to: ServerId, msg: &Message) {
        self.msgs.lock().unwrap().push((to, msg.clone()));
    }
    fn disconnect(&self, peer: ServerId) {
        self.disconnects.lock().unwrap().push(peer);
    }
}

struct Host {
    io: EnsembleIo,
    log: TxnLog,
    /// Every append since the last look (for ZxidUniqueness).
    appended: Mutex<Vec<(Zxid, Vec<u8>)>>,
    unsynced: Mutex<bool>,
    /// Failpoint SNAP-before-log-truncate: skip the truncation, the sim crashes next.
    skip_truncate: Mutex<bool>,
}

impl EnsembleHost for Host {
    fn append(&self, zxid: i64, payload: Vec<u8>) {
        self.log
            .append(zxid, &payload)
            .expect("append on the sim disk");
        *self.unsynced.lock().unwrap() = true;
        self.appended.lock().unwrap().push((zxid, payload));
    }
    fn truncate_log(&self, after: i64) -> Result<(), String> {
        if *self.skip_truncate.lock().unwrap() {
            return Ok(());
        }
        self.log.truncate_after(after).map_err(|e| e.to_string())
    }
    fn io(&self) -> &EnsembleIo {
        &self.io
    }
}

/// One simulated server running the real core.
pub struct RealServer {
    pub id: ServerId,
    pub disk: Arc<FaultyBackend>,
    pub core: Option<Core>,
    host: Option<Host>,
    outbox: Arc<Outbox>,
    snap: Option<FuzzySnapshot>,
    pub armed: BTreeSet<Failpoint>,
    /// How many txns of the global delivered sequence this server has applied.
    pub pos: usize,
    pub stall_fsync: bool,
}

impl RealServer {
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }
    pub fn zab(&self) -> Option<&zkd_zab::Zab> {
        self.core.as_ref().and_then(|c| c.zab.as_deref())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        path: String,
        data: Vec<u8>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
    },
    Delete {
        path: String,
    },
    Multi {
        id: u64,
        paths: Vec<String>,
    },
    Read,
    /// `required`: the highest write acknowledged (to anyone) before the sync was sent,
    /// of an epoch not above the epoch of the server's leader.
    Sync {
        required: Zxid,
    },
    Close,
}

/// A simulated client: one session, reconnecting to another server when its own goes.
#[derive(Debug)]
struct Client {
    session: i64,
    server: Option<ServerId>,
    conn: Option<ConnId>,
    connecting: bool,
    next_xid: i32,
    pending: BTreeMap<i32, Op>,
    last_zxid: i64,
    silent: bool,
    /// Closed (acknowledged) or expired (seen): done for good.
    done: bool,
    known_versions: BTreeMap<String, i32>,
    /// Replies to ignore (planted bug `AnswerBeforeCommit` answered these already).
    answered: BTreeSet<i32>,
    eph_count: u64,
    /// Units until the next reconnect attempt.
    backoff: u64,
}

/// An acknowledged change to one path.
#[derive(Debug, Clone)]
enum Acked {
    Write {
        zxid: Zxid,
        stat: Stat,
        data: Vec<u8>,
    },
    Delete {
        zxid: Zxid,
    },
}

impl Acked {
    fn zxid(&self) -> Zxid {
        match self {
            Acked::Write { zxid, .. } | Acked::Delete { zxid } => *zxid,
        }
    }
}

/// The Zab invariants over the real servers' applies, and the client-visible promises.
#[derive(Debug, Default)]
pub struct RealChecker {
    pub ledger: Vec<(Zxid, Vec<u8>)>,
    index: HashMap<Zxid, usize>,
    payloads: HashMap<Zxid, Vec<u8>>,
    leaders: BTreeMap<u32, ServerId>,
    max_committed: Zxid,
    violation: Option<(u64, Violation)>,
    acked: BTreeMap<String, Vec<Acked>>,
    acked_zxids: BTreeSet<Zxid>,
    deletes_issued: BTreeSet<String>,
    /// Every session id a handshake handed out (each must be new).
    issued_sessions: BTreeSet<i64>,
    /// Sessions whose end a client saw (close acknowledged, or expired on reconnect).
    dead_sessions: BTreeSet<i64>,
    /// parent -> (zxid, sequence number) of acknowledged sequential creates.
    sequentials: BTreeMap<String, Vec<(Zxid, i64)>>,
    /// multi id -> (paths it creates, Some(true) acked ok, Some(false) failed, None unknown)
    multis: BTreeMap<u64, (Vec<String>, Option<bool>)>,
}

impl RealChecker {
    pub fn fail(&mut self, now: u64, v: Violation) {
        if self.violation.is_none() {
            self.violation = Some((now, v));
        }
    }
    pub fn failed(&self) -> bool {
        self.violation.is_some()
    }
    pub fn violation(&self) -> Option<Violation> {
        self.violation
            .as_ref()
            .map(|(t, v)| Violation(format!("at time {t}: {v}")))
    }

    fn on_append(&mut self, id: ServerId, zxid: Zxid, payload: &[u8]) -> Result<(), String> {
        match self.payloads.get(&zxid) {
            Some(p) if p != payload => Err(format!(
                "ZxidUniqueness: server {id} logged {zxid:#x} with a txn differing from another \
                 server's"
            )),
            Some(_) => Ok(()),
            None => {
                self.payloads.insert(zxid, payload.to_vec());
                Ok(())
            }
        }
    }

    /// `pos` is the server's position in the delivered sequence; returns the new one.
    fn on_apply(
        &mut self,
        id: ServerId,
        pos: usize,
        zxid: Zxid,
        payload: &[u8],
    ) -> Result<(usize, bool), String> {
        if zxid > self.max_committed {
            return Err(format!(
                "Integrity: server {id} applied {zxid:#x} but no leader committed past {:#x}",
                self.max_committed
            ));
        }
        if pos > 0 && zxid <= self.ledger[pos - 1].0 {
            // A replay zab asks for (the core skips it): it must be the same txn.
            return match self.index.get(&zxid) {
                Some(&i) if self.ledger[i].1 == payload => Ok((pos, true)),
                _ => Err(format!(
                    "TotalOrder: server {id} applied {zxid:#x} after {:#x}",
                    self.ledger[pos - 1].0
                )),
            };
        }
        match self.ledger.get(pos) {
            Some(g) if g.0 != zxid || g.1 != payload => Err(format!(
                "Agreement/PrefixConsistency: server {id} applied {zxid:#x} as txn #{pos}, \
                 others applied {:#x} there",
                g.0
            )),
            Some(_) => Ok((pos + 1, false)),
            None => {
                self.index.insert(zxid, pos);
                self.ledger.push((zxid, payload.to_vec()));
                Ok((pos + 1, false))
            }
        }
    }

    /// The delivered-sequence position of a state at `zxid` (a snapshot's).
    fn position_of(
        &self,
        id: ServerId,
        zxid: Zxid,
        old: usize,
        what: &str,
    ) -> Result<usize, String> {
        let p = if zxid == 0 {
            0
        } else {
            match self.index.get(&zxid) {
                Some(i) => i + 1,
                None => {
                    return Err(format!(
                        "CommittedLogMonotonicity: server {id}'s {what} at {zxid:#x} is not a \
                         delivered txn"
                    ))
                }
            }
        };
        if what == "SNAP" && p < old {
            return Err(format!(
                "CommittedLogMonotonicity: a SNAP at {zxid:#x} moves server {id} back from txn \
                 #{old} to #{p}"
            ));
        }
        Ok(p)
    }

    fn record_write(&mut self, path: &str, zxid: Zxid, stat: Stat, data: Vec<u8>) {
        self.acked_zxids.insert(zxid);
        self.acked
            .entry(path.to_string())
            .or_default()
            .push(Acked::Write { zxid, stat, data });
    }
}

#[derive(Debug, Clone)]
struct Packet {
    from: ServerId,
    to: ServerId,
    msg: Message,
}

/// The whole simulated ensemble of real servers with its clients.
pub struct RealSim {
    pub opts: RealOptions,
    pub rng: StdRng,
    pub now: u64,
    pub servers: BTreeMap<ServerId, RealServer>,
    queue: BTreeMap<(u64, u64), Packet>,
    seq: u64,
    link_last: BTreeMap<(ServerId, ServerId), u64>,
    pub partitioned: BTreeSet<ServerId>,
    pub faults: bool,
    pub traffic: bool,
    /// Connected, non-silent clients ping every tick.
    pub pings: bool,
    pub checker: RealChecker,
    pub stats: RealStats,
    clients: Vec<Client>,
    next_conn: ConnId,
    next_multi: u64,
    /// conn -> client index.
    conn_owner: BTreeMap<ConnId, usize>,
    pending_breaks: Vec<(ServerId, ServerId)>,
    /// Digest of everything that happened (for the determinism test).
    pub trace_hash: u64,
}

fn now_ms(now: u64) -> i64 {
    T0 + now as i64 * (TICK_MS / UNITS_PER_TICK as i64)
}

fn server_config(id: ServerId, voters: usize, observers: usize) -> ServerConfig {
    let mut c = ServerConfig {
        extended_types_enabled: true,
        my_id: Some(id),
        standalone_enabled: false,
        tick_time_ms: TICK_MS as u32,
        min_session_timeout_ms: 2 * TICK_MS as u32,
        max_session_timeout_ms: 20 * TICK_MS as u32,
        data_dir: DATA.into(),
        data_log_dir: LOG.into(),
        ..Default::default()
    };
    for n in 1..=(voters + observers) as u64 {
        c.servers.push(ServerSpec {
            id: n,
            host: "127.0.0.1".into(),
            quorum_port: 2000 + n as u16,
            election_port: 3000 + n as u16,
            role: if n as usize <= voters {
                PeerRole::Participant
            } else {
                PeerRole::Observer
            },
            client_host: None,
            client_port: None,
        });
    }
    c
}

fn storage_options() -> StorageOptions {
    StorageOptions {
        log: LogOptions {
            pre_alloc_bytes: 0,
            segment_max_bytes: 16 << 10,
            write_buffer_bytes: 0,
            ..LogOptions::default()
        },
        compress_snapshots: false,
    }
}

fn stat_of(n: &zkd_server::tree::NodeStat) -> (i64, i64, i32, i32, i32, i64, i64) {
    (
        n.czxid,
        n.mzxid,
        n.version,
        n.cversion,
        n.aversion,
        n.ephemeral_owner,
        n.pzxid,
    )
}

impl RealSim {
    pub fn new(opts: RealOptions) -> RealSim {
        let mut sim = RealSim {
            rng: StdRng::seed_from_u64(opts.seed),
            now: 0,
            servers: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            link_last: BTreeMap::new(),
            partitioned: BTreeSet::new(),
            faults: true,
            traffic: true,
            pings: true,
            checker: RealChecker::default(),
            stats: RealStats::default(),
            clients: Vec::new(),
            next_conn: 1,
            next_multi: 0,
            conn_owner: BTreeMap::new(),
            pending_breaks: Vec::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            opts,
        };
        for id in 1..=(sim.opts.voters + sim.opts.observers) as u64 {
            let disk = Arc::new(FaultyBackend::new());
            sim.servers.insert(
                id,
                RealServer {
                    id,
                    disk,
                    core: None,
                    host: None,
                    outbox: Arc::new(Outbox::default()),
                    snap: None,
                    armed: BTreeSet::new(),
                    pos: 0,
                    stall_fsync: false,
                },
            );
        }
        for i in 0..sim.opts.clients {
            let _ = i;
            sim.clients.push(Client {
                session: 0,
                server: None,
                conn: None,
                connecting: false,
                next_xid: 1,
                pending: BTreeMap::new(),
                last_zxid: 0,
                silent: false,
                done: false,
                known_versions: BTreeMap::new(),
                answered: BTreeSet::new(),
                eph_count: 0,
                backoff: 0,
            });
        }
        let ids: Vec<ServerId> = sim.servers.keys().copied().collect();
        for id in ids {
            sim.start(id);
        }
        sim
    }

    fn mix(&mut self, v: u64) {
        self.trace_hash = (self.trace_hash ^ v).wrapping_mul(0x100_0000_01b3);
    }

    /// Rebuilds a server from its disk, as `persist::open` does for an ensemble server.
    fn open(&mut self, id: ServerId, seed: u64) -> Result<(), String> {
        let now = now_ms(self.now);
        let voters = self.opts.voters;
        let observers = self.opts.observers;
        let (max_counter, clm) = (self.opts.max_zxid_counter, self.opts.committed_log_max);
        let s = self.servers.get_mut(&id).unwrap();
        let backend: Arc<dyn Backend> = s.disk.clone();
        let (storage, recovered) = Storage::open(
            backend.clone(),
            Path::new(DATA),
            Path::new(LOG),
            storage_options(),
        )
        .map_err(|e| format!("storage: {e}"))?;
        let cfg = server_config(id, voters, observers);
        let mut core = Core::new(cfg.clone(), now);
        let mut fuzzy = false;
        let snapshot = match recovered.snapshot {
            Some((zxid, payload)) => {
                let (tree, sessions) = deserialize_snapshot(&payload.to_vec())
                    .map_err(|e| format!("snapshot {zxid:#x}: {e}"))?;
                // Fuzzy: it holds changes made after the zxid it is named after.
                fuzzy = tree.paths().iter().any(|p| {
                    let s = &tree.get(p).unwrap().stat;
                    s.czxid.max(s.mzxid).max(s.pzxid) > zxid
                });
                Some(RestoredSnapshot {
                    tree,
                    sessions: sessions.iter().map(|s| (s.id, s.timeout_ms)).collect(),
                    zxid,
                })
            }
            None => None,
        };
        let snapshot_zxid = snapshot.as_ref().map_or(0, |s| s.zxid);
        core.restore(snapshot, &[], now);
        let epochs = EpochFiles::new(Path::new(DATA));
        let restored =
            zkd_server::ensemble::restored(&epochs, &*backend, snapshot_zxid, recovered.txns)?;
        let mut zcfg = zab_config(&cfg)?;
        zcfg.init_limit_ticks = 10;
        zcfg.sync_limit_ticks = 5;
        zcfg.max_zxid_counter = max_counter;
        zcfg.committed_log_max = clm;
        let zab = zkd_zab::Zab::new(zcfg, restored, seed).map_err(|e| e.to_string())?;
        core.zab = Some(Box::new(zab));
        core.set_replication(Replication::Unavailable, 0, now);
        core.take_output();
        core.durable = true;
        let storage = Arc::new(storage);
        s.outbox = Arc::new(Outbox::default());
        s.host = Some(Host {
            io: EnsembleIo {
                sender: s.outbox.clone(),
                epochs,
                backend,
                storage: storage.clone(),
                peers: (1..=(voters + observers) as u64)
                    .filter(|p| *p != id)
                    .collect(),
            },
            log: storage.log().clone(),
            appended: Mutex::new(Vec::new()),
            unsynced: Mutex::new(false),
            skip_truncate: Mutex::new(false),
        });
        s.core = Some(core);
        s.snap = None;
        if fuzzy {
            self.stats.fuzzy_restarts += 1;
        }
        match self
            .checker
            .position_of(id, snapshot_zxid, 0, "restart snapshot")
        {
            Ok(p) => self.servers.get_mut(&id).unwrap().pos = p,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn start(&mut self, id: ServerId) {
        let seed = self.rng.gen::<u64>();
        match self.open(id, seed) {
            Ok(()) => self.pump(id),
            Err(e) => {
                let now = self.now;
                self.checker
                    .fail(now, Violation(format!("server {id} cannot restart: {e}")));
            }
        }
    }

    /// Power cut on `id`: unsynced bytes are lost, sometimes the last write is torn.
    pub fn crash(&mut self, id: ServerId) {
        if !self.servers[&id].is_up() {
            return;
        }
        self.stats.crashes += 1;
        let tear = self.rng.gen_bool(0.5);
        let tear_seed = self.rng.gen::<u64>();
        self.power_cut(id, tear.then_some(tear_seed));
    }

    fn power_cut(&mut self, id: ServerId, tear: Option<u64>) {
        self.mix(0xdead ^ id);
        let s = self.servers.get_mut(&id).unwrap();
        s.core = None;
        s.host = None;
        s.snap = None;
        s.outbox = Arc::new(Outbox::default());
        match tear {
            Some(seed) => {
                s.disk.crash_tearing(seed);
            }
            None => s.disk.crash(),
        }
        // Every client connection to it is gone.
        let conns: Vec<ConnId> = self
            .conn_owner
            .iter()
            .filter(|(_, c)| self.clients[**c].server == Some(id))
            .map(|(k, _)| *k)
            .collect();
        for c in conns {
            self.client_lost(c);
        }
        let others: Vec<ServerId> = self.servers.keys().copied().filter(|o| *o != id).collect();
        for o in others {
            self.break_link(id, o);
        }
    }

    pub fn restart(&mut self, id: ServerId) {
        if self.servers[&id].is_up() {
            return;
        }
        self.stats.restarts += 1;
        self.start(id);
    }

    fn break_link(&mut self, a: ServerId, b: ServerId) {
        self.queue.retain(|_, p| {
            p.msg.is_election() || !((p.from == a && p.to == b) || (p.from == b && p.to == a))
        });
        self.link_last.remove(&(a, b));
        self.link_last.remove(&(b, a));
        for (x, y) in [(a, b), (b, a)] {
            if let Some(z) = self
                .servers
                .get_mut(&x)
                .and_then(|s| s.core.as_mut())
                .and_then(|c| c.zab.as_mut())
            {
                z.disconnected(y);
            }
        }
        self.pump(a);
        self.pump(b);
    }

    fn separated(&self, a: ServerId, b: ServerId) -> bool {
        self.partitioned.contains(&a) != self.partitioned.contains(&b)
    }

    pub fn partition(&mut self, side: &[ServerId]) {
        self.partitioned = side.iter().copied().collect();
        self.stats.partitions += 1;
        let ids: Vec<ServerId> = self.servers.keys().copied().collect();
        for &a in &ids {
            for &b in &ids {
                if a < b && self.separated(a, b) {
                    self.break_link(a, b);
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.partitioned.clear();
    }

    fn schedule(&mut self, from: ServerId, to: ServerId, msg: Message) {
        let down = !self.servers.get(&to).is_some_and(|s| s.is_up());
        if msg.is_election() {
            if down || self.separated(from, to) || self.rng.gen_bool(self.opts.loss) {
                return;
            }
            let copies = if self.rng.gen_bool(self.opts.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.rng.gen_range(1..=self.opts.max_delay);
                self.seq += 1;
                self.queue.insert(
                    (at, self.seq),
                    Packet {
                        from,
                        to,
                        msg: msg.clone(),
                    },
                );
            }
        } else {
            if down || self.separated(from, to) {
                self.pending_breaks.push((from, to));
                return;
            }
            let last = self.link_last.get(&(from, to)).copied().unwrap_or(0);
            let at = (self.now + self.rng.gen_range(1..=self.opts.max_delay)).max(last);
            self.link_last.insert((from, to), at);
            self.seq += 1;
            self.queue.insert((at, self.seq), Packet { from, to, msg });
        }
    }

    fn failpoint(&mut self, id: ServerId, fp: Failpoint) -> bool {
        let armed = self.servers.get_mut(&id).unwrap().armed.remove(&fp);
        let random = self.faults && self.rng.gen_bool(self.opts.failpoint_rate * 0.1);
        if armed || random {
            *self.stats.failpoint_crashes.entry(fp.name()).or_default() += 1;
            self.stats.crashes += 1;
            self.power_cut(id, None);
            return true;
        }
        false
    }

    /// `ensemble::route` for one server, with the sim's hooks around each zab output:
    /// client frames go to the clients, core outputs for zab to `to_zab`, zab's outputs to
    /// `execute`; failpoints may crash the server between two outputs.
    pub fn pump(&mut self, id: ServerId) {
        let now = now_ms(self.now);
        loop {
            let Some(s) = self.servers.get_mut(&id) else {
                return;
            };
            let Some(core) = s.core.as_mut() else {
                break;
            };
            let mut outs = core.take_output();
            let zab_outs = core.zab.as_mut().map(|z| z.ready()).unwrap_or_default();
            if outs.is_empty() && zab_outs.is_empty() {
                break;
            }
            // The core iterates a HashMap when it drops its clients: put connections in
            // a fixed order (stable: one connection's frames keep their order).
            outs.sort_by_key(|o| match o {
                CoreOutput::Send { conn, .. } | CoreOutput::Close { conn } => *conn,
                _ => 0,
            });
            let mut client_outs = Vec::new();
            for o in outs {
                match o {
                    CoreOutput::Send { .. } | CoreOutput::Close { .. } => client_outs.push(o),
                    CoreOutput::Persist { .. } => {
                        let t = self.now;
                        self.checker.fail(
                            t,
                            Violation(format!("server {id}: Persist output in an ensemble")),
                        );
                    }
                    CoreOutput::Sync { id: sync_id }
                        if self.opts.bug == Some(ServerBug::LocalSync)
                            && self.servers[&id].core.as_ref().unwrap().replication
                                == Replication::Learner =>
                    {
                        let core = self.servers.get_mut(&id).unwrap().core.as_mut().unwrap();
                        core.sync_done(sync_id, now);
                    }
                    other => {
                        let core = self.servers.get_mut(&id).unwrap().core.as_mut().unwrap();
                        to_zab(core, other, now);
                    }
                }
            }
            for o in client_outs {
                self.client_output(id, o);
            }
            for o in zab_outs {
                if !self.servers[&id].is_up() {
                    break;
                }
                if !self.execute_one(id, o, now) {
                    break;
                }
            }
            self.flush_appends(id);
        }
        // The messages it sent, and the connections it dropped.
        let Some(s) = self.servers.get(&id) else {
            return;
        };
        let msgs: Vec<_> = std::mem::take(&mut *s.outbox.msgs.lock().unwrap());
        let drops: Vec<_> = std::mem::take(&mut *s.outbox.disconnects.lock().unwrap());
        if s.is_up() {
            for (to, msg) in msgs {
                self.schedule(id, to, msg);
            }
            for p in drops {
                self.pending_breaks.push((id, p));
            }
        }
        let pending = std::mem::take(&mut self.pending_breaks);
        for (a, b) in pending {
            self.break_link(a, b);
        }
    }

    fn flush_appends(&mut self, id: ServerId) {
        let Some(h) = self.servers.get(&id).and_then(|s| s.host.as_ref()) else {
            return;
        };
        let appended: Vec<_> = std::mem::take(&mut *h.appended.lock().unwrap());
        for (z, p) in appended {
            if let Err(e) = self.checker.on_append(id, z, &p) {
                let t = self.now;
                self.checker.fail(t, Violation(e));
            }
        }
    }

    fn note_commits(&mut self) {
        for s in self.servers.values() {
            if let Some(z) = s.zab().filter(|z| z.established_epoch().is_some()) {
                self.checker.max_committed = self.checker.max_committed.max(z.committed_zxid());
            }
        }
    }

    /// Carries out one zab output; false if the server crashed at a failpoint.
    fn execute_one(&mut self, id: ServerId, o: ZabOutput, now: i64) -> bool {
        let t = self.now;
        let mut after: Option<Failpoint> = None;
        let mut bug_close: Option<(i64, Vec<String>)> = None;
        // `execute` stops the process on what it cannot carry out (a txn or snapshot that
        // does not decode): report those as violations, with the seed, instead.
        let fatal = match &o {
            ZabOutput::Apply { zxid, payload } => {
                match zkd_proto::txn::TxnEntry::from_bytes(payload) {
                    Ok(t) if t.header.zxid == *zxid => None,
                    Ok(t) => Some(format!("txn {zxid:#x} carries zxid {:#x}", t.header.zxid)),
                    Err(e) => Some(format!("txn {zxid:#x} does not decode: {e}")),
                }
            }
            ZabOutput::RestoreSnapshot { zxid, data } => deserialize_snapshot(data)
                .err()
                .map(|e| format!("the leader's snapshot {zxid:#x} does not load: {e}")),
            _ => None,
        };
        if let Some(e) = fatal {
            self.checker
                .fail(t, Violation(format!("server {id} would stop: {e}")));
            self.power_cut(id, None);
            return false;
        }
        match &o {
            ZabOutput::Apply { zxid, payload } => {
                self.note_commits();
                let pos = self.servers[&id].pos;
                match self.checker.on_apply(id, pos, *zxid, payload) {
                    Ok((p, replay)) => {
                        self.servers.get_mut(&id).unwrap().pos = p;
                        if replay {
                            self.stats.replayed_applies += 1;
                        } else {
                            self.stats.applied += 1;
                        }
                    }
                    Err(e) => self.checker.fail(t, Violation(e)),
                }
                self.mix(*zxid as u64 ^ id.rotate_left(48));
                if self.opts.bug == Some(ServerBug::KeepEphemeralsOnClose) {
                    let s = &self.servers[&id];
                    let core = s.core.as_ref().unwrap();
                    if core.replication == Replication::Learner {
                        if let Ok(txn) = zkd_proto::txn::TxnEntry::from_bytes(payload) {
                            if matches!(txn.body, zkd_proto::txn::TxnBody::CloseSession(_)) {
                                let sid = txn.header.client_id;
                                bug_close = Some((sid, core.tree.ephemerals_of(sid)));
                            }
                        }
                    }
                }
            }
            ZabOutput::PersistAcceptedEpoch(_) => after = Some(Failpoint::AfterAcceptedEpoch),
            ZabOutput::PersistCurrentEpoch(e) => {
                self.stats.max_epoch = self.stats.max_epoch.max(*e);
                after = Some(Failpoint::AfterCurrentEpoch)
            }
            ZabOutput::Send {
                msg: Message::Ack { zxid },
                ..
            } if zkd_zab::zxid_counter(*zxid) == 0 => after = Some(Failpoint::AfterNewLeaderAck),
            ZabOutput::RestoreSnapshot { zxid, .. } => {
                self.stats.snap_restores += 1;
                let pos = self.servers[&id].pos;
                match self.checker.position_of(id, *zxid, pos, "SNAP") {
                    Ok(p) => self.servers.get_mut(&id).unwrap().pos = p,
                    Err(e) => self.checker.fail(t, Violation(e)),
                }
                // A SNAP replaces the tree: a fuzzy snapshot in progress is void.
                self.servers.get_mut(&id).unwrap().snap = None;
                let fire = {
                    let armed = self.servers[&id]
                        .armed
                        .contains(&Failpoint::SnapshotBeforeLogTruncate);
                    armed || (self.faults && self.rng.gen_bool(self.opts.failpoint_rate * 0.1))
                };
                if fire {
                    self.servers
                        .get_mut(&id)
                        .unwrap()
                        .armed
                        .remove(&Failpoint::SnapshotBeforeLogTruncate);
                    *self.servers[&id]
                        .host
                        .as_ref()
                        .unwrap()
                        .skip_truncate
                        .lock()
                        .unwrap() = true;
                }
            }
            _ => {}
        }
        {
            let s = self.servers.get_mut(&id).unwrap();
            let (Some(core), Some(host)) = (s.core.as_mut(), s.host.as_ref()) else {
                return false;
            };
            execute(host, core, o, now);
            if let Some((sid, paths)) = bug_close {
                // Planted bug: put the closed session's ephemerals back.
                for p in paths {
                    if core.tree.get(&p).is_none() {
                        let z = core.tree.last_processed_zxid;
                        let h = zkd_proto::txn::TxnHeader {
                            client_id: sid,
                            cxid: 0,
                            zxid: z,
                            time: now,
                            txn_type: OpCode::Create as i32,
                        };
                        let body = zkd_proto::txn::TxnBody::Create(zkd_proto::txn::CreateTxn {
                            path: p.clone(),
                            data: Some(Vec::new()),
                            acl: Acl::open_unsafe(),
                            ephemeral: true,
                            parent_cversion: -1,
                        });
                        let mut ignored = Vec::new();
                        let lp = core.tree.last_processed_zxid;
                        core.tree.process_txn(&h, &body, &mut ignored);
                        core.tree.last_processed_zxid = lp;
                    }
                }
            }
            if *host.skip_truncate.lock().unwrap() {
                *self
                    .stats
                    .failpoint_crashes
                    .entry(Failpoint::SnapshotBeforeLogTruncate.name())
                    .or_default() += 1;
                self.stats.crashes += 1;
                self.power_cut(id, None);
                return false;
            }
        }
        if let Some(fp) = after {
            if self.failpoint(id, fp) {
                return false;
            }
        }
        true
    }

    // ---------------------------------------------------------------- clients

    fn client_output(&mut self, server: ServerId, o: CoreOutput) {
        match o {
            CoreOutput::Send { conn, frame } => {
                let Some(&ci) = self.conn_owner.get(&conn) else {
                    return;
                };
                self.client_frame(ci, server, &frame);
            }
            CoreOutput::Close { conn } => {
                if let Some(c) = self.servers.get_mut(&server).and_then(|s| s.core.as_mut()) {
                    c.disconnected(conn);
                }
                self.client_lost(conn);
            }
            _ => {}
        }
    }

    /// The client's connection is gone: outstanding requests have unknown outcomes.
    fn client_lost(&mut self, conn: ConnId) {
        let Some(ci) = self.conn_owner.remove(&conn) else {
            return;
        };
        let c = &mut self.clients[ci];
        for (_, op) in std::mem::take(&mut c.pending) {
            if let Op::Multi { id, .. } = op {
                let _ = id; // stays unknown
            }
        }
        c.conn = None;
        c.server = None;
        c.connecting = false;
        c.backoff = 2;
    }

    fn fail_now(&mut self, msg: String) {
        let t = self.now;
        self.checker.fail(t, Violation(msg));
    }

    fn client_frame(&mut self, ci: usize, server: ServerId, frame: &[u8]) {
        let body = &frame[4..];
        if self.clients[ci].connecting {
            let Ok(rsp) = ConnectResponse::from_bytes(body) else {
                self.fail_now(format!("server {server}: undecodable ConnectResponse"));
                return;
            };
            let c = &mut self.clients[ci];
            c.connecting = false;
            if rsp.session_id == 0 || rsp.time_out <= 0 {
                // Expired (or refused): the session is over.
                if c.session != 0 {
                    self.checker.dead_sessions.insert(c.session);
                    self.stats.expired_seen += 1;
                }
                c.done = true;
                if let Some(conn) = c.conn.take() {
                    self.conn_owner.remove(&conn);
                    if let Some(core) = self.servers.get_mut(&server).and_then(|s| s.core.as_mut())
                    {
                        core.disconnected(conn);
                    }
                }
                return;
            }
            if std::env::var_os("ZKD_SIM_TRACE").is_some() {
                eprintln!(
                    "t={} client {ci} conn {:?} on server {server}: session {:#x} (had {:#x})",
                    self.now, c.conn, rsp.session_id, c.session
                );
            }
            if c.session == 0 && !self.checker.issued_sessions.insert(rsp.session_id) {
                let sid = rsp.session_id;
                self.fail_now(format!(
                    "session id {sid:#x} handed to client {ci} by server {server} was issued \
                     before"
                ));
                return;
            }
            let c = &mut self.clients[ci];
            if c.session == 0 {
                self.stats.sessions_created += 1;
            } else if c.session != rsp.session_id {
                let old = c.session;
                self.fail_now(format!(
                    "client {ci} resumed session {old:#x} on server {server} but got {:#x}",
                    rsp.session_id
                ));
                return;
            } else {
                self.stats.reconnects += 1;
            }
            c.session = rsp.session_id;
            return;
        }
        let mut r = Reader::new(body);
        let Ok(h) = ReplyHeader::read(&mut r) else {
            self.fail_now(format!("server {server}: undecodable reply header"));
            return;
        };
        let rest = r.rest().to_vec();
        if h.xid == -1 || h.xid == -2 || self.clients[ci].answered.remove(&h.xid) {
            return;
        }
        self.mix(h.zxid as u64 ^ (h.xid as u64) << 20 ^ ci as u64);
        let c = &mut self.clients[ci];
        if h.zxid > 0 {
            if h.zxid < c.last_zxid {
                let (s, l) = (c.session, c.last_zxid);
                self.fail_now(format!(
                    "P4: session {s:#x} (client {ci}) saw zxid {:#x} from server {server} after \
                     {l:#x}",
                    h.zxid
                ));
                return;
            }
            c.last_zxid = h.zxid;
        }
        let Some(op) = c.pending.remove(&h.xid) else {
            self.fail_now(format!(
                "server {server}: reply to xid {} that client {ci} is not waiting for",
                h.xid
            ));
            return;
        };
        self.on_reply(ci, op, h, &rest);
    }

    fn on_reply(&mut self, ci: usize, op: Op, h: ReplyHeader, body: &[u8]) {
        let ok = h.err == 0;
        match op {
            Op::Create { path, data } => {
                if !ok {
                    self.stats.failed_writes += 1;
                    return;
                }
                let Ok(rsp) = Create2Response::from_bytes(body) else {
                    return self.fail_now("undecodable Create2Response".into());
                };
                self.stats.acked_writes += 1;
                if rsp.stat.mzxid != h.zxid || rsp.stat.czxid != h.zxid {
                    return self.fail_now(format!(
                        "create of {} answered at {:#x} with a Stat of {:#x}",
                        rsp.path, h.zxid, rsp.stat.mzxid
                    ));
                }
                if let Some(seq) = rsp.path.strip_prefix("/q/s-") {
                    let n: i64 = seq.parse().unwrap_or(-1);
                    self.checker
                        .sequentials
                        .entry("/q".into())
                        .or_default()
                        .push((h.zxid, n));
                }
                self.clients[ci].known_versions.insert(rsp.path.clone(), 0);
                self.checker.record_write(&rsp.path, h.zxid, rsp.stat, data);
                let _ = path;
            }
            Op::SetData { path, data } => {
                if !ok {
                    self.stats.failed_writes += 1;
                    self.clients[ci].known_versions.remove(&path);
                    return;
                }
                let Ok(rsp) = SetDataResponse::from_bytes(body) else {
                    return self.fail_now("undecodable SetDataResponse".into());
                };
                self.stats.acked_writes += 1;
                self.clients[ci]
                    .known_versions
                    .insert(path.clone(), rsp.stat.version);
                self.checker.record_write(&path, h.zxid, rsp.stat, data);
            }
            Op::Delete { path } => {
                if ok {
                    self.stats.acked_writes += 1;
                    self.checker.acked_zxids.insert(h.zxid);
                    self.checker
                        .acked
                        .entry(path)
                        .or_default()
                        .push(Acked::Delete { zxid: h.zxid });
                } else {
                    self.stats.failed_writes += 1;
                }
            }
            Op::Multi { id, paths } => {
                let results = if ok {
                    let mut r = Reader::new(body);
                    match decode_multi_results(&mut r) {
                        Ok(res) => res,
                        Err(_) => return self.fail_now("undecodable multi results".into()),
                    }
                } else {
                    Vec::new()
                };
                // A failed multi may come with err 0 and an error per op, as ZooKeeper's.
                let ok = ok
                    && !results
                        .iter()
                        .any(|r| matches!(r, MultiResult::Error { .. }));
                let entry = self.checker.multis.get_mut(&id).unwrap();
                entry.1 = Some(ok);
                if !ok {
                    self.stats.multis_failed += 1;
                    return;
                }
                self.stats.multis_ok += 1;
                self.checker.acked_zxids.insert(h.zxid);
                for (res, p) in results.iter().zip(&paths) {
                    match res {
                        MultiResult::Create2 { path, stat } => self.checker.record_write(
                            path,
                            h.zxid,
                            stat.clone(),
                            p.as_bytes().to_vec(),
                        ),
                        MultiResult::SetData { stat } => {
                            self.checker
                                .record_write(p, h.zxid, stat.clone(), b"multi".to_vec())
                        }
                        _ => {}
                    }
                }
            }
            Op::Read => self.stats.reads += 1,
            Op::Sync { required } => {
                if ok {
                    self.stats.syncs += 1;
                    if h.zxid < required {
                        self.fail_now(format!(
                            "SyncConsistency: a sync answered at {:#x}, but {required:#x} was \
                             acknowledged before it was sent",
                            h.zxid
                        ));
                    }
                }
            }
            Op::Close => {
                if ok {
                    let c = &mut self.clients[ci];
                    c.done = true;
                    self.checker.dead_sessions.insert(c.session);
                    self.stats.closes_acked += 1;
                }
            }
        }
    }

    fn pick_up_server(&mut self, not: Option<ServerId>) -> Option<ServerId> {
        let ups: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|(id, s)| s.is_up() && Some(**id) != not)
            .map(|(id, _)| *id)
            .collect();
        if ups.is_empty() {
            return None;
        }
        Some(ups[self.rng.gen_range(0..ups.len())])
    }

    /// (Re)connects client `ci` to a random live server, resuming its session.
    fn client_connect(&mut self, ci: usize) {
        self.client_connect_to(ci, None)
    }

    fn client_connect_to(&mut self, ci: usize, to: Option<ServerId>) {
        let server = match to {
            Some(s) if self.servers.get(&s).is_some_and(|s| s.is_up()) => s,
            Some(_) => return,
            None => match self.pick_up_server(None) {
                Some(s) => s,
                None => return,
            },
        };
        let conn = self.next_conn;
        self.next_conn += 1;
        let now = now_ms(self.now);
        let c = &mut self.clients[ci];
        let req = ConnectRequest {
            time_out: 6000 + (ci as i32 % 3) * 2000,
            session_id: c.session,
            passwd: if c.session == 0 {
                vec![0; 16]
            } else {
                zkd_server::session::session_password(c.session).to_vec()
            },
            last_zxid_seen: c.last_zxid,
            has_read_only: true,
            ..Default::default()
        };
        c.conn = Some(conn);
        c.server = Some(server);
        c.connecting = true;
        self.conn_owner.insert(conn, ci);
        let addr = SocketAddr::from(([10, 0, (conn >> 8) as u8, conn as u8], 40000));
        let core = self
            .servers
            .get_mut(&server)
            .unwrap()
            .core
            .as_mut()
            .unwrap();
        if !core.accept(conn, addr, now) {
            self.client_lost(conn);
            return;
        }
        core.connect(conn, &req, now);
        self.pump(server);
    }

    fn send_request(&mut self, ci: usize, req: Request, op: Op) {
        let c = &mut self.clients[ci];
        let (Some(server), Some(conn)) = (c.server, c.conn) else {
            return;
        };
        let xid = c.next_xid;
        c.next_xid += 1;
        c.pending.insert(xid, op.clone());
        let mut w = Writer::new();
        req.encode_body(&mut w);
        let now = now_ms(self.now);
        let Some(core) = self.servers.get_mut(&server).and_then(|s| s.core.as_mut()) else {
            return;
        };
        let learner = core.replication == Replication::Learner;
        let predicted = core.tree.last_processed_zxid;
        core.request(conn, xid, req.op_code() as i32, &w.buf, now);
        if self.opts.bug == Some(ServerBug::AnswerBeforeCommit) && learner {
            if let Op::SetData { path, data } = &op {
                // Planted bug: the learner answers before the leader has even seen it.
                if let Some(n) = core.tree.get(path) {
                    let mut stat = Stat {
                        czxid: n.stat.czxid,
                        mzxid: predicted + 1,
                        version: n.stat.version + 1,
                        ..Default::default()
                    };
                    stat.ctime = n.stat.ctime;
                    self.clients[ci].pending.remove(&xid);
                    self.clients[ci].answered.insert(xid);
                    self.stats.acked_writes += 1;
                    self.checker
                        .record_write(path, predicted + 1, stat, data.clone());
                }
            }
        }
        self.pump(server);
    }

    fn client_step(&mut self, ci: usize) {
        if self.clients[ci].done || self.clients[ci].silent {
            // Now and then a new client process takes the slot (a silent one's TCP
            // connection goes with its process; its session must still expire).
            if self.rng.gen_bool(0.01) {
                if let Some(conn) = self.clients[ci].conn {
                    if let Some(core) = self.clients[ci]
                        .server
                        .and_then(|sv| self.servers.get_mut(&sv))
                        .and_then(|s| s.core.as_mut())
                    {
                        core.disconnected(conn);
                    }
                    self.conn_owner.remove(&conn);
                }
                let c = &mut self.clients[ci];
                c.session = 0;
                c.server = None;
                c.conn = None;
                c.connecting = false;
                c.pending.clear();
                c.last_zxid = 0;
                c.silent = false;
                c.done = false;
                c.known_versions.clear();
                c.answered.clear();
                c.backoff = 0;
            }
            return;
        }
        if self.clients[ci].conn.is_none() {
            if self.clients[ci].backoff > 0 {
                self.clients[ci].backoff -= 1;
                return;
            }
            self.client_connect(ci);
            return;
        }
        if self.clients[ci].connecting || !self.rng.gen_bool(self.opts.request_rate) {
            return;
        }
        let k = self.rng.gen_range(0..100);
        let p = format!("/p{}", self.rng.gen_range(0..6));
        let tag = format!("c{ci}t{}", self.now);
        let data = tag.clone().into_bytes();
        let create = |path: &str, mode: CreateMode, data: &[u8]| Request::Create {
            op: OpCode::Create2,
            req: CreateRequest {
                path: path.into(),
                data: Some(data.to_vec()),
                acl: Acl::open_unsafe(),
                flags: mode.flag(),
            },
        };
        match k {
            0..=14 => {
                let r = create(&p, CreateMode::Persistent, &data);
                self.send_request(ci, r, Op::Create { path: p, data });
            }
            15..=29 => {
                let version = self.clients[ci]
                    .known_versions
                    .get(&p)
                    .copied()
                    .unwrap_or(-1);
                let r = Request::SetData(SetDataRequest {
                    path: p.clone(),
                    data: Some(data.clone()),
                    version,
                });
                self.send_request(ci, r, Op::SetData { path: p, data });
            }
            30..=34 => {
                self.checker.deletes_issued.insert(p.clone());
                let r = Request::Delete(DeleteRequest {
                    path: p.clone(),
                    version: -1,
                });
                self.send_request(ci, r, Op::Delete { path: p });
            }
            35..=44 => {
                let r = create("/q", CreateMode::Persistent, b"q");
                let (path, d) = ("/q".to_string(), b"q".to_vec());
                if self.rng.gen_bool(0.2) {
                    self.send_request(ci, r, Op::Create { path, data: d });
                } else {
                    let r = create("/q/s-", CreateMode::PersistentSequential, &data);
                    self.send_request(
                        ci,
                        r,
                        Op::Create {
                            path: "/q/s-".into(),
                            data,
                        },
                    );
                }
            }
            45..=54 => {
                self.clients[ci].eph_count += 1;
                let path = format!("/e{ci}_{}", self.clients[ci].eph_count);
                let r = create(&path, CreateMode::Ephemeral, &data);
                self.send_request(ci, r, Op::Create { path, data });
            }
            55..=64 => {
                self.next_multi += 1;
                let id = self.next_multi;
                let (a, b) = (format!("/m{id}a"), format!("/m{id}b"));
                let version = self.clients[ci]
                    .known_versions
                    .get(&p)
                    .copied()
                    .unwrap_or(0);
                let ops = vec![
                    MultiOp::Create {
                        op: OpCode::Create2,
                        req: CreateRequest {
                            path: a.clone(),
                            data: Some(a.clone().into_bytes()),
                            acl: Acl::open_unsafe(),
                            flags: 0,
                        },
                    },
                    MultiOp::Create {
                        op: OpCode::Create2,
                        req: CreateRequest {
                            path: b.clone(),
                            data: Some(b.clone().into_bytes()),
                            acl: Acl::open_unsafe(),
                            flags: 0,
                        },
                    },
                    MultiOp::SetData(SetDataRequest {
                        path: p.clone(),
                        data: Some(b"multi".to_vec()),
                        version,
                    }),
                ];
                self.checker
                    .multis
                    .insert(id, (vec![a.clone(), b.clone()], None));
                self.send_request(
                    ci,
                    Request::Multi(ops),
                    Op::Multi {
                        id,
                        paths: vec![a, b, p],
                    },
                );
            }
            65..=84 => {
                let r = Request::GetData(GetDataRequest {
                    path: p,
                    watch: false,
                });
                self.send_request(ci, r, Op::Read);
            }
            85..=94 => {
                let r = Request::Sync(SyncRequest { path: p });
                let epoch = self.clients[ci]
                    .server
                    .and_then(|sv| self.servers[&sv].zab())
                    .map_or(0, |z| z.current_epoch());
                let bound = zkd_zab::make_zxid(epoch + 1, 0);
                let required = self
                    .checker
                    .acked_zxids
                    .range(..bound)
                    .next_back()
                    .copied()
                    .unwrap_or(0);
                self.send_request(ci, r, Op::Sync { required });
            }
            _ => {
                if self.rng.gen_bool(0.5) {
                    self.send_request(ci, Request::CloseSession, Op::Close);
                }
            }
        }
    }

    // ------------------------------------------------ scripted clients (scenarios)

    /// A new client connected to `server` (random requests only while `traffic` is on).
    pub fn add_client(&mut self, server: ServerId) -> usize {
        self.clients.push(Client {
            session: 0,
            server: None,
            conn: None,
            connecting: false,
            next_xid: 1,
            pending: BTreeMap::new(),
            last_zxid: 0,
            silent: false,
            done: false,
            known_versions: BTreeMap::new(),
            answered: BTreeSet::new(),
            eph_count: 0,
            backoff: 0,
        });
        let ci = self.clients.len() - 1;
        self.client_connect_to(ci, Some(server));
        ci
    }

    /// The client's session id (0 before its first handshake completes).
    pub fn client_session(&self, ci: usize) -> i64 {
        self.clients[ci].session
    }

    /// True when the client has an established connection.
    pub fn client_connected(&self, ci: usize) -> bool {
        let c = &self.clients[ci];
        c.conn.is_some() && !c.connecting
    }

    /// The server the client is connected to.
    pub fn client_server(&self, ci: usize) -> Option<ServerId> {
        self.clients[ci].server
    }

    /// True when none of the client's requests await a reply.
    pub fn client_idle(&self, ci: usize) -> bool {
        self.clients[ci].pending.is_empty()
    }

    /// The client stops talking (no pings, no requests): its session must expire.
    pub fn silence(&mut self, ci: usize) {
        self.clients[ci].silent = true;
    }

    /// Reconnects a client that lost its connection (to `server`, or a random live one).
    pub fn reconnect(&mut self, ci: usize, server: Option<ServerId>) {
        if self.clients[ci].conn.is_none() && !self.clients[ci].done {
            self.client_connect_to(ci, server);
        }
    }

    /// Creates `path` from client `ci` (ephemeral or persistent).
    pub fn client_create(&mut self, ci: usize, path: &str, ephemeral: bool) {
        let mode = if ephemeral {
            CreateMode::Ephemeral
        } else {
            CreateMode::Persistent
        };
        let data = path.as_bytes().to_vec();
        let r = Request::Create {
            op: OpCode::Create2,
            req: CreateRequest {
                path: path.into(),
                data: Some(data.clone()),
                acl: Acl::open_unsafe(),
                flags: mode.flag(),
            },
        };
        self.send_request(
            ci,
            r,
            Op::Create {
                path: path.into(),
                data,
            },
        );
    }

    /// Sets `path`'s data from client `ci` (any version).
    pub fn client_set_data(&mut self, ci: usize, path: &str, data: &[u8]) {
        let r = Request::SetData(SetDataRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            version: -1,
        });
        self.send_request(
            ci,
            r,
            Op::SetData {
                path: path.into(),
                data: data.to_vec(),
            },
        );
    }

    /// Sends closeSession from client `ci`.
    pub fn client_close(&mut self, ci: usize) {
        self.send_request(ci, Request::CloseSession, Op::Close);
    }

    /// Sends a read of `path` from client `ci`.
    pub fn client_read(&mut self, ci: usize, path: &str) {
        let r = Request::GetData(GetDataRequest {
            path: path.into(),
            watch: false,
        });
        self.send_request(ci, r, Op::Read);
    }

    /// True when some server has logged a txn of `session` of the kind `pred` picks that no
    /// server has applied yet (a proposal in flight).
    pub fn in_flight(&self, pred: impl Fn(i64, &zkd_proto::txn::TxnBody) -> bool) -> bool {
        self.checker.payloads.iter().any(|(z, p)| {
            !self.checker.index.contains_key(z)
                && zkd_proto::txn::TxnEntry::from_bytes(p)
                    .is_ok_and(|t| pred(t.header.client_id, &t.body))
        })
    }

    /// Pings from every connected, non-silent client (once per tick).
    fn client_pings(&mut self) {
        for ci in 0..self.clients.len() {
            let c = &self.clients[ci];
            if c.done || c.silent || c.connecting {
                continue;
            }
            let (Some(server), Some(conn)) = (c.server, c.conn) else {
                continue;
            };
            let now = now_ms(self.now);
            if let Some(core) = self.servers.get_mut(&server).and_then(|s| s.core.as_mut()) {
                core.request(conn, -2, OpCode::Ping as i32, &[], now);
            }
            self.pump(server);
        }
    }

    // ---------------------------------------------------------------- time

    pub fn step(&mut self) {
        self.now += 1;
        if self.faults {
            self.random_faults();
        }
        if self.traffic {
            for ci in 0..self.clients.len() {
                self.client_step(ci);
            }
        }
        // Deliver what is due.
        let batched = self.opts.batch_rate > 0.0 && self.rng.gen_bool(self.opts.batch_rate);
        let mut due = Vec::new();
        while let Some((&key, _)) = self.queue.first_key_value() {
            if key.0 > self.now {
                break;
            }
            let p = self.queue.remove(&key).unwrap();
            if p.msg.is_election() && self.separated(p.from, p.to) {
                continue;
            }
            if batched {
                due.push(p);
                continue;
            }
            let Some(core) = self.servers.get_mut(&p.to).and_then(|s| s.core.as_mut()) else {
                continue;
            };
            zkd_server::ensemble::deliver(core, p.from, p.msg);
            self.pump(p.to);
        }
        // Batched: each server's packets in their order (so per link too), a pump after
        // every BATCH_MAX of them and after its last.
        while !due.is_empty() {
            let to = due[0].to;
            let (run, rest): (Vec<Packet>, Vec<Packet>) = due.into_iter().partition(|p| p.to == to);
            due = rest;
            let mut run = run.into_iter().peekable();
            while run.peek().is_some() {
                let mut delivered = 0;
                for p in run.by_ref().take(BATCH_MAX) {
                    // A pump may crash the server: what is left for it is then lost, as
                    // the queued events of a killed process are.
                    let Some(core) = self.servers.get_mut(&to).and_then(|s| s.core.as_mut()) else {
                        break;
                    };
                    zkd_server::ensemble::deliver(core, p.from, p.msg);
                    delivered += 1;
                }
                if delivered > 1 {
                    self.stats.batched_pumps += 1;
                    self.stats.max_batch = self.stats.max_batch.max(delivered);
                }
                self.pump(to);
            }
        }
        let ids: Vec<ServerId> = self.servers.keys().copied().collect();
        // fsync completions.
        for &id in &ids {
            let needs = self.servers[&id]
                .host
                .as_ref()
                .is_some_and(|h| *h.unsynced.lock().unwrap())
                && !self.servers[&id].stall_fsync;
            if needs && self.rng.gen_bool(self.opts.fsync_rate) {
                let now = now_ms(self.now);
                let s = self.servers.get_mut(&id).unwrap();
                let h = s.host.as_ref().unwrap();
                *h.unsynced.lock().unwrap() = false;
                if let Ok(Some(z)) = h.log.sync() {
                    s.core.as_mut().unwrap().synced(z, now);
                }
                self.pump(id);
            }
        }
        // Fuzzy snapshots progress a couple of nodes per unit, between applies.
        for &id in &ids {
            self.snapshot_step(id);
        }
        // (not is_multiple_of: the workspace MSRV is 1.80)
        if self.now / UNITS_PER_TICK * UNITS_PER_TICK == self.now {
            if self.pings {
                self.client_pings();
            }
            if self.traffic {
                self.abandon_some();
            }
            let now = now_ms(self.now);
            for &id in &ids {
                let s = self.servers.get_mut(&id).unwrap();
                if let Some(core) = s.core.as_mut() {
                    core.tick(now);
                    zkd_server::ensemble::tick(core);
                    self.pump(id);
                }
            }
        }
        let now = self.now;
        self.check_step(now);
        if self.now / UNITS_PER_TICK * UNITS_PER_TICK == self.now {
            self.check_multis(now);
        }
    }

    fn abandon_some(&mut self) {
        for ci in 0..self.clients.len() {
            if self.clients[ci].conn.is_some()
                && !self.clients[ci].silent
                && self.rng.gen_bool(self.opts.abandon_rate)
            {
                self.clients[ci].silent = true;
            }
        }
    }

    /// Begins a fuzzy snapshot on `id` (as `persist::take_snapshot` does).
    pub fn begin_snapshot(&mut self, id: ServerId) {
        let s = self.servers.get_mut(&id).unwrap();
        let Some(core) = s.core.as_ref() else { return };
        if s.snap.is_some() {
            return;
        }
        let sessions: Vec<SnapshotSession> = core
            .snapshot_sessions()
            .into_iter()
            .map(|(id, timeout_ms)| SnapshotSession { id, timeout_ms })
            .collect();
        s.snap = Some(FuzzySnapshot::begin(&core.tree, sessions));
    }

    fn snapshot_step(&mut self, id: ServerId) {
        let s = self.servers.get_mut(&id).unwrap();
        let (Some(core), Some(snap)) = (s.core.as_ref(), s.snap.as_mut()) else {
            return;
        };
        if !snap.step(&core.tree, 2) {
            return;
        }
        let snap = s.snap.take().unwrap();
        let zxid = snap.zxid();
        if core.tree.last_processed_zxid > zxid {
            self.stats.fuzzy_snapshots_spanning += 1;
        }
        let mut bytes = Vec::new();
        snap.finish(&mut bytes);
        let host = s.host.as_ref().unwrap();
        if let Err(e) = host.io.storage.snapshots().write(zxid, &bytes) {
            self.fail_now(format!("server {id}: snapshot {zxid:#x} failed: {e}"));
            return;
        }
        self.stats.fuzzy_snapshots += 1;
    }

    fn random_faults(&mut self) {
        let ids: Vec<ServerId> = self.servers.keys().copied().collect();
        let pick = |rng: &mut StdRng| ids[rng.gen_range(0..ids.len())];
        if self.rng.gen_bool(self.opts.crash_rate) {
            let id = pick(&mut self.rng);
            self.crash(id);
        }
        for &id in &ids {
            if !self.servers[&id].is_up() && self.rng.gen_bool(0.02) {
                self.restart(id);
            }
        }
        if self.rng.gen_bool(self.opts.disconnect_rate) {
            let (a, b) = (pick(&mut self.rng), pick(&mut self.rng));
            if a != b {
                self.break_link(a, b);
            }
        }
        if self.rng.gen_bool(self.opts.partition_rate) {
            if self.partitioned.is_empty() {
                let n = self.rng.gen_range(1..=ids.len() / 2);
                let mut side = BTreeSet::new();
                while side.len() < n {
                    side.insert(pick(&mut self.rng));
                }
                let side: Vec<ServerId> = side.into_iter().collect();
                self.partition(&side);
            } else {
                self.heal();
            }
        }
        if self.rng.gen_bool(self.opts.snapshot_rate) {
            let id = pick(&mut self.rng);
            self.begin_snapshot(id);
        }
    }

    /// Multis are all-or-nothing on every live server, at every tick.
    fn check_multis(&mut self, now: u64) {
        for (id, (paths, _)) in &self.checker.multis {
            for (sid, s) in &self.servers {
                let Some(core) = s.core.as_ref() else {
                    continue;
                };
                let n = paths.iter().filter(|p| core.tree.get(p).is_some()).count();
                if n != 0 && n != paths.len() {
                    let v = Violation(format!(
                        "multi {id} half applied on server {sid} (tree at {:#x}): {paths:?}",
                        core.tree.last_processed_zxid
                    ));
                    self.checker.fail(now, v);
                    return;
                }
            }
        }
    }

    /// LeaderUniqueness and PrimaryIntegrity over all live servers.
    fn check_step(&mut self, now: u64) {
        for (id, s) in &self.servers {
            let Some(z) = s.zab() else { continue };
            let Some(e) = z.established_epoch() else {
                continue;
            };
            let first = *self.checker.leaders.entry(e).or_insert(*id);
            if first != *id {
                self.checker.fail(
                    now,
                    Violation(format!(
                        "LeaderUniqueness: servers {first} and {id} both established epoch {e}"
                    )),
                );
            }
            let older = self.checker.ledger.partition_point(|x| zxid_epoch(x.0) < e);
            if s.pos < older {
                self.checker.fail(
                    now,
                    Violation(format!(
                        "PrimaryIntegrity: leader {id} of epoch {e} applied {} txns but {older} \
                         from earlier epochs were applied elsewhere",
                        s.pos
                    )),
                );
            }
        }
    }

    pub fn run_ticks(&mut self, ticks: u64) {
        for _ in 0..ticks * UNITS_PER_TICK {
            self.step();
            if self.checker.failed() {
                return;
            }
        }
    }

    pub fn run_until(&mut self, ticks: u64, mut pred: impl FnMut(&RealSim) -> bool) -> bool {
        for _ in 0..ticks * UNITS_PER_TICK {
            if pred(self) {
                return true;
            }
            self.step();
            if self.checker.failed() {
                return false;
            }
        }
        pred(self)
    }

    pub fn leader(&self) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|(_, s)| {
                s.core
                    .as_ref()
                    .is_some_and(|c| c.replication == Replication::Leader)
            })
            .map(|(id, _)| *id)
    }

    /// Every server up and serving under one leader, all at the leader's last zxid.
    pub fn converged(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let lz = self.servers[&l].zab().unwrap();
        let last = lz.last_zxid();
        if lz.committed_zxid() != last {
            return false;
        }
        self.servers.values().all(|s| {
            s.zab().is_some_and(|z| {
                z.is_serving() && z.leader() == Some(l) && z.applied_zxid() == last
            }) && s.core.as_ref().unwrap().tree.last_processed_zxid == last
        })
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (id, s) in &self.servers {
            match s.zab() {
                None => out.push_str(&format!("[{id}: down] ")),
                Some(z) => out.push_str(&format!(
                    "[{id}: {:?} leader={:?} serving={} last={:#x} applied={:#x} tree={:#x}] ",
                    z.role(),
                    z.leader(),
                    z.is_serving(),
                    z.last_zxid(),
                    z.applied_zxid(),
                    s.core.as_ref().unwrap().tree.last_processed_zxid
                )),
            }
        }
        out
    }

    /// Stops faults and traffic, heals, restarts everyone, waits for convergence, then
    /// checks ZooKeeper's promises on the final state.
    pub fn heal_and_check(&mut self) -> Result<(), Violation> {
        self.faults = false;
        self.traffic = false;
        self.pings = false;
        self.heal();
        for s in self.servers.values_mut() {
            s.stall_fsync = false;
        }
        let ids: Vec<ServerId> = self.servers.keys().copied().collect();
        for id in ids {
            self.restart(id);
        }
        let ticks = self.opts.heal_ticks;
        // Silent sessions must expire: let a session timeout pass after convergence too.
        let ok = self.run_until(ticks, |s| s.converged());
        if let Some(v) = self.checker.violation() {
            return Err(v);
        }
        if !ok {
            return Err(Violation(format!(
                "no convergence within {ticks} ticks after healing: {}",
                self.describe()
            )));
        }
        // Clients stop; their sessions expire (max timeout 10 s = 5 ticks), then settle.
        self.run_ticks(15);
        let ok = self.run_until(ticks, |s| s.converged());
        if let Some(v) = self.checker.violation() {
            return Err(v);
        }
        if !ok {
            return Err(Violation(format!(
                "no convergence after the sessions expired: {}",
                self.describe()
            )));
        }
        self.check_final()
    }

    /// ZooKeeper's promises on the healed, converged ensemble.
    pub fn check_final(&self) -> Result<(), Violation> {
        let e = |s: String| Err(Violation(s));
        let l = self.leader().unwrap();
        let lcore = self.servers[&l].core.as_ref().unwrap();
        let ltree = &lcore.tree;
        // Every server applied the whole delivered sequence.
        for (id, s) in &self.servers {
            if s.pos != self.checker.ledger.len() {
                return e(format!(
                    "Convergence: server {id} applied {} txns, the ensemble {}",
                    s.pos,
                    self.checker.ledger.len()
                ));
            }
        }
        // Trees equal: paths, Stats, data, digest.
        let lpaths = ltree.paths();
        for (id, s) in &self.servers {
            let t = &s.core.as_ref().unwrap().tree;
            let paths = t.paths();
            if paths != lpaths {
                let only_here: Vec<_> = paths.iter().filter(|p| !lpaths.contains(p)).collect();
                let only_there: Vec<_> = lpaths.iter().filter(|p| !paths.contains(p)).collect();
                return e(format!(
                    "trees differ: server {id} has {only_here:?} the leader {l} has not; the \
                     leader has {only_there:?}"
                ));
            }
            for p in &paths {
                let (a, b) = (t.get(p).unwrap(), ltree.get(p).unwrap());
                if stat_of(&a.stat) != stat_of(&b.stat) || a.data() != b.data() {
                    return e(format!(
                        "trees differ at {p}: server {id} has {:?}, leader {l} has {:?}",
                        a.stat, b.stat
                    ));
                }
            }
            if t.zk_tree_digest() != ltree.zk_tree_digest() {
                return e(format!("tree digests differ: server {id} and leader {l}"));
            }
        }
        // Every server tracks the same sessions (learners from committed txns, the leader
        // from what it prepared: equal once nothing is pending).
        let lsessions: BTreeSet<i64> = lcore.session_table().iter().map(|s| s.0).collect();
        for (id, s) in &self.servers {
            let ss: BTreeSet<i64> = s
                .core
                .as_ref()
                .unwrap()
                .session_table()
                .iter()
                .map(|s| s.0)
                .collect();
            if ss != lsessions {
                return e(format!(
                    "session tables differ: server {id} tracks {ss:x?}, leader {l} {lsessions:x?}"
                ));
            }
        }
        // Every acknowledged write was delivered.
        for z in &self.checker.acked_zxids {
            if !self.checker.index.contains_key(z) {
                return e(format!(
                    "Durability: a write acknowledged at {z:#x} is not in the delivered sequence"
                ));
            }
        }
        // ... and is there with its Stat unless changed since.
        for (path, events) in &self.checker.acked {
            let last = events.iter().max_by_key(|a| a.zxid()).unwrap();
            let node = ltree.get(path);
            match (last, node) {
                (Acked::Write { zxid, stat, data }, Some(n)) => {
                    if n.stat.mzxid < *zxid {
                        return e(format!(
                            "Durability: {path} acknowledged at {zxid:#x}, but the node's mzxid \
                             is {:#x}",
                            n.stat.mzxid
                        ));
                    }
                    if n.stat.mzxid == *zxid
                        && (n.stat.version != stat.version
                            || n.stat.czxid != stat.czxid
                            || n.stat.ephemeral_owner != stat.ephemeral_owner
                            || n.data().unwrap_or_default() != data.as_slice())
                    {
                        return e(format!(
                            "Durability: {path} acknowledged with {stat:?} {:?}, holds {:?} {:?}",
                            String::from_utf8_lossy(data),
                            n.stat,
                            String::from_utf8_lossy(n.data().unwrap_or_default())
                        ));
                    }
                }
                (Acked::Write { zxid, stat, .. }, None) => {
                    let may_go =
                        self.checker.deletes_issued.contains(path) || stat.ephemeral_owner != 0;
                    if !may_go {
                        return e(format!(
                            "Durability: {path} acknowledged at {zxid:#x} is gone, and nobody \
                             deleted it"
                        ));
                    }
                }
                (Acked::Delete { zxid }, Some(n)) if n.stat.czxid <= *zxid => {
                    return e(format!("Durability: {path} deleted at {zxid:#x} is back"));
                }
                _ => {}
            }
        }
        // No ephemeral outlives its session.
        let live: BTreeSet<i64> = lcore.session_table().iter().map(|s| s.0).collect();
        for (id, s) in &self.servers {
            let t = &s.core.as_ref().unwrap().tree;
            for (owner, paths) in t.ephemerals_by_session() {
                if paths.is_empty() {
                    continue;
                }
                if !live.contains(&owner) || self.checker.dead_sessions.contains(&owner) {
                    return e(format!(
                        "ephemerals {paths:?} of session {owner:#x} outlive it on server {id} \
                         (live at the leader: {}, end seen by its client: {})",
                        live.contains(&owner),
                        self.checker.dead_sessions.contains(&owner)
                    ));
                }
            }
        }
        // Sequential names strictly increase in zxid order.
        for (parent, seqs) in &self.checker.sequentials {
            let mut v = seqs.clone();
            v.sort();
            for w in v.windows(2) {
                if w[1].1 <= w[0].1 {
                    return e(format!(
                        "sequential names under {parent}: {} at {:#x} after {} at {:#x}",
                        w[1].1, w[1].0, w[0].1, w[0].0
                    ));
                }
            }
        }
        // Multis: all or nothing, everywhere.
        for (id, (paths, outcome)) in &self.checker.multis {
            for (sid, s) in &self.servers {
                let t = &s.core.as_ref().unwrap().tree;
                let present: Vec<bool> = paths.iter().map(|p| t.get(p).is_some()).collect();
                let all = present.iter().all(|x| *x);
                let none = present.iter().all(|x| !*x);
                let bad = match outcome {
                    Some(true) => !all,
                    Some(false) => !none,
                    None => !(all || none),
                };
                if bad {
                    return e(format!(
                        "multi {id} ({outcome:?}) half applied on server {sid}: {paths:?} -> \
                         {present:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Runs one seed end to end; a panic is a violation too.
pub fn run_real(opts: RealOptions) -> Result<RealStats, Violation> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sim = RealSim::new(opts);
        let ticks = sim.opts.fault_ticks;
        sim.run_ticks(ticks);
        if let Some(v) = sim.checker.violation() {
            return Err(v);
        }
        sim.heal_and_check()?;
        Ok(sim.stats.clone())
    })) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Violation(format!("panic: {msg}")))
        }
    }
}
