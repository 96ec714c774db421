//! The transaction log (ZooKeeper's `FileTxnLog`): an append-only sequence of
//! `(zxid, payload)` records split into segment files, with group-commit fsync and crash
//! recovery.
//!
//! Owns segment files `<dataLogDir>/zkd-v1/log.<first zxid, 16 hex digits>`, their byte
//! format, preallocation, rolling, truncation (ZAB TRUNC and manual repair) and the rules
//! that decide, at open, whether damage is a torn final write (cut off) or corruption
//! (refuse to start). Never interprets payloads, never decides what is committed (the
//! server and zab do), never reads a clock.
//!
//! # Byte layout (all integers big-endian)
//!
//! ```text
//! segment file
//! +--------------------------------------------------------------+  offset 0
//! | magic "ZKDL" (4) | format version u32 = 1 (4) | reserved (8) |
//! | CRC32 of the preceding 16 bytes (4)                          |  HEADER_LEN = 20
//! +--------------------------------------------------------------+
//! | record 0 | record 1 | ... | record n-1                       |
//! +--------------------------------------------------------------+
//! | zeros (preallocated, not yet written) ...                    |  file length
//! +--------------------------------------------------------------+
//!
//! record (starts at the segment's current end; RECORD_HEADER_LEN = 16)
//!   +0   u32  payload length n (>= 1)
//!   +4   u32  CRC32 over (zxid as 8 big-endian bytes ++ payload)
//!   +8   i64  zxid
//!   +16  n    payload (opaque to this crate)
//! ```
//!
//! A length field of 0 at a record boundary means "end of log": the rest of the file is
//! preallocation. Payloads are therefore never empty (asserted on append); zkd's payloads
//! are jute TxnHeader+body, which never are. CRC32 is crc32fast's (IEEE polynomial).
//!
//! # Invariants
//!
//! - Within the whole log zxids strictly increase (release-mode `assert!` on append).
//! - Within one segment zxids are contiguous (`zxid::follows`): the writer starts a new
//!   segment whenever the next zxid does not follow the last one, so a gap can only sit
//!   between two segments and recovery can name the two files around it.
//! - A segment's name is the zxid of its first record.
//! - A segment is made durable (trimmed to its data and fsynced) before its successor is
//!   created, so a crash can never leave a later segment holding records while an earlier
//!   one lost its unsynced tail; the only segment that can end in a torn write is the last.
//!
//! # Recovery rules (applied by [`TxnLog::open`] to every segment, oldest first)
//!
//! 1. Header blank (empty file, zeros, or a torn prefix of the fixed header followed by
//!    zeros): allowed only for the last segment, which held nothing durable; it is removed.
//! 2. Header damaged otherwise: corruption.
//! 3. Records are read until one of: end of file (clean); a zero length field with only
//!    zeros after it (clean, preallocated tail); a *bad record* (length 0 followed by
//!    non-zero bytes, length above `max_record_bytes`, record past the end of the file,
//!    CRC mismatch).
//! 4. A bad record is a *torn tail* when both: nothing but zeros follows the extent its
//!    length field claims, and no valid-looking record (plausible length, fits in the file,
//!    zxid above the last good one, matching CRC) starts anywhere after it. A torn tail in
//!    the last segment is cut off (file truncated at the record's offset, warning logged
//!    with file and offset). Any other bad record, or a torn tail in a segment that is not
//!    the last, is corruption.
//! 5. A record with a valid CRC whose zxid is not above the previous one, or does not
//!    follow it within the segment, is corruption (the bytes are intact, so it is not a
//!    torn write: something wrote the wrong thing).
//! 6. The first record's zxid must equal the zxid in the file name; zxids must increase
//!    across segments.
//! 7. Corruption fails `open` with [`StorageError::CorruptLog`] naming the file and byte
//!    offset. Nothing that could be committed is silently dropped: only a torn final
//!    write, which was never acknowledged as durable, is cut.
//! 8. The last segment and the directory are fsynced before `open` returns: after a
//!    process crash the page cache may still hold never-synced records, which recovery
//!    reads and the server then treats as logged, so they must be made durable now.
//!
//! Gaps *between* segments are reported in [`RecoveredLog`] but are not an error here: a
//! follower that was brought up to date with a snapshot (ZAB SNAP) legitimately has older
//! segments that end before its snapshot. [`crate::Storage::open`] rejects a gap after
//! the snapshot it recovers from.
//!
//! # Group commit and threads
//!
//! [`TxnLog`] is a cheap `Clone` handle on shared state; every method takes `&self`.
//! The intended use is one thread (or task) calling [`TxnLog::append`] for each proposal,
//! and a sync thread calling [`TxnLog::sync`] in a loop whenever appends are pending.
//!
//! - `append` encodes the record into an in-memory buffer under the writer lock and, when
//!   the buffer passes `write_buffer_bytes`, writes it to the file (page cache) via
//!   `Backend::write_at`. No fsync happens on this path except when a segment is finished
//!   (roll), which is rare.
//! - `sync` takes the sync lock (one fsync in flight at a time), then briefly takes the
//!   writer lock to flush the buffer and note the last appended zxid and the files that
//!   need fsync; it releases the writer lock and fsyncs those files (and the directory if a
//!   segment was created). Appends made meanwhile proceed and are covered by the next
//!   `sync`. One fdatasync thus covers every append made before the `sync` call, however
//!   many. `sync` returns the zxid now durable; a `sync` with nothing new returns at once.
//! - A failed fsync or write poisons the log: that call and every later call on any clone
//!   returns a fatal error. The data's fate after a failed fsync is unknown (Linux may have
//!   dropped the dirty pages and will report success next time), so the only safe move is
//!   to stop and recover from disk.
//!
//! `force_sync = false` skips the fsyncs (tests only; a warning is logged at open).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::zxid;
use crate::VERSION_DIR;

