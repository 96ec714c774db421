//! Shared by the live test files: where the server is, a private subtree per test, and
//! clean-up.
//!
//! The server comes from `ZKD_TEST_ZK_ADDR=host:port` (zkd or Apache ZooKeeper; .ci/run
//! runs every live file against both). When it is unset the tests skip with a message,
//! unless `ZKD_REQUIRE_REFERENCE=1`: then this module starts one Apache ZooKeeper from the
//! Debian jars for the whole test binary (compat/start-apache-zk.sh) and the tests run
//! against it, so a CI run that requires the reference never skips them silently. That
//! server is stopped, and its folder removed, by a watchdog when the test process exits.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use zkd_client::{Error, ErrorCode, ZooKeeper};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn require_reference() -> bool {
    std::env::var("ZKD_REQUIRE_REFERENCE").is_ok_and(|v| v == "1")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

static OWN_ZK: OnceLock<String> = OnceLock::new();

/// Starts Apache ZooKeeper once per test binary; a watchdog process stops it (and removes
/// its folder) as soon as this process is gone, even after a panic or a kill.
fn own_apache_zk() -> String {
    OWN_ZK
        .get_or_init(|| {
            let dir = tempdir("own-zk");
            let out = std::process::Command::new("bash")
                .arg(repo_root().join("compat/start-apache-zk.sh"))
                .arg(&dir)
                .output()
                .expect("run compat/start-apache-zk.sh");
            assert!(
                out.status.success(),
                "ZKD_REQUIRE_REFERENCE=1 and no ZKD_TEST_ZK_ADDR: starting Apache ZooKeeper failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let s = String::from_utf8_lossy(&out.stdout);
            let mut it = s.split_whitespace();
            let port = it.next().expect("port").to_string();
            let pid = it.next().expect("pid").to_string();
            watchdog(&pid, &dir);
            format!("127.0.0.1:{port}")
        })
        .clone()
}

/// A process that outlives us just long enough to kill `pid` and remove `dir`.
/// Never waited on by design: it must outlive this process (init reaps it).
#[allow(clippy::zombie_processes)]
pub fn watchdog(pid: &str, dir: &std::path::Path) {
    let me = std::process::id();
    // Kill only if the pid still runs something under `dir` (its zoo.cfg is there), so
    // a pid recycled after the server already stopped is never touched.
    let d = dir.display();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
         if tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null | grep -qF '{d}'; then \
           kill {pid}; sleep 1; kill -9 {pid} 2>/dev/null; fi; rm -rf '{d}'"
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn watchdog");
}

pub fn tempdir(tag: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!(
        "zkd-client-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&base).unwrap();
    base
}

/// The server to test against, or `None` (skip, with a message).
pub fn live_addr(test: &str) -> Option<String> {
    match std::env::var("ZKD_TEST_ZK_ADDR") {
        Ok(a) if !a.is_empty() => Some(a),
        _ if require_reference() => Some(own_apache_zk()),
        _ => {
            eprintln!("skipping {test}: set ZKD_TEST_ZK_ADDR=host:port to run against a server");
            None
        }
    }
}

pub async fn connect(addr: &str) -> ZooKeeper {
    ZooKeeper::connect(addr, TIMEOUT).await.expect("connect")
}

/// A fresh, empty subtree `/zkd-client-<test>-<pid>` (created, and emptied first).
pub async fn root(zk: &ZooKeeper, test: &str) -> String {
    let root = format!("/zkd-client-{test}-{}", std::process::id());
    delete_tree(zk, &root).await;
    zk.create_all(&root).await.unwrap();
    root
}

pub async fn delete_tree(zk: &ZooKeeper, path: &str) {
    let mut stack = vec![path.to_string()];
    let mut order = vec![];
    while let Some(p) = stack.pop() {
        match zk.get_children(&p).await {
            Ok((kids, _)) => {
                for k in kids {
                    stack.push(if p == "/" {
                        format!("/{k}")
                    } else {
                        format!("{p}/{k}")
                    });
                }
                order.push(p);
            }
            Err(Error::Keeper(ErrorCode::NoNode)) => {}
            // Unreadable (a test's private node): delete it as a leaf.
            Err(Error::Keeper(ErrorCode::NoAuth)) => order.push(p),
            Err(e) => panic!("cleanup of {p}: {e}"),
        }
    }
    for p in order.into_iter().rev() {
        let _ = zk.delete(&p, -1).await;
    }
}

/// The zkd binary of this workspace: `ZKD_BIN`, else `<target>/debug/zkd` (built by
/// `cargo build --bin zkd`, and by `cargo test --workspace`, which builds every binary of
/// the workspace before it runs any test because the server's integration tests use it).
pub fn zkd_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ZKD_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let p = target.join("debug/zkd");
    p.exists().then_some(p)
}

/// Awaits `f` for at most `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s waiting for {what}"))
}
