//! Hostile-input properties: decoders never panic on any bytes, refuse truncated records,
//! negative lengths and lying vector counts (without allocating for them), unknown op
//! codes and multi op types outside the multi set; plus the znode path rules.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use zkd_proto::jute::{DecodeError, Reader, Record, Writer};
use zkd_proto::path::{validate_path, validate_path_sequential};
use zkd_proto::records::*;
use zkd_proto::request::{
    decode_multi_ops, decode_multi_results, encode_multi_ops, encode_multi_results, MultiOp,
    MultiResult, Request,
};
use zkd_proto::txn::*;
use zkd_proto::OpCode;

// ---- allocation tracking ------------------------------------------------------------------

/// Records the largest single allocation made by the current thread while tracking is on,
/// so tests can show a lying length costs nothing (tests run on parallel threads).
struct TrackingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|m| m.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST.with(|m| m.get()))
}

// ---- helpers ------------------------------------------------------------------------------

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn be32(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ustr(s: &str) -> Vec<u8> {
    cat(&[&be32(s.len() as i32), s.as_bytes()])
}

/// Every op code ZooKeeper defines plus some neighbours, for picking op codes that reach
/// real decoders.
const INTERESTING_OPS: &[i32] = &[
    -11, -10, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108,
];

/// Op types a multi (or multiRead) may carry, as ZooKeeper's MultiOperationRecord.
const MULTI_OP_TYPES: &[i32] = &[1, 2, 4, 5, 8, 13, 15, 19, 21];
/// Result types a MultiResponse may carry.
const MULTI_RESULT_TYPES: &[i32] = &[-1, 1, 2, 4, 5, 8, 13, 15];

fn op_code() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => prop::sample::select(INTERESTING_OPS),
        1 => any::<i32>(),
    ]
}

/// Bytes that look a bit like jute: small ints, -1, length-prefixed text, multi headers
/// and end markers, so fuzzing gets past the first length field.
fn jute_ish() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        (-3i32..40).prop_map(be32),
        any::<i32>().prop_map(be32),
        Just(vec![0xff; 4]),
        Just(vec![0x7f, 0xff, 0xff, 0xff]),
        prop::sample::select(MULTI_OP_TYPES).prop_map(|t| cat(&[&be32(t), &[0], &be32(-1)])),
        Just(cat(&[&be32(-1), &[1], &be32(-1)])),
        "[a-z/]{0,6}".prop_map(|s| ustr(&s)),
    ];
    prop::collection::vec(chunk, 0..24).prop_map(|v| v.concat())
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..160), jute_ish(),]
}

/// Decodes `bytes` as one record type with both `read` and `from_bytes`.
fn poke<T: Record>(bytes: &[u8]) {
    let mut r = Reader::new(bytes);
    let _ = T::read(&mut r);
    assert!(r.position() <= bytes.len());
    let _ = T::from_bytes(bytes);
}

