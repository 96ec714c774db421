//! The ZooKeeper commands of zkCli.sh 3.9 (ls, get, set, create, ...): argument rules,
//! the operations they send, and what they print on stdout and stderr.
//!
//! Owns each command's behaviour once the shell has a session. Never handles the shell's
//! own commands (history, redo, connect, quit, printwatches) or the command line: those
//! are in main.rs. Paths are checked as the Java client checks them before sending, so
//! the same bad input gives the same message.

use std::io::Write;
use std::sync::Arc;

use base64::Engine as _;
use zkd_client::{
    add_watch_mode, op, watcher_type, Acl, Client, CreateMode, Error, ErrorCode, MultiResult,
};
use zkd_proto::{CreateRequest, CreateResponse, CreateTtlRequest, OpCode, Reader, Record};

use crate::fmt;
use crate::opts::{self, flag, valued, OptSpec};
use crate::session::{Session, Shared};

/// A failed command: the message zkCli.sh prints on stderr and its exit code.
#[derive(Debug)]
pub struct CliError {
    pub msg: String,
    pub code: i32,
}

impl CliError {
    pub fn new(msg: impl Into<String>) -> CliError {
        CliError {
            msg: msg.into(),
            code: 1,
        }
    }
}

type CmdResult = Result<(), CliError>;

/// A command zkCli.sh lists in its usage text.
pub struct CmdSpec {
    pub name: &'static str,
    pub syntax: &'static str,
    pub opts: &'static [OptSpec],
    /// Whether getUsageStr appends the options table (3.9 does for get and set).
    pub usage_lists_opts: bool,
}

const LS: &[OptSpec] = &[
    flag('?', "help"),
    flag('s', "stat"),
    flag('w', "watch"),
    flag('R', "recurse"),
];
const GET: &[OptSpec] = &[
    flag('s', "Print znode stats additionally"),
    flag('w', "Watch for changes on the znode"),
    flag('b', "Output data in base64 format"),
    flag('x', "Output data in hexdump format"),
];
const SET: &[OptSpec] = &[
    flag('s', "Print znode stats additionally"),
    valued('v', "Set with an expected version"),
    flag('b', "Supply data in base64 format"),
];
const CREATE: &[OptSpec] = &[
    flag('e', "ephemeral"),
    flag('s', "sequential"),
    flag('c', "container"),
    valued('t', "ttl"),
];
const DELETE: &[OptSpec] = &[valued('v', "version")];
const DELETEALL: &[OptSpec] = &[valued('b', "batch size")];
const STAT: &[OptSpec] = &[flag('w', "watch")];
const GETACL: &[OptSpec] = &[flag('s', "stats")];
const SETACL: &[OptSpec] = &[
    flag('s', "stats"),
    valued('v', "version"),
    flag('R', "recursive"),
];
const CONFIG: &[OptSpec] = &[
    flag('s', "stats"),
    flag('w', "watch"),
    flag('c', "client connection string"),
];
const ADDWATCH: &[OptSpec] = &[valued('m', "")];
const RMWATCHES: &[OptSpec] = &[
    flag('c', "child watcher type"),
    flag('d', "data watcher type"),
    flag('p', "persistent watcher type"),
    flag('r', "persistent recursive watcher type"),
    flag('a', "any watcher type"),
    flag('l', "remove locally when there is no server connection"),
];
const NONE: &[OptSpec] = &[];
const SETQUOTA: &[OptSpec] = &[
    valued('n', "num soft quota"),
    valued('b', "bytes soft quota"),
    valued('N', "num hard quota"),
    valued('B', "bytes hard quota"),
];
const DELQUOTA: &[OptSpec] = &[
    flag('n', "num soft quota"),
    flag('b', "bytes soft quota"),
    flag('N', "num hard quota"),
    flag('B', "bytes hard quota"),
];

const fn spec(name: &'static str, syntax: &'static str, opts: &'static [OptSpec]) -> CmdSpec {
    CmdSpec {
        name,
        syntax,
        opts,
        usage_lists_opts: false,
    }
}

