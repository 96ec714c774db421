//! Persistence glue (ZooKeeper's FileTxnSnapLog + SyncRequestProcessor + the snapshot
//! trigger): opens the data directories, rebuilds the core from the newest valid snapshot
//! plus the log, runs the log thread that makes txns durable in groups, and takes
//! snapshots.
//!
//! Owns the order "append, fsync, then tell the core": a txn reaches `Core::synced` only
//! after the fdatasync that covers it returned, so nothing is applied or acknowledged
//! before it is durable. Never retries a failed write or fsync: the page cache may have
//! dropped the data, so the server stops (PostgreSQL's fsyncgate lesson).
//!
//! Group commit: the network layer appends each txn to the log's write buffer as the
//! core emits it ([`LogAppender`], no thread of its own); the syncer thread writes and
//! fsyncs whatever has been appended, then tells the core. While an fsync is in flight
//! appends go on, so the next fsync covers every txn that arrived meanwhile: the busier
//! the server, the more txns share one fsync.
//!
//! Snapshots are fuzzy, as ZooKeeper's: written a few hundred nodes per hold of the core
//! lock while writes go on in between, by their own thread, one at a time, after the log
//! rolled to a new segment. That thread runs on idle CPU (SCHED_IDLE) for its first ten
//! seconds, so a snapshot slows the requests around it as little as the core allows, and
//! spills the serialised nodes to an unnamed file rather than holding them in memory.
//! Recovery replays the log after the snapshot's zxid, which makes the state exact (see
//! `tree::snapshot::FuzzySnapshot`).

use std::io::Seek;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::Rng;
use zkd_proto::txn::TxnEntry;
use zkd_storage::{
    FileBackend, LogOptions, LoseUnsyncedBackend, SnapStore, Storage, StorageOptions, TxnLog,
};

use crate::config::Config;
use crate::core::{Core, RestoredSnapshot};
use crate::net::{now_ms, Shared};
use crate::tree::snapshot::{deserialize_snapshot, FuzzySnapshot, SnapshotSession};

/// The log's writing end (ZooKeeper's SyncRequestProcessor minus its thread): the
/// network layer appends each txn here itself, under the core lock, so txns reach the
/// log in zxid order, and then publishes once per core call to wake the syncer.
///
/// Appending only copies the record into the log's write buffer (the syncer writes and
/// fsyncs it), so it costs the caller about a memcpy. It used to be a thread of its own
/// fed through a queue, which cost every group of txns a futex wake-up and two context
/// switches for that memcpy (one synchronous client: 1.0 switch and ~3 µs of CPU per
/// create). The exception is a log roll (after each snapshot trigger, or a full
/// segment): it fsyncs the finished segment first, so that one append holds the core
/// lock for an fsync, as ZooKeeper's sync thread holds its whole pipeline then.
///
/// Never acknowledges anything: only the syncer, after the fdatasync, tells the core.
pub struct LogAppender {
    log: TxnLog,
    appended: Arc<Appended>,
    p: Persistence,
    /// For the snapshot thread (weak: Shared owns this appender).
    shared: std::sync::Weak<Shared>,
    snapshotting: Arc<AtomicBool>,
    trigger: SnapTrigger,
    since_count: u64,
    since_bytes: i64,
    /// The newest zxid appended and not yet published to the syncer.
    unpublished: Option<i64>,
}

impl LogAppender {
    /// Buffers a txn (TxnEntry bytes) in the log; zxids only increase. Durable only
    /// once the syncer's fsync covers it, after [`LogAppender::publish`].
    pub fn append(&mut self, zxid: i64, txn: &[u8]) {
        if let Err(e) = self.log.append(zxid, txn) {
            fatal(&format!("appending txn 0x{zxid:x}"), e);
        }
        self.unpublished = Some(zxid);
        self.since_count += 1;
        self.since_bytes += txn.len() as i64;
        self.maybe_snapshot();
    }

    /// Tells the syncer what was appended since the last call (a no-op if nothing was;
    /// no syscall unless the syncer sleeps).
    pub fn publish(&mut self) {
        if let Some(zxid) = self.unpublished.take() {
            let mut last = self.appended.zxid.lock();
            *last = zxid;
            self.appended.wake.notify_one();
        }
    }

