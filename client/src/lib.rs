//! zkd-client: an async (tokio) ZooKeeper client for zkd and Apache ZooKeeper.
//!
//! Owns the client side of the wire protocol: handshake, request/reply matching, pings,
//! watch notifications and the operations of `org.apache.zookeeper.ZooKeeper`, on top of
//! the records in zkd-proto. Never validates paths or arguments client-side (server tests
//! need the server to see bad input) and never reconnects on its own in this first cut:
//! a lost connection fails pending requests with `ConnectionLoss` and leaves the client
//! Disconnected; resume the session with `ConnectOptions::session`.
//!
//! Modules:
//! - `client`: the `Client` handle, `ConnectOptions` and every operation.
//! - `conn`: the socket, handshake, reader/writer tasks and shared state.
//! - `pending`: xid assignment, the pending-reply FIFO and frame classification.
//! - `frame`: length-prefixed frame reading and request framing.
//! - `event`: `WatchedEvent` and `SessionState`.
//! - `op`: builders for multi/multiRead ops.
//! - `error`: the `Error` enum.

mod client;
mod conn;
pub mod connect_string;
pub mod error;
pub mod event;
pub mod frame;
pub mod op;
mod pending;
pub mod recipes;
mod session;
mod watches;

pub use client::{Client, ConnectOptions};
pub use connect_string::ConnectString;
pub use error::Error;
pub use event::{SessionState, WatchedEvent};
pub use session::{
    first_error, CreateOptions, Multi, SessionOptions, ZooKeeper, SET_WATCHES_MAX_LENGTH,
};
pub use watches::{Watch, WatchStream};
pub use zkd_proto::records::{add_watch_mode, event_type, keeper_state, perms, watcher_type};
pub use zkd_proto::{
    Acl, ClientInfo, ConnectResponse, CreateMode, ErrorCode, Id, MultiOp, MultiResult, ReplyHeader,
    SetWatches2, Stat,
};
