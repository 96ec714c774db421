//! reconfig: zkCli.sh 3.9's dynamic-reconfiguration command.
//!
//! Owns its argument rules (multi-letter options -file, -members, -add, -remove, which
//! the one-letter option parser does not handle) and the reconfig request. Never
//! parses a membership file: ZooKeeper's CLI rewrites it through QuorumPeerConfig,
//! which zkcli does not reimplement, so `-file` is refused once the file is readable.

use zkd_client::Error;
use zkd_proto::{GetDataResponse, OpCode, Reader, ReconfigRequest, Record};

use crate::commands::{out, CliError, Ctx};
use crate::fmt;

pub const SYNTAX: &str = "[-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | [-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]";

const VALUED: [&str; 5] = ["v", "file", "members", "add", "remove"];

#[derive(Default)]
struct Args {
    stats: bool,
    values: Vec<(&'static str, String)>,
}

impl Args {
    fn get(&self, k: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_str())
    }
}

fn parse(words: &[String]) -> Result<Args, CliError> {
    let mut a = Args::default();
    let mut it = words.iter().skip(1);
    while let Some(t) = it.next() {
        let Some(name) = t.strip_prefix('-').filter(|n| !n.is_empty()) else {
            continue; // positional words are ignored, as by zkCli.sh
        };
        if name == "s" {
            a.stats = true;
        } else if let Some(&key) = VALUED.iter().find(|k| **k == name) {
            match it.next() {
                Some(v) if !(v.starts_with('-') && VALUED.contains(&&v[1..]) || v == "-s") => {
                    a.values.push((key, v.clone()))
                }
                _ => {
                    return Err(CliError::new(format!(
                        "org.apache.commons.cli.MissingArgumentException: Missing argument for option: {key}"
                    )))
                }
            }
        } else {
            return Err(CliError::new(format!(
                "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {t}"
            )));
        }
    }
    Ok(a)
}

pub async fn reconfig(ctx: &mut Ctx<'_>, words: &[String]) -> Result<(), CliError> {
    let a = parse(words)?;
    let has = |k| a.get(k).is_some();
    if !(has("file") || has("members") || has("add") || has("remove")) {
        return Err(CliError::new(format!("reconfig {SYNTAX}")));
    }
    let version = match a.get("v") {
        // The config version is given in hex.
        Some(v) => i64::from_str_radix(v, 16)
            .map_err(|_| CliError::new("-v must be followed by a long (configuration version)"))?,
        None => -1,
    };
    if (has("file") || has("members")) && (has("add") || has("remove")) {
        return Err(CliError::new("Can't use -file or -members together with -add or -remove (mixing incremental and non-incremental modes is not allowed)"));
    }
    if has("file") && has("members") {
        return Err(CliError::new(
            "Can't use -file and -members together (conflicting non-incremental modes)",
        ));
    }
    if let Some(f) = a.get("file") {
        return Err(CliError::new(match std::fs::metadata(f) {
            // FileInputStream's message, glued on without a separator as ZooKeeper does.
            Err(_) => format!("Error processing {f}{f} (No such file or directory)"),
            Ok(_) => "reconfig -file is not supported by zkcli; use -members".to_string(),
        }));
    }
    let req = ReconfigRequest {
        joining_servers: a.get("add").map(str::to_lowercase),
        leaving_servers: a.get("remove").map(str::to_lowercase),
        new_members: a.get("members").map(str::to_lowercase),
        cur_config_id: version,
    };
    let fail = |e: Error| CliError::new(fmt::cli_error(&e, ""));
    let (h, body) = ctx
        .zk()
        .request_raw(OpCode::Reconfig as i32, req.to_bytes())
        .await
        .map_err(fail)?;
    if let Some(e) = Error::from_code(h.err) {
        return Err(fail(e));
    }
    let r =
        GetDataResponse::read(&mut Reader::new(&body)).map_err(|e| CliError::new(e.to_string()))?;
    let mut s = format!(
        "Committed new configuration:\n{}\n",
        String::from_utf8_lossy(&r.data.unwrap_or_default())
    );
    if a.stats {
        s.push_str(&fmt::stat(&r.stat));
    }
    out(&s);
    Ok(())
}