/// File name prefix of log segments.
pub const SEGMENT_PREFIX: &str = "log";
/// Magic at the start of every segment.
pub const MAGIC: &[u8; 4] = b"ZKDL";
/// Current segment format version.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const HEADER_LEN: u64 = 20;
/// Bytes of a record before its payload.
pub const RECORD_HEADER_LEN: u64 = 16;

/// Tunables of the log. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Files grow in blocks of this many zero bytes so that most fdatasyncs do not also
    /// have to persist a size change (ZooKeeper's `preAllocSize`). 0 disables.
    pub pre_alloc_bytes: u64,
    /// A segment that has reached this size is finished before the next append.
    pub segment_max_bytes: u64,
    /// Appends are buffered in memory up to this many bytes before being written to the
    /// file; `sync` always writes the buffer first.
    pub write_buffer_bytes: usize,
    /// Largest payload accepted; also the plausibility bound recovery uses for lengths.
    pub max_record_bytes: u32,
    /// When false, `sync` does not fsync. Tests only.
    pub force_sync: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            pre_alloc_bytes: 64 << 20,
            segment_max_bytes: 64 << 20,
            write_buffer_bytes: 256 << 10,
            max_record_bytes: 64 << 20,
            force_sync: true,
        }
    }
}

impl LogOptions {
    /// Rejects combinations that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.max_record_bytes == 0 || self.max_record_bytes as u64 > u32::MAX as u64 - 64 {
            return Err(StorageError::Invalid(format!(
                "max_record_bytes {} out of range",
                self.max_record_bytes
            )));
        }
        if self.segment_max_bytes <= HEADER_LEN {
            return Err(StorageError::Invalid(format!(
                "segment_max_bytes {} must exceed the {HEADER_LEN}-byte header",
                self.segment_max_bytes
            )));
        }
        Ok(())
    }
}

/// One segment as known after open or after appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub path: PathBuf,
    /// Zxid of the first record (also in the file name).
    pub first_zxid: i64,
    /// Zxid of the last record.
    pub last_zxid: i64,
    /// End offset of the last record (data beyond is preallocation or nothing).
    pub data_len: u64,
}

/// What [`TxnLog::open`] found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveredLog {
    /// Segments in zxid order.
    pub segments: Vec<SegmentInfo>,
    /// Last zxid in the log.
    pub last_zxid: Option<i64>,
    /// Torn tails cut off: (file, offset the file was truncated at).
    pub cut_tails: Vec<(PathBuf, u64)>,
    /// Last segments removed because they held no record.
    pub removed_empty: Vec<PathBuf>,
}

impl RecoveredLog {
    /// Checks that every zxid after `from` is present: the log's first record above `from`
    /// follows `from` (see [`zxid::follows`]) and consecutive segments above it join up.
    /// `from_name` names what `from` came from (a snapshot file) in the error.
    pub fn check_contiguous_after(&self, from: i64, from_name: &Path) -> Result<()> {
        check_contiguous_after(&self.segments, from, from_name)
    }
}

pub(crate) fn check_contiguous_after(
    segments: &[SegmentInfo],
    from: i64,
    from_name: &Path,
) -> Result<()> {
    let mut prev: Option<(&Path, i64)> = Some((from_name, from));
    for seg in segments.iter().filter(|s| s.last_zxid > from) {
        if let Some((prev_path, prev_zxid)) = prev {
            // Within a segment zxids are contiguous, so if `from` lies inside this
            // segment's range the records above it follow it (or `from` itself is a
            // record). Only a segment starting above `from` can open a gap.
            if seg.first_zxid > prev_zxid && !zxid::follows(prev_zxid, seg.first_zxid) {
                return Err(StorageError::LogGap {
                    prev: prev_path.to_path_buf(),
                    prev_last: prev_zxid,
                    next: seg.path.clone(),
                    next_first: seg.first_zxid,
                });
            }
        }
        prev = Some((&seg.path, seg.last_zxid));
    }
    Ok(())
}

/// The fixed 20-byte segment header.
pub fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_be_bytes());
    h
}

fn record_crc(zxid: i64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&zxid.to_be_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one encoded record to `out`.
pub fn encode_record(zxid: i64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        !payload.is_empty(),
        "a zero length marks the end of the log"
    );
    assert!(payload.len() <= u32::MAX as usize);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&record_crc(zxid, payload).to_be_bytes());
    out.extend_from_slice(&zxid.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A record located by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// Offset of the record's length field.
    pub offset: u64,
    pub zxid: i64,
    pub payload_len: u32,
}

impl RecordPos {
    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset + RECORD_HEADER_LEN + self.payload_len as u64
    }

    /// The payload bytes within the scanned segment data.
    pub fn payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = (self.offset + RECORD_HEADER_LEN) as usize;
        &data[start..start + self.payload_len as usize]
    }
}

/// State of a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderState {
    Ok,
    /// Empty, all zeros, or a torn prefix of the header followed by zeros.
    Blank,
    Bad(String),
}

/// How a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// The last record ends exactly at the end of the file.
    Eof,
    /// A zero length field at `offset` with only zeros after it.
    ZeroTail { offset: u64 },
    /// A bad record at `offset`; `torn` per recovery rule 4 (rule 5 damage is never torn).
    Bad {
        offset: u64,
        reason: String,
        torn: bool,
    },
}

