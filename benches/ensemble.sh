#!/usr/bin/env bash
# Write throughput and latency of a three-server zkd ensemble against a three-server
# Apache ZooKeeper 3.8 ensemble (Debian), on loopback, side by side in one run.
#
# Usage: bash benches/ensemble.sh [DURATION_S] [REPEAT]      (defaults: 10 s, 3 repeats)
# Env: BENCH_DIR=DIR puts the data directories there (default /tmp); SESSIONS (64),
#      PIPELINE (4), SIZE (100); SERVER_CPU / CLIENT_CPU (defaults 1 and 0 on >= 2 cores).
#
# Both ensembles: tickTime 2000, initLimit 10, syncLimit 5, fsync on (ZooKeeper's
# forceSync default), data on the same disk, all three servers pinned to SERVER_CPU and the
# load generator (zkd-bench load) to CLIENT_CPU. The load goes to one follower (writes are
# forwarded to the leader, as a client on a follower sees them). Each workload runs REPEAT
# times per system, interleaved; the table gives medians and the zkd / ZooKeeper ratio.
# Everything started here is killed, and the scratch directories removed, on exit.
set -euo pipefail
DURATION=${1:-10}
REPEAT=${2:-3}
SESSIONS=${SESSIONS:-64}
PIPELINE=${PIPELINE:-4}
SIZE=${SIZE:-100}
cd "$(dirname "$0")/.."

[ -f /usr/share/java/zookeeper.jar ] || { echo "Apache ZooKeeper not installed (apt-get install zookeeper)" >&2; exit 1; }
cargo build --release -q -p zkd-server --bin zkd -p zkd-bench
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/zkd-ensemble-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PIN_SRV=()
PIN_CLI=()
if [ "$(nproc)" -ge 2 ]; then
  PIN_SRV=(taskset -c "${SERVER_CPU:-1}")
  PIN_CLI=(taskset -c "${CLIENT_CPU:-0}")
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mode() { { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && grep -o 'Mode: [a-z]*' <&3 | cut -d' ' -f2; } 2>/dev/null || true; }

# start_ensemble NAME ARRAY: writes configs, starts three servers (in this shell, so their
# pids are ours to kill), stores their client ports in the array named ARRAY.
start_ensemble() {
  local name=$1 servers="" i
  local -n cports=$2
  cports=()
  for i in 1 2 3; do
    local c q e
    c=$(free_port); q=$(free_port); e=$(free_port)
    cports+=("$c")
    servers+="server.$i=127.0.0.1:$q:$e;127.0.0.1:$c"$'\n'
  done
  for i in 1 2 3; do
    local d="$WORK/$name/s$i"
    mkdir -p "$d/data"
    echo "$i" > "$d/data/myid"
    cat > "$d/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$d/data
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
$servers
CFG
    if [ "$name" = zkd ]; then
      "${PIN_SRV[@]}" "$TARGET/release/zkd" "$d/zoo.cfg" > "$d/stdout.log" 2> "$d/server.log" &
    else
      "${PIN_SRV[@]}" java -Xmx1g -Dzookeeper.admin.enableServer=false \
        -Dzookeeper.4lw.commands.whitelist='*' \
        -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -Dorg.slf4j.simpleLogger.logFile="$d/server.log" \
        -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" > "$d/stdout.log" 2>&1 &
    fi
    PIDS+=($!)
  done
}

# wait_follower PORTS...: waits for one leader and two followers; prints a follower port.
wait_follower() {
  local t
  for t in $(seq 600); do
    local leaders=0 follower="" p m
    for p in "$@"; do
      m=$(mode "$p")
      [ "$m" = leader ] && leaders=$((leaders + 1))
      [ "$m" = follower ] && follower=$p
    done
    if [ "$leaders" = 1 ] && [ -n "$follower" ]; then echo "$follower"; return 0; fi
    sleep 0.1
  done
  echo "no quorum" >&2
  return 1
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
echo "3-server ensembles on loopback; load: $SESSIONS sessions x pipeline $PIPELINE, $SIZE-byte data, ${DURATION}s per run, $REPEAT runs; servers on cpu ${SERVER_CPU:-1}, load generator on cpu ${CLIENT_CPU:-0}"
ZKD_PORTS=()
ZK_PORTS=()
start_ensemble zkd ZKD_PORTS
start_ensemble zk ZK_PORTS
ZKD_F=$(wait_follower "${ZKD_PORTS[@]}") || { tail -5 "$WORK"/zkd/s*/server.log >&2; exit 1; }
ZK_F=$(wait_follower "${ZK_PORTS[@]}") || { tail -5 "$WORK"/zk/s*/server.log >&2; exit 1; }
echo "zkd follower :$ZKD_F  ZooKeeper follower :$ZK_F"

RESULTS="$WORK/results.jsonl"
for r in $(seq "$REPEAT"); do
  for wl in create set; do
    for sys in zkd zk; do
      port=$ZKD_F; [ "$sys" = zk ] && port=$ZK_F
      line=$("${PIN_CLI[@]}" "$TARGET/release/zkd-bench" load --server "127.0.0.1:$port" \
        --workload "$wl" --sessions "$SESSIONS" --pipeline "$PIPELINE" --size "$SIZE" \
        --duration "$DURATION" --warmup 2 2>/dev/null | grep '^{' | tail -1)
      echo "{\"system\":\"$sys\",\"run\":$r,\"result\":$line}" >> "$RESULTS"
      echo "run $r $wl $sys: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f ops/s p50 %.2f ms p99 %.2f ms errors %s" % (d["ops_per_s"], d["p50_us"]/1000, d["p99_us"]/1000, d.get("errors", 0)))' "$line")"
    done
  done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print("| workload | metric | zkd (median) | ZooKeeper (median) | zkd / ZooKeeper |")
print("|---|---|---:|---:|---:|")
for wl in ("create", "set"):
    for metric, label, scale in (("ops_per_s", "ops/s", 1), ("p50_us", "p50 ms", 1000), ("p99_us", "p99 ms", 1000)):
        med = {}
        for sys_ in ("zkd", "zk"):
            vals = [r["result"][metric] for r in rows if r["system"] == sys_ and r["result"]["workload"] == wl]
            med[sys_] = statistics.median(vals) / scale
        ratio = med["zkd"] / med["zk"] if med["zk"] else float("nan")
        fmt = "{:.0f}" if scale == 1 else "{:.2f}"
        print(f"| {wl} | {label} | {fmt.format(med['zkd'])} | {fmt.format(med['zk'])} | {ratio:.2f}x |")
PY
