use super::*;

fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    Config::parse(text, Path::new("zoo.cfg"))
}

/// Parses, dropping the "has no effect yet" notes (tested on their own below).
fn ok(text: &str) -> (Config, Vec<String>) {
    let (c, w) =
        parse(text).unwrap_or_else(|e| panic!("unexpected error: {e}\n--- input ---\n{text}"));
    (c, effective(w))
}

fn effective(w: Vec<String>) -> Vec<String> {
    w.into_iter()
        .filter(|w| !w.contains("has no effect yet"))
        .collect()
}

#[test]
fn settings_of_features_not_landed_yet_are_flagged() {
    let (_, w) = parse(&base(
        "snapCount=1000\nzookeeper.fsync.warningthresholdms=5\ninitLimit=5\nmaxCnxns=3",
    ))
    .unwrap();
    let notes: Vec<_> = w
        .iter()
        .filter(|w| w.contains("has no effect yet"))
        .collect();
    assert_eq!(notes.len(), 2, "{w:?}");
    assert!(notes[0].contains("fsync.warningthresholdms"), "{w:?}");
    assert!(notes[1].contains("maxCnxns"), "{w:?}");
    // Ensembles run now: their limits are in effect.
    assert!(!w.iter().any(|w| w.contains("initLimit")), "{w:?}");
}

fn base(extra: &str) -> String {
    format!("dataDir=/var/zk\nclientPort=2181\n{extra}\n")
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok((c, w)) => panic!("expected an error, got {c:?} / {w:?}"),
        Err(e) => e.to_string(),
    }
}

/// Debug output without the source path, to compare configs parsed from different text.
fn fingerprint(c: &Config) -> String {
    format!(
        "{:?}",
        Config {
            config_file: None,
            ..c.clone()
        }
    )
}

// ---------------------------------------------------------------- defaults

#[test]
fn built_in_defaults() {
    let c = Config::default();
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.data_log_dir, c.data_dir);
    assert_eq!(c.client_port, 2181);
    assert_eq!(c.client_port_address, None);
    assert_eq!(c.client_port_listen_backlog, None);
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.max_cnxns, 0);
    assert_eq!(c.min_session_timeout_ms, 4000);
    assert_eq!(c.max_session_timeout_ms, 40000);
    assert_eq!(c.global_outstanding_limit, 1000);
    assert_eq!(c.jute_max_buffer, 1_048_575);
    assert!(!c.extended_types_enabled);
    assert_eq!(c.super_digest, None);
    assert_eq!(c.container_check_interval_ms, 60_000);
    assert_eq!(c.container_max_per_minute, 10_000);
    assert!(!c.enforce_quota);
    assert!(c.digest_enabled);
    assert!(c.standalone_enabled);
    assert_eq!(c.snap_count, 100_000);
    assert_eq!(c.pre_alloc_size_kb, 65_536);
    assert!(c.force_sync);
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(c.autopurge_purge_interval_hours, 0);
    assert!(c.admin_server_enabled);
    assert_eq!(c.admin_server_port, 8080);
    assert!(c.servers.is_empty());
    assert_eq!(c.my_id, None);
    assert!(!c.is_distributed());
    assert!(c.four_letter_whitelist.allows("srvr"));
    assert!(!c.four_letter_whitelist.allows("ruok"));
    c.validate().unwrap();
}

#[test]
fn minimal_file_uses_zookeeper_file_defaults() {
    let (c, w) = ok("dataDir=/var/zk\nclientPort=2181\n");
    assert!(w.is_empty(), "{w:?}");
    // ZooKeeper's DEFAULT_TICK_TIME applies when a file omits tickTime.
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!(c.min_session_timeout_ms, 6000);
    assert_eq!(c.max_session_timeout_ms, 60000);
    assert_eq!(c.data_log_dir, PathBuf::from("/var/zk"));
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.config_file.as_deref(), Some(Path::new("zoo.cfg")));
    assert_eq!(c.four_letter_whitelist, FourLetterWhitelist::default());
}

#[test]
fn session_timeouts_follow_tick_time_and_minus_one() {
    let (c, _) = ok(&base(
        "tickTime=100\nminSessionTimeout=-1\nmaxSessionTimeout=-1",
    ));
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (200, 2000)
    );
    // tickTime after the timeouts in the file still drives the defaults.
    let (c, _) = ok(&base("maxSessionTimeout=9000\ntickTime=100"));
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (200, 9000)
    );
}

// ---------------------------------------------------------------- every key

