//! Describes every generic metric (help text and unit) and registers it at zero, with the label
//! sets known at start-up: the service's queue, the types its contract consumes and publishes,
//! each outcome and reason. An alert then never reads an absent series as a healthy one.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

use super::names::*;
use crate::contracts::{
    AccountEvent, Contract, InventoryCommand, OrderEvent, PaymentCommand, Reply, StockEvent,
};
use crate::messaging::consumer::{
    INVALID_PAYLOAD, MALFORMED_MESSAGE, OUTSIDE_DEDUP_WINDOW, RETRIES_EXHAUSTED,
    UNKNOWN_MESSAGE_TYPE,
};
use crate::messaging::topology;

/// The dead-letter reasons of the consumer itself; a handler's own reasons appear when first
/// used.
pub(crate) const CONSUMER_REASONS: [&str; 5] = [
    RETRIES_EXHAUSTED,
    MALFORMED_MESSAGE,
    INVALID_PAYLOAD,
    OUTSIDE_DEDUP_WINDOW,
    UNKNOWN_MESSAGE_TYPE,
];

/// Installs the recorder if need be, then describes and registers the generic metrics of a
/// service consuming `queue`; with `takes_orders`, `orders_rejected_total` too.
pub fn register(queue: &str, takes_orders: bool) {
    super::install();
    describe();
    let queue = queue.to_owned();
    // The scrape's own series: there before the first scrape is counted.
    let _ = metrics::histogram!(HTTP_DURATION, "method" => "GET", "route" => "/metrics", "status" => "200");
    for message_type in consumed_types(&queue).iter().chain([&UNKNOWN_TYPE]) {
        for outcome in [ACKED, DUPLICATE, RETRIED_OUTCOME, DEAD_LETTERED_OUTCOME] {
            metrics::counter!(CONSUMED, "queue" => queue.clone(), "type" => *message_type, "outcome" => outcome)
                .absolute(0);
        }
        let _ = metrics::histogram!(PROCESS_DURATION, "queue" => queue.clone(), "type" => *message_type);
    }
    for (exchange, types) in published_types(&queue) {
        for message_type in types {
            metrics::counter!(PUBLISHED, "exchange" => exchange, "type" => message_type)
                .absolute(0);
        }
    }
    let _ = metrics::histogram!(BATCH_SIZE, "queue" => queue.clone());
    metrics::counter!(RETRIED, "queue" => queue.clone()).absolute(0);
    for reason in CONSUMER_REASONS {
        metrics::counter!(DEAD_LETTERED, "queue" => queue.clone(), "reason" => reason).absolute(0);
    }
    metrics::gauge!(DLQ_MESSAGES, "queue" => queue.clone()).set(0.0);
    metrics::gauge!(AMQP_UP).set(0.0);
    metrics::gauge!(OUTBOX_PENDING).set(0.0);
    metrics::gauge!(OUTBOX_OLDEST_AGE).set(0.0);
    for state in ["in_use", "idle"] {
        metrics::gauge!(POOL_CONNECTIONS, "state" => state).set(0.0);
    }
    super::gauges::process_collector().collect();
    if takes_orders {
        for reason in REJECTION_REASONS {
            metrics::counter!(ORDERS_REJECTED, "reason" => reason).absolute(0);
        }
    }
}

