//! The other direction of snapshot compatibility: Apache ZooKeeper 3.8 starts from a
//! snapshot file zkd wrote, and serves exactly the tree zkd had (data, Stat, ACLs).
//! Skips (and passes) without the Debian packages unless ZKD_REQUIRE_REFERENCE is set.

use std::process::{Command, Stdio};
use std::time::Duration;

use zkd_client::Client;
use zkd_proto::records::Acl;
use zkd_proto::txn::{CreateTxn, SetAclTxn, SetDataTxn, TxnBody, TxnHeader};
use zkd_proto::OpCode;
use zkd_server::tree::snapshot::SnapshotSession;
use zkd_server::tree::DataTree;

struct ApacheZk(String);

impl Drop for ApacheZk {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../compat/stop-apache-zk.sh"
            ))
            .arg(&self.0)
            .status();
    }
}

fn apply(t: &mut DataTree, zxid: i64, ty: OpCode, body: TxnBody) {
    let h = TxnHeader {
        client_id: 0x0100_0000_0000_0001,
        cxid: 0,
        zxid,
        time: 1_700_000_000_000 + zxid,
        txn_type: ty as i32,
    };
    let rc = t.process_txn(&h, &body, &mut Vec::new());
    assert_eq!(rc.err, 0, "txn {zxid}");
}

fn create(t: &mut DataTree, zxid: i64, path: &str, data: Option<&[u8]>, acl: Vec<Acl>) {
    let parent_cversion = t.get(zkd_proto::path::parent(path)).unwrap().stat.cversion + 1;
    apply(
        t,
        zxid,
        OpCode::Create,
        TxnBody::Create(CreateTxn {
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            acl,
            ephemeral: false,
            parent_cversion,
        }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_zookeeper_starts_from_a_zkd_snapshot() {
    if !std::path::Path::new("/usr/share/java/zookeeper.jar").exists() {
        assert!(
            std::env::var("ZKD_REQUIRE_REFERENCE").is_err(),
            "ZKD_REQUIRE_REFERENCE is set but Apache ZooKeeper is not installed"
        );
        eprintln!("SKIPPED: Apache ZooKeeper from Debian is not installed");
        return;
    }
    let open = Acl::open_unsafe();
    let mut t = DataTree::new();
    create(&mut t, 1, "/app", Some(b"root"), open.clone());
    create(&mut t, 2, "/app/a", Some(b"alpha"), open.clone());
    create(&mut t, 3, "/app/b", None, Acl::read_unsafe());
    create(&mut t, 4, "/app/c", Some(b""), open.clone());
    apply(
        &mut t,
        5,
        OpCode::SetData,
        TxnBody::SetData(SetDataTxn {
            path: "/app/a".into(),
            data: Some(b"alpha2".to_vec()),
            version: 1,
        }),
    );
    apply(
        &mut t,
        6,
        OpCode::SetAcl,
        TxnBody::SetAcl(SetAclTxn {
            path: "/app/c".into(),
            acl: vec![Acl::new(
                31,
                "digest",
                &zkd_server::acl::generate_digest("alice:secret"),
            )],
            version: 1,
        }),
    );
    let mut bytes = Vec::new();
    t.serialize_snapshot(&[] as &[SnapshotSession], &mut bytes);

    let dir = std::env::temp_dir().join(format!("zkd-zk-loads-ours-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join(format!("snapshot.{:x}", t.last_processed_zxid));
    std::fs::write(&snap, &bytes).unwrap();
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../compat/start-apache-zk.sh"
        ))
        .arg(dir.join("zk"))
        .env("ZK_SEED_SNAPSHOT", &snap)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = line.split_whitespace();
    let port = parts.next().expect("PORT PID").to_string();
    let _zk = ApacheZk(parts.next().expect("PID").to_string());

    let c = Client::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(10))
        .await
        .expect("connect to Apache ZooKeeper");
    // /app/c's digest ACL came through: without the credentials it is refused...
    assert!(c.get_acl("/app/c").await.is_err());
    // ...and with them it reads back exactly.
    c.add_auth("digest", b"alice:secret").await.unwrap();
    for path in ["/app", "/app/a", "/app/b", "/app/c"] {
        let ours = t.get(path).unwrap();
        let (acl, acl_stat) = c.get_acl(path).await.unwrap();
        assert_eq!(acl, **ours.acl, "{path} ACL");
        assert_eq!(acl_stat, ours.client_stat(), "{path} Stat");
        let (data, _) = c.get_data_raw(path, false).await.unwrap();
        assert_eq!(
            data.as_deref(),
            ours.data(),
            "{path} data (null stays null)"
        );
    }
    let mut children = c.get_children("/app", false).await.unwrap();
    children.sort();
    assert_eq!(children, vec!["a", "b", "c"]);
    let _ = std::fs::remove_dir_all(&dir);
}
