//! Shared helpers for zkd-server integration tests: start a real `zkd` process.
//!
//! `ZkdProcess::start(extra_cfg)` writes a temp `zoo.cfg` (tickTime=2000, a temp dataDir, a
//! free clientPort picked at run time, `4lw.commands.whitelist=*` unless asked otherwise,
//! then `extra_cfg`), spawns
//! the `zkd` binary Cargo built for this test run and waits until it accepts connections.
//! Dropping the value kills the child (also when the test panics) and removes the temp dir.
//! The server's stderr goes to `<dir>/zkd.log`; `log()` reads it for failure messages.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a fresh `zkd` may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ZkdProcess {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl ZkdProcess {
    /// Starts `zkd` with the base config plus `extra_cfg` (zoo.cfg lines, may be empty).
    /// Retries a few times with a new port if the picked port was taken in between.
    pub fn start(extra_cfg: &str) -> ZkdProcess {
        Self::start_with("4lw.commands.whitelist=*\n", extra_cfg)
    }

    /// Like `start`, but leaves the four-letter-word whitelist at zkd's default.
    pub fn start_with_default_whitelist(extra_cfg: &str) -> ZkdProcess {
        Self::start_with("", extra_cfg)
    }

    /// Like `start`, with extra environment variables for the server process.
    pub fn start_with_env(extra_cfg: &str, env: &[(&str, &str)]) -> ZkdProcess {
        Self::start_with_full("4lw.commands.whitelist=*\n", extra_cfg, env)
    }

    fn start_with(whitelist: &str, extra_cfg: &str) -> ZkdProcess {
        Self::start_with_full(whitelist, extra_cfg, &[])
    }

    fn start_with_full(whitelist: &str, extra_cfg: &str, env: &[(&str, &str)]) -> ZkdProcess {
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(whitelist, extra_cfg, env) {
                Ok(p) => return p,
                Err(e) => last_err = e,
            }
        }
        panic!("zkd did not start: {last_err}");
    }

    fn try_start(
        whitelist: &str,
        extra_cfg: &str,
        env: &[(&str, &str)],
    ) -> Result<ZkdProcess, String> {
        let dir = unique_temp_dir();
        let data = dir.join("data");
        fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
        let port = free_port();
        let cfg = format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             {whitelist}{extra_cfg}\n",
            data.display()
        );
        let cfg_path = dir.join("zoo.cfg");
        fs::write(&cfg_path, cfg).map_err(|e| format!("write zoo.cfg: {e}"))?;
        let log = fs::File::create(dir.join("zkd.log")).map_err(|e| format!("zkd.log: {e}"))?;
        let child = match Command::new(env!("CARGO_BIN_EXE_zkd"))
            .envs(env.iter().copied())
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(format!("spawn zkd: {e}"));
            }
        };
        // From here on Drop cleans up whatever happens.
        let mut p = ZkdProcess {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("zkd exited with {status}: {}", p.log()));
            }
            if TcpStream::connect_timeout(&p.addr, Duration::from_millis(200)).is_ok() {
                // Make sure the listener is ours, not another process that won the port
                // (free_port can hand out a port another test's server, killed for a
                // restart, is about to bind again; a child still alive is not enough:
                // it may be about to exit on its failed bind).
                if let Ok(None) = p.child.try_wait() {
                    if listener_owned_by(p.child.id(), port) {
                        return Ok(p);
                    }
                    if let Ok(Some(status)) = p.child.wait_timeout_ms(2000) {
                        return Err(format!(
                            "port {port} was taken by another process; zkd exited with {status}"
                        ));
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("zkd not accepting on {}: {}", p.addr, p.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and starts it again on the
    /// same config and data directory; waits until it accepts connections again.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("zkd.log"))
            .expect("zkd.log");
        self.child = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("respawn zkd");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("zkd exited with {status} on restart: {}", self.log());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "zkd did not restart: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server and starts it again expecting it to refuse to start; returns its
    /// exit status and everything it wrote to stderr.
    pub fn kill9_and_expect_exit(&mut self) -> (std::process::ExitStatus, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err_path = self.dir.join("refused.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(&err_path).expect("refused.log"),
            ))
            .spawn()
            .expect("run zkd");
        // A server that wrongly starts must fail the test, not hang it.
        let deadline = Instant::now() + START_TIMEOUT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().expect("wait zkd");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, fs::read_to_string(&err_path).unwrap_or_default())
    }

    /// The client address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The temp directory holding zoo.cfg, data/ and zkd.log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("zkd.log")).unwrap_or_default()
    }
}

