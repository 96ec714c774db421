//! Txn log append through zkd-storage's TxnLog: a 150-byte payload (about a create txn
//! with 100 B of data), buffered appends, and appends with one fsync per 100 records; on
//! the file backend in a temp directory (the disk of /tmp) and on the memory backend.
//!
//! One log per benchmark, opened before measuring with the default options (64 MiB
//! preallocated segments), so the figures are steady state: segment rolls and their
//! preallocation are included at their real frequency. Segments left behind are removed
//! outside the timed region (`remove_segments_before`) so memory and disk stay bounded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zkd_storage::{Backend, FileBackend, LogOptions, MemBackend, TxnLog};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("zkd-bench-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Log {
    log: TxnLog,
    next: i64,
    payload: Vec<u8>,
}

impl Log {
    fn open(backend: Arc<dyn Backend>, dir: &Path) -> Log {
        let (log, _) = TxnLog::open(backend, dir, LogOptions::default()).expect("open log");
        let next = log.last_zxid().unwrap_or(0) + 1;
        Log {
            log,
            next,
            payload: vec![0x5a; 150],
        }
    }

    /// Appends `iters` records, fsyncing every `sync_every` (0 = never); returns the time
    /// of the appends (and syncs) only.
    fn run(&mut self, iters: u64, sync_every: u64) -> Duration {
        let t = Instant::now();
        for i in 0..iters {
            self.log.append(self.next, &self.payload).expect("append");
            self.next += 1;
            if sync_every > 0 && (i + 1) % sync_every == 0 {
                self.log.sync().expect("sync");
            }
        }
        let d = t.elapsed();
        // Untimed: keep only the newest segment.
        self.log.sync().expect("sync");
        self.log
            .remove_segments_before(self.next - 1)
            .expect("remove old segments");
        d
    }
}

fn txnlog(c: &mut Criterion) {
    let mut g = c.benchmark_group("txnlog");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    let dir = TempDir::new("file");
    let file = || -> Arc<dyn Backend> { Arc::new(FileBackend::new()) };
    let mem = || -> Arc<dyn Backend> { Arc::new(MemBackend::new()) };
    let mut l = Log::open(file(), &dir.0.join("a"));
    g.bench_function("append/file", |b| b.iter_custom(|n| l.run(n, 0)));
    let mut l = Log::open(file(), &dir.0.join("b"));
    g.bench_function("append+fsync-per-100/file", |b| {
        b.iter_custom(|n| l.run(n, 100))
    });
    let mut l = Log::open(mem(), Path::new("/mem-a"));
    g.bench_function("append/mem", |b| b.iter_custom(|n| l.run(n, 0)));
    let mut l = Log::open(mem(), Path::new("/mem-b"));
    g.bench_function("append+sync-per-100/mem", |b| {
        b.iter_custom(|n| l.run(n, 100))
    });
    g.finish();
}

criterion_group!(benches, txnlog);
criterion_main!(benches);
