//! `GET /api/analytics/summary`: exact numbers for orders driven through real sagas, the
//! rollups counting each step once, the operator token, bad ranges, and a month of rollups
//! (millions of orders) read without touching `orders`.

use std::collections::{BTreeMap, BTreeSet};
use std::slice;
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use orchestrator::analytics::fold;
use orchestrator::analytics::summary::{self, Range};
use orchestrator::saga::rollup::{DURATION_BOUNDS_MS, DURATION_BUCKETS};
use saga_common::testing::customer_token;

use crate::helpers::{FleetOptions, TestFleet, database, query_one, spawn_fleet_with};
use crate::messaging::{charged, handle, reserved, saga_awaiting_payment};
use crate::timeouts::{fleet_without_payment, manual_sweeps};

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn summary_response(fleet: &TestFleet, query: &str) -> reqwest::Response {
    fleet
        .get(format!(
            "{}/api/analytics/summary{query}",
            fleet.orchestrator.base
        ))
        .await
}

async fn summary_of(fleet: &TestFleet, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let response = summary_response(
        fleet,
        &format!("?from={}&to={}", rfc3339(from), rfc3339(to)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

fn minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Duration::minutes(1)).unwrap()
}

/// The histogram bucket of a duration: how many bounds it reaches.
fn bucket_of(ms: i64) -> usize {
    DURATION_BOUNDS_MS
        .iter()
        .filter(|&&bound| bound <= ms)
        .count()
}

fn products(list: &Value) -> Vec<(String, i64, i64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["product_id"].as_str().unwrap().to_owned(),
                p["quantity"].as_i64().unwrap(),
                p["revenue_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_summary_counts_a_known_set_of_orders_exactly() {
    // Payment starts late, so that one saga can be given up on (timed out) before it answers.
    let mut fleet = fleet_without_payment(manual_sweeps(0)).await;
    for (product, stock) in [("lamp", 100), ("mug", 100), ("desk", 1)] {
        fleet.set_stock(product, stock).await;
    }
    let from = Utc::now();
    let line = |product: &str, quantity: i64, price: i64| json!({"product_id": product, "quantity": quantity, "unit_price_cents": price});
    let order =
        |customer: &str, items: Vec<Value>| json!({"customer_id": customer, "items": items});

    let first = order("ann", vec![line("lamp", 2, 2_000), line("mug", 1, 800)]);
    let placed = fleet.post_order_with_key(&first, "analytics-a").await;
    let a: Value = placed.json().await.unwrap();
    // The same key again is the same order: placed once.
    let again: Value = fleet
        .post_order_with_key(&first, "analytics-a")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["order_id"], a["order_id"]);
    let a: Uuid = a["order_id"].as_str().unwrap().parse().unwrap();
    let b = fleet.place(&order("ann", vec![line("mug", 3, 800)])).await;
    let declined = fleet
        .place(&order("bob", vec![line("lamp", 1, 2_000)]))
        .await;
    let no_stock = fleet
        .place(&order("ann", vec![line("desk", 5, 1_000)]))
        .await;
    let given_up = fleet
        .place(&order("ann", vec![line("lamp", 1, 2_000)]))
        .await;
    let response = fleet
        .client
        .post(format!(
            "{}/api/sagas/{given_up}/compensate",
            fleet.orchestrator.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let payment_db = database(&fleet.payment.db_url).await;
    <payment::migration::Migrator as sea_orm_migration::MigratorTrait>::up(&payment_db, None)
        .await
        .unwrap();
    payment_db
        .execute_unprepared(
            "INSERT INTO accounts (customer_id, balance_cents) VALUES ('ann', 100000), ('bob', 0)",
        )
        .await
        .unwrap();
    fleet.start_payment().await;

    let mut orders = Vec::new();
    for (id, status, reason) in [
        (a, "COMPLETED", Value::Null),
        (b, "COMPLETED", Value::Null),
        (declined, "FAILED", json!("payment_declined")),
        (no_stock, "FAILED", json!("out_of_stock")),
        (given_up, "FAILED", json!("timed_out")),
    ] {
        let order = fleet.wait_final(id).await;
        assert_eq!(
            (&order["status"], &order["failure_reason"]),
            (&json!(status), &reason)
        );
        orders.push(order);
    }
    let to = Utc::now();

    let summary = summary_of(&fleet, from, to).await;

    assert_eq!(summary["placed"], 5, "the order placed twice counts once");
    assert_eq!(summary["completed"], 2);
    assert_eq!(
        summary["failed"],
        json!({"payment_declined": 1, "out_of_stock": 1, "timed_out": 1})
    );
    assert_eq!(summary["ended"], 5);
    assert_eq!(summary["success_rate"], 0.4);
    assert_eq!(summary["revenue_cents"], 2 * 2_000 + 800 + 3 * 800);
    // Completed orders only: the declined lamp, the desk and the timed-out lamp do not count.
    assert_eq!(
        products(&summary["top_products_by_quantity"]),
        [("mug".into(), 4, 3_200), ("lamp".into(), 2, 4_000)]
    );
    assert_eq!(
        products(&summary["top_products_by_revenue"]),
        [("lamp".into(), 2, 4_000), ("mug".into(), 4, 3_200)]
    );

    // Durations from placing to the end, as the orders show them, to the millisecond.
    let mut buckets = [0i64; DURATION_BUCKETS];
    let mut sum = 0;
    let mut per_minute: BTreeMap<DateTime<Utc>, (i64, i64, i64)> = BTreeMap::new();
    for order in &orders {
        let (created, ended) = (time(&order["created_at"]), time(&order["updated_at"]));
        let ms = (ended - created)
            .num_microseconds()
            .unwrap()
            .div_euclid(1_000);
        sum += ms;
        buckets[bucket_of(ms)] += 1;
        per_minute.entry(minute(created)).or_default().0 += 1;
        let ending = per_minute.entry(minute(ended)).or_default();
        match order["status"].as_str().unwrap() {
            "COMPLETED" => ending.1 += 1,
            _ => ending.2 += 1,
        }
    }
    assert_eq!(
        summary["mean_duration_ms"].as_f64().unwrap(),
        sum as f64 / 5.0
    );
    let counted: Vec<i64> = summary["duration_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counted, buckets);
    // Four of five is 80 %: the 95th percentile is the slowest saga's bucket.
    let slowest = buckets.iter().rposition(|&n| n > 0).unwrap();
    assert_eq!(
        summary["p95_duration_ms"],
        json!(DURATION_BOUNDS_MS.get(slowest))
    );

    // Every minute of the range, zeros included; the orders in the minutes they were placed
    // and ended.
    let series = &summary["orders_per_minute"];
    let (first_minute, end) = (minute(from), minute(to) + Duration::minutes(1));
    assert_eq!(time(&summary["from"]), first_minute);
    assert_eq!(time(&summary["to"]), end);
    let minutes = (end - first_minute).num_minutes();
    for column in ["placed", "completed", "failed"] {
        assert_eq!(series[column].as_array().unwrap().len() as i64, minutes);
    }
    for i in 0..minutes {
        let at = first_minute + Duration::minutes(i);
        let (placed, completed, failed) = per_minute.get(&at).copied().unwrap_or_default();
        let i = i as usize;
        assert_eq!(
            (
                &series["placed"][i],
                &series["completed"][i],
                &series["failed"][i]
            ),
            (&json!(placed), &json!(completed), &json!(failed)),
            "{at}"
        );
    }
}

/// Sums of the rollups, straight from the tables.
async fn rollup_totals(db: &DatabaseConnection) -> Value {
    query_one(
        db,
        "SELECT json_build_object( \
           'completed', (SELECT coalesce(sum(completed), 0) FROM order_minutes), \
           'revenue_cents', (SELECT coalesce(sum(revenue_cents), 0) FROM order_minutes), \
           'quantity', (SELECT coalesce(sum(quantity), 0) FROM product_hours)) AS row",
        vec![],
    )
    .await
}

#[tokio::test]
async fn a_reply_delivered_again_or_in_a_failed_batch_is_counted_once() {
    let (handler, db, order) = saga_awaiting_payment().await;
    let none = json!({"completed": 0, "revenue_cents": 0, "quantity": 0});
    handle(&db, &handler, &[charged(&order)]).await.unwrap();
    assert_eq!(rollup_totals(&db).await, none);

    // The completing reply in a batch that fails (a reply for no saga): nothing counted.
    let reserve = reserved(&order);
    let mut unknown = reserved(&order);
    unknown.saga_id = Uuid::now_v7();
    assert!(
        handle(&db, &handler, &[reserve.clone(), unknown])
            .await
            .is_err()
    );
    assert_eq!(rollup_totals(&db).await, none);

    // Handled, then delivered again: counted once.
    let once = json!({"completed": 1, "revenue_cents": 10, "quantity": 1});
    for _ in 0..2 {
        handle(&db, &handler, slice::from_ref(&reserve))
            .await
            .unwrap();
        assert_eq!(rollup_totals(&db).await, once);
    }
}

#[tokio::test]
async fn the_summary_is_for_operators_only() {
    let fleet = orchestrator_alone().await;
    let url = format!("{}/api/analytics/summary", fleet.orchestrator.base);
    let anonymous = fleet.anonymous.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let customer = fleet
        .anonymous
        .get(&url)
        .bearer_auth(customer_token("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(customer.status(), StatusCode::FORBIDDEN);
    let operator = summary_response(&fleet, "").await;
    assert_eq!(operator.status(), StatusCode::OK, "by default, today");
    let today: Value = operator.json().await.unwrap();
    assert_eq!(
        today["orders_per_minute"]["placed"]
            .as_array()
            .unwrap()
            .len(),
        1_440
    );
    assert_eq!(today["success_rate"], Value::Null, "nothing ended yet");
}

#[tokio::test]
async fn a_bad_range_is_a_422_naming_the_parameter() {
    let fleet = orchestrator_alone().await;
    for (query, field) in [
        ("?from=yesterday", "from"),
        ("?to=2026-13-01T00:00:00Z", "to"),
        ("?from=2026-12-07T10:00:00Z&to=2026-12-07T10:00:00Z", "to"),
        ("?from=2026-12-07T10:00:00Z&to=2026-12-07T09:00:00Z", "to"),
        ("?from=2026-11-01T00:00:00Z&to=2026-12-02T00:00:01Z", "to"),
    ] {
        let response = summary_response(&fleet, query).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "validation_failed", "{query}");
        assert_eq!(error["details"][0]["field"], field, "{query}");
    }
    let month = "?from=2026-11-01T00:00:00Z&to=2026-12-02T00:00:00Z";
    assert_eq!(
        summary_response(&fleet, month).await.status(),
        StatusCode::OK
    );
}

async fn orchestrator_alone() -> TestFleet {
    spawn_fleet_with(FleetOptions {
        with_payment: false,
        with_inventory: false,
        ..FleetOptions::default()
    })
    .await
}

/// The relations a statement's plan reads, as PostgreSQL plans it on the service's connections
/// (generic plans, no sequential scans: `saga_common::db::connect`).
async fn relations_read(db: &DatabaseConnection, statement: Statement) -> BTreeSet<String> {
    db.execute_unprepared(
        "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
         SET enable_bitmapscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off",
    )
    .await
    .unwrap();
    let explain = Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        format!("EXPLAIN (FORMAT JSON) {}", statement.sql),
        statement.values.map(|v| v.0).unwrap_or_default(),
    );
    let row = db.query_one_raw(explain).await.unwrap().unwrap();
    let plan: Value = row.try_get("", "QUERY PLAN").unwrap();
    fn walk(node: &Value, out: &mut BTreeSet<String>) {
        if let Some(name) = node["Relation Name"].as_str() {
            out.insert(name.to_owned());
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let mut relations = BTreeSet::new();
    walk(&plan[0]["Plan"], &mut relations);
    relations
}

#[tokio::test]
async fn a_month_of_millions_of_orders_is_summed_from_the_rollups_alone() {
    let fleet = orchestrator_alone().await;
    let db = database(&fleet.orchestrator.db_url).await;
    // 32 days of every minute on every shard, as if the fold had not run, the first day outside
    // the range asked for: each row 12 orders placed, 10 completed, one out of stock, one timed
    // out; every hour 50 products.
    let from: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    db.execute_unprepared(
        "INSERT INTO order_minutes (minute, shard, placed, completed, failed_out_of_stock, \
           failed_timed_out, revenue_cents, duration_ms_sum, duration_b03, duration_b07) \
         SELECT m, s, 12, 10, 1, 1, 25000, 960, 11, 1 \
         FROM generate_series('2025-12-31T00:00:00Z'::timestamptz, \
           '2026-01-31T23:59:00Z', interval '1 minute') AS m, generate_series(0, 3) AS s; \
         INSERT INTO product_hours (hour, shard, product_id, quantity, revenue_cents) \
         SELECT h, s, 'p' || lpad(p::text, 2, '0'), p + 1, (50 - p) * 100 \
         FROM generate_series('2025-12-31T00:00:00Z'::timestamptz, \
           '2026-01-31T23:00:00Z', interval '1 hour') AS h, generate_series(0, 3) AS s, \
           generate_series(0, 49) AS p; \
         ANALYZE order_minutes; ANALYZE product_hours;",
    )
    .await
    .unwrap();

    let to = from + Duration::days(31);
    let started = Instant::now();
    let unfolded = summary_of(&fleet, from, to).await;
    let took = started.elapsed();
    eprintln!("summary of 31 days, 4 shards (178,560 minute rows, 148,800 product rows): {took:?}");

    // Folded, the month is a row per minute (and per hour and product), the numbers the same.
    fold::fold(&db).await.unwrap();
    let rows_left = query_one(
        &db,
        "SELECT json_build_array((SELECT count(*) FROM order_minutes), \
           (SELECT count(*) FROM product_hours)) AS row",
        vec![],
    )
    .await;
    assert_eq!(rows_left, json!([32 * 1_440, 32 * 24 * 50]));
    let started = Instant::now();
    let summary = summary_of(&fleet, from, to).await;
    let took = started.elapsed();
    eprintln!("summary of 31 days, folded (44,640 minute rows, 37,200 product rows): {took:?}");
    assert_eq!(summary, unfolded);

    let rows: i64 = 31 * 1_440 * 4;
    assert_eq!(summary["placed"], 12 * rows, "2,142,720 orders");
    assert_eq!(summary["completed"], 10 * rows);
    assert_eq!(
        summary["failed"],
        json!({"payment_declined": 0, "out_of_stock": rows, "timed_out": rows})
    );
    assert_eq!(summary["revenue_cents"], 25_000 * rows);
    assert_eq!(summary["mean_duration_ms"], 80.0);
    // 11 of 12 (91.7 %) under 100 ms: the 95th percentile is the next bucket's bound.
    assert_eq!(summary["p95_duration_ms"], DURATION_BOUNDS_MS[7]);
    let placed = summary["orders_per_minute"]["placed"].as_array().unwrap();
    assert_eq!(placed.len(), 31 * 1_440);
    assert!(
        placed.iter().all(|n| n == 48),
        "12 on each of 4 shards, every minute"
    );
    let hours: i64 = 31 * 24 * 4;
    let by_quantity = products(&summary["top_products_by_quantity"]);
    assert_eq!(by_quantity.len(), 10);
    assert_eq!(by_quantity[0], ("p49".into(), 50 * hours, 100 * hours));
    let by_revenue = products(&summary["top_products_by_revenue"]);
    assert_eq!(by_revenue[0], ("p00".into(), hours, 5_000 * hours));

    // However many orders, the summary reads the rollups and nothing else.
    let range = Range::new(Some(from), Some(to), Utc::now()).unwrap();
    let [totals, minutes, products] = summary::statements(&range);
    for statement in [totals, minutes] {
        assert_eq!(
            relations_read(&db, statement).await,
            BTreeSet::from(["order_minutes".to_owned()])
        );
    }
    assert_eq!(
        relations_read(&db, products).await,
        BTreeSet::from(["product_hours".to_owned()])
    );
}
