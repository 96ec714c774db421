//! The floor under any server's CPU and latency per watch fan-out round, measured on this
//! machine: one thread does exactly the socket and disk work a round needs and nothing
//! else, and its CPU time per round is the least a server can spend.
//!
//! A round, as `zkd-bench load --workload watch` makes it: each of `watchers` sessions
//! sends an exists request (with a watch) and gets a reply; then a writer sends a setData,
//! which the server writes and fdatasyncs, replies to, and notifies every watcher about.
//! Here the "server" is one thread with a level-triggered epoll: one receive per readable
//! socket, one send per message, the write + fdatasync inline (no hand-off between threads,
//! no protocol decoding, no data tree). The "clients" are one thread on the caller's CPU
//! with blocking sockets. Message sizes are those of the real requests and replies.
//!
//! It must never measure anything but the messages and the fsync: it is the reference the
//! watch targets are judged against (see compare's ratio table).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use crate::fsync;
use crate::stats;

/// exists request for a ~25-byte path, with the watch flag (length prefix included).
const EXISTS_REQ: usize = 42;
/// exists/setData reply: length, reply header, Stat.
const REPLY: usize = 88;
/// setData request with a 100-byte payload.
const SET_REQ: usize = 150;
/// NodeDataChanged notification for that path.
const NOTIFICATION: usize = 57;
/// Bytes of the txn record written and fdatasynced per setData.
const TXN_RECORD: usize = 180;

#[derive(Debug, Clone)]
pub struct WatchFloor {
    /// The server thread's CPU time per round (user + system).
    pub cpu_us_per_round: f64,
    /// Round latency (setData sent until every notification read), p50 and p99.
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Runs `rounds` rounds (after `rounds / 10` unmeasured ones) with `watchers` watching
/// sessions; the server thread is pinned to `server_cpu`, the clients run on the calling
/// thread. The txn records go to a scratch file in `dir` (fsync's Appender, removed when
/// the server thread ends).
pub fn watch_round_floor(
    server_cpu: Option<usize>,
    watchers: usize,
    rounds: usize,
    dir: &Path,
) -> Result<WatchFloor, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let warmup = (rounds / 10).max(1);
    // Preallocated like the txn log (sparse), so writes do not grow the file.
    let mut log = fsync::Appender::create(dir, "watch-floor")
        .map_err(|e| format!("watch floor scratch file in {}: {e}", dir.display()))?;
    let n = watchers;
    let server = std::thread::spawn(move || -> Result<(f64, usize), String> {
        if let Some(c) = server_cpu {
            crate::compare::pin_thread(c);
        }
        // Connection 0 is the writer, 1..=n the watchers: the clients connect one after
        // another, and the accept queue keeps that order.
        let mut conns = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            let (s, _) = l.accept().map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            conns.push(s);
        }
        // A hello byte on each: the clients start once every connection is accepted.
        for c in &mut conns {
            c.write_all(&[1]).map_err(|e| e.to_string())?;
            c.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        let ep = Epoll::new(&conns)?;
        let reply = [0u8; REPLY];
        let notification = [0u8; NOTIFICATION];
        let record = [7u8; TXN_RECORD];
        let mut buf = vec![0u8; 64 << 10];
        let mut pending = vec![0usize; n + 1];
        let mut open = n + 1;
        let mut sets = 0usize;
        let mut cpu_start = 0.0;
        let mut cpu_end = None;
        while open > 0 {
            for idx in ep.wait()? {
                let c = &mut conns[idx];
                let got = match c.read(&mut buf) {
                    Ok(0) => {
                        ep.remove(c.as_raw_fd());
                        open -= 1;
                        continue;
                    }
                    Ok(k) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.to_string()),
                };
                pending[idx] += got;
                let unit = if idx == 0 { SET_REQ } else { EXISTS_REQ };
                while pending[idx] >= unit {
                    pending[idx] -= unit;
                    if idx > 0 {
                        send_all(&conns[idx], &reply)?;
                        continue;
                    }
                    if sets == warmup {
                        cpu_start = fsync::thread_cpu_us();
                    }
                    if sets == warmup + rounds {
                        cpu_end = Some(fsync::thread_cpu_us());
                    }
                    sets += 1;
                    log.append(&record)
                        .and_then(|()| log.file.sync_data())
                        .map_err(|e| e.to_string())?;
                    send_all(&conns[0], &reply)?;
                    for w in &conns[1..] {
                        send_all(w, &notification)?;
                    }
                }
            }
        }
        let end = cpu_end.ok_or("the writer stopped early")?;
        Ok((end - cpu_start, rounds))
    });

    let result = (|| -> Result<stats::Hist, String> {
        let mut conns = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            conns.push(s);
        }
        let mut b = [0u8; 1];
        for c in &mut conns {
            c.read_exact(&mut b).map_err(|e| e.to_string())?;
        }
        let mut h = stats::new_hist();
        let mut inbuf = [0u8; REPLY + NOTIFICATION];
        let req = [0u8; EXISTS_REQ];
        let set = [0u8; SET_REQ];
        // One more set than measured rounds: its arrival closes the last measured round.
        for round in 0..warmup + rounds + 1 {
            for w in &mut conns[1..] {
                w.write_all(&req).map_err(|e| e.to_string())?;
            }
            for w in &mut conns[1..] {
                w.read_exact(&mut inbuf[..REPLY])
                    .map_err(|e| e.to_string())?;
            }
            let t = Instant::now();
            conns[0].write_all(&set).map_err(|e| e.to_string())?;
            conns[0]
                .read_exact(&mut inbuf[..REPLY])
                .map_err(|e| e.to_string())?;
            for w in &mut conns[1..] {
                w.read_exact(&mut inbuf[..NOTIFICATION])
                    .map_err(|e| e.to_string())?;
            }
            if round >= warmup && round < warmup + rounds {
                stats::record(&mut h, t.elapsed());
            }
        }
        Ok(h)
    })();
    // Dropping the clients' sockets (on either path) ends the server thread.
    let served = server
        .join()
        .map_err(|_| "watch floor server thread panicked".to_string())?;
    let h = result?;
    let (cpu_us, rounds) = served?;
    Ok(WatchFloor {
        cpu_us_per_round: cpu_us / rounds as f64,
        p50_us: stats::q_us(&h, 0.5),
        p99_us: stats::q_us(&h, 0.99),
    })
}

