//! Model test: random sequences of appends, syncs, rolls, snapshots, truncations, purges,
//! failed fsyncs, crashes (with and without torn writes) and reopens on `FaultyBackend`,
//! checked against a naive model after every reopen.
//!
//! The property (durability + prefix consistency): let `S` be the newest snapshot the
//! model wrote, `H` the model's history above `S` (every txn appended and not truncated,
//! in order) and `D` the part of `H` made durable by a successful `sync`. After any reopen,
//! recovery returns snapshot `S` with its payload, and txns equal to `H[..k]` for some
//! `k` with `|D| ≤ k ≤ |H|`: everything synced is present, and nothing appears that is
//! not a prefix of what followed the last sync. The model then adopts `H[..k]` as its
//! durable history (what is on disk after recovery is durable).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use zkd_storage::zxid;
use zkd_storage::{Backend, FaultyBackend, LogOptions, Recovered, Storage, StorageOptions};

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: u8,
        new_epoch: bool,
        size: u16,
    },
    Sync,
    Roll,
    Snapshot,
    Truncate {
        back: u8,
    },
    Purge,
    FailSync,
    Reopen,
    Crash,
    CrashTorn(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..8, prop::bool::weighted(0.1), 1u16..200)
            .prop_map(|(count, new_epoch, size)| Op::Append { count, new_epoch, size }),
        4 => Just(Op::Sync),
        1 => Just(Op::Roll),
        1 => Just(Op::Snapshot),
        1 => (0u8..6).prop_map(|back| Op::Truncate { back }),
        1 => Just(Op::Purge),
        1 => Just(Op::FailSync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        2 => any::<u64>().prop_map(Op::CrashTorn),
    ]
}

#[derive(Debug, Default)]
struct Model {
    /// History (all appended, not truncated), oldest first, including txns ≤ snapshots.
    txns: Vec<(i64, Vec<u8>)>,
    /// `txns[..synced]` is durable.
    synced: usize,
    snapshots: BTreeMap<i64, Vec<u8>>,
    /// Last zxid used, for generating the next.
    current: i64,
    poisoned: bool,
}

impl Model {
    fn newest_snapshot(&self) -> Option<i64> {
        self.snapshots.keys().next_back().copied()
    }

    fn floor(&self) -> i64 {
        self.newest_snapshot().unwrap_or(0)
    }

    /// Checks a recovery against the property and adopts it.
    fn check_and_adopt(&mut self, rec: &Recovered) {
        let snap = self.newest_snapshot();
        assert_eq!(
            rec.snapshot.as_ref().map(|s| s.0),
            snap,
            "recovered snapshot"
        );
        if let Some(s) = snap {
            assert_eq!(
                rec.snapshot.as_ref().unwrap().1.to_vec(),
                self.snapshots[&s]
            );
        }
        let floor = self.floor();
        let below = self.txns.iter().take_while(|t| t.0 <= floor).count();
        let history = &self.txns[below..];
        let durable = self.synced.saturating_sub(below);
        let k = rec.txns.len();
        assert!(
            k >= durable,
            "lost synced txns: recovered {k}, durable {durable} (history {})",
            history.len()
        );
        assert!(k <= history.len(), "recovered more than was appended");
        assert_eq!(
            &rec.txns[..],
            &history[..k],
            "recovered txns are not a prefix of the history"
        );
        self.txns.truncate(below + k);
        self.synced = self.txns.len();
        // Lost unsynced zxids may be reused (a new leader re-proposes them).
        self.current = self.txns.last().map_or(0, |t| t.0).max(floor);
        self.poisoned = false;
    }

    fn next_zxid(&mut self, new_epoch: bool) -> i64 {
        let (e, c) = (zxid::epoch(self.current), zxid::counter(self.current));
        self.current = if new_epoch || self.current == 0 {
            zxid::make(e + 1, 1)
        } else {
            zxid::make(e, c + 1)
        };
        self.current
    }
}

fn options(compress: bool) -> StorageOptions {
    StorageOptions {
        log: LogOptions {
            pre_alloc_bytes: 256,
            segment_max_bytes: 700,
            write_buffer_bytes: 128,
            max_record_bytes: 1 << 16,
            force_sync: true,
        },
        compress_snapshots: compress,
    }
}

fn open(backend: &Arc<FaultyBackend>, shared_dir: bool, compress: bool) -> (Storage, Recovered) {
    let data = Path::new("/data");
    let logs = if shared_dir { data } else { Path::new("/logs") };
    let backend: Arc<dyn Backend> = backend.clone();
    match Storage::open(backend, data, logs, options(compress)) {
        Ok(x) => x,
        Err(e) => panic!("recovery failed: {e}"),
    }
}

fn payload(zxid: i64, size: u16) -> Vec<u8> {
    let mut p = format!("{zxid:x}:").into_bytes();
    p.extend((0..size).map(|i| (zxid as u8).wrapping_mul(31).wrapping_add(i as u8)));
    p
}

