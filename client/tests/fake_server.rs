//! Client behaviour against a scripted in-process server: ordering of notifications and
//! replies, connection loss, handshake refusal, pings, lastZxid bookkeeping. Needs no
//! ZooKeeper, so it always runs.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zkd_client::{Client, ConnectOptions, Error, ErrorCode, SessionState, WatchedEvent};
use zkd_proto::{
    ConnectRequest, ConnectResponse, GetDataResponse, Reader, Record, ReplyHeader, RequestHeader,
    Stat, WatcherEvent, Writer,
};

async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn write_frame(s: &mut TcpStream, body: &[u8]) {
    s.write_all(&zkd_proto::frame::frame(body)).await.unwrap();
}

fn reply(xid: i32, zxid: i64, err: i32, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    ReplyHeader { xid, zxid, err }.write(&mut w);
    w.buf.extend_from_slice(body);
    w.into_inner()
}

fn request_header(frame: &[u8]) -> RequestHeader {
    RequestHeader::read(&mut Reader::new(frame)).unwrap()
}

/// Accepts one client and answers its handshake with `timeout_ms` / session 0x1234.
async fn accept(listener: &TcpListener, timeout_ms: i32) -> (TcpStream, ConnectRequest) {
    let (mut s, _) = listener.accept().await.unwrap();
    let req = ConnectRequest::from_bytes(&read_frame(&mut s).await.unwrap()).unwrap();
    let resp = ConnectResponse {
        protocol_version: 0,
        time_out: timeout_ms,
        session_id: if timeout_ms > 0 { 0x1234 } else { 0 },
        passwd: vec![9; 16],
        read_only: false,
        has_read_only: true,
    };
    write_frame(&mut s, &resp.to_bytes()).await;
    (s, req)
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[tokio::test]
async fn handshake_fields_and_session_facts() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move { accept(&l, 6000).await });
    let c = Client::connect_with(
        ConnectOptions::new(&addr, Duration::from_millis(5000)).last_zxid_seen(77),
    )
    .await
    .unwrap();
    let (_s, req) = server.await.unwrap();
    assert_eq!(req.protocol_version, 0);
    assert_eq!(req.time_out, 5000);
    assert_eq!(req.session_id, 0);
    assert_eq!(req.passwd, vec![0u8; 16]);
    assert_eq!(req.last_zxid_seen, 77);
    assert!(req.has_read_only && !req.read_only);
    assert_eq!(c.session_id(), 0x1234);
    assert_eq!(c.session_password(), vec![9; 16]);
    assert_eq!(c.negotiated_timeout(), Duration::from_millis(6000));
    assert_eq!(c.last_zxid(), 77);
    assert_eq!(c.state(), SessionState::Connected);
}

#[tokio::test]
async fn refused_session_is_expired() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let _s = accept(&l, 0).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let r = Client::connect_with(
        ConnectOptions::new(&addr, Duration::from_secs(5)).session(0x55, &[1; 16]),
    )
    .await;
    assert!(matches!(r, Err(Error::SessionExpired)), "{r:?}");
}

#[tokio::test]
async fn hang_up_during_handshake_is_connection_loss() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = read_frame(&mut s).await;
    });
    let r = Client::connect(&addr, Duration::from_secs(5)).await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
}

#[tokio::test]
async fn silent_server_times_out_the_connect() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (_s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let r = Client::connect_with(
        ConnectOptions::new(&addr, Duration::from_secs(5))
            .connect_timeout(Duration::from_millis(200)),
    )
    .await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
}

#[tokio::test]
async fn notification_before_reply_is_delivered_first() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let f = read_frame(&mut s).await.unwrap();
        let h = request_header(&f);
        assert_eq!((h.xid, h.op_type), (1, 4));
        let ev = WatcherEvent {
            event_type: 3,
            state: 3,
            path: "/w".into(),
        };
        // Notification and reply in one write: the client must still order them.
        let mut both = zkd_proto::frame::frame(&reply(-1, 900, 0, &ev.to_bytes()));
        let body = GetDataResponse {
            data: Some(b"v".to_vec()),
            stat: Stat::default(),
        };
        both.extend(zkd_proto::frame::frame(&reply(1, 10, 0, &body.to_bytes())));
        s.write_all(&both).await.unwrap();
        s
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    let mut events = c.take_events().unwrap();
    assert!(c.take_events().is_none());
    let (data, _) = c.get_data("/w", true).await.unwrap();
    assert_eq!(data, b"v");
    assert_eq!(
        events.try_recv().unwrap(),
        WatchedEvent {
            event_type: 3,
            state: 3,
            path: "/w".into(),
            zxid: 900
        }
    );
    // The reply's zxid counts; the notification's (larger) one does not.
    assert_eq!(c.last_zxid(), 10);
    let _s = server.await.unwrap();
}

#[tokio::test]
async fn replies_match_in_fifo_order_and_zero_zxid_is_ignored() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let mut xids = vec![];
        for _ in 0..3 {
            xids.push(request_header(&read_frame(&mut s).await.unwrap()).xid);
        }
        assert_eq!(xids, vec![1, 2, 3]);
        write_frame(&mut s, &reply(1, 5, 0, &[])).await;
        write_frame(&mut s, &reply(2, 0, -101, &[])).await;
        write_frame(&mut s, &reply(3, -1, 0, &[0, 0, 0, 0])).await;
        s
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    let (a, b, d) = tokio::join!(
        c.request_raw(2, vec![]),
        c.request_raw(2, vec![]),
        c.request_raw(999, vec![])
    );
    assert_eq!(a.unwrap().0.zxid, 5);
    assert_eq!(b.unwrap().0.err, -101);
    assert_eq!(
        d.unwrap(),
        (
            ReplyHeader {
                xid: 3,
                zxid: -1,
                err: 0
            },
            vec![0; 4]
        )
    );
    assert_eq!(c.last_zxid(), 5);
    let _s = server.await.unwrap();
}

