//! Convergence (P14): after healing and quiescence, all servers serve the same tree at the
//! same last zxid.
//!
//! Owns the comparison of "final-state" ops (ok value {"server": s, "digest": hex, "zxid": z}),
//! one per server, read by a client connected to that server alone. Never computes digests
//! itself: the workload hashes what each server returns.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op]) -> Verdict {
    let mut states = BTreeMap::new();
    let mut unreachable = Vec::new();
    for p in pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == "final-state")
    {
        let server = p.invoke.value["server"].as_str().unwrap_or("?").to_string();
        if p.outcome() == OpType::Ok {
            let v = &p.complete.unwrap().value;
            states.insert(
                server,
                (
                    v["digest"].as_str().unwrap_or("").to_string(),
                    v["zxid"].as_i64().unwrap_or(-1),
                ),
            );
        } else {
            unreachable.push(server);
        }
    }
    let distinct: std::collections::BTreeSet<_> = states.values().collect();
    let valid = if !unreachable.is_empty() || states.is_empty() {
        // A server that cannot answer after healing is a P9 problem; say so, but we cannot
        // judge its tree.
        if distinct.len() > 1 {
            Validity::Invalid
        } else {
            Validity::Unknown
        }
    } else if distinct.len() == 1 {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Verdict::new(
        "convergence",
        "P14",
        valid,
        json!({"servers": states, "unreachable": unreachable}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value::Null;

    fn fs(server: &str, digest: &str, zxid: i64) -> Vec<Op> {
        h(&[
            (0, "invoke", "final-state", "", json!({"server": server}), 1),
            (
                0,
                "ok",
                "final-state",
                "",
                json!({"server": server, "digest": digest, "zxid": zxid}),
                2,
            ),
        ])
    }

    #[test]
    fn equal_states_converge() {
        let hist: Vec<Op> = [fs("n1", "ab", 7), fs("n2", "ab", 7), fs("n3", "ab", 7)].concat();
        assert_eq!(check(&hist).valid, Validity::Valid);
    }

    #[test]
    fn divergent_digest_or_zxid_is_caught() {
        let hist: Vec<Op> = [fs("n1", "ab", 7), fs("n2", "ac", 7)].concat();
        assert_eq!(check(&hist).valid, Validity::Invalid);
        let hist: Vec<Op> = [fs("n1", "ab", 7), fs("n2", "ab", 6)].concat();
        assert_eq!(check(&hist).valid, Validity::Invalid);
    }

    #[test]
    fn unreachable_server_is_unknown() {
        let mut hist: Vec<Op> = fs("n1", "ab", 7);
        hist.extend(h(&[
            (1, "invoke", "final-state", "", json!({"server": "n2"}), 1),
            (1, "info", "final-state", "", Null, 2),
        ]));
        assert_eq!(check(&hist).valid, Validity::Unknown);
    }
}