    /// zab's TRUNC (or a SNAP): drops every txn above `after` once the appends before
    /// it are durable, and returns when the truncation is.
    pub fn truncate_after(&mut self, after: i64) -> Result<(), String> {
        self.publish();
        self.log.truncate_after(after).map_err(|e| e.to_string())
    }

    /// Starts a snapshot (after rolling the log) once snapCount/snapSizeLimit is
    /// reached and none is running.
    fn maybe_snapshot(&mut self) {
        if (self.since_count < self.trigger.count && self.since_bytes < self.trigger.bytes)
            || self.snapshotting.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.since_count = 0;
        self.since_bytes = 0;
        self.trigger = SnapTrigger::roll(&self.p);
        if let Err(e) = self.log.roll() {
            fatal("rolling the txn log", e);
        }
        let Some(shared) = self.shared.upgrade() else {
            self.snapshotting.store(false, Ordering::SeqCst);
            return;
        };
        let storage = self.p.storage.clone();
        let flag = self.snapshotting.clone();
        std::thread::Builder::new()
            .name("zkd-snapshot".into())
            .spawn(move || {
                // Idle CPU only, at first. At normal priority a snapshot took up to half of
                // a busy core, and as the syncer's wake-ups do not preempt (it is
                // SCHED_BATCH) each fsync completion waited out its time slice: pipelined
                // creates' p50 went from 3 ms to 15-20 ms while one ran, p99 to 30 ms
                // (benches/RESULTS.md, session 5). An idle-policy thread is preempted by
                // any wake-up and gets the CPU nobody else wants.
                set_sched_policy(SchedPolicy::Idle, "the snapshot thread");
                take_snapshot(&shared, storage.snapshots());
                flag.store(false, Ordering::SeqCst);
            })
            .expect("spawn snapshot thread");
    }
}

/// The opened storage, ready to be handed to the log's appender and syncer.
pub struct Persistence {
    pub storage: Arc<Storage>,
    pub backend: Arc<dyn zkd_storage::Backend>,
    pub snap_count: u64,
    pub snap_size_limit_bytes: i64,
    pub retain: usize,
    pub purge_interval_ms: u64,
}

