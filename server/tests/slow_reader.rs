//! A client that stops reading must not make the server buffer without bound: once more
//! than MAX_OUTBOUND_BYTES are queued for it, its connection is closed, and other clients
//! carry on.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ZkdProcess;
use zkd_proto::records::*;
use zkd_proto::{Record, Request};

fn handshake(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = ConnectRequest {
        time_out: 30_000,
        passwd: vec![0; 16],
        has_read_only: true,
        ..Default::default()
    };
    s.write_all(&zkd_proto::frame::frame(&req.to_bytes()))
        .unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    s
}

fn call(s: &mut TcpStream, xid: i32, req: &Request) -> ReplyHeader {
    s.write_all(&req.encode_frame(xid)).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    ReplyHeader::read(&mut zkd_proto::Reader::new(&body)).unwrap()
}

#[test]
fn a_client_that_stops_reading_is_cut_off_and_others_are_served() {
    let mut z = ZkdProcess::start("");
    let addr = z.addr().to_string();
    let mut writer = handshake(&addr);
    let big = vec![7u8; 1_000_000];
    let create = Request::Create {
        op: zkd_proto::OpCode::Create,
        req: CreateRequest {
            path: "/big".into(),
            data: Some(big),
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    };
    assert_eq!(call(&mut writer, 1, &create).err, 0);

    // 100 pipelined reads of a 1 MB node, never read: ~100 MB of replies.
    let mut slow = handshake(&addr);
    let get = Request::GetData(GetDataRequest {
        path: "/big".into(),
        watch: false,
    });
    let mut frames = Vec::new();
    for xid in 1..=100 {
        frames.extend_from_slice(&get.encode_frame(xid));
    }
    slow.write_all(&frames).unwrap();

    // Others are served meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let exists = Request::Exists(ExistsRequest {
        path: "/big".into(),
        watch: false,
    });
    assert_eq!(call(&mut writer, 2, &exists).err, 0);

    // The slow connection was closed: draining it ends in EOF well before 100 MB.
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
        assert!(Instant::now() < deadline, "slow connection never closed");
    }
    assert!(
        total < 60_000_000,
        "{total} bytes were sent to the slow reader"
    );
    assert_eq!(call(&mut writer, 3, &exists).err, 0);
    assert!(z.is_running());
}

/// Replies go straight to the socket while nothing is queued for the connection, and to
/// its writer task once the socket buffer is full (a partial send queues the rest). A
/// reader that falls behind and then catches up must still get every reply whole and in
/// xid order, with the watch event a later write triggers after all of them.
#[test]
fn replies_stay_whole_and_in_order_when_the_socket_buffer_fills() {
    let mut z = ZkdProcess::start("");
    let addr = z.addr().to_string();
    let mut writer = handshake(&addr);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let create = Request::Create {
        op: zkd_proto::OpCode::Create,
        req: CreateRequest {
            path: "/n".into(),
            data: Some(data.clone()),
            acl: Acl::open_unsafe(),
            flags: 0,
        },
    };
    assert_eq!(call(&mut writer, 1, &create).err, 0);

    // 40 reads (~12 MB of replies, far more than a socket buffer) with small exists
    // requests between them, the last of which sets a watch; nothing is read yet.
    let mut lagging = handshake(&addr);
    let mut frames = Vec::new();
    let mut xid = 0;
    for i in 0..40 {
        xid += 1;
        let get = Request::GetData(GetDataRequest {
            path: "/n".into(),
            watch: false,
        });
        frames.extend_from_slice(&get.encode_frame(xid));
        xid += 1;
        let exists = Request::Exists(ExistsRequest {
            path: "/n".into(),
            watch: i == 39,
        });
        frames.extend_from_slice(&exists.encode_frame(xid));
    }
    lagging.write_all(&frames).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A write by another session fires the watch while the replies are still backed up.
    let set = Request::SetData(SetDataRequest {
        path: "/n".into(),
        data: Some(vec![1]),
        version: -1,
    });
    assert_eq!(call(&mut writer, 2, &set).err, 0);

    let mut next_xid = 1;
    loop {
        let mut len = [0u8; 4];
        lagging.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        lagging.read_exact(&mut body).unwrap();
        let mut r = zkd_proto::Reader::new(&body);
        let h = ReplyHeader::read(&mut r).unwrap();
        if h.xid == -1 {
            assert_eq!(
                next_xid,
                xid + 1,
                "the watch event came before reply {next_xid}"
            );
            break;
        }
        assert_eq!(h.xid, next_xid, "replies out of order");
        assert_eq!(h.err, 0);
        if h.xid % 2 == 1 {
            let reply = GetDataResponse::read(&mut r).unwrap();
            assert_eq!(
                reply.data.as_deref(),
                Some(&data[..]),
                "reply {} torn",
                h.xid
            );
        }
        next_xid += 1;
    }
    assert!(z.is_running());
}
