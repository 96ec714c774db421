//! zoo.cfg: the server's static configuration (zkd's replacement for ZooKeeper's
//! `QuorumPeerConfig` + `ServerConfig`, plus the handful of JVM system properties
//! that operators habitually put in zoo.cfg).
//!
//! This module owns:
//! * reading zoo.cfg with `java.util.Properties` syntax, so that any file an
//!   existing ZooKeeper deployment uses parses the same way here;
//! * the defaults, including the ones that are derived from other keys
//!   (session timeouts from `tickTime`, `dataLogDir` from `dataDir`);
//! * rejecting values ZooKeeper rejects, plus values that would make zkd unsafe;
//! * the `conf` four-letter-word rendering, because it is a pure function of
//!   the configuration and must stay byte-compatible with ZooKeeper's.
//!
//! This module must never:
//! * mutate process-global state (ZooKeeper stores unknown keys as system
//!   properties; we turn them into fields or warnings instead, so two configs
//!   can coexist in one process, e.g. in tests);
//! * log or print: problems are returned as `ConfigError` / warning strings and
//!   the caller decides how to report them (the binary logs, tests assert);
//! * create, write or lock anything on disk: directories belong to the
//!   persistence layer. The only I/O is reading the config file, the optional
//!   DNS lookup of `clientPortAddress`, and measuring directory sizes for `conf`;
//! * silently ignore a key: every key becomes a field, an error or a warning.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// What `zkd` uses without a config file. Same as ZooKeeper's zoo_sample.cfg,
/// which is what people mean by "ZooKeeper's defaults".
pub const DEFAULT_TICK_TIME_MS: u32 = 2000;
/// What ZooKeeper uses when a zoo.cfg omits `tickTime` (ZooKeeperServer.DEFAULT_TICK_TIME).
/// Deliberately different from [`DEFAULT_TICK_TIME_MS`]: a file that works on
/// ZooKeeper must negotiate the same session timeouts on zkd.
pub const ZK_FILE_DEFAULT_TICK_TIME_MS: u32 = 3000;
pub const DEFAULT_CLIENT_PORT: u16 = 2181;
/// `jute.maxbuffer` default (BinaryInputArchive.maxBuffer).
pub const DEFAULT_JUTE_MAX_BUFFER: usize = 0xfffff;
/// Server ids above this cannot be encoded in extended ephemeral owners (EphemeralType).
pub const MAX_EXTENDED_SERVER_ID: u64 = 0xfe;
/// PurgeTxnLog refuses to keep fewer snapshots than this.
pub const MIN_SNAP_RETAIN_COUNT: u32 = 3;
/// ZooKeeper's on-disk layout version; snapshots and logs live in `<dir>/version-2`.
pub const ON_DISK_VERSION_DIR: &str = "version-2";

const DEFAULT_METRICS_PROVIDER: &str = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider";
const HOUR_MS: u64 = 3_600_000;

/// Every four-letter word ZooKeeper knows (FourLetterCommands.cmd2String);
/// `*` in the whitelist means exactly these, not "any string".
pub const KNOWN_FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srst", "srvr", "stat",
    "wchc", "wchp", "wchs", "mntr", "isro", "hash",
];

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a configuration was refused. Every variant's message starts with the
/// file name so that an operator with several configs knows which one is bad.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The text is not valid `java.util.Properties` (e.g. a malformed `\uXXXX`).
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{}: invalid value \"{value}\" for {key}: {reason}", file.display())]
    InvalidValue {
        file: PathBuf,
        key: String,
        value: String,
        reason: String,
    },

    #[error("{}: {key} is not set: {reason}", file.display())]
    Missing {
        file: PathBuf,
        key: String,
        reason: String,
    },

    /// A combination of settings that cannot work together.
    #[error("{}: {message}", file.display())]
    Invalid { file: PathBuf, message: String },
}

// ---------------------------------------------------------------------------
// Four-letter-word whitelist
// ---------------------------------------------------------------------------

/// `4lw.commands.whitelist`. ZooKeeper always enables `srvr` (zkServer.sh
/// status depends on it) and enables `isro` when read-only mode is on; those
/// implicit entries are part of the value here, so callers need only `allows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourLetterWhitelist {
    all: bool,
    commands: BTreeSet<String>,
}

impl Default for FourLetterWhitelist {
    /// ZooKeeper's behaviour when the key is absent: only `srvr`.
    fn default() -> Self {
        Self::from_commands(std::iter::empty::<&str>())
    }
}

impl FourLetterWhitelist {
    /// Every known command (`*`).
    pub fn all() -> Self {
        FourLetterWhitelist {
            all: true,
            commands: BTreeSet::new(),
        }
    }

    /// Exactly these commands plus the always-on `srvr`.
    pub fn from_commands<I, S>(cmds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut commands: BTreeSet<String> =
            cmds.into_iter().map(|c| c.as_ref().to_owned()).collect();
        commands.insert("srvr".to_owned());
        FourLetterWhitelist {
            all: false,
            commands,
        }
    }

    /// Parses the property value. Returns the names that are not four-letter
    /// words ZooKeeper knows, so the caller can warn: ZooKeeper accepts them
    /// silently, which hides typos like `rouk`.
    ///
    /// ZooKeeper splits on commas only; we also split on whitespace because a
    /// name containing a space can never match a command, so accepting
    /// "ruok stat" loses nothing and saves a confused operator.
    pub fn parse(list: &str) -> (Self, Vec<String>) {
        let names: Vec<&str> = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        if names.contains(&"*") {
            return (Self::all(), Vec::new());
        }
        let unknown = names
            .iter()
            .filter(|n| !KNOWN_FOUR_LETTER_WORDS.contains(n))
            .map(|n| n.to_string())
            .collect();
        (Self::from_commands(names), unknown)
    }

    /// Whether `cmd` (e.g. "ruok") may be executed. Case-sensitive, as in ZooKeeper.
    pub fn allows(&self, cmd: &str) -> bool {
        if self.all {
            KNOWN_FOUR_LETTER_WORDS.contains(&cmd)
        } else {
            self.commands.contains(cmd)
        }
    }

    pub fn is_all(&self) -> bool {
        self.all
    }

    /// The enabled commands, sorted (for logging).
    pub fn enabled(&self) -> Vec<String> {
        if self.all {
            let mut v: Vec<String> = KNOWN_FOUR_LETTER_WORDS
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.sort();
            v
        } else {
            self.commands.iter().cloned().collect()
        }
    }

    fn with(mut self, cmd: &str) -> Self {
        if !self.all {
            self.commands.insert(cmd.to_owned());
        }
        self
    }
}

// ---------------------------------------------------------------------------
// Ensemble members
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    Participant,
    Observer,
}

/// One `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`.
/// Stored and validated now so that ensemble configs are checked for typos
/// even though zkd cannot run an ensemble yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u64,
    /// Host name or IP literal, without IPv6 brackets. Not resolved here:
    /// peers may legitimately be unresolvable when this server starts.
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: PeerRole,
    /// Client listen host from the `;host:port` part; `None` when only a port
    /// was given, which ZooKeeper treats as 0.0.0.0.
    pub client_host: Option<String>,
    pub client_port: Option<u16>,
}

