// Drives the real Apache ZooKeeper Java client (3.8.x) through one of each
// wire operation, talking to a real server through tools/golden-capture/proxy.py.
// Before each scenario it sends "mark <name>" to the proxy's control port so
// the recorded log is split into named scenarios.
//
// Usage: java -cp <zookeeper jars>:. Capture <proxyPort> <controlPort>
import java.io.*;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;

import org.apache.zookeeper.*;
import org.apache.zookeeper.data.*;

public class Capture {
    static int ctlPort;
    static final BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
    static volatile CountDownLatch connected = new CountDownLatch(1);

    static void ctl(String cmd) throws IOException {
        try (Socket s = new Socket("127.0.0.1", ctlPort)) {
            s.getOutputStream().write((cmd + "\n").getBytes(StandardCharsets.UTF_8));
            s.getOutputStream().flush();
            BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream()));
            String ok = r.readLine();
            if (!"ok".equals(ok)) throw new IOException("control: " + ok);
        }
    }

    static void mark(String name) throws IOException {
        System.out.println("== " + name);
        ctl("mark " + name);
    }

    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    static WatchedEvent awaitEvent(String what) throws InterruptedException {
        WatchedEvent e = events.poll(10, TimeUnit.SECONDS);
        if (e == null) throw new IllegalStateException("no event: " + what);
        System.out.println("   event " + e);
        return e;
    }

    static void expect(KeeperException.Code code, Callable<?> c) throws Exception {
        try {
            c.call();
            throw new IllegalStateException("expected " + code);
        } catch (KeeperException e) {
            System.out.println("   expected error " + e.code() + " " + e.getMessage());
            if (e.code() != code) throw e;
            if (e.getResults() != null) {
                for (OpResult r : e.getResults()) System.out.println("     result " + r.getClass().getSimpleName()
                        + (r instanceof OpResult.ErrorResult ? " err=" + ((OpResult.ErrorResult) r).getErr() : ""));
            }
        }
    }

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        ctlPort = Integer.parseInt(args[1]);
        List<ACL> open = ZooDefs.Ids.OPEN_ACL_UNSAFE;
        Watcher defaultWatcher = e -> {
            System.out.println("   default watcher: " + e);
            if (e.getType() == Watcher.Event.EventType.None) {
                if (e.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
            } else {
                events.add(e);
            }
        };
        Watcher dataWatcher = e -> {
            System.out.println("   data watcher: " + e);
            if (e.getType() != Watcher.Event.EventType.None) events.add(e);
        };

        mark("connect");
        // 30 s session timeout keeps pings rare (one every ~9 s of idleness)
        // so they only show up in the dedicated ping scenario.
        ZooKeeper zk = new ZooKeeper("127.0.0.1:" + port, 30000, defaultWatcher, false);
        if (!connected.await(20, TimeUnit.SECONDS)) throw new IllegalStateException("connect");
        Stat stat = new Stat();

        mark("create_persistent");
        zk.create("/golden", b("hello"), open, CreateMode.PERSISTENT);

        mark("create2_with_stat");
        zk.create("/golden/c2", b("create2"), open, CreateMode.PERSISTENT, stat);

        mark("create_ephemeral");
        zk.create("/golden/eph", b("ephemeral"), open, CreateMode.EPHEMERAL);

        mark("create_persistent_sequential");
        String seqPath = zk.create("/golden/seq-", b("seq"), open, CreateMode.PERSISTENT_SEQUENTIAL);
        System.out.println("   seq path " + seqPath);

        mark("create_ephemeral_sequential_with_stat");
        zk.create("/golden/eseq-", b("eseq"), open, CreateMode.EPHEMERAL_SEQUENTIAL, stat);

        mark("create_container");
        zk.create("/golden/container", b("container"), open, CreateMode.CONTAINER);

        mark("create_ttl");
        zk.create("/golden/ttl", b("ttl"), open, CreateMode.PERSISTENT_WITH_TTL, stat, 60000L);

        mark("create_node_exists_error");
        expect(KeeperException.Code.NODEEXISTS, () -> zk.create("/golden", b("dup"), open, CreateMode.PERSISTENT));

        mark("create_no_parent_error");
        expect(KeeperException.Code.NONODE, () -> zk.create("/nope/child", b("x"), open, CreateMode.PERSISTENT));

        mark("get_data_with_watch");
        zk.getData("/golden", dataWatcher, stat);

        mark("get_data_no_watch");
        zk.getData("/golden/c2", false, stat);

        mark("get_data_missing_error");
        expect(KeeperException.Code.NONODE, () -> zk.getData("/golden/missing", false, null));

        mark("exists_missing");
        if (zk.exists("/golden/missing", false) != null) throw new IllegalStateException();

        mark("exists_existing");
        zk.exists("/golden", false);

        mark("set_data_triggers_watch");
        zk.setData("/golden", b("world"), -1);
        awaitEvent("NodeDataChanged /golden");

        mark("set_data_bad_version_error");
        expect(KeeperException.Code.BADVERSION, () -> zk.setData("/golden", b("nope"), 999));

        mark("get_children");
        zk.getChildren("/golden", false);

        mark("get_children2_with_stat");
        zk.getChildren("/golden", false, stat);

        mark("delete");
        zk.delete("/golden/c2", -1);

        mark("delete_bad_version_error");
        expect(KeeperException.Code.BADVERSION, () -> { zk.delete("/golden/eph", 999); return null; });

        mark("delete_missing_error");
        expect(KeeperException.Code.NONODE, () -> { zk.delete("/golden/c2", -1); return null; });

        mark("delete_not_empty_error");
        expect(KeeperException.Code.NOTEMPTY, () -> { zk.delete("/golden", -1); return null; });

        mark("multi_success");
        List<OpResult> res = zk.multi(Arrays.asList(
                Op.create("/golden/m1", b("m"), open, CreateMode.PERSISTENT),
                Op.setData("/golden/m1", b("m2"), 0),
                Op.check("/golden", 1),
                Op.create("/golden/mttl", b("mttl"), open, CreateMode.PERSISTENT_WITH_TTL, 60000L),
                Op.delete("/golden/m1", -1)));
        for (OpResult r : res) System.out.println("     result " + r.getClass().getSimpleName());

        mark("multi_failure");
        expect(KeeperException.Code.BADVERSION, () -> zk.multi(Arrays.asList(
                Op.check("/golden", 999),
                Op.create("/golden/mfail", b("never"), open, CreateMode.PERSISTENT))));

        mark("multi_read");
        res = zk.multi(Arrays.asList(
                Op.getChildren("/golden"),
                Op.getData("/golden"),
                Op.getData("/golden/missing")));
        for (OpResult r : res) System.out.println("     result " + r.getClass().getSimpleName()
                + (r instanceof OpResult.ErrorResult ? " err=" + ((OpResult.ErrorResult) r).getErr() : ""));

        mark("get_acl");
        zk.getACL("/golden", stat);

        mark("add_auth_digest");
        zk.addAuthInfo("digest", b("golden:secret"));
        // The auth reply (xid -4) is processed asynchronously; a cheap
        // round trip afterwards guarantees it has been received.
        zk.exists("/golden", false);

        mark("create_for_acl");
        zk.create("/golden/acl", b("acl"), open, CreateMode.PERSISTENT);

        mark("set_acl");
        List<ACL> acl = new ArrayList<>(ZooDefs.Ids.CREATOR_ALL_ACL);
        acl.addAll(ZooDefs.Ids.READ_ACL_UNSAFE);
        zk.setACL("/golden/acl", acl, 0);

        mark("get_acl_digest");
        zk.getACL("/golden/acl", stat);

        mark("sync");
        CountDownLatch synced = new CountDownLatch(1);
        zk.sync("/golden", (rc, path, ctx) -> synced.countDown(), null);
        if (!synced.await(10, TimeUnit.SECONDS)) throw new IllegalStateException("sync");

        mark("ping");
        Thread.sleep(12000);

        mark("watches_for_reconnect");
        zk.getData("/golden", true, stat);          // data watch
        zk.exists("/golden/later", true);           // exist watch (missing node)
        zk.getChildren("/golden", true);            // child watch

        mark("reconnect_set_watches");
        connected = new CountDownLatch(1);
        ctl("drop");
        if (!connected.await(30, TimeUnit.SECONDS)) throw new IllegalStateException("reconnect");
        zk.exists("/golden", false);                // round trip after re-priming

        mark("fire_watches_after_reconnect");
        zk.create("/golden/later", b("later"), open, CreateMode.PERSISTENT);
        awaitEvent("NodeCreated /golden/later");
        awaitEvent("NodeChildrenChanged /golden");

        mark("add_watch_persistent");
        zk.addWatch("/golden", dataWatcher, AddWatchMode.PERSISTENT);

        mark("add_watch_persistent_recursive");
        zk.addWatch("/golden", AddWatchMode.PERSISTENT_RECURSIVE);

        mark("persistent_watch_events");
        zk.setData("/golden/later", b("later2"), -1);
        awaitEvent("recursive NodeDataChanged /golden/later");

        mark("reconnect_set_watches2");
        zk.getData("/golden/eph", true, stat);      // plus a one-shot data watch
        connected = new CountDownLatch(1);
        ctl("drop");
        if (!connected.await(30, TimeUnit.SECONDS)) throw new IllegalStateException("reconnect2");
        zk.exists("/golden", false);

        mark("check_watches");
        zk.getData("/golden/ttl", dataWatcher, stat);
        zk.removeWatches("/golden/ttl", dataWatcher, Watcher.WatcherType.Data, false);
        events.clear();

        mark("remove_all_watches");
        zk.getChildren("/golden/later", true);
        zk.removeAllWatches("/golden/later", Watcher.WatcherType.Any, false);
        events.clear();

        mark("remove_persistent_watches");
        zk.removeAllWatches("/golden", Watcher.WatcherType.Any, false);
        events.clear();

        mark("get_ephemerals_prefix");
        System.out.println("   " + zk.getEphemerals("/golden"));

        mark("get_ephemerals_all");
        System.out.println("   " + zk.getEphemerals());

        mark("get_all_children_number");
        System.out.println("   " + zk.getAllChildrenNumber("/golden"));

        mark("who_am_i");
        for (ClientInfo ci : zk.whoAmI()) System.out.println("   " + ci.getAuthScheme() + " " + ci.getUser());

        mark("close_session");
        zk.close();

        mark("end");
        System.out.println("done");
    }
}
