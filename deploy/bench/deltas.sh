#!/usr/bin/env bash
# Delta latency at size (issue 13): after deploy/bench/system.sh has left its
# deployment in OUT (default /tmp/vigil-bench), start the coordinator on that
# store, connect every force's watcher, feed DELTAS (default 250) deltas of
# 10 records each with record ids not used before (the synth's delta rows
# under a fresh prefix, so each run discloses anew; when DELTAS asks for more
# rows than the synth made, they are used again under another prefix), and
# print the latency from the coordinator accepting a delta to the disclosure
# stored in the inbox, with the coordinator's apply time per delta from its
# debug log.
# Embedded store only (a PostgreSQL deployment's cluster is stopped when
# system.sh ends).
#
#   deploy/bench/deltas.sh            one run
#   RUNS=4 deploy/bench/deltas.sh     four, one after another
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/vigil-bench}
BIN=${VIGIL_BIN:-$(pwd)/target/release}
NODE=$BIN/vigil-node
DELTAS=${DELTAS:-250}
WORK=$OUT/deltas-bench
FORCES=()
for r in "$OUT"/data/roster-*.csv; do f=${r##*/roster-}; FORCES+=("${f%.csv}"); done
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap stop EXIT
mkdir -p "$WORK"
for run in $(seq 1 "${RUNS:-1}"); do
  PREFIX=$(python3 -c 'import secrets; print("D" + secrets.token_hex(3).upper())')
  LOG=$WORK/coordinator-$PREFIX.log
  RUST_LOG=info,vigil_coordinator=debug "$BIN/vigil-coordinator" serve --config "$OUT/coordinator/coordinator.toml" >/dev/null 2>"$LOG" &
  PIDS+=($!)
  "$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 900 >/dev/null
  for f in "${FORCES[@]}"; do
    "$NODE" watch --config "$OUT/nodes/$f/node.toml" 2>"$WORK/watch-$f.log" &
    PIDS+=($!)
  done
  # Every watcher subscribed before the first delta, so that no latency
  # includes a connection being made.
  for f in "${FORCES[@]}"; do
    for _ in $(seq 1 600); do grep -q "subscribed to disclosures" "$WORK/watch-$f.log" && break; sleep 0.1; done
    grep -q "subscribed to disclosures" "$WORK/watch-$f.log" || { echo "the $f watcher did not subscribe within a minute" >&2; exit 1; }
  done
  python3 - "$OUT/data/delta.csv" "$WORK/$PREFIX" "$PREFIX" "$DELTAS" <<'PY'
import csv, os, sys
src, d, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.makedirs(d, exist_ok=True)
rows = list(csv.reader(open(src)))
head, body = rows[0], rows[1:]
per = len(body) // 10
for i in range(n if per else 0):
    j, p = i % per, f"{prefix}R{i // per}"
    with open(f"{d}/delta-{i:04}.csv", "w", newline="") as fh:
        w = csv.writer(fh); w.writerow(head)
        w.writerows([p + r[0]] + r[1:] for r in body[j * 10:(j + 1) * 10])
PY
  for f in "${FORCES[@]}"; do "$NODE" inbox list --config "$OUT/nodes/$f/node.toml" --format json >"$OUT/nodes/$f/before.json"; done
  for d in "$WORK/$PREFIX"/delta-*.csv; do "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --delta "$d" >/dev/null; done
  sleep 2 # let the last deltas' disclosures land before reading the inboxes (a measurement, not readiness)
  LAT=$(python3 deploy/bench/latency.py "$NODE" "$OUT" "${FORCES[@]}")
  python3 - "$LOG" "$LAT" <<'PY'
import re, sys
log, lat = sys.argv[1], sys.argv[2]
apply = sorted(float(m) for m in re.findall(r"apply_ms=([0-9.]+)", open(log).read()))
q = lambda p: apply[min(len(apply) - 1, int(len(apply) * p))] if apply else 0
print(f"{lat}; apply per delta p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, max {apply[-1] if apply else 0:.1f} ms")
PY
  stop
done
