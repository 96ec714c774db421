//! `zkd`: the server binary and its offline tools.
//!
//! `zkd [PATH/zoo.cfg]`, `zkd --config PATH/zoo.cfg`, or plain `zkd` serves standalone
//! (port 2181, data under ./data by default). `zkd <subcommand> ...` runs an offline tool
//! instead (see [`zkd_server::tools`]): dump-log, dump-snapshot, verify, truncate-log, purge.
//!
//! Owns only command-line parsing and process exit codes; the tools' behaviour lives in
//! `zkd_server::tools`. A subcommand name wins over a config path of the same name (clap
//! matches subcommands first); `zkd ./verify` reaches a config file literally named so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use zkd_server::config::Config;
use zkd_server::tools::{self, DataDirs, ToolError};

#[derive(Parser, Debug)]
#[command(
    name = "zkd",
    version,
    about = "A ZooKeeper-compatible coordination server",
    // `zkd zoo.cfg verify` is a mistake, not a server start with a stray argument.
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// zoo.cfg to start from (as ZooKeeper's start-foreground takes it).
    config_file: Option<PathBuf>,
    /// zoo.cfg to start from.
    #[arg(long = "config", conflicts_with = "config_file")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// `CONFIG | --data-dir D [--data-log-dir L]`.
#[derive(clap::Args, Debug)]
struct DirArgs {
    /// zoo.cfg whose dataDir and dataLogDir to use.
    #[arg(conflicts_with_all = ["data_dir", "data_log_dir"])]
    config: Option<PathBuf>,
    /// dataDir (holds zkd-v1/snapshot.*).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// dataLogDir (holds zkd-v1/log.*); defaults to --data-dir.
    #[arg(long, requires = "data_dir")]
    data_log_dir: Option<PathBuf>,
}

impl DirArgs {
    fn resolve(&self) -> Result<DataDirs, ToolError> {
        DataDirs::resolve(
            self.config.as_deref(),
            self.data_dir.as_deref(),
            self.data_log_dir.as_deref(),
        )
    }
}

/// Offline tools; run them on a stopped server's files (dump-* and verify are read-only
/// and safe on a running one).
#[derive(Subcommand, Debug)]
enum Tool {
    /// Print every txn of one txn log segment (zkd-v1/log.*) with its zxid and offset.
    DumpLog {
        file: PathBuf,
        /// One JSON object per txn.
        #[arg(long)]
        json: bool,
    },
    /// Print the sessions and znodes of a zkd snapshot or an Apache ZooKeeper snapshot.
    DumpSnapshot {
        file: PathBuf,
        /// One JSON object per line (header, sessions, znodes).
        #[arg(long)]
        json: bool,
    },
    /// Check every log segment and snapshot; exit 1 if anything is damaged.
    Verify {
        #[command(flatten)]
        dirs: DirArgs,
    },
    /// Drop every txn above ZXID from the log (manual repair of a stopped server).
    TruncateLog {
        /// dataLogDir (holds zkd-v1/log.*).
        #[arg(long)]
        data_log_dir: PathBuf,
        /// Last zxid to keep: 0x-prefixed hex or decimal.
        zxid: String,
        /// Really truncate; without it only print what would be removed.
        #[arg(long)]
        yes: bool,
    },
    /// Delete old snapshots and the log segments only they needed.
    Purge {
        #[command(flatten)]
        dirs: DirArgs,
        /// Snapshots to keep (at least 3; default autopurge.snapRetainCount or 3).
        #[arg(short = 'n', long = "count")]
        count: Option<usize>,
    },
}

fn run_tool(tool: Tool) -> Result<(), ToolError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = match tool {
        Tool::DumpLog { file, json } => tools::dump_log(&file, json, &mut out),
        Tool::DumpSnapshot { file, json } => tools::dump_snapshot(&file, json, &mut out),
        Tool::Verify { dirs } => dirs.resolve().and_then(|d| tools::verify(&d, &mut out)),
        Tool::TruncateLog {
            data_log_dir,
            zxid,
            yes,
        } => tools::parse_zxid(&zxid)
            .and_then(|z| tools::truncate_log(&data_log_dir, z, yes, &mut out)),
        Tool::Purge { dirs, count } => dirs
            .resolve()
            .and_then(|d| tools::purge(&d, count, &mut out)),
    };
    // Flush what was printed before reporting the error, so the message comes last.
    let flushed = std::io::Write::flush(&mut out);
    result?;
    flushed.map_err(ToolError::Output)
}

fn main() {
    let args = Args::parse();
    let default_filter = if args.tool.is_some() { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZKD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file (or a supervisor's capture) gets
        // plain text that grep and log shippers read, as ZooKeeper's log4j output is.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(tool) = args.tool {
        match run_tool(tool) {
            Ok(()) => std::process::exit(0),
            // The reader went away (`zkd dump-log F | head`): not an error of ours.
            Err(ToolError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("zkd: {e}");
                std::process::exit(e.exit_code());
            }
        }
    }
    serve(args.config.or(args.config_file));
}

fn serve(path: Option<PathBuf>) {
    let config = match &path {
        Some(p) => match Config::load(p) {
            Ok((c, warnings)) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                c
            }
            Err(e) => {
                eprintln!("zkd: {e}");
                std::process::exit(2);
            }
        },
        None => Config::default(),
    };
    let mut config = config;
    if config.is_distributed() {
        // QuorumPeerConfig: an ensemble server learns its id from <dataDir>/myid.
        let path = config.data_dir.join("myid");
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(id) => config.my_id = Some(id),
                Err(_) => {
                    eprintln!(
                        "zkd: {} holds {:?}, not a server id",
                        path.display(),
                        text.trim()
                    );
                    std::process::exit(2);
                }
            },
            Err(e) => {
                eprintln!(
                    "zkd: {} cannot be read ({e}); an ensemble server needs its id there",
                    path.display()
                );
                std::process::exit(2);
            }
        }
    }
    if let Some(me) = config
        .my_id
        .and_then(|id| config.servers.iter().find(|s| s.id == id))
    {
        // server.N=...;[host:]port gives this server's client address (ZooKeeper 3.5+).
        if let Some(port) = me.client_port {
            config.client_port = port;
            config.client_port_address = me
                .client_host
                .as_deref()
                .and_then(|h| h.parse::<IpAddr>().ok());
        }
    }
    if let Err(e) = config.validate() {
        eprintln!("zkd: {e}");
        std::process::exit(2);
    }
    let ip = config
        .client_port_address
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(ip, config.client_port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("zkd: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        if let Err(e) = zkd_server::net::run(listener, config, shutdown).await {
            eprintln!("zkd: {e}");
            std::process::exit(1);
        }
    });
}
