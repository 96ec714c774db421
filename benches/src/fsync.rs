//! `fsync-floor`: what one fdatasync costs on this disk, measured the way zkd's txn log
//! writes (zkd_storage::TxnLog with the FileBackend): a file preallocated with `set_len`
//! (sparse, 64 MiB blocks, the log's default preAllocSize), records appended with
//! positional writes at the current end, then `File::sync_data` (fdatasync).
//!
//! Two numbers come out: one fdatasync per record (the throughput floor a server without
//! group commit would have: every write waits for its own flush) and one fdatasync per
//! batch of `batch` records (the ceiling the disk allows when many txns share a flush).
//! The file is removed afterwards.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::stats::{self, Hist};

/// The log's preallocation block (LogOptions::default().pre_alloc_bytes).
const PREALLOC: u64 = 64 << 20;

#[derive(clap::Args, Debug, Clone)]
pub struct FsyncArgs {
    /// Directory to write the scratch file in (put it on the disk the log uses).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub dir: PathBuf,
    /// Records written with one fdatasync each.
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// Bytes per record (header included).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Records per fdatasync in the batched run.
    #[arg(long, default_value_t = 1024)]
    pub batch: usize,
    /// Records written in the batched run.
    #[arg(long, default_value_t = 400_000)]
    pub batched_count: usize,
}

#[derive(Debug, Clone)]
pub struct FsyncResult {
    pub count: usize,
    pub size: usize,
    /// One fdatasync per record: records (= fsyncs) per second.
    pub single_ops: f64,
    pub hist: Hist,
    pub batch: usize,
    pub batched_records: usize,
    /// Records per second with one fdatasync per `batch` records.
    pub batched_ops: f64,
    /// Latency of one write+fdatasync of a whole batch (median).
    pub batched_p50_us: f64,
    /// CPU time (user + system, of the writing thread) per record in the single run: what
    /// a write plus its fdatasync costs the CPU, the floor under any server's CPU per
    /// synchronous write.
    pub single_cpu_us: f64,
}

/// CPU time (user + system) the calling thread has used, in microseconds.
pub fn thread_cpu_us() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(r.ru_utime) + us(r.ru_stime)
}

impl FsyncResult {
    pub fn table(&self) -> String {
        format!(
            "fsync-floor  single: {:.0} fsyncs/s  p50={} p99={} p99.9={} max={}  ({} x {} B, CPU {:.1} us each)\n\
             fsync-floor  batched: {:.0} records/s  ({} x {} B, one fdatasync per {}; p50 per batch {})",
            self.single_ops,
            stats::fmt_us(stats::q_us(&self.hist, 0.5)),
            stats::fmt_us(stats::q_us(&self.hist, 0.99)),
            stats::fmt_us(stats::q_us(&self.hist, 0.999)),
            stats::fmt_us(stats::max_us(&self.hist)),
            self.count,
            self.size,
            self.single_cpu_us,
            self.batched_ops,
            self.batched_records,
            self.size,
            self.batch,
            stats::fmt_us(self.batched_p50_us),
        )
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"bench\":\"fsync-floor\",\"count\":{},\"size\":{},\"single_ops_per_s\":{:.1},\
             \"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
             \"batch\":{},\"batched_records\":{},\"batched_records_per_s\":{:.1},\"batched_p50_us\":{:.1},\
             \"single_cpu_us\":{:.1}}}",
            self.count,
            self.size,
            self.single_ops,
            stats::q_us(&self.hist, 0.5),
            stats::q_us(&self.hist, 0.99),
            stats::q_us(&self.hist, 0.999),
            stats::max_us(&self.hist),
            self.batch,
            self.batched_records,
            self.batched_ops,
            self.batched_p50_us,
            self.single_cpu_us,
        )
    }
}

/// A preallocated append-only file, grown like the txn log grows its segments; removed
/// when dropped.
pub(crate) struct Appender {
    pub(crate) file: File,
    path: PathBuf,
    offset: u64,
    allocated: u64,
}

impl Appender {
    pub(crate) fn create(dir: &Path, tag: &str) -> std::io::Result<Appender> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("zkd-bench-fsync-{}-{tag}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.set_len(PREALLOC)?;
        file.sync_all()?;
        Ok(Appender {
            file,
            path,
            offset: 0,
            allocated: PREALLOC,
        })
    }

    pub(crate) fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        let end = self.offset + data.len() as u64;
        if end > self.allocated {
            self.allocated = end.div_ceil(PREALLOC) * PREALLOC;
            self.file.set_len(self.allocated)?;
        }
        self.file.write_all_at(data, self.offset)?;
        self.offset = end;
        Ok(())
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A record of `size` bytes shaped like a log record (length, crc, zxid, payload).
fn record_bytes(size: usize, seq: u64) -> Vec<u8> {
    let size = size.max(16);
    let mut r = vec![0x5au8; size];
    r[0..4].copy_from_slice(&((size - 16) as u32).to_be_bytes());
    r[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    r[8..16].copy_from_slice(&(seq as i64).to_be_bytes());
    r
}

pub fn measure(args: &FsyncArgs) -> std::io::Result<FsyncResult> {
    // One fdatasync per record.
    let mut hist = stats::new_hist();
    let mut a = Appender::create(&args.dir, "single")?;
    let started = Instant::now();
    let cpu_before = thread_cpu_us();
    for i in 0..args.count {
        let rec = record_bytes(args.size, i as u64 + 1);
        let t0 = Instant::now();
        a.append(&rec)?;
        a.file.sync_data()?;
        stats::record(&mut hist, t0.elapsed());
    }
    let elapsed = started.elapsed();
    let single_cpu_us = (thread_cpu_us() - cpu_before) / args.count.max(1) as f64;
    drop(a);
    let single_ops = args.count as f64 / elapsed.as_secs_f64();

    // One fdatasync per batch of records (the records of a batch written with one pwrite,
    // as the log's write buffer does).
    let batch = args.batch.max(1);
    let mut a = Appender::create(&args.dir, "batched")?;
    let mut buf = Vec::with_capacity(batch * args.size);
    let mut batch_lat = Vec::new();
    let mut written = 0usize;
    let started = Instant::now();
    while written < args.batched_count {
        buf.clear();
        let n = batch.min(args.batched_count - written);
        for i in 0..n {
            buf.extend_from_slice(&record_bytes(args.size, (written + i) as u64 + 1));
        }
        let t0 = Instant::now();
        a.append(&buf)?;
        a.file.sync_data()?;
        batch_lat.push(t0.elapsed().as_secs_f64() * 1e6);
        written += n;
    }
    let elapsed: Duration = started.elapsed();
    drop(a);
    Ok(FsyncResult {
        count: args.count,
        size: args.size,
        single_ops,
        hist,
        batch,
        batched_records: written,
        batched_ops: written as f64 / elapsed.as_secs_f64(),
        batched_p50_us: stats::median(&batch_lat),
        single_cpu_us,
    })
}
