//! `ZooKeeper` (the session type) against a live server: every operation through a
//! chroot, watches as futures and streams, multi/multiRead, digest auth, TTL and container
//! creates, the state stream. Run against zkd and Apache ZooKeeper by .ci/run.

mod common;

use std::time::Duration;

use common::*;
use zkd_client::{
    event_type, first_error, keeper_state, perms, watcher_type, Acl, CreateMode, CreateOptions,
    Error, ErrorCode, MultiResult, SessionOptions, SessionState, ZooKeeper,
};

#[tokio::test]
async fn every_op_through_a_chroot() {
    let Some(addr) = live_addr("every_op_through_a_chroot") else {
        return;
    };
    let plain = connect(&addr).await;
    let base = root(&plain, "chroot").await;
    // Two hosts, one of them dead: the session must still open (on the live one).
    let dead = "127.0.0.1:1";
    let cs = format!("{dead},{addr}{base}");
    let zk = ZooKeeper::connect_with(SessionOptions::new(&cs, TIMEOUT).seed(1))
        .await
        .unwrap();
    assert_eq!(zk.chroot(), Some(base.as_str()));
    assert_eq!(zk.state(), SessionState::Connected);
    assert_eq!(zk.negotiated_timeout(), TIMEOUT);

    let (p, stat) = zk
        .create("/a", b"one", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(p, "/a");
    assert_eq!(stat.version, 0);
    // The node really sits under the chroot.
    assert_eq!(
        plain.get_data(&format!("{base}/a")).await.unwrap().0,
        b"one"
    );
    let (seq, _) = zk
        .create(
            "/a/s-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(seq, "/a/s-0000000000");
    let (eph, st) = zk
        .create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    assert_eq!(st.ephemeral_owner, zk.session_id());
    assert_eq!(zk.get_ephemerals("/").await.unwrap(), vec![eph.clone()]);
    let (cont, _) = zk
        .create("/c", b"", &CreateOptions::new(CreateMode::Container))
        .await
        .unwrap();
    assert_eq!(cont, "/c");
    let (ttl, st) = zk
        .create(
            "/t",
            b"",
            &CreateOptions::new(CreateMode::PersistentWithTtl).ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(ttl, "/t");
    assert_eq!(st.ephemeral_owner, 0, "TTL nodes show owner 0");
    assert!(matches!(
        zk.create("/a", b"", &CreateOptions::default()).await,
        Err(Error::Keeper(ErrorCode::NodeExists))
    ));

    let st = zk.set_data("/a", b"two", 0).await.unwrap();
    assert_eq!(st.version, 1);
    assert!(matches!(
        zk.set_data("/a", b"x", 0).await,
        Err(Error::Keeper(ErrorCode::BadVersion))
    ));
    let (d, st) = zk.get_data("/a").await.unwrap();
    assert_eq!((d.as_slice(), st.version), (&b"two"[..], 1));
    assert_eq!(zk.exists("/a").await.unwrap().unwrap().num_children, 1);
    assert_eq!(zk.exists("/nope").await.unwrap(), None);
    let (mut kids, st) = zk.get_children("/").await.unwrap();
    kids.sort();
    assert_eq!(kids, ["a", "c", "e", "t"]);
    assert_eq!(st.num_children, 4);
    assert_eq!(zk.get_all_children_number("/").await.unwrap(), 5);
    assert_eq!(zk.sync("/a").await.unwrap(), "/a");

    let (acl, _) = zk.get_acl("/a").await.unwrap();
    assert_eq!(acl, Acl::open_unsafe());
    let read_admin = vec![Acl::new(perms::READ | perms::ADMIN, "world", "anyone")];
    let st = zk.set_acl("/a", &read_admin, 0).await.unwrap();
    assert_eq!(st.aversion, 1);
    assert!(matches!(
        zk.set_data("/a", b"x", -1).await,
        Err(Error::Keeper(ErrorCode::NoAuth))
    ));
    zk.set_acl("/a", &Acl::open_unsafe(), 1).await.unwrap();

    assert!(matches!(
        zk.delete("/a", -1).await,
        Err(Error::Keeper(ErrorCode::NotEmpty))
    ));
    zk.delete("/a/s-0000000000", 0).await.unwrap();
    zk.delete("/a", 1).await.unwrap();
    assert!(!zk.who_am_i().await.unwrap().is_empty());
    // getConfig reads /zookeeper/config, outside the chroot; reconfig is disabled on both
    // servers (zkd has no ensembles, ZooKeeper has reconfigEnabled=false by default).
    let (_, cfg_stat) = zk.get_config().await.unwrap();
    assert_eq!(
        cfg_stat.czxid,
        plain
            .exists("/zookeeper/config")
            .await
            .unwrap()
            .unwrap()
            .czxid
    );
    assert!(matches!(
        zk.reconfig(None, None, Some("server.1=127.0.0.1:1:2"), -1)
            .await,
        Err(Error::Keeper(ErrorCode::ReconfigDisabled))
    ));

    // "/" of the chroot is the chroot node itself.
    assert_eq!(
        zk.get_data("/").await.unwrap().1.czxid,
        plain.exists(&base).await.unwrap().unwrap().czxid
    );
    zk.close().await.unwrap();
    assert_eq!(zk.state(), SessionState::Closed);
    assert!(matches!(zk.get_data("/").await, Err(Error::SessionExpired)));
    // Ephemerals went with the session.
    assert_eq!(plain.exists(&format!("{base}{eph}")).await.unwrap(), None);
    delete_tree(&plain, &base).await;
    plain.close().await.unwrap();
}

#[tokio::test]
async fn one_shot_watches_are_futures_with_chroot_paths() {
    let Some(addr) = live_addr("one_shot_watches") else {
        return;
    };
    let plain = connect(&addr).await;
    let base = root(&plain, "watches").await;
    let zk = connect(&format!("{addr}{base}")).await;
    let other = connect(&format!("{addr}{base}")).await;

    // exists on a missing node: NodeCreated.
    let (st, w) = zk.exists_w("/n").await.unwrap();
    assert!(st.is_none());
    other
        .create("/n", b"", &CreateOptions::default())
        .await
        .unwrap();
    let ev = within(10, "NodeCreated", w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_CREATED, "/n")
    );

    // getData: NodeDataChanged, exactly once.
    let (_, _, w) = zk.get_data_w("/n").await.unwrap();
    other.set_data("/n", b"1", -1).await.unwrap();
    let ev = within(10, "NodeDataChanged", w).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/n")
    );

    // getChildren: NodeChildrenChanged; the parent's own data watch is untouched.
    let (_, _, cw) = zk.get_children_w("/n").await.unwrap();
    let (_, _, mut dw) = zk.get_data_w("/n").await.unwrap();
    other
        .create("/n/k", b"", &CreateOptions::default())
        .await
        .unwrap();
    let ev = within(10, "NodeChildrenChanged", cw).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_CHILDREN_CHANGED, "/n")
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut dw)
            .await
            .is_err(),
        "a child create must not fire a data watch"
    );
    other.delete("/n/k", -1).await.unwrap();
    other.delete("/n", -1).await.unwrap();
    let ev = within(10, "NodeDeleted", dw).await;
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DELETED, "/n")
    );

    // removeWatches: the local future learns its watch was removed.
    other
        .create("/r", b"", &CreateOptions::default())
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_w("/r").await.unwrap();
    zk.remove_watches("/r", watcher_type::DATA).await.unwrap();
    let ev = within(10, "DataWatchRemoved", w).await;
    assert_eq!(ev.event_type, event_type::DATA_WATCH_REMOVED);
    assert!(matches!(
        zk.remove_watches("/r", watcher_type::DATA).await,
        Err(Error::Keeper(ErrorCode::NoWatcher))
    ));

    // Closing the session resolves an outstanding watch with Closed.
    let (_, _, w) = zk.get_data_w("/r").await.unwrap();
    zk.close().await.unwrap();
    let ev = within(10, "Closed", w).await;
    assert_eq!(
        (ev.event_type, ev.state),
        (event_type::NONE, keeper_state::CLOSED)
    );
    other.close().await.unwrap();
    delete_tree(&plain, &base).await;
    plain.close().await.unwrap();
}

