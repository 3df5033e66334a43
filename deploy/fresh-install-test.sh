#!/usr/bin/env bash
# Runs a newcomer's first `./deploy/run.sh` in a fresh Debian 12 root that has only a Rust
# toolchain, and checks that it works: run.sh installs the C linker, installs and starts
# PostgreSQL and RabbitMQ, builds and starts the fleet; this script then waits for /health/ready
# on the three services, places one order (the operator token run.sh generated for the account
# and product, a customer token from deploy/token.sh for the order), sees it COMPLETED and
# stops run.sh with SIGTERM.
# A cold release build makes it far too slow for deploy/test.sh. Run it on its own, as root:
#   ./deploy/fresh-install-test.sh        (exit status 0 when every step passed)
#
# How the run is isolated:
# - The root is `debootstrap --variant=minbase bookworm`, built once under FRESH_CACHE and never
#   written to again: each run mounts an overlay on it, so it starts pristine every time.
# - The run has its own PID, mount, UTS and network namespaces. Its 127.0.0.1 is its own
#   loopback, so its PostgreSQL (5432), RabbitMQ (5672, 15672) and services (3000-3002) never
#   meet the host's. Its only way out is slirp4netns (user-mode NAT with the host's loopback
#   disabled), so apt-get and cargo reach the Debian mirror and crates.io as a newcomer's would
#   and run.sh runs unmodified, installs and all, from its first line to its last.
# - Rust is the host's rustup toolchain, bind-mounted read-only at the same paths (this machine
#   may not be able to download one). The root's ~/.cargo has only rustup's env file: the crates
#   are fetched anew.
# - The repository's tracked and not-ignored files are copied in, as a clone would have them,
#   and so are the host's local CA certificates (/usr/local/share/ca-certificates), which a
#   machine behind the same TLS-inspecting proxy would trust too.
# When the namespaces' first process exits, the kernel kills everything left in them (the
# database, the broker) and drops their mounts; the EXIT trap then deletes the overlay's layer.
#
# Settings (defaults in brackets):
#   FRESH_CACHE   [/var/tmp/saga-fresh-root]  where the pristine root is kept
#   FRESH_MIRROR  [http://deb.debian.org/debian]
#   FRESH_TIMEOUT [3600] seconds run.sh gets to install, build and report ready
#   FRESH_KEEP    [0] 1 keeps the run's directory (the root's changes) for a post-mortem
# Logs of the last run: deploy/.run/fresh-install/ (run.log is run.sh's whole output).
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FRESH_CACHE="${FRESH_CACHE:-/var/tmp/saga-fresh-root}"
FRESH_MIRROR="${FRESH_MIRROR:-http://deb.debian.org/debian}"
FRESH_TIMEOUT="${FRESH_TIMEOUT:-3600}"
FRESH_BASE="$FRESH_CACHE/bookworm"
FRESH_LOGS="$DEPLOY_RUN_DIR/fresh-install"
# Where the repository and the toolchain appear inside the root.
ROOT_HOME=/root
ROOT_REPO=$ROOT_HOME/saga
PORTS=(3000 3001 3002)

