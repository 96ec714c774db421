//! Snapshots of the data tree and the session table, in Apache ZooKeeper's snapshot file
//! format (`version-2/snapshot.<zxid>`, FileSnap with the default CHECKED stream mode), so
//! that zkd can import a ZooKeeper data directory and ZooKeeper's tools can read ours.
//!
//! Owns: encoding a [`DataTree`] plus sessions into the bytes of a snapshot file and
//! rebuilding them from such bytes. Never does IO, never trusts a count or a length, and
//! never panics: corrupt input is a [`SnapshotError`] naming what was wrong and at which byte.
//!
//! # Byte layout (jute: big-endian; string/buffer = int length, -1 = null, then the bytes)
//!
//! ```text
//! FileHeader      int magic = 0x5a4b534e ("ZKSN"), int version = 2, long dbid = -1
//! sessions        int count, then count x (long sessionId, int timeoutMs)
//! ACL cache       int size, then size x (long index, int n, n x ACL{int perms,
//!                 string scheme, string id}); index -1 is never listed: it means
//!                 OPEN_ACL_UNSAFE by convention (ReferenceCountedACLCache)
//! nodes           repeated (string path, DataNode{buffer data, long aclIndex,
//!                 StatPersisted{long czxid, long mzxid, long ctime, long mtime,
//!                 int version, int cversion, int aversion, long ephemeralOwner,
//!                 long pzxid}}), in depth-first pre-order from the root, whose path is
//!                 written as "" (ZooKeeper keys the root both "" and "/"); a parent
//!                 always precedes its children
//! end of tree     string "/"
//! seal            long adler32, string "/"          (SnapStream.sealStream)
//! digest (3.6+)   long zxid, int digestVersion = 2, long digest, then a seal
//! lastZxid (3.9+) long lastProcessedZxid, then a seal
//! ```
//!
//! Every seal's adler32 covers all bytes of the file before that seal's long (the
//! CheckedOutputStream runs from the first byte, so later seals also cover earlier seals).
//! cversion is stored as the count of child creates (as in [`NodeStat`]).
//!
//! The digest is ZooKeeper's tree digest (DigestCalculator version 2, AdHash): the wrapping
//! 64-bit sum over every node except those under `/zookeeper/` of
//! CRC32(path bytes (root as "") ++ data ++ czxid, mzxid, pzxid, ctime, mtime (longs),
//! version, cversion, aversion (ints), ephemeralOwner (long)). Its zxid is the last zxid
//! applied when the digest was taken; ZooKeeper compares it when log replay reaches that
//! zxid. Digest versions below 2 stored the digest as a hex string; we read those too.
//!
//! Which trailers are present: 3.5 writes none; 3.6 to 3.8 write the digest (when
//! `zookeeper.digest.enabled`, the default); 3.9 adds lastZxid
//! (`zookeeper.serializeLastProcessedZxid.enabled`, default true). Readers of every version
//! stop at what they know, so all of these forms are valid to all of them. We read all
//! forms (a lone lastZxid, written by 3.9 with digests disabled, is told apart by its
//! length: exactly 21 bytes after the first seal) and write the 3.8 form by default.
//!
//! # What is not in the snapshot
//!
//! The snapshot's own zxid is in the file NAME, not the body (ZooKeeper sets
//! `lastProcessedZxid` from the name even when 3.9's lastZxid trailer is present), so
//! [`deserialize_snapshot`] leaves `last_processed_zxid` at 0 for the caller to set.
//! Watches are not persisted. The quota stat nodes are recomputed on load, as
//! DataTree.setupQuota does.
//!
//! # Restoring from a ZooKeeper data directory
//!
//! ZooKeeper's snapshots are fuzzy: txns keep applying while the tree is written, so a file
//! named `snapshot.Z` may already contain effects of txns after Z. Restore replays the log
//! from Z + 1 tolerating that: errors are ignored, except that a `create` (op 1 only) failing
//! with NodeExists sets the parent's cversion/pzxid to the txn's parentCVersion/zxid when
//! that raises cversion (DataTree.processTxn, setCversionPzxid); createSession/closeSession
//! txns add/remove entries of the session table. The digest trailer is compared when replay
//! reaches its zxid. zkd writes its snapshots under the tree lock, so they are not fuzzy and
//! their digest is exact for `last_processed_zxid` (name the file after it).
//!
//! # Order (byte-for-byte reproduction)
//!
//! ZooKeeper's order follows Java hash iteration: sessions and the ACL cache are
//! `new HashMap<>(map)` copies (Long keys), children are a `HashSet<String>` created with
//! capacity 8. We emulate that iteration (Java 17's copy-constructor sizing, String and Long
//! hashCode, bucket = (h ^ h >>> 16) & (capacity - 1)), ordering entries that share a bucket
//! by insertion order, which for children is creation order (czxid). ACL indices are
//! numbered 1.. in order of first use (lowest czxid of a node using the list); the root,
//! `/zookeeper` and `/zookeeper/quota` use -1 while they keep their initial ACL. So a
//! snapshot ZooKeeper wrote is reproduced exactly unless its history left traces we do not
//! keep: a children set that once held more entries (Java sets never shrink), ACL indices
//! freed by deletes or assigned by setACL out of czxid order, colliding session ids, or
//! buckets that Java turned into trees. Such differences are in order and numbering only;
//! no ZooKeeper reader depends on them beyond "parents first".

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;
use zkd_proto::jute::{DecodeError, Reader, Record, Writer};
use zkd_proto::records::{Acl, StatPersisted};

use super::{
    ephemeral_type, nodes, AclId, DataTree, EphemeralType, Node, NodeId, NodeStat, NodeTable,
    PROC_ZOOKEEPER, QUOTA_LIMIT_NODE, QUOTA_ZOOKEEPER, ROOT,
};

/// FileSnap.SNAP_MAGIC: "ZKSN" as a big-endian int.
pub const SNAP_MAGIC: i32 = 0x5a4b_534e;
/// FileSnap.VERSION.
pub const SNAP_VERSION: i32 = 2;
/// The dbid every ZooKeeper snapshot carries.
pub const SNAP_DBID: i64 = -1;
/// DigestCalculator.DIGEST_VERSION.
pub const DIGEST_VERSION: i32 = 2;
/// The ACL-cache index meaning OPEN_ACL_UNSAFE without an entry in the cache.
pub const OPEN_ACL_UNSAFE_INDEX: i64 = -1;

/// One live session: its id and negotiated timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotSession {
    pub id: i64,
    pub timeout_ms: i32,
}

/// DataTree.ZxidDigest: the tree digest after applying `zxid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZxidDigest {
    pub zxid: i64,
    pub digest_version: i32,
    pub digest: i64,
}

/// FileHeader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub magic: i32,
    pub version: i32,
    pub dbid: i64,
}

/// Which optional trailers to write after the tree's seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The zxid digest and its seal (ZooKeeper 3.6+ with digests enabled).
    pub digest: bool,
    /// `last_processed_zxid` and its seal (ZooKeeper 3.9+).
    pub last_processed_zxid: bool,
}

impl Default for SnapshotOptions {
    /// What ZooKeeper 3.6 to 3.8 write: the digest, no lastZxid.
    fn default() -> Self {
        SnapshotOptions {
            digest: true,
            last_processed_zxid: false,
        }
    }
}

/// Everything a snapshot file holds.
pub struct LoadedSnapshot {
    pub header: FileHeader,
    /// `last_processed_zxid` is 0: the snapshot's zxid is in its file name.
    pub tree: DataTree,
    /// In file order; a repeated id keeps its first place and its last timeout, as a map.
    pub sessions: Vec<SnapshotSession>,
    /// The digest trailer, if present (digest version < 2 converted from hex).
    pub digest: Option<ZxidDigest>,
    /// 3.9's lastZxid trailer, if present.
    pub last_processed_zxid: Option<i64>,
    /// Bytes after the last trailer we know, ignored as ZooKeeper ignores them.
    pub trailing_bytes: usize,
}

/// Why a snapshot could not be read; `offset` is where the offending item starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot byte {offset}: cannot read {what}: {source}")]
    Decode {
        offset: usize,
        what: &'static str,
        source: DecodeError,
    },
    #[error("snapshot byte {offset}: {what}")]
    Corrupt { offset: usize, what: String },
    #[error(
        "snapshot byte {offset}: checksum mismatch: stored {stored:#x}, computed {computed:#x}"
    )]
    Checksum {
        offset: usize,
        stored: i64,
        computed: u32,
    },
}

impl SnapshotError {
    pub fn offset(&self) -> usize {
        match self {
            SnapshotError::Decode { offset, .. }
            | SnapshotError::Corrupt { offset, .. }
            | SnapshotError::Checksum { offset, .. } => *offset,
        }
    }
}

/// Reads a snapshot file's bytes: the tree and the sessions. See [`deserialize_snapshot_full`].
pub fn deserialize_snapshot(
    bytes: &[u8],
) -> Result<(DataTree, Vec<SnapshotSession>), SnapshotError> {
    let s = deserialize_snapshot_full(bytes)?;
    Ok((s.tree, s.sessions))
}

