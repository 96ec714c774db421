#!/usr/bin/env bash
# The load generator's own cost: one `zkd-bench load` run against a fresh server (zkd
# or Apache ZooKeeper) with ops/s, server CPU/op and the load generator's CPU/op
# (utime+stime of zkd-bench from /proc over 3 s of the measured window). Alternate two
# zkd-bench binaries to A/B a change to the load path.
# Usage: bash benches/ab-loadgen.sh ZKD_BENCH_BINARY WORKLOAD [zkd|zk] [ZKD_BINARY]
# Needs: 2+ cores (server on 1, load on 0); for zk, compat/start-apache-zk.sh's Java.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=$(realpath "$1"); W=$2; SRV=${3:-zkd}; ZKD=$(realpath "${4:-target/release/zkd}")
D=$(mktemp -d "${TMPDIR:-/tmp}/zkd-abl.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ]; then
    if [ "$SRV" = zk ]; then bash compat/stop-apache-zk.sh "$PID" >/dev/null 2>&1 || true
    else kill "$PID" 2>/dev/null || true; fi
  fi
  wait 2>/dev/null || true; rm -rf "$D"
}
trap cleanup EXIT
if [ "$SRV" = zk ]; then
  read -r P PID < <(bash compat/start-apache-zk.sh "$D")
  taskset -pc 1 "$PID" >/dev/null
  for t in /proc/$PID/task/*; do taskset -pc 1 "$(basename "$t")" >/dev/null 2>&1 || true; done
else
  P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  printf "tickTime=2000\ndataDir=$D/data\nclientPort=$P\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n" > "$D/zoo.cfg"
  taskset -c 1 "$ZKD" "$D/zoo.cfg" 2>"$D/err" &
  PID=$!
  sleep 0.3
fi
taskset -c 0 "$BENCH" load --server 127.0.0.1:$P --workload "$W" --sessions "${S:-64}" \
  --pipeline "${PL:-4}" --duration 4 --warmup 1 --server-pid $PID --label "$SRV" > "$D/load" &
LP=$!
cpu() { awk '{r=$0; sub(/.*\) /,"",r); split(r,f," "); print f[12]+f[13]}' "/proc/$1/stat"; }
sleep 1.7
A=$(cpu $LP); sleep 3; B=$(cpu $LP)
wait $LP
OPS=$(grep -o '"ops_per_s":[0-9.]*' "$D/load" | cut -d: -f2)
SCPU=$(grep -o '"server_cpu_us_per_op":[0-9.]*' "$D/load" | cut -d: -f2)
P99=$(grep -o '"p99_us":[0-9.]*' "$D/load" | cut -d: -f2)
ERR=$(grep -o '"errors":[0-9]*' "$D/load" | cut -d: -f2)
HZ=$(getconf CLK_TCK)
awk -v a="$A" -v b="$B" -v hz="$HZ" -v ops="$OPS" -v s="$SCPU" -v p="$P99" -v e="$ERR" \
  -v n="$(basename "$BENCH")" -v w="$W" -v srv="$SRV" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
  'BEGIN{printf "%s %s %s ops/s=%.0f bench_cpu/op=%.2fus server_cpu/op=%sus p99=%.0fus errors=%s load=%s\n", n, srv, w, ops, (b-a)/hz*1e6/(ops*3), s, p, e, l}'
