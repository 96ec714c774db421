//! Sessions (ZooKeeper's SessionTrackerImpl and ExpiryQueue): ids, passwords, timeouts and
//! expiry by ticks.
//!
//! Owns which sessions exist, their negotiated timeout, which connection (if any) carries
//! each one, and when each expires. Never reads a clock: callers pass `now_ms`.
//!
//! Session ids are ZooKeeper's: `(now_ms << 24) >>> 8 | server_id << 56`, then +1 per
//! session. Passwords are ZooKeeper's too: 16 bytes from `java.util.Random` seeded with
//! `session_id ^ 0xB3415C00`, so any server of an ensemble can check a password without
//! storing it. Expiry times are rounded up to the next tick boundary, so sessions expire
//! in batches once per tick, as in ZooKeeper.

use std::collections::BTreeMap;

use crate::tree::FastMap;
use crate::watch::ConnId;

const SUPER_SECRET: i64 = 0xB341_5C00;

/// java.util.Random, enough of it to generate ZooKeeper's session passwords.
struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULT: u64 = 0x5DEE_CE66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ Self::MULT) & Self::MASK,
        }
    }

    fn next_int(&mut self) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> 16) as i32
    }

    fn next_bytes(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() {
            let mut rnd = self.next_int();
            let n = (out.len() - i).min(4);
            for _ in 0..n {
                out[i] = rnd as u8;
                i += 1;
                rnd >>= 8;
            }
        }
    }
}

/// ZooKeeperServer.generatePasswd.
pub fn session_password(session_id: i64) -> [u8; 16] {
    let mut p = [0u8; 16];
    JavaRandom::new(session_id ^ SUPER_SECRET).next_bytes(&mut p);
    p
}

/// SessionTrackerImpl.initializeNextSessionId.
pub fn initial_session_id(now_ms: i64, server_id: i64) -> i64 {
    let mut next = (((now_ms as u64) << 24) >> 8) as i64;
    next |= server_id << 56;
    if next == i64::MIN {
        next += 1;
    }
    next
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub timeout_ms: i32,
    pub expires_at_ms: i64,
    pub conn: Option<ConnId>,
}

pub struct SessionTracker {
    tick_ms: i64,
    /// The server id in the top byte of the ids this tracker mints.
    server_id: i64,
    next_id: i64,
    /// Looked up (and touched) by every request: foldhash rather than SipHash.
    sessions: FastMap<i64, Session>,
    /// Expiry buckets: tick-rounded time -> sessions due then.
    buckets: BTreeMap<i64, Vec<i64>>,
}

impl SessionTracker {
    pub fn new(tick_ms: u32, now_ms: i64, server_id: i64) -> Self {
        SessionTracker {
            tick_ms: tick_ms.max(1) as i64,
            server_id,
            next_id: initial_session_id(now_ms, server_id),
            sessions: FastMap::default(),
            buckets: BTreeMap::new(),
        }
    }

    fn round_to_next_tick(&self, t: i64) -> i64 {
        (t / self.tick_ms + 1) * self.tick_ms
    }

    /// After recovery: never hand out an id a restored session has (the clock may have
    /// gone backwards since those were issued).
    ///
    /// Only ids this server minted (its id in the top byte) count: in an ensemble every
    /// server mints in its own range, and moving into another server's range would hand
    /// out that server's ids a second time.
    pub fn ensure_next_id_above(&mut self, id: i64) {
        if ((id as u64) >> 56) as i64 != self.server_id {
            return;
        }
        if self.next_id <= id {
            self.next_id = id + 1;
        }
    }

