//! The payment rules as a pure function of what the database holds: a batch of charges and
//! refunds is decided here, in order, against the payments and balances read (and locked) for
//! it, and the ledger then says what to write. Each command sees what the earlier ones of the
//! batch did: two charges on one account both draw on one balance, and a refund right after its
//! charge gives that charge back.

use std::collections::HashMap;

use uuid::Uuid;

use super::PaymentStatus;
use saga_common::contracts::{DeclineReason, MAX_AMOUNT_CENTS};

/// A payment command, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    Charge {
        order_id: Uuid,
        customer_id: String,
        amount_cents: i64,
    },
    Refund {
        order_id: Uuid,
        customer_id: String,
    },
}

impl PaymentCommand {
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Charge { order_id, .. } | Self::Refund { order_id, .. } => *order_id,
        }
    }

    pub fn customer_id(&self) -> &str {
        match self {
            Self::Charge { customer_id, .. } | Self::Refund { customer_id, .. } => customer_id,
        }
    }
}

/// What a command ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Charged {
        payment_id: Uuid,
        amount_cents: i64,
    },
    Declined {
        reason: DeclineReason,
    },
    /// The amount given back by this refund or an earlier one (0 when nothing was charged).
    Refunded {
        amount_cents: i64,
    },
    /// A refund naming another customer than the one who paid: it can never be carried out.
    WrongCustomer {
        paid_by: String,
    },
}

/// A payment row as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PaymentRow {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    pub status: PaymentStatus,
    pub decline_reason: Option<DeclineReason>,
}

/// What the batch changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Payments to insert, in their final state.
    pub new_payments: Vec<PaymentRow>,
    /// Payments that existed and are now `REFUNDED`.
    pub refunded: Vec<Uuid>,
    /// Balance change per customer, none zero.
    pub balance_deltas: Vec<(String, i64)>,
}

pub struct Ledger {
    /// The payment of each order: read from the database, or created by this batch.
    payments: HashMap<Uuid, (PaymentRow, Origin)>,
    /// Balances of the accounts read; a customer missing here has no account.
    balances: HashMap<String, i64>,
    /// Balances as read, to compute the deltas.
    read: HashMap<String, i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Stored { refunded: bool },
    New,
}

impl Ledger {
    pub fn new(payments: Vec<PaymentRow>, balances: HashMap<String, i64>) -> Self {
        Self {
            payments: payments
                .into_iter()
                .map(|p| (p.order_id, (p, Origin::Stored { refunded: false })))
                .collect(),
            read: balances.clone(),
            balances,
        }
    }

    pub fn apply(&mut self, command: &PaymentCommand) -> Outcome {
        match command {
            PaymentCommand::Charge {
                order_id,
                customer_id,
                amount_cents,
            } => self.charge(*order_id, customer_id, *amount_cents),
            PaymentCommand::Refund {
                order_id,
                customer_id,
            } => self.refund(*order_id, customer_id),
        }
    }

    /// One payment per order: a charge for an order that has one answers with its outcome.
    fn charge(&mut self, order_id: Uuid, customer_id: &str, amount_cents: i64) -> Outcome {
        if let Some((existing, _)) = self.payments.get(&order_id) {
            return match existing.decline_reason {
                Some(reason) if existing.status == PaymentStatus::Declined => {
                    Outcome::Declined { reason }
                }
                _ => Outcome::Charged {
                    payment_id: existing.payment_id,
                    amount_cents: existing.amount_cents,
                },
            };
        }
        let reason = match self.balances.get_mut(customer_id) {
            Some(balance) if *balance >= amount_cents => {
                *balance -= amount_cents;
                None
            }
            Some(_) => Some(DeclineReason::InsufficientFunds),
            None => Some(DeclineReason::NoAccount),
        };
        let payment = PaymentRow {
            payment_id: Uuid::now_v7(),
            order_id,
            customer_id: customer_id.to_owned(),
            amount_cents,
            status: if reason.is_none() {
                PaymentStatus::Charged
            } else {
                PaymentStatus::Declined
            },
            decline_reason: reason,
        };
        let outcome = match reason {
            None => Outcome::Charged {
                payment_id: payment.payment_id,
                amount_cents,
            },
            Some(reason) => Outcome::Declined { reason },
        };
        self.payments.insert(order_id, (payment, Origin::New));
        outcome
    }

