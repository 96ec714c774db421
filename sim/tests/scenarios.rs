//! Named, scripted scenarios: the fault sequences that broke Apache ZooKeeper, replayed on
//! zkd's zab. Every scenario runs with the invariant checker on after each step and ends
//! with `heal_and_check` (convergence + every acknowledged write everywhere).

use zkd_sim::{Failpoint, Options, Sim, Violation};
use zkd_zab::{zxid_counter, zxid_epoch, InjectedBug, Role, ServerId};

/// A scripted ensemble: no random faults, no random restarts, no random clients.
fn scripted(opts: Options) -> Sim {
    let mut sim = Sim::new(opts);
    sim.faults = false;
    sim.clients = false;
    sim
}

fn quiet(seed: u64) -> Sim {
    scripted(Options::quiet(seed, 3))
}

fn elect(sim: &mut Sim) -> ServerId {
    assert!(
        sim.run_until(60, |s| s.leader().is_some()),
        "no leader: {}",
        sim.describe()
    );
    sim.leader().unwrap()
}

fn others(l: ServerId) -> (ServerId, ServerId) {
    let o: Vec<ServerId> = [1, 2, 3].into_iter().filter(|x| *x != l).collect();
    (o[0], o[1])
}

/// Sends `n` writes through `via` and runs until they are applied there (or the checker
/// flags a violation, which the caller then reports).
fn writes(sim: &mut Sim, via: ServerId, n: usize) {
    let before = sim.nodes[&via].rsm.entries.len();
    for _ in 0..n {
        assert!(sim.client_write(via), "write refused: {}", sim.describe());
    }
    let applied = sim.run_until(30, |s| s.nodes[&via].rsm.entries.len() >= before + n);
    assert!(
        applied || sim.checker.failed(),
        "writes not applied: {}",
        sim.describe()
    );
}

fn ok(sim: &mut Sim) {
    if let Err(v) = sim.heal_and_check() {
        panic!("{v}\n{}", sim.describe());
    }
}

#[test]
fn zk1154_zk1156_highest_zxid_absent_at_election_rejoins_and_truncates_exactly() {
    let mut sim = quiet(1);
    let l = elect(&mut sim);
    let (a, b) = others(l);
    writes(&mut sim, l, 5);
    sim.run_ticks(3);
    // The leader, cut off, logs a proposal nobody else sees, then crashes with it durable.
    sim.partition(&[l]);
    assert!(sim.client_write(l));
    sim.nodes.get_mut(&l).unwrap().sync();
    sim.drain(l);
    let orphan = sim.nodes[&l].zab.as_ref().unwrap().last_zxid();
    let shared = orphan - 1;
    assert_eq!(zxid_counter(orphan), 6);
    sim.crash(l);
    sim.heal();
    // The other two elect without the server holding the highest zxid, and go on.
    assert!(
        sim.run_until(60, |s| s.leader().is_some_and(|x| x != l)),
        "{}",
        sim.describe()
    );
    let l2 = sim.leader().unwrap();
    writes(&mut sim, l2, 3);
    // The old leader rejoins: TRUNC back to exactly the last shared zxid.
    let truncs = sim.stats.truncations;
    sim.restart(l);
    assert!(sim.run_until(60, |s| s.nodes[&l]
        .zab
        .as_ref()
        .is_some_and(|z| z.is_serving())));
    assert_eq!(sim.stats.truncations, truncs + 1, "one TRUNC");
    let z = sim.nodes[&l].zab.as_ref().unwrap();
    assert!(
        z.log_window().all(|e| e.0 != orphan),
        "orphan proposal gone"
    );
    assert!(z.log_window().any(|e| e.0 == shared), "shared prefix kept");
    assert_eq!(sim.nodes[&l].rsm.entries.len(), 8, "5 + 3 committed writes");
    let _ = (a, b);
    ok(&mut sim);
}

#[test]
fn zk335_zk2307_crash_after_accepted_epoch_before_current_epoch_everywhere() {
    let mut sim = quiet(2);
    for id in [1, 2, 3] {
        sim.nodes
            .get_mut(&id)
            .unwrap()
            .armed
            .insert(Failpoint::AfterAcceptedEpoch);
    }
    // Cascading crashes: whoever persists a new acceptedEpoch first dies right there.
    let mut restarted_split = 0;
    for _ in 0..60 {
        sim.run_ticks(2);
        for id in [1, 2, 3] {
            if !sim.nodes[&id].is_up() {
                sim.restart(id);
                let (acc, cur) = sim.nodes[&id].started_with;
                if acc > cur {
                    restarted_split += 1;
                }
            }
        }
        if sim.leader().is_some() {
            break;
        }
    }
    assert!(
        restarted_split >= 2,
        "servers restarted with acceptedEpoch > currentEpoch"
    );
    let l = elect(&mut sim);
    let epoch = sim.nodes[&l]
        .zab
        .as_ref()
        .unwrap()
        .established_epoch()
        .unwrap();
    assert!(epoch >= 2, "the burnt epoch is never reused: {epoch}");
    writes(&mut sim, l, 5);
    // Now the leader crashes right after a new acceptedEpoch too, mid re-election.
    sim.nodes
        .get_mut(&l)
        .unwrap()
        .armed
        .insert(Failpoint::AfterCurrentEpoch);
    sim.crash(l);
    sim.restart(l);
    sim.run_ticks(20);
    sim.restart_all_down();
    ok(&mut sim);
}

