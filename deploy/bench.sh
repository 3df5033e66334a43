#!/usr/bin/env bash
# The standard benchmark: starts the fleet in release mode (through deploy/run.sh) on its own
# ports, databases and RabbitMQ vhost, hands it to `loadgen bench` and stops it. loadgen runs
# the phases (warmup, peak, complete, open80, overload, soak), samples CPU, memory, queues, outbox, table
# sizes, disk flushes and pressure stalls, checks the invariants and writes the summary, samples
# and charts into BENCH_OUT (`loadgen bench --help` says what each phase measures). This script
# only installs, starts and stops processes: the benchmark's own PostgreSQL cluster and RabbitMQ
# node, the fleet.
#
# Settings (defaults in brackets):
#   BENCH_WARMUP [10]  BENCH_DURATION [60]  BENCH_COMPLETE_DURATION [60] (0: no complete phase)
#   BENCH_STEADY_DURATION [600]  BENCH_CLIENTS [128]  BENCH_OPEN_FRACTION [0.8]
#   BENCH_SOAK_DURATION [1800] (0: no soak)  BENCH_SOAK_WINDOW [300]  seconds per soak window
#   BENCH_OPEN_RATE []  open80 and soak at this many orders/s instead of a share of the peak
#   BENCH_OVERLOAD_DURATION [60] (0: no overload phase)  BENCH_OVERLOAD_FACTOR [2]: the
#                       overload phase offers FACTOR times the peak's finished sagas/s, open
#                       loop, and checks admission control's targets (summary.txt, overload.txt)
#   BENCH_OVERLOAD_RATE []  the overload phase at this many orders/s instead
#   BENCH_CUSTOMERS [5000]  BENCH_BROKE_CUSTOMERS [200]  each phase's customers: thousands, so
#                       that per-customer rate limits (10/s by default) never bite
#   BENCH_PHASES []     only these of peak, complete, open80, overload, soak, e.g.
#                       "open80,soak" (the warm-up runs still; peak too when an open or the
#                       overload phase needs its rate, that is without BENCH_OPEN_RATE or
#                       BENCH_OVERLOAD_RATE)
#   BENCH_CALIBRATE [1]  15 s of pgbench before the fleet starts (0: none)
#   BENCH_PROFILE [0]    1: perf profiles of 20 s of peak and of open80 (perf-summary-PHASE.txt)
#   BENCH_STALL []       SERVICE:AT:FOR: freeze SERVICE AT s into open80 for FOR s (stall.txt)
#   BENCH_HALT_POLL_NS []  guest_halt_poll_ns for this run only (haltpoll cpuidle driver;
#                        restored at the end): a setting of the machine, not of the fleet
#   BENCH_PORT_BASE [3100]  orchestrator, payment, inventory, notification on BASE to BASE+3 (run.sh
#                           points the console at them);
#                           run.sh's mail catcher on BASE+25
#   BENCH_VHOST [saga-bench]  BENCH_DB_PREFIX [saga_bench_]
#   BENCH_PG_PORT [5433]  the benchmark's own PostgreSQL cluster: initdb's defaults (autovacuum
#                        on), loopback only, a fresh directory removed at the end
#   BENCH_PG_AUTOVACUUM [on]  off: the same cluster without autovacuum (an A/B of its cost)
#   BENCH_BROKER_PORT [5673]  the benchmark's own RabbitMQ node: AMQP there, management API on
#                        BENCH_BROKER_PORT + 10000
#   BENCH_RABBITMQ_WAL_BYTES [8388608]  that node's raft.wal_max_size_bytes: each rollover of the
#                        quorum queues' log holds every queue up for a moment, longer the larger
#                        the log (the default, 512 MiB, holds them for seconds)
#   BENCH_RABBITMQ_ERL_ARGS []  extra Erlang VM flags for that node (e.g. "+sbwt none")
#   BENCH_RABBITMQ_PORT, BENCH_RABBITMQ_API  use an already running node instead (guest/guest;
#                        no rollover marks then, as its data directory is not known)
#   BENCH_OTLP_SAMPLE [] trace export on at this sample ratio (e.g. 0.01), to an OTLP/HTTP
#                        sink on BENCH_OTLP_PORT [4319] that keeps only counts
#                        (deploy/observability/otlp-sink.py; requests and bytes in otlp-sink.txt)
#   BENCH_CONSOLE [0]    1: an open console all run long: what its overview page asks for
#                        (GET /api/console/overview every 5 s, with the operator token)
#   BENCH_OUT [target/bench/<run id>]  BENCH_START_TIMEOUT [1800] seconds to build and start
#   BENCH_LOADGEN_ARGS   extra loadgen arguments for every phase but complete
#   APP__AUTH__OPERATOR_TOKEN, APP__AUTH__JWT_SECRET [generated]  the fleet's credentials;
#                        exported to run.sh and to loadgen, which sends the operator token on
#                        seeding and checks and a JWT per customer on its orders
#   APP__*               passed to the services, as run.sh does. Retention is short for the
#                        whole run unless set here, so the soak reaches its steady state:
#                        APP__RETENTION__INBOX_WINDOW [5m] __PUBLISHED_OUTBOX [1m]
#                        __HISTORY [10m] __SCHEDULE ["*/10 * * * * *"]
# Fresh nodes keep other runs' and tests' data out of the measurement, and the machine's own
# PostgreSQL (whose CI settings turn autovacuum off) out of it altogether; the saga_* databases
# and the default vhost that run.sh and the tests use are never touched. Quick A/B examples:
#   BENCH_PHASES=peak,complete BENCH_CALIBRATE=0 ./deploy/bench.sh
#   BENCH_PHASES=overload BENCH_DURATION=30 BENCH_CALIBRATE=0 ./deploy/bench.sh
#   BENCH_PHASES=open80 BENCH_OPEN_RATE=800 BENCH_STEADY_DURATION=120 BENCH_PG_AUTOVACUUM=off ./deploy/bench.sh
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

