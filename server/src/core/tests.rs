//! The pipeline driven step by step: every test feeds the core calls and checks the exact
//! frames and closes it emits, in order.

use super::*;
use zkd_proto::{CreateMode, Reader};

const T0: i64 = 1_000_000;

fn core_with(f: impl FnOnce(&mut Config)) -> Core {
    let mut c = Config {
        extended_types_enabled: true,
        ..Default::default()
    };
    f(&mut c);
    Core::new(c, T0)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 40000 + n as u16))
}

/// A decoded frame the core sent.
#[derive(Debug)]
enum Sent {
    Reply {
        xid: i32,
        zxid: i64,
        err: i32,
        body: Vec<u8>,
    },
    Close,
}

fn drain(core: &mut Core, conn: ConnId) -> Vec<Sent> {
    core.take_output()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, frame } if c == conn => {
                let mut r = Reader::new(&frame[4..]);
                let h = ReplyHeader::read(&mut r).unwrap();
                Some(Sent::Reply {
                    xid: h.xid,
                    zxid: h.zxid,
                    err: h.err,
                    body: r.rest().to_vec(),
                })
            }
            Output::Close { conn: c } if c == conn => Some(Sent::Close),
            _ => None,
        })
        .collect()
}

/// Opens a connection and a new session; returns (conn, session id).
fn session(core: &mut Core, conn: ConnId, timeout: i32, now: i64) -> i64 {
    assert!(core.accept(conn, addr(conn as u8), now));
    core.connect(
        conn,
        &ConnectRequest {
            time_out: timeout,
            passwd: vec![0; 16],
            has_read_only: true,
            ..Default::default()
        },
        now,
    );
    let out = core.take_output();
    let Output::Send { frame, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let rsp = ConnectResponse::from_bytes(&frame[4..]).unwrap();
    assert!(rsp.session_id != 0);
    rsp.session_id
}

fn send(core: &mut Core, conn: ConnId, xid: i32, req: &Request, now: i64) {
    let mut w = Writer::new();
    req.encode_body(&mut w);
    core.request(conn, xid, req.op_code() as i32, &w.buf, now);
}

fn create(path: &str, mode: CreateMode) -> Request {
    Request::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: Acl::open_unsafe(),
            flags: mode.flag(),
        },
    }
}

fn one_reply(sent: &[Sent]) -> (i32, i64, i32, Vec<u8>) {
    assert_eq!(sent.len(), 1, "{sent:?}");
    match &sent[0] {
        Sent::Reply {
            xid,
            zxid,
            err,
            body,
        } => (*xid, *zxid, *err, body.clone()),
        Sent::Close => panic!("closed"),
    }
}

#[test]
fn handshake_negotiates_the_timeout_and_logs_a_create_session_txn() {
    let mut core = core_with(|_| {});
    assert!(core.accept(1, addr(1), T0));
    core.connect(
        1,
        &ConnectRequest {
            time_out: 1,
            passwd: vec![0; 16],
            has_read_only: true,
            ..Default::default()
        },
        T0,
    );
    let out = core.take_output();
    let Output::Send { frame, .. } = &out[0] else {
        panic!()
    };
    assert_eq!(
        frame.len(),
        41,
        "ZooKeeper's 37-byte reply with readOnly, plus the prefix"
    );
    let rsp = ConnectResponse::from_bytes(&frame[4..]).unwrap();
    assert_eq!(rsp.time_out, 4000, "clamped to 2 x tickTime");
    assert_eq!(
        rsp.passwd,
        crate::session::session_password(rsp.session_id).to_vec()
    );
    // As in ZooKeeper, creating a session is a txn: it takes zxid 1.
    assert_eq!(core.tree.last_processed_zxid, 1);
    let id = session(&mut core, 2, 1_000_000, T0);
    assert_eq!(
        core.sessions.get(id).unwrap().timeout_ms,
        40_000,
        "clamped to 20 x tickTime"
    );
}

#[test]
fn wrong_password_gets_the_expired_reply_and_a_close() {
    let mut core = core_with(|_| {});
    let id = session(&mut core, 1, 10_000, T0);
    assert!(core.accept(2, addr(2), T0));
    core.connect(
        2,
        &ConnectRequest {
            time_out: 10_000,
            session_id: id,
            passwd: vec![1; 16],
            has_read_only: true,
            ..Default::default()
        },
        T0,
    );
    let out = core.take_output();
    assert_eq!(out.len(), 2);
    let Output::Send { conn: 2, frame } = &out[0] else {
        panic!("{out:?}")
    };
    let rsp = ConnectResponse::from_bytes(&frame[4..]).unwrap();
    assert_eq!(
        (rsp.time_out, rsp.session_id, rsp.passwd.clone()),
        (0, 0, vec![0u8; 16])
    );
    assert_eq!(out[1], Output::Close { conn: 2 });
    assert!(
        core.sessions.get(id).is_some(),
        "the session itself is untouched"
    );
}

#[test]
fn client_ahead_of_the_server_is_refused_without_a_reply() {
    let mut core = core_with(|_| {});
    assert!(core.accept(1, addr(1), T0));
    core.connect(
        1,
        &ConnectRequest {
            last_zxid_seen: 99,
            time_out: 10_000,
            passwd: vec![0; 16],
            ..Default::default()
        },
        T0,
    );
    assert_eq!(core.take_output(), vec![Output::Close { conn: 1 }]);
    assert_eq!(core.sessions.len(), 0);
}

#[test]
fn resuming_moves_the_session_and_drops_the_old_connections_watches() {
    let mut core = core_with(|_| {});
    let id = session(&mut core, 1, 10_000, T0);
    send(
        &mut core,
        1,
        1,
        &Request::Exists(ExistsRequest {
            path: "/w".into(),
            watch: true,
        }),
        T0,
    );
    drain(&mut core, 1);
    assert_eq!(core.tree.data_watches.watch_count(), 1);
    assert!(core.accept(2, addr(2), T0));
    let passwd = crate::session::session_password(id).to_vec();
    core.connect(
        2,
        &ConnectRequest {
            time_out: 10_000,
            session_id: id,
            passwd,
            has_read_only: true,
            last_zxid_seen: 1,
            ..Default::default()
        },
        T0,
    );
    let out = core.take_output();
    assert!(out.contains(&Output::Close { conn: 1 }), "{out:?}");
    assert_eq!(
        core.tree.data_watches.watch_count(),
        0,
        "watches belong to connections"
    );
    assert_eq!(core.sessions.get(id).unwrap().conn, Some(2));
}

