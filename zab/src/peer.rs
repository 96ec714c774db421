//! The ZAB peer: one server's election, discovery, synchronisation and broadcast state.
//!
//! Owns everything ZooKeeper keeps in `QuorumPeer` (role, epochs), `FastLeaderElection`
//! (logical clock, votes), `Leader` + `LearnerHandler` (per-learner discovery/sync state,
//! outstanding proposals, commit point), `Learner`/`Follower`/`Observer`, and the
//! in-memory log window (`ZKDatabase.committedLog` plus every proposal not yet applied).
//! Never does IO: every effect is an [`Output`] in `self.out`.
//!
//! Invariants (release-mode asserts): log zxids strictly increase; acceptedEpoch and
//! currentEpoch never decrease; nothing at or below `applied_zxid` is ever truncated;
//! applied zxids strictly increase; `log_base <= applied_zxid <= committed_zxid <= last_zxid`.
//!
//! The log window holds `(zxid, payload)` for every txn above `log_base`. Entries above
//! `applied_zxid` are never dropped (they may still need applying); applied entries are
//! kept up to `committed_log_max` so a leader can serve DIFF, older ones are dropped and
//! `log_base` advances (learners further behind get SNAP).

use std::collections::{BTreeMap, VecDeque};

use crate::message::{Message, Notification, PeerState};
use crate::{
    make_zxid, zxid_counter, zxid_epoch, Config, InjectedBug, Output, Restored, Role, ServerId,
    ZabError, Zxid,
};

/// A vote: the proposed leader and the state that orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vote {
    leader: ServerId,
    zxid: Zxid,
    peer_epoch: u32,
}

impl Vote {
    /// ZooKeeper's totalOrderPredicate: (peer epoch, zxid, server id).
    fn key(&self) -> (u32, Zxid, ServerId) {
        (self.peer_epoch, self.zxid, self.leader)
    }
}

#[derive(Debug, Default)]
struct Election {
    /// Votes of voters in our round (same electionEpoch), with the sender's state.
    recv: BTreeMap<ServerId, (Vote, PeerState)>,
    /// Votes of voters that have finished an election (FOLLOWING/LEADING).
    out_of_election: BTreeMap<ServerId, (Vote, PeerState)>,
    /// Our own vote reached a quorum: decide at this tick unless a better vote arrives
    /// (ZooKeeper's finalizeWait).
    decide_at: Option<u64>,
    last_broadcast: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnerPhase {
    /// FOLLOWERINFO sent, waiting for LEADERINFO.
    Discovery,
    /// ACKEPOCH sent; receiving DIFF/TRUNC/SNAP, history, NEWLEADER.
    Syncing,
    /// NEWLEADER received; waiting for UPTODATE.
    AwaitUpToDate,
    /// UPTODATE received: serving.
    Broadcast,
}

#[derive(Debug)]
struct LearnerState {
    leader: ServerId,
    phase: LearnerPhase,
    epoch: u32,
    got_sync_mode: bool,
    newleader_pending: bool,
    newleader_acked: bool,
    ack_sent: Zxid,
    last_heard: u64,
    pending_syncs: Vec<(u64, Zxid)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandlerPhase {
    /// FOLLOWERINFO received.
    Info,
    /// ACKEPOCH received; not yet synced. `counted`: the learner accepted our epoch
    /// just now (not earlier, from another leader), so it counts towards the quorum.
    EpochAcked { last_zxid: Zxid, counted: bool },
    /// Waiting for the host's snapshot to send SNAP.
    AwaitSnapshot,
    /// Sync stream and NEWLEADER sent; in the forwarding set.
    Synced,
    /// NEWLEADER acknowledged.
    Active,
}

/// The leader's view of one learner (ZooKeeper's LearnerHandler).
#[derive(Debug)]
struct Handler {
    observer: bool,
    accepted_epoch: u32,
    leaderinfo_sent: bool,
    phase: HandlerPhase,
    acked: Zxid,
    last_heard: u64,
    /// Highest zxid sent to this learner as a PROPOSAL (observers: to choose COMMIT or
    /// INFORM at commit time).
    sent_upto: Zxid,
    /// Last zxid of the sync stream before NEWLEADER: the learner ACKs NEWLEADER only
    /// once all of it is durable, so that ACK also acknowledges these proposals.
    newleader_upto: Zxid,
    uptodate_sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderPhase {
    Discovery,
    Sync,
    Broadcast,
}

#[derive(Debug)]
struct LeaderState {
    phase: LeaderPhase,
    entered: u64,
    epoch: Option<u32>,
    learners: BTreeMap<ServerId, Handler>,
    /// Last zxid of the history this leader starts its epoch with.
    newleader_zxid: Zxid,
    counter: u32,
    exhausted: bool,
    snapshot_requested: bool,
    /// (learner or None for local, request id, zxid it waits for)
    pending_syncs: Vec<(Option<ServerId>, u64, Zxid)>,
}

#[derive(Debug)]
enum Phase {
    Looking(Election),
    Leading(LeaderState),
    Learning(LearnerState),
}

/// Counts a leader reports about its learners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderStats {
    /// Connected learners in any phase (ZooKeeper's `learners`).
    pub learners: usize,
    /// Voting learners synced and receiving proposals (`synced_followers`).
    pub synced_followers: usize,
    /// Observers synced and receiving INFORMs (`synced_observers`).
    pub synced_observers: usize,
    /// `sync` requests waiting for their commit (`pending_syncs`).
    pub pending_syncs: usize,
}

/// One ZAB peer. See the crate header for the host contract.
#[derive(Debug)]
pub struct Zab {
    cfg: Config,
    rng: u64,
    accepted_epoch: u32,
    current_epoch: u32,
    log: VecDeque<(Zxid, Vec<u8>)>,
    log_base: Zxid,
    durable_zxid: Zxid,
    committed_zxid: Zxid,
    applied_zxid: Zxid,
    logical_clock: u64,
    vote: Vote,
    phase: Phase,
    role: Role,
    serving: bool,
    now: u64,
    ping_payload: Vec<u8>,
    out: Vec<Output>,
}

impl Zab {
    /// Builds a peer from its configuration and what the host recovered from disk. The
    /// peer starts LOOKING; drain [`Zab::ready`] for its first notifications.
    pub fn new(cfg: Config, restored: Restored, seed: u64) -> Result<Zab, ZabError> {
        cfg.validate()?;
        let bad = |s: &str| Err(ZabError::BadRestore(s.to_string()));
        if restored.current_epoch > restored.accepted_epoch {
            return bad("currentEpoch above acceptedEpoch");
        }
        if restored.log_base > restored.applied_zxid || restored.log_base < 0 {
            return bad("log_base must be within [0, applied_zxid]");
        }
        let mut prev = restored.log_base;
        for (z, p) in &restored.log {
            if *z <= prev {
                return bad("log zxids must strictly increase above log_base");
            }
            if p.is_empty() {
                return bad("empty txn in log");
            }
            prev = *z;
        }
        if restored.applied_zxid > prev {
            return bad("applied_zxid beyond the log");
        }
        if restored.applied_zxid > restored.log_base
            && !restored
                .log
                .iter()
                .any(|(z, _)| *z == restored.applied_zxid)
        {
            return bad("applied_zxid is not a logged zxid");
        }
        let mut zab = Zab {
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            accepted_epoch: restored.accepted_epoch,
            current_epoch: restored.current_epoch,
            log: restored.log.into_iter().collect(),
            log_base: restored.log_base,
            durable_zxid: prev,
            committed_zxid: restored.applied_zxid,
            applied_zxid: restored.applied_zxid,
            logical_clock: 0,
            vote: Vote {
                leader: cfg.id,
                zxid: prev,
                peer_epoch: restored.current_epoch,
            },
            phase: Phase::Looking(Election::default()),
            role: Role::Looking,
            serving: false,
            now: 0,
            ping_payload: Vec::new(),
            out: Vec::new(),
            cfg,
        };
        zab.out.push(Output::RoleChanged {
            role: Role::Looking,
            leader: None,
            serving: false,
        });
        zab.become_looking();
        Ok(zab)
    }