#[test]
fn every_implemented_key() {
    let text = "\
tickTime=500
dataDir=/d
dataLogDir=/l
clientPort=2999
clientPortAddress=127.0.0.1
clientPortListenBacklog=77
maxClientCnxns=0
maxCnxns=500
minSessionTimeout=1500
maxSessionTimeout=30000
globalOutstandingLimit=50
4lw.commands.whitelist=ruok, stat
readonlymode.enabled=true
jute.maxbuffer=4096
extendedTypesEnabled=true
emulate353TTLNodes=true
DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
skipACL=yes
enforceQuota=true
digest.enabled=false
znode.container.checkIntervalMs=1000
znode.container.maxPerMinute=7
znode.container.maxNeverUsedIntervalMs=0
snapCount=10
snapSizeLimitInKb=-1
preAllocSize=16
forceSync=no
fsync.warningthresholdms=50
autopurge.snapRetainCount=5
autopurge.purgeInterval=2
admin.enableServer=false
admin.serverAddress=127.0.0.1
admin.serverPort=9090
admin.commandURL=/cmd
standaloneEnabled=true
initLimit=10
syncLimit=5
electionAlg=3
peerType=participant
metricsProvider.className=org.apache.zookeeper.metrics.impl.DefaultMetricsProvider
";
    let (c, w) = ok(text);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.tick_time_ms, 500);
    assert_eq!(c.data_dir, PathBuf::from("/d"));
    assert_eq!(c.data_log_dir, PathBuf::from("/l"));
    assert_eq!(c.client_port, 2999);
    assert_eq!(c.client_port_address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(c.client_port_listen_backlog, Some(77));
    assert_eq!(c.max_client_cnxns, 0);
    assert_eq!(c.max_cnxns, 500);
    assert_eq!(c.min_session_timeout_ms, 1500);
    assert_eq!(c.max_session_timeout_ms, 30000);
    assert_eq!(c.global_outstanding_limit, 50);
    assert!(c.four_letter_whitelist.allows("ruok"));
    assert!(c.four_letter_whitelist.allows("stat"));
    assert!(c.four_letter_whitelist.allows("srvr"));
    assert!(
        c.four_letter_whitelist.allows("isro"),
        "readonlymode.enabled adds isro"
    );
    assert!(!c.four_letter_whitelist.allows("conf"));
    assert!(c.read_only_mode_enabled);
    assert_eq!(c.jute_max_buffer, 4096);
    assert!(c.extended_types_enabled);
    assert!(c.emulate_353_ttl_nodes);
    assert_eq!(
        c.super_digest.as_deref(),
        Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
    );
    assert!(c.skip_acl);
    assert!(c.enforce_quota);
    assert!(!c.digest_enabled);
    assert_eq!(c.container_check_interval_ms, 1000);
    assert_eq!(c.container_max_per_minute, 7);
    assert_eq!(c.container_max_never_used_interval_ms, 0);
    assert_eq!(c.snap_count, 10);
    assert_eq!(c.snap_size_limit_kb, -1);
    assert_eq!(c.pre_alloc_size_kb, 16);
    assert!(!c.force_sync);
    assert_eq!(c.fsync_warning_threshold_ms, 50);
    assert_eq!(c.autopurge_snap_retain_count, 5);
    assert_eq!(c.autopurge_purge_interval_hours, 2);
    assert_eq!(c.autopurge_purge_interval_ms, 2 * 3_600_000);
    assert!(!c.admin_server_enabled);
    assert_eq!(c.admin_server_address, "127.0.0.1");
    assert_eq!(c.admin_server_port, 9090);
    assert_eq!(c.admin_command_url, "/cmd");
    assert_eq!((c.init_limit, c.sync_limit), (10, 5));
    assert_eq!(c.peer_type, PeerRole::Participant);
}

