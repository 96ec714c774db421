//! Step-by-step tests of the peer: single peers driven message by message with
//! assertions on the exact outputs, and a tiny instant-delivery cluster for whole-protocol
//! behaviour (election, establishment, commit, step-down, epoch exhaustion, observers).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::*;

fn cfg3(id: ServerId) -> Config {
    Config::new(id, vec![1, 2, 3], vec![])
}

fn looking(leader: ServerId, zxid: Zxid, ee: u64, pe: u32) -> Message {
    Message::Notification(Notification {
        state: PeerState::Looking,
        leader,
        zxid,
        election_epoch: ee,
        peer_epoch: pe,
    })
}

fn sends(out: &[Output]) -> Vec<(ServerId, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// Makes server 2 follow server 1 and returns it after FOLLOWERINFO.
fn follower_of_1(restored: Restored) -> Zab {
    let mut z = Zab::new(cfg3(2), restored, 7).unwrap();
    let out = z.ready();
    assert!(out.contains(&Output::RoleChanged {
        role: Role::Looking,
        leader: None,
        serving: false
    }));
    // Server 1 has the higher zxid: 2 adopts its vote, and 3 agrees.
    z.step(1, looking(1, 0x1_0000_0005, 1, 1)).unwrap();
    z.step(3, looking(1, 0x1_0000_0005, 1, 1)).unwrap();
    assert_eq!(
        z.role(),
        Role::Looking,
        "decides only after the finalize wait"
    );
    z.tick();
    assert_eq!(z.role(), Role::Following);
    let out = z.ready();
    assert!(sends(&out).contains(&(
        1,
        Message::FollowerInfo {
            accepted_epoch: 1,
            observer: false
        }
    )));
    z
}

fn restored_epoch1(n: u32) -> Restored {
    Restored {
        accepted_epoch: 1,
        current_epoch: 1,
        applied_zxid: 0,
        log_base: 0,
        log: (1..=n).map(|c| (make_zxid(1, c), vec![c as u8])).collect(),
    }
}

#[test]
fn vote_order_is_epoch_then_zxid_then_id() {
    let mut z = Zab::new(cfg3(3), restored_epoch1(2), 1).unwrap();
    z.ready();
    // Same epoch, higher zxid beats a higher id.
    z.step(1, looking(1, make_zxid(1, 3), 1, 1)).unwrap();
    let out = sends(&z.ready());
    assert!(out
        .iter()
        .all(|(_, m)| matches!(m, Message::Notification(n) if n.leader == 1)));
    // A higher currentEpoch beats a higher zxid.
    z.step(2, looking(2, make_zxid(1, 1), 1, 2)).unwrap();
    let out = sends(&z.ready());
    assert!(out
        .iter()
        .all(|(_, m)| matches!(m, Message::Notification(n) if n.leader == 2)));
}

#[test]
fn acceptedepoch_is_persisted_before_ackepoch() {
    let mut z = follower_of_1(restored_epoch1(3));
    z.step(1, Message::LeaderInfo { epoch: 2 }).unwrap();
    let out = z.ready();
    assert_eq!(
        out,
        vec![
            Output::PersistAcceptedEpoch(2),
            Output::Send {
                to: 1,
                msg: Message::AckEpoch {
                    current_epoch: Some(1),
                    last_zxid: make_zxid(1, 3)
                }
            }
        ]
    );
    assert_eq!(z.current_epoch(), 1, "currentEpoch moves only at NEWLEADER");
}

#[test]
fn leaderinfo_below_accepted_epoch_sends_us_back_to_looking() {
    let mut r = restored_epoch1(1);
    r.accepted_epoch = 5;
    let mut z = Zab::new(cfg3(2), r, 7).unwrap();
    z.step(1, looking(1, make_zxid(1, 9), 1, 1)).unwrap();
    z.step(3, looking(1, make_zxid(1, 9), 1, 1)).unwrap();
    z.tick();
    z.ready();
    assert!(z.step(1, Message::LeaderInfo { epoch: 3 }).is_err());
    assert_eq!(z.role(), Role::Looking);
    assert!(!z.ready().contains(&Output::PersistAcceptedEpoch(3)));
}

#[test]
fn newleader_ack_and_currentepoch_wait_for_fsync() {
    let mut z = follower_of_1(restored_epoch1(1));
    z.step(1, Message::LeaderInfo { epoch: 2 }).unwrap();
    z.ready();
    z.step(
        1,
        Message::Diff {
            zxid: make_zxid(1, 1),
        },
    )
    .unwrap();
    for c in 2..=3 {
        z.step(
            1,
            Message::Proposal {
                zxid: make_zxid(1, c),
                payload: vec![c as u8],
            },
        )
        .unwrap();
    }
    z.step(1, Message::NewLeader { epoch: 2 }).unwrap();
    let out = z.ready();
    assert_eq!(
        out,
        vec![
            Output::Append {
                zxid: make_zxid(1, 2),
                payload: vec![2]
            },
            Output::Append {
                zxid: make_zxid(1, 3),
                payload: vec![3]
            },
        ],
        "no currentEpoch and no ACK before the synced txns are durable (ZK-4643/4646)"
    );
    z.log_synced(make_zxid(1, 2));
    assert!(z.ready().is_empty(), "partially durable is not enough");
    z.log_synced(make_zxid(1, 3));
    assert_eq!(
        z.ready(),
        vec![
            Output::PersistCurrentEpoch(2),
            Output::Send {
                to: 1,
                msg: Message::Ack {
                    zxid: make_zxid(2, 0)
                }
            }
        ]
    );
}

/// Drives 2 through sync with `n` history proposals after DIFF at 0 and acks NEWLEADER.
fn synced_follower(n: u32, commits: u32) -> Zab {
    let mut z = follower_of_1(Restored {
        accepted_epoch: 1,
        current_epoch: 1,
        ..Restored::default()
    });
    z.step(1, Message::LeaderInfo { epoch: 2 }).unwrap();
    z.step(1, Message::Diff { zxid: 0 }).unwrap();
    for c in 1..=n {
        z.step(
            1,
            Message::Proposal {
                zxid: make_zxid(1, c),
                payload: vec![c as u8],
            },
        )
        .unwrap();
        if c <= commits {
            z.step(
                1,
                Message::Commit {
                    zxid: make_zxid(1, c),
                },
            )
            .unwrap();
        }
    }
    z.step(1, Message::NewLeader { epoch: 2 }).unwrap();
    z.log_synced(make_zxid(1, n));
    z.ready();
    z
}

#[test]
fn uptodate_applies_only_what_the_leader_committed() {
    // ZOOKEEPER-3911: the sync stream holds an uncommitted proposal (1,2).
    let mut z = synced_follower(2, 1);
    assert_eq!(
        z.applied_zxid(),
        make_zxid(1, 1),
        "COMMIT during sync applies"
    );
    z.step(
        1,
        Message::UpToDate {
            zxid: make_zxid(1, 1),
        },
    )
    .unwrap();
    let out = z.ready();
    assert!(!out.iter().any(|o| matches!(o, Output::Apply { .. })));
    assert_eq!(z.applied_zxid(), make_zxid(1, 1));
    assert!(z.is_serving());
}

#[test]
fn injected_bug_applies_uncommitted_on_uptodate() {
    let mut c = cfg3(2);
    c.injected_bug = Some(InjectedBug::ApplyUncommittedOnSync);
    let mut z = Zab::new(c, Restored::default(), 1).unwrap();
    z.step(1, looking(1, 9, 1, 0)).unwrap();
    z.step(3, looking(1, 9, 1, 0)).unwrap();
    z.tick();
    z.step(1, Message::LeaderInfo { epoch: 1 }).unwrap();
    z.step(1, Message::Diff { zxid: 0 }).unwrap();
    z.step(
        1,
        Message::Proposal {
            zxid: make_zxid(0, 1),
            payload: vec![1],
        },
    )
    .unwrap();
    z.step(1, Message::NewLeader { epoch: 1 }).unwrap();
    z.log_synced(make_zxid(0, 1));
    z.step(1, Message::UpToDate { zxid: 0 }).unwrap();
    assert_eq!(
        z.applied_zxid(),
        make_zxid(0, 1),
        "the bug knob really is wrong"
    );
}

#[test]
fn commit_right_after_newleader_is_handled() {
    // ZOOKEEPER-4394: PROPOSAL and COMMIT of the new epoch arrive before UPTODATE.
    let mut z = synced_follower(1, 0);
    z.step(
        1,
        Message::Proposal {
            zxid: make_zxid(2, 1),
            payload: vec![21],
        },
    )
    .unwrap();
    z.step(
        1,
        Message::Commit {
            zxid: make_zxid(2, 1),
        },
    )
    .unwrap();
    let out = z.ready();
    let applied: Vec<Zxid> = out
        .iter()
        .filter_map(|o| match o {
            Output::Apply { zxid, .. } => Some(*zxid),
            _ => None,
        })
        .collect();
    assert_eq!(applied, vec![make_zxid(1, 1), make_zxid(2, 1)]);
    z.step(
        1,
        Message::UpToDate {
            zxid: make_zxid(2, 1),
        },
    )
    .unwrap();
    assert!(z.is_serving());
}

#[test]
fn proposal_acked_only_after_fsync() {
    let mut z = synced_follower(1, 1);
    z.step(
        1,
        Message::UpToDate {
            zxid: make_zxid(1, 1),
        },
    )
    .unwrap();
    z.ready();
    z.step(
        1,
        Message::Proposal {
            zxid: make_zxid(2, 1),
            payload: vec![1],
        },
    )
    .unwrap();
    assert!(sends(&z.ready()).is_empty(), "no ACK before fsync");
    z.log_synced(make_zxid(2, 1));
    assert_eq!(
        sends(&z.ready()),
        vec![(
            1,
            Message::Ack {
                zxid: make_zxid(2, 1)
            }
        )]
    );
    // A gap in the proposal stream is a protocol violation, not silently logged.
    assert!(z
        .step(
            1,
            Message::Proposal {
                zxid: make_zxid(2, 3),
                payload: vec![3]
            }
        )
        .is_err());
    assert_eq!(z.role(), Role::Looking);
}

#[test]
fn trunc_cuts_back_to_the_shared_prefix() {
    let mut z = follower_of_1(restored_epoch1(4));
    z.step(1, Message::LeaderInfo { epoch: 2 }).unwrap();
    z.ready();
    z.step(
        1,
        Message::Trunc {
            zxid: make_zxid(1, 2),
        },
    )
    .unwrap();
    assert_eq!(
        z.ready(),
        vec![Output::TruncateLog {
            after: make_zxid(1, 2)
        }]
    );
    assert_eq!(z.last_zxid(), make_zxid(1, 2));
}

#[test]
#[should_panic(expected = "committed (applied) prefix must never be truncated")]
fn trunc_below_applied_is_an_invariant_breach() {
    let mut z = synced_follower(2, 2);
    // Back in a new round with applied = (1,2): a TRUNC below it must never happen.
    z.disconnected(1);
    z.step(1, looking(1, make_zxid(1, 9), 5, 2)).unwrap();
    z.step(3, looking(1, make_zxid(1, 9), 5, 2)).unwrap();
    z.tick();
    z.step(1, Message::LeaderInfo { epoch: 3 }).unwrap();
    let _ = z.step(
        1,
        Message::Trunc {
            zxid: make_zxid(1, 1),
        },
    );
}

// ----- a tiny instant-delivery cluster -----

struct Cluster {
    peers: BTreeMap<ServerId, Zab>,
    down: BTreeSet<ServerId>,
    queue: VecDeque<(ServerId, ServerId, Message)>,
    applied: BTreeMap<ServerId, Vec<(Zxid, Vec<u8>)>>,
    forwarded: Vec<(ServerId, Vec<u8>)>,
    pings: Vec<(ServerId, Vec<u8>)>,
    syncs: Vec<(ServerId, u64)>,
    lookings: usize,
    snaps_restored: usize,
    closed: Vec<(ServerId, ServerId)>,
}

fn encode_list(list: &[(Zxid, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0xAB];
    for (z, p) in list {
        out.extend_from_slice(&z.to_be_bytes());
        out.push(p.len() as u8);
        out.extend_from_slice(p);
    }
    out
}

fn decode_list(mut b: &[u8]) -> Vec<(Zxid, Vec<u8>)> {
    assert_eq!(b[0], 0xAB);
    b = &b[1..];
    let mut out = Vec::new();
    while !b.is_empty() {
        let z = Zxid::from_be_bytes(b[..8].try_into().unwrap());
        let n = b[8] as usize;
        out.push((z, b[9..9 + n].to_vec()));
        b = &b[9 + n..];
    }
    out
}

impl Cluster {
    fn new(voters: &[ServerId], observers: &[ServerId], tweak: impl Fn(&mut Config)) -> Self {
        let mut peers = BTreeMap::new();
        for &id in voters.iter().chain(observers) {
            let mut c = Config::new(id, voters.to_vec(), observers.to_vec());
            tweak(&mut c);
            peers.insert(id, Zab::new(c, Restored::default(), id).unwrap());
        }
        let mut cl = Cluster {
            applied: peers.keys().map(|k| (*k, Vec::new())).collect(),
            peers,
            down: BTreeSet::new(),
            queue: VecDeque::new(),
            forwarded: Vec::new(),
            pings: Vec::new(),
            syncs: Vec::new(),
            lookings: 0,
            snaps_restored: 0,
            closed: Vec::new(),
        };
        cl.pump();
        cl
    }

    fn drop_links(&mut self, id: ServerId) {
        self.queue
            .retain(|(f, t, m)| m.is_election() || (*f != id && *t != id));
        let others: Vec<ServerId> = self.peers.keys().copied().filter(|p| *p != id).collect();
        for o in others {
            if !self.down.contains(&o) {
                self.peers.get_mut(&o).unwrap().disconnected(id);
            }
        }
    }

    fn pump(&mut self) {
        for _ in 0..100_000 {
            let ids: Vec<ServerId> = self.peers.keys().copied().collect();
            let mut any = false;
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                let out = self.peers.get_mut(&id).unwrap().ready();
                any |= !out.is_empty();
                for o in out {
                    match o {
                        Output::Send { to, msg } => self.queue.push_back((id, to, msg)),
                        Output::Apply { zxid, payload } => {
                            self.applied.get_mut(&id).unwrap().push((zxid, payload))
                        }
                        Output::RestoreSnapshot { zxid, data } => {
                            let list = decode_list(&data);
                            assert_eq!(list.last().map_or(0, |e| e.0), zxid);
                            self.snaps_restored += 1;
                            self.applied.insert(id, list);
                        }
                        Output::TakeSnapshot => {
                            let list = &self.applied[&id];
                            let z = list.last().map_or(0, |e| e.0);
                            let data = encode_list(list);
                            self.peers
                                .get_mut(&id)
                                .unwrap()
                                .snapshot_ready(z, data)
                                .unwrap();
                        }
                        Output::RoleChanged {
                            role: Role::Looking,
                            ..
                        } => {
                            self.lookings += 1;
                            self.drop_links(id)
                        }
                        Output::ForwardedRequest { from, payload } => {
                            self.forwarded.push((from, payload))
                        }
                        Output::SessionPing { from, payload } => self.pings.push((from, payload)),
                        Output::SyncDone { id: s } => self.syncs.push((id, s)),
                        Output::CloseConnection { peer } => {
                            self.closed.push((id, peer));
                            self.queue.retain(|(f, t, m)| {
                                m.is_election()
                                    || !((*f == id && *t == peer) || (*f == peer && *t == id))
                            });
                            self.peers.get_mut(&peer).unwrap().disconnected(id);
                        }
                        _ => {}
                    }
                }
                let z = self.peers.get_mut(&id).unwrap();
                let last = z.last_zxid();
                z.log_synced(last);
            }
            if let Some((from, to, msg)) = self.queue.pop_front() {
                any = true;
                if !self.down.contains(&to) && !self.down.contains(&from) {
                    let _ = self.peers.get_mut(&to).unwrap().step(from, msg);
                }
            }
            if !any {
                return;
            }
        }
        panic!("cluster did not quiesce");
    }

    /// Delivers at most one message and executes outputs once (for tests that interfere
    /// with the queue between deliveries).
    fn pump_once(&mut self, blocked: (ServerId, ServerId)) {
        let ids: Vec<ServerId> = self.peers.keys().copied().collect();
        for id in ids {
            let out = self.peers.get_mut(&id).unwrap().ready();
            for o in out {
                match o {
                    Output::Send { to, msg } => self.queue.push_back((id, to, msg)),
                    Output::CloseConnection { peer } => {
                        self.closed.push((id, peer));
                        self.peers.get_mut(&peer).unwrap().disconnected(id);
                    }
                    _ => {}
                }
            }
            let z = self.peers.get_mut(&id).unwrap();
            let last = z.last_zxid();
            z.log_synced(last);
        }
        if let Some((from, to, msg)) = self.queue.pop_front() {
            if msg.is_election() || (from, to) != blocked {
                let _ = self.peers.get_mut(&to).unwrap().step(from, msg);
            }
        }
    }

    fn ticks(&mut self, n: usize) {
        for _ in 0..n {
            let ids: Vec<ServerId> = self.peers.keys().copied().collect();
            for id in ids {
                if !self.down.contains(&id) {
                    self.peers.get_mut(&id).unwrap().tick();
                }
            }
            self.pump();
        }
    }

    fn leader(&self) -> Option<ServerId> {
        self.peers
            .iter()
            .find(|(id, z)| !self.down.contains(id) && z.established_epoch().is_some())
            .map(|(id, _)| *id)
    }
}

#[test]
fn three_servers_elect_establish_and_commit_in_order() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |_| {});
    c.ticks(5);
    let l = c.leader().expect("a leader");
    assert_eq!(l, 3, "equal zxids: the highest id wins");
    let lookings = c.lookings;
    c.ticks(20);
    assert_eq!(
        c.lookings, lookings,
        "a stable ensemble never goes back to LOOKING"
    );
    assert_eq!(c.peers[&l].established_epoch(), Some(1));
    for i in 1..=5u8 {
        c.peers.get_mut(&l).unwrap().propose(vec![i]).unwrap();
    }
    c.pump();
    for id in [1, 2, 3] {
        let got: Vec<Zxid> = c.applied[&id].iter().map(|e| e.0).collect();
        assert_eq!(got, (1..=5).map(|i| make_zxid(1, i)).collect::<Vec<_>>());
        assert_eq!(c.peers[&id].current_epoch(), 1);
    }
    // Followers refuse to propose.
    assert_eq!(
        c.peers.get_mut(&1).unwrap().propose(vec![1]),
        Err(ZabError::NotLeader)
    );
}