/// Feeds the bytes to every decoder zkd-proto has.
fn decode_everything(bytes: &[u8], op: i32) {
    poke::<Id>(bytes);
    poke::<Acl>(bytes);
    poke::<Stat>(bytes);
    poke::<StatPersisted>(bytes);
    poke::<ClientInfo>(bytes);
    poke::<ConnectRequest>(bytes);
    poke::<ConnectResponse>(bytes);
    poke::<SetWatches>(bytes);
    poke::<SetWatches2>(bytes);
    poke::<RequestHeader>(bytes);
    poke::<MultiHeader>(bytes);
    poke::<AuthPacket>(bytes);
    poke::<ReplyHeader>(bytes);
    poke::<GetDataRequest>(bytes);
    poke::<SetDataRequest>(bytes);
    poke::<ReconfigRequest>(bytes);
    poke::<SetDataResponse>(bytes);
    poke::<GetSaslRequest>(bytes);
    poke::<SetSaslRequest>(bytes);
    poke::<SetSaslResponse>(bytes);
    poke::<CreateRequest>(bytes);
    poke::<CreateTtlRequest>(bytes);
    poke::<DeleteRequest>(bytes);
    poke::<GetChildrenRequest>(bytes);
    poke::<GetAllChildrenNumberRequest>(bytes);
    poke::<GetChildren2Request>(bytes);
    poke::<CheckVersionRequest>(bytes);
    poke::<GetMaxChildrenRequest>(bytes);
    poke::<GetMaxChildrenResponse>(bytes);
    poke::<SetMaxChildrenRequest>(bytes);
    poke::<SyncRequest>(bytes);
    poke::<SyncResponse>(bytes);
    poke::<GetAclRequest>(bytes);
    poke::<SetAclRequest>(bytes);
    poke::<SetAclResponse>(bytes);
    poke::<AddWatchRequest>(bytes);
    poke::<WatcherEvent>(bytes);
    poke::<ErrorResponse>(bytes);
    poke::<CreateResponse>(bytes);
    poke::<Create2Response>(bytes);
    poke::<ExistsRequest>(bytes);
    poke::<ExistsResponse>(bytes);
    poke::<GetDataResponse>(bytes);
    poke::<GetChildrenResponse>(bytes);
    poke::<GetAllChildrenNumberResponse>(bytes);
    poke::<GetChildren2Response>(bytes);
    poke::<GetAclResponse>(bytes);
    poke::<CheckWatchesRequest>(bytes);
    poke::<RemoveWatchesRequest>(bytes);
    poke::<GetEphemeralsRequest>(bytes);
    poke::<GetEphemeralsResponse>(bytes);
    poke::<WhoAmIResponse>(bytes);
    poke::<TxnDigest>(bytes);
    poke::<TxnHeader>(bytes);
    poke::<CreateTxnV0>(bytes);
    poke::<CreateTxn>(bytes);
    poke::<CreateTtlTxn>(bytes);
    poke::<CreateContainerTxn>(bytes);
    poke::<DeleteTxn>(bytes);
    poke::<SetDataTxn>(bytes);
    poke::<CheckVersionTxn>(bytes);
    poke::<SetAclTxn>(bytes);
    poke::<SetMaxChildrenTxn>(bytes);
    poke::<CreateSessionTxn>(bytes);
    poke::<CloseSessionTxn>(bytes);
    poke::<ErrorTxn>(bytes);
    poke::<Txn>(bytes);
    poke::<MultiTxn>(bytes);
    let _ = decode_multi_ops(&mut Reader::new(bytes));
    let _ = decode_multi_results(&mut Reader::new(bytes));
    let _ = Request::decode(op, bytes);
    let _ = TxnBody::read(op, &mut Reader::new(bytes));
    let _ = TxnEntry::from_bytes(bytes);
    let _ = validate_path(&String::from_utf8_lossy(bytes));
}

/// Index of the TxnEntry in `samples()`; the others are request bodies.
const SAMPLE_TXN: usize = 2;

