#!/usr/bin/env bash
# The fleet as a cluster on this machine: three RabbitMQ nodes clustered together, two
# instances of every service (release build) and nginx in front of them on one port. The
# services' databases live in the machine's PostgreSQL; everything else (the nodes' data and
# logs, nginx's configuration, the services' logs, the mail) under deploy/.cluster/, kept from
# one start to the next. Ctrl-C (or SIGTERM) stops it all. docs/cluster.md says how to use it.
#
# Settings (defaults in brackets):
#   CLUSTER_PORT_BASE [3100]   the instances: orchestrator on BASE and BASE+1, payment on BASE+10
#                              and +11, inventory on BASE+20 and +21, notification on BASE+30, +31
#   CLUSTER_NGINX_PORT [8080]  nginx, on 127.0.0.1: the one address clients need
#   CLUSTER_AMQP_PORT [5673]   node N's AMQP port is this + N - 1 (5673-5675); its management
#                              API that + 10000, its Prometheus endpoint + 10020, its Erlang
#                              distribution + 20000
#   CLUSTER_AMQP_NODES [3]     how many nodes each instance's APP__AMQP__URL lists (comma-
#                              separated, starting at a different node per instance); 1 for
#                              services that take a single URL
#   CLUSTER_SMTP_PORT [2625]   the mail catcher; mail lands in deploy/.cluster/mail/new/
#   CLUSTER_RABBITMQ_ERL_ARGS []  extra Erlang VM flags for the three nodes
#   CLUSTER_FRESH [0]          1: wipe deploy/.cluster/ and the saga_cluster_* databases first
#   SAGA_STOP_TIMEOUT [20]     seconds the processes get to stop before SIGKILL
#   APP__AUTH__OPERATOR_TOKEN, APP__AUTH__JWT_SECRET [generated], and any other APP__* setting:
#                              passed to every instance, as run.sh does
# Databases: saga_cluster_orchestrator, _payment, _inventory, _notification (both instances of a
# service share one). RabbitMQ: the services log in as "saga" with a password generated once
# (deploy/.cluster/rabbitmq-password); guest/guest works from this machine too.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

CLUSTER_DIR="$DEPLOY_DIR/.cluster"
RABBIT_HOME="$CLUSTER_DIR/rabbitmq" # the nodes' HOME: their shared .erlang.cookie
NGINX_DIR="$CLUSTER_DIR/nginx"
LOG_DIR="$CLUSTER_DIR/logs"
MAIL_DIR="$CLUSTER_DIR/mail"
PASSWORD_FILE="$CLUSTER_DIR/rabbitmq-password"
PORT_BASE="${CLUSTER_PORT_BASE:-3100}"
NGINX_PORT="${CLUSTER_NGINX_PORT:-8080}"
AMQP_BASE="${CLUSTER_AMQP_PORT:-5673}"
AMQP_NODES="${CLUSTER_AMQP_NODES:-3}"
SMTP_PORT="${CLUSTER_SMTP_PORT:-2625}"
STOP_TIMEOUT="${SAGA_STOP_TIMEOUT:-20}"
READY_TIMEOUT=120
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
RABBIT_USER=saga
SERVICES=(orchestrator payment inventory notification)
NODES=(1 2 3)
case $AMQP_NODES in 1 | 2 | 3) ;; *) die "CLUSTER_AMQP_NODES must be 1, 2 or 3, not '$AMQP_NODES'" ;; esac

declare -A PORT=()  # instance ("payment-2") -> its HTTP port
declare -A PID=()   # instance, "rabbit-N", "nginx", "mail-catcher" -> the pid we started
INSTANCES=()
for s in "${!SERVICES[@]}"; do
    for i in 1 2; do
        INSTANCES+=("${SERVICES[$s]}-$i")
        PORT[${SERVICES[$s]}-$i]=$((PORT_BASE + 10 * s + i - 1))
    done
done

node_name() { echo "rabbit-$1@localhost"; }
amqp_port() { echo $((AMQP_BASE + $1 - 1)); }
mgmt_port() { echo $((AMQP_BASE + $1 - 1 + 10000)); }
prom_port() { echo $((AMQP_BASE + $1 - 1 + 10020)); }
ctl() {
    local n=$1
    shift
    rabbit_ctl "$RABBIT_HOME" "$(node_name "$n")" "$@"
}

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:${PORT[$1]}/health/ready")" = 200 ]
}
log_tail() {
    log "last lines of $LOG_DIR/$1.log:"
    tail -n 30 "$LOG_DIR/$1.log" >&2 || true
}