/// Reads a snapshot file's bytes (FileSnap.deserialize plus the trailers): checks the magic
/// and every seal, rebuilds nodes, children, the ephemeral/container/TTL indexes and the
/// quotas (recomputing the quota stat nodes, as setupQuota does).
pub fn deserialize_snapshot_full(bytes: &[u8]) -> Result<LoadedSnapshot, SnapshotError> {
    let mut p = Input::new(bytes);
    let magic = p.int("file header magic")?;
    if magic != SNAP_MAGIC {
        return Err(corrupt(
            0,
            format!("bad magic {magic:#010x}, expected {SNAP_MAGIC:#010x} (\"ZKSN\")"),
        ));
    }
    let header = FileHeader {
        magic,
        version: p.int("file header version")?,
        dbid: p.long("file header dbid")?,
    };

    let sessions = read_sessions(&mut p)?;
    let acls = read_acl_cache(&mut p)?;
    let mut tree = read_nodes(&mut p, &acls)?;
    p.seal()?;

    let mut digest = None;
    let mut last_processed_zxid = None;
    if p.remaining() == 8 + 8 + 5 {
        // Only 3.9's lastZxid (digests disabled): a digest plus its seal is at least 29.
        last_processed_zxid = Some(p.long("last processed zxid")?);
        p.seal()?;
    } else if p.remaining() > 0 {
        let zxid = p.long("digest zxid")?;
        let digest_version = p.int("digest version")?;
        let value = if digest_version < 2 {
            let off = p.pos();
            match p.string("digest (hex)")? {
                None => 0,
                Some(hex) => i64::from_str_radix(&hex, 16)
                    .map_err(|_| corrupt(off, format!("digest {hex:?} is not a hex long")))?,
            }
        } else {
            p.long("digest")?
        };
        p.seal()?;
        digest = Some(ZxidDigest {
            zxid,
            digest_version,
            digest: value,
        });
        if p.remaining() > 0 {
            last_processed_zxid = Some(p.long("last processed zxid")?);
            p.seal()?;
        }
    }

    tree.setup_quota();
    Ok(LoadedSnapshot {
        header,
        tree,
        sessions,
        digest,
        last_processed_zxid,
        trailing_bytes: p.remaining(),
    })
}

fn read_sessions(p: &mut Input<'_>) -> Result<Vec<SnapshotSession>, SnapshotError> {
    // ZooKeeper loops `while (count > 0)`: a negative count reads as none.
    let count = p.int("session count")?;
    let mut sessions: Vec<SnapshotSession> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    for _ in 0..count.max(0) {
        let id = p.long("session id")?;
        let timeout_ms = p.int("session timeout")?;
        match index.get(&id) {
            Some(&i) => sessions[i].timeout_ms = timeout_ms,
            None => {
                index.insert(id, sessions.len());
                sessions.push(SnapshotSession { id, timeout_ms });
            }
        }
    }
    Ok(sessions)
}

fn read_acl_cache(p: &mut Input<'_>) -> Result<HashMap<i64, Arc<Vec<Acl>>>, SnapshotError> {
    let size = p.int("ACL cache size")?;
    let mut acls = HashMap::new();
    for _ in 0..size.max(0) {
        let index = p.long("ACL cache index")?;
        let off = p.pos();
        let n = p.int("ACL list length")?;
        if n < 0 {
            // ReferenceCountedACLCache.deserialize: "missing acls".
            return Err(corrupt(off, format!("ACL list {index} is null")));
        }
        let mut list = Vec::new();
        for _ in 0..n {
            list.push(p.record::<Acl>("ACL")?);
        }
        // A repeated index replaces the earlier list, as the LinkedHashMap does.
        acls.insert(index, Arc::new(list));
    }
    Ok(acls)
}

fn read_nodes(
    p: &mut Input<'_>,
    acls: &HashMap<i64, Arc<Vec<Acl>>>,
) -> Result<DataTree, SnapshotError> {
    let mut tree = DataTree::new();
    // The root record comes first and replaces the fresh tree's root Stat and data.
    let off = p.pos();
    let Some(root_path) = p.str("node path")? else {
        return Err(corrupt(off, "null node path".into()));
    };
    if !root_path.is_empty() {
        return Err(corrupt(
            off,
            format!("first node is {root_path:?}, not the root"),
        ));
    }
    let (data, acl, stat) = read_node_body(p, acls, "")?;
    let root_acl = match acl {
        OPEN_ACL_UNSAFE_INDEX => Acl::open_unsafe(),
        index => acls[&index].to_vec(),
    };
    // The special nodes come back from the file like any other node.
    let mut nodes = NodeTable::new(data, root_acl, stat);
    // Every list of the file's ACL cache is interned, used or not, as ZooKeeper keeps them.
    let mut ids: HashMap<i64, AclId> = HashMap::with_capacity(acls.len());
    for (index, list) in acls {
        ids.insert(*index, nodes.intern_acl(list.to_vec()));
    }
    // A znode takes at least ~60 bytes in the file (path, data length, ACL index, stat):
    // reserving for that many avoids rehashing a million keys while the table grows.
    nodes.reserve(p.remaining() / 160);
    // Ancestors of the node just read, as (path length, id): a snapshot lists nodes
    // depth first, so a node's parent is almost always on this stack and no lookup by
    // path is needed.
    let mut ancestors: Vec<(usize, NodeId)> = vec![(0, nodes::ROOT_ID)];
    let mut last_path = String::new();
    loop {
        let off = p.pos();
        let Some(path) = p.str("node path")? else {
            return Err(corrupt(off, "null node path".into()));
        };
        let path: &str = &path;
        if path == ROOT {
            break;
        }
        if path.is_empty() {
            return Err(corrupt(off, "root node after other nodes".into()));
        }
        if let Err(e) = zkd_proto::path::validate_path(path) {
            return Err(corrupt(off, format!("invalid node path: {e}")));
        }
        let parent = zkd_proto::path::parent(path);
        let name = zkd_proto::path::basename(path);
        let parent_len = if parent == ROOT { 0 } else { parent.len() };
        // Pop to the deepest ancestor of the previous node that is this node's parent.
        while let Some(&(len, _)) = ancestors.last() {
            if len <= parent_len && last_path.as_bytes().get(..len) == path.as_bytes().get(..len) {
                break;
            }
            ancestors.pop();
        }
        let parent_id = match ancestors.last() {
            Some(&(len, id)) if len == parent_len => id,
            _ => nodes.lookup(parent).ok_or_else(|| {
                corrupt(
                    off,
                    format!("node {path:?} comes before its parent {parent:?}"),
                )
            })?,
        };
        let (data, acl, stat) = read_node_body(p, acls, path)?;
        let acl = match acl {
            OPEN_ACL_UNSAFE_INDEX => nodes::OPEN_ACL_ID,
            index => ids[&index],
        };
        let owner = stat.ephemeral_owner;
        let id = nodes
            .insert_child(parent_id, name, data, acl, stat)
            .map_err(|_| corrupt(off, format!("node {path:?} appears twice")))?;
        match ephemeral_type(owner) {
            EphemeralType::Container => {
                tree.containers.insert(path.to_string());
            }
            EphemeralType::Ttl => {
                tree.ttls.insert(path.to_string());
            }
            EphemeralType::Normal => {
                tree.ephemerals
                    .entry(owner)
                    .or_default()
                    .insert(path.to_string());
            }
            EphemeralType::Void => {}
        }
        if ancestors.last().map(|a| a.1) != Some(parent_id) {
            // Found by lookup: start the chain again from the root.
            ancestors.truncate(1);
        }
        ancestors.push((path.len(), id));
        last_path.clear();
        last_path.push_str(path);
    }
    tree.nodes = nodes;
    Ok(tree)
}

/// A node record's data, ACL index (-1 or a key of the ACL cache) and Stat, borrowing
/// the data from the file.
type NodeBody<'a> = (Option<&'a [u8]>, i64, NodeStat);

/// A node record after its path: data, ACL index (checked) and StatPersisted.
fn read_node_body<'a>(
    p: &mut Input<'a>,
    acls: &HashMap<i64, Arc<Vec<Acl>>>,
    path: &str,
) -> Result<NodeBody<'a>, SnapshotError> {
    let data = p.bytes("node data")?;
    let acl_off = p.pos();
    let acl_index = p.long("node ACL index")?;
    let stat = p.record::<StatPersisted>("node stat")?;
    if acl_index != OPEN_ACL_UNSAFE_INDEX && !acls.contains_key(&acl_index) {
        return Err(corrupt(
            acl_off,
            format!("node {path:?} uses ACL index {acl_index}, absent from the ACL cache"),
        ));
    }
    let stat = NodeStat {
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        ctime: stat.ctime,
        mtime: stat.mtime,
        version: stat.version,
        cversion: stat.cversion,
        aversion: stat.aversion,
        ephemeral_owner: stat.ephemeral_owner,
        pzxid: stat.pzxid,
    };
    Ok((data, acl_index, stat))
}