#[test]
fn leader_steps_down_without_a_quorum_and_minority_cannot_commit() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |_| {});
    c.ticks(5);
    let l = c.leader().unwrap();
    let others: Vec<ServerId> = [1, 2, 3].into_iter().filter(|p| *p != l).collect();
    for o in &others {
        c.down.insert(*o);
    }
    c.peers.get_mut(&l).unwrap().propose(vec![9]).unwrap();
    c.pump();
    assert!(c.applied[&l].is_empty(), "a lone leader cannot commit");
    c.ticks(10);
    assert_eq!(c.peers[&l].role(), Role::Looking);
}

#[test]
fn counter_exhaustion_starts_a_new_epoch() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |c| c.max_zxid_counter = 3);
    c.ticks(5);
    let l = c.leader().unwrap();
    let z = c.peers.get_mut(&l).unwrap();
    for i in 1..=3u8 {
        z.propose(vec![i]).unwrap();
    }
    assert_eq!(z.propose(vec![4]), Err(ZabError::EpochExhausted));
    assert!(ZabError::EpochExhausted.is_retryable());
    c.pump();
    assert_eq!(c.applied[&1].len(), 3, "in-flight proposals drain first");
    c.ticks(10);
    let l2 = c.leader().expect("re-elected");
    assert_eq!(c.peers[&l2].established_epoch(), Some(2));
    let zx = c.peers.get_mut(&l2).unwrap().propose(vec![4]).unwrap();
    assert_eq!(zx, make_zxid(2, 1));
    c.pump();
    for id in [1, 2, 3] {
        assert_eq!(c.applied[&id].last().unwrap().0, make_zxid(2, 1));
        assert_eq!(c.applied[&id].len(), 4);
    }
}

