//! Matching incoming frames to what is waiting for them.
//!
//! Owns the classification of a reply frame by its xid (ping, auth, notification, ordinary
//! reply) and the FIFO of requests awaiting replies. Never touches the socket and never
//! completes a waiter itself: the connection task does that, outside any lock, in socket
//! order.
//!
//! Why a FIFO and not a map: ZooKeeper answers one session's requests strictly in the order
//! they were sent, so a reply must match the oldest pending xid. A reply that does not is a
//! broken server or stream, and like the Java client (ClientCnxn "Xid out of order") we drop
//! the connection instead of guessing.
//!
//! What does not enter the FIFO, mirroring ClientCnxn: pings (xid -2; their replies are
//! dropped) and auth packets (xid -4). ZooKeeper answers auth packets straight from the IO
//! thread, possibly ahead of replies still in the request pipeline, so auth waiters sit in
//! their own queue. SetWatches (xid -8) goes through the pipeline and does use the FIFO.

use std::collections::VecDeque;

use zkd_proto::records::xid;
use zkd_proto::{Reader, Record, ReplyHeader, WatcherEvent};

use crate::error::Error;
use crate::event::WatchedEvent;

/// One frame from the server, sorted by what its xid says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    Ping(ReplyHeader),
    Auth(ReplyHeader),
    Notification(WatchedEvent),
    /// A reply to a request in the pending FIFO; the body follows the header unparsed.
    Reply(ReplyHeader, Vec<u8>),
}

/// Splits a reply frame into header and payload and sorts it by xid.
pub(crate) fn classify(frame: &[u8]) -> Result<Incoming, Error> {
    let mut r = Reader::new(frame);
    let header = ReplyHeader::read(&mut r)?;
    Ok(match header.xid {
        xid::PING => Incoming::Ping(header),
        xid::AUTH => Incoming::Auth(header),
        xid::NOTIFICATION => {
            let ev = WatcherEvent::read(&mut r)?;
            Incoming::Notification(WatchedEvent {
                event_type: ev.event_type,
                state: ev.state,
                path: ev.path,
                zxid: header.zxid,
            })
        }
        _ => Incoming::Reply(header, r.rest().to_vec()),
    })
}

/// A request that was written (or queued for writing) and awaits its reply.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    pub xid: i32,
    pub op_type: i32,
    pub waiter: T,
}

/// Requests awaiting replies, oldest first. `T` is the completion handle (a oneshot sender
/// in the client; anything in tests).
#[derive(Debug)]
pub(crate) struct PendingQueue<T> {
    q: VecDeque<Pending<T>>,
}

impl<T> Default for PendingQueue<T> {
    fn default() -> Self {
        PendingQueue { q: VecDeque::new() }
    }
}

impl<T> PendingQueue<T> {
    pub fn push(&mut self, xid: i32, op_type: i32, waiter: T) {
        self.q.push_back(Pending {
            xid,
            op_type,
            waiter,
        });
    }

    /// Takes the oldest pending request if `reply_xid` is its xid. On a mismatch (or an
    /// empty queue) nothing is removed: the caller drops the connection and drains.
    pub fn take_reply(&mut self, reply_xid: i32) -> Result<Pending<T>, Error> {
        match self.q.front() {
            None => Err(Error::Protocol(format!(
                "nothing pending, but got a reply with xid {reply_xid}"
            ))),
            Some(p) if p.xid != reply_xid => Err(Error::Protocol(format!(
                "xid out of order: got {reply_xid}, expected {} (op {})",
                p.xid, p.op_type
            ))),
            Some(_) => Ok(self.q.pop_front().expect("front exists")),
        }
    }