step() { printf '[fresh] %s\n' "$*" >&2; }
fail() {
    printf '[fresh] FAILED: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------
# Inside the namespaces (pid 1 of the new PID namespace, still on the host's file system).

# The few device nodes a Debian root needs, on a tmpfs of its own rather than the host's /dev.
make_dev() {
    local dev=$1
    mount -t tmpfs -o mode=755,nosuid tmpfs "$dev"
    mknod -m 666 "$dev/null" c 1 3
    mknod -m 666 "$dev/zero" c 1 5
    mknod -m 666 "$dev/full" c 1 7
    mknod -m 666 "$dev/random" c 1 8
    mknod -m 666 "$dev/urandom" c 1 9
    mknod -m 666 "$dev/tty" c 5 0
    ln -s /proc/self/fd "$dev/fd"
    ln -s /proc/self/fd/0 "$dev/stdin"
    ln -s /proc/self/fd/1 "$dev/stdout"
    ln -s /proc/self/fd/2 "$dev/stderr"
    mkdir "$dev/pts" "$dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$dev/pts"
    ln -s pts/ptmx "$dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dev/shm" # PostgreSQL's shared memory
}

prepare_root() {
    local root=$1 run=$2
    mount -t overlay overlay -o "lowerdir=$FRESH_BASE,upperdir=$run/upper,workdir=$run/work" "$root"
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"
    make_dev "$root/dev"

    # What an installer writes for a machine: its name, resolvable, and slirp4netns's DNS.
    hostname fresh-root
    echo fresh-root >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tfresh-root\n::1\tlocalhost\n' >"$root/etc/hosts"
    echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
    # A network that inspects TLS has its own CA, which every machine on it trusts; the root
    # gets the host's, and run.sh's install of ca-certificates adds them to its bundle.
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    fi

    mkdir -p "$root$ROOT_HOME/.rustup" "$root$ROOT_HOME/.cargo/bin" "$root$ROOT_REPO"
    mount -o bind,ro "$FRESH_RUSTUP_HOME" "$root$ROOT_HOME/.rustup"
    mount -o bind,ro "$FRESH_CARGO_BIN" "$root$ROOT_HOME/.cargo/bin"
    # rustup's installer leaves this file for shells that do not have ~/.cargo/bin on PATH.
    printf '%s\n' 'case ":${PATH}:" in *:"$HOME/.cargo/bin":*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac' \
        >"$root$ROOT_HOME/.cargo/env"

    git -C "$DEPLOY_ROOT" ls-files -z --cached --others --exclude-standard |
        tar -C "$DEPLOY_ROOT" --null --files-from=- --ignore-failed-read -cf - 2>/dev/null |
        tar -C "$root$ROOT_REPO" -xf - || fail "could not copy the repository into the root"
}

# True while the process runs (a zombie, exited but not reaped, counts as stopped).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/health/ready")" = 200 ]; }

# http TOKEN METHOD PORT PATH [BODY]: prints the body; fails on a status other than 2xx.
# The token is sent as a bearer token (the operator's, or a customer's JWT).
http() {
    local args=(-sS --fail-with-body --max-time 10 -H "Authorization: Bearer $1" -X "$2"
        "http://127.0.0.1:$3$4")
    [ $# -lt 5 ] || args+=(-H 'content-type: application/json' -d "$5")
    curl "${args[@]}"
}

# The run.sh log must show this [deploy] line (a fixed string), or the step did not happen.
expect_log() { grep -qF "[deploy] $1" "$FRESH_LOGS/run.log" || fail "run.sh never said \"$1\" (see $FRESH_LOGS/run.log)"; }

# Without root or sudo the scripts cannot install the linker: they must stop with one line that
# names the packages. An unprivileged user runs ensure_rust with a stand-in toolchain (it cannot
# read root's) while cc is still missing.
refuses_without_root() {
    local root=$1 out
    mkdir -p "$root/tmp/no-root/bin"
    cp "$DEPLOY_DIR/lib.sh" "$root/tmp/no-root/"
    printf '#!/bin/sh\necho "rustc 1.95.0"\n' >"$root/tmp/no-root/bin/rustc"
    printf '#!/bin/sh\necho "cargo 1.95.0"\n' >"$root/tmp/no-root/bin/cargo"
    chmod -R a+rX "$root/tmp/no-root"
    chmod a+x "$root/tmp/no-root/bin/"*
    [ ! -e "$root/usr/bin/cc" ] || fail "the fresh root already has cc"
    if out="$(chroot --userspec=nobody:nogroup "$root" env -i HOME=/tmp/no-root \
        PATH=/tmp/no-root/bin:/usr/bin:/bin bash -c '. /tmp/no-root/lib.sh && ensure_rust' 2>&1)"; then
        fail "ensure_rust passed for a user who cannot install cc: $out"
    fi
    grep -qF "[deploy] ERROR: the build needs gcc libc6-dev ca-certificates" <<<"$out" ||
        fail "ensure_rust without root did not name the packages to install: $out"
    rm -rf "$root/tmp/no-root"
    step "ok: without root, ensure_rust stops with: ${out##*ERROR: }"
}

inside() {
    local run=$1 root=$1/root deadline run_pid status port order id state operator customer
    # The services' logs live in the root, which goes away with the namespaces.
    # shellcheck disable=SC2064 # expanded now: the trap runs after this function's locals are gone
    trap "cp -f '$root$ROOT_REPO/deploy/.run/'*.log '$FRESH_LOGS/' 2>/dev/null || true" EXIT
    prepare_root "$root" "$run"

    step "waiting for slirp4netns to give the namespace a route out"
    ip link set lo up
    deadline=$((SECONDS + 30))
    until grep -q '^tap0[[:space:]]00000000' /proc/net/route; do
        [ "$SECONDS" -lt "$deadline" ] || fail "no default route via tap0 after 30s (see $FRESH_LOGS/slirp4netns.log)"
        sleep 0.2
    done

    refuses_without_root "$root"

    step "starting ./deploy/run.sh in the root (its [deploy] lines follow; everything in $FRESH_LOGS/run.log)"
    # A login-like environment: no cargo on PATH, so run.sh finds it through ~/.cargo/env.
    env -i HOME=$ROOT_HOME USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$root" /bin/bash -c "cd $ROOT_REPO && exec ./deploy/run.sh" \
        </dev/null > >(tee "$FRESH_LOGS/run.log" | grep --line-buffered '^\[deploy\]' >&2) 2>&1 &
    run_pid=$!

    deadline=$((SECONDS + FRESH_TIMEOUT))
    for port in "${PORTS[@]}"; do
        until ready "$port"; do
            alive "$run_pid" || fail "run.sh exited before the service on port $port was ready (see $FRESH_LOGS/run.log)"
            [ "$SECONDS" -lt "$deadline" ] || fail "port $port not ready after ${FRESH_TIMEOUT}s (see $FRESH_LOGS/run.log)"
            sleep 2
        done
    done
    # run.sh prints this only after its own readiness checks, just after the probes above pass.
    deadline=$((SECONDS + 30))
    until grep -qF '[deploy] all services are ready' "$FRESH_LOGS/run.log"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "run.sh did not report the fleet ready"
        sleep 0.5
    done
    step "ok: /health/ready answers 200 on ports ${PORTS[*]}"

    expect_log "the build needs gcc libc6-dev ca-certificates"
    chroot "$root" cc --version >/dev/null 2>&1 || fail "cc does not run in the root after run.sh installed it"
    step "ok: run.sh installed the C linker (gcc, libc6-dev) and CA certificates, and said so"
    expect_log "PostgreSQL is ready on 127.0.0.1:5432"
    expect_log "RabbitMQ is ready on 127.0.0.1:5672"
    expect_log "RabbitMQ management API answers"
    step "ok: run.sh installed and started PostgreSQL and RabbitMQ (with its management API)"

    # The newcomer's credentials: the operator token run.sh generated (and wrote, mode 600),
    # and a customer token from deploy/token.sh, run in the root as the README shows.
    operator="$(cat "$root$ROOT_REPO/deploy/.run/operator-token")" || fail "run.sh wrote no deploy/.run/operator-token"
    [ "$(stat -c %a "$root$ROOT_REPO/deploy/.run/jwt-secret")" = 600 ] || fail "deploy/.run/jwt-secret is not mode 600"
    customer="$(env -i HOME=$ROOT_HOME USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$root" /bin/bash -c "cd $ROOT_REPO && ./deploy/token.sh c-1" 2>"$FRESH_LOGS/token.log")" ||
        fail "./deploy/token.sh c-1 failed (see $FRESH_LOGS/token.log)"
    step "ok: run.sh wrote the operator token; deploy/token.sh minted a customer token"

    http "$operator" PUT 3001 /api/accounts/c-1 '{"balance_cents": 10000}' >/dev/null || fail "could not create account c-1"
    http "$operator" PUT 3002 /api/products/p-1 '{"stock": 10}' >/dev/null || fail "could not create product p-1"
    order="$(http "$customer" POST 3000 /api/orders \
        '{"customer_id": "c-1", "items": [{"product_id": "p-1", "quantity": 2, "unit_price_cents": 1999}]}')" ||
        fail "POST /api/orders failed: $order"
    id="$(grep -o '"order_id":"[^"]*"' <<<"$order" | head -n1 | cut -d'"' -f4)"
    [ -n "$id" ] || fail "no order_id in the answer to POST /api/orders: $order"
    step "placed order $id; waiting for COMPLETED"
    deadline=$((SECONDS + 60))
    while :; do
        order="$(http "$customer" GET 3000 "/api/orders/$id")" || fail "GET /api/orders/$id failed: $order"
        state="$(grep -o '"status":"[A-Z_]*"' <<<"$order" | head -n1 | cut -d'"' -f4)"
        case $state in
        COMPLETED) break ;;
        FAILED) fail "order $id FAILED: $order" ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || fail "order $id still $state after 60s: $order"
        sleep 0.5
    done
    grep -Eq '"available": ?8[,}]' <<<"$(http "$operator" GET 3002 /api/products/p-1)" || fail "product p-1 does not show 8 available"
    step "ok: order $id is COMPLETED and the stock went from 10 to 8"

    kill -TERM "$run_pid"
    deadline=$((SECONDS + 60)) # run.sh gives each service 20 s, then kills it
    while alive "$run_pid"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "run.sh did not stop within 60s of SIGTERM"
        sleep 0.5
    done
    status=0
    wait "$run_pid" || status=$?
    [ "$status" -eq 0 ] || fail "run.sh exited with status $status after SIGTERM"
    for port in "${PORTS[@]}"; do
        ! port_open 127.0.0.1 "$port" || fail "something still listens on port $port after run.sh stopped"
    done
    step "ok: run.sh stopped the fleet on SIGTERM and exited 0"
}

