//! The offline tools of the `zkd` binary (dump-log, dump-snapshot, verify, truncate-log,
//! purge) run as a user runs them, on data directories built with the zkd-storage API,
//! plus the ZooKeeper 3.8 snapshot fixture; and the server start-up spellings next to the
//! subcommands. Bad input must give a non-zero exit and a message, never a panic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zkd_proto::records::{Acl, Id};
use zkd_proto::txn::{
    CloseSessionTxn, CreateSessionTxn, CreateTtlTxn, CreateTxn, DeleteTxn, SetDataTxn, TxnBody,
    TxnEntry, TxnHeader,
};
use zkd_server::tree::snapshot::SnapshotSession;
use zkd_server::tree::DataTree;
use zkd_storage::{Backend, FileBackend, LogOptions, SnapStore, TxnLog};

const SESSION: i64 = 0x1a2b;
/// 2026-11-27T03:04:05Z.
const TIME: i64 = 1_795_748_645_000;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("zkd-tools-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn create(path: &str, data: &[u8], ephemeral: bool) -> TxnBody {
    TxnBody::Create(CreateTxn {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open_unsafe(),
        ephemeral,
        parent_cversion: 1,
    })
}

fn set_data(path: &str, data: &[u8], version: i32) -> TxnBody {
    TxnBody::SetData(SetDataTxn {
        path: path.into(),
        data: Some(data.to_vec()),
        version,
    })
}

/// The txns of the test log, zxid 1.. in order.
fn txns() -> Vec<TxnBody> {
    vec![
        TxnBody::CreateSession(CreateSessionTxn { time_out: 30000 }),
        create("/app", b"hello", false),
        create("/app/eph", b"e", true),
        set_data("/app", b"v2", 1),
        TxnBody::Multi(vec![
            (1, create("/m1", b"x", false)),
            (5, set_data("/m1", b"y", 1)),
            (1, create("/m2", b"", false)),
        ]),
        TxnBody::Delete(DeleteTxn { path: "/m2".into() }),
        TxnBody::Create2(CreateTxn {
            path: "/odd".into(),
            data: Some(b"a,b\n\"q\"\x00".to_vec()),
            acl: vec![Acl {
                perms: 1,
                id: Id {
                    scheme: "digest".into(),
                    id: "alice:x".into(),
                },
            }],
            ephemeral: false,
            parent_cversion: 2,
        }),
        TxnBody::CreateTtl(CreateTtlTxn {
            path: "/ttl".into(),
            data: None,
            acl: Acl::open_unsafe(),
            parent_cversion: 3,
            ttl: 60_000,
        }),
        TxnBody::CloseSession(CloseSessionTxn {
            paths_to_delete: vec!["/app/eph".into()],
        }),
        set_data("/m1", b"last", 2),
    ]
}

fn entry(zxid: i64, body: TxnBody) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: SESSION,
            cxid: zxid as i32,
            zxid,
            time: TIME + zxid,
            txn_type: body.txn_type(),
        },
        body,
    }
}

/// A data dir (also the dataLogDir) with segments log.1 (zxid 1-4), log.5 (5-8) and
/// log.9 (9-10), and snapshots at zxids 2, 4, 8 and 10.
struct Data {
    _tmp: TempDir,
    dir: PathBuf,
    segments: Vec<PathBuf>,
}

fn build(name: &str) -> Data {
    let tmp = TempDir::new(name);
    let dir = tmp.0.join("data");
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::new());
    let opts = LogOptions {
        pre_alloc_bytes: 4096,
        ..LogOptions::default()
    };
    let (log, _) = TxnLog::open(backend.clone(), &dir, opts).unwrap();
    let snaps = SnapStore::open(backend.clone(), &dir, false).unwrap();
    let mut tree = DataTree::new();
    let mut sessions = vec![];
    for (i, body) in txns().into_iter().enumerate() {
        let zxid = i as i64 + 1;
        let e = entry(zxid, body);
        log.append(zxid, &e.to_bytes()).unwrap();
        tree.process_txn(&e.header, &e.body, &mut Vec::new());
        match &e.body {
            TxnBody::CreateSession(s) => sessions.push(SnapshotSession {
                id: SESSION,
                timeout_ms: s.time_out,
            }),
            TxnBody::CloseSession(_) => sessions.clear(),
            _ => {}
        }
        if [2, 4, 8, 10].contains(&zxid) {
            log.sync().unwrap();
            let mut payload = Vec::new();
            tree.serialize_snapshot(&sessions, &mut payload);
            snaps.write(zxid, &payload).unwrap();
        }
        if zxid == 4 || zxid == 8 {
            log.roll().unwrap();
        }
    }
    log.sync().unwrap();
    let segments = log.segments().into_iter().map(|s| s.path).collect();
    Data {
        _tmp: tmp,
        dir,
        segments,
    }
}

