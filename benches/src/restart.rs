//! `restart`: how long zkd takes from process start until it serves again, with a large
//! tree on disk.
//!
//! The data directory is built without the network, through zkd's own code: a
//! `zkd_server::tree::DataTree` gets `znodes` CreateTxns of `size` bytes (applied with
//! `process_txn`, as the server applies them) spread over `parents` parents
//! (`/bench/pNNNN/nNNNNNNN`), is serialised with `serialize_snapshot` and written with
//! `zkd_storage::SnapStore` exactly as a running zkd would name and frame it. Then `tail`
//! more creates (`/bench/tail/tNNNNNN`) go into the txn log after the snapshot with
//! `zkd_storage::TxnLog` (default options: 64 MiB preallocated segment, fsynced), so log
//! replay is part of every restart.
//!
//! Each restart spawns zkd on that directory and stops the clock when a real client
//! session has read the *last* tail znode (so the snapshot is loaded and the whole tail
//! replayed); `srvr`'s node count is then checked against the tree built here, and
//! VmRSS/VmHWM of the process are read. `warm` restarts find the files in the page cache
//! (the usual case right after a crash), `cold` ones first evict the snapshot and log
//! files from the page cache with posix_fadvise(DONTNEED) (only those files; the rest of
//! the machine's cache is untouched). Each restart adds a session create/close txn pair
//! to the log, which is noise next to the tail.
//!
//! `--breakdown` (default on) also times the load phases in this process with the same
//! library calls zkd uses (Storage::open: log scan + snapshot read + CRC + payload copy;
//! deserialize_snapshot: adler32 seals + jute decode + tree build; log tail decode and
//! apply), so the wall time can be split without a profiler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zkd_proto::txn::{CreateTxn, TxnBody, TxnEntry, TxnHeader};
use zkd_proto::{Acl, OpCode};
use zkd_server::tree::snapshot::{adler32, deserialize_snapshot};
use zkd_server::tree::DataTree;
use zkd_storage::{FileBackend, LogOptions, SnapStore, Storage, StorageOptions, TxnLog};

use crate::server::{self, ScratchDir, Zkd};
use crate::stats;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    Warm,
    Cold,
    Both,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RestartArgs {
    /// The zkd binary to start.
    #[arg(long)]
    pub zkd: PathBuf,
    /// Znodes in the snapshot (besides the parents).
    #[arg(long, default_value_t = 1_000_000)]
    pub znodes: usize,
    /// Bytes of data per znode.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Parents the znodes are spread over.
    #[arg(long, default_value_t = 1000)]
    pub parents: usize,
    /// Create txns in the log after the snapshot (0 = snapshot only).
    #[arg(long, default_value_t = 10_000)]
    pub tail: usize,
    /// Restarts per cache mode.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Page cache state of the data files at each restart.
    #[arg(long, value_enum, default_value_t = Cache::Both)]
    pub cache: Cache,
    /// Where the data directory is built.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Skip the in-process phase timing.
    #[arg(long)]
    pub no_breakdown: bool,
    /// Keep the data directory (its path is printed) for profiling by hand.
    #[arg(long)]
    pub keep_data: bool,
}

/// The built data directory.
struct Built {
    data_dir: PathBuf,
    snapshot: PathBuf,
    snapshot_bytes: u64,
    log_files: Vec<PathBuf>,
    /// Nodes of the final tree (snapshot + tail), as DataTree counts them.
    tree_nodes: usize,
    /// The znode whose read proves the tail was replayed.
    known: String,
}

const EPOCH: i64 = 1 << 32;

fn create_entry(zxid: i64, time: i64, path: String, data: &[u8]) -> TxnEntry {
    TxnEntry {
        header: TxnHeader {
            client_id: 0,
            cxid: 0,
            zxid,
            time,
            txn_type: OpCode::Create as i32,
        },
        body: TxnBody::Create(CreateTxn {
            path,
            data: Some(data.to_vec()),
            acl: Acl::open_unsafe(),
            ephemeral: false,
            parent_cversion: -1,
        }),
    }
}

