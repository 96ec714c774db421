#!/usr/bin/env bash
# Runs a three-server zkd ensemble on this machine: clients on 127.0.0.1:2181,2182,2183.
# Data goes under ./data/local-3/s{1,2,3} (relative to where you run it). Ctrl-C stops
# all three. Needs a built zkd: `cargo build --release --bin zkd` (or set ZKD=path).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
zkd="${ZKD:-$here/../../target/release/zkd}"
[ -x "$zkd" ] || { echo "no zkd at $zkd: run 'cargo build --release --bin zkd' first" >&2; exit 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  mkdir -p "data/local-3/s$i"
  # Each server learns its id from <dataDir>/myid, as ZooKeeper's do.
  echo "$i" > "data/local-3/s$i/myid"
  "$zkd" "$here/s$i.cfg" 2> "data/local-3/s$i/zkd.log" &
  pids+=($!)
done
echo "zkd ensemble: clients on 127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 (logs in data/local-3/s*/zkd.log)"
for _ in $(seq 100); do
  modes=$(for p in 2181 2182 2183; do
    { exec 3<>/dev/tcp/127.0.0.1/$p && printf srvr >&3 && grep -o 'Mode: [a-z]*' <&3; } 2>/dev/null || true
  done | tr '\n' ' ')
  if [[ "$modes" == *leader* && $(grep -o follower <<<"$modes" | wc -l) -eq 2 ]]; then
    echo "serving: $modes"
    break
  fi
  sleep 0.2
done
wait
