//! The reservation rules (the table in the parent module) as a pure function of what the
//! database holds: a batch of reserves and releases is decided here, in order, against the
//! reservations, lines and stock levels read (and locked) for it, and the stockroom then says what
//! to write. Each command sees what the earlier ones of the batch did: two reservations of one
//! product draw on one stock, and a release gives back what a reserve of the same batch took.
//! A reservation that takes a product below its low-stock threshold says so in its outcome
//! (`products::StockLevel::take`), and the product's alarm is set with its stock.

use std::collections::HashMap;

use uuid::Uuid;

use super::{RejectionReason, ReleaseOutcome, ReservationStatus, ReserveOutcome, StockRequest};
use crate::products::{StockDelta, StockLevel};
use saga_common::contracts::StockLine;

/// An inventory command, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockCommand {
    Reserve(StockRequest),
    Release { order_id: Uuid },
}

impl StockCommand {
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Reserve(request) => request.order_id(),
            Self::Release { order_id } => *order_id,
        }
    }
}

/// What a command ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockOutcome {
    Reserve(ReserveOutcome),
    Release(ReleaseOutcome),
}

/// A reservation row as the stockroom knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReservationRow {
    pub order_id: Uuid,
    pub status: ReservationStatus,
    pub reason: Option<RejectionReason>,
}

/// What the batch changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Reservations to insert, in their final state, with their lines.
    pub new_reservations: Vec<(ReservationRow, Vec<StockLine>)>,
    /// Stored reservations that are now `RELEASED`.
    pub released: Vec<Uuid>,
    /// Per product (in byte order): what changed in its stock or its low-stock alarm.
    pub stock_deltas: Vec<StockDelta>,
}

pub struct Stockroom {
    reservations: HashMap<Uuid, (ReservationRow, Origin)>,
    /// Lines of the RESERVED reservations read, and of those made by this batch.
    lines: HashMap<Uuid, Vec<StockLine>>,
    /// Levels of the products read; a product missing here does not exist.
    levels: HashMap<String, StockLevel>,
    read: HashMap<String, StockLevel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Stored { released: bool },
    New,
}

impl Stockroom {
    pub fn new(
        reservations: Vec<ReservationRow>,
        lines: HashMap<Uuid, Vec<StockLine>>,
        levels: HashMap<String, StockLevel>,
    ) -> Self {
        Self {
            reservations: reservations
                .into_iter()
                .map(|r| (r.order_id, (r, Origin::Stored { released: false })))
                .collect(),
            lines,
            read: levels.clone(),
            levels,
        }
    }

    pub fn apply(&mut self, command: &StockCommand) -> StockOutcome {
        match command {
            StockCommand::Reserve(request) => StockOutcome::Reserve(self.reserve(request)),
            StockCommand::Release { order_id } => StockOutcome::Release(self.release(*order_id)),
        }
    }

    /// Every line or none; a reserve for an order that has a reservation answers with it.
    fn reserve(&mut self, request: &StockRequest) -> ReserveOutcome {
        let order_id = request.order_id();
        if let Some((existing, _)) = self.reservations.get(&order_id) {
            return match existing.status {
                ReservationStatus::Rejected => ReserveOutcome::Rejected {
                    reason: existing.reason.unwrap_or(RejectionReason::OutOfStock),
                },
                // Answered again: what it took was counted (and alerted) the first time.
                ReservationStatus::Reserved | ReservationStatus::Released => {
                    ReserveOutcome::Reserved {
                        low_stock: Vec::new(),
                    }
                }
            };
        }
        let short = request.lines().iter().find(|line| {
            !self
                .levels
                .get(&line.product_id)
                .is_some_and(|level| level.covers(line.quantity))
        });
        if let Some(line) = short {
            tracing::debug!(%order_id, product_id = %line.product_id, quantity = line.quantity, "not enough stock");
            let reason = RejectionReason::OutOfStock;
            self.record(order_id, ReservationStatus::Rejected, Some(reason));
            return ReserveOutcome::Rejected { reason };
        }
        let mut low_stock = Vec::new();
        for line in request.lines() {
            if let Some(level) = self.levels.get_mut(&line.product_id) {
                low_stock.extend(level.take(&line.product_id, line.quantity));
            }
        }
        self.record(order_id, ReservationStatus::Reserved, None);
        self.lines.insert(order_id, request.lines().to_vec());
        ReserveOutcome::Reserved { low_stock }
    }

