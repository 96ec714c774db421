#!/usr/bin/env bash
# Long runs: every workload x nemesis pair of zkd-jepsen, a few at a time, one summary.
#
# Usage: bash jepsen/matrix.sh SECONDS PARALLEL OUTDIR
# Env:   SERVER=zkd|zookeeper (default zkd), NODES (default 3), SEED (default 1),
#        WORKLOADS="register set ..." and NEMESES="partition kill ..." to choose the pairs,
#        or PAIRS="register:kill multi:pause ..." for a list of pairs,
#        ZKD_BIN / JEPSEN_BIN to use prebuilt binaries (default: target/release, built here).
# Needs root (network namespaces). Writes OUTDIR/<workload>-<nemesis>/ per run (history,
# verdicts, latency PNG, the run's stdout/stderr) and OUTDIR/summary.txt: one line per run
# with its exit status (0 valid, 1 invalid, 2 unknown, 3 harness error) and exact command.
# Starts are staggered so two runs never pick their subnet at the same moment.
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SECONDS PARALLEL OUTDIR" >&2; exit 2; }
TIME=$1
PAR=$2
OUT=$3
cd "$(dirname "$0")/.."
SERVER=${SERVER:-zkd}
NODES=${NODES:-3}
SEED=${SEED:-1}
WORKLOADS=${WORKLOADS:-"register set seq multi sessions watch"}
NEMESES=${NEMESES:-"partition kill pause corrupt mixed"}
if [ -z "${ZKD_BIN:-}" ] || [ -z "${JEPSEN_BIN:-}" ]; then
  cargo build --release -q -p zkd-server --bin zkd -p zkd-jepsen --bin zkd-jepsen || exit 3
fi
ZKD_BIN=${ZKD_BIN:-target/release/zkd}
JEPSEN_BIN=${JEPSEN_BIN:-target/release/zkd-jepsen}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$SUMMARY"

run_one() {
  local w=$1 n=$2 dir="$OUT/$1-$2"
  local cmd=("$JEPSEN_BIN" --server "$SERVER" --zkd-bin "$ZKD_BIN" --nodes "$NODES"
    --workload "$w" --nemesis "$n" --time "$TIME" --seed "$SEED" --out "$dir")
  mkdir -p "$dir"
  local start rc
  start=$(date -u +%T)
  "${cmd[@]}" > "$dir/stdout.txt" 2> "$dir/stderr.txt"
  rc=$?
  echo "$w x $n: exit $rc ($start-$(date -u +%T)) $(tail -n 1 "$dir/stdout.txt") :: ${cmd[*]}" >> "$SUMMARY"
}

if [ -z "${PAIRS:-}" ]; then
  for w in $WORKLOADS; do
    for n in $NEMESES; do
      PAIRS="${PAIRS:-} $w:$n"
    done
  done
fi
for pair in $PAIRS; do
  while [ "$(jobs -rp | wc -l)" -ge "$PAR" ]; do sleep 2; done
  run_one "${pair%%:*}" "${pair#*:}" &
  sleep 10
done
wait
echo "# done $(date -u +%FT%TZ)" >> "$SUMMARY"
grep -c ': exit 0 ' "$SUMMARY" | xargs echo "valid runs:"
grep ': exit [123] ' "$SUMMARY" || true
