//! Golden wire tests: every frame that the real Apache ZooKeeper 3.8.0 Java client and
//! server exchanged (captured by tools/golden-capture, format in tests/golden/README.md)
//! must decode with zkd-proto and re-encode to exactly the same bytes.
//!
//! Requests are decoded by the op code in their RequestHeader, replies by the op code of
//! the request they answer (paired by xid on the same connection, checked against the
//! `op=` the fixture records), notifications (xid -1) as WatcherEvent.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use zkd_proto::request::{decode_multi_results, encode_multi_results};
use zkd_proto::{
    Acl, AuthPacket, ConnectRequest, ConnectResponse, Create2Response, CreateResponse,
    ErrorResponse, ExistsResponse, GetAclResponse, GetAllChildrenNumberResponse,
    GetChildren2Response, GetChildrenResponse, GetDataResponse, GetEphemeralsResponse, MultiOp,
    MultiResult, Reader, Record, ReplyHeader, Request, RequestHeader, SetAclResponse,
    SetDataResponse, SyncResponse, WatcherEvent, WhoAmIResponse, Writer,
};

// ---------------------------------------------------------------------------------------
// fixture parsing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Request,
    Reply,
    Event,
}

#[derive(Debug, Clone)]
struct Frame {
    file: String,
    line: usize,
    scenario: String,
    client_to_server: bool,
    kind: Kind,
    conn: u32,
    op: Option<i32>,
    xid: Option<i32>,
    err: Option<i32>,
    bytes: Vec<u8>,
}

