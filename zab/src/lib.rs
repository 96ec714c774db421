//! zkd-zab: ZooKeeper Atomic Broadcast as a deterministic, IO-free state machine.
//!
//! Replaces the protocol half of ZooKeeper's `QuorumPeer`, `FastLeaderElection`,
//! `Leader`/`LearnerHandler`, `Follower`, `Observer` and `Learner`. It owns leader election,
//! discovery, synchronisation, broadcast, quorum maths and epochs. It never touches
//! sockets, files, clocks or random numbers, and never interprets a txn, request or
//! snapshot: they are opaque bytes. Time comes in as [`Zab::tick`]; the only randomness
//! is the `seed` given to [`Zab::new`] (used for nothing that affects safety).
//!
//! # The host loop (raft-rs "Ready" style)
//!
//! The host (the server, or the simulator) owns the txn log, the epoch files, the data
//! tree and the network. It calls inputs, then drains [`Zab::ready`] and executes the
//! [`Output`]s **in order**:
//!
//! | input | meaning |
//! |---|---|
//! | [`Zab::tick`] | one tick of `tickTime` passed |
//! | [`Zab::step`] | a message arrived from a peer (decode with [`message::decode`]) |
//! | [`Zab::disconnected`] | the quorum connection to a peer broke (TCP reset/close) |
//! | [`Zab::propose`] | leader: a prepared txn to replicate; returns its zxid |
//! | [`Zab::submit_request`] | any server: a client write request to send to the leader |
//! | [`Zab::sync`] | a client `sync`; answered by [`Output::SyncDone`] |
//! | [`Zab::log_synced`] | every appended txn with zxid ≤ this is fsynced |
//! | [`Zab::snapshot_ready`] | reply to [`Output::TakeSnapshot`] |
//! | [`Zab::set_ping_payload`] | session touches for the learner's next PING |
//!
//! | output | the host must |
//! |---|---|
//! | `PersistAcceptedEpoch(e)` / `PersistCurrentEpoch(e)` | write the epoch file durably **before** executing the next output |
//! | `TruncateLog { after }` | drop every logged txn above `after`, durably, before the next output |
//! | `RestoreSnapshot { zxid, data }` | replace the data tree with `data`, persist it as a snapshot, then truncate the log after `zxid`, all durably, before the next output |
//! | `Append { zxid, payload }` | append to the txn log (buffered is fine); report fsyncs with `log_synced` |
//! | `Apply { zxid, payload }` | apply the committed txn to the data tree (strictly in order) |
//! | `TakeSnapshot` | serialise the data tree as of the last `Apply` and call `snapshot_ready` |
//! | `Send { to, msg }` | send over the election (`msg.is_election()`) or quorum transport |
//! | `RoleChanged { role, leader, serving }` | note it (metrics, client listener); when `role` becomes Looking, close all of this server's quorum connections (ZooKeeper does when a peer stops leading or following) |
//! | `ForwardedRequest { from, payload }` | leader: a client request to prepare and `propose` |
//! | `SessionPing { from, payload }` | leader: session touches carried by a learner's PING |
//! | `SyncDone { id }` | the `sync` with this id may be answered |
//! | `CloseConnection { peer }` | close the quorum connection to `peer` (and report `disconnected` on both ends) |
//!
//! A host that cannot carry out a persistence output (disk full, failed fsync) must stop
//! the server and restart from disk: zab has already moved on and there is no undo.
//!
//! Transports: notifications may be lost, duplicated and reordered. The quorum transport
//! must be a reliable FIFO connection per peer pair; when it breaks the host calls
//! `disconnected` on both ends and the learner re-runs discovery and sync.
//!
//! # Restart
//!
//! The host gives [`Restored`]: the two epoch files, the zxid its data tree was restored
//! to (`applied_zxid`, from its snapshot), and the log entries after `log_base`
//! (`log_base ≤ applied_zxid`). zab applies nothing of the log until it learns the entries
//! are committed (a leader's UPTODATE/COMMIT, or its own establishment as leader): unlike
//! ZooKeeper, which replays its whole log into the tree at load time, a restarted server
//! never exposes a txn that may not be committed (ZOOKEEPER-3911's class of bug).
//!
//! # Protocol decisions worth knowing (all modelled on ZooKeeper 3.9)
//!
//! - Votes are ordered by (peer currentEpoch, last zxid, server id).
//! - ACKs are cumulative: ACK(z) from a follower means "every proposal ≤ z is fsynced in
//!   my log and my log is a prefix of yours"; the quorum channel's FIFO makes this sound.
//! - A follower persists currentEpoch and ACKs NEWLEADER only after every txn received
//!   during sync is fsynced (fixes ZOOKEEPER-4643/4646 by construction).
//! - A leader persists currentEpoch only after its own log is fsynced (same reason).
//! - UPTODATE carries the leader's committed zxid and the learner commits only up to it:
//!   sync never applies an uncommitted proposal (ZOOKEEPER-3911).
//! - A learner answers LEADERINFO for an epoch it had already accepted with ACKEPOCH
//!   currentEpoch = -1, and the leader does not count it towards its quorum (as
//!   ZooKeeper): otherwise two leaders could each gather a quorum for one epoch number.
//! - A learner whose acceptedEpoch is above the established leader's epoch (it promised a
//!   leader that never made it) can never join; ZooKeeper leaves it out until the next
//!   election, our leader steps down so that the next epoch is chosen above the promise.
//! - The leader drops a learner it has not heard from within syncLimit (initLimit while
//!   syncing) and asks the host to close that connection ([`Output::CloseConnection`]).
//! - zxid counter exhaustion: when the counter reaches `Config::max_zxid_counter` the
//!   leader refuses new proposals (`ZabError::EpochExhausted`, retryable), waits until all
//!   its outstanding proposals are committed, then steps down so that an election starts
//!   a new epoch. ZooKeeper forces the re-election immediately, leaving in-flight
//!   proposals to the next leader; draining first means every proposal the leader
//!   accepted is committed before the epoch changes.
//!
//! # Invariants (release-mode `assert!`)
//!
//! zxids appended to the log strictly increase; acceptedEpoch and currentEpoch never
//! decrease; the committed prefix is never truncated (TRUNC/SNAP below the applied zxid);
//! applied zxids strictly increase.

