//! `load`: drives a ZooKeeper-compatible server through its wire protocol (so it works the
//! same against zkd and Apache ZooKeeper) and reports throughput and
//! latency percentiles.
//!
//! Sessions are separate TCP connections. Closed loop (default): each session keeps
//! `pipeline` requests pipelined on its connection and sends the next request when a
//! reply arrives; it is a lean raw-protocol loop (lean.rs: one read and one write per
//! batch of replies, no per-op allocation), so that the single-core load generator is
//! not what limits the server. The open loop, watch and storm use zkd-client. Open loop (`--rate`): each session's dispatcher sends at
//! fixed intended times (rate / sessions per second, sessions phase-shifted), whether or
//! not earlier replies came back, and latency runs from the *intended* send time, so a
//! stalled server is charged for every request it delayed (no coordinated omission); at
//! most `pipeline` requests per session are in flight (0 = unbounded), and time spent
//! waiting for that cap counts as latency too.
//!
//! Accounting, identical in both modes: the latency histogram holds every request whose
//! (intended) start lies in the measured window [warmup, warmup + duration), including
//! replies that arrive after it; ops/s counts successful replies that arrive inside the
//! window. Errors are requests of the window that failed.
//!
//! Every znode lives under a root unique to the run (`/zkd-bench-<pid>-<ms>`): `create`
//! makes fresh children; `set`, `get` and `mixed` first create `keys` znodes of `size`
//! bytes and hit them uniformly at random. Afterwards everything is deleted with `multi`
//! batches (unless `--keep`).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use zkd_client::{op, Acl, Client, CreateMode, Error, ErrorCode, MultiResult};

use crate::stats::{self, Hist};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// create of new znodes (a write txn each).
    Create,
    /// setData on existing znodes (a write txn each).
    Set,
    /// getData on existing znodes (reads).
    Get,
    /// exists on existing znodes (reads, no data in the reply).
    Exists,
    /// getData with --read-pct probability, else setData.
    Mixed,
    /// multi of --multi-ops setData on existing znodes (one write txn each).
    Multi,
    /// watch fan-out: every session sets a watch on one znode (exists), a separate writer
    /// session changes it; latency = setData sent until every session got its event.
    Watch,
    /// session storm: connect, create one ephemeral, close; latency = the whole cycle.
    Storm,
    /// large tree: create --znodes znodes of --size bytes under 1000 parents as fast as
    /// the pipeline allows, then stop (kept; no cleanup); pair with --server-pid for RSS.
    Populate,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Exists => "exists",
            Workload::Mixed => "mixed",
            Workload::Multi => "multi",
            Workload::Watch => "watch",
            Workload::Storm => "storm",
            Workload::Populate => "populate",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// host:port of the server.
    #[arg(long)]
    pub server: String,
    #[arg(long, value_enum, default_value_t = Workload::Create)]
    pub workload: Workload,
    /// Concurrent sessions (TCP connections).
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// Requests in flight per session (closed loop); with --rate, the cap per session
    /// (0 = unbounded).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Bytes of data per create/set (and of the znodes get reads).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Open loop: total intended requests per second over all sessions.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Share of reads in the mixed workload, in percent.
    #[arg(long, default_value_t = 80)]
    pub read_pct: u32,
    /// Znodes the set/get/mixed workloads spread over.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Session timeout requested, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub session_timeout_ms: u64,
    /// Leave the run's znodes in place (no cleanup).
    #[arg(long)]
    pub keep: bool,
    /// setData ops per multi (multi workload).
    #[arg(long, default_value_t = 4)]
    pub multi_ops: usize,
    /// Znodes the populate workload creates.
    #[arg(long, default_value_t = 100_000)]
    pub znodes: usize,
    /// PID of the server process (on this machine): its CPU time (utime+stime from
    /// /proc/PID/stat) over the measured window and its RSS afterwards are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// More server PIDs whose CPU time over the window is added to --server-pid's
    /// (comma-separated; e.g. the other members of an ensemble). RSS stays --server-pid's.
    #[arg(long, value_delimiter = ',')]
    pub also_cpu_pid: Vec<u32>,
    /// Write a latency-over-time plot (PNG) here.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// A name for the server in the output (e.g. zkd, zookeeper).
    #[arg(long, default_value = "")]
    pub label: String,
}

