//! Messages between servers and their byte encoding: the election transport (fast leader
//! election notifications, ZooKeeper's `FastLeaderElection.Notification` /
//! `ToSend`) and the quorum transport (ZooKeeper's `QuorumPacket {type, zxid, data}`).
//!
//! Owns the typed [`Message`] enum and the pure functions [`encode`] and [`decode`]. Never
//! does IO, never panics on input: any byte string, however malformed or large, makes
//! [`decode`] return an error (property-tested below).
//!
//! # Byte layout (all integers big-endian, two's complement)
//!
//! ```text
//! frame
//!   +0  u8   channel: 1 = election notification, 2 = quorum packet
//!
//! election notification (channel 1), exactly 41 bytes in all
//!   +1  i32  state: 0 LOOKING, 1 FOLLOWING, 2 LEADING, 3 OBSERVING (ZooKeeper's ordinals)
//!   +5  i64  proposed leader (server id)
//!   +13 i64  proposed zxid (the leader's last logged zxid)
//!   +21 i64  electionEpoch (the sender's logical clock)
//!   +29 i64  peerEpoch (the proposed leader's currentEpoch)
//!   +37 i32  version = 2
//!
//! quorum packet (channel 2)
//!   +1  i32  type (ZooKeeper's Leader.java constants, listed on `PacketType`)
//!   +5  i64  zxid
//!   +13 i32  data length n, or -1 for "no data"
//!   +17 n    data
//! ```
//!
//! Meaning of `zxid` and `data` per packet type (as in ZooKeeper):
//!
//! | type | zxid | data |
//! |---|---|---|
//! | REQUEST 1 | 0 | opaque client request (the server's encoding) |
//! | PROPOSAL 2 | the proposal's zxid | opaque txn |
//! | ACK 3 | acknowledged zxid (cumulative, see lib.rs) | none |
//! | COMMIT 4 | committed zxid | none |
//! | PING 5 | leader: its last zxid; learner: 0 | learner: opaque session touches |
//! | SYNC 7 | request: 0; reply: zxid the reply waits for | u64 request id |
//! | INFORM 8 | zxid | opaque txn (observers: proposal and commit in one) |
//! | NEWLEADER 10 | newEpoch << 32 | none |
//! | FOLLOWERINFO 11 / OBSERVERINFO 16 | acceptedEpoch << 32 | i32 protocol version |
//! | UPTODATE 12 | the leader's committed zxid | none |
//! | DIFF 13 / TRUNC 14 | peer's last zxid / truncate-after zxid | none |
//! | SNAP 15 | snapshot zxid | opaque snapshot |
//! | LEADERINFO 17 | newEpoch << 32 | i32 protocol version |
//! | ACKEPOCH 18 | the learner's last logged zxid | i32 currentEpoch, or -1: "I had already accepted this epoch" |
//!
//! Decoding is strict: a frame longer than its contents, a data length that does not match
//! the remaining bytes, a data length above the caller's limit, an unknown type or state,
//! or an epoch packet whose zxid has a non-zero counter are all errors.

use crate::{zxid_counter, zxid_epoch, ServerId, Zxid};

/// ZooKeeper's `QuorumPeer.ServerState`, as carried in notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// A fast-leader-election notification: the sender's current vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    pub state: PeerState,
    pub leader: ServerId,
    pub zxid: Zxid,
    pub election_epoch: u64,
    pub peer_epoch: u32,
}

/// Protocol version we send in FOLLOWERINFO / LEADERINFO (ZooKeeper sends 0x10000).
pub const PROTOCOL_VERSION: i32 = 0x10000;
/// Notification format version.
pub const NOTIFICATION_VERSION: i32 = 2;