fn zkd(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_zkd"))
        .args(args)
        .env_remove("ZKD_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "zkd {args:?} panicked: {stderr}"
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn snapshot_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("zkd-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// A tiny JSON reader, enough to check that every output line is valid JSON.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn parse_json(text: &str) -> Result<J, String> {
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    let v = value(&b, &mut i)?;
    ws(&b, &mut i);
    if i != b.len() {
        return Err(format!("trailing text at {i}"));
    }
    Ok(v)
}

fn ws(b: &[char], i: &mut usize) {
    while *i < b.len() && b[*i].is_whitespace() {
        *i += 1;
    }
}

fn lit(b: &[char], i: &mut usize, word: &str, v: J) -> Result<J, String> {
    let w: Vec<char> = word.chars().collect();
    if b.get(*i..*i + w.len()) == Some(&w[..]) {
        *i += w.len();
        Ok(v)
    } else {
        Err(format!("bad literal at {i}"))
    }
}

fn string(b: &[char], i: &mut usize) -> Result<String, String> {
    *i += 1; // opening quote
    let mut out = String::new();
    loop {
        let c = *b.get(*i).ok_or("unterminated string")?;
        *i += 1;
        match c {
            '"' => return Ok(out),
            '\\' => {
                let e = *b.get(*i).ok_or("bad escape")?;
                *i += 1;
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let h: String = b.get(*i..*i + 4).ok_or("short \\u")?.iter().collect();
                        *i += 4;
                        let n = u32::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                        out.push(char::from_u32(n).ok_or("bad \\u")?);
                    }
                    _ => return Err(format!("bad escape \\{e}")),
                }
            }
            c if (c as u32) < 0x20 => return Err("raw control character in string".into()),
            c => out.push(c),
        }
    }
}

fn value(b: &[char], i: &mut usize) -> Result<J, String> {
    ws(b, i);
    match b.get(*i).copied().ok_or("unexpected end")? {
        'n' => lit(b, i, "null", J::Null),
        't' => lit(b, i, "true", J::Bool(true)),
        'f' => lit(b, i, "false", J::Bool(false)),
        '"' => string(b, i).map(J::Str),
        '[' => {
            *i += 1;
            let mut items = vec![];
            ws(b, i);
            if b.get(*i) == Some(&']') {
                *i += 1;
                return Ok(J::Arr(items));
            }
            loop {
                items.push(value(b, i)?);
                ws(b, i);
                match b.get(*i) {
                    Some(',') => *i += 1,
                    Some(']') => {
                        *i += 1;
                        return Ok(J::Arr(items));
                    }
                    _ => return Err(format!("expected , or ] at {i}")),
                }
            }
        }
        '{' => {
            *i += 1;
            let mut fields = vec![];
            ws(b, i);
            if b.get(*i) == Some(&'}') {
                *i += 1;
                return Ok(J::Obj(fields));
            }
            loop {
                ws(b, i);
                if b.get(*i) != Some(&'"') {
                    return Err(format!("expected key at {i}"));
                }
                let k = string(b, i)?;
                ws(b, i);
                if b.get(*i) != Some(&':') {
                    return Err(format!("expected : at {i}"));
                }
                *i += 1;
                fields.push((k, value(b, i)?));
                ws(b, i);
                match b.get(*i) {
                    Some(',') => *i += 1,
                    Some('}') => {
                        *i += 1;
                        return Ok(J::Obj(fields));
                    }
                    _ => return Err(format!("expected , or }} at {i}")),
                }
            }
        }
        c if c == '-' || c.is_ascii_digit() => {
            let start = *i;
            while *i < b.len() && matches!(b[*i], '-' | '+' | '.' | 'e' | 'E' | '0'..='9') {
                *i += 1;
            }
            let t: String = b[start..*i].iter().collect();
            t.parse().map(J::Num).map_err(|_| format!("bad number {t}"))
        }
        c => Err(format!("unexpected {c:?} at {i}")),
    }
}