fn apply(tree: &mut DataTree, t: &TxnEntry) -> Result<(), String> {
    let mut ignored = Vec::new();
    let r = tree.process_txn(&t.header, &t.body, &mut ignored);
    match r.err {
        0 => Ok(()),
        e => Err(format!("txn 0x{:x} failed with error {e}", t.header.zxid)),
    }
}

fn build(args: &RestartArgs, data_dir: &Path) -> Result<Built, String> {
    let data: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut zxid = EPOCH;
    let mut next = |path: String, d: &[u8]| {
        zxid += 1;
        create_entry(zxid, time, path, d)
    };

    let t = Instant::now();
    let mut tree = DataTree::new();
    apply(&mut tree, &next("/bench".into(), b""))?;
    let parents = args.parents.max(1);
    for p in 0..parents {
        apply(&mut tree, &next(format!("/bench/p{p:04}"), b""))?;
    }
    for j in 0..args.znodes {
        let path = format!("/bench/p{:04}/n{j:07}", j % parents);
        apply(&mut tree, &next(path, &data))?;
    }
    let snap_zxid = tree.last_processed_zxid;
    println!(
        "built tree: {} nodes in {:.2}s",
        tree.node_count(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut bytes = Vec::with_capacity(args.znodes * (args.size + 120) + (1 << 20));
    tree.serialize_snapshot(&[], &mut bytes);
    let ser = t.elapsed();
    let backend = Arc::new(FileBackend::new());
    let t = Instant::now();
    let info = SnapStore::open(backend.clone(), data_dir, false)
        .and_then(|s| s.write(snap_zxid, &bytes))
        .map_err(|e| format!("writing snapshot: {e}"))?;
    println!(
        "snapshot 0x{snap_zxid:x}: {} payload bytes, serialised in {:.2}s, written+fsynced in {:.2}s",
        bytes.len(),
        ser.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    drop(bytes);

    let mut known = format!(
        "/bench/p{:04}/n{:07}",
        (args.znodes.max(1) - 1) % parents,
        args.znodes.max(1) - 1
    );
    if args.tail > 0 {
        let t = Instant::now();
        let (log, _) = TxnLog::open(backend.clone(), data_dir, LogOptions::default())
            .map_err(|e| format!("opening txn log: {e}"))?;
        let mut tail = Vec::with_capacity(args.tail);
        tail.push(next("/bench/tail".into(), b""));
        for j in 1..args.tail {
            known = format!("/bench/tail/t{j:06}");
            tail.push(next(known.clone(), &data));
        }
        for e in &tail {
            log.append(e.header.zxid, &e.to_bytes())
                .map_err(|e| format!("appending to txn log: {e}"))?;
            apply(&mut tree, e)?;
        }
        log.sync().map_err(|e| format!("syncing txn log: {e}"))?;
        println!(
            "txn log tail: {} creates after the snapshot, written+fsynced in {:.2}s",
            tail.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let log_dir = zkd_storage::txnlog::segment_dir(data_dir);
    let mut log_files: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log."))
        })
        .collect();
    log_files.sort();
    let tree_nodes = tree.node_count();
    let t = Instant::now();
    drop(tree);
    println!(
        "dropped the builder's tree in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let snapshot_bytes = std::fs::metadata(&info.path)
        .map_err(|e| e.to_string())?
        .len();
    Ok(Built {
        data_dir: data_dir.to_path_buf(),
        snapshot: info.path,
        snapshot_bytes,
        log_files,
        tree_nodes,
        known,
    })
}

/// Evicts one file from the page cache (it must be clean, i.e. fsynced).
fn evict(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    f.sync_all()?;
    // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Seconds of a Debug-printed Duration ("1.23s", "845.1ms", "12µs").
fn parse_debug_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    for (suffix, scale) in [
        ("ms", 1e-3),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ns", 1e-9),
        ("s", 1.0),
    ] {
        if let Some(v) = s.strip_suffix(suffix) {
            return v.parse::<f64>().ok().map(|v| v * scale);
        }
    }
    None
}

/// Seconds since midnight of a tracing-subscriber line ("2026-01-01T12:34:56.789012Z ...").
fn line_time(line: &str) -> Option<f64> {
    let t = line.get(11..)?.split('Z').next()?;
    let mut it = t.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.trim().parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// What zkd's own log says about loading: "data loaded in", and the phase between the
/// first log line (storage opened) and "loaded snapshot" / "replayed".
struct ZkdTiming {
    data_loaded_s: Option<f64>,
    lines: Vec<String>,
}

/// `s` without ANSI colour sequences (tracing-subscriber colours even into a file).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn zkd_timing(stderr: &str) -> ZkdTiming {
    let mut data_loaded_s = None;
    let mut lines = Vec::new();
    for l in strip_ansi(stderr).lines() {
        if l.contains("loaded snapshot") || l.contains("replayed") || l.contains("data loaded in") {
            lines.push(l.to_string());
        }
        if let Some(rest) = l.split("data loaded in ").nth(1) {
            data_loaded_s = parse_debug_duration(rest);
        }
    }
    ZkdTiming {
        data_loaded_s,
        lines,
    }
}

/// Seconds after the spawn at which zkd logged each load milestone.
struct Phases {
    snapshot_loaded: Option<f64>,
    replayed: Option<f64>,
    data_loaded: Option<f64>,
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.3}s"))
}

struct Sample {
    cache: &'static str,
    ready_s: f64,
    data_loaded_s: Option<f64>,
    phases: Phases,
    rss: u64,
    hwm: u64,
}

async fn restart_once(
    args: &RestartArgs,
    b: &Built,
    cold: bool,
    work: &Path,
) -> Result<Sample, String> {
    if cold {
        evict(&b.snapshot).map_err(|e| format!("evicting snapshot: {e}"))?;
        for l in &b.log_files {
            evict(l).map_err(|e| format!("evicting log: {e}"))?;
        }
    }
    let mut zkd =
        Zkd::spawn(&args.zkd, work, &b.data_dir).map_err(|e| format!("starting zkd: {e}"))?;
    let client = zkd.connect(Duration::from_secs(300)).await?;
    let (data, _) = client
        .get_data(&b.known, false)
        .await
        .map_err(|e| format!("getData {}: {e}", b.known))?;
    let ready = zkd.spawned_at.elapsed();
    if data.len() != args.size && args.tail > 0 {
        return Err(format!(
            "{} has {} bytes, expected {}",
            b.known,
            data.len(),
            args.size
        ));
    }
    let srvr = server::four_letter(&zkd.addr(), "srvr").map_err(|e| format!("srvr: {e}"))?;
    let count = server::srvr_node_count(&srvr);
    // zkd, like ZooKeeper, counts the root twice in srvr.
    let expected = b.tree_nodes as u64 + 1;
    if count != Some(expected) {
        return Err(format!(
            "srvr node count {count:?}, expected {expected}:\n{srvr}"
        ));
    }
    let rss = server::proc_status_kb(zkd.pid(), "VmRSS").unwrap_or(0);
    let hwm = server::proc_status_kb(zkd.pid(), "VmHWM").unwrap_or(0);
    let _ = client.close().await;
    zkd.kill();
    let t = zkd_timing(&zkd.stderr());
    for l in &t.lines {
        println!("    zkd: {l}");
    }
    // Phases from zkd's own log timestamps (UTC time of day), relative to the spawn.
    let spawn_tod = zkd
        .spawned_wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() % 86_400.0);
    let at = |needle: &str| {
        t.lines
            .iter()
            .find(|l| l.contains(needle))
            .and_then(|l| line_time(l))
            .map(|x| x - spawn_tod)
    };
    let phases = Phases {
        snapshot_loaded: at("loaded snapshot"),
        replayed: at("replayed"),
        data_loaded: at("data loaded in"),
    };
    Ok(Sample {
        cache: if cold { "cold" } else { "warm" },
        ready_s: stats::secs(ready),
        data_loaded_s: t.data_loaded_s,
        phases,
        rss,
        hwm,
    })
}

/// In-process timing of the load phases with the library calls zkd makes.
fn breakdown(b: &Built, repeat: usize) -> Result<(), String> {
    let mut cols: Vec<(&str, Vec<f64>)> = vec![
        ("fs::read(snapshot)", vec![]),
        ("crc32 of file", vec![]),
        ("snapshot::decode (CRC + payload copy)", vec![]),
        ("Storage::open (log scan + snapshot read/CRC/copy)", vec![]),
        ("adler32 of payload (inside deserialize)", vec![]),
        ("deserialize_snapshot (total)", vec![]),
        ("decode + apply log tail", vec![]),
        ("drop tree (not on the restart path)", vec![]),
    ];
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let file = std::fs::read(&b.snapshot).map_err(|e| e.to_string())?;
        cols[0].1.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(crc32fast::hash(&file));
        cols[1].1.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let decoded = zkd_storage::snapshot::decode(&file)?;
        cols[2].1.push(t.elapsed().as_secs_f64());
        drop(decoded);
        drop(file);

        let t = Instant::now();
        let (storage, rec) = Storage::open(
            Arc::new(FileBackend::new()),
            &b.data_dir,
            &b.data_dir,
            StorageOptions::default(),
        )
        .map_err(|e| format!("Storage::open: {e}"))?;
        cols[3].1.push(t.elapsed().as_secs_f64());
        drop(storage);
        let (_, payload) = rec.snapshot.clone().ok_or("no snapshot recovered")?;
        let t = Instant::now();
        std::hint::black_box(adler32(&payload));
        cols[4].1.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (mut tree, _) = deserialize_snapshot(&payload).map_err(|e| e.to_string())?;
        cols[5].1.push(t.elapsed().as_secs_f64());
        drop(payload);
        let t = Instant::now();
        let mut ignored = Vec::new();
        for (_, bytes) in &rec.txns {
            let e = TxnEntry::from_bytes(bytes).map_err(|e| e.to_string())?;
            tree.process_txn(&e.header, &e.body, &mut ignored);
            ignored.clear();
        }
        cols[6].1.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        drop(tree);
        cols[7].1.push(t.elapsed().as_secs_f64());
    }
    println!(
        "in-process load phases (warm page cache), median of {}:",
        repeat.max(1)
    );
    for (name, v) in &cols {
        println!("  {name:<55} {:>8.3}s", stats::median(v));
    }
    Ok(())
}

pub async fn run(args: &RestartArgs) -> Result<(), String> {
    let scratch = ScratchDir::new(&args.dir, "zkd-bench-restart").map_err(|e| e.to_string())?;
    let data_dir = scratch.0.join("data");
    let b = build(args, &data_dir)?;
    println!(
        "data dir {}: snapshot {} ({}), {} log segment(s), tree {} nodes, known znode {}",
        b.data_dir.display(),
        b.snapshot.display(),
        stats::mib(b.snapshot_bytes),
        b.log_files.len(),
        b.tree_nodes,
        b.known
    );
    if !args.no_breakdown {
        breakdown(&b, args.repeat)?;
    }
    let modes: &[bool] = match args.cache {
        Cache::Warm => &[false],
        Cache::Cold => &[true],
        Cache::Both => &[false, true],
    };
    let mut samples = Vec::new();
    for rep in 0..args.repeat {
        for &cold in modes {
            let work = scratch
                .0
                .join(format!("run-{rep}-{}", if cold { "cold" } else { "warm" }));
            let s = restart_once(args, &b, cold, &work).await?;
            println!(
                "restart {}/{} {}: serving after {:.3}s (zkd 'data loaded in' {}; after spawn: 'loaded snapshot' {}, 'replayed' {}, 'data loaded' {}), VmRSS {}, VmHWM {}",
                rep + 1,
                args.repeat,
                s.cache,
                s.ready_s,
                opt_s(s.data_loaded_s),
                opt_s(s.phases.snapshot_loaded),
                opt_s(s.phases.replayed),
                opt_s(s.phases.data_loaded),
                stats::mib(s.rss),
                stats::mib(s.hwm),
            );
            samples.push(s);
        }
    }
    println!();
    println!(
        "restart medians of {} runs: {} znodes x {} B (+{} tail txns), snapshot file {}",
        args.repeat,
        args.znodes,
        args.size,
        args.tail,
        stats::mib(b.snapshot_bytes)
    );
    println!("| cache | serving after (median) | runs | zkd 'data loaded in' | spawn -> 'loaded snapshot' | -> 'replayed' (tail) | s per million znodes | VmRSS | VmHWM |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for &cold in modes {
        let name = if cold { "cold" } else { "warm" };
        let ss: Vec<&Sample> = samples.iter().filter(|s| s.cache == name).collect();
        let ready: Vec<f64> = ss.iter().map(|s| s.ready_s).collect();
        let loaded: Vec<f64> = ss.iter().filter_map(|s| s.data_loaded_s).collect();
        let rss: Vec<f64> = ss.iter().map(|s| s.rss as f64).collect();
        let hwm: Vec<f64> = ss.iter().map(|s| s.hwm as f64).collect();
        let snap: Vec<f64> = ss.iter().filter_map(|s| s.phases.snapshot_loaded).collect();
        let tail: Vec<f64> = ss
            .iter()
            .filter_map(|s| Some(s.phases.replayed? - s.phases.snapshot_loaded?))
            .collect();
        let m = stats::median(&ready);
        let per_m = m / (args.znodes.max(1) as f64 / 1e6);
        println!(
            "| {name} | {m:.3}s | {} | {:.3}s | {:.3}s | {:.3}s | {per_m:.3}s | {} | {} |",
            ready
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            stats::median(&loaded),
            stats::median(&snap),
            stats::median(&tail),
            stats::mib(stats::median(&rss) as u64),
            stats::mib(stats::median(&hwm) as u64),
        );
        println!(
            "{{\"bench\":\"restart\",\"cache\":\"{name}\",\"znodes\":{},\"size\":{},\"tail\":{},\"snapshot_bytes\":{},\
             \"median_ready_s\":{m:.4},\"median_data_loaded_s\":{:.4},\"s_per_million\":{per_m:.4},\"median_rss_bytes\":{:.0},\"median_hwm_bytes\":{:.0}}}",
            args.znodes,
            args.size,
            args.tail,
            b.snapshot_bytes,
            stats::median(&loaded),
            stats::median(&rss),
            stats::median(&hwm),
        );
    }
    if args.keep_data {
        let kept = scratch.0.clone();
        std::mem::forget(scratch);
        println!("kept data directory {}", kept.join("data").display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debug_durations() {
        assert_eq!(parse_debug_duration("1.5s"), Some(1.5));
        assert!((parse_debug_duration("250ms").unwrap() - 0.25).abs() < 1e-12);
        assert!((parse_debug_duration("12µs").unwrap() - 12e-6).abs() < 1e-12);
        assert_eq!(parse_debug_duration("x"), None);
    }

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m x"),
            "2026  INFO x"
        );
    }

    #[test]
    fn parses_line_time() {
        let l = "2026-01-02T03:04:05.500000Z  INFO zkd_server::net: data loaded in 1s";
        assert_eq!(line_time(l), Some(3.0 * 3600.0 + 4.0 * 60.0 + 5.5));
    }
}
