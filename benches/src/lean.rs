//! The closed-loop load's session: one raw TCP connection speaking the ZooKeeper wire
//! protocol with `pipeline` requests in flight, written so that the load generator (one
//! core) costs as little per op as it can, and the server, not zkd-bench, is what limits
//! the read workloads.
//!
//! What it measures is what the zkd-client workers measured before: `pipeline` requests
//! in flight per session, the next one sent when a reply comes back, latency from the
//! moment a request is made until its reply is read, and every reply checked: its xid
//! must be the oldest pending request's (replies come in request order), its err must be
//! 0 (NoNode is fine for exists, as `Client::exists` has it), and its body must have the
//! shape of that op's reply (getData: the data length plus a Stat; a multi: every result
//! header and error code). What it saves: requests are encoded straight into one output
//! buffer (no per-op allocation, no channel, no oneshot, no task per request), every
//! request made after one read goes out in one write, and one read takes every reply
//! that has arrived (a 64 KiB buffer), so a session costs one read and one write syscall
//! and one task wake-up per batch of replies, not per reply.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkd_proto::frame::check_frame_len;
use zkd_proto::{ConnectRequest, ConnectResponse, ErrorCode, OpCode, Record};

use crate::load::{Acc, Window, Workload};

/// Length of a Stat on the wire.
const STAT_LEN: usize = 68;
/// Largest reply frame accepted (ZooKeeper's jute.maxbuffer plus slack, as zkd-client).
const MAX_FRAME: usize = zkd_proto::frame::DEFAULT_MAX_BUFFER + 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Set,
    Get,
    Exists,
    Multi,
}

struct Flight {
    xid: i32,
    kind: Kind,
    t0: Instant,
    /// The create's sequence number (its path is rebuilt from it for the cleanup).
    seq: u64,
}

/// What picks and encodes one session's requests (the same choices `OpGen` makes).
pub struct LeanGen {
    pub workload: Workload,
    pub root: Arc<str>,
    pub tag: String,
    pub keys: u64,
    pub read_pct: u64,
    pub multi_ops: usize,
    pub rng: u64,
}

impl LeanGen {
    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The path of the create with sequence number `seq`.
    pub fn create_path(&self, seq: u64) -> String {
        if self.workload == Workload::Populate {
            format!("{}/p{:03}/{}{seq}", self.root, seq % 1000, self.tag)
        } else {
            format!("{}/{}{seq}", self.root, self.tag)
        }
    }

    /// Appends a ustring made by `f` (the length is patched in afterwards).
    fn ustring(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        f(out);
        let n = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }

    fn key_path(&mut self, out: &mut Vec<u8>) {
        let k = self.rand() % self.keys;
        let root = &self.root;
        Self::ustring(out, |o| {
            o.extend_from_slice(root.as_bytes());
            let _ = write!(o, "/k{k}");
        });
    }

    fn buffer(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(&(data.len() as i32).to_be_bytes());
        out.extend_from_slice(data);
    }