#[test]
fn observer_learns_by_inform_and_never_counts_for_quorum() {
    let mut c = Cluster::new(&[1, 2, 3], &[4], |_| {});
    c.ticks(6);
    let l = c.leader().unwrap();
    assert_eq!(c.peers[&4].role(), Role::Observing);
    assert!(c.peers[&4].is_serving());
    c.peers.get_mut(&l).unwrap().propose(vec![1]).unwrap();
    c.pump();
    assert_eq!(c.applied[&4].len(), 1);
    // Two voters down: the observer must not make a quorum.
    let others: Vec<ServerId> = [1, 2, 3].into_iter().filter(|p| *p != l).collect();
    c.down.insert(others[0]);
    c.down.insert(others[1]);
    c.peers.get_mut(&l).unwrap().propose(vec![2]).unwrap();
    c.pump();
    assert_eq!(c.applied[&l].len(), 1);
    assert_eq!(c.applied[&4].len(), 1);
}

#[test]
fn forwarding_pings_and_sync_go_through_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |_| {});
    c.ticks(5);
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    c.peers
        .get_mut(&f)
        .unwrap()
        .submit_request(b"create".to_vec())
        .unwrap();
    c.pump();
    assert_eq!(c.forwarded, vec![(f, b"create".to_vec())]);
    c.peers
        .get_mut(&f)
        .unwrap()
        .set_ping_payload(b"sessions".to_vec());
    c.ticks(1);
    assert!(c.pings.contains(&(f, b"sessions".to_vec())));
    // sync: the reply waits for the proposal in flight at the leader.
    c.down.insert(if l == 3 { 2 } else { 3 }); // keep a quorum of two
    c.peers.get_mut(&l).unwrap().propose(vec![7]).unwrap();
    c.peers.get_mut(&f).unwrap().sync(42).unwrap();
    c.pump();
    assert!(c.syncs.contains(&(f, 42)));
    let applied_at_f = c.applied[&f].last().unwrap().0;
    assert_eq!(applied_at_f, c.peers[&l].last_zxid());
}

