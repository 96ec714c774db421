//! Workloads: concurrent zkd-client processes that generate operations and record them.
//!
//! Owns the `Recorder` (the shared history with times relative to the run start), the
//! per-workload operation generators and their ZooKeeper calls, the mapping of client errors
//! to ok/fail/info (only error codes that mean "not applied" are `fail`; connection loss,
//! timeouts and expiry are `info`, as Jepsen does), and the final reads taken after healing.
//! Never injects faults and never judges: checkers read the history afterwards.
//!
//! Processes: worker w starts as process w; after an `info` it gets a fresh process number
//! (w + k·concurrency) and a fresh session, because its previous op may still be in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use zkd_client::{
    op, Acl, Client, ConnectOptions, CreateMode, Error, ErrorCode, MultiResult, SessionOptions,
    SessionState, ZooKeeper,
};

use crate::history::{Op, OpType};

pub const ROOT: &str = "/jepsen";

pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }
    pub fn history(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Register,
    Set,
    Seq,
    Multi,
    Sessions,
    Watch,
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "register" => Workload::Register,
            "set" => Workload::Set,
            "seq" | "sequential" => Workload::Seq,
            "multi" => Workload::Multi,
            "sessions" | "ephemeral" => Workload::Sessions,
            "watch" | "watches" => Workload::Watch,
            _ => {
                return Err(format!(
                    "unknown workload {s} (register|set|seq|multi|sessions|watch)"
                ))
            }
        })
    }
}

/// Error codes after which the operation certainly did not take effect.
pub fn classify(e: &Error) -> OpType {
    match e {
        Error::Keeper(
            ErrorCode::NoNode
            | ErrorCode::NodeExists
            | ErrorCode::BadVersion
            | ErrorCode::NotEmpty
            | ErrorCode::BadArguments
            | ErrorCode::NoChildrenForEphemerals
            | ErrorCode::InvalidAcl
            | ErrorCode::NoAuth,
        ) => OpType::Fail,
        _ => OpType::Info,
    }
}

pub struct Ctx {
    pub workload: Workload,
    pub addrs: Vec<String>,
    pub rec: Recorder,
    pub concurrency: usize,
    pub op_timeout: Duration,
    pub session_timeout: Duration,
    pub keys: usize,
    /// Register and multi workloads: every `key_rotation` of run time the workers move on
    /// to fresh znodes (a new generation), as Jepsen's independent keys do. A register
    /// key's history stays a few thousand ops long, so the linearizability search stays
    /// small even in 10-minute runs with indeterminate writes (which stay open to the end
    /// of their key's history); a multi read lists one generation's parent, so reads stay
    /// small (listing one ever-growing parent made a 10-minute run's history outgrow
    /// memory). Generations past `generations` reuse the last.
    pub key_rotation: Duration,
    pub generations: usize,
    /// Register reads without the preceding sync. ZooKeeper does not promise these are
    /// linearizable (P5 allows stale cross-client reads), so the register checker is
    /// expected to reject some histories: a check that the checker sees real staleness.
    pub plain_reads: bool,
    next_value: AtomicI64,
    /// Sessions a worker deliberately abandoned: (session id, ephemeral paths, when).
    abandoned: Mutex<Vec<(i64, Vec<String>)>>,
}

impl Ctx {
    pub fn new(workload: Workload, addrs: Vec<String>, concurrency: usize) -> Ctx {
        Ctx {
            workload,
            addrs,
            rec: Recorder::new(),
            concurrency,
            op_timeout: Duration::from_secs(3),
            session_timeout: Duration::from_secs(6),
            keys: 3,
            key_rotation: match workload {
                Workload::Multi => Duration::from_secs(1),
                _ => Duration::from_secs(15),
            },
            generations: 1,
            plain_reads: false,
            next_value: AtomicI64::new(1),
            abandoned: Mutex::new(Vec::new()),
        }
    }

    pub async fn connect(&self, server: usize) -> Result<Client, Error> {
        let opts =
            ConnectOptions::new(&self.addrs[server % self.addrs.len()], self.session_timeout)
                .connect_timeout(Duration::from_secs(2))
                .request_timeout(Some(self.op_timeout))
                // A 10-minute set run adds ~200k children to one parent: the final
                // getChildren reply is several MB, past jute.maxbuffer's 1 MB, which
                // servers send but a default client refuses.
                .max_frame_len(64 << 20);
        Client::connect_with(opts).await
    }

