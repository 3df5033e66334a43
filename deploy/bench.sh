#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: starts the fleet in release mode (through deploy/run.sh) on its
# own ports, databases and RabbitMQ vhost, runs the standard benchmark with deploy/loadgen, samples
# the CPU time and resident memory of every process involved, prints a table and stops the fleet.
#
# The standard benchmark:
#   1. warm-up:  closed loop, 32 clients, BENCH_WARMUP seconds (not reported);
#   2. peak:     closed loop, BENCH_CLIENTS clients, BENCH_DURATION seconds: the most the fleet
#                finishes per second when it always has work;
#   3. open80:   open loop at BENCH_OPEN_FRACTION of the peak's finished sagas/s, BENCH_DURATION
#                seconds: the latencies at a sustainable load (the issue's targets are there).
# Each phase seeds its own customers and products (ids prefixed with a per-run id) and checks the
# conservation invariants at its end; the databases and the vhost are created fresh per run.
#
# Settings (defaults in brackets):
#   BENCH_WARMUP [10]  BENCH_DURATION [60]  BENCH_CLIENTS [128]  BENCH_OPEN_FRACTION [0.8]
#   BENCH_PORT_BASE [3100]  orchestrator, payment, inventory on BASE, BASE+1, BASE+2
#   BENCH_VHOST [saga-bench]  BENCH_DB_PREFIX [saga_bench_]
#   BENCH_OUT [target/bench/<run id>]  raw JSON, SVG charts, samples and the summary
#   BENCH_START_TIMEOUT [1800] seconds for run.sh to build and start the fleet (the shared cargo
#                       target directory may be locked by other builds)
#   BENCH_LOADGEN_ARGS  extra arguments for every loadgen phase (e.g. "--declined 0.2")
#   APP__*              passed to the services, as run.sh does (e.g. APP__LOG_LEVEL=warn)
# Never touches the saga_* databases or the default vhost that run.sh and the tests use.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

WARMUP="${BENCH_WARMUP:-10}"
DURATION="${BENCH_DURATION:-60}"
CLIENTS="${BENCH_CLIENTS:-128}"
OPEN_FRACTION="${BENCH_OPEN_FRACTION:-0.8}"
PORT_BASE="${BENCH_PORT_BASE:-3100}"
VHOST="${BENCH_VHOST:-saga-bench}"
DB_PREFIX="${BENCH_DB_PREFIX:-saga_bench_}"
START_TIMEOUT="${BENCH_START_TIMEOUT:-1800}"
RUN_ID="b$(date +%s)"
OUT="${BENCH_OUT:-target/bench/$RUN_ID}"
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
read -r -a EXTRA_ARGS <<<"${BENCH_LOADGEN_ARGS:-}"
SERVICES=(orchestrator payment inventory)
declare -A PORT=([orchestrator]=$PORT_BASE [payment]=$((PORT_BASE + 1)) [inventory]=$((PORT_BASE + 2)))
declare -A SPID=()
F=() # set by stat_fields
CLK_TCK="$(getconf CLK_TCK)"
mkdir -p "$OUT"

# ---------------------------------------------------------------------------------------
# Process accounting from /proc (no sysstat needed)

# The helpers below read /proc with builtins only (read, no cat/awk per process): the sampler
# runs every second on a 2-core machine and must not become part of the load it measures.

# stat_fields PID: sets the array F to the fields of /proc/PID/stat after the command name
# (which may hold spaces), so F[0] is field 3 (state), F[1] the ppid, F[11] utime, F[12] stime,
# F[13] cutime, F[14] cstime. Fails when the process is gone.
stat_fields() {
    local s
    read -r s 2>/dev/null <"/proc/$1/stat" || return 1
    read -r -a F <<<"${s##*) }"
}

# cpu_ticks PID: user + system clock ticks of the process.
cpu_ticks() {
    if stat_fields "$1"; then echo $((F[11] + F[12])); else echo 0; fi
}

# Pid of the process listening on 127.0.0.1:PORT (the broker, the postmaster).
listener_pid() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

# PostgreSQL: the postmaster, its children alive now, and the CPU of children already reaped
# (cutime + cstime), so backends that came and went are counted too. "bench" counts only the
# backends connected to this benchmark's databases; "all" includes other engineers' tests.
pg_ticks() {
    local pm=$1 p all=0 bench=0 cmd
    stat_fields "$pm" || { echo "0 0"; return; }
    all=$((F[11] + F[12] + F[13] + F[14]))
    for p in $(pgrep -P "$pm"); do
        stat_fields "$p" || continue
        all=$((all + F[11] + F[12]))
        read -r -d "" cmd 2>/dev/null <"/proc/$p/cmdline" || true
        # A backend's title: "postgres: <user> <database> <client> <state>".
        if [[ $cmd == *" ${DB_PREFIX}"* ]]; then bench=$((bench + F[11] + F[12])); fi
    done
    echo "$all $bench"
}