impl fmt::Display for ServerSpec {
    /// zoo.cfg value syntax, so specs can be logged or written back verbatim.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            bracket_v6(&self.host),
            self.quorum_port,
            self.election_port
        )?;
        if self.role == PeerRole::Observer {
            f.write_str(":observer")?;
        }
        if let Some(port) = self.client_port {
            match &self.client_host {
                Some(h) => write!(f, ";{}:{}", bracket_v6(h), port)?,
                None => write!(f, ";{port}")?,
            }
        }
        Ok(())
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; `None` for built-in defaults. Kept so that
    /// errors from a later `validate` still name the file.
    pub config_file: Option<PathBuf>,

    // --- core (QuorumPeerConfig / ServerConfig) ---
    pub tick_time_ms: u32,
    pub data_dir: PathBuf,
    /// Transaction logs; ZooKeeper defaults it to `data_dir`.
    pub data_log_dir: PathBuf,
    /// 0 binds an ephemeral port, as in ZooKeeper (handy in tests; `conf` then
    /// shows the bound port, see [`Config::to_conf_lines_with`]).
    pub client_port: u16,
    /// `None` = all interfaces.
    pub client_port_address: Option<IpAddr>,
    /// `clientPortListenBacklog`; `None` = OS default (ZooKeeper's -1).
    pub client_port_listen_backlog: Option<u32>,
    /// Per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    /// `maxCnxns`: all clients together; 0 = unlimited.
    pub max_cnxns: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub global_outstanding_limit: u32,
    pub four_letter_whitelist: FourLetterWhitelist,
    /// `readonlymode.enabled`; only effect in standalone mode is enabling `isro`.
    pub read_only_mode_enabled: bool,
    pub local_sessions_enabled: bool,
    pub local_sessions_upgrading_enabled: bool,

    // --- data model / protocol ---
    /// Largest request/response payload in bytes (`jute.maxbuffer`).
    pub jute_max_buffer: usize,
    /// TTL and container-style extended ephemeral owners (`zookeeper.extendedTypesEnabled`).
    pub extended_types_enabled: bool,
    /// `zookeeper.emulate353TTLNodes`: TTL encoding bug-compatibility with 3.5.3.
    pub emulate_353_ttl_nodes: bool,
    /// `zookeeper.DigestAuthenticationProvider.superDigest`, "user:base64(sha1(user:password))".
    pub super_digest: Option<String>,
    /// `zookeeper.skipACL=yes`.
    pub skip_acl: bool,
    pub enforce_quota: bool,
    /// `zookeeper.digest.enabled`: maintain the data-tree digest.
    pub digest_enabled: bool,
    pub container_check_interval_ms: u64,
    pub container_max_per_minute: u32,
    pub container_max_never_used_interval_ms: u64,

    // --- persistence ---
    pub snap_count: u64,
    /// `zookeeper.snapSizeLimitInKb`; <= 0 disables the size trigger.
    pub snap_size_limit_kb: i64,
    pub pre_alloc_size_kb: u64,
    /// `zookeeper.snapshot.compression.method`: compress snapshot payloads (lz4).
    pub snapshot_compression: bool,
    pub force_sync: bool,
    /// `zkd.test.loseUnsyncedWrites=true`, TEST ONLY: hold every unsynced write in memory
    /// until its fsync (`zkd_storage::LoseUnsyncedBackend`), so that killing the process
    /// loses what a power cut could.
    pub test_lose_unsynced_writes: bool,
    pub fsync_warning_threshold_ms: u64,
    pub autopurge_snap_retain_count: u32,
    /// Authoritative purge interval; 0 = never purge.
    pub autopurge_purge_interval_ms: u64,
    /// `autopurge_purge_interval_ms` in whole hours (ZooKeeper's deprecated getter).
    pub autopurge_purge_interval_hours: u32,

    // --- admin server ---
    pub admin_server_enabled: bool,
    pub admin_server_address: String,
    pub admin_server_port: u16,
    pub admin_command_url: String,

    // --- ensemble (parsed and validated, not implemented) ---
    pub standalone_enabled: bool,
    pub reconfig_enabled: bool,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub peer_type: PeerRole,
    pub servers: Vec<ServerSpec>,
    /// From `<dataDir>/myid`; never read here (that file is the persistence
    /// layer's), but `validate` checks it when the caller fills it in.
    pub my_id: Option<u64>,
}

impl Default for Config {
    /// `zkd` with no config file: standalone on port 2181, data under ./data,
    /// everything else as ZooKeeper's zoo_sample.cfg + built-in defaults.
    fn default() -> Self {
        let tick = DEFAULT_TICK_TIME_MS;
        Config {
            config_file: None,
            tick_time_ms: tick,
            data_dir: PathBuf::from("./data"),
            data_log_dir: PathBuf::from("./data"),
            client_port: DEFAULT_CLIENT_PORT,
            client_port_address: None,
            client_port_listen_backlog: None,
            max_client_cnxns: 60,
            max_cnxns: 0,
            min_session_timeout_ms: tick * 2,
            max_session_timeout_ms: tick * 20,
            global_outstanding_limit: 1000,
            four_letter_whitelist: FourLetterWhitelist::default(),
            read_only_mode_enabled: false,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            jute_max_buffer: DEFAULT_JUTE_MAX_BUFFER,
            extended_types_enabled: false,
            emulate_353_ttl_nodes: false,
            super_digest: None,
            skip_acl: false,
            enforce_quota: false,
            digest_enabled: true,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            container_max_never_used_interval_ms: 0,
            snap_count: 100_000,
            snapshot_compression: false,
            snap_size_limit_kb: 4_194_304,
            pre_alloc_size_kb: 65_536,
            force_sync: true,
            test_lose_unsynced_writes: false,
            fsync_warning_threshold_ms: 1000,
            autopurge_snap_retain_count: MIN_SNAP_RETAIN_COUNT,
            autopurge_purge_interval_ms: 0,
            autopurge_purge_interval_hours: 0,
            admin_server_enabled: true,
            admin_server_address: "0.0.0.0".to_owned(),
            admin_server_port: 8080,
            admin_command_url: "/commands".to_owned(),
            standalone_enabled: true,
            reconfig_enabled: false,
            init_limit: 0,
            sync_limit: 0,
            peer_type: PeerRole::Participant,
            servers: Vec::new(),
            my_id: None,
        }
    }
}

