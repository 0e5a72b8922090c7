#!/usr/bin/env bash
# System benchmark (issue 3): real binaries over mutual TLS on loopback.
#
#   deploy/bench/system.sh            43 forces x 7000 staff, 1,000,000 national records
#   FORCES=3 STAFF=2000 NATIONAL=100000 deploy/bench/system.sh    a smaller run
#   CAPACITY=0 deploy/bench/system.sh    without sizing the indexes up front
#   DENSE=1 FORCES=1 STAFF=5000 NATIONAL=5000 deploy/bench/system.sh
#       a benchmark-shaped set instead (every member of staff with one
#       record, heavy noise, no NI numbers in national data, no address
#       history in the rosters), with a policy
#       trained on it first (`eval --write-policy`), as an operator would
#       calibrate: the running system then weighs the record's side
#
#
# Measures: sync and feed times, token ingest (end to end, and the CPU
# seconds the coordinator and the feeding node used for it), time until every
# disclosure is in the right inbox, coordinator memory, the latency from
# the coordinator accepting a delta to the disclosure stored in the force's
# inbox (p50/p99 over many small deltas), and a restart at that size.
# FEED_ONLY=1 stops after the national feed and prints its time and the CPU
# seconds each process used (for A/B runs of two builds: VIGIL_BIN=<dir>),
# and with REFEED=1 also feeds the same extract again (nothing changed);
# FEED_WRAP runs the feeding node under a command, e.g.
# FEED_WRAP="perf record -F 299 --call-graph dwarf -o /tmp/node.perf" (its
# CPU then counts in the node's). VIGIL_SCHEME=2 measures the shared-key
# scheme, VIGIL_STORE=postgres the PostgreSQL store in a private cluster
# (lib.sh), and with VIGIL_STANDBY=1
# also a takeover by a standby coordinator after a SIGKILL. Prints a Markdown
# block for docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
FORCES_N=${FORCES:-43}
STAFF=${STAFF:-7000}
NATIONAL=${NATIONAL:-1000000}
DELTAS=${DELTAS:-250}
OUT=${OUT:-/tmp/vigil-bench}
TD=vigil.bench
ORIGIN=vigil.bench/audit
SERVER=coordinator.vigil.bench
# Everything runs on this one machine: the feeding node on one worker
# thread (plus its reader), so that the coordinator, the bound here, keeps a
# core (docs/BENCHMARKS.md: two workers made the 1M feed 20% slower).
export VIGIL_FEED_WORKERS=${VIGIL_FEED_WORKERS:-1}
source "$ROOT/deploy/local/lib.sh"
vigil_binaries
trap vigil_cleanup EXIT
t() { date +%s.%N; }
since() { python3 -c "print(f'{$(t) - $1:.1f}')"; }

ALL=(met gmp wmp wyp mer tvp ken ham ess lan nbr syp dc avs sus sur her swp wmc cle hum not der lei stf nor che lin nfk suf cam bed nyp dur cum glo wil dor war nwp gwe dp col)
FORCES=("${ALL[@]:0:$FORCES_N}")
# Size the indexes as an operator would ([capacity] in coordinator.toml):
# about 26 tokens per national record and per member of staff (match-key
# scheme 2). Set CAPACITY=0 to measure with growing indexes.
if [ "${CAPACITY:-1}" != 0 ]; then
  export CAPACITY_NATIONAL=$((NATIONAL * 28)) CAPACITY_ROSTER=$((FORCES_N * STAFF * 28))
fi
vigil_setup "${FORCES[@]}"
T=$(t)
if [ "${DENSE:-}" = 1 ]; then
  SET="synth seed 5, heavy noise, one record each, policy trained on the set"
  "$LAB" synth --out "$OUT/data" --seed 5 --forces "$FORCES_N" --staff-per-force "$STAFF" --national "$NATIONAL" --overlap 1.0 --hard-negatives 0 --noise heavy --nino-missing 1.0 --one-record --address-history 0 --delta $((DELTAS * 10)) >/dev/null
else
  SET="synth seed 7, 5% overlap, shipped policy untrained"
  "$LAB" synth --out "$OUT/data" --seed 7 --forces "$FORCES_N" --staff-per-force "$STAFF" --national "$NATIONAL" --overlap 0.05 --delta $((DELTAS * 10)) >/dev/null
