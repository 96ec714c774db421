//! Reads a snapshot written by Apache ZooKeeper 3.8.0 (tests/fixtures/zk-3.8.0-snapshot,
//! see its README.md) and checks that zkd decodes it exactly as ZooKeeper served it to
//! kazoo, that zkd's tree digest equals the one ZooKeeper stored, and that zkd writes the
//! same file back byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use zkd_server::tree::snapshot::{
    adler32, deserialize_snapshot, deserialize_snapshot_full, SnapshotError, SnapshotOptions,
    SnapshotSession, ZxidDigest,
};
use zkd_server::tree::{ttl_of_owner, DataTree};

const SNAPSHOT: &str = "snapshot.2d";
const SNAPSHOT_ZXID: i64 = 0x2d;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk-3.8.0-snapshot")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn text_fixture(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

struct Expected {
    fields: Vec<String>,
}

impl Expected {
    fn int(&self, i: usize) -> i64 {
        self.fields[i].parse().unwrap()
    }
}

/// expected-tree.txt: what kazoo read from ZooKeeper, one node per line.
fn expected_tree() -> BTreeMap<String, Expected> {
    text_fixture("expected-tree.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let fields: Vec<String> = l.split('\t').map(str::to_string).collect();
            assert_eq!(fields.len(), 15, "{l}");
            (fields[0].clone(), Expected { fields })
        })
        .collect()
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn load() -> (DataTree, Vec<SnapshotSession>) {
    deserialize_snapshot(&fixture(SNAPSHOT)).expect("ZooKeeper's snapshot decodes")
}

#[test]
fn every_node_decodes_as_zookeeper_served_it() {
    let (tree, _) = load();
    let expected = expected_tree();
    assert_eq!(
        tree.paths(),
        expected.keys().cloned().collect::<Vec<_>>(),
        "the same set of paths"
    );
    for (path, e) in &expected {
        let node = tree.get(path).unwrap();
        let s = node.client_stat();
        let got = [
            s.czxid,
            s.mzxid,
            s.ctime,
            s.mtime,
            s.version.into(),
            s.cversion.into(),
            s.aversion.into(),
            s.ephemeral_owner,
            s.data_length.into(),
            s.num_children.into(),
            s.pzxid,
        ];
        let want: Vec<i64> = (1..=11).map(|i| e.int(i)).collect();
        assert_eq!(got.to_vec(), want, "stat of {path}");
        let data = match node.data() {
            None => "null".to_string(),
            Some(d) => hex(d),
        };
        assert_eq!(data, e.fields[12], "data of {path}");
        let acl: Vec<String> = node
            .acl
            .iter()
            .map(|a| format!("{}|{}|{}", a.perms, a.id.scheme, a.id.id))
            .collect();
        assert_eq!(acl.join(";"), e.fields[13], "ACL of {path}");
        let children: BTreeSet<&str> = tree.child_names(&node).collect();
        let want_children: BTreeSet<&str> =
            e.fields[14].split(',').filter(|c| !c.is_empty()).collect();
        assert_eq!(children, want_children, "children of {path}");
    }
}

#[test]
fn sessions_ephemerals_containers_ttls_and_quotas_are_rebuilt() {
    let (tree, sessions) = load();
    let want: BTreeSet<SnapshotSession> = text_fixture("expected-sessions.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (id, to) = l.split_once('\t').unwrap();
            SnapshotSession {
                id: id.parse().unwrap(),
                timeout_ms: to.parse().unwrap(),
            }
        })
        .collect();
    assert_eq!(sessions.len(), want.len());
    assert_eq!(sessions.iter().copied().collect::<BTreeSet<_>>(), want);

    let expected = expected_tree();
    let owner = |p: &str| expected[p].int(8);
    assert_eq!(
        tree.ephemerals_by_session(),
        vec![
            (owner("/app/eph"), vec!["/app/eph".to_string()]),
            (
                owner("/app/eph-seq-0000000006"),
                vec!["/app/eph-seq-0000000006".to_string()]
            ),
        ]
    );
    assert_eq!(tree.containers().collect::<Vec<_>>(), vec!["/cont"]);
    assert_eq!(
        tree.ttls().collect::<Vec<_>>(),
        vec!["/ttl", "/ttl-seq-0000000003"]
    );
    for p in tree.ttls() {
        let owner = tree.get(p).unwrap().stat.ephemeral_owner;
        assert_eq!(ttl_of_owner(owner), 3_600_000, "{p}");
    }
    assert_eq!(
        tree.max_prefix_with_quota("/quota-me/a").as_deref(),
        Some("/quota-me")
    );
    assert_eq!(tree.max_prefix_with_quota("/app"), None);
    // setupQuota recomputed the stat node; it agrees with what ZooKeeper kept.
    assert_eq!(
        tree.get("/zookeeper/quota/quota-me/zookeeper_stats")
            .unwrap()
            .data(),
        Some(&b"count=3,bytes=6"[..])
    );
    assert_eq!(tree.last_processed_zxid, 0, "the zxid is in the file name");
}

