//! Text formats zkCli.sh prints: Stat blocks, dates, ACL lines, watch events, error
//! messages, path-validation messages, base64 and hex dumps of data.
//!
//! Owns turning values into the exact strings Apache ZooKeeper 3.9's CLI prints. Never
//! does I/O and never talks to the server.

use std::fmt::Write as _;

use zkd_client::{event_type, keeper_state, perms, Acl, Error, ErrorCode, Stat};

/// java.util.Date.toString() in the local time zone: "Fri Nov 27 06:01:06 UTC 2026".
/// libc's strftime in the C locale gives the same English names and zone abbreviation.
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r and strftime write only into the buffers we pass; tm is plain
    // data, fully initialised by localtime_r before strftime reads it.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return ms.to_string();
        }
        let mut buf = [0u8; 128];
        let fmt = b"%a %b %d %H:%M:%S %Z %Y\0";
        let n = libc::strftime(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            fmt.as_ptr() as *const libc::c_char,
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// StatPrinter.print.
pub fn stat(s: &Stat) -> String {
    format!(
        "cZxid = 0x{:x}\nctime = {}\nmZxid = 0x{:x}\nmtime = {}\npZxid = 0x{:x}\ncversion = {}\n\
         dataVersion = {}\naclVersion = {}\nephemeralOwner = 0x{:x}\ndataLength = {}\nnumChildren = {}\n",
        s.czxid,
        java_date(s.ctime),
        s.mzxid,
        java_date(s.mtime),
        s.pzxid,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

/// ZKUtil.getPermString: letters in the order c d r w a.
pub fn perm_string(p: i32) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ] {
        if p & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// One getAcl line. zkCli.sh prints `Id.toString()`, a jute record dump ending in a
/// newline, so the permissions land on a line of their own: "'world,'anyone\n: cdrwa".
pub fn acl_line(a: &Acl) -> String {
    format!(
        "{},{}\n: {}",
        zkd_proto::jute::to_string_escape(&a.id.scheme),
        zkd_proto::jute::to_string_escape(&a.id.id),
        perm_string(a.perms)
    )
}

/// AclParser.parse: "scheme:id:perms,..."; bad entries and perm letters are reported on
/// stderr (returned as messages) and skipped, as zkCli.sh does.
pub fn parse_acl(s: &str) -> (Vec<Acl>, Vec<String>) {
    let mut acl = Vec::new();
    let mut warnings = Vec::new();
    // Java's String.split drops trailing empty strings.
    let mut parts: Vec<&str> = s.split(',').collect();
    while parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    for a in parts {
        let (first, last) = match (a.find(':'), a.rfind(':')) {
            (Some(f), Some(l)) if f != l => (f, l),
            _ => {
                warnings.push(format!("{a} does not have the form scheme:id:perm"));
                continue;
            }
        };
        let mut p = 0;
        for c in a[last + 1..].chars() {
            match c {
                'r' => p |= perms::READ,
                'w' => p |= perms::WRITE,
                'c' => p |= perms::CREATE,
                'd' => p |= perms::DELETE,
                'a' => p |= perms::ADMIN,
                other => warnings.push(format!("Unknown perm type: {other}")),
            }
        }
        acl.push(Acl::new(p, &a[..first], &a[first + 1..last]));
    }
    (acl, warnings)
}

pub fn event_type_name(t: i32) -> String {
    match t {
        event_type::NONE => "None".into(),
        event_type::NODE_CREATED => "NodeCreated".into(),
        event_type::NODE_DELETED => "NodeDeleted".into(),
        event_type::NODE_DATA_CHANGED => "NodeDataChanged".into(),
        event_type::NODE_CHILDREN_CHANGED => "NodeChildrenChanged".into(),
        event_type::DATA_WATCH_REMOVED => "DataWatchRemoved".into(),
        event_type::CHILD_WATCH_REMOVED => "ChildWatchRemoved".into(),
        event_type::PERSISTENT_WATCH_REMOVED => "PersistentWatchRemoved".into(),
        other => format!("Unknown({other})"),
    }
}

pub fn keeper_state_name(s: i32) -> String {
    match s {
        keeper_state::DISCONNECTED => "Disconnected".into(),
        keeper_state::SYNC_CONNECTED => "SyncConnected".into(),
        keeper_state::AUTH_FAILED => "AuthFailed".into(),
        keeper_state::CONNECTED_READ_ONLY => "ConnectedReadOnly".into(),
        keeper_state::SASL_AUTHENTICATED => "SaslAuthenticated".into(),
        keeper_state::EXPIRED => "Expired".into(),
        keeper_state::CLOSED => "Closed".into(),
        other => format!("Unknown({other})"),
    }
}

/// WatchedEvent.toString() of ZooKeeper 3.9, which ends with the zxid (3.8 does not
/// print it). Events the client makes up itself (session state, watch removal) carry
/// zxid -1; `path` None prints as Java's "null".
pub fn watched_event(state: i32, etype: i32, path: Option<&str>, zxid: i64) -> String {
    format!(
        "WatchedEvent state:{} type:{} path:{} zxid: {}",
        keeper_state_name(state),
        event_type_name(etype),
        path.unwrap_or("null"),
        zxid
    )
}

/// KeeperException.getCodeMessage.
fn code_message(c: ErrorCode) -> &'static str {
    use ErrorCode::*;
    match c {
        Ok => "ok",
        SystemError => "SystemError",
        RuntimeInconsistency => "RuntimeInconsistency",
        DataInconsistency => "DataInconsistency",
        ConnectionLoss => "ConnectionLoss",
        MarshallingError => "MarshallingError",
        Unimplemented => "Unimplemented",
        OperationTimeout => "OperationTimeout",
        BadArguments => "BadArguments",
        UnknownSession => "UnknownSession",
        NewConfigNoQuorum => "NewConfigNoQuorum",
        ReconfigInProgress => "ReconfigInProgress",
        ApiError => "APIError",
        NoNode => "NoNode",
        NoAuth => "NoAuth",
        BadVersion => "BadVersion",
        NoChildrenForEphemerals => "NoChildrenForEphemerals",
        NodeExists => "NodeExists",
        NotEmpty => "Directory not empty",
        SessionExpired => "Session expired",
        InvalidCallback => "Invalid callback",
        InvalidAcl => "InvalidACL",
        AuthFailed => "AuthFailed",
        SessionMoved => "Session moved",
        NotReadOnly => "Not a read-only call",
        EphemeralOnLocalSession => "Ephemeral node on local session",
        NoWatcher => "No such watcher",
        RequestTimeout => "RequestTimeout",
        ReconfigDisabled => "Reconfig is disabled",
        SessionClosedRequireSaslAuth => "Session closed because client failed to authenticate",
        QuotaExceeded => "Quota has exceeded",
        ThrottledOp => "Op throttled due to high load",
    }
}

/// KeeperException.getMessage: "KeeperErrorCode = NoNode for /x".
pub fn keeper_message(c: ErrorCode, path: Option<&str>) -> String {
    match path {
        Some(p) if !p.is_empty() => format!("KeeperErrorCode = {} for {p}", code_message(c)),
        _ => format!("KeeperErrorCode = {}", code_message(c)),
    }
}

/// The message CliWrapperException prints for a failed operation on `path`.
pub fn cli_error(e: &Error, path: &str) -> String {
    let code = match e.code() {
        Some(c) => c,
        None => return e.to_string(),
    };
    use ErrorCode::*;
    match code {
        NoNode => format!("Node does not exist: {path}"),
        NoChildrenForEphemerals => format!("Ephemerals cannot have children: {path}"),
        NodeExists => format!("Node already exists: {path}"),
        NotEmpty => format!("Node not empty: {path}"),
        NotReadOnly => format!("Not a read-only call: {path}"),
        InvalidAcl => format!("Acl is not valid : {path}"),
        NoAuth => format!("Insufficient permission : {path}"),
        BadArguments => format!("Arguments are not valid : {path}"),
        BadVersion => format!("version No is not valid : {path}"),
        ReconfigInProgress => {
            "Another reconfiguration is in progress -- concurrent reconfigs not supported (yet)"
                .into()
        }
        QuotaExceeded => format!("Quota has exceeded : {path}"),
        c => keeper_message(c, Some(path)),
    }
}

/// PathUtils.validatePath: the message zkCli.sh prints for a path the Java client
/// refuses before sending anything.
pub fn validate_path(path: &str) -> Result<(), String> {
    let chars: Vec<char> = path.chars().collect();
    if chars.is_empty() {
        return Err("Path length must be > 0".into());
    }
    if chars[0] != '/' {
        return Err("Path must start with / character".into());
    }
    if chars.len() == 1 {
        return Ok(());
    }
    if chars[chars.len() - 1] == '/' {
        return Err("Path must not end with / character".into());
    }
    let mut reason = None;
    let mut lastc = '/';
    for i in 1..chars.len() {
        let c = chars[i];
        let at_end_or_slash = i + 1 == chars.len() || chars[i + 1] == '/';
        if c == '\0' {
            reason = Some(format!("null character not allowed @{i}"));
        } else if c == '/' && lastc == '/' {
            reason = Some(format!("empty node name specified @{i}"));
        } else if c == '.' && lastc == '.' {
            if i >= 2 && chars[i - 2] == '/' && at_end_or_slash {
                reason = Some(format!("relative paths not allowed @{i}"));
            }
        } else if c == '.' {
            if chars[i - 1] == '/' && at_end_or_slash {
                reason = Some(format!("relative paths not allowed @{i}"));
            }
        } else if ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c)
            || c > '\u{ffff}'
        {
            // Java sees a char above U+FFFF as a surrogate pair, which it refuses.
            reason = Some(format!("invalid character @{i}"));
        }
        if reason.is_some() {
            break;
        }
        lastc = c;
    }
    match reason {
        Some(r) => Err(format!("Invalid path string \"{path}\" caused by {r}")),
        None => Ok(()),
    }
}

/// Netty's ByteBufUtil.prettyHexDump, which `get -x` prints (empty data gives "").
pub fn hex_dump(data: &[u8]) -> String {
    if data.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    out.push_str("         +-------------------------------------------------+\n");
    out.push_str("         |  0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f |\n");
    out.push_str("+--------+-------------------------------------------------+----------------+");
    for (row, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "\n|{:08x}|", row * 16);
        for b in chunk {
            let _ = write!(out, " {b:02x}");
        }
        for _ in chunk.len()..16 {
            out.push_str("   ");
        }
        out.push_str(" |");
        for &b in chunk {
            out.push(if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            });
        }
        for _ in chunk.len()..16 {
            out.push(' ');
        }
        out.push('|');
    }
    out.push_str("\n+--------+-------------------------------------------------+----------------+");
    out
}

