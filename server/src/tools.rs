//! The offline operator tools behind `zkd dump-log`, `zkd dump-snapshot`, `zkd verify`,
//! `zkd truncate-log` and `zkd purge` (ZooKeeper's `TxnLogToolkit`, `SnapshotFormatter`
//! and `PurgeTxnLog`).
//!
//! Owns the presentation: decoding payloads that zkd-storage treats as opaque (txns with
//! zkd-proto, snapshot bodies with [`crate::tree::snapshot`]) and printing them as text or
//! JSON lines, and the operator-facing error messages. The storage rules (what is torn,
//! what may be purged, where a log can be cut) stay in `zkd_storage::tools` and
//! `zkd_storage::purge`; this module never re-implements them.
//!
//! Must never change a file except in [`truncate_log`] (and only with `yes`) and [`purge`],
//! must never panic on any input (every length, count and zxid comes from a file that may
//! be garbage), and reports failures as one line naming the file and, where there is one,
//! the byte offset. Must only be run against a stopped server's files for the two
//! mutating commands (nothing here can check that).
//!
//! # Output formats and how they differ from ZooKeeper's tools
//!
//! `dump-log` text lines follow `TxnLogToolkit`:
//! `<date> session 0x<id> cxid 0x<cxid> zxid 0x<zxid> <op> <txn>`, with these differences:
//! - each line starts with `offset <n>: `, the byte offset of the record in the segment;
//! - the date is always UTC and in the pre-JDK-9 short form (`11/27/26 3:04:05 AM UTC`),
//!   so the output does not depend on the machine's locale or time zone;
//! - every txn body is printed in jute's `toString` form (strings `'`-prefixed with `,`,
//!   `}`, `%`, CR, LF and NUL %-escaped; buffers `#` + hex; records `s{..}`; vectors
//!   `v{..}`; booleans `T`/`F`), which is what `LogFormatter` printed. `TxnLogToolkit`
//!   instead prints create/setData data as raw UTF-8 (ambiguous when the data holds a
//!   comma or a newline) and a multi's sub-txns as undecoded bytes; we print data as
//!   two-digit hex (jute's own `#` form drops leading zeros, so it cannot be read back)
//!   and a multi as `multi <op>:<txn>;<op>:<txn>...` with every sub-txn decoded;
//! - the file header line and the end line name the zkd segment format, not ZooKeeper's.
//!   zkd segments only: Apache ZooKeeper `log.*` files (magic "ZKLG") are not read.
//!
//! `dump-snapshot` text follows `SnapshotFormatter` (the `----`-separated znode blocks
//! with `cZxid = 0x..` etc.) but lists sessions first, children in sorted order (not Java
//! hash order), dates as UTC, and adds each node's ACL and a data preview. It reads the
//! whole file before printing (via [`deserialize_snapshot_full`]), so a damaged snapshot
//! prints only the error with its offset. Compressed ZooKeeper snapshots (`.gz`,
//! `.snappy`) are not read.
//!
//! JSON output is one object per line, hand-escaped (RFC 8259): this module writes only
//! flat objects and arrays of them, which does not justify a serde dependency in the
//! server. 64-bit ids (zxids, session ids, ephemeral owners) are hex strings (`"0x1f"`)
//! because session ids exceed the 2^53 integers JSON readers keep exact; data is `"data"`
//! as hex (or null) plus `"data_utf8"` when it is valid UTF-8.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zkd_proto::opcode::OpCode;
use zkd_proto::records::{perms, Acl};
use zkd_proto::txn::{TxnBody, TxnEntry};
use zkd_storage::snapshot::{self as zsnap, list_snapshots, snapshot_dir};
use zkd_storage::tools::{self as stools, Severity};
use zkd_storage::txnlog::{list_segments, segment_dir, HeaderState, LogOptions, ScanEnd};
use zkd_storage::{Backend, FileBackend};

use crate::tree::snapshot::{deserialize_snapshot_full, LoadedSnapshot, SNAP_MAGIC};
use crate::tree::{DataTree, ROOT};

/// Why a tool stopped without success.
#[derive(Debug)]
pub enum ToolError {
    /// Bad input, damage found or a failed operation: one line for stderr, exit status 1.
    Failed(String),
    /// The command line asks for something refused (e.g. `purge -n 2`): exit status 2,
    /// like clap's usage errors.
    Usage(String),
    /// Writing the output failed (for instance stdout piped into `head` was closed).
    Output(io::Error),
}

impl ToolError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Failed(_) | ToolError::Output(_) => 1,
            ToolError::Usage(_) => 2,
        }
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::Failed(m) | ToolError::Usage(m) => f.write_str(m),
            ToolError::Output(e) => write!(f, "writing output: {e}"),
        }
    }
}

// Only output goes through `?` on io::Error; file reads map their errors explicitly so
// that the message names the file.
impl From<io::Error> for ToolError {
    fn from(e: io::Error) -> Self {
        ToolError::Output(e)
    }
}

