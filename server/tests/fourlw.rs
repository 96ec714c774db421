//! Four-letter words against the real `zkd` binary over TCP: every command with a session,
//! an ephemeral and a watch in place, and the whitelist refusal of a default-config server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use zkd_proto::records::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, GetDataRequest, ReplyHeader, RequestHeader,
};
use zkd_proto::{OpCode, Reader, Record};

mod common;
use common::ZkdProcess;

/// A running zkd (see tests/common), killed and cleaned up when dropped.
struct Zkd {
    process: ZkdProcess,
    port: u16,
}

/// Starts zkd; `extra_cfg` may override the common whitelist (`*`): the last key wins.
fn start_zkd(_name: &str, extra_cfg: &str) -> Zkd {
    let process = ZkdProcess::start_with_default_whitelist(extra_cfg);
    let port = process.addr().port();
    let z = Zkd { process, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    // srvr is always whitelisted, so it tells us the server answers.
    while !four(&z, "srvr").starts_with("Zookeeper version: ") {
        assert!(Instant::now() < deadline, "zkd did not start answering");
        std::thread::sleep(Duration::from_millis(50));
    }
    z
}

/// Sends a four-letter word on a fresh connection and reads the answer until close.
fn four(z: &Zkd, cmd: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", z.port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.write_all(cmd.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8(out).expect("utf-8 answer")
}

/// A minimal client: one session, synchronous requests.
struct Client {
    sock: TcpStream,
    session_id: i64,
    xid: i32,
}

impl Client {
    fn connect(z: &Zkd, timeout_ms: i32) -> Client {
        let mut sock = TcpStream::connect(("127.0.0.1", z.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: timeout_ms,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: false,
            has_read_only: true,
        };
        sock.write_all(&zkd_proto::frame::frame(&req.to_bytes()))
            .unwrap();
        let body = read_frame(&mut sock);
        let rsp = ConnectResponse::read(&mut Reader::new(&body)).unwrap();
        assert_ne!(rsp.session_id, 0);
        Client {
            sock,
            session_id: rsp.session_id,
            xid: 0,
        }
    }

    fn call(&mut self, op: OpCode, body: &[u8]) -> i32 {
        self.xid += 1;
        let mut msg = RequestHeader {
            xid: self.xid,
            op_type: op.as_i32(),
        }
        .to_bytes();
        msg.extend_from_slice(body);
        self.sock.write_all(&zkd_proto::frame::frame(&msg)).unwrap();
        let reply = read_frame(&mut self.sock);
        let h = ReplyHeader::read(&mut Reader::new(&reply)).unwrap();
        assert_eq!(h.xid, self.xid);
        h.err
    }

    fn create(&mut self, path: &str, data: &[u8], flags: i32) {
        let req = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            flags,
        };
        assert_eq!(
            self.call(OpCode::Create, &req.to_bytes()),
            0,
            "create {path}"
        );
    }
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

fn value<'a>(mntr: &'a str, key: &str) -> &'a str {
    mntr.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t')))
        .unwrap_or_else(|| panic!("{key} missing from mntr:\n{mntr}"))
}

