//! One simulated server: its virtual disk (a [`FaultyBackend`] that outlives crashes), the
//! host side of the zab contract (epoch files, txn log, snapshots) and the replicated
//! state machine stand-in [`Rsm`].
//!
//! Owns the on-disk layout of a simulated server:
//!
//! ```text
//! /data/acceptedEpoch   u32 big-endian, written as .tmp + fsync + rename + fsync(/data)
//! /data/currentEpoch    same
//! /data/snapshot        Rsm::encode bytes, same discipline (snapshot.tmp first)
//! /log/zkd-v1/log.*     zkd-storage's TxnLog segments
//! ```
//!
//! Never decides anything about the protocol (zab does) and never hides a storage error:
//! a failure to restart is reported to the checker as a violation (ZOOKEEPER-2307's class).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use zkd_storage::{Backend, FaultyBackend, LogOptions, TxnLog};
use zkd_zab::{Config, Restored, Zab, Zxid};

/// Where a server can be made to crash on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failpoint {
    /// Right after acceptedEpoch is durable (before ACKEPOCH / LEADERINFO leave).
    AfterAcceptedEpoch,
    /// Right after currentEpoch is durable (before the NEWLEADER ACK leaves).
    AfterCurrentEpoch,
    /// Right after the ACK of NEWLEADER is sent.
    AfterNewLeaderAck,
    /// SNAP from the leader: snapshot.tmp written, not yet renamed.
    SnapshotBeforeRename,
    /// SNAP from the leader: snapshot renamed, log not yet truncated.
    SnapshotBeforeLogTruncate,
    /// Local snapshot: snapshot.tmp written, not yet renamed.
    LocalSnapshotBeforeRename,
}

impl Failpoint {
    pub fn name(&self) -> &'static str {
        match self {
            Failpoint::AfterAcceptedEpoch => "after-acceptedEpoch",
            Failpoint::AfterCurrentEpoch => "after-currentEpoch",
            Failpoint::AfterNewLeaderAck => "after-NEWLEADER-ack",
            Failpoint::SnapshotBeforeRename => "SNAP-before-rename",
            Failpoint::SnapshotBeforeLogTruncate => "SNAP-before-log-truncate",
            Failpoint::LocalSnapshotBeforeRename => "local-snapshot-before-rename",
        }
    }
}

/// The replicated state machine stand-in: every applied txn in order, with a digest.
///
/// Encoding: `u32 count`, then per entry `i64 zxid, u32 len, payload` (big-endian).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rsm {
    pub entries: Vec<(Zxid, Vec<u8>)>,
    digest: u64,
}

impl Rsm {
    pub fn apply(&mut self, zxid: Zxid, payload: &[u8]) {
        self.entries.push((zxid, payload.to_vec()));
        self.digest = Self::fold(self.digest, zxid, payload);
    }

