#!/bin/bash
# Captures golden wire fixtures: real ZooKeeper server <- proxy.py <- real Java client.
# Usage: tools/golden-capture/run.sh [OUT_FILE]
#   default OUT_FILE: proto/tests/golden/zk-3.8.0-java-client.txt
# Needs Debian's zookeeper (3.8.0) jars under /usr/share/java, a JDK (javac), /usr/bin/python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/proto/tests/golden/zk-3.8.0-java-client.txt}
J=/usr/share/java
CP=$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/netty-handler.jar:$J/netty-transport.jar:$J/netty-common.jar:$J/netty-buffer.jar:$J/netty-codec.jar:$J/netty-resolver.jar:$J/netty-transport-native-epoll.jar:$J/netty-transport-native-unix-common.jar:$J/slf4j-api.jar:$J/slf4j-simple.jar:$J/commons-cli.jar:$J/commons-io.jar:$J/metrics-core.jar:$J/snappy-java.jar
WORK=$(mktemp -d /tmp/zk-golden.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

read -r ZKPORT PXPORT CTLPORT < <(/usr/bin/python3 - <<'PY'
import socket
ss=[socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()
PY
)
echo "work=$WORK zk=$ZKPORT proxy=$PXPORT control=$CTLPORT"
mkdir -p "$WORK/data" "$WORK/classes"
cat > "$WORK/zoo.cfg" <<CFG
tickTime=2000
dataDir=$WORK/data
clientPort=$ZKPORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
CFG

java -Dzookeeper.extendedTypesEnabled=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "$CP" org.apache.zookeeper.server.ZooKeeperServerMain "$WORK/zoo.cfg" > "$WORK/server.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do
  if [ "$(echo ruok | /usr/bin/python3 -c "
import socket,sys
try:
  s=socket.create_connection(('127.0.0.1',$ZKPORT),1); s.sendall(b'ruok'); print(s.recv(4).decode())
except Exception: print('')
")" = imok ]; then break; fi
  sleep 0.2
done
echo "server up: $(echo srvr | /usr/bin/python3 -c "
import socket
s=socket.create_connection(('127.0.0.1',$ZKPORT),1); s.sendall(b'srvr'); print(s.recv(4096).decode().splitlines()[0])")"

/usr/bin/python3 "$HERE/proxy.py" "$PXPORT" 127.0.0.1 "$ZKPORT" "$CTLPORT" "$WORK/frames.jsonl" > "$WORK/proxy.log" 2>&1 &
PIDS+=($!)
sleep 0.5

javac -d "$WORK/classes" -cp "$CP" "$HERE/Capture.java"
java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CP:$WORK/classes" Capture "$PXPORT" "$CTLPORT" | tee "$WORK/capture.log"
sleep 0.5
/usr/bin/python3 "$HERE/render.py" "$WORK/frames.jsonl" "$OUT"
echo "wrote $OUT (raw log: $WORK/frames.jsonl)"