impl LoadArgs {
    /// The settings `group-commit` uses: create, 100 B, pipeline 1, closed loop.
    pub fn for_group_commit(server: String, sessions: usize, duration: f64, warmup: f64) -> Self {
        LoadArgs {
            server,
            workload: Workload::Create,
            sessions,
            pipeline: 1,
            size: 100,
            duration,
            warmup,
            rate: None,
            read_pct: 80,
            keys: 1000,
            session_timeout_ms: 30_000,
            keep: false,
            multi_ops: 4,
            znodes: 100_000,
            server_pid: None,
            also_cpu_pid: Vec::new(),
            plot: None,
            label: String::new(),
        }
    }

    /// Closed-loop settings for `workload` against `server`.
    pub fn closed(
        server: String,
        workload: Workload,
        sessions: usize,
        pipeline: usize,
        duration: f64,
        warmup: f64,
    ) -> Self {
        let mut a = Self::for_group_commit(server, sessions, duration, warmup);
        a.workload = workload;
        a.pipeline = pipeline;
        a
    }
}

#[derive(Debug, Clone)]
pub struct LoadResult {
    pub args: LoadArgs,
    /// Successful replies inside the window.
    pub ops: u64,
    pub ops_per_s: f64,
    pub hist: Hist,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Znodes the run created (create workload) and whether cleanup removed them.
    pub created: usize,
    pub cleanup: String,
    /// Server CPU seconds (utime+stime) over the measured window, with --server-pid.
    pub server_cpu_s: Option<f64>,
    /// Server VmRSS in bytes at the end of the run (before cleanup), with --server-pid.
    pub server_rss: Option<u64>,
    /// (ms since the start of the window, latency us) of every measured request.
    pub samples: Vec<(u32, u32)>,
    /// Seconds the measured window lasted.
    pub window_s: f64,
}

impl LoadResult {
    pub fn p50_us(&self) -> f64 {
        stats::q_us(&self.hist, 0.5)
    }
    pub fn p99_us(&self) -> f64 {
        stats::q_us(&self.hist, 0.99)
    }
    pub fn p999_us(&self) -> f64 {
        stats::q_us(&self.hist, 0.999)
    }

    /// Server CPU microseconds per successful op in the window.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.ops > 0).then(|| cpu * 1e6 / self.ops as f64)
    }

    fn mode(&self) -> String {
        match self.args.rate {
            None => "closed".into(),
            Some(r) => format!("open@{r:.0}/s"),
        }
    }

    pub fn table(&self) -> String {
        format!(
            "load {:<8} {:<8} {:<12} sessions={:<3} pipeline={:<3} size={:<5} ops/s={:>9.0}  p50={:>7} p99={:>7} p99.9={:>7} max={:>7} errors={}{}",
            self.args.label,
            self.args.workload.name(),
            self.mode(),
            self.args.sessions,
            self.args.pipeline,
            self.args.size,
            self.ops_per_s,
            stats::fmt_us(self.p50_us()),
            stats::fmt_us(self.p99_us()),
            stats::fmt_us(self.p999_us()),
            stats::fmt_us(stats::max_us(&self.hist)),
            self.errors,
            match (self.cpu_us_per_op(), self.server_rss) {
                (Some(c), Some(r)) => format!(" server_cpu/op={c:.1}us rss={}", stats::mib(r)),
                (None, Some(r)) => format!(" rss={}", stats::mib(r)),
                _ => String::new(),
            },
        )
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"load\",\"label\":\"{}\",\"server\":\"{}\",\"workload\":\"{}\",\"mode\":\"{}\",\"sessions\":{},\"pipeline\":{},\
             \"size\":{},\"duration_s\":{},\"warmup_s\":{},\"rate\":{},\"ops\":{},\"ops_per_s\":{:.1},\
             \"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"mean_us\":{:.1},\
             \"errors\":{},\"created\":{},\"cleanup\":\"{}\",\"server_cpu_s\":{},\"server_cpu_us_per_op\":{},\"server_rss\":{}}}",
            self.args.label,
            self.args.server,
            self.args.workload.name(),
            self.mode(),
            self.args.sessions,
            self.args.pipeline,
            self.args.size,
            self.args.duration,
            self.args.warmup,
            self.args
                .rate
                .map_or("null".to_string(), |r| format!("{r:.1}")),
            self.ops,
            self.ops_per_s,
            self.p50_us(),
            self.p99_us(),
            self.p999_us(),
            stats::max_us(&self.hist),
            if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean() / 1000.0
            },
            self.errors,
            self.created,
            self.cleanup.replace('"', "'"),
            opt_json(self.server_cpu_s),
            opt_json(self.cpu_us_per_op()),
            self.server_rss.map_or("null".into(), |r| r.to_string()),
        )
    }
}