impl Frame {
    fn at(&self) -> String {
        format!(
            "{}:{} [{}] {} {:?} op={:?} xid={:?}",
            self.file,
            self.line,
            self.scenario,
            if self.client_to_server { "C>" } else { "S<" },
            self.kind,
            self.op,
            self.xid
        )
    }
    fn body(&self) -> &[u8] {
        &self.bytes[4..]
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("bad hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_fixture(path: &Path) -> Vec<Frame> {
    let text = std::fs::read_to_string(path).expect("read fixture");
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut scenario = String::new();
    let mut frames = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if let Some(s) = line.strip_prefix("## scenario: ") {
            scenario = s.to_string();
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        assert!(toks.len() >= 3, "{file}:{}: malformed line", i + 1);
        let client_to_server = match toks[0] {
            "C>" => true,
            "S<" => false,
            other => panic!("{file}:{}: bad direction {other}", i + 1),
        };
        let kind = match toks[1] {
            "connect" => Kind::Connect,
            "request" => Kind::Request,
            "reply" => Kind::Reply,
            "event" => Kind::Event,
            other => panic!("{file}:{}: bad kind {other}", i + 1),
        };
        let mut f = Frame {
            file: file.clone(),
            line: i + 1,
            scenario: scenario.clone(),
            client_to_server,
            kind,
            conn: 0,
            op: None,
            xid: None,
            err: None,
            bytes: unhex(toks[toks.len() - 1]),
        };
        for kv in &toks[2..toks.len() - 1] {
            let (k, v) = kv.split_once('=').expect("key=value");
            match k {
                "conn" => f.conn = v.parse().unwrap(),
                "op" => f.op = Some(v.parse().unwrap()),
                "xid" => f.xid = Some(v.parse().unwrap()),
                "err" => f.err = Some(v.parse().unwrap()),
                other => panic!("{file}:{}: unknown field {other}", i + 1),
            }
        }
        frames.push(f);
    }
    frames
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

// ---------------------------------------------------------------------------------------
// decoding

/// Decodes one record that must use every remaining byte, and re-encodes it.
fn rt<T: Record>(r: &mut Reader<'_>) -> Result<(T, Vec<u8>), String> {
    let v = T::read(r).map_err(|e| format!("decode {}: {e}", std::any::type_name::<T>()))?;
    if r.remaining() != 0 {
        return Err(format!(
            "{} left {} trailing bytes: {}",
            std::any::type_name::<T>(),
            r.remaining(),
            hex(r.rest())
        ));
    }
    let mut w = Writer::new();
    v.write(&mut w);
    Ok((v, w.into_inner()))
}

/// A decoded reply body, by the op code of the request it answers.
#[derive(Debug)]
#[allow(dead_code)] // some payloads are only decoded, never inspected
enum Reply {
    Empty,
    Create(CreateResponse),
    Create2(Create2Response),
    Exists(ExistsResponse),
    GetData(GetDataResponse),
    SetData(SetDataResponse),
    GetAcl(GetAclResponse),
    SetAcl(SetAclResponse),
    GetChildren(GetChildrenResponse),
    GetChildren2(GetChildren2Response),
    Sync(SyncResponse),
    Multi(Vec<MultiResult>),
    GetEphemerals(GetEphemeralsResponse),
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    AddWatch(ErrorResponse),
    WhoAmI(WhoAmIResponse),
}

/// Decodes a reply body for request op `op` and returns it with its re-encoding.
fn decode_reply(op: i32, err: i32, body: &[u8]) -> Result<(Reply, Vec<u8>), String> {
    let mut r = Reader::new(body);
    let r = &mut r;
    if err != 0 {
        // Apache ZooKeeper answers every failed request with the header alone.
        return if body.is_empty() {
            Ok((Reply::Empty, Vec::new()))
        } else {
            Err(format!("error reply with a {}-byte body", body.len()))
        };
    }
    macro_rules! one {
        ($variant:ident, $ty:ty) => {{
            let (v, b) = rt::<$ty>(r)?;
            (Reply::$variant(v), b)
        }};
    }
    Ok(match op {
        // delete, ping, auth, setWatches, checkWatches, removeWatches, setWatches2, close
        2 | 11 | 100 | 101 | 17 | 18 | 105 | -11 => {
            if !body.is_empty() {
                return Err(format!("expected empty body, got {}", hex(body)));
            }
            (Reply::Empty, Vec::new())
        }
        1 => one!(Create, CreateResponse),
        15 | 19 | 21 => one!(Create2, Create2Response),
        3 => one!(Exists, ExistsResponse),
        4 => one!(GetData, GetDataResponse),
        5 => one!(SetData, SetDataResponse),
        6 => one!(GetAcl, GetAclResponse),
        7 => one!(SetAcl, SetAclResponse),
        8 => one!(GetChildren, GetChildrenResponse),
        12 => one!(GetChildren2, GetChildren2Response),
        9 => one!(Sync, SyncResponse),
        103 => one!(GetEphemerals, GetEphemeralsResponse),
        104 => one!(GetAllChildrenNumber, GetAllChildrenNumberResponse),
        106 => one!(AddWatch, ErrorResponse),
        107 => one!(WhoAmI, WhoAmIResponse),
        14 | 22 => {
            let res = decode_multi_results(r).map_err(|e| format!("decode multi results: {e}"))?;
            if r.remaining() != 0 {
                return Err(format!("multi results left trailing {}", hex(r.rest())));
            }
            let mut w = Writer::new();
            encode_multi_results(&res, &mut w);
            (Reply::Multi(res), w.into_inner())
        }
        other => return Err(format!("no reply decoder for op {other}")),
    })
}

fn prefix_ok(f: &Frame) -> Result<(), String> {
    let n = i32::from_be_bytes(f.bytes[..4].try_into().unwrap());
    if n as usize != f.bytes.len() - 4 {
        return Err(format!(
            "length prefix {n} but {} body bytes",
            f.bytes.len() - 4
        ));
    }
    Ok(())
}

fn same(what: &str, want: &[u8], got: &[u8]) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        Err(format!(
            "{what} re-encoding differs\n   captured: {}\n   encoded:  {}",
            hex(want),
            hex(got)
        ))
    }
}

// ---------------------------------------------------------------------------------------
// decoded values, kept for the assertions that follow the round trips

#[derive(Debug)]
enum Decoded {
    ConnectReq(ConnectRequest),
    ConnectResp(ConnectResponse),
    Req(RequestHeader, Request),
    Rep(ReplyHeader, Reply),
    Event(ReplyHeader, WatcherEvent),
}

struct Checked {
    frame: Frame,
    decoded: Decoded,
}

/// Per connection: request op by xid, and queued ops for replies whose xid was rewritten.
type PendingByConn = (HashMap<i32, i32>, HashMap<i32, VecDeque<i32>>);

fn check_frame(
    f: &Frame,
    seen_handshake: &mut HashMap<(u32, bool), bool>,
    pending: &mut HashMap<u32, PendingByConn>,
) -> Result<Decoded, String> {
    prefix_ok(f)?;
    let body = f.body();
    match f.kind {
        Kind::Connect => {
            let first = seen_handshake
                .insert((f.conn, f.client_to_server), true)
                .is_none();
            if !first {
                return Err("second connect frame on one connection".into());
            }
            let mut r = Reader::new(body);
            if f.client_to_server {
                let (v, b) = rt::<ConnectRequest>(&mut r)?;
                same("ConnectRequest", body, &b)?;
                Ok(Decoded::ConnectReq(v))
            } else {
                let (v, b) = rt::<ConnectResponse>(&mut r)?;
                same("ConnectResponse", body, &b)?;
                Ok(Decoded::ConnectResp(v))
            }
        }
        Kind::Request => {
            let mut r = Reader::new(body);
            let h = RequestHeader::read(&mut r).map_err(|e| format!("RequestHeader: {e}"))?;
            if Some(h.xid) != f.xid || Some(h.op_type) != f.op {
                return Err(format!("header {h:?} disagrees with the fixture fields"));
            }
            let (normal, special) = pending.entry(f.conn).or_default();
            if h.xid >= 0 {
                if normal.insert(h.xid, h.op_type).is_some() {
                    return Err(format!("xid {} reused while pending", h.xid));
                }
            } else {
                special.entry(h.xid).or_default().push_back(h.op_type);
            }
            let req = Request::decode(h.op_type, r.rest())
                .map_err(|e| format!("Request::decode(op {}): {e}", h.op_type))?;
            let enc = req.encode_frame(h.xid);
            same("request frame", &f.bytes, &enc)?;
            Ok(Decoded::Req(h, req))
        }
        Kind::Reply | Kind::Event => {
            let mut r = Reader::new(body);
            let h = ReplyHeader::read(&mut r).map_err(|e| format!("ReplyHeader: {e}"))?;
            if Some(h.xid) != f.xid || Some(h.err) != f.err {
                return Err(format!("header {h:?} disagrees with the fixture fields"));
            }
            let mut hw = Writer::new();
            h.write(&mut hw);
            same("ReplyHeader", &body[..16], &hw.buf)?;
            if f.kind == Kind::Event {
                if h.xid != -1 {
                    return Err("event with xid != -1".into());
                }
                let (ev, b) = rt::<WatcherEvent>(&mut r)?;
                same("WatcherEvent", &body[16..], &b)?;
                return Ok(Decoded::Event(h, ev));
            }
            // Pair with the request, independently of the renderer.
            let (normal, special) = pending.entry(f.conn).or_default();
            let op = if h.xid >= 0 {
                normal.remove(&h.xid)
            } else {
                special.get_mut(&h.xid).and_then(|q| q.pop_front())
            }
            .ok_or_else(|| format!("reply xid {} answers no pending request", h.xid))?;
            if Some(op) != f.op {
                return Err(format!(
                    "paired request op {op} but fixture says {:?}",
                    f.op
                ));
            }
            let (rep, b) = decode_reply(op, h.err, &body[16..])?;
            same("reply body", &body[16..], &b)?;
            Ok(Decoded::Rep(h, rep))
        }
    }
}

fn load_and_check_all() -> (Vec<Checked>, Vec<String>) {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for path in fixture_files() {
        let frames = parse_fixture(&path);
        let mut seen = HashMap::new();
        let mut pending = HashMap::new();
        for f in frames {
            match check_frame(&f, &mut seen, &mut pending) {
                Ok(decoded) => out.push(Checked { frame: f, decoded }),
                Err(e) => failures.push(format!("{}: {e}\n   frame: {}", f.at(), hex(&f.bytes))),
            }
        }
    }
    (out, failures)
}

// ---------------------------------------------------------------------------------------
// tests

#[test]
fn every_frame_round_trips_byte_for_byte() {
    let (checked, failures) = load_and_check_all();
    assert!(
        checked.len() + failures.len() > 100,
        "suspiciously few frames"
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} golden frames failed:\n{}",
            failures.len(),
            checked.len() + failures.len(),
            failures.join("\n")
        );
    }
}

