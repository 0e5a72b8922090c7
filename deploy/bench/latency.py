"""Delta latency from the inboxes: the disclosures each force received since
its `before.json` (an `inbox list --format json` taken before the deltas),
as "N disclosures: p50 X ms, p99 Y ms, max Z ms". Used by system.sh and
deltas.sh.

    python3 deploy/bench/latency.py NODE OUT FORCE...
"""
import json
import subprocess
import sys

node, out, forces = sys.argv[1], sys.argv[2], sys.argv[3:]
lat = []
for f in forces:
    before = {i["id"] for i in json.load(open(f"{out}/nodes/{f}/before.json"))}
    inbox = json.loads(subprocess.check_output(
        [node, "inbox", "list", "--format", "json", "--config", f"{out}/nodes/{f}/node.toml"]))
    lat += [i["latency_ms"] for i in inbox if i["id"] not in before]
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] if lat else 0
print(f"{len(lat)} disclosures: p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {lat[-1] if lat else 0} ms")