/// Every command in zkCli.sh 3.9's usage listing, sorted as it prints them.
pub const COMMANDS: &[CmdSpec] = &[
    spec(
        "addWatch",
        "[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE",
        ADDWATCH,
    ),
    spec("addauth", "scheme auth", NONE),
    spec("close", "", NONE),
    spec("config", "[-c] [-w] [-s]", CONFIG),
    spec("connect", "host:port", NONE),
    spec("create", "[-s] [-e] [-c] [-t ttl] path [data] [acl]", CREATE),
    spec("delete", "[-v version] path", DELETE),
    spec("deleteall", "path [-b batch size]", DELETEALL),
    spec("delquota", "[-n|-b|-N|-B] path", DELQUOTA),
    CmdSpec {
        name: "get",
        syntax: "[-s] [-w] [-b] [-x] path",
        opts: GET,
        usage_lists_opts: true,
    },
    spec("getAcl", "[-s] path", GETACL),
    spec("getAllChildrenNumber", "path", NONE),
    spec("getEphemerals", "path", NONE),
    spec("history", "", NONE),
    spec("listquota", "path", NONE),
    spec("ls", "[-s] [-w] [-R] path", LS),
    spec("printwatches", "on|off", NONE),
    spec("quit", "", NONE),
    spec("reconfig", crate::reconfig::SYNTAX, NONE),
    spec("redo", "cmdno", NONE),
    spec("removewatches", "path [-c|-d|-a] [-l]", RMWATCHES),
    CmdSpec {
        name: "set",
        syntax: "path data [-s] [-v version] [-b]",
        opts: SET,
        usage_lists_opts: true,
    },
    spec("setAcl", "[-s] [-v version] [-R] path acl", SETACL),
    spec("setquota", "-n|-b|-N|-B val path", SETQUOTA),
    spec("stat", "[-w] path", STAT),
    spec("sync", "path", NONE),
    spec("version", "", NONE),
    spec("whoami", "", NONE),
];

pub fn find(name: &str) -> Option<&'static CmdSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// ZooKeeperMain.usage(), printed on stderr for an unknown command.
pub fn usage_listing() -> String {
    let mut s = String::from(
        "ZooKeeper -server host:port -client-configuration properties-file cmd args\n",
    );
    for c in COMMANDS {
        s.push_str(&format!("\t{} {}\n", c.name, c.syntax));
    }
    s
}

/// CliCommand.getUsageStr.
fn usage(c: &CmdSpec) -> CliError {
    let mut s = format!("{} {}", c.name, c.syntax);
    if c.usage_lists_opts {
        // HelpFormatter output ends with a newline, and then println adds another.
        s.push('\n');
        s.push_str(&opts::options_help(c.opts));
        s.push('\n');
    }
    CliError::new(s)
}

pub(crate) fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

pub(crate) fn err_line(s: &str) {
    let _ = std::io::stdout().lock().flush();
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{s}");
}

pub(crate) fn wrap(e: Error, path: &str) -> CliError {
    CliError::new(fmt::cli_error(&e, path))
}

pub(crate) fn check_path(p: &str) -> CmdResult {
    fmt::validate_path(p).map_err(CliError::new)
}

/// Java's Integer.parseInt failing inside a command is not caught by zkCli.sh: the JVM
/// prints the exception and exits. Reproduced, since scripts see that exit code.
fn parse_int(s: &str) -> i32 {
    match s.parse::<i32>() {
        Ok(v) => v,
        Err(_) => {
            err_line(&format!(
                "Exception in thread \"main\" java.lang.NumberFormatException: For input string: \"{s}\""
            ));
            std::process::exit(1);
        }
    }
}

/// "'ls path [watch]' has been deprecated": a third positional word means "watch".
fn deprecated_watch(
    p: &mut opts::Parsed,
    words: &[String],
    specs: &[OptSpec],
    msg: &str,
) -> CmdResult {
    if p.args.len() > 2 {
        err_line(msg);
        let mut w = words.to_vec();
        w[2] = "-w".into();
        *p = opts::parse(specs, &w).map_err(CliError::new)?;
    }
    Ok(())
}

pub struct Ctx<'a> {
    pub session: &'a mut Session,
    pub shared: &'a Arc<Shared>,
}

impl Ctx<'_> {
    pub(crate) fn zk(&self) -> &Client {
        &self.session.client
    }
}

