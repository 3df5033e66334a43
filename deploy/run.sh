#!/usr/bin/env bash
# Builds the workspace and runs the orchestrator, payment, inventory and notification services
# on this machine, against a local PostgreSQL and RabbitMQ (installed and started when missing),
# with a mail catcher (Debian's aiosmtpd) that keeps every e-mail the notification service sends
# as a file. Ctrl-C (or SIGTERM) stops the services and the catcher; the database and broker
# keep running.
#
# Settings (defaults in brackets; set them in the environment to override):
#   ORCHESTRATOR_PORT [3000]  PAYMENT_PORT [3001]  INVENTORY_PORT [3002]
#   NOTIFICATION_PORT [3003]
#   ORCHESTRATOR_DATABASE_URL [postgres://postgres:postgres@127.0.0.1:5432/saga_orchestrator]
#   PAYMENT_DATABASE_URL      [.../saga_payment]
#   INVENTORY_DATABASE_URL    [.../saga_inventory]
#   NOTIFICATION_DATABASE_URL [.../saga_notification]
#   SMTP_PORT                 [2525] the mail catcher's port on 127.0.0.1; the notification
#                             service sends there (plain SMTP). Mail lands in deploy/.run/mail/new/
#   APP__NOTIFY__OPS_EMAIL    [ops@localhost] where low-stock alerts go
#   APP__APPLICATION__HOST    [127.0.0.1]  shared by all four services
#   APP__AMQP__URL            [amqp://guest:guest@127.0.0.1:5672/%2f]  shared by all four
#   APP__AUTH__OPERATOR_TOKEN [generated] the operator's bearer token on all four (accounts,
#                             products, sagas, /api/admin/*); printed. APP__ADMIN__TOKEN, its
#                             old name, is still taken when the new one is unset (deprecated)
#   APP__AUTH__JWT_SECRET     [generated] HS256 secret the customers' JWTs are verified with;
#                             ./deploy/token.sh CUSTOMER_ID mints one
#   SAGA_STOP_TIMEOUT         [20] seconds a service gets to stop before SIGKILL
#   PROMETHEUS                [0] 1: also run a local Prometheus (Debian's `prometheus`, installed
#                             when missing) scraping the four services and RabbitMQ, with the
#                             alert rules of deploy/observability/ loaded; stopped with the fleet
#   PROMETHEUS_PORT           [the first free of 9090-9099] its port, on 127.0.0.1
# The per-service variables become APP__APPLICATION__PORT and APP__DATABASE__URL of that
# service; any other APP__* variable is passed through to all four. The orchestrator's console
# reaches the participants at their ports here (APP__CONSOLE__PAYMENT_URL, __INVENTORY_URL,
# __NOTIFICATION_URL, unless set).
# Only the saga_* databases are created; a database named by an overriding URL must exist.
#
# Logs (JSON lines) and pid files: deploy/.run/<service>.log, deploy/.run/<service>.pid
# Mail: deploy/.run/mail/ (a Maildir: one file per message in new/), mail-catcher.log.
# With PROMETHEUS=1: deploy/.run/prometheus.yml (generated), prometheus.log, prometheus-data/.
# The operator token and the JWT secret of the running fleet: deploy/.run/operator-token and
# deploy/.run/jwt-secret (mode 600, removed when run.sh stops), read by deploy/token.sh.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