    // ----- accessors -----

    pub fn id(&self) -> ServerId {
        self.cfg.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    /// True when this peer is an established leader or a learner that got UPTODATE.
    pub fn is_serving(&self) -> bool {
        self.serving
    }
    /// The leader this peer follows or is; None while LOOKING.
    pub fn leader(&self) -> Option<ServerId> {
        match &self.phase {
            Phase::Looking(_) => None,
            Phase::Leading(_) => Some(self.cfg.id),
            Phase::Learning(l) => Some(l.leader),
        }
    }
    /// The epoch this peer leads, once established (quorum acked NEWLEADER).
    pub fn established_epoch(&self) -> Option<u32> {
        match &self.phase {
            Phase::Leading(l) if l.phase == LeaderPhase::Broadcast => l.epoch,
            _ => None,
        }
    }
    pub fn accepted_epoch(&self) -> u32 {
        self.accepted_epoch
    }
    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }
    pub fn last_zxid(&self) -> Zxid {
        self.log.back().map_or(self.log_base, |e| e.0)
    }
    pub fn durable_zxid(&self) -> Zxid {
        self.durable_zxid
    }
    pub fn committed_zxid(&self) -> Zxid {
        self.committed_zxid
    }
    pub fn applied_zxid(&self) -> Zxid {
        self.applied_zxid
    }
    pub fn log_base(&self) -> Zxid {
        self.log_base
    }
    /// The leader's view of its learners, for `mntr` (ZooKeeper's learners,
    /// synced_followers, synced_observers and pending_syncs gauges); None unless leading.
    pub fn leader_stats(&self) -> Option<LeaderStats> {
        let Phase::Leading(l) = &self.phase else {
            return None;
        };
        let synced = |h: &&Handler| matches!(h.phase, HandlerPhase::Synced | HandlerPhase::Active);
        Some(LeaderStats {
            learners: l.learners.len(),
            synced_followers: l
                .learners
                .values()
                .filter(|h| !h.observer)
                .filter(synced)
                .count(),
            synced_observers: l
                .learners
                .values()
                .filter(|h| h.observer)
                .filter(synced)
                .count(),
            pending_syncs: l.pending_syncs.len(),
        })
    }
    pub fn voters(&self) -> usize {
        self.cfg.voters.len()
    }
    /// The in-memory log window (every txn above `log_base`).
    pub fn log_window(&self) -> impl Iterator<Item = &(Zxid, Vec<u8>)> {
        self.log.iter()
    }