pub mod message;
mod peer;

#[cfg(test)]
mod tests;

pub use message::{decode, encode, DecodeError, Message, Notification, PeerState};
pub use peer::{LeaderStats, Zab};

/// A server id (ZooKeeper's `myid`).
pub type ServerId = u64;
/// A ZooKeeper transaction id: `epoch << 32 | counter`.
pub type Zxid = i64;

/// Builds a zxid from epoch and counter.
pub fn make_zxid(epoch: u32, counter: u32) -> Zxid {
    ((epoch as i64) << 32) | counter as i64
}

/// The epoch half of a zxid.
pub fn zxid_epoch(zxid: Zxid) -> u32 {
    (zxid >> 32) as u32
}

/// The counter half of a zxid.
pub fn zxid_counter(zxid: Zxid) -> u32 {
    zxid as u32
}

/// The role of this server (ZooKeeper's `ServerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Looking,
    Following,
    Leading,
    Observing,
}

/// Test-only protocol bugs, to prove that the simulator's checker catches them. Never set
/// in production: [`Config::validate`] accepts them only so tests can build such a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedBug {
    /// Learners ACK proposals and NEWLEADER before the host reports them fsynced
    /// (ZOOKEEPER-4646's shape).
    AckBeforeFsync,
    /// UPTODATE makes learners commit everything they logged during sync, committed or
    /// not (ZOOKEEPER-3911's shape).
    ApplyUncommittedOnSync,
}

/// Static configuration of one server.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: ServerId,
    /// Voting members (participants), including `id` unless it is an observer.
    pub voters: Vec<ServerId>,
    /// Observers: receive committed txns (INFORM), never vote or ACK for quorum.
    pub observers: Vec<ServerId>,
    /// Ticks a learner has to connect and sync (ZooKeeper's initLimit).
    pub init_limit_ticks: u32,
    /// Ticks without hearing from the other side before giving up (syncLimit).
    pub sync_limit_ticks: u32,
    /// Ticks between rebroadcasts of our vote while LOOKING.
    pub election_resend_ticks: u32,
    /// Committed proposals kept in memory to serve DIFF (ZooKeeper's commitLogCount).
    pub committed_log_max: usize,
    /// Highest zxid counter a leader may use before forcing a new epoch. ZooKeeper's is
    /// 0xffffffff; tests set it low.
    pub max_zxid_counter: u32,
    /// Cap on the data of one message (jute.maxbuffer's role); snapshots included.
    pub max_message_bytes: usize,
    /// Test-only: behave wrongly, see [`InjectedBug`].
    pub injected_bug: Option<InjectedBug>,
}

