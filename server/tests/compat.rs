//! Drives the real third-party clients (kazoo, the Java client and Curator, zkCli.sh, the C
//! client cli_mt) against a zkd started on a free port, through compat/run-all.sh.
//!
//! The clients come from Debian packages that .ci/run installs. Without them the test
//! says so and passes, unless ZKD_REQUIRE_REFERENCE=1 (CI), where a missing client fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Zkd {
    child: Child,
    dir: PathBuf,
}

impl Drop for Zkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_zkd() -> (Zkd, u16) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("zkd-compat-{}-{}", std::process::id(), port));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist=*\nextendedTypesEnabled=true\n\
             znode.container.checkIntervalMs=1000\n",
            dir.join("data").display(),
            port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("zkd.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_zkd"))
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start zkd");
    let z = Zkd { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "zkd did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    (z, port)
}

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
    let (zkd, port) = start_zkd();
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
        let log = std::fs::read_to_string(zkd.dir.join("zkd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("zkd log (last lines, newest first):\n{}", tail.join("\n"));
    }
    assert!(
        out.status.success(),
        "real-client compatibility suites failed"
    );
}