SECRETS_WRITTEN=''
# Stops everything we started: the instances, nginx and the mail catcher, then the nodes (each
# through rabbitmqctl, so it leaves the cluster's data consistent for the next start).
cleanup() {
    trap '' INT TERM # a second Ctrl-C must not cut the orderly stop short
    local name pids=() n pid
    for name in "${INSTANCES[@]}" nginx mail-catcher; do
        [ -z "${PID[$name]:-}" ] || pids+=("${PID[$name]}")
    done
    stop_pids "$STOP_TIMEOUT" "${pids[@]}"
    for n in 3 2 1; do
        pid=${PID[rabbit-$n]:-}
        [ -n "$pid" ] && running "$pid" || continue
        log "stopping $(node_name "$n")"
        ctl "$n" -q stop >/dev/null 2>&1 || log "rabbitmqctl stop failed for $(node_name "$n")"
        stop_pids 60 "$pid"
    done
    [ -z "$SECRETS_WRITTEN" ] || rm -f "$CLUSTER_DIR/operator-token" "$CLUSTER_DIR/jwt-secret"
    log "stopped; the data stays in $CLUSTER_DIR"
}
trap cleanup EXIT
trap 'log "received SIGINT"; exit 0' INT
trap 'log "received SIGTERM"; exit 0' TERM

# Every port the cluster needs, free before anything starts.
check_ports() {
    local n port name
    for n in "${NODES[@]}"; do
        for port in "$(amqp_port "$n")" "$(mgmt_port "$n")" "$(prom_port "$n")" $(($(amqp_port "$n") + 20000)); do
            ! port_open 127.0.0.1 "$port" ||
                die "port $port (for $(node_name "$n")) is in use: a cluster.sh still running, a node left over (ctl: HOME=$RABBIT_HOME $RABBITMQ_LIB_BIN/rabbitmqctl -n $(node_name "$n") stop), or bench.sh's own node; or set CLUSTER_AMQP_PORT"
        done
    done
    for name in "${INSTANCES[@]}"; do
        ! port_open 127.0.0.1 "${PORT[$name]}" || die "port ${PORT[$name]} (for $name) is in use; set CLUSTER_PORT_BASE"
    done
    ! port_open 127.0.0.1 "$NGINX_PORT" || die "port $NGINX_PORT (for nginx) is in use; set CLUSTER_NGINX_PORT"
    ! port_open 127.0.0.1 "$SMTP_PORT" || die "port $SMTP_PORT (for the mail catcher) is in use; set CLUSTER_SMTP_PORT"
}

# Node N's configuration (rewritten on every start, from the settings above) and its start.
start_node() {
    local n=$1 dir="$RABBIT_HOME/rabbit-$1"
    mkdir -p "$dir"
    printf '%s\n' "# Generated by deploy/cluster.sh" "listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")" \
        "management.tcp.ip = 127.0.0.1" "management.tcp.port = $(mgmt_port "$n")" \
        "prometheus.tcp.ip = 127.0.0.1" "prometheus.tcp.port = $(prom_port "$n")" >"$dir/rabbitmq.conf"
    echo '[rabbitmq_management,rabbitmq_prometheus].' >"$dir/enabled_plugins"
    start_rabbit_node "$(node_name "$n")" "$RABBIT_HOME" "$dir" "$(amqp_port "$n")" \
        "$(($(amqp_port "$n") + 20000))" "$LOG_DIR/rabbit-$n.out" "${CLUSTER_RABBITMQ_ERL_ARGS:-}"
    PID[rabbit-$n]=$RABBIT_NODE_PID
    log "started $(node_name "$n") (pid $RABBIT_NODE_PID): AMQP $(amqp_port "$n"), management $(mgmt_port "$n")"
}

# Instance K's (0-7) APP__AMQP__URL: AMQP_NODES nodes, starting at node K mod 3, so the two
# instances of a service start on different nodes.
amqp_urls() {
    local k=$1 j n urls='' pw
    pw="$(cat "$PASSWORD_FILE")"
    for ((j = 0; j < AMQP_NODES; j++)); do
        n=$(((k + j) % 3 + 1))
        urls+="${urls:+,}amqp://$RABBIT_USER:$pw@127.0.0.1:$(amqp_port "$n")/%2f"
    done
    echo "$urls"
}

