//! `compare`: zkd and Apache ZooKeeper side by side, in one run, on the same disk and
//! settings, with the same load generator.
//!
//! For each repeat and each server (the order alternates between repeats, so drift of a
//! noisy machine does not always favour the same server):
//! 1. a fresh server on a fresh data directory (fsync on, snapCount default, 4lw on),
//!    started under `taskset -c SERVER_CPU` when `--server-cpu` is given; run this
//!    command itself under `taskset -c CLIENT_CPU` (benches/compare.sh does) so client and
//!    server do not fight blindly over the same core;
//! 2. the throughput matrix: create, set, get, exists, mixed, multi with `--sessions`
//!    sessions × `--pipeline` requests in flight (closed loop), then watch fan-out, session
//!    storm and a single-session synchronous create; each with the server's CPU time per
//!    op (utime+stime from /proc/PID/stat over the measured window);
//! 3. the large tree: `--znodes` znodes of 100 B, then the server's VmRSS, a `kill -9`,
//!    and the time from respawn until a client reads the last znode created (restart to
//!    serving); then the size of the newest snapshot file.
//!
//! Floors measured in the same run: one fdatasync of 512 B (the txn log's pattern) on
//! `--dir`, a loopback TCP round trip to an echo thread pinned to the server's CPU, and
//! one watch round's messages and fdatasync done by a single thread there (fanout.rs).
//!
//! At the end: medians over the repeats and a zkd/ZooKeeper ratio table with the targets.
//! Only standalone servers for now; `--ensemble 3` is the hook for ZAB ensembles (refused
//! until zkd has them).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zkd_client::{Acl, Client, ConnectOptions, CreateMode};

use crate::fanout;
use crate::fsync::{self, FsyncArgs};
use crate::load::{self, LoadArgs, LoadResult, Workload};
use crate::server::{free_port, proc_status_kb, ScratchDir};
use crate::stats;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Zkd,
    Zookeeper,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Zkd => "zkd",
            Kind::Zookeeper => "zookeeper",
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Small tree, short runs, one repeat: a couple of minutes.
    Quick,
    /// 1M znodes, 10 s runs, 3 repeats.
    Full,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// The zkd binary (release build).
    #[arg(long)]
    pub zkd: PathBuf,
    #[arg(long, value_enum, default_value_t = Mode::Quick)]
    pub mode: Mode,
    /// Servers to run, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Zkd, Kind::Zookeeper])]
    pub servers: Vec<Kind>,
    /// Repeats (default: 1 quick, 3 full).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Seconds measured per workload (default: 3 quick, 10 full).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of warm-up per workload (default: 1 quick, 3 full).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Znodes of the large tree (default: 100000 quick, 1000000 full).
    #[arg(long)]
    pub znodes: Option<usize>,
    /// Sessions of the throughput matrix.
    #[arg(long, default_value_t = 64)]
    pub sessions: usize,
    /// Requests in flight per session in the throughput matrix.
    #[arg(long, default_value_t = 4)]
    pub pipeline: usize,
    /// Watching sessions of the watch fan-out.
    #[arg(long, default_value_t = 64)]
    pub watchers: usize,
    /// Concurrent open/create/close loops of the session storm.
    #[arg(long, default_value_t = 8)]
    pub storm_sessions: usize,
    /// Workloads of the matrix (comma separated); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Skip the large-tree phase (RSS, snapshot, restart).
    #[arg(long)]
    pub no_tree: bool,
    /// CPU to pin the servers to (taskset -c); none = unpinned.
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// Where data directories and the fsync scratch file go (one disk for all).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Directory for results.jsonl and the latency plots (created).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Java binary for ZooKeeper.
    #[arg(long, default_value = "java")]
    pub java: String,
    /// Class path of Apache ZooKeeper (Debian's jars) plus an slf4j binding.
    #[arg(
        long,
        default_value = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
    )]
    pub zk_classpath: String,
    /// ZooKeeper's JVM heap (-Xmx); 1M znodes of 100 B need about 1 GB.
    #[arg(long, default_value = "2g")]
    pub zk_heap: String,
    /// Servers per ensemble: only 1 (standalone) until zkd has ZAB.
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
}

