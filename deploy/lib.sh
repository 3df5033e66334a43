# shellcheck shell=bash disable=SC2034 # variables set here are used by the scripts sourcing it
# Shared helpers for the scripts in deploy/ (run.sh, cluster.sh, test.sh, bench.sh,
# fresh-install-test.sh).
# Source it; do not run it.
#
# Everything here is idempotent: a server that already answers is reused as it is
# (never restarted), missing Debian packages are installed with apt-get, and every
# wait is bounded. Log lines go to stderr, prefixed with "[deploy]".

# Fixed local endpoints the services and the tests are configured for.
DEPLOY_PG_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
DEPLOY_AMQP_URL="amqp://guest:guest@127.0.0.1:5672"
DEPLOY_RABBITMQ_API="http://127.0.0.1:15672"
DEPLOY_RABBITMQ_USER="guest"
DEPLOY_RABBITMQ_PASSWORD="guest"
# RabbitMQ's own Prometheus endpoint (the rabbitmq_prometheus plugin).
DEPLOY_RABBITMQ_PROMETHEUS="http://127.0.0.1:15692"
# Seconds to wait for a server to come up before giving up.
DEPLOY_WAIT_SECONDS="${DEPLOY_WAIT_SECONDS:-60}"

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPLOY_ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# Logs and pid files of this machine's runs (git-ignored).
DEPLOY_RUN_DIR="$DEPLOY_DIR/.run"

# rabbitmqctl, rabbitmq-plugins, runuser and service live in /usr/sbin, which is not on a
# regular user's PATH on Debian.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac

log() { printf '[deploy] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "root is needed to run '$*' (run as root or install sudo)"
    fi
}

# True when something accepts TCP connections on host:port.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash, which gets host and port as $1 $2
    timeout 2 bash -c ': </dev/tcp/"$1"/"$2"' _ "$1" "$2" 2>/dev/null
}

# wait_until DESCRIPTION SECONDS COMMAND...: polls COMMAND every second; dies on timeout.
wait_until() {
    local what=$1 seconds=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "timed out after ${seconds}s waiting for $what"
        fi
        sleep 1
    done
}

# True when systemd runs this machine (then services are started through it, not by hand).
has_systemd() { [ -d /run/systemd/system ]; }

# True when apt-get can install packages here: it exists and we are root or have sudo.
can_apt() {
    command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; }
}

