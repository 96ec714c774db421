//! Multi atomicity (P3): no read sees part of a `multi`; a failed `multi` leaves no trace.
//!
//! Owns the check over `multi` ops (invoke value {"batch": n, "size": k}: one multi that
//! creates k children named "n-0".."n-(k-1)" under one parent, possibly with a deliberately
//! failing check op) and `read` ops (ok value = array of child names, from one getChildren,
//! which is a single atomic read). Every read must contain each batch whole or not at all,
//! never a failed batch, never a batch nobody attempted. The last read (taken after healing)
//! must also contain every acknowledged batch. Earlier reads may be stale (P5 allows it).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op]) -> Verdict {
    let mut size: BTreeMap<i64, i64> = BTreeMap::new();
    let mut outcome: BTreeMap<i64, OpType> = BTreeMap::new();
    let mut reads: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, p) in pairs(history).into_iter().enumerate() {
        match p.invoke.f.as_str() {
            "multi" => {
                let (Some(b), Some(k)) = (
                    p.invoke.value["batch"].as_i64(),
                    p.invoke.value["size"].as_i64(),
                ) else {
                    continue;
                };
                size.insert(b, k);
                outcome.insert(b, p.outcome());
            }
            "read" if p.outcome() == OpType::Ok => {
                let names = p
                    .complete
                    .unwrap()
                    .value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                reads.push((i, names));
            }
            _ => {}
        }
    }
    let mut torn = Vec::new();
    let mut failed_seen = Vec::new();
    let mut phantom = Vec::new();
    let mut lost = Vec::new();
    for (ri, (i, names)) in reads.iter().enumerate() {
        let mut seen: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for n in names {
            let parsed = n
                .split_once('-')
                .and_then(|(b, m)| Some((b.parse::<i64>().ok()?, m.parse::<i64>().ok()?)));
            match parsed {
                Some((b, m)) => {
                    seen.entry(b).or_default().insert(m);
                }
                None => phantom.push(json!({"read": i, "child": n})),
            }
        }
        for (b, members) in &seen {
            match (size.get(b), outcome.get(b)) {
                (None, _) => phantom.push(json!({"read": i, "batch": b})),
                (_, Some(OpType::Fail)) => failed_seen.push(json!({"read": i, "batch": b})),
                (Some(&k), _) => {
                    if members.len() as i64 != k || members.iter().any(|&m| m < 0 || m >= k) {
                        torn.push(json!({"read": i, "batch": b, "members": members, "size": k}));
                    }
                }
            }
        }
        if ri + 1 == reads.len() {
            lost.extend(
                outcome
                    .iter()
                    .filter(|(b, o)| **o == OpType::Ok && !seen.contains_key(b))
                    .map(|(b, _)| *b),
            );
        }
    }
    let valid = if reads.is_empty() {
        Validity::Unknown
    } else if torn.is_empty() && failed_seen.is_empty() && phantom.is_empty() && lost.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let count = |t: OpType| outcome.values().filter(|o| **o == t).count();
    Verdict::new(
        "multi",
        "P3",
        valid,
        json!({"batches_ok": count(OpType::Ok), "batches_failed": count(OpType::Fail),
               "batches_indeterminate": count(OpType::Info), "reads": reads.len(),
               "torn": torn, "failed_visible": failed_seen, "phantom": phantom, "lost": lost}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value::Null;

    fn good() -> Vec<Op> {
        h(&[
            (0, "invoke", "multi", "", json!({"batch": 1, "size": 3}), 1),
            (0, "ok", "multi", "", Null, 2),
            (1, "invoke", "multi", "", json!({"batch": 2, "size": 3}), 1),
            (1, "fail", "multi", "", Null, 2),
            (2, "invoke", "multi", "", json!({"batch": 3, "size": 2}), 1),
            (2, "info", "multi", "", Null, 3),
            (3, "invoke", "read", "", Null, 2),
            (3, "ok", "read", "", json!([]), 3), // stale but whole: fine
            (3, "invoke", "read", "", Null, 10),
            (
                3,
                "ok",
                "read",
                "",
                json!(["1-0", "1-2", "1-1", "3-0", "3-1"]),
                11,
            ),
        ])
    }

    #[test]
    fn whole_batches_are_valid() {
        let v = check(&good());
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn torn_multi_is_caught() {
        let mut hist = good();
        hist[7].value = json!(["1-0", "1-1"]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["torn"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn failed_multi_visible_is_caught() {
        let mut hist = good();
        hist[9].value = json!(["1-0", "1-1", "1-2", "2-0", "2-1", "2-2"]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["failed_visible"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn lost_acknowledged_batch_is_caught() {
        let mut hist = good();
        hist[9].value = json!(["3-0", "3-1"]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["lost"], json!([1]));
    }
}
