#!/usr/bin/env bash
# Create latency while large snapshots are written: a fresh zkd (snapCount 20000) gets a
# tree of ZNODES znodes of SIZE bytes (populate), then 8 sessions x 1 in flight create for
# DURATION s, so a snapshot of the whole tree is taken every 10k-20k creates. Prints the
# create run's line (p99, p99.9, max) and the snapshots the server logged.
# Usage: bash benches/snap-spike.sh ZKD_BINARY [ZNODES] [SIZE] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); N=${2:-100000}; SZ=${3:-1000}; DUR=${4:-20}
D=$(mktemp -d "${TMPDIR:-/tmp}/zkd-snap.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
printf "tickTime=2000\ndataDir=$D/data\nclientPort=$P\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nsnapCount=20000\n" > "$D/zoo.cfg"
taskset -c 1 "$BIN" "$D/zoo.cfg" 2>"$D/err" &
PID=$!
sleep 0.3
taskset -c 0 target/release/zkd-bench load --server 127.0.0.1:$P --workload populate --znodes "$N" \
  --size "$SZ" --sessions 16 --pipeline 8 | sed -n 1p
# fdatasync calls slower than 10 ms during the create run, per thread (perf trace).
perf trace --comm -p $PID -e fdatasync --duration 10 -o "$D/trace" 2>/dev/null &
TP=$!
taskset -c 0 target/release/zkd-bench load --server 127.0.0.1:$P --workload create --sessions 8 \
  --pipeline 1 --size 100 --duration "$DUR" --warmup 1 --server-pid $PID | sed -n 1p
kill -INT $TP 2>/dev/null; wait $TP 2>/dev/null || true
python3 - "$D/trace" <<'PY'
import re, sys
n, m = {}, {}
for l in open(sys.argv[1]):
    r = re.search(r'\(\s*([0-9.]+) ms\):\s*([^/\s]+)/\d+ fdatasync', l)
    if r:
        d, t = float(r.group(1)), r.group(2)
        n[t] = n.get(t, 0) + 1
        m[t] = max(m.get(t, 0), d)
for t in sorted(n):
    print(f"slow fdatasync (>10 ms) in {t}: {n[t]}, max {m[t]:.1f} ms")
PY
echo "snapshots: $(grep -c 'snapshot 0x' "$D/err" || true); last: $(grep 'snapshot 0x' "$D/err" | tail -1 | sed 's/.*snapshot 0x/0x/')"
