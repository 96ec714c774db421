//! `zkd-sim`: runs simulation seeds, or replays one exactly.
//!
//! ```text
//! zkd-sim --seeds 200 --servers 3          # seeds 0..200
//! zkd-sim --reproduce 17 --servers 5       # replay seed 17, print its stats
//! zkd-sim --seeds 50 --bug ack-before-fsync   # show the checker catching a bug
//! zkd-sim --real --seeds 500 --servers 5   # real cores + clients (sim::real)
//! zkd-sim --real --reproduce 35            # replay one real-server seed
//! zkd-sim --real --seeds 30 --bug keep-ephemerals-on-close
//! ```

use std::process::ExitCode;

use clap::Parser;
use zkd_sim::{run, Options};
use zkd_zab::InjectedBug;

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of zkd's ZAB ensembles")]
struct Args {
    /// Replay exactly this seed.
    #[arg(long)]
    reproduce: Option<u64>,
    /// Number of seeds to run (starting at --first).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Voting servers: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    servers: u8,
    /// Observers in addition to the voters.
    #[arg(long, default_value_t = 0)]
    observers: usize,
    /// Largest zxid counter before a new epoch is forced.
    #[arg(long)]
    max_zxid_counter: Option<u32>,
    /// Ticks of faults and client traffic before healing (default 150).
    #[arg(long)]
    ticks: Option<u64>,
    /// Probability per time unit that a pending fsync completes (default 0.4).
    #[arg(long)]
    fsync_rate: Option<f64>,
    /// Use the storm profile (far more crashes, partitions and loss).
    #[arg(long)]
    storm: bool,
    /// Run with a deliberately injected protocol bug: ack-before-fsync | apply-uncommitted;
    /// with --real: keep-ephemerals-on-close | answer-before-commit | local-sync.
    #[arg(long)]
    bug: Option<String>,
    /// Run the real server logic (zkd-server's Core, clients) instead of the stand-in Rsm.
    #[arg(long)]
    real: bool,
    /// With --real: leaders exhaust their epoch (zxid counter 60).
    #[arg(long)]
    exhausting: bool,
    /// With --real: probability per time unit that each server gets its due packets in one
    /// run before a pump (zkd's ensemble event loop batching; default 0).
    #[arg(long)]
    batch_rate: Option<f64>,
}

fn real_options(args: &Args, seed: u64) -> Result<zkd_sim::real::RealOptions, String> {
    use zkd_sim::real::{RealOptions, ServerBug};
    let v = args.servers as usize;
    let mut o = if args.exhausting {
        RealOptions::exhausting(seed, v)
    } else if args.storm {
        RealOptions::storm(seed, v)
    } else {
        RealOptions::new(seed, v)
    };
    o.observers = args.observers;
    if let Some(t) = args.ticks {
        o.fault_ticks = t;
    }
    if let Some(f) = args.fsync_rate {
        o.fsync_rate = f;
    }
    if let Some(b) = args.batch_rate {
        o.batch_rate = b;
    }
    if let Some(m) = args.max_zxid_counter {
        o.max_zxid_counter = m;
    }
    o.bug = match args.bug.as_deref() {
        None => None,
        Some("keep-ephemerals-on-close") => Some(ServerBug::KeepEphemeralsOnClose),
        Some("answer-before-commit") => Some(ServerBug::AnswerBeforeCommit),
        Some("local-sync") => Some(ServerBug::LocalSync),
        Some(other) => return Err(format!("unknown --bug {other} with --real")),
    };
    Ok(o)
}

fn main_real(args: &Args, seeds: Vec<u64>) -> ExitCode {
    let mut failed = 0;
    for seed in seeds {
        let opts = match real_options(args, seed) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        match zkd_sim::real::run_real(opts) {
            Ok(stats) => {
                if args.reproduce.is_some() {
                    println!("seed {seed}: ok\n{stats:#?}");
                }
            }
            Err(v) => {
                failed += 1;
                println!(
                    "FAILED seed {seed}: {v}\n  reproduce: zkd-sim --real --reproduce {seed} --servers {} --observers {}{}{}{}{}{}{}{}",
                    args.servers,
                    args.observers,
                    if args.exhausting { " --exhausting" } else { "" },
                    if args.storm { " --storm" } else { "" },
                    args.max_zxid_counter.map(|m| format!(" --max-zxid-counter {m}")).unwrap_or_default(),
                    args.bug.as_ref().map(|b| format!(" --bug {b}")).unwrap_or_default(),
                    args.ticks.map(|t| format!(" --ticks {t}")).unwrap_or_default(),
                    args.fsync_rate.map(|f| format!(" --fsync-rate {f}")).unwrap_or_default(),
                    args.batch_rate.map(|b| format!(" --batch-rate {b}")).unwrap_or_default()
                );
            }
        }
    }
    if failed > 0 {
        println!("{failed} seed(s) failed");
        ExitCode::FAILURE
    } else {
        println!("all seeds passed");
        ExitCode::SUCCESS
    }
}

fn options(args: &Args, seed: u64) -> Result<Options, String> {
    if args.servers != 3 && args.servers != 5 {
        return Err("--servers must be 3 or 5".to_string());
    }
    let mut o = if args.storm {
        Options::storm(seed, args.servers as usize)
    } else {
        Options::new(seed, args.servers as usize)
    };
    o.observers = args.observers;
    if let Some(t) = args.ticks {
        o.fault_ticks = t;
    }
    if let Some(f) = args.fsync_rate {
        o.fsync_rate = f;
    }
    if let Some(m) = args.max_zxid_counter {
        o.max_zxid_counter = m;
    }
    o.injected_bug = match args.bug.as_deref() {
        None => None,
        Some("ack-before-fsync") => Some(InjectedBug::AckBeforeFsync),
        Some("apply-uncommitted") => Some(InjectedBug::ApplyUncommittedOnSync),
        Some(other) => return Err(format!("unknown --bug {other}")),
    };
    Ok(o)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seeds: Vec<u64> = match args.reproduce {
        Some(s) => vec![s],
        None => (args.first..args.first + args.seeds).collect(),
    };
    if args.real {
        return main_real(&args, seeds);
    }
    let mut failed = 0;
    for seed in seeds {
        let opts = match options(&args, seed) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        match run(opts) {
            Ok(stats) => {
                if args.reproduce.is_some() {
                    println!("seed {seed}: ok\n{stats:#?}");
                }
            }
            Err(v) => {
                failed += 1;
                println!(
                    "FAILED seed {seed}: {v}\n  reproduce: zkd-sim --reproduce {seed} --servers {} --observers {}{}{}{}{}{}",
                    args.servers,
                    args.observers,
                    if args.storm { " --storm" } else { "" },
                    args.max_zxid_counter.map(|m| format!(" --max-zxid-counter {m}")).unwrap_or_default(),
                    args.bug.as_ref().map(|b| format!(" --bug {b}")).unwrap_or_default(),
                    args.ticks.map(|t| format!(" --ticks {t}")).unwrap_or_default(),
                    args.fsync_rate.map(|f| format!(" --fsync-rate {f}")).unwrap_or_default()
                );
            }
        }
    }
    if failed > 0 {
        println!("{failed} seed(s) failed");
        ExitCode::FAILURE
    } else {
        println!("all seeds passed");
        ExitCode::SUCCESS
    }
}
