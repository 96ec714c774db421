#!/usr/bin/env bash
# Write throughput, latency and server CPU per op of a three-server zkd ensemble against a
# three-server Apache ZooKeeper 3.8 ensemble (Debian), on loopback, side by side in one run.
#
# Usage: bash benches/ensemble.sh [DURATION_S] [REPEAT]      (defaults: 10 s, 3 repeats)
#   benches/compare.sh runs this after its standalone half (3 s x 1 quick, 10 s x 3 full).
# Env: BENCH_DIR=DIR puts the data directories there (default /tmp); SESSIONS (64),
#      PIPELINE (4), SIZE (100); SERVER_CPU / CLIENT_CPU (defaults 1 and 0 on >= 2 cores).
#
# Both ensembles: tickTime 2000, initLimit 10, syncLimit 5, fsync on (ZooKeeper's
# forceSync default), data on the same disk, all three servers pinned to SERVER_CPU and the
# load generator (zkd-bench load) to CLIENT_CPU. The load goes to one follower (writes are
# forwarded to the leader, as a client on a follower sees them). Each workload runs REPEAT
# times per system, interleaved; the table gives medians, the zkd / ZooKeeper ratio and the
# benchmark issue's targets (write ops/s >= 3x, p99 <= 0.5x, CPU per op <= 1/3).
#
# Server CPU per op ("cpu us/op (3 servers)"): utime+stime (/proc/PID/stat, all threads) of
# the three server processes of the ensemble under test (the zkd processes, or the java
# processes: taskset execs, so $! is the server itself; checked via /proc/PID/comm), summed
# over the measured window only (zkd-bench load --server-pid FOLLOWER --also-cpu-pid
# OTHERS) and divided by the ops completed in it. With CLK_TCK=100 a tick is 10 ms; a 3 s
# window is hundreds of ticks (the three servers share one core), so rounding is well
# under 1%. For a cross-check each run line also gives the whole zkd-bench run's ticks
# (setup, warm-up, window, cleanup).
# Everything started here is killed, and the scratch directories removed, on exit.
set -euo pipefail
DURATION=${1:-10}
REPEAT=${2:-3}
SESSIONS=${SESSIONS:-64}
PIPELINE=${PIPELINE:-4}
SIZE=${SIZE:-100}
cd "$(dirname "$0")/.."

