//! Real sockets on 127.0.0.1, port-0 listeners. Timeouts are failure guards only: every
//! wait is on a channel or a socket.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use zkd_zab::{Notification, PeerState};

const GUARD: Duration = Duration::from_secs(5);

fn opts() -> TransportOptions {
    TransportOptions {
        max_message_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        max_pending_handshakes: 64,
        write_stall_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        quorum_queue_max_messages: 10_000,
        quorum_queue_max_bytes: 8 << 20,
        election_queue_max_messages: 64,
        extra_allowed_ips: HashMap::new(),
        event_capacity: 64,
    }
}

async fn bind() -> (TcpListener, TcpListener, PeerAddrs) {
    let q = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = PeerAddrs {
        quorum: q.local_addr().unwrap(),
        election: e.local_addr().unwrap(),
    };
    (q, e, a)
}

struct Node {
    t: QuorumTransport,
    rx: mpsc::Receiver<TransportEvent>,
}

/// Starts servers 1..=n, each knowing all the others.
async fn cluster(n: u64, o: TransportOptions) -> (Vec<Node>, HashMap<ServerId, PeerAddrs>) {
    let mut ls = Vec::new();
    let mut addrs = HashMap::new();
    for id in 1..=n {
        let (q, e, a) = bind().await;
        ls.push((id, q, e));
        addrs.insert(id, a);
    }
    let nodes = ls
        .into_iter()
        .map(|(id, q, e)| {
            let (t, rx) = QuorumTransport::start(id, addrs.clone(), q, e, o.clone());
            Node { t, rx }
        })
        .collect();
    (nodes, addrs)
}

async fn next(rx: &mut mpsc::Receiver<TransportEvent>) -> TransportEvent {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("events channel closed")
}

