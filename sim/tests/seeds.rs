//! Hundreds of seeds per ensemble shape. Any failure names the seed and the command that
//! replays it exactly. The aggregated stats prove the runs really exercise what the
//! simulator claims (TRUNC, SNAP, every failpoint, partitions, epoch changes).

use zkd_sim::{run, Options, Stats};

fn run_seeds(
    label: &str,
    seeds: std::ops::Range<u64>,
    mk: impl Fn(u64) -> Options,
    cli: &str,
) -> Vec<Stats> {
    let mut failures = Vec::new();
    let mut all = Vec::new();
    for seed in seeds {
        match run(mk(seed)) {
            Ok(s) => all.push(s),
            Err(v) => failures.push(format!(
                "{label} seed {seed}: {v}\n    reproduce: cargo run -p zkd-sim -- --reproduce {seed} {cli}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    all
}

fn total(stats: &[Stats]) -> Stats {
    let mut t = Stats::default();
    for s in stats {
        t.merge(s);
    }
    t
}

#[test]
fn three_servers_400_seeds() {
    let stats = run_seeds("3 servers", 0..400, |s| Options::new(s, 3), "--servers 3");
    let t = total(&stats);
    eprintln!("3 servers: {t:?}");
    for kind in [
        "DIFF",
        "TRUNC",
        "SNAP",
        "NEWLEADER",
        "UPTODATE",
        "COMMIT",
        "REQUEST",
    ] {
        assert!(t.count(kind) > 0, "no {kind} in 400 seeds");
    }
    for fp in [
        "after-acceptedEpoch",
        "after-currentEpoch",
        "after-NEWLEADER-ack",
        "SNAP-before-rename",
        "SNAP-before-log-truncate",
        "local-snapshot-before-rename",
    ] {
        assert!(
            t.failpoint_crashes.get(fp).copied().unwrap_or(0) > 0,
            "failpoint {fp} never fired"
        );
    }
    assert!(t.acked_writes > 1000 && t.partitions > 50 && t.crashes > 300);
}

#[test]
fn five_servers_250_seeds() {
    let stats = run_seeds("5 servers", 0..250, |s| Options::new(s, 5), "--servers 5");
    let t = total(&stats);
    assert!(t.count("TRUNC") > 0 && t.count("SNAP") > 0);
    assert!(t.acked_writes > 500);
}

#[test]
fn observers_100_seeds() {
    let stats = run_seeds(
        "3+1 observer",
        0..100,
        |s| {
            let mut o = Options::new(s, 3);
            o.observers = 1;
            o
        },
        "--servers 3 --observers 1",
    );
    let t = total(&stats);
    assert!(t.count("INFORM") > 0 && t.count("OBSERVERINFO") > 0);
}

#[test]
fn tiny_zxid_counter_100_seeds() {
    // Every few writes exhaust the epoch: the ensemble must move to new epochs safely.
    let stats = run_seeds(
        "counter 5",
        0..100,
        |s| {
            let mut o = Options::new(s, 3);
            o.max_zxid_counter = 5;
            o
        },
        "--servers 3 --max-zxid-counter 5",
    );
    let t = total(&stats);
    assert!(
        t.acked_writes > 500,
        "writes keep flowing across epoch changes: {}",
        t.acked_writes
    );
    assert!(t.max_epoch > 10, "epochs advanced: {}", t.max_epoch);
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 77] {
        let a = format!("{:?}", run(Options::new(seed, 5)));
        let b = format!("{:?}", run(Options::new(seed, 5)));
        assert_eq!(a, b, "seed {seed} is not deterministic");
    }
}

#[test]
fn storm_200_seeds() {
    // Far more crashes, failpoints, partitions and loss, over longer runs.
    let stats = run_seeds(
        "storm",
        0..200,
        |s| {
            let mut o = Options::storm(s, 3);
            o.fault_ticks = 400;
            o
        },
        "--servers 3 --storm --ticks 400",
    );
    let t = total(&stats);
    eprintln!("storm: {t:?}");
    assert!(t.count("SNAP") > 20 && t.count("TRUNC") > 20);
}

#[test]
fn slow_disk_storm_200_seeds() {
    // fsyncs lag far behind appends: every ACK, currentEpoch and NEWLEADER ACK must wait.
    run_seeds(
        "slow-disk storm",
        0..200,
        |s| {
            let mut o = Options::storm(s, 3);
            o.fsync_rate = 0.1;
            o
        },
        "--servers 3 --storm --fsync-rate 0.1",
    );
}
