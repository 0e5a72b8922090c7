#!/usr/bin/env bash
# Vigil, the whole job, on one machine, in one command.
#
# Builds release binaries; creates a private CA and SPIFFE certificates for a
# coordinator, a key service, three forces, one national source, a witness
# and auditors, plus the key service's key, the pepper and the audit signing
# key; writes every config; starts the key service, the coordinator and the
# force watchers on loopback (no node holds a key that makes tokens: each
# has its match keys evaluated obliviously by the key service); synthesises
# data; syncs the rosters; feeds the national extract; waits for the
# disclosures; trains the policy on what the coordinator holds and restarts
# with it (every pair decided again); feeds a delta and shows the new alerts
# arriving at the right force; verifies the audit log and writes the HTML report; prints a summary
# and stops everything.
#
# Environment (all optional):
#   VIGIL_DEMO_OUT       output directory (default: demo-out)
#   VIGIL_BIN            directory of already-built binaries (skips the build)
#   VIGIL_DEMO_STAFF     staff per force (default 3000)
#   VIGIL_DEMO_NATIONAL  national records (default 100000)
#   VIGIL_SCHEME         3 (default: the key service makes the tokens) or 2
#                        (every node holds one shared linkage key)
#   VIGIL_STORE          redb (default: the embedded store) or postgres (a
#                        private PostgreSQL cluster in the output directory)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${VIGIL_DEMO_OUT:-demo-out}
STAFF=${VIGIL_DEMO_STAFF:-3000}
NATIONAL=${VIGIL_DEMO_NATIONAL:-100000}
TD=vigil.demo
ORIGIN=vigil.demo/audit
SERVER=coordinator.vigil.demo
START=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - START ))"; }
command -v python3 >/dev/null || { echo "demo.sh needs python3 for its summary" >&2; exit 1; }

if [ -n "${VIGIL_BIN:-}" ]; then
  BIN=$VIGIL_BIN
else
  step "building release binaries"
  cargo build --release --bins --quiet
  BIN=$ROOT/target/release
fi

source "$ROOT/deploy/local/lib.sh"
trap vigil_cleanup EXIT
FORCES=(met gmp wmp)

step "keys, certificates and configs"
vigil_setup "${FORCES[@]}"

step "starting the key service, the coordinator and the force watchers on loopback"
vigil_start "${FORCES[@]}"
echo "   coordinator on 127.0.0.1:$PORT (metrics on 127.0.0.1:$METRICS/metrics), token scheme $SCHEME"
[ "$SCHEME" = 3 ] && echo "   key service on 127.0.0.1:$KS_PORT (public key ${KS_PUBLIC:0:16}..., pinned in every node's config)"

