//! Drives the real third-party clients (kazoo, the Java client and Curator, zkCli.sh, the C
//! client cli_mt) against a zkd started on a free port, through compat/run-all.sh.
//!
//! The clients come from Debian packages that .ci/run installs. Without them the test
//! says so and passes, unless ZKD_REQUIRE_REFERENCE=1 (CI), where a missing client fails.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::ZkdProcess;

fn reference_clients_installed() -> bool {
    std::path::Path::new("/usr/share/java/zookeeper.jar").exists()
        && std::path::Path::new("/usr/share/zookeeper/bin/zkCli.sh").exists()
        && std::path::Path::new("/usr/lib/zookeeper/bin/cli_mt").exists()
        && std::path::Path::new("/usr/lib/python3/dist-packages/kazoo").exists()
}

#[test]
fn real_clients_against_zkd() {
    if !reference_clients_installed() {
        let required = std::env::var("ZKD_REQUIRE_REFERENCE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "ZKD_REQUIRE_REFERENCE=1 but the Debian reference clients are not installed"
        );
        eprintln!("skipping: install zookeeper, zookeeper-bin, libcurator-*-java, python3-kazoo (see .ci/run)");
        return;
    }
    let zkd =
        ZkdProcess::start("extendedTypesEnabled=true\nznode.container.checkIntervalMs=1000\n");
    let port = zkd.addr().port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compat/run-all.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(format!("127.0.0.1:{port}"))
        .env("COMPAT_VERBOSE", "1")
        .output()
        .expect("run compat/run-all.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let log = zkd.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("zkd log (last lines, newest first):\n{}", tail.join("\n"));
    }
    assert!(
        out.status.success(),
        "real-client compatibility suites failed"
    );
}
