//! The metric names fixed by issue 25 and the working agreement; the label values each takes
//! are documented in docs/observability.md.

pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
pub const ORDERS_REJECTED: &str = "orders_rejected_total";

pub const CONSUMED: &str = "messaging_consumed_messages_total";
pub const PROCESS_DURATION: &str = "messaging_process_duration_seconds";
pub const PUBLISHED: &str = "messaging_published_messages_total";
pub const BATCH_SIZE: &str = "messaging_batch_size";
pub const AMQP_UP: &str = "amqp_connection_up";

pub const OUTBOX_PENDING: &str = "outbox_pending_messages";
pub const OUTBOX_OLDEST_AGE: &str = "outbox_oldest_pending_age_seconds";
pub const DLQ_MESSAGES: &str = "dead_letter_queue_messages";
pub const DEAD_LETTERED: &str = "dead_lettered_messages_total";
pub const RETRIED: &str = "retried_messages_total";

pub const POOL_CONNECTIONS: &str = "db_pool_connections";
/// Written by `metrics-process`, under the Prometheus client libraries' names.
pub const PROCESS_MEMORY: &str = "process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_FDS: &str = "process_open_fds";

/// `messaging_consumed_messages_total{outcome}`: each delivery settled is exactly one.
pub const ACKED: &str = "acked";
pub const DUPLICATE: &str = "duplicate";
pub const RETRIED_OUTCOME: &str = "retried";
pub const DEAD_LETTERED_OUTCOME: &str = "dead_lettered";

/// The `type` label of a message whose type its queue's contract does not have (or that could
/// not be parsed at all): one value, so a stranger's types cannot grow the label set.
pub const UNKNOWN_TYPE: &str = "unknown";

/// `orders_rejected_total{reason}`.
pub const REJECTION_REASONS: [&str; 4] = ["overloaded", "rate_limited", "unauthorized", "invalid"];

/// Every generic metric name every service has from its first scrape (the orchestrator has
/// [`ORDERS_REJECTED`] too), for the tests that check it.
pub const GENERIC: [&str; 15] = [
    HTTP_DURATION,
    CONSUMED,
    PROCESS_DURATION,
    PUBLISHED,
    BATCH_SIZE,
    AMQP_UP,
    OUTBOX_PENDING,
    OUTBOX_OLDEST_AGE,
    DLQ_MESSAGES,
    DEAD_LETTERED,
    RETRIED,
    POOL_CONNECTIONS,
    PROCESS_MEMORY,
    PROCESS_CPU,
    PROCESS_FDS,
];