    /// Drains the outputs produced since the last call; execute them in order.
    pub fn ready(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    // ----- helpers -----

    fn quorum(&self) -> usize {
        self.cfg.voters.len() / 2 + 1
    }
    fn is_voter(&self, id: ServerId) -> bool {
        self.cfg.voters.contains(&id)
    }
    fn is_member(&self, id: ServerId) -> bool {
        self.is_voter(id) || self.cfg.observers.contains(&id)
    }
    fn send(&mut self, to: ServerId, msg: Message) {
        self.out.push(Output::Send { to, msg });
    }
    fn next_rand(&mut self) -> u64 {
        // splitmix64: a seeded sequence, only used for election resend jitter.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn set_accepted_epoch(&mut self, e: u32) {
        assert!(
            e >= self.accepted_epoch,
            "acceptedEpoch must never decrease"
        );
        if e > self.accepted_epoch {
            self.accepted_epoch = e;
            self.out.push(Output::PersistAcceptedEpoch(e));
        }
    }

    fn set_current_epoch(&mut self, e: u32) {
        assert!(e >= self.current_epoch, "currentEpoch must never decrease");
        assert!(e <= self.accepted_epoch, "currentEpoch above acceptedEpoch");
        if e > self.current_epoch {
            self.current_epoch = e;
            self.out.push(Output::PersistCurrentEpoch(e));
        }
        // The vote we report to LOOKING peers names the epoch we are in now, so that every
        // member of this epoch reports the same (leader, peerEpoch) and a rejoining server
        // can count them as one quorum (ZooKeeper updates its current vote the same way).
        if let Some(leader) = self.leader() {
            self.vote = Vote {
                leader,
                zxid: make_zxid(e, 0),
                peer_epoch: e,
            };
        }
    }

    fn append_local(&mut self, zxid: Zxid, payload: Vec<u8>) {
        assert!(
            zxid > self.last_zxid(),
            "zxids appended to the log must strictly increase"
        );
        self.log.push_back((zxid, payload.clone()));
        self.out.push(Output::Append { zxid, payload });
    }

    fn truncate_after(&mut self, zxid: Zxid) {
        assert!(
            zxid >= self.applied_zxid,
            "the committed (applied) prefix must never be truncated"
        );
        while self.log.back().is_some_and(|e| e.0 > zxid) {
            self.log.pop_back();
        }
        self.durable_zxid = self.durable_zxid.min(zxid);
        self.committed_zxid = self.committed_zxid.min(zxid);
        self.out.push(Output::TruncateLog { after: zxid });
    }

    /// Marks everything up to `zxid` (capped at the log end) committed and applies it.
    fn commit_to(&mut self, zxid: Zxid) {
        let target = zxid.min(self.last_zxid());
        if target > self.committed_zxid {
            self.committed_zxid = target;
        }
        // The log is in zxid order, so the entries to apply are one range: found by binary
        // search rather than a scan of the whole window (up to committed_log_max + the
        // outstanding proposals) on every commit, which was 7 % of a 3-server ensemble's
        // CPU under pipelined creates.
        let from = self.log.partition_point(|e| e.0 <= self.applied_zxid);
        let to = self.log.partition_point(|e| e.0 <= self.committed_zxid);
        let applies: Vec<(Zxid, Vec<u8>)> = self
            .log
            .range(from..to.max(from))
            .map(|(z, p)| (*z, p.clone()))
            .collect();
        for (z, p) in applies {
            assert!(
                z > self.applied_zxid,
                "applied zxids must strictly increase"
            );
            self.applied_zxid = z;
            self.out.push(Output::Apply {
                zxid: z,
                payload: p,
            });
        }
        // Trim the committed window (ZooKeeper's committedLog / commitLogCount).
        let applied = self.log.partition_point(|e| e.0 <= self.applied_zxid);
        let mut excess = applied.saturating_sub(self.cfg.committed_log_max);
        while excess > 0 {
            let (z, _) = self.log.pop_front().expect("counted above");
            self.log_base = z;
            excess -= 1;
        }
        self.release_learner_syncs();
    }

    fn set_role(&mut self, role: Role, serving: bool) {
        if self.role != role || self.serving != serving {
            self.role = role;
            self.serving = serving;
            let leader = self.leader();
            self.out.push(Output::RoleChanged {
                role,
                leader,
                serving,
            });
        }
    }

    fn notification(&self) -> Notification {
        Notification {
            state: match self.role {
                Role::Looking => PeerState::Looking,
                Role::Following => PeerState::Following,
                Role::Leading => PeerState::Leading,
                Role::Observing => PeerState::Observing,
            },
            leader: self.vote.leader,
            zxid: self.vote.zxid,
            election_epoch: self.logical_clock,
            peer_epoch: self.vote.peer_epoch,
        }
    }

    fn broadcast_vote(&mut self) {
        let n = self.notification();
        let others: Vec<ServerId> = self
            .cfg
            .voters
            .iter()
            .chain(&self.cfg.observers)
            .copied()
            .filter(|&p| p != self.cfg.id)
            .collect();
        for p in others {
            self.send(p, Message::Notification(n));
        }
        if let Phase::Looking(el) = &mut self.phase {
            el.last_broadcast = self.now;
        }
    }

    fn self_vote(&self) -> Vote {
        Vote {
            leader: self.cfg.id,
            zxid: self.last_zxid(),
            peer_epoch: self.current_epoch,
        }
    }

    /// Enters LOOKING: a new election round (logical clock + 1) voting for ourselves.
    fn become_looking(&mut self) {
        self.logical_clock += 1;
        self.vote = self.self_vote();
        let mut el = Election::default();
        if self.is_voter(self.cfg.id) {
            el.recv.insert(self.cfg.id, (self.vote, PeerState::Looking));
        }
        self.phase = Phase::Looking(el);
        self.set_role(Role::Looking, false);
        self.broadcast_vote();
        self.check_election_quorum();
    }

    // ----- inputs -----

    /// One tick of tickTime.
    pub fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        match &self.phase {
            Phase::Looking(el) => {
                if el.decide_at.is_some_and(|t| t <= now) {
                    if self.has_quorum_for(&self.vote, true) {
                        self.decide(self.vote);
                        return;
                    }
                    if let Phase::Looking(el) = &mut self.phase {
                        el.decide_at = None;
                    }
                }
                let jitter = self.next_rand() % 2;
                if let Phase::Looking(el) = &self.phase {
                    if now - el.last_broadcast >= self.cfg.election_resend_ticks as u64 + jitter {
                        self.broadcast_vote();
                    }
                }
            }
            Phase::Learning(l) => {
                let limit = if l.phase == LearnerPhase::Broadcast {
                    self.cfg.sync_limit_ticks
                } else {
                    self.cfg.init_limit_ticks
                } as u64;
                if now - l.last_heard > limit {
                    self.become_looking();
                    return;
                }
                if l.phase == LearnerPhase::Discovery {
                    let (leader, msg) = (l.leader, self.follower_info());
                    self.send(leader, msg);
                }
            }
            Phase::Leading(_) => self.leader_tick(),
        }
    }

    fn follower_info(&self) -> Message {
        Message::FollowerInfo {
            accepted_epoch: self.accepted_epoch,
            observer: !self.is_voter(self.cfg.id),
        }
    }

    /// The quorum connection to `peer` broke.
    pub fn disconnected(&mut self, peer: ServerId) {
        match &mut self.phase {
            Phase::Learning(l) if l.leader == peer => self.become_looking(),
            Phase::Leading(ls) => {
                ls.learners.remove(&peer);
            }
            _ => {}
        }
    }

    /// A message from `from`. Protocol violations by the leader make a learner go back to
    /// LOOKING; the error is returned for the host's log.
    pub fn step(&mut self, from: ServerId, msg: Message) -> Result<(), ZabError> {
        if !self.is_member(from) || from == self.cfg.id {
            return Err(ZabError::UnknownPeer(from));
        }
        if let Message::Notification(n) = msg {
            self.on_notification(from, n);
            return Ok(());
        }
        match &self.phase {
            Phase::Looking(_) => Ok(()), // no quorum connection while LOOKING
            Phase::Leading(_) => self.leader_step(from, msg),
            Phase::Learning(l) => {
                if l.leader != from {
                    return Ok(());
                }
                let r = self.learner_step(msg);
                if r.is_err() {
                    // The leader broke the protocol: drop it and elect again.
                    self.become_looking();
                }
                r
            }
        }
    }

    // ----- fast leader election -----

    fn has_quorum_for(&self, vote: &Vote, in_round: bool) -> bool {
        let Phase::Looking(el) = &self.phase else {
            return false;
        };
        let set = if in_round {
            &el.recv
        } else {
            &el.out_of_election
        };
        let n = set
            .iter()
            .filter(|(id, (v, _))| {
                self.is_voter(**id)
                    && v.leader == vote.leader
                    && v.peer_epoch == vote.peer_epoch
                    && (!in_round || v.zxid == vote.zxid)
            })
            .count();
        n >= self.quorum()
    }

