//! What learners send their leader through zab's opaque payloads: client requests
//! (ZooKeeper's Leader.REQUEST packet: session, cxid, type, auth, body) and session touches
//! (the session/timeout pairs a learner's PING carries).
//!
//! Owns the byte layout of those payloads and nothing else: never decides whether a
//! request is valid (the leader's prep does) nor whether a session lives (the leader's
//! session tracker does). A payload that does not decode is refused, never trusted.
//!
//! # Byte layout (jute encoding, big-endian)
//!
//! ```text
//! forwarded request:  i64 session_id | i32 cxid | i32 op type | vector<Id> auth | buffer body
//! session touches:    i32 count | count × (i64 session_id | i32 timeout_ms)
//! ```

use zkd_proto::records::Id;
use zkd_proto::{DecodeError, Reader, Record, Writer};

/// A client request a learner hands to its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    pub session_id: i64,
    pub cxid: i32,
    pub op_type: i32,
    /// The connection's authenticated ids (ACL checks run on the leader).
    pub auth: Vec<Id>,
    pub body: Vec<u8>,
}

impl ForwardedRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(24 + self.body.len());
        w.write_i64(self.session_id);
        w.write_i32(self.cxid);
        w.write_i32(self.op_type);
        w.write_i32(self.auth.len() as i32);
        for id in &self.auth {
            id.write(&mut w);
        }
        w.write_buffer(&self.body);
        w.into_inner()
    }

    pub fn decode(bytes: &[u8]) -> Result<ForwardedRequest, DecodeError> {
        let mut r = Reader::new(bytes);
        let session_id = r.read_i64()?;
        let cxid = r.read_i32()?;
        let op_type = r.read_i32()?;
        let n = r.read_vec_len(8)?.unwrap_or(0);
        let mut auth = Vec::with_capacity(n);
        for _ in 0..n {
            auth.push(Id::read(&mut r)?);
        }
        let body = r.read_buffer_opt()?.unwrap_or_default();
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        Ok(ForwardedRequest {
            session_id,
            cxid,
            op_type,
            auth,
            body,
        })
    }
}

/// Sessions a learner's clients kept alive since its last PING.
pub fn encode_touches(touches: &[(i64, i32)]) -> Vec<u8> {
    let mut w = Writer::with_capacity(4 + 12 * touches.len());
    w.write_i32(touches.len() as i32);
    for (id, timeout) in touches {
        w.write_i64(*id);
        w.write_i32(*timeout);
    }
    w.into_inner()
}

pub fn decode_touches(bytes: &[u8]) -> Result<Vec<(i64, i32)>, DecodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(bytes);
    let n = r.read_vec_len(12)?.unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((r.read_i64()?, r.read_i32()?));
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let f = ForwardedRequest {
            session_id: 0x0100_0000_0000_0001,
            cxid: 7,
            op_type: 1,
            auth: vec![Id {
                scheme: "ip".into(),
                id: "127.0.0.1".into(),
            }],
            body: vec![1, 2, 3],
        };
        assert_eq!(ForwardedRequest::decode(&f.encode()).unwrap(), f);
        let t = vec![(1, 4000), (i64::MAX, 30000)];
        assert_eq!(decode_touches(&encode_touches(&t)).unwrap(), t);
        assert_eq!(decode_touches(&[]).unwrap(), vec![]);
    }

    #[test]
    fn refuses_trailing_and_truncated_bytes() {
        let f = ForwardedRequest {
            session_id: 1,
            cxid: 1,
            op_type: 4,
            auth: vec![],
            body: vec![9],
        };
        let mut b = f.encode();
        b.push(0);
        assert!(ForwardedRequest::decode(&b).is_err());
        let b = f.encode();
        assert!(ForwardedRequest::decode(&b[..b.len() - 1]).is_err());
        let mut t = encode_touches(&[(1, 2)]);
        t.pop();
        assert!(decode_touches(&t).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ForwardedRequest::decode(&bytes);
            let _ = decode_touches(&bytes);
        }
    }
}
