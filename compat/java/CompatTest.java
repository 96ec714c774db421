// Java client compatibility suite: plain org.apache.zookeeper.ZooKeeper API
// and Apache Curator recipes.  Usage: java CompatTest HOST:PORT
// Every check runs with a timeout; any failure is printed and the program
// exits non-zero.  All nodes live under /compat-java-<random>, removed at end.

import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;

import org.apache.zookeeper.*;
import org.apache.zookeeper.KeeperException.Code;
import org.apache.zookeeper.Watcher.Event.EventType;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.apache.zookeeper.ZooDefs.Ids;
import org.apache.zookeeper.ZooDefs.Perms;
import org.apache.zookeeper.data.*;
import org.apache.zookeeper.server.auth.DigestAuthenticationProvider;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.RetryNTimes;

public class CompatTest {
    static String HOST;
    static String PREFIX;
    static final int TEST_TIMEOUT_S = 60;
    static final long WAIT_MS = 10000;
    static final long REAP_WAIT_MS =
        (long) (Double.parseDouble(System.getenv().getOrDefault("COMPAT_REAP_TIMEOUT", "20")) * 1000);
    static int passed = 0, failed = 0;
    static final List<AutoCloseable> toClose = Collections.synchronizedList(new ArrayList<>());

    interface Body { void run(String base) throws Exception; }

    static class CheckFailed extends RuntimeException {
        CheckFailed(String m) { super(m); }
    }

    static void check(boolean cond, String what) {
        if (!cond) throw new CheckFailed(what);
    }