#[tokio::test]
async fn connection_loss_fails_pending_and_later_requests() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let _ = read_frame(&mut s).await;
        drop(s);
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    let mut state = c.state_watcher();
    let r = c.delete("/x", -1).await;
    assert!(matches!(r, Err(Error::ConnectionLoss)), "{r:?}");
    state
        .wait_for(|s| *s == SessionState::Disconnected)
        .await
        .unwrap();
    assert!(matches!(
        c.exists("/x", false).await,
        Err(Error::ConnectionLoss)
    ));
    assert!(matches!(c.close().await, Err(Error::ConnectionLoss)));
}

#[tokio::test]
async fn out_of_order_xid_drops_the_connection() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let _ = read_frame(&mut s).await;
        write_frame(&mut s, &reply(42, 1, 0, &[])).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    assert!(matches!(
        c.request_raw(4, vec![]).await,
        Err(Error::ConnectionLoss)
    ));
    assert_eq!(c.state(), SessionState::Disconnected);
}

#[tokio::test]
async fn oversized_frame_drops_the_connection() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let _ = read_frame(&mut s).await;
        s.write_all(&(64 * 1024 * 1024i32).to_be_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    assert!(matches!(
        c.request_raw(4, vec![]).await,
        Err(Error::ConnectionLoss)
    ));
}

#[tokio::test]
async fn pings_when_idle_and_times_out_a_silent_server() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        // Negotiate 600 ms: pings every 200 ms of idleness, read timeout 400 ms.
        let (mut s, _) = accept(&l, 600).await;
        let f = read_frame(&mut s).await.unwrap();
        let h = request_header(&f);
        assert_eq!((h.xid, h.op_type), (-2, 11));
        write_frame(&mut s, &reply(-2, 123, 0, &[])).await;
        // Then go silent (but keep reading) so the client's read timeout fires.
        while read_frame(&mut s).await.is_some() {}
    });
    let c = Client::connect(&addr, Duration::from_millis(600))
        .await
        .unwrap();
    let mut state = c.state_watcher();
    tokio::time::timeout(
        Duration::from_secs(3),
        state.wait_for(|s| *s == SessionState::Disconnected),
    )
    .await
    .expect("read timeout should drop the connection")
    .unwrap();
    // A ping reply's zxid does not count.
    assert_eq!(c.last_zxid(), 0);
    server.await.unwrap();
}

#[tokio::test]
async fn auth_failure_sets_state_and_fails_later_requests() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let f = read_frame(&mut s).await.unwrap();
        let h = request_header(&f);
        assert_eq!((h.xid, h.op_type), (-4, 100));
        write_frame(&mut s, &reply(-4, 0, -115, &[])).await;
        drop(s);
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    let r = c.add_auth("bogus", b"x").await;
    assert!(
        matches!(r, Err(Error::Keeper(ErrorCode::AuthFailed))),
        "{r:?}"
    );
    assert_eq!(c.state(), SessionState::AuthFailed);
    let mut state = c.state_watcher();
    // Give the reader time to see the hang-up; the state must stay AuthFailed.
    let _ = tokio::time::timeout(Duration::from_millis(200), state.changed()).await;
    assert_eq!(c.state(), SessionState::AuthFailed);
    assert!(matches!(
        c.exists("/", false).await,
        Err(Error::Keeper(ErrorCode::AuthFailed))
    ));
}

#[tokio::test]
async fn request_timeout_keeps_the_stream_in_step() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let a = request_header(&read_frame(&mut s).await.unwrap()).xid;
        tokio::time::sleep(Duration::from_millis(300)).await;
        write_frame(&mut s, &reply(a, 1, 0, &[])).await;
        let b = request_header(&read_frame(&mut s).await.unwrap()).xid;
        write_frame(&mut s, &reply(b, 2, 0, &[])).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let c = Client::connect_with(
        ConnectOptions::new(&addr, Duration::from_secs(6))
            .request_timeout(Some(Duration::from_millis(100))),
    )
    .await
    .unwrap();
    assert!(matches!(
        c.request_raw(3, vec![]).await,
        Err(Error::Timeout)
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (h, _) = c.request_raw(3, vec![]).await.unwrap();
    assert_eq!((h.xid, h.zxid), (2, 2));
}

#[tokio::test]
async fn close_sends_close_session_and_ends_closed() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = accept(&l, 6000).await;
        let h = request_header(&read_frame(&mut s).await.unwrap());
        assert_eq!((h.xid, h.op_type), (1, -11));
        write_frame(&mut s, &reply(1, 8, 0, &[])).await;
        // The client hangs up after the reply.
        assert!(read_frame(&mut s).await.is_none());
    });
    let c = Client::connect(&addr, Duration::from_secs(6))
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_eq!(c.state(), SessionState::Closed);
    assert_eq!(c.last_zxid(), 8);
    assert!(matches!(
        c.exists("/", false).await,
        Err(Error::SessionExpired)
    ));
    c.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .unwrap()
        .unwrap();
}
