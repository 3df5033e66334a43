#!/usr/bin/env bash
# Prints a customer JWT for the fleet that deploy/run.sh runs:
#   ./deploy/token.sh CUSTOMER_ID [--ttl 1h]
# HS256, sub = CUSTOMER_ID, exp = now + ttl (default 1h), iat = now; minted by `loadgen token`
# (built here when missing or out of date), the crate the services verify it with.
# The secret: APP__AUTH__JWT_SECRET when set, else deploy/.run/jwt-secret, which run.sh writes
# (mode 600) while the fleet runs. The token goes to stdout only, e.g.
#   curl -H "Authorization: Bearer $(./deploy/token.sh c-1)" http://127.0.0.1:3000/api/orders
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DEPLOY_ROOT"

[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || die "usage: ./deploy/token.sh CUSTOMER_ID [--ttl 1h]"
if [ -z "${APP__AUTH__JWT_SECRET:-}" ]; then
    secret_file="$DEPLOY_RUN_DIR/jwt-secret"
    [ -r "$secret_file" ] ||
        die "no JWT secret: set APP__AUTH__JWT_SECRET, or start the fleet with ./deploy/run.sh (it writes $secret_file)"
    APP__AUTH__JWT_SECRET="$(cat "$secret_file")"
fi
export APP__AUTH__JWT_SECRET

# Built (or found up to date, in a second) every time: an older binary may predate `token`.
# Everything but the token goes to stderr.
ensure_rust
[ -x "${CARGO_TARGET_DIR:-target}/release/loadgen" ] ||
    log "building the load generator (release), once, for its token subcommand"
cargo build --release -q -p loadgen >&2 || die "the build failed (cargo's errors are above)"
loadgen="${CARGO_TARGET_DIR:-target}/release/loadgen"
# The secret goes by the environment, never on a command line (world-readable in ps).
exec "$loadgen" token "$@"