start_instance() {
    local name=$1 k=$2 svc=${1%-*} logfile="$LOG_DIR/$1.log" base="http://127.0.0.1:$NGINX_PORT"
    [ ! -f "$logfile" ] || mv -f "$logfile" "$logfile.prev"
    (
        export APP__APPLICATION__HOST=127.0.0.1 APP__APPLICATION__PORT="${PORT[$name]}" \
            APP__DATABASE__URL="${DEPLOY_PG_URL%/*}/saga_cluster_$svc" APP__AMQP__URL="$(amqp_urls "$k")"
        if [ "$svc" = notification ]; then
            export APP__NOTIFY__SMTP_HOST=127.0.0.1 APP__NOTIFY__SMTP_PORT="$SMTP_PORT" APP__NOTIFY__SMTP_TLS=none
        fi
        if [ "$svc" = orchestrator ]; then
            # The console reaches the participants through nginx (either instance will do).
            export APP__CONSOLE__PAYMENT_URL="$base/payment" APP__CONSOLE__INVENTORY_URL="$base/inventory" \
                APP__CONSOLE__NOTIFICATION_URL="$base/notification"
        fi
        exec "$BIN_DIR/$svc"
    ) </dev/null >"$logfile" 2>&1 &
    PID[$name]=$!
    log "started $name (pid ${PID[$name]}) on port ${PORT[$name]}"
}

# nginx's configuration: an upstream per service with both instances and passive health checks;
# the orchestrator's and the participants' API paths, per-service prefixes (stripped) for the
# rest, and per-instance prefixes to reach one instance.
write_nginx_conf() {
    local svc name i route user=''
    [ "$(id -u)" != 0 ] || user='user www-data;' # workers never run as root
    cat <<EOF
# Generated by deploy/cluster.sh on every start; edits are lost.
daemon off;
$user
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 1024; }
http {
    log_format upstream '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                        'upstream=\$upstream_addr upstream_status=\$upstream_status \${request_time}s';
    access_log $NGINX_DIR/access.log upstream;
    client_body_temp_path $NGINX_DIR/tmp/body;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    client_max_body_size 1m;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    # Passive health checks: an instance that fails once is left out for 5 s. Requests go to
    # the other instance on these failures; a POST only if it never reached the first one.
    proxy_next_upstream error timeout http_502 http_503;
    proxy_connect_timeout 2s;
EOF
    for svc in "${SERVICES[@]}"; do
        echo "    upstream $svc {"
        for i in 1 2; do echo "        server 127.0.0.1:${PORT[$svc-$i]} max_fails=1 fail_timeout=5s;"; done
        echo "        keepalive 16;"
        echo "    }"
    done
    cat <<EOF
    server {
        listen 127.0.0.1:$NGINX_PORT;
EOF
    for route in /api/orders:orchestrator /api/sagas:orchestrator /api/analytics:orchestrator \
        /api/console:orchestrator /console:orchestrator /:orchestrator /api/accounts:payment \
        /api/payments:payment /api/products:inventory /api/reservations:inventory \
        /api/notifications:notification; do
        echo "        location ${route%:*} { proxy_pass http://${route#*:}; }"
    done
    for svc in "${SERVICES[@]}"; do
        echo "        location /$svc/ { proxy_pass http://$svc/; }"
    done
    for name in "${INSTANCES[@]}"; do
        echo "        location /$name/ { proxy_pass http://127.0.0.1:${PORT[$name]}/; }"
    done
    echo "    }"
    echo "}"
}

start_nginx() {
    local conf="$NGINX_DIR/nginx.conf"
    mkdir -p "$NGINX_DIR/tmp"
    [ "$(id -u)" != 0 ] || chown www-data "$NGINX_DIR/tmp"
    write_nginx_conf >"$conf"
    nginx -t -q -c "$conf" -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" || die "nginx -t refused $conf"
    (exec nginx -c "$conf" -p "$NGINX_DIR" -e "$NGINX_DIR/error.log") </dev/null >"$LOG_DIR/nginx.out" 2>&1 &
    PID[nginx]=$!
    wait_until "nginx on 127.0.0.1:$NGINX_PORT" "$DEPLOY_WAIT_SECONDS" port_open 127.0.0.1 "$NGINX_PORT"
    log "started nginx (pid ${PID[nginx]}) on 127.0.0.1:$NGINX_PORT"
}

through_nginx_ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$NGINX_PORT/$1/health/ready")" = 200 ]
}

ensure_rust
ensure_postgres
apt_install curl jq
[ -x "$RABBITMQ_LIB_BIN/rabbitmq-server" ] || apt_install rabbitmq-server
ensure_nginx
ensure_mail_catcher
check_ports

DATABASES=()
for svc in "${SERVICES[@]}"; do DATABASES+=("saga_cluster_$svc"); done
if [ "${CLUSTER_FRESH:-0}" = 1 ]; then
    log "CLUSTER_FRESH=1: wiping $CLUSTER_DIR and the saga_cluster_* databases"
    rm -rf "$CLUSTER_DIR"
    drop_databases "${DATABASES[@]}"