    /// Gives the order's units back once; a release before any reserve blocks the late reserve.
    fn release(&mut self, order_id: Uuid) -> ReleaseOutcome {
        let Some((reservation, origin)) = self.reservations.get_mut(&order_id) else {
            let reason = RejectionReason::ReleasedBeforeReserved;
            self.record(order_id, ReservationStatus::Rejected, Some(reason));
            return ReleaseOutcome::Blocked;
        };
        match reservation.status {
            ReservationStatus::Reserved => {
                let mut units = 0;
                for line in self.lines.get(&order_id).into_iter().flatten() {
                    if let Some(level) = self.levels.get_mut(&line.product_id) {
                        level.give_back(line.quantity);
                    }
                    units += i64::from(line.quantity);
                }
                reservation.status = ReservationStatus::Released;
                if let Origin::Stored { released } = origin {
                    *released = true;
                }
                ReleaseOutcome::Released { units }
            }
            ReservationStatus::Released => ReleaseOutcome::AlreadyReleased,
            ReservationStatus::Rejected => ReleaseOutcome::NothingReserved,
        }
    }

    fn record(
        &mut self,
        order_id: Uuid,
        status: ReservationStatus,
        reason: Option<RejectionReason>,
    ) {
        let row = ReservationRow {
            order_id,
            status,
            reason,
        };
        self.reservations.insert(order_id, (row, Origin::New));
    }

    pub fn changes(mut self) -> Changes {
        let mut changes = Changes::default();
        for (order_id, (reservation, origin)) in self.reservations {
            match origin {
                Origin::New => {
                    let lines = self.lines.remove(&order_id).unwrap_or_default();
                    changes.new_reservations.push((reservation, lines));
                }
                Origin::Stored { released: true } => changes.released.push(order_id),
                Origin::Stored { released: false } => {}
            }
        }
        // Key order: repeatable statements, and locks taken the same way by every batch.
        changes
            .new_reservations
            .sort_by_key(|(reservation, _)| reservation.order_id);
        changes.released.sort_unstable();
        for (product_id, level) in self.levels {
            let read = self.read.get(&product_id).copied().unwrap_or(level);
            let delta = StockDelta {
                product_id,
                available: level.available - read.available,
                reserved: level.reserved - read.reserved,
                // A reserve and a release of the same batch may leave the stock as it was and
                // the alarm set: the row is still written.
                alerted: level.alerted && !read.alerted,
            };
            if delta.available != 0 || delta.reserved != 0 || delta.alerted {
                changes.stock_deltas.push(delta);
            }
        }
        changes
            .stock_deltas
            .sort_by(|a, b| a.product_id.as_bytes().cmp(b.product_id.as_bytes()));
        changes
    }
}

#[cfg(test)]
mod tests {
    use saga_common::contracts::{LowStock, ReserveStock};

    use super::*;

    fn line(product_id: &str, quantity: i32) -> StockLine {
        StockLine {
            product_id: product_id.to_owned(),
            quantity,
        }
    }

    fn reserve(lines: Vec<StockLine>) -> StockCommand {
        let order_id = Uuid::now_v7();
        StockCommand::Reserve(
            StockRequest::parse(ReserveStock { order_id, lines }, order_id)
                .expect("a valid request"),
        )
    }