async fn next_msg(rx: &mut mpsc::Receiver<TransportEvent>) -> (ServerId, Message) {
    match next(rx).await {
        TransportEvent::Message { from, msg } => (from, msg),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn note(epoch: u64) -> Message {
    Message::Notification(Notification {
        state: PeerState::Looking,
        leader: 2,
        zxid: 0x3_0000_0001,
        election_epoch: epoch,
        peer_epoch: 3,
    })
}

fn every_variant(tag: u8) -> Vec<Message> {
    vec![
        note(7),
        Message::Request {
            payload: vec![tag, 1],
        },
        Message::Proposal {
            zxid: 0x1_0000_0001,
            payload: vec![tag; 100],
        },
        Message::Ack {
            zxid: 0x1_0000_0001,
        },
        Message::Commit {
            zxid: 0x1_0000_0001,
        },
        Message::Ping {
            zxid: 5,
            payload: vec![tag],
        },
        Message::Sync { zxid: 9, id: 42 },
        Message::Inform {
            zxid: 0x1_0000_0002,
            payload: vec![tag, 2],
        },
        Message::NewLeader { epoch: 2 },
        Message::FollowerInfo {
            accepted_epoch: 1,
            observer: false,
        },
        Message::FollowerInfo {
            accepted_epoch: 1,
            observer: true,
        },
        Message::UpToDate {
            zxid: 0x2_0000_0000,
        },
        Message::Diff {
            zxid: 0x1_0000_0002,
        },
        Message::Trunc {
            zxid: 0x1_0000_0001,
        },
        Message::Snap {
            zxid: 0x1_0000_0002,
            data: vec![tag; 200_000],
        },
        Message::LeaderInfo { epoch: 2 },
        Message::AckEpoch {
            current_epoch: Some(1),
            last_zxid: 0x1_0000_0002,
        },
        Message::AckEpoch {
            current_epoch: None,
            last_zxid: 0x1_0000_0002,
        },
        note(8),
    ]
}

fn proposal(i: u32, tag: u64) -> Message {
    Message::Proposal {
        zxid: 0x1_0000_0000 | i as i64,
        payload: tag.to_be_bytes().to_vec(),
    }
}

/// Receives `n` messages and splits them per sender and channel, order preserved.
async fn collect(
    rx: &mut mpsc::Receiver<TransportEvent>,
    n: usize,
) -> HashMap<(ServerId, bool), Vec<Message>> {
    let mut got: HashMap<(ServerId, bool), Vec<Message>> = HashMap::new();
    for _ in 0..n {
        let (from, msg) = next_msg(rx).await;
        got.entry((from, msg.is_election())).or_default().push(msg);
    }
    got
}

fn split(ms: &[Message]) -> (Vec<Message>, Vec<Message>) {
    ms.iter().cloned().partition(|m| m.is_election())
}

#[tokio::test]
async fn two_servers_exchange_every_variant_both_ways_in_order() {
    let (mut n, _) = cluster(2, opts()).await;
    let a = every_variant(1);
    let b = every_variant(2);
    for m in &a {
        n[0].t.send(2, m);
    }
    for m in &b {
        n[1].t.send(1, m);
    }
    let got2 = collect(&mut n[1].rx, a.len()).await;
    let got1 = collect(&mut n[0].rx, b.len()).await;
    let (ae, aq) = split(&a);
    let (be, bq) = split(&b);
    assert_eq!(got2[&(1, false)], aq);
    assert_eq!(got2[&(1, true)], ae);
    assert_eq!(got1[&(2, false)], bq);
    assert_eq!(got1[&(2, true)], be);
    let m = n[0].t.metrics();
    // (messages_sent is bumped after the write returns, so it may still lag here.)
    assert_eq!(m.messages_received, b.len() as u64);
    assert_eq!(n[1].t.metrics().messages_received, a.len() as u64);
    assert_eq!(m.connections, 4, "two outbound and two inbound");
    assert!(m.bytes_sent > 200_000 && m.bytes_received > 200_000);
    for x in &n {
        x.t.shutdown();
    }
}

#[tokio::test]
async fn a_burst_larger_than_one_write_buffer_arrives_in_order() {
    let o = TransportOptions {
        quorum_queue_max_messages: 100_000,
        ..opts()
    };
    let (mut n, _) = cluster(2, o).await;
    // ~30 bytes each: the batch spans several 256 KiB writes, with big bodies between.
    let mut sent = Vec::new();
    for i in 0..20_000u32 {
        let m = if i % 5000 == 4999 {
            Message::Snap {
                zxid: i as i64,
                data: vec![i as u8; 100_000],
            }
        } else {
            proposal(i, 1)
        };
        n[0].t.send(2, &m);
        sent.push(m);
    }
    for m in &sent {
        assert_eq!(&next_msg(&mut n[1].rx).await.1, m);
    }
    for x in &n {
        x.t.shutdown();
    }
}

// Multi-threaded: the locking must hold up under real parallelism.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_all_pairs_fifo() {
    let (mut n, _) = cluster(3, opts()).await;
    const K: u32 = 300;
    for i in 0..K {
        for from in 1..=3u64 {
            for to in 1..=3u64 {
                if from != to {
                    n[from as usize - 1]
                        .t
                        .send(to, &proposal(i, from * 10 + to));
                }
            }
        }
    }
    for v in every_variant(9) {
        n[2].t.send(1, &v);
        n[2].t.send(2, &v);
    }
    let extra = every_variant(9).len();
    for to in 1..=3u64 {
        let want = 2 * K as usize + if to == 3 { 0 } else { extra };
        let got = collect(&mut n[to as usize - 1].rx, want).await;
        for from in (1..=3u64).filter(|&f| f != to) {
            let mut expect: Vec<Message> = (0..K).map(|i| proposal(i, from * 10 + to)).collect();
            if from == 3 {
                expect.extend(split(&every_variant(9)).1);
                assert_eq!(got[&(3, true)], split(&every_variant(9)).0);
            }
            assert_eq!(got[&(from, false)], expect, "stream {from} -> {to}");
        }
    }
    for x in &n {
        x.t.shutdown();
    }
}

// Multi-threaded: the locking must hold up under real parallelism.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_is_reported_and_redialled() {
    let (mut n, addrs) = cluster(2, opts()).await;
    n[0].t.send(2, &proposal(1, 0));
    n[1].t.send(1, &proposal(1, 1));
    assert_eq!(next_msg(&mut n[1].rx).await, (1, proposal(1, 0)));
    assert_eq!(next_msg(&mut n[0].rx).await, (2, proposal(1, 1)));

    // Server 2 goes away: server 1 sees the break exactly once.
    let Node { t: t2, rx: mut rx2 } = n.pop().unwrap();
    t2.shutdown();
    assert!(tokio::time::timeout(GUARD, rx2.recv())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        next(&mut n[0].rx).await,
        TransportEvent::Disconnected { peer: 2 }
    );

    // Queued while 2 is down: dialled with backoff until it is back.
    n[0].t.send(2, &proposal(2, 0));
    n[0].t.send(2, &note(3));
    let q = TcpListener::bind(addrs[&2].quorum).await.unwrap();
    let e = TcpListener::bind(addrs[&2].election).await.unwrap();
    let (t2, mut rx2) = QuorumTransport::start(2, addrs.clone(), q, e, opts());
    let got = collect(&mut rx2, 2).await;
    assert_eq!(got[&(1, false)], vec![proposal(2, 0)]);
    assert_eq!(got[&(1, true)], vec![note(3)]);
    t2.send(1, &proposal(3, 1));
    assert_eq!(next_msg(&mut n[0].rx).await, (2, proposal(3, 1)));
    assert_eq!(n[0].t.metrics().disconnects_reported, 1);
    t2.shutdown();
    n[0].t.shutdown();
}

