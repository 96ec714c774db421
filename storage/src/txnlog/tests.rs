use super::*;
use crate::{FaultyBackend, FileBackend, MemBackend};

fn small() -> LogOptions {
    LogOptions {
        pre_alloc_bytes: 256,
        segment_max_bytes: 400,
        write_buffer_bytes: 64,
        ..LogOptions::default()
    }
}

fn dir() -> &'static Path {
    Path::new("/logs")
}

fn open(backend: &Arc<FaultyBackend>) -> Result<(TxnLog, RecoveredLog)> {
    TxnLog::open(backend.clone(), dir(), small())
}

fn payload(z: i64) -> Vec<u8> {
    format!("payload-{z}").into_bytes()
}

/// Opens a fresh log, appends zxids 1..=n, syncs, and returns it.
fn filled(n: i64) -> (Arc<FaultyBackend>, TxnLog) {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = open(&backend).unwrap();
    for z in 1..=n {
        log.append(z, &payload(z)).unwrap();
    }
    assert_eq!(log.sync().unwrap(), Some(n));
    (backend, log)
}

fn all(log: &TxnLog) -> Vec<(i64, Vec<u8>)> {
    log.read_from(i64::MIN)
        .unwrap()
        .collect::<Result<_>>()
        .unwrap()
}

fn expected(range: std::ops::RangeInclusive<i64>) -> Vec<(i64, Vec<u8>)> {
    range.map(|z| (z, payload(z))).collect()
}

#[test]
fn round_trip_across_segments() {
    let (backend, log) = filled(50);
    let segments = log.segments();
    assert!(segments.len() > 3, "{segments:?}");
    for s in &segments {
        assert_eq!(
            s.path.file_name().unwrap().to_str().unwrap(),
            zxid::file_name("log", s.first_zxid)
        );
    }
    assert_eq!(all(&log), expected(1..=50));
    assert_eq!(
        log.read_from(33)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect::<Vec<_>>(),
        (33..=50).collect::<Vec<_>>()
    );
    drop(log);
    backend.crash();
    let (log, rec) = open(&backend).unwrap();
    assert_eq!(rec.last_zxid, Some(50));
    assert!(rec.cut_tails.is_empty());
    assert_eq!(all(&log), expected(1..=50));
    // Appending continues in the reopened last segment.
    log.append(51, &payload(51)).unwrap();
    log.sync().unwrap();
    backend.crash();
    let (log, _) = open(&backend).unwrap();
    assert_eq!(all(&log), expected(1..=51));
}

