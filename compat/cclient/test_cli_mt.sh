#!/usr/bin/env bash
# C client (libzookeeper-mt, via the cli_mt example shell) compatibility suite.
# Usage: compat/cclient/test_cli_mt.sh HOST:PORT
# cli_mt executes every command asynchronously; completions are printed in
# request order.  Each batch ends with a marker request and we wait (bounded)
# for its completion before sending "quit".
set -u
HOSTPORT=${1:?usage: test_cli_mt.sh HOST:PORT}
CLI=${CLI_MT:-/usr/lib/zookeeper/bin/cli_mt}
B=/compat-cli-$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
TMP=$(mktemp -d)
CLIPID=
cleanup() { [ -n "$CLIPID" ] && kill "$CLIPID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT; [ -n "${KEEP_TMP:-}" ] && trap - EXIT
PASS=0
FAIL=0
TAB=$(printf '\t')

# batch NAME (commands on stdin): output in $TMP/NAME.out
batch() {
  local name=$1 marker="$B-marker-$1" i
  mkfifo "$TMP/$name.fifo"
  "$CLI" "$HOSTPORT" < "$TMP/$name.fifo" > "$TMP/$name.out" 2>&1 &
  CLIPID=$!
  exec 3> "$TMP/$name.fifo"
  cat >&3
  echo "get $marker" >&3
  for i in $(seq 1 150); do
    grep -q -F "$marker: rc = " "$TMP/$name.out" && break
    kill -0 "$CLIPID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q -F "$marker: rc = " "$TMP/$name.out" || echo "  (batch $name: marker not seen within 15s)"
  echo quit >&3
  exec 3>&-
  for i in $(seq 1 50); do kill -0 "$CLIPID" 2>/dev/null || break; sleep 0.1; done
  kill "$CLIPID" 2>/dev/null
  wait "$CLIPID" 2>/dev/null
  CLIPID=
}

ok()  { PASS=$((PASS+1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL+1)); echo "FAIL $1"; }
expect() {
  if grep -q -F -- "$2" "$TMP/$1.out"; then ok "$1: ${3:-$2}"; else bad "$1: ${3:-$2} (missing: $2)"; fi
}
expect_line() {
  if grep -q -x -F -- "$2" "$TMP/$1.out"; then ok "$1: ${3:-$2}"; else bad "$1: ${3:-$2} (missing line: $2)"; fi
}
expect_re() {
  if grep -q -E -- "$2" "$TMP/$1.out"; then ok "$1: ${3:-$2}"; else bad "$1: ${3:-$2} (no match: $2)"; fi
}
expect_not() {
  if grep -q -F -- "$2" "$TMP/$1.out"; then bad "$1: ${3:-not $2} (found: $2)"; else ok "$1: ${3:-not $2}"; fi
}
# expect_seq NAME L1 L2 ...: the fixed-string fragments occur on lines in this order
expect_seq() {
  local name=$1; shift
  local desc="$*"
  if awk -v n="$#" 'BEGIN { for (i = 1; i < ARGC; i++) want[i] = ARGV[i]; ARGC = 1; k = 1 }
      { if (k <= n && index($0, want[k])) k++ } END { exit !(k > n) }' "$@" < "$TMP/$name.out"
  then ok "$name: sequence [$desc]"; else bad "$name: sequence [$desc]"; fi
}

# --------------------------------------------------------------- batch mode
# (also the connectivity probe: fail fast when the server is unusable)
timeout 10 "$CLI" "$HOSTPORT" "cmd:ls /" > "$TMP/cmdmode.out" 2>&1 < /dev/null
if ! grep -q -x -F "${TAB}zookeeper" "$TMP/cmdmode.out"; then
  bad "cmdmode: cli_mt cmd:ls / did not list /zookeeper on $HOSTPORT"
  sed 's/^/    /' "$TMP/cmdmode.out" | tail -5
  echo "$PASS passed, $FAIL failed"
  exit 1
fi
ok "cmdmode: cmd: batch mode ls /"

# --------------------------------------------------------------- batch 1
batch basic <<EOF
create $B
create $B/a
create $B/a
get $B/a
set $B/a hello
get $B/a
create +s $B/s-
create2 +s $B/s-
create +e $B/e
create2 +e $B/e2
create $B/e/child
create +c $B/cont
create +t=60000 $B/ttl
ls $B/a
ls2 $B
exists $B/nope
get $B/nope
create $B/nope/x
delete $B
create $B/w
get $B/w
set $B/w x
ls $B/w
create $B/w/c
wexists $B/later
create $B/later
sync $B
addauth digest alice:secret
delete $B/a
delete $B/a
EOF
expect_seq basic "[$B]: rc = 0" "${TAB}name = $B"
expect_seq basic "[$B/a]: rc = 0" "${TAB}name = $B/a" "[$B/a]: rc = -110"
expect_seq basic "Watcher DELETED_EVENT state = CONNECTED_STATE for path $B/a" "$B/a: rc = 0" "$B/a: rc = -101"
expect_seq basic "$B/a: rc = 0" " value_len = 3" "new" "Stat:" "${TAB}version=0${TAB}aversion=0" "${TAB}ephemeralOwner = 0"
expect_seq basic "$B/a: rc = 0 Stat:" "${TAB}version=1${TAB}aversion=0"
expect_seq basic "$B/a: rc = 0" " value_len = 5" "hello"
expect_seq basic "[$B/s-]: rc = 0" "${TAB}name = $B/s-0000000001" "[$B/s-]: rc = 0" "${TAB}name = $B/s-0000000002" "${TAB}ctime = "
expect_seq basic "[$B/e]: rc = 0" "${TAB}name = $B/e"
SID=$(sed -n 's/^Got a new session id: 0x\([0-9a-f]*\)$/\1/p' "$TMP/basic.out" | head -1)
if [ -n "$SID" ] && [ "$SID" != 0 ]; then ok "basic: session established ($SID)"; else bad "basic: session established"; fi
expect_seq basic "${TAB}name = $B/e2" "${TAB}ephemeralOwner = ${SID:-MISSING}" 
expect basic "[$B/e/child]: rc = -108" "NOCHILDRENFOREPHEMERALS"
expect_seq basic "[$B/cont]: rc = 0" "${TAB}name = $B/cont"
expect_seq basic "[$B/ttl]: rc = 0" "${TAB}name = $B/ttl"
expect_seq basic "$B/a: rc = 0" "time = "
# ls2 of $B: 8 children, any order
for c in a s-0000000001 s-0000000002 e e2 cont ttl; do
  expect_line basic "${TAB}$c" "ls2 lists $c"
done
expect basic "Error -101 for $B/nope" "exists on missing node (sync API) -> ZNONODE"
expect basic "$B/nope: rc = -101" "get missing -> ZNONODE"
expect basic "[$B/nope/x]: rc = -101" "create without parent -> ZNONODE"
expect basic "$B: rc = -111" "delete non-empty -> ZNOTEMPTY"
# a session's own write triggers its watch; the notification is delivered
# BEFORE the response to that write
expect_seq basic "[$B/w]: rc = 0" "Watcher CHANGED_EVENT state = CONNECTED_STATE for path $B/w" "$B/w: rc = 0 Stat:"
expect_seq basic "Watcher CHILD_EVENT state = CONNECTED_STATE for path $B/w" "[$B/w/c]: rc = 0"
expect basic "Watcher CHILD_EVENT state = CONNECTED_STATE for path $B/w" "child watch fired"
expect basic "Watcher CREATED_EVENT state = CONNECTED_STATE for path $B/later" "exists watch fired on create"
expect_seq basic "[$B]: rc = 0" "${TAB}name = $B" "[$B]: rc = 0"
expect_seq basic "$B/a: rc = 0" "$B/a: rc = -101"
expect_not basic "AUTH_FAILED" "addauth digest accepted"
expect_not basic "EXPIRED_SESSION" "no session expiry"

# --------------------------------------------------------------- batch 2
batch verify <<EOF
ls $B
exists $B/e
delete $B/w/c
delete $B/w
delete $B/later
delete $B/s-0000000001
delete $B/s-0000000002
delete $B/cont
delete $B/ttl
delete $B
exists $B
EOF
expect_seq verify "$B: rc = 0" "${TAB}"
expect_not verify "${TAB}e2" "ephemerals of the closed session are gone"
expect verify "Error -101 for $B/e" "exists on removed ephemeral"
for p in $B/w/c $B/w $B/later $B/s-0000000001 $B/s-0000000002 $B/cont $B/ttl $B; do
  expect_line verify "$p: rc = 0" "delete $p"
done
expect verify "Error -101 for $B" "tree removed"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
