//! Tariff and VAT history (DOMAIN.md §3, §8).
//!
//! A tariff is a net price per code and a VAT rate, versioned by the instant it takes
//! effect. A code's charge is fixed when it is applied: `net × (1 + vat_rate)` of the
//! tariff in force at the application's `ts`, kept exact (2.68 × 1.12 = 3.0016).

use crate::money::Money;
use crate::time::Ts;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// One tariff version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tariff {
    /// Net price of one code, KZT.
    pub net_price: Money,
    /// VAT rate as a fraction (`0.12`).
    pub vat_rate: Decimal,
}

impl Tariff {
    /// The built-in tariff: 2.68 KZT net plus 12 % VAT.
    pub fn built_in() -> Tariff {
        Tariff {
            net_price: Money::exact(Decimal::new(268, 2)),
            vat_rate: Decimal::new(12, 2),
        }
    }

    /// VAT on one code, exact.
    pub fn vat(&self) -> Money {
        self.net_price.times_rate(self.vat_rate)
    }

    /// The gross charge of one code, exact: net + VAT.
    pub fn charge(&self) -> Money {
        self.net_price + self.vat()
    }
}

/// Every tariff version by the instant it takes effect.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TariffHistory {
    versions: BTreeMap<Ts, Tariff>,
}

impl TariffHistory {
    /// The instant the built-in tariff takes effect: 2020-10-01T00:00 local (UTC+6).
    pub fn built_in_effective_from() -> Ts {
        Ts::parse_rfc3339("2020-10-01T00:00:00+06:00").unwrap_or(Ts(1_601_488_800_000))
    }

    /// A history holding only the built-in 2.68 KZT + 12 % VAT from 2020-10-01.
    pub fn built_in() -> TariffHistory {
        let mut versions = BTreeMap::new();
        versions.insert(Self::built_in_effective_from(), Tariff::built_in());
        TariffHistory { versions }
    }

    /// Adds (or replaces) the version taking effect at `effective_from`.
    pub fn insert(&mut self, effective_from: Ts, tariff: Tariff) {
        self.versions.insert(effective_from, tariff);
    }

    /// The tariff in force at `at`. Before the first version the first version applies:
    /// the operator had no cheaper price, and refusing the code would lose a real report.
    pub fn at(&self, at: Ts) -> Tariff {
        self.versions
            .range(..=at)
            .next_back()
            .or_else(|| self.versions.iter().next())
            .map(|(_, tariff)| *tariff)
            .unwrap_or_else(Tariff::built_in)
    }
}

impl Default for TariffHistory {
    fn default() -> Self {
        TariffHistory::built_in()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn built_in_charge_is_exact() {
        assert_eq!(Tariff::built_in().charge(), Money::from_str("3.0016").unwrap());
    }

    #[test]
    fn versions_apply_from_their_instant() {
        let mut history = TariffHistory::built_in();
        let from = Ts::parse_rfc3339("2026-03-01T00:00:00+05:00").unwrap();
        let new = Tariff {
            net_price: Money::exact(Decimal::new(300, 2)),
            vat_rate: Decimal::new(16, 2),
        };
        history.insert(from, new);
        assert_eq!(history.at(from.minus_millis(1)), Tariff::built_in());
        assert_eq!(history.at(from), new);
        assert_eq!(history.at(Ts(0)), Tariff::built_in());
    }
}
