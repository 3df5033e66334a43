#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: starts the fleet in release mode (through deploy/run.sh) on its
# own ports, databases and RabbitMQ vhost, runs the standard benchmark with deploy/loadgen, samples
# the CPU time and resident memory of every process involved and the backlog (queued messages,
# unpublished outbox rows) over time, prints a table and stops the fleet.
#
# The standard benchmark:
#   1. warm-up:  closed loop, 32 clients, BENCH_WARMUP seconds (not reported);
#   2. peak:     closed loop, BENCH_CLIENTS clients, BENCH_DURATION seconds: the most the fleet
#                finishes per second when it always has work;
#   3. complete: closed loop, BENCH_CLIENTS clients, BENCH_COMPLETE_DURATION seconds, with every
#                order meant to complete (no declines, nothing out of stock): the most COMPLETED
#                sagas per second, the issue's first target;
#   4. open80:   open loop at BENCH_OPEN_FRACTION of the peak's finished sagas/s for
#                BENCH_STEADY_DURATION seconds: the latencies at a sustainable load, and whether
#                queues, outbox or memory grow over a long run (the issue's targets are there).
# Before the fleet starts, a 15 s pgbench calibration (the issue's yardstick: 3-insert
# transactions at 16 connections) records how fast this machine's PostgreSQL is, so results from
# machines of different speed can be compared; a CPU probe of about a second (a fixed bash loop,
# timed by its own CPU time, best of three) before the fleet and after every phase tells whether
# the machine's cores ran slower than usual during the run (a slow hour of the host), which
# pgbench does not show. Context switches per saga (the whole machine) are counted as well.
# A phase longer than a minute is also reported minute by minute (orders by when they were sent).
# A flush probe (a 4 KiB write and fsync every 100 ms) times the disk during each phase, whole
# phase and minute by minute: every hop of a saga waits for two flushes, and the calibration
# sees the disk only before the fleet starts. The kernel's pressure stall figures (PSI) tell,
# whole phase and minute by minute, how much of the time some task waited for a core and how
# much some task waited for I/O: what the latencies are made of besides work. Each rollover of
# the benchmark's broker's write-ahead log is recorded, and loadgen profiles the orders' latency
# by when they were sent against the nearest one (a rollover holds every queue up for a moment).
# Each phase seeds its own customers and products (ids prefixed with a per-run id) and checks the
# conservation invariants at its end; the databases and the vhost are created fresh per run.
#
# Settings (defaults in brackets):
#   BENCH_WARMUP [10]  BENCH_DURATION [60]  BENCH_STEADY_DURATION [600]  BENCH_CLIENTS [128]
#   BENCH_OPEN_FRACTION [0.8]  BENCH_COMPLETE_DURATION [60] (0: no complete phase)
#   BENCH_OPEN_RATE []  the open80 phase at this many orders per second instead of a fraction of
#                       the peak: to compare two settings at the same load, where their peaks,
#                       and so their 80 %, differ
#   BENCH_PROFILE [0]   1: record a CPU profile (perf, whole machine) for 20 s of the peak and
#                       of the open80 phase, from 10 s after each one's load starts, and
#                       summarise each by process and by code (perf-summary-PHASE.txt): a
#                       saga costs more CPU at 80 % than at peak, and the pair shows where
#   BENCH_STALL []      SERVICE:AT:FOR, e.g. payment:60:15: AT seconds into the open80 phase,
#                       freeze SERVICE (SIGSTOP) for FOR seconds, then let it go on, and measure
#                       how long the fleet takes to work off the backlog the pause left
#                       (stall.txt): what a long GC pause, a stalled disk or a VM's stolen
#                       time does to a fleet running at 80 % of its peak
# Where the server has pg_stat_statements loaded, each phase's database time is also broken down
# by statement (statements-PHASE.tsv); nothing is reset, the counters are diffed.
#   BENCH_PORT_BASE [3100]  orchestrator, payment, inventory on BASE, BASE+1, BASE+2
#   BENCH_VHOST [saga-bench]  BENCH_DB_PREFIX [saga_bench_]
#   BENCH_BROKER_PORT [5673]  the benchmark's own RabbitMQ node (see below) listens there for
#                       AMQP and on BENCH_BROKER_PORT + 10000 for its management API
#   BENCH_RABBITMQ_WAL_BYTES [8388608]  that node's raft.wal_max_size_bytes: each rollover holds
#                       the node's queues up for a moment, longer the larger the log; at 8 MiB
#                       the tail owes them much less than at 64 (docs/benchmarks.md, "The
#                       broker's rollovers"; 64 MiB until the eighth session)
#   BENCH_RABBITMQ_ERL_ARGS []  extra Erlang VM flags for that node (e.g. "+sbwt none")
#   BENCH_RABBITMQ_PORT, BENCH_RABBITMQ_API  run against an already running RabbitMQ node
#                       instead (guest/guest; e.g. 5672 and http://127.0.0.1:15672, the machine's)
#   BENCH_HALT_POLL_NS []  for this run only (after the calibration), the longest an idle vCPU
#                       polls for work before it halts (the haltpoll cpuidle driver's adaptive
#                       window, guest_halt_poll_ns; restored at the end); a setting of the
#                       machine, not of the fleet: the standard benchmark leaves it as the
#                       machine has it, and says what it was
# The benchmark starts a RabbitMQ node of its own, from the installed rabbitmq-server, with a
# fresh data directory (removed at the end) and one setting changed: the quorum-queue write-ahead
# log rolls over at 8 MiB instead of 512 MiB (BENCH_RABBITMQ_WAL_BYTES). Each rollover holds every
# queue of the node up for a moment: for 1.5-3 s at the default; at 64 MiB the orders sent around
# one took up to 90-115 ms longer on average, at 8 MiB 14-20 ms (docs/benchmarks.md, "The
# broker's rollovers"); the summary shows, per phase, the orders by when they were sent against
# the nearest rollover. A fresh node also keeps other
# runs' and tests' queue data out of the measurement.
#   BENCH_OUT [target/bench/<run id>]  raw JSON, SVG charts, samples and the summary
#   BENCH_START_TIMEOUT [1800] seconds for run.sh to build and start the fleet (the shared cargo
#                       target directory may be locked by other builds)
#   BENCH_LOADGEN_ARGS  extra arguments for every loadgen phase but complete (e.g. "--declined 0.2")
#   APP__*              passed to the services, as run.sh does (e.g. APP__LOG_LEVEL=warn)
# Never touches the saga_* databases or the default vhost that run.sh and the tests use.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

WARMUP="${BENCH_WARMUP:-10}"
DURATION="${BENCH_DURATION:-60}"
COMPLETE_DURATION="${BENCH_COMPLETE_DURATION:-60}"
STEADY_DURATION="${BENCH_STEADY_DURATION:-600}"
PROFILE="${BENCH_PROFILE:-0}"
CLIENTS="${BENCH_CLIENTS:-128}"
OPEN_FRACTION="${BENCH_OPEN_FRACTION:-0.8}"
OPEN_RATE="${BENCH_OPEN_RATE:-}"
[ -z "$OPEN_RATE" ] || [[ $OPEN_RATE =~ ^[1-9][0-9]{0,5}$ ]] ||
    die "BENCH_OPEN_RATE must be whole orders per second, not '$OPEN_RATE'"
