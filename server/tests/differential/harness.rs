//! Processes and sockets for the differential test: starting zkd and Apache ZooKeeper on
//! free ports (killed on Drop, even when the test panics), and a tiny synchronous raw-frame
//! client that sends one request at a time and collects the notifications (xid -1) that
//! arrive before its reply.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zkd_proto::records::{ConnectRequest, ConnectResponse, ReplyHeader, WatcherEvent};
use zkd_proto::{Reader, Record, Request};

pub const APACHE_JAR: &str = "/usr/share/java/zookeeper.jar";
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A directory removed on Drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "zkd-differential-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("ZKD_DIFF_KEEP").is_some() {
            eprintln!("keeping {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

enum Proc {
    Zkd(Child),
    Apache(u32),
}

/// A running server; the process is stopped when this is dropped.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    proc: Proc,
    // Declared last: dropped after the process is gone.
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.proc {
            Proc::Zkd(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Proc::Apache(pid) => {
                let _ = Command::new("bash")
                    .arg(compat_dir().join("stop-apache-zk.sh"))
                    .arg(pid.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("compat")
}

/// Why the reference server cannot run here, if it cannot.
pub fn apache_missing() -> Option<String> {
    if !Path::new(APACHE_JAR).exists() {
        return Some(format!(
            "{APACHE_JAR} not found (apt-get install zookeeper)"
        ));
    }
    let script = compat_dir().join("start-apache-zk.sh");
    if !script.exists() {
        return Some(format!("{} not found", script.display()));
    }
    match Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some("no working `java` on PATH".to_string()),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn ruok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"ruok").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf == b"imok"
}

pub fn start_zkd() -> Server {
    let dir = TempDir::new("zkd");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("create data dir");
    let mut last_err = String::new();
    for _attempt in 0..5 {
        let port = free_port();
        let cfg = dir.0.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 extendedTypesEnabled=true\n4lw.commands.whitelist=*\n",
                data.display()
            ),
        )
        .expect("write zoo.cfg");
        let log = std::fs::File::create(dir.0.join("zkd.log")).expect("create zkd.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .arg(&cfg)
            .env("ZKD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn zkd");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last_err = format!(
                    "zkd exited early ({status}): {}",
                    std::fs::read_to_string(dir.0.join("zkd.log")).unwrap_or_default()
                );
                break;
            }
            if ruok(port) {
                return Server {
                    name: "zkd",
                    port,
                    proc: Proc::Zkd(child),
                    _dir: dir,
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_err = "zkd did not answer ruok within 15 s".into();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("cannot start zkd: {last_err}");
}

pub fn start_apache() -> Server {
    let dir = TempDir::new("apache");
    let out = Command::new("bash")
        .arg(compat_dir().join("start-apache-zk.sh"))
        .arg(&dir.0)
        .stdin(Stdio::null())
        .output()
        .expect("run start-apache-zk.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut it = stdout.split_whitespace();
    let parsed = match (it.next(), it.next()) {
        (Some(p), Some(pid)) => p.parse::<u16>().ok().zip(pid.parse::<u32>().ok()),
        _ => None,
    };
    match parsed {
        Some((port, pid)) if out.status.success() => Server {
            name: "zookeeper",
            port,
            proc: Proc::Apache(pid),
            _dir: dir,
        },
        _ => panic!(
            "start-apache-zk.sh failed ({}): stdout={stdout:?} stderr={}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One session on one connection, used strictly request/reply.
pub struct Client {
    stream: TcpStream,
    next_xid: i32,
    pub session_id: i64,
    server: &'static str,
}

/// A decoded reply: header and the body bytes that followed it.
pub struct Reply {
    pub header: ReplyHeader,
    pub body: Vec<u8>,
}

impl Client {
    pub fn connect(server: &Server) -> Result<Client, String> {
        let stream = TcpStream::connect(("127.0.0.1", server.port))
            .map_err(|e| format!("{}: connect: {e}", server.name))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_nodelay(true).ok();
        let mut c = Client {
            stream,
            next_xid: 1,
            session_id: 0,
            server: server.name,
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 30_000,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: false,
            has_read_only: true,
        };
        c.write_frame(&req.to_bytes())?;
        let f = c.read_frame()?;
        let rsp = ConnectResponse::read(&mut Reader::new(&f))
            .map_err(|e| format!("{}: bad ConnectResponse: {e}", c.server))?;
        if rsp.session_id == 0 || rsp.time_out <= 0 {
            return Err(format!("{}: session refused: {rsp:?}", c.server));
        }
        c.session_id = rsp.session_id;
        Ok(c)
    }

    fn write_frame(&mut self, body: &[u8]) -> Result<(), String> {
        let mut buf = Vec::with_capacity(body.len() + 4);
        buf.extend_from_slice(&(body.len() as i32).to_be_bytes());
        buf.extend_from_slice(body);
        self.stream
            .write_all(&buf)
            .map_err(|e| format!("{}: write: {e}", self.server))
    }

    fn read_frame(&mut self) -> Result<Vec<u8>, String> {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| format!("{}: read length: {e}", self.server))?;
        let n = i32::from_be_bytes(len);
        if !(0..=(1 << 22)).contains(&n) {
            return Err(format!("{}: bad frame length {n}", self.server));
        }
        let mut buf = vec![0u8; n as usize];
        self.stream
            .read_exact(&mut buf)
            .map_err(|e| format!("{}: read frame: {e}", self.server))?;
        Ok(buf)
    }

    /// Sends `req` and waits for its reply; notifications received meanwhile are appended
    /// to `events` in arrival order.
    pub fn call(&mut self, req: &Request, events: &mut Vec<WatcherEvent>) -> Result<Reply, String> {
        let xid = match req {
            Request::Auth(_) => zkd_proto::records::xid::AUTH,
            Request::Ping => zkd_proto::records::xid::PING,
            _ => {
                self.next_xid += 1;
                self.next_xid
            }
        };
        let frame = req.encode_frame(xid);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("{}: write: {e}", self.server))?;
        loop {
            let f = self.read_frame()?;
            let mut r = Reader::new(&f);
            let header = ReplyHeader::read(&mut r)
                .map_err(|e| format!("{}: bad reply header: {e}", self.server))?;
            if header.xid == zkd_proto::records::xid::NOTIFICATION {
                let ev = WatcherEvent::read(&mut r)
                    .map_err(|e| format!("{}: bad notification: {e}", self.server))?;
                events.push(ev);
                continue;
            }
            if header.xid != xid {
                return Err(format!(
                    "{}: reply xid {} while waiting for xid {xid} ({header:?})",
                    self.server, header.xid
                ));
            }
            return Ok(Reply {
                header,
                body: r.rest().to_vec(),
            });
        }
    }
}
