# Shared by deploy/local/demo.sh and deploy/bench/system.sh: a whole Vigil
# deployment on loopback in one directory. Set BIN, OUT, TD, ORIGIN and
# SERVER, source this file, then call `vigil_setup FORCE...` and
# `vigil_start FORCE...`; `vigil_cleanup` stops everything with SIGTERM.
#
# VIGIL_SCHEME=3 (the default): the key service makes every token (token
# scheme 3; no node holds a linkage key). VIGIL_SCHEME=2: every node holds
# the shared linkage key (the scheme before the key service). STAFF and
# NATIONAL size the key service's allowances.
#
# VIGIL_STORE=postgres: the coordinator keeps its state in PostgreSQL, a
# private cluster in $OUT/pg (initdb, a free loopback port; PG_OPTS adds
# server settings), migrated with `vigil-coordinator migrate` and stopped
# by vigil_cleanup. The default is the embedded store.
#
# VIGIL_FEED_WORKERS: the source node's `[sync] feed_workers`.
#
# VIGIL_STANDBY=1 (with VIGIL_STORE=postgres): a second coordinator, `b`,
# with the same keys and database (coordinator/coordinator-b.toml, port
# $PORT_B, metrics $METRICS_B), started by vigil_start_standby; every node
# is given both addresses.
SCHEME=${VIGIL_SCHEME:-3}
STORE=${VIGIL_STORE:-redb}
PIDS=()
vigil_cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  if [ -n "${PG_STARTED:-}" ]; then
    pg_run "$PG_BIN/pg_ctl" -D "$OUT/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    PG_STARTED=
  fi
}

# PostgreSQL refuses to run as root: as root its commands run as `postgres`.
pg_run() {
  if [ "$(id -u)" = 0 ]; then (cd "$OUT/pg" && runuser -u postgres -- "$@"); else (cd "$OUT/pg" && "$@"); fi
}

# pg_setup: a private cluster with an empty database `vigil`, trust
# authentication for the `vigil` role on loopback only.
pg_setup() {
  if command -v initdb >/dev/null 2>&1; then
    PG_BIN=$(dirname "$(readlink -f "$(command -v initdb)")")
  else
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
  [ -x "$PG_BIN/initdb" ] || { echo "VIGIL_STORE=postgres needs PostgreSQL's server binaries (apt-get install postgresql)" >&2; return 1; }
  PG_PORT=$(free_port)
  mkdir -p "$OUT/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$OUT/pg"; fi
  pg_run "$PG_BIN/initdb" -U vigil --auth=trust -E UTF8 --no-locale -D "$OUT/pg/data" >/dev/null
  pg_run "$PG_BIN/pg_ctl" -w -t 120 -D "$OUT/pg/data" -l "$OUT/pg/server.log" \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' ${PG_OPTS:-}" start >/dev/null
  PG_STARTED=1
  pg_run "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U vigil vigil
}

