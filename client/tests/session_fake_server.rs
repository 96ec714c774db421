//! The session layer on the wire, against a scripted in-process server (always runs):
//! what a reconnect sends (session id, password, lastZxidSeen, then the auth packets, then
//! setWatches2 with chroot-prefixed paths), that a request in flight on the lost
//! connection fails with ConnectionLoss, that a request issued while disconnected is
//! sent after the reconnect, and that a notification after the reconnect reaches the
//! re-armed watch with the chroot stripped.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zkd_client::{event_type, Error, SessionOptions, SessionState, ZooKeeper};
use zkd_proto::{
    AddWatchRequest, AuthPacket, ConnectRequest, ConnectResponse, ExistsRequest, GetDataRequest,
    GetDataResponse, Reader, Record, ReplyHeader, RequestHeader, SetWatches2, Stat, WatcherEvent,
    Writer,
};

async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// Reads the next request that is not a ping.
async fn read_request(s: &mut TcpStream) -> (RequestHeader, Vec<u8>) {
    loop {
        let f = read_frame(s).await;
        let mut r = Reader::new(&f);
        let h = RequestHeader::read(&mut r).unwrap();
        if h.xid != -2 {
            return (h, r.rest().to_vec());
        }
    }
}

async fn reply(s: &mut TcpStream, xid: i32, zxid: i64, body: &[u8]) {
    let mut w = Writer::new();
    ReplyHeader { xid, zxid, err: 0 }.write(&mut w);
    w.buf.extend_from_slice(body);
    s.write_all(&zkd_proto::frame::frame(&w.into_inner()))
        .await
        .unwrap();
}

async fn handshake(l: &TcpListener) -> (TcpStream, ConnectRequest) {
    let (mut s, _) = l.accept().await.unwrap();
    let req = ConnectRequest::from_bytes(&read_frame(&mut s).await).unwrap();
    let resp = ConnectResponse {
        protocol_version: 0,
        time_out: 10_000,
        session_id: 0x55,
        passwd: vec![7; 16],
        read_only: false,
        has_read_only: true,
    };
    s.write_all(&zkd_proto::frame::frame(&resp.to_bytes()))
        .await
        .unwrap();
    (s, req)
}

fn get_data_response() -> Vec<u8> {
    GetDataResponse {
        data: Some(b"d".to_vec()),
        stat: Stat::default(),
    }
    .to_bytes()
}

#[tokio::test]
async fn reconnect_resumes_reauths_and_rearms_watches() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, req) = handshake(&l).await;
        assert_eq!((req.session_id, req.last_zxid_seen), (0, 0));
        // addAuth
        let (h, body) = read_request(&mut s).await;
        assert_eq!((h.xid, h.op_type), (-4, 100));
        let a = AuthPacket::from_bytes(&body).unwrap();
        assert_eq!(
            (a.scheme.as_str(), a.auth.as_slice()),
            ("digest", &b"u:p"[..])
        );
        reply(&mut s, -4, 0, &[]).await;
        // getData with a watch, under the chroot
        let (h, body) = read_request(&mut s).await;
        assert_eq!(h.op_type, 4);
        let g = GetDataRequest::from_bytes(&body).unwrap();
        assert_eq!((g.path.as_str(), g.watch), ("/root/w", true));
        reply(&mut s, h.xid, 0x10, &get_data_response()).await;
        // addWatch persistent
        let (h, body) = read_request(&mut s).await;
        assert_eq!(h.op_type, 106);
        let a = AddWatchRequest::from_bytes(&body).unwrap();
        assert_eq!((a.path.as_str(), a.mode), ("/root/p", 0));
        reply(&mut s, h.xid, 0x11, &[]).await;
        // A request that never gets its reply: the connection drops under it.
        let (h, _) = read_request(&mut s).await;
        assert_eq!(h.op_type, 4);
        drop(s);

        // The reconnect.
        let (mut s, req) = handshake(&l).await;
        assert_eq!(req.session_id, 0x55);
        assert_eq!(req.passwd, vec![7; 16]);
        assert_eq!(
            req.last_zxid_seen, 0x11,
            "lastZxidSeen from the newest reply"
        );
        let (h, body) = read_request(&mut s).await;
        assert_eq!((h.xid, h.op_type), (-4, 100), "auth re-sent first");
        assert_eq!(AuthPacket::from_bytes(&body).unwrap().scheme, "digest");
        reply(&mut s, -4, 0, &[]).await;
        let (h, body) = read_request(&mut s).await;
        assert_eq!((h.xid, h.op_type), (-8, 105), "then setWatches2");
        let sw = SetWatches2::from_bytes(&body).unwrap();
        assert_eq!(sw.relative_zxid, 0x11);
        assert_eq!(sw.data_watches, ["/root/w"]);
        assert_eq!(sw.persistent_watches, ["/root/p"]);
        assert!(sw.exist_watches.is_empty() && sw.child_watches.is_empty());
        reply(&mut s, -8, 0, &[]).await;
        // The request issued while disconnected arrives now.
        let (h, body) = read_request(&mut s).await;
        assert_eq!(h.op_type, 3);
        assert_eq!(ExistsRequest::from_bytes(&body).unwrap().path, "/root/y");
        reply(&mut s, h.xid, 0x12, &Stat::default().to_bytes()).await;
        // Fire the re-armed data watch.
        let ev = WatcherEvent {
            event_type: event_type::NODE_DATA_CHANGED,
            state: 3,
            path: "/root/w".into(),
        };
        reply(&mut s, -1, 0x13, &ev.to_bytes()).await;
        // Keep the socket open until the client is done.
        let mut buf = [0u8; 64];
        while s.read(&mut buf).await.unwrap_or(0) > 0 {}
    });

    let zk = ZooKeeper::connect_with(SessionOptions::new(
        &format!("{addr}/root"),
        Duration::from_secs(10),
    ))
    .await
    .unwrap();
    assert_eq!(zk.session_id(), 0x55);
    let mut states = zk.state_events();
    zk.add_auth("digest", b"u:p").await.unwrap();
    let (d, _, w) = zk.get_data_w("/w").await.unwrap();
    assert_eq!(d, b"d");
    let mut p = zk.watch("/p").await.unwrap();
    assert_eq!(zk.last_zxid(), 0x11);
    let lost = zk.get_data("/x").await;
    assert!(matches!(lost, Err(Error::ConnectionLoss)), "{lost:?}");
    assert_eq!(states.recv().await, Some(SessionState::Disconnected));
    let later = zk.exists("/y").await.unwrap();
    assert!(
        later.is_some(),
        "issued while disconnected, answered after the reconnect"
    );
    assert_eq!(zk.state(), SessionState::Connected);
    assert_eq!(states.recv().await, Some(SessionState::Connected));
    let ev = tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (event_type::NODE_DATA_CHANGED, "/w")
    );
    // The persistent stream saw the disconnect and the reconnect as None events.
    let a = p.next().await.unwrap();
    let b = p.next().await.unwrap();
    assert_eq!((a.event_type, a.state), (event_type::NONE, 0));
    assert_eq!((b.event_type, b.state), (event_type::NONE, 3));
    // Dropping the client closes the socket; the script then ends, and any assertion it
    // failed surfaces here.
    drop(zk);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server script ends")
        .expect("server script assertions");
}