/// Result of scanning one segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub header: HeaderState,
    pub records: Vec<RecordPos>,
    pub end: ScanEnd,
}

impl SegmentScan {
    /// Offset just past the last good record (the header end if none, 0 if no header).
    pub fn data_len(&self) -> u64 {
        match (self.records.last(), &self.header) {
            (Some(r), _) => r.end(),
            (None, HeaderState::Ok) => HEADER_LEN,
            (None, _) => 0,
        }
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    // OR-folding a block vectorises; a preallocated 64 MiB tail is checked at memory speed.
    bytes
        .chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Is there a record at `pos` that passes every check a real record would?
fn valid_looking_at(data: &[u8], pos: usize, max_record_bytes: u32, above: i64) -> bool {
    let header_end = pos + RECORD_HEADER_LEN as usize;
    if header_end > data.len() {
        return false;
    }
    let len = be_u32(&data[pos..]);
    if len == 0 || len > max_record_bytes || header_end + len as usize > data.len() {
        return false;
    }
    let zxid = be_i64(&data[pos + 8..]);
    if zxid <= above {
        return false;
    }
    be_u32(&data[pos + 4..]) == record_crc(zxid, &data[header_end..header_end + len as usize])
}

/// Recovery rule 4: is the bad record at `offset` a torn final write?
fn is_torn_tail(
    data: &[u8],
    offset: usize,
    claimed_end: Option<u64>,
    max_record_bytes: u32,
    last_good: i64,
) -> bool {
    if let Some(end) = claimed_end {
        if (end as usize) < data.len() && !all_zero(&data[end as usize..]) {
            return false;
        }
    }
    let last_nonzero = match data.iter().rposition(|&b| b != 0) {
        Some(i) => i,
        None => return true,
    };
    !(offset + 1..=last_nonzero).any(|p| valid_looking_at(data, p, max_record_bytes, last_good))
}

/// Scans a segment's bytes according to the layout and recovery rules 1-5 (rule 6 and
/// the policy of what to do with the outcome belong to the caller).
pub fn scan_segment(data: &[u8], max_record_bytes: u32) -> SegmentScan {
    let expected = header_bytes();
    let matching = data
        .iter()
        .zip(expected.iter())
        .take_while(|(a, b)| a == b)
        .count();
    if matching < HEADER_LEN as usize {
        let header = if all_zero(&data[matching..]) {
            HeaderState::Blank
        } else if data.len() >= 4 && &data[..4] != MAGIC {
            HeaderState::Bad("bad magic (not a zkd txn log segment)".into())
        } else if data.len() >= 8 && be_u32(&data[4..]) != FORMAT_VERSION {
            HeaderState::Bad(format!("unsupported format version {}", be_u32(&data[4..])))
        } else {
            HeaderState::Bad("file header CRC mismatch".into())
        };
        return SegmentScan {
            header,
            records: Vec::new(),
            end: ScanEnd::Eof,
        };
    }

    let mut records: Vec<RecordPos> = Vec::new();
    let mut pos = HEADER_LEN as usize;
    let end = loop {
        let last_good = records.last().map_or(0, |r| r.zxid);
        let bad = |reason: String, claimed_end: Option<u64>| ScanEnd::Bad {
            offset: pos as u64,
            torn: is_torn_tail(data, pos, claimed_end, max_record_bytes, last_good),
            reason,
        };
        if pos == data.len() {
            break ScanEnd::Eof;
        }
        if data.len() - pos < RECORD_HEADER_LEN as usize {
            if all_zero(&data[pos..]) {
                break ScanEnd::ZeroTail { offset: pos as u64 };
            }
            break bad("record header runs past end of file".into(), None);
        }
        let len = be_u32(&data[pos..]);
        let header_end = pos as u64 + RECORD_HEADER_LEN;
        if len == 0 {
            if all_zero(&data[pos..]) {
                break ScanEnd::ZeroTail { offset: pos as u64 };
            }
            break bad(
                "zero length field followed by non-zero bytes".into(),
                Some(header_end),
            );
        }
        if len > max_record_bytes {
            break bad(
                format!("impossible record length {len} (limit {max_record_bytes})"),
                Some(header_end),
            );
        }
        let record_end = header_end + len as u64;
        if record_end > data.len() as u64 {
            break bad(
                format!(
                    "record of length {len} runs past end of file ({} bytes)",
                    data.len()
                ),
                Some(record_end),
            );
        }
        let zxid = be_i64(&data[pos + 8..]);
        let payload = &data[header_end as usize..record_end as usize];
        if be_u32(&data[pos + 4..]) != record_crc(zxid, payload) {
            break bad("CRC mismatch".into(), Some(record_end));
        }
        // Rule 5: the CRC holds, so these bytes are what was written; never torn.
        let not_torn = |reason: String| ScanEnd::Bad {
            offset: pos as u64,
            reason,
            torn: false,
        };
        if zxid <= 0 {
            break not_torn(format!("invalid zxid {zxid:#x}"));
        }
        if let Some(prev) = records.last() {
            if zxid <= prev.zxid {
                break not_torn(format!(
                    "zxid not increasing: {zxid:#x} after {:#x}",
                    prev.zxid
                ));
            }
            if !zxid::follows(prev.zxid, zxid) {
                break not_torn(format!(
                    "zxid gap inside a segment: {zxid:#x} after {:#x}",
                    prev.zxid
                ));
            }
        }
        records.push(RecordPos {
            offset: pos as u64,
            zxid,
            payload_len: len,
        });
        pos = record_end as usize;
    };
    SegmentScan {
        header: HeaderState::Ok,
        records,
        end,
    }
}

/// Lists segment files in `dir` (only exact `log.<16 hex>` names), sorted by zxid.
pub fn list_segments(backend: &dyn Backend, dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut segments: Vec<(i64, PathBuf)> = backend
        .list(dir)
        .map_err(|e| StorageError::io("list", dir, e))?
        .into_iter()
        .filter_map(|name| {
            Some((
                zxid::parse_file_name(SEGMENT_PREFIX, &name)?,
                dir.join(name),
            ))
        })
        .collect();
    segments.sort();
    Ok(segments)
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::CorruptLog {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

struct Writer {
    segments: Vec<SegmentInfo>,
    /// `segments.last()` is open for appends at `write_offset`.
    open_segment: bool,
    roll_requested: bool,
    /// End of data in the open segment including the buffer.
    write_offset: u64,
    /// End of data written to the backend.
    flushed_offset: u64,
    /// Current file length of the open segment (data + preallocation).
    allocated: u64,
    buf: Vec<u8>,
    last_zxid: Option<i64>,
    /// Files written since their last fsync.
    unsynced: Vec<PathBuf>,
    /// Files a `sync` running without the writer lock is fsyncing right now.
    in_flight: Vec<PathBuf>,
    /// A segment was created or removed since the last directory fsync.
    dir_dirty: bool,
}

struct Inner {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    opts: LogOptions,
    writer: Mutex<Writer>,
    /// Serialises fsyncs (and truncation against them).
    sync_lock: Mutex<()>,
    /// Highest zxid known durable, 0 for none (zxids are > 0).
    durable: AtomicI64,
    /// Set by the first fatal error; every later call fails with it.
    poison: Mutex<Option<String>>,
}

/// The txn log. See the module header for the threading model.
#[derive(Clone)]
pub struct TxnLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for TxnLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnLog")
            .field("dir", &self.inner.dir)
            .field("last_zxid", &self.last_zxid())
            .field("durable_zxid", &self.durable_zxid())
            .finish()
    }
}

/// The directory holding segments for a dataLogDir.
pub fn segment_dir(data_log_dir: &Path) -> PathBuf {
    data_log_dir.join(VERSION_DIR)
}

pub(crate) fn ensure_dir(backend: &dyn Backend, dir: &Path) -> Result<()> {
    let existed = backend
        .exists(dir)
        .map_err(|e| StorageError::io("stat", dir, e))?;
    if !existed {
        backend
            .create_dir_all(dir)
            .map_err(|e| StorageError::io("create directory", dir, e))?;
        // The new directory's own entry must survive a crash too.
        if let Some(parent) = dir.parent() {
            backend
                .sync_dir(parent)
                .map_err(|e| StorageError::io("fsync directory", parent, e))?;
        }
    }
    Ok(())
}

impl TxnLog {
    /// Opens (creating if needed) the log in `<data_log_dir>/zkd-v1`, validating every
    /// segment and applying the recovery rules of the module header. Torn tails are cut
    /// and empty last segments removed durably before this returns.
    pub fn open(
        backend: Arc<dyn Backend>,
        data_log_dir: &Path,
        opts: LogOptions,
    ) -> Result<(TxnLog, RecoveredLog)> {
        opts.validate()?;
        if !opts.force_sync {
            tracing::warn!(
                dir = %data_log_dir.display(),
                "forceSync is off: the txn log never fsyncs; acknowledged writes can be lost on power failure (tests only)"
            );
        }
        let dir = segment_dir(data_log_dir);
        ensure_dir(&*backend, &dir)?;
        let recovered = recover_segments(&*backend, &dir, &opts)?;

        let mut writer = Writer {
            segments: recovered.segments.clone(),
            open_segment: false,
            roll_requested: false,
            write_offset: 0,
            flushed_offset: 0,
            allocated: 0,
            buf: Vec::new(),
            last_zxid: recovered.last_zxid,
            unsynced: Vec::new(),
            in_flight: Vec::new(),
            dir_dirty: false,
        };
        if let Some(last) = recovered.segments.last() {
            writer.open_segment = true;
            writer.write_offset = last.data_len;
            writer.flushed_offset = last.data_len;
            writer.allocated = backend
                .file_len(&last.path)
                .map_err(|e| StorageError::io("stat", &last.path, e))?;
        }
        let log = TxnLog {
            inner: Arc::new(Inner {
                backend,
                dir,
                opts,
                writer: Mutex::new(writer),
                sync_lock: Mutex::new(()),
                durable: AtomicI64::new(recovered.last_zxid.unwrap_or(0)),
                poison: Mutex::new(None),
            }),
        };
        Ok((log, recovered))
    }

    /// The segment directory (`<dataLogDir>/zkd-v1`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn check(&self) -> Result<()> {
        match &*self.inner.poison.lock() {
            Some(msg) => Err(StorageError::Poisoned(msg.clone())),
            None => Ok(()),
        }
    }

    /// Records a fatal error so every later call fails, and returns it.
    fn poison(&self, err: StorageError) -> StorageError {
        let mut poison = self.inner.poison.lock();
        if poison.is_none() {
            tracing::error!(error = %err, "txn log poisoned");
            *poison = Some(err.to_string());
        }
        err
    }

    /// Appends a record. Buffered: it is durable only after a later [`TxnLog::sync`]
    /// returns a zxid ≥ this one. Panics if `zxid` is not above every zxid in the log or
    /// the payload is empty or too large (caller bugs, not operating failures).
    pub fn append(&self, zxid: i64, payload: &[u8]) -> Result<()> {
        self.check()?;
        assert!(zxid > 0, "zxid must be positive");
        assert!(!payload.is_empty(), "txn payload must not be empty");
        assert!(
            payload.len() <= self.inner.opts.max_record_bytes as usize,
            "txn payload exceeds max_record_bytes"
        );
        let mut w = self.inner.writer.lock();
        if let Some(last) = w.last_zxid {
            assert!(zxid > last, "zxids must strictly increase in the txn log");
        }
        let must_roll = !w.open_segment
            || w.roll_requested
            || w.write_offset >= self.inner.opts.segment_max_bytes
            || w.last_zxid.is_some_and(|last| !zxid::follows(last, zxid));
        if must_roll {
            self.finish_segment(&mut w)?;
            self.start_segment(&mut w, zxid)?;
        }
        let before = w.buf.len();
        encode_record(zxid, payload, &mut w.buf);
        w.write_offset += (w.buf.len() - before) as u64;
        w.last_zxid = Some(zxid);
        let write_offset = w.write_offset;
        let seg = w.segments.last_mut().expect("open segment");
        seg.last_zxid = zxid;
        seg.data_len = write_offset;
        if w.buf.len() >= self.inner.opts.write_buffer_bytes {
            self.flush(&mut w)?;
        }
        Ok(())
    }

    /// Writes the buffer into the open segment, growing the preallocation first.
    fn flush(&self, w: &mut Writer) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let path = w
            .segments
            .last()
            .expect("buffered data has a segment")
            .path
            .clone();
        let backend = &self.inner.backend;
        let prealloc = self.inner.opts.pre_alloc_bytes;
        if prealloc > 0 && w.allocated < w.write_offset {
            let new_len = w.write_offset.div_ceil(prealloc) * prealloc;
            backend.set_len(&path, new_len).map_err(|source| {
                self.poison(StorageError::WriteFailed {
                    path: path.clone(),
                    source,
                })
            })?;
            w.allocated = new_len;
        }
        backend
            .write_at(&path, w.flushed_offset, &w.buf)
            .map_err(|source| {
                self.poison(StorageError::WriteFailed {
                    path: path.clone(),
                    source,
                })
            })?;
        w.flushed_offset = w.write_offset;
        w.allocated = w.allocated.max(w.write_offset);
        w.buf.clear();
        if !w.unsynced.contains(&path) {
            w.unsynced.push(path);
        }
        Ok(())
    }