/// ZOOKEEPER-4643 / 4646: a follower syncs txns from a leader, persists currentEpoch and
/// ACKs NEWLEADER, then crashes; its ACK was needed for the quorum. If those txns were not
/// durable, it could later win an election with the newer currentEpoch and a shorter log
/// and truncate committed txns everywhere.
fn newleader_ack_crash(fp: Failpoint, bug: Option<InjectedBug>) -> Result<(), Violation> {
    let mut opts = Options::quiet(3, 3);
    opts.injected_bug = bug;
    // Keep the 10 txns within the leader's committedLog window: sync by DIFF (a SNAP
    // would make them durable through the snapshot file instead).
    opts.committed_log_max = 100;
    let mut sim = scripted(opts);
    let a = elect(&mut sim);
    let (b, c) = others(a);
    writes(&mut sim, a, 5);
    sim.run_ticks(3);
    sim.crash(c);
    writes(&mut sim, a, 10);
    sim.run_ticks(3);
    sim.crash(b);
    // a alone: steps down. c comes back and must sync the 10 txns from a.
    // c's disk is slow: the synced txns are not durable for a while.
    sim.nodes.get_mut(&c).unwrap().armed.insert(fp);
    sim.nodes.get_mut(&c).unwrap().stall_fsync = true;
    sim.restart(c);
    sim.run_until(20, |s| !s.nodes[&c].is_up());
    if sim.nodes[&c].is_up() {
        // Correct zab waits for the fsync before currentEpoch and the ACK.
        sim.nodes.get_mut(&c).unwrap().stall_fsync = false;
        sim.run_until(60, |s| !s.nodes[&c].is_up());
    }
    sim.nodes.get_mut(&c).unwrap().stall_fsync = false;
    assert!(
        !sim.nodes[&c].is_up(),
        "c crashed at {fp:?}: {}",
        sim.describe()
    );
    // a dies too; b and c must elect without losing the 15 committed txns.
    sim.crash(a);
    sim.restart(b);
    sim.restart(c);
    sim.run_until(60, |s| s.leader().is_some());
    sim.restart(a);
    if let Some(v) = sim.checker.violation() {
        return Err(v);
    }
    assert!(sim.stats.count("DIFF") > 0 && sim.stats.count("SNAP") == 0);
    sim.heal_and_check()
}

#[test]
fn zk4646_crash_after_newleader_ack_loses_nothing() {
    newleader_ack_crash(Failpoint::AfterNewLeaderAck, None).unwrap();
}

#[test]
fn zk4643_crash_after_current_epoch_loses_nothing() {
    newleader_ack_crash(Failpoint::AfterCurrentEpoch, None).unwrap();
}

#[test]
fn checker_catches_ack_before_fsync_in_the_zk4646_scenario() {
    let v = newleader_ack_crash(
        Failpoint::AfterNewLeaderAck,
        Some(InjectedBug::AckBeforeFsync),
    )
    .expect_err("acknowledging NEWLEADER before the synced txns are durable must be caught");
    eprintln!("caught: {v}");
    assert!(
        v.0.contains("Durability")
            || v.0.contains("Convergence")
            || v.0.contains("PrimaryIntegrity")
            || v.0.contains("Agreement"),
        "{v}"
    );
}

#[test]
fn zk4394_commit_right_after_newleader() {
    let mut sim = quiet(4);
    let l = elect(&mut sim);
    let (f, _) = others(l);
    writes(&mut sim, l, 3);
    sim.crash(f);
    writes(&mut sim, l, 3);
    sim.restart(f);
    // Keep writes flowing while f syncs so COMMITs land between NEWLEADER and UPTODATE.
    for _ in 0..200 {
        sim.client_write(l);
        sim.step();
        if sim.nodes[&f].zab.as_ref().is_some_and(|z| z.is_serving()) {
            break;
        }
    }
    assert!(sim.nodes[&f].zab.as_ref().unwrap().is_serving());
    assert!(
        sim.stats.commits_before_uptodate > 0,
        "the scenario must really deliver a COMMIT before UPTODATE"
    );
    ok(&mut sim);
}