    /// ZooKeeper's checkLeader: a vote for another server counts only if that server says
    /// it is LEADING; a vote for ourselves only in our current round.
    fn check_leader(&self, leader: ServerId, election_epoch: u64, in_round: bool) -> bool {
        let Phase::Looking(el) = &self.phase else {
            return false;
        };
        if leader == self.cfg.id {
            return election_epoch == self.logical_clock;
        }
        let set = if in_round {
            &el.recv
        } else {
            &el.out_of_election
        };
        matches!(set.get(&leader), Some((_, PeerState::Leading)))
    }

    fn check_election_quorum(&mut self) {
        let q = self.has_quorum_for(&self.vote, true);
        let now = self.now;
        if let Phase::Looking(el) = &mut self.phase {
            if q {
                el.decide_at.get_or_insert(now + 1);
            } else {
                el.decide_at = None;
            }
        }
    }

    fn on_notification(&mut self, from: ServerId, n: Notification) {
        let Phase::Looking(_) = &self.phase else {
            // Finished an election: tell a LOOKING peer whom we follow.
            if n.state == PeerState::Looking {
                let mine = self.notification();
                self.send(from, Message::Notification(mine));
            }
            return;
        };
        let nv = Vote {
            leader: n.leader,
            zxid: n.zxid,
            peer_epoch: n.peer_epoch,
        };
        let me_voter = self.is_voter(self.cfg.id);
        if !self.is_voter(from) {
            // An observer looking for its leader: answer with our vote.
            if n.state == PeerState::Looking && me_voter {
                let mine = self.notification();
                self.send(from, Message::Notification(mine));
            }
            return;
        }
        if !self.is_voter(n.leader) {
            return; // a vote for a non-voter is meaningless
        }
        match n.state {
            PeerState::Looking => {
                if !me_voter {
                    return;
                }
                if n.election_epoch > self.logical_clock {
                    self.logical_clock = n.election_epoch;
                    let own = self.self_vote();
                    self.vote = if nv.key() > own.key() { nv } else { own };
                    if let Phase::Looking(el) = &mut self.phase {
                        el.recv.clear();
                        el.decide_at = None;
                    }
                    self.record_own_vote();
                    self.broadcast_vote();
                } else if n.election_epoch < self.logical_clock {
                    let mine = self.notification();
                    self.send(from, Message::Notification(mine));
                    return;
                } else if nv.key() > self.vote.key() {
                    self.vote = nv;
                    if let Phase::Looking(el) = &mut self.phase {
                        el.decide_at = None;
                    }
                    self.record_own_vote();
                    self.broadcast_vote();
                }
                if let Phase::Looking(el) = &mut self.phase {
                    el.recv.insert(from, (nv, n.state));
                }
                self.check_election_quorum();
            }
            PeerState::Following | PeerState::Leading => {
                if n.election_epoch == self.logical_clock && me_voter {
                    if let Phase::Looking(el) = &mut self.phase {
                        el.recv.insert(from, (nv, n.state));
                    }
                    if self.has_quorum_for(&nv, true)
                        && self.check_leader(nv.leader, n.election_epoch, true)
                    {
                        self.decide(nv);
                        return;
                    }
                }
                if let Phase::Looking(el) = &mut self.phase {
                    el.out_of_election.insert(from, (nv, n.state));
                }
                if self.has_quorum_for(&nv, false)
                    && self.check_leader(nv.leader, n.election_epoch, false)
                {
                    self.logical_clock = n.election_epoch;
                    self.decide(nv);
                }
            }
            PeerState::Observing => {}
        }
    }

    fn record_own_vote(&mut self) {
        let (id, v) = (self.cfg.id, self.vote);
        if let Phase::Looking(el) = &mut self.phase {
            el.recv.insert(id, (v, PeerState::Looking));
        }
    }

    fn decide(&mut self, vote: Vote) {
        self.vote = vote;
        if vote.leader == self.cfg.id {
            self.phase = Phase::Leading(LeaderState {
                phase: LeaderPhase::Discovery,
                entered: self.now,
                epoch: None,
                learners: BTreeMap::new(),
                newleader_zxid: 0,
                counter: 0,
                exhausted: false,
                snapshot_requested: false,
                pending_syncs: Vec::new(),
            });
            self.set_role(Role::Leading, false);
            self.leader_progress();
        } else {
            self.phase = Phase::Learning(LearnerState {
                leader: vote.leader,
                phase: LearnerPhase::Discovery,
                epoch: 0,
                got_sync_mode: false,
                newleader_pending: false,
                newleader_acked: false,
                ack_sent: 0,
                last_heard: self.now,
                pending_syncs: Vec::new(),
            });
            let role = if self.is_voter(self.cfg.id) {
                Role::Following
            } else {
                Role::Observing
            };
            self.set_role(role, false);
            let msg = self.follower_info();
            self.send(vote.leader, msg);
        }
    }

    // ----- learner (Follower / Observer) -----

    fn learner(&mut self) -> &mut LearnerState {
        match &mut self.phase {
            Phase::Learning(l) => l,
            _ => unreachable!("learner() outside Learning"),
        }
    }

