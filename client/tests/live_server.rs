//! The client against a real server: Apache ZooKeeper (the reference) or zkd.
//!
//! Runs when `ZKD_TEST_ZK_ADDR=host:port` is set (or, under `ZKD_REQUIRE_REFERENCE=1`,
//! against an Apache ZooKeeper it starts itself); otherwise every test prints why it is
//! skipping and passes, so `cargo test` needs no server. The server must allow TTL
//! nodes (`zookeeper.extendedTypesEnabled=true`). Each test works under its own
//! `/zkd-client-<test>-<pid>` subtree, so tests may run in parallel against one server.
//!
//! The assertions record what Apache ZooKeeper 3.8.0 actually answers; where 3.9 differs
//! (notification zxids) both answers are accepted and the difference is noted.

use std::time::Duration;

use zkd_client::{
    add_watch_mode, event_type, keeper_state, op, watcher_type, Acl, Client, ConnectOptions,
    CreateMode, Error, ErrorCode, MultiResult, SessionState, SetWatches2,
};

const TIMEOUT: Duration = Duration::from_secs(10);

mod common;

/// The server (see `common::live_addr`: ZKD_TEST_ZK_ADDR, else an Apache ZooKeeper of our
/// own under ZKD_REQUIRE_REFERENCE=1, else skip).
fn live_addr(test: &str) -> Option<String> {
    common::live_addr(test)
}

/// Connects with a request timeout, so a server that never answers fails the test instead
/// of hanging it.
async fn connect(addr: &str) -> Client {
    Client::connect_with(
        ConnectOptions::new(addr, TIMEOUT).request_timeout(Some(Duration::from_secs(5))),
    )
    .await
    .expect("connect")
}

/// A fresh subtree for one test.
async fn root(c: &Client, test: &str) -> String {
    let root = format!("/zkd-client-{test}-{}", std::process::id());
    delete_tree(c, &root).await;
    c.create(&root, b"", &Acl::open_unsafe(), CreateMode::Persistent)
        .await
        .unwrap();
    root
}

async fn delete_tree(c: &Client, path: &str) {
    let mut stack = vec![path.to_string()];
    let mut order = vec![];
    while let Some(p) = stack.pop() {
        match c.get_children(&p, false).await {
            Ok(kids) => {
                for k in kids {
                    stack.push(format!("{p}/{k}"));
                }
                order.push(p);
            }
            Err(Error::Keeper(ErrorCode::NoNode)) => {}
            Err(e) => panic!("cleanup of {p}: {e}"),
        }
    }
    for p in order.into_iter().rev() {
        let _ = c.delete(&p, -1).await;
    }
}