    /// Flushes the open segment and trims its preallocation off (the fsync follows in
    /// `start_segment`).
    fn finish_segment(&self, w: &mut Writer) -> Result<()> {
        w.roll_requested = false;
        if !w.open_segment {
            return Ok(());
        }
        self.flush(w)?;
        let seg = w.segments.last().expect("open segment").clone();
        if w.allocated > w.flushed_offset {
            self.inner
                .backend
                .set_len(&seg.path, w.flushed_offset)
                .map_err(|source| {
                    self.poison(StorageError::WriteFailed {
                        path: seg.path.clone(),
                        source,
                    })
                })?;
            w.allocated = w.flushed_offset;
            if !w.unsynced.contains(&seg.path) {
                w.unsynced.push(seg.path.clone());
            }
        }
        w.open_segment = false;
        Ok(())
    }

    fn start_segment(&self, w: &mut Writer, first_zxid: i64) -> Result<()> {
        // Every earlier segment must be durable before a later one can exist on disk
        // (module invariants). Usually only the segment just finished is pending.
        // That includes files a concurrent `sync` is still fsyncing: its fsync may not
        // have completed, so fsync them here too (harmless duplicate work, rare).
        let mut pending = std::mem::take(&mut w.unsynced);
        pending.extend(w.in_flight.iter().cloned());
        pending.dedup();
        for path in pending {
            self.sync_file(&path)?;
        }
        let path = self
            .inner
            .dir
            .join(zxid::file_name(SEGMENT_PREFIX, first_zxid));
        let backend = &self.inner.backend;
        let write_failed = |source| StorageError::WriteFailed {
            path: path.clone(),
            source,
        };
        backend
            .create(&path)
            .map_err(|e| self.poison(write_failed(e)))?;
        backend
            .write_at(&path, 0, &header_bytes())
            .map_err(|e| self.poison(write_failed(e)))?;
        let mut allocated = HEADER_LEN;
        let prealloc = self.inner.opts.pre_alloc_bytes;
        if prealloc > 0 {
            allocated = prealloc.max(HEADER_LEN).div_ceil(prealloc) * prealloc;
            backend
                .set_len(&path, allocated)
                .map_err(|e| self.poison(write_failed(e)))?;
        }
        w.segments.push(SegmentInfo {
            path: path.clone(),
            first_zxid,
            last_zxid: first_zxid,
            data_len: HEADER_LEN,
        });
        w.open_segment = true;
        w.write_offset = HEADER_LEN;
        w.flushed_offset = HEADER_LEN;
        w.allocated = allocated;
        w.unsynced.push(path);
        w.dir_dirty = true;
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> Result<()> {
        if !self.inner.opts.force_sync {
            return Ok(());
        }
        self.inner.backend.sync(path).map_err(|source| {
            self.poison(StorageError::SyncFailed {
                path: path.to_path_buf(),
                source,
            })
        })
    }

    fn sync_dir(&self) -> Result<()> {
        if !self.inner.opts.force_sync {
            return Ok(());
        }
        self.inner
            .backend
            .sync_dir(&self.inner.dir)
            .map_err(|source| {
                self.poison(StorageError::SyncFailed {
                    path: self.inner.dir.clone(),
                    source,
                })
            })
    }

    /// Group commit: makes every record appended before this call durable with one
    /// fdatasync per touched file (plus a directory fsync after a new segment), and
    /// returns the last durable zxid. Callable from another thread while appends go on.
    pub fn sync(&self) -> Result<Option<i64>> {
        self.check()?;
        let _sync_guard = self.inner.sync_lock.lock();
        // A sync that failed while we waited for the lock poisoned the log.
        self.check()?;
        let (files, dir_dirty, target) = {
            let mut w = self.inner.writer.lock();
            self.flush(&mut w)?;
            let files = std::mem::take(&mut w.unsynced);
            w.in_flight = files.clone();
            (files, std::mem::take(&mut w.dir_dirty), w.last_zxid)
        };
        // The writer lock is released: appends continue while we fsync.
        let result = files
            .iter()
            .try_for_each(|path| self.sync_file(path))
            .and_then(|()| if dir_dirty { self.sync_dir() } else { Ok(()) });
        self.inner.writer.lock().in_flight.clear();
        result?;
        if let Some(target) = target {
            self.inner.durable.fetch_max(target, Ordering::AcqRel);
        }
        Ok(self.durable_zxid())
    }

    /// Asks for a new segment: the next append finishes the current one and starts a
    /// fresh file (ZooKeeper rolls the log after each snapshot, so purge can drop whole
    /// files).
    pub fn roll(&self) -> Result<()> {
        self.check()?;
        self.inner.writer.lock().roll_requested = true;
        Ok(())
    }

    /// Last appended zxid (durable or not).
    pub fn last_zxid(&self) -> Option<i64> {
        self.inner.writer.lock().last_zxid
    }

    /// Last zxid known durable.
    pub fn durable_zxid(&self) -> Option<i64> {
        match self.inner.durable.load(Ordering::Acquire) {
            0 => None,
            z => Some(z),
        }
    }

    /// The segments as they stand (data lengths include buffered appends).
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.inner.writer.lock().segments.clone()
    }