#[test]
fn system_property_keys_accept_both_spellings() {
    let cases = [
        (
            "DigestAuthenticationProvider.superDigest",
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU=",
        ),
        ("extendedTypesEnabled", "true"),
        ("emulate353TTLNodes", "true"),
        ("jute.maxbuffer", "12345"),
        ("4lw.commands.whitelist", "*"),
        ("readonlymode.enabled", "true"),
        ("znode.container.checkIntervalMs", "5"),
        ("znode.container.maxPerMinute", "6"),
        ("znode.container.maxNeverUsedIntervalMs", "7"),
        ("globalOutstandingLimit", "8"),
        ("enforceQuota", "true"),
        ("digest.enabled", "false"),
        ("skipACL", "yes"),
        ("forceSync", "no"),
        ("snapCount", "9"),
        ("snapSizeLimitInKb", "10"),
        ("snapshot.compression.method", "lz4"),
        ("preAllocSize", "11"),
        ("maxCnxns", "12"),
        ("fsync.warningthresholdms", "13"),
        ("admin.enableServer", "false"),
        ("admin.serverAddress", "10.0.0.1"),
        ("admin.serverPort", "8081"),
        ("admin.commandURL", "/x"),
    ];
    assert_eq!(
        cases.len(),
        SYSPROP_KEYS.len(),
        "every system-property key is covered"
    );
    let default = fingerprint(&ok(&base("")).0);
    for (key, value) in cases {
        let (bare, w1) = ok(&base(&format!("{key}={value}")));
        let (prefixed, w2) = ok(&base(&format!("zookeeper.{key}={value}")));
        assert!(w1.is_empty() && w2.is_empty(), "{key}: {w1:?} {w2:?}");
        assert_eq!(fingerprint(&bare), fingerprint(&prefixed), "{key}");
        assert_ne!(fingerprint(&bare), default, "{key}={value} changed nothing");
        // Both spellings in one file: fine when they agree, an error when not.
        ok(&base(&format!("{key}={value}\nzookeeper.{key}={value}")));
    }
    let e = err(&base("enforceQuota=true\nzookeeper.enforceQuota=false"));
    assert!(
        e.contains("enforceQuota") && e.contains("zookeeper.enforceQuota"),
        "{e}"
    );
}

// ---------------------------------------------------------------- bad values

#[test]
fn error_message_format() {
    let e = err(&base("tickTime=abc"));
    assert_eq!(
        e,
        "zoo.cfg: invalid value \"abc\" for tickTime: expected a positive integer"
    );
}

#[test]
fn bad_values_name_key_value_and_file() {
    let cases: &[(&str, &str)] = &[
        ("tickTime", "abc"),
        ("tickTime", "0"),
        ("tickTime", "-5"),
        ("tickTime", "2000 # ms"),
        ("clientPort", "65536"),
        ("clientPort", "-1"),
        ("clientPort", "x"),
        ("clientPortListenBacklog", "many"),
        ("maxClientCnxns", "-1"),
        ("maxClientCnxns", "sixty"),
        ("maxCnxns", "-3"),
        ("minSessionTimeout", "-2"),
        ("minSessionTimeout", "0"),
        ("maxSessionTimeout", "1.5"),
        ("maxSessionTimeout", "99999999999"),
        ("initLimit", "-1"),
        ("syncLimit", "z"),
        ("standaloneEnabled", "yes"),
        ("reconfigEnabled", "1"),
        ("localSessionsEnabled", "on"),
        ("autopurge.snapRetainCount", "three"),
        ("autopurge.purgeInterval", "5x"),
        ("autopurge.purgeInterval", "h"),
        ("electionAlg", "1"),
        ("peerType", "leader"),
        ("dataLogDir", ""),
        ("jute.maxbuffer", "0"),
        ("jute.maxbuffer", "-1"),
        ("zookeeper.jute.maxbuffer", "big"),
        ("extendedTypesEnabled", "yes"),
        ("DigestAuthenticationProvider.superDigest", "nocolon"),
        (
            "DigestAuthenticationProvider.superDigest",
            "super:!!notbase64!!",
        ),
        ("znode.container.checkIntervalMs", "0"),
        ("znode.container.maxPerMinute", "0"),
        ("znode.container.maxNeverUsedIntervalMs", "-1"),
        ("globalOutstandingLimit", "0"),
        ("enforceQuota", "yes"),
        ("digest.enabled", "1"),
        ("skipACL", "maybe"),
        ("forceSync", "sometimes"),
        ("snapCount", "lots"),
        ("snapSizeLimitInKb", "4G"),
        ("snapshot.compression.method", "zip"),
        ("preAllocSize", "-1"),
        ("fsync.warningthresholdms", "-1"),
        ("admin.enableServer", "no"),
        ("admin.serverPort", "70000"),
        ("admin.serverAddress", ""),
        ("sslQuorum", "yes"),
        ("secureClientPort", "abc"),
        ("server.1", "host:2888"),
        ("server.x", "host:2888:3888"),
        ("clientPortAddress", "no such host.invalid"),
    ];
    for (key, value) in cases {
        let e = err(&base(&format!("{key}={value}")));
        assert!(e.starts_with("zoo.cfg: "), "{key}={value}: {e}");
        assert!(e.contains(&format!("\"{value}\"")), "{key}={value}: {e}");
        assert!(e.contains(key), "{key}={value}: {e}");
    }
}