#[test]
fn equal_epoch_ackepoch_is_marked_and_not_counted() {
    // Follower side: an epoch promised before is acknowledged with -1 (None).
    let mut r = restored_epoch1(1);
    r.accepted_epoch = 2;
    let mut z = Zab::new(cfg3(2), r, 7).unwrap();
    z.step(1, looking(1, make_zxid(1, 9), 1, 1)).unwrap();
    z.step(3, looking(1, make_zxid(1, 9), 1, 1)).unwrap();
    z.tick();
    z.ready();
    z.step(1, Message::LeaderInfo { epoch: 2 }).unwrap();
    assert_eq!(
        z.ready(),
        vec![Output::Send {
            to: 1,
            msg: Message::AckEpoch {
                current_epoch: None,
                last_zxid: make_zxid(1, 1)
            }
        }]
    );

    // Leader side: such an ACKEPOCH does not complete the quorum.
    let mut l = Zab::new(cfg3(1), restored_epoch1(1), 3).unwrap();
    l.step(2, looking(1, make_zxid(1, 1), 1, 1)).unwrap();
    l.step(3, looking(1, make_zxid(1, 1), 1, 1)).unwrap();
    l.tick();
    assert_eq!(l.role(), Role::Leading);
    l.ready();
    l.step(
        2,
        Message::FollowerInfo {
            accepted_epoch: 1,
            observer: false,
        },
    )
    .unwrap();
    assert_eq!(
        l.ready(),
        vec![
            Output::PersistAcceptedEpoch(2),
            Output::Send {
                to: 2,
                msg: Message::LeaderInfo { epoch: 2 }
            }
        ]
    );
    l.step(
        2,
        Message::AckEpoch {
            current_epoch: None,
            last_zxid: make_zxid(1, 1),
        },
    )
    .unwrap();
    assert!(
        l.ready().is_empty(),
        "an uncounted ACKEPOCH must not start sync"
    );
    l.step(
        3,
        Message::FollowerInfo {
            accepted_epoch: 1,
            observer: false,
        },
    )
    .unwrap();
    l.step(
        3,
        Message::AckEpoch {
            current_epoch: Some(1),
            last_zxid: make_zxid(1, 1),
        },
    )
    .unwrap();
    let out = l.ready();
    assert!(out.contains(&Output::PersistCurrentEpoch(2)), "{out:?}");
    assert!(out.contains(&Output::Send {
        to: 2,
        msg: Message::NewLeader { epoch: 2 }
    }));
    assert!(out.contains(&Output::Send {
        to: 3,
        msg: Message::NewLeader { epoch: 2 }
    }));
}