    /// Drops every record with a zxid above `zxid`, across segments, durably (ZAB TRUNC;
    /// manual repair). Segments entirely above are removed; the one holding the boundary
    /// is cut at the record boundary. The next append starts a new segment.
    ///
    /// The caller guarantees that no committed txn is above `zxid` (that is zab's
    /// invariant; the log cannot know what is committed).
    pub fn truncate_after(&self, zxid: i64) -> Result<()> {
        self.check()?;
        let _sync_guard = self.inner.sync_lock.lock();
        self.check()?;
        let mut w = self.inner.writer.lock();
        self.flush(&mut w)?;
        let backend = &*self.inner.backend;
        let result = truncate_segments(
            backend,
            &self.inner.dir,
            &w.segments,
            zxid,
            &self.inner.opts,
        );
        let kept = match result {
            Ok(kept) => kept,
            // A failed truncation may leave segments half-removed: stop using this log.
            Err(e) => return Err(self.poison(e)),
        };
        let removed: Vec<PathBuf> = w
            .segments
            .iter()
            .filter(|s| !kept.iter().any(|k| k.path == s.path))
            .map(|s| s.path.clone())
            .collect();
        w.unsynced.retain(|p| !removed.contains(p));
        w.segments = kept;
        w.open_segment = false;
        w.roll_requested = false;
        w.last_zxid = w.segments.last().map(|s| s.last_zxid);
        if let Some(len) = w.segments.last().map(|s| s.data_len) {
            w.write_offset = len;
            w.flushed_offset = len;
            w.allocated = len;
        }
        let new_last = w.last_zxid.unwrap_or(0);
        self.inner.durable.fetch_min(new_last, Ordering::AcqRel);
        Ok(())
    }