fn opt_json(v: Option<f64>) -> String {
    v.map_or("null".into(), |v| format!("{v:.3}"))
}

/// One request to send.
enum Op {
    Create(String),
    Set(String),
    Get(String),
    Exists(String),
    Multi(Vec<String>),
}

/// Picks the requests of one worker (or one open-loop session).
struct OpGen {
    workload: Workload,
    root: Arc<str>,
    tag: String,
    keys: usize,
    read_pct: u32,
    multi_ops: usize,
    rng: u64,
}

impl OpGen {
    fn new(args: &LoadArgs, root: &Arc<str>, session: usize, worker: usize) -> OpGen {
        OpGen {
            workload: args.workload,
            root: root.clone(),
            tag: format!("c{session}-{worker}-"),
            keys: args.keys.max(1),
            read_pct: args.read_pct.min(100),
            multi_ops: args.multi_ops.max(1),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (((session as u64) << 32) | (worker as u64 + 1)),
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn key(&mut self) -> String {
        let k = self.rand() % self.keys as u64;
        format!("{}/k{k}", self.root)
    }

    fn next(&mut self, seq: u64) -> Op {
        match self.workload {
            Workload::Create | Workload::Storm | Workload::Watch => {
                Op::Create(format!("{}/{}{seq}", self.root, self.tag))
            }
            Workload::Populate => Op::Create(format!(
                "{}/p{:03}/{}{seq}",
                self.root,
                seq % 1000,
                self.tag
            )),
            Workload::Set => Op::Set(self.key()),
            Workload::Get => Op::Get(self.key()),
            Workload::Exists => Op::Exists(self.key()),
            Workload::Multi => Op::Multi((0..self.multi_ops).map(|_| self.key()).collect()),
            Workload::Mixed => {
                if self.rand() % 100 < u64::from(self.read_pct) {
                    Op::Get(self.key())
                } else {
                    Op::Set(self.key())
                }
            }
        }
    }
}

/// Sends `op`; returns the created path for a create.
async fn run_op(c: &Client, op: Op, data: &[u8]) -> Result<Option<String>, Error> {
    match op {
        Op::Create(p) => c
            .create(&p, data, &Acl::open_unsafe(), CreateMode::Persistent)
            .await
            .map(Some),
        Op::Set(p) => c.set_data(&p, data, -1).await.map(|_| None),
        Op::Get(p) => c.get_data(&p, false).await.map(|_| None),
        Op::Exists(p) => c.exists(&p, false).await.map(|_| None),
        Op::Multi(ps) => {
            let ops = ps.iter().map(|p| op::set_data(p, data, -1)).collect();
            let rs = c.multi(ops).await?;
            match rs.iter().find_map(multi_err) {
                Some(e) => {
                    Err(ErrorCode::from_code(e).map_or(Error::UnknownCode(e), Error::Keeper))
                }
                None => Ok(None),
            }
        }
    }
}

fn multi_err(r: &MultiResult) -> Option<i32> {
    match r {
        MultiResult::Error { err } if *err != 0 => Some(*err),
        _ => None,
    }
}

/// What a worker (or an open-loop session) gathered.
pub(crate) struct Acc {
    pub(crate) hist: Hist,
    pub(crate) ok_in_window: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) created: Vec<String>,
    /// (ms since window start, latency us) of measured requests, for the plot.
    pub(crate) samples: Vec<(u32, u32)>,
}

impl Acc {
    pub(crate) fn new() -> Acc {
        Acc {
            hist: stats::new_hist(),
            ok_in_window: 0,
            errors: 0,
            first_error: None,
            created: Vec::new(),
            samples: Vec::new(),
        }
    }