fi
SYNTH=$(since "$T")
rosters=(); for f in "${FORCES[@]}"; do rosters+=("$OUT/data/roster-$f.csv"); done
POLICY=()
if [ "${DENSE:-}" = 1 ]; then
  "$LAB" eval --roster "${rosters[@]}" --extract "$OUT/data/extract.csv" --truth "$OUT/data/truth.csv" --write-policy "$OUT/trained-policy.toml" >/dev/null
  for c in "$OUT"/coordinator/coordinator*.toml; do printf 'policy = "%s"\n' "$OUT/trained-policy.toml" >> "$c"; done
  POLICY=(--policy "$OUT/trained-policy.toml")
fi
T=$(t)
# The coordinator spreads the policy's prior over the full extract from the
# first batch ([matching] national_records), and eval does the same, so the
# offline count predicts the inboxes exactly (the shipped policy untrained,
# or with DENSE=1 the policy trained above).
HELD=$(python3 -c "import json; print(json.load(open('$OUT/data/synth.json'))['national'])")
for c in "$OUT"/coordinator/coordinator*.toml; do printf 'national_records = %s\n' "$HELD" >> "$c"; done
"$LAB" eval --json --no-train "${POLICY[@]}" --national-records "$HELD" --roster "${rosters[@]}" --extract "$OUT/data/extract.csv" --truth "$OUT/data/truth.csv" > "$OUT/eval.json"
EXPECTED=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(v["confirmed"] for v in r["per_force"].values()))' "$OUT/eval.json")
QUALITY=$(python3 - "$OUT/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
per = r["national_tokens"] / max(r["records"], 1)
print(f"precision {r['precision']:.4f}, recall {r['recall']:.4f} ({r['true_positives']} true, {r['false_positives']} false), {per:.1f} tokens a record")
PY
)
EVAL=$(since "$T")
vigil_start "${FORCES[@]}"

metric() { # name (first sample, label filter optional)
  python3 - "$METRICS" "$1" <<'PY'
import sys, urllib.request
port, name = sys.argv[1], sys.argv[2]
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
for line in text.splitlines():
    if line.startswith(name + " ") or line.startswith(name + "{"):
        print(line.rsplit(" ", 1)[1]); break
else:
    print(0)
PY
}
inbox_total() {
  local n=0 f
  for f in "${FORCES[@]}"; do
    n=$((n + $("$NODE" inbox list --config "$OUT/nodes/$f/node.toml" --format csv | python3 -c 'import csv,sys; print(sum(1 for r in csv.DictReader(sys.stdin) if r["state"]=="active"))')))
  done
  echo $n
}

T=$(t)
for f in "${FORCES[@]}"; do "$NODE" sync --config "$OUT/nodes/$f/node.toml" --roster "$OUT/data/roster-$f.csv" >/dev/null; done
SYNC=$(since "$T")
ROSTER_TOKENS=$(metric 'vigil_tokens{side="roster"}')

