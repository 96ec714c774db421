#!/usr/bin/python3
"""kazoo (Python ZooKeeper client) compatibility suite.

Usage:  /usr/bin/python3 compat/kazoo/test_kazoo.py HOST:PORT [unittest args]
    or  ZK_HOST=HOST:PORT /usr/bin/python3 compat/kazoo/test_kazoo.py

Every test works under a unique prefix /compat-kazoo-<random>/<test> and the
whole prefix is deleted at the end.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import unittest
import uuid
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.exceptions import (BadArgumentsError, BadVersionError,
                              NoAuthError, NodeExistsError, NoNodeError,
                              NotEmptyError, RolledBackError,
                              RuntimeInconsistency,
                              NoChildrenForEphemeralsError)
from kazoo.protocol.serialization import Create2, long_struct
from kazoo.protocol.states import EventType, ZnodeStat
from kazoo.security import (OPEN_ACL_UNSAFE, make_digest_acl,
                            make_digest_acl_credential)

if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
    HOST = sys.argv.pop(1)
else:
    HOST = os.environ.get("ZK_HOST", "127.0.0.1:2181")

PREFIX = "/compat-kazoo-%s" % uuid.uuid4().hex[:10]
WAIT = 10.0  # default timeout for any wait on an event
TEST_TIMEOUT = 60  # hard limit per test method
# Container / TTL reaping depends on the server's reaper interval
# (Apache ZK: znode.container.checkIntervalMs; start-apache-zk.sh sets 1000ms).
REAP_WAIT = float(os.environ.get("COMPAT_REAP_TIMEOUT", "20"))

logging.basicConfig(level=logging.CRITICAL)

# Apache ZK stores containers/TTL nodes with a special ephemeralOwner
# internally (Long.MIN_VALUE / 0xFF00..|ttl) but reports 0 to clients.
CONTAINER_OWNER = 0


# --- extended create requests kazoo 2.8 does not expose --------------------
class CreateContainer(namedtuple("CreateContainer", "path data acl flags")):
    """opcode 19, same body as create2, flags = 4 (CONTAINER)."""
    type = 19
    serialize = Create2.serialize
    deserialize = Create2.deserialize


class CreateTTL(namedtuple("CreateTTL", "path data acl flags ttl")):
    """opcode 21: create2 body + long ttl; flags 5 = PERSISTENT_WITH_TTL,
    6 = PERSISTENT_SEQUENTIAL_WITH_TTL."""
    type = 21

    def serialize(self):
        b = bytearray(Create2.serialize(self))
        b.extend(long_struct.pack(self.ttl))
        return b

    deserialize = Create2.deserialize


def raw_call(client, request):
    ar = client.handler.async_result()
    client._call(request, ar)
    return ar.get(timeout=WAIT)


def create_container(client, path, data=b""):
    return raw_call(client, CreateContainer(path, data, OPEN_ACL_UNSAFE, 4))


def create_ttl(client, path, ttl, data=b"", sequential=False):
    return raw_call(client, CreateTTL(path, data, OPEN_ACL_UNSAFE,
                                      6 if sequential else 5, ttl))


def wait_until(pred, timeout=WAIT, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def new_client(**kw):
    kw.setdefault("timeout", 10.0)
    c = KazooClient(hosts=HOST, **kw)
    c.start(timeout=WAIT)
    return c


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.zk = new_client()
        cls.zk.ensure_path(PREFIX)

    @classmethod
    def tearDownClass(cls):
        cls.zk.stop()
        cls.zk.close()

    def setUp(self):
        # per-test watchdog: a server that stops answering fails the test
        # instead of hanging the suite
        def on_alarm(signum, frame):
            raise TimeoutError("test exceeded %ds" % TEST_TIMEOUT)
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(TEST_TIMEOUT)
        self.clients = []
        self.base = "%s/%s" % (PREFIX, self._testMethodName)
        self.zk.create(self.base)

    def tearDown(self):
        signal.alarm(0)
        for c in self.clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass

    def client(self, **kw):
        c = new_client(**kw)
        self.clients.append(c)
        return c

    def p(self, *parts):
        return "/".join((self.base,) + parts)


class CoreTests(Base):
    def test_create_persistent_and_get(self):
        path = self.zk.create(self.p("a"), b"hello")
        self.assertEqual(path, self.p("a"))
        data, stat = self.zk.get(path)
        self.assertEqual(data, b"hello")
        self.assertEqual(stat.version, 0)
        self.assertEqual(stat.cversion, 0)
        self.assertEqual(stat.aversion, 0)
        self.assertEqual(stat.ephemeralOwner, 0)
        self.assertEqual(stat.dataLength, 5)
        self.assertEqual(stat.numChildren, 0)
        self.assertEqual(stat.czxid, stat.mzxid)
        self.assertEqual(stat.czxid, stat.pzxid)
        self.assertEqual(stat.ctime, stat.mtime)
        self.assertGreater(stat.czxid, 0)
        # ctime is wall-clock milliseconds
        self.assertLess(abs(stat.ctime / 1000.0 - time.time()), 300)
        # empty data
        self.zk.create(self.p("empty"))
        data, stat = self.zk.get(self.p("empty"))
        self.assertEqual(data, b"")
        self.assertEqual(stat.dataLength, 0)

    def test_create2_include_data(self):
        path, stat = self.zk.create(self.p("c2"), b"xyz", include_data=True)
        self.assertEqual(path, self.p("c2"))
        self.assertEqual(stat.dataLength, 3)
        self.assertEqual(stat.version, 0)
        self.assertEqual(self.zk.exists(path), stat)

    def test_create_errors(self):
        self.zk.create(self.p("x"))
        with self.assertRaises(NodeExistsError):
            self.zk.create(self.p("x"))
        with self.assertRaises(NoNodeError):
            self.zk.create(self.p("missing", "child"))
        # makepath creates parents
        self.zk.create(self.p("m1", "m2", "m3"), b"d", makepath=True)
        self.assertEqual(self.zk.get(self.p("m1", "m2", "m3"))[0], b"d")

    def test_ephemeral(self):
        path = self.zk.create(self.p("eph"), b"e", ephemeral=True)
        stat = self.zk.exists(path)
        self.assertEqual(stat.ephemeralOwner, self.zk.client_id[0])
        self.assertNotEqual(stat.ephemeralOwner, 0)
        with self.assertRaises(NoChildrenForEphemeralsError):
            self.zk.create(path + "/child")
        self.zk.delete(path)

    def test_sequential(self):
        parent = self.p("seq")
        self.zk.create(parent)
        paths = [self.zk.create(parent + "/n-", b"", sequence=True)
                 for _ in range(5)]
        nums = []
        for pth in paths:
            self.assertTrue(pth.startswith(parent + "/n-"), pth)
            suffix = pth[len(parent + "/n-"):]
            self.assertEqual(len(suffix), 10, pth)  # %010d
            self.assertTrue(suffix.isdigit(), pth)
            nums.append(int(suffix))
        self.assertEqual(nums, [0, 1, 2, 3, 4])
        self.assertEqual(self.zk.exists(parent).cversion, 5)
        # Apache ZK: the sequence suffix counts child *creations* only,
        # while the cversion visible in Stat counts creations + deletions
        # (internally DataNode keeps #creates and reports 2*creates-numChildren).
        self.zk.delete(paths[-1])
        self.assertEqual(self.zk.exists(parent).cversion, 6)
        nxt = self.zk.create(parent + "/n-", sequence=True)
        self.assertEqual(nxt, parent + "/n-0000000005")
        self.assertEqual(self.zk.exists(parent).cversion, 7)
        # non-sequential creates advance the counter too; prefixes share it
        self.zk.create(parent + "/plain")
        other = self.zk.create(parent + "/other-", sequence=True)
        self.assertEqual(other, parent + "/other-0000000007")
        # sequential ephemeral
        e = self.zk.create(parent + "/e-", ephemeral=True, sequence=True)
        self.assertEqual(e, parent + "/e-0000000008")
        self.assertEqual(self.zk.exists(e).ephemeralOwner, self.zk.client_id[0])
        # sequential with empty suffix name (path ends with '/')
        s = self.zk.create(parent + "/", sequence=True)
        self.assertEqual(s, parent + "/0000000009")
        self.zk.delete(parent + "/plain")
        self.zk.delete(s)
        # 10 creates, 3 deletes, 7 children
        st = self.zk.exists(parent)
        self.assertEqual((st.cversion, st.numChildren), (13, 7))
        self.assertEqual(self.zk.create(parent + "/n-", sequence=True),
                         parent + "/n-0000000010")

    def test_set_versions(self):
        path = self.zk.create(self.p("v"), b"0")
        s0 = self.zk.exists(path)
        s1 = self.zk.set(path, b"one")
        self.assertEqual(s1.version, 1)
        self.assertEqual(s1.dataLength, 3)
        self.assertEqual(s1.czxid, s0.czxid)
        self.assertGreater(s1.mzxid, s0.mzxid)
        self.assertEqual(s1.pzxid, s0.pzxid)
        self.assertGreaterEqual(s1.mtime, s0.mtime)
        self.assertEqual(s1.ctime, s0.ctime)
        s2 = self.zk.set(path, b"two", version=1)
        self.assertEqual(s2.version, 2)
        with self.assertRaises(BadVersionError):
            self.zk.set(path, b"bad", version=1)
        self.assertEqual(self.zk.get(path)[0], b"two")
        s3 = self.zk.set(path, b"", version=-1)
        self.assertEqual(s3.version, 3)
        self.assertEqual(s3.dataLength, 0)
        with self.assertRaises(NoNodeError):
            self.zk.set(self.p("nope"), b"x")
        # large-ish value (~500 KiB, below default 1 MiB jute.maxbuffer)
        big = os.urandom(500 * 1024)
        self.zk.set(path, big)
        self.assertEqual(self.zk.get(path)[0], big)

    def test_exists_and_children_stat(self):
        parent = self.zk.create(self.p("par"))
        self.assertIsNone(self.zk.exists(self.p("nothing")))
        st0 = self.zk.exists(parent)
        self.zk.create(parent + "/c1", b"1")
        self.zk.create(parent + "/c2", b"22")
        self.zk.create(parent + "/c3", b"333")
        st = self.zk.exists(parent)
        self.assertEqual(st.numChildren, 3)
        self.assertEqual(st.cversion, 3)
        self.assertEqual(st.version, 0)  # data version unaffected
        self.assertEqual(st.mzxid, st0.mzxid)
        self.assertGreater(st.pzxid, st0.pzxid)
        c3 = self.zk.exists(parent + "/c3")
        self.assertEqual(st.pzxid, c3.czxid)
        self.zk.delete(parent + "/c2")
        st2 = self.zk.exists(parent)
        self.assertEqual(st2.numChildren, 2)
        self.assertEqual(st2.cversion, 4)
        self.assertGreater(st2.pzxid, st.pzxid)
        # setting a child's data changes neither cversion nor pzxid
        self.zk.set(parent + "/c1", b"x")
        st3 = self.zk.exists(parent)
        self.assertEqual(st3.cversion, 4)
        self.assertEqual(st3.pzxid, st2.pzxid)

    def test_get_children(self):
        parent = self.zk.create(self.p("kids"))
        self.assertEqual(self.zk.get_children(parent), [])
        for n in ("b", "a", "c"):
            self.zk.create(parent + "/" + n, n.encode())
        self.assertEqual(sorted(self.zk.get_children(parent)), ["a", "b", "c"])
        kids, stat = self.zk.get_children(parent, include_data=True)
        self.assertEqual(sorted(kids), ["a", "b", "c"])
        self.assertIsInstance(stat, ZnodeStat)
        self.assertEqual(stat.numChildren, 3)
        self.assertEqual(stat, self.zk.exists(parent))
        with self.assertRaises(NoNodeError):
            self.zk.get_children(self.p("nope"))
        # grandchildren are not listed
        self.zk.create(parent + "/a/deep")
        self.assertEqual(sorted(self.zk.get_children(parent)), ["a", "b", "c"])

    def test_delete(self):
        path = self.zk.create(self.p("d"), b"x")
        self.zk.set(path, b"y")
        with self.assertRaises(BadVersionError):
            self.zk.delete(path, version=0)
        self.zk.delete(path, version=1)
        self.assertIsNone(self.zk.exists(path))
        with self.assertRaises(NoNodeError):
            self.zk.delete(path)
        self.zk.create(self.p("full", "kid"), makepath=True)
        with self.assertRaises(NotEmptyError):
            self.zk.delete(self.p("full"))
        self.zk.delete(self.p("full"), recursive=True)
        self.assertIsNone(self.zk.exists(self.p("full")))

    def test_delete_recursive_deep(self):
        for i in range(3):
            for j in range(3):
                self.zk.create(self.p("tree", "n%d" % i, "m%d" % j), b"v",
                               makepath=True)
        self.assertEqual(len(self.zk.get_children(self.p("tree"))), 3)
        self.zk.delete(self.p("tree"), recursive=True)
        self.assertIsNone(self.zk.exists(self.p("tree")))

    def test_ensure_path(self):
        self.assertTrue(self.zk.ensure_path(self.p("e1", "e2", "e3")))
        self.assertIsNotNone(self.zk.exists(self.p("e1", "e2", "e3")))
        # idempotent
        self.zk.ensure_path(self.p("e1", "e2", "e3"))

    def test_sync(self):
        path = self.zk.create(self.p("s"), b"1")
        other = self.client()
        self.zk.set(path, b"2")
        self.assertEqual(other.sync(path), path)
        self.assertEqual(other.get(path)[0], b"2")
        self.assertEqual(other.sync("/"), "/")

    def test_root_and_zookeeper_node(self):
        self.assertIsNotNone(self.zk.exists("/"))
        self.assertIn("zookeeper", self.zk.get_children("/"))
        self.assertIn("quota", self.zk.get_children("/zookeeper"))

    def test_server_version_and_session(self):
        sid, pwd = self.zk.client_id
        self.assertNotEqual(sid, 0)
        self.assertEqual(len(pwd), 16)
        # negotiated session timeout is within the server's bounds
        c = self.client(timeout=6.0)
        self.assertTrue(c.connected)
        self.assertNotEqual(c.client_id[0], sid)


class WatchTests(Base):
    def test_data_watch_changed_and_deleted(self):
        path = self.zk.create(self.p("w"), b"0")
        events = []
        ev = threading.Event()

        def w(event):
            events.append(event)
            ev.set()
        self.zk.get(path, watch=w)
        other = self.client()
        other.set(path, b"1")
        self.assertTrue(ev.wait(WAIT), "data watch did not fire")
        self.assertEqual(events[0].type, EventType.CHANGED)
        self.assertEqual(events[0].path, path)
        # one-shot: a second set must not re-fire
        other.set(path, b"2")
        time.sleep(0.3)
        self.assertEqual(len(events), 1)
        ev.clear()
        self.zk.get(path, watch=w)
        other.delete(path)
        self.assertTrue(ev.wait(WAIT), "delete watch did not fire")
        self.assertEqual(events[1].type, EventType.DELETED)

    def test_exists_watch_created(self):
        path = self.p("later")
        events = []
        ev = threading.Event()

        def w(event):
            events.append(event)
            ev.set()
        self.assertIsNone(self.zk.exists(path, watch=w))
        self.client().create(path, b"x")
        self.assertTrue(ev.wait(WAIT), "exists watch did not fire")
        self.assertEqual(events[0].type, EventType.CREATED)
        self.assertEqual(events[0].path, path)

    def test_child_watch(self):
        parent = self.zk.create(self.p("cw"))
        events = []
        ev = threading.Event()

        def w(event):
            events.append(event)
            ev.set()
        self.zk.get_children(parent, watch=w)
        other = self.client()
        other.create(parent + "/k")
        self.assertTrue(ev.wait(WAIT), "child watch did not fire on create")
        self.assertEqual(events[0].type, EventType.CHILD)
        self.assertEqual(events[0].path, parent)
        # setting data of child must not trigger a child watch
        ev.clear()
        self.zk.get_children(parent, watch=w)
        other.set(parent + "/k", b"data")
        time.sleep(0.3)
        self.assertEqual(len(events), 1)
        other.delete(parent + "/k")
        self.assertTrue(ev.wait(WAIT), "child watch did not fire on delete")
        self.assertEqual(events[1].type, EventType.CHILD)

    def test_delete_parent_fires_child_watch_deleted(self):
        parent = self.zk.create(self.p("pw"))
        events = []
        ev = threading.Event()

        def w(event):
            events.append(event)
            ev.set()
        self.zk.get_children(parent, watch=w)
        self.client().delete(parent)
        self.assertTrue(ev.wait(WAIT))
        self.assertEqual(events[0].type, EventType.DELETED)

    def test_watch_ordering_vs_response(self):
        # a watch event must be delivered before the response to a later
        # read of the same client that observes the change
        path = self.zk.create(self.p("ord"), b"0")
        seen = []

        def w(event):
            seen.append(event.type)
        self.zk.get(path, watch=w)
        self.zk.set(path, b"1")
        # kazoo delivers watch callbacks on a worker thread; allow it time
        self.assertTrue(wait_until(lambda: seen == [EventType.CHANGED]))

    def test_datawatch_recipe(self):
        path = self.p("dw")
        calls = []
        cond = threading.Condition()

        def fn(data, stat):
            with cond:
                calls.append((data, stat.version if stat else None))
                cond.notify_all()
        self.zk.DataWatch(path, fn)
        other = self.client()
        self.assertTrue(wait_until(lambda: calls == [(None, None)]), calls)
        # wait for each callback before the next change: DataWatch re-reads
        # the node after each event, so back-to-back changes may coalesce
        other.create(path, b"a")
        self.assertTrue(wait_until(lambda: calls[-1] == (b"a", 0)), calls)
        other.set(path, b"b")
        self.assertTrue(wait_until(lambda: calls[-1] == (b"b", 1)), calls)
        other.delete(path)
        self.assertTrue(wait_until(lambda: calls[-1] == (None, None)), calls)

    def test_childrenwatch_recipe(self):
        parent = self.zk.create(self.p("chw"))
        seen = []
        self.zk.ChildrenWatch(parent, lambda kids: seen.append(sorted(kids)))
        other = self.client()
        other.create(parent + "/x")
        self.assertTrue(wait_until(lambda: seen and seen[-1] == ["x"]), seen)
        other.create(parent + "/y")
        self.assertTrue(wait_until(lambda: seen[-1] == ["x", "y"]), seen)
        other.delete(parent + "/x")
        self.assertTrue(wait_until(lambda: seen[-1] == ["y"]), seen)
        self.assertEqual(seen[0], [])


class TransactionTests(Base):
    def test_successful_transaction(self):
        self.zk.create(self.p("t"), b"v")
        t = self.zk.transaction()
        t.check(self.p("t"), 0)
        t.create(self.p("t", "new"), b"n")
        t.set_data(self.p("t"), b"v2")
        t.create(self.p("tseq-"), b"", sequence=True)
        t.create(self.p("t2"), b"x")
        t.delete(self.p("t2"))
        res = t.commit()
        self.assertEqual(len(res), 6)
        self.assertIs(res[0], True)
        self.assertEqual(res[1], self.p("t", "new"))
        self.assertIsInstance(res[2], ZnodeStat)
        self.assertEqual(res[2].version, 1)
        self.assertTrue(res[3].startswith(self.p("tseq-")))
        self.assertEqual(len(res[3]) - len(self.p("tseq-")), 10)
        self.assertEqual(res[4], self.p("t2"))
        self.assertIs(res[5], True)
        self.assertEqual(self.zk.get(self.p("t", "new"))[0], b"n")
        self.assertIsNone(self.zk.exists(self.p("t2")))
        # every op of a multi gets the same zxid
        a = self.zk.exists(self.p("t", "new"))
        b = self.zk.exists(self.p("t"))
        self.assertEqual(a.czxid, b.mzxid)

    def test_failing_transaction(self):
        self.zk.create(self.p("f"), b"v")
        t = self.zk.transaction()
        t.create(self.p("f", "a"))           # would succeed
        t.check(self.p("f"), 5)              # fails: BadVersion
        t.create(self.p("f", "b"))           # not executed
        t.set_data(self.p("f"), b"zz")       # not executed
        res = t.commit()
        self.assertEqual(len(res), 4, res)
        self.assertIsInstance(res[0], RolledBackError)
        self.assertIsInstance(res[1], BadVersionError)
        self.assertIsInstance(res[2], RuntimeInconsistency)
        self.assertIsInstance(res[3], RuntimeInconsistency)
        # nothing applied
        self.assertIsNone(self.zk.exists(self.p("f", "a")))
        self.assertEqual(self.zk.get(self.p("f")), (b"v", self.zk.exists(self.p("f"))))
        self.assertEqual(self.zk.exists(self.p("f")).version, 0)

    def test_failing_transaction_nonode_and_exists(self):
        self.zk.create(self.p("g"))
        t = self.zk.transaction()
        t.create(self.p("g"))                # NodeExists
        t.delete(self.p("g"))
        res = t.commit()
        self.assertIsInstance(res[0], NodeExistsError)
        self.assertIsInstance(res[1], RuntimeInconsistency)
        t = self.zk.transaction()
        t.set_data(self.p("g"), b"1")
        t.delete(self.p("nonexistent"))       # NoNode
        res = t.commit()
        self.assertIsInstance(res[0], RolledBackError)
        self.assertIsInstance(res[1], NoNodeError)
        self.assertEqual(self.zk.exists(self.p("g")).version, 0)

    def test_transaction_sees_own_ops(self):
        # ops later in a multi see the effects of earlier ops
        t = self.zk.transaction()
        t.create(self.p("h"), b"a")
        t.create(self.p("h", "child"), b"b")
        t.set_data(self.p("h"), b"c")
        t.check(self.p("h"), 1)
        t.delete(self.p("h", "child"))
        res = t.commit()
        self.assertFalse(any(isinstance(r, Exception) for r in res), res)
        st = self.zk.exists(self.p("h"))
        self.assertEqual(st.version, 1)
        self.assertEqual(st.cversion, 2)
        self.assertEqual(st.numChildren, 0)


class AclTests(Base):
    def test_digest_acl(self):
        acl = make_digest_acl("alice", "secret", all=True)
        path = self.zk.create(self.p("secure"), b"s", acl=[acl])
        # getACL needs READ (or ADMIN) permission since ZK 3.6
        with self.assertRaises(NoAuthError):
            self.zk.get_acls(path)
        alice = self.client(auth_data=[("digest", "alice:secret")])
        got, stat = alice.get_acls(path)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].id.scheme, "digest")
        self.assertEqual(got[0].id.id,
                         make_digest_acl_credential("alice", "secret"))
        self.assertEqual(got[0].perms, 31)
        self.assertEqual(stat.aversion, 0)
        # unauthenticated client is refused
        anon = self.client()
        with self.assertRaises(NoAuthError):
            anon.get(path)
        with self.assertRaises(NoAuthError):
            anon.set(path, b"x")
        with self.assertRaises(NoAuthError):
            anon.create(path + "/c")
        # exists is not ACL-checked in 3.8; 3.9.5 checks READ (ZOOKEEPER-2590).
        try:
            self.assertIsNotNone(anon.exists(path))
        except NoAuthError:
            pass
        # wrong password still refused
        wrong = self.client()
        wrong.add_auth("digest", "alice:wrong")
        with self.assertRaises(NoAuthError):
            wrong.get(path)
        # right credentials
        self.assertEqual(alice.get(path)[0], b"s")
        alice.set(path, b"t")
        alice.create(path + "/c")
        alice.delete(path + "/c")
        # add_auth on an existing session also works
        anon.add_auth("digest", "alice:secret")
        self.assertEqual(anon.get(path)[0], b"t")
        # make it deletable by anyone again for cleanup
        alice.set_acls(path, OPEN_ACL_UNSAFE)
        self.assertEqual(self.zk.get_acls(path)[1].aversion, 1)
        # world:anyone ACL with only READ
        from kazoo.security import ACL, Id, Permissions
        ro = [ACL(Permissions.READ, Id("world", "anyone"))]
        path2 = self.zk.create(self.p("worldro"), b"w", acl=ro)
        self.assertEqual(anon.get(path2)[0], b"w")
        with self.assertRaises(NoAuthError):
            anon.set(path2, b"x")

    def test_read_only_acl(self):
        acl_r = make_digest_acl("bob", "pw", read=True)
        acl_all = make_digest_acl("admin", "pw", all=True)
        path = self.zk.create(self.p("ro"), b"r", acl=[acl_r, acl_all])
        bob = self.client(auth_data=[("digest", "bob:pw")])
        self.assertEqual(bob.get(path)[0], b"r")
        with self.assertRaises(NoAuthError):
            bob.set(path, b"x")
        with self.assertRaises(NoAuthError):
            bob.set_acls(path, OPEN_ACL_UNSAFE)
        admin = self.client(auth_data=[("digest", "admin:pw")])
        admin.set_acls(path, OPEN_ACL_UNSAFE, version=0)

    def test_set_acls_version(self):
        path = self.zk.create(self.p("av"))
        with self.assertRaises(BadVersionError):
            self.zk.set_acls(path, OPEN_ACL_UNSAFE, version=3)
        st = self.zk.set_acls(path, OPEN_ACL_UNSAFE, version=0)
        self.assertEqual(st.aversion, 1)
        self.assertEqual(st.version, 0)
        acls, _ = self.zk.get_acls(path)
        self.assertEqual(acls[0].id.scheme, "world")
        self.assertEqual(acls[0].id.id, "anyone")
        self.assertEqual(acls[0].perms, 31)

    def test_delete_permission_is_on_parent(self):
        # DELETE permission is checked on the parent, not on the node itself
        admin_acl = make_digest_acl("carol", "pw", all=True)
        parent = self.zk.create(self.p("dp"), acl=[admin_acl])
        carol = self.client(auth_data=[("digest", "carol:pw")])
        carol.create(parent + "/kid", acl=OPEN_ACL_UNSAFE)
        anon = self.client()
        anon.set(parent + "/kid", b"ok")   # kid is open
        with self.assertRaises(NoAuthError):
            anon.delete(parent + "/kid")   # parent denies DELETE
        carol.delete(parent + "/kid")
        carol.set_acls(parent, OPEN_ACL_UNSAFE)


class SessionTests(Base):
    def test_ephemeral_removed_on_close(self):
        c = self.client()
        path = c.create(self.p("gone"), ephemeral=True)
        ev = threading.Event()
        types = []

        def w(event):
            types.append(event.type)
            ev.set()
        self.assertIsNotNone(self.zk.exists(path, watch=w))
        c.stop()
        self.assertTrue(ev.wait(WAIT), "no watch on ephemeral removal")
        self.assertEqual(types, [EventType.DELETED])
        self.assertIsNone(self.zk.exists(path))

    def test_ephemeral_removed_on_session_expiry(self):
        # a child process creates an ephemeral with a short session timeout
        # and dies without closing its session: the server must expire it.
        path = self.p("expire")
        code = (
            "import os,sys\n"
            "from kazoo.client import KazooClient\n"
            "c=KazooClient(hosts=sys.argv[1],timeout=4.0)\n"
            "c.start(timeout=10)\n"
            "c.create(sys.argv[2],ephemeral=True)\n"
            "print(c.client_id[0],flush=True)\n"
            "os._exit(0)\n")
        out = subprocess.run(["/usr/bin/python3", "-c", code, HOST, path],
                             capture_output=True, timeout=30, check=True)
        owner = int(out.stdout.decode().strip())
        st = self.zk.exists(path)
        # It may already be gone if the server is quick; otherwise check owner
        if st is not None:
            self.assertEqual(st.ephemeralOwner, owner)
        self.assertTrue(wait_until(lambda: self.zk.exists(path) is None,
                                   timeout=20, interval=0.2),
                        "ephemeral of dead session not removed within 20s")

    def test_session_reuse_by_id(self):
        # reconnecting with the same session id/password keeps ephemerals
        c = self.client()
        path = c.create(self.p("keep"), ephemeral=True)
        sid, pwd = c.client_id
        c2 = KazooClient(hosts=HOST, client_id=(sid, pwd), timeout=10.0)
        c2.start(timeout=WAIT)
        self.clients.append(c2)
        self.assertEqual(c2.client_id[0], sid)
        self.assertEqual(self.zk.exists(path).ephemeralOwner, sid)
        c2.stop()
        self.assertTrue(wait_until(lambda: self.zk.exists(path) is None))


class ExtendedTypeTests(Base):
    def test_container(self):
        path, stat = create_container(self.zk, self.p("cont"), b"c")
        self.assertEqual(path, self.p("cont"))
        self.assertEqual(stat.ephemeralOwner, CONTAINER_OWNER)
        keep, _ = create_container(self.zk, self.p("cont_never_used"))
        self.zk.create(path + "/child", b"")
        self.zk.delete(path + "/child")
        self.assertTrue(
            wait_until(lambda: self.zk.exists(path) is None,
                       timeout=REAP_WAIT, interval=0.2),
            "empty container (that had a child) not reaped")
        # a container that never had children is not reaped
        self.assertIsNotNone(self.zk.exists(keep))

    def test_ttl(self):
        path, stat = create_ttl(self.zk, self.p("ttl"), 500, b"t")
        self.assertEqual(path, self.p("ttl"))
        self.assertEqual(stat.ephemeralOwner, 0)
        spath, sstat = create_ttl(self.zk, self.p("ttlseq-"), 60000,
                                  sequential=True)
        self.assertEqual(len(spath) - len(self.p("ttlseq-")), 10)
        self.assertEqual(sstat.ephemeralOwner, 0)
        self.zk.create(spath + "/kid")
        # long ttl node is not reaped
        self.assertTrue(
            wait_until(lambda: self.zk.exists(path) is None,
                       timeout=REAP_WAIT, interval=0.2),
            "TTL node not reaped")
        self.assertIsNotNone(self.zk.exists(spath))

    def test_ttl_invalid(self):
        with self.assertRaises(BadArgumentsError):
            create_ttl(self.zk, self.p("ttl0"), 0)
        self.assertIsNone(self.zk.exists(self.p("ttl0")))


class RecipeTests(Base):
    def test_lock_contention(self):
        a, b = self.client(), self.client()
        la = a.Lock(self.p("lock"), "A")
        lb = b.Lock(self.p("lock"), "B")
        self.assertTrue(la.acquire(timeout=WAIT))
        self.assertFalse(lb.acquire(blocking=False))
        got = threading.Event()

        def take():
            if lb.acquire(timeout=WAIT):
                got.set()
        t = threading.Thread(target=take)
        t.start()
        self.assertTrue(wait_until(lambda: len(la.contenders()) == 2),
                        la.contenders())
        self.assertEqual(la.contenders(), ["A", "B"])
        time.sleep(0.2)
        self.assertFalse(got.is_set())
        la.release()
        self.assertTrue(got.wait(WAIT), "B did not get the lock")
        t.join(WAIT)
        lb.release()

    def test_lock_mutual_exclusion_threads(self):
        clients = [self.client() for _ in range(3)]
        inside = [0]
        maxinside = [0]
        count = [0]
        mtx = threading.Lock()
        errors = []

        def worker(c, ident):
            try:
                for _ in range(4):
                    lk = c.Lock(self.p("mx"), ident)
                    if not lk.acquire(timeout=WAIT * 2):
                        errors.append("timeout")
                        return
                    with mtx:
                        inside[0] += 1
                        maxinside[0] = max(maxinside[0], inside[0])
                    time.sleep(0.01)
                    with mtx:
                        inside[0] -= 1
                        count[0] += 1
                    lk.release()
            except Exception as e:  # pragma: no cover
                errors.append(repr(e))
        ts = [threading.Thread(target=worker, args=(c, "w%d" % i))
              for i, c in enumerate(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(count[0], 12)
        self.assertEqual(maxinside[0], 1)

    def test_lock_released_on_session_close(self):
        a, b = self.client(), self.client()
        self.assertTrue(a.Lock(self.p("l2")).acquire(timeout=WAIT))
        lb = b.Lock(self.p("l2"))
        self.assertFalse(lb.acquire(blocking=False))
        a.stop()
        self.assertTrue(lb.acquire(timeout=WAIT))
        lb.release()

    def test_election(self):
        a, b = self.client(), self.client()
        leaders = []
        release_a = threading.Event()
        b_led = threading.Event()

        def lead_a():
            leaders.append("A")
            release_a.wait(WAIT)

        def lead_b():
            leaders.append("B")
            b_led.set()
        ea = a.Election(self.p("elect"), "A")
        eb = b.Election(self.p("elect"), "B")
        ta = threading.Thread(target=ea.run, args=(lead_a,))
        ta.start()
        self.assertTrue(wait_until(lambda: leaders == ["A"]))
        tb = threading.Thread(target=eb.run, args=(lead_b,))
        tb.start()
        self.assertTrue(wait_until(lambda: len(ea.contenders()) == 2))
        self.assertEqual(ea.contenders(), ["A", "B"])
        self.assertEqual(leaders, ["A"])
        release_a.set()
        self.assertTrue(b_led.wait(WAIT))
        self.assertEqual(leaders, ["A", "B"])
        ta.join(WAIT)
        tb.join(WAIT)

    def test_counter(self):
        c = self.zk.Counter(self.p("counter"))
        self.assertEqual(c.value, 0)
        c += 5
        c -= 2
        self.assertEqual(c.value, 3)
        fc = self.zk.Counter(self.p("fcounter"), default=0.5)
        fc += 1.25
        self.assertEqual(fc.value, 1.75)
        # concurrent increments from several clients
        clients = [self.client() for _ in range(3)]

        def inc(cl):
            ctr = cl.Counter(self.p("counter"))
            for _ in range(10):
                ctr += 1
        ts = [threading.Thread(target=inc, args=(cl,)) for cl in clients]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(self.zk.Counter(self.p("counter")).value, 33)

    def test_barrier(self):
        bar = self.zk.Barrier(self.p("barrier"))
        bar.create()
        other = self.client()
        ob = other.Barrier(self.p("barrier"))
        result = []
        t = threading.Thread(target=lambda: result.append(ob.wait(WAIT)))
        t.start()
        time.sleep(0.3)
        self.assertEqual(result, [])
        self.assertTrue(ob.wait(0.1) is False)
        bar.remove()
        t.join(WAIT)
        self.assertEqual(result, [True])

    def test_double_barrier(self):
        clients = [self.client() for _ in range(3)]
        entered = []
        left = []
        errs = []

        def run(i, c):
            try:
                db = c.DoubleBarrier(self.p("dbar"), 3, identifier="m%d" % i)
                db.enter()
                entered.append(i)
                db.leave()
                left.append(i)
            except Exception as e:  # pragma: no cover
                errs.append(repr(e))
        ts = [threading.Thread(target=run, args=(i, c), daemon=True)
              for i, c in enumerate(clients[:2])]
        for t in ts:
            t.start()
        time.sleep(0.5)
        self.assertEqual(entered, [], "entered before 3 participants")
        t3 = threading.Thread(target=run, args=(2, clients[2]), daemon=True)
        t3.start()
        ts.append(t3)
        for t in ts:
            t.join(WAIT * 2)
        self.assertEqual(errs, [])
        self.assertEqual(sorted(entered), [0, 1, 2])
        self.assertEqual(sorted(left), [0, 1, 2])

    def test_queue(self):
        q = self.zk.Queue(self.p("queue"))
        for v in (b"one", b"two", b"three"):
            q.put(v)
        q.put(b"urgent", priority=1)
        self.assertEqual(len(q), 4)
        other = self.client().Queue(self.p("queue"))
        self.assertEqual(other.get(), b"urgent")
        self.assertEqual(other.get(), b"one")
        self.assertEqual(q.get(), b"two")
        self.assertEqual(q.get(), b"three")
        self.assertIsNone(q.get())

    def test_locking_queue(self):
        q = self.zk.LockingQueue(self.p("lq"))
        q.put(b"a")
        q.put_all([b"b", b"c"])
        self.assertEqual(len(q), 3)
        c2 = self.client().LockingQueue(self.p("lq"))
        self.assertEqual(q.get(timeout=WAIT), b"a")
        self.assertTrue(q.holds_lock())
        # second consumer gets the next item while the first is locked
        self.assertEqual(c2.get(timeout=WAIT), b"b")
        self.assertTrue(q.consume())
        self.assertTrue(c2.release())  # b goes back
        self.assertEqual(q.get(timeout=WAIT), b"b")
        self.assertTrue(q.consume())
        self.assertEqual(q.get(timeout=WAIT), b"c")
        self.assertTrue(q.consume())
        self.assertEqual(len(q), 0)
        self.assertIsNone(q.get(timeout=0.3))

    def test_semaphore(self):
        clients = [self.client() for _ in range(3)]
        sems = [c.Semaphore(self.p("sem"), identifier="s%d" % i, max_leases=2)
                for i, c in enumerate(clients)]
        self.assertTrue(sems[0].acquire(timeout=WAIT))
        self.assertTrue(sems[1].acquire(timeout=WAIT))
        self.assertFalse(sems[2].acquire(blocking=False))
        self.assertEqual(sorted(sems[2].lease_holders()), ["s0", "s1"])
        got = threading.Event()

        def take():
            if sems[2].acquire(timeout=WAIT):
                got.set()
        t = threading.Thread(target=take)
        t.start()
        time.sleep(0.3)
        self.assertFalse(got.is_set())
        sems[0].release()
        self.assertTrue(got.wait(WAIT))
        t.join(WAIT)
        self.assertEqual(sorted(sems[1].lease_holders()), ["s1", "s2"])
        sems[1].release()
        sems[2].release()

    def test_party(self):
        a, b = self.client(), self.client()
        pa = a.Party(self.p("party"), "alice")
        pb = b.Party(self.p("party"), "bob")
        pa.join()
        pb.join()
        self.assertEqual(sorted(pa), ["alice", "bob"])
        self.assertEqual(len(pa), 2)
        pb.leave()
        self.assertEqual(list(pa), ["alice"])
        sp = a.ShallowParty(self.p("sparty"), "x")
        sp.join()
        self.assertEqual(list(b.ShallowParty(self.p("sparty"))), ["x"])
        # party membership is ephemeral
        a.stop()
        self.assertTrue(wait_until(lambda: len(b.Party(self.p("party"))) == 0))


def cleanup():
    try:
        c = new_client()
        # some tests leave digest-protected nodes behind on failure
        for cred in ("alice:secret", "bob:pw", "admin:pw", "carol:pw"):
            c.add_auth("digest", cred)
        c.delete(PREFIX, recursive=True)
        c.stop()
        c.close()
    except Exception as e:
        print("cleanup failed: %r" % e, file=sys.stderr)


if __name__ == "__main__":
    # fail fast (instead of once per test class) if the server is unusable
    try:
        probe = new_client()
        probe.get_children("/")
        probe.stop()
        probe.close()
    except Exception as e:
        print("FAIL connect to %s: %r" % (HOST, e))
        sys.exit(1)
    prog = unittest.main(exit=False, verbosity=int(os.environ.get("VERBOSE", "2")))
    cleanup()
    sys.exit(0 if prog.result.wasSuccessful() else 1)
