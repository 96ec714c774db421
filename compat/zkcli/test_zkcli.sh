#!/usr/bin/env bash
# zkCli.sh (Java command-line client) compatibility suite.
# Usage: compat/zkcli/test_zkcli.sh HOST:PORT
# Pipes batches of commands into zkCli.sh and asserts on fragments of output.
set -u
HOSTPORT=${1:?usage: test_zkcli.sh HOST:PORT}
ZKCLI=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
B=/compat-zkcli-$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0
# digest of alice:secret = base64(sha1("alice:secret"))
ALICE_DIGEST='aYXlLOpEooaV1cRAvUL1fp9Qt7E='

# batch NAME  (commands on stdin) -> $TMP/NAME.out (logging noise removed)
batch() {
  local name=$1
  { cat; echo quit; } > "$TMP/$name.in"
  timeout "${BATCH_TIMEOUT:-60}" "$ZKCLI" -server "$HOSTPORT" < "$TMP/$name.in" 2>&1 \
    | grep -v -E '^SLF4J:|^log4j:|^WATCHER::|^WatchedEvent state:|^$|^Welcome to ZooKeeper|^JLine support|^Connecting to ' \
    > "$TMP/$name.out"
  if ! grep -q . "$TMP/$name.out"; then
    echo "  (batch $name produced no output)"
  fi
}

ok()  { PASS=$((PASS+1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL+1)); echo "FAIL $1"; }

# expect NAME FRAGMENT [DESC]: fixed-string line fragment present in output
expect() {
  if grep -q -F -- "$2" "$TMP/$1.out"; then ok "$1: ${3:-$2}"; else bad "$1: ${3:-$2} (missing: $2)"; fi
}
# expect_line NAME LINE [DESC]: exact whole line present
expect_line() {
  if grep -q -x -F -- "$2" "$TMP/$1.out"; then ok "$1: ${3:-$2}"; else bad "$1: ${3:-$2} (missing line: $2)"; fi
}
expect_re() {
  if grep -q -E -- "$2" "$TMP/$1.out"; then ok "$1: ${3:-$2}"; else bad "$1: ${3:-$2} (no match: $2)"; fi
}
expect_not() {
  if grep -q -F -- "$2" "$TMP/$1.out"; then bad "$1: ${3:-not $2} (found: $2)"; else ok "$1: ${3:-not $2}"; fi
}
# expect_after NAME ANCHOR LINE: LINE appears after the first line containing ANCHOR
expect_after() {
  if awk -v a="$2" -v l="$3" 'f && $0==l {found=1; exit} index($0,a) {f=1} END {exit !found}' "$TMP/$1.out"
  then ok "$1: ${4:-$3 after $2}"; else bad "$1: ${4:-$3 after $2}"; fi
}

# ---------------------------------------------------------------- probe
# fail fast when the server is unusable (each zkCli batch would otherwise wait)
BATCH_TIMEOUT=20 batch probe <<EOF
ls /
EOF
if ! grep -q -E '^\[.*zookeeper.*\]$' "$TMP/probe.out"; then
  bad "probe: zkCli.sh cannot list / on $HOSTPORT"
  sed 's/^/    /' "$TMP/probe.out" | tail -5
  echo "$PASS passed, $FAIL failed"
  exit 1
fi

