//! The data tree (ZooKeeper's DataTree and DataNode): znodes, their Stat, ACLs, the
//! ephemeral/container/TTL indexes and the two watch managers.
//!
//! Owns applying *committed* txns, in zxid order, and answering reads. Never validates a
//! request: by the time a txn reaches `process_txn` the prep stage has decided it; the tree
//! only applies it (and, like ZooKeeper, tolerates replays during recovery).
//!
//! Stat as ZooKeeper serves it: the node stores `cversion` as the count of child creates
//! (which also numbers sequential children) and serves `2*cversion - numChildren`, so a
//! child delete raises the visible cversion. pzxid moves on child create and delete.

use std::collections::{BTreeSet, HashMap, HashSet};

/// Hash maps on the hot path (node lookups, children sets) use foldhash: several times
/// faster than SipHash for short paths and still seeded per process, so clients cannot
/// choose colliding paths ahead of time.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
use std::sync::Arc;

use zkd_proto::records::{Acl, Stat, WatcherEvent};
use zkd_proto::txn::{TxnBody, TxnHeader};
use zkd_proto::{event_type, keeper_state, ErrorCode, OpCode};

use crate::watch::{ConnId, WatchManager, WatchMode};

/// ephemeralOwner of a container node (EphemeralType.CONTAINER_EPHEMERAL_OWNER).
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// High byte marking a TTL node's ephemeralOwner; the low 56 bits hold the ttl.
pub const TTL_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
/// Largest ttl a TTL node may carry (EphemeralType.TTL max).
pub const MAX_TTL: i64 = 0x00ff_ffff_ffff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    Void,
    Normal,
    Container,
    Ttl,
}

/// How ZooKeeper reads an ephemeralOwner (with extended types enabled).
pub fn ephemeral_type(owner: i64) -> EphemeralType {
    if owner == CONTAINER_EPHEMERAL_OWNER {
        EphemeralType::Container
    } else if owner & TTL_MASK == TTL_MASK {
        EphemeralType::Ttl
    } else if owner == 0 {
        EphemeralType::Void
    } else {
        EphemeralType::Normal
    }
}

pub fn ttl_owner(ttl: i64) -> i64 {
    TTL_MASK | ttl
}

pub fn ttl_of_owner(owner: i64) -> i64 {
    owner & MAX_TTL
}

/// The persisted part of a node's Stat (StatPersisted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Count of child creates (not the served cversion).
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

impl NodeStat {
    pub fn new(zxid: i64, time: i64, ephemeral_owner: i64) -> NodeStat {
        NodeStat {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner,
            pzxid: zxid,
        }
    }
}

pub use nodes::{AclId, AclRef, Node, NodeId, NodeTable, RemovedNode};

/// A notification to deliver to one connection, with the ACL of the node it concerns so
/// that the sender can withhold it from a watcher that may not read the node.
#[derive(Debug, Clone)]
pub struct Notification {
    pub conn: ConnId,
    pub event: WatcherEvent,
    pub zxid: i64,
    pub acl: Option<Arc<Vec<Acl>>>,
}

/// ProcessTxnResult: what applying one txn did.
#[derive(Debug, Clone, Default)]
pub struct TxnResult {
    pub txn_type: i32,
    pub err: i32,
    /// The created node's path; empty for every other txn (a create's reply is the only
    /// one that carries a path, so copying it for the others was wasted work).
    pub path: String,
    pub stat: Option<Stat>,
    pub multi: Vec<TxnResult>,
}

pub const ROOT: &str = "/";
pub const PROC_ZOOKEEPER: &str = "/zookeeper";
pub const QUOTA_ZOOKEEPER: &str = "/zookeeper/quota";
pub const CONFIG_ZOOKEEPER: &str = "/zookeeper/config";

