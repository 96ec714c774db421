//! Persistent watches (P10): every committed change to a watched znode is notified, in zxid
//! order, with no duplicates and no gaps, while the watcher stays connected.
//!
//! Owns the per-watcher check. A watcher's window opens at the zxid its client had seen when
//! addWatch returned ("watch" ok value {"zxid": z0}) and closes at the zxid of a sync+read it
//! does at the end ("watch-end" ok value {"zxid": z1}); a watcher that lost its connection
//! has no closed window and is only checked for order, duplicates and phantoms. Writers'
//! "write" ops carry the mzxid setData returned. "event" ops are single `ok` entries (no
//! invocation) with the notification's zxid when the server sends one (ZooKeeper ≥3.9,
//! ZOOKEEPER-4655); without zxids the check falls back to counting: acknowledged writes in
//! the window ≤ events ≤ those plus indeterminate writes. Never assumes one-shot semantics.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{merge, Validity, Verdict};
use crate::history::{pairs, Op, OpType};

/// One watcher's window. A resuming watcher's `rewatch` moves `from`, the start of the
/// part held to "no gaps" (persistent watches are not replayed across a reconnect); a failed
/// rewatch leaves no such part; `z0` still bounds phantoms.
struct Window {
    key: String,
    z0: i64,
    from: Option<i64>,
    /// When the last successful rewatch was invoked (0: never).
    from_time: u64,
    z1: Option<i64>,
}

