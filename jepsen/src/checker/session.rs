//! Sessions and ephemerals (P11).
//!
//! Owns three checks. After healing, on every server: no ephemeral owned by a session that is
//! known dead — closed with an ok reply before the read, or abandoned (socket dropped without
//! closeSession) longer ago than its timeout plus `bound` — a leak; and every acknowledged
//! ephemeral of a session confirmed alive at the end is present — a loss. Expiry timeliness:
//! an abandoned session's ephemeral must not be *seen present* later than abandon + timeout +
//! `bound`. The observer's own delays (it may be cut off while a server is down) can only
//! make it see "gone" late, never "present" late, so only the last sighting is judged. Never
//! treats a session whose close was indeterminate as dead.
//!
//! Encoding: "create-ephemeral" key=path, invoke value {"session": id}; "close" and
//! "abandon" value {"session": id} ("abandon" also "timeout_ms"); "gone" ok value
//! {"session": id, "path": p, "last_present": ns or null}; "alive" ok value {"session": id};
//! "final-ephemerals" ok value {"server": name, "ephemerals": {path: owner}}.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

pub fn check(history: &[Op], bound_ms: u64) -> Verdict {
    let mut created: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut closed: BTreeMap<i64, u64> = BTreeMap::new(); // sid -> close completion time
    let mut abandoned: BTreeMap<i64, (u64, u64)> = BTreeMap::new(); // sid -> (time ns, timeout ms)
    let mut last_present: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut alive = BTreeSet::new();
    let mut finals: Vec<(String, u64, BTreeMap<String, i64>)> = Vec::new();
    for p in pairs(history) {
        if p.outcome() != OpType::Ok {
            continue;
        }
        let c = p.complete.unwrap();
        let sid = p.invoke.value["session"]
            .as_i64()
            .or_else(|| c.value["session"].as_i64());
        match (p.invoke.f.as_str(), sid) {
            ("create-ephemeral", Some(s)) => {
                created
                    .entry(s)
                    .or_default()
                    .insert(p.invoke.key.clone().unwrap_or_default());
            }
            ("close", Some(s)) => {
                closed.insert(s, c.time);
            }
            ("abandon", Some(s)) => {
                let t = p.invoke.value["timeout_ms"].as_u64().unwrap_or(0);
                abandoned.insert(s, (c.time, t));
            }
            ("gone", Some(s)) => {
                let path = c.value["path"].as_str().unwrap_or_default().to_string();
                if let Some(t) = c.value["last_present"].as_u64() {
                    last_present.insert((s, path), t);
                }
            }
            ("alive", Some(s)) => {
                alive.insert(s);
            }
            ("final-ephemerals", _) => {
                let server = c.value["server"].as_str().unwrap_or("?").to_string();
                let map = c.value["ephemerals"].as_object().map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                        .collect()
                });
                finals.push((server, p.invoke.time, map.unwrap_or_default()));
            }
            _ => {}
        }
    }
    let mut leaked = Vec::new();
    let mut lost = Vec::new();
    let limit = |t0: u64, timeout_ms: u64| t0 + (timeout_ms + bound_ms) * 1_000_000;
    for (server, read_at, eph) in &finals {
        for (path, owner) in eph {
            let closed_before = closed.get(owner).is_some_and(|&t| t < *read_at);
            let expired_before = abandoned
                .get(owner)
                .is_some_and(|&(t0, to)| limit(t0, to) < *read_at);
            if closed_before || expired_before {
                leaked.push(json!({"server": server, "path": path, "owner": owner}));
            }
        }
        for s in &alive {
            for path in created.get(s).into_iter().flatten() {
                if eph.get(path) != Some(s) {
                    lost.push(json!({"server": server, "path": path, "owner": s}));
                }
            }
        }
    }
    let mut late = Vec::new();
    for (s, (t0, timeout_ms)) in &abandoned {
        for path in created.get(s).into_iter().flatten() {
            if let Some(&t) = last_present.get(&(*s, path.clone())) {
                if t > limit(*t0, *timeout_ms) {
                    late.push(json!({"session": s, "path": path, "present_after_ms": (t - t0) / 1_000_000}));
                }
            }
        }
    }
    let valid = if finals.is_empty() {
        Validity::Unknown
    } else if leaked.is_empty() && lost.is_empty() && late.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    Verdict::new(
        "sessions",
        "P11",
        valid,
        json!({"servers_read": finals.len(), "sessions_alive": alive.len(), "sessions_closed": closed.len(),
               "sessions_abandoned": abandoned.len(), "leaked": leaked, "lost": lost, "late_expiry": late}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value::Null;

    const MS: u64 = 1_000_000;

    fn good() -> Vec<Op> {
        h(&[
            (
                0,
                "invoke",
                "create-ephemeral",
                "/e/a",
                json!({"session": 10}),
                1,
            ),
            (0, "ok", "create-ephemeral", "/e/a", Null, 2),
            (
                1,
                "invoke",
                "create-ephemeral",
                "/e/b",
                json!({"session": 11}),
                1,
            ),
            (1, "ok", "create-ephemeral", "/e/b", Null, 2),
            (
                2,
                "invoke",
                "create-ephemeral",
                "/e/c",
                json!({"session": 12}),
                1,
            ),
            (2, "ok", "create-ephemeral", "/e/c", Null, 2),
            (1, "invoke", "close", "", json!({"session": 11}), 3),
            (1, "ok", "close", "", Null, 4),
            (
                2,
                "invoke",
                "abandon",
                "",
                json!({"session": 12, "timeout_ms": 4000}),
                5 * MS,
            ),
            (2, "ok", "abandon", "", Null, 5 * MS),
            (9, "invoke", "gone", "", Null, 4000 * MS),
            (
                9,
                "ok",
                "gone",
                "",
                json!({"session": 12, "path": "/e/c", "last_present": 3000 * MS}),
                4100 * MS,
            ),
            (0, "invoke", "alive", "", json!({"session": 10}), 9000 * MS),
            (0, "ok", "alive", "", Null, 9001 * MS),
            (8, "invoke", "final-ephemerals", "", Null, 9002 * MS),
            (
                8,
                "ok",
                "final-ephemerals",
                "",
                json!({"server": "n1", "ephemerals": {"/e/a": 10}}),
                9003 * MS,
            ),
            (8, "invoke", "final-ephemerals", "", Null, 9002 * MS),
            (
                8,
                "ok",
                "final-ephemerals",
                "",
                json!({"server": "n2", "ephemerals": {"/e/a": 10}}),
                9003 * MS,
            ),
        ])
    }

    #[test]
    fn good_sessions_are_valid() {
        let v = check(&good(), 2000);
        assert_eq!(v.valid, Validity::Valid, "{v:?}");
    }

    #[test]
    fn leaked_ephemeral_of_closed_session_is_caught() {
        let mut hist = good();
        hist[17].value = json!({"server": "n2", "ephemerals": {"/e/a": 10, "/e/b": 11}});
        let v = check(&hist, 2000);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["leaked"][0]["server"], "n2");
    }

    #[test]
    fn lost_ephemeral_of_live_session_is_caught() {
        let mut hist = good();
        hist[15].value = json!({"server": "n1", "ephemerals": {}});
        assert_eq!(check(&hist, 2000).valid, Validity::Invalid);
    }

    #[test]
    fn late_expiry_is_caught() {
        // Seen present 8995 ms after abandon; timeout 4000 + bound 2000.
        let mut hist = good();
        hist[11].value = json!({"session": 12, "path": "/e/c", "last_present": 9000 * MS});
        assert_eq!(check(&hist, 2000).valid, Validity::Invalid);
        // A late "gone" alone (observer was cut off) proves nothing.
        let mut hist = good();
        hist[11].time = 9000 * MS;
        assert_eq!(check(&hist, 2000).valid, Validity::Valid);
    }

    #[test]
    fn never_expired_abandoned_session_is_a_leak() {
        let mut hist = good();
        hist[15].value = json!({"server": "n1", "ephemerals": {"/e/a": 10, "/e/c": 12}});
        assert_eq!(check(&hist, 2000).valid, Validity::Invalid);
        // But not if the final read came before the expiry limit.
        let mut hist = good();
        hist[15].value = json!({"server": "n1", "ephemerals": {"/e/a": 10, "/e/c": 12}});
        assert_eq!(check(&hist, 9000).valid, Validity::Valid);
    }

    #[test]
    fn indeterminate_close_is_not_dead() {
        let mut hist = good();
        hist[7].kind = OpType::Info;
        hist[17].value = json!({"server": "n2", "ephemerals": {"/e/a": 10, "/e/b": 11}});
        assert_eq!(check(&hist, 2000).valid, Validity::Valid);
    }
}