impl Drop for ZkdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on, below the kernel's ephemeral range when it can. A port picked
/// by binding port 0 comes from that range, where any outgoing connection (the servers'
/// own quorum dials, other tests' clients) may take it as its local port before the server
/// binds it: an ensemble of three servers binds nine such ports.
pub fn free_server_port() -> u16 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let low: u64 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    if low > 11_000 {
        let seed = u64::from(std::process::id())
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let x =
                (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let port = 10_000 + (x >> 33) % (low - 10_000);
            if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    free_port()
}

/// A port nobody listens on right now: bind port 0, read it, drop the listener.
/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (from /proc; true
/// where /proc cannot tell, so the check never fails a start on its own).
pub fn listener_owned_by(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let local = format!("0100007F:{port:04X}");
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address is field 1, st field 3 (0A = LISTEN), inode field 9.
        (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
    });
    let Some(inode) = inode else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == want))
}

/// `Child::wait` with a deadline.
pub trait WaitTimeout {
    fn wait_timeout_ms(&mut self, ms: u64) -> std::io::Result<Option<std::process::ExitStatus>>;
}

impl WaitTimeout for Child {
    fn wait_timeout_ms(&mut self, ms: u64) -> std::io::Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

pub fn unique_temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "zkd-test-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Sends a four-letter word and returns the whole answer ("" if the server is down).
pub fn four_letter(addr: SocketAddr, cmd: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(cmd.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// An ensemble of `zkd` processes on loopback, each with its own dataDir and myid, all
/// ports picked at run time. Dropping it kills every server and removes the directories.
pub struct ZkdEnsemble {
    pub dir: PathBuf,
    /// Per server (index = myid - 1): client address, and the child while running.
    pub clients: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
}

impl ZkdEnsemble {
    /// `voters` participants and `observers` observers; `extra_cfg` is added to every
    /// zoo.cfg.
    pub fn start(voters: usize, observers: usize, extra_cfg: &str) -> ZkdEnsemble {
        Self::start_with_tick(voters, observers, 500, extra_cfg)
    }

    /// `start` with another tickTime (session timeouts are 2 to 20 ticks).
    pub fn start_with_tick(
        voters: usize,
        observers: usize,
        tick_ms: u32,
        extra_cfg: &str,
    ) -> ZkdEnsemble {
        Self::start_some(voters, observers, tick_ms, extra_cfg, &[])
    }

    /// Writes every server's files but starts only those not in `later` (start them
    /// with `restart(i)`).
    pub fn start_some(
        voters: usize,
        observers: usize,
        tick_ms: u32,
        extra_cfg: &str,
        later: &[usize],
    ) -> ZkdEnsemble {
        let dir = unique_temp_dir();
        let n = voters + observers;
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_server_port(), free_server_port(), free_server_port()))
            .collect();
        let mut servers = String::new();
        for (i, (client, quorum, election)) in ports.iter().enumerate() {
            let role = if i >= voters { ":observer" } else { "" };
            servers.push_str(&format!(
                "server.{}=127.0.0.1:{quorum}:{election}{role};127.0.0.1:{client}\n",
                i + 1
            ));
        }
        let mut e = ZkdEnsemble {
            dir: dir.clone(),
            clients: ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p.0)))
                .collect(),
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            let sdir = dir.join(format!("s{}", i + 1));
            let data = sdir.join("data");
            fs::create_dir_all(&data).expect("create dataDir");
            fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("write myid");
            let cfg = format!(
                "tickTime={tick_ms}\ninitLimit=10\nsyncLimit=5\ndataDir={}\n\
                 4lw.commands.whitelist=*\n{servers}{extra_cfg}\n",
                data.display()
            );
            fs::write(sdir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
            if !later.contains(&i) {
                e.spawn(i);
            }
        }
        e
    }

    fn spawn(&mut self, i: usize) {
        let sdir = self.dir.join(format!("s{}", i + 1));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sdir.join("zkd.log"))
            .expect("zkd.log");
        let child = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .arg(sdir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn zkd");
        self.children[i] = Some(child);
    }

    /// SIGKILLs server `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again on its config and data.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// What `srvr` says the server's Mode is ("" when down or not serving).
    pub fn mode(&self, i: usize) -> String {
        four_letter(self.clients[i], "srvr")
            .lines()
            .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits until exactly one running server leads and every other running server
    /// follows or observes; returns the leader's index.
    pub fn wait_for_quorum(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let modes: Vec<String> = (0..self.clients.len())
                .map(|i| {
                    if self.children[i].is_some() {
                        self.mode(i)
                    } else {
                        "down".into()
                    }
                })
                .collect();
            let leaders: Vec<usize> = (0..modes.len()).filter(|i| modes[*i] == "leader").collect();
            let settled = modes
                .iter()
                .all(|m| m == "leader" || m == "follower" || m == "observer" || m == "down");
            if leaders.len() == 1 && settled {
                return leaders[0];
            }
            if Instant::now() > deadline {
                panic!(
                    "no settled quorum after {timeout:?}: modes {modes:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every server's stderr, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.clients.len())
            .map(|i| {
                let log = fs::read_to_string(self.dir.join(format!("s{}/zkd.log", i + 1)))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                format!(
                    "--- server {} ---\n{}",
                    i + 1,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ZkdEnsemble {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// path -> (data, Stat) as last acknowledged to a client.
pub type Acked = std::collections::HashMap<String, (Vec<u8>, zkd_client::Stat)>;

/// The SIGKILL-under-load check shared by the durability tests: `rounds` times, `writers`
/// sessions create and overwrite znodes under /load as fast as they can, the server is
/// killed with SIGKILL after a pseudo-random 100-500 ms (from `seed`) and restarted, and
/// every write acknowledged before the kill must be back with its data and Stat (or a
/// later version of it). Returns the number of acknowledged writes checked.
pub async fn acknowledged_writes_survive_kills(
    z: &mut ZkdProcess,
    rounds: u32,
    writers: u32,
    mut seed: u64,
) -> u64 {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use zkd_client::{Acl, Client, CreateMode};
    const TIMEOUT: Duration = Duration::from_secs(20);
    let connect =
        |addr: String| async move { Client::connect(&addr, TIMEOUT).await.expect("connect") };
    let addr = z.addr().to_string();
    let open = Acl::open_unsafe();
    connect(addr.clone())
        .await
        .create("/load", b"", &open, CreateMode::Persistent)
        .await
        .unwrap();
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let acks = Arc::new(AtomicU64::new(0));
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (addr, acked, acks, open) =
                (addr.clone(), acked.clone(), acks.clone(), open.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(c) = Client::connect(&addr, TIMEOUT).await else {
                    return;
                };
                for i in 0u32.. {
                    let path = format!("/load/w{w}-{}", i % 16);
                    let data = format!("r{round}-w{w}-i{i}").into_bytes();
                    let exists = acked.lock().unwrap().contains_key(&path);
                    let res = if exists {
                        c.set_data(&path, &data, -1).await
                    } else {
                        match c.create(&path, &data, &open, CreateMode::Persistent).await {
                            Ok(_) => c.exists(&path, false).await.map(|s| s.expect("created")),
                            Err(e) => Err(e),
                        }
                    };
                    match res {
                        Ok(stat) => {
                            acked.lock().unwrap().insert(path, (data, stat));
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        // The kill: everything from here on is unacknowledged.
                        Err(_) => return,
                    }
                }
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(100 + seed % 400)).await;
        z.kill9_and_restart();
        for t in tasks {
            let _ = t.await;
        }
        let c = connect(addr.clone()).await;
        let before = acked.lock().unwrap().clone();
        assert!(!before.is_empty(), "round {round}: nothing acknowledged");
        // Later rounds start from what the server has now.
        let mut now = Acked::new();
        for (path, (data, stat)) in &before {
            let (now_data, now_stat) = c
                .get_data(path, false)
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {path} lost: {e:?}"));
            assert!(
                now_stat.version >= stat.version,
                "round {round}: {path} went back from version {} to {}",
                stat.version,
                now_stat.version
            );
            if now_stat.version == stat.version {
                assert_eq!(&now_stat, stat, "round {round}: {path} Stat changed");
                assert_eq!(&now_data, data, "round {round}: {path} data changed");
            }
            now.insert(path.clone(), (now_data, now_stat));
        }
        *acked.lock().unwrap() = now;
    }
    acks.load(Ordering::Relaxed)
}
