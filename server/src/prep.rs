//! The prep stage (ZooKeeper's PrepRequestProcessor): turns a write request into a txn.
//!
//! Owns validation of writes (paths, versions, ACLs, node types) against the *pending*
//! view of the tree: the committed tree overlaid with the change records of txns that are
//! prepared but not yet applied, so pipelined writes see each other (a create under a
//! parent created by the previous, still uncommitted, request succeeds). Assigns zxids.
//! Never mutates the tree.
//!
//! As in ZooKeeper, a failed write still becomes a txn: an ErrorTxn (or a MultiTxn whose
//! failed op is an ErrorTxn) with its own zxid, so every write reply carries a fresh zxid.

use std::collections::VecDeque;
use std::sync::Arc;

use zkd_proto::path::{validate_path, validate_path_sequential};
use zkd_proto::records::{perms, Acl, Id};
use zkd_proto::request::MultiOp;
use zkd_proto::txn::*;
use zkd_proto::{CreateMode, ErrorCode, OpCode, Request};

use crate::acl::{check_acl, fixup_acl};
use crate::tree::{
    ephemeral_type, ttl_owner, DataTree, EphemeralType, FastMap, NodeStat, StatsTrack,
    CONTAINER_EPHEMERAL_OWNER, MAX_TTL,
};

/// ChangeRecord: the pending state of one path.
#[derive(Debug, Clone)]
struct ChangeRecord {
    zxid: i64,
    /// None: the path is pending deletion.
    stat: Option<NodeStat>,
    child_count: i32,
    acl: Arc<Vec<Acl>>,
}

/// Who is asking, and the server settings prep needs.
pub struct PrepContext<'a> {
    pub session_id: i64,
    pub cxid: i32,
    pub auth: &'a [Id],
    pub time_ms: i64,
    pub extended_types_enabled: bool,
    /// zookeeper.enforceQuota: hard quota limits fail writes with QuotaExceeded.
    pub enforce_quota: bool,
    /// zookeeper.skipACL: no ACL is checked (ZooKeeper's escape hatch for recovery).
    pub skip_acl: bool,
}

#[derive(Default)]
pub struct Prep {
    /// The pending record of each path with one. The key is shared with `order` (one
    /// allocation per changed path, not two) and hashed with foldhash: every sub-op of
    /// every write looks its paths up here, and SipHash showed in the profiles.
    outstanding: FastMap<Arc<str>, ChangeRecord>,
    order: VecDeque<(i64, Arc<str>)>,
    /// While a multi is being prepared: what each `add` replaced (None: the path had no
    /// record), newest last, so a failed multi puts back exactly what it overwrote.
    undo: Vec<(Arc<str>, Option<ChangeRecord>)>,
    in_multi: bool,
    /// Last zxid handed out.
    pub last_zxid: i64,
}

type PResult<T> = Result<T, ErrorCode>;

impl Prep {
    pub fn new(last_zxid: i64) -> Prep {
        Prep {
            last_zxid,
            ..Default::default()
        }
    }

    fn next_zxid(&mut self) -> i64 {
        self.last_zxid += 1;
        self.last_zxid
    }