impl Config {
    /// A config with ZooKeeper-like defaults (initLimit 10, syncLimit 5).
    pub fn new(id: ServerId, voters: Vec<ServerId>, observers: Vec<ServerId>) -> Self {
        Config {
            id,
            voters,
            observers,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            election_resend_ticks: 2,
            committed_log_max: 500,
            max_zxid_counter: u32::MAX,
            max_message_bytes: 64 << 20,
            injected_bug: None,
        }
    }

    /// Rejects combinations that cannot work.
    pub fn validate(&self) -> Result<(), ZabError> {
        let bad = |s: &str| Err(ZabError::BadConfig(s.to_string()));
        if self.voters.is_empty() {
            return bad("no voters");
        }
        let mut all: Vec<ServerId> = self.voters.iter().chain(&self.observers).copied().collect();
        all.sort_unstable();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return bad("a server id is listed twice");
        }
        if !all.contains(&self.id) {
            return bad("own id is neither a voter nor an observer");
        }
        if self.init_limit_ticks == 0 || self.sync_limit_ticks == 0 {
            return bad("initLimit and syncLimit must be at least one tick");
        }
        if self.election_resend_ticks == 0 {
            return bad("election_resend_ticks must be at least 1");
        }
        if self.max_zxid_counter < 2 {
            return bad("max_zxid_counter must be at least 2");
        }
        Ok(())
    }
}

/// What the host recovered from disk at start-up.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// zxid the data tree was restored to (its snapshot's zxid; 0 for an empty tree).
    pub applied_zxid: Zxid,
    /// Entries below or at this zxid are not in `log` (they are in the snapshot).
    pub log_base: Zxid,
    /// Logged txns after `log_base`, in zxid order, all fsynced.
    pub log: Vec<(Zxid, Vec<u8>)>,
}

/// What zab asks the host to do; see the table in the crate header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send {
        to: ServerId,
        msg: Message,
    },
    PersistAcceptedEpoch(u32),
    PersistCurrentEpoch(u32),
    TruncateLog {
        after: Zxid,
    },
    RestoreSnapshot {
        zxid: Zxid,
        data: Vec<u8>,
    },
    Append {
        zxid: Zxid,
        payload: Vec<u8>,
    },
    Apply {
        zxid: Zxid,
        payload: Vec<u8>,
    },
    TakeSnapshot,
    RoleChanged {
        role: Role,
        leader: Option<ServerId>,
        /// True once the server is synced and serving (leader established, learner got
        /// UPTODATE).
        serving: bool,
    },
    ForwardedRequest {
        from: ServerId,
        payload: Vec<u8>,
    },
    SessionPing {
        from: ServerId,
        payload: Vec<u8>,
    },
    SyncDone {
        id: u64,
    },
    /// Close the quorum connection to this peer (the leader gave up on a silent learner;
    /// the learner must see the connection end to start over).
    CloseConnection {
        peer: ServerId,
    },
}

/// Operating failures (bad input, wrong role); invariant breaches are `assert!`s instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZabError {
    #[error("bad configuration: {0}")]
    BadConfig(String),
    #[error("bad restored state: {0}")]
    BadRestore(String),
    #[error("not the leader")]
    NotLeader,
    #[error("no established leader to talk to")]
    NoLeader,
    #[error("zxid counter exhausted in this epoch; retry after the new epoch starts")]
    EpochExhausted,
    #[error("payload is empty or larger than max_message_bytes")]
    BadPayload,
    #[error("message from unknown server {0}")]
    UnknownPeer(ServerId),
    #[error("protocol violation from {from}: {what}")]
    Protocol { from: ServerId, what: &'static str },
    #[error("snapshot at {zxid:#x} does not match the in-memory log (base {base:#x})")]
    SnapshotMismatch { zxid: Zxid, base: Zxid },
}

impl ZabError {
    /// Retryable errors go away by themselves (a new leader, a new epoch).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ZabError::NotLeader | ZabError::NoLeader | ZabError::EpochExhausted
        )
    }
}
