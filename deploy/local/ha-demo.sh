#!/usr/bin/env bash
# Two coordinators on one PostgreSQL database, and a takeover, on one
# machine in one command.
#
# Builds release binaries; starts a private PostgreSQL cluster, the key
# service, coordinator a (which takes the lease: the active one) and
# coordinator b (the standby: it takes no connections and reports
# NOT_SERVING); every node is given both addresses. Syncs two forces'
# rosters, starts the national feed, and kills coordinator a with SIGKILL
# mid-feed: b takes the lease, loads the store and serves; the feed's
# retries reach it and complete, each batch applied once. Then a comes
# back as the standby, a delta is fed, b is killed and a takes over again.
# Checks that every force's inbox equals what the same policy finds
# offline, with no duplicate, and that the audit log verifies against the
# checkpoints the auditor stored before the takeovers (no fork, no gap).
#
# Environment (all optional): VIGIL_DEMO_OUT (default ha-demo-out),
# VIGIL_BIN (already-built binaries), VIGIL_DEMO_STAFF (default 1500),
# VIGIL_DEMO_NATIONAL (default 20000), VIGIL_SCHEME (3 or 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${VIGIL_DEMO_OUT:-ha-demo-out}
STAFF=${VIGIL_DEMO_STAFF:-1500}
NATIONAL=${VIGIL_DEMO_NATIONAL:-20000}
TD=vigil.demo
ORIGIN=vigil.demo/audit
SERVER=coordinator.vigil.demo
START=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - START ))"; }
command -v python3 >/dev/null || { echo "ha-demo.sh needs python3" >&2; exit 1; }

export VIGIL_STORE=postgres VIGIL_STANDBY=1
source "$ROOT/deploy/local/lib.sh"
vigil_binaries
trap vigil_cleanup EXIT
FORCES=(met gmp)
role() { case "$(vigil_active "$1")" in 1) echo active ;; 0) echo standby ;; *) echo down ;; esac; }
roles() { echo "   coordinator a (127.0.0.1:$PORT): $(role "$METRICS"); coordinator b (127.0.0.1:$PORT_B): $(role "$METRICS_B")"; }

step "keys, certificates, configs and a PostgreSQL cluster"
vigil_setup "${FORCES[@]}"

step "starting the key service, coordinator a, coordinator b and the force watchers"
vigil_start_keyserver
vigil_start_coordinator
A_PID=$COORD_PID
vigil_start_standby
roles
for f in "${FORCES[@]}"; do
  "$NODE" watch --config "$OUT/nodes/$f/node.toml" 2>"$OUT/nodes/$f/watch.log" &
  PIDS+=($!)
done