#[test]
fn file_backend_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::new());
    let (log, _) = TxnLog::open(backend.clone(), tmp.path(), small()).unwrap();
    for z in 1..=30 {
        log.append(z, &payload(z)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let (log, rec) = TxnLog::open(backend, tmp.path(), small()).unwrap();
    assert_eq!(rec.last_zxid, Some(30));
    assert_eq!(all(&log), expected(1..=30));
    assert!(tmp.path().join("zkd-v1/log.0000000000000001").exists());
}

#[test]
fn unsynced_appends_are_lost_synced_kept() {
    let (backend, log) = filled(5);
    log.append(6, &payload(6)).unwrap();
    log.append(7, &payload(7)).unwrap();
    drop(log);
    backend.crash();
    let (log, rec) = open(&backend).unwrap();
    assert_eq!(rec.last_zxid, Some(5));
    assert_eq!(all(&log), expected(1..=5));
}

#[test]
fn zero_filled_preallocated_tail_is_clean() {
    let (backend, log) = filled(3);
    let seg = log.segments().last().unwrap().clone();
    let file_len = backend.file_len(&seg.path).unwrap();
    assert!(
        file_len > seg.data_len,
        "preallocated: {file_len} > {}",
        seg.data_len
    );
    let data = backend.read(&seg.path).unwrap();
    assert!(data[seg.data_len as usize..].iter().all(|&b| b == 0));
    assert_eq!(
        scan_segment(&data, 1 << 20).end,
        ScanEnd::ZeroTail {
            offset: seg.data_len
        }
    );
    drop(log);
    let (_, rec) = open(&backend).unwrap();
    assert!(rec.cut_tails.is_empty());
    assert_eq!(rec.last_zxid, Some(3));
}

#[test]
fn bit_flip_in_last_record_of_last_segment_is_cut() {
    let (backend, log) = filled(20);
    let seg = log.segments().last().unwrap().clone();
    drop(log);
    let data = backend.read(&seg.path).unwrap();
    let last = *scan_segment(&data, 1 << 20).records.last().unwrap();
    assert_eq!(last.zxid, 20);
    backend.flip_bit(&seg.path, last.offset + RECORD_HEADER_LEN + 1, 4);
    let (log, rec) = open(&backend).unwrap();
    assert_eq!(rec.cut_tails, vec![(seg.path.clone(), last.offset)]);
    assert_eq!(rec.last_zxid, Some(19));
    assert_eq!(all(&log), expected(1..=19));
    assert_eq!(backend.file_len(&seg.path).unwrap(), last.offset);
    // The zxid can be written again after the cut.
    log.append(20, b"again").unwrap();
    log.sync().unwrap();
}

#[test]
fn bit_flip_in_crc_field_of_last_record_is_cut() {
    let (backend, log) = filled(4);
    let seg = log.segments().last().unwrap().clone();
    drop(log);
    let data = backend.read(&seg.path).unwrap();
    let last = *scan_segment(&data, 1 << 20).records.last().unwrap();
    backend.flip_bit(&seg.path, last.offset + 5, 0);
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(rec.last_zxid, Some(last.zxid - 1));
}

#[test]
fn bit_flip_mid_non_last_segment_is_an_error_naming_file_and_offset() {
    let (backend, log) = filled(50);
    let seg = log.segments()[1].clone();
    drop(log);
    let data = backend.read(&seg.path).unwrap();
    let victim = scan_segment(&data, 1 << 20).records[1];
    backend.flip_bit(&seg.path, victim.offset + RECORD_HEADER_LEN, 0);
    let err = open(&backend).unwrap_err();
    assert!(err.is_fatal());
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "corrupt txn log {} at offset {}: CRC mismatch",
            seg.path.display(),
            victim.offset
        )
    );
}

#[test]
fn bit_flip_in_last_record_of_non_last_segment_is_an_error() {
    let (backend, log) = filled(50);
    let seg = log.segments()[0].clone();
    drop(log);
    let data = backend.read(&seg.path).unwrap();
    let victim = *scan_segment(&data, 1 << 20).records.last().unwrap();
    backend.flip_bit(&seg.path, victim.offset + RECORD_HEADER_LEN, 0);
    let err = open(&backend).unwrap_err().to_string();
    assert!(err.contains(&seg.path.display().to_string()), "{err}");
    assert!(
        err.contains(&format!("at offset {}", victim.offset)),
        "{err}"
    );
}

#[test]
fn bit_flip_mid_last_segment_followed_by_valid_records_is_an_error() {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = TxnLog::open(
        backend.clone(),
        dir(),
        LogOptions {
            pre_alloc_bytes: 4096,
            ..small()
        },
    )
    .unwrap();
    // One segment only (no size-based roll below 4096? segment_max is 400, so use few).
    for z in 1..=8 {
        log.append(z, &payload(z)).unwrap();
    }
    log.sync().unwrap();
    let seg = log.segments().last().unwrap().clone();
    drop(log);
    let data = backend.read(&seg.path).unwrap();
    let recs = scan_segment(&data, 1 << 20).records;
    assert!(recs.len() >= 4);
    backend.flip_bit(&seg.path, recs[1].offset + RECORD_HEADER_LEN + 2, 7);
    let err = open(&backend).unwrap_err().to_string();
    assert!(
        err.contains(&format!("at offset {}: CRC mismatch", recs[1].offset)),
        "{err}"
    );
}