    /// Products with no low-stock threshold (0: never alerts).
    fn stockroom(levels: &[(&str, i32)]) -> Stockroom {
        let with_thresholds: Vec<(&str, i32, i32)> = levels
            .iter()
            .map(|(p, available)| (*p, *available, 0))
            .collect();
        alarmed_stockroom(&with_thresholds)
    }

    /// Products as `(id, available, threshold)`, each armed.
    fn alarmed_stockroom(levels: &[(&str, i32, i32)]) -> Stockroom {
        Stockroom::new(
            Vec::new(),
            HashMap::new(),
            levels
                .iter()
                .map(|(p, available, threshold)| {
                    (
                        (*p).to_owned(),
                        StockLevel {
                            available: *available,
                            reserved: 0,
                            threshold: *threshold,
                            alerted: false,
                        },
                    )
                })
                .collect(),
        )
    }

    fn delta(product_id: &str, available: i32, reserved: i32, alerted: bool) -> StockDelta {
        StockDelta {
            product_id: product_id.into(),
            available,
            reserved,
            alerted,
        }
    }

    fn reserved() -> StockOutcome {
        StockOutcome::Reserve(ReserveOutcome::Reserved {
            low_stock: Vec::new(),
        })
    }

    fn low(product_id: &str, available: i32, threshold: i32) -> LowStock {
        LowStock {
            product_id: product_id.into(),
            available,
            threshold,
        }
    }

    #[test]
    fn two_reservations_of_one_product_draw_on_one_stock() {
        let mut room = stockroom(&[("p", 3)]);
        assert_eq!(room.apply(&reserve(vec![line("p", 2)])), reserved());
        assert_eq!(
            room.apply(&reserve(vec![line("p", 2)])),
            StockOutcome::Reserve(ReserveOutcome::Rejected {
                reason: RejectionReason::OutOfStock
            })
        );
        let changes = room.changes();
        assert_eq!(changes.stock_deltas, vec![delta("p", -2, 2, false)]);
        assert_eq!(changes.new_reservations.len(), 2);
        let rejected = changes
            .new_reservations
            .iter()
            .find(|(r, _)| r.status == ReservationStatus::Rejected)
            .expect("one rejected");
        assert!(
            rejected.1.is_empty(),
            "a rejected reservation holds no lines"
        );
    }

    #[test]
    fn a_reservation_takes_every_line_or_none() {
        let mut room = stockroom(&[("a", 5), ("b", 1)]);
        assert!(matches!(
            room.apply(&reserve(vec![line("a", 2), line("b", 2)])),
            StockOutcome::Reserve(ReserveOutcome::Rejected { .. })
        ));
        assert!(room.changes().stock_deltas.is_empty());
    }

    #[test]
    fn an_unknown_product_is_out_of_stock() {
        let mut room = stockroom(&[]);
        assert!(matches!(
            room.apply(&reserve(vec![line("ghost", 1)])),
            StockOutcome::Reserve(ReserveOutcome::Rejected { .. })
        ));
    }

    #[test]
    fn a_release_after_its_reserve_in_the_same_batch_gives_the_units_back_once() {
        let mut room = stockroom(&[("a", 5), ("b", 5)]);
        let command = reserve(vec![line("a", 2), line("b", 1)]);
        let order_id = command.order_id();
        room.apply(&command);
        assert_eq!(
            room.apply(&StockCommand::Release { order_id }),
            StockOutcome::Release(ReleaseOutcome::Released { units: 3 })
        );
        assert_eq!(
            room.apply(&StockCommand::Release { order_id }),
            StockOutcome::Release(ReleaseOutcome::AlreadyReleased)
        );
        assert_eq!(room.apply(&command), reserved());
        let changes = room.changes();
        assert!(changes.stock_deltas.is_empty(), "{changes:?}");
        assert_eq!(
            changes.new_reservations[0].0.status,
            ReservationStatus::Released
        );
        assert_eq!(changes.new_reservations[0].1.len(), 2);
    }

