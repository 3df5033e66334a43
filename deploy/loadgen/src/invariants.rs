//! The conservation invariants, as pure arithmetic over what the load generator saw.
//!
//! Every FAILED saga is compensated (refund, release), so only COMPLETED orders may leave a
//! trace: a customer's balance is its initial balance minus the totals of its COMPLETED orders;
//! a product's available stock is its initial stock minus the quantities of COMPLETED orders,
//! and its reserved stock is exactly those quantities. An id touched by an order whose outcome
//! is unknown (the POST timed out, or tracking gave up) cannot be checked exactly: it is left out
//! and counted, never silently passed.

use std::collections::{BTreeMap, BTreeSet};

/// What one order did, as far as the invariants care.
#[derive(Debug, Clone)]
pub struct Settled<'a> {
    pub customer_id: &'a str,
    pub total_cents: i64,
    pub lines: Vec<(&'a str, i64)>,
    /// `Some(true)` COMPLETED, `Some(false)` FAILED, `None` unknown.
    pub completed: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mismatch {
    pub what: String,
    pub id: String,
    pub expected: i64,
    pub actual: Option<i64>,
}

/// Expected values, and the ids that cannot be checked.
#[derive(Debug, Default)]
pub struct Expected {
    pub balance: BTreeMap<String, i64>,
    pub available: BTreeMap<String, i64>,
    pub reserved: BTreeMap<String, i64>,
    pub unverifiable: BTreeSet<String>,
}

/// The expected values built up one order at a time, so a run that keeps no orders (the soak)
/// checks the same way as one that does.
#[derive(Debug)]
pub struct Ledger(Expected);

impl Ledger {
    pub fn new<'a>(
        accounts: impl IntoIterator<Item = (&'a str, i64)>,
        products: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Self {
        let mut e = Expected {
            balance: accounts
                .into_iter()
                .map(|(id, b)| (id.to_string(), b))
                .collect(),
            ..Expected::default()
        };
        for (id, stock) in products {
            e.available.insert(id.to_string(), stock);
            e.reserved.insert(id.to_string(), 0);
        }
        Self(e)
    }

    pub fn settle(&mut self, order: &Settled<'_>) {
        let e = &mut self.0;
        match order.completed {
            Some(true) => {
                if let Some(b) = e.balance.get_mut(order.customer_id) {
                    *b -= order.total_cents;
                }
                for &(product, quantity) in &order.lines {
                    if let Some(a) = e.available.get_mut(product) {
                        *a -= quantity;
                    }
                    if let Some(r) = e.reserved.get_mut(product) {
                        *r += quantity;
                    }
                }
            }
            Some(false) => {}
            None => {
                e.unverifiable.insert(order.customer_id.to_string());
                for &(product, _) in &order.lines {
                    e.unverifiable.insert(product.to_string());
                }
            }
        }
    }

    pub fn expected(self) -> Expected {
        self.0
    }
}

pub fn expected<'a>(
    accounts: impl IntoIterator<Item = (&'a str, i64)>,
    products: impl IntoIterator<Item = (&'a str, i64)>,
    orders: &[Settled<'a>],
) -> Expected {
    let mut ledger = Ledger::new(accounts, products);
    for order in orders {
        ledger.settle(order);
    }
    ledger.expected()
}

/// Compares expected values with the ones read back (`None`: could not be read).
pub fn compare(
    what: &str,
    expected: &BTreeMap<String, i64>,
    actual: &BTreeMap<String, Option<i64>>,
    unverifiable: &BTreeSet<String>,
) -> Vec<Mismatch> {
    expected
        .iter()
        .filter(|(id, _)| !unverifiable.contains(*id))
        .filter_map(|(id, &want)| {
            let got = actual.get(id).copied().flatten();
            (got != Some(want)).then(|| Mismatch {
                what: what.to_string(),
                id: id.clone(),
                expected: want,
                actual: got,
            })
        })
        .collect()
}

/// One order's payments against its outcome: exactly one payment, in the state the outcome
/// implies. A saga that failed for another reason than a decline (out of stock, timed out) was
/// refunded, or its charge was cancelled before it happened (recorded as DECLINED).
pub fn payment_matches(
    status: &str,
    failure_reason: Option<&str>,
    payments: &[String],
) -> Result<(), String> {
    let [payment] = payments else {
        return Err(format!("{} payments instead of 1", payments.len()));
    };
    let ok = match (status, failure_reason) {
        ("COMPLETED", _) => payment == "CHARGED",
        ("FAILED", Some("payment_declined")) => payment == "DECLINED",
        ("FAILED", _) => payment == "REFUNDED" || payment == "DECLINED",
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "order {status} ({failure_reason:?}) but its payment is {payment}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order<'a>(
        customer: &'a str,
        total: i64,
        lines: Vec<(&'a str, i64)>,
        completed: Option<bool>,
    ) -> Settled<'a> {
        Settled {
            customer_id: customer,
            total_cents: total,
            lines,
            completed,
        }
    }

    #[test]
    fn only_completed_orders_move_balances_and_stock() {
        let orders = [
            order("c1", 300, vec![("p1", 2), ("p2", 1)], Some(true)),
            order("c1", 500, vec![("p1", 5)], Some(false)),
            order("c2", 100, vec![("p2", 1)], Some(true)),
        ];
        let e = expected(
            [("c1", 1000), ("c2", 1000)],
            [("p1", 10), ("p2", 10)],
            &orders,
        );
        assert_eq!(e.balance["c1"], 700);
        assert_eq!(e.balance["c2"], 900);
        assert_eq!((e.available["p1"], e.reserved["p1"]), (8, 2));
        assert_eq!((e.available["p2"], e.reserved["p2"]), (8, 2));
        assert!(e.unverifiable.is_empty());
    }

    #[test]
    fn unknown_outcomes_make_their_ids_unverifiable_not_wrong() {
        let orders = [order("c1", 300, vec![("p1", 2)], None)];
        let e = expected([("c1", 1000)], [("p1", 10)], &orders);
        let actual = BTreeMap::from([("c1".to_string(), Some(700))]);
        assert!(e.unverifiable.contains("c1") && e.unverifiable.contains("p1"));
        assert!(compare("balance", &e.balance, &actual, &e.unverifiable).is_empty());
    }

    #[test]
    fn a_wrong_or_missing_value_is_a_mismatch() {
        let expected = BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 6)]);
        let actual = BTreeMap::from([("a".to_string(), Some(4)), ("b".to_string(), None)]);
        let m = compare("available", &expected, &actual, &BTreeSet::new());
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].expected, m[0].actual), (5, Some(4)));
    }

    #[test]
    fn payments_must_be_single_and_match_the_outcome() {
        let one = |s: &str| vec![s.to_string()];
        assert!(payment_matches("COMPLETED", None, &one("CHARGED")).is_ok());
        assert!(payment_matches("FAILED", Some("payment_declined"), &one("DECLINED")).is_ok());
        assert!(payment_matches("FAILED", Some("out_of_stock"), &one("REFUNDED")).is_ok());
        assert!(payment_matches("FAILED", Some("out_of_stock"), &one("CHARGED")).is_err());
        assert!(payment_matches("COMPLETED", None, &[]).is_err());
        assert!(
            payment_matches(
                "COMPLETED",
                None,
                &[one("CHARGED"), one("CHARGED")].concat()
            )
            .is_err()
        );
    }
}
