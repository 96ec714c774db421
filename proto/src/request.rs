//! Requests by op code, and the multi/multiRead framing (MultiOperationRecord and
//! MultiResponse). A request frame is `RequestHeader` then the body its op code names;
//! `Request::decode` turns that body into a typed value and `Request::encode` does the
//! reverse for clients.
//!
//! Multi framing: each op is `MultiHeader{type, done=false, err=-1}` + its request record;
//! the list ends with `MultiHeader{-1, true, -1}`. Each result is `MultiHeader{type, false,
//! err}` + its response record (none for delete and check; ErrorResponse for type -1).

use crate::jute::{DecodeError, Reader, Record, Writer};
use crate::opcode::OpCode;
use crate::records::*;

/// One op of a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create, create2 or createContainer (the op code says which reply shape).
    Create {
        op: OpCode,
        req: CreateRequest,
    },
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    GetChildren(GetChildrenRequest),
    GetData(GetDataRequest),
}

impl MultiOp {
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create { op, .. } => *op,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create { req, .. } => &req.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) => &r.path,
            MultiOp::GetData(r) => &r.path,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    fn write_body(&self, w: &mut Writer) {
        match self {
            MultiOp::Create { req, .. } => req.write(w),
            MultiOp::CreateTtl(r) => r.write(w),
            MultiOp::Delete(r) => r.write(w),
            MultiOp::SetData(r) => r.write(w),
            MultiOp::Check(r) => r.write(w),
            MultiOp::GetChildren(r) => r.write(w),
            MultiOp::GetData(r) => r.write(w),
        }
    }
}

/// Decodes a MultiOperationRecord. Like ZooKeeper, an op type outside the multi set is a
/// marshalling failure of the whole request.
pub fn decode_multi_ops(r: &mut Reader<'_>) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            break;
        }
        let op = match OpCode::from_i32(h.op_type) {
            Some(op @ (OpCode::Create | OpCode::Create2 | OpCode::CreateContainer)) => {
                MultiOp::Create {
                    op,
                    req: CreateRequest::read(r)?,
                }
            }
            Some(OpCode::CreateTtl) => MultiOp::CreateTtl(CreateTtlRequest::read(r)?),
            Some(OpCode::Delete) => MultiOp::Delete(DeleteRequest::read(r)?),
            Some(OpCode::SetData) => MultiOp::SetData(SetDataRequest::read(r)?),
            Some(OpCode::Check) => MultiOp::Check(CheckVersionRequest::read(r)?),
            Some(OpCode::GetChildren) => MultiOp::GetChildren(GetChildrenRequest::read(r)?),
            Some(OpCode::GetData) => MultiOp::GetData(GetDataRequest::read(r)?),
            _ => return Err(DecodeError::Invalid("Invalid type of op")),
        };
        ops.push(op);
    }
    Ok(ops)
}

pub fn encode_multi_ops(ops: &[MultiOp], w: &mut Writer) {
    for op in ops {
        MultiHeader {
            op_type: op.op_code() as i32,
            done: false,
            err: -1,
        }
        .write(w);
        op.write_body(w);
    }
    MultiHeader {
        op_type: -1,
        done: true,
        err: -1,
    }
    .write(w);
}

/// One result of a multi or multiRead (OpResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// Result of a plain `create` op: path only.
    Create {
        path: String,
    },
    /// Result of create2/createTTL/createContainer ops: path and Stat (type create2).
    Create2 {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    GetChildren {
        children: Vec<String>,
    },
    GetData {
        data: Option<Vec<u8>>,
        stat: Stat,
    },
    /// Type -1: the op's error code (0 when an earlier op failed after this one succeeded
    /// in a rolled-back multi, -2 for ops after the failing one).
    Error {
        err: i32,
    },
}

impl MultiResult {
    pub fn op_type(&self) -> i32 {
        match self {
            MultiResult::Create { .. } => OpCode::Create as i32,
            MultiResult::Create2 { .. } => OpCode::Create2 as i32,
            MultiResult::Delete => OpCode::Delete as i32,
            MultiResult::SetData { .. } => OpCode::SetData as i32,
            MultiResult::Check => OpCode::Check as i32,
            MultiResult::GetChildren { .. } => OpCode::GetChildren as i32,
            MultiResult::GetData { .. } => OpCode::GetData as i32,
            MultiResult::Error { .. } => OpCode::Error as i32,
        }
    }
}

