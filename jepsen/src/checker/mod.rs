//! Checkers: each one turns a history into a verdict about one promise ZooKeeper makes.
//!
//! Owns the `Verdict` shape and the checker registry. Checkers are pure functions of the
//! history: they never talk to a cluster, never read the clock (except the linearizability
//! search's own deadline) and never mutate the history. Indeterminate (`info`) operations are
//! always treated as possibly applied.

use serde::Serialize;
use serde_json::Value;

pub mod convergence;
pub mod linear;
pub mod multi;
pub mod sequential;
pub mod session;
pub mod set;
pub mod watch;
pub mod zxid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    /// The checker could not decide (search budget exhausted, not enough data).
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: Validity,
    /// Which promise (REFERENCE.md P-number) this checker tests.
    pub promise: &'static str,
    /// Counts and, when invalid, the offending ops.
    pub details: Value,
}

impl Verdict {
    pub fn new(checker: &str, promise: &'static str, valid: Validity, details: Value) -> Verdict {
        Verdict {
            checker: checker.to_string(),
            valid,
            promise,
            details,
        }
    }
    pub fn is_valid(&self) -> bool {
        self.valid == Validity::Valid
    }
}

/// Combines validities: any Invalid wins, then any Unknown.
pub fn merge(vs: impl IntoIterator<Item = Validity>) -> Validity {
    let mut out = Validity::Valid;
    for v in vs {
        match v {
            Validity::Invalid => return Validity::Invalid,
            Validity::Unknown => out = Validity::Unknown,
            Validity::Valid => {}
        }
    }
    out
}

/// Parses a nanosecond offset helper used by tests.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::history::{Op, OpType};
    use serde_json::Value;

    /// Builds a history from (process, type, f, key, value, time) rows.
    pub fn h(rows: &[(i64, &str, &str, &str, Value, u64)]) -> Vec<Op> {
        rows.iter()
            .map(|(p, t, f, k, v, time)| {
                let kind = match *t {
                    "invoke" => OpType::Invoke,
                    "ok" => OpType::Ok,
                    "fail" => OpType::Fail,
                    "info" => OpType::Info,
                    _ => panic!("bad type {t}"),
                };
                let key = if k.is_empty() { None } else { Some(*k) };
                Op::new(*p, kind, f, key, v.clone(), *time)
            })
            .collect()
    }
}
