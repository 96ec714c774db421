//! Zxid order: linearizable writes (P1), a session's monotonic view (P4) and no rollback at
//! the end of a run (P8), judged from the zxids replies carried.
//!
//! Owns three checks over fields the workloads record: an update's own zxid (`Op.zxid` of an
//! ok "write", "cas", "create-seq" or "add": the mzxid/czxid its reply's stat carried), the
//! session and newest reply-header zxid of each worker op's ok/fail completion (`Op.session`,
//! `Op.seen`), and each server's last zxid in the "final-state" ops. Reads' `Op.zxid` is the
//! znode's mzxid, not an update's zxid, so reads never count as updates here. Indeterminate
//! ops carry no zxids and are ignored: only what a client was told is judged.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

/// Completions of these functions, when ok and with a zxid, are updates with that zxid.
pub const UPDATES: &[&str] = &["write", "cas", "create-seq", "add"];

const SHOW: usize = 10;

fn updates(history: &[Op]) -> Vec<(u64, u64, i64, &Op)> {
    pairs(history)
        .into_iter()
        .filter(|p| UPDATES.contains(&p.invoke.f.as_str()) && p.outcome() == OpType::Ok)
        .filter_map(|p| {
            let c = p.complete?;
            Some((p.invoke.time, c.time, c.zxid.filter(|z| *z > 0)?, c))
        })
        .collect()
}

/// P1: every acknowledged update has its own zxid, and if update A returned before update B
/// was invoked, zxid(A) < zxid(B). Unknown when there are no acknowledged updates with zxids.
pub fn linearizable_writes(history: &[Op]) -> Verdict {
    let ups = updates(history);
    let mut dup = Vec::new();
    let mut by_zxid: BTreeMap<i64, &Op> = BTreeMap::new();
    for (_, _, z, op) in &ups {
        if let Some(other) = by_zxid.insert(*z, op) {
            if dup.len() < SHOW {
                dup.push(json!({"zxid": z, "ops": [other, op]}));
            }
        }
    }
    // Sweep the updates in invocation order; `done` walks them in completion order and keeps
    // the highest zxid of those completed strictly before the current invocation.
    let mut by_end: Vec<_> = ups.iter().collect();
    by_end.sort_by_key(|u| u.1);
    let mut by_start: Vec<_> = ups.iter().collect();
    by_start.sort_by_key(|u| u.0);
    let mut done = 0;
    let mut max_before: Option<&(u64, u64, i64, &Op)> = None;
    let mut reordered = Vec::new();
    let mut n_reordered = 0;
    for b in by_start {
        while done < by_end.len() && by_end[done].1 < b.0 {
            if max_before.is_none_or(|m| by_end[done].2 > m.2) {
                max_before = Some(by_end[done]);
            }
            done += 1;
        }
        if let Some(a) = max_before {
            if a.2 >= b.2 && !std::ptr::eq(a.3, b.3) {
                n_reordered += 1;
                if reordered.len() < SHOW {
                    reordered.push(json!({"earlier": a.3, "earlier_invoked": a.0,
                        "later": b.3, "later_invoked": b.0}));
                }
            }
        }
    }
    let valid = if !dup.is_empty() || n_reordered > 0 {
        Validity::Invalid
    } else if ups.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict::new(
        "linearizable-writes",
        "P1",
        valid,
        json!({"updates": ups.len(), "duplicate_zxids": dup, "reordered": n_reordered,
               "examples": reordered}),
    )
}