fn corrupt(offset: usize, what: String) -> SnapshotError {
    SnapshotError::Corrupt { offset, what }
}

/// A cursor that reports the offset of whatever it failed to read.
struct Input<'a> {
    bytes: &'a [u8],
    r: Reader<'a>,
    adler: RunningAdler32,
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Input {
            bytes,
            r: Reader::new(bytes),
            adler: RunningAdler32::default(),
        }
    }

    fn pos(&self) -> usize {
        self.r.position()
    }

    fn remaining(&self) -> usize {
        self.r.remaining()
    }

    fn at<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, SnapshotError> {
        let offset = self.pos();
        f(&mut self.r).map_err(|source| SnapshotError::Decode {
            offset,
            what,
            source,
        })
    }

    fn int(&mut self, what: &'static str) -> Result<i32, SnapshotError> {
        self.at(what, |r| r.read_i32())
    }

    fn long(&mut self, what: &'static str) -> Result<i64, SnapshotError> {
        self.at(what, |r| r.read_i64())
    }

    fn string(&mut self, what: &'static str) -> Result<Option<String>, SnapshotError> {
        self.at(what, |r| r.read_ustring_opt())
    }

    fn bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, SnapshotError> {
        self.at(what, |r| r.read_buffer_opt_ref())
    }

    fn str(
        &mut self,
        what: &'static str,
    ) -> Result<Option<std::borrow::Cow<'a, str>>, SnapshotError> {
        self.at(what, |r| r.read_ustring_opt_ref())
    }

    fn record<T: Record>(&mut self, what: &'static str) -> Result<T, SnapshotError> {
        self.at(what, |r| T::read(r))
    }

    /// SnapStream.checkSealIntegrity: the adler32 of every byte so far, then a path string
    /// that ZooKeeper reads and ignores (it writes "/").
    fn seal(&mut self) -> Result<(), SnapshotError> {
        let offset = self.pos();
        let computed = self.adler.advance_to(self.bytes, offset);
        let stored = self.long("checksum")?;
        self.string("checksum seal")?;
        if stored != i64::from(computed) {
            return Err(SnapshotError::Checksum {
                offset,
                stored,
                computed,
            });
        }
        Ok(())
    }
}

impl DataTree {
    /// The bytes of a ZooKeeper snapshot file (header to last seal) holding this tree and
    /// `sessions`, in ZooKeeper 3.8's form (with the digest trailer). Appends to `out`.
    pub fn serialize_snapshot(&self, sessions: &[SnapshotSession], out: &mut Vec<u8>) {
        self.serialize_snapshot_with(sessions, SnapshotOptions::default(), out)
    }

    /// [`DataTree::serialize_snapshot`] with a choice of trailers. The digest's zxid is
    /// `last_processed_zxid`; at 0 (no txn applied) it is ZooKeeper's empty digest (0, 2, 0).
    pub fn serialize_snapshot_with(
        &self,
        sessions: &[SnapshotSession],
        options: SnapshotOptions,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        let mut w = Writer {
            buf: std::mem::take(out),
        };
        let mut adler = RunningAdler32::default();
        w.write_i32(SNAP_MAGIC);
        w.write_i32(SNAP_VERSION);
        w.write_i64(SNAP_DBID);

        let sessions = java_session_order(sessions);
        w.write_i32(sessions.len() as i32);
        for s in &sessions {
            w.write_i64(s.id);
            w.write_i32(s.timeout_ms);
        }

        let (cache, index_of) = self.acl_cache();
        w.write_i32(cache.len() as i32);
        for (index, list) in &cache {
            w.write_i64(*index);
            w.write_i32(list.len() as i32);
            for acl in list.iter() {
                acl.write(&mut w);
            }
        }

        self.write_nodes(&mut w, &index_of);
        w.write_ustring(ROOT);
        seal(&mut w, start, &mut adler);

        if options.digest {
            let d = self.zxid_digest();
            w.write_i64(d.zxid);
            w.write_i32(d.digest_version);
            w.write_i64(d.digest);
            seal(&mut w, start, &mut adler);
        }
        if options.last_processed_zxid {
            w.write_i64(self.last_processed_zxid);
            seal(&mut w, start, &mut adler);
        }
        *out = w.buf;
    }

    /// ZooKeeper's tree digest (DigestCalculator version 2 summed by AdHash).
    pub fn zk_tree_digest(&self) -> i64 {
        let mut sum = 0i64;
        self.nodes.for_each(|path, _, node| {
            if !path.starts_with("/zookeeper/") {
                sum = sum.wrapping_add(i64::from(node_digest(path, node)));
            }
        });
        sum
    }

    /// The digest trailer this tree writes: ZooKeeper's empty digest before any txn.
    pub fn zxid_digest(&self) -> ZxidDigest {
        if self.last_processed_zxid == 0 {
            ZxidDigest {
                zxid: 0,
                digest_version: DIGEST_VERSION,
                digest: 0,
            }
        } else {
            ZxidDigest {
                zxid: self.last_processed_zxid,
                digest_version: DIGEST_VERSION,
                digest: self.zk_tree_digest(),
            }
        }
    }

    /// DataTree.setupQuota: every leaf `zookeeper_limits` under /zookeeper/quota makes its
    /// path a quota path, whose stat node is recomputed from the subtree.
    fn setup_quota(&mut self) {
        let suffix = format!("/{QUOTA_LIMIT_NODE}");
        let mut found = Vec::new();
        let mut stack: Vec<NodeId> = self.nodes.lookup(QUOTA_ZOOKEEPER).into_iter().collect();
        while let Some(id) = stack.pop() {
            let n = self.nodes.get(id);
            if n.num_children() == 0 {
                let p = self.nodes.path_of(id);
                if let Some(end) = p.find(&suffix) {
                    if p.ends_with(&suffix) && end >= QUOTA_ZOOKEEPER.len() {
                        found.push(p[QUOTA_ZOOKEEPER.len()..end].to_string());
                    }
                }
            }
            stack.extend(self.nodes.children(id));
        }
        for real in found {
            self.update_quota_for_path(&real);
            self.quota_paths.insert(real);
        }
    }

    /// The ACL cache to write, by index, and the index of each ACL list (keyed by the
    /// shared list's address, so a million nodes cost a million pointer lookups rather
    /// than a million encodings). Indexes follow the first use of each distinct list in
    /// (czxid, path) order, which is how ZooKeeper numbers a freshly built cache.
    #[allow(clippy::type_complexity)]
    fn acl_cache(&self) -> (Vec<(i64, Arc<Vec<Acl>>)>, HashMap<*const Vec<Acl>, i64>) {
        let mut distinct_of: HashMap<*const Vec<Acl>, usize> = HashMap::new();
        let mut by_content: HashMap<Vec<u8>, usize> = HashMap::new();
        // (first use, the list) per distinct content.
        let mut distinct: Vec<((i64, String), Arc<Vec<Acl>>)> = Vec::new();
        self.nodes.for_each(|path, _, node| {
            if uses_open_index(path, node) {
                return;
            }
            let ptr = Arc::as_ptr(&node.acl);
            let d = match distinct_of.get(&ptr) {
                Some(d) => *d,
                None => {
                    let d = *by_content.entry(acl_key(&node.acl)).or_insert_with(|| {
                        distinct.push(((node.stat.czxid, path.to_string()), node.acl.clone()));
                        distinct.len() - 1
                    });
                    distinct_of.insert(ptr, d);
                    d
                }
            };
            let first = &mut distinct[d].0;
            if (node.stat.czxid, path) < (first.0, first.1.as_str()) {
                *first = (node.stat.czxid, path.to_string());
            }
        });
        let mut order: Vec<usize> = (0..distinct.len()).collect();
        order.sort_by(|a, b| distinct[*a].0.cmp(&distinct[*b].0));
        let mut index_by_distinct = vec![0i64; distinct.len()];
        let mut cache = Vec::with_capacity(distinct.len());
        for (i, d) in order.into_iter().enumerate() {
            index_by_distinct[d] = i as i64 + 1;
            cache.push((i as i64 + 1, distinct[d].1.clone()));
        }
        let index_of = distinct_of
            .into_iter()
            .map(|(ptr, d)| (ptr, index_by_distinct[d]))
            .collect();
        // new HashMap<>(longKeyMap) iteration order.
        let cap = java_copy_capacity(cache.len());
        cache.sort_by_key(|(index, _)| (java_bucket(java_long_hash(*index), cap), *index));
        (cache, index_of)
    }

    /// DataTree.serializeNode: depth-first pre-order, children in Java HashSet order.
    fn write_nodes(&self, w: &mut Writer, index_of: &HashMap<*const Vec<Acl>, i64>) {
        let mut walk = NodeWalk::new(self, false);
        while let WalkStep::Node(path, node) = walk.next(self) {
            let index = if uses_open_index(path, &node) {
                OPEN_ACL_UNSAFE_INDEX
            } else {
                index_of
                    .get(&Arc::as_ptr(&node.acl))
                    .copied()
                    .unwrap_or(OPEN_ACL_UNSAFE_INDEX)
            };
            write_node(w, path, &node, index);
        }
    }
}

