//! `group-commit`: does zkd batch several txns per fdatasync? Measures the disk's fsync
//! floor first (same directory, same run), then for each session count runs the create
//! workload (100 B, pipeline 1, closed loop) against a fresh zkd with default settings
//! (fsync on), `repeat` times, and reports medians. The ratio ops/s ÷ single-fsync ops/s
//! above 1 means txns share fsyncs; a server that fsyncs each txn alone stays at or
//! below 1 whatever the concurrency.
//!
//! Repeats are interleaved (1, 8, 64, 1, 8, 64, ...) so slow drift of a noisy machine
//! spreads over all session counts instead of biasing one. Every zkd gets its own fresh
//! data directory under `--dir` and is killed after its run.

use std::path::PathBuf;
use std::time::Duration;

use crate::fsync::{self, FsyncArgs};
use crate::load::{self, LoadArgs, LoadResult};
use crate::server::{ScratchDir, Zkd};
use crate::stats;

#[derive(clap::Args, Debug, Clone)]
pub struct GroupCommitArgs {
    /// The zkd binary to start.
    #[arg(long)]
    pub zkd: PathBuf,
    /// Session counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub sessions: Vec<usize>,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of warm-up per run.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Runs per session count.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where the data directories and the fsync scratch file go (same disk).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Records for the single-fsync floor.
    #[arg(long, default_value_t = 2000)]
    pub fsync_count: usize,
}

async fn one_run(args: &GroupCommitArgs, sessions: usize) -> Result<LoadResult, String> {
    let scratch = ScratchDir::new(&args.dir, "zkd-bench-gc").map_err(|e| e.to_string())?;
    let mut zkd = Zkd::spawn(&args.zkd, &scratch.0, &scratch.0.join("data"))
        .map_err(|e| format!("starting {}: {e}", args.zkd.display()))?;
    let probe = zkd.connect(Duration::from_secs(60)).await?;
    let _ = probe.close().await;
    let la = LoadArgs::for_group_commit(zkd.addr(), sessions, args.duration, args.warmup);
    let r = load::run(&la).await;
    let alive = zkd.check_alive();
    zkd.kill();
    alive?;
    r
}

pub async fn run(args: &GroupCommitArgs) -> Result<(), String> {
    let floor = fsync::measure(&FsyncArgs {
        dir: args.dir.clone(),
        count: args.fsync_count,
        size: 512,
        batch: 1024,
        batched_count: 200_000,
    })
    .map_err(|e| format!("fsync floor in {}: {e}", args.dir.display()))?;
    println!("{}", floor.table());
    println!("{}", floor.json());

    let mut runs: Vec<Vec<LoadResult>> = vec![Vec::new(); args.sessions.len()];
    for rep in 0..args.repeat {
        for (i, &s) in args.sessions.iter().enumerate() {
            let r = one_run(args, s).await?;
            println!("run {}/{}: {}", rep + 1, args.repeat, r.table());
            println!("{}", r.json());
            if let Some(e) = &r.first_error {
                println!("  first error: {e}");
            }
            runs[i].push(r);
        }
    }

    println!();
    println!(
        "group-commit medians of {} runs x {}s (create, 100 B, pipeline 1, closed loop); single-fsync floor {:.0}/s (p50 {})",
        args.repeat,
        args.duration,
        floor.single_ops,
        stats::fmt_us(stats::q_us(&floor.hist, 0.5))
    );
    println!(
        "| sessions | ops/s (median) | ops/s runs | p50 | p99 | p99.9 | errors | ops/s ÷ fsync/s |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|");
    for (i, &s) in args.sessions.iter().enumerate() {
        let rs = &runs[i];
        let ops: Vec<f64> = rs.iter().map(|r| r.ops_per_s).collect();
        let m = stats::median(&ops);
        let col = |f: fn(&LoadResult) -> f64| {
            stats::fmt_us(stats::median(&rs.iter().map(f).collect::<Vec<_>>()))
        };
        let errors: u64 = rs.iter().map(|r| r.errors).sum();
        println!(
            "| {s} | {m:.0} | {} | {} | {} | {} | {errors} | {:.2} |",
            ops.iter()
                .map(|o| format!("{o:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            col(LoadResult::p50_us),
            col(LoadResult::p99_us),
            col(LoadResult::p999_us),
            m / floor.single_ops,
        );
        println!(
            "{{\"bench\":\"group-commit\",\"sessions\":{s},\"median_ops_per_s\":{m:.1},\"fsync_floor_ops_per_s\":{:.1},\"ratio\":{:.3}}}",
            floor.single_ops,
            m / floor.single_ops
        );
    }
    Ok(())
}
