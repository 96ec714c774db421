//! The invariant checker: the Zab TLA+ properties, evaluated against what the simulated
//! servers actually did. See the crate header for the list.
//!
//! Owns the global delivered sequence (the longest sequence any server has applied), the
//! zxid → payload map of every logged txn, the established leader of each epoch and the
//! acknowledged client writes. Never changes the simulation: it only observes.

use std::collections::{BTreeMap, HashMap};

use zkd_zab::{zxid_epoch, ServerId, Zxid};

use crate::node::{Node, Rsm};

/// A broken invariant, with enough words to find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default)]
pub struct Checker {
    ledger: Vec<(Zxid, Vec<u8>)>,
    payloads: HashMap<Zxid, Vec<u8>>,
    leaders: BTreeMap<u32, ServerId>,
    acked: BTreeMap<Zxid, Vec<u8>>,
    violation: Option<(u64, Violation)>,
    /// Highest zxid any established leader has committed so far.
    max_committed: Zxid,
}

fn err<T>(s: String) -> Result<T, Violation> {
    Err(Violation(s))
}

impl Checker {
    pub fn fail(&mut self, now: u64, v: Violation) {
        if self.violation.is_none() {
            self.violation = Some((now, v));
        }
    }

    pub fn failed(&self) -> bool {
        self.violation.is_some()
    }

    pub fn violation(&self) -> Option<Violation> {
        self.violation
            .as_ref()
            .map(|(t, v)| Violation(format!("at time {t}: {v}")))
    }

    pub fn acked(&self) -> &BTreeMap<Zxid, Vec<u8>> {
        &self.acked
    }

    /// The global delivered sequence.
    pub fn ledger(&self) -> &[(Zxid, Vec<u8>)] {
        &self.ledger
    }

    /// Records a client acknowledgement; true if new.
    pub fn ack(&mut self, zxid: Zxid, payload: &[u8]) -> bool {
        self.acked.insert(zxid, payload.to_vec()).is_none()
    }

    /// ZxidUniqueness: a zxid names one txn, on every server, forever.
    pub fn on_append(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), Violation> {
        match self.payloads.get(&zxid) {
            Some(p) if p != payload => err(format!(
                "ZxidUniqueness: zxid {zxid:#x} logged with two different txns ({:?} and {:?})",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(payload)
            )),
            Some(_) => Ok(()),
            None => {
                self.payloads.insert(zxid, payload.to_vec());
                Ok(())
            }
        }
    }

    /// Notes how far established leaders have committed (for Integrity).
    pub fn note_commits(&mut self, nodes: &BTreeMap<ServerId, Node>) {
        for n in nodes.values() {
            if let Some(z) = n.zab.as_ref().filter(|z| z.established_epoch().is_some()) {
                self.max_committed = self.max_committed.max(z.committed_zxid());
            }
        }
    }

    /// Integrity, PrefixConsistency, Agreement, TotalOrder for the txn just applied by `id`.
    pub fn on_apply(&mut self, id: ServerId, rsm: &Rsm) -> Result<(), Violation> {
        let i = rsm.entries.len() - 1;
        let e = &rsm.entries[i];
        if e.0 > self.max_committed {
            return err(format!(
                "Integrity: server {id} delivered {:#x} but no leader has committed past {:#x}",
                e.0, self.max_committed
            ));
        }
        if i > 0 && rsm.entries[i - 1].0 >= e.0 {
            return err(format!(
                "TotalOrder: server {id} delivered {:#x} after {:#x}",
                e.0,
                rsm.entries[i - 1].0
            ));
        }
        match self.ledger.get(i) {
            Some(g) if g != e => err(format!(
                "Agreement/PrefixConsistency: server {id} delivered {:#x} {:?} as txn #{i}, \
                 others delivered {:#x} {:?}",
                e.0,
                String::from_utf8_lossy(&e.1),
                g.0,
                String::from_utf8_lossy(&g.1)
            )),
            Some(_) => Ok(()),
            None if i == self.ledger.len() => {
                self.ledger.push(e.clone());
                Ok(())
            }
            None => err(format!("server {id} delivered past the global sequence")),
        }
    }

    fn is_prefix_of_ledger(&self, rsm: &Rsm) -> bool {
        rsm.entries.len() <= self.ledger.len()
            && rsm.entries.iter().zip(&self.ledger).all(|(a, b)| a == b)
    }

    /// CommittedLogMonotonicity across a SNAP: the new state extends the old one and agrees
    /// with what everyone delivered.
    pub fn on_snapshot(&mut self, id: ServerId, old: &Rsm, new: &Rsm) -> Result<(), Violation> {
        if new.entries.len() < old.entries.len()
            || !old.entries.iter().zip(&new.entries).all(|(a, b)| a == b)
        {
            return err(format!(
                "CommittedLogMonotonicity: SNAP at {:#x} would replace server {id}'s delivered \
                 txns up to {:#x} with a non-extension",
                new.last_zxid(),
                old.last_zxid()
            ));
        }
        if !self.is_prefix_of_ledger(new) {
            return err(format!(
                "Agreement: SNAP at {:#x} sent to server {id} disagrees with delivered txns",
                new.last_zxid()
            ));
        }
        Ok(())
    }

    /// A restarted server's state (its own snapshot) must be a prefix of what was delivered.
    pub fn on_restart(&mut self, id: ServerId, rsm: &Rsm) -> Result<(), Violation> {
        if self.is_prefix_of_ledger(rsm) {
            Ok(())
        } else {
            err(format!(
                "CommittedLogMonotonicity: server {id} restarted from a state that is not a \
                 prefix of the delivered txns"
            ))
        }
    }

    /// LeaderUniqueness and PrimaryIntegrity, evaluated over all live servers.
    pub fn check_step(&mut self, now: u64, nodes: &BTreeMap<ServerId, Node>) {
        for (id, n) in nodes {
            let Some(z) = &n.zab else { continue };
            let Some(e) = z.established_epoch() else {
                continue;
            };
            let first = *self.leaders.entry(e).or_insert(*id);
            if first != *id {
                self.fail(
                    now,
                    Violation(format!(
                        "LeaderUniqueness: servers {first} and {id} both established epoch {e}"
                    )),
                );
            }
            let older = self.ledger.partition_point(|x| zxid_epoch(x.0) < e);
            if n.rsm.entries.len() < older {
                self.fail(
                    now,
                    Violation(format!(
                        "PrimaryIntegrity: leader {id} of epoch {e} has delivered {} txns but \
                         {older} from earlier epochs were delivered elsewhere",
                        n.rsm.entries.len()
                    )),
                );
            }
        }
    }

    /// After healing: every server delivered exactly the global sequence, which holds
    /// every acknowledged write.
    pub fn check_final(&self, nodes: &BTreeMap<ServerId, Node>) -> Result<(), Violation> {
        for (id, n) in nodes {
            if n.rsm.entries.len() != self.ledger.len() || !self.is_prefix_of_ledger(&n.rsm) {
                return err(format!(
                    "Convergence: server {id} delivered {} txns, the ensemble delivered {}",
                    n.rsm.entries.len(),
                    self.ledger.len()
                ));
            }
        }
        for (z, p) in &self.acked {
            let found = self
                .ledger
                .binary_search_by_key(z, |e| e.0)
                .is_ok_and(|i| &self.ledger[i].1 == p);
            if !found {
                return err(format!(
                    "Durability: acknowledged write {:?} at {z:#x} is missing after healing",
                    String::from_utf8_lossy(p)
                ));
            }
        }
        Ok(())
    }
}
