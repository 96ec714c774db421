//! Start-up recovery combining snapshots and the txn log (ZooKeeper's `FileTxnSnapLog`).
//!
//! Owns the choice of which snapshot to start from and the proof that the log covers
//! every zxid after it. Never decodes payloads: it hands the server a snapshot payload and
//! the txns to replay on top of it.
//!
//! # Rules
//!
//! 1. Open the log first ([`TxnLog::open`]): torn tails are cut, corruption fails here.
//! 2. Walk snapshots newest first; take the first one that verifies.
//! 3. The log must hold every zxid after the chosen snapshot's zxid `S`: the first record
//!    above `S` must follow `S` ([`crate::zxid::follows`]) and the segments above it must
//!    join up, else [`StorageError::LogGap`] naming the two files. A log that ends before
//!    `S` is fine (logs older than the snapshot may have been purged); anything above `S`
//!    must still be contiguous.
//! 4. If newer snapshots were skipped as corrupt, the log must also reach the newest
//!    (corrupt) snapshot's zxid, because that state was complete once and may have been
//!    committed and acknowledged: else [`StorageError::Unrecoverable`].
//! 5. Snapshot files exist but none verifies: [`StorageError::Unrecoverable`] (the log
//!    alone may have been purged below them).
//! 6. No snapshot files at all: replay the whole log (fresh server), still checking that
//!    segments join up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::purge::{purge_with, PurgeReport};
use crate::snapshot::{SnapStore, SnapshotInfo, SnapshotPayload};
use crate::txnlog::{check_contiguous_after, LogOptions, RecoveredLog, TxnLog};

/// Options for [`Storage::open`].
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    pub log: LogOptions,
    /// Compress snapshots written from now on (flags bit 0; needs the `lz4` feature).
    pub compress_snapshots: bool,
}

/// What the server rebuilds its state from.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The snapshot started from: its zxid and payload.
    pub snapshot: Option<(i64, SnapshotPayload)>,
    /// Every txn with a zxid above the snapshot's (all of them when there is none), in
    /// order.
    pub txns: Vec<(i64, Vec<u8>)>,
    /// Newer snapshots skipped because they failed verification.
    pub skipped_snapshots: Vec<PathBuf>,
    /// What opening the log found and did.
    pub log: RecoveredLog,
}

impl Recovered {
    /// The zxid of the recovered state: the last txn, else the snapshot's.
    pub fn last_zxid(&self) -> Option<i64> {
        self.txns
            .last()
            .map(|t| t.0)
            .or(self.snapshot.as_ref().map(|s| s.0))
    }
}

/// The txn log and snapshot store of one server.
#[derive(Debug, Clone)]
pub struct Storage {
    log: TxnLog,
    snapshots: SnapStore,
}

impl Storage {
    /// Opens both stores and recovers per the module rules.
    pub fn open(
        backend: Arc<dyn Backend>,
        data_dir: &Path,
        data_log_dir: &Path,
        opts: StorageOptions,
    ) -> Result<(Storage, Recovered)> {
        let (log, recovered_log) = TxnLog::open(backend.clone(), data_log_dir, opts.log)?;
        let snapshots = SnapStore::open(backend, data_dir, opts.compress_snapshots)?;
        let recovered = recover(&log, &snapshots, recovered_log)?;
        Ok((Storage { log, snapshots }, recovered))
    }

    /// The txn log (clone it for the sync thread).
    pub fn log(&self) -> &TxnLog {
        &self.log
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapStore {
        &self.snapshots
    }

    /// Keeps the newest `retain` (at least 3) valid snapshots and the log segments needed
    /// to replay from the oldest of them; deletes the rest. See [`crate::purge`].
    pub fn purge(&self, retain: usize) -> Result<PurgeReport> {
        purge_with(&self.snapshots, retain, |zxid| {
            self.log.remove_segments_before(zxid)
        })
    }
}

fn recover(log: &TxnLog, snapshots: &SnapStore, log_info: RecoveredLog) -> Result<Recovered> {
    let list = snapshots.list()?;
    let mut skipped: Vec<PathBuf> = Vec::new();
    for info in list.iter().rev() {
        let payload = match snapshots.read(info) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(error = %e, "skipping unreadable snapshot");
                skipped.push(info.path.clone());
                continue;
            }
        };
        let newest = list.last().expect("non-empty");
        check_coverage(&log_info, info, newest, !skipped.is_empty())?;
        let txns = collect_txns(log, info.zxid + 1)?;
        if !skipped.is_empty() {
            tracing::warn!(
                snapshot = %info.path.display(),
                skipped = skipped.len(),
                "recovered from an older snapshot because newer ones are corrupt"
            );
        }
        return Ok(Recovered {
            snapshot: Some((info.zxid, payload)),
            txns,
            skipped_snapshots: skipped,
            log: log_info,
        });
    }
    if let Some(newest) = list.last() {
        return Err(StorageError::Unrecoverable {
            newest: newest.path.clone(),
            zxid: newest.zxid,
            detail: format!(
                " (none of the {} snapshots verifies; see the warnings above)",
                list.len()
            ),
        });
    }
    // No snapshot at all: the whole log is the history.
    if let Some(first) = log_info.segments.first() {
        check_contiguous_after(&log_info.segments, first.first_zxid, &first.path)?;
    }
    let txns = collect_txns(log, i64::MIN)?;
    Ok(Recovered {
        snapshot: None,
        txns,
        skipped_snapshots: skipped,
        log: log_info,
    })
}

/// Rules 3 and 4 for starting from `chosen`.
fn check_coverage(
    log_info: &RecoveredLog,
    chosen: &SnapshotInfo,
    newest: &SnapshotInfo,
    fell_back: bool,
) -> Result<()> {
    let contiguous = log_info.check_contiguous_after(chosen.zxid, &chosen.path);
    if !fell_back {
        return contiguous;
    }
    let reaches = log_info.last_zxid.is_some_and(|last| last >= newest.zxid);
    match (contiguous, reaches) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(StorageError::Unrecoverable {
            newest: newest.path.clone(),
            zxid: newest.zxid,
            detail: format!(
                " (older valid snapshot {} plus logs reach only zxid {:#x})",
                chosen.path.display(),
                log_info.last_zxid.unwrap_or(chosen.zxid).max(chosen.zxid)
            ),
        }),
        (Err(gap), _) => Err(StorageError::Unrecoverable {
            newest: newest.path.clone(),
            zxid: newest.zxid,
            detail: format!(" (older valid snapshot {}: {gap})", chosen.path.display()),
        }),
    }
}

fn collect_txns(log: &TxnLog, from: i64) -> Result<Vec<(i64, Vec<u8>)>> {
    log.read_from(from)?.collect()
}

#[cfg(test)]
mod tests;