#[test]
fn every_command_over_tcp() {
    let z = start_zkd("all", "4lw.commands.whitelist=*\n");
    let mut c = Client::connect(&z, 10_000);
    c.create("/app", b"hello", 0);
    c.create("/app/e1", b"x", 1);
    let get = GetDataRequest {
        path: "/app".into(),
        watch: true,
    };
    assert_eq!(c.call(OpCode::GetData, &get.to_bytes()), 0);
    let sid = format!("0x{:x}", c.session_id);
    let local = c.sock.local_addr().unwrap();

    assert_eq!(four(&z, "ruok"), "imok");
    assert_eq!(four(&z, "isro"), "rw");

    let stat = four(&z, "stat");
    let l: Vec<&str> = stat.split('\n').collect();
    assert!(l[0].starts_with("Zookeeper version: 3.9.5-zkd-"), "{stat}");
    assert_eq!(l[1], "Clients:", "{stat}");
    // The client (handshake + 3 requests), the connection asking, and possibly earlier
    // command connections the server has not finished tearing down yet.
    let clients: Vec<&str> = l[2..]
        .iter()
        .take_while(|x| !x.is_empty())
        .copied()
        .collect();
    let client_line = format!(" /{local}[1](queued=0,recved=4,sent=4)");
    assert!(clients.contains(&client_line.as_str()), "{stat}");
    let asking = clients
        .iter()
        .filter(|x| x.ends_with("[0](queued=0,recved=1,sent=0)"))
        .count();
    assert_eq!(asking, 1, "{stat}");
    assert!(
        clients.iter().all(|x| *x == client_line
            || x.ends_with("](queued=0,recved=1,sent=0)")
            || x.ends_with("](queued=0,recved=1,sent=1)")),
        "{stat}"
    );
    assert!(stat.contains("\n\nLatency min/avg/max: "), "{stat}");
    assert!(
        stat.ends_with(&format!(
            "Connections: {}\nOutstanding: 0\nZxid: 0x3\nMode: standalone\nNode count: 7\n",
            clients.len()
        )),
        "{stat}"
    );

    let srvr = four(&z, "srvr");
    assert!(!srvr.contains("Clients:"));
    let keys: Vec<&str> = srvr.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "Zookeeper version",
            "Latency min/avg/max",
            "Received",
            "Sent",
            "Connections",
            "Outstanding",
            "Zxid",
            "Mode",
            "Node count"
        ]
    );

    let mntr = four(&z, "mntr");
    assert!(mntr
        .lines()
        .all(|l| l.starts_with("zk_") && l.contains('\t')));
    assert!(value(&mntr, "zk_version").starts_with("3.9.5-zkd-"));
    assert_eq!(value(&mntr, "zk_server_state"), "standalone");
    assert_eq!(value(&mntr, "zk_znode_count"), "7");
    assert_eq!(value(&mntr, "zk_ephemerals_count"), "1");
    assert_eq!(value(&mntr, "zk_watch_count"), "1");
    assert_eq!(value(&mntr, "zk_global_sessions"), "1");
    assert!(
        value(&mntr, "zk_num_alive_connections")
            .parse::<u32>()
            .unwrap()
            >= 2
    );
    assert_eq!(value(&mntr, "zk_outstanding_requests"), "0");
    assert_eq!(value(&mntr, "zk_approximate_data_size"), "61");
    assert!(value(&mntr, "zk_packets_received").parse::<u64>().is_ok());
    assert!(value(&mntr, "zk_uptime").parse::<u64>().is_ok());
    if cfg!(target_os = "linux") {
        assert!(
            value(&mntr, "zk_open_file_descriptor_count")
                .parse::<u64>()
                .unwrap()
                > 0
        );
    }

    let conf = four(&z, "conf");
    assert!(conf.starts_with(&format!("clientPort={}\nsecureClientPort=-1\n", z.port)));
    assert!(conf.contains(&format!(
        "\ndataDir={}/version-2\n",
        z.process.dir().join("data").display()
    )));
    assert!(
        conf.ends_with("clientPortListenBacklog=-1\nserverId=0\n"),
        "{conf}"
    );

    let cons = four(&z, "cons");
    let line = cons
        .lines()
        .find(|l| l.starts_with(&format!(" /{local}[")))
        .unwrap_or_else(|| panic!("{cons}"));
    assert!(
        line.starts_with(&format!(
            " /{local}[1](queued=0,recved=4,sent=4,sid={sid},lop=GETD,est="
        )),
        "{line}"
    );
    assert!(
        line.contains(",to=10000,lcxid=0x3,lzxid=0x3,lresp="),
        "{line}"
    );
    // Latencies include the log's fsync now: check the shape, not the values.
    let lat = line.rsplit_once(",llat=").map(|(_, t)| t).unwrap_or("");
    let fields: Vec<&str> = lat.trim_end_matches(')').split(',').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert!(
        fields[1].starts_with("minlat=") && fields[3].starts_with("maxlat="),
        "{line}"
    );
    assert!(
        std::iter::once(fields[0])
            .chain(
                fields[1..]
                    .iter()
                    .map(|f| f.split('=').nth(1).unwrap_or("x"))
            )
            .all(|v| v.parse::<u64>().is_ok()),
        "{line}"
    );
    assert!(cons.ends_with(")\n\n"));

    let dump = four(&z, "dump");
    assert!(dump.starts_with("SessionTracker dump:\nSession Sets (1)/(1):\n1 expire at "));
    assert!(dump.contains(&format!(
        "\nephemeral nodes dump:\nSessions with Ephemerals (1):\n{sid}:\n\t/app/e1\nConnections dump:\n"
    )));

    assert_eq!(
        four(&z, "wchs"),
        "1 connections watching 1 paths\nTotal watches:1\n"
    );
    assert_eq!(four(&z, "wchc"), format!("{sid}\n\t/app\n\n"));
    assert_eq!(four(&z, "wchp"), format!("/app\n\t{sid}\n\n"));

    let dirs = four(&z, "dirs");
    let d: Vec<&str> = dirs.lines().collect();
    assert_eq!(d.len(), 2, "{dirs}");
    assert!(d[0]
        .strip_prefix("datadir_size: ")
        .is_some_and(|n| n.parse::<u64>().is_ok()));
    assert!(d[1]
        .strip_prefix("logdir_size: ")
        .is_some_and(|n| n.parse::<u64>().is_ok()));

    let envi = four(&z, "envi");
    assert!(envi.starts_with("Environment:\nzookeeper.version=3.9.5-zkd-"));
    assert!(envi.contains("\nos.name="));
    assert!(four(&z, "gtmk").parse::<i64>().is_ok());
    assert_eq!(four(&z, "hash"), "");

    assert_eq!(four(&z, "crst"), "Connection stats reset.\n");
    let cons = four(&z, "cons");
    assert!(
        cons.contains(&format!(
            " /{local}[1](queued=0,recved=0,sent=0,sid={sid},lop=NA,est="
        )),
        "{cons}"
    );
    assert!(cons.contains(",lzxid=0xffffffffffffffff,lresp=0,llat=0,"));

    assert_eq!(four(&z, "srst"), "Server stats reset.\n");
    let srvr = four(&z, "srvr");
    assert!(srvr.contains("\nReceived: 1\nSent: 1\n"), "{srvr}");

    // The session is untouched by all of this.
    assert_eq!(c.call(OpCode::GetData, &get.to_bytes()), 0);
}

#[test]
fn default_whitelist_refuses_all_but_srvr() {
    let z = start_zkd("default", "");
    for cmd in [
        "ruok", "stat", "mntr", "conf", "cons", "crst", "srst", "envi", "dump", "wchs", "wchc",
        "wchp", "dirs", "isro", "gtmk", "stmk", "hash",
    ] {
        assert_eq!(
            four(&z, cmd),
            format!("{cmd} is not executed because it is not in the whitelist.\n")
        );
    }
    let srvr = four(&z, "srvr");
    assert!(srvr.starts_with("Zookeeper version: 3.9.5-zkd-"), "{srvr}");
    assert!(
        srvr.ends_with("Mode: standalone\nNode count: 5\n"),
        "{srvr}"
    );
}

#[test]
fn explicit_whitelist_allows_only_its_words() {
    let z = start_zkd("some", "4lw.commands.whitelist=ruok, mntr\n");
    assert_eq!(four(&z, "ruok"), "imok");
    assert!(four(&z, "mntr").starts_with("zk_version\t3.9.5-zkd-"));
    assert!(four(&z, "srvr").starts_with("Zookeeper version: "));
    assert_eq!(
        four(&z, "stat"),
        "stat is not executed because it is not in the whitelist.\n"
    );
}