    /// Removes whole segments that hold only zxids below `zxid` (never the last segment).
    /// Used by purge; returns the removed files.
    pub fn remove_segments_before(&self, zxid: i64) -> Result<Vec<PathBuf>> {
        self.check()?;
        let mut w = self.inner.writer.lock();
        let mut keep_from = first_needed_segment(&w.segments, zxid);
        // Never delete a file a concurrent `sync` may be fsyncing (it would fail and
        // poison the log); such a segment goes at the next purge.
        if let Some(busy) = w
            .segments
            .iter()
            .position(|s| w.unsynced.contains(&s.path) || w.in_flight.contains(&s.path))
        {
            keep_from = keep_from.min(busy);
        }
        let doomed: Vec<SegmentInfo> = w.segments.drain(..keep_from).collect();
        let mut removed = Vec::new();
        for seg in doomed {
            self.inner
                .backend
                .remove(&seg.path)
                .map_err(|e| StorageError::io("remove", &seg.path, e))?;
            w.unsynced.retain(|p| p != &seg.path);
            removed.push(seg.path);
        }
        if !removed.is_empty() {
            w.dir_dirty = true;
        }
        Ok(removed)
    }

    /// Iterates records with zxid ≥ `zxid`, in order. Sees every append made before the
    /// call (the buffer is written out first).
    pub fn read_from(&self, zxid: i64) -> Result<LogReader> {
        self.check()?;
        let segments = {
            let mut w = self.inner.writer.lock();
            self.flush(&mut w)?;
            w.segments.clone()
        };
        Ok(LogReader::new(
            self.inner.backend.clone(),
            segments,
            zxid,
            self.inner.opts.max_record_bytes,
        ))
    }
}

