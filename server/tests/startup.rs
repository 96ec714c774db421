//! Start-up behaviour of the `zkd` binary: both config spellings, bad values stopping
//! start-up with a message naming key and value, unknown keys warned about.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zkd-startup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Killed(Child, PathBuf);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn four_letter(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_serving(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(out) = four_letter(port, "srvr") {
            if !out.is_empty() {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "zkd did not start serving");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_cfg(dir: &std::path::Path, body: &str) -> PathBuf {
    let p = dir.join("zoo.cfg");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn positional_and_flag_config_both_start_a_standalone_server() {
    for flag in [false, true] {
        let dir = temp_dir(if flag { "flag" } else { "pos" });
        let port = free_port();
        let cfg = write_cfg(
            &dir,
            &format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nnoSuchKey=1\n",
                dir.join("data").display()
            ),
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkd"));
        if flag {
            cmd.arg("--config");
        }
        let child = cmd
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let guard = Killed(child, dir.clone());
        let srvr = wait_serving(port);
        assert!(srvr.contains("\nMode: standalone\n"), "{srvr}");
        // The default whitelist is srvr only, as in ZooKeeper.
        assert_eq!(
            four_letter(port, "ruok").unwrap(),
            "ruok is not executed because it is not in the whitelist.\n"
        );
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        assert!(log.contains("noSuchKey"), "unknown key warned about: {log}");
        // A log file gets plain text, no terminal colour codes.
        assert!(!log.contains('\x1b'), "escape codes in a log file: {log:?}");
        drop(guard);
    }
}

#[test]
fn bad_values_stop_start_up_naming_key_and_value() {
    let dir = temp_dir("bad");
    for (body, key, value) in [
        ("tickTime=abc\ndataDir=/tmp/x\nclientPort=1\n", "tickTime", "abc"),
        ("tickTime=2000\ndataDir=/tmp/x\nclientPort=99999\n", "clientPort", "99999"),
        (
            "tickTime=2000\ndataDir=/tmp/x\nclientPort=2181\nminSessionTimeout=9000\nmaxSessionTimeout=5000\n",
            "minSessionTimeout",
            "9000",
        ),
        ("tickTime=2000\ndataDir=/tmp/x\nclientPort=2181\njute.maxbuffer=-5\n", "jute.maxbuffer", "-5"),
    ] {
        let cfg = write_cfg(&dir, body);
        let out = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains(value), "{body}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_zkd"))
        .arg(dir.join("missing.cfg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.cfg"));
    let _ = std::fs::remove_dir_all(&dir);
}
