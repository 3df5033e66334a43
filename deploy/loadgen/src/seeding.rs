//! The seeded population over the services' HTTP APIs: accounts and products written before
//! the load, read back after it (with a sample of payments) for the invariants.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use futures_util::stream;
use uuid::Uuid;

use crate::auth::Credentials;
use crate::cli::Settings;
use crate::drive::{Error, Record, SIDE_CONCURRENCY};
use crate::invariants::{self, Expected, Mismatch, Settled};
use crate::mix::Population;

pub async fn seed(
    http: &reqwest::Client,
    s: &Settings,
    p: &Population,
    auth: &Credentials,
) -> Result<(), Error> {
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
            let response = auth
                .operator(http.put(&url))
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

/// What one order did, for the invariants.
pub fn settled(r: &Record) -> Settled<'_> {
    Settled {
        customer_id: &r.customer_id,
        total_cents: r.total_cents,
        lines: r.lines.iter().map(|(id, q)| (id.as_str(), *q)).collect(),
        completed: match (r.status.as_deref(), &r.error, r.http_status) {
            (Some("COMPLETED"), _, _) => Some(true),
            (Some("FAILED"), _, _) => Some(false),
            // Refused outright (4xx): no order exists, so nothing moved.
            (None, Some(_), Some(code)) if (400..500).contains(&code) => Some(false),
            // Shed (503 overloaded) or rate-limited (429), with Retry-After: the contract is
            // that nothing was written. Any other 5xx stays unverifiable.
            (None, None, _) if r.refusal.is_some() => Some(false),
            _ => None,
        },
    }
}

/// A terminal order whose payments are read back: one payment, in the state its end implies.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentCheck {
    pub order_id: Uuid,
    pub status: String,
    pub failure_reason: Option<String>,
}

impl PaymentCheck {
    pub fn of(r: &Record) -> Option<Self> {
        if !r.terminal() {
            return None;
        }
        Some(Self {
            order_id: r.order_id?,
            status: r.status.clone()?,
            failure_reason: r.failure_reason.clone(),
        })
    }
}

/// Every terminal order, or an even sample of `checks` of them (0: all); with `since_s`, only
/// of the orders sent at or after that second of the load (their payments are not yet pruned).
pub fn payment_sample(records: &[Record], checks: usize, since_s: f64) -> Vec<PaymentCheck> {
    let terminal: Vec<PaymentCheck> = records
        .iter()
        .filter(|r| r.sent_s >= since_s)
        .filter_map(PaymentCheck::of)
        .collect();
    let step = if checks == 0 {
        1
    } else {
        terminal.len().div_ceil(checks).max(1)
    };
    terminal.into_iter().step_by(step).collect()
}

/// What the invariants' checks found.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub mismatches: Vec<Mismatch>,
    pub payment_errors: Vec<String>,
    pub payments_checked: usize,
}

/// Reads back every seeded account and product, compared with `e`, and the payments of
/// `sample`.
pub async fn check(
    http: &reqwest::Client,
    s: &Settings,
    p: &Population,
    auth: &Credentials,
    e: Expected,
    sample: Vec<PaymentCheck>,
) -> Result<Checks, Error> {
    let accounts = read_all(
        http,
        auth,
        p.accounts()
            .map(|(id, _)| (id.to_string(), format!("{}/api/accounts/{id}", s.payment))),
    )
    .await;
    let products = read_all(
        http,
        auth,
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

    let checked = sample.len();
    let payment_errors: Vec<String> = stream::iter(sample)
        .map(|r| async move {
            let order_id = r.order_id;
            let url = format!("{}/api/payments?order_id={order_id}", s.payment);
            let get = auth.operator(http.get(&url));
            let rows: Result<Vec<serde_json::Value>, String> = match get.send().await {
                Ok(resp) if !resp.status().is_success() => Err(format!("HTTP {}", resp.status())),
                Ok(resp) => resp.json().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let result = rows.and_then(|rows| {
                let statuses: Vec<String> = rows
                    .iter()
                    .filter_map(|v| v.get("status")?.as_str().map(str::to_string))
                    .collect();
                invariants::payment_matches(&r.status, r.failure_reason.as_deref(), &statuses)
            });
            result.err().map(|e| format!("order {order_id}: {e}"))
        })
        .buffer_unordered(SIDE_CONCURRENCY)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    Ok(Checks {
        mismatches,
        payment_errors,
        payments_checked: checked,
    })
}

async fn read_all(
    http: &reqwest::Client,
    auth: &Credentials,
    urls: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, Option<serde_json::Value>> {
    stream::iter(urls.collect::<Vec<_>>())
        .map(|(id, url)| async move {
            let value = match auth.operator(http.get(&url)).send().await {
                Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            };
            (id, value)
        })
        .buffer_unordered(SIDE_CONCURRENCY)
        .collect()
        .await
}