#[test]
fn empty_data_dir_and_missing_required_keys() {
    let e = err("dataDir=\nclientPort=2181");
    assert!(e.contains("dataDir") && e.contains("\"\""), "{e}");
    let e = err("clientPort=2181");
    assert_eq!(
        e,
        "zoo.cfg: dataDir is not set: ZooKeeper requires it in a config file"
    );
    let e = err("dataDir=/d");
    assert!(e.contains("clientPort is not set"), "{e}");
    let e = err("dataDir=/d\nclientPortAddress=127.0.0.1");
    assert!(
        e.contains("clientPortAddress") && e.contains("127.0.0.1"),
        "{e}"
    );
}

#[test]
fn min_session_timeout_larger_than_max() {
    let e = err(&base("minSessionTimeout=5000\nmaxSessionTimeout=4000"));
    assert_eq!(
        e,
        "zoo.cfg: invalid value \"5000\" for minSessionTimeout: must not be larger than maxSessionTimeout (4000)"
    );
    // Also against the derived default (20 x 2000).
    let e = err(&base("tickTime=2000\nminSessionTimeout=50000"));
    assert!(
        e.contains("minSessionTimeout") && e.contains("40000"),
        "{e}"
    );
}

#[test]
fn huge_tick_time_cannot_overflow_session_defaults() {
    let e = err(&base("tickTime=2000000000"));
    assert!(e.contains("tickTime") && e.contains("2000000000"), "{e}");
    ok(&base(
        "tickTime=2000000000\nminSessionTimeout=1\nmaxSessionTimeout=2000000000",
    ));
}

#[test]
fn clamped_values_warn_like_zookeeper() {
    let (c, w) = ok(&base("snapCount=1\nautopurge.snapRetainCount=1"));
    assert_eq!(c.snap_count, 2);
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("snapCount") && w[1].contains("autopurge.snapRetainCount"),
        "{w:?}"
    );
}

#[test]
fn purge_interval_units() {
    let ms = |v: &str| ok(&base(&format!("autopurge.purgeInterval={v}"))).0;
    assert_eq!(ms("0").autopurge_purge_interval_ms, 0);
    assert_eq!(ms("-1").autopurge_purge_interval_ms, 0);
    assert_eq!(ms("30m").autopurge_purge_interval_ms, 1_800_000);
    assert_eq!(ms("30m").autopurge_purge_interval_hours, 0);
    assert_eq!(ms("1d").autopurge_purge_interval_hours, 24);
    assert_eq!(ms("90s").autopurge_purge_interval_ms, 90_000);
    assert_eq!(ms("500ms").autopurge_purge_interval_ms, 500);
    assert_eq!(ms("3H").autopurge_purge_interval_hours, 3);
}

// ---------------------------------------------------------------- syntax

#[test]
fn java_properties_syntax() {
    let text = "\u{feff}# comment\n\
                ! also a comment\n\
                \n   \t\n\
                   dataDir   =   /var/zk   \n\
                clientPort:2182\n\
                tickTime 1000\n\
                maxClientCnxns = 7\r\n\
                4lw.commands.whitelist=ruok,\\\n     \
                    stat\r\
                dataLogDir=/with\\ space\\u0041\\tX\n";
    let (c, w) = ok(text);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.data_dir, PathBuf::from("/var/zk"));
    assert_eq!(c.client_port, 2182);
    assert_eq!(c.tick_time_ms, 1000);
    assert!(c.four_letter_whitelist.allows("stat"));
    assert_eq!(c.max_client_cnxns, 7);
    assert_eq!(c.data_log_dir, PathBuf::from("/with spaceA\tX"));
    // "maxClientCnxns = : 7": only the first separator is consumed.
    let e = err(&base("maxClientCnxns = : 7"));
    assert!(e.contains("\": 7\""), "{e}");
}

#[test]
fn inline_hash_is_not_a_comment() {
    let e = err(&base("maxClientCnxns=10 # per host"));
    assert!(e.contains("\"10 # per host\""), "{e}");
}

#[test]
fn comment_line_with_trailing_backslash_does_not_continue() {
    let (c, _) = ok("# note \\\ndataDir=/x\nclientPort=1\n");
    assert_eq!(c.data_dir, PathBuf::from("/x"));
}

#[test]
fn malformed_unicode_escape_is_a_syntax_error() {
    let e = err("dataDir=/x\nclientPort=1\ntickTime=\\u12G4\n");
    assert!(e.starts_with("zoo.cfg:3: "), "{e}");
}

