#!/usr/bin/python3
"""Recording TCP proxy for the ZooKeeper wire protocol.

Sits between a ZooKeeper client and server and records every length-prefixed
frame (4-byte big-endian length + payload) per direction, in the global order
in which the proxy saw them, to a JSON-lines log.

Usage:
    proxy.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT CONTROL_PORT LOGFILE

Control port (line protocol, one command per connection or several):
    mark <label>   -> writes a {"mark": label} record into the log; replies "ok"
    drop           -> closes every live proxied connection (both sides), so the
                      client sees a disconnect and reconnects; replies "ok"
    quit           -> stops the proxy; replies "ok"

Log records (one JSON object per line):
    {"seq": n, "conn": c, "dir": "C>"|"S<", "hex": "<frame incl. prefix>", "t": ts}
    {"seq": n, "mark": "<label>", "t": ts}
    {"seq": n, "conn": c, "event": "open"|"close"|"drop", "t": ts}
"""
import json
import os
import socket
import struct
import sys
import threading
import time

lock = threading.Lock()
seq = 0
conns = {}  # id -> (client_sock, server_sock)
conn_counter = 0
logf = None
stop = threading.Event()


def log(rec):
    global seq
    with lock:
        seq += 1
        rec = dict(rec)
        rec["seq"] = seq
        rec["t"] = round(time.time(), 6)
        logf.write(json.dumps(rec, sort_keys=True) + "\n")
        logf.flush()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def pump(cid, src, dst, direction):
    """Read whole frames from src, log them, then forward them to dst.

    Logging happens before forwarding so the log order is causal: a reply can
    never be logged before the request that caused it.
    """
    try:
        while True:
            hdr = recv_exact(src, 4)
            if hdr is None:
                break
            (n,) = struct.unpack(">i", hdr)
            if n < 0 or n > 64 * 1024 * 1024:
                # Not a framed stream (e.g. a four-letter word); forward raw.
                log({"conn": cid, "dir": direction, "raw": hdr.hex()})
                dst.sendall(hdr)
                continue
            body = recv_exact(src, n)
            if body is None:
                log({"conn": cid, "dir": direction, "partial": (hdr).hex()})
                break
            frame = hdr + body
            log({"conn": cid, "dir": direction, "hex": frame.hex()})
            dst.sendall(frame)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle_client(csock, upstream):
    global conn_counter
    with lock:
        conn_counter += 1
        cid = conn_counter
    try:
        ssock = socket.create_connection(upstream)
    except OSError:
        csock.close()
        return
    for s in (csock, ssock):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with lock:
        conns[cid] = (csock, ssock)
    log({"conn": cid, "event": "open"})
    t1 = threading.Thread(target=pump, args=(cid, csock, ssock, "C>"), daemon=True)
    t2 = threading.Thread(target=pump, args=(cid, ssock, csock, "S<"), daemon=True)
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    csock.close()
    ssock.close()
    with lock:
        conns.pop(cid, None)
    log({"conn": cid, "event": "close"})


def control_loop(ctl):
    while not stop.is_set():
        try:
            s, _ = ctl.accept()
        except OSError:
            break
        f = s.makefile("rwb")
        for line in f:
            cmd = line.decode().strip()
            if cmd.startswith("mark "):
                log({"mark": cmd[5:]})
            elif cmd == "drop":
                with lock:
                    live = list(conns.items())
                for cid, (a, b) in live:
                    log({"conn": cid, "event": "drop"})
                    for x in (a, b):
                        try:
                            x.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
            elif cmd == "quit":
                stop.set()
            f.write(b"ok\n")
            f.flush()
            if stop.is_set():
                break
        s.close()
    os._exit(0)


def main():
    global logf
    listen_port, up_host, up_port, ctl_port, logfile = sys.argv[1:6]
    logf = open(logfile, "w")
    upstream = (up_host, int(up_port))
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(listen_port)))
    lsock.listen(16)
    ctl = socket.socket()
    ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ctl.bind(("127.0.0.1", int(ctl_port)))
    ctl.listen(4)
    threading.Thread(target=control_loop, args=(ctl,), daemon=True).start()
    print("proxy ready", flush=True)
    while not stop.is_set():
        c, _ = lsock.accept()
        threading.Thread(target=handle_client, args=(c, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