pub struct DataTree {
    /// The znodes, and the distinct ACL lists they share (ZooKeeper's
    /// ReferenceCountedACLCache without the counts: lists are few and small).
    nodes: NodeTable,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    pub data_watches: WatchManager,
    pub child_watches: WatchManager,
    pub last_processed_zxid: i64,
    /// Paths with a quota (ZooKeeper's pTrie): those with a `zookeeper_limits` node under
    /// `/zookeeper/quota`.
    quota_paths: BTreeSet<String>,
}

/// StatsTrack: ZooKeeper's `count=N,bytes=M` quota text, with optional extra keys
/// (`countHardLimit`, `byteHardLimit`) after a `=;` separator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack {
    pub stats: std::collections::BTreeMap<String, i64>,
}

impl StatsTrack {
    pub fn parse(data: Option<&[u8]>) -> StatsTrack {
        let mut t = StatsTrack::default();
        let Some(d) = data else { return t };
        let text = String::from_utf8_lossy(d);
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            let mut kv = pair.split('=');
            let k = kv.next().unwrap_or("");
            let v = kv.next().unwrap_or("");
            let v = if v.is_empty() {
                -1
            } else {
                v.trim().parse().unwrap_or(-1)
            };
            t.stats.insert(k.to_string(), v);
        }
        t
    }

    pub fn get(&self, key: &str) -> i64 {
        self.stats.get(key).copied().unwrap_or(-1)
    }

    pub fn set(&mut self, key: &str, v: i64) {
        self.stats.insert(key.to_string(), v);
    }

    pub fn to_text(&self) -> String {
        let mut s = format!("count={},bytes={}", self.get("count"), self.get("bytes"));
        let extra: Vec<_> = self
            .stats
            .iter()
            .filter(|(k, _)| k.as_str() != "count" && k.as_str() != "bytes")
            .collect();
        if !extra.is_empty() {
            // The extra '=' makes pre-3.7 parsers ignore the new keys, as ZooKeeper does.
            s.push('=');
            for (k, v) in extra {
                s.push_str(&format!(";{k}={v}"));
            }
        }
        s
    }
}