#[tokio::test]
async fn one_sided_disconnect_is_reported_once_on_the_other_side() {
    let (mut n, _) = cluster(2, opts()).await;
    n[0].t.send(2, &proposal(1, 0));
    n[1].t.send(1, &proposal(1, 1));
    next_msg(&mut n[1].rx).await;
    next_msg(&mut n[0].rx).await;

    // 2 closes (zab's RoleChanged); it reports nothing itself, 1 reports the break once
    // even though both of its connections with 2 fail.
    n[1].t.disconnect(1);
    assert_eq!(
        next(&mut n[0].rx).await,
        TransportEvent::Disconnected { peer: 2 }
    );

    // A new stream in both directions; no second Disconnected anywhere.
    n[0].t.send(2, &proposal(2, 0));
    assert_eq!(next_msg(&mut n[1].rx).await, (1, proposal(2, 0)));
    n[1].t.send(1, &proposal(2, 1));
    assert_eq!(next_msg(&mut n[0].rx).await, (2, proposal(2, 1)));
    assert_eq!(n[0].t.metrics().disconnects_reported, 1);
    assert_eq!(n[1].t.metrics().disconnects_reported, 0);
    assert!(n[0].rx.try_recv().is_err() && n[1].rx.try_recv().is_err());
    for x in &n {
        x.t.shutdown();
    }
}

/// A transport as server 1 with a fake peer 2 at 127.0.0.1 (nothing listens there).
async fn lone(o: TransportOptions) -> (QuorumTransport, mpsc::Receiver<TransportEvent>, PeerAddrs) {
    let (q, e, me) = bind().await;
    let dead = {
        let (q2, e2, a2) = bind().await;
        drop((q2, e2));
        a2
    };
    let peers = HashMap::from([(1, me), (2, dead)]);
    let (t, rx) = QuorumTransport::start(1, peers, q, e, o);
    (t, rx, me)
}

/// Connects to `to` from `src`, sends `hs`, and returns the stream plus whether an ack
/// (a valid handshake from server 1 on `ch`) came back rather than EOF.
async fn raw(to: SocketAddr, src: &str, hs: &[u8]) -> (TcpStream, bool) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(src.parse().unwrap()).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    s.write_all(hs).await.unwrap();
    let mut ack = [0u8; HANDSHAKE_LEN];
    let acked = match tokio::time::timeout(GUARD, s.read_exact(&mut ack))
        .await
        .unwrap()
    {
        Ok(_) => {
            assert_eq!(parse_handshake(&ack).unwrap().0, 1);
            true
        }
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            false
        }
    };
    (s, acked)
}