#[test]
fn an_event_reaches_the_writer_before_its_own_reply() {
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(
        &mut core,
        1,
        1,
        &Request::Exists(ExistsRequest {
            path: "/e".into(),
            watch: true,
        }),
        T0,
    );
    drain(&mut core, 1);
    send(&mut core, 1, 2, &create("/e", CreateMode::Persistent), T0);
    let sent = drain(&mut core, 1);
    assert_eq!(sent.len(), 2);
    let Sent::Reply {
        xid: -1,
        zxid: ev_zxid,
        body,
        ..
    } = &sent[0]
    else {
        panic!("{sent:?}")
    };
    let ev = WatcherEvent::from_bytes(body).unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_CREATED, "/e")
    );
    let Sent::Reply {
        xid: 2,
        zxid,
        err: 0,
        ..
    } = &sent[1]
    else {
        panic!("{sent:?}")
    };
    assert_eq!(
        ev_zxid, zxid,
        "the notification carries the triggering zxid (3.9)"
    );
}

#[test]
fn failed_writes_consume_a_zxid_like_zookeeper() {
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(
        &mut core,
        1,
        1,
        &create("/missing/child", CreateMode::Persistent),
        T0,
    );
    let (_, zxid, err, body) = one_reply(&drain(&mut core, 1));
    assert_eq!((zxid, err, body.len()), (2, ErrorCode::NoNode.code(), 0));
    send(&mut core, 1, 2, &create("/a", CreateMode::Persistent), T0);
    let (_, zxid, err, _) = one_reply(&drain(&mut core, 1));
    assert_eq!((zxid, err), (3, 0));
    assert_eq!(core.tree.get("/a").unwrap().stat.czxid, 3);
}

#[test]
fn sequential_names_count_creates_not_cversion() {
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(&mut core, 1, 1, &create("/s", CreateMode::Persistent), T0);
    send(
        &mut core,
        1,
        2,
        &create("/s/plain", CreateMode::Persistent),
        T0,
    );
    send(
        &mut core,
        1,
        3,
        &Request::Delete(DeleteRequest {
            path: "/s/plain".into(),
            version: -1,
        }),
        T0,
    );
    drain(&mut core, 1);
    // Served cversion is now 2 (one create + one delete); the create count is 1.
    assert_eq!(core.tree.get("/s").unwrap().client_stat().cversion, 2);
    send(
        &mut core,
        1,
        4,
        &create("/s/q-", CreateMode::PersistentSequential),
        T0,
    );
    let (_, _, err, body) = one_reply(&drain(&mut core, 1));
    assert_eq!(err, 0);
    assert_eq!(
        CreateResponse::from_bytes(&body).unwrap().path,
        "/s/q-0000000001"
    );
}

#[test]
fn sequential_counter_wraps_like_a_java_int() {
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(&mut core, 1, 1, &create("/w", CreateMode::Persistent), T0);
    drain(&mut core, 1);
    // Bring the parent's create count to i32::MAX with one replayed txn.
    let mut out = Vec::new();
    let zxid = core.prep.last_zxid + 1;
    core.prep.last_zxid = zxid;
    core.tree.process_txn(
        &zkd_proto::txn::TxnHeader {
            client_id: 0,
            cxid: 0,
            zxid,
            time: T0,
            txn_type: OpCode::Create as i32,
        },
        &TxnBody::Create(zkd_proto::txn::CreateTxn {
            path: "/w/x".into(),
            data: None,
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: i32::MAX,
        }),
        &mut out,
    );
    send(
        &mut core,
        1,
        2,
        &create("/w/s", CreateMode::PersistentSequential),
        T0,
    );
    let (_, _, err, body) = one_reply(&drain(&mut core, 1));
    assert_eq!(err, 0);
    assert_eq!(
        CreateResponse::from_bytes(&body).unwrap().path,
        "/w/s2147483647"
    );
    // The txn carries the wrapped count (i32::MIN), but DataTree.createNode only ever
    // raises a parent's cversion, so the parent stays at i32::MAX and the next sequential
    // name collides: ZooKeeper 3.9.5 answers NodeExists here, and so do we. (A create
    // prepared while the first was still pending would see the wrapped count and get
    // "-2147483648".)
    send(
        &mut core,
        1,
        3,
        &create("/w/s", CreateMode::PersistentSequential),
        T0,
    );
    assert_eq!(
        one_reply(&drain(&mut core, 1)).2,
        ErrorCode::NodeExists.code()
    );
    assert_eq!(core.tree.get("/w").unwrap().stat.cversion, i32::MAX);
}

#[test]
fn expiry_removes_ephemerals_and_notifies_other_sessions() {
    let mut core = core_with(|_| {});
    let owner = session(&mut core, 1, 4000, T0);
    let watcher = session(&mut core, 2, 40_000, T0);
    assert_ne!(owner, watcher);
    send(&mut core, 1, 1, &create("/eph", CreateMode::Ephemeral), T0);
    drain(&mut core, 1);
    assert_eq!(
        core.tree.get("/eph").unwrap().client_stat().ephemeral_owner,
        owner
    );
    send(
        &mut core,
        2,
        1,
        &Request::GetChildren(GetChildrenRequest {
            path: "/".into(),
            watch: true,
        }),
        T0,
    );
    send(
        &mut core,
        2,
        2,
        &Request::GetData(GetDataRequest {
            path: "/eph".into(),
            watch: true,
        }),
        T0,
    );
    drain(&mut core, 2);
    // Not yet: expiry is rounded up to the tick after now + timeout.
    core.tick(T0 + 3999);
    assert!(core.tree.get("/eph").is_some());
    core.tick(T0 + 6000);
    assert!(core.tree.get("/eph").is_none());
    assert!(core.sessions.get(owner).is_none());
    let out = core.take_output();
    assert!(out.contains(&Output::Close { conn: 1 }));
    let events: Vec<(i32, String)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn: 2, frame } => {
                let mut r = Reader::new(&frame[4..]);
                let h = ReplyHeader::read(&mut r).unwrap();
                assert_eq!(h.xid, -1);
                let e = WatcherEvent::read(&mut r).unwrap();
                Some((e.event_type, e.path))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (event_type::NODE_DELETED, "/eph".to_string()),
            (event_type::NODE_CHILDREN_CHANGED, "/".to_string())
        ]
    );
}

