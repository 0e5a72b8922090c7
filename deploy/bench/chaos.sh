#!/usr/bin/env bash
# Faults, repeated: an active and a standby coordinator on one PostgreSQL
# database, two forces watching, and a national feed that grows by a slice
# each round. In every round, at a random moment of the round's feed, one
# fault: the active coordinator killed with SIGKILL (then started again:
# every other time at once, racing the standby for the lease, otherwise
# once the standby has taken over), or every coordinator's database connection cut
# (pg_terminate_backend: the lease goes, the coordinators contend for it
# again). At the end every force's inbox must equal what the same policy
# finds offline, and every node's audit must verify. Prints lost,
# duplicated, extra and unverifiable counts (all must be 0) and the
# takeover times.
#
#   deploy/bench/chaos.sh                 # 100 rounds
#   ROUNDS=10 deploy/bench/chaos.sh       # fewer
#
# Environment: ROUNDS (100), STAFF (1000 a force), NATIONAL (20000),
# KILL_SHARE (percent of faults that are kills, 70; the rest cut the
# database connections), VIGIL_SCHEME (2 by default here, for speed),
# VIGIL_BIN (already-built binaries), OUT (chaos-out).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUT:-chaos-out}
ROUNDS=${ROUNDS:-100}
STAFF=${STAFF:-1000}
NATIONAL=${NATIONAL:-20000}
KILL_SHARE=${KILL_SHARE:-70}
export VIGIL_SCHEME=${VIGIL_SCHEME:-2} VIGIL_STORE=postgres VIGIL_STANDBY=1
TD=vigil.chaos
ORIGIN=vigil.chaos/audit
SERVER=coordinator.vigil.chaos
START=$(date +%s)
source "$ROOT/deploy/local/lib.sh"
vigil_binaries
trap vigil_cleanup EXIT
FORCES=(met gmp)

vigil_setup "${FORCES[@]}"
vigil_start_keyserver
vigil_start_coordinator
declare -A PID CFG METRICS_OF LOG
PID[a]=$COORD_PID; CFG[a]=$OUT/coordinator/coordinator.toml; METRICS_OF[a]=$METRICS; LOG[a]=$OUT/coordinator/coordinator.log
vigil_start_standby
PID[b]=$COORD_B_PID; CFG[b]=$OUT/coordinator/coordinator-b.toml; METRICS_OF[b]=$METRICS_B; LOG[b]=$OUT/coordinator/coordinator-b.log
for f in "${FORCES[@]}"; do
  "$NODE" watch --config "$OUT/nodes/$f/node.toml" 2>>"$OUT/nodes/$f/watch.log" &
  PIDS+=($!)
done
printf '[sync]\nbatch_size = 100\nretry_seconds = 120\n' >> "$OUT/nodes/pnc/node.toml"