PG_BASE="postgres://postgres:postgres@127.0.0.1:5432"
SERVICES=(orchestrator payment inventory notification)
declare -A PORT=(
    [orchestrator]="${ORCHESTRATOR_PORT:-3000}"
    [payment]="${PAYMENT_PORT:-3001}"
    [inventory]="${INVENTORY_PORT:-3002}"
    [notification]="${NOTIFICATION_PORT:-3003}"
)
declare -A DB_URL=(
    [orchestrator]="${ORCHESTRATOR_DATABASE_URL:-$PG_BASE/saga_orchestrator}"
    [payment]="${PAYMENT_DATABASE_URL:-$PG_BASE/saga_payment}"
    [inventory]="${INVENTORY_DATABASE_URL:-$PG_BASE/saga_inventory}"
    [notification]="${NOTIFICATION_DATABASE_URL:-$PG_BASE/saga_notification}"
)
SMTP_PORT="${SMTP_PORT:-2525}"
# Where the console (on the orchestrator) calls the participants: this host, their ports.
CONSOLE_HOST="${APP__APPLICATION__HOST:-127.0.0.1}"
case "$CONSOLE_HOST" in 0.0.0.0 | "::" | "[::]") CONSOLE_HOST=127.0.0.1 ;; esac
MAIL_DIR="$DEPLOY_RUN_DIR/mail"
export APP__NOTIFY__OPS_EMAIL="${APP__NOTIFY__OPS_EMAIL:-ops@localhost}"
export APP__APPLICATION__HOST="${APP__APPLICATION__HOST:-127.0.0.1}"
export APP__AMQP__URL="${APP__AMQP__URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# Operator token and JWT secret: the caller's, or fresh random ones (deploy/lib.sh).
resolve_fleet_secrets
STOP_TIMEOUT="${SAGA_STOP_TIMEOUT:-20}"
WITH_PROMETHEUS="${PROMETHEUS:-0}"
READY_TIMEOUT=60
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"

# Where to probe the services: a wildcard bind address is reachable on loopback.
case $APP__APPLICATION__HOST in
0.0.0.0 | :: | '[::]') PROBE_HOST=127.0.0.1 ;;
*:*) PROBE_HOST="[$APP__APPLICATION__HOST]" ;; # IPv6 literal in a URL
*) PROBE_HOST=$APP__APPLICATION__HOST ;;
esac

SECRETS_WRITTEN='' # set once this run wrote deploy/.run/{operator-token,jwt-secret}
declare -A PID=() # service (or "prometheus", "mail-catcher") -> pid of the process we started

log_tail() {
    log "last lines of $DEPLOY_RUN_DIR/$1.log:"
    tail -n 30 "$DEPLOY_RUN_DIR/$1.log" >&2 || true
}

# Stops every service we started: SIGTERM, up to STOP_TIMEOUT seconds, then SIGKILL.
# Runs on every exit (Ctrl-C, a failed start, a crashed service, an error in this script).
stop_services() {
    trap '' INT TERM # a second Ctrl-C must not cut the orderly stop short
    local svc
    stop_pids "$STOP_TIMEOUT" "${PID[@]}"
    for svc in "${!PID[@]}"; do rm -f "$DEPLOY_RUN_DIR/$svc.pid"; done
    [ -z "$SECRETS_WRITTEN" ] || rm -f "$DEPLOY_RUN_DIR/operator-token" "$DEPLOY_RUN_DIR/jwt-secret"
    PID=()
}
trap stop_services EXIT
trap 'log "received SIGINT"; exit 0' INT
trap 'log "received SIGTERM"; exit 0' TERM

