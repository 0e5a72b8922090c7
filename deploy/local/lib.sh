# Shared by deploy/local/demo.sh and deploy/bench/system.sh: a whole Vigil
# deployment on loopback in one directory. Set BIN, OUT, TD, ORIGIN and
# SERVER, source this file, then call `vigil_setup FORCE...` and
# `vigil_start FORCE...`; `vigil_cleanup` stops everything with SIGTERM.
PIDS=()
vigil_cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# node_config ROLE CODE: certificate, local secret and node.toml
node_config() {
  local dir="$OUT/nodes/$2"
  mkdir -p "$dir"
  "$COORD" pki issue --dir "$OUT/pki" --trust-domain "$TD" --role "$1" --code "$2" --out "$dir/node" >/dev/null
  local keys=""
  if [ "$1" = witness ]; then
    "$NODE" witness keygen --name "witness.$TD/$2" --out "$dir/witness.key" >/dev/null
    keys=$'[witness]\nkey = "witness.key"\ninterval_seconds = 5'
  elif [ "$1" != auditor ]; then
    "$NODE" keygen --out "$dir" --only local >/dev/null
    keys=$'[keys]\nlinkage = "../../shared/linkage.key"\nlocal = "local.key"'
  fi
  cat > "$dir/node.toml" <<EOF
role = "$1"
code = "$2"
coordinator = "https://127.0.0.1:$PORT"
server_name = "$SERVER"
data_dir = "data"
[tls]
cert = "node.crt"
key = "node.key"
ca = "../../pki/ca.crt"
$keys
[audit]
origin = "$ORIGIN"
vkey = "../../coordinator/audit.vkey"
EOF
}

# vigil_setup FORCE...: CA, certificates, keys and configs for a coordinator,
# the forces, the source `pnc`, the auditor `ico` and the witness `w1` (an
# independent party cosigning checkpoints; `ico` audits only checkpoints it
# cosigned).
vigil_setup() {
  NODE=$BIN/vigil-node
  COORD=$BIN/vigil-coordinator
  LAB=$BIN/vigil-lab
  rm -rf "$OUT" && mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  "$COORD" pki init --dir "$OUT/pki" --name "Vigil local CA" >/dev/null
  mkdir -p "$OUT/coordinator" "$OUT/shared"
  "$COORD" pki issue --dir "$OUT/pki" --trust-domain "$TD" --role coordinator --dns "$SERVER" --out "$OUT/coordinator/coordinator" >/dev/null
  "$COORD" keygen --out "$OUT/coordinator" --origin "$ORIGIN" >/dev/null
  "$NODE" keygen --out "$OUT/shared" --only linkage >/dev/null
  PORT=$(free_port)
  METRICS=$(free_port)
  cat > "$OUT/coordinator/coordinator.toml" <<EOF
listen = "127.0.0.1:$PORT"
trust_domain = "$TD"
data_dir = "data"
[tls]
cert = "coordinator.crt"
key = "coordinator.key"
client_ca = "../pki/ca.crt"
[keys]
pepper = "pepper.key"
audit_signing_key = "audit.key"
[capacity]
national_tokens = ${CAPACITY_NATIONAL:-0}
roster_tokens = ${CAPACITY_ROSTER:-0}
[audit]
origin = "$ORIGIN"
[metrics]
listen = "127.0.0.1:$METRICS"
EOF
  local f
  for f in "$@"; do node_config force "$f"; done
  node_config source pnc
  node_config auditor ico
  node_config witness w1
  local wkey
  wkey=$(sed -n 's/^# verifier key: //p' "$OUT/nodes/w1/witness.key")
  printf '[[audit.witnesses]]\ncode = "w1"\nvkey = "%s"\n' "$wkey" >> "$OUT/coordinator/coordinator.toml"
  printf 'witnesses = ["%s"]\nwitness_quorum = 1\n' "$wkey" >> "$OUT/nodes/ico/node.toml"
}

# vigil_start_coordinator: the coordinator, waited for by health check.
vigil_start_coordinator() {
  "$COORD" serve --config "$OUT/coordinator/coordinator.toml" >>"$OUT/coordinator/stdout.log" 2>>"$OUT/coordinator/coordinator.log" &
  COORD_PID=$!
  PIDS+=("$COORD_PID")
  "$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 60 >/dev/null
}

# vigil_stop_coordinator: SIGTERM, and wait until it has stopped.
vigil_stop_coordinator() {
  kill -TERM "$COORD_PID"
  wait "$COORD_PID" || true
}

# vigil_start FORCE...: the coordinator, waited for by health check, then a
# watcher per force.
vigil_start() {
  vigil_start_coordinator
  local f
  for f in "$@"; do
    "$NODE" watch --config "$OUT/nodes/$f/node.toml" 2>"$OUT/nodes/$f/watch.log" &
    PIDS+=($!)
  done
}
