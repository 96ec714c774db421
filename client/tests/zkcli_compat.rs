//! zkcli against zkCli.sh: the same commands, on the same server, give the same output.
//!
//! Each scenario feeds one batch of commands to Apache ZooKeeper's zkCli.sh and to our
//! zkcli (one process each, commands on stdin, as both read a pipe) and compares stdout
//! and stderr line by line. Runs against `ZKD_TEST_ZK_ADDR` if set (zkd or ZooKeeper),
//! else starts an Apache ZooKeeper with compat/start-apache-zk.sh and stops it after
//! (also on panic). Without zkCli.sh or Java the test skips with a message, unless
//! `ZKD_REQUIRE_REFERENCE=1`, which makes that a failure.
//!
//! What is compared, and what is not:
//! - Read-only commands run on one tree, so both outputs must be identical, Stat
//!   blocks included.
//! - Writing commands run the same script under two bases (one per CLI); zxids, times
//!   and session ids then differ legitimately and are masked, nothing else is.
//! - Watch events are printed by zkCli.sh from another thread, at a moment that races
//!   with the command output, so events are compared as a sorted list, apart from the
//!   other lines.
//! - A network cut (a relay between CLI and server that drops connections) checks
//!   Disconnected/SyncConnected events, session resumption and watch re-registration.
//! - The installed reference is 3.8, zkcli follows 3.9. Two differences are mapped
//!   back: 3.9 events end in " zxid: N" (stripped from both), and 3.9's usage listing
//!   shows get's -b/-x and set's -b (3.8 lines are rewritten to 3.9's). 3.9-only output
//!   (get -b/-x, set -b, get/set usage with an option table) is checked against the
//!   text 3.9's source produces, on zkcli alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ZKCLI_SH: &str = "/usr/share/zookeeper/bin/zkCli.sh";
const ZKCLI: &str = env!("CARGO_BIN_EXE_zkcli");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why the reference cannot run, if it cannot.
fn reference_missing() -> Option<String> {
    if !Path::new(ZKCLI_SH).exists() {
        return Some(format!("{ZKCLI_SH} not found"));
    }
    match Command::new("java").arg("-version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("java not runnable".into()),
    }
}

/// The server under test; stops the Apache ZooKeeper it started when dropped.
struct Server {
    addr: String,
    started: Option<(String, PathBuf)>,
}

