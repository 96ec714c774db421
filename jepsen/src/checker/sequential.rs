//! Sequential creates (P12): names are unique and strictly increasing per parent.
//!
//! Owns three checks on `create-seq` ops (key = parent path, ok value = the sequence number
//! ZooKeeper appended, as an integer): no number is handed out twice (also not after a
//! restart: the whole history counts), real-time order is respected (if A completed before B
//! was invoked, seq(A) < seq(B)), and an optional final `read-seq` (ok value = array of
//! numbers present under the parent) contains every acknowledged create. Never assumes the
//! numbers are dense: other children and failed creates also advance cversion.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op]) -> Verdict {
    // parent -> [(invoke time, complete time, seq)]
    let mut by_parent: BTreeMap<String, Vec<(u64, u64, i64)>> = BTreeMap::new();
    let mut finals: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for p in pairs(history) {
        let parent = p.invoke.key.clone().unwrap_or_default();
        if p.outcome() != OpType::Ok {
            continue;
        }
        let v = &p.complete.unwrap().value;
        match p.invoke.f.as_str() {
            "create-seq" => {
                if let Some(s) = v.as_i64() {
                    by_parent
                        .entry(parent)
                        .or_default()
                        .push((p.invoke.time, p.end(), s));
                }
            }
            "read-seq" => {
                finals.insert(
                    parent,
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_i64)
                        .collect(),
                );
            }
            _ => {}
        }
    }
    let mut duplicates = Vec::new();
    let mut reordered = Vec::new();
    let mut missing = Vec::new();
    let mut total = 0;
    for (parent, mut creates) in by_parent {
        total += creates.len();
        let mut seen = BTreeMap::new();
        for &(_, _, s) in &creates {
            *seen.entry(s).or_insert(0) += 1;
        }
        duplicates.extend(
            seen.iter()
                .filter(|(_, &n)| n > 1)
                .map(|(s, n)| json!({"parent": parent, "seq": s, "times": n})),
        );
        // Real-time order: sort by completion; every op invoked after an earlier op's
        // completion must have a larger number than it. Track the max seq among completed ops.
        creates.sort_by_key(|c| c.1);
        let mut by_invoke = creates.clone();
        by_invoke.sort_by_key(|c| c.0);
        let mut done = 0;
        let mut max_done: Option<(i64, u64)> = None;
        for &(inv, _, s) in &by_invoke {
            while done < creates.len() && creates[done].1 < inv {
                if max_done.is_none_or(|(m, _)| creates[done].2 > m) {
                    max_done = Some((creates[done].2, creates[done].1));
                }
                done += 1;
            }
            if let Some((m, t)) = max_done {
                if s <= m {
                    reordered.push(json!({"parent": parent, "seq": s, "invoked_at": inv,
                                          "after_seq": m, "which_completed_at": t}));
                }
            }
        }
        if let Some(fin) = finals.get(&parent) {
            missing.extend(
                creates
                    .iter()
                    .filter(|c| !fin.contains(&c.2))
                    .map(|c| json!({"parent": parent, "seq": c.2})),
            );
        }
    }
    let valid = if duplicates.is_empty() && reordered.is_empty() && missing.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Verdict::new(
        "sequential",
        "P12",
        valid,
        json!({"creates": total, "duplicates": duplicates, "out_of_order": reordered, "lost": missing}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value::Null;

    #[test]
    fn increasing_unique_is_valid_and_concurrent_may_interleave() {
        let hist = h(&[
            (0, "invoke", "create-seq", "/q", Null, 1),
            (0, "ok", "create-seq", "/q", json!(0), 2),
            (0, "invoke", "create-seq", "/q", Null, 3),
            (1, "invoke", "create-seq", "/q", Null, 3),
            (1, "ok", "create-seq", "/q", json!(1), 5),
            (0, "ok", "create-seq", "/q", json!(4), 6), // gaps are fine
            (2, "invoke", "create-seq", "/q", Null, 7),
            (2, "info", "create-seq", "/q", Null, 8),
            (0, "invoke", "read-seq", "/q", Null, 9),
            (0, "ok", "read-seq", "/q", json!([0, 1, 4, 5]), 10),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn duplicate_sequence_is_caught() {
        // Same number handed out twice, e.g. reused after a restart that lost the log tail.
        let hist = h(&[
            (0, "invoke", "create-seq", "/q", Null, 1),
            (0, "ok", "create-seq", "/q", json!(3), 2),
            (1, "invoke", "create-seq", "/q", Null, 1),
            (1, "ok", "create-seq", "/q", json!(3), 2),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["duplicates"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn decreasing_in_real_time_is_caught() {
        let hist = h(&[
            (0, "invoke", "create-seq", "/q", Null, 1),
            (0, "ok", "create-seq", "/q", json!(5), 2),
            (1, "invoke", "create-seq", "/q", Null, 3),
            (1, "ok", "create-seq", "/q", json!(4), 4),
        ]);
        assert_eq!(check(&hist).valid, Validity::Invalid);
    }

    #[test]
    fn acknowledged_create_missing_from_final_read_is_caught() {
        let hist = h(&[
            (0, "invoke", "create-seq", "/q", Null, 1),
            (0, "ok", "create-seq", "/q", json!(0), 2),
            (0, "invoke", "read-seq", "/q", Null, 9),
            (0, "ok", "read-seq", "/q", json!([]), 10),
        ]);
        assert_eq!(check(&hist).valid, Validity::Invalid);
    }

    #[test]
    fn parents_are_independent() {
        let hist = h(&[
            (0, "invoke", "create-seq", "/a", Null, 1),
            (0, "ok", "create-seq", "/a", json!(5), 2),
            (1, "invoke", "create-seq", "/b", Null, 3),
            (1, "ok", "create-seq", "/b", json!(0), 4),
        ]);
        assert_eq!(check(&hist).valid, Validity::Valid);
    }
}
