//! zkd-client: an async (tokio) ZooKeeper client for zkd and Apache ZooKeeper.
//!
//! Two layers:
//!
//! - [`ZooKeeper`]: the client for applications. A session over a connect string with
//!   several hosts and a chroot (`h1:2181,h2:2181/app`), tried in a seedable random order;
//!   it reconnects within the session timeout, resuming the session (id, password,
//!   lastZxidSeen), re-sending `add_auth` credentials and re-arming watches with
//!   setWatches2; it reports its state as a stream (Connected, Disconnected, Expired,
//!   AuthFailed, ConnectedReadOnly, Closed; Expired, AuthFailed and Closed are terminal).
//!   One-shot watches are futures ([`Watch`]), persistent watches streams
//!   ([`WatchStream`], a `futures_core::Stream`); multi/multiRead are builders
//!   ([`Multi`]); [`recipes`] holds lock, leader latch, barriers, counter and caches.
//!   Optionally ([`SessionOptions::refresh_servers_from_config`]) the session takes its
//!   host list from the ensemble's `/zookeeper/config` after each connect and on every
//!   change of it, so one server in the connect string is enough.
//! - [`Client`]: one connection, exactly what the caller asks for on the wire, no reconnect
//!   and no chroot. The server's tests use it to send bad input and watch the answer; a
//!   lost connection fails pending requests with `ConnectionLoss` and leaves it
//!   Disconnected (resume by hand with `ConnectOptions::session`).
//!
//! Never validates paths or arguments client-side (the server is the judge, and server
//! tests need it to see bad input) and never retries an operation on its own: a request in
//! flight when a connection drops fails with ConnectionLoss, as in ZooKeeper, because it
//! may or may not have been applied.
//!
//! Errors mirror ZooKeeper's KeeperException codes: `Error::Keeper(ErrorCode::NoNode)`,
//! `NodeExists`, `BadVersion`, ... exactly as the reply header said; `ConnectionLoss` and
//! `SessionExpired` are their own variants.
//!
//! Watches, one-shot and persistent:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{event_type, CreateOptions, ZooKeeper};
//!
//! let zk = ZooKeeper::connect(&addr, Duration::from_secs(10)).await?;
//! let p = format!("/doc-watch-{}", std::process::id());
//! let (stat, created) = zk.exists_w(&p).await?; // a one-shot watch is a future
//! assert!(stat.is_none());
//! let mut changes = zk.watch_recursive(&p).await?; // a persistent one is a stream
//! zk.create(&p, b"", &CreateOptions::default()).await?;
//! assert_eq!(created.await.event_type, event_type::NODE_CREATED);
//! zk.set_data(&p, b"x", -1).await?;
//! assert_eq!(changes.next().await.unwrap().event_type, event_type::NODE_CREATED);
//! assert_eq!(changes.next().await.unwrap().event_type, event_type::NODE_DATA_CHANGED);
//! drop(changes); // removes the server-side watch
//! # zk.delete(&p, -1).await?;
//! # zk.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Several hosts and a chroot, digest auth (re-sent after every reconnect), the state
//! stream:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), zkd_client::Error> {
//! # let Ok(addr) = std::env::var("ZKD_TEST_ZK_ADDR") else { return Ok(()) };
//! use std::time::Duration;
//! use zkd_client::{Acl, CreateOptions, SessionOptions, SessionState, ZooKeeper};
//!
//! let app = format!("/doc-app-{}", std::process::id());
//! ZooKeeper::connect(&addr, Duration::from_secs(10)).await?.create_all(&app).await?;
//! // 127.0.0.1:1 refuses connections; the session opens on the other host.
//! let cs = format!("127.0.0.1:1,{addr}{app}");
//! let zk = ZooKeeper::connect_with(SessionOptions::new(&cs, Duration::from_secs(10)).seed(7)).await?;
//! let mut states = zk.state_events();
//! zk.add_auth("digest", b"alice:secret").await?;
//! let (path, _) = zk
//!     .create("/mine", b"", &CreateOptions::default().acl(Acl::creator_all()))
//!     .await?;
//! assert_eq!(path, "/mine"); // chroot-relative
//! zk.delete("/mine", -1).await?;
//! zk.close().await?;
//! assert_eq!(states.recv().await, Some(SessionState::Closed));
//! # ZooKeeper::connect(&addr, Duration::from_secs(10)).await?.delete(&app, -1).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules:
//! - `session`: [`ZooKeeper`], [`SessionOptions`], [`CreateOptions`], [`Multi`].
//! - `watches`: the watch tables, [`Watch`] and [`WatchStream`].
//! - `connect_string`: [`ConnectString`] parsing, the host order, and the client
//!   addresses of a `/zookeeper/config` ([`connect_string::client_hosts_from_config`]).
//! - [`recipes`]: lock, leader latch, barriers, shared counter, node and tree caches.
//! - `client`: the single-connection [`Client`], [`ConnectOptions`] and every operation.
//! - `conn`: the socket, handshake, reader/writer tasks and shared state.
//! - `pending`: xid assignment, the pending-reply FIFO and frame classification.
//! - `frame`: length-prefixed frame reading and request framing.
//! - `event`: [`WatchedEvent`] and [`SessionState`].
//! - `op`: builders for multi/multiRead ops (for `Client`).
//! - `error`: the [`Error`] enum.

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