impl Config {
    /// Reads and parses a zoo.cfg. Returns the config and human-readable
    /// warnings (unknown keys, ignored settings, values ZooKeeper would adjust).
    pub fn load(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        // Java's Properties.load(InputStream) decodes ISO-8859-1. We prefer
        // UTF-8 because that is what editors write (identical for ASCII) and
        // fall back to Latin-1 so no byte sequence is ever rejected.
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
        };
        Self::parse(&text, path)
    }

    /// Parses zoo.cfg text. `source` is only used to name the file in
    /// errors and warnings. The result has already passed [`Config::validate`].
    pub fn parse(text: &str, source: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let props = parse_properties(text).map_err(|(line, message)| ConfigError::Syntax {
            file: source.to_owned(),
            line,
            message,
        })?;
        let mut p = Parser::new(source);
        let config = p.run(props)?;
        config.validate()?;
        Ok((config, p.warnings))
    }

    /// Rejects combinations ZooKeeper rejects, and ones that would be unsafe.
    /// `parse` calls this; call it again after changing fields (e.g. `my_id`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let file = self.file_label();
        let bad = |key: &str, value: &dyn fmt::Display, reason: String| ConfigError::InvalidValue {
            file: file.clone(),
            key: key.to_owned(),
            value: value.to_string(),
            reason,
        };
        let invalid = |message: String| ConfigError::Invalid {
            file: file.clone(),
            message,
        };
        // Java ints: every timeout must survive the trip through the wire's i32.
        let int_max = i32::MAX as u32;

        if self.tick_time_ms == 0 || self.tick_time_ms > int_max {
            return Err(bad(
                "tickTime",
                &self.tick_time_ms,
                "expected a positive integer".into(),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("dataDir", &"", "must not be empty".into()));
        }
        if self.data_log_dir.as_os_str().is_empty() {
            return Err(bad("dataLogDir", &"", "must not be empty".into()));
        }
        // A zero timeout would expire sessions between two pings.
        for (key, v) in [
            ("minSessionTimeout", self.min_session_timeout_ms),
            ("maxSessionTimeout", self.max_session_timeout_ms),
        ] {
            if v == 0 || v > int_max {
                return Err(bad(
                    key,
                    &v,
                    "expected a positive integer, or -1 for the default".into(),
                ));
            }
        }
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return Err(bad(
                "minSessionTimeout",
                &self.min_session_timeout_ms,
                format!(
                    "must not be larger than maxSessionTimeout ({})",
                    self.max_session_timeout_ms
                ),
            ));
        }
        if self.jute_max_buffer == 0 || self.jute_max_buffer > i32::MAX as usize {
            return Err(bad(
                "jute.maxbuffer",
                &self.jute_max_buffer,
                "expected a positive integer".into(),
            ));
        }
        if self.global_outstanding_limit == 0 {
            return Err(bad(
                "globalOutstandingLimit",
                &0,
                "expected a positive integer".into(),
            ));
        }
        if self.container_check_interval_ms == 0 {
            return Err(bad(
                "znode.container.checkIntervalMs",
                &0,
                "expected a positive integer".into(),
            ));
        }
        if self.container_max_per_minute == 0 {
            // ContainerManager divides a minute by it.
            return Err(bad(
                "znode.container.maxPerMinute",
                &0,
                "expected a positive integer".into(),
            ));
        }
        if self.autopurge_snap_retain_count < MIN_SNAP_RETAIN_COUNT {
            return Err(bad(
                "autopurge.snapRetainCount",
                &self.autopurge_snap_retain_count,
                format!("must be at least {MIN_SNAP_RETAIN_COUNT}"),
            ));
        }
        if self.snap_count < 2 {
            return Err(bad(
                "snapCount",
                &self.snap_count,
                "must be at least 2".into(),
            ));
        }
        if let Some(d) = &self.super_digest {
            if let Err(reason) = check_super_digest(d) {
                return Err(bad("DigestAuthenticationProvider.superDigest", d, reason));
            }
        }
        if let Some(id) = self.my_id {
            if self.extended_types_enabled && id > MAX_EXTENDED_SERVER_ID {
                return Err(invalid(format!(
                    "extendedTypesEnabled is true but server id {id} is too large (the maximum is {MAX_EXTENDED_SERVER_ID})"
                )));
            }
        }
        self.validate_servers(&file)
    }

    fn validate_servers(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_owned(),
            message,
        };
        let mut ids = BTreeSet::new();
        for s in &self.servers {
            let key = format!("server.{}", s.id);
            let bad = |reason: &str| ConfigError::InvalidValue {
                file: file.to_owned(),
                key: key.clone(),
                value: s.to_string(),
                reason: reason.to_owned(),
            };
            // Properties would silently keep one of server.1 / server.01.
            if !ids.insert(s.id) {
                return Err(invalid(format!(
                    "server id {} is listed more than once",
                    s.id
                )));
            }
            if s.host.is_empty() {
                return Err(bad("host must not be empty"));
            }
            if s.quorum_port == 0 || s.election_port == 0 || s.client_port == Some(0) {
                return Err(bad("ports must be between 1 and 65535"));
            }
            if s.quorum_port == s.election_port {
                return Err(bad("quorum port and election port must be different"));
            }
        }
        let participants = self
            .servers
            .iter()
            .filter(|s| s.role == PeerRole::Participant)
            .count();
        let observers = self.servers.len() - participants;
        if participants == 0 {
            if !self.standalone_enabled {
                return Err(invalid(
                    "standaloneEnabled=false requires at least one participant server.N line"
                        .into(),
                ));
            }
            if observers > 0 {
                return Err(invalid(
                    "observers without participants is an invalid configuration".into(),
                ));
            }
        } else if participants == 1 && self.standalone_enabled && observers > 0 {
            return Err(invalid(
                "observers without a quorum is an invalid configuration".into(),
            ));
        }
        if self.is_distributed() {
            if self.init_limit == 0 {
                return Err(ConfigError::Missing {
                    file: file.to_owned(),
                    key: "initLimit".into(),
                    reason: "required for an ensemble".into(),
                });
            }
            if self.sync_limit == 0 {
                return Err(ConfigError::Missing {
                    file: file.to_owned(),
                    key: "syncLimit".into(),
                    reason: "required for an ensemble".into(),
                });
            }
            if let Some(id) = self.my_id {
                if !ids.contains(&id) {
                    return Err(invalid(format!("my id {id} is not in the server.N list")));
                }
            }
        }
        Ok(())
    }

    /// ZooKeeper's `isDistributed()`: more than one voter, or standalone mode
    /// switched off. zkd serves only non-distributed configs for now.
    pub fn is_distributed(&self) -> bool {
        let participants = self
            .servers
            .iter()
            .filter(|s| s.role == PeerRole::Participant)
            .count();
        !self.standalone_enabled || participants > 1
    }

    /// The data of `/zookeeper/config` on an ensemble server (`None` standalone, where
    /// ZooKeeper leaves it empty): QuorumMaj.toString of the static config, one
    /// `server.N=host:quorumPort:electionPort:participant|observer[;clientHost:clientPort]`
    /// line per member, in java.util.HashMap order of the ids (ascending for ids below 16),
    /// then `version=` and the config version in hex, with no newline after it.
    ///
    /// The version is 0: ZooKeeper keeps 0 for a static config while reconfigEnabled is
    /// false (the leader stamps the first proposal's zxid on it only with reconfig on),
    /// and zkd has no reconfig. The client part is printed only when the server line has
    /// one (a bare port means host 0.0.0.0), as QuorumServer.toString does; IPv6 literals
    /// come out in Java's uncompressed form.
    pub fn dynamic_config_text(&self) -> Option<String> {
        if !self.is_distributed() {
            return None;
        }
        let mut out = String::new();
        for s in java_hashmap_order(&self.servers) {
            out.push_str(&format!(
                "server.{}={}:{}:{}:{}",
                s.id,
                java_host_string(&s.host),
                s.quorum_port,
                s.election_port,
                match s.role {
                    PeerRole::Participant => "participant",
                    PeerRole::Observer => "observer",
                }
            ));
            if let Some(port) = s.client_port {
                let host = s.client_host.as_deref().unwrap_or("0.0.0.0");
                out.push_str(&format!(";{}:{port}", java_host_string(host)));
            }
            out.push('\n');
        }
        out.push_str("version=0");
        Some(out)
    }

    /// The session timeout granted for a connect request, clamped exactly as
    /// ZooKeeperServer.processConnectRequest does (raise to min, then cap at max).
    pub fn effective_session_timeout_ms(&self, requested: i32) -> i32 {
        let min = i32::try_from(self.min_session_timeout_ms).unwrap_or(i32::MAX);
        let max = i32::try_from(self.max_session_timeout_ms).unwrap_or(i32::MAX);
        let mut timeout = requested;
        if timeout < min {
            timeout = min;
        }
        if timeout > max {
            timeout = max;
        }
        timeout
    }

    /// Where snapshots live: `<dataDir>/version-2`, ZooKeeper's layout.
    pub fn snap_dir(&self) -> PathBuf {
        self.data_dir.join(ON_DISK_VERSION_DIR)
    }

    /// Where transaction logs live: `<dataLogDir>/version-2`.
    pub fn txn_log_dir(&self) -> PathBuf {
        self.data_log_dir.join(ON_DISK_VERSION_DIR)
    }

    /// The `conf` four-letter word for a standalone server, using the
    /// configured client port. See [`Config::to_conf_lines_with`].
    pub fn to_conf_lines(&self) -> Vec<(String, String)> {
        self.to_conf_lines_with(None)
    }

    /// The `conf` four-letter word, key by key, in ZooKeeper's order
    /// (ZooKeeperServer.dumpConf). Render each as `key=value\n`.
    ///
    /// `bound_client_port` is the port actually listened on, which ZooKeeper
    /// prints instead of the configured one (they differ for clientPort=0).
    /// The directory sizes are measured now, as ZooKeeper does on every call.
    /// Note: ZooKeeper 3.8.0 swaps dataDirSize and dataLogSize (fixed later);
    /// we print the corrected values.
    pub fn to_conf_lines_with(&self, bound_client_port: Option<u16>) -> Vec<(String, String)> {
        let snap_dir = format!(
            "{}/{}",
            java_absolute_path(&self.data_dir),
            ON_DISK_VERSION_DIR
        );
        let log_dir = format!(
            "{}/{}",
            java_absolute_path(&self.data_log_dir),
            ON_DISK_VERSION_DIR
        );
        // Standalone ZooKeeperServer.getServerId() is always 0, myid or not.
        let server_id = if self.is_distributed() {
            self.my_id.unwrap_or(0)
        } else {
            0
        };
        let backlog = self.client_port_listen_backlog.map_or(-1, i64::from);
        let lines: Vec<(&str, String)> = vec![
            (
                "clientPort",
                bound_client_port.unwrap_or(self.client_port).to_string(),
            ),
            // TLS is not implemented; -1 is what ZooKeeper prints without one.
            ("secureClientPort", "-1".to_owned()),
            ("dataDir", snap_dir.clone()),
            ("dataDirSize", dir_size(Path::new(&snap_dir)).to_string()),
            ("dataLogDir", log_dir.clone()),
            ("dataLogSize", dir_size(Path::new(&log_dir)).to_string()),
            ("tickTime", self.tick_time_ms.to_string()),
            ("maxClientCnxns", self.max_client_cnxns.to_string()),
            ("minSessionTimeout", self.min_session_timeout_ms.to_string()),
            ("maxSessionTimeout", self.max_session_timeout_ms.to_string()),
            ("clientPortListenBacklog", backlog.to_string()),
            ("serverId", server_id.to_string()),
        ];
        lines.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn file_label(&self) -> PathBuf {
        self.config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("<built-in defaults>"))
    }
}