/// One send of the whole message (they are small: a short send means a full socket
/// buffer, which the round's sizes never reach).
fn send_all(s: &TcpStream, msg: &[u8]) -> Result<(), String> {
    let mut s = s;
    match s.write(msg) {
        Ok(k) if k == msg.len() => Ok(()),
        Ok(k) => Err(format!("short send: {k} of {} bytes", msg.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// A level-triggered epoll set over the connections, keyed by index.
struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    fn new(conns: &[TcpStream]) -> Result<Self, String> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 has no preconditions; a non-negative result is a new fd
        // we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // SAFETY: fd was just created and is owned by nothing else.
        let ep = Epoll(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        for (i, c) in conns.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both fds are open; ev is a valid epoll_event.
            let r = unsafe {
                libc::epoll_ctl(
                    ep.0.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    c.as_raw_fd(),
                    &mut ev,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error().to_string());
            }
        }
        Ok(ep)
    }

    fn remove(&self, fd: i32) {
        // SAFETY: both fds are open; a null event is allowed for EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    /// Blocks until at least one connection is readable; their indices.
    fn wait(&self) -> Result<Vec<usize>, String> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            // SAFETY: evs is valid for its length.
            let k = unsafe {
                libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, -1)
            };
            if k >= 0 {
                return Ok(evs[..k as usize].iter().map(|e| e.u64 as usize).collect());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_costs_some_cpu_and_every_message_arrives() {
        let dir = std::env::temp_dir();
        let f = watch_round_floor(None, 8, 50, &dir).unwrap();
        // Each round does 17 receives, 17 sends and an fdatasync: not free.
        assert!(f.cpu_us_per_round > 0.0, "{f:?}");
        assert!(f.p50_us > 0.0 && f.p99_us >= f.p50_us, "{f:?}");
    }
}