# vigil_binaries: BIN is $VIGIL_BIN, or this checkout's release binaries,
# built now.
vigil_binaries() {
  if [ -n "${VIGIL_BIN:-}" ]; then
    BIN=$VIGIL_BIN
  else
    echo "building release binaries"
    (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && cargo build --release --bins --quiet)
    BIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/release
  fi
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
    if [ "$SCHEME" = 3 ]; then
      keys=$(printf '[keys]\nlocal = "local.key"\n[keyserver]\naddress = "https://127.0.0.1:%s"\nserver_name = "keyserver.%s"\nepoch = 1\npublic_key = "%s"' "$KS_PORT" "$TD" "$KS_PUBLIC")
    else
      keys=$'[keys]\nlinkage = "../../shared/linkage.key"\nlocal = "local.key"'
    fi
  fi
  local addrs="\"https://127.0.0.1:$PORT\""
  [ -n "${PORT_B:-}" ] && addrs="[\"https://127.0.0.1:$PORT\", \"https://127.0.0.1:$PORT_B\"]"
  local sync=""
  [ "$1" = source ] && [ -n "${VIGIL_FEED_WORKERS:-}" ] && sync=$(printf '[sync]\nfeed_workers = %s' "$VIGIL_FEED_WORKERS")
  cat > "$dir/node.toml" <<EOF
role = "$1"
code = "$2"
coordinator = $addrs
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
$sync
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
  PORT=$(free_port)
  METRICS=$(free_port)
  PORT_B= METRICS_B=
  if [ -n "${VIGIL_STANDBY:-}" ]; then
    [ "$STORE" = postgres ] || { echo "VIGIL_STANDBY needs VIGIL_STORE=postgres (coordinators share the database)" >&2; return 1; }
    PORT_B=$(free_port)
    METRICS_B=$(free_port)
  fi
  if [ "$SCHEME" = 3 ]; then
    keyserver_setup "$@"
  else
    "$NODE" keygen --out "$OUT/shared" --only linkage >/dev/null
  fi
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
  if [ "$STORE" = postgres ]; then
    pg_setup
    printf '[store]\nbackend = "postgres"\nhost = "127.0.0.1"\nport = %s\ndbname = "vigil"\nuser = "vigil"\n' "$PG_PORT" >> "$OUT/coordinator/coordinator.toml"
  fi
  local f
  for f in "$@"; do node_config force "$f"; done
  node_config source pnc
  node_config auditor ico
  node_config witness w1
  local wkey
  wkey=$(sed -n 's/^# verifier key: //p' "$OUT/nodes/w1/witness.key")
  printf '[[audit.witnesses]]\ncode = "w1"\nvkey = "%s"\n' "$wkey" >> "$OUT/coordinator/coordinator.toml"
  printf 'witnesses = ["%s"]\nwitness_quorum = 1\n' "$wkey" >> "$OUT/nodes/ico/node.toml"
  # Last, so that scripts can append more [matching] keys.
  printf '[matching]\nscheme = %s\n' "$SCHEME" >> "$OUT/coordinator/coordinator.toml"
  if [ "$STORE" = postgres ]; then
    "$COORD" migrate --config "$OUT/coordinator/coordinator.toml" >/dev/null
  fi
  if [ -n "$PORT_B" ]; then
    sed -e "s/^listen = \"127.0.0.1:$PORT\"/listen = \"127.0.0.1:$PORT_B\"/" \
        -e "s/^listen = \"127.0.0.1:$METRICS\"/listen = \"127.0.0.1:$METRICS_B\"/" \
        -e 's/^data_dir = "data"/data_dir = "data-b"/' \
        "$OUT/coordinator/coordinator.toml" > "$OUT/coordinator/coordinator-b.toml"
  fi
}

# keyserver_setup FORCE...: the key service (run in production by a party
# other than the Home Office): its certificate, seed and log keys, config
# with each force's headcount, and `ico-ks`, an auditor of its own log.
keyserver_setup() {
  KS=$BIN/vigil-keyserver
  KS_PORT=$(free_port)
  local dir="$OUT/keyserver" f
  mkdir -p "$dir"
  "$COORD" pki issue --dir "$OUT/pki" --trust-domain "$TD" --role keyserver --dns "keyserver.$TD" --out "$dir/keyserver" >/dev/null
  "$KS" keygen --out "$dir" --origin "$TD/keyserver" >/dev/null
  {
    printf 'listen = "127.0.0.1:%s"\ntrust_domain = "%s"\ndata_dir = "data"\n' "$KS_PORT" "$TD"
    printf '[tls]\ncert = "keyserver.crt"\nkey = "keyserver.key"\nclient_ca = "../pki/ca.crt"\n'
    printf '[key]\nseed = "seed.key"\nepoch = 1\n'
    printf '[audit]\norigin = "%s/keyserver"\nsigning_key = "log.key"\n' "$TD"
    printf '[quota]\nevaluations_per_subject = 64\nheadcount_multiple = 1.5\nforce_daily = 50000\nsource_daily = 5000000\n'
    printf '[headcount]\n'
    for f in "$@"; do printf '%s = %s\n' "$f" "${STAFF:-3000}"; done
    printf '[sources]\npnc = %s\n' "$(( ${NATIONAL:-100000} * 64 ))"
  } > "$dir/keyserver.toml"
  KS_PUBLIC=$("$KS" public-key --config "$dir/keyserver.toml")
  local ks_dir="$OUT/nodes/ico-ks"
  mkdir -p "$ks_dir"
  "$COORD" pki issue --dir "$OUT/pki" --trust-domain "$TD" --role auditor --code ico-ks --out "$ks_dir/node" >/dev/null
  cat > "$ks_dir/node.toml" <<EOF
role = "auditor"
code = "ico-ks"
coordinator = "https://127.0.0.1:$KS_PORT"
server_name = "keyserver.$TD"
server_role = "keyserver"
data_dir = "data"
[tls]
cert = "node.crt"
key = "node.key"
ca = "../../pki/ca.crt"
[audit]
origin = "$TD/keyserver"
vkey = "../../keyserver/log.vkey"
EOF
}

