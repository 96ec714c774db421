//! Builders for the ops of a `multi` / `multiRead`, in ZooKeeper's `Op.*` vocabulary.
//!
//! Owns nothing but construction: each function fills the zkd-proto record as the Java
//! client's `Op.create`, `Op.delete`, ... would. Never validates paths or versions: server
//! tests need to send bad input and see what the server says.

use zkd_proto::{
    Acl, CheckVersionRequest, CreateMode, CreateRequest, CreateTtlRequest, DeleteRequest,
    GetChildrenRequest, GetDataRequest, MultiOp, OpCode, SetDataRequest,
};

/// `Op.create`: a plain create (result: `MultiResult::Create`, path only).
pub fn create(path: &str, data: &[u8], acl: &[Acl], mode: CreateMode) -> MultiOp {
    create_op(OpCode::Create, path, data, acl, mode)
}

/// A create2 op (result: `MultiResult::Create2`, path and Stat).
pub fn create2(path: &str, data: &[u8], acl: &[Acl], mode: CreateMode) -> MultiOp {
    create_op(OpCode::Create2, path, data, acl, mode)
}

/// A createContainer op.
pub fn create_container(path: &str, data: &[u8], acl: &[Acl]) -> MultiOp {
    create_op(
        OpCode::CreateContainer,
        path,
        data,
        acl,
        CreateMode::Container,
    )
}

/// A createTTL op; `mode` should be one of the TTL modes.
pub fn create_ttl(path: &str, data: &[u8], acl: &[Acl], mode: CreateMode, ttl_ms: i64) -> MultiOp {
    MultiOp::CreateTtl(CreateTtlRequest {
        path: path.to_string(),
        data: Some(data.to_vec()),
        acl: acl.to_vec(),
        flags: mode.flag(),
        ttl: ttl_ms,
    })
}

fn create_op(op: OpCode, path: &str, data: &[u8], acl: &[Acl], mode: CreateMode) -> MultiOp {
    MultiOp::Create {
        op,
        req: CreateRequest {
            path: path.to_string(),
            data: Some(data.to_vec()),
            acl: acl.to_vec(),
            flags: mode.flag(),
        },
    }
}

/// `Op.delete`.
pub fn delete(path: &str, version: i32) -> MultiOp {
    MultiOp::Delete(DeleteRequest {
        path: path.to_string(),
        version,
    })
}

/// `Op.setData`.
pub fn set_data(path: &str, data: &[u8], version: i32) -> MultiOp {
    MultiOp::SetData(SetDataRequest {
        path: path.to_string(),
        data: Some(data.to_vec()),
        version,
    })
}

/// `Op.check`.
pub fn check(path: &str, version: i32) -> MultiOp {
    MultiOp::Check(CheckVersionRequest {
        path: path.to_string(),
        version,
    })
}

/// `Op.getData` (multiRead only; the watch flag is ignored by ZooKeeper inside multiRead).
pub fn get_data(path: &str) -> MultiOp {
    MultiOp::GetData(GetDataRequest {
        path: path.to_string(),
        watch: false,
    })
}

/// `Op.getChildren` (multiRead only).
pub fn get_children(path: &str) -> MultiOp {
    MultiOp::GetChildren(GetChildrenRequest {
        path: path.to_string(),
        watch: false,
    })
}