#[test]
fn leader_steps_down_for_a_learner_that_promised_a_later_epoch() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |_| {});
    c.ticks(5);
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    // f restarts having accepted epoch 7 from a leader that never established.
    c.down.insert(f);
    c.drop_links(f);
    let mut cfg = cfg3(f);
    cfg.voters = vec![1, 2, 3];
    let restored = Restored {
        accepted_epoch: 7,
        current_epoch: 1,
        ..Restored::default()
    };
    c.peers.insert(f, Zab::new(cfg, restored, 9).unwrap());
    c.down.remove(&f);
    c.ticks(30);
    let l2 = c.leader().expect("a leader again");
    assert!(c.peers[&l2].established_epoch().unwrap() > 7);
    assert!(c.peers[&f].is_serving(), "the learner joined");
}

#[test]
fn a_learner_behind_the_committed_log_window_gets_snap() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |c| c.committed_log_max = 3);
    c.ticks(5);
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    c.down.insert(f);
    c.drop_links(f);
    for i in 1..=10u8 {
        c.peers.get_mut(&l).unwrap().propose(vec![i]).unwrap();
    }
    c.pump();
    assert_eq!(
        c.peers[&l].log_window().count(),
        3,
        "window trimmed to committedLog"
    );
    // f comes back (same in-memory state, as after a network partition heals).
    c.down.remove(&f);
    c.peers.get_mut(&f).unwrap().disconnected(l);
    c.ticks(15);
    assert_eq!(c.snaps_restored, 1, "one SNAP");
    assert!(c.peers[&f].is_serving());
    assert_eq!(c.applied[&f], c.applied[&l]);
    assert_eq!(c.applied[&f].len(), 10);
    // And it keeps up afterwards.
    c.peers.get_mut(&l).unwrap().propose(vec![11]).unwrap();
    c.pump();
    assert_eq!(c.applied[&f].len(), 11);
}