#[test]
fn requests_keep_a_session_alive() {
    let mut core = core_with(|_| {});
    let id = session(&mut core, 1, 4000, T0);
    for i in 1..10 {
        send(&mut core, 1, i, &Request::Ping, T0 + i as i64 * 3000);
        core.tick(T0 + i as i64 * 3000);
    }
    assert!(core.sessions.get(id).is_some());
}

#[test]
fn close_session_replies_then_closes() {
    let mut core = core_with(|_| {});
    let id = session(&mut core, 1, 10_000, T0);
    send(&mut core, 1, 1, &create("/c", CreateMode::Ephemeral), T0);
    drain(&mut core, 1);
    send(&mut core, 1, 2, &Request::CloseSession, T0);
    let sent = drain(&mut core, 1);
    assert!(
        matches!(sent[0], Sent::Reply { xid: 2, err: 0, .. }),
        "{sent:?}"
    );
    assert!(matches!(sent[1], Sent::Close));
    assert!(core.tree.get("/c").is_none());
    assert!(core.sessions.get(id).is_none());
}

#[test]
fn max_client_cnxns_is_per_ip() {
    let mut core = core_with(|c| c.max_client_cnxns = 2);
    assert!(core.accept(1, addr(1), T0));
    assert!(core.accept(2, addr(1), T0));
    assert!(!core.accept(3, addr(1), T0));
    assert!(core.accept(4, addr(2), T0));
    core.disconnected(1);
    assert!(core.accept(5, addr(1), T0));
}