# The work queues became quorum queues (x-queue-type, x-delivery-limit). RabbitMQ refuses to
# redeclare a queue with other arguments (PRECONDITION_FAILED) and cannot convert one in place,
# so classic work queues left by an earlier version would stop every service from connecting.
# An empty one holds nothing: delete it (if-empty, if-unused: the broker checks atomically) and
# the services declare it anew with its bindings. One that still holds messages is left alone,
# because deleting it would lose them: see docs/runbook.md, "Upgrading from classic work queues".
upgrade_classic_work_queues() {
    local rest authority host vhost queue answer code type
    rest=${APP__AMQP__URL#*://}
    authority=${rest%%/*}
    host=${authority##*@}
    host=${host%:*}
    case $host in
    127.0.0.1 | localhost) ;;
    *)
        log "RabbitMQ at $host is not the local broker; not checking its work queues"
        return 0
        ;;
    esac
    vhost=''
    [[ $rest != */* ]] || vhost=${rest#*/}
    vhost=${vhost%%\?*}
    [ -n "$vhost" ] || vhost=%2F # already percent-encoded, as the management API wants it
    for queue in payment.commands inventory.commands orchestrator.replies; do
        answer="$(curl -s --max-time 10 -w '\n%{http_code}' \
            -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
            "$DEPLOY_RABBITMQ_API/api/queues/$vhost/$queue?columns=type")" ||
            die "cannot ask the RabbitMQ management API about $queue"
        code=${answer##*$'\n'}
        case $code in
        404) continue ;; # not declared yet: the services will
        200) ;;
        *) die "cannot inspect queue $queue in vhost $vhost (HTTP $code)" ;;
        esac
        type="$(grep -o '"type":"[a-z]*"' <<<"${answer%$'\n'*}" | sed 's/.*:"//; s/"$//')" || true
        [ "$type" = classic ] || continue
        code="$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' -X DELETE \
            -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
            "$DEPLOY_RABBITMQ_API/api/queues/$vhost/$queue?if-empty=true&if-unused=true")" || true
        case $code in
        204 | 404) log "deleted the empty classic queue $queue (vhost $vhost); it comes back as a quorum queue" ;;
        *) die "$queue in vhost $vhost is a classic queue that still holds messages (or has a consumer); the services need it as a quorum queue. Drain it first: docs/runbook.md, \"Upgrading from classic work queues\"" ;;
        esac
    done
}

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://$PROBE_HOST:${PORT[$1]}/health/ready")" = 200 ]
}

# The port of the local Prometheus: PROMETHEUS_PORT, or the first free one of 9090-9099 (the
# machine may run a Prometheus of its own on 9090).
prometheus_port() {
    local port
    if [ -n "${PROMETHEUS_PORT:-}" ]; then
        ! port_open 127.0.0.1 "$PROMETHEUS_PORT" ||
            die "PROMETHEUS_PORT $PROMETHEUS_PORT is already in use"
        echo "$PROMETHEUS_PORT"
        return 0
    fi
    for port in $(seq 9090 9099); do
        if ! port_open 127.0.0.1 "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "ports 9090-9099 are all in use: set PROMETHEUS_PORT to a free port"
}

prometheus_ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$PROMETHEUS_LISTEN/-/ready")" = 200 ]
}

# Starts Prometheus on this run's ports with deploy/observability/rules.yml, and waits until it
# is ready. Its configuration is deploy/observability/prometheus.yml with this run's targets.
start_prometheus() {
    local config="$DEPLOY_RUN_DIR/prometheus.yml" logfile="$DEPLOY_RUN_DIR/prometheus.log" deadline
    PROMETHEUS_LISTEN="$(prometheus_port)"
    cat >"$config" <<EOF
# Generated by deploy/run.sh for this run (from deploy/observability/prometheus.yml).
global:
  scrape_interval: 15s
  scrape_timeout: 10s
  evaluation_interval: 15s
rule_files:
  - $DEPLOY_DIR/observability/rules.yml
scrape_configs:
  - job_name: orchestrator
    static_configs:
      - targets: ["$PROBE_HOST:${PORT[orchestrator]}"]
  - job_name: payment
    static_configs:
      - targets: ["$PROBE_HOST:${PORT[payment]}"]
  - job_name: inventory
    static_configs:
      - targets: ["$PROBE_HOST:${PORT[inventory]}"]
  - job_name: notification
    static_configs:
      - targets: ["$PROBE_HOST:${PORT[notification]}"]
  - job_name: rabbitmq
    static_configs:
      - targets: ["${DEPLOY_RABBITMQ_PROMETHEUS#http://}"]
EOF
    promtool check config "$config" >&2 || die "the generated $config does not pass promtool"
    [ ! -f "$logfile" ] || mv -f "$logfile" "$logfile.prev"
    mkdir -p "$DEPLOY_RUN_DIR/prometheus-data"
    (
        exec prometheus --config.file="$config" \
            --storage.tsdb.path="$DEPLOY_RUN_DIR/prometheus-data" \
            --storage.tsdb.retention.time=7d \
            --web.listen-address="127.0.0.1:$PROMETHEUS_LISTEN"
    ) </dev/null >"$logfile" 2>&1 &
    PID[prometheus]=$!
    echo "${PID[prometheus]}" >"$DEPLOY_RUN_DIR/prometheus.pid"
    log "started prometheus (pid ${PID[prometheus]}) on port $PROMETHEUS_LISTEN"
    deadline=$((SECONDS + READY_TIMEOUT))
    until prometheus_ready; do
        if ! running "${PID[prometheus]}"; then
            log_tail prometheus
            die "prometheus exited during start-up"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail prometheus
            die "prometheus not ready after ${READY_TIMEOUT}s"
        fi
        sleep 1
    done
    log "prometheus is ready"
}