PORT_BASE="${BENCH_PORT_BASE:-3100}"
VHOST="${BENCH_VHOST:-saga-bench}"
DB_PREFIX="${BENCH_DB_PREFIX:-saga_bench_}"
START_TIMEOUT="${BENCH_START_TIMEOUT:-1800}"
RUN_ID="b$(date +%s)"
OUT="${BENCH_OUT:-target/bench/$RUN_ID}"
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
SERVICES=(orchestrator payment inventory notification)
declare -A PORT=([orchestrator]=$PORT_BASE [payment]=$((PORT_BASE + 1)) [inventory]=$((PORT_BASE + 2))
    [notification]=$((PORT_BASE + 3)))
# The mail catcher run.sh starts for the notification service: the benchmark's accounts have no
# address, so only low-stock alerts reach it.
SMTP_PORT=$((PORT_BASE + 25))
declare -A SPID=()
RABBITMQ_PORT="${BENCH_BROKER_PORT:-5673}"
RABBITMQ_API="http://127.0.0.1:$((RABBITMQ_PORT + 10000))"
OWN_BROKER=1
if [ -n "${BENCH_RABBITMQ_PORT:-}" ]; then
    OWN_BROKER=0
    RABBITMQ_PORT="$BENCH_RABBITMQ_PORT"
    RABBITMQ_API="${BENCH_RABBITMQ_API:-$DEPLOY_RABBITMQ_API}"