#[test]
fn set_watches_fires_what_changed_since_relative_zxid() {
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(&mut core, 1, 1, &create("/old", CreateMode::Persistent), T0);
    send(
        &mut core,
        1,
        2,
        &create("/changed", CreateMode::Persistent),
        T0,
    );
    drain(&mut core, 1);
    let relative = core.tree.last_processed_zxid;
    send(
        &mut core,
        1,
        3,
        &Request::SetData(SetDataRequest {
            path: "/changed".into(),
            data: None,
            version: -1,
        }),
        T0,
    );
    send(
        &mut core,
        1,
        4,
        &create("/born", CreateMode::Persistent),
        T0,
    );
    drain(&mut core, 1);
    session(&mut core, 2, 10_000, T0);
    let sw = SetWatches2 {
        relative_zxid: relative,
        data_watches: vec!["/old".into(), "/changed".into(), "/gone".into()],
        exist_watches: vec!["/born".into(), "/unborn".into()],
        child_watches: vec!["/old".into()],
        persistent_watches: vec![],
        persistent_recursive_watches: vec!["/old".into()],
    };
    send(&mut core, 2, -8, &Request::SetWatches2(sw), T0);
    let sent = drain(&mut core, 2);
    let events: Vec<(i32, String)> = sent
        .iter()
        .filter_map(|s| match s {
            Sent::Reply { xid: -1, body, .. } => {
                let e = WatcherEvent::from_bytes(body).unwrap();
                Some((e.event_type, e.path))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (event_type::NODE_DATA_CHANGED, "/changed".to_string()),
            (event_type::NODE_DELETED, "/gone".to_string()),
            (event_type::NODE_CREATED, "/born".to_string()),
        ]
    );
    assert!(matches!(
        sent.last(),
        Some(Sent::Reply {
            xid: -8,
            err: 0,
            ..
        })
    ));
    // /old's data, child and recursive watches and /unborn's exist watch are armed.
    assert!(
        core.tree
            .watch_op("/old", zkd_proto::watcher_type::DATA, 2, false)
            || core
                .tree
                .watch_op("/old", zkd_proto::watcher_type::ANY, 2, false)
    );
    assert!(core
        .tree
        .watch_op("/old", zkd_proto::watcher_type::CHILDREN, 2, false));
    assert!(core
        .tree
        .watch_op("/unborn", zkd_proto::watcher_type::DATA, 2, false));
}

#[test]
fn containers_are_reaped_once_emptied_and_ttl_nodes_after_their_ttl() {
    let mut core = core_with(|c| c.container_check_interval_ms = 1000);
    session(&mut core, 1, 10_000, T0);
    let container = Request::Create {
        op: OpCode::CreateContainer,
        req: CreateRequest {
            path: "/box".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: CreateMode::Container.flag(),
        },
    };
    send(&mut core, 1, 1, &container, T0);
    let ttl = Request::CreateTtl(CreateTtlRequest {
        path: "/ttl".into(),
        data: None,
        acl: Acl::open_unsafe(),
        flags: CreateMode::PersistentWithTtl.flag(),
        ttl: 5000,
    });
    send(&mut core, 1, 2, &ttl, T0);
    let sent = drain(&mut core, 1);
    assert!(
        sent.iter().all(|s| matches!(s, Sent::Reply { err: 0, .. })),
        "{sent:?}"
    );
    assert_eq!(
        core.tree.get("/box").unwrap().client_stat().ephemeral_owner,
        0
    );
    assert_eq!(
        core.tree.get("/ttl").unwrap().client_stat().ephemeral_owner,
        0
    );
    core.tick(T0 + 2000);
    assert!(
        core.tree.get("/box").is_some(),
        "a container that never had children stays"
    );
    send(
        &mut core,
        1,
        3,
        &create("/box/x", CreateMode::Persistent),
        T0 + 2000,
    );
    send(
        &mut core,
        1,
        4,
        &Request::Delete(DeleteRequest {
            path: "/box/x".into(),
            version: -1,
        }),
        T0 + 2000,
    );
    core.tick(T0 + 4000);
    assert!(core.tree.get("/box").is_none(), "emptied container reaped");
    assert!(core.tree.get("/ttl").is_some());
    core.tick(T0 + 6000);
    assert!(
        core.tree.get("/ttl").is_none(),
        "ttl node reaped after its ttl"
    );
}

#[test]
fn ttl_creates_need_extended_types_and_a_valid_ttl() {
    let mut core = core_with(|c| c.extended_types_enabled = false);
    session(&mut core, 1, 10_000, T0);
    let ttl = |t: i64| {
        Request::CreateTtl(CreateTtlRequest {
            path: "/t".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: CreateMode::PersistentWithTtl.flag(),
            ttl: t,
        })
    };
    send(&mut core, 1, 1, &ttl(100), T0);
    assert_eq!(
        one_reply(&drain(&mut core, 1)).2,
        ErrorCode::Unimplemented.code()
    );
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(&mut core, 1, 1, &ttl(0), T0);
    assert_eq!(
        one_reply(&drain(&mut core, 1)).2,
        ErrorCode::BadArguments.code()
    );
}

#[test]
fn failed_multi_has_header_err_zero_and_per_op_results() {
    let mut core = core_with(|_| {});
    session(&mut core, 1, 10_000, T0);
    send(&mut core, 1, 1, &create("/m", CreateMode::Persistent), T0);
    drain(&mut core, 1);
    let multi = Request::Multi(vec![
        MultiOp::Create {
            op: OpCode::Create,
            req: CreateRequest {
                path: "/m/a".into(),
                data: None,
                acl: Acl::open_unsafe(),
                flags: 0,
            },
        },
        MultiOp::Check(CheckVersionRequest {
            path: "/m".into(),
            version: 7,
        }),
        MultiOp::SetData(SetDataRequest {
            path: "/m".into(),
            data: None,
            version: -1,
        }),
    ]);
    send(&mut core, 1, 2, &multi, T0);
    let (_, _, err, body) = one_reply(&drain(&mut core, 1));
    assert_eq!(err, 0);
    let results = zkd_proto::request::decode_multi_results(&mut Reader::new(&body)).unwrap();
    assert_eq!(
        results,
        vec![
            MultiResult::Error { err: 0 },
            MultiResult::Error { err: -103 },
            MultiResult::Error { err: -2 }
        ]
    );
    assert!(core.tree.get("/m/a").is_none());
    // The rolled-back create left no pending record behind.
    send(&mut core, 1, 3, &create("/m/a", CreateMode::Persistent), T0);
    assert_eq!(one_reply(&drain(&mut core, 1)).2, 0);
}

/// The reference for `MultiReply`: each sub-result as the `MultiResult` it stands for
/// (the mapping write replies used before they were encoded directly).
fn multi_result(rc: &TxnResult) -> MultiResult {
    match OpCode::from_i32(rc.txn_type) {
        Some(OpCode::Check) => MultiResult::Check,
        Some(OpCode::Create) => MultiResult::Create {
            path: rc.path.clone(),
        },
        Some(OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer) => {
            MultiResult::Create2 {
                path: rc.path.clone(),
                stat: rc.stat.clone().unwrap_or_default(),
            }
        }
        Some(OpCode::Delete | OpCode::DeleteContainer) => MultiResult::Delete,
        Some(OpCode::SetData) => MultiResult::SetData {
            stat: rc.stat.clone().unwrap_or_default(),
        },
        _ => MultiResult::Error { err: rc.err },
    }
}

#[test]
fn multi_reply_encodes_the_bytes_of_its_multi_results() {
    let stat = Stat {
        czxid: 1,
        mzxid: 2,
        ctime: 3,
        mtime: 4,
        version: 5,
        cversion: 6,
        aversion: 7,
        ephemeral_owner: 8,
        data_length: 9,
        num_children: 10,
        pzxid: 11,
    };
    let rc = |op: OpCode, err: i32, path: &str, stat: Option<Stat>| TxnResult {
        txn_type: op as i32,
        err,
        path: path.into(),
        stat,
        multi: Vec::new(),
    };
    let subs = vec![
        rc(OpCode::Create, 0, "/a", Some(stat.clone())),
        rc(OpCode::Create2, 0, "/b0000000001", Some(stat.clone())),
        rc(OpCode::CreateTtl, 0, "/t", None),
        rc(OpCode::CreateContainer, 0, "/c", Some(stat.clone())),
        rc(OpCode::Delete, 0, "", None),
        rc(OpCode::DeleteContainer, 0, "", None),
        rc(OpCode::SetData, 0, "", Some(stat.clone())),
        rc(OpCode::SetData, 0, "", None),
        rc(OpCode::Check, 0, "", None),
        rc(OpCode::Error, 0, "", None),
        rc(OpCode::Error, ErrorCode::NoNode.code(), "", None),
        rc(
            OpCode::Error,
            ErrorCode::RuntimeInconsistency.code(),
            "",
            None,
        ),
    ];
    for n in 0..=subs.len() {
        let mut direct = Writer::new();
        MultiReply(&subs[..n]).encode(&mut direct);
        let mut reference = Writer::new();
        let results: Vec<MultiResult> = subs[..n].iter().map(multi_result).collect();
        encode_multi_results(&results, &mut reference);
        assert_eq!(direct.buf, reference.buf, "first {n} results");
        assert!(direct.buf.len() <= MultiReply(&subs[..n]).size_hint());
    }
}

#[test]
fn digest_super_user_bypasses_acls() {
    let digest = crate::acl::generate_digest("super:test");
    let mut core = core_with(|c| c.super_digest = Some(digest));
    session(&mut core, 1, 10_000, T0);
    let locked = Request::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: "/locked".into(),
            data: None,
            acl: vec![Acl::new(perms::READ, "digest", "nobody:x")],
            flags: 0,
        },
    };
    send(&mut core, 1, 1, &locked, T0);
    send(
        &mut core,
        1,
        2,
        &Request::SetData(SetDataRequest {
            path: "/locked".into(),
            data: None,
            version: -1,
        }),
        T0,
    );
    let sent = drain(&mut core, 1);
    assert!(matches!(sent[1], Sent::Reply { err: -102, .. }), "{sent:?}");
    send(
        &mut core,
        1,
        -4,
        &Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: b"super:test".to_vec(),
        }),
        T0,
    );
    send(
        &mut core,
        1,
        3,
        &Request::SetData(SetDataRequest {
            path: "/locked".into(),
            data: None,
            version: -1,
        }),
        T0,
    );
    let sent = drain(&mut core, 1);
    assert!(
        matches!(
            sent[0],
            Sent::Reply {
                xid: -4,
                zxid: 0,
                err: 0,
                ..
            }
        ),
        "{sent:?}"
    );
    assert!(
        matches!(sent[1], Sent::Reply { xid: 3, err: 0, .. }),
        "{sent:?}"
    );
}

