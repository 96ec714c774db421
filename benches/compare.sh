#!/usr/bin/env bash
# zkd vs Apache ZooKeeper 3.8 (Debian), standalone, side by side in one run.
#
# Usage: bash benches/compare.sh [quick|full] [extra zkd-bench compare options...]
#   quick (default): 100k-znode tree, 3 s runs, 1 repeat: a few minutes.
#   full:            1M-znode tree, 10 s runs, 3 repeats.
# Env: OUT=DIR keeps results.jsonl and the latency PNGs there (default: a temp dir,
#      printed, kept); BENCH_DIR=DIR puts the data directories on that disk (default /tmp);
#      SERVER_CPU / CLIENT_CPU: the cores for the servers and the load generator
#      (default 1 and 0 on a machine with at least 2 cores; unpinned otherwise).
# Needs: Apache ZooKeeper from Debian (apt-get install zookeeper), java, taskset.
# Everything started here is killed, and the scratch directories removed, on exit.
set -euo pipefail
MODE=${1:-quick}
shift || true
case "$MODE" in quick|full) ;; *) echo "usage: $0 [quick|full] [options]" >&2; exit 2;; esac
cd "$(dirname "$0")/.."

[ -f /usr/share/java/zookeeper.jar ] || { echo "Apache ZooKeeper not installed (apt-get install zookeeper)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset missing (util-linux)" >&2; exit 1; }

cargo build --release -q -p zkd-server --bin zkd
cargo build --release -q -p zkd-bench
TARGET=${CARGO_TARGET_DIR:-target}
BENCH_DIR=${BENCH_DIR:-/tmp}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/zkd-compare-out.XXXXXX")}
mkdir -p "$OUT"

PIN_BENCH=()
PIN_SRV=()
if [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=${SERVER_CPU:-1}
  CLIENT_CPU=${CLIENT_CPU:-0}
  PIN_BENCH=(taskset -c "$CLIENT_CPU")
  PIN_SRV=(--server-cpu "$SERVER_CPU")
fi

# zkd-bench kills its servers itself when it ends normally. On an interrupt, the trap
# kills zkd-bench's whole process group (job control gives it its own; the servers it
# started are in it) and removes the scratch directory.
SCRATCH=$(mktemp -d "$BENCH_DIR/zkd-compare.XXXXXX")
BENCH_PID=
cleanup() {
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -- "-$BENCH_PID" 2>/dev/null || true
    sleep 0.5
    kill -KILL -- "-$BENCH_PID" 2>/dev/null || true
  fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
echo "results and plots: $OUT"
set -m
"${PIN_BENCH[@]}" "$TARGET/release/zkd-bench" compare --zkd "$TARGET/release/zkd" \
  --mode "$MODE" --dir "$SCRATCH" --out "$OUT" "${PIN_SRV[@]}" "$@" &
BENCH_PID=$!
set +m
wait "$BENCH_PID"