fn json_lines(text: &str) -> Vec<J> {
    text.lines()
        .map(|l| parse_json(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

// ---------------------------------------------------------------------------
// dump-log
// ---------------------------------------------------------------------------

#[test]
fn dump_log_text_lists_every_txn() {
    let d = build("dump-log-text");
    assert_eq!(d.segments.len(), 3, "{:?}", d.segments);
    let mut all = String::new();
    for seg in &d.segments {
        let o = zkd(&["dump-log", s(seg)]);
        assert!(o.status.success(), "{}", stderr(&o));
        all.push_str(&stdout(&o));
    }
    for zxid in 1..=10 {
        assert!(
            all.contains(&format!(" zxid {zxid:#x} ")),
            "zxid {zxid}: {all}"
        );
    }
    let first = all.lines().nth(1).unwrap();
    assert_eq!(
        first,
        "offset 20: 11/27/26 3:04:05 AM UTC session 0x1a2b cxid 0x1 zxid 0x1 createSession 30000"
    );
    for needle in [
        "create '/app,#68656c6c6f,v{s{31,s{'world,'anyone}}},F,1",
        "create '/app/eph,#65,v{s{31,s{'world,'anyone}}},T,1",
        "setData '/app,#7632,1",
        "multi create:'/m1,#78,v{s{31,s{'world,'anyone}}},F,1;setData:'/m1,#79,1;create:'/m2,,v{s{31,s{'world,'anyone}}},F,1",
        "delete '/m2",
        "create2 '/odd,#612c620a22712200,v{s{1,s{'digest,'alice:x}}},F,2",
        "createTTL '/ttl,,v{s{31,s{'world,'anyone}}},3,60000",
        "closeSession v{'/app/eph}",
        "EOF reached after 4 txns.",
        "EOF reached after 2 txns.",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in\n{all}");
    }
}

#[test]
fn dump_log_json_lines_parse() {
    let d = build("dump-log-json");
    let mut lines = vec![];
    for seg in &d.segments {
        let o = zkd(&["dump-log", "--json", s(seg)]);
        assert!(o.status.success(), "{}", stderr(&o));
        lines.extend(json_lines(&stdout(&o)));
    }
    assert_eq!(lines.len(), 10);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.str("zxid"), Some(format!("{:#x}", i + 1).as_str()));
        assert_eq!(l.str("session"), Some("0x1a2b"));
        for key in ["offset", "time", "cxid", "type"] {
            assert!(l.get(key).is_some(), "{key} missing in {l:?}");
        }
    }
    assert_eq!(lines[0].get("offset"), Some(&J::Num(20.0)));
    assert_eq!(lines[0].get("timeout"), Some(&J::Num(30000.0)));
    assert_eq!(lines[1].str("type"), Some("create"));
    assert_eq!(lines[1].str("path"), Some("/app"));
    assert_eq!(lines[1].str("data"), Some("68656c6c6f"));
    assert_eq!(lines[1].str("data_utf8"), Some("hello"));
    assert_eq!(lines[1].get("ephemeral"), Some(&J::Bool(false)));
    let acl = lines[1].get("acl").unwrap();
    assert_eq!(
        acl,
        &J::Arr(vec![J::Obj(vec![
            ("perms".into(), J::Num(31.0)),
            ("scheme".into(), J::Str("world".into())),
            ("id".into(), J::Str("anyone".into())),
        ])])
    );
    let J::Arr(subs) = lines[4].get("txns").unwrap() else {
        panic!("multi without txns: {:?}", lines[4]);
    };
    let types: Vec<_> = subs.iter().map(|t| t.str("type").unwrap()).collect();
    assert_eq!(types, ["create", "setData", "create"]);
    assert_eq!(subs[1].get("version"), Some(&J::Num(1.0)));
    // Escaping round-trips.
    assert_eq!(lines[6].str("data_utf8"), Some("a,b\n\"q\"\u{0}"));
    assert_eq!(lines[7].get("data"), Some(&J::Null));
    assert_eq!(lines[7].get("ttl"), Some(&J::Num(60000.0)));
    assert_eq!(
        lines[8].get("paths_to_delete"),
        Some(&J::Arr(vec![J::Str("/app/eph".into())]))
    );
}

#[test]
fn dump_log_reports_a_torn_tail_after_the_good_records() {
    let d = build("dump-log-torn");
    let last = d.segments.last().unwrap();
    let dump = zkd_storage::tools::dump_segment(&FileBackend::new(), last, 1 << 20).unwrap();
    let end = {
        let r = dump.records.last().unwrap();
        r.offset + 16 + r.payload.len() as u64
    };
    let mut bytes = std::fs::read(last).unwrap();
    bytes.truncate(end as usize);
    // Half a record header: a write interrupted by a crash.
    bytes.extend_from_slice(&[0, 0, 0, 40, 0xde, 0xad]);
    let torn = d.dir.join("torn-segment");
    std::fs::write(&torn, &bytes).unwrap();
    let o = zkd(&["dump-log", s(&torn)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(" zxid 0x9 ") && out.contains(" zxid 0xa "),
        "{out}"
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{} at offset {end}", torn.display())) && err.contains("torn"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

// ---------------------------------------------------------------------------
// dump-snapshot
// ---------------------------------------------------------------------------

#[test]
fn dump_snapshot_of_a_zkd_snapshot() {
    let d = build("dump-snap");
    let snap = d.dir.join("zkd-v1/snapshot.0000000000000004");
    let o = zkd(&["dump-snapshot", s(&snap)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("zkd snapshot {}: zxid 0x4", snap.display())),
        "{out}"
    );
    assert!(out.contains("0x00000000001a2b, 30000, 1"), "{out}");
    for needle in [
        "\n/app\n",
        "\n/app/eph\n",
        "  ephemeralOwner = 0x00000000001a2b",
        "  data = \"v2\"",
        "  dataVersion = 1",
        "  acl = world:anyone:cdrwa",
        "\n/zookeeper/quota\n",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }

    let o = zkd(&["dump-snapshot", "--json", s(&snap)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines[0].str("format"), Some("zkd"));
    assert_eq!(lines[0].str("zxid"), Some("0x4"));
    assert_eq!(lines[1].str("kind"), Some("session"));
    assert_eq!(lines[1].str("id"), Some("0x1a2b"));
    let app = lines
        .iter()
        .find(|l| l.str("path") == Some("/app"))
        .unwrap();
    assert_eq!(app.str("data_utf8"), Some("v2"));
    assert_eq!(app.str("mzxid"), Some("0x4"));
}

#[test]
fn dump_snapshot_of_a_zookeeper_snapshot() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/zk-3.8.0-snapshot/snapshot.2d");
    let o = zkd(&["dump-snapshot", s(&fixture)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("Apache ZooKeeper snapshot"), "{out}");
    assert!(out.contains("zxid 0x2d"), "{out}");
    assert!(out.contains("ZNode Details (count=41):"), "{out}");
    // Every node kazoo saw is listed.
    let expected = std::fs::read_to_string(fixture.with_file_name("expected-tree.txt")).unwrap();
    for line in expected.lines().filter(|l| !l.starts_with('#')) {
        let path = line.split('\t').next().unwrap();
        assert!(out.contains(&format!("----\n{path}\n")), "{path} missing");
    }
    assert!(out.contains("0x100002e0df70001, 20000, 1"), "{out}");
    assert!(out.contains("Target zxid digest is: 2d,"), "{out}");

    let o = zkd(&["dump-snapshot", "--json", s(&fixture)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines[0].str("format"), Some("zookeeper"));
    let znodes = lines
        .iter()
        .filter(|l| l.str("kind") == Some("znode"))
        .count();
    assert_eq!(znodes, 41);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.str("kind") == Some("session"))
            .count(),
        3
    );
}

// ---------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------

#[test]
fn verify_clean_then_bit_flip_in_a_middle_segment() {
    let d = build("verify");
    let o = zkd(&["verify", "--data-dir", s(&d.dir)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for seg in &d.segments {
        assert!(out.contains(&format!("segment {}", seg.display())), "{out}");
    }
    assert_eq!(out.matches("\nsnapshot ").count(), 4, "{out}");
    assert!(out.contains("0 errors"), "{out}");

    // Flip a bit in the payload of the second record of log.5 (not the last segment).
    let victim = &d.segments[1];
    let dump = zkd_storage::tools::dump_segment(&FileBackend::new(), victim, 1 << 20).unwrap();
    let rec = &dump.records[1];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[(rec.offset + 16 + 3) as usize] ^= 0x04;
    std::fs::write(victim, &bytes).unwrap();

    let o = zkd(&[
        "verify",
        "--data-dir",
        s(&d.dir),
        "--data-log-dir",
        s(&d.dir),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let needle = format!("{} at offset {}", victim.display(), rec.offset);
    assert!(stdout(&o).contains(&needle), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains(&needle) && err.contains("CRC"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn verify_reads_dirs_from_a_config_and_refuses_a_missing_dir() {
    let d = build("verify-cfg");
    let cfg = d.dir.parent().unwrap().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!("dataDir={}\nclientPort=2181\n", d.dir.display()),
    )
    .unwrap();
    let o = zkd(&["verify", s(&cfg)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let o = zkd(&["verify", "--data-dir", "/nonexistent/zkd-data"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/zkd-data"),
        "{}",
        stderr(&o)
    );
    // Neither config nor --data-dir: a usage error.
    let o = zkd(&["verify"]);
    assert_eq!(o.status.code(), Some(2));
    // Both: clap refuses.
    let o = zkd(&["verify", s(&cfg), "--data-dir", s(&d.dir)]);
    assert_eq!(o.status.code(), Some(2));
}

// ---------------------------------------------------------------------------
// truncate-log
// ---------------------------------------------------------------------------

#[test]
fn truncate_log_needs_yes_and_then_cuts() {
    let d = build("truncate");
    let before: Vec<Vec<u8>> = d
        .segments
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let o = zkd(&["truncate-log", "--data-log-dir", s(&d.dir), "0x6"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("would remove file {}", d.segments[2].display())),
        "{out}"
    );
    assert!(out.contains("2 records (zxid 0x7 to 0x8)"), "{out}");
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    let after: Vec<Vec<u8>> = d
        .segments
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "a dry run changed files");

    let o = zkd(&["truncate-log", "--data-log-dir", s(&d.dir), "6", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("removed file {}", d.segments[2].display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("removed from {}", d.segments[1].display())),
        "{out}"
    );
    assert!(!d.segments[2].exists());
    // Snapshots above the cut are named, not deleted.
    assert!(
        out.contains("warning: snapshot") && out.contains("snapshot.0000000000000008"),
        "{out}"
    );
    assert!(d.dir.join("zkd-v1/snapshot.0000000000000008").exists());
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::new());
    let (_, rec) = TxnLog::open(backend, &d.dir, LogOptions::default()).unwrap();
    assert_eq!(rec.last_zxid, Some(6));

    // Nothing above: a no-op that succeeds.
    let o = zkd(&["truncate-log", "--data-log-dir", s(&d.dir), "0x10", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing above"));
}

#[test]
fn truncate_log_rejects_bad_zxids() {
    let d = build("truncate-bad");
    for bad in ["0xzz", "-1", "abc", "0x", "99999999999999999999"] {
        let o = zkd(&[
            "truncate-log",
            "--data-log-dir",
            s(&d.dir),
            "--yes",
            "--",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("bad zxid"), "{bad}: {}", stderr(&o));
    }
    let o = zkd(&[
        "truncate-log",
        "--data-log-dir",
        "/nonexistent",
        "5",
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------
// purge
// ---------------------------------------------------------------------------

#[test]
fn purge_keeps_n_snapshots_and_the_logs_they_need() {
    let d = build("purge");
    let o = zkd(&["purge", "--data-dir", s(&d.dir), "-n", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least 3"), "{}", stderr(&o));
    assert_eq!(snapshot_names(&d.dir).len(), 7);

    let o = zkd(&["purge", "--data-dir", s(&d.dir), "-n", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("deleted ") && out.contains("snapshot.0000000000000002"),
        "{out}"
    );
    assert!(out.contains("log.0000000000000001"), "{out}");
    assert_eq!(
        snapshot_names(&d.dir),
        [
            "log.0000000000000005",
            "log.0000000000000009",
            "snapshot.0000000000000004",
            "snapshot.0000000000000008",
            "snapshot.000000000000000a"
        ]
    );

    // Default count (3): nothing more to do.
    let o = zkd(&["purge", "--data-dir", s(&d.dir)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing to delete"), "{}", stdout(&o));

    let o = zkd(&["purge", "--data-dir", "/nonexistent/zkd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!Path::new("/nonexistent/zkd").exists());
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_files_fail_with_one_line_and_no_panic() {
    let tmp = TempDir::new("bad");
    let garbage = tmp.0.join("garbage");
    std::fs::write(&garbage, b"this is not a zkd file at all\n").unwrap();
    let empty = tmp.0.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let d = build("bad-snap");
    let snap = std::fs::read(d.dir.join("zkd-v1/snapshot.000000000000000a")).unwrap();
    let half = tmp.0.join("half-snapshot");
    std::fs::write(&half, &snap[..snap.len() / 2]).unwrap();
    let zk = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/zk-3.8.0-snapshot/snapshot.2d"),
    )
    .unwrap();
    let zk_half = tmp.0.join("snapshot.2d");
    std::fs::write(&zk_half, &zk[..zk.len() / 2]).unwrap();
    let missing = tmp.0.join("missing");

    for (tool, file) in [
        ("dump-log", &missing),
        ("dump-log", &garbage),
        ("dump-log", &empty),
        ("dump-log", &half),
        ("dump-log", &tmp.0),
        ("dump-snapshot", &missing),
        ("dump-snapshot", &garbage),
        ("dump-snapshot", &empty),
        ("dump-snapshot", &half),
        ("dump-snapshot", &zk_half),
        ("dump-snapshot", &tmp.0),
    ] {
        let o = zkd(&[tool, s(file)]);
        assert_eq!(o.status.code(), Some(1), "{tool} {}", file.display());
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{tool} {}: {err}", file.display());
        assert!(
            err.starts_with("zkd: ") && err.contains(s(file)),
            "{tool} {}: {err}",
            file.display()
        );
    }
    let o = zkd(&["dump-snapshot", s(&zk_half)]);
    assert!(stderr(&o).contains("byte "), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------
// Start-up spellings next to the subcommands
// ---------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn srvr(port: u16) -> Option<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(b"srvr").ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    Some(out).filter(|s| !s.is_empty())
}

#[test]
fn positional_and_flag_config_still_start_the_server() {
    let tmp = TempDir::new("serve");
    for flag in [false, true] {
        let port = free_port();
        let cfg = tmp.0.join(format!("zoo-{flag}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n",
                tmp.0.join("data").display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkd"));
        if flag {
            cmd.arg("--config");
        }
        let mut child = cmd
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let served = loop {
            if let Some(out) = srvr(port) {
                break out;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break String::new();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            served.contains("Mode: standalone"),
            "flag={flag}: {served:?}"
        );
    }
    // A config path and a subcommand together are refused, not half-understood.
    let o = zkd(&[s(&tmp.0.join("zoo-false.cfg")), "verify"]);
    assert_eq!(o.status.code(), Some(2));
    let o = zkd(&["--config", s(&tmp.0.join("zoo-false.cfg")), "verify"]);
    assert_eq!(o.status.code(), Some(2));
}