/// One message of either transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Notification(Notification),
    Request {
        payload: Vec<u8>,
    },
    Proposal {
        zxid: Zxid,
        payload: Vec<u8>,
    },
    Ack {
        zxid: Zxid,
    },
    Commit {
        zxid: Zxid,
    },
    Ping {
        zxid: Zxid,
        payload: Vec<u8>,
    },
    Sync {
        zxid: Zxid,
        id: u64,
    },
    Inform {
        zxid: Zxid,
        payload: Vec<u8>,
    },
    NewLeader {
        epoch: u32,
    },
    FollowerInfo {
        accepted_epoch: u32,
        observer: bool,
    },
    UpToDate {
        zxid: Zxid,
    },
    Diff {
        zxid: Zxid,
    },
    Trunc {
        zxid: Zxid,
    },
    Snap {
        zxid: Zxid,
        data: Vec<u8>,
    },
    LeaderInfo {
        epoch: u32,
    },
    /// `current_epoch` is None when the learner had already accepted this epoch before
    /// (ZooKeeper sends -1): such an ACKEPOCH must not count towards the leader's quorum,
    /// or two leaders could each gather a quorum for the same epoch number.
    AckEpoch {
        current_epoch: Option<u32>,
        last_zxid: Zxid,
    },
}

impl Message {
    /// True for messages of the election transport (notifications); false for the quorum
    /// transport, which must be a reliable FIFO connection (TCP in ZooKeeper).
    pub fn is_election(&self) -> bool {
        matches!(self, Message::Notification(_))
    }

    /// ZooKeeper's name of the packet type, for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Notification(_) => "NOTIFICATION",
            Message::Request { .. } => "REQUEST",
            Message::Proposal { .. } => "PROPOSAL",
            Message::Ack { .. } => "ACK",
            Message::Commit { .. } => "COMMIT",
            Message::Ping { .. } => "PING",
            Message::Sync { .. } => "SYNC",
            Message::Inform { .. } => "INFORM",
            Message::NewLeader { .. } => "NEWLEADER",
            Message::FollowerInfo {
                observer: false, ..
            } => "FOLLOWERINFO",
            Message::FollowerInfo { observer: true, .. } => "OBSERVERINFO",
            Message::UpToDate { .. } => "UPTODATE",
            Message::Diff { .. } => "DIFF",
            Message::Trunc { .. } => "TRUNC",
            Message::Snap { .. } => "SNAP",
            Message::LeaderInfo { .. } => "LEADERINFO",
            Message::AckEpoch { .. } => "ACKEPOCH",
        }
    }
}

/// Packet type numbers, ZooKeeper's `Leader.java` constants.
pub mod packet_type {
    pub const REQUEST: i32 = 1;
    pub const PROPOSAL: i32 = 2;
    pub const ACK: i32 = 3;
    pub const COMMIT: i32 = 4;
    pub const PING: i32 = 5;
    pub const SYNC: i32 = 7;
    pub const INFORM: i32 = 8;
    pub const NEWLEADER: i32 = 10;
    pub const FOLLOWERINFO: i32 = 11;
    pub const UPTODATE: i32 = 12;
    pub const DIFF: i32 = 13;
    pub const TRUNC: i32 = 14;
    pub const SNAP: i32 = 15;
    pub const OBSERVERINFO: i32 = 16;
    pub const LEADERINFO: i32 = 17;
    pub const ACKEPOCH: i32 = 18;
}

const CHANNEL_ELECTION: u8 = 1;
const CHANNEL_QUORUM: u8 = 2;
const NOTIFICATION_LEN: usize = 41;
const QUORUM_HEADER_LEN: usize = 17;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is empty")]
    Empty,
    #[error("unknown channel byte {0}")]
    UnknownChannel(u8),
    #[error("frame truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("data length {len} exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid data length {0}")]
    BadLength(i32),
    #[error("unknown peer state {0}")]
    UnknownState(i32),
    #[error("unknown packet type {0}")]
    UnknownType(i32),
    #[error("bad field in {packet}: {what}")]
    BadField {
        packet: &'static str,
        what: &'static str,
    },
}

fn state_code(s: PeerState) -> i32 {
    match s {
        PeerState::Looking => 0,
        PeerState::Following => 1,
        PeerState::Leading => 2,
        PeerState::Observing => 3,
    }
}