# ---------------------------------------------------------------------------------------
# On the host.

build_base() {
    mkdir -p "$FRESH_CACHE"
    exec 9>"$FRESH_CACHE/.lock"
    flock 9 # one build at a time; a finished root is only ever read
    if [ ! -x "$FRESH_BASE/bin/bash" ]; then
        step "debootstrap: building a bookworm root in $FRESH_BASE (once; about a minute)"
        rm -rf --one-file-system "$FRESH_BASE.tmp"
        debootstrap --variant=minbase bookworm "$FRESH_BASE.tmp" "$FRESH_MIRROR" \
            >"$FRESH_LOGS/debootstrap.log" 2>&1 || fail "debootstrap failed (see $FRESH_LOGS/debootstrap.log)"
        # debootstrap copies the host's name and resolver; the run writes its own.
        rm -f "$FRESH_BASE.tmp/etc/hostname" "$FRESH_BASE.tmp/etc/resolv.conf"
        mv "$FRESH_BASE.tmp" "$FRESH_BASE"
    fi
    exec 9>&-
}

NS_PID='' SLIRP_PID='' RUN=''
cleanup() {
    local status=$?
    trap '' INT TERM
    # unshare --kill-child: its child, pid 1 of the namespace, dies with it, and the kernel
    # then kills every process left in the namespace.
    [ -z "$NS_PID" ] || { kill -KILL "$NS_PID" 2>/dev/null || true; wait "$NS_PID" 2>/dev/null || true; }
    [ -z "$SLIRP_PID" ] || { kill -TERM "$SLIRP_PID" 2>/dev/null || true; wait "$SLIRP_PID" 2>/dev/null || true; }
    if [ -n "$RUN" ]; then
        ! mountpoint -q "$RUN/netns" || umount "$RUN/netns" || true
        if grep -qF " $RUN/" /proc/self/mountinfo; then
            step "something is still mounted under $RUN; not deleting it"
        elif [ "${FRESH_KEEP:-0}" = 1 ]; then
            step "kept the run's directory: $RUN"
        else
            rm -rf --one-file-system "$RUN"
        fi
    fi
    exit "$status"
}