fn run(ops: Vec<Op>, shared_dir: bool, compress: bool) {
    let backend = Arc::new(FaultyBackend::new());
    let mut model = Model::default();
    let (mut storage, rec) = open(&backend, shared_dir, compress);
    model.check_and_adopt(&rec);

    for op in ops {
        match op {
            Op::Append {
                count,
                new_epoch,
                size,
            } => {
                for i in 0..count {
                    if model.poisoned {
                        let err = storage.log().append(model.current + 1, b"x").unwrap_err();
                        assert!(err.is_fatal());
                        break;
                    }
                    let z = model.next_zxid(new_epoch && i == 0);
                    let p = payload(z, size);
                    storage.log().append(z, &p).unwrap();
                    model.txns.push((z, p));
                }
            }
            Op::Sync => match storage.log().sync() {
                Ok(durable) => {
                    assert!(!model.poisoned);
                    model.synced = model.txns.len();
                    assert_eq!(durable, storage.log().last_zxid());
                }
                Err(e) => {
                    assert!(model.poisoned, "unexpected sync error {e}");
                    assert!(e.is_fatal());
                }
            },
            Op::Roll => {
                let r = storage.log().roll();
                assert_eq!(r.is_err(), model.poisoned);
            }
            Op::Snapshot => {
                if model.poisoned || model.synced == 0 {
                    continue;
                }
                // The server snapshots applied (hence committed, hence locally durable)
                // state; fuzzy snapshots start at the last applied zxid.
                let z = model.txns[model.synced - 1].0;
                if model.snapshots.contains_key(&z) || Some(z) < model.newest_snapshot() {
                    continue;
                }
                let p = format!("state@{z:x}").into_bytes();
                storage.snapshots().write(z, &p).unwrap();
                storage.log().roll().unwrap();
                model.snapshots.insert(z, p);
            }
            Op::Truncate { back } => {
                if model.poisoned {
                    continue;
                }
                // ZAB TRUNC never goes below what a snapshot already contains.
                let last = model.txns.last().map_or(0, |t| t.0);
                let idx = model.txns.len().saturating_sub(back as usize + 1);
                let target = model
                    .txns
                    .get(idx)
                    .map_or(0, |t| t.0)
                    .min(last)
                    .max(model.floor());
                storage.log().truncate_after(target).unwrap();
                model.txns.retain(|t| t.0 <= target);
                model.synced = model.synced.min(model.txns.len());
                model.current = model.txns.last().map_or(0, |t| t.0).max(model.floor());
                // Purge may have removed older segments, so the log can end below the
                // model's last txn ≤ target, never above it.
                assert!(storage.log().last_zxid().unwrap_or(0) <= target);
            }
            Op::Purge => {
                if model.poisoned {
                    continue;
                }
                storage.purge(3).unwrap();
                while model.snapshots.len() > 3 {
                    let oldest = *model.snapshots.keys().next().unwrap();
                    model.snapshots.remove(&oldest);
                }
            }
            Op::FailSync => {
                if model.poisoned || model.synced == model.txns.len() {
                    continue;
                }
                backend.fail_next_sync();
                let err = storage.log().sync().unwrap_err();
                assert!(err.is_fatal(), "{err}");
                model.poisoned = true;
            }
            Op::Reopen | Op::Crash | Op::CrashTorn(_) => {
                drop(storage);
                match op {
                    Op::Crash => backend.crash(),
                    Op::CrashTorn(seed) => {
                        backend.crash_tearing(seed);
                    }
                    _ => {}
                }
                let (s, rec) = open(&backend, shared_dir, compress);
                model.check_and_adopt(&rec);
                storage = s;
            }
        }
    }
    // Always end with a torn crash and a final check.
    drop(storage);
    backend.crash_tearing(7);
    let (_, rec) = open(&backend, shared_dir, compress);
    model.check_and_adopt(&rec);
}

proptest! {
    // PROPTEST_CASES overrides the count for long soak runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn recovery_matches_model(
        ops in prop::collection::vec(op(), 1..80),
        shared_dir in any::<bool>(),
        compress in any::<bool>(),
    ) {
        run(ops, shared_dir, compress);
    }
}

#[test]
fn regression_torn_crash_after_roll() {
    run(
        vec![
            Op::Append {
                count: 7,
                new_epoch: false,
                size: 150,
            },
            Op::Sync,
            Op::Roll,
            Op::Append {
                count: 7,
                new_epoch: false,
                size: 150,
            },
            Op::CrashTorn(3),
            Op::Append {
                count: 3,
                new_epoch: true,
                size: 10,
            },
            Op::Snapshot,
            Op::Sync,
            Op::Snapshot,
            Op::CrashTorn(11),
        ],
        false,
        false,
    );
}

#[test]
fn regression_truncate_after_reopen() {
    run(
        vec![
            Op::Append {
                count: 1,
                new_epoch: false,
                size: 102,
            },
            Op::Reopen,
            Op::Truncate { back: 0 },
        ],
        false,
        false,
    );
}