#[test]
fn bad_config_and_bad_restored_state_are_errors() {
    let mut c = cfg3(4);
    assert!(
        matches!(c.validate(), Err(ZabError::BadConfig(_))),
        "id not a member"
    );
    c = cfg3(1);
    c.observers = vec![1];
    assert!(c.validate().is_err(), "listed twice");
    c = cfg3(1);
    c.max_zxid_counter = 1;
    assert!(c.validate().is_err());
    let r = Restored {
        accepted_epoch: 1,
        current_epoch: 2,
        ..Restored::default()
    };
    assert!(matches!(
        Zab::new(cfg3(1), r, 0),
        Err(ZabError::BadRestore(_))
    ));
    let r = Restored {
        log: vec![(make_zxid(1, 2), vec![1]), (make_zxid(1, 1), vec![1])],
        accepted_epoch: 1,
        current_epoch: 1,
        ..Restored::default()
    };
    assert!(Zab::new(cfg3(1), r, 0).is_err(), "log out of order");
    let mut z = Zab::new(cfg3(1), Restored::default(), 0).unwrap();
    assert_eq!(
        z.step(9, Message::Ack { zxid: 1 }),
        Err(ZabError::UnknownPeer(9))
    );
    assert_eq!(z.propose(vec![1]), Err(ZabError::NotLeader));
    assert_eq!(z.propose(vec![]), Err(ZabError::BadPayload));
    assert_eq!(z.submit_request(vec![1]), Err(ZabError::NoLeader));
}

