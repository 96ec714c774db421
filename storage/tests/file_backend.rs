//! The same recovery rules on the real file system (FileBackend), damaging files with
//! std::fs behind the storage layer's back.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use zkd_storage::txnlog::{scan_segment, RECORD_HEADER_LEN};
use zkd_storage::{tools, Backend, FileBackend, LogOptions, Storage, StorageOptions, TxnLog};

fn opts() -> StorageOptions {
    StorageOptions {
        log: LogOptions {
            pre_alloc_bytes: 4096,
            segment_max_bytes: 2048,
            write_buffer_bytes: 512,
            ..LogOptions::default()
        },
        compress_snapshots: false,
    }
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(FileBackend::new())
}

fn fill(dir: &Path, n: i64) -> Vec<zkd_storage::SegmentInfo> {
    let (s, _) = Storage::open(backend(), dir, dir, opts()).unwrap();
    for z in 1..=n {
        s.log()
            .append(z, format!("txn number {z}").as_bytes())
            .unwrap();
    }
    s.log().sync().unwrap();
    s.log().segments()
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn torn_partial_record_at_end_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let segs = fill(tmp.path(), 10);
    let last = segs.last().unwrap();
    // Half a record where the next one would go: a length, a CRC, part of a zxid.
    patch(&last.path, last.data_len, &[0, 0, 0, 40, 1, 2, 3, 4, 0, 0]);
    let (_, rec) = Storage::open(backend(), tmp.path(), tmp.path(), opts()).unwrap();
    assert_eq!(rec.log.cut_tails, vec![(last.path.clone(), last.data_len)]);
    assert_eq!(rec.txns.len(), 10);
    assert_eq!(std::fs::metadata(&last.path).unwrap().len(), last.data_len);
}

#[test]
fn mid_log_damage_refuses_to_start_and_verify_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let segs = fill(tmp.path(), 200);
    assert!(segs.len() >= 3);
    let victim = &segs[1];
    let data = std::fs::read(&victim.path).unwrap();
    let rec = scan_segment(&data, 1 << 20).records[3];
    patch(&victim.path, rec.offset + RECORD_HEADER_LEN + 1, b"?");
    let err = Storage::open(backend(), tmp.path(), tmp.path(), opts()).unwrap_err();
    assert!(err.is_fatal());
    assert_eq!(
        err.to_string(),
        format!(
            "corrupt txn log {} at offset {}: CRC mismatch",
            victim.path.display(),
            rec.offset
        )
    );
    let report = tools::verify(&*backend(), tmp.path(), tmp.path()).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.problems[0].path, victim.path);
    assert_eq!(report.problems[0].offset, Some(rec.offset));
    // Manual repair: truncate to just before the damage, then the server starts.
    tools::truncate_log(&*backend(), tmp.path(), rec.zxid - 1).unwrap();
    let (_, recovered) = Storage::open(backend(), tmp.path(), tmp.path(), opts()).unwrap();
    assert_eq!(recovered.last_zxid(), Some(rec.zxid - 1));
}

#[test]
fn concurrent_group_commit_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = TxnLog::open(backend(), tmp.path(), opts().log).unwrap();
    let syncer = log.clone();
    let appender = std::thread::spawn(move || {
        for z in 1..=2000 {
            log.append(z, b"0123456789abcdef").unwrap();
        }
        log
    });
    let mut durable = None;
    while durable < Some(2000) {
        let now = syncer.sync().unwrap();
        assert!(now >= durable);
        durable = now;
    }
    drop(appender.join().unwrap());
    let (log, rec) = TxnLog::open(backend(), tmp.path(), opts().log).unwrap();
    assert_eq!(rec.last_zxid, Some(2000));
    assert_eq!(log.read_from(1).unwrap().count(), 2000);
}