/// A server process started for the comparison; SIGKILLed and reaped on drop.
struct Srv {
    kind: Kind,
    child: Child,
    port: u16,
    work: PathBuf,
}

impl Srv {
    /// Writes a zoo.cfg for `kind` in `work` (data in `work/data`) and starts the server;
    /// `port` None picks a free one.
    fn spawn(
        args: &CompareArgs,
        kind: Kind,
        work: &Path,
        port: Option<u16>,
    ) -> Result<Srv, String> {
        let io = |e: std::io::Error| format!("{}: {e}", work.display());
        std::fs::create_dir_all(work.join("data")).map_err(io)?;
        let port = match port {
            Some(p) => p,
            None => free_port().map_err(io)?,
        };
        // The same settings for both: fsync on (the default), snapCount default, 4lw.
        let mut cfg = format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n4lw.commands.whitelist=*\n",
            work.join("data").display()
        );
        if kind == Kind::Zookeeper {
            cfg.push_str("admin.enableServer=false\n");
        }
        let cfg_path = work.join("zoo.cfg");
        std::fs::write(&cfg_path, cfg).map_err(io)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join("server.log"))
            .map_err(io)?;
        let mut argv: Vec<String> = Vec::new();
        if let Some(cpu) = args.server_cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        match kind {
            Kind::Zkd => {
                argv.push(args.zkd.display().to_string());
                argv.push(cfg_path.display().to_string());
            }
            Kind::Zookeeper => {
                argv.extend([
                    args.java.clone(),
                    format!("-Xmx{}", args.zk_heap),
                    "-Dzookeeper.admin.enableServer=false".into(),
                    "-Dzookeeper.4lw.commands.whitelist=*".into(),
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn".into(),
                    "-cp".into(),
                    args.zk_classpath.clone(),
                    "org.apache.zookeeper.server.ZooKeeperServerMain".into(),
                    cfg_path.display().to_string(),
                ]);
            }
        }
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {argv:?}: {e}"))?;
        Ok(Srv {
            kind,
            child,
            port,
            work: work.to_path_buf(),
        })
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's PID (taskset execs the server, so it is the child's).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.work.join("server.log")).unwrap_or_default();
        let l: Vec<&str> = s.lines().collect();
        l[l.len().saturating_sub(15)..].join("\n")
    }

    /// Retries a session (and, if given, getData of `path`) until it works.
    async fn wait_serving(&mut self, limit: Duration, path: Option<&str>) -> Result<(), String> {
        let until = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({st}):\n{}",
                    self.kind.name(),
                    self.log_tail()
                ));
            }
            if Instant::now() >= until {
                return Err(format!("{} not serving within {limit:?}", self.kind.name()));
            }
            // A short handshake deadline: a server still loading may hold (or drop) the
            // connection; retrying often keeps the measured restart time exact to ~0.1 s
            // at worst, and to the ms when the server simply refuses connections.
            let opts = ConnectOptions::new(&self.addr(), Duration::from_secs(30))
                .connect_timeout(Duration::from_millis(100));
            if let Ok(c) = Client::connect_with(opts).await {
                let ok = match path {
                    Some(p) => c.get_data(p, false).await.is_ok(),
                    None => true,
                };
                let _ = c.close().await;
                if ok {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Size and name of the newest snapshot file in the data directory.
    fn newest_snapshot(&self) -> Option<(u64, String)> {
        let dirs = [
            self.work.join("data/zkd-v1"),
            self.work.join("data/version-2"),
        ];
        let mut best: Option<(i64, u64, String)> = None;
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(hex) = name.strip_prefix("snapshot.") else {
                    continue;
                };
                let Ok(zxid) = i64::from_str_radix(hex, 16) else {
                    continue;
                };
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if best.as_ref().is_none_or(|b| zxid > b.0) {
                    best = Some((zxid, len, name));
                }
            }
        }
        best.map(|b| (b.1, b.2))
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; pid 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Loopback TCP round trip (4 bytes each way) to an echo thread pinned to `cpu`: p50 us,
/// and the echo thread's CPU time per round trip (one receive and one send, the floor
/// under a server's CPU per request).
fn loopback_rtt_us(cpu: Option<usize>, n: usize) -> Result<(f64, f64), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let warmup = n / 10;
    let echo = std::thread::spawn(move || {
        if let Some(c) = cpu {
            pin_thread(c);
        }
        let mut cpu_measured = (0.0, 0usize);
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 4];
            let mut served = 0usize;
            let mut since = 0.0;
            while s.read_exact(&mut b).is_ok() {
                if served == warmup {
                    since = fsync::thread_cpu_us();
                }
                if s.write_all(&b).is_err() {
                    break;
                }
                served += 1;
            }
            if served > warmup {
                cpu_measured = (fsync::thread_cpu_us() - since, served - warmup);
            }
        }
        cpu_measured
    });
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut h = stats::new_hist();
    let mut b = [0u8; 4];
    for i in 0..n + warmup {
        let t = Instant::now();
        s.write_all(&b).map_err(|e| e.to_string())?;
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        if i >= warmup {
            stats::record(&mut h, t.elapsed());
        }
    }
    drop(s);
    let (cpu_us, served) = echo
        .join()
        .map_err(|_| "echo thread panicked".to_string())?;
    Ok((stats::q_us(&h, 0.5), cpu_us / served.max(1) as f64))
}