ensure_rust
mkdir -p "$DEPLOY_RUN_DIR"

# Refuse to start next to a previous run (the services would fail to bind anyway, later).
for svc in "${SERVICES[@]}"; do
    port=${PORT[$svc]}
    port_open "$PROBE_HOST" "$port" || continue
    old_pid="$(cat "$DEPLOY_RUN_DIR/$svc.pid" 2>/dev/null || true)"
    if [ -n "$old_pid" ] && kill -0 "$old_pid" 2>/dev/null; then
        die "port $port is in use: $svc (pid $old_pid) from an earlier deploy/run.sh is still running; stop it (Ctrl-C in its terminal, or kill $old_pid) first"
    fi
    die "port $port (for $svc) is already in use by another process; free it or set ${svc^^}_PORT"
done
! port_open 127.0.0.1 "$SMTP_PORT" ||
    die "port $SMTP_PORT (for the mail catcher) is already in use; free it or set SMTP_PORT"

ensure_postgres
ensure_rabbitmq
ensure_mail_catcher
ensure_databases saga_orchestrator saga_payment saga_inventory saga_notification
upgrade_classic_work_queues
[ "$WITH_PROMETHEUS" != 1 ] || ensure_promtool # the same package ships the server

# For deploy/token.sh and scripts: readable by this user only.
write_fleet_secrets "$DEPLOY_RUN_DIR"
SECRETS_WRITTEN=1

build_services "$BIN_DIR"

# The mail catcher first, so the notification service's first mail finds it.
start_mail_catcher "$MAIL_DIR" "$SMTP_PORT" "$DEPLOY_RUN_DIR/mail-catcher.log"
echo "${PID[mail-catcher]}" >"$DEPLOY_RUN_DIR/mail-catcher.pid"

for svc in "${SERVICES[@]}"; do
    logfile="$DEPLOY_RUN_DIR/$svc.log"
    [ ! -f "$logfile" ] || mv -f "$logfile" "$logfile.prev" # keep one earlier run for post-mortems
    # exec: $! is the service itself, so signals reach it directly.
    (
        export APP__APPLICATION__PORT="${PORT[$svc]}" APP__DATABASE__URL="${DB_URL[$svc]}"
        if [ "$svc" = notification ]; then
            export APP__NOTIFY__SMTP_HOST=127.0.0.1 APP__NOTIFY__SMTP_PORT="$SMTP_PORT" \
                APP__NOTIFY__SMTP_TLS=none
        fi
        if [ "$svc" = orchestrator ]; then
            export APP__CONSOLE__PAYMENT_URL="${APP__CONSOLE__PAYMENT_URL:-http://$CONSOLE_HOST:${PORT[payment]}}" \
                APP__CONSOLE__INVENTORY_URL="${APP__CONSOLE__INVENTORY_URL:-http://$CONSOLE_HOST:${PORT[inventory]}}" \
                APP__CONSOLE__NOTIFICATION_URL="${APP__CONSOLE__NOTIFICATION_URL:-http://$CONSOLE_HOST:${PORT[notification]}}"
        fi
        exec "$BIN_DIR/$svc"
    ) </dev/null >"$logfile" 2>&1 &
    PID[$svc]=$!
    echo "${PID[$svc]}" >"$DEPLOY_RUN_DIR/$svc.pid"
    log "started $svc (pid ${PID[$svc]}) on port ${PORT[$svc]}"