#[test]
fn never_used_containers_are_reaped_only_with_max_never_used_interval() {
    let mut core = core_with(|c| {
        c.container_check_interval_ms = 1000;
        c.container_max_never_used_interval_ms = 10_000;
    });
    session(&mut core, 1, 10_000, T0);
    let container = Request::Create {
        op: OpCode::CreateContainer,
        req: CreateRequest {
            path: "/idle".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: CreateMode::Container.flag(),
        },
    };
    send(&mut core, 1, 1, &container, T0);
    drain(&mut core, 1);
    core.tick(T0 + 9000);
    assert!(core.tree.get("/idle").is_some());
    core.tick(T0 + 12_000);
    assert!(core.tree.get("/idle").is_none());
}

mod model {
    //! The pipeline against a naive model of the tree: random single-session writes, the
    //! same error code from both, and the same tree (data, versions, cversion) at the end.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Create(usize, u8, bool, bool),
        Delete(usize, i32),
        SetData(usize, u8, i32),
    }

    const PATHS: &[&str] = &["/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/c/d"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..PATHS.len(), any::<u8>(), any::<bool>(), any::<bool>())
                .prop_map(|(p, d, e, s)| Op::Create(p, d, e, s)),
            (0..PATHS.len(), -1..3i32).prop_map(|(p, v)| Op::Delete(p, v)),
            (0..PATHS.len(), any::<u8>(), -1..3i32).prop_map(|(p, d, v)| Op::SetData(p, d, v)),
        ]
    }

    #[derive(Debug, Clone, PartialEq)]
    struct MNode {
        data: Vec<u8>,
        version: i32,
        creates: i32,
        ephemeral: bool,
    }

    fn children(m: &BTreeMap<String, MNode>, p: &str) -> usize {
        m.keys()
            .filter(|k| k.as_str() != p && zkd_proto::path::parent(k) == p)
            .count()
    }

    fn model_apply(m: &mut BTreeMap<String, MNode>, op: &Op) -> i32 {
        match op {
            Op::Create(p, d, eph, seq) => {
                let parent = zkd_proto::path::parent(PATHS[*p]).to_string();
                let Some(pn) = m.get(&parent) else {
                    return -101;
                };
                let path = if *seq {
                    format!("{}{:010}", PATHS[*p], pn.creates)
                } else {
                    PATHS[*p].to_string()
                };
                if m.contains_key(&path) {
                    return -110;
                }
                if pn.ephemeral {
                    return -108;
                }
                m.get_mut(&parent).unwrap().creates += 1;
                m.insert(
                    path,
                    MNode {
                        data: vec![*d],
                        version: 0,
                        creates: 0,
                        ephemeral: *eph,
                    },
                );
                0
            }
            Op::Delete(p, v) => {
                let path = PATHS[*p];
                if !m.contains_key(zkd_proto::path::parent(path)) {
                    return -101;
                }
                let Some(n) = m.get(path) else { return -101 };
                if *v != -1 && *v != n.version {
                    return -103;
                }
                if children(m, path) > 0 {
                    return -111;
                }
                m.remove(path);
                0
            }
            Op::SetData(p, d, v) => {
                let Some(n) = m.get_mut(PATHS[*p]) else {
                    return -101;
                };
                if *v != -1 && *v != n.version {
                    return -103;
                }
                n.version += 1;
                n.data = vec![*d];
                0
            }
        }
    }

    fn request(op: &Op) -> Request {
        match op {
            Op::Create(p, d, eph, seq) => {
                let mode = match (eph, seq) {
                    (false, false) => CreateMode::Persistent,
                    (true, false) => CreateMode::Ephemeral,
                    (false, true) => CreateMode::PersistentSequential,
                    (true, true) => CreateMode::EphemeralSequential,
                };
                Request::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path: PATHS[*p].into(),
                        data: Some(vec![*d]),
                        acl: Acl::open_unsafe(),
                        flags: mode.flag(),
                    },
                }
            }
            Op::Delete(p, v) => Request::Delete(DeleteRequest {
                path: PATHS[*p].into(),
                version: *v,
            }),
            Op::SetData(p, d, v) => Request::SetData(SetDataRequest {
                path: PATHS[*p].into(),
                data: Some(vec![*d]),
                version: *v,
            }),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn core_matches_a_naive_tree(ops in proptest::collection::vec(op(), 1..60)) {
            let mut core = core_with(|_| {});
            session(&mut core, 1, 30_000, T0);
            let mut m = BTreeMap::new();
            m.insert("/".to_string(), MNode { data: vec![], version: 0, creates: 0, ephemeral: false });
            for (i, op) in ops.iter().enumerate() {
                send(&mut core, 1, i as i32 + 1, &request(op), T0);
                let (_, _, err, _) = one_reply(&drain(&mut core, 1));
                prop_assert_eq!(err, model_apply(&mut m, op), "op {} {:?}", i, op);
            }
            for (path, n) in &m {
                let node = core.tree.get(path).expect("model node in tree");
                let stat = node.client_stat();
                if path != "/" {
                    prop_assert_eq!(node.data().map(<[u8]>::to_vec), Some(n.data.clone()));
                    prop_assert_eq!(stat.version, n.version);
                    prop_assert_eq!(node.stat.cversion, n.creates);
                    prop_assert_eq!(stat.cversion, 2 * n.creates - children(&m, path) as i32);
                }
                prop_assert_eq!(stat.num_children as usize, children(&m, path) + if path == "/" { 1 } else { 0 });
            }
            let user_nodes = core.tree.paths().into_iter().filter(|p| !p.starts_with("/zookeeper")).count();
            prop_assert_eq!(user_nodes, m.len());
        }
    }
}

