#!/usr/bin/env bash
# The outbox's write-and-mark cycle alone, in PostgreSQL, three ways: how the fleet marked a
# message sent before `SplitOutboxPending` (an update of the outbox row's `published_at`, with
# the partial index of unpublished rows), and after it (a pending row written by the trigger,
# deleted), plus the pending row written by a second part of the insert statement instead of
# the trigger, the alternative that was weighed.
#
# Each pgbench transaction writes a batch of 10 messages of about 600 bytes (one statement, as a
# consumer batch does) and then marks them (a second statement, as the relay does). The tables
# carry the same indexes as the services' outbox (key, message id). Synchronous commit is off for
# these sessions so that the figure is the database's CPU, not the disk's flush; WAL bytes per
# message are read off pg_current_wal_lsn. Each way runs for AB_SECONDS (15), in AB_ROUNDS (2)
# alternating rounds, in a scratch database that is dropped at the end.
#
#   ./deploy/outbox-ab.sh        # about 2 minutes
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_EACH="${AB_SECONDS:-15}"
ROUNDS="${AB_ROUNDS:-2}"
DB="saga_outbox_ab"

ensure_postgres
command -v pgbench >/dev/null 2>&1 || die "pgbench not found (it comes with the postgresql package)"

base="${DEPLOY_PG_URL%/*}"
url="$base/$DB"
work="$(mktemp -d)"
cleanup() {
    psql "$DEPLOY_PG_URL" -Atqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

psql "$DEPLOY_PG_URL" -Atqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$DEPLOY_PG_URL" -Atqc "CREATE DATABASE $DB" >/dev/null
psql "$url" -q -v ON_ERROR_STOP=1 <<'SQL'
-- before: the mark updates the row
CREATE TABLE updated_outbox (id BIGSERIAL PRIMARY KEY, message_id UUID NOT NULL,
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, message_type TEXT NOT NULL,
    saga_id UUID NOT NULL, body TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ);
CREATE INDEX updated_unpublished ON updated_outbox (id) WHERE published_at IS NULL;
CREATE INDEX updated_by_message_id ON updated_outbox (message_id);
-- now: a pending row, written by the trigger, deleted by the mark
CREATE TABLE trigger_outbox (id BIGSERIAL PRIMARY KEY, message_id UUID NOT NULL,
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, message_type TEXT NOT NULL,
    saga_id UUID NOT NULL, body TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX trigger_by_message_id ON trigger_outbox (message_id);
CREATE TABLE trigger_pending (id BIGINT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL);
CREATE FUNCTION trigger_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trigger_pending (id, created_at) SELECT id, created_at FROM written;
    RETURN NULL;
END $$;
CREATE TRIGGER trigger_written AFTER INSERT ON trigger_outbox REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_written();
-- weighed: the pending row written by the insert statement itself
CREATE TABLE cte_outbox (id BIGSERIAL PRIMARY KEY, message_id UUID NOT NULL,
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, message_type TEXT NOT NULL,
    saga_id UUID NOT NULL, body TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX cte_by_message_id ON cte_outbox (message_id);
CREATE TABLE cte_pending (id BIGINT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL);
SQL

rows="SELECT gen_random_uuid(), 'saga.commands', 'payment.charge', 'payment.charge', \
gen_random_uuid(), md5(random()::text) || repeat(md5(random()::text), 15) FROM generate_series(1, 10)"
columns="(message_id, exchange, routing_key, message_type, saga_id, body)"
cat >"$work/updated.sql" <<SQL
WITH ins AS (INSERT INTO updated_outbox $columns $rows RETURNING id) SELECT min(id) AS lo, max(id) AS hi FROM ins \gset
UPDATE updated_outbox SET published_at = now() WHERE id BETWEEN :lo AND :hi;
SQL
cat >"$work/trigger.sql" <<SQL
WITH ins AS (INSERT INTO trigger_outbox $columns $rows RETURNING id) SELECT min(id) AS lo, max(id) AS hi FROM ins \gset
DELETE FROM trigger_pending WHERE id BETWEEN :lo AND :hi;
SQL
cat >"$work/cte.sql" <<SQL
WITH ins AS (INSERT INTO cte_outbox $columns $rows RETURNING id, created_at), pending AS (INSERT INTO cte_pending (id, created_at) SELECT id, created_at FROM ins) SELECT min(id) AS lo, max(id) AS hi FROM ins \gset
DELETE FROM cte_pending WHERE id BETWEEN :lo AND :hi;
SQL

lsn() { psql "$url" -Atqc 'SELECT pg_current_wal_lsn()'; }
printf '%-6s %-8s %14s %16s\n' round way "messages/s" "WAL B/message"
for round in $(seq 1 "$ROUNDS"); do
    for way in updated trigger cte; do
        w0="$(lsn)"
        out="$(PGOPTIONS='-c synchronous_commit=off' pgbench -n -M prepared -c 4 -j 2 -T "$SECONDS_EACH" \
            -f "$work/$way.sql" "$url" 2>&1)" || die "pgbench failed: $out"
        w1="$(lsn)"
        tx="$(grep -o 'processed: [0-9]*' <<<"$out" | grep -o '[0-9]*$')"
        tps="$(grep -o 'tps = [0-9.]*' <<<"$out" | head -n1 | grep -o '[0-9.]*$')"
        [ -n "$tx" ] && [ "$tx" -gt 0 ] || die "pgbench ran no transaction: $out"
        printf '%-6s %-8s %14.0f %16s\n' "$round" "$way" "$(awk -v t="$tps" 'BEGIN { print t * 10 }')" \
            "$(psql "$url" -Atqc "SELECT round(pg_wal_lsn_diff('$w1', '$w0') / ($tx * 10.0))")"
    done
done
