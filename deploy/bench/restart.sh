#!/usr/bin/env bash
# Restart time at size (issue 13): after deploy/bench/system.sh has left its
# deployment in OUT (default /tmp/vigil-bench), start the coordinator on that
# store with the given [capacity] (0 0: sized from the store), wait until the
# health check answers, print the time and peak RSS, and stop it.
#
#   deploy/bench/restart.sh                  sized from the store
#   deploy/bench/restart.sh 23000000 6923000 with [capacity] set
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/vigil-bench}
BIN=${VIGIL_BIN:-$(pwd)/target/release}
CONFIG=$OUT/coordinator/coordinator.toml
sed -i "s/^national_tokens = .*/national_tokens = ${1:-0}/; s/^roster_tokens = .*/roster_tokens = ${2:-0}/" "$CONFIG"
T0=$(date +%s.%N)
"$BIN/vigil-coordinator" serve --config "$CONFIG" >/dev/null 2>>"$OUT/coordinator/coordinator.log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
"$BIN/vigil-node" health --config "$OUT/nodes/ico/node.toml" --wait 900 >/dev/null
T1=$(date +%s.%N)
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
kill -TERM "$PID"
wait "$PID" || true
trap - EXIT
python3 -c "print(f'capacity (${1:-0}, ${2:-0}): healthy in {$T1 - $T0:.2f} s, peak RSS {$HWM / 1024:.0f} MiB')"