    pub fn create(&mut self, timeout_ms: i32, now_ms: i64) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.add(id, timeout_ms, now_ms);
        id
    }

    /// Tracks a session with a known id (recovery, or a session the leader created).
    pub fn add(&mut self, id: i64, timeout_ms: i32, now_ms: i64) {
        self.sessions.insert(
            id,
            Session {
                id,
                timeout_ms,
                expires_at_ms: 0,
                conn: None,
            },
        );
        self.touch(id, timeout_ms, now_ms);
    }

    /// Pushes a session's expiry out by its timeout; false if it no longer exists.
    pub fn touch(&mut self, id: i64, timeout_ms: i32, now_ms: i64) -> bool {
        let when = self.round_to_next_tick(now_ms + timeout_ms as i64);
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        s.timeout_ms = timeout_ms;
        if s.expires_at_ms == when {
            return true;
        }
        let old = s.expires_at_ms;
        s.expires_at_ms = when;
        if let Some(b) = self.buckets.get_mut(&old) {
            b.retain(|x| *x != id);
            if b.is_empty() {
                self.buckets.remove(&old);
            }
        }
        self.buckets.entry(when).or_default().push(id);
        true
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn set_conn(&mut self, id: i64, conn: Option<ConnId>) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.conn = conn;
        }
    }

    pub fn remove(&mut self, id: i64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(b) = self.buckets.get_mut(&s.expires_at_ms) {
            b.retain(|x| *x != id);
            if b.is_empty() {
                self.buckets.remove(&s.expires_at_ms);
            }
        }
        Some(s)
    }

    /// Sessions whose expiry time has passed, removed from the expiry queue.
    pub fn expired(&mut self, now_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some((&when, _)) = self.buckets.iter().next() {
            if when > now_ms {
                break;
            }
            out.extend(self.buckets.remove(&when).unwrap_or_default());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_ids_of_other_servers_never_move_our_range() {
        let now = 1_700_000_000_000;
        let mut t = SessionTracker::new(2000, now, 2);
        // A snapshot from server 3 (a later clock, so numerically larger ids).
        let foreign = initial_session_id(now + 60_000, 3) + 5;
        t.ensure_next_id_above(foreign);
        let id = t.create(4000, now);
        assert_eq!((id as u64) >> 56, 2, "{id:#x} is still ours");
        // Our own ids from before a restart still push the range up.
        let ours = initial_session_id(now + 60_000, 2) + 9;
        t.ensure_next_id_above(ours);
        assert_eq!(t.create(4000, now), ours + 1);
    }

    #[test]
    fn restored_sessions_of_other_servers_do_not_move_the_next_id() {
        let mut t = SessionTracker::new(2000, 1_000_000, 1);
        let own = t.create(6000, 1_000_000);
        // A session server 3 issued, restored from an ensemble snapshot.
        t.ensure_next_id_above(initial_session_id(1_000_000, 3) + 5);
        let next = t.create(6000, 1_000_000);
        assert_eq!(next >> 56, 1, "{next:#x} left server 1's id space");
        assert_eq!(next, own + 1);
        // One of its own, restored after the clock went back, still does.
        t.ensure_next_id_above(own + 10);
        assert_eq!(t.create(6000, 1_000_000), own + 11);
    }

    #[test]
    fn java_random_matches_known_sequence() {
        // new java.util.Random(0).nextInt() == -1155484576
        let mut r = JavaRandom::new(0);
        assert_eq!(r.next_int(), -1155484576);
        assert_eq!(r.next_int(), -723955400);
    }

    #[test]
    fn expiry_is_rounded_to_ticks() {
        let mut t = SessionTracker::new(2000, 0, 1);
        let id = t.create(4000, 1);
        assert_eq!(t.get(id).unwrap().expires_at_ms, 6000);
        assert!(t.expired(5999).is_empty());
        assert_eq!(t.expired(6000), vec![id]);
    }

    #[test]
    fn touch_moves_expiry() {
        let mut t = SessionTracker::new(1000, 0, 1);
        let id = t.create(3000, 0);
        t.touch(id, 3000, 2500);
        assert!(t.expired(4000).is_empty());
        assert_eq!(t.expired(6000), vec![id]);
    }

    #[test]
    fn session_ids_carry_the_server_id() {
        let id = initial_session_id(1_700_000_000_000, 1);
        assert_eq!(id >> 56, 1);
    }
}