#[tokio::test]
async fn every_op_once() {
    let Some(addr) = live_addr("every_op_once") else {
        return;
    };
    let c = connect(&addr).await;
    assert_eq!(c.state(), SessionState::Connected);
    assert_ne!(c.session_id(), 0);
    assert_eq!(c.session_password().len(), 16);
    assert_eq!(c.negotiated_timeout(), TIMEOUT);
    let r = root(&c, "ops").await;
    let open = Acl::open_unsafe();

    // create / create2 / sequential / ephemeral / container / ttl
    let p = c
        .create(&format!("{r}/a"), b"one", &open, CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(p, format!("{r}/a"));
    let (p, stat) = c
        .create2(&format!("{r}/b"), b"", &open, CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(p, format!("{r}/b"));
    assert_eq!((stat.version, stat.czxid), (0, stat.mzxid));
    assert_eq!(c.last_zxid(), stat.czxid, "last_zxid follows reply headers");
    let seq = c
        .create(
            &format!("{r}/s-"),
            b"",
            &open,
            CreateMode::PersistentSequential,
        )
        .await
        .unwrap();
    assert_eq!(seq, format!("{r}/s-0000000002"), "cversion-based suffix");
    let (_, stat) = c
        .create2(&format!("{r}/e"), b"", &open, CreateMode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(stat.ephemeral_owner, c.session_id());
    let (p, _) = c
        .create_container(&format!("{r}/c"), b"", &open)
        .await
        .unwrap();
    assert_eq!(p, format!("{r}/c"));
    let (p, stat) = c
        .create_ttl(
            &format!("{r}/t"),
            b"",
            &open,
            CreateMode::PersistentWithTtl,
            60_000,
        )
        .await
        .unwrap();
    assert_eq!(p, format!("{r}/t"));
    assert_eq!(
        stat.ephemeral_owner, 0,
        "TTL lives in ephemeralOwner only on disk"
    );
    // A TTL with a non-TTL mode is refused.
    let e = c
        .create_ttl(&format!("{r}/t2"), b"", &open, CreateMode::Persistent, 1000)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::BadArguments)), "{e:?}");
    let e = c
        .create(&format!("{r}/a"), b"", &open, CreateMode::Persistent)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::NodeExists)), "{e:?}");

    // exists / get_data / set_data
    assert!(c
        .exists(&format!("{r}/nope"), false)
        .await
        .unwrap()
        .is_none());
    let stat = c.exists(&format!("{r}/a"), false).await.unwrap().unwrap();
    assert_eq!(stat.data_length, 3);
    let (data, _) = c.get_data(&format!("{r}/a"), false).await.unwrap();
    assert_eq!(data, b"one");
    let stat = c.set_data(&format!("{r}/a"), b"two", 0).await.unwrap();
    assert_eq!(stat.version, 1);
    assert_eq!(c.last_zxid(), stat.mzxid);
    let e = c.set_data(&format!("{r}/a"), b"x", 0).await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::BadVersion)), "{e:?}");
    let (data, _) = c.get_data_raw(&format!("{r}/a"), false).await.unwrap();
    assert_eq!(data.as_deref(), Some(&b"two"[..]));

    // acl
    let (acl, stat) = c.get_acl(&format!("{r}/a")).await.unwrap();
    assert_eq!((acl, stat.aversion), (open.clone(), 0));
    let stat = c
        .set_acl(&format!("{r}/a"), &Acl::read_unsafe(), 0)
        .await
        .unwrap();
    assert_eq!(stat.aversion, 1);
    let e = c.set_data(&format!("{r}/a"), b"x", -1).await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::NoAuth)), "{e:?}");

    // children
    let mut kids = c.get_children(&r, false).await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["a", "b", "c", "e", "s-0000000002", "t"]);
    let (kids, stat) = c.get_children2(&r, false).await.unwrap();
    assert_eq!((kids.len(), stat.num_children), (6, 6));
    assert_eq!(c.get_all_children_number(&r).await.unwrap(), 6);
    assert_eq!(c.get_ephemerals(&r).await.unwrap(), vec![format!("{r}/e")]);

    // sync echoes the path, even a missing one.
    assert_eq!(c.sync(&r).await.unwrap(), r);
    assert_eq!(c.sync("/no/such").await.unwrap(), "/no/such");

    // check on its own: Apache ZooKeeper answers the failures; a *passing* standalone
    // check makes 3.8.0 throw a NullPointerException and never reply, so it is not sent.
    let e = c.check(&format!("{r}/b"), 7).await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::BadVersion)), "{e:?}");
    let e = c.check(&format!("{r}/nope"), 0).await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::NoNode)), "{e:?}");
    let e = c.check("bad-path", 0).await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::BadArguments)), "{e:?}");

    // multi with every write op kind, then multiRead.
    let res = c
        .multi(vec![
            op::create(&format!("{r}/m1"), b"", &open, CreateMode::Persistent),
            op::create2(&format!("{r}/m2"), b"", &open, CreateMode::Persistent),
            op::create_container(&format!("{r}/m3"), b"", &open),
            op::create_ttl(
                &format!("{r}/m4"),
                b"",
                &open,
                CreateMode::PersistentWithTtl,
                60_000,
            ),
            op::check(&format!("{r}/b"), 0),
            op::set_data(&format!("{r}/b"), b"bb", 0),
            op::delete(&format!("{r}/m1"), 0),
        ])
        .await
        .unwrap();
    assert_eq!(res.len(), 7, "{res:?}");
    assert_eq!(
        res[0],
        MultiResult::Create {
            path: format!("{r}/m1")
        }
    );
    // ZooKeeper 3.8 turns a create2 op inside a multi into a plain create (path only);
    // 3.9+ (ZOOKEEPER-4026) answers it as create2 with a Stat.
    match &res[1] {
        MultiResult::Create { path } => assert_eq!(*path, format!("{r}/m2")),
        MultiResult::Create2 { path, .. } => assert_eq!(*path, format!("{r}/m2")),
        other => panic!("{other:?}"),
    }
    // Container and TTL creates come back as create2 results, with a Stat.
    assert!(
        matches!(&res[2], MultiResult::Create2 { path, .. } if *path == format!("{r}/m3")),
        "{res:?}"
    );
    assert!(
        matches!(&res[3], MultiResult::Create2 { path, .. } if *path == format!("{r}/m4")),
        "{res:?}"
    );
    assert_eq!(res[4], MultiResult::Check);
    assert!(matches!(&res[5], MultiResult::SetData { stat } if stat.version == 1));
    assert_eq!(res[6], MultiResult::Delete);
    assert_eq!(c.multi(vec![]).await.unwrap(), vec![]);
    let res = c
        .multi_read(vec![
            op::get_data(&format!("{r}/b")),
            op::get_children(&format!("{r}/nope")),
            op::get_children(&format!("{r}/m2")),
        ])
        .await
        .unwrap();
    assert!(matches!(&res[0], MultiResult::GetData { data: Some(d), .. } if d == b"bb"));
    assert_eq!(
        res[1],
        MultiResult::Error { err: -101 },
        "multiRead is not atomic"
    );
    assert_eq!(res[2], MultiResult::GetChildren { children: vec![] });

    // watches managed on the server
    let e = c
        .check_watches(&format!("{r}/b"), watcher_type::DATA)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::NoWatcher)), "{e:?}");
    c.get_data(&format!("{r}/b"), true).await.unwrap();
    c.check_watches(&format!("{r}/b"), watcher_type::DATA)
        .await
        .unwrap();
    c.check_watches(&format!("{r}/b"), watcher_type::ANY)
        .await
        .unwrap();
    let e = c
        .check_watches(&format!("{r}/b"), watcher_type::CHILDREN)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::NoWatcher)), "{e:?}");
    c.remove_watches(&format!("{r}/b"), watcher_type::DATA)
        .await
        .unwrap();
    let e = c
        .remove_watches(&format!("{r}/b"), watcher_type::DATA)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::NoWatcher)), "{e:?}");
    c.add_watch(&format!("{r}/b"), add_watch_mode::PERSISTENT)
        .await
        .unwrap();
    c.remove_watches(&format!("{r}/b"), watcher_type::ANY)
        .await
        .unwrap();

    // auth
    c.add_auth("digest", b"user:secret").await.unwrap();
    let mut who = c.who_am_i().await.unwrap();
    who.sort_by(|a, b| a.auth_scheme.cmp(&b.auth_scheme));
    assert_eq!(who.len(), 2, "{who:?}");
    assert_eq!(
        (who[0].auth_scheme.as_str(), who[0].user.as_str()),
        ("digest", "user")
    );
    assert_eq!(who[1].auth_scheme, "ip");

    // a malformed body: MarshallingError, and the connection survives.
    let (h, body) = c.request_raw(4, vec![1, 2]).await.unwrap();
    assert_eq!(h.err, ErrorCode::MarshallingError.code());
    assert!(body.is_empty());
    assert!(c.exists(&r, false).await.unwrap().is_some());

    delete_tree(&c, &r).await;
    c.close().await.unwrap();
    assert_eq!(c.state(), SessionState::Closed);
    assert!(matches!(
        c.exists("/", false).await,
        Err(Error::SessionExpired)
    ));
}