    /// Connects to the first server from `first` on that accepts, each tried once.
    pub async fn connect_live(&self, first: usize) -> Result<Client, Error> {
        let mut last = Error::ConnectionLoss;
        for k in 0..self.addrs.len() {
            match self.connect(first + k).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to some server, trying each from `first` on.
    async fn connect_any(&self, first: usize) -> Client {
        let mut i = first;
        loop {
            if let Ok(c) = self.connect(i).await {
                return c;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn key_path(&self, k: usize) -> String {
        match self.workload {
            Workload::Watch => format!("{ROOT}/watch/k{k}"),
            _ => format!("{ROOT}/register/k{k}"),
        }
    }

    /// The key generation in use now (see `key_rotation`).
    fn generation(&self) -> usize {
        let rotation = self.key_rotation.as_nanos().max(1) as u64;
        ((self.rec.now() / rotation) as usize).min(self.generations.max(1) - 1)
    }

    /// The parent of multi generation `g`.
    fn multi_parent(g: usize) -> String {
        format!("{ROOT}/multi/g{g}")
    }

    /// Key `k` of register generation `g`: generation 0 keeps the plain names.
    fn register_key(k: usize, g: usize) -> String {
        if g == 0 {
            format!("k{k}")
        } else {
            format!("k{k}g{g}")
        }
    }
}

async fn ensure(c: &Client, path: &str, data: &[u8]) -> Result<(), Error> {
    match c
        .create(path, data, &Acl::open_unsafe(), CreateMode::Persistent)
        .await
    {
        Ok(_) | Err(Error::Keeper(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the znodes the workload needs, before any fault.
pub async fn setup(ctx: &Ctx) -> Result<(), Error> {
    let c = ctx.connect(0).await?;
    ensure(&c, ROOT, b"").await?;
    for sub in ["register", "set", "seq", "multi", "eph", "watch"] {
        ensure(&c, &format!("{ROOT}/{sub}"), b"").await?;
    }
    for k in 0..ctx.keys {
        ensure(&c, &format!("{ROOT}/watch/k{k}"), b"0").await?;
    }
    for g in 0..ctx.generations.max(1) {
        match ctx.workload {
            Workload::Multi => ensure(&c, &Ctx::multi_parent(g), b"").await?,
            Workload::Register => {
                for k in 0..ctx.keys {
                    let key = Ctx::register_key(k, g);
                    ensure(&c, &format!("{ROOT}/register/{key}"), b"0").await?;
                }
            }
            _ => {}
        }
    }
    if ctx.workload != Workload::Register {
        for k in 0..ctx.keys {
            ensure(
                &c,
                &format!("{ROOT}/register/{}", Ctx::register_key(k, 0)),
                b"0",
            )
            .await?;
        }
    }
    c.close().await
}

fn parse_i64(data: &[u8]) -> i64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1)
}

/// What one op returned: its completion type, value and zxid.
type Outcome = (OpType, Value, Option<i64>, Option<String>);

fn err_outcome(e: Error) -> Outcome {
    (classify(&e), Value::Null, None, Some(e.to_string()))
}

struct Worker {
    id: usize,
    process: i64,
    client: Option<Client>,
    rng: StdRng,
    /// Register workload: the dataVersion last seen per key.
    versions: BTreeMap<String, i32>,
    /// Sessions workload: this session's ephemerals.
    ephemerals: Vec<String>,
}

impl Worker {
    async fn client(&mut self, ctx: &Ctx) -> Client {
        if let Some(c) = &self.client {
            if c.state().is_connected() {
                return c.clone();
            }
        }
        let c = ctx.connect_any(self.id).await;
        self.client = Some(c.clone());
        self.ephemerals.clear();
        c
    }

    /// Records one op: invoke, run, complete. A fresh process follows an `info`.
    async fn op<F, Fut>(&mut self, ctx: &Ctx, f: &str, key: Option<&str>, value: Value, run: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        let c = self.client(ctx).await;
        ctx.rec.record(Op::new(
            self.process,
            OpType::Invoke,
            f,
            key,
            value.clone(),
            ctx.rec.now(),
        ));
        let (kind, out, zxid, err) =
            match tokio::time::timeout(ctx.op_timeout * 2, run(c.clone())).await {
                Ok(o) => o,
                Err(_) => (
                    OpType::Info,
                    Value::Null,
                    None,
                    Some("harness timeout".into()),
                ),
            };
        let mut op = Op::new(self.process, kind, f, key, out, ctx.rec.now());
        op.zxid = zxid;
        op.error = err;
        if kind != OpType::Info {
            op.session = Some(c.session_id());
            op.seen = Some(c.last_zxid());
        }
        ctx.rec.record(op);
        if kind == OpType::Info {
            self.process += ctx.concurrency as i64;
            self.client = None; // drop the session: its in-flight op stays indeterminate
        }
    }

    async fn step(&mut self, ctx: &Ctx) {
        match ctx.workload {
            Workload::Register => self.register_op(ctx).await,
            Workload::Set => {
                let v = ctx.next_value.fetch_add(1, Ordering::Relaxed);
                self.op(ctx, "add", None, json!(v), |c| async move {
                    match c
                        .create2(
                            &format!("{ROOT}/set/e{v}"),
                            b"",
                            &Acl::open_unsafe(),
                            CreateMode::Persistent,
                        )
                        .await
                    {
                        Ok((_, stat)) => (OpType::Ok, json!(v), Some(stat.czxid), None),
                        Err(e) => err_outcome(e),
                    }
                })
                .await
            }
            Workload::Seq => {
                let parent = format!("{ROOT}/seq");
                let p2 = parent.clone();
                self.op(
                    ctx,
                    "create-seq",
                    Some(&parent),
                    Value::Null,
                    |c| async move {
                        match c
                            .create2(
                                &format!("{p2}/q-"),
                                b"",
                                &Acl::open_unsafe(),
                                CreateMode::PersistentSequential,
                            )
                            .await
                        {
                            Ok((path, stat)) => (
                                OpType::Ok,
                                json!(parse_i64(path.rsplit('-').next().unwrap_or("").as_bytes())),
                                Some(stat.czxid),
                                None,
                            ),
                            Err(e) => err_outcome(e),
                        }
                    },
                )
                .await
            }
            Workload::Multi => {
                let parent = Ctx::multi_parent(ctx.generation());
                if self.rng.gen_bool(0.2) {
                    let p2 = parent.clone();
                    self.op(ctx, "read", Some(&parent), Value::Null, |c| async move {
                        read_children(&c, &p2).await
                    })
                    .await
                } else {
                    let b = ctx.next_value.fetch_add(1, Ordering::Relaxed);
                    let poison = self.rng.gen_bool(0.2);
                    let size = 3;
                    self.op(
                        ctx,
                        "multi",
                        None,
                        json!({"batch": b, "size": size, "poison": poison}),
                        |c| async move {
                            let mut ops: Vec<_> = (0..size)
                                .map(|m| {
                                    op::create(
                                        &format!("{parent}/{b}-{m}"),
                                        b"",
                                        &Acl::open_unsafe(),
                                        CreateMode::Persistent,
                                    )
                                })
                                .collect();
                            if poison {
                                // A check that cannot pass: the whole multi must roll back.
                                ops.push(op::check(&parent, 1_000_000));
                            }
                            match c.multi(ops).await {
                                Ok(rs)
                                    if rs.iter().any(
                                        |r| matches!(r, MultiResult::Error { err } if *err != 0),
                                    ) =>
                                {
                                    (
                                        OpType::Fail,
                                        Value::Null,
                                        None,
                                        Some("multi rolled back".into()),
                                    )
                                }
                                Ok(_) => (OpType::Ok, Value::Null, None, None),
                                Err(e) => err_outcome(e),
                            }
                        },
                    )
                    .await
                }
            }
            Workload::Sessions => self.session_op(ctx).await,
            Workload::Watch => {
                let k = self.rng.gen_range(0..ctx.keys);
                let path = ctx.key_path(k);
                let v = ctx.next_value.fetch_add(1, Ordering::Relaxed);
                let p2 = path.clone();
                self.op(
                    ctx,
                    "write",
                    Some(&path),
                    json!({"value": v}),
                    |c| async move {
                        match c.set_data(&p2, v.to_string().as_bytes(), -1).await {
                            Ok(stat) => (
                                OpType::Ok,
                                json!({"value": v, "version": stat.version}),
                                Some(stat.mzxid),
                                None,
                            ),
                            Err(e) => err_outcome(e),
                        }
                    },
                )
                .await
            }
        }
    }

    async fn register_op(&mut self, ctx: &Ctx) {
        let k = self.rng.gen_range(0..ctx.keys);
        let key = Ctx::register_key(k, ctx.generation());
        let path = format!("{ROOT}/register/{key}");
        let p2 = path.clone();
        let roll = self.rng.gen_range(0..10);
        let v = self.rng.gen_range(0..5i64);
        if roll < 4 {
            let plain = ctx.plain_reads;
            self.op(ctx, "read", Some(&key), Value::Null, |c| async move {
                // sync first: a plain read may be stale across clients (P5); sync+read is
                // what ZooKeeper offers for read-after-other-client's-write.
                if !plain {
                    if let Err(e) = c.sync(&p2).await {
                        return (OpType::Info, Value::Null, None, Some(e.to_string()));
                    }
                }
                match c.get_data(&p2, false).await {
                    Ok((data, stat)) => (
                        OpType::Ok,
                        json!({"value": parse_i64(&data), "version": stat.version}),
                        Some(stat.mzxid),
                        None,
                    ),
                    Err(e) => (OpType::Info, Value::Null, None, Some(e.to_string())),
                }
            })
            .await;
        } else if roll < 7 {
            self.op(
                ctx,
                "write",
                Some(&key),
                json!({"value": v}),
                |c| async move {
                    match c.set_data(&p2, v.to_string().as_bytes(), -1).await {
                        Ok(stat) => (
                            OpType::Ok,
                            json!({"value": v, "version": stat.version}),
                            Some(stat.mzxid),
                            None,
                        ),
                        Err(e) => err_outcome(e),
                    }
                },
            )
            .await;
        } else {
            let expected = self.versions.get(&key).copied().unwrap_or(0);
            self.op(
                ctx,
                "cas",
                Some(&key),
                json!({"value": v, "version": expected}),
                |c| async move {
                    match c.set_data(&p2, v.to_string().as_bytes(), expected).await {
                        Ok(stat) => (
                            OpType::Ok,
                            json!({"value": v, "version": expected}),
                            Some(stat.mzxid),
                            None,
                        ),
                        Err(e) => err_outcome(e),
                    }
                },
            )
            .await;
        }
        // Learn the current version for the next CAS from what we just saw.
        let last = ctx.rec.ops.lock().unwrap().last().cloned();
        if let Some(op) = last {
            if op.kind == OpType::Ok {
                if let Some(ver) = op.value["version"].as_i64() {
                    let ver = if op.f == "cas" { ver + 1 } else { ver };
                    self.versions.insert(key, ver as i32);
                }
            }
        }
    }

    async fn session_op(&mut self, ctx: &Ctx) {
        let c = self.client(ctx).await;
        let sid = c.session_id();
        let roll = self.rng.gen_range(0..10);
        if roll < 7 || self.ephemerals.is_empty() {
            let n = ctx.next_value.fetch_add(1, Ordering::Relaxed);
            let path = format!("{ROOT}/eph/s{sid:x}-{n}");
            let p2 = path.clone();
            let before = self.process;
            self.op(
                ctx,
                "create-ephemeral",
                Some(&path),
                json!({"session": sid}),
                |c| async move {
                    match c
                        .create(&p2, b"", &Acl::open_unsafe(), CreateMode::Ephemeral)
                        .await
                    {
                        Ok(_) => (OpType::Ok, Value::Null, None, None),
                        Err(e) => err_outcome(e),
                    }
                },
            )
            .await;
            if self.process == before {
                self.ephemerals.push(path);
            }
        } else if roll < 8 {
            self.op(
                ctx,
                "close",
                None,
                json!({"session": sid}),
                |c| async move {
                    match c.close().await {
                        Ok(()) => (OpType::Ok, Value::Null, None, None),
                        Err(e) => (OpType::Info, Value::Null, None, Some(e.to_string())),
                    }
                },
            )
            .await;
            self.client = None;
            self.ephemerals.clear();
        } else {
            // Abandon: drop the socket without closeSession; the session must expire.
            let timeout_ms = c.negotiated_timeout().as_millis() as u64;
            let t = ctx.rec.now();
            ctx.rec.record(Op::new(
                self.process,
                OpType::Invoke,
                "abandon",
                None,
                json!({"session": sid, "timeout_ms": timeout_ms}),
                t,
            ));
            self.client = None;
            drop(c);
            ctx.rec.record(Op::new(
                self.process,
                OpType::Ok,
                "abandon",
                None,
                Value::Null,
                ctx.rec.now(),
            ));
            ctx.abandoned
                .lock()
                .unwrap()
                .push((sid, std::mem::take(&mut self.ephemerals)));
        }
    }
}

async fn read_children(c: &Client, parent: &str) -> Outcome {
    match c.get_children(parent, false).await {
        Ok(mut names) => {
            names.sort();
            (OpType::Ok, json!(names), None, None)
        }
        Err(e) => (OpType::Info, Value::Null, None, Some(e.to_string())),
    }
}

/// Watches abandoned sessions' ephemerals until they disappear; records "gone" when seen.
async fn expiry_observer(ctx: Arc<Ctx>, stop: tokio::sync::watch::Receiver<bool>) {
    let mut client: Option<Client> = None;
    let mut pending: Vec<(i64, String)> = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut server = 0;
    let process = 1_000_000;
    loop {
        pending.extend(
            ctx.abandoned
                .lock()
                .unwrap()
                .drain(..)
                .flat_map(|(s, ps)| ps.into_iter().map(move |p| (s, p))),
        );
        if *stop.borrow() && pending.is_empty() {
            return;
        }
        if client.as_ref().is_none_or(|c| !c.state().is_connected()) {
            client = ctx.connect(0).await.ok();
        }
        if let Some(c) = &client {
            let mut still = Vec::new();
            for (sid, path) in pending.drain(..) {
                let t0 = ctx.rec.now();
                match c.exists(&path, false).await {
                    Ok(None) => {
                        ctx.rec.record(Op::new(
                            process,
                            OpType::Invoke,
                            "gone",
                            None,
                            Value::Null,
                            t0,
                        ));
                        ctx.rec.record(Op::new(
                            process,
                            OpType::Ok,
                            "gone",
                            None,
                            json!({"session": sid, "path": path}),
                            ctx.rec.now(),
                        ));
                    }
                    _ => still.push((sid, path)),
                }
            }
            pending = still;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if *stop.borrow() && !pending.is_empty() {
            // After the run, keep polling for up to two session timeouts, then give up (the
            // checker reports the missing expiry).
            let deadline = Instant::now() + ctx.session_timeout * 3;
            while Instant::now() < deadline && !pending.is_empty() {
                pending.extend(
                    ctx.abandoned
                        .lock()
                        .unwrap()
                        .drain(..)
                        .flat_map(|(s, ps)| ps.into_iter().map(move |p| (s, p))),
                );
                if client.as_ref().is_none_or(|c| !c.state().is_connected()) {
                    server += 1;
                    client = ctx.connect(server).await.ok();
                }
                if let Some(c) = &client {
                    observe(ctx.as_ref(), c, &mut pending, &mut seen, process).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
    }
}

/// One pass over the abandoned ephemerals: remember when each was last seen present, record
/// "gone" (with that time) when it is missing. Stops at the first error so the caller can
/// move to another server.
async fn observe(
    ctx: &Ctx,
    c: &Client,
    pending: &mut Vec<(i64, String)>,
    seen: &mut BTreeMap<String, u64>,
    process: i64,
) {
    let mut still = Vec::new();
    let mut broken = false;
    for (sid, path) in pending.drain(..) {
        if broken {
            still.push((sid, path));
            continue;
        }
        let t0 = ctx.rec.now();
        match c.exists(&path, false).await {
            Ok(None) => {
                ctx.rec.record(Op::new(
                    process,
                    OpType::Invoke,
                    "gone",
                    None,
                    Value::Null,
                    t0,
                ));
                let last = seen.remove(&path);
                ctx.rec.record(Op::new(
                    process,
                    OpType::Ok,
                    "gone",
                    None,
                    json!({"session": sid, "path": path, "last_present": last}),
                    ctx.rec.now(),
                ));
            }
            Ok(Some(_)) => {
                // The reply proves presence at some instant after t0.
                seen.insert(path.clone(), t0);
                still.push((sid, path));
            }
            Err(_) => {
                broken = true;
                still.push((sid, path));
            }
        }
    }
    *pending = still;
}

/// A watcher process: persistent watch on one key, every notification recorded.
async fn watcher(
    ctx: Arc<Ctx>,
    idx: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    process: i64,
) {
    // One window per connection: our client does not reconnect, so after a connection loss
    // the watcher opens a new session (new process) on the next server and a new window.
    let mut process = process;
    let mut server = idx;
    while !*stop.borrow() {
        if watch_window(&ctx, idx, server, stop.clone(), process).await {
            return;
        }
        process += 100;
        server += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One watch window; true when it ended because the run stopped.
async fn watch_window(
    ctx: &Arc<Ctx>,
    idx: usize,
    server: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    process: i64,
) -> bool {
    let path = ctx.key_path(idx % ctx.keys);
    let Ok(c) = ctx.connect(server).await else {
        return false;
    };
    let mut events = c.take_events().expect("fresh client has its event stream");
    let t = ctx.rec.now();
    ctx.rec.record(Op::new(
        process,
        OpType::Invoke,
        "watch",
        Some(&path),
        Value::Null,
        t,
    ));
    match c
        .add_watch(&path, zkd_client::add_watch_mode::PERSISTENT)
        .await
    {
        Ok(()) => ctx.rec.record(Op::new(
            process,
            OpType::Ok,
            "watch",
            Some(&path),
            json!({"zxid": c.last_zxid()}),
            ctx.rec.now(),
        )),
        Err(e) => {
            ctx.rec.record(
                Op::new(
                    process,
                    OpType::Info,
                    "watch",
                    Some(&path),
                    Value::Null,
                    ctx.rec.now(),
                )
                .with_error(e.to_string()),
            );
            return false;
        }
    }
    let mut stop = stop;
    let mut state = c.state_watcher();
    let mut stopped = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => record_watch_event(ctx, process, ev),
                None => break,
            },
            _ = stop.changed() => {
                stopped = true;
                break;
            }
            _ = state.changed() => {
                if !state.borrow().is_connected() {
                    break;
                }
            }
        }
    }
    if !stopped {
        let _ = c.close().await;
        return false;
    }
    // End of window: sync + read, so every notification for zxid <= last_zxid has arrived.
    if c.state().is_connected() {
        let t = ctx.rec.now();
        ctx.rec.record(Op::new(
            process,
            OpType::Invoke,
            "watch-end",
            Some(&path),
            Value::Null,
            t,
        ));
        let res = async {
            c.sync(&path).await?;
            c.get_data(&path, false).await
        }
        .await;
        let z = c.last_zxid();
        while let Ok(ev) = events.try_recv() {
            record_watch_event(ctx, process, ev);
        }
        match res {
            Ok(_) => ctx.rec.record(Op::new(
                process,
                OpType::Ok,
                "watch-end",
                Some(&path),
                json!({"zxid": z}),
                ctx.rec.now(),
            )),
            Err(e) => ctx.rec.record(
                Op::new(
                    process,
                    OpType::Info,
                    "watch-end",
                    Some(&path),
                    Value::Null,
                    ctx.rec.now(),
                )
                .with_error(e.to_string()),
            ),
        }
    }
    let _ = c.close().await;
    true
}

/// A resuming watcher: one `ZooKeeper` session over all servers, whose client moves the
/// session to another server when its connection drops and re-arms the persistent watch
/// there (SetWatches2), the way applications use ZooKeeper. Persistent watches are not
/// replayed across a reconnect (ZooKeeper only re-adds them), so after each reconnect the
/// watcher does sync + exists and records `rewatch` with the zxid it then has: every write
/// with a larger zxid was applied after the watch was back, so the checker holds the last
/// such window (closed by `watch-end`) to "no gaps, no duplicates" too. If the session
/// expires, a new one starts as a new process.
async fn resumer(
    ctx: Arc<Ctx>,
    idx: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    process: i64,
) {
    let mut process = process;
    while !*stop.borrow() {
        if resumed_session(&ctx, idx, stop.clone(), process).await {
            return;
        }
        process += 100;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One resuming session; true when it ended because the run stopped.
async fn resumed_session(
    ctx: &Arc<Ctx>,
    idx: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    process: i64,
) -> bool {
    let path = ctx.key_path(idx % ctx.keys);
    let opts = SessionOptions::new(&ctx.addrs.join(","), ctx.session_timeout)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Some(ctx.op_timeout))
        .seed(idx as u64);
    let Ok(zk) = ZooKeeper::connect_with(opts).await else {
        return false;
    };
    let mut states = zk.state_events();
    let op = |f: &str, kind: OpType, value: Value| {
        Op::new(process, kind, f, Some(&path), value, ctx.rec.now())
    };
    let record = |f: &str, kind: OpType, value: Value| ctx.rec.record(op(f, kind, value));
    let record_event = |ev| record_watch_event(ctx, process, ev);
    record("watch", OpType::Invoke, Value::Null);
    let mut stream = match zk.watch(&path).await {
        Ok(s) => {
            record("watch", OpType::Ok, json!({"zxid": zk.last_zxid()}));
            s
        }
        Err(e) => {
            ctx.rec
                .record(op("watch", OpType::Info, Value::Null).with_error(e.to_string()));
            zk.abandon();
            return false;
        }
    };
    let mut stop = stop;
    let mut stopped = false;
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) => record_event(ev),
                None => break,
            },
            st = states.recv() => match st {
                Some(SessionState::Connected) => {
                    checkpoint(ctx, &zk, &mut stream, process, &path, "rewatch").await;
                }
                // The client reconnects by itself. Mark where the old connection's
                // notifications end: a server the session moves to may be behind the old
                // one and notify again what the watcher already got (ZooKeeper does
                // this too), so order and duplicates are judged per connection.
                Some(SessionState::Disconnected) => {
                    while let Some(ev) = stream.try_next() {
                        record_event(ev);
                    }
                    record("disconnected", OpType::Info, Value::Null);
                }
                Some(SessionState::ConnectedReadOnly) => {}
                // Expired or closed: this session is over.
                Some(_) | None => break,
            },
            _ = stop.changed() => {
                stopped = true;
                break;
            }
        }
    }
    if !stopped {
        zk.abandon();
        return false;
    }
    if zk.state() == SessionState::Connected {
        checkpoint(ctx, &zk, &mut stream, process, &path, "watch-end").await;
    }
    drop(stream);
    let _ = zk.close().await;
    true
}

/// Records a watcher's notification (state changes carry no node: skipped).
fn record_watch_event(ctx: &Ctx, process: i64, ev: zkd_client::WatchedEvent) {
    if ev.event_type != zkd_client::event_type::NONE {
        let mut op = Op::new(
            process,
            OpType::Ok,
            "event",
            Some(&ev.path),
            json!({"type": ev.event_type}),
            ctx.rec.now(),
        );
        op.zxid = Some(ev.zxid);
        ctx.rec.record(op);
    }
}

/// A resuming watcher's `rewatch` or `watch-end`: sync + exists, then the zxid it has.
/// Notifications of writes up to that zxid came before the reply on this connection, so
/// they are recorded first: the events recorded after the op are those of later writes.
async fn checkpoint(
    ctx: &Ctx,
    zk: &ZooKeeper,
    stream: &mut zkd_client::WatchStream,
    process: i64,
    path: &str,
    f: &str,
) {
    let op = |kind, value| Op::new(process, kind, f, Some(path), value, ctx.rec.now());
    ctx.rec.record(op(OpType::Invoke, Value::Null));
    let res = async {
        zk.sync(path).await?;
        zk.exists(path).await
    }
    .await;
    let z = zk.last_zxid();
    while let Some(ev) = stream.try_next() {
        record_watch_event(ctx, process, ev);
    }
    ctx.rec.record(match res {
        Ok(_) => op(OpType::Ok, json!({"zxid": z})),
        Err(e) => op(OpType::Info, Value::Null).with_error(e.to_string()),
    });
}

/// Runs `ctx.concurrency` workers until `stop` flips, then returns the workers (with their
/// sessions) so final checks can use them.
pub async fn run_workers(
    ctx: Arc<Ctx>,
    seed: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    if ctx.workload == Workload::Watch {
        for w in 0..ctx.addrs.len().max(2) {
            handles.push(tokio::spawn(watcher(
                ctx.clone(),
                w,
                stop.clone(),
                2_000_000 + w as i64,
            )));
            handles.push(tokio::spawn(resumer(
                ctx.clone(),
                w,
                stop.clone(),
                5_000_000 + w as i64,
            )));
        }
    }
    if ctx.workload == Workload::Sessions {
        handles.push(tokio::spawn(expiry_observer(ctx.clone(), stop.clone())));
    }
    for id in 0..ctx.concurrency {
        let ctx = ctx.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut w = Worker {
                id,
                process: id as i64,
                client: None,
                rng: StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(id as u64)),
                versions: BTreeMap::new(),
                ephemerals: Vec::new(),
            };
            while !*stop.borrow() {
                w.step(&ctx).await;
                tokio::time::sleep(Duration::from_millis(w.rng.gen_range(0..20))).await;
            }
            if ctx.workload == Workload::Sessions {
                // Hold the session through the final reads; say whether it is alive.
                if let Some(c) = w.client.clone() {
                    let sid = c.session_id();
                    let t = ctx.rec.now();
                    ctx.rec.record(Op::new(
                        w.process,
                        OpType::Invoke,
                        "alive",
                        None,
                        json!({"session": sid}),
                        t,
                    ));
                    let ok = c.exists("/", false).await.is_ok() && c.state().is_connected();
                    let kind = if ok { OpType::Ok } else { OpType::Info };
                    ctx.rec.record(Op::new(
                        w.process,
                        kind,
                        "alive",
                        None,
                        Value::Null,
                        ctx.rec.now(),
                    ));
                    // Hold it through the final reads with a handle that reconnects to any
                    // server: a role change in between closes a follower's client
                    // connections, and a session this worker's one-connection client then
                    // lost would expire legitimately before the reads (seen: sessions x
                    // mixed, reported as lost ephemerals). A server that wrongly expires it
                    // still shows: the resumed handle finds it gone.
                    if ok {
                        let opts = SessionOptions::new(&ctx.addrs.join(","), ctx.session_timeout)
                            .connect_timeout(ctx.session_timeout)
                            .resume_session(sid, &c.session_password(), c.last_zxid());
                        match ZooKeeper::connect_with(opts).await {
                            Ok(zk) => HOLD.lock().unwrap().push(zk),
                            // Visible in the history next to a loss it may explain.
                            Err(e) => ctx.rec.record(
                                Op::new(
                                    w.process,
                                    OpType::Info,
                                    "hold",
                                    None,
                                    json!({"session": sid}),
                                    ctx.rec.now(),
                                )
                                .with_error(e.to_string()),
                            ),
                        }
                    }
                }
            }
        }));
    }
    handles
}

/// Sessions held open by workers until final reads are done.
static HOLD: Mutex<Vec<ZooKeeper>> = Mutex::new(Vec::new());

/// Closes the sessions workers held for the final reads.
pub async fn release_held() {
    let held: Vec<ZooKeeper> = std::mem::take(&mut *HOLD.lock().unwrap());
    for c in held {
        let _ = c.close().await;
    }
}

/// Final reads after healing, through a client on each server (for reads whose answer must
/// be per server) or on server 0.
pub async fn final_reads(ctx: &Ctx) {
    let proc_base = 3_000_000i64;
    let one = |i: usize, f: &'static str, path: String| async move {
        let process = proc_base + i as i64;
        ctx.rec.record(Op::new(
            process,
            OpType::Invoke,
            f,
            Some(&path),
            json!({"server": format!("n{}", i + 1)}),
            ctx.rec.now(),
        ));
        let res = async {
            let c = ctx.connect_live(i).await?;
            c.sync(&path).await?;
            let r = if ctx.workload == Workload::Multi {
                // Every generation's parent (each batch lives under one, so each listing
                // is atomic for the batches in it), after the sync, in one op.
                let mut all = Vec::new();
                for g in 0..ctx.generations.max(1) {
                    match c.get_children(&Ctx::multi_parent(g), false).await {
                        Ok(names) => all.extend(names),
                        Err(e) => {
                            let _ = c.close().await;
                            return Err(e);
                        }
                    }
                }
                Ok(all)
            } else {
                c.get_children(&path, false).await
            };
            let _ = c.close().await;
            r
        }
        .await;
        let op = match res {
            Ok(mut names) => {
                names.sort();
                let v = match f {
                    "read" if ctx.workload == Workload::Set => json!(names
                        .iter()
                        .filter_map(|n| n.strip_prefix('e')?.parse::<i64>().ok())
                        .collect::<Vec<_>>()),
                    "read-seq" => json!(names
                        .iter()
                        .filter_map(|n| n.rsplit('-').next()?.parse::<i64>().ok())
                        .collect::<Vec<_>>()),
                    _ => json!(names),
                };
                Op::new(process, OpType::Ok, f, Some(&path), v, ctx.rec.now())
            }
            Err(e) => Op::new(
                process,
                OpType::Info,
                f,
                Some(&path),
                Value::Null,
                ctx.rec.now(),
            )
            .with_error(e.to_string()),
        };
        ctx.rec.record(op);
    };
    match ctx.workload {
        Workload::Set => one(0, "read", format!("{ROOT}/set")).await,
        Workload::Seq => one(0, "read-seq", format!("{ROOT}/seq")).await,
        Workload::Multi => one(0, "read", format!("{ROOT}/multi")).await,
        Workload::Sessions => {
            for i in 0..ctx.addrs.len() {
                let process = proc_base + 100 + i as i64;
                let server = format!("n{}", i + 1);
                ctx.rec.record(Op::new(
                    process,
                    OpType::Invoke,
                    "final-ephemerals",
                    None,
                    json!({"server": server}),
                    ctx.rec.now(),
                ));
                let res: Result<BTreeMap<String, i64>, Error> = async {
                    let c = ctx.connect(i).await?;
                    c.sync(&format!("{ROOT}/eph")).await?;
                    let mut out = BTreeMap::new();
                    for name in c.get_children(&format!("{ROOT}/eph"), false).await? {
                        let p = format!("{ROOT}/eph/{name}");
                        if let Some(stat) = c.exists(&p, false).await? {
                            out.insert(p, stat.ephemeral_owner);
                        }
                    }
                    let _ = c.close().await;
                    Ok(out)
                }
                .await;
                let op = match res {
                    Ok(m) => Op::new(
                        process,
                        OpType::Ok,
                        "final-ephemerals",
                        None,
                        json!({"server": server, "ephemerals": m}),
                        ctx.rec.now(),
                    ),
                    Err(e) => Op::new(
                        process,
                        OpType::Info,
                        "final-ephemerals",
                        None,
                        Value::Null,
                        ctx.rec.now(),
                    )
                    .with_error(e.to_string()),
                };
                ctx.rec.record(op);
            }
        }
        Workload::Register | Workload::Watch => {}
    }
}

/// FNV-1a, enough to compare trees across servers.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100000001b3);
    }
}

