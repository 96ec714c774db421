//! zkd-proto: the ZooKeeper wire protocol, hand-written from `zookeeper.jute`.
//!
//! Owns every record a client or the txn log exchanges, op codes, error codes, znode path
//! rules and the frame length cap. Never does IO or async work, and never panics on input:
//! every decoder returns `DecodeError` for truncated, oversized or malformed bytes.

pub mod error;
pub mod frame;
pub mod jute;
pub mod opcode;
pub mod path;
pub mod records;
pub mod request;
pub mod txn;

pub use error::ErrorCode;
pub use jute::{DecodeError, Reader, Record, Writer};
pub use opcode::{CreateMode, OpCode};
pub use records::*;
pub use request::{MultiOp, MultiResult, Request};
