//! `zkd-jepsen`: run one workload under one nemesis against a fresh cluster, check it, and
//! print one summary line. Exit status 0 valid, 1 invalid, 2 unknown, 3 harness error.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use zkd_jepsen::checker::Validity;
use zkd_jepsen::cluster::ServerKind;
use zkd_jepsen::runner::{self, RunConfig};

#[derive(Parser, Debug)]
#[command(
    name = "zkd-jepsen",
    about = "Jepsen-style fault injection for zkd and Apache ZooKeeper"
)]
struct Args {
    /// register | set | seq | multi | sessions | watch
    #[arg(long)]
    workload: String,
    /// none | kill | pause | partition | client-partition | clock | clock-wall | corrupt |
    /// corrupt-snap | lose-unsynced | mixed (see the nemesis module doc; clock kinds need
    /// libfaketime; lose-unsynced is zkd only)
    #[arg(long, default_value = "none")]
    nemesis: String,
    /// Seconds of workload (faults included).
    #[arg(long, default_value_t = 30)]
    time: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// zookeeper (Apache ZooKeeper from Debian) | zkd
    #[arg(long, default_value = "zookeeper")]
    server: String,
    /// Servers in the ensemble (default 3, for zookeeper and zkd alike).
    #[arg(long)]
    nodes: Option<usize>,
    #[arg(long)]
    zkd_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Output folder: history.jsonl, verdicts.json, latency.png, summary.txt.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds each fault is held, and between faults.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    #[arg(long, default_value_t = 5)]
    gap: u64,
    /// Keep server data folders after the run.
    #[arg(long)]
    keep_data: bool,
    /// register: read without sync first (ZooKeeper does not promise linearizable plain
    /// reads; expect the checker to find stale ones under partitions).
    #[arg(long)]
    plain_reads: bool,
    /// Re-check an existing history.jsonl instead of running (needs --workload).
    #[arg(long)]
    check: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let workload = args.workload.parse().unwrap_or_else(|e: String| die(&e));
    let nemesis: zkd_jepsen::nemesis::Kind =
        args.nemesis.parse().unwrap_or_else(|e: String| die(&e));
    let expiry_bound_ms = zkd_jepsen::nemesis::expiry_bound_ms(nemesis);
    if let Some(path) = &args.check {
        let f = std::fs::File::open(path).unwrap_or_else(|e| die(&e.to_string()));
        let h = zkd_jepsen::history::read_jsonl(std::io::BufReader::new(f))
            .unwrap_or_else(|e| die(&e.to_string()));
        let v = runner::check_all(&h, workload, expiry_bound_ms);
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        std::process::exit(exit_code(zkd_jepsen::checker::merge(
            v.iter().map(|v| v.valid),
        )));
    }
    if let Err(e) = zkd_jepsen::netns::available() {
        die(&format!(
            "needs root, iproute2 and nft for network namespaces: {e}"
        ));
    }
    zkd_jepsen::cleanup::install_signal_handlers();
    let swept = zkd_jepsen::netns::sweep_leftovers();
    if !swept.is_empty() {
        eprintln!("removed leftovers of earlier runs: {swept:?}");
    }
    let server = match args.server.as_str() {
        "zookeeper" | "zk" => ServerKind::ApacheZk,
        "zkd" => ServerKind::Zkd(args.zkd_bin.clone().unwrap_or_else(runner::default_zkd_bin)),
        s => die(&format!("unknown server {s}")),
    };
    // Three servers by default for both: zkd runs ZAB ensembles too.
    let nodes = args.nodes.unwrap_or(3);
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "jepsen-out/{}-{}-{}-{}",
            server.name(),
            args.workload,
            args.nemesis,
            args.seed
        ))
    });
    let cfg = RunConfig {
        server,
        nodes,
        workload,
        nemesis,
        time: Duration::from_secs(args.time),
        seed: args.seed,
        concurrency: args.concurrency,
        out,
        hold: Duration::from_secs(args.hold),
        gap: Duration::from_secs(args.gap),
        expiry_bound_ms,
        keep_data: args.keep_data,
        plain_reads: args.plain_reads,
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(runner::run(&cfg));
    drop(rt);
    zkd_jepsen::cleanup::run_all(cfg.keep_data);
    match result {
        Ok(r) => {
            println!("{}", r.summary);
            std::process::exit(exit_code(r.valid));
        }
        Err(e) => {
            eprintln!("zkd-jepsen: run failed: {e}");
            std::process::exit(3);
        }
    }
}

fn exit_code(v: Validity) -> i32 {
    match v {
        Validity::Valid => 0,
        Validity::Invalid => 1,
        Validity::Unknown => 2,
    }
}

fn die(msg: &str) -> ! {
    eprintln!("zkd-jepsen: {msg}");
    std::process::exit(3)
}