#[test]
fn our_tree_digest_matches_the_digest_zookeeper_stored() {
    let loaded = deserialize_snapshot_full(&fixture(SNAPSHOT)).unwrap();
    assert_eq!(loaded.header.version, 2);
    assert_eq!(loaded.header.dbid, -1);
    assert_eq!(loaded.last_processed_zxid, None, "3.8 writes no lastZxid");
    assert_eq!(loaded.trailing_bytes, 0);
    assert_eq!(
        loaded.digest,
        Some(ZxidDigest {
            zxid: SNAPSHOT_ZXID,
            digest_version: 2,
            digest: loaded.tree.zk_tree_digest(),
        })
    );
}

#[test]
fn serializing_the_decoded_tree_reproduces_zookeepers_file_byte_for_byte() {
    let bytes = fixture(SNAPSHOT);
    let (mut tree, sessions) = deserialize_snapshot(&bytes).unwrap();
    tree.last_processed_zxid = SNAPSHOT_ZXID;
    let mut out = Vec::new();
    tree.serialize_snapshot(&sessions, &mut out);
    if out != bytes {
        let first = out.iter().zip(&bytes).position(|(a, b)| a != b);
        panic!(
            "differs at byte {first:?} (ours {} bytes, ZooKeeper's {})",
            out.len(),
            bytes.len()
        );
    }
}

#[test]
fn the_3_9_trailer_is_written_and_read() {
    let (mut tree, sessions) = load();
    tree.last_processed_zxid = SNAPSHOT_ZXID;
    let mut out = Vec::new();
    let both = SnapshotOptions {
        digest: true,
        last_processed_zxid: true,
    };
    tree.serialize_snapshot_with(&sessions, both, &mut out);
    // ZooKeeper 3.8's file plus lastZxid and a third seal.
    let zk = fixture(SNAPSHOT);
    assert_eq!(&out[..zk.len()], &zk[..]);
    assert_eq!(out.len(), zk.len() + 8 + 13);
    let loaded = deserialize_snapshot_full(&out).unwrap();
    assert_eq!(loaded.last_processed_zxid, Some(SNAPSHOT_ZXID));
    assert!(loaded.digest.is_some());

    // Digests off, lastZxid on (3.9 with zookeeper.digest.enabled=false).
    let mut out = Vec::new();
    let only_zxid = SnapshotOptions {
        digest: false,
        last_processed_zxid: true,
    };
    tree.serialize_snapshot_with(&sessions, only_zxid, &mut out);
    let loaded = deserialize_snapshot_full(&out).unwrap();
    assert_eq!(loaded.last_processed_zxid, Some(SNAPSHOT_ZXID));
    assert_eq!(loaded.digest, None);

    // Neither (3.5, or digests off before 3.9).
    let mut out = Vec::new();
    let none = SnapshotOptions {
        digest: false,
        last_processed_zxid: false,
    };
    tree.serialize_snapshot_with(&sessions, none, &mut out);
    let loaded = deserialize_snapshot_full(&out).unwrap();
    assert_eq!((loaded.digest, loaded.last_processed_zxid), (None, None));
}

#[test]
fn corruption_is_reported_with_its_offset() {
    let bytes = fixture(SNAPSHOT);
    // A flipped data byte breaks the first seal's checksum.
    let mut bad = bytes.clone();
    let at = bytes.windows(6).position(|w| w == b"hello3").unwrap();
    bad[at] ^= 0x20;
    let err = deserialize_snapshot(&bad).err().unwrap();
    assert!(matches!(err, SnapshotError::Checksum { .. }), "{err}");
    // The first seal sits right after the tree's terminating "/".
    let digest_len = 8 + 4 + 8 + 13;
    assert_eq!(err.offset(), bytes.len() - digest_len - 13);

    let mut bad = bytes.clone();
    bad[0] = b'X';
    let err = deserialize_snapshot(&bad).err().unwrap();
    assert_eq!(err.offset(), 0);
    assert!(err.to_string().contains("magic"), "{err}");

    for cut in [3, 20, 100, bytes.len() - 40, bytes.len() - 1] {
        let err = deserialize_snapshot(&bytes[..cut]).err().unwrap();
        assert!(err.offset() <= cut, "{err}");
    }
}

#[test]
fn adler32_matches_known_values() {
    assert_eq!(adler32(b""), 1);
    assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    let big = vec![0xffu8; 100_000];
    // Reference: zlib.adler32(b"\xff" * 100000).
    assert_eq!(adler32(&big), 0x149a_302c);
}