fi
RABBITMQ_WAL_BYTES="${BENCH_RABBITMQ_WAL_BYTES:-8388608}"
PG_PORT="${BENCH_PG_PORT:-5433}"
PG_AUTOVACUUM="${BENCH_PG_AUTOVACUUM:-on}"
case $PG_AUTOVACUUM in on | off) ;; *) die "BENCH_PG_AUTOVACUUM must be on or off, not '$PG_AUTOVACUUM'" ;; esac
PG_URL="postgres://postgres:postgres@127.0.0.1:$PG_PORT/postgres"
# Short retention for the whole run, so that the soak reaches its steady state within it; the
# fleet reads these as any APP__* setting (a fleet without the pruner ignores them).
export APP__RETENTION__INBOX_WINDOW="${APP__RETENTION__INBOX_WINDOW:-5m}"
export APP__RETENTION__PUBLISHED_OUTBOX="${APP__RETENTION__PUBLISHED_OUTBOX:-1m}"
export APP__RETENTION__HISTORY="${APP__RETENTION__HISTORY:-10m}"
export APP__RETENTION__SCHEDULE="${APP__RETENTION__SCHEDULE:-*/10 * * * * *}"
AMQP_URL="amqp://$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD@127.0.0.1:$RABBITMQ_PORT/$(urlencode "$VHOST")"
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_NS="${BENCH_HALT_POLL_NS:-}"
HALT_POLL_BEFORE=''
if [ -n "$HALT_POLL_NS" ]; then
    # No leading zeros: the kernel reads the value in base 0 (0200000 would be octal).
    [[ $HALT_POLL_NS =~ ^(0|[1-9][0-9]{0,8})$ ]] || die "BENCH_HALT_POLL_NS must be nanoseconds, not '$HALT_POLL_NS'"
    [ -w "$HALT_POLL" ] || die "BENCH_HALT_POLL_NS: $HALT_POLL is not writable (no haltpoll driver, or not root)"
fi
mkdir -p "$OUT"

SINK_PID=''
if [ -n "${BENCH_OTLP_SAMPLE:-}" ]; then
    OTLP_PORT="${BENCH_OTLP_PORT:-4319}"
    ! port_open 127.0.0.1 "$OTLP_PORT" || die "port $OTLP_PORT is in use; set BENCH_OTLP_PORT"
    python3 deploy/observability/otlp-sink.py "$OTLP_PORT" "$OUT/otlp-sink.txt" &
    SINK_PID=$!
    export APP__TELEMETRY__OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT"
    export APP__TELEMETRY__SAMPLE_RATIO="$BENCH_OTLP_SAMPLE"
    log "trace export on: sample ratio $BENCH_OTLP_SAMPLE, to the sink on 127.0.0.1:$OTLP_PORT"
fi

RUN_PID=''
CONSOLE_PID=''
BROKER_PID=''
BROKER_DIR=''
PG_DIR=''
PG_CTL=''
cleanup() {
    trap '' INT TERM
    # The machine's setting first: what follows may wait a minute (the broker's stop) or fail.
    [ -z "$HALT_POLL_BEFORE" ] || echo "$HALT_POLL_BEFORE" >"$HALT_POLL" 2>/dev/null ||
        log "could not restore $HALT_POLL to $HALT_POLL_BEFORE"
    # A service loadgen froze (BENCH_STALL) would never see the SIGTERM that stops the fleet.
    for svc in "${!SPID[@]}"; do kill -CONT "${SPID[$svc]}" 2>/dev/null || true; done
    if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
        # run.sh started with & from a script ignores SIGINT; SIGTERM makes it stop the fleet.
        log "stopping the fleet (SIGTERM to run.sh, pid $RUN_PID)"
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    stop_broker
    stop_private_postgres
    [ -z "$SINK_PID" ] || kill "$SINK_PID" 2>/dev/null || true
    [ -z "$CONSOLE_PID" ] || kill "$CONSOLE_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Pid of the process listening on 127.0.0.1:PORT (the broker, the postmaster).
listener_pid() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

rabbit_api() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" "$@"
}