step "synthesising ${#FORCES[@]} forces x $STAFF staff and $NATIONAL national records"
"$LAB" synth --out "$OUT/data" --seed 1 --forces ${#FORCES[@]} --staff-per-force "$STAFF" --national "$NATIONAL" --overlap 0.05

expected() { # extracts... -> per-force confirmed counts as JSON, computed offline with the same policy
  local args=()
  for e in "$@"; do args+=(--extract "$OUT/data/$e"); done
  "$LAB" eval --json --no-train ${POLICY:+--policy "$POLICY"} --roster "$OUT"/data/roster-*.csv "${args[@]}" --truth "$OUT/data/truth.csv" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({f:v["confirmed"] for f,v in r["per_force"].items()}))'
}
wait_inboxes() { # expected-json
  python3 - "$1" "$NODE" "$OUT" <<'PY'
import json, subprocess, sys, time
want = json.loads(sys.argv[1]); node, out = sys.argv[2], sys.argv[3]
deadline = time.time() + 300
while True:
    got = {}
    for f in want:
        inbox = json.loads(subprocess.check_output([node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
        got[f] = sum(1 for i in inbox if i["state"] == "active")
    if got == want:
        print("   inboxes:", ", ".join(f"{f} {n}" for f, n in sorted(got.items())))
        break
    if time.time() > deadline:
        sys.exit(f"disclosures did not all arrive: got {got}, expected {want}")
    time.sleep(0.2)
PY
}

step "syncing rosters"
for f in "${FORCES[@]}"; do "$NODE" sync --config "$OUT/nodes/$f/node.toml" --roster "$OUT/data/roster-$f.csv" | sed -n 1p; done

step "feeding the national extract"
WANT=$(expected extract.csv)
"$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/data/extract.csv" | sed -n 1p
step "waiting for the disclosures to reach each force"
wait_inboxes "$WANT"

step "training the policy on what the coordinator holds (no labels) and restarting with it"
vigil_stop_coordinator
"$COORD" calibrate --config "$OUT/coordinator/coordinator.toml" --out "$OUT/coordinator/trained-policy.toml" --version demo-trained | sed 's/^/   /'
printf 'policy = "trained-policy.toml"\n' >> "$OUT/coordinator/coordinator.toml"
POLICY=$OUT/coordinator/trained-policy.toml
WANT=$(expected extract.csv)
vigil_start_coordinator
wait_inboxes "$WANT"

step "feeding a delta: new records, some about serving staff"
for f in "${FORCES[@]}"; do "$NODE" inbox list --config "$OUT/nodes/$f/node.toml" --format json > "$OUT/nodes/$f/before-delta.json"; done
WANT2=$(expected extract.csv delta.csv)
"$NODE" feed --config "$OUT/nodes/pnc/node.toml" --delta "$OUT/data/delta.csv" | sed -n 1p
wait_inboxes "$WANT2"
python3 - "$NODE" "$OUT" "${FORCES[@]}" <<'PY'
import json, subprocess, sys
node, out, forces = sys.argv[1], sys.argv[2], sys.argv[3:]
lat = []
for f in forces:
    before = {i["id"] for i in json.load(open(f"{out}/nodes/{f}/before-delta.json"))}
    inbox = json.loads(subprocess.check_output([node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
    new = [i for i in inbox if i["id"] not in before]
    lat.extend(i["latency_ms"] for i in new)
    for i in new:
        print(f"   new alert at {f}: {i['id']}  {i['category']:<15} {i['name']} ({i['employee_id']}, {i['role']})  record {i['record_id']}  in {i['latency_ms']} ms")
if lat:
    lat.sort()
    print(f"   {len(lat)} new alerts; from the coordinator accepting the delta to the force's inbox: median {lat[len(lat)//2]} ms, slowest {lat[-1]} ms")
PY

step "auditing the log (the witness cosigns a checkpoint; the auditor trusts only a witnessed one)"
"$NODE" witness run --once --config "$OUT/nodes/w1/node.toml" | sed 's/^/   witness w1: /'
"$NODE" audit verify --config "$OUT/nodes/ico/node.toml"
for f in "${FORCES[@]}"; do "$NODE" audit verify --config "$OUT/nodes/$f/node.toml"; done
if [ "$SCHEME" = 3 ]; then
  echo "   the key service's own log (who had how many match keys evaluated):"
  "$NODE" audit verify --config "$OUT/nodes/ico-ks/node.toml" | sed 's/^/   /'
fi
"$NODE" audit report --config "$OUT/nodes/ico/node.toml" --format html --out "$OUT/audit-report.html"
"$NODE" audit export --config "$OUT/nodes/ico/node.toml" "$OUT/audit-export" >/dev/null

step "summary"
python3 - "$NODE" "$OUT" "$STAFF" "$(( $(date +%s) - START ))" "${FORCES[@]}" <<'PY'
import csv, json, subprocess, sys
node, out, staff, secs, forces = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
fed = set()
for name in ("extract.csv", "delta.csv"):
    with open(f"{out}/data/{name}") as fh:
        fed |= {r["record_id"] for r in csv.DictReader(fh)}
truth = {}
with open(f"{out}/data/truth.csv") as fh:
    for r in csv.DictReader(fh):
        if r["relation"] == "same_person" and r["record_id"] in fed and not r["employee_id"].startswith("APP"):
            truth.setdefault(r["force"], set()).add((r["employee_id"], r["record_id"]))
print(f"{'force':<6} {'staff':>6} {'confirmed':>10} {'precision':>10} {'recall':>7} {'patterns':>9}")
for f in forces:
    inbox = json.loads(subprocess.check_output([node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
    got = {(i["employee_id"], i["record_id"]) for i in inbox if i["state"] == "active"}
    t = truth.get(f, set())
    tp = len(got & t)
    prec = tp / len(got) if got else 1.0
    rec = tp / len(t) if t else 1.0
    patterns = len({i["employee_id"] for i in inbox if i["pattern"]})
    print(f"{f:<6} {staff:>6} {len(got):>10} {prec:>10.4f} {rec:>7.4f} {patterns:>9}")
print(f"\nDone in {secs} s. Where to look next:")
print(f"  {out}/audit-report.html              the data protection officer's report (open in a browser)")
print(f"  vigil-node inbox list --config {out}/nodes/met/node.toml   a force's inbox (names appear only there)")
print(f"  {out}/audit-export/                  the log as plain files for independent verification")
print(f"  {out}/coordinator/coordinator.log    the coordinator's log (no personal data)")
PY
step "stopping"
vigil_cleanup
trap - EXIT
echo "stopped cleanly"