/// Opens the data directories and rebuilds the core (ZKDatabase.loadDataBase).
pub fn open(config: &Config, now: i64) -> Result<(Core, Persistence), String> {
    let backend: Arc<dyn zkd_storage::Backend> = if config.test_lose_unsynced_writes {
        tracing::warn!(
            "zkd.test.loseUnsyncedWrites=true: TEST ONLY. Writes to {} and {} are held in this process's memory until fsynced; killing the process loses them as a power cut would",
            config.data_dir.display(),
            config.data_log_dir.display()
        );
        Arc::new(LoseUnsyncedBackend::new())
    } else {
        Arc::new(FileBackend::new())
    };
    if !config.force_sync {
        tracing::warn!(
            "forceSync=no: writes are acknowledged without fsync; a crash can lose them (tests only)"
        );
    }
    let options = StorageOptions {
        log: LogOptions {
            pre_alloc_bytes: config.pre_alloc_size_kb * 1024,
            force_sync: config.force_sync,
            ..LogOptions::default()
        },
        compress_snapshots: config.snapshot_compression,
    };
    let (storage, recovered) = Storage::open(
        backend.clone(),
        &config.data_dir,
        &config.data_log_dir,
        options,
    )
    .map_err(|e| e.to_string())?;
    let mut core = Core::new(config.clone(), now);
    let snapshot = match recovered.snapshot {
        Some((zxid, bytes)) => {
            let (tree, sessions) = deserialize_snapshot(&bytes).map_err(|e| {
                format!(
                    "snapshot 0x{zxid:x} in {}: {e}",
                    storage.snapshots().dir().display()
                )
            })?;
            tracing::info!(
                "loaded snapshot 0x{zxid:x}: {} znodes, {} sessions",
                tree.node_count(),
                sessions.len()
            );
            Some(RestoredSnapshot {
                tree,
                sessions: sessions.iter().map(|s| (s.id, s.timeout_ms)).collect(),
                zxid,
            })
        }
        None => None,
    };
    let distributed = config.is_distributed();
    let mut txns = Vec::with_capacity(recovered.txns.len());
    for (zxid, bytes) in &recovered.txns {
        let t = TxnEntry::from_bytes(bytes).map_err(|e| {
            format!(
                "txn 0x{zxid:x} in {} does not decode: {e}",
                storage.log().dir().display()
            )
        })?;
        if t.header.zxid != *zxid {
            return Err(format!(
                "txn logged as 0x{zxid:x} carries zxid 0x{:x} in its header",
                t.header.zxid
            ));
        }
        txns.push(t);
    }
    if distributed {
        // An ensemble server restores its tree from the snapshot only: the logged txns
        // after it go to zab, which applies each once it knows it is committed (a
        // restarted server never shows a txn the ensemble may have dropped).
        let zab_config = crate::ensemble::zab_config(config)?;
        let snapshot_zxid = snapshot.as_ref().map_or(0, |s| s.zxid);
        core.restore(snapshot, &[], now);
        let epochs = zkd_storage::EpochFiles::new(&config.data_dir);
        let restored =
            crate::ensemble::restored(&epochs, &*backend, snapshot_zxid, recovered.txns)?;
        tracing::info!(
            "ensemble server {}: acceptedEpoch {}, currentEpoch {}, tree at 0x{:x}, {} logged txns for zab",
            zab_config.id,
            restored.accepted_epoch,
            restored.current_epoch,
            snapshot_zxid,
            restored.log.len()
        );
        let seed = (now as u64) ^ zab_config.id.rotate_left(32);
        let zab = zkd_zab::Zab::new(zab_config, restored, seed).map_err(|e| e.to_string())?;
        core.zab = Some(Box::new(zab));
        core.set_replication(crate::core::Replication::Unavailable, 0, now);
        core.take_output();
    } else {
        core.restore(snapshot, &txns, now);
        tracing::info!(
            "replayed {} txns; serving from zxid 0x{:x}",
            txns.len(),
            core.tree.last_processed_zxid
        );
        drop(recovered.txns);
    }
    core.durable = true;
    drop(txns);
    release_freed_heap();
    Ok((
        core,
        Persistence {
            storage: Arc::new(storage),
            backend: backend.clone(),
            snap_count: config.snap_count.max(2),
            snap_size_limit_bytes: config.snap_size_limit_kb.saturating_mul(1024),
            retain: config.autopurge_snap_retain_count.max(3) as usize,
            purge_interval_ms: config.autopurge_purge_interval_ms,
        },
    ))
}

/// Hands the memory recovery freed back to the kernel. The log tail's parsed txns were
/// allocated between the tree's own blocks, so once they are freed glibc cannot shrink
/// its heap by itself: after replaying ~50k txns onto a tree of 1M znodes, RSS stayed
/// ~25 MiB above that of the same tree built by requests.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives whole free pages of the malloc heaps back to the
    // kernel; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!(
        "{what}: {e}; stopping, since a txn that cannot be made durable must never be acknowledged"
    );
    eprintln!("zkd: {what}: {e}");
    std::process::exit(3);
}

/// When to snapshot next: like ZooKeeper, after snapCount/2 plus a random share of
/// snapCount/2 txns (or the size equivalent), so an ensemble does not snapshot at once.
struct SnapTrigger {
    count: u64,
    bytes: i64,
}

impl SnapTrigger {
    fn roll(p: &Persistence) -> SnapTrigger {
        let mut rng = rand::thread_rng();
        let half = (p.snap_count / 2).max(1);
        let half_bytes = (p.snap_size_limit_bytes / 2).max(1);
        SnapTrigger {
            count: half + rng.gen_range(0..half),
            bytes: if p.snap_size_limit_bytes > 0 {
                half_bytes + rng.gen_range(0..half_bytes)
            } else {
                i64::MAX
            },
        }
    }
}