#[tokio::test]
async fn watch_fires_before_the_reply_that_caused_it() {
    let Some(addr) = live_addr("watch_fires_before_the_reply_that_caused_it") else {
        return;
    };
    let c = connect(&addr).await;
    let other = connect(&addr).await;
    let r = root(&c, "watch").await;
    let node = format!("{r}/w");
    let open = Acl::open_unsafe();
    let mut events = c.take_events().unwrap();

    // Exist watch on a missing node, triggered by another session.
    assert!(c.exists(&node, true).await.unwrap().is_none());
    let (_, created) = other
        .create2(&node, b"", &open, CreateMode::Persistent)
        .await
        .unwrap();
    let ev = tokio::time::timeout(TIMEOUT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.state, ev.path.as_str()),
        (
            event_type::NODE_CREATED,
            keeper_state::SYNC_CONNECTED,
            node.as_str()
        )
    );
    // ZooKeeper 3.8 sends -1 as a notification's zxid; 3.9+ (ZOOKEEPER-4655) sends the
    // zxid of the txn that fired the watch.
    assert!(ev.zxid == -1 || ev.zxid == created.czxid, "{ev:?}");
    let before = c.last_zxid();
    assert!(
        before < created.czxid,
        "notifications must not move last_zxid"
    );

    // Data watch fired by this session's own setData: ZooKeeper writes the notification
    // before the setData reply, so it must be in the channel when set_data returns.
    c.get_data(&node, true).await.unwrap();
    let stat = c.set_data(&node, b"x", -1).await.unwrap();
    let ev = events.try_recv().expect("notification precedes the reply");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, node.as_str())
    );
    assert!(ev.zxid == -1 || ev.zxid == stat.mzxid, "{ev:?}");
    assert_eq!(c.last_zxid(), stat.mzxid);

    // Child watch and a persistent recursive watch fire on one create.
    c.get_children(&node, true).await.unwrap();
    c.add_watch(&r, add_watch_mode::PERSISTENT_RECURSIVE)
        .await
        .unwrap();
    c.create(&format!("{node}/k"), b"", &open, CreateMode::Persistent)
        .await
        .unwrap();
    let mut got = [events.try_recv().unwrap(), events.try_recv().unwrap()];
    got.sort_by_key(|e| e.event_type);
    assert_eq!(
        (got[0].event_type, got[0].path.clone()),
        (event_type::NODE_CREATED, format!("{node}/k"))
    );
    assert_eq!(
        (got[1].event_type, got[1].path.clone()),
        (event_type::NODE_CHILDREN_CHANGED, node.clone())
    );
    // Removing a watch on the server sends no *_WATCH_REMOVED notification (the Java
    // client makes those up locally).
    c.remove_watches(&r, watcher_type::ANY).await.unwrap();
    c.sync(&r).await.unwrap();
    assert!(events.try_recv().is_err());

    delete_tree(&c, &r).await;
    c.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test]