# ---------------------------------------------------------------- batch 1
batch basic <<EOF
create $B root
create $B/a alpha
get $B/a
get -s $B/a
set $B/a beta
get -s $B/a
set -v 5 $B/a gamma
set -s -v 1 $B/a gamma
stat $B/a
create -s $B/seq- x
create -s $B/seq- y
create -e $B/eph e
create -e -s $B/eseq- e
stat $B/eph
create $B/a x
get $B/missing
create $B/missing/child
create $B/a/child c
delete $B/a
delete -v 9 $B/a/child
delete -v 0 $B/a/child
ls $B/a
create -c $B/cont
create -t 600000 $B/ttl t
ls $B
ls -s $B
getAllChildrenNumber $B
getEphemerals $B
sync $B
getAcl $B/a
whoami
EOF
expect basic "Created $B" "create root"
expect_line basic "alpha" "get prints data"
expect_re basic '^cZxid = 0x[0-9a-f]+$' "get -s prints cZxid"
expect_re basic '^ctime = ' "get -s prints ctime"
expect_re basic '^pZxid = 0x' "pZxid"
expect_line basic "beta" "set then get"
expect_line basic "dataVersion = 1" "dataVersion = 1 after set"
expect basic "version No is not valid : $B/a" "set with bad version"
expect_line basic "dataVersion = 2" "set -s -v 1 prints new stat"
expect_line basic "dataLength = 5" "dataLength of gamma"
expect basic "Created $B/seq-0000000001" "first sequential (after 1 create in parent)"
expect basic "Created $B/seq-0000000002" "second sequential"
expect basic "Created $B/eph" "create -e"
expect_re basic "^Created $B/eseq-0000000004\$" "create -e -s"
expect_re basic '^ephemeralOwner = 0x[0-9a-f]*[1-9a-f][0-9a-f]*$' "ephemeral has non-zero ephemeralOwner"
expect basic "Node already exists: $B/a" "NodeExists"
expect basic "Node does not exist: $B/missing" "NoNode on get"
expect basic "Node does not exist: $B/missing/child" "NoNode on create without parent"
expect basic "Created $B/a/child" "create child"
expect basic "Node not empty: $B/a" "NotEmpty on delete"
expect basic "version No is not valid : $B/a/child" "delete with bad version"
expect_after basic "Node not empty: $B/a" "[]" "ls of emptied node prints []"
expect basic "Created $B/cont" "create -c container"
expect basic "Created $B/ttl" "create -t TTL (needs extendedTypesEnabled)"
expect_line basic "[a, cont, eph, eseq-0000000004, seq-0000000001, seq-0000000002, ttl]" "ls sorted children"
expect_line basic "numChildren = 7" "ls -s numChildren"
expect_line basic "7" "getAllChildrenNumber"
expect_re basic "^\[($B/eph, $B/eseq-0000000004|$B/eseq-0000000004, $B/eph)\]\$" "getEphemerals"
expect_line basic "Sync is OK" "sync"
expect_line basic "'world,'anyone" "getAcl scheme/id"
expect_line basic ": cdrwa" "getAcl perms"
expect_line basic "Auth scheme: User" "whoami header"
expect_line basic "ip: 127.0.0.1" "whoami ip identity"

# ---------------------------------------------------------------- batch 2: acl
batch acl <<EOF
create $B/sec s
addauth digest alice:secret
setAcl $B/sec auth::cdrwa
getAcl $B/sec
get $B/sec
whoami
create $B/pub p
setAcl $B/pub digest:alice:$ALICE_DIGEST:cdrwa,world:anyone:r
getAcl -s $B/pub
setAcl -v 0 $B/pub world:anyone:cdrwa
EOF
expect acl "Created $B/sec"
expect_line acl "'digest,'alice:$ALICE_DIGEST" "auth:: expands to digest identity"
expect_line acl "s" "owner can read"
expect_line acl "digest: alice" "whoami shows digest user"
expect_line acl "'world,'anyone" "getAcl lists world"
expect_line acl ": r" "getAcl READ perm"
expect_line acl "aclVersion = 1" "getAcl -s prints aversion"
expect acl "version No is not valid : $B/pub" "setAcl with stale version"

# ---------------------------------------------------------------- batch 3: other session
batch noauth <<EOF
get $B/sec
getAcl $B/sec
set $B/sec x
get $B/pub
set $B/pub x
getEphemerals $B
ls $B
EOF
expect noauth "Insufficient permission : $B/sec" "NoAuth on get"
expect_not noauth "'digest,'alice" "getAcl without permission does not leak ACL"
expect_line noauth "p" "world-readable node readable"
expect noauth "Insufficient permission : $B/pub" "NoAuth on set"
expect_line noauth "[]" "ephemerals of closed session are gone"
expect_line noauth "[a, cont, pub, sec, seq-0000000001, seq-0000000002, ttl]" "ls without ephemerals"

# ---------------------------------------------------------------- batch 4: cleanup
batch cleanup <<EOF
addauth digest alice:secret
setAcl $B/sec world:anyone:cdrwa
setAcl $B/pub world:anyone:cdrwa
deleteall $B
ls $B
EOF
expect cleanup "Node does not exist: $B" "deleteall removed tree"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