# Busy and total ticks of the whole machine (everyone's load, ours included).
machine_ticks() {
    local user nice system idle iowait irq softirq steal
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    local busy=$((user + nice + system + irq + softirq + steal))
    echo "$busy $((busy + idle + iowait))"
}

# snapshot LOADGEN-PID: one "name ticks" line per accounted process group.
snapshot() {
    local svc pg m
    for svc in "${SERVICES[@]}"; do echo "$svc $(cpu_ticks "${SPID[$svc]}")"; done
    echo "rabbitmq $(cpu_ticks "$RABBIT_PID")"
    echo "loadgen $(cpu_ticks "$1")"
    read -r -a pg < <(pg_ticks "$PG_PID")
    echo "postgres_all ${pg[0]}"
    echo "postgres_bench ${pg[1]}"
    read -r -a m < <(machine_ticks)
    echo "machine_busy ${m[0]}"
    echo "machine_total ${m[1]}"
}

# rss_kb PID [FIELD]: VmRSS by default; RssAnon for PostgreSQL, whose shared buffers would
# otherwise be counted once per backend.
rss_kb() {
    local key value _unit want="${2:-VmRSS}:"
    while read -r key value _unit; do
        if [ "$key" = "$want" ]; then
            echo "$value"
            return
        fi
    done 2>/dev/null <"/proc/$1/status"
    echo 0
}

pg_rss_kb() {
    local p total
    total=$(rss_kb "$PG_PID" RssAnon)
    for p in $(pgrep -P "$PG_PID"); do
        total=$((total + $(rss_kb "$p" RssAnon)))
    done
    echo "$total"
}

# rss_sampler PHASE LOADGEN-PID: resident memory every second into $OUT/rss-PHASE.tsv until killed.
rss_sampler() {
    local phase=$1 loadgen=$2 svc
    while :; do
        {
            for svc in "${SERVICES[@]}"; do printf '%s\t%s\n' "$svc" "$(rss_kb "${SPID[$svc]}")"; done
            printf 'rabbitmq\t%s\n' "$(rss_kb "$RABBIT_PID")"
            printf 'postgres_anon\t%s\n' "$(pg_rss_kb)"
            printf 'loadgen\t%s\n' "$(rss_kb "$loadgen")"
        } >>"$OUT/rss-$phase.tsv"
        sleep 1
    done
}

# ---------------------------------------------------------------------------------------
# Fleet

RUN_PID=''
SAMPLER_PID=''
cleanup() {
    trap '' INT TERM
    [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
    if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
        # run.sh started with & from a script ignores SIGINT; SIGTERM makes it stop the fleet.
        log "stopping the fleet (SIGTERM to run.sh, pid $RUN_PID)"
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${PORT[$1]}/health/ready")" = 200 ]
}

rabbit_api() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" "$@"
}

ensure_rust
ensure_postgres
ensure_rabbitmq

for svc in "${SERVICES[@]}"; do
    ! port_open 127.0.0.1 "${PORT[$svc]}" || die "port ${PORT[$svc]} is in use (another bench.sh?); set BENCH_PORT_BASE"
done

# A fresh state per run: empty databases and an empty vhost, owned by the benchmark alone.
for svc in "${SERVICES[@]}"; do
    db="${DB_PREFIX}${svc}"
    log "recreating database $db"
    psql "$DEPLOY_PG_URL" -v ON_ERROR_STOP=1 -Atq -v db="$db" \
        <<<"SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec" >&2 ||
        die "could not drop $db"
done
ensure_databases "${DB_PREFIX}orchestrator" "${DB_PREFIX}payment" "${DB_PREFIX}inventory"
log "recreating RabbitMQ vhost $VHOST"
code="$(rabbit_api -X DELETE "$DEPLOY_RABBITMQ_API/api/vhosts/$(urlencode "$VHOST")")" || true
case $code in 204 | 404) ;; *) die "could not delete vhost $VHOST (HTTP $code)" ;; esac
code="$(rabbit_api -X PUT "$DEPLOY_RABBITMQ_API/api/vhosts/$(urlencode "$VHOST")")" || true
case $code in 201 | 204) ;; *) die "could not create vhost $VHOST (HTTP $code)" ;; esac
code="$(rabbit_api -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' \
    "$DEPLOY_RABBITMQ_API/api/permissions/$(urlencode "$VHOST")/$DEPLOY_RABBITMQ_USER")" || true
