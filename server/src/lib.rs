//! zkd server library: data tree, sessions, watches, ACLs, request pipeline, 4lw, zoo.cfg.

pub mod acl;
pub mod config;
pub mod core;
pub mod ensemble;
pub mod forward;
pub mod fourlw;
pub mod net;
pub mod persist;
pub mod prep;
pub mod quorum;
pub mod session;
pub mod tools;
pub mod tree;
pub mod watch;