# True when dpkg knows PACKAGE as installed.
deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# apt_install PACKAGE...: installs what is missing; "apt-get update" runs once per process.
_deploy_apt_updated=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        deb_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and apt-get is not available: install them by hand"
    if [ "$_deploy_apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
            die "apt-get update failed"
        _deploy_apt_updated=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------------------------------
# The fleet's processes (run.sh, cluster.sh)

# A random secret: hex behind a prefix, so the settings loader cannot mistake one for a number
# and mangle it.
random_secret() { echo "$1-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; }

# Operator routes refuse every request without a token, and customers need a signing secret,
# so a fleet always runs with both: the caller's, or fresh random ones. Sets and exports
# APP__AUTH__OPERATOR_TOKEN and APP__AUTH__JWT_SECRET; OPERATOR_TOKEN_ORIGIN and
# JWT_SECRET_ORIGIN say where each came from.
resolve_fleet_secrets() {
    if [ -n "${APP__AUTH__OPERATOR_TOKEN:-}" ]; then
        OPERATOR_TOKEN_ORIGIN="from APP__AUTH__OPERATOR_TOKEN"
    elif [ -n "${APP__ADMIN__TOKEN:-}" ]; then
        APP__AUTH__OPERATOR_TOKEN=$APP__ADMIN__TOKEN
        OPERATOR_TOKEN_ORIGIN="from APP__ADMIN__TOKEN"
        log "APP__ADMIN__TOKEN is deprecated: set APP__AUTH__OPERATOR_TOKEN instead (the old name goes in the next release)"
    else
        APP__AUTH__OPERATOR_TOKEN="$(random_secret operator)"
        OPERATOR_TOKEN_ORIGIN="generated for this run"
    fi
    if [ -n "${APP__AUTH__JWT_SECRET:-}" ]; then
        JWT_SECRET_ORIGIN="from APP__AUTH__JWT_SECRET"
    else
        APP__AUTH__JWT_SECRET="$(random_secret jwt)"
        JWT_SECRET_ORIGIN="generated for this run"
    fi
    # Only the new names reach the services: the old one has been read above.
    unset APP__ADMIN__TOKEN
    export APP__AUTH__OPERATOR_TOKEN APP__AUTH__JWT_SECRET
}

# write_fleet_secrets DIR: the operator token and the JWT secret in DIR/operator-token and
# DIR/jwt-secret, readable by this user only (deploy/token.sh reads the secret there). The umask
# in a subshell: the services' logs keep the usual mode.
write_fleet_secrets() {
    (
        umask 077
        rm -f "$1/operator-token" "$1/jwt-secret" # an older file's mode
        printf '%s\n' "$APP__AUTH__OPERATOR_TOKEN" >"$1/operator-token"
        printf '%s\n' "$APP__AUTH__JWT_SECRET" >"$1/jwt-secret"
    )
    chmod 600 "$1/operator-token" "$1/jwt-secret"
}

# build_services BIN_DIR: the four services in release mode. Only those: the workspace's other
# binaries (loadgen, the fault tests' fleet-node) would each add a full LTO link of the fleet to
# every start.
build_services() {
    log "building release binaries"
    cargo build --release -p orchestrator -p payment -p inventory -p notification --bins ||
        die "the build failed (cargo's errors are above); docs/install.md lists what a machine needs"
    local svc
    for svc in orchestrator payment inventory notification; do
        [ -x "$1/$svc" ] || die "$1/$svc was not built"
    done
}

# Pids that `wait` collected (the number may be reused after that): pid -> 1.
declare -A REAPED=()

# True while the process runs (a zombie, i.e. exited but not yet reaped, counts as stopped).
running() {
    local stat
    [ -z "${REAPED[$1]:-}" ] && stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# stop_pids SECONDS PID...: SIGTERM to each of our children still running, up to SECONDS for
# all of them, then SIGKILL; reaps them.
stop_pids() {
    local timeout=$1 pid left=() deadline
    shift
    for pid in "$@"; do
        if running "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            left+=("$pid")
        fi
    done
    [ "${#left[@]}" -gt 0 ] || return 0
    log "stopping ${#left[@]} process(es) (up to ${timeout}s)"
    deadline=$((SECONDS + timeout))
    for pid in "${left[@]}"; do
        while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if running "$pid"; then
            log "pid $pid did not stop in time; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # Reap it here, quietly: bash would otherwise print a "Killed" job notice.
        { wait "$pid"; } 2>/dev/null || true
        REAPED[$pid]=1
    done
}

# wait_services_ready SECONDS NAME...: waits until `ready NAME` holds for every NAME; fails fast
# when one exits meanwhile. The caller defines `ready NAME` and `log_tail NAME`, and keeps each
# NAME's pid in the associative array PID.
wait_services_ready() {
    local timeout=$1 deadline svc pending still
    shift
    deadline=$((SECONDS + timeout))
    pending=("$@")
    while [ "${#pending[@]}" -gt 0 ]; do
        still=()
        for svc in "${pending[@]}"; do
            if ready "$svc"; then
                log "$svc is ready"
            elif ! running "${PID[$svc]}"; then
                log_tail "$svc"
                die "$svc exited during start-up"
            else
                still+=("$svc")
            fi
        done
        pending=("${still[@]}")
        [ "${#pending[@]}" -eq 0 ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            for svc in "${pending[@]}"; do log_tail "$svc"; done
            die "not ready after ${timeout}s: ${pending[*]} (GET /health/ready did not return 200)"
        fi
        sleep 1
    done
}

# ---------------------------------------------------------------------------------------
# Rust

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # rustup installs here without touching PATH in non-login shells.
        # shellcheck source=/dev/null
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: a Rust toolchain 1.88 or newer is required. Install it with rustup (https://rustup.rs; Debian's own rustc is too old), then re-run."
    local version
    version="$(rustc --version 2>/dev/null | awk '{print $2}')"
    if [ -n "$version" ] && [ "$(printf '%s\n' 1.88.0 "${version%%-*}" | sort -V | head -n1)" != 1.88.0 ]; then
        die "rustc $version is too old: Rust 1.88 or newer is required (rustup update stable)"
    fi
    log "using $(cargo --version)"
    ensure_build_tools
}

# What cargo needs from the system besides Rust: `cc` to link every binary and build script
# (rustc does not link by itself), and a CA bundle to fetch crates over HTTPS (the services trust
# the same bundle for an https:// auth.jwks_url). The one crate that compiles C, aws-lc-sys (the
# crypto of reqwest's rustls), needs only that gcc: no cmake, clang or pkg-config.
ensure_build_tools() {
    local need=()
    if ! command -v cc >/dev/null 2>&1; then
        need=(gcc libc6-dev)
    elif command -v dpkg-query >/dev/null 2>&1 && ! deb_installed libc6-dev; then
        need=(libc6-dev) # gcc without it cannot find crt1.o or libc to link against
    fi
    if command -v dpkg-query >/dev/null 2>&1 && ! deb_installed ca-certificates; then
        need+=(ca-certificates)
    fi
    [ "${#need[@]}" -gt 0 ] || return 0
    can_apt ||
        die "the build needs ${need[*]} (the C linker cc, and CA certificates to fetch crates), which cannot be installed here without apt-get and root: run 'apt-get install ${need[*]}' as root, then re-run."
    log "the build needs ${need[*]} (the C linker cc, and CA certificates to fetch crates): installing"
    apt_install "${need[@]}"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL

# pg_isready exit codes: 0 accepting, 1 rejecting (starting up), 2 no answer, 3 bad call.
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

pg_connects() { psql "$DEPLOY_PG_URL" -Atqc 'select 1' >/dev/null 2>&1; }

# Starts (or first creates) the local cluster that owns port 5432.
_start_postgres_cluster() {
    local ver name status
    read -r ver name status < <(pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 { print $1, $2, $4; exit }') || true
    if [ -z "${ver:-}" ]; then
        if [ -n "$(pg_lsclusters --no-header 2>/dev/null)" ]; then
            pg_lsclusters >&2 || true
            die "PostgreSQL clusters exist, but none is configured for port 5432"
        fi
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
        [ -n "$ver" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
        name=main
        log "creating PostgreSQL cluster $ver/$name on port 5432"
        as_root pg_createcluster "$ver" "$name" --port 5432 >&2 || die "pg_createcluster $ver $name failed"
    elif [ "$status" = online ]; then
        # Running but not answering on 127.0.0.1: starting it again would not help.
        die "PostgreSQL $ver/$name is online but does not answer on 127.0.0.1:5432 (check listen_addresses in /etc/postgresql/$ver/$name/postgresql.conf)"
    fi
    log "starting PostgreSQL cluster $ver/$name"
    if has_systemd; then
        as_root pg_ctlcluster "$ver" "$name" start >&2
    else
        # No init system in containers: let pg_ctlcluster start the postmaster itself.
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2
    fi || die "could not start PostgreSQL $ver/$name (see /var/log/postgresql/postgresql-$ver-$name.log)"
}

ensure_postgres() {
    if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
        log "PostgreSQL answers on 127.0.0.1:5432, reusing it"
    elif ! command -v pg_isready >/dev/null 2>&1 && port_open 127.0.0.1 5432; then
        log "something answers on 127.0.0.1:5432, reusing it (installing the PostgreSQL client)"
        apt_install postgresql-client
    else
        apt_install postgresql
        # Installing may have started it already (Debian's postinst tries to); else is it starting?
        if ! pg_ready; then
            local rc=0
            pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1 || rc=$?
            [ "$rc" -eq 1 ] || _start_postgres_cluster # 1 = already starting up: just wait
        fi
        wait_until "PostgreSQL on 127.0.0.1:5432" "$DEPLOY_WAIT_SECONDS" pg_ready
        log "PostgreSQL is ready on 127.0.0.1:5432"
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client

    if ! pg_connects; then
        # Debian's default pg_hba.conf wants a password (scram) on 127.0.0.1; the stock
        # postgres role has none. Set it through the local socket (peer auth as OS user postgres).
        # With "trust" auth we never get here: any password is accepted.
        log "cannot log in as postgres/postgres over TCP; setting the postgres role's password"
        if id postgres >/dev/null 2>&1; then
            (cd / && as_root runuser -u postgres -- psql -p 5432 -Atq \
                -c "ALTER USER postgres PASSWORD 'postgres'") >&2 ||
                log "could not set the password through the local socket"
        fi
        pg_connects || {
            psql "$DEPLOY_PG_URL" -Atqc 'select 1' >&2 || true
            die "cannot connect to $DEPLOY_PG_URL (see the psql error above)"
        }
    fi
    log "PostgreSQL login $DEPLOY_PG_URL works"
}

# ensure_databases NAME...: creates each database that does not exist yet.
ensure_databases() {
    local db exists
    for db in "$@"; do
        exists="$(psql "$DEPLOY_PG_URL" -v ON_ERROR_STOP=1 -Atq -v db="$db" \
            <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")" ||
            die "cannot query pg_database"
        if [ "$exists" = 1 ]; then
            log "database $db exists"
            continue
        fi
        log "creating database $db"
        psql "$DEPLOY_PG_URL" -v ON_ERROR_STOP=1 -Atq -v db="$db" \
            <<<"SELECT format('CREATE DATABASE %I', :'db') \gexec" >&2 ||
            die "could not create database $db"
    done
}

# drop_databases NAME...: drops each database, closing its connections.
drop_databases() {
    local db
    for db in "$@"; do
        log "dropping database $db"
        psql "$DEPLOY_PG_URL" -v ON_ERROR_STOP=1 -Atq -v db="$db" \
            <<<"SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec" >&2 ||
            die "could not drop database $db"
    done
}

# ---------------------------------------------------------------------------------------
# RabbitMQ

rabbit_api_up() {
    curl -sf -o /dev/null --max-time 3 -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
        "$DEPLOY_RABBITMQ_API/api/overview"
}

amqp_up() { port_open 127.0.0.1 5672; }

# True when this machine has a local RabbitMQ node whose CLI tools we can drive.
rabbit_local() { command -v rabbitmqctl >/dev/null 2>&1 && command -v rabbitmq-plugins >/dev/null 2>&1; }

_start_rabbitmq() {
    mkdir -p "$DEPLOY_RUN_DIR"
    local out="$DEPLOY_RUN_DIR/rabbitmq-start.log"
    log "starting RabbitMQ (output in $out)"
    # Debian's /usr/sbin/rabbitmq-server wrapper switches to the rabbitmq user when run as root.
    # No stdio is inherited so the daemon never holds a caller's pipe open.
    if has_systemd; then
        as_root service rabbitmq-server start </dev/null >"$out" 2>&1
    else
        as_root rabbitmq-server -detached </dev/null >"$out" 2>&1 ||
            as_root service rabbitmq-server start </dev/null >>"$out" 2>&1
    fi || {
        tail -n 20 "$out" >&2 || true
        die "could not start RabbitMQ"
    }
}

ensure_rabbitmq() {
    apt_install curl
    if amqp_up; then
        log "RabbitMQ answers on 127.0.0.1:5672, reusing it"
    else
        apt_install rabbitmq-server
        # Debian's postinst may have started it already.
        amqp_up || _start_rabbitmq
        wait_until "RabbitMQ on 127.0.0.1:5672" "$DEPLOY_WAIT_SECONDS" amqp_up
        # The AMQP listener opens before boot has fully finished; plugins need a booted node.
        as_root rabbitmqctl -q await_startup --timeout "$DEPLOY_WAIT_SECONDS" >&2 ||
            die "RabbitMQ did not finish booting (see /var/log/rabbitmq/)"
        log "RabbitMQ is ready on 127.0.0.1:5672"
    fi

    if rabbit_api_up; then
        log "RabbitMQ management API answers on $DEPLOY_RABBITMQ_API"
    else
        rabbit_local ||
            die "the RabbitMQ management API does not answer on $DEPLOY_RABBITMQ_API and this machine has no rabbitmq-plugins: enable rabbitmq_management on the broker"
        _enable_rabbit_plugin rabbitmq_management
        wait_until "the RabbitMQ management API on $DEPLOY_RABBITMQ_API" "$DEPLOY_WAIT_SECONDS" rabbit_api_up
        log "RabbitMQ management API answers on $DEPLOY_RABBITMQ_API"
    fi
    ensure_rabbitmq_prometheus
}

# _enable_rabbit_plugin NAME: enables a plugin of the local node unless it is on already.
_enable_rabbit_plugin() {
    # "is_enabled" exits 69 when the plugin is off; "enable" works on a running node.
    if as_root rabbitmq-plugins -q is_enabled "$1" >/dev/null 2>&1; then
        log "$1 is enabled; waiting for its HTTP listener"
        return 0
    fi
    log "enabling the $1 plugin"
    as_root rabbitmq-plugins -q enable "$1" >&2 || die "rabbitmq-plugins enable $1 failed"
    # As root the Debian wrapper runs rabbitmq-plugins as root, which leaves
    # enabled_plugins owned by root; hand it back so the rabbitmq user can rewrite it.
    if [ -f /etc/rabbitmq/enabled_plugins ] && id rabbitmq >/dev/null 2>&1; then
        as_root chown rabbitmq:rabbitmq /etc/rabbitmq/enabled_plugins || true
    fi
}

rabbit_prometheus_up() { curl -sf -o /dev/null --max-time 3 "$DEPLOY_RABBITMQ_PROMETHEUS/metrics"; }

# RabbitMQ's own metrics (queue depths, connections, node memory) for deploy/observability/'s
# Prometheus. Optional for the services: a broker we cannot reconfigure only gets a warning.
ensure_rabbitmq_prometheus() {
    if rabbit_prometheus_up; then
        log "RabbitMQ Prometheus endpoint answers on $DEPLOY_RABBITMQ_PROMETHEUS/metrics"
        return 0
    fi
    if ! rabbit_local; then
        log "WARNING: RabbitMQ's Prometheus endpoint does not answer on $DEPLOY_RABBITMQ_PROMETHEUS and this machine has no rabbitmq-plugins: enable rabbitmq_prometheus on the broker to scrape it"
        return 0
    fi
    _enable_rabbit_plugin rabbitmq_prometheus
    wait_until "RabbitMQ's Prometheus endpoint on $DEPLOY_RABBITMQ_PROMETHEUS" "$DEPLOY_WAIT_SECONDS" rabbit_prometheus_up
    log "RabbitMQ Prometheus endpoint answers on $DEPLOY_RABBITMQ_PROMETHEUS/metrics"
}

# ---------------------------------------------------------------------------------------
# Private RabbitMQ nodes (bench.sh's own node, cluster.sh's three)

RABBITMQ_LIB_BIN=/usr/lib/rabbitmq/bin

# start_rabbit_node NODENAME HOME DIR AMQP_PORT DIST_PORT OUTFILE [ERL_ARGS]: a node of the
# installed server (not Debian's service), in the background; sets RABBIT_NODE_PID (the
# launcher's pid). DIR must hold rabbitmq.conf and enabled_plugins; HOME the .erlang.cookie
# (mode 400 or 600: Erlang refuses a cookie others can read), which nodes sharing it can
# cluster with and rabbit_ctl uses. The node keeps its data in DIR/mnesia and its logs in
# DIR/log, runs as the rabbitmq user when we are root, and listens on 127.0.0.1 only.
start_rabbit_node() {
    local name=$1 home=$2 dir=$3 amqp=$4 dist=$5 out=$6 erl_args=${7:-}
    local server=$RABBITMQ_LIB_BIN/rabbitmq-server
    [ -x "$server" ] || die "$server is missing (is rabbitmq-server installed?)"
    mkdir -p "$dir/mnesia" "$dir/log"
    [ -f "$dir/rabbitmq-env.conf" ] || : >"$dir/rabbitmq-env.conf"
    local -a as_user=()
    if [ "$(id -u)" = 0 ]; then
        chown -R rabbitmq:rabbitmq "$home" "$dir"
        as_user=(runuser -u rabbitmq --)
    fi
    (
        cd "$dir"
        exec "${as_user[@]}" env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$home" LANG=C.UTF-8 \
            RABBITMQ_NODENAME="$name" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
            RABBITMQ_NODE_PORT="$amqp" RABBITMQ_DIST_PORT="$dist" \
            RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
            RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
            RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
            RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} $erl_args" \
            "$server"
    ) </dev/null >"$out" 2>&1 &
    RABBIT_NODE_PID=$!
}

# rabbit_ctl HOME NODENAME ARGS...: rabbitmqctl against a node started by start_rabbit_node,
# with the cookie in HOME (as root, the Debian wrapper in /usr/sbin would switch users and HOME).
rabbit_ctl() {
    local home=$1 node=$2
    shift 2
    HOME="$home" "$RABBITMQ_LIB_BIN/rabbitmqctl" -n "$node" "$@"
}

# wait_rabbit_node HOME NODENAME PID OUTFILE SECONDS: waits until the node that start_rabbit_node
# started as PID has booted (on a clustered node's restart, that includes finding its peers);
# dies with the end of OUTFILE when it exits first.
wait_rabbit_node() {
    local home=$1 node=$2 pid=$3 out=$4 deadline=$((SECONDS + $5))
    until rabbit_ctl "$home" "$node" -q await_startup --timeout 5 >/dev/null 2>&1; do
        if ! running "$pid"; then
            tail -n 30 "$out" >&2 || true
            die "$node exited during start-up (see $out and its log directory)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "$node did not boot in $5s (see its log directory)"
        sleep 1
    done
    log "$node is up"
}

# join_rabbit_cluster HOME FIRST NODE...: each NODE joins FIRST's cluster unless it is in it
# already (a restarted cluster keeps its members); then all of them must be running.
join_rabbit_cluster() {
    local home=$1 first=$2 node count
    shift 2
    for node in "$@"; do
        if rabbit_ctl "$home" "$node" -q cluster_status --formatter json |
            jq -e --arg n "$first" '.disk_nodes | index($n)' >/dev/null; then
            continue
        fi
        log "$node joins $first"
        rabbit_ctl "$home" "$node" -q stop_app >&2 &&
            rabbit_ctl "$home" "$node" -q join_cluster "$first" >&2 &&
            rabbit_ctl "$home" "$node" -q start_app >&2 || die "$node could not join $first"
    done
    count="$(rabbit_ctl "$home" "$first" -q cluster_status --formatter json | jq '.running_nodes | length')" ||
        die "cannot read the cluster's status from $first"
    [ "$count" = $(($# + 1)) ] || die "the cluster runs $count nodes, not $(($# + 1))"
    log "the cluster runs $count nodes"
}

# rabbit_put_user API USER PASSWORD: creates (or updates) USER with the "management" tag and
# every permission on vhost /, through the management API at API as guest (which answers from
# this machine only). The body goes on stdin: no password on a command line.
rabbit_put_user() {
    local api=$1 user=$2 code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -u guest:guest -X PUT \
        -H 'content-type: application/json' --data-binary @- "$api/api/users/$user" \
        <<<"{\"password\":\"$3\",\"tags\":\"management\"}")" || true
    case $code in 201 | 204) ;; *) die "could not create the RabbitMQ user $user (HTTP $code)" ;; esac
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -u guest:guest -X PUT \
        -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' \
        "$api/api/permissions/%2F/$user")" || true
    case $code in 201 | 204) ;; *) die "could not grant $user on vhost / (HTTP $code)" ;; esac
}

# apt_install_without_service PACKAGE: installs a package whose own system service is not
# wanted (the scripts run private instances on their own ports): if installing started it, it is
# stopped and disabled at once, so it holds no port.
apt_install_without_service() {
    local package=$1 fresh=0
    deb_installed "$package" || fresh=1
    apt_install "$package"
    [ "$fresh" = 1 ] || return 0
    if has_systemd; then
        as_root systemctl disable --now "$package" >&2 2>/dev/null || true
    elif [ -x "/etc/init.d/$package" ]; then
        as_root service "$package" stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null 2>&1 && as_root update-rc.d "$package" disable >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------------------------------
# nginx (cluster.sh's load balancer)

# Debian's nginx, run by cluster.sh as a private instance with its own configuration. The
# package's own service is not wanted (it would hold port 80): if installing started it, it is
# stopped and disabled at once.
ensure_nginx() {
    command -v nginx >/dev/null 2>&1 && return 0
    apt_install_without_service nginx
    command -v nginx >/dev/null 2>&1 || die "the nginx package is installed but nginx is not on PATH"
    log "using $(nginx -v 2>&1)"
}

# ---------------------------------------------------------------------------------------
# Prometheus (deploy/observability/)

# promtool checks the alert rules and runs their unit tests; Debian's `prometheus` package ships
# it with the server. The package's own service is not wanted (run.sh starts a Prometheus of its
# own on the fleet's ports): if installing started it, it is stopped and disabled at once, so it
# does not hold port 9090.
ensure_promtool() {
    if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
        return 0
    fi
    apt_install_without_service prometheus
    command -v promtool >/dev/null 2>&1 || die "the prometheus package is installed but promtool is not on PATH"
    log "using $(promtool --version 2>&1 | head -n1)"
}

# Checks deploy/observability/: the scrape configuration, the rules, and the rules' unit tests.
check_observability() {
    local dir="$DEPLOY_DIR/observability"
    ensure_promtool
    log "promtool check config / check rules / test rules (deploy/observability/)"
    promtool check config "$dir/prometheus.yml" >&2 &&
        promtool check rules "$dir/rules.yml" >&2 &&
        promtool test rules "$dir/rules.test.yml" >&2
}

# ---------------------------------------------------------------------------------------
# Mail catcher (the notification service's SMTP server on this machine)

# Debian's aiosmtpd under Debian's python (not a pyenv or venv python earlier on PATH): an SMTP
# server that keeps every message it receives as a file of a Maildir. The notification tests
# start one per test; deploy/run.sh one for the fleet.
MAIL_CATCHER_PYTHON=/usr/bin/python3

ensure_mail_catcher() {
    if [ -x "$MAIL_CATCHER_PYTHON" ] && "$MAIL_CATCHER_PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
        return 0
    fi
    apt_install python3-aiosmtpd
    "$MAIL_CATCHER_PYTHON" -c 'import aiosmtpd' 2>/dev/null ||
        die "python3-aiosmtpd is installed but $MAIL_CATCHER_PYTHON cannot import aiosmtpd"
    log "mail catcher: aiosmtpd installed"
}

# start_mail_catcher MAILDIR PORT LOGFILE: the catcher on 127.0.0.1:PORT, in the background;
# keeps its pid in the caller's associative array PID (as "mail-catcher") and returns once it
# accepts connections.
# A Maildir needs its three folders: aiosmtpd makes them only when the directory is new, and
# refuses every message (500) in a directory an earlier run left without them.
start_mail_catcher() {
    local dir=$1 port=$2 logfile=$3
    mkdir -p "$dir/new" "$dir/cur" "$dir/tmp"
    (
        exec "$MAIL_CATCHER_PYTHON" -m aiosmtpd -n -l "127.0.0.1:$port" \
            -c aiosmtpd.handlers.Mailbox "$dir"
    ) </dev/null >"$logfile" 2>&1 &
    PID[mail-catcher]=$!
    wait_until "the mail catcher on 127.0.0.1:$port" "$DEPLOY_WAIT_SECONDS" port_open 127.0.0.1 "$port"
    log "started the mail catcher (pid ${PID[mail-catcher]}) on 127.0.0.1:$port, Maildir $dir"
}

# ---------------------------------------------------------------------------------------
# Browser (the console's browser tests, orchestrator/tests/console)

# Debian's Chromium and its chromedriver, which the tests start themselves (headless, on a free
# port). The tests look for /usr/bin/chromium and /usr/bin/chromedriver unless SAGA_CHROMIUM or
# SAGA_CHROMEDRIVER name others.
ensure_browser() {
    local chromium="${SAGA_CHROMIUM:-/usr/bin/chromium}" driver="${SAGA_CHROMEDRIVER:-/usr/bin/chromedriver}"
    if [ -x "$chromium" ] && [ -x "$driver" ]; then
        return 0
    fi
    apt_install chromium chromium-driver
    [ -x "$chromium" ] || die "chromium is installed but $chromium is missing (set SAGA_CHROMIUM)"
    [ -x "$driver" ] || die "chromium-driver is installed but $driver is missing (set SAGA_CHROMEDRIVER)"
    log "using $("$driver" --version 2>/dev/null | head -n1)"
}

# ---------------------------------------------------------------------------------------
# Test leftovers

# Percent-encodes one URL path segment.
urlencode() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# Drops the private databases and vhosts that killed or crashed test runs left behind.
# Do not run it while another test run is going on: it would pull the rug from under it.
cleanup_test_leftovers() {
    local db vhost code listing dbs=() vhosts=()
    listing="$(psql "$DEPLOY_PG_URL" -v ON_ERROR_STOP=1 -Atqc \
        "SELECT datname FROM pg_database WHERE left(datname, 9) = 'sagatest_' ORDER BY 1")" ||
        die "cannot list databases"
    [ -z "$listing" ] || mapfile -t dbs <<<"$listing"
    for db in "${dbs[@]}"; do
        log "dropping leftover database $db"
        psql "$DEPLOY_PG_URL" -v ON_ERROR_STOP=1 -Atq -v db="$db" \
            <<<"SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec" >&2 ||
            die "could not drop database $db"
    done

    listing="$(curl -sf --max-time 10 -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
        "$DEPLOY_RABBITMQ_API/api/vhosts?columns=name")" ||
        die "cannot list RabbitMQ vhosts through $DEPLOY_RABBITMQ_API"
    # Only "name" columns are returned; test vhost names carry no quotes or backslashes.
    listing="$(grep -o '"name":"sagatest-[^"\\]*"' <<<"$listing" | sed 's/^"name":"//; s/"$//')" || true
    [ -z "$listing" ] || mapfile -t vhosts <<<"$listing"
    for vhost in "${vhosts[@]}"; do
        log "deleting leftover vhost $vhost"
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE \
            -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
            "$DEPLOY_RABBITMQ_API/api/vhosts/$(urlencode "$vhost")")" || true
        case $code in
        204 | 404) ;; # 404: already gone
        *) die "could not delete vhost $vhost (HTTP $code)" ;;
        esac
    done
    log "test leftovers: dropped ${#dbs[@]} database(s), ${#vhosts[@]} vhost(s)"
}
