//! Three real cores with real zab state machines, wired in one process: messages are
//! delivered by hand, the txn log is a Vec that fsyncs at once, the storage is in memory.
//! Everything but sockets and files runs as in a server, so these tests check the host
//! glue (`execute`, `route`, `to_zab`) and the core's ensemble roles together.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use zkd_proto::records::*;
use zkd_proto::{CreateMode, OpCode, Reader, Record, Request, Writer};
use zkd_storage::{MemBackend, Storage, StorageOptions};

use super::*;
use crate::core::Output;
use crate::watch::ConnId;

const T0: i64 = 1_000_000;

#[derive(Default)]
struct Outbox {
    msgs: Mutex<VecDeque<(ServerId, Message)>>,
}

impl PeerSender for Outbox {
    fn send(&self, to: ServerId, msg: &Message) {
        self.msgs.lock().push_back((to, msg.clone()));
    }
    fn disconnect(&self, _peer: ServerId) {}
}

struct Host {
    io: EnsembleIo,
    outbox: Arc<Outbox>,
    log: RefCell<Vec<(i64, Vec<u8>)>>,
}

impl EnsembleHost for Host {
    fn append(&self, zxid: i64, payload: Vec<u8>) {
        self.log.borrow_mut().push((zxid, payload));
    }
    fn truncate_log(&self, after: i64) -> Result<(), String> {
        self.log.borrow_mut().retain(|(z, _)| *z <= after);
        Ok(())
    }
    fn io(&self) -> &EnsembleIo {
        &self.io
    }
}

struct Server {
    id: ServerId,
    core: Core,
    host: Host,
    /// Client frames this server sent, per connection.
    sent: BTreeMap<ConnId, Vec<Vec<u8>>>,
    closed: Vec<ConnId>,
    alive: bool,
    /// Its ticks do not run (messages still arrive).
    ticks_stalled: bool,
}

struct Cluster {
    servers: Vec<Server>,
    now: i64,
}

fn config(id: u64) -> crate::config::Config {
    let mut c = crate::config::Config {
        extended_types_enabled: true,
        my_id: Some(id),
        standalone_enabled: false,
        ..Default::default()
    };
    for n in 1..=3u64 {
        c.servers.push(crate::config::ServerSpec {
            id: n,
            host: "127.0.0.1".into(),
            quorum_port: 2000 + n as u16,
            election_port: 3000 + n as u16,
            role: PeerRole::Participant,
            client_host: None,
            client_port: None,
        });
    }
    c
}

impl Cluster {
    fn new() -> Cluster {
        let servers = (1..=3u64)
            .map(|id| {
                let cfg = config(id);
                let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
                let dir = format!("/data{id}");
                let (storage, _) = Storage::open(
                    backend.clone(),
                    Path::new(&dir),
                    Path::new(&dir),
                    StorageOptions::default(),
                )
                .unwrap();
                let outbox = Arc::new(Outbox::default());
                let mut core = Core::new(cfg.clone(), T0);
                let zab =
                    zkd_zab::Zab::new(zab_config(&cfg).unwrap(), Restored::default(), id).unwrap();
                core.zab = Some(Box::new(zab));
                core.set_replication(Replication::Unavailable, 0, T0);
                core.take_output();
                Server {
                    id,
                    core,
                    host: Host {
                        io: EnsembleIo {
                            sender: outbox.clone(),
                            epochs: EpochFiles::new(Path::new(&dir)),
                            backend,
                            storage: Arc::new(storage),
                            peers: (1..=3).filter(|p| *p != id).collect(),
                        },
                        outbox,
                        log: RefCell::new(Vec::new()),
                    },
                    sent: BTreeMap::new(),
                    closed: Vec::new(),
                    alive: true,
                    ticks_stalled: false,
                }
            })
            .collect();
        Cluster { servers, now: T0 }
    }

    fn s(&mut self, id: ServerId) -> &mut Server {
        &mut self.servers[id as usize - 1]
    }

    /// Routes one server's outputs; its log "fsyncs" everything at once.
    fn settle(&mut self, i: usize) {
        let now = self.now;
        let s = &mut self.servers[i];
        let Server {
            core,
            host,
            sent,
            closed,
            ..
        } = s;
        let mut to_clients = |_: &mut Core, outs: Vec<Output>| {
            for o in outs {
                match o {
                    Output::Send { conn, frame } => sent.entry(conn).or_default().push(frame),
                    Output::Close { conn } => closed.push(conn),
                    other => panic!("unexpected client output {other:?}"),
                }
            }
        };
        route(host, core, now, &mut to_clients);
        let last = host.log.borrow().last().map(|(z, _)| *z);
        if let Some(z) = last {
            core.synced(z, now);
            route(host, core, now, &mut to_clients);
        }
    }