#[test]
fn length_flip_mid_segment_is_an_error_not_a_torn_tail() {
    for bit in [0u8, 4, 7] {
        let backend = Arc::new(FaultyBackend::new());
        let (log, _) = TxnLog::open(
            backend.clone(),
            dir(),
            LogOptions {
                pre_alloc_bytes: 1 << 16,
                ..small()
            },
        )
        .unwrap();
        for z in 1..=6 {
            log.append(z, &payload(z)).unwrap();
        }
        log.sync().unwrap();
        let seg = log.segments().last().unwrap().clone();
        drop(log);
        let data = backend.read(&seg.path).unwrap();
        let recs = scan_segment(&data, 1 << 20).records;
        // Byte 1 of the length: +2^16.. (runs into the zero tail), byte 0: huge.
        for byte in [0u64, 1, 2] {
            let b2 = Arc::new(FaultyBackend::new());
            b2.create_dir_all(&segment_dir(dir())).unwrap();
            b2.create(&seg.path).unwrap();
            b2.append(&seg.path, &data).unwrap();
            b2.flip_bit(&seg.path, recs[2].offset + byte, bit);
            let err = open(&b2).unwrap_err().to_string();
            assert!(
                err.contains(&format!("at offset {}", recs[2].offset)),
                "byte {byte} bit {bit}: {err}"
            );
        }
        let _ = backend;
    }
}

#[test]
fn torn_header_of_last_segment_is_removed() {
    let (backend, log) = filled(3);
    drop(log);
    let path = segment_dir(dir()).join(zxid::file_name("log", 4));
    backend.create(&path).unwrap();
    backend.append(&path, &header_bytes()[..7]).unwrap();
    backend.append(&path, &[0u8; 100]).unwrap();
    let (log, rec) = open(&backend).unwrap();
    assert_eq!(rec.removed_empty, vec![path.clone()]);
    assert!(!backend.exists(&path).unwrap());
    assert_eq!(rec.last_zxid, Some(3));
    log.append(4, &payload(4)).unwrap();
    log.sync().unwrap();
}

#[test]
fn damaged_header_is_an_error() {
    let (backend, log) = filled(3);
    let seg = log.segments()[0].clone();
    drop(log);
    backend.flip_bit(&seg.path, 9, 0);
    let err = open(&backend).unwrap_err().to_string();
    assert!(
        err.contains("at offset 0: file header CRC mismatch"),
        "{err}"
    );
}

#[test]
fn segment_name_must_match_first_record() {
    let (backend, log) = filled(3);
    let seg = log.segments()[0].clone();
    drop(log);
    let wrong = segment_dir(dir()).join(zxid::file_name("log", 2));
    backend.rename(&seg.path, &wrong).unwrap();
    let err = open(&backend).unwrap_err().to_string();
    assert!(
        err.contains("file name says first zxid 0x2 but the first record has zxid 0x1"),
        "{err}"
    );
}

#[test]
fn failed_fsync_poisons_the_log() {
    let (backend, log) = filled(3);
    let other_handle = log.clone();
    log.append(4, &payload(4)).unwrap();
    backend.fail_next_sync();
    let err = log.sync().unwrap_err();
    assert!(err.is_fatal());
    assert!(matches!(err, StorageError::SyncFailed { .. }), "{err}");
    // Never retried and carried on: every later call fails, on every clone.
    for result in [
        log.sync().map(|_| ()),
        log.append(5, &payload(5)),
        other_handle.sync().map(|_| ()),
        log.roll(),
        log.truncate_after(2),
        log.read_from(1).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(err.is_fatal());
        assert!(err.to_string().contains("fsync failed"), "{err}");
    }
    assert_eq!(log.durable_zxid(), Some(3));
    // Recovery from disk is the way out.
    drop((log, other_handle));
    backend.crash();
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(rec.last_zxid, Some(3));
}