#[tokio::test]
async fn persistent_watches_are_streams_removed_on_drop() {
    let Some(addr) = live_addr("persistent_watches") else {
        return;
    };
    let plain = connect(&addr).await;
    let base = root(&plain, "persistent").await;
    let zk = connect(&format!("{addr}{base}")).await;
    let other = connect(&format!("{addr}{base}")).await;
    let o = CreateOptions::default();

    let mut p = zk.watch("/p").await.unwrap();
    let mut r = zk.watch_recursive("/").await.unwrap();
    other.create("/p", b"", &o).await.unwrap();
    other.set_data("/p", b"1", -1).await.unwrap();
    other.create("/p/q", b"", &o).await.unwrap();
    other.set_data("/p/q", b"2", -1).await.unwrap();
    let want_p = [
        (event_type::NODE_CREATED, "/p"),
        (event_type::NODE_DATA_CHANGED, "/p"),
        (event_type::NODE_CHILDREN_CHANGED, "/p"),
    ];
    for (t, path) in want_p {
        let ev = within(10, "persistent event", p.next()).await.unwrap();
        assert_eq!((ev.event_type, ev.path.as_str()), (t, path));
    }
    let want_r = [
        (event_type::NODE_CREATED, "/p"),
        (event_type::NODE_DATA_CHANGED, "/p"),
        (event_type::NODE_CREATED, "/p/q"),
        (event_type::NODE_DATA_CHANGED, "/p/q"),
    ];
    for (t, path) in want_r {
        let ev = within(10, "recursive event", r.next()).await.unwrap();
        assert_eq!((ev.event_type, ev.path.as_str()), (t, path));
    }
    // Still there after firing: persistent.
    other.delete("/p/q", -1).await.unwrap();
    let ev = within(10, "recursive delete", r.next()).await.unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DELETED, "/p/q")
    );
    let ev = within(10, "child change", p.next()).await.unwrap();
    assert_eq!(ev.event_type, event_type::NODE_CHILDREN_CHANGED);

    // Dropping the stream removes the server-side watch: removing it again is NoWatcher.
    // (The removal is sent by a spawned task; give it a moment.)
    drop(p);
    // (ANY, because ZooKeeper before 3.9 refuses the PERSISTENT type with
    // MarshallingError, ZOOKEEPER-4472.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        zk.remove_watches("/p", watcher_type::ANY).await,
        Err(Error::Keeper(ErrorCode::NoWatcher))
    ));
    // The explicit way: removeWatches ends the stream with PersistentWatchRemoved.
    zk.remove_watches("/", watcher_type::ANY).await.unwrap();
    let ev = within(10, "removed", r.next()).await.unwrap();
    assert_eq!(ev.event_type, event_type::PERSISTENT_WATCH_REMOVED);
    assert!(within(10, "end", r.next()).await.is_none());

    zk.close().await.unwrap();
    other.close().await.unwrap();
    delete_tree(&plain, &base).await;
    plain.close().await.unwrap();
}