"$LAB" synth --out "$OUT/data" --seed 17 --forces ${#FORCES[@]} --staff-per-force "$STAFF" --national "$NATIONAL" --overlap 0.05 >/dev/null
for f in "${FORCES[@]}"; do "$NODE" sync --config "$OUT/nodes/$f/node.toml" --roster "$OUT/data/roster-$f.csv" >/dev/null; done
# Round i feeds the first i/ROUNDS of the extract: each round sends one
# more slice (the node sends only what changed).
python3 - "$OUT/data/extract.csv" "$OUT/parts" "$ROUNDS" <<'PY'
import os, sys
src, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
lines = open(src).read().splitlines(True)
head, rows = lines[0], lines[1:]
for i in range(1, rounds + 1):
    with open(f"{out}/extract-{i}.csv", "w") as fh:
        fh.write(head)
        fh.writelines(rows[: len(rows) * i // rounds])
PY
WANT=$("$LAB" eval --json --no-train --roster "$OUT"/data/roster-*.csv --extract "$OUT/data/extract.csv" --truth "$OUT/data/truth.csv" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({f:v["confirmed"] for f,v in r["per_force"].items()}))')

active() { local s; for s in a b; do [ "$(vigil_active "${METRICS_OF[$s]}")" = 1 ] && { echo "$s"; return; }; done; echo ""; }
start_slot() { # restart a killed coordinator; it comes back as the standby
  "$COORD" serve --config "${CFG[$1]}" >>"$OUT/coordinator/stdout-$1.log" 2>>"${LOG[$1]}" &
  PID[$1]=$!
  PIDS+=("${PID[$1]}")
}
KILLS=0 CUTS=0 RERUNS=0 UNVERIFIABLE=0
for i in $(seq 1 "$ROUNDS"); do
  "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/parts/extract-$i.csv" >/dev/null 2>>"$OUT/feed.err" &
  FEED=$!
  sleep "$(printf '0.%03d' $(( RANDOM % 500 )))"
  if [ $(( RANDOM % 100 )) -lt "$KILL_SHARE" ]; then
    s=""
    for _ in $(seq 1 1200); do s=$(active); [ -n "$s" ] && break; sleep 0.1; done
    [ -n "$s" ] || { echo "no coordinator became active within 120 s" >&2; exit 1; }
    kill -9 "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
    KILLS=$((KILLS + 1))
    # Every other kill, the killed one comes back at once and races the
    # standby for the lease; otherwise once the standby has taken over.
    if [ $(( KILLS % 2 )) = 0 ]; then
      other=$([ "$s" = a ] && echo b || echo a)
      for _ in $(seq 1 1200); do [ "$(vigil_active "${METRICS_OF[$other]}")" = 1 ] && break; sleep 0.1; done
    fi
    start_slot "$s"
  else
    pg_run "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U vigil -d vigil -Atq -c \
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'vigil-coordinator-%'" >/dev/null
    CUTS=$((CUTS + 1))
  fi
  if ! wait "$FEED"; then
    RERUNS=$((RERUNS + 1))
    "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/parts/extract-$i.csv" >/dev/null 2>>"$OUT/feed.err"
  fi
  if [ $(( i % 10 )) = 0 ]; then
    # The auditor trusts only a witnessed checkpoint: the witness cosigns
    # the current one first (cosignatures are collected again after a
    # takeover), once a coordinator serves.
    "$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 120 >/dev/null
    "$NODE" witness run --once --config "$OUT/nodes/w1/node.toml" >/dev/null 2>>"$OUT/audit.err" || true
    "$NODE" audit verify --config "$OUT/nodes/ico/node.toml" >/dev/null 2>>"$OUT/audit.err" || UNVERIFIABLE=$((UNVERIFIABLE + 1))
    echo "round $i/$ROUNDS: $KILLS kills, $CUTS connection cuts, $RERUNS feeds run again ($(( $(date +%s) - START )) s)"
  fi
done

"$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 300 >/dev/null
python3 - "$WANT" "$NODE" "$OUT" "$KILLS" "$CUTS" "$RERUNS" "$UNVERIFIABLE" "$(( $(date +%s) - START ))" "${LOG[a]}" "${LOG[b]}" <<'PY'
import json, re, subprocess, sys, time
want = json.loads(sys.argv[1]); node, out = sys.argv[2], sys.argv[3]
kills, cuts, reruns, unverifiable, secs = (int(x) for x in sys.argv[4:9])
deadline = time.time() + 300
while True:
    got, dup, inboxes = {}, 0, {}
    for f in want:
        inbox = json.loads(subprocess.check_output([node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
        got[f] = sum(1 for i in inbox if i["state"] == "active")
        dup += len(inbox) - len({i["id"] for i in inbox})
    if got == want or time.time() > deadline:
        break
    time.sleep(0.5)
lost = sum(max(0, want[f] - got.get(f, 0)) for f in want)
extra = sum(max(0, got.get(f, 0) - want[f]) for f in want)
subprocess.run([node, "witness", "run", "--once", "--config", f"{out}/nodes/w1/node.toml"], capture_output=True)
for f in list(want) + ["ico"]:
    r = subprocess.run([node, "audit", "verify", "--config", f"{out}/nodes/{f}/node.toml"], capture_output=True)
    unverifiable += r.returncode != 0
takeovers, at_start = [], 0
for log in sys.argv[9:11]:
    text = open(log).read()
    takeovers += [float(m) for m in re.findall(r"took over: this coordinator is the active one secs=([0-9.]+)", text)]
    at_start += len(re.findall(r"this coordinator holds the lease: it is the active one", text))
takeovers.sort()
print(f"faults {kills + cuts}: {kills} kills of the active coordinator, {cuts} database connection cuts, {reruns} feeds run again")
print(f"lease taken {len(takeovers)} times by a running standby, {at_start} times by a coordinator as it started (the first start, or a killed one restarted first)")
if takeovers:
    print(f"load on takeover: median {takeovers[len(takeovers)//2]:.2f} s, slowest {takeovers[-1]:.2f} s")
print(f"inboxes {got}, expected {want}")
print(f"lost {lost}")
print(f"duplicated {dup}")
print(f"extra {extra}")
print(f"unverifiable {unverifiable}")
print(f"done in {secs} s")
sys.exit(1 if lost or dup or extra or unverifiable else 0)
PY
vigil_cleanup
trap - EXIT