/// Index of the first segment that may hold a zxid ≥ `zxid`: the last segment whose first
/// zxid is ≤ `zxid` (it may hold `zxid` itself), or 0. Never past the last segment.
pub(crate) fn first_needed_segment(segments: &[SegmentInfo], zxid: i64) -> usize {
    let idx = segments
        .iter()
        .rposition(|s| s.first_zxid <= zxid)
        .unwrap_or(0);
    idx.min(segments.len().saturating_sub(1))
}

/// Validates every segment in `dir` and applies the recovery rules.
fn recover_segments(backend: &dyn Backend, dir: &Path, opts: &LogOptions) -> Result<RecoveredLog> {
    let files = list_segments(backend, dir)?;
    let mut out = RecoveredLog::default();
    let mut dir_changed = false;
    for (i, (name_zxid, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let data = backend
            .read_whole(path)
            .map_err(|e| StorageError::io("read", path, e))?;
        let scan = scan_segment(&data, opts.max_record_bytes);
        match &scan.header {
            HeaderState::Ok => {}
            HeaderState::Blank if is_last => {
                tracing::warn!(file = %path.display(), "removing last txn log segment with a blank header (crash while creating it)");
                backend
                    .remove(path)
                    .map_err(|e| StorageError::io("remove", path, e))?;
                out.removed_empty.push(path.clone());
                dir_changed = true;
                continue;
            }
            HeaderState::Blank => {
                return Err(corrupt(
                    path,
                    0,
                    "blank file header in a segment that is not the last",
                ));
            }
            HeaderState::Bad(reason) => return Err(corrupt(path, 0, reason.clone())),
        }
        let mut data_len = scan.data_len();
        match &scan.end {
            ScanEnd::Eof | ScanEnd::ZeroTail { .. } => {}
            ScanEnd::Bad {
                offset,
                reason,
                torn,
            } => {
                if !(*torn && is_last) {
                    return Err(corrupt(path, *offset, reason.clone()));
                }
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    reason = %reason,
                    "cutting torn write off the end of the txn log"
                );
                backend
                    .set_len(path, *offset)
                    .and_then(|()| backend.sync(path))
                    .map_err(|e| StorageError::io("truncate torn tail of", path, e))?;
                out.cut_tails.push((path.clone(), *offset));
                data_len = *offset;
            }
        }
        let (first, last) = match (scan.records.first(), scan.records.last()) {
            (Some(f), Some(l)) => (f.zxid, l.zxid),
            _ if is_last => {
                tracing::warn!(file = %path.display(), "removing last txn log segment holding no record");
                backend
                    .remove(path)
                    .map_err(|e| StorageError::io("remove", path, e))?;
                out.removed_empty.push(path.clone());
                dir_changed = true;
                continue;
            }
            _ => {
                return Err(corrupt(
                    path,
                    HEADER_LEN,
                    "segment holds no record but is not the last",
                ))
            }
        };
        if first != *name_zxid {
            return Err(corrupt(
                path,
                HEADER_LEN,
                format!("file name says first zxid {name_zxid:#x} but the first record has zxid {first:#x}"),
            ));
        }
        if let Some(prev) = out.segments.last() {
            if first <= prev.last_zxid {
                return Err(corrupt(
                    path,
                    HEADER_LEN,
                    format!(
                        "zxid {first:#x} not above {:#x}, the last zxid of {}",
                        prev.last_zxid,
                        prev.path.display()
                    ),
                ));
            }
        }
        out.segments.push(SegmentInfo {
            path: path.clone(),
            first_zxid: first,
            last_zxid: last,
            data_len,
        });
    }
    // What recovery returns must be durable: after a process crash (not a power cut) the
    // page cache still holds writes that were never fsynced, recovery reads them, and the
    // server would treat them as logged; a power cut later would then lose them. Earlier
    // segments were fsynced before their successor was created, so only the last one and
    // the directory can hold such writes.
    if let Some(last) = out.segments.last() {
        backend
            .sync(&last.path)
            .map_err(|e| StorageError::io("fsync", &last.path, e))?;
    }
    if dir_changed || !out.segments.is_empty() {
        backend
            .sync_dir(dir)
            .map_err(|e| StorageError::io("fsync directory", dir, e))?;
    }
    out.last_zxid = out.segments.last().map(|s| s.last_zxid);
    Ok(out)
}