/// A node the walk has still to write: its slot, its czxid (a slot freed by a delete and
/// reused by a later create holds a node with a later czxid, so the pair names one znode
/// for as long as it lives), and its parent's path in `NodeWalk::dirs`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: NodeId,
    czxid: i64,
    dir: u32,
}

/// Depth-first pre-order over the tree with children in Java HashSet order (ZooKeeper's
/// serializeNode order), resumable while the tree changes between calls (the fuzzy
/// snapshot). Keeps node ids rather than paths: a step then costs one slot access per node
/// instead of a hash probe per path component, and only nodes with children get their
/// path stored.
struct NodeWalk {
    stack: Vec<Pending>,
    /// Paths of the nodes whose children are on the stack.
    dirs: Vec<String>,
    /// The path of the node last returned.
    path: String,
    /// Whether the tree may change between calls (then a node with many children has
    /// them gathered and ordered in bounded pieces, see `Expansion`).
    fuzzy: bool,
    expanding: Option<Expansion>,
}

/// `Pending::dir` of the root, which has no parent.
const NO_DIR: u32 = u32::MAX;

/// Children beyond which a fuzzy walk gathers a node's children over several steps.
/// Gathering and sorting 1.4M children in one step held the core lock for 98 ms (a
/// create benchmark's single parent); every request waited behind it. Below it, one
/// step gathers and sorts at most ~1 ms of children. Each big node costs a scan of the
/// whole slab (sequential, ~2 ns a slot, on the snapshot's idle CPU): a tree of N nodes
/// costs at most N²/8192 slot visits per snapshot (~0.25 s at 1M), typically a few N.
#[cfg(not(test))]
const BIG_CHILDREN: usize = 8192;
#[cfg(test)]
const BIG_CHILDREN: usize = 3;
/// Slots one step of such a gathering scans (a fraction of a millisecond).
#[cfg(not(test))]
const SCAN_SLOTS_PER_STEP: usize = 8192;
#[cfg(test)]
const SCAN_SLOTS_PER_STEP: usize = 5;

/// The children of one node with many, gathered by scanning the slab in id order a
/// piece per step (a node's sibling list cannot be resumed once the node the walk
/// stopped at is deleted), then sorted outside the lock. A fuzzy snapshot needs every
/// child that existed when it began and still exists; a slot scan finds each of those
/// (a node keeps its slot while it lives), and children created or deleted meanwhile
/// may be in or out, as the log replay settles them.
struct Expansion {
    parent: NodeId,
    parent_czxid: i64,
    dir: u32,
    cap: u32,
    next_slot: usize,
    /// (Java bucket, czxid, id) of each child found.
    children: Vec<(u32, i64, NodeId)>,
    state: ExpansionState,
}

#[derive(PartialEq, Eq)]
enum ExpansionState {
    Scanning,
    /// Scanned; to be sorted outside the lock (`NodeWalk::between_steps`).
    Scanned,
    /// Sorted by (bucket, czxid, id); runs of equal (bucket, czxid) (siblings one multi
    /// created) still need the name order the one-step path gives them, under the lock.
    SortedWithTies,
}

/// What the walk did in one call.
enum WalkStep<'t, 'w> {
    Node(&'w str, Node<'t>),
    /// Work was done but no node is ready: end the step, call `between_steps`.
    Yield,
    Done,
}

impl NodeWalk {
    fn new(tree: &DataTree, fuzzy: bool) -> NodeWalk {
        NodeWalk {
            stack: vec![Pending {
                id: nodes::ROOT_ID,
                czxid: tree.nodes.get(nodes::ROOT_ID).stat.czxid,
                dir: NO_DIR,
            }],
            dirs: Vec::new(),
            path: String::new(),
            fuzzy,
            expanding: None,
        }
    }

    fn is_done(&self) -> bool {
        self.stack.is_empty() && self.expanding.is_none()
    }

    /// Work on a big node's children that needs no tree: sorting them and, unless
    /// siblings tie, putting them on the stack.
    fn between_steps(&mut self) {
        if let Some(e) = self.expanding.as_mut() {
            if e.state == ExpansionState::Scanned && !sort_expansion(e) {
                let e = self.expanding.take().expect("expanding");
                push_children(&mut self.stack, &e);
            }
        }
    }

    /// The next node still in the tree, with its path; pushes its children (as they are
    /// now) to come next. Nodes deleted since their parent was written are skipped: the
    /// log replays the delete anyway.
    fn next<'t>(&mut self, tree: &'t DataTree) -> WalkStep<'t, '_> {
        if self.expanding.is_some() && !self.expand(tree) {
            return WalkStep::Yield;
        }
        loop {
            let Some(p) = self.stack.pop() else {
                return WalkStep::Done;
            };
            let Some(node) = tree.nodes.try_get(p.id).filter(|n| n.stat.czxid == p.czxid) else {
                continue;
            };
            self.path.clear();
            if p.dir == NO_DIR {
                self.path.push_str(ROOT);
            } else {
                let dir = &self.dirs[p.dir as usize];
                if dir != ROOT {
                    self.path.push_str(dir);
                }
                self.path.push('/');
                self.path.push_str(node.name());
            }
            if node.num_children() > 0 {
                let dir = u32::try_from(self.dirs.len()).expect("fewer than 2^32 parents");
                self.dirs.push(self.path.clone());
                let cap = java_hashset_capacity(node.num_children());
                if self.fuzzy && node.num_children() > BIG_CHILDREN {
                    // Its children come after it: gathered over the next steps.
                    self.expanding = Some(Expansion {
                        parent: p.id,
                        parent_czxid: p.czxid,
                        dir,
                        cap,
                        next_slot: 0,
                        children: Vec::with_capacity(node.num_children()),
                        state: ExpansionState::Scanning,
                    });
                    return WalkStep::Node(&self.path, node);
                }
                let mut children: Vec<(u32, i64, &str, NodeId)> = tree
                    .nodes
                    .children_of(&node)
                    .map(|id| {
                        let c = tree.nodes.get(id);
                        let name = c.name();
                        (
                            java_bucket(java_string_hash(name), cap),
                            c.stat.czxid,
                            name,
                            id,
                        )
                    })
                    .collect();
                children.sort_unstable();
                self.stack
                    .extend(children.iter().rev().map(|&(_, czxid, _, id)| Pending {
                        id,
                        czxid,
                        dir,
                    }));
            }
            return WalkStep::Node(&self.path, node);
        }
    }

    /// Advances the expansion under way (only a fuzzy walk has one) by one bounded
    /// piece; true once its children are on the stack.
    fn expand(&mut self, tree: &DataTree) -> bool {
        let Some(e) = self.expanding.as_mut() else {
            return true;
        };
        loop {
            match e.state {
                ExpansionState::Scanning => {
                    let alive = tree
                        .nodes
                        .try_get(e.parent)
                        .is_some_and(|n| n.stat.czxid == e.parent_czxid);
                    if !alive {
                        // Deleted with all its children since: the log replays those
                        // deletes, which then find nothing to delete.
                        self.expanding = None;
                        return true;
                    }
                    let to = e.next_slot + SCAN_SLOTS_PER_STEP;
                    let (cap, children) = (e.cap, &mut e.children);
                    tree.nodes
                        .children_in_slots(e.parent, e.next_slot, to, |id| {
                            let c = tree.nodes.get(id);
                            children.push((
                                java_bucket(java_string_hash(c.name()), cap),
                                c.stat.czxid,
                                id,
                            ));
                        });
                    e.next_slot = to.min(tree.nodes.slot_count());
                    if e.next_slot >= tree.nodes.slot_count() {
                        e.state = ExpansionState::Scanned;
                    }
                    return false;
                }
                ExpansionState::Scanned => {
                    // Usually sorted by `between_steps` outside the lock by now; if the
                    // caller did not call it, here.
                    if !sort_expansion(e) {
                        let e = self.expanding.take().expect("expanding");
                        push_children(&mut self.stack, &e);
                        return true;
                    }
                }
                ExpansionState::SortedWithTies => {
                    // Equal (bucket, czxid) runs are ordered by name, as the one-step
                    // path orders them; a child gone or replaced since keeps its place
                    // (it is skipped when popped).
                    let name_of = |id: NodeId, czxid: i64| {
                        tree.nodes
                            .try_get(id)
                            .filter(|c| c.stat.czxid == czxid)
                            .map_or("", |c| c.name())
                    };
                    let mut i = 0;
                    while i < e.children.len() {
                        let (b, z, _) = e.children[i];
                        let mut j = i + 1;
                        while j < e.children.len() && e.children[j].0 == b && e.children[j].1 == z {
                            j += 1;
                        }
                        if j - i > 1 {
                            e.children[i..j].sort_by(|x, y| {
                                name_of(x.2, x.1).cmp(name_of(y.2, y.1)).then(x.2.cmp(&y.2))
                            });
                        }
                        i = j;
                    }
                    let e = self.expanding.take().expect("expanding");
                    push_children(&mut self.stack, &e);
                    return true;
                }
            }
        }
    }
}

