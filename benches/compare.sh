#!/usr/bin/env bash
# zkd vs Apache ZooKeeper 3.8 (Debian), standalone and 3-server, side by side in one run.
#
# Usage: bash benches/compare.sh [quick|full] [--no-ensemble] [extra zkd-bench compare options...]
#   quick (default): 100k-znode tree, 3 s runs, 1 repeat: a few minutes.
#   full:            1M-znode tree, 10 s runs, 3 repeats.
# First the standalone matrix (zkd-bench compare: one server each, ratio table with the
# targets), then the 3-server half: benches/ensemble.sh DURATION REPEAT (create and set
# against a follower; ops/s, p50, p99, CPU per op of the three servers, ratios, targets)
# with 3 s x 1 repeat (quick) or 10 s x 3 repeats (full); a --repeat N given here applies
# to both halves (other zkd-bench options, e.g. --duration, only to the standalone half).
# --no-ensemble skips the 3-server half.
# Env: OUT=DIR keeps results.jsonl and the latency PNGs there (default: a temp dir,
#      printed, kept); BENCH_DIR=DIR puts the data directories on that disk (default /tmp);
#      SERVER_CPU / CLIENT_CPU: the cores for the servers and the load generator
#      (default 1 and 0 on a machine with at least 2 cores; unpinned otherwise).
# Needs: Apache ZooKeeper from Debian (apt-get install zookeeper), java, taskset.
# Output: the standalone results.jsonl and latency PNGs in OUT, the 3-server half's output
# in OUT/ensemble.txt (also printed).
# Everything started here is killed, and the scratch directories removed, on exit.
set -euo pipefail
MODE=${1:-quick}
shift || true
case "$MODE" in quick|full) ;; *) echo "usage: $0 [quick|full] [--no-ensemble] [options]" >&2; exit 2;; esac

ENSEMBLE=1
ENS_DURATION=3
ENS_REPEAT=1
[ "$MODE" = full ] && { ENS_DURATION=10; ENS_REPEAT=3; }
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-ensemble) ENSEMBLE=0; shift; continue ;;
    --repeat) [ $# -ge 2 ] && ENS_REPEAT=$2 ;;
    --repeat=*) ENS_REPEAT=${1#--repeat=} ;;
  esac
  ARGS+=("$1")
  shift
done
case "$ENS_REPEAT" in ''|*[!0-9]*) echo "--repeat wants a number, got '$ENS_REPEAT'" >&2; exit 2;; esac
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
  export SERVER_CPU CLIENT_CPU   # the same cores for ensemble.sh
fi
export BENCH_DIR

# zkd-bench kills its servers itself when it ends normally, and ensemble.sh its own (trap
# on exit). Both run as background jobs with job control, so each has its own process
# group holding the servers it started. On an interrupt, the trap here kills zkd-bench's
# whole process group and removes the scratch directory; for ensemble.sh it sends TERM to
# its group (the script, zkd-bench load, the servers), waits for the script to run its own
# cleanup (servers killed, data directories removed), then KILLs whatever is left.
SCRATCH=$(mktemp -d "$BENCH_DIR/zkd-compare.XXXXXX")
BENCH_PID=
ENS_PID=
TAIL_PID=
cleanup() {
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -- "-$BENCH_PID" 2>/dev/null || true
    sleep 0.5
    kill -KILL -- "-$BENCH_PID" 2>/dev/null || true
  fi
  if [ -n "$ENS_PID" ] && kill -0 "$ENS_PID" 2>/dev/null; then
    kill -- "-$ENS_PID" 2>/dev/null || true
    wait "$ENS_PID" 2>/dev/null || true
    kill -KILL -- "-$ENS_PID" 2>/dev/null || true
  fi
  if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ)"
echo "results and plots: $OUT"
set -m
"${PIN_BENCH[@]}" "$TARGET/release/zkd-bench" compare --zkd "$TARGET/release/zkd" \
  --mode "$MODE" --dir "$SCRATCH" --out "$OUT" "${PIN_SRV[@]}" "${ARGS[@]}" &
BENCH_PID=$!
set +m
wait "$BENCH_PID"

if [ "$ENSEMBLE" = 1 ]; then
  echo
  echo "== 3-server ensembles: benches/ensemble.sh $ENS_DURATION $ENS_REPEAT (output also in $OUT/ensemble.txt) =="
  : > "$OUT/ensemble.txt"
  set -m
  bash benches/ensemble.sh "$ENS_DURATION" "$ENS_REPEAT" > "$OUT/ensemble.txt" 2>&1 &
  ENS_PID=$!
  set +m
  # Printed as it comes; tail ends by itself (within a second) once ensemble.sh has exited.
  tail -n +1 -f --pid="$ENS_PID" "$OUT/ensemble.txt" &
  TAIL_PID=$!
  ENS_RC=0
  wait "$ENS_PID" || ENS_RC=$?
  ENS_PID=
  wait "$TAIL_PID" || true
  TAIL_PID=
  [ "$ENS_RC" = 0 ] || exit "$ENS_RC"
fi