/// Cuts `segments` so no record above `zxid` remains; returns the kept segments with
/// updated ends. Durable on return. Refuses when a record that must be kept is damaged
/// or when the cut point itself cannot be located.
pub(crate) fn truncate_segments(
    backend: &dyn Backend,
    dir: &Path,
    segments: &[SegmentInfo],
    zxid: i64,
    opts: &LogOptions,
) -> Result<Vec<SegmentInfo>> {
    // Plan first (reading and locating the cut can fail without side effects).
    let mut kept = Vec::new();
    let mut boundary: Option<(usize, Cut)> = None;
    let mut doomed: Vec<&SegmentInfo> = Vec::new();
    for seg in segments {
        if seg.first_zxid > zxid {
            doomed.push(seg);
        } else if seg.last_zxid <= zxid {
            kept.push(seg.clone());
        } else {
            let data = backend
                .read(&seg.path)
                .map_err(|e| StorageError::io("read", &seg.path, e))?;
            let cut = cut_offset(&seg.path, &data, zxid, opts.max_record_bytes)?;
            boundary = Some((kept.len(), cut));
            kept.push(seg.clone());
        }
    }
    // Remove whole segments newest first and make that durable before cutting the
    // boundary segment: a crash at any point leaves a prefix of the original log, never a
    // cut segment followed by a later one (which would be a gap).
    for seg in doomed.iter().rev() {
        backend
            .remove(&seg.path)
            .map_err(|source| StorageError::WriteFailed {
                path: seg.path.clone(),
                source,
            })?;
    }
    if !doomed.is_empty() {
        backend
            .sync_dir(dir)
            .map_err(|source| StorageError::SyncFailed {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    if let Some((idx, cut)) = boundary {
        let seg = &mut kept[idx];
        backend
            .set_len(&seg.path, cut.offset)
            .map_err(|source| StorageError::WriteFailed {
                path: seg.path.clone(),
                source,
            })?;
        backend
            .sync(&seg.path)
            .map_err(|source| StorageError::SyncFailed {
                path: seg.path.clone(),
                source,
            })?;
        seg.last_zxid = cut.last_kept;
        seg.data_len = cut.offset;
    }
    Ok(kept)
}

pub(crate) struct Cut {
    pub offset: u64,
    pub last_kept: i64,
}

/// Where to cut a segment so that its last record is the last one ≤ `zxid`. A damaged
/// record is acceptable only if every record before it is ≤ `zxid` and the last of them
/// is exactly `zxid` (then the damage lies wholly in the part being cut away).
pub(crate) fn cut_offset(
    path: &Path,
    data: &[u8],
    zxid: i64,
    max_record_bytes: u32,
) -> Result<Cut> {
    let scan = scan_segment(data, max_record_bytes);
    if let HeaderState::Bad(reason) = &scan.header {
        return Err(corrupt(path, 0, reason.clone()));
    }
    let keep: Vec<&RecordPos> = scan.records.iter().take_while(|r| r.zxid <= zxid).collect();
    let Some(last) = keep.last() else {
        return Err(StorageError::Invalid(format!(
            "{} holds no record at or below zxid {zxid:#x}; remove the file instead",
            path.display()
        )));
    };
    let reached_above = keep.len() < scan.records.len();
    if !reached_above {
        if let ScanEnd::Bad { offset, reason, .. } = &scan.end {
            if last.zxid != zxid {
                return Err(StorageError::Invalid(format!(
                    "cannot truncate {} to zxid {zxid:#x}: the record after zxid {:#x} at offset {offset} is damaged ({reason}); truncate to {:#x} instead",
                    path.display(),
                    last.zxid,
                    last.zxid
                )));
            }
        }
    }
    Ok(Cut {
        offset: last.end(),
        last_kept: last.zxid,
    })
}

/// Iterator over `(zxid, payload)` from [`TxnLog::read_from`]. Reads one segment at a
/// time.
pub struct LogReader {
    backend: Arc<dyn Backend>,
    segments: std::vec::IntoIter<SegmentInfo>,
    from: i64,
    max_record_bytes: u32,
    current: Option<(SegmentInfo, Vec<u8>, std::vec::IntoIter<RecordPos>)>,
    failed: bool,
}

/// One record from a [`LogReader`], with where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub zxid: i64,
    pub payload: Vec<u8>,
    pub path: PathBuf,
    pub offset: u64,
}

impl LogReader {
    fn new(
        backend: Arc<dyn Backend>,
        segments: Vec<SegmentInfo>,
        from: i64,
        max_record_bytes: u32,
    ) -> Self {
        let start = first_needed_segment(&segments, from);
        let segments: Vec<SegmentInfo> = segments.into_iter().skip(start).collect();
        LogReader {
            backend,
            segments: segments.into_iter(),
            from,
            max_record_bytes,
            current: None,
            failed: false,
        }
    }

    /// Like `next`, but with the file and offset of each record.
    pub fn next_entry(&mut self) -> Option<Result<LogEntry>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some((seg, data, records)) = &mut self.current {
                for r in records.by_ref() {
                    if r.zxid >= self.from {
                        return Some(Ok(LogEntry {
                            zxid: r.zxid,
                            payload: r.payload(data).to_vec(),
                            path: seg.path.clone(),
                            offset: r.offset,
                        }));
                    }
                }
                self.current = None;
            }
            let seg = self.segments.next()?;
            match self.load(&seg) {
                Ok((data, records)) => self.current = Some((seg, data, records.into_iter())),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }

    fn load(&self, seg: &SegmentInfo) -> Result<(Vec<u8>, Vec<RecordPos>)> {
        let data = self
            .backend
            .read_range(&seg.path, 0, seg.data_len as usize)
            .map_err(|e| StorageError::io("read", &seg.path, e))?;
        let scan = scan_segment(&data, self.max_record_bytes);
        if let HeaderState::Bad(reason) = &scan.header {
            return Err(corrupt(&seg.path, 0, reason.clone()));
        }
        if let ScanEnd::Bad { offset, reason, .. } = &scan.end {
            return Err(corrupt(&seg.path, *offset, reason.clone()));
        }
        let records: Vec<RecordPos> = scan
            .records
            .into_iter()
            .filter(|r| r.zxid <= seg.last_zxid)
            .collect();
        if records.last().map(|r| r.zxid) != Some(seg.last_zxid) {
            return Err(corrupt(
                &seg.path,
                scan_end_offset(&records),
                format!("expected records up to zxid {:#x}", seg.last_zxid),
            ));
        }
        Ok((data, records))
    }
}

fn scan_end_offset(records: &[RecordPos]) -> u64 {
    records.last().map_or(HEADER_LEN, |r| r.end())
}

impl Iterator for LogReader {
    type Item = Result<(i64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().map(|r| r.map(|e| (e.zxid, e.payload)))
    }
}

#[cfg(test)]
mod tests;