/// Like java.io.File.getAbsolutePath: prefix the working directory, collapse
/// repeated slashes and drop a trailing one, but keep `.` and `..` — ZooKeeper
/// prints `/cwd/./data/version-2` for `dataDir=./data`, and so do we.
fn java_absolute_path(p: &Path) -> String {
    let raw = p.to_string_lossy();
    let mut s = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(c == '/' && s.ends_with('/')) {
            s.push(c);
        }
    }
    if s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    if s.starts_with('/') {
        return s;
    }
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (cwd.as_str(), s.is_empty()) {
        (_, true) => cwd,
        ("/", false) => format!("/{s}"),
        _ => format!("{cwd}/{s}"),
    }
}

/// Sum of file sizes below `path` (ZooKeeperServer.getDirSize); 0 if missing.
pub fn dir_size(path: &Path) -> u64 {
    fn walk(path: &Path, depth: u32) -> u64 {
        // Depth cap: a symlink loop must not hang a monitoring command.
        let Ok(meta) = std::fs::metadata(path) else {
            return 0;
        };
        if !meta.is_dir() {
            return meta.len();
        }
        if depth > 32 {
            return 0;
        }
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| walk(&e.path(), depth + 1)).sum())
            .unwrap_or(0)
    }
    walk(path, 0)
}

fn check_super_digest(d: &str) -> Result<(), String> {
    use base64::Engine as _;
    // The client sends "user:password"; the server compares
    // "user:" + base64(sha1("user:password")) with this string.
    let Some((user, hash)) = d.split_once(':') else {
        return Err("expected user:base64digest".into());
    };
    if user.is_empty() || hash.is_empty() {
        return Err("expected user:base64digest".into());
    }
    if base64::engine::general_purpose::STANDARD
        .decode(hash)
        .is_err()
    {
        return Err("the digest after ':' is not valid base64".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// java.util.Properties syntax
// ---------------------------------------------------------------------------

struct Property {
    key: String,
    value: String,
    line: usize,
}

fn is_prop_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\x0c'
}

/// Splits text into key/value pairs following java.util.Properties.load:
/// `#`/`!` comment lines (only at the start of a line: `a=b # c` has value
/// `b # c`, as in ZooKeeper), backslash line continuation, `=`, `:` or
/// whitespace as separator, and the usual escapes. Values keep trailing
/// whitespace here; the caller trims like ZooKeeper does.
/// Errors carry the 1-based line number.
fn parse_properties(text: &str) -> Result<Vec<Property>, (usize, String)> {
    // Java would make a BOM part of the first key; nobody wants that.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let first = lines[i].trim_start_matches(is_prop_ws);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut cur = first;
        loop {
            let trailing = cur.chars().rev().take_while(|&c| c == '\\').count();
            if trailing % 2 == 1 {
                logical.push_str(&cur[..cur.len() - 1]);
                if i >= lines.len() {
                    break;
                }
                cur = lines[i].trim_start_matches(is_prop_ws);
                i += 1;
            } else {
                logical.push_str(cur);
                break;
            }
        }
        let chars: Vec<char> = logical.chars().collect();
        let mut key_len = chars.len();
        let mut value_start = chars.len();
        let mut has_sep = false;
        let mut preceding_backslash = false;
        for (idx, &c) in chars.iter().enumerate() {
            if !preceding_backslash && (c == '=' || c == ':') {
                key_len = idx;
                value_start = idx + 1;
                has_sep = true;
                break;
            }
            if !preceding_backslash && is_prop_ws(c) {
                key_len = idx;
                value_start = idx + 1;
                break;
            }
            preceding_backslash = c == '\\' && !preceding_backslash;
        }
        while value_start < chars.len() {
            let c = chars[value_start];
            if !is_prop_ws(c) {
                if !has_sep && (c == '=' || c == ':') {
                    has_sep = true;
                } else {
                    break;
                }
            }
            value_start += 1;
        }
        let key = unescape(&chars[..key_len]).map_err(|m| (line_no, m))?;
        let value = unescape(&chars[value_start..]).map_err(|m| (line_no, m))?;
        out.push(Property {
            key,
            value,
            line: line_no,
        });
    }
    Ok(out)
}

fn unescape(chars: &[char]) -> Result<String, String> {
    let mut units: Vec<u16> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            continue;
        }
        let Some(&e) = chars.get(i) else { break };
        i += 1;
        match e {
            'u' => {
                let hex: String = chars
                    .get(i..i + 4)
                    .map(|h| h.iter().collect())
                    .unwrap_or_default();
                let unit = u16::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()))
                    .ok_or_else(|| "malformed \\uxxxx escape".to_owned())?;
                units.push(unit);
                i += 4;
            }
            't' => units.push(u16::from(b'\t')),
            'n' => units.push(u16::from(b'\n')),
            'r' => units.push(u16::from(b'\r')),
            'f' => units.push(0x0c),
            other => {
                let mut buf = [0u16; 2];
                units.extend_from_slice(other.encode_utf16(&mut buf));
            }
        }
    }
    Ok(String::from_utf16_lossy(&units))
}

/// java.lang.String.trim: strips every char <= U+0020, not just whitespace.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

// ---------------------------------------------------------------------------
// Key handling
// ---------------------------------------------------------------------------

/// Keys QuorumPeerConfig.parseProperties reads directly (case-sensitive).
const CFG_KEYS: &[&str] = &[
    "dataDir",
    "dataLogDir",
    "clientPort",
    "clientPortAddress",
    "clientPortListenBacklog",
    "tickTime",
    "maxClientCnxns",
    "minSessionTimeout",
    "maxSessionTimeout",
    "initLimit",
    "syncLimit",
    "standaloneEnabled",
    "reconfigEnabled",
    "autopurge.snapRetainCount",
    "autopurge.purgeInterval",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "electionAlg",
    "peerType",
    "metricsProvider.className",
    "zkd.test.loseUnsyncedWrites",
];

/// Settings ZooKeeper reads as `zookeeper.<name>` system properties (or bare
/// `<name>` for a few historical ones) and that zkd implements. ZooKeeper's
/// parser turns an unknown zoo.cfg key K into the system property
/// `zookeeper.K`, which is why the bare name works there; we accept both
/// spellings for every entry.
const SYSPROP_KEYS: &[&str] = &[
    "DigestAuthenticationProvider.superDigest",
    "extendedTypesEnabled",
    "emulate353TTLNodes",
    "jute.maxbuffer",
    "4lw.commands.whitelist",
    "readonlymode.enabled",
    "znode.container.checkIntervalMs",
    "znode.container.maxPerMinute",
    "znode.container.maxNeverUsedIntervalMs",
    "globalOutstandingLimit",
    "enforceQuota",
    "digest.enabled",
    "skipACL",
    "forceSync",
    "snapCount",
    "snapSizeLimitInKb",
    "snapshot.compression.method",
    "preAllocSize",
    "maxCnxns",
    "fsync.warningthresholdms",
    "admin.enableServer",
    "admin.serverAddress",
    "admin.serverPort",
    "admin.commandURL",
];

const WHY_ENSEMBLE: &str = "is an ensemble tuning zkd's ensembles do not implement yet";
/// Settings zkd parses and validates (so a file stays portable and typos are caught) but
/// whose feature has not landed yet; start-up says so rather than pretend.
const NOT_YET_IN_EFFECT: &[(&str, &str)] = &[
    ("fsync.warningthresholdms", WHY_STORAGE),
    (
        "admin.enableServer",
        "the admin HTTP server is not implemented yet",
    ),
    (
        "admin.serverAddress",
        "the admin HTTP server is not implemented yet",
    ),
    (
        "admin.serverPort",
        "the admin HTTP server is not implemented yet",
    ),
    (
        "admin.commandURL",
        "the admin HTTP server is not implemented yet",
    ),
    (
        "globalOutstandingLimit",
        "request throttling is not implemented yet",
    ),
    (
        "maxCnxns",
        "a global connection limit is not implemented yet (maxClientCnxns is)",
    ),
    (
        "readonlymode.enabled",
        "read-only mode needs ensembles, not implemented yet",
    ),
    ("digest.enabled", "the tree digest is not implemented yet"),
];
const WHY_STORAGE: &str = "not implemented by zkd's storage yet";