#[test]
fn failed_fsync_at_roll_poisons_too() {
    let (backend, log) = filled(3);
    log.append(4, &payload(4)).unwrap();
    log.roll().unwrap();
    backend.fail_next_sync();
    assert!(log.append(5, &payload(5)).unwrap_err().is_fatal());
    assert!(log.append(6, &payload(6)).is_err());
}

#[test]
fn group_commit_one_fsync_for_many_appends() {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = TxnLog::open(
        backend.clone(),
        dir(),
        LogOptions {
            segment_max_bytes: 1 << 20,
            ..small()
        },
    )
    .unwrap();
    log.append(1, b"x").unwrap();
    log.sync().unwrap();
    let before = backend.sync_counts();
    for z in 2..=500 {
        log.append(z, b"some txn").unwrap();
    }
    assert_eq!(log.durable_zxid(), Some(1));
    assert_eq!(log.sync().unwrap(), Some(500));
    let after = backend.sync_counts();
    assert_eq!(after.file_syncs - before.file_syncs, 1);
    assert_eq!(after.dir_syncs, before.dir_syncs);
    // Nothing new: no fsync at all.
    assert_eq!(log.sync().unwrap(), Some(500));
    assert_eq!(backend.sync_counts(), after);
}

#[test]
fn appends_continue_while_another_thread_syncs() {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = open(&backend).unwrap();
    let syncer = log.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let rounds = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let rounds2 = rounds.clone();
    let handle = std::thread::spawn(move || {
        let mut last = None;
        while !stop2.load(Ordering::Acquire) {
            let durable = syncer.sync().unwrap();
            assert!(durable >= last, "durable zxid never goes back");
            last = durable;
            rounds2.fetch_add(1, Ordering::AcqRel);
        }
    });
    for z in 1..=3000 {
        log.append(z, &payload(z)).unwrap();
        if z % 1000 == 0 {
            assert!(log.durable_zxid() <= Some(z));
        }
    }
    // On a loaded machine the 3000 appends can finish before the syncer is first
    // scheduled (seen at nice 19 beside two compilers); give it time for a few rounds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rounds.load(Ordering::Acquire) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    assert!(rounds.load(Ordering::Acquire) >= 3, "the syncer ran");
    assert_eq!(log.sync().unwrap(), Some(3000));
    drop(log);
    backend.crash();
    let (log, rec) = open(&backend).unwrap();
    assert_eq!(rec.last_zxid, Some(3000));
    assert_eq!(all(&log), expected(1..=3000));
}

#[test]
fn roll_starts_a_new_segment_epoch_change_does_not() {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = TxnLog::open(
        backend.clone(),
        dir(),
        LogOptions {
            segment_max_bytes: 1 << 20,
            ..small()
        },
    )
    .unwrap();
    log.append(zxid::make(1, 1), b"a").unwrap();
    log.append(zxid::make(1, 2), b"b").unwrap();
    log.roll().unwrap();
    log.roll().unwrap(); // idempotent until the next append
    log.append(zxid::make(1, 3), b"c").unwrap();
    log.append(zxid::make(2, 1), b"d").unwrap();
    log.append(zxid::make(2, 2), b"e").unwrap();
    log.sync().unwrap();
    let firsts: Vec<i64> = log.segments().iter().map(|s| s.first_zxid).collect();
    // A new epoch follows any earlier zxid, so it stays in the same segment.
    assert_eq!(firsts, vec![zxid::make(1, 1), zxid::make(1, 3)]);
    // Finished segments are trimmed to their data.
    let first = &log.segments()[0];
    assert_eq!(backend.file_len(&first.path).unwrap(), first.data_len);
    drop(log);
    backend.crash();
    let (_, rec) = open(&backend).unwrap();
    assert_eq!(rec.segments.len(), 2);
    rec.check_contiguous_after(0, Path::new("start")).unwrap();
}

