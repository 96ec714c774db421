//! Four-letter words (ZooKeeper's FourLetterCommands and command/*Command classes).
//!
//! Owns recognising a 4lw on a fresh connection and producing its text, byte for byte in
//! Apache ZooKeeper 3.9's format, so that zkServer.sh, Prometheus/Datadog exporters and
//! hand-written `nc` scripts parse it unchanged. Never changes server state except for the
//! reset commands (crst, srst) and the packet counters ZooKeeper itself bumps for a 4lw
//! (one packet received when the command arrives, one sent for the answer).
//!
//! Version string: `3.9.5-zkd-<crate version>, built on <date> UTC`. ZooKeeper prints
//! `<major.minor.micro>-<git revision>, built on <yyyy-MM-dd HH:mm> UTC`, and monitoring
//! parses it with regexes like `Zookeeper version: (\S+)` or `([^.]+)\.([^.]+)\.([^-]+)`
//! (Datadog), and some gate features on the number (mntr exists from 3.4, ...). So the
//! number is the ZooKeeper release whose client protocol and 4lw formats zkd follows, the
//! revision slot says "zkd-0.1.0" so a human sees what actually runs, and the build date
//! is the modification time of the running executable (the closest thing to a build time
//! without a build script), or the epoch if that cannot be read.
//!
//! Where our server has no equivalent of a Java detail we print ZooKeeper's value for the
//! same situation, never a made-up number:
//! * interest ops (`[1]`) are what a reading connection reports; queued is 0 because the
//!   core answers every request before the next one is read;
//! * `Mode: standalone` / `zk_server_state standalone`: zkd serves only standalone;
//! * `Node count` / `zk_znode_count` include the root twice, as ZooKeeper's node map does
//!   (it holds the root under both "" and "/"): a fresh server reports 5 in both;
//! * `dump` ends with the `Connections dump:` header only, which is what ZooKeeper prints
//!   with its Netty connection factory (the NIO one adds its idle-connection expiry queue,
//!   a mechanism zkd does not have);
//! * mntr omits the metrics zkd does not measure (client response sizes, auth failures,
//!   the metrics-provider counters and summaries) rather than print invented zeros; the
//!   TLS/mTLS/local-session/drop-probability gauges are printed because 0 is the true value
//!   for a server without TLS, local sessions or connection throttling;
//! * `envi` prints no java.* or JVM memory lines (there is no JVM); it keeps ZooKeeper's
//!   keys that still mean something (zookeeper.version, host.name, os.*, user.*) and adds
//!   zkd.* lines for what the java.* lines told an operator (which binary, which process).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;

use crate::core::{Conn, Core};
use crate::watch::ConnId;

/// Every word ZooKeeper 3.9 recognises on a fresh connection (FourLetterCommands.cmd2String,
/// minus the telnet close sequence, which is not text).
pub const COMMANDS: &[&str] = &[
    "ruok", "stat", "srvr", "mntr", "conf", "cons", "crst", "srst", "envi", "dump", "wchs", "wchc",
    "wchp", "dirs", "isro", "gtmk", "stmk", "hash",
];

/// The ZooKeeper release whose formats (and client protocol) zkd follows.
pub const ZOOKEEPER_VERSION: &str = "3.9.5";

/// ZooTrace's default mask: CLIENT_REQUEST | SERVER_PACKET | SESSION | WARNING.
const DEFAULT_TRACE_MASK: i64 = 0b1_0011_0010;

/// The trace mask `gtmk` reports and `stmk` sets. Process-wide, like ZooTrace's. zkd's
/// logging is configured through ZKD_LOG, so the mask is only remembered, not obeyed.
static TRACE_MASK: AtomicI64 = AtomicI64::new(DEFAULT_TRACE_MASK);

pub fn is_command(cmd: &str) -> bool {
    COMMANDS.contains(&cmd)
}

/// Runs a four-letter word that arrived as the first 4 bytes of connection and returns
/// what to write before closing it.
pub fn execute(core: &mut Core, cmd: &str, now_ms: i64) -> String {
    let this = command_packet_received(core);
    let text = if !core.config.four_letter_whitelist.allows(cmd) {
        refusal(cmd)
    } else {
        run(core, cmd, this, now_ms)
    };
    // ZooKeeper counts the answer as one packet sent, after the text is produced.
    core.stats.packets_sent += 1;
    text
}

