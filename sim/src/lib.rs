//! zkd-sim: a deterministic simulation of a whole ZAB ensemble, in two modes.
//!
//! - [`real`]: every server is zkd-server's real `Core` with its real zab, driven through
//!   the server's own host glue (`ensemble::execute`/`to_zab`), over zkd-storage's
//!   `Storage` and `EpochFiles` on a `FaultyBackend`, with simulated clients speaking the
//!   client protocol and checks of ZooKeeper's promises (see that module's header).
//!   `zkd-sim --real`.
//! - this module ([`Sim`]): the same zab over the same txn log, with the stand-in [`Rsm`]
//!   as the state machine. Kept because it reaches what the real mode does not: zab's own
//!   planted protocol bugs ([`InjectedBug`]), a failpoint inside the snapshot rename, a
//!   stalled-disk follower, and SessionPing attribution; and it is a second, independent
//!   implementation of the Zab invariant checks.
//!
//! Owns a virtual network, virtual time and one virtual disk per server, and runs the real
//! [`zkd_zab::Zab`] state machines over the real txn log of zkd-storage ([`TxnLog`] on a
//! [`FaultyBackend`], which loses everything not fsynced at a crash and can tear the last
//! write). The replicated state machine is a stand-in ([`Rsm`]: the ordered list of
//! applied `(zxid, payload)` with a digest); [`real`] runs the server's data tree instead.
//! Never uses real sockets, threads, clocks or unseeded randomness: one `u64` seed decides
//! every delay, loss, duplication, partition, crash, failpoint and client request, so any
//! failure replays exactly with `zkd-sim --reproduce SEED`.
//!
//! # Model
//!
//! - Time advances in units; every [`UNITS_PER_TICK`] units every live server ticks.
//! - Election notifications are datagrams: lost, duplicated, delayed and so reordered.
//! - Quorum messages travel on FIFO connections (ZooKeeper uses TCP). A fault breaks a
//!   connection: queued messages on it are dropped and both ends get `disconnected`.
//!   Sending across a partition breaks the connection the same way.
//! - Disks: appends are buffered; a later fsync event (random delay) calls
//!   [`TxnLog::sync`] and reports the durable zxid to zab. Epoch files and snapshots are
//!   written as `tmp` + fsync + rename + fsync(dir).
//! - Crashes happen at random and at failpoints: right after persisting acceptedEpoch,
//!   right after persisting currentEpoch, right after sending the ACK of NEWLEADER, and in
//!   the middle of writing a snapshot (before the rename, and after the rename but before
//!   the log is truncated).
//!
//! Not modelled (yet): bit rot and failed fsyncs (FaultyBackend can do both; a failed
//! fsync must stop the server, which the host loop here does not implement), per-message
//! loss inside a quorum connection (ZAB assumes TCP; only whole connections break), clock
//! skew between servers (all tick together), dynamic reconfiguration; the server's real
//! data tree and sessions are in [`real`].
//!
//! # Invariants checked after every step (named after the Zab TLA+ specification)
//!
//! - **LeaderUniqueness**: at most one established leader per epoch, ever.
//! - **ZxidUniqueness** (PrimaryIntegrity's premise, ZOOKEEPER-335): one payload per zxid
//!   across every log of every server, ever.
//! - **PrefixConsistency / Agreement / TotalOrder**: every server's delivered (applied)
//!   sequence is a prefix of one global delivered sequence, whose zxids strictly increase.
//! - **CommittedLogMonotonicity**: a server's delivered sequence only grows (a SNAP may
//!   replace it only with an extension; a restart restores a prefix of the global one).
//! - **PrimaryIntegrity**: an established leader of epoch e has delivered every txn of an
//!   epoch below e that any server delivered.
//! - **Integrity**: nothing is delivered that no established leader had committed.
//! - **SyncConsistency**: a `sync` returns only after the server applied every write
//!   acknowledged before the sync was issued whose epoch is not above its leader's.
//! - Session touches (PING payloads) reach the leader attributed to their learner.
//!
//! At the end, after healing: every server is up, follows one established leader, has
//! delivered the same sequence (equal digests) and every write acknowledged to a client is
//! in it.

