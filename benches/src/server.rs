//! Starting and stopping a zkd process for a benchmark: a zoo.cfg in a scratch directory
//! (default settings, fsync on; only the data directory, a free loopback port and the
//! 4lw whitelist set), stderr captured to a file, killed and reaped on drop. Also the
//! probes the benchmarks need: a four-letter word, VmRSS, "first getData answered".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zkd_client::{Client, ConnectOptions};

/// A free TCP port on 127.0.0.1, chosen by the kernel at run time.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A zkd child process; killed (SIGKILL) and reaped when dropped.
pub struct Zkd {
    child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    pub spawned_at: Instant,
    /// Wall clock at spawn, to line up with the timestamps of zkd's log.
    pub spawned_wall: std::time::SystemTime,
}

impl Zkd {
    /// Writes `<work_dir>/zoo.cfg` pointing at `data_dir` and starts `zkd` on it.
    pub fn spawn(zkd: &Path, work_dir: &Path, data_dir: &Path) -> std::io::Result<Zkd> {
        std::fs::create_dir_all(work_dir)?;
        std::fs::create_dir_all(data_dir)?;
        let port = free_port()?;
        let cfg = work_dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n4lw.commands.whitelist=*\n",
                data_dir.display()
            ),
        )?;
        let stderr_path = work_dir.join("zkd.stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        let spawned_at = Instant::now();
        let spawned_wall = std::time::SystemTime::now();
        let child = Command::new(zkd)
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        Ok(Zkd {
            child,
            port,
            stderr_path,
            spawned_at,
            spawned_wall,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "zkd exited ({st}); stderr:\n{}",
                self.stderr_tail(20)
            )),
            Err(e) => Err(format!("zkd: {e}")),
        }
    }

    /// The last `n` lines zkd wrote to stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Opens a session, retrying while the port refuses connections, until `deadline`.
    /// zkd binds its port before loading its data and only accepts once loaded, so a
    /// connection attempt that gets through the kernel's backlog simply waits.
    pub async fn connect(&mut self, deadline: Duration) -> Result<Client, String> {
        let until = Instant::now() + deadline;
        loop {
            self.check_alive()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "zkd on {} not serving within {deadline:?}",
                    self.addr()
                ));
            }
            let opts = ConnectOptions::new(&self.addr(), Duration::from_secs(30))
                .connect_timeout(left.min(Duration::from_secs(60)));
            match Client::connect_with(opts).await {
                Ok(c) => return Ok(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Zkd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a four-letter word and returns the whole answer.
pub fn four_letter(addr: &str, cmd: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// "Node count: N" of a `srvr` answer.
pub fn srvr_node_count(srvr: &str) -> Option<u64> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Node count:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM) in bytes.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// A scratch directory `<base>/<prefix>-<pid>-<n>`, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(base: &Path, prefix: &str) -> std::io::Result<ScratchDir> {
        for n in 0u32.. {
            let p = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            if !p.exists() {
                std::fs::create_dir_all(&p)?;
                return Ok(ScratchDir(p));
            }
        }
        unreachable!()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
