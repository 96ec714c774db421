//! Quotas as zkCli.sh sees them: the same setquota/listquota/delquota session against zkd
//! and against Apache ZooKeeper (both with enforceQuota), outputs compared line by line.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::ZkdProcess;

const SCRIPT: &str = "create /q
setquota -N 2 /q
listquota /q
create /q/a
create /q/b
create /q/c
listquota /q
get /zookeeper/quota/q/zookeeper_limits
get /zookeeper/quota/q/zookeeper_stats
set /q/a 12345
listquota /q
setquota -b 3 /q/a
create /q/a/x toolong
delquota /q
listquota /q
";

fn zkcli(addr: &str) -> Vec<String> {
    // zkCli.sh prints results on stdout and errors on stderr: interleave them as a
    // terminal would.
    let mut child = Command::new("bash")
        .args([
            "-c",
            "exec /usr/share/zookeeper/bin/zkCli.sh -server \"$0\" 2>&1",
            addr,
        ])
        .env("ZOO_LOG4J_PROP", "ERROR,CONSOLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("zkCli.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SCRIPT.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("20")
                || l.starts_with("SLF4J")
                || l.contains("log4j")
                || l.starts_with("WATCHER")
                || l.starts_with("WatchedEvent")
                || l.starts_with("Welcome")
                || l.starts_with("JLine")
                || l.starts_with("Connecting to")
                || l.starts_with("Picked up"))
        })
        .map(str::to_string)
        .collect()
}

struct ApacheZk(String);

impl Drop for ApacheZk {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../compat/stop-apache-zk.sh"
            ))
            .arg(&self.0)
            .status();
    }
}

#[test]
fn zkcli_quota_session_matches_apache_zookeeper() {
    let have = std::path::Path::new("/usr/share/zookeeper/bin/zkCli.sh").exists()
        && std::path::Path::new("/usr/share/java/zookeeper.jar").exists();
    if !have {
        assert!(
            std::env::var("ZKD_REQUIRE_REFERENCE").is_err(),
            "ZKD_REQUIRE_REFERENCE is set but zkCli.sh / ZooKeeper are not installed"
        );
        eprintln!("SKIPPED: Apache ZooKeeper from Debian is not installed");
        return;
    }
    let z = ZkdProcess::start("enforceQuota=true\n");
    let ours = zkcli(&z.addr().to_string());

    let dir = std::env::temp_dir().join(format!("zkd-quota-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../compat/start-apache-zk.sh"
        ))
        .arg(&dir)
        .env("JAVA_TOOL_OPTIONS", "-Dzookeeper.enforceQuota=true")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = line.split_whitespace();
    let port = parts.next().expect("PORT PID").to_string();
    let guard = ApacheZk(parts.next().expect("PID").to_string());
    let theirs = zkcli(&format!("127.0.0.1:{port}"));
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        theirs.iter().any(|l| l.starts_with("Quota has exceeded")),
        "the reference did not enforce the quota: {theirs:#?}"
    );
    assert_eq!(ours, theirs);
}
