use saga_common::migration::Sql;

pub const MIGRATION: Sql = Sql {
    name: "m20261207_000401_create_recipients_and_notifications",
    up: "-- each customer's address, copied from the payment service's account.updated events
        CREATE TABLE recipients (
            customer_id TEXT        PRIMARY KEY,
            email       TEXT,
            -- the event's occurred_at: a late, older event never overwrites a newer address
            updated_at  TIMESTAMPTZ NOT NULL
        );
        -- one row per e-mail owed: the mail outbox
        CREATE TABLE notifications (
            id              UUID        PRIMARY KEY, -- UUIDv7: newest first is id order
            kind            TEXT        NOT NULL
                CHECK (kind IN ('order_confirmed', 'order_failed', 'low_stock')),
            -- what it is about, unique per kind: the order id, or for a low-stock alert the
            -- product and the event (each crossing of the threshold is its own alert)
            subject         TEXT        NOT NULL,
            order_id        UUID,
            product_id      TEXT,
            customer_id     TEXT,
            -- NULL when nobody could be written to (SKIPPED)
            recipient       TEXT,
            status          TEXT        NOT NULL
                CHECK (status IN ('PENDING', 'SENT', 'FAILED', 'SKIPPED')),
            attempts        INTEGER     NOT NULL DEFAULT 0,
            last_error      TEXT,
            -- what the templates render: the event's payload
            content         JSONB       NOT NULL,
            correlation_id  TEXT        NOT NULL,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
            sent_at         TIMESTAMPTZ,
            CONSTRAINT notifications_kind_subject UNIQUE (kind, subject)
        );
        -- the sender's claim: only what is still to be sent, by when it is due
        CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'PENDING';
        -- GET /api/notifications, newest first, by each filter
        CREATE INDEX notifications_by_order ON notifications (order_id, id DESC)
            WHERE order_id IS NOT NULL;
        CREATE INDEX notifications_by_product ON notifications (product_id, id DESC)
            WHERE product_id IS NOT NULL;
        CREATE INDEX notifications_by_status ON notifications (status, id DESC);
        -- no index by kind: three kinds share the table about evenly, so the newest of one kind
        -- are found walking the primary key; each index is one more write per event",
    down: "DROP TABLE notifications; DROP TABLE recipients;",
};