STALL_SERVICE='' STALL_AT=0 STALL_FOR=0
if [ -n "${BENCH_STALL:-}" ]; then
    IFS=: read -r STALL_SERVICE STALL_AT STALL_FOR <<<"$BENCH_STALL"
    case "$STALL_SERVICE" in orchestrator | payment | inventory) ;; *) STALL_SERVICE='?' ;; esac
    [[ $STALL_SERVICE != '?' && $STALL_AT =~ ^[0-9]{1,6}$ && $STALL_FOR =~ ^[0-9]{1,6}$ ]] ||
        die "BENCH_STALL must be SERVICE:AT:FOR (orchestrator, payment or inventory; whole seconds), not '$BENCH_STALL'"
    [ $((10#$STALL_AT + 10#$STALL_FOR)) -lt "$STEADY_DURATION" ] ||
        die "BENCH_STALL: AT + FOR ($STALL_AT + $STALL_FOR s) must end inside the open80 phase (BENCH_STEADY_DURATION=$STEADY_DURATION)"
fi
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
OWN_BROKER=1
RABBITMQ_PORT="${BENCH_BROKER_PORT:-5673}"
RABBITMQ_API="http://127.0.0.1:$((RABBITMQ_PORT + 10000))"
if [ -n "${BENCH_RABBITMQ_PORT:-}" ]; then
    OWN_BROKER=0
    RABBITMQ_PORT="$BENCH_RABBITMQ_PORT"
    RABBITMQ_API="${BENCH_RABBITMQ_API:-$DEPLOY_RABBITMQ_API}"
fi
RABBITMQ_WAL_BYTES="${BENCH_RABBITMQ_WAL_BYTES:-8388608}"
RABBITMQ_ERL_ARGS="${BENCH_RABBITMQ_ERL_ARGS:-}"
AMQP_URL="amqp://$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD@127.0.0.1:$RABBITMQ_PORT"
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_NS="${BENCH_HALT_POLL_NS:-}"
HALT_POLL_BEFORE=''
if [ -n "$HALT_POLL_NS" ]; then
    # No leading zeros: the kernel reads the value in base 0 (0200000 would be octal).
    [[ $HALT_POLL_NS =~ ^(0|[1-9][0-9]{0,8})$ ]] ||
        die "BENCH_HALT_POLL_NS must be nanoseconds, not '$HALT_POLL_NS'"
    [ "$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null)" = haltpoll ] ||
        die "BENCH_HALT_POLL_NS: the cpuidle driver is not haltpoll, so the setting would do nothing"
    [ -w "$HALT_POLL" ] || die "BENCH_HALT_POLL_NS: $HALT_POLL is not writable (not root?)"
fi
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
listener_pid() { # empty, never a failure, when nothing listens
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
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

# The database server's current WAL position; empty when it cannot be read.
wal_lsn() { psql "$DEPLOY_PG_URL" -Atqc 'SELECT pg_current_wal_lsn()' 2>/dev/null || true; }

# How many times the server has flushed its WAL to disk (fdatasync), all processes; empty when
# it cannot be read. Backends report it at most once a second, so a window of a minute is
# counted within a few percent.
wal_syncs() { psql "$DEPLOY_PG_URL" -Atqc 'SELECT wal_sync FROM pg_stat_wal' 2>/dev/null || true; }

# Transactions the fleet's databases have ended (committed or rolled back); empty when they
# cannot be read. A statement outside BEGIN/COMMIT is a transaction of its own, so this counts
# the relay's reads and marks as well as the batches. Reported, like wal_sync, within a second.
xacts() {
    psql "$DEPLOY_PG_URL" -Atqc "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database WHERE datname LIKE '${DB_PREFIX}%'" \
        2>/dev/null || true
}

# Context switches of the whole machine since boot. Each one is a process put to sleep or woken
# (a round trip answered, a delivery handed to a consumer, a timer); a saga costs more of them
# when batches are small, and each costs CPU beyond its own (caches, the scheduler).
context_switches() {
    local key value
    while read -r key value _; do
        if [ "$key" = ctxt ]; then
            echo "$value"
            return
        fi
    done </proc/stat
}

# unpublished SERVICE: the service's outbox rows still to be published; '?' when unreadable.
unpublished() {
    psql -X "postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}$1" -Atqc \
        'SELECT count(*) FROM outbox_pending' 2>/dev/null || echo '?'
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

# open_pause NAME: opens PAUSE_FD on a FIFO that no one writes to, for `pause`. Opened
# read-write, so the open does not wait for a writer; removed at once, the descriptor stays.
open_pause() {
    local fifo="$OUT/.pause-$1"
    rm -f "$fifo" && mkfifo "$fifo" && exec {PAUSE_FD}<>"$fifo" && rm -f "$fifo" || {
        log "bench: no FIFO for $1's pauses in $OUT"
        return 1
    }
}

# pause SECONDS: waits without starting a process (`sleep` is one each time), as a read that
# times out. A signal the shell traps (the backlog sampler's TERM) ends it at once.
pause() { read -r -t "$1" -u "$PAUSE_FD" _ || true; }

# For `pause` in this shell (wait_marker); the samplers open their own.
open_pause main

# Resident memory is read from /proc/PID/statm, one line in pages. Not from /proc/PID/status:
# bash's `read` takes one line, then seeks back to its end, so each line of a loop comes from a
# newly generated file, and when an earlier line changed length meanwhile (`State: R
# (running)` against `S (sleeping)`) the lines shift and the wanted one is skipped: running
# services were recorded at 0 MiB a few times in a run.
PAGE_KB=$(($(getconf PAGESIZE 2>/dev/null || echo 4096) / 1024))

# rss_kb PID [anon]: sets KB to the process's resident memory, or with `anon` to its anonymous
# part (statm's resident minus shared, i.e. RssAnon: for PostgreSQL, whose shared buffers would
# otherwise be counted once per backend); 0 when it is gone. It sets a variable rather than
# printing, so that callers need no `$(...)`, which forks a subshell. It always succeeds: under
# `set -e` a backend that exits between being listed and being read would otherwise end the
# sampler (the first version of this sampler died so, 40 s into a 10-minute phase).
rss_kb() {
    local _size resident shared _rest
    KB=0
    read -r _size resident shared _rest 2>/dev/null <"/proc/$1/statm" || return 0
    if [ "${2:-}" = anon ]; then
        KB=$(((resident - shared) * PAGE_KB))
    else
        KB=$((resident * PAGE_KB))
    fi
}

# pg_rss_kb: sets KB to the anonymous memory of the postmaster and its children, from the
# postmaster's list of children in /proc (no pgrep, no cat, no awk), or from pgrep where the
# kernel has no such list (CONFIG_PROC_CHILDREN). A backend that exits meanwhile counts 0.
pg_rss_kb() {
    local children=() p total list="/proc/$PG_PID/task/$PG_PID/children"
    rss_kb "$PG_PID" anon
    total=$KB
    if [ -r "$list" ]; then
        read -r -a children 2>/dev/null <"$list" || true
    else
        mapfile -t children < <(pgrep -P "$PG_PID" || true)
    fi
    for p in "${children[@]}"; do
        rss_kb "$p" anon
        total=$((total + KB))
    done
    KB=$total
}

# rss_sampler PHASE LOADGEN-PID: resident memory every second into $OUT/rss-PHASE.tsv until killed.
# It forks nothing while it samples (builtins read /proc; `pause` is no process): on a 2-core
# machine with no idle time, the pgrep, cat, awk, sleep and subshells it started every second
# were part of the load it measured (docs/benchmarks.md, "The benchmark's own samplers").
rss_sampler() {
    local phase=$1 loadgen=$2 svc
    open_pause "rss-$phase" || return 1
    while :; do
        {
            for svc in "${SERVICES[@]}"; do
                rss_kb "${SPID[$svc]}"
                printf '%s\t%s\n' "$svc" "$KB"
            done
            rss_kb "$RABBIT_PID"
            printf 'rabbitmq\t%s\n' "$KB"
            pg_rss_kb
            printf 'postgres_anon\t%s\n' "$KB"
            rss_kb "$loadgen"
            printf 'loadgen\t%s\n' "$KB"
        } >>"$OUT/rss-$phase.tsv"
        pause 1
    done
}

# flush_sampler PHASE: how long the disk takes to flush, every 100 ms until killed, into
# $OUT/flush-PHASE.tsv (epoch seconds, ms): a 4 KiB write and fsync of one file in $OUT (its file
# system; on this machine the same device as PostgreSQL's and the broker's data). Why: every hop
# of a saga waits for two flushes (PostgreSQL's commit, the quorum queue's log before its
# confirm), so the end-to-end tail may follow the host's storage, which pgbench's calibration
# sees only before the fleet starts. Ten small flushes a second are little beside the fleet's
# own. It shares the cores too: on a busy machine its wake-up after a flush waits for one, so a
# slow minute is the disk, the load, or both.
# Run it in the background only: it becomes the perl process, so that killing it stops the probe.
flush_sampler() {
    exec perl -MTime::HiRes=time,sleep -MIO::Handle -e '
        my ($file) = @ARGV;
        open(my $fh, "+>", $file) or die "flush probe: $file: $!\n";
        my $block = "x" x 4096;
        $| = 1;
        while (1) {
            my $start = time;
            seek($fh, 0, 0);
            print $fh $block;
            $fh->flush;
            $fh->sync or die "flush probe: fsync: $!\n";
            printf "%.3f\t%.3f\n", $start, (time - $start) * 1000;
            sleep 0.1;
        }' "$OUT/.flush-probe" >"$OUT/flush-$1.tsv"
}

# psi_totals: sets PSI_CPU, PSI_IO_SOME and PSI_IO_FULL to the kernel's pressure stall totals
# (PSI), microseconds since boot: the time at least one runnable task waited for a core (cpu
# "some"), at least one waited for I/O (io "some"), and every non-idle task did (io "full").
# Each file is read whole in one `read` (to its end: no NUL comes, so `read` fails, which `set
# -e` must not see), so its two lines come from one generation of it (see PAGE_KB on reading
# /proc line by line).
psi_totals() {
    local buf t
    PSI_CPU='' PSI_IO_SOME='' PSI_IO_FULL=''
    IFS= read -r -d '' buf </proc/pressure/cpu || true
    t=${buf#*total=}
    PSI_CPU=${t%%[!0-9]*}
    IFS= read -r -d '' buf </proc/pressure/io || true
    t=${buf#*total=}
    PSI_IO_SOME=${t%%[!0-9]*}
    if [[ $buf == *"full "* ]]; then
        t=${buf#*full }
        t=${t#*total=}
        PSI_IO_FULL=${t%%[!0-9]*}
    fi
}

# pressure_sampler PHASE: the PSI totals (psi_totals) every second into $OUT/pressure-PHASE.tsv
# until killed; nothing on a kernel without PSI. Why: CPU time per saga says how much work a saga
# is, not what it waits for. The end-to-end tail at 80 % of the peak is made of waits: for a core
# (cpu some) or for the disk (a commit's flush, the quorum queue's fsync: io some), and these
# tell them apart, minute by minute, for the whole machine. Without a fork, like the others.
pressure_sampler() {
    [ -r /proc/pressure/cpu ] && [ -r /proc/pressure/io ] || return 0
    open_pause "pressure-$1" || return 1
    printf 't\tcpu_some_us\tio_some_us\tio_full_us\n' >"$OUT/pressure-$1.tsv"
    while :; do
        psi_totals
        printf '%s\t%s\t%s\t%s\n' "$EPOCHREALTIME" "$PSI_CPU" "$PSI_IO_SOME" "$PSI_IO_FULL" \
            >>"$OUT/pressure-$1.tsv"
        pause 1
    done
}

# rollover_sampler PHASE: the moments the benchmark's RabbitMQ node rolls its quorum queues'
# write-ahead log over to a new file (a new *.wal in its quorum directory), in epoch seconds,
# into $OUT/rollovers-PHASE.txt until killed; loadgen reads them when its load ends (--marks)
# and profiles the orders' end-to-end latency by when they were sent against the nearest one.
# Why: a rollover holds every queue of the node up for a moment, and at 64 MiB those moments
# made a large part of the end-to-end tail at 80 % of the peak (docs/benchmarks.md, "The
# broker's rollovers"). A glob of the node's quorum directory every 50 ms, without a fork; a
# moment is when the sampler saw the file, up to 50 ms late and more on a busy machine. Only with
# the benchmark's own node, whose directory is known. The file is created only once the sampler
# can run, so that loadgen reports a sampler that could not start as a missing file, not as a
# phase without rollovers. Runs in the background only (its nullglob stays in its subshell).
rollover_sampler() {
    local file="$OUT/rollovers-$1.txt" f
    local -A seen=()
    open_pause "rollovers-$1" || return 1
    : >"$file"
    shopt -s nullglob
    for f in "$BROKER_DIR"/mnesia/*/quorum/*/*.wal; do seen[$f]=1; done
    while :; do
        for f in "$BROKER_DIR"/mnesia/*/quorum/*/*.wal; do
            [ -z "${seen[$f]:-}" ] || continue
            seen[$f]=1
            # awk and loadgen read a decimal point, whatever the locale writes.
            echo "${EPOCHREALTIME/,/.}" >>"$file"
        done
        pause 0.05
    done
}

# pressure_stats FILE FROM TO: "cpu-some io-some io-full", each the percentage of the time
# between the first and the last sample of FILE in [FROM, TO) (epoch seconds); '?' without two.
pressure_stats() {
    awk -F'\t' -v a="$2" -v b="$3" '
        NR > 1 && $1 >= a && $1 < b && $2 != "" {
            if (!n++) { t0 = $1; c0 = $2; s0 = $3; f0 = $4 }
            t1 = $1; c1 = $2; s1 = $3; f1 = $4
        }
        END {
            if (n > 1 && t1 > t0) {
                d = (t1 - t0) * 1e6
                printf "%8.1f %8.1f %8.1f\n",
                    100 * (c1 - c0) / d, 100 * (s1 - s0) / d, 100 * (f1 - f0) / d
            } else printf "%8s %8s %8s\n", "?", "?", "?"
        }' "$1"
}

# pressure_report PHASE: pressure_stats over the phase's load window, and minute by minute, each
# minute's window a second longer: the sample at its end closes it.
pressure_report() { report_by_minute "$1" "$OUT/pressure-$1.tsv" pressure_stats 1; }

# flush_stats: "p50 p99 max count" (ms) of the numbers on stdin, one per line.
flush_stats() {
    sort -g | awk '{ v[++n] = $1 }
        END { if (n) printf "%8.1f %8.1f %8.1f %6d\n", v[int((n - 1) * 0.5) + 1], v[int((n - 1) * 0.99) + 1], v[n], n }'
}

# report_by_minute PHASE FILE STATS [SLACK]: one line of STATS over the phase's load window, then,
# when it lasted more than one minute, one per minute from the load's start (as loadgen counts
# its minutes), each window SLACK seconds longer (0 by default). STATS FILE FROM TO prints the
# figures of FILE's samples in [FROM, TO) (epoch seconds). The flush probe's and the pressure
# sampler's reports share it.
report_by_minute() {
    local phase=$1 file=$2 stats=$3 slack=${4:-0} t0 t1 minutes m from to
    { read -r t0 t1 <"$OUT/$phase.window"; } 2>/dev/null || return 0
    [ -s "$file" ] || return 0
    printf '%-14s %s\n' "$phase" "$("$stats" "$file" "$t0" "$t1")"
    # Rounded: the window starts a moment after loadgen's own start, so 600 s read as 599.8.
    minutes="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) / 60 + 0.5 }')"
    [ "$minutes" -gt 1 ] || return 0
    for ((m = 0; m < minutes; m++)); do
        from="$(awk -v a="$t0" -v m="$m" 'BEGIN { printf "%.6f", a + m * 60 }')"
        to="$(awk -v a="$t0" -v m="$m" -v s="$slack" 'BEGIN { printf "%.6f", a + m * 60 + 60 + s }')"
        printf '%14s %s\n' "$((m * 60))-$((m * 60 + 60)) s" "$("$stats" "$file" "$from" "$to")"
    done
}

# flush_window FILE FROM TO: flush_stats of the flush probe's samples in [FROM, TO].
flush_window() { awk -v a="$2" -v b="$3" '$1 >= a && $1 <= b { print $2 }' "$1" | flush_stats; }

# flush_report PHASE: the flush probe's figures over the phase's load window, and minute by
# minute.
flush_report() { report_by_minute "$1" "$OUT/flush-$1.tsv" flush_window; }

# The management API's queue listing for the vhost, asked by `queued_messages` over bash's own
# /dev/tcp: curl, grep and awk every 5 s were the last processes a sampler started while a phase
# ran. The path and the basic-auth header are computed once.
QUEUES_PATH="/api/queues/$(urlencode "$VHOST")?columns=messages"
QUEUES_AUTH="$(printf '%s:%s' "$DEPLOY_RABBITMQ_USER" "$DEPLOY_RABBITMQ_PASSWORD" | base64 -w0)"

# queued_messages: sets QUEUED to the messages in the vhost's queues, ready and unacknowledged;
# '?' when the API does not answer within 4 s or answers anything but 200. Without a fork: an
# HTTP/1.0 request on /dev/tcp (the connection closes after the answer, so reading to its end
# reads it all), the counts summed with bash's own pattern matching. Only for an API on
# loopback, `http://127.0.0.1:PORT` or `http://localhost:PORT` as this script builds it: a
# connect on /dev/tcp has no timeout of its own, and a remote host that drops packets would hold
# it for minutes. Any other address goes through curl, with its 4 s limit.
queued_messages() {
    local hostport=${RABBITMQ_API#http://} body='' rest fd rc n=0
    local re='"messages":([0-9]+)(.*)'
    QUEUED='?'
    if [[ $RABBITMQ_API != http://* || ! $hostport =~ ^(127\.0\.0\.1|localhost):[0-9]+$ ]]; then
        QUEUED="$(curl -s --max-time 4 -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
            "${RABBITMQ_API%/}$QUEUES_PATH" |
            grep -o '"messages":[0-9]*' | awk -F: '{ n += $2 } END { print n + 0 }')" || QUEUED='?'
        return 0
    fi
    # In braces: a bare `exec` would keep the 2>/dev/null for the rest of the sampler.
    { exec {fd}<>"/dev/tcp/${hostport%:*}/${hostport##*:}"; } 2>/dev/null || return 0
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Basic %s\r\n\r\n' \
        "$QUEUES_PATH" "$hostport" "$QUEUES_AUTH" >&"$fd" 2>/dev/null || true
    # Reads up to a NUL that never comes: the end of the answer ends it (status 1), a silent
    # API the timeout (status above 128). Under `set -e`, as this script runs, only with `||`.
    rc=0
    IFS= read -r -d '' -t 4 -u "$fd" body || rc=$?
    exec {fd}<&-
    [ "$rc" -eq 1 ] && [[ $body == "HTTP/1."?" 200"* ]] || return 0
    rest=$body
    while [[ $rest =~ $re ]]; do
        n=$((n + BASH_REMATCH[1]))
        rest=${BASH_REMATCH[2]}
    done
    QUEUED=$n
}

# last_count FILE: sets COUNT to the last line of FILE ('?' when there is none), without a fork.
last_count() {
    local line
    COUNT='?'
    while IFS= read -r line; do
        [ -z "$line" ] || COUNT=$line
    done 2>/dev/null <"$1"
}

# backlog_sampler PHASE: every 5 s, the messages in the vhost's queues (ready and unacknowledged,
# as the management API counts them; its figures lag by up to its 5 s stats interval) and the
# unpublished outbox rows of each service, into $OUT/backlog-PHASE.tsv until killed. Growth over a
# long run means the fleet falls behind. Each service's rows are counted by one psql session
# kept for the whole phase (`\watch 5`): a psql started for every sample (a perl wrapper, then a
# backend forked and warmed up, three times) made the fleet's end-to-end latency jump every
# 5 s, on a machine with no idle time (docs/benchmarks.md, "The benchmark's own samplers").
backlog_sampler() {
    local phase=$1 start=$SECONDS svc rows i watchers=()
    # Set before the sessions start, and on EXIT too: a `\watch` left behind would never stop
    # (its input is already at its end) and would go on querying through later phases.
    trap 'kill "${watchers[@]}" 2>/dev/null; rm -f "$OUT"/.outbox-"$phase"-*' EXIT
    trap 'exit 0' TERM
    for svc in "${SERVICES[@]}"; do
        printf '%s\n' 'SELECT count(*) FROM outbox_pending' '\watch 5' |
            psql -X "postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}$svc" -Atq \
                >"$OUT/.outbox-$phase-$svc" 2>/dev/null &
        watchers+=("$!")
    done
    open_pause "backlog-$phase" || return 1
    printf 't_s\tqueued\toutbox_orchestrator\toutbox_payment\toutbox_inventory\n' >"$OUT/backlog-$phase.tsv"
    while :; do
        queued_messages
        rows=''
        i=0
        for svc in "${SERVICES[@]}"; do
            # A session that ended (its query failed) leaves its last count in the file: only a
            # live one's is current. The sessions also answer a moment after they start.
            if kill -0 "${watchers[$i]}" 2>/dev/null; then
                last_count "$OUT/.outbox-$phase-$svc"
            else
                COUNT='?'
            fi
            [ "$COUNT" != '?' ] || COUNT="$(unpublished "$svc")"
            rows+=$'\t'"$COUNT"
            i=$((i + 1))
        done
        printf '%s\t%s%s\n' "$((SECONDS - start))" "$QUEUED" "$rows" >>"$OUT/backlog-$phase.tsv"
        pause 5
    done
}

# Per-statement database time, when the server has pg_stat_statements loaded (it needs a
# restart to load, so the benchmark never loads it itself): a snapshot of the counters of this
# benchmark's databases before and after each phase; the difference is the phase's. Nothing is
# reset, so other users of the server keep their statistics.
STATEMENTS=0
if [ "$(psql "$DEPLOY_PG_URL" -Atqc "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'" 2>/dev/null)" = t ]; then
    psql "$DEPLOY_PG_URL" -Atqc 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null 2>&1 && STATEMENTS=1
fi

# statements_snapshot FILE: queryid, calls, exec ms, plan ms, rows, query (one line each).
statements_snapshot() {
    if [ "$STATEMENTS" != 1 ]; then return 0; fi
    psql "$DEPLOY_PG_URL" -AtqF $'\t' -c "SELECT s.queryid, s.calls, s.total_exec_time, s.total_plan_time, s.rows,
            d.datname || ': ' || regexp_replace(left(s.query, 90), '\s+', ' ', 'g')
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname LIKE '${DB_PREFIX}%'" >"$1" 2>/dev/null || true
}

# statements_report PHASE FINISHED-SAGAS: the phase's statements, by database time per saga.
statements_report() {
    if [ "$STATEMENTS" != 1 ] || [ ! -s "$OUT/statements-$1.after" ]; then return 0; fi
    awk -F'\t' -v sagas="$2" '
        FNR == NR { calls[$1] = $2; exec[$1] = $3; plan[$1] = $4; rows[$1] = $5; next }
        {
            c = $2 - calls[$1]; e = $3 - exec[$1]; p = $4 - plan[$1]; r = $5 - rows[$1]
            if (c <= 0) next
            total += e + p; planning += p; statements += c
            printf "%.4f\t%.2f\t%.1f\t%.0f%%\t%s\n", (e + p) / sagas, c / sagas, r / c, (e + p > 0 ? 100 * p / (e + p) : 0), $6
        }
        END {
            printf "%.4f\t%.2f\t-\t%.0f%%\tall statements\n", total / sagas, statements / sagas, (total > 0 ? 100 * planning / total : 0) > "/dev/stderr"
        }' "$OUT/statements-$1.before" "$OUT/statements-$1.after" 2>"$OUT/.statements-total" |
        sort -rn | head -n 12 >"$OUT/statements-$1.tsv"
    cat "$OUT/.statements-total" >>"$OUT/statements-$1.tsv"
    rm -f "$OUT/.statements-total"
}

# stall LOADGEN-PID: with BENCH_STALL, freezes the service STALL_AT seconds into the phase for
# STALL_FOR seconds, then polls the queues every second until they are back under twice what
# they held when it froze (plus 100), and writes what it saw to $OUT/stall.txt. A stopped
# process neither reads nor acks: its queue fills while the rest of the fleet goes on.
stall() {
    [ -n "$STALL_SERVICE" ] || return 0
    local lg=$1 pid=${SPID[$STALL_SERVICE]} before='?' most=0 q t_cont waited=0 tries=0 unanswered=0
    wait_marker "$OUT/open80.started" "$lg"
    while [ "$waited" -lt "$STALL_AT" ] && kill -0 "$lg" 2>/dev/null; do sleep 1; waited=$((waited + 1)); done
    kill -0 "$lg" 2>/dev/null || { log "stall: the phase ended before ${STALL_AT}s; no stall"; return 0; }
    while [ "$before" = '?' ] && [ "$tries" -lt 3 ]; do
        queued_messages
        before=$QUEUED
        tries=$((tries + 1))
    done
    # The service goes on whatever ends this process (the fleet's stop, Ctrl-C, a failure);
    # sleeping in the background lets the trap run at once.
    trap 'kill -CONT "$pid" 2>/dev/null; exit 0' TERM HUP INT
    kill -STOP "$pid" 2>/dev/null || { log "stall: $STALL_SERVICE (pid $pid) is gone; no stall"; return 0; }
    log "stall: froze $STALL_SERVICE (pid $pid) for ${STALL_FOR}s; $before messages queued"
    sleep "$STALL_FOR" &
    wait $! || true
    kill -CONT "$pid" 2>/dev/null || log "stall: $STALL_SERVICE (pid $pid) is gone"
    trap - TERM HUP INT
    t_cont=$SECONDS
    # Without a count from before the freeze, "drained" is taken as 500 messages or fewer.
    local bound=500 recovered=''
    [ "$before" = '?' ] || { bound=$((2 * before + 100)); most=$before; }
    while kill -0 "$lg" 2>/dev/null; do
        queued_messages
        q=$QUEUED
        if [ "$q" = '?' ]; then
            unanswered=$((unanswered + 1))
        else
            [ "$q" -le "$most" ] || most=$q
            # The API's counts lag by up to 5 s: the first samples may predate the restart.
            if [ "$q" -le "$bound" ] && [ $((SECONDS - t_cont)) -gt 5 ]; then
                recovered=$((SECONDS - t_cont))
                break
            fi
        fi
        sleep 1
    done
    {
        echo "stall: $STALL_SERVICE frozen ${STALL_AT}s into the phase for ${STALL_FOR}s; $before messages queued when it froze, at most $most after"
        if [ -n "$recovered" ]; then
            echo "stall: the queues were back under $bound messages ${recovered}s after it went on (the management API's counts lag by up to 5 s; 6 s is the least this reports)"
        else
            echo "stall: the queues were not back under $bound messages when the phase ended, $((SECONDS - t_cont))s after it went on"
        fi
        [ "$unanswered" = 0 ] || echo "stall: the management API did not answer $unanswered of the samples"
    } | tee "$OUT/stall.txt" >&2
}

# profile PHASE LOADGEN-PID: with BENCH_PROFILE=1, 20 s of `perf record` over the whole machine
# from 10 s after the phase's load started (seeding excluded), summarised by process and by code
# into $OUT/perf-summary-PHASE.txt.
profile() {
    [ "$PROFILE" = 1 ] || return 0
    if ! command -v perf >/dev/null 2>&1; then
        apt_install linux-perf || true
    fi
    if ! command -v perf >/dev/null 2>&1; then
        log "BENCH_PROFILE=1 but perf is not available; no profile"
        return 0
    fi
    local data="$OUT/perf-$1.data" waited=0
    wait_marker "$OUT/$1.started" "$2"
    while [ "$waited" -lt 10 ] && kill -0 "$2" 2>/dev/null; do sleep 1; waited=$((waited + 1)); done
    kill -0 "$2" 2>/dev/null || return 0
    log "recording a 20 s profile of the whole machine during $1 ($data)"
    perf record -F 499 -a -g -o "$data" -- sleep 20 >/dev/null 2>&1 || {
        log "perf record failed; no profile"
        return 0
    }
    {
        echo "== share of all samples by process (comm) =="
        perf report -i "$data" --no-children --sort comm -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
        echo
        echo "== share of all samples by binary (kernel, postgres, beam.smp, the services) =="
        perf report -i "$data" --no-children --sort dso -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15
        echo
        echo "== the 60 functions with the most samples of their own, whole machine =="
        perf report -i "$data" --no-children --sort dso,sym -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
        echo
        echo "== PostgreSQL: where its time goes (inclusive, by function) =="
        perf report -i "$data" --children --comm postgres --sort sym -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' |
            grep -E 'exec_simple|PortalRun|pg_plan_queries|GetCachedPlan|ExecutorRun|standard_ExecutorRun|XLogInsert|XLogFlush|CommitTransaction|__x64_sys_sendto|__x64_sys_recvfrom|__x64_sys_fdatasync|__x64_sys_epoll_wait|do_syscall_64|ExecInsert|ExecUpdate|ExecIndexScan|heap_insert|btinsert' | head -25
    } >"$OUT/perf-summary-$1.txt"
    log "profile summary in $OUT/perf-summary-$1.txt"
}

# ---------------------------------------------------------------------------------------
# Fleet

RUN_PID=''
SAMPLER_PID=''
STALL_PID=''
LOADGEN_PID=''
BACKLOG_PID=''
FLUSH_PID=''
PRESSURE_PID=''
ROLLOVER_PID=''
cleanup() {
    trap '' INT TERM
    # The machine's setting first: what follows may wait a minute (the broker's stop) or fail.
    [ -z "$HALT_POLL_BEFORE" ] || echo "$HALT_POLL_BEFORE" >"$HALT_POLL" 2>/dev/null ||
        log "could not restore $HALT_POLL to $HALT_POLL_BEFORE"
    # A frozen service would never see the SIGTERM that stops the fleet; the staller goes
    # first, so that it cannot freeze the service again while the fleet stops.
    [ -z "$STALL_PID" ] || kill "$STALL_PID" 2>/dev/null || true
    # An interrupted phase's load generator would go on sending to a fleet that is stopping.
    [ -z "$LOADGEN_PID" ] || kill "$LOADGEN_PID" 2>/dev/null || true
    [ -z "$STALL_SERVICE" ] || [ -z "${SPID[$STALL_SERVICE]:-}" ] || kill -CONT "${SPID[$STALL_SERVICE]}" 2>/dev/null || true
    [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
    [ -z "$BACKLOG_PID" ] || kill "$BACKLOG_PID" 2>/dev/null || true
    [ -z "$FLUSH_PID" ] || kill "$FLUSH_PID" 2>/dev/null || true
    [ -z "$PRESSURE_PID" ] || kill "$PRESSURE_PID" 2>/dev/null || true
    [ -z "$ROLLOVER_PID" ] || kill "$ROLLOVER_PID" 2>/dev/null || true
    if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
        # run.sh started with & from a script ignores SIGINT; SIGTERM makes it stop the fleet.
        log "stopping the fleet (SIGTERM to run.sh, pid $RUN_PID)"
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    stop_broker
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The benchmark's own RabbitMQ node (OWN_BROKER=1): the installed server started directly on a
# fresh directory, as the rabbitmq user when run as root, with the management plugin and the
# settings above. Its pid is the launcher's; beam.smp is found by its listener once it is up.
BROKER_PID=''
BROKER_DIR=''
start_broker() {
    local server=/usr/lib/rabbitmq/bin/rabbitmq-server mgmt=$((RABBITMQ_PORT + 10000))
    [ -x "$server" ] || die "$server is missing (is rabbitmq-server installed?); or set BENCH_RABBITMQ_PORT"
    ! port_open 127.0.0.1 "$RABBITMQ_PORT" || die "port $RABBITMQ_PORT is in use; set BENCH_BROKER_PORT"
    ! port_open 127.0.0.1 "$mgmt" || die "port $mgmt is in use; set BENCH_BROKER_PORT"
    ! port_open 127.0.0.1 $((RABBITMQ_PORT + 20000)) || die "port $((RABBITMQ_PORT + 20000)) (Erlang distribution) is in use; set BENCH_BROKER_PORT"
    BROKER_DIR="$(mktemp -d /tmp/saga-bench-rabbitmq.XXXXXX)"
    # Everything the node writes stays in its directory (the rabbitmq user may not reach the
    # results' one); its log is copied to the results when it stops.
    mkdir -p "$BROKER_DIR/mnesia" "$BROKER_DIR/log" "$OUT/rabbitmq"
    printf '%s\n' "listeners.tcp.local = 127.0.0.1:$RABBITMQ_PORT" \
        "management.tcp.ip = 127.0.0.1" "management.tcp.port = $mgmt" \
        "raft.wal_max_size_bytes = $RABBITMQ_WAL_BYTES" >"$BROKER_DIR/rabbitmq.conf"
    echo '[rabbitmq_management].' >"$BROKER_DIR/enabled_plugins"
    : >"$BROKER_DIR/rabbitmq-env.conf"
    # Erlang refuses a cookie others can read.
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$BROKER_DIR/.erlang.cookie"
    chmod 400 "$BROKER_DIR/.erlang.cookie"
    local -a as_user=()
    if [ "$(id -u)" = 0 ]; then
        chown -R rabbitmq:rabbitmq "$BROKER_DIR"
        as_user=(runuser -u rabbitmq --)
    fi
    log "starting the benchmark's RabbitMQ node on 127.0.0.1:$RABBITMQ_PORT (raft.wal_max_size_bytes = $RABBITMQ_WAL_BYTES; its log goes to $OUT/rabbitmq/)"
    (
        cd "$BROKER_DIR"
        exec "${as_user[@]}" env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$BROKER_DIR" LANG=C.UTF-8 \
            RABBITMQ_NODENAME="$RUN_ID@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
            RABBITMQ_NODE_PORT="$RABBITMQ_PORT" RABBITMQ_DIST_PORT=$((RABBITMQ_PORT + 20000)) \
            RABBITMQ_MNESIA_BASE="$BROKER_DIR/mnesia" RABBITMQ_LOG_BASE="$BROKER_DIR/log" \
            RABBITMQ_CONFIG_FILE="$BROKER_DIR/rabbitmq.conf" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$BROKER_DIR/advanced.config" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$BROKER_DIR/enabled_plugins" \
            RABBITMQ_CONF_ENV_FILE="$BROKER_DIR/rabbitmq-env.conf" \
            RABBITMQ_PID_FILE="$BROKER_DIR/rabbitmq.pid" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} $RABBITMQ_ERL_ARGS" \
            "$server"
    ) </dev/null >"$OUT/rabbitmq/start.log" 2>&1 &
    BROKER_PID=$!
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
    local beam
    beam="$(listener_pid "$RABBITMQ_PORT")"
    log "stopping the benchmark's RabbitMQ node"
    # SIGTERM to beam.smp is a clean shutdown; the launcher (and runuser) exit with it.
    [ -z "$beam" ] || kill -TERM "$beam" 2>/dev/null || true
    # The node's directory goes only once beam.smp is gone (it writes there while it stops).
    local waited=0
    while [ -n "$beam" ] && kill -0 "$beam" 2>/dev/null && [ "$waited" -lt 600 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    cp -r "$BROKER_DIR/log/." "$OUT/rabbitmq/" 2>/dev/null || true
    rm -rf "$BROKER_DIR"
}

ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${PORT[$1]}/health/ready")" = 200 ]
}

rabbit_api() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" "$@"
}

ensure_rust
ensure_postgres
ensure_rabbitmq
[ "$OWN_BROKER" = 0 ] || start_broker

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
code="$(rabbit_api -X DELETE "$RABBITMQ_API/api/vhosts/$(urlencode "$VHOST")")" || true
case $code in 204 | 404) ;; *) die "could not delete vhost $VHOST (HTTP $code)" ;; esac
code="$(rabbit_api -X PUT "$RABBITMQ_API/api/vhosts/$(urlencode "$VHOST")")" || true
case $code in 201 | 204) ;; *) die "could not create vhost $VHOST (HTTP $code)" ;; esac
code="$(rabbit_api -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' \
    "$RABBITMQ_API/api/permissions/$(urlencode "$VHOST")/$DEPLOY_RABBITMQ_USER")" || true
case $code in 201 | 204) ;; *) die "could not grant $DEPLOY_RABBITMQ_USER on vhost $VHOST (HTTP $code)" ;; esac

# calibrate: how fast this machine's PostgreSQL commits small transactions, measured the way the
# issue quotes it (3 inserts per transaction, 16 connections, synchronous commit on), before the
# fleet starts. Results from machines of different speed compare through it.
calibrate() {
    local db="${DB_PREFIX}calibration" script="$OUT/calibration.sql"
    command -v pgbench >/dev/null 2>&1 || {
        echo "calibration: pgbench not found, skipped"
        return 0
    }
    psql "$DEPLOY_PG_URL" -qAt -v ON_ERROR_STOP=1 -v db="$db" >/dev/null 2>&1 <<'SQL' || { echo "calibration: could not create its database, skipped"; return 0; }
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
SELECT format('CREATE DATABASE %I', :'db') \gexec
SQL
    local url="postgres://postgres:postgres@127.0.0.1:5432/$db"
    psql "$url" -qc 'CREATE TABLE t (id bigserial PRIMARY KEY, a int, b text)' >/dev/null
    printf '%s\n' 'BEGIN;' \
        "INSERT INTO t (a, b) VALUES (1, 'x');" "INSERT INTO t (a, b) VALUES (2, 'y');" \
        "INSERT INTO t (a, b) VALUES (3, 'z');" 'COMMIT;' >"$script"
    local tps
    tps="$(pgbench "$url" -n -c 16 -j 2 -T 15 -M prepared -f "$script" 2>/dev/null |
        awk '/^tps/ { printf "%.0f", $3; exit }')"
    psql "$DEPLOY_PG_URL" -qAt -v db="$db" >/dev/null 2>&1 <<<"SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec" || true
    echo "calibration: ${tps:-?} PostgreSQL transactions/s (pgbench, 3 inserts each, 16 connections; the issue's reference machine: about 6,000)"
}
log "calibrating: pgbench, 3-insert transactions, 16 connections, 15 s"
CALIBRATION="$(calibrate)"
log "$CALIBRATION"

# cpu_probe: how fast one core runs a fixed piece of plain CPU work right now, in thousands of
# iterations of a bash loop per second of the loop's own CPU time (user + system, so another
# process on the other core does not count). pgbench's figure above is bound by the disk's
# flushes and barely moved while this machine's processes all took a third longer per saga
# (docs/benchmarks.md); this one is taken before the fleet starts and after every phase, while
# the fleet idles, so a run in a slow hour says so. The best of three tries of about 0.4 s each:
# the two vCPUs may share a physical core, and whatever still runs on the other one (a
# checkpoint, the broker's housekeeping after a phase) slows a single try. LC_ALL=C: `time`
# prints seconds in the locale's format, and awk reads only a decimal point.
cpu_probe() {
    local TIMEFORMAT='%3U %3S' LC_ALL=C t times=''
    for _ in 1 2 3; do
        t="$({ time (
            i=0
            while ((i < 400000)); do ((++i)); done
        ); } 2>&1)"
        times+="$t "
    done
    awk -v t="$times" 'BEGIN {
        n = split(t, a, " "); best = 0
        for (i = 1; i < n; i += 2) { s = a[i] + a[i + 1]; if (s > 0 && 400 / s > best) best = 400 / s }
        if (best > 0) printf "%.0f\n", best; else print "?"
    }'
}
# How the vCPUs idle: a guest that halts at once pays a wake-up through the host for every
# idle gap (docs/benchmarks.md, "Peak against 80 %"). Set here, after `cleanup` is in place.
IDLE_NOTE="cpuidle: $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo '?')"
if [ -r "$HALT_POLL" ]; then
    if [ -n "$HALT_POLL_NS" ]; then
        HALT_POLL_BEFORE="$(cat "$HALT_POLL")"
        echo "$HALT_POLL_NS" >"$HALT_POLL" || die "could not write $HALT_POLL"
        IDLE_NOTE+=", guest_halt_poll_ns $HALT_POLL_NS for this run"
        IDLE_NOTE+=" (BENCH_HALT_POLL_NS; the machine's: $HALT_POLL_BEFORE)"
    else
        IDLE_NOTE+=", guest_halt_poll_ns $(cat "$HALT_POLL") (the machine's)"
    fi
