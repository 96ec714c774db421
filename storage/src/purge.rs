//! Retention (ZooKeeper's `PurgeTxnLog`, autopurge).
//!
//! Owns the rule for which files may be deleted: keep the newest `retain` snapshots that
//! verify (at least [`MIN_RETAIN`], like `autopurge.snapRetainCount`) plus any newer
//! damaged ones (an operator may want them), and the log segments needed to replay from
//! the oldest retained snapshot `S`: the segment that may hold `S + 1` (the last one whose
//! first zxid is ≤ `S + 1`) and every later one. Everything older goes.
//!
//! Counting only snapshots that verify (ZooKeeper counts files) costs reading them, but
//! means purge can never delete the last usable snapshot while keeping broken ones.
//!
//! Never deletes the newest segment, never touches `.tmp` or foreign files. Failures are
//! retryable: deleting fewer files than planned loses nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::snapshot::SnapStore;
use crate::txnlog::{first_needed_segment, list_segments, segment_dir, SegmentInfo};

/// The least number of snapshots purge keeps.
pub const MIN_RETAIN: usize = 3;

/// What a purge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub snapshots: Vec<PathBuf>,
    pub segments: Vec<PathBuf>,
}

/// Purges files of a stopped server (the `zkd purge` tool). A running server uses
/// [`crate::Storage::purge`], which also updates its open log.
pub fn purge(
    backend: Arc<dyn Backend>,
    data_dir: &Path,
    data_log_dir: &Path,
    retain: usize,
) -> Result<PurgeReport> {
    let snapshots = SnapStore::open(backend.clone(), data_dir, false)?;
    let dir = segment_dir(data_log_dir);
    purge_with(&snapshots, retain, |zxid| {
        // Only the names matter for choosing whole segments to drop.
        let segments: Vec<SegmentInfo> = list_segments(&*backend, &dir)?
            .into_iter()
            .map(|(first, path)| SegmentInfo {
                path,
                first_zxid: first,
                last_zxid: first,
                data_len: 0,
            })
            .collect();
        let keep_from = first_needed_segment(&segments, zxid);
        let mut removed = Vec::new();
        for seg in &segments[..keep_from] {
            backend
                .remove(&seg.path)
                .map_err(|e| StorageError::io("remove", &seg.path, e))?;
            removed.push(seg.path.clone());
        }
        Ok(removed)
    })
}

/// Shared rule: choose snapshots, delete the older ones, then let `remove_segments_before`
/// drop segments not needed to replay from `oldest retained zxid + 1`.
pub(crate) fn purge_with(
    snapshots: &SnapStore,
    retain: usize,
    remove_segments_before: impl FnOnce(i64) -> Result<Vec<PathBuf>>,
) -> Result<PurgeReport> {
    let retain = retain.max(MIN_RETAIN);
    let list = snapshots.list()?;
    let mut valid = 0;
    let mut oldest_kept = None;
    for (i, info) in list.iter().enumerate().rev() {
        if valid == retain {
            break;
        }
        match snapshots.read(info) {
            Ok(_) => {
                valid += 1;
                oldest_kept = Some(i);
            }
            Err(e) => {
                tracing::warn!(error = %e, "purge keeps a damaged snapshot and does not count it")
            }
        }
    }
    let mut report = PurgeReport::default();
    // Fewer valid snapshots than asked for: keep every file, the history may be needed.
    let Some(oldest_kept) = oldest_kept.filter(|_| valid == retain) else {
        return Ok(report);
    };
    for info in &list[..oldest_kept] {
        snapshots.remove(info)?;
        report.snapshots.push(info.path.clone());
    }
    report.segments = remove_segments_before(list[oldest_kept].zxid.saturating_add(1))?;
    for path in report.snapshots.iter().chain(&report.segments) {
        tracing::info!(file = %path.display(), "purged");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemBackend, Storage, StorageOptions};

    fn opts() -> StorageOptions {
        let mut o = StorageOptions::default();
        o.log.pre_alloc_bytes = 256;
        o
    }

    #[test]
    fn keeps_retain_snapshots_and_needed_segments() {
        let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
        let (s, _) =
            Storage::open(backend.clone(), Path::new("/d"), Path::new("/l"), opts()).unwrap();
        let mut z = 0;
        for round in 0..6 {
            for _ in 0..5 {
                z += 1;
                s.log().append(z, b"txn").unwrap();
            }
            s.log().sync().unwrap();
            s.snapshots()
                .write(z, format!("state {round}").as_bytes())
                .unwrap();
            s.log().roll().unwrap();
        }
        // Segments start at 1, 6, 11, 16, 21, 26; snapshots at 5, 10, ..., 30.
        let report = s.purge(3).unwrap();
        let names = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&report.snapshots),
            vec![
                "snapshot.0000000000000005",
                "snapshot.000000000000000a",
                "snapshot.000000000000000f"
            ]
        );
        // Oldest kept snapshot is 20: replay needs 21.. so segments 1..16 go.
        assert_eq!(
            names(&report.segments),
            vec![
                "log.0000000000000001",
                "log.0000000000000006",
                "log.000000000000000b",
                "log.0000000000000010"
            ]
        );
        drop(s);
        let (_, rec) = Storage::open(backend, Path::new("/d"), Path::new("/l"), opts()).unwrap();
        assert_eq!(rec.snapshot.unwrap().0, 30);
        assert!(rec.txns.is_empty());
    }

    #[test]
    fn retain_is_at_least_three_and_keeps_all_when_few() {
        let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
        let (s, _) =
            Storage::open(backend.clone(), Path::new("/d"), Path::new("/l"), opts()).unwrap();
        for z in 1..=3 {
            s.log().append(z, b"t").unwrap();
            s.log().sync().unwrap();
            s.snapshots().write(z, b"s").unwrap();
            s.log().roll().unwrap();
        }
        let report = s.purge(1).unwrap();
        assert!(report.snapshots.is_empty());
        // Replay from snapshot 1 needs zxid 2 onwards: log.1 is no longer needed.
        assert_eq!(report.segments.len(), 1);
        s.log().append(4, b"t").unwrap();
        s.log().sync().unwrap();
        s.snapshots().write(4, b"s").unwrap();
        let report = s.purge(0).unwrap();
        assert_eq!(report.snapshots.len(), 1);
        // Oldest kept is 2: replay from 3 needs segment log.3 and later.
        assert_eq!(report.segments.len(), 1);
    }

    #[test]
    fn offline_purge_matches() {
        let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
        {
            let (s, _) =
                Storage::open(backend.clone(), Path::new("/d"), Path::new("/l"), opts()).unwrap();
            for z in 1..=5 {
                s.log().append(z, b"t").unwrap();
                s.log().sync().unwrap();
                s.snapshots().write(z, b"s").unwrap();
                s.log().roll().unwrap();
            }
        }
        let report = purge(backend.clone(), Path::new("/d"), Path::new("/l"), 3).unwrap();
        assert_eq!(report.snapshots.len(), 2);
        assert_eq!(report.segments.len(), 3);
        let (_, rec) = Storage::open(backend, Path::new("/d"), Path::new("/l"), opts()).unwrap();
        assert_eq!(rec.snapshot.unwrap().0, 5);
    }
}