#[tokio::test]
async fn multi_and_multi_read_per_op_results() {
    let Some(addr) = live_addr("multi") else {
        return;
    };
    let plain = connect(&addr).await;
    let base = root(&plain, "multi").await;
    let zk = connect(&format!("{addr}{base}")).await;
    let o = CreateOptions::default();

    let res = zk
        .multi()
        .create("/m", b"a", &o)
        .create(
            "/m/s-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .set_data("/m", b"b", 0)
        .check("/m", 1)
        .commit()
        .await
        .unwrap();
    assert_eq!(res.len(), 4, "{res:?}");
    // ZooKeeper 3.8 answers a create2 op inside a multi with a plain Create result (path
    // only); zkd with Create2 (path and Stat). Either way the path is chroot-relative.
    let created = |r: &MultiResult| match r {
        MultiResult::Create { path } | MultiResult::Create2 { path, .. } => path.clone(),
        other => panic!("not a create result: {other:?}"),
    };
    assert_eq!(created(&res[0]), "/m");
    assert_eq!(created(&res[1]), "/m/s-0000000000");
    assert!(matches!(&res[2], MultiResult::SetData { stat } if stat.version == 1));
    assert_eq!(res[3], MultiResult::Check);

    // A failing transaction: per-op results, nothing applied.
    let res = zk
        .multi()
        .create("/x", b"", &o)
        .delete("/m", 5)
        .set_data("/m", b"c", -1)
        .run()
        .await
        .unwrap();
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
    assert!(matches!(
        first_error(&res),
        Some((1, Error::Keeper(ErrorCode::BadVersion)))
    ));
    assert_eq!(zk.exists("/x").await.unwrap(), None);
    assert!(matches!(
        zk.multi().check("/m", 9).commit().await,
        Err(Error::Keeper(ErrorCode::BadVersion))
    ));

    let res = zk
        .multi_read()
        .get_data("/m")
        .get_children("/m")
        .get_data("/missing")
        .run()
        .await
        .unwrap();
    assert!(matches!(&res[0], MultiResult::GetData { data: Some(d), .. } if d == b"b"));
    assert_eq!(
        res[1],
        MultiResult::GetChildren {
            children: vec!["s-0000000000".into()]
        }
    );
    assert_eq!(
        res[2],
        MultiResult::Error {
            err: ErrorCode::NoNode.code()
        }
    );

    zk.close().await.unwrap();
    delete_tree(&plain, &base).await;
    plain.close().await.unwrap();
}

#[tokio::test]
async fn digest_auth_and_creator_acl() {
    let Some(addr) = live_addr("digest_auth") else {
        return;
    };
    let plain = connect(&addr).await;
    let base = root(&plain, "auth").await;
    let zk = connect(&format!("{addr}{base}")).await;
    zk.add_auth("digest", b"alice:secret").await.unwrap();
    assert!(zk
        .who_am_i()
        .await
        .unwrap()
        .iter()
        .any(|c| c.auth_scheme == "digest" && c.user.starts_with("alice")));
    zk.create(
        "/private",
        b"s",
        &CreateOptions::default().acl(Acl::creator_all()),
    )
    .await
    .unwrap();
    let (acl, _) = zk.get_acl("/private").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(
        (acl[0].perms, acl[0].id.scheme.as_str()),
        (perms::ALL, "digest")
    );
    assert!(acl[0].id.id.starts_with("alice:"));
    assert_eq!(zk.get_data("/private").await.unwrap().0, b"s");
    // Another session without the credential is refused.
    let stranger = connect(&format!("{addr}{base}")).await;
    assert!(matches!(
        stranger.get_data("/private").await,
        Err(Error::Keeper(ErrorCode::NoAuth))
    ));
    // A bad scheme is AuthFailed, and AuthFailed is terminal.
    let r = stranger.add_auth("no-such-scheme", b"x").await;
    assert!(
        matches!(r, Err(Error::Keeper(ErrorCode::AuthFailed))),
        "{r:?}"
    );
    within(
        10,
        "AuthFailed",
        stranger.wait_for_state(TIMEOUT, |s| s == SessionState::AuthFailed),
    )
    .await
    .unwrap();
    assert!(matches!(
        stranger.exists("/").await,
        Err(Error::Keeper(ErrorCode::AuthFailed))
    ));
    zk.close().await.unwrap();
    delete_tree(&plain, &base).await;
    plain.close().await.unwrap();
}

#[tokio::test]
async fn state_stream_and_drop_without_close() {
    let Some(addr) = live_addr("state_stream") else {
        return;
    };
    let plain = connect(&addr).await;
    let base = root(&plain, "states").await;
    let zk = ZooKeeper::connect(&format!("{addr}{base}"), Duration::from_secs(4))
        .await
        .unwrap();
    let mut states = zk.state_events();
    zk.create("/eph", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, w) = plain.exists_w(&format!("{base}/eph")).await.unwrap();
    // Dropping the last handle drops the socket without closeSession: the ephemeral stays
    // until the server expires the session.
    let sid = zk.session_id();
    drop(zk);
    assert!(plain
        .exists(&format!("{base}/eph"))
        .await
        .unwrap()
        .is_some());
    let ev = within(20, "expiry deletes the ephemeral", w).await;
    assert_eq!(ev.event_type, event_type::NODE_DELETED);
    assert_ne!(sid, 0);
    // The dropped client's state stream ended without inventing states.
    while let Ok(s) = states.try_recv() {
        assert_ne!(s, SessionState::Connected, "no reconnect after drop");
    }
    delete_tree(&plain, &base).await;
    plain.close().await.unwrap();
}
