//! Txn records (module `org.apache.zookeeper.txn` of zookeeper.jute): what the log, the
//! snapshots and ZAB proposals carry. A txn is a `TxnHeader` followed by the body its
//! `txn_type` names; a multi's body is a `MultiTxn` of `(type, bytes)` pairs.

use crate::jute::{DecodeError, Reader, Record, Writer};
use crate::jute_record;
use crate::opcode::OpCode;
use crate::records::Acl;

jute_record! {
    pub struct TxnDigest { pub version: i32 = int, pub tree_digest: i64 = long }
}

jute_record! {
    pub struct TxnHeader {
        pub client_id: i64 = long,
        pub cxid: i32 = int,
        pub zxid: i64 = long,
        pub time: i64 = long,
        pub txn_type: i32 = int,
    }
}

jute_record! {
    pub struct CreateTxnV0 {
        pub path: String = ustring,
        pub data: Option<Vec<u8>> = buffer_opt,
        pub acl: Vec<Acl> = vec_record,
        pub ephemeral: bool = boolean,
    }
}

jute_record! {
    pub struct CreateTxn {
        pub path: String = ustring,
        pub data: Option<Vec<u8>> = buffer_opt,
        pub acl: Vec<Acl> = vec_record,
        pub ephemeral: bool = boolean,
        pub parent_cversion: i32 = int,
    }
}

jute_record! {
    pub struct CreateTtlTxn {
        pub path: String = ustring,
        pub data: Option<Vec<u8>> = buffer_opt,
        pub acl: Vec<Acl> = vec_record,
        pub parent_cversion: i32 = int,
        pub ttl: i64 = long,
    }
}

jute_record! {
    pub struct CreateContainerTxn {
        pub path: String = ustring,
        pub data: Option<Vec<u8>> = buffer_opt,
        pub acl: Vec<Acl> = vec_record,
        pub parent_cversion: i32 = int,
    }
}

jute_record! {
    pub struct DeleteTxn { pub path: String = ustring }
}

jute_record! {
    pub struct SetDataTxn { pub path: String = ustring, pub data: Option<Vec<u8>> = buffer_opt, pub version: i32 = int }
}

jute_record! {
    pub struct CheckVersionTxn { pub path: String = ustring, pub version: i32 = int }
}

jute_record! {
    pub struct SetAclTxn { pub path: String = ustring, pub acl: Vec<Acl> = vec_record, pub version: i32 = int }
}

jute_record! {
    pub struct SetMaxChildrenTxn { pub path: String = ustring, pub max: i32 = int }
}

jute_record! {
    pub struct CreateSessionTxn { pub time_out: i32 = int }
}

jute_record! {
    pub struct CloseSessionTxn { pub paths_to_delete: Vec<String> = vec_ustring }
}

jute_record! {
    pub struct ErrorTxn { pub err: i32 = int }
}

jute_record! {
    /// One sub-txn of a MultiTxn: its type and its encoded body.
    pub struct Txn { pub txn_type: i32 = int, pub data: Vec<u8> = buffer }
}

jute_record! {
    pub struct MultiTxn { pub txns: Vec<Txn> = vec_record }
}

/// A decoded txn body, by the op code in its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnBody {
    /// create logs a CreateTxn under type create.
    Create(CreateTxn),
    /// create2 logs a CreateTxn under its own type (its reply carries a Stat).
    Create2(CreateTxn),
    CreateTtl(CreateTtlTxn),
    CreateContainer(CreateContainerTxn),
    Delete(DeleteTxn),
    /// deleteContainer logs a DeleteTxn under its own type.
    DeleteContainer(DeleteTxn),
    SetData(SetDataTxn),
    SetAcl(SetAclTxn),
    Check(CheckVersionTxn),
    CreateSession(CreateSessionTxn),
    CloseSession(CloseSessionTxn),
    Error(ErrorTxn),
    Multi(Vec<(i32, TxnBody)>),
}

impl TxnBody {
    /// The txn type to put in the header.
    pub fn txn_type(&self) -> i32 {
        match self {
            TxnBody::Create(_) => OpCode::Create as i32,
            TxnBody::Create2(_) => OpCode::Create2 as i32,
            TxnBody::CreateTtl(_) => OpCode::CreateTtl as i32,
            TxnBody::CreateContainer(_) => OpCode::CreateContainer as i32,
            TxnBody::Delete(_) => OpCode::Delete as i32,
            TxnBody::DeleteContainer(_) => OpCode::DeleteContainer as i32,
            TxnBody::SetData(_) => OpCode::SetData as i32,
            TxnBody::SetAcl(_) => OpCode::SetAcl as i32,
            TxnBody::Check(_) => OpCode::Check as i32,
            TxnBody::CreateSession(_) => OpCode::CreateSession as i32,
            TxnBody::CloseSession(_) => OpCode::CloseSession as i32,
            TxnBody::Error(_) => OpCode::Error as i32,
            TxnBody::Multi(_) => OpCode::Multi as i32,
        }
    }