/// `stmk` with its argument: ZooKeeper reads an 8-byte big-endian mask after the word
/// (after the whitelist check) and answers with the mask in decimal. For the network
/// layer to call once it has read those 8 bytes; `execute("stmk")` alone answers nothing,
/// as ZooKeeper does when the argument is missing.
pub fn set_trace_mask(core: &mut Core, mask: i64, _now_ms: i64) -> String {
    command_packet_received(core);
    let text = if !core.config.four_letter_whitelist.allows("stmk") {
        refusal("stmk")
    } else {
        TRACE_MASK.store(mask, Ordering::Relaxed);
        mask.to_string()
    };
    core.stats.packets_sent += 1;
    text
}

fn refusal(cmd: &str) -> String {
    format!("{cmd} is not executed because it is not in the whitelist.\n")
}

/// ZooKeeper counts the 4 bytes of the word as one received packet, on the server and on
/// the connection (which `stat`/`cons` then list as `recved=1`). `execute` is not told
/// which connection asked, so take the newest one that has neither a session nor a
/// packet yet: net.rs accepts the connection, reads the 4 bytes and calls us at once.
fn command_packet_received(core: &mut Core) -> Option<ConnId> {
    core.stats.packets_received += 1;
    let this = core
        .conns
        .values()
        .filter(|c| c.session_id == 0 && c.packets_received == 0)
        .map(|c| c.id)
        .max();
    if let Some(c) = this.and_then(|id| core.conns.get_mut(&id)) {
        c.packets_received += 1;
    }
    this
}

fn run(core: &mut Core, cmd: &str, this: Option<ConnId>, now_ms: i64) -> String {
    match cmd {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        "stat" => stat(core, true, this),
        "srvr" => stat(core, false, this),
        "mntr" => mntr(core, now_ms),
        "conf" => conf(core),
        "cons" => cons(core, this),
        "crst" => {
            reset_connection_stats(core);
            "Connection stats reset.\n".to_string()
        }
        "srst" => {
            reset_server_stats(core);
            "Server stats reset.\n".to_string()
        }
        "envi" => envi(),
        "dump" => dump(core),
        "wchs" => wchs(core),
        "wchc" => wchc(core),
        "wchp" => wchp(core),
        "dirs" => dirs(core),
        "gtmk" => TRACE_MASK.load(Ordering::Relaxed).to_string(),
        // The mask argument is read by the network layer (see `set_trace_mask`).
        "stmk" => String::new(),
        // The digest history ZooKeeper keeps per zxid; zkd computes no tree digest, so the
        // history is empty, which is also what a fresh ZooKeeper prints.
        "hash" => String::new(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------
// stat / srvr / cons
// ---------------------------------------------------------------------------

/// Version.getFullVersion().
pub fn full_version() -> String {
    format!(
        "{ZOOKEEPER_VERSION}-zkd-{}, built on {}",
        env!("CARGO_PKG_VERSION"),
        build_date()
    )
}

fn build_date() -> &'static str {
    static DATE: OnceLock<String> = OnceLock::new();
    DATE.get_or_init(|| {
        let secs = std::env::current_exe()
            .and_then(std::fs::metadata)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let t = Civil::from_epoch_ms(secs * 1000);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year, t.month, t.day, t.hour, t.minute
        )
    })
}

/// ZooKeeper's node count: its node map holds the root twice ("" and "/").
fn node_count(core: &Core) -> usize {
    core.tree.node_count() + 1
}

fn sorted_conns(core: &Core) -> Vec<&Conn> {
    let mut v: Vec<&Conn> = core.conns.values().collect();
    v.sort_by_key(|c| c.id);
    v
}

/// StatCommand: `stat` lists the connections, `srvr` does not.
fn stat(core: &Core, with_clients: bool, this: Option<ConnId>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Zookeeper version: {}", full_version());
    if with_clients {
        out.push_str("Clients:\n");
        for c in sorted_conns(core) {
            connection_info(&mut out, core, c, true, this);
            out.push('\n');
        }
        out.push('\n');
    }
    server_stats(&mut out, core);
    let _ = writeln!(out, "Node count: {}", node_count(core));
    out
}

/// ServerStats.toString().
fn server_stats(out: &mut String, core: &Core) {
    let s = &core.stats;
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{}/{}",
        min_latency(core),
        java_double(avg_latency(core)),
        s.max_latency_ms.max(0)
    );
    let _ = writeln!(out, "Received: {}", s.packets_received);
    let _ = writeln!(out, "Sent: {}", s.packets_sent);
    let _ = writeln!(out, "Connections: {}", core.conns.len());
    let _ = writeln!(out, "Outstanding: {}", s.outstanding_requests);
    let _ = writeln!(out, "Zxid: 0x{:x}", core.tree.last_processed_zxid);
    out.push_str("Mode: standalone\n");
}

