//! `zkd-bench`: benchmarks for zkd, and for any ZooKeeper-compatible server where the
//! benchmark only needs the wire protocol.
//!
//! Subcommands:
//! - `fsync-floor`: the disk's fdatasync floor, measured the way zkd's txn log writes.
//! - `load`: sessions × pipelined requests (closed loop) or a fixed rate (open loop, no
//!   coordinated omission) of create/set/get/mixed against `--server`; talks the wire
//!   protocol through zkd-client, so Apache ZooKeeper can be measured the same way.
//! - `group-commit`: fsync floor, then create throughput of a fresh zkd at several
//!   session counts, repeated; medians and the ratio to the fsync floor.
//! - `restart`: builds a large data directory through zkd's own library, then times zkd
//!   from spawn until a client reads a known znode; RSS and snapshot size too.
//!
//! Benchmarks measure the real path (real processes, sockets, fsyncs) and report medians
//! of repeated runs; they are not tests and assert nothing about speed.

mod compare;
mod fanout;
mod fsync;
mod group_commit;
mod lean;
mod load;
mod plot;
mod restart;
mod server;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "zkd-bench",
    version,
    about = "Benchmarks for zkd and ZooKeeper-compatible servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The disk's fdatasync floor: one fsync per record, and one per batch of records.
    FsyncFloor(fsync::FsyncArgs),
    /// Drive a server with create/set/get/mixed requests and report ops/s and latency.
    Load(load::LoadArgs),
    /// Create throughput of a fresh zkd per session count vs the fsync floor.
    GroupCommit(group_commit::GroupCommitArgs),
    /// Time from spawning zkd on a large data directory until it serves.
    Restart(restart::RestartArgs),
    /// zkd and Apache ZooKeeper side by side: workload matrix, CPU/op, RSS, restart.
    Compare(compare::CompareArgs),
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.cmd {
        Cmd::FsyncFloor(a) => fsync::measure(&a)
            .map(|r| {
                println!("{}", r.table());
                println!("{}", r.json());
            })
            .map_err(|e| format!("fsync-floor in {}: {e}", a.dir.display())),
        Cmd::Load(a) => runtime().block_on(load::run(&a)).map(|r| {
            println!("{}", r.table());
            println!("{}", r.json());
            if let Some(e) = &r.first_error {
                println!("first error: {e}");
            }
            println!("cleanup: {}", r.cleanup);
        }),
        Cmd::GroupCommit(a) => runtime().block_on(group_commit::run(&a)),
        Cmd::Restart(a) => runtime().block_on(restart::run(&a)),
        Cmd::Compare(a) => runtime().block_on(compare::run(&a)),
    };
    if let Err(e) = result {
        eprintln!("zkd-bench: {e}");
        std::process::exit(1);
    }
}
