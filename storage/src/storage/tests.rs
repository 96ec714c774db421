use super::*;
use crate::snapshot::HEADER_LEN as SNAP_HEADER_LEN;
use crate::txnlog::segment_dir;
use crate::{FaultyBackend, LogOptions};

fn opts() -> StorageOptions {
    StorageOptions {
        log: LogOptions {
            pre_alloc_bytes: 256,
            segment_max_bytes: 1 << 20,
            write_buffer_bytes: 64,
            ..LogOptions::default()
        },
        compress_snapshots: false,
    }
}

const DATA: &str = "/data";
const LOGS: &str = "/logs";

fn open(backend: &Arc<FaultyBackend>) -> Result<(Storage, Recovered)> {
    Storage::open(backend.clone(), Path::new(DATA), Path::new(LOGS), opts())
}

fn txn(z: i64) -> Vec<u8> {
    format!("txn {z}").into_bytes()
}

fn append(s: &Storage, range: std::ops::RangeInclusive<i64>) {
    for z in range {
        s.log().append(z, &txn(z)).unwrap();
    }
    s.log().sync().unwrap();
}

/// Appends and snapshots like the server: snapshot at `z`, then roll.
fn snapshot(s: &Storage, z: i64) -> SnapshotInfo {
    let info = s
        .snapshots()
        .write(z, format!("state@{z}").as_bytes())
        .unwrap();
    s.log().roll().unwrap();
    info
}

fn zxids(r: &Recovered) -> Vec<i64> {
    r.txns.iter().map(|t| t.0).collect()
}

#[test]
fn fresh_and_log_only() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, rec) = open(&backend).unwrap();
    assert!(rec.snapshot.is_none());
    assert!(rec.txns.is_empty());
    assert_eq!(rec.last_zxid(), None);
    append(&s, 1..=10);
    drop(s);
    backend.crash();
    let (_, rec) = open(&backend).unwrap();
    assert!(rec.snapshot.is_none());
    assert_eq!(zxids(&rec), (1..=10).collect::<Vec<_>>());
    assert_eq!(rec.txns[3].1, txn(4));
}

#[test]
fn snapshot_plus_txns_after_it() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=10);
    snapshot(&s, 7); // fuzzy: the server started it at 7
    append(&s, 11..=15);
    drop(s);
    backend.crash();
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(
        rec.snapshot.as_ref().map(|(z, p)| (*z, p.to_vec())),
        Some((7, b"state@7".to_vec()))
    );
    assert_eq!(zxids(&rec), (8..=15).collect::<Vec<_>>());
    assert_eq!(rec.last_zxid(), Some(15));
}

#[test]
fn snapshot_newer_than_the_log_is_fine() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=3);
    // e.g. a SNAP sync from the leader: state at 20, log only up to 3.
    snapshot(&s, 20);
    drop(s);
    let (s, rec) = open(&backend).unwrap();
    assert_eq!(rec.snapshot.as_ref().unwrap().0, 20);
    assert!(rec.txns.is_empty());
    // The history continues above the snapshot.
    append(&s, 21..=22);
    drop(s);
    backend.crash();
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(zxids(&rec), vec![21, 22]);
}

#[test]
fn snapshot_newer_than_the_log_with_a_gap_after_it_is_an_error() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=3);
    let snap = snapshot(&s, 20);
    append(&s, 25..=26);
    drop(s);
    let err = open(&backend).unwrap_err();
    assert!(err.is_fatal());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{} ends at zxid 0x14", snap.path.display())),
        "{msg}"
    );
    assert!(
        msg.contains("log.0000000000000019 starts at zxid 0x19"),
        "{msg}"
    );
}

#[test]
fn missing_middle_segment_is_an_error_naming_both_files() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    for start in [1, 11, 21] {
        append(&s, start..=start + 9);
        s.log().roll().unwrap();
    }
    let segs = s.log().segments();
    assert_eq!(segs.len(), 3);
    drop(s);
    backend.remove(&segs[1].path).unwrap();
    let err = open(&backend).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "txn log gap: {} ends at zxid 0xa but {} starts at zxid 0x15",
            segs[0].path.display(),
            segs[2].path.display()
        )
    );
}