/// Valid encodings of composite records (op code, bytes), for mutation fuzzing.
fn samples() -> Vec<(i32, Vec<u8>)> {
    let create = CreateRequest {
        path: "/a/b".into(),
        data: Some(b"hello".to_vec()),
        acl: vec![
            Acl::new(31, "world", "anyone"),
            Acl::new(1, "digest", "u:p"),
        ],
        flags: 2,
    };
    let ops = vec![
        MultiOp::Create {
            op: OpCode::Create2,
            req: create.clone(),
        },
        MultiOp::Check(CheckVersionRequest {
            path: "/c".into(),
            version: 3,
        }),
        MultiOp::GetData(GetDataRequest {
            path: "/d".into(),
            watch: true,
        }),
    ];
    let mut multi = Writer::new();
    encode_multi_ops(&ops, &mut multi);
    let txn = TxnEntry {
        header: TxnHeader {
            client_id: 9,
            cxid: 1,
            zxid: 2,
            time: 3,
            txn_type: OpCode::Multi as i32,
        },
        body: TxnBody::Multi(vec![
            (
                OpCode::Create as i32,
                TxnBody::Create(CreateTxn {
                    path: "/x".into(),
                    data: None,
                    acl: Acl::open_unsafe(),
                    ephemeral: false,
                    parent_cversion: 4,
                }),
            ),
            (
                OpCode::SetData as i32,
                TxnBody::SetData(SetDataTxn {
                    path: "/x".into(),
                    data: Some(vec![1, 2]),
                    version: 1,
                }),
            ),
        ]),
    };
    let watches = SetWatches2 {
        relative_zxid: 5,
        data_watches: vec!["/a".into(), "/b".into()],
        exist_watches: vec![],
        child_watches: vec!["/".into()],
        persistent_watches: vec!["/p".into()],
        persistent_recursive_watches: vec![],
    };
    vec![
        (OpCode::Create as i32, create.to_bytes()),
        (OpCode::Multi as i32, multi.into_inner()),
        (OpCode::Multi as i32, txn.to_bytes()),
        (OpCode::SetWatches2 as i32, watches.to_bytes()),
        (
            OpCode::Reconfig as i32,
            ReconfigRequest {
                joining_servers: Some("server.1=a:1:2".into()),
                leaving_servers: None,
                new_members: Some(String::new()),
                cur_config_id: -1,
            }
            .to_bytes(),
        ),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Swap32(usize, i32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..6).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (
            any::<usize>(),
            prop_oneof![Just(-1), Just(-2), Just(0), Just(i32::MAX), -3i32..64]
        )
            .prop_map(|(i, v)| Mutation::Swap32(i, v)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match m {
        Mutation::Set(i, b) => bytes[i % n] = *b,
        Mutation::Insert(i, b) => {
            let at = i % (n + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(i, k) => {
            let at = i % n;
            let end = (at + k).min(n);
            bytes.drain(at..end);
        }
        Mutation::Swap32(i, v) => {
            if n >= 4 {
                let at = i % (n - 3);
                bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
}

// ---- never panic --------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(384))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in any_bytes(), op in op_code()) {
        decode_everything(&bytes, op);
    }

    #[test]
    fn request_decode_never_panics_for_any_op(op in any::<i32>(), bytes in any_bytes()) {
        let _ = Request::decode(op, &bytes);
        let _ = TxnBody::read(op, &mut Reader::new(&bytes));
    }

    #[test]
    fn decoders_never_panic_on_mutated_records(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..4),
        op in op_code(),
    ) {
        let samples = samples();
        let (sample_op, mut bytes) = samples[which.index(samples.len())].clone();
        for m in &muts {
            apply(&mut bytes, m);
        }
        decode_everything(&bytes, op);
        decode_everything(&bytes, sample_op);
    }
}

// ---- truncation ---------------------------------------------------------------------------

/// Every strict prefix of the composite samples fails (the exhaustive version over every
/// record type is in roundtrip.rs, which checks all prefixes of every generated value).
#[test]
fn truncated_samples_fail() {
    for (i, (op, bytes)) in samples().into_iter().enumerate() {
        let is_txn = i == SAMPLE_TXN;
        assert!(if is_txn {
            TxnEntry::from_bytes(&bytes).is_ok()
        } else {
            Request::decode(op, &bytes).is_ok()
        });
        for n in 0..bytes.len() {
            let p = &bytes[..n];
            if is_txn {
                assert!(TxnEntry::from_bytes(p).is_err(), "txn prefix {n}");
            } else {
                assert!(Request::decode(op, p).is_err(), "op {op} prefix {n}");
            }
        }
    }
}

fn connect_request(has_read_only: bool) -> impl Strategy<Value = ConnectRequest> {
    (
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        prop::collection::vec(any::<u8>(), 0..20),
        any::<bool>(),
    )
        .prop_map(move |(pv, z, to, sid, passwd, ro)| ConnectRequest {
            protocol_version: pv,
            last_zxid_seen: z,
            time_out: to,
            session_id: sid,
            passwd,
            read_only: ro && has_read_only,
            has_read_only,
        })
}

proptest! {
    #![proptest_config(cfg(64))]

    /// The readOnly byte is optional: the 44-byte (pre-3.4) prefix decodes as "no readOnly";
    /// every shorter prefix fails.
    #[test]
    fn connect_request_prefixes(c in connect_request(true)) {
        let bytes = c.to_bytes();
        let n = bytes.len();
        let legacy = ConnectRequest::from_bytes(&bytes[..n - 1]);
        prop_assert_eq!(
            legacy,
            Ok(ConnectRequest { read_only: false, has_read_only: false, ..c.clone() })
        );
        for k in 0..n - 1 {
            prop_assert!(ConnectRequest::from_bytes(&bytes[..k]).is_err(), "prefix {}", k);
        }
    }

    #[test]
    fn connect_request_without_read_only_prefixes(c in connect_request(false)) {
        let bytes = c.to_bytes();
        prop_assert_eq!(bytes.len(), 28 + c.passwd.len());
        for k in 0..bytes.len() {
            prop_assert!(ConnectRequest::from_bytes(&bytes[..k]).is_err(), "prefix {}", k);
        }
    }

    #[test]
    fn connect_response_prefixes(c in connect_request(true)) {
        let resp = ConnectResponse {
            protocol_version: c.protocol_version,
            time_out: c.time_out,
            session_id: c.session_id,
            passwd: c.passwd.clone(),
            read_only: c.read_only,
            has_read_only: true,
        };
        let bytes = resp.to_bytes();
        let n = bytes.len();
        prop_assert_eq!(
            ConnectResponse::from_bytes(&bytes[..n - 1]),
            Ok(ConnectResponse { read_only: false, has_read_only: false, ..resp.clone() })
        );
        for k in 0..n - 1 {
            prop_assert!(ConnectResponse::from_bytes(&bytes[..k]).is_err(), "prefix {}", k);
        }
    }
}

// ---- negative lengths ---------------------------------------------------------------------

fn zeros(n: usize) -> Vec<u8> {
    vec![0; n]
}

proptest! {
    #![proptest_config(cfg(128))]

    /// Any negative length other than -1 (null) is BadLength, wherever it appears: buffers,
    /// ustrings, vector counts, strings inside vectors, nested records, requests and txns.
    #[test]
    fn negative_lengths_are_bad_length(n in prop_oneof![i32::MIN..=-2, -5i32..=-2]) {
        let len = be32(n);
        let bad = Some(DecodeError::BadLength(n));
        // buffer
        prop_assert_eq!(GetSaslRequest::from_bytes(&len).err(), bad.clone());
        prop_assert_eq!(
            AuthPacket::from_bytes(&cat(&[&be32(0), &ustr("digest"), &len])).err(),
            bad.clone()
        );
        prop_assert_eq!(
            ConnectRequest::from_bytes(&cat(&[&zeros(24), &len, &[0]])).err(),
            bad.clone()
        );
        prop_assert_eq!(ConnectResponse::from_bytes(&cat(&[&zeros(16), &len])).err(), bad.clone());
        prop_assert_eq!(GetDataResponse::from_bytes(&cat(&[&len, &zeros(68)])).err(), bad.clone());
        prop_assert_eq!(
            SetDataRequest::from_bytes(&cat(&[&ustr("/a"), &len, &zeros(4)])).err(),
            bad.clone()
        );
        // ustring
        prop_assert_eq!(GetDataRequest::from_bytes(&cat(&[&len, &[1]])).err(), bad.clone());
        prop_assert_eq!(WatcherEvent::from_bytes(&cat(&[&zeros(8), &len])).err(), bad.clone());
        prop_assert_eq!(
            ReconfigRequest::from_bytes(&cat(&[&be32(-1), &len, &be32(-1), &zeros(8)])).err(),
            bad.clone()
        );
        // vector counts and elements
        prop_assert_eq!(GetChildrenResponse::from_bytes(&len).err(), bad.clone());
        prop_assert_eq!(
            GetChildrenResponse::from_bytes(&cat(&[&be32(2), &ustr("a"), &len])).err(),
            bad.clone()
        );
        prop_assert_eq!(
            SetAclRequest::from_bytes(&cat(&[&ustr("/a"), &len, &zeros(4)])).err(),
            bad.clone()
        );
        prop_assert_eq!(
            GetAclResponse::from_bytes(&cat(&[&be32(1), &be32(31), &len, &ustr("x")])).err(),
            bad.clone()
        );
        prop_assert_eq!(
            SetWatches2::from_bytes(&cat(&[&zeros(8), &zeros(4), &zeros(4), &zeros(4), &len])).err(),
            bad.clone()
        );
        prop_assert_eq!(WhoAmIResponse::from_bytes(&len).err(), bad.clone());
        // txns
        prop_assert_eq!(MultiTxn::from_bytes(&len).err(), bad.clone());
        prop_assert_eq!(MultiTxn::from_bytes(&cat(&[&be32(1), &be32(2), &len])).err(), bad.clone());
        prop_assert_eq!(CloseSessionTxn::from_bytes(&len).err(), bad.clone());
        let multi_header = cat(&[&zeros(28), &be32(OpCode::Multi as i32)]);
        prop_assert_eq!(TxnEntry::from_bytes(&cat(&[&multi_header, &len])).err(), bad.clone());
        // A sub-txn body with a bad length inside a valid MultiTxn.
        let sub = cat(&[&len]);
        prop_assert_eq!(
            TxnEntry::from_bytes(&cat(&[&multi_header, &be32(1), &be32(2), &ustr_bytes(&sub)])).err(),
            bad.clone()
        );
        // requests, multi ops and multi results
        prop_assert_eq!(Request::decode(1, &len).err(), bad.clone());
        prop_assert_eq!(Request::decode(101, &cat(&[&zeros(8), &len])).err(), bad.clone());
        let op_header = cat(&[&be32(13), &[0], &be32(-1)]);
        prop_assert_eq!(Request::decode(14, &cat(&[&op_header, &len, &zeros(4)])).err(), bad.clone());
        let res_header = cat(&[&be32(8), &[0], &be32(0)]);
        prop_assert_eq!(
            decode_multi_results(&mut Reader::new(&cat(&[&res_header, &len]))).err(),
            bad.clone()
        );
    }
}

/// A jute buffer holding `b`.
fn ustr_bytes(b: &[u8]) -> Vec<u8> {
    cat(&[&be32(b.len() as i32), b])
}

#[test]
fn minus_one_is_null_not_an_error() {
    let null = be32(-1);
    assert_eq!(
        GetChildrenResponse::from_bytes(&null),
        Ok(GetChildrenResponse { children: vec![] })
    );
    assert_eq!(
        GetSaslRequest::from_bytes(&null),
        Ok(GetSaslRequest { token: vec![] })
    );
    assert_eq!(
        SetDataRequest::from_bytes(&cat(&[&ustr("/a"), &null, &be32(7)])),
        Ok(SetDataRequest {
            path: "/a".into(),
            data: None,
            version: 7
        })
    );
    assert_eq!(
        ReconfigRequest::from_bytes(&cat(&[&null, &null, &null, &zeros(8)])),
        Ok(ReconfigRequest::default())
    );
    assert_eq!(
        SyncRequest::from_bytes(&null),
        Ok(SyncRequest {
            path: String::new()
        })
    );
}

// ---- lying lengths ------------------------------------------------------------------------

/// Largest allocation a decoder may make for a tiny hostile frame.
const SMALL: usize = 1024;

#[test]
fn allocation_tracker_sees_allocations() {
    let (v, largest) = largest_alloc(|| vec![0u8; 1 << 20]);
    assert_eq!(v.len(), 1 << 20);
    assert!(largest >= 1 << 20);
    let ((), largest) = largest_alloc(|| ());
    assert_eq!(largest, 0);
}

/// Decodes with `f`, which must fail, quickly and without a large allocation.
fn refuses_cheaply(what: &str, f: impl FnOnce() -> bool) {
    let start = std::time::Instant::now();
    let (failed, largest) = largest_alloc(f);
    assert!(failed, "{what}: count 0x7fffffff in a tiny frame decoded");
    assert!(largest < SMALL, "{what}: allocated {largest} bytes");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "{what}: slow"
    );
}

#[test]
fn huge_counts_fail_fast_without_allocating() {
    let huge = be32(0x7fff_ffff);
    let passwd = cat(&[&zeros(24), &huge]);
    let set_acl = cat(&[&ustr("/a"), &huge]);
    let txn = cat(&[&zeros(28), &be32(14), &huge]);
    let ops = cat(&[&be32(1), &[0], &be32(-1), &ustr("/a"), &zeros(4), &huge]);
    refuses_cheaply("buffer", || GetSaslRequest::from_bytes(&huge).is_err());
    refuses_cheaply("ustring", || SyncRequest::from_bytes(&huge).is_err());
    refuses_cheaply("vec<ustring>", || {
        GetChildrenResponse::from_bytes(&huge).is_err()
    });
    refuses_cheaply("vec<acl>", || GetAclResponse::from_bytes(&huge).is_err());
    refuses_cheaply("vec<ClientInfo>", || {
        WhoAmIResponse::from_bytes(&huge).is_err()
    });
    refuses_cheaply("vec<Txn>", || MultiTxn::from_bytes(&huge).is_err());
    refuses_cheaply("paths_to_delete", || {
        CloseSessionTxn::from_bytes(&huge).is_err()
    });
    refuses_cheaply("passwd", || ConnectRequest::from_bytes(&passwd).is_err());
    refuses_cheaply("setACL acl", || Request::decode(7, &set_acl).is_err());
    refuses_cheaply("multi txn", || TxnEntry::from_bytes(&txn).is_err());
    refuses_cheaply("multi create acl", || Request::decode(14, &ops).is_err());
    assert!(matches!(
        GetChildrenResponse::from_bytes(&huge),
        Err(DecodeError::Truncated { .. })
    ));
}

proptest! {
    #![proptest_config(cfg(128))]

    /// A count larger than the bytes that follow could hold is refused before allocating.
    #[test]
    fn lying_counts_are_refused(
        count in 64i32..=i32::MAX,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!((count as usize) > tail.len());
        let body = cat(&[&be32(count), &tail]);
        let (res, largest) = largest_alloc(|| {
            (
                GetSaslRequest::from_bytes(&body).is_err(),
                SyncResponse::from_bytes(&body).is_err(),
                GetEphemeralsResponse::from_bytes(&body).is_err(),
                GetAclResponse::from_bytes(&body).is_err(),
                MultiTxn::from_bytes(&body).is_err(),
            )
        });
        prop_assert_eq!(res, (true, true, true, true, true));
        prop_assert!(largest < SMALL, "allocated {} bytes", largest);
    }

    /// A count that the remaining bytes could just about hold costs at most a constant
    /// factor of the frame size (the element vector is reserved up front).
    #[test]
    fn plausible_counts_cost_a_bounded_allocation(k in 1usize..2000) {
        let body = cat(&[&be32(k as i32), &zeros(4 * k)]);
        let (_, largest) = largest_alloc(|| {
            let _ = GetAclResponse::from_bytes(&body);
            let _ = WhoAmIResponse::from_bytes(&body);
            let _ = MultiTxn::from_bytes(&body);
            let _ = GetChildrenResponse::from_bytes(&body);
        });
        prop_assert!(largest <= 64 * body.len() + SMALL, "{} bytes for {}", largest, body.len());
    }
}

// ---- op codes -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn unknown_op_codes_are_refused(
        op in any::<i32>().prop_filter("unknown", |op| OpCode::from_i32(*op).is_none()),
        body in any_bytes(),
    ) {
        prop_assert_eq!(Request::decode(op, &body), Err(DecodeError::UnknownOpCode(op)));
        prop_assert_eq!(
            TxnBody::read(op, &mut Reader::new(&body)),
            Err(DecodeError::UnknownOpCode(op))
        );
        let header = TxnHeader { client_id: 1, cxid: 2, zxid: 3, time: 4, txn_type: op };
        prop_assert_eq!(
            TxnEntry::from_bytes(&cat(&[&header.to_bytes(), &body])),
            Err(DecodeError::UnknownOpCode(op))
        );
    }

    /// A multi whose op type is outside ZooKeeper's multi set (e.g. 3 exists, 14 multi
    /// itself, -1 error with done=false) fails as a whole, wherever the op sits.
    #[test]
    fn multi_with_foreign_op_type_is_an_error(
        op in prop_oneof![
            prop::sample::select(INTERESTING_OPS),
            any::<i32>(),
        ].prop_filter("outside the multi set", |op| !MULTI_OP_TYPES.contains(op)),
        shape in any::<prop::sample::Index>(),
        valid_first in any::<bool>(),
    ) {
        // A well-formed multi whose last op's type is overwritten with `op`: the body that
        // follows is a valid body of some allowed op, so only the type is wrong.
        let shapes = multi_op_shapes();
        let mut ops = Vec::new();
        if valid_first {
            ops.push(shapes[4].clone());
        }
        ops.push(shapes[shape.index(shapes.len())].clone());
        let at = multi_ops_len(&ops[..ops.len() - 1]) - 9;
        let mut body = multi_ops_bytes(&ops);
        body[at..at + 4].copy_from_slice(&op.to_be_bytes());
        prop_assert!(
            matches!(decode_multi_ops(&mut Reader::new(&body)), Err(DecodeError::Invalid(_))),
            "op {} accepted", op
        );
        for multi in [14, 22] {
            prop_assert!(
                matches!(Request::decode(multi, &body), Err(DecodeError::Invalid(_))),
                "op {} accepted in {}", op, multi
            );
        }
    }

    #[test]
    fn multi_result_with_foreign_type_is_an_error(
        ty in prop_oneof![prop::sample::select(INTERESTING_OPS), any::<i32>()]
            .prop_filter("outside", |t| !MULTI_RESULT_TYPES.contains(t)),
        shape in any::<prop::sample::Index>(),
    ) {
        let shapes = multi_result_shapes();
        let mut w = Writer::new();
        encode_multi_results(&[shapes[shape.index(shapes.len())].clone()], &mut w);
        let mut body = w.into_inner();
        body[..4].copy_from_slice(&ty.to_be_bytes());
        prop_assert!(matches!(
            decode_multi_results(&mut Reader::new(&body)),
            Err(DecodeError::Invalid(_))
        ), "type {} accepted", ty);
    }
}

/// One op of every multi op shape.
fn multi_op_shapes() -> Vec<MultiOp> {
    let create = CreateRequest {
        path: "/a".into(),
        data: Some(vec![1]),
        acl: Acl::open_unsafe(),
        flags: 0,
    };
    vec![
        MultiOp::Create {
            op: OpCode::Create,
            req: create.clone(),
        },
        MultiOp::CreateTtl(CreateTtlRequest {
            path: "/t".into(),
            data: None,
            acl: vec![],
            flags: 5,
            ttl: 10,
        }),
        MultiOp::Delete(DeleteRequest {
            path: "/d".into(),
            version: -1,
        }),
        MultiOp::SetData(SetDataRequest {
            path: "/s".into(),
            data: Some(vec![]),
            version: 2,
        }),
        MultiOp::Check(CheckVersionRequest {
            path: "/c".into(),
            version: 1,
        }),
        MultiOp::GetChildren(GetChildrenRequest {
            path: "/g".into(),
            watch: false,
        }),
        MultiOp::GetData(GetDataRequest {
            path: "/g".into(),
            watch: true,
        }),
    ]
}

/// One result of every multi result shape.
fn multi_result_shapes() -> Vec<MultiResult> {
    vec![
        MultiResult::Create { path: "/a".into() },
        MultiResult::Create2 {
            path: "/a".into(),
            stat: Stat::default(),
        },
        MultiResult::Delete,
        MultiResult::SetData {
            stat: Stat::default(),
        },
        MultiResult::Check,
        MultiResult::GetChildren {
            children: vec!["x".into()],
        },
        MultiResult::GetData {
            data: Some(vec![1]),
            stat: Stat::default(),
        },
        MultiResult::Error { err: -101 },
    ]
}

fn multi_ops_bytes(ops: &[MultiOp]) -> Vec<u8> {
    let mut w = Writer::new();
    encode_multi_ops(ops, &mut w);
    w.into_inner()
}

fn multi_ops_len(ops: &[MultiOp]) -> usize {
    multi_ops_bytes(ops).len()
}

#[test]
fn multi_shapes_decode_with_their_own_types() {
    for op in multi_op_shapes() {
        let bytes = multi_ops_bytes(&[op.clone(), op.clone()]);
        assert_eq!(
            decode_multi_ops(&mut Reader::new(&bytes)),
            Ok(vec![op.clone(), op])
        );
    }
    for res in multi_result_shapes() {
        let mut w = Writer::new();
        encode_multi_results(std::slice::from_ref(&res), &mut w);
        assert_eq!(
            decode_multi_results(&mut Reader::new(&w.buf)),
            Ok(vec![res])
        );
    }
}

#[test]
fn non_request_op_codes_are_unknown() {
    for op in [OpCode::Notification, OpCode::CreateSession, OpCode::Error] {
        assert_eq!(
            Request::decode(op as i32, &[]),
            Err(DecodeError::UnknownOpCode(op as i32))
        );
    }
    // Read-only ops never appear as txns.
    for op in [3, 4, 6, 8, 9, 11, 12, 17, 18, 22, 100, 101, 103, 107] {
        assert_eq!(
            TxnBody::read(op, &mut Reader::new(&[0; 64])),
            Err(DecodeError::UnknownOpCode(op)),
            "txn type {op}"
        );
    }
}

#[test]
fn nested_multi_txn_is_an_error() {
    let inner = TxnBody::Multi(vec![]);
    let mut w = Writer::new();
    inner.write(&mut w);
    let inner = w.into_inner();
    let body = cat(&[&be32(1), &be32(OpCode::Multi as i32), &ustr_bytes(&inner)]);
    assert!(matches!(
        TxnBody::read(OpCode::Multi as i32, &mut Reader::new(&body)),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn multi_without_end_marker_is_truncated() {
    let body = cat(&[&be32(13), &[0], &be32(-1), &ustr("/a"), &be32(1)]);
    assert!(matches!(
        Request::decode(14, &body),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        decode_multi_results(&mut Reader::new(&cat(&[&be32(2), &[0], &be32(0)]))),
        Err(DecodeError::Truncated { .. })
    ));
}

/// Like Java's DataInput.readBoolean, any non-zero byte reads as true.
#[test]
fn non_zero_boolean_bytes_read_as_true() {
    for b in [1u8, 2, 0x7f, 0x80, 0xff] {
        let bytes = cat(&[&ustr("/a"), &[b]]);
        assert_eq!(
            GetDataRequest::from_bytes(&bytes),
            Ok(GetDataRequest {
                path: "/a".into(),
                watch: true
            })
        );
    }
    assert_eq!(
        GetDataRequest::from_bytes(&cat(&[&ustr("/a"), &[0]])).map(|r| r.watch),
        Ok(false)
    );
}

// ---- trailing bytes -----------------------------------------------------------------------

/// `Record::from_bytes` decodes a record that must use every byte of `buf`.
#[test]
fn from_bytes_rejects_trailing_bytes() {
    let mut stat = Stat::default().to_bytes();
    stat.push(0);
    assert!(Stat::from_bytes(&stat).is_err(), "69-byte Stat accepted");
    let mut h = ReplyHeader::default().to_bytes();
    h.extend_from_slice(&[1, 2, 3, 4]);
    assert!(
        ReplyHeader::from_bytes(&h).is_err(),
        "20-byte ReplyHeader accepted"
    );
    let mut c = ConnectRequest {
        has_read_only: true,
        ..Default::default()
    }
    .to_bytes();
    c.push(0);
    assert!(
        ConnectRequest::from_bytes(&c).is_err(),
        "ConnectRequest + 1 byte accepted"
    );
}

// ---- znode paths --------------------------------------------------------------------------

/// A component of safe characters that is not "." or "..".
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z]{1,8}",
        1 => "[A-Za-z0-9._-]{1,8}".prop_filter("relative", |c| c != "." && c != ".."),
    ]
}

fn valid_path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..6).prop_map(|cs| format!("/{}", cs.join("/")))
}

