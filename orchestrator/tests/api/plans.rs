//! The pool's planner settings (`saga_common::db::connect`): a statement is planned once, and the
//! one plan kept serves the tables at any size, so even planned on an empty table it walks the
//! index of its keys.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

use orchestrator::orders::model::OrderStatus;
use orchestrator::orders::store::{self, ListFilter};
use orchestrator::saga::timeline;
use saga_common::configuration::DatabaseSettings;
use saga_common::messaging::outbox;

use crate::helpers::spawn_fleet;

/// The plan `EXPLAIN EXECUTE` shows for `prepared`, run with `arguments` on one pooled
/// connection, the way sqlx runs every statement of the fleet: prepared, then executed.
async fn plan_of(url: &str, prepared: &str, arguments: &str) -> String {
    let mut settings = DatabaseSettings::for_database("unused");
    settings.url = url.into();
    let db = saga_common::db::connect(&settings).await.unwrap();
    // One transaction: one connection for the PREPARE and the EXPLAIN.
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!("PREPARE planned AS {prepared}"))
        .await
        .unwrap();
    let rows = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            if arguments.is_empty() {
                "EXPLAIN EXECUTE planned".to_owned()
            } else {
                format!("EXPLAIN EXECUTE planned({arguments})")
            },
        ))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn statements_on_empty_tables_get_one_generic_plan_that_walks_their_index() {
    let fleet = spawn_fleet().await;
    let url = &fleet.orchestrator.db_url;

    // The batch read of a reply batch: the sagas of its orders, locked in key order.
    let lock = plan_of(
        url,
        "SELECT order_id FROM orders WHERE order_id = ANY($1::uuid[]) \
         ORDER BY order_id FOR NO KEY UPDATE",
        "ARRAY[gen_random_uuid()]",
    )
    .await;
    // `$1` in the plan: the generic one, the same for every later execution.
    assert!(
        lock.contains("orders_pkey") && lock.contains("$1"),
        "{lock}"
    );
    assert!(
        !lock.contains("Seq Scan") && !lock.contains("Bitmap"),
        "{lock}"
    );

    // The inbox's check for replies seen before: both columns of its key in the index
    // condition, not the first alone with the second left as a filter over every row of it.
    let seen = plan_of(
        url,
        "SELECT message_id FROM inbox WHERE consumer = $1::text AND message_id = ANY($2::uuid[])",
        "'orchestrator', ARRAY[gen_random_uuid()]",
    )
    .await;
    let condition = seen
        .lines()
        .find(|line| line.contains("Index Cond"))
        .unwrap_or_default();
    assert!(
        seen.contains("inbox_pkey")
            && condition.contains("consumer")
            && condition.contains("message_id"),
        "{seen}"
    );
    assert!(!seen.contains("Filter"), "{seen}");

    // The orders listing by status, as `store::list` writes it: the status's own statement,
    // walking the index of that status.
    let filter = ListFilter {
        status: Some(OrderStatus::Pending),
        limit: 50,
        ..ListFilter::default()
    };
    let (sql, values) = store::list_statement(&filter);
    assert_eq!(values.len(), 1, "only the limit is a parameter: {sql}");
    let listing = plan_of(url, &sql, "50").await;
    assert!(listing.contains("orders_by_status"), "{listing}");
    assert!(!listing.contains("Seq Scan"), "{listing}");

    // Admission control's recount of the sagas in flight: only the `PENDING` entries of the
    // status index (an index-only scan with the status as its condition), whatever the table's
    // size.
    let in_flight = plan_of(url, orchestrator::admission::recount::COUNT_IN_FLIGHT, "").await;
    let condition = conditions_of(&in_flight, "orders_by_status");
    assert!(
        condition.len() == 1 && condition[0].contains("status"),
        "{in_flight}"
    );
    assert!(!in_flight.contains("Seq Scan"), "{in_flight}");

    // The newest payments, as `payments::list` reads them: the primary key (UUIDv7,
    // time-ordered) read backwards, no scan and no sort of the whole table.
    let newest = payment::payments::list_statement(None);
    assert!(newest.values.is_none_or(|values| values.0.is_empty()));
    let payments = plan_of(&fleet.payment.db_url, &newest.sql, "").await;
    assert!(
        payments.contains("Index Scan Backward using payments_pkey"),
        "{payments}"
    );
    assert!(
        !payments.contains("Seq Scan") && !payments.contains("Sort"),
        "{payments}"
    );

    // The relay's two reads. The outbox keeps every message ever sent, so it is only ever read
    // by key: an index walked end to end (a node without an `Index Cond`) would read them all.
    // The first version of the scan, a plain join planned on these empty tables, did exactly
    // that, walking the outbox in id order and looking each row up among the pending ones.
    let by_id = plan_of(url, outbox::READ_IDS, "ARRAY[1::bigint], ARRAY[2::bigint]").await;
    let scan = plan_of(url, outbox::SCAN, "10, 5.0, ARRAY[1::bigint]").await;
    for plan in [&by_id, &scan] {
        let outbox_reads = conditions_of(plan, "outbox_pkey");
        assert!(
            !outbox_reads.is_empty() && outbox_reads.iter().all(|c| c.contains("id")),
            "the outbox is read by key: {plan}"
        );
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Bitmap"),
            "{plan}"
        );
    }
    // The handed-over ids: their pending rows by key too, and no sort.
    let pending_reads = conditions_of(&by_id, "outbox_pending_pkey");
    assert!(
        !pending_reads.is_empty() && pending_reads.iter().all(|c| c.contains("id")),
        "{by_id}"
    );
    assert!(!by_id.contains("Sort"), "{by_id}");
    // The scan: the oldest pending rows, in key order (what it sorts is the batch it took).
    assert!(scan.contains("outbox_pending_pkey"), "{scan}");
}