fn failed(msg: impl Into<String>) -> ToolError {
    ToolError::Failed(msg.into())
}

/// Where the data lives: from a zoo.cfg or from explicit directories.
#[derive(Debug, Clone)]
pub struct DataDirs {
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    /// `autopurge.snapRetainCount` when read from a zoo.cfg.
    pub snap_retain_count: Option<usize>,
}

impl DataDirs {
    /// Resolves `CONFIG | --data-dir D [--data-log-dir L]` (L defaults to D, as
    /// ZooKeeper's dataLogDir defaults to dataDir).
    pub fn resolve(
        config: Option<&Path>,
        data_dir: Option<&Path>,
        data_log_dir: Option<&Path>,
    ) -> Result<DataDirs, ToolError> {
        match (config, data_dir) {
            (Some(cfg), None) if data_log_dir.is_none() => {
                let (c, _warnings) =
                    crate::config::Config::load(cfg).map_err(|e| failed(e.to_string()))?;
                Ok(DataDirs {
                    data_dir: c.data_dir,
                    data_log_dir: c.data_log_dir,
                    snap_retain_count: Some(c.autopurge_snap_retain_count as usize),
                })
            }
            (None, Some(d)) => Ok(DataDirs {
                data_dir: d.to_path_buf(),
                data_log_dir: data_log_dir.unwrap_or(d).to_path_buf(),
                snap_retain_count: None,
            }),
            _ => Err(ToolError::Usage(
                "give either a zoo.cfg or --data-dir D [--data-log-dir L]".into(),
            )),
        }
    }
}

