//! The cluster runner: real server processes, one per network namespace.
//!
//! Owns generating zoo.cfg/myid per server, starting Apache ZooKeeper (QuorumPeerMain from
//! the Debian jars) or zkd (`zkd zoo.cfg`) with `ip netns exec` (optionally under
//! libfaketime, with a per-server clock offset file), and the process-level faults: kill -9
//! and restart, SIGSTOP/SIGCONT, clock offsets, and wiping a data directory (operator repair). Servers of a standalone run get no
//! `server.N` lines; ensembles get `server.N=ip:2888:3888;2181` (both implementations read
//! the same keys, so a zkd ensemble is the same code path once zkd serves one). Never
//! decides which fault to inject (that is `nemesis`) and never talks ZooKeeper protocol
//! except to wait until a server serves sessions.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::netns::{Net, NetError};

pub const CLIENT_PORT: u16 = 2181;

#[derive(Debug, Clone)]
pub enum ServerKind {
    /// Apache ZooKeeper from /usr/share/java (Debian package zookeeper).
    ApacheZk,
    /// zkd, the binary at this path.
    Zkd(PathBuf),
}

impl ServerKind {
    pub fn name(&self) -> &'static str {
        match self {
            ServerKind::ApacheZk => "zookeeper",
            ServerKind::Zkd(_) => "zkd",
        }
    }
}

/// Where Debian puts ZooKeeper's jars; the manifest Class-Path pulls in its dependencies.
pub const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";
pub const SLF4J_JAR: &str = "/usr/share/java/slf4j-simple.jar";

pub fn apache_zk_available() -> bool {
    Path::new(ZK_JAR).exists()
        && Path::new(SLF4J_JAR).exists()
        && Command::new("java").arg("-version").output().is_ok()
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("server {0} did not serve sessions within {1:?}; see {2}")]
    NotReady(usize, Duration, String),
}

pub struct Server {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
}

/// libfaketime's multi-threaded preload library (Debian package libfaketime).
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

pub fn faketime_available() -> bool {
    Path::new(FAKETIME_LIB).exists()
}

/// How servers are started, beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start every server under libfaketime with its own offset file (`<server>/faketime`,
    /// "+0" until `set_clock_offset`). `Some(true)` fakes CLOCK_MONOTONIC too (libfaketime's
    /// default; it then follows the faked wall clock, backwards included, which no real
    /// kernel does), `Some(false)` only the wall clock (FAKETIME_DONT_FAKE_MONOTONIC=1).
    pub faketime: Option<bool>,
    /// `snapCount` in zoo.cfg (both servers read it; default: theirs, 100000).
    pub snap_count: Option<u64>,
    /// zoo.cfg lines added to every server's config (a nemesis's server settings).
    pub extra_cfg: String,
}

pub struct Cluster {
    pub kind: ServerKind,
    pub net: Net,
    pub dir: PathBuf,
    pub servers: Vec<Server>,
    pub tick_ms: u64,
    pub opts: Options,
    keep_dir: bool,
}

impl Cluster {
    /// Makes namespaces and per-server folders under `base`, writes configs, starts every
    /// server and waits until each serves sessions (ensembles: until all do).
    pub async fn start(
        kind: ServerKind,
        n: usize,
        base: &Path,
        keep_dir: bool,
    ) -> Result<Cluster, ClusterError> {
        Self::start_with(kind, n, base, keep_dir, Options::default()).await
    }