const WHY_TLS: &str = "TLS is not implemented by zkd";
const WHY_JVM: &str = "JVM-specific, no meaning for zkd";
const WHY_SASL: &str = "SASL/Kerberos/X.509 authentication is not implemented by zkd";
const WHY_TUNING: &str = "ZooKeeper implementation tuning that zkd does not implement";
const WHY_METRICS: &str = "pluggable metrics providers are not implemented by zkd";

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Text,
}

/// zoo.cfg keys ZooKeeper parses strictly but zkd ignores. The value is still
/// type-checked, so a file ZooKeeper rejects is rejected here too.
const IGNORED_CFG_KEYS: &[(&str, Kind, &str)] = &[
    ("secureClientPort", Kind::Int, WHY_TLS),
    ("secureClientPortAddress", Kind::Text, WHY_TLS),
    ("portUnification", Kind::Bool, WHY_TLS),
    ("sslQuorum", Kind::Bool, WHY_TLS),
    ("sslQuorumReloadCertFiles", Kind::Bool, WHY_TLS),
    ("observerMasterPort", Kind::Int, WHY_ENSEMBLE),
    ("connectToLearnerMasterLimit", Kind::Int, WHY_ENSEMBLE),
    ("quorumListenOnAllIPs", Kind::Bool, WHY_ENSEMBLE),
    ("syncEnabled", Kind::Bool, WHY_ENSEMBLE),
    ("dynamicConfigFile", Kind::Text, WHY_ENSEMBLE),
    ("oraclePath", Kind::Text, WHY_ENSEMBLE),
    ("quorum.auth.enableSasl", Kind::Bool, WHY_ENSEMBLE),
    ("quorum.auth.serverRequireSasl", Kind::Bool, WHY_ENSEMBLE),
    ("quorum.auth.learnerRequireSasl", Kind::Bool, WHY_ENSEMBLE),
    (
        "quorum.auth.learner.saslLoginContext",
        Kind::Text,
        WHY_ENSEMBLE,
    ),
    (
        "quorum.auth.server.saslLoginContext",
        Kind::Text,
        WHY_ENSEMBLE,
    ),
    (
        "quorum.auth.kerberos.servicePrincipal",
        Kind::Text,
        WHY_ENSEMBLE,
    ),
    ("quorum.cnxn.threads.size", Kind::Int, WHY_ENSEMBLE),
    ("multiAddress.enabled", Kind::Bool, WHY_ENSEMBLE),
    (
        "multiAddress.reachabilityCheckTimeoutMs",
        Kind::Int,
        WHY_ENSEMBLE,
    ),
    (
        "multiAddress.reachabilityCheckEnabled",
        Kind::Bool,
        WHY_ENSEMBLE,
    ),
    ("jvm.pause.monitor", Kind::Bool, WHY_JVM),
    ("jvm.pause.info-threshold.ms", Kind::Int, WHY_JVM),
    ("jvm.pause.warn-threshold.ms", Kind::Int, WHY_JVM),
    ("jvm.pause.sleep.time.ms", Kind::Int, WHY_JVM),
];

/// System-property settings (name without `zookeeper.`) zkd ignores. ZooKeeper
/// reads these leniently (bad numbers fall back to defaults), so no type check.
const IGNORED_SYSPROPS: &[(&str, &str)] = &[
    ("commitLogCount", WHY_ENSEMBLE),
    ("txnLogSizeLimitInKb", WHY_TUNING),
    ("maxResponseCacheSize", WHY_TUNING),
    ("maxGetChildrenResponseCacheSize", WHY_TUNING),
    ("watchManagerName", WHY_TUNING),
    ("watcherCleanThreadsNum", WHY_TUNING),
    ("watcherCleanThreshold", WHY_TUNING),
    ("watcherCleanIntervalInSeconds", WHY_TUNING),
    ("maxInProcessingDeadWatchers", WHY_TUNING),
    ("bitHashCacheSize", WHY_TUNING),
    ("serverCnxnFactory", WHY_JVM),
    ("flushDelay", WHY_TUNING),
    ("maxWriteQueuePollTime", WHY_TUNING),
    ("maxBatchSize", WHY_TUNING),
    ("request_throttle_max_requests", WHY_TUNING),
    ("request_throttle_stall_time", WHY_TUNING),
    ("request_throttle_drop_stale", WHY_TUNING),
    ("request_stale_latency_check", WHY_TUNING),
    ("request_stale_connection_check", WHY_TUNING),
    ("enableEagerACLCheck", WHY_TUNING),
    ("largeRequestMaxBytes", WHY_TUNING),
    ("largeRequestThreshold", WHY_TUNING),
    ("throttled_op_wait_time", WHY_TUNING),
    ("serializeLastProcessedZxid.enabled", WHY_TUNING),
    ("closeSessionTxn.enabled", WHY_TUNING),
    ("intBufferStartingSizeBytes", WHY_JVM),
    ("jute.maxbuffer.extrasize", WHY_TUNING),
    ("tcpKeepAlive", WHY_ENSEMBLE),
    ("clientTcpKeepAlive", WHY_TUNING),
    ("cnxTimeout", WHY_ENSEMBLE),
    ("quorumCnxnTimeoutMs", WHY_ENSEMBLE),
    ("electionPortBindRetry", WHY_ENSEMBLE),
    ("leaderServes", WHY_ENSEMBLE),
    (
        "forward_learner_requests_to_commit_processor_disabled",
        WHY_ENSEMBLE,
    ),
    ("DigestAuthenticationProvider.enabled", WHY_TUNING),
    ("DigestAuthenticationProvider.digestAlg", WHY_TUNING),
    ("IPAuthenticationProvider.usexforwardedfor", WHY_TUNING),
    ("X509AuthenticationProvider.superUser", WHY_SASL),
    ("superUser", WHY_SASL),
    ("ensembleAuthName", WHY_SASL),
    ("sessionRequireClientSASLAuth", WHY_SASL),
    ("allowSaslFailedClients", WHY_SASL),
    ("requireClientAuthScheme", WHY_SASL),
    ("fips-mode", WHY_TLS),
    ("db.autocreate", WHY_TUNING),
    ("audit.enable", WHY_TUNING),
    ("audit.impl.class", WHY_TUNING),
];

const IGNORED_SYSPROP_PREFIXES: &[(&str, &str)] = &[
    ("connection_throttle_", WHY_TUNING),
    ("fastleader.", WHY_ENSEMBLE),
    ("leader.", WHY_ENSEMBLE),
    ("learner.", WHY_ENSEMBLE),
    ("observer.", WHY_ENSEMBLE),
    ("follower.", WHY_ENSEMBLE),
    ("netty.", WHY_JVM),
    ("nio.", WHY_TUNING),
    ("commitProcessor.", WHY_TUNING),
    ("snapshot.", WHY_TUNING),
    ("ssl.", WHY_TLS),
    ("authProvider.", WHY_SASL),
    ("kerberos.", WHY_SASL),
    ("enforce.auth.", WHY_SASL),
    ("admin.", "AdminServer option zkd does not implement"),
    ("client.", WHY_TLS),
];

struct Parser<'a> {
    file: &'a Path,
    warnings: Vec<String>,
    cfg: Config,
    tick: Option<u32>,
    min_session: Option<i32>,
    max_session: Option<i32>,
    client_port: Option<u16>,
    client_port_address: Option<(String, usize)>,
    data_dir: Option<PathBuf>,
    data_log_dir: Option<PathBuf>,
    whitelist: Option<(String, usize)>,
    dynamic_config_file: bool,
    /// Which spelling set each system-property setting, to catch
    /// `enforceQuota=true` + `zookeeper.enforceQuota=false` in one file.
    sysprop_seen: HashMap<&'static str, (String, String)>,
}