/// Sorts a scanned expansion by (bucket, czxid, id); true if siblings tie on (bucket,
/// czxid) and so still need ordering by name (state `SortedWithTies`).
fn sort_expansion(e: &mut Expansion) -> bool {
    e.children.sort_unstable();
    let ties = e
        .children
        .windows(2)
        .any(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1);
    e.state = ExpansionState::SortedWithTies;
    ties
}

fn push_children(stack: &mut Vec<Pending>, e: &Expansion) {
    stack.extend(e.children.iter().rev().map(|&(_, czxid, id)| Pending {
        id,
        czxid,
        dir: e.dir,
    }));
}

/// One node record: path (the root as ""), data, ACL index, StatPersisted.
fn write_node(w: &mut Writer, path: &str, node: &Node<'_>, acl_index: i64) {
    w.write_ustring(if path == ROOT { "" } else { path });
    w.write_buffer_opt(node.data());
    w.write_i64(acl_index);
    let s = &node.stat;
    StatPersisted {
        czxid: s.czxid,
        mzxid: s.mzxid,
        ctime: s.ctime,
        mtime: s.mtime,
        version: s.version,
        cversion: s.cversion,
        aversion: s.aversion,
        ephemeral_owner: s.ephemeral_owner,
        pzxid: s.pzxid,
    }
    .write(w);
}

/// A writer that keeps the Adler-32 of what passed through it (the snapshot's seal).
struct SummingWriter<'a> {
    out: &'a mut dyn std::io::Write,
    adler: RunningAdler32,
}

impl std::io::Write for SummingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(data)?;
        self.adler.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A snapshot written a bounded number of nodes at a time, while the tree keeps
/// changing in between: ZooKeeper's fuzzy snapshot. Each node is written as it is when
/// its turn comes, so the file mixes states from `zxid()` onwards; replaying the log from
/// `zxid() + 1` (which recovery does) brings it to an exact state, because every txn
/// replays idempotently over a state that already contains it (a create of an existing
/// node only moves the parent's cversion forward, a delete of a missing node is a no-op,
/// setData and setACL carry their resulting version).
///
/// The server takes a step under its lock and releases it in between, so writes wait at
/// most one step instead of the whole snapshot. No digest trailer is written: a fuzzy
/// tree has no single digest to vouch for.
pub struct FuzzySnapshot {
    zxid: i64,
    sessions: Vec<SnapshotSession>,
    walk: NodeWalk,
    nodes: Writer,
    /// ACL lists met so far, by the address of the tree's shared list. The Arcs are kept
    /// so that an address cannot be reused by another list while the snapshot runs.
    acl_index: HashMap<*const Vec<Acl>, i64>,
    acl_by_content: HashMap<Vec<u8>, i64>,
    acl_lists: Vec<(i64, Arc<Vec<Acl>>)>,
}

impl FuzzySnapshot {
    /// Starts a snapshot of `tree` as of its last applied zxid.
    pub fn begin(tree: &DataTree, sessions: Vec<SnapshotSession>) -> FuzzySnapshot {
        FuzzySnapshot {
            zxid: tree.last_processed_zxid,
            sessions,
            walk: NodeWalk::new(tree, true),
            nodes: Writer::new(),
            acl_index: HashMap::new(),
            acl_by_content: HashMap::new(),
            acl_lists: Vec::new(),
        }
    }

    /// The zxid the log must be replayed after.
    pub fn zxid(&self) -> i64 {
        self.zxid
    }

    /// Writes up to `budget` more nodes; true once every node has been written.
    pub fn step(&mut self, tree: &DataTree, budget: usize) -> bool {
        for _ in 0..budget {
            let (path, node) = match self.walk.next(tree) {
                WalkStep::Node(path, node) => (path, node),
                WalkStep::Yield => return false,
                WalkStep::Done => return true,
            };
            let index = acl_index_of(
                &mut self.acl_index,
                &mut self.acl_by_content,
                &mut self.acl_lists,
                path,
                &node,
            );
            write_node(&mut self.nodes, path, &node, index);
        }
        self.walk.is_done()
    }

    /// Work a step may leave that needs no tree (sorting the children of a node with
    /// many): call between steps, outside the server's lock. Optional: a step does it
    /// itself (under the lock) when it was not done.
    pub fn between_steps(&mut self) {
        self.walk.between_steps();
    }

    /// Bytes of serialised nodes held in memory (not yet spilled).
    pub fn buffered(&self) -> usize {
        self.nodes.buf.len()
    }

    /// Moves the nodes serialised so far to `spill`, so a large tree's snapshot does not
    /// sit in memory whole (a million 100-byte znodes are ~220 MB of snapshot). Called
    /// between steps, outside the server's lock; `finish_streaming` reads them back.
    pub fn spill_to(&mut self, spill: &mut dyn std::io::Write) -> std::io::Result<()> {
        spill.write_all(&self.nodes.buf)?;
        self.nodes.buf.clear();
        Ok(())
    }

    /// `finish` for a snapshot whose earlier nodes went to a spill: writes the same bytes
    /// to `out` (header, sessions, ACL cache, the spilled nodes as read from `spilled`,
    /// the nodes still buffered, the seal) without holding the file in memory.
    pub fn finish_streaming(
        self,
        spilled: &mut dyn std::io::Read,
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut w = SummingWriter {
            out,
            adler: RunningAdler32::default(),
        };
        let mut head = Vec::new();
        self.write_head(&mut head);
        w.write_all(&head)?;
        std::io::copy(spilled, &mut w)?;
        w.write_all(&self.nodes.buf)?;
        let mut tail = Writer::new();
        tail.write_ustring(ROOT);
        w.write_all(&tail.buf)?;
        // The seal: the checksum of everything before it, then the root path again.
        let mut seal = Writer::new();
        seal.write_i64(i64::from(w.adler.value()));
        seal.write_ustring(ROOT);
        w.out.write_all(&seal.buf)
    }

    /// Header, sessions and the ACL cache: what precedes the nodes.
    fn write_head(&self, out: &mut Vec<u8>) {
        let mut w = Writer {
            buf: std::mem::take(out),
        };
        w.write_i32(SNAP_MAGIC);
        w.write_i32(SNAP_VERSION);
        w.write_i64(SNAP_DBID);
        let sessions = java_session_order(&self.sessions);
        w.write_i32(sessions.len() as i32);
        for s in &sessions {
            w.write_i64(s.id);
            w.write_i32(s.timeout_ms);
        }
        w.write_i32(self.acl_lists.len() as i32);
        for (index, list) in &self.acl_lists {
            w.write_i64(*index);
            w.write_i32(list.len() as i32);
            for acl in list.iter() {
                acl.write(&mut w);
            }
        }
        *out = w.buf;
    }

    /// The whole snapshot file: header, sessions, the ACL cache met while walking, the
    /// nodes, and the seal. Appends to `out`.
    pub fn finish(self, out: &mut Vec<u8>) {
        self.finish_streaming(&mut std::io::empty(), out)
            .expect("writing to a Vec cannot fail");
    }
}

/// The ACL cache index of `node`'s list, adding the list to the cache when first met
/// (a free function so the walk's borrow of the path can be held meanwhile).
fn acl_index_of(
    acl_index: &mut HashMap<*const Vec<Acl>, i64>,
    acl_by_content: &mut HashMap<Vec<u8>, i64>,
    acl_lists: &mut Vec<(i64, Arc<Vec<Acl>>)>,
    path: &str,
    node: &Node<'_>,
) -> i64 {
    if uses_open_index(path, node) {
        return OPEN_ACL_UNSAFE_INDEX;
    }
    let ptr = Arc::as_ptr(&node.acl);
    if let Some(i) = acl_index.get(&ptr) {
        return *i;
    }
    let next = acl_lists.len() as i64 + 1;
    let index = *acl_by_content.entry(acl_key(&node.acl)).or_insert(next);
    if index == next {
        acl_lists.push((index, node.acl.clone()));
    }
    acl_index.insert(ptr, index);
    index
}

/// Whether a node is written with index -1: the nodes ZooKeeper's DataTree constructor makes
/// with OPEN_ACL_UNSAFE by index, while they still have it and no setACL moved aversion.
fn uses_open_index(path: &str, node: &Node<'_>) -> bool {
    matches!(path, ROOT | PROC_ZOOKEEPER | QUOTA_ZOOKEEPER)
        && node.stat.aversion == 0
        && node.acl_id == nodes::OPEN_ACL_ID
}

fn acl_key(acl: &[Acl]) -> Vec<u8> {
    let mut w = Writer::new();
    for a in acl {
        a.write(&mut w);
    }
    w.buf
}

fn seal(w: &mut Writer, start: usize, adler: &mut RunningAdler32) {
    let end = w.buf.len();
    let sum = adler.advance_to(&w.buf[start..], end - start);
    w.write_i64(i64::from(sum));
    w.write_ustring(ROOT);
}