# The benchmark's own RabbitMQ node: the installed server on a fresh directory, as the rabbitmq
# user when run as root, with the management plugin and the write-ahead-log size above.
start_broker() {
    local server=/usr/lib/rabbitmq/bin/rabbitmq-server mgmt=$((RABBITMQ_PORT + 10000)) port
    [ -x "$server" ] || die "$server is missing (is rabbitmq-server installed?); or set BENCH_RABBITMQ_PORT"
    for port in "$RABBITMQ_PORT" "$mgmt" $((RABBITMQ_PORT + 20000)); do
        ! port_open 127.0.0.1 "$port" || die "port $port is in use; set BENCH_BROKER_PORT"
    done
    BROKER_DIR="$(mktemp -d /tmp/saga-bench-rabbitmq.XXXXXX)"
    # Everything the node writes stays in its directory (the rabbitmq user may not reach the
    # results' one); its log is copied to the results when it stops.
    mkdir -p "$BROKER_DIR/mnesia" "$BROKER_DIR/log" "$OUT/rabbitmq"
    printf '%s\n' "listeners.tcp.local = 127.0.0.1:$RABBITMQ_PORT" \
        "management.tcp.ip = 127.0.0.1" "management.tcp.port = $mgmt" \
        "raft.wal_max_size_bytes = $RABBITMQ_WAL_BYTES" >"$BROKER_DIR/rabbitmq.conf"
    echo '[rabbitmq_management].' >"$BROKER_DIR/enabled_plugins"
    # Erlang refuses a cookie others can read.
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$BROKER_DIR/.erlang.cookie"
    chmod 400 "$BROKER_DIR/.erlang.cookie"
    log "starting the benchmark's RabbitMQ node on 127.0.0.1:$RABBITMQ_PORT (raft.wal_max_size_bytes = $RABBITMQ_WAL_BYTES; its log goes to $OUT/rabbitmq/)"
    start_rabbit_node "$RUN_ID@localhost" "$BROKER_DIR" "$BROKER_DIR" "$RABBITMQ_PORT" \
        "$((RABBITMQ_PORT + 20000))" "$OUT/rabbitmq/start.log" "${BENCH_RABBITMQ_ERL_ARGS:-}"
    BROKER_PID=$RABBIT_NODE_PID
    local deadline=$((SECONDS + 120))
    until [ "$(rabbit_api "$RABBITMQ_API/api/overview")" = 200 ]; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$OUT/rabbitmq/start.log" >&2 || true
            die "the benchmark's RabbitMQ node did not come up (see $OUT/rabbitmq/start.log)"
        fi
        sleep 1
    done
}