/// Encodes a message into a frame (see the module header).
pub fn encode(msg: &Message) -> Vec<u8> {
    use packet_type as t;
    if let Message::Notification(n) = msg {
        let mut out = Vec::with_capacity(NOTIFICATION_LEN);
        out.push(CHANNEL_ELECTION);
        out.extend_from_slice(&state_code(n.state).to_be_bytes());
        out.extend_from_slice(&(n.leader as i64).to_be_bytes());
        out.extend_from_slice(&n.zxid.to_be_bytes());
        out.extend_from_slice(&(n.election_epoch as i64).to_be_bytes());
        out.extend_from_slice(&(n.peer_epoch as i64).to_be_bytes());
        out.extend_from_slice(&NOTIFICATION_VERSION.to_be_bytes());
        return out;
    }
    let ver = PROTOCOL_VERSION.to_be_bytes().to_vec();
    let (ty, zxid, data): (i32, Zxid, Option<Vec<u8>>) = match msg {
        Message::Notification(_) => unreachable!("handled above"),
        Message::Request { payload } => (t::REQUEST, 0, Some(payload.clone())),
        Message::Proposal { zxid, payload } => (t::PROPOSAL, *zxid, Some(payload.clone())),
        Message::Ack { zxid } => (t::ACK, *zxid, None),
        Message::Commit { zxid } => (t::COMMIT, *zxid, None),
        Message::Ping { zxid, payload } => (t::PING, *zxid, Some(payload.clone())),
        Message::Sync { zxid, id } => (t::SYNC, *zxid, Some(id.to_be_bytes().to_vec())),
        Message::Inform { zxid, payload } => (t::INFORM, *zxid, Some(payload.clone())),
        Message::NewLeader { epoch } => (t::NEWLEADER, crate::make_zxid(*epoch, 0), None),
        Message::FollowerInfo {
            accepted_epoch,
            observer,
        } => (
            if *observer {
                t::OBSERVERINFO
            } else {
                t::FOLLOWERINFO
            },
            crate::make_zxid(*accepted_epoch, 0),
            Some(ver),
        ),
        Message::UpToDate { zxid } => (t::UPTODATE, *zxid, None),
        Message::Diff { zxid } => (t::DIFF, *zxid, None),
        Message::Trunc { zxid } => (t::TRUNC, *zxid, None),
        Message::Snap { zxid, data } => (t::SNAP, *zxid, Some(data.clone())),
        Message::LeaderInfo { epoch } => (t::LEADERINFO, crate::make_zxid(*epoch, 0), Some(ver)),
        Message::AckEpoch {
            current_epoch,
            last_zxid,
        } => (
            t::ACKEPOCH,
            *last_zxid,
            Some(
                current_epoch
                    .map_or(-1, |e| e as i32)
                    .to_be_bytes()
                    .to_vec(),
            ),
        ),
    };
    let len = data.as_ref().map_or(0, |d| d.len());
    let mut out = Vec::with_capacity(QUORUM_HEADER_LEN + len);
    out.push(CHANNEL_QUORUM);
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&zxid.to_be_bytes());
    match data {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(d) => {
            out.extend_from_slice(&(d.len() as i32).to_be_bytes());
            out.extend_from_slice(&d);
        }
    }
    out
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn need(buf: &[u8], n: usize) -> Result<(), DecodeError> {
    if buf.len() < n {
        Err(DecodeError::Truncated {
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn epoch_of(packet: &'static str, zxid: Zxid) -> Result<u32, DecodeError> {
    if zxid < 0 || zxid_counter(zxid) != 0 {
        return Err(DecodeError::BadField {
            packet,
            what: "epoch zxid must be epoch << 32",
        });
    }
    Ok(zxid_epoch(zxid))
}

fn data_i32(packet: &'static str, data: &Option<Vec<u8>>) -> Result<i32, DecodeError> {
    match data {
        Some(d) if d.len() == 4 => Ok(be_i32(d, 0)),
        _ => Err(DecodeError::BadField {
            packet,
            what: "data must be a 4-byte integer",
        }),
    }
}

/// Decodes one frame. `max_data_bytes` caps the data field (snapshots included), so a
/// hostile length can never make us allocate more than the caller allows.
pub fn decode(buf: &[u8], max_data_bytes: usize) -> Result<Message, DecodeError> {
    use packet_type as t;
    let channel = *buf.first().ok_or(DecodeError::Empty)?;
    match channel {
        CHANNEL_ELECTION => {
            need(buf, NOTIFICATION_LEN)?;
            if buf.len() > NOTIFICATION_LEN {
                return Err(DecodeError::Trailing(buf.len() - NOTIFICATION_LEN));
            }
            let state = match be_i32(buf, 1) {
                0 => PeerState::Looking,
                1 => PeerState::Following,
                2 => PeerState::Leading,
                3 => PeerState::Observing,
                s => return Err(DecodeError::UnknownState(s)),
            };
            let leader = be_i64(buf, 5);
            let zxid = be_i64(buf, 13);
            let election_epoch = be_i64(buf, 21);
            let peer_epoch = be_i64(buf, 29);
            let bad = |what| DecodeError::BadField {
                packet: "NOTIFICATION",
                what,
            };
            if leader < 0 {
                return Err(bad("negative leader id"));
            }
            if zxid < 0 {
                return Err(bad("negative zxid"));
            }
            if election_epoch < 0 {
                return Err(bad("negative election epoch"));
            }
            if !(0..=u32::MAX as i64).contains(&peer_epoch) {
                return Err(bad("peer epoch out of range"));
            }
            if be_i32(buf, 37) != NOTIFICATION_VERSION {
                return Err(bad("unsupported version"));
            }
            Ok(Message::Notification(Notification {
                state,
                leader: leader as u64,
                zxid,
                election_epoch: election_epoch as u64,
                peer_epoch: peer_epoch as u32,
            }))
        }
        CHANNEL_QUORUM => {
            need(buf, QUORUM_HEADER_LEN)?;
            let ty = be_i32(buf, 1);
            let zxid = be_i64(buf, 5);
            let len = be_i32(buf, 13);
            let data = if len == -1 {
                if buf.len() > QUORUM_HEADER_LEN {
                    return Err(DecodeError::Trailing(buf.len() - QUORUM_HEADER_LEN));
                }
                None
            } else if len < 0 {
                return Err(DecodeError::BadLength(len));
            } else {
                let n = len as usize;
                if n > max_data_bytes {
                    return Err(DecodeError::TooLarge {
                        len: n,
                        max: max_data_bytes,
                    });
                }
                need(buf, QUORUM_HEADER_LEN + n)?;
                if buf.len() > QUORUM_HEADER_LEN + n {
                    return Err(DecodeError::Trailing(buf.len() - QUORUM_HEADER_LEN - n));
                }
                Some(buf[QUORUM_HEADER_LEN..].to_vec())
            };
            if zxid < 0 {
                return Err(DecodeError::BadField {
                    packet: "QUORUM",
                    what: "negative zxid",
                });
            }
            let payload = |packet: &'static str| -> Result<Vec<u8>, DecodeError> {
                data.clone().ok_or(DecodeError::BadField {
                    packet,
                    what: "missing data",
                })
            };
            let no_data = |packet: &'static str| -> Result<(), DecodeError> {
                if data.is_some() {
                    Err(DecodeError::BadField {
                        packet,
                        what: "unexpected data",
                    })
                } else {
                    Ok(())
                }
            };
            let msg = match ty {
                t::REQUEST => Message::Request {
                    payload: payload("REQUEST")?,
                },
                t::PROPOSAL => Message::Proposal {
                    zxid,
                    payload: payload("PROPOSAL")?,
                },
                t::ACK => {
                    no_data("ACK")?;
                    Message::Ack { zxid }
                }
                t::COMMIT => {
                    no_data("COMMIT")?;
                    Message::Commit { zxid }
                }
                t::PING => Message::Ping {
                    zxid,
                    payload: data.clone().unwrap_or_default(),
                },
                t::SYNC => {
                    let d = payload("SYNC")?;
                    if d.len() != 8 {
                        return Err(DecodeError::BadField {
                            packet: "SYNC",
                            what: "request id must be 8 bytes",
                        });
                    }
                    Message::Sync {
                        zxid,
                        id: be_i64(&d, 0) as u64,
                    }
                }
                t::INFORM => Message::Inform {
                    zxid,
                    payload: payload("INFORM")?,
                },
                t::NEWLEADER => {
                    no_data("NEWLEADER")?;
                    Message::NewLeader {
                        epoch: epoch_of("NEWLEADER", zxid)?,
                    }
                }
                t::FOLLOWERINFO | t::OBSERVERINFO => {
                    data_i32("FOLLOWERINFO", &data)?;
                    Message::FollowerInfo {
                        accepted_epoch: epoch_of("FOLLOWERINFO", zxid)?,
                        observer: ty == t::OBSERVERINFO,
                    }
                }
                t::UPTODATE => {
                    no_data("UPTODATE")?;
                    Message::UpToDate { zxid }
                }
                t::DIFF => {
                    no_data("DIFF")?;
                    Message::Diff { zxid }
                }
                t::TRUNC => {
                    no_data("TRUNC")?;
                    Message::Trunc { zxid }
                }
                t::SNAP => Message::Snap {
                    zxid,
                    data: payload("SNAP")?,
                },
                t::LEADERINFO => {
                    data_i32("LEADERINFO", &data)?;
                    Message::LeaderInfo {
                        epoch: epoch_of("LEADERINFO", zxid)?,
                    }
                }
                t::ACKEPOCH => {
                    let e = data_i32("ACKEPOCH", &data)?;
                    Message::AckEpoch {
                        current_epoch: (e != -1).then_some(e as u32),
                        last_zxid: zxid,
                    }
                }
                other => return Err(DecodeError::UnknownType(other)),
            };
            Ok(msg)
        }
        other => Err(DecodeError::UnknownChannel(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Notification(Notification {
                state: PeerState::Looking,
                leader: 3,
                zxid: 0x5_0000_0007,
                election_epoch: 9,
                peer_epoch: 5,
            }),
            Message::Request {
                payload: b"req".to_vec(),
            },
            Message::Proposal {
                zxid: 0x1_0000_0001,
                payload: b"txn".to_vec(),
            },
            Message::Ack { zxid: 7 },
            Message::Commit { zxid: 7 },
            Message::Ping {
                zxid: 0,
                payload: vec![],
            },
            Message::Sync { zxid: 12, id: 99 },
            Message::Inform {
                zxid: 3,
                payload: vec![1],
            },
            Message::NewLeader { epoch: 4 },
            Message::FollowerInfo {
                accepted_epoch: 3,
                observer: true,
            },
            Message::UpToDate { zxid: 1 },
            Message::Diff { zxid: 1 },
            Message::Trunc { zxid: 1 },
            Message::Snap {
                zxid: 1,
                data: vec![9; 10],
            },
            Message::LeaderInfo { epoch: 8 },
            Message::AckEpoch {
                current_epoch: Some(7),
                last_zxid: 0x7_0000_0003,
            },
            Message::AckEpoch {
                current_epoch: None,
                last_zxid: 0x7_0000_0003,
            },
        ]
    }

    #[test]
    fn round_trip_every_type() {
        for m in samples() {
            let bytes = encode(&m);
            assert_eq!(decode(&bytes, 1 << 20).unwrap(), m, "{}", m.name());
        }
    }

    #[test]
    fn quorum_layout_is_type_zxid_len_data() {
        let b = encode(&Message::Proposal {
            zxid: 0x0000_0002_0000_0003,
            payload: b"ab".to_vec(),
        });
        assert_eq!(
            b,
            vec![2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn oversized_data_is_refused() {
        let b = encode(&Message::Snap {
            zxid: 1,
            data: vec![0; 100],
        });
        assert!(matches!(
            decode(&b, 99),
            Err(DecodeError::TooLarge { len: 100, max: 99 })
        ));
        // A hostile length with no bytes behind it is refused before any allocation.
        let mut h = b[..17].to_vec();
        h[13..17].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(&h, 1 << 20).is_err());
        h[13..17].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(decode(&h, 1 << 20), Err(DecodeError::BadLength(-5)));
    }

    #[test]
    fn epoch_packets_need_zero_counter() {
        let mut b = encode(&Message::NewLeader { epoch: 2 });
        b[12] = 1;
        assert!(matches!(decode(&b, 10), Err(DecodeError::BadField { .. })));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes, 32);
        }

        #[test]
        fn mutated_frames_never_panic(i in 0usize..16, pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let s = samples();
            let mut b = encode(&s[i % s.len()]);
            let p = pos % b.len();
            b[p] = val;
            let _ = decode(&b, 1 << 10);
            b.truncate(cut % (b.len() + 1));
            let _ = decode(&b, 1 << 10);
        }

        #[test]
        fn proposals_round_trip(zxid in 0i64..i64::MAX, payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let m = Message::Proposal { zxid, payload };
            prop_assert_eq!(decode(&encode(&m), 100).unwrap(), m);
        }
    }
}
