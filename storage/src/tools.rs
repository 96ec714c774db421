//! Offline inspection and repair (ZooKeeper's `TxnLogToolkit`, `LogFormatter`,
//! `SnapshotFormatter`): the library behind `zkd dump-log`, `zkd dump-snapshot`,
//! `zkd verify` and `zkd truncate-log`.
//!
//! Owns reading files without the recovery policy (a dump must show a damaged file, not
//! refuse it) and the explicit, operator-driven truncation. Never decodes payloads (the
//! server formats txns as text or JSON) and never changes anything except in
//! [`truncate_log`].

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::snapshot::{self, list_snapshots, snapshot_dir, SnapshotHeader, TMP_SUFFIX};
use crate::txnlog::{
    list_segments, scan_segment, segment_dir, truncate_segments, HeaderState, LogOptions, ScanEnd,
    SegmentInfo, HEADER_LEN,
};
use crate::zxid;

/// One record of a dumped segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedRecord {
    /// Offset of the record's length field in the file.
    pub offset: u64,
    pub zxid: i64,
    pub payload: Vec<u8>,
}

/// Everything readable in one segment, and how reading stopped.
#[derive(Debug, Clone)]
pub struct SegmentDump {
    pub path: PathBuf,
    pub file_len: u64,
    pub header: HeaderState,
    pub records: Vec<DumpedRecord>,
    pub end: ScanEnd,
}

/// Reads a segment file record by record, with offsets (`zkd dump-log`).
pub fn dump_segment(
    backend: &dyn Backend,
    path: &Path,
    max_record_bytes: u32,
) -> Result<SegmentDump> {
    let data = backend
        .read(path)
        .map_err(|e| StorageError::io("read", path, e))?;
    let scan = scan_segment(&data, max_record_bytes);
    Ok(SegmentDump {
        path: path.to_path_buf(),
        file_len: data.len() as u64,
        records: scan
            .records
            .iter()
            .map(|r| DumpedRecord {
                offset: r.offset,
                zxid: r.zxid,
                payload: r.payload(&data).to_vec(),
            })
            .collect(),
        header: scan.header,
        end: scan.end,
    })
}

/// Reads a snapshot's fixed header (`zkd dump-snapshot`); `crc_ok` says whether the whole
/// file verifies.
pub fn read_snapshot_header(backend: &dyn Backend, path: &Path) -> Result<(SnapshotHeader, bool)> {
    let data = backend
        .read(path)
        .map_err(|e| StorageError::io("read", path, e))?;
    let header = snapshot::parse_header(&data).map_err(|reason| StorageError::CorruptSnapshot {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok((header, snapshot::decode(&data).is_ok()))
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Start-up handles it (torn tail cut, leftover .tmp removed, gap before a snapshot).
    Warning,
    /// Start-up refuses, or data is lost.
    Error,
}

/// One finding of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: PathBuf,
    pub offset: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}: {}", self.path.display())?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Result of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Segments with their readable range.
    pub segments: Vec<SegmentInfo>,
    /// Snapshots: (zxid, path, verifies).
    pub snapshots: Vec<(i64, PathBuf, bool)>,
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when there is no [`Severity::Error`] problem.
    pub fn is_ok(&self) -> bool {
        self.problems.iter().all(|p| p.severity != Severity::Error)
    }
}