/// DigestCalculator.calculateDigest for one node.
fn node_digest(path: &str, node: &Node<'_>) -> u32 {
    let s = &node.stat;
    let mut crc = crc32fast::Hasher::new();
    crc.update(if path == ROOT { b"" } else { path.as_bytes() });
    if let Some(d) = node.data() {
        crc.update(d);
    }
    for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime] {
        crc.update(&v.to_be_bytes());
    }
    for v in [s.version, s.cversion, s.aversion] {
        crc.update(&v.to_be_bytes());
    }
    crc.update(&s.ephemeral_owner.to_be_bytes());
    crc.finalize()
}

/// Sessions as `new HashMap<>(sessionsWithTimeouts)` iterates them (one entry per id).
fn java_session_order(sessions: &[SnapshotSession]) -> Vec<SnapshotSession> {
    let mut by_id: HashMap<i64, i32> = HashMap::new();
    for s in sessions {
        by_id.insert(s.id, s.timeout_ms);
    }
    let cap = java_copy_capacity(by_id.len());
    let mut v: Vec<SnapshotSession> = by_id
        .into_iter()
        .map(|(id, timeout_ms)| SnapshotSession { id, timeout_ms })
        .collect();
    v.sort_by_key(|s| (java_bucket(java_long_hash(s.id), cap), s.id));
    v
}

/// HashMap.tableSizeFor.
fn java_table_size_for(c: i64) -> u32 {
    if c <= 1 {
        return 1;
    }
    let c = c.min(1 << 30) as u32;
    (u32::MAX >> (c - 1).leading_zeros())
        .saturating_add(1)
        .min(1 << 30)
}

/// Table size of `new HashMap<>(m)` for `m.size() == n` (Java 8 to 18:
/// tableSizeFor((int) (n / 0.75f + 1.0f))).
fn java_copy_capacity(n: usize) -> u32 {
    let ft = n as f32 / 0.75f32 + 1.0f32;
    java_table_size_for(ft.min((1u32 << 30) as f32) as i64)
}

/// Table size of DataNode's `new HashSet<>(8)` holding `n` children (never shrunk).
fn java_hashset_capacity(n: usize) -> u32 {
    let mut cap: u32 = 8;
    while (n as u64) * 4 > u64::from(cap) * 3 && cap < (1 << 30) {
        cap *= 2;
    }
    cap
}

fn java_bucket(hash: i32, cap: u32) -> u32 {
    let h = hash as u32;
    (h ^ (h >> 16)) & (cap - 1)
}

fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

fn java_long_hash(v: i64) -> i32 {
    let u = v as u64;
    (u ^ (u >> 32)) as u32 as i32
}

/// java.util.zip.Adler32 of `data`.
pub fn adler32(data: &[u8]) -> u32 {
    let mut r = RunningAdler32::default();
    r.update(data);
    r.value()
}

/// An Adler32 over a growing stream: ZooKeeper's seals are cumulative (each covers every
/// byte before it), so each seal only adds the bytes since the previous one instead of
/// re-reading hundreds of MiB.
#[derive(Debug, Clone, Copy)]
pub struct RunningAdler32 {
    a: u32,
    b: u32,
    /// How many bytes of the stream are summed.
    pub upto: usize,
}

impl Default for RunningAdler32 {
    fn default() -> Self {
        RunningAdler32 {
            a: 1,
            b: 0,
            upto: 0,
        }
    }
}

impl RunningAdler32 {
    pub fn update(&mut self, data: &[u8]) {
        const MOD: u32 = 65521;
        // 5552 bytes is the most that can be summed before b could overflow a u32.
        for chunk in data.chunks(5552) {
            for &x in chunk {
                self.a += u32::from(x);
                self.b += self.a;
            }
            self.a %= MOD;
            self.b %= MOD;
        }
        self.upto += data.len();
    }

    /// Sums `stream[upto..end]` so the checksum covers `stream[..end]`.
    pub fn advance_to(&mut self, stream: &[u8], end: usize) -> u32 {
        let from = self.upto;
        self.update(&stream[from..end]);
        self.value()
    }