#[test]
fn duplicate_key_last_wins_with_warning() {
    let (c, w) = ok("dataDir=/x\nclientPort=1\nclientPort=2\n");
    assert_eq!(c.client_port, 2);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("zoo.cfg:2: clientPort") && w[0].contains("line 3"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------- warnings

#[test]
fn unknown_keys_warn_with_line_and_hint() {
    let (_, w) = ok(&base("frobnicate=1\nticktime=2000\nzookeeper.tickTime=5"));
    assert_eq!(w.len(), 3, "{w:?}");
    assert_eq!(w[0], "zoo.cfg:3: unknown key frobnicate ignored");
    assert!(
        w[1].contains("ticktime") && w[1].contains("did you mean tickTime?"),
        "{w:?}"
    );
    assert!(
        w[2].contains("zookeeper.tickTime") && w[2].contains("did you mean tickTime?"),
        "{w:?}"
    );
}

#[test]
fn unimplemented_settings_warn_but_parse() {
    let (c, w) = ok(&base(
        "metricsProvider.className=org.example.Prom\n\
         metricsProvider.httpPort=7000\n\
         localSessionsEnabled=true\n\
         secureClientPort=2281\n\
         zookeeper.commitLogCount=500\n\
         connection_throttle_tokens=5\n\
         zookeeper.ssl.keyStore.location=/k\n\
         reconfigEnabled=true\n\
         jvm.pause.monitor=true\n\
         group.1=1:2:3\n",
    ));
    assert!(c.local_sessions_enabled);
    assert!(c.reconfig_enabled);
    let keys = [
        "metricsProvider.className",
        "metricsProvider.httpPort",
        "localSessionsEnabled",
        "secureClientPort",
        "zookeeper.commitLogCount",
        "connection_throttle_tokens",
        "zookeeper.ssl.keyStore.location",
        "reconfigEnabled",
        "jvm.pause.monitor",
        "group.1",
    ];
    assert_eq!(w.len(), keys.len(), "{w:?}");
    for (warning, key) in w.iter().zip(keys) {
        assert!(
            warning.contains(key) && !warning.contains("unknown"),
            "{warning}"
        );
    }
}

#[test]
fn whitelist_parsing() {
    let (wl, unknown) = FourLetterWhitelist::parse("ruok, stat conf,,rouk");
    assert_eq!(unknown, vec!["rouk".to_owned()]);
    for c in ["ruok", "stat", "conf", "srvr"] {
        assert!(wl.allows(c), "{c}");
    }
    assert!(!wl.allows("mntr"));
    assert!(!wl.allows("RUOK"), "case-sensitive like ZooKeeper");
    let (all, _) = FourLetterWhitelist::parse("ruok, *");
    assert!(all.is_all());
    for c in KNOWN_FOUR_LETTER_WORDS {
        assert!(all.allows(c), "{c}");
    }
    assert!(!all.allows("nope"));
    let (empty, _) = FourLetterWhitelist::parse("");
    assert_eq!(empty.enabled(), vec!["srvr".to_owned()]);

    let (_, w) = ok(&base("4lw.commands.whitelist=ruok,rouk"));
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("rouk"), "{w:?}");
}

// ---------------------------------------------------------------- servers

#[test]
fn server_lines() {
    let (c, w) = ok(&base(
        "initLimit=5\nsyncLimit=2\n\
         server.3=zk3:2888:3888:observer;0.0.0.0:2181\n\
         server.1=zk1:2888:3888\n\
         server.2=10.0.0.2:2888:3888:Participant;2182\n\
         server.4=[fe80::1]:2888:3888;[::1]:2183\n\
         server.5 = zk5 : 2888 : 3888 ; 2184 ; 2285\n",
    ));
    assert_eq!(c.servers.len(), 5);
    let s = &c.servers;
    assert_eq!(
        s.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "sorted by id"
    );
    assert_eq!(
        s[0],
        ServerSpec {
            id: 1,
            host: "zk1".into(),
            quorum_port: 2888,
            election_port: 3888,
            role: PeerRole::Participant,
            client_host: None,
            client_port: None,
        }
    );
    assert_eq!(
        (s[1].role, s[1].client_host.as_deref(), s[1].client_port),
        (PeerRole::Participant, None, Some(2182))
    );
    assert_eq!(
        (s[2].role, s[2].client_host.as_deref(), s[2].client_port),
        (PeerRole::Observer, Some("0.0.0.0"), Some(2181))
    );
    assert_eq!(
        (
            s[3].host.as_str(),
            s[3].client_host.as_deref(),
            s[3].client_port
        ),
        ("fe80::1", Some("::1"), Some(2183))
    );
    assert_eq!(
        (s[4].host.as_str(), s[4].quorum_port, s[4].client_port),
        ("zk5", 2888, Some(2184))
    );
    assert_eq!(w.len(), 1, "secure client part warns: {w:?}");
    assert!(w[0].contains("server.5"), "{w:?}");
    assert!(c.is_distributed());
    assert_eq!(s[2].to_string(), "zk3:2888:3888:observer;0.0.0.0:2181");
    assert_eq!(s[3].to_string(), "[fe80::1]:2888:3888;[::1]:2183");
    assert_eq!(s[0].to_string(), "zk1:2888:3888");
}

#[test]
fn bad_server_lines() {
    let cases = [
        ("server.1", "zk1:2888:2888", "must be different"),
        ("server.1", "zk1:2888:3888:leader", "unknown role"),
        ("server.1", "zk1:0:3888", "port"),
        ("server.1", "zk1:2888:99999", "port"),
        ("server.1", "zk1:2888:3888;a:b:c", "client part"),
        ("server.1", "zk1:2888:3888;0", "port"),
        ("server.1", "zk1:2888:3888|zk1b:2888:3888", "multiAddress"),
        ("server.1", "[fe80::1:2888:3888", "no matching"),
        ("server.-1", "zk1:2888:3888", "server id"),
        ("server.1", ":2888:3888", "host"),
    ];
    for (key, value, why) in cases {
        let e = err(&base(&format!("initLimit=5\nsyncLimit=2\n{key}={value}")));
        assert!(
            e.contains(key) && e.contains(value) && e.contains(why),
            "{key}={value}: {e}"
        );
    }
    let e = err(&base(
        "initLimit=5\nsyncLimit=2\nserver.1=a:1:2\nserver.01=b:1:2\nserver.2=c:1:2",
    ));
    assert!(e.contains("more than once"), "{e}");
}

#[test]
fn ensemble_rules() {
    let three = "server.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2";
    let e = err(&base(three));
    assert_eq!(e, "zoo.cfg: initLimit is not set: required for an ensemble");
    let e = err(&base(&format!("initLimit=5\n{three}")));
    assert!(e.contains("syncLimit"), "{e}");
    let (c, _) = ok(&base(&format!("initLimit=5\nsyncLimit=2\n{three}")));
    assert!(c.is_distributed());
    let mut c2 = c.clone();
    c2.my_id = Some(7);
    assert!(c2.validate().unwrap_err().to_string().contains("my id 7"));
    c2.my_id = Some(2);
    c2.validate().unwrap();

    let e = err(&base("server.1=a:1:2:observer"));
    assert!(e.contains("observers without participants"), "{e}");
    let e = err(&base("server.1=a:1:2\nserver.2=b:1:2:observer"));
    assert!(e.contains("observers without a quorum"), "{e}");
    let e = err(&base("standaloneEnabled=false"));
    assert!(e.contains("standaloneEnabled=false"), "{e}");

    // A single participant with standalone enabled runs standalone (HBase case).
    let (c, w) = ok(&base("server.1=a:1:2"));
    assert!(!c.is_distributed());
    assert_eq!(w.len(), 1, "{w:?}");
    // ...but with standaloneEnabled=false it is a one-node ensemble.
    let (c, _) = ok(&base(
        "standaloneEnabled=false\ninitLimit=1\nsyncLimit=1\nserver.1=a:1:2",
    ));
    assert!(c.is_distributed());

    // Ensemble-style file: the client port lives in the server lines.
    let (c, _) = ok(&format!(
        "dataDir=/d\ninitLimit=5\nsyncLimit=2\n{three};2181"
    ));
    assert_eq!(c.client_port, 2181);

    // dynamicConfigFile forbids server lines in the static file.
    let e = err(&base("dynamicConfigFile=/x\nserver.1=a:1:2"));
    assert!(e.contains("dynamic config file"), "{e}");
}

#[test]
fn extended_types_limit_server_id() {
    let (mut c, _) = ok(&base("extendedTypesEnabled=true"));
    c.my_id = Some(254);
    c.validate().unwrap();
    c.my_id = Some(255);
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("extendedTypesEnabled") && e.contains("255"),
        "{e}"
    );
    c.extended_types_enabled = false;
    c.validate().unwrap();
}