    #[test]
    fn a_stored_reservation_is_released_from_its_stored_lines() {
        let order_id = Uuid::now_v7();
        let mut room = Stockroom::new(
            vec![ReservationRow {
                order_id,
                status: ReservationStatus::Reserved,
                reason: None,
            }],
            [(order_id, vec![line("a", 4)])].into(),
            [(
                "a".to_owned(),
                StockLevel {
                    available: 1,
                    reserved: 4,
                    threshold: 0,
                    alerted: false,
                },
            )]
            .into(),
        );
        assert_eq!(
            room.apply(&StockCommand::Release { order_id }),
            StockOutcome::Release(ReleaseOutcome::Released { units: 4 })
        );
        let changes = room.changes();
        assert_eq!(changes.released, vec![order_id]);
        assert_eq!(changes.stock_deltas, vec![delta("a", 4, -4, false)]);
    }

    #[test]
    fn a_release_before_its_reserve_blocks_the_reserve() {
        let mut room = stockroom(&[("a", 5)]);
        let command = reserve(vec![line("a", 1)]);
        assert_eq!(
            room.apply(&StockCommand::Release {
                order_id: command.order_id()
            }),
            StockOutcome::Release(ReleaseOutcome::Blocked)
        );
        assert_eq!(
            room.apply(&command),
            StockOutcome::Reserve(ReserveOutcome::Rejected {
                reason: RejectionReason::ReleasedBeforeReserved
            })
        );
        assert!(room.changes().stock_deltas.is_empty());
    }

    #[test]
    fn the_reservation_that_crosses_a_threshold_carries_the_alert_and_sets_the_alarm() {
        let mut room = alarmed_stockroom(&[("a", 10, 5), ("b", 10, 5)]);
        assert_eq!(room.apply(&reserve(vec![line("a", 5)])), reserved());
        assert_eq!(
            room.apply(&reserve(vec![line("a", 2), line("b", 6)])),
            StockOutcome::Reserve(ReserveOutcome::Reserved {
                low_stock: vec![low("a", 3, 5), low("b", 4, 5)]
            })
        );
        assert_eq!(
            room.apply(&reserve(vec![line("a", 1)])),
            reserved(),
            "one alert per crossing"
        );
        assert_eq!(
            room.changes().stock_deltas,
            vec![delta("a", -8, 8, true), delta("b", -6, 6, true)]
        );
    }

    #[test]
    fn a_release_in_the_same_batch_keeps_the_alarm_set() {
        let mut room = alarmed_stockroom(&[("a", 4, 2)]);
        let command = reserve(vec![line("a", 3)]);
        let order_id = command.order_id();
        assert_eq!(
            room.apply(&command),
            StockOutcome::Reserve(ReserveOutcome::Reserved {
                low_stock: vec![low("a", 1, 2)]
            })
        );
        room.apply(&StockCommand::Release { order_id });
        assert_eq!(room.apply(&reserve(vec![line("a", 3)])), reserved());
        assert_eq!(room.changes().stock_deltas, vec![delta("a", -3, 3, true)]);
        let mut room = alarmed_stockroom(&[("a", 4, 2)]);
        let command = reserve(vec![line("a", 3)]);
        room.apply(&command);
        room.apply(&StockCommand::Release {
            order_id: command.order_id(),
        });
        assert_eq!(
            room.changes().stock_deltas,
            vec![delta("a", 0, 0, true)],
            "the stock is as it was, the alarm is not"
        );
    }

    #[test]
    fn a_refused_reservation_never_alerts() {
        let mut room = alarmed_stockroom(&[("a", 4, 2), ("b", 1, 0)]);
        assert!(matches!(
            room.apply(&reserve(vec![line("a", 3), line("b", 2)])),
            StockOutcome::Reserve(ReserveOutcome::Rejected { .. })
        ));
        assert!(room.changes().stock_deltas.is_empty());
    }
}