fn min_latency(core: &Core) -> i64 {
    match core.stats.min_latency_ms {
        i64::MAX => 0,
        m => m,
    }
}

/// AvgMinMaxCounter.getAvg(): the mean, rounded half-up to 4 decimals.
fn avg_latency(core: &Core) -> f64 {
    let s = &core.stats;
    if s.latency_count == 0 {
        return 0.0;
    }
    round_half_up_4(s.total_latency_ms as f64 / s.latency_count as f64)
}

/// `new BigDecimal(v).setScale(4, HALF_UP).doubleValue()`: rounds the exact binary value
/// of `v`, not its decimal rendering.
fn round_half_up_4(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let neg = v < 0.0;
    let bits = v.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mant, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    if e >= 0 {
        return v; // an integer
    }
    let shift = (-e) as u32;
    let scaled = mant as u128 * 10_000;
    let q = if shift >= 127 {
        0
    } else {
        let q = scaled >> shift;
        let r = scaled & ((1u128 << shift) - 1);
        if r >= 1u128 << (shift - 1) {
            q + 1
        } else {
            q
        }
    };
    let r = q as f64 / 10_000.0;
    if neg {
        -r
    } else {
        r
    }
}

/// Java's Double.toString for the values we print: shortest round-trip digits, always
/// with a fractional part, scientific notation outside [1e-3, 1e7).
fn java_double(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".to_string()
        } else if v > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        };
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') {
            m.to_string()
        } else {
            format!("{m}.0")
        };
        format!("{m}E{e}")
    }
}

/// InetSocketAddress.toString() of a resolved address without a host name, as Java 17
/// prints it: `/1.2.3.4:5` or `/[0:0:0:0:0:0:0:1]:5` (IPv6 groups unabbreviated).
fn java_socket_addr(addr: &SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => format!("/{v4}:{}", addr.port()),
        IpAddr::V6(v6) => {
            let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
            let scope = match addr {
                SocketAddr::V6(a) if a.scope_id() != 0 => format!("%{}", a.scope_id()),
                _ => String::new(),
            };
            format!("/[{}{scope}]:{}", groups.join(":"), addr.port())
        }
    }
}

/// ServerCnxn.dumpConnectionInfo.
fn connection_info(out: &mut String, core: &Core, c: &Conn, brief: bool, this: Option<ConnId>) {
    // NIO reports the interest set: nothing for the command connection (its selection key
    // is cancelled), OP_READ for every other one.
    let interest = if Some(c.id) == this { 0 } else { 1 };
    let _ = write!(
        out,
        " {}[{:x}](queued=0,recved={},sent={}",
        java_socket_addr(&c.addr),
        interest,
        c.packets_received,
        c.packets_sent
    );
    if !brief && c.session_id != 0 {
        let timeout = core
            .sessions
            .get(c.session_id)
            .map_or(0, |s| s.timeout_ms);
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={}",
            c.session_id, c.last_op, c.established_ms, timeout
        );
        if c.last_cxid >= 0 {
            let _ = write!(out, ",lcxid=0x{:x}", c.last_cxid);
        }
        // Nothing answered yet (fresh or reset): ZooKeeper's lastResponseTime is 0.
        let lresp = if c.last_op == "NA" {
            0
        } else {
            c.last_response_ms
        };
        let (min, avg, max) = if c.latency_count == 0 {
            (0, 0, 0)
        } else {
            (
                c.min_latency_ms,
                c.total_latency_ms / c.latency_count as i64,
                c.max_latency_ms,
            )
        };
        let _ = write!(
            out,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid,
            lresp,
            last_latency(c),
            min,
            avg,
            max
        );
    }
    out.push(')');
}

/// The latency of the connection's last request. Conn keeps only min/max/total, so this
/// is exact when at most one request was timed or all took the same time, and the mean
/// otherwise.
fn last_latency(c: &Conn) -> i64 {
    match c.latency_count {
        0 => 0,
        1 => c.total_latency_ms,
        _ if c.min_latency_ms == c.max_latency_ms => c.min_latency_ms,
        n => c.total_latency_ms / n as i64,
    }
}

