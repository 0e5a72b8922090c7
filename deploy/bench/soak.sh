#!/usr/bin/env bash
# Soak: 43 forces and a national source working for DURATION seconds with
# every force's watcher connected. In each cycle the source feeds a small
# delta (new records, some about serving staff: disclosures) or withdraws
# one fed earlier (retractions), and one force syncs its roster (one
# leaver, then back). Reports errors (commands that failed, watchers that
# stopped, errors in their logs: all must be 0), the latency from the
# coordinator accepting a delta to the disclosure stored in the force's
# inbox (p50/p99), and the coordinator's memory over time.
#
#   deploy/bench/soak.sh                    # 10 minutes, 43 forces
#   DURATION=60 FORCES=5 deploy/bench/soak.sh
#
# Environment: DURATION (600 s), FORCES (43), STAFF (1000 a force),
# NATIONAL (100000), VIGIL_SCHEME (2 by default here, for a quick setup;
# 3 works too), VIGIL_STORE (redb or
# postgres), VIGIL_BIN, OUT (soak-out).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DURATION=${DURATION:-600}
FORCES_N=${FORCES:-43}
STAFF=${STAFF:-1000}
NATIONAL=${NATIONAL:-100000}
export VIGIL_SCHEME=${VIGIL_SCHEME:-2}
PARTS=100
OUT=${OUT:-soak-out}
TD=vigil.soak
ORIGIN=vigil.soak/audit
SERVER=coordinator.vigil.soak
source "$ROOT/deploy/local/lib.sh"
vigil_binaries
trap vigil_cleanup EXIT
ALL=(met gmp wmp wyp mer tvp ken ham ess lan nbr syp dc avs sus sur her swp wmc cle hum not der lei stf nor che lin nfk suf cam bed nyp dur cum glo wil dor war nwp gwe dp col)
FORCES=("${ALL[@]:0:$FORCES_N}")
vigil_setup "${FORCES[@]}"
"$LAB" synth --out "$OUT/data" --seed 23 --forces "$FORCES_N" --staff-per-force "$STAFF" --national "$NATIONAL" --overlap 0.05 --delta $((PARTS * 10)) >/dev/null
vigil_start "${FORCES[@]}"
WATCHERS=("${PIDS[@]: -$FORCES_N}")
for f in "${FORCES[@]}"; do "$NODE" sync --config "$OUT/nodes/$f/node.toml" --roster "$OUT/data/roster-$f.csv" >/dev/null; done
"$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/data/extract.csv" >/dev/null
# The deltas (10 records each), their withdrawals, and each force's roster
# with one leaver.
python3 - "$OUT/data" "$PARTS" "${FORCES[@]}" <<'PY'
import csv, os, sys
data, parts, forces = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.makedirs(f"{data}/soak", exist_ok=True)
rows = list(csv.DictReader(open(f"{data}/delta.csv")))
head = list(rows[0].keys())
for i in range(parts):
    part = rows[i * 10:(i + 1) * 10]
    with open(f"{data}/soak/delta-{i:03}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, head); w.writeheader(); w.writerows(part)
    with open(f"{data}/soak/withdraw-{i:03}.csv", "w", newline="") as fh:
        fh.write("record_id\n" + "".join(r["record_id"] + "\n" for r in part))
for f in forces:
    lines = open(f"{data}/roster-{f}.csv").read().splitlines(True)
    open(f"{data}/soak/roster-{f}-leaver.csv", "w").writelines(lines[:-1])
PY
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$COORD_PID/status"; }
for f in "${FORCES[@]}"; do "$NODE" inbox list --config "$OUT/nodes/$f/node.toml" --format json > "$OUT/nodes/$f/before-soak.json"; done
RSS0=$(rss)
store_mib() { if [ "$STORE" = postgres ]; then du -sm "$OUT/pg/data" | cut -f1; else du -sm "$OUT/coordinator/data" | cut -f1; fi; }
STORE0=$(store_mib)
echo "soak: ${#FORCES[@]} forces x $STAFF staff, $NATIONAL national records; coordinator RSS ${RSS0} MiB at the start"
START=$(date +%s) ERRORS=0 CYCLES=0 FEEDS=0 WITHDRAWALS=0 SYNCS=0 NEXT_SAMPLE=60
SAMPLES="0 s: ${RSS0} MiB"
run() { "$@" >/dev/null 2>>"$OUT/soak.err" || { ERRORS=$((ERRORS + 1)); echo "failed: $*" >>"$OUT/soak.err"; }; }
while [ $(( $(date +%s) - START )) -lt "$DURATION" ]; do
  i=$(( CYCLES % PARTS )); pass=$(( CYCLES / PARTS ))
  d=$(printf '%03d' "$i")
  if [ $(( pass % 2 )) = 0 ]; then
    run "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --delta "$OUT/data/soak/delta-$d.csv"; FEEDS=$((FEEDS + 1))
  else
    run "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --withdraw "$OUT/data/soak/withdraw-$d.csv"; WITHDRAWALS=$((WITHDRAWALS + 1))
  fi
  f=${FORCES[$(( CYCLES % ${#FORCES[@]} ))]}
  if [ $(( (CYCLES / ${#FORCES[@]}) % 2 )) = 0 ]; then r="$OUT/data/soak/roster-$f-leaver.csv"; else r="$OUT/data/roster-$f.csv"; fi
  run "$NODE" sync --config "$OUT/nodes/$f/node.toml" --roster "$r"; SYNCS=$((SYNCS + 1))
  CYCLES=$((CYCLES + 1))
  el=$(( $(date +%s) - START ))
  if [ "$el" -ge "$NEXT_SAMPLE" ]; then SAMPLES="$SAMPLES, $el s: $(rss) MiB"; NEXT_SAMPLE=$((NEXT_SAMPLE + 60)); fi
done
# Let the last cycle's disclosures land (a measurement, not readiness).
sleep 2
STOPPED=0
for p in "${WATCHERS[@]}"; do kill -0 "$p" 2>/dev/null || STOPPED=$((STOPPED + 1)); done
LOGGED=$(cat "$OUT"/nodes/*/watch.log | grep -c " ERROR " || true)
RSS1=$(rss)
HWM=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$COORD_PID/status")
STORE1=$(store_mib)
python3 - "$NODE" "$OUT" "${FORCES[@]}" <<PY
import json, subprocess, sys
node, out, forces = sys.argv[1], sys.argv[2], sys.argv[3:]
lat, dup = [], 0
for f in forces:
    before = {i["id"] for i in json.load(open(f"{out}/nodes/{f}/before-soak.json"))}
    inbox = json.loads(subprocess.check_output([node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
    dup += len(inbox) - len({i["id"] for i in inbox})
    lat += [i["latency_ms"] for i in inbox if i["id"] not in before and i.get("latency_ms") is not None]
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
print(f"cycles $CYCLES in $DURATION s: $FEEDS deltas fed, $WITHDRAWALS withdrawn, $SYNCS roster syncs")
print(f"errors {$ERRORS + $STOPPED + $LOGGED} (failed commands $ERRORS, watchers stopped $STOPPED, errors in watch logs $LOGGED); duplicated ids {dup}")
print(f"delta to inbox: {len(lat)} disclosures, p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {lat[-1] if lat else 0} ms")
print("coordinator RSS: $SAMPLES; end ${RSS1} MiB (growth $(( RSS1 - RSS0 )) MiB), peak ${HWM} MiB")
print("store on disk: ${STORE0} MiB at the start, ${STORE1} MiB at the end (the log, disclosures and receipts grow; the embedded store caches up to 256 MiB of it)")
sys.exit(1 if $ERRORS + $STOPPED + $LOGGED or dup else 0)
PY
vigil_cleanup
trap - EXIT