/// P4: within one session, the zxid a client observes never decreases in completion order.
/// An op's observation is its reply's `seen` zxid; an ok op's own zxid (a write's, or a
/// read's mzxid) is observed too, so a later reply older than data already read is caught.
/// Unknown when no completion carries a session and `seen` zxid.
pub fn session_monotonic(history: &[Op]) -> Verdict {
    let mut max: BTreeMap<i64, (i64, &Op)> = BTreeMap::new();
    let mut checked = 0;
    let mut bad = Vec::new();
    let mut n_bad = 0;
    for op in history.iter().filter(|o| o.kind != OpType::Invoke) {
        let (Some(s), Some(seen)) = (op.session, op.seen) else {
            continue;
        };
        checked += 1;
        if let Some((m, at)) = max.get(&s) {
            if seen < *m {
                n_bad += 1;
                if bad.len() < SHOW {
                    bad.push(json!({"session": s, "seen_before": m, "at": at, "then": op}));
                }
            }
        }
        let own = if op.kind == OpType::Ok {
            op.zxid.unwrap_or(0)
        } else {
            0
        };
        let now = seen.max(own);
        let e = max.entry(s).or_insert((now, op));
        if now > e.0 {
            *e = (now, op);
        }
    }
    let valid = if n_bad > 0 {
        Validity::Invalid
    } else if checked == 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict::new(
        "session-monotonic",
        "P4",
        valid,
        json!({"sessions": max.len(), "completions": checked, "decreases": n_bad,
               "examples": bad}),
    )
}

