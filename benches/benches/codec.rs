//! Codec micro-benchmarks: request decode/encode of create, getData and setData, and
//! reply encode (ReplyHeader + body, framed the way the server frames replies).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use zkd_proto::records::{
    CreateRequest, GetDataRequest, GetDataResponse, ReplyHeader, RequestHeader, SetDataRequest,
    SetDataResponse, Stat,
};
use zkd_proto::{Acl, OpCode, Reader, Record, Request, Writer};

fn stat() -> Stat {
    Stat {
        czxid: 0x1_0000_0001,
        mzxid: 0x1_0000_0002,
        ctime: 1_700_000_000_000,
        mtime: 1_700_000_000_001,
        version: 3,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 100,
        num_children: 0,
        pzxid: 0x1_0000_0001,
    }
}

fn requests() -> Vec<(&'static str, Request)> {
    let data = vec![b'x'; 100];
    vec![
        (
            "create",
            Request::Create {
                op: OpCode::Create,
                req: CreateRequest {
                    path: "/zkd-bench-1234-1700000000000/c12-3-456789".into(),
                    data: Some(data.clone()),
                    acl: Acl::open_unsafe(),
                    flags: 0,
                },
            },
        ),
        (
            "getData",
            Request::GetData(GetDataRequest {
                path: "/zkd-bench-1234-1700000000000/k123".into(),
                watch: false,
            }),
        ),
        (
            "setData",
            Request::SetData(SetDataRequest {
                path: "/zkd-bench-1234-1700000000000/k123".into(),
                data: Some(data),
                version: -1,
            }),
        ),
    ]
}

/// The server's decode path: frame body → RequestHeader → typed Request.
fn decode(frame: &[u8]) -> Request {
    let mut r = Reader::new(&frame[4..]);
    let h = RequestHeader::read(&mut r).expect("header");
    Request::decode(h.op_type, r.rest()).expect("body")
}

/// A reply frame as the server builds it: length placeholder, header, body, length.
fn reply(xid: i32, body: &impl Record) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.write_i32(0);
    ReplyHeader {
        xid,
        zxid: 0x1_0000_0002,
        err: 0,
    }
    .write(&mut w);
    body.write(&mut w);
    let mut v = w.into_inner();
    let len = (v.len() - 4) as i32;
    v[..4].copy_from_slice(&len.to_be_bytes());
    v
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    for (name, req) in requests() {
        let frame = req.encode_frame(7);
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(black_box(&frame)))
        });
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| black_box(&req).encode_frame(7))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(1));
    let get = GetDataResponse {
        data: Some(vec![b'x'; 100]),
        stat: stat(),
    };
    g.bench_function("encode/getData", |b| b.iter(|| reply(7, black_box(&get))));
    let set = SetDataResponse { stat: stat() };
    g.bench_function("encode/setData", |b| b.iter(|| reply(7, black_box(&set))));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
