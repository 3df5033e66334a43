#!/bin/sh
# The image's HEALTHCHECK: GET /health/live of the service this container runs, on its port
# (APP__APPLICATION__PORT, else that service's default).
set -eu

service="$(cat /tmp/saga-service 2>/dev/null || echo "${SERVICE:-}")"
case "$service" in
orchestrator) default=3000 ;;
payment) default=3001 ;;
inventory) default=3002 ;;
notification) default=3003 ;;
*) exit 1 ;;
esac
exec curl --fail --silent --show-error --max-time 2 -o /dev/null \
    "http://127.0.0.1:${APP__APPLICATION__PORT:-$default}/health/live"