/// ConsCommand.
fn cons(core: &Core, this: Option<ConnId>) -> String {
    let mut out = String::new();
    for c in sorted_conns(core) {
        connection_info(&mut out, core, c, false, this);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// ServerCnxn.resetStats on every connection.
fn reset_connection_stats(core: &mut Core) {
    for c in core.conns.values_mut() {
        c.packets_received = 0;
        c.packets_sent = 0;
        c.min_latency_ms = i64::MAX;
        c.max_latency_ms = 0;
        c.last_op = "NA";
        c.last_cxid = -1;
        c.last_zxid = -1;
        c.last_response_ms = 0;
        c.total_latency_ms = 0;
        c.latency_count = 0;
    }
}

/// ServerStats.reset: latency and packet counters (outstanding requests are live state).
fn reset_server_stats(core: &mut Core) {
    let s = &mut core.stats;
    s.packets_received = 0;
    s.packets_sent = 0;
    s.min_latency_ms = i64::MAX;
    s.max_latency_ms = 0;
    s.total_latency_ms = 0;
    s.latency_count = 0;
}

// ---------------------------------------------------------------------------
// mntr
// ---------------------------------------------------------------------------

/// MonitorCommand: `zk_<key>\t<value>` lines, in the order ZooKeeper prints its gauges.
fn mntr(core: &Core, now_ms: i64) -> String {
    let s = &core.stats;
    let mut lines: Vec<(&str, String)> = vec![
        ("version", full_version()),
        ("server_state", "standalone".to_string()),
        ("ephemerals_count", core.tree.ephemeral_count().to_string()),
        ("num_alive_connections", core.conns.len().to_string()),
        ("avg_latency", java_double(avg_latency(core))),
        ("outstanding_requests", s.outstanding_requests.to_string()),
        ("znode_count", node_count(core).to_string()),
        ("global_sessions", core.sessions.len().to_string()),
        ("non_mtls_remote_conn_count", "0".to_string()),
        ("packets_sent", s.packets_sent.to_string()),
        ("packets_received", s.packets_received.to_string()),
        ("connection_drop_probability", "0.0".to_string()),
        ("watch_count", watch_count(core).to_string()),
        ("min_latency", min_latency(core).to_string()),
    ];
    if let Some(max) = max_file_descriptors() {
        lines.push(("max_file_descriptor_count", max.to_string()));
    }
    lines.push((
        "approximate_data_size",
        core.tree.approximate_data_size().to_string(),
    ));
    if let Some(open) = open_file_descriptors() {
        lines.push(("open_file_descriptor_count", open.to_string()));
    }
    lines.extend([
        ("local_sessions", "0".to_string()),
        ("uptime", (now_ms - core.started_ms).max(0).to_string()),
        ("max_latency", s.max_latency_ms.max(0).to_string()),
        ("outstanding_tls_handshake", "0".to_string()),
        ("non_mtls_local_conn_count", "0".to_string()),
    ]);
    let mut out = String::new();
    for (k, v) in lines {
        let _ = writeln!(out, "zk_{k}\t{v}");
    }
    out
}

/// DataTree.getWatchCount: data and child watches.
fn watch_count(core: &Core) -> usize {
    core.tree.data_watches.watch_count() + core.tree.child_watches.watch_count()
}

/// OSMXBean.getOpenFileDescriptorCount: the entries of /proc/self/fd.
fn open_file_descriptors() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|rd| rd.count())
}

/// OSMXBean.getMaxFileDescriptorCount: the soft RLIMIT_NOFILE.
fn max_file_descriptors() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(i64::MAX as u64),
        n => n.parse().ok(),
    }
}

// ---------------------------------------------------------------------------
// conf / dirs / envi
// ---------------------------------------------------------------------------

/// ZooKeeperServer.dumpConf.
fn conf(core: &Core) -> String {
    let mut out = String::new();
    for (k, v) in core.config.to_conf_lines_with(None) {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// DirsCommand: sizes of the snapshot and transaction log directories.
fn dirs(core: &Core) -> String {
    format!(
        "datadir_size: {}\nlogdir_size: {}\n",
        dir_size(&core.config.snap_dir(), 0),
        dir_size(&core.config.txn_log_dir(), 0)
    )
}

/// ZooKeeperServer.getDirSize: sum of file lengths below `path`, 0 if missing.
fn dir_size(path: &Path, depth: u32) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    // A symlink loop must not hang a monitoring command.
    if depth > 32 {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path(), depth + 1)).sum())
        .unwrap_or(0)
}

