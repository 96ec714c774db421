//! The host side of ZAB (ZooKeeper's QuorumPeer glue): turns zoo.cfg into zab's
//! configuration, restores zab's state from disk, and carries out zab's outputs against
//! the core, the txn log, the epoch files and the quorum transport.
//!
//! Owns the order of those effects: zab's outputs run strictly in the order zab emitted
//! them, and the durable ones (epoch files, TRUNC, SNAP) are complete before the next one
//! starts, which is what zab's safety argument assumes. Never makes a protocol decision
//! (zab does) and never touches a client socket (net does).
//!
//! Everything here runs under the core lock (`Shared::with_core`): zab lives inside the
//! core, so a client request, the proposal it causes and the commit that answers it are
//! ordered by one lock, as ZooKeeper's single request pipeline orders them.

use std::sync::Arc;

use zkd_storage::{Backend, EpochFiles, Storage, ACCEPTED_EPOCH, CURRENT_EPOCH};
use zkd_zab::{make_zxid, Message, Output as ZabOutput, Restored, Role, ServerId};

use crate::config::{Config, PeerRole};
use crate::core::{Core, Replication};
use crate::tree::snapshot::{deserialize_snapshot, SnapshotSession};

/// Where zab's messages leave this server: the quorum/election transport.
pub trait PeerSender: Send + Sync {
    fn send(&self, to: ServerId, msg: &Message);
    /// Drops the quorum connections with `peer` (zab's role changes: ZooKeeper closes them).
    fn disconnect(&self, peer: ServerId);
}

impl PeerSender for crate::quorum::QuorumTransport {
    fn send(&self, to: ServerId, msg: &Message) {
        crate::quorum::QuorumTransport::send(self, to, msg)
    }
    fn disconnect(&self, peer: ServerId) {
        crate::quorum::QuorumTransport::disconnect(self, peer)
    }
}

/// What an ensemble server needs besides the core: the IO zab's outputs drive.
pub struct EnsembleIo {
    pub sender: Arc<dyn PeerSender>,
    pub epochs: EpochFiles,
    pub backend: Arc<dyn Backend>,
    pub storage: Arc<Storage>,
    /// Peers, for dropping every quorum connection on a role change.
    pub peers: Vec<ServerId>,
}

/// The zab configuration zoo.cfg describes (server.N lines, initLimit, syncLimit).
pub fn zab_config(config: &Config) -> Result<zkd_zab::Config, String> {
    let id = config
        .my_id
        .ok_or("an ensemble server needs its id in <dataDir>/myid")?;
    let voters: Vec<ServerId> = config
        .servers
        .iter()
        .filter(|s| s.role == PeerRole::Participant)
        .map(|s| s.id)
        .collect();
    let observers: Vec<ServerId> = config
        .servers
        .iter()
        .filter(|s| s.role == PeerRole::Observer)
        .map(|s| s.id)
        .collect();
    let mut cfg = zkd_zab::Config::new(id, voters, observers);
    cfg.init_limit_ticks = config.init_limit.max(1);
    cfg.sync_limit_ticks = config.sync_limit.max(1);
    // A proposal or SNAP carries at most what a client may send, plus headers.
    cfg.max_message_bytes = (config.jute_max_buffer.max(1 << 20) * 64).max(64 << 20);
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// zab's view of the disk: epoch files, the snapshot's zxid, the log after it.
pub fn restored(
    epochs: &EpochFiles,
    backend: &dyn Backend,
    snapshot_zxid: i64,
    log: Vec<(i64, Vec<u8>)>,
) -> Result<Restored, String> {
    let accepted_epoch = epochs
        .read(backend, ACCEPTED_EPOCH)
        .map_err(|e| e.to_string())?;
    let current_epoch = epochs
        .read(backend, CURRENT_EPOCH)
        .map_err(|e| e.to_string())?;
    Ok(Restored {
        accepted_epoch,
        current_epoch,
        applied_zxid: snapshot_zxid,
        log_base: snapshot_zxid,
        log,
    })
}

/// What the host does for each zab output it cannot do inside the core.
pub trait EnsembleHost {
    /// Appends a proposal to the txn log (in order); fsyncs come back as `log_synced`.
    fn append(&self, zxid: i64, payload: Vec<u8>);
    /// Drops every logged txn above `after`, durably, after every earlier append.
    fn truncate_log(&self, after: i64) -> Result<(), String>;
    fn io(&self) -> &EnsembleIo;
}

/// Stops the server: zab's durable steps must never be skipped or retried.
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("{what}: {e}; stopping");
    eprintln!("zkd: {what}: {e}");
    std::process::exit(3);
}

