//! Normalization: turns a reply or a notification into a string that is equal on zkd and
//! ZooKeeper when they behave the same.
//!
//! - zxids (stat czxid/mzxid/pzxid, reply-header zxid) become `z<rank>`, the rank of the
//!   value's first appearance on that server (values <= 0 are kept as they are);
//! - ctime/mtime are dropped;
//! - session ids (ephemeralOwner) become `S<n>`, the n-th session the test opened; the
//!   container marker (i64::MIN) becomes `container`;
//! - children, getEphemerals, whoAmI and ACL lists are sorted (their order is unspecified);
//! - notification zxids are dropped (3.8 sends -1, 3.9 the triggering zxid).

use std::collections::HashMap;

use zkd_proto::records::*;
use zkd_proto::request::{decode_multi_results, MultiResult};
use zkd_proto::{ErrorCode, OpCode, Reader, Record, Request};

use crate::harness::Reply;

/// Per-server normalization state.
#[derive(Clone, Default)]
pub struct Norm {
    zxids: HashMap<i64, usize>,
    sessions: HashMap<i64, usize>,
}

pub fn err_name(code: i32) -> String {
    match ErrorCode::from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("Err({code})"),
    }
}

fn data_str(d: &Option<Vec<u8>>) -> String {
    match d {
        None => "null".into(),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

/// ACL lists are sorted: ZooKeeper builds `auth`-scheme entries from a hash set of the
/// session's identities, so their order is unspecified (and irrelevant to checks).
fn acl_str(acl: &[Acl]) -> String {
    let mut v: Vec<String> = acl
        .iter()
        .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
        .collect();
    v.sort();
    format!("[{}]", v.join(","))
}

fn sorted(mut v: Vec<String>) -> String {
    v.sort();
    format!("[{}]", v.join(","))
}

impl Norm {
    pub fn add_session(&mut self, id: i64, ordinal: usize) {
        self.sessions.insert(id, ordinal);
    }

    fn zxid(&mut self, z: i64) -> String {
        if z <= 0 {
            return z.to_string();
        }
        let n = self.zxids.len();
        format!("z{}", self.zxids.entry(z).or_insert(n))
    }

    fn owner(&self, o: i64) -> String {
        if o == 0 {
            return "0".into();
        }
        if o == i64::MIN {
            return "container".into();
        }
        match self.sessions.get(&o) {
            Some(n) => format!("S{n}"),
            None => format!("unknown-owner-{o:#x}"),
        }
    }

    fn stat(&mut self, s: &Stat) -> String {
        let cz = self.zxid(s.czxid);
        let mz = self.zxid(s.mzxid);
        let pz = self.zxid(s.pzxid);
        format!(
            "{{cz={cz} mz={mz} pz={pz} v={} cv={} av={} owner={} len={} nc={}}}",
            s.version,
            s.cversion,
            s.aversion,
            self.owner(s.ephemeral_owner),
            s.data_length,
            s.num_children
        )
    }

    fn multi(&mut self, results: &[MultiResult]) -> String {
        let v: Vec<String> = results
            .iter()
            .map(|r| match r {
                MultiResult::Create { path } => format!("create({path})"),
                MultiResult::Create2 { path, stat } => {
                    format!("create2({path} {})", self.stat(stat))
                }
                MultiResult::Delete => "delete".into(),
                MultiResult::SetData { stat } => format!("setData({})", self.stat(stat)),
                MultiResult::Check => "check".into(),
                MultiResult::GetChildren { children } => {
                    format!("getChildren({})", sorted(children.clone()))
                }
                MultiResult::GetData { data, stat } => {
                    format!("getData({} {})", data_str(data), self.stat(stat))
                }
                MultiResult::Error { err } => format!("error({})", err_name(*err)),
            })
            .collect();
        format!("[{}]", v.join(", "))
    }

    fn body(
        &mut self,
        req: &Request,
        r: &mut Reader<'_>,
    ) -> Result<String, zkd_proto::DecodeError> {
        Ok(match req {
            Request::Create {
                op: OpCode::Create, ..
            } => format!("path={}", CreateResponse::read(r)?.path),
            Request::Create { .. } | Request::CreateTtl(_) => {
                let c = Create2Response::read(r)?;
                format!("path={} stat={}", c.path, self.stat(&c.stat))
            }
            Request::Exists(_) => format!("stat={}", self.stat(&ExistsResponse::read(r)?.stat)),
            Request::GetData(_) => {
                let g = GetDataResponse::read(r)?;
                format!("data={} stat={}", data_str(&g.data), self.stat(&g.stat))
            }
            Request::SetData(_) | Request::Check(_) => {
                format!("stat={}", self.stat(&SetDataResponse::read(r)?.stat))
            }
            Request::GetAcl(_) => {
                let g = GetAclResponse::read(r)?;
                format!("acl={} stat={}", acl_str(&g.acl), self.stat(&g.stat))
            }
            Request::SetAcl(_) => format!("stat={}", self.stat(&SetAclResponse::read(r)?.stat)),
            Request::GetChildren(_) => {
                format!(
                    "children={}",
                    sorted(GetChildrenResponse::read(r)?.children)
                )
            }
            Request::GetChildren2(_) => {
                let g = GetChildren2Response::read(r)?;
                format!(
                    "children={} stat={}",
                    sorted(g.children),
                    self.stat(&g.stat)
                )
            }
            Request::Sync(_) => format!("path={}", SyncResponse::read(r)?.path),
            Request::Multi(_) | Request::MultiRead(_) => self.multi(&decode_multi_results(r)?),
            Request::GetEphemerals(_) => format!(
                "ephemerals={}",
                sorted(GetEphemeralsResponse::read(r)?.ephemerals)
            ),
            Request::GetAllChildrenNumber(_) => format!(
                "number={}",
                GetAllChildrenNumberResponse::read(r)?.total_number
            ),
            Request::AddWatch(_) => format!("err={}", ErrorResponse::read(r)?.err),
            Request::WhoAmI => {
                let w = WhoAmIResponse::read(r)?;
                // ZooKeeper keeps a connection's identities in a hash set: order unspecified.
                let v: Vec<String> = w
                    .client_info
                    .iter()
                    .map(|c| format!("{}:{}", c.auth_scheme, c.user))
                    .collect();
                format!("whoami={}", sorted(v))
            }
            _ => String::new(),
        })
    }

    /// The normalized form of `reply` to `req`.
    pub fn reply(&mut self, req: &Request, reply: &Reply) -> String {
        let mut s = format!(
            "{} hdr_zxid={}",
            err_name(reply.header.err),
            self.zxid(reply.header.zxid)
        );
        if reply.header.err != 0 && reply.body.is_empty() {
            return s;
        }
        let mut r = Reader::new(&reply.body);
        match self.body(req, &mut r) {
            Ok(b) => {
                if !b.is_empty() {
                    s.push(' ');
                    s.push_str(&b);
                }
                if r.remaining() > 0 {
                    s.push_str(&format!(" +{} trailing bytes", r.remaining()));
                }
            }
            Err(e) => s.push_str(&format!(" UNDECODABLE BODY ({e}): {:?}", reply.body)),
        }
        s
    }
}

pub fn event_type_name(t: i32) -> String {
    match t {
        event_type::NONE => "None".into(),
        event_type::NODE_CREATED => "NodeCreated".into(),
        event_type::NODE_DELETED => "NodeDeleted".into(),
        event_type::NODE_DATA_CHANGED => "NodeDataChanged".into(),
        event_type::NODE_CHILDREN_CHANGED => "NodeChildrenChanged".into(),
        event_type::DATA_WATCH_REMOVED => "DataWatchRemoved".into(),
        event_type::CHILD_WATCH_REMOVED => "ChildWatchRemoved".into(),
        event_type::PERSISTENT_WATCH_REMOVED => "PersistentWatchRemoved".into(),
        other => format!("EventType({other})"),
    }
}

pub fn event(e: &WatcherEvent) -> String {
    let st = if e.state == keeper_state::SYNC_CONNECTED {
        String::new()
    } else {
        format!(" state={}", e.state)
    };
    format!("{} {}{st}", event_type_name(e.event_type), e.path)
}

/// Paths a successful create (or multi) reply reports, for the generator's path pool.
pub fn created_paths(req: &Request, reply: &Reply) -> Vec<String> {
    if reply.header.err != 0 {
        return Vec::new();
    }
    let mut r = Reader::new(&reply.body);
    match req {
        Request::Create {
            op: OpCode::Create, ..
        } => CreateResponse::read(&mut r)
            .map(|c| vec![c.path])
            .unwrap_or_default(),
        Request::Create { .. } => Create2Response::read(&mut r)
            .map(|c| vec![c.path])
            .unwrap_or_default(),
        Request::Multi(_) => decode_multi_results(&mut r)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| match m {
                MultiResult::Create { path } | MultiResult::Create2 { path, .. } => Some(path),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Per-op results of a multi reply (None: not a multi, or undecodable).
pub fn multi_results(reply: &Reply) -> Option<Vec<MultiResult>> {
    decode_multi_results(&mut Reader::new(&reply.body)).ok()
}