#[tokio::test]
async fn bad_handshakes_are_refused() {
    let (t, mut rx, me) = lone(opts()).await;
    let q = me.quorum;
    let mut bad_magic = handshake(2, Channel::Quorum);
    bad_magic[0] ^= 0xff;
    let mut bad_version = handshake(2, Channel::Quorum);
    bad_version[5] = 9;
    let mut bad_channel = handshake(2, Channel::Quorum);
    bad_channel[6] = 7;
    let cases: Vec<(&str, SocketAddr, &str, Vec<u8>)> = vec![
        (
            "unknown id",
            q,
            "127.0.0.1:0",
            handshake(3, Channel::Quorum).to_vec(),
        ),
        (
            "own id",
            q,
            "127.0.0.1:0",
            handshake(1, Channel::Quorum).to_vec(),
        ),
        (
            "wrong source IP",
            q,
            "127.0.0.2:0",
            handshake(2, Channel::Quorum).to_vec(),
        ),
        ("bad magic", q, "127.0.0.1:0", bad_magic.to_vec()),
        ("bad version", q, "127.0.0.1:0", bad_version.to_vec()),
        ("unknown channel", q, "127.0.0.1:0", bad_channel.to_vec()),
        (
            "election handshake on the quorum port",
            q,
            "127.0.0.1:0",
            handshake(2, Channel::Election).to_vec(),
        ),
        (
            "quorum handshake on the election port",
            me.election,
            "127.0.0.1:0",
            handshake(2, Channel::Quorum).to_vec(),
        ),
        (
            "short handshake then EOF",
            q,
            "127.0.0.1:0",
            handshake(2, Channel::Quorum)[..7].to_vec(),
        ),
    ];
    for (what, to, src, hs) in &cases {
        let (mut s, acked) = if what.contains("EOF") {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(src.parse().unwrap()).unwrap();
            let mut s = sock.connect(*to).await.unwrap();
            s.write_all(hs).await.unwrap();
            s.shutdown().await.unwrap();
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(GUARD, s.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            (s, n != 0)
        } else {
            raw(*to, src, hs).await
        };
        assert!(!acked, "{what}: must be refused");
        let _ = s.shutdown().await;
    }
    assert_eq!(t.metrics().handshakes_refused, cases.len() as u64);
    // The genuine peer from its configured IP is accepted.
    let (_s, acked) = raw(q, "127.0.0.1:0", &handshake(2, Channel::Quorum)).await;
    assert!(acked);
    assert!(rx.try_recv().is_err(), "refusals report nothing");
    t.shutdown();
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn poison_frames_close_the_connection_and_report_the_break() {
    let o = TransportOptions {
        max_message_bytes: 1024,
        ..opts()
    };
    let (t, mut rx, me) = lone(o).await;
    let good = proposal(1, 5);
    let mut garbage = zkd_zab::encode(&good);
    garbage[1..5].copy_from_slice(&99i32.to_be_bytes()); // unknown packet type
    let oversized = (1024 + FRAME_OVERHEAD as u32 + 1).to_be_bytes().to_vec();
    let huge = u32::MAX.to_be_bytes().to_vec();
    let mut truncated = frame(&zkd_zab::encode(&good));
    truncated.truncate(truncated.len() - 3);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage body", frame(&garbage)),
        ("empty frame", frame(&[])),
        ("oversized length", oversized),
        ("4 GiB length", huge),
        ("truncated frame", truncated),
        (
            "election message on the quorum channel",
            frame(&zkd_zab::encode(&note(1))),
        ),
    ];
    let mut poison = 0;
    for (what, bad) in &cases {
        let (mut s, acked) = raw(me.quorum, "127.0.0.1:0", &handshake(2, Channel::Quorum)).await;
        assert!(acked, "{what}");
        let mut bytes = frame(&zkd_zab::encode(&good));
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(&frame(&zkd_zab::encode(&proposal(2, 5))));
        if what.starts_with("truncated") {
            bytes.truncate(bytes.len() - frame(&zkd_zab::encode(&proposal(2, 5))).len());
        }
        s.write_all(&bytes).await.unwrap();
        if what.starts_with("truncated") {
            s.shutdown().await.unwrap();
        }
        assert_eq!(next_msg(&mut rx).await, (2, good.clone()), "{what}");
        assert_eq!(
            next(&mut rx).await,
            TransportEvent::Disconnected { peer: 2 },
            "{what}"
        );
        // The transport closed its side: we read EOF (or a reset), never data.
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(GUARD, s.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{what}: {r:?}");
        // A truncated frame is an ordinary break (a peer dying mid-write), not poison.
        poison += u64::from(!what.starts_with("truncated"));
        assert_eq!(t.metrics().poison_frames, poison, "{what}");
    }
    // Election channel: an oversized notification frame is poison too, but no break is
    // reported (elections are best effort).
    let (mut s, acked) = raw(me.election, "127.0.0.1:0", &handshake(2, Channel::Election)).await;
    assert!(acked);
    let mut bytes = frame(&zkd_zab::encode(&note(4)));
    bytes.extend_from_slice(&frame(&[1u8; ELECTION_FRAME_MAX + 1]));
    s.write_all(&bytes).await.unwrap();
    assert_eq!(next_msg(&mut rx).await, (2, note(4)));
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(GUARD, s.read(&mut b)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)));
    assert_eq!(t.metrics().poison_frames, poison + 1);
    assert!(rx.try_recv().is_err());
    t.shutdown();
}