pub const QUOTA_LIMIT_NODE: &str = "zookeeper_limits";
pub const QUOTA_STAT_NODE: &str = "zookeeper_stats";

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// A fresh tree: `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`, all with
    /// zeroed Stats, as ZooKeeper's DataTree constructor builds them.
    pub fn new() -> DataTree {
        let mut nodes = NodeTable::new(Some(b""), Acl::open_unsafe(), NodeStat::default());
        let open = nodes.intern_acl(Acl::open_unsafe());
        let read = nodes.intern_acl(Acl::read_unsafe());
        let mut add = |parent: NodeId, name: &str, acl: AclId| {
            nodes
                .insert_child(parent, name, Some(b""), acl, NodeStat::default())
                .expect("a fresh tree")
        };
        let proc = add(nodes::ROOT_ID, "zookeeper", open);
        let config = add(proc, "config", read);
        add(proc, "quota", open);
        // addConfigNode sets its ACL with setACL(..., version -1), and that -1 is stored
        // as the aversion: ZooKeeper serves aversion -1 for /zookeeper/config.
        nodes.update_stat(config, |s| s.aversion = -1);
        DataTree {
            nodes,
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            data_watches: WatchManager::new(),
            child_watches: WatchManager::new(),
            last_processed_zxid: 0,
            quota_paths: BTreeSet::new(),
        }
    }

    /// ZKDatabase.initConfigInZKDatabase: an ensemble server's membership as the data of
    /// `/zookeeper/config`, set locally (no txn) with setData(data, version -1, zxid =
    /// the config version, mtime = now) whenever the tree is loaded, so its Stat is
    /// version -1, mzxid the config version and mtime this server's load time. No watch
    /// fires: nobody can be watching while the tree is being loaded.
    pub fn set_config_node(&mut self, data: &[u8], config_version: i64, now_ms: i64) {
        let mut ignored = Vec::new();
        if self
            .set_data(
                CONFIG_ZOOKEEPER,
                Some(data),
                -1,
                config_version,
                now_ms,
                &mut ignored,
            )
            .is_err()
        {
            tracing::warn!("no {CONFIG_ZOOKEEPER} in the tree; its data stays unset");
        }
    }

    pub fn is_special_path(path: &str) -> bool {
        matches!(
            path,
            "/" | PROC_ZOOKEEPER | QUOTA_ZOOKEEPER | CONFIG_ZOOKEEPER
        )
    }

    /// The node at `path`. ZooKeeper stores the root under both "" and "/", so reads of
    /// the empty path see the root; so do ours.
    pub fn get(&self, path: &str) -> Option<Node<'_>> {
        self.nodes.lookup(path).map(|id| self.nodes.get(id))
    }

    fn contains(&self, path: &str) -> bool {
        self.nodes.lookup(path).is_some()
    }

    /// The names of a node's children (in no promised order, as in ZooKeeper).
    pub fn child_names<'a>(&'a self, node: &Node<'_>) -> impl Iterator<Item = &'a str> + 'a {
        self.nodes.children_of(node).map(|c| self.nodes.name(c))
    }

    /// The node storage, for walks that need ids (snapshots).
    pub fn node_table(&self) -> &NodeTable {
        &self.nodes
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn ephemerals_of(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(|s| s.len()).sum()
    }

    pub fn ephemerals_by_session(&self) -> Vec<(i64, Vec<String>)> {
        let mut v: Vec<_> = self
            .ephemerals
            .iter()
            .map(|(k, s)| (*k, s.iter().cloned().collect()))
            .collect();
        v.sort();
        v
    }

    pub fn containers(&self) -> impl Iterator<Item = &String> {
        self.containers.iter()
    }

    pub fn ttls(&self) -> impl Iterator<Item = &String> {
        self.ttls.iter()
    }

    /// Total bytes of data plus path lengths (ZooKeeper's approximate data size for mntr).
    pub fn approximate_data_size(&self) -> u64 {
        let mut total = 0u64;
        self.nodes
            .for_each(|p, _, n| total += p.len() as u64 + n.data_len() as u64);
        total
    }

    /// The longest path with a quota that is `path` or an ancestor of it
    /// (DataTree.getMaxPrefixWithQuota); never `/` or `/zookeeper`.
    pub fn max_prefix_with_quota(&self, path: &str) -> Option<String> {
        if self.quota_paths.is_empty() {
            return None;
        }
        let mut p = path;
        loop {
            if p != "/" && p != PROC_ZOOKEEPER && self.quota_paths.contains(p) {
                return Some(p.to_string());
            }
            if p == "/" {
                return None;
            }
            p = zkd_proto::path::parent(p);
        }
    }

    fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        let stat_path = format!("{QUOTA_ZOOKEEPER}{prefix}/{QUOTA_STAT_NODE}");
        if let Some(id) = self.nodes.lookup(&stat_path) {
            let mut t = StatsTrack::parse(self.nodes.get(id).data());
            t.set("count", t.get("count") + count_diff);
            t.set("bytes", t.get("bytes") + bytes_diff);
            self.nodes
                .set_data(id, Some(t.to_text().as_bytes()), |_| {});
        }
    }

    /// Recomputes a quota's usage from the subtree (DataTree.updateQuotaForPath).
    fn update_quota_for_path(&mut self, path: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        let mut stack: Vec<NodeId> = self.nodes.lookup(path).into_iter().collect();
        while let Some(id) = stack.pop() {
            let n = self.nodes.get(id);
            count += 1;
            bytes += n.data_len() as i64;
            stack.extend(self.nodes.children(id));
        }
        let mut t = StatsTrack::default();
        t.set("count", count);
        t.set("bytes", bytes);
        let stat_path = format!("{QUOTA_ZOOKEEPER}{path}/{QUOTA_STAT_NODE}");
        if let Some(id) = self.nodes.lookup(&stat_path) {
            self.nodes
                .set_data(id, Some(t.to_text().as_bytes()), |_| {});
        }
    }

    /// Number of descendants of `path` (getAllChildrenNumber), excluding itself.
    pub fn all_children_number(&self, path: &str) -> i32 {
        // ZooKeeper counts keys starting with path + "/"; its root is keyed "" and "/",
        // so the empty path also counts the root itself.
        if path.is_empty() {
            return self.all_children_number(ROOT) + 1;
        }
        let mut count = 0i64;
        let mut stack: Vec<NodeId> = self.nodes.lookup(path).into_iter().collect();
        while let Some(id) = stack.pop() {
            for c in self.nodes.children(id) {
                count += 1;
                stack.push(c);
            }
        }
        count as i32
    }

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        child_manager: bool,
        path: &str,
        etype: i32,
        zxid: i64,
        acl: &Arc<Vec<Acl>>,
        suppress: Option<&HashSet<ConnId>>,
        out: &mut Vec<Notification>,
    ) -> HashSet<ConnId> {
        let manager = if child_manager {
            &mut self.child_watches
        } else {
            &mut self.data_watches
        };
        let fired = manager.trigger(path, suppress);
        let mut sorted: Vec<_> = fired.iter().copied().collect();
        sorted.sort();
        for conn in sorted {
            out.push(Notification {
                conn,
                event: WatcherEvent {
                    event_type: etype,
                    state: keeper_state::SYNC_CONNECTED,
                    path: path.to_string(),
                },
                zxid,
                acl: Some(acl.clone()),
            });
        }
        fired
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: Vec<Acl>,
        ephemeral_owner: i64,
        parent_cversion: i32,
        zxid: i64,
        time: i64,
        out: &mut Vec<Notification>,
    ) -> Result<Stat, ErrorCode> {
        let parent_name = zkd_proto::path::parent(path);
        let child_name = zkd_proto::path::basename(path);
        let Some(parent_id) = self.nodes.lookup(parent_name) else {
            return Err(ErrorCode::NoNode);
        };
        // Replaying over a fuzzy snapshot, the parent may be a later incarnation (the walk
        // reached it after it was deleted and created again): this txn's parent is gone,
        // with the child, so it must not touch the new parent's cversion/pzxid.
        if self.nodes.get(parent_id).stat.czxid > zxid {
            return Err(ErrorCode::NoNode);
        }
        if self.nodes.child(parent_id, child_name).is_some() {
            // Only a replay over a fuzzy snapshot gets here (prep never logs a create of an
            // existing node): the child is already in the snapshot, the parent may predate
            // it. Move the parent's cversion/pzxid forward as the create did (ZooKeeper's
            // setCversionPzxid, which it does for op 1 only; every create kind needs it).
            if parent_cversion > self.nodes.get(parent_id).stat.cversion {
                self.nodes.update_stat(parent_id, |s| {
                    s.cversion = parent_cversion;
                    s.pzxid = zxid;
                });
            }
            return Err(ErrorCode::NodeExists);
        }
        let acl = self.intern_acl(acl);
        let parent = self.nodes.get(parent_id);
        let parent_cversion = if parent_cversion == -1 {
            parent.stat.cversion.wrapping_add(1)
        } else {
            parent_cversion
        };
        let parent_acl = parent.acl.clone();
        // As ZooKeeper: only move forward, so a replayed create cannot roll the parent back.
        if parent_cversion > parent.stat.cversion {
            self.nodes.update_stat(parent_id, |s| {
                s.cversion = parent_cversion;
                s.pzxid = zxid;
            });
        }
        let data_len = data.map_or(0, |d| d.len() as i64);
        let id = self
            .nodes
            .insert_child(
                parent_id,
                child_name,
                data,
                acl,
                NodeStat::new(zxid, time, ephemeral_owner),
            )
            .expect("checked absent above");
        let node = self.nodes.get(id);
        let stat = node.client_stat();
        let acl = node.acl.clone();
        match ephemeral_type(ephemeral_owner) {
            EphemeralType::Container => {
                self.containers.insert(path.to_string());
            }
            EphemeralType::Ttl => {
                self.ttls.insert(path.to_string());
            }
            EphemeralType::Normal => {
                self.ephemerals
                    .entry(ephemeral_owner)
                    .or_default()
                    .insert(path.to_string());
            }
            EphemeralType::Void => {}
        }
        if let Some(quota_path) = parent_name.strip_prefix(QUOTA_ZOOKEEPER) {
            let quota_path = quota_path.to_string();
            if child_name == QUOTA_LIMIT_NODE {
                self.quota_paths.insert(quota_path.clone());
            }
            if child_name == QUOTA_STAT_NODE {
                self.update_quota_for_path(&quota_path);
            }
        }
        if let Some(prefix) = self.max_prefix_with_quota(path) {
            self.update_quota_stat(&prefix, data_len, 1);
        }
        self.notify(false, path, event_type::NODE_CREATED, zxid, &acl, None, out);
        self.notify(
            true,
            parent_name,
            event_type::NODE_CHILDREN_CHANGED,
            zxid,
            &parent_acl,
            None,
            out,
        );
        Ok(stat)
    }

    /// Drops a node from the ephemeral/container/TTL indexes.
    fn unindex(&mut self, path: &str, owner: i64) {
        match ephemeral_type(owner) {
            EphemeralType::Container => {
                self.containers.remove(path);
            }
            EphemeralType::Ttl => {
                self.ttls.remove(path);
            }
            EphemeralType::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            EphemeralType::Void => {}
        }
    }

    /// Removes whatever is below `id` (only an inconsistent replay leaves a deleted
    /// node with children; ZooKeeper would keep them as unreachable map entries).
    fn remove_descendants(&mut self, id: NodeId) {
        let mut doomed: Vec<(NodeId, String)> = Vec::new();
        let mut stack: Vec<NodeId> = self.nodes.children(id).collect();
        while let Some(c) = stack.pop() {
            doomed.push((c, self.nodes.path_of(c)));
            stack.extend(self.nodes.children(c));
        }
        // Deepest first, so each removal is of a leaf.
        for (c, path) in doomed.into_iter().rev() {
            let n = self.nodes.remove_leaf(c);
            self.unindex(&path, n.stat.ephemeral_owner);
        }
    }

    fn delete_node(
        &mut self,
        path: &str,
        zxid: i64,
        out: &mut Vec<Notification>,
    ) -> Result<(), ErrorCode> {
        let parent_name = zkd_proto::path::parent(path);
        let child_name = zkd_proto::path::basename(path);
        let Some(parent_id) = self.nodes.lookup(parent_name) else {
            return Err(ErrorCode::NoNode);
        };
        let id = self.nodes.child(parent_id, child_name);
        // Replaying over a fuzzy snapshot, the node at `path` may be a later incarnation
        // (created after this delete): it is not the one this txn deleted.
        let later = id.is_some_and(|id| self.nodes.get(id).stat.czxid > zxid);
        let parent = self.nodes.get(parent_id);
        let parent_acl = parent.acl.clone();
        if zxid > parent.stat.pzxid {
            self.nodes.update_stat(parent_id, |s| s.pzxid = zxid);
        }
        if later {
            return Ok(());
        }
        let Some(id) = id else {
            return Err(ErrorCode::NoNode);
        };
        if self.nodes.get(id).num_children() > 0 {
            self.remove_descendants(id);
        }
        let node = self.nodes.remove_leaf(id);
        self.unindex(path, node.stat.ephemeral_owner);
        if parent_name.starts_with(PROC_ZOOKEEPER) && child_name == QUOTA_LIMIT_NODE {
            if let Some(q) = parent_name.strip_prefix(QUOTA_ZOOKEEPER) {
                self.quota_paths.remove(q);
            }
        }
        if let Some(prefix) = self.max_prefix_with_quota(path) {
            let bytes = node.data_len as i64;
            self.update_quota_stat(&prefix, -bytes, -1);
        }
        let processed = self.notify(
            false,
            path,
            event_type::NODE_DELETED,
            zxid,
            &node.acl,
            None,
            out,
        );
        self.notify(
            true,
            path,
            event_type::NODE_DELETED,
            zxid,
            &node.acl,
            Some(&processed),
            out,
        );
        self.notify(
            true,
            parent_name,
            event_type::NODE_CHILDREN_CHANGED,
            zxid,
            &parent_acl,
            None,
            out,
        );
        Ok(())
    }

    fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        zxid: i64,
        time: i64,
        out: &mut Vec<Notification>,
    ) -> Result<Stat, ErrorCode> {
        let Some(id) = self.nodes.lookup(path) else {
            return Err(ErrorCode::NoNode);
        };
        let n = self.nodes.get(id);
        // A later incarnation of the path (fuzzy snapshot replay): not this txn's node.
        if n.stat.czxid > zxid {
            return Ok(n.client_stat());
        }
        let bytes_diff = data.map_or(0, |d| d.len() as i64) - n.data_len() as i64;
        self.nodes.set_data(id, data, |s| {
            s.mtime = time;
            s.mzxid = zxid;
            s.version = version;
        });
        let n = self.nodes.get(id);
        let stat = n.client_stat();
        let acl = n.acl.clone();
        if let Some(prefix) = self.max_prefix_with_quota(path) {
            self.update_quota_stat(&prefix, bytes_diff, 0);
        }
        self.notify(
            false,
            path,
            event_type::NODE_DATA_CHANGED,
            zxid,
            &acl,
            None,
            out,
        );
        Ok(stat)
    }

    /// The number of the shared copy of an ACL list.
    pub fn intern_acl(&mut self, acl: Vec<Acl>) -> AclId {
        self.nodes.intern_acl(acl)
    }

    fn set_acl(
        &mut self,
        path: &str,
        acl: Vec<Acl>,
        version: i32,
        zxid: i64,
    ) -> Result<Stat, ErrorCode> {
        let acl = self.intern_acl(acl);
        let Some(id) = self.nodes.lookup(path) else {
            return Err(ErrorCode::NoNode);
        };
        let n = self.nodes.get(id);
        // A later incarnation of the path (fuzzy snapshot replay): not this txn's node.
        if n.stat.czxid > zxid {
            return Ok(n.client_stat());
        }
        self.nodes.set_acl(id, acl, |s| s.aversion = version);
        Ok(self.nodes.get(id).client_stat())
    }

    /// Deletes a closed session's ephemerals (DataTree.killSession): the paths the txn
    /// lists first, then any the local index still has. Deleting a listed path that is
    /// already gone still moves its parent's pzxid, which a fuzzy snapshot's replay needs.
    fn kill_session(
        &mut self,
        session: i64,
        listed: &[String],
        zxid: i64,
        out: &mut Vec<Notification>,
    ) {
        for p in listed {
            let _ = self.delete_node(p, zxid, out);
        }
        let rest = self.ephemerals.remove(&session).unwrap_or_default();
        for p in rest {
            let _ = self.delete_node(&p, zxid, out);
        }
    }

    /// Applies one committed txn (DataTree.processTxn). Errors go into the result, as in
    /// ZooKeeper; notifications for fired watches are appended to `out` in firing order.
    pub fn process_txn(
        &mut self,
        header: &TxnHeader,
        body: &TxnBody,
        out: &mut Vec<Notification>,
    ) -> TxnResult {
        let mut rc = self.process_one(header, body, out);
        if header.zxid > self.last_processed_zxid {
            self.last_processed_zxid = header.zxid;
        }
        rc.txn_type = header.txn_type;
        rc
    }

    fn process_one(
        &mut self,
        header: &TxnHeader,
        body: &TxnBody,
        out: &mut Vec<Notification>,
    ) -> TxnResult {
        let mut rc = TxnResult {
            txn_type: body.txn_type(),
            ..Default::default()
        };
        let zxid = header.zxid;
        let time = header.time;
        let res: Result<(), ErrorCode> = match body {
            TxnBody::Create(_)
            | TxnBody::Create2(_)
            | TxnBody::CreateTtl(_)
            | TxnBody::CreateContainer(_) => {
                let (path, data, acl, owner, parent_cversion) =
                    create_fields(body, header.client_id).expect("a create txn");
                rc.path = path.clone();
                self.create_node(
                    path,
                    data.as_deref(),
                    acl.clone(),
                    owner,
                    parent_cversion,
                    zxid,
                    time,
                    out,
                )
                .map(|s| rc.stat = Some(s))
            }
            TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => {
                self.delete_node(&t.path, zxid, out)
            }
            TxnBody::SetData(t) => self
                .set_data(&t.path, t.data.as_deref(), t.version, zxid, time, out)
                .map(|s| rc.stat = Some(s)),
            TxnBody::SetAcl(t) => self
                .set_acl(&t.path, t.acl.clone(), t.version, zxid)
                .map(|s| rc.stat = Some(s)),
            TxnBody::CloseSession(t) => {
                self.kill_session(header.client_id, &t.paths_to_delete, zxid, out);
                Ok(())
            }
            TxnBody::CreateSession(_) => Ok(()),
            TxnBody::Error(e) => {
                rc.err = e.err;
                Ok(())
            }
            TxnBody::Check(_) => Ok(()),
            TxnBody::Multi(subs) => {
                let failed = subs.iter().any(|(ty, _)| *ty == OpCode::Error as i32);
                let mut post_failed = false;
                rc.multi.reserve_exact(subs.len());
                // Applied by reference: cloning every sub body (its path and data) cost
                // two allocations and copies per sub-op. Only a rolled-back op's
                // replacement ErrorTxn is built here.
                let mut rolled_back;
                for (ty, sub) in subs {
                    let (ty, sub_body) = if *ty == OpCode::Error as i32 {
                        post_failed = true;
                        (*ty, sub)
                    } else if failed {
                        let ec = if post_failed {
                            ErrorCode::RuntimeInconsistency.code()
                        } else {
                            0
                        };
                        rolled_back = TxnBody::Error(zkd_proto::txn::ErrorTxn { err: ec });
                        (OpCode::Error as i32, &rolled_back)
                    } else {
                        (*ty, sub)
                    };
                    let sub_header = TxnHeader {
                        txn_type: ty,
                        ..header.clone()
                    };
                    let mut sub_rc = self.process_one(&sub_header, sub_body, out);
                    sub_rc.txn_type = ty;
                    if sub_rc.err != 0 && rc.err == 0 {
                        rc.err = sub_rc.err;
                    }
                    rc.multi.push(sub_rc);
                }
                Ok(())
            }
        };
        if let Err(e) = res {
            rc.err = e.code();
        }
        rc
    }

    /// setWatches: re-arms a reconnecting client's watches, or fires at once those whose
    /// node changed since `relative_zxid` (DataTree.setWatches). Such events carry zxid -1.
    #[allow(clippy::too_many_arguments)]
    pub fn set_watches(
        &mut self,
        relative_zxid: i64,
        data_watches: &[String],
        exist_watches: &[String],
        child_watches: &[String],
        persistent: &[String],
        persistent_recursive: &[String],
        conn: ConnId,
        out: &mut Vec<Notification>,
    ) {
        let ev = |etype: i32, path: &str| Notification {
            conn,
            event: WatcherEvent {
                event_type: etype,
                state: keeper_state::SYNC_CONNECTED,
                path: path.to_string(),
            },
            zxid: -1,
            acl: None,
        };
        for p in data_watches {
            match self.get(p) {
                None => out.push(ev(event_type::NODE_DELETED, p)),
                Some(n) if n.stat.mzxid > relative_zxid => {
                    out.push(ev(event_type::NODE_DATA_CHANGED, p))
                }
                Some(_) => {
                    self.data_watches.add_watch(p, conn, WatchMode::Standard);
                }
            }
        }
        for p in exist_watches {
            if self.contains(p) {
                out.push(ev(event_type::NODE_CREATED, p));
            } else {
                self.data_watches.add_watch(p, conn, WatchMode::Standard);
            }
        }
        for p in child_watches {
            match self.get(p) {
                None => out.push(ev(event_type::NODE_DELETED, p)),
                Some(n) if n.stat.pzxid > relative_zxid => {
                    out.push(ev(event_type::NODE_CHILDREN_CHANGED, p))
                }
                Some(_) => {
                    self.child_watches.add_watch(p, conn, WatchMode::Standard);
                }
            }
        }
        for p in persistent {
            self.child_watches.add_watch(p, conn, WatchMode::Persistent);
            self.data_watches.add_watch(p, conn, WatchMode::Persistent);
        }
        for p in persistent_recursive {
            self.data_watches
                .add_watch(p, conn, WatchMode::PersistentRecursive);
        }
    }

    /// addWatch (DataTree.addWatch).
    pub fn add_watch(&mut self, path: &str, conn: ConnId, mode: WatchMode) {
        self.data_watches.add_watch(path, conn, mode);
        if mode != WatchMode::PersistentRecursive {
            self.child_watches.add_watch(path, conn, mode);
        }
    }

    pub fn remove_connection(&mut self, conn: ConnId) {
        self.data_watches.remove_watcher(conn);
        self.child_watches.remove_watcher(conn);
    }

    /// checkWatches/removeWatches (DataTree.containsWatcher/removeWatch), by WatcherType.
    pub fn watch_op(&mut self, path: &str, watcher_type: i32, conn: ConnId, remove: bool) -> bool {
        use zkd_proto::watcher_type as wt;
        let std = Some(WatchMode::Standard);
        let op = |m: &mut WatchManager, mode: Option<WatchMode>| {
            if remove {
                m.remove(path, conn, mode)
            } else {
                m.contains(path, conn, mode)
            }
        };
        match watcher_type {
            wt::CHILDREN => op(&mut self.child_watches, std),
            wt::DATA => op(&mut self.data_watches, std),
            wt::PERSISTENT if remove => {
                let a = op(&mut self.child_watches, Some(WatchMode::Persistent));
                let b = op(&mut self.data_watches, Some(WatchMode::Persistent));
                a || b
            }
            wt::PERSISTENT => op(&mut self.data_watches, Some(WatchMode::Persistent)),
            wt::PERSISTENT_RECURSIVE => {
                op(&mut self.data_watches, Some(WatchMode::PersistentRecursive))
            }
            _ if remove => {
                let a = op(&mut self.child_watches, None);
                let b = op(&mut self.data_watches, None);
                a || b
            }
            _ => op(&mut self.child_watches, None) || op(&mut self.data_watches, None),
        }
    }

    /// Sorted snapshot of all paths, for tests and dumps.
    pub fn paths(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.nodes.len());
        self.nodes.for_each(|p, _, _| v.push(p.to_string()));
        v.sort();
        v
    }
}

/// What the four create txns share: path, data, ACL, the ephemeralOwner they give the
/// node, and the parent's new create count.
#[allow(clippy::type_complexity)]
fn create_fields(
    body: &TxnBody,
    client_id: i64,
) -> Option<(&String, &Option<Vec<u8>>, &Vec<Acl>, i64, i32)> {
    Some(match body {
        TxnBody::Create(t) | TxnBody::Create2(t) => {
            let owner = if t.ephemeral { client_id } else { 0 };
            (&t.path, &t.data, &t.acl, owner, t.parent_cversion)
        }
        TxnBody::CreateTtl(t) => (
            &t.path,
            &t.data,
            &t.acl,
            ttl_owner(t.ttl),
            t.parent_cversion,
        ),
        TxnBody::CreateContainer(t) => (
            &t.path,
            &t.data,
            &t.acl,
            CONTAINER_EPHEMERAL_OWNER,
            t.parent_cversion,
        ),
        _ => return None,
    })
}

pub fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

mod nodes;
pub mod snapshot;

#[cfg(test)]
mod tests;
