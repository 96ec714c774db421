//! Linearizability of a per-znode compare-and-set register (P6, and P1/P13 for versions).
//!
//! Owns the register model (znode value plus dataVersion: getData reads both, setData with
//! version -1 writes, setData with a version is a compare-and-set that bumps the version by
//! exactly one) and a Wing–Gong–Lowe search with memoisation on (linearized set, state), as
//! Porcupine does. The history is split per key first (P-compositionality: a history is
//! linearizable iff each per-object sub-history is). Never hangs: each key's search has a
//! step budget and a deadline, and running out yields `Unknown`, not a verdict.
//!
//! Op encoding (values are JSON): read ok → {"value":v,"version":n}; write invoke →
//! {"value":v}, ok may add "version" (the Stat.version setData returned); cas invoke →
//! {"value":v,"version":expected}. `fail` ops did not happen and are dropped; `info` ops
//! may take effect at any point after their invocation, or never.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{merge, Validity, Verdict};
use crate::history::{pairs, Op, OpType};

/// Register state: (value, dataVersion).
pub type State = (i64, i32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read { value: i64, version: i32 },
    Write { value: i64, version: Option<i32> },
    Cas { value: i64, expected: i32 },
}

#[derive(Debug, Clone)]
struct LOp {
    call: u64,
    /// `None`: indeterminate, never forces a linearization point.
    ret: Option<u64>,
    kind: Kind,
    /// Index of the invocation in the full history, for reports.
    index: usize,
}

fn step(s: State, k: Kind) -> Option<State> {
    match k {
        Kind::Read { value, version } => (s == (value, version)).then_some(s),
        Kind::Write { value, version } => {
            let next = (value, s.1 + 1);
            match version {
                Some(v) if v != next.1 => None,
                _ => Some(next),
            }
        }
        Kind::Cas { value, expected } => (s.1 == expected).then_some((value, expected + 1)),
    }
}

/// Limits for one key's search.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_steps: u64,
    pub deadline: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps: 5_000_000,
            deadline: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyResult {
    Linearizable,
    /// The deepest search got stuck at the return of the op with this history index, after
    /// linearizing `linearized` ops.
    NotLinearizable {
        stuck_at: usize,
        linearized: usize,
    },
    Unknown {
        steps: u64,
    },
}