    fn learner_step(&mut self, msg: Message) -> Result<(), ZabError> {
        let now = self.now;
        let bug = self.cfg.injected_bug;
        let l = self.learner();
        // Only packets a leader sends prove the leader alive (two servers that each think
        // the other leads must still time out).
        if !matches!(
            msg,
            Message::FollowerInfo { .. }
                | Message::AckEpoch { .. }
                | Message::Ack { .. }
                | Message::Request { .. }
        ) {
            l.last_heard = now;
        }
        let leader = l.leader;
        let phase = l.phase;
        let proto = |what| ZabError::Protocol { from: leader, what };
        match (phase, msg) {
            (LearnerPhase::Discovery, Message::LeaderInfo { epoch }) => {
                if epoch < self.accepted_epoch {
                    return Err(proto("LEADERINFO epoch below our acceptedEpoch"));
                }
                // A promise for this epoch number was already given (maybe to another
                // leader): say so, so that the leader does not count us twice.
                let fresh = epoch > self.accepted_epoch;
                // Persisted (Ready order) before ACKEPOCH leaves.
                self.set_accepted_epoch(epoch);
                let l = self.learner();
                l.epoch = epoch;
                l.phase = LearnerPhase::Syncing;
                let ack = Message::AckEpoch {
                    current_epoch: fresh.then_some(self.current_epoch),
                    last_zxid: self.last_zxid(),
                };
                self.send(leader, ack);
                Ok(())
            }
            (LearnerPhase::Discovery, _) => Ok(()),
            (LearnerPhase::Syncing, Message::LeaderInfo { .. }) => Ok(()), // duplicate
            (LearnerPhase::Syncing, Message::Diff { zxid }) => {
                if zxid != self.last_zxid() || self.learner().got_sync_mode {
                    return Err(proto("DIFF does not match our last zxid"));
                }
                self.learner().got_sync_mode = true;
                Ok(())
            }
            (LearnerPhase::Syncing, Message::Trunc { zxid }) => {
                if self.learner().got_sync_mode || zxid > self.last_zxid() {
                    return Err(proto("bad TRUNC"));
                }
                self.learner().got_sync_mode = true;
                self.truncate_after(zxid);
                Ok(())
            }
            (LearnerPhase::Syncing, Message::Snap { zxid, data }) => {
                if self.learner().got_sync_mode {
                    return Err(proto("SNAP after sync mode"));
                }
                assert!(
                    zxid >= self.applied_zxid,
                    "SNAP would roll back the committed (applied) prefix"
                );
                self.learner().got_sync_mode = true;
                self.log.clear();
                self.log_base = zxid;
                self.applied_zxid = zxid;
                self.committed_zxid = zxid;
                self.durable_zxid = zxid;
                self.out.push(Output::RestoreSnapshot { zxid, data });
                Ok(())
            }
            (LearnerPhase::Syncing, Message::Proposal { zxid, payload }) => {
                if !self.learner().got_sync_mode || zxid <= self.last_zxid() || payload.is_empty() {
                    return Err(proto("sync PROPOSAL out of order"));
                }
                self.append_local(zxid, payload);
                Ok(())
            }
            (
                LearnerPhase::Syncing | LearnerPhase::AwaitUpToDate | LearnerPhase::Broadcast,
                Message::Commit { zxid },
            ) => {
                if zxid > self.last_zxid() {
                    return Err(proto("COMMIT for a zxid we never received"));
                }
                self.commit_to(zxid);
                Ok(())
            }
            (LearnerPhase::Syncing, Message::NewLeader { epoch }) => {
                let l = self.learner();
                if epoch != l.epoch || !l.got_sync_mode {
                    return Err(proto("NEWLEADER for another epoch or before sync"));
                }
                l.phase = LearnerPhase::AwaitUpToDate;
                l.newleader_pending = true;
                self.try_ack_newleader();
                Ok(())
            }
            (
                LearnerPhase::AwaitUpToDate | LearnerPhase::Broadcast,
                Message::Proposal { zxid, payload },
            ) => {
                let epoch = self.learner().epoch;
                let last = self.last_zxid();
                let contiguous = if zxid_epoch(last) == epoch {
                    zxid == last + 1
                } else {
                    zxid == make_zxid(epoch, 1)
                };
                if !contiguous || payload.is_empty() || !self.is_voter(self.cfg.id) {
                    return Err(proto("PROPOSAL out of order"));
                }
                self.append_local(zxid, payload);
                if bug == Some(InjectedBug::AckBeforeFsync) {
                    self.durable_zxid_for_ack(zxid);
                }
                Ok(())
            }
            (
                LearnerPhase::AwaitUpToDate | LearnerPhase::Broadcast,
                Message::Inform { zxid, payload },
            ) => {
                if self.is_voter(self.cfg.id) || zxid <= self.last_zxid() || payload.is_empty() {
                    return Err(proto("bad INFORM"));
                }
                self.append_local(zxid, payload);
                self.commit_to(zxid);
                Ok(())
            }
            (LearnerPhase::AwaitUpToDate, Message::UpToDate { zxid }) => {
                if !self.learner().newleader_acked {
                    return Err(proto("UPTODATE before our NEWLEADER ACK"));
                }
                if bug == Some(InjectedBug::ApplyUncommittedOnSync) {
                    self.commit_to(self.last_zxid());
                } else {
                    self.commit_to(zxid);
                }
                self.learner().phase = LearnerPhase::Broadcast;
                let role = self.role;
                self.set_role(role, true);
                Ok(())
            }
            (_, Message::Ping { .. }) => {
                let payload = std::mem::take(&mut self.ping_payload);
                self.send(leader, Message::Ping { zxid: 0, payload });
                Ok(())
            }
            (LearnerPhase::Broadcast | LearnerPhase::AwaitUpToDate, Message::Sync { zxid, id }) => {
                self.learner().pending_syncs.push((id, zxid));
                self.release_learner_syncs();
                Ok(())
            }
            (_, Message::LeaderInfo { .. }) => Ok(()),
            (_, _) => Err(proto("unexpected packet for this phase")),
        }
    }

    /// Test-only bug path: acknowledge as if fsynced.
    fn durable_zxid_for_ack(&mut self, zxid: Zxid) {
        let l = self.learner();
        if l.newleader_acked && zxid > l.ack_sent {
            l.ack_sent = zxid;
            let leader = l.leader;
            self.send(leader, Message::Ack { zxid });
        }
    }

    fn try_ack_newleader(&mut self) {
        let bug = self.cfg.injected_bug == Some(InjectedBug::AckBeforeFsync);
        let durable_ok = self.durable_zxid >= self.last_zxid();
        let Phase::Learning(l) = &self.phase else {
            return;
        };
        if !l.newleader_pending || !(durable_ok || bug) {
            return;
        }
        let (epoch, leader) = (l.epoch, l.leader);
        // currentEpoch only after the synced history is durable (ZOOKEEPER-4643), and
        // persisted before the ACK leaves (Ready order).
        self.set_current_epoch(epoch);
        let last = self.last_zxid();
        let l = self.learner();
        l.newleader_pending = false;
        l.newleader_acked = true;
        l.ack_sent = last;
        self.send(
            leader,
            Message::Ack {
                zxid: make_zxid(epoch, 0),
            },
        );
    }

    fn release_learner_syncs(&mut self) {
        let applied = self.applied_zxid;
        let Phase::Learning(l) = &mut self.phase else {
            return;
        };
        let mut done = Vec::new();
        l.pending_syncs.retain(|(id, z)| {
            if *z <= applied {
                done.push(*id);
                false
            } else {
                true
            }
        });
        for id in done {
            self.out.push(Output::SyncDone { id });
        }
    }