impl<'a> Parser<'a> {
    fn new(file: &'a Path) -> Self {
        let cfg = Config {
            config_file: Some(file.to_owned()),
            ..Config::default()
        };
        Parser {
            file,
            warnings: Vec::new(),
            cfg,
            tick: None,
            min_session: None,
            max_session: None,
            client_port: None,
            client_port_address: None,
            data_dir: None,
            data_log_dir: None,
            whitelist: None,
            dynamic_config_file: false,
            sysprop_seen: HashMap::new(),
        }
    }

    fn warn(&mut self, line: usize, msg: impl fmt::Display) {
        self.warnings
            .push(format!("{}:{line}: {msg}", self.file.display()));
    }

    fn bad(&self, key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    fn run(&mut self, props: Vec<Property>) -> Result<Config, ConfigError> {
        // Properties is a map: the last occurrence of a key wins. Say so,
        // because the earlier line looks authoritative to a reader.
        let mut last: HashMap<String, usize> = HashMap::new();
        for (idx, p) in props.iter().enumerate() {
            last.insert(java_trim(&p.key).to_owned(), idx);
        }
        self.dynamic_config_file = last.contains_key("dynamicConfigFile");
        for (idx, p) in props.iter().enumerate() {
            let key = java_trim(&p.key);
            let winner = last[key];
            if winner != idx {
                let msg = format!(
                    "{key} is set again on line {}; that later value wins",
                    props[winner].line
                );
                self.warn(p.line, msg);
                continue;
            }
            let value = java_trim(&p.value);
            self.apply(key, value, p.line)?;
        }
        self.finish()
    }

    fn apply(&mut self, key: &str, value: &str, line: usize) -> Result<(), ConfigError> {
        self.apply_key(key, value, line)?;
        let name = key.strip_prefix("zookeeper.").unwrap_or(key);
        if let Some((_, why)) = NOT_YET_IN_EFFECT.iter().find(|(k, _)| *k == name) {
            self.warn(
                line,
                format_args!("{key} is accepted but has no effect yet: {why}"),
            );
        }
        Ok(())
    }

    fn apply_key(&mut self, key: &str, value: &str, line: usize) -> Result<(), ConfigError> {
        if let Some(id) = key.strip_prefix("server.") {
            return self.apply_server(key, id, value, line);
        }
        if CFG_KEYS.contains(&key) {
            return self.apply_cfg(key, value, line);
        }
        if key.starts_with("metricsProvider.") {
            self.warn(line, format_args!("{key} ignored: {WHY_METRICS}"));
            return Ok(());
        }
        if key.starts_with("group.") || key.starts_with("weight.") {
            if self.dynamic_config_file {
                return Err(self.bad(key, value, "must be in the separate dynamic config file"));
            }
            self.warn(
                line,
                format_args!("{key} ignored: hierarchical quorums {WHY_ENSEMBLE}"),
            );
            return Ok(());
        }
        if let Some(&(_, kind, why)) = IGNORED_CFG_KEYS.iter().find(|(k, _, _)| *k == key) {
            match kind {
                Kind::Bool => {
                    parse_bool(value)
                        .ok_or_else(|| self.bad(key, value, "expected true or false"))?;
                }
                Kind::Int => {
                    value
                        .parse::<i32>()
                        .map_err(|_| self.bad(key, value, "expected an integer"))?;
                }
                Kind::Text => {}
            }
            self.warn(line, format_args!("{key} ignored: {why}"));
            return Ok(());
        }
        let name = key.strip_prefix("zookeeper.").unwrap_or(key);
        if let Some(&canonical) = SYSPROP_KEYS.iter().find(|k| **k == name) {
            if let Some((prev_key, prev_value)) = self.sysprop_seen.get(canonical) {
                if prev_value != value {
                    return Err(ConfigError::Invalid {
                        file: self.file.to_owned(),
                        message: format!(
                            "{prev_key}=\"{prev_value}\" and {key}=\"{value}\" set the same setting to different values"
                        ),
                    });
                }
                return Ok(());
            }
            self.sysprop_seen
                .insert(canonical, (key.to_owned(), value.to_owned()));
            return self.apply_sysprop(canonical, key, value, line);
        }
        if let Some((_, why)) = IGNORED_SYSPROPS.iter().find(|(k, _)| *k == name) {
            self.warn(line, format_args!("{key} ignored: {why}"));
            return Ok(());
        }
        if let Some((_, why)) = IGNORED_SYSPROP_PREFIXES
            .iter()
            .find(|(p, _)| name.starts_with(p))
        {
            self.warn(line, format_args!("{key} ignored: {why}"));
            return Ok(());
        }
        let hint = suggest(key)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        self.warn(line, format_args!("unknown key {key} ignored{hint}"));
        Ok(())
    }

    fn apply_cfg(&mut self, key: &str, value: &str, line: usize) -> Result<(), ConfigError> {
        match key {
            "dataDir" | "dataLogDir" => {
                if value.is_empty() {
                    return Err(self.bad(key, value, "must not be empty"));
                }
                let slot = if key == "dataDir" {
                    &mut self.data_dir
                } else {
                    &mut self.data_log_dir
                };
                *slot = Some(PathBuf::from(value));
            }
            "clientPort" => {
                let port = value.parse::<u16>().map_err(|_| {
                    self.bad(key, value, "expected a port number between 0 and 65535")
                })?;
                self.client_port = Some(port);
            }
            "clientPortAddress" => self.client_port_address = Some((value.to_owned(), line)),
            "clientPortListenBacklog" => {
                let v = value
                    .parse::<i32>()
                    .map_err(|_| self.bad(key, value, "expected an integer"))?;
                // Java's ServerSocket treats <= 0 as "use the default backlog".
                self.cfg.client_port_listen_backlog = u32::try_from(v).ok().filter(|&b| b > 0);
            }
            "tickTime" => self.tick = Some(self.positive(key, value)?),
            "maxClientCnxns" => {
                self.cfg.max_client_cnxns = self.non_negative(
                    key,
                    value,
                    "expected a non-negative integer (0 = unlimited)",
                )?
            }
            "minSessionTimeout" => self.min_session = Some(self.session_timeout(key, value)?),
            "maxSessionTimeout" => self.max_session = Some(self.session_timeout(key, value)?),
            "initLimit" => {
                self.cfg.init_limit =
                    self.non_negative(key, value, "expected a non-negative integer")?
            }
            "syncLimit" => {
                self.cfg.sync_limit =
                    self.non_negative(key, value, "expected a non-negative integer")?
            }
            "standaloneEnabled" => self.cfg.standalone_enabled = self.boolean(key, value)?,
            "zkd.test.loseUnsyncedWrites" => {
                self.cfg.test_lose_unsynced_writes = self.boolean(key, value)?
            }
            "reconfigEnabled" => {
                self.cfg.reconfig_enabled = self.boolean(key, value)?;
                if self.cfg.reconfig_enabled {
                    self.warn(line, format_args!("reconfigEnabled=true has no effect: dynamic reconfiguration {WHY_ENSEMBLE}"));
                }
            }
            "autopurge.snapRetainCount" => {
                let v = value
                    .parse::<i32>()
                    .map_err(|_| self.bad(key, value, "expected an integer"))?;
                // ZooKeeper clamps rather than refusing; keep files portable.
                self.cfg.autopurge_snap_retain_count = if v < MIN_SNAP_RETAIN_COUNT as i32 {
                    self.warn(line, format_args!("autopurge.snapRetainCount={v} is below the minimum; using {MIN_SNAP_RETAIN_COUNT}"));
                    MIN_SNAP_RETAIN_COUNT
                } else {
                    v as u32
                };
            }
            "autopurge.purgeInterval" => {
                let ms = parse_purge_interval(value).ok_or_else(|| {
                    self.bad(
                        key,
                        value,
                        "expected hours, or a number with suffix ms, s, m, h or d",
                    )
                })?;
                // ZooKeeper treats <= 0 as "never purge".
                let ms = u64::try_from(ms).unwrap_or(0);
                self.cfg.autopurge_purge_interval_ms = ms;
                self.cfg.autopurge_purge_interval_hours =
                    u32::try_from(ms / HOUR_MS).unwrap_or(u32::MAX);
            }
            "localSessionsEnabled" | "localSessionsUpgradingEnabled" => {
                let v = self.boolean(key, value)?;
                if key == "localSessionsEnabled" {
                    self.cfg.local_sessions_enabled = v;
                } else {
                    self.cfg.local_sessions_upgrading_enabled = v;
                }
                if v {
                    self.warn(
                        line,
                        format_args!(
                            "{key}=true ignored: local sessions are not implemented by zkd"
                        ),
                    );
                }
            }
            "electionAlg" => {
                if value.parse::<i32>() != Ok(3) {
                    return Err(self.bad(key, value, "only 3 is supported"));
                }
            }
            "peerType" => {
                self.cfg.peer_type = match value.to_ascii_lowercase().as_str() {
                    "participant" => PeerRole::Participant,
                    "observer" => PeerRole::Observer,
                    _ => return Err(self.bad(key, value, "expected participant or observer")),
                };
            }
            "metricsProvider.className" => {
                if value != DEFAULT_METRICS_PROVIDER {
                    self.warn(line, format_args!("{key} ignored: {WHY_METRICS}"));
                }
            }
            _ => unreachable!("CFG_KEYS and apply_cfg disagree about {key}"),
        }
        Ok(())
    }

    fn apply_sysprop(
        &mut self,
        name: &str,
        key: &str,
        value: &str,
        line: usize,
    ) -> Result<(), ConfigError> {
        match name {
            "DigestAuthenticationProvider.superDigest" => {
                if let Err(reason) = check_super_digest(value) {
                    return Err(self.bad(key, value, reason));
                }
                self.cfg.super_digest = Some(value.to_owned());
            }
            "extendedTypesEnabled" => self.cfg.extended_types_enabled = self.boolean(key, value)?,
            "emulate353TTLNodes" => self.cfg.emulate_353_ttl_nodes = self.boolean(key, value)?,
            "jute.maxbuffer" => self.cfg.jute_max_buffer = self.positive(key, value)? as usize,
            "4lw.commands.whitelist" => self.whitelist = Some((value.to_owned(), line)),
            "readonlymode.enabled" => self.cfg.read_only_mode_enabled = self.boolean(key, value)?,
            "znode.container.checkIntervalMs" => {
                self.cfg.container_check_interval_ms = u64::from(self.positive(key, value)?)
            }
            "znode.container.maxPerMinute" => {
                self.cfg.container_max_per_minute = self.positive(key, value)?
            }
            "znode.container.maxNeverUsedIntervalMs" => {
                self.cfg.container_max_never_used_interval_ms = value
                    .parse::<u64>()
                    .map_err(|_| self.bad(key, value, "expected a non-negative integer"))?
            }
            "globalOutstandingLimit" => {
                self.cfg.global_outstanding_limit = self.positive(key, value)?
            }
            "enforceQuota" => self.cfg.enforce_quota = self.boolean(key, value)?,
            "digest.enabled" => self.cfg.digest_enabled = self.boolean(key, value)?,
            "skipACL" => self.cfg.skip_acl = self.yes_no(key, value)?,
            "forceSync" => self.cfg.force_sync = self.yes_no(key, value)?,
            "snapCount" => {
                let v = value
                    .parse::<i32>()
                    .map_err(|_| self.bad(key, value, "expected an integer"))?;
                // SyncRequestProcessor needs >= 2; ZooKeeper clamps.
                self.cfg.snap_count = if v < 2 {
                    self.warn(
                        line,
                        format_args!("{key}={v} is below the minimum; using 2"),
                    );
                    2
                } else {
                    v as u64
                };
            }
            "snapSizeLimitInKb" => {
                self.cfg.snap_size_limit_kb = value
                    .parse::<i64>()
                    .map_err(|_| self.bad(key, value, "expected an integer"))?
            }
            "snapshot.compression.method" => {
                self.cfg.snapshot_compression = match value {
                    "" => false,
                    "lz4" => true,
                    // ZooKeeper's methods: zkd's snapshot container compresses with lz4
                    // instead (its files are zkd's own either way).
                    "gz" | "snappy" => {
                        self.warn(
                            line,
                            format_args!("{key}={value}: zkd compresses snapshots with lz4"),
                        );
                        true
                    }
                    _ => {
                        return Err(self.bad(
                            key,
                            value,
                            "expected lz4, gz, snappy or empty (no compression)",
                        ))
                    }
                }
            }
            "preAllocSize" => {
                self.cfg.pre_alloc_size_kb = value.parse::<u64>().map_err(|_| {
                    self.bad(key, value, "expected a non-negative integer (kilobytes)")
                })?
            }
            "maxCnxns" => {
                self.cfg.max_cnxns = self.non_negative(
                    key,
                    value,
                    "expected a non-negative integer (0 = unlimited)",
                )?
            }
            "fsync.warningthresholdms" => {
                self.cfg.fsync_warning_threshold_ms = value
                    .parse::<u64>()
                    .map_err(|_| self.bad(key, value, "expected a non-negative integer"))?
            }
            "admin.enableServer" => self.cfg.admin_server_enabled = self.boolean(key, value)?,
            "admin.serverAddress" => {
                if value.is_empty() {
                    return Err(self.bad(key, value, "must not be empty"));
                }
                self.cfg.admin_server_address = value.to_owned();
            }
            "admin.serverPort" => {
                self.cfg.admin_server_port = value.parse::<u16>().map_err(|_| {
                    self.bad(key, value, "expected a port number between 0 and 65535")
                })?
            }
            "admin.commandURL" => self.cfg.admin_command_url = value.to_owned(),
            _ => unreachable!("SYSPROP_KEYS and apply_sysprop disagree about {name}"),
        }
        Ok(())
    }

    fn apply_server(
        &mut self,
        key: &str,
        id: &str,
        value: &str,
        line: usize,
    ) -> Result<(), ConfigError> {
        if self.dynamic_config_file {
            return Err(self.bad(key, value, "must be in the separate dynamic config file"));
        }
        let id: u64 = id.parse().map_err(|_| {
            self.bad(
                key,
                value,
                "the server id after \"server.\" must be a non-negative integer",
            )
        })?;
        let (spec, secure) =
            parse_server_spec(id, value).map_err(|reason| self.bad(key, value, reason))?;
        if secure {
            self.warn(
                line,
                format_args!("{key}: secure client port ignored: {WHY_TLS}"),
            );
        }
        self.cfg.servers.push(spec);
        Ok(())
    }

    fn finish(&mut self) -> Result<Config, ConfigError> {
        let file = self.file.to_owned();
        let missing = |key: &str, reason: &str| ConfigError::Missing {
            file: file.clone(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let data_dir = self
            .data_dir
            .take()
            .ok_or_else(|| missing("dataDir", "ZooKeeper requires it in a config file"))?;
        self.cfg.data_log_dir = self.data_log_dir.take().unwrap_or_else(|| data_dir.clone());
        self.cfg.data_dir = data_dir;

        match (self.client_port, self.client_port_address.take()) {
            (Some(port), addr) => {
                self.cfg.client_port = port;
                if let Some((host, _)) = addr {
                    self.cfg.client_port_address = Some(resolve_host(&host).ok_or_else(|| {
                        self.bad(
                            "clientPortAddress",
                            &host,
                            "expected an IP address or a resolvable host name",
                        )
                    })?);
                }
            }
            (None, Some((host, _))) => {
                return Err(self.bad(
                    "clientPortAddress",
                    &host,
                    "clientPortAddress is set but clientPort is not",
                ));
            }
            // Ensemble-style configs carry the client port in server.N lines.
            (None, None) if !self.cfg.servers.is_empty() => {}
            (None, None) => {
                return Err(missing(
                    "clientPort",
                    "a standalone server would accept no clients",
                ));
            }
        }

        let tick = self.tick.unwrap_or(ZK_FILE_DEFAULT_TICK_TIME_MS);
        self.cfg.tick_time_ms = tick;
        let derived = |v: Option<i32>, factor: u32, key: &str| -> Result<u32, ConfigError> {
            match v {
                Some(v) if v != -1 => Ok(v as u32),
                _ => tick
                    .checked_mul(factor)
                    .filter(|&t| t <= i32::MAX as u32)
                    .ok_or_else(|| ConfigError::InvalidValue {
                        file: file.clone(),
                        key: "tickTime".into(),
                        value: tick.to_string(),
                        reason: format!(
                            "too large: the default {key} ({factor} x tickTime) overflows"
                        ),
                    }),
            }
        };
        self.cfg.min_session_timeout_ms = derived(self.min_session, 2, "minSessionTimeout")?;
        self.cfg.max_session_timeout_ms = derived(self.max_session, 20, "maxSessionTimeout")?;

        if let Some((list, line)) = self.whitelist.take() {
            let (wl, unknown) = FourLetterWhitelist::parse(&list);
            for name in unknown {
                self.warn(
                    line,
                    format_args!(
                        "4lw.commands.whitelist: \"{name}\" is not a known four-letter word"
                    ),
                );
            }
            self.cfg.four_letter_whitelist = wl;
        }
        if self.cfg.read_only_mode_enabled {
            let wl = std::mem::take(&mut self.cfg.four_letter_whitelist);
            self.cfg.four_letter_whitelist = wl.with("isro");
        }

        let participants = self
            .cfg
            .servers
            .iter()
            .filter(|s| s.role == PeerRole::Participant)
            .count();
        if participants == 1 && self.cfg.standalone_enabled {
            // HBase writes a single server line; ZooKeeper runs standalone.
            let msg = format!(
                "{}: only one server.N line; ignoring it and running standalone",
                self.file.display()
            );
            self.warnings.push(msg);
        }
        self.cfg.servers.sort_by_key(|s| s.id);
        Ok(self.cfg.clone())
    }

    fn positive(&self, key: &str, value: &str) -> Result<u32, ConfigError> {
        value
            .parse::<i32>()
            .ok()
            .filter(|&v| v > 0)
            .map(|v| v as u32)
            .ok_or_else(|| self.bad(key, value, "expected a positive integer"))
    }

    fn non_negative(&self, key: &str, value: &str, reason: &str) -> Result<u32, ConfigError> {
        value
            .parse::<i32>()
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| self.bad(key, value, reason))
    }

    fn session_timeout(&self, key: &str, value: &str) -> Result<i32, ConfigError> {
        value
            .parse::<i32>()
            .ok()
            .filter(|&v| v > 0 || v == -1)
            .ok_or_else(|| {
                self.bad(
                    key,
                    value,
                    "expected a positive integer, or -1 for the default",
                )
            })
    }

    fn boolean(&self, key: &str, value: &str) -> Result<bool, ConfigError> {
        parse_bool(value).ok_or_else(|| self.bad(key, value, "expected true or false"))
    }

    /// forceSync and skipACL are "yes"/"no" in ZooKeeper; true/false is
    /// what people write anyway, so both are accepted.
    fn yes_no(&self, key: &str, value: &str) -> Result<bool, ConfigError> {
        match value.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(true),
            "no" | "false" => Ok(false),
            _ => Err(self.bad(key, value, "expected yes or no")),
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// autopurge.purgeInterval: bare numbers are hours (backward compatibility),
/// otherwise ZooKeeper's Time.parseTimeInterval suffixes.
fn parse_purge_interval(value: &str) -> Option<i64> {
    let last = value.chars().last()?;
    if last.is_ascii_digit() {
        return value
            .parse::<i32>()
            .ok()
            .map(|h| i64::from(h) * HOUR_MS as i64);
    }
    let (num, unit_ms) = if let Some(n) = value
        .strip_suffix("ms")
        .or_else(|| value.strip_suffix("MS"))
    {
        (n, 1)
    } else {
        let n = &value[..value.len() - last.len_utf8()];
        let unit = match last.to_ascii_uppercase() {
            'S' => 1000,
            'M' => 60_000,
            'H' => HOUR_MS as i64,
            'D' => 24 * HOUR_MS as i64,
            _ => return None,
        };
        (n, unit)
    };
    num.parse::<i32>().ok().map(|n| i64::from(n) * unit_ms)
}

/// The iteration order of a java.util.HashMap<Long, _> holding these servers by id (as
/// QuorumMaj.allMembers does): by bucket (the spread Long hash masked to the table size,
/// 16 doubled while more than 3/4 full), then, within a bucket, by id.
fn java_hashmap_order(servers: &[ServerSpec]) -> Vec<&ServerSpec> {
    let mut cap = 16usize;
    while servers.len() * 4 > cap * 3 {
        cap *= 2;
    }
    let bucket = |id: u64| {
        let h = (id ^ (id >> 32)) as u32;
        ((h ^ (h >> 16)) as usize) & (cap - 1)
    };
    let mut v: Vec<&ServerSpec> = servers.iter().collect();
    v.sort_by_key(|s| (bucket(s.id), s.id));
    v
}

/// InetSocketAddress.getHostString as QuorumServer.toString prints it: names and IPv4
/// literals as written, IPv6 literals bracketed in Java's uncompressed form
/// (`[0:0:0:0:0:0:0:1]` for `::1`).
fn java_host_string(host: &str) -> String {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => {
            let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
            format!("[{}]", groups.join(":"))
        }
        Err(_) => bare.to_owned(),
    }
}

/// ConfigUtils.getHostAndPort: `[v6]:a:b` or `host:a:b`.
fn split_host_and_ports(s: &str) -> Result<Vec<String>, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("{s} starts with '[' but has no matching ']'"));
        };
        let host = rest[..end].to_owned();
        let after = &rest[end + 1..];
        let Some(ports) = after.strip_prefix(':').filter(|p| !p.is_empty()) else {
            return Err(format!("{s} has no port after the address"));
        };
        let mut parts = vec![host];
        parts.extend(ports.split(':').map(|p| p.trim().to_owned()));
        return Ok(parts);
    }
    Ok(s.split(':').map(|p| p.trim().to_owned()).collect())
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| format!("\"{p}\" is not a port number between 1 and 65535"))
}