/// Parses a zxid as `0x`-prefixed hex or decimal; zxids are never negative.
pub fn parse_zxid(s: &str) -> Result<i64, ToolError> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse::<u64>().ok(),
    };
    match parsed {
        Some(v) if v <= i64::MAX as u64 => Ok(v as i64),
        _ => Err(ToolError::Usage(format!(
            "bad zxid {s:?}: expected 0x-prefixed hex (0x100000005) or decimal, at most 0x7fffffffffffffff"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds one flat JSON object; values are added already encoded.
struct Json(String);

impl Json {
    fn new() -> Json {
        Json(String::from("{"))
    }

    fn raw(mut self, key: &str, value: &str) -> Json {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&json_str(key));
        self.0.push(':');
        self.0.push_str(value);
        self
    }

    fn str(self, key: &str, value: &str) -> Json {
        self.raw(key, &json_str(value))
    }

    fn num(self, key: &str, value: impl std::fmt::Display) -> Json {
        self.raw(key, &value.to_string())
    }

    fn id(self, key: &str, value: i64) -> Json {
        self.str(key, &format!("{:#x}", value))
    }

    fn bool(self, key: &str, value: bool) -> Json {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// `"data"` as hex or null, plus `"data_utf8"` when the bytes are valid UTF-8.
    fn data(self, data: Option<&[u8]>) -> Json {
        match data {
            None => self.raw("data", "null"),
            Some(d) => {
                let j = self.str("data", &hex(d));
                match std::str::from_utf8(d) {
                    Ok(text) => j.str("data_utf8", text),
                    Err(_) => j,
                }
            }
        }
    }

    fn acl(self, acl: &[Acl]) -> Json {
        let items: Vec<String> = acl
            .iter()
            .map(|a| {
                Json::new()
                    .num("perms", a.perms)
                    .str("scheme", &a.id.scheme)
                    .str("id", &a.id.id)
                    .finish()
            })
            .collect();
        self.raw("acl", &format!("[{}]", items.join(",")))
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`); total for every i64 input we can get from milliseconds.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    weekday: usize,
}

fn utc(ms: i64) -> Utc {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Utc {
        year,
        month,
        day,
        hour: sod / 3600,
        min: sod / 60 % 60,
        sec: sod % 60,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
    }
}

/// `DateFormat.getDateTimeInstance(SHORT, LONG)` in en_US, UTC: `11/27/26 3:04:05 AM UTC`.
fn txn_time(ms: i64) -> String {
    let t = utc(ms);
    let (h12, ampm) = match t.hour {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{}/{}/{:02} {}:{:02}:{:02} {} UTC",
        t.month,
        t.day,
        t.year.rem_euclid(100),
        h12,
        t.min,
        t.sec,
        ampm
    )
}

/// `java.util.Date.toString()` in UTC: `Wed Nov 27 03:04:05 UTC 2026`.
fn date_string(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = utc(ms);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[t.weekday],
        MONTHS[(t.month as usize).saturating_sub(1).min(11)],
        t.day,
        t.hour,
        t.min,
        t.sec,
        t.year
    )
}

/// `Request.op2String`.
fn op_name(txn_type: i32) -> String {
    match OpCode::from_i32(txn_type) {
        // Our OpCode::name says createTtl; ZooKeeper's tools print createTTL.
        Some(OpCode::CreateTtl) => "createTTL".into(),
        Some(op) => op.name().into(),
        None => format!("unknown {txn_type}"),
    }
}

/// jute `toString` of a buffer field (null and empty both print nothing), with two hex
/// digits per byte.
fn jute_buffer(b: Option<&[u8]>) -> String {
    match b {
        Some(b) if !b.is_empty() => format!("#{}", hex(b)),
        _ => String::new(),
    }
}

fn jute_acls(acl: &[Acl]) -> String {
    let items: Vec<String> = acl
        .iter()
        .map(|a| {
            format!(
                "s{{{},s{{{},{}}}}}",
                a.perms,
                zkd_proto::jute::to_string_escape(&a.id.scheme),
                zkd_proto::jute::to_string_escape(&a.id.id)
            )
        })
        .collect();
    format!("v{{{}}}", items.join(","))
}

fn tf(b: bool) -> &'static str {
    if b {
        "T"
    } else {
        "F"
    }
}

/// The txn body in jute `toString` form (see the module header).
fn body_text(body: &TxnBody) -> String {
    match body {
        TxnBody::Create(t) | TxnBody::Create2(t) => format!(
            "{},{},{},{},{}",
            zkd_proto::jute::to_string_escape(&t.path),
            jute_buffer(t.data.as_deref()),
            jute_acls(&t.acl),
            tf(t.ephemeral),
            t.parent_cversion
        ),
        TxnBody::CreateTtl(t) => format!(
            "{},{},{},{},{}",
            zkd_proto::jute::to_string_escape(&t.path),
            jute_buffer(t.data.as_deref()),
            jute_acls(&t.acl),
            t.parent_cversion,
            t.ttl
        ),
        TxnBody::CreateContainer(t) => format!(
            "{},{},{},{}",
            zkd_proto::jute::to_string_escape(&t.path),
            jute_buffer(t.data.as_deref()),
            jute_acls(&t.acl),
            t.parent_cversion
        ),
        TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => {
            zkd_proto::jute::to_string_escape(&t.path)
        }
        TxnBody::SetData(t) => format!(
            "{},{},{}",
            zkd_proto::jute::to_string_escape(&t.path),
            jute_buffer(t.data.as_deref()),
            t.version
        ),
        TxnBody::SetAcl(t) => format!(
            "{},{},{}",
            zkd_proto::jute::to_string_escape(&t.path),
            jute_acls(&t.acl),
            t.version
        ),
        TxnBody::Check(t) => format!(
            "{},{}",
            zkd_proto::jute::to_string_escape(&t.path),
            t.version
        ),
        TxnBody::CreateSession(t) => t.time_out.to_string(),
        TxnBody::CloseSession(t) => {
            let paths: Vec<String> = t
                .paths_to_delete
                .iter()
                .map(|p| zkd_proto::jute::to_string_escape(p))
                .collect();
            format!("v{{{}}}", paths.join(","))
        }
        TxnBody::Error(t) => t.err.to_string(),
        TxnBody::Multi(subs) => subs
            .iter()
            .map(|(ty, b)| format!("{}:{}", op_name(*ty), body_text(b)))
            .collect::<Vec<_>>()
            .join(";"),
    }
}

/// Adds the type-specific fields of a txn body to a JSON object.
fn body_json(j: Json, body: &TxnBody) -> Json {
    match body {
        TxnBody::Create(t) | TxnBody::Create2(t) => j
            .str("path", &t.path)
            .data(t.data.as_deref())
            .acl(&t.acl)
            .bool("ephemeral", t.ephemeral)
            .num("parent_cversion", t.parent_cversion),
        TxnBody::CreateTtl(t) => j
            .str("path", &t.path)
            .data(t.data.as_deref())
            .acl(&t.acl)
            .num("parent_cversion", t.parent_cversion)
            .num("ttl", t.ttl),
        TxnBody::CreateContainer(t) => j
            .str("path", &t.path)
            .data(t.data.as_deref())
            .acl(&t.acl)
            .num("parent_cversion", t.parent_cversion),
        TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => j.str("path", &t.path),
        TxnBody::SetData(t) => j
            .str("path", &t.path)
            .data(t.data.as_deref())
            .num("version", t.version),
        TxnBody::SetAcl(t) => j.str("path", &t.path).acl(&t.acl).num("version", t.version),
        TxnBody::Check(t) => j.str("path", &t.path).num("version", t.version),
        TxnBody::CreateSession(t) => j.num("timeout", t.time_out),
        TxnBody::CloseSession(t) => {
            let paths: Vec<String> = t.paths_to_delete.iter().map(|p| json_str(p)).collect();
            j.raw("paths_to_delete", &format!("[{}]", paths.join(",")))
        }
        TxnBody::Error(t) => j.num("err", t.err),
        TxnBody::Multi(subs) => {
            let items: Vec<String> = subs
                .iter()
                .map(|(ty, b)| body_json(Json::new().str("type", &op_name(*ty)), b).finish())
                .collect();
            j.raw("txns", &format!("[{}]", items.join(",")))
        }
    }
}

// ---------------------------------------------------------------------------
// dump-log
// ---------------------------------------------------------------------------

/// `zkd dump-log FILE [--json]`: every record of one zkd log segment. Returns an error
/// (after printing every readable record) when the header is not a zkd segment's, when
/// the file ends in a torn or corrupt record, or when a payload does not decode as a txn.
pub fn dump_log(path: &Path, json: bool, out: &mut dyn Write) -> Result<(), ToolError> {
    let name = path.display();
    let backend = FileBackend::new();
    let dump = stools::dump_segment(&backend, path, LogOptions::default().max_record_bytes)
        .map_err(|e| failed(e.to_string()))?;
    match &dump.header {
        HeaderState::Ok => {}
        HeaderState::Blank => {
            return Err(failed(format!(
                "{name} at offset 0: blank segment header ({} bytes, all zero): an empty segment left by a crash, no records",
                dump.file_len
            )))
        }
        HeaderState::Bad(reason) => {
            return Err(failed(format!("{name} at offset 0: {reason}")));
        }
    }
    if !json {
        writeln!(
            out,
            "zkd txn log segment {name} format version {} ({} bytes)",
            zkd_storage::txnlog::FORMAT_VERSION,
            dump.file_len
        )?;
    }
    let mut undecodable = Vec::new();
    for rec in &dump.records {
        match TxnEntry::from_bytes(&rec.payload) {
            Ok(entry) => {
                let h = &entry.header;
                if json {
                    let j = Json::new()
                        .id("zxid", rec.zxid)
                        .num("offset", rec.offset)
                        .num("time", h.time)
                        .id("session", h.client_id)
                        .num("cxid", h.cxid)
                        .str("type", &op_name(h.txn_type));
                    let j = if h.zxid != rec.zxid {
                        j.id("header_zxid", h.zxid)
                    } else {
                        j
                    };
                    writeln!(out, "{}", body_json(j, &entry.body).finish())?;
                } else {
                    let mismatch = if h.zxid != rec.zxid {
                        format!(" (record zxid {:#x})", rec.zxid)
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "offset {}: {} session {:#x} cxid {:#x} zxid {:#x}{} {} {}",
                        rec.offset,
                        txn_time(h.time),
                        h.client_id,
                        i64::from(h.cxid),
                        h.zxid,
                        mismatch,
                        op_name(h.txn_type),
                        body_text(&entry.body)
                    )?;
                }
                if h.zxid != rec.zxid {
                    undecodable.push(format!(
                        "{name} at offset {}: txn header says zxid {:#x} but the record is zxid {:#x}",
                        rec.offset, h.zxid, rec.zxid
                    ));
                }
            }
            Err(e) => {
                let msg = format!(
                    "{name} at offset {}: zxid {:#x}: payload ({} bytes) is not a txn: {e}",
                    rec.offset,
                    rec.zxid,
                    rec.payload.len()
                );
                if json {
                    let j = Json::new()
                        .id("zxid", rec.zxid)
                        .num("offset", rec.offset)
                        .str("error", &e.to_string())
                        .str("payload", &hex(&rec.payload));
                    writeln!(out, "{}", j.finish())?;
                } else {
                    writeln!(out, "offset {}: UNDECODABLE {msg}", rec.offset)?;
                }
                undecodable.push(msg);
            }
        }
    }
    let n = dump.records.len();
    match &dump.end {
        ScanEnd::Eof | ScanEnd::ZeroTail { .. } => {
            if !json {
                writeln!(out, "EOF reached after {n} txns.")?;
            }
        }
        ScanEnd::Bad {
            offset,
            reason,
            torn,
        } => {
            let what = if *torn {
                "torn tail (an interrupted final write: start-up cuts it if this is the newest segment, otherwise refuses)"
            } else {
                "corrupt record"
            };
            return Err(failed(format!(
                "{name} at offset {offset}: {what}: {reason} (after {n} good txns)"
            )));
        }
    }
    match undecodable.len() {
        0 => Ok(()),
        1 => Err(failed(undecodable.remove(0))),
        k => Err(failed(format!(
            "{} (and {} more bad txns)",
            undecodable[0],
            k - 1
        ))),
    }
}

// ---------------------------------------------------------------------------
// dump-snapshot
// ---------------------------------------------------------------------------

/// Which container a snapshot came in.
enum SnapshotKind {
    /// zkd's `ZKDS` container; the header's zxid and whether it was compressed.
    Zkd { zxid: i64, flags: u32, stored: u64 },
    /// A bare ZooKeeper snapshot; the zxid from its file name, if it follows ZooKeeper's
    /// `snapshot.<hex>` naming.
    ZooKeeper { name_zxid: Option<i64> },
}

/// `snapshot.<hex zxid>` as ZooKeeper names them (no fixed width).
fn zk_name_zxid(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_prefix("snapshot.")?;
    u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
}

/// Reads a snapshot file of either kind into its ZooKeeper-format body.
fn load_snapshot(path: &Path) -> Result<(SnapshotKind, LoadedSnapshot), ToolError> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| failed(format!("read {name}: {e}")))?;
    let (kind, body) = if bytes.starts_with(zsnap::MAGIC) {
        let (header, body) = zsnap::decode(&bytes)
            .map_err(|reason| failed(format!("{name}: corrupt zkd snapshot: {reason}")))?;
        (
            SnapshotKind::Zkd {
                zxid: header.zxid,
                flags: header.flags,
                stored: header.payload_len,
            },
            body,
        )
    } else if bytes.starts_with(&SNAP_MAGIC.to_be_bytes()) {
        (
            SnapshotKind::ZooKeeper {
                name_zxid: zk_name_zxid(path),
            },
            bytes,
        )
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(failed(format!(
            "{name}: gzip-compressed snapshot; decompress it first (gunzip -c) and dump the result"
        )));
    } else {
        return Err(failed(format!(
            "{name} at offset 0: neither a zkd snapshot (magic \"ZKDS\") nor an Apache ZooKeeper snapshot (magic \"ZKSN\")"
        )));
    };
    let where_ = match kind {
        SnapshotKind::Zkd { .. } => " (offset within the decompressed payload)",
        SnapshotKind::ZooKeeper { .. } => "",
    };
    let loaded =
        deserialize_snapshot_full(&body).map_err(|e| failed(format!("{name}: {e}{where_}")))?;
    Ok((kind, loaded))
}

/// Every path of the tree, parents before children, children sorted.
fn walk(tree: &DataTree) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![ROOT.to_string()];
    while let Some(path) = stack.pop() {
        let Some(node) = tree.get(&path) else {
            continue;
        };
        let mut children: Vec<&str> = tree.child_names(&node).collect();
        children.sort();
        for c in children.into_iter().rev() {
            stack.push(if path == ROOT {
                format!("/{c}")
            } else {
                format!("{path}/{c}")
            });
        }
        out.push(path);
    }
    out
}

fn perms_text(p: i32) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ] {
        if p & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// Up to 64 bytes of data: quoted text when printable UTF-8, else hex.
fn data_preview(data: Option<&[u8]>) -> String {
    const MAX: usize = 64;
    let Some(d) = data else {
        return "null".into();
    };
    let shown = &d[..d.len().min(MAX)];
    let more = if d.len() > MAX { "..." } else { "" };
    match std::str::from_utf8(shown) {
        Ok(text) if !text.chars().any(|c| c.is_control()) => format!("{text:?}{more}"),
        _ => format!("#{}{more}", hex(shown)),
    }
}

/// `zkd dump-snapshot FILE [--json]`: a zkd snapshot or an Apache ZooKeeper one.
pub fn dump_snapshot(path: &Path, json: bool, out: &mut dyn Write) -> Result<(), ToolError> {
    let (kind, snap) = load_snapshot(path)?;
    let tree = &snap.tree;
    let zxid = match kind {
        SnapshotKind::Zkd { zxid, .. } => Some(zxid),
        SnapshotKind::ZooKeeper { name_zxid } => name_zxid,
    };
    if json {
        let j = Json::new()
            .str("kind", "snapshot")
            .str("file", &path.to_string_lossy())
            .str(
                "format",
                match kind {
                    SnapshotKind::Zkd { .. } => "zkd",
                    SnapshotKind::ZooKeeper { .. } => "zookeeper",
                },
            );
        let j = match zxid {
            Some(z) => j.id("zxid", z),
            None => j.raw("zxid", "null"),
        };
        let j = j
            .num("nodes", tree.node_count())
            .num("sessions", snap.sessions.len());
        let j = match snap.digest {
            Some(d) => j
                .id("digest_zxid", d.zxid)
                .num("digest", d.digest)
                .num("digest_version", d.digest_version),
            None => j,
        };
        writeln!(out, "{}", j.finish())?;
        for s in &snap.sessions {
            let j = Json::new()
                .str("kind", "session")
                .id("id", s.id)
                .num("timeout", s.timeout_ms)
                .num("ephemerals", tree.ephemerals_of(s.id).len());
            writeln!(out, "{}", j.finish())?;
        }
        for p in walk(tree) {
            let Some(n) = tree.get(&p) else { continue };
            let st = &n.stat;
            let j = Json::new()
                .str("kind", "znode")
                .str("path", &p)
                .id("czxid", st.czxid)
                .id("mzxid", st.mzxid)
                .id("pzxid", st.pzxid)
                .num("ctime", st.ctime)
                .num("mtime", st.mtime)
                .num("version", st.version)
                .num("cversion", st.cversion)
                .num("aversion", st.aversion)
                .id("ephemeral_owner", st.ephemeral_owner)
                .num("num_children", n.num_children())
                .num("data_length", n.data_len())
                .data(n.data())
                .acl(&n.acl);
            writeln!(out, "{}", j.finish())?;
        }
        return Ok(());
    }

    let name = path.display();
    match kind {
        SnapshotKind::Zkd {
            zxid,
            flags,
            stored,
        } => writeln!(
            out,
            "zkd snapshot {name}: zxid {zxid:#x}, {stored} payload bytes{}, CRC ok",
            if flags & zsnap::FLAG_LZ4 != 0 {
                " (lz4)"
            } else {
                ""
            }
        )?,
        SnapshotKind::ZooKeeper { name_zxid } => writeln!(
            out,
            "Apache ZooKeeper snapshot {name}: zxid {} (from the file name), version {}, dbid {}",
            name_zxid.map_or("unknown".into(), |z| format!("{z:#x}")),
            snap.header.version,
            snap.header.dbid
        )?,
    }
    writeln!(out, "Session Details (sid, timeout, ephemeralCount):")?;
    for s in &snap.sessions {
        writeln!(
            out,
            "{:#016x}, {}, {}",
            s.id,
            s.timeout_ms,
            tree.ephemerals_of(s.id).len()
        )?;
    }
    writeln!(out, "ZNode Details (count={}):", tree.node_count())?;
    for p in walk(tree) {
        let Some(n) = tree.get(&p) else { continue };
        let st = &n.stat;
        writeln!(out, "----")?;
        writeln!(out, "{p}")?;
        writeln!(out, "  cZxid = {:#016x}", st.czxid)?;
        writeln!(out, "  ctime = {}", date_string(st.ctime))?;
        writeln!(out, "  mZxid = {:#016x}", st.mzxid)?;
        writeln!(out, "  mtime = {}", date_string(st.mtime))?;
        writeln!(out, "  pZxid = {:#016x}", st.pzxid)?;
        writeln!(out, "  cversion = {}", st.cversion)?;
        writeln!(out, "  dataVersion = {}", st.version)?;
        writeln!(out, "  aclVersion = {}", st.aversion)?;
        writeln!(out, "  ephemeralOwner = {:#016x}", st.ephemeral_owner)?;
        writeln!(out, "  dataLength = {}", n.data_len())?;
        writeln!(out, "  data = {}", data_preview(n.data()))?;
        let acl: Vec<String> = n
            .acl
            .iter()
            .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, perms_text(a.perms)))
            .collect();
        writeln!(out, "  acl = {}", acl.join(", "))?;
    }
    writeln!(out, "----")?;
    if let Some(d) = snap.digest {
        writeln!(out, "Target zxid digest is: {:x}, {}", d.zxid, d.digest)?;
    }
    if let Some(z) = snap.last_processed_zxid {
        writeln!(out, "Last processed zxid (trailer): {z:#x}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------

/// `zkd verify`: storage-level checks ([`zkd_storage::tools::verify`]) plus decoding every
/// txn and every snapshot body, which the storage layer cannot do (a record with a good
/// CRC whose payload is not a txn would stop start-up just the same).
pub fn verify(dirs: &DataDirs, out: &mut dyn Write) -> Result<(), ToolError> {
    let backend = FileBackend::new();
    let snap_dir = snapshot_dir(&dirs.data_dir);
    let log_dir = segment_dir(&dirs.data_log_dir);
    // A typo'd directory must not read as "clean".
    if !snap_dir.is_dir() && !log_dir.is_dir() {
        return Err(failed(format!(
            "neither {} nor {} exists: no zkd data here",
            snap_dir.display(),
            log_dir.display()
        )));
    }
    let report = stools::verify(&backend, &dirs.data_dir, &dirs.data_log_dir)
        .map_err(|e| failed(e.to_string()))?;
    let mut problems: Vec<stools::Problem> = report.problems.clone();
    let error = |path: &Path, offset: Option<u64>, message: String| stools::Problem {
        severity: Severity::Error,
        path: path.to_path_buf(),
        offset,
        message,
    };

    let max = LogOptions::default().max_record_bytes;
    for seg in &report.segments {
        let mut bad = 0;
        if let Ok(dump) = stools::dump_segment(&backend, &seg.path, max) {
            for rec in &dump.records {
                match TxnEntry::from_bytes(&rec.payload) {
                    Ok(e) if e.header.zxid == rec.zxid => {}
                    Ok(e) => {
                        bad += 1;
                        problems.push(error(
                            &seg.path,
                            Some(rec.offset),
                            format!(
                                "txn header says zxid {:#x} but the record is zxid {:#x}",
                                e.header.zxid, rec.zxid
                            ),
                        ))
                    }
                    Err(e) => {
                        bad += 1;
                        problems.push(error(
                            &seg.path,
                            Some(rec.offset),
                            format!("zxid {:#x}: payload is not a txn: {e}", rec.zxid),
                        ))
                    }
                }
            }
        }
        writeln!(
            out,
            "segment {}: zxid {:#x} to {:#x}, {} bytes of records{}",
            seg.path.display(),
            seg.first_zxid,
            seg.last_zxid,
            seg.data_len,
            if bad > 0 {
                format!(", {bad} undecodable")
            } else {
                String::new()
            }
        )?;
    }
    for (zxid, path, ok) in &report.snapshots {
        let status = if !ok {
            "CORRUPT".to_string()
        } else {
            match load_snapshot(path) {
                Ok((_, snap)) => format!(
                    "ok, {} znodes, {} sessions",
                    snap.tree.node_count(),
                    snap.sessions.len()
                ),
                Err(e) => {
                    problems.push(error(path, None, format!("{e}")));
                    "CORRUPT body".to_string()
                }
            }
        };
        writeln!(out, "snapshot {}: zxid {zxid:#x}, {status}", path.display())?;
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    writeln!(
        out,
        "checked {} segments and {} snapshots: {} errors, {} warnings",
        report.segments.len(),
        report.snapshots.len(),
        errors,
        problems.len() - errors
    )?;
    if errors > 0 {
        let first = problems
            .iter()
            .find(|p| p.severity == Severity::Error)
            .map(|p| p.to_string())
            .unwrap_or_default();
        return Err(failed(format!(
            "verify found {errors} errors; first: {first}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// truncate-log
// ---------------------------------------------------------------------------

/// What truncation would do to one segment.
struct SegmentPlan {
    path: PathBuf,
    file_len: u64,
    /// Whole file goes (its first zxid is above the target).
    remove: bool,
    /// Records above the target: (offset, zxid).
    above: Vec<(u64, i64)>,
    /// Damage (offset, reason) that the cut would also drop.
    damage: Option<(u64, String)>,
}

fn plan_truncation(data_log_dir: &Path, zxid: i64) -> Result<Vec<SegmentPlan>, ToolError> {
    let backend = FileBackend::new();
    let dir = segment_dir(data_log_dir);
    if !dir.is_dir() {
        return Err(failed(format!(
            "{}: no zkd txn log directory here",
            dir.display()
        )));
    }
    let max = LogOptions::default().max_record_bytes;
    let mut plans = Vec::new();
    for (first, path) in list_segments(&backend, &dir).map_err(|e| failed(e.to_string()))? {
        let dump = stools::dump_segment(&backend, &path, max).map_err(|e| failed(e.to_string()))?;
        let damage = match dump.end {
            ScanEnd::Bad { offset, reason, .. } => Some((offset, reason)),
            _ => match dump.header {
                HeaderState::Bad(reason) => Some((0, reason)),
                _ => None,
            },
        };
        plans.push(SegmentPlan {
            remove: first > zxid,
            above: dump
                .records
                .iter()
                .filter(|r| r.zxid > zxid)
                .map(|r| (r.offset, r.zxid))
                .collect(),
            damage,
            file_len: dump.file_len,
            path,
        });
    }
    Ok(plans)
}

fn describe_records(above: &[(u64, i64)]) -> String {
    match (above.first(), above.last()) {
        (Some(f), Some(l)) => format!("{} records (zxid {:#x} to {:#x})", above.len(), f.1, l.1),
        _ => "no readable records".into(),
    }
}

/// Snapshots above the cut still hold the later state and recovery starts from the newest
/// valid one, so a cut meant as a roll-back would not take effect. ZooKeeper's TRUNC
/// deletes them; this tool only names them (they sit in dataDir, which it was not given,
/// so only the common dataDir = dataLogDir layout is checked) and leaves the decision to
/// the operator.
fn warn_newer_snapshots(dir: &Path, zxid: i64, out: &mut dyn Write) -> Result<(), ToolError> {
    let snap_dir = snapshot_dir(dir);
    if !snap_dir.is_dir() {
        return Ok(());
    }
    let Ok(snaps) = list_snapshots(&FileBackend::new(), &snap_dir) else {
        return Ok(());
    };
    for s in snaps.iter().filter(|s| s.zxid > zxid) {
        writeln!(
            out,
            "warning: snapshot {} is above zxid {zxid:#x}: start-up recovers from the newest snapshot, so move it away if the cut is meant to roll the state back",
            s.path.display()
        )?;
    }
    Ok(())
}

/// `zkd truncate-log --data-log-dir L ZXID [--yes]`: drop every record above ZXID from
/// the log of a stopped server. Without `yes` it only prints what it would remove and
/// returns an error, so that a forgotten flag never reads as "repaired" to a script.
/// (ZooKeeper's toolkit asks interactively instead; a flag works without a terminal.)
pub fn truncate_log(
    data_log_dir: &Path,
    zxid: i64,
    yes: bool,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let plans = plan_truncation(data_log_dir, zxid)?;
    let verb = if yes { "removed" } else { "would remove" };
    let touched: Vec<&SegmentPlan> = plans
        .iter()
        .filter(|p| p.remove || !p.above.is_empty() || p.damage.is_some())
        .collect();
    if touched.is_empty() {
        writeln!(out, "nothing above zxid {zxid:#x}: the log is unchanged")?;
        return Ok(());
    }
    if yes {
        let backend = FileBackend::new();
        stools::truncate_log(&backend, data_log_dir, zxid).map_err(|e| failed(e.to_string()))?;
    }
    for p in touched {
        let damage = p
            .damage
            .as_ref()
            .map(|(o, r)| format!(", and damaged bytes from offset {o} ({r})"))
            .unwrap_or_default();
        if p.remove {
            writeln!(
                out,
                "{verb} file {} ({} bytes): {}{damage}",
                p.path.display(),
                p.file_len,
                describe_records(&p.above)
            )?;
        } else {
            let cut = p
                .above
                .first()
                .map(|a| a.0)
                .or(p.damage.as_ref().map(|d| d.0))
                .unwrap_or(p.file_len);
            writeln!(
                out,
                "{verb} from {} at offset {cut}: {}{damage}",
                p.path.display(),
                describe_records(&p.above)
            )?;
        }
    }
    if !yes {
        warn_newer_snapshots(data_log_dir, zxid, out)?;
        return Err(failed(format!(
            "nothing changed: re-run with --yes to truncate the log in {} to zxid {zxid:#x} (stop the server first)",
            segment_dir(data_log_dir).display()
        )));
    }
    writeln!(out, "the log now ends at or below zxid {zxid:#x}")?;
    warn_newer_snapshots(data_log_dir, zxid, out)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// purge
// ---------------------------------------------------------------------------

/// `zkd purge`: keep the newest `retain` valid snapshots (at least 3, as PurgeTxnLog) and
/// the log segments needed to replay from the oldest of them; delete the rest.
pub fn purge(dirs: &DataDirs, retain: Option<usize>, out: &mut dyn Write) -> Result<(), ToolError> {
    let retain = retain
        .or(dirs.snap_retain_count)
        .unwrap_or(zkd_storage::purge::MIN_RETAIN);
    if retain < zkd_storage::purge::MIN_RETAIN {
        return Err(ToolError::Usage(format!(
            "-n {retain}: at least {} snapshots must be kept",
            zkd_storage::purge::MIN_RETAIN
        )));
    }
    let snap_dir = snapshot_dir(&dirs.data_dir);
    // SnapStore::open would create the directory: refuse rather than invent a data dir.
    if !snap_dir.is_dir() {
        return Err(failed(format!(
            "{}: no zkd snapshot directory here",
            snap_dir.display()
        )));
    }
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::new());
    let report = zkd_storage::purge(backend.clone(), &dirs.data_dir, &dirs.data_log_dir, retain)
        .map_err(|e| failed(e.to_string()))?;
    for p in report.snapshots.iter().chain(&report.segments) {
        writeln!(out, "deleted {}", p.display())?;
    }
    let kept = list_snapshots(&*backend, &snap_dir).map_err(|e| failed(e.to_string()))?;
    if report.snapshots.is_empty() && report.segments.is_empty() {
        writeln!(
            out,
            "nothing to delete: {} snapshots present, keeping the newest {retain} valid ones",
            kept.len()
        )?;
    } else {
        writeln!(
            out,
            "deleted {} snapshots and {} log segments; {} snapshots kept",
            report.snapshots.len(),
            report.segments.len(),
            kept.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(txn_time(0), "1/1/70 12:00:00 AM UTC");
        assert_eq!(date_string(0), "Thu Jan 01 00:00:00 UTC 1970");
        // 2026-11-27T03:04:05Z
        assert_eq!(txn_time(1_795_748_645_000), "11/27/26 3:04:05 AM UTC");
        assert_eq!(
            date_string(1_795_752_457_607),
            "Fri Nov 27 04:07:37 UTC 2026"
        );
        // Extremes must not panic.
        let _ = txn_time(i64::MIN);
        let _ = date_string(i64::MAX);
    }

    #[test]
    fn zxids() {
        assert_eq!(parse_zxid("0x1f").unwrap(), 31);
        assert_eq!(parse_zxid("0X1F").unwrap(), 31);
        assert_eq!(parse_zxid("42").unwrap(), 42);
        assert!(parse_zxid("0xzz").is_err());
        assert!(parse_zxid("-1").is_err());
        assert!(parse_zxid("0xffffffffffffffff").is_err());
        assert!(parse_zxid("").is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        assert_eq!(
            zkd_proto::jute::to_string_escape("/a,b}%\n"),
            "'/a%2Cb%7D%25%0A"
        );
        assert_eq!(jute_buffer(Some(&[0, 0xab])), "#00ab");
        assert_eq!(jute_buffer(None), "");
        assert_eq!(jute_acls(&Acl::open_unsafe()), "v{s{31,s{'world,'anyone}}}");
    }
}