    pub fn write(&self, w: &mut Writer) {
        match self {
            TxnBody::Create(t) | TxnBody::Create2(t) => t.write(w),
            TxnBody::CreateTtl(t) => t.write(w),
            TxnBody::CreateContainer(t) => t.write(w),
            TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => t.write(w),
            TxnBody::SetData(t) => t.write(w),
            TxnBody::SetAcl(t) => t.write(w),
            TxnBody::Check(t) => t.write(w),
            TxnBody::CreateSession(t) => t.write(w),
            TxnBody::CloseSession(t) => t.write(w),
            TxnBody::Error(t) => t.write(w),
            TxnBody::Multi(subs) => {
                // The bytes of `MultiTxn { txns: [Txn { type, data: body bytes }] }`,
                // written in place: each sub body goes straight into `w` after a length
                // slot that is filled in once the body is written. Building a `Txn` per
                // sub-op cost a buffer (grown several times) per sub-op and a copy.
                w.write_i32(subs.len() as i32);
                for (ty, b) in subs {
                    w.write_i32(*ty);
                    let len_at = w.buf.len();
                    w.write_i32(0);
                    b.write(w);
                    let len = (w.buf.len() - len_at - 4) as i32;
                    w.buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }

    /// An upper estimate of the encoded size, so that an encoder can size its buffer
    /// once instead of growing it field by field.
    pub fn encoded_len_hint(&self) -> usize {
        fn data(d: &Option<Vec<u8>>) -> usize {
            d.as_ref().map_or(0, Vec::len)
        }
        fn acl(a: &[Acl]) -> usize {
            4 + a
                .iter()
                .map(|a| 12 + a.id.scheme.len() + a.id.id.len())
                .sum::<usize>()
        }
        // Fixed fields and length prefixes: at most 32 bytes beyond path, data and ACL.
        32 + match self {
            TxnBody::Create(t) | TxnBody::Create2(t) => t.path.len() + data(&t.data) + acl(&t.acl),
            TxnBody::CreateTtl(t) => t.path.len() + data(&t.data) + acl(&t.acl),
            TxnBody::CreateContainer(t) => t.path.len() + data(&t.data) + acl(&t.acl),
            TxnBody::Delete(t) | TxnBody::DeleteContainer(t) => t.path.len(),
            TxnBody::SetData(t) => t.path.len() + data(&t.data),
            TxnBody::SetAcl(t) => t.path.len() + acl(&t.acl),
            TxnBody::Check(t) => t.path.len(),
            TxnBody::CreateSession(_) | TxnBody::Error(_) => 0,
            TxnBody::CloseSession(t) => t.paths_to_delete.iter().map(|p| 4 + p.len()).sum(),
            TxnBody::Multi(subs) => subs.iter().map(|(_, b)| 8 + b.encoded_len_hint()).sum(),
        }
    }

    pub fn read(txn_type: i32, r: &mut Reader<'_>) -> Result<TxnBody, DecodeError> {
        let op = OpCode::from_i32(txn_type).ok_or(DecodeError::UnknownOpCode(txn_type))?;
        Ok(match op {
            OpCode::Create => TxnBody::Create(CreateTxn::read(r)?),
            OpCode::Create2 => TxnBody::Create2(CreateTxn::read(r)?),
            OpCode::CreateTtl => TxnBody::CreateTtl(CreateTtlTxn::read(r)?),
            OpCode::CreateContainer => TxnBody::CreateContainer(CreateContainerTxn::read(r)?),
            OpCode::Delete => TxnBody::Delete(DeleteTxn::read(r)?),
            OpCode::DeleteContainer => TxnBody::DeleteContainer(DeleteTxn::read(r)?),
            OpCode::SetData => TxnBody::SetData(SetDataTxn::read(r)?),
            OpCode::SetAcl => TxnBody::SetAcl(SetAclTxn::read(r)?),
            OpCode::Check => TxnBody::Check(CheckVersionTxn::read(r)?),
            OpCode::CreateSession => TxnBody::CreateSession(CreateSessionTxn::read(r)?),
            OpCode::CloseSession => TxnBody::CloseSession(CloseSessionTxn::read(r)?),
            OpCode::Error => TxnBody::Error(ErrorTxn::read(r)?),
            OpCode::Multi => {
                // A MultiTxn (vector of Txn { type, data buffer }), each sub body decoded
                // from the borrowed buffer rather than from a copied `Txn`.
                let n = r.read_vec_len(4)?.unwrap_or(0);
                let mut subs = Vec::with_capacity(n);
                for _ in 0..n {
                    let ty = r.read_i32()?;
                    let data = r.read_buffer_opt_ref()?.unwrap_or_default();
                    if ty == OpCode::Multi as i32 {
                        return Err(DecodeError::Invalid("nested multi txn"));
                    }
                    subs.push((ty, TxnBody::read(ty, &mut Reader::new(data))?));
                }
                TxnBody::Multi(subs)
            }
            _ => return Err(DecodeError::UnknownOpCode(txn_type)),
        })
    }
}

/// A whole txn: header plus body, as the log and proposals carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnEntry {
    pub header: TxnHeader,
    pub body: TxnBody,
}

impl TxnEntry {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Header (32 bytes) plus the body, allocated once.
        let mut w = Writer::with_capacity(32 + self.body.encoded_len_hint());
        self.header.write(&mut w);
        self.body.write(&mut w);
        w.into_inner()
    }

    pub fn from_bytes(buf: &[u8]) -> Result<TxnEntry, DecodeError> {
        let mut r = Reader::new(buf);
        let header = TxnHeader::read(&mut r)?;
        let body = TxnBody::read(header.txn_type, &mut r)?;
        Ok(TxnEntry { header, body })
    }
}
