//! Drives the real third-party clients (kazoo, the Java client and Curator, zkCli.sh, the C
//! client cli_mt) against a zkd started on a free port, through compat/run-all.sh.
//!
//! The clients come from Debian packages that .ci/run installs. Without them the test
//! says so and passes, unless ZKD_REQUIRE_REFERENCE=1 (CI), where a missing client fails.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{ZkdEnsemble, ZkdProcess};

fn reference_clients_installed() -> bool {
    std::path::Path::new("/usr/share/java/zookeeper.jar").exists()
        && std::path::Path::new("/usr/share/zookeeper/bin/zkCli.sh").exists()
        && std::path::Path::new("/usr/lib/zookeeper/bin/cli_mt").exists()
        && std::path::Path::new("/usr/lib/python3/dist-packages/kazoo").exists()
}

fn reference_clients_or_skip() -> bool {
    if !reference_clients_installed() {
        let required = std::env::var("ZKD_REQUIRE_REFERENCE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "ZKD_REQUIRE_REFERENCE=1 but the Debian reference clients are not installed"
        );
        eprintln!("skipping: install zookeeper, zookeeper-bin, libcurator-*-java, python3-kazoo (see .ci/run)");
        return false;
    }
    true
}

fn run_suites(addr: std::net::SocketAddr) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compat/run-all.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(addr.to_string())
        .env("COMPAT_VERBOSE", "1")
        .output()
        .expect("run compat/run-all.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout.to_string())
}

/// The same suites against a follower of a three-server zkd ensemble: writes go through
/// the leader, reads and watches are served by the follower.
#[test]
fn real_clients_against_a_zkd_follower() {
    if !reference_clients_or_skip() {
        return;
    }
    let e = ZkdEnsemble::start_with_tick(
        3,
        0,
        2000,
        "extendedTypesEnabled=true\nznode.container.checkIntervalMs=1000\n",
    );
    let leader = e.wait_for_quorum(std::time::Duration::from_secs(60));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    assert_eq!(e.mode(follower), "follower");
    let (ok, _) = run_suites(e.clients[follower]);
    if !ok {
        eprintln!("{}", e.logs());
    }
    assert!(
        ok,
        "real-client compatibility suites failed against a follower"
    );
}

#[test]
fn real_clients_against_zkd() {
    if !reference_clients_or_skip() {
        return;
    }
    let zkd =
        ZkdProcess::start("extendedTypesEnabled=true\nznode.container.checkIntervalMs=1000\n");
    let (ok, _) = run_suites(zkd.addr());
    if !ok {
        let log = zkd.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("zkd log (last lines, newest first):\n{}", tail.join("\n"));
    }
    assert!(ok, "real-client compatibility suites failed");
}