/// A read-only server (A) and a read-write one (B) that refuses sessions at first: the
/// client lands on A (ConnectedReadOnly), probes the other host with `isro` as
/// ClientCnxn.pingRwServer does, and once B answers `rw` it leaves A and resumes the
/// session on B (Connected).
#[tokio::test]
async fn read_only_session_moves_to_a_read_write_server_found_by_isro() {
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a_addr, b_addr) = (
        a.local_addr().unwrap().to_string(),
        b.local_addr().unwrap().to_string(),
    );
    let server_a = tokio::spawn(async move {
        let (mut s, _) = a.accept().await.unwrap();
        let req = ConnectRequest::from_bytes(&read_frame(&mut s).await).unwrap();
        assert!(req.read_only, "the client said it accepts read-only");
        let resp = ConnectResponse {
            protocol_version: 0,
            time_out: 10_000,
            session_id: 0x77,
            passwd: vec![3; 16],
            read_only: true,
            has_read_only: true,
        };
        s.write_all(&zkd_proto::frame::frame(&resp.to_bytes()))
            .await
            .unwrap();
        // Answer pings until the client leaves.
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).await.is_err() {
                return;
            }
            let h = RequestHeader::read(&mut Reader::new(&body)).unwrap();
            if h.xid == -2 {
                reply(&mut s, -2, 0, &[]).await;
            }
        }
    });
    let server_b = tokio::spawn(async move {
        let mut probes = 0;
        loop {
            let (mut s, _) = b.accept().await.unwrap();
            let mut head = [0u8; 4];
            if s.read_exact(&mut head).await.is_err() {
                continue;
            }
            if &head == b"isro" {
                probes += 1;
                // Read-only for the first two probes, then read-write.
                let answer: &[u8] = if probes <= 2 { b"ro" } else { b"rw" };
                s.write_all(answer).await.unwrap();
                continue;
            }
            // A handshake.
            let mut body = vec![0u8; i32::from_be_bytes(head) as usize];
            s.read_exact(&mut body).await.unwrap();
            let req = ConnectRequest::from_bytes(&body).unwrap();
            if probes <= 2 {
                // Not serving yet: hang up, so the client ends up on A.
                continue;
            }
            assert_eq!((req.session_id, req.passwd.clone()), (0x77, vec![3; 16]));
            let resp = ConnectResponse {
                protocol_version: 0,
                time_out: 10_000,
                session_id: 0x77,
                passwd: vec![3; 16],
                read_only: false,
                has_read_only: true,
            };
            s.write_all(&zkd_proto::frame::frame(&resp.to_bytes()))
                .await
                .unwrap();
            let mut buf = [0u8; 64];
            while s.read(&mut buf).await.unwrap_or(0) > 0 {}
            return probes;
        }
    });

    let zk = ZooKeeper::connect_with(
        SessionOptions::new(&format!("{a_addr},{b_addr}"), Duration::from_secs(10))
            .read_only(true)
            .seed(3),
    )
    .await
    .unwrap();
    assert_eq!(zk.state(), SessionState::ConnectedReadOnly);
    assert_eq!(zk.connected_host().as_deref(), Some(a_addr.as_str()));
    zk.wait_for_state(Duration::from_secs(10), |s| s == SessionState::Connected)
        .await
        .unwrap();
    assert_eq!(zk.connected_host().as_deref(), Some(b_addr.as_str()));
    assert_eq!(zk.session_id(), 0x77);
    drop(zk);
    let probes = tokio::time::timeout(Duration::from_secs(5), server_b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(probes, 3, "moved on the first `rw` answer");
    tokio::time::timeout(Duration::from_secs(5), server_a)
        .await
        .unwrap()
        .unwrap();
}