stop_broker() {
    if [ -z "$BROKER_PID" ]; then
        [ -z "$BROKER_DIR" ] || rm -rf "$BROKER_DIR"
        return 0
    fi
    local beam waited=0
    beam="$(listener_pid "$RABBITMQ_PORT")"
    log "stopping the benchmark's RabbitMQ node"
    # SIGTERM to beam.smp is a clean shutdown; the launcher (and runuser) exit with it. The
    # node's directory goes only once beam.smp is gone (it writes there while it stops).
    [ -z "$beam" ] || kill -TERM "$beam" 2>/dev/null || true
    while [ -n "$beam" ] && kill -0 "$beam" 2>/dev/null && [ "$waited" -lt 600 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    cp -r "$BROKER_DIR/log/." "$OUT/rabbitmq/" 2>/dev/null || true
    rm -rf "$BROKER_DIR"
}

# Runs a command as the postgres OS user when we are root (initdb and the server refuse root).
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The benchmark's own PostgreSQL cluster: initdb of the newest installed server into a fresh
# directory, its defaults (autovacuum on, as users run it) but for what must differ: its port,
# loopback only, the socket in its directory, scram passwords over TCP (postgres/postgres).
# BENCH_PG_AUTOVACUUM=off turns autovacuum off, for an A/B of what vacuum costs.
start_private_postgres() {
    local bin
    bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)"
    [ -n "$bin" ] && [ -x "$bin/initdb" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    PG_CTL="$bin/pg_ctl"
    ! port_open 127.0.0.1 "$PG_PORT" || die "port $PG_PORT is in use; set BENCH_PG_PORT"
    PG_DIR="$(mktemp -d /tmp/saga-bench-postgres.XXXXXX)"
    mkdir -p "$OUT/postgres"
    echo postgres >"$PG_DIR/pwfile"
    [ "$(id -u)" != 0 ] || chown -R postgres:postgres "$PG_DIR"
    log "initdb of the benchmark's PostgreSQL cluster in $PG_DIR ($bin)"
    (cd "$PG_DIR" && as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8) >"$OUT/postgres/initdb.log" 2>&1 ||
        die "initdb failed (see $OUT/postgres/initdb.log)"
    printf '%s\n' "# deploy/bench.sh: what differs from initdb's defaults" "port = $PG_PORT" \
        "listen_addresses = '127.0.0.1'" "unix_socket_directories = '$PG_DIR'" \
        "autovacuum = $PG_AUTOVACUUM" >>"$PG_DIR/data/postgresql.conf"
    log "starting the benchmark's PostgreSQL on 127.0.0.1:$PG_PORT (autovacuum $PG_AUTOVACUUM; its log goes to $OUT/postgres/)"
    (cd "$PG_DIR" && as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgresql.log" -w -t 120 start) \
        >"$OUT/postgres/start.log" 2>&1 || {
        cp "$PG_DIR/postgresql.log" "$OUT/postgres/" 2>/dev/null || true
        die "the benchmark's PostgreSQL did not start (see $OUT/postgres/)"
    }
    psql "$PG_URL" -Atqc 'select 1' >/dev/null || die "cannot connect to $PG_URL"
}

stop_private_postgres() {
    [ -n "$PG_DIR" ] || return 0
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        log "stopping the benchmark's PostgreSQL"
        (cd "$PG_DIR" && as_pg_user "$PG_CTL" -D "$PG_DIR/data" -m fast -w -t 120 stop) >&2 ||
            log "pg_ctl stop failed"
    fi
    cp "$PG_DIR/postgresql.log" "$OUT/postgres/" 2>/dev/null || true
    rm -rf "$PG_DIR"
    PG_DIR=''
}

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${PORT[$1]}/health/ready")" = 200 ]
}

ensure_rust
# ss and pgrep: a minimal Debian root has neither.
apt_install iproute2 procps
# The server's binaries for the benchmark's cluster, and psql and pgbench; run.sh still checks
# the machine's own server (deploy/lib.sh), which the benchmark does not use.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
ensure_rabbitmq
if [ "${BENCH_PROFILE:-0}" = 1 ] && ! command -v perf >/dev/null 2>&1; then
    apt_install linux-perf || log "BENCH_PROFILE=1 but perf could not be installed; no profile"
fi
[ "$OWN_BROKER" = 0 ] || start_broker
start_private_postgres
for svc in "${SERVICES[@]}"; do
    ! port_open 127.0.0.1 "${PORT[$svc]}" || die "port ${PORT[$svc]} is in use (another bench.sh?); set BENCH_PORT_BASE"
done

# A fresh state per run: the cluster is new; an empty vhost, owned by the benchmark alone.
for svc in "${SERVICES[@]}"; do
    log "creating database ${DB_PREFIX}${svc}"
    psql "$PG_URL" -v ON_ERROR_STOP=1 -Atq -v db="${DB_PREFIX}${svc}" \
        <<<"SELECT format('CREATE DATABASE %I', :'db') \gexec" >&2 || die "could not create ${DB_PREFIX}${svc}"
done
log "recreating RabbitMQ vhost $VHOST"
vhost_api="$RABBITMQ_API/api/vhosts/$(urlencode "$VHOST")"
code="$(rabbit_api -X DELETE "$vhost_api")" || true
case $code in 204 | 404) ;; *) die "could not delete vhost $VHOST (HTTP $code)" ;; esac
code="$(rabbit_api -X PUT "$vhost_api")" || true
case $code in 201 | 204) ;; *) die "could not create vhost $VHOST (HTTP $code)" ;; esac
code="$(rabbit_api -X PUT -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' \
    "$RABBITMQ_API/api/permissions/$(urlencode "$VHOST")/$DEPLOY_RABBITMQ_USER")" || true
