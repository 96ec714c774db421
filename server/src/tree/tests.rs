use super::*;
use zkd_proto::txn::*;

fn hdr(zxid: i64, ty: OpCode, client: i64) -> TxnHeader {
    TxnHeader {
        client_id: client,
        cxid: 0,
        zxid,
        time: 1000 + zxid,
        txn_type: ty as i32,
    }
}

fn create(
    t: &mut DataTree,
    zxid: i64,
    path: &str,
    ephemeral: bool,
    parent_cversion: i32,
) -> TxnResult {
    let mut out = Vec::new();
    t.process_txn(
        &hdr(zxid, OpCode::Create, 7),
        &TxnBody::Create(CreateTxn {
            path: path.into(),
            data: Some(b"x".to_vec()),
            acl: Acl::open_unsafe(),
            ephemeral,
            parent_cversion,
        }),
        &mut out,
    )
}

#[test]
fn fresh_tree_stats_match_zookeeper() {
    let t = DataTree::new();
    // Root stores cversion 0 and has one child: ZooKeeper serves -1.
    assert_eq!(t.get("/").unwrap().client_stat().cversion, -1);
    assert_eq!(t.get("/zookeeper").unwrap().client_stat().cversion, -2);
    assert_eq!(
        t.get("/zookeeper/config").unwrap().acl.as_ref(),
        &Acl::read_unsafe()
    );
}

#[test]
fn cversion_is_served_from_the_create_count() {
    let mut t = DataTree::new();
    create(&mut t, 1, "/a", false, 1);
    create(&mut t, 2, "/a/b", false, 1);
    create(&mut t, 3, "/a/c", false, 2);
    let s = t.get("/a").unwrap().client_stat();
    assert_eq!((s.cversion, s.num_children, s.pzxid), (2, 2, 3));
    let mut out = Vec::new();
    t.process_txn(
        &hdr(4, OpCode::Delete, 7),
        &TxnBody::Delete(DeleteTxn {
            path: "/a/b".into(),
        }),
        &mut out,
    );
    let s = t.get("/a").unwrap().client_stat();
    // A delete raises the visible cversion and moves pzxid.
    assert_eq!((s.cversion, s.num_children, s.pzxid), (3, 1, 4));
}

#[test]
fn close_session_removes_ephemerals_and_fires_watches() {
    let mut t = DataTree::new();
    create(&mut t, 1, "/e", true, 1);
    assert_eq!(t.ephemerals_of(7), vec!["/e".to_string()]);
    t.data_watches.add_watch("/e", 42, WatchMode::Standard);
    let mut out = Vec::new();
    t.process_txn(
        &hdr(2, OpCode::CloseSession, 7),
        &TxnBody::CloseSession(CloseSessionTxn {
            paths_to_delete: vec!["/e".into()],
        }),
        &mut out,
    );
    assert!(t.get("/e").is_none());
    assert!(t.ephemerals_of(7).is_empty());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event.event_type, event_type::NODE_DELETED);
    assert_eq!(out[0].zxid, 2);
}

#[test]
fn failed_multi_reports_ok_then_error_then_runtime_inconsistency() {
    let mut t = DataTree::new();
    let mut out = Vec::new();
    let rc = t.process_txn(
        &hdr(1, OpCode::Multi, 7),
        &TxnBody::Multi(vec![
            (
                OpCode::Create as i32,
                TxnBody::Create(CreateTxn {
                    path: "/m".into(),
                    data: None,
                    acl: Acl::open_unsafe(),
                    ephemeral: false,
                    parent_cversion: 1,
                }),
            ),
            (OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: -103 })),
            (OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: -2 })),
        ]),
        &mut out,
    );
    assert!(t.get("/m").is_none(), "a failed multi leaves no trace");
    assert!(out.is_empty(), "a failed multi fires no watch");
    let errs: Vec<i32> = rc.multi.iter().map(|r| r.err).collect();
    assert_eq!(errs, vec![0, -103, -2]);
}

fn mk(t: &mut DataTree, zxid: i64, path: &str, data: &[u8]) {
    let mut out = Vec::new();
    let parent = zkd_proto::path::parent(path).to_string();
    let pc = t.get(&parent).unwrap().stat.cversion + 1;
    let rc = t.process_txn(
        &hdr(zxid, OpCode::Create, 7),
        &TxnBody::Create(CreateTxn {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: pc,
        }),
        &mut out,
    );
    assert_eq!(rc.err, 0, "{path}");
}