/// Runs one ZooKeeper command (the shell has checked the session is alive).
pub async fn run(ctx: &mut Ctx<'_>, words: &[String]) -> CmdResult {
    let spec = find(&words[0]).expect("caller checked the command exists");
    let parse = |specs: &[OptSpec]| opts::parse(specs, words).map_err(CliError::new);
    match spec.name {
        "ls" => {
            let mut p = parse(LS)?;
            if p.has('?') {
                out(&format!(
                    "usage: ls [options] path\n{}\n",
                    opts::options_help(LS)
                ));
            }
            deprecated_watch(
                &mut p,
                words,
                LS,
                "'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.",
            )?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            ls(ctx, &p).await
        }
        "get" => {
            let mut p = parse(GET)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            deprecated_watch(
                &mut p,
                words,
                GET,
                "'get path [watch]' has been deprecated. Please use 'get [-s] [-w] path' instead.",
            )?;
            get(ctx, &p).await
        }
        "set" => {
            let p = parse(SET)?;
            if p.args.len() < 3 {
                return Err(usage(spec));
            }
            set(ctx, &p).await
        }
        "create" => {
            let p = parse(CREATE)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            create(ctx, &p).await
        }
        "delete" => {
            let p = parse(DELETE)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            if p.args.len() > 2 {
                err_line("'delete path [version]' has been deprecated. Please use 'delete [-v version] path' instead.");
            }
            let path = &p.args[1];
            let version = p.value('v').map(parse_int).unwrap_or(-1);
            check_path(path)?;
            ctx.zk()
                .delete(path, version)
                .await
                .map_err(|e| wrap(e, path))
        }
        "deleteall" => {
            let p = parse(DELETEALL)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            deleteall(ctx, &p).await
        }
        "stat" => {
            let mut p = parse(STAT)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            deprecated_watch(
                &mut p,
                words,
                STAT,
                "'stat path [watch]' has been deprecated. Please use 'stat [-w] path' instead.",
            )?;
            let path = &p.args[1];
            let watch = p.has('w');
            check_path(path)?;
            let st = ctx
                .zk()
                .exists(path, watch)
                .await
                .map_err(|e| wrap(e, path))?;
            if watch {
                // The Java client files a watch on a missing node as an exists watch.
                let exists = st.is_some();
                ctx.shared.note_watch(path, |w| {
                    if exists {
                        w.data = true
                    } else {
                        w.exist = true
                    }
                });
            }
            match st {
                Some(st) => {
                    out(&fmt::stat(&st));
                    Ok(())
                }
                None => Err(wrap(Error::Keeper(ErrorCode::NoNode), path)),
            }
        }
        "getAcl" => {
            let p = parse(GETACL)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            let path = &p.args[1];
            check_path(path)?;
            let (acl, st) = ctx.zk().get_acl(path).await.map_err(|e| wrap(e, path))?;
            let mut s = String::new();
            for a in &acl {
                s.push_str(&fmt::acl_line(a));
                s.push('\n');
            }
            if p.has('s') {
                s.push_str(&fmt::stat(&st));
            }
            out(&s);
            Ok(())
        }
        "setAcl" => {
            let p = parse(SETACL)?;
            if p.args.len() < 3 {
                return Err(usage(spec));
            }
            set_acl(ctx, &p).await
        }
        "addauth" => {
            let p = parse(NONE)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            let auth = p
                .args
                .get(2)
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default();
            // The Java client sends the auth packet and returns; a refusal shows up only
            // as an AuthFailed event, which is what is printed here too.
            match ctx.zk().add_auth(&p.args[1], &auth).await {
                Ok(()) => Ok(()),
                Err(Error::Keeper(ErrorCode::AuthFailed)) => {
                    ctx.session.auth_failed();
                    Ok(())
                }
                Err(e) => Err(CliError::new(fmt::cli_error(&e, ""))),
            }
        }
        "sync" => {
            let p = parse(NONE)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            let path = &p.args[1];
            check_path(path)?;
            match ctx.zk().sync(path).await {
                Ok(_) => out("Sync is OK\n"),
                Err(e) => match e.code() {
                    Some(c) => out(&format!("Sync has failed. rc={}\n", c.code())),
                    None => return Err(CliError::new(e.to_string())),
                },
            }
            Ok(())
        }
        "config" => {
            let p = parse(CONFIG)?;
            config(ctx, &p).await
        }
        "whoami" => {
            let infos = ctx
                .zk()
                .who_am_i()
                .await
                .map_err(|e| CliError::new(fmt::cli_error(&e, "")))?;
            let mut s = String::from("Auth scheme: User\n");
            for i in infos {
                s.push_str(&format!("{}: {}\n", i.auth_scheme, i.user));
            }
            out(&s);
            Ok(())
        }
        "getEphemerals" => {
            let p = parse(NONE)?;
            let path = p.args.get(1).map(String::as_str).unwrap_or("/");
            check_path(path)?;
            let eph = ctx
                .zk()
                .get_ephemerals(path)
                .await
                .map_err(|e| wrap(e, path))?;
            out(&format!("{}\n", fmt::java_list(&eph)));
            Ok(())
        }
        "getAllChildrenNumber" => {
            let p = parse(NONE)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            let path = &p.args[1];
            check_path(path)?;
            let n = ctx
                .zk()
                .get_all_children_number(path)
                .await
                .map_err(|e| wrap(e, path))?;
            out(&format!("{n}\n"));
            Ok(())
        }
        "addWatch" => {
            let p = parse(ADDWATCH)?;
            if p.args.len() != 2 {
                return Err(usage(spec));
            }
            let mode = match p.value('m').map(|m| m.to_uppercase()) {
                None => add_watch_mode::PERSISTENT_RECURSIVE,
                Some(m) if m == "PERSISTENT_RECURSIVE" => add_watch_mode::PERSISTENT_RECURSIVE,
                Some(m) if m == "PERSISTENT" => add_watch_mode::PERSISTENT,
                Some(_) => return Err(usage(spec)),
            };
            let path = &p.args[1];
            check_path(path)?;
            ctx.zk()
                .add_watch(path, mode)
                .await
                .map_err(|e| wrap(e, path))?;
            ctx.shared.note_watch(path, |w| {
                if mode == add_watch_mode::PERSISTENT {
                    w.persistent = true
                } else {
                    w.recursive = true
                }
            });
            Ok(())
        }
        "removewatches" => {
            let p = parse(RMWATCHES)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            remove_watches(ctx, &p).await
        }
        "close" => {
            ctx.session.close().await;
            Ok(())
        }
        "setquota" => {
            let p = parse(SETQUOTA)?;
            // Parse errors come first, as commons-cli reports them while parsing.
            crate::quota::setquota_group(&p)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            crate::quota::setquota(ctx, &p).await
        }
        "listquota" => {
            let p = parse(NONE)?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            crate::quota::listquota(ctx, &p).await
        }
        "delquota" => {
            let p = parse(DELQUOTA)?;
            crate::quota::check_group(&p, &['n', 'b', 'N', 'B'])?;
            if p.args.len() < 2 {
                return Err(usage(spec));
            }
            crate::quota::delquota(ctx, &p).await
        }
        "reconfig" => crate::reconfig::reconfig(ctx, words).await,
        "version" => {
            let p = parse(NONE)?;
            if p.args.len() > 1 {
                return Err(usage(spec));
            }
            out(&format!(
                "ZooKeeper CLI version: zkcli (zkd {})\n",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
        other => Err(CliError::new(format!("{other} is not supported by zkcli"))),
    }
}

async fn ls(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let path = &p.args[1];
    let watch = p.has('w');
    check_path(path)?;
    if p.has('R') {
        // ZKUtil.visitSubTreeDFS: getData on the root, then each level's sorted children
        // printed before descending into them.
        ctx.zk()
            .get_data(path, watch)
            .await
            .map_err(|e| wrap(e, path))?;
        if watch {
            ctx.shared.note_watch(path, |w| w.data = true);
        }
        out(&format!("{path}\n"));
        let mut stack = vec![path.clone()];
        while let Some(node) = stack.pop() {
            let mut kids = match ctx.zk().get_children(&node, watch).await {
                Ok(k) => k,
                // A node deleted while walking is skipped, as in ZKUtil.
                Err(Error::Keeper(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(wrap(e, &node)),
            };
            if watch {
                ctx.shared.note_watch(&node, |w| w.child = true);
            }
            kids.sort();
            let base = if node == "/" {
                String::new()
            } else {
                node.clone()
            };
            let paths: Vec<String> = kids.iter().map(|k| format!("{base}/{k}")).collect();
            let mut s = String::new();
            for c in &paths {
                s.push_str(c);
                s.push('\n');
            }
            out(&s);
            stack.extend(paths.into_iter().rev());
        }
        return Ok(());
    }
    let (mut kids, st) = ctx
        .zk()
        .get_children2(path, watch)
        .await
        .map_err(|e| wrap(e, path))?;
    if watch {
        ctx.shared.note_watch(path, |w| w.child = true);
    }
    kids.sort();
    let mut s = fmt::java_list(&kids);
    s.push('\n');
    if p.has('s') {
        s.push_str(&fmt::stat(&st));
    }
    out(&s);
    Ok(())
}

async fn get(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let path = &p.args[1];
    let watch = p.has('w');
    check_path(path)?;
    let (data, st) = ctx
        .zk()
        .get_data_raw(path, watch)
        .await
        .map_err(|e| wrap(e, path))?;
    if watch {
        ctx.shared.note_watch(path, |w| w.data = true);
    }
    let data = data.unwrap_or_else(|| b"null".to_vec());
    let mut s = if p.has('x') {
        fmt::hex_dump(&data)
    } else if p.has('b') {
        base64::engine::general_purpose::STANDARD.encode(&data)
    } else {
        String::from_utf8_lossy(&data).into_owned()
    };
    s.push('\n');
    if p.has('s') {
        s.push_str(&fmt::stat(&st));
    }
    out(&s);
    Ok(())
}

async fn set(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let path = &p.args[1];
    let data = if p.has('b') {
        match base64::engine::general_purpose::STANDARD.decode(&p.args[2]) {
            Ok(d) => d,
            Err(e) => {
                // Base64.Decoder throws IllegalArgumentException, which zkCli.sh does
                // not catch.
                err_line(&format!(
                    "Exception in thread \"main\" java.lang.IllegalArgumentException: {e}"
                ));
                std::process::exit(1);
            }
        }
    } else {
        p.args[2].as_bytes().to_vec()
    };
    let version = p.value('v').map(parse_int).unwrap_or(-1);
    check_path(path)?;
    let st = ctx
        .zk()
        .set_data(path, &data, version)
        .await
        .map_err(|e| wrap(e, path))?;
    if p.has('s') {
        out(&fmt::stat(&st));
    }
    Ok(())
}

/// EphemeralType.TTL's limit: the TTL shares the ephemeralOwner field with a marker.
const MAX_TTL: i64 = 0x00FF_FFFF_FFFF;

async fn create(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let (e, s, c, t) = (p.has('e'), p.has('s'), p.has('c'), p.has('t'));
    if c && (e || s) {
        return Err(CliError::new(
            "-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.",
        ));
    }
    let ttl: i64 = match p.value('t') {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| CliError::new("-t argument must be a long value"))?,
    };
    if t && e {
        return Err(CliError::new("TTLs cannot be used with Ephemeral znodes"));
    }
    if t && c {
        return Err(CliError::new("TTLs cannot be used with Container znodes"));
    }
    let mode = match (e, s, c, t) {
        (true, true, _, _) => CreateMode::EphemeralSequential,
        (true, false, _, _) => CreateMode::Ephemeral,
        (false, true, _, true) => CreateMode::PersistentSequentialWithTtl,
        (false, true, _, false) => CreateMode::PersistentSequential,
        (false, false, true, _) => CreateMode::Container,
        (false, false, false, true) => CreateMode::PersistentWithTtl,
        _ => CreateMode::Persistent,
    };
    if t && (ttl <= 0 || ttl > MAX_TTL) {
        return Err(CliError::new(format!(
            "ttl must be positive and cannot be larger than: {MAX_TTL}"
        )));
    }
    let path = &p.args[1];
    // Data left out is null on the wire (get then prints "null"), not empty.
    let data = p.args.get(2).map(|d| d.as_bytes().to_vec());
    let acl = match p.args.get(3) {
        Some(a) => {
            let (acl, warnings) = fmt::parse_acl(a);
            for w in warnings {
                err_line(&w);
            }
            acl
        }
        None => vec![Acl::new(zkd_client::perms::ALL, "world", "anyone")],
    };
    let checked = if mode.is_sequential() {
        format!("{path}1")
    } else {
        path.clone()
    };
    fmt::validate_path(&checked).map_err(CliError::new)?;
    if acl.is_empty() {
        // ZooKeeper.create refuses an empty ACL before sending.
        err_line("KeeperErrorCode = InvalidACL");
        return Err(CliError::new("Acl is not valid : null"));
    }
    // Sent as raw requests because zkd-client's create methods always send data,
    // and zkCli.sh sends null when no data is given.
    let (op, body) = if t {
        let req = CreateTtlRequest {
            path: path.clone(),
            data,
            acl,
            flags: mode.flag(),
            ttl,
        };
        (OpCode::CreateTtl, req.to_bytes())
    } else {
        let req = CreateRequest {
            path: path.clone(),
            data,
            acl,
            flags: mode.flag(),
        };
        let op = if mode == CreateMode::Container {
            OpCode::CreateContainer
        } else {
            OpCode::Create
        };
        (op, req.to_bytes())
    };
    let (h, body) = ctx
        .zk()
        .request_raw(op as i32, body)
        .await
        .map_err(|e| wrap(e, path))?;
    if let Some(e) = Error::from_code(h.err) {
        if e.code() == Some(ErrorCode::InvalidAcl) {
            err_line(&fmt::keeper_message(ErrorCode::InvalidAcl, Some(path)));
        }
        if e.code() == Some(ErrorCode::EphemeralOnLocalSession) {
            err_line("Unable to create ephemeral node on a local session");
        }
        return Err(wrap(e, path));
    }
    // create answers a CreateResponse, createTTL and createContainer a Create2Response;
    // both begin with the path.
    let created = CreateResponse::read(&mut Reader::new(&body))
        .map_err(|e| CliError::new(e.to_string()))?
        .path;
    err_line(&format!("Created {created}"));
    Ok(())
}

/// ZKUtil.listSubTreeBFS.
async fn subtree_bfs(zk: &Client, root: &str) -> Result<Vec<String>, CliError> {
    let mut tree = vec![root.to_string()];
    let mut i = 0;
    while i < tree.len() {
        let node = tree[i].clone();
        let kids = zk
            .get_children(&node, false)
            .await
            .map_err(|e| wrap(e, &node))?;
        let base = if node == "/" { "" } else { node.as_str() };
        for k in kids {
            tree.push(format!("{base}/{k}"));
        }
        i += 1;
    }
    Ok(tree)
}

async fn deleteall(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let batch: i32 = match p.value('b') {
        None => 1000,
        Some(v) => v
            .parse()
            .map_err(|_| CliError::new("-b argument must be an int value"))?,
    };
    let path = &p.args[1];
    check_path(path)?;
    let tree = subtree_bfs(ctx.zk(), path).await?;
    if batch <= 0 {
        for n in tree.iter().rev() {
            ctx.zk().delete(n, -1).await.map_err(|e| wrap(e, n))?;
        }
        return Ok(());
    }
    // Leaves first, `batch` deletes per multi; like ZKUtil.deleteInBatch, a failed batch
    // stops the rest and is reported, not thrown.
    let mut ok = true;
    let rev: Vec<&String> = tree.iter().rev().collect();
    for chunk in rev.chunks(batch as usize) {
        let ops = chunk.iter().map(|n| op::delete(n, -1)).collect();
        match ctx.zk().multi(ops).await {
            Ok(results) => {
                if results
                    .iter()
                    .any(|r| matches!(r, MultiResult::Error { err } if *err != 0))
                {
                    ok = false;
                    break;
                }
            }
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    if !ok {
        err_line("Failed to delete some node(s) in the subtree!");
    }
    Ok(())
}

async fn set_acl(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let path = &p.args[1];
    let (acl, warnings) = fmt::parse_acl(&p.args[2]);
    for w in warnings {
        err_line(&w);
    }
    let version = p.value('v').map(parse_int).unwrap_or(-1);
    check_path(path)?;
    if p.has('R') {
        // visitSubTreeDFS order; a failure on one node is printed (without a newline,
        // as zkCli.sh does) and the walk goes on.
        ctx.zk()
            .get_data(path, false)
            .await
            .map_err(|e| wrap(e, path))?;
        let mut order = vec![path.clone()];
        let mut stack = vec![path.clone()];
        while let Some(node) = stack.pop() {
            let mut kids = match ctx.zk().get_children(&node, false).await {
                Ok(k) => k,
                Err(Error::Keeper(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(wrap(e, &node)),
            };
            kids.sort();
            let base = if node == "/" {
                String::new()
            } else {
                node.clone()
            };
            let paths: Vec<String> = kids.iter().map(|k| format!("{base}/{k}")).collect();
            order.extend(paths.iter().cloned());
            stack.extend(paths.into_iter().rev());
        }
        for n in order {
            if let Err(e) = ctx.zk().set_acl(&n, &acl, version).await {
                match e.code() {
                    Some(c) => out(&fmt::keeper_message(c, Some(&n))),
                    None => out(&e.to_string()),
                }
            }
        }
        return Ok(());
    }
    let st = ctx
        .zk()
        .set_acl(path, &acl, version)
        .await
        .map_err(|e| wrap(e, path))?;
    if p.has('s') {
        out(&fmt::stat(&st));
    }
    Ok(())
}

async fn config(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    const CONFIG_NODE: &str = "/zookeeper/config";
    let watch = p.has('w');
    let (data, st) = ctx
        .zk()
        .get_data_raw(CONFIG_NODE, watch)
        .await
        .map_err(|e| wrap(e, CONFIG_NODE))?;
    if watch {
        ctx.shared.note_watch(CONFIG_NODE, |w| w.data = true);
    }
    let data = String::from_utf8_lossy(&data.unwrap_or_else(|| b"null".to_vec())).into_owned();
    let mut s = if p.has('c') {
        client_config_str(&data)
    } else {
        data
    };
    s.push('\n');
    if p.has('s') {
        s.push_str(&fmt::stat(&st));
    }
    out(&s);
    Ok(())
}

/// ConfigUtils.getClientConfigStr: "version host:port,host:port" from the dynamic
/// config's `server.N=...;clientaddr:port` lines and its `version=` line.
fn client_config_str(config: &str) -> String {
    let mut version = String::new();
    let mut addrs = Vec::new();
    for line in config.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == "version" {
            version = v.trim().to_string();
        } else if k.trim().starts_with("server.") {
            if let Some((_, client)) = v.split_once(';') {
                let client = client.trim();
                let client = match client.split_once(':') {
                    // "0.0.0.0:2181" names no host a client can use; ZooKeeper puts the
                    // server's own host there.
                    Some(("0.0.0.0", port)) => {
                        let host = v.split(':').next().unwrap_or("");
                        format!("{host}:{port}")
                    }
                    Some(_) => client.to_string(),
                    None => format!("{}:{client}", v.split(':').next().unwrap_or("")),
                };
                addrs.push(client);
            }
        }
    }
    format!("{version} {}", addrs.join(","))
}

async fn remove_watches(ctx: &mut Ctx<'_>, p: &opts::Parsed) -> CmdResult {
    let path = &p.args[1];
    let wtype = if p.has('c') {
        watcher_type::CHILDREN
    } else if p.has('d') {
        watcher_type::DATA
    } else if p.has('p') {
        watcher_type::PERSISTENT
    } else if p.has('r') {
        watcher_type::PERSISTENT_RECURSIVE
    } else {
        watcher_type::ANY
    };
    check_path(path)?;
    // The Java client refuses to remove a watch it does not hold, before asking the
    // server.
    let held = ctx.shared.watch_set(path);
    let (child, data, pers) = match wtype {
        watcher_type::CHILDREN => (held.child, false, false),
        watcher_type::DATA => (false, held.data || held.exist, false),
        watcher_type::PERSISTENT => (false, false, held.persistent),
        watcher_type::PERSISTENT_RECURSIVE => (false, false, held.recursive),
        _ => (
            held.child,
            held.data || held.exist,
            held.persistent || held.recursive,
        ),
    };
    if !(child || data || pers) {
        return Err(wrap(Error::Keeper(ErrorCode::NoWatcher), path));
    }
    if let Err(e) = ctx.zk().remove_watches(path, wtype).await {
        let local_ok = p.has('l') && matches!(e, Error::ConnectionLoss);
        if !local_ok {
            return Err(wrap(e, path));
        }
    }
    ctx.shared.note_watch(path, |w| match wtype {
        watcher_type::CHILDREN => w.child = false,
        watcher_type::DATA => {
            w.data = false;
            w.exist = false;
        }
        watcher_type::PERSISTENT => w.persistent = false,
        watcher_type::PERSISTENT_RECURSIVE => w.recursive = false,
        _ => *w = Default::default(),
    });
    use zkd_client::{event_type as et, keeper_state as ks};
    for (held, ev) in [
        (child, et::CHILD_WATCH_REMOVED),
        (data, et::DATA_WATCH_REMOVED),
        (pers, et::PERSISTENT_WATCH_REMOVED),
    ] {
        if held {
            ctx.shared
                .print_event(ks::SYNC_CONNECTED, ev, Some(path), -1);
        }
    }
    Ok(())
}
