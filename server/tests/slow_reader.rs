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
