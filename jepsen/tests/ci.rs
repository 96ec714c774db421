//! Short CI suite against real processes in network namespaces.
//!
//! Runs only as root with iproute2 and nft; otherwise it prints why and passes, unless
//! ZKD_REQUIRE_REFERENCE=1 and the Apache ZooKeeper jars are missing (then it fails, so a CI
//! machine that should have the reference cannot silently skip it). One test function on
//! purpose: the runs share the machine's two cores and must not overlap.

use std::path::PathBuf;
use std::time::Duration;

use zkd_jepsen::checker::Validity;
use zkd_jepsen::cluster::{self, ServerKind};
use zkd_jepsen::nemesis::Kind;
use zkd_jepsen::runner::{self, RunConfig};
use zkd_jepsen::workload::Workload;

/// Runs `c` and asserts every checker found it valid.
fn run_valid(rt: &tokio::runtime::Runtime, c: &RunConfig) -> runner::RunResult {
    let r = rt.block_on(runner::run(c)).expect("run");
    eprintln!("{}", r.summary);
    assert_eq!(
        r.valid,
        Validity::Valid,
        "{}: {}",
        r.summary,
        serde_json::to_string(&r.verdicts).unwrap()
    );
    r
}

fn cfg(
    server: ServerKind,
    nodes: usize,
    workload: Workload,
    nemesis: Kind,
    secs: u64,
    out: &str,
) -> RunConfig {
    RunConfig {
        server,
        nodes,
        workload,
        nemesis,
        time: Duration::from_secs(secs),
        seed: 7,
        concurrency: 4,
        out: std::env::temp_dir().join("zkd-jepsen-ci").join(out),
        hold: Duration::from_secs(4),
        gap: Duration::from_secs(3),
        expiry_bound_ms: 10_000,
        keep_data: false,
        plain_reads: false,
    }
}

fn our_namespaces() -> Vec<String> {
    let me = format!("{}{}-", zkd_jepsen::netns::PREFIX, std::process::id());
    zkd_jepsen::netns::run(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&me))
        .map(str::to_string)
        .collect()
}

#[test]
fn jepsen_ci_suite() {
    let require = std::env::var("ZKD_REQUIRE_REFERENCE").as_deref() == Ok("1");
    // Checked first, so a CI machine that must have the reference fails even when it also
    // lacks root.
    if require && !cluster::apache_zk_available() {
        panic!(
            "ZKD_REQUIRE_REFERENCE=1 but Apache ZooKeeper jars ({}, {}) or java are missing",
            cluster::ZK_JAR,
            cluster::SLF4J_JAR
        );
    }
    if let Err(why) = zkd_jepsen::netns::available() {
        eprintln!("SKIPPED jepsen CI suite: {why} (needs root, iproute2, nft)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ran = 0;
    if cluster::apache_zk_available() {
        // Apache ZooKeeper keeps its promises under partitions and crashes: the harness
        // must say valid there, or the harness is wrong.
        for (w, n) in [
            (Workload::Register, Kind::Partition),
            (Workload::Set, Kind::Kill),
            (Workload::Multi, Kind::Partition),
        ] {
            let c = cfg(
                ServerKind::ApacheZk,
                3,
                w,
                n,
                15,
                &format!("zk-{w:?}-{n:?}"),
            );
            let r = run_valid(&rt, &c);
            // The same real history with one acknowledged effect removed must fail: the
            // checker is live on real data, not only on hand-made histories.
            if w == Workload::Set {
                let mut h = r.history.clone();
                let read = h
                    .iter()
                    .rposition(|o| o.f == "read" && o.kind == zkd_jepsen::history::OpType::Ok)
                    .unwrap();
                h[read].value.as_array_mut().unwrap().remove(0);
                let v = zkd_jepsen::checker::set::check(&h);
                assert_eq!(v.valid, Validity::Invalid);
            }
            ran += 1;
        }
    } else {
        eprintln!("SKIPPED Apache ZooKeeper runs: jars not installed");
    }
    let zkd: PathBuf = runner::default_zkd_bin();
    if zkd.exists() {
        // A 3-server zkd ensemble: register under partitions, sessions under kills (the run
        // that found two servers minting the same session id), register under client
        // partitions.
        for (workload, nemesis, out) in [
            (
                Workload::Register,
                Kind::Partition,
                "zkd-register-partition",
            ),
            (Workload::Sessions, Kind::Kill, "zkd-sessions-kill"),
            // Clients cut from one or two servers' client port, servers still linked.
            (
                Workload::Register,
                Kind::ClientPartition,
                "zkd-register-client-partition",
            ),
        ] {
            let c = cfg(ServerKind::Zkd(zkd.clone()), 3, workload, nemesis, 12, out);
            let r = run_valid(&rt, &c);
            // Every fault was applied (a failed nft rule or signal is an "error" op).
            let errors: Vec<_> = r
                .history
                .iter()
                .filter(|o| o.process == zkd_jepsen::history::NEMESIS && o.f == "error")
                .collect();
            assert!(
                errors.is_empty(),
                "{}: nemesis errors {errors:?}",
                r.summary
            );
            ran += 1;
        }
    } else {
        eprintln!(
            "SKIPPED zkd run: {} not built (cargo build -p zkd-server)",
            zkd.display()
        );
    }
    drop(rt);
    // Every run removed its namespaces.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        our_namespaces().is_empty(),
        "left behind: {:?}",
        our_namespaces()
    );
    eprintln!("jepsen CI suite: {ran} runs");
}

/// The partition mechanism itself: after `cut(a, b)`, b no longer hears a (TCP connect from a
/// to b times out) while b still reaches a; `heal` restores it. Uses python3 for the
/// listener and the probe inside the namespaces.
#[test]
fn nft_cut_is_one_way_and_heal_restores() {
    if zkd_jepsen::netns::available().is_err()
        || std::process::Command::new("python3")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("SKIPPED nft cut test: needs root, iproute2, nft and python3");
        return;
    }
    let net = zkd_jepsen::netns::Net::create(2).expect("netns");
    // A listener in each namespace on port 7000 that accepts forever.
    let mut listeners = Vec::new();
    for i in 0..2 {
        let code = format!(
            "import socket\ns=socket.socket()\ns.bind(('{}',7000))\ns.listen(64)\nwhile True:\n  c,_=s.accept(); c.close()",
            net.ips[i]
        );
        listeners.push(
            std::process::Command::new("ip")
                .args(["netns", "exec", &net.namespaces[i], "python3", "-c", &code])
                .spawn()
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let reach = |from: usize, to: usize| -> bool {
        let code = format!(
            "import socket\ntry:\n  socket.create_connection(('{}',7000),timeout=1); print('ok')\nexcept Exception: print('no')",
            net.ips[to]
        );
        let out = zkd_jepsen::netns::run(&[
            "ip",
            "netns",
            "exec",
            &net.namespaces[from],
            "python3",
            "-c",
            &code,
        ])
        .unwrap();
        out.trim() == "ok"
    };
    assert!(
        reach(0, 1) && reach(1, 0),
        "namespaces reach each other through the hub bridge"
    );
    net.cut(0, 1).unwrap(); // n2 drops what n1 sends
    assert!(!reach(0, 1), "cut 0->1 must stop n1 reaching n2");
    assert!(
        !reach(1, 0),
        "a TCP connect needs both directions, so n2->n1 fails too (SYN-ACK dropped)"
    );
    net.heal().unwrap();
    assert!(reach(0, 1) && reach(1, 0), "heal restores both directions");
    for mut l in listeners {
        let _ = l.kill();
        let _ = l.wait();
    }
}