case $code in 201 | 204) ;; *) die "could not grant $DEPLOY_RABBITMQ_USER on vhost $VHOST (HTTP $code)" ;; esac

# The fleet's credentials: the caller's, or fresh ones. Exported, so run.sh hands them to the
# services and loadgen (and each phase's child loadgen) finds them where it looks by default;
# never on a command line.
APP__AUTH__OPERATOR_TOKEN="${APP__AUTH__OPERATOR_TOKEN:-$(random_secret operator)}"
APP__AUTH__JWT_SECRET="${APP__AUTH__JWT_SECRET:-$(random_secret jwt)}"
export APP__AUTH__OPERATOR_TOKEN APP__AUTH__JWT_SECRET

log "building the load generator (release)"
cargo build --release -p loadgen
[ -x "$BIN_DIR/loadgen" ] || die "$BIN_DIR/loadgen was not built"

log "starting the fleet with deploy/run.sh (output in $OUT/run.log)"
ORCHESTRATOR_PORT=${PORT[orchestrator]} PAYMENT_PORT=${PORT[payment]} INVENTORY_PORT=${PORT[inventory]} \
    NOTIFICATION_PORT=${PORT[notification]} SMTP_PORT=$SMTP_PORT \
    ORCHESTRATOR_DATABASE_URL="${PG_URL%/*}/${DB_PREFIX}orchestrator" \
    PAYMENT_DATABASE_URL="${PG_URL%/*}/${DB_PREFIX}payment" \
    INVENTORY_DATABASE_URL="${PG_URL%/*}/${DB_PREFIX}inventory" \
    NOTIFICATION_DATABASE_URL="${PG_URL%/*}/${DB_PREFIX}notification" \
    APP__AMQP__URL="$AMQP_URL" ./deploy/run.sh </dev/null >"$OUT/run.log" 2>&1 &
RUN_PID=$!
deadline=$((SECONDS + START_TIMEOUT))
until ready orchestrator && ready payment && ready inventory && ready notification; do
    if ! kill -0 "$RUN_PID" 2>/dev/null; then
        tail -n 30 "$OUT/run.log" >&2 || true
        die "deploy/run.sh exited before the fleet was ready (see $OUT/run.log)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "the fleet was not ready after ${START_TIMEOUT}s (see $OUT/run.log)"
    sleep 1
done
# Ready answers before run.sh has written every pid file only if it crashed; read them now.
PIDS=''
for svc in "${SERVICES[@]}"; do
    SPID[$svc]="$(cat "$DEPLOY_RUN_DIR/$svc.pid")" || die "no pid file for $svc"
    PIDS+="$svc=${SPID[$svc]},"
done
RABBIT_PID="$(listener_pid "$RABBITMQ_PORT")"
PG_PID="$(head -n1 "$PG_DIR/data/postmaster.pid" 2>/dev/null || true)"
[ -n "$RABBIT_PID" ] && [ -n "$PG_PID" ] || die "cannot find the broker or postmaster pid (ss -ltnp)"
log "fleet ready: orchestrator ${SPID[orchestrator]}, payment ${SPID[payment]}, inventory ${SPID[inventory]}, notification ${SPID[notification]}, beam.smp $RABBIT_PID, postmaster $PG_PID"