pub fn encode_multi_results(results: &[MultiResult], w: &mut Writer) {
    for res in results {
        let err = match res {
            MultiResult::Error { err } => *err,
            _ => 0,
        };
        MultiHeader {
            op_type: res.op_type(),
            done: false,
            err,
        }
        .write(w);
        match res {
            MultiResult::Create { path } => CreateResponse { path: path.clone() }.write(w),
            MultiResult::Create2 { path, stat } => {
                w.write_ustring(path);
                stat.write(w);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData { stat } => stat.write(w),
            MultiResult::GetChildren { children } => {
                crate::jute::codec::vec_ustring::write(children, w)
            }
            MultiResult::GetData { data, stat } => {
                w.write_buffer_opt(data.as_deref());
                stat.write(w);
            }
            MultiResult::Error { err } => w.write_i32(*err),
        }
    }
    MultiHeader {
        op_type: -1,
        done: true,
        err: -1,
    }
    .write(w);
}

pub fn decode_multi_results(r: &mut Reader<'_>) -> Result<Vec<MultiResult>, DecodeError> {
    let mut out = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            break;
        }
        let res = match OpCode::from_i32(h.op_type) {
            Some(OpCode::Create) => MultiResult::Create {
                path: CreateResponse::read(r)?.path,
            },
            Some(OpCode::Create2) => {
                let c = Create2Response::read(r)?;
                MultiResult::Create2 {
                    path: c.path,
                    stat: c.stat,
                }
            }
            Some(OpCode::Delete) => MultiResult::Delete,
            Some(OpCode::Check) => MultiResult::Check,
            Some(OpCode::SetData) => MultiResult::SetData {
                stat: Stat::read(r)?,
            },
            Some(OpCode::GetChildren) => MultiResult::GetChildren {
                children: GetChildrenResponse::read(r)?.children,
            },
            Some(OpCode::GetData) => {
                let g = GetDataResponse::read(r)?;
                MultiResult::GetData {
                    data: g.data,
                    stat: g.stat,
                }
            }
            Some(OpCode::Error) => MultiResult::Error {
                err: ErrorResponse::read(r)?.err,
            },
            _ => return Err(DecodeError::Invalid("Invalid type in MultiResponse")),
        };
        out.push(res);
    }
    Ok(out)
}

/// A client request body, typed by its op code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create (1), create2 (15) or createContainer (19): same body, different replies.
    Create {
        op: OpCode,
        req: CreateRequest,
    },
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    /// deleteContainer's body is the raw UTF-8 path, not a jute record (as in ZooKeeper).
    DeleteContainer(String),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    Check(CheckVersionRequest),
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiOp>),
    Sync(SyncRequest),
    Ping,
    CloseSession,
    Auth(AuthPacket),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    AddWatch(AddWatchRequest),
    CheckWatches(CheckWatchesRequest),
    RemoveWatches(RemoveWatchesRequest),
    GetEphemerals(GetEphemeralsRequest),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    WhoAmI,
    Reconfig(ReconfigRequest),
    Sasl(GetSaslRequest),
}

impl Request {
    pub fn op_code(&self) -> OpCode {
        use Request::*;
        match self {
            Create { op, .. } => *op,
            CreateTtl(_) => OpCode::CreateTtl,
            Delete(_) => OpCode::Delete,
            DeleteContainer(_) => OpCode::DeleteContainer,
            Exists(_) => OpCode::Exists,
            GetData(_) => OpCode::GetData,
            SetData(_) => OpCode::SetData,
            GetAcl(_) => OpCode::GetAcl,
            SetAcl(_) => OpCode::SetAcl,
            GetChildren(_) => OpCode::GetChildren,
            GetChildren2(_) => OpCode::GetChildren2,
            Check(_) => OpCode::Check,
            Multi(_) => OpCode::Multi,
            MultiRead(_) => OpCode::MultiRead,
            Sync(_) => OpCode::Sync,
            Ping => OpCode::Ping,
            CloseSession => OpCode::CloseSession,
            Auth(_) => OpCode::Auth,
            SetWatches(_) => OpCode::SetWatches,
            SetWatches2(_) => OpCode::SetWatches2,
            AddWatch(_) => OpCode::AddWatch,
            CheckWatches(_) => OpCode::CheckWatches,
            RemoveWatches(_) => OpCode::RemoveWatches,
            GetEphemerals(_) => OpCode::GetEphemerals,
            GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            WhoAmI => OpCode::WhoAmI,
            Reconfig(_) => OpCode::Reconfig,
            Sasl(_) => OpCode::Sasl,
        }
    }