fn control_char() -> impl Strategy<Value = char> {
    prop_oneof![
        (0u32..=0x1f).prop_map(|c| char::from_u32(c).unwrap()),
        (0x7fu32..=0x9f).prop_map(|c| char::from_u32(c).unwrap()),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn safe_paths_are_valid(p in valid_path()) {
        prop_assert_eq!(validate_path(&p), Ok(()));
        prop_assert_eq!(validate_path_sequential(&p, true), Ok(()));
        // A sequential create may name the parent with a trailing slash.
        let dir = format!("{p}/");
        prop_assert_eq!(validate_path_sequential(&dir, true), Ok(()));
    }

    #[test]
    fn double_slash_is_invalid(p in valid_path(), at in any::<prop::sample::Index>()) {
        let slashes: Vec<usize> = p.match_indices('/').map(|(i, _)| i).collect();
        let i = slashes[at.index(slashes.len())];
        let bad = format!("{}/{}", &p[..i], &p[i..]);
        prop_assert!(validate_path(&bad).is_err(), "{:?} accepted", bad);
        prop_assert!(validate_path_sequential(&bad, true).is_err(), "{:?} accepted", bad);
    }

    #[test]
    fn trailing_slash_is_invalid(p in valid_path()) {
        let bad = format!("{p}/");
        prop_assert!(validate_path(&bad).is_err(), "{:?} accepted", bad);
    }

    #[test]
    fn control_chars_are_invalid(
        p in valid_path(),
        at in any::<prop::sample::Index>(),
        c in control_char(),
    ) {
        // Every byte index is a char boundary: the path is ASCII.
        let i = at.index(p.len() + 1);
        let bad = format!("{}{}{}", &p[..i], c, &p[i..]);
        prop_assert!(validate_path(&bad).is_err(), "{:?} accepted", bad);
        prop_assert!(validate_path_sequential(&bad, true).is_err(), "{:?} accepted", bad);
    }

    #[test]
    fn relative_components_are_invalid(
        before in prop::collection::vec(component(), 0..3),
        after in prop::collection::vec(component(), 0..3),
        dots in prop_oneof![Just("."), Just("..")],
    ) {
        let mut cs = before;
        cs.push(dots.to_string());
        cs.extend(after);
        let bad = format!("/{}", cs.join("/"));
        prop_assert!(validate_path(&bad).is_err(), "{:?} accepted", bad);
    }

    #[test]
    fn validate_path_never_panics(s in "(?s).{0,24}") {
        let _ = validate_path(&s);
        let _ = validate_path_sequential(&s, true);
        let slashed = format!("/{s}");
        let _ = validate_path(&slashed);
    }
}

#[test]
fn root_is_the_only_path_ending_in_slash() {
    assert_eq!(validate_path("/"), Ok(()));
    assert!(validate_path("//").is_err());
    assert!(validate_path("").is_err());
    assert!(validate_path("a").is_err());
}