/// Large-tree figures of one run.
#[derive(Debug, Clone, Default)]
struct TreeRun {
    populate_ops_s: f64,
    rss: u64,
    snapshot_bytes: u64,
    snapshot_name: String,
    restart_s: f64,
    rss_after_restart: u64,
}

/// Medians are taken over these, per (server, metric).
type Samples = BTreeMap<(Kind, String), Vec<f64>>;

fn push(s: &mut Samples, k: Kind, metric: &str, v: f64) {
    s.entry((k, metric.to_string())).or_default().push(v);
}

async fn matrix(
    args: &CompareArgs,
    kind: Kind,
    rep: usize,
    scratch: &Path,
    samples: &mut Samples,
    jsonl: &mut Vec<String>,
) -> Result<(), String> {
    let (duration, warmup) = durations(args);
    let work = scratch.join(format!("{}-r{rep}", kind.name()));
    let mut srv = Srv::spawn(args, kind, &work, None)?;
    srv.wait_serving(Duration::from_secs(120), None).await?;
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        vec![
            Workload::Create,
            Workload::Set,
            Workload::Get,
            Workload::Exists,
            Workload::Mixed,
            Workload::Multi,
            Workload::Watch,
            Workload::Storm,
        ]
    } else {
        args.workloads.clone()
    };
    let mut runs: Vec<(String, LoadArgs)> = Vec::new();
    for w in workloads {
        let (s, p) = match w {
            Workload::Watch => (args.watchers, 1),
            Workload::Storm => (args.storm_sessions, 1),
            _ => (args.sessions, args.pipeline),
        };
        runs.push((
            w.name().to_string(),
            LoadArgs::closed(srv.addr(), w, s, p, duration, warmup),
        ));
    }
    runs.push((
        "sync-create".into(),
        LoadArgs::closed(srv.addr(), Workload::Create, 1, 1, duration, warmup),
    ));
    for (name, mut la) in runs {
        la.server_pid = Some(srv.pid());
        la.label = kind.name().into();
        if let Some(out) = &args.out {
            la.plot = Some(out.join(format!("{}-{name}-r{rep}.png", kind.name())));
        }
        let r: LoadResult = load::run(&la)
            .await
            .map_err(|e| format!("{} {name}: {e}\n{}", kind.name(), srv.log_tail()))?;
        println!("{}", r.table());
        jsonl.push(r.json());
        push(samples, kind, &format!("{name} ops/s"), r.ops_per_s);
        push(samples, kind, &format!("{name} p50 us"), r.p50_us());
        push(samples, kind, &format!("{name} p99 us"), r.p99_us());
        push(samples, kind, &format!("{name} p99.9 us"), r.p999_us());
        push(samples, kind, &format!("{name} errors"), r.errors as f64);
        if let Some(c) = r.cpu_us_per_op() {
            push(samples, kind, &format!("{name} cpu us/op"), c);
        }
    }
    srv.kill();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn durations(args: &CompareArgs) -> (f64, f64) {
    let quick = args.mode == Mode::Quick;
    (
        args.duration.unwrap_or(if quick { 3.0 } else { 10.0 }),
        args.warmup.unwrap_or(if quick { 1.0 } else { 3.0 }),
    )
}