ARGS=(--run-id "$RUN_ID" --out "$OUT" --amqp "$AMQP_URL" --rabbitmq-api "$RABBITMQ_API"
    --pg "$PG_URL" --db-prefix "$DB_PREFIX" --pids "${PIDS}rabbitmq=$RABBIT_PID,postgres=$PG_PID"
    --orchestrator "http://127.0.0.1:${PORT[orchestrator]}" --payment "http://127.0.0.1:${PORT[payment]}"
    --inventory "http://127.0.0.1:${PORT[inventory]}"
    --warmup "${BENCH_WARMUP:-10}" --duration "${BENCH_DURATION:-60}"
    --complete-duration "${BENCH_COMPLETE_DURATION:-60}" --steady-duration "${BENCH_STEADY_DURATION:-600}"
    --clients "${BENCH_CLIENTS:-128}" --open-fraction "${BENCH_OPEN_FRACTION:-0.8}"
    --soak-duration "${BENCH_SOAK_DURATION:-1800}" --soak-window "${BENCH_SOAK_WINDOW:-300}"
    --overload-duration "${BENCH_OVERLOAD_DURATION:-60}" --overload-factor "${BENCH_OVERLOAD_FACTOR:-2}"
    --customers "${BENCH_CUSTOMERS:-5000}" --broke-customers "${BENCH_BROKE_CUSTOMERS:-200}"
    --inbox-window "$APP__RETENTION__INBOX_WINDOW" --published-outbox "$APP__RETENTION__PUBLISHED_OUTBOX"
    --history "$APP__RETENTION__HISTORY"
    --note "postgresql: the benchmark's own cluster on port $PG_PORT, initdb's defaults, autovacuum $PG_AUTOVACUUM"
    --note "retention (APP__RETENTION__*), the whole run: inbox_window $APP__RETENTION__INBOX_WINDOW, published_outbox $APP__RETENTION__PUBLISHED_OUTBOX, history $APP__RETENTION__HISTORY, schedule '$APP__RETENTION__SCHEDULE'")
[ -z "${BENCH_PHASES:-}" ] || ARGS+=(--phases "$BENCH_PHASES")
[ -z "${BENCH_OPEN_RATE:-}" ] || ARGS+=(--open-rate "$BENCH_OPEN_RATE")
[ -z "${BENCH_OVERLOAD_RATE:-}" ] || ARGS+=(--overload-rate "$BENCH_OVERLOAD_RATE")
[ -z "${BENCH_STALL:-}" ] || ARGS+=(--stall "$BENCH_STALL")
[ "${BENCH_PROFILE:-0}" != 1 ] || ARGS+=(--profile)
[ "${BENCH_CALIBRATE:-1}" = 0 ] || ARGS+=(--calibrate)
if [ "$OWN_BROKER" = 1 ]; then
    ARGS+=(--broker-dir "$BROKER_DIR" --note "rabbitmq node: the benchmark's own on port $RABBITMQ_PORT, raft.wal_max_size_bytes = $RABBITMQ_WAL_BYTES")
else
    ARGS+=(--note "rabbitmq node: the one on port $RABBITMQ_PORT (BENCH_RABBITMQ_PORT), its own settings")
fi
if [ -n "$HALT_POLL_NS" ]; then
    HALT_POLL_BEFORE="$(cat "$HALT_POLL")"
    echo "$HALT_POLL_NS" >"$HALT_POLL" || die "could not write $HALT_POLL"
    ARGS+=(--note "guest_halt_poll_ns set for this run by BENCH_HALT_POLL_NS (the machine's: $HALT_POLL_BEFORE)")
fi
if [ "${BENCH_CONSOLE:-0}" = 1 ]; then
    # The page refreshes its overview every 5 s; a paced loop, not a wait on a condition.
    # The token goes to curl in a file (mode 600), never on its command line.
    (umask 077 && printf 'Authorization: Bearer %s\n' "$APP__AUTH__OPERATOR_TOKEN" >"$OUT/console-auth")
    (
        while :; do
            curl -s -o /dev/null -H "@$OUT/console-auth" \
                "http://127.0.0.1:${PORT[orchestrator]}/api/console/overview" || true
            sleep 5
        done
    ) &
    CONSOLE_PID=$!
    ARGS+=(--note "console: GET /api/console/overview every 5 s all run long (BENCH_CONSOLE=1)")
fi
read -r -a EXTRA_ARGS <<<"${BENCH_LOADGEN_ARGS:-}"
"$BIN_DIR/loadgen" bench "${ARGS[@]}" -- "${EXTRA_ARGS[@]}"
