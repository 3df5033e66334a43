//! The seeded population and the stream of orders.
//!
//! Outcomes are steered by the data, not left to chance: a "declined" order is placed by a
//! customer whose balance is zero, an "out of stock" order asks for a scarce product (its few
//! units go to the first orders, the rest fail and are refunded), every other order buys from
//! rich customers and plentiful products. So the mix the user asks for is the mix the fleet
//! sees, and the outcome each order should reach is known in advance.

use crate::cli::Settings;

/// Balance of a rich customer: enough for any run (10^12 cents), far from i64 overflow.
pub const RICH_BALANCE_CENTS: i64 = 1_000_000_000_000;
/// Stock of a plentiful product: far more than any run takes, below the service's limit (10^9).
pub const PLENTIFUL_STOCK: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Complete,
    Declined,
    OutOfStock,
}

/// Who and what is seeded, with the initial values the invariants start from.
#[derive(Debug, Clone)]
pub struct Population {
    pub rich: Vec<String>,
    pub broke: Vec<String>,
    pub plentiful: Vec<String>,
    pub scarce: Vec<String>,
    pub scarce_stock: i64,
}

impl Population {
    pub fn new(s: &Settings) -> Self {
        let ids = |tag: &str, n: usize| -> Vec<String> {
            (0..n).map(|i| format!("{}-{tag}-{i}", s.run_id)).collect()
        };
        Self {
            rich: ids("c", s.customers),
            broke: ids("b", s.broke_customers),
            plentiful: ids("p", s.products),
            scarce: ids("s", s.scarce_products),
            scarce_stock: s.scarce_stock,
        }
    }

    /// (customer id, initial balance) of every seeded customer.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, i64)> {
        let rich = self.rich.iter().map(|c| (c.as_str(), RICH_BALANCE_CENTS));
        rich.chain(self.broke.iter().map(|c| (c.as_str(), 0)))
    }

    /// (product id, initial stock) of every seeded product.
    pub fn products(&self) -> impl Iterator<Item = (&str, i64)> {
        let plentiful = self.plentiful.iter().map(|p| (p.as_str(), PLENTIFUL_STOCK));
        plentiful.chain(self.scarce.iter().map(|p| (p.as_str(), self.scarce_stock)))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OrderRequest {
    pub customer_id: String,
    pub items: Vec<Item>,
}

impl OrderRequest {
    pub fn total_cents(&self) -> i64 {
        self.items
            .iter()
            .map(|i| i.quantity * i.unit_price_cents)
            .sum()
    }
}

/// SplitMix64: a few lines, deterministic per seed, good enough to spread load over ids.
/// (A `rand` dependency would buy nothing here.)
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); n must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &'a [String]) -> &'a str {
        &from[self.below(from.len())]
    }
}

/// Draws the next order: its intended outcome and the request body.
pub fn next_order(
    rng: &mut Rng,
    population: &Population,
    declined: f64,
    out_of_stock: f64,
) -> (Kind, OrderRequest) {
    let roll = rng.unit();
    let kind = if roll < declined {
        Kind::Declined
    } else if roll < declined + out_of_stock {
        Kind::OutOfStock
    } else {
        Kind::Complete
    };
    let item = |products: &[String], rng: &mut Rng| Item {
        product_id: rng.pick(products).to_string(),
        quantity: 1 + rng.below(3) as i64,
        unit_price_cents: 100 + rng.below(4900) as i64,
    };
    let (customer, items) = match kind {
        Kind::Complete => {
            let customer = rng.pick(&population.rich).to_string();
            // One or two lines, so the all-or-nothing multi-line reservation is exercised.
            let lines = 1 + rng.below(2);
            let mut items: Vec<Item> = (0..lines)
                .map(|_| item(&population.plentiful, rng))
                .collect();
            items.dedup_by(|a, b| a.product_id == b.product_id);
            (customer, items)
        }
        Kind::Declined => (
            rng.pick(&population.broke).to_string(),
            vec![item(&population.plentiful, rng)],
        ),
        Kind::OutOfStock => {
            let mut line = item(&population.scarce, rng);
            line.quantity = 1;
            (rng.pick(&population.rich).to_string(), vec![line])
        }
    };
    (
        kind,
        OrderRequest {
            customer_id: customer,
            items,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population() -> Population {
        let s = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect();
        Population {
            rich: s("c", 5),
            broke: s("b", 2),
            plentiful: s("p", 5),
            scarce: s("s", 2),
            scarce_stock: 1,
        }
    }

    #[test]
    fn the_mix_follows_the_requested_fractions() {
        let (pop, mut rng) = (population(), Rng::new(7));
        let mut counts = std::collections::HashMap::new();
        for _ in 0..10_000 {
            let (kind, order) = next_order(&mut rng, &pop, 0.2, 0.1);
            assert!(order.total_cents() > 0);
            *counts.entry(kind).or_insert(0) += 1;
        }
        let share = |k| f64::from(counts[&k]) / 10_000.0;
        assert!((share(Kind::Declined) - 0.2).abs() < 0.02);
        assert!((share(Kind::OutOfStock) - 0.1).abs() < 0.02);
    }

    #[test]
    fn declined_orders_come_from_broke_customers() {
        let (pop, mut rng) = (population(), Rng::new(1));
        let (_, order) = next_order(&mut rng, &pop, 1.0, 0.0);
        assert!(order.customer_id.starts_with('b'));
    }
}
