//! `zkd`: the server binary. `zkd [PATH/zoo.cfg]`, `zkd --config PATH/zoo.cfg`, or plain
//! `zkd` to serve standalone on port 2181 with data under ./data.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use zkd_server::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "zkd",
    version,
    about = "A ZooKeeper-compatible coordination server"
)]
struct Args {
    /// zoo.cfg to start from (as ZooKeeper's start-foreground takes it).
    config_file: Option<PathBuf>,
    /// zoo.cfg to start from.
    #[arg(long = "config", conflicts_with = "config_file")]
    config: Option<PathBuf>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZKD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let path = args.config.or(args.config_file);
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
        tracing::warn!("zkd keeps the tree in memory only: data is lost on restart (durable storage is not implemented yet)");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        if let Err(e) = zkd_server::net::run(listener, config, shutdown).await {
            eprintln!("zkd: {e}");
            std::process::exit(1);
        }
    });
}