fi
log "$IDLE_NOTE"
PROBE_BEFORE="$(cpu_probe)"
log "cpu probe: $PROBE_BEFORE thousand loop iterations per CPU second"

log "building the load generator (release)"
cargo build --release -p loadgen
[ -x "$BIN_DIR/loadgen" ] || die "$BIN_DIR/loadgen was not built"

log "starting the fleet with deploy/run.sh (output in $OUT/run.log)"
ORCHESTRATOR_PORT=${PORT[orchestrator]} PAYMENT_PORT=${PORT[payment]} INVENTORY_PORT=${PORT[inventory]} \
    ORCHESTRATOR_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}orchestrator" \
    PAYMENT_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}payment" \
    INVENTORY_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/${DB_PREFIX}inventory" \
    APP__AMQP__URL="${AMQP_URL}/$(urlencode "$VHOST")" \
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
RABBIT_PID="$(listener_pid "$RABBITMQ_PORT")"
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
    echo "rabbitmq: $(curl -s -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" "$RABBITMQ_API/api/overview" | grep -o '"rabbitmq_version":"[^"]*"' | cut -d'"' -f4)"
    if [ "$OWN_BROKER" = 1 ]; then
        echo "rabbitmq node: the benchmark's own on port $RABBITMQ_PORT, raft.wal_max_size_bytes = $RABBITMQ_WAL_BYTES"
    else
        echo "rabbitmq node: the one on port $RABBITMQ_PORT (BENCH_RABBITMQ_PORT), its own settings"
    fi
    echo "$CALIBRATION"
    echo "cpu probe before the fleet: $PROBE_BEFORE thousand bash loop iterations per CPU second"
    echo "$IDLE_NOTE"
    echo "uptime before: $(uptime)"
} | tee "$OUT/machine.txt" >&2