pub mod check;
pub mod node;
pub mod real;

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zkd_zab::{InjectedBug, Message, Output, Role, ServerId, Zxid};

pub use check::{Checker, Violation};
pub use node::{Failpoint, Node, Rsm};
pub use zkd_storage::{FaultyBackend, TxnLog};

/// Time units per zab tick.
pub const UNITS_PER_TICK: u64 = 4;

/// Knobs of one simulation run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub voters: usize,
    pub observers: usize,
    /// Ticks with faults and client traffic.
    pub fault_ticks: u64,
    /// Ticks after healing in which the ensemble must converge.
    pub heal_ticks: u64,
    /// Probability per unit that a client sends a write to a random live server.
    pub client_rate: f64,
    pub loss: f64,
    pub duplicate: f64,
    /// Largest message delay in units.
    pub max_delay: u64,
    /// Probability per unit of a random crash.
    pub crash_rate: f64,
    /// Probability per unit that a quorum connection breaks.
    pub disconnect_rate: f64,
    /// Probability per unit of a new partition (and of healing one).
    pub partition_rate: f64,
    /// Probability per unit that a server writes a local snapshot.
    pub snapshot_rate: f64,
    /// Probability per unit that a server's pending fsync completes (disk speed).
    pub fsync_rate: f64,
    /// Probability that a failpoint fires when its step is reached.
    pub failpoint_rate: f64,
    pub max_zxid_counter: u32,
    pub committed_log_max: usize,
    pub injected_bug: Option<InjectedBug>,
}

impl Options {
    /// No random faults at all (scenarios script their own); the network is lossless.
    pub fn quiet(seed: u64, voters: usize) -> Self {
        Options {
            loss: 0.0,
            duplicate: 0.0,
            crash_rate: 0.0,
            disconnect_rate: 0.0,
            partition_rate: 0.0,
            snapshot_rate: 0.0,
            failpoint_rate: 0.0,
            client_rate: 0.0,
            max_zxid_counter: u32::MAX,
            ..Options::new(seed, voters)
        }
    }

    /// Many more faults: frequent crashes, partitions, connection breaks, 20% loss.
    pub fn storm(seed: u64, voters: usize) -> Self {
        Options {
            loss: 0.2,
            duplicate: 0.1,
            max_delay: 12,
            crash_rate: 0.02,
            disconnect_rate: 0.01,
            partition_rate: 0.01,
            snapshot_rate: 0.01,
            failpoint_rate: 1.0,
            committed_log_max: 4,
            ..Options::new(seed, voters)
        }
    }

    /// The defaults the CI seeds run with.
    pub fn new(seed: u64, voters: usize) -> Self {
        Options {
            seed,
            voters,
            observers: 0,
            fault_ticks: 150,
            heal_ticks: 150,
            client_rate: 0.15,
            loss: 0.05,
            duplicate: 0.03,
            max_delay: 6,
            crash_rate: 0.004,
            disconnect_rate: 0.002,
            partition_rate: 0.002,
            snapshot_rate: 0.003,
            failpoint_rate: 0.3,
            fsync_rate: 0.4,
            max_zxid_counter: 40,
            committed_log_max: 8,
            injected_bug: None,
        }
    }
}

/// A message on the wire.
#[derive(Debug, Clone)]
struct Packet {
    from: ServerId,
    to: ServerId,
    msg: Message,
}

/// What happened in a run (coverage counters; the tests assert the sim really exercises
/// the paths it claims to).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub sent: BTreeMap<&'static str, u64>,
    pub crashes: u64,
    pub failpoint_crashes: BTreeMap<&'static str, u64>,
    pub restarts: u64,
    pub partitions: u64,
    pub disconnects: u64,
    pub proposals: u64,
    pub acked_writes: u64,
    pub max_epoch: u32,
    pub truncations: u64,
    pub snapshots_restored: u64,
    /// COMMITs delivered to a learner after NEWLEADER and before UPTODATE (ZK-4394).
    pub commits_before_uptodate: u64,
    pub syncs_done: u64,
    pub session_pings: u64,
}

