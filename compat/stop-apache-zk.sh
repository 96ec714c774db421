#!/usr/bin/env bash
# Stop an Apache ZooKeeper started by start-apache-zk.sh.  Usage: stop-apache-zk.sh PID
set -u
PID=${1:?usage: stop-apache-zk.sh PID}
kill "$PID" 2>/dev/null || exit 0
for _ in $(seq 1 50); do
  kill -0 "$PID" 2>/dev/null || exit 0
  sleep 0.1
done
kill -9 "$PID" 2>/dev/null || true