    /// Removes and returns every pending request, oldest first.
    pub fn drain(&mut self) -> Vec<Pending<T>> {
        self.q.drain(..).collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Removes a request by xid (used when its frame could not be handed to the writer).
    pub fn remove(&mut self, xid: i32) -> Option<Pending<T>> {
        let i = self.q.iter().position(|p| p.xid == xid)?;
        self.q.remove(i)
    }
}

/// Hands out request xids: 1, 2, 3, ... like ClientCnxn. On reaching i32::MAX it wraps to 1
/// rather than going negative, where it would collide with the special xids.
#[derive(Debug)]
pub(crate) struct XidCounter {
    next: i32,
}

impl Default for XidCounter {
    fn default() -> Self {
        XidCounter { next: 1 }
    }
}

impl XidCounter {
    pub fn next(&mut self) -> i32 {
        let x = self.next;
        self.next = if x == i32::MAX { 1 } else { x + 1 };
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkd_proto::Writer;

    fn reply(xid: i32, zxid: i64, err: i32, body: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        ReplyHeader { xid, zxid, err }.write(&mut w);
        w.buf.extend_from_slice(body);
        w.into_inner()
    }

    #[test]
    fn classifies_by_xid() {
        assert!(matches!(
            classify(&reply(-2, 5, 0, &[])).unwrap(),
            Incoming::Ping(h) if h.zxid == 5
        ));
        assert!(matches!(
            classify(&reply(-4, 0, -115, &[])).unwrap(),
            Incoming::Auth(h) if h.err == -115
        ));
        let ev = WatcherEvent {
            event_type: 3,
            state: 3,
            path: "/a".into(),
        };
        assert_eq!(
            classify(&reply(-1, 42, 0, &ev.to_bytes())).unwrap(),
            Incoming::Notification(WatchedEvent {
                event_type: 3,
                state: 3,
                path: "/a".into(),
                zxid: 42
            })
        );
        assert_eq!(
            classify(&reply(9, 7, -101, &[1, 2, 3])).unwrap(),
            Incoming::Reply(
                ReplyHeader {
                    xid: 9,
                    zxid: 7,
                    err: -101
                },
                vec![1, 2, 3]
            )
        );
        // SetWatches replies (xid -8) are ordinary FIFO replies.
        assert!(matches!(
            classify(&reply(-8, 0, 0, &[])).unwrap(),
            Incoming::Reply(h, _) if h.xid == -8
        ));
    }

    #[test]
    fn short_frames_do_not_decode() {
        assert!(matches!(classify(&[0, 0, 0]), Err(Error::Decode(_))));
        // A notification without its WatcherEvent.
        assert!(matches!(
            classify(&reply(-1, 1, 0, &[])),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn fifo_matching() {
        let mut q = PendingQueue::default();
        q.push(1, 4, "a");
        q.push(2, 5, "b");
        q.push(-8, 105, "sw");
        assert_eq!(q.take_reply(1).unwrap().waiter, "a");
        // Out of order: nothing removed.
        assert!(matches!(q.take_reply(-8), Err(Error::Protocol(_))));
        assert_eq!(q.len(), 2);
        assert_eq!(q.take_reply(2).unwrap().waiter, "b");
        assert_eq!(q.take_reply(-8).unwrap().waiter, "sw");
        assert!(matches!(q.take_reply(3), Err(Error::Protocol(_))));
    }

    #[test]
    fn drain_and_remove() {
        let mut q = PendingQueue::default();
        for x in 1..=3 {
            q.push(x, 1, x);
        }
        assert_eq!(q.remove(2).unwrap().waiter, 2);
        assert!(q.remove(2).is_none());
        let rest: Vec<_> = q.drain().into_iter().map(|p| p.waiter).collect();
        assert_eq!(rest, vec![1, 3]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn xids_start_at_one_and_skip_negatives() {
        let mut c = XidCounter::default();
        assert_eq!(c.next(), 1);
        assert_eq!(c.next(), 2);
        c.next = i32::MAX;
        assert_eq!(c.next(), i32::MAX);
        assert_eq!(c.next(), 1);
    }
}
