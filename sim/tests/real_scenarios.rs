//! Named scenarios on the real-server simulation: each scripts the faults around one
//! moment ZooKeeper got wrong before (or zkd did), then heals and runs every check.

use zkd_proto::txn::TxnBody;
use zkd_sim::real::{RealOptions, RealSim};
use zkd_zab::ServerId;

/// A quiet ensemble (no random faults, no random clients) with an established leader.
fn settled(seed: u64, voters: usize) -> RealSim {
    let mut o = RealOptions::quiet(seed, voters);
    o.clients = 0;
    let mut sim = RealSim::new(o);
    // Scripted clients only: no random requests (nor random reconnects).
    sim.traffic = false;
    assert!(sim.run_until(40, |s| s.converged()), "{}", sim.describe());
    sim
}

fn others(sim: &RealSim, not: ServerId) -> Vec<ServerId> {
    sim.servers.keys().copied().filter(|i| *i != not).collect()
}

fn connected(sim: &mut RealSim, ci: usize) {
    assert!(
        sim.run_until(20, |s| s.client_connected(ci) && s.client_session(ci) != 0),
        "client {ci} never connected: {}",
        sim.describe()
    );
}

fn idle(sim: &mut RealSim, ci: usize) {
    assert!(
        sim.run_until(20, |s| s.client_idle(ci)),
        "client {ci} got no reply"
    );
}

fn absent_everywhere(sim: &RealSim, path: &str) -> bool {
    sim.servers
        .values()
        .all(|s| s.core.as_ref().unwrap().tree.get(path).is_none())
}

/// ZK-2355 / ZK-4678: a partition while a closeSession (client close or expiry) is
/// proposed but not committed. No ephemeral may outlive its session on any server.
#[test]
fn partition_while_a_close_session_is_in_flight() {
    let mut runs = 0;
    for seed in 0..12 {
        for (expire, isolate_leader) in [(false, true), (false, false), (true, true), (true, false)]
        {
            let mut sim = settled(seed, 3);
            let l = sim.leader().unwrap();
            let f = others(&sim, l)[seed as usize % 2];
            let ci = sim.add_client(f);
            connected(&mut sim, ci);
            sim.client_create(ci, "/e1", true);
            sim.client_create(ci, "/e2", true);
            idle(&mut sim, ci);
            let sid = sim.client_session(ci);
            if expire {
                sim.silence(ci);
            } else {
                sim.client_close(ci);
            }
            let caught = sim.run_until(30, |s| {
                s.in_flight(|id, b| id == sid && matches!(b, TxnBody::CloseSession(_)))
            });
            assert!(caught, "seed {seed}: the closeSession never went out");
            sim.partition(&[if isolate_leader { l } else { f }]);
            sim.run_ticks(20);
            if let Err(v) = sim.heal_and_check() {
                panic!("seed {seed} expire={expire} isolate_leader={isolate_leader}: {v}");
            }
            assert!(absent_everywhere(&sim, "/e1") && absent_everywhere(&sim, "/e2"));
            runs += 1;
        }
    }
    assert_eq!(runs, 48);
}

/// The leader crashes right after proposing a session's createSession (the client is on a
/// follower, or on the leader itself). The session exists everywhere or nowhere; a
/// learner must not keep tracking a session that never came to be.
#[test]
fn leader_crash_right_after_proposing_create_session() {
    for seed in 0..12 {
        for on_leader in [false, true] {
            let mut sim = settled(seed, 3);
            let l = sim.leader().unwrap();
            let at = if on_leader { l } else { others(&sim, l)[0] };
            let ci = sim.add_client(at);
            let caught = sim.run_until(10, |s| {
                s.in_flight(|_, b| matches!(b, TxnBody::CreateSession(_)))
            });
            assert!(caught, "seed {seed}: no createSession in flight");
            sim.crash(l);
            sim.run_ticks(15);
            sim.restart(l);
            sim.reconnect(ci, None);
            sim.run_ticks(10);
            sim.reconnect(ci, None);
            sim.run_ticks(10);
            if sim.client_connected(ci) {
                sim.client_create(ci, "/after", true);
                sim.run_ticks(5);
            }
            if let Err(v) = sim.heal_and_check() {
                panic!("seed {seed} on_leader={on_leader}: {v}");
            }
        }
    }
}