    pub fn value(&self) -> u32 {
        (self.b << 16) | self.a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::child_path;
    use proptest::prelude::*;
    use zkd_proto::txn::*;
    use zkd_proto::OpCode;

    use crate::tree::{ttl_of_owner, ttl_owner, QUOTA_STAT_NODE};

    struct Txns {
        tree: DataTree,
        zxid: i64,
        /// Every txn applied, for replay tests.
        log: Vec<(TxnHeader, TxnBody)>,
    }

    impl Txns {
        fn new() -> Txns {
            Txns {
                tree: DataTree::new(),
                zxid: 0,
                log: Vec::new(),
            }
        }

        fn apply(&mut self, ty: OpCode, client: i64, body: TxnBody) {
            self.zxid += 1;
            let header = TxnHeader {
                client_id: client,
                cxid: 0,
                zxid: self.zxid,
                time: 1_700_000_000_000 + self.zxid,
                txn_type: ty as i32,
            };
            self.tree.process_txn(&header, &body, &mut Vec::new());
            self.log.push((header, body));
        }

        fn create(&mut self, path: &str, data: Option<&[u8]>, acl: Vec<Acl>, owner: i64) {
            let data = data.map(<[u8]>::to_vec);
            // An explicit parent cversion, as the prep stage writes into every logged
            // create: that is what makes a replayed create idempotent.
            let parent_cversion = self
                .tree
                .get(zkd_proto::path::parent(path))
                .map_or(-1, |p| p.stat.cversion.wrapping_add(1));
            let path = path.to_string();
            match ephemeral_type(owner) {
                EphemeralType::Container => self.apply(
                    OpCode::CreateContainer,
                    1,
                    TxnBody::CreateContainer(CreateContainerTxn {
                        path,
                        data,
                        acl,
                        parent_cversion,
                    }),
                ),
                EphemeralType::Ttl => self.apply(
                    OpCode::CreateTtl,
                    1,
                    TxnBody::CreateTtl(CreateTtlTxn {
                        path,
                        data,
                        acl,
                        parent_cversion,
                        ttl: ttl_of_owner(owner),
                    }),
                ),
                t => self.apply(
                    OpCode::Create,
                    owner,
                    TxnBody::Create(CreateTxn {
                        path,
                        data,
                        acl,
                        ephemeral: t == EphemeralType::Normal,
                        parent_cversion,
                    }),
                ),
            }
        }
    }

    fn acl_choice(i: u8) -> Vec<Acl> {
        match i % 4 {
            0 => Acl::open_unsafe(),
            1 => Acl::read_unsafe(),
            2 => vec![
                Acl::new(31, "digest", "alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E="),
                Acl::new(1, "world", "anyone"),
            ],
            _ => vec![Acl::new(3, "ip", "10.0.0.0/8")],
        }
    }

    /// Everything the snapshot must carry, in a comparable form.
    #[allow(clippy::type_complexity)]
    fn contents(
        t: &DataTree,
    ) -> (
        Vec<(String, Option<Vec<u8>>, NodeStat, Vec<Acl>, Vec<String>)>,
        Vec<(i64, Vec<String>)>,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    ) {
        let nodes = t
            .paths()
            .into_iter()
            .map(|p| {
                let n = t.get(&p).unwrap();
                let mut children: Vec<String> = t.child_names(&n).map(str::to_string).collect();
                children.sort();
                (
                    p,
                    n.data().map(<[u8]>::to_vec),
                    n.stat,
                    n.acl.to_vec(),
                    children,
                )
            })
            .collect();
        (
            nodes,
            t.ephemerals_by_session(),
            t.containers().cloned().collect(),
            t.ttls().cloned().collect(),
            t.quota_paths.iter().cloned().collect(),
        )
    }

    fn round_trip(t: &DataTree, sessions: &[SnapshotSession]) -> (DataTree, Vec<SnapshotSession>) {
        let mut bytes = Vec::new();
        t.serialize_snapshot(sessions, &mut bytes);
        let (mut back, back_sessions) = deserialize_snapshot(&bytes).unwrap();
        assert_eq!(back.last_processed_zxid, 0);
        back.last_processed_zxid = t.last_processed_zxid;
        let mut again = Vec::new();
        back.serialize_snapshot(&back_sessions, &mut again);
        assert_eq!(again, bytes, "serialize(deserialize(x)) == x");
        (back, back_sessions)
    }

    #[test]
    fn a_fresh_tree_round_trips_and_matches_zookeepers_empty_snapshot_shape() {
        let t = DataTree::new();
        let mut bytes = Vec::new();
        t.serialize_snapshot(&[], &mut bytes);
        // Header, no sessions, one ACL list (READ_ACL_UNSAFE of /zookeeper/config) ...
        assert_eq!(&bytes[..4], b"ZKSN");
        assert_eq!(&bytes[16..20], &0i32.to_be_bytes());
        assert_eq!(&bytes[20..24], &1i32.to_be_bytes());
        // ... and ZooKeeper's empty digest (0, 2, 0) before the last seal.
        let tail = &bytes[bytes.len() - 13 - 20..bytes.len() - 13];
        assert_eq!(
            tail,
            &[
                &0i64.to_be_bytes()[..],
                &2i32.to_be_bytes(),
                &0i64.to_be_bytes()
            ]
            .concat()[..]
        );
        let (back, sessions) = round_trip(&t, &[]);
        assert!(sessions.is_empty());
        assert_eq!(contents(&back), contents(&t));
    }

    #[test]
    fn special_nodes_keep_index_minus_one_until_their_acl_changes() {
        let mut x = Txns::new();
        x.create("/a", Some(b"1"), Acl::open_unsafe(), 0);
        let mut bytes = Vec::new();
        x.tree.serialize_snapshot(&[], &mut bytes);
        let loaded = deserialize_snapshot_full(&bytes).unwrap();
        assert_eq!(contents(&loaded.tree), contents(&x.tree));
        // Cache: 1 = READ (config, czxid 0), 2 = OPEN (/a); the root writes -1.
        let (cache, _) = x.tree.acl_cache();
        let lists: Vec<_> = cache.iter().map(|(i, l)| (*i, l.to_vec())).collect();
        assert_eq!(
            lists,
            vec![(1, Acl::read_unsafe()), (2, Acl::open_unsafe())]
        );
        x.apply(
            OpCode::SetAcl,
            1,
            TxnBody::SetAcl(SetAclTxn {
                path: "/".into(),
                acl: Acl::open_unsafe(),
                version: 1,
            }),
        );
        assert!(!uses_open_index("/", &x.tree.get("/").unwrap()));
        round_trip(&x.tree, &[]);
    }

    #[test]
    fn parents_must_come_first_and_acl_indexes_must_exist() {
        let mut x = Txns::new();
        x.create("/a", None, acl_choice(2), 0);
        x.create("/a/b", Some(b""), acl_choice(2), 0);
        let mut good = Vec::new();
        x.tree.serialize_snapshot(&[], &mut good);
        // Renaming "/a" to "/z" makes "/a/b" an orphan (the checksum is checked after the
        // tree, so the structural error is what is reported).
        let at = good.windows(6).position(|w| w == b"\0\0\0\x02/a").unwrap() + 5;
        let mut bad = good.clone();
        bad[at] = b'z';
        let err = deserialize_snapshot(&bad).err().unwrap();
        assert!(err.to_string().contains("before its parent"), "{err}");
        // An ACL index nobody defined.
        let mut bad = good.clone();
        let node_at = good.windows(6).position(|w| w == b"\0\0\0\x02/a").unwrap();
        // path (6 bytes), data null (4 bytes), then the ACL index.
        bad[node_at + 6 + 4 + 7] = 99;
        let err = deserialize_snapshot(&bad).err().unwrap();
        assert_eq!(err.offset(), node_at + 10);
        assert!(err.to_string().contains("ACL index 99"), "{err}");
    }

    #[test]
    fn quotas_are_rebuilt_and_their_stat_nodes_recomputed() {
        let mut x = Txns::new();
        let open = Acl::open_unsafe;
        x.create("/q", Some(b"abc"), open(), 0);
        x.create("/q/c", Some(b"de"), open(), 0);
        x.create("/zookeeper/quota/q", None, open(), 0);
        let limits = format!("/zookeeper/quota/q/{QUOTA_LIMIT_NODE}");
        x.create(&limits, Some(b"count=5,bytes=-1"), open(), 0);
        let stats = format!("/zookeeper/quota/q/{QUOTA_STAT_NODE}");
        x.create(&stats, Some(b"count=0,bytes=0"), open(), 0);
        let want = Some(b"count=2,bytes=5".to_vec());
        assert_eq!(x.tree.get(&stats).unwrap().data(), want.as_deref());
        let mut bytes = Vec::new();
        // Corrupt the stat node's text before writing: loading recomputes it.
        let mut t = DataTree::new();
        std::mem::swap(&mut t, &mut x.tree);
        let id = t.nodes.lookup(&stats).unwrap();
        t.nodes.set_data(id, Some(b"count=9,bytes=9"), |_| {});
        t.serialize_snapshot(&[], &mut bytes);
        let (back, _) = deserialize_snapshot(&bytes).unwrap();
        assert_eq!(back.get(&stats).unwrap().data(), want.as_deref());
        assert_eq!(back.max_prefix_with_quota("/q/c").as_deref(), Some("/q"));
    }

    #[test]
    fn java_hash_emulation_matches_known_java_values() {
        // "hello".hashCode() == 99162322, "".hashCode() == 0, "ü".hashCode() == 252.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("\u{fc}"), 252);
        // Long.hashCode(-1L) == 0, Long.hashCode(1L << 32) == 1.
        assert_eq!(java_long_hash(-1), 0);
        assert_eq!(java_long_hash(1 << 32), 1);
        assert_eq!(java_copy_capacity(3), 8);
        assert_eq!(java_copy_capacity(12), 32);
        assert_eq!(java_copy_capacity(1), 2);
        assert_eq!(java_hashset_capacity(6), 8);
        assert_eq!(java_hashset_capacity(7), 16);
        assert_eq!(java_hashset_capacity(14), 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create {
            parent: usize,
            name: u8,
            data: Option<Vec<u8>>,
            acl: u8,
            kind: u8,
            session: i64,
        },
        SetData {
            target: usize,
            data: Option<Vec<u8>>,
        },
        SetAcl {
            target: usize,
            acl: u8,
        },
        Delete {
            target: usize,
        },
        Close {
            session: i64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let data = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6));
        prop_oneof![
            5 => (any::<usize>(), 0u8..8, data.clone(), any::<u8>(), 0u8..6, 1i64..4).prop_map(
                |(parent, name, data, acl, kind, session)| Op::Create {
                    parent, name, data, acl, kind, session
                }
            ),
            2 => (any::<usize>(), data).prop_map(|(target, data)| Op::SetData { target, data }),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(target, acl)| Op::SetAcl { target, acl }),
            2 => any::<usize>().prop_map(|target| Op::Delete { target }),
            1 => (1i64..4).prop_map(|session| Op::Close { session }),
        ]
    }

    fn build(ops: &[Op]) -> DataTree {
        build_with(ops, |_| {}).tree
    }

    /// Applies `ops`, calling `between` after each one.
    fn build_with(ops: &[Op], mut between: impl FnMut(&mut Txns)) -> Txns {
        let mut x = Txns::new();
        // A quota on /q, so that quota bookkeeping is part of every case.
        let open = Acl::open_unsafe();
        x.create("/q", Some(b"q"), open.clone(), 0);
        x.create("/zookeeper/quota/q", None, open.clone(), 0);
        x.create(
            "/zookeeper/quota/q/zookeeper_limits",
            Some(b"count=5,bytes=-1"),
            open.clone(),
            0,
        );
        x.create(
            "/zookeeper/quota/q/zookeeper_stats",
            Some(b"count=0,bytes=0"),
            open,
            0,
        );
        let session_id = |s: i64| 0x0100_0000_0000_0000 | s;
        // Session ids are never reused: a closed session creates nothing more.
        let mut closed = std::collections::HashSet::new();
        for op in ops {
            let user: Vec<String> = x
                .tree
                .paths()
                .into_iter()
                .filter(|p| !p.starts_with(PROC_ZOOKEEPER))
                .collect();
            let pick = |i: usize| user[i % user.len()].clone();
            match op {
                Op::Create {
                    parent,
                    name,
                    data,
                    acl,
                    kind,
                    session,
                } => {
                    let parent = pick(*parent);
                    if x.tree.get(&parent).unwrap().stat.ephemeral_owner != 0 {
                        continue;
                    }
                    let name = if *name == 7 {
                        "\u{fc}n\u{ef}".to_string()
                    } else {
                        format!("n{name}")
                    };
                    if *kind == 2 && closed.contains(session) {
                        continue;
                    }
                    let owner = match kind {
                        0 | 1 => 0,
                        2 => session_id(*session),
                        3 => CONTAINER_EPHEMERAL_OWNER_FOR_TESTS,
                        4 => ttl_owner(60_000),
                        _ => 0,
                    };
                    let path = child_path(&parent, &name);
                    // The prep stage turns a create of an existing node into an ErrorTxn:
                    // no create txn for it ever reaches the tree or the log.
                    if x.tree.get(&path).is_some() {
                        continue;
                    }
                    x.create(&path, data.as_deref(), acl_choice(*acl), owner);
                }
                Op::SetData { target, data } => {
                    let path = pick(*target);
                    let version = x.tree.get(&path).unwrap().stat.version + 1;
                    x.apply(
                        OpCode::SetData,
                        1,
                        TxnBody::SetData(SetDataTxn {
                            path,
                            data: data.clone(),
                            version,
                        }),
                    );
                }
                Op::SetAcl { target, acl } => {
                    let path = pick(*target);
                    let version = x.tree.get(&path).unwrap().stat.aversion + 1;
                    x.apply(
                        OpCode::SetAcl,
                        1,
                        TxnBody::SetAcl(SetAclTxn {
                            path,
                            acl: acl_choice(*acl),
                            version,
                        }),
                    );
                }
                Op::Delete { target } => {
                    let path = pick(*target);
                    if path == ROOT || x.tree.get(&path).unwrap().num_children() > 0 {
                        continue;
                    }
                    x.apply(OpCode::Delete, 1, TxnBody::Delete(DeleteTxn { path }));
                }
                Op::Close { session } => {
                    closed.insert(*session);
                    // As the prep stage does: the txn lists the session's ephemerals.
                    let paths_to_delete = x.tree.ephemerals_of(session_id(*session));
                    x.apply(
                        OpCode::CloseSession,
                        session_id(*session),
                        TxnBody::CloseSession(CloseSessionTxn { paths_to_delete }),
                    );
                }
            }
            between(&mut x);
        }
        x
    }