async fn failing_multi_reports_each_op() {
    let Some(addr) = live_addr("failing_multi_reports_each_op") else {
        return;
    };
    let c = connect(&addr).await;
    let r = root(&c, "multi").await;
    let open = Acl::open_unsafe();
    let zxid_before = c.exists(&r, false).await.unwrap().unwrap().pzxid;
    let res = c
        .multi(vec![
            op::create(&format!("{r}/x"), b"", &open, CreateMode::Persistent),
            op::check(&r, 5),
            op::delete(&r, -1),
        ])
        .await
        .expect("a failed multi is still a reply with header err 0");
    // Ops before the failure: 0; the failure: its code; after it: RuntimeInconsistency.
    assert_eq!(
        res,
        vec![
            MultiResult::Error { err: 0 },
            MultiResult::Error {
                err: ErrorCode::BadVersion.code()
            },
            MultiResult::Error {
                err: ErrorCode::RuntimeInconsistency.code()
            },
        ]
    );
    assert!(c.exists(&format!("{r}/x"), false).await.unwrap().is_none());
    assert_eq!(
        c.exists(&r, false).await.unwrap().unwrap().pzxid,
        zxid_before
    );
    delete_tree(&c, &r).await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn session_resume() {
    let Some(addr) = live_addr("session_resume") else {
        return;
    };
    let c = connect(&addr).await;
    let r = root(&c, "resume").await;
    let eph = format!("{r}/eph");
    c.create(&eph, b"", &Acl::open_unsafe(), CreateMode::Ephemeral)
        .await
        .unwrap();
    let (sid, pw, zxid) = (c.session_id(), c.session_password(), c.last_zxid());

    // The right password: same session, same password, ephemerals kept; the server drops
    // the old connection.
    let mut old_state = c.state_watcher();
    let resumed = Client::connect_with(
        ConnectOptions::new(&addr, Duration::from_secs(12))
            .session(sid, &pw)
            .last_zxid_seen(zxid),
    )
    .await
    .unwrap();
    assert_eq!(resumed.session_id(), sid);
    assert_eq!(resumed.session_password(), pw);
    assert_eq!(
        resumed.negotiated_timeout(),
        Duration::from_secs(12),
        "renegotiated"
    );
    assert_eq!(resumed.last_zxid(), zxid);
    let stat = resumed.exists(&eph, false).await.unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, sid);
    tokio::time::timeout(
        TIMEOUT,
        old_state.wait_for(|s| *s == SessionState::Disconnected),
    )
    .await
    .expect("the server closes the superseded connection")
    .unwrap();

    // SetWatches2 after resuming: a data watch relative to a zxid older than the node's
    // last change fires at once.
    let mut events = resumed.take_events().unwrap();
    resumed
        .set_watches(
            0,
            SetWatches2 {
                data_watches: vec![eph.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    resumed.sync(&r).await.unwrap();
    let ev = events.try_recv().expect("stale data watch fires at once");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, eph.as_str())
    );

    // A wrong password: SessionExpired. Apache ZooKeeper also closes the live connection
    // of that session before checking the password (the session itself survives); zkd
    // deliberately leaves it open. Either way the session must survive.
    let e = Client::connect_with(ConnectOptions::new(&addr, TIMEOUT).session(sid, &[0u8; 16]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SessionExpired), "{e:?}");
    let again = Client::connect_with(ConnectOptions::new(&addr, TIMEOUT).session(sid, &pw))
        .await
        .unwrap();
    assert!(again.exists(&eph, false).await.unwrap().is_some());

    // A session id the server never issued, and a closed session: SessionExpired.
    let e = Client::connect_with(ConnectOptions::new(&addr, TIMEOUT).session(0x7777, &[0u8; 16]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SessionExpired), "{e:?}");
    again.close().await.unwrap();
    let e = Client::connect_with(ConnectOptions::new(&addr, TIMEOUT).session(sid, &pw))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SessionExpired), "{e:?}");

    // A client that has seen a zxid from the future is hung up on.
    let e = Client::connect_with(ConnectOptions::new(&addr, TIMEOUT).last_zxid_seen(1 << 40))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ConnectionLoss), "{e:?}");

    let c = connect(&addr).await;
    assert!(
        c.exists(&eph, false).await.unwrap().is_none(),
        "ephemeral gone with session"
    );
    delete_tree(&c, &r).await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn auth_failure() {
    let Some(addr) = live_addr("auth_failure") else {
        return;
    };
    let c = connect(&addr).await;
    let e = c.add_auth("no-such-scheme", b"x").await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::AuthFailed)), "{e:?}");
    assert_eq!(c.state(), SessionState::AuthFailed);
    let e = c.exists("/", false).await.unwrap_err();
    assert!(matches!(e, Error::Keeper(ErrorCode::AuthFailed)), "{e:?}");
}