/// A follower restarted from its own fuzzy snapshot (taken while txns were applied, so it
/// holds changes after the zxid it is named after) plus its log; with `stall` its log was
/// not even fsynced past the snapshot, so the crash loses txns the snapshot contains.
/// zab replays the committed txns after the snapshot's zxid over that tree: the final
/// check compares every path, Stat (cversion, pzxid included), data and digest.
#[test]
fn follower_restarted_from_a_fuzzy_snapshot_and_its_log() {
    let mut fuzzy_restarts = 0;
    for seed in 0..16 {
        for stall in [false, true] {
            let mut o = RealOptions::quiet(seed, 3);
            o.request_rate = 0.3;
            let mut sim = RealSim::new(o);
            assert!(sim.run_until(40, |s| s.leader().is_some()));
            sim.run_ticks(15);
            let l = sim.leader().unwrap();
            let f = others(&sim, l)[seed as usize % 2];
            sim.servers.get_mut(&f).unwrap().stall_fsync = stall;
            let before = sim.stats.fuzzy_snapshots;
            sim.begin_snapshot(f);
            assert!(sim.run_until(30, |s| s.stats.fuzzy_snapshots > before));
            sim.run_ticks(2);
            let restarts = sim.stats.fuzzy_restarts;
            sim.crash(f);
            sim.servers.get_mut(&f).unwrap().stall_fsync = false;
            sim.restart(f);
            fuzzy_restarts += sim.stats.fuzzy_restarts - restarts;
            sim.run_ticks(10);
            if let Err(v) = sim.heal_and_check() {
                panic!("seed {seed} stall={stall}: {v}");
            }
        }
    }
    println!("{fuzzy_restarts} restarts from a really fuzzy snapshot");
    assert!(fuzzy_restarts >= 8, "only {fuzzy_restarts} fuzzy restarts");
}

/// Regression (zkd-sim real seed 35): requests pipelined behind a closeSession on the
/// leader were prepared as session 0; a second closeSession then deleted every persistent
/// node with an outstanding change (and '/').
#[test]
fn requests_pipelined_after_close_session_touch_nothing() {
    for seed in 0..4 {
        let mut sim = settled(seed, 3);
        let l = sim.leader().unwrap();
        let ci = sim.add_client(l);
        connected(&mut sim, ci);
        sim.client_create(ci, "/keep", false);
        idle(&mut sim, ci);
        // One burst, nothing delivered in between.
        sim.client_set_data(ci, "/keep", b"x");
        sim.client_read(ci, "/keep");
        sim.client_close(ci);
        sim.client_close(ci);
        sim.client_create(ci, "/late", false);
        sim.run_ticks(10);
        if let Err(v) = sim.heal_and_check() {
            panic!("seed {seed}: {v}");
        }
        let t = &sim.servers[&l].core.as_ref().unwrap().tree;
        assert!(t.get("/keep").is_some(), "seed {seed}: /keep was deleted");
        assert!(
            t.get("/late").is_none(),
            "seed {seed}: a write after close ran"
        );
    }
}

/// Same seed, same run: every delivery, apply and reply hashes to the same value.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 35, 106] {
        let run = || {
            let mut sim = RealSim::new(RealOptions::new(seed, 3));
            sim.run_ticks(sim.opts.fault_ticks);
            let _ = sim.heal_and_check();
            (sim.trace_hash, format!("{:?}", sim.stats))
        };
        assert_eq!(run(), run(), "seed {seed} is not deterministic");
    }
}

/// Regression (zkd-sim real storm seed 461): a session expires on the leader before its
/// createSession commits (slow disks); the commit must not make the leader track it again,
/// or an ephemeral created right after the client's handshake commits after the session's
/// close and outlives it on every server (ZOOKEEPER-1208's class).
#[test]
fn a_session_expiring_before_its_create_session_commits_leaves_no_ephemeral() {
    let mut created = 0;
    for seed in 0..8 {
        let mut sim = settled(seed, 3);
        let l = sim.leader().unwrap();
        let (f, f2) = (others(&sim, l)[0], others(&sim, l)[1]);
        // The leader's and the client's follower's disks stall; the other follower makes
        // the createSession durable and acks it, then its disk stalls too.
        sim.servers.get_mut(&l).unwrap().stall_fsync = true;
        sim.servers.get_mut(&f).unwrap().stall_fsync = true;
        let ci = sim.add_client(f);
        assert!(sim.run_until(10, |s| s
            .in_flight(|_, b| matches!(b, TxnBody::CreateSession(_)))));
        sim.run_ticks(3);
        sim.servers.get_mut(&f2).unwrap().stall_fsync = true;
        // Longer than any negotiated timeout (10 s = 5 ticks): the leader expires it.
        sim.run_ticks(8);
        assert!(
            sim.in_flight(|_, b| matches!(b, TxnBody::CloseSession(_))),
            "seed {seed}: the leader did not expire the uncommitted session"
        );
        // The leader's disk comes back: the createSession commits (leader + f2), the
        // closeSession cannot yet (f2 has not made it durable).
        sim.servers.get_mut(&l).unwrap().stall_fsync = false;
        if sim.run_until(10, |s| s.client_connected(ci) && s.client_session(ci) != 0) {
            sim.client_create(ci, "/ghost", true);
            created += 1;
        }
        sim.run_ticks(3);
        sim.servers.get_mut(&f).unwrap().stall_fsync = false;
        sim.servers.get_mut(&f2).unwrap().stall_fsync = false;
        sim.run_ticks(10);
        if let Err(v) = sim.heal_and_check() {
            panic!("seed {seed}: {v}");
        }
        assert!(absent_everywhere(&sim, "/ghost"), "seed {seed}");
    }
    assert!(
        created >= 4,
        "the client got its session in only {created} runs"
    );
}