[ -f /usr/share/java/zookeeper.jar ] || { echo "Apache ZooKeeper not installed (apt-get install zookeeper)" >&2; exit 1; }
# Two builds: in one `cargo build -p zkd-server --bin zkd -p zkd-bench` the --bin filter
# applies to both packages and zkd-bench's binary is not built (a stale one would be used).
cargo build --release -q -p zkd-server --bin zkd
cargo build --release -q -p zkd-bench
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/zkd-ensemble-bench.XXXXXX")
PIDS=()
cleanup() {
  # (stderr off: bash would report each SIGKILLed server as "Killed")
  { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true; } 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PIN_SRV=()
PIN_CLI=()
if [ "$(nproc)" -ge 2 ]; then
  PIN_SRV=(taskset -c "${SERVER_CPU:-1}")
  PIN_CLI=(taskset -c "${CLIENT_CPU:-0}")
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mode() { { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && grep -o 'Mode: [a-z]*' <&3 | cut -d' ' -f2; } 2>/dev/null || true; }

# start_ensemble NAME PORTS PIDS: writes configs, starts three servers (in this shell, so
# their pids are ours to kill), stores their client ports in the array named PORTS and
# their pids (same order) in the array named PIDS.
start_ensemble() {
  local name=$1 servers="" i
  local -n cports=$2 spids=$3
  cports=()
  spids=()
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
    spids+=($!)
  done
}

# check_pids COMM PID...: each pid is a live process named COMM (the server, not a shell).
check_pids() {
  local want=$1 p c
  shift
  for p in "$@"; do
    c=$(cat "/proc/$p/comm" 2>/dev/null || echo gone)
    [ "$c" = "$want" ] || { echo "pid $p is '$c', not a $want server" >&2; return 1; }
  done
}

CLK_TCK=$(getconf CLK_TCK)
# others_csv PID PIDS...: PIDS without PID, comma-separated.
others_csv() {
  local skip=$1 p out=""
  shift
  for p in "$@"; do [ "$p" = "$skip" ] || out+="${out:+,}$p"; done
  echo "$out"
}
# cpu_ticks PID...: utime+stime of the processes (all their threads), summed, in clock ticks.
cpu_ticks() {
  local p s t=0
  local -a f
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || { echo "server pid $p is gone" >&2; return 1; }
    s=${s##*) }             # drop "pid (comm) ": comm may contain spaces
    read -r -a f <<< "$s"   # f[0] is field 3 (state): utime (14) is f[11], stime (15) f[12]
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}

# index_of VALUE ITEM...: position of VALUE among the ITEMs.
index_of() {
  local v=$1 i=0 x
  shift
  for x in "$@"; do
    [ "$x" = "$v" ] && { echo "$i"; return 0; }
    i=$((i + 1))
  done
  return 1
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
echo "server CPU: utime+stime of the 3 server processes over each measured window, CLK_TCK=$CLK_TCK"
ZKD_PORTS=()
ZK_PORTS=()
ZKD_PIDS=()
ZK_PIDS=()
start_ensemble zkd ZKD_PORTS ZKD_PIDS
start_ensemble zk ZK_PORTS ZK_PIDS
ZKD_F=$(wait_follower "${ZKD_PORTS[@]}") || { tail -5 "$WORK"/zkd/s*/server.log >&2; exit 1; }
ZK_F=$(wait_follower "${ZK_PORTS[@]}") || { tail -5 "$WORK"/zk/s*/server.log >&2; exit 1; }
check_pids zkd "${ZKD_PIDS[@]}"
check_pids java "${ZK_PIDS[@]}"
ZKD_FPID=${ZKD_PIDS[$(index_of "$ZKD_F" "${ZKD_PORTS[@]}")]}
ZK_FPID=${ZK_PIDS[$(index_of "$ZK_F" "${ZK_PORTS[@]}")]}
echo "zkd follower :$ZKD_F (pids ${ZKD_PIDS[*]}, follower $ZKD_FPID)  ZooKeeper follower :$ZK_F (pids ${ZK_PIDS[*]}, follower $ZK_FPID)"

RESULTS="$WORK/results.jsonl"
for r in $(seq "$REPEAT"); do
  for wl in create set; do
    for sys in zkd zk; do
      if [ "$sys" = zkd ]; then port=$ZKD_F fpid=$ZKD_FPID pids=("${ZKD_PIDS[@]}")
      else port=$ZK_F fpid=$ZK_FPID pids=("${ZK_PIDS[@]}"); fi
      t0=$(cpu_ticks "${pids[@]}")
      out=$("${PIN_CLI[@]}" "$TARGET/release/zkd-bench" load --server "127.0.0.1:$port" \
        --workload "$wl" --sessions "$SESSIONS" --pipeline "$PIPELINE" --size "$SIZE" \
        --duration "$DURATION" --warmup 2 --server-pid "$fpid" \
        --also-cpu-pid "$(others_csv "$fpid" "${pids[@]}")" 2>"$WORK/load.err") \
        || { echo "zkd-bench load ($sys $wl) failed:" >&2; cat "$WORK/load.err" >&2; exit 1; }
      t1=$(cpu_ticks "${pids[@]}")
      line=$(grep '^{' <<< "$out" | tail -1) || { echo "no JSON from zkd-bench load: $out" >&2; exit 1; }
      echo "{\"system\":\"$sys\",\"run\":$r,\"cpu_ticks\":$((t1 - t0)),\"clk_tck\":$CLK_TCK,\"result\":$line}" >> "$RESULTS"
      echo "run $r $wl $sys: $(python3 -c '
import json, sys
d = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); hz = int(sys.argv[3])
f = d.get("server_cpu_us_per_op")
print("%.0f ops/s (%d ops) p50 %.2f ms p99 %.2f ms errors %s; cpu %s us/op (3 servers, window); whole run %d ticks"
      % (d["ops_per_s"], d["ops"], d["p50_us"]/1000, d["p99_us"]/1000, d.get("errors", 0),
         "-" if f is None else "%.1f" % f, ticks))' "$line" "$((t1 - t0))" "$CLK_TCK")"
    done
  done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]

def cpu_us_per_op(r):
    f = r["result"].get("server_cpu_us_per_op")
    return float("nan") if f is None else f

# (label, value of a row, scale, format, target): target = (op, factor) on zkd / ZooKeeper.
METRICS = (
    ("ops/s", lambda r: r["result"]["ops_per_s"], 1, "{:.0f}", (">=", 3.0)),
    ("p50 ms", lambda r: r["result"]["p50_us"], 1000, "{:.2f}", None),
    ("p99 ms", lambda r: r["result"]["p99_us"], 1000, "{:.2f}", ("<=", 0.5)),
    ("cpu us/op (3 servers)", cpu_us_per_op, 1, "{:.1f}", ("<=", 1 / 3)),
)
print()
print("| workload | metric | zkd (median) | ZooKeeper (median) | zkd / ZooKeeper | target | holds |")
print("|---|---|---:|---:|---:|---|---|")
for wl in ("create", "set"):
    for label, value, scale, fmt, target in METRICS:
        med = {}
        for sys_ in ("zkd", "zk"):
            vals = [value(r) for r in rows if r["system"] == sys_ and r["result"]["workload"] == wl]
            med[sys_] = statistics.median(vals) / scale
        ratio = med["zkd"] / med["zk"] if med["zk"] else float("nan")
        tgt, holds = "", ""
        if target:
            op, f = target
            tgt = f"{op} {f:.2f}"
            holds = "yes" if (ratio >= f if op == ">=" else ratio <= f) else "NO"
        print(f"| {wl} | {label} | {fmt.format(med['zkd'])} | {fmt.format(med['zk'])} | {ratio:.2f}x | {tgt} | {holds} |")
PY