/// Java's List.toString: "[a, b]".
pub fn java_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_in_java_order() {
        assert_eq!(perm_string(perms::ALL), "cdrwa");
        assert_eq!(perm_string(perms::READ | perms::ADMIN), "ra");
    }

    #[test]
    fn acl_parse_and_print() {
        let (acl, warn) = parse_acl("world:anyone:rq,foo");
        assert_eq!(acl.len(), 1);
        assert_eq!(acl[0].perms, perms::READ);
        assert_eq!(
            warn,
            vec![
                "Unknown perm type: q",
                "foo does not have the form scheme:id:perm"
            ]
        );
        assert_eq!(acl_line(&acl[0]), "'world,'anyone\n: r");
    }

    #[test]
    fn paths() {
        assert!(validate_path("/a/b").is_ok());
        assert_eq!(
            validate_path("a").unwrap_err(),
            "Path must start with / character"
        );
        assert_eq!(
            validate_path("/a//b").unwrap_err(),
            "Invalid path string \"/a//b\" caused by empty node name specified @3"
        );
        assert_eq!(
            validate_path("/a/./b").unwrap_err(),
            "Invalid path string \"/a/./b\" caused by relative paths not allowed @3"
        );
    }

    #[test]
    fn hexdump_layout() {
        let d = hex_dump(b"hello");
        assert!(d.contains(
            "|00000000| 68 65 6c 6c 6f                                  |hello           |"
        ));
    }
}