async fn tree(
    args: &CompareArgs,
    kind: Kind,
    rep: usize,
    scratch: &Path,
) -> Result<(TreeRun, String), String> {
    let n = args.znodes.unwrap_or(if args.mode == Mode::Quick {
        100_000
    } else {
        1_000_000
    });
    let work = scratch.join(format!("{}-tree-r{rep}", kind.name()));
    let mut srv = Srv::spawn(args, kind, &work, None)?;
    srv.wait_serving(Duration::from_secs(120), None).await?;
    let mut la = LoadArgs::closed(srv.addr(), Workload::Populate, 16, 8, 0.0, 0.0);
    la.znodes = n;
    la.server_pid = Some(srv.pid());
    la.label = kind.name().into();
    let r = load::run(&la)
        .await
        .map_err(|e| format!("{} populate: {e}\n{}", kind.name(), srv.log_tail()))?;
    println!("{}", r.table());
    if r.errors > 0 {
        return Err(format!(
            "{} populate: {} errors: {:?}",
            kind.name(),
            r.errors,
            r.first_error
        ));
    }
    // A marker written last: restart is over when it can be read.
    let marker = "/zkd-bench-marker";
    {
        let c = Client::connect(&srv.addr(), Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let _ = c.delete(marker, -1).await;
        c.create(marker, b"m", &Acl::open_unsafe(), CreateMode::Persistent)
            .await
            .map_err(|e| format!("marker: {e}"))?;
        let _ = c.close().await;
    }
    // Settle a moment (JVM GC, background snapshot), then RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = proc_status_kb(srv.pid(), "VmRSS").unwrap_or(0);
    let port = srv.port;
    srv.kill();
    drop(srv);
    let t0 = Instant::now();
    let mut srv = Srv::spawn(args, kind, &work, Some(port))?;
    srv.wait_serving(Duration::from_secs(600), Some(marker))
        .await?;
    let restart_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_restart = proc_status_kb(srv.pid(), "VmRSS").unwrap_or(0);
    let (snapshot_bytes, snapshot_name) = srv.newest_snapshot().unwrap_or((0, "none".into()));
    srv.kill();
    let _ = std::fs::remove_dir_all(&work);
    let t = TreeRun {
        populate_ops_s: r.ops_per_s,
        rss,
        snapshot_bytes,
        snapshot_name,
        restart_s,
        rss_after_restart,
    };
    let line = format!(
        "tree {:<9} znodes={n} populate={:.0}/s rss={} rss_after_restart={} restart={:.2}s newest_snapshot={} ({})",
        kind.name(),
        t.populate_ops_s,
        stats::mib(t.rss),
        stats::mib(t.rss_after_restart),
        t.restart_s,
        stats::mib(t.snapshot_bytes),
        t.snapshot_name
    );
    let json = format!(
        "{{\"bench\":\"tree\",\"label\":\"{}\",\"znodes\":{n},\"populate_ops_per_s\":{:.1},\"rss\":{},\"rss_after_restart\":{},\"restart_s\":{:.3},\"snapshot_bytes\":{},\"snapshot\":\"{}\"}}",
        kind.name(),
        t.populate_ops_s,
        t.rss,
        t.rss_after_restart,
        t.restart_s,
        t.snapshot_bytes,
        t.snapshot_name
    );
    println!("{line}");
    Ok((t, json))
}

pub async fn run(args: &CompareArgs) -> Result<(), String> {
    if args.ensemble != 1 {
        return Err(format!(
            "--ensemble {}: only standalone (1) is supported until zkd has ZAB; \
             the hook is Srv::spawn, which would start N servers with server.N lines",
            args.ensemble
        ));
    }
    let repeat = args
        .repeat
        .unwrap_or(if args.mode == Mode::Quick { 1 } else { 3 })
        .max(1);
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let scratch = ScratchDir::new(&args.dir, "zkd-compare").map_err(|e| e.to_string())?;
    let mut samples: Samples = BTreeMap::new();
    let mut jsonl = Vec::new();
    let mut floors = Floors::default();
    let started = Instant::now();
    for rep in 0..repeat {
        let fs = fsync::measure(&FsyncArgs {
            dir: scratch.0.clone(),
            count: 1000,
            size: 512,
            batch: 1024,
            batched_count: 0,
        })
        .map_err(|e| format!("fsync floor: {e}"))?;
        let (rtt, echo_cpu) = loopback_rtt_us(args.server_cpu, 5000)?;
        println!(
            "floor r{rep}: fdatasync(512 B) p50={} p99={} CPU {:.1}us; loopback RTT p50={}, echo CPU {:.1}us per round trip",
            stats::fmt_us(stats::q_us(&fs.hist, 0.5)),
            stats::fmt_us(stats::q_us(&fs.hist, 0.99)),
            fs.single_cpu_us,
            stats::fmt_us(rtt),
            echo_cpu
        );
        floors.fsync_p50.push(stats::q_us(&fs.hist, 0.5));
        floors.rtt_p50.push(rtt);
        floors.fsync_p99.push(stats::q_us(&fs.hist, 0.99));
        floors.cpu.push(fs.single_cpu_us + echo_cpu);
        let wf = fanout::watch_round_floor(args.server_cpu, args.watchers, 500, &scratch.0)
            .map_err(|e| format!("watch floor: {e}"))?;
        println!(
            "floor r{rep}: watch round ({} watchers; one thread, level-triggered epoll, write+fdatasync inline) CPU {:.1}us, p50={} p99={}",
            args.watchers,
            wf.cpu_us_per_round,
            stats::fmt_us(wf.p50_us),
            stats::fmt_us(wf.p99_us)
        );
        floors.watch_cpu.push(wf.cpu_us_per_round);
        floors.watch_p99.push(wf.p99_us);
        let mut order = args.servers.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        for &k in &order {
            matrix(args, k, rep, &scratch.0, &mut samples, &mut jsonl).await?;
        }
        if !args.no_tree {
            for &k in &order {
                let (t, json) = tree(args, k, rep, &scratch.0).await?;
                jsonl.push(json);
                push(&mut samples, k, "tree populate ops/s", t.populate_ops_s);
                push(&mut samples, k, "tree RSS MiB", t.rss as f64 / 1048576.0);
                push(
                    &mut samples,
                    k,
                    "tree RSS after restart MiB",
                    t.rss_after_restart as f64 / 1048576.0,
                );
                push(
                    &mut samples,
                    k,
                    "tree snapshot MiB",
                    t.snapshot_bytes as f64 / 1048576.0,
                );
                push(&mut samples, k, "tree restart s", t.restart_s);
            }
        }
    }
    if let Some(out) = &args.out {
        let p = out.join("results.jsonl");
        std::fs::write(&p, jsonl.join("\n") + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!();
    println!(
        "floors (median of {repeat}): fdatasync p50 {} + loopback RTT p50 {} = {}",
        stats::fmt_us(stats::median(&floors.fsync_p50)),
        stats::fmt_us(stats::median(&floors.rtt_p50)),
        stats::fmt_us(floors.latency_p50())
    );
    println!(
        "floors for one synchronous write (median of {repeat}): latency p99 >= fdatasync p99 {} + RTT p50 {} = {}; server CPU >= write+fdatasync + one request/reply = {:.1}us",
        stats::fmt_us(stats::median(&floors.fsync_p99)),
        stats::fmt_us(stats::median(&floors.rtt_p50)),
        stats::fmt_us(floors.latency_p99()),
        floors.cpu()
    );
    println!("{}", ratio_table(&samples, repeat, &floors));
    println!("compare took {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Target for a metric: (comparison, factor), zkd/ZooKeeper must be `>=`/`<=` factor.
fn target(metric: &str) -> Option<(&'static str, f64)> {
    let thr = [
        "create ops/s",
        "set ops/s",
        "get ops/s",
        "exists ops/s",
        "mixed ops/s",
        "multi ops/s",
    ];
    if thr.contains(&metric) {
        return Some((">=", 3.0));
    }
    if metric.ends_with("p99 us") {
        return Some(("<=", 0.5));
    }
    if metric.ends_with("cpu us/op") {
        return Some(("<=", 1.0 / 3.0));
    }
    if metric == "tree RSS MiB" || metric == "tree restart s" {
        return Some(("<=", 0.2));
    }
    None
}

/// What one synchronous write cannot go below on this machine, measured in the same run:
/// the sync-create targets are judged against these too.
/// Each field holds one value per repeat; the methods give medians.
#[derive(Default)]
struct Floors {
    fsync_p50: Vec<f64>,
    fsync_p99: Vec<f64>,
    rtt_p50: Vec<f64>,
    /// CPU of a write + fdatasync plus the echo side of one round trip.
    cpu: Vec<f64>,
    /// CPU of one watch round's messages and fdatasync, done by one thread (fanout.rs).
    watch_cpu: Vec<f64>,
    /// p99 of that round's latency.
    watch_p99: Vec<f64>,
}

impl Floors {
    /// fdatasync p50 + loopback RTT p50.
    fn latency_p50(&self) -> f64 {
        stats::median(&self.fsync_p50) + stats::median(&self.rtt_p50)
    }

    /// fdatasync p99 + loopback RTT p50.
    fn latency_p99(&self) -> f64 {
        stats::median(&self.fsync_p99) + stats::median(&self.rtt_p50)
    }

    fn cpu(&self) -> f64 {
        stats::median(&self.cpu)
    }
}

fn ratio_table(s: &Samples, repeat: usize, floors: &Floors) -> String {
    let floor_us = floors.latency_p50();
    let mut metrics: Vec<&String> = s.keys().map(|(_, m)| m).collect();
    metrics.sort();
    metrics.dedup();
    let mut out = format!(
        "| metric (median of {repeat}) | zkd | zookeeper | zkd/zookeeper | target | holds |\n|---|---:|---:|---:|---|---|\n"
    );
    for m in metrics {
        let z = s.get(&(Kind::Zkd, m.clone())).map(|v| stats::median(v));
        let k = s
            .get(&(Kind::Zookeeper, m.clone()))
            .map(|v| stats::median(v));
        let ratio = match (z, k) {
            (Some(z), Some(k)) if k != 0.0 => Some(z / k),
            _ => None,
        };
        let (tgt, holds) = match (target(m), ratio) {
            (Some((op, f)), Some(r)) => (
                format!("{op} {f:.2}"),
                if (op == ">=" && r >= f) || (op == "<=" && r <= f) {
                    "yes"
                } else {
                    "NO"
                },
            ),
            (Some((op, f)), None) => (format!("{op} {f:.2}"), "-"),
            _ => (String::new(), ""),
        };
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        out.push_str(&format!(
            "| {m} | {} | {} | {} | {tgt} | {holds} |\n",
            f(z),
            f(k),
            ratio.map_or("-".into(), |r| format!("{r:.2}"))
        ));
    }
    if let Some(v) = s.get(&(Kind::Zkd, "sync-create p50 us".to_string())) {
        let p = stats::median(v);
        out.push_str(&format!(
            "| zkd sync-create p50 / (loopback RTT + fdatasync) | {p:.1} us / {floor_us:.1} us | | {:.2} | <= 1.50 | {} |\n",
            p / floor_us,
            if p / floor_us <= 1.5 { "yes" } else { "NO" }
        ));
    }
    // Whether the sync-create targets are reachable at all here: the floors against
    // ZooKeeper's figures (a floor above the target's bound means no server can hold it
    // on this machine).
    let zk = |m: &str| {
        s.get(&(Kind::Zookeeper, m.to_string()))
            .map(|v| stats::median(v))
    };
    let rows = [
        (
            "sync-create p99 us",
            "fdatasync p99 + RTT p50 vs ZooKeeper's sync-create p99",
            floors.latency_p99(),
            0.5,
        ),
        (
            "sync-create cpu us/op",
            "CPU of write+fdatasync + one loopback request/reply vs ZooKeeper's sync-create CPU/op",
            floors.cpu(),
            1.0 / 3.0,
        ),
        (
            "watch cpu us/op",
            "CPU of one watch round's sends, receives and fdatasync, by one thread, vs ZooKeeper's watch CPU/op",
            stats::median(&floors.watch_cpu),
            1.0 / 3.0,
        ),
        (
            "watch p99 us",
            "that one-thread watch round's p99 vs ZooKeeper's watch p99",
            stats::median(&floors.watch_p99),
            0.5,
        ),
    ];
    for (metric, what, floor, bound) in rows {
        if let Some(k) = zk(metric) {
            out.push_str(&format!(
                "| floor: {what} | {floor:.1} us | {k:.1} | {:.2} | (target <= {bound:.2} is reachable only if this is) | {} |\n",
                floor / k,
                if floor / k <= bound { "reachable" } else { "NO: below the floor" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_table_judges_targets_and_floors() {
        let mut s: Samples = BTreeMap::new();
        for (m, z, k) in [
            ("watch cpu us/op", 1200.0, 3000.0),
            ("watch p99 us", 1000.0, 4000.0),
            ("sync-create cpu us/op", 120.0, 250.0),
            ("sync-create p99 us", 480.0, 600.0),
            ("sync-create p50 us", 260.0, 300.0),
        ] {
            push(&mut s, Kind::Zkd, m, z);
            push(&mut s, Kind::Zookeeper, m, k);
        }
        let floors = Floors {
            fsync_p50: vec![150.0],
            fsync_p99: vec![310.0],
            rtt_p50: vec![60.0],
            cpu: vec![80.0],
            watch_cpu: vec![1100.0],
            watch_p99: vec![900.0],
        };
        let t = ratio_table(&s, 1, &floors);
        let row = |prefix: &str| {
            t.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no row {prefix} in\n{t}"))
                .to_string()
        };
        assert!(row("| watch cpu us/op |").ends_with("| 0.40 | <= 0.33 | NO |"));
        assert!(row("| watch p99 us |").ends_with("| 0.25 | <= 0.50 | yes |"));
        assert!(row("| zkd sync-create p50 /").contains("| 1.24 | <= 1.50 | yes |"));
        // Floors: 370/600 = 0.62 (p99), 80/250 = 0.32 (CPU), 1100/3000 = 0.37, 900/4000 = 0.23.
        let p99 = row("| floor: fdatasync p99 + RTT p50");
        assert!(
            p99.contains("| 370.0 us | 600.0 | 0.62 | (target <= 0.50"),
            "{p99}"
        );
        assert!(p99.ends_with("| NO: below the floor |"), "{p99}");
        assert!(row("| floor: CPU of write+fdatasync")
            .ends_with("| 0.32 | (target <= 0.33 is reachable only if this is) | reachable |"));
        assert!(row("| floor: CPU of one watch round").ends_with(
            "| 0.37 | (target <= 0.33 is reachable only if this is) | NO: below the floor |"
        ));
        assert!(row("| floor: that one-thread watch round's p99")
            .ends_with("| 0.23 | (target <= 0.50 is reachable only if this is) | reachable |"));
    }
}