step "synthesising ${#FORCES[@]} forces x $STAFF staff and $NATIONAL national records"
"$LAB" synth --out "$OUT/data" --seed 3 --forces ${#FORCES[@]} --staff-per-force "$STAFF" --national "$NATIONAL" --overlap 0.05
for f in "${FORCES[@]}"; do "$NODE" sync --config "$OUT/nodes/$f/node.toml" --roster "$OUT/data/roster-$f.csv" | sed -n 1p; done
"$NODE" witness run --once --config "$OUT/nodes/w1/node.toml" | sed 's/^/   witness w1: /'
"$NODE" audit verify --config "$OUT/nodes/ico/node.toml" | sed 's/^/   before: /'
WANT=$("$LAB" eval --json --no-train --roster "$OUT"/data/roster-*.csv --extract "$OUT/data/extract.csv" --truth "$OUT/data/truth.csv" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({f:v["confirmed"] for f,v in r["per_force"].items()}))')

step "feeding the national extract, and killing coordinator a (SIGKILL) mid-feed"
# Small batches, so the kill lands mid-feed; retries for as long as a
# takeover may take.
printf '[sync]\nbatch_size = 2000\nretry_seconds = 120\n' >> "$OUT/nodes/pnc/node.toml"
"$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/data/extract.csv" >"$OUT/feed.out" 2>"$OUT/feed.err" &
FEED=$!
for _ in $(seq 1 3000); do
  [ "$(grep -c 'national batch source=pnc' "$OUT/coordinator/coordinator.log")" -ge 5 ] && break
  sleep 0.05
done
kill -9 "$A_PID"
wait "$A_PID" 2>/dev/null || true
echo "   killed coordinator a after $(grep -c 'national batch source=pnc' "$OUT/coordinator/coordinator.log") batches"
wait "$FEED" || { cat "$OUT/feed.err" >&2; exit 1; }
sed -n 1p "$OUT/feed.out"
grep -E "took over" "$OUT/coordinator/coordinator-b.log" | tail -1 | sed 's/^.*INFO /   b: /'
roles

step "waiting for the disclosures to reach each force"
wait_for_inboxes() {
  python3 - "$1" "$NODE" "$OUT" <<'PY'
import json, subprocess, sys, time
want = json.loads(sys.argv[1]); node, out = sys.argv[2], sys.argv[3]
deadline = time.time() + 300
while True:
    got, dup = {}, 0
    for f in want:
        inbox = json.loads(subprocess.check_output([node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
        got[f] = sum(1 for i in inbox if i["state"] == "active")
        dup += len(inbox) - len({i["id"] for i in inbox})
    if got == want:
        print("   inboxes:", ", ".join(f"{f} {n}" for f, n in sorted(got.items())), f"(as found offline; {dup} duplicates)")
        sys.exit(1 if dup else 0)
    if time.time() > deadline:
        sys.exit(f"disclosures did not all arrive: got {got}, expected {want}")
    time.sleep(0.2)
PY
}
wait_for_inboxes "$WANT"

step "coordinator a comes back: the standby now"
vigil_start_coordinator_as_standby() {
  "$COORD" serve --config "$OUT/coordinator/coordinator.toml" >>"$OUT/coordinator/stdout.log" 2>>"$OUT/coordinator/coordinator.log" &
  A_PID=$!
  PIDS+=("$A_PID")
  for _ in $(seq 1 600); do [ "$(vigil_active "$METRICS")" = 0 ] && return 0; sleep 0.1; done
  echo "coordinator a did not come back" >&2
  return 1
}
vigil_start_coordinator_as_standby
roles

step "feeding a delta, then killing coordinator b (SIGKILL)"
WANT=$("$LAB" eval --json --no-train --roster "$OUT"/data/roster-*.csv --extract "$OUT/data/extract.csv" --extract "$OUT/data/delta.csv" --truth "$OUT/data/truth.csv" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({f:v["confirmed"] for f,v in r["per_force"].items()}))')
"$NODE" feed --config "$OUT/nodes/pnc/node.toml" --delta "$OUT/data/delta.csv" | sed -n 1p
kill -9 "$COORD_B_PID"
wait "$COORD_B_PID" 2>/dev/null || true
echo "   killed coordinator b"
"$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 300 | sed 's/^/   /'
grep -E "took over" "$OUT/coordinator/coordinator.log" | tail -1 | sed 's/^.*INFO /   a: /'
wait_for_inboxes "$WANT"

step "auditing the log across both takeovers"
"$NODE" witness run --once --config "$OUT/nodes/w1/node.toml" | sed 's/^/   witness w1: /'
"$NODE" audit verify --config "$OUT/nodes/ico/node.toml" | sed 's/^/   after: /'
for f in "${FORCES[@]}"; do "$NODE" audit verify --config "$OUT/nodes/$f/node.toml" | sed 's/^/   /'; done
pg_run "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U vigil -d vigil -At \
  -c "SELECT 'lease generation ' || generation || ', held by ' || holder FROM vigil_lease" | sed 's/^/   /'

step "stopping"
vigil_cleanup
trap - EXIT
echo "done in $(( $(date +%s) - START )) s: two takeovers, nothing lost, nothing duplicated, the log whole"