    /// The host made every appended txn up to `zxid` durable.
    pub fn log_synced(&mut self, zxid: Zxid) {
        let z = zxid.min(self.last_zxid());
        if z <= self.durable_zxid {
            return;
        }
        self.durable_zxid = z;
        match &self.phase {
            Phase::Learning(_) => {
                self.try_ack_newleader();
                let voter = self.is_voter(self.cfg.id);
                let l = self.learner();
                if voter && l.newleader_acked && z > l.ack_sent && zxid_epoch(z) == l.epoch {
                    l.ack_sent = z;
                    let leader = l.leader;
                    self.send(leader, Message::Ack { zxid: z });
                }
            }
            Phase::Leading(_) => {
                self.leader_progress();
                self.try_commit();
            }
            Phase::Looking(_) => {}
        }
    }

    /// Session touches to carry on this learner's next PING reply.
    pub fn set_ping_payload(&mut self, payload: Vec<u8>) {
        self.ping_payload = payload;
    }

    /// A client write arriving at this server: the leader hands it back to its host as
    /// [`Output::ForwardedRequest`] (from itself); a serving learner forwards it.
    pub fn submit_request(&mut self, payload: Vec<u8>) -> Result<(), ZabError> {
        if payload.is_empty() || payload.len() > self.cfg.max_message_bytes {
            return Err(ZabError::BadPayload);
        }
        if !self.serving {
            return Err(ZabError::NoLeader);
        }
        match &self.phase {
            Phase::Leading(_) => {
                let from = self.cfg.id;
                self.out.push(Output::ForwardedRequest { from, payload });
            }
            Phase::Learning(l) => {
                let leader = l.leader;
                self.send(leader, Message::Request { payload });
            }
            Phase::Looking(_) => return Err(ZabError::NoLeader),
        }
        Ok(())
    }

    /// A client `sync`: [`Output::SyncDone`] once every txn the leader had proposed when
    /// it saw the request is applied here.
    pub fn sync(&mut self, id: u64) -> Result<(), ZabError> {
        if !self.serving {
            return Err(ZabError::NoLeader);
        }
        match &self.phase {
            Phase::Leading(_) => self.leader_sync(None, id),
            Phase::Learning(l) => {
                let leader = l.leader;
                self.send(leader, Message::Sync { zxid: 0, id });
            }
            Phase::Looking(_) => return Err(ZabError::NoLeader),
        }
        Ok(())
    }

    // ----- leader -----

    fn ls_mut(&mut self) -> &mut LeaderState {
        match &mut self.phase {
            Phase::Leading(l) => l,
            _ => unreachable!("leader() outside Leading"),
        }
    }

    /// Leader: a prepared txn to broadcast. Returns its zxid.
    pub fn propose(&mut self, payload: Vec<u8>) -> Result<Zxid, ZabError> {
        if payload.is_empty() || payload.len() > self.cfg.max_message_bytes {
            return Err(ZabError::BadPayload);
        }
        let max = self.cfg.max_zxid_counter;
        let Phase::Leading(ls) = &mut self.phase else {
            return Err(ZabError::NotLeader);
        };
        if ls.phase != LeaderPhase::Broadcast {
            return Err(ZabError::NoLeader);
        }
        if ls.exhausted || ls.counter >= max {
            ls.exhausted = true;
            return Err(ZabError::EpochExhausted);
        }
        ls.counter += 1;
        let epoch = ls.epoch.expect("established leader has an epoch");
        let zxid = make_zxid(epoch, ls.counter);
        if ls.counter >= max {
            // Last zxid of this epoch: refuse further proposals, drain, then re-elect.
            ls.exhausted = true;
        }
        let targets: Vec<ServerId> = ls
            .learners
            .iter_mut()
            .filter(|(_, h)| {
                !h.observer && matches!(h.phase, HandlerPhase::Synced | HandlerPhase::Active)
            })
            .map(|(id, h)| {
                h.sent_upto = zxid;
                *id
            })
            .collect();
        self.append_local(zxid, payload.clone());
        for t in targets {
            self.send(
                t,
                Message::Proposal {
                    zxid,
                    payload: payload.clone(),
                },
            );
        }
        self.try_commit();
        Ok(zxid)
    }

    fn leader_sync(&mut self, from: Option<ServerId>, id: u64) {
        let target = self.last_zxid();
        self.ls_mut().pending_syncs.push((from, id, target));
        self.release_leader_syncs();
    }

    fn release_leader_syncs(&mut self) {
        let committed = self.committed_zxid;
        let Phase::Leading(ls) = &mut self.phase else {
            return;
        };
        let mut done = Vec::new();
        ls.pending_syncs.retain(|s| {
            if s.2 <= committed {
                done.push(*s);
                false
            } else {
                true
            }
        });
        for (from, id, target) in done {
            match from {
                None => self.out.push(Output::SyncDone { id }),
                Some(p) => self.send(p, Message::Sync { zxid: target, id }),
            }
        }
    }