fn in_scenario<'a>(c: &'a [Checked], name: &str) -> Vec<&'a Checked> {
    let v: Vec<_> = c.iter().filter(|x| x.frame.scenario == name).collect();
    assert!(!v.is_empty(), "scenario {name} missing or failed to decode");
    v
}

fn request_in<'a>(c: &'a [Checked], scenario: &str, op: i32) -> &'a Request {
    in_scenario(c, scenario)
        .into_iter()
        .find_map(|x| match &x.decoded {
            Decoded::Req(h, r) if h.op_type == op => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no op {op} request in {scenario}"))
}

fn reply_in<'a>(c: &'a [Checked], scenario: &str, op: i32) -> (&'a ReplyHeader, &'a Reply, usize) {
    in_scenario(c, scenario)
        .into_iter()
        .find_map(|x| match &x.decoded {
            Decoded::Rep(h, r) if x.frame.op == Some(op) => Some((h, r, x.frame.bytes.len())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no op {op} reply in {scenario}"))
}

#[test]
fn handshake_sizes_and_fields() {
    let (c, _) = load_and_check_all();
    let conn = in_scenario(&c, "connect");
    let Decoded::ConnectReq(req) = &conn[0].decoded else {
        panic!("first frame not a ConnectRequest")
    };
    assert_eq!(
        conn[0].frame.bytes.len(),
        49,
        "44 + readOnly byte + 4-byte prefix"
    );
    assert!(req.has_read_only && !req.read_only);
    assert_eq!(
        (req.protocol_version, req.last_zxid_seen, req.session_id),
        (0, 0, 0)
    );
    assert_eq!(req.time_out, 30000);
    assert_eq!(
        req.passwd,
        vec![0u8; 16],
        "first connect sends 16 zero bytes"
    );
    let Decoded::ConnectResp(resp) = &conn[1].decoded else {
        panic!("second frame not a ConnectResponse")
    };
    assert_eq!(conn[1].frame.bytes.len(), 41);
    assert!(resp.has_read_only);
    assert_eq!(resp.passwd.len(), 16);
    assert_ne!(resp.session_id, 0);

    // The reconnect carries the session id and password back.
    let re = in_scenario(&c, "reconnect_set_watches");
    let Decoded::ConnectReq(req2) = &re[0].decoded else {
        panic!("reconnect without ConnectRequest")
    };
    assert_eq!(req2.session_id, resp.session_id);
    assert_eq!(req2.passwd, resp.passwd);
    assert!(req2.last_zxid_seen > 0);
}

#[test]
fn creates_decode_as_expected() {
    let (c, _) = load_and_check_all();
    let Request::Create { op, req } = request_in(&c, "create_persistent", 1) else {
        panic!()
    };
    assert_eq!(*op as i32, 1);
    assert_eq!(req.path, "/golden");
    assert_eq!(req.data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(req.acl, Acl::open_unsafe());
    assert_eq!(req.flags, 0);
    let (_, Reply::Create(r), _) = reply_in(&c, "create_persistent", 1) else {
        panic!()
    };
    assert_eq!(r.path, "/golden");

    // create with a Stat goes out as create2 (15)
    let Request::Create { req, .. } = request_in(&c, "create2_with_stat", 15) else {
        panic!()
    };
    assert_eq!(req.path, "/golden/c2");
    let (_, Reply::Create2(r), _) = reply_in(&c, "create2_with_stat", 15) else {
        panic!()
    };
    assert_eq!(r.path, "/golden/c2");
    assert_eq!(r.stat.data_length, 7);

    let Request::Create { req, .. } = request_in(&c, "create_ephemeral", 1) else {
        panic!()
    };
    assert_eq!(req.flags, 1);
    let Request::Create { req, .. } = request_in(&c, "create_persistent_sequential", 1) else {
        panic!()
    };
    assert_eq!((req.path.as_str(), req.flags), ("/golden/seq-", 2));
    let (_, Reply::Create(r), _) = reply_in(&c, "create_persistent_sequential", 1) else {
        panic!()
    };
    assert!(r.path.starts_with("/golden/seq-") && r.path.len() == "/golden/seq-".len() + 10);

    // CONTAINER: op 19, and the reply is a Create2Response although the client gave no Stat.
    let Request::Create { req, .. } = request_in(&c, "create_container", 19) else {
        panic!()
    };
    assert_eq!(req.flags, 4);
    let (_, Reply::Create2(r), n) = reply_in(&c, "create_container", 19) else {
        panic!()
    };
    assert_eq!((r.path.as_str(), n), ("/golden/container", 109));

    let Request::CreateTtl(req) = request_in(&c, "create_ttl", 21) else {
        panic!()
    };
    assert_eq!(
        (req.path.as_str(), req.flags, req.ttl),
        ("/golden/ttl", 5, 60000)
    );
    let (_, Reply::Create2(r), _) = reply_in(&c, "create_ttl", 21) else {
        panic!()
    };
    assert_eq!(r.path, "/golden/ttl");

    let (h, _, n) = reply_in(&c, "create_node_exists_error", 1);
    assert_eq!((h.err, n), (-110, 20));
}

#[test]
fn errors_are_header_only() {
    let (c, _) = load_and_check_all();
    for (scenario, op, err) in [
        ("exists_missing", 3, -101),
        ("get_data_missing_error", 4, -101),
        ("set_data_bad_version_error", 5, -103),
        ("delete_bad_version_error", 2, -103),
        ("delete_missing_error", 2, -101),
        ("delete_not_empty_error", 2, -111),
        ("create_no_parent_error", 1, -101),
    ] {
        let (h, rep, n) = reply_in(&c, scenario, op);
        assert_eq!(h.err, err, "{scenario}");
        assert_eq!(
            n, 20,
            "{scenario}: 4-byte prefix + 16-byte ReplyHeader, no body"
        );
        assert!(matches!(rep, Reply::Empty));
    }
}

#[test]
fn watch_notification_and_get_data() {
    let (c, _) = load_and_check_all();
    let Request::GetData(g) = request_in(&c, "get_data_with_watch", 4) else {
        panic!()
    };
    assert_eq!((g.path.as_str(), g.watch), ("/golden", true));
    let (_, Reply::GetData(d), _) = reply_in(&c, "get_data_with_watch", 4) else {
        panic!()
    };
    assert_eq!(d.data.as_deref(), Some(&b"hello"[..]));

    let s = in_scenario(&c, "set_data_triggers_watch");
    let ev = s
        .iter()
        .find_map(|x| match &x.decoded {
            Decoded::Event(h, e) => Some((h, e)),
            _ => None,
        })
        .expect("notification");
    assert_eq!((ev.0.xid, ev.0.zxid, ev.0.err), (-1, -1, 0));
    assert_eq!(
        (ev.1.event_type, ev.1.state, ev.1.path.as_str()),
        (3, 3, "/golden")
    );
    // the notification precedes the setData reply
    let pos_ev = s
        .iter()
        .position(|x| matches!(x.decoded, Decoded::Event(..)))
        .unwrap();
    let pos_rep = s
        .iter()
        .position(|x| matches!(x.decoded, Decoded::Rep(..)))
        .unwrap();
    assert!(pos_ev < pos_rep);
    let (_, Reply::SetData(sd), _) = reply_in(&c, "set_data_triggers_watch", 5) else {
        panic!()
    };
    assert_eq!(sd.stat.version, 1);
}

#[test]
fn multi_replies() {
    let (c, _) = load_and_check_all();
    let Request::Multi(ops) = request_in(&c, "multi_success", 14) else {
        panic!()
    };
    let codes: Vec<i32> = ops.iter().map(|o| o.op_code() as i32).collect();
    assert_eq!(codes, vec![1, 5, 13, 21, 2]);
    let (h, Reply::Multi(res), _) = reply_in(&c, "multi_success", 14) else {
        panic!()
    };
    assert_eq!(h.err, 0);
    assert!(matches!(&res[0], MultiResult::Create { path } if path == "/golden/m1"));
    assert!(matches!(&res[1], MultiResult::SetData { stat } if stat.version == 1));
    assert!(matches!(res[2], MultiResult::Check));
    // createTTL inside multi is reported with result type create2 (15) and a Stat
    assert!(matches!(&res[3], MultiResult::Create2 { path, .. } if path == "/golden/mttl"));
    assert!(matches!(res[4], MultiResult::Delete));
    assert_eq!(res.len(), 5);

    let Request::Multi(ops) = request_in(&c, "multi_failure", 14) else {
        panic!()
    };
    assert!(matches!(&ops[0], MultiOp::Check(r) if r.version == 999 && r.path == "/golden"));
    let (h, Reply::Multi(res), n) = reply_in(&c, "multi_failure", 14) else {
        panic!()
    };
    assert_eq!(
        h.err, 0,
        "a failed multi still has err 0 in its ReplyHeader"
    );
    assert_eq!(
        res,
        &vec![
            MultiResult::Error { err: -103 },
            MultiResult::Error { err: -2 }
        ]
    );
    assert_eq!(n, 55);

    let Request::MultiRead(ops) = request_in(&c, "multi_read", 22) else {
        panic!()
    };
    assert!(ops.iter().all(|o| o.is_read()));
    let (h, Reply::Multi(res), _) = reply_in(&c, "multi_read", 22) else {
        panic!()
    };
    assert_eq!(h.err, 0);
    assert!(
        matches!(&res[0], MultiResult::GetChildren { children } if children.contains(&"ttl".to_string()))
    );
    assert!(
        matches!(&res[1], MultiResult::GetData { data, .. } if data.as_deref() == Some(&b"world"[..]))
    );
    assert_eq!(res[2], MultiResult::Error { err: -101 });
}

#[test]
fn auth_acl_and_session_ops() {
    let (c, _) = load_and_check_all();
    let Request::Auth(AuthPacket {
        auth_type,
        scheme,
        auth,
    }) = request_in(&c, "add_auth_digest", 100)
    else {
        panic!()
    };
    assert_eq!(
        (*auth_type, scheme.as_str(), auth.as_slice()),
        (0, "digest", &b"golden:secret"[..])
    );
    let (h, _, n) = reply_in(&c, "add_auth_digest", 100);
    assert_eq!((h.xid, h.zxid, h.err, n), (-4, 0, 0, 20));

    let Request::SetAcl(s) = request_in(&c, "set_acl", 7) else {
        panic!()
    };
    assert_eq!(s.acl[0], Acl::new(31, "auth", ""));
    let (_, Reply::GetAcl(g), _) = reply_in(&c, "get_acl_digest", 6) else {
        panic!()
    };
    assert_eq!(g.acl[0].id.scheme, "digest");
    assert!(g.acl[0].id.id.starts_with("golden:"));
    assert_eq!(g.acl[1], Acl::new(1, "world", "anyone"));

    let (_, Reply::Sync(s), _) = reply_in(&c, "sync", 9) else {
        panic!()
    };
    assert_eq!(s.path, "/golden");

    assert!(matches!(request_in(&c, "ping", 11), Request::Ping));
    let (h, _, n) = reply_in(&c, "ping", 11);
    assert_eq!((h.xid, n), (-2, 20));

    let (_, Reply::WhoAmI(w), _) = reply_in(&c, "who_am_i", 107) else {
        panic!()
    };
    let ids: Vec<(&str, &str)> = w
        .client_info
        .iter()
        .map(|i| (i.auth_scheme.as_str(), i.user.as_str()))
        .collect();
    assert_eq!(ids, vec![("digest", "golden"), ("ip", "127.0.0.1")]);

    let (_, Reply::GetEphemerals(e), _) = reply_in(&c, "get_ephemerals_all", 103) else {
        panic!()
    };
    assert!(e.ephemerals.contains(&"/golden/eph".to_string()));
    let Request::GetEphemerals(g) = request_in(&c, "get_ephemerals_all", 103) else {
        panic!()
    };
    assert_eq!(g.prefix_path, "/");
    let (_, Reply::GetAllChildrenNumber(n), _) = reply_in(&c, "get_all_children_number", 104)
    else {
        panic!()
    };
    assert_eq!(n.total_number, 8);

    assert!(matches!(
        request_in(&c, "close_session", -11),
        Request::CloseSession
    ));
}

#[test]
fn watch_management_ops() {
    let (c, _) = load_and_check_all();
    let Request::AddWatch(a) = request_in(&c, "add_watch_persistent", 106) else {
        panic!()
    };
    assert_eq!((a.path.as_str(), a.mode), ("/golden", 0));
    let Request::AddWatch(a) = request_in(&c, "add_watch_persistent_recursive", 106) else {
        panic!()
    };
    assert_eq!(a.mode, 1);
    let (_, Reply::AddWatch(e), n) = reply_in(&c, "add_watch_persistent", 106) else {
        panic!()
    };
    assert_eq!(
        (e.err, n),
        (0, 24),
        "addWatch reply carries a 4-byte ErrorResponse"
    );

    let Request::CheckWatches(cw) = request_in(&c, "check_watches", 17) else {
        panic!()
    };
    assert_eq!((cw.path.as_str(), cw.watcher_type), ("/golden/ttl", 2));
    let Request::RemoveWatches(rw) = request_in(&c, "remove_all_watches", 18) else {
        panic!()
    };
    assert_eq!((rw.path.as_str(), rw.watcher_type), ("/golden/later", 3));

    // Java 3.8 re-sends one-shot watches with SetWatches (101) and, once it has persistent
    // watches, SetWatches2 (105) -- with a regular xid, not -8.
    let s = in_scenario(&c, "reconnect_set_watches");
    let (h, sw) = s
        .iter()
        .find_map(|x| match &x.decoded {
            Decoded::Req(h, Request::SetWatches(sw)) => Some((h, sw)),
            _ => None,
        })
        .expect("SetWatches");
    assert!(h.xid > 0);
    assert_eq!(sw.data_watches, vec!["/golden"]);
    assert_eq!(sw.exist_watches, vec!["/golden/later"]);
    assert_eq!(sw.child_watches, vec!["/golden"]);
    let Decoded::ConnectReq(cr) = &s[0].decoded else {
        panic!()
    };
    assert_eq!(sw.relative_zxid, cr.last_zxid_seen);

    let s = in_scenario(&c, "reconnect_set_watches2");
    let sw2 = s
        .iter()
        .find_map(|x| match &x.decoded {
            Decoded::Req(_, Request::SetWatches2(sw)) => Some(sw),
            _ => None,
        })
        .expect("SetWatches2");
    assert_eq!(sw2.persistent_watches, vec!["/golden"]);
    assert_eq!(sw2.persistent_recursive_watches, vec!["/golden"]);
    assert!(sw2.data_watches.contains(&"/golden/eph".to_string()));
}

#[test]
fn mutated_frames_are_rejected() {
    // The round trip must notice trailing bytes and altered fields, or it proves nothing.
    let path = fixture_files().remove(0);
    let frames = parse_fixture(&path);
    let reply = frames
        .iter()
        .find(|f| f.kind == Kind::Reply && f.op == Some(1) && f.err == Some(0))
        .expect("a create reply")
        .clone();
    let request = frames
        .iter()
        .find(|f| f.kind == Kind::Request && f.xid == reply.xid && f.conn == reply.conn)
        .expect("its request")
        .clone();
    let run = |req: &Frame, rep: &Frame| {
        let mut seen = HashMap::new();
        let mut pending = HashMap::new();
        check_frame(req, &mut seen, &mut pending)
            .and_then(|_| check_frame(rep, &mut seen, &mut pending))
    };
    assert!(run(&request, &reply).is_ok());

    let mut longer = reply.clone();
    longer.bytes.push(0);
    let n = (longer.bytes.len() - 4) as i32;
    longer.bytes[..4].copy_from_slice(&n.to_be_bytes());
    assert!(
        run(&request, &longer).is_err(),
        "trailing byte not detected"
    );

    let mut bad_prefix = reply.clone();
    bad_prefix.bytes[3] ^= 1;
    assert!(
        run(&request, &bad_prefix).is_err(),
        "bad length prefix not detected"
    );

    let mut other_op = reply.clone();
    other_op.op = Some(15);
    assert!(
        run(&request, &other_op).is_err(),
        "wrong pairing not detected"
    );
}