outside() {
    local started=$SECONDS status=0 cargo
    [ "$(id -u)" -eq 0 ] || die "run it as root: it mounts file systems, chroots and creates namespaces"
    rm -rf "$FRESH_LOGS"
    mkdir -p "$FRESH_LOGS"
    apt_install debootstrap slirp4netns

    # The host's toolchain must be a rustup one: its proxies and toolchains are what get mounted.
    ensure_rust
    cargo="$(readlink -f "$(command -v cargo)")"
    export FRESH_CARGO_BIN
    FRESH_CARGO_BIN="$(dirname "$(command -v cargo)")"
    export FRESH_RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
    [ "$(basename "$cargo")" = rustup ] && [ -d "$FRESH_RUSTUP_HOME/toolchains" ] ||
        die "cargo ($cargo) is not a rustup proxy with toolchains in $FRESH_RUSTUP_HOME: this test mounts a rustup toolchain"

    build_base
    export FRESH_BASE FRESH_LOGS

    RUN="$(mktemp -d /var/tmp/saga-fresh-run.XXXXXX)"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir "$RUN/root" "$RUN/upper" "$RUN/work"

    # A network namespace bound to a file exists before anything runs in it, so slirp4netns
    # attaches to it and never to the host's.
    touch "$RUN/netns"
    unshare --net="$RUN/netns" true
    slirp4netns --netns-type=path --configure --mtu=65520 --disable-host-loopback "$RUN/netns" tap0 \
        >"$FRESH_LOGS/slirp4netns.log" 2>&1 &
    SLIRP_PID=$!

    step "fresh bookworm root in $RUN; namespaces: pid, mount, uts, net (slirp4netns)"
    nsenter --net="$RUN/netns" unshare --pid --mount --uts --fork --kill-child --mount-proc \
        "$DEPLOY_DIR/fresh-install-test.sh" --inside "$RUN" &
    NS_PID=$!
    wait "$NS_PID" || status=$?
    NS_PID=''
    [ "$status" -eq 0 ] || fail "the install path failed after $((SECONDS - started))s (exit status $status)"
    step "PASSED in $((SECONDS - started))s: fresh root -> run.sh -> ready -> order COMPLETED -> stopped"
}

if [ "${1:-}" = --inside ]; then
    inside "$2"
else
    outside
fi