    /// Decodes the body of a request whose header carried `op_type`.
    pub fn decode(op_type: i32, body: &[u8]) -> Result<Request, DecodeError> {
        let op = OpCode::from_i32(op_type).ok_or(DecodeError::UnknownOpCode(op_type))?;
        let mut r = Reader::new(body);
        let r = &mut r;
        Ok(match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => Request::Create {
                op,
                req: CreateRequest::read(r)?,
            },
            OpCode::CreateTtl => Request::CreateTtl(CreateTtlRequest::read(r)?),
            OpCode::Delete => Request::Delete(DeleteRequest::read(r)?),
            OpCode::DeleteContainer => {
                Request::DeleteContainer(String::from_utf8_lossy(body).into_owned())
            }
            OpCode::Exists => Request::Exists(ExistsRequest::read(r)?),
            OpCode::GetData => Request::GetData(GetDataRequest::read(r)?),
            OpCode::SetData => Request::SetData(SetDataRequest::read(r)?),
            OpCode::GetAcl => Request::GetAcl(GetAclRequest::read(r)?),
            OpCode::SetAcl => Request::SetAcl(SetAclRequest::read(r)?),
            OpCode::GetChildren => Request::GetChildren(GetChildrenRequest::read(r)?),
            OpCode::GetChildren2 => Request::GetChildren2(GetChildren2Request::read(r)?),
            OpCode::Check => Request::Check(CheckVersionRequest::read(r)?),
            OpCode::Multi => Request::Multi(decode_multi_ops(r)?),
            OpCode::MultiRead => Request::MultiRead(decode_multi_ops(r)?),
            OpCode::Sync => Request::Sync(SyncRequest::read(r)?),
            OpCode::Ping => Request::Ping,
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Auth => Request::Auth(AuthPacket::read(r)?),
            OpCode::SetWatches => Request::SetWatches(SetWatches::read(r)?),
            OpCode::SetWatches2 => Request::SetWatches2(SetWatches2::read(r)?),
            OpCode::AddWatch => Request::AddWatch(AddWatchRequest::read(r)?),
            OpCode::CheckWatches => Request::CheckWatches(CheckWatchesRequest::read(r)?),
            OpCode::RemoveWatches => Request::RemoveWatches(RemoveWatchesRequest::read(r)?),
            OpCode::GetEphemerals => Request::GetEphemerals(GetEphemeralsRequest::read(r)?),
            OpCode::GetAllChildrenNumber => {
                Request::GetAllChildrenNumber(GetAllChildrenNumberRequest::read(r)?)
            }
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::Reconfig => Request::Reconfig(ReconfigRequest::read(r)?),
            OpCode::Sasl => Request::Sasl(GetSaslRequest::read(r)?),
            OpCode::Notification | OpCode::CreateSession | OpCode::Error => {
                return Err(DecodeError::UnknownOpCode(op_type))
            }
        })
    }

    /// Encodes the body (without header).
    pub fn encode_body(&self, w: &mut Writer) {
        use Request::*;
        match self {
            Create { req, .. } => req.write(w),
            CreateTtl(r) => r.write(w),
            Delete(r) => r.write(w),
            DeleteContainer(p) => w.buf.extend_from_slice(p.as_bytes()),
            Exists(r) => r.write(w),
            GetData(r) => r.write(w),
            SetData(r) => r.write(w),
            GetAcl(r) => r.write(w),
            SetAcl(r) => r.write(w),
            GetChildren(r) => r.write(w),
            GetChildren2(r) => r.write(w),
            Check(r) => r.write(w),
            Multi(ops) | MultiRead(ops) => encode_multi_ops(ops, w),
            Sync(r) => r.write(w),
            Ping | CloseSession | WhoAmI => {}
            Auth(r) => r.write(w),
            SetWatches(r) => r.write(w),
            SetWatches2(r) => r.write(w),
            AddWatch(r) => r.write(w),
            CheckWatches(r) => r.write(w),
            RemoveWatches(r) => r.write(w),
            GetEphemerals(r) => r.write(w),
            GetAllChildrenNumber(r) => r.write(w),
            Reconfig(r) => r.write(w),
            Sasl(r) => r.write(w),
        }
    }

    /// Encodes header and body into one frame (with length prefix).
    pub fn encode_frame(&self, xid: i32) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.write_i32(0);
        RequestHeader {
            xid,
            op_type: self.op_code() as i32,
        }
        .write(&mut w);
        self.encode_body(&mut w);
        let len = (w.buf.len() - 4) as i32;
        w.buf[..4].copy_from_slice(&len.to_be_bytes());
        w.into_inner()
    }
}