#[tokio::test]
async fn unknown_op_is_unimplemented_then_hangs_up() {
    let Some(addr) = live_addr("unknown_op_is_unimplemented_then_hangs_up") else {
        return;
    };
    let c = connect(&addr).await;
    let mut state = c.state_watcher();
    let (h, body) = c.request_raw(999, vec![]).await.unwrap();
    assert_eq!(
        (h.xid, h.zxid, h.err),
        (1, -1, ErrorCode::Unimplemented.code())
    );
    assert!(body.is_empty());
    tokio::time::timeout(
        TIMEOUT,
        state.wait_for(|s| *s == SessionState::Disconnected),
    )
    .await
    .expect("ZooKeeper closes the connection after an unknown op")
    .unwrap();
}

/// A `ZooKeeper` handle opened with `resume_session` takes over a live session (the Java
/// client's `new ZooKeeper(connectString, timeout, watcher, sessionId, sessionPasswd)`):
/// same id, its ephemerals kept, and closing the handle ends the session.
#[tokio::test]
async fn a_session_handle_resumes_an_existing_session() {
    let Some(addr) = live_addr("handle_resume") else {
        return;
    };
    let c = connect(&addr).await;
    let r = root(&c, "handle-resume").await;
    let eph = format!("{r}/eph");
    c.create(&eph, b"", &Acl::open_unsafe(), CreateMode::Ephemeral)
        .await
        .unwrap();
    let (sid, pw, zxid) = (c.session_id(), c.session_password(), c.last_zxid());
    let zk = zkd_client::ZooKeeper::connect_with(
        zkd_client::SessionOptions::new(&addr, Duration::from_secs(12))
            .resume_session(sid, &pw, zxid),
    )
    .await
    .unwrap();
    assert_eq!(zk.session_id(), sid);
    let stat = zk.exists(&eph).await.unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, sid);
    zk.close().await.unwrap();
    let c2 = connect(&addr).await;
    assert!(c2.exists(&eph, false).await.unwrap().is_none());
    delete_tree(&c2, &r).await;
    c2.close().await.unwrap();
}