#[test]
fn corrupt_newest_snapshot_falls_back_when_the_log_covers() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=5);
    snapshot(&s, 5);
    append(&s, 6..=10);
    let newest = snapshot(&s, 10);
    append(&s, 11..=12);
    drop(s);
    backend.flip_bit(&newest.path, SNAP_HEADER_LEN as u64, 2);
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(
        rec.snapshot.as_ref().map(|(z, p)| (*z, p.to_vec())),
        Some((5, b"state@5".to_vec()))
    );
    assert_eq!(rec.skipped_snapshots, vec![newest.path.clone()]);
    assert_eq!(zxids(&rec), (6..=12).collect::<Vec<_>>());
}

#[test]
fn truncated_newest_snapshot_falls_back_when_the_log_covers() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=5);
    snapshot(&s, 5);
    append(&s, 6..=10);
    let newest = snapshot(&s, 10);
    drop(s);
    let len = backend.file_len(&newest.path).unwrap();
    backend.set_len(&newest.path, len - 3).unwrap();
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(rec.snapshot.as_ref().unwrap().0, 5);
    assert_eq!(zxids(&rec), (6..=10).collect::<Vec<_>>());
}

#[test]
fn corrupt_newest_snapshot_without_covering_log_is_an_error() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=5);
    let older = snapshot(&s, 5);
    append(&s, 6..=10);
    let newest = snapshot(&s, 10);
    drop(s);
    // The log from 6 on is gone (purged, say) and the newest snapshot is truncated.
    let segs: Vec<_> =
        crate::txnlog::list_segments(&*backend, &segment_dir(Path::new(LOGS))).unwrap();
    backend.remove(&segs[1].1).unwrap();
    backend.set_len(&newest.path, 30).unwrap();
    let err = open(&backend).unwrap_err();
    assert!(err.is_fatal());
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "newest snapshot {} is corrupt and no older valid snapshot plus logs covers zxid 0xa",
            newest.path.display()
        )),
        "{msg}"
    );
    assert!(msg.contains(&older.path.display().to_string()), "{msg}");
}

#[test]
fn all_snapshots_corrupt_is_an_error() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=5);
    let only = snapshot(&s, 5);
    drop(s);
    backend.flip_bit(&only.path, 2, 0);
    let err = open(&backend).unwrap_err().to_string();
    assert!(err.contains("newest snapshot"), "{err}");
    assert!(err.contains("none of the 1 snapshots verifies"), "{err}");
}

#[test]
fn leftover_tmp_snapshot_is_ignored() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = open(&backend).unwrap();
    append(&s, 1..=5);
    snapshot(&s, 3);
    let tmp = s.snapshots().dir().join("snapshot.0000000000000005.tmp");
    backend.create(&tmp).unwrap();
    backend.append(&tmp, b"ZKDS\0\0").unwrap();
    backend.sync(&tmp).unwrap();
    backend.sync_dir(s.snapshots().dir()).unwrap();
    drop(s);
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(rec.snapshot.as_ref().unwrap().0, 3);
    assert_eq!(zxids(&rec), vec![4, 5]);
    assert!(!backend.exists(&tmp).unwrap());
}

#[test]
fn shared_data_and_log_dir() {
    let backend = Arc::new(FaultyBackend::new());
    let (s, _) = Storage::open(backend.clone(), Path::new(DATA), Path::new(DATA), opts()).unwrap();
    append(&s, 1..=4);
    snapshot(&s, 4);
    append(&s, 5..=6);
    drop(s);
    backend.crash();
    let (_, rec) =
        Storage::open(backend.clone(), Path::new(DATA), Path::new(DATA), opts()).unwrap();
    assert_eq!(rec.snapshot.as_ref().unwrap().0, 4);
    assert_eq!(zxids(&rec), vec![5, 6]);
}