    /// Delivers messages until the network is quiet.
    fn run(&mut self) {
        for _ in 0..10_000 {
            for i in 0..self.servers.len() {
                self.settle(i);
            }
            let mut moved = false;
            for i in 0..self.servers.len() {
                let from = self.servers[i].id;
                let msgs: Vec<_> = self.servers[i].host.outbox.msgs.lock().drain(..).collect();
                for (to, msg) in msgs {
                    moved = true;
                    let alive = self.servers[i].alive;
                    let dst = &mut self.servers[to as usize - 1];
                    if alive && dst.alive {
                        super::deliver(&mut dst.core, from, msg);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster never went quiet");
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            self.now += 2000;
            for s in &mut self.servers {
                if s.alive && !s.ticks_stalled {
                    s.core.tick(self.now);
                    super::tick(&mut s.core);
                }
            }
            self.run();
        }
    }

    fn leader(&self) -> Option<ServerId> {
        self.servers
            .iter()
            .find(|s| s.alive && s.core.replication == Replication::Leader)
            .map(|s| s.id)
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 40000 + n as u16))
}

fn reply(frame: &[u8]) -> (ReplyHeader, Vec<u8>) {
    let mut r = Reader::new(&frame[4..]);
    let h = ReplyHeader::read(&mut r).unwrap();
    (h, r.rest().to_vec())
}

/// Opens connection `conn` to `server` and sends its handshake: a new session when
/// `session_id` is 0, else a resume with that session's password.
fn handshake(
    c: &mut Cluster,
    server: ServerId,
    conn: ConnId,
    session_id: i64,
    last_zxid_seen: i64,
) {
    let now = c.now;
    let passwd = if session_id == 0 {
        vec![0; 16]
    } else {
        crate::session::session_password(session_id).to_vec()
    };
    let s = c.s(server);
    assert!(s.core.accept(conn, addr(conn as u8), now));
    s.core.connect(
        conn,
        &ConnectRequest {
            time_out: 30_000,
            session_id,
            passwd,
            last_zxid_seen,
            has_read_only: true,
            ..Default::default()
        },
        now,
    );
}

fn connect(c: &mut Cluster, server: ServerId, conn: ConnId) -> i64 {
    handshake(c, server, conn, 0, 0);
    c.run();
    let frames = c.s(server).sent.remove(&conn).unwrap_or_default();
    let rsp = ConnectResponse::from_bytes(&frames[0][4..]).unwrap();
    assert!(rsp.session_id != 0, "session refused");
    rsp.session_id
}

fn request(
    c: &mut Cluster,
    server: ServerId,
    conn: ConnId,
    xid: i32,
    req: &Request,
) -> (ReplyHeader, Vec<u8>) {
    let now = c.now;
    let mut w = Writer::new();
    req.encode_body(&mut w);
    c.s(server)
        .core
        .request(conn, xid, req.op_code() as i32, &w.buf, now);
    c.run();
    let frames = c.s(server).sent.remove(&conn).unwrap_or_default();
    let replies: Vec<_> = frames
        .iter()
        .map(|f| reply(f))
        .filter(|(h, _)| h.xid == xid)
        .collect();
    assert_eq!(replies.len(), 1, "one reply to xid {xid}: {replies:?}");
    replies.into_iter().next().unwrap()
}

/// A client ping on `conn`, then one tick of the whole cluster.
fn ping_and_tick(c: &mut Cluster, server: ServerId, conn: ConnId) {
    let now = c.now;
    let mut w = Writer::new();
    Request::Ping.encode_body(&mut w);
    c.s(server)
        .core
        .request(conn, -2, OpCode::Ping as i32, &w.buf, now);
    c.tick(1);
    c.s(server).sent.clear();
}

fn create(path: &str, mode: CreateMode) -> Request {
    Request::Create {
        op: OpCode::Create,
        req: CreateRequest {
            path: path.into(),
            data: Some(path.as_bytes().to_vec()),
            acl: Acl::open_unsafe(),
            flags: mode.flag(),
        },
    }
}

#[test]
fn three_servers_elect_a_leader_and_serve_writes_from_any_server() {
    let mut c = Cluster::new();
    c.tick(5);
    let leader = c.leader().expect("a leader after a few ticks");
    let followers: Vec<ServerId> = (1..=3).filter(|i| *i != leader).collect();
    for f in &followers {
        assert_eq!(c.s(*f).core.replication, Replication::Learner);
    }
    // A client on a follower: its session, an ephemeral and a sequential node.
    let f = followers[0];
    let sid = connect(&mut c, f, 1);
    let (h, body) = request(&mut c, f, 1, 1, &create("/a", CreateMode::Persistent));
    assert_eq!(h.err, 0);
    assert_eq!(CreateResponse::from_bytes(&body).unwrap().path, "/a");
    let (h, _) = request(&mut c, f, 1, 2, &create("/a/e", CreateMode::Ephemeral));
    assert_eq!(h.err, 0);
    // A client on the leader sees them (after sync, which is a quorum barrier).
    connect(&mut c, leader, 2);
    let (h, _) = request(
        &mut c,
        leader,
        2,
        1,
        &Request::Sync(SyncRequest { path: "/a".into() }),
    );
    assert_eq!(h.err, 0);
    let (h, body) = request(
        &mut c,
        leader,
        2,
        2,
        &Request::GetData(GetDataRequest {
            path: "/a/e".into(),
            watch: false,
        }),
    );
    assert_eq!(h.err, 0);
    let rsp = GetDataResponse::from_bytes(&body).unwrap();
    assert_eq!(rsp.stat.ephemeral_owner, sid);
    // Every server holds the same tree at the same zxid.
    let zxids: Vec<i64> = c
        .servers
        .iter()
        .map(|s| s.core.tree.last_processed_zxid)
        .collect();
    assert!(zxids.iter().all(|z| *z == zxids[0]), "{zxids:?}");
    let paths: Vec<Vec<String>> = c.servers.iter().map(|s| s.core.tree.paths()).collect();
    assert!(paths.iter().all(|p| *p == paths[0]));
    // The zxid epoch is the established epoch, not 0.
    assert!(zxids[0] >> 32 >= 1, "{:#x}", zxids[0]);
}

#[test]
fn a_learners_silent_session_is_expired_by_the_leader_on_every_server() {
    let mut c = Cluster::new();
    c.tick(5);
    let leader = c.leader().unwrap();
    let f = (1..=3).find(|i| *i != leader).unwrap();
    connect(&mut c, f, 1);
    let (h, _) = request(&mut c, f, 1, 1, &create("/e", CreateMode::Ephemeral));
    assert_eq!(h.err, 0);
    // The client goes silent (no pings): after its 30 s timeout the leader expires it.
    c.s(f).core.disconnected(1);
    c.tick(20);
    for s in &c.servers {
        assert!(
            s.core.tree.get("/e").is_none(),
            "server {} kept the ephemeral",
            s.id
        );
    }
}

/// A settled cluster whose client 1, on a follower, created the ephemeral /e: (cluster,
/// leader, follower).
fn ephemeral_on_a_follower() -> (Cluster, ServerId, ServerId) {
    let mut c = Cluster::new();
    c.tick(5);
    let leader = c.leader().unwrap();
    let f = (1..=3).find(|i| *i != leader).unwrap();
    connect(&mut c, f, 1);
    request(&mut c, f, 1, 1, &create("/e", CreateMode::Ephemeral));
    (c, leader, f)
}

#[test]
fn a_client_kept_alive_through_a_follower_keeps_its_ephemeral() {
    let (mut c, leader, f) = ephemeral_on_a_follower();
    for _ in 0..20 {
        // A ping every tick: the follower reports the session to the leader.
        ping_and_tick(&mut c, f, 1);
    }
    assert!(c.s(leader).core.tree.get("/e").is_some());
}

#[test]
fn a_follower_whose_ticks_stall_still_reports_its_sessions_on_the_leaders_pings() {
    // Its timers stopped (its monotonic clock went back, its runtime starved), its sockets
    // did not: the leader must go on hearing about the sessions it serves from each PING
    // answer, as ZooKeeper's leader does.
    let (mut c, leader, f) = ephemeral_on_a_follower();
    c.s(f).ticks_stalled = true;
    for _ in 0..20 {
        ping_and_tick(&mut c, f, 1);
    }
    assert!(c.s(leader).core.tree.get("/e").is_some());
    // Without the client's pings the session does expire.
    for _ in 0..20 {
        c.tick(1);
    }
    assert!(c.s(leader).core.tree.get("/e").is_none());
}

#[test]
fn after_the_leader_dies_a_new_one_serves_and_sessions_move_between_servers() {
    let mut c = Cluster::new();
    c.tick(5);
    let old = c.leader().unwrap();
    let f = (1..=3).find(|i| *i != old).unwrap();
    let sid = connect(&mut c, f, 1);
    request(&mut c, f, 1, 1, &create("/before", CreateMode::Persistent));
    let (h, _) = request(&mut c, f, 1, 2, &create("/mine", CreateMode::Ephemeral));
    assert_eq!(h.err, 0);
    let before = c.s(f).core.tree.last_processed_zxid;

    c.s(old).alive = false;
    c.tick(15);
    let new = c.leader().expect("the two survivors elect a leader");
    assert_ne!(new, old);
    // The role change closed the follower's clients; the session lives on (it is
    // global) and resumes on the other survivor, password checked.
    let other = (1..=3).find(|i| *i != old && *i != f).unwrap();
    handshake(&mut c, other, 7, sid, before);
    c.run();
    let frames = c.s(other).sent.remove(&7).unwrap();
    let rsp = ConnectResponse::from_bytes(&frames[0][4..]).unwrap();
    assert_eq!(rsp.session_id, sid, "the session resumed on server {other}");
    let (h, _) = request(
        &mut c,
        other,
        7,
        3,
        &create("/after", CreateMode::Persistent),
    );
    assert_eq!(h.err, 0);
    assert!(
        h.zxid >> 32 > before >> 32,
        "a new epoch: {:#x} after {before:#x}",
        h.zxid
    );
    for id in [f, other] {
        let t = &c.s(id).core.tree;
        assert!(t.get("/before").is_some() && t.get("/after").is_some());
        assert_eq!(t.get("/mine").unwrap().stat.ephemeral_owner, sid);
    }
}

#[test]
fn a_lagging_server_refuses_a_client_that_has_seen_a_newer_zxid() {
    let mut c = Cluster::new();
    c.tick(5);
    let leader = c.leader().unwrap();
    let lagging = (1..=3).find(|i| *i != leader).unwrap();
    connect(&mut c, leader, 1);
    // The lagging follower hears nothing while the leader commits with the other one.
    c.s(lagging).alive = false;
    let (h, _) = request(
        &mut c,
        leader,
        1,
        1,
        &create("/new", CreateMode::Persistent),
    );
    assert_eq!(h.err, 0);
    c.s(lagging).alive = true;
    let seen = h.zxid;
    assert!(c.s(lagging).core.tree.last_processed_zxid < seen);
    handshake(&mut c, lagging, 9, 0, seen);
    // "client must try another server": closed without a ConnectResponse.
    let outs = c.s(lagging).core.take_output();
    assert!(
        outs.iter()
            .all(|o| !matches!(o, Output::Send { conn: 9, .. })),
        "{outs:?}"
    );
    assert!(outs.iter().any(|o| matches!(o, Output::Close { conn: 9 })));
}

#[test]
fn a_new_leader_restarts_every_session_clock() {
    let mut c = Cluster::new();
    c.tick(5);
    let old = c.leader().unwrap();
    let sid = connect(&mut c, old, 1);
    request(&mut c, old, 1, 1, &create("/mine", CreateMode::Ephemeral));
    // 40 s of pings to the leader itself: the followers' session clocks never move (only
    // learners report touches), so theirs passed the 30 s timeout long ago.
    for _ in 0..20 {
        let now = c.now;
        let mut w = Writer::new();
        Request::Ping.encode_body(&mut w);
        c.s(old)
            .core
            .request(1, -2, OpCode::Ping as i32, &w.buf, now);
        c.tick(1);
        c.s(old).sent.clear();
    }
    c.s(old).alive = false;
    c.tick(6);
    let new = c.leader().expect("a new leader");
    assert_ne!(new, old);
    // The new leader gives the session a full timeout from its election, so the client
    // has time to reconnect.
    for id in (1..=3).filter(|i| *i != old) {
        let t = &c.s(id).core.tree;
        assert_eq!(t.get("/mine").map(|n| n.stat.ephemeral_owner), Some(sid));
    }
    // And it does expire a full timeout later if the client never comes back.
    c.tick(20);
    for id in (1..=3).filter(|i| *i != old) {
        assert!(c.s(id).core.tree.get("/mine").is_none());
    }
}

#[test]
fn a_follower_resumes_a_session_only_with_the_leaders_word() {
    let mut c = Cluster::new();
    c.tick(5);
    let leader = c.leader().unwrap();
    let f = (1..=3).find(|i| *i != leader).unwrap();
    let sid = connect(&mut c, f, 1);
    c.s(f).core.disconnected(1);
    let resume = |c: &mut Cluster, conn: ConnId| handshake(c, f, conn, sid, 0);
    // Cut off from the leader, the follower does not answer the resume by itself.
    c.s(leader).alive = false;
    resume(&mut c, 2);
    c.run();
    assert!(!c.s(f).sent.contains_key(&2), "answered without the leader");
    // With the leader back, the resume goes through a barrier and succeeds.
    c.s(leader).alive = true;
    c.tick(1);
    c.s(f).core.disconnected(2);
    resume(&mut c, 3);
    c.run();
    let frames = c
        .s(f)
        .sent
        .remove(&3)
        .expect("an answer once the leader replied");
    assert_eq!(
        ConnectResponse::from_bytes(&frames[0][4..])
            .unwrap()
            .session_id,
        sid
    );
    // Once the leader expired the session, the follower says so.
    c.s(f).core.disconnected(3);
    c.tick(20);
    resume(&mut c, 4);
    c.run();
    let frames = c.s(f).sent.remove(&4).expect("an answer");
    assert_eq!(
        ConnectResponse::from_bytes(&frames[0][4..])
            .unwrap()
            .session_id,
        0
    );
}
