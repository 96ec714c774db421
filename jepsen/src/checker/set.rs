//! Set of unique adds (P7 reliability, P3 "a failed op leaves no trace").
//!
//! Owns the check that every acknowledged `add` is in the final read and that the final read
//! holds nothing that was never attempted or that definitely failed. `info` adds may be
//! present or absent. Never looks at intermediate reads: only the last successful `read`.
//! Encoding: add invoke value = integer element; read ok value = array of integers.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op]) -> Verdict {
    let mut ok = BTreeSet::new();
    let mut maybe = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut final_read: Option<BTreeSet<i64>> = None;
    for p in pairs(history) {
        match p.invoke.f.as_str() {
            "add" => {
                let Some(e) = p.invoke.value.as_i64() else {
                    continue;
                };
                match p.outcome() {
                    OpType::Ok => ok.insert(e),
                    OpType::Fail => failed.insert(e),
                    _ => maybe.insert(e),
                };
            }
            "read" if p.outcome() == OpType::Ok => {
                let v = &p.complete.unwrap().value;
                final_read = Some(
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
    let Some(read) = final_read else {
        return Verdict::new(
            "set",
            "P7/P3",
            Validity::Unknown,
            json!({"error": "no successful final read"}),
        );
    };
    let lost: Vec<i64> = ok.difference(&read).copied().collect();
    let phantom: Vec<i64> = read
        .iter()
        .filter(|e| !ok.contains(e) && !maybe.contains(e))
        .copied()
        .collect();
    let recovered = read.intersection(&maybe).count();
    let valid = if lost.is_empty() && phantom.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Verdict::new(
        "set",
        "P7/P3",
        valid,
        json!({"acknowledged": ok.len(), "indeterminate": maybe.len(), "failed": failed.len(),
               "read": read.len(), "recovered_indeterminate": recovered,
               "lost": lost, "phantom": phantom}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value::Null;

    #[test]
    fn good_set_with_indeterminate_adds() {
        let hist = h(&[
            (0, "invoke", "add", "", json!(1), 1),
            (0, "ok", "add", "", json!(1), 2),
            (1, "invoke", "add", "", json!(2), 1),
            (1, "info", "add", "", json!(2), 3),
            (2, "invoke", "add", "", json!(3), 1),
            (2, "info", "add", "", json!(3), 3),
            (3, "invoke", "read", "", Null, 10),
            (3, "ok", "read", "", json!([1, 2]), 11),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
        assert_eq!(v.details["recovered_indeterminate"], 1);
    }

    #[test]
    fn lost_add_is_caught() {
        let hist = h(&[
            (0, "invoke", "add", "", json!(1), 1),
            (0, "ok", "add", "", json!(1), 2),
            (0, "invoke", "add", "", json!(2), 3),
            (0, "ok", "add", "", json!(2), 4),
            (3, "invoke", "read", "", Null, 10),
            (3, "ok", "read", "", json!([2]), 11),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["lost"], json!([1]));
    }

    #[test]
    fn phantom_and_failed_add_are_caught() {
        let hist = h(&[
            (0, "invoke", "add", "", json!(1), 1),
            (0, "fail", "add", "", json!(1), 2),
            (3, "invoke", "read", "", Null, 10),
            (3, "ok", "read", "", json!([1, 42]), 11),
        ]);
        let v = check(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["phantom"], json!([1, 42]));
    }

    #[test]
    fn no_final_read_is_unknown() {
        let hist = h(&[
            (0, "invoke", "add", "", json!(1), 1),
            (0, "ok", "add", "", json!(1), 2),
        ]);
        assert_eq!(check(&hist).valid, Validity::Unknown);
    }
}