#[tokio::test]
async fn random_bytes_after_a_valid_handshake_never_panic() {
    use rand::{Rng, SeedableRng};
    let (t, mut rx, me) = lone(opts()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for _ in 0..40 {
        let (mut s, acked) = raw(me.quorum, "127.0.0.1:0", &handshake(2, Channel::Quorum)).await;
        assert!(acked);
        let len = rng.gen_range(0..300);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.5) && junk.len() >= 4 {
            // A plausible length prefix, so the codec sees the garbage too.
            let n = (junk.len() - 4) as u32;
            junk[..4].copy_from_slice(&n.to_be_bytes());
        }
        s.write_all(&junk).await.unwrap();
        s.shutdown().await.unwrap();
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(GUARD, s.read(&mut b)).await.unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    // Still serving: a genuine peer's message gets through after whatever the junk made.
    let (mut s, acked) = raw(me.quorum, "127.0.0.1:0", &handshake(2, Channel::Quorum)).await;
    assert!(acked);
    s.write_all(&frame(&zkd_zab::encode(&proposal(9, 9))))
        .await
        .unwrap();
    loop {
        match next(&mut rx).await {
            TransportEvent::Message { msg, .. } if msg == proposal(9, 9) => break,
            _ => {}
        }
    }
    t.shutdown();
}

#[tokio::test]
async fn quorum_queue_overflow_to_a_dead_peer_reports_disconnected() {
    let o = TransportOptions {
        quorum_queue_max_messages: 4,
        election_queue_max_messages: 2,
        ..opts()
    };
    let (t, mut rx, _) = lone(o).await;
    for i in 0..5 {
        t.send(2, &note(i));
    }
    for i in 0..4 {
        t.send(2, &proposal(i, 0));
    }
    assert!(rx.try_recv().is_err(), "within the cap nothing is reported");
    t.send(2, &proposal(4, 0));
    assert_eq!(
        next(&mut rx).await,
        TransportEvent::Disconnected { peer: 2 }
    );
    let m = t.metrics();
    assert_eq!(m.quorum_overflows, 1);
    assert_eq!(m.election_dropped, 3);
    assert_eq!(m.disconnects_reported, 1);
    t.send(99, &proposal(0, 0));
    assert_eq!(t.metrics().unroutable, 1);
    t.shutdown();
}

#[tokio::test]
async fn quorum_queue_overflow_behind_a_stalled_reader_reports_disconnected() {
    let o = TransportOptions {
        quorum_queue_max_bytes: 1 << 20,
        write_stall_timeout: Duration::from_secs(30),
        ..opts()
    };
    // Server 2 is a raw acceptor that acks the handshake and then never reads.
    let (q, e, me) = bind().await;
    let (q2, _e2, a2) = bind().await;
    let (t, mut rx) = QuorumTransport::start(1, HashMap::from([(2, a2)]), q, e, o);
    let _ = me;
    let stalled = tokio::spawn(async move {
        let (mut s, _) = q2.accept().await.unwrap();
        let mut hs = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut hs).await.unwrap();
        s.write_all(&handshake(2, Channel::Quorum)).await.unwrap();
        s // keep it open, unread
    });
    let big = Message::Snap {
        zxid: 1,
        data: vec![7; 256 * 1024],
    };
    let mut sent = 0;
    let ev = loop {
        t.send(2, &big);
        sent += 1;
        assert!(sent < 10_000, "never overflowed");
        if let Ok(ev) = rx.try_recv() {
            break ev;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(ev, TransportEvent::Disconnected { peer: 2 });
    assert_eq!(t.metrics().quorum_overflows, 1);
    let _s = stalled.await.unwrap();
    t.shutdown();
}

#[tokio::test]
async fn shutdown_closes_everything() {
    let (mut n, addrs) = cluster(2, opts()).await;
    n[0].t.send(2, &proposal(1, 0));
    n[1].t.send(1, &proposal(1, 1));
    n[1].t.send(1, &note(1));
    next_msg(&mut n[1].rx).await;
    collect(&mut n[0].rx, 2).await;
    assert_eq!(n[1].t.metrics().connections, 3);

    n[1].t.shutdown();
    n[1].t.shutdown(); // idempotent
    assert!(tokio::time::timeout(GUARD, n[1].rx.recv())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        next(&mut n[0].rx).await,
        TransportEvent::Disconnected { peer: 2 }
    );
    assert_eq!(n[1].t.metrics().connections, 0);
    // Both listeners are closed.
    for a in [addrs[&2].quorum, addrs[&2].election] {
        let r = TcpStream::connect(a).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }
    n[1].t.send(1, &proposal(2, 1)); // ignored, no panic
                                     // Dropping the last handle shuts down too.
    let Node { t, mut rx } = n.remove(0);
    let t2 = t.clone();
    drop(t);
    t2.send(2, &proposal(3, 0)); // a clone still works
    drop(t2);
    assert!(tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn extra_allowed_ips_admit_another_source_address() {
    let o = TransportOptions {
        extra_allowed_ips: HashMap::from([(2, vec!["127.0.0.2".parse().unwrap()])]),
        ..opts()
    };
    let (t, _rx, me) = lone(o).await;
    let hs = handshake(2, Channel::Quorum);
    assert!(raw(me.quorum, "127.0.0.2:0", &hs).await.1);
    assert!(raw(me.quorum, "127.0.0.1:0", &hs).await.1);
    assert!(!raw(me.quorum, "127.0.0.3:0", &hs).await.1);
    t.shutdown();
}

#[tokio::test]
async fn pending_handshakes_are_capped() {
    let o = TransportOptions {
        max_pending_handshakes: 1,
        ..opts()
    };
    let (t, _rx, me) = lone(o).await;
    let hs = handshake(2, Channel::Quorum);
    // The first connection holds the only slot by not finishing its handshake.
    let mut first = TcpStream::connect(me.quorum).await.unwrap();
    first.write_all(&hs[..3]).await.unwrap();
    assert!(!raw(me.quorum, "127.0.0.1:0", &hs).await.1, "no slot left");
    // Finishing it frees the slot (before the ack is sent).
    first.write_all(&hs[3..]).await.unwrap();
    let mut ack = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(GUARD, first.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert!(
        raw(me.election, "127.0.0.1:0", &handshake(2, Channel::Election))
            .await
            .1
    );
    assert_eq!(t.metrics().handshakes_refused, 1);
    t.shutdown();
}

#[tokio::test]
async fn an_ack_from_the_wrong_server_is_a_dial_failure() {
    // Server 1 believes server 2 lives where server 3 actually listens.
    let (q1, e1, a1) = bind().await;
    let (q3, e3, a3) = bind().await;
    let (t1, mut rx1) =
        QuorumTransport::start(1, HashMap::from([(2, a3), (3, a3)]), q1, e1, opts());
    let (t3, _rx3) = QuorumTransport::start(3, HashMap::from([(1, a1)]), q3, e3, opts());
    t1.send(2, &proposal(1, 0));
    tokio::time::timeout(GUARD, async {
        while t1.metrics().dial_failures == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(t1.metrics().connections, 0);
    assert_eq!(t1.metrics().messages_sent, 0);
    assert!(rx1.try_recv().is_err(), "a failed dial is not a break");
    t1.shutdown();
    t3.shutdown();
}

#[tokio::test]
async fn an_acceptor_that_writes_breaks_the_stream() {
    let (q, e, _) = bind().await;
    let (q2, _e2, a2) = bind().await;
    let (t, mut rx) = QuorumTransport::start(1, HashMap::from([(2, a2)]), q, e, opts());
    let peer = tokio::spawn(async move {
        let (mut s, _) = q2.accept().await.unwrap();
        let mut hs = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut hs).await.unwrap();
        s.write_all(&handshake(2, Channel::Quorum)).await.unwrap();
        let mut b = vec![0u8; 4 + zkd_zab::encode(&proposal(1, 0)).len()];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(b"junk").await.unwrap();
        s
    });
    t.send(2, &proposal(1, 0));
    let _s = peer.await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        TransportEvent::Disconnected { peer: 2 }
    );
    assert_eq!(t.metrics().connections, 0);
    t.shutdown();
}

#[test]
fn resolve_lists_every_ip_of_the_host() {
    let (a, ips) = PeerAddrs::resolve("127.0.0.1", 2888, 3888).unwrap();
    assert_eq!(a.quorum, "127.0.0.1:2888".parse().unwrap());
    assert_eq!(a.election, "127.0.0.1:3888".parse().unwrap());
    assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
}

// Multi-threaded: the locking must hold up under real parallelism.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_events_channel_delays_but_never_loses_or_reorders_a_break() {
    let o = TransportOptions {
        event_capacity: 1,
        ..opts()
    };
    let (mut n, _) = cluster(2, o).await;
    // Establish 1 -> 2 so that 1 has a quorum stream to lose.
    n[0].t.send(2, &proposal(0, 0));
    assert_eq!(next_msg(&mut n[1].rx).await, (1, proposal(0, 0)));
    // 1's host does not read: p1 fills its channel, p2 waits in the reader.
    n[1].t.send(1, &proposal(1, 1));
    n[1].t.send(1, &proposal(2, 1));
    // Wait until both are on the wire (disconnect() discards what is still queued).
    tokio::time::timeout(GUARD, async {
        while n[1].t.metrics().messages_sent < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    // 2 drops the stream and opens a new one. Whenever 1 notices (EOF, or the new
    // inbound connection), and however full its channel is, it must deliver a prefix of
    // the old stream, then one Disconnected, then the new stream.
    n[1].t.disconnect(1);
    n[1].t.send(1, &proposal(3, 1));
    let mut old = Vec::new();
    let ev = loop {
        match next(&mut n[0].rx).await {
            TransportEvent::Message { from: 2, msg } => old.push(msg),
            ev => break ev,
        }
    };
    assert!(
        [proposal(1, 1), proposal(2, 1)].starts_with(&old),
        "{old:?}"
    );
    assert_eq!(ev, TransportEvent::Disconnected { peer: 2 });
    assert_eq!(next_msg(&mut n[0].rx).await, (2, proposal(3, 1)));
    assert_eq!(n[0].t.metrics().disconnects_reported, 1);
    for x in &n {
        x.t.shutdown();
    }
}

#[tokio::test]
async fn message_size_limit_is_max_message_bytes_of_data() {
    let o = TransportOptions {
        max_message_bytes: 300_000,
        ..opts()
    };
    let (mut n, _) = cluster(2, o).await;
    let fits = Message::Snap {
        zxid: 1,
        data: vec![3; 300_000],
    };
    n[0].t.send(2, &fits);
    assert_eq!(next_msg(&mut n[1].rx).await, (1, fits));
    // One byte more cannot be sent: the stream breaks here rather than at the peer.
    n[0].t.send(
        2,
        &Message::Snap {
            zxid: 2,
            data: vec![3; 300_001],
        },
    );
    assert_eq!(
        next(&mut n[0].rx).await,
        TransportEvent::Disconnected { peer: 2 }
    );
    assert_eq!(
        next(&mut n[1].rx).await,
        TransportEvent::Disconnected { peer: 1 }
    );
    for x in &n {
        x.t.shutdown();
    }
}

#[test]
fn handshake_layout() {
    assert_eq!(
        handshake(0x0102_0304_0506_0708, Channel::Quorum),
        [0x7a, 0x6b, 0x44, 0x51, 0, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(
        parse_handshake(&handshake(5, Channel::Election)),
        Ok((5, Channel::Election))
    );
}

/// Three real zab peers over three real transports: they elect a leader and commit a
/// proposal; the leader dies, the survivors see the break, elect again and commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zab_peers_elect_and_commit_over_the_transport() {
    use zkd_zab::{Config, Output, Restored, Role, Zab};

    struct Host {
        zab: Zab,
        t: QuorumTransport,
        role: Role,
        applied: Vec<Vec<u8>>,
    }
    let (nodes, _) = cluster(3, opts()).await;
    let (all_tx, mut all_rx) = mpsc::channel::<(ServerId, TransportEvent)>(256);
    let mut hosts: HashMap<ServerId, Host> = HashMap::new();
    for (i, Node { t, mut rx }) in nodes.into_iter().enumerate() {
        let id = i as u64 + 1;
        let tx = all_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((id, ev)).await.is_err() {
                    return;
                }
            }
        });
        let mut cfg = Config::new(id, vec![1, 2, 3], vec![]);
        cfg.max_message_bytes = opts().max_message_bytes;
        let zab = Zab::new(cfg, Restored::default(), id).unwrap();
        hosts.insert(
            id,
            Host {
                zab,
                t,
                role: Role::Looking,
                applied: Vec::new(),
            },
        );
    }
    drop(all_tx);

    // The host loop of the crate header, in miniature (everything "durable" at once).
    fn pump(h: &mut Host) {
        loop {
            let out = h.zab.ready();
            if out.is_empty() {
                return;
            }
            for o in out {
                match o {
                    Output::Send { to, msg } => h.t.send(to, &msg),
                    // Only a role change closes the streams, not `serving` flipping.
                    Output::RoleChanged { role, .. } if role != h.role => {
                        h.t.disconnect_all();
                        h.role = role;
                    }
                    Output::Apply { payload, .. } => h.applied.push(payload),
                    Output::TakeSnapshot => {
                        let z = h.zab.applied_zxid();
                        h.zab.snapshot_ready(z, vec![1]).unwrap();
                    }
                    _ => {}
                }
            }
            let last = h.zab.last_zxid();
            h.zab.log_synced(last);
        }
    }

    /// Runs the hosts until every one has applied `payload`; returns the leader.
    async fn drive(
        hosts: &mut HashMap<ServerId, Host>,
        events: &mut mpsc::Receiver<(ServerId, TransportEvent)>,
        tick: &mut tokio::time::Interval,
        disconnects: &mut Vec<(ServerId, ServerId)>,
        payload: &'static [u8],
    ) -> ServerId {
        let mut proposed = false;
        loop {
            for h in hosts.values_mut() {
                pump(h);
            }
            let leader = hosts
                .values()
                .find(|h| h.zab.role() == Role::Leading && h.zab.is_serving())
                .map(|h| h.zab.id());
            if let Some(l) = leader {
                if !proposed && hosts.values().all(|h| h.zab.is_serving()) {
                    let z = &mut hosts.get_mut(&l).unwrap().zab;
                    z.propose(payload.to_vec()).unwrap();
                    proposed = true;
                    continue;
                }
                let done = |h: &Host| h.applied.last().map(Vec::as_slice) == Some(payload);
                if proposed && hosts.values().all(done) {
                    return l;
                }
            }
            tokio::select! {
                _ = tick.tick() => {
                    for h in hosts.values_mut() {
                        h.zab.tick();
                    }
                }
                ev = events.recv() => {
                    let (id, ev) = ev.expect("forwarders alive");
                    let Some(h) = hosts.get_mut(&id) else { continue };
                    match ev {
                        TransportEvent::Message { from, msg } => {
                            let _ = h.zab.step(from, msg);
                        }
                        TransportEvent::Disconnected { peer } => {
                            disconnects.push((id, peer));
                            h.zab.disconnected(peer);
                        }
                    }
                }
            }
        }
    }

    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut disconnects: Vec<(ServerId, ServerId)> = Vec::new();
    let first = tokio::time::timeout(
        GUARD,
        drive(&mut hosts, &mut all_rx, &mut tick, &mut disconnects, b"one"),
    )
    .await
    .expect("no commit with three servers");
    let dead = hosts.remove(&first).unwrap();
    dead.t.shutdown();
    let second = tokio::time::timeout(
        GUARD,
        drive(&mut hosts, &mut all_rx, &mut tick, &mut disconnects, b"two"),
    )
    .await
    .expect("no commit after the leader died");
    assert_ne!(first, second);
    for (id, h) in &hosts {
        assert!(
            disconnects.contains(&(*id, first)),
            "server {id} never saw the dead leader's stream break: {disconnects:?}"
        );
        assert_eq!(h.applied, vec![b"one".to_vec(), b"two".to_vec()]);
        h.t.shutdown();
    }
}