    fn merge(&mut self, o: Acc) {
        self.hist.add(&o.hist).expect("same histogram bounds");
        self.ok_in_window += o.ok_in_window;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.created.extend(o.created);
        self.samples.extend(o.samples);
    }

    fn sample(&mut self, w: &Window, start: Instant, lat: Duration) {
        let at = start.saturating_duration_since(w.measure_start).as_millis();
        let us = lat.as_micros().min(u128::from(u32::MAX));
        self.samples
            .push((at.min(u128::from(u32::MAX)) as u32, us as u32));
    }

    /// Accounts one successful request started at `start`.
    pub(crate) fn finish_ok(&mut self, w: &Window, start: Instant, done: Instant) {
        if start >= w.measure_start && start < w.end {
            stats::record(&mut self.hist, done - start);
            self.sample(w, start, done - start);
        }
        if done >= w.measure_start && done < w.end {
            self.ok_in_window += 1;
        }
    }

    /// Accounts one failed request started at `start`.
    pub(crate) fn finish_err(&mut self, w: &Window, start: Instant, done: Instant, e: String) {
        if start >= w.measure_start && start < w.end {
            stats::record(&mut self.hist, done - start);
            self.sample(w, start, done - start);
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(e);
            }
        }
    }

    /// Accounts one finished request started (or meant to start) at `start`.
    fn finish(
        &mut self,
        w: &Window,
        start: Instant,
        done: Instant,
        r: Result<Option<String>, Error>,
    ) {
        match r {
            Ok(created) => {
                if let Some(p) = created {
                    self.created.push(p);
                }
                self.finish_ok(w, start, done);
            }
            Err(e) => self.finish_err(w, start, done, e.to_string()),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) measure_start: Instant,
    pub(crate) end: Instant,
}

async fn open_session(
    c: Client,
    mut gen: OpGen,
    data: Arc<Vec<u8>>,
    w: Window,
    per_session_rate: f64,
    phase: f64,
    cap: usize,
) -> Acc {
    let acc = Arc::new(Mutex::new(Acc::new()));
    let sem = (cap > 0).then(|| Arc::new(Semaphore::new(cap)));
    let interval = 1.0 / per_session_rate;
    let mut tasks = JoinSet::new();
    let mut k = 0u64;
    loop {
        let intended = w.start + Duration::from_secs_f64((k as f64 + phase) * interval);
        if intended >= w.end {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let permit = match &sem {
            Some(s) => Some(s.clone().acquire_owned().await.expect("semaphore open")),
            None => None,
        };
        let op = gen.next(k);
        k += 1;
        let (c, data, acc) = (c.clone(), data.clone(), acc.clone());
        tasks.spawn(async move {
            let r = run_op(&c, op, &data).await;
            let done = Instant::now();
            drop(permit);
            acc.lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(&w, intended, done, r);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let acc = Arc::try_unwrap(acc).unwrap_or_else(|_| panic!("all request tasks joined"));
    acc.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn unique_root() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("/zkd-bench-{}-{ms}", std::process::id())
}

/// Creates `paths` with `data`, up to `window` requests in flight on `c`.
async fn create_all(
    c: &Client,
    paths: Vec<String>,
    data: Arc<Vec<u8>>,
    window: usize,
) -> Result<(), String> {
    let mut set = JoinSet::new();
    for p in paths {
        if set.len() >= window {
            if let Some(r) = set.join_next().await {
                r.map_err(|e| e.to_string())??;
            }
        }
        let (c, data) = (c.clone(), data.clone());
        set.spawn(async move {
            c.create(&p, &data, &Acl::open_unsafe(), CreateMode::Persistent)
                .await
                .map(|_| ())
                .map_err(|e| format!("create {p}: {e}"))
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Deletes `paths` (leaves, in any order) then `root`, in multi batches; returns a note.
async fn cleanup(c: &Client, paths: Vec<String>, root: &str) -> String {
    const BATCH: usize = 1000;
    const IN_FLIGHT: usize = 8;
    let started = Instant::now();
    let n = paths.len();
    let mut failed = 0usize;
    let mut set: JoinSet<usize> = JoinSet::new();
    for chunk in paths.chunks(BATCH) {
        if set.len() >= IN_FLIGHT {
            failed += set.join_next().await.and_then(|r| r.ok()).unwrap_or(0);
        }
        let c = c.clone();
        let chunk: Vec<String> = chunk.to_vec();
        set.spawn(async move {
            let ops = chunk.iter().map(|p| op::delete(p, -1)).collect();
            if c.multi(ops).await.is_ok() {
                return 0;
            }
            // One bad path fails the whole multi: fall back to single deletes.
            let mut bad = 0;
            for p in &chunk {
                if c.delete(p, -1).await.is_err() {
                    bad += 1;
                }
            }
            bad
        });
    }
    while let Some(r) = set.join_next().await {
        failed += r.unwrap_or(0);
    }
    let root_gone = c.delete(root, -1).await.is_ok();
    let t = started.elapsed().as_secs_f64();
    if failed == 0 && root_gone {
        format!("deleted {n} znodes and {root} in {t:.1}s")
    } else {
        format!("cleanup incomplete: {failed} of {n} deletes failed, root deleted: {root_gone}; leftovers under {root}")
    }
}

/// Session storm worker: connect, create one ephemeral, close, again.
async fn storm_worker(
    args: LoadArgs,
    root: Arc<str>,
    s: usize,
    data: Arc<Vec<u8>>,
    w: Window,
) -> Acc {
    let mut acc = Acc::new();
    let timeout = Duration::from_millis(args.session_timeout_ms);
    let mut seq = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= w.end {
            break;
        }
        let path = format!("{root}/e{s}-{seq}");
        seq += 1;
        let r = async {
            let c = Client::connect(&args.server, timeout).await?;
            let r = c
                .create(&path, &data, &Acl::open_unsafe(), CreateMode::Ephemeral)
                .await;
            c.close().await?;
            r.map(|_| None)
        }
        .await;
        acc.finish(&w, t0, Instant::now(), r);
    }
    acc
}

/// Watch fan-out: every watcher sets an exists watch on `path`, the writer changes it,
/// and the round ends when every watcher has its event.
async fn watch_rounds(
    writer: &Client,
    watchers: &[Client],
    path: &str,
    data: Arc<Vec<u8>>,
    w: Window,
) -> Result<Acc, String> {
    let mut rxs = Vec::with_capacity(watchers.len());
    for c in watchers {
        rxs.push(c.take_events().ok_or("events already taken")?);
    }
    let mut acc = Acc::new();
    loop {
        if Instant::now() >= w.end {
            break;
        }
        let mut set = JoinSet::new();
        for c in watchers {
            let (c, p) = (c.clone(), path.to_string());
            set.spawn(async move { c.exists(&p, true).await.map(|_| ()) });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| e.to_string())?
                .map_err(|e| format!("exists watch: {e}"))?;
        }
        let t0 = Instant::now();
        let r = writer.set_data(path, &data, -1).await;
        let r = match r {
            Ok(_) => {
                let mut res = Ok(None);
                for rx in rxs.iter_mut() {
                    match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                        Ok(Some(_)) => {}
                        _ => {
                            res = Err(Error::Timeout);
                            break;
                        }
                    }
                }
                res
            }
            Err(e) => Err(e),
        };
        acc.finish(&w, t0, Instant::now(), r);
    }
    Ok(acc)
}

/// utime+stime of a process in seconds, from /proc/PID/stat.
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((ut + st) as f64 / hz)
}

/// The summed CPU seconds of `pids`; None if any of them cannot be read.
fn procs_cpu_secs(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&p| proc_cpu_secs(p)).sum()
}

/// Runs one load measurement. Prints nothing; see [`LoadResult::table`] and `json`.
pub async fn run(args: &LoadArgs) -> Result<LoadResult, String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    if args.rate.is_none() && args.pipeline == 0 {
        return Err("--pipeline must be at least 1 in closed loop".into());
    }
    if let Some(r) = args.rate {
        if r.is_nan() || r <= 0.0 {
            return Err("--rate must be positive".into());
        }
        if matches!(
            args.workload,
            Workload::Watch | Workload::Storm | Workload::Populate
        ) {
            return Err(format!(
                "--rate is not supported for the {} workload",
                args.workload.name()
            ));
        }
    }
    let timeout = Duration::from_millis(args.session_timeout_ms);
    let connect = || async {
        Client::connect(&args.server, timeout)
            .await
            .map_err(|e| format!("connect {}: {e}", args.server))
    };
    let admin = connect().await?;
    // Storm opens its own sessions; the closed loop uses lean sessions (lean.rs); watch
    // and the open loop share `sessions` zkd-client connections.
    let lean = args.rate.is_none() && !matches!(args.workload, Workload::Storm | Workload::Watch);
    let n_clients = if args.workload == Workload::Storm || lean {
        0
    } else {
        args.sessions
    };
    let mut clients = Vec::with_capacity(n_clients);
    for _ in 0..n_clients {
        clients.push(connect().await?);
    }
    let mut lean_sessions = Vec::new();
    if lean {
        for _ in 0..args.sessions {
            lean_sessions.push(crate::lean::LeanSession::connect(&args.server, timeout).await?);
        }
    }
    let root: Arc<str> = unique_root().into();
    admin
        .create(&root, b"", &Acl::open_unsafe(), CreateMode::Persistent)
        .await
        .map_err(|e| format!("create {root}: {e}"))?;
    let data = Arc::new(vec![b'x'; args.size]);
    let mut key_paths = Vec::new();
    match args.workload {
        Workload::Set | Workload::Get | Workload::Exists | Workload::Mixed | Workload::Multi => {
            key_paths = (0..args.keys.max(1))
                .map(|k| format!("{root}/k{k}"))
                .collect();
        }
        Workload::Watch => key_paths = vec![format!("{root}/watched")],
        Workload::Populate => key_paths = (0..1000).map(|k| format!("{root}/p{k:03}")).collect(),
        Workload::Create | Workload::Storm => {}
    }
    create_all(&admin, key_paths.clone(), data.clone(), 64).await?;

    let populate = args.workload == Workload::Populate;
    let start = Instant::now();
    let warmup = if populate { 0.0 } else { args.warmup.max(0.0) };
    let measure_start = start + Duration::from_secs_f64(warmup);
    let w = Window {
        start,
        measure_start,
        end: if populate {
            start + Duration::from_secs(86_400)
        } else {
            measure_start + Duration::from_secs_f64(args.duration.max(0.001))
        },
    };
    // Server CPU time at the window's edges.
    let cpu_pids: Vec<u32> = args
        .server_pid
        .into_iter()
        .chain(args.also_cpu_pid.iter().copied())
        .collect();
    let cpu_probe = args.server_pid.map(|_| {
        let end = w.end;
        let pids = cpu_pids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_start.into()).await;
            let a = procs_cpu_secs(&pids);
            if populate {
                return (a, None);
            }
            tokio::time::sleep_until(end.into()).await;
            (a, procs_cpu_secs(&pids))
        })
    });
    let mut set = JoinSet::new();
    let limit = populate.then(|| (Arc::new(AtomicU64::new(0)), args.znodes as u64));
    match args.workload {
        Workload::Watch => {
            let (writer, path, data, watchers) = (
                admin.clone(),
                key_paths[0].clone(),
                data.clone(),
                clients.clone(),
            );
            set.spawn(async move {
                watch_rounds(&writer, &watchers, &path, data, w)
                    .await
                    .unwrap_or_else(|e| {
                        let mut a = Acc::new();
                        a.errors = 1;
                        a.first_error = Some(e);
                        a
                    })
            });
        }
        Workload::Storm => {
            for s in 0..args.sessions {
                set.spawn(storm_worker(args.clone(), root.clone(), s, data.clone(), w));
            }
        }
        _ => {
            for (s, sess) in lean_sessions.into_iter().enumerate() {
                let g = OpGen::new(args, &root, s, 0);
                let gen = crate::lean::LeanGen {
                    workload: g.workload,
                    root: g.root,
                    tag: g.tag,
                    keys: g.keys as u64,
                    read_pct: u64::from(g.read_pct),
                    multi_ops: g.multi_ops,
                    rng: g.rng,
                };
                set.spawn(crate::lean::run(
                    sess,
                    gen,
                    args.pipeline,
                    data.clone(),
                    w,
                    limit.clone(),
                ));
            }
            for (s, c) in clients.iter().enumerate() {
                let gen = OpGen::new(args, &root, s, 0);
                let per = args.rate.unwrap_or(1.0) / args.sessions as f64;
                let phase = s as f64 / args.sessions as f64;
                set.spawn(open_session(
                    c.clone(),
                    gen,
                    data.clone(),
                    w,
                    per,
                    phase,
                    args.pipeline,
                ));
            }
        }
    }
    let mut acc = Acc::new();
    while let Some(r) = set.join_next().await {
        acc.merge(r.map_err(|e| format!("worker failed: {e}"))?);
    }
    let finished = Instant::now();
    let (window_s, ops) = if populate {
        let s = (finished - start).as_secs_f64();
        (s, acc.created.len() as u64)
    } else {
        ((w.end - w.measure_start).as_secs_f64(), acc.ok_in_window)
    };
    let server_cpu_s = match cpu_probe {
        Some(h) => {
            let (a, b) = h.await.map_err(|e| e.to_string())?;
            let b = if populate {
                procs_cpu_secs(&cpu_pids)
            } else {
                b
            };
            a.zip(b).map(|(a, b)| b - a)
        }
        None => None,
    };
    let server_rss = args
        .server_pid
        .and_then(|pid| crate::server::proc_status_kb(pid, "VmRSS"));

    let created = acc.created.len();
    let cleanup_note = if args.keep || populate {
        format!("kept under {root}")
    } else {
        let mut paths = std::mem::take(&mut acc.created);
        paths.extend(key_paths);
        cleanup(&admin, paths, &root).await
    };
    for c in &clients {
        let _ = c.close().await;
    }
    let _ = admin.close().await;
    let res = LoadResult {
        args: args.clone(),
        ops,
        ops_per_s: ops as f64 / window_s,
        hist: acc.hist,
        errors: acc.errors,
        first_error: acc.first_error,
        created,
        cleanup: cleanup_note,
        server_cpu_s,
        server_rss,
        samples: acc.samples,
        window_s,
    };
    if let Some(p) = &args.plot {
        crate::plot::latency_over_time(&res, p)?;
    }
    Ok(res)
}