/// Digest of the /jepsen subtree as one server serves it, and that server's last zxid.
async fn tree_digest(c: &Client) -> Result<(String, i64, usize), Error> {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut stack = vec![ROOT.to_string()];
    let mut n = 0;
    while let Some(p) = stack.pop() {
        let (data, stat) = match c.get_data(&p, false).await {
            Ok(x) => x,
            Err(Error::Keeper(ErrorCode::NoNode)) => continue,
            Err(e) => return Err(e),
        };
        n += 1;
        fnv(&mut h, p.as_bytes());
        fnv(&mut h, &data);
        fnv(&mut h, &stat.version.to_be_bytes());
        fnv(&mut h, &stat.cversion.to_be_bytes());
        fnv(&mut h, &stat.mzxid.to_be_bytes());
        fnv(&mut h, &stat.ephemeral_owner.to_be_bytes());
        let mut kids = c.get_children(&p, false).await?;
        kids.sort();
        for k in kids.into_iter().rev() {
            stack.push(format!("{p}/{k}"));
        }
    }
    let z = c.exists("/", false).await.map(|_| c.last_zxid())?;
    Ok((format!("{h:016x}"), z, n))
}

/// Convergence: each server's digest and last zxid, retried until the zxids agree (that is,
/// the cluster is quiescent) or `limit` passes; only the last round is recorded.
pub async fn final_states(ctx: &Ctx, limit: Duration) {
    let started = Instant::now();
    loop {
        // Every session create and close is a txn, so open all clients first, then read all,
        // then close: otherwise each server's read would see the previous one's session.
        let mut clients = Vec::new();
        for i in 0..ctx.addrs.len() {
            clients.push(ctx.connect(i).await);
        }
        let mut round = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let t0 = ctx.rec.now();
            let r = match c {
                Ok(c) => match c.sync("/").await {
                    Ok(_) => tree_digest(c).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(Error::Protocol(format!("connect: {e}"))),
            };
            round.push((i, t0, r));
        }
        for c in clients.into_iter().flatten() {
            let _ = c.close().await;
        }
        let zxids: std::collections::BTreeSet<i64> = round
            .iter()
            .filter_map(|r| r.2.as_ref().ok().map(|x| x.1))
            .collect();
        let all_ok = round.iter().all(|r| r.2.is_ok());
        if (all_ok && zxids.len() == 1) || started.elapsed() > limit {
            for (i, t0, r) in round {
                let process = 4_000_000 + i as i64;
                let server = format!("n{}", i + 1);
                ctx.rec.record(Op::new(
                    process,
                    OpType::Invoke,
                    "final-state",
                    None,
                    json!({"server": server}),
                    t0,
                ));
                ctx.rec.record(match r {
                    Ok((d, z, n)) => Op::new(
                        process,
                        OpType::Ok,
                        "final-state",
                        None,
                        json!({"server": server, "digest": d, "zxid": z, "znodes": n}),
                        ctx.rec.now(),
                    ),
                    Err(e) => Op::new(
                        process,
                        OpType::Info,
                        "final-state",
                        None,
                        Value::Null,
                        ctx.rec.now(),
                    )
                    .with_error(e.to_string()),
                });
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