mod durable {
    //! With a log: nothing is applied or answered before `synced`, a session's reads wait
    //! behind its writes, writes pipeline, and other sessions only see committed state.
    use super::*;

    fn persisted(out: &[Output]) -> Vec<i64> {
        out.iter()
            .filter_map(|o| match o {
                Output::Persist { zxid, .. } => Some(*zxid),
                _ => None,
            })
            .collect()
    }

    fn sends_to(out: &[Output], conn: ConnId) -> usize {
        out.iter()
            .filter(|o| matches!(o, Output::Send { conn: c, .. } if *c == conn))
            .count()
    }

    fn durable_session(core: &mut Core, conn: ConnId) -> i64 {
        assert!(core.accept(conn, addr(conn as u8), T0));
        core.connect(
            conn,
            &ConnectRequest {
                time_out: 10_000,
                passwd: vec![0; 16],
                has_read_only: true,
                ..Default::default()
            },
            T0,
        );
        let out = core.take_output();
        // The createSession txn must be durable before the client hears of its session.
        let z = persisted(&out);
        assert_eq!(z.len(), 1);
        assert_eq!(sends_to(&out, conn), 0);
        core.synced(z[0], T0);
        let out = core.take_output();
        let Output::Send { frame, .. } = &out[0] else {
            panic!("{out:?}")
        };
        ConnectResponse::from_bytes(&frame[4..]).unwrap().session_id
    }

    #[test]
    fn a_failed_multi_puts_back_the_pending_records_it_overwrote() {
        let mut core = core_with(|_| {});
        core.durable = true;
        durable_session(&mut core, 1);
        send(&mut core, 1, 1, &create("/m", CreateMode::Persistent), T0);
        let z = persisted(&core.take_output());
        core.synced(z[0], T0);
        core.take_output();
        let set = |version: i32| {
            Request::SetData(SetDataRequest {
                path: "/m".into(),
                data: Some(b"x".to_vec()),
                version,
            })
        };
        // Pending (not yet durable): /m at version 1.
        send(&mut core, 1, 2, &set(0), T0);
        // Moves the pending /m to version 2 and creates /m/c, then fails: both undone.
        let multi = Request::Multi(vec![
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: None,
                version: 1,
            }),
            MultiOp::Create {
                op: OpCode::Create,
                req: CreateRequest {
                    path: "/m/c".into(),
                    data: None,
                    acl: Acl::open_unsafe(),
                    flags: 0,
                },
            },
            MultiOp::Check(CheckVersionRequest {
                path: "/nope".into(),
                version: -1,
            }),
        ]);
        send(&mut core, 1, 3, &multi, T0);
        // Prepared against the pending view: /m is at version 1 again, /m/c absent.
        send(&mut core, 1, 4, &set(1), T0);
        send(&mut core, 1, 5, &create("/m/c", CreateMode::Persistent), T0);
        let z = persisted(&core.take_output());
        assert_eq!(z.len(), 4);
        core.synced(z[3], T0);
        let errs: Vec<i32> = drain(&mut core, 1)
            .iter()
            .map(|s| match s {
                Sent::Reply { err, .. } => *err,
                Sent::Close => panic!("closed"),
            })
            .collect();
        assert_eq!(errs, vec![0, 0, 0, 0], "the multi's header err is 0 too");
        assert_eq!(core.tree.get("/m").unwrap().stat.version, 2);
        assert!(core.tree.get("/m/c").is_some());
    }

    #[test]
    fn writes_are_answered_only_once_durable() {
        let mut core = core_with(|_| {});
        core.durable = true;
        durable_session(&mut core, 1);
        durable_session(&mut core, 2);
        send(&mut core, 1, 1, &create("/d", CreateMode::Persistent), T0);
        let out = core.take_output();
        let z = persisted(&out);
        assert_eq!(z.len(), 1);
        assert_eq!(sends_to(&out, 1), 0, "no reply before fsync");
        assert!(core.tree.get("/d").is_none(), "not applied before fsync");
        // Another session reads committed state meanwhile.
        send(
            &mut core,
            2,
            1,
            &Request::Exists(ExistsRequest {
                path: "/d".into(),
                watch: true,
            }),
            T0,
        );
        assert_eq!(one_reply(&drain(&mut core, 2)).2, ErrorCode::NoNode.code());
        core.synced(z[0], T0 + 3);
        let out = core.take_output();
        // The watcher's event and the writer's reply, both after the fsync.
        assert_eq!(sends_to(&out, 2), 1);
        assert_eq!(sends_to(&out, 1), 1);
        assert!(core.tree.get("/d").is_some());
        assert_eq!(
            core.conns[&1].last_latency_ms, 3,
            "latency includes the fsync wait"
        );
    }

    #[test]
    fn a_read_waits_behind_its_sessions_writes_and_writes_pipeline() {
        let mut core = core_with(|_| {});
        core.durable = true;
        durable_session(&mut core, 1);
        send(&mut core, 1, 1, &create("/p", CreateMode::Persistent), T0);
        send(&mut core, 1, 2, &create("/p/c", CreateMode::Persistent), T0);
        send(
            &mut core,
            1,
            3,
            &Request::GetChildren(GetChildrenRequest {
                path: "/p".into(),
                watch: false,
            }),
            T0,
        );
        send(&mut core, 1, 4, &create("/q", CreateMode::Persistent), T0);
        let out = core.take_output();
        // Both leading writes are prepared at once (the second sees the first pending);
        // the read and everything after it wait.
        let z = persisted(&out);
        assert_eq!(z.len(), 2, "{out:?}");
        assert_eq!(sends_to(&out, 1), 0);
        core.synced(z[0], T0);
        let sent = drain(&mut core, 1);
        assert_eq!(sent.len(), 1, "only the first write is answered");
        core.synced(z[1], T0);
        let out = core.take_output();
        // Second write answered, the read served (seeing both), the last write proposed.
        assert_eq!(persisted(&out).len(), 1);
        let replies: Vec<(i32, i32)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send { conn: 1, frame } => {
                    let h = ReplyHeader::read(&mut Reader::new(&frame[4..])).unwrap();
                    Some((h.xid, h.err))
                }
                _ => None,
            })
            .collect();
        assert_eq!(replies, vec![(2, 0), (3, 0)]);
        let Output::Send { frame, .. } = out.iter().find(|o| matches!(o, Output::Send { conn: 1, frame } if frame.len() > 20 && ReplyHeader::read(&mut Reader::new(&frame[4..])).unwrap().xid == 3)).unwrap() else { unreachable!() };
        let mut r = Reader::new(&frame[4..]);
        ReplyHeader::read(&mut r).unwrap();
        assert_eq!(
            GetChildrenResponse::read(&mut r).unwrap().children,
            vec!["c".to_string()]
        );
    }

    #[test]
    fn a_closed_connection_still_commits_its_writes() {
        let mut core = core_with(|_| {});
        core.durable = true;
        durable_session(&mut core, 1);
        send(
            &mut core,
            1,
            1,
            &create("/gone", CreateMode::Persistent),
            T0,
        );
        let z = persisted(&core.take_output());
        core.disconnected(1);
        core.synced(z[0], T0);
        assert!(core.tree.get("/gone").is_some());
        assert!(core.take_output().is_empty());
    }
}