case $code in 201 | 204) ;; *) die "could not grant $DEPLOY_RABBITMQ_USER on vhost $VHOST (HTTP $code)" ;; esac

log "building the load generator (release)"
cargo build --release -p loadgen
[ -x "$BIN_DIR/loadgen" ] || die "$BIN_DIR/loadgen was not built"

log "starting the fleet with deploy/run.sh (output in $OUT/run.log)"
ORCHESTRATOR_PORT=${PORT[orchestrator]} PAYMENT_PORT=${PORT[payment]} INVENTORY_PORT=${PORT[inventory]} \
    ORCHESTRATOR_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}orchestrator" \
    PAYMENT_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}payment" \
    INVENTORY_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}inventory" \
    APP__AMQP__URL="${DEPLOY_AMQP_URL}/$(urlencode "$VHOST")" \
    ./deploy/run.sh </dev/null >"$OUT/run.log" 2>&1 &
RUN_PID=$!
deadline=$((SECONDS + START_TIMEOUT))
until ready orchestrator && ready payment && ready inventory; do
    if ! kill -0 "$RUN_PID" 2>/dev/null; then
        tail -n 30 "$OUT/run.log" >&2 || true
        die "deploy/run.sh exited before the fleet was ready (see $OUT/run.log)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "the fleet was not ready after ${START_TIMEOUT}s (see $OUT/run.log)"
    sleep 1
done
# Ready answers before run.sh has written every pid file only if it crashed; read them now.
for svc in "${SERVICES[@]}"; do
    SPID[$svc]="$(cat "$DEPLOY_RUN_DIR/$svc.pid")" || die "no pid file for $svc"
done
RABBIT_PID="$(listener_pid 5672)"
PG_PID="$(listener_pid 5432)"
if [ -z "$RABBIT_PID" ] || [ -z "$PG_PID" ]; then
    die "cannot find the broker or postmaster pid (ss -ltnp)"
fi
log "fleet ready: orchestrator ${SPID[orchestrator]}, payment ${SPID[payment]}, inventory ${SPID[inventory]}, beam.smp $RABBIT_PID, postmaster $PG_PID"

{
    echo "run id: $RUN_ID"
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version)"
    echo "postgres: $(psql "$DEPLOY_PG_URL" -Atqc 'show server_version')"
    echo "synchronous_commit: $(psql "$DEPLOY_PG_URL" -Atqc 'show synchronous_commit')"
    echo "rabbitmq: $(curl -s -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" "$DEPLOY_RABBITMQ_API/api/overview" | grep -o '"rabbitmq_version":"[^"]*"' | cut -d'"' -f4)"
    echo "uptime before: $(uptime)"
} | tee "$OUT/machine.txt" >&2

# --amqp: loadgen learns that a saga ended from the orchestrator's order.completed/order.failed
# events on the fleet's own vhost (the URL the services get) instead of polling the API, so the
# measurement adds no status reads to the load it measures.
LG=("$BIN_DIR/loadgen" --orchestrator "http://127.0.0.1:${PORT[orchestrator]}"
    --payment "http://127.0.0.1:${PORT[payment]}" --inventory "http://127.0.0.1:${PORT[inventory]}"
    --amqp "${DEPLOY_AMQP_URL}/$(urlencode "$VHOST")" --out "$OUT")

# wait_marker FILE PID: waits until loadgen (PID) writes FILE, or exits.
wait_marker() {
    while [ ! -e "$1" ] && kill -0 "$2" 2>/dev/null; do sleep 0.1; done
}