/// Starts the syncer thread (and the purge timer); returns the appender the core's
/// Persist outputs go to.
pub fn start(shared: &Arc<Shared>, p: Persistence) -> LogAppender {
    let appended = Arc::new(Appended::default());
    {
        let log = p.storage.log().clone();
        let shared = shared.clone();
        let appended = appended.clone();
        std::thread::Builder::new()
            .name("zkd-log-sync".into())
            .spawn(move || {
                no_wakeup_preemption();
                sync_thread(shared, log, appended)
            })
            .expect("spawn log sync thread");
    }
    if p.purge_interval_ms > 0 {
        start_purge_timer(p.storage.clone(), p.retain, p.purge_interval_ms);
    }
    LogAppender {
        log: p.storage.log().clone(),
        appended,
        trigger: SnapTrigger::roll(&p),
        p,
        shared: Arc::downgrade(shared),
        snapshotting: Arc::new(AtomicBool::new(false)),
        since_count: 0,
        since_bytes: 0,
        unpublished: None,
    }
}

/// Puts the calling thread in SCHED_BATCH: same share of the CPU, but its wake-ups do
/// not preempt the running thread. Every fsync wakes the syncer; on a busy core each
/// such wake-up used to preempt the network thread, often while it held the core lock
/// the syncer then waited for. As a batch thread it runs when the network thread blocks
/// or its slice ends, and finds more appended txns each time. Best effort: an error
/// leaves the normal policy.
fn no_wakeup_preemption() {
    set_sched_policy(SchedPolicy::Batch, "the log sync thread");
}

#[derive(Clone, Copy)]
enum SchedPolicy {
    Normal,
    Batch,
    Idle,
}