    static void eq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual))
            throw new CheckFailed(what + ": expected <" + expected + "> got <" + actual + ">");
    }

    static void expectCode(Code code, Callable<?> c, String what) {
        try {
            Object r = c.call();
            throw new CheckFailed(what + ": expected KeeperException " + code + " but got result " + r);
        } catch (KeeperException e) {
            eq(code, e.code(), what + " (exception code)");
        } catch (CheckFailed e) {
            throw e;
        } catch (Exception e) {
            throw new CheckFailed(what + ": expected KeeperException " + code + " got " + e);
        }
    }

    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }
    static String s(byte[] b) { return b == null ? null : new String(b, StandardCharsets.UTF_8); }

    static ZooKeeper connect() throws Exception {
        CountDownLatch l = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(HOST, 15000, e -> {
            if (e.getState() == KeeperState.SyncConnected) l.countDown();
        });
        if (!l.await(WAIT_MS, TimeUnit.MILLISECONDS)) {
            zk.close();
            throw new CheckFailed("could not connect to " + HOST);
        }
        toClose.add(zk);
        return zk;
    }

    static CuratorFramework curator() throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.newClient(HOST, 15000, 10000, new RetryNTimes(3, 200));
        c.start();
        if (!c.blockUntilConnected(10, TimeUnit.SECONDS)) throw new CheckFailed("curator did not connect");
        toClose.add(c);
        return c;
    }

    static boolean waitFor(Callable<Boolean> cond, long ms) throws Exception {
        long deadline = System.currentTimeMillis() + ms;
        while (System.currentTimeMillis() < deadline) {
            if (cond.call()) return true;
            Thread.sleep(50);
        }
        return cond.call();
    }

    static ZooKeeper zk; // shared main client

    static void run(String name, Body body) {
        String base = PREFIX + "/" + name;
        ExecutorService ex = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "test-" + name);
            t.setDaemon(true);
            return t;
        });
        long t0 = System.currentTimeMillis();
        Future<?> f = ex.submit(() -> {
            zk.create(base, new byte[0], Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            body.run(base);
            return null;
        });
        try {
            f.get(TEST_TIMEOUT_S, TimeUnit.SECONDS);
            passed++;
            System.out.println("ok   " + name + " (" + (System.currentTimeMillis() - t0) + " ms)");
        } catch (TimeoutException e) {
            failed++;
            f.cancel(true);
            System.out.println("FAIL " + name + ": timed out after " + TEST_TIMEOUT_S + "s");
        } catch (ExecutionException e) {
            failed++;
            Throwable c = e.getCause();
            System.out.println("FAIL " + name + ": " + c);
            if (!(c instanceof CheckFailed)) c.printStackTrace(System.out);
        } catch (InterruptedException e) {
            failed++;
            System.out.println("FAIL " + name + ": interrupted");
        } finally {
            ex.shutdownNow();
            synchronized (toClose) {
                for (AutoCloseable c : toClose) {
                    if (c == zk) continue;
                    try { c.close(); } catch (Exception ignored) {}
                }
                toClose.clear();
            }
        }
    }

    // ------------------------------------------------------------------ tests

    static void testCrud(String base) throws Exception {
        String p = base + "/node";
        Stat cs = new Stat();
        eq(p, zk.create(p, b("hello"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT, cs), "create path");
        eq(0, cs.getVersion(), "create2 stat version");
        eq(5, cs.getDataLength(), "create2 stat dataLength");
        eq(cs.getCzxid(), cs.getMzxid(), "czxid==mzxid");
        eq(cs.getCzxid(), cs.getPzxid(), "czxid==pzxid");
        eq(cs.getCtime(), cs.getMtime(), "ctime==mtime");
        eq(0L, cs.getEphemeralOwner(), "ephemeralOwner of persistent");

        Stat st = new Stat();
        eq("hello", s(zk.getData(p, false, st)), "getData");
        eq(cs, st, "getData stat == create2 stat");
        Stat ex = zk.exists(p, false);
        eq(st, ex, "exists stat");
        check(zk.exists(base + "/missing", false) == null, "exists(missing) == null");

        Stat s1 = zk.setData(p, b("v1"), 0);
        eq(1, s1.getVersion(), "version after set");
        eq(2, s1.getDataLength(), "dataLength after set");
        check(s1.getMzxid() > cs.getMzxid(), "mzxid increases");
        eq(cs.getCzxid(), s1.getCzxid(), "czxid unchanged");
        expectCode(Code.BADVERSION, () -> zk.setData(p, b("x"), 0), "setData wrong version");
        eq(2, zk.setData(p, b("v2"), -1).getVersion(), "setData -1");
        expectCode(Code.NONODE, () -> zk.setData(base + "/nope", b("x"), -1), "setData missing");
        expectCode(Code.NONODE, () -> zk.getData(base + "/nope", false, null), "getData missing");
        expectCode(Code.NODEEXISTS, () -> zk.create(p, null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT), "create existing");
        expectCode(Code.NONODE, () -> zk.create(base + "/a/b", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT), "create without parent");

        // null data round-trips as null (Java client) for a node created with null
        zk.create(base + "/nulldata", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        Stat ns = new Stat();
        byte[] nd = zk.getData(base + "/nulldata", false, ns);
        check(nd == null || nd.length == 0, "null data returned as null/empty");
        eq(0, ns.getDataLength(), "null data length");

        // children + Stat
        for (String c : new String[]{"c", "a", "b"})
            zk.create(p + "/" + c, b(c), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        Stat ps = new Stat();
        List<String> kids = new ArrayList<>(zk.getChildren(p, false, ps));
        Collections.sort(kids);
        eq(Arrays.asList("a", "b", "c"), kids, "getChildren");
        eq(3, ps.getNumChildren(), "numChildren");
        eq(3, ps.getCversion(), "cversion after 3 creates");
        eq(zk.exists(p + "/b", false).getCzxid(), ps.getPzxid(), "pzxid == last child czxid");
        expectCode(Code.NOTEMPTY, () -> { zk.delete(p, -1); return null; }, "delete non-empty");
        expectCode(Code.BADVERSION, () -> { zk.delete(p + "/a", 7); return null; }, "delete wrong version");
        zk.delete(p + "/a", 0);
        Stat ps2 = zk.exists(p, false);
        eq(2, ps2.getNumChildren(), "numChildren after delete");
        eq(4, ps2.getCversion(), "cversion after delete (creates+deletes)");
        expectCode(Code.NONODE, () -> { zk.delete(p + "/a", -1); return null; }, "delete missing");
        expectCode(Code.NONODE, () -> zk.getChildren(base + "/nope", false), "getChildren missing");
        // async getChildren2 callback
        CompletableFuture<Integer> rcF = new CompletableFuture<>();
        zk.getChildren(p, false, (rc, path, ctx, children, stat) -> rcF.complete(rc), null);
        eq(0, rcF.get(10, TimeUnit.SECONDS), "async getChildren rc");
        // bad paths are rejected client-side
        try {
            zk.create("no-slash", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            throw new CheckFailed("relative path accepted");
        } catch (IllegalArgumentException expected) { }
    }

    static void testCreateModes(String base) throws Exception {
        // sequential
        List<Integer> seqs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            String r = zk.create(base + "/s-", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL);
            check(r.matches(java.util.regex.Pattern.quote(base) + "/s-\\d{10}"), "sequential name " + r);
            seqs.add(Integer.parseInt(r.substring(r.length() - 10)));
        }
        eq(Arrays.asList(0, 1, 2), seqs, "sequence numbers");
        // ephemeral
        String e = zk.create(base + "/eph", b("e"), Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        eq(zk.getSessionId(), zk.exists(e, false).getEphemeralOwner(), "ephemeralOwner == session id");
        expectCode(Code.NOCHILDRENFOREPHEMERALS,
            () -> zk.create(e + "/kid", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT), "child of ephemeral");
        String es = zk.create(base + "/es-", null, Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL_SEQUENTIAL);
        eq(base + "/es-0000000004", es, "ephemeral sequential name");
        eq(zk.getSessionId(), zk.exists(es, false).getEphemeralOwner(), "ephemeral seq owner");
        // container
        Stat cst = new Stat();
        String c = zk.create(base + "/cont", null, Ids.OPEN_ACL_UNSAFE, CreateMode.CONTAINER, cst);
        eq(base + "/cont", c, "container path");
        eq(0L, cst.getEphemeralOwner(), "container ephemeralOwner reported as 0");
        zk.create(c + "/x", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.delete(c + "/x", -1);
        check(waitFor(() -> zk.exists(c, false) == null, REAP_WAIT_MS), "empty container reaped");
        // TTL
        Stat tst = new Stat();
        String t = zk.create(base + "/ttl", b("t"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_WITH_TTL, tst, 300);
        eq(base + "/ttl", t, "ttl path");
        eq(0L, tst.getEphemeralOwner(), "ttl ephemeralOwner reported as 0");
        String ts = zk.create(base + "/ttls-", null, Ids.OPEN_ACL_UNSAFE,
            CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL, new Stat(), 600000);
        check(ts.matches(".*/ttls-\\d{10}"), "ttl sequential name " + ts);
        check(waitFor(() -> zk.exists(t, false) == null, REAP_WAIT_MS), "TTL node reaped");
        check(zk.exists(ts, false) != null, "long TTL node still present");
        // (ttl <= 0 is rejected client-side by the Java client; the kazoo suite checks the server)
        // async create2 callback with TTL
        CompletableFuture<String> cf = new CompletableFuture<>();
        zk.create(base + "/attl", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_WITH_TTL,
            (rc, path, ctx, name, stat) -> cf.complete(rc + ":" + name), null, 600000);
        eq("0:" + base + "/attl", cf.get(10, TimeUnit.SECONDS), "async create TTL");
    }

    static void testMulti(String base) throws Exception {
        zk.create(base + "/m", b("0"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        List<OpResult> res = zk.multi(Arrays.asList(
            Op.check(base + "/m", 0),
            Op.create(base + "/m/a", b("a"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
            Op.create(base + "/m/s-", b("a"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL),
            Op.setData(base + "/m", b("1"), 0),
            Op.delete(base + "/m/a", 0)));
        eq(5, res.size(), "multi result count");
        check(res.get(0) instanceof OpResult.CheckResult, "CheckResult: " + res.get(0));
        check(res.get(1) instanceof OpResult.CreateResult, "CreateResult");
        eq(base + "/m/a", ((OpResult.CreateResult) res.get(1)).getPath(), "multi create path");
        eq(base + "/m/s-0000000001", ((OpResult.CreateResult) res.get(2)).getPath(), "multi seq path");
        check(res.get(3) instanceof OpResult.SetDataResult, "SetDataResult");
        eq(1, ((OpResult.SetDataResult) res.get(3)).getStat().getVersion(), "multi setData version");
        check(res.get(4) instanceof OpResult.DeleteResult, "DeleteResult");
        eq(null, zk.exists(base + "/m/a", false), "deleted inside multi");

        // failing multi
        try {
            zk.multi(Arrays.asList(
                Op.create(base + "/m/b", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.setData(base + "/m", b("x"), 0),          // wrong version -> BADVERSION
                Op.create(base + "/m/c", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.delete(base + "/m", -1)));
            throw new CheckFailed("failing multi did not throw");
        } catch (KeeperException ke) {
            eq(Code.BADVERSION, ke.code(), "multi exception code");
            List<OpResult> r = ke.getResults();
            check(r != null, "getResults non-null");
            eq(4, r.size(), "failed multi result count");
            int[] want = {Code.OK.intValue(), Code.BADVERSION.intValue(),
                          Code.RUNTIMEINCONSISTENCY.intValue(), Code.RUNTIMEINCONSISTENCY.intValue()};
            for (int i = 0; i < 4; i++) {
                check(r.get(i) instanceof OpResult.ErrorResult, "op " + i + " is ErrorResult: " + r.get(i));
                eq(want[i], ((OpResult.ErrorResult) r.get(i)).getErr(), "op " + i + " error code");
            }
        }
        eq(null, zk.exists(base + "/m/b", false), "failed multi rolled back");
        eq(1, zk.exists(base + "/m", false).getVersion(), "failed multi did not set");

        // Transaction API (fluent)
        List<OpResult> tr = zk.transaction().create(base + "/m/t", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT)
            .check(base + "/m", 1).commit();
        eq(2, tr.size(), "transaction result count");

        // multi read (getData / getChildren)
        List<OpResult> rr = zk.multi(Arrays.asList(
            Op.getData(base + "/m"), Op.getChildren(base + "/m"), Op.getData(base + "/m/missing")));
        eq(3, rr.size(), "multiRead result count");
        check(rr.get(0) instanceof OpResult.GetDataResult, "GetDataResult: " + rr.get(0));
        eq("1", s(((OpResult.GetDataResult) rr.get(0)).getData()), "multiRead data");
        eq(1, ((OpResult.GetDataResult) rr.get(0)).getStat().getVersion(), "multiRead stat");
        check(rr.get(1) instanceof OpResult.GetChildrenResult, "GetChildrenResult");
        List<String> ch = new ArrayList<>(((OpResult.GetChildrenResult) rr.get(1)).getChildren());
        Collections.sort(ch);
        eq(Arrays.asList("s-0000000001", "t"), ch, "multiRead children");
        // a failing read op does not abort the other reads
        check(rr.get(2) instanceof OpResult.ErrorResult, "missing node read -> ErrorResult: " + rr.get(2));
        eq(Code.NONODE.intValue(), ((OpResult.ErrorResult) rr.get(2)).getErr(), "multiRead NONODE");
        // mixing read and write ops is rejected client-side
        try {
            zk.multi(Arrays.asList(Op.getData(base + "/m"), Op.check(base + "/m", 1)));
            throw new CheckFailed("mixed read/write multi accepted");
        } catch (IllegalArgumentException expected) { }
    }

    static void testAcl(String base) throws Exception {
        String digest = DigestAuthenticationProvider.generateDigest("alice:secret");
        List<ACL> acl = Collections.singletonList(new ACL(Perms.ALL, new Id("digest", digest)));
        String p = zk.create(base + "/secure", b("s"), acl, CreateMode.PERSISTENT);
        ZooKeeper anon = connect();
        expectCode(Code.NOAUTH, () -> anon.getData(p, false, null), "anon getData");
        expectCode(Code.NOAUTH, () -> anon.setData(p, b("x"), -1), "anon setData");
        expectCode(Code.NOAUTH, () -> anon.getACL(p, new Stat()), "anon getACL (needs READ|ADMIN)");
        // exists is not ACL-checked in 3.8; 3.9.5 checks READ (ZOOKEEPER-2590): accept both.
        try {
            check(anon.exists(p, false) != null, "exists (3.8: no permission needed)");
        } catch (KeeperException.NoAuthException e) {
            // 3.9 behaviour
        }
        ZooKeeper alice = connect();
        alice.addAuthInfo("digest", b("alice:secret"));
        eq("s", s(alice.getData(p, false, null)), "alice getData");
        Stat as = new Stat();
        List<ACL> got = alice.getACL(p, as);
        eq(acl, got, "getACL");
        eq(0, as.getAversion(), "aversion");
        expectCode(Code.BADVERSION, () -> alice.setACL(p, Ids.OPEN_ACL_UNSAFE, 5), "setACL wrong version");
        // add READ for world, keep ALL for alice
        List<ACL> acl2 = new ArrayList<>(acl);
        acl2.add(new ACL(Perms.READ, Ids.ANYONE_ID_UNSAFE));
        Stat st = alice.setACL(p, acl2, 0);
        eq(1, st.getAversion(), "aversion after setACL");
        eq("s", s(anon.getData(p, false, null)), "anon read after world READ");
        expectCode(Code.NOAUTH, () -> anon.setData(p, b("x"), -1), "anon still cannot write");
        // invalid ACL
        expectCode(Code.INVALIDACL, () -> zk.create(base + "/bad", null,
            Collections.singletonList(new ACL(Perms.ALL, new Id("nosuchscheme", "x"))), CreateMode.PERSISTENT),
            "unknown ACL scheme");
        // auth ACL: "auth" scheme uses the caller's authenticated identities
        String q = alice.create(base + "/authacl", null, Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        List<ACL> qa = alice.getACL(q, new Stat());
        eq(1, qa.size(), "CREATOR_ALL_ACL expanded");
        eq("digest", qa.get(0).getId().getScheme(), "creator acl scheme");
        eq(digest, qa.get(0).getId().getId(), "creator acl id");
        expectCode(Code.INVALIDACL, () -> anon.create(base + "/authacl2", null, Ids.CREATOR_ALL_ACL,
            CreateMode.PERSISTENT), "CREATOR_ALL_ACL without auth");
        // whoAmI
        List<ClientInfo> who = alice.whoAmI();
        Set<String> schemes = new HashSet<>();
        for (ClientInfo ci : who) schemes.add(ci.getAuthScheme() + ":" + ci.getUser());
        check(schemes.contains("digest:alice"), "whoAmI contains digest:alice: " + schemes);
        check(schemes.stream().anyMatch(x -> x.startsWith("ip:")), "whoAmI contains ip: " + schemes);
        // cleanup-friendly
        alice.setACL(p, Ids.OPEN_ACL_UNSAFE, -1);
        alice.setACL(q, Ids.OPEN_ACL_UNSAFE, -1);
    }

    static class Recorder implements Watcher {
        final BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
        public void process(WatchedEvent e) {
            if (e.getType() != EventType.None) q.add(e);
        }
        WatchedEvent next() throws InterruptedException {
            WatchedEvent e = q.poll(WAIT_MS, TimeUnit.MILLISECONDS);
            if (e == null) throw new CheckFailed("no watch event within " + WAIT_MS + "ms");
            return e;
        }
        void expect(EventType t, String path) throws InterruptedException {
            WatchedEvent e = next();
            eq(t + " " + path, e.getType() + " " + e.getPath(), "watch event");
        }
        void expectNone(long ms) throws InterruptedException {
            WatchedEvent e = q.poll(ms, TimeUnit.MILLISECONDS);
            if (e != null) throw new CheckFailed("unexpected watch event " + e.getType() + " " + e.getPath());
        }
    }

    static void testStandardWatches(String base) throws Exception {
        String p = base + "/w";
        ZooKeeper other = connect();
        Recorder r = new Recorder();
        check(zk.exists(p, r) == null, "exists watch on missing node");
        other.create(p, null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        r.expect(EventType.NodeCreated, p);
        zk.getData(p, r, null);
        zk.getChildren(p, r);
        other.setData(p, b("1"), -1);
        r.expect(EventType.NodeDataChanged, p);
        other.create(p + "/k", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        r.expect(EventType.NodeChildrenChanged, p);
        other.setData(p, b("2"), -1);
        r.expectNone(300); // one-shot
        // deleting a child fires its data watch (NodeDeleted) and the
        // parent's child watch (NodeChildrenChanged)
        zk.getData(p + "/k", r, null);
        zk.getChildren(p, r);
        other.delete(p + "/k", -1);
        Set<String> got = new HashSet<>();
        got.add(r.next().getType() + " " + "x");
        got.add(r.next().getType() + " " + "x");
        eq(new HashSet<>(Arrays.asList("NodeDeleted x", "NodeChildrenChanged x")), got, "events on child delete");
        r.expectNone(300);
        // deleting a node with data + child watches: NodeDeleted delivered (once per watcher object)
        zk.getData(p, r, null);
        zk.getChildren(p, r);
        other.delete(p, -1);
        r.expect(EventType.NodeDeleted, p);
        r.expectNone(300);
    }

    static void testPersistentWatches(String base) throws Exception {
        String p = base + "/pw";
        ZooKeeper other = connect();
        Recorder r = new Recorder();
        zk.addWatch(p, r, AddWatchMode.PERSISTENT);
        other.create(p, null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        r.expect(EventType.NodeCreated, p);
        other.setData(p, b("1"), -1);
        r.expect(EventType.NodeDataChanged, p);
        other.setData(p, b("2"), -1);
        r.expect(EventType.NodeDataChanged, p);  // not one-shot
        other.create(p + "/c", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        r.expect(EventType.NodeChildrenChanged, p);
        other.setData(p + "/c", b("x"), -1);  // child data: not reported for PERSISTENT
        other.delete(p + "/c", -1);
        r.expect(EventType.NodeChildrenChanged, p);
        other.delete(p, -1);
        r.expect(EventType.NodeDeleted, p);
        other.create(p, null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        r.expect(EventType.NodeCreated, p);   // survives deletion
        zk.removeWatches(p, r, Watcher.WatcherType.Any, false);
        WatchedEvent rem = r.next();
        eq(EventType.PersistentWatchRemoved, rem.getType(), "PersistentWatchRemoved event");
        other.setData(p, b("3"), -1);
        r.expectNone(300);

        // PERSISTENT_RECURSIVE
        String q = base + "/rw";
        Recorder rr = new Recorder();
        zk.addWatch(q, rr, AddWatchMode.PERSISTENT_RECURSIVE);
        other.create(q, null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        rr.expect(EventType.NodeCreated, q);
        other.create(q + "/a", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        rr.expect(EventType.NodeCreated, q + "/a");   // no NodeChildrenChanged in recursive mode
        other.create(q + "/a/b", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        rr.expect(EventType.NodeCreated, q + "/a/b");
        other.setData(q + "/a/b", b("d"), -1);
        rr.expect(EventType.NodeDataChanged, q + "/a/b");
        other.delete(q + "/a/b", -1);
        rr.expect(EventType.NodeDeleted, q + "/a/b");
        other.setData(q, b("d"), -1);
        rr.expect(EventType.NodeDataChanged, q);
        rr.expectNone(300);
        zk.removeAllWatches(q, Watcher.WatcherType.Any, false);
        eq(EventType.PersistentWatchRemoved, rr.next().getType(), "recursive watch removed event");
        other.create(q + "/z", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        rr.expectNone(300);

        // default-watcher form: addWatch(path, mode) delivers to the session watcher
        BlockingQueue<WatchedEvent> dq = new LinkedBlockingQueue<>();
        CountDownLatch l = new CountDownLatch(1);
        ZooKeeper z2 = new ZooKeeper(HOST, 15000, e -> {
            if (e.getState() == KeeperState.SyncConnected && e.getType() == EventType.None) l.countDown();
            if (e.getType() != EventType.None) dq.add(e);
        });
        toClose.add(z2);
        check(l.await(WAIT_MS, TimeUnit.MILLISECONDS), "z2 connect");
        z2.addWatch(q, AddWatchMode.PERSISTENT_RECURSIVE);
        other.setData(q + "/z", b("1"), -1);
        WatchedEvent de = dq.poll(WAIT_MS, TimeUnit.MILLISECONDS);
        check(de != null, "default watcher got recursive event");
        eq(EventType.NodeDataChanged + " " + q + "/z", de.getType() + " " + de.getPath(), "default watcher event");
    }

    static void testRemoveWatches(String base) throws Exception {
        String p = zk.create(base + "/rw", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        ZooKeeper other = connect();
        Recorder r = new Recorder();
        zk.getData(p, r, null);
        zk.removeWatches(p, r, Watcher.WatcherType.Data, false);
        eq(EventType.DataWatchRemoved, r.next().getType(), "DataWatchRemoved");
        other.setData(p, b("x"), -1);
        r.expectNone(300);
        zk.getChildren(p, r);
        zk.removeWatches(p, r, Watcher.WatcherType.Children, false);
        eq(EventType.ChildWatchRemoved, r.next().getType(), "ChildWatchRemoved");
        other.create(p + "/k", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        r.expectNone(300);
        // removing a watch that does not exist
        expectCode(Code.NOWATCHER, () -> { zk.removeWatches(p, r, Watcher.WatcherType.Data, false); return null; },
            "remove missing watcher");
        expectCode(Code.NOWATCHER, () -> { zk.removeAllWatches(p, Watcher.WatcherType.Any, false); return null; },
            "removeAll with no watchers");
        // removeAllWatches removes data+child watches of all watchers
        Recorder r2 = new Recorder();
        zk.getData(p, r, null);
        zk.exists(p, r2);
        zk.getChildren(p, r2);
        zk.removeAllWatches(p, Watcher.WatcherType.Any, false);
        Thread.sleep(200);
        check(!r.q.isEmpty() && !r2.q.isEmpty(), "removal events delivered to both watchers");
        r.q.clear(); r2.q.clear();
        other.setData(p, b("y"), -1);
        other.delete(p + "/k", -1);
        r.expectNone(300);
        r2.expectNone(10);
    }

    static void testEphemeralsAndCounts(String base) throws Exception {
        ZooKeeper other = connect();
        zk.create(base + "/e1", null, Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        zk.create(base + "/e2", null, Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        zk.create(base + "/d", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create(base + "/d/e3", null, Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        other.create(base + "/o1", null, Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
        List<String> mine = new ArrayList<>(zk.getEphemerals(base));
        Collections.sort(mine);
        eq(Arrays.asList(base + "/d/e3", base + "/e1", base + "/e2"), mine, "getEphemerals(prefix)");
        List<String> prefixMatch = zk.getEphemerals(base + "/e");
        eq(2, prefixMatch.size(), "getEphemerals uses string prefix match: " + prefixMatch);
        check(zk.getEphemerals().containsAll(mine), "getEphemerals() contains all");
        eq(Collections.singletonList(base + "/o1"), other.getEphemerals(base), "other session's ephemerals");
        // getAllChildrenNumber counts all descendants
        zk.create(base + "/d/x", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create(base + "/d/x/y", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        eq(3, zk.getAllChildrenNumber(base + "/d"), "getAllChildrenNumber(/d)");
        eq(7, zk.getAllChildrenNumber(base), "getAllChildrenNumber(base)");
        expectCode(Code.NONODE, () -> zk.getAllChildrenNumber(base + "/missing"), "getAllChildrenNumber missing");
        // closing a session removes its ephemerals and fires watches
        Recorder r = new Recorder();
        zk.exists(base + "/o1", r);
        other.close();
        r.expect(EventType.NodeDeleted, base + "/o1");
        zk.delete(base + "/e1", -1);
        zk.delete(base + "/e2", -1);
        zk.delete(base + "/d/e3", -1);
    }

    static void testSync(String base) throws Exception {
        String p = zk.create(base + "/s", b("1"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        ZooKeeper other = connect();
        zk.setData(p, b("2"), -1);
        CompletableFuture<String> f = new CompletableFuture<>();
        other.sync(p, (rc, path, ctx) -> f.complete(rc + " " + path + " " + ctx), "ctx");
        eq("0 " + p + " ctx", f.get(10, TimeUnit.SECONDS), "sync callback");
        eq("2", s(other.getData(p, false, null)), "read after sync");
        // session properties
        check(zk.getSessionId() != 0, "session id");
        check(zk.getSessionPasswd().length == 16, "session password length");
        check(zk.getSessionTimeout() > 0, "negotiated timeout");
        eq(ZooKeeper.States.CONNECTED, zk.getState(), "state");
        // session re-attach with id + password
        ZooKeeper z3 = new ZooKeeper(HOST, 15000, e -> {}, other.getSessionId(), other.getSessionPasswd());
        toClose.add(z3);
        check(waitFor(() -> z3.getState() == ZooKeeper.States.CONNECTED, WAIT_MS), "reattach connected");
        eq(other.getSessionId(), z3.getSessionId(), "reattached session id");
    }

    // ---------------------------------------------------------------- curator

    static void testCuratorMutex(String base) throws Exception {
        CuratorFramework c1 = curator(), c2 = curator();
        AtomicInteger inside = new AtomicInteger(), maxInside = new AtomicInteger(), count = new AtomicInteger();
        List<String> errors = Collections.synchronizedList(new ArrayList<>());
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            CuratorFramework c = (i % 2 == 0) ? c1 : c2;
            Thread t = new Thread(() -> {
                InterProcessMutex m = new InterProcessMutex(c, base + "/mutex");
                try {
                    for (int j = 0; j < 5; j++) {
                        if (!m.acquire(20, TimeUnit.SECONDS)) { errors.add("acquire timeout"); return; }
                        try {
                            int n = inside.incrementAndGet();
                            maxInside.accumulateAndGet(n, Math::max);
                            Thread.sleep(5);
                            inside.decrementAndGet();
                            count.incrementAndGet();
                        } finally { m.release(); }
                    }
                } catch (Exception e) { errors.add(e.toString()); }
            });
            t.setDaemon(true);
            ts.add(t);
            t.start();
        }
        for (Thread t : ts) t.join(50000);
        eq(Collections.emptyList(), errors, "mutex errors");
        eq(30, count.get(), "mutex critical sections");
        eq(1, maxInside.get(), "mutual exclusion");
        // reentrancy + isAcquiredInThisProcess
        InterProcessMutex m = new InterProcessMutex(c1, base + "/mutex");
        check(m.acquire(5, TimeUnit.SECONDS), "acquire");
        check(m.acquire(5, TimeUnit.SECONDS), "re-acquire");
        InterProcessMutex other = new InterProcessMutex(c2, base + "/mutex");
        check(!other.acquire(300, TimeUnit.MILLISECONDS), "other cannot acquire");
        m.release(); m.release();
        check(other.acquire(5, TimeUnit.SECONDS), "other acquires after release");
        other.release();
    }

    static void testCuratorLeaderLatch(String base) throws Exception {
        List<LeaderLatch> latches = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            LeaderLatch l = new LeaderLatch(curator(), base + "/latch", "p" + i);
            l.start();
            latches.add(l);
        }
        check(waitFor(() -> latches.stream().filter(LeaderLatch::hasLeadership).count() == 1, WAIT_MS),
            "exactly one leader");
        Thread.sleep(300);
        eq(1L, latches.stream().filter(LeaderLatch::hasLeadership).count(), "still exactly one leader");
        LeaderLatch leader = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().get();
        eq(leader.getId(), latches.get(0).getLeader().getId(), "everyone agrees on the leader");
        eq(3, leader.getParticipants().size(), "participants");
        leader.close();
        latches.remove(leader);
        check(waitFor(() -> latches.stream().filter(LeaderLatch::hasLeadership).count() == 1, WAIT_MS),
            "failover to a new leader");
        LeaderLatch second = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().get();
        check(second != leader, "new leader differs");
        for (LeaderLatch l : latches) l.close();
    }

    static void testCuratorBarrier(String base) throws Exception {
        CuratorFramework c = curator();
        DistributedBarrier bar = new DistributedBarrier(c, base + "/barrier");
        bar.setBarrier();
        CuratorFramework c2 = curator();
        ExecutorService ex = Executors.newFixedThreadPool(3);
        List<Future<Boolean>> fs = new ArrayList<>();
        for (int i = 0; i < 3; i++)
            fs.add(ex.submit(() -> new DistributedBarrier(c2, base + "/barrier").waitOnBarrier(15, TimeUnit.SECONDS)));
        Thread.sleep(500);
        for (Future<Boolean> f : fs) check(!f.isDone(), "waiter blocked while barrier set");
        check(!new DistributedBarrier(c2, base + "/barrier").waitOnBarrier(200, TimeUnit.MILLISECONDS),
            "waitOnBarrier times out");
        bar.removeBarrier();
        for (Future<Boolean> f : fs) check(f.get(10, TimeUnit.SECONDS), "waiter released");
        ex.shutdownNow();
    }

    static void testCuratorAtomicLong(String base) throws Exception {
        CuratorFramework c1 = curator(), c2 = curator();
        ExecutorService ex = Executors.newFixedThreadPool(4);
        List<Future<Integer>> fs = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            CuratorFramework c = (i % 2 == 0) ? c1 : c2;
            fs.add(ex.submit(() -> {
                DistributedAtomicLong al = new DistributedAtomicLong(c, base + "/counter", new RetryNTimes(1000, 1));
                int ok = 0;
                for (int j = 0; j < 25; j++) {
                    AtomicValue<Long> v = al.increment();
                    if (v.succeeded()) { ok++; check(v.postValue() == v.preValue() + 1, "post == pre+1"); }
                }
                return ok;
            }));
        }
        int total = 0;
        for (Future<Integer> f : fs) total += f.get(40, TimeUnit.SECONDS);
        ex.shutdownNow();
        DistributedAtomicLong al = new DistributedAtomicLong(c1, base + "/counter", new RetryNTimes(10, 10));
        eq((long) total, al.get().postValue(), "counter equals successful increments");
        eq(100, total, "all increments succeeded");
        AtomicValue<Long> cas = al.compareAndSet(100L, 500L);
        check(cas.succeeded(), "compareAndSet");
        check(!al.compareAndSet(100L, 1L).succeeded(), "stale compareAndSet fails");
        eq(500L, al.get().postValue(), "value after CAS");
    }

    static void testCuratorCache(String base) throws Exception {
        CuratorFramework c = curator();
        String root = base + "/cache";
        c.create().forPath(root, b("r"));
        c.create().forPath(root + "/pre", b("p"));
        BlockingQueue<String> evs = new LinkedBlockingQueue<>();
        CountDownLatch init = new CountDownLatch(1);
        CuratorCache cache = CuratorCache.build(c, root);
        toClose.add(cache);
        cache.listenable().addListener(CuratorCacheListener.builder()
            .forCreates(n -> evs.add("CREATE " + n.getPath() + " " + s(n.getData())))
            .forChanges((o, n) -> evs.add("CHANGE " + n.getPath() + " " + s(o.getData()) + "->" + s(n.getData())))
            .forDeletes(o -> evs.add("DELETE " + o.getPath()))
            .forInitialized(init::countDown)
            .build());
        cache.start();
        check(init.await(10, TimeUnit.SECONDS), "cache initialized");
        Set<String> initial = new HashSet<>();
        for (String e; (e = evs.poll(200, TimeUnit.MILLISECONDS)) != null; ) initial.add(e);
        eq(new HashSet<>(Arrays.asList("CREATE " + root + " r", "CREATE " + root + "/pre p")), initial,
            "initial cache events");
        CuratorFramework w = curator();
        w.create().forPath(root + "/a", b("1"));
        eq("CREATE " + root + "/a 1", evs.poll(10, TimeUnit.SECONDS), "cache create event");
        w.setData().forPath(root + "/a", b("2"));
        eq("CHANGE " + root + "/a 1->2", evs.poll(10, TimeUnit.SECONDS), "cache change event");
        w.create().forPath(root + "/a/deep", b("d"));
        eq("CREATE " + root + "/a/deep d", evs.poll(10, TimeUnit.SECONDS), "cache deep create event");
        w.delete().deletingChildrenIfNeeded().forPath(root + "/a");
        Set<String> dels = new HashSet<>();
        for (int i = 0; i < 2; i++) dels.add(evs.poll(10, TimeUnit.SECONDS));
        eq(new HashSet<>(Arrays.asList("DELETE " + root + "/a/deep", "DELETE " + root + "/a")), dels,
            "cache delete events");
        check(cache.get(root + "/pre").isPresent(), "cache.get");
        eq(2, (int) cache.size(), "cache size");
        cache.close();
    }

    // ------------------------------------------------------------------- main

    static void deleteRecursive(ZooKeeper z, String path) throws Exception {
        List<String> kids;
        try { kids = z.getChildren(path, false); } catch (KeeperException.NoNodeException e) { return; }
        for (String k : kids) deleteRecursive(z, path + "/" + k);
        try { z.delete(path, -1); } catch (KeeperException.NoNodeException ignored) { }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) { System.err.println("usage: CompatTest HOST:PORT [test ...]"); System.exit(2); }
        HOST = args[0];
        Set<String> only = new HashSet<>(Arrays.asList(args).subList(1, args.length));
        PREFIX = "/compat-java-" + UUID.randomUUID().toString().substring(0, 8);
        try {
            zk = connect();
        } catch (Exception e) {
            System.out.println("FAIL connect: " + e);
            System.out.println("0 passed, 1 failed");
            System.exit(1);
        }
        zk.addAuthInfo("digest", b("alice:secret"));
        zk.create(PREFIX, null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);

        LinkedHashMap<String, Body> tests = new LinkedHashMap<>();
        tests.put("crud", CompatTest::testCrud);
        tests.put("createModes", CompatTest::testCreateModes);
        tests.put("multi", CompatTest::testMulti);
        tests.put("acl", CompatTest::testAcl);
        tests.put("standardWatches", CompatTest::testStandardWatches);
        tests.put("persistentWatches", CompatTest::testPersistentWatches);
        tests.put("removeWatches", CompatTest::testRemoveWatches);
        tests.put("ephemeralsAndCounts", CompatTest::testEphemeralsAndCounts);
        tests.put("sync", CompatTest::testSync);
        tests.put("curatorMutex", CompatTest::testCuratorMutex);
        tests.put("curatorLeaderLatch", CompatTest::testCuratorLeaderLatch);
        tests.put("curatorBarrier", CompatTest::testCuratorBarrier);
        tests.put("curatorAtomicLong", CompatTest::testCuratorAtomicLong);
        tests.put("curatorCache", CompatTest::testCuratorCache);
        for (Map.Entry<String, Body> t : tests.entrySet())
            if (only.isEmpty() || only.contains(t.getKey())) run(t.getKey(), t.getValue());

        try { deleteRecursive(zk, PREFIX); } catch (Exception e) { System.out.println("cleanup failed: " + e); }
        zk.close();
        System.out.println(passed + " passed, " + failed + " failed");
        System.out.flush();
        // non-daemon client threads of failed tests must not keep the JVM alive
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }
}
