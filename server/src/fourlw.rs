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
pub fn execute(core: &mut Core, conn: ConnId, cmd: &str, now_ms: i64) -> String {
    let this = command_packet_received(core, conn);
    let text = if !core.config.four_letter_whitelist.allows(cmd) {
        refusal(cmd)
    } else if core.zab.is_some()
        && core.replication == crate::core::Replication::Unavailable
        && NEED_SERVING.contains(&cmd)
    {
        // An ensemble server without an established leader (ZooKeeper's ZK_NOT_SERVING).
        "This ZooKeeper instance is not currently serving requests\n".to_string()
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
pub fn set_trace_mask(core: &mut Core, conn: ConnId, mask: i64, _now_ms: i64) -> String {
    command_packet_received(core, conn);
    let text = if !core.config.four_letter_whitelist.allows("stmk") {
        refusal("stmk")
    } else {
        TRACE_MASK.store(mask, Ordering::Relaxed);
        mask.to_string()
    };
    core.stats.packets_sent += 1;
    text
}

/// Commands that describe a running ZooKeeperServer, which a looking server has not.
const NEED_SERVING: &[&str] = &[
    "stat", "srvr", "mntr", "cons", "crst", "dump", "wchs", "wchc", "wchp", "hash", "srst",
];

fn refusal(cmd: &str) -> String {
    format!("{cmd} is not executed because it is not in the whitelist.\n")
}

/// ZooKeeper counts the 4 bytes of the word as one received packet, on the server and on
/// the connection (which `stat`/`cons` then list as `recved=1`).
fn command_packet_received(core: &mut Core, conn: ConnId) -> Option<ConnId> {
    core.stats.packets_received += 1;
    let c = core.conns.get_mut(&conn)?;
    c.packets_received += 1;
    Some(conn)
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
    let _ = writeln!(out, "Outstanding: {}", core.outstanding_requests());
    let _ = writeln!(out, "Zxid: 0x{:x}", core.tree.last_processed_zxid);
    let _ = writeln!(out, "Mode: {}", server_state(core));
}

/// ZooKeeper's ServerState name: standalone, or the ensemble role zab reported.
pub fn server_state(core: &Core) -> &'static str {
    use zkd_zab::Role;
    match (core.zab.is_some(), core.ensemble_role) {
        (false, _) => "standalone",
        (true, Some(Role::Leading)) => "leader",
        (true, Some(Role::Following)) => "follower",
        (true, Some(Role::Observing)) => "observer",
        (true, _) => "looking",
    }
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
        " {}[{:x}](queued={},recved={},sent={}",
        java_socket_addr(&c.addr),
        interest,
        c.queued(),
        c.packets_received,
        c.packets_sent
    );
    if !brief && c.session_id != 0 {
        let timeout = core.sessions.get(c.session_id).map_or(0, |s| s.timeout_ms);
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

fn last_latency(c: &Conn) -> i64 {
    c.last_latency_ms
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
        ("server_state", server_state(core).to_string()),
        ("ephemerals_count", core.tree.ephemeral_count().to_string()),
        ("num_alive_connections", core.conns.len().to_string()),
        ("avg_latency", java_double(avg_latency(core))),
        (
            "outstanding_requests",
            core.outstanding_requests().to_string(),
        ),
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
    if let Some(zab) = core.zab.as_ref() {
        // QuorumZooKeeperServer's peer_state and quorum_size, and the leader's gauges.
        let phase = if core.replication == crate::core::Replication::Unavailable {
            "discovery"
        } else {
            "broadcast"
        };
        let state = match core.ensemble_role {
            Some(zkd_zab::Role::Leading) => "leading",
            Some(zkd_zab::Role::Following) => "following",
            Some(zkd_zab::Role::Observing) => "observing",
            _ => "looking",
        };
        lines.push(("peer_state", format!("{state} - {phase}")));
        lines.push(("quorum_size", zab.voters().to_string()));
        if let Some(l) = zab.leader_stats() {
            lines.extend([
                ("learners", l.learners.to_string()),
                ("synced_followers", l.synced_followers.to_string()),
                ("synced_non_voting_followers", "0".to_string()),
                ("synced_observers", l.synced_observers.to_string()),
                ("pending_syncs", l.pending_syncs.to_string()),
            ]);
        }
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
    std::fs::read_dir("/proc/self/fd").ok().map(|rd| rd.count())
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
        crate::config::dir_size(&core.config.snap_dir()),
        crate::config::dir_size(&core.config.txn_log_dir())
    )
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
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
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
        let (year, month, day) = crate::tools::civil_from_days(days);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The command's own connection: the newest one with no session and no packets
    /// (tests accept it just before sending the word, as net.rs does), else a fresh one.
    fn this_conn(core: &mut Core) -> ConnId {
        core.conns
            .values()
            .filter(|c| c.session_id == 0 && c.packets_received == 0)
            .map(|c| c.id)
            .max()
            .unwrap_or(u64::MAX)
    }

    fn exec(core: &mut Core, cmd: &str, now: i64) -> String {
        let conn = this_conn(core);
        execute(core, conn, cmd, now)
    }

    fn set_mask(core: &mut Core, mask: i64, now: i64) -> String {
        let conn = this_conn(core);
        set_trace_mask(core, conn, mask, now)
    }
    use crate::config::{Config, FourLetterWhitelist};
    use zkd_proto::records::{
        Acl, ConnectRequest, CreateRequest, ExistsRequest, GetChildrenRequest, GetDataRequest,
    };
    use zkd_proto::{OpCode, Record};

    const NOW: i64 = 1_795_750_000_000;

    fn all_allowed() -> Config {
        Config {
            four_letter_whitelist: FourLetterWhitelist::all(),
            ..Config::default()
        }
    }

    fn handshake(core: &mut Core, conn: ConnId, port: u16, timeout: i32) -> i64 {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(core.accept(conn, addr, NOW));
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: timeout,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: false,
            has_read_only: true,
        };
        core.connect(conn, &req, NOW);
        core.conns[&conn].session_id
    }

    fn create(core: &mut Core, conn: ConnId, xid: i32, path: &str, data: &[u8], flags: i32) {
        let body = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            flags,
        }
        .to_bytes();
        core.request(conn, xid, OpCode::Create.as_i32(), &body, NOW + 5);
    }

    /// Two clients with ephemerals and watches (as compat/act.py-style kazoo runs do),
    /// plus the fresh connection the command arrives on. Returns the two session ids.
    fn busy_core(config: Config) -> (Core, i64, i64) {
        let mut core = Core::new(config, NOW);
        let a = handshake(&mut core, 1, 50001, 10_000);
        let b = handshake(&mut core, 2, 50002, 30_000);
        create(&mut core, 1, 1, "/app", b"hello", 0);
        create(&mut core, 1, 2, "/app/e1", b"x", 1);
        create(&mut core, 1, 3, "/app/e2", b"yy", 1);
        create(&mut core, 2, 1, "/app/e3", b"", 1);
        let get = GetDataRequest {
            path: "/app".into(),
            watch: true,
        };
        core.request(1, 4, OpCode::GetData.as_i32(), &get.to_bytes(), NOW + 6);
        let ls = GetChildrenRequest {
            path: "/app".into(),
            watch: true,
        };
        core.request(1, 5, OpCode::GetChildren.as_i32(), &ls.to_bytes(), NOW + 6);
        let ex = ExistsRequest {
            path: "/nope".into(),
            watch: true,
        };
        core.request(2, 2, OpCode::Exists.as_i32(), &ex.to_bytes(), NOW + 7);
        core.request(2, 3, OpCode::GetData.as_i32(), &get.to_bytes(), NOW + 7);
        core.take_output();
        // The connection the four-letter word arrives on.
        assert!(core.accept(3, "127.0.0.1:50003".parse().unwrap(), NOW + 8));
        (core, a, b)
    }

    fn lines(s: &str) -> Vec<&str> {
        s.split('\n').collect()
    }

    #[test]
    fn whitelist_refuses_with_zookeepers_text() {
        let (mut core, _, _) = busy_core(Config::default());
        for cmd in [
            "ruok", "stat", "mntr", "cons", "crst", "srst", "dump", "wchc", "envi",
        ] {
            assert_eq!(
                exec(&mut core, cmd, NOW),
                format!("{cmd} is not executed because it is not in the whitelist.\n")
            );
        }
        // srvr is always enabled; a refusal changes nothing.
        let srvr = exec(&mut core, "srvr", NOW);
        assert!(srvr.starts_with("Zookeeper version: 3.9.5-zkd-"), "{srvr}");
        assert_eq!(core.tree.node_count(), 8);
        let only = Config {
            four_letter_whitelist: FourLetterWhitelist::from_commands(["ruok"]),
            ..Config::default()
        };
        let mut core = Core::new(only, NOW);
        assert_eq!(exec(&mut core, "ruok", NOW), "imok");
        assert_eq!(
            exec(&mut core, "isro", NOW),
            "isro is not executed because it is not in the whitelist.\n"
        );
    }

    #[test]
    fn every_known_word_is_a_command() {
        for w in crate::config::KNOWN_FOUR_LETTER_WORDS {
            assert!(is_command(w), "{w}");
        }
        assert!(!is_command("abcd"));
        assert!(!is_command("RUOK"));
    }

    #[test]
    fn ruok_isro_gtmk_hash() {
        let mut core = Core::new(all_allowed(), NOW);
        assert_eq!(exec(&mut core, "ruok", NOW), "imok");
        assert_eq!(exec(&mut core, "isro", NOW), "rw");
        assert_eq!(exec(&mut core, "gtmk", NOW), "306");
        assert_eq!(exec(&mut core, "stmk", NOW), "");
        assert_eq!(exec(&mut core, "hash", NOW), "");
        assert_eq!(set_mask(&mut core, 306, NOW), "306");
    }

    #[test]
    fn stat_lists_clients_and_server_stats() {
        let (mut core, _, _) = busy_core(all_allowed());
        let received = core.stats.packets_received;
        let sent = core.stats.packets_sent;
        let out = exec(&mut core, "stat", NOW + 10);
        let l = lines(&out);
        assert!(
            l[0].starts_with("Zookeeper version: 3.9.5-zkd-0.1.0, built on "),
            "{out}"
        );
        assert!(l[0].ends_with(" UTC"), "{out}");
        let rest = &l[1..];
        assert_eq!(
            rest,
            [
                "Clients:",
                " /127.0.0.1:50001[1](queued=0,recved=6,sent=6)",
                " /127.0.0.1:50002[1](queued=0,recved=4,sent=4)",
                " /127.0.0.1:50003[0](queued=0,recved=1,sent=0)",
                "",
                "Latency min/avg/max: 0/0.0/0",
                &format!("Received: {}", received + 1),
                &format!("Sent: {sent}"),
                "Connections: 3",
                "Outstanding: 0",
                "Zxid: 0x6",
                "Mode: standalone",
                "Node count: 9",
                "",
            ]
        );
        // The answer itself counts as one packet sent.
        assert_eq!(core.stats.packets_sent, sent + 1);
    }

    #[test]
    fn srvr_is_stat_without_clients() {
        let (mut core, _, _) = busy_core(all_allowed());
        let out = exec(&mut core, "srvr", NOW + 10);
        let l = lines(&out);
        assert!(l[0].starts_with("Zookeeper version: "));
        assert_eq!(l[1], "Latency min/avg/max: 0/0.0/0");
        assert_eq!(l.len(), 10, "{out}");
        assert_eq!(l[8], "Node count: 9");
        assert!(out.ends_with("Mode: standalone\nNode count: 9\n"));
    }

    #[test]
    fn latency_uses_zookeepers_rounding_and_double_format() {
        let (mut core, _, _) = busy_core(all_allowed());
        core.stats.latency_count = 6;
        core.stats.total_latency_ms = 23;
        core.stats.min_latency_ms = 0;
        core.stats.max_latency_ms = 79;
        let out = exec(&mut core, "srvr", NOW);
        assert!(
            out.contains("\nLatency min/avg/max: 0/3.8333/79\n"),
            "{out}"
        );
        let mntr = exec(&mut core, "mntr", NOW);
        assert!(mntr.contains("\nzk_avg_latency\t3.8333\n"), "{mntr}");
        assert!(mntr.contains("\nzk_max_latency\t79\n"));
    }

    #[test]
    fn java_number_formats() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(17.0), "17.0");
        assert_eq!(java_double(0.5417), "0.5417");
        assert_eq!(java_double(1.0e7), "1.0E7");
        assert_eq!(java_double(1.25e-4), "1.25E-4");
        assert_eq!(round_half_up_4(23.0 / 6.0), 3.8333);
        assert_eq!(round_half_up_4(2.0 / 3.0), 0.6667);
        assert_eq!(round_half_up_4(0.00005), 0.0001);
        assert_eq!(round_half_up_4(1.0 / 8.0), 0.125);
        assert_eq!(round_half_up_4(5.0), 5.0);
    }

    #[test]
    fn mntr_keys_values_and_order() {
        let (mut core, _, _) = busy_core(all_allowed());
        let out = exec(&mut core, "mntr", NOW + 60_000);
        let pairs: Vec<(&str, &str)> = out
            .lines()
            .map(|l| l.split_once('\t').expect("tab-separated"))
            .collect();
        let keys: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let mut expected = vec![
            "zk_version",
            "zk_server_state",
            "zk_ephemerals_count",
            "zk_num_alive_connections",
            "zk_avg_latency",
            "zk_outstanding_requests",
            "zk_znode_count",
            "zk_global_sessions",
            "zk_non_mtls_remote_conn_count",
            "zk_packets_sent",
            "zk_packets_received",
            "zk_connection_drop_probability",
            "zk_watch_count",
            "zk_min_latency",
            "zk_max_file_descriptor_count",
            "zk_approximate_data_size",
            "zk_open_file_descriptor_count",
            "zk_local_sessions",
            "zk_uptime",
            "zk_max_latency",
            "zk_outstanding_tls_handshake",
            "zk_non_mtls_local_conn_count",
        ];
        if !cfg!(target_os = "linux") {
            expected.retain(|k| !k.contains("file_descriptor"));
        }
        assert_eq!(keys, expected);
        let get = |k: &str| pairs.iter().find(|p| p.0 == k).unwrap().1;
        assert!(get("zk_version").starts_with("3.9.5-zkd-"));
        assert_eq!(get("zk_server_state"), "standalone");
        assert_eq!(get("zk_ephemerals_count"), "3");
        assert_eq!(get("zk_num_alive_connections"), "3");
        assert_eq!(get("zk_znode_count"), "9");
        assert_eq!(get("zk_global_sessions"), "2");
        // Data watches on /app (two connections) and /nope, child watch on /app.
        assert_eq!(get("zk_watch_count"), "4");
        // 44 for the four system nodes, then path + data of /app, /app/e1, e2, e3.
        assert_eq!(get("zk_approximate_data_size"), "77");
        assert_eq!(get("zk_uptime"), "60000");
        assert_eq!(get("zk_avg_latency"), "0.0");
        if cfg!(target_os = "linux") {
            assert!(get("zk_open_file_descriptor_count").parse::<u64>().unwrap() > 0);
            assert!(get("zk_max_file_descriptor_count").parse::<u64>().unwrap() > 0);
        }
    }

    #[test]
    fn cons_prints_full_connection_info() {
        let (mut core, a, b) = busy_core(all_allowed());
        let out = exec(&mut core, "cons", NOW + 10);
        assert_eq!(
            lines(&out),
            [
                format!(
                    " /127.0.0.1:50001[1](queued=0,recved=6,sent=6,sid=0x{a:x},lop=GETC,\
                     est={NOW},to=10000,lcxid=0x5,lzxid=0x6,lresp={},llat=0,minlat=0,\
                     avglat=0,maxlat=0)",
                    NOW + 6
                )
                .as_str(),
                &format!(
                    " /127.0.0.1:50002[1](queued=0,recved=4,sent=4,sid=0x{b:x},lop=GETD,\
                     est={NOW},to=30000,lcxid=0x3,lzxid=0x6,lresp={},llat=0,minlat=0,\
                     avglat=0,maxlat=0)",
                    NOW + 7
                ),
                " /127.0.0.1:50003[0](queued=0,recved=1,sent=0)",
                "",
                "",
            ]
        );
    }

    #[test]
    fn cons_latency_fields() {
        let (mut core, _, _) = busy_core(all_allowed());
        let c = core.conns.get_mut(&1).unwrap();
        c.latency_count = 3;
        c.total_latency_ms = 10;
        c.min_latency_ms = 1;
        c.max_latency_ms = 6;
        c.last_latency_ms = 2;
        let out = exec(&mut core, "cons", NOW);
        assert!(
            out.contains(",llat=2,minlat=1,avglat=3,maxlat=6)\n"),
            "{out}"
        );
    }

    #[test]
    fn crst_resets_every_connection() {
        let (mut core, a, _) = busy_core(all_allowed());
        assert_eq!(exec(&mut core, "crst", NOW), "Connection stats reset.\n");
        core.conns.remove(&3);
        assert!(core.accept(4, "127.0.0.1:50004".parse().unwrap(), NOW));
        let out = exec(&mut core, "cons", NOW);
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                " /127.0.0.1:50001[1](queued=0,recved=0,sent=0,sid=0x{a:x},lop=NA,est={NOW},\
                 to=10000,lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)"
            )
        );
    }

    #[test]
    fn srst_resets_server_counters() {
        let (mut core, _, _) = busy_core(all_allowed());
        core.stats.latency_count = 2;
        core.stats.total_latency_ms = 4;
        core.stats.max_latency_ms = 3;
        core.stats.min_latency_ms = 1;
        assert_eq!(exec(&mut core, "srst", NOW), "Server stats reset.\n");
        // As in ZooKeeper: the srst answer is the one packet sent since the reset, and
        // the next command is the one packet received.
        let out = exec(&mut core, "srvr", NOW);
        assert!(
            out.contains("\nLatency min/avg/max: 0/0.0/0\nReceived: 1\nSent: 1\n"),
            "{out}"
        );
    }

    #[test]
    fn conf_is_dump_conf() {
        let mut cfg = all_allowed();
        cfg.client_port = 2999;
        cfg.data_dir = "/var/lib/zkd".into();
        cfg.data_log_dir = "/var/log/zkd".into();
        let mut core = Core::new(cfg, NOW);
        let out = exec(&mut core, "conf", NOW);
        assert_eq!(
            lines(&out),
            [
                "clientPort=2999",
                "secureClientPort=-1",
                "dataDir=/var/lib/zkd/version-2",
                "dataDirSize=0",
                "dataLogDir=/var/log/zkd/version-2",
                "dataLogSize=0",
                "tickTime=2000",
                "maxClientCnxns=60",
                "minSessionTimeout=4000",
                "maxSessionTimeout=40000",
                "clientPortListenBacklog=-1",
                "serverId=0",
                "",
            ]
        );
    }

    #[test]
    fn dirs_sums_the_version_2_directories() {
        let dir = std::env::temp_dir().join(format!("zkd-fourlw-dirs-{}", std::process::id()));
        let data = dir.join("data");
        let log = dir.join("log");
        std::fs::create_dir_all(data.join("version-2/sub")).unwrap();
        std::fs::create_dir_all(log.join("version-2")).unwrap();
        std::fs::write(data.join("version-2/snapshot.0"), [0u8; 100]).unwrap();
        std::fs::write(data.join("version-2/sub/x"), [0u8; 11]).unwrap();
        std::fs::write(data.join("not-counted"), [0u8; 7]).unwrap();
        std::fs::write(log.join("version-2/log.1"), [0u8; 42]).unwrap();
        let mut cfg = all_allowed();
        cfg.data_dir = data;
        cfg.data_log_dir = log;
        let mut core = Core::new(cfg, NOW);
        let out = exec(&mut core, "dirs", NOW);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out, "datadir_size: 111\nlogdir_size: 42\n");
    }

    #[test]
    fn dump_lists_sessions_ephemerals_and_connections_header() {
        let (mut core, a, b) = busy_core(all_allowed());
        let out = exec(&mut core, "dump", NOW);
        // Expiry is rounded up to the next tick (2000 ms).
        let exp_a = (NOW + 7 + 10_000) / 2000 * 2000 + 2000;
        let exp_b = (NOW + 7 + 30_000) / 2000 * 2000 + 2000;
        assert_eq!(
            lines(&out),
            [
                "SessionTracker dump:",
                "Session Sets (2)/(2):",
                &format!("1 expire at {}:", java_date(exp_a)),
                &format!("\t0x{a:x}"),
                &format!("1 expire at {}:", java_date(exp_b)),
                &format!("\t0x{b:x}"),
                "ephemeral nodes dump:",
                "Sessions with Ephemerals (2):",
                &format!("0x{a:x}:"),
                "\t/app/e1",
                "\t/app/e2",
                &format!("0x{b:x}:"),
                "\t/app/e3",
                "Connections dump:",
                "",
            ]
        );
    }

    #[test]
    fn java_date_format() {
        // 2026-11-27 03:31:34 UTC was a Friday.
        assert_eq!(java_date(1_795_750_294_000), "Fri Nov 27 03:31:34 UTC 2026");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }

    #[test]
    fn socket_addresses_print_as_java_does() {
        let v4: SocketAddr = "10.1.2.3:2181".parse().unwrap();
        assert_eq!(java_socket_addr(&v4), "/10.1.2.3:2181");
        let v6: SocketAddr = "[::1]:40000".parse().unwrap();
        assert_eq!(java_socket_addr(&v6), "/[0:0:0:0:0:0:0:1]:40000");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().unwrap();
        assert_eq!(java_socket_addr(&mapped), "/127.0.0.1:5");
    }

    #[test]
    fn watch_commands_show_data_watches_by_session() {
        let (mut core, a, b) = busy_core(all_allowed());
        assert_eq!(
            exec(&mut core, "wchs", NOW),
            "2 connections watching 2 paths\nTotal watches:3\n"
        );
        assert_eq!(
            exec(&mut core, "wchc", NOW),
            format!("0x{a:x}\n\t/app\n0x{b:x}\n\t/app\n\t/nope\n\n")
        );
        assert_eq!(
            exec(&mut core, "wchp", NOW),
            format!("/app\n\t0x{a:x}\n\t0x{b:x}\n/nope\n\t0x{b:x}\n\n")
        );
        let mut empty = Core::new(all_allowed(), NOW);
        assert_eq!(
            exec(&mut empty, "wchs", NOW),
            "0 connections watching 0 paths\nTotal watches:0\n"
        );
        assert_eq!(exec(&mut empty, "wchc", NOW), "\n");
        assert_eq!(exec(&mut empty, "wchp", NOW), "\n");
    }

    #[test]
    fn envi_lists_the_environment() {
        let mut core = Core::new(all_allowed(), NOW);
        let out = exec(&mut core, "envi", NOW);
        let l = lines(&out);
        assert_eq!(l[0], "Environment:");
        assert!(l[1].starts_with("zookeeper.version=3.9.5-zkd-"));
        assert!(l[2].starts_with("host.name="));
        let keys: Vec<&str> = l[1..]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.split_once('=').unwrap().0)
            .collect();
        assert_eq!(
            keys,
            [
                "zookeeper.version",
                "host.name",
                "zkd.version",
                "zkd.executable",
                "zkd.pid",
                "os.name",
                "os.arch",
                "os.version",
                "user.name",
                "user.home",
                "user.dir",
                "zkd.memory.rss",
            ]
        );
        assert!(out.ends_with('\n'));
    }
}
