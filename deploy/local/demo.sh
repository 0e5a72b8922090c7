#!/usr/bin/env bash
# Vigil local demo: build, synthesise a data set, tokenise and match it
# offline, and print precision and recall against the synthetic truth.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${VIGIL_DEMO_OUT:-demo-out}
echo "== building release binaries"
cargo build --release --bins --quiet
rm -rf "$OUT" && mkdir -p "$OUT"
echo "== synthesising 3 forces x 3,000 staff and 100,000 national records in $OUT/data"
target/release/vigil-node synth --out "$OUT/data" --seed 1 --forces 3 --staff-per-force 3000 --national 100000 --overlap 0.05
echo "== offline evaluation with the default policy"
target/release/vigil-coordinator eval --roster "$OUT"/data/roster-*.csv --extract "$OUT/data/extract.csv" --truth "$OUT/data/truth.csv"