    fn leader_step(&mut self, from: ServerId, msg: Message) -> Result<(), ZabError> {
        let now = self.now;
        let is_observer = !self.is_voter(from);
        let ls = self.ls_mut();
        if let Some(h) = ls.learners.get_mut(&from) {
            h.last_heard = now;
        }
        match msg {
            Message::FollowerInfo {
                accepted_epoch,
                observer,
            } => {
                if observer != is_observer {
                    return Err(ZabError::Protocol {
                        from,
                        what: "learner type does not match the configuration",
                    });
                }
                // A learner resends FOLLOWERINFO only until LEADERINFO reaches it, so a
                // repeat while we still wait for its ACKEPOCH is a resend; one arriving
                // later means it reconnected (the host may not have reported the old
                // connection's end yet): start over with it.
                match ls.learners.get(&from).map(|h| h.phase) {
                    Some(HandlerPhase::Info) => return Ok(()),
                    Some(_) => {
                        ls.learners.remove(&from);
                    }
                    None => {}
                }
                if ls.epoch.is_some_and(|e| accepted_epoch > e) {
                    // This learner promised a later epoch to a leader that never made it;
                    // it can never join us. ZooKeeper leaves it stuck until the next
                    // election; we start that election now so that the new epoch is
                    // chosen above its promise.
                    self.become_looking();
                    return Ok(());
                }
                ls.learners.insert(
                    from,
                    Handler {
                        observer,
                        accepted_epoch,
                        leaderinfo_sent: false,
                        phase: HandlerPhase::Info,
                        acked: 0,
                        last_heard: now,
                        sent_upto: 0,
                        newleader_upto: 0,
                        uptodate_sent: false,
                    },
                );
                self.leader_progress();
            }
            Message::AckEpoch {
                current_epoch,
                last_zxid,
            } => {
                let Some(h) = ls.learners.get_mut(&from) else {
                    return Ok(());
                };
                if h.phase != HandlerPhase::Info || !h.leaderinfo_sent {
                    return Ok(());
                }
                h.phase = HandlerPhase::EpochAcked {
                    last_zxid,
                    counted: current_epoch.is_some(),
                };
                if let Some(current_epoch) = current_epoch {
                    if (current_epoch, last_zxid) > (self.current_epoch, self.last_zxid()) {
                        // A learner has history we lack: we must not lead (ZooKeeper's
                        // "Follower is ahead of the leader").
                        self.become_looking();
                        return Ok(());
                    }
                }
                self.leader_progress();
            }
            Message::Ack { zxid } => {
                let epoch = ls.epoch;
                let Some(h) = ls.learners.get_mut(&from) else {
                    return Ok(());
                };
                if zxid_counter(zxid) == 0 {
                    if Some(zxid_epoch(zxid)) == epoch && h.phase == HandlerPhase::Synced {
                        h.phase = HandlerPhase::Active;
                        if !h.observer {
                            h.acked = h.acked.max(h.newleader_upto);
                        }
                        self.leader_progress();
                        self.try_commit();
                        self.send_uptodate_if_ready(from);
                    }
                } else if h.phase == HandlerPhase::Active && !h.observer {
                    h.acked = h.acked.max(zxid);
                    self.try_commit();
                }
            }
            Message::Request { payload } => {
                if matches!(
                    ls.learners.get(&from).map(|h| h.phase),
                    Some(HandlerPhase::Active)
                ) {
                    self.out.push(Output::ForwardedRequest { from, payload });
                }
            }
            Message::Ping { payload, .. }
                if ls.learners.contains_key(&from) && !payload.is_empty() =>
            {
                self.out.push(Output::SessionPing { from, payload });
            }
            Message::Sync { id, .. } => {
                if matches!(
                    ls.learners.get(&from).map(|h| h.phase),
                    Some(HandlerPhase::Active)
                ) {
                    self.leader_sync(Some(from), id);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn send_uptodate_if_ready(&mut self, to: ServerId) {
        let committed = self.committed_zxid;
        let ls = self.ls_mut();
        if ls.phase != LeaderPhase::Broadcast {
            return;
        }
        if let Some(h) = ls.learners.get_mut(&to) {
            if h.phase == HandlerPhase::Active && !h.uptodate_sent {
                h.uptodate_sent = true;
                self.send(to, Message::UpToDate { zxid: committed });
            }
        }
    }

    /// Advances discovery → sync → broadcast as far as the gathered acks allow.
    fn leader_progress(&mut self) {
        let now = self.now;
        let quorum = self.quorum();
        let my_accepted = self.accepted_epoch;
        let Phase::Leading(ls) = &mut self.phase else {
            return;
        };
        // Discovery: pick the new epoch once a quorum of voters (us included) connected.
        if ls.epoch.is_none() {
            let connected: Vec<u32> = ls
                .learners
                .values()
                .filter(|h| !h.observer)
                .map(|h| h.accepted_epoch)
                .chain(std::iter::once(my_accepted))
                .collect();
            if connected.len() < quorum {
                return;
            }
            let highest = connected.iter().max().copied().unwrap_or(0);
            // 2^32 - 1 epochs: only a corrupt acceptedEpoch file gets here.
            assert!(highest < u32::MAX, "epoch space exhausted");
            let epoch = highest + 1;
            ls.epoch = Some(epoch);
            // Persisted before any LEADERINFO leaves (Ready order).
            self.set_accepted_epoch(epoch);
        }
        let ls = self.ls_mut();
        let epoch = ls.epoch.expect("set above");
        let pending_info: Vec<ServerId> = ls
            .learners
            .iter_mut()
            .filter(|(_, h)| !h.leaderinfo_sent)
            .map(|(id, h)| {
                h.leaderinfo_sent = true;
                *id
            })
            .collect();
        for p in pending_info {
            self.send(p, Message::LeaderInfo { epoch });
        }
        let durable = self.durable_zxid >= self.last_zxid();
        let last = self.last_zxid();
        let ls = self.ls_mut();
        if ls.phase == LeaderPhase::Discovery {
            let acked = 1 + ls
                .learners
                .values()
                .filter(|h| {
                    !h.observer && matches!(h.phase, HandlerPhase::EpochAcked { counted: true, .. })
                })
                .count();
            // Our own history must be durable before currentEpoch names it
            // (ZOOKEEPER-4643's lesson applies to the leader too).
            if acked < quorum || !durable {
                return;
            }
            ls.phase = LeaderPhase::Sync;
            ls.entered = now;
            ls.newleader_zxid = last;
            self.set_current_epoch(epoch);
        }
        // Sync every learner that acked the epoch.
        let ls = self.ls_mut();
        let to_sync: Vec<(ServerId, Zxid)> = ls
            .learners
            .iter()
            .filter_map(|(id, h)| match h.phase {
                HandlerPhase::EpochAcked { last_zxid, .. } => Some((*id, last_zxid)),
                _ => None,
            })
            .collect();
        for (id, peer_last) in to_sync {
            self.start_sync(id, peer_last);
        }
        let ls = self.ls_mut();
        if ls.phase == LeaderPhase::Sync {
            let acked = 1 + ls
                .learners
                .values()
                .filter(|h| !h.observer && h.phase == HandlerPhase::Active)
                .count();
            if acked < quorum {
                return;
            }
            // Established: a quorum holds our history and currentEpoch = epoch.
            ls.phase = LeaderPhase::Broadcast;
            ls.entered = now;
            let nl = ls.newleader_zxid;
            let active: Vec<ServerId> = ls
                .learners
                .iter()
                .filter(|(_, h)| h.phase == HandlerPhase::Active)
                .map(|(id, _)| *id)
                .collect();
            self.commit_to(nl);
            self.set_role(Role::Leading, true);
            for a in active {
                self.send_uptodate_if_ready(a);
            }
        }
    }

    /// Chooses DIFF, TRUNC or SNAP for a learner whose last zxid is `peer_last` and sends
    /// the sync stream followed by NEWLEADER (ZooKeeper's LearnerHandler.syncFollower).
    fn start_sync(&mut self, id: ServerId, peer_last: Zxid) {
        let last = self.last_zxid();
        let base = self.log_base;
        let in_log = self.log.iter().any(|e| e.0 == peer_last);
        let (first, after) = if peer_last == last || peer_last == base || in_log {
            (Message::Diff { zxid: peer_last }, peer_last)
        } else if peer_last > base {
            // The learner has txns we do not: cut it back to the last zxid we share.
            let t = self
                .log
                .iter()
                .rev()
                .map(|e| e.0)
                .find(|z| *z < peer_last)
                .unwrap_or(base);
            (Message::Trunc { zxid: t }, t)
        } else {
            let ls = self.ls_mut();
            if let Some(h) = ls.learners.get_mut(&id) {
                h.phase = HandlerPhase::AwaitSnapshot;
            }
            if !ls.snapshot_requested {
                ls.snapshot_requested = true;
                self.out.push(Output::TakeSnapshot);
            }
            return;
        };
        self.send(id, first);
        self.send_history(id, after);
    }

    fn send_history(&mut self, id: ServerId, after: Zxid) {
        let committed = self.committed_zxid;
        let mut msgs = Vec::new();
        let mut upto = after;
        for (z, p) in &self.log {
            if *z > after {
                msgs.push(Message::Proposal {
                    zxid: *z,
                    payload: p.clone(),
                });
                if *z <= committed {
                    msgs.push(Message::Commit { zxid: *z });
                }
                upto = *z;
            }
        }
        let ls = self.ls_mut();
        let epoch = ls.epoch.expect("sync after discovery");
        if let Some(h) = ls.learners.get_mut(&id) {
            h.phase = HandlerPhase::Synced;
            h.sent_upto = upto;
            h.newleader_upto = upto;
        }
        for m in msgs {
            self.send(id, m);
        }
        self.send(id, Message::NewLeader { epoch });
    }

    /// The host's reply to [`Output::TakeSnapshot`]: the data tree as of `zxid` (its last
    /// applied txn).
    pub fn snapshot_ready(&mut self, zxid: Zxid, data: Vec<u8>) -> Result<(), ZabError> {
        let Phase::Leading(ls) = &mut self.phase else {
            return Ok(()); // no longer leading: nobody waits for it
        };
        ls.snapshot_requested = false;
        if zxid < self.log_base || zxid > self.applied_zxid {
            return Err(ZabError::SnapshotMismatch {
                zxid,
                base: self.log_base,
            });
        }
        let ls = self.ls_mut();
        let waiting: Vec<ServerId> = ls
            .learners
            .iter()
            .filter(|(_, h)| h.phase == HandlerPhase::AwaitSnapshot)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.send(
                id,
                Message::Snap {
                    zxid,
                    data: data.clone(),
                },
            );
            self.send_history(id, zxid);
        }
        Ok(())
    }

    fn try_commit(&mut self) {
        let quorum = self.quorum();
        let me = self.cfg.id;
        let own = self.durable_zxid;
        let Phase::Leading(ls) = &self.phase else {
            return;
        };
        if ls.phase != LeaderPhase::Broadcast {
            return;
        }
        let mut acks: Vec<Zxid> = self
            .cfg
            .voters
            .iter()
            .map(|v| {
                if *v == me {
                    own
                } else {
                    ls.learners
                        .get(v)
                        .filter(|h| h.phase == HandlerPhase::Active)
                        .map_or(0, |h| h.acked)
                }
            })
            .collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = acks[quorum - 1].min(self.last_zxid());
        if candidate <= self.committed_zxid {
            return;
        }
        // COMMIT in zxid order; observers get INFORM for what they never saw proposed.
        let newly: Vec<(Zxid, Vec<u8>)> = self
            .log
            .iter()
            .filter(|e| e.0 > self.committed_zxid && e.0 <= candidate)
            .cloned()
            .collect();
        let targets: Vec<(ServerId, bool, Zxid)> = ls
            .learners
            .iter()
            .filter(|(_, h)| matches!(h.phase, HandlerPhase::Synced | HandlerPhase::Active))
            .map(|(id, h)| (*id, h.observer, h.sent_upto))
            .collect();
        for (z, p) in &newly {
            for (id, observer, sent_upto) in &targets {
                let msg = if *observer && *z > *sent_upto {
                    Message::Inform {
                        zxid: *z,
                        payload: p.clone(),
                    }
                } else {
                    Message::Commit { zxid: *z }
                };
                self.send(*id, msg);
            }
        }
        self.commit_to(candidate);
        self.release_leader_syncs();
    }

    fn leader_tick(&mut self) {
        let now = self.now;
        let quorum = self.quorum();
        let init = self.cfg.init_limit_ticks as u64;
        let sync = self.cfg.sync_limit_ticks as u64;
        let last = self.last_zxid();
        let committed = self.committed_zxid;
        let ls = self.ls_mut();
        if ls.phase != LeaderPhase::Broadcast {
            if now - ls.entered > init {
                self.become_looking();
            }
            return;
        }
        // Drop learners we have not heard from; they will reconnect and resync.
        let mut dropped = Vec::new();
        ls.learners.retain(|id, h| {
            let limit = if matches!(h.phase, HandlerPhase::Active) {
                sync
            } else {
                init
            };
            let keep = now - h.last_heard <= limit;
            if !keep {
                dropped.push(*id);
            }
            keep
        });
        for peer in dropped {
            self.out.push(Output::CloseConnection { peer });
        }
        let ls = self.ls_mut();
        let alive = 1 + ls
            .learners
            .values()
            .filter(|h| !h.observer && h.phase == HandlerPhase::Active)
            .count();
        if alive < quorum {
            // Lost the quorum: step down (ZooKeeper's "Not sufficient followers synced").
            self.become_looking();
            return;
        }
        if ls.exhausted && committed == last {
            // zxid counter used up and every proposal committed: start a new epoch.
            self.become_looking();
            return;
        }
        let peers: Vec<ServerId> = ls
            .learners
            .iter()
            .filter(|(_, h)| matches!(h.phase, HandlerPhase::Synced | HandlerPhase::Active))
            .map(|(id, _)| *id)
            .collect();
        for p in peers {
            self.send(
                p,
                Message::Ping {
                    zxid: last,
                    payload: Vec::new(),
                },
            );
        }
    }
}