# CPU seconds the coordinator has used so far (user + system, /proc).
coord_cpu() { python3 -c "import os,sys; f=open('/proc/$COORD_PID/stat').read().rsplit(')',1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))"; }
C0=$(coord_cpu)
T=$(t)
# Runs a command and prints the CPU seconds it used (its resource usage at
# exit): the feeding node's.
cpu_of() {
  python3 -c 'import resource,subprocess,sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_utime + r.ru_stime)' "$@"
}
NODE_CPU=$(cpu_of ${FEED_WRAP:-} "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/data/extract.csv")
FEED=$(since "$T")
APPLY=$(python3 -c "print($(coord_cpu) - $C0)")
if [ "${FEED_ONLY:-}" = 1 ]; then
  printf 'national feed %s s; CPU: coordinator %.1f s, feeding node %.1f s\n' "$FEED" "$APPLY" "$NODE_CPU"
  if [ "${REFEED:-}" = 1 ]; then
    # The same extract again (a source's daily full extract with nothing
    # changed): every row is read, keyed and looked up in the node's local
    # store, and nothing is sent.
    T=$(t)
    NODE_CPU=$(cpu_of "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --extract "$OUT/data/extract.csv")
    printf 'the same extract again %s s; CPU: feeding node %.1f s\n' "$(since "$T")" "$NODE_CPU"
  fi
  exit 0
fi
NAT_TOKENS=$(metric 'vigil_tokens{side="national"}')
T=$(t)
while [ "$(inbox_total)" -lt "$EXPECTED" ]; do sleep 1; done
DRAIN=$(since "$T")
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$COORD_PID/status")
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$COORD_PID/status")
if [ "$STORE" = postgres ]; then DISK=$(du -sk "$OUT/pg/data" | cut -f1); else DISK=$(du -sk "$OUT/coordinator/data" | cut -f1); fi

# Delta latency: many small deltas while every watcher is connected.
python3 - "$OUT/data/delta.csv" "$OUT/deltas" "$DELTAS" <<'PY'
import csv, os, sys
src, dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dir, exist_ok=True)
rows = list(csv.reader(open(src)))
head, body = rows[0], rows[1:]
size = max(1, len(body) // n)
for i in range(n):
    with open(f"{dir}/delta-{i:03}.csv", "w", newline="") as fh:
        w = csv.writer(fh); w.writerow(head); w.writerows(body[i * size:(i + 1) * size])
PY
for f in "${FORCES[@]}"; do "$NODE" inbox list --config "$OUT/nodes/$f/node.toml" --format json > "$OUT/nodes/$f/before.json"; done
for d in "$OUT"/deltas/delta-*.csv; do "$NODE" feed --config "$OUT/nodes/pnc/node.toml" --delta "$d" >/dev/null; done
sleep 2 # let the last deltas' disclosures land before reading the inboxes (a measurement, not readiness)
LAT=$(python3 "$ROOT/deploy/bench/latency.py" "$NODE" "$OUT" "${FORCES[@]}")
# Restart at this size: SIGTERM, start again, until the health check
# answers (the indexes rebuilt from the store; sized from it when
# [capacity] is not set).
T=$(t)
vigil_stop_coordinator
vigil_start_coordinator
RESTART=$(since "$T")
RESTART_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$COORD_PID/status")
# With a standby (VIGIL_STANDBY=1, PostgreSQL): start it, SIGKILL the active
# coordinator, and time until the standby has taken the lease, loaded the
# store and answers the health check.
TAKEOVER_ROW=""
if [ "${VIGIL_STANDBY:-}" = 1 ]; then
  vigil_start_standby
  T=$(t)
  kill -KILL "$COORD_PID"
  wait "$COORD_PID" 2>/dev/null || true
  "$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 900 >/dev/null
  TAKEOVER=$(since "$T")
  TAKEOVER_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$COORD_B_PID/status")
  TAKEOVER_ROW="| takeover: SIGKILL of the active coordinator, until the standby answers the health check / its peak RSS | ${TAKEOVER} s / $((TAKEOVER_HWM / 1024)) MiB |"
fi
python3 - <<PY
nat, ros, feed, apply_s, node_s = float("$NAT_TOKENS"), float("$ROSTER_TOKENS"), float("$FEED"), float("$APPLY"), float("$NODE_CPU")
print(f"""
| measure | value |
|---|---|
| set | $FORCES_N forces x $STAFF staff, $NATIONAL national records ($SET); index capacity ${CAPACITY_NATIONAL:-0} national, ${CAPACITY_ROSTER:-0} roster tokens |
| synth / offline eval | ${SYNTH} s / ${EVAL} s |
| roster sync, all forces | ${SYNC} s ({ros:.0f} roster tokens) |
| national feed, end to end (read, tokenise, seal, send, apply, commit) | {feed:.1f} s: {$NATIONAL / feed:,.0f} records/s, {nat / feed:,.0f} tokens/s |
| CPU used during the feed: coordinator (decode, check, pepper, apply, commit) / feeding node | {apply_s:.1f} s ({nat / apply_s if apply_s else 0:,.0f} tokens a CPU second) / {node_s:.1f} s |
| disclosures expected (offline eval) / time until all were in the inboxes after the feed | $EXPECTED / ${DRAIN} s |
| quality against the generator's truth | $QUALITY |
| coordinator memory after the run: peak / current RSS | $((HWM / 1024)) MiB / $((RSS / 1024)) MiB |
| coordinator store on disk ($STORE) | $((DISK / 1024)) MiB |
| delta latency, accept to inbox ($DELTAS deltas) | $LAT |
| coordinator restart: stop, start, healthy / peak RSS after it | ${RESTART} s / $((RESTART_HWM / 1024)) MiB |
$TAKEOVER_ROW
""")
PY