pub fn check(history: &[Op]) -> Verdict {
    // Committed writes per key: zxids of ok writes; count of indeterminate writes.
    let mut ok_writes: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut info_writes: BTreeMap<String, usize> = BTreeMap::new();
    let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
    for p in pairs(history) {
        let key = p.invoke.key.clone().unwrap_or_default();
        match (p.invoke.f.as_str(), p.outcome()) {
            ("write", OpType::Ok) => {
                if let Some(z) = p.complete.unwrap().zxid {
                    ok_writes.entry(key).or_default().insert(z);
                }
            }
            ("write", OpType::Info) => *info_writes.entry(key).or_default() += 1,
            ("watch", OpType::Ok) => {
                let z0 = p.complete.unwrap().value["zxid"].as_i64().unwrap_or(0);
                windows.insert(
                    p.invoke.process,
                    Window {
                        key,
                        z0,
                        from: Some(z0),
                        from_time: 0,
                        z1: None,
                    },
                );
            }
            ("rewatch", outcome) => {
                if let Some(w) = windows.get_mut(&p.invoke.process) {
                    w.from = match outcome {
                        OpType::Ok => {
                            w.from_time = p.invoke.time;
                            p.complete.unwrap().value["zxid"].as_i64()
                        }
                        _ => None,
                    };
                }
            }
            ("watch-end", OpType::Ok) => {
                if let Some(w) = windows.get_mut(&p.invoke.process) {
                    w.z1 = p.complete.unwrap().value["zxid"].as_i64();
                }
            }
            _ => {}
        }
    }
    let mut events: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    // Per process, when its connection dropped (`disconnected`, resuming watchers).
    let mut cuts: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for op in history {
        match (op.f.as_str(), op.kind) {
            ("event", OpType::Ok) => events.entry(op.process).or_default().push(op),
            ("disconnected", _) => cuts.entry(op.process).or_default().push(op.time),
            _ => {}
        }
    }
    let mut per_watcher = BTreeMap::new();
    let mut validities = Vec::new();
    for (
        proc_,
        Window {
            key,
            z0,
            from,
            from_time,
            z1,
        },
    ) in &windows
    {
        let evs: Vec<&Op> = events
            .get(proc_)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.key.as_deref() == Some(key.as_str()))
            .collect();
        let known: Vec<i64> = evs
            .iter()
            .filter_map(|e| e.zxid)
            .filter(|&z| z > 0)
            .collect();
        let all_known = known.len() == evs.len();
        let mut problems = Vec::new();
        // Order and duplicates per connection: `disconnected` marks (resuming watchers)
        // split the events.
        let cuts = cuts.get(proc_).map_or(&[][..], Vec::as_slice);
        let connection = |t: u64| cuts.iter().filter(|&&c| c < t).count();
        let known_by_conn: Vec<(usize, i64)> = evs
            .iter()
            .filter_map(|e| e.zxid.filter(|&z| z > 0).map(|z| (connection(e.time), z)))
            .collect();
        for w in known_by_conn.windows(2) {
            if w[0].0 != w[1].0 {
                continue;
            }
            if w[1].1 == w[0].1 {
                problems.push(json!({"duplicate": w[1].1}));
            } else if w[1].1 < w[0].1 {
                problems.push(json!({"out_of_order": [w[0].1, w[1].1]}));
            }
        }
        let committed = ok_writes.get(key).cloned().unwrap_or_default();
        let indeterminate = info_writes.get(key).copied().unwrap_or(0);
        let end = z1.unwrap_or(i64::MAX);
        let in_window: Vec<i64> = committed
            .iter()
            .copied()
            .filter(|&z| z > *z0 && z <= end)
            .collect();
        // The part every write of which must have been notified: from the last (re)arming
        // to watch-end.
        let complete = z1.is_some() && from.is_some();
        let must_see: Vec<i64> = in_window
            .iter()
            .copied()
            .filter(|&z| z > from.unwrap_or(i64::MAX))
            .collect();
        if all_known {
            let seen: BTreeSet<i64> = known.iter().copied().collect();
            if complete {
                let gaps: Vec<i64> = must_see
                    .iter()
                    .copied()
                    .filter(|z| !seen.contains(z))
                    .collect();
                if !gaps.is_empty() {
                    problems.push(json!({"missed": gaps}));
                }
            }
            let phantoms: Vec<i64> = seen
                .iter()
                .copied()
                .filter(|z| *z <= *z0 || *z > end || (!committed.contains(z) && indeterminate == 0))
                .collect();
            if !phantoms.is_empty() {
                problems.push(json!({"phantom_or_outside_window": phantoms}));
            }
        } else {
            // Counting fallback: the server sent no zxids.
            let n = evs.len();
            // Events drained during the rewatch may be from either side of its zxid, so
            // counting from its start can hide a miss but never report one that did not
            // happen.
            let n_after = evs.iter().filter(|e| e.time >= *from_time).count();
            if complete && n_after < must_see.len() {
                problems.push(json!({"missed_count": must_see.len() - n_after}));
            }
            // Across a reconnect a lagging server may notify again (see above); without
            // zxids those cannot be told from extra events, so only a watcher that never
            // lost its connection is held to the upper bound.
            if n > in_window.len() + indeterminate && z1.is_some() && cuts.is_empty() {
                problems.push(json!({"extra_count": n - in_window.len() - indeterminate}));
            }
        }
        let v = if problems.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        validities.push(v);
        per_watcher.insert(
            proc_.to_string(),
            json!({"key": key, "events": evs.len(), "zxids_known": all_known,
            "window": [z0, z1], "complete_from": from, "writes_in_window": in_window.len(),
            "writes_to_see": must_see.len(), "problems": problems}),
        );
    }
    let valid = if windows.is_empty() {
        Validity::Unknown
    } else {
        merge(validities)
    };
    Verdict::new("watches", "P10", valid, json!(per_watcher))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value::Null;

    /// Writers 0 and 1 on /w; watcher 5 from zxid 10 to 40; writes at 11, 20, 30 (and 5 before).
    fn base(events: &[i64]) -> Vec<Op> {
        let mut hist = h(&[
            (0, "invoke", "write", "/w", json!({"value": 0}), 1),
            (0, "ok", "write", "/w", Null, 2),
            (5, "invoke", "watch", "/w", Null, 3),
            (5, "ok", "watch", "/w", json!({"zxid": 10}), 4),
        ]);
        hist[1].zxid = Some(5);
        for (i, z) in [11, 20, 30].iter().enumerate() {
            let t = 10 + i as u64 * 10;
            let mut w = h(&[
                (
                    i as i64 % 2,
                    "invoke",
                    "write",
                    "/w",
                    json!({"value": z}),
                    t,
                ),
                (i as i64 % 2, "ok", "write", "/w", Null, t + 1),
            ]);
            w[1].zxid = Some(*z);
            hist.extend(w);
        }
        for (i, z) in events.iter().enumerate() {
            let mut e = h(&[(5, "ok", "event", "/w", json!({"type": 3}), 50 + i as u64)]);
            e[0].zxid = Some(*z);
            hist.extend(e);
        }
        hist.extend(h(&[
            (5, "invoke", "watch-end", "/w", Null, 90),
            (5, "ok", "watch-end", "/w", json!({"zxid": 40}), 91),
        ]));
        hist
    }

    #[test]
    fn complete_ordered_notifications_are_valid() {
        let v = check(&base(&[11, 20, 30]));
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn gap_duplicate_reorder_and_phantom_are_caught() {
        for evs in [
            &[11, 30][..],
            &[11, 20, 20, 30],
            &[11, 30, 20],
            &[5, 11, 20, 30],
            &[11, 20, 25, 30],
        ] {
            let v = check(&base(evs));
            assert_eq!(v.valid, Validity::Invalid, "{evs:?} {v:?}");
        }
    }

    #[test]
    fn counting_fallback_without_zxids() {
        let strip = |mut hist: Vec<Op>| {
            for o in hist.iter_mut().filter(|o| o.f == "event") {
                o.zxid = Some(-1);
            }
            hist
        };
        assert_eq!(check(&strip(base(&[11, 20, 30]))).valid, Validity::Valid);
        assert_eq!(check(&strip(base(&[11, 20]))).valid, Validity::Invalid);
        assert_eq!(
            check(&strip(base(&[11, 20, 30, 31]))).valid,
            Validity::Invalid
        );
    }

    /// `base` with a reconnect of watcher 5: rewatch ok at zxid `at` (recorded at time 45,
    /// after the writes and before the events), or a failed rewatch.
    fn resumed(events: &[i64], at: Option<i64>) -> Vec<Op> {
        let mut hist = base(events);
        let pos = hist
            .iter()
            .position(|o| o.f == "event")
            .unwrap_or(hist.len());
        let rewatch = match at {
            Some(z) => h(&[
                (5, "invoke", "rewatch", "/w", Null, 44),
                (5, "ok", "rewatch", "/w", json!({"zxid": z}), 45),
            ]),
            None => h(&[
                (5, "invoke", "rewatch", "/w", Null, 44),
                (5, "info", "rewatch", "/w", Null, 45),
            ]),
        };
        hist.splice(pos..pos, rewatch);
        hist
    }

    #[test]
    fn a_reconnect_excuses_only_writes_before_the_rewatch() {
        // Re-armed at 15: 11 may be missed (it was committed while disconnected), 20 and
        // 30 may not.
        assert_eq!(check(&resumed(&[20, 30], Some(15))).valid, Validity::Valid);
        assert_eq!(
            check(&resumed(&[11, 20, 30], Some(15))).valid,
            Validity::Valid
        );
        // Not re-armed: nothing after the reconnect is a gap the checker must see.
        let v = check(&resumed(&[], Some(15)));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        let v = check(&resumed(&[20], Some(15)));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        // Duplicates and phantoms stay violations across a reconnect.
        let v = check(&resumed(&[20, 20, 30], Some(15)));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        let v = check(&resumed(&[5, 20, 30], Some(15)));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        // A failed rewatch leaves no window to hold to completeness, only order.
        assert_eq!(check(&resumed(&[30], None)).valid, Validity::Valid);
        let v = check(&resumed(&[30, 20], None));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
    }

    #[test]
    fn a_new_connection_may_notify_again_but_not_twice_on_one_connection() {
        // Events 11, 20 on the first connection; after the disconnect (time 47) a lagging
        // server notifies 20 again, then 30.
        let with_cut = |evs: &[i64]| {
            let mut hist = resumed(evs, Some(15));
            let pos = hist
                .iter()
                .position(|o| o.f == "event" && o.zxid == Some(20))
                .unwrap();
            hist.insert(
                pos + 1,
                h(&[(5, "info", "disconnected", "/w", Null, 47)])[0].clone(),
            );
            for (i, o) in hist.iter_mut().filter(|o| o.f == "event").enumerate() {
                o.time = if i < 2 { 46 } else { 48 + i as u64 };
            }
            hist
        };
        let v = check(&with_cut(&[11, 20, 20, 30]));
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
        let v = check(&with_cut(&[11, 20, 20, 30, 30]));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        // Without the mark the same notifications are a duplicate.
        let v = check(&resumed(&[11, 20, 20, 30], Some(15)));
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
    }

    #[test]
    fn counting_fallback_after_a_reconnect() {
        let strip = |mut hist: Vec<Op>| {
            for o in hist.iter_mut().filter(|o| o.f == "event") {
                o.zxid = Some(-1);
            }
            hist
        };
        // Events recorded after the rewatch at 15 must cover 20 and 30.
        assert_eq!(
            check(&strip(resumed(&[20, 30], Some(15)))).valid,
            Validity::Valid
        );
        assert_eq!(
            check(&strip(resumed(&[20], Some(15)))).valid,
            Validity::Invalid
        );
    }
}