# --amqp: loadgen learns that a saga ended from the orchestrator's order.completed/order.failed
# events on the fleet's own vhost (the URL the services get) instead of polling the API, so the
# measurement adds no status reads to the load it measures.
LG=("$BIN_DIR/loadgen" --orchestrator "http://127.0.0.1:${PORT[orchestrator]}"
    --payment "http://127.0.0.1:${PORT[payment]}" --inventory "http://127.0.0.1:${PORT[inventory]}"
    --amqp "${AMQP_URL}/$(urlencode "$VHOST")" --out "$OUT")

# wait_marker FILE PID: waits until loadgen (PID) writes FILE, or exits. It polls for the whole
# load, so with `pause` rather than `sleep`, which would be ten processes a second.
wait_marker() {
    while [ ! -e "$1" ] && kill -0 "$2" 2>/dev/null; do pause 0.1; done
}

# phase NAME LOADGEN-ARGS...: one measured loadgen run. CPU is accounted between the markers
# loadgen writes when its load starts and ends, so seeding and the final checks are left out.
phase() {
    local name=$1 before after lg t0 t1 wal0 wal1 sync0 sync1 ctxt0 ctxt1
    shift
    log "phase $name: loadgen $*"
    echo "uptime before $name: $(uptime)" >>"$OUT/machine.txt"
    rm -f "$OUT/$name.started" "$OUT/$name.ended"
    local -a extra=("${EXTRA_ARGS[@]}")
    # The complete phase sets the mix itself; loadgen takes each option once.
    [ "$name" != complete ] || extra=()
    [ -z "$BROKER_DIR" ] || extra+=(--marks "$OUT/rollovers-$name.txt")
    "${LG[@]}" --run-id "$RUN_ID-$name" --label "$name" "$@" "${extra[@]}" > >(tee "$OUT/$name.txt") &
    lg=$!
    LOADGEN_PID=$lg
    rss_sampler "$name" "$lg" &
    SAMPLER_PID=$!
    flush_sampler "$name" &
    FLUSH_PID=$!
    pressure_sampler "$name" &
    PRESSURE_PID=$!
    if [ -n "$BROKER_DIR" ]; then
        rollover_sampler "$name" &
        ROLLOVER_PID=$!
    fi
    backlog_sampler "$name" &
    BACKLOG_PID=$!
    local profiler=''
    if [ "$name" = peak ] || [ "$name" = open80 ]; then
        profile "$name" "$lg" &
        profiler=$!
    fi
    if [ "$name" = open80 ]; then
        stall "$lg" &
        STALL_PID=$!
    fi
    wait_marker "$OUT/$name.started" "$lg"
    statements_snapshot "$OUT/statements-$name.before"
    wal0="$(wal_lsn)"
    sync0="$(wal_syncs)"
    xact0="$(xacts)"
    ctxt0="$(context_switches)"
    before="$(snapshot "$lg")"
    t0=$EPOCHREALTIME
    wait_marker "$OUT/$name.ended" "$lg"
    after="$(snapshot "$lg")"
    t1=$EPOCHREALTIME
    wal1="$(wal_lsn)"
    sync1="$(wal_syncs)"
    xact1="$(xacts)"
    ctxt1="$(context_switches)"
    statements_snapshot "$OUT/statements-$name.after"
    # ROLLOVER_PID unquoted: empty (no sampler without the benchmark's own node), it is no word.
    kill "$SAMPLER_PID" "$BACKLOG_PID" "$FLUSH_PID" "$PRESSURE_PID" $ROLLOVER_PID \
        2>/dev/null || true
    wait "$SAMPLER_PID" "$BACKLOG_PID" "$FLUSH_PID" "$PRESSURE_PID" $ROLLOVER_PID \
        2>/dev/null || true
    SAMPLER_PID=''
    ROLLOVER_PID=''
    BACKLOG_PID=''
    FLUSH_PID=''
    PRESSURE_PID=''
    echo "$t0 $t1" >"$OUT/$name.window"
    [ -z "$profiler" ] || wait "$profiler" 2>/dev/null || true
    [ -z "$STALL_PID" ] || wait "$STALL_PID" 2>/dev/null || true
    STALL_PID=''
    wait "$lg" || log "phase $name: loadgen reported a failure (see above)"
    LOADGEN_PID=''
    cpu_probe >"$OUT/probe-$name.txt"
    sleep 0.2 # let tee flush the RESULT line
    local finished_s
    finished_s="$(awk -v r="$(result_field "$name" finished_per_s)" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", r * (b - a) }')"
    if [ "${finished_s:-0}" -gt 0 ]; then statements_report "$name" "$finished_s"; fi
    # PostgreSQL's WAL over the load window, all databases: what the fleet's writes cost the
    # database, a figure that does not move with the machine's speed as CPU does.
    # The range is kept too, for `pg_waldump --start "$wal0" --end "$wal1"` while the segments last.
    echo "$wal0 $wal1" >"$OUT/wal-$name.lsn"
    if [ -n "$wal0" ] && [ -n "$wal1" ] && [ "${finished_s:-0}" -gt 0 ]; then
        psql "$DEPLOY_PG_URL" -Atqc "SELECT round(pg_wal_lsn_diff('$wal1', '$wal0') / $finished_s / 1024.0, 2)" \
            >"$OUT/wal-$name.txt" 2>/dev/null || rm -f "$OUT/wal-$name.txt"
    fi
    # ... and how many WAL flushes: every synchronous commit waits for one (several commits
    # share one when they arrive together).
    if [ -n "$sync0" ] && [ -n "$sync1" ] && [ "${finished_s:-0}" -gt 0 ]; then
        awk -v a="$sync0" -v b="$sync1" -v n="$finished_s" 'BEGIN { printf "%.2f\n", (b - a) / n }' >"$OUT/flushes-$name.txt"
    fi
    # ... and how many transactions the fleet's databases ran for it.
    if [ -n "$xact0" ] && [ -n "$xact1" ] && [ "${finished_s:-0}" -gt 0 ]; then
        awk -v a="$xact0" -v b="$xact1" -v n="$finished_s" 'BEGIN { printf "%.2f\n", (b - a) / n }' >"$OUT/xacts-$name.txt"
    fi
    # ... and how many context switches the whole machine made for it.
    if [ -n "$ctxt0" ] && [ -n "$ctxt1" ] && [ "${finished_s:-0}" -gt 0 ]; then
        awk -v a="$ctxt0" -v b="$ctxt1" -v n="$finished_s" 'BEGIN { printf "%.1f\n", (b - a) / n }' >"$OUT/ctxt-$name.txt"
    fi
    echo "uptime after $name: $(uptime)" >>"$OUT/machine.txt"
    # CPU per group over the load window, in cores (ticks / CLK_TCK / wall seconds).
    paste <(echo "$before") <(echo "$after") |
        awk -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v phase="$name" \
            '{ wall = t1 - t0; printf "%s\t%s\t%.3f\n", phase, $1, ($4 - $2) / hz / (wall > 0 ? wall : 1) }' \
            >"$OUT/cpu-$name.tsv"
    # Queue depths and unpublished outbox rows left at the end: growth means a backlog.
    curl -s -u "$DEPLOY_RABBITMQ_USER:$DEPLOY_RABBITMQ_PASSWORD" \
        "$RABBITMQ_API/api/queues/$(urlencode "$VHOST")?columns=name,messages" >"$OUT/queues-$name.json" || true
    for svc in "${SERVICES[@]}"; do
        printf '%s\t%s\n' "$svc" "$(unpublished "$svc")"
    done >"$OUT/outbox-$name.tsv"
}

