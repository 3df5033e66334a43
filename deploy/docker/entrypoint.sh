#!/bin/sh
# The image's entrypoint: runs one of the four services, named by the first argument or by
# $SERVICE (`docker run saga-fleet payment`, or `-e SERVICE=payment`). The choice is written
# down for saga-healthcheck, which runs as a separate process and sees neither.
set -eu

service="${1:-${SERVICE:-}}"
case "$service" in
orchestrator | payment | inventory | notification) ;;
*)
    echo "usage: saga-entrypoint orchestrator|payment|inventory|notification (or SERVICE=...)" >&2
    exit 64
    ;;
esac
[ "$#" -gt 0 ] && shift
echo "$service" >/tmp/saga-service
# exec: the service is PID 1's only child and gets SIGTERM directly (graceful shutdown).
exec "/usr/local/bin/$service" "$@"