#[test]
fn restore_replays_txns_and_sessions_without_notifying() {
    // Record a run's txns by driving a durable core and keeping what it persists.
    let mut core = core_with(|_| {});
    core.durable = true;
    assert!(core.accept(1, addr(1), T0));
    core.connect(
        1,
        &ConnectRequest {
            time_out: 10_000,
            passwd: vec![0; 16],
            has_read_only: true,
            ..Default::default()
        },
        T0,
    );
    let mut log: Vec<TxnEntry> = Vec::new();
    let take = |core: &mut Core, log: &mut Vec<TxnEntry>| {
        for o in core.take_output() {
            if let Output::Persist { zxid, txn } = o {
                log.push(TxnEntry::from_bytes(&txn).unwrap());
                core.synced(zxid, T0);
            }
        }
    };
    take(&mut core, &mut log);
    let session = core.conns[&1].session_id;
    send(&mut core, 1, 1, &create("/r", CreateMode::Persistent), T0);
    take(&mut core, &mut log);
    send(&mut core, 1, 2, &create("/r/e", CreateMode::Ephemeral), T0);
    take(&mut core, &mut log);
    send(
        &mut core,
        1,
        3,
        &Request::SetData(SetDataRequest {
            path: "/r".into(),
            data: Some(b"v".to_vec()),
            version: 0,
        }),
        T0,
    );
    take(&mut core, &mut log);
    assert_eq!(log.len(), 4);

    let mut restored = core_with(|_| {});
    restored.restore(None, &log, T0 + 100);
    assert_eq!(
        restored.tree.last_processed_zxid,
        core.tree.last_processed_zxid
    );
    assert_eq!(restored.tree.paths(), core.tree.paths());
    assert_eq!(
        restored.tree.get("/r").unwrap().client_stat(),
        core.tree.get("/r").unwrap().client_stat()
    );
    assert_eq!(
        restored
            .tree
            .get("/r/e")
            .unwrap()
            .client_stat()
            .ephemeral_owner,
        session
    );
    assert!(restored.take_output().is_empty());
    // The session survives the restart and expires later as it would have.
    assert_eq!(restored.session_table(), vec![(session, 10_000)]);
    restored.tick(T0 + 100 + 9_000);
    assert!(restored.tree.get("/r/e").is_some());
    restored.tick(T0 + 100 + 12_000);
    assert!(restored.tree.get("/r/e").is_none());
    // New zxids continue the sequence.
    assert_eq!(
        restored.tree.last_processed_zxid,
        core.tree.last_processed_zxid + 1
    );
}

/// A leader core and a learner core wired by hand the way zab wires them: forwarded
/// requests go to the leader, proposals are committed on both in zxid order, syncs pass
/// once everything before them is committed.
mod ensemble {
    use super::*;

    struct Pair {
        leader: Core,
        learner: Core,
        /// Learner outputs for its clients, kept for the test to inspect.
        learner_out: Vec<Output>,
        leader_out: Vec<Output>,
    }

    const EPOCH_BASE: i64 = 1 << 32;

    impl Pair {
        fn new() -> Pair {
            let mut leader = core_with(|_| {});
            let mut learner = core_with(|_| {});
            leader.set_replication(Replication::Leader, EPOCH_BASE, T0);
            learner.set_replication(Replication::Learner, 0, T0);
            leader.take_output();
            learner.take_output();
            Pair {
                leader,
                learner,
                learner_out: Vec::new(),
                leader_out: Vec::new(),
            }
        }

        /// Moves messages until both cores are quiet.
        fn run(&mut self, now: i64) {
            loop {
                let mut progressed = false;
                for o in self.learner.take_output() {
                    progressed = true;
                    match o {
                        Output::Forward { payload } => {
                            self.leader.forwarded_request(&payload, now).unwrap()
                        }
                        Output::Sync { id } => {
                            // Everything the leader proposed so far is committed below
                            // before the barrier passes.
                            self.commit_all(now);
                            self.learner.sync_done(id, now);
                        }
                        Output::Propose { .. } | Output::Persist { .. } => {
                            panic!("a learner never prepares txns: {o:?}")
                        }
                        other => self.learner_out.push(other),
                    }
                }
                progressed |= self.commit_all(now);
                if !progressed {
                    return;
                }
            }
        }

        fn commit_all(&mut self, now: i64) -> bool {
            let mut any = false;
            for o in self.leader.take_output() {
                match o {
                    Output::Propose { zxid, txn } => {
                        any = true;
                        self.leader.committed(zxid, &txn, now).unwrap();
                        self.learner.committed(zxid, &txn, now).unwrap();
                    }
                    other => self.leader_out.push(other),
                }
            }
            any
        }