    fn fold(mut h: u64, zxid: Zxid, payload: &[u8]) -> u64 {
        // FNV-1a over (zxid, payload), chained.
        for b in zxid.to_be_bytes().iter().chain(payload) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h.rotate_left(7) ^ 0xcbf2_9ce4_8422_2325
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn last_zxid(&self) -> Zxid {
        self.entries.last().map_or(0, |e| e.0)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = (self.entries.len() as u32).to_be_bytes().to_vec();
        for (z, p) in &self.entries {
            out.extend_from_slice(&z.to_be_bytes());
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Rsm> {
        let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
            let s = b.get(*at..*at + n)?;
            *at += n;
            Some(s)
        };
        let mut at = 0;
        let count = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
        let mut rsm = Rsm::default();
        for _ in 0..count {
            let z = i64::from_be_bytes(take(&mut at, 8)?.try_into().ok()?);
            let n = u32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
            let p = take(&mut at, n)?.to_vec();
            rsm.apply(z, &p);
        }
        (at == b.len()).then_some(rsm)
    }
}

/// One simulated server.
pub struct Node {
    pub cfg: Config,
    pub disk: Arc<FaultyBackend>,
    pub zab: Option<Zab>,
    pub log: Option<TxnLog>,
    pub rsm: Rsm,
    /// One-shot failpoints armed by a scenario.
    pub armed: BTreeSet<Failpoint>,
    /// (acceptedEpoch, currentEpoch) read at the last start.
    pub started_with: (u32, u32),
    /// A stalled disk: fsyncs never complete (slow-disk follower in scenarios).
    pub stall_fsync: bool,
    unsynced: bool,
}

const DATA: &str = "/data";
const LOG: &str = "/log";

fn log_options() -> LogOptions {
    LogOptions {
        pre_alloc_bytes: 0,
        segment_max_bytes: 16 << 10,
        write_buffer_bytes: 0,
        ..LogOptions::default()
    }
}

impl Node {
    pub fn new(cfg: Config) -> Node {
        let disk = Arc::new(FaultyBackend::new());
        disk.create_dir_all(Path::new(DATA)).expect("mem dir");
        Node {
            cfg,
            disk,
            zab: None,
            log: None,
            rsm: Rsm::default(),
            armed: BTreeSet::new(),
            started_with: (0, 0),
            stall_fsync: false,
            unsynced: false,
        }
    }

    pub fn is_up(&self) -> bool {
        self.zab.is_some()
    }

    fn read_epoch(&self, name: &str) -> Result<u32, String> {
        let p = Path::new(DATA).join(name);
        if !self.disk.exists(&p).map_err(|e| e.to_string())? {
            return Ok(0);
        }
        let b = self.disk.read(&p).map_err(|e| e.to_string())?;
        let a: [u8; 4] = b
            .as_slice()
            .try_into()
            .map_err(|_| format!("{name} file has {} bytes", b.len()))?;
        Ok(u32::from_be_bytes(a))
    }

    fn write_durably(&self, name: &str, data: &[u8]) {
        let tmp = Path::new(DATA).join(format!("{name}.tmp"));
        self.write_tmp(&tmp, data);
        self.disk
            .rename(&tmp, &Path::new(DATA).join(name))
            .expect("rename");
        self.disk.sync_dir(Path::new(DATA)).expect("sync dir");
    }

    fn write_tmp(&self, tmp: &Path, data: &[u8]) {
        self.disk.create(tmp).expect("create");
        self.disk.write_at(tmp, 0, data).expect("write");
        self.disk.sync(tmp).expect("sync");
    }

    /// Recovers from disk and builds a fresh zab peer.
    pub fn start(&mut self, seed: u64) -> Result<(), String> {
        let (log, _) = TxnLog::open(self.disk.clone(), Path::new(LOG), log_options())
            .map_err(|e| format!("txn log: {e}"))?;
        let accepted = self.read_epoch("acceptedEpoch")?;
        let current = self.read_epoch("currentEpoch")?;
        let snap = Path::new(DATA).join("snapshot");
        let rsm = if self.disk.exists(&snap).map_err(|e| e.to_string())? {
            let b = self.disk.read(&snap).map_err(|e| e.to_string())?;
            Rsm::decode(&b).ok_or("corrupt snapshot")?
        } else {
            Rsm::default()
        };
        let base = rsm.last_zxid();
        let mut entries = Vec::new();
        let mut reader = log.read_from(base + 1).map_err(|e| e.to_string())?;
        while let Some(e) = reader.next_entry() {
            let e = e.map_err(|e| e.to_string())?;
            entries.push((e.zxid, e.payload));
        }
        let restored = Restored {
            accepted_epoch: accepted,
            current_epoch: current,
            applied_zxid: base,
            log_base: base,
            log: entries,
        };
        let zab = Zab::new(self.cfg.clone(), restored, seed).map_err(|e| e.to_string())?;
        self.started_with = (accepted, current);
        self.zab = Some(zab);
        self.log = Some(log);
        self.rsm = rsm;
        self.unsynced = false;
        Ok(())
    }

    /// Power cut: everything not fsynced is lost; `tear` also keeps a seeded prefix of the
    /// last write.
    pub fn crash(&mut self, tear: Option<u64>) {
        self.zab = None;
        self.log = None;
        self.rsm = Rsm::default();
        self.unsynced = false;
        match tear {
            Some(seed) => {
                self.disk.crash_tearing(seed);
            }
            None => self.disk.crash(),
        }
    }

    pub fn persist_epoch(&mut self, name: &str, e: u32) {
        self.write_durably(name, &e.to_be_bytes());
    }

    pub fn truncate(&mut self, after: Zxid) {
        if let Some(log) = &self.log {
            log.truncate_after(after).expect("truncate on the sim disk");
        }
    }

    pub fn append(&mut self, zxid: Zxid, payload: &[u8]) {
        if let Some(log) = &self.log {
            log.append(zxid, payload).expect("append on the sim disk");
            self.unsynced = true;
        }
    }

    pub fn needs_sync(&self) -> bool {
        self.unsynced && self.zab.is_some() && !self.stall_fsync
    }

    /// Group commit: fsync and tell zab how far the log is durable.
    pub fn sync(&mut self) {
        self.unsynced = false;
        let Some(log) = &self.log else { return };
        if let Ok(Some(z)) = log.sync() {
            if let Some(zab) = self.zab.as_mut() {
                zab.log_synced(z);
            }
        }
    }

    pub fn write_snapshot_tmp(&mut self) {
        let tmp = Path::new(DATA).join("snapshot.tmp");
        self.write_tmp(&tmp, &self.rsm.encode());
    }

    pub fn rename_snapshot(&mut self) {
        self.disk
            .rename(
                &Path::new(DATA).join("snapshot.tmp"),
                &Path::new(DATA).join("snapshot"),
            )
            .expect("rename");
        self.disk.sync_dir(Path::new(DATA)).expect("sync dir");
    }
}