done

# Wait until every service reports ready; fail fast if one exits meanwhile.
wait_services_ready "$READY_TIMEOUT" "${SERVICES[@]}"

api="http://$PROBE_HOST"
log "all services are ready"
PROMETHEUS_LINE=''
if [ "$WITH_PROMETHEUS" = 1 ]; then
    start_prometheus
    PROMETHEUS_LINE="
  Prometheus         http://127.0.0.1:$PROMETHEUS_LISTEN (alerts: /alerts; rules from
                     deploy/observability/rules.yml; Grafana: docs/observability.md)"
fi
cat <<EOF

  Orders API         $api:${PORT[orchestrator]}/api/orders
  Swagger UI         $api:${PORT[orchestrator]}/api/docs (orchestrator)
                     $api:${PORT[payment]}/api/docs (payment)
                     $api:${PORT[inventory]}/api/docs (inventory)
                     $api:${PORT[notification]}/api/docs (notification)
  RabbitMQ console   $DEPLOY_RABBITMQ_API (${DEPLOY_RABBITMQ_USER}/${DEPLOY_RABBITMQ_PASSWORD})
  Operator token     $APP__AUTH__OPERATOR_TOKEN ($OPERATOR_TOKEN_ORIGIN;
                     also in $DEPLOY_RUN_DIR/operator-token), for accounts, products,
                     sagas and /api/admin/*, e.g. the dead letters (docs/runbook.md):
                     curl -H "Authorization: Bearer \$(cat $DEPLOY_RUN_DIR/operator-token)" $api:${PORT[payment]}/api/admin/dead-letters
  Customer tokens    ./deploy/token.sh CUSTOMER_ID [--ttl 1h] prints a JWT for that customer
                     (signed with the JWT secret, $JWT_SECRET_ORIGIN; in
                     $DEPLOY_RUN_DIR/jwt-secret), for POST /api/orders and its own orders
  Mail               every e-mail sent (order confirmations, failure notices, low-stock
                     alerts to $APP__NOTIFY__OPS_EMAIL) is a file in $MAIL_DIR/new/
                     (newest: ls -t $MAIL_DIR/new | head -1); the service's record of each:
                     curl -H "Authorization: Bearer \$(cat $DEPLOY_RUN_DIR/operator-token)" $api:${PORT[notification]}/api/notifications
  Metrics            $api:${PORT[orchestrator]}/metrics, :${PORT[payment]}/metrics, :${PORT[inventory]}/metrics, :${PORT[notification]}/metrics$PROMETHEUS_LINE
  Logs (JSON lines)  $DEPLOY_RUN_DIR/{orchestrator,payment,inventory,notification}.log
Press Ctrl-C to stop the services.

EOF

# Sit in the foreground; a service that exits on its own takes the others down with it.
while :; do
    status=0
    reaped=''
    wait -n -p reaped "${PID[@]}" || status=$?
    [ -n "$reaped" ] || die "lost track of the services (wait returned $status)"
    REAPED[$reaped]=1
    for svc in "${!PID[@]}"; do
        if [ "${PID[$svc]}" = "$reaped" ]; then
            log "$svc (pid $reaped) exited unexpectedly with status $status"
            log_tail "$svc"
        fi
    done
    exit 1
done