    /// A node with more children than a fuzzy step gathers at once has them gathered
    /// over several steps and sorted outside the lock; the order is still the one-step
    /// order, including siblings one multi created (same czxid) in one Java bucket,
    /// which go by name.
    #[test]
    fn a_big_child_set_keeps_the_one_step_order() {
        let mut x = Txns::new();
        let open = Acl::open_unsafe();
        x.create("/p", None, open.clone(), 0);
        for name in ["b", "c", "d", "e"] {
            x.create(&format!("/p/{name}"), None, open.clone(), 0);
        }
        // One multi: four creates sharing a zxid, all in bucket 1 of a capacity-16 set.
        x.zxid += 1;
        let header = TxnHeader {
            client_id: 1,
            cxid: 0,
            zxid: x.zxid,
            time: 1_700_000_000_000 + x.zxid,
            txn_type: OpCode::Create as i32,
        };
        for (i, name) in ["y", "q", "i", "a"].into_iter().enumerate() {
            let body = TxnBody::Create(CreateTxn {
                path: format!("/p/{name}"),
                data: None,
                acl: open.clone(),
                ephemeral: false,
                parent_cversion: 5 + i as i32,
            });
            x.tree.process_txn(&header, &body, &mut Vec::new());
        }
        assert_eq!(x.tree.get("/p").unwrap().num_children(), 8);
        let snapshot = |between: bool| {
            let mut f = FuzzySnapshot::begin(&x.tree, vec![]);
            while !f.step(&x.tree, 1) {
                if between {
                    f.between_steps();
                }
            }
            let mut bytes = Vec::new();
            f.finish(&mut bytes);
            bytes
        };
        // The children of /p in file order (paths "/p/<one letter>").
        let order = |bytes: &[u8]| -> String {
            bytes
                .windows(8)
                .filter(|w| w[..4] == [0, 0, 0, 4] && &w[4..7] == b"/p/")
                .map(|w| w[7] as char)
                .collect()
        };
        let mut plain = Vec::new();
        x.tree.serialize_snapshot(&[], &mut plain);
        // Capacity 16: a, q in bucket 1 and i, y in bucket 9 tie on czxid, so by name.
        assert_eq!(order(&plain), "aqbcdeiy");
        let fuzzy = snapshot(true);
        assert_eq!(order(&fuzzy), "aqbcdeiy");
        assert_eq!(snapshot(false), fuzzy);
    }

    const CONTAINER_EPHEMERAL_OWNER_FOR_TESTS: i64 = crate::tree::CONTAINER_EPHEMERAL_OWNER;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Spilling the nodes between steps and streaming them back gives the very bytes
        /// `finish` gives (so the checksum covers the same stream).
        #[test]
        fn spilled_fuzzy_snapshot_streams_the_same_bytes(
            ops in proptest::collection::vec(op(), 0..60),
            budget in 1usize..6,
            spill_every in 1usize..4,
        ) {
            let x = build_with(&ops, |_| {});
            let sessions = vec![SnapshotSession { id: 7, timeout_ms: 4000 }];
            let mut whole = FuzzySnapshot::begin(&x.tree, sessions.clone());
            while !whole.step(&x.tree, budget) {}
            let mut expected = Vec::new();
            whole.finish(&mut expected);

            let mut streamed = FuzzySnapshot::begin(&x.tree, sessions);
            let mut spill = Vec::new();
            let mut steps = 0usize;
            while !streamed.step(&x.tree, budget) {
                steps += 1;
                // Sorting a big node's children outside the lock gives the bytes
                // sorting them inside a step gives (`whole` never calls this).
                streamed.between_steps();
                if steps.is_multiple_of(spill_every) {
                    streamed.spill_to(&mut spill).unwrap();
                    prop_assert_eq!(streamed.buffered(), 0);
                }
            }
            let mut out = Vec::new();
            streamed.finish_streaming(&mut spill.as_slice(), &mut out).unwrap();
            prop_assert_eq!(&out, &expected);
            prop_assert!(deserialize_snapshot(&out).is_ok());
        }

        /// A fuzzy snapshot taken a few nodes at a time while txns keep coming, loaded and
        /// replayed from its zxid, equals the tree as it ended.
        #[test]
        fn fuzzy_snapshot_plus_replay_is_exact(
            before in proptest::collection::vec(op(), 0..40),
            during in proptest::collection::vec(op(), 0..60),
            budget in 1usize..4,
        ) {
            let all: Vec<Op> = before.iter().chain(during.iter()).cloned().collect();
            let mut fuzzy: Option<FuzzySnapshot> = None;
            let mut done = false;
            let mut applied = 0usize;
            let x = build_with(&all, |x| {
                applied += 1;
                if applied == before.len() {
                    fuzzy = Some(FuzzySnapshot::begin(&x.tree, vec![]));
                } else if let Some(f) = fuzzy.as_mut() {
                    if !done {
                        done = f.step(&x.tree, budget);
                        if applied.is_multiple_of(2) {
                            f.between_steps();
                        }
                    }
                }
            });
            let mut f = fuzzy.unwrap_or_else(|| FuzzySnapshot::begin(&x.tree, vec![]));
            while !f.step(&x.tree, budget) {}
            let zxid = f.zxid();
            let mut bytes = Vec::new();
            f.finish(&mut bytes);
            let (mut back, _) = deserialize_snapshot(&bytes).unwrap();
            let debug = std::env::var("FZ_DEBUG").is_ok();
            if debug {
                eprintln!("=== snapshot zxid {zxid}: {:?}", back.paths());
            }
            back.last_processed_zxid = zxid;
            for (h, b) in x.log.iter().filter(|(h, _)| h.zxid > zxid) {
                if debug {
                    eprintln!("replay {} {:?}", h.zxid, b);
                }
                back.process_txn(h, b, &mut Vec::new());
            }
            if debug && contents(&back) != contents(&x.tree) {
                eprintln!("MISMATCH real {:?}", x.tree.paths());
                for (h, b) in x.log.iter().filter(|(h, _)| h.zxid <= zxid) {
                    eprintln!("before {} {:?}", h.zxid, b);
                }
            }
            prop_assert_eq!(contents(&back), contents(&x.tree));
            prop_assert_eq!(back.last_processed_zxid, x.tree.last_processed_zxid);
        }

        #[test]
        fn random_trees_round_trip(
            ops in proptest::collection::vec(op(), 0..60),
            sessions in proptest::collection::vec((any::<i64>(), 1i32..100_000), 0..8),
        ) {
            let tree = build(&ops);
            let sessions: Vec<SnapshotSession> = sessions
                .into_iter()
                .map(|(id, timeout_ms)| SnapshotSession { id, timeout_ms })
                .collect();
            let (back, back_sessions) = round_trip(&tree, &sessions);
            prop_assert_eq!(contents(&back), contents(&tree));
            let mut want: HashMap<i64, i32> = HashMap::new();
            for s in &sessions {
                want.insert(s.id, s.timeout_ms);
            }
            let got: HashMap<i64, i32> = back_sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(back.zk_tree_digest(), tree.zk_tree_digest());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = deserialize_snapshot(&bytes);
            let mut with_magic = b"ZKSN\0\0\0\x02".to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = deserialize_snapshot(&with_magic);
        }

        #[test]
        fn truncated_or_damaged_snapshots_fail_cleanly(
            ops in proptest::collection::vec(op(), 0..25),
            cut in any::<usize>(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let tree = build(&ops);
            let mut bytes = Vec::new();
            tree.serialize_snapshot(&[SnapshotSession { id: 5, timeout_ms: 30_000 }], &mut bytes);
            let first_seal_end = bytes.len() - 33;
            let cut = cut % bytes.len();
            let r = deserialize_snapshot(&bytes[..cut]);
            if cut < first_seal_end {
                let err = r.err().unwrap();
                prop_assert!(err.offset() <= cut);
            }
            let mut bad = bytes.clone();
            for &(at, x) in &flips {
                let at = at % bad.len();
                bad[at] ^= x | 1;
            }
            let _ = deserialize_snapshot(&bad);
            // One damaged byte before the first seal's ignored "/" is always caught
            // (adler32 detects every single-byte change).
            let (at, x) = flips[0];
            let mut bad = bytes.clone();
            bad[at % (first_seal_end - 5)] ^= x | 1;
            prop_assert!(deserialize_snapshot(&bad).is_err());
        }
    }
}
