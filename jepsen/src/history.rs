//! The history model: what every client and the nemesis did, in the order the harness saw it.
//!
//! Owns `Op` (one invoke or completion event), `OpType` (Jepsen's invoke/ok/fail/info), the
//! JSON-lines writer and reader, and `pairs`, which matches each invocation with its
//! completion. Never interprets values: each checker reads the fields its workload writes.
//! An `info` completion (timeout, connection loss) means "may or may not have happened", and
//! an invocation without any completion is treated the same way.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The process number the nemesis uses for its own events.
pub const NEMESIS: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    /// Definitely happened, with the given result.
    Ok,
    /// Definitely did not happen (ZooKeeper returned an error code that means "not applied").
    Fail,
    /// Indeterminate: timeout or connection loss. May have happened.
    Info,
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Logical client (a fresh process number after an `info`, as in Jepsen), or `NEMESIS`.
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function: "read", "write", "cas", "add", "create-seq", ... (workload-specific).
    pub f: String,
    /// The znode or logical key the op is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    /// Nanoseconds since the start of the run.
    pub time: u64,
    /// The zxid ZooKeeper reported for this op (a write's mzxid/czxid), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Session id of the client that ran the op (worker ops' completions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<i64>,
    /// The newest zxid in a reply header that session had seen when the op completed (the
    /// client's lastZxidSeen; for reads that is the serving server's last zxid). Worker ops'
    /// ok/fail completions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<i64>,
}

impl Op {
    pub fn new(
        process: i64,
        kind: OpType,
        f: &str,
        key: Option<&str>,
        value: Value,
        time: u64,
    ) -> Op {
        Op {
            process,
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time,
            zxid: None,
            error: None,
            session: None,
            seen: None,
        }
    }

    pub fn with_zxid(mut self, zxid: i64) -> Op {
        self.zxid = Some(zxid);
        self
    }

    pub fn with_error(mut self, e: impl Into<String>) -> Op {
        self.error = Some(e.into());
        self
    }
}

/// An invocation and its completion (`None`: never completed, i.e. indeterminate).
#[derive(Debug, Clone)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    pub complete: Option<&'a Op>,
}

impl<'a> Pair<'a> {
    /// The completion type, with a missing completion counted as `Info`.
    pub fn outcome(&self) -> OpType {
        self.complete.map(|c| c.kind).unwrap_or(OpType::Info)
    }
    /// Completion time; `u64::MAX` when the op may still be in flight forever.
    pub fn end(&self) -> u64 {
        match self.complete {
            Some(c) if c.kind != OpType::Info => c.time,
            _ => u64::MAX,
        }
    }
}

/// Matches each client invocation with the next completion of the same process and
/// function. Nemesis events and stray completions are skipped.
pub fn pairs(history: &[Op]) -> Vec<Pair<'_>> {
    let mut open: std::collections::HashMap<i64, usize> = Default::default();
    let mut out: Vec<Pair<'_>> = Vec::new();
    for op in history.iter().filter(|o| o.process != NEMESIS) {
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process, out.len());
                out.push(Pair {
                    invoke: op,
                    complete: None,
                });
            }
            _ => {
                // Only a completion of the same function: a watcher's notifications are
                // completions without an invocation, recorded while its own sync may be
                // in flight.
                if let Some(&i) = open.get(&op.process) {
                    if out[i].invoke.f == op.f {
                        open.remove(&op.process);
                        out[i].complete = Some(op);
                    }
                }
            }
        }
    }
    out
}

/// Writes one JSON object per line.
pub fn write_jsonl<W: Write>(mut w: W, history: &[Op]) -> std::io::Result<()> {
    for op in history {
        serde_json::to_writer(&mut w, op)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Reads what `write_jsonl` wrote; blank lines are skipped.
pub fn read_jsonl<R: BufRead>(r: R) -> std::io::Result<Vec<Op>> {
    let mut out = Vec::new();
    for line in r.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(std::io::Error::other)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonl_round_trip_and_pairing() {
        let h = vec![
            Op::new(0, OpType::Invoke, "write", Some("k"), json!(3), 1),
            Op::new(1, OpType::Invoke, "read", Some("k"), Value::Null, 2),
            Op::new(NEMESIS, OpType::Info, "kill", None, json!("n1"), 3),
            Op::new(0, OpType::Ok, "write", Some("k"), json!(3), 4).with_zxid(0x100000001),
            Op::new(1, OpType::Info, "read", Some("k"), Value::Null, 5).with_error("timeout"),
            Op::new(2, OpType::Invoke, "read", Some("k"), Value::Null, 6),
        ];
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &h).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 6);
        assert!(text.contains("\"type\":\"ok\""));
        let back = read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, h);
        let p = pairs(&back);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].outcome(), OpType::Ok);
        assert_eq!(p[0].end(), 4);
        assert_eq!(p[1].outcome(), OpType::Info);
        assert_eq!(p[1].end(), u64::MAX);
        assert!(p[2].complete.is_none());
        assert_eq!(p[2].outcome(), OpType::Info);
    }

    #[test]
    fn a_notification_between_invoke_and_completion_is_not_the_completion() {
        let h = vec![
            Op::new(5, OpType::Invoke, "watch-end", Some("k"), Value::Null, 1),
            Op::new(5, OpType::Ok, "event", Some("k"), json!({"type": 3}), 2),
            Op::new(5, OpType::Ok, "watch-end", Some("k"), json!({"zxid": 9}), 3),
        ];
        let p = pairs(&h);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].complete.unwrap().value, json!({"zxid": 9}));
    }
}