impl Stats {
    /// Adds another run's counters to these (max_epoch takes the maximum).
    pub fn merge(&mut self, o: &Stats) {
        for (k, v) in &o.sent {
            *self.sent.entry(k).or_default() += v;
        }
        for (k, v) in &o.failpoint_crashes {
            *self.failpoint_crashes.entry(k).or_default() += v;
        }
        self.crashes += o.crashes;
        self.restarts += o.restarts;
        self.partitions += o.partitions;
        self.disconnects += o.disconnects;
        self.proposals += o.proposals;
        self.acked_writes += o.acked_writes;
        self.max_epoch = self.max_epoch.max(o.max_epoch);
        self.truncations += o.truncations;
        self.snapshots_restored += o.snapshots_restored;
        self.commits_before_uptodate += o.commits_before_uptodate;
        self.syncs_done += o.syncs_done;
        self.session_pings += o.session_pings;
    }

    /// Messages of one type sent.
    pub fn count(&self, name: &str) -> u64 {
        self.sent.get(name).copied().unwrap_or(0)
    }
}

/// The whole simulated ensemble.
pub struct Sim {
    pub opts: Options,
    pub rng: StdRng,
    pub now: u64,
    pub nodes: BTreeMap<ServerId, Node>,
    queue: BTreeMap<(u64, u64), Packet>,
    seq: u64,
    /// Last scheduled delivery time per directed quorum link (keeps FIFO).
    link_last: BTreeMap<(ServerId, ServerId), u64>,
    /// Servers on the minority side of the current partition (empty: none).
    pub partitioned: BTreeSet<ServerId>,
    pub faults: bool,
    pub clients: bool,
    pub checker: Checker,
    pub stats: Stats,
    client_seq: u64,
    client_sequence: u64,
    /// Every client write: payload -> origin server.
    origins: BTreeMap<Vec<u8>, ServerId>,
    pending_disconnects: Vec<(ServerId, ServerId)>,
    /// (server, sync id) -> the zxid the server must have applied when the sync returns.
    pending_syncs: BTreeMap<(ServerId, u64), Zxid>,
    next_sync_id: u64,
    /// Print every delivery to stderr (`ZKD_SIM_TRACE=1`).
    pub trace: bool,
}

impl Sim {
    pub fn new(opts: Options) -> Sim {
        let rng = StdRng::seed_from_u64(opts.seed);
        let total = opts.voters + opts.observers;
        let voters: Vec<ServerId> = (1..=opts.voters as u64).collect();
        let observers: Vec<ServerId> = (opts.voters as u64 + 1..=total as u64).collect();
        let mut sim = Sim {
            rng,
            now: 0,
            nodes: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            link_last: BTreeMap::new(),
            partitioned: BTreeSet::new(),
            faults: true,
            clients: true,
            checker: Checker::default(),
            stats: Stats::default(),
            client_seq: 0,
            client_sequence: 0,
            origins: BTreeMap::new(),
            pending_disconnects: Vec::new(),
            pending_syncs: BTreeMap::new(),
            next_sync_id: 0,
            trace: std::env::var_os("ZKD_SIM_TRACE").is_some(),
            opts,
        };
        for id in voters.iter().chain(&observers) {
            let mut cfg = zkd_zab::Config::new(*id, voters.clone(), observers.clone());
            cfg.init_limit_ticks = 10;
            cfg.sync_limit_ticks = 5;
            cfg.max_zxid_counter = sim.opts.max_zxid_counter;
            cfg.committed_log_max = sim.opts.committed_log_max;
            cfg.injected_bug = sim.opts.injected_bug;
            sim.nodes.insert(*id, Node::new(cfg));
        }
        let ids: Vec<ServerId> = sim.nodes.keys().copied().collect();
        for id in ids {
            sim.start(id);
        }
        sim
    }

    fn start(&mut self, id: ServerId) {
        let seed = self.rng.gen::<u64>();
        let node = self.nodes.get_mut(&id).expect("node");
        match node.start(seed) {
            Ok(()) => {
                if let Err(v) = self.checker.on_restart(id, &node.rsm) {
                    self.checker.fail(self.now, v);
                }
                self.drain(id);
            }
            Err(e) => self.checker.fail(
                self.now,
                Violation(format!("server {id} cannot restart: {e}")),
            ),
        }
    }