    /// `start` with `Options`.
    pub async fn start_with(
        kind: ServerKind,
        n: usize,
        base: &Path,
        keep_dir: bool,
        opts: Options,
    ) -> Result<Cluster, ClusterError> {
        let net = Net::create(n)?;
        let dir = base.join(format!(
            "run-{}-{}",
            net.bridge.trim_start_matches(crate::netns::PREFIX),
            kind.name()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        cleanup::register_dir(&dir);
        let tick_ms = 500;
        let mut servers = Vec::new();
        for i in 0..n {
            let sdir = dir.join(format!("n{}", i + 1));
            fs::create_dir_all(sdir.join("data"))?;
            fs::write(sdir.join("data/myid"), format!("{}\n", i + 1))?;
            let mut cfg = format!(
                "tickTime={tick_ms}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={CLIENT_PORT}\nclientPortAddress={}\n\
                 maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n",
                sdir.join("data").display(),
                net.ips[i]
            );
            if let Some(sc) = opts.snap_count {
                cfg += &format!("snapCount={sc}\n");
            }
            if opts.faketime.is_some() {
                fs::write(sdir.join("faketime"), "+0\n")?;
            }
            if n > 1 {
                for j in 0..n {
                    cfg += &format!(
                        "server.{}={ip}:2888:3888;{ip}:{CLIENT_PORT}\n",
                        j + 1,
                        ip = net.ips[j]
                    );
                }
            }
            cfg += &opts.extra_cfg;
            fs::write(sdir.join("zoo.cfg"), cfg)?;
            servers.push(Server {
                dir: sdir,
                child: None,
                paused: false,
            });
        }
        let mut c = Cluster {
            kind,
            net,
            dir,
            servers,
            tick_ms,
            opts,
            keep_dir,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_ready(i, Duration::from_secs(60)).await?;
        }
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// "ip:2181" of server `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{CLIENT_PORT}", self.net.ips[i])
    }

    pub fn name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }

    fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let s = &self.servers[i];
        let ns = &self.net.namespaces[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.dir.join("server.log"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        if let Some(monotonic) = self.opts.faketime {
            // Through env(1), so only the server (not `ip`) is preloaded. libfaketime rereads
            // the offset file at most once a second (the cache duration).
            cmd.args([
                "env".to_string(),
                format!("LD_PRELOAD={FAKETIME_LIB}"),
                format!(
                    "FAKETIME_TIMESTAMP_FILE={}",
                    s.dir.join("faketime").display()
                ),
                "FAKETIME_CACHE_DURATION=1".to_string(),
                format!(
                    "FAKETIME_DONT_FAKE_MONOTONIC={}",
                    if monotonic { 0 } else { 1 }
                ),
            ]);
        }
        match &self.kind {
            ServerKind::ApacheZk => {
                cmd.args([
                    "java",
                    "-Xmx256m",
                    "-XX:+UseSerialGC",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dzookeeper.4lw.commands.whitelist=*",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                    "-cp",
                    &format!("{ZK_JAR}:{SLF4J_JAR}"),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ]);
            }
            ServerKind::Zkd(bin) => {
                cmd.arg(bin);
            }
        }
        cmd.arg(s.dir.join("zoo.cfg"));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The harness blocks SIGINT/SIGTERM for its signal thread; servers must not inherit
        // that mask, and they get their own process group so a terminal Ctrl-C reaches only
        // the harness (which then kills them itself).
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        cleanup::register_pid(child.id() as i32);
        self.servers[i].child = Some(child);
        self.servers[i].paused = false;
        Ok(())
    }

    /// Waits until server `i` opens a session and answers exists("/").
    pub async fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<(), ClusterError> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let exited = match self.servers[i].child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                break;
            }
            let opts = zkd_client::ConnectOptions::new(&self.addr(i), Duration::from_secs(4))
                .connect_timeout(Duration::from_secs(2))
                .request_timeout(Some(Duration::from_secs(2)));
            if let Ok(c) = zkd_client::Client::connect_with(opts).await {
                let ok = c.exists("/", false).await.is_ok();
                let _ = c.close().await;
                if ok {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(ClusterError::NotReady(
            i,
            limit,
            self.servers[i].dir.join("server.log").display().to_string(),
        ))
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    /// kill -9 of server `i` (no-op when already dead).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            cleanup::forget_pid(child.id() as i32);
        }
        self.servers[i].paused = false;
    }

    /// kill -9 of several servers at once: every SIGKILL is sent before any is reaped, so
    /// none of them runs on after another died.
    pub fn kill_together(&mut self, ids: &[usize]) {
        for &i in ids {
            // A stopped process dies of SIGKILL too.
            self.signal(i, libc::SIGKILL);
        }
        for &i in ids {
            self.kill(i);
        }
    }

    /// Starts server `i` again on the same data directory (no-op when running).
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        // A server that exited by itself (crashed on start-up, say) is started again too.
        let exited = match self.servers[i].child.as_mut() {
            Some(c) => c.try_wait()?.is_some(),
            None => true,
        };
        if exited {
            self.kill(i);
            self.spawn(i)?;
        }
        Ok(())
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) -> bool {
        match &self.servers[i].child {
            Some(c) => unsafe { libc::kill(c.id() as i32, sig) == 0 },
            None => false,
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    pub fn pause(&mut self, i: usize) {
        if self.signal(i, libc::SIGSTOP) {
            self.servers[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if self.signal(i, libc::SIGCONT) {
            self.servers[i].paused = false;
        }
    }

    /// Sets server `i`'s clock offset in seconds (libfaketime clusters only; else an error).
    /// Takes effect in the running process within a second, and survives restarts.
    pub fn set_clock_offset(&self, i: usize, secs: i64) -> Result<(), ClusterError> {
        if self.opts.faketime.is_none() {
            return Err(ClusterError::Io(std::io::Error::other(
                "servers were not started under libfaketime",
            )));
        }
        let dir = &self.servers[i].dir;
        // Write then rename: libfaketime must never read a half-written file.
        let tmp = dir.join("faketime.tmp");
        fs::write(&tmp, format!("{secs:+}s\n"))?;
        fs::rename(tmp, dir.join("faketime"))?;
        Ok(())
    }

    /// Waits up to `limit` for server `i` to exit by itself; its exit status if it did.
    pub async fn wait_exit(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            let st = self.servers[i].child.as_mut()?.try_wait().ok()?;
            if st.is_some() || started.elapsed() >= limit {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Operator repair: kill server `i` and empty its data directory except `myid`, so it
    /// starts empty and syncs everything from the leader. Does not restart it.
    pub fn wipe(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill(i);
        for e in fs::read_dir(self.servers[i].dir.join("data"))?.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "myid") {
                continue;
            }
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        Ok(())
    }

    /// Undoes every fault: heal the network, reset faked clocks, resume paused servers,
    /// restart dead ones.
    pub fn heal_all(&mut self) -> Result<(), ClusterError> {
        self.net.heal()?;
        if self.opts.faketime.is_some() {
            for i in 0..self.len() {
                self.set_clock_offset(i, 0)?;
            }
        }
        for i in 0..self.len() {
            self.resume(i);
            self.restart(i)?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
        self.net.destroy();
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