    fn set_body(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        self.key_path(out);
        Self::buffer(out, data);
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// Appends the framed request `seq` with `xid`; returns what it is.
    fn encode(&mut self, seq: u64, xid: i32, data: &[u8], out: &mut Vec<u8>) -> Kind {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&xid.to_be_bytes());
        let op_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let (kind, op) = match self.workload {
            Workload::Create | Workload::Populate | Workload::Storm | Workload::Watch => {
                let (root, tag, populate) =
                    (&self.root, &self.tag, self.workload == Workload::Populate);
                Self::ustring(out, |o| {
                    o.extend_from_slice(root.as_bytes());
                    let _ = if populate {
                        write!(o, "/p{:03}/{tag}{seq}", seq % 1000)
                    } else {
                        write!(o, "/{tag}{seq}")
                    };
                });
                Self::buffer(out, data);
                // OPEN_ACL_UNSAFE: one ACL, perms ALL (31), world:anyone; flags 0.
                out.extend_from_slice(&1i32.to_be_bytes());
                out.extend_from_slice(&31i32.to_be_bytes());
                out.extend_from_slice(&5i32.to_be_bytes());
                out.extend_from_slice(b"world");
                out.extend_from_slice(&6i32.to_be_bytes());
                out.extend_from_slice(b"anyone");
                out.extend_from_slice(&0i32.to_be_bytes());
                (Kind::Create, OpCode::Create)
            }
            Workload::Set => {
                self.set_body(out, data);
                (Kind::Set, OpCode::SetData)
            }
            Workload::Get => {
                self.key_path(out);
                out.push(0);
                (Kind::Get, OpCode::GetData)
            }
            Workload::Exists => {
                self.key_path(out);
                out.push(0);
                (Kind::Exists, OpCode::Exists)
            }
            Workload::Mixed => {
                if self.rand() % 100 < self.read_pct {
                    self.key_path(out);
                    out.push(0);
                    (Kind::Get, OpCode::GetData)
                } else {
                    self.set_body(out, data);
                    (Kind::Set, OpCode::SetData)
                }
            }
            Workload::Multi => {
                for _ in 0..self.multi_ops {
                    // MultiHeader{type setData, done false, err -1}, then the request.
                    out.extend_from_slice(&(OpCode::SetData as i32).to_be_bytes());
                    out.push(0);
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    self.set_body(out, data);
                }
                out.extend_from_slice(&(-1i32).to_be_bytes());
                out.push(1);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                (Kind::Multi, OpCode::Multi)
            }
        };
        out[op_at..op_at + 4].copy_from_slice(&(op as i32).to_be_bytes());
        let n = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        kind
    }
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks a reply body (after the 16-byte header) against the op's reply layout.
fn check_body(kind: Kind, err: i32, body: &[u8]) -> Result<(), String> {
    if kind == Kind::Exists && err == ErrorCode::NoNode.code() {
        return Ok(());
    }
    if err != 0 {
        return Err(match ErrorCode::from_code(err) {
            Some(e) => format!("{e:?} ({err})"),
            None => format!("error code {err}"),
        });
    }
    let bad = || format!("malformed reply body ({} bytes)", body.len());
    match kind {
        Kind::Set | Kind::Exists => (body.len() == STAT_LEN).then_some(()).ok_or_else(bad),
        Kind::Get => {
            let n = (body.len() >= 4).then(|| be32(body)).ok_or_else(bad)?;
            let data = if n < 0 { 0 } else { n as usize };
            (body.len() == 4 + data + STAT_LEN)
                .then_some(())
                .ok_or_else(bad)
        }
        Kind::Create => {
            let n = (body.len() >= 4).then(|| be32(body)).ok_or_else(bad)?;
            (n >= 0 && body.len() == 4 + n as usize)
                .then_some(())
                .ok_or_else(bad)
        }
        Kind::Multi => {
            // MultiHeader{type, done, err} per result, then one with done set.
            let mut p = 0;
            loop {
                if body.len() < p + 9 {
                    return Err(bad());
                }
                let (ty, done) = (be32(&body[p..]), body[p + 4] != 0);
                p += 9;
                if done {
                    return (p == body.len()).then_some(()).ok_or_else(bad);
                }
                if ty == OpCode::SetData as i32 {
                    p += STAT_LEN;
                } else if ty == -1 {
                    if body.len() < p + 4 {
                        return Err(bad());
                    }
                    let e = be32(&body[p..]);
                    if e != 0 {
                        return Err(format!("multi op failed: error code {e}"));
                    }
                    p += 4;
                } else {
                    return Err(format!("unexpected multi result type {ty}"));
                }
            }
        }
    }
}

/// Reads from `s` until `buf[..*hi]` holds one whole frame at `buf[0..]`; returns its
/// length (without the prefix).
async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>, hi: &mut usize) -> Result<usize, String> {
    loop {
        if *hi >= 4 {
            let len = check_frame_len([buf[0], buf[1], buf[2], buf[3]], MAX_FRAME)
                .map_err(|e| e.to_string())?;
            if *hi >= 4 + len {
                return Ok(len);
            }
            if buf.len() < 4 + len {
                buf.resize(4 + len, 0);
            }
        }
        let n = s.read(&mut buf[*hi..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        *hi += n;
    }
}

/// Opens a session: TCP connect (no Nagle) and the handshake, as zkd-client does it.
async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: timeout.as_millis().min(i32::MAX as u128) as i32,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: false,
        has_read_only: true,
    };
    s.write_all(&zkd_proto::frame::frame(&req.to_bytes()))
        .await
        .map_err(|e| e.to_string())?;
    let (mut buf, mut hi) = (vec![0u8; 256], 0);
    let len = read_frame(&mut s, &mut buf, &mut hi).await?;
    let r = ConnectResponse::from_bytes(&buf[4..4 + len])
        .map_err(|e| format!("handshake reply: {e}"))?;
    if r.time_out <= 0 || r.session_id == 0 {
        return Err("handshake refused (session expired)".into());
    }
    if hi != 4 + len {
        return Err("bytes after the handshake reply".into());
    }
    Ok(s)
}