#[test]
fn quota_stats_follow_the_subtree() {
    let mut t = DataTree::new();
    mk(&mut t, 1, "/q", b"12");
    mk(&mut t, 2, "/q/a", b"345");
    // What zkCli's setquota does: the limits node, then the stats node.
    mk(&mut t, 3, "/zookeeper/quota/q", b"");
    mk(
        &mut t,
        4,
        "/zookeeper/quota/q/zookeeper_limits",
        b"count=-1,bytes=-1=;countHardLimit=3",
    );
    mk(
        &mut t,
        5,
        "/zookeeper/quota/q/zookeeper_stats",
        b"count=0,bytes=0",
    );
    let stats = |t: &DataTree| {
        String::from_utf8(
            t.get("/zookeeper/quota/q/zookeeper_stats")
                .unwrap()
                .data()
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    assert_eq!(stats(&t), "count=2,bytes=5");
    mk(&mut t, 6, "/q/b", b"6789");
    assert_eq!(stats(&t), "count=3,bytes=9");
    let mut out = Vec::new();
    t.process_txn(
        &hdr(7, OpCode::SetData, 7),
        &TxnBody::SetData(SetDataTxn {
            path: "/q/a".into(),
            data: None,
            version: 1,
        }),
        &mut out,
    );
    assert_eq!(stats(&t), "count=3,bytes=6");
    t.process_txn(
        &hdr(8, OpCode::Delete, 7),
        &TxnBody::Delete(DeleteTxn {
            path: "/q/b".into(),
        }),
        &mut out,
    );
    assert_eq!(stats(&t), "count=2,bytes=2");
    assert_eq!(t.max_prefix_with_quota("/q/a/x"), Some("/q".to_string()));
    assert_eq!(t.max_prefix_with_quota("/qq"), None);
}

#[test]
fn stats_track_text_matches_zookeeper() {
    let t = StatsTrack::parse(Some(
        b"count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3",
    ));
    assert_eq!(t.get("countHardLimit"), 3);
    assert_eq!(t.get("bytes"), -1);
    assert_eq!(
        t.to_text(),
        "count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3"
    );
    assert_eq!(
        StatsTrack::parse(Some(b"count=5,bytes=7")).to_text(),
        "count=5,bytes=7"
    );
}

#[test]
fn replayed_create_of_an_existing_child_still_moves_the_parent_forward() {
    // A fuzzy snapshot can hold the child but the parent's older cversion.
    let mut t = DataTree::new();
    create(&mut t, 1, "/p", false, 1);
    create(&mut t, 2, "/p/c", false, 1);
    let p = t.nodes.lookup("/p").unwrap();
    t.nodes.update_stat(p, |s| s.cversion = 0);
    let rc = create(&mut t, 2, "/p/c", false, 1);
    assert_eq!(rc.err, ErrorCode::NodeExists.code());
    let p = t.get("/p").unwrap();
    assert_eq!((p.stat.cversion, p.stat.pzxid), (1, 2));
}

#[test]
fn replayed_create_under_a_later_incarnation_of_its_parent_is_skipped() {
    // The fuzzy snapshot's walk reached /p after it had been deleted and created again at
    // zxid 9: the creates and deletes of /p's old children replayed over it belong to the
    // old /p and must leave the new one's cversion and pzxid alone.
    let mut t = DataTree::new();
    create(&mut t, 9, "/p", false, 1);
    let rc = create(&mut t, 3, "/p/old", false, 1);
    assert_eq!(rc.err, ErrorCode::NoNode.code());
    assert!(t.get("/p/old").is_none());
    let mut out = Vec::new();
    t.process_txn(
        &hdr(4, OpCode::Delete, 7),
        &TxnBody::Delete(DeleteTxn {
            path: "/p/old".into(),
        }),
        &mut out,
    );
    let p = t.get("/p").unwrap().client_stat();
    assert_eq!((p.cversion, p.pzxid, p.czxid), (0, 9, 9));
    assert!(out.is_empty());
}
