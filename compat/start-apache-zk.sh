#!/usr/bin/env bash
# Start Apache ZooKeeper (Debian jars) standalone on a free port.
# Usage: start-apache-zk.sh DIR
# Prints "PORT PID" on stdout once the server opens (and closes) a session.
# Server log: DIR/zk-<port>/server.log ; stop with stop-apache-zk.sh PID.
# ZK_SEED_SNAPSHOT=FILE: start from that snapshot file (copied into version-2/ under its
# own name, which must be snapshot.<zxid in hex>), e.g. one written by zkd.
set -euo pipefail
DIR=${1:?usage: start-apache-zk.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PY=/usr/bin/python3

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

PORT=$(free_port)
ZDIR=$(mktemp -d "$DIR/zk-$PORT.XXXXXX")
mkdir -p "$ZDIR/data"
if [ -n "${ZK_SEED_SNAPSHOT:-}" ]; then
  mkdir -p "$ZDIR/data/version-2"
  cp "$ZK_SEED_SNAPSHOT" "$ZDIR/data/version-2/"
fi
cat > "$ZDIR/zoo.cfg" <<CFG
tickTime=2000
dataDir=$ZDIR/data
clientPort=$PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
znode.container.checkIntervalMs=1000
znode.container.maxPerMinute=10000
CFG

# zookeeper.jar's manifest Class-Path pulls in its dependencies; add an slf4j binding.
CP="/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
nohup java -Xmx256m \
  -Dzookeeper.extendedTypesEnabled=true \
  -Dzookeeper.admin.enableServer=false \
  -Dznode.container.checkIntervalMs=1000 \
  -Dzookeeper.4lw.commands.whitelist='*' \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -Dorg.slf4j.simpleLogger.logFile="$ZDIR/server.log" \
  -cp "$CP" org.apache.zookeeper.server.ZooKeeperServerMain "$ZDIR/zoo.cfg" \
  >"$ZDIR/stdout.log" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$ZDIR/pid"

for _ in $(seq 1 150); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "ZooKeeper exited early; see $ZDIR/stdout.log $ZDIR/server.log" >&2
    cat "$ZDIR/stdout.log" >&2 || true
    exit 1
  fi
  # Ready means a session can be opened: ZooKeeper answers ruok before it serves
  # sessions. Open one, then close it so it leaves nothing behind.
  if [ "$("$PY" - "$PORT" <<'PYEOF'
import socket, struct, sys
def frame(b):
    return struct.pack(">i", len(b)) + b
def read_frame(s):
    n = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    return s.recv(n, socket.MSG_WAITALL)
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    s.sendall(frame(struct.pack(">iqiqi", 0, 0, 4000, 0, 16) + b"\0" * 16 + b"\0"))
    rsp = read_frame(s)
    sid = struct.unpack(">q", rsp[8:16])[0]
    if sid == 0:
        raise RuntimeError("no session")
    s.sendall(frame(struct.pack(">ii", 1, -11)))
    read_frame(s)
    print("ready")
except Exception:
    print("")
PYEOF
)" = "ready" ]; then
    echo "$PORT $PID"
    exit 0
  fi
  sleep 0.2
done
echo "ZooKeeper did not come up on port $PORT within 30s" >&2
kill "$PID" 2>/dev/null || true
exit 1
