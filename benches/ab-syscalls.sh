#!/usr/bin/env bash
# One load run against a fresh zkd with per-op server figures: ops/s, server CPU/op,
# p99, and per-op counts of recvfrom/sendto/epoll_wait/futex syscalls and context
# switches (perf stat tracepoints over 3 s of the run). Alternate two binaries to A/B a
# change. Usage: bash benches/ab-syscalls.sh ZKD_BINARY WORKLOAD [SESSIONS] [PIPELINE]
# Also: THREADS=1 prints each server thread's voluntary/involuntary context switches over
# the same 3 s (from /proc/PID/task/*/status) instead of perf stat.
# Needs: a release build of zkd-bench, perf, taskset, 2+ cores (server on 1, load on 0).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); W=$2; S=${3:-64}; PL=${4:-4}
D=$(mktemp -d "${TMPDIR:-/tmp}/zkd-ab.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
printf "tickTime=2000\ndataDir=$D/data\nclientPort=$P\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n" > "$D/zoo.cfg"
taskset -c 1 "$BIN" "$D/zoo.cfg" 2>"$D/err" &
PID=$!
sleep 0.3
taskset -c 0 target/release/zkd-bench load --server 127.0.0.1:$P --workload "$W" --sessions "$S" \
  --pipeline "$PL" --duration 4 --warmup 1 --server-pid $PID --label "$(basename "$BIN")" > "$D/load" &
LP=$!
sleep 1.5
snap() { for t in /proc/$PID/task/*; do echo "$(cat $t/comm) $(grep -E '^(voluntary|nonvoluntary)_ctxt' $t/status | awk '{print $2}' | tr '\n' ' ')"; done | sort; }
if [ "${THREADS:-0}" = 1 ]; then
  snap > "$D/a"; sleep 3; snap > "$D/b"
else
  perf stat -x, -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches' \
    -p $PID -- sleep 3 2> "$D/perf"
fi
wait $LP
OPS=$(grep -o '"ops_per_s":[0-9.]*' "$D/load" | cut -d: -f2)
CPU=$(grep -o '"server_cpu_us_per_op":[0-9.]*' "$D/load" | cut -d: -f2)
P99=$(grep -o '"p99_us":[0-9.]*' "$D/load" | cut -d: -f2)
if [ "${THREADS:-0}" = 1 ]; then
  echo "$(basename "$BIN") $W ops/s=$OPS cpu/op=${CPU}us p99=${P99}us"
  paste "$D/a" "$D/b" | awk '{printf "  %-20s voluntary=%d involuntary=%d over 3 s\n", $1, $5-$2, $6-$3}'
else
  awk -F, -v ops="$OPS" -v cpu="$CPU" -v p99="$P99" -v b="$(basename "$BIN")" -v w="$W" \
    'BEGIN{printf "%s %s ops/s=%.0f cpu/op=%sus p99=%.0fus", b, w, ops, cpu, p99}
     /syscalls|context/ {n=$3; sub("syscalls:sys_enter_","",n); printf " %s/op=%.2f", n, $1/(ops*3)}
     END{print ""}' "$D/perf"
fi