    /// Gives a charge back once, to the customer who paid (a refund naming anyone else is
    /// refused). A refund for an order never charged records the order as `DECLINED`/
    /// `cancelled`, so a charge arriving after it takes nothing.
    fn refund(&mut self, order_id: Uuid, customer_id: &str) -> Outcome {
        let Some((payment, origin)) = self.payments.get_mut(&order_id) else {
            let cancelled = PaymentRow {
                payment_id: Uuid::now_v7(),
                order_id,
                customer_id: customer_id.to_owned(),
                amount_cents: 0,
                status: PaymentStatus::Declined,
                decline_reason: Some(DeclineReason::Cancelled),
            };
            self.payments.insert(order_id, (cancelled, Origin::New));
            return Outcome::Refunded { amount_cents: 0 };
        };
        if payment.customer_id != customer_id {
            return Outcome::WrongCustomer {
                paid_by: payment.customer_id.clone(),
            };
        }
        let amount_cents = match payment.status {
            PaymentStatus::Charged => {
                // The refund names the payer, whose account was read (and locked) for it.
                let balance = self.balances.entry(customer_id.to_owned()).or_default();
                *balance = credit(*balance, payment.amount_cents, order_id);
                payment.status = PaymentStatus::Refunded;
                if let Origin::Stored { refunded } = origin {
                    *refunded = true;
                }
                payment.amount_cents
            }
            PaymentStatus::Refunded => payment.amount_cents,
            PaymentStatus::Declined => 0,
        };
        Outcome::Refunded { amount_cents }
    }

    /// What to write, with new payments in order id order.
    pub fn changes(self) -> Changes {
        let mut changes = Changes::default();
        for (payment, origin) in self.payments.into_values() {
            match origin {
                Origin::New => changes.new_payments.push(payment),
                Origin::Stored { refunded: true } => changes.refunded.push(payment.payment_id),
                Origin::Stored { refunded: false } => {}
            }
        }
        // In key order of the unique index the insert checks (one payment per order): two
        // batches inserting payments for the same orders wait on each other in one direction
        // only, as the row locks do.
        changes.new_payments.sort_by_key(|p| p.order_id);
        changes.refunded.sort_unstable();
        for (customer_id, balance) in self.balances {
            let delta = balance - self.read.get(&customer_id).copied().unwrap_or_default();
            if delta != 0 {
                changes.balance_deltas.push((customer_id, delta));
            }
        }
        changes.balance_deltas.sort();
        changes
    }
}

