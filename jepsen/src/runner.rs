//! One test run end to end: cluster up, workload + nemesis for the given time, heal, final
//! reads, checkers, output files, one summary line.
//!
//! Owns the phase order, which matters: faults stop and everything is healed and serving
//! before the workers stop (so "alive" checks and final reads see a healed cluster), final
//! reads happen while the sessions under test are still open, and convergence is read last,
//! after those sessions close. Never interprets results beyond combining checker verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::checker::{self, merge, Validity, Verdict};
use crate::cluster::{Cluster, ServerKind};
use crate::history::{write_jsonl, Op, OpType};
use crate::nemesis::{self, Kind};
use crate::workload::{self, Ctx, Workload};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub server: ServerKind,
    pub nodes: usize,
    pub workload: Workload,
    pub nemesis: Kind,
    pub time: Duration,
    pub seed: u64,
    pub concurrency: usize,
    pub out: PathBuf,
    /// Fault hold time and gap between faults.
    pub hold: Duration,
    pub gap: Duration,
    /// Allowed expiry delay beyond the session timeout (P11 bound).
    pub expiry_bound_ms: u64,
    pub keep_data: bool,
    /// Register reads without sync (not linearizable in ZooKeeper; see `Ctx::plain_reads`).
    pub plain_reads: bool,
}

pub struct RunResult {
    pub verdicts: Vec<Verdict>,
    pub valid: Validity,
    pub summary: String,
    pub history: Vec<Op>,
}

pub fn check_all(history: &[Op], workload: Workload, expiry_bound_ms: u64) -> Vec<Verdict> {
    let mut v = vec![match workload {
        Workload::Register => checker::linear::check(history, (0, 0), Default::default()),
        Workload::Set => checker::set::check(history),
        Workload::Seq => checker::sequential::check(history),
        Workload::Multi => checker::multi::check(history),
        Workload::Sessions => checker::session::check(history, expiry_bound_ms),
        Workload::Watch => checker::watch::check(history),
    }];
    // Updates with zxids (P1): register writes/cas, set adds, seq creates, watch writes.
    if matches!(
        workload,
        Workload::Register | Workload::Set | Workload::Seq | Workload::Watch
    ) {
        v.push(checker::zxid::linearizable_writes(history));
    }
    v.push(checker::zxid::session_monotonic(history));
    v.push(checker::zxid::no_rollback(history));
    v.push(checker::convergence::check(history));
    v
}