/// P8 at the end of the run: every server that answered a "final-state" read (after healing
/// and quiescence) is at or past the highest zxid any client was told about (an ok update's
/// zxid or any reply's `seen`). Servers that did not answer are convergence's business.
/// Unknown when no server answered or nothing was observed.
pub fn no_rollback(history: &[Op]) -> Verdict {
    let mut top: Option<(i64, &Op)> = None;
    for op in history.iter().filter(|o| o.kind != OpType::Invoke) {
        let own = if op.kind == OpType::Ok && UPDATES.contains(&op.f.as_str()) {
            op.zxid
        } else {
            None
        };
        for z in [own, op.seen].into_iter().flatten() {
            if top.is_none_or(|t| z > t.0) {
                top = Some((z, op));
            }
        }
    }
    let finals: Vec<(String, i64)> = pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == "final-state" && p.outcome() == OpType::Ok)
        .filter_map(|p| {
            let v = &p.complete?.value;
            Some((v["server"].as_str()?.to_string(), v["zxid"].as_i64()?))
        })
        .collect();
    let behind: Vec<_> = match top {
        Some((z, _)) => finals.iter().filter(|f| f.1 < z).collect(),
        None => Vec::new(),
    };
    let valid = if !behind.is_empty() {
        Validity::Invalid
    } else if finals.is_empty() || top.is_none() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    Verdict::new(
        "no-rollback",
        "P8",
        valid,
        json!({"highest_observed": top.map(|t| t.0), "observed_in": top.map(|t| t.1),
               "finals": finals, "behind": behind}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testutil::h;
    use serde_json::Value;

    fn w(
        rows: &[(i64, &str, &str, u64)],
        zxids: &[(usize, i64)],
        seen: &[(usize, i64, i64)],
    ) -> Vec<Op> {
        let rows: Vec<_> = rows
            .iter()
            .map(|(p, t, f, time)| (*p, *t, *f, "k", Value::Null, *time))
            .collect();
        let mut hist = h(&rows);
        for (i, z) in zxids {
            hist[*i].zxid = Some(*z);
        }
        for (i, s, z) in seen {
            hist[*i].session = Some(*s);
            hist[*i].seen = Some(*z);
        }
        hist
    }

    #[test]
    fn p1_accepts_ordered_and_concurrent_writes() {
        // 0 then 1 sequentially; 2 concurrent with 1 may have either order.
        let hist = w(
            &[
                (0, "invoke", "write", 1),
                (0, "ok", "write", 2),
                (1, "invoke", "cas", 3),
                (2, "invoke", "write", 4),
                (1, "ok", "cas", 5),
                (2, "ok", "write", 6),
                (3, "invoke", "read", 7),
                (3, "ok", "read", 8),
            ],
            &[(1, 10), (4, 30), (5, 20), (7, 5)],
            &[],
        );
        let v = linearizable_writes(&hist);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["updates"], 3);
    }

    #[test]
    fn p1_catches_a_write_ordered_before_one_that_returned_earlier() {
        let hist = w(
            &[
                (0, "invoke", "write", 1),
                (0, "ok", "write", 2),
                (1, "invoke", "write", 3),
                (1, "ok", "write", 4),
            ],
            &[(1, 20), (3, 10)],
            &[],
        );
        let v = linearizable_writes(&hist);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["reordered"], 1);
    }

    #[test]
    fn p1_catches_two_updates_with_one_zxid_and_knows_when_it_has_no_data() {
        let hist = w(
            &[
                (0, "invoke", "add", 1),
                (1, "invoke", "add", 2),
                (0, "ok", "add", 3),
                (1, "ok", "add", 4),
            ],
            &[(2, 7), (3, 7)],
            &[],
        );
        assert_eq!(linearizable_writes(&hist).valid, Validity::Invalid);
        let none = w(
            &[(0, "invoke", "write", 1), (0, "info", "write", 2)],
            &[],
            &[],
        );
        assert_eq!(linearizable_writes(&none).valid, Validity::Unknown);
    }

    #[test]
    fn p4_accepts_rising_views_per_session_and_ignores_other_sessions() {
        let hist = w(
            &[
                (0, "invoke", "read", 1),
                (0, "ok", "read", 2),
                (1, "invoke", "read", 3),
                (1, "ok", "read", 4),
                (0, "invoke", "read", 5),
                (0, "fail", "read", 6),
            ],
            &[(1, 9)],
            // Session 2 lags behind session 1: allowed (P5 permits stale cross-client reads).
            &[(1, 1, 10), (3, 2, 4), (5, 1, 10)],
        );
        let v = session_monotonic(&hist);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["completions"], 3);
    }

    #[test]
    fn p4_catches_a_session_going_back() {
        let hist = w(
            &[
                (0, "invoke", "write", 1),
                (0, "ok", "write", 2),
                (0, "invoke", "read", 3),
                (0, "ok", "read", 4),
            ],
            &[(1, 12)],
            &[(1, 1, 12), (3, 1, 11)],
        );
        assert_eq!(session_monotonic(&hist).valid, Validity::Invalid);
        // Data already read (mzxid 15) counts as observed: a later reply at 14 steps back.
        let mut hist2 = w(
            &[
                (0, "invoke", "read", 1),
                (0, "ok", "read", 2),
                (0, "invoke", "read", 3),
                (0, "ok", "read", 4),
            ],
            &[(1, 15)],
            &[(1, 1, 13), (3, 1, 14)],
        );
        assert_eq!(session_monotonic(&hist2).valid, Validity::Invalid);
        hist2.iter_mut().for_each(|o| o.seen = None);
        assert_eq!(session_monotonic(&hist2).valid, Validity::Unknown);
    }

    fn finals(zs: &[(&str, i64)]) -> Vec<Op> {
        let mut out = Vec::new();
        for (i, (s, z)) in zs.iter().enumerate() {
            let p = 4_000_000 + i as i64;
            out.push(Op::new(
                p,
                OpType::Invoke,
                "final-state",
                None,
                json!({"server": s}),
                100,
            ));
            out.push(Op::new(
                p,
                OpType::Ok,
                "final-state",
                None,
                json!({"server": s, "digest": "d", "zxid": z}),
                101,
            ));
        }
        out
    }

    #[test]
    fn p8_every_final_state_includes_what_clients_saw() {
        let mut hist = w(
            &[
                (0, "invoke", "write", 1),
                (0, "ok", "write", 2),
                (1, "invoke", "read", 3),
                (1, "ok", "read", 4),
            ],
            &[(1, 20), (3, 25)],
            &[(1, 1, 20), (3, 2, 22)],
        );
        hist.extend(finals(&[("n1", 30), ("n2", 30)]));
        assert_eq!(no_rollback(&hist).valid, Validity::Valid);
        // A read's mzxid does not count as an update; its reply's seen (22) does.
        let mut bad = hist[..4].to_vec();
        bad.extend(finals(&[("n1", 30), ("n2", 21)]));
        let v = no_rollback(&bad);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["highest_observed"], 22);
        let mut ok = hist[..4].to_vec();
        ok.extend(finals(&[("n1", 22), ("n2", 22)]));
        assert_eq!(no_rollback(&ok).valid, Validity::Valid);
        assert_eq!(no_rollback(&hist[..4]).valid, Validity::Unknown);
    }
}