fn describe() {
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP requests served, by method, route template and status; refusals included"
    );
    describe_counter!(
        ORDERS_REJECTED,
        Unit::Count,
        "Orders refused at POST /api/orders, by reason (overloaded, rate_limited, unauthorized, invalid)"
    );
    describe_counter!(
        CONSUMED,
        Unit::Count,
        "Deliveries settled, by queue, message type and outcome (acked, duplicate, retried, dead_lettered)"
    );
    describe_histogram!(
        PROCESS_DURATION,
        Unit::Seconds,
        "Time from a message's batch starting to its commit, by queue and message type"
    );
    describe_counter!(
        PUBLISHED,
        Unit::Count,
        "Outbox messages the broker confirmed, by exchange and message type"
    );
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Deliveries applied in one transaction, by queue"
    );
    describe_gauge!(
        AMQP_UP,
        Unit::Count,
        "1 while the service's RabbitMQ connection and channels are open, else 0"
    );
    describe_gauge!(
        OUTBOX_PENDING,
        Unit::Count,
        "Outbox messages written and not yet confirmed by the broker"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest outbox message not yet confirmed; 0 when none is pending"
    );
    describe_gauge!(
        DLQ_MESSAGES,
        Unit::Count,
        "Messages in the dead-letter queue of a work queue (label: the work queue)"
    );
    describe_counter!(
        DEAD_LETTERED,
        Unit::Count,
        "Messages moved to a dead-letter queue, by work queue and reason"
    );
    describe_counter!(
        RETRIED,
        Unit::Count,
        "Messages scheduled for a retry after a transient failure, by queue"
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Database pool connections, by state (in_use, idle)"
    );
    super::gauges::process_collector().describe();
}

/// The types `queue`'s contract delivers (the `type` label values of the consumer's metrics).
pub(crate) fn consumed_types(queue: &str) -> Vec<&'static str> {
    topology::work_queues()
        .into_iter()
        .find(|(name, _, _)| *name == queue)
        .map(|(_, _, types)| types)
        .unwrap_or_default()
}

/// What the consumer of `queue` publishes: the orchestrator sends commands and order events,
/// a participant its own replies (the reply types named after its commands' domain) and its
/// own events (payment `account.updated`, inventory `inventory.low_stock`).
fn published_types(queue: &str) -> Vec<(&'static str, Vec<&'static str>)> {
    if queue == topology::ORCHESTRATOR_REPLIES {
        let commands = PaymentCommand::TYPES
            .iter()
            .chain(InventoryCommand::TYPES)
            .copied()
            .collect();
        return vec![
            (topology::COMMANDS_EXCHANGE, commands),
            (topology::EVENTS_EXCHANGE, OrderEvent::TYPES.to_vec()),
        ];
    }
    if queue == topology::NOTIFICATION_EVENTS {
        // It sends mail, not messages.
        return Vec::new();
    }
    let domain = queue.split('.').next().unwrap_or(queue);
    let replies = Reply::TYPES
        .iter()
        .filter(|name| name.split('.').next() == Some(domain))
        .copied()
        .collect();
    let events = match queue {
        topology::PAYMENT_COMMANDS => AccountEvent::TYPES.to_vec(),
        topology::INVENTORY_COMMANDS => StockEvent::TYPES.to_vec(),
        _ => Vec::new(),
    };
    let mut published = vec![(topology::REPLIES_EXCHANGE, replies)];
    if !events.is_empty() {
        published.push((topology::EVENTS_EXCHANGE, events));
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_participant_publishes_its_own_replies_and_events_and_the_orchestrator_commands_and_events()
    {
        assert_eq!(
            published_types(topology::PAYMENT_COMMANDS),
            [
                (
                    topology::REPLIES_EXCHANGE,
                    vec!["payment.charged", "payment.declined", "payment.refunded"]
                ),
                (topology::EVENTS_EXCHANGE, vec!["account.updated"]),
            ]
        );
        assert_eq!(
            published_types(topology::INVENTORY_COMMANDS),
            [
                (
                    topology::REPLIES_EXCHANGE,
                    vec![
                        "inventory.reserved",
                        "inventory.reservation_failed",
                        "inventory.released"
                    ]
                ),
                (topology::EVENTS_EXCHANGE, vec!["inventory.low_stock"]),
            ]
        );
        let orchestrator = published_types(topology::ORCHESTRATOR_REPLIES);
        assert_eq!(orchestrator[0].1.len(), 4);
        assert_eq!(orchestrator[1].1, ["order.completed", "order.failed"]);
        assert_eq!(
            consumed_types(topology::INVENTORY_COMMANDS),
            ["inventory.reserve", "inventory.release"]
        );
    }
}