pub async fn run(cfg: &RunConfig) -> Result<RunResult, String> {
    let started = Instant::now();
    if cfg.nemesis.corrupts() && cfg.nodes < 3 {
        return Err("the corrupt nemesis destroys acknowledged data on one server; it needs an ensemble of 3 or more".into());
    }
    let extra_cfg = nemesis::server_cfg(cfg.nemesis, &cfg.server)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| e.to_string())?;
    let opts = crate::cluster::Options {
        faketime: cfg.nemesis.faketime(),
        snap_count: (cfg.nemesis == Kind::CorruptSnap).then_some(nemesis::CORRUPT_SNAP_COUNT),
        extra_cfg,
    };
    if opts.faketime.is_some() && !crate::cluster::faketime_available() {
        return Err(format!(
            "the {:?} nemesis needs libfaketime ({})",
            cfg.nemesis,
            crate::cluster::FAKETIME_LIB
        ));
    }
    let mut cluster = Cluster::start_with(
        cfg.server.clone(),
        cfg.nodes,
        &cfg.out.join("data"),
        cfg.keep_data,
        opts,
    )
    .await
    .map_err(|e| e.to_string())?;
    let addrs = (0..cluster.len()).map(|i| cluster.addr(i)).collect();
    let mut ctx = Ctx::new(cfg.workload, addrs, cfg.concurrency);
    ctx.plain_reads = cfg.plain_reads;
    // Enough key generations for the run plus the settling after it.
    ctx.generations = (cfg.time.as_millis() / ctx.key_rotation.as_millis().max(1)) as usize + 4;
    let ctx = Arc::new(ctx);
    workload::setup(&ctx)
        .await
        .map_err(|e| format!("setup: {e}"))?;
    let plan = nemesis::schedule(
        cfg.nemesis,
        cfg.seed,
        cluster.len(),
        cfg.time,
        cfg.hold,
        cfg.gap,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handles = workload::run_workers(ctx.clone(), cfg.seed, stop_rx).await;
    let nem = async {
        nemesis::run(&mut cluster, &plan, cfg.hold, &ctx.rec).await;
        cluster
    };
    let (mut cluster, ()) = tokio::join!(nem, tokio::time::sleep(cfg.time));
    // Heal, then let the cluster settle before the workers stop.
    cluster.heal_all().map_err(|e| e.to_string())?;
    // A server that does not come back (ZooKeeper refuses to start on a log CRC error, for
    // instance) is a finding, not a harness failure: record it and go on with the others.
    let mut live = 0;
    for i in 0..cluster.len() {
        match cluster.wait_ready(i, Duration::from_secs(60)).await {
            Ok(()) => live += 1,
            Err(e) => ctx.rec.record(
                Op::new(
                    crate::history::NEMESIS,
                    OpType::Info,
                    "unavailable",
                    None,
                    json!(cluster.name(i)),
                    ctx.rec.now(),
                )
                .with_error(e.to_string()),
            ),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    if live > 0 {
        workload::final_reads(&ctx).await;
        workload::release_held().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        workload::final_states(&ctx, Duration::from_secs(20)).await;
    } else {
        workload::release_held().await;
    }
    let history = ctx.rec.history();
    drop(cluster);

    let file = std::fs::File::create(cfg.out.join("history.jsonl")).map_err(|e| e.to_string())?;
    write_jsonl(std::io::BufWriter::new(file), &history).map_err(|e| e.to_string())?;
    if live == 0 {
        // The history is kept for diagnosis; with no server there is nothing to check.
        return Err(format!(
            "no server serves sessions after healing (history in {})",
            cfg.out.join("history.jsonl").display()
        ));
    }
    let verdicts = check_all(&history, cfg.workload, cfg.expiry_bound_ms);
    let valid = merge(verdicts.iter().map(|v| v.valid));
    std::fs::write(
        cfg.out.join("verdicts.json"),
        serde_json::to_string_pretty(&verdicts).unwrap(),
    )
    .map_err(|e| e.to_string())?;
    let title = format!(
        "{} {:?} {:?} seed {}",
        cfg.server.name(),
        cfg.workload,
        cfg.nemesis,
        cfg.seed
    );
    let plot = crate::plot::render(&history, &title, &cfg.out.join("latency.png"));
    let count = |k: OpType| {
        history
            .iter()
            .filter(|o| o.kind == k && o.process >= 0)
            .count()
    };
    let summary = format!(
        "zkd-jepsen server={} nodes={} workload={:?}{} nemesis={:?} seed={} time={}s wall={:.0}s ops={} ok={} fail={} info={} faults={} valid={} [{}]{}",
        cfg.server.name(),
        cfg.nodes,
        cfg.workload,
        if cfg.plain_reads { "(plain-reads)" } else { "" },
        cfg.nemesis,
        cfg.seed,
        cfg.time.as_secs(),
        started.elapsed().as_secs_f64(),
        count(OpType::Invoke),
        count(OpType::Ok),
        count(OpType::Fail),
        count(OpType::Info),
        plan.len(),
        json!(valid).as_str().unwrap_or("?"),
        verdicts.iter().map(|v| format!("{}={}", v.checker, json!(v.valid).as_str().unwrap_or("?"))).collect::<Vec<_>>().join(" "),
        plot.err().map(|e| format!(" plot-error={e}")).unwrap_or_default(),
    );
    std::fs::write(cfg.out.join("summary.txt"), format!("{summary}\n"))
        .map_err(|e| e.to_string())?;
    Ok(RunResult {
        verdicts,
        valid,
        summary,
        history,
    })
}

/// Where the repository's debug zkd binary is, relative to this crate.
pub fn default_zkd_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/zkd")
}