        fn learner_replies(&mut self, conn: ConnId) -> Vec<Sent> {
            let outs = std::mem::take(&mut self.learner_out);
            let mut tmp = core_with(|_| {});
            tmp.out = outs;
            drain(&mut tmp, conn)
        }
    }

    fn connect_learner(p: &mut Pair, conn: ConnId, now: i64) -> i64 {
        assert!(p.learner.accept(conn, addr(conn as u8), now));
        p.learner.connect(
            conn,
            &ConnectRequest {
                time_out: 4000,
                passwd: vec![0; 16],
                has_read_only: true,
                ..Default::default()
            },
            now,
        );
        // Nothing is answered before the leader logged the createSession.
        assert!(matches!(p.learner.out.as_slice(), [Output::Forward { .. }]));
        p.run(now);
        let outs = std::mem::take(&mut p.learner_out);
        let frame = outs
            .iter()
            .find_map(|o| match o {
                Output::Send { conn: c, frame } if *c == conn => Some(frame.clone()),
                _ => None,
            })
            .expect("a ConnectResponse");
        let rsp = ConnectResponse::from_bytes(&frame[4..]).unwrap();
        assert!(rsp.session_id != 0);
        rsp.session_id
    }

    fn learner_send(p: &mut Pair, conn: ConnId, xid: i32, req: &Request, now: i64) {
        let mut w = Writer::new();
        req.encode_body(&mut w);
        p.learner
            .request(conn, xid, req.op_code() as i32, &w.buf, now);
        p.run(now);
    }

    #[test]
    fn a_learners_session_and_writes_go_through_the_leader() {
        let mut p = Pair::new();
        let sid = connect_learner(&mut p, 1, T0);
        // The session is global: the leader tracks it (and would expire it).
        assert!(p.leader.sessions.get(sid).is_some());
        assert!(p.learner.sessions.get(sid).is_some());

        learner_send(&mut p, 1, 1, &create("/e", CreateMode::Ephemeral), T0);
        let (xid, zxid, err, body) = one_reply(&p.learner_replies(1));
        assert_eq!((xid, err), (1, 0));
        assert_eq!(zxid, EPOCH_BASE + 2, "createSession took counter 1");
        assert_eq!(CreateResponse::from_bytes(&body).unwrap().path, "/e");
        for t in [&p.leader.tree, &p.learner.tree] {
            assert_eq!(t.get("/e").unwrap().stat.ephemeral_owner, sid);
        }

        // A failing write: the leader's prep decides, the learner answers.
        learner_send(
            &mut p,
            1,
            2,
            &Request::SetData(SetDataRequest {
                path: "/e".into(),
                data: Some(b"x".to_vec()),
                version: 7,
            }),
            T0,
        );
        let (_, _, err, _) = one_reply(&p.learner_replies(1));
        assert_eq!(err, ErrorCode::BadVersion.code());

        // A malformed write: the leader logs MarshallingError, the learner answers it.
        p.learner.request(1, 3, OpCode::SetData as i32, &[0, 0], T0);
        p.run(T0);
        let (xid, _, err, _) = one_reply(&p.learner_replies(1));
        assert_eq!((xid, err), (3, ErrorCode::MarshallingError.code()));

        // Reads are local and see the session's own writes.
        learner_send(
            &mut p,
            1,
            4,
            &Request::GetData(GetDataRequest {
                path: "/e".into(),
                watch: false,
            }),
            T0,
        );
        let (_, _, err, _) = one_reply(&p.learner_replies(1));
        assert_eq!(err, 0);

        // sync is a barrier through zab, answered with the path.
        learner_send(
            &mut p,
            1,
            5,
            &Request::Sync(SyncRequest { path: "/e".into() }),
            T0,
        );
        let (xid, _, err, body) = one_reply(&p.learner_replies(1));
        assert_eq!((xid, err), (5, 0));
        assert_eq!(SyncResponse::from_bytes(&body).unwrap().path, "/e");
        assert_eq!(
            p.leader.tree.last_processed_zxid,
            p.learner.tree.last_processed_zxid
        );
    }

    #[test]
    fn the_leader_expires_a_learners_session_unless_its_pings_touch_it() {
        let mut p = Pair::new();
        let sid = connect_learner(&mut p, 1, T0);
        learner_send(&mut p, 1, 1, &create("/e", CreateMode::Ephemeral), T0);
        p.learner_replies(1);
        // The learner reports its clients' activity; the leader keeps the session.
        let mut now = T0;
        for _ in 0..10 {
            now += 1000;
            learner_send(&mut p, 1, -2, &Request::Ping, now);
            let touches = p.learner.take_session_touches();
            assert_eq!(touches, vec![(sid, 4000)]);
            p.leader.touch_sessions(&touches, now);
            p.leader.tick(now);
            p.learner.tick(now);
            p.run(now);
        }
        assert!(p.leader.tree.get("/e").is_some());
        p.learner_replies(1);
        // Silence: the leader (never the learner) expires it, and both drop the ephemeral;
        // the learner closes the connection that still carried the session.
        now += 10_000;
        p.learner.tick(now);
        p.run(now);
        assert!(
            p.learner.tree.get("/e").is_some(),
            "learners never expire sessions"
        );
        p.leader.tick(now);
        p.run(now);
        assert!(p.leader.tree.get("/e").is_none());
        assert!(p.learner.tree.get("/e").is_none());
        assert!(p.learner.sessions.get(sid).is_none());
        assert!(matches!(p.learner_replies(1).last(), Some(Sent::Close)));
    }

    #[test]
    fn a_role_change_closes_clients_and_restarts_prep_from_the_tree() {
        let mut p = Pair::new();
        connect_learner(&mut p, 1, T0);
        p.learner.set_replication(Replication::Unavailable, 0, T0);
        assert!(p
            .learner
            .take_output()
            .iter()
            .any(|o| matches!(o, Output::Close { conn: 1 })));
        assert!(p.learner.conns.is_empty());
        // Without a leader, a new client is turned away.
        assert!(p.learner.accept(2, addr(2), T0));
        p.learner.connect(2, &ConnectRequest::default(), T0);
        assert!(p
            .learner
            .take_output()
            .iter()
            .any(|o| matches!(o, Output::Close { conn: 2 })));
    }
}
