//! Seeds of the real-server simulation (real cores, zab, storage on faulty disks, clients).

use zkd_sim::real::{run_real, RealOptions, RealStats};

fn voters(seed: u64) -> usize {
    if seed % 3 == 2 {
        5
    } else {
        3
    }
}

#[test]
fn real_servers_keep_zookeepers_promises_over_many_seeds() {
    let mut failed = Vec::new();
    let mut total = RealStats::default();
    for seed in 0..400 {
        match run_real(RealOptions::new(seed, voters(seed))) {
            Ok(s) => total.merge(&s),
            Err(v) => {
                println!(
                    "FAILED seed {seed}: {v}\n  reproduce: zkd-sim --real --reproduce {seed} --servers {}",
                    voters(seed)
                );
                failed.push(seed);
            }
        }
    }
    println!("{total:#?}");
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
    // The run really exercises what the checks are about.
    assert!(total.acked_writes > 1000 && total.multis_ok > 50 && total.multis_failed > 50);
    assert!(total.expired_seen > 50 && total.closes_acked > 5 && total.reconnects > 50);
    assert!(total.fuzzy_snapshots_spanning > 50 && total.fuzzy_restarts > 0);
    assert!(total.snap_restores > 10 && total.failpoint_crashes.len() >= 3);
    assert!(total.max_epoch >= 3);
}

/// zkd's ensemble event loop hands zab every quorum message already queued (up to 64) in
/// one core call, and routes the outputs after the last: here each server often gets all
/// its due packets before one pump, in the default and in the storm profile.
#[test]
fn real_servers_keep_promises_with_messages_handled_in_batches() {
    let mut failed = Vec::new();
    let mut total = RealStats::default();
    for seed in 0..200 {
        let mut o = if seed % 2 == 0 {
            RealOptions::new(seed, voters(seed))
        } else {
            RealOptions::storm(seed, voters(seed))
        };
        o.batch_rate = 0.7;
        match run_real(o) {
            Ok(s) => total.merge(&s),
            Err(v) => {
                println!(
                    "FAILED seed {seed}: {v}\n  reproduce: zkd-sim --real{} --reproduce {seed} --servers {} --batch-rate 0.7",
                    if seed % 2 == 1 { " --storm" } else { "" },
                    voters(seed)
                );
                failed.push(seed);
            }
        }
    }
    println!("{total:#?}");
    assert!(
        failed.is_empty(),
        "failed seeds (batch_rate 0.7): {failed:?}"
    );
    // Runs of several packets really reached one core call.
    assert!(
        total.batched_pumps > 1000 && total.max_batch >= 4,
        "{total:#?}"
    );
    assert!(total.acked_writes > 500 && total.crashes > 50);
}

/// A zxid counter of 60: leaders exhaust their epoch and refuse proposals mid-run (the path
/// where a refused closeSession once left its session untracked forever).
#[test]
fn real_servers_survive_exhausted_epochs() {
    let mut failed = Vec::new();
    for seed in 0..100 {
        if let Err(v) = run_real(RealOptions::exhausting(seed, voters(seed))) {
            println!("FAILED seed {seed}: {v}");
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "failed seeds (RealOptions::exhausting): {failed:?}"
    );
}

/// The checker catches a learner that keeps a closed session's ephemerals (the outcome of
/// ZK-2355/4678), a learner that answers a write before it commits, and a learner that
/// answers `sync` without the leader's barrier.
#[test]
fn the_checker_catches_planted_server_bugs() {
    use zkd_sim::real::ServerBug;
    for bug in [
        ServerBug::KeepEphemeralsOnClose,
        ServerBug::AnswerBeforeCommit,
    ] {
        let caught: Vec<u64> = (0..60)
            .filter(|seed| {
                let mut o = RealOptions::new(*seed, voters(*seed));
                o.bug = Some(bug);
                run_real(o).is_err()
            })
            .collect();
        println!(
            "{bug:?}: caught by {} of 30 seeds: {caught:?}",
            caught.len()
        );
        assert!(caught.len() >= 5, "{bug:?} caught by only {caught:?}");
    }
}

/// The storm profile (frequent crashes and partitions, 20% loss, every failpoint), with and
/// without an observer.
#[test]
fn real_servers_survive_storms() {
    let mut failed = Vec::new();
    for seed in 0..250 {
        let mut o = RealOptions::storm(seed, voters(seed));
        o.observers = (seed % 2) as usize;
        if let Err(v) = run_real(o) {
            println!(
                "FAILED seed {seed}: {v}\n  reproduce: zkd-sim --real --storm --reproduce {seed} --servers {} --observers {}",
                voters(seed),
                seed % 2
            );
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failed storm seeds: {failed:?}");
}
