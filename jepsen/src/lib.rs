//! zkd-jepsen: a Jepsen-style harness for zkd and Apache ZooKeeper.
//!
//! Owns the history model, the checkers (pure), and the runner that starts real server
//! processes in network namespaces, injects faults and drives workloads with zkd-client.

pub mod checker;
pub mod cleanup;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod netns;
pub mod plot;
pub mod runner;
pub mod workload;