/// Carries out one zab output (in emission order).
pub fn execute(host: &dyn EnsembleHost, core: &mut Core, out: ZabOutput, now_ms: i64) {
    let io = host.io();
    match out {
        ZabOutput::Send { to, msg } => io.sender.send(to, &msg),
        ZabOutput::PersistAcceptedEpoch(e) => {
            if let Err(err) = io.epochs.write(&*io.backend, ACCEPTED_EPOCH, e) {
                fatal("writing acceptedEpoch", err);
            }
        }
        ZabOutput::PersistCurrentEpoch(e) => {
            if let Err(err) = io.epochs.write(&*io.backend, CURRENT_EPOCH, e) {
                fatal("writing currentEpoch", err);
            }
        }
        ZabOutput::TruncateLog { after } => {
            if let Err(e) = host.truncate_log(after) {
                fatal(&format!("truncating the txn log after 0x{after:x}"), e);
            }
        }
        ZabOutput::RestoreSnapshot { zxid, data } => {
            let (tree, sessions) = match deserialize_snapshot(&data) {
                Ok(t) => t,
                Err(e) => fatal(
                    &format!("the leader's snapshot 0x{zxid:x} does not load"),
                    e,
                ),
            };
            core.restore(
                Some(crate::core::RestoredSnapshot {
                    tree,
                    sessions: sessions.iter().map(|s| (s.id, s.timeout_ms)).collect(),
                    zxid,
                }),
                &[],
                now_ms,
            );
            if let Err(e) = io.storage.snapshots().write(zxid, &data) {
                fatal(&format!("persisting the leader's snapshot 0x{zxid:x}"), e);
            }
            if let Err(e) = host.truncate_log(zxid) {
                fatal(&format!("truncating the txn log after 0x{zxid:x}"), e);
            }
        }
        ZabOutput::Append { zxid, payload } => host.append(zxid, payload),
        ZabOutput::Apply { zxid, payload } => {
            if let Err(e) = core.committed(zxid, &payload, now_ms) {
                fatal("applying a committed txn", e);
            }
        }
        ZabOutput::TakeSnapshot => {
            // A whole, exact snapshot under the lock: SNAP sync is rare, and the learner
            // gets the proposals after this zxid from zab.
            let sessions: Vec<SnapshotSession> = core
                .snapshot_sessions()
                .into_iter()
                .map(|(id, timeout_ms)| SnapshotSession { id, timeout_ms })
                .collect();
            let mut bytes = Vec::new();
            core.tree.serialize_snapshot(&sessions, &mut bytes);
            let zxid = core.tree.last_processed_zxid;
            if let Some(z) = core.zab.as_mut() {
                if let Err(e) = z.snapshot_ready(zxid, bytes) {
                    tracing::warn!("zab refused the snapshot 0x{zxid:x}: {e}");
                }
            }
        }
        ZabOutput::RoleChanged {
            role,
            leader,
            serving,
        } => {
            let replication = match (role, serving) {
                (Role::Leading, true) => Replication::Leader,
                (Role::Following | Role::Observing, true) => Replication::Learner,
                _ => Replication::Unavailable,
            };
            let changed = core.replication != replication
                || core.ensemble_role != Some(role)
                || core.ensemble_leader != leader;
            tracing::info!(
                "zab: {role:?}, leader {leader:?}, serving {serving}: clients {replication:?}"
            );
            // Leaving an active role (or changing leader) ends the quorum streams of the
            // old epoch, as ZooKeeper's shutdown of its Leader/Learner closes them. Coming
            // out of LOOKING must not: a learner's FOLLOWERINFO may already be on its way
            // to a leader that has not yet noticed it won.
            let leaving_active = matches!(
                core.ensemble_role,
                Some(Role::Leading | Role::Following | Role::Observing)
            ) && (core.ensemble_role != Some(role)
                || core.ensemble_leader != leader);
            if leaving_active {
                for p in &io.peers {
                    io.sender.disconnect(*p);
                }
            }
            core.ensemble_role = Some(role);
            core.ensemble_leader = leader;
            if changed {
                let base = core
                    .zab
                    .as_ref()
                    .and_then(|z| z.established_epoch())
                    .map_or(0, |e| make_zxid(e, 0));
                core.set_replication(replication, base, now_ms);
            }
        }
        ZabOutput::ForwardedRequest { from, payload } => {
            if let Err(e) = core.forwarded_request(&payload, now_ms) {
                tracing::warn!("request forwarded by server {from} refused: {e}");
            }
        }
        ZabOutput::SessionPing { from, payload } => {
            match crate::forward::decode_touches(&payload) {
                Ok(t) => core.touch_sessions(&t, now_ms),
                Err(e) => tracing::warn!("session touches from server {from} refused: {e}"),
            }
        }
        ZabOutput::SyncDone { id } => core.sync_done(id, now_ms),
        ZabOutput::CloseConnection { peer } => {
            // The leader gave up on a silent learner: end the stream so both sides start
            // over (the peer sees EOF; zab here is told directly, since dropping our own
            // side reports nothing back).
            io.sender.disconnect(peer);
            if let Some(z) = core.zab.as_mut() {
                z.disconnected(peer);
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// Runs the core and zab until neither has output left: client-facing outputs go to
/// `client` (sockets, the standalone log), zab-bound ones to zab, zab's to `execute`.
pub fn route(
    host: &dyn EnsembleHost,
    core: &mut Core,
    now_ms: i64,
    mut client: impl FnMut(&mut Core, Vec<crate::core::Output>),
) {
    use crate::core::Output;
    loop {
        let outs = core.take_output();
        let zab_outs = core.zab.as_mut().map(|z| z.ready()).unwrap_or_default();
        if outs.is_empty() && zab_outs.is_empty() {
            return;
        }
        let (to_zab_outs, rest): (Vec<Output>, Vec<Output>) = outs.into_iter().partition(|o| {
            matches!(
                o,
                Output::Propose { .. } | Output::Forward { .. } | Output::Sync { .. }
            )
        });
        if !rest.is_empty() {
            client(core, rest);
        }
        for o in to_zab_outs {
            to_zab(core, o, now_ms);
        }
        for o in zab_outs {
            execute(host, core, o, now_ms);
        }
    }
}

/// Hands one client-pipeline output meant for zab to zab. A refusal (no leader any more,
/// or an exhausted epoch) turns clients away until zab establishes a leader again, as
/// ZooKeeper drops its clients when it stops leading.
pub fn to_zab(core: &mut Core, out: crate::core::Output, now_ms: i64) {
    use crate::core::Output;
    let Some(zab) = core.zab.as_mut() else {
        tracing::error!("ensemble output without zab: {out:?}");
        return;
    };
    let refused = match out {
        Output::Propose { zxid, txn } => match zab.propose(txn) {
            Ok(z) => {
                assert_eq!(z, zxid, "zab assigns the zxid prep predicted");
                None
            }
            Err(e) => Some(e),
        },
        Output::Forward { payload } => zab.submit_request(payload).err(),
        Output::Sync { id } => zab.sync(id).err(),
        other => unreachable!("not a zab output: {other:?}"),
    };
    if let Some(e) = refused {
        tracing::warn!("zab refused a client request ({e}); dropping clients until it serves");
        core.set_replication(Replication::Unavailable, 0, now_ms);
    }
}

/// One tick of `tickTime` for zab.
pub fn tick(core: &mut Core) {
    if let Some(z) = core.zab.as_mut() {
        z.tick();
    }
}

/// Hands a message from a peer to zab. When a learner gets the leader's PING, zab answers
/// it at once; the answer carries the sessions this learner's clients touched since the
/// previous answer (`ping_touches`), as ZooKeeper's learner answers each PING with its
/// touch snapshot.
pub fn deliver(core: &mut Core, from: zkd_zab::ServerId, msg: zkd_zab::Message) {
    let Some(role) = core.zab.as_ref().map(|z| z.role()) else {
        return;
    };
    if matches!(msg, zkd_zab::Message::Ping { .. })
        && matches!(role, zkd_zab::Role::Following | zkd_zab::Role::Observing)
    {
        let payload = ping_touches(core);
        if let Some(z) = core.zab.as_mut() {
            z.set_ping_payload(payload);
        }
    }
    if let Some(z) = core.zab.as_mut() {
        if let Err(e) = z.step(from, msg) {
            tracing::warn!("message from server {from} refused: {e}");
        }
    }
}

/// Learner: the encoded touches for a PING answer: the sessions touched since the last
/// answer, and those of the answer before (which may have gone to a leader that is gone;
/// a touch sent twice does no harm). Touches wait in the core until a PING takes them.
/// They used to be taken on the learner's own tick, two ticks' worth kept: a learner whose
/// timers stalled for a minute (its monotonic clock stepped back, a starved runtime) while
/// its sockets went on serving then answered PINGs with nothing, and the leader expired
/// every session connected to it (Jepsen sessions x clock and x mixed: acknowledged
/// ephemerals of sessions confirmed alive were deleted).
fn ping_touches(core: &mut Core) -> Vec<u8> {
    let touches = core.take_session_touches();
    let mut all = std::mem::replace(&mut core.prev_ping_touches, touches.clone());
    all.extend(touches);
    all.sort_unstable();
    all.dedup_by_key(|t| t.0);
    crate::forward::encode_touches(&all)
}