/// Sets the calling thread's scheduling policy. Best effort: an error leaves the policy
/// as it was.
fn set_sched_policy(policy: SchedPolicy, who: &str) {
    #[cfg(target_os = "linux")]
    {
        let (raw, name) = match policy {
            SchedPolicy::Normal => (libc::SCHED_OTHER, "SCHED_OTHER"),
            SchedPolicy::Batch => (libc::SCHED_BATCH, "SCHED_BATCH"),
            SchedPolicy::Idle => (libc::SCHED_IDLE, "SCHED_IDLE"),
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid param.
        let r = unsafe { libc::sched_setscheduler(0, raw, &param) };
        if r != 0 {
            tracing::debug!("{name} for {who}: {}", std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (policy, who);
}

/// The newest zxid appended but perhaps not yet synced, and a condvar to wake the syncer.
#[derive(Default)]
struct Appended {
    zxid: parking_lot::Mutex<i64>,
    wake: parking_lot::Condvar,
}

fn sync_thread(shared: Arc<Shared>, log: TxnLog, appended: Arc<Appended>) {
    let mut synced = i64::MIN;
    loop {
        let target = {
            let mut last = appended.zxid.lock();
            while *last <= synced {
                appended.wake.wait(&mut last);
            }
            *last
        };
        match log.sync() {
            Ok(Some(zxid)) => {
                synced = zxid;
                shared.with_core(|c| c.synced(zxid, now_ms()));
            }
            // Nothing new to make durable: what was appended already is.
            Ok(None) => synced = target,
            Err(e) => fatal("syncing the txn log", e),
        }
    }
}
/// Nodes written per hold of the core lock: a fraction of a millisecond of work, so a
/// request waits at most that long behind a snapshot step. 2000 (about 2 ms) added that
/// much to mixed-workload latency while snapshots of a 300k tree ran continuously
/// (snapCount 20000): 250 gave 4-10% more ops/s and a lower p99 in 3 of 3 A/B pairs.
const SNAPSHOT_STEP_NODES: usize = 250;

/// How long a snapshot may run on idle CPU only before it competes for the CPU as any
/// other thread does (see `maybe_snapshot`).
const SNAPSHOT_IDLE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes a fuzzy snapshot a step at a time, releasing the core lock between steps, then
/// writes it. Recovery replays the log after the snapshot's zxid, which makes it exact.
pub fn take_snapshot(shared: &Shared, snaps: &SnapStore) {
    let started = std::time::Instant::now();
    let mut snap = shared.with_core(|c| {
        let sessions: Vec<SnapshotSession> = c
            .snapshot_sessions()
            .into_iter()
            .map(|(id, timeout_ms)| SnapshotSession { id, timeout_ms })
            .collect();
        FuzzySnapshot::begin(&c.tree, sessions)
    });
    // The nodes go to an unnamed file next to the snapshots as they are serialised
    // (outside the lock), so a large tree's snapshot is never held in memory whole: with
    // a million 100-byte znodes that was ~220 MB, twice over while it was assembled.
    let mut spill = open_spill(snaps.dir());
    let mut steps = 0u64;
    let mut starved = false;
    while !shared.with_core(|c| snap.step(&c.tree, SNAPSHOT_STEP_NODES)) {
        steps += 1;
        snap.between_steps();
        if let Some(f) = spill.as_mut() {
            if snap.buffered() >= SPILL_BYTES {
                if let Err(e) = snap.spill_to(f) {
                    tracing::error!("snapshot: writing the spill file failed: {e}");
                    return;
                }
            }
        }
        // A saturated server leaves an idle-policy thread (almost) no CPU. Past this
        // budget the snapshot competes as any thread does, so the log since the last
        // snapshot (and the replay at restart) stays bounded.
        if !starved && started.elapsed() > SNAPSHOT_IDLE_BUDGET {
            starved = true;
            set_sched_policy(SchedPolicy::Normal, "a starved snapshot thread");
            tracing::info!(
                "snapshot got too little idle CPU in {SNAPSHOT_IDLE_BUDGET:?}; finishing it at normal priority"
            );
        }
    }
    let zxid = snap.zxid();
    let serialised = started.elapsed();
    let written = match spill {
        Some(mut f) => {
            let mut snap = Some(snap);
            snaps.write_with(zxid, &mut |w| {
                let s = snap
                    .take()
                    .ok_or_else(|| std::io::Error::other("snapshot already written"))?;
                f.seek(std::io::SeekFrom::Start(0))?;
                s.finish_streaming(&mut f, w)
            })
        }
        None => {
            let mut bytes = Vec::new();
            snap.finish(&mut bytes);
            snaps.write(zxid, &bytes)
        }
    };
    match written {
        Ok(info) => tracing::info!(
            "snapshot 0x{zxid:x}: {} bytes to {} (serialised in {serialised:?} over {} lock holds, total {:?})",
            std::fs::metadata(&info.path).map_or(0, |m| m.len()),
            info.path.display(),
            steps + 1,
            started.elapsed()
        ),
        // The log still holds everything, so a failed snapshot costs only restart time.
        Err(e) => tracing::error!("snapshot 0x{zxid:x} failed: {e}"),
    }
}

/// Serialised nodes a snapshot keeps in memory before moving them to its spill file.
const SPILL_BYTES: usize = 1 << 20;

/// An unnamed temporary file in `dir` (O_TMPFILE: it disappears when closed, so a crash
/// leaves nothing behind). None, and the snapshot is assembled in memory, where the
/// file system cannot make one.
fn open_spill(dir: &std::path::Path) -> Option<std::fs::File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(dir)
        {
            Ok(f) => return Some(f),
            Err(e) => tracing::debug!(
                "snapshot spill file in {}: {e}; assembling in memory",
                dir.display()
            ),
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    None
}

fn start_purge_timer(storage: Arc<Storage>, retain: usize, interval_ms: u64) {
    std::thread::Builder::new()
        .name("zkd-purge".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(interval_ms));
            match storage.purge(retain) {
                Ok(r) => tracing::info!(
                    "autopurge: removed {} snapshots and {} log segments",
                    r.snapshots.len(),
                    r.segments.len()
                ),
                Err(e) => tracing::warn!("autopurge failed: {e}"),
            }
        })
        .expect("spawn purge thread");
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy_of_this_thread() -> i32 {
        // SAFETY: plain syscall on the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// The snapshot thread's demotion and its return after the idle budget, as the kernel
    /// sees them (an unprivileged process may always lower its own priority and return
    /// from SCHED_IDLE to SCHED_OTHER on Linux >= 2.6.39).
    #[test]
    fn sched_policy_changes_reach_the_kernel() {
        std::thread::spawn(|| {
            set_sched_policy(SchedPolicy::Idle, "test");
            assert_eq!(policy_of_this_thread(), libc::SCHED_IDLE);
            set_sched_policy(SchedPolicy::Normal, "test");
            assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER);
            set_sched_policy(SchedPolicy::Batch, "test");
            assert_eq!(policy_of_this_thread(), libc::SCHED_BATCH);
        })
        .join()
        .expect("policy thread");
    }
}
