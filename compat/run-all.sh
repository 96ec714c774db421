#!/usr/bin/env bash
# Run every third-party-client compatibility suite against a ZooKeeper-compatible
# server.   Usage: compat/run-all.sh HOST:PORT
# Env: COMPAT_SUITES="kazoo java zkcli cclient" (subset/order), COMPAT_SUITE_TIMEOUT
#      (seconds per suite, default 180), COMPAT_REAP_TIMEOUT (seconds to wait for
#      container/TTL reaping, default 20), COMPAT_VERBOSE=1 (always show suite output).
# Prints one PASS/FAIL line per suite and a final line "N passed, N failed"
# (counting suites); exits non-zero if any suite failed.
set -u
HOSTPORT=${1:?usage: run-all.sh HOST:PORT}
HERE=$(cd "$(dirname "$0")" && pwd)
SUITES=${COMPAT_SUITES:-kazoo java zkcli cclient}
TO=${COMPAT_SUITE_TIMEOUT:-180}
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/zk-compat.XXXXXX")
PASSED=0
FAILED=0

suite_cmd() {
  case "$1" in
    kazoo)   echo "/usr/bin/python3 $HERE/kazoo/test_kazoo.py $HOSTPORT" ;;
    java)    echo "$HERE/java/run.sh $HOSTPORT" ;;
    zkcli)   echo "$HERE/zkcli/test_zkcli.sh $HOSTPORT" ;;
    cclient) echo "$HERE/cclient/test_cli_mt.sh $HOSTPORT" ;;
    *)       return 1 ;;
  esac
}

for s in $SUITES; do
  if ! cmd=$(suite_cmd "$s"); then
    echo "FAIL $s: unknown suite"; FAILED=$((FAILED+1)); continue
  fi
  log="$LOGDIR/$s.log"
  t0=$(date +%s)
  # timeout(1) signals its whole process group, so a hung suite's JVM/cli dies too
  timeout -k 5 "$TO" $cmd > "$log" 2>&1 < /dev/null
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  # per-suite check counts (unittest: "Ran N tests"; others: "N passed, M failed")
  detail=$(grep -E '^[0-9]+ passed, [0-9]+ failed$|^Ran [0-9]+ tests' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    PASSED=$((PASSED+1))
    echo "PASS $s (${dt}s) ${detail}"
    [ -n "${COMPAT_VERBOSE:-}" ] && sed 's/^/    /' "$log"
  else
    FAILED=$((FAILED+1))
    [ $rc -eq 124 ] && detail="TIMEOUT after ${TO}s; $detail"
    echo "FAIL $s (${dt}s, rc=$rc) ${detail}"
    grep -v -E '^ok |\.\.\. ok$|DeprecationWarning|isSet\(\)' "$log" | tail -n 80 | sed 's/^/    /'
  fi
done
echo "logs: $LOGDIR"
echo "$PASSED passed, $FAILED failed"
[ $FAILED -eq 0 ]