# vigil_start_keyserver: the key service, waited for until it listens.
vigil_start_keyserver() {
  [ "$SCHEME" = 3 ] || return 0
  "$KS" serve --config "$OUT/keyserver/keyserver.toml" >"$OUT/keyserver/stdout.log" 2>"$OUT/keyserver/keyserver.log" &
  PIDS+=($!)
  local i
  for i in $(seq 1 600); do
    grep -q '^listening on' "$OUT/keyserver/stdout.log" 2>/dev/null && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$OUT/keyserver/keyserver.log" >&2; return 1; }
    sleep 0.1
  done
  echo "the key service did not start" >&2
  return 1
}

# vigil_start_coordinator: the coordinator, waited for by health check.
vigil_start_coordinator() {
  "$COORD" serve --config "$OUT/coordinator/coordinator.toml" >>"$OUT/coordinator/stdout.log" 2>>"$OUT/coordinator/coordinator.log" &
  COORD_PID=$!
  PIDS+=("$COORD_PID")
  "$NODE" health --config "$OUT/nodes/ico/node.toml" --wait 900 >/dev/null
}

# vigil_start_standby: coordinator b; returns once its metrics say it is
# the standby (vigil_active 0).
vigil_start_standby() {
  "$COORD" serve --config "$OUT/coordinator/coordinator-b.toml" >>"$OUT/coordinator/stdout-b.log" 2>>"$OUT/coordinator/coordinator-b.log" &
  COORD_B_PID=$!
  PIDS+=("$COORD_B_PID")
  local i
  for i in $(seq 1 600); do
    [ "$(vigil_active "$METRICS_B")" = 0 ] && return 0
    kill -0 "$COORD_B_PID" 2>/dev/null || { cat "$OUT/coordinator/coordinator-b.log" >&2; return 1; }
    sleep 0.1
  done
  echo "coordinator b did not start" >&2
  return 1
}

# vigil_active METRICS_PORT: 1 if that coordinator is the active one, 0 if
# the standby, nothing if it does not answer.
vigil_active() {
  python3 - "$1" <<'PY' 2>/dev/null || true
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
for line in text.splitlines():
    if line.startswith("vigil_active "):
        print(int(float(line.split()[1])))
PY
}

# vigil_stop_coordinator: SIGTERM, and wait until it has stopped.
vigil_stop_coordinator() {
  kill -TERM "$COORD_PID"
  wait "$COORD_PID" || true
}

# vigil_start FORCE...: the coordinator, waited for by health check, then a
# watcher per force.
vigil_start() {
  vigil_start_keyserver
  vigil_start_coordinator
  local f
  for f in "$@"; do
    "$NODE" watch --config "$OUT/nodes/$f/node.toml" 2>"$OUT/nodes/$f/watch.log" &
    PIDS+=($!)
  done
}