    /// Crashes `id` (losing every unsynced byte; sometimes tearing the last write).
    pub fn crash(&mut self, id: ServerId) {
        if !self.nodes[&id].is_up() {
            return;
        }
        self.stats.crashes += 1;
        let tear = self.rng.gen_bool(0.5);
        let tear_seed = self.rng.gen::<u64>();
        self.nodes
            .get_mut(&id)
            .unwrap()
            .crash(tear.then_some(tear_seed));
        self.break_links_of(id);
    }

    /// Restarts a crashed server from its disk.
    pub fn restart(&mut self, id: ServerId) {
        if self.nodes[&id].is_up() {
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
            if let Some(z) = self.nodes.get_mut(&x).and_then(|n| n.zab.as_mut()) {
                z.disconnected(y);
            }
        }
        self.stats.disconnects += 1;
        self.drain(a);
        self.drain(b);
    }

    fn break_links_of(&mut self, id: ServerId) {
        let others: Vec<ServerId> = self.nodes.keys().copied().filter(|o| *o != id).collect();
        for o in others {
            self.break_link(id, o);
        }
    }

    fn separated(&self, a: ServerId, b: ServerId) -> bool {
        self.partitioned.contains(&a) != self.partitioned.contains(&b)
    }

    /// Isolates `side` from the rest (quorum connections across break).
    pub fn partition(&mut self, side: &[ServerId]) {
        self.partitioned = side.iter().copied().collect();
        self.stats.partitions += 1;
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
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

    /// A client write of a fresh payload sent to server `via`.
    pub fn client_write(&mut self, via: ServerId) -> bool {
        self.client_seq += 1;
        let payload = format!("w{}@{}", self.client_seq, via).into_bytes();
        let Some(z) = self.nodes.get_mut(&via).and_then(|n| n.zab.as_mut()) else {
            return false;
        };
        if z.submit_request(payload.clone()).is_ok() {
            self.origins.insert(payload, via);
            self.drain(via);
            true
        } else {
            false
        }
    }

    /// A client `sync` at server `via`. When it returns, `via` must have applied every
    /// write acknowledged before now whose epoch is not above the epoch of `via`'s leader
    /// (ZooKeeper's guarantee: as up to date as that leader when it saw the sync).
    pub fn client_sync(&mut self, via: ServerId) -> bool {
        let Some(z) = self.nodes.get_mut(&via).and_then(|n| n.zab.as_mut()) else {
            return false;
        };
        if !z.is_serving() {
            return false;
        }
        let epoch = z.current_epoch();
        self.next_sync_id += 1;
        let id = self.next_sync_id;
        if z.sync(id).is_err() {
            return false;
        }
        let bound = zkd_zab::make_zxid(epoch + 1, 0);
        let required = self
            .checker
            .acked()
            .range(..bound)
            .next_back()
            .map_or(0, |(z, _)| *z);
        self.pending_syncs.insert((via, id), required);
        self.drain(via);
        true
    }

    fn schedule(&mut self, from: ServerId, to: ServerId, msg: Message) {
        *self.stats.sent.entry(msg.name()).or_default() += 1;
        let down = !self.nodes[&to].is_up();
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
                self.pending_disconnects.push((from, to));
                return;
            }
            let last = self.link_last.get(&(from, to)).copied().unwrap_or(0);
            let at = (self.now + self.rng.gen_range(1..=self.opts.max_delay)).max(last);
            self.link_last.insert((from, to), at);
            self.seq += 1;
            self.queue.insert((at, self.seq), Packet { from, to, msg });
        }
    }

    /// Executes every output of `id` (in order), including those its own reactions add.
    pub fn drain(&mut self, id: ServerId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(z) = node.zab.as_mut() else {
                return;
            };
            let out = z.ready();
            if out.is_empty() {
                break;
            }
            for o in out {
                if !self.execute(id, o) {
                    // Crashed at a failpoint: the rest never happened.
                    self.break_links_of(id);
                    break;
                }
            }
        }
        let pending = std::mem::take(&mut self.pending_disconnects);
        for (a, b) in pending {
            self.break_link(a, b);
        }
    }

    fn failpoint(&mut self, id: ServerId, fp: Failpoint) -> bool {
        let node = self.nodes.get_mut(&id).unwrap();
        let armed = node.armed.remove(&fp);
        let random = self.faults && self.rng.gen_bool(self.opts.failpoint_rate * 0.1);
        if armed || random {
            *self.stats.failpoint_crashes.entry(fp.name()).or_default() += 1;
            self.stats.crashes += 1;
            self.nodes.get_mut(&id).unwrap().crash(None);
            return true;
        }
        false
    }

    /// Returns false if the server crashed at a failpoint while executing `o`.
    fn execute(&mut self, id: ServerId, o: Output) -> bool {
        match o {
            Output::Send { to, msg } => {
                let newleader_ack =
                    matches!(msg, Message::Ack { zxid } if zkd_zab::zxid_counter(zxid) == 0);
                self.schedule(id, to, msg);
                if newleader_ack && self.failpoint(id, Failpoint::AfterNewLeaderAck) {
                    return false;
                }
            }
            Output::PersistAcceptedEpoch(e) => {
                self.nodes
                    .get_mut(&id)
                    .unwrap()
                    .persist_epoch("acceptedEpoch", e);
                if self.failpoint(id, Failpoint::AfterAcceptedEpoch) {
                    return false;
                }
            }
            Output::PersistCurrentEpoch(e) => {
                self.stats.max_epoch = self.stats.max_epoch.max(e);
                self.nodes
                    .get_mut(&id)
                    .unwrap()
                    .persist_epoch("currentEpoch", e);
                if self.failpoint(id, Failpoint::AfterCurrentEpoch) {
                    return false;
                }
            }
            Output::TruncateLog { after } => {
                self.stats.truncations += 1;
                self.nodes.get_mut(&id).unwrap().truncate(after);
            }
            Output::RestoreSnapshot { zxid, data } => {
                self.stats.snapshots_restored += 1;
                let node = self.nodes.get_mut(&id).unwrap();
                let rsm = Rsm::decode(&data).expect("snapshot bytes come from a peer's Rsm");
                assert_eq!(rsm.last_zxid(), zxid, "snapshot zxid");
                if let Err(v) = self.checker.on_snapshot(id, &node.rsm, &rsm) {
                    self.checker.fail(self.now, v);
                }
                node.rsm = rsm;
                node.write_snapshot_tmp();
                if self.failpoint(id, Failpoint::SnapshotBeforeRename) {
                    return false;
                }
                self.nodes.get_mut(&id).unwrap().rename_snapshot();
                if self.failpoint(id, Failpoint::SnapshotBeforeLogTruncate) {
                    return false;
                }
                self.nodes.get_mut(&id).unwrap().truncate(zxid);
            }
            Output::Append { zxid, payload } => {
                if let Err(v) = self.checker.on_append(zxid, &payload) {
                    self.checker.fail(self.now, v);
                }
                self.nodes.get_mut(&id).unwrap().append(zxid, &payload);
            }
            Output::Apply { zxid, payload } => {
                self.checker.note_commits(&self.nodes);
                let node = self.nodes.get_mut(&id).unwrap();
                node.rsm.apply(zxid, &payload);
                if let Err(v) = self.checker.on_apply(id, &node.rsm) {
                    self.checker.fail(self.now, v);
                }
                if self.origins.get(&payload) == Some(&id) && self.checker.ack(zxid, &payload) {
                    self.stats.acked_writes += 1;
                }
            }
            Output::TakeSnapshot => {
                let node = self.nodes.get_mut(&id).unwrap();
                let (z, data) = (node.rsm.last_zxid(), node.rsm.encode());
                let zab = node.zab.as_mut().unwrap();
                if let Err(e) = zab.snapshot_ready(z, data) {
                    self.checker
                        .fail(self.now, Violation(format!("server {id}: {e}")));
                }
            }
            Output::RoleChanged { role, .. } => {
                if role == Role::Looking {
                    let others: Vec<ServerId> =
                        self.nodes.keys().copied().filter(|o| *o != id).collect();
                    for o in others {
                        self.pending_disconnects.push((id, o));
                    }
                }
            }
            Output::CloseConnection { peer } => self.pending_disconnects.push((id, peer)),
            Output::ForwardedRequest { payload, .. } => {
                let zab = self.nodes.get_mut(&id).unwrap().zab.as_mut().unwrap();
                if zab.propose(payload).is_ok() {
                    self.stats.proposals += 1;
                }
            }
            Output::SessionPing { from, payload } => {
                // Session touches must arrive at the leader from the learner that sent them.
                let expect = format!("ping@{from}:");
                if !payload.starts_with(expect.as_bytes()) {
                    self.checker.fail(
                        self.now,
                        Violation(format!(
                            "SessionPing at {id} claims to come from {from} but carries {:?}",
                            String::from_utf8_lossy(&payload)
                        )),
                    );
                }
                self.stats.session_pings += 1;
            }
            Output::SyncDone { id: sync_id } => {
                let applied = self.nodes[&id].zab.as_ref().map_or(0, |z| z.applied_zxid());
                match self.pending_syncs.remove(&(id, sync_id)) {
                    None => self.checker.fail(
                        self.now,
                        Violation(format!("SyncDone {sync_id} at {id} for no pending sync")),
                    ),
                    Some(required) if applied < required => self.checker.fail(
                        self.now,
                        Violation(format!(
                            "SyncConsistency: sync {sync_id} at server {id} returned at applied \
                             {applied:#x}, but a write at {required:#x} of its leader's epoch \
                             or earlier was acknowledged before the sync was issued"
                        )),
                    ),
                    Some(_) => self.stats.syncs_done += 1,
                }
            }
        }
        true
    }

    /// One unit of virtual time.
    pub fn step(&mut self) {
        self.now += 1;
        if self.faults {
            self.random_faults();
        }
        if self.clients && self.rng.gen_bool(self.opts.client_rate) {
            let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
            let via = ids[self.rng.gen_range(0..ids.len())];
            self.client_write(via);
        }
        if self.clients && self.rng.gen_bool(self.opts.client_rate / 3.0) {
            let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
            let via = ids[self.rng.gen_range(0..ids.len())];
            self.client_sync(via);
        }
        if self.clients && self.rng.gen_bool(0.05) {
            let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
            let via = ids[self.rng.gen_range(0..ids.len())];
            self.client_sequence += 1;
            let payload = format!("ping@{via}:{}", self.client_sequence).into_bytes();
            if let Some(z) = self.nodes.get_mut(&via).and_then(|n| n.zab.as_mut()) {
                z.set_ping_payload(payload);
            }
        }
        // Deliver what is due.
        while let Some((&key, _)) = self.queue.first_key_value() {
            if key.0 > self.now {
                break;
            }
            let p = self.queue.remove(&key).unwrap();
            if p.msg.is_election() && self.separated(p.from, p.to) {
                continue;
            }
            let Some(z) = self.nodes.get_mut(&p.to).and_then(|n| n.zab.as_mut()) else {
                continue;
            };
            if self.trace {
                eprintln!("t={} {} -> {}: {:?}", self.now, p.from, p.to, p.msg);
            }
            if matches!(p.msg, Message::Commit { .. })
                && !z.is_serving()
                && z.role() != Role::Looking
            {
                self.stats.commits_before_uptodate += 1;
            }
            let r = z.step(p.from, p.msg);
            if self.trace {
                if let Err(e) = r {
                    eprintln!("t={} {} rejected: {e}", self.now, p.to);
                }
            }
            self.drain(p.to);
        }
        // fsync completions.
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            if self.nodes[&id].needs_sync() && self.rng.gen_bool(self.opts.fsync_rate) {
                self.nodes.get_mut(&id).unwrap().sync();
                self.drain(id);
            }
        }
        // (not is_multiple_of: the workspace MSRV is 1.80)
        if self.now / UNITS_PER_TICK * UNITS_PER_TICK == self.now {
            for &id in &ids {
                if let Some(z) = self.nodes.get_mut(&id).and_then(|n| n.zab.as_mut()) {
                    z.tick();
                    self.drain(id);
                }
            }
        }
        let now = self.now;
        self.checker.check_step(now, &self.nodes);
    }

    fn random_faults(&mut self) {
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        let pick = |rng: &mut StdRng| ids[rng.gen_range(0..ids.len())];
        if self.rng.gen_bool(self.opts.crash_rate) {
            let id = pick(&mut self.rng);
            self.crash(id);
        }
        for &id in &ids {
            if !self.nodes[&id].is_up() && self.rng.gen_bool(0.02) {
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
            if self.nodes[&id].is_up() {
                self.nodes.get_mut(&id).unwrap().write_snapshot_tmp();
                if !self.failpoint(id, Failpoint::LocalSnapshotBeforeRename) {
                    self.nodes.get_mut(&id).unwrap().rename_snapshot();
                } else {
                    self.break_links_of(id);
                }
            }
        }
    }

    /// Restarts every crashed server.
    pub fn restart_all_down(&mut self) {
        let down: Vec<ServerId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.is_up())
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.restart(id);
        }
    }

    /// Runs `ticks` ticks.
    pub fn run_ticks(&mut self, ticks: u64) {
        for _ in 0..ticks * UNITS_PER_TICK {
            self.step();
            if self.checker.failed() {
                return;
            }
        }
    }

    /// Runs until `pred` holds (checked every unit) or `ticks` pass; true if it held.
    pub fn run_until(&mut self, ticks: u64, mut pred: impl FnMut(&Sim) -> bool) -> bool {
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

    /// The established leader, if any live server is one.
    pub fn leader(&self) -> Option<ServerId> {
        self.nodes
            .iter()
            .find(|(_, n)| {
                n.zab
                    .as_ref()
                    .is_some_and(|z| z.established_epoch().is_some())
            })
            .map(|(id, _)| *id)
    }

    /// True when every server is up, serving under one leader, and all delivered the same
    /// sequence, which holds every txn the leader logged.
    pub fn converged(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let lz = self.nodes[&l].zab.as_ref().unwrap();
        let last = lz.last_zxid();
        let digest = self.nodes[&l].rsm.digest();
        self.nodes.values().all(|n| {
            n.zab.as_ref().is_some_and(|z| {
                z.is_serving() && z.leader() == Some(l) && z.applied_zxid() == last
            }) && n.rsm.digest() == digest
        })
    }

    /// Stops faults and clients, heals, restarts everyone and waits for convergence; then
    /// checks durability of acknowledged writes.
    pub fn heal_and_check(&mut self) -> Result<(), Violation> {
        self.faults = false;
        self.clients = false;
        self.heal();
        let ids: Vec<ServerId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.restart(id);
        }
        let ticks = self.opts.heal_ticks;
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
        self.checker.check_final(&self.nodes)
    }

    /// One line per server, for failure reports.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (id, n) in &self.nodes {
            match &n.zab {
                None => s.push_str(&format!("[{id}: down] ")),
                Some(z) => s.push_str(&format!(
                    "[{id}: {:?} leader={:?} serving={} acc={} cur={} last={:#x} applied={:#x}] ",
                    z.role(),
                    z.leader(),
                    z.is_serving(),
                    z.accepted_epoch(),
                    z.current_epoch(),
                    z.last_zxid(),
                    z.applied_zxid()
                )),
            }
        }
        s
    }

    /// The client writes acknowledged so far.
    pub fn acked(&self) -> &BTreeMap<Zxid, Vec<u8>> {
        self.checker.acked()
    }
}

/// Runs one seed with the given options end to end. A panic inside zab (a release-mode
/// invariant `assert!`) is reported as a violation too, so one seed never takes the others
/// down.
pub fn run(opts: Options) -> Result<Stats, Violation> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_inner(opts))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Violation(format!("invariant assert fired: {msg}")))
        }
    }
}

fn run_inner(opts: Options) -> Result<Stats, Violation> {
    let mut sim = Sim::new(opts);
    let ticks = sim.opts.fault_ticks;
    sim.run_ticks(ticks);
    if let Some(v) = sim.checker.violation() {
        return Err(v);
    }
    sim.heal_and_check()?;
    Ok(sim.stats.clone())
}