impl Server {
    fn get() -> Server {
        if let Ok(a) = std::env::var("ZKD_TEST_ZK_ADDR") {
            if !a.is_empty() {
                return Server {
                    addr: a,
                    started: None,
                };
            }
        }
        let dir = std::env::temp_dir().join(format!("zkcli-compat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("bash")
            .arg(repo_root().join("compat/start-apache-zk.sh"))
            .arg(&dir)
            .output()
            .expect("run start-apache-zk.sh");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = text.split_whitespace();
        let (port, pid) = match (it.next(), it.next()) {
            (Some(p), Some(pid)) if out.status.success() => (p.to_string(), pid.to_string()),
            _ => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "start-apache-zk.sh failed: {}{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        Server {
            addr: format!("127.0.0.1:{port}"),
            started: Some((pid, dir)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((pid, dir)) = self.started.take() {
            let _ = Command::new("bash")
                .arg(repo_root().join("compat/stop-apache-zk.sh"))
                .arg(&pid)
                .status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs `prog -server addr [args]` with `input` on stdin, bounded by 120 s.
fn run(prog: &str, addr: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("timeout")
        .arg("120")
        .arg(prog)
        .arg("-server")
        .arg(addr)
        .args(args)
        // Same zone for both, so Stat times print alike.
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// One CLI run, split into what is compared.
#[derive(Debug, PartialEq)]
struct Norm {
    out: Vec<String>,
    events: Vec<String>,
    err: Vec<String>,
    code: Option<i32>,
}

/// How one run is cleaned before comparing.
struct Masks<'a> {
    /// The run's base path, replaced by "/BASE".
    base: &'a str,
    /// Mask zxids, times and session ids (runs on different nodes).
    stat: bool,
    /// Drop session-connected events (their moment is a race in one-shot mode).
    drop_connect: bool,
}

fn strip_zxid(ev: &str) -> String {
    match ev.rfind(" zxid: ") {
        Some(i) => ev[..i].to_string(),
        None => ev.to_string(),
    }
}

fn mask_line(l: &str, m: &Masks) -> String {
    let mut l = l.replace(m.base, "/BASE");
    // getEphemerals prints the server's set in its own order (a hash set in
    // ZooKeeper, so it differs between sessions): compare the members.
    if l.starts_with("[/") && l.ends_with(']') {
        let mut items: Vec<&str> = l[1..l.len() - 1].split(", ").collect();
        items.sort();
        l = format!("[{}]", items.join(", "));
    }
    if !m.stat {
        return l;
    }
    for k in ["cZxid = ", "mZxid = ", "pZxid = ", "ctime = ", "mtime = "] {
        if let Some(i) = l.find(k) {
            return format!("{}{k}*", &l[..i]);
        }
    }
    if let Some(v) = l.strip_prefix("ephemeralOwner = ") {
        // TTL nodes carry their TTL there (0xff...), which is compared; a session id
        // is not.
        if v != "0x0" && !v.starts_with("0xff") {
            return "ephemeralOwner = *".into();
        }
    }
    l
}

/// 3.8 lines that 3.9 prints differently, rewritten to 3.9's text.
fn upgrade_38(l: &str) -> String {
    match l {
        "\tget [-s] [-w] path" => "\tget [-s] [-w] [-b] [-x] path".into(),
        "\tset [-s] [-v version] path data" => "\tset path data [-s] [-v version] [-b]".into(),
        _ => l.to_string(),
    }
}

fn normalize(o: &Output, m: &Masks) -> Norm {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l == "WATCHER::" && i + 2 < lines.len() && lines[i + 2].starts_with("WatchedEvent ") {
            // printMessage prints "\n" + msg: drop the blank line before each part.
            if out.last().is_some_and(|p: &String| p.is_empty()) {
                out.pop();
            }
            let ev = strip_zxid(lines[i + 2]);
            let connect = ev.contains("type:None") && ev.contains("state:SyncConnected");
            if !(m.drop_connect && connect) {
                events.push(mask_line(&ev, m));
            }
            i += 3;
            continue;
        }
        if l.starts_with("Connecting to ")
            || l == "Welcome to ZooKeeper!"
            || l.starts_with("JLine support is")
        {
            i += 1;
            continue;
        }
        out.push(mask_line(l, m));
        i += 1;
    }
    events.sort();
    let err = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.starts_with("SLF4J:") && !l.starts_with("log4j:"))
        .map(|l| mask_line(&upgrade_38(l), m))
        .collect();
    Norm {
        out,
        events,
        err,
        code: o.status.code(),
    }
}

fn show_diff(what: &str, java: &[String], ours: &[String]) -> Option<String> {
    if java == ours {
        return None;
    }
    let mut s = format!("{what} differs:\n");
    let n = java.len().max(ours.len());
    for i in 0..n {
        let (a, b) = (java.get(i), ours.get(i));
        let mark = if a == b { " " } else { "!" };
        s.push_str(&format!(
            "{mark} {:<60} | {}\n",
            a.map(String::as_str).unwrap_or("<none>"),
            b.map(String::as_str).unwrap_or("<none>")
        ));
    }
    Some(s)
}

/// Compares two normalized runs, returning a readable report of every difference.
fn compare(name: &str, java: &Norm, ours: &Norm) -> Vec<String> {
    let mut fails = Vec::new();
    for (what, a, b) in [
        ("stdout", &java.out, &ours.out),
        ("watch events", &java.events, &ours.events),
        ("stderr", &java.err, &ours.err),
    ] {
        if let Some(d) = show_diff(&format!("{name}: {what}"), a, b) {
            fails.push(d);
        }
    }
    if java.code != ours.code {
        fails.push(format!(
            "{name}: exit code zkCli.sh {:?}, zkcli {:?}",
            java.code, ours.code
        ));
    }
    fails
}

/// Runs `script` (with `$B` standing for a base path) through both CLIs and compares.
/// `shared` runs both on the same base (read-only scripts), else each gets its own.
fn scenario(server: &Server, name: &str, script: &str, shared_base: Option<&str>) -> Vec<String> {
    let pid = std::process::id();
    let (jb, rb) = match shared_base {
        Some(b) => (b.to_string(), b.to_string()),
        None => (
            format!("/zkcli-{name}-j{pid}"),
            format!("/zkcli-{name}-r{pid}"),
        ),
    };
    let addr = &server.addr;
    let java = run(
        ZKCLI_SH,
        addr,
        &[],
        &script.replace("$B", &jb).replace("$S", addr),
    );
    let ours = run(
        ZKCLI,
        addr,
        &[],
        &script.replace("$B", &rb).replace("$S", addr),
    );
    let stat = shared_base.is_none();
    let jn = normalize(
        &java,
        &Masks {
            base: &jb,
            stat,
            drop_connect: false,
        },
    );
    let rn = normalize(
        &ours,
        &Masks {
            base: &rb,
            stat,
            drop_connect: false,
        },
    );
    compare(name, &jn, &rn)
}

const READ_ONLY: &str = r#"ls $B
ls -s $B
ls -R $B
ls -R $B/a
get $B/a
get -s $B/a
get $B/nodata
get $B/empty
get "$B/sp ace"
stat $B/a
stat $B/nope
ls $B/nope
get $B/nope
getAcl $B
getAcl -s $B/a
getAcl $B/digest
getAllChildrenNumber $B
getAllChildrenNumber $B/nope
getEphemerals $B
sync $B
whoami
config
config -c
config -s
version extra
ls ""
get "$B/a b
ls $B watch
get $B/a watch
stat $B/a watch
ls noslash
get $B/a/
ls $B//a
get $B/./a
ls -z $B
ls -sz $B
get -v $B
delete -v $B
ls -?
stat -w
getAcl
ls
create
delete
deleteall
setAcl $B
addauth
sync
stat
addWatch
addWatch -m bogus $B
removewatches
removewatches $B/a
getAllChildrenNumber
reconfig -add server.5=localhost:2888:3888;2181
reconfig
reconfig -remove 3 -v zz
reconfig -members server.1=localhost:2888:3888;2181 -add x
reconfig -file /nonexistent-zkcli
reconfig -s -remove 1
reconfig -q
reconfig -remove
foo
help
printwatches
history
"#;

const SETUP: &str = r#"create $B
create $B/a hello
create $B/a/x 1
create $B/a/y 22
create $B/b
create $B/b/z
create $B/nodata
create $B/empty ""
create "$B/sp ace" s
create $B/digest d digest:alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=:cdrwa,world:anyone:r
"#;

const WRITES: &str = r#"create $B
create $B/a hello
create $B/a again
create $B/b
get $B/b
get -s $B/a
set $B/a world
set -s $B/a w2
set -v 0 $B/a w3
set -v 2 $B/a w3
set $B/a w4 -v 3 -s
get -s $B/a
create -s $B/seq- x
create -s $B/seq- y
create -e $B/eph e
create -e -s $B/eph- e
getEphemerals $B
create -c $B/cont
create -t 60000 $B/ttl t
create -s -t 60000 $B/ttls- t
stat $B/ttl
create -e -t 5 $B/x
create -c -s $B/x
create -t abc $B/x
create -t 0 $B/x
create -t 1099511627776 $B/x
create $B/acl x digest:alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E=:cdrwa,world:anyone:r
getAcl $B/acl
getAcl -s $B/acl
get $B/acl
set $B/acl y
addauth digest alice:secret
whoami
set $B/acl y
getAcl $B/acl
setAcl $B/b world:anyone:cdrwa,ip:127.0.0.1:r
getAcl $B/b
setAcl -s $B/b world:anyone:cdrwa
setAcl -v 99 $B/b world:anyone:r
create $B/bad x foo
create $B/bad2 x world:anyone:rq
setAcl -R $B world:anyone:cdrwa
create $B/eph/child
delete $B/a/nope
delete $B
delete -v 7 $B/b
delete $B/b 0
ls -R $B
ls -s $B
getAllChildrenNumber $B
get -w $B/a
ls -w $B
stat -w $B/later
set $B/a changed
create $B/c
create $B/later
addWatch $B/a
addWatch -m PERSISTENT $B/c
create $B/a/kid
set $B/c cc
removewatches $B/a
removewatches $B/a
removewatches -d $B/c
removewatches $B/c
get -w $B/c
removewatches -c $B/c
removewatches -d $B/c
deleteall $B/a
deleteall -b 2 $B
ls $B
"#;

const SHELL: &str = r#"printwatches
printwatches off
printwatches
printwatches on
create $B
ls $B
redo 1
redo 0x1
redo 99
redo 7
history
close
ls $B
history
connect $S
ls $B
redo 5
connect $S
ls $B
delete $B
quit
ls /
"#;

const QUOTA: &str = r#"create $B
create $B/a hello
create $B/a/b
create $B/c
setquota $B
setquota -n 5 -b 10 $B
setquota -n 0 $B
setquota -b -1 $B
setquota -n x $B
setquota -n 5 $B/nope
setquota -n 5 /zookeeper/quota/x
setquota -n 3 $B/a/b
setquota -n 3 $B
delquota $B/a/b
setquota -n 1 $B
listquota $B
setquota -N 10 $B
setquota -B 1 $B
listquota $B
setquota -n 3 $B/a
listquota $B/a
listquota $B/nope
get $B/a
create $B/c/d 12345
listquota $B
delquota -n $B
delquota -n -b $B
listquota $B
delquota $B
listquota $B
delquota $B
setquota -b 100 $B/c
listquota $B/c
delquota -b $B/c
delquota $B/c
delquota
setquota -n 5
listquota
deleteall $B
"#;

/// zkcli's own 3.9 output that the 3.8 reference cannot show: checked against the text
/// 3.9's source produces (GetCommand/SetCommand with commons-cli HelpFormatter, Base64,
/// netty's prettyHexDump).
fn three_nine_only(server: &Server) -> Vec<String> {
    let base = format!("/zkcli-39-{}", std::process::id());
    let script = format!(
        "create {base} hello\nget -b {base}\nget -x {base}\nset -b {base} d29ybGQ=\nget {base}\nget\nset {base}\ndelete {base}\n"
    );
    let o = run(ZKCLI, &server.addr, &[], &script);
    let n = normalize(
        &o,
        &Masks {
            base: &base,
            stat: false,
            drop_connect: true,
        },
    );
    let want_out: Vec<String> = [
        "aGVsbG8=",
        "         +-------------------------------------------------+",
        "         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |",
        "+--------+-------------------------------------------------+----------------+",
        "|00000000| 68 65 6c 6c 6f                                  |hello           |",
        "+--------+-------------------------------------------------+----------------+",
        "world",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let want_err: Vec<String> = [
        "Created /BASE",
        "get [-s] [-w] [-b] [-x] path",
        " -b   Output data in base64 format",
        " -s   Print znode stats additionally",
        " -w   Watch for changes on the znode",
        " -x   Output data in hexdump format",
        "",
        "set path data [-s] [-v version] [-b]",
        " -b         Supply data in base64 format",
        " -s         Print znode stats additionally",
        " -v <arg>   Set with an expected version",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut fails = Vec::new();
    fails.extend(show_diff("3.9-only: stdout", &want_out, &n.out));
    fails.extend(show_diff("3.9-only: stderr", &want_err, &n.err));
    fails
}

/// One-shot mode: `CLI -server host:port CMD ARGS`, exit code included.
fn one_shot(server: &Server) -> Vec<String> {
    let mut fails = Vec::new();
    let base = format!("/zkcli-oneshot-{}", std::process::id());
    let cases: Vec<Vec<String>> = vec![
        vec!["create".into(), base.clone(), "v".into()],
        vec!["get".into(), "-s".into(), base.clone()],
        vec!["ls".into(), format!("{base}/nope")],
        vec!["create".into(), base.clone()],
        vec!["foo".into()],
        vec!["ls".into()],
        vec!["delete".into(), base.clone()],
    ];
    let masks = Masks {
        base: &base,
        stat: false,
        drop_connect: true,
    };
    for args in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        // The same node for both: run ours first for create (then the reference sees
        // the node exist), so create and delete get their own pairs of runs.
        let java = run(ZKCLI_SH, &server.addr, &a, "");
        if a[0] == "create" && a.len() == 3 || a[0] == "delete" {
            // Undo the reference's write so ours meets the same tree.
            let undo = if a[0] == "create" { "delete" } else { "create" };
            let mut u: Vec<&str> = vec![undo, &base];
            if undo == "create" {
                u.push("v");
            }
            run(ZKCLI_SH, &server.addr, &u, "");
        }
        let ours = run(ZKCLI, &server.addr, &a, "");
        let name = format!("one-shot `{}`", a.join(" "));
        fails.extend(compare(
            &name,
            &normalize(&java, &masks),
            &normalize(&ours, &masks),
        ));
    }
    fails
}

/// The interactive path (rustyline on a terminal), through `script`'s pseudo-terminal:
/// prompt with host, state and command number, tab completion of a znode path,
/// history, quit.
fn interactive(server: &Server) -> Vec<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("interactive check skipped: `script` (util-linux) not installed");
        return Vec::new();
    }
    let base = format!("/zkcli-tty-{}", std::process::id());
    let cmd = format!("{ZKCLI} -server {}", server.addr);
    let mut child = Command::new("timeout")
        .args(["60", "script", "-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().unwrap();
    // Everything the terminal shows, collected as it comes.
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let lines = [
        format!("create {base} x"),
        format!("create {base}/kid"),
        format!("get {base}"),
        // Tab completes the znode path from the server.
        format!("ls {base}/k\t"),
        format!("deleteall {base}"),
        "history".into(),
        "quit".into(),
    ];
    // Each line is typed once its prompt is up, as a person would (input typed before
    // the editor takes the terminal would be echoed by the terminal instead).
    for (n, l) in lines.iter().enumerate() {
        let prompt = format!("(CONNECTED) {n}] ");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&shown.lock().unwrap()).contains(&prompt)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // A tab is sent on its own, so the completion happens before Enter.
        for part in l.split_inclusive('\t') {
            stdin.write_all(part.as_bytes()).unwrap();
            stdin.flush().unwrap();
            if part.ends_with('\t') {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
        stdin.write_all(b"\r").unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let o = Output {
        status,
        stdout: shown.lock().unwrap().clone(),
        stderr: Vec::new(),
    };
    let text = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let mut fails = Vec::new();
    for want in [
        format!("[zk: {}(CONNECTED) 0] ", server.addr),
        format!("[zk: {}(CONNECTED) 6] ", server.addr),
        "Created ".to_string() + &base,
        "\nx\n".into(),
        format!("2 - get {base}\n"),
        format!("3 - ls {base}/kid\n"),
        "5 - history\n".into(),
        "WatchedEvent state:Closed type:None path:null".into(),
    ] {
        if !text.contains(&want) {
            fails.push(format!("interactive: missing {want:?} in:\n{text}"));
        }
    }
    if o.status.code() != Some(0) {
        fails.push(format!("interactive: exit code {:?}", o.status.code()));
    }
    fails
}

/// A TCP relay between a CLI and the server that can drop every connection and refuse
/// new ones for a while: a network cut without touching the server.
struct Cut {
    addr: String,
    state: std::sync::Arc<std::sync::Mutex<(bool, Vec<std::net::TcpStream>)>>,
}

impl Cut {
    fn new(target: &str) -> Cut {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = std::sync::Arc::new(std::sync::Mutex::new((true, Vec::new())));
        let (st, target) = (state.clone(), target.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                let mut g = st.lock().unwrap();
                if !g.0 {
                    continue; // dropped: the client sees its connect fail
                }
                let Ok(up) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                g.1.push(down.try_clone().unwrap());
                g.1.push(up.try_clone().unwrap());
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Cut { addr, state }
    }

    fn cut(&self) {
        let mut g = self.state.lock().unwrap();
        g.0 = false;
        for c in g.1.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().0 = true;
    }
}

/// A CLI process fed line by line, its output collected as it comes.
struct Live {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    err: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Live {
    fn start(prog: &str, addr: &str) -> Live {
        let mut child = Command::new("timeout")
            .args(["120", prog, "-server", addr])
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |mut r: Box<dyn std::io::Read + Send>| {
            let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = buf.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = r.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&b[..n]);
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Live { child, out, err }
    }

    fn send(&mut self, lines: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(lines.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (up to 30 s) until stdout or stderr shows `text`.
    fn wait_for(&self, text: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let seen = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
                String::from_utf8_lossy(&b.lock().unwrap()).contains(text)
            };
            if seen(&self.out) || seen(&self.err) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    fn finish(mut self) -> Output {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        // The reader threads end with the pipes; give them a moment to drain.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        Output {
            status,
            stdout: out,
            stderr: err,
        }
    }
}

/// A network cut under a live session: both CLIs report Disconnected and SyncConnected,
/// keep the session (its ephemeral node survives), and get their watches back, which
/// the server fires for the changes made while they were away.
fn reconnect(server: &Server) -> Vec<String> {
    let mut fails = Vec::new();
    let mut norms = Vec::new();
    for (who, prog) in [("j", ZKCLI_SH), ("r", ZKCLI)] {
        let base = format!("/zkcli-cut-{who}{}", std::process::id());
        let cut = Cut::new(&server.addr);
        let mut cli = Live::start(prog, &cut.addr);
        cli.send(&format!(
            "create {base} x\ncreate -e {base}/eph\nget -w {base}\nstat -w {base}-missing\n"
        ));
        if !cli.wait_for(&format!("Node does not exist: {base}-missing")) {
            fails.push(format!("reconnect ({prog}): setup did not finish"));
            continue;
        }
        cut.cut();
        if !cli.wait_for("state:Disconnected") {
            fails.push(format!("reconnect ({prog}): no Disconnected event"));
        }
        // Changed while the CLI is cut off, through a direct connection.
        run(
            ZKCLI,
            &server.addr,
            &[],
            &format!("set {base} y\ncreate {base}-missing\n"),
        );
        cut.restore();
        if prog == ZKCLI_SH {
            // The Java client reconnects on its own; zkcli on its next command.
            cli.wait_for("type:NodeCreated");
        }
        cli.send(&format!(
            "ls {base}\nremovewatches {base}\ndeleteall {base}\ndelete {base}-missing\nquit\n"
        ));
        let o = cli.finish();
        norms.push(normalize(
            &o,
            &Masks {
                base: &base,
                stat: false,
                drop_connect: false,
            },
        ));
    }
    if let [j, r] = &norms[..] {
        fails.extend(compare("reconnect", j, r));
    }
    fails
}

#[test]
fn zkcli_matches_zkcli_sh() {
    if let Some(why) = reference_missing() {
        if std::env::var("ZKD_REQUIRE_REFERENCE").as_deref() == Ok("1") {
            panic!("reference zkCli.sh unavailable ({why}) and ZKD_REQUIRE_REFERENCE=1");
        }
        eprintln!("skipping zkcli_matches_zkcli_sh: {why}");
        return;
    }
    let server = Server::get();
    let pid = std::process::id();
    let mut fails = Vec::new();

    let tree = format!("/zkcli-ro-{pid}");
    let setup = run(ZKCLI, &server.addr, &[], &SETUP.replace("$B", &tree));
    assert_eq!(setup.status.code(), Some(0), "setup: {setup:?}");
    fails.extend(scenario(&server, "ro", READ_ONLY, Some(&tree)));
    run(ZKCLI, &server.addr, &[], &format!("deleteall {tree}\n"));

    fails.extend(scenario(&server, "writes", WRITES, None));
    fails.extend(scenario(&server, "shell", SHELL, None));
    fails.extend(scenario(&server, "quota", QUOTA, None));
    fails.extend(three_nine_only(&server));
    fails.extend(one_shot(&server));
    fails.extend(interactive(&server));
    fails.extend(reconnect(&server));

    assert!(
        fails.is_empty(),
        "{} difference(s):\n{}",
        fails.len(),
        fails.join("\n")
    );
}

/// Where zkcli knowingly differs: zkCli.sh keeps retrying an unreachable server forever
/// (a one-shot command hangs); zkcli says so and exits 1. Needs no reference.
#[test]
fn zkcli_unreachable_server_exits_1() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let o = run(ZKCLI, &addr, &["-timeout", "2000", "ls", "/"], "");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!("Unable to connect to {addr}: ")),
        "{err}"
    );
    // Commands on a pipe: the same.
    let o = run(ZKCLI, &addr, &["-timeout", "2000"], "ls /\n");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // A chroot suffix is refused rather than ignored.
    let o = run(ZKCLI, &format!("{addr}/app"), &["ls", "/"], "");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("chroot \"/app\""));
}