fi
ensure_databases "${DATABASES[@]}"
mkdir -p "$RABBIT_HOME" "$LOG_DIR"
# One Erlang cookie for the three nodes and the CLI, and the services' password: made once.
if [ ! -f "$RABBIT_HOME/.erlang.cookie" ]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$RABBIT_HOME/.erlang.cookie")
fi
chmod 600 "$RABBIT_HOME/.erlang.cookie"
[ -f "$PASSWORD_FILE" ] || (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$PASSWORD_FILE")

resolve_fleet_secrets
write_fleet_secrets "$CLUSTER_DIR"
SECRETS_WRITTEN=1
export APP__NOTIFY__OPS_EMAIL="${APP__NOTIFY__OPS_EMAIL:-ops@localhost}"
build_services "$BIN_DIR"

# The three nodes at once: on a restart each waits for its peers while it boots.
for n in "${NODES[@]}"; do start_node "$n"; done
for n in "${NODES[@]}"; do
    wait_rabbit_node "$RABBIT_HOME" "$(node_name "$n")" "${PID[rabbit-$n]}" "$LOG_DIR/rabbit-$n.out" "$READY_TIMEOUT"
done
join_rabbit_cluster "$RABBIT_HOME" "$(node_name 1)" "$(node_name 2)" "$(node_name 3)"
rabbit_put_user "http://127.0.0.1:$(mgmt_port 1)" "$RABBIT_USER" "$(cat "$PASSWORD_FILE")"

start_mail_catcher "$MAIL_DIR" "$SMTP_PORT" "$LOG_DIR/mail-catcher.log"
# The first instance of each service, then the second: two instances migrating one database
# at the same moment could collide.
for round in 1 2; do
    batch=()
    for s in "${!SERVICES[@]}"; do
        start_instance "${SERVICES[$s]}-$round" $((2 * s + round - 1))
        batch+=("${SERVICES[$s]}-$round")
    done
    wait_services_ready "$READY_TIMEOUT" "${batch[@]}"
done
start_nginx
for name in "${SERVICES[@]}" "${INSTANCES[@]}"; do
    wait_until "$name ready through nginx" "$READY_TIMEOUT" through_nginx_ready "$name"
done
log "everything is ready"

api="http://127.0.0.1:$NGINX_PORT"
cli="HOME=$RABBIT_HOME $RABBITMQ_LIB_BIN"
cat <<EOF

  Entry point        $api (nginx; config and access log with the upstream in $NGINX_DIR/)
  Orders API         $api/api/orders       Console  $api/console
  Per service        $api/{orchestrator,payment,inventory,notification}/... (health, metrics,
                     api/docs, api/admin/dead-letters)
  Per instance       $api/orchestrator-1/ ... $api/notification-2/, or directly:
                     orchestrator ${PORT[orchestrator-1]} ${PORT[orchestrator-2]}, payment ${PORT[payment-1]} ${PORT[payment-2]}, inventory ${PORT[inventory-1]} ${PORT[inventory-2]}, notification ${PORT[notification-1]} ${PORT[notification-2]}
  RabbitMQ nodes     $(for n in "${NODES[@]}"; do printf '%s AMQP %s, http://127.0.0.1:%s, metrics :%s\n                     ' "$(node_name "$n")" "$(amqp_port "$n")" "$(mgmt_port "$n")" "$(prom_port "$n")"; done)user $RABBIT_USER, password in $PASSWORD_FILE
  Cluster status     $cli/rabbitmqctl -n $(node_name 1) cluster_status
  Queue replicas     $cli/rabbitmq-queues -n $(node_name 1) quorum_status payment.commands
  Operator token     in $CLUSTER_DIR/operator-token ($OPERATOR_TOKEN_ORIGIN)
  Customer tokens    APP__AUTH__JWT_SECRET="\$(cat $CLUSTER_DIR/jwt-secret)" ./deploy/token.sh CUSTOMER_ID
  Mail               $MAIL_DIR/new/
  Logs               $LOG_DIR/<instance>.log; the nodes' in $RABBIT_HOME/rabbit-N/log/
Press Ctrl-C to stop everything (the data stays in $CLUSTER_DIR; CLUSTER_FRESH=1 wipes it).

EOF

# Sit in the foreground. A process that exits is reported and the rest keep running (a lost
# node or instance is what the cluster is for); Ctrl-C stops everything.
while :; do
    live=()
    for name in "${!PID[@]}"; do [ -n "${REAPED[${PID[$name]}]:-}" ] || live+=("${PID[$name]}"); done
    [ "${#live[@]}" -gt 0 ] || die "every process has exited"
    status=0
    reaped=''
    wait -n -p reaped "${live[@]}" || status=$?
    [ -n "$reaped" ] || die "lost track of the processes (wait returned $status)"
    REAPED[$reaped]=1
    for name in "${!PID[@]}"; do
        [ "${PID[$name]}" != "$reaped" ] || log "$name (pid $reaped) exited with status $status; the rest keep running"
    done
done