/// A connected session, ready for [`run`].
pub struct LeanSession {
    stream: TcpStream,
}

impl LeanSession {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<LeanSession, String> {
        Ok(LeanSession {
            stream: connect(addr, timeout).await?,
        })
    }
}

/// Runs one session's closed loop over the window `w` (until `limit` requests were made
/// over all sessions, with one), then closes the session. Created paths go to the
/// result's `created` (after the window: only sequence numbers are kept during it).
pub async fn run(
    sess: LeanSession,
    mut gen: LeanGen,
    pipeline: usize,
    data: Arc<Vec<u8>>,
    w: Window,
    limit: Option<(Arc<AtomicU64>, u64)>,
) -> Acc {
    let mut acc = Acc::new();
    let mut created: Vec<u64> = Vec::new();
    let mut s = sess.stream;
    let r = closed_loop(
        &mut s,
        &mut gen,
        pipeline.max(1),
        &data,
        w,
        limit,
        &mut acc,
        &mut created,
    )
    .await;
    if let Err(e) = r {
        acc.errors += 1;
        if acc.first_error.is_none() {
            acc.first_error = Some(e);
        }
    } else {
        // closeSession, as Client::close does; the reply is awaited briefly.
        let mut out = Vec::with_capacity(12);
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&i32::MAX.to_be_bytes());
        out.extend_from_slice(&(OpCode::CloseSession as i32).to_be_bytes());
        if s.write_all(&out).await.is_ok() {
            let (mut buf, mut hi) = (vec![0u8; 64], 0);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                read_frame(&mut s, &mut buf, &mut hi),
            )
            .await;
        }
    }
    acc.created = created.into_iter().map(|q| gen.create_path(q)).collect();
    acc
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    s: &mut TcpStream,
    gen: &mut LeanGen,
    pipeline: usize,
    data: &[u8],
    w: Window,
    limit: Option<(Arc<AtomicU64>, u64)>,
    acc: &mut Acc,
    created: &mut Vec<u64>,
) -> Result<(), String> {
    let mut inflight: VecDeque<Flight> = VecDeque::with_capacity(pipeline);
    let mut out: Vec<u8> = Vec::with_capacity(pipeline * (64 + data.len()) * 2);
    let mut inb = vec![0u8; 64 * 1024];
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut xid: i32 = 0;
    let mut seq: u64 = 0;
    let mut stopping = false;
    let mut now = Instant::now();
    loop {
        // Top up to `pipeline` requests in flight, all in one write.
        while !stopping && inflight.len() < pipeline {
            if now >= w.end {
                stopping = true;
                break;
            }
            if let Some((n, max)) = &limit {
                if n.fetch_add(1, Ordering::Relaxed) >= *max {
                    stopping = true;
                    break;
                }
            }
            xid = if xid == i32::MAX - 1 { 1 } else { xid + 1 };
            let kind = gen.encode(seq, xid, data, &mut out);
            inflight.push_back(Flight {
                xid,
                kind,
                t0: now,
                seq,
            });
            seq += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        if inflight.is_empty() {
            return Ok(());
        }
        // One read takes whatever replies have arrived.
        if hi == inb.len() {
            if lo > 0 {
                inb.copy_within(lo..hi, 0);
                hi -= lo;
                lo = 0;
            } else {
                let n = inb.len() * 2;
                inb.resize(n, 0);
            }
        }
        let n = s.read(&mut inb[hi..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        hi += n;
        now = Instant::now();
        while hi - lo >= 4 {
            let len = check_frame_len([inb[lo], inb[lo + 1], inb[lo + 2], inb[lo + 3]], MAX_FRAME)
                .map_err(|e| e.to_string())?;
            if hi - lo < 4 + len {
                if inb.len() - lo < 4 + len {
                    inb.copy_within(lo..hi, 0);
                    hi -= lo;
                    lo = 0;
                    if inb.len() < 4 + len {
                        inb.resize(4 + len, 0);
                    }
                }
                break;
            }
            let f = &inb[lo + 4..lo + 4 + len];
            lo += 4 + len;
            if f.len() < 16 {
                return Err(format!(
                    "reply of {} bytes, shorter than its header",
                    f.len()
                ));
            }
            let rxid = be32(f);
            let err = be32(&f[12..]);
            if rxid == -1 || rxid == -2 {
                // A notification or a ping reply: not a request's reply.
                continue;
            }
            let fl = inflight
                .pop_front()
                .ok_or_else(|| format!("reply xid {rxid} with nothing pending"))?;
            if fl.xid != rxid {
                return Err(format!("reply xid {rxid}, expected {}", fl.xid));
            }
            match check_body(fl.kind, err, &f[16..]) {
                Ok(()) => {
                    if fl.kind == Kind::Create {
                        created.push(fl.seq);
                    }
                    acc.finish_ok(&w, fl.t0, now);
                }
                Err(e) => acc.finish_err(&w, fl.t0, now, e),
            }
        }
        if lo == hi {
            lo = 0;
            hi = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkd_proto::{Acl, CreateMode, CreateRequest, GetDataRequest, Reader, RequestHeader};

    fn gen(w: Workload) -> LeanGen {
        LeanGen {
            workload: w,
            root: "/r".into(),
            tag: "c0-0-".into(),
            keys: 1,
            read_pct: 80,
            multi_ops: 4,
            rng: 1,
        }
    }

    #[test]
    fn encodes_what_zkd_client_sends() {
        let data = vec![b'x'; 100];
        let mut out = Vec::new();
        gen(Workload::Create).encode(7, 3, &data, &mut out);
        let mut want = zkd_proto::Writer::new();
        RequestHeader {
            xid: 3,
            op_type: OpCode::Create as i32,
        }
        .write(&mut want);
        CreateRequest {
            path: "/r/c0-0-7".into(),
            data: Some(data.clone()),
            acl: Acl::open_unsafe(),
            flags: CreateMode::Persistent.flag(),
        }
        .write(&mut want);
        assert_eq!(out, zkd_proto::frame::frame(&want.into_inner()));

        let mut out = Vec::new();
        gen(Workload::Get).encode(0, 9, &data, &mut out);
        let mut r = Reader::new(&out[4..]);
        let h = RequestHeader::read(&mut r).unwrap();
        assert_eq!((h.xid, h.op_type), (9, OpCode::GetData as i32));
        let g = GetDataRequest::read(&mut r).unwrap();
        assert_eq!((g.path.as_str(), g.watch), ("/r/k0", false));
        assert_eq!(r.remaining(), 0);

        let mut out = Vec::new();
        gen(Workload::Multi).encode(0, 1, &data, &mut out);
        let mut r = Reader::new(&out[4..]);
        RequestHeader::read(&mut r).unwrap();
        let ops = zkd_proto::request::decode_multi_ops(&mut r).unwrap();
        assert_eq!(ops.len(), 4);
    }

    #[test]
    fn checks_reply_bodies() {
        assert!(check_body(Kind::Get, 0, &[0; 4 + STAT_LEN]).is_ok());
        assert!(check_body(Kind::Get, 0, &[0; 3 + STAT_LEN]).is_err());
        assert!(check_body(Kind::Exists, ErrorCode::NoNode.code(), &[]).is_ok());
        assert!(check_body(Kind::Set, ErrorCode::NoNode.code(), &[]).is_err());
        let mut m = Vec::new();
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.push(0);
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.extend_from_slice(&(-101i32).to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.push(1);
        m.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(check_body(Kind::Multi, 0, &m).unwrap_err().contains("-101"));
    }
}