#[test]
fn validate_on_defaults_names_builtin_source() {
    let c = Config {
        min_session_timeout_ms: 50_000,
        ..Config::default()
    };
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("<built-in defaults>: invalid value \"50000\" for minSessionTimeout"),
        "{e}"
    );
    let c = Config {
        tick_time_ms: 0,
        ..Config::default()
    };
    assert!(c.validate().is_err());
    let c = Config {
        data_dir: PathBuf::new(),
        ..Config::default()
    };
    assert!(c.validate().is_err());
}

// ---------------------------------------------------------------- misc

#[test]
fn session_timeout_clamping() {
    let c = Config::default(); // [4000, 40000]
    assert_eq!(c.effective_session_timeout_ms(0), 4000);
    assert_eq!(c.effective_session_timeout_ms(-5), 4000);
    assert_eq!(c.effective_session_timeout_ms(3999), 4000);
    assert_eq!(c.effective_session_timeout_ms(4000), 4000);
    assert_eq!(c.effective_session_timeout_ms(30000), 30000);
    assert_eq!(c.effective_session_timeout_ms(40000), 40000);
    assert_eq!(c.effective_session_timeout_ms(40001), 40000);
    assert_eq!(c.effective_session_timeout_ms(i32::MAX), 40000);
    assert_eq!(c.effective_session_timeout_ms(i32::MIN), 4000);
}