/// Checks every segment and snapshot, listing problems with file and offset
/// (`zkd verify`). Never changes anything.
pub fn verify(backend: &dyn Backend, data_dir: &Path, data_log_dir: &Path) -> Result<Report> {
    let mut report = Report::default();
    let problem = |severity, path: &Path, offset, message: String| Problem {
        severity,
        path: path.to_path_buf(),
        offset,
        message,
    };
    let log_dir = segment_dir(data_log_dir);
    let segments = if backend.exists(&log_dir).unwrap_or(false) {
        list_segments(backend, &log_dir)?
    } else {
        Vec::new()
    };
    let max = LogOptions::default().max_record_bytes;
    for (i, (name_zxid, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let dump = dump_segment(backend, path, max)?;
        match &dump.header {
            HeaderState::Ok => {}
            HeaderState::Blank => {
                let severity = if is_last {
                    Severity::Warning
                } else {
                    Severity::Error
                };
                report
                    .problems
                    .push(problem(severity, path, Some(0), "blank file header".into()));
                continue;
            }
            HeaderState::Bad(reason) => {
                report
                    .problems
                    .push(problem(Severity::Error, path, Some(0), reason.clone()));
                continue;
            }
        }
        if let ScanEnd::Bad {
            offset,
            reason,
            torn,
        } = &dump.end
        {
            let (severity, message) = if *torn && is_last {
                (
                    Severity::Warning,
                    format!("torn tail, cut at start-up: {reason}"),
                )
            } else if *torn {
                (
                    Severity::Error,
                    format!("{reason} (torn, but not in the last segment)"),
                )
            } else {
                (Severity::Error, reason.clone())
            };
            report
                .problems
                .push(problem(severity, path, Some(*offset), message));
        }
        let (Some(first), Some(last)) = (dump.records.first(), dump.records.last()) else {
            let severity = if is_last {
                Severity::Warning
            } else {
                Severity::Error
            };
            report.problems.push(problem(
                severity,
                path,
                Some(HEADER_LEN),
                "no records".into(),
            ));
            continue;
        };
        if first.zxid != *name_zxid {
            report.problems.push(problem(
                Severity::Error,
                path,
                Some(HEADER_LEN),
                format!(
                    "file name says first zxid {name_zxid:#x} but the first record has {:#x}",
                    first.zxid
                ),
            ));
        }
        if let Some(prev) = report.segments.last() {
            if first.zxid <= prev.last_zxid {
                report.problems.push(problem(
                    Severity::Error,
                    path,
                    Some(first.offset),
                    format!(
                        "zxid {:#x} not above {:#x} in {}",
                        first.zxid,
                        prev.last_zxid,
                        prev.path.display()
                    ),
                ));
            } else if !zxid::follows(prev.last_zxid, first.zxid) {
                report.problems.push(problem(
                    Severity::Warning,
                    path,
                    Some(first.offset),
                    format!(
                        "gap: previous segment {} ends at {:#x}, this one starts at {:#x} (an error unless a snapshot at or above the gap exists)",
                        prev.path.display(),
                        prev.last_zxid,
                        first.zxid
                    ),
                ));
            }
        }
        report.segments.push(SegmentInfo {
            path: path.clone(),
            first_zxid: first.zxid,
            last_zxid: last.zxid,
            data_len: last.offset + crate::txnlog::RECORD_HEADER_LEN + last.payload.len() as u64,
        });
    }

    let snap_dir = snapshot_dir(data_dir);
    if backend.exists(&snap_dir).unwrap_or(false) {
        for info in list_snapshots(backend, &snap_dir)? {
            let ok = match snapshot::read_snapshot(backend, &info) {
                Ok(_) => true,
                Err(e) => {
                    report
                        .problems
                        .push(problem(Severity::Error, &info.path, None, e.to_string()));
                    false
                }
            };
            report.snapshots.push((info.zxid, info.path, ok));
        }
        for name in backend
            .list(&snap_dir)
            .map_err(|e| StorageError::io("list", &snap_dir, e))?
        {
            if name.ends_with(TMP_SUFFIX) {
                report.problems.push(problem(
                    Severity::Warning,
                    &snap_dir.join(&name),
                    None,
                    "leftover from an interrupted snapshot write (removed at start-up)".into(),
                ));
            }
        }
    }
    Ok(report)
}

/// Manual repair (`zkd truncate-log`): drops every record above `zxid` from the log of a
/// stopped server, durably. Works on a damaged log as long as the damage lies wholly
/// above `zxid`; otherwise it refuses and says which zxid it could truncate to.
/// Returns the segments kept.
pub fn truncate_log(
    backend: &dyn Backend,
    data_log_dir: &Path,
    zxid: i64,
) -> Result<Vec<SegmentInfo>> {
    let dir = segment_dir(data_log_dir);
    let opts = LogOptions::default();
    let mut segments = Vec::new();
    for (name_zxid, path) in list_segments(backend, &dir)? {
        let dump = dump_segment(backend, &path, opts.max_record_bytes)?;
        let last_zxid = match (&dump.end, dump.records.last()) {
            // Clean segment: its real range.
            (ScanEnd::Eof | ScanEnd::ZeroTail { .. }, Some(last)) => last.zxid,
            // Damaged or empty: force `truncate_segments` to look inside (or remove it
            // when it starts above `zxid`).
            _ => i64::MAX,
        };
        segments.push(SegmentInfo {
            path,
            first_zxid: name_zxid,
            last_zxid,
            data_len: dump.file_len,
        });
    }
    truncate_segments(backend, &dir, &segments, zxid, &opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FaultyBackend, LogOptions, SnapStore, TxnLog};
    use std::sync::Arc;

    fn small() -> LogOptions {
        LogOptions {
            pre_alloc_bytes: 512,
            segment_max_bytes: 300,
            ..LogOptions::default()
        }
    }

    #[test]
    fn dump_verify_truncate() {
        let backend = Arc::new(FaultyBackend::new());
        let (log, _) = TxnLog::open(backend.clone(), Path::new("/l"), small()).unwrap();
        for z in 1..=40 {
            log.append(z, format!("txn {z:04}").as_bytes()).unwrap();
        }
        log.sync().unwrap();
        let segs = log.segments();
        assert!(segs.len() > 2, "{segs:?}");
        drop(log);
        let snaps = SnapStore::open(backend.clone(), Path::new("/d"), false).unwrap();
        snaps.write(3, b"s").unwrap();

        let dump = dump_segment(&*backend, &segs[0].path, 1 << 20).unwrap();
        assert_eq!(dump.records[0].offset, HEADER_LEN);
        assert_eq!(dump.records[0].zxid, 1);
        assert_eq!(dump.records[0].payload, b"txn 0001");
        let (header, ok) = read_snapshot_header(&*backend, &snaps.list().unwrap()[0].path).unwrap();
        assert_eq!(header.zxid, 3);
        assert!(ok);

        let report = verify(&*backend, Path::new("/d"), Path::new("/l")).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.segments.len(), segs.len());

        // Damage the middle of segment 1: verify names file and offset.
        let victim = &segs[1];
        let offset = HEADER_LEN + 16 + 2;
        backend.flip_bit(&victim.path, offset, 1);
        let report = verify(&*backend, Path::new("/d"), Path::new("/l")).unwrap();
        assert!(!report.is_ok());
        let p = &report.problems[0];
        assert_eq!(p.path, victim.path);
        assert_eq!(p.offset, Some(HEADER_LEN));
        assert!(p.to_string().contains("CRC mismatch"), "{p}");

        // Truncating to a zxid inside the damage is refused; just below it works.
        let before_damage = victim.first_zxid - 1;
        let err = truncate_log(&*backend, Path::new("/l"), victim.first_zxid + 1).unwrap_err();
        assert!(err.to_string().contains("holds no record"), "{err}");
        let kept = truncate_log(&*backend, Path::new("/l"), before_damage).unwrap();
        assert_eq!(kept.last().unwrap().last_zxid, before_damage);
        let (log, rec) = TxnLog::open(backend.clone(), Path::new("/l"), small()).unwrap();
        assert_eq!(rec.last_zxid, Some(before_damage));
        assert_eq!(log.read_from(1).unwrap().count() as i64, before_damage);
    }
}