#[test]
fn a_learner_reconnecting_before_its_old_connection_is_reported_closed_is_resynced() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |_| {});
    c.ticks(5);
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    c.peers.get_mut(&l).unwrap().propose(vec![1]).unwrap();
    c.pump();
    // f loses the leader; the leader is never told (no disconnected(f) on its side).
    c.peers.get_mut(&f).unwrap().disconnected(l);
    let out = c.peers.get_mut(&f).unwrap().ready();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::RoleChanged {
            role: Role::Looking,
            ..
        }
    )));
    // Deliver f's notifications, but do not let the cluster close the leader's side.
    for o in out {
        if let Output::Send { to, msg } = o {
            c.queue.push_back((f, to, msg));
        }
    }
    c.pump();
    c.ticks(10);
    assert!(c.peers[&f].is_serving(), "f rejoined the same leader");
    assert_eq!(
        c.peers[&l].established_epoch(),
        Some(1),
        "without a new election"
    );
    c.peers.get_mut(&l).unwrap().propose(vec![2]).unwrap();
    c.pump();
    assert_eq!(c.applied[&f].len(), 2);
}

#[test]
fn leader_closes_the_connection_of_a_silent_learner() {
    let mut c = Cluster::new(&[1, 2, 3], &[], |_| {});
    c.ticks(5);
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    // f's messages to the leader vanish (one-way trouble); the leader hears nothing.
    for _ in 0..8 {
        let ids: Vec<ServerId> = c.peers.keys().copied().collect();
        for id in ids {
            c.peers.get_mut(&id).unwrap().tick();
        }
        for _ in 0..50 {
            c.pump_once((f, l));
        }
    }
    assert!(
        c.closed.contains(&(l, f)),
        "leader gave up on f: {:?}",
        c.closed
    );
    assert!(
        !c.peers[&f].is_serving(),
        "f saw its connection close and started over"
    );
}