#[test]
fn client_port_address_forms() {
    let (c, _) = ok(&base("clientPortAddress=::1"));
    assert_eq!(c.client_port_address, Some("::1".parse().unwrap()));
    let (c, _) = ok(&base("clientPortAddress=[::1]"));
    assert_eq!(c.client_port_address, Some("::1".parse().unwrap()));
    let (c, _) = ok(&base("clientPortAddress=localhost"));
    assert!(c.client_port_address.unwrap().is_loopback());
    let (c, _) = ok("dataDir=/d\nclientPort=0\n");
    assert_eq!(c.client_port, 0, "ephemeral port allowed, as in ZooKeeper");
}

#[test]
fn conf_lines_match_zookeeper_layout() {
    let dir = std::env::temp_dir().join(format!("zkd-config-test-{}", std::process::id()));
    let snap = dir.join("data").join("version-2");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("snapshot.0"), vec![0u8; 457]).unwrap();
    let text = format!(
        "dataDir={}//data/\nclientPort=2181\ntickTime=2000\n",
        dir.display()
    );
    let (c, _) = ok(&text);
    let lines = c.to_conf_lines_with(Some(40127));
    let d = dir.display();
    let expected: Vec<(String, String)> = [
        ("clientPort", "40127".to_owned()),
        ("secureClientPort", "-1".to_owned()),
        ("dataDir", format!("{d}/data/version-2")),
        ("dataDirSize", "457".to_owned()),
        ("dataLogDir", format!("{d}/data/version-2")),
        ("dataLogSize", "457".to_owned()),
        ("tickTime", "2000".to_owned()),
        ("maxClientCnxns", "60".to_owned()),
        ("minSessionTimeout", "4000".to_owned()),
        ("maxSessionTimeout", "40000".to_owned()),
        ("clientPortListenBacklog", "-1".to_owned()),
        ("serverId", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(lines, expected);
    assert_eq!(c.to_conf_lines()[0].1, "2181");
    std::fs::remove_dir_all(&dir).unwrap();

    // Relative paths: cwd prefixed, "." kept, exactly like File.getAbsolutePath.
    let cwd = std::env::current_dir().unwrap();
    let (c, _) = ok("dataDir=./data//\ndataLogDir=logs\nclientPort=1\nclientPortListenBacklog=7");
    let lines = c.to_conf_lines();
    assert_eq!(lines[2].1, format!("{}/./data/version-2", cwd.display()));
    assert_eq!(lines[4].1, format!("{}/logs/version-2", cwd.display()));
    assert_eq!(lines[10].1, "7");
}

#[test]
fn load_reads_files_and_names_unreadable_ones() {
    let missing = Path::new("/nonexistent/zkd/zoo.cfg");
    let e = Config::load(missing).unwrap_err().to_string();
    assert!(
        e.starts_with("/nonexistent/zkd/zoo.cfg: cannot read config file"),
        "{e}"
    );

    let path = std::env::temp_dir().join(format!("zkd-config-load-{}.cfg", std::process::id()));
    // Latin-1 bytes (what Java would read) must not be rejected.
    std::fs::write(&path, b"dataDir=/tmp/caf\xe9\nclientPort=2181\n").unwrap();
    let (c, _) = Config::load(&path).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/tmp/caf\u{e9}"));
    assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn sample_configs_parse() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let (c, w) = Config::load(&conf.join("zoo.cfg")).unwrap();
    let w = effective(w);
    assert!(w.is_empty(), "{w:?}");
    assert!(!c.is_distributed());
    assert_eq!(c.client_port, 2181);
    assert_eq!(c.tick_time_ms, 2000);

    let (c, _) = Config::load(&conf.join("zoo-3node.cfg")).unwrap();
    assert!(c.is_distributed());
    assert_eq!(c.servers.len(), 3);

    let (c, _) = Config::load(&conf.join("zoo-5node-observers.cfg")).unwrap();
    assert!(c.is_distributed());
    assert_eq!(
        c.servers
            .iter()
            .filter(|s| s.role == PeerRole::Observer)
            .count(),
        2
    );
}

#[test]
fn properties_parser_matches_java() {
    // Expected values were produced by java.util.Properties.load on the same bytes.
    let text =
        "# c \\\nk1=v\n  ! x\nk2 = : v2  \nk3  v3\nk4:v4\nk5=a\\\n   b\\\\\nk6=c\\\\\\\n  d\n\
                k\\ 7=x\\=y\nk8\nk9=\\u0041\\q\\t\r\nk10=\rk11=v11 # not comment\n\tk12\t=\t\\\n";
    let got: Vec<(String, String)> = parse_properties(text)
        .unwrap()
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect();
    let want = [
        ("k1", "v"),
        ("k2", ": v2  "),
        ("k3", "v3"),
        ("k4", "v4"),
        ("k5", "ab\\"),
        ("k6", "c\\d"),
        ("k 7", "x=y"),
        ("k8", ""),
        ("k9", "Aq\t"),
        ("k10", ""),
        ("k11", "v11 # not comment"),
        ("k12", ""),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn snapshot_compression_method() {
    assert!(!ok(&base("")).0.snapshot_compression);
    assert!(
        !ok(&base("snapshot.compression.method="))
            .0
            .snapshot_compression
    );
    assert!(
        ok(&base("zookeeper.snapshot.compression.method=lz4"))
            .0
            .snapshot_compression
    );
    let (c, w) = ok(&base("snapshot.compression.method=snappy"));
    assert!(c.snapshot_compression);
    assert!(w.iter().any(|w| w.contains("lz4")), "{w:?}");
    assert!(err(&base("snapshot.compression.method=zip")).contains("zip"));
}

/// /zookeeper/config's data, byte for byte what ZooKeeper 3.8 serves for the same lines
/// (QuorumServer.toString, checked with the 3.8 jar: a bare client port is 0.0.0.0, a
/// line without a client part prints none, IPv6 comes out uncompressed).
#[test]
fn dynamic_config_text_is_quorum_maj_to_string() {
    let (c, _) = ok(&base(
        "initLimit=5\nsyncLimit=2\n\
         server.2=127.0.0.1:2889:3889;127.0.0.1:2182\n\
         server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
         server.3=zk3:2890:3890;2183\n\
         server.4=[::1]:2891:3891:observer;[::1]:2184\n\
         server.5=zk5:2892:3892",
    ));
    assert_eq!(
        c.dynamic_config_text().unwrap(),
        "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
         server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
         server.3=zk3:2890:3890:participant;0.0.0.0:2183\n\
         server.4=[0:0:0:0:0:0:0:1]:2891:3891:observer;[0:0:0:0:0:0:0:1]:2184\n\
         server.5=zk5:2892:3892:participant\n\
         version=0"
    );
    // Standalone (one voter): ZooKeeper leaves the node empty.
    let (c, _) = ok(&base("server.1=127.0.0.1:2888:3888;2181"));
    assert_eq!(c.dynamic_config_text(), None);
    assert_eq!(ok(&base("")).0.dynamic_config_text(), None);
}

/// Members come out in java.util.HashMap order of their ids, as QuorumMaj.allMembers
/// iterates: ids below the table size ascending, larger ones by bucket.
#[test]
fn dynamic_config_members_in_java_hashmap_order() {
    let (c, _) = ok(&base(
        "initLimit=5\nsyncLimit=2\nserver.17=a:1:2\nserver.2=b:1:2\nserver.16=c:1:2",
    ));
    let text = c.dynamic_config_text().unwrap();
    let ids: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
    // 16 -> bucket 0, 17 -> bucket 1, 2 -> bucket 2 (table of 16).
    assert_eq!(ids, ["server.16", "server.17", "server.2", "version"]);
}