#[test]
fn gap_within_an_epoch_starts_a_new_segment_and_is_reported() {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = open(&backend).unwrap();
    log.append(1, b"a").unwrap();
    log.append(5, b"b").unwrap();
    log.sync().unwrap();
    assert_eq!(log.segments().len(), 2);
    drop(log);
    let (_, rec) = open(&backend).unwrap();
    let err = rec
        .check_contiguous_after(0, Path::new("start"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("log.0000000000000001 ends at zxid 0x1 but"),
        "{err}"
    );
    assert!(
        err.contains("log.0000000000000005 starts at zxid 0x5"),
        "{err}"
    );
    rec.check_contiguous_after(4, Path::new("snap")).unwrap();
}

#[test]
#[should_panic(expected = "zxids must strictly increase")]
fn non_increasing_zxid_panics() {
    let (_backend, log) = filled(3);
    let _ = log.append(3, b"dup");
}

#[test]
#[should_panic(expected = "txn payload must not be empty")]
fn empty_payload_panics() {
    let (_backend, log) = filled(1);
    let _ = log.append(2, b"");
}

#[test]
fn truncate_after_across_segments() {
    let (backend, log) = filled(50);
    let n = log.segments().len();
    let mid = log.segments()[1].clone();
    let cut_at = mid.first_zxid + 1;
    log.truncate_after(cut_at).unwrap();
    assert_eq!(log.last_zxid(), Some(cut_at));
    assert_eq!(log.durable_zxid(), Some(cut_at));
    assert_eq!(log.segments().len(), 2);
    assert!(n > 2);
    assert_eq!(all(&log), expected(1..=cut_at));
    // Appending after TRUNC continues the history, in a new segment.
    log.append(cut_at + 1, b"new").unwrap();
    log.sync().unwrap();
    drop(log);
    backend.crash();
    let (log, rec) = open(&backend).unwrap();
    assert_eq!(rec.last_zxid, Some(cut_at + 1));
    rec.check_contiguous_after(0, Path::new("s")).unwrap();
    assert_eq!(all(&log).len() as i64, cut_at + 1);
    // Truncating below everything empties the log.
    log.truncate_after(0).unwrap();
    assert_eq!(log.last_zxid(), None);
    assert!(log.segments().is_empty());
    log.append(1, b"fresh").unwrap();
    log.sync().unwrap();
}

#[test]
fn force_sync_off_never_fsyncs() {
    let backend = Arc::new(FaultyBackend::new());
    let (log, _) = TxnLog::open(
        backend.clone(),
        dir(),
        LogOptions {
            force_sync: false,
            ..small()
        },
    )
    .unwrap();
    let before = backend.sync_counts();
    for z in 1..=40 {
        log.append(z, &payload(z)).unwrap();
    }
    assert_eq!(log.sync().unwrap(), Some(40));
    assert_eq!(backend.sync_counts(), before);
}

#[test]
fn mem_backend_works() {
    let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
    let (log, _) = TxnLog::open(backend.clone(), dir(), small()).unwrap();
    for z in 1..=10 {
        log.append(z, &payload(z)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let (log, _) = TxnLog::open(backend, dir(), small()).unwrap();
    assert_eq!(all(&log), expected(1..=10));
}

#[test]
fn scan_classifies_torn_prefixes_of_a_write() {
    // Every prefix of a multi-record write on top of a zero tail must scan as clean or
    // torn, never as corruption, and keep exactly the whole records of the prefix.
    let mut full = header_bytes().to_vec();
    let mut ends = Vec::new();
    for z in 1..=4 {
        encode_record(z, &payload(z), &mut full);
        ends.push(full.len());
    }
    full.resize(full.len() + 64, 0);
    for cut in HEADER_LEN as usize..full.len() {
        let mut data = full[..cut].to_vec();
        data.resize(full.len(), 0);
        let scan = scan_segment(&data, 1 << 20);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(scan.records.len(), whole, "cut {cut}");
        match scan.end {
            ScanEnd::Eof | ScanEnd::ZeroTail { .. } => {}
            ScanEnd::Bad {
                torn, ref reason, ..
            } => assert!(torn, "cut {cut}: {reason}"),
        }
    }
}