/// Returns the spec and whether a secure client port part was present.
fn parse_server_spec(id: u64, value: &str) -> Result<(ServerSpec, bool), String> {
    let parts: Vec<&str> = value.split(';').collect();
    if parts.len() > 3 {
        return Err(
            "expected host:quorumPort:electionPort[:role][;[clientHost:]clientPort]".into(),
        );
    }
    if parts[0].contains('|') {
        return Err("multiple addresses per server (multiAddress) are not supported by zkd".into());
    }
    let addr = split_host_and_ports(parts[0].trim())?;
    if addr.len() < 3 || addr.len() > 4 {
        return Err("expected host:quorumPort:electionPort[:participant|:observer]".into());
    }
    let host = addr[0].trim().to_owned();
    let quorum_port = parse_port(&addr[1])?;
    let election_port = parse_port(&addr[2])?;
    let role = match addr.get(3).map(|r| r.to_ascii_lowercase()) {
        None => PeerRole::Participant,
        Some(r) if r == "participant" => PeerRole::Participant,
        Some(r) if r == "observer" => PeerRole::Observer,
        Some(r) => {
            return Err(format!(
                "unknown role \"{r}\": expected participant or observer"
            ))
        }
    };
    let (mut client_host, mut client_port) = (None, None);
    if let Some(client) = parts.get(1).map(|c| c.trim()).filter(|c| !c.is_empty()) {
        let cp = split_host_and_ports(client)?;
        match cp.as_slice() {
            [port] => client_port = Some(parse_port(port)?),
            [h, port] => {
                client_host = Some(h.clone());
                client_port = Some(parse_port(port)?);
            }
            _ => return Err("the client part must be clientPort or clientHost:clientPort".into()),
        }
    }
    let secure = parts.get(2).is_some_and(|s| !s.trim().is_empty());
    let spec = ServerSpec {
        id,
        host,
        quorum_port,
        election_port,
        role,
        client_host,
        client_port,
    };
    Ok((spec, secure))
}

/// InetAddress.getByName semantics: IP literal (IPv6 may be bracketed) or a
/// host name, resolved once at startup.
fn resolve_host(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip);
    }
    if bare.is_empty() {
        return None;
    }
    (bare, 0u16).to_socket_addrs().ok()?.next().map(|a| a.ip())
}

/// A case-insensitive match among the keys we know, for typo hints.
fn suggest(key: &str) -> Option<String> {
    let name = key.strip_prefix("zookeeper.").unwrap_or(key);
    if name != key && CFG_KEYS.contains(&name) {
        // "zookeeper.tickTime" does nothing in ZooKeeper either.
        return Some(name.to_owned());
    }
    CFG_KEYS
        .iter()
        .chain(SYSPROP_KEYS)
        .find(|k| k.eq_ignore_ascii_case(name))
        .map(|k| k.to_string())
}

#[cfg(test)]
mod tests;