/// EnvCommand (Environment.list) without the JVM: see the module comment.
fn envi() -> String {
    const NA: &str = "<NA>";
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let (user, home) = current_user();
    let entries: Vec<(&str, String)> = vec![
        ("zookeeper.version", full_version()),
        (
            "host.name",
            read("/proc/sys/kernel/hostname")
                .or_else(|| read("/etc/hostname"))
                .unwrap_or_else(|| NA.into()),
        ),
        ("zkd.version", env!("CARGO_PKG_VERSION").to_string()),
        (
            "zkd.executable",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| NA.into()),
        ),
        ("zkd.pid", std::process::id().to_string()),
        ("os.name", java_os_name().to_string()),
        ("os.arch", java_os_arch().to_string()),
        (
            "os.version",
            read("/proc/sys/kernel/osrelease").unwrap_or_else(|| NA.into()),
        ),
        ("user.name", user.unwrap_or_else(|| NA.into())),
        ("user.home", home.unwrap_or_else(|| NA.into())),
        (
            "user.dir",
            std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| NA.into()),
        ),
        (
            "zkd.memory.rss",
            resident_mb().map_or_else(|| NA.into(), |mb| format!("{mb}MB")),
        ),
    ];
    let mut out = String::from("Environment:\n");
    for (k, v) in entries {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// The os.name a JVM reports on this platform.
fn java_os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        "netbsd" => "NetBSD",
        "openbsd" => "OpenBSD",
        "solaris" | "illumos" => "SunOS",
        other => other,
    }
}

/// The os.arch a JVM reports on this platform.
fn java_os_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        other => other,
    }
}

/// user.name and user.home as the JVM finds them: the passwd entry of the real uid,
/// falling back to $USER and $HOME.
fn current_user() -> (Option<String>, Option<String>) {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
    });
    let entry = uid.and_then(|uid| {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2] == uid).then(|| (f[0].to_string(), f[5].to_string()))
        })
    });
    match entry {
        Some((name, home)) => (Some(name), Some(home)),
        None => (std::env::var("USER").ok(), std::env::var("HOME").ok()),
    }
}

fn resident_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

// ---------------------------------------------------------------------------
// dump / wchs / wchc / wchp
// ---------------------------------------------------------------------------

/// DumpCommand.
fn dump(core: &Core) -> String {
    let mut out = String::from("SessionTracker dump:\n");
    // ExpiryQueue.dump: sessions grouped by their (tick-rounded) expiry time.
    let mut sessions: Vec<(i64, i64)> = core
        .sessions
        .iter()
        .map(|s| (s.expires_at_ms, s.id))
        .collect();
    sessions.sort();
    let mut groups: Vec<(i64, Vec<i64>)> = Vec::new();
    for (at, id) in sessions {
        match groups.last_mut() {
            Some((t, ids)) if *t == at => ids.push(id),
            _ => groups.push((at, vec![id])),
        }
    }
    let _ = writeln!(
        out,
        "Session Sets ({})/({}):",
        groups.len(),
        core.sessions.len()
    );
    for (at, ids) in &groups {
        let _ = writeln!(out, "{} expire at {}:", ids.len(), java_date(*at));
        for id in ids {
            let _ = writeln!(out, "\t0x{id:x}");
        }
    }
    out.push_str("ephemeral nodes dump:\n");
    let eph = core.tree.ephemerals_by_session();
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", eph.len());
    for (session, paths) in eph {
        let _ = writeln!(out, "0x{session:x}:");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push_str("Connections dump:\n");
    out
}

fn session_of(core: &Core, conn: ConnId) -> i64 {
    core.conns.get(&conn).map_or(0, |c| c.session_id)
}

/// WatchManager.toString of the data watches (ZooKeeper leaves child watches out).
fn wchs(core: &Core) -> String {
    let w = &core.tree.data_watches;
    format!(
        "{} connections watching {} paths\nTotal watches:{}\n",
        w.connection_count(),
        w.path_count(),
        w.watch_count()
    )
}

/// WatchManager.dumpWatches(byPath = false) of the data watches.
fn wchc(core: &Core) -> String {
    let mut out = String::new();
    for (conn, paths) in core.tree.data_watches.by_watcher() {
        let _ = writeln!(out, "0x{:x}", session_of(core, conn));
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out.push('\n');
    out
}

/// WatchManager.dumpWatches(byPath = true) of the data watches.
fn wchp(core: &Core) -> String {
    let mut out = String::new();
    for (path, conns) in core.tree.data_watches.by_path() {
        let _ = writeln!(out, "{path}");
        for conn in conns {
            let _ = writeln!(out, "\t0x{:x}", session_of(core, conn));
        }
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    weekday: usize,
    hour: i64,
    minute: i64,
    second: i64,
}

impl Civil {
    /// UTC calendar fields of a Unix time (Howard Hinnant's civil_from_days).
    fn from_epoch_ms(ms: i64) -> Civil {
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }
}

/// java.util.Date.toString() in UTC: `Fri Nov 27 03:31:34 UTC 2026`.
fn java_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Civil::from_epoch_ms(ms);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[t.weekday],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}
