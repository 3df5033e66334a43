//! The seeded population over the services' HTTP APIs: accounts and products written before
//! the load, read back after it (with a sample of payments) for the invariants.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use futures_util::stream;

use crate::cli::Settings;
use crate::drive::{Error, Record, SIDE_CONCURRENCY};
use crate::invariants::{self, Mismatch, Settled};
use crate::mix::Population;

pub async fn seed(http: &reqwest::Client, s: &Settings, p: &Population) -> Result<(), Error> {
    let accounts = p.accounts().map(|(id, balance)| {
        (
            format!("{}/api/accounts/{id}", s.payment),
            serde_json::json!({ "balance_cents": balance }),
        )
    });
    let products = p.products().map(|(id, stock)| {
        (
            format!("{}/api/products/{id}", s.inventory),
            serde_json::json!({ "stock": stock }),
        )
    });
    let puts: Vec<_> = accounts.chain(products).collect();
    let results: Vec<Result<(), String>> = stream::iter(puts)
        .map(|(url, body)| async move {
            let response = http
                .put(&url)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("PUT {url}: {e}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("PUT {url}: HTTP {}", response.status()))
            }
        })
        .buffer_unordered(SIDE_CONCURRENCY)
        .collect()
        .await;
    match results.into_iter().find_map(Result::err) {
        Some(first) => Err(format!("seeding failed: {first}").into()),
        None => Ok(()),
    }
}

/// Reads back every seeded account and product and a sample of payments.
pub async fn check(
    http: &reqwest::Client,
    s: &Settings,
    p: &Population,
    records: &[Record],
) -> Result<(Vec<Mismatch>, Vec<String>, usize), Error> {
    let settled: Vec<Settled<'_>> = records
        .iter()
        .map(|r| Settled {
            customer_id: &r.customer_id,
            total_cents: r.total_cents,
            lines: r.lines.iter().map(|(id, q)| (id.as_str(), *q)).collect(),
            completed: match (r.status.as_deref(), &r.error, r.http_status) {
                (Some("COMPLETED"), _, _) => Some(true),
                (Some("FAILED"), _, _) => Some(false),
                // Refused outright (4xx): no order exists, so nothing moved.
                (None, Some(_), Some(code)) if (400..500).contains(&code) => Some(false),
                _ => None,
            },
        })
        .collect();
    let e = invariants::expected(p.accounts(), p.products(), &settled);

    let accounts = read_all(
        http,
        p.accounts()
            .map(|(id, _)| (id.to_string(), format!("{}/api/accounts/{id}", s.payment))),
    )
    .await;
    let products = read_all(
        http,
        p.products()
            .map(|(id, _)| (id.to_string(), format!("{}/api/products/{id}", s.inventory))),
    )
    .await;
    let field = |rows: &BTreeMap<String, Option<serde_json::Value>>,
                 name: &str|
     -> BTreeMap<String, Option<i64>> {
        rows.iter()
            .map(|(id, v)| {
                (
                    id.clone(),
                    v.as_ref()
                        .and_then(|v| v.get(name))
                        .and_then(serde_json::Value::as_i64),
                )
            })
            .collect()
    };
    let mut mismatches = invariants::compare(
        "balance_cents",
        &e.balance,
        &field(&accounts, "balance_cents"),
        &e.unverifiable,
    );
    mismatches.extend(invariants::compare(
        "available",
        &e.available,
        &field(&products, "available"),
        &e.unverifiable,
    ));
    mismatches.extend(invariants::compare(
        "reserved",
        &e.reserved,
        &field(&products, "reserved"),
        &e.unverifiable,
    ));
    if !e.unverifiable.is_empty() {
        eprintln!(
            "loadgen: {} ids touched by orders of unknown outcome were not checked",
            e.unverifiable.len()
        );
    }

    // Payments: every terminal order, or an even sample of them.
    let terminal: Vec<&Record> = records.iter().filter(|r| r.terminal()).collect();
    let step = if s.payment_checks == 0 {
        1
    } else {
        terminal.len().div_ceil(s.payment_checks).max(1)
    };
    let sample: Vec<&Record> = terminal.into_iter().step_by(step).collect();
    let checked = sample.len();
    let payment_errors: Vec<String> = stream::iter(sample)
        .map(|r| async move {
            let order_id = r.order_id?;
            let url = format!("{}/api/payments?order_id={order_id}", s.payment);
            let rows: Result<Vec<serde_json::Value>, String> = match http.get(&url).send().await {
                Ok(resp) => resp.json().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let result = rows.and_then(|rows| {
                let statuses: Vec<String> = rows
                    .iter()
                    .filter_map(|v| v.get("status")?.as_str().map(str::to_string))
                    .collect();
                invariants::payment_matches(
                    r.status.as_deref().unwrap_or(""),
                    r.failure_reason.as_deref(),
                    &statuses,
                )
            });
            result.err().map(|e| format!("order {order_id}: {e}"))
        })
        .buffer_unordered(SIDE_CONCURRENCY)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    Ok((mismatches, payment_errors, checked))
}

async fn read_all(
    http: &reqwest::Client,
    urls: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, Option<serde_json::Value>> {
    stream::iter(urls.collect::<Vec<_>>())
        .map(|(id, url)| async move {
            let value = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            };
            (id, value)
        })
        .buffer_unordered(SIDE_CONCURRENCY)
        .collect()
        .await
}