#[tokio::test]
async fn a_repeated_resend_reads_and_counts_its_saga_s_latest_transition_by_key() {
    let fleet = spawn_fleet().await;
    let plan = plan_of(
        &fleet.orchestrator.db_url,
        &timeline::repeats_sql(None),
        "'[]'::jsonb",
    )
    .await;
    // Both reads of `saga_transitions` have an `Index Cond`: the latest entry by order, the row
    // to update by id; none walks the table, which keeps every step of every saga.
    let latest = conditions_of(&plan, "saga_transitions_by_order");
    let updated = conditions_of(&plan, "saga_transitions_pkey");
    assert!(
        !latest.is_empty() && latest.iter().all(|c| c.contains("order_id")),
        "{plan}"
    );
    assert!(
        !updated.is_empty() && updated.iter().all(|c| c.contains("id")),
        "{plan}"
    );
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("Materialize"),
        "{plan}"
    );
}

/// The `Index Cond` lines of the plan nodes that scan `index`, one per node; an empty string for
/// a node without one (the index walked end to end).
fn conditions_of(plan: &str, index: &str) -> Vec<String> {
    let lines: Vec<&str> = plan.lines().collect();
    let scan = format!("using {index} ");
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains(&scan))
        .map(|(i, _)| {
            lines[i + 1..]
                .iter()
                .take_while(|line| !line.contains("->"))
                .find(|line| line.contains("Index Cond"))
                .map(|line| line.trim().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn pooled_connections_never_compile_statements_with_jit() {
    let fleet = spawn_fleet().await;
    let mut settings = DatabaseSettings::for_database("unused");
    settings.url = fleet.orchestrator.db_url.as_str().into();
    let db = saga_common::db::connect(&settings).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('jit') AS jit",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "jit").unwrap(), "off");
}

#[tokio::test]
async fn each_filter_of_the_saga_search_walks_an_index() {
    use chrono::TimeDelta;
    use orchestrator::saga::machine::FailureReason;
    use orchestrator::saga::search::{OlderThan, SagaFilter, Search};
    use orchestrator::saga::status::StateName;
    use orchestrator::saga::store::search_statement;

    let fleet = spawn_fleet().await;
    let url = &fleet.orchestrator.db_url;
    let none = SagaFilter::default;
    let cases = [
        (none(), "50", "orders_newest"),
        (
            SagaFilter {
                status: Some(OrderStatus::Failed),
                ..none()
            },
            "50",
            "orders_by_status",
        ),
        (
            SagaFilter {
                state: Some(StateName::AwaitingStock),
                ..none()
            },
            "50",
            "orders_by_status",
        ),
        (
            SagaFilter {
                reason: Some(FailureReason::TimedOut),
                ..none()
            },
            "50",
            "orders_by_status",
        ),
        (
            SagaFilter {
                customer_id: Some("c-1".into()),
                ..none()
            },
            "'c-1', 50",
            "orders_by_customer",
        ),
        (
            SagaFilter {
                older_than: Some(OlderThan(TimeDelta::minutes(10))),
                ..none()
            },
            "now(), 50",
            "orders_newest",
        ),
        (
            SagaFilter {
                overdue: true,
                ..none()
            },
            "50",
            "orders_by_deadline",
        ),
        (
            SagaFilter {
                q: Some(Search::Order(uuid::Uuid::now_v7())),
                ..none()
            },
            "gen_random_uuid(), 50",
            "orders_pkey",
        ),
    ];
    for (filter, arguments, index) in cases {
        let (sql, _) = search_statement(&filter, None, 50);
        let plan = plan_of(url, &sql, arguments).await;
        assert!(plan.contains(index), "{filter:?}: {plan}");
        assert!(!plan.contains("Seq Scan"), "{filter:?}: {plan}");
    }
}