fn as_i64(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

fn to_lops(history: &[Op], key: &str) -> Result<Vec<LOp>, String> {
    let index_of = |op: &Op| {
        history
            .iter()
            .position(|o| std::ptr::eq(o, op))
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for p in pairs(history) {
        if p.invoke.key.as_deref() != Some(key) {
            continue;
        }
        let outcome = p.outcome();
        if outcome == OpType::Fail {
            continue;
        }
        let ret = match outcome {
            OpType::Ok => Some(p.complete.unwrap().time),
            _ => None,
        };
        let kind = match p.invoke.f.as_str() {
            "read" => {
                if outcome != OpType::Ok {
                    continue; // an unanswered read changes nothing
                }
                let v = &p.complete.unwrap().value;
                Kind::Read {
                    value: as_i64(v, "value").ok_or("read without value")?,
                    version: as_i64(v, "version").ok_or("read without version")? as i32,
                }
            }
            "write" => Kind::Write {
                value: as_i64(&p.invoke.value, "value").ok_or("write without value")?,
                version: p
                    .complete
                    .filter(|c| c.kind == OpType::Ok)
                    .and_then(|c| as_i64(&c.value, "version"))
                    .map(|v| v as i32),
            },
            "cas" => Kind::Cas {
                value: as_i64(&p.invoke.value, "value").ok_or("cas without value")?,
                expected: as_i64(&p.invoke.value, "version").ok_or("cas without version")? as i32,
            },
            other => return Err(format!("unknown register op {other}")),
        };
        out.push(LOp {
            call: p.invoke.time,
            ret,
            kind,
            index: index_of(p.invoke),
        });
    }
    Ok(out)
}

const NIL: usize = usize::MAX;

/// Wing–Gong–Lowe over one key's ops, starting from `init`.
fn check_ops(ops: &[LOp], init: State, budget: Budget) -> KeyResult {
    // Entries: a call per op, a return per determinate op, sorted by time with calls first
    // on ties (so ops that touch in time count as concurrent, never as ordered).
    let mut entries: Vec<(u64, bool, usize)> = Vec::new(); // (time, is_return, op)
    for (i, op) in ops.iter().enumerate() {
        entries.push((op.call, false, i));
        if let Some(r) = op.ret {
            entries.push((r, true, i));
        }
    }
    entries.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
    let n = entries.len();
    let head = n; // sentinel
    let mut next = vec![NIL; n + 1];
    let mut prev = vec![NIL; n + 1];
    let mut ret_entry = vec![NIL; ops.len()];
    let mut call_entry = vec![NIL; ops.len()];
    for (e, &(_, is_ret, i)) in entries.iter().enumerate() {
        if is_ret {
            ret_entry[i] = e;
        } else {
            call_entry[i] = e;
        }
    }
    let mut last = head;
    for (e, p) in prev.iter_mut().enumerate().take(n) {
        next[last] = e;
        *p = last;
        last = e;
    }
    next[last] = NIL;

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = nx;
        if nx != NIL {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = e;
        if nx != NIL {
            prev[nx] = e;
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new(); // (op, state before it)
    let mut state = init;
    let mut entry = next[head];
    let mut steps: u64 = 0;
    let started = Instant::now();
    // Deepest point at which an op's return blocked the search: (ops linearized, that op's
    // history index). This is the op a human should look at first.
    let mut best = (0usize, ops.first().map(|o| o.index).unwrap_or(0));

    while entry != NIL {
        steps += 1;
        if steps > budget.max_steps
            || (steps.is_multiple_of(4096) && started.elapsed() > budget.deadline)
        {
            return KeyResult::Unknown { steps };
        }
        let (_, is_ret, i) = entries[entry];
        if !is_ret {
            if let Some(s2) = step(state, ops[i].kind) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), s2)) {
                    stack.push((i, state));
                    state = s2;
                    // Lift: remove the call and (if any) the return of op i.
                    unlink(&mut next, &mut prev, call_entry[i]);
                    if ret_entry[i] != NIL {
                        unlink(&mut next, &mut prev, ret_entry[i]);
                    }
                    entry = next[head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // A return of an op not yet linearized: everything before it failed. Backtrack.
            if stack.len() >= best.0 {
                best = (stack.len(), ops[i].index);
            }
            let Some((j, s_before)) = stack.pop() else {
                return KeyResult::NotLinearizable {
                    stuck_at: best.1,
                    linearized: best.0,
                };
            };
            state = s_before;
            linearized[j / 64] &= !(1 << (j % 64));
            if ret_entry[j] != NIL {
                relink(&mut next, &mut prev, ret_entry[j]);
            }
            relink(&mut next, &mut prev, call_entry[j]);
            entry = next[call_entry[j]];
        }
    }
    KeyResult::Linearizable
}

/// Checks every key's register sub-history independently.
pub fn check(history: &[Op], init: State, budget: Budget) -> Verdict {
    let keys: std::collections::BTreeSet<String> = history
        .iter()
        .filter(|o| matches!(o.f.as_str(), "read" | "write" | "cas"))
        .filter_map(|o| o.key.clone())
        .collect();
    let mut per_key = BTreeMap::new();
    let mut validities = Vec::new();
    for key in keys {
        let ops = match to_lops(history, &key) {
            Ok(ops) => ops,
            Err(e) => {
                validities.push(Validity::Unknown);
                per_key.insert(key, json!({"valid": "unknown", "error": e}));
                continue;
            }
        };
        let r = check_ops(&ops, init, budget);
        let (v, d) = match r {
            KeyResult::Linearizable => {
                (Validity::Valid, json!({"valid": "valid", "ops": ops.len()}))
            }
            KeyResult::NotLinearizable {
                stuck_at,
                linearized,
            } => (
                Validity::Invalid,
                json!({"valid": "invalid", "ops": ops.len(), "stuck_at_op": stuck_at,
                       "op": history.get(stuck_at), "longest_prefix": linearized}),
            ),
            KeyResult::Unknown { steps } => (
                Validity::Unknown,
                json!({"valid": "unknown", "ops": ops.len(), "steps": steps}),
            ),
        };
        validities.push(v);
        per_key.insert(key, d);
    }
    Verdict::new(
        "linearizable-register",
        "P6/P13",
        merge(validities),
        json!(per_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use rand::{Rng, SeedableRng};
    use serde_json::Value::Null;

    fn rv(v: i64, ver: i32) -> Value {
        json!({"value": v, "version": ver})
    }

    #[test]
    fn sequential_good_history_is_valid() {
        let hist = h(&[
            (0, "invoke", "write", "a", json!({"value": 1}), 1),
            (0, "ok", "write", "a", json!({"value": 1, "version": 1}), 2),
            (1, "invoke", "read", "a", Null, 3),
            (1, "ok", "read", "a", rv(1, 1), 4),
            (
                0,
                "invoke",
                "cas",
                "a",
                json!({"value": 5, "version": 1}),
                5,
            ),
            (0, "ok", "cas", "a", json!({"value": 5, "version": 1}), 6),
            (1, "invoke", "read", "a", Null, 7),
            (1, "ok", "read", "a", rv(5, 2), 8),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Valid
        );
    }

    #[test]
    fn stale_read_is_caught() {
        // Write of 1 completes before the read is invoked, yet the read returns the old 0.
        let hist = h(&[
            (0, "invoke", "write", "a", json!({"value": 1}), 1),
            (0, "ok", "write", "a", json!({"value": 1}), 2),
            (1, "invoke", "read", "a", Null, 3),
            (1, "ok", "read", "a", rv(0, 0), 4),
        ]);
        let v = check(&hist, (0, 0), Budget::default());
        assert_eq!(v.valid, Validity::Invalid, "{v:?}");
        // The report points at the stale read's invocation (history index 2).
        assert_eq!(v.details["a"]["stuck_at_op"], 2, "{v:?}");
        assert_eq!(v.details["a"]["op"]["f"], "read");
    }

    #[test]
    fn concurrent_read_may_see_either() {
        let hist = h(&[
            (0, "invoke", "write", "a", json!({"value": 1}), 1),
            (1, "invoke", "read", "a", Null, 2),
            (1, "ok", "read", "a", rv(0, 0), 3),
            (2, "invoke", "read", "a", Null, 3),
            (2, "ok", "read", "a", rv(1, 1), 4),
            (0, "ok", "write", "a", json!({"value": 1}), 5),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Valid
        );
    }

    #[test]
    fn lost_write_is_caught() {
        // An acknowledged write disappears: later reads see the value from before it.
        let hist = h(&[
            (0, "invoke", "write", "a", json!({"value": 1}), 1),
            (0, "ok", "write", "a", json!({"value": 1}), 2),
            (0, "invoke", "write", "a", json!({"value": 2}), 3),
            (0, "ok", "write", "a", json!({"value": 2}), 4),
            (1, "invoke", "read", "a", Null, 5),
            (1, "ok", "read", "a", rv(1, 1), 6),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn version_must_rise_by_exactly_one() {
        let hist = h(&[
            (0, "invoke", "write", "a", json!({"value": 1}), 1),
            (0, "ok", "write", "a", json!({"value": 1, "version": 2}), 2),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn double_cas_success_is_caught() {
        // Two CAS from version 0 both succeed: only one can.
        let hist = h(&[
            (
                0,
                "invoke",
                "cas",
                "a",
                json!({"value": 1, "version": 0}),
                1,
            ),
            (
                1,
                "invoke",
                "cas",
                "a",
                json!({"value": 2, "version": 0}),
                1,
            ),
            (0, "ok", "cas", "a", json!({"value": 1, "version": 0}), 2),
            (1, "ok", "cas", "a", json!({"value": 2, "version": 0}), 2),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn info_write_may_or_may_not_apply() {
        let applied = h(&[
            (0, "invoke", "write", "a", json!({"value": 7}), 1),
            (0, "info", "write", "a", Null, 2),
            (1, "invoke", "read", "a", Null, 10),
            (1, "ok", "read", "a", rv(7, 1), 11),
        ]);
        assert_eq!(
            check(&applied, (0, 0), Budget::default()).valid,
            Validity::Valid
        );
        let not_applied = h(&[
            (0, "invoke", "write", "a", json!({"value": 7}), 1),
            (0, "info", "write", "a", Null, 2),
            (1, "invoke", "read", "a", Null, 10),
            (1, "ok", "read", "a", rv(0, 0), 11),
        ]);
        assert_eq!(
            check(&not_applied, (0, 0), Budget::default()).valid,
            Validity::Valid
        );
        // But an info write cannot take effect before it was invoked.
        let too_early = h(&[
            (1, "invoke", "read", "a", Null, 1),
            (1, "ok", "read", "a", rv(7, 1), 2),
            (0, "invoke", "write", "a", json!({"value": 7}), 3),
            (0, "info", "write", "a", Null, 4),
        ]);
        assert_eq!(
            check(&too_early, (0, 0), Budget::default()).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn failed_ops_leave_no_trace() {
        let hist = h(&[
            (
                0,
                "invoke",
                "cas",
                "a",
                json!({"value": 9, "version": 3}),
                1,
            ),
            (0, "fail", "cas", "a", Null, 2),
            (1, "invoke", "read", "a", Null, 3),
            (1, "ok", "read", "a", rv(9, 4), 4),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn keys_are_independent() {
        let hist = h(&[
            (0, "invoke", "write", "a", json!({"value": 1}), 1),
            (0, "ok", "write", "a", json!({"value": 1}), 2),
            (1, "invoke", "read", "b", Null, 3),
            (1, "ok", "read", "b", rv(0, 0), 4),
        ]);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Valid
        );
        let mut bad = hist.clone();
        bad.extend(h(&[
            (1, "invoke", "read", "a", Null, 5),
            (1, "ok", "read", "a", rv(0, 0), 6),
        ]));
        let v = check(&bad, (0, 0), Budget::default());
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["b"]["valid"], "valid");
    }

    /// Simulates a linearizable register under concurrency: each op takes effect at a random
    /// instant inside its [invoke, complete] window. Some ops time out (info).
    fn simulated(seed: u64, n_ops: usize, keys: usize, procs: usize) -> Vec<Op> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Pick intervals per process, then linearization points, then apply in point order.
        struct Planned {
            p: i64,
            key: usize,
            f: &'static str,
            inv: u64,
            lin: u64,
            ret: u64,
            arg: Value,
            info: bool,
        }
        let mut planned = Vec::new();
        let mut clock = vec![0u64; procs];
        for _ in 0..n_ops {
            let p = rng.gen_range(0..procs);
            let inv = clock[p] + rng.gen_range(1..20);
            let ret = inv + rng.gen_range(1..60);
            let lin = rng.gen_range(inv..ret);
            clock[p] = ret;
            let f = ["read", "write", "cas"][rng.gen_range(0..3)];
            let key = rng.gen_range(0..keys);
            let arg = json!({"value": rng.gen_range(0..5), "version": rng.gen_range(0..4)});
            let info = f != "read" && rng.gen_bool(0.02);
            planned.push(Planned {
                p: p as i64,
                key,
                f,
                inv,
                lin,
                ret,
                arg,
                info,
            });
        }
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| planned[i].lin);
        let mut state = vec![(0i64, 0i32); keys];
        let mut results: Vec<(OpType, Value)> = vec![(OpType::Ok, Null); planned.len()];
        for i in order {
            let pl = &planned[i];
            let s = state[pl.key];
            let v = pl.arg["value"].as_i64().unwrap();
            results[i] = match pl.f {
                "read" => (OpType::Ok, rv(s.0, s.1)),
                "write" => {
                    state[pl.key] = (v, s.1 + 1);
                    (OpType::Ok, json!({"value": v, "version": s.1 + 1}))
                }
                _ => {
                    let ev = pl.arg["version"].as_i64().unwrap() as i32;
                    if s.1 == ev {
                        state[pl.key] = (v, ev + 1);
                        (OpType::Ok, pl.arg.clone())
                    } else {
                        (OpType::Fail, Null)
                    }
                }
            };
            if pl.info {
                results[i] = (OpType::Info, Null);
            }
        }
        let mut events: Vec<(u64, u8, Op)> = Vec::new();
        for (i, pl) in planned.iter().enumerate() {
            let key = format!("k{}", pl.key);
            let inv_val = if pl.f == "read" {
                Null
            } else if pl.f == "write" {
                json!({"value": pl.arg["value"]})
            } else {
                pl.arg.clone()
            };
            events.push((
                pl.inv,
                1,
                Op::new(pl.p, OpType::Invoke, pl.f, Some(&key), inv_val, pl.inv),
            ));
            events.push((
                pl.ret,
                0,
                Op::new(
                    pl.p,
                    results[i].0,
                    pl.f,
                    Some(&key),
                    results[i].1.clone(),
                    pl.ret,
                ),
            ));
        }
        events.sort_by_key(|e| (e.0, e.1));
        events.into_iter().map(|e| e.2).collect()
    }

    #[test]
    fn thousand_concurrent_ops_check_quickly() {
        for seed in 0..3 {
            let hist = simulated(seed, 1000, 3, 10);
            let started = Instant::now();
            let v = check(&hist, (0, 0), Budget::default());
            assert_eq!(v.valid, Validity::Valid, "seed {seed}: {:?}", v.details);
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "took {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn corrupted_simulation_is_caught() {
        // Take a valid concurrent history and make one late read return a value never written.
        let mut hist = simulated(7, 600, 2, 8);
        let i = hist
            .iter()
            .rposition(|o| o.f == "read" && o.kind == OpType::Ok)
            .unwrap();
        hist[i].value = rv(99, 0);
        assert_eq!(
            check(&hist, (0, 0), Budget::default()).valid,
            Validity::Invalid
        );
    }

    #[test]
    fn tiny_budget_yields_unknown() {
        let hist = simulated(3, 400, 1, 10);
        let v = check(
            &hist,
            (0, 0),
            Budget {
                max_steps: 50,
                deadline: Duration::from_secs(5),
            },
        );
        assert_eq!(v.valid, Validity::Unknown);
    }
}