/// ZOOKEEPER-3911: a learner synced while proposals are in flight must not apply any of
/// them before the leader commits it. `Integrity` (checked on every apply) is the oracle.
fn uncommitted_during_sync(bug: Option<InjectedBug>) -> Result<(), Violation> {
    let mut opts = Options::quiet(5, 3);
    opts.injected_bug = bug;
    let mut sim = scripted(opts);
    let l = elect(&mut sim);
    let (slow, c) = others(l);
    writes(&mut sim, l, 3);
    if let Some(v) = sim.checker.violation() {
        return Err(v);
    }
    sim.crash(c);
    // The remaining follower's disk stalls: nothing new can commit until c is back.
    sim.nodes.get_mut(&slow).unwrap().stall_fsync = true;
    sim.restart(c);
    for _ in 0..200 {
        sim.client_write(l);
        sim.step();
        if sim.checker.failed() || sim.nodes[&c].zab.as_ref().is_some_and(|z| z.is_serving()) {
            break;
        }
    }
    sim.nodes.get_mut(&slow).unwrap().stall_fsync = false;
    if let Some(v) = sim.checker.violation() {
        return Err(v);
    }
    assert!(sim.nodes[&c].zab.as_ref().unwrap().is_serving());
    sim.heal_and_check()
}

#[test]
fn zk3911_sync_never_applies_uncommitted_proposals() {
    uncommitted_during_sync(None).unwrap();
}

#[test]
fn checker_catches_applying_uncommitted_proposals_on_sync() {
    let v = uncommitted_during_sync(Some(InjectedBug::ApplyUncommittedOnSync))
        .expect_err("applying uncommitted proposals at UPTODATE must be caught");
    assert!(v.0.contains("Integrity"), "{v}");
}

#[test]
fn zxid_counter_overflow_moves_to_a_new_epoch() {
    let mut opts = Options::quiet(6, 3);
    opts.max_zxid_counter = 3;
    let mut sim = scripted(opts);
    let mut acked = 0;
    for _ in 0..10 {
        let l = elect(&mut sim);
        // Writes beyond the counter limit are refused (EpochExhausted) and retried.
        let before = sim.acked().len();
        sim.client_write(l);
        sim.run_ticks(3);
        acked += sim.acked().len() - before;
    }
    assert!(acked >= 8, "writes kept being acknowledged: {acked}");
    let ledger = sim.checker.ledger();
    assert!(ledger.iter().all(|e| zxid_counter(e.0) <= 3));
    let epochs: std::collections::BTreeSet<u32> = ledger.iter().map(|e| zxid_epoch(e.0)).collect();
    assert!(epochs.len() >= 3, "several epochs used: {epochs:?}");
    ok(&mut sim);
}

#[test]
fn minority_partition_leader_steps_down_and_majority_moves_on() {
    let mut sim = quiet(7);
    let l = elect(&mut sim);
    writes(&mut sim, l, 2);
    sim.partition(&[l]);
    sim.run_ticks(12);
    assert_eq!(sim.nodes[&l].zab.as_ref().unwrap().role(), Role::Looking);
    let l2 = sim.leader().expect("majority side elected");
    assert_ne!(l2, l);
    writes(&mut sim, l2, 2);
    ok(&mut sim);
}

#[test]
fn zk2845_deposed_leader_drops_its_uncommitted_proposal_without_a_restart() {
    let mut sim = quiet(8);
    let l = elect(&mut sim);
    writes(&mut sim, l, 3);
    sim.run_ticks(2);
    // Cut off, the leader still accepts a write and logs it; it can never commit.
    sim.partition(&[l]);
    assert!(sim.client_write(l));
    let orphan = sim.nodes[&l].zab.as_ref().unwrap().last_zxid();
    sim.run_ticks(12);
    let z = sim.nodes[&l].zab.as_ref().unwrap();
    assert_ne!(
        z.established_epoch(),
        Some(zxid_epoch(orphan)),
        "stepped down"
    );
    assert!(z.applied_zxid() < orphan, "never applied");
    let l2 = sim.leader().expect("majority leader");
    writes(&mut sim, l2, 2);
    // Heal: the old leader, still running (no restart, its tree in memory), rejoins and
    // must drop the orphan from its log; its tree never had it.
    sim.heal();
    assert!(sim.run_until(60, |s| s.nodes[&l]
        .zab
        .as_ref()
        .is_some_and(|z| z.is_serving())));
    let z = sim.nodes[&l].zab.as_ref().unwrap();
    assert!(z.log_window().all(|e| e.0 != orphan));
    assert!(sim.nodes[&l].rsm.entries.iter().all(|e| e.0 != orphan));
    assert_eq!(sim.nodes[&l].rsm.entries.len(), 5);
    ok(&mut sim);
}