result_field() { grep -o "$2=[0-9.]*" "$OUT/$1.txt" | head -n1 | cut -d= -f2; }

phase warmup --closed 32 --duration "$WARMUP" --skip-checks
phase peak --closed "$CLIENTS" --duration "$DURATION"
peak="$(result_field peak finished_per_s)"
[ -n "$peak" ] || die "no result from the peak phase"
rate="$(awk -v p="$peak" -v f="$OPEN_FRACTION" 'BEGIN { r = p * f; if (r < 1) r = 1; printf "%.0f", r }')"
[ -z "$OPEN_RATE" ] || rate=$OPEN_RATE
REPORTED=(peak)
if [ "$COMPLETE_DURATION" != 0 ]; then
    phase complete --closed "$CLIENTS" --duration "$COMPLETE_DURATION" --declined 0 --out-of-stock 0
    REPORTED+=(complete)
fi
phase open80 --rate "$rate" --duration "$STEADY_DURATION"
REPORTED+=(open80)
rm -f "$OUT/.flush-probe"
echo "uptime after: $(uptime)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------------------------------
# Summary

# early_late FILE NAME-COLUMN VALUE-COLUMN: for each name, the mean of its samples in the second
# tenth of the phase ("early"; the first tenth is skipped: pools, caches and the broker warm up)
# and in the last tenth ("late"), and the maximum. One line per name: "name early late max". For
# the 10-minute open80 phase, early and late are its second and its last minute.
early_late() {
    awk -F'\t' -v nc="$2" -v vc="$3" '
        NR == 1 && $vc !~ /^[0-9.]+$/ { next }
        { n[$nc]++; v[$nc, n[$nc]] = $vc; if ($vc > max[$nc]) max[$nc] = $vc }
        END {
            for (k in n) {
                m = n[k]; es = 0; ec = 0; ls = 0; lc = 0
                for (i = 1; i <= m; i++) {
                    if (i > m / 10 && i <= m / 10 + m / 10 + 1) { es += v[k, i]; ec++ }
                    if (i > m - m / 10) { ls += v[k, i]; lc++ }
                }
                printf "%s %.1f %.1f %.1f\n", k, (ec ? es / ec : 0), (lc ? ls / lc : 0), max[k]
            }
        }' "$1" | sort
}

