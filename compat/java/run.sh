#!/usr/bin/env bash
# Compile (javac, into a fresh temp dir) and run the Java/Curator compatibility suite.
# Usage: compat/java/run.sh HOST:PORT [testName ...]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
HOSTPORT=${1:?usage: run.sh HOST:PORT [test ...]}
shift
J=/usr/share/java
# zookeeper.jar / curator-*.jar also carry their dependencies (netty, jute,
# guava, ...) in their manifest Class-Path; slf4j-nop silences all logging.
CP="$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/curator-client.jar:$J/curator-framework.jar:$J/curator-recipes.jar:$J/guava.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar"
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/zk-compat-java.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
javac -nowarn -d "$BUILD" -cp "$CP" "$HERE/CompatTest.java"
java -Xmx256m -Dzookeeper.sasl.client=false -cp "$BUILD:$CP" CompatTest "$HOSTPORT" "$@"
