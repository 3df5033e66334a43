#!/usr/bin/env bash
# Runs the workspace's tests against a local PostgreSQL and RabbitMQ (installed and started
# when missing). Extra arguments go to `cargo test`, e.g. `deploy/test.sh -- --nocapture`.
#
# Lint (cargo fmt --check, clippy -D warnings) runs first when CI=true, or when SAGA_LINT=1;
# SAGA_LINT=0 skips it even in CI. deploy/observability/ is checked with promtool before the tests.
# The SAGA_TEST_* variables below are only set when the caller has not set them.
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

ensure_rust
ensure_postgres
ensure_rabbitmq
# The notification tests send mail to a real SMTP server (aiosmtpd).
ensure_mail_catcher
# The console's browser tests drive a headless Chromium through chromedriver.
ensure_browser
# Databases and vhosts of earlier runs that were killed before they could clean up.
cleanup_test_leftovers

export SAGA_TEST_DATABASE_URL="${SAGA_TEST_DATABASE_URL:-$DEPLOY_PG_URL}"
export SAGA_TEST_AMQP_URL="${SAGA_TEST_AMQP_URL:-$DEPLOY_AMQP_URL}"
export SAGA_TEST_RABBITMQ_API="${SAGA_TEST_RABBITMQ_API:-$DEPLOY_RABBITMQ_API}"
export SAGA_TEST_RABBITMQ_USER="${SAGA_TEST_RABBITMQ_USER:-$DEPLOY_RABBITMQ_USER}"
export SAGA_TEST_RABBITMQ_PASSWORD="${SAGA_TEST_RABBITMQ_PASSWORD:-$DEPLOY_RABBITMQ_PASSWORD}"

lint="${SAGA_LINT:-}"
if [ -z "$lint" ]; then
    if [ "${CI:-}" = true ]; then lint=1; else lint=0; fi
fi
if [ "$lint" = 1 ]; then
    log "cargo fmt --check"
    cargo fmt --all -- --check
    log "cargo clippy"
    cargo clippy --workspace --all-targets --features saga-common/testing -- -D warnings
fi

# The alert rules, their unit tests and the Prometheus configuration (promtool is installed
# with Debian's prometheus package when missing). The fleet test in deploy/faults checks that
# the metrics these files read exist.
check_observability || die "deploy/observability/ does not pass promtool (its errors are above)"

log "cargo test"
status=0
cargo test --workspace --all-targets --features saga-common/testing --no-fail-fast "$@" || status=$?
# Tests cannot drop their databases and vhosts from a destructor; sweep them here.
cleanup_test_leftovers
exit "$status"