{
    echo
    durations="peak ${DURATION}s"
    [ "$COMPLETE_DURATION" = 0 ] || durations+=", complete ${COMPLETE_DURATION}s"
    durations+=", open80 ${STEADY_DURATION}s"
    [ -z "$OPEN_RATE" ] || durations+=" at a fixed ${OPEN_RATE}/s (BENCH_OPEN_RATE)"
    [ -z "$STALL_SERVICE" ] || durations+=" with $STALL_SERVICE frozen for ${STALL_FOR}s at ${STALL_AT}s"
    echo "== bench $RUN_ID on $(nproc) cores: $durations (load average after: $(cut -d' ' -f1-3 /proc/loadavg)) =="
    echo "$CALIBRATION"
    echo "$IDLE_NOTE"
    printf 'cpu probe, thousand bash loop iterations per CPU second (higher is faster): before the fleet %s' "$PROBE_BEFORE"
    for name in "${REPORTED[@]}"; do printf ', after %s %s' "$name" "$(cat "$OUT/probe-$name.txt" 2>/dev/null || echo '?')"; done
    echo
    printf '%-8s %10s %10s %9s %9s %9s %9s %s\n' phase "done/s" "COMPL/s" "acc p50" "acc p99" "e2e p50" "e2e p99" invariants
    for name in "${REPORTED[@]}"; do
        line="$(grep '^RESULT' "$OUT/$name.txt" || true)"
        # Strings as loadgen formatted them: a missing figure prints blank instead of stopping
        # the summary (printf fails on a number it cannot read).
        printf '%-8s %10s %10s %9s %9s %9s %9s %s\n' "$name" \
            "$(result_field "$name" finished_per_s)" "$(result_field "$name" completed_per_s)" \
            "$(result_field "$name" accept_p50_ms)" \
            "$(result_field "$name" accept_p99_ms)" \
            "$(result_field "$name" e2e_p50_ms)" \
            "$(result_field "$name" e2e_p99_ms)" \
            "$(grep -o 'invariants=[a-z]*' <<<"$line" | cut -d= -f2)"
    done
    # Which minutes a phase's p99 came from: a slow spell of the machine or the fleet shows
    # as one or two minutes far above the rest.
    for name in "${REPORTED[@]}"; do
        awk -v phase="$name" '/^by minute sent/ { print phase ":"; print; on = 1; next }
            on && /^ +[0-9]+-/ { print; next } { on = 0 }' "$OUT/$name.txt"
    done
    # Whether the broker's write-ahead-log rollovers make the tail (loadgen --marks, with the
    # benchmark's own node): the orders by when they were sent against the nearest one.
    for name in "${REPORTED[@]}"; do
        awk -v phase="$name" -v what="rollovers of the broker's WAL: " \
            '/^around marks:/ { print phase ", " what substr($0, 15); on = 1; next }
            on && /^  / { print; next } { on = 0 }' "$OUT/$name.txt"
    done
    echo
    echo "Disk flushes (flush probe: a 4 KiB write and fsync every 100 ms in $OUT), ms over the load window"
    printf '%-14s %8s %8s %8s %6s\n' phase p50 p99 max count
    for name in "${REPORTED[@]}"; do flush_report "$name"; done
    echo
    echo "Pressure stalls (PSI, whole machine): % of the load window during which at least one task" \
        "waited for a core (cpu some), for I/O (io some), or every non-idle task waited for I/O (io full)"
    printf '%-14s %8s %8s %8s\n' phase "cpu some" "io some" "io full"
    for name in "${REPORTED[@]}"; do pressure_report "$name"; done
    echo
    echo "CPU (cores used on average; 'postgres_all' and 'machine_busy' include other users of this machine)"
    printf '%-8s' phase
    awk '{ printf " %14s", $2 }' "$OUT/cpu-peak.tsv" | sed 's/machine_total.*//'
    echo
    for name in "${REPORTED[@]}"; do
        printf '%-8s' "$name"
        awk '$2 != "machine_total" { printf " %14.2f", $3 }' "$OUT/cpu-$name.tsv"
        echo
    done
    echo
    echo "CPU per finished saga, ms (cores / finished sagas per second)"
    for name in "${REPORTED[@]}"; do
        printf '%-8s' "$name"
        awk -v rate="$(result_field "$name" finished_per_s)" \
            '$2 != "machine_total" && $2 != "postgres_all" && rate > 0 { printf " %s=%.3f", $2, $3 / rate * 1000 }' "$OUT/cpu-$name.tsv"
        echo
    done
    echo
    echo "PostgreSQL per finished saga: WAL KiB written (pg_current_wal_lsn) and flushes (pg_stat_wal.wal_sync), all databases; transactions of the fleet's databases (pg_stat_database), over the load window"
    for name in "${REPORTED[@]}"; do
        printf '%-8s %s KiB, %s flushes, %s transactions\n' "$name" "$(cat "$OUT/wal-$name.txt" 2>/dev/null || echo '?')" \
            "$(cat "$OUT/flushes-$name.txt" 2>/dev/null || echo '?')" "$(cat "$OUT/xacts-$name.txt" 2>/dev/null || echo '?')"
    done
    echo
    printf 'Context switches per finished saga, whole machine (/proc/stat ctxt):'
    for name in "${REPORTED[@]}"; do printf ' %s %s' "$name" "$(cat "$OUT/ctxt-$name.txt" 2>/dev/null || echo '?')"; done
    echo
    echo
    echo "Resident memory, MiB: early / late / max (second and last tenth of the phase; PostgreSQL: anonymous memory of all its processes)"
    for name in "${REPORTED[@]}"; do
        printf '%-8s' "$name"
        early_late "$OUT/rss-$name.tsv" 1 2 | awk '{ printf " %s=%.1f/%.1f/%.1f", $1, $2 / 1024, $3 / 1024, $4 / 1024 }'
        echo
    done
    echo
    echo "Backlog, messages queued and outbox rows unpublished (sampled every 5 s): early / late / max"
    for name in "${REPORTED[@]}"; do
        printf '%-8s' "$name"
        for column in 2 3 4 5; do
            header="$(head -n1 "$OUT/backlog-$name.tsv" | cut -f"$column")"
            awk -F'\t' -v c="$column" -v h="$header" 'NR > 1 { print h "\t" $c }' "$OUT/backlog-$name.tsv" >"$OUT/.backlog-column"
            early_late "$OUT/.backlog-column" 1 2 | awk '{ printf " %s=%.0f/%.0f/%.0f", $1, $2, $3, $4 }'
        done
        rm -f "$OUT/.backlog-column"
        echo
    done
    echo
    for name in "${REPORTED[@]}"; do
        echo "$name: unpublished outbox rows at the end: $(tr '\t\n' '= ' <"$OUT/outbox-$name.tsv")"
        # The management API's counts lag by up to its stats interval (5 s by default).
        echo "$name: non-empty queues at the end: $(grep -o '"messages":[1-9][0-9]*,"name":"[^"]*"' "$OUT/queues-$name.json" | sed 's/"messages":\([0-9]*\),"name":"\([^"]*\)"/\2=\1/' | tr '\n' ' ')"
    done
    if [ "$STATEMENTS" = 1 ]; then
        for name in "${REPORTED[@]}"; do
            [ -s "$OUT/statements-$name.tsv" ] || continue
            echo
            echo "$name: database time by statement (pg_stat_statements): ms per saga, statements per saga, rows per statement, planning share"
            cat "$OUT/statements-$name.tsv"
        done
    fi
    [ ! -e "$OUT/stall.txt" ] || cat "$OUT/stall.txt"
    for name in "${REPORTED[@]}"; do
        [ ! -e "$OUT/perf-summary-$name.txt" ] || echo "profile of $name: $OUT/perf-summary-$name.txt"
    done
    echo "charts: $(for name in "${REPORTED[@]}"; do printf "%s " "$OUT/$name.svg"; done); raw results: $OUT/*.json; samples: $OUT/{cpu,rss,backlog,flush,pressure}-*.tsv"
} | tee "$OUT/summary.txt"
