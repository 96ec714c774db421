#!/usr/bin/python3
"""Turns proxy.py's JSON-lines log into the golden fixture text format
documented in proto/tests/golden/README.md.

Usage: render.py frames.jsonl OUT.txt
"""
import json
import struct
import sys
from collections import defaultdict, deque

OPS = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData",
    5: "setData", 6: "getACL", 7: "setACL", 8: "getChildren", 9: "sync",
    11: "ping", 12: "getChildren2", 13: "check", 14: "multi", 15: "create2",
    16: "reconfig", 17: "checkWatches", 18: "removeWatches",
    19: "createContainer", 20: "deleteContainer", 21: "createTTL",
    22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl",
    103: "getEphemerals", 104: "getAllChildrenNumber", 105: "setWatches2",
    106: "addWatch", 107: "whoAmI", -10: "createSession", -11: "closeSession",
    -1: "error",
}
ERRS = {0: "OK", -101: "NONODE", -102: "NOAUTH", -103: "BADVERSION",
        -110: "NODEEXISTS", -111: "NOTEMPTY", -2: "RUNTIMEINCONSISTENCY",
        -121: "NOWATCHER", -4: "CONNECTIONLOSS"}
EVENT_TYPES = {-1: "None", 1: "NodeCreated", 2: "NodeDeleted",
               3: "NodeDataChanged", 4: "NodeChildrenChanged",
               5: "DataWatchRemoved", 6: "ChildWatchRemoved",
               7: "PersistentWatchRemoved"}
# request ops whose body starts with a ustring path
PATH_FIRST = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 17, 18, 19, 21, 103, 104, 106}


def i32(b, o):
    return struct.unpack_from(">i", b, o)[0]


def i64(b, o):
    return struct.unpack_from(">q", b, o)[0]


def ustr(b, o):
    n = i32(b, o)
    if n < 0:
        return None, o + 4
    return b[o + 4:o + 4 + n].decode("utf-8", "replace"), o + 4 + n


def describe_request(op, body):
    try:
        if op in PATH_FIRST:
            p, _ = ustr(body, 0)
            return "path=%s" % p
        if op == 100:
            t = i32(body, 0)
            s, o = ustr(body, 4)
            return "authType=%d scheme=%s" % (t, s)
        if op in (101, 105):
            return "relativeZxid=0x%x" % i64(body, 0)
    except Exception:
        pass
    return ""


def main():
    src, out = sys.argv[1], sys.argv[2]
    recs = [json.loads(l) for l in open(src)]
    recs.sort(key=lambda r: r["seq"])
    lines = []
    handshake_done = defaultdict(lambda: {"C>": False, "S<": False})
    pending = defaultdict(dict)              # conn -> xid -> op  (normal xids)
    special = defaultdict(lambda: defaultdict(deque))  # conn -> xid -> ops
    counts = defaultdict(int)
    for r in recs:
        if "mark" in r:
            if r["mark"] == "end":
                continue
            lines.append("")
            lines.append("## scenario: %s" % r["mark"])
            continue
        if "event" in r:
            lines.append("@conn %d %s" % (r["conn"], r["event"]))
            continue
        if "hex" not in r:
            raise SystemExit("unframed data in log: %r" % r)
        conn, d, frame = r["conn"], r["dir"], bytes.fromhex(r["hex"])
        body = frame[4:]
        n = len(frame)
        if not handshake_done[conn][d]:
            handshake_done[conn][d] = True
            if d == "C>":
                pv, lz, to, sid = i32(body, 0), i64(body, 4), i32(body, 12), i64(body, 16)
                ro = "readOnly=%d" % body[44] if len(body) > 44 else "no readOnly byte"
                lines.append("# ConnectRequest %d bytes: protocolVersion=%d lastZxidSeen=0x%x timeOut=%d sessionId=0x%x %s"
                             % (n, pv, lz, to, sid, ro))
            else:
                pv, to, sid = i32(body, 0), i32(body, 4), i64(body, 8)
                ro = "readOnly=%d" % body[36] if len(body) > 36 else "no readOnly byte"
                lines.append("# ConnectResponse %d bytes: protocolVersion=%d timeOut=%d sessionId=0x%x %s"
                             % (n, pv, to, sid, ro))
            lines.append("%s connect conn=%d %s" % (d, conn, frame.hex()))
            counts["connect " + ("request" if d == "C>" else "response")] += 1
            continue
        if d == "C>":
            xid, op = i32(body, 0), i32(body, 4)
            if xid < 0:
                special[conn][xid].append(op)
            else:
                if xid in pending[conn]:
                    raise SystemExit("duplicate xid %d" % xid)
                pending[conn][xid] = op
            desc = describe_request(op, body[8:])
            lines.append("# %s (%d) request xid=%d %d bytes %s" % (OPS.get(op, "?"), op, xid, n, desc))
            lines.append("C> request conn=%d op=%d xid=%d %s" % (conn, op, xid, frame.hex()))
            counts["%s (%d) request" % (OPS.get(op, "?"), op)] += 1
        else:
            xid, zxid, err = i32(body, 0), i64(body, 4), i32(body, 12)
            if xid == -1:
                et, st = i32(body, 16), i32(body, 20)
                p, _ = ustr(body, 24)
                lines.append("# notification xid=-1 %d bytes: type=%d(%s) state=%d path=%s zxid=0x%x"
                             % (n, et, EVENT_TYPES.get(et, "?"), st, p, zxid))
                lines.append("S< event conn=%d xid=-1 err=%d %s" % (conn, err, frame.hex()))
                counts["notification (xid -1)"] += 1
                continue
            if xid < 0:
                q = special[conn][xid]
                if not q:
                    raise SystemExit("unpaired special reply xid %d" % xid)
                op = q.popleft()
            else:
                if xid not in pending[conn]:
                    raise SystemExit("unpaired reply xid %d" % xid)
                op = pending[conn].pop(xid)
            lines.append("# %s (%d) reply xid=%d %d bytes zxid=0x%x err=%d(%s)%s"
                         % (OPS.get(op, "?"), op, xid, n, zxid, err, ERRS.get(err, "?"),
                            " header only" if n == 20 else ""))
            lines.append("S< reply conn=%d op=%d xid=%d err=%d %s" % (conn, op, xid, err, frame.hex()))
            counts["%s (%d) reply" % (OPS.get(op, "?"), op)] += 1
    for conn, p in pending.items():
        if p:
            lines.append("# WARNING conn %d: requests without reply: %r" % (conn, p))
    head = [
        "# zkd golden wire fixtures -- see README.md in this directory for the format.",
        "# Captured from Apache ZooKeeper 3.8.0 Java client <-> Apache ZooKeeper 3.8.0 server",
        "# (Debian packages) through tools/golden-capture/proxy.py; regenerate with",
        "# tools/golden-capture/run.sh. zxids, times, session ids and passwords are",
        "# whatever the real server produced.",
        "#",
        "# frame counts:",
    ] + ["#   %-40s %d" % (k, v) for k, v in sorted(counts.items())]
    with open(out, "w") as f:
        f.write("\n".join(head + lines) + "\n")
    for k, v in sorted(counts.items()):
        print("%-40s %d" % (k, v))


if __name__ == "__main__":
    main()