/// `balance` plus a refund of `amount`, capped at `MAX_AMOUNT_CENTS`: the sum cannot overflow,
/// and a balance stays within what the API accepts. Only a balance an operator set near the
/// cap while the order was in flight can reach it; the refund is still carried out (the saga
/// must end) and the cents not credited are logged for the operator to settle.
fn credit(balance: i64, amount: i64, order_id: Uuid) -> i64 {
    let credited = balance.saturating_add(amount).min(MAX_AMOUNT_CENTS);
    if credited < balance.saturating_add(amount) {
        tracing::warn!(
            %order_id,
            not_credited_cents = balance.saturating_add(amount) - credited,
            "refund capped at the maximum balance"
        );
    }
    credited.max(balance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(order_id: Uuid, customer: &str, amount: i64) -> PaymentCommand {
        PaymentCommand::Charge {
            order_id,
            customer_id: customer.into(),
            amount_cents: amount,
        }
    }

    fn refund(order_id: Uuid, customer: &str) -> PaymentCommand {
        PaymentCommand::Refund {
            order_id,
            customer_id: customer.into(),
        }
    }

    fn ledger(balances: &[(&str, i64)]) -> Ledger {
        Ledger::new(
            Vec::new(),
            balances.iter().map(|(c, b)| ((*c).into(), *b)).collect(),
        )
    }

    #[test]
    fn two_charges_on_one_account_draw_on_one_balance() {
        let mut ledger = ledger(&[("c-1", 100)]);
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(matches!(
            ledger.apply(&charge(first, "c-1", 70)),
            Outcome::Charged {
                amount_cents: 70,
                ..
            }
        ));
        assert_eq!(
            ledger.apply(&charge(second, "c-1", 70)),
            Outcome::Declined {
                reason: DeclineReason::InsufficientFunds
            }
        );
        let changes = ledger.changes();
        assert_eq!(changes.balance_deltas, vec![("c-1".into(), -70)]);
        assert_eq!(changes.new_payments.len(), 2);
        assert_eq!(changes.new_payments[0].order_id, first);
        assert_eq!(changes.new_payments[1].status, PaymentStatus::Declined);
    }

    #[test]
    fn a_charge_without_an_account_is_declined_as_no_account() {
        let mut ledger = ledger(&[]);
        assert_eq!(
            ledger.apply(&charge(Uuid::now_v7(), "nobody", 1)),
            Outcome::Declined {
                reason: DeclineReason::NoAccount
            }
        );
        assert!(ledger.changes().balance_deltas.is_empty());
    }

    #[test]
    fn a_repeated_charge_answers_with_the_first_outcome_and_takes_nothing_more() {
        let mut ledger = ledger(&[("c-1", 100)]);
        let order = Uuid::now_v7();
        let first = ledger.apply(&charge(order, "c-1", 30));
        assert_eq!(ledger.apply(&charge(order, "c-1", 30)), first);
        let changes = ledger.changes();
        assert_eq!(changes.balance_deltas, vec![("c-1".into(), -30)]);
        assert_eq!(changes.new_payments.len(), 1);
    }

    #[test]
    fn a_refund_after_its_charge_in_the_same_batch_gives_it_back_once() {
        let mut ledger = ledger(&[("c-1", 100)]);
        let order = Uuid::now_v7();
        ledger.apply(&charge(order, "c-1", 40));
        assert_eq!(
            ledger.apply(&refund(order, "c-1")),
            Outcome::Refunded { amount_cents: 40 }
        );
        assert_eq!(
            ledger.apply(&refund(order, "c-1")),
            Outcome::Refunded { amount_cents: 40 }
        );
        let changes = ledger.changes();
        assert!(changes.balance_deltas.is_empty(), "{changes:?}");
        assert_eq!(changes.new_payments[0].status, PaymentStatus::Refunded);
        assert!(changes.refunded.is_empty());
    }

    #[test]
    fn a_stored_charge_is_refunded_to_its_customer_and_marked() {
        let order = Uuid::now_v7();
        let stored = PaymentRow {
            payment_id: Uuid::now_v7(),
            order_id: order,
            customer_id: "c-1".into(),
            amount_cents: 25,
            status: PaymentStatus::Charged,
            decline_reason: None,
        };
        let mut ledger = Ledger::new(vec![stored.clone()], [("c-1".into(), 5)].into());
        assert_eq!(
            ledger.apply(&refund(order, "c-1")),
            Outcome::Refunded { amount_cents: 25 }
        );
        let changes = ledger.changes();
        assert_eq!(changes.refunded, vec![stored.payment_id]);
        assert_eq!(changes.balance_deltas, vec![("c-1".into(), 25)]);
        assert!(changes.new_payments.is_empty());
    }

    #[test]
    fn a_refund_onto_a_balance_near_the_maximum_is_capped_there_and_cannot_overflow() {
        let order = Uuid::now_v7();
        let stored = PaymentRow {
            payment_id: Uuid::now_v7(),
            order_id: order,
            customer_id: "c-1".into(),
            amount_cents: MAX_AMOUNT_CENTS,
            status: PaymentStatus::Charged,
            decline_reason: None,
        };
        // The operator set the balance to the maximum while the order was in flight.
        let full = MAX_AMOUNT_CENTS - 10;
        let mut ledger = Ledger::new(vec![stored.clone()], [("c-1".into(), full)].into());
        assert_eq!(
            ledger.apply(&refund(order, "c-1")),
            Outcome::Refunded {
                amount_cents: MAX_AMOUNT_CENTS
            },
            "the payment is refunded, so the saga can end"
        );
        let changes = ledger.changes();
        assert_eq!(changes.refunded, vec![stored.payment_id]);
        assert_eq!(
            changes.balance_deltas,
            vec![("c-1".into(), 10)],
            "up to the cap"
        );
        assert_eq!(credit(i64::MAX, i64::MAX, order), i64::MAX, "no overflow");
    }

    #[test]
    fn a_refund_before_any_charge_cancels_the_order_so_the_late_charge_takes_nothing() {
        let mut ledger = ledger(&[("c-1", 100)]);
        let order = Uuid::now_v7();
        assert_eq!(
            ledger.apply(&refund(order, "c-1")),
            Outcome::Refunded { amount_cents: 0 }
        );
        assert_eq!(
            ledger.apply(&charge(order, "c-1", 10)),
            Outcome::Declined {
                reason: DeclineReason::Cancelled
            }
        );
        let changes = ledger.changes();
        assert!(changes.balance_deltas.is_empty());
        assert_eq!(changes.new_payments.len(), 1);
        assert_eq!(
            changes.new_payments[0].decline_reason,
            Some(DeclineReason::Cancelled)
        );
    }

    #[test]
    fn a_refund_naming_another_customer_than_the_payer_is_refused_and_changes_nothing() {
        let mut ledger = ledger(&[("c-1", 100), ("c-2", 100)]);
        let order = Uuid::now_v7();
        ledger.apply(&charge(order, "c-1", 40));
        assert_eq!(
            ledger.apply(&refund(order, "c-2")),
            Outcome::WrongCustomer {
                paid_by: "c-1".into()
            }
        );
        let changes = ledger.changes();
        assert_eq!(changes.balance_deltas, vec![("c-1".into(), -40)]);
        assert_eq!(changes.new_payments[0].status, PaymentStatus::Charged);
    }

    #[test]
    fn a_declined_payment_refunds_nothing() {
        let mut ledger = ledger(&[("c-1", 5)]);
        let order = Uuid::now_v7();
        ledger.apply(&charge(order, "c-1", 10));
        assert_eq!(
            ledger.apply(&refund(order, "c-1")),
            Outcome::Refunded { amount_cents: 0 }
        );
        assert!(ledger.changes().balance_deltas.is_empty());
    }
}