# phase NAME LOADGEN-ARGS...: one measured loadgen run. CPU is accounted between the markers
# loadgen writes when its load starts and ends, so seeding and the final checks are left out.
phase() {
    local name=$1 before after lg t0 t1
    shift
    log "phase $name: loadgen $*"
    echo "uptime before $name: $(uptime)" >>"$OUT/machine.txt"
    rm -f "$OUT/$name.started" "$OUT/$name.ended"
    "${LG[@]}" --run-id "$RUN_ID-$name" --label "$name" "$@" "${EXTRA_ARGS[@]}" > >(tee "$OUT/$name.txt") &
    lg=$!
    rss_sampler "$name" "$lg" &
    SAMPLER_PID=$!
    wait_marker "$OUT/$name.started" "$lg"
    before="$(snapshot "$lg")"
    t0=$EPOCHREALTIME
    wait_marker "$OUT/$name.ended" "$lg"
    after="$(snapshot "$lg")"
    t1=$EPOCHREALTIME
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=''
    wait "$lg" || log "phase $name: loadgen reported a failure (see above)"
    sleep 0.2 # let tee flush the RESULT line
    echo "uptime after $name: $(uptime)" >>"$OUT/machine.txt"
    # CPU per group over the load window, in cores (ticks / CLK_TCK / wall seconds).
    paste <(echo "$before") <(echo "$after") |
        awk -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v phase="$name" \
            '{ wall = t1 - t0; printf "%s\t%s\t%.3f\n", phase, $1, ($4 - $2) / hz / (wall > 0 ? wall : 1) }' \
            >"$OUT/cpu-$name.tsv"
    # Queue depths and unpublished outbox rows left at the end: growth means a backlog.
    curl -s -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
        "$DEPLOY_RABBITMQ_API/api/queues/$(urlencode "$VHOST")?columns=name,messages" >"$OUT/queues-$name.json" || true
    for svc in "${SERVICES[@]}"; do
        printf '%s\t%s\n' "$svc" "$(psql "postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}$svc" -Atqc \
            'SELECT count(*) FROM outbox WHERE published_at IS NULL' 2>/dev/null || echo '?')"
    done >"$OUT/outbox-$name.tsv"
}

result_field() { grep -o "$2=[0-9.]*" "$OUT/$1.txt" | head -n1 | cut -d= -f2; }

phase warmup --closed 32 --duration "$WARMUP" --skip-checks
phase peak --closed "$CLIENTS" --duration "$DURATION"
peak="$(result_field peak finished_per_s)"
[ -n "$peak" ] || die "no result from the peak phase"
rate="$(awk -v p="$peak" -v f="$OPEN_FRACTION" 'BEGIN { r = p * f; if (r < 1) r = 1; printf "%.0f", r }')"
phase open80 --rate "$rate" --duration "$DURATION"
echo "uptime after: $(uptime)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------------------------------
# Summary

{
    echo
    echo "== bench $RUN_ID: ${DURATION}s per phase on $(nproc) cores (load average after: $(cut -d' ' -f1-3 /proc/loadavg)) =="
    printf '%-8s %10s %10s %9s %9s %9s %9s %s\n' phase "done/s" "COMPL/s" "acc p50" "acc p99" "e2e p50" "e2e p99" invariants
    for name in peak open80; do
        line="$(grep '^RESULT' "$OUT/$name.txt" || true)"
        js="$OUT/$name.json"
        printf '%-8s %10s %10s %9.1f %9s %9.1f %9s %s\n' "$name" \
            "$(result_field "$name" finished_per_s)" "$(result_field "$name" completed_per_s)" \
            "$(grep -o '"accept_ms":{[^}]*}' "$js" | grep -o '"p50":[0-9.]*' | cut -d: -f2)" \
            "$(result_field "$name" accept_p99_ms)" \
            "$(grep -o '"e2e_ms":{[^}]*}' "$js" | grep -o '"p50":[0-9.]*' | cut -d: -f2)" \
            "$(result_field "$name" e2e_p99_ms)" \
            "$(grep -o 'invariants=[a-z]*' <<<"$line" | cut -d= -f2)"
    done
    echo
    echo "CPU (cores used on average; 'postgres_all' and 'machine_busy' include other users of this machine)"
    printf '%-8s' phase
    awk '{ printf " %14s", $2 }' "$OUT/cpu-peak.tsv" | sed 's/machine_total.*//'
    echo
    for name in peak open80; do
        printf '%-8s' "$name"
        awk '$2 != "machine_total" { printf " %14.2f", $3 }' "$OUT/cpu-$name.tsv"
        echo
    done
    echo
    echo "Resident memory, MiB (max over the phase; PostgreSQL: anonymous memory of all its processes)"
    for name in peak open80; do
        printf '%-8s' "$name"
        awk -F'\t' '{ if ($2 > max[$1]) max[$1] = $2 } END { for (k in max) printf " %s=%.1f", k, max[k] / 1024 }' "$OUT/rss-$name.tsv"
        echo
    done
    echo
    for name in peak open80; do
        echo "$name: unpublished outbox rows at the end: $(tr '\t\n' '= ' <"$OUT/outbox-$name.tsv")"
        # The management API's counts lag by up to its stats interval (5 s by default).
        echo "$name: non-empty queues at the end: $(grep -o '"messages":[1-9][0-9]*,"name":"[^"]*"' "$OUT/queues-$name.json" | sed 's/"messages":\([0-9]*\),"name":"\([^"]*\)"/\2=\1/' | tr '\n' ' ')"
    done
    echo "charts: $OUT/peak.svg $OUT/open80.svg; raw results: $OUT/*.json"
} | tee "$OUT/summary.txt"