    /// Forgets change records made by txns up to `zxid`, once they are in the tree.
    pub fn applied(&mut self, zxid: i64) {
        while let Some((z, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let (z, p) = self.order.pop_front().expect("front exists");
            if let std::collections::hash_map::Entry::Occupied(e) = self.outstanding.entry(p) {
                if e.get().zxid == z {
                    e.remove();
                }
            }
        }
    }

    fn record(&self, tree: &DataTree, path: &str) -> PResult<ChangeRecord> {
        if let Some(c) = self.outstanding.get(path) {
            return if c.stat.is_some() {
                Ok(c.clone())
            } else {
                Err(ErrorCode::NoNode)
            };
        }
        match tree.get(path) {
            Some(n) => Ok(ChangeRecord {
                zxid: -1,
                stat: Some(n.stat),
                child_count: n.num_children() as i32,
                acl: n.acl.clone(),
            }),
            None => Err(ErrorCode::NoNode),
        }
    }

    fn add(&mut self, path: &str, rec: ChangeRecord) {
        let key: Arc<str> = match self.outstanding.get_key_value(path) {
            Some((k, _)) => k.clone(),
            None => Arc::from(path),
        };
        self.order.push_back((rec.zxid, key.clone()));
        let old = self.outstanding.insert(key.clone(), rec);
        if self.in_multi {
            self.undo.push((key, old));
        }
    }

    /// Undoes a failed multi's records: its `order` entries go and every record it
    /// replaced comes back (or goes, if there was none before).
    fn roll_back_multi(&mut self, order_len: usize) {
        self.order.truncate(order_len);
        while let Some((path, old)) = self.undo.pop() {
            match old {
                Some(c) => {
                    self.outstanding.insert(path, c);
                }
                None => {
                    self.outstanding.remove(&path);
                }
            }
        }
    }

    fn header(&self, ctx: &PrepContext<'_>, zxid: i64, txn_type: i32) -> TxnHeader {
        TxnHeader {
            client_id: ctx.session_id,
            cxid: ctx.cxid,
            zxid,
            time: ctx.time_ms,
            txn_type,
        }
    }

    /// Prepares a createSession txn.
    pub fn create_session(&mut self, ctx: &PrepContext<'_>, timeout_ms: i32) -> TxnEntry {
        let zxid = self.next_zxid();
        TxnEntry {
            header: self.header(ctx, zxid, OpCode::CreateSession as i32),
            body: TxnBody::CreateSession(CreateSessionTxn {
                time_out: timeout_ms,
            }),
        }
    }

    /// Prepares a closeSession txn listing the session's ephemerals, pending ones included.
    pub fn close_session(&mut self, tree: &DataTree, ctx: &PrepContext<'_>) -> TxnEntry {
        let zxid = self.next_zxid();
        let mut es: std::collections::BTreeSet<String> =
            tree.ephemerals_of(ctx.session_id).into_iter().collect();
        for (p, c) in &self.outstanding {
            match c.stat {
                None => {
                    es.remove(&**p);
                }
                Some(s) if s.ephemeral_owner == ctx.session_id => {
                    es.insert(p.to_string());
                }
                _ => {}
            }
        }
        for p in &es {
            let parent = zkd_proto::path::parent(p).to_string();
            if let Ok(mut pr) = self.record(tree, &parent) {
                pr.zxid = zxid;
                if let Some(s) = pr.stat.as_mut() {
                    s.pzxid = zxid;
                }
                pr.child_count -= 1;
                self.add(&parent, pr);
            }
            self.add(
                p,
                ChangeRecord {
                    zxid,
                    stat: None,
                    child_count: 0,
                    acl: Arc::new(Vec::new()),
                },
            );
        }
        TxnEntry {
            header: self.header(ctx, zxid, OpCode::CloseSession as i32),
            body: TxnBody::CloseSession(CloseSessionTxn {
                paths_to_delete: es.into_iter().collect(),
            }),
        }
    }

    /// Prepares a write request. Always returns a txn: failures become ErrorTxns.
    ///
    /// Takes the request by value: its paths and data move into the txn instead of being
    /// copied (a multi of n setData ops used to allocate and copy each path and data
    /// twice, once for the txn and once more when the request was dropped later).
    pub fn prep_write(&mut self, tree: &DataTree, ctx: &PrepContext<'_>, req: Request) -> TxnEntry {
        let zxid = self.next_zxid();
        let op = req.op_code();
        let res = match req {
            Request::Multi(ops) => {
                // ZooKeeper refuses reads inside a multi while decoding it ("Mixing
                // different kind of ops"): the whole request fails with MARSHALLINGERROR.
                if ops.iter().any(MultiOp::is_read) {
                    return TxnEntry {
                        header: self.header(ctx, zxid, OpCode::Error as i32),
                        body: TxnBody::Error(ErrorTxn {
                            err: ErrorCode::MarshallingError.code(),
                        }),
                    };
                }
                return self.prep_multi(tree, ctx, zxid, ops);
            }
            Request::Create { op, req } => self.prep_create(
                tree, ctx, zxid, op, req.path, req.data, &req.acl, req.flags, -1,
            ),
            Request::CreateTtl(r) => self.prep_create(
                tree,
                ctx,
                zxid,
                OpCode::CreateTtl,
                r.path,
                r.data,
                &r.acl,
                r.flags,
                r.ttl,
            ),
            Request::Delete(r) => self.prep_delete(tree, ctx, zxid, r.path, r.version),
            Request::DeleteContainer(p) => self.prep_delete_container(tree, zxid, p),
            Request::SetData(r) => self.prep_set_data(tree, ctx, zxid, r.path, r.data, r.version),
            Request::SetAcl(r) => self.prep_set_acl(tree, ctx, zxid, r.path, r.acl, r.version),
            Request::Check(r) => self.prep_check(tree, ctx, r.path, r.version),
            // Dynamic reconfiguration is off (reconfigEnabled=false): ZooKeeper still
            // logs the refusal as an ErrorTxn.
            Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
            _ => Err(ErrorCode::Unimplemented),
        };
        match res {
            Ok(body) => TxnEntry {
                header: self.header(ctx, zxid, op as i32),
                body,
            },
            Err(e) => TxnEntry {
                header: self.header(ctx, zxid, OpCode::Error as i32),
                body: TxnBody::Error(ErrorTxn { err: e.code() }),
            },
        }
    }

    fn prep_multi(
        &mut self,
        tree: &DataTree,
        ctx: &PrepContext<'_>,
        zxid: i64,
        ops: Vec<MultiOp>,
    ) -> TxnEntry {
        // Every record the ops add is undoable until the multi is known to succeed.
        let order_len = self.order.len();
        self.undo.clear();
        self.in_multi = true;
        let mut subs = Vec::with_capacity(ops.len());
        let mut failed = false;
        for op in ops {
            if failed {
                subs.push((
                    OpCode::Error as i32,
                    TxnBody::Error(ErrorTxn {
                        err: ErrorCode::RuntimeInconsistency.code(),
                    }),
                ));
                continue;
            }
            let ty = op.op_code() as i32;
            let res = match op {
                MultiOp::Create { op, req } => self.prep_create(
                    tree, ctx, zxid, op, req.path, req.data, &req.acl, req.flags, -1,
                ),
                MultiOp::CreateTtl(r) => self.prep_create(
                    tree,
                    ctx,
                    zxid,
                    OpCode::CreateTtl,
                    r.path,
                    r.data,
                    &r.acl,
                    r.flags,
                    r.ttl,
                ),
                MultiOp::Delete(r) => self.prep_delete(tree, ctx, zxid, r.path, r.version),
                MultiOp::SetData(r) => {
                    self.prep_set_data(tree, ctx, zxid, r.path, r.data, r.version)
                }
                MultiOp::Check(r) => self.prep_check(tree, ctx, r.path, r.version),
                // ZooKeeper refuses to mix reads into a multi at decode time.
                MultiOp::GetChildren(_) | MultiOp::GetData(_) => Err(ErrorCode::MarshallingError),
            };
            match res {
                Ok(body) => subs.push((ty, body)),
                Err(e) => {
                    failed = true;
                    subs.push((
                        OpCode::Error as i32,
                        TxnBody::Error(ErrorTxn { err: e.code() }),
                    ));
                    self.roll_back_multi(order_len);
                }
            }
        }
        self.in_multi = false;
        self.undo.clear();
        TxnEntry {
            header: self.header(ctx, zxid, OpCode::Multi as i32),
            body: TxnBody::Multi(subs),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prep_create(
        &mut self,
        tree: &DataTree,
        ctx: &PrepContext<'_>,
        zxid: i64,
        op: OpCode,
        path: String,
        data: Option<Vec<u8>>,
        acl: &[Acl],
        flags: i32,
        ttl: i64,
    ) -> PResult<TxnBody> {
        let mode = CreateMode::from_flag(flags).ok_or(ErrorCode::BadArguments)?;
        // validateCreateRequest
        if mode.is_ttl() && !ctx.extended_types_enabled {
            return Err(ErrorCode::Unimplemented);
        }
        if mode.is_ttl() {
            if ttl > MAX_TTL || ttl <= 0 {
                return Err(ErrorCode::BadArguments);
            }
        } else if ttl >= 0 {
            return Err(ErrorCode::BadArguments);
        }
        // The op code, not the flag, decides the txn (and so the node type): create2 with
        // the container flag makes a plain node and createContainer with flag 0 a
        // container, exactly as ZooKeeper 3.9 does. Clients never send such mixes.
        // validatePathForCreate
        let Some(last_slash) = path.rfind('/') else {
            return Err(ErrorCode::BadArguments);
        };
        if path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        // The parent is the path up to its last slash ("/" for a top-level node): a
        // prefix of the path, before and after a sequential suffix is appended.
        let parent_end = last_slash.max(1);
        let list_acl = fixup_acl(ctx.auth, acl)?;
        let parent = self.record(tree, &path[..parent_end])?;
        check_acl(&parent.acl, perms::CREATE, ctx.auth, ctx.skip_acl)?;
        let parent_stat = parent.stat.expect("record exists");
        let parent_cversion = parent_stat.cversion;
        let path = if mode.is_sequential() {
            format!("{path}{parent_cversion:010}")
        } else {
            path
        };
        validate_path_sequential(&path, false).map_err(|_| ErrorCode::BadArguments)?;
        if self.record(tree, &path).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if ephemeral_type(parent_stat.ephemeral_owner) == EphemeralType::Normal {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let new_cversion = parent_cversion.wrapping_add(1);
        check_quota(tree, ctx, &path, 0, data_len(&data), 1)?;
        let owner = if mode.is_container() {
            CONTAINER_EPHEMERAL_OWNER
        } else if mode.is_ttl() {
            ttl_owner(ttl)
        } else if mode.is_ephemeral() {
            ctx.session_id
        } else {
            0
        };
        let mut pr = parent;
        pr.zxid = zxid;
        pr.child_count += 1;
        if let Some(s) = pr.stat.as_mut() {
            s.cversion = new_cversion;
            s.pzxid = zxid;
        }
        self.add(&path[..parent_end], pr);
        self.add(
            &path,
            ChangeRecord {
                zxid,
                stat: Some(NodeStat::new(zxid, ctx.time_ms, owner)),
                child_count: 0,
                acl: Arc::new(list_acl.clone()),
            },
        );
        Ok(match op {
            OpCode::CreateContainer => TxnBody::CreateContainer(CreateContainerTxn {
                path,
                data,
                acl: list_acl,
                parent_cversion: new_cversion,
            }),
            OpCode::CreateTtl => TxnBody::CreateTtl(CreateTtlTxn {
                path,
                data,
                acl: list_acl,
                parent_cversion: new_cversion,
                ttl,
            }),
            _ => {
                let t = CreateTxn {
                    path,
                    data,
                    acl: list_acl,
                    ephemeral: mode.is_ephemeral(),
                    parent_cversion: new_cversion,
                };
                if op == OpCode::Create2 {
                    TxnBody::Create2(t)
                } else {
                    TxnBody::Create(t)
                }
            }
        })
    }

    /// Where the parent's path ends in `path` (its last slash; "/" for a top-level node).
    fn parent_and_validate(path: &str) -> PResult<usize> {
        let Some(i) = path.rfind('/') else {
            return Err(ErrorCode::BadArguments);
        };
        if path.contains('\0') || DataTree::is_special_path(path) {
            return Err(ErrorCode::BadArguments);
        }
        Ok(i.max(1))
    }

    fn prep_delete(
        &mut self,
        tree: &DataTree,
        ctx: &PrepContext<'_>,
        zxid: i64,
        path: String,
        version: i32,
    ) -> PResult<TxnBody> {
        let parent_end = Self::parent_and_validate(&path)?;
        let parent = self.record(tree, &path[..parent_end])?;
        check_acl(&parent.acl, perms::DELETE, ctx.auth, ctx.skip_acl)?;
        let node = self.record(tree, &path)?;
        check_and_inc_version(node.stat.expect("exists").version, version)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        self.record_delete(parent, &path[..parent_end], &path, zxid);
        Ok(TxnBody::Delete(DeleteTxn { path }))
    }

    fn record_delete(&mut self, parent: ChangeRecord, parent_path: &str, path: &str, zxid: i64) {
        let mut pr = parent;
        pr.zxid = zxid;
        pr.child_count -= 1;
        if let Some(s) = pr.stat.as_mut() {
            s.pzxid = zxid;
        }
        self.add(parent_path, pr);
        self.add(
            path,
            ChangeRecord {
                zxid,
                stat: None,
                child_count: -1,
                acl: Arc::new(Vec::new()),
            },
        );
    }

    fn prep_delete_container(
        &mut self,
        tree: &DataTree,
        zxid: i64,
        path: String,
    ) -> PResult<TxnBody> {
        let parent_end = Self::parent_and_validate(&path)?;
        let node = self.record(tree, &path)?;
        if node.child_count > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        if ephemeral_type(node.stat.expect("exists").ephemeral_owner) == EphemeralType::Normal {
            return Err(ErrorCode::BadVersion);
        }
        let parent = self.record(tree, &path[..parent_end])?;
        self.record_delete(parent, &path[..parent_end], &path, zxid);
        Ok(TxnBody::DeleteContainer(DeleteTxn { path }))
    }

    fn prep_set_data(
        &mut self,
        tree: &DataTree,
        ctx: &PrepContext<'_>,
        zxid: i64,
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    ) -> PResult<TxnBody> {
        validate_path(&path).map_err(|_| ErrorCode::BadArguments)?;
        let node = self.record(tree, &path)?;
        check_acl(&node.acl, perms::WRITE, ctx.auth, ctx.skip_acl)?;
        // The node's committed size matters only to quota enforcement; without it, no
        // second tree lookup.
        let last_len = if ctx.enforce_quota {
            tree.get(&path).map_or(0, |n| n.data_len() as i64)
        } else {
            0
        };
        check_quota(tree, ctx, &path, last_len, data_len(&data), 0)?;
        let new_version = check_and_inc_version(node.stat.expect("exists").version, version)?;
        let mut nr = node;
        nr.zxid = zxid;
        if let Some(s) = nr.stat.as_mut() {
            s.version = new_version;
            s.mtime = ctx.time_ms;
            s.mzxid = zxid;
        }
        self.add(&path, nr);
        Ok(TxnBody::SetData(SetDataTxn {
            path,
            data,
            version: new_version,
        }))
    }

    fn prep_set_acl(
        &mut self,
        tree: &DataTree,
        ctx: &PrepContext<'_>,
        zxid: i64,
        path: String,
        acl: Vec<Acl>,
        version: i32,
    ) -> PResult<TxnBody> {
        validate_path(&path).map_err(|_| ErrorCode::BadArguments)?;
        let list_acl = fixup_acl(ctx.auth, &acl)?;
        let node = self.record(tree, &path)?;
        check_acl(&node.acl, perms::ADMIN, ctx.auth, ctx.skip_acl)?;
        let new_version = check_and_inc_version(node.stat.expect("exists").aversion, version)?;
        let mut nr = node;
        nr.zxid = zxid;
        nr.acl = Arc::new(list_acl.clone());
        if let Some(s) = nr.stat.as_mut() {
            s.aversion = new_version;
        }
        self.add(&path, nr);
        Ok(TxnBody::SetAcl(SetAclTxn {
            path,
            acl: list_acl,
            version: new_version,
        }))
    }

    fn prep_check(
        &mut self,
        tree: &DataTree,
        ctx: &PrepContext<'_>,
        path: String,
        version: i32,
    ) -> PResult<TxnBody> {
        validate_path(&path).map_err(|_| ErrorCode::BadArguments)?;
        let node = self.record(tree, &path)?;
        check_acl(&node.acl, perms::READ, ctx.auth, ctx.skip_acl)?;
        let v = check_and_inc_version(node.stat.expect("exists").version, version)?;
        Ok(TxnBody::Check(CheckVersionTxn { path, version: v }))
    }
}

fn data_len(d: &Option<Vec<u8>>) -> i64 {
    d.as_ref().map_or(0, |d| d.len() as i64)
}

/// ZooKeeperServer.checkQuota: with enforceQuota, a write that would take a quota'd
/// subtree past a hard limit fails; soft limits (count/bytes) only log.
fn check_quota(
    tree: &DataTree,
    ctx: &PrepContext<'_>,
    path: &str,
    last_len: i64,
    new_len: i64,
    count_diff: i64,
) -> PResult<()> {
    if !ctx.enforce_quota {
        return Ok(());
    }
    let Some(prefix) = tree.max_prefix_with_quota(path) else {
        return Ok(());
    };
    let bytes_diff = new_len - last_len;
    let limit_path = format!(
        "{}{prefix}/{}",
        crate::tree::QUOTA_ZOOKEEPER,
        crate::tree::QUOTA_LIMIT_NODE
    );
    let stat_path = format!(
        "{}{prefix}/{}",
        crate::tree::QUOTA_ZOOKEEPER,
        crate::tree::QUOTA_STAT_NODE
    );
    let Some(limit_node) = tree.get(&limit_path) else {
        return Ok(());
    };
    let limits = StatsTrack::parse(limit_node.data());
    let check_count =
        count_diff != 0 && (limits.get("count") > -1 || limits.get("countHardLimit") > -1);
    let check_bytes =
        bytes_diff != 0 && (limits.get("bytes") > -1 || limits.get("byteHardLimit") > -1);
    if !check_count && !check_bytes {
        return Ok(());
    }
    let Some(stat_node) = tree.get(&stat_path) else {
        return Ok(());
    };
    let current = StatsTrack::parse(stat_node.data());
    if check_count {
        check_limit(
            &prefix,
            &limits,
            &current,
            "count",
            "countHardLimit",
            count_diff,
        )?;
    }
    if check_bytes {
        check_limit(
            &prefix,
            &limits,
            &current,
            "bytes",
            "byteHardLimit",
            bytes_diff,
        )?;
    }
    Ok(())
}

/// One quota dimension: past a hard limit the write fails, past a soft one it is logged.
fn check_limit(
    prefix: &str,
    limits: &StatsTrack,
    current: &StatsTrack,
    key: &str,
    hard_key: &str,
    diff: i64,
) -> PResult<()> {
    let new_value = current.get(key) + diff;
    let hard = limits.get(hard_key) > -1;
    let limit = if hard {
        limits.get(hard_key)
    } else {
        limits.get(key)
    };
    if new_value > limit {
        let kind = if hard { "hard" } else { "soft" };
        let name = if key == "count" { "Count" } else { "Byte" };
        tracing::warn!(
            "Quota exceeded: {prefix} [current {key}={new_value}, {kind}{name}Limit={limit}]"
        );
        if hard {
            return Err(ErrorCode::QuotaExceeded);
        }
    }
    Ok(())
}

/// A versioned op succeeds iff the version matches (-1 matches any); the next version
/// skips -1 on int32 wrap (ZOOKEEPER-4743), so "any" is never a real version.
fn check_and_inc_version(current: i32, expected: i32) -> PResult<i32> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}
